//! `petrel sim dht`: a DHT scenario on the deterministic simulator, one JSON object on stdout.
//!
//! `petrel sim dht --nodes N --lookups L --seed S [--latency-ms A..B] [--placement
//! uniform|plane] [--loss P] [--churn P] [--adversarial FRACTION --attack KIND] [--disjoint D]
//! [--get] [--max-connections N] [--idle-timeout-s S] [--no-pipelining] [--settled J]`.
//!
//! `--settled J` starts the network settled, with only its last J nodes joining
//! ([`crate::sim::dht::Start::Settled`]): how a run of 100,000 nodes fits a minute and a few GiB.
//! `--max-connections` and `--idle-timeout-s` set every node's connection cap (half inbound, half
//! outbound) and idle timeout (defaults 256 and 60 s). `--placement plane` puts the nodes on a
//! plane: a link's latency grows with the distance between its ends, from A (same point) to B
//! (across the diagonal). KIND is `silent`, `fabricate`, `bad-records`, `eclipse`,
//! `dead-addresses`, `loopback-claims` or `flood`. `--get` measures GETs of records PUT first
//! (implied by `--attack bad-records`) instead of FIND_NODE lookups. `--no-pipelining` holds a
//! dialer's requests until the peer's Hello (a round trip later) instead of sending them with
//! its own, to measure what pipelining saves. The method is in [`crate::sim::dht`].

use std::time::{Duration, Instant};

use crate::bytes::hex_encode;
use crate::cli::{flag, parse_flag, switch};
use crate::core::PeerLimits;
use crate::sim::dht::{self, DhtReport, DhtScenario, LookupKind, Spread, Start};
use crate::sim::{LatencyModel, NodeKind};

/// Runs `petrel sim KIND [options]`.
pub fn main(args: &[String]) -> Result<(), String> {
    match args.split_first() {
        Some((kind, rest)) if kind == "dht" => {
            if super::usage::check("sim dht", rest)? == super::usage::Checked::Helped {
                return Ok(());
            }
            let scenario = parse(rest)?;
            let started = Instant::now();
            let report = dht::run(&scenario);
            println!("{}", json(&scenario, &report, started.elapsed()));
            Ok(())
        }
        Some((kind, rest)) if kind == "gossip" => {
            if super::usage::check("sim gossip", rest)? == super::usage::Checked::Helped {
                return Ok(());
            }
            super::sim_gossip::main(rest)
        }
        Some((other, _)) => Err(format!("unknown sim kind {other:?}; kinds: dht, gossip")),
        None => Err("sim needs a kind: dht or gossip".into()),
    }
}

/// Parses the options of `petrel sim dht` (module doc).
pub fn parse(args: &[String]) -> Result<DhtScenario, String> {
    let nodes = parse_flag(args, "--nodes")?.unwrap_or(1000);
    let lookups = parse_flag(args, "--lookups")?.unwrap_or(100);
    let seed = parse_flag(args, "--seed")?.unwrap_or(1);
    if !(2..=100_000).contains(&nodes) {
        return Err("--nodes must be 2..=100000".into());
    }
    let mut sc = DhtScenario::new(nodes, lookups, seed);
    if let Some(range) = flag(args, "--latency-ms")? {
        sc.latency = latency(range)?;
    }
    match flag(args, "--placement")? {
        None | Some("uniform") => {}
        // Nodes on a plane: `--latency-ms A..B` becomes same-point and diagonal latency.
        Some("plane") => {
            let (min, max) = match sc.latency {
                LatencyModel::Uniform { min, max } => (min, max),
                LatencyModel::Fixed(d) => (d, d),
                _ => (Duration::from_millis(10), Duration::from_millis(100)),
            };
            sc.latency = LatencyModel::Plane { min, max };
        }
        Some(other) => return Err(format!("--placement {other:?}: one of uniform, plane")),
    }
    sc.loss = fraction(args, "--loss")?.unwrap_or(0.0);
    sc.churn = fraction(args, "--churn")?.unwrap_or(0.0);
    sc.adversarial = fraction(args, "--adversarial")?.unwrap_or(0.0);
    sc.disjoint = parse_flag(args, "--disjoint")?.unwrap_or(0);
    if let Some(max) = parse_flag::<usize>(args, "--max-connections")? {
        if !(2..=65_536).contains(&max) {
            return Err("--max-connections must be 2..=65536".into());
        }
        // Split as the defaults split theirs: half inbound, half outbound.
        let half = max / 2;
        sc.limits = PeerLimits {
            max_connections: max,
            max_inbound: half,
            max_outbound: max - half,
            ..sc.limits
        };
    }
    if let Some(s) = parse_flag::<u64>(args, "--idle-timeout-s")? {
        if !(1..=3600).contains(&s) {
            return Err("--idle-timeout-s must be 1..=3600".into());
        }
        sc.limits.idle_timeout = Duration::from_secs(s);
    }
    if sc.disjoint > 16 {
        return Err("--disjoint must be 0..=16".into());
    }
    if let Some(kind) = flag(args, "--attack")? {
        sc.attack = match kind {
            "silent" => NodeKind::Silent,
            "fabricate" => NodeKind::FabricateCloser,
            "bad-records" => NodeKind::BadRecords,
            "eclipse" => NodeKind::Eclipse,
            "dead-addresses" => NodeKind::DeadAddresses,
            "loopback-claims" => NodeKind::LoopbackClaims,
            "flood" => NodeKind::Flood { requests_per_sec: 100 },
            other => {
                return Err(format!(
                    "--attack {other:?}: expected silent, fabricate, bad-records, eclipse, \
                     dead-addresses, loopback-claims or flood"
                ))
            }
        };
    }
    sc.pipelining = !switch(args, "--no-pipelining");
    if let Some(joining) = parse_flag::<usize>(args, "--settled")? {
        if joining > nodes {
            return Err("--settled must be 0..=--nodes".into());
        }
        sc.start = Start::Settled { joining };
    }
    if switch(args, "--get") || sc.attack == NodeKind::BadRecords {
        sc.kind = LookupKind::Get;
    }
    Ok(sc)
}

