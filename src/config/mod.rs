//! Every setting of a node and its default, in one place (DESIGN.md, "Limits and resources").
//!
//! [`mod@file`] reads and writes them as TOML, through the table of every setting in [`settings`];
//! [`value`] says how each kind of value is written.

pub mod file;
pub mod settings;
pub mod value;

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use crate::addr::PeerAddr;
use crate::core::{CoreConfig, DiscoveryConfig, PeerLimits};
use crate::gossip::GossipConfig;
use crate::identity::Keypair;
use crate::kad::dht::DhtConfig;
use crate::kad::memstore::StoreConfig;
use crate::runtime::limiter::LimiterConfig;
use crate::runtime::workers::WorkerConfig;
use crate::transport::conn::ConnConfig;
use crate::wire::frame::DEFAULT_MAX_FRAME_BYTES;
use crate::wire::messages::MAX_LISTEN_ADDRS;

/// Default network name.
pub const DEFAULT_NETWORK: &str = "petrel";
/// Default listen address: loopback, OS-assigned port.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:0";
/// Default bytes of TLS output queued per connection before the peer counts as not reading:
/// one largest frame, and room beside it for the small ones.
pub const DEFAULT_MAX_WRITE_QUEUE_BYTES: usize = DEFAULT_MAX_FRAME_BYTES + (64 << 10);
/// Default bound on output queued on all connections together before connections with output
/// queued stop being read.
pub const DEFAULT_MAX_PENDING_OUTPUT_BYTES: usize = 16 << 20;
/// Default time a connection over its high-water mark may take to drain.
pub const DEFAULT_STALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Default bound on bytes of partly received frames, node-wide: eight largest frames.
pub const DEFAULT_MAX_PARTIAL_FRAME_BYTES: usize = 8 << 20;
/// Default time a started frame may take to arrive whole (1 MiB at 100 KB/s).
pub const DEFAULT_FRAME_TIMEOUT: Duration = Duration::from_secs(10);
/// Default request timeout.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Default wait of a peer's request for an answer given later (a STORE whose signature a
/// worker checks); past it the peer is answered `Overloaded`.
pub const DEFAULT_ANSWER_TIMEOUT: Duration = Duration::from_secs(10);
/// Default bound on events waiting for each subscriber (`Handle::events`).
pub const DEFAULT_EVENT_QUEUE: usize = 1024;
/// Default bound on requests in flight.
pub const DEFAULT_MAX_PENDING_REQUESTS: usize = 4096;
/// Default bound on queued application commands.
pub const DEFAULT_COMMAND_QUEUE: usize = 256;
/// Default timeout of a blocking `Handle` call.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(15);
/// Default cap on the reactor's buffer pool: the read buffer plus encode buffers up to the
/// largest (1 MiB) class, with room to spare.
pub const DEFAULT_BUFFER_POOL_BYTES: usize = 4 << 20;
/// Bound on a graceful shutdown.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(2);

/// Default of `Config::sync_batch_interval`.
pub const DEFAULT_SYNC_BATCH_INTERVAL: Duration = Duration::ZERO;
/// Default of `Config::store_max_bytes`: twice the store's value cap, room for compaction.
pub const DEFAULT_STORE_MAX_BYTES: u64 = 256 << 20;
/// Default of `Config::store_hot_bytes`: an eighth of the store's 64 MiB cap.
pub const DEFAULT_STORE_HOT_BYTES: usize = 8 << 20;
/// Default of `Config::metrics_listen`: loopback only, so metrics are not public unless asked.
pub const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:9100";
/// Default of `Config::max_restored_peers`.
pub const DEFAULT_MAX_RESTORED_PEERS: usize = 64;

/// Default of `ControlConfig::max_clients`.
pub const DEFAULT_CONTROL_MAX_CLIENTS: usize = 8;
/// Default of `ControlConfig::request_timeout`.
pub const DEFAULT_CONTROL_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Default of `ControlConfig::write_timeout`.
pub const DEFAULT_CONTROL_WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// The bounds of the control socket (`crate::control`). Here rather than there so the
/// configuration does not depend on the control server, which depends on the node.
#[derive(Debug, Clone)]
pub struct ControlConfig {
    /// Clients served at once; one more is answered `busy` and closed.
    pub max_clients: usize,
    /// From a connection, or from the previous answer, until the next request is whole; a
    /// client that misses it is answered `timeout` and closed.
    pub request_timeout: Duration,
    /// How long an answer (or a streamed message) may wait for the client to read it; a
    /// client that misses it is closed.
    pub write_timeout: Duration,
}

