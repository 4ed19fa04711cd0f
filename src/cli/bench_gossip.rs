//! `petrel bench gossip`: publish/subscribe end to end on real sockets and TLS, N nodes in one
//! process on 127.0.0.1. Its flags and JSON follow the `gossip` scenario of the rust-libp2p
//! reference harness (`run_gossip` in shared/reference/libp2p-ref), so that
//! `side-by-side.py` runs both with the same arguments.
//!
//! Method (the JSON fields are named after these steps):
//! 1. Read VmRSS before any node starts.
//! 2. Start N nodes; keys and overlay derive from `--seed` ([`fleet`]). Node i dials
//!    `--degree` random earlier nodes, every node subscribes to one topic, and the run waits
//!    until every node has a mesh peer, at most `--mesh-timeout` seconds (`mesh_ready`,
//!    `mesh_wait_s`; `mesh_min` and `mesh_mean` are read at the end of the wait).
//! 3. Publish `--messages` messages of `--size` bytes, each from a node drawn from the seed,
//!    message i due `i / --rate` seconds after the first. A late one goes at once, so the
//!    aggregate rate holds. The bench thread publishes through the publisher's `Handle`, which
//!    signs on the calling thread as it does for any application.
//! 4. Wait until every (message, node other than its publisher) pair has been delivered, or
//!    until `--drain` seconds after the last publish. `publish_phase_s` and
//!    `cpu_s_publish_phase` run from the first publish to here.
//!
//! A payload starts with the message index and the publish time as two little-endian u64s,
//! laid out as the reference lays them out. The time is in nanoseconds since the process-wide
//! epoch ([`now_ns`]), taken just before `Handle::publish`. A delivery's latency is the
//! receiving thread's [`now_ns`] when it takes the message minus that time. Percentiles are
//! nearest-rank. `cpu_s` is the whole process (user + system, in 10 ms ticks), `peak_rss_mib`
//! its VmHWM, `rss_per_node_kib` = (VmHWM − VmRSS before step 2) / N. All are read before the
//! nodes shut down, because the reference exits without a teardown.

use std::fmt::Write as _;
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, Select, Sender};

use crate::cli::bench_dht::Latency;
use crate::cli::fleet::{self, MeshWait, Meshed};
use crate::cli::report::{cpu_seconds, proc_status_kib};
use crate::cli::{parse_flag, parse_seconds, switch};
use crate::gossip::GossipStats;
use crate::node::{Handle, Subscription};
use crate::rng::Rng;
use crate::wire::messages::MAX_PAYLOAD_BYTES;

/// The options of `petrel bench gossip`.
#[derive(Debug, Clone, PartialEq)]
pub struct GossipOptions {
    /// Nodes (at least 2).
    pub nodes: usize,
    /// Messages published.
    pub messages: usize,
    /// Payload bytes of each message (at least [`STAMP_BYTES`], for the index and the time).
    pub size: usize,
    /// Messages per second, all publishers together.
    pub rate: f64,
    /// Seed of keys, overlay and publishers.
    pub seed: u64,
    /// Earlier nodes each node dials.
    pub degree: usize,
    /// Longest wait for every node to have a mesh peer.
    pub mesh_timeout: Duration,
    /// Longest wait for the deliveries after the last publish.
    pub drain: Duration,
    /// Print one JSON object on stdout.
    pub json: bool,
}

