//! The seam between the router and its protocols: a second protocol, written here and nowhere
//! else, is hosted beside Kademlia without a line of kad's code or the router's changing. It
//! echoes gossip frames, pings each new peer, checks a record on a worker, and drops a peer
//! that unsubscribes: every verb of the contract, through the router's one input type.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{CommandId, ConnId, CoreConfig, Event, Input, NodeCore, Output, Reply};
use crate::core::protocols::AddError;
use crate::identity::{Keypair, NodeId};
use crate::kad::dht::{DhtCommand, DhtConfig, DhtReply};
use crate::protocol::{
    Action, Job, JobKey, JobResult, Kind, Peer, Protocol, ProtocolId, RequestFailure, RequestKey,
};
use crate::wire::messages::{
    GoodbyeReason, Gossip, Hello, Message, MutableRecord, PeerInfo, Request, Response, FEATURE_KAD,
    PROTOCOL_VERSION,
};

/// What the echo protocol heard, for the test to read.
type Log = Arc<Mutex<Vec<String>>>;

/// A trivial protocol on the spare `Gossip` kind.
struct Echo {
    log: Log,
    out: Vec<Action<Infallible, Infallible>>,
    /// Connected to ahead of any request when a peer GRAFTs.
    ahead: Vec<PeerInfo>,
}

impl Echo {
    fn note(&self, line: String) {
        self.log.lock().expect("the test holds the lock only to read").push(line);
    }
}

impl Protocol for Echo {
    type Reply = Infallible;
    type Event = Infallible;

    fn kinds(&self) -> &'static [Kind] {
        &[Kind::Gossip]
    }

    fn handle_peer_up(&mut self, _now: Instant, peer: &Peer<'_>) {
        self.note(format!("up {}", peer.id));
        let to = PeerInfo { id: peer.id, addrs: Vec::new() };
        self.out.push(Action::Request { to, request: Request::Ping, key: RequestKey(7) });
    }

    fn handle_peer_down(&mut self, _now: Instant, peer: NodeId) {
        self.note(format!("down {peer}"));
    }

    fn handle_handshake_rtt(&mut self, _now: Instant, peer: NodeId, rtt: Duration) {
        self.note(format!("handshake {peer} {rtt:?}"));
    }

    fn handle_outcome(
        &mut self,
        _now: Instant,
        key: RequestKey,
        to: PeerInfo,
        _via: Option<std::net::SocketAddr>,
        _rtt: Option<Duration>,
        result: Result<Response, RequestFailure>,
    ) {
        let ok = matches!(result, Ok(Response::Pong { .. }));
        self.note(format!("outcome {} {} pong={ok}", key.0, to.id));
    }

    fn handle_gossip(&mut self, _now: Instant, from: &Peer<'_>, msg: Gossip) {
        match msg {
            Gossip::Unsubscribe { .. } => {
                let reason = GoodbyeReason::LowScore;
                self.out.push(Action::Disconnect { peer: from.id, reason });
            }
            Gossip::Publish(m) => {
                let record =
                    MutableRecord::sign(&Keypair::from_seed([3; 32]), vec![], 1, m.topic.into());
                let job = Job::VerifyRecord(Box::new(record));
                self.out.push(Action::Job { key: JobKey(42), job });
            }
            Gossip::Graft { .. } => {
                self.out.extend(
                    self.ahead.iter().map(|to| Action::Connect { to: to.clone(), ahead: true }),
                );
            }
            other => self.out.push(Action::Send { to: from.id, msg: other }),
        }
    }

    fn handle_job_done(&mut self, _now: Instant, key: JobKey, result: Option<JobResult>) {
        self.note(format!("job {} {result:?}", key.0));
    }

    fn handle_timeout(&mut self, _now: Instant) {}

    fn poll_output(&mut self) -> Option<Action<Infallible, Infallible>> {
        (!self.out.is_empty()).then(|| self.out.remove(0))
    }

    fn next_deadline(&self) -> Option<Instant> {
        None
    }
}

const LOCAL: NodeId = NodeId::from_bytes([0x10; 32]);
const PEER: NodeId = NodeId::from_bytes([0x20; 32]);

