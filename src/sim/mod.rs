//! The deterministic network simulator (DESIGN.md, "The shape", item 4; STYLE.md §8.2).
//!
//! [`Sim`] drives many [`NodeCore`]s without sockets or TLS on a virtual clock: a delivery
//! queue, seeded per-link latency and loss, partitions and healing, churn, and adversarial
//! nodes ([`NodeKind`]). Same seed, same script: same run, event for event
//! ([`Sim::trace_digest`]).
//!
//! It uses only the driving contract of `NodeCore` (`handle`, `handle_timeout`, `poll_output`,
//! `next_deadline`) and treats `Command` and `Reply` as opaque: commands go in with
//! [`Sim::command`], replies come out of [`Sim::take_replies`].
//!
//! # Model
//!
//! - **Clock.** `epoch` is the one `Instant::now()` of a run; every input gets
//!   `epoch + virtual time`. Events pop in `(time, insertion)` order ([`queue`]).
//! - **Connections.** With one-way latency `L` (per direction, [`LatencyModel`]), what TCP
//!   and TLS 1.3 cost: a dial reaches the target after `L` (`Input::Accepted` there; a
//!   refusal, the core's `Disconnect`, reaches the dialer as `PeerClosed` after another `L`).
//!   The SYN-ACK, the ClientHello and the acceptor's TLS flight take `3 L` more: at `4 L` the
//!   dialer's TLS is done (`Input::Authenticated`, so its core sends the requests that waited,
//!   handshake.md §2.1; not with `SimConfig::pipelining` off). Its Finished and Hello reach the
//!   acceptor at `5 L` (`Input::Established` there, ahead of those requests), and the
//!   acceptor's Hello reaches the dialer at `6 L` (`Input::Established`), ahead of the answers.
//!   A target whose id is not the one dialled fails the dialer at `4 L` with the close cause
//!   the real transport reports (`CloseCause::WrongKey`, so `ConnectError::WrongKey`) and the
//!   acceptor with `PeerClosed` `L` later; a dial-back ends there too. An address no node has,
//!   or a dead node: `TcpFailed` after one RTT.
//! - **Messages.** `Output::Send` arrives after `L`, in order per link and direction (as on
//!   TCP). Each message is lost with probability `loss`, drawn from the run's generator. TCP
//!   would retransmit; we model the loss as a lost RPC, which lookup timeouts must survive.
//!   Dials, handshakes and closes are never lost.
//! - **Closing.** `Output::Disconnect` closes the local side at once: the core gets
//!   `Input::Closed` with `CloseCause::LocalClose(reason)` in the same drive, after the outputs already queued,
//!   as the reactor does in its sweep. The other side gets `PeerClosed` after `L`, behind
//!   the messages sent before.
//! - **Partitions.** [`Sim::partition`] puts nodes in groups; nodes not listed share one
//!   group. Messages and close notifications across groups are dropped, at send and at
//!   delivery (so in flight ones too). A dial or handshake across groups never completes:
//!   the dialer's own connect timeout fires (`ConnectError::Timeout`), as when SYNs vanish.
//!   Connections across a partition stay open until the cores' idle timeouts close them.
//! - **Churn.** [`Sim::kill`] silences a node at once: its links close, its peers get
//!   `TcpFailed` after `L`, its core is kept but no longer driven. [`Sim::revive`] brings it
//!   back with the same id and address; its core hears `TcpFailed` for every connection it
//!   had, so it starts with no links. [`Sim::replace_core`] swaps in a fresh core.
//! - **Timers.** After each drive the node's `next_deadline()` is scheduled; per node only
//!   the earliest is kept live and stale timer events are skipped when popped. A deadline
//!   still due right after `handle_timeout` is retried [`TIMER_RETRY`] later, so a core that
//!   never clears one cannot stall virtual time.
//! - **Workers.** `Output::Job` runs inline (`protocol::jobs::run` is pure) and its result goes
//!   back to the core in the same drive.
//! - **Adversaries** have no core; see [`adversary`]. A `Flood` node dials
//!   `flood_fanout` random honest nodes, keeps that many links, and sends `FindNode` with
//!   random targets round-robin over them at its rate. Adversaries learn of a close at once.
//! - **Bounds.** The event queue holds at most `max_queued_events` deliveries and dial
//!   steps; past that they are dropped and counted (a dropped delivery is a lost message, a
//!   dropped dial step stalls into a connect timeout). Timers and close notifications are
//!   always queued: there are at most a few per node and link. Replies kept per node are
//!   capped at `max_collected` and events at `max_events`; the oldest go first, counted in
//!   [`SimStats`].
//!
//! Driver tests are in `sim_tests.rs`, as the core's are in `core/node_tests.rs`.

pub mod adversary;
pub mod dht;
pub mod gossip;
pub mod gossip_adversary;
mod links;
pub mod net;
pub mod queue;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

pub use adversary::{Adversary, AdversaryStats, NodeKind};
pub use net::{LatencyModel, MATRIX_FALLBACK};
pub use queue::{EventQueue, QueueFull};

use std::sync::Arc;

use crate::core::{Command, CommandId, ConnId, Event, Input, NodeCore, Output, Reply};
use crate::gossip::GossipEvent;
use crate::identity::NodeId;
use crate::protocol::jobs;
use crate::protocol::{Job, JobResult, Verdict};
use crate::rng::Rng;
use crate::transport::CloseCause;
use crate::wire::messages::{
    GoodbyeReason, Hello, Message, FEATURE_GOSSIP, FEATURE_KAD, PROTOCOL_VERSION,
};
use crate::wire::messages::{GossipMessage, MessageId};
use links::{CloseWhy, Link, LinkId, LinkState, Side};
use net::AddrPlan;

/// A node's index in a [`Sim`], in the order nodes were added.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct NodeIdx(pub usize);

