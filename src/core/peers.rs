//! Connection and dial bookkeeping: which connections exist, which limits they use, when they
//! time out, and whether an address may be dialled (DESIGN.md, "Limits and resources").
//!
//! Sans-IO: no sockets, no clocks (`now: Instant` is an argument) and no global RNG (backoff
//! jitter comes from a small generator seeded by the caller), so every decision here can be
//! replayed in a test or the simulator.
//!
//! - [`ConnectionTable`] owns the connections: the global, inbound, outbound and per-peer limits,
//!   the connect and idle timeouts, and the resolution of duplicate connections when two peers
//!   dial each other at once (one TLS connection per peer pair).
//! - [`DialBook`] owns per-address dial history: exponential backoff with jitter and a circuit
//!   breaker (closed / open / half-open). Its address map is bounded.
//!
//! Every refusal is a typed error ([`LimitError`], [`DialError`]) and a counter in
//! [`PeerStats`].

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::identity::NodeId;
use crate::rng::Rng;

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
    };

    /// Clamps values that would overflow timer arithmetic: durations to [`MAX_INTERVAL`], the
    /// jitter to 100 %, the address map to at least one entry.
    fn sanitized(self) -> PeerLimits {
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

/// Identifies one connection in a [`ConnectionTable`]. Issued by the table, never reused.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct ConnId(u64);

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// Who opened a connection.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Direction {
    /// The peer dialled us.
    Inbound,
    /// We dialled the peer.
    Outbound,
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Inbound => "inbound",
            Self::Outbound => "outbound",
        })
    }
}

/// Where a connection is in its life.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ConnState {
    /// TCP connect, TLS handshake and hello are under way; the peer is not authenticated yet.
    /// Authentication moves it on; reaching `deadline_at` first removes it (connect timeout).
    Connecting {
        /// When the connect timeout fires.
        deadline_at: Instant,
    },
    /// Authenticated. Each activity moves `last_activity`; `last_activity + idle_timeout`
    /// passing removes it (idle timeout).
    Established {
        /// The last time the connection carried a message.
        last_activity: Instant,
    },
}

/// One connection as the table sees it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Connection {
    /// Who opened it.
    pub direction: Direction,
    /// The remote address (for an inbound connection, the peer's ephemeral port).
    pub addr: SocketAddr,
    /// The authenticated peer, once TLS has verified its key.
    pub node_id: Option<NodeId>,
    /// For an outbound connection, the peer we dialled (TLS refuses any other key).
    pub expected: Option<NodeId>,
    /// Connecting or established, with its timer.
    pub state: ConnState,
}

impl Connection {
    /// The peer: authenticated, or the one we are dialling.
    pub fn peer(&self) -> Option<NodeId> {
        self.node_id.or(self.expected)
    }

    /// When this connection times out, and which timeout that is.
    fn deadline(&self, limits: &PeerLimits) -> (Instant, TimeoutKind) {
        match self.state {
            ConnState::Connecting { deadline_at } => (deadline_at, TimeoutKind::Connect),
            ConnState::Established { last_activity } => {
                (last_activity + limits.idle_timeout, TimeoutKind::Idle)
            }
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
}

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
}

impl fmt::Display for LimitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::LimitReached { direction } => {
                write!(f, "no {direction} connection slot is free")
            }
            Self::PerPeerLimitReached => f.write_str("the peer has its maximum of connections"),
        }
    }
}

impl std::error::Error for LimitError {}

/// A dial refused before it started.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum DialError {
    /// No outbound slot is free (the outbound share or the total is used up).
    LimitReached,
    /// The address failed recently; it may be dialled again at `until`.
    Backoff {
        /// End of the backoff.
        until: Instant,
    },
    /// The address's circuit breaker is open, or its one half-open trial is running.
    CircuitOpen {
        /// When a trial dial may start.
        until: Instant,
    },
    /// We already have, or are dialling, a connection to this peer.
    AlreadyConnected,
}

impl fmt::Display for DialError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::LimitReached => f.write_str("no outbound connection slot is free"),
            Self::Backoff { .. } => f.write_str("the address is backing off after a failure"),
            Self::CircuitOpen { .. } => f.write_str("the address's circuit breaker is open"),
            Self::AlreadyConnected => f.write_str("already connected to or dialling the peer"),
        }
    }
}

impl std::error::Error for DialError {}

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
    /// Duplicate connections closed by the simultaneous-dial rule.
    pub duplicates_closed: u64,
    /// Dial failures recorded (including connect timeouts of dials).
    pub dial_failures: u64,
    /// Circuit breakers that opened.
    pub circuits_opened: u64,
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
#[derive(Debug)]
pub struct ConnectionTable {
    local_id: NodeId,
    limits: PeerLimits,
    conns: BTreeMap<ConnId, Connection>,
    next_id: u64,
    dials: DialBook,
    stats: PeerStats,
}