impl Default for ControlConfig {
    fn default() -> ControlConfig {
        ControlConfig {
            max_clients: DEFAULT_CONTROL_MAX_CLIENTS,
            request_timeout: DEFAULT_CONTROL_REQUEST_TIMEOUT,
            write_timeout: DEFAULT_CONTROL_WRITE_TIMEOUT,
        }
    }
}

/// A node's configuration. `Config::default()` is a working loopback node with a fresh key.
#[derive(Debug, Clone)]
pub struct Config {
    /// The node's identity; `None` generates an ephemeral one at start.
    pub keypair: Option<Keypair>,
    /// Where to listen.
    pub listen: SocketAddr,
    /// Where peers reach us, announced in Hello and in provider records. Empty: the listen
    /// address; if that is unspecified (`0.0.0.0`), the address of the interface that routes
    /// to the first bootstrap peer, with the listen port (see `Node::start`).
    pub announce: Vec<SocketAddr>,
    /// Peers to connect to at start.
    pub bootstrap: Vec<PeerAddr>,
    /// Network name (Hello); peers of other networks are refused.
    pub network: String,
    /// Id proof-of-work difficulty required of every peer (and of us).
    pub id_pow_bits: u8,
    /// Agent string sent in Hello.
    pub agent: String,
    /// Maximum frame payload.
    pub max_frame_bytes: usize,
    /// Per-connection write queue bound. A connection with more than this less one largest
    /// frame queued is not read until its output drains (its high-water mark).
    pub max_write_queue_bytes: usize,
    /// Output queued on all connections together above which every connection with output
    /// queued is not read until it drains.
    pub max_pending_output_bytes: usize,
    /// How long a connection over its high-water mark may go without its output draining
    /// before the core closes it as a peer that does not read.
    pub stall_timeout: Duration,
    /// Bytes of partly received frames held on all connections together above which
    /// connections part-way through a frame are not read until it drops.
    pub max_partial_frame_bytes: usize,
    /// How long a started frame may take to arrive whole before the connection is closed.
    pub frame_timeout: Duration,
    /// Cap on the reactor's buffer pool (read and encode buffers); at least the largest frame
    /// plus 64 KiB.
    pub buffer_pool_bytes: usize,
    /// Connection limits, dial backoff, circuit breaker, and every connection deadline:
    /// `connect_timeout` bounds TCP connect, TLS and the Hello exchange together, and
    /// `idle_timeout` an established connection's silence.
    pub limits: PeerLimits,
    /// Token buckets.
    pub limiter: LimiterConfig,
    /// Request timeout.
    pub request_timeout: Duration,
    /// How long a peer's request waits for an answer a protocol gives later.
    pub answer_timeout: Duration,
    /// Requests in flight.
    pub max_pending_requests: usize,
    /// Application commands queued toward the reactor.
    pub command_queue: usize,
    /// Events queued for each subscriber (`Handle::events`).
    pub event_queue: usize,
    /// Default timeout of blocking `Handle` calls.
    pub call_timeout: Duration,
    /// Bound on `Node::shutdown`.
    pub shutdown_timeout: Duration,
    /// Seed of the core's randomness; `None` draws one from the OS.
    pub rng_seed: Option<u64>,
    /// The Kademlia DHT: routing table, lookups, record store, TTLs, maintenance.
    pub dht: DhtConfig,
    /// Gossip; `None` turns it off (the node then neither announces nor serves it).
    pub gossip: Option<GossipConfig>,
    /// How gossip finds its topics' subscribers through the DHT (with gossip on); `None`:
    /// it meets only the peers the node connects to otherwise.
    pub discovery: Option<DiscoveryConfig>,
    /// The worker pool: threads (default 2) and job queue bound (default 1024).
    pub workers: WorkerConfig,
    /// Where records, provider entries and the routing table are kept across restarts
    /// (`DIR/records.log`, proto-spec/store.md). `None`: in memory only.
    pub data_dir: Option<std::path::PathBuf>,
    /// Durability of an acknowledged write: `None` (handed to the OS: survives a crash of
    /// the process), `Batch` (also one fdatasync per batch: survives power loss; the
    /// default), `Always` (an fdatasync per write).
    pub sync: crate::store::SyncMode,
    /// With `sync = batch`, the least time between two fdatasyncs. 0 (the default): a sync
    /// starts as soon as the last one ends, and every write that arrived meanwhile shares it
    /// (a lone writer pays one sync, not the interval).
    pub sync_batch_interval: Duration,
    /// Cap on the log file; beyond it writes are refused `StorageFull`.
    pub store_max_bytes: u64,
    /// Saved routing-table peers dialled at start (most recently saved first), and again while
    /// the routing table is empty; with the bootstrap list, at most 128 (`kad::join`).
    pub max_restored_peers: usize,
    /// With a data directory: value bytes kept in memory (the hot tier); the rest is read
    /// back from the log when asked for. Without one every value stays in memory.
    pub store_hot_bytes: usize,
    /// Where `petrel run` serves Prometheus metrics; `None`: nowhere. `Node::start` does not
    /// serve them: an embedding application decides (see `petrel::metrics`).
    pub metrics_listen: Option<SocketAddr>,
    /// What `petrel run` logs on stderr (`PETREL_LOG` and `--log` override it).
    pub log_level: log::LevelFilter,
    /// The bounds of `petrel run`'s control socket (`DIR/control.sock`).
    pub control: ControlConfig,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            keypair: None,
            // The constant is a valid socket address literal.
            listen: DEFAULT_LISTEN.parse().unwrap_or_else(|_| unreachable!()),
            announce: Vec::new(),
            bootstrap: Vec::new(),
            network: DEFAULT_NETWORK.into(),
            id_pow_bits: 0,
            agent: concat!("petrel/", env!("CARGO_PKG_VERSION")).into(),
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            max_write_queue_bytes: DEFAULT_MAX_WRITE_QUEUE_BYTES,
            max_pending_output_bytes: DEFAULT_MAX_PENDING_OUTPUT_BYTES,
            stall_timeout: DEFAULT_STALL_TIMEOUT,
            max_partial_frame_bytes: DEFAULT_MAX_PARTIAL_FRAME_BYTES,
            frame_timeout: DEFAULT_FRAME_TIMEOUT,
            buffer_pool_bytes: DEFAULT_BUFFER_POOL_BYTES,
            limits: PeerLimits::DEFAULT,
            limiter: LimiterConfig::default(),
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            answer_timeout: DEFAULT_ANSWER_TIMEOUT,
            max_pending_requests: DEFAULT_MAX_PENDING_REQUESTS,
            command_queue: DEFAULT_COMMAND_QUEUE,
            event_queue: DEFAULT_EVENT_QUEUE,
            call_timeout: DEFAULT_CALL_TIMEOUT,
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
            rng_seed: None,
            dht: DhtConfig::default(),
            gossip: Some(GossipConfig::default()),
            discovery: Some(DiscoveryConfig::default()),
            workers: WorkerConfig::default(),
            data_dir: None,
            sync: crate::store::SyncMode::Batch,
            sync_batch_interval: DEFAULT_SYNC_BATCH_INTERVAL,
            store_max_bytes: DEFAULT_STORE_MAX_BYTES,
            max_restored_peers: DEFAULT_MAX_RESTORED_PEERS,
            store_hot_bytes: DEFAULT_STORE_HOT_BYTES,
            metrics_listen: DEFAULT_METRICS_LISTEN.parse().ok(),
            log_level: log::LevelFilter::Info,
            control: ControlConfig::default(),
        }
    }
}

