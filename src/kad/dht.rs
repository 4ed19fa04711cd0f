//! The DHT: Kademlia queries, table maintenance and record upkeep, sans-IO.
//!
//! [`Dht`] ties the routing table, the lookup state machine and the record store together. It
//! never sees a connection: it asks its owner (the `NodeCore`) to send a request to a peer by
//! [`DhtOutput::Request`], and hears back through [`Dht::on_response`] with the response or
//! the reason the request failed. The owner dials when needed.
//!
//! What a query does, by command:
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
//! Maintenance, on a tick every `maintenance_interval`: expire records, refresh buckets that
//! saw no lookup for the routing table's refresh interval (a FIND_NODE for a random id in the
//! bucket), republish our own records every `republish_interval`, and replicate held records
//! to newly learned peers that are among the k closest to a record's key. The first peer in an
//! empty table triggers a self-lookup, so a node joins as soon as it has one contact.
//!
//! Routing table inputs: a peer we dialled and authenticated, or that answered a request of
//! ours, is `Verified`; a peer that dialled us is `Inbound` (its listen address is its own
//! claim). A full bucket asks for a PING of its least-recently-seen entry, which this module
//! sends and reports back.
//!
//! Bounds: queries in flight (`max_queries`, beyond that a command is refused `Busy`), the
//! records and providers a query collects, own records remembered for republishing, the
//! replication queue, and requests in flight. Every drop is counted in [`DhtStats`].

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::time::{Duration, Instant};

use super::lookup::{Lookup, LookupConfig, LookupStats};
use super::records::{self, RecordError};
use super::routing::{InsertOutcome, RoutingConfig, RoutingStats, RoutingTable, Source};
use super::serve::{self, Served};
use super::store::{MemoryStore, Origin, Store, StoreConfig, StoreStats};
use crate::core::jobs::{Job, JobResult};
use crate::core::node::CommandId;
use crate::identity::NodeId;
use crate::rng::Rng;
use crate::wire::messages::{ErrorCode, Key, MutableRecord, PeerInfo, Record, Request, Response};

/// Settings of the DHT; defaults live in `config`.
#[derive(Debug, Clone)]
pub struct DhtConfig {
    /// Routing table: k, replacement cache, IP-diversity limits, refresh interval.
    pub routing: RoutingConfig,
    /// Lookups: α, k, request and straggler timeouts, disjoint paths.
    pub lookup: LookupConfig,
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
    /// (`DhtOutput::Job`) rather than inline; its answer waits for the result.
    pub verify_in_workers: bool,
    /// STORE requests waiting for a worker; beyond this one is answered `Overloaded`.
    pub max_deferred: usize,
    /// How long a STORE waits for its worker result before it is dropped unanswered.
    pub deferred_timeout: Duration,
    /// Our own listen addresses, announced in ADD_PROVIDER.
    pub local_addrs: Vec<std::net::SocketAddr>,
    /// Seed of the DHT's randomness (refresh targets).
    pub rng_seed: u64,
}

