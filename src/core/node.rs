//! `NodeCore`: the sans-IO heart of a node (DESIGN.md, "The shape").
//!
//! It owns the connection table (limits, timeouts, duplicates, dial backoff), the established
//! peers, the requests in flight, the application commands waiting for an answer, and the
//! Kademlia [`Dht`]. It answers PING with PONG and hands every other request to the DHT. The
//! DHT asks for requests to peers by id and address; the core sends them on an established
//! connection, or dials first and queues them (bounded) until the connection is up, and
//! reports every outcome back: response, timeout, disconnect, or unreachable.
//!
//! Driving contract: after every `handle_*` call, drain [`NodeCore::poll_output`] until `None`,
//! then call [`NodeCore::handle_timeout`] no later than [`NodeCore::next_deadline`]. Time is
//! always an argument; the core reads no clock, owns no socket and spawns no thread.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::jobs::{Job, JobId, JobResult};
use super::peers::{
    ConnId, ConnectionTable, DialError, Direction, Keep, LimitError, PeerLimits, PeerStats,
    TimeoutKind,
};
use crate::identity::NodeId;
use crate::kad::dht::{Dht, DhtCommand, DhtConfig, DhtOutput, DhtReply, RequestFailure};
use crate::transport::conn::ConnError;
use crate::wire::messages::{
    ErrorCode, GoodbyeReason, Hello, Message, PeerInfo, Request, Response, FEATURE_KAD,
    MAX_ADDRS_PER_PEER,
};

/// Settings of the core; defaults live in `config`.
#[derive(Debug, Clone)]
pub struct CoreConfig {
    /// Connection and dial limits.
    pub limits: PeerLimits,
    /// How long a request waits for its response.
    pub request_timeout: Duration,
    /// Requests in flight, all peers together.
    pub max_pending_requests: usize,
    /// Application commands waiting for a connection to complete.
    pub max_waiting_commands: usize,
    /// Seed of the core's randomness (dial jitter).
    pub rng_seed: u64,
    /// The Kademlia DHT.
    pub dht: DhtConfig,
}

/// Identifies an application command so its reply can be routed back. Chosen by the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CommandId(pub u64);

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

/// Why a `Connect` failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectError {
    /// Refused before dialling: limit, backoff or open circuit.
    Refused(DialError),
    /// The peer is already at the per-peer connection limit.
    Limit(LimitError),
    /// The key presented is not the expected `NodeId`.
    WrongKey,
    /// TCP, TLS or the Hello exchange failed (the connection error's name).
    Failed(&'static str),
    /// Not authenticated within the connect timeout.
    Timeout,
    /// Too many commands wait already.
    Busy,
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

/// Something the application may want to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A peer completed the Hello exchange.
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
}

/// What the core asks its driver to do.
#[derive(Debug, Clone)]
pub enum Output {
    /// Open a TCP connection to `addr` and run TLS expecting `peer`; report the outcome with
    /// `handle_established` or `handle_closed` for `conn`.
    Dial {
        /// The table's id for the new connection.
        conn: ConnId,
        /// The expected peer.
        peer: NodeId,
        /// Where to dial.
        addr: SocketAddr,
    },
    /// Send `msg` on `conn`.
    Send {
        /// The connection.
        conn: ConnId,
        /// The message.
        msg: Message,
    },
    /// Say Goodbye with `reason` and close `conn`.
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
    /// A notification.
    Event(Event),
    /// Run `job` on a worker; report with `handle_job_done` (or `handle_job_refused`).
    Job {
        /// Identifies the job.
        id: JobId,
        /// The work ([`super::jobs::run`] does it).
        job: Job,
    },
}

/// Counters for the metrics layer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CoreStats {
    /// Requests answered.
    pub requests_served: u64,
    /// Responses with no matching request (late or unsolicited).
    pub responses_unmatched: u64,
    /// Requests that timed out.
    pub requests_timed_out: u64,
    /// Gossip frames dropped (no gossip service yet).
    pub gossip_dropped: u64,
    /// Commands refused because a queue was full.
    pub commands_refused_busy: u64,
    /// DHT requests failed before sending: the queue for a dial in progress was full, or the
    /// peer could not be dialled.
    pub dht_requests_unsent: u64,
    /// Idle outbound connections closed to make room for a new dial.
    pub connections_pruned: u64,
}

