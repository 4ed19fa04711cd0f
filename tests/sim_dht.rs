//! DHT scenarios on the simulator: real `NodeCore`s, virtual clock, seeded network.
//!
//! These need an optimised build to run in seconds: `make test` runs them with
//! `cargo test --release --test sim_dht`; in a debug build they are skipped (ignored). The
//! 10,000-node run is `make test-large`, the 100,000-node one `make test-100k`.
//!
//! Every figure asserted here was measured with these seeds (2026-11-30, Core v2). A run is
//! deterministic, so how many lookups ran, how many records were put and how many nodes left
//! are asserted exactly, and each success count has a floor one lookup below the measured
//! figure: a change that loses two lookups fails here and has to say why.

use std::collections::BTreeMap;
use std::time::Duration;

use petrel::core::{Command, PeerLimits, Reply};
use petrel::identity::NodeId;
use petrel::kad::dht::{DhtCommand, DhtReply};
use petrel::kad::routing::Source;
use petrel::sim::dht::{self, DhtNet, DhtReport, DhtScenario, LookupKind, Start};
use petrel::sim::{LatencyModel, NodeIdx, NodeKind};

fn scenario(nodes: usize, lookups: usize, seed: u64) -> DhtScenario {
    DhtScenario::new(nodes, lookups, seed)
}

/// FIND_NODE lookups among `nodes` whose links all take 50 ms one way (issue 12's figures).
fn on_fifty_ms_links(nodes: usize, lookups: usize, seed: u64) -> DhtScenario {
    let mut sc = scenario(nodes, lookups, seed);
    let fifty = Duration::from_millis(50);
    sc.latency = LatencyModel::Uniform { min: fifty, max: fifty };
    sc
}

/// GETs among `nodes` placed on a plane, links from 5 ms (same point) to 105 ms (across the
/// diagonal).
fn plane_gets(nodes: usize, lookups: usize, seed: u64) -> DhtScenario {
    let mut sc = scenario(nodes, lookups, seed);
    sc.kind = LookupKind::Get;
    let (min, max) = (Duration::from_millis(5), Duration::from_millis(105));
    sc.latency = LatencyModel::Plane { min, max };
    sc
}

fn adversarial(fraction: f64, attack: NodeKind, disjoint: usize, kind: LookupKind) -> DhtReport {
    let mut sc = scenario(1000, 300, 7);
    sc.adversarial = fraction;
    sc.attack = attack;
    sc.disjoint = disjoint;
    sc.kind = kind;
    dht::run(&sc)
}

#[test]
#[cfg_attr(debug_assertions, ignore = "release only: make test runs it")]
fn a_thousand_nodes_find_the_nearest_node_every_time() {
    let r = dht::run(&scenario(1000, 300, 1));
    assert_eq!((r.lookups, r.succeeded), (300, 300), "{r:?}");
    assert!(r.rounds.p99 <= 5.0, "{:?}", r.rounds);
    // Measured 38: 25 before lookups widened where round trips are long (a first round of 6
    // and the answers it brings, README "Kademlia"), 33 before the first round's last 3 went
    // to the cheapest seeds rather than the next nearest.
    assert!(r.rpcs.p50 <= 41.0, "{:?}", r.rpcs);
}

#[test]
#[cfg_attr(debug_assertions, ignore = "release only: make test runs it")]
fn a_thousand_nodes_get_every_record_put() {
    let mut sc = scenario(1000, 300, 2);
    sc.kind = LookupKind::Get;
    let r = dht::run(&sc);
    assert_eq!(r.puts, (300, 300));
    assert_eq!((r.lookups, r.succeeded), (300, 300), "{r:?}");
    assert!(r.rounds.p99 <= 4.0, "{:?}", r.rounds);
}

