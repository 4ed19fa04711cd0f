//! The connection table (DESIGN.md, "Core v2" and "Limits and resources"): which connections
//! exist, which limits they use, every deadline a connection has, and which connection of an
//! established peer carries its traffic.
//!
//! Sans-IO: no sockets, no clocks (`now: Instant` is an argument) and no global RNG (the dial
//! book's jitter comes from a generator seeded by the caller), so every decision here can be
//! replayed in a test or the simulator.
//!
//! - Limits: the global, inbound, outbound and per-peer limits, and the resolution of
//!   duplicate connections when two peers dial each other at once (one TLS connection per
//!   peer pair). Every refusal is a typed error ([`LimitError`], [`DialError`]) and a counter
//!   in [`PeerStats`].
//! - Deadlines, one owner for all of them: a connection that is not authenticated (TCP
//!   connect, TLS and the Hello exchange) within `connect_timeout` is removed, and so is an
//!   established one silent for `idle_timeout`. They sit in one [`Deadlines`] set, so the next
//!   one is O(log n) and nothing scans the table per input. Activity does not touch the set:
//!   a due idle entry is checked against the last activity and re-armed if the connection was
//!   active since (see `crate::timers`).
//! - Indexes: connections per direction are counted and connections per peer are listed, so
//!   admission, dial checks and duplicate detection never walk the whole table.
//!
//! Connection ids: a dial's id is made here ([`ConnectionTable::start_dial`]); an inbound
//! connection's is made by the driver that accepted the socket ([`ConnId::inbound`]). The two
//! ranges are disjoint (even and odd), and neither ever reuses an id.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::conn_map::ConnMap;
use super::dials::{DialBook, DialError};
use crate::identity::NodeId;
pub use crate::protocol::Direction;
use crate::timers::Deadlines;
use crate::wire::messages::Hello;

/// Connection and dial limits. Every default is in [`PeerLimits::DEFAULT`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerLimits {
    /// Connections of both directions together (default 256).
    pub max_connections: usize,
    /// Inbound connections: the inbound share of `max_connections` (default 128).
    pub max_inbound: usize,
    /// Outbound connections: the outbound share of `max_connections` (default 128).
    pub max_outbound: usize,
    /// Authenticated connections to one `NodeId` (default 2).
    pub max_per_peer: usize,
    /// From accept or dial to authentication: TCP connect, TLS and hello (default 5 s).
    pub connect_timeout: Duration,
    /// An established connection with no activity for this long is closed (default 60 s).
    pub idle_timeout: Duration,
    /// Backoff after the first dial failure; it doubles with each further one (default 1 s).
    pub backoff_base_interval: Duration,
    /// The longest backoff, jitter included (default 5 min).
    pub backoff_max_interval: Duration,
    /// Each backoff is spread uniformly over ± this percentage (default 20, at most 100).
    pub backoff_jitter_percent: u32,
    /// Consecutive dial failures that open an address's circuit breaker (default 5).
    pub breaker_failure_threshold: u32,
    /// Shortest time a breaker stays open before one trial dial (default 30 s); longer when the
    /// backoff for the failure count is longer.
    pub breaker_open_interval: Duration,
    /// Addresses whose dial history is kept (default 4096).
    pub max_tracked_addrs: usize,
    /// When every inbound slot is taken, a new inbound connection closes the inbound
    /// connection idle the longest, if it has been idle at least this long (default 30 s; a
    /// value at or above `idle_timeout` turns this off). Active peers are never displaced.
    pub inbound_prune_idle: Duration,
    /// Dial-backs running at once (default 4). They take no outbound slot, only room under
    /// `max_connections`, so verifying addresses never starves the requests.
    pub max_probes: usize,
    /// Inbound connections from one address (an IPv6 /64 counts as one) at once (default 8;
    /// loopback exempt, so a one-host devnet works).
    pub max_inbound_per_ip: usize,
    /// Inbound connections from one IPv4 /24 or IPv6 /48 at once (default 32).
    pub max_inbound_per_subnet: usize,
}

impl PeerLimits {
    /// The defaults (DESIGN.md, "Limits and resources").
    pub const DEFAULT: PeerLimits = PeerLimits {
        max_connections: 256,
        max_inbound: 128,
        max_outbound: 128,
        max_per_peer: 2,
        connect_timeout: Duration::from_secs(5),
        idle_timeout: Duration::from_secs(60),
        backoff_base_interval: Duration::from_secs(1),
        backoff_max_interval: Duration::from_secs(5 * 60),
        backoff_jitter_percent: 20,
        breaker_failure_threshold: 5,
        breaker_open_interval: Duration::from_secs(30),
        max_tracked_addrs: 4096,
        inbound_prune_idle: Duration::from_secs(30),
        max_probes: 4,
        max_inbound_per_ip: 8,
        max_inbound_per_subnet: 32,
    };

    /// Clamps values that would overflow timer arithmetic: durations to [`MAX_INTERVAL`], the
    /// jitter to 100 %, the address map to at least one entry.
    pub(super) fn sanitized(self) -> PeerLimits {
        let cap = |d: Duration| d.min(MAX_INTERVAL);
        PeerLimits {
            connect_timeout: cap(self.connect_timeout),
            idle_timeout: cap(self.idle_timeout),
            backoff_base_interval: cap(self.backoff_base_interval),
            backoff_max_interval: cap(self.backoff_max_interval),
            backoff_jitter_percent: self.backoff_jitter_percent.min(100),
            breaker_open_interval: cap(self.breaker_open_interval),
            inbound_prune_idle: cap(self.inbound_prune_idle),
            max_tracked_addrs: self.max_tracked_addrs.max(1),
            ..self
        }
    }
}

impl Default for PeerLimits {
    fn default() -> PeerLimits {
        PeerLimits::DEFAULT
    }
}

/// Identifies one connection. Never reused: dials are numbered by the table (even ids),
/// inbound connections by the driver that accepted them (odd ids, [`ConnId::inbound`]).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct ConnId(u64);

impl ConnId {
    /// The id of the `seq`-th connection a driver accepted; each `seq` once per core.
    pub fn inbound(seq: u64) -> ConnId {
        ConnId(seq.wrapping_mul(2) | 1)
    }

    pub(super) fn outbound(seq: u64) -> ConnId {
        ConnId(seq.wrapping_mul(2))
    }
}

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Inbound => "inbound",
            Self::Outbound => "outbound",
        })
    }
}

/// One connection as the table sees it.
///
/// Packed (96 bytes instead of 136): a node keeps up to `max_connections` of these, and a
/// simulation of 100,000 nodes keeps tens of millions. One id slot serves both directions: an
/// outbound connection authenticates only as the peer dialled (TLS refuses any other key, and
/// the table closes one that claims otherwise), and an inbound one has no peer until then.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Connection {
    /// Who opened it.
    pub direction: Direction,
    established: bool,
    /// A dial TLS authenticated, before the peer's Hello: requests may go out on it.
    ready: bool,
    /// Opened ahead of a request ([`ConnectionTable::start_dial_ahead`]) and carrying nothing
    /// yet: its idle timeout counts as [`TimeoutKind::Unused`].
    ahead: bool,
    /// The remote address (for an inbound connection, the peer's ephemeral port).
    pub addr: SocketAddr,
    /// Outbound: the peer dialled. Inbound: the peer once authenticated.
    peer: Option<NodeId>,
    /// Connecting: when the connect timeout fires. Established: the last activity.
    at: Instant,
    /// The peer's Hello, once the router has it; shared with the driver that handed it over
    /// (see `Input::Established`).
    pub hello: Option<Arc<Hello>>,
}

impl Connection {
    /// The peer: authenticated, or the one we are dialling.
    pub fn peer(&self) -> Option<NodeId> {
        self.peer
    }

    /// The authenticated peer, once TLS has verified its key.
    pub fn node_id(&self) -> Option<NodeId> {
        self.peer.filter(|_| self.established)
    }

    /// For an outbound connection, the peer we dialled.
    pub fn expected(&self) -> Option<NodeId> {
        self.peer.filter(|_| self.direction == Direction::Outbound)
    }

    /// Whether it is authenticated.
    pub fn is_established(&self) -> bool {
        self.established
    }

    /// When this connection times out, and which timeout that is.
    fn deadline(&self, limits: &PeerLimits) -> (Instant, TimeoutKind) {
        if self.established && self.ahead {
            (self.at + limits.idle_timeout, TimeoutKind::Unused)
        } else if self.established {
            (self.at + limits.idle_timeout, TimeoutKind::Idle)
        } else {
            (self.at, TimeoutKind::Connect)
        }
    }
}

