//! `petrel bench dht`: the DHT end to end on real sockets and real TLS, N nodes in one process
//! on 127.0.0.1.
//!
//! Method (the JSON fields are named after these steps):
//! 1. Read VmRSS before any node starts.
//! 2. Start N nodes; keys, overlay and records derive from `--seed`. Node i dials `--degree`
//!    random earlier nodes. Then every node runs a bootstrap (a self-lookup) concurrently, one
//!    thread per node, and the run waits for all. `bootstrap_s` covers the dials and the
//!    bootstraps.
//! 3. PUT `--records` values of `--value-size` random bytes, each from a random node,
//!    `--concurrency` in flight.
//! 4. GET each record from a random node other than its publisher that does not hold it in
//!    its own store, `--concurrency` in flight.
//!
//! Latencies are per call as the application sees them (the `Handle` round trip included);
//! percentiles are nearest-rank. `cpu_s` is the whole process (user + system),
//! `peak_rss_mib` its VmHWM, `rss_per_node_kib` = (VmHWM − VmRSS before step 2) / N.
//!
//! Limits: the nodes keep every default except the per-source admission rate, raised to the
//! node-wide one, because all N nodes share the source address 127.0.0.1 (on a real network
//! each peer has its own); see [`fleet::start_nodes`].

use std::fmt::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use crate::cli::fleet;
use crate::cli::parse_flag;
use crate::cli::report::{cpu_seconds, proc_status_kib};
use crate::cli::switch;
use crate::config::Config;
use crate::node::{Handle, Node};
use crate::rng::Rng;
use crate::stats::percentile;
use crate::wire::messages::Key;

/// Stack of the short-lived bootstrap and worker threads: they only wait on a channel.
const THREAD_STACK_BYTES: usize = 64 * 1024;
/// Random nodes tried when looking for a reader that does not hold a record.
const READER_TRIES: usize = 64;

/// The options of `petrel bench dht`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DhtOptions {
    /// Nodes (at least 2).
    pub nodes: usize,
    /// Records put and then got.
    pub records: usize,
    /// Bytes per value (1 ..= 65,536).
    pub value_size: usize,
    /// Seed of keys, overlay, publishers, readers and values.
    pub seed: u64,
    /// Earlier nodes each node dials.
    pub degree: usize,
    /// Calls in flight during the PUT and GET phases.
    pub concurrency: usize,
    /// Print one JSON object on stdout.
    pub json: bool,
    /// Give node i the data directory `DIR/node-i` (`--persist DIR`): every STORE is
    /// answered once written to its log (sync = batch); the directory is emptied first.
    pub persist: Option<std::path::PathBuf>,
    /// With `--persist`: the durability mode (`--sync none|batch|always`, default batch).
    pub sync: crate::store::SyncMode,
}

impl DhtOptions {
    /// Parses `--nodes N --records R --value-size B --seed S [--degree D] [--concurrency C]
    /// [--persist DIR [--sync MODE]] [--json]`; defaults 100, 200, 256, 1, 3, 1 (one call at a time: latencies without
    /// queueing; raise `--concurrency` to load the nodes).
    pub fn parse(args: &[String]) -> Result<DhtOptions, String> {
        let opts = DhtOptions {
            nodes: parse_flag(args, "--nodes")?.unwrap_or(100),
            records: parse_flag(args, "--records")?.unwrap_or(200),
            value_size: parse_flag(args, "--value-size")?.unwrap_or(256),
            seed: parse_flag(args, "--seed")?.unwrap_or(1),
            degree: parse_flag(args, "--degree")?.unwrap_or(3),
            concurrency: parse_flag(args, "--concurrency")?.unwrap_or(1),
            json: switch(args, "--json"),
            persist: crate::cli::flag(args, "--persist")?.map(std::path::PathBuf::from),
            sync: parse_flag(args, "--sync")?.unwrap_or(crate::store::SyncMode::Batch),
        };
        if !(2..=2000).contains(&opts.nodes) {
            return Err("--nodes must be 2..=2000".into());
        }
        if opts.value_size == 0 || opts.value_size > crate::wire::messages::MAX_VALUE_BYTES {
            return Err("--value-size must be 1..=65536".into());
        }
        if opts.degree == 0 || opts.concurrency == 0 {
            return Err("--degree and --concurrency must be at least 1".into());
        }
        Ok(opts)
    }
}

