//! `petrel bench KIND`: system benchmarks on real loopback sockets, one process, a summary on
//! stderr and, with `--json`, one JSON object on stdout.
//!
//! Kinds (the first argument picks one; [`KINDS`] lists them):
//! - `transport`: TLS 1.3 handshake rate against one [`Node`], then framed throughput over one
//!   TLS connection to it. See [`run_transport`] for the method.
//! - `dht`: N nodes bootstrap, PUT and GET records; see [`super::bench_dht`].
//! - `gossip`: N nodes subscribe to one topic and publish at a paced rate; delivery, latency
//!   and CPU per delivery; see [`super::bench_gossip`].
//! - `idle`: N connected, subscribed nodes doing nothing: CPU and memory; see
//!   [`super::bench_idle`].
//! - `store`: the node's log on disk: put, get, compaction, restart; see
//!   [`super::bench_store`].
//! - `flood`: one node under attack by many connections while an honest peer pings it; see
//!   [`super::bench_flood`] (its attackers are clients of their own, one thread each).
//!
//! A kind is a `*Options` type parsed from the remaining arguments, a `run_*` function
//! returning a report, and the report's `human()` and `json()`. The client side of every bench
//! is a blocking `Client` on the bench thread: the only reactor measured is the node's.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::cli::report::cpu_seconds;
use crate::cli::{parse_flag, switch};
use crate::config::Config;
use crate::core::PeerLimits;
use crate::identity::Keypair;
use crate::node::Node;
use crate::runtime::limiter::LimiterConfig;
use crate::stats::percentile;
use crate::transport::tls::TlsConfig;
use crate::wire::codec;
use crate::wire::frame::{DEFAULT_MAX_FRAME_BYTES, HEADER_BYTES};
use crate::wire::messages::{
    Gossip, GossipMessage, Hello, Message, Request, Response, FEATURE_KAD, PROTOCOL_VERSION,
};

/// The benchmark kinds `petrel bench` knows, in the order of its usage text.
pub const KINDS: &[&str] = &["transport", "dht", "gossip", "idle", "flood", "store"];

/// Runs `petrel bench KIND [options]` with its command-line arguments.
pub fn main(args: &[String]) -> Result<(), String> {
    let kinds = KINDS.join(", ");
    let (kind, rest) = args.split_first().ok_or_else(|| format!("bench needs a kind: {kinds}"))?;
    if KINDS.contains(&kind.as_str())
        && super::usage::check(&format!("bench {kind}"), rest)? == super::usage::Checked::Helped
    {
        return Ok(());
    }
    match kind.as_str() {
        "transport" => {
            let opts = TransportOptions::parse(rest)?;
            let report = run_transport(&opts)?;
            eprintln!("{}", report.human());
            if opts.json {
                println!("{}", report.json());
            }
            Ok(())
        }
        "dht" => {
            let opts = super::bench_dht::DhtOptions::parse(rest)?;
            let report = super::bench_dht::run(&opts)?;
            eprintln!("{}", report.human());
            if opts.json {
                println!("{}", report.json());
            }
            Ok(())
        }
        "gossip" => {
            let opts = super::bench_gossip::GossipOptions::parse(rest)?;
            let report = super::bench_gossip::run(&opts)?;
            eprintln!("{}", report.human());
            if opts.json {
                println!("{}", report.json());
            }
            Ok(())
        }
        "idle" => {
            let opts = super::bench_idle::IdleOptions::parse(rest)?;
            let report = super::bench_idle::run(&opts)?;
            eprintln!("{}", report.human());
            if opts.json {
                println!("{}", report.json());
            }
            Ok(())
        }
        "flood" => {
            let opts = super::bench_flood::FloodOptions::parse(rest)?;
            let report = super::bench_flood::run(&opts)?;
            eprintln!("{}", report.human());
            if opts.json {
                println!("{}", report.json());
            }
            Ok(())
        }
        "store" => {
            let opts = super::bench_store::StoreOptions::parse(rest)?;
            let report = super::bench_store::run(&opts)?;
            eprintln!("{}", report.human());
            if opts.json {
                println!("{}", report.json());
            }
            Ok(())
        }
        other => Err(format!("unknown bench kind {other:?}; kinds: {kinds}")),
    }
}