/// Which timer removed a connection.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum TimeoutKind {
    /// Not authenticated within `connect_timeout`.
    Connect,
    /// Established but silent for `idle_timeout`.
    Idle,
    /// Opened ahead of a request that never came: established and unused for `idle_timeout`.
    /// An earlier, shorter timeout for these (10 s) kept inbound slots free at busy nodes but
    /// lost the warm seeds such connections give later lookups (10,000 nodes, 50 ms links:
    /// FIND_NODE p50 800 → 900 ms); the join's retries (`kad::join`) now let a newcomer in
    /// once a slot frees.
    Unused,
}

/// Outbound slots a connection opened ahead of a request never takes: they stay for the
/// requests. On a host with few slots guesses crowded out the dials that mattered (200
/// simulated nodes with 4 outbound slots: 30 lookups of 50 succeeded, 33 without connecting
/// ahead); a share of the slots instead of a fixed number starved the guesses of busy nodes
/// (10,000 nodes: with half of 128, FIND_NODE p50 800 → 900 ms).
pub const AHEAD_RESERVE: usize = 16;

/// What to do after a connection authenticated (see [`ConnectionTable::on_authenticated`]).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Keep {
    /// No duplicate: keep this connection, and any other connection to the peer.
    Both,
    /// This connection won a duplicate: close the other one (already removed from the table).
    CloseOther(ConnId),
    /// Close this connection: it lost a duplicate, or the table no longer knows it (it timed
    /// out or was closed meanwhile). It is removed from the table.
    CloseThis,
}

/// A connection refused because a limit is reached.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum LimitError {
    /// No slot is free for this direction: its share (`max_inbound` / `max_outbound`) or the
    /// total (`max_connections`) is used up.
    LimitReached {
        /// The direction of the refused connection.
        direction: Direction,
    },
    /// The peer already has `max_per_peer` authenticated connections.
    PerPeerLimitReached,
    /// Its address, or its subnet, has its maximum of inbound connections.
    PerSourceLimitReached,
}

impl fmt::Display for LimitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::LimitReached { direction } => {
                write!(f, "no {direction} connection slot is free")
            }
            Self::PerPeerLimitReached => f.write_str("the peer has its maximum of connections"),
            Self::PerSourceLimitReached => {
                f.write_str("the address or its subnet has its maximum of inbound connections")
            }
        }
    }
}

impl std::error::Error for LimitError {}

/// Counters and gauges for the metrics layer.
#[derive(Clone, Copy, Default, PartialEq, Eq, Debug)]
pub struct PeerStats {
    /// Inbound connections now.
    pub connections_inbound: usize,
    /// Outbound connections now.
    pub connections_outbound: usize,
    /// Inbound connections admitted.
    pub admitted_inbound: u64,
    /// Dials started.
    pub dials_started: u64,
    /// Connections that authenticated and were kept.
    pub established: u64,
    /// Inbound connections refused: no inbound slot.
    pub refused_inbound_limit: u64,
    /// Inbound connections refused: their address or subnet had its maximum.
    pub refused_inbound_per_source: u64,
    /// Authenticated connections refused: per-peer limit.
    pub refused_per_peer_limit: u64,
    /// Dials refused: no outbound slot.
    pub dial_refused_limit: u64,
    /// Dials refused: address in backoff.
    pub dial_refused_backoff: u64,
    /// Dials refused: circuit breaker open.
    pub dial_refused_circuit_open: u64,
    /// Dials refused: peer already connected or being dialled.
    pub dial_refused_already_connected: u64,
    /// Connections removed by the connect timeout.
    pub connect_timeouts: u64,
    /// Connections removed by the idle timeout.
    pub idle_timeouts: u64,
    /// Connections opened ahead of a request and closed at the idle timeout without carrying
    /// anything.
    pub unused_closed: u64,
    /// Duplicate connections closed by the simultaneous-dial rule.
    pub duplicates_closed: u64,
    /// Dial failures recorded (including connect timeouts of dials).
    pub dial_failures: u64,
    /// Circuit breakers that opened.
    pub circuits_opened: u64,
    /// Trial dials started on half-open circuit breakers.
    pub circuits_half_opened: u64,
    /// Open or half-open circuit breakers closed by a successful dial.
    pub circuits_closed: u64,
    /// Peers with an established connection now.
    pub peers: usize,
    /// The limits the counts above run against ([`PeerLimits`]): connections of both
    /// directions together, and each direction's share.
    pub max_connections: usize,
    /// See `max_connections`.
    pub max_inbound: usize,
    /// See `max_connections`.
    pub max_outbound: usize,
    /// Addresses in the dial book now.
    pub tracked_addrs: usize,
    /// Addresses evicted from the full dial book.
    pub addr_evictions: u64,
}

/// The connections of one node, with their limits and timers.
///
/// Driving contract: report every event of a connection (`admit_inbound` / `start_dial`,
/// `on_authenticated`, `on_activity`, `on_dial_failed` / `on_closed`); call
/// [`poll_timeouts`](Self::poll_timeouts) when [`next_deadline`](Self::next_deadline) is
/// reached and close what it returns. Whenever the table decides a connection must go (a
/// timeout, a refusal, a lost duplicate), it has already removed it: the caller closes the
/// socket, and a later `on_closed` for it is a harmless no-op.
///
/// Duplicate connections: when two peers dial each other at once, each ends up with one
/// inbound and one outbound connection to the other. Both sides keep the connection whose
/// *dialer* has the lower `NodeId`: if our id is lower we keep our outbound connection,
/// otherwise the inbound one. Both sides compute the same answer whatever order their
/// handshakes finish in, so exactly one TCP connection survives.
///
/// Each established peer has a *primary* connection, the one its traffic goes out on: its
/// first established connection, and when that closes the lowest-numbered one left.
#[derive(Debug)]
pub struct ConnectionTable {
    local_id: NodeId,
    limits: PeerLimits,
    /// Sorted, not hashed, for memory: a hash map never gives back its room, so a node that
    /// once had 256 connections kept room for 256 (about 70 KiB) for good though it has a few
    /// dozen most of its life; nor a B-tree, whose leaves stay half empty (see [`ConnMap`]).
    /// A lookup per frame is a binary search over at most `max_connections` ids.
    conns: ConnMap<Connection>,
    /// Per peer: its connections (dialling it, or authenticated as it) and its primary one.
    peers: BTreeMap<NodeId, PeerConns>,
    /// Connections per direction, indexed by `direction_index`; dial-backs are not counted.
    counts: [usize; 2],
    /// Dial-backs running ([`ConnectionTable::start_probe`]).
    probes: BTreeSet<ConnId>,
    /// Inbound connections per source address and per subnet (loopback not counted).
    inbound_sources: BTreeMap<InboundSource, usize>,
    /// Connect deadlines, and idle deadlines as of the last re-arm (see the module doc).
    deadlines: Deadlines<ConnId>,
    next_dial: u64,
    dials: DialBook,
    stats: PeerStats,
}

/// What the per-source inbound caps count: an address (IPv6: its /64) and a subnet (IPv4 /24,
/// IPv6 /48).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum InboundSource {
    V4([u8; 4]),
    V6([u8; 8]),
    V4Subnet([u8; 3]),
    V6Subnet([u8; 6]),
}

impl InboundSource {
    /// The address and the subnet of `addr`, in that order; neither for loopback. An
    /// IPv4-mapped IPv6 address counts as its IPv4 address.
    fn of(addr: SocketAddr) -> [Option<InboundSource>; 2] {
        match addr.ip().to_canonical() {
            ip if ip.is_loopback() => [None, None],
            std::net::IpAddr::V4(v4) => {
                let o = v4.octets();
                [Some(Self::V4(o)), Some(Self::V4Subnet([o[0], o[1], o[2]]))]
            }
            std::net::IpAddr::V6(v6) => {
                let o = v6.octets();
                let (mut host, mut net) = ([0u8; 8], [0u8; 6]);
                host.copy_from_slice(&o[..8]);
                net.copy_from_slice(&o[..6]);
                [Some(Self::V6(host)), Some(Self::V6Subnet(net))]
            }
        }
    }
}

#[derive(Debug, Default)]
struct PeerConns {
    conns: ConnList,
    primary: Option<ConnId>,
}

