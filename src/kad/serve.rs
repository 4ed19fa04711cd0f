//! Answers to inbound Kademlia requests (proto-spec/messages.md §3).
//!
//! [`answer`] is a pure function over the routing table and the record store: the caller has
//! already authenticated `from` (the TLS key), so a provider announcement can be checked
//! against it. Every answer is bounded by `MAX_PEERS_PER_RESPONSE`, and a refusal carries the
//! spec's error code.
//!
//! A STORE of a mutable record is answered later: its signature is checked on a worker
//! (`Action::Job`), and the answer goes out with the request's [`ReplyTicket`] when the result
//! comes back. At most `max_deferred` wait, and at most `max_deferred_per_source` from one peer
//! or one address (loopback excepted); beyond that, or when the pool refuses the job, the
//! answer is `Overloaded`. How long the requester waits is the router's deadline.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::cold::ReadWaiter;
use super::dht::Dht;
use super::memstore::{Origin, RecordStore};
use super::persist::Waiter;
use super::records::{self, RecordError};
use super::routing::{RoutingTable, Subnet};
use crate::identity::NodeId;
use crate::protocol::{Action, Job, JobKey, JobResult, Peer, ReplyTicket};
use crate::wire::messages::{
    ErrorCode, GoodbyeReason, Key, MutableRecord, PeerInfo, Record, Request, Response,
    MAX_PEERS_PER_RESPONSE,
};

/// Peers whose forged STOREs are counted at once ([`Dht::count_forgery`]).
const MAX_TRACKED_FORGERS: usize = 1024;

/// What serving a request did, for the caller's counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Served {
    /// Answered with data or success.
    Ok,
    /// Stored (or refreshed) the record under this key.
    Stored(Key),
    /// Added (or refreshed) this provider of this key, for this long.
    Provided(Key, PeerInfo, Duration),
    /// Refused a STORE or ADD_PROVIDER, for this reason.
    Rejected(RecordError),
    /// Not a Kademlia request this module serves (PING is the connection layer's).
    NotKad,
}

/// The answer to `request` from `from`, whose connection came from `net` (`None`: loopback).
/// `k` bounds every peer list, which names only peers we reached ourselves (handshake.md §3).
pub fn answer(
    now: Instant,
    from: &NodeId,
    net: Option<Subnet>,
    request: Request,
    routing: &RoutingTable,
    store: &mut dyn RecordStore,
    k: usize,
) -> (Response, Served) {
    let closer = |target: &NodeId| closer_peers(routing, from, target, k);
    match request {
        Request::FindNode { target } => (Response::Nodes { closer: closer(&target) }, Served::Ok),
        Request::FindValue { key } => {
            let record = store.get(now, &key).map(|s| s.record.clone());
            (Response::Value { record, closer: closer(&key) }, Served::Ok)
        }
        Request::GetProviders { key } => {
            let mut providers = store.providers(now, &key);
            providers.truncate(MAX_PEERS_PER_RESPONSE);
            (Response::Providers { providers, closer: closer(&key) }, Served::Ok)
        }
        Request::Store { record, ttl_secs, expected_seq } => {
            let ttl = Duration::from_secs(u64::from(ttl_secs));
            match store.put(now, Origin::Peer(*from, net), record, ttl, expected_seq) {
                Ok((key, _)) => (Response::Stored, Served::Stored(key)),
                Err(e) => (error(e.code(), e.name()), Served::Rejected(e)),
            }
        }
        Request::AddProvider { key, provider, ttl_secs } => {
            // records.md §5: the provider is the sender, with at most its bound of addresses.
            if let Err(e) = records::check_provider(from, &provider) {
                return (error(e.code(), e.name()), Served::Rejected(e));
            }
            let ttl = Duration::from_secs(u64::from(ttl_secs));
            match store.add_provider_from(now, key, provider.clone(), net, ttl) {
                Ok(()) => (Response::ProviderAdded, Served::Provided(key, provider, ttl)),
                Err(e) => (error(e.code(), e.name()), Served::Rejected(e)),
            }
        }
        Request::Ping => (error(ErrorCode::BadRequest, "ping"), Served::NotKad),
    }
}