/// The options of `petrel bench transport`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransportOptions {
    /// Sequential handshakes to time (at least 1).
    pub handshakes: usize,
    /// Throughput runs, in order: `(frame_bytes, total_bytes)`. `frame_bytes` is the whole
    /// frame on the wire, 4-byte header included; frames are sent until `total_bytes`.
    pub streams: Vec<(usize, u64)>,
    /// Print one JSON object on stdout.
    pub json: bool,
}

impl TransportOptions {
    /// Parses `[--handshakes N] [--frames-mib M] [--json]`. Without `--frames-mib`, 64 MiB go
    /// in 1 KiB frames and 256 MiB in 64 KiB frames; with it, M MiB go in each.
    pub fn parse(args: &[String]) -> Result<TransportOptions, String> {
        let handshakes = parse_flag(args, "--handshakes")?.unwrap_or(DEFAULT_HANDSHAKES);
        if handshakes == 0 {
            return Err("--handshakes must be at least 1".into());
        }
        let mib: Option<u64> = parse_flag(args, "--frames-mib")?;
        if let Some(m) = mib {
            if m == 0 || m > MAX_FRAMES_MIB {
                return Err(format!("--frames-mib must be 1..={MAX_FRAMES_MIB}"));
            }
        }
        let streams = DEFAULT_STREAMS
            .iter()
            .map(|&(frame_bytes, default_mib)| (frame_bytes, mib.unwrap_or(default_mib) * MIB))
            .collect();
        Ok(TransportOptions { handshakes, streams, json: switch(args, "--json") })
    }
}

/// The outcome of `petrel bench transport`.
#[derive(Debug, Clone, PartialEq)]
pub struct TransportReport {
    /// Handshake latencies, in microseconds, in the order they ran.
    pub handshake_us: Vec<u64>,
    /// Wall-clock time of the whole handshake loop (closes included), in seconds.
    pub handshake_loop_s: f64,
    /// One entry per throughput run.
    pub throughput: Vec<Throughput>,
    /// Wall-clock time of the whole bench, node start and key generation included, in seconds.
    pub wall_s: f64,
    /// User plus system CPU time of the process (node and client together), in seconds.
    pub cpu_s: f64,
}

/// One framed-throughput run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Throughput {
    /// Bytes of one frame on the wire, header included.
    pub frame_bytes: usize,
    /// Frames sent (the final Ping not counted).
    pub frames: u64,
    /// From the first frame written to the Pong read, in seconds.
    pub seconds: f64,
}

/// Runs the transport bench: starts one node, times `opts.handshakes` sequential handshakes
/// against it, then each throughput run of `opts.streams`, and shuts the node down.
///
/// Handshakes: TCP connect, TLS 1.3 with raw keys (the client presents one of
/// `CLIENT_KEYS` keys, generated before the clock starts, and expects the node's id), Hello
/// sent and the node's Hello read. The latency of one is from `connect` to the node's Hello;
/// the rate divides the count by the loop's time, which also holds the closes (close_notify,
/// then drop).
///
/// Throughput: one fresh connection per run; frames of a signed gossip Publish padded to
/// exactly `frame_bytes`, then one Ping. The node reads, decrypts and decodes every frame in
/// order, so its Pong marks the end.
pub fn run_transport(opts: &TransportOptions) -> Result<TransportReport, String> {
    let started = Instant::now();
    let node = Node::start(bench_config()).map_err(|e| format!("bench node: {e}"))?;
    let clients = client_configs(CLIENT_KEYS)?;
    eprintln!("bench: node {} on {}", node.id(), node.local_addr());
    let (handshake_us, handshake_loop_s) = handshakes(&node, &clients, opts.handshakes)?;
    let mut throughput = Vec::new();
    for &(frame_bytes, total_bytes) in &opts.streams {
        let tls = clients.first().ok_or("no client key")?;
        throughput.push(stream(&node, tls, frame_bytes, total_bytes)?);
    }
    node.shutdown();
    Ok(TransportReport {
        handshake_us,
        handshake_loop_s,
        throughput,
        wall_s: started.elapsed().as_secs_f64(),
        cpu_s: cpu_seconds().unwrap_or(0.0),
    })
}

