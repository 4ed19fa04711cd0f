//! `petrel bench flood`: how a node holds under attack, and how an operator checks its limits.
//! One victim [`Node`], one honest peer (a `Node` too) that pings it every 100 ms, and A
//! attackers: connections the bench drives by hand over real TLS 1.3 with raw keys and a real
//! Hello, each running the chosen attack for T seconds. Everything runs in one process on
//! 127.0.0.1, one thread per attacker.
//!
//! Attacks (`--attack`):
//! - `find-value`: the victim holds one 64 KiB record; each attacker writes FIND_VALUE requests
//!   for it, 64 a write, as fast as its socket takes them, and never reads.
//! - `find-node`: FIND_NODE requests for random targets, 64 a round: written together, then
//!   the 64 answers read.
//! - `store`: STOREs of mutable records with 64 KiB values and a well-formed signature that does
//!   not match (a real signature over another sequence number), so the victim verifies each
//!   in full on its worker pool; 4 a round, answers read.
//! - `no-read`: FIND_NODE requests for random targets, 64 a write, never read.
//! - `oversized`: after the Hello, one frame header announcing one byte over the frame limit,
//!   then waiting for the victim's answer.
//! - `garbage`: by turns, one frame of 1 KiB of random bytes after TLS and the Hello, or 1 KiB of
//!   random bytes instead of a TLS ClientHello (no TLS at all).
//! - `many-ids`: every connection with a fresh key: Hello, 64 FIND_NODEs and their answers
//!   (well within a peer's budget), close_notify, and at once the next connection: many ids
//!   from one address.
//!
//! Attacker threads run at the lowest CPU priority (`renice -n 19` on their thread, when the
//! tool is there; `attackers_niced` says how many): real attackers run on their own machines,
//! and on a shared host of two cores their busy threads would otherwise put their own CPU into
//! the victim's latency.
//!
//! An attacker whose connection ends comes back (with its own key; a fresh one for
//! `many-ids`) 50 ms later, or at once when it left by itself, until T is over: each of its
//! connections has an outcome.
//!
//! What is measured:
//! - Memory: the process's VmRSS once the victim and the honest peer run, the honest peer has
//!   bootstrapped, the victim holds its record and the attackers' keys and TLS configurations
//!   exist is the *baseline*. `victim_peak_rss_mib` is VmHWM at the end less the baseline;
//!   `victim_final_rss_mib` is VmRSS once the attackers have gone and the victim has dropped
//!   their connections (or 3 s passed), less the baseline. Both are growth of the whole
//!   process: the victim's, plus the attacker threads' own stacks and buffers (and, for
//!   `many-ids`, the keys made during the run). The idle footprint of the victim is not in
//!   them.
//! - The honest peer: a Ping every 100 ms for T seconds, timed as the application sees it (the
//!   `Handle` call); percentiles are nearest-rank. A failure is an error or no Pong within 2 s
//!   (it then reconnects).
//! - The attackers, from their side: frames written (for raw garbage, writes), answers read,
//!   how each connection ended and whether each attacker was *throttled*: one of its socket
//!   reads or writes made no progress for 200 ms (the victim stopped reading it, or kept its
//!   answers). A connection ends with the victim's Goodbye (its reason, e.g. `rate_limited`),
//!   `eof` (closed without a Goodbye), `reset`, `tls_alert`, `tls_error`, `bad_frame`,
//!   `timeout` (no TLS handshake or no answer to raw bytes in time) or `refused` (closed before
//!   the TLS handshake completed: admission refused it). After a failed write, an attacker that
//!   never reads drains what arrived, so a Goodbye that reached it is still seen. `left`
//!   (many-ids closing by itself) and `open` (still open at T) are not disconnections. An
//!   attacker is *free* when it was never throttled and none of its connections was ended by
//!   the victim.
//! - The victim, from its own counters ([`crate::Handle::snapshot`] before and after):
//!   `frames_accepted` is the requests it answered during the run less the honest pings (the
//!   honest peer's few DHT requests of its own remain in it);
//!   `victim` holds closes by cause, refusals, backlogs and high-water marks.
//!
//! Limits: the victim keeps every default except the per-source admission rate, raised to the
//! node-wide one (200 new connections a second, 400 at once), because every attacker connects
//! from 127.0.0.1 (with the default 10 a second and 20 at once, 50 attackers could not all
//! connect). The node-wide admission rate still applies, and so does everything else.
//!
//! The attackers share the cores with the victim: on a real network they bring their own
//! CPUs, so the honest latency measured here is pessimistic.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::cli::report::{cpu_seconds, proc_status_kib};
use crate::cli::{flag, parse_flag, switch};
use crate::config::Config;
use crate::identity::{Keypair, NodeId};
use crate::node::{Handle, Node};
use crate::rng::Rng;
use crate::runtime::descriptors;
use crate::runtime::limiter::LimiterConfig;
use crate::stats::percentile;
use crate::transport::tls::TlsConfig;
use crate::wire::codec;
use crate::wire::frame::{DEFAULT_MAX_FRAME_BYTES, HEADER_BYTES};
use crate::wire::messages::{
    GoodbyeReason, Hello, Key, Message, MutableRecord, Record, Request, FEATURE_KAD,
    MAX_VALUE_BYTES, PROTOCOL_VERSION,
};
use crate::wire::signing::immutable_key;
use crate::Snapshot;

/// An attack `petrel bench flood` runs; the module doc says what each does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attack {
    /// FIND_VALUE for a 64 KiB record, never reading.
    FindValue,
    /// FIND_NODE for random targets, reading the answers.
    FindNode,
    /// STOREs of 64 KiB mutable records with a wrong signature, reading the answers.
    Store,
    /// FIND_NODE for random targets, never reading.
    NoRead,
    /// A frame header over the frame limit.
    Oversized,
    /// Random bytes after TLS, or instead of TLS.
    Garbage,
    /// A fresh key for every connection, reconnecting.
    ManyIds,
}

impl Attack {
    /// Every attack, in the order of the usage text.
    pub const ALL: [Attack; 7] = [
        Attack::FindValue,
        Attack::FindNode,
        Attack::Store,
        Attack::NoRead,
        Attack::Oversized,
        Attack::Garbage,
        Attack::ManyIds,
    ];

    /// The name `--attack` takes and the JSON prints.
    pub fn name(self) -> &'static str {
        match self {
            Attack::FindValue => "find-value",
            Attack::FindNode => "find-node",
            Attack::Store => "store",
            Attack::NoRead => "no-read",
            Attack::Oversized => "oversized",
            Attack::Garbage => "garbage",
            Attack::ManyIds => "many-ids",
        }
    }
}

/// The options of `petrel bench flood`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FloodOptions {
    /// The attack every attacker runs.
    pub attack: Attack,
    /// Attackers (1 ..= 512), each one connection at a time.
    pub attackers: usize,
    /// How long the attack lasts, seconds (1 ..= 3600).
    pub seconds: u64,
    /// Print one JSON object on stdout.
    pub json: bool,
}

impl FloodOptions {
    /// Parses `--attack KIND [--attackers A] [--seconds T] [--json]`; A and T default to 50 and
    /// 20, the scenario of the issue that asked for this bench.
    pub fn parse(args: &[String]) -> Result<FloodOptions, String> {
        let names = || Attack::ALL.map(Attack::name).join(" | ");
        let attack = flag(args, "--attack")?
            .ok_or_else(|| format!("bench flood needs --attack {}", names()))?;
        let attack = Attack::ALL
            .into_iter()
            .find(|a| a.name() == attack)
            .ok_or_else(|| format!("unknown attack {attack:?}; attacks: {}", names()))?;
        let opts = FloodOptions {
            attack,
            attackers: parse_flag(args, "--attackers")?.unwrap_or(50),
            seconds: parse_flag(args, "--seconds")?.unwrap_or(20),
            json: switch(args, "--json"),
        };
        if !(1..=MAX_ATTACKERS).contains(&opts.attackers) {
            return Err(format!("--attackers must be 1..={MAX_ATTACKERS}"));
        }
        if !(1..=MAX_SECONDS).contains(&opts.seconds) {
            return Err(format!("--seconds must be 1..={MAX_SECONDS}"));
        }
        Ok(opts)
    }
}

