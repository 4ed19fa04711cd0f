//! Every setting of the gossip protocol, with the defaults of GossipSub v1.1/v1.2 where the
//! spec names one (DESIGN.md, "Gossip"), and the bounds that keep what a peer can make us hold
//! finite (DESIGN.md, "Trust").

use std::time::Duration;

use super::score::ScoreConfig;

/// Settings of [`super::PubSub`].
#[derive(Debug, Clone)]
pub struct GossipConfig {
    /// Target mesh degree D: a heartbeat grafts up to it and prunes down to it.
    pub d: usize,
    /// Below this many mesh peers a heartbeat grafts (D_low).
    pub d_low: usize,
    /// Above this many a heartbeat prunes (D_high).
    pub d_high: usize,
    /// Outbound mesh peers a heartbeat keeps (D_out): peers we dialled, which an attacker
    /// flooding us with inbound connections cannot displace. Must be below `d_low` and at most
    /// `d / 2`.
    pub d_out: usize,
    /// Mesh peers kept by score when pruning an oversubscribed mesh (D_score); the rest of D
    /// is chosen at random, so a peer cannot buy its way into every mesh by score alone.
    pub d_score: usize,
    /// Peers (outside the mesh) each heartbeat sends IHAVE to, at least (D_lazy).
    pub d_lazy: usize,
    /// Fraction of the eligible non-mesh peers sent IHAVE when that is more than `d_lazy`.
    pub gossip_factor: f64,
    /// The mesh maintenance period.
    pub heartbeat: Duration,
    /// A topic we publish to without subscribing keeps its fanout peers this long after our
    /// last publish.
    pub fanout_ttl: Duration,
    /// Heartbeat windows of messages kept to answer IWANT.
    pub history_length: usize,
    /// Of those, the most recent windows announced in IHAVE.
    pub history_gossip: usize,
    /// How long a message id is remembered as seen: a copy arriving within it is a duplicate,
    /// costs no signature check and is not delivered again.
    pub seen_ttl: Duration,
    /// Message ids remembered as seen; past it the oldest are forgotten early (counted).
    pub max_seen: usize,
    /// Backoff we ask of a peer we prune, and observe after it prunes us (at least).
    pub prune_backoff: Duration,
    /// Backoff after we leave a topic (shorter: rejoining soon is normal).
    pub unsubscribe_backoff: Duration,
    /// A GRAFT this soon after our PRUNE is penalised twice (a flood of GRAFTs), later ones in
    /// the backoff once.
    pub graft_flood_threshold: Duration,
    /// Peers offered for exchange in a PRUNE (at most `MAX_PX_PEERS`).
    pub px_peers: usize,
    /// Peer-exchange candidates dialled per PRUNE received.
    pub px_dials: usize,
    /// Message ids announced in one IHAVE.
    pub max_ihave_length: usize,
    /// IHAVE frames accepted from one peer per heartbeat; more are ignored (counted).
    pub max_ihave_messages: usize,
    /// GRAFT and PRUNE frames taken from one peer per heartbeat; more are ignored (counted).
    pub max_graft_prune_per_heartbeat: usize,
    /// Message ids asked of one peer per heartbeat with IWANT.
    pub max_iwant_per_heartbeat: usize,
    /// Ids asked of one peer and not delivered yet: a peer announcing ids it never delivers
    /// cannot fill the table of requests in flight that every peer shares.
    pub max_promises_per_peer: usize,
    /// How long a peer has to deliver a message it announced in IHAVE and we asked for; past
    /// it the promise is broken and penalised, and the id may be asked of another peer.
    pub iwant_followup: Duration,
    /// Times one peer gets the same message through IWANT; more asks are ignored.
    pub gossip_retransmission: u32,
    /// Messages this large or larger get an IDONTWANT to our mesh peers on first receipt,
    /// before their check.
    pub idontwant_min_bytes: usize,
    /// Messages this large or larger are forwarded to `eager_forwards` mesh peers at once and
    /// to the others `stagger_delay` later, if they still need them (`stagger` module doc).
    pub stagger_min_bytes: usize,
    /// Mesh peers a large message is forwarded to at once, chosen at random.
    pub eager_forwards: usize,
    /// How long a large message's other forwards are held; zero turns staggering off.
    pub stagger_delay: Duration,
    /// Messages whose forwards may be held at once; past it, a message is forwarded to all at
    /// once (counted).
    pub max_staggered: usize,
    /// IDONTWANT ids remembered per peer; the older generation is forgotten first, then new
    /// ones are refused (counted).
    pub max_dont_want_per_peer: usize,
    /// How long an IDONTWANT is honoured at least (at most twice that: two generations).
    pub dont_want_ttl: Duration,
    /// Send our own messages to every subscribed peer above the publish threshold, not only
    /// the mesh.
    pub flood_publish: bool,
    /// Every this many heartbeats, a mesh whose median score is below the opportunistic-graft
    /// threshold grafts better-scored peers.
    pub opportunistic_graft_ticks: u32,
    /// Peers grafted by one opportunistic graft.
    pub opportunistic_graft_peers: usize,
    /// Topics this node subscribes to at once.
    pub max_topics: usize,
    /// Topics one peer may announce; further subscriptions are ignored (counted).
    pub max_topics_per_peer: usize,
    /// Distinct topic names remembered from all peers' subscriptions.
    pub max_known_topics: usize,
    /// Bytes queued for one peer beyond what its connection holds; a frame that does not fit
    /// makes room by dropping lower-priority frames, or is dropped (counted).
    pub max_queue_bytes: usize,
    /// A forwarded message still queued this long after it was queued is dropped: late, it
    /// helps no one, and the peer will have had it from elsewhere.
    pub forward_deadline: Duration,
    /// Messages awaiting their signature check per topic: the validation budget of a topic,
    /// so one hot topic cannot starve the others. Past it new messages are dropped (counted).
    pub max_pending_per_topic: usize,
    /// Bytes of messages awaiting their check, all topics together.
    pub max_pending_bytes: usize,
    /// Messages checked by one worker job (one batch).
    pub verify_batch: usize,
    /// Check jobs in flight at once; more messages wait in their topic's queue and go in the
    /// next batch.
    pub max_verify_jobs: usize,
    /// A check (signature and validator) that has not answered after this counts as Ignore.
    pub validation_timeout: Duration,
    /// Delivered messages queued for the application per topic (the subscription channel);
    /// the runtime drops the oldest when it is full.
    pub subscription_queue: usize,
    /// Peer scoring.
    pub score: ScoreConfig,
    /// Seed of the protocol's randomness (peer selection); the router derives it.
    pub rng_seed: u64,
}

