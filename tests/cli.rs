//! The `petrel` binary end to end: init/id, devnet --json, run without a key file.

use std::path::PathBuf;
use std::process::{Command, Output};

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
    for key in ["wall_s", "cpu_s", "peak_rss_mib", "rss_per_node_kib"] {
        assert!(v[key].is_number(), "{key} in {text}");
    }
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
