//! [`PubSub`]: the gossip protocol state machine behind the router's contract
//! ([`crate::protocol::Protocol`]): frames in, frames and jobs out, time as an argument.
//!
//! What happens to a `Publish` frame, in order (proto-spec messages.md §5):
//! 1. Ignored if the sender is graylisted, or the topic is not one we subscribe to (we relay
//!    only our own topics).
//! 2. Its id is computed (a hash of author and sequence number). Seen already: a duplicate,
//!    counted and scored, and nothing more; no signature work is spent on it.
//! 3. Otherwise it waits for its check ([`super::validation`]), batched onto the worker pool.
//!    A copy with other signature bytes is kept as the alternate (a forged copy cannot
//!    suppress the genuine one).
//! 4. Verified (and accepted by the topic's validator, if any): marked seen, cached for IWANT,
//!    delivered to the application, announced with IDONTWANT to the mesh if large, and
//!    forwarded to the mesh, skipping peers that sent it or said IDONTWANT. Failed: the sender
//!    is scored down, the alternate (if any) is checked next.
//!
//! Mesh upkeep (grafting, pruning, fanout, IHAVE, promises, score decay) runs in the heartbeat
//! (`heartbeat`). Sends go through each peer's [`Outbound`] queue when its connection
//! is congested, straight out otherwise.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::api::{
    Delivery, GossipCommand, GossipError, GossipEvent, GossipReply, GossipStats, Published,
};
use super::cache::{MessageCache, SeenCache};
use super::config::GossipConfig;
use super::dont_want::DontWant;
use super::outbound::{wire_bytes, Class, Outbound, Pushed};
use super::score::Scores;
use super::stagger::Stagger;
use super::topics::{Subscriptions, Topic};
use super::validation::{Offered, Pending, Validation};
use crate::identity::NodeId;
use crate::protocol::{
    Action, CommandId, Direction, Job, JobKey, JobResult, Kind, Peer, Protocol, RequestFailure,
    RequestKey, Verdict,
};
use crate::rng::Rng;
use crate::wire::messages::{
    Gossip, GossipMessage, MessageId, PeerInfo, Request, Response, FEATURE_GOSSIP,
    MAX_PAYLOAD_BYTES, MAX_TOPIC_BYTES,
};

/// Bytes sent straight to one peer per input before the rest waits in its queue: the frames
/// of one input reach the transport together, so this keeps one burst well inside the
/// connection's write queue (at least one frame always goes).
pub const MAX_BURST_BYTES: usize = 256 * 1024;

/// Most messages the cache holds, whatever the rate: 5 heartbeat windows of a topic carrying
/// 13,000 messages a second, far beyond any real one. Past it the oldest go early (counted).
pub const MAX_CACHED_MESSAGES: usize = 1 << 16;

/// IWANT requests in flight, all peers together.
pub const MAX_PROMISES: usize = 1 << 14;

/// A connected peer that speaks gossip.
#[derive(Debug)]
pub(super) struct PeerState {
    pub(super) addr: SocketAddr,
    /// We dialled it (counts toward D_out).
    pub(super) outbound: bool,
    /// Its connection's write queue is above its high-water mark.
    pub(super) congested: bool,
    pub(super) queue: Outbound,
    /// Bytes sent straight out during input number `burst_epoch`.
    burst: usize,
    burst_epoch: u64,
    /// Ids it said IDONTWANT for, while a forward to it may still be decided.
    pub(super) dont_want: DontWant,
    /// IHAVE frames taken and ids asked of it this heartbeat.
    pub(super) ihaves: usize,
    pub(super) iwants_asked: usize,
    /// Ids served to it through IWANT this heartbeat.
    pub(super) iwants_served: usize,
    /// Ids it announced, we asked for, and it has not delivered yet.
    pub(super) promised: usize,
    /// GRAFT and PRUNE frames taken from it this heartbeat.
    pub(super) mesh_changes: usize,
}

/// Our mesh in a topic we subscribe to.
#[derive(Debug, Default)]
pub(super) struct Mesh {
    pub(super) peers: BTreeSet<NodeId>,
}

/// Peers we send our messages of a topic we publish to without subscribing.
#[derive(Debug)]
pub(super) struct Fanout {
    pub(super) peers: BTreeSet<NodeId>,
    pub(super) last_publish: Instant,
}

/// The gossip protocol. See the module doc.
#[derive(Debug)]
pub struct PubSub {
    pub(super) local: NodeId,
    pub(super) config: GossipConfig,
    pub(super) rng: Rng,
    pub(super) peers: BTreeMap<NodeId, PeerState>,
    pub(super) subs: Subscriptions,
    pub(super) mesh: BTreeMap<Topic, Mesh>,
    pub(super) fanout: BTreeMap<Topic, Fanout>,
    /// (peer, topic) → until when we may not GRAFT it (after its PRUNE), or it may not GRAFT
    /// us (after ours). Bounded: see [`PubSub::set_backoff`].
    pub(super) backoff: BTreeMap<(NodeId, Topic), Instant>,
    pub(super) seen: SeenCache,
    pub(super) mcache: MessageCache,
    pub(super) validation: Validation,
    /// IWANT in flight: id → (asked peer, deadline).
    pub(super) promises: HashMap<MessageId, (NodeId, Instant)>,
    pub(super) scores: Scores,
    /// Topics whose messages the application's validator judges (at most `max_topics`).
    pub(super) validated: BTreeSet<String>,
    /// Peers with frames waiting in their queue.
    pub(super) queued: BTreeSet<NodeId>,
    /// Large messages' forwards held back (`stagger`).
    pub(super) stagger: Stagger,
    pub(super) outputs: VecDeque<Action<GossipReply, GossipEvent>>,
    pub(super) next_heartbeat: Option<Instant>,
    pub(super) heartbeats: u64,
    /// Counts inputs, so a peer's burst allowance renews with each.
    epoch: u64,
    pub(super) stats: GossipStats,
}

