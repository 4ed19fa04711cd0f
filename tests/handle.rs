//! How the `Handle` API fails, over real sockets: each error a caller can get, from a real
//! cause, typed. Every wait is bounded by a call timeout.

mod common;

use std::time::{Duration, Instant};

use common::{config, node, start, RawPeer};
use petrel::kad::dht::DhtError;
use petrel::wire::messages::ErrorCode;
use petrel::{CallError, Config, Node, StartError};

#[test]
fn a_port_in_use_is_a_start_error_naming_it() {
    let a = node(150);
    let taken = Config { listen: a.local_addr(), ..config(151) };
    match Node::start(taken) {
        Err(StartError::Io(e)) => assert_eq!(e.kind(), std::io::ErrorKind::AddrInUse, "{e}"),
        other => panic!("expected AddrInUse, got {:?}", other.map(|n| n.local_addr())),
    }
}

#[test]
fn a_lone_node_has_no_peers_to_ask() {
    let lone = node(152);
    let h = lone.handle();
    // Its own copy is kept, but nobody else can be asked.
    assert_eq!(h.put(b"alone".to_vec()).unwrap_err(), CallError::Dht(DhtError::NoPeers));
    assert_eq!(h.find_node(lone.id()).unwrap_err(), CallError::Dht(DhtError::NoPeers));
    let other = petrel::wire::signing::immutable_key(b"elsewhere");
    assert_eq!(h.get(other).unwrap_err(), CallError::Dht(DhtError::NoPeers));
}

#[test]
fn a_store_every_holder_refuses_names_the_first_refusal() {
    // The only other node takes values of 16 bytes at most: our 64-byte PUT is stored here
    // and refused there, and the caller hears why.
    let mut small = config(153);
    small.dht.store.max_value_bytes = 16;
    let holder = start(small);
    let writer = node(154);
    writer.handle().connect(holder.peer_addr()).unwrap();
    let err = writer.handle().put(vec![7; 64]).unwrap_err();
    assert_eq!(err, CallError::Dht(DhtError::NotStored(Some(ErrorCode::ValueTooLarge))));
    assert!(err.to_string().contains("ValueTooLarge"), "{err}");
}

#[test]
fn a_call_that_outlives_its_timeout_says_so_and_the_node_still_answers() {
    // A peer that completed the Hello and never answers anything: a PING to it waits for the
    // request timeout (10 s), which the caller's 300 ms call timeout cuts short.
    let n = start(Config { call_timeout: Duration::from_millis(300), ..config(155) });
    let silent = RawPeer::connect(156, &n);
    let silent_id = petrel::identity::Keypair::from_seed([156; 32]).node_id();
    let started = Instant::now();
    assert_eq!(n.handle().ping(silent_id).unwrap_err(), CallError::Timeout);
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(300) && took < Duration::from_secs(5), "{took:?}");
    // The node itself is fine: another call is answered.
    assert!(n.handle().peers().unwrap().iter().any(|p| p.id == silent_id));
    drop(silent);
}
