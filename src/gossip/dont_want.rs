//! What one peer told us it has (IDONTWANT), for as long as a forward to it may still be
//! decided: the ids in force, in two generations.
//!
//! An id is kept for at least `ttl` and at most twice that: it enters the current generation,
//! which becomes the previous one `ttl` after it started, and the previous one is forgotten
//! whole at the next turn. One 8-byte key per id in a hash set and nothing else: no expiry time
//! per id and no order queue, which cost three times the memory (`bench gossip --nodes 20`:
//! 176 KiB per node at 100 messages/s; every mesh peer sends an IDONTWANT for nearly every
//! message, so this grows with peers × rate × TTL).
//!
//! Bounded: at most `cap` ids per peer. A peer at its cap has its older generation forgotten
//! first; a current generation already at the cap takes no more, and the caller counts that.
//! Either way what is lost is only a forward to that peer it said it did not need.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use crate::wire::messages::MessageId;

/// A peer's IDONTWANT ids; see the module doc.
#[derive(Debug, Default)]
pub(super) struct DontWant {
    current: HashSet<u64>,
    previous: HashSet<u64>,
    /// When `current` becomes `previous`; `None` while both are empty.
    turn_at: Option<Instant>,
}

impl DontWant {
    /// Remembers `id` until at least `now + ttl`; false if the peer is at `cap` and it was not
    /// taken.
    pub(super) fn insert(
        &mut self,
        now: Instant,
        ttl: Duration,
        id: &MessageId,
        cap: usize,
    ) -> bool {
        self.turn(now, ttl);
        let (key, cap) = (key(id), cap.max(1));
        if self.current.contains(&key) {
            return true;
        }
        let renewed = self.previous.contains(&key);
        // Moving an id of the older generation forward takes no room: it is not given up.
        if !renewed && self.current.len() + self.previous.len() >= cap {
            self.previous = HashSet::new();
        }
        if self.current.len() >= cap {
            return false;
        }
        self.previous.remove(&key);
        self.current.insert(key);
        self.turn_at.get_or_insert(now + ttl);
        true
    }

    /// Whether the peer said IDONTWANT for `id` and that is still in force.
    pub(super) fn contains(&mut self, now: Instant, ttl: Duration, id: &MessageId) -> bool {
        self.turn(now, ttl);
        let key = key(id);
        self.current.contains(&key) || self.previous.contains(&key)
    }

    /// Ids remembered now.
    pub(super) fn len(&self) -> usize {
        self.current.len() + self.previous.len()
    }

    /// Forgets what is past its time: at a turn, the previous generation goes and the current
    /// one takes its place (twice over if two turns passed). Also called by the heartbeat, so a
    /// peer that went quiet does not keep its ids.
    pub(super) fn turn(&mut self, now: Instant, ttl: Duration) {
        let Some(at) = self.turn_at else { return };
        if now < at {
            return;
        }
        self.previous = std::mem::take(&mut self.current);
        if now >= at + ttl || self.previous.is_empty() {
            self.previous = HashSet::new();
        }
        self.turn_at = if self.previous.is_empty() { None } else { Some(now + ttl) };
    }
}

/// What an IDONTWANT is remembered by: the id's first 8 bytes. Ids are SHA-256 outputs, so two
/// messages share a key by chance about once in 2^64; and a key a peer makes collide on purpose
/// only withholds a message from that peer itself, which it could ask for with IWANT anyway.
fn key(id: &MessageId) -> u64 {
    let mut first = [0u8; 8];
    first.copy_from_slice(&id.0[..8]);
    u64::from_le_bytes(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(3);

    fn id(n: u8) -> MessageId {
        crate::bytes::Bytes32([n; 32])
    }

    #[test]
    fn an_id_is_kept_for_at_least_the_ttl_and_at_most_twice_it() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut d = DontWant::default();
        assert!(d.insert(t0, TTL, &id(1), 10));
        assert!(d.insert(t0 + 2 * s, TTL, &id(2), 10));
        assert!(d.contains(t0 + 2 * s, TTL, &id(1)));
        // The first turn (t0 + 3 s) moves both to the previous generation.
        assert!(d.contains(t0 + 3 * s, TTL, &id(1)));
        assert!(d.insert(t0 + 4 * s, TTL, &id(3), 10));
        assert!(d.contains(t0 + 5 * s, TTL, &id(2)), "id 2 is kept its full 3 s");
        // The second turn (t0 + 6 s) forgets ids 1 and 2, keeps id 3.
        assert!(!d.contains(t0 + 6 * s, TTL, &id(1)));
        assert!(!d.contains(t0 + 6 * s, TTL, &id(2)));
        assert!(d.contains(t0 + 6 * s, TTL, &id(3)));
        assert_eq!(d.len(), 1);
        // Long quiet: everything goes at once, and nothing is scheduled any more.
        d.turn(t0 + 60 * s, TTL);
        assert_eq!(d.len(), 0);
        assert_eq!(d.turn_at, None);
    }

    #[test]
    fn at_its_cap_a_peer_loses_its_older_ids_first_then_is_refused() {
        let t0 = Instant::now();
        let mut d = DontWant::default();
        for n in 0..4 {
            assert!(d.insert(t0, TTL, &id(n), 4));
        }
        assert!(!d.insert(t0, TTL, &id(9), 4), "the current generation is full");
        assert!(d.insert(t0, TTL, &id(0), 4), "an id it has is no new entry");
        assert_eq!(d.len(), 4);
        // After a turn the four are the previous generation; a new id forgets them.
        let later = t0 + TTL;
        assert!(d.insert(later, TTL, &id(9), 4));
        assert_eq!(d.len(), 1);
        assert!(!d.contains(later, TTL, &id(0)));
        assert!(d.contains(later, TTL, &id(9)));
    }

    #[test]
    fn at_its_cap_an_id_said_again_moves_forward_and_the_older_ones_stay() {
        let t0 = Instant::now();
        let mut d = DontWant::default();
        assert!(d.insert(t0, TTL, &id(0), 4) && d.insert(t0, TTL, &id(1), 4));
        let later = t0 + TTL;
        assert!(d.insert(later, TTL, &id(2), 4) && d.insert(later, TTL, &id(3), 4));
        assert_eq!(d.len(), 4);
        // id 1 again: it joins the current generation, and id 0 is not given up for it.
        assert!(d.insert(later, TTL, &id(1), 4));
        assert_eq!(d.len(), 4);
        assert!(d.contains(later, TTL, &id(0)));
        // A new id at the cap forgets the older generation (id 0), not id 1.
        assert!(d.insert(later, TTL, &id(4), 4));
        assert!(!d.contains(later, TTL, &id(0)));
        assert!(d.contains(later + TTL - Duration::from_millis(1), TTL, &id(1)));
    }
}