/// What `petrel bench flood` measured.
#[derive(Debug, Clone, PartialEq)]
pub struct FloodReport {
    /// The options it ran with.
    pub opts: FloodOptions,
    /// VmRSS at the baseline (see the module doc), KiB.
    pub baseline_rss_kib: u64,
    /// VmHWM at the end, KiB.
    pub peak_rss_kib: u64,
    /// VmRSS after the attackers have gone, KiB.
    pub final_rss_kib: u64,
    /// Latencies of the honest pings that succeeded, microseconds, in order.
    pub honest_ping_us: Vec<u64>,
    /// Honest pings that failed.
    pub honest_ping_failures: u64,
    /// One tally per attacker.
    pub attackers: Vec<Tally>,
    /// Requests the victim answered during the run, less the honest pings.
    pub frames_accepted: u64,
    /// The victim's own counters.
    pub victim: VictimCounters,
    /// Wall time of the whole bench, seconds.
    pub wall_s: f64,
    /// CPU time of the process (victim, honest peer and attackers), seconds.
    pub cpu_s: f64,
}

/// Puts the calling thread at nice 19 (module doc); whether it worked. Linux names a thread's
/// id in `/proc/thread-self`, and `renice` takes it.
fn lower_priority() -> bool {
    let Ok(link) = std::fs::read_link("/proc/thread-self") else { return false };
    let Some(tid) = link.file_name().and_then(|n| n.to_str()).map(str::to_owned) else {
        return false;
    };
    std::process::Command::new("renice")
        .args(["-n", "19", "-p", &tid])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// What happened to one attacker, from its side.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    /// Its thread runs at nice 19.
    pub niced: bool,
    /// Connections it tried.
    pub connections: u64,
    /// Connections that got as far as the attack: the Hellos exchanged (raw garbage: the
    /// victim answered it).
    pub established: u64,
    /// How its connections ended, by outcome name (see the module doc).
    pub ends: BTreeMap<&'static str, u64>,
    /// Frames it wrote whole (raw garbage: writes).
    pub frames_sent: u64,
    /// Responses it read.
    pub answers_read: u64,
    /// One of its reads or writes made no progress for [`THROTTLED_AFTER`].
    pub throttled: bool,
}

impl Tally {
    /// Never throttled, and no connection of its was ended by the victim.
    pub fn is_free(&self) -> bool {
        !self.throttled && self.ends.keys().all(|&k| k == LEFT || k == OPEN)
    }
}

/// The victim's counters over the run (after less before), its high-water marks since it
/// started (its setup PUT included), and its connections at T and at the end.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VictimCounters {
    /// Requests answered (the honest pings included).
    pub requests_served: u64,
    /// Connections closed for exceeding their rate persistently (`Goodbye(RateLimited)`).
    pub closed_rate_limited: u64,
    /// Connections closed for not reading their answers (`Goodbye(RateLimited)`).
    pub closed_slow_reader: u64,
    /// Connections closed for a frame not finished in time (`Goodbye(IdleTimeout)`).
    pub closed_frame_timeout: u64,
    /// Connections closed for breaking TLS, framing or the message format.
    pub closed_misbehaving: u64,
    /// Connections refused by the admission rate (node-wide or per source).
    pub refused_rate: u64,
    /// Connections refused because the connection slab was full.
    pub refused_entries: u64,
    /// Connections refused by the connection table (inbound limit).
    pub refused_inbound: u64,
    /// Connections that did not finish TLS and the Hello in time.
    pub connect_timeouts: u64,
    /// Times a connection was not read because its answers were not taken.
    pub backlogs: u64,
    /// Times a connection was not read because of the node-wide partial-frame bound.
    pub partial_holds: u64,
    /// Closed connections dropped with output unsent after the linger.
    pub lingered_out: u64,
    /// Frames not sent: a write queue was full.
    pub frames_refused_queue: u64,
    /// Frames not sent: the buffer pool was exhausted.
    pub frames_refused_pool: u64,
    /// Times the node-wide inbound byte budget went into debt (no socket read until repaid).
    pub inbound_budget_debts: u64,
    /// Times the node-wide outbound byte budget went into debt (no socket written until
    /// repaid).
    pub outbound_budget_debts: u64,
    /// Peers' requests answered `Overloaded` because the answer did not come in time.
    pub answers_expired: u64,
    /// STOREs answered `Overloaded` (too many waiting, or the worker pool full).
    pub stores_overloaded: u64,
    /// STOREs and provider announcements refused (bad signature, quota...).
    pub stores_rejected: u64,
    /// The most output queued on all connections at once, bytes.
    pub pending_output_high_water: usize,
    /// The most bytes of partly received frames held at once.
    pub partial_frame_high_water: usize,
    /// The most bytes the buffer pool lent at once.
    pub buffer_pool_high_water: usize,
    /// Connections in the slab at T, before the attackers stopped.
    pub connections_at_end: usize,
    /// Connections in the slab after the attackers had gone.
    pub connections_final: usize,
    /// Records held at the end.
    pub records_held: usize,
}

impl VictimCounters {
    fn between(before: &Snapshot, at_end: &Snapshot, after: &Snapshot) -> VictimCounters {
        let (b, a) = (before, after);
        let rejected = |s: &Snapshot| s.dht.rejections.values().sum::<u64>();
        VictimCounters {
            requests_served: a.core.requests_served - b.core.requests_served,
            closed_rate_limited: a.core.closed_rate_limited - b.core.closed_rate_limited,
            closed_slow_reader: a.core.closed_slow_reader - b.core.closed_slow_reader,
            closed_frame_timeout: a.core.closed_frame_timeout - b.core.closed_frame_timeout,
            closed_misbehaving: a.reactor.closed_misbehaving - b.reactor.closed_misbehaving,
            refused_rate: a.reactor.refused_rate - b.reactor.refused_rate,
            refused_entries: a.reactor.refused_entries - b.reactor.refused_entries,
            refused_inbound: a.core.refused_inbound - b.core.refused_inbound,
            connect_timeouts: a.peers.connect_timeouts - b.peers.connect_timeouts,
            backlogs: a.reactor.backlogs - b.reactor.backlogs,
            partial_holds: a.reactor.partial_holds - b.reactor.partial_holds,
            lingered_out: a.reactor.lingered_out - b.reactor.lingered_out,
            frames_refused_queue: a.reactor.frames_refused_queue - b.reactor.frames_refused_queue,
            frames_refused_pool: a.reactor.frames_refused_pool - b.reactor.frames_refused_pool,
            inbound_budget_debts: a.limiter.inbound_refusals - b.limiter.inbound_refusals,
            outbound_budget_debts: a.limiter.outbound_refusals - b.limiter.outbound_refusals,
            answers_expired: a.core.answers_expired - b.core.answers_expired,
            stores_overloaded: a.dht.overloaded - b.dht.overloaded,
            stores_rejected: rejected(a) - rejected(b),
            pending_output_high_water: a.reactor.pending_output_high_water,
            partial_frame_high_water: a.reactor.partial_frame_high_water,
            buffer_pool_high_water: a.buffers.high_water_bytes,
            connections_at_end: at_end.reactor.entries,
            connections_final: a.reactor.entries,
            records_held: a.store.records,
        }
    }
}

