//! DHT scenarios on the simulator: build a network of real `NodeCore`s (and adversaries), let
//! it join, run lookups, and measure them. `petrel sim dht` and the scenario tests use this.
//!
//! Method:
//! 1. Nodes are created in a seeded order; each is an adversary with probability
//!    `adversarial`. Honest node i joins at `i × join_gap` of virtual time by connecting to
//!    `degree` random earlier nodes (adversaries included); its first contact starts its
//!    self-lookup (the join). After the last join the network settles for `settle`, then every
//!    honest node runs an explicit bootstrap (a second self-lookup, staggered by `join_gap`).
//!    With [`Start::Settled`] the network has been running instead: every node but the last
//!    `joining` starts with the table a settled network converges to (each bucket holds up to
//!    k nodes of its range drawn at random, verified, none connected; adversaries that answer
//!    requests among them at their share, silent ones not, since they never answered),
//!    and only the last `joining` honest nodes join and bootstrap as above. Replaying 100,000
//!    joins costs an hour and 15 GiB here, nearly all of it in the joins and their connections;
//!    the lookups measured afterwards are a small part of any run.
//! 2. For `LookupKind::Get`, one record per lookup is PUT first from a random honest node.
//! 3. Lookups start every `lookup_gap` from random live honest nodes. With `churn` p, p × the
//!    honest nodes leave at random instants of the lookup phase; half of them come back
//!    `churn_return` later with the same identity. A lookup whose origin left before its
//!    answer is `abandoned`, not failed.
//! 4. Success. `FindNode` (random target): the answer's nearest honest peer (or the origin
//!    itself) is at least as close to the target as every honest node that was up for the
//!    whole lookup and still is at the end (a nearer node that answered and then left still
//!    counts; adversaries in the answer count for nothing, since they may claim any id).
//!    `Get`: the right value came back. Message loss is modelled as lost RPCs: a FIND_NODE
//!    whose nearest node's answer was lost fails, which TCP's retransmission would prevent.
//!
//! Rounds, RPCs and latency come from each lookup's own statistics (`LookupStats`), which the
//! core measures on the virtual clock. Same scenario, same numbers, byte for byte.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::{LatencyModel, NodeIdx, NodeKind, Sim, SimConfig, SimStats};
use crate::bytes::ByteBuf;
use crate::core::PeerLimits;
use crate::core::{Command, CommandId, CoreConfig, NodeCore, Reply};
use crate::identity::{NodeId, ID_BITS, ID_BYTES};
use crate::kad::dht::{DhtCommand, DhtConfig, DhtReply};
use crate::kad::lookup::LookupStats;
use crate::rng::Rng;
pub use crate::stats::Spread;
use crate::wire::messages::{Key, PeerInfo, Record};
use crate::wire::signing::immutable_key;

/// What each lookup of a scenario does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LookupKind {
    /// FIND_NODE for a random target.
    FindNode,
    /// GET of a record PUT beforehand.
    Get,
}

/// How a scenario's network comes to be (module doc, step 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// Every honest node joins through `degree` earlier nodes, then bootstraps.
    Joins,
    /// The network has been running: all nodes but the last `joining` start with settled
    /// routing tables; those last honest nodes join and bootstrap.
    Settled {
        /// Nodes, last in creation order, that join through the protocol.
        joining: usize,
    },
}

/// A DHT scenario. [`DhtScenario::new`] gives the defaults.
#[derive(Debug, Clone)]
pub struct DhtScenario {
    /// Nodes, adversaries included.
    pub nodes: usize,
    /// Lookups measured.
    pub lookups: usize,
    /// Seeds everything: ids, overlay, targets, latencies, loss, churn.
    pub seed: u64,
    /// One-way link latency.
    pub latency: LatencyModel,
    /// Probability that a message is lost.
    pub loss: f64,
    /// Fraction of honest nodes that leave during the lookup phase.
    pub churn: f64,
    /// Fraction of nodes that are adversaries.
    pub adversarial: f64,
    /// What the adversaries do.
    pub attack: NodeKind,
    /// Disjoint lookup paths (0 = one path).
    pub disjoint: usize,
    /// What each lookup does.
    pub kind: LookupKind,
    /// Earlier nodes each joining node dials.
    pub degree: usize,
    /// Virtual time between two joins (and two bootstraps).
    pub join_gap: Duration,
    /// Virtual time between the last join and the bootstraps.
    pub settle: Duration,
    /// Virtual time between two lookup starts.
    pub lookup_gap: Duration,
    /// How long a churned node that comes back stays away.
    pub churn_return: Duration,
    /// The DHT settings of every honest node (its seed and `disjoint` are set per node).
    pub dht: DhtConfig,
    /// The connection limits of every honest node. The defaults let a node keep 256
    /// connections, each until idle for 60 s; in a network of 100,000 nodes most nodes sit
    /// near that cap, and connections are most of the run's memory. A lower cap or a shorter
    /// idle timeout is what a node short of memory would run with (`petrel sim dht
    /// --max-connections`, `--idle-timeout-s`).
    pub limits: PeerLimits,
    /// Requests leave with the dialer's Hello (`SimConfig::pipelining`).
    pub pipelining: bool,
    /// Whether every node joins, or the network starts settled.
    pub start: Start,
}

