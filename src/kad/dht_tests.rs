//! Unit tests of [`Dht`](super::dht::Dht) on its own, through the protocol verbs: no router,
//! no connections. The test plays the router: it reads the `Action`s, answers requests with
//! outcomes under the `RequestKey`s the DHT chose, and drives time by hand.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::dht::{Dht, DhtAction, DhtCommand, DhtConfig, DhtError, DhtReply};
use crate::identity::{Keypair, NodeId};
use crate::protocol::{
    Action, CommandId, Direction, Job, JobResult, Peer, Protocol, ReplyTicket, RequestFailure,
    RequestKey,
};
use crate::wire::messages::{
    ErrorCode, Hello, MutableRecord, PeerInfo, Record, Request, Response, FEATURE_KAD,
    PROTOCOL_VERSION,
};

const LOCAL: NodeId = NodeId::from_bytes([0x80; 32]);
const S: Duration = Duration::from_secs(1);

/// A DHT with no join and no maintenance tick unless a test turns them on.
fn dht(config: DhtConfig) -> Dht {
    Dht::new(LOCAL, config)
}

fn quiet() -> DhtConfig {
    DhtConfig {
        join_on_first_contact: false,
        maintenance_interval: Duration::ZERO,
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
            d.handle_outcome(now, key, to.clone(), answer(&to, &request));
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
    d.handle_outcome(slow, key, to.clone(), Ok(Response::Nodes { closer: Vec::new() }));
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
    let [Action::Job { key, job: job @ Job::VerifyRecord(_) }] = &out[..] else {
        panic!("{out:?}")
    };
    let result = crate::protocol::jobs::run(job.clone());
    assert_eq!(result, JobResult::RecordVerified(true));
    d.handle_job_done(t0, *key, Some(result));
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
    // Ticks before the interval republish nothing (the first one replicates the record to
    // the newly learned peer 1); the one at or after it starts the republish lookup.
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
            d.handle_outcome(tick, key, to, Ok(Response::Stored));
        }
        tick = d.next_deadline().expect("the tick re-arms");
    }
    let at = published_again.expect("republished within 70 s");
    assert!(at >= t0 + 60 * S && at < t0 + 70 * S, "republished at {:?}", at - t0);
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
