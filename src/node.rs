//! The public API: [`Node::start`] runs a node on its own reactor thread; a [`Handle`] makes
//! blocking calls into it from any thread.
//!
//! A `Handle` sends a command over a bounded channel, wakes the reactor, and waits for the
//! reply with a timeout. A full channel is an immediate [`CallError::Busy`], never a block.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};
use mio::{Poll, Waker};

use crate::addr::PeerAddr;
use crate::bytes::ByteBuf;
use crate::config::{Config, ConfigError};
use crate::core::{
    Command, ConnectError, Event, NodeCore, PeerSummary, PingInfo, Reply, RequestError,
};
use crate::gossip::GossipError;
use crate::identity::{IdentityError, Keypair, NodeId};
use crate::kad::dht::{
    DhtCommand, DhtError, DhtReply, FoundPeers, FoundProviders, FoundRecord, Published,
};
use crate::kad::lookup::LookupStats;
use crate::protocol::author_keys::{self, AuthorKeys};
use crate::protocol::jobs::{self, Job, JobId};
use crate::restart::{self, Restored};
pub use crate::runtime::reactor::MAX_EVENT_SUBSCRIBERS;
use crate::runtime::reactor::{self, Control, Reactor, ReactorParts};
use crate::runtime::snapshot::Snapshot;
use crate::runtime::workers::WorkerPool;
use crate::store::{Log, LogConfig, Recovery};
use crate::transport::tls::{TlsConfig, TlsSetupError};
use crate::wire::messages::{
    Hello, Key, MutableRecord, PeerInfo, Record, FEATURE_GOSSIP, FEATURE_KAD, PROTOCOL_VERSION,
};

mod pubsub;

pub use pubsub::Subscription;

/// A running node. Dropping it shuts it down.
#[derive(Debug)]
pub struct Node {
    handle: Handle,
    thread: Option<JoinHandle<()>>,
    id: NodeId,
    local_addr: SocketAddr,
    restored: Restored,
}

/// A cheap, cloneable way to call into a running node from any thread.
#[derive(Clone)]
pub struct Handle {
    control: Sender<Control>,
    waker: Arc<Waker>,
    /// Disconnected once the reactor is gone: a call racing the shutdown hears `Stopped` at
    /// once instead of waiting out its timeout for a reply that will never come (its request
    /// may sit in the control queue, which outlives the reactor while handles exist).
    alive: Receiver<()>,
    call_timeout: Duration,
    event_queue: usize,
    /// Deliveries each subscription holds before the oldest are dropped
    /// (`gossip.subscription_queue`).
    subscription_queue: usize,
    /// Gossip's share of the handle: the key messages are signed with, their sequence
    /// numbers, the validators.
    pubsub: Arc<pubsub::Publisher>,
}

