//! Unit tests of [`Dht`](super::dht::Dht) on its own, through the protocol verbs: no router,
//! no connections. The test plays the router: it reads the `Action`s, answers requests with
//! outcomes under the `RequestKey`s the DHT chose, and drives time by hand.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::dht::{Dht, DhtAction, DhtCommand, DhtConfig, DhtError, DhtReply};
use super::memstore::RecordStore;
use super::routing::Source;
use crate::identity::{Keypair, NodeId};
use crate::protocol::{
    Action, CommandId, Direction, Job, JobResult, Peer, ProbeResult, Protocol, ReplyTicket,
    RequestFailure, RequestKey,
};
use crate::wire::messages::{
    ErrorCode, GoodbyeReason, Hello, MutableRecord, PeerInfo, Record, Request, Response,
    FEATURE_KAD, PROTOCOL_VERSION,
};

const LOCAL: NodeId = NodeId::from_bytes([0x80; 32]);
const S: Duration = Duration::from_secs(1);
/// A round trip, for answers in the scenarios.
const MS: Duration = Duration::from_millis(1);

/// A DHT with no join and no maintenance tick unless a test turns them on.
fn dht(config: DhtConfig) -> Dht {
    Dht::new(LOCAL, config)
}

/// Also lookups without a wider first round or connecting ahead, which the tests of the other
/// rules assume.
fn quiet() -> DhtConfig {
    let lookup = super::lookup::LookupConfig {
        first_round: 0,
        preconnect: 0,
        ..DhtConfig::default().lookup
    };
    DhtConfig {
        join_on_first_contact: false,
        maintenance_interval: Duration::ZERO,
        lookup,
        ..DhtConfig::default()
    }
}

fn id(n: u8) -> NodeId {
    NodeId::from_bytes([n; 32])
}

/// One /16 per peer, so the routing table's per-subnet limits never bind here.
fn addr(n: u8) -> SocketAddr {
    SocketAddr::from(([10, n, 0, 1], 4000))
}

fn info(n: u8) -> PeerInfo {
    PeerInfo { id: id(n), addrs: vec![addr(n)] }
}

fn hello(listen: Vec<SocketAddr>) -> Hello {
    Hello {
        version: PROTOCOL_VERSION,
        network: String::new(),
        id_pow_bits: 0,
        features: FEATURE_KAD,
        agent: String::new(),
        listen_addrs: listen,
    }
}

/// Peers `n` that we dialled enter the table as verified.
fn dialled(d: &mut Dht, now: Instant, peers: &[u8]) {
    for &n in peers {
        let h = hello(vec![addr(n)]);
        let peer = Peer { id: id(n), addr: addr(n), direction: Direction::Outbound, hello: &h };
        d.handle_peer_up(now, &peer);
    }
}

fn drain(d: &mut Dht) -> Vec<DhtAction> {
    std::iter::from_fn(|| d.poll_output()).collect()
}

fn requests(out: &[DhtAction]) -> Vec<(PeerInfo, Request, RequestKey)> {
    out.iter()
        .filter_map(|a| match a {
            Action::Request { to, request, key } => Some((to.clone(), request.clone(), *key)),
            _ => None,
        })
        .collect()
}

fn replies(out: &[DhtAction]) -> Vec<DhtReply> {
    out.iter()
        .filter_map(|a| match a {
            Action::Reply { reply, .. } => Some(reply.clone()),
            _ => None,
        })
        .collect()
}

/// Answers every request in `out` with `answer(to)` and returns what the DHT does next,
/// until it asks nothing more.
fn answer_all(
    d: &mut Dht,
    now: Instant,
    mut out: Vec<DhtAction>,
    answer: impl Fn(&PeerInfo, &Request) -> Result<Response, RequestFailure>,
) -> Vec<DhtAction> {
    let mut rest = Vec::new();
    loop {
        let asked = requests(&out);
        rest.extend(out.into_iter().filter(|a| !matches!(a, Action::Request { .. })));
        if asked.is_empty() {
            return rest;
        }
        for (to, request, key) in asked {
            let via = to.addrs.first().copied();
            d.handle_outcome(now, key, to.clone(), via, Some(MS), answer(&to, &request));
        }
        out = drain(d);
    }
}

// ---- Queries ----

#[test]
fn a_lookup_asks_alpha_peers_at_a_time_and_replies_with_those_that_answered() {
    let t0 = Instant::now();
    let mut d = dht(quiet());
    dialled(&mut d, t0, &[1, 2, 3, 4, 5]);
    assert!(drain(&mut d).is_empty(), "no join: nothing is sent");
    d.handle_command(t0, CommandId(1), DhtCommand::FindNode { target: id(9) });
    let out = drain(&mut d);
    // α = 3 requests in flight, each a FIND_NODE for the target.
    let asked = requests(&out);
    assert_eq!(asked.len(), 3, "{out:?}");
    assert!(asked.iter().all(|(_, r, _)| *r == Request::FindNode { target: id(9) }));
    assert_eq!(d.stats().requests_in_flight, 3);
    // Everyone answers with nobody new, except peer 5, which fails.
    let out = answer_all(&mut d, t0, out, |to, _| {
        if to.id == id(5) {
            Err(RequestFailure::Timeout)
        } else {
            Ok(Response::Nodes { closer: Vec::new() })
        }
    });
    let [DhtReply::FindNode(Ok(found))] = &replies(&out)[..] else { panic!("{out:?}") };
    let mut answered: Vec<NodeId> = found.peers.iter().map(|p| p.id).collect();
    answered.sort();
    assert_eq!(answered, vec![id(1), id(2), id(3), id(4)]);
    assert_eq!((found.stats.rpcs, found.stats.failed), (5, 1));
    assert_eq!((d.queries_running(), d.stats().requests_in_flight), (0, 0));
}

#[test]
fn a_finished_lookup_is_counted_in_its_kinds_duration_and_rounds_buckets() {
    let t0 = Instant::now();
    let mut d = dht(quiet());
    dialled(&mut d, t0, &[1, 2, 3]);
    d.handle_command(t0, CommandId(1), DhtCommand::FindNode { target: id(9) });
    let out = drain(&mut d);
    // Every seed answers 30 ms later with nobody new: one round of 30 ms.
    let out = answer_all(&mut d, t0 + 30 * S / 1000, out, |_, _| {
        Ok(Response::Nodes { closer: Vec::new() })
    });
    assert!(matches!(&replies(&out)[..], [DhtReply::FindNode(Ok(_))]), "{out:?}");
    let stats = d.stats();
    let (duration, rounds) = (&stats.lookups.duration_us[0], &stats.lookups.rounds[0]);
    assert_eq!((duration.count, duration.sum), (1, 30_000));
    // Buckets 5, 10, 25 ms stay empty; the 50 ms one holds it.
    assert_eq!(duration.cumulative().take(4).map(|(_, n)| n).collect::<Vec<_>>(), [0, 0, 0, 1]);
    assert_eq!((rounds.count, rounds.sum), (1, stats.queries[0].rounds));
    // No other kind saw a lookup.
    assert!(stats.lookups.duration_us[1..].iter().all(|h| h.count == 0));
}

