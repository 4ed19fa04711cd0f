//! The DHT: Kademlia queries, table maintenance and record upkeep, as a sans-IO protocol behind
//! the router's contract ([`crate::protocol::Protocol`]).
//!
//! [`Dht`] ties the routing table, the lookup state machine and the record store together. It
//! never sees a connection: it asks the router to send a request to a peer
//! ([`Action::Request`], which dials when needed) and hears the outcome through
//! `handle_outcome`, with the [`RequestKey`] it chose, which names the request's purpose
//! (a query's lookup or STORE phase, a table PING, a replication STORE). So no map of requests
//! in flight is kept here: the router holds them, with their deadlines.
//!
//! What a query does, by command (`query`):
//! - `FindNode` / `Bootstrap`: an iterative FIND_NODE lookup; the answer is the k closest
//!   peers that answered. `Bootstrap` targets our own id (the Kademlia join).
//! - `Get`: the local store first (an immutable hit ends there), then a FIND_VALUE lookup. An
//!   immutable value ends the lookup at the first valid copy; for a mutable key the lookup
//!   runs to the end and the highest valid sequence number wins. Every returned record is
//!   validated against the key; a peer serving an invalid one counts as failed.
//! - `Put` / `Provide`: a FIND_NODE lookup for the key, then STORE (or ADD_PROVIDER) to each
//!   of the k closest peers that answered. Success when at least one accepted.
//! - `Providers`: a GET_PROVIDERS lookup, ending early once k providers are known.
//!
//! Maintenance (`maintenance`), on a tick every `maintenance_interval`: expire
//! records, refresh buckets that saw no lookup for the routing table's refresh interval,
//! republish our own records every `republish_interval`, and replicate held records to newly
//! learned peers that are among the k closest to a record's key. The first peer in an empty
//! table triggers a self-lookup, so a node joins as soon as it has one contact; the contacts
//! given by `Join` are dialled again while the table is empty ([`super::join`]).
//!
//! Serving ([`super::serve`]): inbound requests are answered from the routing table and the
//! store; a STORE of a mutable record waits for its signature check on a worker.
//!
//! Routing table inputs (`contacts`): a peer is `Verified` at the one address we
//! reached it at (we dialled it, or it answered over a connection we dialled); a peer that
//! dialled us is `Inbound`, counted by the IP-diversity limits at its socket address, with
//! its own plausible claims as addresses, and a dial-back ([`Action::Probe`]) verifies the
//! first claim. Only `Verified` peers are named in our answers. A full bucket asks for a
//! PING of its least-recently-seen entry.
//!
//! Timers: the maintenance tick and each query's next lookup deadline sit in one
//! [`Deadlines`] set, re-armed whenever a query changes, so `next_deadline` is O(log n).
//!
//! Bounds: queries in flight (`max_queries`, beyond that a command is refused `Busy`), the
//! records and providers a query collects, own records remembered for republishing, the
//! replication queue, STOREs waiting for a worker, and requests in flight. Every drop is
//! counted in [`DhtStats`].

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use super::lookup::{LookupConfig, LookupStats};
use super::maintenance::Replication;
use super::memstore::{MemoryStore, RecordStore, StoreConfig, StoreStats};
use super::quality::{PeerQuality, QualityConfig};
use super::query::{Goal, Query, QueryId};
use super::records::RecordError;
use super::routing::{InsertOutcome, RoutingConfig, RoutingStats, RoutingTable, Source};
use super::serve::Deferred;
use crate::identity::NodeId;
use crate::protocol::{
    Action, CommandId, JobKey, JobResult, Kind, Peer, ProbeResult, Protocol, ReplyTicket,
    RequestFailure, RequestKey,
};
use crate::rng::Rng;
use crate::stats::Histogram;
use crate::timers::Deadlines;
use crate::wire::messages::{
    ErrorCode, Key, PeerInfo, Record, Request, Response, MAX_ADDRS_PER_PEER,
};