impl GossipOptions {
    /// Parses `--nodes N --messages M --size B --rate R --seed S [--degree D]
    /// [--mesh-timeout SECS] [--drain SECS] [--json]`; the defaults are the reference's: 20,
    /// 200, 1024, 100, 1, 3, 60 and 10.
    pub fn parse(args: &[String]) -> Result<GossipOptions, String> {
        let opts = GossipOptions {
            nodes: parse_flag(args, "--nodes")?.unwrap_or(20),
            messages: parse_flag(args, "--messages")?.unwrap_or(200),
            size: parse_flag(args, "--size")?.unwrap_or(1024),
            rate: parse_flag(args, "--rate")?.unwrap_or(100.0),
            seed: parse_flag(args, "--seed")?.unwrap_or(1),
            degree: parse_flag(args, "--degree")?.unwrap_or(3),
            mesh_timeout: parse_seconds(args, "--mesh-timeout")?.unwrap_or(DEFAULT_MESH_TIMEOUT),
            drain: parse_seconds(args, "--drain")?.unwrap_or(DEFAULT_DRAIN),
            json: switch(args, "--json"),
        };
        if !(2..=MAX_NODES).contains(&opts.nodes) {
            return Err(format!("--nodes must be 2..={MAX_NODES}"));
        }
        if !(1..=MAX_MESSAGES).contains(&opts.messages) {
            return Err(format!("--messages must be 1..={MAX_MESSAGES}"));
        }
        if !(STAMP_BYTES..=MAX_PAYLOAD_BYTES).contains(&opts.size) {
            return Err(format!("--size must be {STAMP_BYTES}..={MAX_PAYLOAD_BYTES}"));
        }
        if !(MIN_RATE..=MAX_RATE).contains(&opts.rate) {
            return Err(format!("--rate must be {MIN_RATE}..={MAX_RATE} messages per second"));
        }
        if opts.degree == 0 {
            return Err("--degree must be at least 1".into());
        }
        if opts.mesh_timeout > MAX_WAIT || opts.drain > MAX_WAIT {
            return Err(format!("--mesh-timeout and --drain must be at most {MAX_WAIT:?}"));
        }
        Ok(opts)
    }

    /// Deliveries that make 100 %: every message to every node but its publisher.
    pub fn expected_pairs(&self) -> usize {
        self.messages * (self.nodes - 1)
    }
}

/// What `petrel bench gossip` measured.
#[derive(Debug, Clone, PartialEq)]
pub struct GossipReport {
    /// The options it ran with.
    pub opts: GossipOptions,
    /// The wait for the meshes.
    pub mesh: MeshWait,
    /// From the start to the first publish, seconds.
    pub setup_s: f64,
    /// Publishes that returned an error.
    pub publish_failures: usize,
    /// Distinct (message, node) pairs delivered to the application.
    pub delivered_pairs: usize,
    /// Deliveries of a pair already delivered.
    pub duplicate_deliveries: usize,
    /// Deliveries that were no pair at all: not a bench payload, or at its own publisher.
    pub stray_deliveries: usize,
    /// Deliveries dropped because the receiving thread did not take them in time.
    pub lost_deliveries: u64,
    /// Latency of the first delivery of each pair.
    pub latency_ms: Latency,
    /// From the first publish until the last returned, seconds.
    pub publish_s: f64,
    /// From the first publish to the end of the drain, seconds.
    pub publish_phase_s: f64,
    /// Process CPU time over `publish_phase_s`, seconds.
    pub cpu_s_publish_phase: f64,
    /// Gossip counters summed over every node at the end (see `sum_gossip` for which).
    pub gossip: GossipStats,
    /// Wall time of the run, seconds.
    pub wall_s: f64,
    /// CPU time of the process, seconds.
    pub cpu_s: f64,
    /// VmHWM, MiB.
    pub peak_rss_mib: f64,
    /// (VmHWM − RSS before the nodes) / N, KiB.
    pub rss_per_node_kib: f64,
}

