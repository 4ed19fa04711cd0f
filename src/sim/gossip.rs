//! The gossip scenario behind `petrel sim gossip` and the simulator's gossip tests: N honest
//! nodes on the virtual network join one topic and publish M messages; what reached whom, how
//! fast, and at what cost.
//!
//! 1. **Overlay.** Node `i` dials `degree` distinct random earlier nodes (as `bench gossip`
//!    does on real sockets), `join_gap` apart.
//! 2. **Subscribe.** Every node subscribes to the topic, then the network settles for
//!    `settle` (a few heartbeats build the meshes).
//! 3. **Publish.** Messages of `size` bytes go out at `rate` per virtual second from uniformly
//!    random nodes, each signed by its author's key.
//! 4. **Drain.** The run goes on until every message reached every other node, or `drain`
//!    after the last publish.
//!
//! Latency is virtual: the delivery's instant less the publish's. Duplicates per delivery is
//! copies received and not delivered (seen or waiting) over deliveries.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use super::gossip_adversary::GossipAttack;
use super::{LatencyModel, NodeIdx, NodeKind, Sim, SimConfig, SimStats};
use crate::core::{Command, CoreConfig, NodeCore};
use crate::gossip::{GossipCommand, GossipConfig, GossipStats};
use crate::identity::{Keypair, NodeId};
use crate::kad::dht::DhtConfig;
use crate::rng::Rng;
use crate::stats::Spread;
use crate::wire::messages::{GossipMessage, MessageId};

/// The topic of every scenario.
pub const TOPIC: &str = "sim";

/// A gossip scenario. See the module doc.
#[derive(Debug, Clone)]
pub struct GossipScenario {
    /// Honest nodes.
    pub nodes: usize,
    /// Messages published.
    pub messages: usize,
    /// Payload bytes of each.
    pub size: usize,
    /// Seeds everything.
    pub seed: u64,
    /// Link latency.
    pub latency: LatencyModel,
    /// Probability that a message is lost.
    pub loss: f64,
    /// Each node's uplink, bytes per second (`None`: unlimited).
    pub bandwidth: Option<u64>,
    /// How long a signature check takes, hand-off to result (worker hops and verification).
    pub check_delay: Duration,
    /// Earlier nodes each joining node dials.
    pub degree: usize,
    /// Messages per virtual second, all publishers together.
    pub rate: f64,
    /// Virtual time between two joins.
    pub join_gap: Duration,
    /// Virtual time from the subscriptions to the first publish.
    pub settle: Duration,
    /// How long after the last publish the run may go on.
    pub drain: Duration,
    /// The gossip settings of every node (its seed is set per node).
    pub gossip: GossipConfig,
    /// Sybils, and what they do (`None`: no sybils).
    pub attack: Option<GossipAttack>,
    /// How many sybils.
    pub sybils: usize,
    /// Honest nodes each sybil dials.
    pub sybil_degree: usize,
    /// The sybils connect before the honest nodes build their overlay (a cold boot into a
    /// network of sybils).
    pub cold_boot: bool,
}

impl GossipScenario {
    /// `nodes` nodes, `messages` messages of 1 KiB, seed `seed`; latency 5..=25 ms, no loss or
    /// bandwidth limit, checks taking 200 µs (a worker round trip and a verification, as
    /// measured on loopback), degree 8, 100 msg/s, settle 5 s, drain 10 s.
    pub fn new(nodes: usize, messages: usize, seed: u64) -> GossipScenario {
        GossipScenario {
            nodes,
            messages,
            size: 1024,
            seed,
            latency: LatencyModel::Uniform {
                min: Duration::from_millis(5),
                max: Duration::from_millis(25),
            },
            loss: 0.0,
            bandwidth: None,
            check_delay: Duration::from_micros(200),
            degree: 8,
            rate: 100.0,
            join_gap: Duration::from_millis(1),
            settle: Duration::from_secs(5),
            drain: Duration::from_secs(10),
            gossip: GossipConfig::default(),
            attack: None,
            sybils: 0,
            sybil_degree: 8,
            cold_boot: false,
        }
    }
}

