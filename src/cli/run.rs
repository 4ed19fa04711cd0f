//! `petrel run`: one node from a data directory, with its control socket (`DIR/control.sock`),
//! until SIGINT, SIGTERM or `petrel shutdown`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use log::{debug, error, info, warn, LevelFilter};

use crate::addr::PeerAddr;
use crate::cli::{flag, flag_all, parse_flag};
use crate::config::{self, Config};
use crate::control::{ControlServer, NodeInfo};
use crate::core::Event;
use crate::identity::Keypair;
use crate::node::{Handle, Node};
use crate::runtime::descriptors;
use crate::store::SyncMode;

/// How often the main thread checks for a signal.
const SIGNAL_POLL: Duration = Duration::from_millis(100);
/// How long a status ping waits for its answer.
const PING_TIMEOUT: Duration = Duration::from_secs(2);
/// How often a status line is printed and every peer pinged (at level `info` and above).
const DEFAULT_STATUS_SECS: u64 = 10;
/// The configuration file `petrel init` writes and `petrel run` reads, in the data directory.
pub const CONFIG_FILE: &str = "petrel.toml";

/// The options of `petrel run`: where the node's files are, and the flags that override its
/// configuration file.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Directory holding `node.key` (and, by default, `petrel.toml`).
    pub data_dir: PathBuf,
    /// The configuration file: `--config`, else `DIR/petrel.toml` if it exists.
    pub config: Option<PathBuf>,
    /// Listen address; `None` keeps the configuration's.
    pub listen: Option<SocketAddr>,
    /// Addresses to announce instead of the listen address (`--announce`, repeatable); empty
    /// keeps the configuration's.
    pub announce: Vec<SocketAddr>,
    /// Peers to dial at start (`--bootstrap`, repeatable); added to the configuration's.
    pub bootstrap: Vec<PeerAddr>,
    /// Verbosity: `--log`, else `PETREL_LOG`, else the configuration's `log_level`.
    pub log: Option<LevelFilter>,
    /// Seconds between status lines; each one also pings every connected peer and logs the
    /// round-trip time (`--status-secs`, default 10).
    pub status_every: Duration,
    /// Durability of acknowledged writes (`--sync none|batch|always`); `None` keeps the
    /// configuration's.
    pub sync: Option<SyncMode>,
    /// Where to serve Prometheus metrics (`--metrics IP:PORT`, or `--metrics ''` for nowhere:
    /// `Some(None)`); `None` keeps the configuration's `metrics_listen`.
    pub metrics: Option<Option<SocketAddr>>,
}

impl RunOptions {
    /// Parses `--data-dir DIR [--config FILE] [--listen ADDR] [--announce ADDR]...
    /// [--bootstrap NODEID@HOST:PORT]... [--log LEVEL] [--status-secs N] [--sync MODE]
    /// [--metrics IP:PORT|'']`.
    pub fn parse(args: &[String]) -> Result<RunOptions, String> {
        let data_dir: PathBuf =
            flag(args, "--data-dir")?.ok_or("--data-dir DIR is required")?.into();
        let config = match flag(args, "--config")? {
            Some(path) => Some(PathBuf::from(path)),
            None => Some(data_dir.join(CONFIG_FILE)).filter(|p| p.exists()),
        };
        let listen = parse_flag(args, "--listen")?;
        let announce = flag_all(args, "--announce")?
            .into_iter()
            .map(|s| s.parse().map_err(|e| format!("--announce {s:?}: {e}")))
            .collect::<Result<_, String>>()?;
        let bootstrap = flag_all(args, "--bootstrap")?
            .into_iter()
            .map(|s| s.parse().map_err(|e| format!("--bootstrap {s:?}: {e}")))
            .collect::<Result<_, String>>()?;
        let log = match flag(args, "--log")? {
            Some(level) => Some(parse_level("--log", level)?),
            None => match std::env::var("PETREL_LOG") {
                Ok(s) => Some(parse_level("PETREL_LOG", &s)?),
                Err(_) => None,
            },
        };
        let status_secs = parse_flag(args, "--status-secs")?.unwrap_or(DEFAULT_STATUS_SECS);
        if status_secs == 0 {
            return Err("--status-secs must be at least 1".into());
        }
        let status_every = Duration::from_secs(status_secs);
        let sync = parse_flag(args, "--sync")?;
        let metrics = match flag(args, "--metrics")? {
            None => None,
            Some("") => Some(None),
            Some(s) => Some(Some(
                s.parse().map_err(|e| format!("--metrics {s:?}: {e} (IP:PORT, or '' for none)"))?,
            )),
        };
        Ok(RunOptions {
            data_dir,
            config,
            listen,
            announce,
            bootstrap,
            log,
            status_every,
            sync,
            metrics,
        })
    }

