//! DHT upkeep on the maintenance tick ([`super::dht`] module doc): record expiry, bucket
//! refresh, republishing our own records, and replication of held records to newly learned
//! close peers. Each piece has a per-tick budget, so a large table or store never stalls the
//! event loop: what is left waits for the next tick.

use std::time::Instant;

use super::cold::ReadWaiter;
use super::dht::{Dht, Purpose};
use super::memstore::RecordStore;
use super::query::Goal;
use crate::wire::messages::{Key, PeerInfo, Record, Request};

/// A newly learned peer, and the last held key already checked for it.
#[derive(Debug, Clone)]
pub(super) struct Replication {
    pub(super) peer: PeerInfo,
    after: Option<Key>,
}

/// Bucket refresh queries running at once, at most.
const MAX_REFRESHING: usize = 2;
/// Queued replications a drained queue keeps room for.
const REPLICATION_QUEUE_KEPT: usize = 16;
/// Own records republished per tick, at most.
const MAX_REPUBLISH_PER_TICK: usize = 16;
/// Held keys read from the store at a time while replicating.
const REPLICATION_BATCH: usize = 64;

impl Dht {
    /// One maintenance tick.
    pub(super) fn maintain(&mut self, now: Instant) {
        self.store.expire(now);
        self.quality.expire(now);
        self.refresh_buckets(now);
        self.republish(now);
        self.replicate(now);
        self.resume_probes();
        self.maybe_save_routing(now);
        self.keep_warm(now);
        self.watch_join(now);
    }

    /// Keeps the connections to the `keep_warm` cheapest connected entries of each bucket (by
    /// [`PeerQuality::cost_us`](super::quality::PeerQuality::cost_us): fast and reliable) from
    /// idling out: each gets a PING once `keepalive_interval` passed without news of it. The
    /// first round of a lookup asks the seeds nearest the target, which come from one or two
    /// buckets; with connected peers there it skips a dial (TCP and TLS: two round trips or
    /// more). The PING's round trip feeds the peer's figures too. Nothing is dialled for this:
    /// lookups and the join connect a bucket's peers often enough (dialling the warm set
    /// again after a loss changed no figure on the simulator), and a keepalive that dials
    /// would turn a short idle timeout into a dial per peer per interval.
    fn keep_warm(&mut self, now: Instant) {
        let per_bucket = self.config.keep_warm;
        if per_bucket == 0 {
            return;
        }
        let interval = self.config.keepalive_interval;
        let quality = &self.quality;
        let mut due = Vec::new();
        for b in 0..self.routing.bucket_count() {
            let mut ranked: Vec<(u64, &PeerInfo)> = self
                .routing
                .bucket_entries(b)
                .iter()
                .filter(|e| quality.is_connected(&e.peer.id))
                .map(|e| (quality.cost_us(&e.peer.id), &e.peer))
                .collect();
            ranked.sort_by_key(|(cost, peer)| (*cost, peer.id));
            for (_, peer) in ranked.into_iter().take(per_bucket) {
                let quiet = quality.last_news(&peer.id).is_none_or(|at| now >= at + interval);
                if quiet {
                    due.push(peer.clone());
                }
            }
        }
        for peer in due {
            if self.in_flight >= self.config.max_requests_in_flight {
                self.stats.maintenance_skipped += 1;
                return;
            }
            self.stats.keepalive_pings += 1;
            // A table PING's outcome refreshes the entry when it answers and counts a failure
            // when not, which is what a keepalive needs too.
            self.send(peer, Request::Ping, Purpose::TablePing);
        }
    }

    /// Remembers a record we published, to publish it again every `republish_interval`; at
    /// most `max_originated` are remembered.
    pub(super) fn remember_originated(&mut self, now: Instant, key: Key, record: Record) {
        if !self.originated.contains_key(&key)
            && self.originated.len() >= self.config.max_originated
        {
            self.stats.originated_drops += 1;
            return;
        }
        self.originated.insert(key, record);
        self.republish_at.set(key, now + self.config.republish_interval);
    }

