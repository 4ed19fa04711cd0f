//! The reactor: one mio `Poll`, the listener, a slab of connections and a `Waker`.
//!
//! It turns readiness into `NodeCore` inputs and core outputs into socket writes, and makes
//! no protocol decision of its own (DESIGN.md, "The shape", item 2). Per wake-up it reads the
//! clock once, drains accepts and reads until `WouldBlock`, hands frames to the core, carries
//! out the core's outputs, flushes writes, closes finished connections and recomputes the
//! interest of the connections it touched. The poll timeout is the earliest of the core's
//! deadline, the paused peers' resume times and the global budgets' repayments: every
//! connection deadline (connect, TLS, Hello, idle) is the core's.
//!
//! No scans: a wake-up visits only the connections it touched (readiness, a send, a close,
//! a resume), kept in a dirty list; paused peers wait in an ordered deadline set.
//!
//! Mechanism, not policy: a peer over its rate is not read until its budget is repaid, and a
//! frame that does not fit a peer's write queue is not queued; each is reported to the core
//! (`Input::OverBudget`), which decides whether the peer stays.
//!
//! Memory: socket reads go into one pooled read buffer, and every outgoing payload is encoded
//! into a pooled buffer of its size class that returns to the pool (zeroed) as soon as rustls
//! has taken the bytes, so no connection keeps a frame-sized buffer of its own. The pool's cap
//! bounds these buffers together; a frame that cannot get a buffer is not sent and is counted
//! (the core's request timeout then answers for it).
//!
//! Global byte budgets: bytes read and written are charged to the node-wide inbound and
//! outbound token buckets. When one is in debt, no socket is read (or written) until it is
//! repaid; the kernel's socket buffers and TCP flow control then slow the peers down.

use std::collections::{HashMap, VecDeque};
use std::io::{self, Read};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;

use crate::core::{Budget, Command, CommandId, ConnId, Event, Input, NodeCore, Output, Reply};
use crate::gossip::GossipEvent;
use crate::identity::NodeId;
use crate::protocol::author_keys::AuthorKeys;
use crate::protocol::{Job, JobId, JobResult};
use crate::runtime::buffers::{BufferPool, PooledBuf};
use crate::runtime::deliveries::{Deliveries, Sink};
use crate::runtime::limiter::{
    GlobalLimiter, LimiterConfig, LimiterMemory, PeerLimiter, Source, Verdict,
};
use crate::runtime::snapshot::Snapshot;
use crate::runtime::workers::{Outcome, WorkerPool};
use crate::timers::Deadlines;
use crate::transport::conn::{ConnConfig, ConnEvent, Connection, SendError};
use crate::transport::tls::TlsConfig;
use crate::transport::CloseCause;
use crate::wire::codec;
use crate::wire::messages::{GoodbyeReason, Hello, Message};

/// The listener's token.
const LISTENER: Token = Token(0);
/// The waker's token.
pub(crate) const WAKER: Token = Token(1);
/// First connection token; connection tokens are slab keys plus this offset.
const FIRST_CONN: usize = 2;
/// Bytes read from a socket per `read` call: exactly the pool's 16 KiB class, small on a host
/// running many nodes; a full TLS record (16 KiB plus overhead) then takes two reads.
const READ_CHUNK_BYTES: usize = 16 * 1024;
/// Most bytes one socket write takes: a write may put the outbound budget in debt by at most
/// this much, so the pause it causes every other connection stays around a millisecond.
const WRITE_CHUNK_BYTES: usize = 64 * 1024;
/// Frames one connection has handled per turn before the others get theirs. A flood costs the
/// other peers at most one turn of each flooding connection, not its whole burst.
const FRAMES_PER_TURN: usize = 32;
/// Socket reads per turn (each at most `READ_CHUNK_BYTES`): the turn's bound in bytes, so a
/// peer sending large frames takes no more of a scarce global budget than the others.
const READS_PER_TURN: usize = 4;
/// Output one connection's frames may produce per turn: a peer asking for large answers (a
/// 64 KiB record, again and again) costs the others one answer's worth of encryption per
/// turn, not a write queue's.
const OUTPUT_PER_TURN: usize = 128 * 1024;
/// Event subscriptions a node keeps at once.
pub const MAX_EVENT_SUBSCRIBERS: usize = 8;
/// How long a closed connection may take to flush what it still has queued (a Goodbye, the
/// rest of an answer) before it is dropped regardless.
const LINGER: Duration = Duration::from_secs(1);
/// How soon an accept that failed for want of resources is tried again.
const ACCEPT_RETRY: Duration = Duration::from_millis(20);
/// Readiness events taken per `poll` call; more wait for the next call.
const EVENTS_PER_POLL: usize = 256;

/// What the `Handle` sends to the reactor.
pub(crate) enum Control {
    /// An application command and where to send its reply. Boxed, so the bounded channel's
    /// slots stay a few words each whatever the largest command.
    Command(Box<Command>, Sender<Reply>),
    /// Every counter and gauge of the node, now.
    Snapshot(Sender<Snapshot>),
    /// Send the node's events to this queue from now on; answer whether it was taken.
    Subscribe(Sender<Event>, Sender<bool>),
    /// Deliver gossip messages of a topic to this queue; answer whether it was taken.
    TopicSink(String, Sink, Sender<bool>),
    /// Stop delivering a topic's messages to any queue.
    DropSinks(String),
    /// Close every connection with Goodbye and stop, within the deadline.
    Shutdown,
}

