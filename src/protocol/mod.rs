//! The contract between the router ([`crate::core::NodeCore`]) and each protocol it hosts:
//! Kademlia today, gossip next (DESIGN.md, "Core v2").
//!
//! A protocol is a sans-IO state machine that knows peers by [`NodeId`], never by connection.
//! The router owns what protocols share: the connection table, request matching, jobs, and the
//! seeded randomness each protocol's generator is derived from. It routes by message kind:
//! each inbound request kind and gossip frames go to the one protocol that claims the kind
//! ([`Protocol::kinds`]), responses go to the protocol that sent the request, job results to
//! the job's owner. Protocols never import each other, and this module imports neither the
//! router nor any protocol, so adding a protocol touches no other protocol's code.
//!
//! Driving contract, the same for every protocol: after each `handle_*` call the router drains
//! [`Protocol::poll_output`] until `None`, and calls [`Protocol::handle_timeout`] no later than
//! [`Protocol::next_deadline`]. Time is always an argument; a protocol reads no clock, owns no
//! socket and spawns no thread.
//!
//! Identifiers that cross this boundary are typed: a [`CommandId`] names an application command,
//! a [`RequestKey`] is the protocol's own name for a request it sent (handed back with the
//! outcome, so the protocol keeps no map of requests in flight), a [`ReplyTicket`] stands for
//! an inbound request the protocol answers later, and a [`JobKey`] names a job.

pub mod author_keys;
pub mod jobs;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

pub use jobs::{
    Job, JobId, JobKey, JobResult, PersistEntry, PersistError, PersistKind, Validator, Validators,
    Verdict,
};

use crate::identity::NodeId;
use crate::wire::messages::{ErrorCode, GoodbyeReason, Gossip, Hello, PeerInfo, Request, Response};

/// Which protocol owns a request, a job or a message kind; the router assigns it when the
/// protocol is registered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProtocolId(pub u8);

/// Names an application command so its reply finds its way back; chosen by the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CommandId(pub u64);

/// A protocol's own name for a request it sent, handed back unchanged with the outcome. The
/// protocol may encode in it whatever it needs to route the outcome (a query, a purpose).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestKey(pub u64);

/// An inbound request a protocol answers later with [`Action::Respond`]. Opaque: only the router
/// makes them. A ticket whose connection closed, or whose answer deadline passed, is dropped by
/// the router when the answer comes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ReplyTicket(pub(crate) u64);

/// Who opened a connection.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Direction {
    /// The peer dialled us.
    Inbound,
    /// We dialled the peer.
    Outbound,
}

/// An authenticated peer as a protocol sees it: its id (the key TLS verified), the address of
/// the connection, who dialled, and the Hello it sent. The addresses in the Hello are the
/// peer's claims; `addr` is the socket's.
#[derive(Debug, Clone, Copy)]
pub struct Peer<'a> {
    /// The peer's id.
    pub id: NodeId,
    /// The connection's remote address (for an inbound connection, an ephemeral port).
    pub addr: SocketAddr,
    /// Who dialled.
    pub direction: Direction,
    /// What the peer announced.
    pub hello: &'a Hello,
}

/// The message kinds the router routes to protocols. PING is the router's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// `Request::FindNode`.
    FindNode,
    /// `Request::FindValue`.
    FindValue,
    /// `Request::Store`.
    Store,
    /// `Request::AddProvider`.
    AddProvider,
    /// `Request::GetProviders`.
    GetProviders,
    /// Every `Message::Gossip` frame.
    Gossip,
}

impl Kind {
    /// How many kinds there are (for tables indexed by kind).
    pub const COUNT: usize = 6;

    /// The kind of an inbound request; `None` for PING, which the router answers itself.
    pub fn of_request(request: &Request) -> Option<Kind> {
        match request {
            Request::Ping => None,
            Request::FindNode { .. } => Some(Kind::FindNode),
            Request::FindValue { .. } => Some(Kind::FindValue),
            Request::Store { .. } => Some(Kind::Store),
            Request::AddProvider { .. } => Some(Kind::AddProvider),
            Request::GetProviders { .. } => Some(Kind::GetProviders),
        }
    }