    /// Queues a newly learned peer for replication; the oldest goes when the queue is full.
    pub(super) fn queue_replication(&mut self, peer: PeerInfo) {
        // Holding no record, there is nothing to send it; a record stored later reaches the
        // peer through its publisher's STOREs or the peer's own lookups. Queued anyway, every
        // node learning peers would keep `max_replication_queue` of them between two ticks.
        if self.store.is_empty() {
            return;
        }
        if self.replicate_to.len() >= self.config.max_replication_queue {
            self.replicate_to.pop_front();
            self.stats.replication_queue_drops += 1;
        }
        self.replicate_to.push_back(Replication { peer, after: None });
    }

    /// A FIND_NODE for a random id in each bucket that saw no lookup for the refresh
    /// interval, a few at a time, so a cold table does not flood the network.
    fn refresh_buckets(&mut self, now: Instant) {
        let refreshing = self.queries.values().filter(|q| matches!(q.goal, Goal::Refresh)).count();
        let room = MAX_REFRESHING - refreshing.min(MAX_REFRESHING);
        for bucket in self.routing.buckets_due_for_refresh(now).into_iter().take(room) {
            let target = self.routing.random_id_in_bucket(bucket, &mut self.rng);
            self.routing.mark_refreshed(bucket, now);
            self.start(now, None, target, Goal::Refresh);
        }
    }

    /// Publishes again our own records that are due.
    fn republish(&mut self, now: Instant) {
        for _ in 0..MAX_REPUBLISH_PER_TICK {
            let Some(key) = self.republish_at.pop_due(now) else { return };
            let Some(record) = self.originated.get(&key).cloned() else { continue };
            self.republish_at.set(key, now + self.config.republish_interval);
            self.start(now, None, key, Goal::Republish { record });
        }
    }

    /// Sends held records to newly learned peers that are among the k closest to their keys,
    /// within this tick's budgets of key checks, STOREs and requests in flight; a peer's walk
    /// through the keys resumes at the next tick where it stopped.
    fn replicate(&mut self, now: Instant) {
        let k = self.config.lookup.k;
        let (mut checks, mut sent) = (0, 0);
        while let Some(front) = self.replicate_to.front() {
            let (peer, mut after) = (front.peer.clone(), front.after);
            let keys = self.store.keys_after(after.as_ref(), REPLICATION_BATCH);
            if keys.is_empty() {
                self.replicate_to.pop_front();
                continue;
            }
            for key in keys {
                let out_of_budget = checks >= self.config.max_replication_checks_per_tick
                    || sent >= self.config.max_replications_per_tick
                    || self.in_flight >= self.config.max_requests_in_flight;
                if out_of_budget {
                    self.stats.maintenance_skipped += 1;
                    if let Some(front) = self.replicate_to.front_mut() {
                        front.after = after;
                    }
                    return;
                }
                checks += 1;
                after = Some(key);
                if !self.routing.closest(&key, k).iter().any(|p| p.id == peer.id) {
                    continue;
                }
                let Some(held) = self.store.get(now, &key) else { continue };
                if held.cold {
                    // Sent once read back from the log.
                    self.read_cold(key, ReadWaiter::Replicate { peer: peer.clone() });
                    sent += 1;
                    continue;
                }
                // Never more than the remaining life (records.md §4); nothing if under 1 s.
                let ttl_secs = held.remaining_ttl_secs(now);
                if ttl_secs == 0 {
                    continue;
                }
                let request =
                    Request::Store { record: held.record.clone(), ttl_secs, expected_seq: None };
                self.send(peer.clone(), request, Purpose::Replicate);
                self.stats.replications += 1;
                sent += 1;
            }
            if let Some(front) = self.replicate_to.front_mut() {
                front.after = after;
            }
        }
        // Drained: give back the room a burst of new peers took.
        self.replicate_to.shrink_to(REPLICATION_QUEUE_KEPT);
    }
}
