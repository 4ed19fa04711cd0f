//! A query's life (the kinds are in the [`super::dht`] module doc): started from a command or
//! by maintenance, an iterative lookup ([`super::lookup`]) driven by the outcomes the router
//! hands back, then for PUT and PROVIDE a STORE (or ADD_PROVIDER) phase to the k closest peers
//! that answered, and one reply. Each query keeps one deadline in the DHT's timer set, re-armed
//! whenever the query changes.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Instant;

use super::cold::ReadWaiter;
use super::dht::{
    secs, Dht, DhtError, DhtReply, FoundPeers, FoundProviders, FoundRecord, Published, Purpose,
    Timer,
};
use super::lookup::{Lookup, LookupConfig, LookupStats};
use super::memstore::{Origin, RecordStore};
use super::persist::Waiter;
use super::records::{self, RecordError};
use crate::identity::NodeId;
use crate::protocol::{Action, CommandId, RequestFailure};
use crate::wire::messages::{ErrorCode, Key, PeerInfo, Record, Request, Response};

/// Names a query of one DHT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct QueryId(pub(super) u64);

/// What a query is for.
#[derive(Debug, Clone)]
pub(super) enum Goal {
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
    pub(super) fn kind(&self) -> usize {
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

    /// Whether the query ends in a STORE (or ADD_PROVIDER) phase.
    fn stores(&self) -> bool {
        matches!(self, Goal::Put { .. } | Goal::Provide { .. } | Goal::Republish { .. })
    }
}

/// A running query.
#[derive(Debug)]
pub(super) struct Query {
    command: Option<CommandId>,
    pub(super) goal: Goal,
    pub(super) lookup: Lookup,
    started_at: Instant,
    /// Valid records collected by a GET.
    found: Vec<Record>,
    /// Providers collected by a GET_PROVIDERS, with how many responders named each.
    providers: BTreeMap<NodeId, Reported>,
    /// Responders that answered a GET_PROVIDERS with at least one provider.
    provider_sources: usize,
    /// After the lookup of a PUT or PROVIDE: answers still awaited.
    storing: Option<Storing>,
    /// STOREs (ADD_PROVIDERs) sent, while the lookup converged and after it: at most 2 k.
    stores: Vec<Sent>,
}

/// A STORE or ADD_PROVIDER sent to `peer`. One sent while the lookup converged counts towards
/// the PUT only if `peer` is among the k closest that answered when the lookup ends.
#[derive(Debug, Clone, Copy)]
struct Sent {
    peer: NodeId,
    outcome: Outcome,
    /// Among the k closest that answered the lookup (known once it ends).
    counted: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Waiting,
    Stored,
    /// Refused with this code, or failed (`None`).
    Refused(Option<ErrorCode>),
}

/// A provider and who vouched for it.
#[derive(Debug, Clone)]
struct Reported {
    info: PeerInfo,
    /// Responders that named it.
    reporters: u32,
    /// Order of first mention, to break ties.
    first: usize,
}

/// A GET_PROVIDERS ends early only once this many responders named providers: one peer's list,
/// however long, is not the network's answer.
const MIN_PROVIDER_SOURCES: usize = 3;

#[derive(Debug, Clone, Copy)]
pub(super) struct Storing {
    outstanding: usize,
    attempted: usize,
    stored: usize,
    first_error: Option<ErrorCode>,
    lookup: LookupStats,
}

impl Storing {
    /// Counts one counted STORE's outcome (a `Waiting` one adds to `outstanding`).
    fn tally(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Waiting => self.outstanding += 1,
            Outcome::Stored => self.stored += 1,
            Outcome::Refused(code) => {
                if let Some(code) = code {
                    self.first_error.get_or_insert(code);
                }
            }
        }
    }
}