impl DhtConfig {
    /// The defaults (DESIGN.md, "Kademlia"), with no local address and seed 0.
    pub fn new() -> DhtConfig {
        DhtConfig {
            routing: RoutingConfig::DEFAULT,
            lookup: LookupConfig::DEFAULT,
            store: StoreConfig::DEFAULT,
            record_ttl: Duration::from_secs(24 * 60 * 60),
            provider_ttl: Duration::from_secs(24 * 60 * 60),
            republish_interval: Duration::from_secs(12 * 60 * 60),
            maintenance_interval: Duration::from_secs(10),
            join_on_first_contact: true,
            max_queries: 256,
            max_requests_in_flight: 4096,
            max_originated: 4096,
            max_replication_queue: 256,
            max_replications_per_tick: 256,
            max_replication_checks_per_tick: 4096,
            max_records_per_get: 20,
            verify_in_workers: true,
            max_deferred: 1024,
            deferred_timeout: Duration::from_secs(10),
            local_addrs: Vec::new(),
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
}

/// The answer to a [`DhtCommand`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DhtReply {
    /// Answer to `FindNode`.
    FindNode(Result<FoundPeers, DhtError>),
    /// Answer to `Bootstrap`.
    Bootstrap(Result<LookupStats, DhtError>),
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

/// Counters for the metrics layer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DhtStats {
    /// Per query kind, indexed like [`QUERY_KINDS`].
    pub queries: [QueryCounters; 8],
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
    /// STOREs dropped unanswered because their worker result never came in time.
    pub deferred_expired: u64,
}

/// A request the owner must send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DhtOutput {
    /// Send `request` to `peer` (dialling it if needed) and report with `on_response`.
    Request {
        /// Identifies the request in `on_response`.
        token: u64,
        /// Where to send it.
        peer: PeerInfo,
        /// The request.
        request: Request,
    },
    /// A command finished.
    Reply {
        /// The command.
        command: CommandId,
        /// Its answer.
        reply: DhtReply,
    },
    /// Run `job` on a worker and report with `on_job_done`.
    Job {
        /// Identifies the job in `on_job_done`.
        token: u64,
        /// The work.
        job: Job,
    },
    /// The answer to an inbound request that `handle_request` deferred.
    Respond {
        /// The handle the owner passed to `handle_request`.
        respond_to: u64,
        /// The answer.
        response: Response,
    },
}

/// Why a request we sent got no response, as the owner reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestFailure {
    /// Could not connect (refused, backoff, limits, wrong key).
    Unreachable,
    /// No response in time.
    Timeout,
    /// The connection closed before the response.
    Disconnected,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct QueryId(u64);

#[derive(Debug, Clone)]
enum Goal {
    FindNode,
    Bootstrap,
    Refresh,
    Get { key: Key },
    Put { record: Record, expected_seq: Option<u64> },
    Provide { key: Key },
    Providers { key: Key },
    Republish { record: Record },
}

impl Goal {
    fn kind(&self) -> usize {
        match self {
            Goal::FindNode => 0,
            Goal::Bootstrap => 1,
            Goal::Refresh => 2,
            Goal::Get { .. } => 3,
            Goal::Put { .. } => 4,
            Goal::Provide { .. } => 5,
            Goal::Providers { .. } => 6,
            Goal::Republish { .. } => 7,
        }
    }
}

#[derive(Debug)]
struct Query {
    command: Option<CommandId>,
    goal: Goal,
    lookup: Lookup,
    started_at: Instant,
    /// Valid records collected by a GET.
    found: Vec<Record>,
    /// Providers collected by a GET_PROVIDERS.
    providers: BTreeMap<NodeId, PeerInfo>,
    /// After the lookup of a PUT or PROVIDE: answers still awaited.
    storing: Option<Storing>,
}

#[derive(Debug, Clone, Copy)]
struct Storing {
    outstanding: usize,
    attempted: usize,
    stored: usize,
    first_error: Option<ErrorCode>,
    lookup: LookupStats,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    Lookup(QueryId),
    Store(QueryId),
    TablePing,
    Replicate,
}

/// An inbound STORE waiting for its signature check.
#[derive(Debug, Clone)]
struct Deferred {
    from: NodeId,
    record: Record,
    ttl_secs: u32,
    expected_seq: Option<u64>,
    respond_to: u64,
    expires_at: Instant,
}

/// A newly learned peer, and the last held key already checked for it.
#[derive(Debug, Clone)]
struct Replication {
    peer: PeerInfo,
    after: Option<Key>,
}

#[derive(Debug, Clone)]
struct InFlight {
    peer: PeerInfo,
    purpose: Purpose,
}

/// The Kademlia DHT of one node. See the module doc.
#[derive(Debug)]
pub struct Dht {
    local: NodeId,
    config: DhtConfig,
    routing: RoutingTable,
    store: MemoryStore,
    rng: Rng,
    queries: BTreeMap<QueryId, Query>,
    next_query: u64,
    in_flight: BTreeMap<u64, InFlight>,
    next_token: u64,
    /// Own records and when to publish them again.
    originated: BTreeMap<Key, (Record, Instant)>,
    replicate_to: VecDeque<Replication>,
    /// Inbound STOREs waiting for a worker, by job token.
    deferred: BTreeMap<u64, Deferred>,
    /// Armed by the first input, since construction has no `now`.
    next_tick_at: Option<Instant>,
    joined: bool,
    outputs: VecDeque<DhtOutput>,
    stats: DhtStats,
}