#[test]
#[cfg_attr(debug_assertions, ignore = "release only: make test runs it")]
fn nodes_placed_on_a_plane_get_every_record_put() {
    // Measured: 200 of 200, GET p50 about 140 ms.
    let sc = plane_gets(1000, 200, 5);
    let r = dht::run(&sc);
    assert_eq!((r.lookups, r.succeeded), (200, 200), "{r:?}");
    assert!(r.latency_ms.p50 < 400.0, "{:?}", r.latency_ms);
}

#[test]
#[cfg_attr(debug_assertions, ignore = "release only: make test runs it")]
fn adaptive_selection_lowers_get_latency_on_a_plane() {
    // Measured peers: lookups ask the cheapest of equally placed candidates first, and each
    // bucket keeps its cheapest entries connected. Against distance alone (neither), same
    // network and GETs: p50 180 -> 135 ms (-25 %), p99 475 -> 421 ms.
    let mut sc = plane_gets(1000, 200, 5);
    let on = dht::run(&sc);
    sc.dht.quality.adaptive = false;
    sc.dht.keep_warm = 0;
    let off = dht::run(&sc);
    assert_eq!((on.succeeded, off.succeeded), (200, 200));
    let (on, off) = (on.latency_ms, off.latency_ms);
    assert!(on.p50 <= 0.8 * off.p50, "on {on:?} off {off:?}");
}

#[test]
#[cfg_attr(debug_assertions, ignore = "release only: make test runs it")]
fn lookups_on_fifty_millisecond_links_stay_near_the_round_trip_limit() {
    // Issue 12's targets on 1,000 nodes, 50 ms one way: FIND_NODE p50 <= 700 ms and p99 <=
    // 1 s, GET p99 <= 400 ms, PUT p99 <= 1 s. On these links a round trip is 100 ms, and a
    // request on a fresh connection 300 ms (TCP, TLS, then the request, which leaves with the
    // dialer's Hello: handshake.md §2.1), so each figure is a count of warm and fresh requests
    // in a row. Measured: FIND_NODE p50 700 ms and p99 800 ms, GET p99 400 ms, PUT p99 800 ms
    // (900 and 1,000 before the first round's extra requests went to connected seeds; PUT
    // 1,100 without the STOREs going out with the converged lookup's last round, 1,400 without
    // pipelining either).
    let mut sc = on_fifty_ms_links(1000, 300, 1);
    let find = dht::run(&sc);
    sc.kind = LookupKind::Get;
    let get = dht::run(&sc);
    assert_eq!((find.succeeded, get.succeeded, get.puts.1), (300, 300, 300));
    assert!(find.latency_ms.p50 <= 700.0 && find.latency_ms.p99 <= 1000.0, "{:?}", find.latency_ms);
    assert!(get.latency_ms.p99 <= 400.0, "{:?}", get.latency_ms);
    assert!(get.put_latency_ms.p99 <= 1000.0, "{:?}", get.put_latency_ms);
    // Fresh connections carry requests behind the dialer's Hello; PUTs send most STOREs with
    // the converged round (measured 5,980 for 300 PUTs), never more than k = 20 each early.
    assert!(find.requests_pipelined > 0);
    assert!((5000..=6000).contains(&get.early_stores), "{}", get.early_stores);
}

#[test]
#[cfg_attr(debug_assertions, ignore = "release only: make test runs it")]
fn lookups_succeed_while_a_fifth_of_the_nodes_leave_and_some_return() {
    let mut sc = scenario(1000, 300, 3);
    sc.churn = 0.2;
    let r = dht::run(&sc);
    // 200 nodes left and 28 came back; lookups whose origin left are abandoned, not failed.
    assert_eq!(r.churned, (200, 28), "{r:?}");
    // Which lookups are abandoned depends on their timing (10 of 300 here; 9 with a first round
    // of 6 and connecting ahead).
    assert_eq!(r.lookups + r.abandoned, 300, "{r:?}");
    assert!((5..=15).contains(&r.abandoned), "{r:?}");
    // Measured: 288 of 290 (289 of 291 with a first round of 6 and connecting ahead).
    assert!(r.succeeded + 2 >= r.lookups, "{r:?}");
}