/// Settings of a simulation.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Seeds addresses, loss, link latencies and adversaries.
    pub seed: u64,
    /// One-way link latency.
    pub latency: LatencyModel,
    /// Probability that a message is lost, each independently.
    pub loss: f64,
    /// Deliveries and dial steps queued at most (see the module doc).
    pub max_queued_events: usize,
    /// Replies kept per node until taken.
    pub max_collected: usize,
    /// Events kept per node until taken; 0 discards them at once (still counted). A driver
    /// that never takes events sets 0: otherwise every node keeps up to this many peer
    /// up/down events it will never read (80 bytes each; 15 % of a 10,000-node DHT run's
    /// peak memory).
    pub max_events: usize,
    /// Honest nodes a `Flood` adversary keeps connections to.
    pub flood_fanout: usize,
    /// Records a `BadRecords` adversary keeps.
    pub max_adversary_records: usize,
    /// Each node's uplink, bytes per second: its messages leave one after another, so a
    /// large message sent to many peers takes time to reach the last. `None`: unlimited.
    pub bandwidth: Option<u64>,
    /// How long a worker job takes, hand-off to result (a check's thread hops and signature
    /// work). Zero: jobs finish in the same drive.
    pub job_delay: Duration,
    /// Keep gossip deliveries as `(node, time, id)` for [`Sim::take_deliveries`] instead of
    /// as node events, up to this many (then counted in `deliveries_dropped`); 0: off.
    pub record_deliveries: usize,
    /// A dialer's requests leave with its Hello, right after TLS (`Input::Authenticated`,
    /// handshake.md §2.1), as the runtime sends them; false: they wait for the peer's Hello,
    /// a round trip later (for comparison).
    pub pipelining: bool,
}

impl SimConfig {
    /// The defaults with `seed`: 25 ms fixed latency, no loss, 4 Mi queued events, 1024
    /// collected replies and 1024 events per node, flood fan-out 3, 1024 adversary records.
    pub fn new(seed: u64) -> SimConfig {
        SimConfig {
            seed,
            latency: LatencyModel::Fixed(Duration::from_millis(25)),
            loss: 0.0,
            max_queued_events: 1 << 22,
            max_collected: 1024,
            max_events: 1024,
            flood_fanout: 3,
            max_adversary_records: 1024,
            bandwidth: None,
            job_delay: Duration::ZERO,
            record_deliveries: 0,
            pipelining: true,
        }
    }
}

impl Default for SimConfig {
    fn default() -> SimConfig {
        SimConfig::new(0)
    }
}

/// Counters of a run. Equal seeds and scripts give equal counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SimStats {
    /// Events popped from the queue.
    pub events: u64,
    /// Worker jobs the cores asked for, run inline.
    pub jobs_run: u64,
    /// Commands handed to cores.
    pub commands: u64,
    /// Node timers fired (`handle_timeout` calls, adversary ticks included).
    pub timers_fired: u64,
    /// Timer events skipped because a newer one replaced them.
    pub timers_stale: u64,
    /// Dials started (by cores and flood adversaries).
    pub dials: u64,
    /// Dials that failed: no such address, dead target, or refused by the target's limits.
    pub dials_failed: u64,
    /// Dials that reached a node with another id than the one expected.
    pub dials_wrong_key: u64,
    /// Dials or handshakes dropped by a partition (they end in a connect timeout).
    pub dials_stalled: u64,
    /// Inbound connections the target's core refused (included in `dials_failed`).
    pub inbound_refused: u64,
    /// Connections established.
    pub handshakes: u64,
    /// Dial-backs that authenticated their peer (and closed).
    pub probes: u64,
    /// Connection ends closed, for any reason.
    pub closes: u64,
    /// Messages sent on a link.
    pub messages_sent: u64,
    /// Messages handed to the receiver.
    pub messages_delivered: u64,
    /// Messages lost to the loss model.
    pub messages_lost: u64,
    /// Messages and close notifications dropped by a partition.
    pub messages_partitioned: u64,
    /// Messages that arrived at a closed end.
    pub messages_undeliverable: u64,
    /// `Send` or `Disconnect` on a connection the simulator does not know (ignored, as the
    /// reactor does).
    pub outputs_unknown_conn: u64,
    /// Deliveries and dial steps dropped because the event queue was full.
    pub queue_full_drops: u64,
    /// Replies dropped (oldest first) at `max_collected`.
    pub replies_dropped: u64,
    /// Node events dropped (oldest first) at `max_events`; with 0, every event.
    pub node_events_dropped: u64,
    /// `FindNode` requests sent by flood adversaries.
    pub flood_requests_sent: u64,
    /// Requests adversaries answered.
    pub adversary_answered: u64,
    /// Requests adversaries left unanswered.
    pub adversary_ignored: u64,
    /// Records `BadRecords` adversaries refused to keep at their cap.
    pub adversary_records_refused: u64,
    /// Events not queued because they fell past [`MAX_VIRTUAL_TIME`].
    pub beyond_horizon: u64,
    /// Bytes of every message sent on a link (frame header included).
    pub bytes_sent: u64,
    /// Gossip deliveries not recorded past `record_deliveries`.
    pub deliveries_dropped: u64,
    /// Gossip signature checks answered from the run's memo (every node checks the same
    /// message; the simulator checks it once).
    pub checks_memoized: u64,
}

/// A simulator call that names a node it cannot use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SimError {
    /// No node has this index.
    UnknownNode(NodeIdx),
    /// The node is an adversary: it has no core to command.
    NotHonest(NodeIdx),
    /// The node is killed; revive it first.
    Dead(NodeIdx),
}

/// The simulated network. See the module doc for the model.
#[derive(Debug)]
pub struct Sim {
    config: SimConfig,
    epoch: Instant,
    time: Duration,
    queue: EventQueue<SimEvent>,
    rng: Rng,
    addrs: AddrPlan,
    nodes: Vec<Node>,
    by_addr: HashMap<SocketAddr, NodeIdx>,
    /// Nodes with a core, for flood targets.
    honest: Vec<NodeIdx>,
    /// Every `Eclipse` adversary, which they all name to each other.
    colluders: Vec<crate::wire::messages::PeerInfo>,
    /// Keyed lookups only: never iterated, so its order cannot leak into a run.
    links: HashMap<LinkId, Link>,
    next_link: LinkId,
    /// Ids of accepted connections, shared by every node (ids need only be unique per core).
    next_inbound: u64,
    next_command: u64,
    stats: SimStats,
    trace: Sha256,
    /// Recorded gossip deliveries (see `SimConfig::record_deliveries`).
    deliveries: Vec<(NodeIdx, Duration, MessageId)>,
    /// Verdicts of gossip signature checks by message digest (see `checks_memoized`).
    check_memo: HashMap<[u8; 32], bool>,
}