#[test]
fn find_values_are_counted_as_hot_hits_or_misses() {
    let t0 = Instant::now();
    let mut d = dht(quiet());
    let h = hello(vec![addr(1)]);
    let from = Peer { id: id(1), addr: addr(1), direction: Direction::Inbound, hello: &h };
    let record = Record::Immutable { value: b"held".to_vec().into() };
    let key = record.key();
    let store = Request::Store { record, ttl_secs: 60, expected_seq: None };
    assert_eq!(d.handle_request(t0, &from, store, ReplyTicket(1)), Some(Response::Stored));
    d.handle_request(t0, &from, Request::FindValue { key }, ReplyTicket(2));
    d.handle_request(t0, &from, Request::FindValue { key: id(7) }, ReplyTicket(3));
    let s = d.stats();
    assert_eq!((s.values_served_hot, s.values_served_cold, s.values_missed), (1, 0, 1));
}

#[test]
fn a_lookup_with_an_empty_table_fails_at_once_with_no_peers() {
    let t0 = Instant::now();
    let mut d = dht(quiet());
    d.handle_command(t0, CommandId(1), DhtCommand::FindNode { target: id(9) });
    let out = drain(&mut d);
    assert_eq!(replies(&out), vec![DhtReply::FindNode(Err(DhtError::NoPeers))]);
    assert_eq!(d.next_deadline(), None);
}

#[test]
fn a_silent_peer_frees_its_slot_at_the_straggler_timeout_and_fails_at_the_deadline() {
    let t0 = Instant::now();
    let mut d = dht(quiet());
    dialled(&mut d, t0, &[1, 2, 3, 4]);
    d.handle_command(t0, CommandId(1), DhtCommand::FindNode { target: id(9) });
    let first = requests(&drain(&mut d));
    assert_eq!(first.len(), 3);
    // The query's timer is the straggler timeout of the requests in flight.
    let slow = t0 + crate::kad::lookup::LookupConfig::DEFAULT.slow_timeout;
    assert_eq!(d.next_deadline(), Some(slow));
    d.handle_timeout(slow);
    // The three are slow now: their slots go to the fourth peer, which answers.
    let second = requests(&drain(&mut d));
    assert_eq!(second.len(), 1, "{second:?}");
    assert!(!first.iter().any(|(p, _, _)| p.id == second[0].0.id));
    let (to, _, key) = second[0].clone();
    let via = to.addrs.first().copied();
    d.handle_outcome(
        slow,
        key,
        to.clone(),
        via,
        Some(MS),
        Ok(Response::Nodes { closer: Vec::new() }),
    );
    assert!(drain(&mut d).is_empty(), "the stragglers may still answer");
    // At the hard deadline the three have failed, and the lookup ends with the one.
    let hard = t0 + crate::kad::lookup::LookupConfig::DEFAULT.request_timeout;
    assert_eq!(d.next_deadline(), Some(hard));
    d.handle_timeout(hard);
    let out = drain(&mut d);
    let [DhtReply::FindNode(Ok(found))] = &replies(&out)[..] else { panic!("{out:?}") };
    assert_eq!(found.peers, vec![to]);
    assert_eq!((found.stats.failed, found.stats.slow), (3, 3));
    assert_eq!(d.next_deadline(), None, "the query's timer went with it");
}

#[test]
fn a_put_stores_on_the_closest_that_answered_and_counts_refusals() {
    let t0 = Instant::now();
    let mut d = dht(quiet());
    dialled(&mut d, t0, &[1, 2, 3]);
    let record = Record::Immutable { value: b"v".to_vec().into() };
    d.handle_command(t0, CommandId(7), DhtCommand::Put { record, expected_seq: None });
    let out = drain(&mut d);
    let out = answer_all(&mut d, t0, out, |to, request| match request {
        Request::FindNode { .. } => Ok(Response::Nodes { closer: Vec::new() }),
        // Peer 3 is full.
        Request::Store { .. } if to.id == id(3) => {
            Ok(Response::Error { code: ErrorCode::StorageFull, text: String::new() })
        }
        Request::Store { .. } => Ok(Response::Stored),
        other => panic!("unexpected {other:?}"),
    });
    let [DhtReply::Put(Ok(published))] = &replies(&out)[..] else { panic!("{out:?}") };
    assert_eq!((published.stored, published.attempted), (2, 3));
    // The lookup's 3 FIND_NODEs and the 3 STOREs.
    assert_eq!(published.rpcs, 6);
    assert_eq!(d.store().len(), 1, "our own copy is kept");
}

/// An immutable record and its key as a node id.
fn record_and_key(value: &[u8]) -> (Record, NodeId) {
    let key = crate::wire::signing::immutable_key(value);
    (Record::Immutable { value: value.to_vec().into() }, key)
}

/// A peer at XOR distance `delta` (in the last byte) from `key`.
fn near(key: &NodeId, delta: u8) -> PeerInfo {
    let mut bytes = *key.as_bytes();
    bytes[31] ^= delta;
    PeerInfo { id: NodeId::from_bytes(bytes), addrs: vec![addr(delta)] }
}

/// [`near`], dialled: in the routing table.
fn dialled_near(d: &mut Dht, now: Instant, key: &NodeId, delta: u8) -> PeerInfo {
    let info = near(key, delta);
    let h = hello(info.addrs.clone());
    let peer = Peer { id: info.id, addr: info.addrs[0], direction: Direction::Outbound, hello: &h };
    d.handle_peer_up(now, &peer);
    info
}

fn answer(d: &mut Dht, now: Instant, asked: &(PeerInfo, Request, RequestKey), r: Response) {
    let (to, _, key) = asked;
    d.handle_outcome(now, *key, to.clone(), to.addrs.first().copied(), Some(MS), Ok(r));
}

/// Who each request goes to, and whether it is a STORE, in order.
fn kinds(asked: &[(PeerInfo, Request, RequestKey)]) -> Vec<(NodeId, bool)> {
    asked.iter().map(|(to, r, _)| (to.id, matches!(r, Request::Store { .. }))).collect()
}

fn nodes(closer: Vec<PeerInfo>) -> Response {
    Response::Nodes { closer }
}

#[test]
fn a_converged_put_sends_its_stores_with_the_lookup_and_needs_no_round_after_it() {
    for early_stores in [true, false] {
        let t0 = Instant::now();
        let mut d = dht(DhtConfig { early_stores, ..quiet() });
        let (record, key) = record_and_key(b"early");
        let peers: Vec<PeerInfo> =
            [1, 2, 4].iter().map(|&n| dialled_near(&mut d, t0, &key, n)).collect();
        d.handle_command(t0, CommandId(7), DhtCommand::Put { record, expected_seq: None });
        let finds = requests(&drain(&mut d));
        assert_eq!(finds.len(), 3, "α = 3: {finds:?}");
        // The nearest answers and knows no one nearer: the lookup converged on these three.
        let (nearest, others): (Vec<_>, Vec<_>) =
            finds.into_iter().partition(|(to, _, _)| to.id == peers[0].id);
        answer(&mut d, t0 + MS, &nearest[0], nodes(vec![]));
        let mut stores = requests(&drain(&mut d));
        let mut stored_at: Vec<NodeId> = stores.iter().map(|(to, _, _)| to.id).collect();
        stored_at.sort();
        let mut every: Vec<NodeId> = peers.iter().map(|p| p.id).collect();
        every.sort();
        assert_eq!(stored_at, if early_stores { every } else { vec![] }, "{early_stores}");
        assert!(kinds(&stores).iter().all(|&(_, store)| store));
        for other in &others {
            answer(&mut d, t0 + 2 * MS, other, nodes(vec![]));
        }
        // The lookup has ended: early, nothing is left to send; else the STORE round starts.
        let late = requests(&drain(&mut d));
        assert_eq!(late.len(), if early_stores { 0 } else { 3 }, "{early_stores}");
        stores.extend(late);
        let mut out = Vec::new();
        for store in &stores {
            answer(&mut d, t0 + 3 * MS, store, Response::Stored);
            out.extend(drain(&mut d));
        }
        let [DhtReply::Put(Ok(p))] = &replies(&out)[..] else { panic!("{out:?}") };
        assert_eq!((p.stored, p.attempted, p.rpcs), (3, 3, 6), "{early_stores}");
        assert_eq!(d.stats().early_stores, if early_stores { 3 } else { 0 });
    }
}

