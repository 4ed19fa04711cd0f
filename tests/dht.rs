//! The DHT over real sockets and TLS: nodes on loopback join, store and find records, through
//! the public `Node`/`Handle` API only. Every wait is a blocking `Handle` call, bounded by the
//! node's call timeout.
//!
//! The nodes run with the periodic maintenance tick off (`DhtConfig::maintenance_interval` of
//! zero). That tick replicates held records to newly learned peers, so with it on, which node
//! holds what would depend on whether a tick fell inside the test. With it off, the PUTs alone
//! decide: a test can name a node that does not hold a record, or holders that disagree, and
//! they stay so until the test looks.

use std::time::{Duration, Instant};

use petrel::identity::Keypair;
use petrel::kad::dht::DhtError;
use petrel::kad::records::RecordError;
use petrel::wire::messages::{MutableRecord, Record};
use petrel::wire::signing::immutable_key;
use petrel::{CallError, Config, Node, PeerAddr};

/// Kademlia's k (DESIGN.md, "Kademlia"): a PUT stores on the k closest peers that answered its
/// lookup, so with `n` nodes on `min(n - 1, K)` of them.
const K: usize = 20;

fn start(seed: u8) -> Node {
    let mut config = Config {
        keypair: Some(Keypair::from_seed([seed; 32])),
        rng_seed: Some(u64::from(seed)),
        ..Config::default()
    };
    config.dht.maintenance_interval = Duration::ZERO;
    // Every node dials node 0 from 127.0.0.1, within well under a second on a fast machine:
    // more than the per-source admission burst (20), whose refusals are tests/limits.rs's
    // subject, not this file's.
    config.limiter.per_ip_conns_burst = 1_000;
    config.limiter.per_ip_conns_per_sec = 1_000;
    Node::start(config).expect("node starts")
}

/// `n` nodes with seeds `1..=n`; see [`network_of`].
fn network(n: u8) -> Vec<Node> {
    network_of(1..=n)
}

