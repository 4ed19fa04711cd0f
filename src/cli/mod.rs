//! The `petrel` subcommands that run nodes: [`run`] (one node until a signal), [`devnet`]
//! (many nodes in one process, with a ping workload and a resource summary) and
//! [`bench`](mod@bench) (system benchmarks on loopback sockets: `petrel bench transport`,
//! `petrel bench dht` in [`bench_dht`], and `petrel bench flood`, a node under attack, in
//! [`bench_flood`]; `petrel bench gossip` and `petrel bench idle`, matching the rust-libp2p
//! reference harness, in [`bench_gossip`] and [`bench_idle`]).
//!
//! [`sim`] runs `petrel sim dht` on the simulator, and [`sim_gossip`] `petrel sim gossip`.
//!
//! [`ctl`] holds the commands against a running node (`status`, `put`, `get`, `subscribe`,
//! ...), which talk to it over its control socket.
//!
//! [`report`] holds what the measuring subcommands share: CPU time and memory.
//!
//! Argument parsing is hand-written: `--flag value` pairs, looked up by name. [`usage`] holds
//! every subcommand's usage and flags: `--help` prints it, and an unknown flag is an error.

pub mod bench;
pub mod bench_dht;
pub mod bench_flood;
pub mod bench_gossip;
pub mod bench_idle;
pub mod bench_store;
pub mod ctl;
pub mod devnet;
pub mod fleet;
pub mod report;
pub mod run;
pub mod sim;
pub mod sim_gossip;
pub mod usage;

use std::time::Duration;

/// The value after `name`, if `name` is present; an error if it has no value.
pub fn flag<'a>(args: &'a [String], name: &str) -> Result<Option<&'a str>, String> {
    match args.iter().position(|a| a == name) {
        None => Ok(None),
        Some(i) => {
            args.get(i + 1).map(|v| Some(v.as_str())).ok_or_else(|| format!("{name} needs a value"))
        }
    }
}

/// Every value given for a repeatable flag, in order.
pub fn flag_all<'a>(args: &'a [String], name: &str) -> Result<Vec<&'a str>, String> {
    let mut values = Vec::new();
    let mut rest = args.iter();
    while let Some(a) = rest.next() {
        if a == name {
            values.push(rest.next().ok_or_else(|| format!("{name} needs a value"))?.as_str());
        }
    }
    Ok(values)
}

/// Parses the value of `name` with `FromStr`, if present.
pub fn parse_flag<T>(args: &[String], name: &str) -> Result<Option<T>, String>
where
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    flag(args, name)?.map(|s| s.parse::<T>().map_err(|e| format!("{name} {s:?}: {e}"))).transpose()
}

/// The value of `name` as a number of seconds (fractions allowed), if present; an error if it
/// is negative, not finite, or too large for a `Duration`.
pub fn parse_seconds(args: &[String], name: &str) -> Result<Option<Duration>, String> {
    parse_flag::<f64>(args, name)?
        .map(|s| Duration::try_from_secs_f64(s).map_err(|_| format!("{name} {s}: not a duration")))
        .transpose()
}

/// Whether the switch `name` (no value) is present.
pub fn switch(args: &[String], name: &str) -> bool {
    args.iter().any(|a| a == name)
}