impl Default for GossipConfig {
    fn default() -> GossipConfig {
        GossipConfig {
            d: 8,
            d_low: 6,
            d_high: 12,
            d_out: 2,
            d_score: 4,
            d_lazy: 6,
            gossip_factor: 0.25,
            heartbeat: Duration::from_secs(1),
            fanout_ttl: Duration::from_secs(60),
            history_length: 5,
            history_gossip: 3,
            seen_ttl: Duration::from_secs(120),
            max_seen: 1 << 17,
            prune_backoff: Duration::from_secs(60),
            unsubscribe_backoff: Duration::from_secs(10),
            graft_flood_threshold: Duration::from_secs(10),
            px_peers: 16,
            px_dials: 4,
            max_ihave_length: 5_000,
            max_ihave_messages: 10,
            max_graft_prune_per_heartbeat: 64,
            max_iwant_per_heartbeat: 500,
            max_promises_per_peer: 500,
            iwant_followup: Duration::from_secs(3),
            gossip_retransmission: 3,
            idontwant_min_bytes: 1024,
            stagger_min_bytes: 8 * 1024,
            eager_forwards: 2,
            stagger_delay: Duration::from_millis(150),
            max_staggered: 1_024,
            max_dont_want_per_peer: 4_096,
            dont_want_ttl: Duration::from_secs(3),
            flood_publish: true,
            opportunistic_graft_ticks: 60,
            opportunistic_graft_peers: 2,
            max_topics: 64,
            max_topics_per_peer: 64,
            max_known_topics: 4_096,
            max_queue_bytes: 4 << 20,
            forward_deadline: Duration::from_secs(2),
            max_pending_per_topic: 1_024,
            max_pending_bytes: 32 << 20,
            verify_batch: 64,
            max_verify_jobs: 4,
            validation_timeout: Duration::from_secs(5),
            subscription_queue: 1_024,
            score: ScoreConfig::default(),
            rng_seed: 0,
        }
    }
}

impl GossipConfig {
    /// Why these settings cannot work together, if they cannot.
    pub fn check(&self) -> Result<(), String> {
        if !(self.d_low <= self.d && self.d <= self.d_high) {
            return Err(format!(
                "gossip mesh degrees must satisfy d_low <= d <= d_high (got {} <= {} <= {})",
                self.d_low, self.d, self.d_high
            ));
        }
        if self.d_out >= self.d_low.max(1) || self.d_out > self.d / 2 {
            return Err(format!(
                "gossip.d_out must be below d_low and at most d/2 (got {})",
                self.d_out
            ));
        }
        if self.history_gossip > self.history_length || self.history_length == 0 {
            return Err("gossip.history_gossip must be at most history_length (>= 1)".into());
        }
        if self.subscription_queue == 0 {
            return Err("gossip.subscription_queue must be at least 1".into());
        }
        if self.eager_forwards == 0 && !self.stagger_delay.is_zero() {
            return Err("gossip.eager_forwards must be at least 1 while staggering is on".into());
        }
        if self.heartbeat.is_zero() {
            return Err("gossip.heartbeat must be above zero".into());
        }
        if self.verify_batch == 0 || self.max_verify_jobs == 0 {
            return Err("gossip.verify_batch and max_verify_jobs must be at least 1".into());
        }
        if self.px_peers > crate::wire::messages::MAX_PX_PEERS {
            return Err("gossip.px_peers is above the wire bound MAX_PX_PEERS (16)".into());
        }
        if self.max_ihave_length > crate::wire::messages::MAX_IDS_PER_CONTROL {
            return Err("gossip.max_ihave_length is above the wire bound (5000)".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_consistent_and_bad_degrees_are_refused() {
        assert_eq!(GossipConfig::default().check(), Ok(()));
        let bad = GossipConfig { d_low: 9, ..GossipConfig::default() };
        assert!(bad.check().unwrap_err().contains("d_low <= d <= d_high"));
        let bad = GossipConfig { d_out: 5, ..GossipConfig::default() };
        assert!(bad.check().unwrap_err().contains("d_out"));
        let bad = GossipConfig { eager_forwards: 0, ..GossipConfig::default() };
        assert!(bad.check().unwrap_err().contains("eager_forwards"));
        let bad = GossipConfig { subscription_queue: 0, ..GossipConfig::default() };
        assert!(bad.check().unwrap_err().contains("subscription_queue"));
        let off = GossipConfig {
            eager_forwards: 0,
            stagger_delay: Duration::ZERO,
            ..GossipConfig::default()
        };
        assert_eq!(off.check(), Ok(()));
    }
}