/// What a gossip scenario measured.
#[derive(Debug, Clone)]
pub struct GossipReport {
    /// Honest nodes.
    pub nodes: usize,
    /// Messages published (a publish refused by its node is not counted).
    pub messages: usize,
    /// Distinct (message, receiver) pairs delivered, and the number expected: every
    /// message at every node but its publisher.
    pub delivered: (u64, u64),
    /// Delivery latency on the virtual clock, milliseconds.
    pub latency_ms: Spread,
    /// Mean delivery latency, milliseconds.
    pub latency_mean_ms: f64,
    /// Mesh size per node after the settle, (min, mean).
    pub mesh: (usize, f64),
    /// Fraction of the honest nodes' mesh slots held by sybils, after the settle and at the
    /// end.
    pub mesh_sybils: (f64, f64),
    /// Every node's gossip counters, summed.
    pub gossip: GossipStats,
    /// Virtual time simulated.
    pub virtual_s: f64,
    /// The simulator's counters.
    pub sim: SimStats,
}

impl GossipReport {
    /// Delivered pairs over expected pairs (1 when nothing was expected).
    pub fn delivered_fraction(&self) -> f64 {
        if self.delivered.1 == 0 {
            return 1.0;
        }
        self.delivered.0 as f64 / self.delivered.1 as f64
    }

    /// Copies received but not delivered, per delivery.
    pub fn duplicates_per_delivery(&self) -> f64 {
        self.gossip.duplicates as f64 / self.gossip.delivered.max(1) as f64
    }

    /// Bytes sent on every link, per delivered pair.
    pub fn bytes_per_delivery(&self) -> f64 {
        self.sim.bytes_sent as f64 / self.delivered.0.max(1) as f64
    }

    /// One JSON object.
    pub fn json(&self, sc: &GossipScenario) -> String {
        let s = &self.latency_ms;
        let g = &self.gossip;
        format!(
            concat!(
                "{{\"sim\":\"gossip\",\"nodes\":{},\"messages\":{},\"size\":{},\"seed\":{},",
                "\"rate\":{},\"degree\":{},\"loss\":{},",
                "\"delivered_fraction\":{:.6},\"delivered_pairs\":{},\"expected_pairs\":{},",
                "\"latency_ms\":{{\"p50\":{:.1},\"p90\":{:.1},\"p99\":{:.1},\"max\":{:.1},\"mean\":{:.1}}},",
                "\"duplicates_per_delivery\":{:.3},\"bytes_per_delivery\":{:.0},",
                "\"mesh_min\":{},\"mesh_mean\":{:.2},\"mesh_sybils\":{{\"start\":{:.3},\"end\":{:.3}}},",
                "\"ihave_sent\":{},\"iwant_sent\":{},\"iwant_served\":{},\"idontwant_sent\":{},",
                "\"forwarded\":{},\"staggered\":{},\"staggered_cancelled\":{},",
                "\"invalid\":{},\"dropped_sends\":{},\"broken_promises\":{},",
                "\"virtual_s\":{:.1},\"messages_on_links\":{}}}"
            ),
            self.nodes,
            self.messages,
            sc.size,
            sc.seed,
            sc.rate,
            sc.degree,
            sc.loss,
            self.delivered_fraction(),
            self.delivered.0,
            self.delivered.1,
            s.p50,
            s.p90,
            s.p99,
            s.max,
            self.latency_mean_ms,
            self.duplicates_per_delivery(),
            self.bytes_per_delivery(),
            self.mesh.0,
            self.mesh.1,
            self.mesh_sybils.0,
            self.mesh_sybils.1,
            g.ihave_sent,
            g.iwant_sent,
            g.iwant_served,
            g.idontwant_sent,
            g.forwarded,
            g.staggered,
            g.staggered_cancelled,
            g.invalid_signature + g.rejected,
            g.dropped_sends,
            g.broken_promises,
            self.virtual_s,
            self.sim.messages_sent,
        )
    }
}

/// The core settings of a scenario node: gossip on, the DHT quiet (no join, no maintenance),
/// so the traffic measured is gossip's.
pub fn core_config(sc: &GossipScenario, seed: u64) -> CoreConfig {
    CoreConfig {
        rng_seed: seed,
        dht: DhtConfig {
            join_on_first_contact: false,
            maintenance_interval: Duration::ZERO,
            ..DhtConfig::default()
        },
        gossip: Some(sc.gossip.clone()),
        // The overlay is the scenario's: no DHT traffic in the figures.
        discovery: None,
        ..CoreConfig::default()
    }
}