/// Latency figures in milliseconds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Latency {
    /// Successful calls measured.
    pub n: usize,
    /// Nearest-rank percentiles and the extremes.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest.
    pub max: f64,
    /// Arithmetic mean.
    pub mean: f64,
}

impl Latency {
    /// The figures of `micros`, a latency in microseconds per call, in any order.
    pub(crate) fn of(mut micros: Vec<u64>) -> Latency {
        micros.sort_unstable();
        let ms = |us: u64| us as f64 / 1000.0;
        let mean = if micros.is_empty() {
            0.0
        } else {
            micros.iter().sum::<u64>() as f64 / micros.len() as f64 / 1000.0
        };
        Latency {
            n: micros.len(),
            p50: ms(percentile(&micros, 50.0).unwrap_or(0)),
            p90: ms(percentile(&micros, 90.0).unwrap_or(0)),
            p99: ms(percentile(&micros, 99.0).unwrap_or(0)),
            max: ms(micros.last().copied().unwrap_or(0)),
            mean,
        }
    }

    /// One JSON object: `{"p50":..,"p90":..,"p99":..,"max":..,"mean":..,"n":..}`.
    pub(crate) fn json(&self) -> String {
        format!(
            "{{\"p50\":{:.3},\"p90\":{:.3},\"p99\":{:.3},\"max\":{:.3},\"mean\":{:.3},\"n\":{}}}",
            self.p50, self.p90, self.p99, self.max, self.mean, self.n
        )
    }
}

/// What `petrel bench dht` measured.
#[derive(Debug, Clone, PartialEq)]
pub struct DhtReport {
    /// The options it ran with.
    pub opts: DhtOptions,
    /// Dials plus concurrent bootstraps, seconds.
    pub bootstrap_s: f64,
    /// Bootstraps that failed.
    pub bootstrap_failures: usize,
    /// PUTs stored on at least one peer, as a fraction of `records`.
    pub put_success_fraction: f64,
    /// GETs that returned the right value, as a fraction of the records put.
    pub get_success_fraction: f64,
    /// PUT latency.
    pub put_latency_ms: Latency,
    /// GET latency.
    pub get_latency_ms: Latency,
    /// Requests per PUT (lookup and STOREs).
    pub put_rpcs_mean: f64,
    /// Requests per GET lookup.
    pub get_rpcs_mean: f64,
    /// Peers that stored each PUT, mean.
    pub put_replicas_mean: f64,
    /// Lookup rounds per GET, mean.
    pub get_rounds_mean: f64,
    /// Requests that left on a fresh dial with the dialer's Hello (handshake.md §2.1), all
    /// nodes together: each saved a round trip.
    pub requests_pipelined: u64,
    /// Lookups that used the wider first round and connecting ahead (round trips measured
    /// long, or none yet), and the connections opened ahead, over all nodes.
    pub wide_lookups: u64,
    /// See `wide_lookups`.
    pub preconnects: u64,
    /// Mean over the nodes of each one's mean measured round trip, ms: what the lookups' rule
    /// (`dht.lookup.wide_min_rtt`) compares.
    pub mean_srtt_ms: f64,
    /// Wall time of the whole run, seconds.
    pub wall_s: f64,
    /// CPU time of the process, seconds.
    pub cpu_s: f64,
    /// VmHWM, MiB.
    pub peak_rss_mib: f64,
    /// (VmHWM − RSS before the nodes) / N, KiB.
    pub rss_per_node_kib: f64,
    /// What went wrong inside the nodes, summed over all of them (from their snapshots):
    /// on a lossless loopback every one of these should be small.
    pub trouble: Trouble,
}

/// Counters of trouble summed over every node of a run, from `Handle::snapshot`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Trouble {
    /// Requests that got no response in time.
    pub requests_timed_out: u64,
    /// Requests never sent: no connection could be made, or a bound was reached.
    pub requests_unsent: u64,
    /// Inbound connections the connection tables refused.
    pub refused_inbound: u64,
    /// Idle connections closed to make room.
    pub connections_pruned: u64,
    /// Duplicate connections closed (simultaneous dials).
    pub duplicates_closed: u64,
    /// Dials that failed.
    pub dial_failures: u64,
    /// Connections that did not authenticate in time.
    pub connect_timeouts: u64,
    /// Accepts that failed for want of descriptors.
    pub accept_errors: u64,
    /// Connections established (each a TLS handshake and a Hello exchange).
    pub established: u64,
    /// Dial-backs of inbound peers' claimed addresses (each a TLS handshake).
    pub dial_backs: u64,
}

