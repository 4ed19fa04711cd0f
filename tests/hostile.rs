//! A real node driven by misbehaving TLS peers (issue: a node that holds on a hostile network).
//! Each test is bounded in time, asserts on what the node holds (its own counters, and RSS: this
//! binary runs alone and its tests one at a time, so the process's memory is the node's and the
//! attackers'), and checks that an honest peer is still served.

mod common;

use std::time::{Duration, Instant};

use common::{config, node, start, wait_for, RawPeer};
use petrel::runtime::limiter::LimiterConfig;
use petrel::wire::codec;
use petrel::wire::frame::DEFAULT_MAX_FRAME_BYTES;
use petrel::wire::messages::{Message, Request};
use petrel::Config;

/// Admission limits out of reach: the attackers all connect from 127.0.0.1 at once.
fn admit_everyone() -> LimiterConfig {
    LimiterConfig {
        new_conns_per_sec: 1_000_000,
        new_conns_burst: 1_000_000,
        per_ip_conns_per_sec: 1_000_000,
        per_ip_conns_burst: 1_000_000,
        ..LimiterConfig::DEFAULT
    }
}

/// Held by each test for its whole run: memory figures are per process.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn vm_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS line");
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// `count` FIND_VALUE requests for `key`, as one buffer of frames.
fn find_values(first_id: u64, count: u64, key: petrel::wire::messages::Key) -> Vec<u8> {
    let mut frames = Vec::new();
    for id in first_id..first_id + count {
        let find = Message::Request { id, body: Request::FindValue { key } };
        codec::encode_frame(&find, DEFAULT_MAX_FRAME_BYTES, &mut frames).unwrap();
    }
    frames
}

#[test]
fn a_peer_that_reads_nothing_is_held_to_its_high_water_mark_then_closed_and_dropped() {
    let _serial = one_at_a_time();
    // The attacker asks for a 60 kB record over and over and reads nothing. The node answers
    // until the connection's output passes its high-water mark, then stops reading it; after
    // the stall timeout the core closes it as a peer that does not read, and after the linger
    // its slot is free.
    let cfg = Config { stall_timeout: Duration::from_secs(1), ..config(90) };
    let queue_bound = cfg.max_write_queue_bytes;
    let n = start(cfg);
    let honest = node(91);
    honest.handle().connect(n.peer_addr()).unwrap();
    let value = vec![7u8; 60_000];
    let key = petrel::wire::signing::immutable_key(&value);
    let _ = n.handle().put(value); // kept locally whether or not a peer stores it
    assert_eq!(n.handle().holds(key), Ok(true));
    let rss_before = vm_rss_kib();

    let mut raw = RawPeer::connect(92, &n);
    // It keeps asking until the node has had enough: its answers fill the socket buffers,
    // then the node's queue for it passes the high-water mark and stays there, the node stops
    // reading it, and the stall timeout (1 s here) runs out. Bounded by the count.
    let mut sent = 0;
    let mut honest_pinged = false;
    while n.handle().snapshot().unwrap().core.closed_slow_reader == 0 {
        assert!(sent < 400_000, "the node kept serving a peer that reads nothing");
        if raw.try_send_raw(&find_values(sent, 8, key)).is_err() {
            break; // the node closed it: checked below
        }
        sent += 8;
        if !honest_pinged && n.handle().snapshot().unwrap().reactor.backlogs > 0 {
            // While it is held, the honest peer is served.
            let started = Instant::now();
            honest.handle().ping(n.id()).unwrap();
            assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
            honest_pinged = true;
        }
    }
    assert!(honest_pinged);
    wait_for("the core to close the peer that does not read", || {
        n.handle().snapshot().unwrap().core.closed_slow_reader == 1
    });
    wait_for("its slot to be freed", || n.handle().snapshot().unwrap().reactor.entries == 1);
    let s = n.handle().snapshot().unwrap();
    // The node never held more output for it than one write queue.
    assert!(s.reactor.pending_output_high_water <= queue_bound, "{:?}", s.reactor);
    assert_eq!(s.reactor.frames_refused_queue, 0, "{:?}", s.reactor);
    assert_eq!(s.reactor.lingered_out, 1, "closed with its Goodbye unread: {:?}", s.reactor);
    let growth_kib = vm_rss_kib().saturating_sub(rss_before);
    assert!(growth_kib < 16 * 1024, "RSS grew by {growth_kib} KiB");
    honest.handle().ping(n.id()).unwrap();
    drop(raw);
}