/// Settings of the DHT; defaults live in `config`.
#[derive(Debug, Clone)]
pub struct DhtConfig {
    /// Routing table: k, replacement cache, IP-diversity limits, refresh interval.
    pub routing: RoutingConfig,
    /// Lookups: α, k, request and straggler timeouts, disjoint paths.
    pub lookup: LookupConfig,
    /// What is measured of each peer (RTT, success) and whether lookups order by it.
    pub quality: QualityConfig,
    /// Record store: quotas, caps, maximum TTLs.
    pub store: StoreConfig,
    /// Lifetime asked of holders for records we publish.
    pub record_ttl: Duration,
    /// Lifetime asked of holders for our provider announcements.
    pub provider_ttl: Duration,
    /// How often we publish our own records again (well inside `record_ttl`).
    pub republish_interval: Duration,
    /// How often expiry, bucket refresh, republishing and replication run. Zero turns the
    /// periodic tick off (for tests that drive a core by hand).
    pub maintenance_interval: Duration,
    /// Run a self-lookup when the first peer enters an empty routing table (the join).
    pub join_on_first_contact: bool,
    /// Entries per bucket whose connection is kept up (the cheapest by measured cost; 0: none).
    pub keep_warm: usize,
    /// A PUT or PROVIDE whose lookup converges sends its STORE (ADD_PROVIDER) along with the
    /// FIND_NODE to each peer asked from then on (at most k), saving the round trip after the
    /// lookup; a peer the lookup then finds outside the k closest keeps an extra copy.
    pub early_stores: bool,
    /// A kept entry not heard from for this long gets a PING at the next tick (so this plus
    /// `maintenance_interval` belongs below the connection idle timeout).
    pub keepalive_interval: Duration,
    /// Queries running at once; a command beyond this is refused with `Busy`.
    pub max_queries: usize,
    /// Requests in flight, all purposes together; maintenance waits when it is reached.
    pub max_requests_in_flight: usize,
    /// Own records remembered for republishing.
    pub max_originated: usize,
    /// Newly learned peers waiting for replication.
    pub max_replication_queue: usize,
    /// STOREs sent for replication per maintenance tick.
    pub max_replications_per_tick: usize,
    /// Held keys checked against newly learned peers per maintenance tick; the rest waits
    /// for the next tick, so a full store never stalls the event loop.
    pub max_replication_checks_per_tick: usize,
    /// Distinct valid records one GET collects before it stops listening for more.
    pub max_records_per_get: usize,
    /// Verify the signature of a mutable record a peer asks us to store on the worker pool
    /// (`Action::Job`) rather than inline; its answer waits for the result.
    pub verify_in_workers: bool,
    /// STORE requests waiting for a worker; beyond this one is answered `Overloaded`. The
    /// router bounds how long the requester waits (`CoreConfig::answer_timeout`).
    pub max_deferred: usize,
    /// Of those, STOREs one peer, or one address (loopback excepted), may have waiting: its
    /// fair share, so one sender's flood of bad signatures does not get everyone `Overloaded`.
    pub max_deferred_per_source: usize,
    /// STOREs with a bad signature one peer may send within `forgery_window` before it is
    /// dropped with `Goodbye(LowScore)`: an honest node stores and republishes only records
    /// it has validated.
    pub max_forgeries: u32,
    /// See `max_forgeries`.
    pub forgery_window: Duration,
    /// Our own listen addresses, announced in ADD_PROVIDER.
    pub local_addrs: Vec<std::net::SocketAddr>,
    /// Accept loopback and private addresses from any peer (a LAN or a test bed); otherwise
    /// a claim may be no more local than the peer that makes it ([`super::claims`]).
    pub local_network: bool,
    /// Dial-backs of inbound peers' claims in flight at once (the router has its own bound,
    /// `PeerLimits::max_probes`).
    pub max_probes: usize,
    /// Dial-backs waiting for a slot; beyond it the oldest is dropped and counted.
    pub max_probe_queue: usize,
    /// Seed of the DHT's randomness (refresh targets); the router derives it from its own.
    pub rng_seed: u64,
    /// Records fetched by our GETs, kept for the next GET ([`super::cache`]).
    pub cache: super::cache::CacheConfig,
    /// Write what we hold to the node's log (`Job::Persist`) and answer STOREs, provider
    /// announcements and our own puts only once written ([`super::persist`]).
    pub persist: bool,
    /// Writes in flight at once; beyond it a STORE is answered `Overloaded`.
    pub max_pending_writes: usize,
    /// How often the verified routing entries are written (zero: never).
    pub routing_save_interval: Duration,
}

