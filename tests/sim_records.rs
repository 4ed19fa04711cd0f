//! Record upkeep on the simulator, small enough for a debug build: originators republish,
//! records die once nobody republishes them, and holders replicate to a close newcomer.

use std::time::Duration;

use petrel::bytes::ByteBuf;
use petrel::core::{Command, NodeCore, Reply};
use petrel::identity::NodeId;
use petrel::kad::dht::{DhtCommand, DhtConfig, DhtReply};
use petrel::sim::dht::{core_config, DhtNet, DhtScenario};
use petrel::sim::NodeIdx;
use petrel::wire::messages::{Key, Record};

/// 40 nodes whose records live 60 s, are republished every 25 s, with maintenance every 5 s.
fn scenario(seed: u64) -> DhtScenario {
    let mut sc = DhtScenario::new(40, 0, seed);
    sc.dht = DhtConfig {
        record_ttl: Duration::from_secs(60),
        republish_interval: Duration::from_secs(25),
        maintenance_interval: Duration::from_secs(5),
        ..DhtConfig::default()
    };
    sc.settle = Duration::from_secs(20);
    sc
}

fn put(net: &mut DhtNet, from: NodeIdx, value: &[u8]) -> Key {
    let record = Record::Immutable { value: ByteBuf::from(value.to_vec()) };
    let put = DhtCommand::Put { record, expected_seq: None };
    let id = net.sim.command(from, Command::Dht(put)).unwrap();
    let replies = net.collect(&[(id, from)].into_iter().collect(), Duration::from_secs(30));
    match replies.get(&id) {
        Some(Reply::Dht(DhtReply::Put(Ok(p)))) => p.key,
        other => panic!("put failed: {other:?}"),
    }
}

/// Live nodes other than `except` whose store holds `key` now.
fn holders(net: &DhtNet, key: &Key, except: NodeIdx) -> usize {
    let now = net.sim.now();
    net.honest
        .iter()
        .filter(|&&i| i != except && net.sim.is_alive(i))
        .filter(|&&i| net.sim.core(i).is_some_and(|c| c.dht().store().get(now, key).is_some()))
        .count()
}

#[test]
fn republishing_keeps_a_record_alive_and_it_dies_with_its_originator() {
    let sc = scenario(11);
    let mut net = DhtNet::build(&sc);
    let origin = net.honest[3];
    let key = put(&mut net, origin, b"kept alive by its originator");
    let stored = holders(&net, &key, origin);
    assert!(stored >= 20, "the k closest hold it: {stored}");
    // Three lifetimes later the originator has republished it: still held.
    net.sim.run_for(Duration::from_secs(180));
    assert!(holders(&net, &key, origin) >= 20);
    // The originator leaves: replication passes only the remaining lifetime, so the record
    // is gone everywhere within one lifetime (plus a maintenance tick).
    net.sim.kill(origin).unwrap();
    net.sim.run_for(Duration::from_secs(70));
    assert_eq!(holders(&net, &key, origin), 0);
}

#[test]
fn holders_replicate_to_a_newcomer_closer_to_the_key() {
    let sc = scenario(12);
    let mut net = DhtNet::build(&sc);
    let origin = net.honest[0];
    let key = put(&mut net, origin, b"replicated to the closest newcomer");
    // A newcomer whose id is nearer the key than anyone's (the key with its last bit flipped).
    let mut bytes = *key.as_bytes();
    bytes[31] ^= 1;
    let id = NodeId::from_bytes(bytes);
    let newcomer = net.sim.add_node(id, NodeCore::new(id, core_config(&sc, 99)));
    let contact = net.honest[7];
    let (peer, addr) = (net.sim.node_id(contact).unwrap(), net.sim.addr(contact).unwrap());
    net.sim.command(newcomer, Command::Connect { peer, addr }).unwrap();
    // The join's self-lookup reaches the holders near the key; at their next maintenance
    // tick they send it the record.
    net.sim.run_for(Duration::from_secs(15));
    let now = net.sim.now();
    let held = net.sim.core(newcomer).unwrap().dht().store().get(now, &key).is_some();
    assert!(held, "the newcomer received the record by replication");
    let sent: u64 =
        net.honest.iter().map(|&i| net.sim.core(i).unwrap().dht().stats().replications).sum();
    assert!(sent >= 1);
}