#[test]
#[cfg_attr(debug_assertions, ignore = "release only: make test runs it")]
fn records_survive_churn_and_message_loss() {
    let mut sc = scenario(1000, 300, 4);
    sc.kind = LookupKind::Get;
    sc.churn = 0.2;
    sc.loss = 0.05;
    let r = dht::run(&sc);
    assert_eq!((r.puts, r.churned), ((300, 300), (200, 31)), "{r:?}");
    assert_eq!((r.lookups, r.abandoned), (298, 2), "{r:?}");
    // Measured: 298 of 298.
    assert!(r.succeeded >= 297, "{r:?}");
}

#[test]
#[cfg_attr(debug_assertions, ignore = "release only: make test runs it")]
fn records_are_found_through_message_loss_alone() {
    let mut sc = scenario(1000, 300, 8);
    sc.kind = LookupKind::Get;
    sc.loss = 0.05;
    let r = dht::run(&sc);
    assert_eq!((r.puts, r.lookups, r.abandoned), ((300, 300), 300, 0), "{r:?}");
    assert!(r.sim.messages_lost > 0, "the loss model dropped nothing: {:?}", r.sim);
    // Measured: 300 of 300.
    assert!(r.succeeded >= 299, "{r:?}");
}

#[test]
#[cfg_attr(debug_assertions, ignore = "release only: make test runs it")]
fn flooding_adversaries_do_not_stop_lookups() {
    let r = adversarial(0.1, NodeKind::Flood { requests_per_sec: 100 }, 0, LookupKind::FindNode);
    // Each node is an adversary with probability 0.1: 98 of 1,000 with this seed.
    assert_eq!((r.honest, r.adversaries, r.lookups), (902, 98, 300), "{r:?}");
    assert!(r.sim.flood_requests_sent > 0, "the flood sent nothing: {:?}", r.sim);
    // Measured: 300 of 300.
    assert!(r.succeeded >= 299, "{r:?}");
}

#[test]
#[cfg_attr(debug_assertions, ignore = "release only: make test runs it")]
fn honest_ids_named_at_false_addresses_cost_the_honest_nodes_nothing() {
    // A tenth of the nodes answer every lookup with the real honest nodes nearest the target,
    // at unroutable or at loopback addresses. Lookups still find the nearest node, and no
    // routing table holds an address that is not where its id listens.
    for attack in [NodeKind::DeadAddresses, NodeKind::LoopbackClaims] {
        let r = adversarial(0.1, attack, 0, LookupKind::FindNode);
        assert_eq!((r.honest, r.adversaries, r.lookups), (902, 98, 300), "{r:?}");
        // Measured: 300 of 300 for both.
        assert!(r.succeeded >= 299, "{attack}: {r:?}");
        assert_eq!(r.tables.misplaced, 0, "{attack}: {:?}", r.tables);
        assert!(r.tables.entries > 60_000, "{attack}: {:?}", r.tables);
    }
    // Loopback claims from nodes on a private network are dropped on arrival.
    let r = adversarial(0.1, NodeKind::LoopbackClaims, 0, LookupKind::FindNode);
    assert!(r.tables.claims_dropped > 10_000, "{:?}", r.tables);
}

