//! The DHT over real sockets and TLS: nodes on loopback join, store and find records.

use std::time::{Duration, Instant};

use petrel::identity::Keypair;
use petrel::kad::dht::DhtError;
use petrel::kad::records::RecordError;
use petrel::wire::messages::{MutableRecord, Record};
use petrel::wire::signing::immutable_key;
use petrel::{CallError, Config, Node};

fn start(seed: u8) -> Node {
    let config = Config {
        keypair: Some(Keypair::from_seed([seed; 32])),
        rng_seed: Some(u64::from(seed)),
        ..Config::default()
    };
    Node::start(config).expect("node starts")
}

/// `n` nodes, node i connected to node i-1 and node 0, all bootstrapped.
fn network(n: u8) -> Vec<Node> {
    let nodes: Vec<Node> = (1..=n).map(start).collect();
    for i in 1..nodes.len() {
        let h = nodes[i].handle();
        h.connect(nodes[i - 1].peer_addr()).expect("connect to the previous node");
        if i > 1 {
            h.connect(nodes[0].peer_addr()).expect("connect to the first node");
        }
    }
    for node in &nodes {
        node.handle().bootstrap().expect("bootstrap");
    }
    nodes
}

#[test]
fn an_immutable_value_put_on_one_node_is_found_from_another() {
    let nodes = network(8);
    let value = b"petrel dht over tls".to_vec();
    let published = nodes[1].handle().put(value.clone()).expect("put");
    assert_eq!(published.key, immutable_key(&value));
    assert!(published.stored >= 1, "{published:?}");
    for reader in [&nodes[5], &nodes[7]] {
        let found = reader.handle().get(published.key).expect("get").expect("found");
        assert_eq!(found.record, Record::Immutable { value: value.clone().into() });
    }
    // A key nobody stored is not found, and says so rather than failing.
    assert_eq!(nodes[6].handle().get(immutable_key(b"nobody stored this")).unwrap(), None);
}

#[test]
fn a_mutable_record_moves_forward_and_the_highest_sequence_wins() {
    let nodes = network(6);
    let author = Keypair::from_seed([99; 32]);
    let v1 = MutableRecord::sign(&author, b"profile".to_vec(), 1, b"first".to_vec());
    let key = v1.key();
    nodes[0].handle().put_record(Record::Mutable(v1.clone()), None).expect("put v1");
    let v2 = MutableRecord::sign(&author, b"profile".to_vec(), 2, b"second".to_vec());
    let put =
        nodes[3].handle().put_mutable(&author, b"profile".to_vec(), 2, b"second".to_vec(), Some(1));
    assert_eq!(put.expect("put v2 over v1").stored, 5, "every other node stores it");
    let found = nodes[5].handle().get(key).unwrap().expect("found");
    assert_eq!(found.record, Record::Mutable(v2.clone()));
    // Going back to seq 1 is refused: with six nodes every node is among the k closest and
    // holds v2, so the publisher's own store refuses it first.
    let stale = nodes[4].handle().put_record(Record::Mutable(v1), None);
    assert_eq!(stale, Err(CallError::Dht(DhtError::Invalid(RecordError::StaleSequence))));
    assert_eq!(nodes[1].handle().get(key).unwrap().expect("found").record, Record::Mutable(v2));
    // A forged record is refused before it leaves the node.
    let mut forged = MutableRecord::sign(&author, b"profile".to_vec(), 3, b"third".to_vec());
    forged.value = b"tampered".to_vec().into();
    let refused = nodes[2].handle().put_record(Record::Mutable(forged), None);
    assert!(matches!(refused, Err(CallError::Dht(DhtError::Invalid(_)))), "{refused:?}");
}

#[test]
fn providers_are_announced_and_found() {
    let nodes = network(6);
    let key = immutable_key(b"a file");
    let published = nodes[2].handle().provide(key).expect("provide");
    assert!(published.stored >= 1);
    let found = nodes[4].handle().providers(key).expect("providers");
    assert!(found.stats.rpcs >= 1, "{:?}", found.stats);
    let providers = found.providers;
    assert_eq!(providers.iter().map(|p| p.id).collect::<Vec<_>>(), vec![nodes[2].id()]);
    assert_eq!(providers[0].addrs, vec![nodes[2].local_addr()]);
}

#[test]
fn find_node_returns_the_closest_peers_in_order() {
    let nodes = network(8);
    let target = nodes[6].id();
    let started = Instant::now();
    let found = nodes[0].handle().find_node(target).expect("find_node");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(found.peers.first().map(|p| p.id), Some(target), "{found:?}");
    let distances: Vec<_> = found.peers.iter().map(|p| p.id.distance(&target)).collect();
    assert!(distances.windows(2).all(|w| w[0] < w[1]), "sorted nearest first");
    assert!(found.stats.rpcs >= 1 && found.stats.rounds >= 1, "{:?}", found.stats);
}
