//! The control protocol (proto-spec/control.md): what a client asks a running node over its
//! control socket, and what the node answers.
//!
//! Each request and each response is one frame of the wire's framing (framing.md) whose payload
//! is encoded with the wire's bincode options ([`crate::wire::codec`]): there is no second
//! encoding. Every list, string and byte field has a bound (the `MAX_*` constants here and in
//! [`crate::wire::messages`]); [`decode_request`] and [`decode_response`] check them after
//! every decode, and the encoders before every encode, so an out-of-bound value is neither
//! accepted nor sent.
//!
//! A connection carries requests one at a time, each answered by exactly one response, except
//! `Subscribe`, which is answered by `Subscribed` and then one `Message` per delivery until
//! either side closes (control.md §6).

use std::fmt;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::bytes::ByteBuf;
use crate::identity::NodeId;
use crate::wire::codec::{self, DecodeError, EncodeError};
use crate::wire::frame::DEFAULT_MAX_FRAME_BYTES;
use crate::wire::list;
use crate::wire::messages::{
    BoundError, GossipMessage, Key, MessageId, MutableRecord, PeerInfo, Record, MAX_ADDRS_PER_PEER,
    MAX_AGENT_BYTES, MAX_LISTEN_ADDRS, MAX_PAYLOAD_BYTES, MAX_PEERS_PER_RESPONSE, MAX_SALT_BYTES,
    MAX_TOPIC_BYTES, MAX_VALUE_BYTES,
};

/// The frame limit of both ends: the largest request (a `Publish` of `MAX_PAYLOAD_BYTES` under
/// a topic of `MAX_TOPIC_BYTES`) and the largest response (its delivery) fit in it.
pub const MAX_CONTROL_FRAME_BYTES: usize = DEFAULT_MAX_FRAME_BYTES;
/// Peers in one `Peers` response; a node with more connected lists the first ones.
pub const MAX_CONTROL_PEERS: usize = 1024;
/// Topics in one `Status` response.
pub const MAX_CONTROL_TOPICS: usize = 256;
/// Text bytes of an `Error` response.
pub const MAX_CONTROL_TEXT_BYTES: usize = 256;

/// A client's request (control.md §4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ControlRequest {
    /// The node's id, address and a few figures; answered with `Status` (tag 0).
    Status,
    /// The connected peers; answered with `Peers` (tag 1).
    Peers,
    /// Connect to a peer, which must prove the key of `id`; answered with `Connected` (tag 2).
    Connect {
        /// The id TLS must authenticate.
        id: NodeId,
        /// Where to dial.
        addr: SocketAddr,
    },
    /// Store an immutable record; answered with `Stored` (tag 3).
    Put {
        /// The value (at most `MAX_VALUE_BYTES`).
        value: ByteBuf,
    },
    /// Store a mutable record the client signed; answered with `Stored` (tag 4).
    PutMutable {
        /// The signed record.
        record: MutableRecord,
    },
    /// Find the record under `key`; answered with `Value` or `Error` `not_found` (tag 5).
    Get {
        /// The record key.
        key: Key,
    },
    /// Announce the node as a provider of `key`; answered with `Stored` (tag 6).
    Provide {
        /// The provided key.
        key: Key,
    },
    /// Find providers of `key`; answered with `Providers` (tag 7).
    Providers {
        /// The provided key.
        key: Key,
    },
    /// Sign `payload` with the node's key and publish it; answered with `Published` (tag 8).
    Publish {
        /// The topic (at most `MAX_TOPIC_BYTES`).
        topic: String,
        /// The payload (at most `MAX_PAYLOAD_BYTES`).
        payload: ByteBuf,
    },
    /// Join `topic` and stream its messages: `Subscribed`, then one `Message` each (tag 9).
    Subscribe {
        /// The topic (at most `MAX_TOPIC_BYTES`).
        topic: String,
    },
    /// Stop the node gracefully; answered with `ShuttingDown` (tag 10).
    Shutdown,
}