#[test]
#[cfg_attr(debug_assertions, ignore = "release only: make test runs it")]
fn disjoint_paths_help_against_colluding_eclipse_nodes() {
    // Measured with seed 7, 1,000 nodes, 300 GETs each (successes of 300), since PUTs widen
    // their lookups where round trips are long (GETs never do):
    //   10 % eclipse: one path 287, three disjoint paths 294
    //   20 % eclipse: one path 262, three disjoint paths 279
    // Since GETs ask the cheapest of equally placed candidates first and buckets keep their
    // cheapest entries connected (issue 12): 289/294 and 236/274. Before that: 289/292 and
    // 258/274. Any order but nearest first costs a single path here
    // (random order within the bucket: 249 at 20 %), since the nearer honest peers are the
    // likelier to know the honest holders; colluders that always answer at once gain a little
    // more. Disjoint paths, the defence against colluders, hold their figure. Before PUT
    // lookups converged (Kademlia's rule): 289/292 and 264/275.
    let mut found = BTreeMap::new();
    for (fraction, percent) in [(0.1, 10), (0.2, 20)] {
        for d in [0, 3] {
            let r = adversarial(fraction, NodeKind::Eclipse, d, LookupKind::Get);
            assert_eq!((r.puts, r.lookups), ((300, 300), 300), "{r:?}");
            found.insert((percent, d), r.succeeded);
        }
    }
    let got = |f: u32, d: usize| found[&(f, d)];
    let floors = [((10, 0), 286), ((10, 3), 293), ((20, 0), 255), ((20, 3), 273)];
    for ((f, d), floor) in floors {
        assert!(got(f, d) >= floor, "{f} % eclipse, {d} paths: {found:?}");
    }
    assert!(got(10, 3) > got(10, 0), "disjoint paths must help at 10 %: {found:?}");
    assert!(got(20, 3) > got(20, 0) + 5, "disjoint paths must help at 20 %: {found:?}");
}

#[test]
#[cfg_attr(debug_assertions, ignore = "release only: make test runs it")]
fn silent_fabricating_and_forging_adversaries_barely_dent_lookups() {
    // Authenticated ids make invented peers fail at the dial, forged records fail
    // validation, and silent peers only cost time.
    // Measured with seed 7, 20 % adversaries, 300 lookups, one path and three: silent 297
    // and 297, fabricating 297 and 297, forging records 299 and 299.
    for (attack, kind, floor) in [
        (NodeKind::Silent, LookupKind::FindNode, 296),
        (NodeKind::FabricateCloser, LookupKind::FindNode, 296),
        (NodeKind::BadRecords, LookupKind::Get, 298),
    ] {
        for d in [0, 3] {
            let r = adversarial(0.2, attack, d, kind);
            // Each node is an adversary with probability 0.2: 179 of 1,000 with this seed.
            assert_eq!((r.honest, r.adversaries), (821, 179), "{attack} d={d}: {r:?}");
            assert_eq!(r.lookups, 300, "{attack} d={d}: {r:?}");
            if kind == LookupKind::Get {
                assert_eq!(r.puts, (300, 300), "{attack} d={d}: {r:?}");
            }
            assert!(r.succeeded >= floor, "{attack} d={d}: {r:?}");
        }
    }
}

#[test]
#[cfg_attr(debug_assertions, ignore = "release only: make test runs it")]
fn a_partition_that_heals_lets_lookups_cross_again() {
    let sc = scenario(400, 0, 5);
    let mut net = DhtNet::build(&sc);
    let a: Vec<NodeIdx> = net.honest.iter().copied().step_by(2).collect();
    let b: Vec<NodeIdx> = net.honest.iter().copied().skip(1).step_by(2).collect();
    net.sim.partition(vec![a.clone(), b.clone()]);
    let during = lookups_to_the_other_side(&mut net, &a, &b, 40);
    net.sim.heal();
    net.sim.run_for(Duration::from_secs(30));
    let after = lookups_to_the_other_side(&mut net, &a, &b, 40);
    // While split, group A cannot reach the nodes of group B nearest to B's ids.
    assert!(during <= 2, "lookups crossed a partition: {during} of 40");
    assert_eq!(after, 40, "after healing every lookup finds its target");
}

