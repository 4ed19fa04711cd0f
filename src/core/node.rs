//! `NodeCore`: the sans-IO heart of a node, a router over shared services (DESIGN.md, "Core
//! v2").
//!
//! It owns what every protocol shares: the connection table ([`super::conns`], with every
//! connection deadline), request matching ([`super::rpc`]), job routing and the seeded
//! randomness each protocol's generator is drawn from. It answers PING itself and routes the
//! rest by message kind to the protocol serving it ([`super::protocols`]): inbound requests and
//! gossip frames by kind, responses and request failures to the protocol that sent the
//! request, job results to the job's owner. A protocol's request to a peer we are not
//! connected to dials first and waits (bounded) for the connection; every request ends with
//! exactly one outcome: a response, a timeout, a disconnect, or unreachable.
//!
//! Driving contract: after every [`NodeCore::handle`] or [`NodeCore::handle_timeout`], drain
//! [`NodeCore::poll_output`] until `None`, then call `handle_timeout` no later than
//! [`NodeCore::next_deadline`]. Time is always an argument; the core reads no clock, owns no
//! socket and spawns no thread. `next_deadline` is the first entry of three ordered deadline
//! sets (connections, requests, each protocol's), O(log n) and never a scan.
//!
//! Policy lives here, mechanism in the driver: the runtime pauses reads and refuses frames that
//! do not fit; the core hears it as [`Input::OverBudget`] and decides whether the peer stays.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use super::api::{
    Budget, Command, CommandId, ConnectError, CoreConfig, CoreStats, Event, Input, Output,
    PeerSummary, PingInfo, Reply, RequestError,
};
use super::conns::{ConnId, Connection, ConnectionTable, Direction, Keep, LimitError, PeerStats};
use super::dials::DialError;
use super::discovery::{Discovery, Step};
use super::protocols::{AddError, Protocols};
use super::rpc::{Owner, Pending, Queued, Rpc};
use crate::gossip::{GossipCommand, GossipConfig, PubSub};
use crate::identity::NodeId;
use crate::kad::dht::{Dht, DhtConfig};
use crate::protocol::{
    Action, JobId, JobResult, Kind, Peer, ProbeResult, Protocol, ProtocolId, RequestFailure,
};
use crate::rng::Rng;
use crate::transport::CloseCause;
use crate::wire::messages::{
    ErrorCode, GoodbyeReason, Gossip, Message, PeerInfo, Request, Response,
};

/// Outputs an empty queue keeps room for.
pub(super) const OUTPUTS_KEPT: usize = 8;

/// The sans-IO node core. See the module doc for the driving contract.
#[derive(Debug)]
pub struct NodeCore {
    /// Of the configuration, what the router reads after construction (the protocols keep
    /// their own parts; a whole `CoreConfig` per node was 1.7 KiB in a simulation).
    max_strikes: u32,
    max_waiting_commands: usize,
    conns: ConnectionTable,
    rpc: Rpc,
    /// `Connect` commands waiting for their dial, by peer.
    waiting: BTreeMap<NodeId, Vec<CommandId>>,
    waiting_count: usize,
    protocols: Protocols,
    /// Dial-backs in flight ([`Action::Probe`]): who asked, for which peer and address. One
    /// per outbound connection, so bounded by the outbound share.
    probes: BTreeMap<ConnId, (ProtocolId, NodeId, SocketAddr)>,
    rng: Rng,
    outputs: VecDeque<Output>,
    stats: CoreStats,
    /// Topic discovery, when gossip and discovery are on.
    discovery: Option<Discovery>,
    local_id: NodeId,
}

impl NodeCore {
    /// A core for the node `local_id`, hosting Kademlia.
    pub fn new(local_id: NodeId, config: CoreConfig) -> NodeCore {
        let mut rng = Rng::new(config.rng_seed);
        let dht_config = DhtConfig { rng_seed: rng.next_u64(), ..config.dht.clone() };
        let gossip_seed = rng.next_u64();
        let gossip = config
            .gossip
            .as_ref()
            .map(|g| PubSub::new(local_id, GossipConfig { rng_seed: gossip_seed, ..g.clone() }));
        NodeCore {
            conns: ConnectionTable::new(local_id, config.limits, config.rng_seed),
            rpc: Rpc::new(
                config.request_timeout,
                config.answer_timeout,
                config.max_pending_requests,
            ),
            waiting: BTreeMap::new(),
            waiting_count: 0,
            protocols: Protocols::new(Dht::new(local_id, dht_config), gossip),
            probes: BTreeMap::new(),
            rng,
            outputs: VecDeque::new(),
            stats: CoreStats::default(),
            discovery: match (&config.gossip, config.discovery) {
                (Some(_), Some(d)) => Some(Discovery::new(d)),
                _ => None,
            },
            local_id,
            max_strikes: config.max_strikes,
            max_waiting_commands: config.max_waiting_commands,
        }
    }

