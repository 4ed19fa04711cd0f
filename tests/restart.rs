//! A node restarted on the same data directory (issue: persistent records): it answers for
//! the records it acknowledged before, and finds its old peers again with no bootstrap.
//! Real sockets, TLS and disk; every wait is bounded.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::{config, wait_for};
use petrel::store::SyncMode;
use petrel::wire::messages::Record;
use petrel::wire::signing::immutable_key;
use petrel::{Config, Node};

/// A fresh directory under the system's temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("petrel-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn persistent(seed: u8, dir: &TempDir) -> Config {
    let mut c = Config { data_dir: Some(dir.0.clone()), sync: SyncMode::Batch, ..config(seed) };
    // A short tick and save interval, so the routing table is saved within the test.
    c.dht.maintenance_interval = Duration::from_millis(100);
    c.dht.routing_save_interval = Duration::from_millis(100);
    c
}

#[test]
fn a_restarted_node_answers_for_what_it_stored_and_finds_its_peers_again() {
    let dir = TempDir::new("restart");
    let holder = Node::start(persistent(110, &dir)).unwrap();
    let listen = holder.local_addr();
    let publisher = Node::start(config(111)).unwrap();
    publisher.handle().connect(holder.peer_addr()).unwrap();
    let value = b"kept across a restart".to_vec();
    let put = publisher.handle().put(value.clone()).unwrap();
    assert_eq!(put.stored, 1, "{put:?}");
    let key = immutable_key(&value);
    assert_eq!(holder.handle().holds(key), Ok(true));
    // The holder saves its routing table on its tick: the publisher is in it once dialled
    // back, and the save is visible in its counters.
    wait_for("the publisher to be verified", || {
        holder.handle().snapshot().unwrap().routing.verified >= 1
    });
    let saves = holder.handle().snapshot().unwrap().dht.routing_saves;
    wait_for("the routing table to be saved", || {
        holder.handle().snapshot().unwrap().dht.routing_saves > saves + 1
    });
    holder.shutdown();

    // Same key, same directory, same port, no bootstrap; and no value kept in memory, so
    // every answer below reads its value back from the log.
    let restarted =
        Node::start(Config { listen, store_hot_bytes: 0, ..persistent(110, &dir) }).unwrap();
    let s = restarted.handle().snapshot().unwrap();
    assert_eq!(s.store.cold_records, 1);
    // The log's own counters: one live record, plus the saved peer entry.
    let log = s.log.expect("a node with a data directory reports its log");
    assert!(log.live_entries >= 1 && log.file_bytes > 0, "{log:?}");
    assert_eq!(restarted.restored().records, 1, "{:?}", restarted.restored());
    let recovery = restarted.restored().recovery.clone().expect("a log was opened");
    assert_eq!((recovery.truncated_bytes, recovery.corrupt_skipped), (0, 0), "clean shutdown");
    let peers: Vec<_> = restarted.restored().peers.iter().map(|p| p.id).collect();
    assert_eq!(peers, vec![publisher.id()]);
    assert_eq!(restarted.handle().holds(key), Ok(true));
    let found = restarted.handle().get(key).unwrap().expect("found locally");
    assert!(found.local);
    assert_eq!(found.record, Record::Immutable { value: value.clone().into() });
    wait_for("the restarted node to dial its saved peer", || {
        restarted.handle().peers().unwrap().iter().any(|p| p.id == publisher.id())
    });
    // With the publisher gone, the restarted node is the only holder: a third node that
    // knows only it gets the record from it, read back from its log.
    publisher.shutdown();
    let reader = Node::start(config(112)).unwrap();
    reader.handle().connect(restarted.peer_addr()).unwrap();
    let found = reader.handle().get(key).unwrap().expect("found over the network");
    assert_eq!(found.record, Record::Immutable { value: value.into() });
    assert!(!found.local);
    let s = restarted.handle().snapshot().unwrap();
    assert!(s.dht.values_served_cold >= 1, "{:?}", s.dht);
    assert_eq!(s.dht.cold_reads_failed, 0);
    assert_eq!(s.store.cold_records, 1, "back out of memory after each read");
}

#[test]
fn a_node_whose_data_directory_is_unusable_does_not_start() {
    let dir = TempDir::new("bad-log");
    std::fs::write(dir.0.join("records.log"), b"not a petrel log at all").unwrap();
    let started = Node::start(persistent(113, &dir));
    let Err(err) = started else { panic!("a node started on a log it cannot read") };
    assert!(err.to_string().contains("log"), "{err}");
    // And the file is left as it was, for the operator to look at.
    assert_eq!(std::fs::read(dir.0.join("records.log")).unwrap(), b"not a petrel log at all");
}

#[test]
fn a_graceful_stop_saves_the_latest_peers() {
    let dir = TempDir::new("flush");
    // No maintenance tick, so no periodic save: only the stop writes the routing table.
    let mut cfg = persistent(114, &dir);
    cfg.dht.maintenance_interval = Duration::ZERO;
    let node = Node::start(cfg).unwrap();
    let listen = node.local_addr();
    let peer = Node::start(config(115)).unwrap();
    node.handle().connect(peer.peer_addr()).unwrap(); // dialled: verified at once
    wait_for("the peer in the table", || node.handle().snapshot().unwrap().routing.verified >= 1);
    assert_eq!(node.handle().snapshot().unwrap().dht.routing_saves, 0);
    let stopping = std::time::Instant::now();
    node.shutdown();
    // Well inside the 2 s bound: no dial started during the stop holds it up.
    let took = stopping.elapsed();
    assert!(took < Duration::from_millis(1500), "the stop took {took:?}");

    let restarted = Node::start(Config { listen, ..persistent(114, &dir) }).unwrap();
    let peers: Vec<_> = restarted.restored().peers.iter().map(|p| p.id).collect();
    assert_eq!(peers, vec![peer.id()]);
}
