//! GossipSub v1.1 peer scoring (gossipsub-v1.1.md, "Peer Scoring"): counters the gossip core
//! feeds with events, read back as one number when it picks mesh members, gossip targets and
//! peers to ignore. Sans-IO: time is an argument, and nothing here reads a clock.
//!
//! One set of [`TopicParams`] applies to every topic. With `t` the topic weight,
//!
//! ```text
//! Score(p) = min(Σ t·(w₁P₁ + w₂P₂), topic_score_cap) + Σ t·(w₃P₃ + w₃bP₃b + w₄P₄)
//!          + w₅P₅ + w₆P₆ + w₇P₇
//! ```
//!
//! Two departures from the spec:
//! - the topic cap bounds the rewards (P₁, P₂) only, not the net topic sum, so good standing
//!   in many topics cannot buy off an invalid message in another;
//! - P₃ counts only while the topic itself carried at least `mesh_deliveries_min_traffic`
//!   first deliveries (a counter decayed like P₃): on a quiet topic no mesh peer can meet the
//!   threshold, and honest ones must not be pruned for it. `0.0` gives the spec's P₃.
//!
//! Bounds: `max_peers` entries (a full table evicts the highest-scored *disconnected* entry, so
//! fresh ids cannot flush the retained scores of peers that misbehaved), `max_topics_per_peer`
//! topic entries per peer and `max_topics` topic traffic counters; whatever does not fit is
//! counted in [`ScoreStats`] and reads as 0. P₆ counts connected peers by socket address, an
//! IPv6 address by its /64; loopback is exempt, as every node of a local test net shares it.
//!
//! Driving: call [`Scores::refresh`] from every heartbeat; it decays the counters and forgets
//! entries past `retain_score`. Only [`Scores::peer_up`] creates an entry: events for a peer
//! that never came up are ignored.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv6Addr};
use std::time::{Duration, Instant};

use crate::identity::NodeId;

/// Scoring parameters. [`ScoreConfig::DEFAULT`] gives each default with its reason; the
/// `defaults_*` tests check the main claims.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoreConfig {
    /// Entries in total, connected or retained (8192): well above the connection limit, so
    /// the scores of thousands of departed peers survive churn.
    pub max_peers: usize,
    /// Topic entries per peer (64); further topics are ignored and counted.
    pub max_topics_per_peer: usize,
    /// Topics whose traffic is counted for the P₃ gate (256); a topic past it never opens
    /// the gate, so P₃ fails towards leniency there.
    pub max_topics: usize,
    /// One decay step per interval (1 s): the heartbeat, so counters age in whole steps.
    pub decay_interval: Duration,
    /// A decayed counter below this is 0 (0.01), so idle entries can be dropped.
    pub decay_to_zero: f64,
    /// How long a disconnected peer's score is kept (10 min): longer than one invalid message
    /// takes to decay away (~7.6 min), so waiting offline clears no more than waiting online.
    pub retain_score: Duration,
    /// What the gossip core does at which score.
    pub thresholds: Thresholds,
    /// A duplicate this soon after the first copy is a near-first delivery (10 ms): short, so
    /// a mesh peer cannot earn P₃ by echoing what we just sent it. The caller applies it.
    pub mesh_delivery_window: Duration,
    /// The parameters of every topic.
    pub topic: TopicParams,
    /// Bound on the rewards summed over topics (15, one topic's P₁ + P₂ at their caps); `0.0`
    /// for none. Keeps a penalty's cost the same whatever else a peer does.
    pub topic_score_cap: f64,
    /// w₅ (1.0): the application's verdict counts as it gives it.
    pub app_weight: f64,
    /// w₆ (−5.0): two peers past the threshold on one address cost each −20 (below `gossip`),
    /// five cost −125 (graylisted).
    pub ip_colocation_weight: f64,
    /// Connected peers one address may have before P₆ applies (3): a NAT or a host running a
    /// few nodes is normal; a Sybil farm on few addresses is not.
    pub ip_colocation_threshold: u32,
    /// w₇ (−10.0): three penalties past the threshold reach −90 (graylisted).
    pub behaviour_penalty_weight: f64,
    /// Penalties tolerated (2.0): an honest peer breaks an IWANT promise now and then.
    pub behaviour_penalty_threshold: f64,
    /// P₇ decay per interval (0.99): one penalty fades to zero in ~7.6 min.
    pub behaviour_penalty_decay: f64,
}

/// Score levels at which the gossip core changes how it treats a peer (spec names).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    /// Below it (−10), no gossip to or from the peer: a mesh peer that stopped delivering.
    pub gossip: f64,
    /// Below it (−50), our own publishes skip the peer: one invalid message.
    pub publish: f64,
    /// Below it (−80), every RPC from the peer is ignored: repeated or combined offences.
    pub graylist: f64,
    /// At or above it (10), PRUNE peer exchange from the peer is accepted: a proven member.
    pub accept_px: f64,
    /// A mesh median below it (5) lets the core graft better-scored peers.
    pub opportunistic_graft: f64,
}

