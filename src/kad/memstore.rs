//! The DHT record store: records and provider entries a node holds for others and for itself,
//! with lifetimes, per-peer quotas and global caps (proto-spec/records.md §3 to §5).
//!
//! [`MemoryStore`] is what the Kademlia core holds: the index of every record in memory, with
//! values in a hot tier and, with a data directory, the rest read back from the node's log
//! (`crate::store`). It is sans-IO: time is a `now` argument, and every map is a `BTreeMap`,
//! so equal inputs give equal states and equal iteration orders.
//!
//! Accounting. A record is *charged* to its [`Origin`]: a peer's records count toward that
//! peer's quota (`per_peer_records`, `per_peer_bytes`), toward the quota of the subnet its
//! connection came from (`per_subnet_records`, `per_subnet_bytes`: ids are free, addresses are
//! not) and toward the global caps (`max_records`, `max_bytes`); our own (`Origin::Local`)
//! count toward the global caps only.
//!
//! Full. A store that knows its node's id ([`MemoryStore::for_node`]) and is at a global cap
//! makes room for a record by evicting peers' records whose keys are farther from our id than
//! its key, farthest first: the records a node is responsible for are the ones near it
//! (Kademlia stores on the k closest), so a flood of far keys cannot keep near ones out. A
//! record that would need a nearer one evicted is refused (`StorageFull`); our own are never
//! evicted.
//! A record's size is its value length plus its salt length; keys, signatures and bookkeeping
//! are not counted, as they are fixed per record and bounded by `max_records`. Every
//! successful put charges the record to the putter, so a replacement or refresh by another
//! peer moves the charge, and quotas are checked against the totals *after* the held record's
//! charge is released.
//!
//! Lifetimes. A record lives until `expires_at` (exclusive) and is treated as absent from
//! then on, even before [`RecordStore::expire`] deletes it. Expiry instants are kept in an ordered
//! index, so `expire` costs O(expired · log n) and `next_expiry` O(log n).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use super::records::{self, RecordError, Replace};
use super::routing::Subnet;
use crate::identity::{Distance, NodeId};
use crate::wire::messages::{
    Key, PeerInfo, Record, MAX_ADDRS_PER_PEER, MAX_PEERS_PER_RESPONSE, MAX_VALUE_BYTES,
};

/// Evicted keys kept for [`MemoryStore::take_evicted`] at most (the DHT takes them after
/// every put, so this is only a backstop).
const MAX_EVICTED_UNTAKEN: usize = 1024;

/// Limits of a store. Every field is a hard cap; see the module doc for what counts.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct StoreConfig {
    /// Records held in all.
    pub max_records: usize,
    /// Record bytes (value + salt) held in all.
    pub max_bytes: usize,
    /// Records one peer may have stored here.
    pub per_peer_records: usize,
    /// Record bytes (value + salt) one peer may have stored here.
    pub per_peer_bytes: usize,
    /// Records the peers of one /24 (IPv6 /64) may have stored here, all ids together
    /// (loopback is exempt, so a one-host devnet works).
    pub per_subnet_records: usize,
    /// Record bytes the peers of one /24 (IPv6 /64) may have stored here.
    pub per_subnet_bytes: usize,
    /// Provider entries of one key from the peers of one /24 (IPv6 /64): a subnet cannot
    /// fill a key's provider list with ids of its own.
    pub max_providers_per_key_per_subnet: usize,
    /// Largest value accepted (records.md §3 step 6); values above `MAX_VALUE_BYTES` are
    /// refused whatever this says.
    pub max_value_bytes: usize,
    /// Longest record lifetime granted; longer requests are shortened to it.
    pub max_ttl: Duration,
    /// Providers kept per key; a new provider for a full key is refused (`StorageFull`).
    pub max_providers_per_key: usize,
    /// Provider entries held in all.
    pub max_provider_records: usize,
    /// Provider entries one provider may have here (the provider is the sender, records.md
    /// §5).
    pub per_peer_provider_records: usize,
    /// Longest provider lifetime granted.
    pub max_provider_ttl: Duration,
    /// Value bytes kept in memory (the hot tier); past it the least recently used values
    /// that are already in the log go *cold*: only their bookkeeping stays, and the DHT reads
    /// the value back from the log when asked for it. `usize::MAX` (no log): all stay hot.
    pub hot_max_bytes: usize,
    /// Every put pins its record hot until [`MemoryStore::written`] says its log entry is
    /// written (a value must not go cold before it can be read back).
    pub pin_writes: bool,
}

impl StoreConfig {
    /// The defaults: 16 384 records and 64 MiB in all, 256 records and 4 MiB per peer,
    /// 36 h lifetimes, 20 providers per key, 16 384 provider entries (256 per provider).
    pub const DEFAULT: StoreConfig = StoreConfig {
        max_records: 16_384,
        max_bytes: 64 << 20,
        per_peer_records: 256,
        per_peer_bytes: 4 << 20,
        per_subnet_records: 1_024,
        per_subnet_bytes: 16 << 20,
        max_providers_per_key_per_subnet: 4,
        max_value_bytes: MAX_VALUE_BYTES,
        max_ttl: Duration::from_secs(36 * 3600),
        max_providers_per_key: MAX_PEERS_PER_RESPONSE,
        max_provider_records: 16_384,
        per_peer_provider_records: 256,
        max_provider_ttl: Duration::from_secs(36 * 3600),
        hot_max_bytes: usize::MAX,
        pin_writes: false,
    };
}

impl Default for StoreConfig {
    fn default() -> StoreConfig {
        StoreConfig::DEFAULT
    }
}

/// Who asked for a record to be stored, and so who is charged for it.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub enum Origin {
    /// This node (its own puts): counts toward the global caps only.
    Local,
    /// The authenticated peer that sent the STORE (not the record's author, records.md §3
    /// step 7), and the subnet its connection came from (`None`: loopback, exempt): counts
    /// toward both quotas and the global caps.
    Peer(NodeId, Option<Subnet>),
}

/// A record as held, with its bookkeeping.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct StoredRecord {
    /// The key, derived from the record.
    pub key: Key,
    /// The record.
    pub record: Record,
    /// Who the record is charged to: whoever stored or refreshed it last.
    pub origin: Origin,
    /// When this content was first stored (a refresh keeps it; a replacement resets it).
    pub stored_at: Instant,
    /// The record is absent from this instant on.
    pub expires_at: Instant,
    /// The value's length, also while it is cold.
    pub value_len: usize,
    /// The value is not in memory: `record` holds an empty value, and the DHT reads the
    /// record back from the log ([`MemoryStore::warm`]).
    pub cold: bool,
    /// Its place in the hot tier's recency order.
    stamp: u64,
    /// Log writes of it not yet done; a pinned record stays hot.
    pins: u32,
}

impl StoredRecord {
    /// Bytes charged for the record: value length plus salt length.
    pub fn charge_bytes(&self) -> usize {
        self.value_len + records::salt_len(&self.record)
    }

    /// Seconds of life left at `now`, rounded down: the `ttl_secs` to send when replicating
    /// (records.md §4 forbids sending more).
    pub fn remaining_ttl_secs(&self, now: Instant) -> u32 {
        let secs = self.expires_at.saturating_duration_since(now).as_secs();
        u32::try_from(secs).unwrap_or(u32::MAX)
    }
}

/// What a successful put did.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum PutOutcome {
    /// No record was held under the key: the record is new here.
    Stored,
    /// A mutable record with a higher `seq` replaced the held one.
    Replaced,
    /// The same record was already held: only its lifetime may have grown.
    Refreshed,
}

/// Gauges and counters for the metrics layer.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct StoreStats {
    /// Records held now (expired ones not yet deleted included).
    pub records: usize,
    /// Record bytes (value + salt) held now.
    pub bytes: usize,
    /// Provider entries held now.
    pub provider_records: usize,
    /// Puts that stored a new record.
    pub stored: u64,
    /// Puts that replaced a record with a newer one.
    pub replaced: u64,
    /// Puts that refreshed a held record.
    pub refreshed: u64,
    /// Records deleted by `remove`.
    pub removed: u64,
    /// Records deleted because they expired.
    pub expired: u64,
    /// Provider entries added.
    pub providers_added: u64,
    /// Provider entries refreshed by a new announcement of the same provider.
    pub providers_refreshed: u64,
    /// Provider entries deleted because they expired.
    pub providers_expired: u64,
    /// Peers' records evicted to make room for a record nearer our id.
    pub evicted_far: u64,
    /// Value bytes in memory now (the hot tier).
    pub hot_bytes: usize,
    /// Records whose value is in the log only now.
    pub cold_records: usize,
    /// Values moved out of memory.
    pub cooled: u64,
    /// Values read back from the log into memory.
    pub warmed: u64,
    /// Refused puts and provider announcements, indexed by [`RecordError::index`].
    pub rejected: [u64; RecordError::COUNT],
}

impl StoreStats {
    /// Refusals for `reason`.
    pub fn rejected_for(&self, reason: RecordError) -> u64 {
        self.rejected[reason.index()]
    }

    /// Refusals for any reason.
    pub fn rejected_total(&self) -> u64 {
        self.rejected.iter().sum()
    }
}

/// Where the DHT keeps records and provider entries.
///
/// Every method takes the time it acts at; nothing reads a clock. Call [`RecordStore::expire`] no
/// later than [`RecordStore::next_expiry`] to free space: until then expired entries are invisible
/// to `get` and `providers` but still occupy their quota.
pub trait RecordStore {
    /// The unexpired record under `key`.
    fn get(&self, now: Instant, key: &Key) -> Option<&StoredRecord>;