    /// Hosts `protocol` beside Kademlia: the message kinds it claims are routed to it. Fails
    /// when another protocol serves one of them already.
    pub fn add_protocol<P>(&mut self, protocol: P) -> Result<ProtocolId, AddError>
    where
        P: Protocol + Send + 'static,
        P::Reply: Into<Reply>,
        P::Event: Into<Event>,
    {
        self.protocols.add(Box::new(protocol))
    }

    /// A seed for a protocol's own generator, drawn from the core's.
    pub fn derive_seed(&mut self) -> u64 {
        self.rng.next_u64()
    }

    /// Takes one input. See the module doc for the driving contract.
    pub fn handle(&mut self, now: Instant, input: Input) {
        match input {
            Input::Accepted { conn, addr } => self.on_accepted(now, conn, addr),
            Input::Authenticated { conn, peer } => self.on_authenticated(now, conn, peer),
            Input::Established { conn, peer, hello } => self.on_established(now, conn, peer, hello),
            Input::Probed { conn } => self.on_probed(now, conn),
            Input::Frame { conn, msg } => self.on_frame(now, conn, msg),
            Input::Closed { conn, cause } => {
                self.stats.closed[cause.kind_index()] += 1;
                self.on_closed(now, conn, cause)
            }
            Input::OverBudget { conn, budget } => self.on_over_budget(now, conn, budget),
            Input::Congestion { conn, congested } => self.on_congestion(now, conn, congested),
            Input::JobDone { id, result } => self.on_job(now, id, Some(result)),
            Input::JobRefused { id } => self.on_job(now, id, None),
            Input::Command { id, cmd } => self.on_command(now, id, cmd),
        }
        self.pump(now);
    }