impl PubSub {
    /// A protocol instance for the node `local`.
    pub fn new(local: NodeId, config: GossipConfig) -> PubSub {
        PubSub {
            local,
            rng: Rng::new(config.rng_seed),
            peers: BTreeMap::new(),
            subs: Subscriptions::new(config.max_topics_per_peer, config.max_known_topics),
            mesh: BTreeMap::new(),
            fanout: BTreeMap::new(),
            backoff: BTreeMap::new(),
            seen: SeenCache::new(config.seen_ttl, config.max_seen),
            mcache: MessageCache::new(
                config.history_length,
                config.history_gossip,
                MAX_CACHED_MESSAGES,
            ),
            validation: Validation::default(),
            promises: HashMap::new(),
            scores: Scores::new(config.score.clone()),
            validated: BTreeSet::new(),
            queued: BTreeSet::new(),
            stagger: Stagger::default(),
            outputs: VecDeque::new(),
            next_heartbeat: None,
            heartbeats: 0,
            epoch: 0,
            stats: GossipStats::default(),
            config,
        }
    }

    /// Counters, with the gauges filled in.
    pub fn stats(&self) -> GossipStats {
        GossipStats {
            peers: self.peers.len() as u64,
            mesh_peers: self.mesh.values().map(|m| m.peers.len() as u64).sum(),
            topics: self.mesh.len() as u64,
            cached_messages: self.mcache.len() as u64,
            cached_bytes: self.mcache.bytes() as u64,
            seen_ids: self.seen.len() as u64,
            pending_checks: self.validation.len() as u64,
            staggered_held: self.stagger.len() as u64,
            dont_want_ids: self.peers.values().map(|p| p.dont_want.len() as u64).sum(),
            queued_bytes: self.peers.values().map(|p| p.queue.bytes() as u64).sum(),
            ..self.stats
        }
    }

    /// The peer scores.
    pub fn scores(&self) -> &Scores {
        &self.scores
    }

    /// Our mesh peers in `topic`.
    pub fn mesh_peers(&self, topic: &str) -> Vec<NodeId> {
        self.mesh.get(topic).map(|m| m.peers.iter().copied().collect()).unwrap_or_default()
    }

    /// Whether we subscribe to `topic`.
    pub fn is_subscribed(&self, topic: &str) -> bool {
        self.mesh.contains_key(topic)
    }

    /// How many more subscribers of `topic` it takes to fill our mesh to D, for topic
    /// discovery to dial: none while the mesh has D_low peers or more; else D less the mesh
    /// and the connected subscribers the heartbeat could graft (no backoff, score at least
    /// zero). So a node whose connections already bring enough subscribers dials nobody, and
    /// one that lacks two dials two, not a search's worth: every connection costs both ends
    /// memory and keepalives, and a flood publish reaches every subscribed connection.
    pub fn peers_wanted(&self, now: Instant, topic: &str) -> usize {
        let Some((t, m)) = self.mesh.get_key_value(topic) else { return 0 };
        if m.peers.len() >= self.config.d_low {
            return 0;
        }
        let graftable = self
            .subs
            .subscribers(topic)
            .filter(|p| self.peers.contains_key(p) && self.graftable(now, t, &m.peers, p))
            .count();
        self.config.d.saturating_sub(m.peers.len() + graftable)
    }

    /// The topics we subscribe to.
    pub fn topics(&self) -> Vec<String> {
        self.mesh.keys().map(|t| t.to_string()).collect()
    }

    /// An application command.
    pub fn handle_command(&mut self, now: Instant, command: CommandId, cmd: GossipCommand) {
        self.begin(now);
        let reply = match cmd {
            GossipCommand::Subscribe(topic) => GossipReply::Subscribed(self.subscribe(now, &topic)),
            GossipCommand::Unsubscribe(topic) => {
                GossipReply::Unsubscribed(self.unsubscribe(now, &topic))
            }
            GossipCommand::Publish(msg) => GossipReply::Published(self.publish(now, msg)),
            GossipCommand::SetValidated { topic, on } => {
                if !on {
                    self.validated.remove(topic.as_str());
                } else if self.validated.len() < self.config.max_topics {
                    self.validated.insert(topic);
                }
                GossipReply::ValidatedSet
            }
            GossipCommand::Meshes => GossipReply::Meshes(
                self.mesh.iter().map(|(t, m)| (t.to_string(), m.peers.len())).collect(),
            ),
        };
        self.outputs.push_back(Action::Reply { command, reply });
    }

    // ---- Commands ----

