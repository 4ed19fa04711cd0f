//! Drives one gossip state machine (`PubSub`) with a fuzz-chosen script: peers come up, move
//! and leave, send any gossip frame (subscriptions, messages genuine, forged or duplicated,
//! IHAVE, IWANT, GRAFT, PRUNE with peer exchange, IDONTWANT), connections congest and drain,
//! check jobs answer with any verdict or never, the application subscribes and publishes, time
//! jumps. Sans-IO, so deep mesh, backoff and scoring states are microseconds away.
//!
//! Checked on every step: no panic; after `handle_timeout(now)` the next deadline is later
//! than `now`; the caches, queues and tables stay within their bounds; a message is delivered
//! at most once while its id is remembered as seen; frames go only to peers that are up.

#![no_main]

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use petrel::bytes::{Bytes32, Bytes64};
use petrel::gossip::{GossipCommand, GossipConfig, GossipEvent, PubSub};
use petrel::identity::{Keypair, NodeId};
use petrel::protocol::{jobs, Action, CommandId, Direction, Job, JobResult, Peer, Protocol, Verdict};
use petrel::wire::messages::{
    Gossip, GossipMessage, Hello, MessageId, PeerInfo, FEATURE_GOSSIP, PROTOCOL_VERSION,
};

/// Reads the script; every read past the end gives zeros, so any input is a valid script.
struct Script<'a>(&'a [u8]);

impl Script<'_> {
    fn byte(&mut self) -> u8 {
        let Some((&b, rest)) = self.0.split_first() else { return 0 };
        self.0 = rest;
        b
    }

    fn peer(&mut self) -> u8 {
        self.byte() % 16
    }

    fn topic(&mut self) -> String {
        ["a", "b", "c", ""][usize::from(self.byte() % 4)].to_string()
    }

    fn message(&mut self, authors: &[Keypair]) -> GossipMessage {
        let author = &authors[usize::from(self.byte()) % authors.len()];
        let seqno = u64::from(self.byte() % 32);
        let topic = self.topic();
        let payload = vec![self.byte(); usize::from(self.byte()) * 8];
        let mut m = GossipMessage::sign(author, seqno, topic, payload);
        match self.byte() % 4 {
            0 => m.signature = Bytes64([self.byte(); 64]),
            1 => m.payload = vec![self.byte(); 3].into(),
            _ => {}
        }
        m
    }

    fn ids(&mut self, known: &[MessageId]) -> Vec<MessageId> {
        let n = usize::from(self.byte() % 8);
        (0..n)
            .map(|_| match known.get(usize::from(self.byte())) {
                Some(id) => *id,
                None => Bytes32([self.byte(); 32]),
            })
            .collect()
    }
}

fn id(n: u8) -> NodeId {
    NodeId::from_bytes([n.wrapping_add(1); 32])
}

fn hello() -> Hello {
    Hello {
        version: PROTOCOL_VERSION,
        network: String::new(),
        id_pow_bits: 0,
        features: FEATURE_GOSSIP,
        agent: String::new(),
        listen_addrs: Vec::new(),
    }
}