fn vm_hwm_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).expect("VmHWM line");
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn six_peers_asking_for_a_64_kib_record_thousands_of_times_cannot_balloon_memory() {
    let _serial = one_at_a_time();
    // Each of six connections sends 2,200 FIND_VALUEs for a 64 KiB record in one burst and
    // reads nothing: 860 MB of answers asked for. The node answers each connection only up to
    // its high-water mark, so what it holds is bounded by the connections, not the requests.
    let n = start(config(100));
    let honest = node(101);
    honest.handle().connect(n.peer_addr()).unwrap();
    let value = vec![9u8; 64 * 1024];
    let key = petrel::wire::signing::immutable_key(&value);
    let _ = n.handle().put(value);
    let hwm_before = vm_hwm_kib();
    let mut attackers: Vec<RawPeer> = (0..6).map(|i| RawPeer::connect(102 + i, &n)).collect();
    for raw in &mut attackers {
        raw.send_raw(&find_values(0, 2_200, key));
    }
    wait_for("every attacker to be held back", || {
        n.handle().snapshot().unwrap().reactor.backlogs >= 6
    });
    let started = Instant::now();
    honest.handle().ping(n.id()).unwrap();
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    let s = n.handle().snapshot().unwrap();
    let bound = 6 * Config::default().max_write_queue_bytes;
    assert!(s.reactor.pending_output_high_water <= bound, "{:?}", s.reactor);
    let growth_mib = vm_hwm_kib().saturating_sub(hwm_before) / 1024;
    eprintln!(
        "peak RSS growth {growth_mib} MiB, output high water {} B",
        s.reactor.pending_output_high_water
    );
    assert!(growth_mib < 64, "peak RSS grew by {growth_mib} MiB");
    drop(attackers);
}

#[test]
fn sixty_half_sent_frames_are_bounded_node_wide_and_time_out() {
    let _serial = one_at_a_time();
    // Sixty connections each announce a 1 MiB frame, send all of it but the last byte, and
    // wait. The node holds at most its partial-frame bound (8 MiB) and one read per connection
    // beyond it, and closes each when its frame timeout (1 s here) passes.
    let cfg =
        Config { frame_timeout: Duration::from_secs(1), limiter: admit_everyone(), ..config(110) };
    let bound = cfg.max_partial_frame_bytes;
    let n = start(cfg);
    let honest = node(111);
    honest.handle().connect(n.peer_addr()).unwrap();
    let hwm_before = vm_hwm_kib();
    let (id, addr) = (n.id(), n.local_addr());
    let mut prefix = ((1u32 << 20).to_be_bytes()).to_vec();
    prefix.resize(4 + (1 << 20) - 1, 0x5a);
    let prefix = std::sync::Arc::new(prefix);
    let senders: Vec<_> = (0..60u8)
        .map(|i| {
            let prefix = prefix.clone();
            std::thread::spawn(move || {
                let mut raw = RawPeer::connect_to(112 + i, id, addr);
                // Ends when the node closes the connection.
                let _ = raw.try_send_raw(&prefix);
                raw
            })
        })
        .collect();
    wait_for("every half-sent frame to time out", || {
        n.handle().snapshot().unwrap().core.closed_frame_timeout == 60
    });
    let s = n.handle().snapshot().unwrap();
    let read_chunk = 16 * 1024 + 64;
    assert!(s.reactor.partial_frame_high_water <= bound + 60 * read_chunk, "{:?}", s.reactor);
    assert!(s.reactor.partial_holds > 0, "the bound was reached: {:?}", s.reactor);
    wait_for("the slots to be freed", || n.handle().snapshot().unwrap().reactor.entries == 1);
    assert_eq!(n.handle().snapshot().unwrap().reactor.partial_frame_bytes, 0);
    honest.handle().ping(n.id()).unwrap();
    let growth_mib = vm_hwm_kib().saturating_sub(hwm_before) / 1024;
    eprintln!(
        "peak RSS growth {growth_mib} MiB, partial high water {}",
        s.reactor.partial_frame_high_water
    );
    assert!(growth_mib < 32, "peak RSS grew by {growth_mib} MiB");
    for sender in senders {
        drop(sender.join().unwrap());
    }
}