#[test]
fn an_early_store_at_a_peer_the_lookup_then_passes_is_an_extra_copy_not_counted() {
    let t0 = Instant::now();
    let lookup = super::lookup::LookupConfig { alpha: 1, k: 2, ..quiet().lookup };
    let mut d = dht(DhtConfig { lookup, ..quiet() });
    let (record, key) = record_and_key(b"surprise");
    let a = dialled_near(&mut d, t0, &key, 2);
    let b = dialled_near(&mut d, t0, &key, 4);
    let c = near(&key, 1); // nearer than both; only b knows it
    d.handle_command(t0, CommandId(7), DhtCommand::Put { record, expected_seq: None });
    let asked = requests(&drain(&mut d));
    assert_eq!(kinds(&asked), vec![(a.id, false)]);
    // a knows no one nearer: converged on {a, b}. b's FIND_NODE, then both STOREs.
    answer(&mut d, t0 + MS, &asked[0], nodes(vec![]));
    let asked = requests(&drain(&mut d));
    assert_eq!(kinds(&asked), vec![(b.id, false), (a.id, true), (b.id, true)]);
    let (find_b, store_a, store_b) = (&asked[0], &asked[1], &asked[2]);
    // b names c, nearer: no longer converged, no STORE goes with c's FIND_NODE.
    answer(&mut d, t0 + 2 * MS, find_b, nodes(vec![c.clone()]));
    let asked = requests(&drain(&mut d));
    assert_eq!(kinds(&asked), vec![(c.id, false)]);
    // c answers: the k = 2 closest are c and a. a has its STORE; c gets one now; b's is extra.
    answer(&mut d, t0 + 3 * MS, &asked[0], nodes(vec![]));
    let late = requests(&drain(&mut d));
    assert_eq!(kinds(&late), vec![(c.id, true)]);
    let mut out = Vec::new();
    for store in [store_a, store_b, &late[0]] {
        answer(&mut d, t0 + 4 * MS, store, Response::Stored);
        out.extend(drain(&mut d));
    }
    let [DhtReply::Put(Ok(p))] = &replies(&out)[..] else { panic!("{out:?}") };
    // Counted over the k closest only; every request sent: 3 FIND_NODEs and 3 STOREs.
    assert_eq!((p.stored, p.attempted, p.rpcs), (2, 2, 6));
    assert_eq!(d.stats().early_stores, 2);
}

#[test]
fn an_early_store_refused_by_one_of_the_closest_counts_as_its_refusal() {
    let t0 = Instant::now();
    let mut d = dht(quiet());
    let (record, key) = record_and_key(b"refused");
    let peers: Vec<PeerInfo> = [1, 2].iter().map(|&n| dialled_near(&mut d, t0, &key, n)).collect();
    d.handle_command(t0, CommandId(7), DhtCommand::Put { record, expected_seq: None });
    let finds = requests(&drain(&mut d));
    let nearest = finds.iter().find(|(to, _, _)| to.id == peers[0].id).unwrap();
    answer(&mut d, t0 + MS, nearest, nodes(vec![]));
    let stores = requests(&drain(&mut d));
    assert_eq!(stores.len(), 2);
    // Both refuse before the lookup ends: the PUT fails with the first refusal, at its end.
    let full = Response::Error { code: ErrorCode::StorageFull, text: String::new() };
    for store in &stores {
        answer(&mut d, t0 + 2 * MS, store, full.clone());
        assert!(replies(&drain(&mut d)).is_empty());
    }
    let other = finds.iter().find(|(to, _, _)| to.id != peers[0].id).unwrap();
    answer(&mut d, t0 + 3 * MS, other, nodes(vec![]));
    let out = drain(&mut d);
    assert!(requests(&out).is_empty(), "no STORE again: {out:?}");
    let expected = DhtReply::Put(Err(DhtError::NotStored(Some(ErrorCode::StorageFull))));
    assert_eq!(replies(&out), vec![expected]);
}

#[test]
fn a_put_nobody_accepts_fails_with_the_first_refusal() {
    let t0 = Instant::now();
    let mut d = dht(quiet());
    dialled(&mut d, t0, &[1]);
    let record = Record::Immutable { value: b"v".to_vec().into() };
    d.handle_command(t0, CommandId(7), DhtCommand::Put { record, expected_seq: None });
    let out = drain(&mut d);
    let out = answer_all(&mut d, t0, out, |_, request| match request {
        Request::FindNode { .. } => Ok(Response::Nodes { closer: Vec::new() }),
        _ => Ok(Response::Error { code: ErrorCode::QuotaExceeded, text: String::new() }),
    });
    let expected = DhtReply::Put(Err(DhtError::NotStored(Some(ErrorCode::QuotaExceeded))));
    assert_eq!(replies(&out), vec![expected]);
}

// ---- Serving ----

#[test]
fn a_mutable_store_waits_for_its_signature_check_and_answers_with_its_ticket() {
    let t0 = Instant::now();
    let mut d = dht(quiet());
    let h = hello(vec![addr(1)]);
    let from = Peer { id: id(1), addr: addr(1), direction: Direction::Inbound, hello: &h };
    let record = MutableRecord::sign(&Keypair::from_seed([9; 32]), b"s".to_vec(), 1, b"v".to_vec());
    let store =
        Request::Store { record: Record::Mutable(record), ttl_secs: 60, expected_seq: None };
    let ticket = ReplyTicket(5);
    assert_eq!(d.handle_request(t0, &from, store, ticket), None, "answered later");
    let out = drain(&mut d);
    // The new inbound peer's claim is dialled back; the STORE waits for its check.
    let [Action::Probe { peer, .. }, Action::Job { key, job: job @ Job::VerifyRecord(_) }] =
        &out[..]
    else {
        panic!("{out:?}")
    };
    assert_eq!(*peer, id(1));
    let result = crate::protocol::jobs::run(job.clone(), None);
    assert_eq!(result, JobResult::RecordVerified(true));
    d.handle_job_done(t0, *key, Some(result.clone()));
    let out = drain(&mut d);
    assert_eq!(out, vec![Action::Respond { ticket, response: Response::Stored }]);
    assert_eq!(d.store().len(), 1);
    // A second result for the same job is ignored.
    d.handle_job_done(t0, *key, Some(result));
    assert!(drain(&mut d).is_empty());
}

// ---- Maintenance ----