    fn subscribe(&mut self, now: Instant, topic: &str) -> Result<(), GossipError> {
        check_topic(topic)?;
        if self.mesh.contains_key(topic) {
            return Ok(());
        }
        if self.mesh.len() >= self.config.max_topics {
            return Err(GossipError::TooManyTopics);
        }
        let name: Topic = self.subs.name(topic).unwrap_or_else(|| topic.into());
        // Fanout peers make a ready start of the mesh (GossipSub v1.1, JOIN).
        let mut mesh = Mesh::default();
        if let Some(f) = self.fanout.remove(topic) {
            mesh.peers = f.peers;
        }
        let want = self.config.d.saturating_sub(mesh.peers.len());
        let more = self.graft_candidates(now, &name, &mesh.peers, want, |_| true);
        mesh.peers.extend(more);
        let grafted: Vec<NodeId> = mesh.peers.iter().copied().collect();
        self.mesh.insert(Arc::clone(&name), mesh);
        for p in self.peers.keys().copied().collect::<Vec<_>>() {
            self.send(now, p, Class::Control, Gossip::Subscribe { topic: topic.to_string() });
        }
        for p in grafted {
            self.graft(now, p, &name);
        }
        Ok(())
    }

    fn unsubscribe(&mut self, now: Instant, topic: &str) -> bool {
        let Some((name, mesh)) = self.mesh.remove_entry(topic) else { return false };
        let backoff = self.config.unsubscribe_backoff;
        for p in mesh.peers {
            self.scores.prune(now, p, &name);
            self.prune(now, p, &name, backoff, false);
        }
        for p in self.peers.keys().copied().collect::<Vec<_>>() {
            self.send(now, p, Class::Control, Gossip::Unsubscribe { topic: topic.to_string() });
        }
        true
    }

    fn publish(&mut self, now: Instant, msg: GossipMessage) -> Result<Published, GossipError> {
        check_topic(&msg.topic)?;
        if msg.payload.len() > MAX_PAYLOAD_BYTES {
            return Err(GossipError::TooLarge);
        }
        let id = msg.id();
        if self.seen.contains(&id) || self.validation.contains(&id) {
            return Err(GossipError::Duplicate);
        }
        let topic: Topic = match self.mesh.get_key_value(msg.topic.as_str()) {
            Some((t, _)) => Arc::clone(t),
            None => self.subs.name(&msg.topic).unwrap_or_else(|| msg.topic.as_str().into()),
        };
        let threshold = self.config.score.thresholds.publish;
        let mut to: BTreeSet<NodeId> = if self.config.flood_publish {
            let subscribers: Vec<NodeId> = self.subs.subscribers(&topic).collect();
            subscribers.into_iter().filter(|p| self.scores.score(now, p) >= threshold).collect()
        } else if let Some(m) = self.mesh.get(&topic) {
            m.peers.clone()
        } else {
            self.fanout_peers(now, &topic)
        };
        if !self.mesh.contains_key(&topic) {
            // Keep the fanout fresh even when flooding, so its TTL tracks our publishing.
            let peers = self.fanout_peers(now, &topic);
            to.extend(peers);
        }
        self.seen.insert(now, id);
        let msg = Arc::new(msg);
        self.mcache.put(id, Arc::clone(&msg));
        self.stats.published += 1;
        for &p in &to {
            self.send(now, p, Class::Publish, Gossip::Publish((*msg).clone()));
        }
        Ok(Published { id, peers: to.len() })
    }

    /// The fanout of a topic we do not subscribe to, topped up to D and stamped used now.
    fn fanout_peers(&mut self, now: Instant, topic: &Topic) -> BTreeSet<NodeId> {
        let threshold = self.config.score.thresholds.publish;
        let mut f = self
            .fanout
            .remove(topic)
            .unwrap_or(Fanout { peers: BTreeSet::new(), last_publish: now });
        f.last_publish = now;
        if f.peers.len() < self.config.d {
            let want = self.config.d - f.peers.len();
            let have = f.peers.clone();
            let more = self
                .pick(topic, want, |s, p| !have.contains(p) && s.scores.score(now, p) >= threshold);
            f.peers.extend(more);
        }
        let peers = f.peers.clone();
        if self.fanout.len() < self.config.max_topics || self.fanout.contains_key(topic) {
            self.fanout.insert(Arc::clone(topic), f);
        }
        peers
    }

    // ---- Frames ----

    fn on_frame(&mut self, now: Instant, from: NodeId, msg: Gossip) {
        let score = self.scores.score(now, &from);
        if !self.peers.contains_key(&from) || score < self.config.score.thresholds.graylist {
            self.stats.ignored_frames += 1;
            return;
        }
        match msg {
            Gossip::Subscribe { topic } => match self.subs.subscribe(from, &topic) {
                Ok(_) => {}
                Err(_) => self.stats.subscriptions_refused += 1,
            },
            Gossip::Unsubscribe { topic } => {
                self.subs.unsubscribe(from, &topic);
                self.leave_mesh(now, from, &topic);
                if let Some(f) = self.fanout.get_mut(topic.as_str()) {
                    f.peers.remove(&from);
                }
            }
            Gossip::Publish(m) => self.on_message(now, from, m),
            Gossip::IHave { topic, ids } => self.on_ihave(now, from, score, &topic, ids),
            Gossip::IWant { ids } => self.on_iwant(now, from, score, ids),
            Gossip::Graft { .. } | Gossip::Prune { .. } if !self.take_mesh_change(from) => {
                self.stats.ignored_frames += 1;
            }
            Gossip::Graft { topic } => self.on_graft(now, from, score, &topic),
            Gossip::Prune { topic, backoff_secs, peers } => {
                self.on_prune(now, from, score, &topic, backoff_secs, peers)
            }
            Gossip::IDontWant { ids } => self.on_idontwant(now, from, ids),
        }
    }

