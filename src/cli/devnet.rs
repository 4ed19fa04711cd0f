//! `petrel devnet`: N full nodes in one process on loopback, wired into a random mesh; a DHT
//! round, a gossip round, then pings for a while; then a summary of what was stored and found,
//! deliveries and their latency, connections, ping round trips, CPU and memory. `make run`
//! runs it, with node 0's metrics served for a few seconds after the summary.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::thread;
use std::time::{Duration, Instant};

use crate::cli::report::{cpu_seconds, proc_status_kib};
use crate::cli::{parse_flag, switch};
use crate::config::Config;
use crate::identity::Keypair;
use crate::metrics::{self, MetricsServer};
use crate::node::{Handle, Node};
use crate::rng::Rng;
use crate::stats::percentile;
use crate::wire::messages::Key;

/// Earlier nodes each new node dials.
const DIALS_PER_NODE: usize = 3;
/// Bound on one ping.
const PING_TIMEOUT: Duration = Duration::from_secs(2);

/// The options of `petrel devnet`.
#[derive(Debug, Clone, Copy)]
pub struct DevnetOptions {
    /// Where to serve node 0's metrics (`--metrics`); another port on the same address if
    /// this one is taken.
    pub metrics: Option<SocketAddr>,
    /// How long the network stays up after the summary (`--linger`), so the metrics can be
    /// opened.
    pub linger: Duration,
    /// How many nodes.
    pub nodes: usize,
    /// How long the ping phase lasts, in seconds.
    pub seconds: u64,
    /// Seed of the keys, the mesh and the nodes' randomness.
    pub seed: u64,
    /// Print one JSON object on stdout.
    pub json: bool,
}

impl DevnetOptions {
    /// Parses `--nodes N [--seconds T] [--seed S] [--json]`.
    pub fn parse(args: &[String]) -> Result<DevnetOptions, String> {
        let nodes: usize = parse_flag(args, "--nodes")?.ok_or("--nodes N is required")?;
        if nodes == 0 {
            return Err("--nodes must be at least 1".into());
        }
        let linger = super::parse_seconds(args, "--linger")?.unwrap_or(Duration::ZERO);
        Ok(DevnetOptions {
            metrics: parse_flag(args, "--metrics")?,
            linger,
            nodes,
            seconds: parse_flag(args, "--seconds")?.unwrap_or(5),
            seed: parse_flag(args, "--seed")?.unwrap_or(1),
            json: switch(args, "--json"),
        })
    }
}

/// Runs `petrel devnet` with its command-line arguments.
pub fn main(args: &[String]) -> Result<(), String> {
    if super::usage::check("devnet", args)? == super::usage::Checked::Helped {
        return Ok(());
    }
    let opts = DevnetOptions::parse(args)?;
    let report = run(&opts)?;
    if opts.json {
        println!("{}", report.json());
    }
    Ok(())
}

/// The outcome of a devnet run.
#[derive(Debug, Clone)]
pub struct Report {
    /// Nodes started.
    pub nodes: usize,
    /// `peers().len()` of every node at the end.
    pub connections: Vec<usize>,
    /// Every answered ping's round trip, in microseconds.
    pub rtts_us: Vec<u64>,
    /// Pings that failed or timed out.
    pub ping_failures: usize,
    /// The DHT phase: records put (one per node), stored on at least one peer, and found again
    /// from another node.
    pub dht: DhtPhase,
    /// The gossip phase: messages published on one topic, and their deliveries.
    pub gossip: GossipPhase,
    /// Wall-clock time of the whole run, in seconds.
    pub wall_s: f64,
    /// User plus system CPU time of the process, in seconds.
    pub cpu_s: f64,
    /// Peak resident set size, in KiB.
    pub peak_rss_kib: u64,
    /// Resident set size before any node started, in KiB.
    pub base_rss_kib: u64,
    /// Where node 0's metrics were served.
    pub metrics: Option<SocketAddr>,
    /// How long the network stays up after the summary.
    pub linger: Duration,
}

