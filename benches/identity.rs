//! Identity costs: the XOR metric, k-closest selection, Ed25519 signatures and the id
//! proof-of-work hash. See benches/README.md for how to run and the last figures measured.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use petrel::identity::{
    id_pow_bits, verify_signature, verify_strict_with, Keypair, NodeId, StrictKey,
};

/// Kademlia k: how many closest peers a lookup keeps.
const K: usize = 20;

/// `n` well-spread ids (SHA-256 of distinct keys), deterministic across runs.
fn ids(n: u32) -> Vec<NodeId> {
    (0..n)
        .map(|i| {
            let mut key = [0u8; 32];
            key[..4].copy_from_slice(&i.to_le_bytes());
            NodeId::from_public_key(&key)
        })
        .collect()
}

fn metric(c: &mut Criterion) {
    let a = NodeId::from_public_key(&[1; 32]);
    let b = NodeId::from_public_key(&[2; 32]);
    c.bench_function("id/distance", |bench| bench.iter(|| black_box(a).distance(&black_box(b))));
    c.bench_function("id/bucket_index", |bench| {
        bench.iter(|| black_box(a).bucket_index(&black_box(b)))
    });

    let target = NodeId::from_public_key(&[0xee; 32]);
    let population = ids(1000);
    c.bench_function("id/sort_1000_by_distance", |bench| {
        bench.iter_batched_ref(
            || population.clone(),
            |v| v.sort_by_key(|id| target.distance(id)),
            BatchSize::SmallInput,
        )
    });
    c.bench_function("id/select_20_closest_of_1000", |bench| {
        bench.iter_batched_ref(
            || population.clone(),
            |v| {
                v.select_nth_unstable_by_key(K - 1, |id| target.distance(id));
                v[..K].sort_unstable_by_key(|id| target.distance(id));
            },
            BatchSize::SmallInput,
        )
    });
}

fn signatures(c: &mut Criterion) {
    let kp = Keypair::from_seed([9; 32]);
    let public_key = kp.public_key();
    let message: Vec<u8> = (0..1024).map(|i| i as u8).collect();
    let signature = kp.sign(&message);
    assert!(verify_signature(&public_key, &message, &signature));

    c.bench_function("ed25519/sign_1KiB", |b| b.iter(|| kp.sign(black_box(&message))));
    c.bench_function("ed25519/verify_1KiB", |b| {
        b.iter(|| verify_signature(black_box(&public_key), black_box(&message), &signature))
    });
    // The key decoded once, as a verifier that keeps its authors' keys does.
    let key = StrictKey::new(&public_key).expect("a valid key");
    c.bench_function("ed25519/verify_1KiB_decoded_key", |b| {
        b.iter(|| verify_strict_with(black_box(&key), black_box(&message), &signature))
    });
    c.bench_function("id/id_pow_bits", |b| b.iter(|| id_pow_bits(black_box(&public_key))));
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30)
}

criterion_group! {
    name = benches;
    config = config();
    targets = metric, signatures
}
criterion_main!(benches);
