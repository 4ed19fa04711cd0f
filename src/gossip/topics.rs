//! Who subscribes to what: each connected peer's announced topics, and each topic's
//! subscribers, with the caps that keep a peer's announcements from growing our memory without
//! bound (topics per peer, distinct topic names in total). Topic names are shared (`Arc<str>`):
//! a name a thousand peers announce is held once.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::identity::NodeId;

/// A topic name, shared.
pub type Topic = Arc<str>;

/// Why a subscription was not recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The peer announced `max_per_peer` topics already.
    PeerFull,
    /// `max_topics` distinct names are known already.
    TopicsFull,
}

/// Peers' subscriptions. See the module doc.
#[derive(Debug)]
pub struct Subscriptions {
    by_peer: BTreeMap<NodeId, BTreeSet<Topic>>,
    by_topic: BTreeMap<Topic, BTreeSet<NodeId>>,
    max_per_peer: usize,
    max_topics: usize,
}

impl Subscriptions {
    /// Empty, with the caps.
    pub fn new(max_per_peer: usize, max_topics: usize) -> Subscriptions {
        Subscriptions {
            by_peer: BTreeMap::new(),
            by_topic: BTreeMap::new(),
            max_per_peer,
            max_topics,
        }
    }

    /// The shared name of `topic` if any peer (or `ours`) uses it; allocation-free lookup.
    pub fn name(&self, topic: &str) -> Option<Topic> {
        self.by_topic.get_key_value(topic).map(|(k, _)| Arc::clone(k))
    }

    /// Records that `peer` subscribes to `topic`. `Ok(true)` if new.
    pub fn subscribe(&mut self, peer: NodeId, topic: &str) -> Result<bool, Refused> {
        let topics = self.by_peer.entry(peer).or_default();
        if topics.contains(topic) {
            return Ok(false);
        }
        if topics.len() >= self.max_per_peer {
            return Err(Refused::PeerFull);
        }
        let name = match self.by_topic.get_key_value(topic) {
            Some((k, _)) => Arc::clone(k),
            None if self.by_topic.len() >= self.max_topics => return Err(Refused::TopicsFull),
            None => Topic::from(topic),
        };
        topics.insert(Arc::clone(&name));
        self.by_topic.entry(name).or_default().insert(peer);
        Ok(true)
    }

    /// Records that `peer` left `topic`; whether it was subscribed.
    pub fn unsubscribe(&mut self, peer: NodeId, topic: &str) -> bool {
        let Some(topics) = self.by_peer.get_mut(&peer) else { return false };
        if !topics.remove(topic) {
            return false;
        }
        self.drop_subscriber(topic, &peer);
        true
    }

    fn drop_subscriber(&mut self, topic: &str, peer: &NodeId) {
        if let Some(peers) = self.by_topic.get_mut(topic) {
            peers.remove(peer);
            if peers.is_empty() {
                self.by_topic.remove(topic);
            }
        }
    }

    /// Forgets `peer`; the topics it was subscribed to.
    pub fn remove_peer(&mut self, peer: &NodeId) -> BTreeSet<Topic> {
        let topics = self.by_peer.remove(peer).unwrap_or_default();
        for t in &topics {
            self.drop_subscriber(t, peer);
        }
        topics
    }

    /// The peers subscribed to `topic`, in id order.
    pub fn subscribers(&self, topic: &str) -> impl Iterator<Item = NodeId> + '_ {
        self.by_topic.get(topic).into_iter().flatten().copied()
    }

    /// Whether `peer` subscribes to `topic`.
    pub fn is_subscribed(&self, peer: &NodeId, topic: &str) -> bool {
        self.by_peer.get(peer).is_some_and(|t| t.contains(topic))
    }

    /// Distinct topic names known.
    pub fn topics(&self) -> usize {
        self.by_topic.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> NodeId {
        NodeId::from_public_key(&[n; 32])
    }

    #[test]
    fn subscriptions_are_indexed_both_ways_and_names_are_shared() {
        let mut s = Subscriptions::new(4, 10);
        assert_eq!(s.subscribe(id(1), "a"), Ok(true));
        assert_eq!(s.subscribe(id(1), "a"), Ok(false));
        assert_eq!(s.subscribe(id(2), "a"), Ok(true));
        assert_eq!(s.subscribers("a").count(), 2);
        let n1 = s.name("a").unwrap();
        assert_eq!(Arc::strong_count(&n1), 4, "one for the index, one per peer, and ours");
        assert!(s.unsubscribe(id(1), "a"));
        assert!(!s.unsubscribe(id(1), "a"));
        assert_eq!(s.remove_peer(&id(2)).len(), 1);
        assert_eq!(s.topics(), 0, "a topic nobody announces is forgotten");
    }

    #[test]
    fn a_peer_cannot_announce_more_than_its_cap_nor_grow_the_names_past_theirs() {
        let mut s = Subscriptions::new(2, 3);
        assert_eq!(s.subscribe(id(1), "a"), Ok(true));
        assert_eq!(s.subscribe(id(1), "b"), Ok(true));
        assert_eq!(s.subscribe(id(1), "c"), Err(Refused::PeerFull));
        assert_eq!(s.subscribe(id(2), "c"), Ok(true));
        assert_eq!(s.subscribe(id(2), "d"), Err(Refused::TopicsFull));
        assert_eq!(s.subscribe(id(3), "a"), Ok(true), "a known name still fits");
        assert!(!s.is_subscribed(&id(1), "c"));
    }
}
