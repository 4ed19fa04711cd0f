//! The one place the bincode options live (proto-spec/messages.md §1).
//!
//! Options: fixed-width integers, little-endian, a size limit equal to the frame limit, and
//! trailing bytes rejected. Enum tags are `u32`, sequence and string lengths `u64`, `Option` a
//! one-byte tag. Every decode and encode also checks the documented bounds
//! ([`Message::check_bounds`]), so this module is the only way messages enter or leave a
//! connection. The control socket's requests and responses (proto-spec/control.md) go through
//! [`decode_value`] and [`encode_value_frame`]: the same options, their bounds checked by
//! their own module.
//!
//! Decoding never panics and never allocates more than the frame limit: a string or byte
//! length is charged against the limit before its bytes are read (`LengthOverLimit`), and a
//! list reserves at most a few elements, then reads element by element (`wire::list`), so a
//! list count beyond the payload ends as `Truncated`. Counts and lengths are `u64` on every
//! host: the error a payload yields does not depend on the width of `usize`.

use std::fmt;

use bincode::Options;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::frame::{FrameError, HEADER_BYTES};
use super::messages::{BoundError, Message};

/// Decodes one frame payload into a message.
pub fn decode(payload: &[u8], max_frame_bytes: usize) -> Result<Message, DecodeError> {
    let msg: Message = decode_value(payload, max_frame_bytes)?;
    msg.check_bounds().map_err(DecodeError::OverBound)?;
    Ok(msg)
}

/// Decodes one frame payload into any serde type with the wire options and the decoding rules
/// of messages.md §8 except the bounds, which are the caller's to check. The control socket
/// (proto-spec/control.md) uses it, so that it has no encoding of its own.
pub fn decode_value<T: DeserializeOwned>(
    payload: &[u8],
    max_frame_bytes: usize,
) -> Result<T, DecodeError> {
    if payload.len() > max_frame_bytes {
        return Err(DecodeError::LengthOverLimit);
    }
    let mut rest = payload;
    let value: T =
        decode_options(max_frame_bytes).deserialize_from(&mut rest).map_err(|e| classify(&e))?;
    if !rest.is_empty() {
        return Err(DecodeError::TrailingBytes { count: rest.len() });
    }
    Ok(value)
}

/// Appends the whole frame for any serde value (header and payload, wire options) to `out`;
/// the counterpart of [`decode_value`], and like it without bound checks. On error `out` is
/// left as it was.
pub fn encode_value_frame<T: Serialize>(
    value: &T,
    max_frame_bytes: usize,
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    framed(out, |out| serialize_into(value, max_frame_bytes, out))
}

/// Encodes `msg` as a frame payload (no header).
pub fn encode(msg: &Message, max_frame_bytes: usize) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::new();
    encode_into(msg, max_frame_bytes, &mut out)?;
    Ok(out)
}

/// Appends the whole frame for `msg` (header and payload) to `out`, which the caller owns and
/// may reuse. On error `out` is left as it was.
pub fn encode_frame(
    msg: &Message,
    max_frame_bytes: usize,
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    framed(out, |out| encode_into(msg, max_frame_bytes, out))
}

/// Runs `payload` to append a payload to `out` behind a frame header, then fills the header
/// in; `payload` checks the length against the frame limit. On error `out` is left as it was.
fn framed(
    out: &mut Vec<u8>,
    payload: impl FnOnce(&mut Vec<u8>) -> Result<(), EncodeError>,
) -> Result<(), EncodeError> {
    let start = out.len();
    out.extend_from_slice(&[0; HEADER_BYTES]);
    if let Err(e) = payload(out) {
        out.truncate(start);
        return Err(e);
    }
    // `payload` checked the payload against the limit, which is at most u32::MAX here.
    let len = (out.len() - start - HEADER_BYTES) as u32;
    out[start..start + HEADER_BYTES].copy_from_slice(&len.to_be_bytes());
    Ok(())
}

/// The payload size of `msg` in bytes (no header), without encoding it; lets a caller take a
/// buffer of the right size first.
pub fn payload_len(msg: &Message) -> Result<usize, EncodeError> {
    let len = base_options().serialized_size(msg).map_err(|_| EncodeError::Serialize)?;
    usize::try_from(len).map_err(|_| EncodeError::Serialize)
}

/// Appends the payload for `msg` (no header) to `out`, checking bounds and the frame limit.
/// On error `out` is left as it was.
pub fn encode_payload(
    msg: &Message,
    max_frame_bytes: usize,
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    encode_into(msg, max_frame_bytes, out)
}