    /// Validates `record` and stores it under its key for `ttl` (shortened to `max_ttl`),
    /// applying records.md §3 in order: bounds, `ttl = 0`, signature, sequence,
    /// compare-and-swap (`expected_seq`; with no record held only `None` matches), value
    /// size, quotas of `origin`, global caps. On error nothing changes except the rejection
    /// counter.
    fn put(
        &mut self,
        now: Instant,
        origin: Origin,
        record: Record,
        ttl: Duration,
        expected_seq: Option<u64>,
    ) -> Result<(Key, PutOutcome), RecordError>;

    /// [`RecordStore::put`] for a record whose signature a worker has already verified (the DHT
    /// moves that check off the reactor thread); every other rule applies unchanged.
    fn put_verified(
        &mut self,
        now: Instant,
        origin: Origin,
        record: Record,
        ttl: Duration,
        expected_seq: Option<u64>,
    ) -> Result<(Key, PutOutcome), RecordError>;

    /// Deletes the record under `key`, expired or not, and returns it.
    fn remove(&mut self, key: &Key) -> Option<StoredRecord>;

    /// Records that `provider` provides `key` for `ttl` (shortened to `max_provider_ttl`).
    /// The caller has checked that the provider is the sender ([`records::check_provider`]).
    /// A known provider is refreshed (new addresses, expiry never shortened); a new one is
    /// refused when the key already has `max_providers_per_key` providers (`StorageFull`:
    /// first come keeps its place until it expires, so a flood of new ids cannot evict
    /// providers that keep announcing), when the provider has `per_peer_provider_records`
    /// (`QuotaExceeded`) or when `max_provider_records` are held (`StorageFull`). Expired
    /// provider entries are deleted first.
    fn add_provider(
        &mut self,
        now: Instant,
        key: Key,
        provider: PeerInfo,
        ttl: Duration,
    ) -> Result<(), RecordError> {
        self.add_provider_from(now, key, provider, None, ttl)
    }

    /// [`RecordStore::add_provider`] from a peer whose connection came from `net` (`None`:
    /// ourselves, or loopback): a new provider is also refused (`QuotaExceeded`) when the key
    /// already has `max_providers_per_key_per_subnet` providers from that subnet.
    fn add_provider_from(
        &mut self,
        now: Instant,
        key: Key,
        provider: PeerInfo,
        net: Option<Subnet>,
        ttl: Duration,
    ) -> Result<(), RecordError>;

    /// Unexpired providers of `key` in id order, at most `max_providers_per_key` and at most
    /// `MAX_PEERS_PER_RESPONSE`.
    fn providers(&self, now: Instant, key: &Key) -> Vec<PeerInfo>;

    /// Deletes records and provider entries whose expiry is at or before `now`; returns how
    /// many were deleted. Cheap when nothing is due.
    fn expire(&mut self, now: Instant) -> usize;

    /// The earliest expiry of any record or provider entry: when `expire` has work next.
    fn next_expiry(&self) -> Option<Instant>;

    /// Every held key in key order, for republishing and replication (expired records not
    /// yet deleted included: call `expire` first).
    fn keys(&self) -> Vec<Key>;

    /// Up to `limit` held keys after `after` (from the first with `None`), in key order: a
    /// cursor for work spread over several calls.
    fn keys_after(&self, after: Option<&Key>, limit: usize) -> Vec<Key>;

    /// Records held (expired ones not yet deleted included).
    fn len(&self) -> usize;

    /// Whether no record is held.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Gauges and counters.
    fn stats(&self) -> StoreStats;
}

/// The record store, bounded by its [`StoreConfig`].
#[derive(Debug)]
pub struct MemoryStore {
    config: StoreConfig,
    records: BTreeMap<Key, StoredRecord>,
    /// `(expires_at, key)` of every record.
    expiry: BTreeSet<(Instant, Key)>,
    /// Records and bytes charged to each peer; a peer with nothing charged has no entry.
    usage: BTreeMap<NodeId, Usage>,
    /// The same per subnet.
    subnet_usage: BTreeMap<Subnet, Usage>,
    /// Our id, when known: full, the store keeps the keys nearest it.
    local: Option<NodeId>,
    /// `(distance to our id, key)` of every record charged to a peer, when `local` is known.
    by_distance: BTreeSet<(Distance, Key)>,
    bytes: usize,
    providers: BTreeMap<Key, BTreeMap<NodeId, ProviderEntry>>,
    /// `(expires_at, key, provider)` of every provider entry.
    provider_expiry: BTreeSet<(Instant, Key, NodeId)>,
    /// Provider entries of each provider; no entry at zero.
    provider_usage: BTreeMap<NodeId, usize>,
    provider_count: usize,
    /// The values in memory, in recency order.
    hot: super::lru::LruOrder,
    /// Keys evicted for nearer ones since the last [`MemoryStore::take_evicted`] (kept only
    /// when the records are in a log, which must forget them too).
    evicted: Vec<Key>,
    stats: StoreStats,
}

impl MemoryStore {
    /// An empty store with these limits.
    pub fn new(config: StoreConfig) -> MemoryStore {
        MemoryStore {
            config,
            records: BTreeMap::new(),
            expiry: BTreeSet::new(),
            usage: BTreeMap::new(),
            subnet_usage: BTreeMap::new(),
            local: None,
            by_distance: BTreeSet::new(),
            bytes: 0,
            providers: BTreeMap::new(),
            provider_expiry: BTreeSet::new(),
            provider_usage: BTreeMap::new(),
            provider_count: 0,
            hot: super::lru::LruOrder::default(),
            evicted: Vec::new(),
            stats: StoreStats::default(),
        }
    }

    /// An empty store of the node `local`: when full, it keeps the keys nearest `local`
    /// (module doc, "Full").
    pub fn for_node(local: NodeId, config: StoreConfig) -> MemoryStore {
        MemoryStore { local: Some(local), ..MemoryStore::new(config) }
    }

    /// The limits this store enforces.
    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    /// Records and bytes charged to `peer` now.
    pub fn peer_usage(&self, peer: &NodeId) -> (usize, usize) {
        self.usage.get(peer).map_or((0, 0), |u| (u.records, u.bytes))
    }

    /// `try_put`, counting a refusal by its reason.
    fn counted_put(
        &mut self,
        now: Instant,
        origin: Origin,
        record: Record,
        ttl: Duration,
        expected_seq: Option<u64>,
        signature: Signature,
    ) -> Result<(Key, PutOutcome), RecordError> {
        let result = self.try_put(now, origin, record, ttl, expected_seq, signature);
        if let Err(e) = &result {
            self.stats.rejected[e.index()] += 1;
        }
        result
    }

    fn try_put(
        &mut self,
        now: Instant,
        origin: Origin,
        record: Record,
        ttl: Duration,
        expected_seq: Option<u64>,
        signature: Signature,
    ) -> Result<(Key, PutOutcome), RecordError> {
        records::check_bounds(&record)?;
        let expires_at = expiry_at(now, ttl, self.config.max_ttl)?;
        let key = record.key();
        if signature == Signature::Check {
            records::check_signature(&record)?;
        }
        let held = self.records.get(&key);
        let live = held.filter(|h| now < h.expires_at);
        let outcome = match live {
            Some(h) => match check_replace_held(h, &record, expected_seq)? {
                Replace::Refresh => PutOutcome::Refreshed,
                Replace::Newer => PutOutcome::Replaced,
            },
            None => {
                records::check_absent(&record, expected_seq)?;
                PutOutcome::Stored
            }
        };
        records::check_value_size(&record, self.config.max_value_bytes)?;
        let bytes = charge_bytes(&record);
        let evict = match self.check_quota(origin, held, bytes) {
            Err(RecordError::StorageFull) if held.is_none() => {
                self.room_near(origin, &key, bytes).ok_or(RecordError::StorageFull)?
            }
            other => other.map(|()| Vec::new())?,
        };
        for far in evict {
            self.detach(&far);
            self.stats.evicted_far += 1;
            if self.config.pin_writes && self.evicted.len() < MAX_EVICTED_UNTAKEN {
                self.evicted.push(far);
            }
        }

        // Validation passed: from here on nothing fails.
        let previous = self.detach(&key);
        let value_len = records::value_len(&record);
        let pins = u32::from(self.config.pin_writes);
        let fresh = StoredRecord {
            key,
            record,
            origin,
            stored_at: now,
            expires_at,
            value_len,
            cold: false,
            stamp: 0,
            pins,
        };
        let stored = match (previous, outcome) {
            // The same content: the new copy carries the value, so a cold record is warm again.
            (Some(old), PutOutcome::Refreshed) => StoredRecord {
                expires_at: old.expires_at.max(expires_at),
                pins: old.pins + pins,
                stored_at: old.stored_at,
                ..fresh
            },
            (Some(old), PutOutcome::Replaced) => StoredRecord {
                expires_at: old.expires_at.max(expires_at),
                pins: old.pins + pins,
                ..fresh
            },
            (Some(_expired), PutOutcome::Stored) => {
                self.stats.expired += 1;
                fresh
            }
            (None, _) => fresh,
        };
        self.attach(stored);
        match outcome {
            PutOutcome::Stored => self.stats.stored += 1,
            PutOutcome::Replaced => self.stats.replaced += 1,
            PutOutcome::Refreshed => self.stats.refreshed += 1,
        }
        Ok((key, outcome))
    }