/// The honest network of a scenario, connected and subscribed.
#[derive(Debug)]
pub struct GossipNet {
    /// The simulator.
    pub sim: Sim,
    /// Honest nodes, in join order.
    pub honest: Vec<NodeIdx>,
    /// The scenario's generator (publishers, payloads).
    pub rng: Rng,
}

impl GossipNet {
    /// Adds the sybils; each dials `sybil_degree` random honest nodes (of those added so far,
    /// or of `honest_ids` indices to come in a cold boot).
    fn add_sybils(sim: &mut Sim, rng: &mut Rng, sc: &GossipScenario, targets: &[NodeIdx]) {
        let Some(mut attack) = sc.attack else { return };
        if let GossipAttack::CovertFlash { turn_at_ms: 0 } = attack {
            // Unset: turn a third of the way through the publishing.
            let publish = Duration::from_secs_f64(sc.messages as f64 / sc.rate.max(1e-3));
            let at = sim.elapsed() + sc.settle + publish / 3;
            attack = GossipAttack::CovertFlash { turn_at_ms: at.as_millis() as u64 };
        }
        for _ in 0..sc.sybils {
            let idx =
                sim.add_adversary(NodeId::from_bytes(rng.bytes32()), NodeKind::Gossip(attack));
            for j in rng.distinct_below(targets.len(), sc.sybil_degree) {
                sim.sybil_dial(idx, targets[j]);
            }
        }
    }

    /// Builds the overlay (step 1) and subscribes every node (step 2), then settles.
    pub fn build(sc: &GossipScenario) -> GossipNet {
        let record = sc.nodes.saturating_mul(sc.messages).saturating_add(1024);
        let config = SimConfig {
            latency: sc.latency.clone(),
            loss: sc.loss,
            bandwidth: sc.bandwidth,
            job_delay: sc.check_delay,
            record_deliveries: record,
            ..SimConfig::new(sc.seed)
        };
        let mut sim = Sim::new(config);
        let mut rng = Rng::new(sc.seed ^ 0x6055);
        let mut honest = Vec::with_capacity(sc.nodes);
        let ids: Vec<NodeId> = (0..sc.nodes).map(|_| NodeId::from_bytes(rng.bytes32())).collect();
        for &id in &ids {
            let idx = sim.add_node(id, NodeCore::new(id, core_config(sc, rng.next_u64())));
            honest.push(idx);
        }
        if sc.cold_boot {
            // The sybils are connected before any honest node knows another.
            Self::add_sybils(&mut sim, &mut rng, sc, &honest);
            sim.run_for(Duration::from_secs(1));
        }
        for i in 0..sc.nodes {
            let idx = honest[i];
            for j in rng.distinct_below(i, sc.degree) {
                let to = honest[j];
                if let (Some(peer), Some(addr)) = (sim.node_id(to), sim.addr(to)) {
                    let _ = sim.command(idx, Command::Connect { peer, addr });
                }
            }
            sim.run_for(sc.join_gap);
        }
        sim.run_for(Duration::from_secs(2));
        for &idx in &honest {
            let _ = sim.command(idx, Command::Gossip(GossipCommand::Subscribe(TOPIC.into())));
        }
        if !sc.cold_boot {
            // The sybils arrive in a network whose meshes have formed.
            sim.run_for(Duration::from_secs(2));
            Self::add_sybils(&mut sim, &mut rng, sc, &honest);
        }
        sim.run_for(sc.settle);
        for &idx in &honest {
            let _ = sim.take_replies(idx);
        }
        GossipNet { sim, honest, rng }
    }

    /// (min, mean) mesh size of the honest nodes in the topic.
    pub fn mesh(&self) -> (usize, f64) {
        let sizes: Vec<usize> = self
            .honest
            .iter()
            .filter_map(|&i| self.sim.core(i)?.gossip().map(|g| g.mesh_peers(TOPIC).len()))
            .collect();
        let min = sizes.iter().copied().min().unwrap_or(0);
        let mean = sizes.iter().sum::<usize>() as f64 / sizes.len().max(1) as f64;
        (min, mean)
    }

