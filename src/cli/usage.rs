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
    /// Names of the positional arguments it takes at most, in order (all optional to the
    /// check; the command says which it needs). After `--` every argument is positional.
    pub args: &'static [&'static str],
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
        args: &[],
    },
    Command {
        name: "id",
        usage: "--data-dir DIR\n  print this node's id (64 hex digits)",
        flags: &["--data-dir"],
        switches: &[],
        args: &[],
    },
    Command {
        name: "run",
        usage: "--data-dir DIR [--config FILE] [--listen ADDR] [--announce ADDR]...\n\
                \x20     [--bootstrap NODEID@HOST:PORT]... [--log off|error|warn|info|debug|trace]\n\
                \x20     [--status-secs N] [--sync none|batch|always] [--metrics IP:PORT|'']\n  \
                run the node until SIGINT or SIGTERM; records, providers and peers persist in\n  \
                DIR/records.log. Settings come from FILE (default DIR/petrel.toml, if present;\n  \
                `petrel init` writes it), then flags override them; --bootstrap adds to the\n  \
                file's list. The log level is --log, else PETREL_LOG, else the file's log_level.\n  \
                Prometheus metrics are served at http://IP:PORT/metrics (default\n  \
                127.0.0.1:9100, the file's metrics_listen; '' serves none)",
        flags: &[
            "--data-dir",
            "--config",
            "--listen",
            "--announce",
            "--bootstrap",
            "--log",
            "--status-secs",
            "--sync",
            "--metrics",
        ],
        switches: &[],
        args: &[],
    },
    Command {
        name: "status",
        usage: "--data-dir DIR [--json]\n  \
                the running node's id, address, peers, records and topics",
        flags: &["--data-dir"],
        switches: &["--json"],
        args: &[],
    },
    Command {
        name: "peers",
        usage: "--data-dir DIR [--json]\n  \
                the running node's connected peers: NODEID@ADDRESS, who dialled, agent",
        flags: &["--data-dir"],
        switches: &["--json"],
        args: &[],
    },
    Command {
        name: "connect",
        usage: "--data-dir DIR [--json] NODEID@HOST:PORT\n  \
                connect the running node to a peer, which must prove NODEID's key",
        flags: &["--data-dir"],
        switches: &["--json"],
        args: &["NODEID@HOST:PORT"],
    },
    Command {
        name: "put",
        usage: "--data-dir DIR [--json] (--file F | VALUE)\n  \
                store VALUE, or the bytes of file F (- for stdin), as an immutable record of at\n  \
                most 65536 bytes; prints its key (64 hex digits)",
        flags: &["--data-dir", "--file"],
        switches: &["--json"],
        args: &["VALUE"],
    },
    Command {
        name: "put-mutable",
        usage: "--data-dir DIR --key-file K --salt S --seq N [--json] (--file F | VALUE)\n  \
                sign VALUE (or F's bytes) with the key in key file K (as `petrel init` writes\n  \
                it) as the mutable record with salt S and sequence number N, and store it;\n  \
                prints its key",
        flags: &["--data-dir", "--key-file", "--salt", "--seq", "--file"],
        switches: &["--json"],
        args: &["VALUE"],
    },
    Command {
        name: "get",
        usage: "--data-dir DIR [--json] KEY\n  \
                the record under KEY (64 hex digits): its value's bytes on stdout, as stored",
        flags: &["--data-dir"],
        switches: &["--json"],
        args: &["KEY"],
    },
    Command {
        name: "provide",
        usage: "--data-dir DIR [--json] KEY\n  \
                announce the running node as a provider of KEY (64 hex digits)",
        flags: &["--data-dir"],
        switches: &["--json"],
        args: &["KEY"],
    },
    Command {
        name: "providers",
        usage: "--data-dir DIR [--json] KEY\n  \
                providers of KEY, one NODEID@ADDRESS per line (none: no output)",
        flags: &["--data-dir"],
        switches: &["--json"],
        args: &["KEY"],
    },
    Command {
        name: "publish",
        usage: "--data-dir DIR [--json] TOPIC (--file F | MESSAGE)\n  \
                sign MESSAGE (or F's bytes, - for stdin) with the node's key and publish it on\n  \
                TOPIC",
        flags: &["--data-dir", "--file"],
        switches: &["--json"],
        args: &["TOPIC", "MESSAGE"],
    },
    Command {
        name: "subscribe",
        usage: "--data-dir DIR [--json] TOPIC\n  \
                join TOPIC and print each message on a line of its own until interrupted\n  \
                (payload text with \\n, \\\\ and \\xNN escapes; --json: one object per line)",
        flags: &["--data-dir"],
        switches: &["--json"],
        args: &["TOPIC"],
    },
    Command {
        name: "shutdown",
        usage: "--data-dir DIR\n  \
                stop the running node gracefully; returns once it is down",
        flags: &["--data-dir"],
        switches: &[],
        args: &[],
    },
    Command {
        name: "devnet",
        usage: "--nodes N [--seconds T] [--seed S] [--metrics ADDR] [--linger SECS] [--json]\n  \
                N nodes on loopback in one process: they connect, bootstrap the DHT, put and get\n  \
                a record each, gossip on one topic, then ping each other for T seconds (default\n  \
                5); a summary follows. --metrics serves node 0's Prometheus metrics at ADDR\n  \
                (another port if it is taken) and --linger keeps the network up SECS after the\n  \
                summary so they can be opened",
        flags: &["--nodes", "--seconds", "--seed", "--metrics", "--linger"],
        switches: &["--json"],
        args: &[],
    },
    Command {
        name: "bench transport",
        usage: "[--handshakes N] [--frames-mib M] [--json]\n  \
                TLS handshake rate and framed throughput on loopback",
        flags: &["--handshakes", "--frames-mib"],
        switches: &["--json"],
        args: &[],
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
        args: &[],
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
        args: &[],
    },
    Command {
        name: "bench idle",
        usage: "[--nodes N] [--seconds T] [--seed S] [--degree D] [--settle SECS] [--json]\n  \
                N connected nodes in one topic doing nothing for T seconds: CPU and memory\n  \
                (defaults 50 nodes, 20 s, seed 1, degree 3, settle 10 s once meshes formed)",
        flags: &["--nodes", "--seconds", "--seed", "--degree", "--settle"],
        switches: &["--json"],
        args: &[],
    },
    Command {
        name: "bench flood",
        usage: "--attack find-value|find-node|store|no-read|oversized|garbage|many-ids\n\
                \x20     [--attackers A] [--seconds T] [--json]\n  \
                one node under attack while an honest peer pings it",
        flags: &["--attack", "--attackers", "--seconds"],
        switches: &["--json"],
        args: &[],
    },
    Command {
        name: "bench store",
        usage: "[--records N] [--value-size B] [--sync none|batch|always] [--writers W]\n\
                \x20     [--dir DIR] [--json]\n  \
                the node's log on disk: put, get, compaction, restart",
        flags: &["--records", "--value-size", "--sync", "--writers", "--dir"],
        switches: &["--json"],
        args: &[],
    },
    Command {
        name: "sim dht",
        usage: "[--nodes N] [--lookups L] [--seed S] [--latency-ms A..B]\n\
                \x20     [--placement uniform|plane] [--loss P] [--churn P]\n\
                \x20     [--adversarial F --attack silent|fabricate|bad-records|eclipse|\n\
                \x20                               dead-addresses|loopback-claims|flood]\n\
                \x20     [--disjoint D] [--get] [--max-connections N] [--idle-timeout-s S]\n\
                \x20     [--no-pipelining] [--settled J]\n  \
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
            "--max-connections",
            "--idle-timeout-s",
            "--settled",
        ],
        switches: &["--get", "--no-pipelining"],
        args: &[],
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
        args: &[],
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
/// one of its flags (with its value), switches, or positional arguments.
pub fn check(name: &str, args: &[String]) -> Result<Checked, String> {
    let Some(c) = COMMANDS.iter().find(|c| c.name == name) else {
        return Err(format!("unknown command {name:?}"));
    };
    if args.iter().take_while(|a| *a != "--").any(|a| a == "--help" || a == "-h") {
        print!("{}", usage_of(name).unwrap_or_default());
        return Ok(Checked::Helped);
    }
    parse(c, args).map(|_| Checked::Run)
}

