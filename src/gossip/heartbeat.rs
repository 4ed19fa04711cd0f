//! The gossip heartbeat (GossipSub v1.1 §"Heartbeat"), once per `heartbeat`: keep each mesh
//! between D_low and D_high with D_out outbound peers and no negative scores, graft
//! opportunistically when the mesh scores poorly, expire fanouts and top them up, announce
//! recent messages with IHAVE, settle IWANT promises, and age every cache and counter.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Instant;

use super::outbound::Class;
use super::pubsub::PubSub;
use super::topics::Topic;
use crate::identity::NodeId;
use crate::wire::messages::Gossip;

impl PubSub {
    pub(super) fn heartbeat(&mut self, now: Instant) {
        self.heartbeats += 1;
        self.stats.heartbeats += 1;
        self.scores.refresh(now);
        for topic in self.mesh.keys().cloned().collect::<Vec<Topic>>() {
            self.maintain_mesh(now, &topic);
        }
        self.maintain_fanout(now);
        self.emit_gossip(now);
        self.settle_promises(now);
        self.mcache.shift();
        self.seen.expire(now);
        self.backoff.retain(|_, until| *until > now);
        let ttl = self.config.dont_want_ttl;
        for p in self.peers.values_mut() {
            p.ihaves = 0;
            p.iwants_asked = 0;
            p.iwants_served = 0;
            p.mesh_changes = 0;
            p.dont_want.turn(now, ttl);
        }
        for peer in self.queued.iter().copied().collect::<Vec<_>>() {
            self.release(now, peer);
        }
    }

    fn maintain_mesh(&mut self, now: Instant, topic: &Topic) {
        let Some(mesh) = self.mesh.get(topic) else { return };
        let mut peers = mesh.peers.clone();
        let backoff = self.config.prune_backoff;

        // Negative scores leave, without peer exchange.
        let negative: Vec<NodeId> =
            peers.iter().copied().filter(|p| self.scores.score(now, p) < 0.0).collect();
        for p in negative {
            peers.remove(&p);
            self.scores.prune(now, p, topic);
            self.prune(now, p, topic, backoff, false);
        }

        // Too few: graft up to D.
        if peers.len() < self.config.d_low {
            let more =
                self.graft_candidates(now, topic, &peers, self.config.d - peers.len(), |_| true);
            for p in more {
                peers.insert(p);
                self.graft(now, p, topic);
            }
        }

        // Too many: keep the D_score best, then random up to D, keeping D_out outbound.
        if peers.len() > self.config.d_high {
            let keep = self.choose_survivors(now, &peers);
            let gone: Vec<NodeId> = peers.difference(&keep).copied().collect();
            for p in gone {
                self.scores.prune(now, p, topic);
                self.prune(now, p, topic, backoff, true);
            }
            peers = keep;
        }

        // Enough, but too few we dialled: graft outbound peers.
        let outbound = peers.iter().filter(|p| self.is_outbound(p)).count();
        if peers.len() >= self.config.d_low && outbound < self.config.d_out {
            let want = self.config.d_out - outbound;
            let more = self.graft_candidates(now, topic, &peers, want, |s| s.outbound);
            for p in more {
                peers.insert(p);
                self.graft(now, p, topic);
            }
        }

        // Opportunistic grafting: a mesh whose median score is low takes better peers.
        let ticks = u64::from(self.config.opportunistic_graft_ticks.max(1));
        if self.heartbeats.is_multiple_of(ticks) && peers.len() > 1 {
            let mut scores: Vec<f64> = peers.iter().map(|p| self.scores.score(now, p)).collect();
            scores.sort_by(f64::total_cmp);
            let median = scores[scores.len() / 2];
            if median < self.config.score.thresholds.opportunistic_graft {
                let n = self.config.opportunistic_graft_peers;
                let have = peers.clone();
                let more = self.pick(topic, n, |s, p| {
                    !have.contains(p)
                        && s.backoff_over(now, *p, topic)
                        && s.scores.score(now, p) > median
                });
                for p in more {
                    peers.insert(p);
                    self.graft(now, p, topic);
                }
            }
        }

        if let Some(m) = self.mesh.get_mut(topic) {
            m.peers = peers;
        }
    }

    fn is_outbound(&self, peer: &NodeId) -> bool {
        self.peers.get(peer).is_some_and(|s| s.outbound)
    }