fuzz_target!(|data: &[u8]| {
    let mut s = Script(data);
    // Staggering from 1 KiB (payloads reach 2 KiB here), one eager peer and room for 4 held
    // messages, so holding, releasing and the full path are all reached.
    let config = GossipConfig {
        max_topics: 2,
        max_topics_per_peer: 2,
        stagger_min_bytes: 1024,
        eager_forwards: 1,
        max_staggered: 4,
        ..GossipConfig::default()
    };
    let mut g = PubSub::new(NodeId::from_bytes([0xee; 32]), config);
    let authors: Vec<Keypair> = (1..=3).map(|n| Keypair::from_seed([n; 32])).collect();
    let mut now = Instant::now();
    let mut up: BTreeSet<u8> = BTreeSet::new();
    let mut jobs_pending: Vec<(petrel::protocol::JobKey, Job)> = Vec::new();
    let mut delivered: BTreeMap<MessageId, Instant> = BTreeMap::new();
    let seen_ttl = GossipConfig::default().seen_ttl;
    let mut known: Vec<MessageId> = Vec::new();
    let h = hello();
    for _ in 0..256 {
        if s.0.is_empty() {
            break;
        }
        let p = s.peer();
        let peer = Peer {
            id: id(p),
            addr: SocketAddr::from(([10, 0, p % 4, p], 4000)),
            direction: if s.byte() % 2 == 0 { Direction::Inbound } else { Direction::Outbound },
            hello: &h,
        };
        match s.byte() % 16 {
            0 => {
                g.handle_peer_up(now, &peer);
                up.insert(p);
            }
            1 => {
                g.handle_peer_down(now, peer.id);
                up.remove(&p);
            }
            2 => g.handle_peer_moved(now, &peer),
            3 => g.handle_gossip(now, &peer, Gossip::Subscribe { topic: s.topic() }),
            4 => g.handle_gossip(now, &peer, Gossip::Unsubscribe { topic: s.topic() }),
            5 | 6 => {
                let m = s.message(&authors);
                known.push(m.id());
                g.handle_gossip(now, &peer, Gossip::Publish(m));
            }
            7 => {
                let ids = s.ids(&known);
                g.handle_gossip(now, &peer, Gossip::IHave { topic: s.topic(), ids });
            }
            8 => {
                let ids = s.ids(&known);
                g.handle_gossip(now, &peer, Gossip::IWant { ids });
            }
            9 => g.handle_gossip(now, &peer, Gossip::Graft { topic: s.topic() }),
            10 => {
                let peers = (0..s.byte() % 4)
                    .map(|_| PeerInfo { id: id(s.peer()), addrs: vec![peer.addr] })
                    .collect();
                let backoff_secs = u32::from(s.byte());
                let msg = Gossip::Prune { topic: s.topic(), backoff_secs, peers };
                g.handle_gossip(now, &peer, msg);
            }
            11 => {
                let ids = s.ids(&known);
                g.handle_gossip(now, &peer, Gossip::IDontWant { ids });
            }
            12 => g.handle_congestion(now, peer.id, s.byte() % 2 == 0),
            13 => {
                let cmd = match s.byte() % 4 {
                    0 => GossipCommand::Subscribe(s.topic()),
                    1 => GossipCommand::Unsubscribe(s.topic()),
                    2 => GossipCommand::Publish(s.message(&authors)),
                    _ => GossipCommand::SetValidated { topic: s.topic(), on: s.byte() % 2 == 0 },
                };
                g.handle_command(now, CommandId(1), cmd);
            }
            14 => {
                // A pending check answers: truly, with a fuzzed verdict, or not at all.
                if !jobs_pending.is_empty() {
                    let (key, job) = jobs_pending.remove(usize::from(s.byte()) % jobs_pending.len());
                    let result = match s.byte() % 3 {
                        0 => Some(jobs::run(job, None)),
                        1 => {
                            let Job::CheckMessages { messages, .. } = job else { continue };
                            let v = [Verdict::Accept, Verdict::Reject, Verdict::Ignore, Verdict::BadSignature];
                            let verdicts = messages.iter().map(|_| v[usize::from(s.byte() % 4)]).collect();
                            Some(JobResult::MessagesChecked(verdicts))
                        }
                        _ => None,
                    };
                    g.handle_job_done(now, key, result);
                }
            }
            _ => {
                now += Duration::from_millis(u64::from(s.byte()) * 40);
                g.handle_timeout(now);
                if let Some(next) = g.next_deadline() {
                    assert!(next > now, "a deadline stays due after handle_timeout");
                }
            }
        }
        while let Some(action) = g.poll_output() {
            match action {
                Action::Job { key, job } => jobs_pending.push((key, job)),
                Action::Event(GossipEvent::Message(d)) => {
                    if let Some(&at) = delivered.get(&d.id) {
                        assert!(now - at >= seen_ttl, "a message delivered twice while seen");
                    }
                    delivered.insert(d.id, now);
                    assert_eq!(d.id, d.message.id());
                }
                Action::Send { to, .. } => {
                    assert!(up.iter().any(|&q| id(q) == to), "a frame to a peer that is not up");
                }
                _ => {}
            }
        }
        let stats = g.stats();
        assert!(stats.topics <= 2);
        assert!(stats.queued_bytes <= 16 * (4 << 20));
        assert!(stats.pending_checks <= 2 * 1024 + 16);
    }
});