impl DhtConfig {
    /// The defaults (DESIGN.md, "Kademlia"), with no local address and seed 0.
    pub fn new() -> DhtConfig {
        DhtConfig {
            routing: RoutingConfig::DEFAULT,
            lookup: LookupConfig::DEFAULT,
            quality: QualityConfig::DEFAULT,
            store: StoreConfig::DEFAULT,
            record_ttl: Duration::from_secs(24 * 60 * 60),
            provider_ttl: Duration::from_secs(24 * 60 * 60),
            republish_interval: Duration::from_secs(12 * 60 * 60),
            maintenance_interval: Duration::from_secs(10),
            join_on_first_contact: true,
            keep_warm: 3,
            early_stores: true,
            keepalive_interval: Duration::from_secs(30),
            max_queries: 256,
            max_requests_in_flight: 4096,
            max_originated: 4096,
            max_replication_queue: 256,
            max_replications_per_tick: 256,
            max_replication_checks_per_tick: 4096,
            max_records_per_get: 20,
            verify_in_workers: true,
            cache: super::cache::CacheConfig::DEFAULT,
            persist: false,
            max_pending_writes: 4096,
            routing_save_interval: Duration::from_secs(60),
            max_deferred: 1024,
            max_deferred_per_source: 64,
            max_forgeries: 8,
            forgery_window: Duration::from_secs(60),
            local_addrs: Vec::new(),
            local_network: false,
            max_probes: 4,
            max_probe_queue: 256,
            rng_seed: 0,
        }
    }
}

impl Default for DhtConfig {
    fn default() -> DhtConfig {
        DhtConfig::new()
    }
}

/// A DHT command from the application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DhtCommand {
    /// The k closest peers to `target`.
    FindNode {
        /// The lookup target.
        target: NodeId,
    },
    /// Join: a lookup of our own id.
    Bootstrap,
    /// Enter the network through `contacts` (a bootstrap list): dial them now, and again,
    /// backing off, whenever the routing table is empty ([`super::join`]). The first peer in
    /// the empty table starts the self-lookup.
    Join {
        /// Peers to dial, first ones first (at most [`super::join::MAX_JOIN_CONTACTS`] kept).
        contacts: Vec<PeerInfo>,
    },
    /// The record under `key`.
    Get {
        /// The record key.
        key: Key,
    },
    /// Store `record` on the k closest peers to its key (and locally).
    Put {
        /// The record (a mutable one is signed by the caller).
        record: Record,
        /// Mutable records: store only over this sequence number (compare-and-swap).
        expected_seq: Option<u64>,
    },
    /// Announce us as a provider of `key` to the k closest peers.
    Provide {
        /// The provided key.
        key: Key,
    },
    /// Providers of `key`.
    Providers {
        /// The provided key.
        key: Key,
    },
    /// Whether our own store holds an unexpired record under `key` (no network traffic).
    Holds {
        /// The record key.
        key: Key,
    },
    /// Write the routing table now and answer once it and every write queued before it are
    /// in the log (a graceful stop, so a restart remembers the latest peers).
    Flush,
}

/// The answer to a [`DhtCommand`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DhtReply {
    /// Answer to `FindNode`.
    FindNode(Result<FoundPeers, DhtError>),
    /// Answer to `Bootstrap`.
    Bootstrap(Result<LookupStats, DhtError>),
    /// Answer to `Join`: the contacts kept, each dialled unless connected.
    Join(usize),
    /// Answer to `Get`.
    Get(Result<FoundRecord, DhtError>),
    /// Answer to `Put`.
    Put(Result<Published, DhtError>),
    /// Answer to `Provide`.
    Provide(Result<Published, DhtError>),
    /// Answer to `Providers`.
    Providers(Result<FoundProviders, DhtError>),
    /// Answer to `Holds`.
    Holds(bool),
    /// Answer to `Flush`: whether the writes reached the log (true without one).
    Flushed(bool),
}

/// Peers found by a lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundPeers {
    /// Up to k peers that answered, nearest first.
    pub peers: Vec<PeerInfo>,
    /// The lookup's figures.
    pub stats: LookupStats,
}

/// A record found by `Get`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundRecord {
    /// The record: the first valid immutable copy, or the highest valid mutable sequence.
    pub record: Record,
    /// Found in our own store without asking anyone.
    pub local: bool,
    /// The lookup's figures (all zero for a local hit).
    pub stats: LookupStats,
}

/// What a `Put` or `Provide` achieved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// The key.
    pub key: Key,
    /// Peers that accepted the STORE or ADD_PROVIDER.
    pub stored: usize,
    /// Peers asked.
    pub attempted: usize,
    /// The lookup's figures.
    pub lookup: LookupStats,
    /// Requests sent in all: the lookup's and the STOREs.
    pub rpcs: u32,
    /// From command to the last STORE answer.
    pub duration: Duration,
}

/// Providers found by `Providers`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundProviders {
    /// Distinct providers, at most k.
    pub providers: Vec<PeerInfo>,
    /// The lookup's figures.
    pub stats: LookupStats,
}