#[test]
fn a_peer_arriving_while_the_read_budget_is_in_debt_gets_its_turn() {
    let _serial = one_at_a_time();
    // Ten peers send 32 KiB frames as fast as they can, well over the node's inbound budget
    // (4 MB/s here), so the node reads in rounds as the budget refills. A peer connecting in
    // the middle is read in the next round: before, each round began with the earliest
    // connections and the budget ran out before the newcomer's turn, for as long as the
    // flood lasted.
    let limiter = LimiterConfig {
        global_inbound_bytes_per_sec: 4 << 20,
        global_inbound_bytes_burst: 256 << 10,
        peer_bytes_per_sec: 1 << 30,
        peer_bytes_burst: 1 << 30,
        ..admit_everyone()
    };
    let n = start(Config { limiter, ..config(110) });
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let value = vec![7u8; 32 << 10];
    let store = Message::Request {
        id: 1,
        body: Request::Store {
            record: petrel::wire::messages::Record::Immutable { value: value.into() },
            ttl_secs: 60,
            expected_seq: None,
        },
    };
    let mut frame = Vec::new();
    codec::encode_frame(&store, DEFAULT_MAX_FRAME_BYTES, &mut frame).unwrap();
    let flooders: Vec<_> = (0..10u8)
        .map(|i| {
            let mut raw = RawPeer::connect(111 + i, &n);
            let (stop, frame) = (stop.clone(), frame.clone());
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    if raw.try_send_raw(&frame).is_err() {
                        return;
                    }
                }
            })
        })
        .collect();
    wait_for("the inbound budget in debt", || {
        n.handle().snapshot().unwrap().limiter.inbound_refusals > 20
    });
    let honest = node(121);
    let started = Instant::now();
    honest.handle().connect(n.peer_addr()).unwrap();
    for _ in 0..5 {
        honest.handle().ping(n.id()).unwrap();
    }
    let took = started.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for f in flooders {
        let _ = f.join();
    }
    eprintln!("connect and five pings during the flood: {took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
}

/// `count` PING requests, as one buffer of frames.
fn pings(first_id: u64, count: u64) -> Vec<u8> {
    let mut frames = Vec::new();
    for id in first_id..first_id + count {
        let ping = Message::Request { id, body: Request::Ping };
        codec::encode_frame(&ping, DEFAULT_MAX_FRAME_BYTES, &mut frames).unwrap();
    }
    frames
}

/// Reads `count` frames; how long they took.
fn read_frames(raw: &mut RawPeer, count: usize) -> Duration {
    let started = Instant::now();
    for i in 0..count {
        match raw.read_frame() {
            common::Read1::Frame(Message::Response { .. }) => {}
            other => panic!("frame {i} of {count}: {other:?}"),
        }
    }
    started.elapsed()
}

#[test]
fn reconnecting_with_the_same_key_buys_no_fresh_burst() {
    let _serial = one_at_a_time();
    // The default budget is 2,000 frames at once and 1,000 a second. The peer spends all but
    // 100 of it, closes, and reconnects with the same key at once. Its next 500 frames go 400
    // over what it has left: the node slows it down, and slows it again with each read,
    // until it closes it as over its rate. With a fresh burst on reconnecting (before), all
    // 500 were answered at once.
    let burst = LimiterConfig::DEFAULT.peer_frames_burst;
    let n = start(config(130));
    let mut raw = RawPeer::connect(131, &n);
    raw.send_raw(&pings(0, burst - 100));
    read_frames(&mut raw, (burst - 100) as usize);
    drop(raw);
    wait_for("the budget remembered", || {
        n.handle().snapshot().unwrap().reactor.budgets_remembered >= 1
    });
    let mut again = RawPeer::connect(131, &n);
    again.send_raw(&pings(0, 500));
    let started = Instant::now();
    let mut answered = 0;
    let ended = loop {
        match again.read_frame() {
            common::Read1::Frame(Message::Response { .. }) => answered += 1,
            other => break Some(other),
        }
        if answered == 500 {
            break None;
        }
    };
    let took = started.elapsed();
    eprintln!("after reconnecting: {answered} answered in {took:?}, then {ended:?}");
    let limited = common::Read1::Frame(Message::Goodbye(petrel::wire::messages::Goodbye {
        reason: petrel::wire::messages::GoodbyeReason::RateLimited,
    }));
    assert!(ended == Some(limited) || took >= Duration::from_millis(250), "{answered} {took:?}");
    assert!(answered < 500 || took >= Duration::from_millis(250), "{answered} in {took:?}");
}

