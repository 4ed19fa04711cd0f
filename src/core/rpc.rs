//! Request matching, in one place (DESIGN.md, "Core v2"): the requests we sent and wait for,
//! the requests waiting for a connection to their peer, and the answers we owe.
//!
//! - **In flight**: each request we send gets a [`RequestId`] (the wire id, unique per core)
//!   and is kept with its connection, its owner (an application PING or a protocol, with the
//!   protocol's [`RequestKey`]), the peer it went to, and its deadline. A response matches
//!   only on the connection its request went out on. Every request ends exactly once:
//!   answered, timed out (`request_timeout`), or failed when its connection closes.
//! - **Waiting for a dial**: a protocol's request to a peer we are not connected to waits here
//!   (bounded) until the dial completes or fails.
//! - **Owed answers**: an inbound request a protocol answers later is kept under a
//!   [`ReplyTicket`] with its connection and wire id, until the answer comes, the connection
//!   closes, or `answer_timeout` passes (the requester is then told `Overloaded`).
//!
//! Deadlines of both kinds sit in [`Deadlines`] sets: the next one is O(log n) and expiring
//! walks only what is due, in (deadline, id) order, so simultaneous timeouts fire in the order
//! the requests were made.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::{Duration, Instant};

use super::conns::ConnId;
use crate::identity::NodeId;
use crate::protocol::{CommandId, ProtocolId, ReplyTicket, RequestKey};
use crate::timers::Deadlines;
use crate::wire::messages::{Message, PeerInfo, Request};

/// The wire id of a request we sent (messages.md §3: `Request.id`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestId(pub u64);

/// Who waits for a request's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// An application `Ping` command.
    Ping(CommandId),
    /// A protocol, with its name for the request.
    Protocol(ProtocolId, RequestKey),
}

/// A request in flight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    /// The connection it went out on.
    pub conn: ConnId,
    /// The peer, as the owner named it.
    pub to: PeerInfo,
    /// Who waits for it.
    pub owner: Owner,
    /// When it was sent.
    pub sent_at: Instant,
}

/// A protocol's request waiting for its peer's connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queued {
    /// The peer, with the addresses the dial uses.
    pub to: PeerInfo,
    /// Who waits for it.
    pub owner: Owner,
    /// The request.
    pub body: Request,
}

/// An inbound request whose answer is owed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owed {
    /// The connection it came on.
    pub conn: ConnId,
    /// Its wire id, for the response.
    pub id: u64,
}

/// The request tables of one core. See the module doc.
#[derive(Debug)]
pub struct Rpc {
    request_timeout: Duration,
    answer_timeout: Duration,
    max_in_flight: usize,
    max_queued: usize,
    next_id: u64,
    in_flight: BTreeMap<RequestId, Pending>,
    by_conn: BTreeSet<(ConnId, RequestId)>,
    deadlines: Deadlines<RequestId>,
    queued: BTreeMap<NodeId, Vec<Queued>>,
    queued_count: usize,
    next_ticket: u64,
    owed: BTreeMap<ReplyTicket, Owed>,
    owed_by_conn: BTreeSet<(ConnId, ReplyTicket)>,
    owed_deadlines: Deadlines<ReplyTicket>,
}

impl Rpc {
    /// Empty tables. `max_in_flight` bounds the requests in flight, and separately the
    /// requests waiting for a dial.
    pub fn new(request_timeout: Duration, answer_timeout: Duration, max_in_flight: usize) -> Rpc {
        Rpc {
            request_timeout,
            answer_timeout,
            max_in_flight,
            max_queued: max_in_flight,
            next_id: 1,
            in_flight: BTreeMap::new(),
            by_conn: BTreeSet::new(),
            deadlines: Deadlines::new(),
            queued: BTreeMap::new(),
            queued_count: 0,
            next_ticket: 0,
            owed: BTreeMap::new(),
            owed_by_conn: BTreeSet::new(),
            owed_deadlines: Deadlines::new(),
        }
    }

    // ---- Requests we send ----

    /// Records `request` as sent on `conn` and returns the message to send; hands it back
    /// when `max_in_flight` requests are in flight already.
    // The refused request comes back whole, as the caller's own value: boxing it would cost
    // an allocation on every send to save a move on the rare refusal.
    #[allow(clippy::result_large_err)]
    pub fn send(&mut self, now: Instant, conn: ConnId, request: Queued) -> Result<Message, Queued> {
        if self.in_flight.len() >= self.max_in_flight {
            return Err(request);
        }
        let Queued { to, owner, body } = request;
        let id = RequestId(self.next_id);
        self.next_id += 1;
        self.in_flight.insert(id, Pending { conn, to, owner, sent_at: now });
        self.by_conn.insert((conn, id));
        self.deadlines.set(id, now + self.request_timeout);
        Ok(Message::Request { id: id.0, body })
    }

