//! Tests of the [`Sim`] driver: real `NodeCore`s on the virtual network. Times are exact
//! multiples of the configured latency, never sleeps.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::*;
use crate::core::{ConnectError, CoreConfig, PingInfo, RequestError};
use crate::core::{Direction, PeerLimits};
use crate::kad::dht::DhtConfig;
use crate::wire::messages::Request;

const MS: Duration = Duration::from_millis(1);
const L: Duration = Duration::from_millis(20);
/// When a dial completes at the dialer: 6 L, three round trips (TCP, TLS, the Hellos).
const CONNECTED: Duration = Duration::from_millis(6 * 20);

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn config(seed: u64) -> SimConfig {
    SimConfig { latency: LatencyModel::Fixed(L), ..SimConfig::new(seed) }
}

fn core_config(seed: u64) -> CoreConfig {
    CoreConfig {
        limits: PeerLimits::DEFAULT,
        request_timeout: secs(10),
        max_pending_requests: 64,
        max_waiting_commands: 64,
        rng_seed: seed,
        // These tests exercise the network model: no DHT join or maintenance traffic.
        dht: DhtConfig {
            join_on_first_contact: false,
            maintenance_interval: Duration::ZERO,
            ..DhtConfig::default()
        },
        ..CoreConfig::default()
    }
}

fn id_of(n: u64) -> NodeId {
    NodeId::from_bytes(Rng::new(n ^ 0x1d).bytes32())
}

/// Adds honest node number `n` (its id and core seed derive from `n`).
fn honest(sim: &mut Sim, n: u64) -> NodeIdx {
    let id = id_of(n);
    sim.add_node(id, NodeCore::new(id, core_config(n)))
}

fn connect(sim: &mut Sim, from: NodeIdx, to: NodeIdx) -> CommandId {
    let (peer, addr) = (sim.node_id(to).unwrap(), sim.addr(to).unwrap());
    sim.command(from, Command::Connect { peer, addr }).unwrap()
}

fn ping(sim: &mut Sim, from: NodeIdx, to: NodeIdx) -> CommandId {
    let peer = sim.node_id(to).unwrap();
    sim.command(from, Command::Ping { peer }).unwrap()
}

/// The one reply `idx` has for `id`.
fn reply(sim: &mut Sim, idx: NodeIdx, id: CommandId) -> Reply {
    let replies = sim.take_replies(idx);
    match replies.iter().filter(|(i, _)| *i == id).collect::<Vec<_>>()[..] {
        [(_, r)] => r.clone(),
        _ => panic!("expected one reply to {id:?} at {idx}, got {replies:?}"),
    }
}

/// Every reply of every node, by command id (unique in a run).
fn all_replies(sim: &mut Sim) -> std::collections::HashMap<CommandId, Reply> {
    (0..sim.len()).flat_map(|i| sim.take_replies(NodeIdx(i))).collect()
}

fn pong_rtt(r: Reply) -> Duration {
    match r {
        Reply::Pong(Ok(PingInfo { rtt, .. })) => rtt,
        other => panic!("expected a pong, got {other:?}"),
    }
}

/// Two connected nodes, 3 RTT after the dial.
fn pair(sim: &mut Sim) -> (NodeIdx, NodeIdx) {
    let (a, b) = (honest(sim, 1), honest(sim, 2));
    let c = connect(sim, a, b);
    sim.run_for(CONNECTED);
    assert_eq!(reply(sim, a, c), Reply::Connected(Ok(sim.node_id(b).unwrap())));
    (a, b)
}

// ---- Connections and messages ----