/// Why a DHT command failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DhtError {
    /// The routing table is empty: nobody to ask.
    NoPeers,
    /// No valid record (or provider) was found.
    NotFound(LookupStats),
    /// The record is invalid (our own `Put`).
    Invalid(RecordError),
    /// No peer accepted the STORE or ADD_PROVIDER; the first refusal's code, if any.
    NotStored(Option<ErrorCode>),
    /// Too many queries are running.
    Busy,
    /// We have no address to announce (bound to an unspecified address with no `announce`
    /// configured and no route found), so we cannot be announced as a provider.
    NoAddress,
    /// Our own copy did not reach the disk (the network may hold it).
    LocalStorage(crate::protocol::PersistError),
}

/// One query kind's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueryCounters {
    /// Queries started.
    pub started: u64,
    /// Queries that ended with a result.
    pub succeeded: u64,
    /// Queries that ended without one.
    pub failed: u64,
    /// Lookup rounds, summed over finished queries.
    pub rounds: u64,
    /// Requests sent, summed over finished queries.
    pub rpcs: u64,
}

/// The query kinds, in the order of [`DhtStats::queries`].
pub const QUERY_KINDS: [&str; 8] =
    ["find_node", "bootstrap", "refresh", "get", "put", "provide", "providers", "republish"];

/// Upper bounds of the lookup-duration buckets, microseconds: 5 ms to 30 s, a loopback
/// lookup to one that waits out its stragglers on a lossy network.
pub const LOOKUP_DURATION_BOUNDS_US: [u64; 12] = [
    5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000, 5_000_000,
    10_000_000, 30_000_000,
];

/// Upper bounds of the lookup-rounds buckets: a lookup in a network of n nodes takes about
/// log₂(n)/b rounds, so a handful; above 20 something is wrong.
pub const LOOKUP_ROUNDS_BOUNDS: [u64; 10] = [1, 2, 3, 4, 5, 6, 8, 10, 15, 20];

/// How long finished lookups took and how many rounds, per query kind, in buckets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LookupHistograms {
    /// Durations in microseconds ([`LookupStats::duration`]), indexed like [`QUERY_KINDS`].
    pub duration_us: [Histogram<12>; 8],
    /// Rounds ([`LookupStats::rounds`]), indexed like [`QUERY_KINDS`].
    pub rounds: [Histogram<10>; 8],
}

impl Default for LookupHistograms {
    fn default() -> Self {
        LookupHistograms {
            duration_us: [Histogram::new(&LOOKUP_DURATION_BOUNDS_US); 8],
            rounds: [Histogram::new(&LOOKUP_ROUNDS_BOUNDS); 8],
        }
    }
}

impl LookupHistograms {
    /// Counts one finished lookup of query kind `kind` (an index into [`QUERY_KINDS`]).
    pub(super) fn observe(&mut self, kind: usize, stats: &LookupStats) {
        let us = u64::try_from(stats.duration.as_micros()).unwrap_or(u64::MAX);
        if let (Some(d), Some(r)) = (self.duration_us.get_mut(kind), self.rounds.get_mut(kind)) {
            d.observe(us);
            r.observe(u64::from(stats.rounds));
        }
    }
}