impl ConnectionTable {
    /// An empty table for the node `local_id`; `rng_seed` seeds the backoff jitter.
    pub fn new(local_id: NodeId, limits: PeerLimits, rng_seed: u64) -> ConnectionTable {
        let limits = limits.sanitized();
        ConnectionTable {
            local_id,
            limits,
            conns: BTreeMap::new(),
            next_id: 0,
            dials: DialBook::new(limits, rng_seed),
            stats: PeerStats::default(),
        }
    }

    /// The limits in force (after clamping).
    pub fn limits(&self) -> &PeerLimits {
        &self.limits
    }

    /// Admits a freshly accepted connection from `addr`, or refuses it when no inbound slot is
    /// free (close the socket at once). Its connect timeout starts now.
    pub fn admit_inbound(&mut self, now: Instant, addr: SocketAddr) -> Result<ConnId, LimitError> {
        if let Err(e) = self.check_slot(Direction::Inbound) {
            self.stats.refused_inbound_limit += 1;
            return Err(e);
        }
        self.stats.admitted_inbound += 1;
        Ok(self.insert(now, Direction::Inbound, addr, None))
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
        if let Err(e) = self.check_dial(now, addr, expected) {
            self.count_dial_refusal(e);
            return Err(e);
        }
        self.dials.record_attempt(now, addr);
        self.stats.dials_started += 1;
        Ok(self.insert(now, Direction::Outbound, addr, Some(expected)))
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
        if direction == Direction::Outbound {
            self.dials.record_success(addr);
        }
        let (same, opposite) = self.authenticated_to(node_id, conn, direction);
        if let Some(other) = opposite {
            return Ok(self.resolve_duplicate(now, conn, direction, other, node_id));
        }
        if same >= self.limits.max_per_peer {
            self.conns.remove(&conn);
            self.stats.refused_per_peer_limit += 1;
            return Err(LimitError::PerPeerLimitReached);
        }
        self.establish(now, conn, node_id);
        Ok(Keep::Both)
    }

    /// `conn` carried a message at `now`, postponing its idle timeout. Handshake traffic does
    /// not count: a connection that is still connecting keeps its connect deadline.
    pub fn on_activity(&mut self, now: Instant, conn: ConnId) {
        if let Some(Connection { state: ConnState::Established { last_activity }, .. }) =
            self.conns.get_mut(&conn)
        {
            *last_activity = now.max(*last_activity);
        }
    }

    /// `conn` failed before it authenticated (refused, reset, TLS error, wrong key). For a
    /// dial, the address's backoff and breaker record a failure. Returns what was removed.
    pub fn on_dial_failed(&mut self, now: Instant, conn: ConnId) -> Option<Connection> {
        let removed = self.conns.remove(&conn)?;
        let connecting = matches!(removed.state, ConnState::Connecting { .. });
        if removed.direction == Direction::Outbound && connecting {
            self.record_dial_failure(now, removed.addr);
        }
        Some(removed)
    }

    /// The established connection in `direction` idle the longest, if its last activity is
    /// at or before `idle_since`, skipping those `busy` says to keep; `None` if there is none.
    /// The caller closes it to make room.
    pub fn least_recently_active(
        &self,
        direction: Direction,
        idle_since: Instant,
        busy: impl Fn(ConnId) -> bool,
    ) -> Option<ConnId> {
        self.conns
            .iter()
            .filter(|(&id, c)| c.direction == direction && !busy(id))
            .filter_map(|(&id, c)| match c.state {
                ConnState::Established { last_activity } if last_activity <= idle_since => {
                    Some((last_activity, id))
                }
                _ => None,
            })
            .min()
            .map(|(_, id)| id)
    }

    /// `conn` closed (by either side, for any reason that is not a dial failure). Returns what
    /// was removed, or `None` when the table had already removed it.
    pub fn on_closed(&mut self, conn: ConnId) -> Option<Connection> {
        self.conns.remove(&conn)
    }

    /// Removes and returns the connections whose connect or idle deadline is at or before
    /// `now`; close them. A dial that timed out counts as a dial failure. Cheap when nothing
    /// is due, so calling early only costs a scan; calling late delays the closes.
    pub fn poll_timeouts(&mut self, now: Instant) -> Vec<(ConnId, TimeoutKind)> {
        let due: Vec<(ConnId, TimeoutKind)> = self
            .conns
            .iter()
            .map(|(&id, c)| (id, c.deadline(&self.limits)))
            .filter(|(_, (at, _))| *at <= now)
            .map(|(id, (_, kind))| (id, kind))
            .collect();
        for &(id, kind) in &due {
            self.on_timeout(now, id, kind);
        }
        due
    }

