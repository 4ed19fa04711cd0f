//! The `petrel` command line: a thin layer over the library.

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use petrel::cli::{self, flag};
use petrel::identity::Keypair;

const USAGE: &str = "\
usage: petrel <command> [options]

commands:
  init --data-dir DIR [--id-pow-bits N]   create DIR/node.key (mode 0600)
  id --data-dir DIR                       print this node's id (64 hex digits)
  run --data-dir DIR [--listen ADDR] [--announce ADDR]... [--bootstrap NODEID@HOST:PORT]...
      [--log LEVEL] [--status-secs N] [--sync none|batch|always]
                                          run the node until SIGINT or SIGTERM; records,
                                          providers and peers persist in DIR/records.log
  devnet --nodes N [--seconds T] [--seed S] [--json]
                                          N nodes in one process, pinging each other
  bench transport [--handshakes N] [--frames-mib M] [--json]
                                          TLS handshake rate and framed throughput on loopback
  bench dht [--nodes N] [--records R] [--value-size B] [--seed S] [--degree D]
      [--concurrency C] [--persist DIR [--sync MODE]] [--json]
                                          N nodes on loopback: bootstrap, PUT and GET over TLS
  bench flood --attack find-value|find-node|store|no-read|oversized|garbage|many-ids
      [--attackers A] [--seconds T] [--json]
                                          one node under attack while an honest peer pings it
  bench store [--records N] [--value-size B] [--sync none|batch|always] [--writers W]
      [--dir DIR] [--json]                the node's log on disk: put, get, compaction, restart
  sim dht [--nodes N] [--lookups L] [--seed S] [--latency-ms A..B] [--placement uniform|plane]
      [--loss P] [--churn P]
      [--adversarial F --attack silent|fabricate|bad-records|flood] [--disjoint D] [--get]
                                          a DHT scenario on the simulator (one JSON object)
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("petrel: {e}");
            ExitCode::from(2)
        }
    }
}

fn run(args: &[String]) -> Result<(), String> {
    let (command, rest) = args.split_first().ok_or_else(|| USAGE.to_string())?;
    match command.as_str() {
        "init" => {
            let dir = data_dir(rest)?;
            let bits = flag(rest, "--id-pow-bits")?.map(|s| s.parse::<u8>()).transpose();
            let bits = bits.map_err(|e| format!("--id-pow-bits: {e}"))?.unwrap_or(0);
            std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            let path = dir.join("node.key");
            if path.exists() {
                return Err(format!("{} already exists; refusing to overwrite", path.display()));
            }
            let kp = Keypair::generate_with_pow(bits).map_err(|e| e.to_string())?;
            kp.save(&path).map_err(|e| e.to_string())?;
            println!("{:#}", kp.node_id());
            Ok(())
        }
        "id" => {
            let path = data_dir(rest)?.join("node.key");
            let kp = Keypair::load(&path).map_err(|e| e.to_string())?;
            println!("{:#}", kp.node_id());
            Ok(())
        }
        "run" => cli::run::main(rest),
        "devnet" => cli::devnet::main(rest),
        "bench" => cli::bench::main(rest),
        "sim" => cli::sim::main(rest),
        "-h" | "--help" | "help" => {
            print!("{USAGE}");
            Ok(())
        }
        other => Err(format!("unknown command {other:?}\n{USAGE}")),
    }
}

fn data_dir(args: &[String]) -> Result<PathBuf, String> {
    flag(args, "--data-dir")?.map(PathBuf::from).ok_or_else(|| "--data-dir DIR is required".into())
}
