//! [`Deadlines`]: one ordered set of `(instant, key)` timers, the structure every sans-IO state
//! machine here keeps its deadlines in (connections, requests, lookups), so that the next
//! deadline is the set's first entry and firing the due ones is a walk from the front: no scan
//! of every connection, request or lookup per input (STYLE.md §2, "Timers are data").
//!
//! Each key has at most one deadline: setting it again moves it. Keys due at the same instant
//! fire in key order, so equal inputs give equal runs.
//!
//! Lazy re-arming: a deadline that moves *later* on every input (an idle timer moved by each
//! frame) need not be moved each time. Leave the early entry in place; when it fires, compare
//! with the real deadline and [`Deadlines::set`] the key again if it is not due yet. That costs
//! one spurious wake-up per period instead of a tree update per frame.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

/// A set of keyed deadlines ordered by instant, then key.
#[derive(Debug, Clone)]
pub struct Deadlines<K: Ord + Copy> {
    by_time: BTreeSet<(Instant, K)>,
    by_key: BTreeMap<K, Instant>,
}

impl<K: Ord + Copy> Deadlines<K> {
    /// No deadlines.
    pub fn new() -> Deadlines<K> {
        Deadlines { by_time: BTreeSet::new(), by_key: BTreeMap::new() }
    }

    /// Arms `key` to fire at `at`, replacing its earlier deadline if it had one. O(log n).
    pub fn set(&mut self, key: K, at: Instant) {
        if let Some(old) = self.by_key.insert(key, at) {
            self.by_time.remove(&(old, key));
        }
        self.by_time.insert((at, key));
    }

    /// Disarms `key`; harmless if it has no deadline. O(log n).
    pub fn clear(&mut self, key: K) {
        if let Some(old) = self.by_key.remove(&key) {
            self.by_time.remove(&(old, key));
        }
    }

    /// The deadline of `key`, if armed.
    pub fn get(&self, key: K) -> Option<Instant> {
        self.by_key.get(&key).copied()
    }

    /// The earliest deadline. O(log n).
    pub fn next(&self) -> Option<Instant> {
        self.by_time.first().map(|&(at, _)| at)
    }

    /// Removes and returns the earliest key due at or before `now` (it is disarmed); `None`
    /// when nothing is due. Call until `None` to fire everything due, in (instant, key) order.
    pub fn pop_due(&mut self, now: Instant) -> Option<K> {
        let &(at, key) = self.by_time.first()?;
        if at > now {
            return None;
        }
        self.by_time.pop_first();
        self.by_key.remove(&key);
        Some(key)
    }

    /// Armed deadlines.
    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    /// Whether no deadline is armed.
    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }
}

impl<K: Ord + Copy> Default for Deadlines<K> {
    fn default() -> Deadlines<K> {
        Deadlines::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn fires_due_keys_in_time_then_key_order_and_only_once() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut d = Deadlines::new();
        d.set(3u32, t0 + s);
        d.set(1, t0 + 2 * s);
        d.set(2, t0 + s);
        assert_eq!(d.next(), Some(t0 + s));
        assert_eq!(d.pop_due(t0), None);
        assert_eq!(d.pop_due(t0 + s), Some(2));
        assert_eq!(d.pop_due(t0 + s), Some(3));
        assert_eq!(d.pop_due(t0 + s), None);
        assert_eq!(d.next(), Some(t0 + 2 * s));
        assert_eq!(d.pop_due(t0 + 5 * s), Some(1));
        assert!(d.is_empty());
    }

    #[test]
    fn setting_a_key_again_moves_its_one_deadline() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut d = Deadlines::new();
        d.set(7u8, t0 + s);
        d.set(7, t0 + 3 * s);
        assert_eq!(d.len(), 1);
        assert_eq!(d.get(7), Some(t0 + 3 * s));
        assert_eq!(d.pop_due(t0 + 2 * s), None);
        d.set(7, t0);
        assert_eq!(d.pop_due(t0), Some(7));
        assert_eq!(d.get(7), None);
    }

    #[test]
    fn clearing_disarms_and_tolerates_unknown_keys() {
        let t0 = Instant::now();
        let mut d = Deadlines::new();
        d.set(1u8, t0);
        d.clear(1);
        d.clear(2);
        assert_eq!(d.next(), None);
        assert_eq!(d.pop_due(t0), None);
    }
}