impl Node {
    /// Binds the listener, starts the reactor thread, and begins dialling the bootstrap peers.
    pub fn start(config: Config) -> Result<Node, StartError> {
        config.validate().map_err(StartError::Config)?;
        let keypair = match config.keypair.clone() {
            Some(k) => k,
            None => Keypair::generate_with_pow(config.id_pow_bits).map_err(StartError::Identity)?,
        };
        let id = keypair.node_id();
        let tls = TlsConfig::new(&keypair, config.id_pow_bits).map_err(StartError::Tls)?;
        let poll = Poll::new().map_err(StartError::Io)?;
        let waker = reactor::waker(&poll).map_err(StartError::Io)?;
        let listener = mio::net::TcpListener::bind(config.listen).map_err(StartError::Io)?;
        let local_addr = listener.local_addr().map_err(StartError::Io)?;
        let (control_tx, control_rx) = bounded(config.command_queue);
        let (alive_tx, alive_rx) = bounded(0);
        let seed = match config.rng_seed {
            Some(s) => s,
            None => os_seed().map_err(StartError::Identity)?,
        };
        let hello = hello(&config, announced(&config, local_addr));
        let log = open_log(&config)?;
        let wake = Arc::clone(&waker);
        let job_log = log.as_ref().map(|(log, _)| Arc::clone(log));
        let publisher = Arc::new(pubsub::Publisher::new(keypair.clone(), config.gossip.is_some()));
        let job_validators = Arc::clone(&publisher);
        let author_keys = Arc::new(AuthorKeys::new(author_keys::DEFAULT_SLOTS));
        let job_keys = Arc::clone(&author_keys);
        let workers = WorkerPool::start(
            config.workers,
            // A job that panics still answers, with nothing: its owner hears it was refused.
            Arc::new(move |(id, job): (JobId, Job)| {
                let log = job_log.as_deref();
                let validators = &*job_validators;
                let find = move |topic: &str| validators.validator(topic);
                let keys = Some(&*job_keys);
                let result =
                    std::panic::catch_unwind(move || jobs::run_with(job, log, &find, keys));
                (id, result.ok())
            }),
            Arc::new(move || {
                let _ = wake.wake();
            }),
        )
        .map_err(|e| StartError::Io(io::Error::other(e.to_string())))?;
        let core_config = config.core_config(seed, hello.listen_addrs.clone());
        let max_entries = config.limits.max_connections + config.limits.max_inbound;
        let mut core = NodeCore::new(id, core_config);
        let restored = match &log {
            Some((log, recovery)) => {
                let now = std::time::Instant::now();
                let restored = restart::restore(&mut core, log, now, config.max_restored_peers)
                    .map_err(|e| StartError::Store(e.to_string()))?;
                Restored { recovery: Some(recovery.clone()), ..restored }
            }
            None => Restored::default(),
        };
        let parts = ReactorParts {
            poll,
            listener,
            core,
            workers,
            tls,
            conn_config: config.conn_config(),
            hello,
            limiter_config: config.limiter,
            control: control_rx,
            alive: alive_tx,
            log: log.as_ref().map(|(log, _)| Arc::clone(log)),
            author_keys,
            max_entries,
            shutdown_timeout: config.shutdown_timeout,
            buffer_pool_bytes: config.buffer_pool_bytes,
            max_pending_output_bytes: config.max_pending_output_bytes,
            stall_timeout: config.stall_timeout,
            max_partial_frame_bytes: config.max_partial_frame_bytes,
            frame_timeout: config.frame_timeout,
            max_topics: config.gossip.as_ref().map_or(0, |g| g.max_topics),
        };
        let reactor = Reactor::new(parts).map_err(StartError::Io)?;
        let thread = std::thread::Builder::new()
            .name(format!("petrel-reactor-{id}"))
            .spawn(move || reactor.run())
            .map_err(StartError::Io)?;
        let handle = Handle {
            control: control_tx,
            waker,
            alive: alive_rx,
            call_timeout: config.call_timeout,
            event_queue: config.event_queue,
            subscription_queue: config.gossip.as_ref().map_or(0, |g| g.subscription_queue),
            pubsub: publisher,
        };
        // The DHT dials the contacts, and again while its table stays empty (`kad::join`).
        let contacts = config.bootstrap.iter().chain(&restored.peers);
        let contacts = contacts.map(|p| PeerInfo { id: p.id, addrs: vec![p.addr] }).collect();
        handle.join_async(contacts);
        Ok(Node { handle, thread: Some(thread), id, local_addr, restored })
    }