    /// The earliest connect or idle deadline, `None` with no connections. Changes after any
    /// call that adds, authenticates, touches or removes a connection.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.conns.values().map(|c| c.deadline(&self.limits).0).min()
    }

    /// The connection `conn`, if the table still has it.
    pub fn connection(&self, conn: ConnId) -> Option<&Connection> {
        self.conns.get(&conn)
    }

    /// Connections in `direction`, connecting or established.
    pub fn count(&self, direction: Direction) -> usize {
        self.conns.values().filter(|c| c.direction == direction).count()
    }

    /// Connections of both directions.
    pub fn len(&self) -> usize {
        self.conns.len()
    }

    /// Whether the table has no connection.
    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }

    /// Whether `node_id` has an authenticated connection.
    pub fn is_connected(&self, node_id: NodeId) -> bool {
        self.conns.values().any(|c| c.node_id == Some(node_id))
    }

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
            tracked_addrs: dials.tracked_addrs,
            addr_evictions: dials.evictions,
            ..self.stats
        }
    }

    fn insert(
        &mut self,
        now: Instant,
        direction: Direction,
        addr: SocketAddr,
        expected: Option<NodeId>,
    ) -> ConnId {
        let id = ConnId(self.next_id);
        self.next_id += 1;
        let state = ConnState::Connecting { deadline_at: now + self.limits.connect_timeout };
        self.conns.insert(id, Connection { direction, addr, node_id: None, expected, state });
        id
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
    ) -> Result<(), DialError> {
        if self.conns.values().any(|c| c.peer() == Some(expected)) {
            return Err(DialError::AlreadyConnected);
        }
        self.dials.may_dial(now, addr)?;
        self.check_slot(Direction::Outbound).map_err(|_| DialError::LimitReached)
    }

    fn count_dial_refusal(&mut self, error: DialError) {
        let counter = match error {
            DialError::LimitReached => &mut self.stats.dial_refused_limit,
            DialError::Backoff { .. } => &mut self.stats.dial_refused_backoff,
            DialError::CircuitOpen { .. } => &mut self.stats.dial_refused_circuit_open,
            DialError::AlreadyConnected => &mut self.stats.dial_refused_already_connected,
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
        for (&id, c) in &self.conns {
            if id == except || c.node_id != Some(node_id) {
                continue;
            }
            if c.direction == direction {
                same += 1;
            } else if opposite.is_none() {
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
            self.conns.remove(&other);
            self.establish(now, this, node_id);
            Keep::CloseOther(other)
        } else {
            self.conns.remove(&this);
            Keep::CloseThis
        }
    }

    fn establish(&mut self, now: Instant, conn: ConnId, node_id: NodeId) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.node_id = Some(node_id);
            c.state = ConnState::Established { last_activity: now };
            self.stats.established += 1;
        }
    }

    fn on_timeout(&mut self, now: Instant, conn: ConnId, kind: TimeoutKind) {
        let Some(removed) = self.conns.remove(&conn) else {
            return;
        };
        match kind {
            TimeoutKind::Connect => {
                self.stats.connect_timeouts += 1;
                if removed.direction == Direction::Outbound {
                    self.record_dial_failure(now, removed.addr);
                }
            }
            TimeoutKind::Idle => self.stats.idle_timeouts += 1,
        }
    }

    fn record_dial_failure(&mut self, now: Instant, addr: SocketAddr) {
        self.dials.record_failure(now, addr);
        self.stats.dial_failures += 1;
    }
}

/// The circuit breaker of one address.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Breaker {
    /// Dials are allowed, from `retry_at` on when a recent failure set a backoff. Reaching
    /// `breaker_failure_threshold` consecutive failures opens the breaker.
    Closed {
        /// End of the backoff after the last failure.
        retry_at: Option<Instant>,
    },
    /// Too many consecutive failures: no dial before `until`, after which the breaker is
    /// half-open.
    Open {
        /// End of the open period.
        until: Instant,
    },
    /// One trial dial may run. `trial_until` is set while it runs; its success closes the
    /// breaker, its failure re-opens it, and with no report by `trial_until` (its connect
    /// timeout) it counts as lost and another trial may start.
    HalfOpen {
        /// Deadline of the running trial.
        trial_until: Option<Instant>,
    },
}

/// Counters and gauges of a [`DialBook`].
#[derive(Clone, Copy, Default, PartialEq, Eq, Debug)]
pub struct DialStats {
    /// Addresses tracked now.
    pub tracked_addrs: usize,
    /// Failures recorded.
    pub failures: u64,
    /// Breakers that opened (including re-opening after a failed trial).
    pub circuits_opened: u64,
    /// Addresses evicted to make room.
    pub evictions: u64,
}