impl DhtScenario {
    /// `nodes` nodes, `lookups` FIND_NODE lookups, seed `seed`; latency 10..=100 ms, no loss,
    /// churn or adversaries, one path, degree 3, default connection limits, every node joins.
    pub fn new(nodes: usize, lookups: usize, seed: u64) -> DhtScenario {
        DhtScenario {
            nodes,
            lookups,
            seed,
            latency: LatencyModel::Uniform {
                min: Duration::from_millis(10),
                max: Duration::from_millis(100),
            },
            loss: 0.0,
            churn: 0.0,
            adversarial: 0.0,
            attack: NodeKind::Silent,
            disjoint: 0,
            kind: LookupKind::FindNode,
            degree: 3,
            join_gap: Duration::from_millis(2),
            settle: Duration::from_secs(30),
            lookup_gap: Duration::from_millis(10),
            churn_return: Duration::from_secs(2),
            dht: DhtConfig::default(),
            limits: PeerLimits::DEFAULT,
            pipelining: true,
            start: Start::Joins,
        }
    }
}

/// What a scenario measured.
#[derive(Debug, Clone)]
pub struct DhtReport {
    /// Honest nodes.
    pub honest: usize,
    /// Adversaries.
    pub adversaries: usize,
    /// Lookups measured: started, less those abandoned.
    pub lookups: usize,
    /// Lookups whose origin left before the answer (churn); not counted in `lookups`.
    pub abandoned: usize,
    /// Lookups that succeeded (module doc, step 4).
    pub succeeded: usize,
    /// Records PUT before a `Get` scenario, and how many stored on at least one peer.
    pub puts: (usize, usize),
    /// How long the stored PUTs took (lookup and STOREs), milliseconds; empty without PUTs.
    pub put_latency_ms: Spread,
    /// Honest nodes that left (and came back) during the lookups.
    pub churned: (usize, usize),
    /// Lookup rounds.
    pub rounds: Spread,
    /// Requests per lookup.
    pub rpcs: Spread,
    /// Lookup duration on the virtual clock, milliseconds.
    pub latency_ms: Spread,
    /// Virtual time simulated.
    pub virtual_s: f64,
    /// The simulator's counters.
    pub sim: SimStats,
    /// The honest nodes' routing tables at the end.
    pub tables: TableCheck,
    /// Requests the honest nodes sent behind their Hello on fresh dials, joins included.
    pub requests_pipelined: u64,
    /// STOREs the honest nodes sent with a converged lookup's last round.
    pub early_stores: u64,
    /// Dials the honest nodes' lookups started ahead of a request (`lookup.preconnect`).
    pub preconnects: u64,
    /// Digest of every event: equal for equal scenarios.
    pub trace_digest: [u8; 32],
}

impl DhtReport {
    /// `succeeded / lookups`; 0 when no lookup was measured, which is no success.
    pub fn success_fraction(&self) -> f64 {
        if self.lookups == 0 {
            return 0.0;
        }
        self.succeeded as f64 / self.lookups as f64
    }
}

/// What the honest nodes' routing tables hold at the end of a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TableCheck {
    /// Entries, all honest nodes together.
    pub entries: usize,
    /// Entries whose first address is not where their id listens: a claim that got in.
    pub misplaced: usize,
    /// Entries not yet verified by a dial.
    pub unverified: usize,
    /// Addresses the honest nodes dropped as implausible.
    pub claims_dropped: u64,
}

