//! Every message of petrel protocol version 1 (proto-spec/messages.md).
//!
//! One frame carries one [`Message`]. These are plain data: behaviour lives in `kad/`,
//! `gossip/` and `core/`. The byte layout follows from the serde derives and the options in
//! [`super::codec`]; proto-spec/messages.md writes it out field by field, and the vectors in
//! proto-spec/vectors/ pin it.
//!
//! Every list, string and byte field has a bound (the `MAX_*` constants below, named as in the
//! spec; [`Bound`] lists every bounded field). [`Message::check_bounds`] enforces them; the
//! codec calls it on every decode and every encode, so an out-of-bound message is never
//! accepted nor sent.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

pub use super::bounds::{Bound, BoundError};
use super::list;
use crate::bytes::{ByteBuf, Bytes32, Bytes64};
use crate::identity::NodeId;

/// The protocol version this implementation speaks.
pub const PROTOCOL_VERSION: u32 = 1;
/// The TLS ALPN identifier of protocol version 1 (proto-spec/transport.md).
pub const ALPN_V1: &[u8] = b"petrel/1";

/// Network name bytes in `Hello`.
pub const MAX_NETWORK_BYTES: usize = 32;
/// Agent string bytes in `Hello`.
pub const MAX_AGENT_BYTES: usize = 64;
/// Listen addresses in `Hello`.
pub const MAX_LISTEN_ADDRS: usize = 8;
/// Addresses per `PeerInfo`.
pub const MAX_ADDRS_PER_PEER: usize = 4;
/// Peers in one `Nodes`, `Value` or `Providers` list (Kademlia k).
pub const MAX_PEERS_PER_RESPONSE: usize = 20;
/// Value bytes of a DHT record.
pub const MAX_VALUE_BYTES: usize = 65_536;
/// Salt bytes of a mutable record.
pub const MAX_SALT_BYTES: usize = 64;
/// Text bytes of an error response.
pub const MAX_ERROR_TEXT_BYTES: usize = 128;
/// Topic name bytes.
pub const MAX_TOPIC_BYTES: usize = 256;
/// Payload bytes of a published gossip message: 1 MiB less 1 KiB of headroom, so the largest
/// message still fits a frame of the default 1 MiB limit.
pub const MAX_PAYLOAD_BYTES: usize = (1 << 20) - 1024;
/// Message ids in one `IHAVE`, `IWANT` or `IDONTWANT`.
pub const MAX_IDS_PER_CONTROL: usize = 5_000;
/// Peers offered for exchange in one `PRUNE`.
pub const MAX_PX_PEERS: usize = 16;

/// `Hello.features` bit: the sender answers Kademlia requests (a DHT server).
pub const FEATURE_KAD: u64 = 1 << 0;
/// `Hello.features` bit: the sender speaks gossip.
pub const FEATURE_GOSSIP: u64 = 1 << 1;

/// A point of the 256-bit Kademlia key space: a record key or a lookup target.
pub type Key = NodeId;

/// A gossip message id: SHA-256 over the author key and sequence number (proto-spec
/// messages.md §5.1).
pub type MessageId = Bytes32;

/// One frame's payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// First message each side sends after the TLS handshake (tag 0).
    Hello(Hello),
    /// A request; the peer answers with a `Response` carrying the same id (tag 1).
    Request {
        /// Chosen by the requester, unique among its requests in flight on this connection.
        id: u64,
        /// The request.
        body: Request,
    },
    /// The answer to the request with the same id (tag 2).
    Response {
        /// The request's id.
        id: u64,
        /// The answer.
        body: Response,
    },
    /// A gossip frame: subscription, published message or control (tag 3).
    Gossip(Gossip),
    /// The sender is closing the connection, and why (tag 4).
    Goodbye(Goodbye),
}

/// The post-TLS hello (proto-spec/handshake.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// The protocol version the sender speaks on this connection; must equal the version
    /// selected by ALPN.
    pub version: u32,
    /// Network name; nodes of different networks do not talk (at most `MAX_NETWORK_BYTES`).
    pub network: String,
    /// The id proof-of-work difficulty the sender's network requires; must match ours.
    pub id_pow_bits: u8,
    /// Feature bits (`FEATURE_*`); unknown bits are ignored.
    pub features: u64,
    /// Free-form implementation name and version (at most `MAX_AGENT_BYTES`).
    pub agent: String,
    /// Where the sender accepts connections (at most `MAX_LISTEN_ADDRS`).
    #[serde(deserialize_with = "list::deserialize")]
    pub listen_addrs: Vec<SocketAddr>,
}

/// A peer as shared in responses and peer exchange.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PeerInfo {
    /// The peer's id; a dialer expects exactly this key in TLS.
    pub id: NodeId,
    /// Its addresses (at most `MAX_ADDRS_PER_PEER`).
    #[serde(deserialize_with = "list::deserialize")]
    pub addrs: Vec<SocketAddr>,
}