#[test]
fn a_peer_refused_for_want_of_a_slot_hears_why() {
    let _serial = one_at_a_time();
    // One inbound slot, taken by an active peer: a newcomer completes TLS and its first frame
    // is Goodbye(TooManyConnections), not a silent close at accept (handshake.md §5: it
    // should back off).
    let limits = petrel::core::PeerLimits { max_inbound: 1, ..petrel::core::PeerLimits::DEFAULT };
    let n = start(Config { limits, limiter: admit_everyone(), ..config(140) });
    let _first = RawPeer::connect(141, &n);
    let mut second = RawPeer::handshake(142, &n);
    let refused = common::Read1::Frame(Message::Goodbye(petrel::wire::messages::Goodbye {
        reason: petrel::wire::messages::GoodbyeReason::TooManyConnections,
    }));
    assert_eq!(second.read_frame(), refused);
    assert_eq!(second.read_frame(), common::Read1::Closed);
    let s = n.handle().snapshot().unwrap();
    assert_eq!((s.peers.refused_inbound_limit, s.core.refused_inbound), (1, 1));
}

#[test]
fn the_connection_slab_is_capped_and_frees_itself() {
    let _serial = one_at_a_time();
    // Two inbound slots, four in all: the reactor holds at most six entries (slots, and
    // refused newcomers waiting to hear why). Twenty bare TCP connections that never start
    // TLS: past six the reactor refuses them at accept, and every entry is gone once the
    // refusals' linger (1 s) and the connect deadline (here 1 s) pass.
    let limits = petrel::core::PeerLimits {
        max_connections: 4,
        max_inbound: 2,
        max_outbound: 2,
        connect_timeout: Duration::from_secs(1),
        ..petrel::core::PeerLimits::DEFAULT
    };
    let n = start(Config { limits, limiter: admit_everyone(), ..config(160) });
    let bare: Vec<std::net::TcpStream> =
        (0..20).map(|_| std::net::TcpStream::connect(n.local_addr()).unwrap()).collect();
    wait_for("the cap to refuse the rest", || {
        let s = n.handle().snapshot().unwrap();
        s.reactor.refused_entries >= 14
    });
    let s = n.handle().snapshot().unwrap();
    assert!(s.reactor.entries <= 6, "{:?}", s.reactor);
    wait_for("every entry to go", || n.handle().snapshot().unwrap().reactor.entries == 0);
    drop(bare);
    // And the node serves again.
    let honest = node(161);
    honest.handle().connect(n.peer_addr()).unwrap();
    honest.handle().ping(n.id()).unwrap();
}