/// The node's answer (control.md §5).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ControlResponse {
    /// The request failed (tag 0).
    Error {
        /// Why.
        code: ControlErrorCode,
        /// Detail for a human, never parsed (at most `MAX_CONTROL_TEXT_BYTES`).
        text: String,
    },
    /// Answer to `Status` (tag 1).
    Status(Status),
    /// Answer to `Peers` (tag 2).
    Peers {
        /// The connected peers (at most `MAX_CONTROL_PEERS`).
        #[serde(deserialize_with = "list::deserialize")]
        peers: Vec<PeerEntry>,
    },
    /// Answer to `Connect`: the peer is connected (tag 3).
    Connected {
        /// Its authenticated id.
        id: NodeId,
    },
    /// Answer to `Put`, `PutMutable` and `Provide` (tag 4).
    Stored {
        /// The record's (or provided) key.
        key: Key,
        /// Peers that accepted it.
        stored: u64,
        /// Peers asked.
        attempted: u64,
    },
    /// Answer to `Get` (tag 5).
    Value {
        /// The record found.
        record: Record,
        /// Found in the node's own store without asking anyone.
        local: bool,
    },
    /// Answer to `Providers`; empty when none was found (tag 6).
    Providers {
        /// The providers (at most `MAX_PEERS_PER_RESPONSE`).
        #[serde(deserialize_with = "list::deserialize")]
        providers: Vec<PeerInfo>,
    },
    /// Answer to `Publish` (tag 7).
    Published {
        /// The message id.
        id: MessageId,
        /// Peers it was sent to directly.
        peers: u64,
    },
    /// First answer to `Subscribe`: the node is in the topic (tag 8).
    Subscribed,
    /// One delivered message of a subscribed topic (tag 9).
    Message(Delivered),
    /// Answer to `Shutdown`: the node is stopping (tag 10).
    ShuttingDown,
}

/// What `Status` reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// The node's id.
    pub id: NodeId,
    /// The address it listens on.
    pub listen_addr: SocketAddr,
    /// Seconds since the control server started (with the node).
    pub uptime_secs: u64,
    /// Connected peers.
    pub peers: u64,
    /// Inbound connections.
    pub connections_inbound: u64,
    /// Outbound connections.
    pub connections_outbound: u64,
    /// Routing table entries.
    pub routing_entries: u64,
    /// Records held.
    pub records: u64,
    /// Provider entries held.
    pub provider_records: u64,
    /// Subscribed topics and their mesh sizes (at most `MAX_CONTROL_TOPICS`).
    #[serde(deserialize_with = "list::deserialize")]
    pub topics: Vec<TopicMesh>,
}

/// A subscribed topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicMesh {
    /// The topic (at most `MAX_TOPIC_BYTES`).
    pub topic: String,
    /// Peers in its mesh.
    pub mesh_peers: u64,
}

/// A connected peer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerEntry {
    /// Its id.
    pub id: NodeId,
    /// The connection's remote address.
    pub addr: SocketAddr,
    /// Who dialled.
    pub direction: PeerDirection,
    /// Its agent string (at most `MAX_AGENT_BYTES`).
    pub agent: String,
    /// Where it listens, as it announced (at most `MAX_LISTEN_ADDRS`).
    #[serde(deserialize_with = "list::deserialize")]
    pub listen_addrs: Vec<SocketAddr>,
}

/// Who dialled a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PeerDirection {
    /// The peer dialled the node (tag 0).
    Inbound,
    /// The node dialled the peer (tag 1).
    Outbound,
}

/// A message delivered to a subscriber.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivered {
    /// The peer the node got the first copy from.
    pub from: NodeId,
    /// Messages of this subscription dropped so far because the client did not keep up.
    pub lost: u64,
    /// The message as its author signed it (topic and payload bounded as in a `Publish`).
    pub message: GossipMessage,
}

/// Why a request failed (control.md §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ControlErrorCode {
    /// The request did not decode, or asks something invalid (code 0).
    BadRequest,
    /// The request's frame header announced more than `MAX_CONTROL_FRAME_BYTES`; the node
    /// closes the connection after this answer (code 1).
    TooLarge,
    /// The node serves its maximum number of clients, or its command queue is full; after a
    /// full client table the node closes the connection (code 2).
    Busy,
    /// The request did not arrive whole in time (the node closes the connection), or the node
    /// did not answer in time (code 3).
    Timeout,
    /// `Get` found no record (code 4).
    NotFound,
    /// The operation ran and failed; the text says why (code 5).
    Failed,
    /// The node is stopping (code 6).
    Stopping,
    /// The node does not run the protocol the request needs, such as gossip (code 7).
    Unsupported,
}

impl ControlErrorCode {
    /// Stable snake_case name, as control.md §7 lists it.
    pub fn name(self) -> &'static str {
        match self {
            Self::BadRequest => "bad_request",
            Self::TooLarge => "too_large",
            Self::Busy => "busy",
            Self::Timeout => "timeout",
            Self::NotFound => "not_found",
            Self::Failed => "failed",
            Self::Stopping => "stopping",
            Self::Unsupported => "unsupported",
        }
    }
}

