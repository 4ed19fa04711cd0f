//! The protocols the router hosts, and which one serves each message kind.
//!
//! Kademlia is always there and gossip unless configured off (they have application commands,
//! so the router keeps them by their types); more protocols can be added with
//! [`crate::core::NodeCore::add_protocol`]. The router drives
//! every one of them through [`Hosted`], the same verbs as [`Protocol`] with the protocol's
//! replies and events already turned into the router's own, so the router's code is one path
//! for all of them.

use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::api::{Event, Reply};
use crate::gossip::PubSub;
use crate::identity::NodeId;
use crate::kad::dht::Dht;
use crate::protocol::{
    Action, JobKey, JobResult, Kind, Peer, ProbeResult, Protocol, ProtocolId, ReplyTicket,
    RequestFailure, RequestKey,
};
use crate::wire::messages::{Gossip, PeerInfo, Request, Response};

/// A protocol as the router drives it. Implemented for every [`Protocol`] whose replies and
/// events convert into the router's.
pub(super) trait Hosted {
    fn kinds(&self) -> &'static [Kind];
    fn handle_peer_up(&mut self, now: Instant, peer: &Peer<'_>);
    fn handle_peer_down(&mut self, now: Instant, peer: NodeId);
    fn handle_peer_moved(&mut self, now: Instant, peer: &Peer<'_>);
    fn handle_handshake_rtt(&mut self, now: Instant, peer: NodeId, rtt: Duration);
    fn handle_request(
        &mut self,
        now: Instant,
        from: &Peer<'_>,
        request: Request,
        ticket: ReplyTicket,
    ) -> Option<Response>;
    fn handle_outcome(
        &mut self,
        now: Instant,
        key: RequestKey,
        to: PeerInfo,
        via: Option<SocketAddr>,
        rtt: Option<Duration>,
        result: Result<Response, RequestFailure>,
    );
    fn handle_probe(&mut self, now: Instant, peer: NodeId, addr: SocketAddr, result: ProbeResult);
    fn handle_gossip(&mut self, now: Instant, from: &Peer<'_>, msg: Gossip);
    fn handle_congestion(&mut self, now: Instant, peer: NodeId, congested: bool);
    fn handle_job_done(&mut self, now: Instant, key: JobKey, result: Option<JobResult>);
    fn handle_timeout(&mut self, now: Instant);
    fn poll_action(&mut self) -> Option<Action<Reply, Event>>;
    fn next_deadline(&self) -> Option<Instant>;
}

impl<P> Hosted for P
where
    P: Protocol,
    P::Reply: Into<Reply>,
    P::Event: Into<Event>,
{
    fn kinds(&self) -> &'static [Kind] {
        Protocol::kinds(self)
    }

    fn handle_peer_up(&mut self, now: Instant, peer: &Peer<'_>) {
        Protocol::handle_peer_up(self, now, peer);
    }

    fn handle_peer_down(&mut self, now: Instant, peer: NodeId) {
        Protocol::handle_peer_down(self, now, peer);
    }

    fn handle_peer_moved(&mut self, now: Instant, peer: &Peer<'_>) {
        Protocol::handle_peer_moved(self, now, peer);
    }

    fn handle_handshake_rtt(&mut self, now: Instant, peer: NodeId, rtt: Duration) {
        Protocol::handle_handshake_rtt(self, now, peer, rtt);
    }

    fn handle_request(
        &mut self,
        now: Instant,
        from: &Peer<'_>,
        request: Request,
        ticket: ReplyTicket,
    ) -> Option<Response> {
        Protocol::handle_request(self, now, from, request, ticket)
    }

    fn handle_outcome(
        &mut self,
        now: Instant,
        key: RequestKey,
        to: PeerInfo,
        via: Option<SocketAddr>,
        rtt: Option<Duration>,
        result: Result<Response, RequestFailure>,
    ) {
        Protocol::handle_outcome(self, now, key, to, via, rtt, result);
    }

    fn handle_probe(&mut self, now: Instant, peer: NodeId, addr: SocketAddr, result: ProbeResult) {
        Protocol::handle_probe(self, now, peer, addr, result);
    }

    fn handle_gossip(&mut self, now: Instant, from: &Peer<'_>, msg: Gossip) {
        Protocol::handle_gossip(self, now, from, msg);
    }

    fn handle_congestion(&mut self, now: Instant, peer: NodeId, congested: bool) {
        Protocol::handle_congestion(self, now, peer, congested);
    }

    fn handle_job_done(&mut self, now: Instant, key: JobKey, result: Option<JobResult>) {
        Protocol::handle_job_done(self, now, key, result);
    }

    fn handle_timeout(&mut self, now: Instant) {
        Protocol::handle_timeout(self, now);
    }

    fn poll_action(&mut self) -> Option<Action<Reply, Event>> {
        Protocol::poll_output(self).map(|a| a.map(Into::into, Into::into))
    }

    fn next_deadline(&self) -> Option<Instant> {
        Protocol::next_deadline(self)
    }
}

/// Why a protocol could not be added.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddError {
    /// Another protocol serves this kind already.
    KindTaken(Kind),
    /// 255 protocols are hosted already.
    TooMany,
}

/// Kademlia, gossip, the added protocols, and the route of each message kind.
pub(super) struct Protocols {
    pub(super) kad: Dht,
    /// Boxed: most of a `PubSub` is its tables, and a node without gossip (every node of a
    /// DHT simulation) would otherwise carry its 2.4 KB for nothing.
    pub(super) gossip: Option<Box<PubSub>>,
    added: Vec<Box<dyn Hosted + Send>>,
    routes: [Option<ProtocolId>; Kind::COUNT],
}

impl Protocols {
    /// Kademlia's id.
    pub(super) const KAD: ProtocolId = ProtocolId(0);
    /// Gossip's id (kept for it when it is off).
    pub(super) const GOSSIP: ProtocolId = ProtocolId(1);
    /// Ids of added protocols start here.
    const FIRST_ADDED: usize = 2;

