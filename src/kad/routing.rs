//! The Kademlia routing table: 256 buckets of k peers in least-recently-seen order, with
//! ping-before-evict, a replacement cache per bucket, IP-diversity limits and bucket refresh
//! (DESIGN.md, "Kademlia").
//!
//! Sans-IO: the table sends nothing and reads no clock. It tells the caller what to do
//! ([`InsertOutcome::PingOldest`], [`RoutingTable::buckets_due_for_refresh`]) and the caller
//! reports back ([`RoutingTable::ping_result`], [`RoutingTable::record_failure`],
//! [`RoutingTable::mark_refreshed`]). Time is the `now` argument; randomness is the caller's
//! seeded [`Rng`].
//!
//! Rules, in the order [`RoutingTable::observe`] applies them:
//! - Our own id and a peer without addresses are rejected; at most [`MAX_ADDRS_PER_PEER`]
//!   addresses are kept per peer.
//! - A known peer moves to the most-recent end; an `Inbound` entry that answers one of our
//!   requests becomes `Verified` (never the other way round).
//! - A new peer must fit the IP-diversity limits: its first address's /24 (IPv4) or /64 (IPv6)
//!   may hold at most `max_per_subnet_bucket` entries of its bucket and `max_per_subnet_table`
//!   of the table. Loopback addresses are exempt so that a devnet or benchmark of a hundred
//!   nodes on one host works with the limits on; a LAN deployment sets `ip_limits = false`.
//! - A full bucket keeps its old entries (they have proven to stay up): the candidate waits in
//!   the bucket's replacement cache and the caller pings the least-recently-seen entry, one ping
//!   per bucket at a time. An entry learned only from inbound contact never triggers a ping
//!   against a `Verified` oldest entry, so unsolicited contacts cannot churn the table.
//! - A dead entry (failed ping, or `max_failures` failed requests in a row) is evicted and the
//!   most recent replacement that fits the limits is promoted, `Verified` ones first.
//!
//! Bounds: at most `k` entries and `replacement_cache` replacements per bucket, so at most
//! 256 × (k + replacement_cache) peers; the subnet maps hold at most one key per entry. Every
//! refusal is counted in [`RoutingStats`].

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use crate::identity::{Distance, NodeId, ID_BITS, ID_BYTES};
use crate::rng::Rng;
use crate::wire::messages::{PeerInfo, MAX_ADDRS_PER_PEER};

/// Routing table settings. Every default is in [`RoutingConfig::DEFAULT`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoutingConfig {
    /// Entries per bucket (default [`K`] = 20; at least 1).
    pub k: usize,
    /// Replacement candidates kept per bucket (default 10; 0 disables the cache).
    pub replacement_cache: usize,
    /// Whether the IP-diversity limits apply (default true).
    pub ip_limits: bool,
    /// Entries of one /24 (IPv4) or /64 (IPv6) in one bucket (default 2).
    pub max_per_subnet_bucket: usize,
    /// Entries of one /24 or /64 in the whole table (default 10).
    pub max_per_subnet_table: usize,
    /// A bucket not touched for this long is due for refresh (default 15 min).
    pub refresh_interval: Duration,
    /// Consecutive failed requests before an entry is evicted (default 2; at least 1).
    pub max_failures: u32,
}

impl RoutingConfig {
    /// The defaults (DESIGN.md, "Kademlia").
    pub const DEFAULT: RoutingConfig = RoutingConfig {
        k: K,
        replacement_cache: 10,
        ip_limits: true,
        max_per_subnet_bucket: 2,
        max_per_subnet_table: 10,
        refresh_interval: Duration::from_secs(15 * 60),
        max_failures: 2,
    };
}

impl Default for RoutingConfig {
    fn default() -> RoutingConfig {
        RoutingConfig::DEFAULT
    }
}

/// How we learned that a peer exists and is up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// It answered a request of ours: its id and address are proven reachable.
    Verified,
    /// It only contacted us; we have not reached it ourselves.
    Inbound,
}

/// One routing table entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The peer and its addresses: for a `Verified` entry the one we reached it at, for an
    /// `Inbound` one what it claims.
    pub peer: PeerInfo,
    /// `Verified` once it has answered one of our requests; it stays so.
    pub source: Source,
    /// When it was last heard from.
    pub last_seen: Instant,
    failures: u32,
    /// Where the IP-diversity limits count it: the subnet we saw it at (the address we
    /// reached, or the socket of its inbound connection), never one it merely claims.
    subnet: Option<Subnet>,
}

impl Entry {
    /// Requests to it that failed in a row since it was last heard from.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// The subnet the IP-diversity limits count it in (`None`: exempt, loopback).
    pub fn subnet(&self) -> Option<Subnet> {
        self.subnet
    }
}

/// What [`RoutingTable::observe`] did with a peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InsertOutcome {
    /// A new entry, at the most-recent end of its bucket.
    Added,
    /// Already present: moved to most-recent, addresses refreshed, `Inbound` upgraded to
    /// `Verified` when the observation is `Verified`.
    Updated,
    /// The bucket is full: the caller must PING `oldest` and report with
    /// [`RoutingTable::ping_result`] (a timeout is `alive = false`). The candidate waits in the
    /// replacement cache.
    PingOldest {
        /// The bucket's least-recently-seen entry.
        oldest: PeerInfo,
    },
    /// Put in the replacement cache: the bucket is full and either a ping is already in flight
    /// for it, or the candidate is inbound-only and the oldest entry is `Verified`. With
    /// `replacement_cache = 0` the candidate is dropped (and counted).
    Queued,
    /// Refused; the reason is also counted in [`RoutingStats`].
    Rejected(RejectReason),
}

/// Why a peer was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RejectReason {
    /// It is our own id.
    LocalId,
    /// It has no address to reach it at.
    NoAddress,
    /// Its subnet already has `max_per_subnet_bucket` entries in its bucket.
    BucketSubnetLimit,
    /// Its subnet already has `max_per_subnet_table` entries in the table.
    TableSubnetLimit,
}

impl RejectReason {
    /// Every reason, in the order of [`RoutingStats::rejected`].
    pub const ALL: [RejectReason; 4] = [
        RejectReason::LocalId,
        RejectReason::NoAddress,
        RejectReason::BucketSubnetLimit,
        RejectReason::TableSubnetLimit,
    ];

    /// A short snake_case name, used as a metric label.
    pub fn name(self) -> &'static str {
        match self {
            Self::LocalId => "local_id",
            Self::NoAddress => "no_address",
            Self::BucketSubnetLimit => "bucket_subnet_limit",
            Self::TableSubnetLimit => "table_subnet_limit",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::LocalId => "the peer has our own id",
            Self::NoAddress => "the peer has no address",
            Self::BucketSubnetLimit => "its subnet has the maximum number of entries in the bucket",
            Self::TableSubnetLimit => "its subnet has the maximum number of entries in the table",
        })
    }
}

impl std::error::Error for RejectReason {}

/// The network a peer's address belongs to, for the IP-diversity limits (also written to
/// the log with what it stored, so its quotas hold across a restart).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub enum Subnet {
    /// An IPv4 /24: its first three bytes.
    V4([u8; 3]),
    /// An IPv6 /64: its first eight bytes.
    V6([u8; 8]),
}

impl Subnet {
    /// The subnet of a peer: that of its first address (`None` without one).
    pub fn of_peer(peer: &PeerInfo) -> Option<Subnet> {
        peer.addrs.first().and_then(Subnet::of)
    }

    /// The subnet of `addr`, or `None` for a loopback address (exempt from the limits).
    /// IPv4-mapped IPv6 addresses count as their IPv4 address, so they cannot dodge a limit.
    pub fn of(addr: &SocketAddr) -> Option<Subnet> {
        Subnet::of_ip(addr.ip())
    }

    /// The subnet of `ip`; see [`Subnet::of`].
    pub fn of_ip(ip: IpAddr) -> Option<Subnet> {
        let ip = ip.to_canonical();
        if ip.is_loopback() {
            return None;
        }
        Some(match ip {
            IpAddr::V4(v4) => {
                let o = v4.octets();
                Subnet::V4([o[0], o[1], o[2]])
            }
            IpAddr::V6(v6) => {
                let mut prefix = [0u8; 8];
                prefix.copy_from_slice(&v6.octets()[..8]);
                Subnet::V6(prefix)
            }
        })
    }
}