/// Runs the bench described in the module doc.
pub fn run(opts: &FloodOptions) -> Result<FloodReport, String> {
    let started = Instant::now();
    check_descriptors(opts.attackers)?;
    let victim_config = victim_config();
    let hello = hello_frame(&victim_config)?;
    let victim = Node::start(victim_config).map_err(|e| format!("victim: {e}"))?;
    let honest = Node::start(Config {
        keypair: Some(Keypair::from_seed(HONEST_SEED)),
        rng_seed: Some(2),
        ..Config::default()
    })
    .map_err(|e| format!("honest peer: {e}"))?;
    let (vh, hh) = (victim.handle(), honest.handle());
    hh.connect(victim.peer_addr()).map_err(|e| format!("honest peer: {e}"))?;
    let _ = hh.bootstrap(); // its self-lookup, over before the baseline either way
    let value = vec![RECORD_BYTE; MAX_VALUE_BYTES];
    let record_key = immutable_key(&value);
    let _ = vh.put(value); // kept locally whether or not the honest peer stores it too
    if vh.holds(record_key) != Ok(true) {
        return Err("the victim does not hold its 64 KiB record".into());
    }
    let shared = Shared::new(opts, &victim, record_key, hello)?;
    let baseline_rss_kib = proc_status_kib("VmRSS:").unwrap_or(0);
    let before = vh.snapshot().map_err(|e| format!("victim snapshot: {e}"))?;
    eprintln!(
        "bench flood: victim {} on {}, {} attackers, {} for {} s",
        victim.id(),
        victim.local_addr(),
        opts.attackers,
        opts.attack.name(),
        opts.seconds
    );
    let (pings, attackers, at_end) = attack(&shared, &hh, &vh, victim.peer_addr(), opts)?;
    settle(&vh);
    let final_rss_kib = proc_status_kib("VmRSS:").unwrap_or(0);
    let peak_rss_kib = proc_status_kib("VmHWM:").unwrap_or(0);
    let after = vh.snapshot().map_err(|e| format!("victim snapshot: {e}"))?;
    honest.shutdown();
    victim.shutdown();
    let victim = VictimCounters::between(&before, &at_end, &after);
    Ok(FloodReport {
        opts: opts.clone(),
        baseline_rss_kib,
        peak_rss_kib,
        final_rss_kib,
        frames_accepted: victim.requests_served.saturating_sub(pings.latencies_us.len() as u64),
        honest_ping_us: pings.latencies_us,
        honest_ping_failures: pings.failures,
        attackers,
        victim,
        wall_s: started.elapsed().as_secs_f64(),
        cpu_s: cpu_seconds().unwrap_or(0.0),
    })
}

/// Pings and attacks for `opts.seconds`; returns the pings, the attackers' tallies and the
/// victim's snapshot at T.
fn attack(
    shared: &Shared,
    honest: &Handle,
    victim: &Handle,
    target: crate::PeerAddr,
    opts: &FloodOptions,
) -> Result<(Pings, Vec<Tally>, Snapshot), String> {
    let until = Instant::now() + Duration::from_secs(opts.seconds);
    thread::scope(|scope| {
        let mut threads = Vec::with_capacity(opts.attackers);
        for index in 0..opts.attackers {
            let spawned = thread::Builder::new()
                .name(format!("flood-{index}"))
                .stack_size(ATTACKER_STACK_BYTES)
                .spawn_scoped(scope, move || attacker(shared, index));
            match spawned {
                Ok(t) => threads.push(t),
                Err(e) => {
                    shared.stop.store(true, Ordering::Relaxed);
                    return Err(format!("attacker thread: {e}"));
                }
            }
        }
        let pings = ping_loop(honest, target, until);
        let at_end = victim.snapshot();
        shared.stop.store(true, Ordering::Relaxed);
        let tallies: Vec<Tally> =
            threads.into_iter().map(|t| t.join().unwrap_or_default()).collect();
        let at_end = at_end.map_err(|e| format!("victim snapshot: {e}"))?;
        Ok((pings, tallies, at_end))
    })
}

/// What the honest peer saw.
struct Pings {
    /// Latencies of the pings that succeeded, µs, in order.
    latencies_us: Vec<u64>,
    /// Pings that failed.
    failures: u64,
}

/// Pings `victim` from `honest` every [`PING_INTERVAL`] until `until`.
fn ping_loop(honest: &Handle, victim: crate::PeerAddr, until: Instant) -> Pings {
    let (mut latencies_us, mut failures) = (Vec::new(), 0);
    let mut next = Instant::now();
    while next < until {
        thread::sleep(next.saturating_duration_since(Instant::now()));
        let started = Instant::now();
        match honest.ping_timeout(victim.id, PING_TIMEOUT) {
            Ok(_) => latencies_us.push(micros(started.elapsed())),
            Err(_) => {
                failures += 1;
                let _ = honest.connect_timeout(victim, PING_TIMEOUT);
            }
        }
        // A late ping delays the next one; missed ticks are not made up in a burst.
        next = (next + PING_INTERVAL).max(Instant::now());
    }
    Pings { latencies_us, failures }
}

/// Waits until the victim holds no connection but the honest peer's, at most
/// [`SETTLE_TIMEOUT`].
fn settle(victim: &Handle) {
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    while Instant::now() < deadline {
        match victim.snapshot() {
            Ok(s) if s.reactor.entries > 1 => thread::sleep(Duration::from_millis(20)),
            _ => return,
        }
    }
}

/// Raises the descriptor limit and checks that each attacker connection (two descriptors in
/// this process: the attacker's and the victim's) fits.
fn check_descriptors(attackers: usize) -> Result<(), String> {
    let limit = descriptors::raise_limit().map_err(|e| format!("file descriptor limit: {e}"))?;
    let needed = 2 * attackers as u64 + descriptors::PROCESS_RESERVE;
    if limit < needed {
        return Err(format!("{attackers} attackers need {needed} file descriptors; limit {limit}"));
    }
    Ok(())
}

/// The victim: defaults, except the per-source admission rate raised to the node-wide one.
fn victim_config() -> Config {
    let limiter = LimiterConfig {
        per_ip_conns_per_sec: LimiterConfig::DEFAULT.new_conns_per_sec,
        per_ip_conns_burst: LimiterConfig::DEFAULT.new_conns_burst,
        ..LimiterConfig::DEFAULT
    };
    Config {
        keypair: Some(Keypair::from_seed(VICTIM_SEED)),
        rng_seed: Some(1),
        limiter,
        ..Config::default()
    }
}

/// The attackers' Hello frame: the victim's network and difficulty, no listen address.
fn hello_frame(victim: &Config) -> Result<Vec<u8>, String> {
    let hello = Message::Hello(Hello {
        version: PROTOCOL_VERSION,
        network: victim.network.clone(),
        id_pow_bits: victim.id_pow_bits,
        features: FEATURE_KAD,
        agent: concat!("petrel-flood/", env!("CARGO_PKG_VERSION")).into(),
        listen_addrs: Vec::new(),
    });
    let mut frame = Vec::new();
    codec::encode_frame(&hello, DEFAULT_MAX_FRAME_BYTES, &mut frame).map_err(|e| e.to_string())?;
    Ok(frame)
}

// ---- The attackers ----