fn core_with_echo() -> (NodeCore, Log) {
    core_with_echo_ahead(CoreConfig::default(), Vec::new())
}

fn core_with_echo_ahead(config: CoreConfig, ahead: Vec<PeerInfo>) -> (NodeCore, Log) {
    // Kad stays quiet (no join, no tick), so every output is the echo's or the router's.
    let dht = DhtConfig {
        maintenance_interval: Duration::ZERO,
        join_on_first_contact: false,
        ..DhtConfig::default()
    };
    let mut core = NodeCore::new(LOCAL, CoreConfig { dht, gossip: None, ..config });
    let log = Log::default();
    let id = core.add_protocol(Echo { log: log.clone(), out: Vec::new(), ahead });
    assert_eq!(id, Ok(ProtocolId(2)));
    (core, log)
}

fn handle(core: &mut NodeCore, now: Instant, input: Input) -> Vec<Output> {
    core.handle(now, input);
    std::iter::from_fn(|| core.poll_output()).collect()
}

fn lines(log: &Log) -> Vec<String> {
    std::mem::take(&mut *log.lock().expect("no protocol call is running"))
}

/// An inbound DHT server peer, established.
fn connect(core: &mut NodeCore, now: Instant) -> (ConnId, Vec<Output>) {
    let conn = ConnId::inbound(1);
    let addr = SocketAddr::from(([192, 0, 2, 1], 4000));
    assert!(handle(core, now, Input::Accepted { conn, addr }).is_empty());
    (conn, handle(core, now, Input::Established { conn, peer: PEER, hello: server_hello(addr) }))
}

/// The Hello of a DHT server listening at `addr`.
fn server_hello(addr: SocketAddr) -> Arc<Hello> {
    Arc::new(Hello {
        version: PROTOCOL_VERSION,
        network: String::new(),
        id_pow_bits: 0,
        features: FEATURE_KAD,
        agent: String::new(),
        listen_addrs: vec![addr],
    })
}

#[test]
fn a_protocol_cannot_take_a_kind_another_serves() {
    let (mut core, _) = core_with_echo();
    let log = Log::default();
    let again = core.add_protocol(Echo { log, out: Vec::new(), ahead: Vec::new() });
    assert_eq!(again, Err(AddError::KindTaken(Kind::Gossip)));
}