    /// The kind's index in `0..COUNT`.
    pub fn index(self) -> usize {
        self as usize
    }
}

/// Why a request a protocol sent got no response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestFailure {
    /// Could not connect (refused, backoff, limits, wrong key), or too many requests in flight.
    Unreachable,
    /// No response within the request timeout.
    Timeout,
    /// The connection closed before the response.
    Disconnected,
}

/// What became of a dial-back ([`Action::Probe`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeResult {
    /// TLS at the address authenticated the peer: the address is proven.
    Reached,
    /// The dial failed, timed out, or met a different key.
    Unreachable,
    /// Not dialled: no outbound slot, the address is backing off, or it is our own id. Says
    /// nothing about the address.
    NotTried,
}

/// What a protocol asks the router to do. `R` and `E` are the protocol's reply and event types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action<R, E> {
    /// Send `request` to `to`, dialling one of its addresses (authenticated as `to.id`) if it
    /// is not connected. Exactly one outcome comes back through
    /// [`Protocol::handle_outcome`] with `key`.
    Request {
        /// The peer and where to dial it.
        to: PeerInfo,
        /// The request.
        request: Request,
        /// The protocol's name for it.
        key: RequestKey,
    },
    /// Open a connection to `to` (dialling its first address, authenticated as `to.id`) unless
    /// it is connected or being dialled, so that a request that follows soon costs one round
    /// trip instead of the TCP and TLS ones too. It never closes another connection to make
    /// room, and nothing comes back; a request sent later rides the dial.
    Connect {
        /// The peer and where to dial it.
        to: PeerInfo,
        /// A guess at a request to come (a lookup connecting ahead): counted as unused if it
        /// times out idle without carrying anything. Otherwise (a join contact) it is an
        /// ordinary connection.
        ahead: bool,
    },
    /// Dial `addr` and check that `peer` answers there, even while `peer` is connected some
    /// other way: the dial-back that turns an address a peer claims into one we reached
    /// (handshake.md §3.5). The result comes back through [`Protocol::handle_probe`]; the
    /// connection it opens is an ordinary one (the duplicate rule keeps one per peer).
    Probe {
        /// The peer.
        peer: NodeId,
        /// The address it claims.
        addr: SocketAddr,
    },
    /// The answer to an inbound request deferred with `ticket`.
    Respond {
        /// From [`Protocol::handle_request`].
        ticket: ReplyTicket,
        /// The answer.
        response: Response,
    },
    /// A one-way gossip frame to a connected peer; dropped (and counted) if it is not
    /// connected.
    Send {
        /// The peer.
        to: NodeId,
        /// The frame.
        msg: Gossip,
    },
    /// Run `job` on a worker; the result comes back through [`Protocol::handle_job_done`].
    Job {
        /// The protocol's name for it.
        key: JobKey,
        /// The work.
        job: Job,
    },
    /// Close every connection to `peer`, telling it why.
    Disconnect {
        /// The peer.
        peer: NodeId,
        /// The Goodbye reason.
        reason: GoodbyeReason,
    },
    /// The answer to an application command.
    Reply {
        /// The command.
        command: CommandId,
        /// Its answer.
        reply: R,
    },
    /// A notification for the application.
    Event(E),
}

/// A protocol hosted by the router. See the module doc for the driving contract. Every input
/// but the timeout has a default that ignores it, so a protocol implements what it uses.
pub trait Protocol {
    /// Answers to this protocol's application commands.
    type Reply;
    /// This protocol's notifications to the application.
    type Event;

    /// The message kinds this protocol serves; the router refuses to host two protocols that
    /// claim the same kind.
    fn kinds(&self) -> &'static [Kind];

    /// `peer` completed the Hello exchange: it had no connection before.
    fn handle_peer_up(&mut self, now: Instant, peer: &Peer<'_>) {
        let _ = (now, peer);
    }

    /// `peer`'s last connection closed.
    fn handle_peer_down(&mut self, now: Instant, peer: NodeId) {
        let _ = (now, peer);
    }

    /// `peer`, up already, now speaks over another connection: a simultaneous dial won the
    /// duplicate rule (handshake.md) and the connection frames went out on is closing, so
    /// what was sent on it may never have arrived. A protocol that keeps state in the peer
    /// by one-way frames sends it again.
    fn handle_peer_moved(&mut self, now: Instant, peer: &Peer<'_>) {
        let _ = (now, peer);
    }