/// What every attacker thread reads.
struct Shared {
    attack: Attack,
    victim: NodeId,
    addr: SocketAddr,
    record_key: Key,
    hello: Vec<u8>,
    /// One TLS configuration per attacker (`many-ids` makes one per connection instead).
    tls: Vec<TlsConfig>,
    /// A STORE request frame (id 0) of a 64 KiB mutable record signed at sequence 0 and sent
    /// with sequence 1: its signature is well-formed and wrong.
    store_frame: Vec<u8>,
    /// Set at T: every attacker ends its connection and returns.
    stop: AtomicBool,
}

impl Shared {
    fn new(
        opts: &FloodOptions,
        victim: &Node,
        record_key: Key,
        hello: Vec<u8>,
    ) -> Result<Shared, String> {
        let tls = if opts.attack == Attack::ManyIds {
            Vec::new()
        } else {
            (0..opts.attackers)
                .map(|i| TlsConfig::new(&attacker_key(i as u64), 0).map_err(|e| e.to_string()))
                .collect::<Result<_, _>>()?
        };
        Ok(Shared {
            attack: opts.attack,
            victim: victim.id(),
            addr: victim.local_addr(),
            record_key,
            hello,
            tls,
            store_frame: forged_store_frame(MAX_VALUE_BYTES),
            stop: AtomicBool::new(false),
        })
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}

/// One attacker: connection after connection until T.
fn attacker(shared: &Shared, index: usize) -> Tally {
    let mut tally = Tally { niced: lower_priority(), ..Tally::default() };
    let mut rng = Rng::new(ATTACKER_RNG_SEED ^ index as u64);
    while !shared.stopped() {
        tally.connections += 1;
        let end = connection(shared, index, &mut rng, &mut tally);
        *tally.ends.entry(end.name()).or_default() += 1;
        if end == End::Open {
            break;
        }
        if end != End::Left {
            let back_at = Instant::now() + RECONNECT_PAUSE;
            while !shared.stopped() && Instant::now() < back_at {
                thread::sleep(Duration::from_millis(5));
            }
        }
    }
    tally
}

/// One connection of attacker `index`, from connect to its end.
fn connection(shared: &Shared, index: usize, rng: &mut Rng, tally: &mut Tally) -> End {
    // Garbage alternates between after-TLS and instead-of-TLS, the attackers out of step.
    if shared.attack == Attack::Garbage && (tally.connections + index as u64).is_multiple_of(2) {
        return garbage_without_tls(shared, rng, tally);
    }
    let fresh;
    let tls = match shared.tls.get(index) {
        Some(tls) => tls,
        None => match TlsConfig::new(&Keypair::from_seed(rng.bytes32()), 0) {
            Ok(tls) => {
                fresh = tls;
                &fresh
            }
            Err(_) => return End::TlsError,
        },
    };
    let mut conn = match Conn::open(tls, shared) {
        Ok(conn) => conn,
        Err(end) => return end,
    };
    tally.established += 1;
    let end = run_attack(&mut conn, shared, rng, tally).err().unwrap_or(End::Left);
    tally.throttled |= conn.throttled;
    end
}

/// Runs the attack on an open connection until it ends (`Err`), or returns `Ok` when the
/// attacker leaves by itself (`many-ids`).
fn run_attack(
    conn: &mut Conn<'_>,
    shared: &Shared,
    rng: &mut Rng,
    tally: &mut Tally,
) -> Result<(), End> {
    let mut next_id = 0;
    match shared.attack {
        Attack::FindValue => {
            let key = shared.record_key;
            loop {
                let batch = requests(&mut next_id, BATCH, || Request::FindValue { key });
                conn.send(&batch)?;
                tally.frames_sent += BATCH as u64;
            }
        }
        Attack::NoRead => loop {
            conn.send(&find_nodes(&mut next_id, rng, BATCH))?;
            tally.frames_sent += BATCH as u64;
        },
        Attack::FindNode => loop {
            conn.send(&find_nodes(&mut next_id, rng, BATCH))?;
            tally.frames_sent += BATCH as u64;
            read_answers(conn, BATCH, tally)?;
        },
        Attack::ManyIds => {
            conn.send(&find_nodes(&mut next_id, rng, BATCH))?;
            tally.frames_sent += BATCH as u64;
            read_answers(conn, BATCH, tally)?;
            conn.leave();
            Ok(())
        }
        Attack::Store => loop {
            // The 64 KiB frame is shared by every attacker; only its id is each one's own.
            for _ in 0..STORE_BATCH {
                conn.send(&with_id(&shared.store_frame, next_id))?;
                conn.send(shared.store_frame.get(REQUEST_PREFIX_BYTES..).unwrap_or_default())?;
                next_id += 1;
            }
            tally.frames_sent += STORE_BATCH as u64;
            read_answers(conn, STORE_BATCH, tally)?;
        },
        Attack::Oversized => {
            let len = u32::try_from(DEFAULT_MAX_FRAME_BYTES + 1).unwrap_or(u32::MAX);
            conn.send(&len.to_be_bytes())?;
            tally.frames_sent += 1;
            loop {
                conn.read_frame()?; // until the victim ends it
            }
        }
        Attack::Garbage => {
            let mut frame = u32::try_from(GARBAGE_BYTES).unwrap_or(0).to_be_bytes().to_vec();
            frame.extend(random_bytes(rng, GARBAGE_BYTES));
            conn.send(&frame)?;
            tally.frames_sent += 1;
            loop {
                conn.read_frame()?;
            }
        }
    }
}

/// `count` request frames with consecutive ids from `next_id`, bodies from `body`.
fn requests(next_id: &mut u64, count: usize, mut body: impl FnMut() -> Request) -> Vec<u8> {
    let mut frames = Vec::new();
    for _ in 0..count {
        let msg = Message::Request { id: *next_id, body: body() };
        *next_id += 1;
        // Every body built here is far below the frame limit; a failure would only drop it.
        let _ = codec::encode_frame(&msg, DEFAULT_MAX_FRAME_BYTES, &mut frames);
    }
    frames
}

/// A STORE request frame (id 0) of a mutable record with a `value_bytes` value, signed at
/// sequence 0 and sent with sequence 1: the signature is well-formed and wrong.
fn forged_store_frame(value_bytes: usize) -> Vec<u8> {
    let value = vec![RECORD_BYTE; value_bytes];
    let signed = MutableRecord::sign(&attacker_key(u64::MAX), b"flood".to_vec(), 0, value);
    let record = Record::Mutable(MutableRecord { seq: 1, ..signed });
    let store = Request::Store { record, ttl_secs: STORE_TTL_SECS, expected_seq: None };
    requests(&mut 0, 1, || store.clone())
}

/// The first [`REQUEST_PREFIX_BYTES`] of the request frame `frame`, with the request id `id`.
fn with_id(frame: &[u8], id: u64) -> Vec<u8> {
    let mut prefix = frame.get(..REQUEST_PREFIX_BYTES).unwrap_or_default().to_vec();
    if let Some(at) = prefix.get_mut(REQUEST_PREFIX_BYTES - 8..) {
        at.copy_from_slice(&id.to_le_bytes());
    }
    prefix
}

/// `count` FIND_NODE frames for random targets.
fn find_nodes(next_id: &mut u64, rng: &mut Rng, count: usize) -> Vec<u8> {
    requests(next_id, count, || Request::FindNode { target: Key::from_bytes(rng.bytes32()) })
}

/// Reads frames until `count` responses came; other frames are ignored.
fn read_answers(conn: &mut Conn<'_>, count: usize, tally: &mut Tally) -> Result<(), End> {
    let mut read = 0;
    while read < count {
        if let Message::Response { .. } = conn.read_frame()? {
            read += 1;
            tally.answers_read += 1;
        }
    }
    Ok(())
}

/// `garbage` without TLS: 1 KiB of random bytes where the ClientHello should be, then what
/// the victim answers, until it closes: a TLS alert, or nothing at all when it closed the
/// connection unread (admission refused it; a refused TLS dial ends the same way).
fn garbage_without_tls(shared: &Shared, rng: &mut Rng, tally: &mut Tally) -> End {
    let Ok(mut sock) = TcpStream::connect_timeout(&shared.addr, CONNECT_TIMEOUT) else {
        return End::Refused;
    };
    if set_timeouts(&sock).is_err() {
        return End::Reset;
    }
    if sock.write_all(&random_bytes(rng, GARBAGE_BYTES)).is_err() {
        return End::Refused;
    }
    tally.frames_sent += 1;
    let deadline = Instant::now() + RAW_ANSWER_TIMEOUT;
    let mut buf = [0u8; 256];
    // The first byte the victim answered: a TLS record's content type (RFC 8446 §5.1).
    let mut answer = None;
    loop {
        let closed = match sock.read(&mut buf) {
            Ok(0) => End::Eof,
            Ok(n) => {
                answer = answer.or(buf.get(..n).and_then(|b| b.first().copied()));
                continue;
            }
            Err(e) if is_timeout(&e) && shared.stopped() => return End::Open,
            Err(e) if is_timeout(&e) && Instant::now() >= deadline => return End::Timeout,
            Err(e) if is_timeout(&e) => continue,
            Err(_) => End::Reset,
        };
        tally.established += u64::from(answer.is_some());
        return match answer {
            None => End::Refused,
            Some(TLS_ALERT_CONTENT_TYPE) => End::TlsAlert,
            Some(_) => closed,
        };
    }
}

fn random_bytes(rng: &mut Rng, len: usize) -> Vec<u8> {
    (0..len.div_ceil(8)).flat_map(|_| rng.next_u64().to_le_bytes()).take(len).collect()
}

fn attacker_key(index: u64) -> Keypair {
    let mut seed = [ATTACKER_KEY_TAG; 32];
    seed[..8].copy_from_slice(&index.to_le_bytes());
    Keypair::from_seed(seed)
}

// ---- One attacker connection: rustls over a blocking socket ----

/// How an attacker connection ended, from the attacker's side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// The victim said Goodbye, for this reason.
    Goodbye(GoodbyeReason),
    /// The victim closed (close_notify or TCP FIN) without a Goodbye.
    Eof,
    /// The connection was reset or the socket failed.
    Reset,
    /// The victim sent a TLS alert.
    TlsAlert,
    /// The TLS session failed otherwise (or could not be made).
    TlsError,
    /// The victim sent a frame the attacker could not decode.
    BadFrame,
    /// No TLS handshake, or no answer to raw bytes, in time.
    Timeout,
    /// Closed before the TLS handshake completed (raw garbage: closed without an answer):
    /// refused at admission.
    Refused,
    /// The attacker closed it itself.
    Left,
    /// Still open at T.
    Open,
}

