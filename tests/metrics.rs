//! The metrics export against real nodes on loopback: a scrape over a plain `TcpStream`, the
//! output checked by `promtool check metrics`, `petrel run --metrics`, and a real Prometheus
//! server scraping a node and answering a query through its HTTP API.
//!
//! `promtool` and `prometheus` come from Debian's `prometheus` package. Without them the tests
//! that need them print that they skipped, unless `PETREL_REQUIRE_PROMETHEUS=1` (CI sets it),
//! which turns a missing tool into a failure.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use petrel::metrics::{self, MetricsServer, CONTENT_TYPE};
use petrel::Config;

mod common;

/// How long a real Prometheus may take to start, scrape and answer.
const PROMETHEUS_WAIT: Duration = Duration::from_secs(60);

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// `GET path` over HTTP/1.0 (so the answer is never chunked): the status code and the body.
fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String, String)> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(common::WAIT))?;
    stream.set_write_timeout(Some(common::WAIT))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut text = String::new();
    stream.read_to_string(&mut text)?;
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    Ok((status, head.to_string(), body.to_string()))
}

fn scrape(server: &MetricsServer) -> String {
    let (status, head, body) = http_get(server.local_addr(), "/metrics").expect("a scrape");
    assert_eq!(status, 200, "{head}");
    assert!(head.contains(&format!("Content-Type: {CONTENT_TYPE}")), "{head}");
    body
}

/// The value of the sample `series` (name and labels exactly as exported).
fn sample(body: &str, series: &str) -> Option<f64> {
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .find(|(s, _)| *s == series)
        .and_then(|(_, v)| v.parse().ok())
}

/// The path of `name` on PATH; when it is missing, `None` after printing that the test
/// skipped, or a failure under `PETREL_REQUIRE_PROMETHEUS=1`.
fn tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path).map(|dir| dir.join(name)).find(|p| p.is_file());
    if found.is_none() {
        let required = std::env::var("PETREL_REQUIRE_PROMETHEUS").is_ok_and(|v| v == "1");
        assert!(!required, "{name} is not on PATH and PETREL_REQUIRE_PROMETHEUS=1");
        eprintln!("skipped: {name} is not on PATH (Debian package prometheus)");
    }
    found
}

/// `promtool check metrics` on `body`: passes, or the test fails with what promtool said.
fn promtool_check(promtool: &Path, body: &str) {
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool starts");
    child.stdin.take().expect("piped").write_all(body.as_bytes()).expect("promtool reads");
    let out = child.wait_with_output().expect("promtool ends");
    let said =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "promtool check metrics failed: {said}");
    assert!(said.trim().is_empty(), "promtool found problems: {said}");
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("petrel-metrics-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    dir
}

