//! The two memories of gossip: which message ids we have seen (so a duplicate costs a hash
//! lookup, never a signature check), and the recent messages themselves, kept in heartbeat
//! windows to answer IWANT and to announce in IHAVE.
//!
//! Both are bounded by count and expire in insertion order: every entry lives the same time, so
//! a queue ordered by insertion is ordered by expiry too, and expiry is a walk from the front.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::identity::NodeId;
use crate::wire::messages::{GossipMessage, MessageId};

/// Message ids seen (verified, or published by us) within the last `ttl`, with when.
#[derive(Debug)]
pub struct SeenCache {
    first_seen: HashMap<MessageId, Instant>,
    order: VecDeque<(Instant, MessageId)>,
    ttl: Duration,
    max: usize,
    evicted_early: u64,
}

impl SeenCache {
    /// An empty cache remembering ids for `ttl`, at most `max` of them.
    pub fn new(ttl: Duration, max: usize) -> SeenCache {
        SeenCache {
            first_seen: HashMap::new(),
            order: VecDeque::new(),
            ttl,
            max: max.max(1),
            evicted_early: 0,
        }
    }

    /// When `id` was first seen, if it is remembered.
    pub fn first_seen(&self, id: &MessageId) -> Option<Instant> {
        self.first_seen.get(id).copied()
    }

    /// Whether `id` is remembered.
    pub fn contains(&self, id: &MessageId) -> bool {
        self.first_seen.contains_key(id)
    }

    /// Remembers `id` as seen at `now`; false if it was already. When full, the oldest id is
    /// forgotten early (counted): a copy of it arriving later would be taken as new, checked
    /// and delivered again, which is the lesser harm than unbounded memory.
    pub fn insert(&mut self, now: Instant, id: MessageId) -> bool {
        if self.first_seen.contains_key(&id) {
            return false;
        }
        if self.first_seen.len() >= self.max {
            if let Some((_, old)) = self.order.pop_front() {
                self.first_seen.remove(&old);
                self.evicted_early += 1;
            }
        }
        self.first_seen.insert(id, now);
        self.order.push_back((now + self.ttl, id));
        true
    }

    /// Forgets the ids whose time is up.
    pub fn expire(&mut self, now: Instant) {
        while let Some(&(at, id)) = self.order.front() {
            if at > now {
                break;
            }
            self.order.pop_front();
            self.first_seen.remove(&id);
        }
    }

    /// Ids remembered.
    pub fn len(&self) -> usize {
        self.first_seen.len()
    }

    /// Whether no id is remembered.
    pub fn is_empty(&self) -> bool {
        self.first_seen.is_empty()
    }

    /// Ids forgotten before their time because the cache was full.
    pub fn evicted_early(&self) -> u64 {
        self.evicted_early
    }
}

/// A cached message and who has had it from us through IWANT.
#[derive(Debug)]
struct Cached {
    msg: Arc<GossipMessage>,
    /// Sends through IWANT, by peer: bounded by the peers that can ask within the history.
    served: Vec<(NodeId, u32)>,
}

/// Recent verified messages in heartbeat windows, newest window first.
#[derive(Debug)]
pub struct MessageCache {
    windows: VecDeque<Vec<MessageId>>,
    messages: HashMap<MessageId, Cached>,
    gossip_windows: usize,
    max_messages: usize,
    bytes: usize,
    evicted_early: u64,
}

impl MessageCache {
    /// A cache of `history` windows of which the newest `gossip` are announced, holding at
    /// most `max_messages`.
    pub fn new(history: usize, gossip: usize, max_messages: usize) -> MessageCache {
        let mut windows = VecDeque::new();
        windows.push_back(Vec::new());
        MessageCache {
            windows,
            messages: HashMap::new(),
            gossip_windows: gossip,
            max_messages: max_messages.max(1),
            bytes: 0,
            evicted_early: 0,
        }
        .with_windows(history)
    }

    fn with_windows(mut self, history: usize) -> MessageCache {
        while self.windows.len() < history.max(1) {
            self.windows.push_back(Vec::new());
        }
        self
    }

    /// Adds a verified message to the newest window. When full, the oldest window's first
    /// message goes early (counted).
    pub fn put(&mut self, id: MessageId, msg: Arc<GossipMessage>) {
        if self.messages.contains_key(&id) {
            return;
        }
        while self.messages.len() >= self.max_messages {
            let Some(oldest) = self.windows.iter_mut().rev().find(|w| !w.is_empty()) else {
                break;
            };
            let old = oldest.remove(0);
            self.drop_message(&old);
            self.evicted_early += 1;
        }
        self.bytes += msg.payload.len();
        self.messages.insert(id, Cached { msg, served: Vec::new() });
        if let Some(newest) = self.windows.front_mut() {
            newest.push(id);
        }
    }

    fn drop_message(&mut self, id: &MessageId) {
        if let Some(c) = self.messages.remove(id) {
            self.bytes -= c.msg.payload.len();
        }
    }