/// Appends the payload for `msg` to `out`.
fn encode_into(
    msg: &Message,
    max_frame_bytes: usize,
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    msg.check_bounds().map_err(EncodeError::OverBound)?;
    serialize_into(msg, max_frame_bytes, out)
}

/// Appends the payload for `value` to `out`, checking only the frame limit.
fn serialize_into<T: Serialize>(
    value: &T,
    max_frame_bytes: usize,
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    let start = out.len();
    // Encoding is unlimited and checked afterwards: a bincode limit would make it measure the
    // message in a second full pass first.
    if base_options().serialize_into(&mut *out, value).is_err() {
        out.truncate(start);
        return Err(EncodeError::Serialize);
    }
    let len = out.len() - start;
    let max = max_frame_bytes.min(u32::MAX as usize);
    if len > max {
        out.truncate(start);
        return Err(EncodeError::Frame(FrameError::TooLarge { len, max }));
    }
    Ok(())
}

/// The wire options. Kept private: no other module may encode differently.
fn base_options() -> impl Options {
    bincode::DefaultOptions::new().with_fixint_encoding().with_little_endian()
}

/// The wire options plus the decode limit. Trailing bytes are rejected by `decode` itself,
/// which can then say how many.
fn decode_options(max_frame_bytes: usize) -> impl Options {
    base_options().with_limit(max_frame_bytes as u64).allow_trailing_bytes()
}

/// How bincode 1.3.3 starts the error for a length that does not fit a `usize`
/// (`cast_u64_to_usize` in its `config/int.rs`).
const USIZE_OVERFLOW: &str = "Invalid size ";

/// Maps bincode's error to ours. serde reports an out-of-range enum variant as a custom
/// error, "invalid value: integer `N`, expected ..." (serde_derive says "variant index
/// 0 <= i < N", serde's `SocketAddr` says "`V4` or `V6`"); that wording is pinned by the
/// invalid test vectors, which fail if it ever changes.
fn classify(e: &bincode::ErrorKind) -> DecodeError {
    match e {
        bincode::ErrorKind::Io(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            DecodeError::Truncated
        }
        bincode::ErrorKind::SizeLimit => DecodeError::LengthOverLimit,
        bincode::ErrorKind::InvalidUtf8Encoding(_) => DecodeError::InvalidUtf8,
        bincode::ErrorKind::InvalidTagEncoding(_) | bincode::ErrorKind::InvalidBoolEncoding(_) => {
            DecodeError::UnknownTag
        }
        bincode::ErrorKind::Custom(s) if s.starts_with("invalid value: integer") => {
            DecodeError::UnknownTag
        }
        // Only on a host whose usize is narrower than 64 bits: a string or bytes length that
        // does not fit a usize, which bincode refuses before charging it against the limit. A
        // 64-bit host charges it and fails with SizeLimit: every such length is at least
        // 2^32, above any frame limit (messages.md §8). Lists never get here (super::list).
        bincode::ErrorKind::Custom(s) if s.starts_with(USIZE_OVERFLOW) => {
            DecodeError::LengthOverLimit
        }
        _ => DecodeError::Malformed,
    }
}

/// Why a frame payload is not a valid message. Fatal to the connection; the variant name
/// is the metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// The payload ends before the message does.
    Truncated,
    /// Bytes remain after a complete message.
    TrailingBytes {
        /// How many.
        count: usize,
    },
    /// An enum variant, `Option` tag or `bool` outside its defined values.
    UnknownTag,
    /// A string field is not UTF-8.
    InvalidUtf8,
    /// A length prefix (or the payload itself) exceeds the frame limit.
    LengthOverLimit,
    /// A field exceeds its documented bound.
    OverBound(BoundError),
    /// Any other structural error. No payload produces it (messages.md §8): kept so that an
    /// unexpected serializer error is still a decode error, never a panic.
    Malformed,
}