/// Lookups from group `a` for the ids of random nodes of group `b`; how many found them.
fn lookups_to_the_other_side(net: &mut DhtNet, a: &[NodeIdx], b: &[NodeIdx], n: u64) -> usize {
    let mut pending = BTreeMap::new();
    let mut targets = BTreeMap::new();
    for i in 0..n {
        let from = a[(i * 7 % a.len() as u64) as usize];
        let to = b[(i * 13 % b.len() as u64) as usize];
        let target: NodeId = net.sim.node_id(to).unwrap();
        let id = net.sim.command(from, Command::Dht(DhtCommand::FindNode { target })).unwrap();
        pending.insert(id, from);
        targets.insert(id, target);
        net.sim.run_for(Duration::from_millis(20));
    }
    let replies = net.collect(&pending, Duration::from_secs(60));
    targets
        .iter()
        .filter(|(id, target)| match replies.get(id) {
            Some(Reply::Dht(DhtReply::FindNode(Ok(found)))) => {
                found.peers.first().map(|p| p.id) == Some(**target)
            }
            _ => false,
        })
        .count()
}

#[test]
#[cfg_attr(debug_assertions, ignore = "release only: make test runs it")]
fn the_same_seed_replays_the_same_run_byte_for_byte() {
    let mut sc = scenario(300, 50, 6);
    sc.loss = 0.02;
    sc.churn = 0.1;
    let (x, y) = (dht::run(&sc), dht::run(&sc));
    assert_eq!(x.trace_digest, y.trace_digest);
    assert_eq!(x.sim, y.sim);
    assert_eq!((x.succeeded, x.rounds, x.rpcs), (y.succeeded, y.rounds, y.rpcs));
    sc.seed = 60;
    assert_ne!(dht::run(&sc).trace_digest, x.trace_digest);
}

#[test]
#[cfg_attr(debug_assertions, ignore = "release only: make test runs it")]
fn the_scenarios_connection_limits_bind_every_node() {
    // 200 nodes with room for 8 connections each (4 in, 4 out): no node holds more. So tight a
    // cap costs lookups: a node whose inbound share is busy refuses a dialer, and that
    // request fails (9,091 refusals here). Measured: 27 of 50, rounds p99 9 (seeds 9 to 16:
    // 27, 30, 35, 31, 33, 30, 31, 29; before the first round's extra requests went to
    // connected seeds 37, 29, 23, 21, 26, 33, 34, 30: seed 9 is the unlucky one). The default of
    // 256 succeeds every time (above), and so does 10,000 nodes' run with a 10 s idle
    // timeout (benches/README.md), which is the lever that keeps memory down without this.
    let mut sc = scenario(200, 50, 9);
    sc.limits = PeerLimits { max_connections: 8, max_inbound: 4, max_outbound: 4, ..sc.limits };
    let net = DhtNet::build(&sc);
    for &idx in &net.honest {
        let s = net.sim.core(idx).unwrap().peer_stats();
        assert_eq!(s.max_connections, 8);
        assert!(s.connections_inbound <= 4 && s.connections_outbound <= 4, "{s:?}");
    }
    let r = dht::run(&sc);
    assert_eq!(r.lookups, 50);
    assert!(r.succeeded >= 25, "{r:?}");
    assert!(r.sim.inbound_refused > 0, "{:?}", r.sim);
}

#[test]
#[ignore = "10,000 nodes, about a minute in release: make test-large"]
fn ten_thousand_nodes_every_lookup_succeeds_within_six_rounds() {
    let r = dht::run(&scenario(10_000, 1000, 1));
    assert_eq!((r.lookups, r.succeeded), (1000, 1000), "{r:?}");
    assert!(r.rounds.p99 <= 6.0, "{:?}", r.rounds);
}

#[test]
#[ignore = "10,000 nodes, about two minutes and 1.5 GB in release: make test-large"]
fn ten_thousand_nodes_on_fifty_millisecond_links_find_within_eight_round_trips() {
    // Issue 12's 10,000-node figure on 50 ms links: 100 % success, rounds p99 <= 6, FIND_NODE
    // p50 <= 800 ms. Measured (seed 1, connections at their wire cost, requests pipelined
    // behind the dialer's Hello, a first round of 6 whose last 3 go to the cheapest seeds and
    // connecting ahead to 8 as round trips are long, 16 outbound slots kept for requests): 300
    // of 300, rounds p99 4, FIND_NODE p50 800 ms, p90 1,000, p99 1,000 (seeds 2-4: p50 700).
    // The p50 sits on whichever of 3 hops (700 ms) or 4 (1,000) is the majority: 157 of 300
    // lookups take 800 ms or less here (benches/README.md).
    let r = dht::run(&on_fifty_ms_links(10_000, 300, 1));
    assert_eq!((r.lookups, r.succeeded), (300, 300), "{r:?}");
    assert!(r.rounds.p99 <= 6.0, "{:?}", r.rounds);
    assert!(r.latency_ms.p50 <= 800.0 && r.latency_ms.p99 <= 1200.0, "{:?}", r.latency_ms);
}