/// A node for one benchmarking client on loopback: every admission and rate limit raised out
/// of reach. The defaults would (correctly) refuse the bench: one source may open 20
/// connections at once and 10 a second, and one peer may send 1,000 frames and 8 MiB a second.
pub fn bench_config() -> Config {
    let limiter = LimiterConfig {
        peer_frames_per_sec: UNLIMITED,
        peer_frames_burst: UNLIMITED,
        peer_bytes_per_sec: UNLIMITED,
        peer_bytes_burst: UNLIMITED,
        global_inbound_bytes_per_sec: UNLIMITED,
        global_inbound_bytes_burst: UNLIMITED,
        global_outbound_bytes_per_sec: UNLIMITED,
        global_outbound_bytes_burst: UNLIMITED,
        new_conns_per_sec: UNLIMITED,
        new_conns_burst: UNLIMITED,
        per_ip_conns_per_sec: UNLIMITED,
        per_ip_conns_burst: UNLIMITED,
        ..LimiterConfig::DEFAULT
    };
    // Closes reach the node a little after the next connect: leave room for stragglers.
    let limits = PeerLimits { max_connections: 1024, max_inbound: 1024, ..PeerLimits::DEFAULT };
    Config {
        keypair: Some(Keypair::from_seed(NODE_KEY_SEED)),
        rng_seed: Some(1),
        limits,
        limiter,
        ..Config::default()
    }
}

impl TransportReport {
    /// Handshakes timed.
    pub fn handshakes(&self) -> usize {
        self.handshake_us.len()
    }

    /// Handshakes per second over the whole loop (0 for an empty loop).
    pub fn handshakes_per_sec(&self) -> f64 {
        rate(self.handshakes() as f64, self.handshake_loop_s)
    }

    /// Nearest-rank percentile of the handshake latencies, in milliseconds.
    pub fn handshake_ms(&self, p: f64) -> f64 {
        let mut sorted = self.handshake_us.clone();
        sorted.sort_unstable();
        percentile(&sorted, p).unwrap_or(0) as f64 / 1000.0
    }

    /// A few human-readable lines.
    pub fn human(&self) -> String {
        let mut s = format!(
            concat!(
                "bench transport: {} handshakes, {:.0}/s; ",
                "latency p50 {:.3} ms p99 {:.3} ms max {:.3} ms\n"
            ),
            self.handshakes(),
            self.handshakes_per_sec(),
            self.handshake_ms(50.0),
            self.handshake_ms(99.0),
            self.handshake_ms(100.0)
        );
        for t in &self.throughput {
            let _ = writeln!(
                s,
                "bench transport: {} B frames: {} frames in {:.3} s, {:.1} MiB/s, {:.0} frames/s",
                t.frame_bytes,
                t.frames,
                t.seconds,
                t.mib_per_sec(),
                t.frames_per_sec()
            );
        }
        let _ = write!(s, "bench transport: wall {:.2} s cpu {:.2} s", self.wall_s, self.cpu_s);
        s
    }

    /// One JSON object, on one line.
    pub fn json(&self) -> String {
        let throughput: Vec<String> = self
            .throughput
            .iter()
            .map(|t| {
                format!(
                    concat!(
                        "{{\"frame_bytes\":{},\"frames\":{},",
                        "\"mib_per_sec\":{:.2},\"frames_per_sec\":{:.1}}}"
                    ),
                    t.frame_bytes,
                    t.frames,
                    t.mib_per_sec(),
                    t.frames_per_sec()
                )
            })
            .collect();
        format!(
            concat!(
                "{{\"bench\":\"transport\",\"handshakes\":{},\"handshakes_per_sec\":{:.1},",
                "\"handshake_ms\":{{\"p50\":{:.3},\"p99\":{:.3},\"max\":{:.3}}},",
                "\"throughput\":[{}],\"wall_s\":{:.3},\"cpu_s\":{:.2}}}"
            ),
            self.handshakes(),
            self.handshakes_per_sec(),
            self.handshake_ms(50.0),
            self.handshake_ms(99.0),
            self.handshake_ms(100.0),
            throughput.join(","),
            self.wall_s,
            self.cpu_s
        )
    }
}

