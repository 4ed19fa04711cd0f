//! Gossip over real sockets and TLS: nodes on loopback subscribe, publish and validate through
//! the public `Handle` API, and a raw TLS peer sends what an honest node never would (forged
//! signatures, duplicates). Every wait is bounded.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{config, start, wait_for, RawPeer, Read1};
use petrel::bytes::Bytes64;
use petrel::identity::Keypair;
use petrel::protocol::Verdict;
use petrel::wire::messages::{Gossip, GossipMessage, Message};
use petrel::Node;

const TOPIC: &str = "news";
const RECV: Duration = Duration::from_secs(10);

/// Waits until every node has at least one mesh peer in `TOPIC`.
fn wait_for_meshes(nodes: &[&Node]) {
    wait_for("every node to have a mesh peer", || {
        nodes
            .iter()
            .all(|n| n.handle().meshes().unwrap().iter().any(|(t, peers)| t == TOPIC && *peers > 0))
    });
}

#[test]
fn a_published_message_reaches_every_subscriber_once() {
    let nodes: Vec<Node> = (1..=5).map(|s| start(config(s))).collect();
    // A line: each node knows only its neighbour, so most deliveries are forwards.
    for i in 1..nodes.len() {
        nodes[i].handle().connect(nodes[i - 1].peer_addr()).unwrap();
    }
    let subs: Vec<_> = nodes.iter().map(|n| n.handle().subscribe(TOPIC).unwrap()).collect();
    wait_for_meshes(&nodes.iter().collect::<Vec<_>>());
    let published = nodes[0].handle().publish(TOPIC, b"hello, mesh".to_vec()).unwrap();
    assert!(published.peers >= 1);
    for (i, sub) in subs.iter().enumerate().skip(1) {
        let d = sub.recv_timeout(RECV).unwrap_or_else(|| panic!("node {i} got nothing"));
        assert_eq!(d.id, published.id);
        assert_eq!(d.message.payload.as_slice(), b"hello, mesh");
        assert_eq!(d.message.topic, TOPIC);
        assert!(d.message.verify());
        assert_eq!(sub.recv_timeout(Duration::from_millis(200)), None, "delivered once");
        assert_eq!(sub.lost(), 0);
    }
    assert_eq!(subs[0].try_recv(), None, "the publisher does not deliver to itself");
    let last = nodes[4].handle().snapshot().unwrap().gossip.unwrap();
    assert_eq!(last.delivered, 1);
    // The author's second message is checked with the key its first one decoded.
    let second = nodes[0].handle().publish(TOPIC, b"again".to_vec()).unwrap();
    assert_eq!(subs[4].recv_timeout(RECV).map(|d| d.id), Some(second.id));
    let keys = nodes[4].handle().snapshot().unwrap().author_keys;
    assert_eq!((keys.misses, keys.hits), (1, 1));
}

#[test]
fn a_subscriber_that_does_not_read_keeps_the_newest_messages_of_its_configured_queue() {
    let mut slow = config(2);
    slow.gossip.as_mut().expect("gossip on by default").subscription_queue = 2;
    // One worker: with two, signature checks finish out of order and so do deliveries (the
    // newest two delivered were then 2 and 4 in a CI run), which is not what this tests.
    slow.workers.threads = 1;
    let nodes = [start(config(1)), start(slow)];
    nodes[1].handle().connect(nodes[0].peer_addr()).unwrap();
    let subs: Vec<_> = nodes.iter().map(|n| n.handle().subscribe(TOPIC).unwrap()).collect();
    wait_for_meshes(&nodes.iter().collect::<Vec<_>>());
    for i in 0..5u8 {
        nodes[0].handle().publish(TOPIC, vec![i]).unwrap();
    }
    wait_for("five deliveries at the slow node", || {
        nodes[1].handle().snapshot().unwrap().gossip.unwrap().delivered == 5
    });
    let sub = &subs[1];
    let kept: Vec<Vec<u8>> = std::iter::from_fn(|| sub.try_recv())
        .map(|d| d.message.payload.as_slice().to_vec())
        .collect();
    assert_eq!(kept, [vec![3], vec![4]], "the newest two stay");
    assert_eq!(sub.lost(), 3);
    assert_eq!(nodes[1].handle().snapshot().unwrap().subscriptions_lost, 3);
}