    /// A handle for calls into the node.
    pub fn handle(&self) -> Handle {
        self.handle.clone()
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The address the node listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// `NODEID@address`, for others to dial.
    pub fn peer_addr(&self) -> PeerAddr {
        PeerAddr { id: self.id, addr: self.local_addr }
    }

    /// What the node read back from its data directory at start.
    pub fn restored(&self) -> &Restored {
        &self.restored
    }

    /// Says Goodbye to every peer and stops; bounded by `Config::shutdown_timeout`.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        let Some(thread) = self.thread.take() else { return };
        // The latest peers to the log first, so a restart finds them (bounded: a stuck disk
        // must not hold up the stop).
        if self.restored.recovery.is_some() {
            let _ = self.handle.flush_timeout(FLUSH_ON_SHUTDOWN);
        }
        // A full control queue cannot refuse this: shutdown waits for room (bounded by the
        // reactor draining it on every wake-up).
        if self.handle.control.send(Control::Shutdown).is_ok() {
            let _ = self.handle.waker.wake();
        }
        let _ = thread.join();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Handle {
    /// Connects to `peer` (or confirms an existing connection), with the default timeout.
    pub fn connect(&self, peer: PeerAddr) -> Result<NodeId, CallError> {
        self.connect_timeout(peer, self.call_timeout)
    }

    /// Connects to `peer`, waiting at most `timeout`.
    pub fn connect_timeout(&self, peer: PeerAddr, timeout: Duration) -> Result<NodeId, CallError> {
        match self.call(Command::Connect { peer: peer.id, addr: peer.addr }, timeout)? {
            Reply::Connected(r) => r.map_err(CallError::Connect),
            _ => Err(CallError::Stopped),
        }
    }

    /// Pings a connected peer, with the default timeout.
    pub fn ping(&self, peer: NodeId) -> Result<PingInfo, CallError> {
        self.ping_timeout(peer, self.call_timeout)
    }

    /// Pings a connected peer, waiting at most `timeout`.
    pub fn ping_timeout(&self, peer: NodeId, timeout: Duration) -> Result<PingInfo, CallError> {
        match self.call(Command::Ping { peer }, timeout)? {
            Reply::Pong(r) => r.map_err(CallError::Request),
            _ => Err(CallError::Stopped),
        }
    }

    /// Subscribes to the node's events (a peer connected, a peer left), from now on, oldest
    /// first. Each subscription has its own queue of `Config::event_queue` events, allocated
    /// only when asked for; when its receiver does not take them, newer events are dropped
    /// for it and counted. A dropped receiver ends its subscription. At most
    /// [`MAX_EVENT_SUBSCRIBERS`] at once: beyond that, `Busy`.
    pub fn events(&self) -> Result<Receiver<Event>, CallError> {
        let (tx, rx) = bounded(self.event_queue.max(1));
        let (ok_tx, ok_rx) = bounded(1);
        self.send(Control::Subscribe(tx, ok_tx))?;
        match self.wait(&ok_rx, self.call_timeout)? {
            true => Ok(rx),
            false => Err(CallError::Busy),
        }
    }

    /// Every counter and gauge of the node, gathered at one instant.
    pub fn snapshot(&self) -> Result<Snapshot, CallError> {
        let (tx, rx) = bounded(1);
        self.send(Control::Snapshot(tx))?;
        self.wait(&rx, self.call_timeout)
    }

    /// The connected peers.
    pub fn peers(&self) -> Result<Vec<PeerSummary>, CallError> {
        match self.call(Command::Peers, self.call_timeout)? {
            Reply::Peers(list) => Ok(list),
            _ => Err(CallError::Stopped),
        }
    }

    /// The k closest peers to `target` that answered an iterative lookup.
    pub fn find_node(&self, target: NodeId) -> Result<FoundPeers, CallError> {
        match self.dht(DhtCommand::FindNode { target })? {
            DhtReply::FindNode(r) => r.map_err(CallError::Dht),
            _ => Err(CallError::Stopped),
        }
    }

    /// Joins the network: a lookup of our own id. The node also does this by itself when its
    /// first peer connects; calling it waits for a complete one.
    pub fn bootstrap(&self) -> Result<LookupStats, CallError> {
        match self.dht(DhtCommand::Bootstrap)? {
            DhtReply::Bootstrap(r) => r.map_err(CallError::Dht),
            _ => Err(CallError::Stopped),
        }
    }

    /// Stores `value` as an immutable record under `SHA-256(value)` on the k closest peers
    /// and locally; the key is in the answer.
    pub fn put(&self, value: Vec<u8>) -> Result<Published, CallError> {
        self.put_record(Record::Immutable { value: ByteBuf::from(value) }, None)
    }

    /// Stores a record (a mutable one signed with `MutableRecord::sign`). `expected_seq`:
    /// holders store a mutable record only over exactly this sequence number.
    pub fn put_record(
        &self,
        record: Record,
        expected_seq: Option<u64>,
    ) -> Result<Published, CallError> {
        match self.dht(DhtCommand::Put { record, expected_seq })? {
            DhtReply::Put(r) => r.map_err(CallError::Dht),
            _ => Err(CallError::Stopped),
        }
    }

    /// Signs `value` as the mutable record (`keypair`, `salt`, `seq`) and stores it like
    /// [`Handle::put_record`]; its key is `SHA-256(public key ‖ salt)`.
    pub fn put_mutable(
        &self,
        keypair: &Keypair,
        salt: Vec<u8>,
        seq: u64,
        value: Vec<u8>,
        expected_seq: Option<u64>,
    ) -> Result<Published, CallError> {
        let record = MutableRecord::sign(keypair, salt, seq, value);
        self.put_record(Record::Mutable(record), expected_seq)
    }

    /// The record under `key`: the first valid immutable copy, or the highest valid mutable
    /// sequence number among the answers. `None` when no peer had a valid one.
    pub fn get(&self, key: Key) -> Result<Option<FoundRecord>, CallError> {
        match self.dht(DhtCommand::Get { key })? {
            DhtReply::Get(Ok(found)) => Ok(Some(found)),
            DhtReply::Get(Err(DhtError::NotFound(_))) => Ok(None),
            DhtReply::Get(Err(e)) => Err(CallError::Dht(e)),
            _ => Err(CallError::Stopped),
        }
    }

    /// Announces this node as a provider of `key` to the k closest peers.
    pub fn provide(&self, key: Key) -> Result<Published, CallError> {
        match self.dht(DhtCommand::Provide { key })? {
            DhtReply::Provide(r) => r.map_err(CallError::Dht),
            _ => Err(CallError::Stopped),
        }
    }

    /// Providers of `key` (at most k) and the lookup's figures; the list is empty when none
    /// was found.
    pub fn providers(&self, key: Key) -> Result<FoundProviders, CallError> {
        match self.dht(DhtCommand::Providers { key })? {
            DhtReply::Providers(Ok(found)) => Ok(found),
            DhtReply::Providers(Err(DhtError::NotFound(stats))) => {
                Ok(FoundProviders { providers: Vec::new(), stats })
            }
            DhtReply::Providers(Err(e)) => Err(CallError::Dht(e)),
            _ => Err(CallError::Stopped),
        }
    }

    /// Whether this node's own store holds an unexpired record under `key`.
    pub fn holds(&self, key: Key) -> Result<bool, CallError> {
        match self.dht(DhtCommand::Holds { key })? {
            DhtReply::Holds(held) => Ok(held),
            _ => Err(CallError::Stopped),
        }
    }

    /// Writes the routing table to the node's log now and waits until it, and every write
    /// queued before it, is there (a no-op without a data directory). `Node::shutdown` does
    /// this first, bounded by `FLUSH_ON_SHUTDOWN`.
    pub fn flush(&self) -> Result<bool, CallError> {
        self.flush_timeout(self.call_timeout)
    }

    fn flush_timeout(&self, timeout: Duration) -> Result<bool, CallError> {
        match self.call(Command::Dht(DhtCommand::Flush), timeout)? {
            Reply::Dht(DhtReply::Flushed(ok)) => Ok(ok),
            _ => Err(CallError::Stopped),
        }
    }

    fn dht(&self, command: DhtCommand) -> Result<DhtReply, CallError> {
        match self.call(Command::Dht(command), self.call_timeout)? {
            Reply::Dht(reply) => Ok(reply),
            _ => Err(CallError::Stopped),
        }
    }

    /// Queues `msg` for the reactor and wakes it; never blocks.
    fn send(&self, msg: Control) -> Result<(), CallError> {
        match self.control.try_send(msg) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => return Err(CallError::Busy),
            Err(TrySendError::Disconnected(_)) => return Err(CallError::Stopped),
        }
        self.waker.wake().map_err(|_| CallError::Stopped)
    }

    fn join_async(&self, contacts: Vec<PeerInfo>) {
        let (tx, _rx) = bounded(1);
        let command = Command::Dht(DhtCommand::Join { contacts });
        if self.control.try_send(Control::Command(Box::new(command), tx)).is_ok() {
            let _ = self.waker.wake();
        }
    }

    fn call(&self, command: Command, timeout: Duration) -> Result<Reply, CallError> {
        let (tx, rx) = bounded(1);
        self.send(Control::Command(Box::new(command), tx))?;
        self.wait(&rx, timeout)
    }

    /// The reply on `rx`; `Stopped` as soon as the reactor is gone, `Timeout` after `timeout`.
    fn wait<T>(&self, rx: &Receiver<T>, timeout: Duration) -> Result<T, CallError> {
        crossbeam_channel::select! {
            recv(rx) -> reply => reply.map_err(|_| CallError::Stopped),
            // Never sent on: ready only when the reactor drops its end. A reply sent just
            // before that is still taken.
            recv(self.alive) -> _ => rx.try_recv().map_err(|_| CallError::Stopped),
            default(timeout) => Err(CallError::Timeout),
        }
    }
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handle").field("call_timeout", &self.call_timeout).finish()
    }
}