impl DecodeError {
    /// Stable snake_case name: the metric label and the `error` of invalid test vectors.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Truncated => "truncated",
            Self::TrailingBytes { .. } => "trailing_bytes",
            Self::UnknownTag => "unknown_tag",
            Self::InvalidUtf8 => "invalid_utf8",
            Self::LengthOverLimit => "length_over_limit",
            Self::OverBound(_) => "over_bound",
            Self::Malformed => "malformed",
        }
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated => f.write_str("message truncated"),
            Self::TrailingBytes { count } => write!(f, "{count} trailing bytes after message"),
            Self::UnknownTag => f.write_str("unknown enum, option or bool tag"),
            Self::InvalidUtf8 => f.write_str("string is not UTF-8"),
            Self::LengthOverLimit => f.write_str("length prefix exceeds the frame limit"),
            Self::OverBound(b) => b.fmt(f),
            Self::Malformed => f.write_str("malformed message"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// Why a message could not be encoded. Always a local bug or a caller passing an oversized
/// value; nothing is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncodeError {
    /// A field exceeds its documented bound.
    OverBound(BoundError),
    /// The encoded message exceeds the frame limit.
    Frame(FrameError),
    /// The serializer failed (not produced by petrel's types).
    Serialize,
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::OverBound(b) => write!(f, "cannot encode: {b}"),
            Self::Frame(e) => write!(f, "cannot encode: {e}"),
            Self::Serialize => f.write_str("cannot encode: serializer failed"),
        }
    }
}

impl std::error::Error for EncodeError {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bytes::{ByteBuf, Bytes32};
    use crate::identity::NodeId;
    use crate::wire::frame::{FrameDecoder, DEFAULT_MAX_FRAME_BYTES};
    use crate::wire::messages::*;

    const MAX: usize = DEFAULT_MAX_FRAME_BYTES;

    fn ping(id: u64) -> Message {
        Message::Request { id, body: Request::Ping }
    }