#[test]
fn a_second_protocol_is_hosted_beside_kad_through_every_verb() {
    let t0 = Instant::now();
    let (mut core, log) = core_with_echo();

    // Peer up reaches both protocols: kad adds the peer and dials back its claimed address,
    // the echo pings it.
    let (conn, out) = connect(&mut core, t0);
    assert_eq!(lines(&log), vec![format!("up {PEER}")]);
    let [Output::Event(Event::PeerConnected { peer: PEER, .. }), Output::Dial { peer: PEER, probe: true, .. }, Output::Send { conn: c, msg }] =
        &out[..]
    else {
        panic!("{out:?}")
    };
    let Message::Request { id: ping_id, body: Request::Ping } = msg else { panic!("{msg:?}") };
    assert_eq!(*c, conn);

    // The response is matched to the echo's request, by its key.
    let observed = SocketAddr::from(([192, 0, 2, 9], 1));
    let pong = Message::Response { id: *ping_id, body: Response::Pong { observed } };
    assert!(handle(&mut core, t0, Input::Frame { conn, msg: pong }).is_empty());
    assert_eq!(lines(&log), vec![format!("outcome 7 {PEER} pong=true")]);

    // Gossip frames are routed to the echo by kind; it answers on the same connection.
    let ihave = Gossip::IHave { topic: "t".into(), ids: Vec::new() };
    let out = handle(&mut core, t0, Input::Frame { conn, msg: Message::Gossip(ihave.clone()) });
    assert!(
        matches!(&out[..], [Output::Send { conn: c, msg: Message::Gossip(g) }]
        if *c == conn && *g == ihave),
        "{out:?}"
    );
    assert_eq!(core.stats().gossip_dropped, 0);

    // A job the echo asks for carries it as owner; its result goes back to it, not to kad.
    let publish = Gossip::Publish(crate::wire::messages::GossipMessage::sign(
        &Keypair::from_seed([4; 32]),
        1,
        "topic".into(),
        b"x".to_vec(),
    ));
    let out = handle(&mut core, t0, Input::Frame { conn, msg: Message::Gossip(publish) });
    let [Output::Job { id, job }] = &out[..] else { panic!("{out:?}") };
    assert_eq!((id.owner, id.key), (ProtocolId(2), JobKey(42)));
    let result = crate::protocol::jobs::run(job.clone(), None);
    assert!(handle(&mut core, t0, Input::JobDone { id: *id, result }).is_empty());
    assert_eq!(lines(&log), vec!["job 42 Some(RecordVerified(true))".to_string()]);

    // Kad still serves its kinds on the same core.
    let find = Request::FindNode { target: PEER };
    let out =
        handle(&mut core, t0, Input::Frame { conn, msg: Message::Request { id: 5, body: find } });
    assert!(
        matches!(
            &out[..],
            [Output::Send { msg: Message::Response { id: 5, body: Response::Nodes { .. } }, .. }]
        ),
        "{out:?}"
    );
    let cmd = super::Command::Dht(DhtCommand::Holds { key: PEER });
    let out = handle(&mut core, t0, Input::Command { id: CommandId(1), cmd });
    assert!(matches!(&out[..], [Output::Reply { reply: Reply::Dht(DhtReply::Holds(false)), .. }]));

    // The echo drops a peer that unsubscribes: the router closes it, and both protocols
    // hear it went down.
    let unsubscribe = Gossip::Unsubscribe { topic: "t".into() };
    let out = handle(&mut core, t0, Input::Frame { conn, msg: Message::Gossip(unsubscribe) });
    assert!(out.contains(&Output::Disconnect { conn, reason: GoodbyeReason::LowScore }), "{out:?}");
    assert!(out.contains(&Output::Event(Event::PeerDisconnected { peer: PEER })), "{out:?}");
    assert_eq!(lines(&log), vec![format!("down {PEER}")]);
    assert_eq!(core.connected_peers().count(), 0);
}

#[test]
fn connecting_ahead_dials_once_and_never_closes_a_connection_to_make_room() {
    let t0 = Instant::now();
    let at = |n: u8| SocketAddr::from(([198, 51, 100, n], 4000));
    let info = |n: u8| PeerInfo { id: NodeId::from_bytes([n; 32]), addrs: vec![at(n)] };
    let no_addr = PeerInfo { id: NodeId::from_bytes([9; 32]), addrs: Vec::new() };
    // B and C are dialled; B again (being dialled), PEER (connected) and a peer named with
    // no address are not; D finds only the slots kept for requests free (`AHEAD_RESERVE`).
    let ahead = vec![
        info(0xb),
        info(0xc),
        info(0xb),
        PeerInfo { id: PEER, addrs: vec![at(1)] },
        no_addr,
        info(0xd),
    ];
    let max_outbound = super::conns::AHEAD_RESERVE + 2;
    let limits = crate::core::PeerLimits { max_outbound, ..crate::core::PeerLimits::DEFAULT };
    let (mut core, _) = core_with_echo_ahead(CoreConfig { limits, ..CoreConfig::default() }, ahead);
    let (conn, _) = connect(&mut core, t0);
    let graft = Message::Gossip(Gossip::Graft { topic: "t".into() });
    let out = handle(&mut core, t0, Input::Frame { conn, msg: graft.clone() });
    let dialled: Vec<_> = out
        .iter()
        .map(|o| match o {
            Output::Dial { conn, peer, addr, probe: false } => (*conn, *peer, *addr),
            other => panic!("only dials, got {other:?}"),
        })
        .collect();
    let [(b, peer_b, addr_b), (_, peer_c, addr_c)] = dialled[..] else { panic!("{dialled:?}") };
    assert_eq!(
        [(peer_b, addr_b), (peer_c, addr_c)],
        [(info(0xb).id, at(0xb)), (info(0xc).id, at(0xc))]
    );
    assert_eq!((core.stats().preconnects, core.stats().preconnects_refused), (2, 1));

    // B's dial completes and sits idle: a request's dial would close it to make room, a
    // guess does not.
    let hello = server_hello(at(0xb));
    handle(&mut core, t0, Input::Established { conn: b, peer: info(0xb).id, hello });
    let out = handle(&mut core, t0 + Duration::from_secs(60), Input::Frame { conn, msg: graft });
    assert!(
        !out.iter().any(|o| matches!(o, Output::Disconnect { .. } | Output::Dial { .. })),
        "{out:?}"
    );
    assert_eq!((core.stats().preconnects, core.stats().preconnects_refused), (2, 2));
    assert_eq!(core.stats().connections_pruned, 0);
}