/// Parameters applied to every topic (the spec's per-topic set, shared).
#[derive(Debug, Clone, PartialEq)]
pub struct TopicParams {
    /// Multiplies each topic's terms (1.0).
    pub topic_weight: f64,
    /// w₁ (0.01 per quantum): a small edge for mesh incumbents against churn.
    pub time_in_mesh_weight: f64,
    /// P₁ counts whole quanta in the mesh (1 s).
    pub time_in_mesh_quantum: Duration,
    /// P₁ cap in quanta (500): at most +5, reached after ~8 min.
    pub time_in_mesh_cap: f64,
    /// w₂ (1.0): a first delivery is worth a point while it lasts.
    pub first_deliveries_weight: f64,
    /// P₂ decay per interval (0.9): rewards recent usefulness, not history.
    pub first_deliveries_decay: f64,
    /// P₂ cap, applied at increment (10): at most +10, one first delivery a second.
    pub first_deliveries_cap: f64,
    /// w₃ (−20.0): a full deficit (threshold 1, squared) puts a mesh peer below `gossip`.
    pub mesh_deliveries_weight: f64,
    /// P₃ decay per interval (0.9): the counter holds ~10 s of deliveries.
    pub mesh_deliveries_decay: f64,
    /// P₃ cap, applied at increment (10): a mesh peer that stops delivering drops below 0
    /// ~30 s later and below `gossip` ~42 s later, even with P₁ and P₂ at their caps.
    pub mesh_deliveries_cap: f64,
    /// Deliveries expected of a mesh peer (1.0, about one per ~10 s window).
    pub mesh_deliveries_threshold: f64,
    /// Time in the mesh before a deficit counts (10 s): one counter memory, so a new member
    /// has had time to deliver.
    pub mesh_deliveries_activation: Duration,
    /// Topic first deliveries (decayed like P₃) needed before P₃ counts (16 ≈ 1.6 msg/s): then
    /// a fair 1/8 share of the traffic (D = 8) is twice the threshold.
    pub mesh_deliveries_min_traffic: f64,
    /// w₃b (−10.0): a peer pruned in deficit is negative for minutes, so not regrafted soon.
    pub mesh_failure_weight: f64,
    /// P₃b decay per interval (0.99): sticky, as the spec wants.
    pub mesh_failure_decay: f64,
    /// w₄ (−70.0): one invalid message (squared: 70) lands below `publish` even with every
    /// reward (+15) and above `graylist`; two (280) land below `graylist`.
    pub invalid_weight: f64,
    /// P₄ decay per interval (0.99): one invalid message is forgotten in ~7.6 min.
    pub invalid_decay: f64,
}

/// Counters for metrics. Buckets count connected peers as of the last [`Scores::refresh`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScoreStats {
    /// Entries held, connected or retained.
    pub tracked: usize,
    /// Entries of disconnected peers kept for `retain_score`.
    pub retained: usize,
    /// Retained entries dropped to make room for a newcomer.
    pub evicted: u64,
    /// Peers that came up while every entry was connected, so were not tracked.
    pub untracked: u64,
    /// Topic entries and topic counters refused at their cap.
    pub topics_refused: u64,
    /// Connected peers by score band.
    pub buckets: ScoreBuckets,
}

/// Connected peers per score band; the bands do not overlap.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScoreBuckets {
    /// Below `graylist`.
    pub graylisted: usize,
    /// At or above `graylist`, below `publish`.
    pub below_publish: usize,
    /// At or above `publish`, below `gossip`.
    pub below_gossip: usize,
    /// At or above `gossip`, below 0.
    pub negative: usize,
    /// 0 or above.
    pub non_negative: usize,
}

/// Every peer's score counters, bounded in peers and topics.
#[derive(Debug, Default)]
pub struct Scores {
    config: ScoreConfig,
    peers: BTreeMap<NodeId, PeerScore>,
    /// Connected tracked peers per colocation key (P₆).
    colocated: BTreeMap<IpAddr, u32>,
    /// Each topic's first deliveries from anyone, decayed like P₃ (the P₃ gate).
    traffic: BTreeMap<Box<str>, f64>,
    /// Where decay steps are counted from; `None` until the first refresh.
    decayed_at: Option<Instant>,
    /// The instant stats buckets are scored at.
    refreshed_at: Option<Instant>,
    evicted: u64,
    untracked: u64,
    topics_refused: u64,
}

impl Scores {
    /// No peers yet.
    pub fn new(config: ScoreConfig) -> Scores {
        Scores { config, ..Scores::default() }
    }

    /// The parameters in force (the core reads its thresholds and delivery window here).
    pub fn config(&self) -> &ScoreConfig {
        &self.config
    }

    /// A connection to `peer` from socket address `ip` came up (P6 counts peers per IP from
    /// this, never from claims). Restores a retained entry if the peer was seen within
    /// `retain_score`. A second connection keeps the address of the first.
    pub fn peer_up(&mut self, now: Instant, peer: NodeId, ip: IpAddr) {
        let key = colocation_key(ip);
        let retain = self.config.retain_score;
        match self.peers.get_mut(&peer) {
            Some(entry) if entry.is_connected() => return,
            Some(entry) if !entry.is_expired(now, retain) => {
                entry.presence = Presence::Connected(key)
            }
            _ => {
                self.peers.remove(&peer);
                if !self.make_room(now) {
                    self.untracked += 1;
                    return;
                }
                self.peers.insert(peer, PeerScore::new(key));
            }
        }
        if let Some(key) = key {
            *self.colocated.entry(key).or_insert(0) += 1;
        }
    }

    /// Its last connection closed: keep the entry until now + retain_score (so a reconnect does
    /// not reset a bad score); mesh membership ends (apply P3b as for prune).
    pub fn peer_down(&mut self, now: Instant, peer: NodeId) {
        let Some(entry) = self.peers.get_mut(&peer) else { return };
        let Presence::Connected(key) = entry.presence else { return };
        for (topic, stats) in entry.topics.iter_mut() {
            stats.leave_mesh(&self.config.topic, now, traffic_of(&self.traffic, topic));
        }
        entry.presence = Presence::Gone { since: now };
        if let Some(key) = key {
            uncount(&mut self.colocated, key);
        }
    }