/// An established connection and the peer on it.
#[derive(Debug, Clone)]
struct Peer {
    id: NodeId,
    addr: SocketAddr,
    direction: Direction,
    hello: Hello,
}

/// Who waits for a request's response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owner {
    /// An application `Ping`.
    Ping(CommandId),
    /// The DHT, with its token.
    Dht(u64),
}

/// A request in flight.
#[derive(Debug, Clone, Copy)]
struct Pending {
    conn: ConnId,
    owner: Owner,
    sent_at: Instant,
    deadline_at: Instant,
}

/// The sans-IO node core. See the module doc for the driving contract.
#[derive(Debug)]
pub struct NodeCore {
    config: CoreConfig,
    table: ConnectionTable,
    /// Each established peer's primary connection (requests go there). Ordered maps keep
    /// every output in a deterministic order.
    peers: BTreeMap<NodeId, ConnId>,
    /// Every established connection.
    conns: BTreeMap<ConnId, Peer>,
    /// Dials in progress: connection to expected peer.
    dialing: BTreeMap<ConnId, NodeId>,
    /// `Connect` commands waiting for their dial, by peer.
    waiting: BTreeMap<NodeId, Vec<CommandId>>,
    waiting_count: usize,
    pending: BTreeMap<u64, Pending>,
    next_request_id: u64,
    /// Inbound requests the DHT answers later, by handle: the connection and request id.
    deferred: BTreeMap<u64, (ConnId, u64)>,
    next_deferred: u64,
    /// DHT requests waiting for a dial to the peer, with their tokens.
    queued: BTreeMap<NodeId, Vec<(u64, Request)>>,
    queued_count: usize,
    dht: Dht,
    outputs: VecDeque<Output>,
    stats: CoreStats,
}

impl NodeCore {
    /// A core for the node `local_id`.
    pub fn new(local_id: NodeId, config: CoreConfig) -> NodeCore {
        NodeCore {
            table: ConnectionTable::new(local_id, config.limits, config.rng_seed),
            dht: Dht::new(local_id, config.dht.clone()),
            queued: BTreeMap::new(),
            queued_count: 0,
            deferred: BTreeMap::new(),
            next_deferred: 0,
            config,
            peers: BTreeMap::new(),
            conns: BTreeMap::new(),
            dialing: BTreeMap::new(),
            waiting: BTreeMap::new(),
            waiting_count: 0,
            pending: BTreeMap::new(),
            next_request_id: 1,
            outputs: VecDeque::new(),
            stats: CoreStats::default(),
        }
    }

    /// A TCP connection from `addr` was accepted: admit it (the driver then runs TLS) or
    /// refuse it (the driver closes the socket at once).
    pub fn handle_inbound(&mut self, now: Instant, addr: SocketAddr) -> Result<ConnId, LimitError> {
        let admitted = self.table.admit_inbound(now, addr);
        let full = LimitError::LimitReached { direction: Direction::Inbound };
        if admitted != Err(full) {
            return admitted;
        }
        // Every inbound slot is taken: a peer idle long enough makes room for the newcomer.
        let idle = self.table.limits().inbound_prune_idle;
        if idle >= self.table.limits().idle_timeout {
            return admitted;
        }
        let Some(idle_since) = now.checked_sub(idle) else { return admitted };
        if !self.prune_idle(now, Direction::Inbound, idle_since) {
            return admitted;
        }
        self.table.admit_inbound(now, addr)
    }