#[test]
fn a_validator_decides_what_is_delivered_and_a_rejected_message_is_not_forwarded() {
    let nodes: Vec<Node> = (11..=12).map(|s| start(config(s))).collect();
    nodes[1].handle().connect(nodes[0].peer_addr()).unwrap();
    let no_bad = |m: &GossipMessage| {
        if m.payload.as_slice() == b"bad" {
            Verdict::Reject
        } else {
            Verdict::Accept
        }
    };
    let judge = nodes[1].handle();
    judge.set_validator(TOPIC, Arc::new(no_bad)).unwrap();
    let subs: Vec<_> = nodes.iter().map(|n| n.handle().subscribe(TOPIC).unwrap()).collect();
    // A raw peer in the judge's mesh sees what the judge forwards.
    let mut watcher = RawPeer::connect_gossip(13, &nodes[1]);
    watcher.send_msg(&Message::Gossip(Gossip::Subscribe { topic: TOPIC.into() }));
    watcher.send_msg(&Message::Gossip(Gossip::Graft { topic: TOPIC.into() }));
    wait_for_meshes(&[&nodes[0], &nodes[1]]);
    wait_for("the watcher in the judge's mesh", || {
        judge.meshes().unwrap().iter().any(|(t, n)| t == TOPIC && *n == 2)
    });
    nodes[0].handle().publish(TOPIC, b"bad".to_vec()).unwrap();
    nodes[0].handle().publish(TOPIC, b"good".to_vec()).unwrap();
    let d = subs[1].recv_timeout(RECV).expect("the good message");
    assert_eq!(d.message.payload.as_slice(), b"good");
    assert_eq!(subs[1].recv_timeout(Duration::from_millis(200)), None, "never the bad one");
    // Everything the judge sent the watcher up to the good message: never the bad one.
    loop {
        match watcher.read_frame() {
            Read1::Frame(Message::Gossip(Gossip::Publish(m))) => {
                assert_eq!(m.payload.as_slice(), b"good", "a rejected message was forwarded");
                break;
            }
            Read1::Frame(_) => {}
            Read1::Closed => panic!("the judge closed the watcher"),
        }
    }
    let g = judge.snapshot().unwrap().gossip.unwrap();
    assert_eq!((g.rejected, g.delivered), (1, 1));
}

#[test]
fn a_forged_copy_does_not_suppress_the_genuine_message_and_a_duplicate_is_checked_once() {
    let node = start(config(21));
    let sub = node.handle().subscribe(TOPIC).unwrap();
    let mut raw = RawPeer::connect_gossip(22, &node);
    raw.send_msg(&Message::Gossip(Gossip::Subscribe { topic: TOPIC.into() }));
    let author = Keypair::from_seed([23; 32]);
    let genuine = GossipMessage::sign(&author, 1, TOPIC.into(), b"genuine".to_vec());
    // Same author and sequence number, so the same id; other bytes, a bad signature.
    let mut forged = genuine.clone();
    forged.payload = b"forged".to_vec().into();
    forged.signature = Bytes64([7; 64]);
    raw.send_msg(&Message::Gossip(Gossip::Publish(forged)));
    wait_for("the forged copy to be checked", || {
        node.handle().snapshot().unwrap().gossip.unwrap().invalid_signature == 1
    });
    // The forger's score fell below the publish threshold (one invalid message is -55 to
    // -70): seen at the next heartbeat's scoring.
    wait_for("the forger to score below the publish threshold", || {
        let s = node.handle().snapshot().unwrap().gossip_scores.unwrap();
        s.buckets.below_publish == 1
    });
    raw.send_msg(&Message::Gossip(Gossip::Publish(genuine.clone())));
    let d = sub.recv_timeout(RECV).expect("the genuine message");
    assert_eq!(d.message.payload.as_slice(), b"genuine");
    raw.send_msg(&Message::Gossip(Gossip::Publish(genuine)));
    wait_for("the duplicate to be counted", || {
        node.handle().snapshot().unwrap().gossip.unwrap().duplicates == 1
    });
    let g = node.handle().snapshot().unwrap().gossip.unwrap();
    assert_eq!((g.delivered, g.invalid_signature), (1, 1));
    assert_eq!(g.check_jobs, 2, "the forged copy and the genuine one; never the duplicate");
    assert_eq!(sub.try_recv(), None);
}