impl Dht {
    /// A DHT for the node `local`. The first maintenance tick comes one interval after the
    /// first input.
    pub fn new(local: NodeId, config: DhtConfig) -> Dht {
        Dht {
            local,
            routing: RoutingTable::new(local, config.routing),
            store: MemoryStore::new(config.store),
            rng: Rng::new(config.rng_seed),
            next_tick_at: None,
            config,
            queries: BTreeMap::new(),
            next_query: 0,
            in_flight: BTreeMap::new(),
            next_token: 0,
            originated: BTreeMap::new(),
            replicate_to: VecDeque::new(),
            deferred: BTreeMap::new(),
            joined: false,
            outputs: VecDeque::new(),
            stats: DhtStats::default(),
        }
    }

    /// The next request to send or reply to deliver.
    pub fn poll_output(&mut self) -> Option<DhtOutput> {
        self.outputs.pop_front()
    }

    /// When `handle_timeout` must next be called.
    pub fn next_deadline(&self) -> Option<Instant> {
        let lookups = self.queries.values().filter_map(|q| q.lookup.next_deadline());
        let deferred = self.deferred.values().map(|d| d.expires_at).min();
        lookups.chain(self.next_tick_at).chain(deferred).min()
    }

    /// The routing table (read-only).
    pub fn routing(&self) -> &RoutingTable {
        &self.routing
    }

    /// The record store (read-only).
    pub fn store(&self) -> &dyn Store {
        &self.store
    }

