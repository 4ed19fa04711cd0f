//! `petrel bench idle`: what N connected nodes that do nothing cost, in CPU and memory. Its
//! flags and JSON follow the `idle` scenario of the rust-libp2p reference harness (`run_idle`
//! in shared/reference/libp2p-ref).
//!
//! Method:
//! 1. Read VmRSS before any node starts.
//! 2. Start N nodes with keys and overlay from `--seed` ([`fleet`]), as `bench gossip` does.
//!    Every node subscribes to one topic, so its gossip heartbeat has a mesh to keep.
//! 3. Wait until every node has a mesh peer (at most [`MESH_TIMEOUT`], the reference's bound),
//!    then let the nodes settle for `--settle` seconds.
//! 4. Measure `--seconds` seconds in which the bench thread only sleeps: `cpu_s_idle` is the
//!    process's CPU time over them, `cpu_ms_per_node_s` = `cpu_s_idle` · 1000 / N / T.
//!
//! `cpu_s`, `peak_rss_mib` and `rss_per_node_kib` are as in [`super::bench_gossip`]: the whole
//! process, read before the nodes shut down.

use std::thread;
use std::time::{Duration, Instant};

use crate::cli::bench_gossip::{MAX_NODES, TOPIC};
use crate::cli::fleet::{self, MeshWait, Meshed};
use crate::cli::report::{cpu_seconds, proc_status_kib};
use crate::cli::{parse_flag, parse_seconds, switch};
use crate::node::Handle;
use crate::rng::Rng;

/// The options of `petrel bench idle`.
#[derive(Debug, Clone, PartialEq)]
pub struct IdleOptions {
    /// Nodes (at least 2).
    pub nodes: usize,
    /// How long the idle measure lasts.
    pub seconds: Duration,
    /// Seed of keys and overlay.
    pub seed: u64,
    /// Earlier nodes each node dials.
    pub degree: usize,
    /// How long the nodes run, meshes formed, before the measure starts.
    pub settle: Duration,
    /// Print one JSON object on stdout.
    pub json: bool,
}

impl IdleOptions {
    /// Parses `--nodes N --seconds T [--seed S] [--degree D] [--settle SECS] [--json]`; the
    /// defaults are the reference's: 50, 20, 1, 3 and 10.
    pub fn parse(args: &[String]) -> Result<IdleOptions, String> {
        let opts = IdleOptions {
            nodes: parse_flag(args, "--nodes")?.unwrap_or(50),
            seconds: parse_seconds(args, "--seconds")?.unwrap_or(Duration::from_secs(20)),
            seed: parse_flag(args, "--seed")?.unwrap_or(1),
            degree: parse_flag(args, "--degree")?.unwrap_or(3),
            settle: parse_seconds(args, "--settle")?.unwrap_or(Duration::from_secs(10)),
            json: switch(args, "--json"),
        };
        if !(2..=MAX_NODES).contains(&opts.nodes) {
            return Err(format!("--nodes must be 2..={MAX_NODES}"));
        }
        if opts.seconds.is_zero() || opts.seconds > MAX_WAIT || opts.settle > MAX_WAIT {
            return Err(format!(
                "--seconds must be above 0, and it and --settle at most {MAX_WAIT:?}"
            ));
        }
        if opts.degree == 0 {
            return Err("--degree must be at least 1".into());
        }
        Ok(opts)
    }
}

/// What `petrel bench idle` measured.
#[derive(Debug, Clone, PartialEq)]
pub struct IdleReport {
    /// The options it ran with.
    pub opts: IdleOptions,
    /// The wait for the meshes.
    pub mesh: MeshWait,
    /// Mesh peers per node, mean, after the measure.
    pub mesh_mean_end: f64,
    /// Wall time of the measure, seconds (`--seconds` and the sleep's overshoot).
    pub idle_wall_s: f64,
    /// Process CPU time over the measure, seconds.
    pub cpu_s_idle: f64,
    /// Gossip heartbeats run over the measure, all nodes together.
    pub heartbeats_idle: u64,
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
pub fn run(opts: &IdleOptions) -> Result<IdleReport, String> {
    let started = Instant::now();
    let rss_before = proc_status_kib("VmRSS:").unwrap_or(0);
    let mut rng = Rng::new(opts.seed);
    // The subscriptions stay alive (unread) until the end: the nodes stay in the topic.
    let Meshed { nodes, handles, subs: _subs, mesh } =
        fleet::meshed(opts.nodes, &mut rng, opts.degree, TOPIC, MESH_TIMEOUT)?;
    eprintln!("bench idle: {} nodes, {}; settling {:?}", opts.nodes, mesh.human(), opts.settle);
    thread::sleep(opts.settle);

    let heartbeats_before = heartbeats(&handles);
    let cpu_before = cpu_seconds().unwrap_or(0.0);
    let idle_started = Instant::now();
    thread::sleep(opts.seconds);
    let idle_wall_s = idle_started.elapsed().as_secs_f64();
    let cpu_s_idle = cpu_seconds().unwrap_or(0.0) - cpu_before;
    let heartbeats_idle = heartbeats(&handles).saturating_sub(heartbeats_before);
    let sizes = fleet::mesh_sizes(&handles, TOPIC);

    let wall_s = started.elapsed().as_secs_f64();
    let cpu_s = cpu_seconds().unwrap_or(0.0);
    let peak = proc_status_kib("VmHWM:").unwrap_or(0);
    for node in nodes {
        node.shutdown();
    }
    Ok(IdleReport {
        opts: opts.clone(),
        mesh,
        mesh_mean_end: sizes.iter().sum::<usize>() as f64 / opts.nodes as f64,
        idle_wall_s,
        cpu_s_idle,
        heartbeats_idle,
        wall_s,
        cpu_s,
        peak_rss_mib: peak as f64 / 1024.0,
        rss_per_node_kib: peak.saturating_sub(rss_before) as f64 / opts.nodes as f64,
    })
}

/// Gossip heartbeats run so far, all nodes together.
fn heartbeats(handles: &[Handle]) -> u64 {
    let snapshots = handles.iter().filter_map(|h| h.snapshot().ok());
    snapshots.filter_map(|s| s.gossip).map(|g| g.heartbeats).sum()
}

impl IdleReport {
    /// Milliseconds of CPU per node per second of the measure.
    pub fn cpu_ms_per_node_s(&self) -> f64 {
        self.cpu_s_idle * 1000.0 / self.opts.nodes as f64 / self.opts.seconds.as_secs_f64()
    }