    /// `conn` completed TLS and the Hello exchange with `peer`.
    pub fn handle_established(&mut self, now: Instant, conn: ConnId, peer: NodeId, hello: Hello) {
        self.dialing.remove(&conn);
        let Some(entry) = self.table.connection(conn).copied() else {
            return; // timed out or closed meanwhile; the driver hears Disconnect
        };
        let mut loser = None;
        match self.table.on_authenticated(now, conn, peer) {
            Ok(Keep::Both) => {}
            Ok(Keep::CloseOther(other)) => loser = Some(other),
            Ok(Keep::CloseThis) => {
                // The peer stays connected on its other connection: what waited for this
                // dial goes there.
                self.disconnect(conn, GoodbyeReason::DuplicateConnection);
                self.answer_waiters(peer, Ok(peer));
                self.flush_queued(now, peer);
                return self.pump_dht(now);
            }
            Err(e) => {
                self.disconnect(conn, GoodbyeReason::TooManyConnections);
                self.answer_waiters(peer, Err(ConnectError::Limit(e)));
                self.fail_queued(now, peer);
                return self.pump_dht(now);
            }
        }
        let (addr, direction) = (entry.addr, entry.direction);
        let info = peer_info(peer, &hello, direction, addr);
        self.conns.insert(conn, Peer { id: peer, addr, direction, hello });
        if self.peers.insert(peer, conn).is_none() {
            self.outputs.push_back(Output::Event(Event::PeerConnected { peer, direction }));
            self.dht.on_connected(now, info, direction == Direction::Outbound);
        }
        // The duplicate goes only after the winner is in place, so the peer never flaps.
        if let Some(other) = loser {
            self.forget_conn(now, other);
            self.disconnect(other, GoodbyeReason::DuplicateConnection);
        }
        self.answer_waiters(peer, Ok(peer));
        self.flush_queued(now, peer);
        self.pump_dht(now);
    }

    /// `conn` ended, before or after establishment, for `why`.
    pub fn handle_closed(&mut self, now: Instant, conn: ConnId, why: &ConnError) {
        if let Some(peer) = self.dialing.remove(&conn) {
            self.table.on_dial_failed(now, conn);
            self.answer_waiters(peer, Err(connect_error(why)));
            self.fail_queued(now, peer);
        } else {
            self.table.on_closed(conn);
        }
        self.forget_conn(now, conn);
        self.pump_dht(now);
    }

    /// A message arrived on an established connection.
    pub fn handle_message(&mut self, now: Instant, conn: ConnId, msg: Message) {
        self.table.on_activity(now, conn);
        match msg {
            Message::Request { id, body } => self.on_request(now, conn, id, body),
            Message::Response { id, body } => self.on_response(now, conn, id, body),
            Message::Gossip(_) => self.stats.gossip_dropped += 1,
            // The connection layer consumes Hello and Goodbye.
            Message::Hello(_) | Message::Goodbye(_) => {}
        }
        self.pump_dht(now);
    }

    /// An application command.
    pub fn handle_command(&mut self, now: Instant, id: CommandId, command: Command) {
        match command {
            Command::Connect { peer, addr } => self.on_connect(now, id, peer, addr),
            Command::Ping { peer } => self.on_ping(now, id, peer),
            Command::Peers => {
                let reply = Reply::Peers(self.peer_summaries());
                self.outputs.push_back(Output::Reply { id, reply });
            }
            Command::Dht(cmd) => self.dht.handle_command(now, id, cmd),
        }
        self.pump_dht(now);
    }

    /// A worker finished job `id`.
    pub fn handle_job_done(&mut self, now: Instant, id: JobId, result: JobResult) {
        self.dht.on_job_done(now, id.0, Some(result));
        self.pump_dht(now);
    }

    /// The worker pool's queue was full: job `id` will not run. What waited for it is
    /// answered `Overloaded`.
    pub fn handle_job_refused(&mut self, now: Instant, id: JobId) {
        self.dht.on_job_done(now, id.0, None);
        self.pump_dht(now);
    }

    /// Fires due timers: connect and idle timeouts, request deadlines.
    pub fn handle_timeout(&mut self, now: Instant) {
        for (conn, kind) in self.table.poll_timeouts(now) {
            self.on_table_timeout(now, conn, kind);
        }
        let expired: Vec<u64> =
            self.pending.iter().filter(|(_, p)| p.deadline_at <= now).map(|(&id, _)| id).collect();
        for id in expired {
            if let Some(p) = self.pending.remove(&id) {
                self.stats.requests_timed_out += 1;
                self.fail_request(now, p.owner, RequestError::Timeout);
            }
        }
        self.dht.handle_timeout(now);
        self.pump_dht(now);
    }

    /// The next output, if any.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// When `handle_timeout` must next be called.
    pub fn next_deadline(&self) -> Option<Instant> {
        let requests = self.pending.values().map(|p| p.deadline_at).min();
        [requests, self.table.next_deadline(), self.dht.next_deadline()].into_iter().flatten().min()
    }