/// Counters and gauges of a [`RoutingTable`], for metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoutingStats {
    /// Entries now.
    pub entries: usize,
    /// Of those, entries at an address we reached ourselves (`Source::Verified`).
    pub verified: usize,
    /// Replacement candidates now.
    pub replacements: usize,
    /// Buckets with a ping in flight now.
    pub pings_in_flight: usize,
    /// New entries added by `observe`.
    pub added: u64,
    /// Observations of known entries.
    pub updated: u64,
    /// Candidates put in a replacement cache (including those behind a `PingOldest`).
    pub queued: u64,
    /// Replacements promoted into a freed slot.
    pub promoted: u64,
    /// Entries evicted as dead (failed ping or `max_failures` failed requests).
    pub evicted: u64,
    /// Entries removed by [`RoutingTable::remove`].
    pub removed: u64,
    /// Replacement candidates dropped: pushed out at the cache bound, refused by a cache of
    /// size 0, or after a failed request.
    pub replacements_dropped: u64,
    /// `PingOldest` outcomes handed to the caller.
    pub pings_requested: u64,
    /// Address changes of known entries refused because the new subnet is at its limit (the
    /// old addresses are kept).
    pub addr_changes_refused: u64,
    /// Observations whose address list was cut to `MAX_ADDRS_PER_PEER`.
    pub addrs_truncated: u64,
    /// Refused observations, indexed like [`RejectReason::ALL`].
    pub rejected: [u64; RejectReason::ALL.len()],
}

impl RoutingStats {
    /// Refused observations for `reason`.
    pub fn rejected(&self, reason: RejectReason) -> u64 {
        self.rejected[reason.index()]
    }
}

/// The Kademlia routing table of one node.
///
/// Driving contract: feed every contact to [`observe`](Self::observe) (`Verified` for answers
/// to our requests, `Inbound` for requests we receive); for each `PingOldest`, ping the peer
/// and call [`ping_result`](Self::ping_result) exactly once; call
/// [`record_failure`](Self::record_failure) for every failed request. Every `refresh_interval`
/// or so, look up [`random_id_in_bucket`](Self::random_id_in_bucket) for each bucket in
/// [`buckets_due_for_refresh`](Self::buckets_due_for_refresh) and call
/// [`mark_refreshed`](Self::mark_refreshed) for the bucket of every lookup target.
#[derive(Debug, Clone)]
pub struct RoutingTable {
    local: NodeId,
    config: RoutingConfig,
    /// Buckets 0 ..= the highest index ever used; higher ones are empty and not stored. With
    /// N nodes only about log2(N) + a few buckets are ever used, so a node keeps ~10 buckets
    /// rather than 256 (33 KiB less per node).
    buckets: Vec<Bucket>,
    /// Entries per subnet over the whole table (loopback excluded).
    subnets: BTreeMap<Subnet, usize>,
    stats: RoutingStats,
}

impl RoutingTable {
    /// An empty table for the node `local`. A `k` or `max_failures` of 0 is taken as 1.
    pub fn new(local: NodeId, config: RoutingConfig) -> RoutingTable {
        let config = RoutingConfig {
            k: config.k.max(1),
            max_failures: config.max_failures.max(1),
            ..config
        };
        RoutingTable {
            local,
            config,
            buckets: Vec::new(),
            subnets: BTreeMap::new(),
            stats: RoutingStats::default(),
        }
    }

    /// Our own id.
    pub fn local_id(&self) -> NodeId {
        self.local
    }

    /// The settings in force (after the adjustments of [`new`](Self::new)).
    pub fn config(&self) -> &RoutingConfig {
        &self.config
    }

    /// The bucket `id` belongs to (0 = the far half of the key space, 255 = nearest); `None`
    /// for our own id.
    pub fn bucket_index(&self, id: &NodeId) -> Option<usize> {
        self.local.bucket_index(id)
    }

    /// Records that `peer` was heard from at `now`; see the module doc for the rules.
    ///
    /// Call it only for the authenticated peer of a connection: `Inbound` when it sent us a
    /// request, `Verified` when it answered ours. Never for peers merely named in a response:
    /// their ids and addresses are a third party's claim, and would let it rewrite the
    /// addresses of known entries.
    /// The subnet limits count the peer at its first address, which must be where we saw it:
    /// for a contact whose addresses are claims, use [`observe_from`](Self::observe_from).
    pub fn observe(&mut self, now: Instant, peer: PeerInfo, source: Source) -> InsertOutcome {
        let seen_at = peer.addrs.first().map(SocketAddr::ip);
        self.observe_at(now, peer, source, seen_at, &|_| 0)
    }

    /// [`observe`](Self::observe) for a peer seen at `seen_at` (the socket address of its
    /// connection) whose `addrs` are its own unverified claims: the limits count `seen_at`, so
    /// one host cannot fill a bucket by claiming addresses in many subnets.
    pub fn observe_from(
        &mut self,
        now: Instant,
        peer: PeerInfo,
        source: Source,
        seen_at: IpAddr,
    ) -> InsertOutcome {
        self.observe_at(now, peer, source, Some(seen_at), &|_| 0)
    }

    /// [`observe_from`](Self::observe_from), where a full bucket pings the entry of lowest
    /// `reliability` (the least-recently-seen of those) instead of the least-recently-seen
    /// entry: the one most likely dead, so a slot goes to the newcomer sooner, and a reliable
    /// old entry is not put to the test.
    pub fn observe_ranked(
        &mut self,
        now: Instant,
        peer: PeerInfo,
        source: Source,
        seen_at: IpAddr,
        reliability: &dyn Fn(&NodeId) -> u32,
    ) -> InsertOutcome {
        self.observe_at(now, peer, source, Some(seen_at), reliability)
    }

    /// Refreshes a known entry heard from over a connection that proves nothing new about its
    /// address (it answered over a connection it opened): most-recent, failures reset,
    /// addresses and source unchanged. Returns whether it is an entry.
    pub fn heard_from(&mut self, now: Instant, peer: &NodeId) -> bool {
        let Some(b) = self.stored_bucket(peer) else { return false };
        let Some(pos) = self.buckets[b].position(peer) else { return false };
        let mut entry = self.take_entry(b, pos);
        entry.last_seen = now;
        entry.failures = 0;
        self.insert_entry(b, entry);
        self.stats.updated += 1;
        true
    }

    fn observe_at(
        &mut self,
        now: Instant,
        mut peer: PeerInfo,
        source: Source,
        seen_at: Option<IpAddr>,
        reliability: &dyn Fn(&NodeId) -> u32,
    ) -> InsertOutcome {
        let Some(b) = self.local.bucket_index(&peer.id) else {
            return self.reject(RejectReason::LocalId);
        };
        if peer.addrs.is_empty() {
            return self.reject(RejectReason::NoAddress);
        }
        if peer.addrs.len() > MAX_ADDRS_PER_PEER {
            peer.addrs.truncate(MAX_ADDRS_PER_PEER);
            self.stats.addrs_truncated += 1;
        }
        if self.buckets.len() <= b {
            self.buckets.resize_with(b + 1, Bucket::default);
        }
        let subnet = seen_at.and_then(Subnet::of_ip);
        if let Some(pos) = self.buckets[b].position(&peer.id) {
            self.update(now, b, pos, peer, source, subnet);
            return InsertOutcome::Updated;
        }
        if let Err(reason) = self.admit_check(b, subnet) {
            return self.reject(reason);
        }
        let candidate = Entry { peer, source, last_seen: now, failures: 0, subnet };
        let bucket = &mut self.buckets[b];
        if bucket.entries.len() < self.config.k {
            bucket.remove_replacement(&candidate.peer.id);
            bucket.last_touched_at = Some(now);
            self.insert_entry(b, candidate);
            self.stats.added += 1;
            return InsertOutcome::Added;
        }
        // Full bucket: old entries stay (they have shown they stay up); the candidate waits.
        // The entry put to the test is the least reliable, the oldest of those.
        let weakest =
            bucket.entries.iter().enumerate().min_by_key(|(i, e)| (reliability(&e.peer.id), *i));
        let oldest = weakest.map(|(_, e)| (e.peer.clone(), e.source));
        // An inbound-only contact never puts a verified entry's slot at stake.
        let protected = source == Source::Inbound && matches!(oldest, Some((_, Source::Verified)));
        let may_ping = bucket.pending_ping.is_none() && !protected;
        self.queue_replacement(b, candidate);
        match oldest {
            Some((oldest, _)) if may_ping => {
                self.buckets[b].pending_ping = Some(oldest.id);
                self.stats.pings_requested += 1;
                InsertOutcome::PingOldest { oldest }
            }
            _ => InsertOutcome::Queued,
        }
    }

