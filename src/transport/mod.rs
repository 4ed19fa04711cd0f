//! Transport (proto-spec/transport.md): TLS 1.3 with raw Ed25519 keys ([`tls`]) and the
//! sans-IO per-connection state machine that runs framing and the Hello exchange over it
//! ([`conn`]).
//!
//! What the node's core hears of a connection's end is a [`CloseCause`]: a small enum with no
//! TLS library type in it, which [`conn::ConnError::cause`] maps every failure to.

pub mod conn;
pub mod tls;

use std::fmt;

use crate::wire::messages::GoodbyeReason;

/// Why a connection ended, as the core sees it. `name()` is the metric label and log word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseCause {
    /// The key the peer presented is not the id we dialled (transport.md §3).
    WrongKey,
    /// The peer broke TLS, framing, the message format or the Hello order; the name says how.
    Misbehaved(&'static str),
    /// The peer's Hello does not match ours (version, network or id difficulty); the reason is
    /// the Goodbye we sent.
    HelloMismatch(GoodbyeReason),
    /// The peer said Goodbye, sent close_notify, or ended the stream.
    PeerClosed,
    /// The TCP connection failed or broke (refused, reset, unreachable).
    TcpFailed,
    /// The peer did not read: its write queue overflowed.
    WriteQueueFull,
    /// A message of ours did not encode (a local bug or an oversized value).
    EncodeFailed,
    /// We closed it, with this Goodbye reason.
    LocalClose(GoodbyeReason),
}

impl CloseCause {
    /// Stable snake_case name for metric labels and logs.
    pub fn name(&self) -> &'static str {
        match self {
            Self::WrongKey => "wrong_key",
            Self::Misbehaved(name) => name,
            Self::HelloMismatch(_) => "hello_mismatch",
            Self::PeerClosed => "peer_closed",
            Self::TcpFailed => "tcp_failed",
            Self::WriteQueueFull => "write_queue_full",
            Self::EncodeFailed => "encode",
            Self::LocalClose(_) => "local_close",
        }
    }

    /// Whether the peer broke the protocol (as opposed to closing, failing or being closed).
    pub fn is_misbehaviour(&self) -> bool {
        matches!(self, Self::Misbehaved(_))
    }
}

impl fmt::Display for CloseCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::WrongKey => f.write_str("the peer presented a key other than the expected id"),
            Self::Misbehaved(name) => write!(f, "the peer broke the protocol ({name})"),
            Self::HelloMismatch(r) => write!(f, "the peer's Hello does not match ours ({r:?})"),
            Self::PeerClosed => f.write_str("the peer closed the connection"),
            Self::TcpFailed => f.write_str("the TCP connection failed"),
            Self::WriteQueueFull => f.write_str("write queue full: the peer is not reading"),
            Self::EncodeFailed => f.write_str("a message did not encode"),
            Self::LocalClose(r) => write!(f, "closed locally ({r:?})"),
        }
    }
}