    /// Counts a GRAFT or PRUNE of `from` against its allowance for this heartbeat.
    fn take_mesh_change(&mut self, from: NodeId) -> bool {
        let cap = self.config.max_graft_prune_per_heartbeat;
        let Some(p) = self.peers.get_mut(&from) else { return false };
        p.mesh_changes += 1;
        p.mesh_changes <= cap
    }

    fn on_message(&mut self, now: Instant, from: NodeId, msg: GossipMessage) {
        self.stats.received += 1;
        let Some((topic, _)) = self.mesh.get_key_value(msg.topic.as_str()) else {
            self.stats.unsubscribed_topic += 1;
            return;
        };
        let topic = Arc::clone(topic);
        let id = msg.id();
        if let Some((promised_by, _)) = self.promises.remove(&id) {
            if let Some(p) = self.peers.get_mut(&promised_by) {
                p.promised = p.promised.saturating_sub(1);
            }
        }
        if let Some(first) = self.seen.first_seen(&id) {
            self.stats.duplicates += 1;
            if self.stagger.had(&id, &from) {
                self.stats.staggered_cancelled += 1;
            }
            if now.saturating_duration_since(first) <= self.config.score.mesh_delivery_window {
                self.scores.near_first_delivery(now, from, &topic);
            }
            return;
        }
        let size = msg.payload.len();
        let author = NodeId::from_public_key(&msg.author.0);
        let score = self.scores.score(now, &from);
        let offered = self.validation.offer(
            now,
            id,
            Arc::new(msg),
            Arc::clone(&topic),
            from,
            self.config.max_pending_per_topic,
            self.config.max_pending_bytes,
        );
        match offered {
            Offered::Queued => {
                self.announce_dont_want(now, from, author, score, id, size, &topic);
                self.start_checks(now);
            }
            Offered::Duplicate => self.stats.duplicates += 1,
            Offered::Alternate | Offered::Dropped => self.stats.alternates += 1,
            Offered::Full => self.stats.validation_dropped += 1,
        }
    }

    /// IDONTWANT to our other mesh peers on the first receipt of a large message, before its
    /// check (GossipSub v1.2): they are checking their own copies meanwhile, and one that hears
    /// this first does not forward us another. Sent only for copies from peers scored zero or
    /// more, since a forged copy makes peers withhold the genuine one from us for
    /// `dont_want_ttl` (we still get it as the alternate, by IWANT, which IDONTWANT does not
    /// cover, or from peers that forwarded first; messages.md §5.3).
    #[allow(clippy::too_many_arguments)]
    fn announce_dont_want(
        &mut self,
        now: Instant,
        from: NodeId,
        author: NodeId,
        score: f64,
        id: MessageId,
        size: usize,
        topic: &Topic,
    ) {
        if size < self.config.idontwant_min_bytes || score < 0.0 {
            return;
        }
        let Some(mesh) = self.mesh.get(topic) else { return };
        let to: Vec<NodeId> =
            mesh.peers.iter().filter(|q| **q != from && **q != author).copied().collect();
        for q in to {
            self.stats.idontwant_sent += 1;
            self.send(now, q, Class::Control, Gossip::IDontWant { ids: vec![id] });
        }
    }

    fn start_checks(&mut self, now: Instant) {
        let deadline = now + self.config.validation_timeout;
        while let Some((key, msgs)) = self.validation.next_batch(
            self.config.verify_batch,
            self.config.max_verify_jobs,
            deadline,
        ) {
            let validated: Vec<bool> =
                msgs.iter().map(|m| self.validated.contains(m.topic.as_str())).collect();
            self.stats.check_jobs += 1;
            let job = Job::CheckMessages { messages: msgs, validate: validated };
            self.outputs.push_back(Action::Job { key: JobKey(key), job });
        }
    }

    fn on_checked(
        &mut self,
        now: Instant,
        done: Vec<(MessageId, Pending)>,
        verdicts: Vec<Verdict>,
    ) {
        for (i, (id, p)) in done.into_iter().enumerate() {
            match verdicts.get(i).copied() {
                Some(Verdict::Accept) => self.accept(now, id, p),
                // The signature verified and the validator said no: the message is genuine, so
                // its id is seen (another copy costs nothing); a Reject also costs the sender.
                Some(Verdict::Ignore) => {
                    self.stats.ignored += 1;
                    self.seen.insert(now, id);
                }
                Some(Verdict::Reject) => {
                    self.stats.rejected += 1;
                    self.scores.invalid(p.from, &p.topic);
                    self.seen.insert(now, id);
                }
                // A forgery: not seen, so the genuine copy (the alternate, if one came) is
                // checked next.
                Some(Verdict::BadSignature) => {
                    self.stats.invalid_signature += 1;
                    self.scores.invalid(p.from, &p.topic);
                    self.validation.retry_alternate(id, p);
                }
                // Not checked (refused, lost, or too slow): a later copy is checked anew.
                None => self.stats.ignored += 1,
            }
        }
        self.start_checks(now);
    }