fn fraction(args: &[String], name: &str) -> Result<Option<f64>, String> {
    let v: Option<f64> = parse_flag(args, name)?;
    match v {
        Some(p) if !(0.0..=1.0).contains(&p) => Err(format!("{name} must be within 0..=1")),
        _ => Ok(v),
    }
}

/// `A..B` (milliseconds, uniform per link) or `A` (fixed); shared with `sim gossip`.
pub fn latency(range: &str) -> Result<LatencyModel, String> {
    let ms = |s: &str| -> Result<Duration, String> {
        let v: u64 = s.trim().parse().map_err(|_| format!("--latency-ms {range:?}: not A..B"))?;
        Ok(Duration::from_millis(v))
    };
    match range.split_once("..") {
        Some((a, b)) => {
            let (min, max) = (ms(a)?, ms(b)?);
            if min > max {
                return Err(format!("--latency-ms {range:?}: A must not exceed B"));
            }
            Ok(LatencyModel::Uniform { min, max })
        }
        None => Ok(LatencyModel::Fixed(ms(range)?)),
    }
}

/// `{"p50":…,"p90":…,"p99":…,"max":…}` with `decimals` digits after the point.
fn spread(s: &Spread, decimals: usize) -> String {
    let [p50, p90, p99, max] = [s.p50, s.p90, s.p99, s.max];
    format!(
        "{{\"p50\":{p50:.decimals$},\"p90\":{p90:.decimals$},\"p99\":{p99:.decimals$},\"max\":{max:.decimals$}}}"
    )
}

