//! One control client, on its own thread: requests in, answers out, through the node's
//! [`Handle`](crate::node::Handle) (proto-spec/control.md §6).
//!
//! A request that does not decode is answered `bad_request` and changes nothing; the
//! connection stays usable, since the frame boundaries are intact. A frame header above the
//! limit, a request that does not arrive in time, or an answer the client does not take in
//! time ends the connection.
//!
//! `Subscribe` turns the connection into a stream. What it holds for a client is bounded: the
//! frames not yet written are at most `MAX_PENDING_BYTES`, and a delivery that does not fit is
//! dropped and counted in the next message's `lost`; a client that takes nothing for the write
//! timeout, or closes its end, ends the stream, as does the node or the server stopping.

use std::io::{self, ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crossbeam_channel::RecvTimeoutError;

use super::frames::{write_all_by, FrameReader, ReadError};
use super::protocol::{
    decode_request, encode_response, ControlErrorCode, ControlRequest, ControlResponse, Delivered,
    PeerDirection, PeerEntry, Status, TopicMesh, MAX_CONTROL_FRAME_BYTES, MAX_CONTROL_PEERS,
    MAX_CONTROL_TOPICS,
};
use super::server::Shared;
use crate::addr::PeerAddr;
use crate::core::Direction;
use crate::gossip::{Delivery, GossipError};
use crate::kad::dht::DhtError;
use crate::node::{CallError, Subscription};
use crate::wire::messages::Record;
use ControlErrorCode::{BadRequest, Timeout, TooLarge};

/// Frames of a subscription waiting for the client, at most: two of the largest deliveries.
pub const MAX_PENDING_BYTES: usize = 2 * MAX_CONTROL_FRAME_BYTES;

/// How often a streaming client is checked for a closed end, and the server for a stop.
const STREAM_TICK: Duration = Duration::from_millis(100);
/// The same, while frames wait for a client that is slow to read.
const BLOCKED_TICK: Duration = Duration::from_millis(10);

/// Serves `stream` until the client leaves, breaks a rule, or the server stops.
pub(super) fn serve(shared: &Shared, mut stream: UnixStream) {
    let mut reader = FrameReader::new(MAX_CONTROL_FRAME_BYTES);
    while !shared.stopping.load(Ordering::SeqCst) {
        let deadline = Instant::now() + shared.config.request_timeout;
        let payload = match reader.read_frame(&mut stream, Some(deadline)) {
            Ok(payload) => payload,
            Err(ReadError::TimedOut) => {
                let text = format!("no whole request within {:?}", shared.config.request_timeout);
                let _ = reply(shared, &mut stream, &ControlResponse::error(Timeout, text));
                return;
            }
            Err(ReadError::TooLarge(e)) => {
                let _ = reply(shared, &mut stream, &ControlResponse::error(TooLarge, e));
                return;
            }
            Err(ReadError::Closed | ReadError::Cut | ReadError::Io(_)) => return,
        };
        let answer = match decode_request(&payload) {
            Err(e) => ControlResponse::error(BadRequest, format!("{}: {e}", e.name())),
            Ok(ControlRequest::Subscribe { topic }) => return subscribe(shared, stream, topic),
            Ok(ControlRequest::Shutdown) => return shut_down(shared, stream),
            Ok(request) => execute(shared, request),
        };
        if reply(shared, &mut stream, &answer).is_err() {
            return;
        }
    }
}

/// Tells the owner to stop, answers, and keeps the connection open until the server stops,
/// so that the client sees it close once the node is down.
fn shut_down(shared: &Shared, mut stream: UnixStream) {
    shared.shutdown.store(true, Ordering::SeqCst);
    if reply(shared, &mut stream, &ControlResponse::ShuttingDown).is_err()
        || stream.set_nonblocking(true).is_err()
    {
        return;
    }
    while !shared.stopping.load(Ordering::SeqCst) && !client_left(&mut stream) {
        std::thread::sleep(STREAM_TICK);
    }
}

/// Writes one answer within the write timeout.
fn reply(shared: &Shared, stream: &mut UnixStream, answer: &ControlResponse) -> io::Result<()> {
    let mut frame = Vec::new();
    if let Err(e) = encode_response(answer, &mut frame) {
        // Only a bug builds an answer over a bound; the client hears of it all the same.
        frame.clear();
        let fallback = ControlResponse::error(ControlErrorCode::Failed, e);
        encode_response(&fallback, &mut frame).map_err(io::Error::other)?;
    }
    write_all_by(stream, &frame, Instant::now() + shared.config.write_timeout)
}

/// Runs a one-answer request on the node.
fn execute(shared: &Shared, request: ControlRequest) -> ControlResponse {
    let h = &shared.handle;
    let result = match request {
        ControlRequest::Status => status(shared),
        ControlRequest::Peers => h.peers().map(|peers| ControlResponse::Peers {
            peers: peers.into_iter().take(MAX_CONTROL_PEERS).map(peer_entry).collect(),
        }),
        ControlRequest::Connect { id, addr } => {
            h.connect(PeerAddr { id, addr }).map(|id| ControlResponse::Connected { id })
        }
        ControlRequest::Put { value } => h.put(value.as_slice().to_vec()).map(stored),
        ControlRequest::PutMutable { record } => {
            h.put_record(Record::Mutable(record), None).map(stored)
        }
        ControlRequest::Get { key } => match h.get(key) {
            Ok(Some(found)) => {
                Ok(ControlResponse::Value { record: found.record, local: found.local })
            }
            Ok(None) => Ok(ControlResponse::error(ControlErrorCode::NotFound, "no record found")),
            Err(e) => Err(e),
        },
        ControlRequest::Provide { key } => h.provide(key).map(stored),
        ControlRequest::Providers { key } => {
            h.providers(key).map(|found| ControlResponse::Providers { providers: found.providers })
        }
        ControlRequest::Publish { topic, payload } => h
            .publish(&topic, payload.as_slice().to_vec())
            .map(|p| ControlResponse::Published { id: p.id, peers: p.peers as u64 }),
        // Served by `serve` itself; never passed here.
        ControlRequest::Subscribe { .. } | ControlRequest::Shutdown => {
            Ok(ControlResponse::error(BadRequest, "not a one-answer request"))
        }
    };
    result.unwrap_or_else(|e| call_error(&e))
}

fn status(shared: &Shared) -> Result<ControlResponse, CallError> {
    let h = &shared.handle;
    let snapshot = h.snapshot()?;
    let peers = h.peers()?.len();
    // Without gossip there are no topics to list.
    let topics = h.meshes().unwrap_or_default();
    Ok(ControlResponse::Status(Status {
        id: shared.node.id,
        listen_addr: shared.node.listen_addr,
        uptime_secs: shared.started.elapsed().as_secs(),
        peers: peers as u64,
        connections_inbound: snapshot.peers.connections_inbound as u64,
        connections_outbound: snapshot.peers.connections_outbound as u64,
        routing_entries: snapshot.routing.entries as u64,
        records: snapshot.store.records as u64,
        provider_records: snapshot.store.provider_records as u64,
        topics: topics
            .into_iter()
            .take(MAX_CONTROL_TOPICS)
            .map(|(topic, mesh)| TopicMesh { topic, mesh_peers: mesh as u64 })
            .collect(),
    }))
}

fn peer_entry(p: crate::core::PeerSummary) -> PeerEntry {
    PeerEntry {
        id: p.id,
        addr: p.addr,
        direction: match p.direction {
            Direction::Inbound => PeerDirection::Inbound,
            Direction::Outbound => PeerDirection::Outbound,
        },
        agent: p.agent,
        listen_addrs: p.listen_addrs,
    }
}

fn stored(p: crate::kad::dht::Published) -> ControlResponse {
    ControlResponse::Stored { key: p.key, stored: p.stored as u64, attempted: p.attempted as u64 }
}

/// The answer for a failed call: the caller's mistakes are `bad_request`, the rest named by
/// what went wrong.
fn call_error(e: &CallError) -> ControlResponse {
    let code = match e {
        CallError::Busy => ControlErrorCode::Busy,
        CallError::Timeout => ControlErrorCode::Timeout,
        CallError::Stopped => ControlErrorCode::Stopping,
        CallError::Unsupported => ControlErrorCode::Unsupported,
        CallError::Dht(DhtError::Invalid(_))
        | CallError::Gossip(GossipError::BadTopic | GossipError::TooLarge) => BadRequest,
        CallError::Dht(DhtError::NotFound(_)) => ControlErrorCode::NotFound,
        CallError::Connect(_)
        | CallError::Request(_)
        | CallError::Dht(_)
        | CallError::Gossip(_) => ControlErrorCode::Failed,
    };
    ControlResponse::error(code, e)
}

// ---------------------------------------------------------------------------------------------
// Subscribe: a stream of deliveries
// ---------------------------------------------------------------------------------------------

/// Joins `topic` for the client and streams its deliveries until the stream ends.
fn subscribe(shared: &Shared, mut stream: UnixStream, topic: String) {
    let sub = match join(shared, &topic) {
        Ok(sub) => sub,
        Err(answer) => {
            let _ = reply(shared, &mut stream, &answer);
            return;
        }
    };
    let streamed = Streamed { shared, sub: Some(sub), topic: &topic };
    if reply(shared, &mut stream, &ControlResponse::Subscribed).is_ok()
        && stream.set_nonblocking(true).is_ok()
    {
        let _ = streamed.run(&mut stream);
    }
}

/// Subscribes the node, counting the client among the topic's control subscribers.
fn join(shared: &Shared, topic: &str) -> Result<Subscription, Box<ControlResponse>> {
    // Held across the call: a leaving last subscriber must not unsubscribe the node between
    // this subscription and its count.
    let poisoned = || Box::new(ControlResponse::error(ControlErrorCode::Failed, "state poisoned"));
    let mut topics = shared.topics.lock().map_err(|_| poisoned())?;
    let sub = shared.handle.subscribe(topic).map_err(|e| Box::new(call_error(&e)))?;
    *topics.entry(topic.to_string()).or_default() += 1;
    Ok(sub)
}

/// A subscription being streamed to one client; leaving unsubscribes the node from the topic
/// when no other control client is in it.
struct Streamed<'a> {
    shared: &'a Shared,
    sub: Option<Subscription>,
    topic: &'a str,
}