    /// records.md §3 step 7, against the totals once `held` (if any) is released.
    fn check_quota(
        &self,
        origin: Origin,
        held: Option<&StoredRecord>,
        bytes: usize,
    ) -> Result<(), RecordError> {
        if let Origin::Peer(peer, subnet) = origin {
            let (mut peer_records, mut peer_bytes) = self.peer_usage(&peer);
            if let Some(h) = held.filter(|h| h.origin.peer() == Some(peer)) {
                peer_records = peer_records.saturating_sub(1);
                peer_bytes = peer_bytes.saturating_sub(h.charge_bytes());
            }
            if peer_records >= self.config.per_peer_records
                || peer_bytes.saturating_add(bytes) > self.config.per_peer_bytes
            {
                return Err(RecordError::QuotaExceeded);
            }
            if let Some(net) = subnet {
                let used = self.subnet_usage.get(&net).copied().unwrap_or_default();
                let (mut records, mut used_bytes) = (used.records, used.bytes);
                if let Some(h) = held.filter(|h| h.origin.subnet() == Some(net)) {
                    records = records.saturating_sub(1);
                    used_bytes = used_bytes.saturating_sub(h.charge_bytes());
                }
                if records >= self.config.per_subnet_records
                    || used_bytes.saturating_add(bytes) > self.config.per_subnet_bytes
                {
                    return Err(RecordError::QuotaExceeded);
                }
            }
        }
        let (held_records, held_bytes) = held.map_or((0, 0), |h| (1, h.charge_bytes()));
        let records = self.records.len().saturating_sub(held_records);
        let total_bytes = self.bytes.saturating_sub(held_bytes);
        if records >= self.config.max_records
            || total_bytes.saturating_add(bytes) > self.config.max_bytes
        {
            return Err(RecordError::StorageFull);
        }
        Ok(())
    }

    /// The peers' records to evict, farthest from our id first, so that a new record under
    /// `key` of `bytes` from `origin` fits the global caps; `None` if that would take a record
    /// at least as near as `key`, or if this store does not know our id.
    fn room_near(&self, origin: Origin, key: &Key, bytes: usize) -> Option<Vec<Key>> {
        let local = self.local?;
        origin.peer()?;
        let near = key.distance(&local);
        let (mut records, mut total) = (self.records.len(), self.bytes);
        let mut evict = Vec::new();
        for &(distance, far) in self.by_distance.iter().rev() {
            if records < self.config.max_records
                && total.saturating_add(bytes) <= self.config.max_bytes
            {
                break;
            }
            if distance <= near || evict.len() >= MAX_EVICTIONS_PER_PUT {
                return None;
            }
            let freed = self.records.get(&far).map_or(0, StoredRecord::charge_bytes);
            records -= 1;
            total = total.saturating_sub(freed);
            evict.push(far);
        }
        let fits = records < self.config.max_records
            && total.saturating_add(bytes) <= self.config.max_bytes;
        fits.then_some(evict)
    }

    /// Inserts a record known not to be held, with its index entry and charge.
    fn attach(&mut self, stored: StoredRecord) {
        let bytes = stored.charge_bytes();
        if let Origin::Peer(peer, subnet) = stored.origin {
            let usage = self.usage.entry(peer).or_default();
            usage.records += 1;
            usage.bytes += bytes;
            if let Some(net) = subnet {
                let usage = self.subnet_usage.entry(net).or_default();
                usage.records += 1;
                usage.bytes += bytes;
            }
            if let Some(local) = self.local {
                self.by_distance.insert((stored.key.distance(&local), stored.key));
            }
        }
        self.bytes += bytes;
        self.expiry.insert((stored.expires_at, stored.key));
        let mut stored = stored;
        if !stored.cold {
            stored.stamp = self.hot.insert(stored.key, stored.value_len);
        }
        self.records.insert(stored.key, stored);
        self.cool_down();
    }

    /// Takes out the record under `key` with its index entry and charge.
    fn detach(&mut self, key: &Key) -> Option<StoredRecord> {
        let stored = self.records.remove(key)?;
        let bytes = stored.charge_bytes();
        if let Origin::Peer(peer, subnet) = stored.origin {
            release(&mut self.usage, &peer, bytes);
            if let Some(net) = subnet {
                release(&mut self.subnet_usage, &net, bytes);
            }
            if let Some(local) = self.local {
                self.by_distance.remove(&(stored.key.distance(&local), stored.key));
            }
        }
        self.bytes = self.bytes.saturating_sub(bytes);
        self.expiry.remove(&(stored.expires_at, stored.key));
        if !stored.cold {
            self.hot.remove(stored.stamp, stored.value_len);
        }
        Some(stored)
    }

    /// Moves the least recently used unpinned values out of memory until the hot tier fits
    /// `hot_max_bytes` (or only pinned ones are left).
    fn cool_down(&mut self) {
        let max = self.config.hot_max_bytes;
        if self.hot.bytes() <= max {
            return;
        }
        let mut pinned = Vec::new();
        while self.hot.bytes() > max {
            let Some((stamp, key)) = self.hot.pop_oldest() else { break };
            let Some(r) = self.records.get_mut(&key) else { continue };
            if r.pins > 0 {
                pinned.push((stamp, key));
                continue;
            }
            self.hot.unaccount(r.value_len);
            r.record = records::without_value(&r.record);
            r.cold = true;
            self.stats.cooled += 1;
        }
        // Pinned values stay, in their place (the tier may stay over until they are written).
        for (stamp, key) in pinned {
            self.hot.restore(stamp, key);
        }
    }

    /// The keys evicted for nearer ones since the last call (with `pin_writes`).
    pub fn take_evicted(&mut self) -> Vec<Key> {
        std::mem::take(&mut self.evicted)
    }

    /// Marks one log write of the record under `key` done: once none is left it may go cold.
    pub fn written(&mut self, key: &Key) {
        if let Some(r) = self.records.get_mut(key) {
            r.pins = r.pins.saturating_sub(1);
        }
        self.cool_down();
    }

    /// The record under `key` was just used: it is the last to go cold.
    pub fn touch(&mut self, key: &Key) {
        if let Some(r) = self.records.get_mut(key).filter(|r| !r.cold) {
            r.stamp = self.hot.touch(r.stamp, *key);
        }
    }

    /// Puts back the value of the cold record under `key`, read from the log: only if
    /// `record` is the one held (same key and, for a mutable record, same sequence number
    /// and signature). Whether it is hot now.
    pub fn warm(&mut self, key: &Key, record: Record) -> bool {
        let Some(r) = self.records.get_mut(key) else { return false };
        if !r.cold {
            return true;
        }
        let same = record.key() == *key
            && records::value_len(&record) == r.value_len
            && records::without_value(&record) == r.record;
        if !same {
            return false;
        }
        r.record = record;
        r.cold = false;
        r.stamp = self.hot.insert(*key, r.value_len);
        self.stats.warmed += 1;
        self.cool_down();
        true
    }

    fn try_add_provider(
        &mut self,
        now: Instant,
        key: Key,
        provider: PeerInfo,
        net: Option<Subnet>,
        ttl: Duration,
    ) -> Result<(), RecordError> {
        if provider.addrs.len() > MAX_ADDRS_PER_PEER {
            return Err(RecordError::TooManyAddrs);
        }
        let expires_at = expiry_at(now, ttl, self.config.max_provider_ttl)?;
        self.expire_providers(now);
        let id = provider.id;
        let entries = self.providers.get(&key);
        if let Some(old) = entries.and_then(|e| e.get(&id)) {
            // records.md §5: same provider, new addresses, lifetime never shortened.
            let expires_at = old.expires_at.max(expires_at);
            self.provider_expiry.remove(&(old.expires_at, key, id));
            self.provider_expiry.insert((expires_at, key, id));
            let net = old.net;
            self.providers
                .entry(key)
                .or_default()
                .insert(id, ProviderEntry { info: provider, expires_at, net });
            self.stats.providers_refreshed += 1;
            return Ok(());
        }
        if self.provider_usage.get(&id).copied().unwrap_or(0)
            >= self.config.per_peer_provider_records
        {
            return Err(RecordError::QuotaExceeded);
        }
        if let Some(net) = net {
            let same = entries.map_or(0, |e| e.values().filter(|p| p.net == Some(net)).count());
            if same >= self.config.max_providers_per_key_per_subnet {
                return Err(RecordError::QuotaExceeded);
            }
        }
        if entries.map_or(0, BTreeMap::len) >= self.config.max_providers_per_key
            || self.provider_count >= self.config.max_provider_records
        {
            return Err(RecordError::StorageFull);
        }
        self.providers
            .entry(key)
            .or_default()
            .insert(id, ProviderEntry { info: provider, expires_at, net });
        self.provider_expiry.insert((expires_at, key, id));
        *self.provider_usage.entry(id).or_default() += 1;
        self.provider_count += 1;
        self.stats.providers_added += 1;
        Ok(())
    }

    /// Deletes provider entries due at `now`; returns how many.
    fn expire_providers(&mut self, now: Instant) -> usize {
        let mut dropped = 0;
        while let Some(&(at, key, id)) = self.provider_expiry.first() {
            if at > now {
                break;
            }
            self.provider_expiry.pop_first();
            if self.remove_provider_entry(&key, &id) {
                dropped += 1;
            }
        }
        self.stats.providers_expired += dropped as u64;
        dropped
    }

