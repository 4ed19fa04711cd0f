//! Sybils that attack gossip, for the simulator (issue: "attack kinds"; the GossipSub v1.1
//! evaluation's scenarios). Like the DHT adversaries they have no core: the simulator hands
//! them every frame and a tick, and they answer by their [`GossipAttack`].
//!
//! Every kind joins every topic a peer announces (it answers `Subscribe` with `Subscribe` and
//! `Graft`), so honest nodes see an eager mesh candidate, and then:
//! - `Censor` forwards nothing and answers no IWANT: the mesh slots it holds are dead.
//! - `InvalidFlood` also sends messages with bad signatures, round-robin over its links, at a
//!   fixed rate: a cost in checks, and a test of scoring (P4).
//! - `CovertFlash` relays every message it receives to all its other links (so it earns
//!   deliveries and a good score) until a common instant, then censors: the attack P3 and the
//!   mesh's outbound quota are for.
//! - `IHaveSpam` announces invented message ids in IHAVE every tick and never delivers them:
//!   broken IWANT promises (P7).

use std::collections::{BTreeSet, VecDeque};
use std::time::Duration;

use super::links::{LinkId, LinkState, Side};
use super::{NodeIdx, NodeKind, Role, Sim};
use crate::bytes::{ByteBuf, Bytes32, Bytes64};
use crate::wire::messages::{Gossip, GossipMessage, Message, MessageId};

/// What a gossip sybil does (module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GossipAttack {
    /// Joins meshes and drops everything.
    Censor,
    /// Joins meshes and sends messages with bad signatures at this rate (all links together).
    InvalidFlood {
        /// Messages per virtual second.
        per_sec: u32,
    },
    /// Relays honestly until this virtual instant, then censors.
    CovertFlash {
        /// When it turns, milliseconds of virtual time.
        turn_at_ms: u64,
    },
    /// Announces invented ids in IHAVE each tick and never answers IWANT.
    IHaveSpam,
}

/// Ids a relaying sybil remembers, so it relays each message once.
const MAX_RELAYED: usize = 4096;
/// Invented ids per IHAVE.
const SPAM_IDS: usize = 64;
/// Tick of the sybils that act on their own.
const TICK: Duration = Duration::from_millis(100);

/// The state a gossip sybil keeps.
#[derive(Debug, Clone, Default)]
pub struct GossipSybil {
    /// Topics it joined.
    topics: BTreeSet<String>,
    relayed: BTreeSet<MessageId>,
    relayed_order: VecDeque<MessageId>,
    sent: u64,
}

impl Sim {
    /// A gossip frame reached sybil `idx` on `link`.
    pub(super) fn on_gossip_sybil(&mut self, idx: NodeIdx, link: LinkId, side: Side, msg: Gossip) {
        let Some(attack) = self.gossip_attack(idx) else { return };
        match msg {
            Gossip::Subscribe { topic } => {
                if let Some(s) = self.sybil_mut(idx) {
                    if s.topics.len() < 64 {
                        s.topics.insert(topic.clone());
                    }
                }
                self.send(link, side, Message::Gossip(Gossip::Subscribe { topic: topic.clone() }));
                self.send(link, side, Message::Gossip(Gossip::Graft { topic }));
            }
            Gossip::Publish(m) => {
                let relaying = matches!(attack, GossipAttack::CovertFlash { turn_at_ms }
                    if self.time < Duration::from_millis(turn_at_ms));
                if relaying {
                    self.relay(idx, link, m);
                }
            }
            // Everything else (IWANT, GRAFT, PRUNE, IHAVE, IDONTWANT) is ignored.
            _ => {}
        }
    }

