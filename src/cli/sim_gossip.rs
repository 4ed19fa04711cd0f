//! `petrel sim gossip`: a gossip scenario on the deterministic simulator, one JSON object on
//! stdout.
//!
//! `petrel sim gossip --nodes N --messages M --size B --seed S [--latency-ms A..B] [--loss P]
//! [--rate R] [--degree D] [--bandwidth BYTES_PER_S] [--check-us US] [--sybils K --attack KIND
//! [--sybil-degree D]]`. KIND is `censor` (join meshes, drop everything), `invalid` (also send
//! badly signed messages, 50/s each), `covert-flash` (relay honestly, then all censor at once a
//! third into the publishing), `ihave-spam` (announce invented ids, never deliver), or
//! `cold-boot` (censors that connect before the honest nodes know each other). The method is
//! in [`crate::sim::gossip`].

use std::time::{Duration, Instant};

use crate::cli::{flag, parse_flag};
use crate::sim::gossip::{self, GossipScenario};
use crate::sim::gossip_adversary::GossipAttack;
use crate::sim::LatencyModel;

/// Runs `petrel sim gossip [options]`.
pub fn main(args: &[String]) -> Result<(), String> {
    let sc = parse(args)?;
    let started = Instant::now();
    let report = gossip::run(&sc);
    let json = report.json(&sc);
    let attack = flag(args, "--attack")?.unwrap_or("none");
    let wall = started.elapsed().as_secs_f64();
    // The scenario's object, with what only the command line knows added at the end.
    let extra = format!(",\"attack\":\"{attack}\",\"sybils\":{},\"wall_s\":{wall:.2}}}", sc.sybils);
    println!("{}{extra}", json.trim_end_matches('}'));
    Ok(())
}

/// Parses the options (module doc).
pub fn parse(args: &[String]) -> Result<GossipScenario, String> {
    let nodes = parse_flag(args, "--nodes")?.unwrap_or(100);
    let messages = parse_flag(args, "--messages")?.unwrap_or(100);
    let seed = parse_flag(args, "--seed")?.unwrap_or(1);
    if !(2..=100_000).contains(&nodes) {
        return Err("--nodes must be 2..=100000".into());
    }
    let mut sc = GossipScenario::new(nodes, messages, seed);
    sc.size = parse_flag(args, "--size")?.unwrap_or(sc.size);
    if sc.size > crate::wire::messages::MAX_PAYLOAD_BYTES {
        return Err("--size is above the largest message payload (1047552)".into());
    }
    if let Some(range) = flag(args, "--latency-ms")? {
        sc.latency = super::sim::latency(range)?;
    }
    if let Some(p) = parse_flag::<f64>(args, "--loss")? {
        if !(0.0..=1.0).contains(&p) {
            return Err("--loss must be within 0..=1".into());
        }
        sc.loss = p;
    }
    sc.rate = parse_flag(args, "--rate")?.unwrap_or(sc.rate);
    if sc.rate.is_nan() || sc.rate <= 0.0 {
        return Err("--rate must be above 0".into());
    }
    sc.degree = parse_flag(args, "--degree")?.unwrap_or(sc.degree);
    sc.bandwidth = parse_flag(args, "--bandwidth")?;
    if let Some(us) = parse_flag::<u64>(args, "--check-us")? {
        sc.check_delay = Duration::from_micros(us);
    }
    sc.sybils = parse_flag(args, "--sybils")?.unwrap_or(0);
    sc.sybil_degree = parse_flag(args, "--sybil-degree")?.unwrap_or(sc.sybil_degree);
    sc.attack = match flag(args, "--attack")? {
        None => None,
        Some("censor") => Some(GossipAttack::Censor),
        Some("invalid") => Some(GossipAttack::InvalidFlood { per_sec: 50 }),
        Some("covert-flash") => Some(GossipAttack::CovertFlash { turn_at_ms: 0 }),
        Some("ihave-spam") => Some(GossipAttack::IHaveSpam),
        Some("cold-boot") => {
            sc.cold_boot = true;
            Some(GossipAttack::Censor)
        }
        Some(other) => {
            return Err(format!(
                "--attack {other:?}: expected censor, invalid, covert-flash, ihave-spam or \
                 cold-boot"
            ))
        }
    };
    if sc.attack.is_some() != (sc.sybils > 0) {
        return Err("--sybils K and --attack KIND go together".into());
    }
    if let LatencyModel::Fixed(d) = sc.latency {
        if d > Duration::from_secs(10) {
            return Err("--latency-ms must be at most 10000".into());
        }
    }
    Ok(sc)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn options_parse_with_defaults_and_refuse_nonsense() {
        let sc = parse(&args("--nodes 50 --messages 10 --sybils 20 --attack cold-boot")).unwrap();
        assert_eq!((sc.nodes, sc.messages, sc.sybils, sc.cold_boot), (50, 10, 20, true));
        assert_eq!(sc.attack, Some(GossipAttack::Censor));
        assert!(parse(&args("--attack censor")).is_err(), "an attack needs sybils");
        assert!(parse(&args("--sybils 3 --attack nope")).unwrap_err().contains("expected"));
        assert!(parse(&args("--rate 0")).is_err());
    }
}