impl Sim {
    /// An empty network whose clock starts now.
    pub fn new(config: SimConfig) -> Sim {
        let mut rng = Rng::new(config.seed);
        let addrs = AddrPlan::new(&mut rng);
        Sim {
            queue: EventQueue::new(config.max_queued_events),
            config,
            // The one clock read of a run: the epoch of the virtual time.
            epoch: Instant::now(),
            time: Duration::ZERO,
            rng,
            addrs,
            nodes: Vec::new(),
            by_addr: HashMap::new(),
            honest: Vec::new(),
            colluders: Vec::new(),
            links: HashMap::new(),
            next_link: 0,
            next_inbound: 0,
            next_command: 1,
            stats: SimStats::default(),
            trace: Sha256::new(),
            deliveries: Vec::new(),
            check_memo: HashMap::new(),
        }
    }

    /// Adds a node driven by `core` (built for `id`); it listens on [`Sim::addr`].
    pub fn add_node(&mut self, id: NodeId, core: NodeCore) -> NodeIdx {
        let idx = self.push_node(id, Role::Honest(Box::new(core)));
        self.honest.push(idx);
        self.flush(idx);
        idx
    }

    /// Adds an adversary of `kind` with identity `id`; the simulator answers for it.
    pub fn add_adversary(&mut self, id: NodeId, kind: NodeKind) -> NodeIdx {
        let seed = net::mix(self.config.seed, self.nodes.len() as u64, ADVERSARY_SEED_TAG);
        let adversary = Adversary::new(kind, seed, self.config.max_adversary_records);
        let idx = self.push_node(id, Role::Adversary(Box::new(adversary)));
        if kind == NodeKind::Eclipse {
            let addrs = self.addr(idx).into_iter().collect();
            self.colluders.push(crate::wire::messages::PeerInfo { id, addrs });
        }
        self.schedule_tick(idx, self.time);
        idx
    }

    /// Where node `idx` listens.
    pub fn addr(&self, idx: NodeIdx) -> Option<SocketAddr> {
        self.nodes.get(idx.0).map(|n| n.addr)
    }

    /// The node listening on `addr`.
    pub fn node_at(&self, addr: SocketAddr) -> Option<NodeIdx> {
        self.by_addr.get(&addr).copied()
    }

    /// The id of node `idx`.
    pub fn node_id(&self, idx: NodeIdx) -> Option<NodeId> {
        self.nodes.get(idx.0).map(|n| n.id)
    }

    /// How node `idx` behaves (`Honest` for a core).
    pub fn kind(&self, idx: NodeIdx) -> Option<NodeKind> {
        self.nodes.get(idx.0).map(|n| match &n.role {
            Role::Honest(_) => NodeKind::Honest,
            Role::Adversary(a) => a.kind(),
        })
    }

    /// Nodes added, dead ones included.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether no node was added.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Whether node `idx` exists and is not killed.
    pub fn is_alive(&self, idx: NodeIdx) -> bool {
        self.nodes.get(idx.0).is_some_and(|n| n.alive)
    }

    /// The current virtual instant: `epoch + elapsed`.
    pub fn now(&self) -> Instant {
        self.epoch.checked_add(self.time).unwrap_or(self.epoch)
    }

    /// Virtual time since the start.
    pub fn elapsed(&self) -> Duration {
        self.time
    }

    /// The instant virtual time counts from.
    pub fn epoch(&self) -> Instant {
        self.epoch
    }

    /// One-way latency from `from` to `to` under the configured model.
    pub fn link_latency(&self, from: NodeIdx, to: NodeIdx) -> Duration {
        self.config.latency.one_way(self.config.seed, from.0 as u64, to.0 as u64)
    }

    /// Hands `command` to node `idx`'s core now; its reply comes out of
    /// [`Sim::take_replies`] under the returned id (unique in this run).
    pub fn command(&mut self, idx: NodeIdx, command: Command) -> Result<CommandId, SimError> {
        self.check_live_core(idx)?;
        let id = CommandId(self.next_command);
        self.next_command += 1;
        self.stats.commands += 1;
        self.record(TAG_COMMAND, idx.0 as u64, id.0);
        self.drive(idx, |core, now| core.handle(now, Input::Command { id, cmd: command }));
        Ok(id)
    }

    /// The replies node `idx` produced since the last call, oldest first.
    pub fn take_replies(&mut self, idx: NodeIdx) -> Vec<(CommandId, Reply)> {
        self.nodes.get_mut(idx.0).map(|n| n.replies.drain(..).collect()).unwrap_or_default()
    }

    /// The events node `idx` produced since the last call, oldest first.
    pub fn take_events(&mut self, idx: NodeIdx) -> Vec<Event> {
        self.nodes.get_mut(idx.0).map(|n| n.events.drain(..).collect()).unwrap_or_default()
    }

    /// Node `idx`'s core (`None` for an adversary).
    pub fn core(&self, idx: NodeIdx) -> Option<&NodeCore> {
        match &self.nodes.get(idx.0)?.role {
            Role::Honest(core) => Some(core),
            Role::Adversary(_) => None,
        }
    }

    /// Node `idx`'s core for direct inputs; call [`Sim::flush`] after feeding it, so that its
    /// outputs are routed and its timer rescheduled.
    pub fn core_mut(&mut self, idx: NodeIdx) -> Option<&mut NodeCore> {
        match &mut self.nodes.get_mut(idx.0)?.role {
            Role::Honest(core) => Some(core),
            Role::Adversary(_) => None,
        }
    }

