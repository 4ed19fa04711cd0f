//! The sans-IO node core (DESIGN.md, "The shape" and "Core v2"): a router over the services
//! every protocol shares, driving the protocols it hosts. It never touches a socket, a clock, a
//! thread or a global RNG: time comes in as `now: Instant` and randomness from seeds in
//! configuration, so tests and the simulator drive it deterministically.
//!
//! - `node`: [`NodeCore`], the router: one input type, one output type, the driving contract.
//! - `api`: its inputs, outputs, commands, replies, events, settings and counters.
//! - `conns`: the connection table: limits, duplicates, every connection deadline.
//! - `dials`: per-address dial backoff and the circuit breaker.
//! - `rpc`: request matching: requests in flight, requests waiting for a dial, owed answers.
//! - `protocols`: the hosted protocols and the route of each message kind.
//! - `discovery`: topic discovery, gossip's subscribers found through the DHT.
//!
//! Only the router's contract is public (re-exported here); the services behind it are the
//! router's own.

mod api;
mod conn_map;
mod conns;
mod dials;
mod discovery;
mod node;
mod protocols;
mod rpc;

pub use api::{
    Budget, Command, CommandId, ConnectError, CoreConfig, CoreStats, Event, Input, Output,
    PeerSummary, PingInfo, Reply, RequestError,
};
pub use conns::{ConnId, Direction, LimitError, PeerLimits, PeerStats};
pub use dials::DialError;
pub use discovery::DiscoveryConfig;
pub use node::NodeCore;
pub use protocols::AddError;

#[cfg(test)]
mod node_tests;
#[cfg(test)]
mod seam_tests;