impl Streamed<'_> {
    fn run(&self, stream: &mut UnixStream) -> io::Result<()> {
        let Some(sub) = &self.sub else { return Ok(()) };
        let mut out = Outgoing::default();
        let mut lost = 0u64;
        let mut progress_at = Instant::now();
        while !self.shared.stopping.load(Ordering::SeqCst) {
            let tick = if out.is_empty() { STREAM_TICK } else { BLOCKED_TICK };
            let was_empty = out.is_empty();
            match sub.receiver().recv_timeout(tick) {
                Ok(first) => {
                    // At most the subscription's queue per round: it is bounded.
                    for d in std::iter::once(first).chain(sub.receiver().try_iter()) {
                        if !out.push(&d, sub.lost() + lost) {
                            lost += 1;
                        }
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                // The node stopped.
                Err(RecvTimeoutError::Disconnected) => return Ok(()),
            }
            if was_empty && !out.is_empty() {
                progress_at = Instant::now();
            }
            if out.flush(stream)? {
                progress_at = Instant::now();
            }
            if !out.is_empty() && progress_at.elapsed() > self.shared.config.write_timeout {
                return Err(io::Error::new(ErrorKind::TimedOut, "client stopped reading"));
            }
            if client_left(stream) {
                return Ok(());
            }
        }
        Ok(())
    }
}

impl Drop for Streamed<'_> {
    fn drop(&mut self) {
        let Some(sub) = self.sub.take() else { return };
        drop(sub);
        let Ok(mut topics) = self.shared.topics.lock() else { return };
        let Some(count) = topics.get_mut(self.topic) else { return };
        *count -= 1;
        if *count == 0 {
            topics.remove(self.topic);
            let _ = self.shared.handle.unsubscribe(self.topic);
        }
    }
}

