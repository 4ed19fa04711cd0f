//! Topic discovery: subscribers of a topic find each other through the DHT (proto-spec
//! messages.md §5.2), so a node given one bootstrap address can join any topic.
//!
//! The router runs it, because it joins two protocols that never import each other: for each
//! topic gossip subscribes to, it announces us as a provider of the topic's key
//! ([`crate::wire::signing::topic_key`]) and renews that before the record expires, and while
//! the topic's mesh is below D_low and our connections do not bring enough subscribers to fill
//! it, it looks the key's providers up and connects to as many as the mesh lacks
//! (`PubSub::peers_wanted`, at most `dials_per_search`) of those it is not connected to.
//! Gossip's own heartbeat then grafts them. Its DHT
//! commands carry ids from a range applications never use ([`INTERNAL`]), and the router
//! hands their replies here instead of to a caller.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::api::Reply;
use super::CommandId;
use crate::identity::NodeId;
use crate::kad::dht::{DhtCommand, DhtError, DhtReply};
use crate::wire::messages::{ErrorCode, Key, PeerInfo};
use crate::wire::signing::topic_key;

/// Command ids at or above this are the router's own (discovery's DHT commands and dials).
pub const INTERNAL: u64 = 1 << 63;

/// Settings of topic discovery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiscoveryConfig {
    /// How often we announce ourselves again as a provider of each topic we subscribe to
    /// (well inside the DHT's provider TTL).
    pub provide_interval: Duration,
    /// How often a topic whose mesh is thin looks for more subscribers.
    pub search_interval: Duration,
    /// How soon a search or announcement that failed (an empty routing table at start) is
    /// tried again.
    pub retry_interval: Duration,
    /// Most new subscribers dialled per search (fewer when fewer fill the mesh).
    pub dials_per_search: usize,
}

impl Default for DiscoveryConfig {
    fn default() -> DiscoveryConfig {
        DiscoveryConfig {
            provide_interval: Duration::from_secs(6 * 60 * 60),
            search_interval: Duration::from_secs(30),
            retry_interval: Duration::from_secs(2),
            dials_per_search: 8,
        }
    }
}

#[derive(Debug)]
struct Topic {
    key: Key,
    next_provide: Instant,
    next_search: Instant,
    /// Failed announcements and searches in a row: each retry waits twice as long as the
    /// last, up to [`MAX_RETRY`]. A popular topic's key is full at its holders (they keep k
    /// providers), so most subscribers' announcements fail; they must not retry every 2 s.
    failures: u32,
}

/// The longest wait before a failed announcement or search is tried again.
const MAX_RETRY: Duration = Duration::from_secs(10 * 60);

/// What discovery asks of the router.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Run this DHT command under this id.
    Dht(CommandId, DhtCommand),
    /// Connect to this subscriber (under this id).
    Connect(CommandId, PeerInfo),
}

/// Discovery's state: one entry per topic gossip subscribes to (bounded by gossip's
/// `max_topics`), and the DHT commands in flight.
#[derive(Debug)]
pub struct Discovery {
    config: DiscoveryConfig,
    topics: BTreeMap<String, Topic>,
    /// Command id → (topic, a search rather than an announcement).
    in_flight: BTreeMap<u64, (String, bool)>,
    next_id: u64,
}

impl Discovery {
    /// No topics.
    pub fn new(config: DiscoveryConfig) -> Discovery {
        Discovery { config, topics: BTreeMap::new(), in_flight: BTreeMap::new(), next_id: INTERNAL }
    }

    /// Whether `id` is one of the router's own commands.
    pub fn is_internal(id: CommandId) -> bool {
        id.0 >= INTERNAL
    }

    /// Gossip subscribed to `topic`: announce and search at once.
    pub fn add(&mut self, now: Instant, topic: &str) {
        self.topics.entry(topic.to_string()).or_insert(Topic {
            key: topic_key(topic),
            next_provide: now,
            next_search: now,
            failures: 0,
        });
    }

    /// Gossip left `topic`. Our provider record expires on its own.
    pub fn remove(&mut self, topic: &str) {
        self.topics.remove(topic);
    }

