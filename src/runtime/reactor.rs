//! The reactor: one mio `Poll`, the listener, a slab of connections and a `Waker`.
//!
//! It turns readiness into `NodeCore` inputs and core outputs into socket writes, and makes
//! no protocol decision of its own (DESIGN.md, "The shape", item 2). Per wake-up it reads the
//! clock once, drains accepts and reads until `WouldBlock`, hands frames to the core, carries
//! out the core's outputs, flushes writes, closes finished connections and recomputes each
//! connection's interest. The poll timeout is the earliest deadline of the core, the
//! connections and the rate limiter.
//!
//! Memory: socket reads go into one pooled read buffer, and every outgoing frame is encoded
//! into a pooled buffer of its size class that returns to the pool (zeroed) as soon as rustls
//! has taken the bytes, so no connection keeps a frame-sized buffer of its own. The pool's cap
//! bounds these buffers together; a frame that cannot get a buffer is not sent and is counted
//! (the core's request timeout then answers for it).
//!
//! Global byte budgets: bytes read and written are charged to the node-wide inbound and
//! outbound token buckets. When one is in debt, no socket is read (or written) until it is
//! repaid; the kernel's socket buffers and TCP flow control then slow the peers down.

use std::collections::HashMap;
use std::io::{self, Read};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;

use crate::core::jobs::{Job, JobId, JobResult};
use crate::core::node::{Command, CommandId, NodeCore, Output, Reply};
use crate::core::peers::ConnId;
use crate::identity::NodeId;
use crate::runtime::buffers::{BufferPool, PooledBuf};
use crate::runtime::limiter::{GlobalLimiter, LimiterConfig, PeerLimiter, Verdict};
use crate::runtime::workers::{Outcome, WorkerPool};
use crate::transport::conn::{ConnConfig, ConnError, ConnEvent, Connection};
use crate::transport::tls::TlsConfig;
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
/// Readiness events taken per `poll` call; more wait for the next call.
const EVENTS_PER_POLL: usize = 256;

/// What the `Handle` sends to the reactor.
pub(crate) enum Control {
    /// An application command and where to send its reply. Boxed, so the bounded channel's
    /// slots stay a few words each whatever the largest command.
    Command(Box<Command>, Sender<Reply>),
    /// Close every connection with Goodbye and stop, within the deadline.
    Shutdown,
}

/// Counters of the reactor, for the metrics layer.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReactorStats {
    /// Inbound connections refused by the admission rate limiter.
    pub refused_rate: u64,
    /// Inbound connections refused by the connection table.
    pub refused_limit: u64,
    /// Connections closed because the peer broke the protocol.
    pub closed_misbehaving: u64,
    /// Connections closed for exceeding their rate limit persistently.
    pub closed_rate_limited: u64,
    /// Frames not sent because the buffer pool refused a buffer.
    pub frames_refused_pool: u64,
    /// Frames not sent because they failed to encode (a local bug or oversized value).
    pub frames_unencodable: u64,
    /// Worker jobs that panicked (a bug; what waited for them times out).
    pub jobs_panicked: u64,
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
    /// The socket failed; drop without flushing.
    dead: bool,
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
    core: NodeCore,
    workers: Workers,
    tls: TlsConfig,
    conn_config: ConnConfig,
    hello: Hello,
    limiter_config: LimiterConfig,
    global: GlobalLimiter,
    control: Receiver<Control>,
    replies: HashMap<u64, Sender<Reply>>,
    next_command: u64,
    pool: BufferPool,
    /// Lent by `pool` for the reactor's lifetime.
    read_buf: PooledBuf,
    max_frame_bytes: usize,
    /// Bytes per socket read: the read buffer, or the inbound budget's burst if smaller.
    max_read_bytes: usize,
    /// Bytes per socket write: the outbound budget's burst.
    max_write_bytes: usize,
    /// The global inbound budget is in debt: no reads before then.
    reads_paused_until: Option<Instant>,
    /// The global outbound budget is in debt: no writes before then.
    writes_paused_until: Option<Instant>,
    stats: ReactorStats,
    max_entries: usize,
    shutdown_at: Option<Instant>,
    shutdown_timeout: Duration,
}