impl Trouble {
    fn add(&mut self, s: &crate::Snapshot) {
        self.requests_timed_out += s.core.requests_timed_out;
        self.requests_unsent += s.core.requests_unsent;
        self.refused_inbound += s.core.refused_inbound;
        self.connections_pruned += s.core.connections_pruned;
        self.duplicates_closed += s.peers.duplicates_closed;
        self.dial_failures += s.peers.dial_failures;
        self.connect_timeouts += s.peers.connect_timeouts;
        self.accept_errors += s.reactor.accept_errors;
        self.established += s.peers.established;
        self.dial_backs += s.core.probes_started;
    }

    fn json(&self) -> String {
        format!(
            "{{\"requests_timed_out\":{},\"requests_unsent\":{},\"refused_inbound\":{},\
             \"connections_pruned\":{},\"duplicates_closed\":{},\"dial_failures\":{},\
             \"connect_timeouts\":{},\"accept_errors\":{},\"established\":{},\"dial_backs\":{}}}",
            self.requests_timed_out,
            self.requests_unsent,
            self.refused_inbound,
            self.connections_pruned,
            self.duplicates_closed,
            self.dial_failures,
            self.connect_timeouts,
            self.accept_errors,
            self.established,
            self.dial_backs
        )
    }
}

/// Runs the benchmark described in the module doc.
pub fn run(opts: &DhtOptions) -> Result<DhtReport, String> {
    let started = Instant::now();
    let rss_before = proc_status_kib("VmRSS:").unwrap_or(0);
    let mut rng = Rng::new(opts.seed);
    let nodes = start_nodes(opts, &mut rng)?;
    let handles: Vec<Handle> = nodes.iter().map(Node::handle).collect();

    let boot_started = Instant::now();
    fleet::connect_overlay(&nodes, &mut rng, opts.degree)?;
    let bootstrap_failures = run_jobs(handles.len(), handles.len(), |i| handles[i].bootstrap())
        .into_iter()
        .filter(Result::is_err)
        .count();
    let bootstrap_s = boot_started.elapsed().as_secs_f64();
    eprintln!("bench dht: {} nodes bootstrapped in {bootstrap_s:.3} s", nodes.len());

    // Values and publishers, all from the seed.
    let records: Vec<(usize, Vec<u8>)> = (0..opts.records)
        .map(|_| {
            let publisher = rng.below(nodes.len() as u64) as usize;
            let mut value = vec![0u8; opts.value_size];
            for chunk in value.chunks_mut(8) {
                let bytes = rng.next_u64().to_le_bytes();
                chunk.copy_from_slice(&bytes[..chunk.len()]);
            }
            (publisher, value)
        })
        .collect();

    let puts = run_jobs(opts.concurrency, records.len(), |i| {
        let (publisher, value) = &records[i];
        let t = Instant::now();
        let r = handles[*publisher].put(value.clone());
        (t.elapsed(), r.ok())
    });
    let put_ok: Vec<_> = puts.iter().filter_map(|(d, r)| r.as_ref().map(|p| (*d, p))).collect();
    eprintln!("bench dht: {} of {} records put", put_ok.len(), records.len());

    // Readers: not the publisher, and not holding the record locally.
    let mut readers = Vec::with_capacity(records.len());
    for (i, (publisher, _)) in records.iter().enumerate() {
        let Some(key) = puts[i].1.as_ref().map(|p| p.key) else { continue };
        if let Some(reader) = pick_reader(&handles, &mut rng, *publisher, key) {
            readers.push((i, reader, key));
        }
    }
    let gets = run_jobs(opts.concurrency, readers.len(), |j| {
        let (i, reader, key) = readers[j];
        let t = Instant::now();
        let r = handles[reader].get(key);
        let ok = matches!(&r, Ok(Some(found)) if found.record.value() == records[i].1.as_slice());
        (t.elapsed(), r.ok().flatten().filter(|_| ok))
    });
    let get_ok: Vec<_> = gets.iter().filter_map(|(d, r)| r.as_ref().map(|f| (*d, f))).collect();
    eprintln!("bench dht: {} of {} records got", get_ok.len(), readers.len());

    let (mut trouble, mut requests_pipelined) = (Trouble::default(), 0);
    let (mut wide_lookups, mut preconnects, mut srtt_us, mut measured) = (0, 0, 0, 0u64);
    for snapshot in handles.iter().filter_map(|h| h.snapshot().ok()) {
        trouble.add(&snapshot);
        requests_pipelined += snapshot.core.requests_pipelined;
        wide_lookups += snapshot.dht.wide_lookups;
        preconnects += snapshot.core.preconnects;
        if snapshot.dht.quality.mean_srtt_us > 0 {
            srtt_us += snapshot.dht.quality.mean_srtt_us;
            measured += 1;
        }
    }
    let mean_srtt_ms = srtt_us as f64 / measured.max(1) as f64 / 1000.0;
    for node in nodes {
        node.shutdown();
    }
    let peak = proc_status_kib("VmHWM:").unwrap_or(0);
    let put_n = put_ok.len().max(1) as f64;
    let get_n = get_ok.len().max(1) as f64;
    Ok(DhtReport {
        opts: opts.clone(),
        bootstrap_s,
        bootstrap_failures,
        put_success_fraction: fraction(put_ok.len(), records.len()),
        get_success_fraction: fraction(get_ok.len(), put_ok.len()),
        put_latency_ms: Latency::of(put_ok.iter().map(|(d, _)| micros(*d)).collect()),
        get_latency_ms: Latency::of(get_ok.iter().map(|(d, _)| micros(*d)).collect()),
        put_rpcs_mean: put_ok.iter().map(|(_, p)| f64::from(p.rpcs)).sum::<f64>() / put_n,
        get_rpcs_mean: get_ok.iter().map(|(_, f)| f64::from(f.stats.rpcs)).sum::<f64>() / get_n,
        put_replicas_mean: put_ok.iter().map(|(_, p)| p.stored as f64).sum::<f64>() / put_n,
        get_rounds_mean: get_ok.iter().map(|(_, f)| f64::from(f.stats.rounds)).sum::<f64>() / get_n,
        requests_pipelined,
        wide_lookups,
        preconnects,
        mean_srtt_ms,
        wall_s: started.elapsed().as_secs_f64(),
        cpu_s: cpu_seconds().unwrap_or(0.0),
        peak_rss_mib: peak as f64 / 1024.0,
        rss_per_node_kib: peak.saturating_sub(rss_before) as f64 / opts.nodes as f64,
        trouble,
    })
}