    /// The node's configuration: the file's (or the defaults), with the flags applied over it.
    pub fn configuration(&self) -> Result<Config, String> {
        let mut config = match &self.config {
            Some(path) => config::file::load(path, Config::default())
                .map_err(|e| format!("{}: {e}", path.display()))?,
            None => Config::default(),
        };
        if let Some(listen) = self.listen {
            config.listen = listen;
        }
        if !self.announce.is_empty() {
            config.announce = self.announce.clone();
        }
        config.bootstrap.extend(self.bootstrap.iter().cloned());
        if let Some(sync) = self.sync {
            config.sync = sync;
        }
        if let Some(level) = self.log {
            config.log_level = level;
        }
        if let Some(metrics) = self.metrics {
            config.metrics_listen = metrics;
        }
        // Records, providers and the routing table survive a restart (DIR/records.log).
        config.data_dir = Some(self.data_dir.clone());
        config.validate().map_err(|e| e.to_string())?;
        Ok(config)
    }
}

fn parse_level(name: &str, s: &str) -> Result<LevelFilter, String> {
    s.parse().map_err(|_| format!("{name} {s:?}: expected off, error, warn, info, debug or trace"))
}

/// Runs `petrel run` with its command-line arguments.
pub fn main(args: &[String]) -> Result<(), String> {
    if crate::cli::usage::check("run", args)? == crate::cli::usage::Checked::Helped {
        return Ok(());
    }
    run(&RunOptions::parse(args)?)
}

/// Starts the node, prints its address, reports status until SIGINT or SIGTERM, shuts down.
pub fn run(opts: &RunOptions) -> Result<(), String> {
    let config = opts.configuration()?;
    crate::logging::init(config.log_level);
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&stop))
            .map_err(|e| format!("cannot install signal handler: {e}"))?;
    }
    let control_config = config.control.clone();
    let metrics_listen = config.metrics_listen;
    let node = start(opts, config)?;
    // `petrel shutdown` sets the same flag as the signals.
    let info = NodeInfo { id: node.id(), listen_addr: node.local_addr() };
    let control = ControlServer::start(
        &opts.data_dir,
        node.handle(),
        info,
        Arc::clone(&stop),
        control_config,
    )
    .map_err(|e| format!("control socket: {e}"))?;
    let metrics = match metrics_listen {
        Some(addr) => Some(crate::metrics::serve(addr, node.handle()).map_err(|e| {
            format!("metrics on {addr}: {e} (--metrics IP:PORT for another address, '' for none)")
        })?),
        None => None,
    };
    if let Some(server) = &metrics {
        info!("metrics on http://{}/metrics", server.local_addr());
    }
    // Last, so whoever waits for this line can use the control socket and the metrics at once.
    info!(
        "node {:#} listening on {} (dial it as {})",
        node.id(),
        node.local_addr(),
        node.peer_addr()
    );
    let threads = wait_for_signal(&node, opts, &stop);
    info!("shutting down");
    if let Some(server) = metrics {
        server.shutdown();
    }
    node.shutdown();
    // After the node: a client waiting on the socket sees it close once the node is down.
    control.stop();
    for thread in threads {
        let _ = thread.join();
    }
    info!("stopped");
    Ok(())
}

fn start(opts: &RunOptions, mut config: Config) -> Result<Node, String> {
    let path = opts.data_dir.join("node.key");
    if !path.exists() {
        return Err(format!(
            "{}: no key file; create one with `petrel init --data-dir {}`",
            path.display(),
            opts.data_dir.display()
        ));
    }
    let keypair = Keypair::load(&path).map_err(|e| e.to_string())?;
    crate::logging::set_node(&keypair.node_id());
    config.keypair = Some(keypair);
    if let Some(file) = &opts.config {
        info!("configuration from {}", file.display());
    }
    // One node: its connection slots, connecting ones included, must fit the limit.
    let limit = descriptors::raise_limit().map_err(|e| format!("descriptor limit: {e}"))?;
    let wanted = (config.limits.max_connections + config.limits.max_inbound) as u64;
    descriptors::budget(1, limit, wanted, wanted).map_err(|e| e.to_string())?;
    let node = Node::start(config).map_err(|e| e.to_string())?;
    let r = node.restored();
    if let Some(rec) = r.recovery.as_ref() {
        if rec.truncated_bytes + rec.corrupt_skipped + rec.unknown_skipped + rec.over_cap > 0 {
            warn!(
                "log recovery: cut a torn tail of {} bytes, skipped {} corrupt and {} unknown \
                 entries, {} over the entry cap",
                rec.truncated_bytes, rec.corrupt_skipped, rec.unknown_skipped, rec.over_cap
            );
        }
    }
    if r.records + r.providers > 0 || !r.peers.is_empty() {
        info!(
            "restored {} records, {} provider entries ({} skipped), dialling {} saved peers",
            r.records,
            r.providers,
            r.skipped,
            r.peers.len()
        );
    }
    Ok(node)
}