/// Reads every honest node's routing table.
fn check_tables(net: &DhtNet) -> TableCheck {
    let mut check = TableCheck::default();
    for &idx in &net.honest {
        let Some(core) = net.sim.core(idx) else { continue };
        check.claims_dropped += core.dht().stats().claims_dropped;
        for e in core.dht().routing().iter() {
            check.entries += 1;
            let home = e.peer.addrs.first().and_then(|a| net.sim.node_at(*a));
            if home.and_then(|h| net.sim.node_id(h)) != Some(e.peer.id) {
                check.misplaced += 1;
            }
            if e.source == crate::kad::routing::Source::Inbound {
                check.unverified += 1;
            }
        }
    }
    check
}

/// A counter summed over the honest nodes.
fn sum_honest(net: &DhtNet, counter: impl Fn(&crate::core::NodeCore) -> u64) -> u64 {
    net.honest.iter().filter_map(|&idx| net.sim.core(idx)).map(counter).sum()
}

/// A running scenario network: the simulator and who is who.
pub struct DhtNet {
    /// The simulator.
    pub sim: Sim,
    /// Honest nodes, in join order.
    pub honest: Vec<NodeIdx>,
    /// Ids of the honest nodes.
    honest_ids: BTreeSet<NodeId>,
    /// Adversaries.
    pub adversaries: Vec<NodeIdx>,
    rng: Rng,
}

/// The core settings of an honest node of `sc`, seeded with `seed`.
pub fn core_config(sc: &DhtScenario, seed: u64) -> CoreConfig {
    let mut dht = DhtConfig { rng_seed: seed, ..sc.dht.clone() };
    dht.lookup.disjoint_paths = sc.disjoint;
    CoreConfig {
        limits: sc.limits,
        request_timeout: Duration::from_secs(10),
        max_pending_requests: 4096,
        max_waiting_commands: 1024,
        rng_seed: seed,
        dht,
        // DHT-only nodes: the scenario publishes nothing, and gossip's state for every
        // connected peer (its queue, its score entry) was a third of a run's peak memory.
        gossip: None,
        discovery: None,
        ..CoreConfig::default()
    }
}

impl DhtNet {
    /// Builds the network and runs joins, settling and bootstraps (steps 1 of the module doc).
    pub fn build(sc: &DhtScenario) -> DhtNet {
        // The scenario reads replies only: node events would pile up unread in every node.
        let config = SimConfig {
            latency: sc.latency.clone(),
            loss: sc.loss,
            max_events: 0,
            pipelining: sc.pipelining,
            ..SimConfig::new(sc.seed)
        };
        let mut net = DhtNet {
            sim: Sim::new(config),
            honest: Vec::new(),
            honest_ids: BTreeSet::new(),
            adversaries: Vec::new(),
            rng: Rng::new(sc.seed ^ 0x5ced_a410),
        };
        let mut all = Vec::with_capacity(sc.nodes);
        for _ in 0..sc.nodes {
            let id = NodeId::from_bytes(net.rng.bytes32());
            // The first node is always honest, so every join has someone to reach.
            let adversary = !all.is_empty() && net.rng.chance(sc.adversarial);
            let idx = if adversary {
                let idx = net.sim.add_adversary(id, sc.attack);
                net.adversaries.push(idx);
                idx
            } else {
                let core = NodeCore::new(id, core_config(sc, net.rng.next_u64()));
                let idx = net.sim.add_node(id, core);
                net.honest.push(idx);
                net.honest_ids.insert(id);
                idx
            };
            all.push(idx);
        }
        let first_joiner = match sc.start {
            Start::Joins => 0,
            Start::Settled { joining } => all.len().saturating_sub(joining),
        };
        net.settle_tables(&all[..first_joiner], sc.dht.routing.k);
        // Joins: honest node i dials `degree` random earlier nodes at i × join_gap.
        let mut at = Duration::ZERO;
        for (i, &idx) in all.iter().enumerate().skip(first_joiner) {
            if net.adversaries.contains(&idx) {
                continue;
            }
            at += sc.join_gap;
            net.sim.run_until(at);
            let contacts: Vec<NodeIdx> =
                net.rng.distinct_below(i, sc.degree).into_iter().map(|j| all[j]).collect();
            net.join(idx, &contacts);
        }
        let joiners: Vec<NodeIdx> =
            all[first_joiner..].iter().copied().filter(|i| net.sim.core(*i).is_some()).collect();
        if joiners.is_empty() {
            return net;
        }
        net.sim.run_for(sc.settle);
        for idx in joiners {
            net.sim.run_for(sc.join_gap);
            let _ = net.sim.command(idx, Command::Dht(DhtCommand::Bootstrap));
        }
        net.sim.run_for(sc.settle);
        for &idx in &net.honest {
            net.sim.take_replies(idx);
        }
        net
    }