    #[test]
    fn layout_is_fixint_little_endian_with_u32_tags() {
        let bytes = encode(&ping(0x0102), MAX).unwrap();
        // Message tag 1 (Request), id as u64 LE, Request tag 0 (Ping).
        assert_eq!(bytes, [1, 0, 0, 0, 2, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(decode(&bytes, MAX), Ok(ping(0x0102)));
    }

    #[test]
    fn rejects_trailing_bytes_with_count() {
        let mut bytes = encode(&ping(1), MAX).unwrap();
        bytes.extend_from_slice(&[0, 0]);
        assert_eq!(decode(&bytes, MAX), Err(DecodeError::TrailingBytes { count: 2 }));
    }

    #[test]
    fn rejects_every_truncation() {
        let msg = Message::Gossip(Gossip::IWant { ids: vec![Bytes32([5; 32]); 3] });
        let bytes = encode(&msg, MAX).unwrap();
        for cut in 0..bytes.len() {
            assert_eq!(decode(&bytes[..cut], MAX), Err(DecodeError::Truncated), "cut at {cut}");
        }
    }

    #[test]
    fn rejects_unknown_tags() {
        // Unknown top-level variant.
        assert_eq!(decode(&[9, 0, 0, 0], MAX), Err(DecodeError::UnknownTag));
        // Unknown nested variant (Request tag 6).
        let mut bytes = encode(&ping(1), MAX).unwrap();
        bytes[12] = 6;
        assert_eq!(decode(&bytes, MAX), Err(DecodeError::UnknownTag));
        // Option tag 2 in Store.expected_seq.
        let store = Message::Request {
            id: 1,
            body: Request::Store {
                record: Record::Immutable { value: ByteBuf::from(vec![]) },
                ttl_secs: 1,
                expected_seq: None,
            },
        };
        let mut bytes = encode(&store, MAX).unwrap();
        *bytes.last_mut().unwrap() = 2;
        assert_eq!(decode(&bytes, MAX), Err(DecodeError::UnknownTag));
    }

    #[test]
    fn rejects_invalid_utf8() {
        let msg = Message::Gossip(Gossip::Graft { topic: "ab".into() });
        let mut bytes = encode(&msg, MAX).unwrap();
        let n = bytes.len();
        bytes[n - 1] = 0xff;
        assert_eq!(decode(&bytes, MAX), Err(DecodeError::InvalidUtf8));
    }

    #[test]
    fn huge_length_prefix_fails_without_allocating() {
        // Graft with a topic length of 2^63: must be refused by the limit, not attempted.
        let mut bytes = vec![3, 0, 0, 0, 5, 0, 0, 0];
        bytes.extend_from_slice(&(1u64 << 63).to_le_bytes());
        assert_eq!(decode(&bytes, MAX), Err(DecodeError::LengthOverLimit));
        // A list count of 2^64 - 1 is read, not trusted: its elements run out at the end.
        let mut bytes = vec![3, 0, 0, 0, 4, 0, 0, 0];
        bytes.extend_from_slice(&u64::MAX.to_le_bytes());
        bytes.extend_from_slice(&[7; 40]);
        assert_eq!(decode(&bytes, MAX), Err(DecodeError::Truncated));
        // ... or at the limit, when the payload reaches it.
        assert_eq!(decode(&bytes, bytes.len()), Err(DecodeError::LengthOverLimit));
    }

    #[test]
    fn a_length_too_wide_for_usize_is_over_the_limit() {
        // What bincode reports on a 32-bit host for a string length of 2^32; a 64-bit host
        // reaches the same name through the limit.
        let narrow = bincode::ErrorKind::Custom(format!(
            "Invalid size {}: sizes must fit in a usize (0 to {})",
            1u64 << 32,
            u32::MAX
        ));
        assert_eq!(classify(&narrow), DecodeError::LengthOverLimit);
        let mut bytes = vec![3, 0, 0, 0, 5, 0, 0, 0];
        bytes.extend_from_slice(&(1u64 << 32).to_le_bytes());
        assert_eq!(decode(&bytes, MAX), Err(DecodeError::LengthOverLimit));
    }

    #[test]
    fn over_bound_lists_are_rejected_on_decode_and_encode() {
        let msg =
            Message::Gossip(Gossip::IWant { ids: vec![Bytes32([0; 32]); MAX_IDS_PER_CONTROL + 1] });
        let expected = BoundError {
            field: Bound::IWantIds.field(),
            len: MAX_IDS_PER_CONTROL + 1,
            max: MAX_IDS_PER_CONTROL,
        };
        assert_eq!(encode(&msg, MAX), Err(EncodeError::OverBound(expected)));
        // Build the bytes by hand: bound checks must hold against a non-petrel encoder too.
        let mut bytes = vec![3, 0, 0, 0, 4, 0, 0, 0];
        bytes.extend_from_slice(&((MAX_IDS_PER_CONTROL + 1) as u64).to_le_bytes());
        bytes.resize(bytes.len() + 32 * (MAX_IDS_PER_CONTROL + 1), 0);
        assert_eq!(decode(&bytes, MAX), Err(DecodeError::OverBound(expected)));
    }

    #[test]
    fn nested_peer_address_bound_is_enforced() {
        let peer = PeerInfo {
            id: NodeId::from_bytes([1; 32]),
            addrs: vec!["127.0.0.1:1".parse().unwrap(); MAX_ADDRS_PER_PEER + 1],
        };
        let msg = Message::Response { id: 1, body: Response::Nodes { closer: vec![peer] } };
        assert!(matches!(
            encode(&msg, MAX),
            Err(EncodeError::OverBound(BoundError { field: "nodes.closer.addrs", .. }))
        ));
    }

    #[test]
    fn message_larger_than_frame_limit_is_refused() {
        let msg = Message::Request {
            id: 1,
            body: Request::Store {
                record: Record::Immutable { value: ByteBuf::from(vec![0; 1000]) },
                ttl_secs: 0,
                expected_seq: None,
            },
        };
        assert!(matches!(encode(&msg, 512), Err(EncodeError::Frame(_))));
        let bytes = encode(&msg, MAX).unwrap();
        assert_eq!(decode(&bytes, 512), Err(DecodeError::LengthOverLimit));
    }

    #[test]
    fn encode_frame_round_trips_through_frame_decoder() {
        let msgs = [ping(1), Message::Goodbye(Goodbye { reason: GoodbyeReason::Shutdown })];
        let mut wire = Vec::new();
        for m in &msgs {
            encode_frame(m, MAX, &mut wire).unwrap();
        }
        let mut dec = FrameDecoder::new(MAX);
        let mut input = wire.as_slice();
        let mut out = Vec::new();
        while let Some(frame) = dec.decode(&mut input).unwrap() {
            out.push(decode(&frame, MAX).unwrap());
        }
        assert_eq!(out, msgs);
    }

    #[test]
    fn failed_encode_frame_leaves_buffer_untouched() {
        let mut out = vec![1, 2, 3];
        let msg = Message::Hello(Hello {
            version: 1,
            network: "x".repeat(MAX_NETWORK_BYTES + 1),
            id_pow_bits: 0,
            features: 0,
            agent: String::new(),
            listen_addrs: vec![],
        });
        assert!(encode_frame(&msg, MAX, &mut out).is_err());
        assert_eq!(out, [1, 2, 3]);
    }
}