/// Runs the benchmark described in the module doc.
pub fn run(opts: &GossipOptions) -> Result<GossipReport, String> {
    let started = Instant::now();
    now_ns(); // pins the epoch
    let rss_before = proc_status_kib("VmRSS:").unwrap_or(0);
    let mut rng = Rng::new(opts.seed);
    let Meshed { nodes, handles, subs, mesh } =
        fleet::meshed(opts.nodes, &mut rng, opts.degree, TOPIC, opts.mesh_timeout)?;
    eprintln!("bench gossip: {} nodes, {}", opts.nodes, mesh.human());
    let sources: Vec<usize> =
        (0..opts.messages).map(|_| rng.below(opts.nodes as u64) as usize).collect();
    let setup_s = started.elapsed().as_secs_f64();
    let phase = publish_phase(opts, &handles, subs, &sources);

    let mut gossip = GossipStats::default();
    let mut lost_deliveries = 0;
    for snapshot in handles.iter().filter_map(|h| h.snapshot().ok()) {
        sum_gossip(&mut gossip, &snapshot.gossip.unwrap_or_default());
        lost_deliveries += snapshot.subscriptions_lost;
    }
    let wall_s = started.elapsed().as_secs_f64();
    let cpu_s = cpu_seconds().unwrap_or(0.0);
    let peak = proc_status_kib("VmHWM:").unwrap_or(0);
    for node in nodes {
        node.shutdown();
    }
    let Phase { tally, publish_failures, publish_s, publish_phase_s, cpu_s_publish_phase } = phase;
    Ok(GossipReport {
        opts: opts.clone(),
        mesh,
        setup_s,
        publish_failures,
        delivered_pairs: tally.pairs,
        duplicate_deliveries: tally.duplicates,
        stray_deliveries: tally.stray,
        lost_deliveries,
        latency_ms: Latency::of(tally.latencies_ns.iter().map(|ns| ns / 1000).collect()),
        publish_s,
        publish_phase_s,
        cpu_s_publish_phase,
        gossip,
        wall_s,
        cpu_s,
        peak_rss_mib: peak as f64 / 1024.0,
        rss_per_node_kib: peak.saturating_sub(rss_before) as f64 / opts.nodes as f64,
    })
}

/// Nanoseconds since the process-wide epoch: the first call, on the monotonic clock that every
/// thread shares.
pub fn now_ns() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    u64::try_from(EPOCH.get_or_init(Instant::now).elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// Steps 3 and 4 of the method, as measured.
struct Phase {
    tally: Tally,
    publish_failures: usize,
    publish_s: f64,
    publish_phase_s: f64,
    cpu_s_publish_phase: f64,
}

/// Publishes message i from node `sources[i]` at the paced times while one thread takes every
/// delivery, then waits for the last delivery or the end of the drain.
fn publish_phase(
    opts: &GossipOptions,
    handles: &[Handle],
    subs: Vec<Subscription>,
    sources: &[usize],
) -> Phase {
    let (stop_tx, stop_rx) = bounded::<()>(0);
    let (done_tx, done_rx) = bounded(1);
    let expected = opts.expected_pairs();
    thread::scope(|scope| {
        // One thread takes the deliveries of every node, blocking on all the subscription
        // queues at once. A thread per node would add N threads, N stacks and a wake-up per
        // delivery on a machine whose cores the reactors need; this one drains all that is
        // queued at each wake-up, and a delivery waits at most one such sweep.
        let receiver = scope.spawn(move || receive(&subs, sources, expected, &stop_rx, &done_tx));
        let cpu_before = cpu_seconds().unwrap_or(0.0);
        let first = Instant::now();
        let publish_failures = publish(handles, sources, opts.size, opts.rate);
        let publish_s = first.elapsed().as_secs_f64();
        let _ = done_rx.recv_deadline(Instant::now() + opts.drain);
        let publish_phase_s = first.elapsed().as_secs_f64();
        let cpu_s_publish_phase = cpu_seconds().unwrap_or(0.0) - cpu_before;
        drop(stop_tx);
        let tally = receiver.join().unwrap_or_default();
        Phase { tally, publish_failures, publish_s, publish_phase_s, cpu_s_publish_phase }
    })
}

/// Publishes message i from node `sources[i]`, due `i / rate` seconds after the first; returns
/// how many publishes failed.
fn publish(handles: &[Handle], sources: &[usize], size: usize, rate: f64) -> usize {
    let mut template = vec![0u8; size];
    for (i, b) in template.iter_mut().enumerate().skip(STAMP_BYTES) {
        *b = i as u8; // any bytes do: only the stamp is read
    }
    let first = Instant::now();
    let mut failures = 0;
    for (i, &source) in sources.iter().enumerate() {
        let due = first + Duration::from_secs_f64(i as f64 / rate);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            thread::sleep(wait);
        }
        let mut payload = template.clone();
        payload[..8].copy_from_slice(&(i as u64).to_le_bytes());
        payload[8..STAMP_BYTES].copy_from_slice(&now_ns().to_le_bytes());
        if let Err(e) = handles[source].publish(TOPIC, payload) {
            if failures == 0 {
                eprintln!("bench gossip: message {i} from node {source}: {e}");
            }
            failures += 1;
        }
    }
    failures
}