    /// `peer` joined our mesh for `topic`: P₁ starts counting, and P₃ after its activation.
    /// Ignored for a disconnected peer; a repeated GRAFT keeps the first time.
    pub fn graft(&mut self, now: Instant, peer: NodeId, topic: &str) {
        if !self.peers.get(&peer).is_some_and(PeerScore::is_connected) {
            return;
        }
        if let Some(stats) = self.topic_mut(&peer, topic) {
            stats.grafted_at.get_or_insert(now);
        }
    }

    /// `peer` left our mesh for `topic`: if its P₃ deficit is active, the deficit squared goes
    /// to P₃b, so a peer pruned for under-delivery is not regrafted at once.
    pub fn prune(&mut self, now: Instant, peer: NodeId, topic: &str) {
        let traffic = traffic_of(&self.traffic, topic);
        if let Some(stats) = self.peers.get_mut(&peer).and_then(|e| e.topics.get_mut(topic)) {
            stats.leave_mesh(&self.config.topic, now, traffic);
        }
    }

    /// `peer` was the first to deliver a valid message in `topic`: P₂ + 1, and P₃ + 1 if it is
    /// in our mesh (each capped). Also counts the topic's traffic for the P₃ gate. (`now` is
    /// unused today; every input carries the time.)
    pub fn first_delivery(&mut self, _now: Instant, peer: NodeId, topic: &str) {
        self.count_traffic(topic);
        let p = &self.config.topic;
        let (first_cap, mesh_cap) = (p.first_deliveries_cap, p.mesh_deliveries_cap);
        if let Some(stats) = self.topic_mut(&peer, topic) {
            stats.first = (stats.first + 1.0).min(first_cap);
            if stats.grafted_at.is_some() {
                stats.mesh = (stats.mesh + 1.0).min(mesh_cap);
            }
        }
    }

    /// A duplicate within `mesh_delivery_window` of the first copy: P₃ + 1 if `peer` is in our
    /// mesh (no P₂: it was not first). Allocates nothing.
    pub fn near_first_delivery(&mut self, _now: Instant, peer: NodeId, topic: &str) {
        let cap = self.config.topic.mesh_deliveries_cap;
        if let Some(stats) = self.peers.get_mut(&peer).and_then(|e| e.topics.get_mut(topic)) {
            if stats.grafted_at.is_some() {
                stats.mesh = (stats.mesh + 1.0).min(cap);
            }
        }
    }

    /// `peer` delivered a message in `topic` that failed its signature or validation: P₄ + 1.
    pub fn invalid(&mut self, peer: NodeId, topic: &str) {
        if let Some(stats) = self.topic_mut(&peer, topic) {
            stats.invalid += 1.0;
        }
    }

    /// P₇ + `count`: broken IWANT promises, GRAFT during backoff, rate-limit verdicts.
    pub fn penalize(&mut self, peer: NodeId, count: u32) {
        if let Some(entry) = self.peers.get_mut(&peer) {
            entry.behaviour += f64::from(count);
        }
    }

    /// Sets P₅. A NaN or infinite value is ignored: a NaN score is below no threshold, so it
    /// would pass every check.
    pub fn set_app_score(&mut self, peer: NodeId, value: f64) {
        if let Some(entry) = self.peers.get_mut(&peer).filter(|_| value.is_finite()) {
            entry.app = value;
        }
    }

    /// The score of `peer` at `now`; 0.0 for an unknown, untracked or forgotten peer.
    pub fn score(&self, now: Instant, peer: &NodeId) -> f64 {
        let entry = self.peers.get(peer).filter(|e| !e.is_expired(now, self.config.retain_score));
        entry.map_or(0.0, |entry| self.score_of(now, entry))
    }

    /// Decays every counter once per elapsed decay_interval (call from the heartbeat; harmless
    /// if called more often), drops retained entries past their retention, and counters below
    /// decay_to_zero become 0. The first call only starts the decay clock.
    pub fn refresh(&mut self, now: Instant) {
        let interval = self.config.decay_interval.max(Duration::from_nanos(1));
        let since = *self.decayed_at.get_or_insert(now);
        let elapsed = now.saturating_duration_since(since).as_nanos() / interval.as_nanos();
        let steps = elapsed.min(MAX_DECAY_STEPS) as u32;
        if steps > 0 {
            let caught_up = if elapsed > MAX_DECAY_STEPS { now } else { since + interval * steps };
            self.decayed_at = Some(caught_up);
            self.decay(steps as i32);
        }
        let retain = self.config.retain_score;
        self.peers.retain(|_, entry| !entry.is_expired(now, retain));
        self.refreshed_at = Some(now);
    }

    /// Counters for metrics; the buckets are empty before the first refresh.
    pub fn stats(&self) -> ScoreStats {
        let mut stats = ScoreStats {
            tracked: self.peers.len(),
            evicted: self.evicted,
            untracked: self.untracked,
            topics_refused: self.topics_refused,
            ..ScoreStats::default()
        };
        for entry in self.peers.values() {
            if !entry.is_connected() {
                stats.retained += 1;
            } else if let Some(at) = self.refreshed_at {
                stats.buckets.count(self.score_of(at, entry), &self.config.thresholds);
            }
        }
        stats
    }