/// Counters of the reactor, for the metrics layer.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReactorStats {
    /// Inbound connections refused by the admission rate limiter.
    pub refused_rate: u64,
    /// Inbound connections refused because the connection slab was full or the node was
    /// shutting down.
    pub refused_entries: u64,
    /// Dials the core asked for after the stop began, failed at once.
    pub dials_refused_shutdown: u64,
    /// Connections closed because the peer broke the protocol.
    pub closed_misbehaving: u64,
    /// Frames not sent because the buffer pool refused a buffer.
    pub frames_refused_pool: u64,
    /// Frames not sent because they failed to encode (a local bug or oversized value).
    pub frames_unencodable: u64,
    /// Frames not sent because the peer's write queue was full.
    pub frames_refused_queue: u64,
    /// Closed connections dropped with bytes unsent: the peer did not read within the linger.
    pub lingered_out: u64,
    /// Times a connection's output went over its high-water mark, so it was not read until
    /// the output drained.
    pub backlogs: u64,
    /// Output queued on all connections together now, bytes.
    pub pending_output_bytes: usize,
    /// Bytes of partly received frames held on all connections together now.
    pub partial_frame_bytes: usize,
    /// The most bytes of partly received frames ever held at once.
    pub partial_frame_high_water: usize,
    /// Times a connection part-way through a frame was not read because the node held too
    /// many bytes of partial frames.
    pub partial_holds: u64,
    /// The most output ever queued on all connections together, bytes.
    pub pending_output_high_water: usize,
    /// Accepts that failed for want of descriptors or buffers (retried shortly).
    pub accept_errors: u64,
    /// Worker jobs that panicked (a bug; their owner hears the job was refused).
    pub jobs_panicked: u64,
    /// Budgets of closed connections remembered now, by address and by id.
    pub budgets_remembered: usize,
    /// Remembered budgets forgotten early because the memory was full.
    pub budgets_forgotten: u64,
    /// Events dropped because the application did not take them in time.
    pub events_dropped: u64,
    /// Connections in the slab now, connecting or established.
    pub entries: usize,
    /// Bytes read from peers' sockets (TLS records: framing and encryption included).
    pub bytes_received: u64,
    /// Bytes written to peers' sockets.
    pub bytes_sent: u64,
    /// Frames received from established peers and handed to the core (the Hello and Goodbye,
    /// which the connection handles itself, are not counted here or in `frames_sent`).
    pub frames_received: u64,
    /// Frames the core sent that the connection took (encoded and queued for writing).
    pub frames_sent: u64,
    /// Received frames the peer's rate limiter let through at once ([`Verdict::Allow`]).
    pub rate_allowed: u64,
    /// Received frames that put the peer over its rate, so its reads paused
    /// ([`Verdict::Slow`]).
    pub rate_slowed: u64,
    /// Received frames whose cost could never be paid ([`Verdict::Unpayable`]).
    pub rate_unpayable: u64,
}

struct Entry {
    id: ConnId,
    stream: TcpStream,
    conn: Connection,
    /// TCP connect still in progress (outbound).
    connecting: bool,
    limiter: PeerLimiter,
    /// Reading paused by the rate limiter until then.
    paused_until: Option<Instant>,
    /// The socket failed, or the core dropped the connection before it was established: drop
    /// without flushing.
    dead: bool,
    /// In this wake-up's dirty list.
    dirty: bool,
    /// Its output is above the high-water mark: neither read nor handed to the core until it
    /// drains (its decoded frames wait in the connection).
    backlogged: bool,
    /// Its queued output as last counted into `Reactor::pending_output`.
    accounted: usize,
    /// The frame it is part-way through, as last counted: (number, bytes held).
    partial: Option<(u64, usize)>,
    /// Not read while the node holds too many bytes of partly received frames.
    partial_held: bool,
    /// In `Reactor::turns`: it used up its turn with frames or bytes left to handle.
    queued_turn: bool,
    /// The peer's address (dialled, or accepted from).
    remote: Option<SocketAddr>,
    interest: Interest,
}

/// Everything the reactor thread owns.
pub(crate) struct Reactor {
    poll: Poll,
    listener: TcpListener,
    /// Boxed: an entry holds a rustls session of a few KiB, and a slab of inline entries
    /// would double its whole allocation as connections come and go.
    entries: Slab<Box<Entry>>,
    keys: HashMap<ConnId, usize>,
    /// Slab keys touched in this wake-up: flushed, closed or re-registered in `sweep`.
    dirty: Vec<usize>,
    /// Connections that used up their turn (`FRAMES_PER_TURN`) with more to handle, in the
    /// order they get their next one: a busy peer is served a turn at a time, between the
    /// others, instead of until its socket is empty.
    turns: VecDeque<usize>,
    /// Peers paused by their rate limiter, by slab key.
    paused: Deadlines<usize>,
    /// Closed connections still flushing (a Goodbye, an alert), by slab key: dropped at the
    /// deadline whether or not the peer reads.
    lingering: Deadlines<usize>,
    /// Backlogged connections, by slab key: reported to the core as not reading if their
    /// output has not drained by the deadline.
    stalled: Deadlines<usize>,
    /// Output queued on every connection together, bytes.
    pending_output: usize,
    /// A connection whose own queued output is above this is backlogged.
    conn_high_water: usize,
    /// Above this much output queued node-wide, every connection with output queued is.
    max_pending_output: usize,
    /// How long a backlogged connection may go without its output draining before the core
    /// hears that the peer does not read.
    stall_timeout: Duration,
    /// Bytes of partly received frames held on all connections together.
    partial_bytes: usize,
    /// Above this, connections part-way through a frame are not read until it drops.
    max_partial_bytes: usize,
    /// Connections not read for that reason, by slab key.
    partial_held: Vec<usize>,
    /// Deadlines of the frames connections are part-way through, by slab key.
    frame_deadlines: Deadlines<usize>,
    /// How long a started frame may take to arrive whole.
    frame_timeout: Duration,
    next_inbound: u64,
    core: NodeCore,
    workers: Workers,
    tls: TlsConfig,
    conn_config: ConnConfig,
    hello: Hello,
    limiter_config: LimiterConfig,
    global: GlobalLimiter,
    /// Budgets of closed connections, for their peers' next connections.
    budgets: LimiterMemory,
    control: Receiver<Control>,
    _alive: Sender<()>,
    log: Option<std::sync::Arc<crate::store::Log>>,
    author_keys: Arc<AuthorKeys>,
    /// Where the node's events go: one bounded queue per subscriber.
    subscribers: Vec<Sender<Event>>,
    /// Where delivered gossip messages go, by topic.
    deliveries: Deliveries,
    replies: HashMap<u64, Sender<Reply>>,
    next_command: u64,
    pool: BufferPool,
    /// Lent by `pool` for the reactor's lifetime.
    read_buf: PooledBuf,
    max_frame_bytes: usize,
    /// Bytes per socket read: the read buffer, or the inbound budget's burst if smaller.
    max_read_bytes: usize,
    /// Bytes per socket write: `WRITE_CHUNK_BYTES`, or the outbound budget's burst if smaller.
    max_write_bytes: usize,
    /// The global inbound budget is in debt: no reads before then.
    reads_paused_until: Option<Instant>,
    /// The global outbound budget is in debt: no writes before then.
    writes_paused_until: Option<Instant>,
    /// Where the next resume after a global inbound debt starts: the connection the last one
    /// did not reach, so a refill is not always spent on the same first connections.
    read_cursor: usize,
    /// An accept failed for want of resources: try again then.
    accept_retry_at: Option<Instant>,
    stats: ReactorStats,
    max_entries: usize,
    shutdown_at: Option<Instant>,
    shutdown_timeout: Duration,
}