/// What the DHT phase of a devnet did.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct DhtPhase {
    /// Records put, one from each node.
    pub records: usize,
    /// Puts that at least one peer stored.
    pub stored: usize,
    /// Peers that stored each record, on average.
    pub replicas_mean: f64,
    /// Records found again by a GET from the node half-way round the list.
    pub found: usize,
}

/// What the gossip phase of a devnet did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GossipPhase {
    /// Messages published (one from each of up to 10 nodes).
    pub published: usize,
    /// Deliveries received, and expected (every message at every other node).
    pub delivered: usize,
    /// See `delivered`.
    pub expected: usize,
    /// Publish-to-delivery latency of every delivery, in microseconds.
    pub latencies_us: Vec<u64>,
}

/// The devnet's topic.
const TOPIC: &str = "devnet";

/// Every node subscribes to one topic; once every mesh has a peer (at most 10 s), up to 10
/// nodes publish one message each, stamped with its publish instant; every node collects its
/// deliveries for up to 5 s.
fn gossip_phase(handles: &[Handle]) -> GossipPhase {
    let subs: Vec<_> = handles.iter().filter_map(|h| h.subscribe(TOPIC).ok()).collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline
        && !handles
            .iter()
            .all(|h| h.meshes().is_ok_and(|m| m.iter().any(|(t, peers)| t == TOPIC && *peers > 0)))
    {
        thread::sleep(Duration::from_millis(20));
    }
    let epoch = Instant::now();
    let publishers = handles.len().min(10);
    let mut published = 0;
    for (i, h) in handles.iter().take(publishers).enumerate() {
        let at = u64::try_from(epoch.elapsed().as_micros()).unwrap_or(u64::MAX);
        let mut payload = at.to_le_bytes().to_vec();
        payload.extend_from_slice(format!(" devnet message of node {i}").as_bytes());
        if h.publish(TOPIC, payload).is_ok() {
            published += 1;
        }
    }
    let expected = published * handles.len().saturating_sub(1);
    let mut latencies_us = Vec::new();
    let until = Instant::now() + Duration::from_secs(5);
    while latencies_us.len() < expected && Instant::now() < until {
        for sub in &subs {
            while let Some(d) = sub.try_recv() {
                let now = u64::try_from(epoch.elapsed().as_micros()).unwrap_or(u64::MAX);
                let mut stamp = [0u8; 8];
                if let Some(head) = d.message.payload.as_slice().get(..8) {
                    stamp.copy_from_slice(head);
                }
                latencies_us.push(now.saturating_sub(u64::from_le_bytes(stamp)));
            }
        }
        thread::sleep(Duration::from_millis(2));
    }
    latencies_us.sort_unstable();
    GossipPhase { published, delivered: latencies_us.len(), expected, latencies_us }
}

impl GossipPhase {
    fn latency_us(&self, p: f64) -> u64 {
        percentile(&self.latencies_us, p).unwrap_or(0)
    }
}

