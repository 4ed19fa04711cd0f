//! What goes into the router and what comes out of it: [`Input`], [`Output`], the
//! application's [`Command`]s and their [`Reply`]s, [`Event`]s, settings and counters.

use std::convert::Infallible;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use super::conns::{ConnId, Direction, LimitError, PeerLimits};
use super::dials::DialError;
use crate::gossip::{GossipCommand, GossipConfig, GossipEvent, GossipReply};
use crate::identity::NodeId;
use crate::kad::dht::{DhtCommand, DhtConfig, DhtReply};
pub use crate::protocol::{CommandId, Job, JobId, JobResult};
use crate::transport::CloseCause;
use crate::wire::messages::{ErrorCode, GoodbyeReason, Hello, Message};

/// Settings of the core; defaults live in `config`.
#[derive(Debug, Clone)]
pub struct CoreConfig {
    /// Connection and dial limits, the connect and idle timeouts.
    pub limits: PeerLimits,
    /// How long a request we send waits for its response.
    pub request_timeout: Duration,
    /// How long a peer's request waits for an answer a protocol gives later (a STORE waiting
    /// for its signature check); past it the peer is answered `Overloaded`.
    pub answer_timeout: Duration,
    /// Requests in flight, all peers together; as many more may wait for a dial.
    pub max_pending_requests: usize,
    /// Application commands waiting for a connection to complete.
    pub max_waiting_commands: usize,
    /// Slow-downs a peer may earn for exceeding its rate limit; one more disconnects it
    /// (`GoodbyeReason::RateLimited`).
    pub max_strikes: u32,
    /// Seed of the core's randomness: dial jitter, and each protocol's generator.
    pub rng_seed: u64,
    /// The Kademlia DHT (its `rng_seed` is derived from the core's).
    pub dht: DhtConfig,
    /// Gossip (its `rng_seed` is derived from the core's); `None`: not hosted.
    pub gossip: Option<GossipConfig>,
    /// Finding gossip subscribers through the DHT; `None`: off (gossip then meets only the
    /// peers the node connects to otherwise).
    pub discovery: Option<super::DiscoveryConfig>,
}

/// Everything the driver (the reactor, or the simulator) tells the core.
#[derive(Debug, Clone)]
pub enum Input {
    /// A TCP connection from `addr` was accepted; `conn` is the driver's new id for it
    /// ([`ConnId::inbound`]). A refusal comes back as [`Output::Disconnect`].
    Accepted {
        /// Its id.
        conn: ConnId,
        /// The remote address of the socket.
        addr: SocketAddr,
    },
    /// The dial-back `conn` authenticated its peer; the driver closes it (the core has
    /// forgotten it already).
    Probed {
        /// The connection.
        conn: ConnId,
    },
    /// TLS authenticated `peer` on `conn`, a connection we dialled, and our Hello is sent:
    /// requests may go out on it before the peer's Hello (handshake.md §2.1). `Established`
    /// follows with the peer's Hello. A driver that never sends this gets no pipelining: the
    /// requests wait for `Established`. Sent as TLS completes, it also times the dial's
    /// handshakes, the protocols' first round-trip sample (`Protocol::handle_handshake_rtt`).
    Authenticated {
        /// The connection.
        conn: ConnId,
        /// The peer TLS authenticated.
        peer: NodeId,
    },
    /// `conn` completed TLS and the Hello exchange with `peer`.
    Established {
        /// The connection.
        conn: ConnId,
        /// The peer TLS authenticated.
        peer: NodeId,
        /// Its Hello, shared: the core keeps it as long as the connection, and a driver that
        /// sees one Hello on many connections (the simulator: one per node) hands out clones of
        /// one allocation instead of a copy per connection.
        hello: Arc<Hello>,
    },
    /// A message arrived on an established connection.
    Frame {
        /// The connection.
        conn: ConnId,
        /// The message.
        msg: Message,
    },
    /// `conn` ended, before or after establishment.
    Closed {
        /// The connection.
        conn: ConnId,
        /// Why.
        cause: CloseCause,
    },
    /// A budget of `conn` is exceeded; the runtime has applied its mechanism (reads paused,
    /// a frame refused) and the core decides what becomes of the peer.
    OverBudget {
        /// The connection.
        conn: ConnId,
        /// Which budget.
        budget: Budget,
    },
    /// `conn`'s queued output went above (`congested`) or back below its high-water mark.
    Congestion {
        /// The connection.
        conn: ConnId,
        /// Above (true) or below.
        congested: bool,
    },
    /// A worker finished job `id`.
    JobDone {
        /// The job.
        id: JobId,
        /// What it found.
        result: JobResult,
    },
    /// Job `id` will not run: the worker pool refused it, or it panicked.
    JobRefused {
        /// The job.
        id: JobId,
    },
    /// An application command; its reply comes as [`Output::Reply`] with `id`.
    Command {
        /// Chosen by the caller.
        id: CommandId,
        /// The command.
        cmd: Command,
    },
}

