//! The `petrel` command line: a thin layer over the library.

#![forbid(unsafe_code)]

use std::os::unix::fs::DirBuilderExt;
use std::path::PathBuf;
use std::process::ExitCode;

use petrel::cli::{self, ctl, flag, usage};
use petrel::config::{self, Config};
use petrel::identity::Keypair;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some((command, rest)) = args.split_first().filter(|(c, _)| ctl::is_command(c)) {
        return match ctl::main(command, rest) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("petrel: {e}");
                ExitCode::from(e.exit_code())
            }
        };
    }
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("petrel: {e}");
            ExitCode::from(2)
        }
    }
}

fn run(args: &[String]) -> Result<(), String> {
    let (command, rest) = args.split_first().ok_or_else(usage::all)?;
    let helped = match command.as_str() {
        "init" | "id" => usage::check(command, rest)? == usage::Checked::Helped,
        _ => false,
    };
    if helped {
        return Ok(());
    }
    match command.as_str() {
        "init" => {
            let dir = data_dir(rest)?;
            let bits = flag(rest, "--id-pow-bits")?.map(|s| s.parse::<u8>()).transpose();
            let bits = bits.map_err(|e| format!("--id-pow-bits: {e}"))?.unwrap_or(0);
            // Only its owner may enter it: it holds the key and the control socket.
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)
                .map_err(|e| format!("{}: {e}", dir.display()))?;
            let path = dir.join("node.key");
            if path.exists() {
                return Err(format!("{} already exists; refusing to overwrite", path.display()));
            }
            let kp = Keypair::generate_with_pow(bits).map_err(|e| e.to_string())?;
            kp.save(&path).map_err(|e| e.to_string())?;
            // Every setting at its default, to edit; an existing file is the operator's.
            let file = dir.join(cli::run::CONFIG_FILE);
            if !file.exists() {
                let text = config::file::template(&Config::default());
                std::fs::write(&file, text).map_err(|e| format!("{}: {e}", file.display()))?;
            }
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
            print!("{}", usage::all());
            Ok(())
        }
        other => Err(format!("unknown command {other:?}\n{}", usage::all())),
    }
}

fn data_dir(args: &[String]) -> Result<PathBuf, String> {
    flag(args, "--data-dir")?.map(PathBuf::from).ok_or_else(|| "--data-dir DIR is required".into())
}