    /// Node `idx`'s adversary state (`None` for a core).
    pub fn adversary(&self, idx: NodeIdx) -> Option<&Adversary> {
        match &self.nodes.get(idx.0)?.role {
            Role::Adversary(a) => Some(a),
            Role::Honest(_) => None,
        }
    }

    /// Routes node `idx`'s pending outputs and reschedules its timer.
    pub fn flush(&mut self, idx: NodeIdx) {
        self.drain(idx, false);
    }

    /// Processes the earliest event; `false` when none is queued.
    pub fn step(&mut self) -> bool {
        let Some((at, event)) = self.queue.pop() else { return false };
        self.time = self.time.max(at).min(MAX_VIRTUAL_TIME);
        self.stats.events += 1;
        self.process(event);
        true
    }

    /// Processes every event due by virtual time `t`, then sets the clock to `t`.
    pub fn run_until(&mut self, t: Duration) {
        while self.queue.peek_time().is_some_and(|at| at <= t) {
            self.step();
        }
        self.time = self.time.max(t).min(MAX_VIRTUAL_TIME);
    }

    /// Runs for `d` of virtual time.
    pub fn run_for(&mut self, d: Duration) {
        self.run_until(self.time.saturating_add(d));
    }

    /// Runs until no event is queued (`true`) or the next one is past virtual time `max`
    /// (`false`, the clock is then `max`). Connected cores keep idle timers, so a network
    /// with connections is rarely idle.
    pub fn run_until_idle(&mut self, max: Duration) -> bool {
        while self.queue.peek_time().is_some_and(|at| at <= max) {
            self.step();
        }
        if self.queue.is_empty() {
            return true;
        }
        self.time = self.time.max(max).min(MAX_VIRTUAL_TIME);
        false
    }

    /// Runs until `done` holds (checked before each event: `true`), or until nothing more is
    /// due by virtual time `max` (`false`, the clock is then `max`). Always bounded by `max`.
    pub fn run_until_cond(&mut self, max: Duration, mut done: impl FnMut(&Sim) -> bool) -> bool {
        loop {
            if done(self) {
                return true;
            }
            if self.queue.peek_time().is_none_or(|at| at > max) {
                break;
            }
            self.step();
        }
        self.time = self.time.max(max).min(MAX_VIRTUAL_TIME);
        false
    }

    /// Splits the network: each list is a group, and every node not listed is in one more
    /// group. A node listed twice lands in the last list. Replaces any earlier partition.
    pub fn partition(&mut self, groups: Vec<Vec<NodeIdx>>) {
        for node in &mut self.nodes {
            node.group = 0;
        }
        for (g, members) in groups.into_iter().enumerate() {
            for idx in members {
                if let Some(node) = self.nodes.get_mut(idx.0) {
                    node.group = g as u32 + 1;
                }
            }
        }
        self.record(TAG_PARTITION, 0, 0);
    }

    /// Removes the partition.
    pub fn heal(&mut self) {
        for node in &mut self.nodes {
            node.group = 0;
        }
        self.record(TAG_HEAL, 0, 0);
    }

    /// Whether a partition separates `a` and `b`.
    pub fn is_partitioned(&self, a: NodeIdx, b: NodeIdx) -> bool {
        match (self.nodes.get(a.0), self.nodes.get(b.0)) {
            (Some(x), Some(y)) => x.group != y.group,
            _ => false,
        }
    }

    /// Silences node `idx` at once (see the module doc).
    pub fn kill(&mut self, idx: NodeIdx) -> Result<(), SimError> {
        let node = self.nodes.get_mut(idx.0).ok_or(SimError::UnknownNode(idx))?;
        if !node.alive {
            return Ok(());
        }
        node.alive = false;
        node.timer_at = None;
        let orphans = self.close_all(idx, CloseWhy::TcpFailed);
        if let Some(node) = self.nodes.get_mut(idx.0) {
            node.orphans.extend(orphans);
        }
        self.record(TAG_KILL, idx.0 as u64, 0);
        Ok(())
    }

    /// Brings a killed node back with its id, address and core; the core hears `TcpFailed`
    /// for each connection it had.
    pub fn revive(&mut self, idx: NodeIdx) -> Result<(), SimError> {
        let node = self.nodes.get_mut(idx.0).ok_or(SimError::UnknownNode(idx))?;
        if node.alive {
            return Ok(());
        }
        node.alive = true;
        let orphans = std::mem::take(&mut node.orphans);
        self.record(TAG_REVIVE, idx.0 as u64, 0);
        for conn in orphans {
            let input = Input::Closed { conn, cause: CloseCause::TcpFailed };
            self.drive(idx, |core, now| core.handle(now, input));
        }
        self.flush(idx);
        self.schedule_tick(idx, self.time);
        Ok(())
    }

    /// Swaps node `idx`'s behaviour for `core` (a restart with the same id and address): its
    /// links close, peers hear `TcpFailed`. Returns the old core, if it had one. A dead node
    /// stays dead until revived.
    pub fn replace_core(
        &mut self,
        idx: NodeIdx,
        core: NodeCore,
    ) -> Result<Option<NodeCore>, SimError> {
        let node = self.nodes.get(idx.0).ok_or(SimError::UnknownNode(idx))?;
        let was_honest = matches!(node.role, Role::Honest(_));
        self.close_all(idx, CloseWhy::TcpFailed);
        let node = self.nodes.get_mut(idx.0).ok_or(SimError::UnknownNode(idx))?;
        node.orphans.clear();
        node.timer_at = None;
        let old = std::mem::replace(&mut node.role, Role::Honest(Box::new(core)));
        if !was_honest {
            self.honest.push(idx);
        }
        self.record(TAG_REPLACE, idx.0 as u64, 0);
        self.flush(idx);
        Ok(match old {
            Role::Honest(core) => Some(*core),
            Role::Adversary(_) => None,
        })
    }