    fn accept(&mut self, now: Instant, id: MessageId, p: Pending) {
        self.seen.insert(now, id);
        self.mcache.put(id, Arc::clone(&p.msg));
        self.stats.delivered += 1;
        self.scores.first_delivery(now, p.from, &p.topic);
        for &also in &p.also_from {
            self.scores.near_first_delivery(now, also, &p.topic);
        }
        let Some(mesh) = self.mesh.get(&p.topic) else { return };
        // Who has it: the senders of its copies, and its author's node (a node publishes with
        // its own key, so the author's id is the node's, and it has its own message).
        let author = NodeId::from_public_key(&p.msg.author.0);
        let had: BTreeSet<NodeId> =
            [p.from, author].into_iter().chain(p.also_from.iter().copied()).collect();
        let mut targets: Vec<NodeId> =
            mesh.peers.iter().filter(|q| !had.contains(q)).copied().collect();
        let ttl = self.config.dont_want_ttl;
        targets.retain(|q| {
            let refuses = self.peers.get_mut(q).is_some_and(|s| s.refuses(now, ttl, &id));
            self.stats.idontwant_honoured += u64::from(refuses);
            !refuses
        });
        let c = &self.config;
        if p.msg.payload.len() >= c.stagger_min_bytes
            && !c.stagger_delay.is_zero()
            && targets.len() > c.eager_forwards
        {
            self.rng.shuffle(&mut targets);
            let later = targets.split_off(c.eager_forwards);
            let (due, max) = (now + c.stagger_delay, c.max_staggered);
            let held = later.len() as u64;
            match self.stagger.hold(due, id, Arc::clone(&p.msg), later, max) {
                Ok(()) => self.stats.staggered += held,
                Err(later) => {
                    self.stats.staggered_full += 1;
                    targets.extend(later);
                }
            }
        }
        for q in targets {
            self.forward(now, q, &p.msg);
        }
        let event = GossipEvent::Message(Delivery { from: p.from, id, message: p.msg });
        self.outputs.push_back(Action::Event(event));
    }

    fn forward(&mut self, now: Instant, to: NodeId, msg: &GossipMessage) {
        self.stats.forwarded += 1;
        self.send(now, to, Class::Forward, Gossip::Publish(msg.clone()));
    }

    /// Sends the held forwards that are due to the peers that still need them: still in the
    /// topic's mesh, and no IDONTWANT from them (copies they sent were struck off when they
    /// came).
    fn release_staggered(&mut self, now: Instant) {
        let ttl = self.config.dont_want_ttl;
        while let Some((id, held)) = self.stagger.pop_due(now) {
            let topic = held.msg.topic.as_str();
            for q in held.to {
                let in_mesh = self.mesh.get(topic).is_some_and(|m| m.peers.contains(&q));
                if !in_mesh || self.peers.get_mut(&q).is_none_or(|s| s.refuses(now, ttl, &id)) {
                    self.stats.staggered_cancelled += 1;
                    continue;
                }
                self.forward(now, q, &held.msg);
            }
        }
    }

    fn on_ihave(
        &mut self,
        now: Instant,
        from: NodeId,
        score: f64,
        topic: &str,
        ids: Vec<MessageId>,
    ) {
        self.stats.ihave_received += 1;
        let max_frames = self.config.max_ihave_messages;
        let max_ask = self.config.max_iwant_per_heartbeat;
        let Some(p) = self.peers.get_mut(&from) else { return };
        p.ihaves += 1;
        if score < self.config.score.thresholds.gossip
            || p.ihaves > max_frames
            || !self.mesh.contains_key(topic)
        {
            self.stats.ignored_frames += 1;
            return;
        }
        let room = max_ask
            .saturating_sub(p.iwants_asked)
            .min(self.config.max_promises_per_peer.saturating_sub(p.promised));
        let deadline = now + self.config.iwant_followup;
        let mut want = Vec::new();
        for id in ids {
            if want.len() >= room || self.promises.len() >= MAX_PROMISES {
                break;
            }
            if self.seen.contains(&id)
                || self.validation.contains(&id)
                || self.promises.contains_key(&id)
            {
                continue;
            }
            self.promises.insert(id, (from, deadline));
            want.push(id);
        }
        if want.is_empty() {
            return;
        }
        if let Some(p) = self.peers.get_mut(&from) {
            p.iwants_asked += want.len();
            p.promised += want.len();
        }
        self.stats.iwant_sent += 1;
        self.send(now, from, Class::Control, Gossip::IWant { ids: want });
    }

    fn on_iwant(&mut self, now: Instant, from: NodeId, score: f64, ids: Vec<MessageId>) {
        self.stats.iwant_received += 1;
        if score < self.config.score.thresholds.gossip {
            self.stats.ignored_frames += 1;
            return;
        }
        let cap = self.config.max_iwant_per_heartbeat;
        for id in ids {
            let Some(p) = self.peers.get_mut(&from) else { return };
            if p.iwants_served >= cap {
                self.stats.ignored_frames += 1;
                return;
            }
            let Some(msg) = self.mcache.serve(&id, from, self.config.gossip_retransmission) else {
                continue;
            };
            // An IWANT overrides an earlier IDONTWANT: the peer's copy may have been forged.
            p.iwants_served += 1;
            self.stats.iwant_served += 1;
            self.send(now, from, Class::Gossip, Gossip::Publish((*msg).clone()));
        }
    }