/// Counters for the metrics layer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DhtStats {
    /// Per query kind, indexed like [`QUERY_KINDS`].
    pub queries: [QueryCounters; 8],
    /// Durations and rounds of the lookups of finished queries, per kind. A query answered
    /// without a lookup (a GET from our own store, no peers) is not in them.
    pub lookups: LookupHistograms,
    /// The cache of records our GETs fetched ([`super::cache`]).
    pub get_cache: super::cache::CacheStats,
    /// Our GETs answered from our own store.
    pub get_store_hits: u64,
    /// FIND_VALUEs answered from a value in memory (the hot tier).
    pub values_served_hot: u64,
    /// FIND_VALUEs whose value had to be read back from the log (the cold tier).
    pub values_served_cold: u64,
    /// FIND_VALUEs for a key we do not hold (answered with closer peers).
    pub values_missed: u64,
    /// Cold values read back into memory.
    pub cold_reads: u64,
    /// Reads that came back with nothing usable (I/O error, entry gone, not the record held).
    pub cold_reads_failed: u64,
    /// Requests refused because too many reads were waiting.
    pub cold_reads_refused: u64,
    /// Writes to the log asked for (each a STORE, provider, put or routing save).
    pub persist_writes: u64,
    /// Write jobs: writes go to the workers in batches, one batch in flight at a time.
    pub persist_batches: u64,
    /// Of those, writes that failed (answered `StorageFull` or `Overloaded`).
    pub persist_failed: u64,
    /// Of those, writes refused because the disk or the log's cap was full.
    pub persist_full: u64,
    /// STOREs refused because `max_pending_writes` were in flight.
    pub persist_refused: u64,
    /// Routing-table saves.
    pub routing_saves: u64,
    /// Records restored from the log at start.
    pub restored_records: u64,
    /// Provider entries restored from the log at start.
    pub restored_providers: u64,
    /// Commands refused because `max_queries` were running.
    pub refused_busy: u64,
    /// Inbound Kademlia requests answered.
    pub requests_served: u64,
    /// STOREs and ADD_PROVIDERs we refused, by reason name.
    pub rejections: BTreeMap<&'static str, u64>,
    /// Records in responses that failed validation (their sender counted as failed).
    pub invalid_records_received: u64,
    /// PINGs sent for full buckets.
    pub table_pings: u64,
    /// PINGs sent to keep the connections to each bucket's cheapest entries up.
    pub keepalive_pings: u64,
    /// STOREs and ADD_PROVIDERs sent with a converging lookup's requests (`early_stores`).
    pub early_stores: u64,
    /// Connections asked for ahead of a lookup's request (`lookup.preconnect`).
    pub preconnects: u64,
    /// Lookups that used `lookup.first_round` and `lookup.preconnect`: the mean measured
    /// round trip was at least `lookup.wide_min_rtt`, or nothing was measured yet.
    pub wide_lookups: u64,
    /// Dials of join contacts asked of the router ([`DhtCommand::Join`]), first ones and
    /// retries; it skips a contact connected or being dialled.
    pub join_dials: u64,
    /// Retries: the routing table was still (or again) empty when the join timer fired.
    pub rejoins: u64,
    /// The per-peer figures that order lookups ([`super::quality`]).
    pub quality: super::quality::QualityStats,
    /// STOREs sent to replicate held records.
    pub replications: u64,
    /// Newly learned peers dropped from a full replication queue.
    pub replication_queue_drops: u64,
    /// Own records forgotten for republishing because `max_originated` was reached.
    pub originated_drops: u64,
    /// Maintenance requests skipped because `max_requests_in_flight` was reached.
    pub maintenance_skipped: u64,
    /// STOREs answered `Overloaded`: `max_deferred` waited already, or the worker pool
    /// refused the job.
    pub overloaded: u64,
    /// Of those, STOREs refused because their sender had its share waiting.
    pub deferred_share_refusals: u64,
    /// Times a peer was dropped for sending `max_forgeries` forged records.
    pub dropped_for_forgeries: u64,
    /// Requests we sent that are waiting for their outcome.
    pub requests_in_flight: usize,
    /// Addresses dropped as implausible from where they came ([`super::claims`]).
    pub claims_dropped: u64,
    /// Dial-backs that reached the claimed address: the peer became `Verified`.
    pub probes_reached: u64,
    /// Dial-backs that failed: the inbound entry was removed.
    pub probes_failed: u64,
    /// Dial-backs the router could not start (no slot, backoff).
    pub probes_not_tried: u64,
    /// Dial-backs dropped from a full queue.
    pub probe_queue_drops: u64,
    /// Failed requests not charged to a routing entry: the address dialled was a third
    /// party's claim, not the one we reached the peer at.
    pub failures_not_charged: u64,
}

/// What the DHT asks of the router.
pub type DhtAction = Action<DhtReply, Infallible>;

/// The request kinds the DHT serves.
pub const KINDS: &[Kind] =
    &[Kind::FindNode, Kind::FindValue, Kind::Store, Kind::AddProvider, Kind::GetProviders];

/// Why a request went out, encoded in its [`RequestKey`] (the router hands the key back).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Purpose {
    Lookup(QueryId),
    Store(QueryId),
    TablePing,
    Replicate,
}

/// One of the DHT's timers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Timer {
    /// The maintenance tick.
    Tick,
    /// The next dial of the join contacts while the table is empty ([`super::join`]).
    Rejoin,
    /// A query's next lookup deadline.
    Query(QueryId),
}

