//! Kademlia costs on one core: the routing table's k-closest query, serving a FIND_NODE, a
//! whole iterative lookup over an in-memory network of 1,000 routing tables, record puts and
//! gets, and a DHT scenario on the simulator. See benches/README.md for the figures.

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use petrel::bytes::ByteBuf;
use petrel::identity::NodeId;
use petrel::kad::lookup::{Lookup, LookupConfig};
use petrel::kad::memstore::{MemoryStore, Origin, RecordStore, StoreConfig};
use petrel::kad::routing::{RoutingConfig, RoutingTable, Source};
use petrel::kad::serve;
use petrel::rng::Rng;
use petrel::sim::dht::{self, DhtScenario};
use petrel::wire::messages::{PeerInfo, Record, Request};

fn ids(rng: &mut Rng, n: usize) -> Vec<NodeId> {
    (0..n).map(|_| NodeId::from_bytes(rng.bytes32())).collect()
}

fn addr(i: usize) -> SocketAddr {
    SocketAddr::from(([10, (i >> 16) as u8, (i >> 8) as u8, i as u8], 4000))
}

/// A routing table of `local` filled from `population` (limits off: the addresses are synthetic).
fn table(local: NodeId, population: &[NodeId], now: Instant) -> RoutingTable {
    let config = RoutingConfig { ip_limits: false, ..RoutingConfig::DEFAULT };
    let mut t = RoutingTable::new(local, config);
    for (i, id) in population.iter().enumerate() {
        t.observe(now, PeerInfo { id: *id, addrs: vec![addr(i)] }, Source::Verified);
    }
    t
}

fn routing(c: &mut Criterion) {
    let mut rng = Rng::new(1);
    let now = Instant::now();
    let local = NodeId::from_bytes(rng.bytes32());
    let population = ids(&mut rng, 10_000);
    let t = table(local, &population, now);
    let target = NodeId::from_bytes(rng.bytes32());
    c.bench_function(&format!("kad/closest_20_of_{}", t.len()), |b| {
        b.iter(|| t.closest(black_box(&target), 20))
    });
    let mut store = MemoryStore::new(StoreConfig::DEFAULT);
    let from = population[0];
    c.bench_function("kad/serve_find_node", |b| {
        b.iter(|| {
            let req = Request::FindNode { target: black_box(target) };
            serve::answer(now, &from, None, req, &t, &mut store, 20)
        })
    });
    // A 64 KiB record asked for again and again: what one answer costs before its encoding.
    let record = Record::Immutable { value: ByteBuf::from(vec![7u8; 64 * 1024]) };
    let ttl = Duration::from_secs(3600);
    let (key, _) = store.put(now, Origin::Local, record, ttl, None).expect("stored");
    c.bench_function("kad/serve_find_value_64k", |b| {
        b.iter(|| {
            let req = Request::FindValue { key: black_box(key) };
            serve::answer(now, &from, None, req, &t, &mut store, 20)
        })
    });
}

/// One full lookup: 1,000 nodes, each with a table of the others' ids, answering instantly.
fn lookup(c: &mut Criterion) {
    let mut rng = Rng::new(2);
    let now = Instant::now();
    let population = ids(&mut rng, 1000);
    let tables: Vec<RoutingTable> =
        population.iter().map(|&id| table(id, &population, now)).collect();
    let index: std::collections::HashMap<NodeId, usize> =
        population.iter().enumerate().map(|(i, id)| (*id, i)).collect();
    let origin = &tables[0];
    c.bench_function("kad/lookup_1000_nodes", |b| {
        b.iter_batched(
            || NodeId::from_bytes(rng.bytes32()),
            |target| {
                let seeds = origin.closest(&target, 20);
                let mut l = Lookup::new(now, population[0], target, seeds, LookupConfig::DEFAULT);
                while !l.is_finished() {
                    let Some(peer) = l.next_request(now) else { break };
                    let closer = tables[index[&peer.id]].closest(&target, 20);
                    l.on_response(now, &peer.id, closer);
                }
                l.stats(now).rpcs
            },
            BatchSize::SmallInput,
        )
    });
}

fn store(c: &mut Criterion) {
    let now = Instant::now();
    let mut rng = Rng::new(3);
    let from = NodeId::from_bytes(rng.bytes32());
    c.bench_function("kad/store_put_get_256B", |b| {
        let mut s = MemoryStore::new(StoreConfig::DEFAULT);
        b.iter_batched(
            || Record::Immutable { value: ByteBuf::from(rng.bytes32().repeat(8)) },
            |record| {
                let ttl = Duration::from_secs(3600);
                let (key, _) =
                    s.put(now, Origin::Peer(from, None), record, ttl, None).expect("stored");
                black_box(s.get(now, &key).is_some());
                s.remove(&key);
            },
            BatchSize::SmallInput,
        )
    });
}

/// The simulator end to end: 200 nodes join, then 50 lookups (per iteration).
fn simulator(c: &mut Criterion) {
    let mut group = c.benchmark_group("sim");
    group.sample_size(10);
    group.bench_function("dht_200_nodes_50_lookups", |b| {
        b.iter(|| {
            let r = dht::run(&DhtScenario::new(200, 50, 4));
            assert_eq!(r.succeeded, r.lookups);
            r.sim.events
        })
    });
    group.finish();
}

criterion_group!(benches, routing, lookup, store, simulator);
criterion_main!(benches);
