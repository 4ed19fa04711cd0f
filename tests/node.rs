//! Real sockets on loopback: full nodes connecting, authenticating and pinging. Every wait is
//! a blocking call with a bounded timeout or a poll on a condition with a deadline. Shutdown,
//! which needs a raw TLS peer to read the Goodbye, is tested in `limits.rs`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use petrel::core::{ConnectError, Direction, Event};
use petrel::identity::{Keypair, NodeId};
use petrel::{CallError, Config, Node, PeerAddr};

const WAIT: Duration = Duration::from_secs(10);

fn node(seed: u8) -> Node {
    let config = Config { keypair: Some(Keypair::from_seed([seed; 32])), ..Config::default() };
    Node::start(config).expect("node starts")
}

/// Polls `cond` until it holds or `WAIT` passes.
fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn two_nodes_connect_exchange_hello_and_ping() {
    let a = node(1);
    let b = node(2);
    let connected = a.handle().connect(b.peer_addr()).unwrap();
    assert_eq!(connected, b.id());

    let started = Instant::now();
    let pong = a.handle().ping(b.id()).unwrap();
    let call = started.elapsed();
    assert_eq!(pong.observed.ip(), a.local_addr().ip());
    // The round trip is measured inside the call: a positive duration no longer than it.
    assert!(pong.rtt > Duration::ZERO && pong.rtt <= call, "rtt {:?}, call {call:?}", pong.rtt);

    // The other side sees us too, with our Hello's agent, and can ping back.
    wait_for("b to list a", || b.handle().peers().unwrap().iter().any(|p| p.id == a.id()));
    let peers = b.handle().peers().unwrap();
    assert_eq!(peers.len(), 1);
    assert!(peers[0].agent.starts_with("petrel/"));
    assert_eq!(peers[0].listen_addrs, vec![a.local_addr()]);
    b.handle().ping(a.id()).unwrap();
}

#[test]
fn dialling_with_the_wrong_expected_id_fails_with_wrong_key() {
    let a = node(3);
    let b = node(4);
    let wrong = PeerAddr { id: NodeId::from_bytes([0x55; 32]), addr: b.local_addr() };
    let err = a.handle().connect(wrong).unwrap_err();
    assert_eq!(err, CallError::Connect(ConnectError::WrongKey));
    assert!(a.handle().peers().unwrap().is_empty());
}

#[test]
fn connecting_to_a_closed_port_fails_with_a_typed_error() {
    let a = node(5);
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let target = PeerAddr { id: NodeId::from_bytes([1; 32]), addr: closed };
    let err = a.handle().connect(target).unwrap_err();
    assert_eq!(err, CallError::Connect(ConnectError::Failed("tcp_failed")));
    // The failure is remembered: an immediate retry is refused by the backoff.
    let again = a.handle().connect(target).unwrap_err();
    assert!(matches!(again, CallError::Connect(ConnectError::Refused(_))), "{again:?}");
}

#[test]
fn raw_garbage_on_the_port_is_dropped_and_the_node_keeps_serving() {
    let a = node(6);
    let b = node(7);
    let mut raw = TcpStream::connect(a.local_addr()).unwrap();
    raw.set_read_timeout(Some(WAIT)).unwrap();
    raw.write_all(b"GET / HTTP/1.1\r\nHost: petrel\r\n\r\n").unwrap();
    // The node answers with a TLS alert at most, then closes: read until EOF.
    let mut sink = Vec::new();
    let _ = raw.read_to_end(&mut sink);
    assert!(sink.len() < 64, "only an alert may come back, got {} bytes", sink.len());
    // A legitimate peer is still served.
    b.handle().connect(a.peer_addr()).unwrap();
    b.handle().ping(a.id()).unwrap();
}

#[test]
fn peer_events_reach_the_application_and_the_snapshot_counts_the_traffic() {
    let a = node(5);
    let b = node(6);
    let events = a.handle().events().unwrap();
    a.handle().connect(b.peer_addr()).unwrap();
    let up = events.recv_timeout(WAIT).expect("a connected event");
    assert_eq!(up, Event::PeerConnected { peer: b.id(), direction: Direction::Outbound });
    a.handle().ping(b.id()).unwrap();
    // `b` dials back the address `a` claims in its Hello: TLS proves it, then that connection
    // closes before any Hello, so `a` sees no second peer and keeps one connection.
    wait_for("b's dial-back of a", || b.handle().snapshot().unwrap().dht.probes_reached == 1);
    wait_for("the dial-back closed", || a.handle().snapshot().unwrap().reactor.entries == 1);

    let snapshot = a.handle().snapshot().unwrap();
    assert_eq!(snapshot.peers.connections_outbound, 1);
    assert_eq!((snapshot.peers.dials_started, snapshot.peers.established), (1, 1));
    assert_eq!(snapshot.requests_in_flight, 0);
    assert_eq!(snapshot.reactor.entries, 1);
    // The read buffer is lent for the node's life; encode buffers come and go.
    assert!(snapshot.buffers.in_use_bytes > 0 && snapshot.buffers.acquires > 1);

    let b_id = b.id();
    b.shutdown();
    let down = events.recv_timeout(WAIT).expect("a disconnected event");
    assert_eq!(down, Event::PeerDisconnected { peer: b_id });
    assert!(events.try_recv().is_err(), "exactly two events");

    // Subscriptions are bounded: seven more fit beside this one, the ninth is refused.
    let more: Vec<_> = (0..7).map(|_| a.handle().events().unwrap()).collect();
    assert_eq!(a.handle().events().unwrap_err(), CallError::Busy);
    drop(more);
}