/// A budget a connection exceeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Budget {
    /// The peer sent faster than its frame or byte rate: reading it is paused until its
    /// budget is repaid. `strikes` counts the slow-downs it earned recently, this one
    /// included (`u32::MAX`: a frame that can never be paid for).
    Inbound {
        /// Recent slow-downs, this one included.
        strikes: u32,
    },
    /// A frame for the peer did not fit its write queue and was not sent, or its output did
    /// not drain within the stall timeout: the peer does not read what it asks for.
    WriteQueue,
    /// The peer started a frame and did not finish it within the frame timeout.
    PartialFrame,
}

/// What the core asks its driver to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Open a TCP connection to `addr` and run TLS expecting `peer`; report the outcome with
    /// [`Input::Established`] (or [`Input::Probed`] for a dial-back) or [`Input::Closed`] for
    /// `conn`.
    Dial {
        /// The table's id for the new connection.
        conn: ConnId,
        /// The expected peer.
        peer: NodeId,
        /// Where to dial.
        addr: SocketAddr,
        /// A dial-back: only TLS, then close (`transport::Connection::probe_only`).
        probe: bool,
    },
    /// Send `msg` on `conn`.
    Send {
        /// The connection.
        conn: ConnId,
        /// The message.
        msg: Message,
    },
    /// Close `conn`: with a Goodbye saying `reason` if it is established, at once otherwise.
    /// The core has forgotten it already; its [`Input::Closed`] changes nothing.
    Disconnect {
        /// The connection.
        conn: ConnId,
        /// Why.
        reason: GoodbyeReason,
    },
    /// The answer to an application command.
    Reply {
        /// The command.
        id: CommandId,
        /// Its answer.
        reply: Reply,
    },
    /// A notification for the application.
    Event(Event),
    /// Run `job` on a worker ([`crate::protocol::jobs::run`]); report with
    /// [`Input::JobDone`] or [`Input::JobRefused`].
    Job {
        /// Identifies the job.
        id: JobId,
        /// The work.
        job: Job,
    },
}

/// What the application asks of the node.
#[derive(Debug, Clone)]
pub enum Command {
    /// Connect to `peer` at `addr` (or confirm an existing connection).
    Connect {
        /// The peer we expect; TLS refuses any other key.
        peer: NodeId,
        /// Where to dial.
        addr: SocketAddr,
    },
    /// Ping a connected peer.
    Ping {
        /// The peer.
        peer: NodeId,
    },
    /// List the connected peers.
    Peers,
    /// A Kademlia DHT command.
    Dht(DhtCommand),
    /// A gossip command (answered `Reply::Unsupported` when gossip is off).
    Gossip(GossipCommand),
}

/// The answer to a [`Command`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// Answer to `Connect`.
    Connected(Result<NodeId, ConnectError>),
    /// Answer to `Ping`.
    Pong(Result<PingInfo, RequestError>),
    /// Answer to `Peers`.
    Peers(Vec<PeerSummary>),
    /// Answer to a DHT command.
    Dht(DhtReply),
    /// Answer to a gossip command.
    Gossip(GossipReply),
    /// The command needs a protocol this node does not host.
    Unsupported,
}

impl From<GossipReply> for Reply {
    fn from(reply: GossipReply) -> Reply {
        Reply::Gossip(reply)
    }
}

impl From<GossipEvent> for Event {
    fn from(event: GossipEvent) -> Event {
        Event::Gossip(event)
    }
}

impl From<DhtReply> for Reply {
    fn from(reply: DhtReply) -> Reply {
        Reply::Dht(reply)
    }
}

impl From<Infallible> for Reply {
    fn from(never: Infallible) -> Reply {
        match never {}
    }
}

/// A successful ping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PingInfo {
    /// Round-trip time, request sent to response handled.
    pub rtt: Duration,
    /// Our address as the peer saw it.
    pub observed: SocketAddr,
}

/// A connected peer, as listed by `Peers`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerSummary {
    /// Its id.
    pub id: NodeId,
    /// The connection's remote address.
    pub addr: SocketAddr,
    /// Who dialled.
    pub direction: Direction,
    /// Its agent string.
    pub agent: String,
    /// Where it listens, as it announced.
    pub listen_addrs: Vec<SocketAddr>,
}

/// Something the application may want to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A peer completed the Hello exchange (its first connection).
    PeerConnected {
        /// Its id.
        peer: NodeId,
        /// Who dialled.
        direction: Direction,
    },
    /// A peer's last connection closed.
    PeerDisconnected {
        /// Its id.
        peer: NodeId,
    },
    /// From gossip: a message delivered.
    Gossip(GossipEvent),
}

