//! Transport costs in memory (no sockets): a full TLS 1.3 raw-key handshake plus the Hello
//! exchange, and framed throughput over one established connection for 1 KiB and 64 KiB
//! frames. Loopback socket figures come from `petrel bench transport`; see benches/README.md.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use petrel::bytes::ByteBuf;
use petrel::identity::Keypair;
use petrel::transport::conn::{ConnConfig, ConnEvent, Connection};
use petrel::transport::tls::TlsConfig;
use petrel::wire::messages::{Gossip, GossipMessage, Hello, Message, PROTOCOL_VERSION};

fn conn_config() -> ConnConfig {
    ConnConfig {
        max_frame_bytes: 1 << 20,
        max_write_queue_bytes: 16 << 20,
        network: "bench".into(),
        id_pow_bits: 0,
    }
}

fn hello() -> Hello {
    Hello {
        version: PROTOCOL_VERSION,
        network: "bench".into(),
        id_pow_bits: 0,
        features: 0,
        agent: "bench".into(),
        listen_addrs: vec![],
    }
}

/// Moves pending TLS bytes from `from` to `to`; whether any moved.
fn shuttle(from: &mut Connection, to: &mut Connection, buf: &mut Vec<u8>) -> bool {
    buf.clear();
    while from.wants_write() {
        from.write_tls(buf).expect("writing to a Vec cannot fail");
    }
    if !buf.is_empty() {
        to.handle_input(buf);
    }
    !buf.is_empty()
}

/// Moves TLS bytes both ways until quiet; returns the events `b` produced.
fn settle(a: &mut Connection, b: &mut Connection, buf: &mut Vec<u8>) -> usize {
    let mut events = 0;
    loop {
        let moved = shuttle(a, b, buf) | shuttle(b, a, buf);
        while a.poll_event().is_some() {}
        while let Some(ConnEvent::Message { .. } | ConnEvent::Established { .. }) = b.poll_event() {
            events += 1;
        }
        if !moved {
            return events;
        }
    }
}

fn pair(
    client: &TlsConfig,
    server: &TlsConfig,
    server_id: petrel::identity::NodeId,
) -> (Connection, Connection) {
    let c = client.dial(server_id).expect("client session");
    let s = server.accept().expect("server session");
    (
        Connection::new(c.into(), hello(), conn_config()),
        Connection::new(s.into(), hello(), conn_config()),
    )
}

fn handshake(c: &mut Criterion) {
    let ck = Keypair::from_seed([1; 32]);
    let sk = Keypair::from_seed([2; 32]);
    let (client, server) = (TlsConfig::new(&ck, 0).unwrap(), TlsConfig::new(&sk, 0).unwrap());
    let mut buf = Vec::new();
    c.bench_function("transport/handshake_and_hello", |b| {
        b.iter(|| {
            let (mut a, mut s) = pair(&client, &server, sk.node_id());
            settle(&mut a, &mut s, &mut buf);
            assert!(a.is_established() && s.is_established());
        })
    });
}

fn throughput(c: &mut Criterion) {
    let ck = Keypair::from_seed([1; 32]);
    let sk = Keypair::from_seed([2; 32]);
    let (client, server) = (TlsConfig::new(&ck, 0).unwrap(), TlsConfig::new(&sk, 0).unwrap());
    let mut group = c.benchmark_group("transport/framed");
    for size in [1024usize, 64 * 1024] {
        let (mut a, mut s) = pair(&client, &server, sk.node_id());
        let mut buf = Vec::new();
        settle(&mut a, &mut s, &mut buf);
        let msg = Message::Gossip(Gossip::Publish(GossipMessage {
            payload: ByteBuf::from(vec![7; size]),
            ..GossipMessage::sign(&ck, 1, "t".into(), vec![])
        }));
        const BATCH: usize = 16;
        group.throughput(Throughput::Bytes((size * BATCH) as u64));
        group.bench_function(format!("{}KiB_frames", size / 1024), |b| {
            b.iter(|| {
                for _ in 0..BATCH {
                    a.send(black_box(&msg)).unwrap();
                }
                let got = settle(&mut a, &mut s, &mut buf);
                assert_eq!(got, BATCH);
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1)).sample_size(20);
    targets = handshake, throughput
}
criterion_main!(benches);