    /// When [`Discovery::poll`] has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.topics.values().map(|t| t.next_provide.min(t.next_search)).min()
    }

    /// The DHT commands due at `now`. `wanted(topic)` is how many more subscribers its mesh
    /// needs (`PubSub::peers_wanted`); a topic that needs none is not searched.
    pub fn poll(&mut self, now: Instant, wanted: impl Fn(&str) -> usize) -> Vec<Step> {
        let mut steps = Vec::new();
        for (name, t) in &mut self.topics {
            if t.next_provide <= now {
                // Renewed on success; an answer that fails brings it forward again.
                t.next_provide = now + self.config.provide_interval;
                let id = self.next_id;
                self.next_id += 1;
                self.in_flight.insert(id, (name.clone(), false));
                steps.push(Step::Dht(CommandId(id), DhtCommand::Provide { key: t.key }));
            }
            if t.next_search <= now {
                t.next_search = now + self.config.search_interval;
                if wanted(name) > 0 {
                    let id = self.next_id;
                    self.next_id += 1;
                    self.in_flight.insert(id, (name.clone(), true));
                    steps.push(Step::Dht(CommandId(id), DhtCommand::Providers { key: t.key }));
                }
            }
        }
        steps
    }

    /// The reply to one of discovery's commands: the subscribers to dial, of those found
    /// that `connected` does not know, not ourselves, as many as `wanted(topic)` says the
    /// mesh still needs (asked now: subscriptions may have come in while the lookup ran), at
    /// most `dials_per_search`. Replies to its dials are dropped.
    pub fn on_reply(
        &mut self,
        now: Instant,
        id: CommandId,
        reply: Reply,
        local: NodeId,
        connected: impl Fn(&NodeId) -> bool,
        wanted: impl Fn(&str) -> usize,
    ) -> Vec<Step> {
        let Some((topic, search)) = self.in_flight.remove(&id.0) else { return Vec::new() };
        let Some(t) = self.topics.get_mut(&topic) else { return Vec::new() };
        let found = match reply {
            // A key's holders keep at most k providers, so with more than k subscribers most
            // announcements are refused `StorageFull`: the topic has its providers already, and
            // searches find them. Retrying would only repeat the refusal; renew as on success.
            Reply::Dht(DhtReply::Provide(
                Ok(_) | Err(DhtError::NotStored(Some(ErrorCode::StorageFull))),
            )) => {
                t.failures = 0;
                return Vec::new();
            }
            Reply::Dht(DhtReply::Providers(Ok(found))) => {
                t.failures = 0;
                found.providers
            }
            _ => {
                // Nobody to ask yet (a node just started), the lookup failed, or the key's
                // holders are full: again, later each time.
                let wait = self.config.retry_interval.saturating_mul(1 << t.failures.min(16));
                t.failures = t.failures.saturating_add(1);
                let retry = now + wait.min(MAX_RETRY);
                if search {
                    t.next_search = t.next_search.min(retry);
                } else {
                    t.next_provide = t.next_provide.min(retry);
                }
                return Vec::new();
            }
        };
        let fresh: Vec<PeerInfo> = found
            .into_iter()
            .filter(|p| p.id != local && !connected(&p.id) && !p.addrs.is_empty())
            .take(self.config.dials_per_search.min(wanted(&topic)))
            .collect();
        // Only subscribers we know already (or none): the next search waits its full interval,
        // so a small topic whose every subscriber is connected does not search every retry.
        fresh
            .into_iter()
            .map(|p| {
                let id = self.next_id;
                self.next_id += 1;
                Step::Connect(CommandId(id), p)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kad::dht::{FoundProviders, Published};
    use crate::kad::lookup::LookupStats;
    use std::net::SocketAddr;

    fn peer(n: u8) -> PeerInfo {
        PeerInfo {
            id: NodeId::from_bytes([n; 32]),
            addrs: vec![SocketAddr::from(([10, 0, 0, n], 1))],
        }
    }

    #[test]
    fn a_topic_is_announced_and_searched_and_new_subscribers_are_dialled() {
        let t0 = Instant::now();
        let mut d = Discovery::new(DiscoveryConfig::default());
        d.add(t0, "news");
        let steps = d.poll(t0, |_| 8);
        let [Step::Dht(provide, DhtCommand::Provide { key }), Step::Dht(search, DhtCommand::Providers { .. })] =
            &steps[..]
        else {
            panic!("{steps:?}")
        };
        assert_eq!(*key, topic_key("news"));
        assert!(Discovery::is_internal(*provide));
        assert!(d.poll(t0, |_| 8).is_empty(), "nothing more is due");
        let published = Published {
            key: *key,
            stored: 1,
            attempted: 1,
            lookup: LookupStats::default(),
            rpcs: 1,
            duration: Duration::ZERO,
        };
        let none = d.on_reply(
            t0,
            *provide,
            Reply::Dht(DhtReply::Provide(Ok(published))),
            peer(0).id,
            |_| false,
            |_| 8,
        );
        assert!(none.is_empty());
        let found = FoundProviders {
            providers: vec![peer(0), peer(1), peer(2)],
            stats: LookupStats::default(),
        };
        let reply = Reply::Dht(DhtReply::Providers(Ok(found)));
        let dials = d.on_reply(t0, *search, reply, peer(0).id, |p| *p == peer(2).id, |_| 8);
        assert!(
            matches!(&dials[..], [Step::Connect(_, p)] if *p == peer(1)),
            "not us, not a peer we have"
        );
        assert_eq!(d.next_deadline(), Some(t0 + DiscoveryConfig::default().search_interval));
    }

    #[test]
    fn a_search_dials_only_as_many_subscribers_as_the_mesh_lacks() {
        let t0 = Instant::now();
        let config = DiscoveryConfig::default();
        let mut d = Discovery::new(config);
        d.add(t0, "news");
        let steps = d.poll(t0, |_| 8);
        let Step::Dht(search, _) = steps[1].clone() else { panic!("{steps:?}") };
        let found = |n: u8| FoundProviders {
            providers: (1..=n).map(peer).collect(),
            stats: LookupStats::default(),
        };
        // Subscriptions came in while the lookup ran: the mesh now lacks two.
        let reply = Reply::Dht(DhtReply::Providers(Ok(found(10))));
        let dials = d.on_reply(t0, search, reply, peer(0).id, |_| false, |_| 2);
        assert_eq!(dials.len(), 2, "{dials:?}");
        // Lacking more than a search dials: the search's cap.
        let later = t0 + config.search_interval;
        let steps = d.poll(later, |_| 30);
        let [Step::Dht(search, DhtCommand::Providers { .. })] = steps[..] else {
            panic!("{steps:?}")
        };
        let reply = Reply::Dht(DhtReply::Providers(Ok(found(20))));
        let dials = d.on_reply(later, search, reply, peer(0).id, |_| false, |_| 30);
        assert_eq!(dials.len(), config.dials_per_search);
        // Lacking none by the time the answer came: nobody.
        let again = later + config.search_interval;
        let steps = d.poll(again, |_| 1);
        let [Step::Dht(search, _)] = steps[..] else { panic!("{steps:?}") };
        let reply = Reply::Dht(DhtReply::Providers(Ok(found(5))));
        assert!(d.on_reply(again, search, reply, peer(0).id, |_| false, |_| 0).is_empty());
    }

    #[test]
    fn an_announcement_refused_for_a_full_key_is_renewed_as_if_stored() {
        let t0 = Instant::now();
        let config = DiscoveryConfig::default();
        let mut d = Discovery::new(config);
        d.add(t0, "news");
        let steps = d.poll(t0, |_| 0);
        let [Step::Dht(provide, DhtCommand::Provide { .. })] = steps[..] else {
            panic!("{steps:?}")
        };
        let full =
            Reply::Dht(DhtReply::Provide(Err(DhtError::NotStored(Some(ErrorCode::StorageFull)))));
        d.on_reply(t0, provide, full, peer(0).id, |_| false, |_| 8);
        // Not retried in 2 s: the next announcement is the regular renewal. (The search is due
        // at its own interval, which comes first.)
        assert_eq!(d.next_deadline(), Some(t0 + config.search_interval));
        assert!(d.poll(t0 + config.search_interval, |_| 0).is_empty());
        let renewal = d.poll(t0 + config.provide_interval, |_| 0);
        assert!(matches!(renewal[..], [Step::Dht(_, DhtCommand::Provide { .. })]), "{renewal:?}");

        // Another refusal (nobody stored it, for a reason other than a full key) is retried.
        let Step::Dht(again, _) = renewal[0].clone() else { panic!() };
        let later = t0 + config.provide_interval;
        let refused = Reply::Dht(DhtReply::Provide(Err(DhtError::NotStored(None))));
        d.on_reply(later, again, refused, peer(0).id, |_| false, |_| 8);
        assert_eq!(d.next_deadline(), Some(later + config.retry_interval));
    }

    #[test]
    fn a_failed_search_is_retried_soon_and_a_full_mesh_is_not_searched() {
        let t0 = Instant::now();
        let config = DiscoveryConfig::default();
        let mut d = Discovery::new(config);
        d.add(t0, "news");
        let steps = d.poll(t0, |_| 8);
        let Step::Dht(search, _) = steps[1].clone() else { panic!() };
        let failed = Reply::Dht(DhtReply::Providers(Err(crate::kad::dht::DhtError::NoPeers)));
        d.on_reply(t0, search, failed.clone(), peer(0).id, |_| false, |_| 8);
        let retry = t0 + config.retry_interval;
        let steps = d.poll(retry, |_| 8);
        let Step::Dht(again, _) = steps[0].clone() else { panic!("{steps:?}") };
        // A second failure in a row waits twice as long.
        d.on_reply(retry, again, failed, peer(0).id, |_| false, |_| 8);
        assert_eq!(d.next_deadline(), Some(retry + 2 * config.retry_interval));
        let steps = d.poll(retry + 2 * config.retry_interval, |_| 0);
        assert!(steps.is_empty(), "the mesh filled meanwhile: no search");
        d.remove("news");
        assert_eq!(d.next_deadline(), None);
    }
}