/// Per-address dial history: exponential backoff with jitter and a circuit breaker.
///
/// After the n-th consecutive failure an address waits `backoff_base_interval · 2^(n-1)`,
/// spread by ± `backoff_jitter_percent` and never above `backoff_max_interval`. At
/// `breaker_failure_threshold` failures its breaker opens for the longer of
/// `breaker_open_interval` and that backoff, then allows one trial dial (half-open). A success
/// at any point closes the breaker and clears the failures.
///
/// At most `max_tracked_addrs` addresses are kept. To make room, addresses with no failures
/// (recovered ones) go first, then the least recently updated. Eviction scans the map, so it
/// costs O(`max_tracked_addrs`), and only happens when a new address fails.
#[derive(Debug)]
pub struct DialBook {
    limits: PeerLimits,
    entries: BTreeMap<SocketAddr, AddrEntry>,
    rng: Rng,
    stats: DialStats,
}

impl DialBook {
    /// An empty book; `rng_seed` seeds the jitter, so equal seeds give equal backoffs.
    pub fn new(limits: PeerLimits, rng_seed: u64) -> DialBook {
        DialBook {
            limits: limits.sanitized(),
            entries: BTreeMap::new(),
            rng: Rng::new(rng_seed),
            stats: DialStats::default(),
        }
    }

    /// Whether `addr` may be dialled at `now`: `Backoff` or `CircuitOpen` say until when not.
    /// Every wait ends exactly at its deadline.
    pub fn may_dial(&self, now: Instant, addr: SocketAddr) -> Result<(), DialError> {
        match self.breaker(now, addr) {
            Breaker::Closed { retry_at: Some(until) } => Err(DialError::Backoff { until }),
            Breaker::Open { until } | Breaker::HalfOpen { trial_until: Some(until) } => {
                Err(DialError::CircuitOpen { until })
            }
            Breaker::Closed { retry_at: None } | Breaker::HalfOpen { trial_until: None } => Ok(()),
        }
    }

    /// A dial of `addr` starts at `now`; on a half-open address it is the trial.
    pub fn record_attempt(&mut self, now: Instant, addr: SocketAddr) {
        self.apply(addr, BreakerEvent::Attempt(now));
    }

    /// A dial of `addr` failed at `now`: the backoff grows and the breaker may open.
    pub fn record_failure(&mut self, now: Instant, addr: SocketAddr) {
        if !self.entries.contains_key(&addr) {
            self.make_room();
        }
        let entry = self.entries.entry(addr).or_insert(AddrEntry::new(now));
        entry.failures = entry.failures.saturating_add(1);
        let random = self.rng.next_u64();
        self.apply(addr, BreakerEvent::Failure { now, random });
        self.stats.failures += 1;
    }

    /// A dial of `addr` succeeded: the breaker closes and the failures are forgotten.
    pub fn record_success(&mut self, addr: SocketAddr) {
        self.apply(addr, BreakerEvent::Success);
        if let Some(entry) = self.entries.get_mut(&addr) {
            entry.failures = 0;
        }
    }

    /// The breaker of `addr` as of `now` (an untracked address is closed).
    pub fn breaker(&self, now: Instant, addr: SocketAddr) -> Breaker {
        let Some(entry) = self.entries.get(&addr) else {
            return Breaker::Closed { retry_at: None };
        };
        transition(&self.limits, entry.breaker, BreakerEvent::Elapsed(now), entry.failures)
    }

    /// Consecutive failures of `addr` since its last success.
    pub fn failures(&self, addr: SocketAddr) -> u32 {
        self.entries.get(&addr).map_or(0, |e| e.failures)
    }

    /// A snapshot of the counters and gauges.
    pub fn stats(&self) -> DialStats {
        DialStats { tracked_addrs: self.entries.len(), ..self.stats }
    }

    /// The one place a breaker changes: lets time pass up to the event's `now`, then applies
    /// the event. Untracked addresses are closed with no history, and stay untracked.
    fn apply(&mut self, addr: SocketAddr, event: BreakerEvent) {
        let Some(entry) = self.entries.get_mut(&addr) else {
            return;
        };
        let mut state = entry.breaker;
        if let Some(now) = event.now() {
            state = transition(&self.limits, state, BreakerEvent::Elapsed(now), entry.failures);
            entry.updated_at = now;
        }
        let next = transition(&self.limits, state, event, entry.failures);
        if matches!(next, Breaker::Open { .. }) && !matches!(state, Breaker::Open { .. }) {
            self.stats.circuits_opened += 1;
        }
        entry.breaker = next;
    }

    /// Evicts one address when the map is full: a recovered one if any, else the oldest.
    fn make_room(&mut self) {
        if self.entries.len() < self.limits.max_tracked_addrs {
            return;
        }
        let victim = self
            .entries
            .iter()
            .min_by_key(|(_, e)| (e.failures > 0, e.updated_at))
            .map(|(&addr, _)| addr);
        if let Some(addr) = victim {
            self.entries.remove(&addr);
            self.stats.evictions += 1;
        }
    }
}

/// What happens to an address's breaker.
#[derive(Clone, Copy, Debug)]
enum BreakerEvent {
    /// Time passes up to this instant.
    Elapsed(Instant),
    /// A dial starts.
    Attempt(Instant),
    /// A dial failed; `random` draws the jitter.
    Failure { now: Instant, random: u64 },
    /// A dial succeeded.
    Success,
}