/// Waits for SIGINT or SIGTERM. Status lines and peer events are logged by threads of their
/// own, so a slow status round (a silent peer's ping) never delays the shutdown: once the node
/// stops, their calls return `Stopped` at once.
fn wait_for_signal(node: &Node, opts: &RunOptions, stop: &Arc<AtomicBool>) -> Vec<JoinHandle<()>> {
    let mut threads = Vec::new();
    if log::log_enabled!(log::Level::Info) {
        let (handle, every) = (node.handle(), opts.status_every);
        let status_stop = stop.clone();
        threads.extend(spawn("petrel-status", move || status_loop(&handle, every, &status_stop)));
        match node.handle().events() {
            Ok(events) => {
                let stop = stop.clone();
                threads.extend(spawn("petrel-events", move || log_events(&events, &stop)));
            }
            Err(e) => error!("no peer events: {e}"),
        }
    }
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(SIGNAL_POLL);
    }
    threads
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> Option<JoinHandle<()>> {
    std::thread::Builder::new().name(name.into()).spawn(f).ok()
}

/// Every `every`, the peer count and a ping of every peer, until `stop`.
fn status_loop(handle: &Handle, every: Duration, stop: &AtomicBool) {
    let mut next = Instant::now() + every;
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(SIGNAL_POLL);
        if Instant::now() >= next {
            next += every;
            status(handle, stop);
        }
    }
}

/// Logs the peer count and pings every peer, so a log shows the node is alive and served.
/// Each ping waits at most `PING_TIMEOUT`; the round ends early when the node is stopping.
fn status(handle: &Handle, stop: &AtomicBool) {
    let peers = match handle.peers() {
        Ok(peers) => peers,
        Err(e) => return warn!("status: {e}"),
    };
    info!("status: {} peers", peers.len());
    for p in &peers {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        debug!("  {:#}@{} {:?} {}", p.id, p.addr, p.direction, p.agent);
        match handle.ping_timeout(p.id, PING_TIMEOUT) {
            Ok(ping) => info!("ping {:#} rtt {:?}", p.id, ping.rtt),
            Err(e) => info!("ping {:#} failed: {e}", p.id),
        }
    }
}

/// Logs each peer that connects or leaves, until the node stops.
fn log_events(events: &Receiver<Event>, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        match events.recv_timeout(SIGNAL_POLL) {
            Ok(Event::PeerConnected { peer, direction }) => {
                info!("peer {peer:#} connected ({direction})");
            }
            Ok(Event::PeerDisconnected { peer }) => info!("peer {peer:#} left"),
            // Messages go to their subscriptions; the log does not echo payloads.
            Ok(Event::Gossip(_)) | Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `metrics_listen` after `petrel run --data-dir DIR` with `extra` (no configuration file).
    fn metrics(extra: &[&str]) -> Result<Option<SocketAddr>, String> {
        let dir = "/nonexistent-petrel-dir";
        let args: Vec<String> =
            ["--data-dir", dir].iter().chain(extra).map(|s| s.to_string()).collect();
        RunOptions::parse(&args)?.configuration().map(|c| c.metrics_listen)
    }

    #[test]
    fn metrics_default_to_the_configuration_and_the_flag_overrides_or_turns_them_off() {
        let default = config::DEFAULT_METRICS_LISTEN.parse().ok();
        assert_eq!(metrics(&[]), Ok(default));
        assert_eq!(metrics(&["--metrics", ""]), Ok(None));
        assert_eq!(metrics(&["--metrics", "[::1]:0"]), Ok(Some("[::1]:0".parse().unwrap())));
        let err = metrics(&["--metrics", "localhost:9100"]).unwrap_err();
        assert!(err.starts_with("--metrics \"localhost:9100\""), "{err}");
    }
}