/// The outcome name of a connection the attacker closed itself.
const LEFT: &str = "left";
/// The outcome name of a connection still open at T.
const OPEN: &str = "open";

impl End {
    fn name(self) -> &'static str {
        match self {
            End::Goodbye(reason) => reason_name(reason),
            End::Eof => "eof",
            End::Reset => "reset",
            End::TlsAlert => "tls_alert",
            End::TlsError => "tls_error",
            End::BadFrame => "bad_frame",
            End::Timeout => "timeout",
            End::Refused => "refused",
            End::Left => LEFT,
            End::Open => OPEN,
        }
    }
}

/// The snake_case name of a Goodbye reason (proto-spec/messages.md §6).
fn reason_name(reason: GoodbyeReason) -> &'static str {
    match reason {
        GoodbyeReason::Shutdown => "shutdown",
        GoodbyeReason::IdleTimeout => "idle_timeout",
        GoodbyeReason::TooManyConnections => "too_many_connections",
        GoodbyeReason::DuplicateConnection => "duplicate_connection",
        GoodbyeReason::ProtocolViolation => "protocol_violation",
        GoodbyeReason::IncompatibleVersion => "incompatible_version",
        GoodbyeReason::NetworkMismatch => "network_mismatch",
        GoodbyeReason::RateLimited => "rate_limited",
        GoodbyeReason::LowScore => "low_score",
    }
}

/// An attacker's TLS connection to the victim. Every socket call waits at most [`IO_SLICE`],
/// so the attacker sees T pass and measures how long the victim made it wait.
struct Conn<'a> {
    tls: rustls::ClientConnection,
    sock: TcpStream,
    inbox: Inbox,
    last_progress: Instant,
    /// A read or write made no progress for [`THROTTLED_AFTER`].
    throttled: bool,
    shared: &'a Shared,
}