impl BreakerEvent {
    fn now(self) -> Option<Instant> {
        match self {
            Self::Elapsed(now) | Self::Attempt(now) | Self::Failure { now, .. } => Some(now),
            Self::Success => None,
        }
    }
}

/// The breaker's transition function; `failures` already counts a `Failure` being applied.
fn transition(limits: &PeerLimits, state: Breaker, event: BreakerEvent, failures: u32) -> Breaker {
    use BreakerEvent::{Attempt, Elapsed, Failure, Success};
    match (state, event) {
        // A backoff ends at its deadline, not before.
        (Breaker::Closed { retry_at: Some(at) }, Elapsed(now)) if now >= at => {
            Breaker::Closed { retry_at: None }
        }
        // The open period is over: allow one trial.
        (Breaker::Open { until }, Elapsed(now)) if now >= until => {
            Breaker::HalfOpen { trial_until: None }
        }
        // The trial was never reported within its connect timeout: count it lost.
        (Breaker::HalfOpen { trial_until: Some(at) }, Elapsed(now)) if now >= at => {
            Breaker::HalfOpen { trial_until: None }
        }
        // Nothing is due yet.
        (state, Elapsed(_)) => state,
        // The half-open trial starts.
        (Breaker::HalfOpen { trial_until: None }, Attempt(now)) => {
            Breaker::HalfOpen { trial_until: Some(now + limits.connect_timeout) }
        }
        // Other dials leave the breaker alone (`may_dial` refused those it forbids).
        (state, Attempt(_)) => state,
        // The address is reachable: close, whatever the state.
        (_, Success) => Breaker::Closed { retry_at: None },
        // The trial failed: open again.
        (Breaker::HalfOpen { .. }, Failure { now, random }) => open(limits, now, failures, random),
        // A dial started before the breaker opened failed: already open, keep the deadline.
        (Breaker::Open { until }, Failure { .. }) => Breaker::Open { until },
        // Threshold reached: open.
        (Breaker::Closed { .. }, Failure { now, random })
            if failures >= limits.breaker_failure_threshold =>
        {
            open(limits, now, failures, random)
        }
        // Below the threshold: back off.
        (Breaker::Closed { .. }, Failure { now, random }) => {
            Breaker::Closed { retry_at: Some(now + backoff(limits, failures, random)) }
        }
    }
}

/// An open breaker: for the open interval, or the backoff if longer, so an address that keeps
/// failing its trials is retried ever less often, up to the backoff maximum.
fn open(limits: &PeerLimits, now: Instant, failures: u32, random: u64) -> Breaker {
    let period = limits.breaker_open_interval.max(backoff(limits, failures, random));
    Breaker::Open { until: now + period }
}

/// The wait after the `failures`-th consecutive failure: `base · 2^(failures-1)` spread by
/// ± the jitter percentage, never above the maximum.
fn backoff(limits: &PeerLimits, failures: u32, random: u64) -> Duration {
    let doubling = 1u32.checked_shl(failures.saturating_sub(1)).unwrap_or(u32::MAX);
    let max = limits.backoff_max_interval;
    let delay = limits.backoff_base_interval.saturating_mul(doubling).min(max);
    jittered(delay, limits.backoff_jitter_percent, random).min(max)
}

/// `delay` moved uniformly within ± `percent` % by `random` (`percent` ≤ 100).
fn jittered(delay: Duration, percent: u32, random: u64) -> Duration {
    let nanos = delay.as_nanos();
    let span = nanos * u128::from(percent.min(100)) / 100;
    let offset = u128::from(random) % (2 * span + 1);
    Duration::from_nanos(u64::try_from(nanos - span + offset).unwrap_or(u64::MAX))
}

/// What the book remembers about one address.
#[derive(Clone, Copy, Debug)]
struct AddrEntry {
    failures: u32,
    breaker: Breaker,
    updated_at: Instant,
}

impl AddrEntry {
    fn new(now: Instant) -> AddrEntry {
        AddrEntry { failures: 0, breaker: Breaker::Closed { retry_at: None }, updated_at: now }
    }
}