#[test]
fn a_join_contact_is_dialled_and_kept_like_any_connection_not_as_a_guess() {
    let t0 = Instant::now();
    let (mut core, _) = core_with_echo();
    let at = SocketAddr::from(([198, 51, 100, 14], 4000));
    let contact = PeerInfo { id: NodeId::from_bytes([0xe; 32]), addrs: vec![at] };
    let cmd = super::Command::Dht(DhtCommand::Join { contacts: vec![contact.clone()] });
    let out = handle(&mut core, t0, Input::Command { id: CommandId(1), cmd });
    let dial = out.iter().find_map(|o| match o {
        Output::Dial { conn, peer, addr, probe: false } => Some((*conn, *peer, *addr)),
        _ => None,
    });
    let Some((conn, peer, addr)) = dial else { panic!("{out:?}") };
    assert_eq!((peer, addr), (contact.id, at));
    assert!(out
        .iter()
        .any(|o| matches!(o, Output::Reply { reply: Reply::Dht(DhtReply::Join(1)), .. })));
    // Not counted as a guess, and not closed after ten quiet seconds as one would be.
    assert_eq!((core.stats().preconnects, core.stats().preconnects_refused), (0, 0));
    handle(&mut core, t0, Input::Established { conn, peer, hello: server_hello(at) });
    core.handle_timeout(t0 + Duration::from_secs(30));
    let out: Vec<Output> = std::iter::from_fn(|| core.poll_output()).collect();
    assert!(!out.iter().any(|o| matches!(o, Output::Disconnect { .. })), "{out:?}");
    assert_eq!(core.connected_peers().collect::<Vec<_>>(), vec![contact.id]);
}

#[test]
fn a_dial_reports_its_handshake_as_a_round_trip_to_every_protocol_and_nothing_else_does() {
    let t0 = Instant::now();
    let ms = Duration::from_millis(1);
    let (mut core, log) = core_with_echo();
    // Nothing measured: the DHT knows no round trip.
    assert_eq!(core.dht().stats().quality.mean_srtt_us, 0);
    let at = SocketAddr::from(([198, 51, 100, 14], 4000));
    let contact = PeerInfo { id: NodeId::from_bytes([0xe; 32]), addrs: vec![at] };
    let cmd = super::Command::Dht(DhtCommand::Join { contacts: vec![contact.clone()] });
    let out = handle(&mut core, t0, Input::Command { id: CommandId(1), cmd });
    let Some(conn) = out.iter().find_map(|o| match o {
        Output::Dial { conn, probe: false, .. } => Some(*conn),
        _ => None,
    }) else {
        panic!("{out:?}")
    };
    // Another key on the dial is no measure of anything.
    handle(&mut core, t0 + 12 * ms, Input::Authenticated { conn, peer: PEER });
    assert_eq!(lines(&log), Vec::<String>::new());
    // TCP and TLS took 12 ms: two round trips of 6.
    handle(&mut core, t0 + 12 * ms, Input::Authenticated { conn, peer: contact.id });
    assert_eq!(lines(&log), vec![format!("handshake {} 6ms", contact.id)]);
    let quality = core.dht().stats().quality;
    assert_eq!((quality.mean_srtt_us, quality.handshakes, quality.samples), (6_000, 1, 0));
    // A connection the peer opened measures nothing: we never saw its handshake start.
    let inbound = ConnId::inbound(9);
    handle(&mut core, t0, Input::Accepted { conn: inbound, addr: at });
    handle(&mut core, t0 + ms, Input::Authenticated { conn: inbound, peer: PEER });
    assert_eq!(lines(&log), Vec::<String>::new());
    assert_eq!(core.dht().stats().quality.handshakes, 1);
}