impl<'a> Conn<'a> {
    /// Connects, completes TLS expecting the victim's id, and exchanges Hellos.
    fn open(tls_config: &TlsConfig, shared: &'a Shared) -> Result<Conn<'a>, End> {
        let tls = tls_config.dial(shared.victim).map_err(|_| End::TlsError)?;
        let sock =
            TcpStream::connect_timeout(&shared.addr, CONNECT_TIMEOUT).map_err(|_| End::Refused)?;
        set_timeouts(&sock).map_err(|_| End::Reset)?;
        let mut conn = Conn {
            tls,
            sock,
            inbox: Inbox::default(),
            last_progress: Instant::now(),
            throttled: false,
            shared,
        };
        let deadline = Instant::now() + HANDSHAKE_TIMEOUT;
        while conn.tls.is_handshaking() {
            match conn.tls.complete_io(&mut conn.sock) {
                Ok(_) => {}
                Err(e) if is_timeout(&e) && shared.stopped() => return Err(End::Open),
                Err(e) if is_timeout(&e) && Instant::now() >= deadline => return Err(End::Timeout),
                Err(e) if is_timeout(&e) => {}
                Err(e) => return Err(handshake_end(&e)),
            }
        }
        conn.send(&shared.hello)?;
        while !matches!(conn.read_frame()?, Message::Hello(_)) {}
        // Waiting for the handshake and the Hello is not being throttled.
        conn.throttled = false;
        Ok(conn)
    }

    /// Writes `bytes` as application data and flushes them to the socket.
    fn send(&mut self, bytes: &[u8]) -> Result<(), End> {
        if self.shared.stopped() {
            return Err(End::Open);
        }
        // One TLS record's worth at a time: rustls bounds the plaintext it buffers.
        for piece in bytes.chunks(MAX_RECORD_PLAINTEXT) {
            self.tls.writer().write_all(piece).map_err(|_| End::TlsError)?;
            while self.tls.wants_write() {
                match self.tls.write_tls(&mut self.sock) {
                    Ok(_) => self.last_progress = Instant::now(),
                    Err(e) if is_timeout(&e) => self.waited()?,
                    // A reader that never reads learns here why: what reached it before the
                    // reset may hold the Goodbye.
                    Err(_) => return Err(self.drain(End::Reset)),
                }
            }
        }
        Ok(())
    }

    /// The next frame; a Goodbye, a close or a failure ends the connection instead.
    fn read_frame(&mut self) -> Result<Message, End> {
        loop {
            match self.inbox.next_frame()? {
                Some(Message::Goodbye(g)) => return Err(End::Goodbye(g.reason)),
                Some(msg) => return Ok(msg),
                None => self.fill()?,
            }
        }
    }

    /// One socket read, decrypted into the inbox.
    fn fill(&mut self) -> Result<(), End> {
        match self.tls.read_tls(&mut self.sock) {
            Ok(0) => Err(End::Eof),
            Ok(_) => {
                self.last_progress = Instant::now();
                self.take_plaintext()
            }
            Err(e) if is_timeout(&e) => self.waited(),
            Err(_) => Err(End::Reset),
        }
    }

    fn take_plaintext(&mut self) -> Result<(), End> {
        self.tls.process_new_packets().map_err(|e| match e {
            rustls::Error::AlertReceived(_) => End::TlsAlert,
            _ => End::TlsError,
        })?;
        // Stops at WouldBlock (nothing more decrypted) or at the end; what was read stays.
        let _ = self.tls.reader().read_to_end(&mut self.inbox.buf);
        Ok(())
    }

    /// A socket call timed out: the end of the run ends the connection; a long wait marks
    /// the attacker throttled.
    fn waited(&mut self) -> Result<(), End> {
        if self.shared.stopped() {
            return Err(End::Open);
        }
        if self.last_progress.elapsed() >= THROTTLED_AFTER {
            self.throttled = true;
        }
        Ok(())
    }

    /// After a failed write: reads what had arrived, for at most [`DRAIN_TIMEOUT`], looking
    /// for a Goodbye; `otherwise` when there is none.
    fn drain(&mut self, otherwise: End) -> End {
        let deadline = Instant::now() + DRAIN_TIMEOUT;
        loop {
            match self.inbox.next_frame() {
                Ok(Some(Message::Goodbye(g))) => return End::Goodbye(g.reason),
                Ok(Some(_)) => continue,
                Ok(None) => {}
                Err(end) => return end,
            }
            if Instant::now() >= deadline {
                return otherwise;
            }
            match self.tls.read_tls(&mut self.sock) {
                Ok(0) => return otherwise,
                Ok(_) => {
                    if let Err(end) = self.take_plaintext() {
                        return end;
                    }
                }
                Err(e) if is_timeout(&e) => {}
                Err(_) => return otherwise,
            }
        }
    }

    /// Closes with close_notify; errors are moot.
    fn leave(&mut self) {
        self.tls.send_close_notify();
        while self.tls.wants_write() {
            if self.tls.write_tls(&mut self.sock).is_err() {
                return;
            }
        }
    }
}

/// Received plaintext not yet taken as frames.
#[derive(Debug, Default)]
struct Inbox {
    buf: Vec<u8>,
    /// Where the next frame starts in `buf`.
    start: usize,
}

impl Inbox {
    /// The next whole frame, decoded; `None` until it has all arrived.
    fn next_frame(&mut self) -> Result<Option<Message>, End> {
        let rest = &self.buf[self.start..];
        let Some(&[a, b, c, d]) = rest.get(..HEADER_BYTES) else {
            self.keep_only_the_rest();
            return Ok(None);
        };
        let len = u32::from_be_bytes([a, b, c, d]) as usize;
        if len > DEFAULT_MAX_FRAME_BYTES {
            return Err(End::BadFrame);
        }
        let Some(payload) = rest.get(HEADER_BYTES..HEADER_BYTES + len) else {
            self.keep_only_the_rest();
            return Ok(None);
        };
        let msg = codec::decode(payload, DEFAULT_MAX_FRAME_BYTES).map_err(|_| End::BadFrame)?;
        self.start += HEADER_BYTES + len;
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
        Ok(Some(msg))
    }

    /// Drops the frames already taken, keeping the one in progress.
    fn keep_only_the_rest(&mut self) {
        self.buf.drain(..self.start);
        self.start = 0;
    }
}

/// How a failed TLS handshake ended: refused (closed or reset before it completed), an alert,
/// or another TLS failure.
fn handshake_end(e: &io::Error) -> End {
    let tls_error = e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>());
    match tls_error {
        Some(rustls::Error::AlertReceived(_)) => End::TlsAlert,
        Some(_) => End::TlsError,
        None => End::Refused,
    }
}

fn set_timeouts(sock: &TcpStream) -> io::Result<()> {
    sock.set_nodelay(true)?;
    sock.set_read_timeout(Some(IO_SLICE))?;
    sock.set_write_timeout(Some(IO_SLICE))
}

/// A blocking socket call that ran out of its timeout (`WouldBlock` on Unix).
fn is_timeout(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut)
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

// ---- The report ----

impl FloodReport {
    /// Nearest-rank percentile of the honest ping latencies, milliseconds (0 with none).
    pub fn honest_ping_ms(&self, p: f64) -> f64 {
        let mut sorted = self.honest_ping_us.clone();
        sorted.sort_unstable();
        percentile(&sorted, p).unwrap_or(0) as f64 / 1000.0
    }

    /// Peak growth of the process over the baseline, MiB.
    pub fn peak_rss_mib(&self) -> f64 {
        mib(self.peak_rss_kib.saturating_sub(self.baseline_rss_kib))
    }

    /// Growth of the process over the baseline once the attackers have gone, MiB.
    pub fn final_rss_mib(&self) -> f64 {
        mib(self.final_rss_kib.saturating_sub(self.baseline_rss_kib))
    }

    /// Connection outcomes summed over the attackers, by name.
    pub fn ends(&self) -> BTreeMap<&'static str, u64> {
        let mut ends = BTreeMap::new();
        for (name, n) in self.attackers.iter().flat_map(|t| &t.ends) {
            *ends.entry(*name).or_default() += n;
        }
        ends
    }

    /// Connections the victim ended, by how: every outcome but `left` and `open`.
    pub fn disconnected(&self) -> BTreeMap<&'static str, u64> {
        let mut ends = self.ends();
        ends.retain(|name, _| *name != LEFT && *name != OPEN);
        ends
    }

    fn sum(&self, f: impl Fn(&Tally) -> u64) -> u64 {
        self.attackers.iter().map(f).sum()
    }

    fn count(&self, f: impl Fn(&Tally) -> bool) -> usize {
        self.attackers.iter().filter(|t| f(t)).count()
    }

    /// A few lines for a person.
    pub fn human(&self) -> String {
        let o = &self.opts;
        let ends = self.ends();
        let list = |m: &BTreeMap<&str, u64>| {
            let parts: Vec<String> = m.iter().map(|(k, v)| format!("{k} {v}")).collect();
            if parts.is_empty() {
                "none".to_string()
            } else {
                parts.join(", ")
            }
        };
        let v = &self.victim;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "bench flood: {}, {} attackers for {} s",
            o.attack.name(),
            o.attackers,
            o.seconds
        );
        let _ = writeln!(
            s,
            "  victim RSS (process growth over {:.1} MiB): peak +{:.1} MiB, final +{:.1} MiB",
            mib(self.baseline_rss_kib),
            self.peak_rss_mib(),
            self.final_rss_mib()
        );
        let _ = writeln!(
            s,
            "  honest pings: {} ok, p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms, {} failed",
            self.honest_ping_us.len(),
            self.honest_ping_ms(50.0),
            self.honest_ping_ms(99.0),
            self.honest_ping_ms(100.0),
            self.honest_ping_failures
        );
        let _ = writeln!(
            s,
            "  attackers: {} frames sent, {} accepted, {} answers read; {} of {} throttled, \
             {} free",
            self.sum(|t| t.frames_sent),
            self.frames_accepted,
            self.sum(|t| t.answers_read),
            self.count(|t| t.throttled),
            o.attackers,
            self.count(Tally::is_free)
        );
        let _ = writeln!(
            s,
            "  connections: {} tried, {} established; ended: {}",
            self.sum(|t| t.connections),
            self.sum(|t| t.established),
            list(&ends)
        );
        let _ = writeln!(
            s,
            "  victim closed: rate {}, slow reader {}, frame timeout {}, misbehaving {}; \
             refused: rate {}, slab {}, table {}; backlogs {}, output high water {} B",
            v.closed_rate_limited,
            v.closed_slow_reader,
            v.closed_frame_timeout,
            v.closed_misbehaving,
            v.refused_rate,
            v.refused_entries,
            v.refused_inbound,
            v.backlogs,
            v.pending_output_high_water
        );
        let _ = write!(s, "  wall {:.2} s, cpu {:.2} s", self.wall_s, self.cpu_s);
        s
    }

    /// One JSON object, on one line.
    pub fn json(&self) -> String {
        let o = &self.opts;
        let ends = self.ends();
        format!(
            "{{\"bench\":\"flood\",\"attack\":\"{}\",\"attackers\":{},\"seconds\":{},\
             \"victim_peak_rss_mib\":{:.1},\"victim_final_rss_mib\":{:.1},\
             \"baseline_rss_mib\":{:.1},\
             \"honest_ping_ms\":{{\"p50\":{:.3},\"p99\":{:.3},\"max\":{:.3},\"n\":{}}},\
             \"honest_ping_failures\":{},\"frames_sent\":{},\"frames_accepted\":{},\
             \"answers_read\":{},\"attackers_niced\":{},\"attackers_throttled\":{},\
             \"attackers_free\":{},\
             \"attackers_disconnected\":{},\
             \"connections\":{{\"attempted\":{},\"established\":{},\"left\":{},\"open_at_end\":{}}},\
             \"victim\":{},\"wall_s\":{:.3},\"cpu_s\":{:.2}}}",
            o.attack.name(),
            o.attackers,
            o.seconds,
            self.peak_rss_mib(),
            self.final_rss_mib(),
            mib(self.baseline_rss_kib),
            self.honest_ping_ms(50.0),
            self.honest_ping_ms(99.0),
            self.honest_ping_ms(100.0),
            self.honest_ping_us.len(),
            self.honest_ping_failures,
            self.sum(|t| t.frames_sent),
            self.frames_accepted,
            self.sum(|t| t.answers_read),
            self.count(|t| t.niced),
            self.count(|t| t.throttled),
            self.count(Tally::is_free),
            json_object(self.disconnected()),
            self.sum(|t| t.connections),
            self.sum(|t| t.established),
            ends.get(LEFT).copied().unwrap_or(0),
            ends.get(OPEN).copied().unwrap_or(0),
            json_object(self.victim.fields()),
            self.wall_s,
            self.cpu_s
        )
    }
}