impl fmt::Display for ControlErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl ControlResponse {
    /// An `Error` with `text` cut to `MAX_CONTROL_TEXT_BYTES` on a character boundary.
    pub fn error(code: ControlErrorCode, text: impl fmt::Display) -> ControlResponse {
        let mut text = text.to_string();
        if text.len() > MAX_CONTROL_TEXT_BYTES {
            let mut end = MAX_CONTROL_TEXT_BYTES;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            text.truncate(end);
        }
        ControlResponse::Error { code, text }
    }
}

/// Appends the frame of `request` to `out`; refuses a request over a bound or the frame limit.
pub fn encode_request(request: &ControlRequest, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    request.check_bounds().map_err(EncodeError::OverBound)?;
    codec::encode_value_frame(request, MAX_CONTROL_FRAME_BYTES, out)
}

/// Decodes a request frame's payload and checks its bounds.
pub fn decode_request(payload: &[u8]) -> Result<ControlRequest, DecodeError> {
    let request: ControlRequest = codec::decode_value(payload, MAX_CONTROL_FRAME_BYTES)?;
    request.check_bounds().map_err(DecodeError::OverBound)?;
    Ok(request)
}

/// Appends the frame of `response` to `out`; refuses a response over a bound or the limit.
pub fn encode_response(response: &ControlResponse, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    response.check_bounds().map_err(EncodeError::OverBound)?;
    codec::encode_value_frame(response, MAX_CONTROL_FRAME_BYTES, out)
}

/// Decodes a response frame's payload and checks its bounds.
pub fn decode_response(payload: &[u8]) -> Result<ControlResponse, DecodeError> {
    let response: ControlResponse = codec::decode_value(payload, MAX_CONTROL_FRAME_BYTES)?;
    response.check_bounds().map_err(DecodeError::OverBound)?;
    Ok(response)
}

impl ControlRequest {
    /// Checks every bound of control.md §8, in wire order; the first violation is returned.
    pub fn check_bounds(&self) -> Result<(), BoundError> {
        match self {
            Self::Put { value } => bound("put.value", value.len(), MAX_VALUE_BYTES),
            Self::PutMutable { record } => {
                bound("put_mutable.salt", record.salt.len(), MAX_SALT_BYTES)?;
                bound("put_mutable.value", record.value.len(), MAX_VALUE_BYTES)
            }
            Self::Publish { topic, payload } => {
                bound("publish.topic", topic.len(), MAX_TOPIC_BYTES)?;
                bound("publish.payload", payload.len(), MAX_PAYLOAD_BYTES)
            }
            Self::Subscribe { topic } => bound("subscribe.topic", topic.len(), MAX_TOPIC_BYTES),
            Self::Status
            | Self::Peers
            | Self::Connect { .. }
            | Self::Get { .. }
            | Self::Provide { .. }
            | Self::Providers { .. }
            | Self::Shutdown => Ok(()),
        }
    }
}

impl ControlResponse {
    /// Checks every bound of control.md §8, in wire order; the first violation is returned.
    pub fn check_bounds(&self) -> Result<(), BoundError> {
        match self {
            Self::Error { text, .. } => bound("error.text", text.len(), MAX_CONTROL_TEXT_BYTES),
            Self::Status(s) => {
                bound("status.topics", s.topics.len(), MAX_CONTROL_TOPICS)?;
                s.topics
                    .iter()
                    .try_for_each(|t| bound("status.topics.topic", t.topic.len(), MAX_TOPIC_BYTES))
            }
            Self::Peers { peers } => {
                bound("peers.peers", peers.len(), MAX_CONTROL_PEERS)?;
                peers.iter().try_for_each(|p| {
                    bound("peers.peers.agent", p.agent.len(), MAX_AGENT_BYTES)?;
                    bound("peers.peers.listen_addrs", p.listen_addrs.len(), MAX_LISTEN_ADDRS)
                })
            }
            Self::Value { record: Record::Immutable { value }, .. } => {
                bound("value.immutable.value", value.len(), MAX_VALUE_BYTES)
            }
            Self::Value { record: Record::Mutable(m), .. } => {
                bound("value.mutable.salt", m.salt.len(), MAX_SALT_BYTES)?;
                bound("value.mutable.value", m.value.len(), MAX_VALUE_BYTES)
            }
            Self::Providers { providers } => {
                bound("providers.providers", providers.len(), MAX_PEERS_PER_RESPONSE)?;
                providers.iter().try_for_each(|p| {
                    bound("providers.providers.addrs", p.addrs.len(), MAX_ADDRS_PER_PEER)
                })
            }
            Self::Message(d) => {
                bound("message.topic", d.message.topic.len(), MAX_TOPIC_BYTES)?;
                bound("message.payload", d.message.payload.len(), MAX_PAYLOAD_BYTES)
            }
            Self::Connected { .. }
            | Self::Stored { .. }
            | Self::Published { .. }
            | Self::Subscribed
            | Self::ShuttingDown => Ok(()),
        }
    }
}