/// The peers an answer to `from` about `target` names: the `k` (at most
/// `MAX_PEERS_PER_RESPONSE`) verified peers nearest `target`, the requester left out.
pub(super) fn closer_peers(
    routing: &RoutingTable,
    from: &NodeId,
    target: &NodeId,
    k: usize,
) -> Vec<PeerInfo> {
    let k = k.min(MAX_PEERS_PER_RESPONSE);
    // One more than k, so dropping the requester still leaves k.
    let mut peers = routing.closest_verified(target, k + 1);
    peers.retain(|p| p.id != *from);
    peers.truncate(k);
    peers
}

/// An inbound STORE waiting for its signature check.
#[derive(Debug, Clone)]
pub(super) struct Deferred {
    from: NodeId,
    /// The sender's address, unless loopback: its share is counted there too.
    ip: Option<IpAddr>,
    record: Record,
    ttl_secs: u32,
    expected_seq: Option<u64>,
    ticket: ReplyTicket,
}

impl Dht {
    /// Answers `request` from the authenticated peer `from`: now, or later with `ticket`.
    pub(super) fn serve(
        &mut self,
        now: Instant,
        peer: &Peer<'_>,
        request: Request,
        ticket: ReplyTicket,
    ) -> Option<Response> {
        let from = &peer.id;
        let request = match request {
            Request::Store { record: Record::Mutable(m), ttl_secs, expected_seq }
                if self.config.verify_in_workers =>
            {
                let ip = Some(peer.addr.ip()).filter(|ip| !ip.to_canonical().is_loopback());
                return self.defer_store(*from, ip, m, ttl_secs, expected_seq, ticket);
            }
            other => other,
        };
        if let Request::FindValue { key } = &request {
            match self.store.get(now, key).map(|held| held.cold) {
                Some(true) => {
                    self.stats.values_served_cold += 1;
                    let closer = closer_peers(&self.routing, from, key, self.config.lookup.k);
                    self.read_cold(*key, ReadWaiter::Peer { ticket, closer });
                    return None; // answered once read back
                }
                Some(false) => {
                    self.stats.values_served_hot += 1;
                    self.store.touch(key);
                }
                None => self.stats.values_missed += 1,
            }
        }
        let k = self.config.lookup.k;
        let net = Subnet::of(&peer.addr);
        // The version held before a STORE, put back if the new one does not reach the disk.
        let before = match (&request, self.persisting()) {
            (Request::Store { record, .. }, true) => records::validate(record, usize::MAX)
                .ok()
                .and_then(|key| self.store.get(now, &key).cloned()),
            _ => None,
        };
        let store = &mut self.store;
        let (response, served) = answer(now, from, net, request, &self.routing, store, k);
        self.stats.requests_served += 1;
        self.forget_evicted();
        match served {
            Served::Rejected(e) => {
                *self.stats.rejections.entry(e.name()).or_default() += 1;
                if e == RecordError::BadSignature {
                    self.count_forgery(now, *from);
                }
            }
            Served::Stored(key) if self.persisting() => {
                self.persist_record(now, key, before, Waiter::Peer { ticket, response });
                return None; // answered once written
            }
            Served::Provided(key, provider, ttl) if self.persisting() => {
                let waiter = Waiter::Peer { ticket, response };
                self.persist_provider(key, provider, net, ttl, waiter);
                return None;
            }
            _ => {}
        }
        Some(response)
    }

