//! Transport (proto-spec/transport.md): TLS 1.3 with raw Ed25519 keys ([`tls`]) and the
//! sans-IO per-connection state machine that runs framing and the Hello exchange over it
//! ([`conn`]).

pub mod conn;
pub mod tls;