/// `name`'s arguments, split into flags with their values, switches and positional arguments
/// (everything after `--` is positional). The same rules as [`check`].
pub fn parse<'a>(c: &Command, args: &'a [String]) -> Result<Parsed<'a>, String> {
    let mut parsed = Parsed::default();
    let mut rest = args.iter();
    let mut only_positional = false;
    while let Some(a) = rest.next() {
        if !only_positional && a == "--" {
            only_positional = true;
        } else if !only_positional && c.switches.contains(&a.as_str()) {
            parsed.switches.push(a);
        } else if !only_positional && c.flags.contains(&a.as_str()) {
            let value = rest.next().ok_or_else(|| format!("{a} needs a value"))?;
            parsed.flags.push((a, value));
        } else if (only_positional || !a.starts_with('-') || a == "-")
            && parsed.positional.len() < c.args.len()
        {
            parsed.positional.push(a);
        } else {
            let mut known: Vec<&str> = c.flags.iter().chain(c.switches).copied().collect();
            known.sort_unstable();
            let flag = a.starts_with('-') && !only_positional;
            let what = if flag { "unknown flag" } else { "unexpected argument" };
            return Err(format!(
                "{what} {a:?} for `petrel {}`; its flags: {} (petrel {} --help)",
                c.name,
                known.join(" "),
                c.name
            ));
        }
    }
    Ok(parsed)
}