    /// The worker result for job `key`; `None` when it did not run.
    pub(super) fn on_job_done(&mut self, now: Instant, key: JobKey, result: Option<JobResult>) {
        let Some(d) = self.deferred.remove(&key) else { return };
        self.stats.requests_served += 1;
        let response = match result {
            Some(JobResult::RecordVerified(true)) => {
                let ttl = Duration::from_secs(u64::from(d.ttl_secs));
                let origin = Origin::Peer(d.from, d.ip.and_then(Subnet::of_ip));
                let key = records::validate(&d.record, usize::MAX).ok();
                let before = match (key, self.persisting()) {
                    (Some(key), true) => self.store.get(now, &key).cloned(),
                    _ => None,
                };
                let put = self.store.put_verified(now, origin, d.record, ttl, d.expected_seq);
                self.forget_evicted();
                match put {
                    Ok((key, _)) if self.persisting() => {
                        let waiter = Waiter::Peer { ticket: d.ticket, response: Response::Stored };
                        // Answered when written (or refused at once, as an output).
                        self.persist_record(now, key, before, waiter);
                        return;
                    }
                    Ok(_) => Response::Stored,
                    Err(e) => self.rejected(e),
                }
            }
            // Not a verification: never deferred.
            Some(JobResult::Persisted(_) | JobResult::Read(_) | JobResult::MessagesChecked(_)) => {
                return
            }
            Some(JobResult::RecordVerified(false)) => {
                self.count_forgery(now, d.from);
                self.rejected(RecordError::BadSignature)
            }
            None => {
                self.stats.overloaded += 1;
                error(ErrorCode::Overloaded, "workers busy")
            }
        };
        self.outputs.push_back(Action::Respond { ticket: d.ticket, response });
    }

    fn defer_store(
        &mut self,
        from: NodeId,
        ip: Option<IpAddr>,
        record: MutableRecord,
        ttl_secs: u32,
        expected_seq: Option<u64>,
        ticket: ReplyTicket,
    ) -> Option<Response> {
        if self.deferred.len() >= self.config.max_deferred {
            self.stats.overloaded += 1;
            self.stats.requests_served += 1;
            return Some(error(ErrorCode::Overloaded, "too many stores waiting"));
        }
        // Its fair share: the bound is a scan of at most `max_deferred` entries, paid only by
        // STOREs that need a worker anyway.
        let share = self.config.max_deferred_per_source;
        let (by_peer, by_ip) = self.deferred.values().fold((0, 0), |(p, i), d| {
            (p + usize::from(d.from == from), i + usize::from(ip.is_some() && d.ip == ip))
        });
        if by_peer >= share || by_ip >= share {
            self.stats.overloaded += 1;
            self.stats.deferred_share_refusals += 1;
            self.stats.requests_served += 1;
            return Some(error(ErrorCode::Overloaded, "too many of your stores waiting"));
        }
        let key = JobKey(self.next_job);
        self.next_job += 1;
        let job = Job::VerifyRecord(Box::new(record.clone()));
        let record = Record::Mutable(record);
        self.deferred.insert(key, Deferred { from, ip, record, ttl_secs, expected_seq, ticket });
        self.outputs.push_back(Action::Job { key, job });
        None
    }

    /// `peer` asked us to store a record with a bad signature. An honest node validates what it
    /// stores and republishes, so past `max_forgeries` within `forgery_window` the peer is
    /// dropped (`Goodbye(LowScore)`); the count outlives its connection. Bounded: at most
    /// `MAX_TRACKED_FORGERS` peers are counted, the stalest forgotten first.
    fn count_forgery(&mut self, now: Instant, peer: NodeId) {
        let window = self.config.forgery_window;
        let entry = self.forgers.entry(peer).or_insert((0, now));
        if now.saturating_duration_since(entry.1) >= window {
            *entry = (0, now);
        }
        entry.0 += 1;
        let count = entry.0;
        if self.forgers.len() > MAX_TRACKED_FORGERS {
            let stalest = self.forgers.iter().min_by_key(|(_, (_, since))| *since).map(|(p, _)| *p);
            if let Some(p) = stalest.filter(|p| *p != peer) {
                self.forgers.remove(&p);
            }
        }
        if count >= self.config.max_forgeries {
            self.stats.dropped_for_forgeries += 1;
            let reason = GoodbyeReason::LowScore;
            self.outputs.push_back(Action::Disconnect { peer, reason });
        }
    }

    fn rejected(&mut self, e: RecordError) -> Response {
        *self.stats.rejections.entry(e.name()).or_default() += 1;
        error(e.code(), e.name())
    }
}

fn error(code: ErrorCode, text: &str) -> Response {
    Response::Error { code, text: text.into() }
}
