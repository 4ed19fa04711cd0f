//! Messages waiting for their signature check, queued per topic, handed to workers in batches.
//!
//! A message is new when its id is neither seen nor pending. It waits in its topic's queue;
//! whenever fewer than `max_verify_jobs` checks are in flight, the queues are emptied round-robin
//! into one batch of up to `verify_batch` messages. So an idle node checks a message as soon as
//! it arrives, and a busy one checks many per job, and one hot topic gets its turn like any
//! other rather than starving them (each topic's queue has its own cap: its validation budget).
//!
//! Forged copies (proto-spec messages.md §5.1): the id depends on author and sequence number
//! only, so anyone can send a message with a genuine message's id and a bad signature. The id is
//! therefore marked seen only once a copy verified, and while the first copy waits, one copy
//! with different bytes is kept as the alternate: if the first fails, the alternate is checked
//! next. Only a byte-identical copy of the one waiting is a plain duplicate (comparing the
//! signature alone would let a forger reuse the genuine signature on other content).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use super::topics::Topic;
use crate::identity::NodeId;
use crate::timers::Deadlines;
use crate::wire::messages::{GossipMessage, MessageId};

/// Peers besides the first that delivered a copy while it waited, remembered per message (for
/// scoring and to skip them when forwarding).
pub const MAX_ALSO_FROM: usize = 16;

/// A message waiting for its check.
#[derive(Debug)]
pub struct Pending {
    /// The copy being (or to be) checked.
    pub msg: Arc<GossipMessage>,
    /// Its topic's shared name.
    pub topic: Topic,
    /// Who sent the copy.
    pub from: NodeId,
    /// When the first copy arrived.
    pub received: Instant,
    /// Others who sent the same bytes meanwhile.
    pub also_from: Vec<NodeId>,
    /// A copy with other signature bytes, checked if this one fails.
    pub alternate: Option<(Arc<GossipMessage>, NodeId)>,
}

/// What became of an arriving copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offered {
    /// New: queued for a check.
    Queued,
    /// The same bytes as the copy waiting: noted, nothing to check.
    Duplicate,
    /// Other bytes: kept as the alternate.
    Alternate,
    /// Other bytes, and an alternate is kept already: dropped.
    Dropped,
    /// The topic's queue, or the byte budget, is full: dropped.
    Full,
}

/// Pending checks. See the module doc.
#[derive(Debug, Default)]
pub struct Validation {
    pending: HashMap<MessageId, Pending>,
    queues: BTreeMap<Topic, VecDeque<MessageId>>,
    /// The topic whose queue is served first by the next batch (round-robin).
    cursor: Option<Topic>,
    jobs: BTreeMap<u64, Vec<MessageId>>,
    job_deadlines: Deadlines<u64>,
    next_job: u64,
    bytes: usize,
}

impl Validation {
    /// Whether a copy of `id` waits.
    pub fn contains(&self, id: &MessageId) -> bool {
        self.pending.contains_key(id)
    }

    /// Offers a copy of message `id` from `from`, within the topic and byte budgets.
    #[allow(clippy::too_many_arguments)]
    pub fn offer(
        &mut self,
        now: Instant,
        id: MessageId,
        msg: Arc<GossipMessage>,
        topic: Topic,
        from: NodeId,
        max_per_topic: usize,
        max_bytes: usize,
    ) -> Offered {
        if let Some(p) = self.pending.get_mut(&id) {
            // The same bytes, not just the same signature: a copy with the genuine signature
            // on other content must not pass for a duplicate of the genuine message.
            if *p.msg == *msg {
                if p.from != from
                    && !p.also_from.contains(&from)
                    && p.also_from.len() < MAX_ALSO_FROM
                {
                    p.also_from.push(from);
                }
                return Offered::Duplicate;
            }
            if p.alternate.is_some() {
                return Offered::Dropped;
            }
            p.alternate = Some((msg, from));
            return Offered::Alternate;
        }
        let queue = self.queues.entry(Arc::clone(&topic)).or_default();
        if queue.len() >= max_per_topic || self.bytes + msg.payload.len() > max_bytes {
            if queue.is_empty() {
                self.queues.remove(&topic);
            }
            return Offered::Full;
        }
        queue.push_back(id);
        self.bytes += msg.payload.len();
        let pending =
            Pending { msg, topic, from, received: now, also_from: Vec::new(), alternate: None };
        self.pending.insert(id, pending);
        Offered::Queued
    }

