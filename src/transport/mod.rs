//! Transport: TLS 1.3 with raw Ed25519 keys ([`tls`]) (proto-spec/transport.md).

pub mod tls;
