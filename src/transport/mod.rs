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

    /// Every [`CloseCause::kind`], in [`CloseCause::kind_index`] order: a fixed set of metric
    /// label values.
    pub const KINDS: [&'static str; 8] = [
        "wrong_key",
        "misbehaved",
        "hello_mismatch",
        "peer_closed",
        "tcp_failed",
        "write_queue_full",
        "encode",
        "local_close",
    ];

    /// Like [`CloseCause::name`], but every way of misbehaving is `misbehaved`, so the names
    /// form the small fixed set [`CloseCause::KINDS`].
    pub fn kind(&self) -> &'static str {
        Self::KINDS[self.kind_index()]
    }

    /// Position of [`CloseCause::kind`] in [`CloseCause::KINDS`], for counter arrays.
    pub fn kind_index(&self) -> usize {
        match self {
            Self::WrongKey => 0,
            Self::Misbehaved(_) => 1,
            Self::HelloMismatch(_) => 2,
            Self::PeerClosed => 3,
            Self::TcpFailed => 4,
            Self::WriteQueueFull => 5,
            Self::EncodeFailed => 6,
            Self::LocalClose(_) => 7,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_the_names_with_every_misbehaviour_folded_into_one() {
        let causes = [
            CloseCause::WrongKey,
            CloseCause::Misbehaved("bad_frame"),
            CloseCause::HelloMismatch(GoodbyeReason::NetworkMismatch),
            CloseCause::PeerClosed,
            CloseCause::TcpFailed,
            CloseCause::WriteQueueFull,
            CloseCause::EncodeFailed,
            CloseCause::LocalClose(GoodbyeReason::IdleTimeout),
        ];
        for (i, cause) in causes.iter().enumerate() {
            assert_eq!(cause.kind_index(), i);
            let expected = if cause.is_misbehaviour() { "misbehaved" } else { cause.name() };
            assert_eq!(cause.kind(), expected);
        }
    }
}