/// Whether a streaming client closed its end (or sent bytes, which it must not).
fn client_left(stream: &mut UnixStream) -> bool {
    let mut byte = [0u8; 1];
    match stream.read(&mut byte) {
        // End of stream.
        Ok(0) => true,
        // A byte, which a streaming client must not send.
        Ok(_) => true,
        Err(e) => !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted),
    }
}

/// Encoded frames not yet written, at most `MAX_PENDING_BYTES`.
#[derive(Default)]
struct Outgoing {
    bytes: Vec<u8>,
    /// Written so far.
    sent: usize,
}

impl Outgoing {
    fn is_empty(&self) -> bool {
        self.sent == self.bytes.len()
    }

    /// Queues the frame of `d`; `false` (nothing queued) when it does not fit.
    fn push(&mut self, d: &Delivery, lost: u64) -> bool {
        if self.sent > 0 {
            self.bytes.drain(..self.sent);
            self.sent = 0;
        }
        let start = self.bytes.len();
        let message = ControlResponse::Message(Delivered {
            from: d.from,
            lost,
            message: (*d.message).clone(),
        });
        let fits = encode_response(&message, &mut self.bytes).is_ok()
            && self.bytes.len() <= MAX_PENDING_BYTES;
        if !fits {
            self.bytes.truncate(start);
        }
        fits
    }