    /// Frees an entry if the table is full: the disconnected one with the highest score (an
    /// expired one first). False if every entry is connected. O(entries), only when full.
    fn make_room(&mut self, now: Instant) -> bool {
        if self.peers.len() < self.config.max_peers {
            return true;
        }
        let retain = self.config.retain_score;
        let victim = (self.peers.iter())
            .filter(|(_, entry)| !entry.is_connected())
            .map(|(id, entry)| {
                let rank = match entry.is_expired(now, retain) {
                    true => f64::INFINITY,
                    false => self.score_of(now, entry),
                };
                (rank, *id)
            })
            .max_by(|a, b| a.0.total_cmp(&b.0));
        let Some((_, id)) = victim else { return false };
        self.peers.remove(&id);
        self.evicted += 1;
        true
    }

    /// The (peer, topic) entry, created if the peer is tracked and under its topic cap.
    fn topic_mut(&mut self, peer: &NodeId, topic: &str) -> Option<&mut TopicScore> {
        let cap = self.config.max_topics_per_peer;
        let entry = self.peers.get_mut(peer)?;
        if !entry.topics.contains_key(topic) {
            if entry.topics.len() >= cap {
                self.topics_refused += 1;
                return None;
            }
            entry.topics.insert(topic.into(), TopicScore::default());
        }
        entry.topics.get_mut(topic)
    }

    fn count_traffic(&mut self, topic: &str) {
        if let Some(count) = self.traffic.get_mut(topic) {
            *count += 1.0;
        } else if self.traffic.len() < self.config.max_topics {
            self.traffic.insert(topic.into(), 1.0);
        } else {
            self.topics_refused += 1;
        }
    }

    /// Applies `steps` decay intervals to every counter and drops what reached zero.
    fn decay(&mut self, steps: i32) {
        let c = &self.config;
        let decay = |value: &mut f64, factor: f64| {
            *value *= factor.powi(steps);
            if *value < c.decay_to_zero {
                *value = 0.0;
            }
        };
        for entry in self.peers.values_mut() {
            decay(&mut entry.behaviour, c.behaviour_penalty_decay);
            entry.topics.retain(|_, t| {
                decay(&mut t.first, c.topic.first_deliveries_decay);
                decay(&mut t.mesh, c.topic.mesh_deliveries_decay);
                decay(&mut t.failure, c.topic.mesh_failure_decay);
                decay(&mut t.invalid, c.topic.invalid_decay);
                t.grafted_at.is_some() || t.first + t.mesh + t.failure + t.invalid > 0.0
            });
        }
        self.traffic.retain(|_, count| {
            decay(count, c.topic.mesh_deliveries_decay);
            *count > 0.0
        });
    }

    fn score_of(&self, now: Instant, entry: &PeerScore) -> f64 {
        let c = &self.config;
        let (mut rewards, mut penalties) = (0.0, 0.0);
        for (topic, stats) in &entry.topics {
            let traffic = traffic_of(&self.traffic, topic);
            rewards += c.topic.topic_weight * stats.rewards(&c.topic, now);
            penalties += c.topic.topic_weight * stats.penalties(&c.topic, now, traffic);
        }
        if c.topic_score_cap > 0.0 {
            rewards = rewards.min(c.topic_score_cap);
        }
        let excess = (entry.behaviour - c.behaviour_penalty_threshold).max(0.0);
        rewards
            + penalties
            + c.app_weight * entry.app
            + c.ip_colocation_weight * self.colocation_surplus(entry).powi(2)
            + c.behaviour_penalty_weight * excess * excess
    }

    /// Peers sharing `entry`'s address beyond the threshold (P₆ before squaring).
    fn colocation_surplus(&self, entry: &PeerScore) -> f64 {
        let Presence::Connected(Some(key)) = entry.presence else { return 0.0 };
        let peers = self.colocated.get(&key).copied().unwrap_or(0);
        f64::from(peers.saturating_sub(self.config.ip_colocation_threshold))
    }
}

impl ScoreConfig {
    /// The documented defaults, usable in `const` templates.
    pub const DEFAULT: ScoreConfig = ScoreConfig {
        max_peers: 8192,
        max_topics_per_peer: 64,
        max_topics: 256,
        decay_interval: Duration::from_secs(1),
        decay_to_zero: 0.01,
        retain_score: Duration::from_secs(600),
        thresholds: Thresholds {
            gossip: -10.0,
            publish: -50.0,
            graylist: -80.0,
            accept_px: 10.0,
            opportunistic_graft: 5.0,
        },
        mesh_delivery_window: Duration::from_millis(10),
        topic: TopicParams::DEFAULT,
        topic_score_cap: 15.0,
        app_weight: 1.0,
        ip_colocation_weight: -5.0,
        ip_colocation_threshold: 3,
        behaviour_penalty_weight: -10.0,
        behaviour_penalty_threshold: 2.0,
        behaviour_penalty_decay: 0.99,
    };
}

impl Default for ScoreConfig {
    fn default() -> ScoreConfig {
        ScoreConfig::DEFAULT
    }
}

impl TopicParams {
    /// The documented defaults, usable in `const` templates.
    pub const DEFAULT: TopicParams = TopicParams {
        topic_weight: 1.0,
        time_in_mesh_weight: 0.01,
        time_in_mesh_quantum: Duration::from_secs(1),
        time_in_mesh_cap: 500.0,
        first_deliveries_weight: 1.0,
        first_deliveries_decay: 0.9,
        first_deliveries_cap: 10.0,
        mesh_deliveries_weight: -20.0,
        mesh_deliveries_decay: 0.9,
        mesh_deliveries_cap: 10.0,
        mesh_deliveries_threshold: 1.0,
        mesh_deliveries_activation: Duration::from_secs(10),
        mesh_deliveries_min_traffic: 16.0,
        mesh_failure_weight: -10.0,
        mesh_failure_decay: 0.99,
        invalid_weight: -70.0,
        invalid_decay: 0.99,
    };
}