/// The Kademlia DHT of one node. See the module doc.
#[derive(Debug)]
pub struct Dht {
    pub(super) local: NodeId,
    pub(super) config: DhtConfig,
    pub(super) routing: RoutingTable,
    pub(super) store: MemoryStore,
    pub(super) rng: Rng,
    pub(super) queries: BTreeMap<QueryId, Query>,
    pub(super) next_query: u64,
    /// Requests sent whose outcome has not come back yet.
    pub(super) in_flight: usize,
    /// Own records, to publish again at their `republish_at` deadline.
    pub(super) originated: BTreeMap<Key, Record>,
    pub(super) republish_at: Deadlines<Key>,
    pub(super) replicate_to: VecDeque<Replication>,
    /// Inbound STOREs waiting for their signature check, by job.
    pub(super) deferred: BTreeMap<JobKey, Deferred>,
    /// Forged STOREs per peer: how many, since when (bounded, see `serve`).
    pub(super) forgers: BTreeMap<NodeId, (u32, Instant)>,
    pub(super) next_job: u64,
    pub(super) timers: Deadlines<Timer>,
    pub(super) joined: bool,
    /// Contacts to dial again while the table is empty.
    pub(super) join: super::join::JoinContacts,
    /// Inbound peers' claimed addresses waiting for a dial-back.
    pub(super) probe_queue: VecDeque<(NodeId, SocketAddr)>,
    pub(super) probes_in_flight: usize,
    /// The router could not start the last one: wait for a result or the next tick.
    pub(super) probes_paused: bool,
    pub(super) outputs: VecDeque<DhtAction>,
    pub(super) stats: DhtStats,
    /// Writes to the log in flight and the replies waiting for them.
    pub(super) persistence: super::persist::Persistence,
    /// Records our GETs fetched, for the next GET of the same key.
    pub(super) cache: super::cache::RecordCache,
    /// Each peer's measured RTT and success ratio, which order lookups' waiting.
    pub(super) quality: PeerQuality,
    /// Cold values being read back from the log, and who waits for them.
    pub(super) cold_reads: super::cold::ColdReads,
}

impl Dht {
    /// A DHT for the node `local`. The first maintenance tick comes one interval after the
    /// first input.
    pub fn new(local: NodeId, config: DhtConfig) -> Dht {
        Dht {
            local,
            routing: RoutingTable::new(local, config.routing),
            store: MemoryStore::for_node(local, config.store),
            cache: super::cache::RecordCache::new(config.cache),
            quality: PeerQuality::new(config.quality),
            cold_reads: Default::default(),
            rng: Rng::new(config.rng_seed),
            config,
            queries: BTreeMap::new(),
            next_query: 0,
            in_flight: 0,
            originated: BTreeMap::new(),
            republish_at: Deadlines::new(),
            replicate_to: VecDeque::new(),
            deferred: BTreeMap::new(),
            forgers: BTreeMap::new(),
            next_job: 0,
            timers: Deadlines::new(),
            joined: false,
            join: Default::default(),
            probe_queue: VecDeque::new(),
            probes_in_flight: 0,
            probes_paused: false,
            outputs: VecDeque::new(),
            stats: DhtStats::default(),
            persistence: Default::default(),
        }
    }

    /// An application command.
    pub fn handle_command(&mut self, now: Instant, command: CommandId, cmd: DhtCommand) {
        self.arm_tick(now);
        match cmd {
            DhtCommand::FindNode { target } => {
                self.start(now, Some(command), target, Goal::FindNode);
            }
            DhtCommand::Bootstrap => {
                self.start(now, Some(command), self.local, Goal::Bootstrap);
            }
            DhtCommand::Join { contacts } => self.join(now, command, contacts),
            DhtCommand::Get { key } => self.get(now, command, key),
            DhtCommand::Put { record, expected_seq } => {
                self.put(now, command, record, expected_seq);
            }
            DhtCommand::Provide { key } => {
                let me = self.local_info();
                if me.addrs.is_empty() {
                    // Peers could not reach a provider announced without an address.
                    return self.reply(command, DhtReply::Provide(Err(DhtError::NoAddress)));
                }
                let ttl = self.config.provider_ttl;
                if self.store.add_provider(now, key, me.clone(), ttl).is_ok() && self.persisting() {
                    self.persist_provider(key, me, None, ttl, super::persist::Waiter::Nobody);
                }
                self.start(now, Some(command), key, Goal::Provide { key });
            }
            DhtCommand::Providers { key } => {
                self.start(now, Some(command), key, Goal::Providers { key });
            }
            DhtCommand::Flush => self.flush(command),
            DhtCommand::Holds { key } => {
                let held = self.store.get(now, &key).is_some();
                self.reply(command, DhtReply::Holds(held));
            }
        }
    }

    /// The routing table (read-only).
    pub fn routing(&self) -> &RoutingTable {
        &self.routing
    }

    /// The record store (read-only).
    pub fn store(&self) -> &dyn RecordStore {
        &self.store
    }