    /// Deletes one provider entry (not its index entry); whether it was there.
    fn remove_provider_entry(&mut self, key: &Key, id: &NodeId) -> bool {
        let Some(entries) = self.providers.get_mut(key) else { return false };
        if entries.remove(id).is_none() {
            return false;
        }
        if entries.is_empty() {
            self.providers.remove(key);
        }
        self.provider_count = self.provider_count.saturating_sub(1);
        if let Some(n) = self.provider_usage.get_mut(id) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.provider_usage.remove(id);
            }
        }
        true
    }
}

/// Whether `try_put` still has to verify the record's signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Signature {
    Check,
    Verified,
}

impl RecordStore for MemoryStore {
    fn get(&self, now: Instant, key: &Key) -> Option<&StoredRecord> {
        self.records.get(key).filter(|r| now < r.expires_at)
    }

    fn put(
        &mut self,
        now: Instant,
        origin: Origin,
        record: Record,
        ttl: Duration,
        expected_seq: Option<u64>,
    ) -> Result<(Key, PutOutcome), RecordError> {
        self.counted_put(now, origin, record, ttl, expected_seq, Signature::Check)
    }

    fn put_verified(
        &mut self,
        now: Instant,
        origin: Origin,
        record: Record,
        ttl: Duration,
        expected_seq: Option<u64>,
    ) -> Result<(Key, PutOutcome), RecordError> {
        self.counted_put(now, origin, record, ttl, expected_seq, Signature::Verified)
    }

    fn remove(&mut self, key: &Key) -> Option<StoredRecord> {
        let removed = self.detach(key)?;
        self.stats.removed += 1;
        Some(removed)
    }

    fn add_provider_from(
        &mut self,
        now: Instant,
        key: Key,
        provider: PeerInfo,
        net: Option<Subnet>,
        ttl: Duration,
    ) -> Result<(), RecordError> {
        let result = self.try_add_provider(now, key, provider, net, ttl);
        if let Err(e) = &result {
            self.stats.rejected[e.index()] += 1;
        }
        result
    }

    fn providers(&self, now: Instant, key: &Key) -> Vec<PeerInfo> {
        let Some(entries) = self.providers.get(key) else { return Vec::new() };
        let limit = self.config.max_providers_per_key.min(MAX_PEERS_PER_RESPONSE);
        entries
            .values()
            .filter(|e| now < e.expires_at)
            .take(limit)
            .map(|e| e.info.clone())
            .collect()
    }

    fn expire(&mut self, now: Instant) -> usize {
        let mut dropped = 0;
        while let Some(&(at, key)) = self.expiry.first() {
            if at > now {
                break;
            }
            // Popped first, so that the loop ends even if the index and the map disagreed.
            self.expiry.pop_first();
            if self.detach(&key).is_some() {
                dropped += 1;
            }
        }
        self.stats.expired += dropped as u64;
        dropped + self.expire_providers(now)
    }

    fn next_expiry(&self) -> Option<Instant> {
        let record = self.expiry.first().map(|&(at, _)| at);
        let provider = self.provider_expiry.first().map(|&(at, _, _)| at);
        match (record, provider) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn keys(&self) -> Vec<Key> {
        self.records.keys().copied().collect()
    }

    fn keys_after(&self, after: Option<&Key>, limit: usize) -> Vec<Key> {
        use std::ops::Bound::{Excluded, Unbounded};
        let start = after.map_or(Unbounded, |k| Excluded(*k));
        self.records.range((start, Unbounded)).take(limit).map(|(k, _)| *k).collect()
    }

    fn len(&self) -> usize {
        self.records.len()
    }

    fn stats(&self) -> StoreStats {
        StoreStats {
            records: self.records.len(),
            bytes: self.bytes,
            provider_records: self.provider_count,
            hot_bytes: self.hot.bytes(),
            cold_records: self.records.len() - self.hot.len(),
            ..self.stats
        }
    }
}

/// Records and bytes charged to one peer or one subnet.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
struct Usage {
    records: usize,
    bytes: usize,
}

/// One provider of one key.
#[derive(Clone, PartialEq, Eq, Debug)]
struct ProviderEntry {
    info: PeerInfo,
    expires_at: Instant,
    /// The subnet of the connection that announced it (`None`: ours, or loopback).
    net: Option<Subnet>,
}

/// Takes one record of `bytes` off `owner`'s usage, dropping the entry at zero.
fn release<K: Ord>(usage: &mut BTreeMap<K, Usage>, owner: &K, bytes: usize) {
    if let Some(u) = usage.get_mut(owner) {
        u.records = u.records.saturating_sub(1);
        u.bytes = u.bytes.saturating_sub(bytes);
        if u.records == 0 {
            usage.remove(owner);
        }
    }
}

/// Most records one put may evict to make room (module doc, "Full"): a put is never an
/// unbounded amount of work.
const MAX_EVICTIONS_PER_PUT: usize = 64;

impl Origin {
    /// The peer a record is charged to, if any.
    pub fn peer(&self) -> Option<NodeId> {
        match self {
            Origin::Local => None,
            Origin::Peer(id, _) => Some(*id),
        }
    }