impl Config {
    /// The per-connection settings derived from this configuration.
    pub fn conn_config(&self) -> ConnConfig {
        ConnConfig {
            max_frame_bytes: self.max_frame_bytes,
            max_write_queue_bytes: self.max_write_queue_bytes,
            network: self.network.clone(),
            id_pow_bits: self.id_pow_bits,
        }
    }

    /// The core's settings derived from this configuration; `listen_addrs` are announced to
    /// the DHT as ours.
    pub fn core_config(&self, rng_seed: u64, listen_addrs: Vec<SocketAddr>) -> CoreConfig {
        CoreConfig {
            dht: DhtConfig {
                local_addrs: listen_addrs,
                persist: self.data_dir.is_some(),
                store: match self.data_dir {
                    Some(_) => StoreConfig {
                        hot_max_bytes: self.store_hot_bytes,
                        pin_writes: true,
                        ..self.dht.store
                    },
                    None => self.dht.store,
                },
                ..self.dht.clone()
            },
            gossip: self.gossip.clone(),
            discovery: self.gossip.as_ref().and(self.discovery),
            limits: self.limits,
            request_timeout: self.request_timeout,
            answer_timeout: self.answer_timeout,
            max_pending_requests: self.max_pending_requests,
            max_waiting_commands: self.command_queue,
            max_strikes: self.limiter.max_strikes,
            rng_seed,
        }
    }
}

