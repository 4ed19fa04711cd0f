//! petrel: a small, auditable peer-to-peer node.
//!
//! A Kademlia DHT and a GossipSub-style publish/subscribe overlay over mutually authenticated
//! TLS 1.3, driven by one `mio` event loop and a fixed worker pool, with no async runtime.
//! The architecture is in DESIGN.md; the wire protocol is specified normatively in
//! `proto-spec/`, and this crate follows it.
//!
//! ```text
//!          application: Node / Handle (blocking calls, events, snapshots)
//!                              │ commands ▲ replies, events
//!   ┌──────── runtime::reactor (mio, sockets, TLS, buffers, budgets) ────────┐
//!   │  transport::conn: bytes ⇄ frames ⇄ wire::Message, CloseCause          │
//!   │          │ Input (now, …)                     ▲ Output                 │
//!   │          ▼                                    │                        │
//!   │  core::NodeCore: the router ── conns, rpc, jobs, seeded randomness     │
//!   │          │ Peer / Request / Gossip / outcome  ▲ protocol::Action       │
//!   │          ▼                                    │                        │
//!   │  protocols: kad::dht::Dht (and, next, gossip) behind protocol::Protocol │
//!   └────────────────────────────────────────────────────────────────────────┘
//!             jobs ⇄ runtime::workers (signature checks), woken through mio
//! ```
//!
//! Modules, lowest layer first (`tests/layers.rs` checks that none depends on a higher one):
//! - [`bytes`], [`rng`], [`stats`], [`timers`]: fixed byte fields and hex; the seeded
//!   generator; nearest-rank percentiles; the ordered deadline set every state machine uses.
//! - [`identity`]: Ed25519 key pair, `NodeId = SHA-256(public key)`, XOR metric, id
//!   proof-of-work, key file.
//! - [`wire`]: framing, the bincode options, every protocol message, signature inputs.
//! - [`transport`]: TLS 1.3 with raw Ed25519 keys, and the sans-IO connection (framing and
//!   the Hello exchange over a rustls session); `CloseCause`, all the core hears of TLS.
//! - [`protocol`]: the contract between the router and each protocol it hosts.
//! - [`kad`]: the Kademlia DHT: routing table, lookups, records, the `Dht` protocol.
//! - [`core`]: the sans-IO router `NodeCore`: connection table, request matching, jobs.
//! - [`sim`]: the deterministic network simulator that drives many cores on a virtual clock.
//! - [`runtime`]: the mio reactor, token buckets, buffer pool, worker pool, `Snapshot`.
//! - [`node`]: the public API, [`Node`] and [`Handle`]; [`config`] holds every default.
//! - [`control`]: the local control socket, serving a node's `Handle` to the `petrel`
//!   commands (the node does not depend on it).
//! - [`metrics`]: the snapshot in Prometheus's text format, served at `/metrics`.
//! - [`cli`]: the `petrel` subcommands.
//!
//! Driving contract of every sans-IO type (the router, each protocol, the connection): after
//! each input, drain its outputs (`poll_*`) until `None`, then call `handle_timeout` no later
//! than `next_deadline()`. Time is an argument: no sans-IO module reads a clock.
//!
//! What petrel does not do: NAT traversal, relays, QUIC, or anything that needs an async
//! runtime.

#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]
#![warn(missing_docs)]

pub mod addr;
pub mod bytes;
pub mod cli;
pub mod config;
pub mod control;
pub mod core;
pub mod errors;
pub mod gossip;
pub mod identity;
pub mod kad;
pub mod logging;
pub mod metrics;
pub mod node;
pub mod protocol;
pub mod restart;
pub mod rng;
pub mod runtime;
pub mod sim;
pub mod stats;
pub mod store;
pub mod text;
pub mod timers;
pub mod transport;
pub mod wire;

pub use addr::PeerAddr;
pub use config::Config;
pub use node::{CallError, Handle, Node, StartError};
pub use runtime::snapshot::Snapshot;
