//! Where delivered gossip messages go: each subscription's bounded queue, by topic.
//!
//! A subscriber that does not keep up loses the oldest messages, not the newest, and sees how
//! many it lost: the reactor holds a receiving end of each queue too, and when a queue is full
//! it takes the oldest message out before putting the new one in. A dropped `Subscription`
//! (its liveness marker gone) is forgotten at the next delivery to its topic.
//!
//! The bound is the sink's `cap`, kept by the reactor, the only sender: the queue itself is a
//! list that grows and shrinks with what waits in it. A bounded crossbeam channel would hold
//! room for `cap` deliveries from the start: 80 KiB for the default 1,024, per subscription,
//! however little it carries.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use crossbeam_channel::{Receiver, Sender};

use crate::gossip::Delivery;

/// Subscriptions per topic at once.
pub const MAX_SINKS_PER_TOPIC: usize = 8;

/// One subscription's queue, as the reactor holds it.
#[derive(Debug)]
pub struct Sink {
    /// Where deliveries go: an unbounded channel, whose bound is `cap`, kept here.
    pub tx: Sender<Delivery>,
    /// Deliveries the queue holds at most; past it the oldest is dropped.
    pub cap: usize,
    /// The same queue, to drop its oldest entry when full.
    pub rx: Receiver<Delivery>,
    /// Messages dropped because the subscriber did not take them in time.
    pub lost: Arc<AtomicU64>,
    /// Alive while the application holds the subscription.
    pub alive: Weak<()>,
}

/// Every subscription's queue, by topic.
#[derive(Debug, Default)]
pub struct Deliveries {
    by_topic: BTreeMap<String, Vec<Sink>>,
    max_topics: usize,
    lost: u64,
}

impl Deliveries {
    /// No subscriptions; at most `max_topics` topics with one.
    pub fn new(max_topics: usize) -> Deliveries {
        Deliveries { by_topic: BTreeMap::new(), max_topics, lost: 0 }
    }

    /// Adds a subscription to `topic`; false (and nothing added) past the caps.
    pub fn add(&mut self, topic: String, sink: Sink) -> bool {
        if !self.by_topic.contains_key(&topic) && self.by_topic.len() >= self.max_topics {
            return false;
        }
        let sinks = self.by_topic.entry(topic).or_default();
        sinks.retain(|s| s.alive.strong_count() > 0);
        if sinks.len() >= MAX_SINKS_PER_TOPIC {
            return false;
        }
        sinks.push(sink);
        true
    }

    /// Drops every subscription to `topic`.
    pub fn remove(&mut self, topic: &str) {
        self.by_topic.remove(topic);
    }

    /// Hands `d` to every live subscription of its topic, dropping each full queue's oldest.
    pub fn deliver(&mut self, d: &Delivery) {
        let Some(sinks) = self.by_topic.get_mut(d.message.topic.as_str()) else { return };
        sinks.retain(|s| s.alive.strong_count() > 0);
        for s in sinks.iter() {
            // Room first: only this reactor sends, so a queue below `cap` now stays below it
            // until the send (the subscriber can only take messages out meanwhile).
            while s.tx.len() >= s.cap.max(1) {
                if s.rx.try_recv().is_err() {
                    break;
                }
                s.lost.fetch_add(1, Ordering::Relaxed);
                self.lost += 1;
            }
            // Never full (the channel is unbounded, the bound kept above) and never
            // disconnected (we hold a receiver too).
            let _ = s.tx.try_send(d.clone());
        }
    }

    /// Messages dropped from full subscription queues, all topics.
    pub fn lost(&self) -> u64 {
        self.lost
    }

    /// Topics with a subscription.
    pub fn topics(&self) -> usize {
        self.by_topic.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::{Keypair, NodeId};
    use crate::wire::messages::GossipMessage;
    use crossbeam_channel::unbounded;

    fn delivery(seqno: u64, topic: &str) -> Delivery {
        let m = GossipMessage::sign(&Keypair::from_seed([2; 32]), seqno, topic.into(), vec![]);
        Delivery { from: NodeId::from_bytes([1; 32]), id: m.id(), message: Arc::new(m) }
    }

    #[test]
    fn a_slow_subscriber_loses_the_oldest_and_sees_how_many() {
        let mut d = Deliveries::new(4);
        let (tx, rx) = unbounded();
        let lost = Arc::new(AtomicU64::new(0));
        let alive = Arc::new(());
        let sink = Sink {
            tx,
            cap: 2,
            rx: rx.clone(),
            lost: Arc::clone(&lost),
            alive: Arc::downgrade(&alive),
        };
        assert!(d.add("t".into(), sink));
        for s in 1..=5 {
            d.deliver(&delivery(s, "t"));
            assert!(rx.len() <= 2, "the queue never holds more than its cap");
        }
        d.deliver(&delivery(9, "other"));
        let got: Vec<u64> = rx.try_iter().map(|x| x.message.seqno).collect();
        assert_eq!(got, [4, 5], "the newest two stay");
        assert_eq!(lost.load(Ordering::Relaxed), 3);
        assert_eq!(d.lost(), 3);
        drop(alive);
        d.deliver(&delivery(6, "t"));
        assert!(rx.try_recv().is_err(), "a dropped subscription gets nothing more");
    }

    #[test]
    fn topics_and_subscriptions_per_topic_are_capped() {
        let mut d = Deliveries::new(1);
        let alive = Arc::new(());
        let sink = || {
            let (tx, rx) = unbounded();
            let lost = Arc::new(AtomicU64::new(0));
            Sink { tx, cap: 1, rx, lost, alive: Arc::downgrade(&alive) }
        };
        for _ in 0..MAX_SINKS_PER_TOPIC {
            assert!(d.add("t".into(), sink()));
        }
        assert!(!d.add("t".into(), sink()), "per-topic cap");
        assert!(!d.add("u".into(), sink()), "topic cap");
        d.remove("t");
        assert!(d.add("u".into(), sink()));
        assert_eq!(d.topics(), 1);
    }
}