    /// Gives every honest node of `nodes` the routing table a settled network of `nodes`
    /// converges to: for each bucket, up to `k` nodes of its id range drawn at random,
    /// answering adversaries among them at their share (`Dht::start_settled`). Ids sorted, a
    /// bucket's range is a slice found by two binary searches, so this costs O(n log n)
    /// however large the network.
    fn settle_tables(&mut self, nodes: &[NodeIdx], k: usize) {
        // A verified entry answered us once: a silent adversary never does, so it is in no
        // settled table (it can still be a joining node's contact).
        let mut sorted: Vec<(NodeId, NodeIdx)> = nodes
            .iter()
            .filter(|&&i| self.sim.kind(i) != Some(NodeKind::Silent))
            .filter_map(|&i| Some((self.sim.node_id(i)?, i)))
            .collect();
        sorted.sort_unstable();
        let count = |lo: &NodeId, hi: &NodeId| {
            let start = sorted.partition_point(|(x, _)| x < lo);
            (start, sorted.partition_point(|(x, _)| x <= hi) - start)
        };
        let now = self.sim.now();
        for &(id, idx) in &sorted {
            if self.sim.core(idx).is_none() {
                continue;
            }
            let mut peers = Vec::new();
            for bucket in 0..ID_BITS {
                // Bucket `bucket`: ids sharing our first `bucket` bits, differing at the next.
                let mut far = *id.as_bytes();
                far[bucket / 8] ^= 0x80 >> (bucket % 8);
                let (lo, hi) = prefix_span(&far, bucket + 1);
                let (start, n) = count(&lo, &hi);
                for j in sample(&mut self.rng, n, k) {
                    let (peer, at) = sorted[start + j];
                    peers.extend(self.sim.addr(at).map(|a| PeerInfo { id: peer, addrs: vec![a] }));
                }
                // Nobody else shares our first `bucket + 1` bits: every nearer bucket is empty.
                let (lo, hi) = prefix_span(id.as_bytes(), bucket + 1);
                if count(&lo, &hi).1 <= 1 {
                    break;
                }
            }
            if let Some(core) = self.sim.core_mut(idx) {
                core.dht_mut().start_settled(now, peers);
            }
            self.sim.flush(idx);
        }
    }

    /// `from` joins through `contacts` (`DhtCommand::Join`), as a node given them as its
    /// bootstrap list does: dialled now, and again while its table stays empty.
    fn join(&mut self, from: NodeIdx, contacts: &[NodeIdx]) {
        let contacts = contacts
            .iter()
            .filter_map(|&to| {
                Some(PeerInfo { id: self.sim.node_id(to)?, addrs: vec![self.sim.addr(to)?] })
            })
            .collect();
        let _ = self.sim.command(from, Command::Dht(DhtCommand::Join { contacts }));
    }

    /// Whether `id` is one of the honest nodes.
    pub fn is_honest(&self, id: &NodeId) -> bool {
        self.honest_ids.contains(id)
    }

    /// A random live honest node.
    pub fn random_honest(&mut self) -> Option<NodeIdx> {
        let live: Vec<NodeIdx> =
            self.honest.iter().copied().filter(|&i| self.sim.is_alive(i)).collect();
        let pick = self.rng.below(live.len() as u64) as usize;
        live.get(pick).copied()
    }

    /// The honest node nearest to `target` among the live ones that `skip` does not exclude.
    pub fn nearest_honest(
        &self,
        target: &NodeId,
        skip: impl Fn(NodeIdx) -> bool,
    ) -> Option<NodeId> {
        self.honest
            .iter()
            .filter(|&&i| self.sim.is_alive(i) && !skip(i))
            .filter_map(|&i| self.sim.node_id(i))
            .min_by_key(|id| id.distance(target))
    }