#[test]
fn two_nodes_connect_in_three_rtt_and_ping_in_one_rtt() {
    let mut sim = Sim::new(config(1));
    let (a, b) = (honest(&mut sim, 1), honest(&mut sim, 2));
    let c = connect(&mut sim, a, b);
    let (id_a, id_b) = (sim.node_id(a).unwrap(), sim.node_id(b).unwrap());
    // The acceptor reads the dialer's Hello at 2.5 RTT (TCP, TLS, then the dialer's flight).
    sim.run_until(5 * L - MS);
    assert!(sim.take_events(b).is_empty(), "not before 2.5 RTT");
    sim.run_until(5 * L);
    let inbound = Event::PeerConnected { peer: id_a, direction: Direction::Inbound };
    assert_eq!(sim.take_events(b), vec![inbound]);
    // The dialer reads the acceptor's Hello half a round trip later.
    sim.run_until(CONNECTED - MS);
    assert!(sim.take_replies(a).is_empty(), "not before 3 RTT");
    sim.run_until(CONNECTED);
    assert_eq!(reply(&mut sim, a, c), Reply::Connected(Ok(id_b)));
    let outbound = Event::PeerConnected { peer: id_b, direction: Direction::Outbound };
    assert_eq!(sim.take_events(a), vec![outbound]);

    let p = ping(&mut sim, a, b);
    sim.run_for(2 * L);
    match reply(&mut sim, a, p) {
        Reply::Pong(Ok(info)) => {
            assert_eq!(info, PingInfo { rtt: 2 * L, observed: sim.addr(a).unwrap() })
        }
        other => panic!("unexpected {other:?}"),
    }
    // Two dials: ours, and `b`'s dial-back of the address `a` claims, which is no connection.
    let s = sim.stats();
    assert_eq!((s.dials, s.handshakes, s.messages_sent, s.messages_delivered), (2, 1, 2, 2));
}

#[test]
fn a_request_on_a_fresh_connection_is_answered_three_rtt_after_the_dial_four_without_pipelining() {
    for (pipelining, rtts) in [(true, 3), (false, 4)] {
        let mut sim = Sim::new(SimConfig { pipelining, ..config(25) });
        let (a, b, c) = (honest(&mut sim, 1), honest(&mut sim, 2), honest(&mut sim, 3));
        connect(&mut sim, a, b);
        connect(&mut sim, b, c);
        sim.run_for(secs(1));
        // `a` looks up `c`: `b`, connected, names `c`, whom `a` then dials and asks.
        let target = sim.node_id(c).unwrap();
        let start = sim.elapsed();
        sim.command(a, Command::Dht(crate::kad::dht::DhtCommand::FindNode { target })).unwrap();
        assert!(sim.run_until_cond(secs(5), |s| s.core(a).unwrap().dht().queries_running() == 0));
        assert_eq!(sim.elapsed() - start, 2 * L + rtts * 2 * L, "pipelining {pipelining}");
        let pipelined = sim.core(a).unwrap().stats().requests_pipelined;
        assert_eq!(pipelined, u64::from(pipelining), "pipelining {pipelining}");
    }
}