#[test]
fn own_records_are_published_again_at_the_republish_interval() {
    let t0 = Instant::now();
    let config = DhtConfig {
        maintenance_interval: 10 * S,
        republish_interval: 60 * S,
        join_on_first_contact: false,
        ..DhtConfig::default()
    };
    let mut d = dht(config);
    dialled(&mut d, t0, &[1]);
    let record = Record::Immutable { value: b"v".to_vec().into() };
    d.handle_command(t0, CommandId(1), DhtCommand::Put { record, expected_seq: None });
    let out = drain(&mut d);
    let stored = |_: &PeerInfo, r: &Request| match r {
        Request::FindNode { .. } => Ok(Response::Nodes { closer: Vec::new() }),
        _ => Ok(Response::Stored),
    };
    assert_eq!(replies(&answer_all(&mut d, t0, out, stored)).len(), 1);
    // Ticks before the interval republish nothing (peer 1, learned before the record was
    // held, is not replicated to); the one at or after it starts the republish lookup.
    let mut tick = d.next_deadline().expect("the maintenance tick is armed");
    let mut published_again = None;
    while tick <= t0 + 70 * S {
        d.handle_timeout(tick);
        let asked = requests(&drain(&mut d));
        let lookup = asked.iter().any(|(_, r, _)| matches!(r, Request::FindNode { .. }));
        if lookup && published_again.is_none() {
            published_again = Some(tick);
        }
        for (to, _, key) in asked {
            let via = to.addrs.first().copied();
            d.handle_outcome(tick, key, to, via, Some(MS), Ok(Response::Stored));
        }
        tick = d.next_deadline().expect("the tick re-arms");
    }
    let at = published_again.expect("republished within 70 s");
    assert!(at >= t0 + 60 * S && at < t0 + 70 * S, "republished at {:?}", at - t0);
}

#[test]
fn peers_learned_while_no_record_is_held_are_not_queued_for_replication() {
    let t0 = Instant::now();
    let mut d = dht(quiet());
    dialled(&mut d, t0, &(1..=200).collect::<Vec<u8>>());
    assert!(d.routing.len() >= 50, "peers were learned: {}", d.routing.len());
    assert_eq!((d.replicate_to.len(), d.replicate_to.capacity()), (0, 0));
    // Holding a record, a new peer is queued to receive it.
    let record = Record::Immutable { value: b"v".to_vec().into() };
    d.handle_command(t0, CommandId(1), DhtCommand::Put { record, expected_seq: None });
    assert!(!d.store.is_empty());
    dialled(&mut d, t0, &[201]);
    assert_eq!(d.replicate_to.len(), 1);
    assert_eq!(d.replicate_to[0].peer.id, id(201));
}

#[test]
fn the_first_contact_starts_the_join_a_self_lookup() {
    let t0 = Instant::now();
    let mut d = dht(DhtConfig { join_on_first_contact: true, ..quiet() });
    dialled(&mut d, t0, &[1]);
    let asked = requests(&drain(&mut d));
    assert_eq!(asked.len(), 1);
    assert_eq!(asked[0].1, Request::FindNode { target: LOCAL });
    // Only once.
    dialled(&mut d, t0, &[2]);
    assert!(requests(&drain(&mut d)).is_empty());
}

#[test]
fn a_peer_that_is_no_dht_server_never_enters_the_table() {
    let t0 = Instant::now();
    let mut d = dht(quiet());
    let h = Hello { features: 0, ..hello(vec![addr(1)]) };
    let peer = Peer { id: id(1), addr: addr(1), direction: Direction::Outbound, hello: &h };
    d.handle_peer_up(t0, &peer);
    assert!(d.routing().is_empty());
    dialled(&mut d, t0, &[2]);
    assert_eq!(d.routing().closest(&id(2), 20), vec![info(2)]);
}

#[test]
fn an_add_provider_is_refused_unless_it_names_its_sender_within_the_address_bound() {
    let t0 = Instant::now();
    let mut d = dht(quiet());
    let h = hello(vec![addr(1)]);
    let from = Peer { id: id(1), addr: addr(1), direction: Direction::Inbound, hello: &h };
    let add = |provider: PeerInfo| Request::AddProvider { key: id(9), provider, ttl_secs: 60 };
    let code = |r: Option<Response>| match r {
        Some(Response::Error { code, .. }) => Some(code),
        _ => None,
    };
    // Announcing another node is refused, whatever its addresses.
    let other = d.handle_request(t0, &from, add(info(2)), ReplyTicket(1));
    assert_eq!(code(other), Some(ErrorCode::ProviderMismatch));
    // Too many addresses is refused, not truncated.
    let many = PeerInfo { id: id(1), addrs: (1..=5).map(addr).collect() };
    let many = d.handle_request(t0, &from, add(many), ReplyTicket(2));
    assert_eq!(code(many), Some(ErrorCode::BadRequest));
    assert!(d.store().providers(t0, &id(9)).is_empty(), "nothing was stored");
    // The sender itself is stored.
    let own = d.handle_request(t0, &from, add(info(1)), ReplyTicket(3));
    assert_eq!(own, Some(Response::ProviderAdded));
    assert_eq!(d.store().providers(t0, &id(9)), vec![info(1)]);
}

// ---- Trust: only a dial proves an address ----

fn inbound(d: &mut Dht, now: Instant, n: u8, socket: SocketAddr, claims: Vec<SocketAddr>) {
    let h = hello(claims);
    let peer = Peer { id: id(n), addr: socket, direction: Direction::Inbound, hello: &h };
    d.handle_peer_up(now, &peer);
}

fn public(a: u8, b: u8) -> SocketAddr {
    SocketAddr::from(([198, 51, a, b], 4000))
}

fn entry_addrs(d: &Dht, n: u8) -> Option<Vec<SocketAddr>> {
    d.routing().get(&id(n)).map(|e| e.peer.addrs.clone())
}

#[test]
fn only_the_address_we_reached_enters_the_table() {
    let t0 = Instant::now();
    let mut d = dht(quiet());
    // We dialled it at addr(1); its Hello claims two other addresses.
    let h = hello(vec![addr(7), addr(8)]);
    let peer = Peer { id: id(1), addr: addr(1), direction: Direction::Outbound, hello: &h };
    d.handle_peer_up(t0, &peer);
    assert_eq!(entry_addrs(&d, 1), Some(vec![addr(1)]));
    assert_eq!(d.routing().get(&id(1)).unwrap().source, Source::Verified);
}

#[test]
fn an_answer_over_a_connection_the_peer_opened_rewrites_no_address() {
    let t0 = Instant::now();
    let mut d = dht(quiet());
    dialled(&mut d, t0, &[1]);
    // A lookup named peer 1 at another address; the request went over a connection peer 1
    // had opened, so the answer proves it alive but not at that address.
    let named = PeerInfo { id: id(1), addrs: vec![addr(77)] };
    let key = RequestKey(3); // a replication STORE: its purpose does not matter here
    d.handle_outcome(t0 + S, key, named.clone(), None, Some(MS), Ok(Response::Stored));
    assert_eq!(entry_addrs(&d, 1), Some(vec![addr(1)]));
    assert_eq!(d.routing().get(&id(1)).unwrap().last_seen, t0 + S, "refreshed");
    // An answer over a connection we dialled at the new address does move it.
    d.handle_outcome(t0 + S, key, named, Some(addr(77)), Some(MS), Ok(Response::Stored));
    assert_eq!(entry_addrs(&d, 1), Some(vec![addr(77)]));
}

#[test]
fn a_failed_dial_at_a_third_partys_address_is_not_charged_to_the_id() {
    let t0 = Instant::now();
    let mut d = dht(quiet());
    dialled(&mut d, t0, &[1]);
    let key = RequestKey(3);
    let dead = PeerInfo { id: id(1), addrs: vec![addr(99)] };
    // Before, two of these evicted the honest entry (max_failures = 2).
    for _ in 0..3 {
        d.handle_outcome(t0, key, dead.clone(), None, None, Err(RequestFailure::Unreachable));
    }
    assert_eq!(entry_addrs(&d, 1), Some(vec![addr(1)]));
    assert_eq!(d.stats().failures_not_charged, 3);
    // Failing where we reached it is the entry's own failure.
    for _ in 0..2 {
        d.handle_outcome(t0, key, info(1), None, None, Err(RequestFailure::Unreachable));
    }
    assert_eq!(entry_addrs(&d, 1), None, "evicted");
}