    /// Counters of the DHT.
    pub fn stats(&self) -> DhtStats {
        DhtStats {
            requests_in_flight: self.in_flight,
            get_cache: self.cache.stats(),
            quality: self.quality.stats(),
            ..self.stats.clone()
        }
    }

    /// Counters of the routing table.
    pub fn routing_stats(&self) -> RoutingStats {
        self.routing.stats()
    }

    /// Counters of the record store.
    pub fn store_stats(&self) -> StoreStats {
        self.store.stats()
    }

    /// Queries running now.
    pub fn queries_running(&self) -> usize {
        self.queries.len()
    }

    /// Adds what a contact tells about a peer, seen at `seen_at`, to the routing table: a new
    /// entry may start the join, is queued for replication and, if inbound, for a dial-back;
    /// a full bucket asks for a PING of its oldest entry.
    pub(super) fn observe(
        &mut self,
        now: Instant,
        peer: PeerInfo,
        source: Source,
        seen_at: IpAddr,
    ) {
        if peer.id == self.local || peer.addrs.is_empty() {
            return;
        }
        let was_empty = self.routing.is_empty();
        let quality = &self.quality;
        let reliability = |id: &NodeId| quality.success(id);
        match self.routing.observe_ranked(now, peer.clone(), source, seen_at, &reliability) {
            InsertOutcome::Added => {
                if source == Source::Inbound && self.wants_verified(&peer.id) {
                    self.probe(peer.id, peer.addrs[0]);
                }
                self.queue_replication(peer);
                if was_empty && !self.joined && self.config.join_on_first_contact {
                    // The first contact: join the network with a self-lookup.
                    self.joined = true;
                    self.start(now, None, self.local, Goal::Refresh);
                }
            }
            InsertOutcome::PingOldest { oldest } => {
                self.stats.table_pings += 1;
                self.send(oldest, Request::Ping, Purpose::TablePing);
            }
            _ => {}
        }
    }

    /// Asks the router to send `request` to `peer`.
    pub(super) fn send(&mut self, peer: PeerInfo, request: Request, purpose: Purpose) {
        self.in_flight += 1;
        let key = purpose.key();
        self.outputs.push_back(Action::Request { to: peer, request, key });
    }

    pub(super) fn reply(&mut self, command: CommandId, reply: DhtReply) {
        self.outputs.push_back(Action::Reply { command, reply });
    }

    pub(super) fn local_info(&self) -> PeerInfo {
        let mut addrs = self.config.local_addrs.clone();
        addrs.truncate(MAX_ADDRS_PER_PEER);
        PeerInfo { id: self.local, addrs }
    }

    /// Arms the maintenance tick on the first input (construction has no `now`).
    pub(super) fn arm_tick(&mut self, now: Instant) {
        let off = self.config.maintenance_interval.is_zero();
        if !off && self.timers.get(Timer::Tick).is_none() {
            self.timers.set(Timer::Tick, now + self.config.maintenance_interval);
        }
    }
}

impl Protocol for Dht {
    type Reply = DhtReply;
    type Event = Infallible;