    /// The run's counters, adversaries' included.
    pub fn stats(&self) -> SimStats {
        let mut stats = self.stats;
        for a in self.nodes.iter().filter_map(|n| match &n.role {
            Role::Adversary(a) => Some(a.stats()),
            Role::Honest(_) => None,
        }) {
            stats.adversary_answered += a.answered;
            stats.adversary_ignored += a.ignored;
            stats.adversary_records_refused += a.records_refused;
        }
        stats
    }

    /// SHA-256 over a compact record of every event processed and every script call (time,
    /// kind, nodes or link): equal digests mean equal runs.
    pub fn trace_digest(&self) -> [u8; 32] {
        self.trace.clone().finalize().into()
    }

    /// Events queued now.
    pub fn queued_events(&self) -> usize {
        self.queue.len()
    }

    // ---- Nodes ----

    fn push_node(&mut self, id: NodeId, role: Role) -> NodeIdx {
        let idx = NodeIdx(self.nodes.len());
        let addr = self.addrs.addr(idx.0);
        self.by_addr.insert(addr, idx);
        let hello = Arc::new(Hello {
            version: PROTOCOL_VERSION,
            network: SIM_NETWORK.into(),
            id_pow_bits: 0,
            features: FEATURE_KAD | FEATURE_GOSSIP,
            agent: SIM_AGENT.into(),
            listen_addrs: vec![addr],
        });
        self.nodes.push(Node {
            id,
            addr,
            hello,
            role,
            alive: true,
            group: 0,
            links: BTreeMap::new(),
            conns: BTreeMap::new(),
            orphans: Vec::new(),
            timer_at: None,
            replies: VecDeque::new(),
            events: VecDeque::new(),
            next_request: 1,
            round_robin: 0,
            uplink_free: ZERO,
        });
        self.record(TAG_ADD, idx.0 as u64, 0);
        idx
    }

    fn check_live_core(&self, idx: NodeIdx) -> Result<(), SimError> {
        let node = self.nodes.get(idx.0).ok_or(SimError::UnknownNode(idx))?;
        match (&node.role, node.alive) {
            (Role::Adversary(_), _) => Err(SimError::NotHonest(idx)),
            (Role::Honest(_), false) => Err(SimError::Dead(idx)),
            (Role::Honest(_), true) => Ok(()),
        }
    }

    fn live_core(&mut self, idx: NodeIdx) -> Option<&mut NodeCore> {
        match self.nodes.get_mut(idx.0) {
            Some(Node { alive: true, role: Role::Honest(core), .. }) => Some(core),
            _ => None,
        }
    }

    /// Feeds one input to a live core, then routes its outputs.
    fn drive(&mut self, idx: NodeIdx, input: impl FnOnce(&mut NodeCore, Instant)) {
        let now = self.now();
        let Some(core) = self.live_core(idx) else { return };
        input(core, now);
        self.drain(idx, false);
    }

    /// Routes every output of node `idx`, reports local closes like the reactor's sweep,
    /// and reschedules its timer. `fired`: a timer just fired.
    fn drain(&mut self, idx: NodeIdx, fired: bool) {
        let now = self.now();
        loop {
            let mut closes = Vec::new();
            while let Some(output) = self.live_core(idx).and_then(|c| c.poll_output()) {
                self.on_output(idx, output, &mut closes);
            }
            if closes.is_empty() {
                break;
            }
            for (conn, reason) in closes {
                if let Some(core) = self.live_core(idx) {
                    let cause = CloseCause::LocalClose(reason);
                    core.handle(now, Input::Closed { conn, cause });
                }
            }
        }
        self.schedule_timer(idx, fired);
    }

    fn on_output(
        &mut self,
        idx: NodeIdx,
        output: Output,
        closes: &mut Vec<(ConnId, GoodbyeReason)>,
    ) {
        match output {
            Output::Dial { conn, peer, addr, probe } => {
                self.dial(idx, Some(conn), peer, addr, probe);
            }
            Output::Send { conn, msg } => match self.link_of(idx, conn) {
                Some((link, side)) => self.send(link, side, msg),
                None => self.stats.outputs_unknown_conn += 1,
            },
            Output::Disconnect { conn, reason } => match self.link_of(idx, conn) {
                Some((link, side)) => {
                    self.close_end(link, side);
                    self.notify_other(link, side, CloseWhy::PeerClosed);
                    closes.push((conn, reason));
                }
                None => self.stats.outputs_unknown_conn += 1,
            },
            Output::Reply { id, reply } => self.collect(idx, Collected::Reply(id, reply)),
            Output::Event(Event::Gossip(GossipEvent::Message(d)))
                if self.config.record_deliveries > 0 =>
            {
                if self.deliveries.len() < self.config.record_deliveries {
                    self.deliveries.push((idx, self.time, d.id));
                } else {
                    self.stats.deliveries_dropped += 1;
                }
            }
            Output::Event(event) => self.collect(idx, Collected::Event(event)),
            // Workers run inline: a job is a pure function, so only the timing differs
            // from the runtime, and the run stays deterministic.
            Output::Job { id, job } => {
                self.stats.jobs_run += 1;
                let result = match job {
                    Job::CheckMessages { messages, validate } => self.check(messages, validate),
                    job => jobs::run(job, None),
                };
                if !self.config.job_delay.is_zero() {
                    let at = self.time.saturating_add(self.config.job_delay);
                    self.schedule(at, SimEvent::JobDone { node: idx, id, result });
                    return;
                }
                let now = self.now();
                if let Some(core) = self.live_core(idx) {
                    core.handle(now, Input::JobDone { id, result });
                }
            }
        }
    }