    /// Counters of the connection table.
    pub fn peer_stats(&self) -> PeerStats {
        self.table.stats()
    }

    /// Counters of the core.
    pub fn stats(&self) -> CoreStats {
        self.stats
    }

    /// The DHT (routing table, store, counters), read-only.
    pub fn dht(&self) -> &Dht {
        &self.dht
    }

    /// The established peers, in id order.
    pub fn connected_peers(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.peers.keys().copied()
    }

    fn on_connect(&mut self, now: Instant, id: CommandId, peer: NodeId, addr: SocketAddr) {
        if self.peers.contains_key(&peer) {
            return self.reply(id, Reply::Connected(Ok(peer)));
        }
        if self.waiting_count >= self.config.max_waiting_commands {
            self.stats.commands_refused_busy += 1;
            return self.reply(id, Reply::Connected(Err(ConnectError::Busy)));
        }
        let dial_running = self.dialing.values().any(|p| *p == peer);
        if !dial_running {
            match self.table.start_dial(now, addr, peer) {
                Ok(conn) => {
                    self.dialing.insert(conn, peer);
                    self.outputs.push_back(Output::Dial { conn, peer, addr });
                }
                Err(e) => return self.reply(id, Reply::Connected(Err(ConnectError::Refused(e)))),
            }
        }
        self.waiting.entry(peer).or_default().push(id);
        self.waiting_count += 1;
    }

    fn on_ping(&mut self, now: Instant, id: CommandId, peer: NodeId) {
        let Some(conn) = self.peers.get(&peer).copied() else {
            return self.reply(id, Reply::Pong(Err(RequestError::NotConnected)));
        };
        if self.pending.len() >= self.config.max_pending_requests {
            self.stats.commands_refused_busy += 1;
            return self.reply(id, Reply::Pong(Err(RequestError::Busy)));
        }
        self.send_request(now, conn, Owner::Ping(id), Request::Ping);
    }

    fn send_request(&mut self, now: Instant, conn: ConnId, owner: Owner, body: Request) {
        let request_id = self.next_request_id;
        self.next_request_id += 1;
        let deadline_at = now + self.config.request_timeout;
        self.pending.insert(request_id, Pending { conn, owner, sent_at: now, deadline_at });
        let msg = Message::Request { id: request_id, body };
        self.outputs.push_back(Output::Send { conn, msg });
    }

    /// Carries out what the DHT asked for.
    fn pump_dht(&mut self, now: Instant) {
        while let Some(out) = self.dht.poll_output() {
            match out {
                DhtOutput::Reply { command, reply } => self.reply(command, Reply::Dht(reply)),
                DhtOutput::Request { token, peer, request } => {
                    self.dht_request(now, token, peer, request);
                }
                DhtOutput::Job { token, job } => {
                    self.outputs.push_back(Output::Job { id: JobId(token), job });
                }
                DhtOutput::Respond { respond_to, response } => {
                    let Some((conn, id)) = self.deferred.remove(&respond_to) else { continue };
                    // The connection may have closed meanwhile; then the answer is dropped.
                    if self.conns.contains_key(&conn) {
                        let msg = Message::Response { id, body: response };
                        self.outputs.push_back(Output::Send { conn, msg });
                    }
                }
            }
        }
    }

    /// Sends a DHT request to `peer`: at once if connected, else after a dial.
    fn dht_request(&mut self, now: Instant, token: u64, peer: PeerInfo, request: Request) {
        if let Some(&conn) = self.peers.get(&peer.id) {
            if self.pending.len() < self.config.max_pending_requests {
                return self.send_request(now, conn, Owner::Dht(token), request);
            }
            return self.unsent(now, token);
        }
        if self.queued_count >= self.config.max_pending_requests {
            return self.unsent(now, token);
        }
        let dial_running = self.dialing.values().any(|p| *p == peer.id);
        if !dial_running {
            let Some(addr) = peer.addrs.first().copied() else { return self.unsent(now, token) };
            let mut dial = self.table.start_dial(now, addr, peer.id);
            // Every outbound slot is taken: make room by closing the outbound connection idle
            // the longest, as a DHT node talks to many peers once and to few of them often.
            if dial == Err(DialError::LimitReached)
                && self.prune_idle(now, Direction::Outbound, now)
            {
                dial = self.table.start_dial(now, addr, peer.id);
            }
            match dial {
                Ok(conn) => {
                    self.dialing.insert(conn, peer.id);
                    self.outputs.push_back(Output::Dial { conn, peer: peer.id, addr });
                }
                Err(_) => return self.unsent(now, token),
            }
        }
        self.queued.entry(peer.id).or_default().push((token, request));
        self.queued_count += 1;
    }