/// A command line split by [`parse`].
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Parsed<'a> {
    /// Flags and their values, in order.
    pub flags: Vec<(&'a str, &'a str)>,
    /// Switches given.
    pub switches: Vec<&'a str>,
    /// Positional arguments, in order.
    pub positional: Vec<&'a str>,
}

impl<'a> Parsed<'a> {
    /// The value of the last `name` given.
    pub fn flag(&self, name: &str) -> Option<&'a str> {
        self.flags.iter().rev().find(|(f, _)| *f == name).map(|(_, v)| *v)
    }

    /// Whether the switch `name` was given.
    pub fn switch(&self, name: &str) -> bool {
        self.switches.contains(&name)
    }
}

/// The command named `name`.
pub fn command(name: &str) -> Option<&'static Command> {
    COMMANDS.iter().find(|c| c.name == name)
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
    fn positional_arguments_are_counted_and_double_dash_ends_the_flags() {
        let c = command("publish").unwrap();
        let a = args(&["news", "--data-dir", "d", "hello", "--json"]);
        let p = parse(c, &a).unwrap();
        assert_eq!((p.flag("--data-dir"), p.switch("--json")), (Some("d"), true));
        assert_eq!(p.positional, ["news", "hello"]);
        let a = args(&["--data-dir", "d", "news", "--", "--json"]);
        let p = parse(c, &a).unwrap();
        assert_eq!((p.positional.as_slice(), p.switch("--json")), (&["news", "--json"][..], false));
        let err = parse(c, &args(&["a", "b", "c"])).unwrap_err();
        assert!(err.starts_with("unexpected argument \"c\""), "{err}");
        let err = parse(c, &args(&["--jsn"])).unwrap_err();
        assert!(err.starts_with("unknown flag \"--jsn\""), "{err}");
        // `-` (stdin) is an argument; `--help` after `--` is a message, not a request for help.
        assert_eq!(parse(command("put").unwrap(), &args(&["-"])).unwrap().positional, ["-"]);
        assert_eq!(check("put", &args(&["--data-dir", "d", "--", "--help"])), Ok(Checked::Run));
    }

    #[test]
    fn help_is_answered_for_every_command() {
        for c in COMMANDS {
            assert_eq!(check(c.name, &args(&["--help"])), Ok(Checked::Helped), "{}", c.name);
            let usage = usage_of(c.name).unwrap();
            for flag in c.flags.iter().chain(c.switches).chain(c.args) {
                assert!(usage.contains(flag), "{}: usage does not show {flag}", c.name);
            }
        }
        assert!(all().contains("bench store"));
    }
}