impl Throughput {
    /// Frame bytes (headers included) per second, in MiB.
    pub fn mib_per_sec(&self) -> f64 {
        rate(self.frames as f64 * self.frame_bytes as f64 / MIB as f64, self.seconds)
    }

    /// Frames per second.
    pub fn frames_per_sec(&self) -> f64 {
        rate(self.frames as f64, self.seconds)
    }
}

/// `count / seconds`, 0 when no time was measured (so the JSON never holds `inf` or `NaN`).
fn rate(count: f64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        count / seconds
    } else {
        0.0
    }
}

/// One TLS configuration per client key, built before any clock starts.
fn client_configs(count: u8) -> Result<Vec<TlsConfig>, String> {
    (0..count)
        .map(|i| {
            let key = Keypair::from_seed([i.wrapping_add(CLIENT_KEY_SEED_BASE); 32]);
            TlsConfig::new(&key, 0).map_err(|e| e.to_string())
        })
        .collect()
}

/// Times `count` sequential connect-handshake-hello-close rounds; returns each latency (µs)
/// and the loop's total time (s). Keys rotate: the node may see a close after the next
/// connect, and a second connection of one `NodeId` would meet the duplicate rule instead.
fn handshakes(node: &Node, clients: &[TlsConfig], count: usize) -> Result<(Vec<u64>, f64), String> {
    let mut latencies_us = Vec::with_capacity(count);
    let loop_started = Instant::now();
    for (i, tls) in clients.iter().cycle().take(count).enumerate() {
        let started = Instant::now();
        let client = Client::connect(tls, node).map_err(|e| format!("handshake {i}: {e}"))?;
        latencies_us.push(u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX));
        client.close();
    }
    Ok((latencies_us, loop_started.elapsed().as_secs_f64()))
}

/// Sends `total_bytes` in frames of `frame_bytes` over one new connection, then a Ping, and
/// times it until the Pong.
fn stream(
    node: &Node,
    tls: &TlsConfig,
    frame_bytes: usize,
    total_bytes: u64,
) -> Result<Throughput, String> {
    let frame = publish_frame(&Keypair::from_seed(NODE_KEY_SEED), frame_bytes)?;
    let frames = total_bytes / frame_bytes as u64;
    // Batch small frames so each write carries ~64 KiB: the client's cost per write should not
    // dominate what is measured, which is the node's.
    let per_batch = (BATCH_BYTES / frame_bytes).max(1) as u64;
    let batch = frame.repeat(per_batch as usize);
    let mut ping = Vec::new();
    let ping_msg = Message::Request { id: PING_ID, body: Request::Ping };
    codec::encode_frame(&ping_msg, DEFAULT_MAX_FRAME_BYTES, &mut ping)
        .map_err(|e| e.to_string())?;
    let mut client = Client::connect(tls, node)?;
    let started = Instant::now();
    for _ in 0..frames / per_batch {
        client.send(&batch)?;
    }
    for _ in 0..frames % per_batch {
        client.send(&frame)?;
    }
    client.send(&ping)?;
    client.await_pong(PING_ID)?;
    let seconds = started.elapsed().as_secs_f64();
    client.close();
    Ok(Throughput { frame_bytes, frames, seconds })
}

/// The frame of a signed gossip Publish padded so that the whole frame, header included, is
/// exactly `frame_bytes`. Errors if `frame_bytes` is below the smallest such frame or above
/// the frame limit.
fn publish_frame(author: &Keypair, frame_bytes: usize) -> Result<Vec<u8>, String> {
    let publish = |payload: Vec<u8>| {
        Message::Gossip(Gossip::Publish(GossipMessage::sign(author, 1, TOPIC.into(), payload)))
    };
    let overhead =
        HEADER_BYTES + codec::payload_len(&publish(Vec::new())).map_err(|e| e.to_string())?;
    let payload_bytes = frame_bytes
        .checked_sub(overhead)
        .ok_or_else(|| format!("a {frame_bytes} B frame is below the {overhead} B minimum"))?;
    let mut out = Vec::with_capacity(frame_bytes);
    codec::encode_frame(&publish(vec![PAD_BYTE; payload_bytes]), DEFAULT_MAX_FRAME_BYTES, &mut out)
        .map_err(|e| format!("a {frame_bytes} B frame: {e}"))?;
    // The payload's length prefix is a fixed-width u64, so padding adds byte for byte.
    if out.len() != frame_bytes {
        return Err(format!("padded frame is {} B, not {frame_bytes} B", out.len()));
    }
    Ok(out)
}