    fn on_graft(&mut self, now: Instant, from: NodeId, score: f64, topic: &str) {
        let Some((name, mesh)) = self.mesh.get_key_value(topic) else {
            // Not our topic: tell it so, without peer exchange.
            self.stats.grafts_refused += 1;
            let name: Topic = topic.into();
            self.prune(now, from, &name, self.config.prune_backoff, false);
            return;
        };
        if mesh.peers.contains(&from) {
            return;
        }
        let name = Arc::clone(name);
        if let Some(&until) = self.backoff.get(&(from, Arc::clone(&name))) {
            if now < until {
                // GRAFT during backoff: penalised, twice if right after our PRUNE (a flood).
                let pruned_at = until.checked_sub(self.config.prune_backoff).unwrap_or(now);
                let flood = now < pruned_at + self.config.graft_flood_threshold;
                self.scores.penalize(from, if flood { 2 } else { 1 });
                self.stats.grafts_refused += 1;
                self.prune(now, from, &name, self.config.prune_backoff, false);
                return;
            }
        }
        if score < 0.0 {
            self.stats.grafts_refused += 1;
            self.prune(now, from, &name, self.config.prune_backoff, false);
            return;
        }
        // A GRAFT says the peer is in the topic, whether or not its SUBSCRIBE reached us.
        if self.subs.subscribe(from, &name).is_err() {
            self.stats.subscriptions_refused += 1;
            self.stats.grafts_refused += 1;
            self.prune(now, from, &name, self.config.prune_backoff, false);
            return;
        }
        if let Some(m) = self.mesh.get_mut(&name) {
            m.peers.insert(from);
        }
        self.scores.graft(now, from, &name);
    }

    fn on_prune(
        &mut self,
        now: Instant,
        from: NodeId,
        score: f64,
        topic: &str,
        backoff_secs: u32,
        px: Vec<PeerInfo>,
    ) {
        let Some((name, _)) = self.mesh.get_key_value(topic) else { return };
        let name = Arc::clone(name);
        self.leave_mesh(now, from, &name);
        // Observe the peer's backoff, at least ours, at most an hour.
        let asked = Duration::from_secs(u64::from(backoff_secs).min(3_600));
        self.set_backoff(from, &name, now + asked.max(self.config.prune_backoff));
        if score < self.config.score.thresholds.accept_px {
            return;
        }
        let mut dialled = 0;
        for info in px {
            if dialled >= self.config.px_dials {
                break;
            }
            if info.id == self.local || self.peers.contains_key(&info.id) || info.addrs.is_empty() {
                continue;
            }
            dialled += 1;
            self.stats.px_dials += 1;
            // A PING dials it; TLS proves the id. Once connected it hears our subscriptions and
            // the heartbeat may graft it.
            let request = Request::Ping;
            self.outputs.push_back(Action::Request { to: info, request, key: RequestKey(0) });
        }
    }

    /// A peer has these messages: its queued copies are cancelled, and the ids are kept
    /// (for `dont_want_ttl`) only while a forward to it may still be decided: a message still
    /// unseen or being checked, or one whose forwards are held. For one we have accepted and
    /// forwarded already, or judged, nothing is left to cancel, so nothing is kept.
    fn on_idontwant(&mut self, now: Instant, from: NodeId, ids: Vec<MessageId>) {
        self.stats.idontwant_received += 1;
        let (ttl, cap) = (self.config.dont_want_ttl, self.config.max_dont_want_per_peer);
        let Some(p) = self.peers.get_mut(&from) else { return };
        for id in ids.into_iter().take(cap) {
            let cancelled = p.queue.cancel(&id);
            self.stats.idontwant_honoured += cancelled as u64;
            if self.seen.contains(&id) && !self.stagger.holds(&id) {
                self.stats.idontwant_settled += 1;
            } else if p.dont_want.insert(now, ttl, &id, cap) {
                self.stats.idontwant_kept += 1;
            } else {
                self.stats.idontwant_over_cap += 1;
            }
        }
    }

    /// `peer` left our mesh of `topic` (it pruned us, unsubscribed or went away).
    fn leave_mesh(&mut self, now: Instant, peer: NodeId, topic: &str) {
        if let Some(m) = self.mesh.get_mut(topic) {
            if m.peers.remove(&peer) {
                self.scores.prune(now, peer, topic);
            }
        }
    }

    // ---- Mesh changes and sends (shared with the heartbeat) ----

    /// Adds nothing: tells `peer` it is in our mesh of `topic` (the caller added it).
    pub(super) fn graft(&mut self, now: Instant, peer: NodeId, topic: &Topic) {
        self.scores.graft(now, peer, topic);
        self.stats.grafts_sent += 1;
        self.send(now, peer, Class::Control, Gossip::Graft { topic: topic.to_string() });
    }

    /// Tells `peer` it is out of our mesh of `topic` (the caller removed it), with peer
    /// exchange if `px`, and keeps it out for `backoff`.
    pub(super) fn prune(
        &mut self,
        now: Instant,
        peer: NodeId,
        topic: &Topic,
        backoff: Duration,
        px: bool,
    ) {
        self.set_backoff(peer, topic, now + backoff);
        let peers = if px { self.px_peers(now, topic, peer) } else { Vec::new() };
        self.stats.prunes_sent += 1;
        let backoff_secs = u32::try_from(backoff.as_secs()).unwrap_or(u32::MAX);
        let msg = Gossip::Prune { topic: topic.to_string(), backoff_secs, peers };
        self.send(now, peer, Class::Control, msg);
    }

    /// Peers to offer `to` when pruning it: well-scored subscribers of the topic, at the
    /// address of their connection when we dialled it (the only address we know works).
    fn px_peers(&mut self, now: Instant, topic: &Topic, to: NodeId) -> Vec<PeerInfo> {
        let n = self.config.px_peers;
        let picked = self.pick(topic, n, |s, p| *p != to && s.scores.score(now, p) >= 0.0);
        picked
            .into_iter()
            .filter_map(|p| {
                let state = self.peers.get(&p)?;
                state.outbound.then(|| PeerInfo { id: p, addrs: vec![state.addr] })
            })
            .collect()
    }