    /// Reports the PING requested by [`InsertOutcome::PingOldest`]. Alive: the entry becomes
    /// most-recent (its source is unchanged: a PONG over a connection the peer opened proves
    /// no address; the caller observes it `Verified` when it reached the address), the
    /// bucket's ping slot frees, and the candidate stays queued.
    /// Dead: the entry is evicted and the best replacement promoted. For a peer that is not
    /// the one being pinged, alive refreshes it and dead counts as a failed request.
    pub fn ping_result(&mut self, now: Instant, peer: &NodeId, alive: bool) {
        let Some(b) = self.stored_bucket(peer) else { return };
        let bucket = &mut self.buckets[b];
        let was_pending = bucket.pending_ping == Some(*peer);
        if was_pending {
            bucket.pending_ping = None;
        }
        let Some(pos) = bucket.position(peer) else { return };
        if alive {
            let mut entry = self.take_entry(b, pos);
            entry.last_seen = now;
            entry.failures = 0;
            self.insert_entry(b, entry);
        } else if was_pending {
            self.evict(b, pos);
        } else {
            self.record_failure(peer);
        }
    }

    /// Reports that a request to `peer` failed. After `max_failures` in a row (any
    /// observation resets the count) the entry is evicted and a replacement promoted. A
    /// replacement candidate that fails is dropped from the cache.
    pub fn record_failure(&mut self, peer: &NodeId) {
        let Some(b) = self.stored_bucket(peer) else { return };
        let max_failures = self.config.max_failures;
        let bucket = &mut self.buckets[b];
        if let Some(pos) = bucket.position(peer) {
            let entry = &mut bucket.entries[pos];
            entry.failures = entry.failures.saturating_add(1);
            if entry.failures >= max_failures {
                self.evict(b, pos);
            }
        } else if bucket.remove_replacement(peer).is_some() {
            self.stats.replacements_dropped += 1;
        }
    }

    /// Removes `peer` (an entry, promoting a replacement into its slot, or a replacement
    /// candidate). Returns whether it was there.
    pub fn remove(&mut self, peer: &NodeId) -> bool {
        let Some(b) = self.stored_bucket(peer) else { return false };
        if let Some(pos) = self.buckets[b].position(peer) {
            self.take_entry(b, pos);
            self.stats.removed += 1;
            self.promote(b);
            return true;
        }
        self.buckets[b].remove_replacement(peer).is_some()
    }

    /// `peer`'s bucket index, if that bucket is stored (else the peer is surely absent).
    fn stored_bucket(&self, peer: &NodeId) -> Option<usize> {
        self.local.bucket_index(peer).filter(|&b| b < self.buckets.len())
    }

    /// Whether `peer` is an entry (replacement candidates are not).
    pub fn contains(&self, peer: &NodeId) -> bool {
        self.get(peer).is_some()
    }

    /// The entry of `peer`, if it is one.
    pub fn get(&self, peer: &NodeId) -> Option<&Entry> {
        let bucket = self.buckets.get(self.local.bucket_index(peer)?)?;
        bucket.entries.iter().find(|e| e.peer.id == *peer)
    }

    /// Up to `n` entries closest to `target` by XOR distance, nearest first.
    ///
    /// Cost: only the buckets that can hold the answer are read. With `i` the bucket of
    /// `target`, bucket `i` holds the nearest entries, then buckets `i+1..` (all at distance
    /// with leading bit `i`), then `i-1`, `i-2`, … each strictly farther than the last; the walk
    /// stops once `n` are gathered, then only the gathered candidates are sorted.
    pub fn closest(&self, target: &NodeId, n: usize) -> Vec<PeerInfo> {
        self.closest_where(target, n, |_| true)
    }

    /// [`closest`](Self::closest) among `Verified` entries only: what we may tell others
    /// (handshake.md §3.5: an address we have not reached is not shared).
    pub fn closest_verified(&self, target: &NodeId, n: usize) -> Vec<PeerInfo> {
        self.closest_where(target, n, |e| e.source == Source::Verified)
    }

    fn closest_where(
        &self,
        target: &NodeId,
        n: usize,
        keep: impl Fn(&Entry) -> bool,
    ) -> Vec<PeerInfo> {
        if n == 0 {
            return Vec::new();
        }
        // Our own id as target: no bucket `i`, and each bucket is nearer than the one below
        // it, so the walk goes down from 255.
        let i = self.local.bucket_index(target).unwrap_or(ID_BITS);
        let mut found: Vec<&Entry> = Vec::new();
        if let Some(bucket) = self.buckets.get(i) {
            found.extend(bucket.entries.iter().filter(|e| keep(e)));
        }
        if found.len() < n {
            for bucket in self.buckets.iter().skip(i + 1) {
                found.extend(bucket.entries.iter().filter(|e| keep(e)));
            }
        }
        for bucket in self.buckets.iter().take(i).rev() {
            if found.len() >= n {
                break;
            }
            found.extend(bucket.entries.iter().filter(|e| keep(e)));
        }
        // Distances computed once; only the nearest `n` are sorted. Ids are unique, so
        // distances are too and the unstable selection and sort are deterministic.
        let mut ranked: Vec<(Distance, &Entry)> =
            found.into_iter().map(|e| (target.distance(&e.peer.id), e)).collect();
        if ranked.len() > n {
            ranked.select_nth_unstable_by_key(n - 1, |(d, _)| *d);
            ranked.truncate(n);
        }
        ranked.sort_unstable_by_key(|(d, _)| *d);
        ranked.into_iter().map(|(_, e)| e.peer.clone()).collect()
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.buckets.iter().map(|b| b.entries.len()).sum()
    }

    /// Whether the table has no entry.
    pub fn is_empty(&self) -> bool {
        self.buckets.iter().all(|b| b.entries.is_empty())
    }