    /// A gossip check job, with each signature verified once per run: the verdict is kept by
    /// a digest of the whole message, so a copy that differs in any byte is checked anew.
    fn check(&mut self, messages: Vec<Arc<GossipMessage>>, validate: Vec<bool>) -> JobResult {
        if self.check_memo.len() > MAX_CHECK_MEMO {
            self.check_memo.clear();
        }
        let verdicts = messages
            .iter()
            .map(|m| {
                let mut h = Sha256::new();
                h.update(m.author.0);
                h.update(m.seqno.to_le_bytes());
                h.update((m.topic.len() as u64).to_le_bytes());
                h.update(m.topic.as_bytes());
                h.update(m.payload.as_slice());
                h.update(m.signature.0);
                let digest: [u8; 32] = h.finalize().into();
                let ok = match self.check_memo.get(&digest) {
                    Some(&ok) => {
                        self.stats.checks_memoized += 1;
                        ok
                    }
                    None => {
                        let ok = m.verify();
                        self.check_memo.insert(digest, ok);
                        ok
                    }
                };
                if ok {
                    Verdict::Accept
                } else {
                    Verdict::BadSignature
                }
            })
            .collect();
        let _ = validate; // The simulator has no application validators.
        JobResult::MessagesChecked(verdicts)
    }

    /// The recorded gossip deliveries so far, in the order they happened.
    pub fn take_deliveries(&mut self) -> Vec<(NodeIdx, Duration, MessageId)> {
        std::mem::take(&mut self.deliveries)
    }

    fn collect(&mut self, idx: NodeIdx, item: Collected) {
        let Some(node) = self.nodes.get_mut(idx.0) else { return };
        match item {
            Collected::Reply(id, reply) => {
                if push_capped(&mut node.replies, (id, reply), self.config.max_collected) {
                    self.stats.replies_dropped += 1;
                }
            }
            Collected::Event(event) => {
                if push_capped(&mut node.events, event, self.config.max_events) {
                    self.stats.node_events_dropped += 1;
                }
            }
        }
    }

    fn schedule_timer(&mut self, idx: NodeIdx, fired: bool) {
        let now = self.time;
        let epoch = self.epoch;
        let Some(node) = self.nodes.get_mut(idx.0) else { return };
        let Role::Honest(core) = &node.role else { return };
        let Some(deadline) = core.next_deadline().filter(|_| node.alive) else { return };
        let mut at = deadline.saturating_duration_since(epoch).max(now);
        if fired && at <= now {
            at = now.saturating_add(TIMER_RETRY);
        }
        if at <= MAX_VIRTUAL_TIME && node.timer_at.is_none_or(|t| at < t) {
            node.timer_at = Some(at);
            self.queue.push(at, SimEvent::Timer { node: idx });
        }
    }

    /// Adversaries use the node timer for their ticks; only `Flood` needs them.
    fn schedule_tick(&mut self, idx: NodeIdx, at: Duration) {
        let Some(node) = self.nodes.get_mut(idx.0) else { return };
        let is_flood = matches!(&node.role, Role::Adversary(a)
            if matches!(a.kind(), NodeKind::Flood { .. } | NodeKind::Gossip(_)));
        let due = at <= MAX_VIRTUAL_TIME && node.timer_at.is_none_or(|t| at < t);
        if is_flood && node.alive && due {
            node.timer_at = Some(at);
            self.queue.push(at, SimEvent::Timer { node: idx });
        }
    }

    /// Node `idx`'s Hello: one allocation per node, shared by all its connections' far ends.
    fn hello(&self, idx: NodeIdx) -> Option<Arc<Hello>> {
        self.nodes.get(idx.0).map(|n| Arc::clone(&n.hello))
    }

    // ---- Events ----

    fn process(&mut self, event: SimEvent) {
        match event {
            SimEvent::Arrive { link, expected } => {
                self.record(TAG_ARRIVE, link, 0);
                self.on_arrive(link, expected);
            }
            SimEvent::Handshake { link, expected } => {
                self.record(TAG_HANDSHAKE, link, 0);
                self.on_handshake(link, expected);
            }
            SimEvent::Hello { link, to } => {
                self.record(TAG_HELLO, link, to as u64);
                self.on_hello(link, to);
            }
            SimEvent::Deliver { link, to, msg } => {
                self.record(TAG_DELIVER, link, to as u64);
                self.trace.update(msg.kind().as_bytes());
                self.on_deliver(link, to, msg);
            }
            SimEvent::Closed { link, to, why, remote } => {
                self.record(TAG_CLOSED, link, to as u64);
                self.on_closed(link, to, why, remote);
            }
            SimEvent::Timer { node } => self.on_timer(node),
            SimEvent::JobDone { node, id, result } => {
                self.record(TAG_JOB, node.0 as u64, 0);
                self.drive(node, |core, now| core.handle(now, Input::JobDone { id, result }));
            }
        }
    }

    fn on_timer(&mut self, idx: NodeIdx) {
        let Some(node) = self.nodes.get_mut(idx.0) else { return };
        if !node.alive || node.timer_at != Some(self.time) {
            self.stats.timers_stale += 1;
            return;
        }
        node.timer_at = None;
        let adversary = matches!(node.role, Role::Adversary(_));
        self.stats.timers_fired += 1;
        self.record(TAG_TIMER, idx.0 as u64, 0);
        if adversary {
            if matches!(self.kind(idx), Some(NodeKind::Gossip(_))) {
                return self.on_gossip_tick(idx);
            }
            return self.on_flood_tick(idx);
        }
        let now = self.now();
        if let Some(core) = self.live_core(idx) {
            core.handle_timeout(now);
        }
        self.drain(idx, true);
    }