    /// Closes the established connection in `direction` idle the longest, if idle since
    /// `idle_since` or earlier, with no request of ours in flight and no answer of ours
    /// pending; false if there is none. Its slot is free at once.
    fn prune_idle(&mut self, now: Instant, direction: Direction, idle_since: Instant) -> bool {
        let mut busy: std::collections::BTreeSet<ConnId> =
            self.pending.values().map(|p| p.conn).collect();
        busy.extend(self.deferred.values().map(|(conn, _)| *conn));
        let Some(conn) =
            self.table.least_recently_active(direction, idle_since, |c| busy.contains(&c))
        else {
            return false;
        };
        self.stats.connections_pruned += 1;
        self.table.on_closed(conn);
        self.forget_conn(now, conn);
        self.disconnect(conn, GoodbyeReason::TooManyConnections);
        true
    }

    fn unsent(&mut self, now: Instant, token: u64) {
        self.stats.dht_requests_unsent += 1;
        self.dht.on_response(now, token, Err(RequestFailure::Unreachable));
    }

    /// `peer` is connected: send what waited for it.
    fn flush_queued(&mut self, now: Instant, peer: NodeId) {
        let Some(waiting) = self.queued.remove(&peer) else { return };
        self.queued_count -= waiting.len();
        let Some(&conn) = self.peers.get(&peer) else {
            for (token, _) in waiting {
                self.unsent(now, token);
            }
            return;
        };
        for (token, request) in waiting {
            self.send_request(now, conn, Owner::Dht(token), request);
        }
    }

    /// The dial to `peer` failed: so do the requests that waited for it.
    fn fail_queued(&mut self, now: Instant, peer: NodeId) {
        let Some(waiting) = self.queued.remove(&peer) else { return };
        self.queued_count -= waiting.len();
        for (token, _) in waiting {
            self.unsent(now, token);
        }
    }

    fn fail_request(&mut self, now: Instant, owner: Owner, e: RequestError) {
        match owner {
            Owner::Ping(command) => self.reply(command, Reply::Pong(Err(e))),
            Owner::Dht(token) => {
                let why = match e {
                    RequestError::Timeout => RequestFailure::Timeout,
                    RequestError::Disconnected => RequestFailure::Disconnected,
                    _ => RequestFailure::Unreachable,
                };
                self.dht.on_response(now, token, Err(why));
            }
        }
    }

    fn on_request(&mut self, now: Instant, conn: ConnId, id: u64, body: Request) {
        let response = match body {
            Request::Ping => match self.table.connection(conn) {
                Some(c) => Response::Pong { observed: c.addr },
                None => return,
            },
            other => {
                let Some(p) = self.conns.get(&conn) else { return };
                let from = peer_info(p.id, &p.hello, p.direction, p.addr);
                let handle = self.next_deferred;
                match self.dht.handle_request(now, &from, other, handle) {
                    Some(response) => response,
                    None => {
                        // Bounded by the DHT's `max_deferred`.
                        self.next_deferred += 1;
                        self.deferred.insert(handle, (conn, id));
                        return;
                    }
                }
            }
        };
        self.stats.requests_served += 1;
        self.outputs
            .push_back(Output::Send { conn, msg: Message::Response { id, body: response } });
    }

    fn on_response(&mut self, now: Instant, conn: ConnId, id: u64, body: Response) {
        // A response must come back on the connection its request went out on.
        let Some(p) = self.pending.get(&id).filter(|p| p.conn == conn).copied() else {
            self.stats.responses_unmatched += 1;
            return;
        };
        self.pending.remove(&id);
        let command = match p.owner {
            Owner::Ping(command) => command,
            Owner::Dht(token) => return self.dht.on_response(now, token, Ok(body)),
        };
        let result = match body {
            Response::Pong { observed } => Ok(PingInfo { rtt: now - p.sent_at, observed }),
            Response::Error { code, .. } => Err(RequestError::Remote(code)),
            _ => Err(RequestError::UnexpectedResponse),
        };
        self.reply(command, Reply::Pong(result));
    }