#[test]
fn a_full_worker_queue_answers_overloaded_and_loses_no_request() {
    let _serial = one_at_a_time();
    // One worker, one place in its queue: forty signed STOREs at once. Each is answered,
    // stored or Overloaded (the job the pool refused), none is left waiting.
    let workers = petrel::runtime::workers::WorkerConfig { threads: 1, queue_capacity: 1 };
    let n = start(Config { workers, ..config(162) });
    let mut raw = RawPeer::connect(163, &n);
    let key = petrel::identity::Keypair::from_seed([164; 32]);
    let mut frames = Vec::new();
    for id in 0..40u64 {
        let record = petrel::wire::messages::MutableRecord::sign(
            &key,
            id.to_le_bytes().to_vec(),
            1,
            vec![1; 256],
        );
        let store = Message::Request {
            id,
            body: Request::Store {
                record: petrel::wire::messages::Record::Mutable(record),
                ttl_secs: 60,
                expected_seq: None,
            },
        };
        codec::encode_frame(&store, DEFAULT_MAX_FRAME_BYTES, &mut frames).unwrap();
    }
    raw.send_raw(&frames);
    let (mut stored, mut overloaded) = (0, 0);
    for _ in 0..40 {
        match raw.read_frame() {
            common::Read1::Frame(Message::Response { body, .. }) => match body {
                petrel::wire::messages::Response::Stored => stored += 1,
                petrel::wire::messages::Response::Error { code, .. } => {
                    assert_eq!(code, petrel::wire::messages::ErrorCode::Overloaded);
                    overloaded += 1;
                }
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        }
    }
    eprintln!("{stored} stored, {overloaded} overloaded");
    assert_eq!(stored + overloaded, 40);
    assert!(stored >= 1 && overloaded >= 1, "{stored} stored, {overloaded} overloaded");
    let s = n.handle().snapshot().unwrap();
    assert_eq!(s.answers_owed, 0);
    assert!(s.workers.rejected_full >= 1, "{:?}", s.workers);
}

#[test]
fn a_connection_arriving_during_shutdown_is_refused_at_accept() {
    let _serial = one_at_a_time();
    // A peer that reads nothing keeps the node's output for it queued, so after the shutdown
    // request the node lingers on it (up to its linger deadline): the window in which a
    // newcomer must be refused at accept, not handed a fresh TLS session.
    let n = start(config(100));
    let value = vec![3u8; 60_000];
    let key = petrel::wire::signing::immutable_key(&value);
    let _ = n.handle().put(value);
    let mut raw = RawPeer::connect(101, &n);
    let mut sent = 0;
    // Until output waits for it across several looks: its socket buffers are full.
    let mut waiting = 0;
    while waiting < 3 {
        assert!(sent < 400_000, "the node never held output for a peer that reads nothing");
        raw.try_send_raw(&find_values(sent, 8, key)).expect("still connected");
        sent += 8;
        let pending = n.handle().snapshot().unwrap().reactor.pending_output_bytes;
        waiting = if pending > 0 { waiting + 1 } else { 0 };
        if pending > 0 {
            std::thread::sleep(Duration::from_millis(20)); // a look apart, not a wait for an outcome
        }
    }
    let handle = n.handle();
    let listen = n.local_addr();
    let refused_before = handle.snapshot().unwrap().reactor.refused_entries;
    let stopping = std::thread::spawn(move || n.shutdown());
    // The node is shutting down once it has said Goodbye to everyone it can reach; its reactor
    // still answers snapshots while it lingers on the peer that does not read.
    let deadline = Instant::now() + Duration::from_secs(10);
    let (newcomer, refused) = loop {
        assert!(Instant::now() < deadline, "no accept was refused during shutdown");
        let mut tcp = std::net::TcpStream::connect(listen).expect("listener still open");
        // Short: a newcomer that slipped in before the shutdown began waits for a handshake
        // that our junk bytes never complete, and the linger window is about a second.
        tcp.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
        let _ = std::io::Write::write_all(&mut tcp, &[0x16, 0x03, 0x01, 0x00, 0x01, 0x01]);
        let mut buf = [0u8; 64];
        let read = std::io::Read::read(&mut tcp, &mut buf);
        match handle.snapshot() {
            Ok(s) if s.reactor.refused_entries > refused_before => break (read, s.reactor),
            Ok(_) => continue, // accepted before the shutdown began: try again
            Err(e) => panic!("the node stopped before a newcomer arrived: {e:?}"),
        }
    };
    // The newcomer got nothing: no ServerHello, just the close.
    match newcomer {
        Ok(got) => assert_eq!(got, 0, "a refused newcomer was sent {got} bytes"),
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
    }
    assert!(refused.refused_entries > refused_before, "{refused:?}");
    stopping.join().unwrap();
    drop(raw);
}