#[test]
fn a_subscriber_found_only_through_the_dht_receives_messages() {
    // B knows A and C; A and C do not know each other, and B is not in the topic (it relays
    // nothing of it). A and C find each other as providers of the topic's key.
    let nodes: Vec<Node> = (31..=33).map(|s| start(config(s))).collect();
    let (a, b, c) = (&nodes[0], &nodes[1], &nodes[2]);
    a.handle().connect(b.peer_addr()).unwrap();
    c.handle().connect(b.peer_addr()).unwrap();
    let sub_c = c.handle().subscribe(TOPIC).unwrap();
    let _sub_a = a.handle().subscribe(TOPIC).unwrap();
    wait_for("A and C to find each other", || {
        a.handle().peers().unwrap().iter().any(|p| p.id == c.id())
    });
    wait_for_meshes(&[a, c]);
    let published = a.handle().publish(TOPIC, b"found you".to_vec()).unwrap();
    let Some(d) = sub_c.recv_timeout(RECV) else {
        let sa = a.handle().snapshot().unwrap();
        let sc = c.handle().snapshot().unwrap();
        panic!(
            "C got nothing\nA: {:?}\n{:?}\nC: {:?}\n{:?}",
            sa.gossip, sa.core, sc.gossip, sc.core
        );
    };
    assert_eq!(d.id, published.id);
    assert!(b.handle().meshes().unwrap().is_empty(), "B never joined");
}

#[test]
fn a_flooding_peer_is_slowed_then_disconnected_and_the_node_keeps_serving_the_topic() {
    use petrel::runtime::limiter::LimiterConfig;
    use petrel::wire::messages::{Goodbye, GoodbyeReason};
    let limiter = LimiterConfig {
        peer_frames_per_sec: 10,
        peer_frames_burst: 10,
        max_strikes: 1,
        ..LimiterConfig::DEFAULT
    };
    let node = start(petrel::Config { limiter, ..config(41) });
    let honest = start(config(42));
    honest.handle().connect(node.peer_addr()).unwrap();
    let sub = node.handle().subscribe(TOPIC).unwrap();
    let _honest_sub = honest.handle().subscribe(TOPIC).unwrap();
    let mut flooder = RawPeer::connect_gossip(43, &node);
    let author = Keypair::from_seed([44; 32]);
    let flood = |from: u64| -> Vec<Message> {
        (from..from + 15)
            .map(|s| {
                Message::Gossip(Gossip::Publish(GossipMessage::sign(
                    &author,
                    s,
                    TOPIC.into(),
                    vec![0; 64],
                )))
            })
            .collect()
    };
    // The first burst is served, its last five after a pause (a strike the core forgives).
    for m in flood(0) {
        flooder.send_msg(&m);
    }
    wait_for("the first burst to be served", || {
        node.handle().snapshot().unwrap().gossip.unwrap().delivered == 15
    });
    assert_eq!(node.handle().snapshot().unwrap().core.closed_rate_limited, 0);
    // The second burst is the second strike.
    for m in flood(15) {
        flooder.send_msg(&m);
    }
    let rest = flooder.read_until_closed();
    assert!(
        rest.contains(&Message::Goodbye(Goodbye { reason: GoodbyeReason::RateLimited })),
        "{rest:?}"
    );
    let snapshot = node.handle().snapshot().unwrap();
    assert_eq!(snapshot.core.closed_rate_limited, 1);
    let delivered = snapshot.gossip.unwrap().delivered;
    assert!(delivered < 30, "the frames read after the second strike were not served");
    // The topic goes on: an honest peer's message is delivered.
    wait_for_meshes(&[&node, &honest]);
    let published = honest.handle().publish(TOPIC, b"still here".to_vec()).unwrap();
    loop {
        let d = sub.recv_timeout(RECV).expect("the honest message");
        if d.id == published.id {
            break;
        }
    }
}
