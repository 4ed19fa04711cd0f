//! Staggered forwarding of large messages: after its check, a message at or above
//! `GossipConfig::stagger_min_bytes` goes at once to `eager_forwards` of the mesh peers that
//! still need it, chosen at random, and to the others only `stagger_delay` later, to those
//! that have neither sent an IDONTWANT for it nor a copy of it meanwhile.
//!
//! Why: a forward can be cancelled only while we still hold it. Sent at once to every mesh
//! peer, two neighbours that received a message at about the same time forward it to each
//! other before either's IDONTWANT arrives (that takes a link latency, the check a fraction of
//! a millisecond), so nearly every mesh link carries a copy each way and IDONTWANT saves
//! almost nothing (`sim gossip`, 16 KiB, 5–25 ms links: 5.3 duplicates per delivery with or
//! without it). Held for about a link latency, most of those forwards meet the IDONTWANT or
//! the copy that makes them useless. The eager ones carry the message onwards meanwhile, and
//! the held ones still reach a neighbour nobody else served.
//!
//! Bounded: at most `max_held` messages wait (each holds an `Arc` of the message, shared with
//! the message cache, and its list of peers, at most the mesh's size). When full, a message is
//! forwarded to all at once, as without staggering, and counted.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use crate::identity::NodeId;
use crate::wire::messages::{GossipMessage, MessageId};

/// A message's held forwards.
#[derive(Debug)]
pub(super) struct Held {
    /// The message.
    pub(super) msg: Arc<GossipMessage>,
    /// Mesh peers it goes to when due, unless they no longer need it.
    pub(super) to: Vec<NodeId>,
}

/// Forwards held back; see the module doc.
#[derive(Debug, Default)]
pub(super) struct Stagger {
    /// Due times in the order held: every message waits the same delay, so this is in order.
    due: VecDeque<(Instant, MessageId)>,
    held: HashMap<MessageId, Held>,
}

impl Stagger {
    /// Holds `msg`'s forwards to `to` until `due`; gives `to` back if `max_held` messages wait
    /// already (or this one does), for the caller to send at once.
    pub(super) fn hold(
        &mut self,
        due: Instant,
        id: MessageId,
        msg: Arc<GossipMessage>,
        to: Vec<NodeId>,
        max_held: usize,
    ) -> Result<(), Vec<NodeId>> {
        if to.is_empty() {
            return Ok(());
        }
        if self.held.len() >= max_held || self.held.contains_key(&id) {
            return Err(to);
        }
        self.held.insert(id, Held { msg, to });
        self.due.push_back((due, id));
        Ok(())
    }

    /// A copy of `id` came from `from`: it needs none from us. Whether a held forward was
    /// dropped.
    pub(super) fn had(&mut self, id: &MessageId, from: &NodeId) -> bool {
        let Some(held) = self.held.get_mut(id) else { return false };
        let before = held.to.len();
        held.to.retain(|p| p != from);
        held.to.len() < before
    }

    /// The next message whose forwards are due at `now`.
    pub(super) fn pop_due(&mut self, now: Instant) -> Option<(MessageId, Held)> {
        while let Some(&(due, id)) = self.due.front() {
            if due > now {
                return None;
            }
            self.due.pop_front();
            if let Some(held) = self.held.remove(&id) {
                return Some((id, held));
            }
        }
        None
    }

    /// When the next held forwards are due.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        self.due.front().map(|(due, _)| *due)
    }

    /// Whether `id`'s forwards are held.
    pub(super) fn holds(&self, id: &MessageId) -> bool {
        self.held.contains_key(id)
    }

    /// Messages with forwards held.
    pub(super) fn len(&self) -> usize {
        self.held.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Keypair;
    use std::time::Duration;

    fn message(seqno: u64) -> (MessageId, Arc<GossipMessage>) {
        let kp = Keypair::from_seed([7; 32]);
        let m = GossipMessage::sign(&kp, seqno, "t".into(), vec![0; 16]);
        (m.id(), Arc::new(m))
    }

    fn peer(n: u8) -> NodeId {
        NodeId::from_bytes([n; 32])
    }

    #[test]
    fn held_forwards_come_due_in_order_without_the_peers_that_had_it() {
        let t0 = Instant::now();
        let ms = Duration::from_millis(1);
        let mut s = Stagger::default();
        let (a, ma) = message(1);
        let (b, mb) = message(2);
        s.hold(t0 + 20 * ms, a, ma, vec![peer(1), peer(2)], 8).unwrap();
        s.hold(t0 + 25 * ms, b, mb, vec![peer(1)], 8).unwrap();
        assert_eq!(s.next_deadline(), Some(t0 + 20 * ms));
        assert!(s.had(&a, &peer(2)));
        assert!(!s.had(&a, &peer(9)), "not held for it");
        assert!(s.pop_due(t0 + 19 * ms).is_none());
        let (id, held) = s.pop_due(t0 + 20 * ms).unwrap();
        assert_eq!((id, held.to), (a, vec![peer(1)]));
        assert!(s.pop_due(t0 + 24 * ms).is_none());
        assert_eq!(s.pop_due(t0 + 30 * ms).map(|(id, _)| id), Some(b));
        assert_eq!((s.len(), s.next_deadline()), (0, None));
    }

    #[test]
    fn a_full_stagger_gives_the_forwards_back_to_send_at_once() {
        let t0 = Instant::now();
        let mut s = Stagger::default();
        let (a, ma) = message(1);
        let (b, mb) = message(2);
        s.hold(t0, a, Arc::clone(&ma), vec![peer(1)], 1).unwrap();
        assert_eq!(s.hold(t0, b, mb, vec![peer(2)], 1), Err(vec![peer(2)]));
        assert_eq!(s.hold(t0, a, ma, vec![peer(3)], 8), Err(vec![peer(3)]), "held already");
        assert_eq!(s.len(), 1);
    }
}