impl ScoreBuckets {
    fn count(&mut self, score: f64, t: &Thresholds) {
        let bucket = match score {
            s if s < t.graylist => &mut self.graylisted,
            s if s < t.publish => &mut self.below_publish,
            s if s < t.gossip => &mut self.below_gossip,
            s if s < 0.0 => &mut self.negative,
            _ => &mut self.non_negative,
        };
        *bucket += 1;
    }
}

/// One peer's counters outside any topic, and its topics.
#[derive(Debug)]
struct PeerScore {
    presence: Presence,
    topics: BTreeMap<Box<str>, TopicScore>,
    /// P₅.
    app: f64,
    /// P₇'s counter.
    behaviour: f64,
}

/// Whether the peer is connected; only a connected peer counts towards P₆.
#[derive(Debug, Clone, Copy)]
enum Presence {
    /// Up, with its colocation key (`None` for loopback, which P₆ exempts).
    Connected(Option<IpAddr>),
    /// Its last connection closed at `since`; forgotten `retain_score` later.
    Gone { since: Instant },
}

impl PeerScore {
    fn new(key: Option<IpAddr>) -> PeerScore {
        PeerScore {
            presence: Presence::Connected(key),
            topics: BTreeMap::new(),
            app: 0.0,
            behaviour: 0.0,
        }
    }

    fn is_connected(&self) -> bool {
        matches!(self.presence, Presence::Connected(_))
    }

    fn is_expired(&self, now: Instant, retain: Duration) -> bool {
        match self.presence {
            Presence::Connected(_) => false,
            Presence::Gone { since } => now.saturating_duration_since(since) >= retain,
        }
    }
}

/// One (peer, topic)'s counters.
#[derive(Debug, Default)]
struct TopicScore {
    /// When the peer joined our mesh for the topic; `None` outside it.
    grafted_at: Option<Instant>,
    /// P₂.
    first: f64,
    /// P₃'s delivery counter.
    mesh: f64,
    /// P₃b.
    failure: f64,
    /// P₄'s counter (squared when scored).
    invalid: f64,
}

impl TopicScore {
    /// w₁P₁ + w₂P₂, before the topic weight.
    fn rewards(&self, p: &TopicParams, now: Instant) -> f64 {
        let quanta = self.grafted_at.map_or(0.0, |at| {
            let in_mesh = now.saturating_duration_since(at).as_nanos();
            let quantum = p.time_in_mesh_quantum.as_nanos();
            in_mesh.checked_div(quantum).map_or(f64::INFINITY, |n| n as f64)
        });
        p.time_in_mesh_weight * quanta.min(p.time_in_mesh_cap)
            + p.first_deliveries_weight * self.first
    }

    /// w₃P₃ + w₃bP₃b + w₄P₄, before the topic weight.
    fn penalties(&self, p: &TopicParams, now: Instant, traffic: f64) -> f64 {
        let deficit = self.deficit(p, now, traffic);
        p.mesh_deliveries_weight * deficit * deficit
            + p.mesh_failure_weight * self.failure
            + p.invalid_weight * self.invalid * self.invalid
    }

    /// How far the peer is below the delivery threshold, once in the mesh past activation
    /// and while the topic carries enough traffic to expect deliveries; else 0.
    fn deficit(&self, p: &TopicParams, now: Instant, traffic: f64) -> f64 {
        let Some(at) = self.grafted_at else { return 0.0 };
        let active = now.saturating_duration_since(at) > p.mesh_deliveries_activation
            && traffic >= p.mesh_deliveries_min_traffic;
        if !active {
            return 0.0;
        }
        (p.mesh_deliveries_threshold - self.mesh).max(0.0)
    }

    /// Ends mesh membership; an active deficit, squared, becomes P₃b (spec: "sticky").
    fn leave_mesh(&mut self, p: &TopicParams, now: Instant, traffic: f64) {
        let deficit = self.deficit(p, now, traffic);
        self.failure += deficit * deficit;
        self.grafted_at = None;
    }
}

fn traffic_of(traffic: &BTreeMap<Box<str>, f64>, topic: &str) -> f64 {
    traffic.get(topic).copied().unwrap_or(0.0)
}

fn uncount(colocated: &mut BTreeMap<IpAddr, u32>, key: IpAddr) {
    if let Some(peers) = colocated.get_mut(&key) {
        *peers -= 1;
        if *peers == 0 {
            colocated.remove(&key);
        }
    }
}

/// The address P₆ counts `ip` under: IPv4 (an IPv4-mapped IPv6 address included) as itself,
/// IPv6 by its /64 (one host commonly holds a whole /64), loopback not at all.
fn colocation_key(ip: IpAddr) -> Option<IpAddr> {
    match ip.to_canonical() {
        ip if ip.is_loopback() => None,
        IpAddr::V6(v6) => {
            let mut octets = v6.octets();
            octets[8..].fill(0);
            Some(IpAddr::V6(Ipv6Addr::from(octets)))
        }
        v4 => Some(v4),
    }
}