    /// Of an oversubscribed mesh, the D peers that stay.
    fn choose_survivors(&mut self, now: Instant, peers: &BTreeSet<NodeId>) -> BTreeSet<NodeId> {
        let mut ranked: Vec<NodeId> = peers.iter().copied().collect();
        // Shuffle first so equal scores are ordered at random, then sort by score, best first.
        self.rng.shuffle(&mut ranked);
        ranked.sort_by(|a, b| self.scores.score(now, b).total_cmp(&self.scores.score(now, a)));
        let d = self.config.d;
        let mut keep: Vec<NodeId> = ranked.iter().take(self.config.d_score).copied().collect();
        let mut rest: Vec<NodeId> = ranked.iter().skip(self.config.d_score).copied().collect();
        self.rng.shuffle(&mut rest);
        keep.extend(rest.iter().take(d.saturating_sub(keep.len())).copied());
        // Make room for outbound peers the cut left out.
        let mut outbound = keep.iter().filter(|p| self.is_outbound(p)).count();
        if outbound < self.config.d_out {
            let extra: Vec<NodeId> = rest
                .iter()
                .skip(d.saturating_sub(self.config.d_score))
                .filter(|p| self.is_outbound(p))
                .copied()
                .collect();
            for p in extra {
                if outbound >= self.config.d_out {
                    break;
                }
                // Replace the last-kept inbound peer outside the D_score best.
                let victim = keep
                    .iter()
                    .enumerate()
                    .skip(self.config.d_score)
                    .rev()
                    .find(|(_, q)| !self.is_outbound(q))
                    .map(|(i, _)| i);
                let Some(i) = victim else { break };
                keep[i] = p;
                outbound += 1;
            }
        }
        keep.into_iter().collect()
    }

    fn maintain_fanout(&mut self, now: Instant) {
        let ttl = self.config.fanout_ttl;
        self.fanout.retain(|_, f| now.saturating_duration_since(f.last_publish) < ttl);
        let threshold = self.config.score.thresholds.publish;
        for topic in self.fanout.keys().cloned().collect::<Vec<Topic>>() {
            let Some(f) = self.fanout.get(&topic) else { continue };
            let mut peers = f.peers.clone();
            peers.retain(|p| {
                self.subs.is_subscribed(p, &topic) && self.scores.score(now, p) >= threshold
            });
            if peers.len() < self.config.d {
                let have = peers.clone();
                let more = self.pick(&topic, self.config.d - peers.len(), |s, p| {
                    !have.contains(p) && s.scores.score(now, p) >= threshold
                });
                peers.extend(more);
            }
            if let Some(f) = self.fanout.get_mut(&topic) {
                f.peers = peers;
            }
        }
    }

    /// IHAVE of the gossiped windows to D_lazy (or the gossip factor of) non-mesh peers of each
    /// topic, above the gossip threshold.
    fn emit_gossip(&mut self, now: Instant) {
        let threshold = self.config.score.thresholds.gossip;
        let topics: Vec<(Topic, BTreeSet<NodeId>)> = self
            .mesh
            .iter()
            .map(|(t, m)| (Arc::clone(t), m.peers.clone()))
            .chain(self.fanout.iter().map(|(t, f)| (Arc::clone(t), f.peers.clone())))
            .collect();
        for (topic, exclude) in topics {
            let ids = self.mcache.gossip_ids(&topic, self.config.max_ihave_length);
            if ids.is_empty() {
                continue;
            }
            let eligible = self
                .subs
                .subscribers(&topic)
                .filter(|p| !exclude.contains(p) && self.peers.contains_key(p))
                .count();
            let factor = (eligible as f64 * self.config.gossip_factor) as usize;
            let n = self.config.d_lazy.max(factor);
            let to = self.pick(&topic, n, |s, p| {
                !exclude.contains(p) && s.scores.score(now, p) >= threshold
            });
            for p in to {
                self.stats.ihave_sent += 1;
                let msg = Gossip::IHave { topic: topic.to_string(), ids: ids.clone() };
                self.send(now, p, Class::Control, msg);
            }
        }
    }

    /// IWANTs not answered by their deadline are broken promises: the peer is penalised once
    /// per broken promise, and the id may be asked of someone else.
    fn settle_promises(&mut self, now: Instant) {
        let mut broken: BTreeMap<NodeId, u32> = BTreeMap::new();
        self.promises.retain(|_, &mut (peer, deadline)| {
            if deadline <= now {
                *broken.entry(peer).or_default() += 1;
                return false;
            }
            true
        });
        for (peer, n) in broken {
            self.stats.broken_promises += u64::from(n);
            self.scores.penalize(peer, n);
            if let Some(p) = self.peers.get_mut(&peer) {
                p.promised = p.promised.saturating_sub(n as usize);
            }
        }
    }
}
