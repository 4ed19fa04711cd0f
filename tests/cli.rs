//! The `petrel` binary end to end: init/id, devnet --json, bench transport --json, bench flood
//! --json, run without a key file.

use std::path::PathBuf;
use std::process::{Command, Output};

mod common;

fn petrel(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_petrel")).args(args).output().expect("petrel runs")
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("petrel-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn init_then_id_print_the_same_id() {
    let dir = temp_dir("init");
    let data = dir.to_str().unwrap();
    let init = petrel(&["init", "--data-dir", data]);
    assert!(init.status.success(), "{init:?}");
    let id = petrel(&["id", "--data-dir", data]);
    assert!(id.status.success(), "{id:?}");
    let (a, b) = (stdout(&init), stdout(&id));
    assert_eq!(a.len(), 64);
    assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
    assert_eq!(a, b);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn devnet_prints_one_json_object() {
    let out = petrel(&["devnet", "--nodes", "5", "--seconds", "1", "--json"]);
    assert!(out.status.success(), "{out:?}");
    let text = stdout(&out);
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(text.contains("\"nodes\":5"), "{text}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert!(v["ping_rtt_us"]["n"].as_u64().unwrap() > 0, "{text}");
    assert_eq!(v["ping_failures"], 0, "{text}");
    assert!(v["connections_per_node"]["min"].as_u64().unwrap() >= 1, "{text}");
    assert_eq!(v["dht"]["records"], 5, "{text}");
    assert_eq!(v["dht"]["stored"], 5, "{text}");
    assert_eq!(v["dht"]["found"], 5, "{text}");
    // The ping phase alone lasts `--seconds 1`; the process's own readings (CPU time from
    // /proc/self/stat, peak RSS from /proc/self/status) are zero only when they failed.
    assert!(v["wall_s"].as_f64().unwrap() >= 1.0, "{text}");
    assert!(v["cpu_s"].as_f64().unwrap() > 0.0, "{text}");
    assert!(v["peak_rss_mib"].as_f64().unwrap() > 0.0, "{text}");
    assert!(v["rss_per_node_kib"].as_u64().unwrap() > 0, "{text}");
}

#[test]
fn bench_transport_prints_one_json_object() {
    let out = petrel(&["bench", "transport", "--handshakes", "20", "--frames-mib", "2", "--json"]);
    assert!(out.status.success(), "{out:?}");
    let text = stdout(&out);
    assert_eq!(text.lines().count(), 1, "{text}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["bench"], "transport", "{text}");
    assert_eq!(v["handshakes"], 20, "{text}");
    assert!(v["handshakes_per_sec"].as_f64().unwrap() > 0.0, "{text}");
    assert!(v["handshake_ms"]["p50"].as_f64().unwrap() > 0.0, "{text}");
    let runs = v["throughput"].as_array().unwrap();
    let sizes: Vec<u64> = runs.iter().map(|t| t["frame_bytes"].as_u64().unwrap()).collect();
    assert_eq!(sizes, [1024, 65536], "{text}");
    for t in runs {
        assert!(t["mib_per_sec"].as_f64().unwrap() > 0.0, "{text}");
        let bytes = t["frames"].as_u64().unwrap() * t["frame_bytes"].as_u64().unwrap();
        assert_eq!(bytes, 2 << 20, "--frames-mib 2 in {text}");
    }
    let err = petrel(&["bench", "nosuch"]);
    assert!(!err.status.success());
    assert!(String::from_utf8_lossy(&err.stderr).contains("kinds: transport"), "{err:?}");
}

#[test]
fn bench_flood_prints_one_json_object() {
    let args = ["--attack", "find-value", "--attackers", "4", "--seconds", "2", "--json"];
    let out = petrel(&[&["bench", "flood"][..], &args].concat());
    assert!(out.status.success(), "{out:?}");
    let text = stdout(&out);
    assert_eq!(text.lines().count(), 1, "{text}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["bench"], "flood", "{text}");
    assert_eq!(v["attack"], "find-value", "{text}");
    assert_eq!((v["attackers"].as_u64(), v["seconds"].as_u64()), (Some(4), Some(2)), "{text}");
    for field in ["victim_peak_rss_mib", "victim_final_rss_mib"] {
        assert!(v[field].as_f64().is_some(), "{field} in {text}");
    }
    for field in ["p50", "p99", "max"] {
        assert!(v["honest_ping_ms"][field].as_f64().is_some(), "{field} in {text}");
    }
    // Ten pings a second for 2 s; the node answers the attackers until they are held back.
    assert!(v["honest_ping_ms"]["n"].as_u64().unwrap() > 0, "{text}");
    assert!(v["honest_ping_failures"].as_u64().is_some(), "{text}");
    assert!(v["frames_accepted"].as_u64().unwrap() > 0, "{text}");
    assert!(v["attackers_throttled"].as_u64().unwrap() <= 4, "{text}");
    assert!(v["attackers_disconnected"].is_object(), "{text}");
    let err = petrel(&["bench", "flood"]);
    assert!(!err.status.success());
    assert!(String::from_utf8_lossy(&err.stderr).contains("many-ids"), "{err:?}");
}

#[test]
fn run_without_a_key_file_names_the_path() {
    let dir = temp_dir("nokey");
    let out = petrel(&["run", "--data-dir", dir.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let path = dir.join("node.key");
    assert!(err.contains(path.to_str().unwrap()), "{err}");
    assert!(err.contains("petrel init"), "{err}");
}

/// A `petrel run` child whose stderr lines arrive on a channel.
struct Running {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Running {
    fn start(data: &str, extra: &[&str]) -> Running {
        let mut child = Command::new(env!("CARGO_BIN_EXE_petrel"))
            .args(["run", "--data-dir", data, "--listen", "127.0.0.1:0", "--status-secs", "1"])
            .args(["--metrics", "127.0.0.1:0"])
            .args(extra)
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("petrel run starts");
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Running { child, lines }
    }

    /// The first stderr line containing `needle`, within 15 s.
    fn wait_line(&self, needle: &str) -> String {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(e) => panic!("no line with {needle:?} within 15 s: {e}"),
            }
        }
    }

    /// SIGTERM, then the exit status within 10 s: the node's shutdown is bounded by 2 s, and
    /// the rest is room for a loaded CI machine.
    fn stop(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(std::time::Instant::now() < deadline, "petrel run ignored SIGTERM");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

#[test]
fn two_run_processes_connect_and_ping_each_other() {
    let (dir_a, dir_b) = (temp_dir("run-a"), temp_dir("run-b"));
    let (a_data, b_data) = (dir_a.to_str().unwrap(), dir_b.to_str().unwrap());
    let id_a = stdout(&petrel(&["init", "--data-dir", a_data]));
    let id_b = stdout(&petrel(&["init", "--data-dir", b_data]));

    let a = Running::start(a_data, &[]);
    let line = a.wait_line("dial it as ");
    let addr_a = line.rsplit("dial it as ").next().unwrap().trim_end_matches(')').to_string();
    assert!(addr_a.starts_with(&id_a), "{line}");

    let b = Running::start(b_data, &["--bootstrap", &addr_a]);
    // Each side pings the other over the one authenticated connection.
    b.wait_line(&format!("ping {id_a} rtt"));
    a.wait_line(&format!("ping {id_b} rtt"));

    // b stops cleanly, and a, which has seen b as a peer since, reports it gone.
    assert!(b.stop().success());
    a.wait_line("status: 0 peers");
    assert!(a.stop().success());
    std::fs::remove_dir_all(&dir_a).unwrap();
    std::fs::remove_dir_all(&dir_b).unwrap();
}

#[test]
fn shutdown_is_prompt_while_a_status_round_waits_on_silent_peers() {
    // Two peers that complete the Hello and then never answer: every status round pings them
    // and waits. SIGTERM must not wait for those pings.
    let dir = temp_dir("run-silent");
    let data = dir.to_str().unwrap();
    let id = stdout(&petrel(&["init", "--data-dir", data]));
    let node = Running::start(data, &[]);
    let line = node.wait_line("dial it as ");
    let peer_addr: petrel::PeerAddr =
        line.rsplit("dial it as ").next().unwrap().trim_end_matches(')').parse().unwrap();
    assert_eq!(peer_addr.id.to_hex(), id);
    let silent: Vec<common::RawPeer> = (0..2)
        .map(|i| common::RawPeer::connect_to(120 + i, peer_addr.id, peer_addr.addr))
        .collect();
    node.wait_line("connected (inbound)");
    node.wait_line("status: 2 peers");
    let started = std::time::Instant::now();
    assert!(node.stop().success());
    // The node's own shutdown is bounded by 2 s; the rest is room for a loaded machine.
    let took = started.elapsed();
    assert!(took < std::time::Duration::from_secs(5), "SIGTERM took {took:?}");
    drop(silent);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn every_subcommand_answers_help_and_refuses_an_unknown_flag() {
    for cmd in [
        &["init"][..],
        &["id"],
        &["run"],
        &["devnet"],
        &["bench", "transport"],
        &["bench", "dht"],
        &["bench", "gossip"],
        &["bench", "idle"],
        &["bench", "flood"],
        &["bench", "store"],
        &["sim", "dht"],
        &["sim", "gossip"],
        &["status"],
        &["peers"],
        &["connect"],
        &["put"],
        &["put-mutable"],
        &["get"],
        &["provide"],
        &["providers"],
        &["publish"],
        &["subscribe"],
        &["shutdown"],
    ] {
        let help = petrel(&[cmd, &["--help"]].concat());
        assert!(help.status.success(), "{cmd:?} --help failed");
        let text = stdout(&help);
        assert!(text.starts_with(&format!("usage: petrel {}", cmd.join(" "))), "{cmd:?}: {text}");
        // A typo is an error naming the command's flags, not a run with defaults.
        let typo = petrel(&[cmd, &["--nodez", "3"]].concat());
        assert_eq!(typo.status.code(), Some(2), "{cmd:?} ran with an unknown flag");
        let err = String::from_utf8_lossy(&typo.stderr);
        assert!(err.contains("unknown flag \"--nodez\""), "{cmd:?}: {err}");
    }
    let all = petrel(&["--help"]);
    assert!(stdout(&all).contains("bench store") && stdout(&all).contains("sim dht"));
}

#[test]
fn init_writes_a_config_that_run_reads_and_flags_override() {
    let (dir_a, dir_b) = (temp_dir("conf-a"), temp_dir("conf-b"));
    let (a_data, b_data) = (dir_a.to_str().unwrap(), dir_b.to_str().unwrap());
    let id_a = stdout(&petrel(&["init", "--data-dir", a_data]));
    stdout(&petrel(&["init", "--data-dir", b_data]));
    let file = dir_a.join("petrel.toml");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains("\n[gossip.score.topic]\n") && text.contains("idle_timeout = \"1m\""));
    // a's file names an agent (seen by b in Hello) and a port run's --listen must override
    // (port 1 cannot be bound by a test); b's file asks for debug logs, which list peers.
    let edited = text
        .replace("agent = \"petrel/", "agent = \"edited-by-test/")
        .replace("listen = \"127.0.0.1:0\"", "listen = \"127.0.0.1:1\"");
    std::fs::write(&file, edited).unwrap();
    let b_file = dir_b.join("petrel.toml");
    let b_text = std::fs::read_to_string(&b_file).unwrap();
    std::fs::write(&b_file, b_text.replace("log_level = \"info\"", "log_level = \"debug\""))
        .unwrap();

    let a = Running::start(a_data, &[]);
    let line = a.wait_line("dial it as ");
    let addr_a = line.rsplit("dial it as ").next().unwrap().trim_end_matches(')').to_string();
    let b = Running::start(b_data, &["--bootstrap", &addr_a]);
    let peer_line = b.wait_line(&format!("{id_a}@"));
    assert!(peer_line.contains("edited-by-test/"), "{peer_line}");
    assert!(a.stop().success() && b.stop().success());
    std::fs::remove_dir_all(&dir_a).unwrap();
    std::fs::remove_dir_all(&dir_b).unwrap();
}

#[test]
fn run_refuses_a_config_with_an_unknown_key_or_a_bad_value_naming_it() {
    let dir = temp_dir("conf-bad");
    let data = dir.to_str().unwrap();
    stdout(&petrel(&["init", "--data-dir", data]));
    let file = dir.join("petrel.toml");
    for (text, expected) in [
        (
            "[limits]\nmax_conections = 5\n",
            "unknown setting limits.max_conections (did you mean limits.max_connections?)",
        ),
        (
            "[limits]\nidle_timeout = 60\n",
            "setting limits.idle_timeout = 60 is not allowed: expected a duration",
        ),
        ("[workers]\nthreads = 0\n", "setting workers.threads = 0 is out of range: at least 1"),
    ] {
        std::fs::write(&file, text).unwrap();
        let out = petrel(&["run", "--data-dir", data, "--config", file.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2), "{text}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(expected), "{text}: {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