    /// The next batch to check, if a job slot is free and anything waits: its key and
    /// messages. The job must answer by `deadline` or [`Validation::poll_expired`] gives it up.
    pub fn next_batch(
        &mut self,
        batch: usize,
        max_jobs: usize,
        deadline: Instant,
    ) -> Option<(u64, Vec<Arc<GossipMessage>>)> {
        if self.jobs.len() >= max_jobs || self.queues.is_empty() {
            return None;
        }
        let mut ids = Vec::new();
        // Round-robin over topics, starting where the last batch stopped.
        let mut topics: Vec<Topic> = self.queues.keys().cloned().collect();
        if let Some(c) = &self.cursor {
            let at = topics.iter().position(|t| t > c).unwrap_or(0);
            topics.rotate_left(at);
        }
        'fill: while ids.len() < batch {
            let mut took = false;
            for t in &topics {
                if ids.len() >= batch {
                    break 'fill;
                }
                if let Some(id) = self.queues.get_mut(t).and_then(VecDeque::pop_front) {
                    ids.push(id);
                    self.cursor = Some(Arc::clone(t));
                    took = true;
                }
            }
            if !took {
                break;
            }
        }
        self.queues.retain(|_, q| !q.is_empty());
        let msgs =
            ids.iter().filter_map(|id| self.pending.get(id)).map(|p| Arc::clone(&p.msg)).collect();
        let key = self.next_job;
        self.next_job += 1;
        self.jobs.insert(key, ids);
        self.job_deadlines.set(key, deadline);
        Some((key, msgs))
    }

    /// The messages of job `key`, taken out of it (and out of pending): `None` for a job this
    /// does not know (answered after it was given up).
    pub fn finish(&mut self, key: u64) -> Option<Vec<(MessageId, Pending)>> {
        let ids = self.jobs.remove(&key)?;
        self.job_deadlines.clear(key);
        let out = ids
            .into_iter()
            .filter_map(|id| {
                let p = self.pending.remove(&id)?;
                self.bytes -= p.msg.payload.len();
                Some((id, p))
            })
            .collect();
        Some(out)
    }

    /// Requeues a message whose copy failed: its alternate becomes the copy to check. False
    /// when it had none.
    pub fn retry_alternate(&mut self, id: MessageId, mut p: Pending) -> bool {
        let Some((msg, from)) = p.alternate.take() else { return false };
        p.msg = msg;
        p.from = from;
        p.also_from.clear();
        self.bytes += p.msg.payload.len();
        self.queues.entry(Arc::clone(&p.topic)).or_default().push_back(id);
        self.pending.insert(id, p);
        true
    }

    /// A job past its deadline: taken out like [`Validation::finish`].
    pub fn poll_expired(&mut self, now: Instant) -> Option<Vec<(MessageId, Pending)>> {
        let key = self.job_deadlines.pop_due(now)?;
        self.job_deadlines.set(key, now); // `finish` clears it
        self.finish(key)
    }

    /// The earliest job deadline.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.job_deadlines.next()
    }

    /// Messages waiting (queued or in a job).
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// Whether none waits.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Payload bytes waiting.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Jobs in flight.
    pub fn jobs(&self) -> usize {
        self.jobs.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bytes::Bytes64;
    use crate::identity::Keypair;

    fn msg(seqno: u64, topic: &str) -> Arc<GossipMessage> {
        Arc::new(GossipMessage::sign(&Keypair::from_seed([5; 32]), seqno, topic.into(), vec![1; 8]))
    }

    fn id(n: u8) -> NodeId {
        NodeId::from_public_key(&[n; 32])
    }

    #[test]
    fn a_copy_is_a_duplicate_an_alternate_or_dropped_by_its_bytes() {
        let t0 = Instant::now();
        let mut v = Validation::default();
        let m = msg(1, "t");
        let topic: Topic = "t".into();
        assert_eq!(
            v.offer(t0, m.id(), Arc::clone(&m), topic.clone(), id(1), 10, 1000),
            Offered::Queued
        );
        assert_eq!(
            v.offer(t0, m.id(), Arc::clone(&m), topic.clone(), id(2), 10, 1000),
            Offered::Duplicate
        );
        let mut forged = (*m).clone();
        forged.signature = Bytes64([9; 64]);
        let forged = Arc::new(forged);
        assert_eq!(
            v.offer(t0, m.id(), Arc::clone(&forged), topic.clone(), id(3), 10, 1000),
            Offered::Alternate
        );
        assert_eq!(v.offer(t0, m.id(), forged, topic, id(4), 10, 1000), Offered::Dropped);
        let (key, batch) = v.next_batch(8, 1, t0).unwrap();
        assert_eq!(batch.len(), 1);
        let mut done = v.finish(key).unwrap();
        let (mid, p) = done.pop().unwrap();
        assert_eq!(p.also_from, vec![id(2)]);
        assert!(v.is_empty());
        assert!(v.retry_alternate(mid, p), "the first failed: the alternate is next");
        let (key, batch) = v.next_batch(8, 1, t0).unwrap();
        assert_eq!(batch[0].signature, Bytes64([9; 64]));
        let (_, p) = v.finish(key).unwrap().pop().unwrap();
        assert_eq!(p.from, id(3));
        assert!(!v.retry_alternate(mid, p), "no third copy was kept");
    }

    #[test]
    fn batches_take_topics_in_turn_and_each_topic_has_its_own_budget() {
        let t0 = Instant::now();
        let mut v = Validation::default();
        let (hot, cold): (Topic, Topic) = ("hot".into(), "cold".into());
        for s in 0..5 {
            let m = msg(s, "hot");
            v.offer(t0, m.id(), m, hot.clone(), id(1), 4, 1 << 20);
        }
        assert_eq!(v.len(), 4, "the hot topic's budget is 4");
        let m = msg(100, "cold");
        assert_eq!(v.offer(t0, m.id(), m, cold.clone(), id(1), 4, 1 << 20), Offered::Queued);
        let (_, batch) = v.next_batch(2, 2, t0).unwrap();
        let topics: Vec<&str> = batch.iter().map(|m| m.topic.as_str()).collect();
        assert_eq!(topics, ["cold", "hot"], "the cold topic is not stuck behind the hot one");
        let (k2, batch) = v.next_batch(2, 2, t0).unwrap();
        assert_eq!(batch.len(), 2);
        assert!(v.next_batch(2, 2, t0).is_none(), "two jobs in flight: the limit");
        assert_eq!(v.finish(k2).unwrap().len(), 2);
        assert!(v.finish(k2).is_none(), "a job is finished once");
    }

    #[test]
    fn a_job_that_never_answers_is_given_up_at_its_deadline() {
        let t0 = Instant::now();
        let mut v = Validation::default();
        let m = msg(1, "t");
        v.offer(t0, m.id(), m, "t".into(), id(1), 4, 1 << 20);
        let deadline = t0 + std::time::Duration::from_secs(5);
        let (key, _) = v.next_batch(8, 1, deadline).unwrap();
        assert_eq!(v.next_deadline(), Some(deadline));
        assert!(v.poll_expired(t0).is_none());
        assert_eq!(v.poll_expired(deadline).map(|d| d.len()), Some(1));
        assert!(v.finish(key).is_none(), "its late answer is ignored");
        assert_eq!((v.len(), v.bytes(), v.jobs()), (0, 0, 0));
    }
}