#[test]
fn a_scrape_shows_connections_and_traffic_and_passes_promtool() {
    let dir = temp_dir("scrape");
    let a = common::start(Config { data_dir: Some(dir.clone()), ..common::config(41) });
    let b = common::node(42);
    let server = metrics::serve(loopback(), a.handle()).expect("the responder starts");
    let idle = scrape(&server);
    assert_eq!(sample(&idle, "petrel_peers"), Some(0.0));
    assert_eq!(sample(&idle, "petrel_connections_active{direction=\"outbound\"}"), Some(0.0));

    a.handle().connect(b.peer_addr()).unwrap();
    a.handle().ping(b.id()).unwrap();
    let body = scrape(&server);
    assert_eq!(sample(&body, "petrel_peers"), Some(1.0), "{body}");
    assert_eq!(sample(&body, "petrel_connections_active{direction=\"outbound\"}"), Some(1.0));
    assert_eq!(sample(&body, "petrel_connections_established_total"), Some(1.0));
    assert_eq!(sample(&body, "petrel_connections_limit"), Some(256.0));
    for series in [
        "petrel_sent_frames_total",
        "petrel_received_frames_total",
        "petrel_sent_bytes_total",
        "petrel_received_bytes_total",
        "petrel_rate_limit_verdicts_total{verdict=\"allow\"}",
        "petrel_requests_served_total",
    ] {
        assert!(sample(&body, series).is_some_and(|v| v > 0.0), "{series} in {body}");
    }
    // The data directory's log and gossip (on by default) are exported too.
    assert!(sample(&body, "petrel_log_file_bytes").is_some(), "{body}");
    assert!(sample(&body, "petrel_gossip_peers").is_some(), "{body}");

    // b leaves with a Goodbye: a's scrape shows the connection's end and its cause (b's
    // dial-back of a's announced address, closed by b, may be counted there as well).
    let closed = "petrel_connections_closed_total{cause=\"peer_closed\"}";
    let before = sample(&scrape(&server), closed).unwrap_or_default();
    drop(b);
    common::wait_for("a to see b leave", || sample(&scrape(&server), "petrel_peers") == Some(0.0));
    let body = scrape(&server);
    assert!(sample(&body, closed).is_some_and(|n| n > before), "{body}");

    if let Some(promtool) = tool("promtool") {
        promtool_check(&promtool, &body);
    }
    server.shutdown();
    drop(a);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A `petrel run` process, killed if the test ends early.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn petrel_run_serves_metrics_that_pass_promtool() {
    let dir = temp_dir("run");
    let data = dir.to_str().unwrap();
    let init =
        Command::new(env!("CARGO_BIN_EXE_petrel")).args(["init", "--data-dir", data]).output();
    assert!(init.expect("petrel init runs").status.success());
    let mut child = Command::new(env!("CARGO_BIN_EXE_petrel"))
        .args(["run", "--data-dir", data, "--listen", "127.0.0.1:0", "--metrics", "127.0.0.1:0"])
        .stderr(Stdio::piped())
        .spawn()
        .expect("petrel run starts");
    let stderr = child.stderr.take().expect("piped");
    let running = Running(child);
    // The address is in the one line that announces it; lines arrive on a thread, so the wait
    // is bounded even if the process never prints it.
    let (tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(15);
    let addr: SocketAddr = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = lines.recv_timeout(left).expect("a line `.. metrics on http://..`");
        if let Some((_, rest)) = line.split_once(" metrics on http://") {
            break rest.trim_end_matches("/metrics").parse().expect("an address");
        }
    };
    let (status, head, body) = http_get(addr, "/metrics").expect("a scrape");
    assert_eq!(status, 200, "{head}");
    assert!(sample(&body, "petrel_log_file_bytes").is_some(), "{body}");
    assert_eq!(http_get(addr, "/").expect("an answer").0, 404);
    if let Some(promtool) = tool("promtool") {
        promtool_check(&promtool, &body);
    }
    drop(running);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A Prometheus server process and its directory, both gone when the test ends.
struct Prometheus {
    child: Child,
    dir: PathBuf,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Prometheus {
    /// Starts `binary` scraping `target` every second, its API on a free loopback port.
    fn start(binary: &Path, target: SocketAddr) -> (Prometheus, SocketAddr) {
        let dir = temp_dir("prometheus");
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: petrel\n    static_configs:\n      - targets: ['{target}']\n"
        );
        std::fs::write(dir.join("prometheus.yml"), config).expect("the config is written");
        // A port the OS had free a moment ago; a collision makes Prometheus exit, and the
        // test then fails naming its log.
        let web = TcpListener::bind(loopback()).and_then(|l| l.local_addr()).expect("a free port");
        let log = std::fs::File::create(dir.join("prometheus.log")).expect("a log file");
        let child = Command::new(binary)
            .arg(format!("--config.file={}", dir.join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address={web}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("prometheus starts");
        (Prometheus { child, dir }, web)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }
}

/// The JSON answer of the Prometheus API at `path`, if it answered 200 with JSON.
fn api(web: SocketAddr, path: &str) -> Option<serde_json::Value> {
    match http_get(web, path) {
        Ok((200, _, body)) => serde_json::from_str(&body).ok(),
        _ => None,
    }
}

#[test]
fn a_real_prometheus_scrapes_the_node_and_answers_a_query() {
    let Some(binary) = tool("prometheus") else { return };
    let node = common::node(43);
    let server = metrics::serve(loopback(), node.handle()).expect("the responder starts");
    let target = server.local_addr();
    let (mut prometheus, web) = Prometheus::start(&binary, target);
    let expected = Config::default().limits.max_connections as f64;
    let deadline = Instant::now() + PROMETHEUS_WAIT;
    let (mut targets, mut query) = (None, None);
    loop {
        if let Ok(Some(status)) = prometheus.child.try_wait() {
            panic!("prometheus exited ({status}): {}", prometheus.log());
        }
        targets = api(web, "/api/v1/targets").or(targets);
        let up = targets.as_ref().is_some_and(|t| {
            let active = t["data"]["activeTargets"].as_array().cloned().unwrap_or_default();
            active.iter().any(|a| {
                a["health"] == "up" && a["scrapeUrl"] == format!("http://{target}/metrics")
            })
        });
        query = api(web, "/api/v1/query?query=petrel_connections_limit").or(query);
        let value = query.as_ref().and_then(|q| {
            let v = q["data"]["result"][0]["value"][1].as_str()?.parse::<f64>().ok()?;
            Some(v)
        });
        if up && value == Some(expected) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "within {PROMETHEUS_WAIT:?}: targets {targets:?}, query {query:?}, log: {}",
            prometheus.log()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    drop(prometheus);
    server.shutdown();
}