    /// The message, if cached.
    pub fn get(&self, id: &MessageId) -> Option<&Arc<GossipMessage>> {
        self.messages.get(id).map(|c| &c.msg)
    }

    /// The message for `peer`'s IWANT, unless it has had it `limit` times already through
    /// IWANT (a peer asking again and again is fishing for bandwidth).
    pub fn serve(
        &mut self,
        id: &MessageId,
        peer: NodeId,
        limit: u32,
    ) -> Option<Arc<GossipMessage>> {
        let c = self.messages.get_mut(id)?;
        let served = match c.served.iter_mut().find(|(p, _)| *p == peer) {
            Some((_, n)) => n,
            None => {
                c.served.push((peer, 0));
                &mut c.served.last_mut()?.1
            }
        };
        if *served >= limit {
            return None;
        }
        *served += 1;
        Some(Arc::clone(&c.msg))
    }

    /// Ids of `topic` in the gossiped windows, newest first, at most `max`.
    pub fn gossip_ids(&self, topic: &str, max: usize) -> Vec<MessageId> {
        let mut out = Vec::new();
        for window in self.windows.iter().take(self.gossip_windows) {
            for id in window.iter().rev() {
                if out.len() >= max {
                    return out;
                }
                if self.messages.get(id).is_some_and(|c| c.msg.topic == topic) {
                    out.push(*id);
                }
            }
        }
        out
    }

    /// Starts a new window, dropping the oldest: called once per heartbeat.
    pub fn shift(&mut self) {
        if let Some(oldest) = self.windows.pop_back() {
            for id in oldest {
                self.drop_message(&id);
            }
        }
        self.windows.push_front(Vec::new());
    }

    /// Messages held.
    pub fn len(&self) -> usize {
        self.messages.len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    /// Payload bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Messages dropped before their windows ran out because the cache was full.
    pub fn evicted_early(&self) -> u64 {
        self.evicted_early
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Keypair;

    fn msg(seqno: u64, topic: &str) -> (MessageId, Arc<GossipMessage>) {
        let m = GossipMessage::sign(&Keypair::from_seed([1; 32]), seqno, topic.into(), vec![0; 10]);
        (m.id(), Arc::new(m))
    }

    #[test]
    fn seen_ids_expire_in_order_and_the_cap_forgets_the_oldest() {
        let t0 = Instant::now();
        let mut seen = SeenCache::new(Duration::from_secs(10), 2);
        let (a, b, c) = (msg(1, "t").0, msg(2, "t").0, msg(3, "t").0);
        assert!(seen.insert(t0, a));
        assert!(!seen.insert(t0, a), "a second insert is a duplicate");
        assert!(seen.insert(t0 + Duration::from_secs(1), b));
        assert!(seen.insert(t0 + Duration::from_secs(2), c));
        assert!(!seen.contains(&a), "full: the oldest went first");
        assert_eq!(seen.evicted_early(), 1);
        seen.expire(t0 + Duration::from_secs(11));
        assert!(!seen.contains(&b) && seen.contains(&c));
        assert_eq!(seen.first_seen(&c), Some(t0 + Duration::from_secs(2)));
        seen.expire(t0 + Duration::from_secs(12));
        assert!(seen.is_empty());
    }

    #[test]
    fn windows_shift_out_and_only_the_gossip_windows_are_announced() {
        let mut cache = MessageCache::new(3, 2, 100);
        let (a, ma) = msg(1, "t");
        cache.put(a, ma);
        cache.shift();
        let (b, mb) = msg(2, "t");
        cache.put(b, mb);
        let (o, mo) = msg(3, "other");
        cache.put(o, mo);
        assert_eq!(cache.gossip_ids("t", 10), vec![b, a]);
        cache.shift();
        assert_eq!(
            cache.gossip_ids("t", 10),
            vec![b],
            "a is in the third window: held, not announced"
        );
        assert!(cache.get(&a).is_some());
        cache.shift();
        assert!(cache.get(&a).is_none(), "past the history");
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.bytes(), 20);
    }

    #[test]
    fn iwant_retransmissions_are_capped_per_peer_and_the_count_cap_holds() {
        let mut cache = MessageCache::new(5, 3, 2);
        let (a, ma) = msg(1, "t");
        cache.put(a, ma);
        let p = NodeId::from_public_key(&[7; 32]);
        let q = NodeId::from_public_key(&[8; 32]);
        assert!(cache.serve(&a, p, 2).is_some());
        assert!(cache.serve(&a, p, 2).is_some());
        assert!(cache.serve(&a, p, 2).is_none(), "a third ask of the same peer is refused");
        assert!(cache.serve(&a, q, 2).is_some(), "another peer has its own count");
        let (b, mb) = msg(2, "t");
        let (c, mc) = msg(3, "t");
        cache.put(b, mb);
        cache.put(c, mc);
        assert_eq!(cache.len(), 2);
        assert!(cache.get(&a).is_none(), "the oldest went to make room");
        assert_eq!(cache.evicted_early(), 1);
    }
}