#[test]
fn a_lookup_tries_the_address_we_reached_before_a_third_partys_claim() {
    let t0 = Instant::now();
    let mut d = dht(DhtConfig { local_network: true, ..quiet() });
    dialled(&mut d, t0, &[1, 2]);
    d.handle_command(t0, CommandId(1), DhtCommand::FindNode { target: id(3) });
    let out = drain(&mut d);
    // Peer 2 names peer 1 at a dead address; peer 1 was asked already, so the claim is
    // ignored, and a known id named by a third party is dialled where we reached it first.
    let mut response =
        Response::Nodes { closer: vec![PeerInfo { id: id(1), addrs: vec![addr(99)] }, info(3)] };
    d.vet_named_peers(&mut response, Some(addr(2).ip()));
    let Response::Nodes { closer } = &response else { unreachable!() };
    assert_eq!(closer[0].addrs, vec![addr(1), addr(99)]);
    assert_eq!(closer[1].addrs, vec![addr(3)]);
    let _ = answer_all(&mut d, t0, out, |_, _| Ok(Response::Nodes { closer: Vec::new() }));
}

#[test]
fn an_inbound_peer_is_named_to_others_only_after_its_dial_back() {
    let t0 = Instant::now();
    let mut d = dht(quiet());
    inbound(&mut d, t0, 1, public(1, 1), vec![public(1, 1)]);
    let out = drain(&mut d);
    assert_eq!(out, vec![Action::Probe { peer: id(1), addr: public(1, 1) }]);
    let asker = Peer {
        id: id(2),
        addr: addr(2),
        direction: Direction::Outbound,
        hello: &hello(vec![addr(2)]),
    };
    let find = || Request::FindNode { target: id(1) };
    let named = |r: Option<Response>| match r {
        Some(Response::Nodes { closer }) => closer.iter().map(|p| p.id).collect::<Vec<_>>(),
        other => panic!("{other:?}"),
    };
    // In our table (we may use its connection), but not named.
    assert!(d.routing().contains(&id(1)));
    assert!(named(d.handle_request(t0, &asker, find(), ReplyTicket(1))).is_empty());
    // The dial-back reached it: now it is verified, and named.
    d.handle_probe(t0, id(1), public(1, 1), ProbeResult::Reached);
    assert_eq!(d.routing().get(&id(1)).unwrap().source, Source::Verified);
    assert_eq!(named(d.handle_request(t0, &asker, find(), ReplyTicket(2))), vec![id(1)]);
    // Another inbound peer's claim fails its dial-back: it leaves the table.
    inbound(&mut d, t0, 3, public(3, 1), vec![public(3, 1)]);
    d.handle_probe(t0, id(3), public(3, 1), ProbeResult::Unreachable);
    assert!(!d.routing().contains(&id(3)));
    assert_eq!((d.stats().probes_reached, d.stats().probes_failed), (1, 1));
}

#[test]
fn dial_backs_are_bounded_in_flight_and_waiting() {
    let t0 = Instant::now();
    let mut d = dht(DhtConfig { max_probes: 2, max_probe_queue: 3, ..quiet() });
    for n in 1..=7u8 {
        inbound(&mut d, t0, n, public(n, 1), vec![public(n, 1)]);
    }
    let probes =
        |out: Vec<DhtAction>| out.iter().filter(|a| matches!(a, Action::Probe { .. })).count();
    assert_eq!(probes(drain(&mut d)), 2, "two in flight");
    // Five waited for three places: the two oldest were dropped.
    assert_eq!(d.stats().probe_queue_drops, 2);
    d.handle_probe(t0, id(1), public(1, 1), ProbeResult::Reached);
    let out = drain(&mut d);
    assert_eq!(out, vec![Action::Probe { peer: id(5), addr: public(5, 1) }]);
}

#[test]
fn a_dial_back_the_router_could_not_start_waits_for_the_next_result_or_tick() {
    let t0 = Instant::now();
    let mut d = dht(DhtConfig { max_probes: 1, ..quiet() });
    inbound(&mut d, t0, 1, public(1, 1), vec![public(1, 1)]);
    inbound(&mut d, t0, 2, public(2, 1), vec![public(2, 1)]);
    assert_eq!(drain(&mut d), vec![Action::Probe { peer: id(1), addr: public(1, 1) }]);
    // No slot at the router: it waits again, and nothing more starts for now.
    d.handle_probe(t0, id(1), public(1, 1), ProbeResult::NotTried);
    assert!(drain(&mut d).is_empty());
    assert_eq!(d.stats().probes_not_tried, 1);
    // The maintenance tick resumes the queue, oldest first.
    let mut ticking = dht(DhtConfig { max_probes: 1, maintenance_interval: S, ..quiet() });
    inbound(&mut ticking, t0, 1, public(1, 1), vec![public(1, 1)]);
    inbound(&mut ticking, t0, 2, public(2, 1), vec![public(2, 1)]);
    drain(&mut ticking);
    ticking.handle_probe(t0, id(1), public(1, 1), ProbeResult::NotTried);
    ticking.handle_timeout(t0 + S);
    let out = drain(&mut ticking);
    assert!(out.contains(&Action::Probe { peer: id(2), addr: public(2, 1) }), "{out:?}");
}

#[test]
fn one_host_cannot_fill_a_bucket_by_claiming_many_subnets() {
    let t0 = Instant::now();
    let mut d = dht(quiet());
    // Twenty ids in one bucket, all connecting from one public address, each claiming an
    // address in a /24 of its own.
    let host = SocketAddr::from(([203, 0, 113, 5], 50000));
    for n in 1..=20u8 {
        inbound(&mut d, t0, n, host, vec![public(n, 1)]);
    }
    // The limits count the socket's /24: two per bucket (the default).
    assert_eq!(d.routing().len(), 2);
}

#[test]
fn claims_that_cannot_be_true_from_where_the_peer_speaks_are_dropped() {
    let t0 = Instant::now();
    let mut d = dht(quiet());
    let claims = vec![
        SocketAddr::from(([127, 0, 0, 1], 4000)),
        SocketAddr::from(([10, 0, 0, 1], 4000)),
        SocketAddr::from(([0, 0, 0, 0], 4000)),
        SocketAddr::from(([198, 51, 100, 7], 0)),
        SocketAddr::from(([198, 51, 100, 7], 4000)),
    ];
    inbound(&mut d, t0, 1, public(1, 1), claims.clone());
    assert_eq!(entry_addrs(&d, 1), Some(vec![SocketAddr::from(([198, 51, 100, 7], 4000))]));
    assert_eq!(d.stats().claims_dropped, 4);
    // A peer whose every claim is implausible has no address: it stays out of the table.
    inbound(&mut d, t0, 2, public(2, 1), claims[..4].to_vec());
    assert!(!d.routing().contains(&id(2)));
    // On a network declared local, loopback and private claims are kept.
    let mut local = dht(DhtConfig { local_network: true, ..quiet() });
    inbound(&mut local, t0, 1, public(1, 1), claims.clone());
    assert_eq!(entry_addrs(&local, 1).unwrap().len(), 3);
}