/// More intervals than any decay factor in use needs to reach zero; bounds `powi`'s exponent
/// after a long pause.
const MAX_DECAY_STEPS: u128 = 100_000;

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const S: Duration = Duration::from_secs(1);
    const TOPIC: &str = "news";

    /// Every weight but w₅ is 0 and P₃ needs no traffic: each test turns on what it checks.
    const NEUTRAL_TOPIC: TopicParams = TopicParams {
        time_in_mesh_weight: 0.0,
        first_deliveries_weight: 0.0,
        mesh_deliveries_weight: 0.0,
        mesh_deliveries_min_traffic: 0.0,
        mesh_failure_weight: 0.0,
        invalid_weight: 0.0,
        ..TopicParams::DEFAULT
    };
    const NEUTRAL: ScoreConfig = ScoreConfig {
        topic: NEUTRAL_TOPIC,
        ip_colocation_weight: 0.0,
        behaviour_penalty_weight: 0.0,
        ..ScoreConfig::DEFAULT
    };
    const INVALID: ScoreConfig =
        ScoreConfig { topic: TopicParams { invalid_weight: -1.0, ..NEUTRAL_TOPIC }, ..NEUTRAL };

    fn id(n: u8) -> NodeId {
        NodeId::from_bytes([n; 32])
    }

    fn ip(n: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(203, 0, 113, n))
    }

    /// Scores with peers `ns` up at `t0`, each on its own address.
    fn with_peers(config: ScoreConfig, t0: Instant, ns: &[u8]) -> Scores {
        let mut scores = Scores::new(config);
        for &n in ns {
            scores.peer_up(t0, id(n), ip(n));
        }
        scores
    }

    fn assert_near(actual: f64, expected: f64) {
        assert!((actual - expected).abs() < 1e-9, "{actual} != {expected}");
    }

    // Topic terms: P₁ to P₄, and the cap on rewards.

    #[test]
    fn p1_counts_whole_quanta_in_the_mesh_up_to_its_cap() {
        let t0 = Instant::now();
        let topic =
            TopicParams { time_in_mesh_weight: 0.5, time_in_mesh_cap: 3.0, ..NEUTRAL_TOPIC };
        let mut s = with_peers(ScoreConfig { topic, ..NEUTRAL }, t0, &[1]);
        s.graft(t0, id(1), TOPIC);
        assert_near(s.score(t0 + S * 5 / 2, &id(1)), 1.0);
        assert_near(s.score(t0 + 10 * S, &id(1)), 1.5);
        s.prune(t0 + 10 * S, id(1), TOPIC);
        assert_near(s.score(t0 + 10 * S, &id(1)), 0.0);
    }

    #[test]
    fn p2_is_capped_at_increment_and_decays_once_per_elapsed_interval() {
        let t0 = Instant::now();
        let topic = TopicParams {
            first_deliveries_weight: 1.0,
            first_deliveries_cap: 3.0,
            first_deliveries_decay: 0.5,
            ..NEUTRAL_TOPIC
        };
        let mut s = with_peers(ScoreConfig { topic, ..NEUTRAL }, t0, &[1]);
        for _ in 0..5 {
            s.first_delivery(t0, id(1), TOPIC);
        }
        assert_near(s.score(t0, &id(1)), 3.0);
        for t in [t0, t0 + S, t0 + S * 3 / 2] {
            s.refresh(t);
        }
        assert_near(s.score(t0, &id(1)), 1.5);
        s.refresh(t0 + 3 * S);
        assert_near(s.score(t0, &id(1)), 0.375);
    }

    #[test]
    fn p3_deficit_counts_only_past_activation_and_is_squared() {
        let t0 = Instant::now();
        let topic = TopicParams {
            mesh_deliveries_weight: -1.0,
            mesh_deliveries_threshold: 3.0,
            mesh_deliveries_activation: 5 * S,
            ..NEUTRAL_TOPIC
        };
        let mut s = with_peers(ScoreConfig { topic, ..NEUTRAL }, t0, &[1, 2]);
        s.first_delivery(t0, id(2), TOPIC); // not in the mesh yet: no P₃
        s.graft(t0, id(1), TOPIC);
        s.graft(t0, id(2), TOPIC);
        s.first_delivery(t0, id(1), TOPIC);
        assert_near(s.score(t0 + 5 * S, &id(1)), 0.0);
        assert_near(s.score(t0 + 6 * S, &id(1)), -4.0);
        assert_near(s.score(t0 + 6 * S, &id(2)), -9.0);
        s.near_first_delivery(t0, id(1), TOPIC);
        assert_near(s.score(t0 + 6 * S, &id(1)), -1.0);
    }

    #[test]
    fn p3_waits_until_the_topic_carries_enough_traffic() {
        let t0 = Instant::now();
        let topic = TopicParams {
            mesh_deliveries_weight: -1.0,
            mesh_deliveries_min_traffic: 2.0,
            ..NEUTRAL_TOPIC
        };
        let mut s = with_peers(ScoreConfig { topic, ..NEUTRAL }, t0, &[1, 2]);
        s.graft(t0, id(1), TOPIC);
        s.first_delivery(t0, id(2), TOPIC);
        assert_near(s.score(t0 + 20 * S, &id(1)), 0.0);
        s.first_delivery(t0, id(2), TOPIC);
        assert_near(s.score(t0 + 20 * S, &id(1)), -1.0);
    }

    #[test]
    fn p3b_takes_the_active_deficit_squared_on_prune_and_on_peer_down() {
        let t0 = Instant::now();
        let topic = TopicParams {
            mesh_failure_weight: -1.0,
            mesh_deliveries_threshold: 3.0,
            mesh_deliveries_activation: S,
            ..NEUTRAL_TOPIC
        };
        let mut s = with_peers(ScoreConfig { topic, ..NEUTRAL }, t0, &[1, 2, 3]);
        for n in 1..=3 {
            s.graft(t0, id(n), TOPIC);
        }
        s.first_delivery(t0, id(2), TOPIC);
        s.prune(t0 + S, id(1), TOPIC); // not past activation
        s.prune(t0 + 2 * S, id(2), TOPIC);
        s.peer_down(t0 + 2 * S, id(3));
        let scores = [1, 2, 3].map(|n| s.score(t0 + 9 * S, &id(n)));
        assert_eq!(scores, [0.0, -4.0, -9.0]);
    }

    #[test]
    fn rewards_are_capped_across_topics_and_penalties_are_not() {
        let t0 = Instant::now();
        let topic = TopicParams { first_deliveries_weight: 1.0, ..INVALID.topic };
        let mut s = with_peers(ScoreConfig { topic, topic_score_cap: 5.0, ..NEUTRAL }, t0, &[1]);
        for topic in ["a", "a", "a", "a", "b", "b", "b", "b"] {
            s.first_delivery(t0, id(1), topic);
        }
        assert_near(s.score(t0, &id(1)), 5.0);
        s.invalid(id(1), "c");
        assert_near(s.score(t0, &id(1)), 4.0);
    }

    // Peer terms: P₆ and P₇ (P₅ in the stats test).

    #[test]
    fn p6_squares_the_surplus_of_connected_peers_on_one_address() {
        let t0 = Instant::now();
        let config =
            ScoreConfig { ip_colocation_weight: -1.0, ip_colocation_threshold: 1, ..NEUTRAL };
        let mut s = Scores::new(config);
        let up = |s: &mut Scores, n: u8, ip: &str| s.peer_up(t0, id(n), ip.parse().unwrap());
        for n in 1..=3 {
            up(&mut s, n, "203.0.113.7");
        }
        up(&mut s, 1, "203.0.113.9"); // a second connection keeps the first address
        up(&mut s, 4, "203.0.113.8");
        assert_eq!([1, 4].map(|n| s.score(t0, &id(n))), [-4.0, 0.0]);
        s.peer_down(t0, id(3));
        assert_eq!([1, 3].map(|n| s.score(t0, &id(n))), [-1.0, 0.0]);
        up(&mut s, 5, "::ffff:203.0.113.7");
        up(&mut s, 6, "2001:db8::1");
        up(&mut s, 7, "2001:db8::2");
        for n in 8..=10 {
            up(&mut s, n, "127.0.0.1");
        }
        assert_eq!([2, 7, 8].map(|n| s.score(t0, &id(n))), [-4.0, -1.0, 0.0]);
    }

    #[test]
    fn p7_squares_the_penalties_past_the_threshold_and_decays() {
        let t0 = Instant::now();
        let config =
            ScoreConfig { behaviour_penalty_weight: -1.0, behaviour_penalty_decay: 0.5, ..NEUTRAL };
        let mut s = with_peers(config, t0, &[1]);
        s.penalize(id(1), 5);
        assert_near(s.score(t0, &id(1)), -9.0);
        s.refresh(t0);
        s.refresh(t0 + S);
        assert_near(s.score(t0 + S, &id(1)), -0.25);
    }

    // Decay and retention.

    #[test]
    fn counters_below_decay_to_zero_become_zero_even_after_a_long_pause() {
        let t0 = Instant::now();
        let topic = TopicParams {
            first_deliveries_weight: 1.0,
            first_deliveries_decay: 0.5,
            ..NEUTRAL_TOPIC
        };
        let mut s = with_peers(ScoreConfig { topic, decay_to_zero: 0.3, ..NEUTRAL }, t0, &[1]);
        s.first_delivery(t0, id(1), TOPIC);
        s.refresh(t0);
        s.refresh(t0 + S);
        assert_near(s.score(t0, &id(1)), 0.5);
        s.refresh(t0 + 2 * S);
        assert_eq!(s.score(t0, &id(1)), 0.0);
        s.first_delivery(t0, id(1), TOPIC);
        s.refresh(t0 + Duration::from_secs(10_000_000));
        assert_eq!(s.score(t0, &id(1)), 0.0);
    }

    #[test]
    fn negative_score_survives_a_reconnect_within_retention_and_is_forgotten_after() {
        let t0 = Instant::now();
        let minute = 60 * S;
        let mut s = with_peers(INVALID, t0, &[1, 2]);
        for n in [1, 1, 2] {
            s.invalid(id(n), TOPIC);
        }
        s.peer_down(t0, id(1));
        s.peer_up(t0 + minute, id(1), ip(1));
        assert_near(s.score(t0 + minute, &id(1)), -4.0);
        s.peer_down(t0 + minute, id(1));
        s.refresh(t0 + 11 * minute);
        assert_eq!(s.stats().tracked, 1);
        s.peer_up(t0 + 11 * minute, id(1), ip(1));
        assert_eq!(s.score(t0 + 11 * minute, &id(1)), 0.0);
        // Past retention but not yet refreshed away: already forgotten.
        s.peer_down(t0 + minute, id(2));
        assert_eq!(s.score(t0 + 11 * minute, &id(2)), 0.0);
        s.peer_up(t0 + 11 * minute, id(2), ip(2));
        assert_eq!(s.score(t0 + 11 * minute, &id(2)), 0.0);
    }

    // Bounds and stats.

    #[test]
    fn full_table_evicts_the_highest_scored_retained_entry_and_never_a_connected_one() {
        let t0 = Instant::now();
        let mut s = with_peers(ScoreConfig { max_peers: 3, ..INVALID }, t0, &[1, 2, 3]);
        for n in [1, 2, 3, 3, 3] {
            s.invalid(id(n), TOPIC);
        }
        s.peer_down(t0, id(2));
        s.peer_down(t0, id(3));
        s.peer_up(t0, id(4), ip(4));
        assert_eq!([2, 3].map(|n| s.score(t0, &id(n))), [0.0, -9.0]);
        s.peer_up(t0, id(5), ip(5));
        s.peer_up(t0, id(6), ip(6));
        s.penalize(id(6), 1);
        assert_eq!([1, 3, 6].map(|n| s.score(t0, &id(n))), [-1.0, 0.0, 0.0]);
        let stats = s.stats();
        assert_eq!((stats.tracked, stats.retained, stats.evicted, stats.untracked), (3, 0, 2, 1));
    }

    #[test]
    fn p4_squares_each_topic_and_topics_past_the_per_peer_cap_are_ignored_and_counted() {
        let t0 = Instant::now();
        let mut s = with_peers(ScoreConfig { max_topics_per_peer: 2, ..INVALID }, t0, &[1]);
        for topic in ["a", "b", "c", "a"] {
            s.invalid(id(1), topic);
        }
        s.near_first_delivery(t0, id(1), "d");
        assert_near(s.score(t0, &id(1)), -5.0);
        assert_eq!(s.stats().topics_refused, 1);
    }

    #[test]
    fn stats_count_connected_peers_by_band_as_of_the_last_refresh() {
        let t0 = Instant::now();
        let mut s = with_peers(NEUTRAL, t0, &[1, 2, 3, 4, 5, 6]);
        for (n, app) in [(1, 5.0), (2, -5.0), (3, -20.0), (4, -60.0), (5, -100.0), (6, 1.0)] {
            s.set_app_score(id(n), app);
        }
        s.set_app_score(id(1), f64::NAN); // ignored
        s.peer_down(t0, id(6));
        assert_eq!(s.stats().buckets, ScoreBuckets::default());
        s.refresh(t0);
        let stats = s.stats();
        assert_eq!((stats.tracked, stats.retained), (6, 1));
        let one = ScoreBuckets {
            graylisted: 1,
            below_publish: 1,
            below_gossip: 1,
            negative: 1,
            non_negative: 1,
        };
        assert_eq!(stats.buckets, one);
    }

    // The defaults do what their docs claim.

    #[test]
    fn defaults_put_one_invalid_message_between_publish_and_graylist() {
        let t0 = Instant::now();
        let t = ScoreConfig::DEFAULT.thresholds;
        let mut s = with_peers(ScoreConfig::DEFAULT, t0, &[1]);
        s.graft(t0, id(1), TOPIC);
        for _ in 0..20 {
            s.first_delivery(t0, id(1), TOPIC);
        }
        let later = t0 + 600 * S;
        assert_near(s.score(later, &id(1)), 15.0);
        s.invalid(id(1), TOPIC);
        let one = s.score(later, &id(1));
        assert!(one < t.publish && one > t.graylist, "{one}");
        s.invalid(id(1), TOPIC);
        assert!(s.score(later, &id(1)) < t.graylist);
        s.refresh(t0);
        s.refresh(t0 + ScoreConfig::DEFAULT.retain_score - S);
        s.prune(t0, id(1), TOPIC);
        assert_eq!(s.score(later, &id(1)), 0.0, "two invalid messages outlast retention");
    }

    #[test]
    fn defaults_push_a_silent_mesh_peer_below_gossip_on_a_busy_topic_only() {
        let t0 = Instant::now();
        let gossip = ScoreConfig::DEFAULT.thresholds.gossip;
        let mut s = with_peers(ScoreConfig::DEFAULT, t0, &[1, 2, 3]);
        for (n, topic) in [(1, "busy"), (2, "busy"), (3, "quiet")] {
            s.graft(t0, id(n), topic);
        }
        for _ in 0..20 {
            s.first_delivery(t0, id(2), "busy");
        }
        s.first_delivery(t0, id(2), "quiet");
        assert!(s.score(t0 + 10 * S, &id(1)) >= 0.0);
        assert!(s.score(t0 + 11 * S, &id(1)) < gossip);
        assert!(s.score(t0 + 11 * S, &id(2)) > 0.0);
        assert!(s.score(t0 + 600 * S, &id(3)) > 0.0);
    }

    #[test]
    fn defaults_keep_a_delivering_mesh_peer_non_negative_and_catch_it_when_it_stops() {
        let t0 = Instant::now();
        let mut s = with_peers(ScoreConfig::DEFAULT, t0, &[1, 2]);
        s.graft(t0, id(1), TOPIC);
        s.refresh(t0);
        let mut scores = Vec::new(); // scores[k - 1]: the score k seconds in
        for secs in 1..=560u32 {
            let now = t0 + secs * S;
            s.refresh(now);
            if secs <= 500 {
                s.first_delivery(now, id(1), TOPIC);
            }
            s.first_delivery(now, id(2), TOPIC);
            s.first_delivery(now, id(2), TOPIC);
            scores.push(s.score(now, &id(1)));
        }
        assert!(scores[..500].iter().all(|&score| score >= 0.0));
        assert_near(scores[499], 15.0);
        let below = |limit: f64| scores.iter().position(|&score| score < limit).map(|i| i + 1);
        assert_eq!(below(0.0), Some(529));
        assert_eq!(below(ScoreConfig::DEFAULT.thresholds.gossip), Some(542));
    }
}
