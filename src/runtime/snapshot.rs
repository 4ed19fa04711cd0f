//! [`Snapshot`]: every counter and gauge of a running node, gathered in one place at one
//! instant by the reactor thread and returned by [`crate::Handle::snapshot`]. The metrics
//! export reads it, so no protocol or core module depends on a metrics library.

use super::buffers::PoolStats;
use super::limiter::LimiterStats;
use super::reactor::ReactorStats;
use super::workers::WorkerStats;
use crate::core::{CoreStats, PeerStats};
use crate::gossip::score::ScoreStats;
use crate::gossip::GossipStats;
use crate::kad::dht::DhtStats;
use crate::kad::memstore::StoreStats;
use crate::kad::routing::RoutingStats;

/// A node's counters and gauges, each part from the module that keeps it.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// The router: requests served and matched, refusals, closes it decided.
    pub core: CoreStats,
    /// The connection table and the dial book: connections now, admissions, refusals,
    /// timeouts, backoff and breakers.
    pub peers: PeerStats,
    /// Requests we sent that wait for their response, now.
    pub requests_in_flight: usize,
    /// Answers a protocol owes to peers' requests, now.
    pub answers_owed: usize,
    /// The DHT: queries by kind, requests served, rejections, maintenance.
    pub dht: DhtStats,
    /// The routing table.
    pub routing: RoutingStats,
    /// The record store.
    pub store: StoreStats,
    /// Gossip; `None` when it is off.
    pub gossip: Option<GossipStats>,
    /// Gossip peer scores: peers tracked, by score bucket.
    pub gossip_scores: Option<ScoreStats>,
    /// Delivered messages dropped from subscriptions that did not keep up (oldest first).
    pub subscriptions_lost: u64,
    /// The reactor: connections in the slab, refusals, frames it could not send.
    pub reactor: ReactorStats,
    /// The token buckets: global budgets and connection admission.
    pub limiter: LimiterStats,
    /// The buffer pool.
    pub buffers: PoolStats,
    /// The worker pool.
    pub workers: WorkerStats,
    /// The workers' cache of decoded gossip author keys.
    pub author_keys: crate::protocol::author_keys::AuthorKeyStats,
    /// The node's log on disk (appends, fdatasyncs, compactions, bytes on disk, errors);
    /// `None` without a data directory.
    pub log: Option<crate::store::LogStats>,
}