#[test]
fn one_responders_provider_list_does_not_end_the_search() {
    let t0 = Instant::now();
    let mut d = dht(quiet());
    dialled(&mut d, t0, &[1, 2, 3, 4]);
    d.handle_command(t0, CommandId(1), DhtCommand::Providers { key: id(9) });
    let out = drain(&mut d);
    let real = info(50);
    let fakes: Vec<PeerInfo> = (100..120).map(info).collect();
    // Peer 1 lists twenty fake providers; everyone else lists the real one.
    let out = answer_all(&mut d, t0, out, |to, _| {
        let providers = if to.id == id(1) { fakes.clone() } else { vec![real.clone()] };
        Ok(Response::Providers { providers, closer: Vec::new() })
    });
    let [DhtReply::Providers(Ok(found))] = &replies(&out)[..] else { panic!("{out:?}") };
    assert!(found.stats.answered >= 3, "three responders at least: {:?}", found.stats);
    assert_eq!(found.providers[0], real, "named by three responders, ranked first");
    assert_eq!(found.providers.len(), 20);
}

#[test]
fn one_sender_gets_its_share_of_the_stores_waiting_for_a_worker_not_all_of_them() {
    let t0 = Instant::now();
    let config = DhtConfig { max_deferred: 8, max_deferred_per_source: 3, ..quiet() };
    let mut d = dht(config);
    let key = Keypair::from_seed([9; 32]);
    let store = |seq: u64| Request::Store {
        record: Record::Mutable(MutableRecord::sign(&key, b"s".to_vec(), seq, b"v".to_vec())),
        ttl_secs: 60,
        expected_seq: None,
    };
    let overloaded = |r: Option<Response>| {
        matches!(r, Some(Response::Error { code: ErrorCode::Overloaded, .. }))
    };
    let h = hello(vec![]);
    let at = |n: u8, ip: [u8; 4]| Peer {
        id: id(n),
        addr: SocketAddr::from((ip, 4000)),
        direction: Direction::Inbound,
        hello: &h,
    };
    // Peer 1 floods: three wait, the fourth is refused.
    for seq in 0..3 {
        assert_eq!(
            d.handle_request(t0, &at(1, [203, 0, 113, 1]), store(seq), ReplyTicket(seq)),
            None
        );
    }
    assert!(overloaded(d.handle_request(t0, &at(1, [203, 0, 113, 1]), store(3), ReplyTicket(3))));
    // A fresh id from the same address gets nothing more: the address's share is used too.
    assert!(overloaded(d.handle_request(t0, &at(2, [203, 0, 113, 1]), store(4), ReplyTicket(4))));
    // Another sender is still served.
    assert_eq!(d.handle_request(t0, &at(3, [198, 51, 100, 3]), store(5), ReplyTicket(5)), None);
    assert_eq!(d.stats().deferred_share_refusals, 2);
    // Loopback senders are counted by id only (one host runs many nodes in a devnet).
    for (n, seq) in [(4, 6), (5, 7), (6, 8)] {
        assert_eq!(
            d.handle_request(t0, &at(n, [127, 0, 0, 1]), store(seq), ReplyTicket(seq)),
            None
        );
    }
}

#[test]
fn a_peer_that_keeps_sending_forged_records_is_dropped_with_low_score() {
    let t0 = Instant::now();
    let mut d = dht(DhtConfig { max_forgeries: 3, ..quiet() });
    let h = hello(vec![]);
    let from = Peer { id: id(1), addr: addr(1), direction: Direction::Inbound, hello: &h };
    let forged = |seq: u64| {
        let mut m =
            MutableRecord::sign(&Keypair::from_seed([9; 32]), b"s".to_vec(), seq, b"v".to_vec());
        m.seq += 1; // the signature covered the old sequence number
        Request::Store { record: Record::Mutable(m), ttl_secs: 60, expected_seq: None }
    };
    let mut dropped = Vec::new();
    for n in 0..3u64 {
        assert_eq!(d.handle_request(t0, &from, forged(n * 10), ReplyTicket(n)), None);
        let out = drain(&mut d);
        let [Action::Job { key, job }] = &out[..] else { panic!("{out:?}") };
        let result = crate::protocol::jobs::run(job.clone(), None);
        assert_eq!(result, JobResult::RecordVerified(false));
        d.handle_job_done(t0, *key, Some(result));
        dropped
            .extend(drain(&mut d).into_iter().filter(|a| matches!(a, Action::Disconnect { .. })));
    }
    // The first two are refused; the third also drops the peer.
    let reason = GoodbyeReason::LowScore;
    assert_eq!(dropped, vec![Action::Disconnect { peer: id(1), reason }]);
    assert_eq!(d.stats().dropped_for_forgeries, 1);
    // A window later the count starts again.
    let later = t0 + 60 * S;
    assert_eq!(d.handle_request(later, &from, forged(100), ReplyTicket(9)), None);
    let out = drain(&mut d);
    let [Action::Job { key, .. }] = &out[..] else { panic!("{out:?}") };
    d.handle_job_done(later, *key, Some(JobResult::RecordVerified(false)));
    assert!(drain(&mut d).iter().all(|a| !matches!(a, Action::Disconnect { .. })));
}

#[test]
fn a_bucket_with_half_its_entries_verified_does_not_dial_back_newcomers() {
    let t0 = Instant::now();
    let mut config = quiet();
    config.routing.k = 4;
    let mut d = dht(config);
    // Ids 1 to 4 share a bucket. One verified entry: a newcomer is dialled back.
    dialled(&mut d, t0, &[1]);
    inbound(&mut d, t0, 2, public(2, 1), vec![public(2, 1)]);
    assert_eq!(drain(&mut d), vec![Action::Probe { peer: id(2), addr: public(2, 1) }]);
    // Two verified (k/2): the next newcomer is kept, used, not named, and not dialled back.
    dialled(&mut d, t0, &[3]);
    inbound(&mut d, t0, 4, public(4, 1), vec![public(4, 1)]);
    assert!(drain(&mut d).is_empty());
    assert_eq!(d.routing().get(&id(4)).unwrap().source, Source::Inbound);
}

#[test]
fn a_record_fetched_by_a_get_answers_the_next_get_from_the_node_itself() {
    let t0 = Instant::now();
    let mut d = dht(quiet());
    dialled(&mut d, t0, &[1, 2]);
    let record = Record::Immutable { value: b"fetched".to_vec().into() };
    let key = record.key();
    let held = record.clone();
    d.handle_command(t0, CommandId(1), DhtCommand::Get { key });
    let out = drain(&mut d);
    let out = answer_all(&mut d, t0, out, move |_, _| {
        Ok(Response::Value { record: Some(held.clone()), closer: Vec::new() })
    });
    let [DhtReply::Get(Ok(first))] = &replies(&out)[..] else { panic!("{out:?}") };
    assert!(!first.local);
    assert_eq!(d.store().len(), 0, "a fetched record is cached, not stored");

    d.handle_command(t0, CommandId(2), DhtCommand::Get { key });
    let out = drain(&mut d);
    assert!(requests(&out).is_empty(), "asked nobody: {out:?}");
    let [DhtReply::Get(Ok(second))] = &replies(&out)[..] else { panic!("{out:?}") };
    assert!(second.local);
    assert_eq!(second.record, record);
    assert_eq!(d.stats().get_cache.hits, 1);

    // A forged answer is never cached: its hash does not match the key.
    let other = Record::Immutable { value: b"wanted".to_vec().into() };
    let wanted = other.key();
    d.handle_command(t0, CommandId(3), DhtCommand::Get { key: wanted });
    let out = drain(&mut d);
    let forged = Record::Immutable { value: b"forged".to_vec().into() };
    answer_all(&mut d, t0, out, move |_, _| {
        Ok(Response::Value { record: Some(forged.clone()), closer: Vec::new() })
    });
    assert_eq!(d.stats().get_cache.entries, 1);
}