/// The worker pool as the reactor uses it: each job carries its id back, with its result or
/// `None` when it panicked, so every job submitted gets exactly one answer.
pub(crate) type Workers = WorkerPool<(JobId, Job), (JobId, Option<JobResult>)>;

/// The pieces `Reactor::new` needs.
pub(crate) struct ReactorParts {
    pub poll: Poll,
    pub listener: TcpListener,
    pub core: NodeCore,
    pub workers: Workers,
    pub tls: TlsConfig,
    pub conn_config: ConnConfig,
    pub hello: Hello,
    pub limiter_config: LimiterConfig,
    pub control: Receiver<Control>,
    /// Dropped with the reactor, which tells every handle it is gone (never sent on).
    pub alive: Sender<()>,
    /// The node's log, read only for its counters (the workers write it).
    pub log: Option<std::sync::Arc<crate::store::Log>>,
    /// The workers' cache of decoded gossip author keys, read only for its counters.
    pub author_keys: Arc<AuthorKeys>,
    pub max_entries: usize,
    pub shutdown_timeout: Duration,
    pub buffer_pool_bytes: usize,
    pub max_pending_output_bytes: usize,
    pub stall_timeout: Duration,
    pub max_partial_frame_bytes: usize,
    pub frame_timeout: Duration,
    /// Topics with subscriptions at once (gossip's `max_topics`).
    pub max_topics: usize,
}

impl Reactor {
    /// Registers the listener and builds the reactor.
    pub(crate) fn new(mut p: ReactorParts) -> io::Result<Reactor> {
        p.poll.registry().register(&mut p.listener, LISTENER, Interest::READABLE)?;
        let now = Instant::now();
        let mut pool = BufferPool::new(p.buffer_pool_bytes);
        let read_buf = pool.acquire(READ_CHUNK_BYTES).map_err(|e| {
            io::Error::new(io::ErrorKind::InvalidInput, format!("buffer pool: {e}"))
        })?;
        let max_frame_bytes = p.conn_config.max_frame_bytes;
        let max_read_bytes = clamp_usize(p.limiter_config.global_inbound_bytes_burst);
        let max_write_bytes =
            clamp_usize(p.limiter_config.global_outbound_bytes_burst).min(WRITE_CHUNK_BYTES);
        Ok(Reactor {
            poll: p.poll,
            listener: p.listener,
            entries: Slab::new(),
            keys: HashMap::new(),
            dirty: Vec::new(),
            turns: VecDeque::new(),
            paused: Deadlines::new(),
            lingering: Deadlines::new(),
            stalled: Deadlines::new(),
            pending_output: 0,
            conn_high_water: high_water(&p.conn_config),
            max_pending_output: p.max_pending_output_bytes,
            stall_timeout: p.stall_timeout,
            partial_bytes: 0,
            max_partial_bytes: p.max_partial_frame_bytes,
            partial_held: Vec::new(),
            frame_deadlines: Deadlines::new(),
            frame_timeout: p.frame_timeout,
            next_inbound: 0,
            core: p.core,
            workers: p.workers,
            author_keys: p.author_keys,
            tls: p.tls,
            conn_config: p.conn_config,
            hello: p.hello,
            global: GlobalLimiter::new(&p.limiter_config, now),
            budgets: LimiterMemory::new(
                p.limiter_config.max_remembered,
                p.limiter_config.limiter_retention,
            ),
            limiter_config: p.limiter_config,
            control: p.control,
            _alive: p.alive,
            log: p.log,
            subscribers: Vec::new(),
            deliveries: Deliveries::new(p.max_topics),
            replies: HashMap::new(),
            next_command: 0,
            pool,
            read_buf,
            max_frame_bytes,
            max_read_bytes,
            max_write_bytes,
            reads_paused_until: None,
            read_cursor: 0,
            writes_paused_until: None,
            accept_retry_at: None,
            stats: ReactorStats::default(),
            max_entries: p.max_entries,
            shutdown_at: None,
            shutdown_timeout: p.shutdown_timeout,
        })
    }