/// What the receiving thread counted.
#[derive(Debug, Default)]
struct Tally {
    /// Whether node n has had message m, at `n * messages + m`.
    seen: Vec<bool>,
    /// Latency of the first delivery of each pair, nanoseconds.
    latencies_ns: Vec<u64>,
    pairs: usize,
    duplicates: usize,
    stray: usize,
}

impl Tally {
    /// Counts one delivery to `node`, taken at `now_ns`; `sources[m]` published message m.
    fn record(&mut self, node: usize, payload: &[u8], sources: &[usize], now_ns: u64) {
        let Some((index, sent_ns)) = stamp(payload) else {
            self.stray += 1;
            return;
        };
        let m = match usize::try_from(index) {
            Ok(m) if m < sources.len() && sources[m] != node => m,
            _ => {
                self.stray += 1;
                return;
            }
        };
        let slot = &mut self.seen[node * sources.len() + m];
        if *slot {
            self.duplicates += 1;
            return;
        }
        *slot = true;
        self.pairs += 1;
        self.latencies_ns.push(now_ns.saturating_sub(sent_ns));
    }
}

/// The message index and publish time at the start of a bench payload.
fn stamp(payload: &[u8]) -> Option<(u64, u64)> {
    let index = payload.get(..8)?.try_into().ok()?;
    let sent = payload.get(8..STAMP_BYTES)?.try_into().ok()?;
    Some((u64::from_le_bytes(index), u64::from_le_bytes(sent)))
}

/// Takes every delivery of every subscription (`subs[n]` is node n's) until `stop` is closed;
/// says `done` once all `expected` pairs are in.
fn receive(
    subs: &[Subscription],
    sources: &[usize],
    expected: usize,
    stop: &Receiver<()>,
    done: &Sender<()>,
) -> Tally {
    let mut tally = Tally {
        seen: vec![false; subs.len() * sources.len()],
        latencies_ns: Vec::with_capacity(expected),
        ..Tally::default()
    };
    let mut select = Select::new();
    for sub in subs {
        select.recv(sub.receiver());
    }
    select.recv(stop);
    loop {
        let ready = select.ready();
        // The stop operation is the last, past every subscription.
        let Some(sub) = subs.get(ready) else { return tally };
        while let Some(d) = sub.try_recv() {
            tally.record(ready, d.message.payload.as_slice(), sources, now_ns());
        }
        if tally.pairs == expected {
            let _ = done.try_send(());
        }
    }
}

/// Adds the counters the report shows from one node's gossip stats to `total`.
fn sum_gossip(total: &mut GossipStats, s: &GossipStats) {
    total.published += s.published;
    total.received += s.received;
    total.delivered += s.delivered;
    total.duplicates += s.duplicates;
    total.check_jobs += s.check_jobs;
    total.forwarded += s.forwarded;
    total.ihave_sent += s.ihave_sent;
    total.iwant_sent += s.iwant_sent;
    total.iwant_served += s.iwant_served;
    total.idontwant_sent += s.idontwant_sent;
    total.idontwant_honoured += s.idontwant_honoured;
    total.idontwant_kept += s.idontwant_kept;
    total.idontwant_settled += s.idontwant_settled;
    total.grafts_sent += s.grafts_sent;
    total.prunes_sent += s.prunes_sent;
    total.queued_sends += s.queued_sends;
    total.dropped_sends += s.dropped_sends;
    total.expired_forwards += s.expired_forwards;
    total.heartbeats += s.heartbeats;
    total.mesh_peers += s.mesh_peers;
}

