//! Two `petrel run` processes on loopback, driven only through the `petrel` commands against
//! a running node: status, peers, put and get across them, put-mutable, provide and providers,
//! publish and subscribe across them, and shutdown. Every wait has a deadline.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

/// How long any one condition may take to come true.
const WAIT: Duration = Duration::from_secs(20);

fn petrel(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_petrel")).args(args).output().expect("petrel runs")
}

/// Runs a command that must succeed; its stdout.
fn ok(args: &[&str]) -> String {
    let out = petrel(args);
    assert!(out.status.success(), "petrel {args:?} failed: {out:?}");
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("petrel-ctl-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Lines of a child's pipe, on a channel.
fn lines(pipe: impl std::io::Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// The first line on `rx` containing `needle`, within `WAIT`.
fn wait_line(rx: &Receiver<String>, needle: &str) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line.contains(needle) => return line,
            Ok(_) => {}
            Err(e) => panic!("no line with {needle:?} within {WAIT:?}: {e}"),
        }
    }
}

/// Retries `f` until it returns `Some`, within `WAIT`.
fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(t) = f() {
            return t;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The exit status of `child` within `WAIT`.
fn wait_exit(child: &mut Child) -> std::process::ExitStatus {
    eventually("the process to exit", || child.try_wait().unwrap())
}

/// A `petrel run` process and its stderr lines.
struct Node {
    child: Child,
    stderr: Receiver<String>,
    dir: PathBuf,
    /// `NODEID@HOST:PORT`, from its first line.
    addr: String,
}

impl Node {
    fn start(dir: &Path, extra: &[&str]) -> Node {
        let data = dir.to_str().unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_petrel"))
            .args(["run", "--data-dir", data, "--listen", "127.0.0.1:0"])
            .args(["--metrics", "127.0.0.1:0"])
            .args(extra)
            .stderr(Stdio::piped())
            .spawn()
            .expect("petrel run starts");
        let stderr = lines(child.stderr.take().unwrap());
        let line = wait_line(&stderr, "dial it as ");
        let addr = line.rsplit("dial it as ").next().unwrap().trim_end_matches(')').to_string();
        Node { child, stderr, dir: dir.to_path_buf(), addr }
    }

    fn data(&self) -> &str {
        self.dir.to_str().unwrap()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn two_nodes_driven_only_through_the_cli() {
    let (dir_a, dir_b, dir_k) = (temp_dir("a"), temp_dir("b"), temp_dir("k"));
    let id_a = ok(&["init", "--data-dir", dir_a.to_str().unwrap()]).trim().to_string();
    let id_b = ok(&["init", "--data-dir", dir_b.to_str().unwrap()]).trim().to_string();
    let a = Node::start(&dir_a, &[]);
    assert!(a.addr.starts_with(&id_a), "{}", a.addr);
    let b = Node::start(&dir_b, &["--bootstrap", &a.addr]);

    // status and peers: each sees the other once the bootstrap connection is up.
    let status = ok(&["status", "--data-dir", a.data()]);
    assert!(status.contains(&id_a) && status.contains(&a.addr), "{status}");
    eventually("a to list b as a peer", || {
        ok(&["peers", "--data-dir", a.data()]).contains(&id_b).then_some(())
    });
    let peers = ok(&["peers", "--data-dir", b.data()]);
    assert!(peers.starts_with(&a.addr) && peers.contains("outbound"), "{peers}");
    let json: serde_json::Value =
        serde_json::from_str(&ok(&["status", "--data-dir", b.data(), "--json"])).unwrap();
    assert_eq!((json["id"].as_str(), json["peers"].as_u64()), (Some(id_b.as_str()), Some(1)));

    // put on a, get on b: the value's exact bytes, no newline added.
    let value = "hello from a\nsecond line";
    let key = ok(&["put", "--data-dir", a.data(), value]);
    let key = key.strip_suffix('\n').unwrap();
    assert!(key.len() == 64 && key.bytes().all(|c| c.is_ascii_hexdigit()), "{key:?}");
    let got = petrel(&["get", "--data-dir", b.data(), key]);
    assert!(got.status.success(), "{got:?}");
    assert_eq!(got.stdout, value.as_bytes());
    let missing = "42".repeat(32);
    let not_found = petrel(&["get", "--data-dir", b.data(), &missing]);
    assert_eq!(not_found.status.code(), Some(1), "{not_found:?}");
    assert_eq!(String::from_utf8_lossy(&not_found.stderr), "petrel: get: not found\n");

    // The value from stdin, with bytes that are not UTF-8.
    let mut put = Command::new(env!("CARGO_BIN_EXE_petrel"))
        .args(["put", "--data-dir", a.data(), "--file", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("petrel put starts");
    let binary = b"\xff\x00 from stdin".to_vec();
    put.stdin.take().unwrap().write_all(&binary).unwrap();
    let put = put.wait_with_output().unwrap();
    assert!(put.status.success(), "{put:?}");
    let binary_key = String::from_utf8(put.stdout).unwrap();
    let got = petrel(&["get", "--data-dir", b.data(), binary_key.trim()]);
    assert_eq!(got.stdout, binary);

    // A mutable record signed with another key file, put on b and read on a.
    ok(&["init", "--data-dir", dir_k.to_str().unwrap()]);
    let key_file = dir_k.join("node.key");
    let put = [
        "put-mutable",
        "--data-dir",
        b.data(),
        "--key-file",
        key_file.to_str().unwrap(),
        "--salt",
        "profile",
        "--seq",
        "7",
        "v7",
    ];
    let mutable_key = ok(&put).trim().to_string();
    let found: serde_json::Value =
        serde_json::from_str(&ok(&["get", "--data-dir", a.data(), "--json", &mutable_key]))
            .unwrap();
    assert_eq!((found["value"].as_str(), found["seq"].as_u64()), (Some("7637"), Some(7)));

    // provide on a, providers on b.
    ok(&["provide", "--data-dir", a.data(), key]);
    let providers = ok(&["providers", "--data-dir", b.data(), key]);
    assert_eq!(providers.trim(), a.addr, "{providers}");

    // subscribe on b, publish on a until the mesh carries it (publishes before that reach
    // nobody), then exactly that line.
    let mut sub = Command::new(env!("CARGO_BIN_EXE_petrel"))
        .args(["subscribe", "--data-dir", b.data(), "news"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("petrel subscribe starts");
    let sub_out = lines(sub.stdout.take().unwrap());
    wait_line(&lines(sub.stderr.take().unwrap()), "subscribed to \"news\"");
    let line = eventually("the subscriber to print a published message", || {
        ok(&["publish", "--data-dir", a.data(), "news", "hi\nall"]);
        sub_out.recv_timeout(Duration::from_millis(500)).ok()
    });
    assert_eq!(line, "hi\\nall");
    let _ = sub.kill();
    let _ = sub.wait();

    // shutdown returns once b is down, and b's process exits 0; b's socket is gone.
    assert_eq!(ok(&["shutdown", "--data-dir", b.data()]), "node stopped\n");
    let mut b = b;
    assert!(wait_exit(&mut b.child).success());
    wait_line(&a.stderr, &format!("peer {id_b} left"));
    let gone = petrel(&["status", "--data-dir", b.data()]);
    assert_eq!(gone.status.code(), Some(1));
    let err = String::from_utf8_lossy(&gone.stderr);
    assert!(err.starts_with("petrel: cannot reach node at ") && err.lines().count() == 1, "{err}");
    let mut a = a;
    ok(&["shutdown", "--data-dir", a.data()]);
    assert!(wait_exit(&mut a.child).success());
    for dir in [dir_a, dir_b, dir_k] {
        std::fs::remove_dir_all(dir).unwrap();
    }
}