fn start_nodes(opts: &DhtOptions, rng: &mut Rng) -> Result<Vec<Node>, String> {
    if let Some(dir) = &opts.persist {
        let _ = std::fs::remove_dir_all(dir);
    }
    fleet::start_nodes(opts.nodes, rng, |i, config| Config {
        data_dir: opts.persist.as_ref().map(|d| d.join(format!("node-{i}"))),
        sync: opts.sync,
        ..config
    })
}

/// A random node other than `publisher` that does not hold `key` itself.
fn pick_reader(handles: &[Handle], rng: &mut Rng, publisher: usize, key: Key) -> Option<usize> {
    (0..READER_TRIES).find_map(|_| {
        let i = rng.below(handles.len() as u64) as usize;
        (i != publisher && handles[i].holds(key) == Ok(false)).then_some(i)
    })
}

/// Runs jobs `0..count` on `threads` threads; results in job order.
fn run_jobs<T: Send>(threads: usize, count: usize, job: impl Fn(usize) -> T + Sync) -> Vec<T> {
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<T>>> = Mutex::new((0..count).map(|_| None).collect());
    thread::scope(|scope| {
        for _ in 0..threads.min(count).max(1) {
            let spawned = thread::Builder::new().stack_size(THREAD_STACK_BYTES).spawn_scoped(
                scope,
                || loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= count {
                        return;
                    }
                    let r = job(i);
                    if let Ok(mut all) = results.lock() {
                        all[i] = Some(r);
                    }
                },
            );
            if spawned.is_err() {
                break; // fewer threads: the spawned ones take every job
            }
        }
    });
    results.into_inner().unwrap_or_default().into_iter().flatten().collect()
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

fn fraction(part: usize, whole: usize) -> f64 {
    if whole == 0 {
        return 0.0;
    }
    part as f64 / whole as f64
}