    /// Every entry, far buckets first, least-recently-seen first within a bucket.
    pub fn iter(&self) -> impl Iterator<Item = &Entry> + '_ {
        self.buckets.iter().flat_map(|b| b.entries.iter())
    }

    /// Buckets in use: indices from 0 up to the nearest one ever filled.
    pub fn bucket_count(&self) -> usize {
        self.buckets.len()
    }

    /// The entries of `bucket`, least-recently-seen first (empty when out of range).
    pub fn bucket_entries(&self, bucket: usize) -> &[Entry] {
        self.buckets.get(bucket).map_or(&[], |b| b.entries.as_slice())
    }

    /// The replacement candidates of `bucket`, oldest first (empty when out of range).
    pub fn replacements(&self, bucket: usize) -> &[Entry] {
        self.buckets.get(bucket).map_or(&[], |b| b.replacements.as_slice())
    }

    /// The entry of `bucket` being pinged, if any.
    pub fn pending_ping(&self, bucket: usize) -> Option<NodeId> {
        self.buckets.get(bucket)?.pending_ping
    }

    /// Buckets due for refresh at `now`, ascending: every bucket from 0 up to the nearest
    /// non-empty one (inclusive) that was not touched for `refresh_interval`.
    ///
    /// Empty buckets farther than our nearest entry are included: the network surely has
    /// peers there (bucket 0 alone is half the key space), so an empty one means we are
    /// missing them. Buckets nearer than our nearest entry are left out: they are empty in
    /// any network much smaller than 2^index, and the lookup of our own id that the caller
    /// runs at bootstrap covers them. An empty table has nothing due. A bucket is touched
    /// when `observe` adds an entry to it or by [`mark_refreshed`](Self::mark_refreshed).
    pub fn buckets_due_for_refresh(&self, now: Instant) -> Vec<usize> {
        let Some(nearest) = self.buckets.iter().rposition(|b| !b.entries.is_empty()) else {
            return Vec::new();
        };
        let interval = self.config.refresh_interval;
        (0..=nearest)
            .filter(|&i| match self.buckets[i].last_touched_at {
                None => true,
                Some(at) => now.saturating_duration_since(at) >= interval,
            })
            .collect()
    }

    /// Records that a lookup went through `bucket` at `now` (a refresh, or any lookup whose
    /// target is in it), so it is not due again before `refresh_interval`.
    pub fn mark_refreshed(&mut self, bucket: usize, now: Instant) {
        if let Some(b) = self.buckets.get_mut(bucket) {
            b.last_touched_at = Some(now);
        }
    }

    /// A random id whose bucket from our id is exactly `bucket` (values above 255 are taken
    /// as 255): the target of that bucket's refresh lookup.
    pub fn random_id_in_bucket(&self, bucket: usize, rng: &mut Rng) -> NodeId {
        let bucket = bucket.min(ID_BITS - 1);
        let mut distance = rng.bytes32();
        let (byte, bit) = (bucket / 8, bucket % 8);
        // Bits before `bucket` equal ours, bit `bucket` differs, the rest are random.
        for d in distance.iter_mut().take(byte) {
            *d = 0;
        }
        distance[byte] = (distance[byte] & (0xff >> bit)) | (0x80 >> bit);
        let mut id = [0u8; ID_BYTES];
        for (i, out) in id.iter_mut().enumerate() {
            *out = self.local.as_bytes()[i] ^ distance[i];
        }
        NodeId::from_bytes(id)
    }

    /// Counters and gauges.
    pub fn stats(&self) -> RoutingStats {
        RoutingStats {
            entries: self.len(),
            verified: self.iter().filter(|e| e.source == Source::Verified).count(),
            replacements: self.buckets.iter().map(|b| b.replacements.len()).sum(),
            pings_in_flight: self.buckets.iter().filter(|b| b.pending_ping.is_some()).count(),
            ..self.stats.clone()
        }
    }

    fn reject(&mut self, reason: RejectReason) -> InsertOutcome {
        self.stats.rejected[reason.index()] += 1;
        InsertOutcome::Rejected(reason)
    }

    /// A known entry was heard from: move it to most-recent, reset its failures, upgrade its
    /// source and take the new addresses if their subnet fits the limits. Claims never
    /// replace the address of a `Verified` entry: only another address we reached does.
    fn update(
        &mut self,
        now: Instant,
        b: usize,
        pos: usize,
        peer: PeerInfo,
        source: Source,
        subnet: Option<Subnet>,
    ) {
        // Taking the entry out releases its subnet, so the check below sees the others only.
        let mut entry = self.take_entry(b, pos);
        let claims_only = source == Source::Inbound && entry.source == Source::Verified;
        if claims_only {
            // Keep the proven address.
        } else if entry.subnet == subnet || self.admit_check(b, subnet).is_ok() {
            entry.peer.addrs = peer.addrs;
            entry.subnet = subnet;
        } else {
            self.stats.addr_changes_refused += 1;
        }
        if source == Source::Verified {
            entry.source = Source::Verified;
        }
        entry.last_seen = now;
        entry.failures = 0;
        self.insert_entry(b, entry);
        self.stats.updated += 1;
    }

    /// Whether a new entry of `subnet` may join bucket `b`.
    fn admit_check(&self, b: usize, subnet: Option<Subnet>) -> Result<(), RejectReason> {
        let Some(subnet) = subnet.filter(|_| self.config.ip_limits) else { return Ok(()) };
        if self.buckets[b].subnet_count(&subnet) >= self.config.max_per_subnet_bucket {
            return Err(RejectReason::BucketSubnetLimit);
        }
        if self.subnets.get(&subnet).copied().unwrap_or(0) >= self.config.max_per_subnet_table {
            return Err(RejectReason::TableSubnetLimit);
        }
        Ok(())
    }

    /// Appends `entry` at the most-recent end of bucket `b` and counts its subnet in the
    /// table. Every entry enters through here, so the table's subnet counts cannot drift.
    fn insert_entry(&mut self, b: usize, entry: Entry) {
        if let Some(subnet) = entry.subnet {
            *self.subnets.entry(subnet).or_insert(0) += 1;
        }
        push_within(&mut self.buckets[b].entries, entry, self.config.k);
    }

    /// Takes the entry at `pos` out of bucket `b`, releasing its subnet and its ping slot.
    /// Every entry leaves through here.
    fn take_entry(&mut self, b: usize, pos: usize) -> Entry {
        let bucket = &mut self.buckets[b];
        let entry = bucket.entries.remove(pos);
        if bucket.pending_ping == Some(entry.peer.id) {
            bucket.pending_ping = None;
        }
        if let Some(subnet) = entry.subnet {
            if let Some(count) = self.subnets.get_mut(&subnet) {
                *count -= 1;
                if *count == 0 {
                    self.subnets.remove(&subnet);
                }
            }
        }
        entry
    }

    fn evict(&mut self, b: usize, pos: usize) {
        self.take_entry(b, pos);
        self.stats.evicted += 1;
        self.promote(b);
    }

    /// Fills a free slot of bucket `b` from its replacement cache: the most recent `Verified`
    /// candidate that fits the limits, else the most recent `Inbound` one, so that a flood of
    /// unsolicited contacts does not choose who replaces a dead verified peer.
    fn promote(&mut self, b: usize) {
        if self.buckets[b].entries.len() >= self.config.k {
            return;
        }
        let fits = |table: &Self, e: &Entry| table.admit_check(b, e.subnet);
        let cache = &self.buckets[b].replacements;
        let pick = [Source::Verified, Source::Inbound].into_iter().find_map(|source| {
            cache.iter().rposition(|e| e.source == source && fits(self, e).is_ok())
        });
        if let Some(pos) = pick {
            let entry = self.buckets[b].replacements.remove(pos);
            self.insert_entry(b, entry);
            self.stats.promoted += 1;
        }
    }

    /// Puts `candidate` at the most-recent end of bucket `b`'s cache, merging a previous copy
    /// (a `Verified` source stays), and drops the oldest candidate beyond the bound.
    fn queue_replacement(&mut self, b: usize, mut candidate: Entry) {
        let cap = self.config.replacement_cache;
        let bucket = &mut self.buckets[b];
        if let Some(previous) = bucket.remove_replacement(&candidate.peer.id) {
            if previous.source == Source::Verified {
                candidate.source = Source::Verified;
            }
        }
        self.stats.queued += 1;
        if cap == 0 {
            self.stats.replacements_dropped += 1;
            return;
        }
        while bucket.replacements.len() >= cap {
            bucket.replacements.remove(0);
            self.stats.replacements_dropped += 1;
        }
        push_within(&mut bucket.replacements, candidate, cap);
    }
}

/// Appends `item` to a list that never holds more than `cap`, growing its room no further
/// than `cap`: doubling, a full bucket of k = 20 would keep 32 slots, and every node keeps
/// about log2(N / k) full buckets.
fn push_within<T>(list: &mut Vec<T>, item: T, cap: usize) {
    if list.len() == list.capacity() {
        let room = (list.len() * 2).max(4).min(cap.max(list.len() + 1));
        list.reserve_exact(room - list.len());
    }
    list.push(item);
}

/// One k-bucket.
#[derive(Debug, Clone, Default)]
struct Bucket {
    /// At most `k`, least-recently-seen first.
    entries: Vec<Entry>,
    /// At most `replacement_cache`, oldest first; they count toward no subnet limit.
    replacements: Vec<Entry>,
    /// The entry being pinged for a candidate; one at a time.
    pending_ping: Option<NodeId>,
    /// Last insertion or lookup through this bucket; `None` = never.
    last_touched_at: Option<Instant>,
}

impl Bucket {
    fn position(&self, id: &NodeId) -> Option<usize> {
        self.entries.iter().position(|e| e.peer.id == *id)
    }