    /// Runs until every command in `pending` has a reply or `max` virtual time passes; returns
    /// the replies by command.
    pub fn collect(
        &mut self,
        pending: &BTreeMap<CommandId, NodeIdx>,
        max: Duration,
    ) -> BTreeMap<CommandId, Reply> {
        let mut got = BTreeMap::new();
        let deadline = self.sim.elapsed() + max;
        let nodes: Vec<NodeIdx> = {
            let mut v: Vec<NodeIdx> = pending.values().copied().collect();
            v.sort();
            v.dedup();
            v
        };
        while got.len() < pending.len() && self.sim.elapsed() < deadline {
            let step = (self.sim.elapsed() + Duration::from_millis(100)).min(deadline);
            self.sim.run_until(step);
            for &n in &nodes {
                for (id, reply) in self.sim.take_replies(n) {
                    if pending.contains_key(&id) {
                        got.insert(id, reply);
                    }
                }
            }
        }
        got
    }
}

/// The lowest and highest ids whose first `len` bits are those of `prefix`.
fn prefix_span(prefix: &[u8; ID_BYTES], len: usize) -> (NodeId, NodeId) {
    let (mut lo, mut hi) = (*prefix, *prefix);
    for bit in len..ID_BITS {
        let mask = 0x80u8 >> (bit % 8);
        lo[bit / 8] &= !mask;
        hi[bit / 8] |= mask;
    }
    (NodeId::from_bytes(lo), NodeId::from_bytes(hi))
}

/// `min(k, n)` distinct indices below `n`, drawn at random. Where `n` is far larger than `k`
/// (bucket 0 holds half the network) by redrawing a repeat, so the cost does not grow with `n`.
fn sample(rng: &mut Rng, n: usize, k: usize) -> Vec<usize> {
    if n <= 4 * k {
        return rng.distinct_below(n, k);
    }
    let mut picked: Vec<usize> = Vec::with_capacity(k);
    while picked.len() < k {
        let j = rng.below(n as u64) as usize;
        if !picked.contains(&j) {
            picked.push(j);
        }
    }
    picked
}

/// A lookup in flight: origin, target key, the value a GET must return, start time.
type Started = (NodeIdx, Key, Option<Vec<u8>>, Duration);