/// Connections a peer's list keeps without a heap allocation. A peer has one connection, or
/// two for a moment while a duplicate is resolved (more only with a `max_per_peer` above 2):
/// a `Vec` cost every connected peer a 32-byte allocation (48 with malloc's header).
const INLINE_CONNS: usize = 2;

/// A peer's connections, in the order they were added: inline up to [`INLINE_CONNS`], on the
/// heap beyond.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ConnList {
    Inline { len: u8, ids: [ConnId; INLINE_CONNS] },
    Heap(Vec<ConnId>),
}

impl Default for ConnList {
    fn default() -> ConnList {
        ConnList::Inline { len: 0, ids: [ConnId(0); INLINE_CONNS] }
    }
}

impl ConnList {
    fn as_slice(&self) -> &[ConnId] {
        match self {
            ConnList::Inline { len, ids } => &ids[..usize::from(*len)],
            ConnList::Heap(v) => v,
        }
    }

    fn iter(&self) -> std::slice::Iter<'_, ConnId> {
        self.as_slice().iter()
    }

    fn contains(&self, conn: &ConnId) -> bool {
        self.as_slice().contains(conn)
    }

    fn is_empty(&self) -> bool {
        self.as_slice().is_empty()
    }

    fn push(&mut self, conn: ConnId) {
        match self {
            ConnList::Inline { len, ids } if usize::from(*len) < INLINE_CONNS => {
                ids[usize::from(*len)] = conn;
                *len += 1;
            }
            ConnList::Inline { ids, .. } => {
                let mut v = ids.to_vec();
                v.push(conn);
                *self = ConnList::Heap(v);
            }
            ConnList::Heap(v) => v.push(conn),
        }
    }

    /// Removes every `conn`, keeping the others' order. A list that spilled stays on the heap.
    fn remove(&mut self, conn: ConnId) {
        match self {
            ConnList::Inline { len, ids } => {
                let mut kept = 0;
                for i in 0..usize::from(*len) {
                    if ids[i] != conn {
                        ids[kept] = ids[i];
                        kept += 1;
                    }
                }
                *len = kept as u8;
            }
            ConnList::Heap(v) => v.retain(|&c| c != conn),
        }
    }
}

impl ConnectionTable {
    /// An empty table for the node `local_id`; `rng_seed` seeds the backoff jitter.
    pub fn new(local_id: NodeId, limits: PeerLimits, rng_seed: u64) -> ConnectionTable {
        let limits = limits.sanitized();
        ConnectionTable {
            local_id,
            limits,
            conns: ConnMap::new(),
            peers: BTreeMap::new(),
            counts: [0; 2],
            probes: BTreeSet::new(),
            inbound_sources: BTreeMap::new(),
            deadlines: Deadlines::new(),
            next_dial: 0,
            dials: DialBook::new(limits, rng_seed),
            stats: PeerStats::default(),
        }
    }

    /// The limits in force (after clamping).
    pub fn limits(&self) -> &PeerLimits {
        &self.limits
    }

    /// Admits the freshly accepted connection `conn` from `addr`, or refuses it when no
    /// inbound slot is free (close the socket at once). Its connect timeout starts now. An id
    /// the table already holds is refused as a full table would be.
    pub fn admit_inbound(
        &mut self,
        now: Instant,
        conn: ConnId,
        addr: SocketAddr,
    ) -> Result<(), LimitError> {
        let full = LimitError::LimitReached { direction: Direction::Inbound };
        if self.conns.contains_key(&conn) {
            return Err(full);
        }
        if let Err(e) = self.check_slot(Direction::Inbound) {
            self.stats.refused_inbound_limit += 1;
            return Err(e);
        }
        let sources = InboundSource::of(addr);
        let caps = [self.limits.max_inbound_per_ip, self.limits.max_inbound_per_subnet];
        let at_cap = sources.iter().zip(caps).any(|(s, cap)| {
            s.is_some_and(|s| self.inbound_sources.get(&s).copied().unwrap_or(0) >= cap)
        });
        if at_cap {
            self.stats.refused_inbound_per_source += 1;
            return Err(LimitError::PerSourceLimitReached);
        }
        for source in sources.into_iter().flatten() {
            *self.inbound_sources.entry(source).or_insert(0) += 1;
        }
        self.stats.admitted_inbound += 1;
        self.insert(now, conn, Direction::Inbound, addr, None);
        Ok(())
    }

    /// Registers a dial of `expected` at `addr`, or says why not: already connected, backoff,
    /// open circuit, or no outbound slot (checked in that order). Its connect timeout starts
    /// now; a half-open address uses its one trial.
    pub fn start_dial(
        &mut self,
        now: Instant,
        addr: SocketAddr,
        expected: NodeId,
    ) -> Result<ConnId, DialError> {
        self.dial(now, addr, expected, false)
    }

    /// [`start_dial`](Self::start_dial) for a connection opened ahead of a request: if no
    /// message goes either way on it, its idle timeout counts it as unused. A guess never takes
    /// one of the last [`AHEAD_RESERVE`] outbound slots (`LimitReached`), so the requests that
    /// follow still find room without closing anything.
    pub fn start_dial_ahead(
        &mut self,
        now: Instant,
        addr: SocketAddr,
        expected: NodeId,
    ) -> Result<ConnId, DialError> {
        let share = self.limits.max_outbound.min(self.limits.max_connections);
        if self.count(Direction::Outbound) + AHEAD_RESERVE >= share {
            return Err(DialError::LimitReached);
        }
        let conn = self.dial(now, addr, expected, false)?;
        if let Some(c) = self.conns.get_mut(&conn) {
            c.ahead = true;
        }
        Ok(conn)
    }

    /// Like [`start_dial`](Self::start_dial), but also while `expected` is connected or being
    /// dialled: a dial-back that proves `expected` listens at `addr`. It never becomes one of
    /// the peer's connections (it closes once TLS is done, [`on_probed`](Self::on_probed)), so
    /// it takes an outbound slot and a connect deadline but no part in the per-peer rules.
    pub fn start_probe(
        &mut self,
        now: Instant,
        addr: SocketAddr,
        expected: NodeId,
    ) -> Result<ConnId, DialError> {
        self.dial(now, addr, expected, true)
    }

    fn dial(
        &mut self,
        now: Instant,
        addr: SocketAddr,
        expected: NodeId,
        probe: bool,
    ) -> Result<ConnId, DialError> {
        if let Err(e) = self.check_dial(now, addr, expected, probe) {
            self.count_dial_refusal(e);
            return Err(e);
        }
        self.dials.record_attempt(now, addr);
        self.stats.dials_started += 1;
        let conn = ConnId::outbound(self.next_dial);
        self.next_dial += 1;
        self.insert(now, conn, Direction::Outbound, addr, Some(expected));
        if probe {
            self.counts[direction_index(Direction::Outbound)] -= 1;
            self.probes.insert(conn);
        } else {
            self.peers.entry(expected).or_default().conns.push(conn);
        }
        Ok(conn)
    }

    /// The dial-back `conn` authenticated its peer: a dial success for its address. It leaves
    /// the table (the driver closes it). Returns what was removed.
    pub fn on_probed(&mut self, conn: ConnId) -> Option<Connection> {
        let removed = self.remove(conn)?;
        self.dials.record_success(removed.addr);
        Some(removed)
    }

    /// The connection `conn` authenticated as `node_id` (for a dial, TLS has checked it is the
    /// expected peer). Applies the duplicate rule (see the type's doc) when the peer also has
    /// an authenticated connection in the other direction, and otherwise the per-peer limit;
    /// a refused connection is removed. A dial that authenticates is a dial success for its
    /// address, whatever is kept. Its idle timeout starts now.
    pub fn on_authenticated(
        &mut self,
        now: Instant,
        conn: ConnId,
        node_id: NodeId,
    ) -> Result<Keep, LimitError> {
        let Some(this) = self.conns.get(&conn) else {
            return Ok(Keep::CloseThis);
        };
        let (direction, addr) = (this.direction, this.addr);
        if direction == Direction::Outbound && this.peer != Some(node_id) {
            // Not the peer dialled: the transport should have refused it.
            self.remove(conn);
            return Ok(Keep::CloseThis);
        }
        if direction == Direction::Outbound {
            self.dials.record_success(addr);
        }
        let (same, opposite) = self.authenticated_to(node_id, conn, direction);
        if let Some(other) = opposite {
            return Ok(self.resolve_duplicate(now, conn, direction, other, node_id));
        }
        if same >= self.limits.max_per_peer {
            self.remove(conn);
            self.stats.refused_per_peer_limit += 1;
            return Err(LimitError::PerPeerLimitReached);
        }
        self.establish(now, conn, node_id);
        Ok(Keep::Both)
    }

