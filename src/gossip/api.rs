//! What the application says to gossip and hears from it: commands, replies, events, errors
//! and counters.

use std::fmt;
use std::sync::Arc;

use crate::identity::NodeId;
use crate::wire::messages::{GossipMessage, MessageId};

/// An application command for gossip.
#[derive(Debug, Clone)]
pub enum GossipCommand {
    /// Join a topic: build its mesh, deliver its messages.
    Subscribe(String),
    /// Leave a topic.
    Unsubscribe(String),
    /// Publish a message the application signed (`GossipMessage::sign`, with a sequence
    /// number it never reuses).
    Publish(GossipMessage),
    /// Whether a validator judges messages of a topic on the worker pool before they are
    /// delivered and forwarded (the runtime holds the validator itself).
    SetValidated {
        /// The topic.
        topic: String,
        /// On or off.
        on: bool,
    },
    /// How many mesh peers each subscribed topic has.
    Meshes,
}

/// The answer to a [`GossipCommand`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GossipReply {
    /// Answer to `Subscribe`.
    Subscribed(Result<(), GossipError>),
    /// Answer to `Unsubscribe`: whether we were subscribed.
    Unsubscribed(bool),
    /// Answer to `Publish`.
    Published(Result<Published, GossipError>),
    /// Answer to `SetValidated`.
    ValidatedSet,
    /// Answer to `Meshes`: (topic, mesh peers), by topic.
    Meshes(Vec<(String, usize)>),
}

/// A message we published.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    /// Its id.
    pub id: MessageId,
    /// Peers it was sent to directly.
    pub peers: usize,
}

/// Why a gossip command failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GossipError {
    /// The node subscribes to (or publishes to) its maximum number of topics already.
    TooManyTopics,
    /// The topic name is empty or longer than `MAX_TOPIC_BYTES`.
    BadTopic,
    /// The payload is over `MAX_PAYLOAD_BYTES`.
    TooLarge,
    /// A message with this id was seen already (a reused sequence number).
    Duplicate,
}

/// A notification from gossip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GossipEvent {
    /// A verified (and, if the topic has a validator, accepted) message of a topic we
    /// subscribe to, delivered once.
    Message(Delivery),
}

/// A message delivered to a subscriber.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Who sent us the first copy.
    pub from: NodeId,
    /// Its id.
    pub id: MessageId,
    /// The message (topic, author, payload).
    pub message: Arc<GossipMessage>,
}

/// Counters of gossip, for the metrics layer.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct GossipStats {
    /// Messages we published.
    pub published: u64,
    /// Forwards of large messages held back (`GossipConfig::stagger_delay`).
    pub staggered: u64,
    /// Held forwards not sent: the peer sent an IDONTWANT or a copy meanwhile, or left.
    pub staggered_cancelled: u64,
    /// Large messages forwarded to all at once because `max_staggered` were held.
    pub staggered_full: u64,
    /// `Publish` frames received (every copy).
    pub received: u64,
    /// Messages delivered to the application (verified, first copy).
    pub delivered: u64,
    /// Copies of messages already seen or waiting (no check spent on them).
    pub duplicates: u64,
    /// Messages of topics we do not subscribe to (dropped: we relay only our topics).
    pub unsubscribed_topic: u64,
    /// Messages whose signature did not verify.
    pub invalid_signature: u64,
    /// Messages a validator rejected.
    pub rejected: u64,
    /// Messages a validator ignored, or whose check did not answer in time or was refused.
    pub ignored: u64,
    /// Messages dropped because their topic's validation budget was full.
    pub validation_dropped: u64,
    /// Forged copies kept as the alternate of a waiting message, and those dropped.
    pub alternates: u64,
    /// Check jobs sent to workers.
    pub check_jobs: u64,
    /// Messages forwarded (frames, one per peer).
    pub forwarded: u64,
    /// IHAVE frames sent and received.
    pub ihave_sent: u64,
    /// See `ihave_sent`.
    pub ihave_received: u64,
    /// IWANT frames sent and received.
    pub iwant_sent: u64,
    /// See `iwant_sent`.
    pub iwant_received: u64,
    /// Messages sent in answer to IWANT.
    pub iwant_served: u64,
    /// IDONTWANT frames sent and received.
    pub idontwant_sent: u64,
    /// See `idontwant_sent`.
    pub idontwant_received: u64,
    /// Sends skipped because the peer said IDONTWANT (queued ones cancelled included).
    pub idontwant_honoured: u64,
    /// IDONTWANT ids received and kept: a forward to that peer may still be decided.
    pub idontwant_kept: u64,
    /// IDONTWANT ids received for messages already forwarded or judged: nothing to keep.
    pub idontwant_settled: u64,
    /// IDONTWANT ids not kept because the peer had `max_dont_want_per_peer` in force.
    pub idontwant_over_cap: u64,
    /// GRAFTs and PRUNEs sent.
    pub grafts_sent: u64,
    /// See `grafts_sent`.
    pub prunes_sent: u64,
    /// GRAFTs refused (backoff, score, not subscribed).
    pub grafts_refused: u64,
    /// IWANT promises broken (announced, asked, never delivered).
    pub broken_promises: u64,
    /// Peer-exchange candidates dialled.
    pub px_dials: u64,
    /// Frames ignored: over a per-heartbeat cap, from a graylisted peer, or from a peer that
    /// did not announce gossip.
    pub ignored_frames: u64,
    /// Subscriptions refused by the per-peer or total topic caps.
    pub subscriptions_refused: u64,
    /// Frames dropped from a peer's outbound queue: full, or pushed out by higher priority.
    pub dropped_sends: u64,
    /// Forwards dropped because they waited past their deadline.
    pub expired_forwards: u64,
    /// Frames that waited in an outbound queue.
    pub queued_sends: u64,
    /// Heartbeats run.
    pub heartbeats: u64,
    /// Gossip peers connected now.
    pub peers: u64,
    /// Mesh peers now, all topics together.
    pub mesh_peers: u64,
    /// Topics subscribed now.
    pub topics: u64,
    /// Messages in the message cache, and their payload bytes.
    pub cached_messages: u64,
    /// See `cached_messages`.
    pub cached_bytes: u64,
    /// Ids in the seen cache.
    pub seen_ids: u64,
    /// Messages waiting for their check.
    pub pending_checks: u64,
    /// Gauge: messages whose staggered forwards are held now.
    pub staggered_held: u64,
    /// Gauge: IDONTWANT ids in force, all peers.
    pub dont_want_ids: u64,
    /// Bytes in outbound queues, all peers.
    pub queued_bytes: u64,
}

impl fmt::Display for GossipError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::TooManyTopics => "too many topics",
            Self::BadTopic => "topic name is empty or too long",
            Self::TooLarge => "message payload too large",
            Self::Duplicate => "a message with this id was published already",
        })
    }
}

impl std::error::Error for GossipError {}
