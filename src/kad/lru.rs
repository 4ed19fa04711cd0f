//! A recency order of keys and the bytes they hold, least recently used first: the store's
//! hot tier (which values are in memory) and the GET cache use it. The owner decides what
//! leaves; this only keeps the order and the count.

use std::collections::BTreeMap;

use crate::wire::messages::Key;

/// Keys of the values in memory by a use stamp, and their bytes.
#[derive(Debug, Default, Clone)]
pub(super) struct LruOrder {
    order: BTreeMap<u64, Key>,
    clock: u64,
    bytes: usize,
}

impl LruOrder {
    /// Adds `key` (holding `bytes`) as the most recently used; its stamp.
    pub(super) fn insert(&mut self, key: Key, bytes: usize) -> u64 {
        self.clock += 1;
        self.order.insert(self.clock, key);
        self.bytes += bytes;
        self.clock
    }

    /// Takes out the entry at `stamp`, holding `bytes`.
    pub(super) fn remove(&mut self, stamp: u64, bytes: usize) {
        if self.order.remove(&stamp).is_some() {
            self.bytes = self.bytes.saturating_sub(bytes);
        }
    }

    /// Marks the entry at `stamp` used now; its new stamp.
    pub(super) fn touch(&mut self, stamp: u64, key: Key) -> u64 {
        if self.order.remove(&stamp).is_none() {
            return stamp;
        }
        self.clock += 1;
        self.order.insert(self.clock, key);
        self.clock
    }

    /// Takes the least recently used entry out of the order (its bytes stay counted until
    /// [`LruOrder::unaccount`], or it goes back with [`LruOrder::restore`]).
    pub(super) fn pop_oldest(&mut self) -> Option<(u64, Key)> {
        self.order.pop_first()
    }

    /// Bytes of an entry taken out with `pop_oldest` that left memory.
    pub(super) fn unaccount(&mut self, bytes: usize) {
        self.bytes = self.bytes.saturating_sub(bytes);
    }

    /// Puts back an entry taken out with `pop_oldest` that stays.
    pub(super) fn restore(&mut self, stamp: u64, key: Key) {
        self.order.insert(stamp, key);
    }

    /// Bytes held by the keys in the order.
    pub(super) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Keys in the order.
    pub(super) fn len(&self) -> usize {
        self.order.len()
    }
}