// ---- Measured peers: warm connections ----

#[test]
fn each_bucket_keeps_its_cheapest_entries_warm_with_pings() {
    let t0 = Instant::now();
    let config = DhtConfig {
        join_on_first_contact: false,
        maintenance_interval: 10 * S,
        keep_warm: 2,
        keepalive_interval: 30 * S,
        ..DhtConfig::default()
    };
    let mut d = dht(config);
    // Four connected peers, all in bucket 0 of LOCAL, and one in bucket 1 (0xc0… from 0x80…).
    dialled(&mut d, t0, &[1, 2, 3, 4, 0xc0]);
    d.quality.on_answer(t0, &id(3), Some(5 * MS));
    d.quality.on_answer(t0, &id(1), Some(20 * MS));
    d.quality.on_answer(t0, &id(2), Some(80 * MS));
    d.quality.on_answer(t0, &id(4), Some(90 * MS));
    d.handle_peer_down(t0, id(2));
    drain(&mut d);
    let pinged = |d: &mut Dht, at: Instant| {
        d.handle_timeout(at);
        let mut to: Vec<(u8, RequestKey)> = requests(&drain(d))
            .into_iter()
            .inspect(|(_, r, _)| assert_eq!(*r, Request::Ping))
            .map(|(p, _, key)| (p.id.as_bytes()[0], key))
            .collect();
        to.sort();
        to
    };
    let ids = |pings: &[(u8, RequestKey)]| pings.iter().map(|p| p.0).collect::<Vec<u8>>();
    // Nothing before the keepalive interval has passed without news.
    assert_eq!(pinged(&mut d, t0 + 10 * S), []);
    assert_eq!(pinged(&mut d, t0 + 20 * S), []);
    // The two cheapest of bucket 0 (3, then 1; 2 is faster than 4 but not connected, and a
    // keepalive dials no one) and the one entry of bucket 1.
    let pings = pinged(&mut d, t0 + 30 * S);
    assert_eq!(ids(&pings), [1, 3, 0xc0]);
    assert_eq!(d.stats().keepalive_pings, 3);
    // Their answers are news: the next PINGs come an interval later.
    for (n, key) in pings {
        let pong = Ok(Response::Pong { observed: addr(0x80) });
        d.handle_outcome(t0 + 31 * S, key, info(n), Some(addr(n)), Some(MS), pong);
    }
    assert_eq!(pinged(&mut d, t0 + 40 * S), []);
    assert_eq!(pinged(&mut d, t0 + 60 * S), []);
    assert_eq!(ids(&pinged(&mut d, t0 + 70 * S)), [1, 3, 0xc0]);
    // Bucket 1's only entry leaves: nothing there is kept, and nothing is dialled.
    d.handle_peer_down(t0 + 75 * S, id(0xc0));
    assert_eq!(ids(&pinged(&mut d, t0 + 110 * S)), [1, 3]);
    let q = d.stats().quality;
    assert_eq!((q.peers, q.measured), (5, 5));
}

#[test]
fn answers_and_failures_feed_each_peers_figures() {
    let t0 = Instant::now();
    let mut d = dht(quiet());
    dialled(&mut d, t0, &[1, 2, 3, 4, 5]);
    d.handle_command(t0, CommandId(1), DhtCommand::FindNode { target: id(9) });
    let out = drain(&mut d);
    let asked = requests(&out);
    assert_eq!(asked.len(), 3);
    let (ok, bad) = (&asked[0], &asked[1]);
    d.handle_outcome(
        t0 + S,
        ok.2,
        ok.0.clone(),
        ok.0.addrs.first().copied(),
        Some(40 * MS),
        Ok(Response::Nodes { closer: Vec::new() }),
    );
    d.handle_outcome(t0 + S, bad.2, bad.0.clone(), None, None, Err(RequestFailure::Timeout));
    assert_eq!(d.quality.srtt(&ok.0.id), Some(40 * MS));
    assert_eq!(d.quality.srtt(&bad.0.id), None);
    assert!(d.quality.success(&bad.0.id) < d.quality.success(&ok.0.id));
    assert!(d.quality.cost_us(&bad.0.id) > d.quality.cost_us(&ok.0.id));
}