    /// A few lines for a person.
    pub fn human(&self) -> String {
        let o = &self.opts;
        format!(
            "bench idle: {} nodes, {:.1} s idle after {:.1} s settling, seed {}, degree {}\n  \
             cpu {:.2} s idle: {:.3} ms per node per second ({:.1}% of one core), \
             {} heartbeats\n  \
             meshes: min {} then mean {:.1}, at the end mean {:.1}\n  \
             wall {:.2} s, cpu {:.2} s, peak RSS {:.1} MiB, {:.0} KiB per node",
            o.nodes,
            o.seconds.as_secs_f64(),
            o.settle.as_secs_f64(),
            o.seed,
            o.degree,
            self.cpu_s_idle,
            self.cpu_ms_per_node_s(),
            100.0 * self.cpu_s_idle / self.idle_wall_s.max(f64::MIN_POSITIVE),
            self.heartbeats_idle,
            self.mesh.min,
            self.mesh.mean,
            self.mesh_mean_end,
            self.wall_s,
            self.cpu_s,
            self.peak_rss_mib,
            self.rss_per_node_kib
        )
    }

    /// One JSON object, on one line.
    pub fn json(&self) -> String {
        let o = &self.opts;
        format!(
            "{{\"bench\":\"idle\",\"nodes\":{},\"seconds\":{:.3},\"seed\":{},\"degree\":{},\
             \"settle_s\":{:.3},\"mesh_ready\":{},\"mesh_wait_s\":{:.3},\"mesh_min\":{},\
             \"mesh_mean\":{:.2},\"mesh_mean_end\":{:.2},\"idle_wall_s\":{:.3},\
             \"cpu_s_idle\":{:.2},\"cpu_ms_per_node_s\":{:.4},\"heartbeats_idle\":{},\
             \"wall_s\":{:.3},\"cpu_s\":{:.2},\"peak_rss_mib\":{:.1},\"rss_per_node_kib\":{:.0}}}",
            o.nodes,
            o.seconds.as_secs_f64(),
            o.seed,
            o.degree,
            o.settle.as_secs_f64(),
            self.mesh.ready,
            self.mesh.wait_s,
            self.mesh.min,
            self.mesh.mean,
            self.mesh_mean_end,
            self.idle_wall_s,
            self.cpu_s_idle,
            self.cpu_ms_per_node_s(),
            self.heartbeats_idle,
            self.wall_s,
            self.cpu_s,
            self.peak_rss_mib,
            self.rss_per_node_kib
        )
    }
}

/// Longest wait for every node to have a mesh peer (the reference's, which has no flag for it).
pub const MESH_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest `--seconds` and `--settle`.
const MAX_WAIT: Duration = Duration::from_secs(24 * 3600);

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn defaults_are_the_reference_harness_defaults() {
        let o = IdleOptions::parse(&[]).unwrap();
        assert_eq!((o.nodes, o.seconds, o.seed, o.degree), (50, Duration::from_secs(20), 1, 3));
        assert_eq!((o.settle, o.json), (Duration::from_secs(10), false));
        assert!(IdleOptions::parse(&args("--nodes 1")).is_err());
        assert!(IdleOptions::parse(&args("--seconds 0")).is_err());
        assert!(IdleOptions::parse(&args("--settle -2")).is_err());
        assert!(crate::cli::usage::check("bench idle", &args("--secs 3")).is_err());
    }

    #[test]
    fn cpu_per_node_second_divides_by_nodes_and_seconds() {
        let report = IdleReport {
            opts: IdleOptions {
                nodes: 4,
                seconds: Duration::from_secs(2),
                ..IdleOptions::parse(&[]).unwrap()
            },
            mesh: MeshWait::default(),
            mesh_mean_end: 0.0,
            idle_wall_s: 2.0,
            cpu_s_idle: 0.1,
            heartbeats_idle: 8,
            wall_s: 3.0,
            cpu_s: 0.5,
            peak_rss_mib: 10.0,
            rss_per_node_kib: 100.0,
        };
        assert!((report.cpu_ms_per_node_s() - 12.5).abs() < 1e-9);
        let v: serde_json::Value = serde_json::from_str(&report.json()).unwrap();
        assert_eq!((v["bench"].as_str(), v["nodes"].as_u64()), (Some("idle"), Some(4)));
        for key in ["seconds", "cpu_s_idle", "cpu_s", "wall_s", "peak_rss_mib", "rss_per_node_kib"]
        {
            assert!(v[key].is_number(), "{key} in {v}");
        }
        assert_eq!(v["cpu_ms_per_node_s"], 12.5);
    }
}