impl GossipReport {
    /// Distinct pairs delivered over pairs expected.
    pub fn delivered_fraction(&self) -> f64 {
        self.delivered_pairs as f64 / self.opts.expected_pairs().max(1) as f64
    }

    /// Sends the nodes gave up: dropped from a full queue, or past their forward deadline.
    pub fn dropped_sends(&self) -> u64 {
        self.gossip.dropped_sends + self.gossip.expired_forwards
    }

    /// Distinct pairs delivered per CPU-second of the publish phase (0 if none was measured).
    pub fn deliveries_per_cpu_s(&self) -> f64 {
        if self.cpu_s_publish_phase > 0.0 {
            self.delivered_pairs as f64 / self.cpu_s_publish_phase
        } else {
            0.0
        }
    }

    /// A few lines for a person.
    pub fn human(&self) -> String {
        let (o, l, g) = (&self.opts, &self.latency_ms, &self.gossip);
        let mut s = String::new();
        let _ = writeln!(
            s,
            "bench gossip: {} nodes, {} messages of {} B at {}/s, seed {}, degree {}",
            o.nodes, o.messages, o.size, o.rate, o.seed, o.degree
        );
        let _ = writeln!(
            s,
            "  delivered {:.2}% ({} of {} pairs), {} duplicate, {} stray, {} lost, \
             {} publishes failed",
            self.delivered_fraction() * 100.0,
            self.delivered_pairs,
            o.expected_pairs(),
            self.duplicate_deliveries,
            self.stray_deliveries,
            self.lost_deliveries,
            self.publish_failures
        );
        let _ = writeln!(
            s,
            "  latency p50 {:.3} ms, p90 {:.3} ms, p99 {:.3} ms, max {:.3} ms, mean {:.3} ms",
            l.p50, l.p90, l.p99, l.max, l.mean
        );
        let _ = writeln!(
            s,
            "  publish {:.2} s, phase {:.2} s, cpu {:.2} s in the phase: {:.0} deliveries per \
             cpu-second",
            self.publish_s,
            self.publish_phase_s,
            self.cpu_s_publish_phase,
            self.deliveries_per_cpu_s()
        );
        let _ = writeln!(
            s,
            "  gossip: {} copies received, {} duplicates, {} forwarded, {} sends dropped, \
             {} IHAVE, {} IWANT",
            g.received,
            g.duplicates,
            g.forwarded,
            self.dropped_sends(),
            g.ihave_sent,
            g.iwant_sent
        );
        let _ = write!(
            s,
            "  wall {:.2} s, cpu {:.2} s, peak RSS {:.1} MiB, {:.0} KiB per node",
            self.wall_s, self.cpu_s, self.peak_rss_mib, self.rss_per_node_kib
        );
        s
    }