/// A petrel connection driven by hand from the bench thread: rustls over a blocking
/// `TcpStream`, every read and write bounded by [`IO_TIMEOUT`].
struct Client {
    tls: rustls::ClientConnection,
    sock: TcpStream,
}

impl Client {
    /// Connects to `node`, completes TLS expecting its id, and exchanges Hellos.
    fn connect(tls_config: &TlsConfig, node: &Node) -> Result<Client, String> {
        let tls = tls_config.dial(node.id()).map_err(|e| format!("TLS session: {e}"))?;
        let sock = TcpStream::connect(node.local_addr()).map_err(|e| format!("connect: {e}"))?;
        let setup = |s: &TcpStream| {
            s.set_nodelay(true)?;
            s.set_read_timeout(Some(IO_TIMEOUT))?;
            s.set_write_timeout(Some(IO_TIMEOUT))
        };
        setup(&sock).map_err(|e| format!("socket options: {e}"))?;
        let mut client = Client { tls, sock };
        while client.tls.is_handshaking() {
            client.tls.complete_io(&mut client.sock).map_err(|e| format!("TLS handshake: {e}"))?;
        }
        let mut hello = Vec::new();
        codec::encode_frame(&Message::Hello(bench_hello()), DEFAULT_MAX_FRAME_BYTES, &mut hello)
            .map_err(|e| e.to_string())?;
        client.send(&hello)?;
        match client.read_message()? {
            Message::Hello(h) if h.version == PROTOCOL_VERSION => Ok(client),
            other => Err(format!("expected the node's Hello, got {}", other.kind())),
        }
    }

    /// Sends `bytes` as application data and flushes them to the socket.
    fn send(&mut self, bytes: &[u8]) -> Result<(), String> {
        // One TLS record's worth at a time: rustls bounds the plaintext it buffers.
        for piece in bytes.chunks(MAX_RECORD_PLAINTEXT) {
            self.tls.writer().write_all(piece).map_err(|e| format!("TLS write: {e}"))?;
            while self.tls.wants_write() {
                self.tls.write_tls(&mut self.sock).map_err(|e| format!("socket write: {e}"))?;
            }
        }
        Ok(())
    }

    /// Reads frames until the Pong answering `id`; anything else is an error.
    fn await_pong(&mut self, id: u64) -> Result<(), String> {
        match self.read_message()? {
            Message::Response { id: got, body: Response::Pong { .. } } if got == id => Ok(()),
            other => Err(format!("expected Pong {id}, got {}", other.kind())),
        }
    }

    /// Reads one frame and decodes it, refusing a length over the frame limit before
    /// allocating.
    fn read_message(&mut self) -> Result<Message, String> {
        let mut stream = rustls::Stream::new(&mut self.tls, &mut self.sock);
        let mut header = [0u8; HEADER_BYTES];
        stream.read_exact(&mut header).map_err(|e| format!("read: {e}"))?;
        let len = u32::from_be_bytes(header) as usize;
        if len > DEFAULT_MAX_FRAME_BYTES {
            return Err(format!("node sent a {len} B frame"));
        }
        let mut payload = vec![0u8; len];
        stream.read_exact(&mut payload).map_err(|e| format!("read: {e}"))?;
        codec::decode(&payload, DEFAULT_MAX_FRAME_BYTES).map_err(|e| format!("decode: {e}"))
    }

    /// Sends close_notify and drops the socket; errors are moot at this point.
    fn close(mut self) {
        self.tls.send_close_notify();
        while self.tls.wants_write() {
            if self.tls.write_tls(&mut self.sock).is_err() {
                return;
            }
        }
    }
}