#[test]
fn the_peer_sees_the_simulated_hello() {
    let mut sim = Sim::new(config(1));
    let (a, b) = pair(&mut sim);
    let c = sim.command(b, Command::Peers).unwrap();
    match reply(&mut sim, b, c) {
        Reply::Peers(peers) => {
            assert_eq!(peers.len(), 1);
            assert_eq!(peers[0].agent, "petrel-sim");
            assert_eq!(peers[0].listen_addrs, vec![sim.addr(a).unwrap()]);
            assert_eq!(peers[0].addr, sim.addr(a).unwrap());
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn uniform_latency_gives_each_link_its_own_rtt() {
    let cfg = SimConfig {
        latency: LatencyModel::Uniform { min: 5 * MS, max: 80 * MS },
        ..SimConfig::new(3)
    };
    let mut sim = Sim::new(cfg);
    let nodes: Vec<NodeIdx> = (0..4).map(|n| honest(&mut sim, n)).collect();
    let mut rtts = Vec::new();
    for &b in &nodes[1..] {
        connect(&mut sim, nodes[0], b);
        sim.run_for(secs(1));
        let p = ping(&mut sim, nodes[0], b);
        sim.run_for(secs(1));
        let rtt = pong_rtt(reply(&mut sim, nodes[0], p));
        assert_eq!(rtt, sim.link_latency(nodes[0], b) + sim.link_latency(b, nodes[0]));
        rtts.push(rtt);
    }
    rtts.dedup();
    assert_eq!(rtts.len(), 3, "links differ: {rtts:?}");
}

#[test]
fn two_hundred_nodes_connect_to_three_earlier_nodes_and_ping_them() {
    let cfg = SimConfig {
        latency: LatencyModel::Uniform { min: 10 * MS, max: 100 * MS },
        ..SimConfig::new(4)
    };
    let mut sim = Sim::new(cfg);
    let mut rng = Rng::new(4);
    let mut plan = Vec::new();
    for n in 0..200u64 {
        let idx = honest(&mut sim, n);
        for j in rng.distinct_below(n as usize, 3) {
            plan.push((idx, NodeIdx(j), connect(&mut sim, idx, NodeIdx(j))));
        }
        sim.run_for(10 * MS);
    }
    sim.run_for(secs(1));
    let replies = all_replies(&mut sim);
    for &(_, to, c) in &plan {
        assert_eq!(replies[&c], Reply::Connected(Ok(sim.node_id(to).unwrap())));
    }
    let pings: Vec<_> =
        plan.iter().map(|&(from, to, _)| (from, to, ping(&mut sim, from, to))).collect();
    sim.run_for(secs(1));
    let replies = all_replies(&mut sim);
    for (from, to, p) in pings {
        let expected = sim.link_latency(from, to) + sim.link_latency(to, from);
        assert_eq!(pong_rtt(replies[&p].clone()), expected);
    }
    assert_eq!(sim.stats().handshakes, plan.len() as u64);
}

#[test]
fn crossing_dials_end_with_one_connection_and_both_connected() {
    let mut sim = Sim::new(config(5));
    let (a, b) = (honest(&mut sim, 1), honest(&mut sim, 2));
    let (ca, cb) = (connect(&mut sim, a, b), connect(&mut sim, b, a));
    sim.run_for(secs(1));
    assert_eq!(reply(&mut sim, a, ca), Reply::Connected(Ok(sim.node_id(b).unwrap())));
    assert_eq!(reply(&mut sim, b, cb), Reply::Connected(Ok(sim.node_id(a).unwrap())));
    assert_eq!(sim.core(a).unwrap().connected_peers().count(), 1);
    let p = ping(&mut sim, b, a);
    sim.run_for(secs(1));
    assert_eq!(pong_rtt(reply(&mut sim, b, p)), 2 * L);
}

#[test]
fn a_wrong_key_fails_the_dial_with_wrong_key() {
    let mut sim = Sim::new(config(6));
    let (a, b) = (honest(&mut sim, 1), honest(&mut sim, 2));
    let imposter = id_of(99);
    let c = sim.command(a, Command::Connect { peer: imposter, addr: sim.addr(b).unwrap() });
    // Found out when the acceptor's TLS flight arrives: 2 RTT.
    sim.run_for(4 * L);
    assert_eq!(reply(&mut sim, a, c.unwrap()), Reply::Connected(Err(ConnectError::WrongKey)));
    sim.run_for(L);
    let s = sim.stats();
    assert_eq!((s.dials_wrong_key, s.handshakes, s.closes), (1, 0, 2));
    assert_eq!(sim.core(b).unwrap().connected_peers().count(), 0);
    assert!(sim.run_until_idle(secs(10)), "only stale timers were left");
}

#[test]
fn an_unknown_address_fails_after_one_rtt() {
    let mut sim = Sim::new(config(7));
    let a = honest(&mut sim, 1);
    let nowhere = SocketAddr::from(([192, 0, 2, 1], 4000));
    let c = sim.command(a, Command::Connect { peer: id_of(5), addr: nowhere }).unwrap();
    sim.run_until(2 * L - MS);
    assert!(sim.take_replies(a).is_empty());
    sim.run_until(2 * L);
    assert_eq!(reply(&mut sim, a, c), Reply::Connected(Err(ConnectError::Failed("tcp_failed"))));
    assert_eq!(sim.stats().dials_failed, 1);
}

// ---- Loss and partitions ----

#[test]
fn total_loss_times_pings_out() {
    let mut sim = Sim::new(SimConfig { loss: 1.0, ..config(8) });
    let (a, b) = pair(&mut sim);
    let p = ping(&mut sim, a, b);
    sim.run_for(secs(10) - MS);
    assert!(sim.take_replies(a).is_empty());
    sim.run_for(MS);
    assert_eq!(reply(&mut sim, a, p), Reply::Pong(Err(RequestError::Timeout)));
    assert_eq!(sim.stats().messages_lost, 1);
}

#[test]
fn partial_loss_loses_about_its_share() {
    let mut sim = Sim::new(SimConfig { loss: 0.25, ..config(9) });
    let (a, b) = pair(&mut sim);
    for _ in 0..400 {
        ping(&mut sim, a, b);
        sim.run_for(MS);
    }
    sim.run_for(secs(11));
    let s = sim.stats();
    let share = s.messages_lost as f64 / s.messages_sent as f64;
    assert!((0.2..0.3).contains(&share), "lost {share}");
}

#[test]
fn a_partition_blocks_pings_and_after_heal_a_new_connection_works() {
    let mut sim = Sim::new(config(10));
    let (a, b) = pair(&mut sim);
    sim.partition(vec![vec![a]]);
    assert!(sim.is_partitioned(a, b));
    let p = ping(&mut sim, a, b);
    sim.run_for(secs(10));
    assert_eq!(reply(&mut sim, a, p), Reply::Pong(Err(RequestError::Timeout)));
    // The idle timeout closes the silent connection on both sides.
    sim.run_for(secs(60));
    assert_eq!(sim.core(a).unwrap().connected_peers().count(), 0);
    assert_eq!(sim.core(b).unwrap().connected_peers().count(), 0);
    // A dial across the partition never completes: the connect timeout answers.
    let c = connect(&mut sim, a, b);
    sim.run_for(secs(5));
    assert_eq!(reply(&mut sim, a, c), Reply::Connected(Err(ConnectError::Timeout)));
    sim.heal();
    sim.run_for(secs(60)); // past the dial backoff
    let dials = sim.stats().dials;
    let c = connect(&mut sim, a, b);
    sim.run_for(CONNECTED);
    assert_eq!(reply(&mut sim, a, c), Reply::Connected(Ok(sim.node_id(b).unwrap())));
    // Ours, and `b`'s dial-back of the address `a` claims.
    assert_eq!(sim.stats().dials, dials + 2);
    let p = ping(&mut sim, a, b);
    sim.run_for(2 * L);
    assert_eq!(pong_rtt(reply(&mut sim, a, p)), 2 * L);
    assert!(sim.stats().messages_partitioned >= 1);
}

#[test]
fn messages_in_flight_when_a_partition_starts_are_dropped() {
    let mut sim = Sim::new(config(11));
    let (a, b) = pair(&mut sim);
    let p = ping(&mut sim, a, b);
    sim.run_for(L / 2);
    sim.partition(vec![vec![b]]);
    sim.run_for(L);
    sim.heal();
    sim.run_for(secs(10));
    assert_eq!(reply(&mut sim, a, p), Reply::Pong(Err(RequestError::Timeout)));
    assert_eq!(sim.stats().messages_partitioned, 1);
}

// ---- Churn ----

#[test]
fn kill_tells_peers_after_the_latency_and_revive_accepts_new_connections() {
    let mut sim = Sim::new(config(12));
    let (a, b) = pair(&mut sim);
    sim.take_events(a);
    sim.kill(b).unwrap();
    assert!(!sim.is_alive(b));
    assert_eq!(sim.command(b, Command::Peers), Err(SimError::Dead(b)));
    sim.run_for(L - MS);
    assert!(sim.take_events(a).is_empty());
    sim.run_for(MS);
    let gone = Event::PeerDisconnected { peer: sim.node_id(b).unwrap() };
    assert_eq!(sim.take_events(a), vec![gone]);
    // A dead node refuses dials with TcpFailed after one RTT.
    sim.run_for(secs(2));
    let c = connect(&mut sim, a, b);
    sim.run_for(2 * L);
    assert_eq!(reply(&mut sim, a, c), Reply::Connected(Err(ConnectError::Failed("tcp_failed"))));

    sim.revive(b).unwrap();
    assert_eq!(sim.core(b).unwrap().connected_peers().count(), 0, "revival drops old links");
    sim.run_for(secs(10)); // past the backoff
    let c = connect(&mut sim, a, b);
    sim.run_for(CONNECTED);
    assert_eq!(reply(&mut sim, a, c), Reply::Connected(Ok(sim.node_id(b).unwrap())));
    let p = ping(&mut sim, b, a);
    sim.run_for(2 * L);
    assert_eq!(pong_rtt(reply(&mut sim, b, p)), 2 * L);
}

#[test]
fn replace_core_restarts_a_node_with_its_address() {
    let mut sim = Sim::new(config(13));
    let (a, b) = pair(&mut sim);
    let id = sim.node_id(b).unwrap();
    let old = sim.replace_core(b, NodeCore::new(id, core_config(77))).unwrap();
    assert!(old.is_some_and(|c| c.connected_peers().count() == 1));
    sim.run_for(L);
    assert_eq!(sim.core(a).unwrap().connected_peers().count(), 0);
    sim.run_for(secs(2));
    let c = connect(&mut sim, a, b);
    sim.run_for(CONNECTED);
    assert_eq!(reply(&mut sim, a, c), Reply::Connected(Ok(id)));
}

#[test]
fn disconnect_closes_locally_at_once_and_remotely_after_the_latency() {
    let mut sim = Sim::new(config(14));
    // `a` idles out after 120 s, `b` after 60 s: `b` closes, `a` hears it.
    let limits = PeerLimits { idle_timeout: secs(120), ..PeerLimits::DEFAULT };
    let a =
        sim.add_node(id_of(1), NodeCore::new(id_of(1), CoreConfig { limits, ..core_config(1) }));
    let b = honest(&mut sim, 2);
    connect(&mut sim, a, b);
    sim.run_for(CONNECTED);
    sim.take_events(a);
    sim.take_events(b);
    let (id_a, id_b) = (sim.node_id(a).unwrap(), sim.node_id(b).unwrap());
    // `b` was established at 5 L.
    sim.run_until(5 * L + secs(60));
    assert_eq!(sim.take_events(b), vec![Event::PeerDisconnected { peer: id_a }]);
    assert!(sim.take_events(a).is_empty());
    sim.run_until(6 * L + secs(60) - MS);
    assert!(sim.take_events(a).is_empty());
    sim.run_until(6 * L + secs(60));
    assert_eq!(sim.take_events(a), vec![Event::PeerDisconnected { peer: id_b }]);
    // Both ends of the connection, and both of `b`'s dial-back of `a`.
    let s = sim.stats();
    assert_eq!((s.closes, s.outputs_unknown_conn), (4, 0));
}

#[test]
fn a_node_turned_away_by_its_only_contact_joins_once_a_slot_frees() {
    use crate::kad::dht::{DhtCommand, DhtReply};
    use crate::wire::messages::PeerInfo;
    let mut sim = Sim::new(config(14));
    // The contact has one inbound slot, taken by a peer that then stays quiet.
    let one_slot = PeerLimits { max_inbound: 1, ..PeerLimits::DEFAULT };
    let contact_id = id_of(1);
    let contact = sim.add_node(
        contact_id,
        NodeCore::new(contact_id, CoreConfig { limits: one_slot, ..core_config(1) }),
    );
    let quiet = honest(&mut sim, 2);
    connect(&mut sim, quiet, contact);
    sim.run_for(CONNECTED);
    let joiner_id = id_of(3);
    let dht = DhtConfig { local_network: true, ..DhtConfig::default() };
    let joiner =
        sim.add_node(joiner_id, NodeCore::new(joiner_id, CoreConfig { dht, ..core_config(3) }));
    let to = PeerInfo { id: contact_id, addrs: vec![sim.addr(contact).unwrap()] };
    let join = sim.command(joiner, Command::Dht(DhtCommand::Join { contacts: vec![to] })).unwrap();
    sim.run_for(secs(1));
    assert_eq!(reply(&mut sim, joiner, join), Reply::Dht(DhtReply::Join(1)));
    let table = |sim: &Sim| sim.core(joiner).unwrap().dht().routing().len();
    assert_eq!(table(&sim), 0, "the contact's only slot is taken");

    // The quiet peer's connection is idle long enough to give way (`inbound_prune_idle`, 30 s)
    // and the joiner, dialling again with growing delays, takes its place.
    assert!(sim.run_until_cond(secs(120), |sim| table(sim) == 1));
    let stats = sim.core(joiner).unwrap().dht().stats();
    assert!(stats.rejoins >= 3, "{stats:?}");
    assert!(sim.elapsed() >= secs(30), "not before the slot could free: {:?}", sim.elapsed());
    assert!(sim.core(joiner).unwrap().connected_peers().any(|p| p == contact_id));
}

// ---- Adversaries ----

#[test]
fn a_silent_adversary_accepts_and_never_answers() {
    let mut sim = Sim::new(config(15));
    let a = honest(&mut sim, 1);
    let s = sim.add_adversary(id_of(2), NodeKind::Silent);
    assert_eq!(sim.kind(s), Some(NodeKind::Silent));
    assert_eq!(sim.command(s, Command::Peers), Err(SimError::NotHonest(s)));
    let c = connect(&mut sim, a, s);
    sim.run_for(CONNECTED);
    assert_eq!(reply(&mut sim, a, c), Reply::Connected(Ok(id_of(2))));
    let p = ping(&mut sim, a, s);
    sim.run_for(secs(10));
    assert_eq!(reply(&mut sim, a, p), Reply::Pong(Err(RequestError::Timeout)));
    assert_eq!(sim.stats().adversary_ignored, 1);
}

#[test]
fn a_fabricating_adversary_answers_ping_and_raw_find_node() {
    let mut sim = Sim::new(config(16));
    let a = honest(&mut sim, 1);
    let f = sim.add_adversary(id_of(2), NodeKind::FabricateCloser);
    connect(&mut sim, a, f);
    sim.run_for(CONNECTED);
    let p = ping(&mut sim, a, f);
    sim.run_for(2 * L);
    assert_eq!(pong_rtt(reply(&mut sim, a, p)), 2 * L);
    // A raw FindNode, as the Kademlia layer will send it; the core does not expect the answer.
    let (link, side) = *sim.nodes[a.0].conns.values().next().unwrap();
    let target = id_of(3);
    sim.send(link, side, Message::Request { id: 900, body: Request::FindNode { target } });
    sim.run_for(2 * L);
    assert_eq!(sim.stats().adversary_answered, 2);
    assert_eq!(sim.core(a).unwrap().stats().responses_unmatched, 1);
}

#[test]
fn a_flood_adversary_connects_to_honest_nodes_and_sends_at_its_rate() {
    let mut sim = Sim::new(config(17));
    let honest_nodes: Vec<NodeIdx> = (0..5).map(|n| honest(&mut sim, n)).collect();
    sim.add_adversary(id_of(50), NodeKind::Flood { requests_per_sec: 100 });
    sim.run_for(secs(1));
    let s = sim.stats();
    assert!(s.dials >= 3, "{s:?}");
    // One per 10 ms tick from the first connection at 100 ms (the acceptor reads the flood's
    // Hello at 5 L) to 1 s.
    assert_eq!(s.flood_requests_sent, 91, "{s:?}");
    let served: u64 =
        honest_nodes.iter().map(|&n| sim.core(n).unwrap().dht().stats().requests_served).sum();
    // The requests of the last latency are still in flight.
    assert_eq!(served, s.flood_requests_sent - 2);
}

#[test]
fn a_killed_flood_stops_and_a_revived_one_resumes_at_its_rate() {
    let mut sim = Sim::new(config(22));
    for n in 0..3 {
        honest(&mut sim, n);
    }
    let f = sim.add_adversary(id_of(60), NodeKind::Flood { requests_per_sec: 10 });
    sim.run_for(secs(1));
    let before = sim.stats().flood_requests_sent;
    sim.kill(f).unwrap();
    sim.run_for(secs(5));
    assert_eq!(sim.stats().flood_requests_sent, before);
    sim.revive(f).unwrap();
    sim.revive(f).unwrap(); // twice: still one tick chain
    sim.run_for(secs(1));
    // Ticks every 100 ms from revival: the first ones find no link yet.
    assert_eq!(sim.stats().flood_requests_sent, before + 9);
}

// ---- Bounds and API errors ----

#[test]
fn a_full_event_queue_drops_dials_which_then_time_out() {
    let mut sim = Sim::new(SimConfig { max_queued_events: 0, ..config(18) });
    let (a, b) = (honest(&mut sim, 1), honest(&mut sim, 2));
    let c = connect(&mut sim, a, b);
    sim.run_for(secs(5));
    assert_eq!(reply(&mut sim, a, c), Reply::Connected(Err(ConnectError::Timeout)));
    assert_eq!(sim.stats().queue_full_drops, 1);
}

#[test]
fn collected_replies_keep_the_newest_and_count_the_dropped() {
    let mut sim = Sim::new(SimConfig { max_collected: 2, ..config(19) });
    let a = honest(&mut sim, 1);
    let ids: Vec<CommandId> = (0..5).map(|_| sim.command(a, Command::Peers).unwrap()).collect();
    let kept: Vec<CommandId> = sim.take_replies(a).into_iter().map(|(id, _)| id).collect();
    assert_eq!(kept, ids[3..].to_vec());
    assert_eq!(sim.stats().replies_dropped, 3);
    assert!(sim.take_replies(a).is_empty());
}

#[test]
fn a_link_stays_small() {
    // Every open connection of a run has one: 100,000 nodes keep millions.
    assert!(std::mem::size_of::<links::Link>() <= 104, "{}", std::mem::size_of::<links::Link>());
    // The expected id moved to the dial's events, which a delivery's message outweighs.
    let deliver = std::mem::size_of::<(LinkId, Side, Message)>();
    assert!(std::mem::size_of::<SimEvent>() <= deliver + 8, "{}", std::mem::size_of::<SimEvent>());
}

#[test]
fn events_are_capped_apart_from_replies_and_zero_keeps_none() {
    // Two nodes connecting: each core reports PeerConnected; the dialer also gets a reply.
    for (max_events, kept) in [(1024, 1), (0, 0)] {
        let mut sim = Sim::new(SimConfig { max_events, ..config(24) });
        let (a, b) = (honest(&mut sim, 1), honest(&mut sim, 2));
        let c = connect(&mut sim, a, b);
        sim.run_for(secs(1));
        assert!(matches!(reply(&mut sim, a, c), Reply::Connected(Ok(_))), "replies stay");
        let events = sim.take_events(a).len() + sim.take_events(b).len();
        assert_eq!(events, 2 * kept, "max_events {max_events}");
        assert_eq!(sim.stats().node_events_dropped, 2 - 2 * kept as u64);
    }
}

#[test]
fn run_until_cond_stops_at_the_condition_or_the_bound() {
    let mut sim = Sim::new(config(23));
    let (a, b) = (honest(&mut sim, 1), honest(&mut sim, 2));
    connect(&mut sim, a, b);
    assert!(sim.run_until_cond(secs(1), |s| s.core(b).unwrap().connected_peers().count() == 1));
    assert_eq!(sim.elapsed(), 5 * L, "the acceptor reads the dialer's Hello at 2.5 RTT");
    assert!(!sim.run_until_cond(secs(2), |_| false));
    assert_eq!(sim.elapsed(), secs(2));
    assert!(!sim.run_until_idle(secs(3)), "idle timers stay queued");
    assert_eq!(sim.elapsed(), secs(3));
}

#[test]
fn unknown_nodes_are_typed_errors() {
    let mut sim = Sim::new(config(20));
    let ghost = NodeIdx(3);
    assert_eq!(sim.command(ghost, Command::Peers), Err(SimError::UnknownNode(ghost)));
    assert_eq!(sim.kill(ghost), Err(SimError::UnknownNode(ghost)));
    assert_eq!(sim.revive(ghost), Err(SimError::UnknownNode(ghost)));
    assert!(sim.take_replies(ghost).is_empty());
    assert_eq!(sim.addr(ghost), None);
    assert_eq!(SimError::Dead(ghost).to_string(), "n3 is killed");
}

#[test]
fn virtual_time_never_overflows_the_clock() {
    let mut sim = Sim::new(SimConfig { latency: LatencyModel::Fixed(Duration::MAX), ..config(21) });
    let (a, b) = (honest(&mut sim, 1), honest(&mut sim, 2));
    connect(&mut sim, a, b);
    sim.run_until(Duration::MAX);
    assert_eq!(sim.elapsed(), MAX_VIRTUAL_TIME);
    assert_eq!(sim.stats().beyond_horizon, 1, "the dial never arrives");
    assert!(sim.now() >= sim.epoch());
}

// ---- Determinism and speed ----

/// A mixed script: latency spread, loss, churn, a partition and a flood.
fn scripted_run(seed: u64) -> (SimStats, [u8; 32]) {
    let cfg = SimConfig {
        latency: LatencyModel::Uniform { min: 5 * MS, max: 60 * MS },
        loss: 0.05,
        ..SimConfig::new(seed)
    };
    let mut sim = Sim::new(cfg);
    let mut rng = Rng::new(seed);
    let nodes: Vec<NodeIdx> = (0..60).map(|n| honest(&mut sim, n)).collect();
    sim.add_adversary(id_of(1000), NodeKind::Flood { requests_per_sec: 20 });
    sim.add_adversary(id_of(1001), NodeKind::Silent);
    for (i, &n) in nodes.iter().enumerate().skip(1) {
        for j in rng.distinct_below(i, 3) {
            connect(&mut sim, n, nodes[j]);
        }
    }
    sim.run_for(secs(1));
    for (i, &n) in nodes.iter().enumerate().skip(1) {
        ping(&mut sim, n, nodes[rng.below(i as u64) as usize]);
    }
    sim.kill(nodes[7]).unwrap();
    sim.partition(vec![nodes[..20].to_vec()]);
    sim.run_for(secs(3));
    sim.heal();
    sim.revive(nodes[7]).unwrap();
    sim.run_for(secs(20));
    (sim.stats(), sim.trace_digest())
}

#[test]
fn equal_seeds_replay_equal_runs_and_other_seeds_differ() {
    let (stats, digest) = scripted_run(42);
    assert_eq!(scripted_run(42), (stats, digest));
    let (other_stats, other_digest) = scripted_run(43);
    assert_ne!(other_digest, digest);
    assert_ne!(other_stats, stats);
    assert!(stats.messages_lost > 0 && stats.flood_requests_sent > 0 && stats.handshakes > 100);
}

#[test]
fn two_thousand_nodes_connect_quickly() {
    let started = Instant::now();
    let mut sim = Sim::new(SimConfig {
        latency: LatencyModel::Uniform { min: 5 * MS, max: 150 * MS },
        ..SimConfig::new(99)
    });
    let mut rng = Rng::new(99);
    let mut waits = Vec::new();
    for n in 0..2000u64 {
        let idx = honest(&mut sim, n);
        for j in rng.distinct_below(n as usize, 3) {
            waits.push((idx, connect(&mut sim, idx, NodeIdx(j))));
        }
    }
    sim.run_for(secs(2));
    let ok = waits
        .iter()
        .filter(|&&(idx, c)| {
            sim.nodes[idx.0]
                .replies
                .iter()
                .any(|(i, r)| *i == c && matches!(r, Reply::Connected(Ok(_))))
        })
        .count();
    assert_eq!(ok, waits.len());
    let events = sim.stats().events;
    let wall = started.elapsed();
    eprintln!(
        "sim: 2000 nodes, {} connections, {events} events in {wall:?} ({:.0} events/s)",
        waits.len(),
        events as f64 / wall.as_secs_f64()
    );
}

#[test]
fn gossip_reaches_every_subscriber_of_a_small_network() {
    let mut sc = super::gossip::GossipScenario::new(30, 20, 7);
    sc.settle = secs(3);
    let report = super::gossip::run(&sc);
    eprintln!("{}", report.json(&sc));
    assert_eq!(report.delivered, (20 * 29, 20 * 29), "{}", report.json(&sc));
    assert!(report.mesh.0 >= 4, "{}", report.json(&sc));
}
