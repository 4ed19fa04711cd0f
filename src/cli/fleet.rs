//! Many nodes in one process (`petrel devnet`, `petrel bench dht|gossip|idle`): each connection
//! between two of them holds two descriptors of the process, one per end, so N nodes with the
//! default 256 connections each would need far more than a usual descriptor limit. [`limits`]
//! raises the soft limit to the hard one, then sizes each node's connection limits to its
//! share, or fails at once saying how many descriptors the nodes need.
//!
//! The benches build the same fleet: [`start_nodes`] (keys and seeds from one [`Rng`]),
//! [`connect_overlay`] (node i dials D random earlier nodes), and for gossip [`meshed`]: the
//! same, every node subscribed to one topic, once every node has a mesh peer
//! ([`wait_for_meshes`]).

use std::time::{Duration, Instant};

use crate::config::Config;
use crate::core::PeerLimits;
use crate::identity::Keypair;
use crate::node::{Handle, Node, Subscription};
use crate::rng::Rng;
use crate::runtime::descriptors;
use crate::runtime::limiter::LimiterConfig;

/// Fewest connections a node may be given: the k = 20 closest peers of its own id, twice.
pub const MIN_CONNECTIONS: u64 = 40;
/// Connections beyond one per peer that a node may hold while duplicates resolve.
const DUPLICATE_SLACK: u64 = 16;

/// The connection limits of each of `nodes` nodes of this process, and how many connections
/// each may hold. With fewer slots than the default, a node with every inbound slot taken
/// closes its idlest inbound connection (with nothing in flight) at once for a newcomer,
/// instead of only one idle for 30 s: here the slots are scarce by construction, not because
/// peers are busy.
pub fn limits(nodes: usize) -> Result<(PeerLimits, u64), String> {
    let limit = descriptors::raise_limit().map_err(|e| format!("descriptor limit: {e}"))?;
    let n = nodes as u64;
    // A node has at most N − 1 peers; a few more cover duplicate connections while they
    // resolve. Within that, the default limits never bind.
    let default = PeerLimits::DEFAULT.max_connections as u64;
    let wanted = default.min(n.saturating_sub(1) + DUPLICATE_SLACK);
    let connections = descriptors::budget(n, limit, wanted, MIN_CONNECTIONS.min(wanted))
        .map_err(|e| e.to_string())?;
    if connections >= wanted {
        return Ok((PeerLimits::DEFAULT, connections));
    }
    let slots = usize::try_from(connections).unwrap_or(usize::MAX);
    let limits = PeerLimits {
        max_connections: slots,
        max_inbound: slots / 2,
        max_outbound: slots / 2,
        inbound_prune_idle: Duration::ZERO,
        ..PeerLimits::DEFAULT
    };
    Ok((limits, connections))
}

/// Starts `count` nodes on 127.0.0.1. Node i's key and then its core seed are drawn from
/// `rng`, in node order; its connection limits are [`limits`]'s; its per-source admission
/// rate is raised to the node-wide one, because every node shares the source address
/// 127.0.0.1 (on a real network each peer has its own). `adjust` may change the rest of node
/// i's configuration.
pub fn start_nodes(
    count: usize,
    rng: &mut Rng,
    adjust: impl Fn(usize, Config) -> Config,
) -> Result<Vec<Node>, String> {
    let limiter = LimiterConfig {
        per_ip_conns_per_sec: LimiterConfig::DEFAULT.new_conns_per_sec,
        per_ip_conns_burst: LimiterConfig::DEFAULT.new_conns_burst,
        ..LimiterConfig::DEFAULT
    };
    let (limits, _) = limits(count)?;
    (0..count)
        .map(|i| {
            let config = Config {
                keypair: Some(Keypair::from_seed(rng.bytes32())),
                rng_seed: Some(rng.next_u64()),
                limiter: limiter.clone(),
                limits,
                ..Config::default()
            };
            Node::start(adjust(i, config)).map_err(|e| format!("node {i}: {e}"))
        })
        .collect()
}

