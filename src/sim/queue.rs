//! The simulator's event queue: a min-heap on `(time, sequence number)`.
//!
//! Time is virtual (a `Duration` since the simulation's epoch). Events at equal times pop in
//! the order they were pushed, so a run replays exactly. The queue has a cap for the events
//! that grow with network traffic ([`EventQueue::try_push`]); events the simulation cannot do
//! without (timers, close notifications) use [`EventQueue::push`], which the cap does not
//! limit: there is at most a handful per node and link.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::fmt;
use std::time::Duration;

use slab::Slab;

/// A bounded min-heap of events keyed by virtual time, FIFO among equal times.
#[derive(Debug)]
pub struct EventQueue<E> {
    /// Small ordered keys; the events themselves stay put in `events`, so sifting the heap
    /// moves a few words per step, not a whole event carrying a message.
    heap: BinaryHeap<Entry>,
    events: Slab<E>,
    next_seq: u64,
    max_len: usize,
}

/// `try_push` found the queue at its cap; the event was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueFull;

impl<E> EventQueue<E> {
    /// An empty queue that accepts `try_push` while it holds fewer than `max_len` events.
    pub fn new(max_len: usize) -> EventQueue<E> {
        EventQueue { heap: BinaryHeap::new(), events: Slab::new(), next_seq: 0, max_len }
    }

    /// Queues `event` at `at` unless the queue is at its cap.
    pub fn try_push(&mut self, at: Duration, event: E) -> Result<(), QueueFull> {
        if self.heap.len() >= self.max_len {
            return Err(QueueFull);
        }
        self.push(at, event);
        Ok(())
    }

    /// Queues `event` at `at`, past the cap if need be.
    pub fn push(&mut self, at: Duration, event: E) {
        let seq = self.next_seq;
        self.next_seq += 1;
        let slot = self.events.insert(event);
        self.heap.push(Entry { at, seq, slot });
    }

    /// The earliest event and its time.
    pub fn pop(&mut self) -> Option<(Duration, E)> {
        let entry = self.heap.pop()?;
        // Every key in the heap names an occupied slot: they are added and removed together.
        let event = self.events.try_remove(entry.slot)?;
        Some((entry.at, event))
    }

    /// When the earliest event is due.
    pub fn peek_time(&self) -> Option<Duration> {
        self.heap.peek().map(|e| e.at)
    }

    /// Events queued.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Whether no event is queued.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

impl fmt::Display for QueueFull {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the simulator's event queue is full")
    }
}

impl std::error::Error for QueueFull {}

/// An event's place in the order, and where the event waits.
#[derive(Debug)]
struct Entry {
    at: Duration,
    seq: u64,
    slot: usize,
}

// Reversed on (at, seq) so that std's max-heap pops the earliest; the slot is not compared.
impl Ord for Entry {
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl Eq for Entry {}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn pops_by_time_then_insertion_order() {
        let mut q = EventQueue::new(10);
        q.push(3 * MS, "c");
        q.push(MS, "a1");
        q.push(2 * MS, "b");
        q.push(MS, "a2");
        assert_eq!(q.peek_time(), Some(MS));
        let order: Vec<_> = std::iter::from_fn(|| q.pop()).collect();
        assert_eq!(order, vec![(MS, "a1"), (MS, "a2"), (2 * MS, "b"), (3 * MS, "c")]);
        assert!(q.is_empty());
        assert_eq!(q.peek_time(), None);
    }

    #[test]
    fn try_push_refuses_at_the_cap_but_push_does_not() {
        let mut q = EventQueue::new(2);
        assert_eq!(q.try_push(MS, 1), Ok(()));
        assert_eq!(q.try_push(MS, 2), Ok(()));
        assert_eq!(q.try_push(MS, 3), Err(QueueFull));
        q.push(MS, 4);
        assert_eq!(q.len(), 3);
        let order: Vec<_> = std::iter::from_fn(|| q.pop()).map(|(_, e)| e).collect();
        assert_eq!(order, vec![1, 2, 4]);
    }
}