    /// Sends `m` once to every other established link of `idx`.
    fn relay(&mut self, idx: NodeIdx, from: LinkId, m: GossipMessage) {
        let id = m.id();
        let Some(s) = self.sybil_mut(idx) else { return };
        if !s.relayed.insert(id) {
            return;
        }
        s.relayed_order.push_back(id);
        if s.relayed_order.len() > MAX_RELAYED {
            if let Some(old) = s.relayed_order.pop_front() {
                s.relayed.remove(&old);
            }
        }
        for (link, side) in self.established_links(idx) {
            if link != from {
                self.send(link, side, Message::Gossip(Gossip::Publish(m.clone())));
            }
        }
    }

    /// A sybil's tick: flood invalid messages, or spam IHAVE; then the next tick.
    pub(super) fn on_gossip_tick(&mut self, idx: NodeIdx) {
        let Some(attack) = self.gossip_attack(idx) else { return };
        let links = self.established_links(idx);
        let topics: Vec<String> =
            self.sybil_mut(idx).map(|s| s.topics.iter().cloned().collect()).unwrap_or_default();
        match attack {
            GossipAttack::InvalidFlood { per_sec } if !links.is_empty() => {
                let per_tick = (f64::from(per_sec) * TICK.as_secs_f64()).ceil() as u64;
                for _ in 0..per_tick {
                    let Some(topic) = topics.first().cloned() else { break };
                    let n = self.sybil_mut(idx).map_or(0, |s| {
                        s.sent += 1;
                        s.sent
                    });
                    let (link, side) = links[(n as usize) % links.len()];
                    let forged = self.forged_message(idx, n, topic);
                    self.send(link, side, Message::Gossip(Gossip::Publish(forged)));
                }
            }
            GossipAttack::IHaveSpam => {
                for topic in topics {
                    for &(link, side) in &links {
                        let ids = (0..SPAM_IDS).map(|_| Bytes32(self.sybil_rng(idx))).collect();
                        let msg = Gossip::IHave { topic: topic.clone(), ids };
                        self.send(link, side, Message::Gossip(msg));
                    }
                }
            }
            _ => {}
        }
        self.schedule_tick(idx, self.time.saturating_add(TICK));
    }

    /// A message with a random author and a signature that does not verify.
    fn forged_message(&mut self, idx: NodeIdx, n: u64, topic: String) -> GossipMessage {
        let author = Bytes32(self.sybil_rng(idx));
        let mut sig = [0u8; 64];
        sig[..32].copy_from_slice(&self.sybil_rng(idx));
        GossipMessage {
            author,
            seqno: n,
            topic,
            payload: ByteBuf::from(vec![0xee; 256]),
            signature: Bytes64(sig),
        }
    }

    /// Has sybil `idx` dial honest node `target` (the scenario's overlay).
    pub fn sybil_dial(&mut self, idx: NodeIdx, target: NodeIdx) {
        let (Some(id), Some(addr)) = (self.node_id(target), self.addr(target)) else { return };
        if self.is_alive(target) {
            self.dial(idx, None, id, addr, false);
        }
    }

    fn gossip_attack(&self, idx: NodeIdx) -> Option<GossipAttack> {
        match self.kind(idx)? {
            NodeKind::Gossip(a) => Some(a),
            _ => None,
        }
    }

    fn sybil_mut(&mut self, idx: NodeIdx) -> Option<&mut GossipSybil> {
        match &mut self.nodes.get_mut(idx.0)?.role {
            Role::Adversary(a) => Some(a.sybil()),
            Role::Honest(_) => None,
        }
    }

    fn sybil_rng(&mut self, idx: NodeIdx) -> [u8; 32] {
        match self.nodes.get_mut(idx.0).map(|n| &mut n.role) {
            Some(Role::Adversary(a)) => a.rng().bytes32(),
            _ => [0; 32],
        }
    }

    fn established_links(&self, idx: NodeIdx) -> Vec<(LinkId, Side)> {
        let Some(node) = self.nodes.get(idx.0) else { return Vec::new() };
        node.links
            .iter()
            .filter(|(l, _)| self.links.get(l).is_some_and(|l| l.state == LinkState::Established))
            .map(|(&l, &s)| (l, s))
            .collect()
    }
}