    /// TLS authenticated `peer` on the dial `conn` (not a dial-back) at `now`: requests for
    /// `peer` may go out on it before its Hello (handshake.md §2.1). Returns how long the dial
    /// took, TCP's handshake and TLS 1.3's together: two round trips, the first measure of the
    /// path. `None`, and nothing changed, for any other connection or peer. The connect
    /// deadline still runs until `on_authenticated`.
    pub fn on_ready(&mut self, now: Instant, conn: ConnId, peer: NodeId) -> Option<Duration> {
        if self.probes.contains(&conn) {
            return None;
        }
        let c = self.conns.get_mut(&conn)?;
        let dial = c.direction == Direction::Outbound && !c.established;
        if !dial || c.peer != Some(peer) {
            return None;
        }
        c.ready = true;
        // A connecting dial's `at` is its connect deadline, set when it started.
        let started = c.at.checked_sub(self.limits.connect_timeout)?;
        Some(now.saturating_duration_since(started))
    }

    /// A dial of `peer` that TLS has authenticated and whose Hello has not come yet.
    pub fn ready_dial(&self, peer: &NodeId) -> Option<ConnId> {
        let p = self.peers.get(peer)?;
        p.conns
            .iter()
            .copied()
            .find(|c| self.conns.get(c).is_some_and(|c| c.ready && !c.established))
    }

    /// Keeps the peer's Hello with its established connection `conn`.
    pub fn set_hello(&mut self, conn: ConnId, hello: Arc<Hello>) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.hello = Some(hello);
        }
    }

    /// `conn` carried a message at `now`, postponing its idle timeout; false (and nothing
    /// changed) unless it is established. Handshake traffic does not count: a connection that
    /// is still connecting keeps its connect deadline. O(1): the deadline set is not touched.
    pub fn on_activity(&mut self, now: Instant, conn: ConnId) -> bool {
        let Some(c) = self.conns.get_mut(&conn).filter(|c| c.established) else {
            return false;
        };
        c.at = now.max(c.at);
        c.ahead = false;
        true
    }

    /// A request of ours goes out on `conn`: it is no longer one opened ahead and unused.
    pub fn on_request_sent(&mut self, conn: ConnId) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.ahead = false;
        }
    }

    /// `conn` failed before it authenticated (refused, reset, TLS error, wrong key). For a
    /// dial, the address's backoff and breaker record a failure. Returns what was removed.
    pub fn on_dial_failed(&mut self, now: Instant, conn: ConnId) -> Option<Connection> {
        let removed = self.remove(conn)?;
        let connecting = !removed.established;
        if removed.direction == Direction::Outbound && connecting {
            self.record_dial_failure(now, removed.addr);
        }
        Some(removed)
    }

    /// The established connection in `direction` idle the longest, if its last activity is
    /// at or before `idle_since`, skipping those `busy` says to keep; `None` if there is none.
    /// The caller closes it to make room. Walks the table: call it only when a share is full.
    pub fn least_recently_active(
        &self,
        direction: Direction,
        idle_since: Instant,
        busy: impl Fn(ConnId) -> bool,
    ) -> Option<ConnId> {
        self.conns
            .iter()
            .filter(|(&id, c)| c.direction == direction && !busy(id))
            .filter(|(_, c)| c.established && c.at <= idle_since)
            .map(|(&id, c)| (c.at, id))
            .min()
            .map(|(_, id)| id)
    }

    /// `conn` closed (by either side, for any reason that is not a dial failure). Returns what
    /// was removed, or `None` when the table had already removed it.
    pub fn on_closed(&mut self, conn: ConnId) -> Option<Connection> {
        self.remove(conn)
    }

    /// Removes and returns the next connection whose connect or idle deadline is at or before
    /// `now`, with the timer that fired; close it. A dial that timed out counts as a dial
    /// failure. Call until `None`: O(log n) per deadline due, and cheap when nothing is.
    pub fn poll_timeout(&mut self, now: Instant) -> Option<(ConnId, TimeoutKind, Connection)> {
        while let Some(conn) = self.deadlines.pop_due(now) {
            let Some(c) = self.conns.get(&conn) else { continue };
            let (at, kind) = c.deadline(&self.limits);
            if at > now {
                // Active since the entry was armed: re-arm at the real deadline.
                self.deadlines.set(conn, at);
                continue;
            }
            let removed = self.on_timeout(now, conn, kind)?;
            return Some((conn, kind, removed));
        }
        None
    }

    #[cfg(test)]
    /// Every connection [`poll_timeout`](Self::poll_timeout) removes at `now`, with its timer.
    pub fn poll_timeouts(&mut self, now: Instant) -> Vec<(ConnId, TimeoutKind)> {
        std::iter::from_fn(|| self.poll_timeout(now)).map(|(c, kind, _)| (c, kind)).collect()
    }

    /// The earliest connect or idle deadline, `None` with no connections. An idle deadline
    /// may be reported early (the connection was active since): `poll_timeouts` then re-arms
    /// it, and this answers the real one.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.next()
    }

    /// The connection `conn`, if the table still has it.
    pub fn connection(&self, conn: ConnId) -> Option<&Connection> {
        self.conns.get(&conn)
    }

    /// The connection `peer`'s traffic goes out on, if it is established.
    pub fn primary(&self, peer: &NodeId) -> Option<ConnId> {
        self.peers.get(peer).and_then(|p| p.primary)
    }

    /// This node's own id.
    pub fn local_id(&self) -> NodeId {
        self.local_id
    }

    /// Whether a dial of `peer` is in progress.
    pub fn is_dialling(&self, peer: &NodeId) -> bool {
        self.peers.get(peer).is_some_and(|p| {
            p.conns.iter().any(|c| self.conns.get(c).is_some_and(|c| !c.is_established()))
        })
    }

    /// The established peers in id order, with their primary connection.
    pub fn established(&self) -> impl Iterator<Item = (NodeId, ConnId, &Connection)> + '_ {
        self.peers.iter().filter_map(|(id, p)| {
            let conn = p.primary?;
            Some((*id, conn, self.conns.get(&conn)?))
        })
    }

    /// Every connection to `peer`, connecting or established.
    pub fn conns_of(&self, peer: &NodeId) -> &[ConnId] {
        self.peers.get(peer).map_or(&[], |p| p.conns.as_slice())
    }

    /// Connections in `direction`, connecting or established.
    pub fn count(&self, direction: Direction) -> usize {
        self.counts[direction_index(direction)]
    }

    #[cfg(test)]
    /// Connections of both directions.
    pub fn len(&self) -> usize {
        self.conns.len()
    }

    #[cfg(test)]
    /// Whether the table has no connection.
    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }

    #[cfg(test)]
    /// Whether `node_id` has an authenticated connection.
    pub fn is_connected(&self, node_id: NodeId) -> bool {
        self.primary(&node_id).is_some()
    }

    #[cfg(test)]
    /// The per-address dial history.
    pub fn dial_book(&self) -> &DialBook {
        &self.dials
    }

    /// A snapshot of the counters and gauges.
    pub fn stats(&self) -> PeerStats {
        let dials = self.dials.stats();
        PeerStats {
            connections_inbound: self.count(Direction::Inbound),
            connections_outbound: self.count(Direction::Outbound),
            circuits_opened: dials.circuits_opened,
            circuits_half_opened: dials.circuits_half_opened,
            circuits_closed: dials.circuits_closed,
            // A scan of the peers, but stats are read per snapshot, not per input.
            peers: self.peers.values().filter(|p| p.primary.is_some()).count(),
            max_connections: self.limits.max_connections,
            max_inbound: self.limits.max_inbound,
            max_outbound: self.limits.max_outbound,
            tracked_addrs: dials.tracked_addrs,
            addr_evictions: dials.evictions,
            ..self.stats
        }
    }

    fn insert(
        &mut self,
        now: Instant,
        conn: ConnId,
        direction: Direction,
        addr: SocketAddr,
        expected: Option<NodeId>,
    ) {
        let deadline_at = now + self.limits.connect_timeout;
        let peer = expected.filter(|_| direction == Direction::Outbound);
        let c = Connection {
            direction,
            established: false,
            ready: false,
            ahead: false,
            addr,
            peer,
            at: deadline_at,
            hello: None,
        };
        self.conns.insert(conn, c);
        self.counts[direction_index(direction)] += 1;
        self.deadlines.set(conn, deadline_at);
    }

    /// Takes `conn` out of the table and its indexes; the peer's primary passes to its
    /// lowest-numbered established connection left, if any.
    fn remove(&mut self, conn: ConnId) -> Option<Connection> {
        let removed = self.conns.remove(&conn)?;
        if !self.probes.remove(&conn) {
            self.counts[direction_index(removed.direction)] -= 1;
        }
        if removed.direction == Direction::Inbound {
            for source in InboundSource::of(removed.addr).into_iter().flatten() {
                if let Some(n) = self.inbound_sources.get_mut(&source) {
                    *n -= 1;
                    if *n == 0 {
                        self.inbound_sources.remove(&source);
                    }
                }
            }
        }
        self.deadlines.clear(conn);
        let Some(peer) = removed.peer() else { return Some(removed) };
        let Some(p) = self.peers.get_mut(&peer) else { return Some(removed) };
        p.conns.remove(conn);
        if p.primary == Some(conn) {
            let conns = &self.conns;
            let established = |c: &ConnId| conns.get(c).is_some_and(Connection::is_established);
            p.primary = p.conns.iter().copied().filter(established).min();
        }
        if p.conns.is_empty() {
            self.peers.remove(&peer);
        }
        Some(removed)
    }

    fn check_slot(&self, direction: Direction) -> Result<(), LimitError> {
        let share = match direction {
            Direction::Inbound => self.limits.max_inbound,
            Direction::Outbound => self.limits.max_outbound,
        };
        if self.conns.len() >= self.limits.max_connections || self.count(direction) >= share {
            return Err(LimitError::LimitReached { direction });
        }
        Ok(())
    }

    fn check_dial(
        &self,
        now: Instant,
        addr: SocketAddr,
        expected: NodeId,
        probe: bool,
    ) -> Result<(), DialError> {
        if expected == self.local_id {
            return Err(DialError::OwnId);
        }
        if !probe && self.peers.contains_key(&expected) {
            return Err(DialError::AlreadyConnected);
        }
        self.dials.may_dial(now, addr)?;
        if probe {
            let full = self.conns.len() >= self.limits.max_connections;
            if full || self.probes.len() >= self.limits.max_probes {
                return Err(DialError::LimitReached);
            }
            return Ok(());
        }
        self.check_slot(Direction::Outbound).map_err(|_| DialError::LimitReached)
    }

    fn count_dial_refusal(&mut self, error: DialError) {
        let counter = match error {
            DialError::LimitReached => &mut self.stats.dial_refused_limit,
            DialError::Backoff { .. } => &mut self.stats.dial_refused_backoff,
            DialError::CircuitOpen { .. } => &mut self.stats.dial_refused_circuit_open,
            DialError::AlreadyConnected | DialError::OwnId => {
                &mut self.stats.dial_refused_already_connected
            }
        };
        *counter += 1;
    }

    /// The other authenticated connections to `node_id`: how many share `direction`, and the
    /// oldest in the opposite direction.
    fn authenticated_to(
        &self,
        node_id: NodeId,
        except: ConnId,
        direction: Direction,
    ) -> (usize, Option<ConnId>) {
        let mut same = 0;
        let mut opposite = None;
        for &id in self.conns_of(&node_id) {
            let Some(c) = self.conns.get(&id) else { continue };
            if id == except || c.node_id() != Some(node_id) {
                continue;
            }
            if c.direction == direction {
                same += 1;
            } else if opposite.is_none_or(|o| id < o) {
                opposite = Some(id);
            }
        }
        (same, opposite)
    }

    /// Keeps the connection dialled by the lower `NodeId` and removes the other (see the
    /// type's doc). Replacing one connection by another never raises the per-peer count.
    fn resolve_duplicate(
        &mut self,
        now: Instant,
        this: ConnId,
        direction: Direction,
        other: ConnId,
        node_id: NodeId,
    ) -> Keep {
        self.stats.duplicates_closed += 1;
        let keep_outbound = self.local_id < node_id;
        if (direction == Direction::Outbound) == keep_outbound {
            self.remove(other);
            self.establish(now, this, node_id);
            Keep::CloseOther(other)
        } else {
            self.remove(this);
            Keep::CloseThis
        }
    }

    fn establish(&mut self, now: Instant, conn: ConnId, node_id: NodeId) {
        let Some(c) = self.conns.get_mut(&conn) else { return };
        c.peer = Some(node_id);
        c.established = true;
        c.at = now;
        let (deadline_at, _) = c.deadline(&self.limits);
        self.stats.established += 1;
        self.deadlines.set(conn, deadline_at);
        let p = self.peers.entry(node_id).or_default();
        if !p.conns.contains(&conn) {
            p.conns.push(conn);
        }
        p.primary.get_or_insert(conn);
    }

    fn on_timeout(&mut self, now: Instant, conn: ConnId, kind: TimeoutKind) -> Option<Connection> {
        let removed = self.remove(conn)?;
        match kind {
            TimeoutKind::Connect => {
                self.stats.connect_timeouts += 1;
                if removed.direction == Direction::Outbound {
                    self.record_dial_failure(now, removed.addr);
                }
            }
            TimeoutKind::Idle => self.stats.idle_timeouts += 1,
            TimeoutKind::Unused => self.stats.unused_closed += 1,
        }
        Some(removed)
    }

    fn record_dial_failure(&mut self, now: Instant, addr: SocketAddr) {
        self.dials.record_failure(now, addr);
        self.stats.dial_failures += 1;
    }
}