impl Default for CoreConfig {
    /// The core's settings of `Config::default()`, with seed 0 and no local address.
    fn default() -> CoreConfig {
        Config::default().core_config(0, Vec::new())
    }
}

/// The longest duration a setting may hold: a year. Longer ones are refused, which keeps every
/// `now + duration` far from the end of `Instant`'s range (and a year is "never" for a timer).
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 60 * 60);
/// The smallest frame limit: a Hello at its bounds, and every response of the default limits,
/// fit in it.
pub const MIN_FRAME_BYTES: usize = 16 * 1024;

/// A setting out of its range: which one, its value, and what is allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The setting, as `Config` names it (`limits.idle_timeout`).
    pub key: &'static str,
    /// Its value, as given.
    pub value: String,
    /// What it may be.
    pub allowed: String,
}

impl Config {
    /// Checks every duration, size and count against its range; the first setting out of range
    /// is the error. `Node::start` refuses a configuration this refuses.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let l = &self.limits;
        let d = &self.dht;
        let durations = [
            ("limits.connect_timeout", l.connect_timeout),
            ("limits.idle_timeout", l.idle_timeout),
            ("limits.backoff_base_interval", l.backoff_base_interval),
            ("limits.backoff_max_interval", l.backoff_max_interval),
            ("limits.breaker_open_interval", l.breaker_open_interval),
            ("limits.inbound_prune_idle", l.inbound_prune_idle),
            ("limiter.strike_window", self.limiter.strike_window),
            ("limiter.limiter_retention", self.limiter.limiter_retention),
            ("request_timeout", self.request_timeout),
            ("answer_timeout", self.answer_timeout),
            ("call_timeout", self.call_timeout),
            ("shutdown_timeout", self.shutdown_timeout),
            ("stall_timeout", self.stall_timeout),
            ("dht.record_ttl", d.record_ttl),
            ("dht.provider_ttl", d.provider_ttl),
            ("dht.republish_interval", d.republish_interval),
            ("dht.maintenance_interval", d.maintenance_interval),
            ("dht.routing.refresh_interval", d.routing.refresh_interval),
            ("dht.lookup.request_timeout", d.lookup.request_timeout),
            ("dht.lookup.slow_timeout", d.lookup.slow_timeout),
            ("dht.store.max_ttl", d.store.max_ttl),
            ("dht.store.max_provider_ttl", d.store.max_provider_ttl),
            ("dht.forgery_window", d.forgery_window),
            ("dht.keepalive_interval", d.keepalive_interval),
            ("dht.quality.retention", d.quality.retention),
            ("control.request_timeout", self.control.request_timeout),
            ("control.write_timeout", self.control.write_timeout),
        ];
        for (key, value) in durations {
            check(key, value, value <= MAX_DURATION, "at most a year")?;
        }
        let nonzero = [
            ("limits.connect_timeout", l.connect_timeout),
            ("limits.idle_timeout", l.idle_timeout),
            ("request_timeout", self.request_timeout),
            ("answer_timeout", self.answer_timeout),
            ("call_timeout", self.call_timeout),
            ("stall_timeout", self.stall_timeout),
            ("frame_timeout", self.frame_timeout),
            ("control.request_timeout", self.control.request_timeout),
            ("control.write_timeout", self.control.write_timeout),
        ];
        for (key, value) in nonzero {
            check(key, value, !value.is_zero(), "more than zero")?;
        }
        let counts = [
            ("limits.max_connections", l.max_connections),
            ("limits.max_inbound", l.max_inbound),
            ("limits.max_outbound", l.max_outbound),
            ("limits.max_per_peer", l.max_per_peer),
            ("limits.max_inbound_per_ip", l.max_inbound_per_ip),
            ("limits.max_inbound_per_subnet", l.max_inbound_per_subnet),
            ("max_pending_requests", self.max_pending_requests),
            ("command_queue", self.command_queue),
            ("event_queue", self.event_queue),
            ("workers.threads", self.workers.threads),
            ("workers.queue_capacity", self.workers.queue_capacity),
            ("control.max_clients", self.control.max_clients),
        ];
        for (key, value) in counts {
            check(key, value, value > 0, "at least 1")?;
        }
        // A keepalive that lands after the idle timeout only lets warm connections close and
        // reopen; a zero one would PING at every tick.
        let ok = d.keep_warm == 0 || !d.keepalive_interval.is_zero();
        check("dht.keepalive_interval", d.keepalive_interval, ok, "more than zero")?;
        for addr in &self.announce {
            let dialable = !addr.ip().is_unspecified() && !addr.ip().is_multicast();
            let ok = dialable && addr.port() != 0;
            check("announce", addr, ok, "a dialable address with a port")?;
        }
        let announced = self.announce.len();
        check("announce", announced, announced <= MAX_LISTEN_ADDRS, "at most 8 addresses")?;
        let frame = self.max_frame_bytes;
        let frame_ok =
            (MIN_FRAME_BYTES..=crate::runtime::buffers::MAX_CLASS_BYTES).contains(&frame);
        check("max_frame_bytes", frame, frame_ok, "16 KiB to 1 MiB")?;
        let pool = self.buffer_pool_bytes;
        let pool_ok = pool >= frame.saturating_add(64 * 1024);
        check("buffer_pool_bytes", pool, pool_ok, "at least max_frame_bytes + 64 KiB")?;
        let partial = self.max_partial_frame_bytes;
        check("max_partial_frame_bytes", partial, partial >= frame, "at least max_frame_bytes")?;
        let queue = self.max_write_queue_bytes;
        let queue_ok = queue >= frame + crate::wire::frame::HEADER_BYTES;
        check("max_write_queue_bytes", queue, queue_ok, "at least max_frame_bytes + 4")?;
        d.lookup.validate().map_err(|e| ConfigError {
            key: "dht.lookup",
            value: format!("{:?}", d.lookup),
            allowed: e.to_string(),
        })
    }
}

