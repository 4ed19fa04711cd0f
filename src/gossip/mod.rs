//! Gossip: GossipSub v1.1-style publish/subscribe with v1.2 IDONTWANT, as a sans-IO protocol
//! behind the router's contract (DESIGN.md, "Gossip"; proto-spec/messages.md §5).
//!
//! - [`pubsub`]: the state machine, [`PubSub`]: frames, commands and checks in; frames, jobs
//!   and deliveries out.
//! - `heartbeat`: mesh upkeep, fanout, IHAVE, promises, aging.
//! - [`validation`]: messages waiting for their signature check, per-topic budgets, batches,
//!   forged copies.
//! - [`cache`]: the seen cache and the message cache.
//! - [`topics`]: peers' subscriptions, capped.
//! - [`outbound`]: each peer's bounded priority queue.
//! - `stagger`: large messages' forwards held for a link latency, so IDONTWANT can cancel them.
//! - `dont_want`: each peer's IDONTWANT ids, in two generations.
//! - [`score`]: peer scoring.
//! - [`config`]: every parameter, and [`api`]: commands, replies, events, counters.
//!
//! Gossip never imports kad, nor kad gossip; the router hosts both.

pub mod api;
pub mod cache;
pub mod config;
mod dont_want;
mod heartbeat;
pub mod outbound;
pub mod pubsub;
pub mod score;
mod stagger;
pub mod topics;
pub mod validation;

pub use api::{
    Delivery, GossipCommand, GossipError, GossipEvent, GossipReply, GossipStats, Published,
};
pub use config::GossipConfig;
pub use pubsub::PubSub;
