//! The sans-IO protocol core: plain state machines that never touch a socket, a clock, a thread
//! or a global RNG. Time comes in as `now: Instant` and randomness from seeds in configuration,
//! so tests and the simulator drive it deterministically (DESIGN.md, "The shape", item 1).
//!
//! - [`jobs`]: work handed to the worker pool (signature checks) and its results.
//! - [`node`]: `NodeCore`, the Input/Output glue that kad and gossip plug into.
//! - [`peers`]: connection limits, timeouts, duplicate-connection resolution, dial backoff and
//!   the per-address circuit breaker.
//! - [`rng`]: the seeded generator every source of randomness in the core uses.

pub mod jobs;
pub mod node;
pub mod peers;

#[cfg(test)]
mod node_tests;