    /// The subnet a record is charged to, if any.
    pub fn subnet(&self) -> Option<Subnet> {
        match self {
            Origin::Local => None,
            Origin::Peer(_, net) => *net,
        }
    }
}

/// Bytes a record is charged: value plus salt.
fn charge_bytes(record: &Record) -> usize {
    records::value_len(record) + records::salt_len(record)
}

/// records.md §3 steps 4 and 5 against a held record whose value may be cold: equal keys of
/// immutable records mean equal values, and a mutable record of the same sequence number is
/// the same one exactly when its signature is (Ed25519 signatures are deterministic, so the
/// author signing the same value again gives the same signature).
fn check_replace_held(
    held: &StoredRecord,
    new: &Record,
    expected_seq: Option<u64>,
) -> Result<Replace, RecordError> {
    if !held.cold {
        return records::check_replace(&held.record, new, expected_seq);
    }
    let replace = records::check_replace(&held.record, &records::without_value(new), expected_seq)?;
    match (&held.record, new) {
        (Record::Mutable(h), Record::Mutable(n))
            if h.seq == n.seq && h.signature != n.signature =>
        {
            Err(RecordError::SequenceConflict)
        }
        _ => Ok(replace),
    }
}

/// `now + min(ttl, max)`; a zero `ttl` or an instant past the platform's range is `BadTtl`.
fn expiry_at(now: Instant, ttl: Duration, max: Duration) -> Result<Instant, RecordError> {
    if ttl.is_zero() {
        return Err(RecordError::BadTtl);
    }
    now.checked_add(ttl.min(max)).ok_or(RecordError::BadTtl)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bytes::ByteBuf;
    use crate::identity::Keypair;
    use crate::rng::Rng;
    use crate::wire::messages::{MutableRecord, MAX_SALT_BYTES};

    const HOUR: Duration = Duration::from_secs(3600);

    /// Small limits so that tests reach every cap with a handful of records.
    const SMALL: StoreConfig = StoreConfig {
        max_records: 6,
        max_bytes: 1000,
        per_peer_records: 3,
        per_peer_bytes: 300,
        per_subnet_records: 5,
        per_subnet_bytes: 500,
        max_providers_per_key_per_subnet: 2,
        max_value_bytes: 400,
        max_ttl: Duration::from_secs(10 * 3600),
        max_providers_per_key: 3,
        max_provider_records: 5,
        per_peer_provider_records: 4,
        max_provider_ttl: Duration::from_secs(2 * 3600),
        hot_max_bytes: usize::MAX,
        pin_writes: false,
    };

    /// SMALL with a hot tier of 100 value bytes, values pinned until written.
    const TIERED: StoreConfig = StoreConfig { hot_max_bytes: 100, pin_writes: true, ..SMALL };

    fn value_of(s: &MemoryStore, now: Instant, key: &Key) -> Option<usize> {
        s.get(now, key).filter(|r| !r.cold).map(|r| records::value_len(&r.record))
    }

    #[test]
    fn values_past_the_hot_tier_go_cold_least_recently_used_first_once_written() {
        let now = Instant::now();
        let mut s = MemoryStore::new(TIERED);
        let (a, b, c) = (immutable(&[1; 40]), immutable(&[2; 40]), immutable(&[3; 40]));
        for r in [&a, &b, &c] {
            s.put(now, Origin::Local, r.clone(), HOUR, None).unwrap();
        }
        // 120 bytes over a 100-byte tier, but none is written yet: all stay in memory.
        assert_eq!(s.stats().hot_bytes, 120);
        assert_eq!(s.stats().cold_records, 0);
        s.touch(&a.key()); // b is now the least recently used
        for r in [&b, &c, &a] {
            s.written(&r.key());
        }
        let st = s.stats();
        assert_eq!((st.hot_bytes, st.cold_records, st.cooled), (80, 1, 1));
        assert_eq!(value_of(&s, now, &b.key()), None, "b went cold");
        let cold = s.get(now, &b.key()).unwrap();
        assert!(cold.cold);
        // Its bookkeeping stays: its charge, its expiry, its key.
        assert_eq!((cold.value_len, cold.charge_bytes()), (40, 40));
        assert_eq!(s.stats().bytes, 120);
        assert_eq!(value_of(&s, now, &a.key()), Some(40));
        assert_accounting(&s);

        // Warming puts the value back (and pushes the least recently used out).
        assert!(s.warm(&b.key(), b.clone()));
        assert_eq!(value_of(&s, now, &b.key()), Some(40));
        assert_eq!(s.stats().cold_records, 1);
        assert_eq!(s.stats().warmed, 1);
        assert_accounting(&s);
    }

    #[test]
    fn only_the_record_held_warms_a_cold_one() {
        let now = Instant::now();
        let config = StoreConfig { hot_max_bytes: 0, ..TIERED };
        let mut s = MemoryStore::new(config);
        let v1 = mutable(1, b"s", 1, b"one");
        let key = v1.key();
        s.put(now, Origin::Local, v1.clone(), HOUR, None).unwrap();
        s.written(&key);
        assert!(s.get(now, &key).unwrap().cold);
        // Another sequence number, or the same one with another value, is not it.
        assert!(!s.warm(&key, mutable(1, b"s", 2, b"two")));
        assert!(!s.warm(&key, mutable(1, b"s", 1, b"uno")));
        assert!(!s.warm(&key, immutable(b"one")));
        assert!(s.get(now, &key).unwrap().cold);
        // It is: back in memory (then out again, the tier is 0 bytes, once nothing pins it).
        assert!(s.warm(&key, v1.clone()));
        assert_eq!(s.stats().warmed, 1);
    }

    #[test]
    fn a_cold_record_keeps_its_replacement_rules() {
        let now = Instant::now();
        let config = StoreConfig { hot_max_bytes: 0, ..TIERED };
        let mut s = MemoryStore::new(config);
        let v1 = mutable(1, b"s", 1, b"one");
        let key = v1.key();
        s.put(now, from(1), v1.clone(), HOUR, None).unwrap();
        s.written(&key);
        assert!(s.get(now, &key).unwrap().cold);
        // Same sequence, another value: a conflict, though the held value is not in memory.
        let conflict = s.put(now, from(1), mutable(1, b"s", 1, b"uno"), HOUR, None);
        assert_eq!(conflict, Err(RecordError::SequenceConflict));
        assert_eq!(
            s.put(now, from(1), mutable(1, b"s", 0, b"z"), HOUR, None).map(|r| r.1),
            Err(RecordError::StaleSequence)
        );
        // The same record again is a refresh, and brings the value back into memory.
        assert_eq!(
            s.put(now, from(1), v1.clone(), HOUR, None).map(|r| r.1),
            Ok(PutOutcome::Refreshed)
        );
        assert!(!s.get(now, &key).unwrap().cold, "pinned until its write is done");
        // An immutable cold record refreshes as well.
        let i = immutable(b"imm");
        s.put(now, from(2), i.clone(), HOUR, None).unwrap();
        s.written(&i.key());
        s.written(&key);
        assert!(s.get(now, &i.key()).unwrap().cold);
        assert_eq!(
            s.put(now, from(2), i.clone(), HOUR, None).map(|r| r.1),
            Ok(PutOutcome::Refreshed)
        );
        assert_eq!(s.peer_usage(&peer(1)), (1, 4), "charge of a cold record unchanged");
        assert_accounting(&s);
    }

    fn peer(n: u8) -> NodeId {
        NodeId::from_bytes([n; 32])
    }

    /// Peer `n`, alone in its subnet.
    fn from(n: u8) -> Origin {
        Origin::Peer(peer(n), Subnet::of_ip(std::net::IpAddr::from([10, n, 0, 1])))
    }

    /// Peer `n` connecting from the subnet 203.0.113.0/24, shared with others.
    fn from_shared(n: u8) -> Origin {
        Origin::Peer(peer(n), Subnet::of_ip(std::net::IpAddr::from([203, 0, 113, n])))
    }

    fn immutable(value: &[u8]) -> Record {
        Record::Immutable { value: ByteBuf::from(value.to_vec()) }
    }

    fn mutable(seed: u8, salt: &[u8], seq: u64, value: &[u8]) -> Record {
        let kp = Keypair::from_seed([seed; 32]);
        Record::Mutable(MutableRecord::sign(&kp, salt.to_vec(), seq, value.to_vec()))
    }

    fn provider(n: u8) -> PeerInfo {
        PeerInfo { id: peer(n), addrs: vec![format!("10.0.0.{n}:4001").parse().unwrap()] }
    }

    /// Recounts every total from the held records and compares with the running ones.
    fn assert_accounting(s: &MemoryStore) {
        let mut usage: BTreeMap<NodeId, Usage> = BTreeMap::new();
        let mut subnets: BTreeMap<Subnet, Usage> = BTreeMap::new();
        let mut near = BTreeSet::new();
        let mut bytes = 0;
        for (key, r) in &s.records {
            assert_eq!(*key, r.key);
            assert!(s.expiry.contains(&(r.expires_at, r.key)));
            bytes += r.charge_bytes();
            if let Origin::Peer(p, net) = r.origin {
                let u = usage.entry(p).or_default();
                u.records += 1;
                u.bytes += r.charge_bytes();
                if let Some(net) = net {
                    let u = subnets.entry(net).or_default();
                    u.records += 1;
                    u.bytes += r.charge_bytes();
                }
                if let Some(local) = s.local {
                    near.insert((r.key.distance(&local), r.key));
                }
            }
        }
        assert_eq!(s.expiry.len(), s.records.len());
        assert_eq!(s.bytes, bytes);
        let hot: Vec<&StoredRecord> = s.records.values().filter(|r| !r.cold).collect();
        assert_eq!(s.hot.bytes(), hot.iter().map(|r| r.value_len).sum::<usize>());
        assert_eq!(s.hot.len(), hot.len());
        for r in s.records.values().filter(|r| r.cold) {
            assert_eq!(records::value_len(&r.record), 0, "a cold record holds no value");
        }
        assert_eq!(s.usage, usage);
        assert_eq!(s.subnet_usage, subnets);
        assert_eq!(s.by_distance, near);
        let mut provider_usage: BTreeMap<NodeId, usize> = BTreeMap::new();
        let mut count = 0;
        for (key, entries) in &s.providers {
            assert!(!entries.is_empty());
            for (id, e) in entries {
                assert!(s.provider_expiry.contains(&(e.expires_at, *key, *id)));
                *provider_usage.entry(*id).or_default() += 1;
                count += 1;
            }
        }
        assert_eq!(s.provider_expiry.len(), count);
        assert_eq!(s.provider_count, count);
        assert_eq!(s.provider_usage, provider_usage);
    }

    // ---- Immutable records ----

    #[test]
    fn stores_immutable_record_under_its_hash() {
        let now = Instant::now();
        let mut s = MemoryStore::new(SMALL);
        let r = immutable(b"hi");
        let (key, outcome) = s.put(now, from(1), r.clone(), HOUR, None).unwrap();
        assert_eq!((key, outcome), (r.key(), PutOutcome::Stored));
        let held = s.get(now, &key).unwrap();
        assert_eq!((&held.record, held.origin, held.stored_at), (&r, from(1), now));
        assert_eq!(held.expires_at, now + HOUR);
        assert_eq!(s.peer_usage(&peer(1)), (1, 2));
        assert_eq!((s.len(), s.stats().bytes, s.stats().stored), (1, 2, 1));
    }

    #[test]
    fn storing_held_immutable_value_refreshes() {
        let now = Instant::now();
        let mut s = MemoryStore::new(SMALL);
        s.put(now, from(1), immutable(b"v"), HOUR, None).unwrap();
        let later = now + HOUR / 2;
        let (_, outcome) = s.put(later, from(1), immutable(b"v"), HOUR, None).unwrap();
        assert_eq!(outcome, PutOutcome::Refreshed);
        let held = s.get(later, &immutable(b"v").key()).unwrap();
        assert_eq!((held.stored_at, held.expires_at), (now, later + HOUR));
        assert_eq!((s.len(), s.stats().refreshed), (1, 1));
        let err = s.put(later, from(1), immutable(b"v"), HOUR, Some(0));
        assert_eq!(err, Err(RecordError::CasOnImmutable));
        assert_eq!(
            RecordError::CasOnImmutable.code(),
            crate::wire::messages::ErrorCode::BadRequest
        );
    }

    #[test]
    fn value_over_holder_limit_is_value_too_large() {
        let now = Instant::now();
        let mut s = MemoryStore::new(StoreConfig { per_peer_bytes: 1000, ..SMALL });
        let err = s.put(now, from(1), immutable(&[1; 401]), HOUR, None);
        assert_eq!(err, Err(RecordError::ValueTooLarge));
        assert!(s.put(now, from(1), immutable(&[1; 400]), HOUR, None).is_ok());
        let wire = immutable(&vec![0; MAX_VALUE_BYTES + 1]);
        let mut big = MemoryStore::new(StoreConfig { max_value_bytes: usize::MAX, ..SMALL });
        assert_eq!(big.put(now, from(1), wire, HOUR, None), Err(RecordError::ValueTooLarge));
    }

    // ---- Mutable records ----

    #[test]
    fn stores_signed_mutable_record() {
        let now = Instant::now();
        let mut s = MemoryStore::new(SMALL);
        let r = mutable(1, b"salt", 1, b"v1");
        assert_eq!(s.put(now, from(9), r.clone(), HOUR, None), Ok((r.key(), PutOutcome::Stored)));
        // value + salt.
        assert_eq!(s.peer_usage(&peer(9)), (1, 6));
        assert_eq!(s.get(now, &r.key()).unwrap().record, r);
    }

    #[test]
    fn refuses_bad_signature_tampered_salt_and_oversize_salt() {
        let now = Instant::now();
        let mut s = MemoryStore::new(SMALL);
        let Record::Mutable(good) = mutable(1, b"salt", 1, b"v") else { unreachable!() };
        let mut bad_sig = good.clone();
        bad_sig.signature.0[5] ^= 0x40;
        let mut bad_salt = good.clone();
        let mut salt = bad_salt.salt.as_slice().to_vec();
        salt[0] ^= 1;
        bad_salt.salt = salt.into();
        for bad in [bad_sig, bad_salt] {
            let err = s.put(now, from(1), Record::Mutable(bad), HOUR, None);
            assert_eq!(err, Err(RecordError::BadSignature));
        }
        let long = mutable(1, &[0; MAX_SALT_BYTES + 1], 1, b"v");
        assert_eq!(s.put(now, from(1), long, HOUR, None), Err(RecordError::SaltTooLarge));
        assert!(s.is_empty());
        assert_eq!(s.stats().rejected_for(RecordError::BadSignature), 2);
        assert_eq!(s.stats().rejected_for(RecordError::SaltTooLarge), 1);
        assert_eq!(s.stats().rejected_total(), 3);
    }

    #[test]
    fn sequence_number_only_moves_forward() {
        let now = Instant::now();
        let mut s = MemoryStore::new(SMALL);
        let key = mutable(1, b"s", 5, b"five").key();
        s.put(now, from(1), mutable(1, b"s", 5, b"five"), HOUR, None).unwrap();
        let stale = s.put(now, from(1), mutable(1, b"s", 4, b"four"), HOUR, None);
        assert_eq!(stale, Err(RecordError::StaleSequence));
        let conflict = s.put(now, from(1), mutable(1, b"s", 5, b"FIVE"), HOUR, None);
        assert_eq!(conflict, Err(RecordError::SequenceConflict));
        let same = s.put(now, from(1), mutable(1, b"s", 5, b"five"), HOUR, None);
        assert_eq!(same, Ok((key, PutOutcome::Refreshed)));
        let later = now + Duration::from_secs(60);
        let newer = s.put(later, from(1), mutable(1, b"s", 6, b"six!"), HOUR, None);
        assert_eq!(newer, Ok((key, PutOutcome::Replaced)));
        let held = s.get(later, &key).unwrap();
        assert_eq!((held.record.clone(), held.stored_at), (mutable(1, b"s", 6, b"six!"), later));
        assert_eq!(s.peer_usage(&peer(1)), (1, 5));
        let st = s.stats();
        assert_eq!((st.stored, st.refreshed, st.replaced, st.records), (1, 1, 1, 1));
    }

    #[test]
    fn compare_and_swap_matches_held_seq() {
        let now = Instant::now();
        let mut s = MemoryStore::new(SMALL);
        s.put(now, from(1), mutable(1, b"s", 5, b"five"), HOUR, None).unwrap();
        let miss = s.put(now, from(1), mutable(1, b"s", 6, b"six"), HOUR, Some(4));
        assert_eq!(miss, Err(RecordError::CasMismatch));
        let hit = s.put(now, from(1), mutable(1, b"s", 6, b"six"), HOUR, Some(5));
        assert_eq!(hit.map(|(_, o)| o), Ok(PutOutcome::Replaced));
        // A refresh is subject to CAS as well (step 5 follows step 4).
        let refresh = s.put(now, from(1), mutable(1, b"s", 6, b"six"), HOUR, Some(5));
        assert_eq!(refresh, Err(RecordError::CasMismatch));
    }

    #[test]
    fn compare_and_swap_on_absent_key_only_accepts_none() {
        let now = Instant::now();
        let mut s = MemoryStore::new(SMALL);
        let r = mutable(1, b"s", 0, b"v");
        assert_eq!(s.put(now, from(1), r.clone(), HOUR, Some(0)), Err(RecordError::CasMismatch));
        assert!(s.is_empty());
        assert_eq!(s.put(now, from(1), r, HOUR, None).map(|(_, o)| o), Ok(PutOutcome::Stored));
    }

    #[test]
    fn rules_apply_in_spec_order() {
        let now = Instant::now();
        let mut s = MemoryStore::new(StoreConfig { max_value_bytes: 4, ..SMALL });
        s.put(now, from(1), mutable(1, b"s", 5, b"five"), HOUR, None).unwrap();
        // Sequence (step 4) before value size (step 6).
        let stale_big = s.put(now, from(1), mutable(1, b"s", 4, b"too big"), HOUR, None);
        assert_eq!(stale_big, Err(RecordError::StaleSequence));
        // CAS (step 5) before value size.
        let cas_big = s.put(now, from(1), mutable(1, b"s", 6, b"too big"), HOUR, Some(1));
        assert_eq!(cas_big, Err(RecordError::CasMismatch));
        // ttl (step 1) before signature (step 3).
        let Record::Mutable(mut bad) = mutable(1, b"s", 6, b"six") else { unreachable!() };
        bad.signature.0[0] ^= 1;
        let err = s.put(now, from(1), Record::Mutable(bad), Duration::ZERO, None);
        assert_eq!(err, Err(RecordError::BadTtl));
        // Value size (step 6) before quotas (step 7).
        let mut full =
            MemoryStore::new(StoreConfig { max_value_bytes: 4, max_records: 0, ..SMALL });
        let err = full.put(now, from(1), immutable(b"12345"), HOUR, None);
        assert_eq!(err, Err(RecordError::ValueTooLarge));
    }

    // ---- Lifetime ----

    #[test]
    fn ttl_is_clamped_and_zero_is_bad_request() {
        let now = Instant::now();
        let mut s = MemoryStore::new(SMALL);
        let (key, _) = s.put(now, Origin::Local, immutable(b"a"), 100 * HOUR, None).unwrap();
        assert_eq!(s.get(now, &key).unwrap().expires_at, now + SMALL.max_ttl);
        assert_eq!(s.get(now, &key).unwrap().remaining_ttl_secs(now + HOUR), 9 * 3600);
        let zero = s.put(now, Origin::Local, immutable(b"b"), Duration::ZERO, None);
        assert_eq!(zero, Err(RecordError::BadTtl));
        assert_eq!(RecordError::BadTtl.code(), crate::wire::messages::ErrorCode::BadRequest);
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn refresh_and_replace_never_shorten_life() {
        let now = Instant::now();
        let mut s = MemoryStore::new(SMALL);
        let (key, _) = s.put(now, from(1), mutable(1, b"", 1, b"a"), 5 * HOUR, None).unwrap();
        s.put(now, from(1), mutable(1, b"", 1, b"a"), HOUR, None).unwrap();
        assert_eq!(s.get(now, &key).unwrap().expires_at, now + 5 * HOUR);
        s.put(now, from(1), mutable(1, b"", 2, b"b"), HOUR, None).unwrap();
        assert_eq!(s.get(now, &key).unwrap().expires_at, now + 5 * HOUR);
        let later = now + 2 * HOUR;
        s.put(later, from(1), mutable(1, b"", 3, b"c"), 8 * HOUR, None).unwrap();
        assert_eq!(s.get(later, &key).unwrap().expires_at, later + 8 * HOUR);
        assert_accounting(&s);
    }

    #[test]
    fn expired_records_vanish_and_are_deleted_in_order() {
        let now = Instant::now();
        let mut s = MemoryStore::new(SMALL);
        let (a, _) = s.put(now, from(1), immutable(b"a"), HOUR, None).unwrap();
        let (b, _) = s.put(now, from(2), immutable(b"bb"), 2 * HOUR, None).unwrap();
        assert_eq!(s.next_expiry(), Some(now + HOUR));
        assert!(s.get(now + HOUR - Duration::from_nanos(1), &a).is_some());
        assert!(s.get(now + HOUR, &a).is_none());
        assert_eq!(s.expire(now + HOUR - Duration::from_secs(1)), 0);
        assert_eq!(s.expire(now + HOUR), 1);
        assert_eq!((s.keys(), s.next_expiry()), (vec![b], Some(now + 2 * HOUR)));
        assert_eq!(s.peer_usage(&peer(1)), (0, 0));
        assert_eq!(s.expire(now + 3 * HOUR), 1);
        assert_eq!((s.len(), s.stats().expired, s.stats().bytes, s.next_expiry()), (0, 2, 0, None));
        assert_accounting(&s);
    }

    #[test]
    fn expired_but_unswept_record_counts_as_absent() {
        let now = Instant::now();
        let mut s = MemoryStore::new(SMALL);
        let (key, _) = s.put(now, from(1), mutable(1, b"", 9, b"old"), HOUR, None).unwrap();
        let later = now + 2 * HOUR;
        // A lower seq is fine once the held record is gone; the old one counts as expired.
        let r = mutable(1, b"", 3, b"new");
        assert_eq!(s.put(later, from(2), r.clone(), HOUR, None), Ok((key, PutOutcome::Stored)));
        assert_eq!(s.get(later, &key).unwrap().record, r);
        assert_eq!((s.stats().expired, s.stats().stored), (1, 2));
        assert_eq!((s.peer_usage(&peer(1)), s.peer_usage(&peer(2))), ((0, 0), (1, 3)));
        assert_accounting(&s);
    }

    // ---- Quotas and caps ----

    #[test]
    fn per_peer_record_quota_leaves_room_for_others() {
        let now = Instant::now();
        let mut s = MemoryStore::new(SMALL);
        for v in [b"1", b"2", b"3"] {
            s.put(now, from(1), immutable(v), HOUR, None).unwrap();
        }
        let over = s.put(now, from(1), immutable(b"4"), HOUR, None);
        assert_eq!(over, Err(RecordError::QuotaExceeded));
        assert!(s.put(now, from(2), immutable(b"4"), HOUR, None).is_ok());
        // Our own records are not held to a peer quota.
        assert!(s.put(now, Origin::Local, immutable(b"5"), HOUR, None).is_ok());
        assert_eq!(s.stats().rejected_for(RecordError::QuotaExceeded), 1);
    }

    #[test]
    fn per_peer_byte_quota_leaves_room_for_others() {
        let now = Instant::now();
        let mut s = MemoryStore::new(SMALL);
        s.put(now, from(1), immutable(&[1; 200]), HOUR, None).unwrap();
        let over = s.put(now, from(1), immutable(&[2; 101]), HOUR, None);
        assert_eq!(over, Err(RecordError::QuotaExceeded));
        assert!(s.put(now, from(1), immutable(&[2; 100]), HOUR, None).is_ok());
        assert_eq!(s.peer_usage(&peer(1)), (2, 300));
        assert!(s.put(now, from(2), immutable(&[3; 101]), HOUR, None).is_ok());
    }

    #[test]
    fn global_caps_give_storage_full() {
        let now = Instant::now();
        let mut s = MemoryStore::new(SMALL);
        for (i, p) in [1u8, 1, 2, 2, 3, 3].iter().enumerate() {
            s.put(now, from(*p), immutable(&[i as u8; 10]), HOUR, None).unwrap();
        }
        let full = s.put(now, from(4), immutable(b"x"), HOUR, None);
        assert_eq!(full, Err(RecordError::StorageFull));
        let mut bytes = MemoryStore::new(StoreConfig { per_peer_bytes: 1000, ..SMALL });
        bytes.put(now, Origin::Local, immutable(&[1; 400]), HOUR, None).unwrap();
        bytes.put(now, Origin::Local, immutable(&[2; 400]), HOUR, None).unwrap();
        let err = bytes.put(now, from(1), immutable(&[3; 201]), HOUR, None);
        assert_eq!(err, Err(RecordError::StorageFull));
        assert!(bytes.put(now, from(1), immutable(&[3; 200]), HOUR, None).is_ok());
    }

    #[test]
    fn the_peers_of_one_subnet_share_a_quota_whatever_their_ids() {
        let now = Instant::now();
        let mut s = MemoryStore::new(SMALL);
        let put = |s: &mut MemoryStore, origin, v: u8| {
            s.put(now, origin, immutable(&[v; 10]), HOUR, None)
        };
        // Per-peer quota 3, per-subnet quota 5: peer 1 stores 3, peer 2 of the same /24 two.
        let (first, _) = put(&mut s, from_shared(1), 0).unwrap();
        for v in 1..3 {
            put(&mut s, from_shared(1), v).unwrap();
        }
        for v in 3..5 {
            put(&mut s, from_shared(2), v).unwrap();
        }
        assert_eq!(put(&mut s, from_shared(3), 5), Err(RecordError::QuotaExceeded));
        // Another subnet, and a loopback peer (exempt), still fit.
        assert!(put(&mut s, from(9), 6).is_ok());
        let mut lo = MemoryStore::new(SMALL);
        for (n, v) in [(1, 0), (2, 1), (3, 2), (4, 3), (5, 4), (6, 5)] {
            put(&mut lo, Origin::Peer(peer(n), None), v).unwrap();
        }
        // A record removed frees the subnet's place.
        s.remove(&first);
        assert!(put(&mut s, from_shared(3), 7).is_ok());
        assert_accounting(&s);
        assert_accounting(&lo);
    }

    #[test]
    fn one_subnet_cannot_fill_a_keys_provider_list() {
        let now = Instant::now();
        let mut s = MemoryStore::new(SMALL);
        let key = peer(99);
        let shared = from_shared(1).subnet();
        for n in [1, 2] {
            s.add_provider_from(now, key, provider(n), shared, HOUR).unwrap();
        }
        let third = s.add_provider_from(now, key, provider(3), shared, HOUR);
        assert_eq!(third, Err(RecordError::QuotaExceeded));
        // A known provider refreshes; another subnet, and ourselves, still fit.
        s.add_provider_from(now, key, provider(2), shared, HOUR).unwrap();
        s.add_provider_from(now, key, provider(4), from(4).subnet(), HOUR).unwrap();
        assert_eq!(s.providers(now, &key).len(), 3);
        assert_accounting(&s);
    }

    #[test]
    fn a_full_store_keeps_the_keys_nearest_its_node() {
        let now = Instant::now();
        let local = NodeId::from_bytes([0; 32]);
        let mut s = MemoryStore::for_node(local, SMALL);
        // Six records from three peers fill it (max_records 6), and one of our own fits no
        // more: ours are never evicted.
        let values: Vec<Vec<u8>> = (0..40u8).map(|v| vec![v; 10]).collect();
        let mut by_distance: Vec<&Vec<u8>> = values.iter().collect();
        by_distance.sort_by_key(|v| immutable(v).key().distance(&local));
        // The middle twelve of forty values, so nearer and farther ones remain.
        let middle = &by_distance[14..20];
        for (i, v) in middle.iter().enumerate() {
            s.put(now, from(1 + (i / 2) as u8), immutable(v), HOUR, None).unwrap();
        }
        let farthest = immutable(middle[5]).key();
        // A farther key than every held one is refused.
        let far = s.put(now, from(4), immutable(by_distance[39]), HOUR, None);
        assert_eq!(far, Err(RecordError::StorageFull));
        // A nearer one takes the farthest one's place.
        s.put(now, from(4), immutable(by_distance[0]), HOUR, None).unwrap();
        assert!(s.get(now, &farthest).is_none());
        assert_eq!((s.len(), s.stats().evicted_far), (6, 1));
        assert_accounting(&s);
        // Without our id (the first-come store), the nearer one is refused.
        let mut first_come = MemoryStore::new(SMALL);
        for (i, v) in middle.iter().enumerate() {
            first_come.put(now, from(1 + (i / 2) as u8), immutable(v), HOUR, None).unwrap();
        }
        let near = first_come.put(now, from(4), immutable(by_distance[0]), HOUR, None);
        assert_eq!(near, Err(RecordError::StorageFull));
    }

    #[test]
    fn failed_put_changes_nothing_but_the_rejection_counter() {
        let now = Instant::now();
        let mut s = MemoryStore::new(SMALL);
        s.put(now, from(1), mutable(1, b"s", 5, b"five"), HOUR, None).unwrap();
        for v in [b"1", b"2"] {
            s.put(now, from(1), immutable(v), HOUR, None).unwrap();
        }
        let failing = [
            (mutable(1, b"s", 4, b"x"), None, RecordError::StaleSequence),
            (mutable(1, b"s", 5, b"x"), None, RecordError::SequenceConflict),
            (mutable(1, b"s", 6, b"x"), Some(3), RecordError::CasMismatch),
            (mutable(1, b"t", 6, b"x"), Some(3), RecordError::CasMismatch),
            (immutable(&[0; 401]), None, RecordError::ValueTooLarge),
            (immutable(b"3"), None, RecordError::QuotaExceeded),
        ];
        for (record, expected_seq, want) in failing {
            let (before, keys, usage) = (s.stats(), s.keys(), s.peer_usage(&peer(1)));
            let stored = s.get(now, &mutable(1, b"s", 0, b"").key()).cloned();
            let later = now + HOUR / 2;
            assert_eq!(s.put(later, from(1), record, HOUR, expected_seq), Err(want));
            let mut after = s.stats();
            assert_eq!(after.rejected_for(want), before.rejected_for(want) + 1);
            after.rejected = before.rejected;
            assert_eq!((after, s.keys(), s.peer_usage(&peer(1))), (before, keys, usage));
            assert_eq!(s.get(now, &mutable(1, b"s", 0, b"").key()).cloned(), stored);
            assert_eq!(s.next_expiry(), Some(now + HOUR));
        }
        assert_accounting(&s);
    }

    #[test]
    fn replacement_by_another_peer_moves_the_charge() {
        let now = Instant::now();
        let mut s = MemoryStore::new(SMALL);
        s.put(now, from(1), mutable(7, b"", 1, b"aaaa"), HOUR, None).unwrap();
        s.put(now, from(2), mutable(7, b"", 2, b"bb"), HOUR, None).unwrap();
        assert_eq!((s.peer_usage(&peer(1)), s.peer_usage(&peer(2))), ((0, 0), (1, 2)));
        // A refresh moves it too: the last peer that asked pays.
        s.put(now, from(3), mutable(7, b"", 2, b"bb"), HOUR, None).unwrap();
        assert_eq!((s.peer_usage(&peer(2)), s.peer_usage(&peer(3))), ((0, 0), (1, 2)));
        assert_eq!(s.stats().bytes, 2);
        assert_accounting(&s);
    }

    #[test]
    fn quota_is_checked_after_releasing_the_replaced_record() {
        let now = Instant::now();
        let mut s = MemoryStore::new(SMALL);
        s.put(now, from(1), mutable(1, b"", 1, &[1; 150]), HOUR, None).unwrap();
        s.put(now, from(1), immutable(&[2; 100]), HOUR, None).unwrap();
        s.put(now, from(1), immutable(&[3; 50]), HOUR, None).unwrap();
        // Peer 1 is at 3 records and 300 bytes; replacing its own record still fits.
        let r = s.put(now, from(1), mutable(1, b"", 2, &[4; 150]), HOUR, None);
        assert_eq!(r.map(|(_, o)| o), Ok(PutOutcome::Replaced));
        let r = s.put(now, from(1), mutable(1, b"", 3, &[4; 151]), HOUR, None);
        assert_eq!(r, Err(RecordError::QuotaExceeded));
        // Another peer's record does not release peer 1's quota.
        s.put(now, from(2), mutable(2, b"", 1, b"x"), HOUR, None).unwrap();
        let r = s.put(now, from(1), mutable(2, b"", 2, b"y"), HOUR, None);
        assert_eq!(r, Err(RecordError::QuotaExceeded));
        // A full store accepts a replacement, but not a new key.
        let mut full = MemoryStore::new(StoreConfig { max_records: 1, ..SMALL });
        full.put(now, from(1), mutable(1, b"", 1, b"a"), HOUR, None).unwrap();
        assert!(full.put(now, from(2), mutable(1, b"", 2, b"b"), HOUR, None).is_ok());
        let r = full.put(now, from(2), immutable(b"c"), HOUR, None);
        assert_eq!(r, Err(RecordError::StorageFull));
        assert_accounting(&s);
        assert_accounting(&full);
    }

    #[test]
    fn remove_releases_the_charge_and_keys_are_ordered() {
        let now = Instant::now();
        let mut s = MemoryStore::new(SMALL);
        let mut keys: Vec<Key> = [b"a", b"b", b"c"]
            .iter()
            .map(|v| s.put(now, from(1), immutable(*v), HOUR, None).unwrap().0)
            .collect();
        keys.sort();
        assert_eq!(s.keys(), keys);
        let removed = s.remove(&keys[1]).unwrap();
        assert_eq!(removed.key, keys[1]);
        assert_eq!(s.remove(&keys[1]), None);
        assert_eq!((s.peer_usage(&peer(1)), s.stats().removed), ((2, 2), 1));
        assert_accounting(&s);
    }

    #[test]
    fn accounting_matches_a_recount_after_random_operations() {
        let t0 = Instant::now();
        let mut rng = Rng::new(0x5eed);
        let signed: Vec<Record> = (0..12)
            .map(|i| mutable(1 + (i % 3) as u8, b"k", i / 3, &vec![i as u8; 10 * i as usize]))
            .collect();
        let mut s = MemoryStore::new(StoreConfig { max_records: 8, max_bytes: 600, ..SMALL });
        let mut now = t0;
        let (mut ok, mut failed) = (0, 0);
        for _ in 0..300 {
            now += Duration::from_secs(rng.below(600));
            let origin = match rng.below(4) {
                0 => Origin::Local,
                p => from(p as u8),
            };
            let ttl = Duration::from_secs(rng.below(3 * 3600));
            // Mutable puts are few: each costs a signature check, slow in debug builds.
            let op = rng.below(20);
            if op < 3 {
                let record = signed[rng.below(signed.len() as u64) as usize].clone();
                let cas = rng.chance(0.2).then(|| rng.below(4));
                match s.put(now, origin, record, ttl, cas) {
                    Ok(_) => ok += 1,
                    Err(_) => failed += 1,
                }
            } else if op < 14 {
                let value = vec![0u8; rng.below(120) as usize];
                match s.put(now, origin, immutable(&value), ttl, None) {
                    Ok(_) => ok += 1,
                    Err(_) => failed += 1,
                }
            } else if op < 17 {
                let keys = s.keys();
                if !keys.is_empty() {
                    s.remove(&keys[rng.below(keys.len() as u64) as usize]);
                }
            } else {
                s.expire(now);
            }
            assert_accounting(&s);
            assert!(s.len() <= 8 && s.stats().bytes <= 600);
        }
        assert!(ok > 50 && failed > 50, "ok {ok} failed {failed}");
        let st = s.stats();
        assert_eq!(st.rejected_total(), failed);
    }

    // ---- Providers ----

    #[test]
    fn providers_are_added_listed_and_refreshed() {
        let now = Instant::now();
        let mut s = MemoryStore::new(SMALL);
        let key = peer(100);
        s.add_provider(now, key, provider(2), HOUR).unwrap();
        s.add_provider(now, key, provider(1), HOUR).unwrap();
        assert_eq!(s.providers(now, &key), vec![provider(1), provider(2)]);
        assert_eq!(s.providers(now, &peer(101)), vec![]);
        let moved = PeerInfo { id: peer(2), addrs: vec!["10.9.9.9:1".parse().unwrap()] };
        s.add_provider(now, key, moved.clone(), HOUR / 2).unwrap();
        assert_eq!(s.providers(now, &key), vec![provider(1), moved]);
        // The shorter ttl did not shorten the entry.
        assert_eq!(s.expire(now + HOUR - Duration::from_secs(1)), 0);
        assert_eq!(s.next_expiry(), Some(now + HOUR));
        let st = s.stats();
        assert_eq!((st.provider_records, st.providers_added, st.providers_refreshed), (2, 2, 1));
        assert_accounting(&s);
    }

    #[test]
    fn provider_ttl_is_clamped_checked_and_expires() {
        let now = Instant::now();
        let mut s = MemoryStore::new(SMALL);
        let key = peer(100);
        let zero = s.add_provider(now, key, provider(1), Duration::ZERO);
        assert_eq!(zero, Err(RecordError::BadTtl));
        s.add_provider(now, key, provider(1), 100 * HOUR).unwrap();
        s.add_provider(now, key, provider(2), HOUR).unwrap();
        assert_eq!(s.next_expiry(), Some(now + HOUR));
        assert_eq!(s.providers(now + HOUR, &key), vec![provider(1)]);
        assert_eq!(s.expire(now + HOUR), 1);
        assert_eq!(s.next_expiry(), Some(now + SMALL.max_provider_ttl));
        assert_eq!(s.expire(now + SMALL.max_provider_ttl), 1);
        assert_eq!(s.providers(now, &key), vec![]);
        assert_eq!((s.stats().provider_records, s.stats().providers_expired), (0, 2));
        assert!(s.providers.is_empty());
        assert_accounting(&s);
    }

    #[test]
    fn full_key_refuses_new_providers_until_one_expires() {
        let now = Instant::now();
        let mut s = MemoryStore::new(SMALL);
        let key = peer(100);
        for p in 1..=3 {
            s.add_provider(now, key, provider(p), p as u32 * HOUR).unwrap();
        }
        let err = s.add_provider(now, key, provider(4), HOUR);
        assert_eq!(err, Err(RecordError::StorageFull));
        // Known providers can still refresh.
        assert!(s.add_provider(now, key, provider(3), HOUR).is_ok());
        // Once provider 1 expires, its slot is free.
        assert!(s.add_provider(now + HOUR, key, provider(4), HOUR).is_ok());
        assert_eq!(s.providers(now + HOUR, &key), vec![provider(2), provider(3), provider(4)]);
        assert_eq!(s.stats().rejected_for(RecordError::StorageFull), 1);
        assert_accounting(&s);
    }

    #[test]
    fn global_and_per_provider_caps_refuse_new_entries() {
        let now = Instant::now();
        let mut s = MemoryStore::new(SMALL);
        for k in 0..4 {
            s.add_provider(now, peer(100 + k), provider(1), HOUR).unwrap();
        }
        let err = s.add_provider(now, peer(104), provider(1), HOUR);
        assert_eq!(err, Err(RecordError::QuotaExceeded));
        s.add_provider(now, peer(104), provider(2), HOUR).unwrap();
        let err = s.add_provider(now, peer(105), provider(3), HOUR);
        assert_eq!(err, Err(RecordError::StorageFull));
        assert_eq!(s.stats().provider_records, 5);
        let too_many = PeerInfo { id: peer(3), addrs: vec![provider(3).addrs[0]; 5] };
        let err = s.add_provider(now, peer(105), too_many, HOUR);
        assert_eq!(err, Err(RecordError::TooManyAddrs));
        assert_eq!(s.stats().rejected_total(), 3);
        assert_accounting(&s);
    }

    #[test]
    fn providers_answer_is_bounded_by_the_response_limit() {
        let now = Instant::now();
        let config = StoreConfig { max_providers_per_key: 50, ..StoreConfig::DEFAULT };
        let mut s = MemoryStore::new(config);
        let key = peer(200);
        for p in 0..30 {
            s.add_provider(now, key, provider(p), HOUR).unwrap();
        }
        let answer = s.providers(now, &key);
        assert_eq!(answer.len(), MAX_PEERS_PER_RESPONSE);
        assert_eq!(answer[0], provider(0));
    }

    #[test]
    fn next_expiry_is_the_earliest_record_or_provider() {
        let now = Instant::now();
        let mut s = MemoryStore::new(SMALL);
        assert_eq!(s.next_expiry(), None);
        s.put(now, Origin::Local, immutable(b"a"), 2 * HOUR, None).unwrap();
        s.add_provider(now, peer(100), provider(1), HOUR).unwrap();
        assert_eq!(s.next_expiry(), Some(now + HOUR));
        assert_eq!(s.expire(now + HOUR), 1);
        assert_eq!(s.next_expiry(), Some(now + 2 * HOUR));
    }

    #[test]
    fn default_config_matches_the_documented_limits() {
        let c = StoreConfig::default();
        assert_eq!((c.max_records, c.max_bytes), (16_384, 64 * 1024 * 1024));
        assert_eq!((c.per_peer_records, c.per_peer_bytes), (256, 4 * 1024 * 1024));
        assert_eq!((c.max_value_bytes, c.max_ttl), (MAX_VALUE_BYTES, 36 * HOUR));
        assert_eq!((c.max_providers_per_key, c.max_provider_records), (20, 16_384));
        assert_eq!(c.max_provider_ttl, 36 * HOUR);
    }
}
