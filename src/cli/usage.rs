//! Every subcommand's usage and flags, in one table: `petrel CMD --help` prints the entry,
//! and any argument that is not one of its flags (a typo such as `--node 100`) is an error
//! naming the flags it has, rather than silently running with a default.

/// One subcommand: its name as typed, its usage text, the flags that take a value and the
/// switches that do not.
pub struct Command {
    /// As typed after `petrel`, for example `"bench dht"`.
    pub name: &'static str,
    /// Usage lines after `petrel NAME`.
    pub usage: &'static str,
    /// Flags followed by a value.
    pub flags: &'static [&'static str],
    /// Flags without a value.
    pub switches: &'static [&'static str],
}

/// Every subcommand, in the order of `petrel --help`.
pub const COMMANDS: &[Command] = &[
    Command {
        name: "init",
        usage: "--data-dir DIR [--id-pow-bits N]\n  \
                create DIR/node.key (mode 0600) and DIR/petrel.toml (every setting at its\n  \
                default, commented), and print the id",
        flags: &["--data-dir", "--id-pow-bits"],
        switches: &[],
    },
    Command {
        name: "id",
        usage: "--data-dir DIR\n  print this node's id (64 hex digits)",
        flags: &["--data-dir"],
        switches: &[],
    },
    Command {
        name: "run",
        usage: "--data-dir DIR [--config FILE] [--listen ADDR] [--announce ADDR]...\n\
                \x20     [--bootstrap NODEID@HOST:PORT]... [--log off|error|warn|info|debug|trace]\n\
                \x20     [--status-secs N] [--sync none|batch|always]\n  \
                run the node until SIGINT or SIGTERM; records, providers and peers persist in\n  \
                DIR/records.log. Settings come from FILE (default DIR/petrel.toml, if present;\n  \
                `petrel init` writes it), then flags override them; --bootstrap adds to the\n  \
                file's list. The log level is --log, else PETREL_LOG, else the file's log_level",
        flags: &[
            "--data-dir",
            "--config",
            "--listen",
            "--announce",
            "--bootstrap",
            "--log",
            "--status-secs",
            "--sync",
        ],
        switches: &[],
    },
    Command {
        name: "devnet",
        usage: "[--nodes N] [--seconds T] [--seed S] [--json]\n  \
                N nodes in one process, pinging each other, with a DHT round",
        flags: &["--nodes", "--seconds", "--seed"],
        switches: &["--json"],
    },
    Command {
        name: "bench transport",
        usage: "[--handshakes N] [--frames-mib M] [--json]\n  \
                TLS handshake rate and framed throughput on loopback",
        flags: &["--handshakes", "--frames-mib"],
        switches: &["--json"],
    },
    Command {
        name: "bench dht",
        usage: "[--nodes N] [--records R] [--value-size B] [--seed S] [--degree D]\n\
                \x20     [--concurrency C] [--persist DIR [--sync MODE]] [--json]\n  \
                N nodes on loopback: bootstrap, PUT and GET over TLS",
        flags: &[
            "--nodes",
            "--records",
            "--value-size",
            "--seed",
            "--degree",
            "--concurrency",
            "--persist",
            "--sync",
        ],
        switches: &["--json"],
    },
    Command {
        name: "bench gossip",
        usage: "[--nodes N] [--messages M] [--size B] [--rate R] [--seed S] [--degree D]\n\
                \x20     [--mesh-timeout SECS] [--drain SECS] [--json]\n  \
                N nodes on loopback in one topic: M messages of B bytes published at R per\n  \
                second from random nodes; delivery, latency, CPU per delivery, memory\n  \
                (defaults 20 nodes, 200 messages, 1024 B, 100/s, seed 1, degree 3,\n  \
                mesh timeout 60 s, drain 10 s)",
        flags: &[
            "--nodes",
            "--messages",
            "--size",
            "--rate",
            "--seed",
            "--degree",
            "--mesh-timeout",
            "--drain",
        ],
        switches: &["--json"],
    },
    Command {
        name: "bench idle",
        usage: "[--nodes N] [--seconds T] [--seed S] [--degree D] [--settle SECS] [--json]\n  \
                N connected nodes in one topic doing nothing for T seconds: CPU and memory\n  \
                (defaults 50 nodes, 20 s, seed 1, degree 3, settle 10 s once meshes formed)",
        flags: &["--nodes", "--seconds", "--seed", "--degree", "--settle"],
        switches: &["--json"],
    },
    Command {
        name: "bench flood",
        usage: "--attack find-value|find-node|store|no-read|oversized|garbage|many-ids\n\
                \x20     [--attackers A] [--seconds T] [--json]\n  \
                one node under attack while an honest peer pings it",
        flags: &["--attack", "--attackers", "--seconds"],
        switches: &["--json"],
    },
    Command {
        name: "bench store",
        usage: "[--records N] [--value-size B] [--sync none|batch|always] [--writers W]\n\
                \x20     [--dir DIR] [--json]\n  \
                the node's log on disk: put, get, compaction, restart",
        flags: &["--records", "--value-size", "--sync", "--writers", "--dir"],
        switches: &["--json"],
    },
    Command {
        name: "sim dht",
        usage: "[--nodes N] [--lookups L] [--seed S] [--latency-ms A..B]\n\
                \x20     [--placement uniform|plane] [--loss P] [--churn P]\n\
                \x20     [--adversarial F --attack silent|fabricate|bad-records|eclipse|\n\
                \x20                               dead-addresses|loopback-claims|flood]\n\
                \x20     [--disjoint D] [--get]\n  \
                a DHT scenario on the simulator (one JSON object)",
        flags: &[
            "--nodes",
            "--lookups",
            "--seed",
            "--latency-ms",
            "--placement",
            "--loss",
            "--churn",
            "--adversarial",
            "--attack",
            "--disjoint",
        ],
        switches: &["--get"],
    },
    Command {
        name: "sim gossip",
        usage: "[--nodes N] [--messages M] [--size B] [--seed S] [--latency-ms A..B]\n\
                \x20     [--loss P] [--rate R] [--degree D] [--bandwidth BYTES_PER_S] [--check-us US]\n\
                \x20     [--sybils K --attack censor|invalid|covert-flash|ihave-spam|cold-boot\n\
                \x20      [--sybil-degree D]]\n  \
                a gossip scenario on the simulator (one JSON object)",
        flags: &[
            "--nodes",
            "--messages",
            "--size",
            "--seed",
            "--latency-ms",
            "--loss",
            "--rate",
            "--degree",
            "--bandwidth",
            "--check-us",
            "--sybils",
            "--attack",
            "--sybil-degree",
        ],
        switches: &[],
    },
];