#[test]
fn a_lookup_connects_ahead_to_the_next_peers_it_will_ask_unless_connected() {
    let t0 = Instant::now();
    let lookup = super::lookup::LookupConfig { preconnect: 3, ..quiet().lookup };
    let mut d = dht(DhtConfig { lookup, ..quiet() });
    dialled(&mut d, t0, &[1, 2, 3, 4, 5, 6, 7]);
    for n in [5, 6] {
        d.handle_peer_down(t0, id(n));
    }
    d.handle_command(t0, CommandId(1), DhtCommand::FindNode { target: id(0) });
    let out = drain(&mut d);
    let asked: Vec<NodeId> = requests(&out).into_iter().map(|(to, _, _)| to.id).collect();
    assert_eq!(asked, [id(1), id(2), id(3)]);
    // The next three to ask are 4, 5 and 6; 4 is connected already.
    let ahead: Vec<PeerInfo> = out
        .iter()
        .filter_map(|a| match a {
            Action::Connect { to, ahead: true } => Some(to.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(ahead, [info(5), info(6)]);
    assert_eq!(d.stats().preconnects, 2);
}

#[test]
fn lookups_widen_only_while_round_trips_are_measured_long_and_never_for_a_value() {
    let t0 = Instant::now();
    let lookup = super::lookup::LookupConfig { first_round: 6, preconnect: 3, ..quiet().lookup };
    let mut d = dht(DhtConfig { lookup, ..quiet() });
    dialled(&mut d, t0, &(1..=20).collect::<Vec<u8>>());
    for n in 1..=20 {
        d.handle_peer_down(t0, id(n));
    }
    let find = |d: &mut Dht, c: u64| {
        d.handle_command(t0, CommandId(c), DhtCommand::FindNode { target: id(0) });
        let out = drain(d);
        (requests(&out).len(), connects(&out).len())
    };
    // Nothing measured yet (a join): 6 asked, the next 3 dialled ahead.
    assert_eq!(find(&mut d, 1), (6, 3));
    // A dial's handshake is a measure too: a join on a LAN stays narrow.
    let mut lan = dht(DhtConfig { lookup, ..quiet() });
    lan.handle_handshake_rtt(t0, id(1), MS);
    dialled(&mut lan, t0, &(1..=20).collect::<Vec<u8>>());
    for n in 1..=20 {
        lan.handle_peer_down(t0, id(n));
    }
    assert_eq!(find(&mut lan, 1), (3, 0));
    assert_eq!(lan.stats().wide_lookups, 0);
    // A LAN: 2 ms round trips. α asked, nothing dialled ahead.
    for n in 1..=4 {
        d.quality.on_answer(t0, &id(n), Some(2 * MS));
    }
    assert_eq!(d.quality.mean_srtt(), Some(2 * MS));
    assert_eq!(find(&mut d, 2), (3, 0));
    // Long ones: a mean of 26 ms.
    for n in 5..=8 {
        d.quality.on_answer(t0, &id(n), Some(50 * MS));
    }
    assert_eq!(d.quality.mean_srtt(), Some(26 * MS));
    assert_eq!(find(&mut d, 3), (6, 3));
    assert_eq!(d.stats().wide_lookups, 2);
    // A GET keeps to α either way.
    d.handle_command(t0, CommandId(4), DhtCommand::Get { key: id(0) });
    let out = drain(&mut d);
    assert_eq!((requests(&out).len(), connects(&out).len()), (3, 0));
    assert_eq!(d.stats().wide_lookups, 2);
}

// ---- The join ----

fn connects(out: &[DhtAction]) -> Vec<(NodeId, bool)> {
    out.iter()
        .filter_map(|a| match a {
            Action::Connect { to, ahead } => Some((to.id, *ahead)),
            _ => None,
        })
        .collect()
}

#[test]
fn join_contacts_are_dialled_again_backing_off_until_one_enters_the_table() {
    let t0 = Instant::now();
    let config = DhtConfig { join_on_first_contact: true, maintenance_interval: 10 * S, ..quiet() };
    let mut d = dht(config);
    // Ourselves, a contact without an address and a repeated one are not kept.
    let me = PeerInfo { id: LOCAL, addrs: vec![addr(9)] };
    let addressless = PeerInfo { id: id(3), addrs: Vec::new() };
    let contacts = vec![info(1), me, info(2), addressless, info(1)];
    d.handle_command(t0, CommandId(1), DhtCommand::Join { contacts });
    let out = drain(&mut d);
    assert_eq!(connects(&out), vec![(id(1), false), (id(2), false)]);
    assert_eq!(replies(&out), vec![DhtReply::Join(2)]);

    // Nobody reached: again after 1 s, then 2, 4, … up to 60 s between dials (the maintenance
    // ticks in between dial nothing).
    let mut at = t0;
    for delay in [1, 2, 4, 8, 16, 32, 60, 60] {
        d.handle_timeout(at + delay * S - MS);
        assert!(connects(&drain(&mut d)).is_empty(), "early, before {delay} s");
        at += delay * S;
        d.handle_timeout(at);
        assert_eq!(connects(&drain(&mut d)), vec![(id(1), false), (id(2), false)], "{delay} s");
    }
    assert_eq!((d.stats().join_dials, d.stats().rejoins), (18, 8));

    // A contact answers: the join's self-lookup starts, and the retries stop.
    dialled(&mut d, at, &[2]);
    let asked = requests(&drain(&mut d));
    assert_eq!(asked.len(), 1);
    assert_eq!(asked[0].1, Request::FindNode { target: LOCAL });
    for s in 1..=120 {
        d.handle_timeout(at + s * S);
        assert!(connects(&drain(&mut d)).is_empty());
    }
    assert_eq!(d.stats().rejoins, 8);
}

#[test]
fn a_table_that_empties_joins_again_through_the_contacts() {
    let t0 = Instant::now();
    let config = DhtConfig { join_on_first_contact: true, maintenance_interval: 10 * S, ..quiet() };
    let mut d = dht(config);
    d.handle_command(t0, CommandId(1), DhtCommand::Join { contacts: vec![info(1)] });
    dialled(&mut d, t0 + MS, &[1]);
    drain(&mut d);
    d.handle_timeout(t0 + S);
    assert!(connects(&drain(&mut d)).is_empty());

    // Every peer gone: the next maintenance tick dials the contacts again, and the first peer
    // back in the table starts a new self-lookup.
    assert!(d.routing.remove(&id(1)));
    d.handle_timeout(t0 + 10 * S - MS);
    assert!(connects(&drain(&mut d)).is_empty());
    d.handle_timeout(t0 + 10 * S);
    assert_eq!(connects(&drain(&mut d)), vec![(id(1), false)]);
    dialled(&mut d, t0 + 11 * S, &[1]);
    let asked = requests(&drain(&mut d));
    assert_eq!(
        asked.iter().map(|a| &a.1).collect::<Vec<_>>(),
        [&Request::FindNode { target: LOCAL }]
    );
}

#[test]
fn a_join_keeps_at_most_its_bound_of_contacts() {
    let t0 = Instant::now();
    let mut d = dht(quiet());
    let contacts: Vec<PeerInfo> = (1..=200).map(info).collect();
    d.handle_command(t0, CommandId(1), DhtCommand::Join { contacts });
    let out = drain(&mut d);
    let max = super::join::MAX_JOIN_CONTACTS;
    assert_eq!(replies(&out), vec![DhtReply::Join(max)]);
    let dialled: Vec<NodeId> = connects(&out).into_iter().map(|(id, _)| id).collect();
    // id(0x80) is ours, so it is skipped.
    let expected: Vec<NodeId> = (1..=200).map(id).filter(|i| *i != LOCAL).take(max).collect();
    assert_eq!(dialled, expected);
    // An empty list stops the retries.
    d.handle_command(t0, CommandId(2), DhtCommand::Join { contacts: Vec::new() });
    assert_eq!(replies(&drain(&mut d)), vec![DhtReply::Join(0)]);
    assert_eq!(d.next_deadline(), None);
}

#[test]
fn a_settled_start_fills_buckets_to_k_with_verified_entries_and_sends_nothing() {
    let t0 = Instant::now();
    let config = DhtConfig { join_on_first_contact: true, maintenance_interval: 10 * S, ..quiet() };
    let mut d = dht(config);
    // 25 peers of bucket 0 (first bit 0), one of bucket 1, one of bucket 3 (so bucket 2 is
    // empty, as a bucket whose range holds nobody), ourselves, one without an address.
    let mut peers: Vec<PeerInfo> = (1..=25).map(info).collect();
    peers.push(info(0xc0));
    peers.push(info(0x90));
    peers.push(PeerInfo { id: LOCAL, addrs: vec![addr(9)] });
    peers.push(PeerInfo { id: id(0x30), addrs: Vec::new() });
    assert_eq!(d.start_settled(t0, peers), 22);
    let k = d.routing.config().k;
    assert_eq!((d.routing.bucket_entries(0).len(), d.routing.bucket_entries(1).len()), (k, 1));
    assert!(d.routing.iter().all(|e| e.source == Source::Verified));
    // The five over k were dropped, not queued behind a PING.
    assert!(d.routing.replacements(0).is_empty() && d.routing.pending_ping(0).is_none());
    assert!(drain(&mut d).is_empty());
    assert_eq!(d.next_deadline(), Some(t0 + 10 * S), "the maintenance tick is armed");

    // Ticks send nothing until the buckets are due for refresh, counted from the start.
    let refresh = d.routing.config().refresh_interval;
    let mut at = t0;
    while at + 10 * S < t0 + refresh {
        at += 10 * S;
        d.handle_timeout(at);
        assert!(drain(&mut d).is_empty(), "{:?} after the start", at - t0);
    }
    d.handle_timeout(t0 + refresh + 10 * S);
    let asked = requests(&drain(&mut d));
    assert!(asked.iter().any(|(_, r, _)| matches!(r, Request::FindNode { .. })), "{asked:?}");

    // A settled node has joined: a new contact starts no self-lookup.
    dialled(&mut d, t0 + refresh + 11 * S, &[0xc1]);
    let asked = requests(&drain(&mut d));
    assert!(asked.iter().all(|(_, r, _)| *r != Request::FindNode { target: LOCAL }), "{asked:?}");
    assert_eq!(d.routing.bucket_entries(1).len(), 2);
}