    /// One JSON object, on one line.
    pub fn json(&self) -> String {
        let (o, g) = (&self.opts, &self.gossip);
        format!(
            "{{\"bench\":\"gossip\",\"nodes\":{},\"messages\":{},\"size\":{},\"rate\":{},\
             \"seed\":{},\"degree\":{},\"mesh_timeout_s\":{:.3},\"drain_s\":{:.3},\
             \"mesh_ready\":{},\"mesh_wait_s\":{:.3},\"mesh_min\":{},\"mesh_mean\":{:.2},\
             \"setup_s\":{:.3},\"publish_failures\":{},\"delivered_fraction\":{:.4},\
             \"delivered_pairs\":{},\"expected_pairs\":{},\"duplicate_deliveries\":{},\
             \"stray_deliveries\":{},\"lost_deliveries\":{},\"latency_ms\":{},\
             \"publish_s\":{:.3},\"publish_phase_s\":{:.3},\"cpu_s_publish_phase\":{:.2},\
             \"deliveries_per_cpu_s\":{:.0},\"dropped_sends\":{},\"duplicates_received\":{},\
             \"gossip\":{{\"published\":{},\"received\":{},\"delivered\":{},\"check_jobs\":{},\
             \"forwarded\":{},\"ihave_sent\":{},\"iwant_sent\":{},\"iwant_served\":{},\
             \"idontwant_sent\":{},\"idontwant_honoured\":{},\"idontwant_kept\":{},\
             \"idontwant_settled\":{},\"grafts_sent\":{},\
             \"prunes_sent\":{},\"queued_sends\":{},\"dropped_sends\":{},\
             \"expired_forwards\":{},\"heartbeats\":{}}},\"mesh_mean_end\":{:.2},\
             \"wall_s\":{:.3},\"cpu_s\":{:.2},\"peak_rss_mib\":{:.1},\"rss_per_node_kib\":{:.0}}}",
            o.nodes,
            o.messages,
            o.size,
            o.rate,
            o.seed,
            o.degree,
            o.mesh_timeout.as_secs_f64(),
            o.drain.as_secs_f64(),
            self.mesh.ready,
            self.mesh.wait_s,
            self.mesh.min,
            self.mesh.mean,
            self.setup_s,
            self.publish_failures,
            self.delivered_fraction(),
            self.delivered_pairs,
            o.expected_pairs(),
            self.duplicate_deliveries,
            self.stray_deliveries,
            self.lost_deliveries,
            self.latency_ms.json(),
            self.publish_s,
            self.publish_phase_s,
            self.cpu_s_publish_phase,
            self.deliveries_per_cpu_s(),
            self.dropped_sends(),
            g.duplicates,
            g.published,
            g.received,
            g.delivered,
            g.check_jobs,
            g.forwarded,
            g.ihave_sent,
            g.iwant_sent,
            g.iwant_served,
            g.idontwant_sent,
            g.idontwant_honoured,
            g.idontwant_kept,
            g.idontwant_settled,
            g.grafts_sent,
            g.prunes_sent,
            g.queued_sends,
            g.dropped_sends,
            g.expired_forwards,
            g.heartbeats,
            g.mesh_peers as f64 / o.nodes as f64,
            self.wall_s,
            self.cpu_s,
            self.peak_rss_mib,
            self.rss_per_node_kib
        )
    }
}

