//! What each contact proves about a peer, and what the routing table takes from it.
//!
//! Only a dial proves an address: TLS authenticated the peer's key at the address we dialled.
//! So:
//! - A peer we dialled, or that answered over a connection we dialled, is `Verified` at that
//!   one address, whatever else it claims.
//! - A peer that dialled us is `Inbound`: the IP-diversity limits count it at its socket's
//!   address, its addresses are its plausible claims ([`super::claims`]), and a dial-back
//!   ([`Action::Probe`]) of its first claim decides: reached, it becomes `Verified` there;
//!   not reached, it leaves the table. Until then it is used by us but named to no one.
//! - An answer over a connection the peer opened proves it is alive, not where it listens: the
//!   entry is refreshed, its addresses unchanged.
//! - A failed dial is charged to the entry only when the address dialled is the entry's own.
//!   A third party naming an honest id at a dead address costs that party's lookup a dial,
//!   not the honest peer its slot.
//!
//! Dial-backs are bounded: `max_probes` in flight, `max_probe_queue` waiting (the oldest is
//! dropped and counted). One the router could not start (no probe slot, the address backing
//! off) waits again, and the queue pauses until a running dial-back ends or the next
//! maintenance tick.

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use super::claims;
use super::dht::Dht;
use super::routing::Source;
use crate::identity::NodeId;
use crate::protocol::{Action, Direction, Peer, ProbeResult, RequestFailure};
use crate::wire::messages::{ErrorCode, PeerInfo, Response, FEATURE_KAD, MAX_ADDRS_PER_PEER};

impl Dht {
    /// An authenticated peer spoke to us (its Hello, or a request): into the routing table as
    /// what the connection proves. A peer that is no DHT server (no `FEATURE_KAD`,
    /// handshake.md §2) stays out.
    pub(super) fn contact(&mut self, now: Instant, peer: &Peer<'_>) {
        if peer.hello.features & FEATURE_KAD == 0 {
            return;
        }
        let seen_at = peer.addr.ip();
        match peer.direction {
            Direction::Outbound => {
                let reached = PeerInfo { id: peer.id, addrs: vec![peer.addr] };
                self.observe(now, reached, Source::Verified, seen_at);
            }
            Direction::Inbound => {
                let mut addrs = peer.hello.listen_addrs.clone();
                addrs.truncate(2 * MAX_ADDRS_PER_PEER);
                self.keep_plausible(&mut addrs, seen_at);
                addrs.truncate(MAX_ADDRS_PER_PEER);
                let claimed = PeerInfo { id: peer.id, addrs };
                self.observe(now, claimed, Source::Inbound, seen_at);
            }
        }
    }

    /// Drops the addresses that cannot be true coming from `from`, counting them.
    pub(super) fn keep_plausible(&mut self, addrs: &mut Vec<std::net::SocketAddr>, from: IpAddr) {
        let local = self.config.local_network;
        let dropped = claims::retain_plausible(addrs, from, local);
        self.stats.claims_dropped += dropped as u64;
    }

    /// Vets the peers a responder at `from` names in `response`: implausible addresses go (and
    /// peers left with none), and a peer we reached ourselves is tried first at the address we
    /// reached it at, so a third party's claim for a known id costs nothing but a fallback.
    pub(super) fn vet_named_peers(&mut self, response: &mut Response, from: Option<IpAddr>) {
        let lists: Vec<&mut Vec<PeerInfo>> = match response {
            Response::Nodes { closer } | Response::Value { closer, .. } => vec![closer],
            Response::Providers { providers, closer } => vec![providers, closer],
            _ => return,
        };
        let local = self.config.local_network;
        let unspecified = IpAddr::from([0u8; 4]);
        for list in lists {
            for named in list.iter_mut() {
                let from = from.unwrap_or(unspecified);
                let dropped = claims::retain_plausible(&mut named.addrs, from, local);
                self.stats.claims_dropped += dropped as u64;
                if let Some(e) =
                    self.routing.get(&named.id).filter(|e| e.source == Source::Verified)
                {
                    let mut addrs = e.peer.addrs.clone();
                    addrs.extend(named.addrs.iter().filter(|a| !e.peer.addrs.contains(a)));
                    addrs.truncate(MAX_ADDRS_PER_PEER);
                    named.addrs = addrs;
                }
            }
            // A peer named nowhere plausible is no candidate: it would only take the id's
            // place in a lookup from an honest claim.
            list.retain(|p| !p.addrs.is_empty());
        }
    }