/// What [`check`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Checked {
    /// The arguments are all flags of the command: run it.
    Run,
    /// `--help` or `-h` was given: the usage was printed.
    Helped,
}

/// The usage of `name` (`petrel NAME ...`).
pub fn usage_of(name: &str) -> Option<String> {
    let c = COMMANDS.iter().find(|c| c.name == name)?;
    Some(format!("usage: petrel {} {}\n", c.name, c.usage))
}

/// The usage of every command, for `petrel --help`.
pub fn all() -> String {
    let mut out = String::from("usage: petrel <command> [options]; petrel <command> --help\n\n");
    for c in COMMANDS {
        out.push_str(&format!("  {} {}\n\n", c.name, c.usage.replace('\n', "\n  ")));
    }
    out
}

/// Prints `name`'s usage if `args` ask for help; otherwise refuses any argument that is not
/// one of its flags (with its value) or switches.
pub fn check(name: &str, args: &[String]) -> Result<Checked, String> {
    let Some(c) = COMMANDS.iter().find(|c| c.name == name) else {
        return Err(format!("unknown command {name:?}"));
    };
    if args.iter().any(|a| a == "--help" || a == "-h") {
        print!("{}", usage_of(name).unwrap_or_default());
        return Ok(Checked::Helped);
    }
    let mut rest = args.iter();
    while let Some(a) = rest.next() {
        if c.switches.contains(&a.as_str()) {
            continue;
        }
        if c.flags.contains(&a.as_str()) {
            if rest.next().is_none() {
                return Err(format!("{a} needs a value"));
            }
            continue;
        }
        let mut known: Vec<&str> = c.flags.iter().chain(c.switches).copied().collect();
        known.sort_unstable();
        let what = if a.starts_with('-') { "unknown flag" } else { "unexpected argument" };
        return Err(format!(
            "{what} {a:?} for `petrel {}`; its flags: {} (petrel {} --help)",
            c.name,
            known.join(" "),
            c.name
        ));
    }
    Ok(Checked::Run)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &[&str]) -> Vec<String> {
        s.iter().map(|a| a.to_string()).collect()
    }

    #[test]
    fn known_flags_and_switches_pass_and_anything_else_is_named() {
        let ok = args(&["--nodes", "10", "--json", "--persist", "/tmp/x"]);
        assert_eq!(check("bench dht", &ok), Ok(Checked::Run));
        let typo = args(&["--node", "10"]);
        let err = check("bench dht", &typo).unwrap_err();
        assert!(err.contains("unknown flag \"--node\"") && err.contains("--nodes"), "{err}");
        let stray = args(&["--nodes", "10", "extra"]);
        assert!(check("bench dht", &stray).unwrap_err().contains("unexpected argument"));
        let missing = args(&["--nodes"]);
        assert_eq!(check("bench dht", &missing), Err("--nodes needs a value".into()));
        // A flag's value may look like a flag of its own.
        assert_eq!(check("run", &args(&["--data-dir", "--json"])), Ok(Checked::Run));
    }

    #[test]
    fn help_is_answered_for_every_command() {
        for c in COMMANDS {
            assert_eq!(check(c.name, &args(&["--help"])), Ok(Checked::Helped), "{}", c.name);
            let usage = usage_of(c.name).unwrap();
            for flag in c.flags.iter().chain(c.switches) {
                assert!(usage.contains(flag), "{}: usage does not show {flag}", c.name);
            }
        }
        assert!(all().contains("bench store"));
    }
}