    /// Fires what is due at `now`: connect and idle timeouts, request and answer deadlines,
    /// and the protocols' timers. Cheap when nothing is due.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some((conn, kind, removed)) = self.conns.poll_timeout(now) {
            self.on_table_timeout(now, conn, kind != super::conns::TimeoutKind::Connect, removed);
        }
        while let Some(pending) = self.rpc.poll_timeout(now) {
            self.stats.requests_timed_out += 1;
            self.fail(now, pending.owner, pending.to, RequestError::Timeout);
        }
        while let Some(owed) = self.rpc.poll_answer_timeout(now) {
            // The protocol never answered in time; the requester hears why.
            self.stats.answers_expired += 1;
            let body = Response::Error { code: ErrorCode::Overloaded, text: String::new() };
            self.respond(owed.conn, owed.id, body);
        }
        self.protocols.each(|p| {
            if p.next_deadline().is_some_and(|at| at <= now) {
                p.handle_timeout(now);
            }
        });
        self.discover(now);
        self.pump(now);
    }

    /// The next output, if any.
    pub fn poll_output(&mut self) -> Option<Output> {
        let out = self.outputs.pop_front();
        if out.is_none() && self.outputs.capacity() > OUTPUTS_KEPT {
            // A burst (a lookup round's dials and requests) leaves room for dozens of
            // 200-byte outputs; a node idle most of its life need not keep it.
            self.outputs.shrink_to(OUTPUTS_KEPT);
        }
        out
    }

    /// Outputs the queue has room for, for the test of its bound.
    #[cfg(test)]
    pub(super) fn output_room(&self) -> usize {
        self.outputs.capacity()
    }

    /// When `handle_timeout` must next be called. Changes after every input.
    pub fn next_deadline(&self) -> Option<Instant> {
        let protocols = self.protocols.next_deadline();
        let discovery = self.discovery.as_ref().and_then(Discovery::next_deadline);
        [self.conns.next_deadline(), self.rpc.next_deadline(), protocols, discovery]
            .into_iter()
            .flatten()
            .min()
    }

    /// Counters of the connection table.
    pub fn peer_stats(&self) -> PeerStats {
        self.conns.stats()
    }

    /// Counters of the core.
    pub fn stats(&self) -> CoreStats {
        self.stats
    }

    /// The DHT (routing table, store, counters), read-only.
    pub fn dht(&self) -> &Dht {
        &self.protocols.kad
    }

    /// The DHT, to restore what the node's log holds before the node runs.
    pub fn dht_mut(&mut self) -> &mut Dht {
        &mut self.protocols.kad
    }

    /// Gossip, if hosted.
    pub fn gossip(&self) -> Option<&PubSub> {
        self.protocols.gossip.as_deref()
    }

    /// Gossip, if hosted, for direct driving in tests and the simulator.
    pub fn gossip_mut(&mut self) -> Option<&mut PubSub> {
        self.protocols.gossip.as_deref_mut()
    }

    /// The established peers, in id order.
    pub fn connected_peers(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.conns.established().map(|(id, _, _)| id)
    }

    /// Requests in flight and answers owed now.
    pub fn requests_pending(&self) -> (usize, usize) {
        (self.rpc.in_flight(), self.rpc.owed())
    }

    // ---- Connections ----

    fn on_accepted(&mut self, now: Instant, conn: ConnId, addr: SocketAddr) {
        let full = Err(LimitError::LimitReached { direction: Direction::Inbound });
        let mut admitted = self.conns.admit_inbound(now, conn, addr);
        if admitted == full && self.make_inbound_room(now) {
            admitted = self.conns.admit_inbound(now, conn, addr);
        }
        if admitted.is_err() {
            self.stats.refused_inbound += 1;
            self.disconnect(conn, GoodbyeReason::TooManyConnections);
        }
    }

    /// Every inbound slot is taken: a peer idle long enough makes room for a newcomer.
    fn make_inbound_room(&mut self, now: Instant) -> bool {
        let limits = self.conns.limits();
        let idle = limits.inbound_prune_idle;
        if idle >= limits.idle_timeout {
            return false;
        }
        let Some(idle_since) = now.checked_sub(idle) else { return false };
        self.prune_idle(now, Direction::Inbound, idle_since)
    }

    /// TLS authenticated the peer of our dial `conn`: what waits for the peer goes out now,
    /// in the flight of our Hello, not a round trip later behind the peer's (handshake.md
    /// §2.1). Only requests: gossip and commands wait for `Established`.
    fn on_authenticated(&mut self, now: Instant, conn: ConnId, peer: NodeId) {
        let Some(handshake) = self.conns.on_ready(now, conn, peer) else {
            return;
        };
        // TCP's SYN and TLS 1.3's one flight each way: two round trips.
        self.protocols.each(|p| p.handle_handshake_rtt(now, peer, handshake / 2));
        for request in self.rpc.take_queued(&peer) {
            self.send_request(now, request);
        }
    }

    fn on_established(&mut self, now: Instant, conn: ConnId, peer: NodeId, hello: Arc<Hello>) {
        let Some(direction) = self.conns.connection(conn).map(|c| c.direction) else {
            return; // timed out or closed meanwhile; the driver had its Disconnect
        };
        if peer == self.conns.local_id() {
            // transport.md §5: a connection to ourselves (we dialled our own address) closes.
            self.stats.self_connections += 1;
            return self.close(now, conn, GoodbyeReason::DuplicateConnection);
        }
        let was_up = self.conns.primary(&peer).is_some();
        let loser = match self.conns.on_authenticated(now, conn, peer) {
            Ok(Keep::Both) => None,
            Ok(Keep::CloseOther(other)) => Some(other),
            Ok(Keep::CloseThis) => {
                // The peer stays connected on its other connection: what waited for this
                // dial goes there.
                self.disconnect(conn, GoodbyeReason::DuplicateConnection);
                return self.on_reachable(now, peer);
            }
            Err(e) => {
                self.disconnect(conn, GoodbyeReason::TooManyConnections);
                return self.on_unreachable(now, peer, ConnectError::Limit(e));
            }
        };
        self.conns.set_hello(conn, hello);
        if !was_up {
            self.outputs.push_back(Output::Event(Event::PeerConnected { peer, direction }));
            self.peer_up(now, conn);
        }
        // The duplicate goes only after the winner is in place, so the peer never flaps.
        if let Some(other) = loser {
            self.forget_conn(now, other, None);
            self.disconnect(other, GoodbyeReason::DuplicateConnection);
            if was_up {
                if let Some(moved) = self.conns.connection(conn).and_then(peer_of) {
                    self.protocols.each(|p| p.handle_peer_moved(now, &moved));
                }
            }
        }
        self.on_reachable(now, peer);
    }

    /// A dial-back authenticated its peer: the address is proven. The driver closes it.
    fn on_probed(&mut self, now: Instant, conn: ConnId) {
        if self.conns.on_probed(conn).is_some() {
            self.end_probe(now, conn, ProbeResult::Reached);
        }
    }

    fn on_closed(&mut self, now: Instant, conn: ConnId, cause: CloseCause) {
        let dialled =
            self.conns.connection(conn).filter(|c| !c.is_established()).and_then(|c| c.expected());
        let removed = match dialled {
            Some(peer) => {
                let removed = self.conns.on_dial_failed(now, conn);
                // A dial-back is no dial anything waits for.
                if !self.probes.contains_key(&conn) {
                    self.on_unreachable(now, peer, ConnectError::from_cause(&cause));
                }
                removed
            }
            None => self.conns.on_closed(conn),
        };
        self.forget_conn(now, conn, removed);
    }

    /// A connection the table timed out (and removed).
    fn on_table_timeout(&mut self, now: Instant, conn: ConnId, idle: bool, removed: Connection) {
        let probe = self.probes.contains_key(&conn);
        let dialled = removed.expected().filter(|_| !removed.is_established() && !probe);
        self.forget_conn(now, conn, Some(removed));
        // A connection that never got established hears no Goodbye; the reason is only for
        // the driver.
        let reason = if idle { GoodbyeReason::IdleTimeout } else { GoodbyeReason::Shutdown };
        self.disconnect(conn, reason);
        if let Some(peer) = dialled {
            self.on_unreachable(now, peer, ConnectError::Timeout);
        }
    }

    /// Tells the protocol that asked for dial-back `conn`, if it is one, what became of it.
    fn end_probe(&mut self, now: Instant, conn: ConnId, result: ProbeResult) {
        if let Some((pid, peer, addr)) = self.probes.remove(&conn) {
            if let Some(p) = self.protocols.get_mut(pid) {
                p.handle_probe(now, peer, addr, result);
            }
        }
    }

    fn on_over_budget(&mut self, now: Instant, conn: ConnId, budget: Budget) {
        if self.conns.connection(conn).is_none() {
            return;
        }
        match budget {
            // Over budget again after `max_strikes` slow-downs: the peer goes.
            Budget::Inbound { strikes } if strikes > self.max_strikes => {
                self.stats.closed_rate_limited += 1;
                self.close(now, conn, GoodbyeReason::RateLimited);
            }
            // Reads are paused until the budget is repaid; that is the slow-down.
            Budget::Inbound { .. } => {}
            // It asks for more than it reads: answering it only fills our memory.
            Budget::WriteQueue => {
                self.stats.closed_slow_reader += 1;
                self.close(now, conn, GoodbyeReason::RateLimited);
            }
            // It stopped sending part-way through a frame: as good as idle, and holding memory.
            Budget::PartialFrame => {
                self.stats.closed_frame_timeout += 1;
                self.close(now, conn, GoodbyeReason::IdleTimeout);
            }
        }
    }

    fn on_congestion(&mut self, now: Instant, conn: ConnId, congested: bool) {
        // Only the connection frames to the peer go out on counts.
        let Some(peer) = self.conns.connection(conn).and_then(|c| c.node_id()) else { return };
        if self.conns.primary(&peer) != Some(conn) {
            return;
        }
        self.protocols.each(|p| p.handle_congestion(now, peer, congested));
    }

    /// Closes `conn` on our decision, telling the peer `reason`.
    fn close(&mut self, now: Instant, conn: ConnId, reason: GoodbyeReason) {
        let removed = self.conns.on_closed(conn);
        self.forget_conn(now, conn, removed);
        self.disconnect(conn, reason);
    }

    /// Drops everything tied to a connection that is gone (`removed`: what the table held,
    /// when it still held it). The peer stays up while another of its connections is.
    fn forget_conn(&mut self, now: Instant, conn: ConnId, removed: Option<Connection>) {
        // A dial-back that ends here never authenticated (that would have ended it).
        self.end_probe(now, conn, ProbeResult::Unreachable);
        let dial = removed.as_ref().is_some_and(|c| !c.is_established());
        let gone = removed.filter(Connection::is_established).and_then(|c| c.node_id());
        if let Some(peer) = gone.filter(|p| self.conns.primary(p).is_none()) {
            self.outputs.push_back(Output::Event(Event::PeerDisconnected { peer }));
            self.protocols.each(|p| p.handle_peer_down(now, peer));
        }
        // Requests that went out on a dial ahead of the peer's Hello (handshake.md §2.1) did not
        // reach it, like those still waiting for the dial; requests cut off on an established
        // connection are a lookup's to ask again.
        let why = if dial { RequestError::NotConnected } else { RequestError::Disconnected };
        for pending in self.rpc.fail_conn(conn) {
            self.fail(now, pending.owner, pending.to, why);
        }
        self.rpc.forget_answers(conn);
    }

    /// Closes the established connection in `direction` idle the longest, if idle since
    /// `idle_since` or earlier, with no request of ours in flight and no answer of ours
    /// owed; false if there is none. Its slot is free at once.
    fn prune_idle(&mut self, now: Instant, direction: Direction, idle_since: Instant) -> bool {
        let rpc = &self.rpc;
        let Some(conn) =
            self.conns.least_recently_active(direction, idle_since, |c| rpc.is_busy(c))
        else {
            return false;
        };
        self.stats.connections_pruned += 1;
        self.close(now, conn, GoodbyeReason::TooManyConnections);
        true
    }

    /// `peer` is connected: what waited for it goes out.
    fn on_reachable(&mut self, now: Instant, peer: NodeId) {
        self.answer_waiters(peer, Ok(peer));
        let waited = self.rpc.take_queued(&peer);
        for request in waited {
            self.send_request(now, request);
        }
    }

    /// The dial to `peer` failed: so does what waited for it.
    fn on_unreachable(&mut self, now: Instant, peer: NodeId, why: ConnectError) {
        self.answer_waiters(peer, Err(why));
        for request in self.rpc.take_queued(&peer) {
            self.unsent(now, request);
        }
    }

    fn peer_up(&mut self, now: Instant, conn: ConnId) {
        let Some(peer) = self.conns.connection(conn).and_then(peer_of) else { return };
        self.protocols.each(|p| p.handle_peer_up(now, &peer));
    }

    fn disconnect(&mut self, conn: ConnId, reason: GoodbyeReason) {
        self.outputs.push_back(Output::Disconnect { conn, reason });
    }

    // ---- Frames ----

    fn on_frame(&mut self, now: Instant, conn: ConnId, msg: Message) {
        if !self.conns.on_activity(now, conn) {
            // Read before the core closed it; the driver closes it.
            self.stats.frames_after_close += 1;
            return;
        }
        match msg {
            Message::Request { id, body } => self.on_request(now, conn, id, body),
            Message::Response { id, body } => self.on_response(now, conn, id, body),
            Message::Gossip(g) => self.on_gossip(now, conn, g),
            // The connection layer consumes Hello and Goodbye.
            Message::Hello(_) | Message::Goodbye(_) => {}
        }
    }

    fn on_request(&mut self, now: Instant, conn: ConnId, id: u64, body: Request) {
        let Some(c) = self.conns.connection(conn) else { return };
        let response = match Kind::of_request(&body).map(|k| self.protocols.route(k)) {
            // messages.md §3.1: PING is answered with the address the request came from.
            None => Response::Pong { observed: c.addr },
            Some(None) => {
                self.stats.requests_unsupported += 1;
                Response::Error { code: ErrorCode::Unsupported, text: "unsupported".into() }
            }
            Some(Some(owner)) => {
                let (Some(from), ticket) = (peer_of(c), self.rpc.ticket()) else { return };
                let Some(p) = self.protocols.get_mut(owner) else { return };
                match p.handle_request(now, &from, body, ticket) {
                    Some(response) => response,
                    None => return self.rpc.owe(now, ticket, conn, id),
                }
            }
        };
        self.respond(conn, id, response);
    }

    fn on_response(&mut self, now: Instant, conn: ConnId, id: u64, body: Response) {
        // A response must come back on the connection its request went out on.
        let Some(Pending { owner, to, sent_at, .. }) = self.rpc.on_response(conn, id) else {
            self.stats.responses_unmatched += 1;
            return;
        };
        let command = match owner {
            Owner::Ping(command) => command,
            Owner::Protocol(pid, key) => {
                // The address is proven only if we dialled it: TLS authenticated the peer there.
                let via = self
                    .conns
                    .connection(conn)
                    .filter(|c| c.direction == Direction::Outbound)
                    .map(|c| c.addr);
                let rtt = Some(now.saturating_duration_since(sent_at));
                if let Some(p) = self.protocols.get_mut(pid) {
                    p.handle_outcome(now, key, to, via, rtt, Ok(body));
                }
                return;
            }
        };
        let result = match body {
            Response::Pong { observed } => {
                Ok(PingInfo { rtt: now.saturating_duration_since(sent_at), observed })
            }
            Response::Error { code, .. } => Err(RequestError::Remote(code)),
            _ => Err(RequestError::UnexpectedResponse),
        };
        self.reply(command, Reply::Pong(result));
    }

    fn on_gossip(&mut self, now: Instant, conn: ConnId, msg: Gossip) {
        let owner = self.protocols.route(Kind::Gossip);
        let from = self.conns.connection(conn).and_then(peer_of);
        match (owner.and_then(|o| self.protocols.get_mut(o)), from) {
            (Some(p), Some(from)) => p.handle_gossip(now, &from, msg),
            _ => self.stats.gossip_dropped += 1,
        }
    }

    fn respond(&mut self, conn: ConnId, id: u64, body: Response) {
        self.stats.requests_served += 1;
        let msg = Message::Response { id, body };
        self.outputs.push_back(Output::Send { conn, msg });
    }

    // ---- Requests we send ----

    /// Sends a protocol's request: at once if its peer is connected or our dial of it is
    /// authenticated, else after a dial.
    fn send_request(&mut self, now: Instant, request: Queued) {
        let peer = request.to.id;
        let established = self.conns.primary(&peer).map(|c| (c, false));
        let on_dial = || self.conns.ready_dial(&peer).map(|c| (c, true));
        if let Some((conn, pipelined)) = established.or_else(on_dial) {
            match self.rpc.send(now, conn, request) {
                Ok(msg) => {
                    self.conns.on_request_sent(conn);
                    self.stats.requests_pipelined += u64::from(pipelined);
                    self.outputs.push_back(Output::Send { conn, msg });
                }
                Err(refused) => self.unsent(now, refused),
            }
            return;
        }
        if !self.rpc.can_queue() {
            return self.unsent(now, request);
        }
        if !self.conns.is_dialling(&peer) {
            let Some(addr) = request.to.addrs.first().copied() else {
                return self.unsent(now, request);
            };
            if self.dial(now, peer, addr).is_err() {
                return self.unsent(now, request);
            }
        }
        if let Err(refused) = self.rpc.queue(request) {
            self.unsent(now, refused);
        }
    }

    /// Dials `peer` for a protocol's request. When every outbound slot is taken, the outbound
    /// connection idle the longest makes room: a DHT node talks to many peers once and to few
    /// of them often.
    fn dial(&mut self, now: Instant, peer: NodeId, addr: SocketAddr) -> Result<(), DialError> {
        let mut dial = self.conns.start_dial(now, addr, peer);
        if dial == Err(DialError::LimitReached) && self.prune_idle(now, Direction::Outbound, now) {
            dial = self.conns.start_dial(now, addr, peer);
        }
        let conn = dial?;
        self.outputs.push_back(Output::Dial { conn, peer, addr, probe: false });
        Ok(())
    }

    /// Dials `to` for a protocol ([`Action::Connect`]) unless it is connected or being
    /// dialled. Unlike a request's dial, it prunes nothing: a guess must not cost a connection
    /// in use. One opened `ahead` of a request is counted in `preconnects` (and as unused if
    /// it idles out carrying nothing); a join contact's dial is an ordinary one (the DHT
    /// counts those).
    fn preconnect(&mut self, now: Instant, to: &PeerInfo, ahead: bool) {
        let Some(&addr) = to.addrs.first() else { return };
        if self.conns.primary(&to.id).is_some() || self.conns.is_dialling(&to.id) {
            return;
        }
        let dial = if ahead {
            self.conns.start_dial_ahead(now, addr, to.id)
        } else {
            self.conns.start_dial(now, addr, to.id)
        };
        match dial {
            Ok(conn) => {
                self.stats.preconnects += u64::from(ahead);
                self.outputs.push_back(Output::Dial { conn, peer: to.id, addr, probe: false });
            }
            Err(_) => self.stats.preconnects_refused += u64::from(ahead),
        }
    }

    fn unsent(&mut self, now: Instant, request: Queued) {
        self.stats.requests_unsent += 1;
        self.fail(now, request.owner, request.to, RequestError::NotConnected);
    }

    /// Tells a request's owner it failed.
    fn fail(&mut self, now: Instant, owner: Owner, to: PeerInfo, e: RequestError) {
        match owner {
            Owner::Ping(command) => self.reply(command, Reply::Pong(Err(e))),
            Owner::Protocol(pid, key) => {
                let why = match e {
                    RequestError::Timeout => RequestFailure::Timeout,
                    RequestError::Disconnected => RequestFailure::Disconnected,
                    _ => RequestFailure::Unreachable,
                };
                if let Some(p) = self.protocols.get_mut(pid) {
                    p.handle_outcome(now, key, to, None, None, Err(why));
                }
            }
        }
    }

    // ---- Protocols ----

    fn on_job(&mut self, now: Instant, id: JobId, result: Option<JobResult>) {
        if let Some(p) = self.protocols.get_mut(id.owner) {
            p.handle_job_done(now, id.key, result);
        }
    }

    /// Carries out what the protocols asked for, until none has anything more to ask.
    fn pump(&mut self, now: Instant) {
        loop {
            let mut acted = false;
            let ids: Vec<ProtocolId> = self.protocols.ids().collect();
            for pid in ids {
                while let Some(action) = self.protocols.get_mut(pid).and_then(|p| p.poll_action()) {
                    acted = true;
                    self.carry_out(now, pid, action);
                }
            }
            if !acted {
                return;
            }
        }
    }

    fn carry_out(&mut self, now: Instant, pid: ProtocolId, action: Action<Reply, Event>) {
        match action {
            Action::Request { to, request, key } => {
                let owner = Owner::Protocol(pid, key);
                self.send_request(now, Queued { to, owner, body: request });
            }
            Action::Connect { to, ahead } => self.preconnect(now, &to, ahead),
            Action::Probe { peer, addr } => match self.conns.start_probe(now, addr, peer) {
                Ok(conn) => {
                    self.stats.probes_started += 1;
                    self.probes.insert(conn, (pid, peer, addr));
                    self.outputs.push_back(Output::Dial { conn, peer, addr, probe: true });
                }
                Err(_) => {
                    if let Some(p) = self.protocols.get_mut(pid) {
                        p.handle_probe(now, peer, addr, ProbeResult::NotTried);
                    }
                }
            },
            Action::Respond { ticket, response } => match self.rpc.answer(ticket) {
                Some(owed) if self.conns.connection(owed.conn).is_some() => {
                    self.respond(owed.conn, owed.id, response);
                }
                _ => self.stats.answers_late += 1,
            },
            Action::Send { to, msg } => match self.conns.primary(&to) {
                Some(conn) => {
                    let msg = Message::Gossip(msg);
                    self.outputs.push_back(Output::Send { conn, msg });
                }
                None => self.stats.gossip_dropped += 1,
            },
            Action::Job { key, job } => {
                let id = JobId { owner: pid, key };
                self.outputs.push_back(Output::Job { id, job });
            }
            Action::Disconnect { peer, reason } => {
                for conn in self.conns.conns_of(&peer).to_vec() {
                    self.close(now, conn, reason);
                }
            }
            Action::Reply { command, reply } if Discovery::is_internal(command) => {
                self.on_discovery_reply(now, command, reply);
            }
            Action::Reply { command, reply } => self.reply(command, reply),
            Action::Event(event) => self.outputs.push_back(Output::Event(event)),
        }
    }

    // ---- Application commands ----

    fn on_command(&mut self, now: Instant, id: CommandId, cmd: Command) {
        match cmd {
            Command::Connect { peer, addr } => self.on_connect(now, id, peer, addr),
            Command::Ping { peer } => self.on_ping(now, id, peer),
            Command::Peers => {
                let reply = Reply::Peers(self.peer_summaries());
                self.reply(id, reply);
            }
            Command::Dht(cmd) => self.protocols.kad.handle_command(now, id, cmd),
            Command::Gossip(cmd) => {
                let Some(g) = &mut self.protocols.gossip else {
                    return self.reply(id, Reply::Unsupported);
                };
                let topic = match &cmd {
                    GossipCommand::Subscribe(t) | GossipCommand::Unsubscribe(t) => Some(t.clone()),
                    _ => None,
                };
                g.handle_command(now, id, cmd);
                // Discovery follows what gossip subscribes to now, whatever the command was.
                if let (Some(topic), Some(d)) = (topic, &mut self.discovery) {
                    if g.is_subscribed(&topic) {
                        d.add(now, &topic);
                    } else {
                        d.remove(&topic);
                    }
                }
                self.discover(now);
            }
        }
    }

    fn on_connect(&mut self, now: Instant, id: CommandId, peer: NodeId, addr: SocketAddr) {
        if self.conns.primary(&peer).is_some() {
            return self.reply(id, Reply::Connected(Ok(peer)));
        }
        if self.waiting_count >= self.max_waiting_commands {
            self.stats.commands_refused_busy += 1;
            return self.reply(id, Reply::Connected(Err(ConnectError::Busy)));
        }
        if !self.conns.is_dialling(&peer) {
            match self.conns.start_dial(now, addr, peer) {
                Ok(conn) => self.outputs.push_back(Output::Dial { conn, peer, addr, probe: false }),
                Err(e) => return self.reply(id, Reply::Connected(Err(ConnectError::Refused(e)))),
            }
        }
        self.waiting.entry(peer).or_default().push(id);
        self.waiting_count += 1;
    }

    fn on_ping(&mut self, now: Instant, id: CommandId, peer: NodeId) {
        let Some(conn) = self.conns.primary(&peer) else {
            return self.reply(id, Reply::Pong(Err(RequestError::NotConnected)));
        };
        let to = PeerInfo { id: peer, addrs: Vec::new() };
        let request = Queued { to, owner: Owner::Ping(id), body: Request::Ping };
        match self.rpc.send(now, conn, request) {
            Ok(msg) => {
                self.conns.on_request_sent(conn);
                self.outputs.push_back(Output::Send { conn, msg });
            }
            Err(_) => {
                self.stats.commands_refused_busy += 1;
                self.reply(id, Reply::Pong(Err(RequestError::Busy)));
            }
        }
    }

    fn answer_waiters(&mut self, peer: NodeId, result: Result<NodeId, ConnectError>) {
        for id in self.waiting.remove(&peer).unwrap_or_default() {
            self.waiting_count -= 1;
            self.reply(id, Reply::Connected(result.clone()));
        }
    }

    fn reply(&mut self, id: CommandId, reply: Reply) {
        // The router's own commands (discovery's dials) have no caller to answer.
        if !Discovery::is_internal(id) {
            self.outputs.push_back(Output::Reply { id, reply });
        }
    }

    // ---- Topic discovery ----

    /// Runs discovery's due DHT commands.
    fn discover(&mut self, now: Instant) {
        let Some(d) = &mut self.discovery else { return };
        if d.next_deadline().is_none_or(|at| at > now) {
            return;
        }
        let gossip = self.protocols.gossip.as_ref();
        let steps = d.poll(now, |topic| gossip.map_or(0, |g| g.peers_wanted(now, topic)));
        self.run_steps(now, steps);
    }

    fn on_discovery_reply(&mut self, now: Instant, id: CommandId, reply: Reply) {
        let Some(d) = &mut self.discovery else { return };
        let (conns, gossip) = (&self.conns, self.protocols.gossip.as_ref());
        let steps = d.on_reply(
            now,
            id,
            reply,
            self.local_id,
            |p| conns.primary(p).is_some(),
            |topic| gossip.map_or(0, |g| g.peers_wanted(now, topic)),
        );
        self.run_steps(now, steps);
    }

    fn run_steps(&mut self, now: Instant, steps: Vec<Step>) {
        for step in steps {
            match step {
                Step::Dht(id, cmd) => self.protocols.kad.handle_command(now, id, cmd),
                Step::Connect(id, p) => {
                    if let Some(&addr) = p.addrs.first() {
                        self.on_connect(now, id, p.id, addr);
                    }
                }
            }
        }
    }

    fn peer_summaries(&self) -> Vec<PeerSummary> {
        self.conns
            .established()
            .map(|(id, _, c)| PeerSummary {
                id,
                addr: c.addr,
                direction: c.direction,
                agent: c.hello.as_ref().map(|h| h.agent.clone()).unwrap_or_default(),
                listen_addrs: c.hello.as_ref().map(|h| h.listen_addrs.clone()).unwrap_or_default(),
            })
            .collect()
    }
}

use crate::wire::messages::Hello;

/// An established connection's peer as protocols see it.
fn peer_of(c: &Connection) -> Option<Peer<'_>> {
    Some(Peer {
        id: c.node_id()?,
        addr: c.addr,
        direction: c.direction,
        hello: c.hello.as_deref()?,
    })
}