fn check(
    key: &'static str,
    value: impl fmt::Debug,
    ok: bool,
    allowed: &str,
) -> Result<(), ConfigError> {
    if ok {
        return Ok(());
    }
    Err(ConfigError { key, value: format!("{value:?}"), allowed: allowed.into() })
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "setting {} = {} is out of range: {}", self.key, self.value, self.allowed)
    }
}

impl std::error::Error for ConfigError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_valid() {
        assert_eq!(Config::default().validate(), Ok(()));
    }

    #[test]
    fn an_absurd_duration_is_refused_naming_the_setting() {
        let mut c = Config::default();
        c.limits.idle_timeout = Duration::MAX;
        let e = c.validate().unwrap_err();
        assert_eq!(e.key, "limits.idle_timeout");
        assert!(e.to_string().contains("limits.idle_timeout") && e.to_string().contains("year"));
        let c = Config { request_timeout: Duration::ZERO, ..Config::default() };
        assert_eq!(c.validate().unwrap_err().key, "request_timeout");
        let mut c = Config::default();
        c.dht.republish_interval = Duration::from_secs(u64::MAX);
        assert_eq!(c.validate().unwrap_err().key, "dht.republish_interval");
    }

    #[test]
    fn sizes_and_counts_must_fit_each_other() {
        let c = Config { max_frame_bytes: 2 << 20, ..Config::default() };
        assert_eq!(c.validate().unwrap_err().key, "max_frame_bytes");
        let c = Config { buffer_pool_bytes: 1 << 20, ..Config::default() };
        assert_eq!(c.validate().unwrap_err().key, "buffer_pool_bytes");
        let c = Config { max_write_queue_bytes: 1000, ..Config::default() };
        assert_eq!(c.validate().unwrap_err().key, "max_write_queue_bytes");
        let mut c = Config::default();
        c.workers.threads = 0;
        assert_eq!(c.validate().unwrap_err().key, "workers.threads");
    }

    #[test]
    fn keepalive_pings_need_an_interval() {
        let mut c = Config::default();
        c.dht.keepalive_interval = Duration::ZERO;
        assert_eq!(c.validate().unwrap_err().key, "dht.keepalive_interval");
        // Nothing kept warm: nothing to check.
        c.dht.keep_warm = 0;
        assert_eq!(c.validate(), Ok(()));
    }
}