    /// Fraction of the honest nodes' mesh slots in the topic held by sybils.
    pub fn mesh_sybils(&self) -> f64 {
        let honest: HashSet<NodeId> =
            self.honest.iter().filter_map(|&i| self.sim.node_id(i)).collect();
        let (mut slots, mut sybil) = (0usize, 0usize);
        for &i in &self.honest {
            let Some(g) = self.sim.core(i).and_then(|c| c.gossip()) else { continue };
            for p in g.mesh_peers(TOPIC) {
                slots += 1;
                if !honest.contains(&p) {
                    sybil += 1;
                }
            }
        }
        sybil as f64 / slots.max(1) as f64
    }

    /// Every honest node's gossip counters, summed.
    pub fn gossip_stats(&self) -> GossipStats {
        let mut sum = GossipStats::default();
        for &i in &self.honest {
            let Some(s) = self.sim.core(i).and_then(|c| c.gossip()).map(|g| g.stats()) else {
                continue;
            };
            sum.published += s.published;
            sum.received += s.received;
            sum.delivered += s.delivered;
            sum.duplicates += s.duplicates;
            sum.invalid_signature += s.invalid_signature;
            sum.rejected += s.rejected;
            sum.forwarded += s.forwarded;
            sum.ihave_sent += s.ihave_sent;
            sum.iwant_sent += s.iwant_sent;
            sum.iwant_served += s.iwant_served;
            sum.idontwant_sent += s.idontwant_sent;
            sum.staggered += s.staggered;
            sum.staggered_cancelled += s.staggered_cancelled;
            sum.dropped_sends += s.dropped_sends;
            sum.broken_promises += s.broken_promises;
            sum.validation_dropped += s.validation_dropped;
        }
        sum
    }
}

/// Runs the scenario.
pub fn run(sc: &GossipScenario) -> GossipReport {
    let mut net = GossipNet::build(sc);
    let mesh = net.mesh();
    let sybils_before = net.mesh_sybils();
    let authors: HashMap<NodeIdx, Keypair> = net
        .honest
        .iter()
        .map(|&i| (i, Keypair::from_seed(Rng::new(sc.seed ^ i.0 as u64).bytes32())))
        .collect();
    let gap = Duration::from_secs_f64(1.0 / sc.rate.max(1e-3));
    let start = net.sim.elapsed();
    // id → (publisher, publish time).
    let mut published: BTreeMap<MessageId, (NodeIdx, Duration)> = BTreeMap::new();
    for n in 0..sc.messages {
        net.sim.run_until(start + gap * n as u32);
        let from = net.honest[net.rng.below(net.honest.len() as u64) as usize];
        let Some(author) = authors.get(&from) else { continue };
        let mut payload = vec![0u8; sc.size];
        let stamp = (n as u64).to_le_bytes();
        let len = stamp.len().min(payload.len());
        payload[..len].copy_from_slice(&stamp[..len]);
        let msg = GossipMessage::sign(author, n as u64 + 1, TOPIC.into(), payload);
        published.insert(msg.id(), (from, net.sim.elapsed()));
        let _ = net.sim.command(from, Command::Gossip(GossipCommand::Publish(msg)));
    }
    let expected = (published.len() * (sc.nodes.saturating_sub(1))) as u64;
    let last = net.sim.elapsed();
    let mut delivered: HashSet<(NodeIdx, MessageId)> = HashSet::new();
    let mut latencies: Vec<f64> = Vec::new();
    let step = Duration::from_millis(100);
    loop {
        for (node, at, id) in net.sim.take_deliveries() {
            let Some(&(origin, sent)) = published.get(&id) else { continue };
            if node != origin && delivered.insert((node, id)) {
                latencies.push(at.saturating_sub(sent).as_secs_f64() * 1e3);
            }
        }
        if delivered.len() as u64 >= expected || net.sim.elapsed() >= last + sc.drain {
            break;
        }
        net.sim.run_for(step);
    }
    let mean = latencies.iter().sum::<f64>() / latencies.len().max(1) as f64;
    GossipReport {
        nodes: sc.nodes,
        messages: published.len(),
        delivered: (delivered.len() as u64, expected),
        latency_ms: Spread::of(latencies),
        latency_mean_ms: mean,
        mesh,
        mesh_sybils: (sybils_before, net.mesh_sybils()),
        gossip: net.gossip_stats(),
        virtual_s: net.sim.elapsed().as_secs_f64(),
        sim: net.sim.stats(),
    }
}