    /// What the outcome of a request to `to` (answered over `via` if we dialled it) proves.
    pub(super) fn account_outcome(
        &mut self,
        now: Instant,
        to: &PeerInfo,
        via: Option<SocketAddr>,
        result: &Result<Response, RequestFailure>,
    ) {
        match (result, via) {
            (Ok(Response::Error { code: ErrorCode::Unsupported, .. }), _) => {
                self.routing.record_failure(&to.id);
            }
            (Ok(_), Some(addr)) => {
                let reached = PeerInfo { id: to.id, addrs: vec![addr] };
                self.observe(now, reached, Source::Verified, addr.ip());
            }
            (Ok(_), None) => {
                self.routing.heard_from(now, &to.id);
            }
            (Err(RequestFailure::Unreachable), _) => {
                // The router dialled `to.addrs[0]`: that address failed, not the id.
                let dialled = to.addrs.first();
                let ours = self.routing.get(&to.id).and_then(|e| e.peer.addrs.first());
                if dialled.is_some() && dialled == ours {
                    self.routing.record_failure(&to.id);
                } else {
                    self.stats.failures_not_charged += 1;
                }
            }
            // It was connected, authenticated, and did not answer.
            (Err(RequestFailure::Timeout | RequestFailure::Disconnected), _) => {
                self.routing.record_failure(&to.id);
            }
        }
    }

    /// Whether `peer`'s bucket needs more verified entries: fewer than half of k are. A
    /// bucket with that many has enough to name to others, and a dial-back costs a TLS
    /// handshake on both sides, so a new inbound peer there is used but not dialled back.
    pub(super) fn wants_verified(&self, peer: &NodeId) -> bool {
        let Some(b) = self.routing.bucket_index(peer) else { return false };
        let verified =
            self.routing.bucket_entries(b).iter().filter(|e| e.source == Source::Verified).count();
        verified < self.config.routing.k.div_ceil(2)
    }

    /// Asks for a dial-back of `peer` at `addr`, now or when a slot frees.
    pub(super) fn probe(&mut self, peer: NodeId, addr: SocketAddr) {
        if !self.probes_paused && self.probes_in_flight < self.config.max_probes {
            self.probes_in_flight += 1;
            self.outputs.push_back(Action::Probe { peer, addr });
            return;
        }
        self.queue_probe(peer, addr);
    }

    fn queue_probe(&mut self, peer: NodeId, addr: SocketAddr) {
        self.probe_queue.push_back((peer, addr));
        while self.probe_queue.len() > self.config.max_probe_queue {
            self.probe_queue.pop_front();
            self.stats.probe_queue_drops += 1;
        }
    }

    /// Lets waiting dial-backs start again (the maintenance tick).
    pub(super) fn resume_probes(&mut self) {
        self.probes_paused = false;
        self.next_probes();
    }

    /// The result of a dial-back.
    pub(super) fn on_probe(
        &mut self,
        now: Instant,
        peer: NodeId,
        addr: SocketAddr,
        result: ProbeResult,
    ) {
        self.probes_in_flight = self.probes_in_flight.saturating_sub(1);
        match result {
            ProbeResult::Reached => {
                self.stats.probes_reached += 1;
                let reached = PeerInfo { id: peer, addrs: vec![addr] };
                self.observe(now, reached, Source::Verified, addr.ip());
            }
            ProbeResult::Unreachable => {
                self.stats.probes_failed += 1;
                let unproven = self.routing.get(&peer).is_some_and(|e| e.source == Source::Inbound);
                if unproven {
                    self.routing.remove(&peer);
                }
            }
            ProbeResult::NotTried => {
                // Not the address's fault: it waits, and so does the queue.
                self.stats.probes_not_tried += 1;
                self.queue_probe(peer, addr);
                self.probes_paused = true;
                return;
            }
        }
        self.probes_paused = false;
        self.next_probes();
    }

    /// Starts waiting dial-backs while slots are free, skipping peers that left the table or
    /// were verified meanwhile.
    fn next_probes(&mut self) {
        while !self.probes_paused && self.probes_in_flight < self.config.max_probes {
            let Some((peer, addr)) = self.probe_queue.pop_front() else { return };
            let unproven = self.routing.get(&peer).is_some_and(|e| e.source == Source::Inbound);
            if unproven {
                self.probes_in_flight += 1;
                self.outputs.push_back(Action::Probe { peer, addr });
            }
        }
    }
}