    pub(super) fn new(kad: Dht, gossip: Option<PubSub>) -> Protocols {
        let mut routes = [None; Kind::COUNT];
        for kind in Protocol::kinds(&kad) {
            routes[kind.index()] = Some(Self::KAD);
        }
        for kind in gossip.iter().flat_map(Protocol::kinds) {
            routes[kind.index()] = Some(Self::GOSSIP);
        }
        Protocols { kad, gossip: gossip.map(Box::new), added: Vec::new(), routes }
    }

    /// Adds `protocol` and routes its kinds to it, unless one of them is taken.
    pub(super) fn add(&mut self, protocol: Box<dyn Hosted + Send>) -> Result<ProtocolId, AddError> {
        if let Some(&kind) = protocol.kinds().iter().find(|k| self.routes[k.index()].is_some()) {
            return Err(AddError::KindTaken(kind));
        }
        let id =
            u8::try_from(self.added.len() + Self::FIRST_ADDED).map_err(|_| AddError::TooMany)?;
        let id = ProtocolId(id);
        for kind in protocol.kinds() {
            self.routes[kind.index()] = Some(id);
        }
        self.added.push(protocol);
        Ok(id)
    }

    /// The protocol that serves `kind`, if any.
    pub(super) fn route(&self, kind: Kind) -> Option<ProtocolId> {
        self.routes[kind.index()]
    }

    pub(super) fn get_mut(&mut self, id: ProtocolId) -> Option<&mut dyn Hosted> {
        if id == Self::KAD {
            return Some(&mut self.kad);
        }
        if id == Self::GOSSIP {
            return self.gossip.as_deref_mut().map(|g| g as &mut dyn Hosted);
        }
        let added = self.added.get_mut(usize::from(id.0).checked_sub(Self::FIRST_ADDED)?)?;
        Some(&mut **added)
    }

    /// Every protocol's id, Kademlia first, then gossip (if on), then the added ones.
    pub(super) fn ids(&self) -> impl Iterator<Item = ProtocolId> {
        let gossip = self.gossip.is_some().then_some(Self::GOSSIP);
        let added = (0..self.added.len())
            .filter_map(|i| u8::try_from(i + Self::FIRST_ADDED).ok())
            .map(ProtocolId);
        std::iter::once(Self::KAD).chain(gossip).chain(added)
    }

    /// Calls `f` on every protocol, in the order of [`Protocols::ids`].
    pub(super) fn each(&mut self, mut f: impl FnMut(&mut dyn Hosted)) {
        f(&mut self.kad);
        if let Some(g) = self.gossip.as_deref_mut() {
            f(g);
        }
        for p in &mut self.added {
            f(&mut **p);
        }
    }

    /// The earliest deadline of any protocol.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        let added = self.added.iter().filter_map(|p| p.next_deadline());
        let gossip = self.gossip.as_deref().and_then(Hosted::next_deadline);
        Hosted::next_deadline(&self.kad).into_iter().chain(gossip).chain(added).min()
    }
}

impl fmt::Debug for Protocols {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Protocols")
            .field("kad", &self.kad)
            .field("gossip", &self.gossip.is_some())
            .field("added", &self.added.len())
            .field("routes", &self.routes)
            .finish()
    }
}

impl fmt::Display for AddError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::KindTaken(kind) => write!(f, "another protocol serves {kind:?} already"),
            Self::TooMany => f.write_str("255 protocols are hosted already"),
        }
    }
}

impl std::error::Error for AddError {}