    /// The dial reached the target: admission, or a failure back to the dialer.
    fn on_arrive(&mut self, link: LinkId, expected: NodeId) {
        let Some(l) = self.links.get(&link) else { return };
        let (Some(dialer), Some(target)) = (l.ends[0].node(), l.ends[1].node()) else { return };
        if !l.ends[0].open {
            self.links.remove(&link); // the dialer gave up meanwhile
            return;
        }
        let back = l.latency(Side::Acceptor);
        if !self.is_alive(target) {
            self.stats.dials_failed += 1;
            return self.schedule_closed(link, Side::Dialer, CloseWhy::TcpFailed, back);
        }
        if self.is_partitioned(dialer, target) {
            self.stats.dials_stalled += 1;
            return;
        }
        let addr = self.addr(dialer).unwrap_or(UNSPECIFIED);
        let honest = matches!(self.nodes.get(target.0).map(|n| &n.role), Some(Role::Honest(_)));
        let conn = honest.then(|| {
            self.next_inbound += 1;
            ConnId::inbound(self.next_inbound)
        });
        self.open_end(link, Side::Acceptor, conn);
        if let Some(conn) = conn {
            // A refusal comes out as a Disconnect, which closes this end and tells the dialer.
            self.drive(target, |core, now| core.handle(now, Input::Accepted { conn, addr }));
            if !self.links.get(&link).is_some_and(|l| l.ends[1].open) {
                self.stats.inbound_refused += 1;
                self.stats.dials_failed += 1;
                return;
            }
        }
        // SYN-ACK back, ClientHello forward, the acceptor's TLS flight back.
        let forth = self.latency(link, Side::Dialer);
        let at = self.time.saturating_add(back).saturating_add(forth).saturating_add(back);
        if let Some(l) = self.links.get_mut(&link) {
            l.state = LinkState::Handshaking;
        }
        self.try_schedule(at, SimEvent::Handshake { link, expected });
        self.flush(target);
    }

    /// The dialer's TLS is done: a wrong key or a dial-back ends here. Otherwise its Finished
    /// and Hello leave for the acceptor, and with pipelining its core sends what waited for
    /// the peer right behind them.
    fn on_handshake(&mut self, link: LinkId, expected: NodeId) {
        let Some(l) = self.links.get(&link) else { return };
        let (Some(dialer), Some(target)) = (l.ends[0].node(), l.ends[1].node()) else { return };
        if !l.ends[0].open || !l.ends[1].open {
            return; // a side closed meanwhile and has told the other
        }
        if self.is_partitioned(dialer, target) {
            self.stats.dials_stalled += 1;
            return;
        }
        let dialer_conn = l.ends[0].conn;
        let target_id = self.node_id(target).unwrap_or(expected);
        if target_id != expected {
            self.stats.dials_wrong_key += 1;
            self.close_end(link, Side::Dialer);
            self.notify_other(link, Side::Dialer, CloseWhy::PeerClosed);
            if let Some(conn) = dialer_conn {
                let input = Input::Closed { conn, cause: CloseCause::WrongKey };
                self.drive(dialer, |core, now| core.handle(now, input));
            }
            return;
        }
        if l.probe {
            self.stats.probes += 1;
            // TLS proved the address; the dialer closes (Goodbye before any Hello), so the
            // acceptor never sees it established.
            self.close_end(link, Side::Dialer);
            self.notify_other(link, Side::Dialer, CloseWhy::PeerClosed);
            if let Some(conn) = dialer_conn {
                self.drive(dialer, |core, now| core.handle(now, Input::Probed { conn }));
            }
            return;
        }
        // Scheduled first, so it arrives ahead of whatever the dialer sends now.
        let at = self.time.saturating_add(self.latency(link, Side::Dialer));
        self.try_schedule(at, SimEvent::Hello { link, to: Side::Acceptor });
        if let (Some(conn), true) = (dialer_conn, self.config.pipelining) {
            let input = Input::Authenticated { conn, peer: target_id };
            self.drive(dialer, |c, now| c.handle(now, input));
        }
    }

    /// A Hello arrives. At the acceptor (with the dialer's Finished): it is established and
    /// its own Hello, sent when its TLS completed, travels back ahead of its answers. At the
    /// dialer: established. An end that closed in between has told the other; a Hello sent
    /// before a close still arrives ahead of it, as over TCP.
    fn on_hello(&mut self, link: LinkId, to: Side) {
        let Some(l) = self.links.get(&link) else { return };
        let (Some(dialer), Some(target)) = (l.ends[0].node(), l.ends[1].node()) else { return };
        let end = l.ends[to as usize];
        if !end.open {
            return;
        }
        if self.is_partitioned(dialer, target) {
            self.stats.dials_stalled += 1;
            return;
        }
        let (node, peer) = match to {
            Side::Acceptor => (target, dialer),
            Side::Dialer => (dialer, target),
        };
        if to == Side::Acceptor {
            self.stats.handshakes += 1;
            if let Some(l) = self.links.get_mut(&link) {
                l.state = LinkState::Established;
            }
            let at = self.time.saturating_add(self.latency(link, Side::Acceptor));
            self.try_schedule(at, SimEvent::Hello { link, to: Side::Dialer });
        }
        let (Some(peer_id), Some(hello), Some(conn)) =
            (self.node_id(peer), self.hello(peer), end.conn)
        else {
            return;
        };
        let input = Input::Established { conn, peer: peer_id, hello };
        self.drive(node, |c, now| c.handle(now, input));
    }

    fn on_deliver(&mut self, link: LinkId, to: Side, msg: Message) {
        let Some(l) = self.links.get(&link) else {
            self.stats.messages_undeliverable += 1;
            return;
        };
        let (receiver, sender) = (l.ends[to as usize], l.ends[to.other() as usize]);
        let (Some(node), true) = (receiver.node(), receiver.open) else {
            self.stats.messages_undeliverable += 1;
            return;
        };
        if sender.node().is_some_and(|s| self.is_partitioned(s, node)) {
            self.stats.messages_partitioned += 1;
            return;
        }
        self.stats.messages_delivered += 1;
        match receiver.conn {
            Some(conn) => {
                self.drive(node, |core, now| core.handle(now, Input::Frame { conn, msg }))
            }
            None => self.on_adversary_message(node, sender.node(), link, to, msg),
        }
    }

    fn on_closed(&mut self, link: LinkId, to: Side, why: CloseWhy, remote: bool) {
        let Some(l) = self.links.get(&link) else { return };
        let (end, other) = (l.ends[to as usize], l.ends[to.other() as usize]);
        let Some(node) = end.node().filter(|_| end.open) else { return };
        if remote && other.node().is_some_and(|o| self.is_partitioned(o, node)) {
            self.stats.messages_partitioned += 1;
            return;
        }
        if let Some(conn) = self.close_end(link, to) {
            let input = Input::Closed { conn, cause: why.cause() };
            self.drive(node, |core, now| core.handle(now, input));
        }
    }