/// `Err` naming `field` if `len` is above `max`.
fn bound(field: &'static str, len: usize, max: usize) -> Result<(), BoundError> {
    if len > max {
        return Err(BoundError { field, len, max });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Keypair;
    use crate::wire::frame::HEADER_BYTES;

    fn round_trip_request(request: ControlRequest) {
        let mut frame = Vec::new();
        encode_request(&request, &mut frame).unwrap();
        assert_eq!(decode_request(&frame[HEADER_BYTES..]), Ok(request));
    }

    #[test]
    fn every_request_round_trips() {
        let kp = Keypair::from_seed([1; 32]);
        let record = MutableRecord::sign(&kp, b"s".to_vec(), 3, b"v".to_vec());
        let key = NodeId::from_bytes([7; 32]);
        for request in [
            ControlRequest::Status,
            ControlRequest::Peers,
            ControlRequest::Connect { id: key, addr: "127.0.0.1:1".parse().unwrap() },
            ControlRequest::Put { value: ByteBuf::from(vec![1, 2]) },
            ControlRequest::PutMutable { record },
            ControlRequest::Get { key },
            ControlRequest::Provide { key },
            ControlRequest::Providers { key },
            ControlRequest::Publish { topic: "t".into(), payload: ByteBuf::from(vec![3]) },
            ControlRequest::Subscribe { topic: "t".into() },
            ControlRequest::Shutdown,
        ] {
            round_trip_request(request);
        }
    }

    #[test]
    fn the_largest_publish_and_its_delivery_fit_the_frame_limit() {
        let topic = "t".repeat(MAX_TOPIC_BYTES);
        let payload = vec![0xaa; MAX_PAYLOAD_BYTES];
        round_trip_request(ControlRequest::Publish {
            topic: topic.clone(),
            payload: ByteBuf::from(payload.clone()),
        });
        let message = GossipMessage::sign(&Keypair::from_seed([2; 32]), 1, topic, payload);
        let delivered = ControlResponse::Message(Delivered {
            from: NodeId::from_bytes([1; 32]),
            lost: u64::MAX,
            message,
        });
        let mut frame = Vec::new();
        encode_response(&delivered, &mut frame).unwrap();
        assert_eq!(decode_response(&frame[HEADER_BYTES..]), Ok(delivered));
    }

    #[test]
    fn over_bound_values_are_refused_both_ways() {
        let request = ControlRequest::Put { value: ByteBuf::from(vec![0; MAX_VALUE_BYTES + 1]) };
        let expected =
            BoundError { field: "put.value", len: MAX_VALUE_BYTES + 1, max: MAX_VALUE_BYTES };
        assert_eq!(
            encode_request(&request, &mut Vec::new()),
            Err(EncodeError::OverBound(expected))
        );
        // Put is tag 3, then the value's u64 length and bytes.
        let mut payload = vec![3, 0, 0, 0];
        payload.extend_from_slice(&((MAX_VALUE_BYTES + 1) as u64).to_le_bytes());
        payload.resize(payload.len() + MAX_VALUE_BYTES + 1, 0);
        assert_eq!(decode_request(&payload), Err(DecodeError::OverBound(expected)));
    }

    #[test]
    fn garbage_is_a_decode_error_never_a_panic() {
        assert_eq!(decode_request(&[]), Err(DecodeError::Truncated));
        assert_eq!(decode_request(&[11, 0, 0, 0]), Err(DecodeError::UnknownTag));
        assert_eq!(decode_request(&[0, 0, 0, 0, 0]), Err(DecodeError::TrailingBytes { count: 1 }));
        // A response `Error` with code 8, outside the table.
        assert_eq!(decode_response(&[0, 0, 0, 0, 8, 0, 0, 0]), Err(DecodeError::UnknownTag));
        let mut state = 0x1234_5678_u32;
        for len in 0..512 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 17;
                    state ^= state << 5;
                    (state % 12) as u8
                })
                .collect();
            let _ = decode_request(&bytes);
            let _ = decode_response(&bytes);
        }
    }

    #[test]
    fn error_text_is_cut_on_a_character_boundary() {
        let long = "é".repeat(MAX_CONTROL_TEXT_BYTES);
        let ControlResponse::Error { text, .. } =
            ControlResponse::error(ControlErrorCode::Failed, long)
        else {
            panic!("not an error");
        };
        assert!(text.len() <= MAX_CONTROL_TEXT_BYTES && text.len() >= MAX_CONTROL_TEXT_BYTES - 1);
    }
}