/// Kademlia requests (proto-spec/messages.md §3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// Liveness check; answered with `Pong` (tag 0).
    Ping,
    /// The k closest peers to `target` the responder knows; answered with `Nodes` (tag 1).
    FindNode {
        /// The lookup target.
        target: Key,
    },
    /// The record under `key` if held, otherwise closer peers; answered with `Value` (tag 2).
    FindValue {
        /// The record key.
        key: Key,
    },
    /// Store a record; answered with `Stored` or `Error` (tag 3).
    Store {
        /// The record; its key is derived from it.
        record: Record,
        /// Requested lifetime; the holder may shorten it to its own maximum.
        ttl_secs: u32,
        /// Mutable records only: store only if the held record has exactly this sequence
        /// number (compare-and-swap). `None` = unconditional.
        expected_seq: Option<u64>,
    },
    /// Announce that `provider` (which must be the sender) provides `key`; answered with
    /// `ProviderAdded` or `Error` (tag 4).
    AddProvider {
        /// The provided key.
        key: Key,
        /// The provider: the sender's own id and addresses.
        provider: PeerInfo,
        /// Requested lifetime of the provider record.
        ttl_secs: u32,
    },
    /// Providers of `key` plus closer peers; answered with `Providers` (tag 5).
    GetProviders {
        /// The provided key.
        key: Key,
    },
}

/// Kademlia responses (proto-spec/messages.md §3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// Answer to `Ping`: the address the request came from, as the responder saw it (tag 0).
    Pong {
        /// The requester's address as observed by the responder.
        observed: SocketAddr,
    },
    /// Answer to `FindNode` (tag 1).
    Nodes {
        /// Up to k peers closest to the target.
        #[serde(deserialize_with = "list::deserialize")]
        closer: Vec<PeerInfo>,
    },
    /// Answer to `FindValue` (tag 2).
    Value {
        /// The record, if held.
        record: Option<Record>,
        /// Closer peers (may be empty when the record is returned).
        #[serde(deserialize_with = "list::deserialize")]
        closer: Vec<PeerInfo>,
    },
    /// The `Store` succeeded (tag 3).
    Stored,
    /// The `AddProvider` succeeded (tag 4).
    ProviderAdded,
    /// Answer to `GetProviders` (tag 5).
    Providers {
        /// Known providers of the key.
        #[serde(deserialize_with = "list::deserialize")]
        providers: Vec<PeerInfo>,
        /// Closer peers.
        #[serde(deserialize_with = "list::deserialize")]
        closer: Vec<PeerInfo>,
    },
    /// The request failed (tag 6).
    Error {
        /// Why.
        code: ErrorCode,
        /// Human-readable detail for logs, never parsed (at most `MAX_ERROR_TEXT_BYTES`).
        text: String,
    },
}

/// Error codes of `Response::Error` (proto-spec/messages.md §3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ErrorCode {
    /// The request is well-formed but makes no sense (code 0).
    BadRequest,
    /// The record does not belong under its key: an immutable value whose SHA-256 differs,
    /// or a returned record for another key (code 1).
    KeyMismatch,
    /// A mutable record's signature does not verify (code 2).
    BadSignature,
    /// A mutable record's sequence number is lower than the one held (code 3).
    StaleSequence,
    /// Same sequence number as the held record but a different value (code 4).
    SequenceConflict,
    /// Compare-and-swap failed: the held sequence number is not the expected one (code 5).
    CasMismatch,
    /// The value exceeds this holder's limit (code 6).
    ValueTooLarge,
    /// The requesting peer has used its storage quota on this holder (code 7).
    QuotaExceeded,
    /// This holder's global storage cap is reached (code 8).
    StorageFull,
    /// `AddProvider` named a provider other than the sender (code 9).
    ProviderMismatch,
    /// The requesting peer exceeds its request rate (code 10).
    RateLimited,
    /// The responder does not offer this service (code 11).
    Unsupported,
    /// The responder is temporarily overloaded; retry elsewhere (code 12).
    Overloaded,
}

/// A DHT record (proto-spec/records.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Record {
    /// Content-addressed: key = SHA-256(value) (tag 0).
    Immutable {
        /// The value (at most `MAX_VALUE_BYTES`).
        value: ByteBuf,
    },
    /// Signed and updatable: key = SHA-256(public key ‖ salt) (tag 1).
    Mutable(MutableRecord),
}

/// A signed, sequenced record (proto-spec/records.md §2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MutableRecord {
    /// The author's Ed25519 public key.
    pub public_key: Bytes32,
    /// Distinguishes records of one author (at most `MAX_SALT_BYTES`).
    pub salt: ByteBuf,
    /// Sequence number; a holder never replaces a record with a lower one.
    pub seq: u64,
    /// The value (at most `MAX_VALUE_BYTES`).
    pub value: ByteBuf,
    /// Ed25519 signature over the mutable-record signing input.
    pub signature: Bytes64,
}

/// A provider announcement as stored by a holder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderRecord {
    /// The provided key.
    pub key: Key,
    /// Who provides it.
    pub provider: PeerInfo,
}

