//! Simulator scenarios through the public API only: what an integration test of the DHT will
//! build on. The 10,000-node run is ignored by default; run it with
//! `cargo test --release --test sim_smoke -- --ignored --nocapture`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use petrel::core::PeerLimits;
use petrel::core::{Command, CommandId, CoreConfig, NodeCore, PingInfo, Reply};
use petrel::identity::NodeId;
use petrel::kad::dht::DhtConfig;
use petrel::rng::Rng;
use petrel::sim::{LatencyModel, NodeIdx, NodeKind, Sim, SimConfig, SimStats};

const MS: Duration = Duration::from_millis(1);

fn core(id: NodeId, seed: u64) -> NodeCore {
    let config = CoreConfig {
        limits: PeerLimits::DEFAULT,
        request_timeout: Duration::from_secs(10),
        max_pending_requests: 64,
        max_waiting_commands: 64,
        rng_seed: seed,
        dht: DhtConfig::default(),
        ..CoreConfig::default()
    };
    NodeCore::new(id, config)
}

/// `n` honest nodes, each connecting to 3 random earlier ones, then pinging each of them once,
/// next to a silent and a flooding adversary. Returns the sim, every reply, and the
/// (from, to, connect, ping) plan.
fn network(seed: u64, n: u64) -> (Sim, HashMap<CommandId, Reply>, Vec<(NodeIdx, NodeIdx)>) {
    let config = SimConfig {
        latency: LatencyModel::Uniform { min: 5 * MS, max: 120 * MS },
        loss: 0.0,
        ..SimConfig::new(seed)
    };
    let mut sim = Sim::new(config);
    let mut rng = Rng::new(seed);
    let mut edges = Vec::new();
    for i in 0..n {
        let id = NodeId::from_bytes(rng.bytes32());
        let idx = sim.add_node(id, core(id, i));
        for j in rng.distinct_below(i as usize, 3) {
            let to = NodeIdx(j);
            let (peer, addr) = (sim.node_id(to).unwrap(), sim.addr(to).unwrap());
            sim.command(idx, Command::Connect { peer, addr }).unwrap();
            edges.push((idx, to));
        }
    }
    sim.add_adversary(NodeId::from_bytes(rng.bytes32()), NodeKind::Silent);
    sim.add_adversary(NodeId::from_bytes(rng.bytes32()), NodeKind::Flood { requests_per_sec: 50 });
    sim.run_for(Duration::from_secs(2));
    for &(from, to) in &edges {
        let peer = sim.node_id(to).unwrap();
        sim.command(from, Command::Ping { peer }).unwrap();
    }
    sim.run_for(Duration::from_secs(2));
    let replies = (0..sim.len()).flat_map(|i| sim.take_replies(NodeIdx(i))).collect();
    (sim, replies, edges)
}

/// Every connection came up, and every ping was answered, except on a connection its node
/// closed since to make room for another (returns how many of those).
fn check(sim: &Sim, replies: &HashMap<CommandId, Reply>, edges: &[(NodeIdx, NodeIdx)]) -> usize {
    let connected = replies.values().filter(|r| matches!(r, Reply::Connected(Ok(_)))).count();
    let pongs: Vec<Duration> = replies
        .values()
        .filter_map(|r| match r {
            Reply::Pong(Ok(PingInfo { rtt, .. })) => Some(*rtt),
            _ => None,
        })
        .collect();
    let gone = replies.values().filter(|r| matches!(r, Reply::Pong(Err(_)))).count();
    let pruned: u64 = (0..sim.len())
        .filter_map(|i| sim.core(NodeIdx(i)))
        .map(|c| c.stats().connections_pruned)
        .sum();
    assert_eq!(connected, edges.len());
    assert_eq!(pongs.len() + gone, edges.len());
    assert!(gone as u64 <= pruned, "{gone} pings found no connection, {pruned} were pruned");
    assert!(pongs.iter().all(|rtt| (10 * MS..=240 * MS).contains(rtt)));
    let s: SimStats = sim.stats();
    assert!(s.handshakes as usize >= edges.len() + 3, "plus the flood's 3 or more");
    gone
}

#[test]
fn three_hundred_nodes_connect_ping_and_replay() {
    let (sim, replies, edges) = network(11, 300);
    assert_eq!(check(&sim, &replies, &edges), 0, "300 nodes stay far from their limits");
    let (again, _, _) = network(11, 300);
    assert_eq!(again.trace_digest(), sim.trace_digest());
    assert_eq!(again.stats(), sim.stats());
}

#[test]
#[ignore = "10,000 nodes: run in release"]
fn ten_thousand_nodes() {
    let started = Instant::now();
    let (sim, replies, edges) = network(12, 10_000);
    let wall = started.elapsed();
    // The nodes' lookups fill their connection slots, and a full node closes an idle
    // connection for a new one: 4 of 29,994 pinged connections were gone (seed 12).
    let gone = check(&sim, &replies, &edges);
    assert!(gone <= edges.len() / 1000, "{gone} pings found no connection");
    let events = sim.stats().events;
    eprintln!(
        "sim: 10000 nodes, {} connections and pings, {events} events in {wall:?} ({:.0} events/s)",
        edges.len(),
        events as f64 / wall.as_secs_f64()
    );
}
