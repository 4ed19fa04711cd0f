//! One peer's outbound gossip queue: bounded in bytes, served by priority, with a deadline on
//! forwards (DESIGN.md, "Gossip").
//!
//! Frames wait here only while the peer's connection is congested (its transport write queue
//! is above its high-water mark); otherwise they go straight through. So the queue holds what
//! a slow peer has not read, and decides what it gets when it reads again: control first (mesh
//! changes, IDONTWANT), then our own messages, then forwards still young enough to matter, then
//! IWANT answers. A frame that does not fit pushes out queued frames of lower priority, newest
//! first, or is itself dropped; every drop is counted by class.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::wire::messages::{Gossip, MessageId};

/// Priority classes, highest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Class {
    /// Subscriptions, GRAFT, PRUNE, IHAVE, IWANT, IDONTWANT.
    Control = 0,
    /// Messages we published.
    Publish = 1,
    /// Messages we forward; they expire.
    Forward = 2,
    /// Messages sent in answer to IWANT.
    Gossip = 3,
}

impl Class {
    /// How many classes there are.
    pub const COUNT: usize = 4;
}

#[derive(Debug)]
struct Queued {
    msg: Gossip,
    bytes: usize,
    /// Forwards only: dropped when still queued past it.
    deadline: Option<Instant>,
}

/// What became of a frame offered to the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// Queued (possibly after dropping `dropped` lower-priority frames).
    Queued {
        /// Frames pushed out to make room.
        dropped: usize,
    },
    /// Did not fit even after dropping everything of lower priority: not queued.
    Refused,
}

/// A peer's queue. See the module doc.
#[derive(Debug, Default)]
pub struct Outbound {
    queues: [VecDeque<Queued>; Class::COUNT],
    bytes: usize,
}

impl Outbound {
    /// Queues `msg` (about `bytes` on the wire) in `class`, within `max_bytes` for the whole
    /// queue. A forward gets `now + forward_deadline` as its deadline.
    pub fn push(
        &mut self,
        now: Instant,
        class: Class,
        msg: Gossip,
        bytes: usize,
        max_bytes: usize,
        forward_deadline: Duration,
    ) -> Pushed {
        if bytes > max_bytes {
            return Pushed::Refused;
        }
        let mut dropped = 0;
        while self.bytes + bytes > max_bytes {
            let Some(lower) =
                (class as usize + 1..Class::COUNT).rev().find(|&c| !self.queues[c].is_empty())
            else {
                return Pushed::Refused;
            };
            if let Some(q) = self.queues[lower].pop_back() {
                self.bytes -= q.bytes;
                dropped += 1;
            }
        }
        let deadline = (class == Class::Forward).then(|| now + forward_deadline);
        self.queues[class as usize].push_back(Queued { msg, bytes, deadline });
        self.bytes += bytes;
        Pushed::Queued { dropped }
    }

    /// The next frame to send: highest class first, in order within a class. Forwards past
    /// their deadline are dropped on the way; their count is added to `expired`.
    pub fn pop(&mut self, now: Instant, expired: &mut u64) -> Option<Gossip> {
        for queue in &mut self.queues {
            while let Some(q) = queue.pop_front() {
                self.bytes -= q.bytes;
                if q.deadline.is_some_and(|d| d <= now) {
                    *expired += 1;
                    continue;
                }
                return Some(q.msg);
            }
        }
        None
    }

    /// Drops queued forwards and IWANT answers of message `id` (the peer said IDONTWANT);
    /// how many.
    pub fn cancel(&mut self, id: &MessageId) -> usize {
        let mut cancelled = 0;
        for class in [Class::Forward, Class::Gossip] {
            let queue = &mut self.queues[class as usize];
            let before = queue.len();
            let mut freed = 0;
            queue.retain(|q| {
                let hit = matches!(&q.msg, Gossip::Publish(m) if m.id() == *id);
                if hit {
                    freed += q.bytes;
                }
                !hit
            });
            self.bytes -= freed;
            cancelled += before - queue.len();
        }
        cancelled
    }

    /// Bytes queued.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.bytes == 0 && self.queues.iter().all(VecDeque::is_empty)
    }
}