/// Gossip frames (proto-spec/messages.md §5).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Gossip {
    /// The sender joined `topic` (tag 0).
    Subscribe {
        /// The topic.
        topic: String,
    },
    /// The sender left `topic` (tag 1).
    Unsubscribe {
        /// The topic.
        topic: String,
    },
    /// A published message (tag 2).
    Publish(GossipMessage),
    /// IHAVE: the sender has these recent messages of `topic` (tag 3).
    IHave {
        /// The topic.
        topic: String,
        /// Message ids (at most `MAX_IDS_PER_CONTROL`).
        #[serde(deserialize_with = "list::deserialize")]
        ids: Vec<MessageId>,
    },
    /// IWANT: send these messages (tag 4).
    IWant {
        /// Message ids (at most `MAX_IDS_PER_CONTROL`).
        #[serde(deserialize_with = "list::deserialize")]
        ids: Vec<MessageId>,
    },
    /// GRAFT: add the sender to our mesh for `topic` (tag 5).
    Graft {
        /// The topic.
        topic: String,
    },
    /// PRUNE: the sender removed us from its mesh for `topic` (tag 6).
    Prune {
        /// The topic.
        topic: String,
        /// Do not GRAFT again for this many seconds.
        backoff_secs: u32,
        /// Other peers in the topic, for peer exchange (at most `MAX_PX_PEERS`).
        #[serde(deserialize_with = "list::deserialize")]
        peers: Vec<PeerInfo>,
    },
    /// IDONTWANT: the sender already has these messages (tag 7).
    IDontWant {
        /// Message ids (at most `MAX_IDS_PER_CONTROL`).
        #[serde(deserialize_with = "list::deserialize")]
        ids: Vec<MessageId>,
    },
}

/// A message published to a topic, signed by its author (proto-spec/messages.md §5.1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GossipMessage {
    /// The author's Ed25519 public key.
    pub author: Bytes32,
    /// Per-author sequence number.
    pub seqno: u64,
    /// The topic (at most `MAX_TOPIC_BYTES`).
    pub topic: String,
    /// Application bytes (at most `MAX_PAYLOAD_BYTES`).
    pub payload: ByteBuf,
    /// Ed25519 signature by `author` over the gossip signing input.
    pub signature: Bytes64,
}

/// Sent before closing a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Goodbye {
    /// Why the sender closes.
    pub reason: GoodbyeReason,
}

/// Why a connection is being closed (proto-spec/messages.md §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum GoodbyeReason {
    /// The node is shutting down (code 0).
    Shutdown,
    /// No traffic for the idle timeout (code 1).
    IdleTimeout,
    /// The connection limit is reached (code 2).
    TooManyConnections,
    /// Another connection to the same peer is kept instead (code 3).
    DuplicateConnection,
    /// The peer broke the protocol (code 4).
    ProtocolViolation,
    /// No common protocol version (code 5).
    IncompatibleVersion,
    /// Different network name or id-PoW difficulty (code 6).
    NetworkMismatch,
    /// The peer persistently exceeded its rate limits (code 7).
    RateLimited,
    /// The peer's score fell below the disconnect threshold (code 8).
    LowScore,
}

impl Message {
    /// Short name for logs and metric labels.
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Hello(_) => "hello",
            Message::Request { body, .. } => body.kind(),
            Message::Response { body, .. } => body.kind(),
            Message::Gossip(g) => g.kind(),
            Message::Goodbye(_) => "goodbye",
        }
    }
}

impl Request {
    /// Short name for logs and metric labels.
    pub fn kind(&self) -> &'static str {
        match self {
            Request::Ping => "ping",
            Request::FindNode { .. } => "find_node",
            Request::FindValue { .. } => "find_value",
            Request::Store { .. } => "store",
            Request::AddProvider { .. } => "add_provider",
            Request::GetProviders { .. } => "get_providers",
        }
    }
}

impl Response {
    /// Short name for logs and metric labels.
    pub fn kind(&self) -> &'static str {
        match self {
            Response::Pong { .. } => "pong",
            Response::Nodes { .. } => "nodes",
            Response::Value { .. } => "value",
            Response::Stored => "stored",
            Response::ProviderAdded => "provider_added",
            Response::Providers { .. } => "providers",
            Response::Error { .. } => "error",
        }
    }
}

impl Record {
    /// The value bytes.
    pub fn value(&self) -> &[u8] {
        match self {
            Record::Immutable { value } => &value.0,
            Record::Mutable(m) => &m.value.0,
        }
    }
}

impl Gossip {
    /// Short name for logs and metric labels.
    pub fn kind(&self) -> &'static str {
        match self {
            Gossip::Subscribe { .. } => "subscribe",
            Gossip::Unsubscribe { .. } => "unsubscribe",
            Gossip::Publish(_) => "publish",
            Gossip::IHave { .. } => "ihave",
            Gossip::IWant { .. } => "iwant",
            Gossip::Graft { .. } => "graft",
            Gossip::Prune { .. } => "prune",
            Gossip::IDontWant { .. } => "idontwant",
        }
    }
}