    fn kinds(&self) -> &'static [Kind] {
        KINDS
    }

    /// A peer completed the Hello exchange: it enters the routing table (unless it is no DHT
    /// server), `Verified` if we dialled it.
    fn handle_peer_up(&mut self, now: Instant, peer: &Peer<'_>) {
        self.arm_tick(now);
        self.quality.set_connected(now, &peer.id, true);
        self.contact(now, peer);
    }

    fn handle_peer_down(&mut self, now: Instant, peer: NodeId) {
        self.quality.set_connected(now, &peer, false);
    }

    fn handle_handshake_rtt(&mut self, now: Instant, peer: NodeId, rtt: Duration) {
        self.quality.on_handshake(now, &peer, rtt);
    }

    fn handle_request(
        &mut self,
        now: Instant,
        from: &Peer<'_>,
        request: Request,
        ticket: ReplyTicket,
    ) -> Option<Response> {
        self.contact(now, from);
        self.serve(now, from, request, ticket)
    }

    fn handle_outcome(
        &mut self,
        now: Instant,
        key: RequestKey,
        peer: PeerInfo,
        via: Option<SocketAddr>,
        rtt: Option<Duration>,
        result: Result<Response, RequestFailure>,
    ) {
        self.in_flight = self.in_flight.saturating_sub(1);
        match result {
            Ok(_) => self.quality.on_answer(now, &peer.id, rtt),
            Err(_) => self.quality.on_failure(now, &peer.id),
        }
        self.account_outcome(now, &peer, via, &result);
        match Purpose::from_key(key) {
            Some(Purpose::TablePing) => {
                let alive = matches!(result, Ok(Response::Pong { .. }));
                self.routing.ping_result(now, &peer.id, alive);
            }
            Some(Purpose::Replicate) | None => {}
            Some(Purpose::Lookup(q)) => self.on_lookup_response(now, q, &peer, via, result),
            Some(Purpose::Store(q)) => self.on_store_response(now, q, &peer.id, result),
        }
    }

    fn handle_probe(&mut self, now: Instant, peer: NodeId, addr: SocketAddr, result: ProbeResult) {
        self.on_probe(now, peer, addr, result);
    }

    fn handle_job_done(&mut self, now: Instant, key: JobKey, result: Option<JobResult>) {
        match result {
            Some(JobResult::Read(r)) => {
                self.on_read(now, key, Some(r));
            }
            Some(JobResult::Persisted(r)) => {
                self.on_persisted(now, key, Some(r));
            }
            other => {
                // A job the pool refused or lost: whichever kind it was hears nothing came.
                if other.is_none()
                    && (self.on_read(now, key, None) || self.on_persisted(now, key, None))
                {
                    return;
                }
                self.on_job_done(now, key, other);
            }
        }
    }

    /// Fires due lookup deadlines and the maintenance tick.
    fn handle_timeout(&mut self, now: Instant) {
        while let Some(timer) = self.timers.pop_due(now) {
            match timer {
                Timer::Query(id) => {
                    if let Some(q) = self.queries.get_mut(&id) {
                        q.lookup.handle_timeout(now);
                    }
                    self.advance(now, id);
                }
                Timer::Tick => {
                    self.arm_tick(now);
                    self.maintain(now);
                }
                Timer::Rejoin => self.on_rejoin_timer(now),
            }
        }
    }

    fn poll_output(&mut self) -> Option<DhtAction> {
        self.outputs.pop_front()
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.timers.next()
    }
}

impl Purpose {
    const KIND_BITS: u32 = 2;

    fn key(self) -> RequestKey {
        let (query, kind) = match self {
            Purpose::Lookup(QueryId(q)) => (q, 0),
            Purpose::Store(QueryId(q)) => (q, 1),
            Purpose::TablePing => (0, 2),
            Purpose::Replicate => (0, 3),
        };
        RequestKey(query << Self::KIND_BITS | kind)
    }

    fn from_key(key: RequestKey) -> Option<Purpose> {
        let query = QueryId(key.0 >> Self::KIND_BITS);
        match key.0 & ((1 << Self::KIND_BITS) - 1) {
            0 => Some(Purpose::Lookup(query)),
            1 => Some(Purpose::Store(query)),
            2 => Some(Purpose::TablePing),
            3 => Some(Purpose::Replicate),
            _ => None,
        }
    }
}

/// Whole seconds for the wire, at least 1 and at most `u32::MAX`.
pub(super) fn secs(d: Duration) -> u32 {
    u32::try_from(d.as_secs().max(1)).unwrap_or(u32::MAX)
}

impl fmt::Display for DhtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoPeers => f.write_str("the routing table is empty"),
            Self::NotFound(s) => write!(f, "not found ({} rpcs, {} rounds)", s.rpcs, s.rounds),
            Self::Invalid(e) => write!(f, "invalid record: {e}"),
            Self::NotStored(Some(code)) => write!(f, "no peer stored it (first refusal {code:?})"),
            Self::NotStored(None) => f.write_str("no peer stored it"),
            Self::Busy => f.write_str("too many DHT queries running"),
            Self::NoAddress => f.write_str(
                "no address to announce: bound to an unspecified address; set announce \
                 (--announce ADDR)",
            ),
            Self::LocalStorage(crate::protocol::PersistError::Full) => {
                f.write_str("our own copy was not written: the disk or the log's cap is full")
            }
            Self::LocalStorage(crate::protocol::PersistError::Io) => {
                f.write_str("our own copy was not written: I/O error on the log")
            }
        }
    }
}

impl std::error::Error for DhtError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_keys_round_trip_every_purpose() {
        for p in [
            Purpose::Lookup(QueryId(0)),
            Purpose::Lookup(QueryId(u64::MAX >> 2)),
            Purpose::Store(QueryId(7)),
            Purpose::TablePing,
            Purpose::Replicate,
        ] {
            assert_eq!(Purpose::from_key(p.key()), Some(p));
        }
    }
}