    /// A dial of ours to `peer` completed TCP's handshake and TLS 1.3's in `2 × rtt`: the
    /// first measure of the path, before the peer's Hello and before any request is answered
    /// on it. Not for dial-backs or connections the peer opened.
    fn handle_handshake_rtt(&mut self, now: Instant, peer: NodeId, rtt: Duration) {
        let _ = (now, peer, rtt);
    }

    /// An inbound request of a kind this protocol serves. `Some`: the answer, sent at once.
    /// `None`: the answer comes later as [`Action::Respond`] with `ticket`.
    fn handle_request(
        &mut self,
        now: Instant,
        from: &Peer<'_>,
        request: Request,
        ticket: ReplyTicket,
    ) -> Option<Response> {
        let _ = (now, from, request, ticket);
        Some(Response::Error { code: ErrorCode::Unsupported, text: String::new() })
    }

    /// The outcome of a request this protocol sent with `key` to `to`. `via` is the address
    /// of the connection the response came over when we dialled it (the one address of `to`
    /// proven to reach it); `None` over a connection the peer opened, and for failures. `rtt`
    /// runs from the request's write on an established connection to its answer (a dial is
    /// not in it); `None` for failures. A failed `Unreachable` request dialled `to.addrs[0]`.
    fn handle_outcome(
        &mut self,
        now: Instant,
        key: RequestKey,
        to: PeerInfo,
        via: Option<SocketAddr>,
        rtt: Option<Duration>,
        result: Result<Response, RequestFailure>,
    ) {
        let _ = (now, key, to, via, rtt, result);
    }

    /// The result of this protocol's [`Action::Probe`] of `peer` at `addr`.
    fn handle_probe(&mut self, now: Instant, peer: NodeId, addr: SocketAddr, result: ProbeResult) {
        let _ = (now, peer, addr, result);
    }

    /// A gossip frame from a connected peer (if this protocol claims [`Kind::Gossip`]).
    fn handle_gossip(&mut self, now: Instant, from: &Peer<'_>, msg: Gossip) {
        let _ = (now, from, msg);
    }

    /// `peer`'s connection went above (`true`) or back below (`false`) its write high-water
    /// mark: the transport holds more for it than it reads. A protocol that sends much to one
    /// peer holds frames back (and chooses which) while it is congested.
    fn handle_congestion(&mut self, now: Instant, peer: NodeId, congested: bool) {
        let _ = (now, peer, congested);
    }

    /// The result of job `key`; `None` when it did not run (the pool refused or lost it).
    fn handle_job_done(&mut self, now: Instant, key: JobKey, result: Option<JobResult>) {
        let _ = (now, key, result);
    }

    /// Fires what is due at `now`. Cheap and harmless when nothing is.
    fn handle_timeout(&mut self, now: Instant);

    /// The next action, if any.
    fn poll_output(&mut self) -> Option<Action<Self::Reply, Self::Event>>;

    /// When [`Protocol::handle_timeout`] must next be called.
    fn next_deadline(&self) -> Option<Instant>;
}

impl<R, E> Action<R, E> {
    /// The same action with the reply and event mapped, as the router converts a protocol's
    /// own types to its own.
    pub fn map<R2, E2>(
        self,
        reply: impl FnOnce(R) -> R2,
        event: impl FnOnce(E) -> E2,
    ) -> Action<R2, E2> {
        match self {
            Action::Request { to, request, key } => Action::Request { to, request, key },
            Action::Connect { to, ahead } => Action::Connect { to, ahead },
            Action::Probe { peer, addr } => Action::Probe { peer, addr },
            Action::Respond { ticket, response } => Action::Respond { ticket, response },
            Action::Send { to, msg } => Action::Send { to, msg },
            Action::Job { key, job } => Action::Job { key, job },
            Action::Disconnect { peer, reason } => Action::Disconnect { peer, reason },
            Action::Reply { command, reply: r } => Action::Reply { command, reply: reply(r) },
            Action::Event(e) => Action::Event(event(e)),
        }
    }
}