/// One node per seed, node i connected to node i-1 and node 0, all bootstrapped.
fn network_of(seeds: impl IntoIterator<Item = u8>) -> Vec<Node> {
    let nodes: Vec<Node> = seeds.into_iter().map(start).collect();
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
fn an_immutable_value_is_fetched_over_the_network_by_nodes_that_do_not_hold_it() {
    // More than k + 1 nodes, so that the publisher and the k peers it stores on leave some
    // nodes without a copy.
    const N: usize = K + 4;
    let nodes = network(N as u8);
    // Each node knew two others before its join: the join's requests to the rest went out on
    // new connections, right behind the dialer's Hello (handshake.md §2.1).
    let pipelined: u64 = nodes
        .iter()
        .map(|n| n.handle().snapshot().expect("snapshot").core.requests_pipelined)
        .sum();
    assert!(pipelined >= 1, "no request was pipelined");
    let publisher = 1;
    let value = b"petrel dht over tls".to_vec();
    let published = nodes[publisher].handle().put(value.clone()).expect("put");
    let key = published.key;
    assert_eq!(key, immutable_key(&value));
    // Every node answered the PUT's lookup, so it stored on exactly the k nodes closest to the
    // key (the publisher never asks itself), and each accepted.
    assert_eq!((published.attempted, published.stored), (K, K), "{published:?}");
    let mut others: Vec<usize> = (0..N).filter(|&i| i != publisher).collect();
    others.sort_by_key(|&i| nodes[i].id().distance(&key));
    let (closest, rest) = others.split_at(K);
    let mut expected: Vec<usize> = closest.iter().copied().chain([publisher]).collect();
    expected.sort_unstable();
    let holders: Vec<usize> =
        (0..N).filter(|&i| nodes[i].handle().holds(key).expect("holds")).collect();
    assert_eq!(holders, expected, "the publisher and the k closest others hold the value");

    for &reader in rest {
        let handle = nodes[reader].handle();
        assert_eq!(handle.holds(key), Ok(false), "node {reader}");
        let found = handle.get(key).expect("get").expect("found");
        assert_eq!(found.record, Record::Immutable { value: value.clone().into() });
        assert!(!found.local, "node {reader} fetched it: {found:?}");
        assert!(found.stats.rpcs >= 1, "node {reader}: {:?}", found.stats);
    }
    // A holder answers from its own store without asking anyone.
    let found = nodes[closest[0]].handle().get(key).expect("get").expect("found");
    assert!(found.local, "{found:?}");
    // A key nobody stored is not found, and says so rather than failing.
    assert_eq!(nodes[rest[0]].handle().get(immutable_key(b"nobody stored this")), Ok(None));
}

#[test]
fn a_mutable_record_moves_forward_and_the_highest_sequence_wins() {
    let nodes = network(6);
    let author = Keypair::from_seed([99; 32]);
    let v1 = MutableRecord::sign(&author, b"profile".to_vec(), 1, b"first".to_vec());
    let key = v1.key();
    // Six nodes, k = 20: every PUT stores on all five others.
    let put = nodes[0].handle().put_record(Record::Mutable(v1.clone()), None);
    assert_eq!(put.expect("put v1").stored, 5, "every other node stores it");
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
fn a_get_returns_the_highest_sequence_when_holders_disagree() {
    // Two groups of three that do not know each other: group A stores seq 1 of a record and
    // group B seq 2. With three nodes and k = 20 a PUT stores on both others in its group.
    let a = network_of(41..=43);
    let b = network_of(44..=46);
    let author = Keypair::from_seed([98; 32]);
    let v1 = MutableRecord::sign(&author, b"status".to_vec(), 1, b"old".to_vec());
    let v2 = MutableRecord::sign(&author, b"status".to_vec(), 2, b"new".to_vec());
    let key = v1.key();
    let put = a[0].handle().put_record(Record::Mutable(v1.clone()), None);
    assert_eq!(put.expect("put v1 in A").stored, 2);
    let put = b[0].handle().put_record(Record::Mutable(v2.clone()), None);
    assert_eq!(put.expect("put v2 in B").stored, 2);
    for node in a.iter().chain(&b) {
        assert_eq!(node.handle().holds(key), Ok(true));
        assert_eq!(node.handle().peers().expect("peers").len(), 2, "the groups are apart");
    }
    let found = a[2].handle().get(key).expect("get in A").expect("found");
    assert_eq!(found.record, Record::Mutable(v1.clone()), "A has only seq 1");

    // Join the groups by one link, and add a reader that holds nothing and knows one node of
    // each group.
    a[0].handle().connect(b[0].peer_addr()).expect("connect A to B");
    let reader = start(47);
    reader.handle().connect(a[1].peer_addr()).expect("connect the reader to A");
    reader.handle().connect(b[1].peer_addr()).expect("connect the reader to B");
    reader.handle().bootstrap().expect("bootstrap");
    assert_eq!(reader.handle().holds(key), Ok(false));
    let found = reader.handle().get(key).expect("get").expect("found");
    assert_eq!(found.record, Record::Mutable(v2.clone()), "{found:?}");
    // A holder of seq 1, which answered seq 1 before the join, now gets seq 2: neither its own
    // stale copy nor those of its group end the GET.
    let found = a[2].handle().get(key).expect("get").expect("found");
    assert_eq!(found.record, Record::Mutable(v2), "{found:?}");
}

#[test]
fn providers_are_announced_and_found() {
    let nodes = network(6);
    let key = immutable_key(b"a file");
    let published = nodes[2].handle().provide(key).expect("provide");
    // Six nodes, k = 20: the announcement goes to all five others.
    assert_eq!((published.attempted, published.stored), (5, 5), "{published:?}");
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
    // A hang guard with room for a loaded CI machine; the lookup itself takes milliseconds.
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
    // Eight nodes, k = 20: every node but the one asking, nearest first (the target itself
    // at distance zero).
    assert_eq!(found.peers.len(), 7, "{found:?}");
    assert_eq!(found.peers.first().map(|p| p.id), Some(target), "{found:?}");
    let distances: Vec<_> = found.peers.iter().map(|p| p.id.distance(&target)).collect();
    assert!(distances.windows(2).all(|w| w[0] < w[1]), "sorted nearest first");
    assert!(found.stats.rpcs >= 1 && found.stats.rounds >= 1, "{:?}", found.stats);
}

#[test]
fn a_node_bound_to_every_interface_announces_a_reachable_address_or_refuses_to_provide() {
    let a = start(30);
    let unspecified: std::net::SocketAddr = "0.0.0.0:0".parse().unwrap();
    let key = immutable_key(b"announced");
    // Bound to 0.0.0.0 with a bootstrap peer: the interface that routes to it, and our port.
    let config = Config {
        keypair: Some(Keypair::from_seed([31; 32])),
        listen: unspecified,
        bootstrap: vec![a.peer_addr()],
        ..Config::default()
    };
    let b = Node::start(config).expect("node starts");
    b.handle().connect(a.peer_addr()).expect("b reaches a");
    let seen = a.handle().peers().unwrap();
    let from_b = seen.iter().find(|p| p.id == b.id()).expect("b dialled a");
    let routed = std::net::SocketAddr::from(([127, 0, 0, 1], b.local_addr().port()));
    assert_eq!(from_b.listen_addrs, vec![routed]);
    let published = b.handle().provide(key).expect("provide");
    assert_eq!(published.stored, 1);
    let found = a.handle().providers(key).expect("providers");
    assert_eq!(found.providers[0].addrs, vec![routed]);
    // `announce` wins over both.
    let announce = vec!["127.0.0.1:4999".parse().unwrap()];
    let c = Node::start(Config {
        keypair: Some(Keypair::from_seed([32; 32])),
        listen: unspecified,
        announce: announce.clone(),
        bootstrap: vec![a.peer_addr()],
        ..Config::default()
    })
    .expect("node starts");
    c.handle().connect(a.peer_addr()).expect("c reaches a");
    let seen = a.handle().peers().unwrap();
    assert_eq!(seen.iter().find(|p| p.id == c.id()).unwrap().listen_addrs, announce);
    // Nothing to announce: provide says so instead of announcing an unreachable provider.
    let d = Node::start(Config {
        keypair: Some(Keypair::from_seed([33; 32])),
        listen: unspecified,
        ..Config::default()
    })
    .expect("node starts");
    d.handle().connect(a.peer_addr()).unwrap();
    let refused = d.handle().provide(key).unwrap_err();
    assert_eq!(refused, CallError::Dht(DhtError::NoAddress));
    assert!(refused.to_string().contains("announce"), "{refused}");
}

#[test]
fn a_node_whose_bootstrap_peer_is_not_up_yet_joins_when_it_comes_up() {
    // A free port for the bootstrap peer, which starts only after the joiner.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let contact_key = Keypair::from_seed([60; 32]);
    let contact_addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut config = Config {
        keypair: Some(Keypair::from_seed([61; 32])),
        rng_seed: Some(61),
        bootstrap: vec![PeerAddr { id: contact_key.node_id(), addr: contact_addr }],
        ..Config::default()
    };
    config.dht.maintenance_interval = Duration::ZERO;
    let joiner = Node::start(config).expect("joiner starts");
    let entries = || joiner.handle().snapshot().expect("snapshot").routing.entries;
    assert_eq!(entries(), 0);
    // The contact starts only once the first join dial has failed: a joiner whose reactor
    // is slow to run its first dial (a busy CI host) would otherwise find the contact up
    // and join without a retry.
    let deadline = Instant::now() + Duration::from_secs(10);
    while joiner.handle().snapshot().expect("snapshot").peers.dial_failures == 0 {
        assert!(Instant::now() < deadline, "the joiner's first dial never failed");
        std::thread::sleep(Duration::from_millis(5));
    }

    let mut config = Config { listen: contact_addr, ..Config::default() };
    config.keypair = Some(contact_key);
    config.dht.maintenance_interval = Duration::ZERO;
    let contact = Node::start(config).expect("the bootstrap peer starts on its port");
    // The joiner dials it again 1, 3, 7, 15 s after its start (kad/join.rs), fewer when the
    // address's own dial backoff holds one back.
    let deadline = Instant::now() + Duration::from_secs(20);
    while entries() == 0 {
        assert!(Instant::now() < deadline, "the joiner never reached its bootstrap peer");
        std::thread::sleep(Duration::from_millis(20));
    }
    let snapshot = joiner.handle().snapshot().expect("snapshot");
    assert!(snapshot.dht.rejoins >= 1, "{:?}", snapshot.dht);
    let found = joiner.handle().find_node(joiner.id()).expect("find_node");
    assert!(found.peers.iter().any(|p| p.id == contact.id()), "{found:?}");
}