/// Runs `sc` and measures it (the module doc describes how).
pub fn run(sc: &DhtScenario) -> DhtReport {
    let mut net = DhtNet::build(sc);
    // Records for a Get scenario, PUT from random honest nodes.
    let mut records: Vec<(Key, Vec<u8>)> = Vec::new();
    let mut puts = (0, 0);
    let mut put_ms = Vec::new();
    if sc.kind == LookupKind::Get {
        let mut pending = BTreeMap::new();
        for _ in 0..sc.lookups {
            let value = net.rng.bytes32().to_vec();
            records.push((immutable_key(&value), value.clone()));
            let Some(from) = net.random_honest() else { break };
            let put = DhtCommand::Put {
                record: Record::Immutable { value: ByteBuf::from(value) },
                expected_seq: None,
            };
            if let Ok(id) = net.sim.command(from, Command::Dht(put)) {
                pending.insert(id, from);
            }
            net.sim.run_for(sc.lookup_gap);
        }
        let replies = net.collect(&pending, Duration::from_secs(120));
        for reply in replies.values() {
            if let Reply::Dht(DhtReply::Put(Ok(p))) = reply {
                put_ms.push(p.duration.as_secs_f64() * 1e3);
            }
        }
        puts = (records.len(), put_ms.len());
    }

    // Churn schedule over the lookup phase: (offset, node, comes back).
    let phase = sc.lookup_gap * sc.lookups as u32;
    let leaving = (sc.churn * net.honest.len() as f64).round() as usize;
    let mut churn: Vec<(Duration, NodeIdx, bool)> = net
        .rng
        .distinct_below(net.honest.len(), leaving)
        .into_iter()
        .enumerate()
        .map(|(n, i)| {
            let at = phase.mul_f64(net.rng.unit());
            (at, net.honest[i], n % 2 == 0)
        })
        .collect();
    churn.sort_by_key(|c| c.0);
    let mut revivals: Vec<(Duration, NodeIdx)> = Vec::new();
    let mut churned = (0, 0);

    let start = net.sim.elapsed();
    let mut pending = BTreeMap::new();
    let mut lookups: BTreeMap<CommandId, Started> = BTreeMap::new();
    // When each churned node was down: (left, came back), on the virtual clock.
    let mut down: BTreeMap<NodeIdx, Vec<(Duration, Duration)>> = BTreeMap::new();
    let mut next_churn = churn.into_iter().peekable();
    for n in 0..sc.lookups {
        let now = start + sc.lookup_gap * n as u32;
        net.sim.run_until(now);
        while let Some(&(at, idx, back)) = next_churn.peek() {
            if start + at > now {
                break;
            }
            next_churn.next();
            if net.sim.kill(idx).is_ok() {
                churned.0 += 1;
                down.entry(idx).or_default().push((now, Duration::MAX));
                if back {
                    revivals.push((at + sc.churn_return, idx));
                }
            }
        }
        revivals.retain(|&(at, idx)| {
            if start + at > now {
                return true;
            }
            if net.sim.revive(idx).is_ok() {
                churned.1 += 1;
                if let Some(last) = down.get_mut(&idx).and_then(|v| v.last_mut()) {
                    last.1 = now;
                }
            }
            false
        });
        let Some(from) = net.random_honest() else { break };
        let (command, key, value) = match sc.kind {
            LookupKind::FindNode => {
                let target = NodeId::from_bytes(net.rng.bytes32());
                (DhtCommand::FindNode { target }, target, None)
            }
            LookupKind::Get => {
                let Some((key, value)) = records.get(n).cloned() else { break };
                (DhtCommand::Get { key }, key, Some(value))
            }
        };
        if let Ok(id) = net.sim.command(from, Command::Dht(command)) {
            pending.insert(id, from);
            lookups.insert(id, (from, key, value, now));
        }
    }
    let replies = net.collect(&pending, Duration::from_secs(120));

    let mut stats: Vec<LookupStats> = Vec::new();
    let mut succeeded = 0;
    let mut abandoned = 0;
    for (id, (from, key, value, started)) in &lookups {
        let Some(Reply::Dht(reply)) = replies.get(id) else {
            // An origin that left took its lookup with it: not a DHT failure.
            if down.contains_key(from) {
                abandoned += 1;
            }
            continue;
        };
        let (ok, s) = match reply {
            DhtReply::FindNode(Ok(found)) => {
                // Only honest peers count (an adversary may claim any id), and the origin
                // counts as found: a lookup never returns its own node.
                let origin = net.sim.node_id(*from);
                let best_found = found
                    .peers
                    .iter()
                    .map(|p| p.id)
                    .filter(|id| net.is_honest(id))
                    .chain(origin)
                    .map(|id| id.distance(key))
                    .min();
                // The truth: the nearest honest node that was up for the whole lookup.
                let end = *started + found.stats.duration;
                let was_down = |idx: NodeIdx| {
                    down.get(&idx)
                        .is_some_and(|v| v.iter().any(|&(l, b)| l <= end && b >= *started))
                };
                let ok = match (best_found, net.nearest_honest(key, was_down)) {
                    (Some(got), Some(best)) => got <= best.distance(key),
                    _ => false,
                };
                (ok, Some(found.stats))
            }
            DhtReply::Get(Ok(found)) => {
                (Some(found.record.value()) == value.as_deref(), Some(found.stats))
            }
            DhtReply::Get(Err(crate::kad::dht::DhtError::NotFound(s))) => (false, Some(*s)),
            _ => (false, None),
        };
        succeeded += usize::from(ok);
        stats.extend(s);
    }
    DhtReport {
        honest: net.honest.len(),
        adversaries: net.adversaries.len(),
        lookups: lookups.len() - abandoned,
        abandoned,
        succeeded,
        puts,
        put_latency_ms: Spread::of(put_ms),
        churned,
        rounds: Spread::of(stats.iter().map(|s| f64::from(s.rounds)).collect()),
        rpcs: Spread::of(stats.iter().map(|s| f64::from(s.rpcs)).collect()),
        latency_ms: Spread::of(stats.iter().map(|s| s.duration.as_secs_f64() * 1e3).collect()),
        virtual_s: net.sim.elapsed().as_secs_f64(),
        sim: net.sim.stats(),
        tables: check_tables(&net),
        requests_pipelined: sum_honest(&net, |c| c.stats().requests_pipelined),
        early_stores: sum_honest(&net, |c| c.dht().stats().early_stores),
        preconnects: sum_honest(&net, |c| c.stats().preconnects),
        trace_digest: net.sim.trace_digest(),
    }
}
