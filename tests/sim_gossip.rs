//! Gossip on the simulator at scale, honest and under attack. These run in release
//! (`cargo test --release --test sim_gossip`, part of `make test`); in a debug build they are
//! skipped. The bounds assert what was measured, with margins (benches/README.md, "Gossip").

use std::time::Duration;

use petrel::sim::gossip::{run, GossipReport, GossipScenario};
use petrel::sim::gossip_adversary::GossipAttack;
use petrel::sim::LatencyModel;

/// The GossipSub v1.1 evaluation's links: 5 to 25 ms one way.
fn links() -> LatencyModel {
    LatencyModel::Uniform { min: Duration::from_millis(5), max: Duration::from_millis(25) }
}

/// `honest` nodes and `sybils` sybils doing `attack`, 2 KiB messages at 120 per second.
fn scenario(
    honest: usize,
    messages: usize,
    sybils: usize,
    attack: Option<GossipAttack>,
) -> GossipScenario {
    let mut sc = GossipScenario::new(honest, messages, 3);
    sc.size = 2048;
    sc.rate = 120.0;
    sc.latency = links();
    sc.sybils = sybils;
    sc.attack = attack;
    sc
}

fn check(r: &GossipReport, sc: &GossipScenario, min_delivered: f64, max_p50_ms: f64) {
    let json = r.json(sc);
    assert!(r.delivered_fraction() >= min_delivered, "{json}");
    assert!(r.latency_ms.p50 <= max_p50_ms, "{json}");
}

#[test]
#[cfg_attr(debug_assertions, ignore = "release only: make test runs it")]
fn a_thousand_honest_nodes_all_get_every_message_fast() {
    let sc = scenario(1000, 120, 0, None);
    let r = run(&sc);
    // Measured: 100%, p50 40 ms, p99 57 ms (seed 1, 200 messages).
    check(&r, &sc, 1.0, 60.0);
    assert!(r.latency_ms.p99 <= 120.0, "{}", r.json(&sc));
    assert_eq!(r.gossip.invalid_signature, 0);
    assert!(r.mesh.1 >= 6.0, "mean mesh near D: {}", r.json(&sc));
}

/// Long enough (15 s of publishing) for a mesh peer's delivery deficit to count (P3 activates
/// 10 s after a GRAFT).
const LONG: usize = 1800;

#[test]
#[cfg_attr(debug_assertions, ignore = "release only: make test runs it")]
fn censoring_sybils_four_to_one_do_not_stop_delivery_and_are_pruned() {
    let sc = scenario(150, LONG, 600, Some(GossipAttack::Censor));
    let r = run(&sc);
    check(&r, &sc, 0.99, 80.0);
    // Measured: 45% of the mesh slots are sybils' after the settle, none at the end.
    assert!(r.mesh_sybils.0 >= 0.3, "{}", r.json(&sc));
    assert!(r.mesh_sybils.1 <= 0.05, "{}", r.json(&sc));
}

#[test]
#[cfg_attr(debug_assertions, ignore = "release only: make test runs it")]
fn sybils_flooding_invalid_messages_are_scored_down_and_delivery_holds() {
    let sc = scenario(150, 600, 600, Some(GossipAttack::InvalidFlood { per_sec: 50 }));
    let r = run(&sc);
    check(&r, &sc, 0.99, 80.0);
    assert!(r.gossip.invalid_signature > 0, "the forgeries were checked and refused");
    assert_eq!(r.gossip.delivered, r.delivered.0, "no forgery was ever delivered");
}

#[test]
#[cfg_attr(debug_assertions, ignore = "release only: make test runs it")]
fn a_covert_flash_does_not_stop_delivery() {
    // They turn a third of the way in, with the deliveries they earned still on their score:
    // P3 needs ~20 s more to push them out (measured: 44% of slots at the end of 15 s), so
    // what this shows is that the honest part of the mesh and flood publishing carry it.
    let sc = scenario(150, LONG, 600, Some(GossipAttack::CovertFlash { turn_at_ms: 0 }));
    check(&run(&sc), &sc, 0.99, 80.0);
}

#[test]
#[cfg_attr(debug_assertions, ignore = "release only: make test runs it")]
fn ihave_spam_costs_the_spammers_and_not_the_delivery() {
    let sc = scenario(150, 600, 600, Some(GossipAttack::IHaveSpam));
    let r = run(&sc);
    check(&r, &sc, 0.99, 80.0);
    assert!(r.gossip.broken_promises > 0, "spammers broke their promises and were penalised");
    assert!(r.mesh_sybils.1 <= 0.05, "and left the meshes: {}", r.json(&sc));
    assert!(r.latency_ms.p99 <= 120.0, "the shared IWANT table stays usable: {}", r.json(&sc));
}

#[test]
#[cfg_attr(debug_assertions, ignore = "release only: make test runs it")]
fn a_cold_boot_among_sybils_still_delivers() {
    let mut sc = scenario(150, LONG, 600, Some(GossipAttack::Censor));
    sc.cold_boot = true;
    let r = run(&sc);
    check(&r, &sc, 0.99, 80.0);
    // Measured: 65% of the slots are sybils' after the settle, none at the end.
    assert!(r.mesh_sybils.1 <= 0.05, "{}", r.json(&sc));
}

#[test]
#[cfg_attr(debug_assertions, ignore = "release only: make test runs it")]
fn large_messages_cost_at_most_one_duplicate_per_delivery() {
    // Issue 10's figure: 16 KiB messages on 5-25 ms links (100 Mbit/s uplinks), duplicates per
    // delivery <= 1.0. Forwarded to every mesh peer at once, a message crosses its neighbours'
    // copies on almost every mesh link before their IDONTWANT can arrive: 5.3 per delivery,
    // with or without IDONTWANT. Staggered (2 peers at once, the rest 150 ms later if they
    // still need it), measured with seed 3: 0.98, p50 80 ms and p99 201 ms against 55 and 77 ms.
    let mut sc = GossipScenario::new(300, 100, 3);
    sc.size = 16 * 1024;
    sc.rate = 20.0;
    sc.latency = links();
    sc.bandwidth = Some(12_500_000);
    let r = run(&sc);
    let json = r.json(&sc);
    assert_eq!(r.delivered_fraction(), 1.0, "{json}");
    assert!(r.duplicates_per_delivery() <= 1.0, "{json}");
    assert!(r.latency_ms.p50 <= 100.0 && r.latency_ms.p99 <= 250.0, "{json}");
    let g = &r.gossip;
    assert!(g.staggered > 0 && g.staggered_cancelled > g.staggered / 2, "{g:?}");
    // Off, the same run has every forward sent at once.
    sc.gossip.stagger_delay = Duration::ZERO;
    let off = run(&sc);
    assert!(off.duplicates_per_delivery() > 4.0, "{}", off.json(&sc));
    assert_eq!(off.gossip.staggered, 0);
}
