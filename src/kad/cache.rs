//! Records fetched by our own GETs, kept so a repeated GET answers from the node itself
//! (issue: persistent records, "hot tier"). Only records that passed `records::
//! validate_for_key` (the hash of an immutable value, the signature of a mutable one) are
//! put here, so the cache never serves anything unchecked.
//!
//! Bounded in bytes and in entries; the least recently used goes first. A FIND_VALUE answer
//! does not carry the record's remaining lifetime, so a copy lives at most `ttl` here (by
//! default 10 min, well inside any lifetime an originator keeps alive by republishing).
//! Immutable records are answered from it; a mutable one only seeds the next GET's result
//! (a newer sequence number may exist on the network).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::lru::LruOrder;
use super::records;
use crate::wire::messages::{Key, Record};

/// Settings of the GET cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheConfig {
    /// Value and salt bytes held at most (0 turns the cache off).
    pub max_bytes: usize,
    /// Records held at most.
    pub max_entries: usize,
    /// How long a fetched copy is kept.
    pub ttl: Duration,
}

impl CacheConfig {
    /// 4 MiB, 1,024 records, 10 min.
    pub const DEFAULT: CacheConfig =
        CacheConfig { max_bytes: 4 << 20, max_entries: 1024, ttl: Duration::from_secs(600) };
}

/// Counters of the cache.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Records held now.
    pub entries: usize,
    /// Bytes held now.
    pub bytes: usize,
    /// GETs answered from the cache.
    pub hits: u64,
    /// GETs that found nothing here (nor in the store).
    pub misses: u64,
    /// Records pushed out to make room.
    pub evicted: u64,
}

#[derive(Debug, Clone)]
struct Cached {
    record: Record,
    expires_at: Instant,
    used: u64,
}

/// The cache. See the module doc.
#[derive(Debug, Clone)]
pub struct RecordCache {
    config: CacheConfig,
    entries: BTreeMap<Key, Cached>,
    /// Least recently used first, and the bytes held.
    order: LruOrder,
    stats: CacheStats,
}

fn size(record: &Record) -> usize {
    records::value_len(record) + records::salt_len(record)
}

impl RecordCache {
    /// An empty cache.
    pub fn new(config: CacheConfig) -> RecordCache {
        RecordCache {
            config,
            entries: BTreeMap::new(),
            order: LruOrder::default(),
            stats: CacheStats::default(),
        }
    }

    /// The unexpired copy of `key`, marked used; counts a hit or a miss.
    pub fn get(&mut self, now: Instant, key: &Key) -> Option<Record> {
        let expired = self.entries.get(key).is_some_and(|c| c.expires_at <= now);
        if expired {
            self.remove(key);
        }
        let Some(c) = self.entries.get_mut(key) else {
            self.stats.misses += 1;
            return None;
        };
        c.used = self.order.touch(c.used, *key);
        self.stats.hits += 1;
        Some(c.record.clone())
    }

    /// Keeps `record`, found valid under `key`; a mutable one replaces a lower sequence only.
    /// A record larger than the whole cache is not kept.
    pub fn insert(&mut self, now: Instant, key: Key, record: Record) {
        let bytes = size(&record);
        if bytes > self.config.max_bytes || self.config.max_entries == 0 {
            return;
        }
        if let Some(old) = self.entries.get(&key) {
            if let (Record::Mutable(old), Record::Mutable(new)) = (&old.record, &record) {
                if new.seq < old.seq {
                    return;
                }
            }
            self.remove(&key);
        }
        while self.order.bytes() + bytes > self.config.max_bytes
            || self.entries.len() >= self.config.max_entries
        {
            let Some((_, oldest)) = self.order.pop_oldest() else { break };
            if let Some(c) = self.entries.remove(&oldest) {
                self.order.unaccount(size(&c.record));
            }
            self.stats.evicted += 1;
        }
        let used = self.order.insert(key, bytes);
        let expires_at = now + self.config.ttl;
        self.entries.insert(key, Cached { record, expires_at, used });
    }

    fn remove(&mut self, key: &Key) {
        if let Some(c) = self.entries.remove(key) {
            self.order.remove(c.used, size(&c.record));
        }
    }

    /// The counters and gauges.
    pub fn stats(&self) -> CacheStats {
        CacheStats { entries: self.entries.len(), bytes: self.order.bytes(), ..self.stats }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Keypair;
    use crate::wire::messages::MutableRecord;

    fn immutable(n: u8, len: usize) -> (Key, Record) {
        let r = Record::Immutable { value: vec![n; len].into() };
        (r.key(), r)
    }

    const SMALL: CacheConfig =
        CacheConfig { max_bytes: 100, max_entries: 3, ttl: Duration::from_secs(10) };

    #[test]
    fn a_copy_is_served_until_its_ttl_and_counted() {
        let t0 = Instant::now();
        let mut c = RecordCache::new(SMALL);
        let (k, r) = immutable(1, 10);
        assert_eq!(c.get(t0, &k), None);
        c.insert(t0, k, r.clone());
        assert_eq!(c.get(t0 + Duration::from_secs(9), &k), Some(r));
        assert_eq!(c.get(t0 + Duration::from_secs(10), &k), None, "expired");
        let s = c.stats();
        assert_eq!((s.hits, s.misses, s.entries, s.bytes), (1, 2, 0, 0));
    }

    #[test]
    fn the_least_recently_used_goes_first_when_bytes_or_entries_run_out() {
        let t0 = Instant::now();
        let mut c = RecordCache::new(SMALL);
        let (a, ra) = immutable(1, 40);
        let (b, rb) = immutable(2, 40);
        let (d, rd) = immutable(3, 40);
        c.insert(t0, a, ra);
        c.insert(t0, b, rb.clone());
        assert!(c.get(t0, &a).is_some()); // b is now the least recently used
        c.insert(t0, d, rd); // 120 > 100 bytes: b goes
        assert!(c.get(t0, &b).is_none());
        assert!(c.get(t0, &a).is_some() && c.get(t0, &d).is_some());
        assert_eq!((c.stats().bytes, c.stats().evicted), (80, 1));
        // A record larger than the cache is not kept and evicts nothing.
        let (big, rbig) = immutable(4, 101);
        c.insert(t0, big, rbig);
        assert_eq!((c.stats().entries, c.stats().evicted), (2, 1));
        // The entry bound.
        for n in 5..9 {
            let (k, r) = immutable(n, 1);
            c.insert(t0, k, r);
        }
        assert_eq!(c.stats().entries, 3);
    }

    #[test]
    fn a_mutable_copy_never_goes_back_in_sequence() {
        let t0 = Instant::now();
        let mut c = RecordCache::new(SMALL);
        let kp = Keypair::from_seed([1; 32]);
        let v2 = Record::Mutable(MutableRecord::sign(&kp, b"s".to_vec(), 2, b"two".to_vec()));
        let v1 = Record::Mutable(MutableRecord::sign(&kp, b"s".to_vec(), 1, b"one".to_vec()));
        let key = v2.key();
        c.insert(t0, key, v2.clone());
        c.insert(t0, key, v1);
        assert_eq!(c.get(t0, &key), Some(v2));
    }
}