    /// Counters of the DHT.
    pub fn stats(&self) -> &DhtStats {
        &self.stats
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

    /// A peer completed the Hello exchange. `peer.addrs` are its listen addresses (empty
    /// when it accepts no connections, and then it is not added to the table).
    pub fn on_connected(&mut self, now: Instant, peer: PeerInfo, we_dialled: bool) {
        self.arm(now);
        let source = if we_dialled { Source::Verified } else { Source::Inbound };
        self.observe(now, peer, source);
    }

    /// Answers an inbound Kademlia request from the authenticated peer `from`. `None`: the
    /// answer comes later as [`DhtOutput::Respond`] with `respond_to` (a STORE of a mutable
    /// record whose signature a worker checks first).
    pub fn handle_request(
        &mut self,
        now: Instant,
        from: &PeerInfo,
        request: Request,
        respond_to: u64,
    ) -> Option<Response> {
        if !from.addrs.is_empty() {
            self.observe(now, from.clone(), Source::Inbound);
        }
        let request = match request {
            Request::Store { record: Record::Mutable(m), ttl_secs, expected_seq }
                if self.config.verify_in_workers =>
            {
                return self.defer_store(now, from.id, m, ttl_secs, expected_seq, respond_to);
            }
            other => other,
        };
        let k = self.config.lookup.k;
        let (response, served) =
            serve::answer(now, &from.id, request, &self.routing, &mut self.store, k);
        self.stats.requests_served += 1;
        if let Served::Rejected(e) = served {
            *self.stats.rejections.entry(e.name()).or_default() += 1;
        }
        Some(response)
    }

    /// The worker result for job `token`; `None` when the pool refused the job.
    pub fn on_job_done(&mut self, now: Instant, token: u64, result: Option<JobResult>) {
        let Some(d) = self.deferred.remove(&token) else { return };
        self.stats.requests_served += 1;
        let response = match result {
            Some(JobResult::RecordVerified(true)) => {
                let ttl = Duration::from_secs(u64::from(d.ttl_secs));
                let origin = Origin::Peer(d.from);
                match self.store.put_verified(now, origin, d.record, ttl, d.expected_seq) {
                    Ok(_) => Response::Stored,
                    Err(e) => self.rejected(e),
                }
            }
            Some(JobResult::RecordVerified(false)) => self.rejected(RecordError::BadSignature),
            None => {
                self.stats.overloaded += 1;
                Response::Error { code: ErrorCode::Overloaded, text: "workers busy".into() }
            }
        };
        self.outputs.push_back(DhtOutput::Respond { respond_to: d.respond_to, response });
    }

    fn defer_store(
        &mut self,
        now: Instant,
        from: NodeId,
        record: MutableRecord,
        ttl_secs: u32,
        expected_seq: Option<u64>,
        respond_to: u64,
    ) -> Option<Response> {
        if self.deferred.len() >= self.config.max_deferred {
            self.stats.overloaded += 1;
            self.stats.requests_served += 1;
            let text = "too many stores waiting".into();
            return Some(Response::Error { code: ErrorCode::Overloaded, text });
        }
        let token = self.next_token;
        self.next_token += 1;
        let job = Job::VerifyRecord(Box::new(record.clone()));
        let expires_at = now + self.config.deferred_timeout;
        let record = Record::Mutable(record);
        let deferred = Deferred { from, record, ttl_secs, expected_seq, respond_to, expires_at };
        self.deferred.insert(token, deferred);
        self.outputs.push_back(DhtOutput::Job { token, job });
        None
    }

    fn rejected(&mut self, e: RecordError) -> Response {
        *self.stats.rejections.entry(e.name()).or_default() += 1;
        Response::Error { code: e.code(), text: e.name().into() }
    }

    /// An application command.
    pub fn handle_command(&mut self, now: Instant, command: CommandId, cmd: DhtCommand) {
        self.arm(now);
        match cmd {
            DhtCommand::FindNode { target } => {
                self.start(now, Some(command), target, Goal::FindNode);
            }
            DhtCommand::Bootstrap => {
                self.start(now, Some(command), self.local, Goal::Bootstrap);
            }
            DhtCommand::Get { key } => self.get(now, command, key),
            DhtCommand::Put { record, expected_seq } => {
                self.put(now, command, record, expected_seq);
            }
            DhtCommand::Provide { key } => {
                let me = self.local_info();
                let _ = self.store.add_provider(now, key, me, self.config.provider_ttl);
                self.start(now, Some(command), key, Goal::Provide { key });
            }
            DhtCommand::Providers { key } => {
                self.start(now, Some(command), key, Goal::Providers { key });
            }
            DhtCommand::Holds { key } => {
                let held = self.store.get(now, &key).is_some();
                self.reply(command, DhtReply::Holds(held));
            }
        }
    }

    /// The outcome of request `token`.
    pub fn on_response(
        &mut self,
        now: Instant,
        token: u64,
        result: Result<Response, RequestFailure>,
    ) {
        let Some(InFlight { peer, purpose }) = self.in_flight.remove(&token) else { return };
        match &result {
            Ok(Response::Error { code: ErrorCode::Unsupported, .. }) | Err(_) => {
                self.routing.record_failure(&peer.id);
            }
            Ok(_) => self.observe(now, peer.clone(), Source::Verified),
        }
        match purpose {
            Purpose::TablePing => {
                let alive = matches!(result, Ok(Response::Pong { .. }));
                self.routing.ping_result(now, &peer.id, alive);
            }
            Purpose::Replicate => {}
            Purpose::Lookup(q) => self.on_lookup_response(now, q, &peer, result),
            Purpose::Store(q) => self.on_store_response(now, q, result),
        }
    }

    /// Fires due lookup deadlines and the maintenance tick.
    pub fn handle_timeout(&mut self, now: Instant) {
        let due: Vec<QueryId> = self
            .queries
            .iter()
            .filter(|(_, q)| q.lookup.next_deadline().is_some_and(|d| d <= now))
            .map(|(&id, _)| id)
            .collect();
        for id in due {
            if let Some(q) = self.queries.get_mut(&id) {
                q.lookup.handle_timeout(now);
            }
            self.advance(now, id);
        }
        let expired: Vec<u64> =
            self.deferred.iter().filter(|(_, d)| d.expires_at <= now).map(|(&t, _)| t).collect();
        for token in expired {
            let Some(d) = self.deferred.remove(&token) else { continue };
            self.stats.deferred_expired += 1;
            // The requester has most likely given up; the answer still releases the owner's
            // record of the request.
            let response = Response::Error { code: ErrorCode::Overloaded, text: String::new() };
            self.outputs.push_back(DhtOutput::Respond { respond_to: d.respond_to, response });
        }
        self.arm(now);
        if self.next_tick_at.is_some_and(|at| now >= at) {
            self.next_tick_at = Some(now + self.config.maintenance_interval);
            self.maintain(now);
        }
    }

    fn arm(&mut self, now: Instant) {
        if self.next_tick_at.is_none() && !self.config.maintenance_interval.is_zero() {
            self.next_tick_at = Some(now + self.config.maintenance_interval);
        }
    }

    fn local_info(&self) -> PeerInfo {
        let mut addrs = self.config.local_addrs.clone();
        addrs.truncate(crate::wire::messages::MAX_ADDRS_PER_PEER);
        PeerInfo { id: self.local, addrs }
    }

    fn observe(&mut self, now: Instant, peer: PeerInfo, source: Source) {
        if peer.id == self.local || peer.addrs.is_empty() {
            return;
        }
        let was_empty = self.routing.is_empty();
        match self.routing.observe(now, peer.clone(), source) {
            InsertOutcome::Added => {
                if self.replicate_to.len() >= self.config.max_replication_queue {
                    self.replicate_to.pop_front();
                    self.stats.replication_queue_drops += 1;
                }
                self.replicate_to.push_back(Replication { peer, after: None });
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

    fn get(&mut self, now: Instant, command: CommandId, key: Key) {
        let local = self.store.get(now, &key).map(|s| s.record.clone());
        if let Some(record @ Record::Immutable { .. }) = local {
            let found = FoundRecord { record, local: true, stats: LookupStats::default() };
            let kind = &mut self.stats.queries[Goal::Get { key }.kind()];
            kind.started += 1;
            kind.succeeded += 1;
            return self.reply(command, DhtReply::Get(Ok(found)));
        }
        if let Some(id) = self.start(now, Some(command), key, Goal::Get { key }) {
            if let (Some(q), Some(record)) = (self.queries.get_mut(&id), local) {
                q.found.push(record);
            }
        }
    }

    fn put(&mut self, now: Instant, command: CommandId, record: Record, expected_seq: Option<u64>) {
        let key = match records::validate(&record, self.config.store.max_value_bytes) {
            Ok(key) => key,
            Err(e) => return self.reply(command, DhtReply::Put(Err(DhtError::Invalid(e)))),
        };
        // Keep our own copy; a local refusal (an older sequence than we hold, a CAS mismatch)
        // is the caller's error, while quota or space trouble here does not stop publishing.
        let ttl = self.config.record_ttl;
        if let Err(e) = self.store.put(now, Origin::Local, record.clone(), ttl, expected_seq) {
            if !matches!(e, RecordError::StorageFull | RecordError::QuotaExceeded) {
                return self.reply(command, DhtReply::Put(Err(DhtError::Invalid(e))));
            }
        }
        self.remember_originated(now, key, record.clone());
        self.start(now, Some(command), key, Goal::Put { record, expected_seq });
    }

    fn remember_originated(&mut self, now: Instant, key: Key, record: Record) {
        let at = now + self.config.republish_interval;
        if !self.originated.contains_key(&key)
            && self.originated.len() >= self.config.max_originated
        {
            self.stats.originated_drops += 1;
            return;
        }
        self.originated.insert(key, (record, at));
    }

    /// Starts a query toward `target`; `None` if it ended at once (no peers, busy).
    fn start(
        &mut self,
        now: Instant,
        command: Option<CommandId>,
        target: Key,
        goal: Goal,
    ) -> Option<QueryId> {
        let kind = goal.kind();
        if self.queries.len() >= self.config.max_queries {
            if let Some(c) = command {
                self.stats.refused_busy += 1;
                self.reply(c, failure(&goal, DhtError::Busy));
            }
            return None;
        }
        self.stats.queries[kind].started += 1;
        let seeds = self.routing.closest(&target, self.config.lookup.k);
        if seeds.is_empty() {
            self.stats.queries[kind].failed += 1;
            if let Some(c) = command {
                self.reply(c, failure(&goal, DhtError::NoPeers));
            }
            return None;
        }
        let lookup = Lookup::new(now, self.local, target, seeds, self.config.lookup);
        let id = QueryId(self.next_query);
        self.next_query += 1;
        let query = Query {
            command,
            goal,
            lookup,
            started_at: now,
            found: Vec::new(),
            providers: BTreeMap::new(),
            storing: None,
        };
        self.queries.insert(id, query);
        self.advance(now, id);
        Some(id)
    }

    /// Sends what the lookup allows, or finishes the query.
    fn advance(&mut self, now: Instant, id: QueryId) {
        let Some(q) = self.queries.get_mut(&id) else { return };
        if q.storing.is_some() {
            return;
        }
        let request = match &q.goal {
            Goal::Get { key } => Request::FindValue { key: *key },
            Goal::Providers { key } => Request::GetProviders { key: *key },
            _ => Request::FindNode { target: q.lookup.target() },
        };
        let mut asks = Vec::new();
        while let Some(peer) = q.lookup.next_request(now) {
            asks.push(peer);
        }
        let finished = q.lookup.is_finished();
        for peer in asks {
            self.send(peer, request.clone(), Purpose::Lookup(id));
        }
        if finished {
            self.finish_lookup(now, id);
        }
    }

    fn send(&mut self, peer: PeerInfo, request: Request, purpose: Purpose) {
        let token = self.next_token;
        self.next_token += 1;
        self.in_flight.insert(token, InFlight { peer: peer.clone(), purpose });
        self.outputs.push_back(DhtOutput::Request { token, peer, request });
    }

    fn on_lookup_response(
        &mut self,
        now: Instant,
        id: QueryId,
        peer: &PeerInfo,
        result: Result<Response, RequestFailure>,
    ) {
        let max_records = self.config.max_records_per_get;
        let k = self.config.lookup.k;
        let max_value = self.config.store.max_value_bytes;
        let Some(q) = self.queries.get_mut(&id) else { return };
        if q.storing.is_some() {
            return;
        }
        match (result, &q.goal) {
            (Ok(Response::Nodes { closer }), _) => q.lookup.on_response(now, &peer.id, closer),
            (Ok(Response::Value { record, closer }), Goal::Get { key }) => {
                let key = *key;
                match record {
                    None => q.lookup.on_response(now, &peer.id, closer),
                    Some(r) => match records::validate_for_key(&r, &key, max_value) {
                        Ok(()) => {
                            let immutable = matches!(r, Record::Immutable { .. });
                            if q.found.len() < max_records && !q.found.contains(&r) {
                                q.found.push(r);
                            }
                            q.lookup.on_response(now, &peer.id, closer);
                            if immutable {
                                q.lookup.finish();
                            }
                        }
                        Err(_) => {
                            self.stats.invalid_records_received += 1;
                            q.lookup.on_failure(now, &peer.id);
                        }
                    },
                }
            }
            (Ok(Response::Providers { providers, closer }), Goal::Providers { .. }) => {
                for p in providers {
                    if q.providers.len() < k && !p.addrs.is_empty() {
                        q.providers.entry(p.id).or_insert(p);
                    }
                }
                q.lookup.on_response(now, &peer.id, closer);
                if q.providers.len() >= k {
                    q.lookup.finish();
                }
            }
            // An error, a failure, or the wrong kind of answer.
            _ => q.lookup.on_failure(now, &peer.id),
        }
        self.advance(now, id);
    }

    fn finish_lookup(&mut self, now: Instant, id: QueryId) {
        let me = self.local_info();
        let Some(q) = self.queries.get_mut(&id) else { return };
        let stats = q.lookup.stats(now);
        let closest = q.lookup.closest_answered();
        // A lookup through a bucket refreshes it as well as a refresh query would.
        if let Some(bucket) = self.routing.bucket_index(&q.lookup.target()) {
            self.routing.mark_refreshed(bucket, now);
        }
        let request = match &q.goal {
            Goal::Put { record, expected_seq } => Request::Store {
                record: record.clone(),
                ttl_secs: secs(self.config.record_ttl),
                expected_seq: *expected_seq,
            },
            Goal::Republish { record } => Request::Store {
                record: record.clone(),
                ttl_secs: secs(self.config.record_ttl),
                expected_seq: None,
            },
            Goal::Provide { key } => Request::AddProvider {
                key: *key,
                provider: me,
                ttl_secs: secs(self.config.provider_ttl),
            },
            _ => return self.conclude(id, stats, closest),
        };
        let attempted = closest.len();
        q.storing = Some(Storing {
            outstanding: attempted,
            attempted,
            stored: 0,
            first_error: None,
            lookup: stats,
        });
        if attempted == 0 {
            return self.conclude_store(now, id);
        }
        for peer in closest {
            self.send(peer, request.clone(), Purpose::Store(id));
        }
    }

    fn on_store_response(
        &mut self,
        now: Instant,
        id: QueryId,
        result: Result<Response, RequestFailure>,
    ) {
        let Some(s) = self.queries.get_mut(&id).and_then(|q| q.storing.as_mut()) else { return };
        s.outstanding = s.outstanding.saturating_sub(1);
        match result {
            Ok(Response::Stored | Response::ProviderAdded) => s.stored += 1,
            Ok(Response::Error { code, .. }) => {
                s.first_error.get_or_insert(code);
            }
            _ => {}
        }
        if s.outstanding == 0 {
            self.conclude_store(now, id);
        }
    }

    fn conclude_store(&mut self, now: Instant, id: QueryId) {
        let Some(q) = self.queries.remove(&id) else { return };
        let Some(s) = q.storing else { return };
        let kind = q.goal.kind();
        let counters = &mut self.stats.queries[kind];
        counters.rounds += u64::from(s.lookup.rounds);
        counters.rpcs += u64::from(s.lookup.rpcs) + s.attempted as u64;
        let key = match &q.goal {
            Goal::Put { record, .. } | Goal::Republish { record } => record.key(),
            Goal::Provide { key } => *key,
            _ => q.lookup.target(),
        };
        let result = if s.stored > 0 {
            counters.succeeded += 1;
            Ok(Published {
                key,
                stored: s.stored,
                attempted: s.attempted,
                lookup: s.lookup,
                rpcs: s.lookup.rpcs + s.attempted as u32,
                duration: now.saturating_duration_since(q.started_at),
            })
        } else {
            counters.failed += 1;
            Err(DhtError::NotStored(s.first_error))
        };
        if let Some(c) = q.command {
            let reply = match q.goal {
                Goal::Provide { .. } => DhtReply::Provide(result),
                _ => DhtReply::Put(result),
            };
            self.reply(c, reply);
        }
    }

    fn conclude(&mut self, id: QueryId, stats: LookupStats, closest: Vec<PeerInfo>) {
        let Some(q) = self.queries.remove(&id) else { return };
        let kind = q.goal.kind();
        let counters = &mut self.stats.queries[kind];
        counters.rounds += u64::from(stats.rounds);
        counters.rpcs += u64::from(stats.rpcs);
        let reply = match q.goal {
            Goal::FindNode => Some(DhtReply::FindNode(Ok(FoundPeers { peers: closest, stats }))),
            Goal::Bootstrap => Some(DhtReply::Bootstrap(Ok(stats))),
            Goal::Refresh => None,
            Goal::Get { .. } => Some(DhtReply::Get(
                records::best(q.found.iter())
                    .map(|r| FoundRecord { record: r.clone(), local: false, stats })
                    .ok_or(DhtError::NotFound(stats)),
            )),
            Goal::Providers { .. } => Some(DhtReply::Providers(if q.providers.is_empty() {
                Err(DhtError::NotFound(stats))
            } else {
                Ok(FoundProviders { providers: q.providers.into_values().collect(), stats })
            })),
            // These go through the storing phase instead.
            Goal::Put { .. } | Goal::Provide { .. } | Goal::Republish { .. } => None,
        };
        let ok = match &reply {
            Some(DhtReply::Get(r)) => r.is_ok(),
            Some(DhtReply::Providers(r)) => r.is_ok(),
            _ => true,
        };
        if ok {
            counters.succeeded += 1;
        } else {
            counters.failed += 1;
        }
        if let (Some(c), Some(reply)) = (q.command, reply) {
            self.reply(c, reply);
        }
    }

    fn maintain(&mut self, now: Instant) {
        self.store.expire(now);
        // Bucket refresh: a few per tick, so a cold table does not flood the network.
        let refreshing = self.queries.values().filter(|q| matches!(q.goal, Goal::Refresh)).count();
        for bucket in
            self.routing.buckets_due_for_refresh(now).into_iter().take(2 - refreshing.min(2))
        {
            let target = self.routing.random_id_in_bucket(bucket, &mut self.rng);
            self.routing.mark_refreshed(bucket, now);
            self.start(now, None, target, Goal::Refresh);
        }
        // Republish our own records that are due.
        let due: Vec<Key> = self
            .originated
            .iter()
            .filter(|(_, (_, at))| *at <= now)
            .map(|(k, _)| *k)
            .take(16)
            .collect();
        for key in due {
            if let Some((record, at)) = self.originated.get_mut(&key) {
                *at = now + self.config.republish_interval;
                let record = record.clone();
                self.start(now, None, key, Goal::Republish { record });
            }
        }
        self.replicate(now);
    }

    /// Sends held records to newly learned peers that are among the k closest to their keys,
    /// within this tick's budgets of key checks, STOREs and requests in flight; a peer's walk
    /// through the keys resumes at the next tick where it stopped.
    fn replicate(&mut self, now: Instant) {
        const BATCH: usize = 64;
        let k = self.config.lookup.k;
        let (mut checks, mut sent) = (0, 0);
        while let Some(front) = self.replicate_to.front() {
            let (peer, mut after) = (front.peer.clone(), front.after);
            let keys = self.store.keys_after(after.as_ref(), BATCH);
            if keys.is_empty() {
                self.replicate_to.pop_front();
                continue;
            }
            for key in keys {
                let out_of_budget = checks >= self.config.max_replication_checks_per_tick
                    || sent >= self.config.max_replications_per_tick
                    || self.in_flight.len() >= self.config.max_requests_in_flight;
                if out_of_budget {
                    self.stats.maintenance_skipped += 1;
                    if let Some(front) = self.replicate_to.front_mut() {
                        front.after = after;
                    }
                    return;
                }
                checks += 1;
                after = Some(key);
                if !self.routing.closest(&key, k).iter().any(|p| p.id == peer.id) {
                    continue;
                }
                let Some(held) = self.store.get(now, &key) else { continue };
                // Never more than the remaining life (records.md §4); nothing if under 1 s.
                let ttl_secs = held.remaining_ttl_secs(now);
                if ttl_secs == 0 {
                    continue;
                }
                let request =
                    Request::Store { record: held.record.clone(), ttl_secs, expected_seq: None };
                self.send(peer.clone(), request, Purpose::Replicate);
                self.stats.replications += 1;
                sent += 1;
            }
            if let Some(front) = self.replicate_to.front_mut() {
                front.after = after;
            }
        }
    }

    fn reply(&mut self, command: CommandId, reply: DhtReply) {
        self.outputs.push_back(DhtOutput::Reply { command, reply });
    }
}

fn failure(goal: &Goal, e: DhtError) -> DhtReply {
    match goal {
        Goal::FindNode | Goal::Refresh => DhtReply::FindNode(Err(e)),
        Goal::Bootstrap => DhtReply::Bootstrap(Err(e)),
        Goal::Get { .. } => DhtReply::Get(Err(e)),
        Goal::Put { .. } | Goal::Republish { .. } => DhtReply::Put(Err(e)),
        Goal::Provide { .. } => DhtReply::Provide(Err(e)),
        Goal::Providers { .. } => DhtReply::Providers(Err(e)),
    }
}

/// Whole seconds for the wire, at least 1 and at most `u32::MAX`.
fn secs(d: Duration) -> u32 {
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
        }
    }
}

impl std::error::Error for DhtError {}