/// The client's Hello: the bench node's network and difficulty, no listen address.
fn bench_hello() -> Hello {
    let config = Config::default();
    Hello {
        version: PROTOCOL_VERSION,
        network: config.network,
        id_pow_bits: config.id_pow_bits,
        features: FEATURE_KAD,
        agent: concat!("petrel-bench/", env!("CARGO_PKG_VERSION")).into(),
        listen_addrs: Vec::new(),
    }
}

/// Default `--handshakes`.
const DEFAULT_HANDSHAKES: usize = 1000;
/// Throughput runs without `--frames-mib`: (frame bytes, MiB sent).
const DEFAULT_STREAMS: [(usize, u64); 2] = [(1024, 64), (64 * 1024, 256)];
/// Largest `--frames-mib`: 1 TiB, which keeps byte counts far from overflow.
const MAX_FRAMES_MIB: u64 = 1 << 20;
/// Client keys the handshakes rotate through.
const CLIENT_KEYS: u8 = 16;
/// Seed byte of the first client key; client `i` uses `CLIENT_KEY_SEED_BASE + i`.
const CLIENT_KEY_SEED_BASE: u8 = 0x40;
/// Seed of the bench node's key (also the author of the published frames).
const NODE_KEY_SEED: [u8; 32] = [0xBE; 32];
/// A rate or burst no single loopback client reaches: 1 Ti per second.
const UNLIMITED: u64 = 1 << 40;
/// Bound on every blocking socket read or write.
const IO_TIMEOUT: Duration = Duration::from_secs(30);
/// Bytes of frames handed to one `send`.
const BATCH_BYTES: usize = 64 * 1024;
/// Plaintext bytes of a full TLS record (RFC 8446 §5.1).
const MAX_RECORD_PLAINTEXT: usize = 16 * 1024;
/// Request id of the Ping that ends a throughput run.
const PING_ID: u64 = 1;
/// Topic of the published frames.
const TOPIC: &str = "bench";
/// Padding byte of the published payloads.
const PAD_BYTE: u8 = 0xA5;
/// One MiB.
const MIB: u64 = 1 << 20;

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    const REPORT: TransportReport = TransportReport {
        handshake_us: Vec::new(),
        handshake_loop_s: 0.5,
        throughput: Vec::new(),
        wall_s: 2.0,
        cpu_s: 1.5,
    };

    // ---- Arguments ----

    #[test]
    fn defaults_are_1000_handshakes_64_and_256_mib() {
        let opts = TransportOptions::parse(&[]).unwrap();
        assert_eq!(opts.handshakes, 1000);
        assert_eq!(opts.streams, vec![(1024, 64 * MIB), (65536, 256 * MIB)]);
        assert!(!opts.json);
    }

    #[test]
    fn frames_mib_sets_both_runs() {
        let opts =
            TransportOptions::parse(&args(&["--handshakes", "20", "--frames-mib", "2", "--json"]))
                .unwrap();
        assert_eq!(opts.handshakes, 20);
        assert_eq!(opts.streams, vec![(1024, 2 * MIB), (65536, 2 * MIB)]);
        assert!(opts.json);
    }

    #[test]
    fn refuses_zero_bad_and_huge_values() {
        for bad in [
            &["--handshakes", "0"][..],
            &["--handshakes", "many"],
            &["--handshakes"],
            &["--frames-mib", "0"],
            &["--frames-mib", "1048577"],
            &["--frames-mib", "-1"],
        ] {
            assert!(TransportOptions::parse(&args(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn unknown_or_missing_kind_lists_the_kinds() {
        let err = main(&args(&["dht2"])).unwrap_err();
        assert!(err.contains("\"dht2\"") && err.contains("transport"), "{err}");
        let err = main(&[]).unwrap_err();
        assert!(err.contains("transport"), "{err}");
    }

    // ---- Frames ----

    #[test]
    fn publish_frames_are_exactly_the_target_size_and_decode() {
        let author = Keypair::from_seed([9; 32]);
        for size in [1024, 65536, 200] {
            let frame = publish_frame(&author, size).unwrap();
            assert_eq!(frame.len(), size);
            let len = u32::from_be_bytes(frame[..4].try_into().unwrap()) as usize;
            assert_eq!(len, size - HEADER_BYTES);
            match codec::decode(&frame[4..], DEFAULT_MAX_FRAME_BYTES).unwrap() {
                Message::Gossip(Gossip::Publish(m)) => {
                    assert!(m.verify());
                    assert!(m.payload.0.iter().all(|&b| b == PAD_BYTE));
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn publish_frame_refuses_sizes_out_of_range() {
        let author = Keypair::from_seed([9; 32]);
        assert!(publish_frame(&author, 10).unwrap_err().contains("minimum"));
        assert!(publish_frame(&author, 2 * DEFAULT_MAX_FRAME_BYTES).is_err());
    }

    // ---- Report ----

    #[test]
    fn report_rates_and_nearest_rank_latencies() {
        let report = TransportReport {
            handshake_us: vec![4000, 1000, 3000, 2000],
            throughput: vec![Throughput { frame_bytes: 1024, frames: 2048, seconds: 0.5 }],
            ..REPORT
        };
        assert_eq!(report.handshakes(), 4);
        assert_eq!(report.handshakes_per_sec(), 8.0);
        assert_eq!(report.handshake_ms(50.0), 2.0);
        assert_eq!(report.handshake_ms(99.0), 4.0);
        assert_eq!(report.throughput[0].mib_per_sec(), 4.0);
        assert_eq!(report.throughput[0].frames_per_sec(), 4096.0);
        let zero = Throughput { frame_bytes: 1024, frames: 5, seconds: 0.0 };
        assert_eq!((zero.mib_per_sec(), zero.frames_per_sec()), (0.0, 0.0));
    }

    #[test]
    fn json_has_the_documented_shape() {
        let report = TransportReport {
            handshake_us: vec![1500, 2500],
            throughput: vec![
                Throughput { frame_bytes: 1024, frames: 1024, seconds: 0.25 },
                Throughput { frame_bytes: 65536, frames: 16, seconds: 0.5 },
            ],
            ..REPORT
        };
        let text = report.json();
        assert_eq!(text.lines().count(), 1);
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["bench"], "transport");
        assert_eq!(v["handshakes"], 2);
        assert_eq!(v["handshakes_per_sec"], 4.0);
        assert_eq!(v["handshake_ms"]["p50"], 1.5);
        assert_eq!(v["handshake_ms"]["p99"], 2.5);
        assert_eq!(v["handshake_ms"]["max"], 2.5);
        assert_eq!(v["throughput"][0]["frame_bytes"], 1024);
        assert_eq!(v["throughput"][0]["mib_per_sec"], 4.0);
        assert_eq!(v["throughput"][1]["frames"], 16);
        assert_eq!(v["throughput"][1]["frames_per_sec"], 32.0);
        assert_eq!(v["wall_s"], 2.0);
        assert_eq!(v["cpu_s"], 1.5);
        assert!(report.human().contains("2 handshakes"));
    }

    // ---- Loopback ----

    #[test]
    fn runs_against_a_real_node_on_loopback() {
        let opts = TransportOptions {
            handshakes: 3,
            streams: vec![(1024, 64 * 1024 + 100), (65536, 3 * 65536)],
            json: false,
        };
        let report = run_transport(&opts).unwrap();
        assert_eq!(report.handshakes(), 3);
        assert!(report.handshake_us.iter().all(|&us| us > 0));
        assert!(report.handshakes_per_sec() > 0.0);
        let frames: Vec<(usize, u64)> =
            report.throughput.iter().map(|t| (t.frame_bytes, t.frames)).collect();
        assert_eq!(frames, vec![(1024, 64), (65536, 3)]);
        assert!(report.throughput.iter().all(|t| t.seconds > 0.0));
    }

    #[test]
    fn the_default_limits_would_refuse_the_handshake_loop() {
        let defaults = LimiterConfig::DEFAULT;
        assert!((defaults.per_ip_conns_burst as usize) < DEFAULT_HANDSHAKES);
        let bench = bench_config().limiter;
        assert!(bench.per_ip_conns_burst >= DEFAULT_HANDSHAKES as u64);
        assert!(bench.peer_frames_burst >= 256 * MIB / 1024);
    }
}