/// How long `Node::shutdown` waits for the routing table to reach the log.
const FLUSH_ON_SHUTDOWN: Duration = Duration::from_millis(500);

fn hello(config: &Config, listen_addrs: Vec<SocketAddr>) -> Hello {
    Hello {
        version: PROTOCOL_VERSION,
        network: config.network.clone(),
        id_pow_bits: config.id_pow_bits,
        features: if config.gossip.is_some() { FEATURE_KAD | FEATURE_GOSSIP } else { FEATURE_KAD },
        agent: config.agent.clone(),
        listen_addrs,
    }
}

/// Where peers can reach us: `config.announce`; else the bound address; else, bound to an
/// unspecified address, the address of the interface that routes to the first bootstrap peer
/// with the bound port (a connected UDP socket asks the kernel's routing table and sends
/// nothing); else nothing, and the DHT refuses to announce us as a provider.
fn announced(config: &Config, local_addr: SocketAddr) -> Vec<SocketAddr> {
    if !config.announce.is_empty() {
        return config.announce.clone();
    }
    if !local_addr.ip().is_unspecified() {
        return vec![local_addr];
    }
    let Some(first) = config.bootstrap.first() else { return Vec::new() };
    let unspecified = SocketAddr::new(local_addr.ip(), 0);
    let routed = std::net::UdpSocket::bind(unspecified)
        .and_then(|udp| udp.connect(first.addr).and_then(|()| udp.local_addr()));
    match routed {
        Ok(route) if !route.ip().is_unspecified() => {
            vec![SocketAddr::new(route.ip(), local_addr.port())]
        }
        _ => Vec::new(),
    }
}