/// The worker pool as the reactor uses it: jobs and results carry the core's job id.
pub(crate) type Workers = WorkerPool<(u64, Job), (u64, JobResult)>;

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
    pub max_entries: usize,
    pub shutdown_timeout: Duration,
    pub buffer_pool_bytes: usize,
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
        let max_write_bytes = clamp_usize(p.limiter_config.global_outbound_bytes_burst);
        Ok(Reactor {
            poll: p.poll,
            listener: p.listener,
            entries: Slab::new(),
            keys: HashMap::new(),
            core: p.core,
            workers: p.workers,
            tls: p.tls,
            conn_config: p.conn_config,
            hello: p.hello,
            global: GlobalLimiter::new(&p.limiter_config, now),
            limiter_config: p.limiter_config,
            control: p.control,
            replies: HashMap::new(),
            next_command: 0,
            pool,
            read_buf,
            max_frame_bytes,
            max_read_bytes,
            max_write_bytes,
            reads_paused_until: None,
            writes_paused_until: None,
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
            let timeout = self.next_deadline().map(|d| d.saturating_duration_since(Instant::now()));
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
            self.drain_jobs(now);
            self.on_timers(now);
            self.drain_core(now);
            self.sweep(now);
            if self.shutdown_at.is_some_and(|at| self.entries.is_empty() || now >= at) {
                return;
            }
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        let conns = self.entries.iter().filter_map(|(_, e)| {
            let paused = e.paused_until;
            [e.conn.next_deadline(), paused].into_iter().flatten().min()
        });
        let budgets = [self.reads_paused_until, self.writes_paused_until];
        conns
            .chain(self.core.next_deadline())
            .chain(self.shutdown_at)
            .chain(budgets.into_iter().flatten())
            .min()
    }

    fn accept(&mut self, now: Instant) {
        loop {
            match self.listener.accept() {
                Ok((stream, addr)) => self.on_accepted(now, stream, addr),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // WouldBlock: drained. Other errors (EMFILE...) are per-connection; retry on
                // the next readiness event rather than spinning.
                Err(_) => return,
            }
        }
    }

    fn on_accepted(&mut self, now: Instant, stream: TcpStream, addr: SocketAddr) {
        if self.shutdown_at.is_some() || self.entries.len() >= self.max_entries {
            self.stats.refused_limit += 1;
            return;
        }
        if self.global.admit_connection(now, addr.ip()).is_err() {
            self.stats.refused_rate += 1;
            return;
        }
        let Ok(id) = self.core.handle_inbound(now, addr) else {
            self.stats.refused_limit += 1;
            return;
        };
        match self.tls.accept() {
            Ok(tls) => self.insert(now, id, stream, tls.into(), false),
            Err(e) => self.core.handle_closed(now, id, &ConnError::Tls(e)),
        }
    }

    fn insert(
        &mut self,
        now: Instant,
        id: ConnId,
        mut stream: TcpStream,
        tls: rustls::Connection,
        connecting: bool,
    ) {
        let _ = stream.set_nodelay(true);
        let conn = Connection::new(now, tls, self.hello.clone(), self.conn_config.clone());
        let slot = self.entries.vacant_entry();
        let interest = Interest::READABLE | Interest::WRITABLE;
        if self
            .poll
            .registry()
            .register(&mut stream, Token(slot.key() + FIRST_CONN), interest)
            .is_err()
        {
            return self.core.handle_closed(now, id, &ConnError::TcpFailed);
        }
        let limiter = PeerLimiter::new(&self.limiter_config, now);
        let key = slot.key();
        slot.insert(Box::new(Entry {
            id,
            stream,
            conn,
            connecting,
            limiter,
            paused_until: None,
            dead: false,
            interest,
        }));
        self.keys.insert(id, key);
    }

    fn drain_control(&mut self, now: Instant) {
        while let Ok(msg) = self.control.try_recv() {
            match msg {
                Control::Command(command, reply_to) => {
                    let id = self.next_command;
                    self.next_command += 1;
                    self.replies.insert(id, reply_to);
                    self.core.handle_command(now, CommandId(id), *command);
                }
                Control::Shutdown => self.begin_shutdown(now),
            }
        }
    }

    fn begin_shutdown(&mut self, now: Instant) {
        self.shutdown_at = Some(now + self.shutdown_timeout);
        for (_, e) in self.entries.iter_mut() {
            e.conn.close(GoodbyeReason::Shutdown);
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
        if !e.connecting && !e.dead {
            self.read(now, key);
        }
    }

    /// Reads until `WouldBlock` (or until the rate limiter pauses the peer) and hands every
    /// event to the core.
    fn read(&mut self, now: Instant, key: usize) {
        loop {
            if self.reads_paused_until.is_some() {
                return;
            }
            let Some(e) = self.entries.get_mut(key) else { return };
            if e.paused_until.is_some() || e.dead || e.conn.error().is_some() {
                return;
            }
            // One read never takes more than the budget's burst, so the bytes handled by time
            // t stay below burst + rate * t + one read.
            let buf = self.read_buf.as_mut_vec();
            let cap = buf.capacity();
            buf.resize(cap.min(self.max_read_bytes).max(1), 0);
            match e.stream.read(buf) {
                Ok(n) => {
                    self.reads_paused_until = self.global.charge_inbound(now, n as u64);
                    e.conn.handle_input(now, &self.read_buf.as_slice()[..n]);
                    self.deliver_events(now, key);
                    if n == 0 {
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

    fn deliver_events(&mut self, now: Instant, key: usize) {
        let Some(e) = self.entries.get_mut(key) else { return };
        let id = e.id;
        while let Some(event) = e.conn.poll_event() {
            match event {
                ConnEvent::Established { peer, hello } => {
                    self.core.handle_established(now, id, peer.node_id, hello)
                }
                ConnEvent::Message { msg, frame_bytes } => {
                    match e.limiter.on_frame(now, frame_bytes) {
                        Verdict::Allow => self.core.handle_message(now, id, msg),
                        Verdict::Slow { until } => {
                            e.paused_until = Some(until);
                            self.core.handle_message(now, id, msg);
                        }
                        Verdict::Disconnect => {
                            self.stats.closed_rate_limited += 1;
                            e.conn.close(GoodbyeReason::RateLimited);
                        }
                    }
                }
                ConnEvent::Goodbye(_) => {}
            }
        }
    }

    fn on_timers(&mut self, now: Instant) {
        let reads_resume = self.reads_paused_until.is_some_and(|at| at <= now);
        if reads_resume {
            self.reads_paused_until = None;
        }
        if self.writes_paused_until.is_some_and(|at| at <= now) {
            self.writes_paused_until = None; // `sweep` flushes every connection
        }
        let keys: Vec<usize> = self.entries.iter().map(|(k, _)| k).collect();
        for key in keys {
            let Some(e) = self.entries.get_mut(key) else { continue };
            e.conn.handle_timeout(now);
            let peer_resumes = e.paused_until.is_some_and(|at| at <= now);
            if peer_resumes {
                e.paused_until = None;
            }
            // Edge-triggered: bytes that arrived while paused raise no new event.
            if (peer_resumes || reads_resume) && !e.connecting {
                self.read(now, key);
            }
        }
        self.core.handle_timeout(now);
    }

    fn drain_core(&mut self, now: Instant) {
        while let Some(output) = self.core.poll_output() {
            match output {
                Output::Dial { conn, peer, addr } => self.dial(now, conn, peer, addr),
                Output::Send { conn, msg } => self.send(conn, &msg),
                Output::Disconnect { conn, reason } => {
                    if let Some(e) = self.entry_mut(conn) {
                        e.conn.close(reason);
                    }
                }
                Output::Reply { id, reply } => {
                    if let Some(tx) = self.replies.remove(&id.0) {
                        let _ = tx.try_send(reply); // the caller may have timed out and left
                    }
                }
                Output::Event(_) => {}
                Output::Job { id, job } => {
                    // A full queue is backpressure: the core answers what waited `Overloaded`.
                    if self.workers.submit((id.0, job)).is_err() {
                        self.core.handle_job_refused(now, id);
                    }
                }
            }
        }
    }

    /// Hands finished worker jobs to the core. Workers wake the poll after each result.
    fn drain_jobs(&mut self, now: Instant) {
        while let Some(outcome) = self.workers.try_recv() {
            match outcome {
                Outcome::Done((id, result)) => self.core.handle_job_done(now, JobId(id), result),
                Outcome::Panicked { .. } => self.stats.jobs_panicked += 1,
            }
        }
    }

    /// Encodes `msg` into a pooled buffer and queues it on `conn`.
    fn send(&mut self, conn: ConnId, msg: &Message) {
        let Some(&key) = self.keys.get(&conn) else { return };
        let Ok(len) = codec::payload_len(msg) else {
            self.stats.frames_unencodable += 1;
            return;
        };
        let Ok(mut buf) = self.pool.acquire(len) else {
            self.stats.frames_refused_pool += 1;
            return;
        };
        if codec::encode_payload(msg, self.max_frame_bytes, buf.as_mut_vec()).is_err() {
            self.stats.frames_unencodable += 1;
        } else if let Some(e) = self.entries.get_mut(key) {
            // A failure is sticky in the connection and ends it.
            let _ = e.conn.send_payload(buf.as_slice());
        }
        self.pool.release(buf);
    }

    fn dial(&mut self, now: Instant, conn: ConnId, peer: NodeId, addr: SocketAddr) {
        let stream = match TcpStream::connect(addr) {
            Ok(s) => s,
            Err(_) => return self.core.handle_closed(now, conn, &ConnError::TcpFailed),
        };
        match self.tls.dial(peer) {
            Ok(tls) => self.insert(now, conn, stream, tls.into(), true),
            Err(e) => self.core.handle_closed(now, conn, &ConnError::Tls(e)),
        }
    }

    /// Flushes writes, removes finished connections and updates interest.
    fn sweep(&mut self, now: Instant) {
        let keys: Vec<usize> = self.entries.iter().map(|(k, _)| k).collect();
        for key in keys {
            self.flush(now, key);
            let Some(e) = self.entries.get(key) else { continue };
            let finished = e.dead || (e.conn.error().is_some() && !e.conn.wants_write());
            if finished {
                self.remove(now, key);
            } else {
                self.update_interest(key);
            }
        }
        // Removing connections may have produced outputs (replies, Disconnect).
        self.drain_core(now);
    }

    fn flush(&mut self, now: Instant, key: usize) {
        let Some(e) = self.entries.get_mut(key) else { return };
        while !e.connecting && !e.dead && e.conn.wants_write() {
            if self.writes_paused_until.is_some() {
                return;
            }
            let mut capped = CappedWriter { inner: &mut e.stream, max: self.max_write_bytes };
            match e.conn.write_tls(&mut capped) {
                Ok(n) => self.writes_paused_until = self.global.charge_outbound(now, n as u64),
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
        let why = match e.conn.error() {
            Some(err) => err.clone(),
            None => ConnError::TcpFailed,
        };
        if why.is_peer_misbehaviour() {
            self.stats.closed_misbehaving += 1;
        }
        self.core.handle_closed(now, e.id, &why);
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

    fn entry_mut(&mut self, conn: ConnId) -> Option<&mut Entry> {
        let key = *self.keys.get(&conn)?;
        self.entries.get_mut(key).map(|e| &mut **e)
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

fn clamp_usize(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// Creates the waker for `poll`, shared with the `Handle`.
pub(crate) fn waker(poll: &Poll) -> io::Result<Arc<Waker>> {
    Waker::new(poll.registry(), WAKER).map(Arc::new)
}