#[test]
#[ignore = "100,000 nodes, about a minute and 6 GiB of memory in release: make test-100k"]
fn a_hundred_thousand_nodes_every_lookup_succeeds_within_seven_rounds() {
    // Issue 12's internet-scale figure: `petrel sim dht --nodes 100000 --lookups 300
    // --latency-ms 50..50 --seed 1 --settled 1000`: a settled network that 1,000 newcomers
    // join through the protocol. Measured (2026-12-02): 300 of 300, rounds p50 3, p99 4,
    // FIND_NODE p50 900 ms, p99 1,200 ms, 2.26 M events, 58 s and 5.8 GiB peak RSS; how each
    // figure grows from 1,000 nodes is in benches/README.md.
    let mut sc = on_fifty_ms_links(100_000, 300, 1);
    sc.start = Start::Settled { joining: 1000 };
    let r = dht::run(&sc);
    assert_eq!((r.lookups, r.succeeded), (300, 300), "{r:?}");
    assert!(r.rounds.p99 <= 7.0, "{:?}", r.rounds);
}

#[test]
#[ignore = "100,000 nodes that all join, about 85 minutes and 15 GiB in release: make test-100k-joins"]
fn a_hundred_thousand_nodes_that_all_join_every_lookup_succeeds_within_seven_rounds() {
    // The same network built by replaying every join and bootstrap. Measured (2026-12-02, at
    // 5184ce4): 300 of 300, rounds p50 4, p99 5, FIND_NODE p50 1,000 ms, p99 1,300 ms, 214.6 M
    // events, peak RSS 14.9 GiB, 84 minutes: nearly all of it the joins and their connections.
    let r = dht::run(&on_fifty_ms_links(100_000, 300, 1));
    assert_eq!((r.lookups, r.succeeded), (300, 300), "{r:?}");
    assert!(r.rounds.p99 <= 7.0, "{:?}", r.rounds);
}

/// Builds a settled network of `nodes` (50 ms links) whose last `joining` nodes join.
fn settled(nodes: usize, lookups: usize, joining: usize, seed: u64) -> DhtScenario {
    let mut sc = on_fifty_ms_links(nodes, lookups, seed);
    sc.start = Start::Settled { joining };
    sc
}

#[test]
#[cfg_attr(debug_assertions, ignore = "release only: make test runs it")]
fn a_settled_network_gives_each_bucket_k_random_nodes_of_its_range() {
    // Checked against every node's view of every other: bucket b of node x holds
    // min(k, nodes in its range) verified entries at their listen addresses, in every bucket,
    // the nearest ones included.
    let sc = settled(2000, 0, 0, 3);
    let k = sc.dht.routing.k;
    let net = DhtNet::build(&sc);
    let ids: Vec<NodeId> = net.honest.iter().filter_map(|&i| net.sim.node_id(i)).collect();
    let mut nonempty = 0;
    for &idx in &net.honest {
        let me = net.sim.node_id(idx).unwrap();
        let table = net.sim.core(idx).unwrap().dht().routing();
        let mut in_range = vec![0usize; 256];
        for b in ids.iter().filter_map(|id| me.bucket_index(id)) {
            in_range[b] += 1;
        }
        for (b, &n) in in_range.iter().enumerate() {
            let entries = table.bucket_entries(b);
            assert_eq!(entries.len(), n.min(k), "node {idx:?} bucket {b}");
            nonempty += usize::from(n > 0);
            for e in entries {
                assert_eq!(e.source, Source::Verified);
                let home = net.sim.node_at(e.peer.addrs[0]).and_then(|h| net.sim.node_id(h));
                assert_eq!(home, Some(e.peer.id));
            }
        }
    }
    // log2(2000 / 20) + a few buckets a node: the comparison covered the deep ones.
    assert!(nonempty >= 2000 * 9, "{nonempty}");
    assert_eq!(net.sim.stats().dials, 0, "a settled network dials nobody to start");
}