/// The longest duration a limit may hold; longer ones are clamped, which keeps every
/// `now + duration` far from `Instant`'s range end. A year is "never" for a timer here.
const MAX_INTERVAL: Duration = Duration::from_secs(365 * 24 * 60 * 60);

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: PeerLimits = PeerLimits::DEFAULT;
    const SEED: u64 = 0x5eed;
    const NS: Duration = Duration::from_nanos(1);

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

    /// Fails `n` dials of `addr` at `now`, one after another.
    fn fail_times(book: &mut DialBook, now: Instant, addr: SocketAddr, n: u32) {
        for _ in 0..n {
            book.record_failure(now, addr);
        }
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
        t.admit_inbound(now, addr(1)).unwrap();
        t.admit_inbound(now, addr(2)).unwrap();
        let err = t.admit_inbound(now, addr(3)).unwrap_err();
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
        assert!(t.admit_inbound(now, addr(3)).is_ok());
        assert_eq!((t.count(Direction::Inbound), t.count(Direction::Outbound)), (1, 1));
    }

    #[test]
    fn total_limit_binds_when_shares_oversubscribe_it() {
        let now = Instant::now();
        let mut t = table(PeerLimits { max_connections: 3, ..LIMITS });
        for port in 1..=3 {
            t.admit_inbound(now, addr(port)).unwrap();
        }
        let err = t.admit_inbound(now, addr(4));
        assert_eq!(err, Err(LimitError::LimitReached { direction: Direction::Inbound }));
        assert_eq!(t.start_dial(now, addr(5), id(5)), Err(DialError::LimitReached));
    }

    #[test]
    fn closing_a_connection_frees_its_slot() {
        let now = Instant::now();
        let mut t = table(PeerLimits { max_inbound: 1, ..LIMITS });
        let c = t.admit_inbound(now, addr(1)).unwrap();
        assert!(t.admit_inbound(now, addr(2)).is_err());
        assert_eq!(t.on_closed(c).map(|c| c.addr), Some(addr(1)));
        assert_eq!(t.on_closed(c), None);
        assert!(t.admit_inbound(now, addr(2)).is_ok());
    }

    #[test]
    fn per_peer_limit_refuses_and_removes_the_extra_connection() {
        let now = Instant::now();
        let mut t = table(LIMITS);
        let peer = id(9);
        let conns: Vec<ConnId> = (1..=3).map(|p| t.admit_inbound(now, addr(p)).unwrap()).collect();
        assert_eq!(t.on_authenticated(now, conns[0], peer), Ok(Keep::Both));
        assert_eq!(t.on_authenticated(now, conns[1], peer), Ok(Keep::Both));
        assert_eq!(t.on_authenticated(now, conns[2], peer), Err(LimitError::PerPeerLimitReached));
        assert_eq!(t.connection(conns[2]), None);
        assert_eq!((t.len(), t.stats().refused_per_peer_limit, t.stats().established), (2, 1, 2));
        // Another peer is not affected.
        let other = t.admit_inbound(now, addr(4)).unwrap();
        assert_eq!(t.on_authenticated(now, other, id(10)), Ok(Keep::Both));
    }

    #[test]
    fn refuses_dial_to_a_peer_already_connected_or_being_dialled() {
        let now = Instant::now();
        let mut t = table(LIMITS);
        t.start_dial(now, addr(1), id(1)).unwrap();
        assert_eq!(t.start_dial(now, addr(2), id(1)), Err(DialError::AlreadyConnected));
        let inbound = t.admit_inbound(now, addr(3)).unwrap();
        t.on_authenticated(now, inbound, id(3)).unwrap();
        assert!(t.is_connected(id(3)));
        assert_eq!(t.start_dial(now, addr(4), id(3)), Err(DialError::AlreadyConnected));
        assert_eq!(t.stats().dial_refused_already_connected, 2);
    }

    // ---- Duplicate connections (simultaneous dial) ----

    /// Two nodes dial each other at once; TCP connection X is dialled by `a`, Y by `b`. Each
    /// side authenticates its two connections in the given order (`true`: X first). Returns
    /// the name of the connection each side kept.
    fn simultaneous_dial(a: NodeId, b: NodeId, a_x_first: bool, b_x_first: bool) -> [char; 2] {
        let now = Instant::now();
        let mut ta = ConnectionTable::new(a, LIMITS, 1);
        let mut tb = ConnectionTable::new(b, LIMITS, 2);
        let x = [ta.start_dial(now, addr(2), b).unwrap(), tb.admit_inbound(now, addr(1)).unwrap()];
        let y = [ta.admit_inbound(now, addr(3)).unwrap(), tb.start_dial(now, addr(4), a).unwrap()];
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
        let inbound = t.admit_inbound(now, addr(1)).unwrap();
        let outbound = t.start_dial(now, addr(2), peer).unwrap();
        assert_eq!(t.on_authenticated(now, inbound, peer), Ok(Keep::Both));
        assert_eq!(t.on_authenticated(now, outbound, peer), Ok(Keep::CloseOther(inbound)));
        assert_eq!(t.connection(inbound), None);
        assert_eq!(t.connection(outbound).and_then(|c| c.node_id), Some(peer));
    }

    #[test]
    fn connections_in_the_same_direction_are_not_duplicates() {
        let now = Instant::now();
        let mut t = table(LIMITS);
        let a = t.admit_inbound(now, addr(1)).unwrap();
        let b = t.admit_inbound(now, addr(2)).unwrap();
        assert_eq!(t.on_authenticated(now, a, id(9)), Ok(Keep::Both));
        assert_eq!(t.on_authenticated(now, b, id(9)), Ok(Keep::Both));
        assert_eq!(t.stats().duplicates_closed, 0);
    }

    #[test]
    fn authenticating_a_forgotten_connection_closes_it() {
        let now = Instant::now();
        let mut t = table(LIMITS);
        let c = t.admit_inbound(now, addr(1)).unwrap();
        t.poll_timeouts(now + LIMITS.connect_timeout);
        assert_eq!(t.on_authenticated(now, c, id(9)), Ok(Keep::CloseThis));
        assert!(t.is_empty());
    }

    // ---- Timeouts ----

    #[test]
    fn connect_timeout_fires_exactly_at_the_deadline() {
        let now = Instant::now();
        let mut t = table(LIMITS);
        let c = t.admit_inbound(now, addr(1)).unwrap();
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
        let c = t.admit_inbound(now, addr(1)).unwrap();
        t.on_activity(now + secs(4), c);
        assert_eq!(t.poll_timeouts(now + secs(5)), vec![(c, TimeoutKind::Connect)]);
    }

    #[test]
    fn idle_timeout_fires_exactly_at_the_deadline_and_activity_postpones_it() {
        let now = Instant::now();
        let mut t = table(LIMITS);
        let c = t.admit_inbound(now, addr(1)).unwrap();
        let authenticated_at = now + secs(1);
        t.on_authenticated(authenticated_at, c, id(9)).unwrap();
        assert_eq!(t.next_deadline(), Some(authenticated_at + secs(60)));
        let active_at = authenticated_at + secs(30);
        t.on_activity(active_at, c);
        let deadline = active_at + secs(60);
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
        let early = t.admit_inbound(now, addr(1)).unwrap();
        t.admit_inbound(now + secs(2), addr(2)).unwrap();
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

    // ---- Backoff ----

    #[test]
    fn backoff_doubles_with_jitter_inside_bounds() {
        let now = Instant::now();
        let limits = PeerLimits { breaker_failure_threshold: 100, ..LIMITS };
        let mut book = DialBook::new(limits, SEED);
        for n in 1..=8u32 {
            book.record_failure(now, addr(1));
            let Err(DialError::Backoff { until }) = book.may_dial(now, addr(1)) else {
                panic!("failure {n} should back off");
            };
            let nominal = secs(1) * 2u32.pow(n - 1);
            let wait = until - now;
            assert!(wait >= nominal * 8 / 10 && wait <= nominal * 12 / 10, "{n}: {wait:?}");
        }
    }

    #[test]
    fn backoff_is_capped_at_the_maximum() {
        let now = Instant::now();
        let limits = PeerLimits { breaker_failure_threshold: 1000, ..LIMITS };
        let mut book = DialBook::new(limits, SEED);
        for n in 1..=200u32 {
            book.record_failure(now, addr(1));
            let Err(DialError::Backoff { until }) = book.may_dial(now, addr(1)) else {
                panic!("failure {n} should back off");
            };
            assert!(until - now <= secs(300), "{n}: {:?}", until - now);
            if n >= 10 {
                // 2^9 s is past the cap, so only the downward jitter remains.
                assert!(until - now >= secs(240), "{n}: {:?}", until - now);
            }
        }
    }

    #[test]
    fn backoff_ends_exactly_at_its_deadline() {
        let now = Instant::now();
        let mut book = DialBook::new(LIMITS, SEED);
        book.record_failure(now, addr(1));
        let Err(DialError::Backoff { until }) = book.may_dial(now, addr(1)) else {
            panic!("expected a backoff");
        };
        assert_eq!(book.may_dial(until - NS, addr(1)), Err(DialError::Backoff { until }));
        assert_eq!(book.may_dial(until, addr(1)), Ok(()));
    }

    #[test]
    fn jitter_is_deterministic_per_seed_and_spreads_across_seeds() {
        let now = Instant::now();
        let wait = |seed: u64| {
            let mut book = DialBook::new(LIMITS, seed);
            fail_times(&mut book, now, addr(1), 3);
            match book.may_dial(now, addr(1)) {
                Err(DialError::Backoff { until }) => until - now,
                other => panic!("expected a backoff, got {other:?}"),
            }
        };
        assert_eq!(wait(7), wait(7));
        let distinct: std::collections::BTreeSet<Duration> = (0..20).map(wait).collect();
        assert!(distinct.len() > 10, "{distinct:?}");
    }

    #[test]
    fn jitter_stays_within_its_percentage() {
        let d = secs(10);
        assert_eq!(jittered(d, 20, 0), secs(8));
        assert_eq!(jittered(d, 20, 4_000_000_000), secs(12)); // offset == 2 * span
        assert_eq!(jittered(d, 0, u64::MAX), d);
        for random in [1, 12345, u64::MAX, u64::MAX / 3] {
            let j = jittered(d, 20, random);
            assert!(j >= secs(8) && j <= secs(12), "{j:?}");
        }
    }

    // ---- Circuit breaker ----

    #[test]
    fn breaker_opens_at_the_failure_threshold() {
        let now = Instant::now();
        let mut book = DialBook::new(LIMITS, SEED);
        fail_times(&mut book, now, addr(1), 4);
        assert!(matches!(book.may_dial(now, addr(1)), Err(DialError::Backoff { .. })));
        book.record_failure(now, addr(1));
        let until = now + secs(30); // The 5th backoff (16 s ± 20 %) is shorter than 30 s.
        assert_eq!(book.breaker(now, addr(1)), Breaker::Open { until });
        assert_eq!(book.may_dial(until - NS, addr(1)), Err(DialError::CircuitOpen { until }));
        assert_eq!(book.stats().circuits_opened, 1);
    }

    #[test]
    fn breaker_half_opens_after_the_open_period_for_one_trial() {
        let now = Instant::now();
        let mut book = DialBook::new(LIMITS, SEED);
        fail_times(&mut book, now, addr(1), 5);
        let open_end = now + secs(30);
        assert_eq!(book.breaker(open_end, addr(1)), Breaker::HalfOpen { trial_until: None });
        assert_eq!(book.may_dial(open_end, addr(1)), Ok(()));
        book.record_attempt(open_end, addr(1));
        let trial_until = open_end + secs(5);
        assert_eq!(
            book.may_dial(open_end, addr(1)),
            Err(DialError::CircuitOpen { until: trial_until })
        );
        // A trial never reported is lost at its connect timeout; another may start.
        assert_eq!(book.may_dial(trial_until, addr(1)), Ok(()));
    }

    #[test]
    fn half_open_success_closes_the_breaker() {
        let now = Instant::now();
        let mut book = DialBook::new(LIMITS, SEED);
        fail_times(&mut book, now, addr(1), 5);
        let open_end = now + secs(30);
        book.record_attempt(open_end, addr(1));
        book.record_success(addr(1));
        assert_eq!(book.breaker(open_end, addr(1)), Breaker::Closed { retry_at: None });
        assert_eq!((book.may_dial(open_end, addr(1)), book.failures(addr(1))), (Ok(()), 0));
    }

    #[test]
    fn half_open_failure_reopens_the_breaker() {
        let now = Instant::now();
        let mut book = DialBook::new(LIMITS, SEED);
        fail_times(&mut book, now, addr(1), 5);
        let open_end = now + secs(30);
        book.record_attempt(open_end, addr(1));
        let failed_at = open_end + secs(1);
        book.record_failure(failed_at, addr(1));
        let Breaker::Open { until } = book.breaker(failed_at, addr(1)) else {
            panic!("expected the breaker to re-open");
        };
        // Open for 30 s, or the 6th backoff (32 s ± 20 %) if longer.
        assert!(until - failed_at >= secs(30) && until - failed_at <= secs(32) * 12 / 10);
        assert_eq!(book.stats().circuits_opened, 2);
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

    // ---- Bounded address map ----

    #[test]
    fn address_map_evicts_recovered_addresses_first() {
        let now = Instant::now();
        let mut book = DialBook::new(PeerLimits { max_tracked_addrs: 3, ..LIMITS }, SEED);
        book.record_failure(now, addr(1));
        book.record_failure(now + secs(1), addr(2));
        book.record_failure(now + secs(2), addr(3));
        book.record_success(addr(3)); // Recovered: cheapest to forget, though the newest.
        book.record_failure(now + secs(3), addr(4));
        assert_eq!(book.stats().tracked_addrs, 3);
        assert_eq!(book.stats().evictions, 1);
        assert_eq!(book.failures(addr(1)), 1);
        assert!(book.entries.contains_key(&addr(1)) && !book.entries.contains_key(&addr(3)));
    }

    #[test]
    fn address_map_evicts_the_oldest_when_all_are_failing() {
        let now = Instant::now();
        let mut book = DialBook::new(PeerLimits { max_tracked_addrs: 3, ..LIMITS }, SEED);
        for port in 1..=3u16 {
            book.record_failure(now + secs(u64::from(port)), addr(port));
        }
        book.record_failure(now + secs(10), addr(1)); // Refreshes addr(1).
        book.record_failure(now + secs(11), addr(4));
        let tracked: Vec<SocketAddr> = book.entries.keys().copied().collect();
        assert_eq!(tracked, vec![addr(1), addr(3), addr(4)]);
        assert_eq!(book.may_dial(now + secs(11), addr(2)), Ok(())); // Forgotten entirely.
        assert_eq!(book.stats().evictions, 1);
    }

    #[test]
    fn success_of_an_untracked_address_tracks_nothing() {
        let now = Instant::now();
        let mut book = DialBook::new(LIMITS, SEED);
        book.record_attempt(now, addr(1));
        book.record_success(addr(1));
        assert_eq!(book.stats().tracked_addrs, 0);
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
}
