//! Wire-format costs: encoding and decoding three representative messages, and framing
//! throughput. See benches/README.md for how to run and the last figures measured.

use std::hint::black_box;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use petrel::bytes::Bytes32;
use petrel::identity::{Keypair, NodeId};
use petrel::wire::messages::{Gossip, GossipMessage, PeerInfo, Response};
use petrel::wire::DEFAULT_MAX_FRAME_BYTES as MAX;
use petrel::wire::{decode, encode, encode_frame, frame, FrameDecoder, Message};

/// Input is fed to the frame decoder in reads of this size, as from a socket.
const READ_CHUNK: usize = 16 * 1024;
/// Each framing benchmark decodes a stream of about this many bytes.
const STREAM_BYTES: usize = 1 << 20;

/// A FIND_NODE answer at its bound: k = 20 peers, each with one IPv4 and one IPv6 address.
fn find_node_response() -> Message {
    let closer = (0..20u8)
        .map(|i| PeerInfo {
            id: NodeId::from_public_key(&[i; 32]),
            addrs: vec![
                SocketAddr::from((Ipv4Addr::new(192, 0, 2, i), 4100 + u16::from(i))),
                SocketAddr::from((
                    Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, u16::from(i)),
                    4100 + u16::from(i),
                )),
            ],
        })
        .collect();
    Message::Response { id: 7, body: Response::Nodes { closer } }
}

/// A published gossip message with a 1 KiB payload, signed by its author.
fn publish_1k() -> Message {
    let author = Keypair::from_seed([7; 32]);
    let payload = (0..1024).map(|i| i as u8).collect();
    let msg = GossipMessage::sign(&author, 42, "petrel/bench/topic".into(), payload);
    Message::Gossip(Gossip::Publish(msg))
}

/// An IHAVE announcing 100 message ids.
fn ihave_100() -> Message {
    let ids = (0..100u8).map(|i| Bytes32(*NodeId::from_public_key(&[i; 32]).as_bytes())).collect();
    Message::Gossip(Gossip::IHave { topic: "petrel/bench/topic".into(), ids })
}

fn messages(c: &mut Criterion) {
    let cases = [
        ("find_node_response_20_peers", find_node_response()),
        ("publish_1KiB", publish_1k()),
        ("ihave_100_ids", ihave_100()),
    ];
    for (name, msg) in cases {
        let bytes = encode(&msg, MAX).expect("bench message encodes");
        assert_eq!(decode(&bytes, MAX).as_ref(), Ok(&msg));
        let mut group = c.benchmark_group(format!("message/{name}"));
        group.throughput(Throughput::Bytes(bytes.len() as u64));
        group.bench_function("encode", |b| b.iter(|| encode(black_box(&msg), MAX).unwrap()));
        let mut out = Vec::with_capacity(bytes.len() + 4);
        group.bench_function("encode_frame_reused_buf", |b| {
            b.iter(|| {
                out.clear();
                encode_frame(black_box(&msg), MAX, &mut out).unwrap();
            })
        });
        group.bench_function("decode", |b| b.iter(|| decode(black_box(&bytes), MAX).unwrap()));
        // What the reactor pays to size its pooled encode buffer before encoding.
        group.bench_function("payload_len", |b| {
            b.iter(|| petrel::wire::codec::payload_len(black_box(&msg)).unwrap())
        });
        group.finish();
    }
}

/// A stream of about `STREAM_BYTES` made of frames with `payload_len`-byte payloads.
fn framed_stream(payload_len: usize) -> (Vec<u8>, usize) {
    let payload: Vec<u8> = (0..payload_len).map(|i| (i * 31) as u8).collect();
    let count = (STREAM_BYTES / payload_len).max(1);
    let mut stream = Vec::with_capacity(count * (payload_len + 4));
    for _ in 0..count {
        frame::encode_frame(&payload, MAX, &mut stream).unwrap();
    }
    (stream, count)
}

fn framing(c: &mut Criterion) {
    let mut group = c.benchmark_group("frame");
    for (label, payload_len) in [("1KiB", 1024), ("64KiB", 64 * 1024)] {
        let (stream, count) = framed_stream(payload_len);
        group.throughput(Throughput::Bytes(stream.len() as u64));
        group.bench_with_input(BenchmarkId::new("decode_16KiB_reads", label), &stream, |b, s| {
            b.iter(|| {
                let mut dec = FrameDecoder::new(MAX);
                let mut frames = 0;
                for chunk in s.chunks(READ_CHUNK) {
                    let mut input = chunk;
                    while let Some(f) = dec.decode(&mut input).unwrap() {
                        black_box(&f);
                        frames += 1;
                    }
                }
                assert_eq!(frames, count);
            })
        });

        let payload = &stream[4..4 + payload_len];
        let mut out = Vec::with_capacity(stream.len());
        group.bench_with_input(BenchmarkId::new("encode_frame", label), &payload, |b, p| {
            b.iter(|| {
                out.clear();
                for _ in 0..count {
                    frame::encode_frame(black_box(p), MAX, &mut out).unwrap();
                }
            })
        });
    }
    group.finish();
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
    targets = messages, framing
}
criterion_main!(benches);