#[test]
#[cfg_attr(debug_assertions, ignore = "release only: make test runs it")]
fn a_settled_network_finds_the_nearest_node_and_its_newcomers_get_known() {
    // 2,000 nodes, the last 50 joining through the protocol. Measured: 200 of 200, rounds p50
    // 2, p99 3, FIND_NODE p50 600 ms (no connection is open at the start, so most requests
    // wait for a dial: 250 ms a round on 50 ms links).
    let sc = settled(2000, 200, 50, 4);
    let r = dht::run(&sc);
    assert_eq!((r.lookups, r.succeeded), (200, 200), "{r:?}");
    assert!(r.rounds.p99 <= 4.0, "{:?}", r.rounds);
    assert_eq!(r.tables.misplaced, 0);

    let net = DhtNet::build(&sc);
    let newcomers: Vec<NodeIdx> = net.honest[net.honest.len() - 50..].to_vec();
    let new_ids: Vec<NodeId> = newcomers.iter().filter_map(|&i| net.sim.node_id(i)).collect();
    let mut known = 0;
    let mut sizes = Vec::new();
    for &idx in &net.honest {
        let table = net.sim.core(idx).unwrap().dht().routing();
        if newcomers.contains(&idx) {
            sizes.push(table.len());
        } else {
            known += new_ids.iter().filter(|id| table.contains(id)).count();
        }
    }
    // Measured: newcomers' tables hold 32 to 103 entries (median 55; a settled node's ~150),
    // and the settled nodes 1,093 entries of newcomers, about 22 each.
    assert!(sizes.iter().all(|&n| n >= 25), "newcomers' tables: {sizes:?}");
    assert!(known >= 1000, "the settled nodes hold {known} entries of newcomers");
}

#[test]
#[cfg_attr(debug_assertions, ignore = "release only: make test runs it")]
fn a_settled_network_keeps_silent_adversaries_out_and_finds_past_fabricating_ones() {
    // 2,000 nodes, 20 % adversaries, the last 50 joining. Silent ones never answered, so no
    // settled table holds them (a newcomer may: a dial that authenticates enters its table,
    // as in a joined network, until requests to it fail): 200 of 200. Fabricating ones answer, so they hold their share
    // of every bucket from the start (the harsher case than a joined network): measured 191 of
    // 200, rounds p99 5, and no table entry at a false address.
    let mut sc = settled(2000, 200, 50, 4);
    sc.adversarial = 0.2;
    sc.attack = NodeKind::Silent;
    let net = DhtNet::build(&sc);
    let silent: Vec<NodeId> = net.adversaries.iter().filter_map(|&i| net.sim.node_id(i)).collect();
    assert_eq!(silent.len(), 389);
    let settled_nodes = &net.honest[..net.honest.len() - 50];
    for &idx in settled_nodes {
        let table = net.sim.core(idx).unwrap().dht().routing();
        assert!(silent.iter().all(|id| !table.contains(id)), "node {idx:?} holds a silent one");
    }
    let r = dht::run(&sc);
    assert_eq!((r.lookups, r.succeeded), (200, 200), "{r:?}");

    sc.attack = NodeKind::FabricateCloser;
    let r = dht::run(&sc);
    assert_eq!(r.lookups, 200);
    assert!(r.succeeded >= 190, "{r:?}");
    assert!(r.rounds.p99 <= 6.0, "{:?}", r.rounds);
    assert_eq!(r.tables.misplaced, 0);
}