    /// Runs until shutdown completes (all connections closed, or the shutdown deadline).
    pub(crate) fn run(mut self) {
        let mut events = Events::with_capacity(EVENTS_PER_POLL);
        loop {
            let timeout = match self.turns.is_empty() {
                // Connections wait for their next turn: look for new events, do not sleep.
                false => Some(Duration::ZERO),
                true => self.next_deadline().map(|d| d.saturating_duration_since(Instant::now())),
            };
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return; // the poll itself failed: nothing sensible is left to do
            }
            let now = Instant::now();
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept(now),
                    WAKER => self.drain_control(now),
                    Token(t) => self.on_ready(now, t - FIRST_CONN, event.is_writable()),
                }
            }
            self.take_turns(now);
            self.drain_jobs(now);
            self.on_timers(now);
            self.drain_core(now);
            self.sweep(now);
            if self.shutdown_at.is_some_and(|at| self.entries.is_empty() || now >= at) {
                return;
            }
        }
    }

    /// Every counter and gauge of the node.
    fn snapshot(&self) -> Snapshot {
        let dht = self.core.dht();
        let (requests_in_flight, answers_owed) = self.core.requests_pending();
        Snapshot {
            core: self.core.stats(),
            peers: self.core.peer_stats(),
            requests_in_flight,
            answers_owed,
            dht: dht.stats(),
            routing: dht.routing_stats(),
            store: dht.store_stats(),
            gossip: self.core.gossip().map(|g| g.stats()),
            gossip_scores: self.core.gossip().map(|g| g.scores().stats()),
            subscriptions_lost: self.deliveries.lost(),
            reactor: ReactorStats {
                entries: self.entries.len(),
                pending_output_bytes: self.pending_output,
                partial_frame_bytes: self.partial_bytes,
                budgets_remembered: self.budgets.len(),
                budgets_forgotten: self.budgets.evicted(),
                ..self.stats
            },
            limiter: self.global.stats(),
            buffers: self.pool.stats(),
            workers: self.workers.stats(),
            author_keys: self.author_keys.stats(),
            log: self.log.as_ref().map(|log| log.stats()),
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        let budgets = [self.reads_paused_until, self.writes_paused_until, self.accept_retry_at];
        let timers = [
            self.paused.next(),
            self.lingering.next(),
            self.stalled.next(),
            self.frame_deadlines.next(),
            self.shutdown_at,
        ];
        [self.core.next_deadline()].into_iter().chain(timers).chain(budgets).flatten().min()
    }

    fn accept(&mut self, now: Instant) {
        loop {
            match self.listener.accept() {
                Ok((stream, addr)) => self.on_accepted(now, stream, addr),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                // Out of descriptors or buffers (EMFILE, ENFILE, ENOBUFS): the connections stay
                // in the backlog, and the listener, edge-triggered, raises no new event for
                // them. Try again shortly rather than leave them to their peers' timeouts.
                Err(_) => {
                    self.stats.accept_errors += 1;
                    self.accept_retry_at = Some(now + ACCEPT_RETRY);
                    return;
                }
            }
        }
    }

    fn on_accepted(&mut self, now: Instant, stream: TcpStream, addr: SocketAddr) {
        if self.shutdown_at.is_some() || self.entries.len() >= self.max_entries {
            self.stats.refused_entries += 1;
            return;
        }
        if self.global.admit_connection(now, addr.ip()).is_err() {
            self.stats.refused_rate += 1;
            return;
        }
        let Ok(tls) = self.tls.accept() else { return };
        let conn = ConnId::inbound(self.next_inbound);
        self.next_inbound += 1;
        // The core may refuse it: its Disconnect comes out with this wake-up's outputs.
        if self.insert(now, conn, stream, tls.into(), addr, false).is_some() {
            self.core.handle(now, Input::Accepted { conn, addr });
        }
    }

    /// Registers a new connection; false (and nothing kept) if the poll refuses the socket.
    fn insert(
        &mut self,
        now: Instant,
        id: ConnId,
        mut stream: TcpStream,
        tls: rustls::Connection,
        remote: SocketAddr,
        connecting: bool,
    ) -> Option<usize> {
        let _ = stream.set_nodelay(true);
        let conn = Connection::new(tls, self.hello.clone(), self.conn_config.clone());
        let slot = self.entries.vacant_entry();
        let interest = Interest::READABLE | Interest::WRITABLE;
        let key = slot.key();
        if self.poll.registry().register(&mut stream, Token(key + FIRST_CONN), interest).is_err() {
            return None;
        }
        // A peer reconnecting from the same address starts from the budget it left with.
        let mut limiter = PeerLimiter::new(&self.limiter_config, now);
        if let Some(source) = Source::of_ip(remote.ip()) {
            limiter = self.budgets.stricter(now, source, limiter);
        }
        slot.insert(Box::new(Entry {
            id,
            stream,
            conn,
            connecting,
            limiter,
            paused_until: None,
            dead: false,
            dirty: false,
            backlogged: false,
            accounted: 0,
            partial: None,
            partial_held: false,
            queued_turn: false,
            remote: Some(remote),
            interest,
        }));
        self.keys.insert(id, key);
        self.touch(key);
        Some(key)
    }

    fn drain_control(&mut self, now: Instant) {
        while let Ok(msg) = self.control.try_recv() {
            match msg {
                Control::Command(command, reply_to) => {
                    let id = self.next_command;
                    self.next_command += 1;
                    self.replies.insert(id, reply_to);
                    self.core.handle(now, Input::Command { id: CommandId(id), cmd: *command });
                }
                Control::Subscribe(events, reply_to) => {
                    let room = self.subscribers.len() < MAX_EVENT_SUBSCRIBERS;
                    if room {
                        self.subscribers.push(events);
                    }
                    let _ = reply_to.try_send(room);
                }
                Control::TopicSink(topic, sink, reply_to) => {
                    let _ = reply_to.try_send(self.deliveries.add(topic, sink));
                }
                Control::DropSinks(topic) => self.deliveries.remove(&topic),
                Control::Snapshot(reply_to) => {
                    let _ = reply_to.try_send(self.snapshot()); // the caller may have left
                }
                Control::Shutdown => self.begin_shutdown(now),
            }
        }
    }

    fn begin_shutdown(&mut self, now: Instant) {
        self.shutdown_at = Some(now + self.shutdown_timeout);
        let keys: Vec<usize> = self.entries.iter().map(|(k, _)| k).collect();
        for key in keys {
            if let Some(e) = self.entries.get_mut(key) {
                e.conn.close(GoodbyeReason::Shutdown);
            }
            self.touch(key);
        }
    }

    fn on_ready(&mut self, now: Instant, key: usize, writable: bool) {
        let Some(e) = self.entries.get_mut(key) else { return };
        if e.connecting && writable {
            match (e.stream.take_error(), e.stream.peer_addr()) {
                (Ok(None), Ok(_)) => e.connecting = false,
                (Ok(None), Err(err)) if err.kind() == io::ErrorKind::NotConnected => return,
                _ => e.dead = true,
            }
        }
        let readable = !e.connecting && !e.dead;
        self.touch(key);
        if readable {
            self.read(now, key);
        }
    }

    /// Reads until `WouldBlock`, or until the rate limiter pauses the peer, and hands every
    /// event to the core, at most [`FRAMES_PER_TURN`] frames, [`READS_PER_TURN`] reads and
    /// [`OUTPUT_PER_TURN`] bytes of answers in this turn: a connection with more to handle
    /// takes its place in the queue of turns and goes on there.
    fn read(&mut self, now: Instant, key: usize) {
        let mut budget = FRAMES_PER_TURN;
        let mut reads = 0;
        let Some(start) = self.entries.get(key).map(|e| e.conn.queued_bytes()) else { return };
        let output_cap = start.saturating_add(OUTPUT_PER_TURN);
        loop {
            // What is decoded already goes first.
            if self.entries.get(key).is_some_and(|e| e.conn.has_events() && !e.backlogged) {
                budget = self.deliver_events(now, key, budget, output_cap);
            }
            if self.reads_paused_until.is_some() {
                return;
            }
            let Some(e) = self.entries.get_mut(key) else { return };
            let held = e.backlogged || e.partial_held;
            if e.paused_until.is_some() || held || e.dead || e.conn.error().is_some() {
                return;
            }
            if budget == 0 || reads == READS_PER_TURN || e.conn.has_events() {
                return self.queue_turn(key);
            }
            reads += 1;
            // One read never takes more than the budget's burst, so the bytes handled by time
            // t stay below burst + rate * t + one read.
            let buf = self.read_buf.as_mut_vec();
            let cap = buf.capacity();
            buf.resize(cap.min(self.max_read_bytes).max(1), 0);
            match e.stream.read(buf) {
                Ok(n) => {
                    self.stats.bytes_received += n as u64;
                    self.reads_paused_until = self.global.charge_inbound(now, n as u64);
                    e.conn.handle_input(&self.read_buf.as_slice()[..n]);
                    self.account_partial(now, key);
                    if n == 0 {
                        // The end of the stream: what it carried is handed on, then it goes.
                        self.deliver_events(now, key, usize::MAX, usize::MAX);
                        return;
                    }
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return,
                Err(_) => {
                    e.dead = true;
                    return;
                }
            }
        }
    }

    /// Puts `key` at the back of the queue of turns, once.
    fn queue_turn(&mut self, key: usize) {
        if let Some(e) = self.entries.get_mut(key) {
            if !e.queued_turn {
                e.queued_turn = true;
                self.turns.push_back(key);
            }
        }
    }

    /// Gives each connection waiting in the queue of turns one turn.
    fn take_turns(&mut self, now: Instant) {
        for _ in 0..self.turns.len() {
            let Some(key) = self.turns.pop_front() else { return };
            if let Some(e) = self.entries.get_mut(key) {
                e.queued_turn = false;
                self.touch(key);
                self.read(now, key);
            }
        }
    }

    /// Hands the connection's decoded events to the core, one at a time, and the core's
    /// answers straight back to the connections, until none is left or the connection's output
    /// is above its high-water mark: then it is backlogged, and the rest waits in the
    /// connection until its output drains. Also stops when `budget` frames are handed on or
    /// its output reaches `output_cap` bytes (the turn is over: 0 is returned); else returns
    /// what is left of `budget`.
    fn deliver_events(
        &mut self,
        now: Instant,
        key: usize,
        mut budget: usize,
        output_cap: usize,
    ) -> usize {
        loop {
            if self.is_over_high_water(key) {
                self.backlog(now, key);
                return budget;
            }
            let Some(e) = self.entries.get_mut(key) else { return budget };
            if budget == 0 || e.conn.queued_bytes() >= output_cap {
                return 0;
            }
            let conn = e.id;
            let Some(event) = e.conn.poll_event() else { return budget };
            budget -= 1;
            match event {
                ConnEvent::Established { peer, hello } => {
                    // And a peer reconnecting with the same key, from the budget it left with.
                    let fresh = PeerLimiter::new(&self.limiter_config, now);
                    let current = std::mem::replace(&mut e.limiter, fresh);
                    let source = Source::Id(peer.node_id);
                    e.limiter = self.budgets.stricter(now, source, current);
                    let input =
                        Input::Established { conn, peer: peer.node_id, hello: hello.into() };
                    self.core.handle(now, input);
                }
                ConnEvent::Authenticated { peer } => {
                    let input = Input::Authenticated { conn, peer: peer.node_id };
                    self.core.handle(now, input);
                }
                ConnEvent::Probed { .. } => self.core.handle(now, Input::Probed { conn }),
                ConnEvent::Message { msg, frame_bytes } => {
                    self.stats.frames_received += 1;
                    let strikes = match e.limiter.on_frame(now, frame_bytes) {
                        Verdict::Allow => {
                            self.stats.rate_allowed += 1;
                            None
                        }
                        Verdict::Slow { until, strike } => {
                            self.stats.rate_slowed += 1;
                            e.paused_until = Some(until);
                            self.paused.set(key, until);
                            strike
                        }
                        Verdict::Unpayable => {
                            self.stats.rate_unpayable += 1;
                            Some(u32::MAX)
                        }
                    };
                    // The core hears of a new strike before the frame, so a peer it drops
                    // for it is not served.
                    if let Some(strikes) = strikes {
                        let budget = Budget::Inbound { strikes };
                        self.core.handle(now, Input::OverBudget { conn, budget });
                    }
                    self.core.handle(now, Input::Frame { conn, msg });
                }
                ConnEvent::Goodbye(_) => {}
            }
            // The answer goes to its connection now, so the high-water check above sees it.
            self.drain_core(now);
        }
    }

    /// Whether `key`'s output is above its own high-water mark, or it has output queued while
    /// the node's output as a whole is above its bound.
    fn is_over_high_water(&self, key: usize) -> bool {
        let Some(e) = self.entries.get(key) else { return false };
        let queued = e.conn.queued_bytes();
        queued > self.conn_high_water
            || (queued > 0 && self.pending_output > self.max_pending_output)
    }

    /// Stops reading `key` until its output drains; if it has not drained by the stall
    /// deadline, the core hears that the peer does not read.
    fn backlog(&mut self, now: Instant, key: usize) {
        let Some(e) = self.entries.get_mut(key) else { return };
        if !e.backlogged {
            e.backlogged = true;
            let conn = e.id;
            self.stats.backlogs += 1;
            self.stalled.set(key, now + self.stall_timeout);
            // Protocols hold back what they would send it, by their own priorities.
            self.core.handle(now, Input::Congestion { conn, congested: true });
        }
    }

    /// Counts `key`'s partly received frame into the node-wide total: a new frame gets its
    /// completion deadline, a finished one loses it; past the node-wide bound the connection
    /// is not read until the total drops, and when it drops, the held connections resume.
    fn account_partial(&mut self, now: Instant, key: usize) {
        let Some(e) = self.entries.get_mut(key) else { return };
        let partial = e.conn.partial_frame();
        let (old, new) = (e.partial.map_or(0, |p| p.1), partial.map_or(0, |p| p.1));
        let started = partial.is_some_and(|(seq, _)| e.partial.map(|p| p.0) != Some(seq));
        e.partial = partial;
        self.partial_bytes = self.partial_bytes.saturating_sub(old) + new;
        self.stats.partial_frame_high_water =
            self.stats.partial_frame_high_water.max(self.partial_bytes);
        match partial {
            None => self.frame_deadlines.clear(key),
            Some(_) if started => self.frame_deadlines.set(key, now + self.frame_timeout),
            Some(_) => {}
        }
        if partial.is_some() && self.partial_bytes > self.max_partial_bytes && !e.partial_held {
            e.partial_held = true;
            self.partial_held.push(key);
            self.stats.partial_holds += 1;
        }
        if new < old {
            self.release_partial_holds(now);
        }
    }

    /// The node holds fewer partial-frame bytes than before: the connections held for it read
    /// again (and may be held again).
    fn release_partial_holds(&mut self, now: Instant) {
        if self.partial_bytes > self.max_partial_bytes {
            return;
        }
        for key in std::mem::take(&mut self.partial_held) {
            if let Some(e) = self.entries.get_mut(key) {
                e.partial_held = false;
                self.touch(key);
                self.read(now, key);
            }
        }
    }

    /// Counts `key`'s queued output into the node-wide total; after a flush, resumes it if it
    /// was backlogged and has drained.
    fn account(&mut self, now: Instant, key: usize) {
        let Some(e) = self.entries.get_mut(key) else { return };
        let queued = e.conn.queued_bytes();
        self.pending_output = self.pending_output.saturating_sub(e.accounted) + queued;
        e.accounted = queued;
        self.stats.pending_output_high_water =
            self.stats.pending_output_high_water.max(self.pending_output);
        if e.backlogged && !self.is_over_high_water(key) {
            let mut conn = None;
            if let Some(e) = self.entries.get_mut(key) {
                e.backlogged = false;
                conn = Some(e.id);
            }
            self.stalled.clear(key);
            if let Some(conn) = conn {
                self.core.handle(now, Input::Congestion { conn, congested: false });
            }
            // What waited in the connection goes first, then what waits in the socket.
            self.read(now, key);
        }
    }

    fn on_timers(&mut self, now: Instant) {
        if self.accept_retry_at.is_some_and(|at| at <= now) {
            self.accept_retry_at = None;
            self.accept(now);
        }
        if self.reads_paused_until.is_some_and(|at| at <= now) {
            self.reads_paused_until = None;
            // Edge-triggered: bytes that arrived while paused raise no new event. The round
            // starts where the last one ran out of budget, so every connection gets its turn.
            for key in self.keys_from(self.read_cursor) {
                self.resume(now, key);
                if self.reads_paused_until.is_some() {
                    self.read_cursor = key + 1;
                    break;
                }
            }
        }
        if self.writes_paused_until.is_some_and(|at| at <= now) {
            self.writes_paused_until = None;
            // Flushes go in touch order: the least queued first, so a ping's answer is not
            // stuck behind a bulk sender's megabytes when the budget is scarce.
            let mut waiting: Vec<(usize, usize)> = self
                .entries
                .iter()
                .filter(|(_, e)| e.conn.wants_write())
                .map(|(k, e)| (e.conn.queued_bytes(), k))
                .collect();
            waiting.sort_unstable();
            for (_, key) in waiting {
                self.touch(key);
            }
        }
        while let Some(key) = self.frame_deadlines.pop_due(now) {
            if let Some(e) = self.entries.get(key).filter(|e| e.partial.is_some()) {
                // A frame started and not finished in time: the core decides.
                let conn = e.id;
                self.core.handle(now, Input::OverBudget { conn, budget: Budget::PartialFrame });
            }
        }
        while let Some(key) = self.stalled.pop_due(now) {
            if let Some(e) = self.entries.get(key).filter(|e| e.backlogged) {
                // It reads too slowly to take its answers: the core decides what happens.
                let conn = e.id;
                self.core.handle(now, Input::OverBudget { conn, budget: Budget::WriteQueue });
            }
        }
        while let Some(key) = self.lingering.pop_due(now) {
            if let Some(e) = self.entries.get_mut(key) {
                e.dead = true;
                self.stats.lingered_out += 1;
            }
            self.touch(key);
        }
        while let Some(key) = self.paused.pop_due(now) {
            if let Some(e) = self.entries.get_mut(key) {
                e.paused_until = None;
            }
            self.resume(now, key);
        }
        self.core.handle_timeout(now);
    }

    /// Every connection's key, from `start` on and then wrapping round.
    fn keys_from(&self, start: usize) -> Vec<usize> {
        let (mut later, earlier): (Vec<usize>, Vec<usize>) =
            self.entries.iter().map(|(k, _)| k).partition(|&k| k >= start);
        later.extend(earlier);
        later
    }

    /// Reads what arrived while `key` was paused.
    fn resume(&mut self, now: Instant, key: usize) {
        let Some(e) = self.entries.get(key) else { return };
        if !e.connecting && e.paused_until.is_none() {
            self.touch(key);
            self.read(now, key);
        }
    }

    fn drain_core(&mut self, now: Instant) {
        while let Some(output) = self.core.poll_output() {
            match output {
                Output::Dial { conn, peer, addr, probe } => self.dial(now, conn, peer, addr, probe),
                Output::Send { conn, msg } => self.send(now, conn, &msg),
                Output::Disconnect { conn, reason } => self.disconnect(now, conn, reason),
                Output::Reply { id, reply } => {
                    if let Some(tx) = self.replies.remove(&id.0) {
                        let _ = tx.try_send(reply); // the caller may have timed out and left
                    }
                }
                Output::Event(event) => self.publish(event),
                Output::Job { id, job } => {
                    // A full queue is backpressure: the core answers what waited `Overloaded`.
                    if self.workers.submit((id, job)).is_err() {
                        self.core.handle(now, Input::JobRefused { id });
                    }
                }
            }
        }
    }

    /// Gives `event` to every subscriber; a full queue drops it for that one, a gone
    /// receiver ends its subscription.
    fn publish(&mut self, event: Event) {
        // Messages go to their topic's subscriptions only, not to every event queue.
        if let Event::Gossip(GossipEvent::Message(d)) = &event {
            self.deliveries.deliver(d);
            return;
        }
        let mut dropped = 0;
        self.subscribers.retain(|tx| match tx.try_send(event.clone()) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                dropped += 1;
                true
            }
            Err(TrySendError::Disconnected(_)) => false,
        });
        self.stats.events_dropped += dropped;
    }

    /// Hands finished worker jobs to the core. Workers wake the poll after each result.
    fn drain_jobs(&mut self, now: Instant) {
        while let Some(outcome) = self.workers.try_recv() {
            let input = match outcome {
                Outcome::Done((id, Some(result))) => Input::JobDone { id, result },
                Outcome::Done((id, None)) => {
                    self.stats.jobs_panicked += 1;
                    Input::JobRefused { id }
                }
                // The handler catches panics itself, so this carries no id; counted only.
                Outcome::Panicked { .. } => {
                    self.stats.jobs_panicked += 1;
                    continue;
                }
            };
            self.core.handle(now, input);
        }
    }

    /// Encodes `msg` into a pooled buffer and queues it on `conn`: one frame, one write.
    fn send(&mut self, now: Instant, conn: ConnId, msg: &Message) {
        let Some(&key) = self.keys.get(&conn) else { return };
        let Ok(len) = codec::payload_len(msg) else {
            self.stats.frames_unencodable += 1;
            return;
        };
        let Ok(mut buf) = self.pool.acquire(len) else {
            self.stats.frames_refused_pool += 1;
            return;
        };
        // `None`: nothing was handed to the connection.
        let sent = match codec::encode_payload(msg, self.max_frame_bytes, buf.as_mut_vec()) {
            Err(_) => {
                self.stats.frames_unencodable += 1;
                None
            }
            // Any other failure is sticky in the connection and ends it.
            Ok(()) => self.entries.get_mut(key).map(|e| e.conn.send_payload(buf.as_slice())),
        };
        self.pool.release(buf);
        self.touch(key);
        self.account(now, key);
        if self.is_over_high_water(key) {
            self.backlog(now, key);
        }
        match sent {
            Some(Ok(())) => self.stats.frames_sent += 1,
            Some(Err(SendError::WriteQueueFull)) => {
                self.stats.frames_refused_queue += 1;
                self.core.handle(now, Input::OverBudget { conn, budget: Budget::WriteQueue });
            }
            Some(Err(_)) | None => {}
        }
    }

    /// Closes `conn` as the core decided: a Goodbye if it is established, at once if not.
    fn disconnect(&mut self, now: Instant, conn: ConnId, reason: GoodbyeReason) {
        let Some(&key) = self.keys.get(&conn) else { return };
        if let Some(e) = self.entries.get_mut(key) {
            if e.conn.is_established() {
                e.conn.close(reason);
            } else if reason == GoodbyeReason::TooManyConnections && !e.connecting {
                // Refused for want of a slot: the peer hears why once TLS is done (it should
                // back off, handshake.md §5), within LINGER, else it is dropped unanswered.
                e.conn.refuse(reason);
                self.lingering.set(key, now + LINGER);
            } else {
                e.dead = true;
            }
        }
        self.touch(key);
    }

    fn dial(&mut self, now: Instant, conn: ConnId, peer: NodeId, addr: SocketAddr, probe: bool) {
        let failed = Input::Closed { conn, cause: CloseCause::TcpFailed };
        if self.shutdown_at.is_some() {
            // A dial the core asks for while the node stops (a retry, a dial-back) would be a
            // connection nobody says Goodbye to, holding the stop to its deadline.
            self.stats.dials_refused_shutdown += 1;
            return self.core.handle(now, failed);
        }
        let Ok(stream) = TcpStream::connect(addr) else {
            return self.core.handle(now, failed);
        };
        let Ok(tls) = self.tls.dial(peer) else {
            return self.core.handle(now, failed);
        };
        match self.insert(now, conn, stream, tls.into(), addr, true) {
            Some(key) if probe => {
                if let Some(e) = self.entries.get_mut(key) {
                    e.conn.probe_only();
                }
            }
            Some(_) => {}
            None => self.core.handle(now, failed),
        }
    }

    /// Marks `key` to be flushed and checked in this wake-up's sweep.
    fn touch(&mut self, key: usize) {
        if let Some(e) = self.entries.get_mut(key) {
            if !e.dirty {
                e.dirty = true;
                self.dirty.push(key);
            }
        }
    }

    /// Flushes writes, removes finished connections and updates interest, for the connections
    /// touched in this wake-up; until nothing more is touched (removing a connection gives the
    /// core an input, whose outputs may touch others).
    fn sweep(&mut self, now: Instant) {
        while !self.dirty.is_empty() {
            for key in std::mem::take(&mut self.dirty) {
                let Some(e) = self.entries.get_mut(key) else { continue };
                e.dirty = false;
                self.flush(now, key);
                self.account(now, key);
                let Some(e) = self.entries.get(key) else { continue };
                let closed = e.conn.error().is_some();
                if e.dead || (closed && !e.conn.wants_write()) {
                    self.remove(now, key);
                    continue;
                }
                if closed && self.lingering.get(key).is_none() {
                    // Closed with bytes still queued: they get LINGER to reach a peer that
                    // reads, and the slot is freed even if it never does.
                    self.lingering.set(key, now + LINGER);
                }
                self.update_interest(key);
            }
            self.drain_core(now);
        }
    }

    fn flush(&mut self, now: Instant, key: usize) {
        let Some(e) = self.entries.get_mut(key) else { return };
        while !e.connecting && !e.dead && e.conn.wants_write() {
            if self.writes_paused_until.is_some() {
                return;
            }
            let mut capped = CappedWriter { inner: &mut e.stream, max: self.max_write_bytes };
            match e.conn.write_tls(&mut capped) {
                Ok(n) => {
                    self.stats.bytes_sent += n as u64;
                    self.writes_paused_until = self.global.charge_outbound(now, n as u64);
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return,
                Err(_) => e.dead = true,
            }
        }
    }

    fn remove(&mut self, now: Instant, key: usize) {
        let mut e = self.entries.remove(key);
        let _ = self.poll.registry().deregister(&mut e.stream);
        self.keys.remove(&e.id);
        self.paused.clear(key);
        self.lingering.clear(key);
        self.stalled.clear(key);
        self.frame_deadlines.clear(key);
        self.pending_output = self.pending_output.saturating_sub(e.accounted);
        let partial = e.partial.map_or(0, |p| p.1);
        self.partial_bytes = self.partial_bytes.saturating_sub(partial);
        self.partial_held.retain(|&k| k != key);
        // Its budget outlives it (limiter module doc, "Memory across reconnects").
        if let Some(source) = e.remote.and_then(|a| Source::of_ip(a.ip())) {
            self.budgets.remember(now, source, &e.limiter);
        }
        if let Some(peer) = e.conn.peer() {
            self.budgets.remember(now, Source::Id(peer.node_id), &e.limiter);
        }
        let cause = e.conn.error().map_or(CloseCause::TcpFailed, |err| err.cause());
        if cause.is_misbehaviour() {
            self.stats.closed_misbehaving += 1;
        }
        self.core.handle(now, Input::Closed { conn: e.id, cause });
        if partial > 0 {
            self.release_partial_holds(now);
        }
    }

    fn update_interest(&mut self, key: usize) {
        let Some(e) = self.entries.get_mut(key) else { return };
        let wanted = if e.connecting || e.conn.wants_write() {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        if wanted != e.interest {
            let token = Token(key + FIRST_CONN);
            if self.poll.registry().reregister(&mut e.stream, token, wanted).is_err() {
                e.dead = true;
            }
            e.interest = wanted;
        }
    }
}

/// Limits each `write` to `max` bytes, so one write never exceeds the outbound burst.
struct CappedWriter<'a> {
    inner: &'a mut TcpStream,
    max: usize,
}

impl io::Write for CappedWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len().min(self.max.max(1));
        self.inner.write(&buf[..n])
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A connection's high-water mark: its write queue bound less one largest frame, so that the
/// answer which takes it over the mark still fits the queue.
fn high_water(config: &ConnConfig) -> usize {
    let frame = config.max_frame_bytes + crate::wire::frame::HEADER_BYTES;
    config.max_write_queue_bytes.saturating_sub(frame).max(MIN_HIGH_WATER_BYTES)
}

/// The lowest high-water mark: a connection with less queued is always read.
const MIN_HIGH_WATER_BYTES: usize = 16 * 1024;

fn clamp_usize(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// Creates the waker for `poll`, shared with the `Handle`.
pub(crate) fn waker(poll: &Poll) -> io::Result<Arc<Waker>> {
    Waker::new(poll.registry(), WAKER).map(Arc::new)
}
