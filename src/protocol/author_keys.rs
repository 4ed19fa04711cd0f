//! The decoded public keys of recent gossip authors, shared by the workers: checking a message
//! by an author seen lately skips decoding its key, about a tenth of a signature check
//! (benches/identity.rs: `ed25519/verify_1KiB` against `ed25519/verify_1KiB_decoded_key`).
//!
//! Direct-mapped: a key has one slot, chosen by its first two bytes, and a new key replaces
//! whatever held its slot. So the cache is bounded (`slots` keys of about 200 bytes, each
//! allocated when first used: an empty slot costs a pointer), each look-up is one slot under a
//! lock held for a copy, and there is no eviction order to keep.
//! Keys chosen to share a slot only evict each other, which costs what no cache costs: one
//! decoding. Only keys that pass the checks of proto-spec/identity.md §1 are kept.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::identity::{SignatureError, StrictKey};

/// Slots by default: 512 keys, 4 KiB empty and about 100 KiB full.
pub const DEFAULT_SLOTS: usize = 512;

/// A bounded cache of decoded author keys; see the module doc.
#[derive(Debug)]
pub struct AuthorKeys {
    slots: Mutex<Vec<Option<Box<StrictKey>>>>,
    hits: AtomicU64,
    misses: AtomicU64,
}

/// What the cache did, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AuthorKeyStats {
    /// Look-ups answered from a slot.
    pub hits: u64,
    /// Look-ups that decoded the key (and kept it if it passed).
    pub misses: u64,
    /// Keys the cache can hold.
    pub slots: usize,
}

impl AuthorKeys {
    /// A cache of `slots` keys (at least one).
    pub fn new(slots: usize) -> AuthorKeys {
        AuthorKeys {
            slots: Mutex::new(vec![None; slots.max(1)]),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// `public_key` decoded and checked, from its slot if it holds it.
    pub fn get(&self, public_key: &[u8; 32]) -> Result<StrictKey, SignatureError> {
        let slot = usize::from(u16::from_le_bytes([public_key[0], public_key[1]]));
        {
            let slots = self.lock();
            let slot = slot % slots.len();
            if let Some(key) = slots[slot].as_deref().filter(|k| k.as_bytes() == public_key) {
                self.hits.fetch_add(1, Ordering::Relaxed);
                return Ok(*key);
            }
        }
        // Decoded outside the lock: the other workers go on meanwhile.
        self.misses.fetch_add(1, Ordering::Relaxed);
        let key = StrictKey::new(public_key)?;
        let mut slots = self.lock();
        let slot = slot % slots.len();
        match &mut slots[slot] {
            Some(held) => **held = key,
            empty => *empty = Some(Box::new(key)),
        }
        Ok(key)
    }

    /// Counters and size.
    pub fn stats(&self) -> AuthorKeyStats {
        AuthorKeyStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            slots: self.lock().len(),
        }
    }

    /// The slots; a panic elsewhere while they were held leaves them consistent (each write
    /// is one slot), so a poisoned lock is taken as is.
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Option<Box<StrictKey>>>> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Keypair;

    #[test]
    fn a_known_author_is_answered_from_its_slot() {
        let keys = AuthorKeys::new(8);
        let a = Keypair::from_seed([1; 32]).public_key();
        assert_eq!(keys.get(&a).unwrap().as_bytes(), &a);
        assert_eq!(keys.get(&a).unwrap().as_bytes(), &a);
        assert_eq!(keys.stats(), AuthorKeyStats { hits: 1, misses: 1, slots: 8 });
    }

    #[test]
    fn keys_sharing_a_slot_replace_each_other_and_are_never_confused() {
        // One slot: every key shares it.
        let keys = AuthorKeys::new(1);
        let a = Keypair::from_seed([1; 32]).public_key();
        let b = Keypair::from_seed([2; 32]).public_key();
        for _ in 0..3 {
            assert_eq!(keys.get(&a).unwrap().as_bytes(), &a);
            assert_eq!(keys.get(&b).unwrap().as_bytes(), &b);
        }
        assert_eq!(keys.stats(), AuthorKeyStats { hits: 0, misses: 6, slots: 1 });
    }

    #[test]
    fn a_key_that_fails_its_checks_is_refused_each_time_and_never_kept() {
        let keys = AuthorKeys::new(4);
        let mut identity = [0u8; 32];
        identity[0] = 1;
        for _ in 0..2 {
            assert_eq!(keys.get(&identity).err(), Some(SignatureError::KeySmallOrder));
        }
        assert_eq!(keys.stats().hits, 0);
        assert!(keys.lock().iter().all(Option::is_none));
    }
}