/// The topic every node subscribes to (the reference's).
pub const TOPIC: &str = "bench";
/// Payload bytes of the stamp: the message index and the publish time.
pub const STAMP_BYTES: usize = 16;
/// Most `--nodes` (as `bench dht`).
pub const MAX_NODES: usize = 2000;
/// Most `--messages`: the receiving thread keeps a flag per (message, node).
const MAX_MESSAGES: usize = 1_000_000;
/// Slowest and fastest `--rate`, messages per second.
const MIN_RATE: f64 = 0.001;
/// See `MIN_RATE`.
const MAX_RATE: f64 = 1_000_000.0;
/// Longest `--mesh-timeout` and `--drain`.
const MAX_WAIT: Duration = Duration::from_secs(3600);
/// Default `--mesh-timeout`.
const DEFAULT_MESH_TIMEOUT: Duration = Duration::from_secs(60);
/// Default `--drain`.
const DEFAULT_DRAIN: Duration = Duration::from_secs(10);

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    // ---- Arguments ----

    #[test]
    fn defaults_are_the_reference_harness_defaults() {
        let o = GossipOptions::parse(&[]).unwrap();
        assert_eq!((o.nodes, o.messages, o.size, o.rate, o.seed), (20, 200, 1024, 100.0, 1));
        assert_eq!(o.degree, 3);
        assert_eq!((o.mesh_timeout, o.drain), (Duration::from_secs(60), Duration::from_secs(10)));
        assert!(!o.json);
        let o = GossipOptions::parse(&args("--rate 2.5 --drain 0.5 --json")).unwrap();
        assert_eq!((o.rate, o.drain, o.json), (2.5, Duration::from_millis(500), true));
    }

    #[test]
    fn refuses_bad_values_and_unknown_flags() {
        for bad in [
            "--nodes 1",
            "--messages 0",
            "--size 15",
            "--size 2000000",
            "--rate 0",
            "--rate -1",
            "--rate NaN",
            "--degree 0",
            "--drain -1",
            "--mesh-timeout 7200",
            "--nodes",
            "--size big",
        ] {
            assert!(GossipOptions::parse(&args(bad)).is_err(), "{bad}");
        }
        let err = crate::cli::usage::check("bench gossip", &args("--node 3")).unwrap_err();
        assert!(err.contains("unknown flag \"--node\"") && err.contains("--nodes"), "{err}");
    }

    // ---- Counting ----

    fn payload(index: u64, sent_ns: u64) -> Vec<u8> {
        [index.to_le_bytes(), sent_ns.to_le_bytes()].concat()
    }

    #[test]
    fn a_pair_counts_once_and_strays_are_set_apart() {
        let sources = [0, 1];
        let mut t = Tally { seen: vec![false; 3 * sources.len()], ..Tally::default() };
        t.record(1, &payload(0, 100), &sources, 350);
        t.record(2, &payload(0, 100), &sources, 500);
        t.record(2, &payload(0, 100), &sources, 900); // again
        t.record(1, &payload(1, 100), &sources, 900); // at its own publisher
        t.record(2, &payload(2, 100), &sources, 900); // no such message
        t.record(2, b"short", &sources, 900);
        assert_eq!((t.pairs, t.duplicates, t.stray), (2, 1, 3));
        assert_eq!(t.latencies_ns, vec![250, 400]);
    }

    // ---- Loopback ----

    #[test]
    fn every_message_reaches_every_other_node_on_loopback() {
        let opts = GossipOptions {
            nodes: 4,
            messages: 10,
            size: 64,
            ..GossipOptions::parse(&args("--rate 100 --seed 7")).unwrap()
        };
        let report = run(&opts).unwrap();
        assert!(report.mesh.ready, "{}", report.human());
        assert_eq!(report.delivered_fraction(), 1.0, "{}", report.human());
        assert_eq!((report.delivered_pairs, report.latency_ms.n), (30, 30));
        assert_eq!((report.publish_failures, report.stray_deliveries), (0, 0));
        assert_eq!(report.gossip.published, 10);
        let v: serde_json::Value = serde_json::from_str(&report.json()).unwrap();
        assert_eq!(v["bench"], "gossip");
        assert_eq!(v["delivered_fraction"], 1.0);
        assert_eq!((v["expected_pairs"].as_u64(), v["nodes"].as_u64()), (Some(30), Some(4)));
        for key in [
            "messages",
            "size",
            "rate",
            "seed",
            "degree",
            "delivered_pairs",
            "duplicate_deliveries",
            "publish_s",
            "publish_phase_s",
            "cpu_s_publish_phase",
            "wall_s",
            "cpu_s",
            "peak_rss_mib",
            "rss_per_node_kib",
            "dropped_sends",
            "mesh_min",
            "mesh_mean",
            "duplicates_received",
            "deliveries_per_cpu_s",
        ] {
            assert!(v[key].is_number(), "{key} in {v}");
        }
        for p in ["p50", "p90", "p99", "max", "mean", "n"] {
            assert!(v["latency_ms"][p].is_number(), "latency_ms.{p} in {v}");
        }
    }
}