impl DhtReport {
    /// A few lines for a person.
    pub fn human(&self) -> String {
        let mut s = String::new();
        let o = &self.opts;
        let _ = writeln!(
            s,
            "bench dht: {} nodes, {} records of {} B, seed {}",
            o.nodes, o.records, o.value_size, o.seed
        );
        let _ = writeln!(
            s,
            "  bootstrap {:.3} s ({} failed)",
            self.bootstrap_s, self.bootstrap_failures
        );
        for (name, frac, lat, rpcs) in [
            ("put", self.put_success_fraction, &self.put_latency_ms, self.put_rpcs_mean),
            ("get", self.get_success_fraction, &self.get_latency_ms, self.get_rpcs_mean),
        ] {
            let _ = writeln!(
                s,
                "  {name}: {:.1}% ok, p50 {:.3} ms, p90 {:.3} ms, p99 {:.3} ms, max {:.3} ms, \
                 {rpcs:.1} rpcs",
                frac * 100.0,
                lat.p50,
                lat.p90,
                lat.p99,
                lat.max
            );
        }
        let _ = write!(
            s,
            "  wall {:.2} s, cpu {:.2} s, peak RSS {:.1} MiB, {:.0} KiB per node",
            self.wall_s, self.cpu_s, self.peak_rss_mib, self.rss_per_node_kib
        );
        s
    }

    /// One JSON object.
    pub fn json(&self) -> String {
        let o = &self.opts;
        format!(
            "{{\"bench\":\"dht\",\"nodes\":{},\"records\":{},\"value_size\":{},\"seed\":{},\
             \"persist\":{},\
             \"degree\":{},\"concurrency\":{},\"bootstrap_s\":{:.3},\"bootstrap_failures\":{},\
             \"put_success_fraction\":{:.4},\"get_success_fraction\":{:.4},\
             \"put_latency_ms\":{},\"get_latency_ms\":{},\"put_rpcs_mean\":{:.2},\
             \"get_rpcs_mean\":{:.2},\"put_replicas_mean\":{:.2},\"get_rounds_mean\":{:.2},\
             \"requests_pipelined\":{},\"wide_lookups\":{},\"preconnects\":{},\
             \"mean_srtt_ms\":{:.3},\"wall_s\":{:.3},\"cpu_s\":{:.2},\"peak_rss_mib\":{:.1},\"rss_per_node_kib\":{:.0},\
             \"trouble\":{}}}",
            o.nodes,
            o.records,
            o.value_size,
            o.seed,
            o.persist.is_some(),
            o.degree,
            o.concurrency,
            self.bootstrap_s,
            self.bootstrap_failures,
            self.put_success_fraction,
            self.get_success_fraction,
            self.put_latency_ms.json(),
            self.get_latency_ms.json(),
            self.put_rpcs_mean,
            self.get_rpcs_mean,
            self.put_replicas_mean,
            self.get_rounds_mean,
            self.requests_pipelined,
            self.wide_lookups,
            self.preconnects,
            self.mean_srtt_ms,
            self.wall_s,
            self.cpu_s,
            self.peak_rss_mib,
            self.rss_per_node_kib,
            self.trouble.json()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn defaults_match_the_issue_scenario() {
        let o = DhtOptions::parse(&[]).unwrap();
        assert_eq!((o.nodes, o.records, o.value_size, o.degree), (100, 200, 256, 3));
        assert!(DhtOptions::parse(&args("--nodes 1")).is_err());
        assert!(DhtOptions::parse(&args("--value-size 70000")).is_err());
        assert!(DhtOptions::parse(&args("--concurrency 0")).is_err());
    }

    #[test]
    fn latency_uses_nearest_rank_in_milliseconds() {
        let l = Latency::of((1..=100).map(|i| i * 1000).collect());
        assert_eq!((l.n, l.p50, l.p90, l.p99, l.max), (100, 50.0, 90.0, 99.0, 100.0));
        assert!((l.mean - 50.5).abs() < 1e-9);
        assert_eq!(Latency::of(vec![]).n, 0);
    }

    #[test]
    fn jobs_run_once_each_in_order() {
        let out = run_jobs(3, 10, |i| i * 2);
        assert_eq!(out, (0..10).map(|i| i * 2).collect::<Vec<_>>());
    }
}