/// About how many bytes `msg` takes on the wire: enough to bound queues without encoding.
pub fn wire_bytes(msg: &Gossip) -> usize {
    const FRAME: usize = 4 + 4 + 4;
    FRAME
        + match msg {
            Gossip::Subscribe { topic }
            | Gossip::Unsubscribe { topic }
            | Gossip::Graft { topic } => 8 + topic.len(),
            Gossip::Publish(m) => 32 + 8 + 8 + m.topic.len() + 8 + m.payload.len() + 64,
            Gossip::IHave { topic, ids } => 8 + topic.len() + 8 + 32 * ids.len(),
            Gossip::IWant { ids } | Gossip::IDontWant { ids } => 8 + 32 * ids.len(),
            Gossip::Prune { topic, peers, .. } => 8 + topic.len() + 4 + 8 + 64 * peers.len(),
        }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Keypair;
    use crate::wire::messages::GossipMessage;

    fn publish(seqno: u64) -> Gossip {
        let kp = Keypair::from_seed([3; 32]);
        Gossip::Publish(GossipMessage::sign(&kp, seqno, "t".into(), vec![0; 100]))
    }

    fn graft() -> Gossip {
        Gossip::Graft { topic: "t".into() }
    }

    const DL: Duration = Duration::from_secs(2);

    #[test]
    fn control_goes_before_publishes_before_forwards_before_iwant_answers() {
        let t0 = Instant::now();
        let mut q = Outbound::default();
        q.push(t0, Class::Gossip, publish(4), 10, 1000, DL);
        q.push(t0, Class::Forward, publish(3), 10, 1000, DL);
        q.push(t0, Class::Publish, publish(2), 10, 1000, DL);
        q.push(t0, Class::Control, graft(), 10, 1000, DL);
        let mut expired = 0;
        let order: Vec<&str> = std::iter::from_fn(|| q.pop(t0, &mut expired))
            .map(|g| match g {
                Gossip::Publish(m) => ["", "", "publish", "forward", "gossip"][m.seqno as usize],
                _ => "control",
            })
            .collect();
        assert_eq!(order, ["control", "publish", "forward", "gossip"]);
        assert!(q.is_empty());
    }

    #[test]
    fn forwards_past_their_deadline_are_dropped_and_counted() {
        let t0 = Instant::now();
        let mut q = Outbound::default();
        q.push(t0, Class::Forward, publish(1), 10, 1000, DL);
        q.push(t0, Class::Publish, publish(2), 10, 1000, DL);
        let mut expired = 0;
        let late = t0 + DL;
        assert!(matches!(q.pop(late, &mut expired), Some(Gossip::Publish(m)) if m.seqno == 2));
        assert_eq!(q.pop(late, &mut expired), None);
        assert_eq!(expired, 1, "our own message does not expire; the forward does");
        assert_eq!(q.bytes(), 0);
    }

    #[test]
    fn a_full_queue_pushes_out_lower_priority_and_refuses_when_nothing_lower_is_left() {
        let t0 = Instant::now();
        let mut q = Outbound::default();
        assert_eq!(
            q.push(t0, Class::Gossip, publish(1), 40, 100, DL),
            Pushed::Queued { dropped: 0 }
        );
        assert_eq!(
            q.push(t0, Class::Forward, publish(2), 40, 100, DL),
            Pushed::Queued { dropped: 0 }
        );
        assert_eq!(q.push(t0, Class::Control, graft(), 40, 100, DL), Pushed::Queued { dropped: 1 });
        assert_eq!(q.bytes(), 80);
        assert_eq!(
            q.push(t0, Class::Forward, publish(3), 40, 100, DL),
            Pushed::Refused,
            "no lower class left"
        );
        assert_eq!(q.push(t0, Class::Control, graft(), 40, 100, DL), Pushed::Queued { dropped: 1 });
        assert_eq!(
            q.push(t0, Class::Control, graft(), 200, 1000, DL),
            Pushed::Queued { dropped: 0 }
        );
        assert_eq!(
            q.push(t0, Class::Control, graft(), 2000, 1000, DL),
            Pushed::Refused,
            "larger than the bound"
        );
    }

    #[test]
    fn idontwant_cancels_queued_copies_of_that_message_only() {
        let t0 = Instant::now();
        let mut q = Outbound::default();
        q.push(t0, Class::Forward, publish(1), 10, 1000, DL);
        q.push(t0, Class::Gossip, publish(1), 10, 1000, DL);
        q.push(t0, Class::Forward, publish(2), 10, 1000, DL);
        let Gossip::Publish(m) = publish(1) else { unreachable!() };
        assert_eq!(q.cancel(&m.id()), 2);
        assert_eq!(q.bytes(), 10);
        let mut expired = 0;
        assert!(matches!(q.pop(t0, &mut expired), Some(Gossip::Publish(m)) if m.seqno == 2));
    }
}