    fn on_table_timeout(&mut self, now: Instant, conn: ConnId, kind: TimeoutKind) {
        self.forget_conn(now, conn);
        let reason = match kind {
            TimeoutKind::Idle => GoodbyeReason::IdleTimeout,
            // Not established: no Goodbye will be sent, the reason is only for the driver.
            TimeoutKind::Connect => GoodbyeReason::Shutdown,
        };
        self.disconnect(conn, reason);
        if let Some(peer) = self.dialing.remove(&conn) {
            self.answer_waiters(peer, Err(ConnectError::Timeout));
            self.fail_queued(now, peer);
        }
    }

    /// Drops everything tied to an established connection that is gone. The peer stays
    /// connected while another of its connections is up.
    fn forget_conn(&mut self, now: Instant, conn: ConnId) {
        let Some(gone) = self.conns.remove(&conn) else { return };
        if self.peers.get(&gone.id) == Some(&conn) {
            let next = self.conns.iter().find(|(_, p)| p.id == gone.id).map(|(&c, _)| c);
            match next {
                Some(other) => {
                    self.peers.insert(gone.id, other);
                }
                None => {
                    self.peers.remove(&gone.id);
                    let event = Event::PeerDisconnected { peer: gone.id };
                    self.outputs.push_back(Output::Event(event));
                }
            }
        }
        let failed: Vec<u64> =
            self.pending.iter().filter(|(_, p)| p.conn == conn).map(|(&id, _)| id).collect();
        for id in failed {
            if let Some(p) = self.pending.remove(&id) {
                self.fail_request(now, p.owner, RequestError::Disconnected);
            }
        }
    }

    fn disconnect(&mut self, conn: ConnId, reason: GoodbyeReason) {
        self.outputs.push_back(Output::Disconnect { conn, reason });
    }

    fn answer_waiters(&mut self, peer: NodeId, result: Result<NodeId, ConnectError>) {
        for id in self.waiting.remove(&peer).unwrap_or_default() {
            self.waiting_count -= 1;
            self.reply(id, Reply::Connected(result.clone()));
        }
    }

    fn reply(&mut self, id: CommandId, reply: Reply) {
        self.outputs.push_back(Output::Reply { id, reply });
    }

    fn peer_summaries(&self) -> Vec<PeerSummary> {
        self.peers
            .iter()
            .filter_map(|(id, conn)| self.conns.get(conn).map(|p| (id, p)))
            .map(|(id, p)| PeerSummary {
                id: *id,
                addr: p.addr,
                direction: p.direction,
                agent: p.hello.agent.clone(),
                listen_addrs: p.hello.listen_addrs.clone(),
            })
            .collect()
    }
}

/// The peer as the DHT knows it: its announced listen addresses; for a peer we dialled with
/// none announced, the address we reached it at. No address (so it never enters the routing
/// table) for a peer that is not a DHT server (handshake.md §2: no `FEATURE_KAD`).
fn peer_info(id: NodeId, hello: &Hello, direction: Direction, addr: SocketAddr) -> PeerInfo {
    if hello.features & FEATURE_KAD == 0 {
        return PeerInfo { id, addrs: Vec::new() };
    }
    let mut addrs: Vec<SocketAddr> =
        hello.listen_addrs.iter().copied().filter(|a| !a.ip().is_unspecified()).collect();
    if addrs.is_empty() && direction == Direction::Outbound {
        addrs.push(addr);
    }
    addrs.truncate(MAX_ADDRS_PER_PEER);
    PeerInfo { id, addrs }
}

fn connect_error(why: &ConnError) -> ConnectError {
    match why {
        ConnError::Tls(rustls::Error::InvalidCertificate(
            rustls::CertificateError::NotValidForName,
        )) => ConnectError::WrongKey,
        ConnError::HandshakeTimeout | ConnError::HelloTimeout => ConnectError::Timeout,
        other => ConnectError::Failed(other.name()),
    }
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