    /// Queues a delivery or dial step, unless the queue is full or it is past the horizon.
    fn try_schedule(&mut self, at: Duration, event: SimEvent) {
        if at > MAX_VIRTUAL_TIME {
            self.stats.beyond_horizon += 1;
        } else if self.queue.try_push(at, event).is_err() {
            self.stats.queue_full_drops += 1;
        }
    }

    /// Queues an event the run cannot do without, unless it is past the horizon.
    fn schedule(&mut self, at: Duration, event: SimEvent) {
        if at > MAX_VIRTUAL_TIME {
            self.stats.beyond_horizon += 1;
        } else {
            self.queue.push(at, event);
        }
    }

    /// Adds one processed event or script call to the trace digest.
    fn record(&mut self, tag: u8, a: u64, b: u64) {
        let t = u64::try_from(self.time.as_nanos()).unwrap_or(u64::MAX);
        self.trace.update([tag]);
        self.trace.update(t.to_le_bytes());
        self.trace.update(a.to_le_bytes());
        self.trace.update(b.to_le_bytes());
    }
}

impl fmt::Display for NodeIdx {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "n{}", self.0)
    }
}

impl fmt::Display for SimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownNode(idx) => write!(f, "no simulated node {idx}"),
            Self::NotHonest(idx) => write!(f, "{idx} is an adversary without a core"),
            Self::Dead(idx) => write!(f, "{idx} is killed"),
        }
    }
}

impl std::error::Error for SimError {}

/// One simulated node.
#[derive(Debug)]
struct Node {
    id: NodeId,
    addr: SocketAddr,
    /// What it says in its Hello, given to every core it connects to.
    hello: Arc<Hello>,
    role: Role,
    /// Killed nodes are not driven and hold no open link end.
    alive: bool,
    /// Partition group; equal groups can talk.
    group: u32,
    /// Open link ends without a core connection (an adversary's), with the side held.
    links: BTreeMap<LinkId, Side>,
    /// Open link ends of the core, by its connection id: one entry per end, not one in each
    /// of two maps (millions of ends in a run of 100,000 nodes).
    conns: BTreeMap<ConnId, (LinkId, Side)>,
    /// Connections open when the node was killed, closed in its core on revival.
    orphans: Vec<ConnId>,
    /// The live timer event; any other timer event for this node is stale.
    timer_at: Option<Duration>,
    replies: VecDeque<(CommandId, Reply)>,
    events: VecDeque<Event>,
    /// Request ids of a flood adversary.
    next_request: u64,
    /// A flood adversary's next link.
    round_robin: usize,
    /// When its uplink is free again (with `SimConfig::bandwidth`).
    uplink_free: Duration,
}

#[derive(Debug)]
enum Role {
    Honest(Box<NodeCore>),
    Adversary(Box<Adversary>),
}

#[derive(Debug)]
enum SimEvent {
    /// A dial reaches its target; `expected` is the id the dialer expects there.
    Arrive { link: LinkId, expected: NodeId },
    /// The dialer's TLS handshake completes (the acceptor's flight arrived).
    Handshake { link: LinkId, expected: NodeId },
    /// A Hello (with the dialer's TLS Finished, towards the acceptor) reaches end `to`.
    Hello { link: LinkId, to: Side },
    /// A message reaches end `to`.
    Deliver { link: LinkId, to: Side, msg: Message },
    /// End `to` learns the connection is gone; `remote`: sent by the other end, so a
    /// partition stops it.
    Closed { link: LinkId, to: Side, why: CloseWhy, remote: bool },
    /// A core's deadline, or an adversary's tick.
    Timer { node: NodeIdx },
    /// A worker job's result reaches its core (with `SimConfig::job_delay`).
    JobDone { node: NodeIdx, id: crate::protocol::JobId, result: JobResult },
}

enum Collected {
    Reply(CommandId, Reply),
    Event(Event),
}

/// Appends `item`, dropping the oldest beyond `cap`; reports whether one was dropped. With a
/// cap of 0 the item is dropped without touching the queue, which so never allocates.
fn push_capped<T>(queue: &mut VecDeque<T>, item: T, cap: usize) -> bool {
    if cap == 0 {
        return true;
    }
    queue.push_back(item);
    if queue.len() > cap {
        queue.pop_front();
        return true;
    }
    false
}

/// A deadline still due after `handle_timeout` is retried this much later.
pub const TIMER_RETRY: Duration = Duration::from_millis(1);
/// The horizon (about 34 years): nothing is scheduled later, so `epoch + time` never
/// overflows an `Instant` and virtual time always moves forward.
pub const MAX_VIRTUAL_TIME: Duration = Duration::from_secs(1 << 30);
const ZERO: Duration = Duration::ZERO;
/// Verdicts the check memo holds before it starts over.
const MAX_CHECK_MEMO: usize = 1 << 20;
const UNSPECIFIED: SocketAddr =
    SocketAddr::V4(std::net::SocketAddrV4::new(std::net::Ipv4Addr::UNSPECIFIED, 0));
const SIM_NETWORK: &str = "sim";
const SIM_AGENT: &str = "petrel-sim";
const ADVERSARY_SEED_TAG: u64 = 0xad5e;

const TAG_ADD: u8 = 1;
const TAG_COMMAND: u8 = 2;
const TAG_ARRIVE: u8 = 3;
const TAG_HANDSHAKE: u8 = 4;
const TAG_DELIVER: u8 = 5;
const TAG_CLOSED: u8 = 6;
const TAG_TIMER: u8 = 7;
const TAG_PARTITION: u8 = 8;
const TAG_HEAL: u8 = 9;
const TAG_KILL: u8 = 10;
const TAG_REVIVE: u8 = 11;
const TAG_REPLACE: u8 = 12;
const TAG_JOB: u8 = 13;
const TAG_HELLO: u8 = 14;

#[cfg(test)]
mod sim_tests;