impl Dht {
    pub(super) fn get(&mut self, now: Instant, command: CommandId, key: Key) {
        if self.is_cold(now, &key) {
            // Ours, but in the log only: read it back first (then this runs again).
            return self.read_cold(key, ReadWaiter::Get { command });
        }
        let held = self.store.get(now, &key).map(|s| s.record.clone());
        if held.is_some() {
            self.stats.get_store_hits += 1;
        }
        // Ours, else a copy an earlier GET fetched: an immutable one is the answer.
        let local = held.or_else(|| self.cache.get(now, &key));
        self.get_from(now, command, key, local);
    }

    /// A GET of `key` given the copy we have (`local`): an immutable one is the answer, a
    /// mutable one seeds the lookup.
    pub(super) fn get_from(
        &mut self,
        now: Instant,
        command: CommandId,
        key: Key,
        local: Option<Record>,
    ) {
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

    pub(super) fn put(
        &mut self,
        now: Instant,
        command: CommandId,
        record: Record,
        expected_seq: Option<u64>,
    ) {
        let key = match records::validate(&record, self.config.store.max_value_bytes) {
            Ok(key) => key,
            Err(e) => return self.reply(command, DhtReply::Put(Err(DhtError::Invalid(e)))),
        };
        // Keep our own copy; a local refusal (an older sequence than we hold, a CAS mismatch)
        // is the caller's error, while quota or space trouble here does not stop publishing.
        let ttl = self.config.record_ttl;
        let before = self.store.get(now, &key).cloned().filter(|_| self.persisting());
        match self.store.put(now, Origin::Local, record.clone(), ttl, expected_seq) {
            Err(e) if !matches!(e, RecordError::StorageFull | RecordError::QuotaExceeded) => {
                return self.reply(command, DhtReply::Put(Err(DhtError::Invalid(e))));
            }
            Err(_) => self.remember_originated(now, key, record.clone()),
            Ok(_) => {
                self.remember_originated(now, key, record.clone());
                if self.persisting() {
                    self.persist_record(now, key, before, Waiter::Local { key });
                }
            }
        }
        self.start(now, Some(command), key, Goal::Put { record, expected_seq });
    }

    /// Starts a query toward `target`; `None` if it ended at once (no peers, busy).
    pub(super) fn start(
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
        // A value lookup ends at its first valid value, so it keeps to α: asking the k
        // nearest at once there multiplied its requests (`sim dht --get`, 1,000 nodes: p90
        // 6 -> 23) for a lower median only (350 -> 250 ms). The join converges too: tables
        // built that way make later lookups shorter (10,000 nodes: FIND_NODE p50 1,000 ms
        // with the join at α, 750 ms converging), though 100 nodes joining at once on two
        // cores (`bench dht`) take about 15 % longer.
        //
        // Ordering by cost beyond the nearest bucket pays where the first answer ends the
        // lookup. A lookup that must hear from all of the k nearest gains less from it and
        // asks more (`sim dht`, 1,000 nodes, 10-100 ms links: FIND_NODE RPCs p50 26 -> 31
        // for p50 708 -> 721 ms), so it orders within the bucket only.
        let is_get = matches!(goal, Goal::Get { .. });
        let converge = self.config.lookup.converge && !is_get;
        let band = if is_get { self.config.lookup.band } else { 0 };
        // A wider first round and connecting ahead (module doc of `lookup`) pay where the
        // lookup must hear from all of the k nearest and round trips are long (10,000 nodes,
        // 50 ms links: FIND_NODE p50 / p90 / p99 900 / 1,200 / 1,300 -> 800 / 1,000 / 1,000
        // ms at seed 1, p50 700 at seeds 2 to 4; benches/README.md). A value lookup, ended by
        // its first value, gained nothing from them (1,000 nodes: GET p50/p99 300/400 ms
        // either way) but 2 more requests and dials; on loopback they cost 5 % more CPU and
        // PUT p99 +10 % for nothing. So both wait for a long mean round trip, or none measured
        // yet (a join before its first dial's handshake).
        let long =
            self.quality.mean_srtt().is_none_or(|rtt| rtt >= self.config.lookup.wide_min_rtt);
        let (first_round, preconnect) = if is_get || !long {
            (self.config.lookup.alpha, 0)
        } else {
            self.stats.wide_lookups += 1;
            (self.config.lookup.first_round, self.config.lookup.preconnect)
        };
        let config = LookupConfig { converge, band, first_round, preconnect, ..self.config.lookup };
        let lookup = Lookup::new(now, self.local, target, seeds, config);
        let id = QueryId(self.next_query);
        self.next_query += 1;
        let query = Query {
            command,
            goal,
            lookup,
            started_at: now,
            found: Vec::new(),
            providers: BTreeMap::new(),
            provider_sources: 0,
            storing: None,
            stores: Vec::new(),
        };
        self.queries.insert(id, query);
        self.advance(now, id);
        Some(id)
    }

    /// Sends what the lookup allows, or finishes the query.
    pub(super) fn advance(&mut self, now: Instant, id: QueryId) {
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
        // Off, every candidate costs the same, so the lookup asks nearest first.
        let quality = &self.quality;
        let adaptive = quality.config().adaptive;
        let cost = |peer: &NodeId| if adaptive { quality.cost_us(peer) } else { 0 };
        while let Some(peer) = q.lookup.next_request_by(now, &cost) {
            asks.push(peer);
        }
        // The next few of the k nearest will likely be asked soon: their dials start now, so
        // their requests cost one round trip then (`preconnect`; connected peers need none).
        let mut ahead = Vec::new();
        while let Some(peer) = q.lookup.next_preconnect() {
            if !quality.is_connected(&peer.id) {
                ahead.push(peer);
            }
        }
        let finished = q.lookup.is_finished();
        // A converging lookup asks all of the k nearest it knows, which are then, but for a
        // late surprise, the k closest: a PUT's STORE goes to each (with its FIND_NODE, in the
        // same flight, or now to one that answered already) instead of a round trip after the
        // lookup ends (`early_stores`). At most k go out early.
        let k = self.config.lookup.k;
        let mut early = Vec::new();
        if self.config.early_stores && q.goal.stores() {
            for peer in q.lookup.converged_nearest() {
                if q.stores.len() >= k {
                    break;
                }
                if q.stores.iter().all(|s| s.peer != peer.id) {
                    let sent = Sent { peer: peer.id, outcome: Outcome::Waiting, counted: false };
                    q.stores.push(sent);
                    early.push(peer);
                }
            }
        }
        for peer in asks {
            self.send(peer, request.clone(), Purpose::Lookup(id));
        }
        self.stats.preconnects += ahead.len() as u64;
        self.outputs.extend(ahead.into_iter().map(|to| Action::Connect { to, ahead: true }));
        let store = if early.is_empty() { None } else { self.store_request(id) };
        if let Some(store) = store {
            self.stats.early_stores += early.len() as u64;
            for peer in early {
                self.send(peer, store.clone(), Purpose::Store(id));
            }
        }
        if finished {
            self.finish_lookup(now, id);
        }
        self.rearm(id);
    }

    /// Arms the query's timer at its lookup's next deadline: none once the query ended or
    /// moved on to its STORE phase (which the router's request deadlines bound).
    fn rearm(&mut self, id: QueryId) {
        let lookup = self.queries.get(&id).filter(|q| q.storing.is_none()).map(|q| &q.lookup);
        match lookup.and_then(Lookup::next_deadline) {
            Some(at) => self.timers.set(Timer::Query(id), at),
            None => self.timers.clear(Timer::Query(id)),
        }
    }

    pub(super) fn on_lookup_response(
        &mut self,
        now: Instant,
        id: QueryId,
        peer: &PeerInfo,
        via: Option<SocketAddr>,
        result: Result<Response, RequestFailure>,
    ) {
        let max_records = self.config.max_records_per_get;
        let k = self.config.lookup.k;
        let max_value = self.config.store.max_value_bytes;
        let running = self.queries.get(&id).is_some_and(|q| q.storing.is_none());
        if !running {
            return;
        }
        // Names in the answer are the responder's claims: judged by where it spoke from.
        let from = via.or_else(|| peer.addrs.first().copied()).map(|a| a.ip());
        let result = match result {
            Ok(mut response) => {
                self.vet_named_peers(&mut response, from);
                Ok(response)
            }
            Err(e) => Err(e),
        };
        let Some(q) = self.queries.get_mut(&id) else { return };
        match (result, &q.goal) {
            (Ok(Response::Nodes { closer }), _) => q.lookup.on_response(now, &peer.id, closer),
            (Ok(Response::Value { record, closer }), Goal::Get { key }) => {
                let key = *key;
                match record {
                    None => q.lookup.on_response(now, &peer.id, closer),
                    Some(r) => match records::validate_for_key(&r, &key, max_value) {
                        Ok(()) => {
                            let immutable = matches!(r, Record::Immutable { .. });
                            // Checked above: safe to answer a later GET with.
                            self.cache.insert(now, key, r.clone());
                            let Some(q) = self.queries.get_mut(&id) else { return };
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
                q.collect_providers(providers, k);
                q.lookup.on_response(now, &peer.id, closer);
                if q.providers.len() >= k && q.provider_sources >= MIN_PROVIDER_SOURCES {
                    q.lookup.finish();
                }
            }
            // The address failed, maybe not the peer: another named address may be tried.
            (Err(RequestFailure::Unreachable), _) => q.lookup.on_unreachable(now, &peer.id),
            // Its connection closed under the request: asked once more.
            (Err(RequestFailure::Disconnected), _) => q.lookup.on_disconnected(now, &peer.id),
            // An error, a failure, or the wrong kind of answer.
            _ => q.lookup.on_failure(now, &peer.id),
        }
        self.advance(now, id);
    }

    fn finish_lookup(&mut self, now: Instant, id: QueryId) {
        let request = self.store_request(id);
        let Some(q) = self.queries.get_mut(&id) else { return };
        let stats = q.lookup.stats(now);
        let closest = q.lookup.closest_answered();
        // A lookup through a bucket refreshes it as well as a refresh query would.
        if let Some(bucket) = self.routing.bucket_index(&q.lookup.target()) {
            self.routing.mark_refreshed(bucket, now);
        }
        let Some(request) = request else { return self.conclude(id, stats, closest) };
        let mut storing = Storing {
            outstanding: 0,
            attempted: closest.len(),
            stored: 0,
            first_error: None,
            lookup: stats,
        };
        // The k closest that answered: those sent a STORE while the lookup converged count
        // as they fared; the others get theirs now.
        let mut late = Vec::new();
        for peer in closest {
            match q.stores.iter_mut().find(|s| s.peer == peer.id) {
                Some(sent) => {
                    sent.counted = true;
                    storing.tally(sent.outcome);
                }
                None => {
                    q.stores.push(Sent { peer: peer.id, outcome: Outcome::Waiting, counted: true });
                    storing.outstanding += 1;
                    late.push(peer);
                }
            }
        }
        let done = storing.outstanding == 0;
        q.storing = Some(storing);
        if done {
            return self.conclude_store(now, id);
        }
        for peer in late {
            self.send(peer, request.clone(), Purpose::Store(id));
        }
    }

    /// The STORE or ADD_PROVIDER a PUT, republish or PROVIDE query sends; `None` for others.
    fn store_request(&self, id: QueryId) -> Option<Request> {
        match &self.queries.get(&id)?.goal {
            Goal::Put { record, expected_seq } => Some(Request::Store {
                record: record.clone(),
                ttl_secs: secs(self.config.record_ttl),
                expected_seq: *expected_seq,
            }),
            Goal::Republish { record } => Some(Request::Store {
                record: record.clone(),
                ttl_secs: secs(self.config.record_ttl),
                expected_seq: None,
            }),
            Goal::Provide { key } => Some(Request::AddProvider {
                key: *key,
                provider: self.local_info(),
                ttl_secs: secs(self.config.provider_ttl),
            }),
            _ => None,
        }
    }

    pub(super) fn on_store_response(
        &mut self,
        now: Instant,
        id: QueryId,
        peer: &NodeId,
        result: Result<Response, RequestFailure>,
    ) {
        let Some(q) = self.queries.get_mut(&id) else { return };
        let waiting =
            q.stores.iter_mut().find(|s| s.peer == *peer && s.outcome == Outcome::Waiting);
        let Some(sent) = waiting else { return };
        sent.outcome = match result {
            Ok(Response::Stored | Response::ProviderAdded) => Outcome::Stored,
            Ok(Response::Error { code, .. }) => Outcome::Refused(Some(code)),
            _ => Outcome::Refused(None),
        };
        // Sent early to a peer the lookup then found outside the k closest: an extra copy.
        let (outcome, counted) = (sent.outcome, sent.counted);
        let Some(s) = q.storing.as_mut().filter(|_| counted) else { return };
        s.outstanding = s.outstanding.saturating_sub(1);
        s.tally(outcome);
        if s.outstanding == 0 {
            self.conclude_store(now, id);
        }
    }

    fn conclude_store(&mut self, now: Instant, id: QueryId) {
        self.timers.clear(Timer::Query(id));
        let Some(q) = self.queries.remove(&id) else { return };
        let Some(s) = q.storing else { return };
        let kind = q.goal.kind();
        self.stats.lookups.observe(kind, &s.lookup);
        let counters = &mut self.stats.queries[kind];
        counters.rounds += u64::from(s.lookup.rounds);
        // Every STORE sent: the k closest's, and the early ones to peers outside them.
        let stores = q.stores.len();
        counters.rpcs += u64::from(s.lookup.rpcs) + stores as u64;
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
                rpcs: s.lookup.rpcs.saturating_add(u32::try_from(stores).unwrap_or(u32::MAX)),
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
            // A put is acknowledged only once our own copy is written too.
            self.reply_after_write(key, c, reply);
        }
    }

    fn conclude(&mut self, id: QueryId, stats: LookupStats, closest: Vec<PeerInfo>) {
        self.timers.clear(Timer::Query(id));
        let Some(q) = self.queries.remove(&id) else { return };
        let kind = q.goal.kind();
        self.stats.lookups.observe(kind, &stats);
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
                let providers = ranked_providers(q.providers, self.config.lookup.k);
                Ok(FoundProviders { providers, stats })
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
}

impl Query {
    /// Counts one responder's providers: at most `k` read, each at most once per responder,
    /// the map bounded at `PROVIDER_CANDIDATES × k` (past it only known ones gain votes).
    fn collect_providers(&mut self, providers: Vec<PeerInfo>, k: usize) {
        let mut named = false;
        let mut seen: Vec<NodeId> = Vec::new();
        for p in providers.into_iter().take(k) {
            if p.addrs.is_empty() || seen.contains(&p.id) {
                continue;
            }
            seen.push(p.id);
            named = true;
            let next = self.providers.len();
            match self.providers.get_mut(&p.id) {
                Some(r) => r.reporters += 1,
                None if next < PROVIDER_CANDIDATES * k => {
                    self.providers.insert(p.id, Reported { info: p, reporters: 1, first: next });
                }
                None => {}
            }
        }
        if named {
            self.provider_sources += 1;
        }
    }
}

/// Providers tracked per query, in multiples of k.
const PROVIDER_CANDIDATES: usize = 4;

/// The `k` providers named by the most responders, first named first among equals.
fn ranked_providers(providers: BTreeMap<NodeId, Reported>, k: usize) -> Vec<PeerInfo> {
    let mut ranked: Vec<Reported> = providers.into_values().collect();
    ranked.sort_by_key(|r| (std::cmp::Reverse(r.reporters), r.first));
    ranked.into_iter().take(k).map(|r| r.info).collect()
}

/// The reply that tells `goal`'s caller it failed with `e`.
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