/// Every node PUTs one record, then each is fetched by the node half-way round the list.
fn dht_phase(handles: &[Handle]) -> DhtPhase {
    let n = handles.len();
    let puts: Vec<Option<(Key, usize)>> = thread::scope(|s| {
        let workers: Vec<_> = handles
            .iter()
            .enumerate()
            .map(|(i, h)| {
                s.spawn(move || {
                    let value = format!("devnet record of node {i}").into_bytes();
                    h.put(value).ok().map(|p| (p.key, p.stored))
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().ok().flatten()).collect()
    });
    let stored: Vec<(usize, Key, usize)> = puts
        .iter()
        .enumerate()
        .filter_map(|(i, p)| p.filter(|(_, peers)| *peers > 0).map(|(k, peers)| (i, k, peers)))
        .collect();
    let found = stored
        .iter()
        .filter(|(i, key, _)| {
            let reader = &handles[(i + n / 2) % n];
            let want = format!("devnet record of node {i}").into_bytes();
            matches!(reader.get(*key), Ok(Some(f)) if f.record.value() == want.as_slice())
        })
        .count();
    let replicas: usize = stored.iter().map(|(_, _, peers)| peers).sum();
    DhtPhase {
        records: n,
        stored: stored.len(),
        replicas_mean: replicas as f64 / stored.len().max(1) as f64,
        found,
    }
}

/// Starts the nodes, builds the mesh, puts and gets a record per node, pings for `seconds`,
/// shuts everything down.
pub fn run(opts: &DevnetOptions) -> Result<Report, String> {
    let started = Instant::now();
    let base_rss_kib = proc_status_kib("VmRSS:").unwrap_or(0);
    let nodes = start_nodes(opts)?;
    let handles: Vec<Handle> = nodes.iter().map(Node::handle).collect();
    let metrics = opts.metrics.and_then(|addr| serve_metrics(addr, handles[0].clone()));
    if let Some(server) = &metrics {
        eprintln!("devnet: node 0's metrics on http://{}/metrics", server.local_addr());
    }
    let dial_failures = connect_mesh(&nodes, opts.seed);
    eprintln!(
        "devnet: {} nodes up, {} connections, {dial_failures} failed dials, in {:.2}s",
        nodes.len(),
        connection_count(&handles),
        started.elapsed().as_secs_f64()
    );
    let dht = dht_phase(&handles);
    eprintln!(
        "devnet: DHT: {} of {} records stored (on {:.1} peers each), {} found from another node",
        dht.stored, dht.records, dht.replicas_mean, dht.found
    );
    let gossip = gossip_phase(&handles);
    eprintln!(
        "devnet: gossip: {} messages published on {TOPIC:?}, {} of {} deliveries, p50 {}us p99 {}us",
        gossip.published,
        gossip.delivered,
        gossip.expected,
        gossip.latency_us(50.0),
        gossip.latency_us(99.0),
    );
    let (rtts_us, ping_failures) = ping_phase(&handles, opts.seconds);
    let connections = handles.iter().map(|h| h.peers().map_or(0, |p| p.len())).collect();
    let report = Report {
        nodes: opts.nodes,
        connections,
        rtts_us,
        ping_failures,
        dht,
        gossip,
        wall_s: started.elapsed().as_secs_f64(),
        cpu_s: cpu_seconds().unwrap_or(0.0),
        peak_rss_kib: proc_status_kib("VmHWM:").unwrap_or(0),
        base_rss_kib,
        metrics: metrics.as_ref().map(MetricsServer::local_addr),
        linger: opts.linger,
    };
    eprintln!("{}", report.human());
    if !opts.linger.is_zero() {
        eprintln!("devnet: the network stays up {:?} more (Ctrl-C stops it)", opts.linger);
        thread::sleep(opts.linger);
    }
    if let Some(server) = metrics {
        server.shutdown();
    }
    shutdown_all(nodes);
    Ok(report)
}

/// Serves node 0's metrics at `addr`, or at another port of its address if that one is taken
/// (a second devnet, or a node of the host's own on the default 9100).
fn serve_metrics(addr: SocketAddr, handle: Handle) -> Option<MetricsServer> {
    let fallback = SocketAddr::new(addr.ip(), 0);
    match metrics::serve(addr, handle.clone()).or_else(|_| metrics::serve(fallback, handle)) {
        Ok(server) => Some(server),
        Err(e) => {
            eprintln!("devnet: no metrics: {addr}: {e}");
            None
        }
    }
}

fn start_nodes(opts: &DevnetOptions) -> Result<Vec<Node>, String> {
    let (limits, _) = super::fleet::limits(opts.nodes)?;
    (0..opts.nodes)
        .map(|i| {
            let mut rng = Rng::new(opts.seed ^ (i as u64).wrapping_mul(0xA24B_AED4_963E_E407));
            let mut key = [0u8; 32];
            for chunk in key.chunks_mut(8) {
                chunk.copy_from_slice(&rng.next_u64().to_le_bytes());
            }
            let config = Config {
                keypair: Some(Keypair::from_seed(key)),
                rng_seed: Some(rng.next_u64()),
                limits,
                ..Config::default()
            };
            Node::start(config).map_err(|e| format!("node {i}: {e}"))
        })
        .collect()
}

/// Node `i` dials up to [`DIALS_PER_NODE`] distinct random earlier nodes; one thread per node,
/// so every dial is in flight at once. Returns the number of failed dials.
fn connect_mesh(nodes: &[Node], seed: u64) -> usize {
    let mut rng = Rng::new(seed);
    let plans: Vec<Vec<usize>> =
        (0..nodes.len()).map(|i| rng.distinct_below(i, DIALS_PER_NODE)).collect();
    thread::scope(|s| {
        let workers: Vec<_> = plans
            .iter()
            .enumerate()
            .map(|(i, targets)| {
                let handle = nodes[i].handle();
                s.spawn(move || {
                    targets
                        .iter()
                        .filter(|&&t| handle.connect(nodes[t].peer_addr()).is_err())
                        .count()
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap_or(DIALS_PER_NODE)).sum()
    })
}

/// Every second, every node pings each of its peers once. Returns the RTTs and the failures.
fn ping_phase(handles: &[Handle], seconds: u64) -> (Vec<u64>, usize) {
    let start = Instant::now();
    let (mut rtts, mut failures) = (Vec::new(), 0);
    for t in 1..=seconds {
        let (round, failed) = ping_round(handles);
        rtts.extend(round);
        failures += failed;
        eprintln!(
            "devnet: t={t}s nodes={} connections={} pings={} failed={failures}",
            handles.len(),
            connection_count(handles),
            rtts.len()
        );
        let next = start + Duration::from_secs(t);
        thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    (rtts, failures)
}

fn ping_round(handles: &[Handle]) -> (Vec<u64>, usize) {
    thread::scope(|s| {
        let workers: Vec<_> = handles.iter().map(|h| s.spawn(move || ping_peers(h))).collect();
        let (mut rtts, mut failures) = (Vec::new(), 0);
        for w in workers {
            let (r, f) = w.join().unwrap_or_default();
            rtts.extend(r);
            failures += f;
        }
        (rtts, failures)
    })
}

fn ping_peers(handle: &Handle) -> (Vec<u64>, usize) {
    let Ok(peers) = handle.peers() else { return (Vec::new(), 1) };
    let (mut rtts, mut failures) = (Vec::new(), 0);
    for p in peers {
        match handle.ping_timeout(p.id, PING_TIMEOUT) {
            Ok(info) => rtts.push(u64::try_from(info.rtt.as_micros()).unwrap_or(u64::MAX)),
            Err(_) => failures += 1,
        }
    }
    (rtts, failures)
}

/// Connections counted from both ends, halved.
fn connection_count(handles: &[Handle]) -> usize {
    handles.iter().map(|h| h.peers().map_or(0, |p| p.len())).sum::<usize>() / 2
}

fn shutdown_all(nodes: Vec<Node>) {
    thread::scope(|s| {
        for node in nodes {
            s.spawn(move || node.shutdown());
        }
    });
}

impl Report {
    /// Nearest-rank percentile of the RTTs (0 when there are none).
    pub fn rtt_percentile(&self, p: f64) -> u64 {
        let mut sorted = self.rtts_us.clone();
        sorted.sort_unstable();
        percentile(&sorted, p).unwrap_or(0)
    }

    fn conn_stats(&self) -> (usize, f64, usize) {
        let min = self.connections.iter().copied().min().unwrap_or(0);
        let max = self.connections.iter().copied().max().unwrap_or(0);
        let mean = self.connections.iter().sum::<usize>() as f64 / self.nodes.max(1) as f64;
        (min, mean, max)
    }

    fn rss_per_node_kib(&self) -> u64 {
        self.peak_rss_kib.saturating_sub(self.base_rss_kib) / self.nodes.max(1) as u64
    }

    /// The summary: one line per part, aligned.
    pub fn human(&self) -> String {
        let (min, mean, max) = self.conn_stats();
        let ms = |us: u64| us as f64 / 1000.0;
        let mut s = String::from("devnet summary\n");
        let _ = writeln!(
            s,
            "  nodes       {} on loopback; connections per node min {min} mean {mean:.1} max {max}",
            self.nodes
        );
        let d = &self.dht;
        let _ = writeln!(
            s,
            "  DHT         {} records put, {} stored (on {:.1} peers each), {} of them found again \
             from another node",
            d.records, d.stored, d.replicas_mean, d.found
        );
        let g = &self.gossip;
        let _ = writeln!(
            s,
            "  gossip      {} messages on {TOPIC:?}: {} of {} deliveries, latency p50 {:.1} ms \
             p99 {:.1} ms",
            g.published,
            g.delivered,
            g.expected,
            ms(g.latency_us(50.0)),
            ms(g.latency_us(99.0))
        );
        let _ = writeln!(
            s,
            "  pings       {} answered, {} failed; rtt p50 {:.2} ms p99 {:.2} ms max {:.2} ms",
            self.rtts_us.len(),
            self.ping_failures,
            ms(self.rtt_percentile(50.0)),
            ms(self.rtt_percentile(99.0)),
            ms(self.rtt_percentile(100.0))
        );
        let _ = write!(
            s,
            "  resources   wall {:.1} s, cpu {:.1} s, peak rss {:.1} MiB ({} KiB per node)",
            self.wall_s,
            self.cpu_s,
            self.peak_rss_kib as f64 / 1024.0,
            self.rss_per_node_kib()
        );
        if let Some(addr) = self.metrics {
            let _ = write!(
                s,
                "\n  metrics     http://{addr}/metrics (node 0; up {:?} after this summary)",
                self.linger
            );
        }
        s
    }

    /// One JSON object, on one line.
    pub fn json(&self) -> String {
        let (min, mean, max) = self.conn_stats();
        format!(
            concat!(
                "{{\"nodes\":{},\"connections_per_node\":{{\"min\":{},\"mean\":{:.2},\"max\":{}}},",
                "\"ping_rtt_us\":{{\"p50\":{},\"p90\":{},\"p99\":{},\"max\":{},\"n\":{}}},",
                "\"ping_failures\":{},",
                "\"dht\":{{\"records\":{},\"stored\":{},\"replicas_mean\":{:.1},\"found\":{}}},",
                "\"gossip\":{{\"published\":{},\"delivered\":{},\"expected\":{},",
                "\"latency_us\":{{\"p50\":{},\"p99\":{},\"max\":{}}}}},",
                "\"wall_s\":{:.3},\"cpu_s\":{:.2},\"peak_rss_mib\":{:.1},",
                "\"rss_per_node_kib\":{}}}"
            ),
            self.nodes,
            min,
            mean,
            max,
            self.rtt_percentile(50.0),
            self.rtt_percentile(90.0),
            self.rtt_percentile(99.0),
            self.rtt_percentile(100.0),
            self.rtts_us.len(),
            self.ping_failures,
            self.dht.records,
            self.dht.stored,
            self.dht.replicas_mean,
            self.dht.found,
            self.gossip.published,
            self.gossip.delivered,
            self.gossip.expected,
            self.gossip.latency_us(50.0),
            self.gossip.latency_us(99.0),
            self.gossip.latency_us(100.0),
            self.wall_s,
            self.cpu_s,
            self.peak_rss_kib as f64 / 1024.0,
            self.rss_per_node_kib()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distinct_picks_are_distinct_and_in_range() {
        let mut rng = Rng::new(7);
        for n in 0..20 {
            let mut picks = rng.distinct_below(n, 3);
            assert_eq!(picks.len(), n.min(3));
            assert!(picks.iter().all(|&p| p < n));
            picks.sort_unstable();
            picks.dedup();
            assert_eq!(picks.len(), n.min(3));
        }
    }
}