    /// Records a backoff; when the table is full (peers times topics, doubled), the backoff
    /// ending soonest goes first.
    pub(super) fn set_backoff(&mut self, peer: NodeId, topic: &Topic, until: Instant) {
        let cap = (self.peers.len().max(64)) * self.config.max_topics.max(1) * 2;
        let key = (peer, Arc::clone(topic));
        if !self.backoff.contains_key(&key) && self.backoff.len() >= cap {
            let soonest = self.backoff.iter().min_by_key(|(_, &t)| t).map(|(k, _)| k.clone());
            if let Some(k) = soonest {
                self.backoff.remove(&k);
            }
        }
        let at = self.backoff.entry(key).or_insert(until);
        *at = (*at).max(until);
    }

    /// Whether `peer` may be grafted into `topic` now (no backoff running).
    pub(super) fn backoff_over(&self, now: Instant, peer: NodeId, topic: &Topic) -> bool {
        self.backoff.get(&(peer, Arc::clone(topic))).is_none_or(|&until| until <= now)
    }

    /// Up to `n` peers subscribed to `topic` and connected, chosen at random among those
    /// `keep` accepts.
    pub(super) fn pick(
        &mut self,
        topic: &str,
        n: usize,
        keep: impl Fn(&PubSub, &NodeId) -> bool,
    ) -> Vec<NodeId> {
        if n == 0 {
            return Vec::new();
        }
        let mut candidates: Vec<NodeId> = self
            .subs
            .subscribers(topic)
            .filter(|p| self.peers.contains_key(p) && keep(self, p))
            .collect();
        self.rng.shuffle(&mut candidates);
        candidates.truncate(n);
        candidates
    }

    /// Peers to graft into `topic`: not in `mesh`, no backoff, score at least zero, and
    /// accepted by `extra`.
    pub(super) fn graft_candidates(
        &mut self,
        now: Instant,
        topic: &Topic,
        mesh: &BTreeSet<NodeId>,
        n: usize,
        extra: impl Fn(&PeerState) -> bool,
    ) -> Vec<NodeId> {
        self.pick(topic, n, |s, p| {
            s.graftable(now, topic, mesh, p) && s.peers.get(p).is_some_and(&extra)
        })
    }

    /// Whether the heartbeat may graft `p` into `topic`'s `mesh`: not in it, no backoff, score
    /// at least zero. Topic discovery counts the same peers (`peers_wanted`).
    fn graftable(&self, now: Instant, topic: &Topic, mesh: &BTreeSet<NodeId>, p: &NodeId) -> bool {
        !mesh.contains(p) && self.backoff_over(now, *p, topic) && self.scores.score(now, p) >= 0.0
    }

    /// Sends `msg` to `to`: straight out if its connection has room, else through its queue.
    pub(super) fn send(&mut self, now: Instant, to: NodeId, class: Class, msg: Gossip) {
        let epoch = self.epoch;
        let Some(p) = self.peers.get_mut(&to) else { return };
        if p.burst_epoch != epoch {
            p.burst_epoch = epoch;
            p.burst = 0;
        }
        let bytes = wire_bytes(&msg);
        if !p.congested
            && p.queue.is_empty()
            && (p.burst == 0 || p.burst + bytes <= MAX_BURST_BYTES)
        {
            p.burst += bytes;
            self.outputs.push_back(Action::Send { to, msg });
            return;
        }
        let (max, deadline) = (self.config.max_queue_bytes, self.config.forward_deadline);
        match p.queue.push(now, class, msg, bytes, max, deadline) {
            Pushed::Queued { dropped } => {
                self.stats.queued_sends += 1;
                self.stats.dropped_sends += dropped as u64;
                self.queued.insert(to);
            }
            Pushed::Refused => self.stats.dropped_sends += 1,
        }
    }

    /// Sends what waits in `peer`'s queue, up to one burst, unless it is congested.
    pub(super) fn release(&mut self, now: Instant, peer: NodeId) {
        let epoch = self.epoch;
        let Some(p) = self.peers.get_mut(&peer) else {
            self.queued.remove(&peer);
            return;
        };
        if p.burst_epoch != epoch {
            p.burst_epoch = epoch;
            p.burst = 0;
        }
        while !p.congested && (p.burst == 0 || p.burst < MAX_BURST_BYTES) {
            let Some(msg) = p.queue.pop(now, &mut self.stats.expired_forwards) else { break };
            p.burst += wire_bytes(&msg);
            self.outputs.push_back(Action::Send { to: peer, msg });
        }
        if p.queue.is_empty() {
            self.queued.remove(&peer);
        }
    }

    /// Whether a heartbeat has anything to do: a mesh or fanout to keep, caches to age,
    /// promises to settle, queues to serve.
    fn has_work(&self) -> bool {
        !self.mesh.is_empty()
            || !self.fanout.is_empty()
            || !self.mcache.is_empty()
            || !self.seen.is_empty()
            || !self.promises.is_empty()
            || !self.queued.is_empty()
    }

    /// Every input starts here: the heartbeat clock starts with the first, burst allowances
    /// renew, and queues of peers with room are served.
    fn begin(&mut self, now: Instant) {
        self.epoch += 1;
        // Idle, the heartbeat stops; the first input after restarts its clock.
        if self.next_heartbeat.is_none_or(|at| at <= now && !self.has_work()) {
            self.next_heartbeat = Some(now + self.config.heartbeat);
        }
        if !self.queued.is_empty() {
            for peer in self.queued.iter().copied().collect::<Vec<_>>() {
                self.release(now, peer);
            }
        }
    }
}