    /// Writes what the socket takes now; whether it took anything.
    fn flush(&mut self, stream: &mut UnixStream) -> io::Result<bool> {
        let mut wrote = false;
        while !self.is_empty() {
            match stream.write(&self.bytes[self.sent..]) {
                Ok(0) => return Err(ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.sent += n;
                    wrote = true;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if self.is_empty() {
            self.bytes.clear();
            self.sent = 0;
        }
        Ok(wrote)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::identity::{Keypair, NodeId};
    use crate::wire::messages::{GossipMessage, MAX_PAYLOAD_BYTES};

    fn delivery(payload_bytes: usize) -> Delivery {
        let message = GossipMessage::sign(
            &Keypair::from_seed([1; 32]),
            1,
            "t".into(),
            vec![7; payload_bytes],
        );
        Delivery { from: NodeId::from_bytes([2; 32]), id: message.id(), message: Arc::new(message) }
    }

    #[test]
    fn a_client_that_does_not_read_holds_at_most_the_pending_bound() {
        let mut out = Outgoing::default();
        let big = delivery(MAX_PAYLOAD_BYTES);
        assert!(out.push(&big, 0) && out.push(&big, 0), "two of the largest fit");
        assert!(!out.push(&big, 0), "a third does not");
        assert!(out.bytes.len() <= MAX_PENDING_BYTES);
        // What fits in the rest still goes in; a refusal leaves the queue as it was.
        let before = out.bytes.len();
        assert!(out.push(&delivery(10), 1));
        assert!(out.bytes.len() > before && out.bytes.len() <= MAX_PENDING_BYTES);
    }

    #[test]
    fn written_bytes_make_room_for_more() {
        let (mut ours, mut theirs) = UnixStream::pair().unwrap();
        ours.set_nonblocking(true).unwrap();
        let reader = std::thread::spawn(move || {
            let mut all = Vec::new();
            theirs.read_to_end(&mut all).map(|_| all.len())
        });
        let mut out = Outgoing::default();
        let big = delivery(MAX_PAYLOAD_BYTES);
        assert!(out.push(&big, 0) && out.push(&big, 0) && !out.push(&big, 0));
        let total = out.bytes.len();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !out.is_empty() {
            assert!(Instant::now() < deadline, "the reader took nothing");
            if !out.flush(&mut ours).unwrap() {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        // Emptied, the queue takes the largest deliveries again.
        assert!(out.push(&big, 0));
        drop(ours);
        assert_eq!(reader.join().unwrap().unwrap(), total);
    }
}