    /// The request a response with wire id `id` on `conn` answers, removed; `None` when no
    /// request of that id is in flight on that connection (late, unsolicited or misrouted).
    pub fn on_response(&mut self, conn: ConnId, id: u64) -> Option<Pending> {
        let id = RequestId(id);
        if self.in_flight.get(&id)?.conn != conn {
            return None;
        }
        self.remove(id)
    }

    /// The next request whose deadline is at or before `now`, removed.
    pub fn poll_timeout(&mut self, now: Instant) -> Option<Pending> {
        let id = self.deadlines.pop_due(now)?;
        self.remove(id)
    }

    /// Every request in flight on `conn`, removed, in the order they were sent.
    pub fn fail_conn(&mut self, conn: ConnId) -> Vec<Pending> {
        let ids: Vec<RequestId> = self
            .by_conn
            .range((conn, RequestId(0))..=(conn, RequestId(u64::MAX)))
            .map(|&(_, id)| id)
            .collect();
        ids.into_iter().filter_map(|id| self.remove(id)).collect()
    }

    /// Requests in flight.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    fn remove(&mut self, id: RequestId) -> Option<Pending> {
        let pending = self.in_flight.remove(&id)?;
        self.by_conn.remove(&(pending.conn, id));
        self.deadlines.clear(id);
        Some(pending)
    }

    // ---- Requests waiting for a dial ----

    /// Whether a request may wait for a dial: fewer than `max_in_flight` wait already.
    pub fn can_queue(&self) -> bool {
        self.queued_count < self.max_queued
    }

    /// Keeps `request` until its peer is connected; hands it back when too many wait.
    #[allow(clippy::result_large_err)]
    pub fn queue(&mut self, request: Queued) -> Result<(), Queued> {
        if !self.can_queue() {
            return Err(request);
        }
        self.queued_count += 1;
        self.queued.entry(request.to.id).or_default().push(request);
        Ok(())
    }

    /// The requests that waited for `peer`, in the order they came.
    pub fn take_queued(&mut self, peer: &NodeId) -> Vec<Queued> {
        let taken = self.queued.remove(peer).unwrap_or_default();
        self.queued_count -= taken.len();
        taken
    }

    // ---- Answers we owe ----

    /// A ticket for an inbound request, in case its answer comes later.
    pub fn ticket(&mut self) -> ReplyTicket {
        let ticket = ReplyTicket(self.next_ticket);
        self.next_ticket += 1;
        ticket
    }

    /// Records that `ticket` (request `id` on `conn`) will be answered later, by
    /// `now + answer_timeout`.
    pub fn owe(&mut self, now: Instant, ticket: ReplyTicket, conn: ConnId, id: u64) {
        self.owed.insert(ticket, Owed { conn, id });
        self.owed_by_conn.insert((conn, ticket));
        self.owed_deadlines.set(ticket, now + self.answer_timeout);
    }

    /// Where the answer for `ticket` goes, removed; `None` when it is no longer owed (its
    /// connection closed or its deadline passed).
    pub fn answer(&mut self, ticket: ReplyTicket) -> Option<Owed> {
        let owed = self.owed.remove(&ticket)?;
        self.owed_by_conn.remove(&(owed.conn, ticket));
        self.owed_deadlines.clear(ticket);
        Some(owed)
    }

    /// The next owed answer whose deadline is at or before `now`, removed.
    pub fn poll_answer_timeout(&mut self, now: Instant) -> Option<Owed> {
        let ticket = self.owed_deadlines.pop_due(now)?;
        self.answer(ticket)
    }

    /// Forgets the answers owed on `conn` (it closed): a late answer for them is dropped.
    pub fn forget_answers(&mut self, conn: ConnId) {
        let tickets: Vec<ReplyTicket> = self
            .owed_by_conn
            .range((conn, ReplyTicket(0))..=(conn, ReplyTicket(u64::MAX)))
            .map(|&(_, t)| t)
            .collect();
        for ticket in tickets {
            self.answer(ticket);
        }
    }

    /// Answers owed now.
    pub fn owed(&self) -> usize {
        self.owed.len()
    }

    // ---- Both ----

    /// Whether `conn` carries a request of ours in flight or an answer we owe: pruning it
    /// would lose one.
    pub fn is_busy(&self, conn: ConnId) -> bool {
        let requests = self.by_conn.range((conn, RequestId(0))..=(conn, RequestId(u64::MAX)));
        let answers =
            self.owed_by_conn.range((conn, ReplyTicket(0))..=(conn, ReplyTicket(u64::MAX)));
        requests.count() > 0 || answers.count() > 0
    }

    /// The earliest request or answer deadline.
    pub fn next_deadline(&self) -> Option<Instant> {
        [self.deadlines.next(), self.owed_deadlines.next()].into_iter().flatten().min()
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "r{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::messages::Request;

    const S: Duration = Duration::from_secs(1);

    fn rpc() -> Rpc {
        Rpc::new(10 * S, 5 * S, 2)
    }

    fn to(first: u8) -> PeerInfo {
        PeerInfo { id: NodeId::from_bytes([first; 32]), addrs: Vec::new() }
    }

    fn ping(cmd: u64) -> Owner {
        Owner::Ping(CommandId(cmd))
    }

    /// A PING to peer `peer` for command `cmd`.
    fn q(peer: u8, cmd: u64) -> Queued {
        Queued { to: to(peer), owner: ping(cmd), body: Request::Ping }
    }

    #[test]
    fn a_response_matches_only_on_the_connection_its_request_went_out_on() {
        let now = Instant::now();
        let mut r = rpc();
        let (a, b) = (ConnId::inbound(1), ConnId::inbound(2));
        let Ok(Message::Request { id, .. }) = r.send(now, a, q(1, 1)) else {
            panic!("expected a request");
        };
        assert_eq!(r.on_response(b, id), None);
        assert_eq!(r.on_response(a, id + 1), None);
        assert_eq!(r.on_response(a, id).map(|p| p.owner), Some(ping(1)));
        assert_eq!((r.on_response(a, id), r.in_flight(), r.next_deadline()), (None, 0, None));
    }

    #[test]
    fn in_flight_requests_are_bounded_and_time_out_in_request_order() {
        let now = Instant::now();
        let mut r = rpc();
        let c = ConnId::inbound(1);
        r.send(now, c, q(1, 1)).unwrap();
        r.send(now, c, q(1, 2)).unwrap();
        assert_eq!(r.send(now, c, q(1, 3)), Err(q(1, 3)));
        assert_eq!(r.next_deadline(), Some(now + 10 * S));
        assert_eq!(r.poll_timeout(now + 10 * S - Duration::from_nanos(1)), None);
        let fired: Vec<Owner> =
            std::iter::from_fn(|| r.poll_timeout(now + 10 * S)).map(|p| p.owner).collect();
        assert_eq!(fired, vec![ping(1), ping(2)]);
    }

    #[test]
    fn a_closed_connection_fails_exactly_its_own_requests() {
        let now = Instant::now();
        let mut r = Rpc::new(10 * S, 5 * S, 8);
        let (a, b) = (ConnId::inbound(1), ConnId::inbound(2));
        r.send(now, a, q(1, 1)).unwrap();
        r.send(now, b, q(2, 2)).unwrap();
        r.send(now, a, q(1, 3)).unwrap();
        assert!(r.is_busy(a) && r.is_busy(b));
        let failed: Vec<Owner> = r.fail_conn(a).into_iter().map(|p| p.owner).collect();
        assert_eq!(failed, vec![ping(1), ping(3)]);
        assert!(!r.is_busy(a) && r.is_busy(b));
        assert_eq!(r.in_flight(), 1);
    }

    #[test]
    fn requests_waiting_for_a_dial_are_bounded_and_taken_per_peer() {
        let mut r = rpc();
        r.queue(q(1, 1)).unwrap();
        r.queue(q(2, 2)).unwrap();
        assert!(!r.can_queue());
        assert_eq!(r.queue(q(1, 3)), Err(q(1, 3)));
        assert_eq!(r.take_queued(&to(1).id), vec![q(1, 1)]);
        assert_eq!(r.take_queued(&to(1).id), vec![]);
        r.queue(q(1, 4)).unwrap();
    }

    #[test]
    fn an_owed_answer_is_given_once_and_expires_or_goes_with_its_connection() {
        let now = Instant::now();
        let mut r = rpc();
        let (a, b) = (ConnId::inbound(1), ConnId::inbound(2));
        let (t1, t2, t3) = (r.ticket(), r.ticket(), r.ticket());
        assert!(t1 != t2 && t2 != t3);
        r.owe(now, t1, a, 7);
        r.owe(now + S, t2, a, 8);
        r.owe(now, t3, b, 9);
        assert!(r.is_busy(a));
        assert_eq!(r.answer(t1), Some(Owed { conn: a, id: 7 }));
        assert_eq!(r.answer(t1), None);
        r.forget_answers(b);
        assert_eq!(r.answer(t3), None);
        assert_eq!(r.next_deadline(), Some(now + 6 * S));
        assert_eq!(r.poll_answer_timeout(now + 6 * S), Some(Owed { conn: a, id: 8 }));
        assert_eq!((r.answer(t2), r.owed(), r.is_busy(a)), (None, 0, false));
    }
}