impl PeerState {
    fn new(addr: SocketAddr, outbound: bool) -> PeerState {
        PeerState {
            addr,
            outbound,
            congested: false,
            queue: Outbound::default(),
            burst: 0,
            burst_epoch: 0,
            dont_want: DontWant::default(),
            ihaves: 0,
            iwants_asked: 0,
            iwants_served: 0,
            promised: 0,
            mesh_changes: 0,
        }
    }

    /// Whether it said IDONTWANT for `id` and that is still in force (`ttl`: the config's
    /// `dont_want_ttl`).
    pub(super) fn refuses(&mut self, now: Instant, ttl: Duration, id: &MessageId) -> bool {
        self.dont_want.contains(now, ttl, id)
    }
}

fn check_topic(topic: &str) -> Result<(), GossipError> {
    if topic.is_empty() || topic.len() > MAX_TOPIC_BYTES {
        return Err(GossipError::BadTopic);
    }
    Ok(())
}

impl Protocol for PubSub {
    type Reply = GossipReply;
    type Event = GossipEvent;

    fn kinds(&self) -> &'static [Kind] {
        &[Kind::Gossip]
    }

    fn handle_peer_up(&mut self, now: Instant, peer: &Peer<'_>) {
        self.begin(now);
        if peer.hello.features & FEATURE_GOSSIP == 0 {
            return;
        }
        let outbound = peer.direction == Direction::Outbound;
        self.peers.insert(peer.id, PeerState::new(peer.addr, outbound));
        self.scores.peer_up(now, peer.id, peer.addr.ip());
        for topic in self.mesh.keys().map(|t| t.to_string()).collect::<Vec<_>>() {
            self.send(now, peer.id, Class::Control, Gossip::Subscribe { topic });
        }
    }

    fn handle_peer_moved(&mut self, now: Instant, peer: &Peer<'_>) {
        self.begin(now);
        if !self.peers.contains_key(&peer.id) {
            return;
        }
        // What went out on the closing connection may be lost: our subscriptions, and our
        // GRAFTs (a GRAFT to a peer with us in its mesh already changes nothing).
        for (topic, mesh) in self
            .mesh
            .iter()
            .map(|(t, m)| (t.to_string(), m.peers.contains(&peer.id)))
            .collect::<Vec<_>>()
        {
            self.send(now, peer.id, Class::Control, Gossip::Subscribe { topic: topic.clone() });
            if mesh {
                self.send(now, peer.id, Class::Control, Gossip::Graft { topic });
            }
        }
    }

    fn handle_peer_down(&mut self, now: Instant, peer: NodeId) {
        self.begin(now);
        if self.peers.remove(&peer).is_none() {
            return;
        }
        self.queued.remove(&peer);
        for topic in self.subs.remove_peer(&peer) {
            self.leave_mesh(now, peer, &topic);
        }
        for f in self.fanout.values_mut() {
            f.peers.remove(&peer);
        }
        self.scores.peer_down(now, peer);
    }

    fn handle_gossip(&mut self, now: Instant, from: &Peer<'_>, msg: Gossip) {
        self.begin(now);
        self.on_frame(now, from.id, msg);
    }

    fn handle_outcome(
        &mut self,
        now: Instant,
        _key: RequestKey,
        _to: PeerInfo,
        _via: Option<SocketAddr>,
        _rtt: Option<Duration>,
        _result: Result<Response, RequestFailure>,
    ) {
        // Peer-exchange dials: the connection (or its failure) is all that mattered.
        self.begin(now);
    }

    /// `peer`'s connection went above (`true`) or back below its write high-water mark: above
    /// it, frames wait in the peer's queue.
    fn handle_congestion(&mut self, now: Instant, peer: NodeId, congested: bool) {
        self.begin(now);
        if let Some(p) = self.peers.get_mut(&peer) {
            p.congested = congested;
        }
        if !congested {
            self.release(now, peer);
        }
    }

    fn handle_job_done(&mut self, now: Instant, key: JobKey, result: Option<JobResult>) {
        self.begin(now);
        let Some(done) = self.validation.finish(key.0) else {
            return; // Given up at its deadline already.
        };
        let verdicts = match result {
            Some(JobResult::MessagesChecked(v)) if v.len() == done.len() => v,
            _ => Vec::new(), // Refused or lost: every message counts as Ignore.
        };
        self.on_checked(now, done, verdicts);
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.begin(now);
        self.release_staggered(now);
        while let Some(done) = self.validation.poll_expired(now) {
            self.on_checked(now, done, Vec::new());
        }
        if self.next_heartbeat.is_some_and(|at| at <= now) && self.has_work() {
            self.next_heartbeat = Some(now + self.config.heartbeat);
            self.heartbeat(now);
        }
    }

    fn poll_output(&mut self) -> Option<Action<GossipReply, GossipEvent>> {
        self.outputs.pop_front()
    }

    fn next_deadline(&self) -> Option<Instant> {
        let check = self.validation.next_deadline();
        // A node in no topic, holding nothing, has no heartbeat to run: it costs no wake-ups.
        let heartbeat = self.next_heartbeat.filter(|_| self.has_work());
        [heartbeat, check, self.stagger.next_deadline()].into_iter().flatten().min()
    }
}

#[cfg(test)]
#[path = "pubsub_tests.rs"]
mod tests;