impl VictimCounters {
    /// Every figure, named as in the JSON.
    fn fields(&self) -> [(&'static str, u64); 25] {
        let n = |v: usize| v as u64;
        [
            ("requests_served", self.requests_served),
            ("closed_rate_limited", self.closed_rate_limited),
            ("closed_slow_reader", self.closed_slow_reader),
            ("closed_frame_timeout", self.closed_frame_timeout),
            ("closed_misbehaving", self.closed_misbehaving),
            ("refused_rate", self.refused_rate),
            ("refused_entries", self.refused_entries),
            ("refused_inbound", self.refused_inbound),
            ("connect_timeouts", self.connect_timeouts),
            ("backlogs", self.backlogs),
            ("partial_holds", self.partial_holds),
            ("lingered_out", self.lingered_out),
            ("frames_refused_queue", self.frames_refused_queue),
            ("frames_refused_pool", self.frames_refused_pool),
            ("inbound_budget_debts", self.inbound_budget_debts),
            ("outbound_budget_debts", self.outbound_budget_debts),
            ("answers_expired", self.answers_expired),
            ("stores_overloaded", self.stores_overloaded),
            ("stores_rejected", self.stores_rejected),
            ("pending_output_high_water", n(self.pending_output_high_water)),
            ("partial_frame_high_water", n(self.partial_frame_high_water)),
            ("buffer_pool_high_water", n(self.buffer_pool_high_water)),
            ("connections_at_end", n(self.connections_at_end)),
            ("connections_final", n(self.connections_final)),
            ("records_held", n(self.records_held)),
        ]
    }
}

/// `{"name":n,...}` of named counts.
fn json_object<'a>(fields: impl IntoIterator<Item = (&'a str, u64)>) -> String {
    let fields: Vec<String> = fields.into_iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
    format!("{{{}}}", fields.join(","))
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Most `--attackers`: each is a thread and two descriptors.
const MAX_ATTACKERS: usize = 512;
/// Most `--seconds`.
const MAX_SECONDS: u64 = 3600;
/// Requests per write (and per round, for the attacks that read).
const BATCH: usize = 64;
/// STOREs per round: 4 × 64 KiB.
const STORE_BATCH: usize = 4;
/// Lifetime the STOREs ask for.
const STORE_TTL_SECS: u32 = 3600;
/// Random bytes of a `garbage` frame or write.
const GARBAGE_BYTES: usize = 1024;
/// Byte of the victim's record value and of the forged records' values.
const RECORD_BYTE: u8 = 0xF1;
/// Plaintext bytes of a full TLS record (RFC 8446 §5.1).
const MAX_RECORD_PLAINTEXT: usize = 16 * 1024;
/// The TLS content type of an alert record (RFC 8446 §5.1).
const TLS_ALERT_CONTENT_TYPE: u8 = 21;
/// How often the honest peer pings.
const PING_INTERVAL: Duration = Duration::from_millis(100);
/// An honest ping without a Pong by then failed.
const PING_TIMEOUT: Duration = Duration::from_secs(2);
/// Bound on each socket call of an attacker: how often it looks at the clock.
const IO_SLICE: Duration = Duration::from_millis(50);
/// No progress for this long and the attacker counts as throttled.
pub const THROTTLED_AFTER: Duration = Duration::from_millis(200);
/// An attacker whose connection the victim ended comes back after this.
const RECONNECT_PAUSE: Duration = Duration::from_millis(50);
/// TCP connect bound.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// TLS handshake bound.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long raw garbage waits for the victim's answer.
const RAW_ANSWER_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a failed writer reads what arrived, looking for the Goodbye.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(1);
/// How long the bench waits for the victim to drop the attackers' connections.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(3);
/// Bytes of a request frame up to its id: the frame header, the message's u32 variant tag,
/// then the id, a u64 little-endian (proto-spec/framing.md, messages.md).
const REQUEST_PREFIX_BYTES: usize = HEADER_BYTES + 4 + 8;
/// Stack of an attacker thread (TLS and frame decoding need little).
const ATTACKER_STACK_BYTES: usize = 256 * 1024;
/// Seed of the victim's key.
const VICTIM_SEED: [u8; 32] = [0xF0; 32];
/// Seed of the honest peer's key.
const HONEST_SEED: [u8; 32] = [0xF2; 32];
/// Fill byte of the attackers' key seeds (the attacker's index in the first 8 bytes).
const ATTACKER_KEY_TAG: u8 = 0xF3;
/// Seed of the attackers' random targets, bytes and fresh keys (xor the attacker's index).
const ATTACKER_RNG_SEED: u64 = 0xF100D;

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    fn tally(ends: &[(&'static str, u64)], throttled: bool) -> Tally {
        Tally {
            niced: true,
            connections: ends.iter().map(|e| e.1).sum(),
            established: 1,
            ends: ends.iter().copied().collect(),
            frames_sent: 10,
            answers_read: 2,
            throttled,
        }
    }

    fn report(attackers: Vec<Tally>) -> FloodReport {
        FloodReport {
            opts: FloodOptions::parse(&args("--attack store --attackers 3 --seconds 2")).unwrap(),
            baseline_rss_kib: 10 * 1024,
            peak_rss_kib: 14 * 1024,
            final_rss_kib: 11 * 1024 + 512,
            honest_ping_us: vec![3000, 1000, 2000, 4000],
            honest_ping_failures: 1,
            attackers,
            frames_accepted: 25,
            victim: VictimCounters { closed_rate_limited: 2, backlogs: 7, ..Default::default() },
            wall_s: 3.5,
            cpu_s: 2.25,
        }
    }

    // ---- Arguments ----

    #[test]
    fn attack_is_required_and_named_as_in_the_usage() {
        let err = FloodOptions::parse(&[]).unwrap_err();
        assert!(err.contains("find-value | find-node | store | no-read"), "{err}");
        assert!(err.contains("many-ids"), "{err}");
        for attack in Attack::ALL {
            let o = FloodOptions::parse(&args(&format!("--attack {}", attack.name()))).unwrap();
            assert_eq!((o.attack, o.attackers, o.seconds, o.json), (attack, 50, 20, false));
        }
        let err = FloodOptions::parse(&args("--attack nuke")).unwrap_err();
        assert!(err.contains("\"nuke\"") && err.contains("garbage"), "{err}");
    }

    #[test]
    fn refuses_counts_out_of_range() {
        for bad in [
            "--attack store --attackers 0",
            "--attack store --attackers 513",
            "--attack store --seconds 0",
            "--attack store --seconds 3601",
            "--attack store --seconds",
            "--attack",
        ] {
            assert!(FloodOptions::parse(&args(bad)).is_err(), "{bad}");
        }
        let o = FloodOptions::parse(&args("--attack oversized --attackers 4 --seconds 2 --json"))
            .unwrap();
        assert_eq!((o.attackers, o.seconds, o.json), (4, 2, true));
    }

    // ---- Frames ----

    #[test]
    fn inbox_yields_whole_frames_and_keeps_a_partial_one() {
        let mut bytes = requests(&mut 7, 2, || Request::Ping);
        let first_len = bytes.len() / 2;
        let mut inbox = Inbox::default();
        inbox.buf.extend_from_slice(&bytes[..first_len + 3]);
        let first = inbox.next_frame().unwrap();
        assert_eq!(first, Some(Message::Request { id: 7, body: Request::Ping }));
        assert_eq!(inbox.next_frame().unwrap(), None);
        assert_eq!(inbox.buf.len(), 3, "only the frame in progress is kept");
        inbox.buf.extend_from_slice(&bytes.split_off(first_len + 3));
        let second = inbox.next_frame().unwrap();
        assert_eq!(second, Some(Message::Request { id: 8, body: Request::Ping }));
        assert_eq!((inbox.buf.len(), inbox.start), (0, 0));
    }

    #[test]
    fn inbox_refuses_an_oversized_header_and_junk() {
        let mut inbox = Inbox::default();
        inbox.buf.extend_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(inbox.next_frame(), Err(End::BadFrame));
        let mut inbox = Inbox::default();
        inbox.buf.extend_from_slice(&[0, 0, 0, 4, 9, 9, 9, 9]);
        assert_eq!(inbox.next_frame(), Err(End::BadFrame));
    }

    #[test]
    fn store_frames_carry_a_wrong_signature_and_differ_only_in_their_id() {
        let frame = forged_store_frame(100);
        let mut patched = with_id(&frame, 9);
        patched.extend_from_slice(&frame[REQUEST_PREFIX_BYTES..]);
        let mut inbox = Inbox { buf: patched, start: 0 };
        match inbox.next_frame().unwrap() {
            Some(Message::Request { id: 9, body: Request::Store { record, .. } }) => {
                let Record::Mutable(forged) = record else { panic!("{record:?}") };
                assert!(!forged.verify());
                assert!(MutableRecord { seq: 0, ..forged }.verify(), "a real signature");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn random_bytes_have_the_asked_length() {
        let mut rng = Rng::new(1);
        assert_eq!(random_bytes(&mut rng, 1024).len(), 1024);
        assert_eq!(random_bytes(&mut rng, 13).len(), 13);
    }

    // ---- Report ----

    #[test]
    fn outcome_names_are_goodbye_reasons_and_transport_ends() {
        assert_eq!(End::Goodbye(GoodbyeReason::RateLimited).name(), "rate_limited");
        assert_eq!(End::Goodbye(GoodbyeReason::ProtocolViolation).name(), "protocol_violation");
        assert_eq!(End::Refused.name(), "refused");
        assert_eq!(End::Open.name(), OPEN);
    }

    #[test]
    fn an_attacker_is_free_only_when_nothing_stopped_it() {
        assert!(tally(&[(OPEN, 1)], false).is_free());
        assert!(tally(&[(LEFT, 5), (OPEN, 1)], false).is_free());
        assert!(!tally(&[(OPEN, 1)], true).is_free());
        assert!(!tally(&[(LEFT, 5), ("refused", 1)], false).is_free());
        assert!(!tally(&[("rate_limited", 1)], false).is_free());
    }

    #[test]
    fn json_has_the_documented_shape() {
        let r = report(vec![
            tally(&[("rate_limited", 2), (OPEN, 1)], true),
            tally(&[("reset", 1), (OPEN, 1)], false),
            tally(&[(OPEN, 1)], false),
        ]);
        let text = r.json();
        assert_eq!(text.lines().count(), 1);
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["bench"], "flood");
        assert_eq!(v["attack"], "store");
        assert_eq!((v["attackers"].as_u64(), v["seconds"].as_u64()), (Some(3), Some(2)));
        assert_eq!(v["victim_peak_rss_mib"], 4.0);
        assert_eq!(v["victim_final_rss_mib"], 1.5);
        assert_eq!(v["baseline_rss_mib"], 10.0);
        assert_eq!(v["honest_ping_ms"]["p50"], 2.0);
        assert_eq!(v["honest_ping_ms"]["p99"], 4.0);
        assert_eq!(v["honest_ping_ms"]["max"], 4.0);
        assert_eq!(v["honest_ping_ms"]["n"], 4);
        assert_eq!(v["honest_ping_failures"], 1);
        assert_eq!(
            (v["frames_sent"].as_u64(), v["frames_accepted"].as_u64()),
            (Some(30), Some(25))
        );
        assert_eq!(v["answers_read"], 6);
        assert_eq!(
            (v["attackers_throttled"].as_u64(), v["attackers_free"].as_u64()),
            (Some(1), Some(1))
        );
        assert_eq!(v["attackers_disconnected"]["rate_limited"], 2);
        assert_eq!(v["attackers_disconnected"]["reset"], 1);
        assert!(v["attackers_disconnected"].get(OPEN).is_none());
        assert_eq!(v["connections"]["attempted"], 6);
        assert_eq!(v["connections"]["open_at_end"], 3);
        assert_eq!(v["victim"]["closed_rate_limited"], 2);
        assert_eq!(v["victim"]["backlogs"], 7);
        assert_eq!((v["wall_s"].as_f64(), v["cpu_s"].as_f64()), (Some(3.5), Some(2.25)));
        let human = r.human();
        assert!(human.contains("store, 3 attackers for 2 s"), "{human}");
        assert!(human.contains("1 of 3 throttled"), "{human}");
    }

    #[test]
    fn an_empty_run_prints_zeros_not_nan() {
        let mut r = report(Vec::new());
        r.honest_ping_us.clear();
        let v: serde_json::Value = serde_json::from_str(&r.json()).unwrap();
        assert_eq!(v["honest_ping_ms"]["p99"], 0.0);
        assert_eq!(v["attackers_disconnected"], serde_json::json!({}));
    }
}