fn direction_index(direction: Direction) -> usize {
    match direction {
        Direction::Inbound => 0,
        Direction::Outbound => 1,
    }
}

/// The longest duration a limit may hold; longer ones are clamped, which keeps every
/// `now + duration` far from `Instant`'s range end. A year is "never" for a timer here.
pub(super) const MAX_INTERVAL: Duration = Duration::from_secs(365 * 24 * 60 * 60);

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: PeerLimits = PeerLimits::DEFAULT;
    const SEED: u64 = 0x5eed;
    const NS: Duration = Duration::from_nanos(1);
    const MS: Duration = Duration::from_millis(1);

    fn id(first: u8) -> NodeId {
        let mut b = [0u8; 32];
        b[0] = first;
        NodeId::from_bytes(b)
    }

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([192, 0, 2, 1], port))
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn table(limits: PeerLimits) -> ConnectionTable {
        ConnectionTable::new(id(0x80), limits, SEED)
    }

    /// Admits an inbound connection from `addr(port)`, numbered after its port.
    fn admit(t: &mut ConnectionTable, now: Instant, port: u16) -> Result<ConnId, LimitError> {
        let conn = ConnId::inbound(u64::from(port));
        t.admit_inbound(now, conn, addr(port)).map(|()| conn)
    }

    // ---- Connection limits ----

    #[test]
    fn defaults_split_256_slots_evenly() {
        let l = PeerLimits::default();
        assert_eq!((l.max_connections, l.max_inbound, l.max_outbound), (256, 128, 128));
        assert_eq!((l.max_per_peer, l.connect_timeout, l.idle_timeout), (2, secs(5), secs(60)));
        assert_eq!((l.breaker_failure_threshold, l.breaker_open_interval), (5, secs(30)));
        assert_eq!(l.max_tracked_addrs, 4096);
    }

    #[test]
    fn refuses_inbound_when_inbound_share_is_full() {
        let now = Instant::now();
        let mut t = table(PeerLimits { max_inbound: 2, ..LIMITS });
        admit(&mut t, now, 1).unwrap();
        admit(&mut t, now, 2).unwrap();
        let err = admit(&mut t, now, 3).unwrap_err();
        assert_eq!(err, LimitError::LimitReached { direction: Direction::Inbound });
        assert_eq!(err.to_string(), "no inbound connection slot is free");
        assert_eq!((t.stats().admitted_inbound, t.stats().refused_inbound_limit), (2, 1));
        // The outbound share is separate.
        assert!(t.start_dial(now, addr(9), id(9)).is_ok());
    }

    #[test]
    fn refuses_dial_when_outbound_share_is_full() {
        let now = Instant::now();
        let mut t = table(PeerLimits { max_outbound: 1, ..LIMITS });
        t.start_dial(now, addr(1), id(1)).unwrap();
        assert_eq!(t.start_dial(now, addr(2), id(2)), Err(DialError::LimitReached));
        assert_eq!(t.stats().dial_refused_limit, 1);
        // The inbound share is separate.
        assert!(admit(&mut t, now, 3).is_ok());
        assert_eq!((t.count(Direction::Inbound), t.count(Direction::Outbound)), (1, 1));
    }

    #[test]
    fn inbound_connections_are_capped_per_address_and_per_subnet_loopback_exempt() {
        let now = Instant::now();
        let limits = PeerLimits { max_inbound_per_ip: 2, max_inbound_per_subnet: 3, ..LIMITS };
        let mut t = table(limits);
        let from =
            |ip: [u8; 4], n: u64| (ConnId::inbound(n), SocketAddr::from((ip, 40_000 + n as u16)));
        let mut admit_from = |ip: [u8; 4], n: u64| {
            let (conn, addr) = from(ip, n);
            t.admit_inbound(now, conn, addr)
        };
        assert!(admit_from([203, 0, 113, 1], 1).is_ok());
        assert!(admit_from([203, 0, 113, 1], 2).is_ok());
        // A third from the same address is refused; another address of the /24 fits once.
        assert_eq!(admit_from([203, 0, 113, 1], 3), Err(LimitError::PerSourceLimitReached));
        assert!(admit_from([203, 0, 113, 2], 4).is_ok());
        assert_eq!(admit_from([203, 0, 113, 3], 5), Err(LimitError::PerSourceLimitReached));
        // Other subnets and loopback are not affected.
        assert!(admit_from([198, 51, 100, 1], 6).is_ok());
        for n in 7..17 {
            assert!(admit_from([127, 0, 0, 1], n).is_ok());
        }
        assert_eq!(t.stats().refused_inbound_per_source, 2);
        // A connection that closes frees its place.
        t.on_closed(ConnId::inbound(1));
        assert!(t.admit_inbound(now, ConnId::inbound(3), from([203, 0, 113, 1], 3).1).is_ok());
        let err = t.admit_inbound(now, ConnId::inbound(5), from([203, 0, 113, 9], 5).1);
        assert_eq!(err, Err(LimitError::PerSourceLimitReached), "the /24 is at its cap again");
    }

    #[test]
    fn dial_backs_have_slots_of_their_own_and_no_part_in_the_peer_rules() {
        let now = Instant::now();
        let mut t = table(PeerLimits { max_outbound: 1, max_probes: 2, ..LIMITS });
        t.start_dial(now, addr(1), id(1)).unwrap();
        // The outbound share is full, and peer 1 is being dialled: dial-backs still run,
        // up to their own bound.
        let p1 = t.start_probe(now, addr(2), id(1)).unwrap();
        t.start_probe(now, addr(3), id(2)).unwrap();
        assert_eq!(t.start_probe(now, addr(4), id(3)), Err(DialError::LimitReached));
        assert_eq!(t.count(Direction::Outbound), 1, "dial-backs take no outbound slot");
        assert_eq!(t.conns_of(&id(1)).len(), 1, "nor a place among the peer's connections");
        // One authenticates: a success for its address, and its slot frees.
        assert!(t.on_probed(p1).is_some());
        assert!(t.connection(p1).is_none());
        t.start_probe(now, addr(4), id(3)).unwrap();
        // Never beyond the total.
        let mut t = table(PeerLimits { max_connections: 1, ..LIMITS });
        admit(&mut t, now, 5).unwrap();
        assert_eq!(t.start_probe(now, addr(6), id(6)), Err(DialError::LimitReached));
    }

    #[test]
    fn total_limit_binds_when_shares_oversubscribe_it() {
        let now = Instant::now();
        let mut t = table(PeerLimits { max_connections: 3, ..LIMITS });
        for port in 1..=3 {
            admit(&mut t, now, port).unwrap();
        }
        let err = admit(&mut t, now, 4);
        assert_eq!(err, Err(LimitError::LimitReached { direction: Direction::Inbound }));
        assert_eq!(t.start_dial(now, addr(5), id(5)), Err(DialError::LimitReached));
    }

    #[test]
    fn closing_a_connection_frees_its_slot() {
        let now = Instant::now();
        let mut t = table(PeerLimits { max_inbound: 1, ..LIMITS });
        let c = admit(&mut t, now, 1).unwrap();
        assert!(admit(&mut t, now, 2).is_err());
        assert_eq!(t.on_closed(c).map(|c| c.addr), Some(addr(1)));
        assert_eq!(t.on_closed(c), None);
        assert!(admit(&mut t, now, 2).is_ok());
    }

    #[test]
    fn per_peer_limit_refuses_and_removes_the_extra_connection() {
        let now = Instant::now();
        let mut t = table(LIMITS);
        let peer = id(9);
        let conns: Vec<ConnId> = (1..=3).map(|p| admit(&mut t, now, p).unwrap()).collect();
        assert_eq!(t.on_authenticated(now, conns[0], peer), Ok(Keep::Both));
        assert_eq!(t.on_authenticated(now, conns[1], peer), Ok(Keep::Both));
        assert_eq!(t.on_authenticated(now, conns[2], peer), Err(LimitError::PerPeerLimitReached));
        assert_eq!(t.connection(conns[2]), None);
        assert_eq!((t.len(), t.stats().refused_per_peer_limit, t.stats().established), (2, 1, 2));
        // Another peer is not affected.
        let other = admit(&mut t, now, 4).unwrap();
        assert_eq!(t.on_authenticated(now, other, id(10)), Ok(Keep::Both));
    }

    #[test]
    fn refuses_dial_to_a_peer_already_connected_or_being_dialled() {
        let now = Instant::now();
        let mut t = table(LIMITS);
        t.start_dial(now, addr(1), id(1)).unwrap();
        assert_eq!(t.start_dial(now, addr(2), id(1)), Err(DialError::AlreadyConnected));
        let inbound = admit(&mut t, now, 3).unwrap();
        t.on_authenticated(now, inbound, id(3)).unwrap();
        assert!(t.is_connected(id(3)));
        assert_eq!(t.start_dial(now, addr(4), id(3)), Err(DialError::AlreadyConnected));
        assert_eq!(t.stats().dial_refused_already_connected, 2);
    }

    // ---- Indexes ----

    #[test]
    fn driver_and_table_ids_never_collide() {
        let now = Instant::now();
        let mut t = table(LIMITS);
        let dialled: Vec<ConnId> =
            (1..=4).map(|p| t.start_dial(now, addr(p), id(p as u8)).unwrap()).collect();
        let accepted: Vec<ConnId> = (0..4).map(ConnId::inbound).collect();
        for c in &accepted {
            assert!(!dialled.contains(c));
        }
        assert_eq!(
            t.admit_inbound(now, dialled[0], addr(9)),
            Err(LimitError::LimitReached { direction: Direction::Inbound })
        );
    }

    #[test]
    fn the_primary_is_the_first_established_and_passes_on_when_it_closes() {
        let now = Instant::now();
        let mut t = table(LIMITS);
        let peer = id(9);
        let a = admit(&mut t, now, 5).unwrap();
        let b = admit(&mut t, now, 3).unwrap();
        assert_eq!(t.primary(&peer), None);
        t.on_authenticated(now, a, peer).unwrap();
        t.on_authenticated(now, b, peer).unwrap();
        assert_eq!(t.primary(&peer), Some(a));
        assert_eq!(t.conns_of(&peer), &[a, b]);
        t.on_closed(a);
        assert_eq!(t.primary(&peer), Some(b));
        t.on_closed(b);
        assert_eq!((t.primary(&peer), t.conns_of(&peer)), (None, &[][..]));
    }

    #[test]
    fn a_dial_in_progress_is_listed_for_its_peer_but_is_not_primary() {
        let now = Instant::now();
        let mut t = table(LIMITS);
        let c = t.start_dial(now, addr(1), id(1)).unwrap();
        assert!(t.is_dialling(&id(1)) && !t.is_connected(id(1)));
        assert_eq!(t.established().count(), 0);
        t.on_authenticated(now, c, id(1)).unwrap();
        assert!(!t.is_dialling(&id(1)) && t.is_connected(id(1)));
        let listed: Vec<(NodeId, ConnId)> = t.established().map(|(p, c, _)| (p, c)).collect();
        assert_eq!(listed, vec![(id(1), c)]);
    }

    // ---- Duplicate connections (simultaneous dial) ----

    /// Two nodes dial each other at once; TCP connection X is dialled by `a`, Y by `b`. Each
    /// side authenticates its two connections in the given order (`true`: X first). Returns
    /// the name of the connection each side kept.
    fn simultaneous_dial(a: NodeId, b: NodeId, a_x_first: bool, b_x_first: bool) -> [char; 2] {
        let now = Instant::now();
        let mut ta = ConnectionTable::new(a, LIMITS, 1);
        let mut tb = ConnectionTable::new(b, LIMITS, 2);
        let x = [ta.start_dial(now, addr(2), b).unwrap(), admit(&mut tb, now, 1).unwrap()];
        let y = [admit(&mut ta, now, 3).unwrap(), tb.start_dial(now, addr(4), a).unwrap()];
        let order = |x_first: bool, i: usize| if x_first { [x[i], y[i]] } else { [y[i], x[i]] };
        for (side, (table, peer, x_first)) in
            [(&mut ta, b, a_x_first), (&mut tb, a, b_x_first)].into_iter().enumerate()
        {
            let [first, second] = order(x_first, side);
            assert_eq!(table.on_authenticated(now, first, peer), Ok(Keep::Both));
            let expected_close = table.on_authenticated(now, second, peer).unwrap();
            assert_ne!(expected_close, Keep::Both);
            assert_eq!(table.len(), 1, "exactly one connection survives");
            assert_eq!(table.stats().duplicates_closed, 1);
        }
        let kept =
            |t: &ConnectionTable, i: usize| if t.connection(x[i]).is_some() { 'X' } else { 'Y' };
        [kept(&ta, 0), kept(&tb, 1)]
    }

    #[test]
    fn simultaneous_dial_keeps_the_same_connection_on_both_sides() {
        for (a, b) in [(id(1), id(2)), (id(0xf0), id(0x0f))] {
            for a_x_first in [true, false] {
                for b_x_first in [true, false] {
                    let kept = simultaneous_dial(a, b, a_x_first, b_x_first);
                    // X is the connection `a` dialled: it wins when `a` is the lower id.
                    let winner = if a < b { 'X' } else { 'Y' };
                    assert_eq!(kept, [winner, winner], "{a} vs {b}, {a_x_first} {b_x_first}");
                }
            }
        }
    }

    #[test]
    fn duplicate_winner_closes_the_other_connection() {
        let now = Instant::now();
        let mut t = table(LIMITS); // Our id 0x80 is lower than the peer's: keep our dial.
        let peer = id(0x90);
        let inbound = admit(&mut t, now, 1).unwrap();
        let outbound = t.start_dial(now, addr(2), peer).unwrap();
        assert_eq!(t.on_authenticated(now, inbound, peer), Ok(Keep::Both));
        assert_eq!(t.on_authenticated(now, outbound, peer), Ok(Keep::CloseOther(inbound)));
        assert_eq!(t.connection(inbound), None);
        assert_eq!(t.connection(outbound).and_then(|c| c.node_id()), Some(peer));
    }

    #[test]
    fn connections_in_the_same_direction_are_not_duplicates() {
        let now = Instant::now();
        let mut t = table(LIMITS);
        let a = admit(&mut t, now, 1).unwrap();
        let b = admit(&mut t, now, 2).unwrap();
        assert_eq!(t.on_authenticated(now, a, id(9)), Ok(Keep::Both));
        assert_eq!(t.on_authenticated(now, b, id(9)), Ok(Keep::Both));
        assert_eq!(t.stats().duplicates_closed, 0);
    }

    #[test]
    fn authenticating_a_forgotten_connection_closes_it() {
        let now = Instant::now();
        let mut t = table(LIMITS);
        let c = admit(&mut t, now, 1).unwrap();
        t.poll_timeouts(now + LIMITS.connect_timeout);
        assert_eq!(t.on_authenticated(now, c, id(9)), Ok(Keep::CloseThis));
        assert!(t.is_empty());
    }

    #[test]
    fn a_dial_that_authenticates_as_another_peer_is_closed() {
        let now = Instant::now();
        let mut t = table(LIMITS);
        let c = t.start_dial(now, addr(9), id(9)).unwrap();
        assert_eq!(t.on_authenticated(now, c, id(8)), Ok(Keep::CloseThis));
        assert!(t.is_empty());
        assert!(t.conns_of(&id(8)).is_empty() && t.conns_of(&id(9)).is_empty());
    }

    #[test]
    fn a_connection_costs_at_most_96_bytes() {
        // Ten thousands of them per simulated network of 100,000 nodes (the type's doc).
        assert!(std::mem::size_of::<Connection>() <= 96, "{}", std::mem::size_of::<Connection>());
        let now = Instant::now();
        let mut t = table(LIMITS);
        let c = t.start_dial(now, addr(9), id(9)).unwrap();
        let conn = t.connection(c).unwrap();
        assert_eq!(
            (conn.peer(), conn.expected(), conn.node_id()),
            (Some(id(9)), Some(id(9)), None)
        );
        assert_eq!(t.on_authenticated(now, c, id(9)), Ok(Keep::Both));
        assert_eq!(t.connection(c).unwrap().node_id(), Some(id(9)));
        let i = admit(&mut t, now, 1).unwrap();
        let conn = t.connection(i).unwrap();
        assert_eq!((conn.peer(), conn.expected(), conn.node_id()), (None, None, None));
        assert_eq!(t.on_authenticated(now, i, id(7)), Ok(Keep::Both));
        let conn = t.connection(i).unwrap();
        assert_eq!(
            (conn.peer(), conn.expected(), conn.node_id()),
            (Some(id(7)), None, Some(id(7)))
        );
    }

    // ---- Timeouts ----

    #[test]
    fn connect_timeout_fires_exactly_at_the_deadline() {
        let now = Instant::now();
        let mut t = table(LIMITS);
        let c = admit(&mut t, now, 1).unwrap();
        let deadline = now + secs(5);
        assert_eq!(t.next_deadline(), Some(deadline));
        assert_eq!(t.poll_timeouts(deadline - NS), vec![]);
        assert_eq!(t.poll_timeouts(deadline), vec![(c, TimeoutKind::Connect)]);
        assert_eq!((t.next_deadline(), t.stats().connect_timeouts), (None, 1));
        assert_eq!(t.poll_timeouts(deadline + secs(100)), vec![]);
    }

    #[test]
    fn handshake_traffic_does_not_extend_the_connect_deadline() {
        let now = Instant::now();
        let mut t = table(LIMITS);
        let c = admit(&mut t, now, 1).unwrap();
        t.on_activity(now + secs(4), c);
        assert_eq!(t.poll_timeouts(now + secs(5)), vec![(c, TimeoutKind::Connect)]);
    }

    #[test]
    fn a_connection_opened_ahead_and_never_used_is_counted_as_unused_at_its_idle_timeout() {
        let now = Instant::now();
        let mut t = table(LIMITS);
        let unused = t.start_dial_ahead(now, addr(1), id(1)).unwrap();
        let used = t.start_dial_ahead(now, addr(2), id(2)).unwrap();
        let answered = t.start_dial_ahead(now, addr(3), id(3)).unwrap();
        let at = now + secs(1);
        for (c, n) in [(unused, 1), (used, 2), (answered, 3)] {
            assert_eq!(t.on_authenticated(at, c, id(n)), Ok(Keep::Both));
        }
        assert_eq!(t.next_deadline(), Some(at + secs(60)));
        t.on_request_sent(used);
        t.on_activity(at + secs(2), answered);
        let due = at + secs(60);
        assert_eq!(t.poll_timeouts(due - NS), vec![]);
        // Ordered by id: the unused one is counted apart.
        assert_eq!(
            t.poll_timeouts(due),
            vec![(unused, TimeoutKind::Unused), (used, TimeoutKind::Idle)]
        );
        assert_eq!((t.stats().unused_closed, t.stats().idle_timeouts), (1, 1));
        // Activity postpones the idle timeout as for any connection.
        assert_eq!(t.poll_timeouts(at + secs(62) - NS), vec![]);
        assert_eq!(t.poll_timeouts(at + secs(62)), vec![(answered, TimeoutKind::Idle)]);
    }

    #[test]
    fn connections_opened_ahead_leave_the_last_outbound_slots_to_requests() {
        let now = Instant::now();
        let mut t = table(PeerLimits { max_outbound: AHEAD_RESERVE + 2, ..LIMITS });
        let n = |i: usize| u8::try_from(i).unwrap();
        assert!(t.start_dial_ahead(now, addr(1), id(1)).is_ok());
        assert!(t.start_dial_ahead(now, addr(2), id(2)).is_ok());
        assert_eq!(t.start_dial_ahead(now, addr(3), id(3)), Err(DialError::LimitReached));
        // Requests' dials still find the reserved ones.
        for i in 3..3 + AHEAD_RESERVE {
            assert!(t.start_dial(now, addr(u16::from(n(i))), id(n(i))).is_ok(), "{i}");
        }
        let last = n(3 + AHEAD_RESERVE);
        assert_eq!(
            t.start_dial(now, addr(u16::from(last)), id(last)),
            Err(DialError::LimitReached)
        );
        // A host with no more slots than the reserve never connects ahead.
        let mut small = table(PeerLimits { max_outbound: 4, ..LIMITS });
        assert_eq!(small.start_dial_ahead(now, addr(1), id(1)), Err(DialError::LimitReached));
    }

    #[test]
    fn idle_timeout_fires_exactly_at_the_deadline_and_activity_postpones_it() {
        let now = Instant::now();
        let mut t = table(LIMITS);
        let c = admit(&mut t, now, 1).unwrap();
        let authenticated_at = now + secs(1);
        t.on_authenticated(authenticated_at, c, id(9)).unwrap();
        assert_eq!(t.next_deadline(), Some(authenticated_at + secs(60)));
        let active_at = authenticated_at + secs(30);
        t.on_activity(active_at, c);
        let deadline = active_at + secs(60);
        // The entry armed at authentication comes due first and is re-armed, not fired.
        assert_eq!(t.poll_timeouts(authenticated_at + secs(60)), vec![]);
        assert_eq!(t.next_deadline(), Some(deadline));
        assert_eq!(t.poll_timeouts(deadline - NS), vec![]);
        assert_eq!(t.poll_timeouts(deadline), vec![(c, TimeoutKind::Idle)]);
        assert_eq!(t.stats().idle_timeouts, 1);
    }

    #[test]
    fn next_deadline_is_the_earliest_timer() {
        let now = Instant::now();
        let mut t = table(LIMITS);
        assert_eq!(t.next_deadline(), None);
        let early = admit(&mut t, now, 1).unwrap();
        admit(&mut t, now + secs(2), 2).unwrap();
        assert_eq!(t.next_deadline(), Some(now + secs(5)));
        t.on_closed(early);
        assert_eq!(t.next_deadline(), Some(now + secs(7)));
    }

    #[test]
    fn dial_connect_timeout_counts_as_a_dial_failure() {
        let now = Instant::now();
        let mut t = table(LIMITS);
        let c = t.start_dial(now, addr(1), id(1)).unwrap();
        let timed_out_at = now + secs(5);
        assert_eq!(t.poll_timeouts(timed_out_at), vec![(c, TimeoutKind::Connect)]);
        assert_eq!(t.dial_book().failures(addr(1)), 1);
        let err = t.start_dial(timed_out_at, addr(1), id(1)).unwrap_err();
        assert!(matches!(err, DialError::Backoff { until } if until > timed_out_at));
        assert_eq!((t.stats().dial_failures, t.stats().dial_refused_backoff), (1, 1));
    }

    #[test]
    fn only_a_dial_tls_authenticated_as_its_peer_is_ready_for_requests() {
        let now = Instant::now();
        let mut t = table(LIMITS);
        let c = t.start_dial(now, addr(1), id(1)).unwrap();
        assert_eq!(t.ready_dial(&id(1)), None, "not before TLS");
        assert_eq!(t.on_ready(now + 7 * MS, c, id(2)), None, "another peer's key");
        assert_eq!(t.on_ready(now + 7 * MS, c, id(1)), Some(7 * MS), "the dial's duration");
        assert_eq!(t.ready_dial(&id(1)), Some(c));
        assert_eq!(t.primary(&id(1)), None, "not established before its Hello");
        // Established: its traffic goes by the primary, not as an early dial.
        t.on_authenticated(now, c, id(1)).unwrap();
        assert_eq!((t.ready_dial(&id(1)), t.primary(&id(1))), (None, Some(c)));
        // A dial-back is never ready: it closes once TLS is done.
        let probe = t.start_probe(now, addr(2), id(2)).unwrap();
        assert_eq!(t.on_ready(now, probe, id(2)), None);
        assert_eq!(t.ready_dial(&id(2)), None);
        // An inbound connection neither.
        let inbound = admit(&mut t, now, 3).unwrap();
        assert_eq!(t.on_ready(now, inbound, id(3)), None);
        assert_eq!(t.on_ready(now, ConnId::inbound(99), id(3)), None, "an unknown one");
    }

    #[test]
    fn failed_dial_backs_off_and_authenticated_dial_clears_it() {
        let now = Instant::now();
        let mut t = table(LIMITS);
        let c = t.start_dial(now, addr(1), id(1)).unwrap();
        assert_eq!(t.on_dial_failed(now, c).map(|c| c.addr), Some(addr(1)));
        let Err(DialError::Backoff { until }) = t.start_dial(now, addr(1), id(1)) else {
            panic!("expected a backoff");
        };
        let c = t.start_dial(until, addr(1), id(1)).unwrap();
        t.on_authenticated(until, c, id(1)).unwrap();
        assert_eq!(t.dial_book().failures(addr(1)), 0);
    }

    #[test]
    fn dial_refused_by_open_circuit_is_counted() {
        let now = Instant::now();
        let mut t = table(LIMITS);
        for _ in 0..5 {
            t.dials.record_failure(now, addr(1));
        }
        let until = now + secs(30);
        assert_eq!(t.start_dial(now, addr(1), id(1)), Err(DialError::CircuitOpen { until }));
        assert_eq!(t.stats().dial_refused_circuit_open, 1);
        assert_eq!(t.stats().circuits_opened, 1);
    }

    #[test]
    fn absurd_durations_are_clamped_instead_of_overflowing() {
        let now = Instant::now();
        let huge = Duration::MAX;
        let limits = PeerLimits {
            connect_timeout: huge,
            idle_timeout: huge,
            backoff_base_interval: huge,
            backoff_max_interval: huge,
            breaker_open_interval: huge,
            backoff_jitter_percent: 1000,
            ..LIMITS
        };
        let mut t = table(limits);
        let c = t.start_dial(now, addr(1), id(1)).unwrap();
        assert_eq!(t.next_deadline(), Some(now + MAX_INTERVAL));
        t.on_dial_failed(now, c);
        assert!(t.dial_book().may_dial(now, addr(1)).is_err());
    }

    // ---- Memory ----

    #[test]
    fn a_peer_list_keeps_two_inline_spills_the_third_and_keeps_order() {
        let c = |n: u64| ConnId::outbound(n);
        let mut list = ConnList::default();
        assert!(list.is_empty());
        list.push(c(1));
        list.push(c(2));
        assert!(matches!(list, ConnList::Inline { len: 2, .. }));
        list.push(c(3));
        assert!(matches!(list, ConnList::Heap(_)));
        assert_eq!(list.as_slice(), [c(1), c(2), c(3)]);
        list.remove(c(2));
        assert_eq!(list.as_slice(), [c(1), c(3)]);
        assert!(list.contains(&c(3)) && !list.contains(&c(2)));
        let mut inline = ConnList::default();
        inline.push(c(1));
        inline.push(c(2));
        inline.remove(c(1));
        assert_eq!(inline.as_slice(), [c(2)]);
        inline.remove(c(2));
        assert!(inline.is_empty());
    }

    #[test]
    fn a_peer_allowed_three_connections_keeps_all_three() {
        // Past the inline two: the per-peer rules see every connection.
        let now = Instant::now();
        let mut t = table(PeerLimits { max_per_peer: 3, ..LIMITS });
        let peer = id(1);
        let conns: Vec<ConnId> = (1..=4)
            .map(|port| {
                let conn = ConnId::inbound(port);
                let source = SocketAddr::from(([192, 0, 2, port as u8], 4000));
                t.admit_inbound(now, conn, source).unwrap();
                conn
            })
            .collect();
        for &conn in &conns[..3] {
            assert_eq!(t.on_authenticated(now, conn, peer), Ok(Keep::Both));
        }
        assert_eq!(t.on_authenticated(now, conns[3], peer), Err(LimitError::PerPeerLimitReached));
        assert_eq!(t.conns_of(&peer), &conns[..3]);
        assert_eq!(t.primary(&peer), Some(conns[0]));
        t.on_closed(conns[0]);
        assert_eq!(t.conns_of(&peer), &conns[1..3]);
        assert_eq!(t.primary(&peer), Some(conns[1]));
    }
}