    fn remove_replacement(&mut self, id: &NodeId) -> Option<Entry> {
        let pos = self.replacements.iter().position(|e| e.peer.id == *id)?;
        Some(self.replacements.remove(pos))
    }

    /// Entries of `subnet` in this bucket, counted from the entries themselves: at most k to
    /// look at, and a kept count per bucket cost as much memory as the entries' addresses
    /// (every node keeps about log2(N / k) full buckets).
    fn subnet_count(&self, subnet: &Subnet) -> usize {
        self.entries.iter().filter(|e| e.subnet.as_ref() == Some(subnet)).count()
    }
}

/// Kademlia bucket size (DESIGN.md, "Kademlia").
pub const K: usize = 20;

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const SMALL: RoutingConfig =
        RoutingConfig { k: 3, replacement_cache: 2, ..RoutingConfig::DEFAULT };

    fn zero() -> NodeId {
        NodeId::from_bytes([0; 32])
    }

    /// An id in bucket `b` (b < 240) of the all-zero local id, told apart by `n`.
    fn id_in(b: usize, n: u16) -> NodeId {
        let mut bytes = [0u8; 32];
        bytes[b / 8] |= 0x80 >> (b % 8);
        bytes[30..].copy_from_slice(&n.to_be_bytes());
        NodeId::from_bytes(bytes)
    }

    fn v4(a: u8, b: u8, c: u8, d: u8) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::new(a, b, c, d)), 4000)
    }

    /// A distinct /24 for every `n`.
    fn own_subnet(n: u16) -> SocketAddr {
        let [hi, lo] = n.to_be_bytes();
        v4(10, hi, lo, 1)
    }

    fn peer(id: NodeId, addr: SocketAddr) -> PeerInfo {
        PeerInfo { id, addrs: vec![addr] }
    }

    /// Peer `n` of bucket `b`, in its own /24.
    fn p(b: usize, n: u16) -> PeerInfo {
        peer(id_in(b, n), own_subnet(n))
    }

    fn ids(entries: &[Entry]) -> Vec<NodeId> {
        entries.iter().map(|e| e.peer.id).collect()
    }

    /// Recomputes everything the table keeps incrementally and checks every bound.
    fn check_invariants(t: &RoutingTable) {
        let mut table: BTreeMap<Subnet, usize> = BTreeMap::new();
        for (i, bucket) in t.buckets.iter().enumerate() {
            assert!(bucket.entries.len() <= t.config.k);
            assert!(bucket.replacements.len() <= t.config.replacement_cache);
            let mut counts: BTreeMap<Subnet, usize> = BTreeMap::new();
            for e in bucket.entries.iter().chain(&bucket.replacements) {
                assert_eq!(t.local.bucket_index(&e.peer.id), Some(i));
            }
            for e in &bucket.entries {
                assert!(!bucket.replacements.iter().any(|r| r.peer.id == e.peer.id));
                if let Some(s) = e.subnet {
                    *counts.entry(s).or_insert(0) += 1;
                    *table.entry(s).or_insert(0) += 1;
                }
            }
            for (s, n) in counts {
                assert_eq!(bucket.subnet_count(&s), n, "bucket {i} subnet {s:?}");
            }
            if let Some(pending) = bucket.pending_ping {
                assert!(bucket.position(&pending).is_some());
            }
        }
        assert_eq!(t.subnets, table);
    }

    // ---- Insertion order and updates ----

    #[test]
    fn only_buckets_up_to_the_highest_used_are_stored() {
        let t0 = Instant::now();
        let mut t = RoutingTable::new(zero(), RoutingConfig::DEFAULT);
        assert_eq!(t.buckets.len(), 0);
        // Failures, pings and removals of peers in unstored buckets change nothing.
        t.record_failure(&id_in(9, 1));
        t.ping_result(t0, &id_in(9, 1), false);
        assert!(!t.remove(&id_in(9, 1)));
        assert_eq!(t.buckets.len(), 0);
        t.observe(t0, p(3, 1), Source::Verified);
        assert_eq!(t.buckets.len(), 4);
        t.observe(t0, p(1, 1), Source::Verified);
        assert_eq!(t.buckets.len(), 4);
        assert_eq!(t.closest(&id_in(200, 0), 5).len(), 2);
        check_invariants(&t);
    }

    #[test]
    fn adds_and_updates_in_least_recently_seen_order() {
        let t0 = Instant::now();
        let mut t = RoutingTable::new(zero(), RoutingConfig::DEFAULT);
        assert!(t.is_empty());
        for n in 0..3 {
            assert_eq!(t.observe(t0, p(5, n), Source::Inbound), InsertOutcome::Added);
        }
        assert_eq!(ids(t.bucket_entries(5)), [id_in(5, 0), id_in(5, 1), id_in(5, 2)]);
        let t1 = t0 + Duration::from_secs(1);
        let moved = peer(id_in(5, 0), v4(10, 9, 9, 9));
        assert_eq!(t.observe(t1, moved, Source::Inbound), InsertOutcome::Updated);
        assert_eq!(ids(t.bucket_entries(5)), [id_in(5, 1), id_in(5, 2), id_in(5, 0)]);
        let e = t.get(&id_in(5, 0)).unwrap();
        assert_eq!((e.last_seen, e.peer.addrs[0]), (t1, v4(10, 9, 9, 9)));
        assert_eq!((t.len(), t.stats().added, t.stats().updated), (3, 3, 1));
        assert!(t.contains(&id_in(5, 1)) && !t.contains(&id_in(5, 9)));
        assert_eq!(t.iter().count(), 3);
        check_invariants(&t);
    }

    #[test]
    fn rejects_local_id_and_peer_without_address() {
        let mut t = RoutingTable::new(zero(), RoutingConfig::DEFAULT);
        let now = Instant::now();
        let me = peer(zero(), v4(10, 0, 0, 1));
        assert_eq!(
            t.observe(now, me, Source::Verified),
            InsertOutcome::Rejected(RejectReason::LocalId)
        );
        let bare = PeerInfo { id: id_in(1, 1), addrs: vec![] };
        assert_eq!(
            t.observe(now, bare, Source::Verified),
            InsertOutcome::Rejected(RejectReason::NoAddress)
        );
        let s = t.stats();
        assert_eq!(
            (s.rejected(RejectReason::LocalId), s.rejected(RejectReason::NoAddress)),
            (1, 1)
        );
        assert!(t.is_empty());
        assert_eq!(RejectReason::NoAddress.name(), "no_address");
        assert_eq!(RejectReason::LocalId.to_string(), "the peer has our own id");
    }

    #[test]
    fn keeps_at_most_max_addrs_per_peer() {
        let mut t = RoutingTable::new(zero(), RoutingConfig::DEFAULT);
        let addrs: Vec<SocketAddr> = (0..9).map(|i| v4(10, 0, i, 1)).collect();
        let many = PeerInfo { id: id_in(2, 1), addrs };
        assert_eq!(t.observe(Instant::now(), many, Source::Verified), InsertOutcome::Added);
        assert_eq!(t.get(&id_in(2, 1)).unwrap().peer.addrs.len(), MAX_ADDRS_PER_PEER);
        assert_eq!(t.stats().addrs_truncated, 1);
    }

    // ---- Full buckets: ping before evict, replacement cache ----

    fn full_bucket(config: RoutingConfig, b: usize, source: Source) -> (RoutingTable, Instant) {
        let now = Instant::now();
        let mut t = RoutingTable::new(zero(), config);
        for n in 0..config.k as u16 {
            assert_eq!(t.observe(now, p(b, n), source), InsertOutcome::Added);
        }
        (t, now)
    }

    #[test]
    fn full_bucket_asks_to_ping_the_oldest() {
        let (mut t, now) = full_bucket(RoutingConfig::DEFAULT, 3, Source::Verified);
        assert_eq!(t.len(), K);
        let out = t.observe(now, p(3, 100), Source::Verified);
        assert_eq!(out, InsertOutcome::PingOldest { oldest: p(3, 0) });
        assert_eq!(t.pending_ping(3), Some(id_in(3, 0)));
        assert_eq!(ids(t.replacements(3)), [id_in(3, 100)]);
        assert!(!t.contains(&id_in(3, 100)));
        assert_eq!((t.stats().pings_requested, t.stats().pings_in_flight), (1, 1));
        check_invariants(&t);
    }

    #[test]
    fn full_bucket_pings_its_least_reliable_entry_first() {
        let (mut t, now) = full_bucket(RoutingConfig::DEFAULT, 3, Source::Verified);
        let seen_at = p(3, 100).addrs[0].ip();
        // Entries 7 and 12 have failed more than the others; 12 the most.
        let reliability = |id: &NodeId| match *id {
            i if i == id_in(3, 12) => 10,
            i if i == id_in(3, 7) => 20,
            _ => 100,
        };
        let out = t.observe_ranked(now, p(3, 100), Source::Verified, seen_at, &reliability);
        assert_eq!(out, InsertOutcome::PingOldest { oldest: p(3, 12) });
        assert_eq!(t.pending_ping(3), Some(id_in(3, 12)));
        // It does not answer: it goes, and the newcomer takes its slot.
        t.ping_result(now, &id_in(3, 12), false);
        assert!(t.contains(&id_in(3, 100)) && !t.contains(&id_in(3, 12)));
        // Equally reliable entries: the least-recently-seen, as without figures.
        let out = t.observe_ranked(now, p(3, 101), Source::Verified, seen_at, &|_| 5);
        assert_eq!(out, InsertOutcome::PingOldest { oldest: p(3, 0) });
        check_invariants(&t);
    }

    #[test]
    fn only_one_ping_in_flight_per_bucket() {
        let (mut t, now) = full_bucket(RoutingConfig::DEFAULT, 3, Source::Verified);
        assert!(matches!(
            t.observe(now, p(3, 100), Source::Verified),
            InsertOutcome::PingOldest { .. }
        ));
        assert_eq!(t.observe(now, p(3, 101), Source::Verified), InsertOutcome::Queued);
        assert_eq!(t.pending_ping(3), Some(id_in(3, 0)));
        assert_eq!(ids(t.replacements(3)), [id_in(3, 100), id_in(3, 101)]);
        // Another bucket has its own slot.
        for n in 0..K as u16 {
            t.observe(now, p(4, n), Source::Verified);
        }
        assert!(matches!(
            t.observe(now, p(4, 100), Source::Verified),
            InsertOutcome::PingOldest { .. }
        ));
        assert_eq!(t.stats().pings_in_flight, 2);
        check_invariants(&t);
    }

    #[test]
    fn alive_oldest_moves_to_tail_and_candidate_stays_queued() {
        let (mut t, now) = full_bucket(RoutingConfig::DEFAULT, 3, Source::Inbound);
        t.observe(now, p(3, 100), Source::Verified);
        let later = now + Duration::from_secs(5);
        t.ping_result(later, &id_in(3, 0), true);
        let entries = t.bucket_entries(3);
        assert_eq!(entries.last().unwrap().peer.id, id_in(3, 0));
        // A PONG proves it alive, not its address: the caller verifies it if it dialled.
        assert_eq!(entries.last().unwrap().source, Source::Inbound);
        assert_eq!(entries.last().unwrap().last_seen, later);
        assert_eq!(entries[0].peer.id, id_in(3, 1));
        assert_eq!(t.pending_ping(3), None);
        assert_eq!(ids(t.replacements(3)), [id_in(3, 100)]);
        // The slot is free again: the next candidate pings the new oldest.
        assert_eq!(
            t.observe(later, p(3, 101), Source::Verified),
            InsertOutcome::PingOldest { oldest: p(3, 1) }
        );
        check_invariants(&t);
    }

    #[test]
    fn dead_oldest_is_evicted_and_candidate_promoted() {
        let (mut t, now) = full_bucket(RoutingConfig::DEFAULT, 3, Source::Verified);
        t.observe(now, p(3, 100), Source::Verified);
        t.ping_result(now, &id_in(3, 0), false);
        assert!(!t.contains(&id_in(3, 0)));
        assert_eq!(t.bucket_entries(3).last().unwrap().peer.id, id_in(3, 100));
        assert!(t.replacements(3).is_empty());
        assert_eq!(t.pending_ping(3), None);
        let s = t.stats();
        assert_eq!((s.entries, s.evicted, s.promoted, s.replacements), (K, 1, 1, 0));
        check_invariants(&t);
    }

    #[test]
    fn observing_the_pinged_entry_frees_the_ping_slot() {
        let (mut t, now) = full_bucket(RoutingConfig::DEFAULT, 3, Source::Verified);
        t.observe(now, p(3, 100), Source::Verified);
        assert_eq!(t.observe(now, p(3, 0), Source::Inbound), InsertOutcome::Updated);
        assert_eq!(t.pending_ping(3), None);
        // A late ping report for it is harmless.
        t.ping_result(now, &id_in(3, 0), true);
        assert!(t.contains(&id_in(3, 0)));
        check_invariants(&t);
    }

    #[test]
    fn evicts_after_max_failures_in_a_row() {
        let mut t = RoutingTable::new(zero(), SMALL);
        let now = Instant::now();
        for n in 0..4 {
            t.observe(now, p(7, n), Source::Verified);
        }
        assert_eq!(ids(t.replacements(7)), [id_in(7, 3)]);
        t.record_failure(&id_in(7, 1));
        assert_eq!(t.get(&id_in(7, 1)).unwrap().failures(), 1);
        // An observation resets the count.
        t.observe(now, p(7, 1), Source::Verified);
        assert_eq!(t.get(&id_in(7, 1)).unwrap().failures(), 0);
        t.record_failure(&id_in(7, 1));
        assert!(t.contains(&id_in(7, 1)));
        t.record_failure(&id_in(7, 1));
        assert!(!t.contains(&id_in(7, 1)));
        assert!(t.contains(&id_in(7, 3)));
        assert_eq!((t.stats().evicted, t.stats().promoted), (1, 1));
        // Unknown peers and our own id are ignored.
        t.record_failure(&id_in(9, 9));
        t.record_failure(&zero());
        check_invariants(&t);
    }

    #[test]
    fn failed_replacement_is_dropped() {
        let mut t = RoutingTable::new(zero(), SMALL);
        let now = Instant::now();
        for n in 0..4 {
            t.observe(now, p(7, n), Source::Verified);
        }
        t.record_failure(&id_in(7, 3));
        assert!(t.replacements(7).is_empty());
        assert_eq!(t.stats().replacements_dropped, 1);
    }

    #[test]
    fn replacement_cache_is_bounded_and_reappearing_moves_to_end() {
        let mut t = RoutingTable::new(zero(), SMALL);
        let now = Instant::now();
        for n in 0..3 {
            t.observe(now, p(7, n), Source::Verified);
        }
        assert!(matches!(
            t.observe(now, p(7, 10), Source::Verified),
            InsertOutcome::PingOldest { .. }
        ));
        assert_eq!(t.observe(now, p(7, 11), Source::Verified), InsertOutcome::Queued);
        assert_eq!(t.observe(now, p(7, 10), Source::Verified), InsertOutcome::Queued);
        assert_eq!(ids(t.replacements(7)), [id_in(7, 11), id_in(7, 10)]);
        assert_eq!(t.observe(now, p(7, 12), Source::Verified), InsertOutcome::Queued);
        assert_eq!(ids(t.replacements(7)), [id_in(7, 10), id_in(7, 12)]);
        assert_eq!(t.stats().replacements_dropped, 1);
        assert_eq!(t.stats().replacements, 2);
        check_invariants(&t);
    }

    #[test]
    fn a_full_bucket_keeps_room_for_k_entries_and_its_cache_not_more() {
        let config = RoutingConfig { k: 20, replacement_cache: 10, ..SMALL };
        let mut t = RoutingTable::new(zero(), config);
        let now = Instant::now();
        for n in 0..40 {
            t.observe(now, p(7, n), Source::Verified);
        }
        let bucket = &t.buckets[7];
        assert_eq!((bucket.entries.len(), bucket.replacements.len()), (20, 10));
        assert_eq!(bucket.entries.capacity(), 20);
        assert_eq!(bucket.replacements.capacity(), 10);
        check_invariants(&t);
    }

    #[test]
    fn zero_sized_cache_drops_candidates() {
        let config = RoutingConfig { replacement_cache: 0, ..SMALL };
        let (mut t, now) = full_bucket(config, 7, Source::Verified);
        assert!(matches!(
            t.observe(now, p(7, 10), Source::Verified),
            InsertOutcome::PingOldest { .. }
        ));
        assert!(t.replacements(7).is_empty());
        t.ping_result(now, &id_in(7, 0), false);
        assert_eq!(t.len(), 2);
        assert_eq!(t.stats().replacements_dropped, 1);
        check_invariants(&t);
    }

    #[test]
    fn remove_promotes_a_replacement() {
        let mut t = RoutingTable::new(zero(), SMALL);
        let now = Instant::now();
        for n in 0..4 {
            t.observe(now, p(7, n), Source::Verified);
        }
        assert!(t.remove(&id_in(7, 0)));
        assert_eq!(t.pending_ping(7), None);
        assert_eq!(ids(t.bucket_entries(7)), [id_in(7, 1), id_in(7, 2), id_in(7, 3)]);
        assert!(!t.remove(&id_in(7, 0)));
        assert!(!t.remove(&zero()));
        t.observe(now, p(7, 20), Source::Verified);
        assert!(t.remove(&id_in(7, 20)));
        assert!(t.replacements(7).is_empty());
        assert_eq!(t.stats().removed, 1);
        check_invariants(&t);
    }

    // ---- Inbound versus verified ----

    #[test]
    fn inbound_candidate_cannot_displace_verified_entries() {
        let (mut t, now) = full_bucket(RoutingConfig::DEFAULT, 3, Source::Verified);
        assert_eq!(t.observe(now, p(3, 100), Source::Inbound), InsertOutcome::Queued);
        assert_eq!(t.pending_ping(3), None);
        assert_eq!(t.stats().pings_requested, 0);
        // Against an inbound-only oldest entry the inbound candidate may trigger the ping.
        let (mut t, now) = full_bucket(RoutingConfig::DEFAULT, 3, Source::Inbound);
        assert!(matches!(
            t.observe(now, p(3, 100), Source::Inbound),
            InsertOutcome::PingOldest { .. }
        ));
        check_invariants(&t);
    }

    #[test]
    fn inbound_entry_is_upgraded_by_verified_observe_only() {
        let mut t = RoutingTable::new(zero(), RoutingConfig::DEFAULT);
        let now = Instant::now();
        t.observe(now, p(3, 1), Source::Inbound);
        assert_eq!(t.get(&id_in(3, 1)).unwrap().source, Source::Inbound);
        t.observe(now, p(3, 1), Source::Verified);
        assert_eq!(t.get(&id_in(3, 1)).unwrap().source, Source::Verified);
        t.observe(now, p(3, 1), Source::Inbound);
        assert_eq!(t.get(&id_in(3, 1)).unwrap().source, Source::Verified);
    }

    #[test]
    fn promotion_prefers_verified_replacements() {
        let mut t = RoutingTable::new(zero(), SMALL);
        let now = Instant::now();
        for n in 0..3 {
            t.observe(now, p(7, n), Source::Inbound);
        }
        t.observe(now, p(7, 10), Source::Verified);
        t.observe(now, p(7, 11), Source::Inbound);
        t.ping_result(now, &id_in(7, 0), false);
        assert!(t.contains(&id_in(7, 10)));
        assert_eq!(ids(t.replacements(7)), [id_in(7, 11)]);
        check_invariants(&t);
    }

    // ---- IP-diversity limits ----

    #[test]
    fn bucket_subnet_limit_is_enforced_and_released_on_remove() {
        let mut t = RoutingTable::new(zero(), RoutingConfig::DEFAULT);
        let now = Instant::now();
        for n in 0..2 {
            let out = t.observe(now, peer(id_in(3, n), v4(192, 0, 2, n as u8)), Source::Verified);
            assert_eq!(out, InsertOutcome::Added);
        }
        let third = peer(id_in(3, 2), v4(192, 0, 2, 77));
        assert_eq!(
            t.observe(now, third.clone(), Source::Verified),
            InsertOutcome::Rejected(RejectReason::BucketSubnetLimit)
        );
        // Another bucket still has room for that /24, another /24 still fits this bucket.
        assert_eq!(
            t.observe(now, peer(id_in(4, 0), v4(192, 0, 2, 9)), Source::Verified),
            InsertOutcome::Added
        );
        assert_eq!(
            t.observe(now, peer(id_in(3, 5), v4(192, 0, 3, 1)), Source::Verified),
            InsertOutcome::Added
        );
        assert!(t.remove(&id_in(3, 0)));
        assert_eq!(t.observe(now, third, Source::Verified), InsertOutcome::Added);
        assert_eq!(t.stats().rejected(RejectReason::BucketSubnetLimit), 1);
        check_invariants(&t);
    }

    #[test]
    fn table_subnet_limit_is_enforced_and_released_on_eviction() {
        let mut t = RoutingTable::new(zero(), RoutingConfig::DEFAULT);
        let now = Instant::now();
        // Ten entries of 198.51.100.0/24 spread over five buckets, two each.
        for n in 0..10u16 {
            let id = id_in(usize::from(n / 2), n);
            let out = t.observe(now, peer(id, v4(198, 51, 100, n as u8)), Source::Verified);
            assert_eq!(out, InsertOutcome::Added);
        }
        let eleventh = peer(id_in(9, 99), v4(198, 51, 100, 200));
        assert_eq!(
            t.observe(now, eleventh.clone(), Source::Verified),
            InsertOutcome::Rejected(RejectReason::TableSubnetLimit)
        );
        t.record_failure(&id_in(0, 0));
        t.record_failure(&id_in(0, 0));
        assert!(!t.contains(&id_in(0, 0)));
        assert_eq!(t.observe(now, eleventh, Source::Verified), InsertOutcome::Added);
        assert_eq!(t.stats().rejected(RejectReason::TableSubnetLimit), 1);
        check_invariants(&t);
    }

    #[test]
    fn ipv6_limits_use_the_slash_64() {
        let mut t = RoutingTable::new(zero(), RoutingConfig::DEFAULT);
        let now = Instant::now();
        let v6 = |seg3: u16, host: u16| {
            SocketAddr::new(IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, seg3, 0, 0, 0, host)), 1)
        };
        assert_eq!(
            t.observe(now, peer(id_in(3, 0), v6(1, 1)), Source::Verified),
            InsertOutcome::Added
        );
        assert_eq!(
            t.observe(now, peer(id_in(3, 1), v6(1, 2)), Source::Verified),
            InsertOutcome::Added
        );
        assert_eq!(
            t.observe(now, peer(id_in(3, 2), v6(1, 3)), Source::Verified),
            InsertOutcome::Rejected(RejectReason::BucketSubnetLimit)
        );
        assert_eq!(
            t.observe(now, peer(id_in(3, 3), v6(2, 1)), Source::Verified),
            InsertOutcome::Added
        );
        // An IPv4-mapped address counts as its IPv4 /24.
        let mapped =
            |d: u8| SocketAddr::new(IpAddr::V6(Ipv4Addr::new(192, 0, 2, d).to_ipv6_mapped()), 1);
        assert_eq!(Subnet::of(&mapped(1)), Subnet::of(&v4(192, 0, 2, 200)));
        check_invariants(&t);
    }

    #[test]
    fn loopback_is_exempt_from_the_limits() {
        let mut t = RoutingTable::new(zero(), RoutingConfig::DEFAULT);
        let now = Instant::now();
        let v6_loopback = SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 1);
        for n in 0..15u16 {
            let addr = if n % 2 == 0 { v4(127, 0, 0, 1) } else { v6_loopback };
            let out = t.observe(now, peer(id_in(usize::from(n % 3), n), addr), Source::Verified);
            assert_eq!(out, InsertOutcome::Added);
        }
        assert!(t.subnets.is_empty());
        check_invariants(&t);
    }

    #[test]
    fn limits_off_admits_any_number_per_subnet() {
        let config = RoutingConfig { ip_limits: false, ..RoutingConfig::DEFAULT };
        let mut t = RoutingTable::new(zero(), config);
        let now = Instant::now();
        for n in 0..30u16 {
            let out = t.observe(
                now,
                peer(id_in(usize::from(n % 3), n), v4(192, 0, 2, 1)),
                Source::Verified,
            );
            assert_eq!(out, InsertOutcome::Added);
        }
        assert_eq!(t.len(), 30);
        check_invariants(&t);
    }

    #[test]
    fn promotion_skips_replacements_over_the_limits() {
        let config = RoutingConfig { max_per_subnet_table: 2, ..SMALL };
        let (mut t, now) = full_bucket(config, 7, Source::Verified);
        let waiting = peer(id_in(7, 10), v4(198, 51, 100, 1));
        assert!(matches!(
            t.observe(now, waiting, Source::Verified),
            InsertOutcome::PingOldest { .. }
        ));
        // While it waits, its /24 reaches the table limit elsewhere.
        t.observe(now, peer(id_in(8, 0), v4(198, 51, 100, 2)), Source::Verified);
        t.observe(now, peer(id_in(8, 1), v4(198, 51, 100, 3)), Source::Verified);
        t.ping_result(now, &id_in(7, 0), false);
        assert_eq!(t.bucket_entries(7).len(), 2);
        assert_eq!(ids(t.replacements(7)), [id_in(7, 10)]);
        assert_eq!((t.stats().evicted, t.stats().promoted), (1, 0));
        check_invariants(&t);
        // Once the subnet has room again, the next freed slot takes it.
        t.remove(&id_in(8, 0));
        t.remove(&id_in(7, 1));
        assert!(t.contains(&id_in(7, 10)));
        assert_eq!(t.stats().promoted, 1);
        check_invariants(&t);
    }

    #[test]
    fn address_change_moves_the_subnet_count_or_is_refused() {
        let mut t = RoutingTable::new(zero(), RoutingConfig::DEFAULT);
        let now = Instant::now();
        t.observe(now, peer(id_in(3, 0), v4(192, 0, 2, 1)), Source::Verified);
        t.observe(now, peer(id_in(3, 1), v4(192, 0, 2, 2)), Source::Verified);
        t.observe(now, peer(id_in(3, 2), v4(198, 51, 100, 1)), Source::Verified);
        // 3/0 moves to another /24: its old slot frees.
        t.observe(now, peer(id_in(3, 0), v4(203, 0, 113, 1)), Source::Verified);
        check_invariants(&t);
        assert_eq!(t.buckets[3].subnet_count(&Subnet::V4([192, 0, 2])), 1);
        // 3/2 tries to move into a /24 already at the bucket limit: refused, old address kept.
        t.observe(now, peer(id_in(3, 5), v4(192, 0, 2, 5)), Source::Verified);
        let out = t.observe(now, peer(id_in(3, 2), v4(192, 0, 2, 6)), Source::Verified);
        assert_eq!(out, InsertOutcome::Updated);
        assert_eq!(t.get(&id_in(3, 2)).unwrap().peer.addrs[0], v4(198, 51, 100, 1));
        assert_eq!(t.stats().addr_changes_refused, 1);
        check_invariants(&t);
    }

    #[test]
    fn random_operations_keep_every_count_and_bound() {
        let mut rng = Rng::new(3);
        let mut t = RoutingTable::new(zero(), RoutingConfig { max_per_subnet_table: 3, ..SMALL });
        let start = Instant::now();
        let addrs = [
            v4(192, 0, 2, 1),
            v4(192, 0, 2, 2),
            v4(198, 51, 100, 1),
            v4(127, 0, 0, 1),
            SocketAddr::new(IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)), 1),
            SocketAddr::new(IpAddr::V6(Ipv4Addr::new(192, 0, 2, 9).to_ipv6_mapped()), 1),
        ];
        for step in 0..3000u64 {
            let now = start + Duration::from_millis(step);
            let id = if rng.chance(0.01) {
                zero()
            } else {
                id_in(rng.below(3) as usize, rng.below(12) as u16)
            };
            match rng.below(5) {
                0 | 1 => {
                    let n = rng.below(3) as usize;
                    let picked: Vec<SocketAddr> =
                        (0..n).map(|_| addrs[rng.below(addrs.len() as u64) as usize]).collect();
                    let source = if rng.chance(0.5) { Source::Verified } else { Source::Inbound };
                    t.observe(now, PeerInfo { id, addrs: picked }, source);
                }
                2 => t.ping_result(now, &id, rng.chance(0.5)),
                3 => t.record_failure(&id),
                _ => {
                    t.remove(&id);
                }
            }
            check_invariants(&t);
        }
        let s = t.stats();
        assert!(s.added > 0 && s.evicted > 0 && s.promoted > 0 && s.replacements_dropped > 0);
        assert!(RejectReason::ALL.iter().all(|&r| s.rejected(r) > 0));
    }

    // ---- closest() ----

    #[test]
    fn closest_matches_a_brute_force_sort() {
        let mut rng = Rng::new(42);
        let local = NodeId::from_bytes(rng.bytes32());
        let config = RoutingConfig { ip_limits: false, ..RoutingConfig::DEFAULT };
        let mut t = RoutingTable::new(local, config);
        let now = Instant::now();
        for n in 0..300u16 {
            t.observe(
                now,
                peer(NodeId::from_bytes(rng.bytes32()), own_subnet(n)),
                Source::Verified,
            );
        }
        // Near peers too, so the inner buckets are populated.
        for b in [10, 20, 30, 60, 200, 255] {
            let id = t.random_id_in_bucket(b, &mut rng);
            t.observe(now, peer(id, own_subnet(1000 + b as u16)), Source::Verified);
        }
        check_invariants(&t);
        let all: Vec<NodeId> = t.iter().map(|e| e.peer.id).collect();
        let mut targets: Vec<NodeId> = (0..50).map(|_| NodeId::from_bytes(rng.bytes32())).collect();
        targets.extend([0, 1, 5, 10, 30, 255].map(|b| t.random_id_in_bucket(b, &mut rng)));
        targets.push(local);
        targets.push(all[all.len() / 2]);
        for target in targets {
            let mut brute = all.clone();
            brute.sort_by_key(|id| target.distance(id));
            for n in [1, 3, 20, 50, 1000] {
                let got: Vec<NodeId> = t.closest(&target, n).into_iter().map(|p| p.id).collect();
                assert_eq!(got, brute[..n.min(brute.len())], "target {target} n {n}");
            }
        }
        assert!(t.closest(&local, 0).is_empty());
    }

    // ---- Refresh ----

    #[test]
    fn random_id_lands_in_the_requested_bucket() {
        let mut rng = Rng::new(7);
        let local = NodeId::from_bytes(rng.bytes32());
        let t = RoutingTable::new(local, RoutingConfig::DEFAULT);
        for b in [0, 1, 7, 8, 9, 100, 200, 254, 255] {
            for _ in 0..20 {
                let id = t.random_id_in_bucket(b, &mut rng);
                assert_eq!(local.bucket_index(&id), Some(b));
            }
        }
        assert_eq!(local.bucket_index(&t.random_id_in_bucket(999, &mut rng)), Some(255));
    }

    #[test]
    fn buckets_are_due_until_touched_within_the_interval() {
        let mut t = RoutingTable::new(zero(), RoutingConfig::DEFAULT);
        let t0 = Instant::now();
        assert!(t.buckets_due_for_refresh(t0).is_empty());
        t.observe(t0, p(3, 1), Source::Verified);
        assert_eq!(t.buckets_due_for_refresh(t0), [0, 1, 2]);
        t.mark_refreshed(1, t0);
        t.mark_refreshed(999, t0);
        assert_eq!(t.buckets_due_for_refresh(t0), [0, 2]);
        let interval = RoutingConfig::DEFAULT.refresh_interval;
        let almost = t0 + interval - Duration::from_secs(1);
        assert_eq!(t.buckets_due_for_refresh(almost), [0, 2]);
        assert_eq!(t.buckets_due_for_refresh(t0 + interval), [0, 1, 2, 3]);
        t.mark_refreshed(3, t0 + interval);
        assert_eq!(t.buckets_due_for_refresh(t0 + interval), [0, 1, 2]);
    }
}