impl From<Infallible> for Event {
    fn from(never: Infallible) -> Event {
        match never {}
    }
}

/// Why a `Connect` failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectError {
    /// Refused before dialling: limit, backoff or open circuit.
    Refused(DialError),
    /// The peer is already at the per-peer connection limit.
    Limit(LimitError),
    /// The key presented is not the expected `NodeId`.
    WrongKey,
    /// TCP, TLS or the Hello exchange failed (the close cause's name).
    Failed(&'static str),
    /// Not authenticated within the connect timeout.
    Timeout,
    /// Too many commands wait already.
    Busy,
}

impl ConnectError {
    /// How a dial that ended with `cause` fails its `Connect`.
    pub fn from_cause(cause: &CloseCause) -> ConnectError {
        match cause {
            CloseCause::WrongKey => ConnectError::WrongKey,
            other => ConnectError::Failed(other.name()),
        }
    }
}

/// Why a request failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestError {
    /// The peer is not connected.
    NotConnected,
    /// No response within the request timeout.
    Timeout,
    /// The connection closed before the response.
    Disconnected,
    /// Too many requests in flight.
    Busy,
    /// The peer answered with an error.
    Remote(ErrorCode),
    /// The peer answered with the wrong kind of response.
    UnexpectedResponse,
}

/// Counters of the router, for the metrics layer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CoreStats {
    /// Requests answered (PING by the router, the rest by the protocol serving them).
    pub requests_served: u64,
    /// Requests of a kind no protocol serves, answered `Unsupported`.
    pub requests_unsupported: u64,
    /// Responses with no matching request (late or unsolicited).
    pub responses_unmatched: u64,
    /// Requests that timed out.
    pub requests_timed_out: u64,
    /// Answers a protocol gave after the request's answer deadline or connection was gone.
    pub answers_late: u64,
    /// Peers' requests answered `Overloaded` because the answer did not come in time.
    pub answers_expired: u64,
    /// Gossip frames dropped: no protocol serves gossip, or the peer left.
    pub gossip_dropped: u64,
    /// Commands refused because a queue was full.
    pub commands_refused_busy: u64,
    /// Protocol requests failed before sending: the queue for a dial in progress was full,
    /// too many were in flight, or the peer could not be dialled.
    pub requests_unsent: u64,
    /// Requests sent on a dial before the peer's Hello came (handshake.md §2.1): each saved
    /// a round trip.
    pub requests_pipelined: u64,
    /// Dials opened ahead of a request ([`crate::protocol::Action::Connect`] with `ahead`).
    pub preconnects: u64,
    /// Of those asked for, not dialled: no outbound slot free, the address backing off, or
    /// its circuit open (a speculative dial closes nothing to make room).
    pub preconnects_refused: u64,
    /// Idle connections closed to make room for a new one.
    pub connections_pruned: u64,
    /// Inbound connections refused by the connection table.
    pub refused_inbound: u64,
    /// Connections closed for exceeding their rate limit persistently.
    pub closed_rate_limited: u64,
    /// Connections closed because the peer did not read its write queue.
    pub closed_slow_reader: u64,
    /// Connections closed because a frame the peer started did not arrive whole in time.
    pub closed_frame_timeout: u64,
    /// Frames from connections the core had already closed (ignored).
    pub frames_after_close: u64,
    /// Connections closed because they reached this node itself (transport.md §5).
    pub self_connections: u64,
    /// Dial-backs started for a protocol ([`crate::protocol::Action::Probe`]).
    pub probes_started: u64,
    /// Connections that ended (every [`Input::Closed`]: failed dials too), by cause, indexed
    /// like [`CloseCause::KINDS`].
    pub closed: [u64; CloseCause::KINDS.len()],
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Refused(e) => write!(f, "dial refused: {e}"),
            Self::Limit(e) => e.fmt(f),
            Self::WrongKey => f.write_str("the peer presented a key other than the expected id"),
            Self::Failed(why) => write!(f, "connection failed: {why}"),
            Self::Timeout => f.write_str("connection timed out"),
            Self::Busy => f.write_str("too many commands waiting"),
        }
    }
}

impl std::error::Error for ConnectError {}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotConnected => f.write_str("peer not connected"),
            Self::Timeout => f.write_str("request timed out"),
            Self::Disconnected => f.write_str("connection closed before the response"),
            Self::Busy => f.write_str("too many requests in flight"),
            Self::Remote(code) => write!(f, "peer answered {code:?}"),
            Self::UnexpectedResponse => f.write_str("peer answered with the wrong response"),
        }
    }
}

impl std::error::Error for RequestError {}