/// Node i (from 1) dials `degree` distinct random earlier nodes (all of them while i <=
/// `degree`), one dial at a time, so the overlay is connected. Returns the dials made.
pub fn connect_overlay(nodes: &[Node], rng: &mut Rng, degree: usize) -> Result<usize, String> {
    let mut dials = 0;
    for (i, node) in nodes.iter().enumerate().skip(1) {
        let handle = node.handle();
        for j in rng.distinct_below(i, degree) {
            handle.connect(nodes[j].peer_addr()).map_err(|e| format!("node {i} dial: {e}"))?;
            dials += 1;
        }
    }
    Ok(dials)
}

/// A fleet whose nodes all subscribe to one topic.
pub struct Meshed {
    /// The nodes, in start order.
    pub nodes: Vec<Node>,
    /// A handle of each node.
    pub handles: Vec<Handle>,
    /// Each node's subscription to the topic.
    pub subs: Vec<Subscription>,
    /// How the wait for the meshes ended.
    pub mesh: MeshWait,
}

/// Starts `count` nodes ([`start_nodes`], defaults otherwise), connects them
/// ([`connect_overlay`] with `degree`), subscribes every node to `topic`, and waits at most
/// `mesh_timeout` until each has a mesh peer in it ([`wait_for_meshes`]).
pub fn meshed(
    count: usize,
    rng: &mut Rng,
    degree: usize,
    topic: &str,
    mesh_timeout: Duration,
) -> Result<Meshed, String> {
    let nodes = start_nodes(count, rng, |_, config| config)?;
    let handles: Vec<Handle> = nodes.iter().map(Node::handle).collect();
    connect_overlay(&nodes, rng, degree)?;
    let subs = handles
        .iter()
        .enumerate()
        .map(|(i, h)| h.subscribe(topic).map_err(|e| format!("node {i} subscribe: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    let mesh = wait_for_meshes(&handles, topic, mesh_timeout);
    Ok(Meshed { nodes, handles, subs, mesh })
}

/// How the wait for gossip meshes ended.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct MeshWait {
    /// Every node had at least one mesh peer in the topic.
    pub ready: bool,
    /// Seconds waited.
    pub wait_s: f64,
    /// Fewest mesh peers of any node, at the end of the wait.
    pub min: usize,
    /// Mesh peers per node, mean, at the end of the wait.
    pub mean: f64,
}

impl MeshWait {
    /// One line for a person: ready or not, after how long, min and mean.
    pub fn human(&self) -> String {
        format!(
            "meshes {} after {:.3} s (min {}, mean {:.1})",
            if self.ready { "ready" } else { "NOT ready" },
            self.wait_s,
            self.min,
            self.mean
        )
    }
}

/// Asks every node for its mesh in `topic` every `MESH_POLL` until each has at least one
/// peer, or `timeout` has passed.
pub fn wait_for_meshes(handles: &[Handle], topic: &str, timeout: Duration) -> MeshWait {
    let started = Instant::now();
    loop {
        let sizes = mesh_sizes(handles, topic);
        let min = sizes.iter().copied().min().unwrap_or(0);
        let waited = started.elapsed();
        if min > 0 || waited >= timeout {
            let mean = sizes.iter().sum::<usize>() as f64 / sizes.len().max(1) as f64;
            return MeshWait { ready: min > 0, wait_s: waited.as_secs_f64(), min, mean };
        }
        std::thread::sleep(MESH_POLL.min(timeout - waited));
    }
}

/// Mesh peers of each node in `topic` (0 for a node that does not answer or is not in it).
pub fn mesh_sizes(handles: &[Handle], topic: &str) -> Vec<usize> {
    handles
        .iter()
        .map(|h| {
            let meshes = h.meshes().unwrap_or_default();
            meshes.iter().find(|(t, _)| t == topic).map_or(0, |(_, peers)| *peers)
        })
        .collect()
}

/// How often [`wait_for_meshes`] asks (the reference harness polls at the same period).
const MESH_POLL: Duration = Duration::from_millis(100);