/// The report as one JSON object.
pub fn json(sc: &DhtScenario, r: &DhtReport, wall: Duration) -> String {
    let wall_s = wall.as_secs_f64();
    let events_per_sec = if wall_s > 0.0 { r.sim.events as f64 / wall_s } else { 0.0 };
    let attack = match sc.attack {
        NodeKind::Silent => "silent",
        NodeKind::FabricateCloser => "fabricate",
        NodeKind::BadRecords => "bad-records",
        NodeKind::Eclipse => "eclipse",
        NodeKind::DeadAddresses => "dead-addresses",
        NodeKind::LoopbackClaims => "loopback-claims",
        NodeKind::Flood { .. } => "flood",
        NodeKind::Honest | NodeKind::Gossip(_) => "none",
    };
    let placement = match sc.latency {
        LatencyModel::Plane { .. } => "plane",
        LatencyModel::Matrix(_) => "matrix",
        LatencyModel::Fixed(_) | LatencyModel::Uniform { .. } => "uniform",
    };
    let (start, joining) = match sc.start {
        Start::Joins => ("joins", sc.nodes),
        Start::Settled { joining } => ("settled", joining),
    };
    // The process's peak resident memory so far: the run's, since it is most of the process.
    let peak_rss_mib = super::report::proc_status_kib("VmHWM:").unwrap_or(0) as f64 / 1024.0;
    format!(
        "{{\"sim\":\"dht\",\"start\":\"{start}\",\"joining\":{joining},\"nodes\":{},\"honest\":{},\"adversaries\":{},\"attack\":\"{attack}\",\
         \"placement\":\"{placement}\",\"pipelining\":{},\
         \"seed\":{},\"lookup\":\"{}\",\"disjoint\":{},\"loss\":{},\"churn\":{},\
         \"churned\":{{\"left\":{},\"returned\":{}}},\"puts\":{{\"attempted\":{},\"stored\":{},\"latency_ms\":{}}},\
         \"lookups\":{},\"abandoned\":{},\"succeeded\":{},\"success_fraction\":{:.4},\"rounds\":{},\"rpcs\":{},\
         \"latency_ms\":{},\"virtual_s\":{:.1},\"wall_s\":{:.3},\"events\":{},\
         \"events_per_sec\":{:.0},\"peak_rss_mib\":{peak_rss_mib:.1},\"messages\":{},\"dials\":{},\
         \"tables\":{{\"entries\":{},\"misplaced\":{},\"unverified\":{},\"claims_dropped\":{}}},\
         \"connections\":{{\"max\":{},\"idle_timeout_s\":{}}},\
         \"requests_pipelined\":{},\"early_stores\":{},\"preconnects\":{},\
         \"trace_digest\":\"{}\"}}",
        sc.nodes,
        r.honest,
        r.adversaries,
        sc.pipelining,
        sc.seed,
        if sc.kind == LookupKind::Get { "get" } else { "find_node" },
        sc.disjoint,
        sc.loss,
        sc.churn,
        r.churned.0,
        r.churned.1,
        r.puts.0,
        r.puts.1,
        spread(&r.put_latency_ms, 1),
        r.lookups,
        r.abandoned,
        r.succeeded,
        r.success_fraction(),
        spread(&r.rounds, 0),
        spread(&r.rpcs, 0),
        spread(&r.latency_ms, 1),
        r.virtual_s,
        wall_s,
        r.sim.events,
        events_per_sec,
        r.sim.messages_delivered,
        r.sim.dials,
        r.tables.entries,
        r.tables.misplaced,
        r.tables.unverified,
        r.tables.claims_dropped,
        sc.limits.max_connections,
        sc.limits.idle_timeout.as_secs(),
        r.requests_pipelined,
        r.early_stores,
        r.preconnects,
        hex_encode(&r.trace_digest[..8]),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn connection_limits_default_to_the_nodes_defaults() {
        let sc = parse(&args("--nodes 10")).unwrap();
        assert_eq!(sc.limits, PeerLimits::DEFAULT);
    }

    #[test]
    fn max_connections_splits_like_the_defaults_and_is_bounded() {
        let sc = parse(&args("--max-connections 65 --idle-timeout-s 10")).unwrap();
        let l = sc.limits;
        assert_eq!((l.max_connections, l.max_inbound, l.max_outbound), (65, 32, 33));
        assert_eq!(l.idle_timeout, Duration::from_secs(10));
        assert_eq!(l.max_per_peer, PeerLimits::DEFAULT.max_per_peer, "the rest untouched");
        for bad in ["--max-connections 1", "--max-connections 65537", "--idle-timeout-s 0"] {
            assert!(parse(&args(bad)).is_err(), "{bad}");
        }
        assert!(parse(&args("--idle-timeout-s 3601")).is_err());
        assert!(parse(&args("--max-connections 2 --idle-timeout-s 3600")).is_ok());
    }

    #[test]
    fn every_node_joins_unless_the_network_starts_settled() {
        assert_eq!(parse(&args("--nodes 10")).unwrap().start, Start::Joins);
        let sc = parse(&args("--nodes 10 --lookups 5 --settled 3")).unwrap();
        assert_eq!(sc.start, Start::Settled { joining: 3 });
        assert!(parse(&args("--nodes 10 --settled 0")).is_ok());
        for bad in ["--nodes 10 --settled 11", "--nodes 10 --settled -1", "--settled x"] {
            assert!(parse(&args(bad)).is_err(), "{bad}");
        }
        let out = json(&sc, &dht::run(&sc), Duration::from_secs(1));
        assert!(out.contains("\"start\":\"settled\",\"joining\":3,"), "{out}");
        assert!(out.contains("\"peak_rss_mib\":"), "{out}");
    }
}