/// Opens (or creates) the log in `config.data_dir`, recovering it; `None` without one.
fn open_log(config: &Config) -> Result<Option<(Arc<Log>, Recovery)>, StartError> {
    let Some(dir) = &config.data_dir else { return Ok(None) };
    let log_config = LogConfig {
        sync: config.sync,
        batch_interval: config.sync_batch_interval,
        max_bytes: config.store_max_bytes,
        ..LogConfig::new(dir.clone())
    };
    let (log, recovery) =
        Log::open(log_config, jobs::unix_ms()).map_err(|e| StartError::Store(e.to_string()))?;
    Ok(Some((Arc::new(log), recovery)))
}

fn os_seed() -> Result<u64, IdentityError> {
    let mut b = [0u8; 8];
    getrandom::getrandom(&mut b).map_err(|e| IdentityError::Entropy(e.to_string()))?;
    Ok(u64::from_le_bytes(b))
}

/// Why a node could not start.
#[derive(Debug)]
pub enum StartError {
    /// A setting is out of its range.
    Config(ConfigError),
    /// Generating or loading the identity failed.
    Identity(IdentityError),
    /// Building the TLS configuration failed.
    Tls(TlsSetupError),
    /// Binding, polling or spawning failed.
    Io(io::Error),
    /// The data directory's log could not be opened or read back.
    Store(String),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Config(e) => e.fmt(f),
            Self::Identity(e) => e.fmt(f),
            Self::Tls(e) => e.fmt(f),
            Self::Io(e) => write!(f, "cannot start node: {e}"),
            Self::Store(e) => write!(f, "cannot open the data directory's log: {e}"),
        }
    }
}

impl std::error::Error for StartError {}

/// Why a `Handle` call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// The node's command queue is full; retry later.
    Busy,
    /// No reply within the timeout.
    Timeout,
    /// The node has stopped.
    Stopped,
    /// The connection failed.
    Connect(ConnectError),
    /// The request failed.
    Request(RequestError),
    /// The DHT command failed.
    Dht(DhtError),
    /// The gossip command failed.
    Gossip(GossipError),
    /// The node does not run the protocol the call needs (gossip turned off).
    Unsupported,
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Busy => f.write_str("node busy: command queue full"),
            Self::Timeout => f.write_str("timed out waiting for the node"),
            Self::Stopped => f.write_str("node stopped"),
            Self::Connect(e) => e.fmt(f),
            Self::Request(e) => e.fmt(f),
            Self::Dht(e) => e.fmt(f),
            Self::Gossip(e) => e.fmt(f),
            Self::Unsupported => f.write_str("the node does not run this protocol"),
        }
    }
}

impl std::error::Error for CallError {}
