//! Adversarial node behaviours for the simulator (DESIGN.md, "Simulator"; issue: "adversarial
//! node kinds").
//!
//! An adversary has no `NodeCore`: the simulator accepts its connections and asks
//! [`Adversary::respond`] what to answer to each request. Every kind but `Silent` answers PING
//! with PONG, so a liveness check alone never exposes it.
//!
//! - `Silent` accepts connections and never sends anything: requests to it time out.
//! - `FabricateCloser` answers `FindNode` / `FindValue` / `GetProviders` with
//!   [`MAX_PEERS_PER_RESPONSE`] invented peers whose ids share [`FABRICATED_PREFIX_BYTES`]
//!   bytes with the target, so they look closer than any honest node. Their addresses lie in
//!   198.18.0.0/15 (RFC 2544 benchmarking space), each in its own /24 to pass IP-diversity
//!   limits, and never resolve: simulator nodes live in 10.0.0.0/8. It swallows `Store` and
//!   `AddProvider` (answers success, keeps nothing).
//! - `BadRecords` keeps the records stored to it (bounded) and serves them back forged: a
//!   mutable record with its sequence number raised and its value changed under the old
//!   signature (the key still matches, the signature does not verify), an immutable record
//!   with a changed value (the key no longer matches the hash). For keys it never saw it
//!   serves an invented record, alternating mutable (random key, bad signature) and
//!   immutable (wrong hash). It answers `FindNode` and `GetProviders` with empty lists: an
//!   honest-looking node that knows nobody.
//! - `Eclipse` nodes collude: a lookup that reaches one is told only of the `Eclipse` nodes
//!   nearest its target, which answer alike, so a single-path lookup that learns of them is
//!   captured: its k nearest candidates fill with adversaries that all answer. The simulator
//!   answers for them, since only it knows every colluder.
//! - `DeadAddresses` answers lookups with the real honest nodes nearest the target, each at an
//!   unroutable address: a third party's false claim about honest ids, which must cost a
//!   lookup a dial and the honest nodes nothing (their routing entries stay). `LoopbackClaims`
//!   names them at 127.0.0.1, which no peer on a network can truthfully claim for another
//!   host. The simulator answers for both, since only it knows the honest nodes.
//! - `Flood` answers like a minimal honest node; its attack (dialling honest nodes and
//!   sending `FindNode` at a fixed rate) is driven by the simulator's ticks.
//! - `Honest` is a minimal well-behaved responder without a core: PONG, empty lists, and
//!   `Unsupported` for `Store` / `AddProvider`. Useful as a cheap filler node.
//!
//! The `impl Sim` block at the end is the simulator's side: it routes requests to
//! [`Adversary::respond`] and runs the flood ticks.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use super::gossip_adversary::{GossipAttack, GossipSybil};
use super::links::{LinkId, LinkState, Side};
use super::{Node, NodeIdx, Role, Sim, UNSPECIFIED};
use crate::bytes::{ByteBuf, Bytes32, Bytes64};
use crate::identity::NodeId;
use crate::rng::Rng;
use crate::wire::messages::{
    ErrorCode, Key, Message, MutableRecord, PeerInfo, Record, Request, Response,
    MAX_PEERS_PER_RESPONSE,
};

/// How a simulated node behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeKind {
    /// Driven by a real `NodeCore` (or, for [`super::Sim::add_adversary`], the minimal
    /// responder described in the module doc).
    Honest,
    /// Accepts connections and never answers anything, not even PING.
    Silent,
    /// Answers lookups with invented peers that look closest to the target.
    FabricateCloser,
    /// Serves records with bad signatures or values that do not match their key.
    BadRecords,
    /// Colludes with the other `Eclipse` nodes: answers lookups with the `Eclipse` nodes
    /// nearest the target (real, reachable, answering the same way) and never names an honest
    /// node; claims to store everything and keeps nothing. The attack disjoint paths are for.
    Eclipse,
    /// Names the honest nodes nearest a lookup's target at addresses where nothing listens.
    DeadAddresses,
    /// Names the honest nodes nearest a lookup's target at loopback addresses.
    LoopbackClaims,
    /// Dials honest nodes and sends `FindNode` with random targets at this rate, ignoring the
    /// answers.
    Flood {
        /// Requests per second, all its connections together (0 = connect only).
        requests_per_sec: u32,
    },
    /// A gossip sybil ([`super::gossip_adversary`]); answers requests like `Honest`.
    Gossip(GossipAttack),
}

/// Counters of one adversary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AdversaryStats {
    /// Requests answered.
    pub answered: u64,
    /// Requests left unanswered (`Silent`).
    pub ignored: u64,
    /// Records kept for forging (`BadRecords`).
    pub records_kept: u64,
    /// Records not kept because `max_records` was reached.
    pub records_refused: u64,
}

/// The request-answering state of one adversarial node.
#[derive(Debug, Clone)]
pub struct Adversary {
    kind: NodeKind,
    rng: Rng,
    /// Records stored to a `BadRecords` node, by key; at most `max_records`.
    records: BTreeMap<Key, Record>,
    max_records: usize,
    /// Alternates the invented record kind for unknown keys.
    forged: u64,
    stats: AdversaryStats,
    /// A gossip sybil's state.
    sybil: GossipSybil,
}

impl Adversary {
    /// An adversary of `kind` whose invented ids and records come from `seed`; a
    /// `BadRecords` node keeps at most `max_records` records.
    pub fn new(kind: NodeKind, seed: u64, max_records: usize) -> Adversary {
        Adversary {
            kind,
            rng: Rng::new(seed),
            records: BTreeMap::new(),
            max_records,
            forged: 0,
            stats: AdversaryStats::default(),
            sybil: GossipSybil::default(),
        }
    }

    /// Its kind.
    pub fn kind(&self) -> NodeKind {
        self.kind
    }

    /// A gossip sybil's state.
    pub(super) fn sybil(&mut self) -> &mut GossipSybil {
        &mut self.sybil
    }

    /// Its counters.
    pub fn stats(&self) -> AdversaryStats {
        self.stats
    }

    /// The adversary's own randomness, also used by the simulator for its attack choices so
    /// that adding an adversary does not shift any other node's random stream.
    pub fn rng(&mut self) -> &mut Rng {
        &mut self.rng
    }

    /// What to answer to `request` from a peer seen at `observed`; `None` = stay silent.
    pub fn respond(&mut self, observed: SocketAddr, request: Request) -> Option<Response> {
        let response = match self.kind {
            NodeKind::Silent => None,
            NodeKind::FabricateCloser => Some(self.fabricate(observed, request)),
            NodeKind::BadRecords => Some(self.bad_records(observed, request)),
            NodeKind::Honest | NodeKind::Flood { .. } | NodeKind::Gossip(_) => {
                Some(minimal(observed, request))
            }
            // Answered by the simulator, which knows the colluders and the honest nodes
            // (`Sim::eclipse_answer`, `Sim::misdirect_answer`).
            NodeKind::Eclipse | NodeKind::DeadAddresses | NodeKind::LoopbackClaims => {
                Some(minimal(observed, request))
            }
        };
        match response {
            Some(_) => self.stats.answered += 1,
            None => self.stats.ignored += 1,
        }
        response
    }

    fn fabricate(&mut self, observed: SocketAddr, request: Request) -> Response {
        match request {
            Request::FindNode { target } => Response::Nodes { closer: self.closer(target) },
            Request::FindValue { key } => {
                Response::Value { record: None, closer: self.closer(key) }
            }
            Request::GetProviders { key } => {
                Response::Providers { providers: Vec::new(), closer: self.closer(key) }
            }
            // A black hole: claims success and keeps nothing.
            Request::Store { .. } => Response::Stored,
            Request::AddProvider { .. } => Response::ProviderAdded,
            Request::Ping => Response::Pong { observed },
        }
    }

    fn bad_records(&mut self, observed: SocketAddr, request: Request) -> Response {
        match request {
            Request::FindValue { key } => {
                Response::Value { record: Some(self.forge(key)), closer: Vec::new() }
            }
            Request::Store { record, .. } => {
                self.keep(record);
                Response::Stored
            }
            Request::FindNode { .. } => Response::Nodes { closer: Vec::new() },
            Request::GetProviders { .. } => {
                Response::Providers { providers: Vec::new(), closer: Vec::new() }
            }
            Request::AddProvider { .. } => Response::ProviderAdded,
            Request::Ping => Response::Pong { observed },
        }
    }

    /// [`MAX_PEERS_PER_RESPONSE`] invented peers near `target`, never `target` itself.
    fn closer(&mut self, target: Key) -> Vec<PeerInfo> {
        (0..MAX_PEERS_PER_RESPONSE).map(|_| self.fabricated_peer(target)).collect()
    }

    fn fabricated_peer(&mut self, target: Key) -> PeerInfo {
        let mut id = *target.as_bytes();
        let tail = self.rng.bytes32();
        id[FABRICATED_PREFIX_BYTES..].copy_from_slice(&tail[FABRICATED_PREFIX_BYTES..]);
        if id == *target.as_bytes() {
            id[31] ^= 1;
        }
        let r = self.rng.next_u64();
        PeerInfo { id: NodeId::from_bytes(id), addrs: vec![unroutable(r)] }
    }

    fn keep(&mut self, record: Record) {
        let key = record.key();
        if !self.records.contains_key(&key) && self.records.len() >= self.max_records {
            self.stats.records_refused += 1;
            return;
        }
        self.stats.records_kept += 1;
        self.records.insert(key, record);
    }

    /// A record served under `key` that an honest node must reject.
    fn forge(&mut self, key: Key) -> Record {
        match self.records.get(&key) {
            // Same author and salt, so the key matches; the old signature does not cover the
            // raised sequence number and the new value.
            Some(Record::Mutable(m)) => Record::Mutable(MutableRecord {
                seq: m.seq.saturating_add(1),
                value: ByteBuf::from(FORGED_VALUE.to_vec()),
                ..m.clone()
            }),
            Some(Record::Immutable { value }) => {
                let mut value = value.as_slice().to_vec();
                value.extend_from_slice(FORGED_VALUE);
                Record::Immutable { value: ByteBuf::from(value) }
            }
            None => self.invent_record(),
        }
    }

    fn invent_record(&mut self) -> Record {
        self.forged += 1;
        if self.forged % 2 == 1 {
            let mut signature = [0u8; 64];
            signature[..32].copy_from_slice(&self.rng.bytes32());
            signature[32..].copy_from_slice(&self.rng.bytes32());
            Record::Mutable(MutableRecord {
                public_key: Bytes32(self.rng.bytes32()),
                salt: ByteBuf::from(Vec::new()),
                seq: u64::MAX,
                value: ByteBuf::from(FORGED_VALUE.to_vec()),
                signature: Bytes64(signature),
            })
        } else {
            Record::Immutable { value: ByteBuf::from(FORGED_VALUE.to_vec()) }
        }
    }
}

// ---- Driving adversaries in the simulator ----

impl Sim {
    /// A message reached adversary `idx` on `link`: answer a request as its kind says.
    pub(super) fn on_adversary_message(
        &mut self,
        idx: NodeIdx,
        from: Option<NodeIdx>,
        link: LinkId,
        side: Side,
        msg: Message,
    ) {
        let (id, body) = match msg {
            Message::Request { id, body } => (id, body),
            Message::Gossip(g) => return self.on_gossip_sybil(idx, link, side, g),
            _ => return, // answers are ignored
        };
        let observed = from.and_then(|f| self.addr(f)).unwrap_or(UNSPECIFIED);
        let kind = match self.nodes.get(idx.0).map(|n| &n.role) {
            Some(Role::Adversary(a)) => a.kind(),
            _ => return,
        };
        let response = match kind {
            NodeKind::Eclipse => Some(self.eclipse_answer(observed, body)),
            NodeKind::DeadAddresses | NodeKind::LoopbackClaims => {
                Some(self.misdirect_answer(kind, observed, body))
            }
            _ => match self.nodes.get_mut(idx.0).map(|n| &mut n.role) {
                Some(Role::Adversary(a)) => a.respond(observed, body),
                _ => None,
            },
        };
        if let Some(body) = response {
            self.send(link, side, Message::Response { id, body });
        }
    }

    /// What an `Eclipse` node answers: the colluders nearest the target for lookups, success
    /// for stores, PONG for PING.
    fn eclipse_answer(&self, observed: SocketAddr, request: Request) -> Response {
        let nearest = |target: &Key| -> Vec<PeerInfo> {
            let mut ranked: Vec<&PeerInfo> = self.colluders.iter().collect();
            ranked.sort_by_key(|p| p.id.distance(target));
            ranked.into_iter().take(MAX_PEERS_PER_RESPONSE).cloned().collect()
        };
        match request {
            Request::FindNode { target } => Response::Nodes { closer: nearest(&target) },
            Request::FindValue { key } => Response::Value { record: None, closer: nearest(&key) },
            Request::GetProviders { key } => {
                Response::Providers { providers: Vec::new(), closer: nearest(&key) }
            }
            Request::Store { .. } => Response::Stored,
            Request::AddProvider { .. } => Response::ProviderAdded,
            Request::Ping => Response::Pong { observed },
        }
    }

    /// What a `DeadAddresses` or `LoopbackClaims` node answers: the honest nodes nearest the
    /// target, at addresses that are not theirs.
    fn misdirect_answer(&self, kind: NodeKind, observed: SocketAddr, request: Request) -> Response {
        let nearest = |target: &Key| -> Vec<PeerInfo> {
            let mut ranked: Vec<(NodeId, usize)> =
                self.honest.iter().filter_map(|&idx| Some((self.node_id(idx)?, idx.0))).collect();
            ranked.sort_by_key(|(id, _)| id.distance(target));
            ranked
                .into_iter()
                .take(MAX_PEERS_PER_RESPONSE)
                .map(|(id, n)| {
                    let addr = match kind {
                        NodeKind::LoopbackClaims => {
                            SocketAddr::from((Ipv4Addr::LOCALHOST, 4000 + (n % 1000) as u16))
                        }
                        _ => unroutable(n as u64),
                    };
                    PeerInfo { id, addrs: vec![addr] }
                })
                .collect()
        };
        match request {
            Request::FindNode { target } => Response::Nodes { closer: nearest(&target) },
            Request::FindValue { key } => Response::Value { record: None, closer: nearest(&key) },
            Request::GetProviders { key } => {
                Response::Providers { providers: Vec::new(), closer: nearest(&key) }
            }
            other => minimal(observed, other),
        }
    }

    /// Keeps `flood_fanout` links up and sends one `FindNode`, then schedules the next tick.
    pub(super) fn on_flood_tick(&mut self, idx: NodeIdx) {
        let Some(Node { role: Role::Adversary(a), links, .. }) = self.nodes.get(idx.0) else {
            return;
        };
        let NodeKind::Flood { requests_per_sec } = a.kind() else { return };
        let missing = self.config.flood_fanout.saturating_sub(links.len());
        for _ in 0..missing {
            self.flood_dial(idx);
        }
        if requests_per_sec > 0 {
            self.flood_request(idx);
        }
        let interval = match requests_per_sec {
            0 => Duration::from_secs(1),
            r => (Duration::from_secs(1) / r).max(Duration::from_micros(1)),
        };
        self.schedule_tick(idx, self.time.saturating_add(interval));
    }

    fn flood_dial(&mut self, idx: NodeIdx) {
        let n = self.honest.len() as u64;
        let pick = match self.nodes.get_mut(idx.0).map(|node| &mut node.role) {
            Some(Role::Adversary(a)) if n > 0 => a.rng().below(n) as usize,
            _ => return,
        };
        let Some(&target) = self.honest.get(pick) else { return };
        let (Some(id), Some(addr)) = (self.node_id(target), self.addr(target)) else { return };
        if self.is_alive(target) && !self.is_partitioned(idx, target) {
            self.dial(idx, None, id, addr, false);
        }
    }

    fn flood_request(&mut self, idx: NodeIdx) {
        let Some(node) = self.nodes.get_mut(idx.0) else { return };
        let links = &self.links;
        let established: Vec<(LinkId, Side)> = node
            .links
            .iter()
            .filter(|(l, _)| links.get(l).is_some_and(|l| l.state == LinkState::Established))
            .map(|(&l, &s)| (l, s))
            .collect();
        let Role::Adversary(a) = &mut node.role else { return };
        if established.is_empty() {
            return;
        }
        let (link, side) = established[node.round_robin % established.len()];
        node.round_robin = node.round_robin.wrapping_add(1);
        let target = NodeId::from_bytes(a.rng().bytes32());
        let id = node.next_request;
        node.next_request += 1;
        self.stats.flood_requests_sent += 1;
        self.send(link, side, Message::Request { id, body: Request::FindNode { target } });
    }
}

/// What a minimal honest node without a core answers.
fn minimal(observed: SocketAddr, request: Request) -> Response {
    match request {
        Request::Ping => Response::Pong { observed },
        Request::FindNode { .. } => Response::Nodes { closer: Vec::new() },
        Request::FindValue { .. } => Response::Value { record: None, closer: Vec::new() },
        Request::GetProviders { .. } => {
            Response::Providers { providers: Vec::new(), closer: Vec::new() }
        }
        Request::Store { .. } | Request::AddProvider { .. } => {
            Response::Error { code: ErrorCode::Unsupported, text: String::new() }
        }
    }
}

/// An address in 198.18.0.0/15, which no simulated node uses.
fn unroutable(r: u64) -> SocketAddr {
    let ip = Ipv4Addr::new(198, 18 + (r & 1) as u8, (r >> 8) as u8, 1 + ((r >> 16) % 254) as u8);
    SocketAddr::from((ip, 4000))
}

impl fmt::Display for NodeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Honest => f.write_str("honest"),
            Self::Silent => f.write_str("silent"),
            Self::FabricateCloser => f.write_str("fabricate-closer"),
            Self::BadRecords => f.write_str("bad-records"),
            Self::Eclipse => f.write_str("eclipse"),
            Self::DeadAddresses => f.write_str("dead-addresses"),
            Self::LoopbackClaims => f.write_str("loopback-claims"),
            Self::Flood { requests_per_sec } => write!(f, "flood({requests_per_sec}/s)"),
            Self::Gossip(a) => write!(f, "gossip-{a:?}"),
        }
    }
}

/// Bytes of the target an invented peer id keeps: 192 bits, far closer than any honest node
/// of a network below 2^64 nodes.
pub const FABRICATED_PREFIX_BYTES: usize = 24;
/// The value forged records carry.
const FORGED_VALUE: &[u8] = b"forged by petrel-sim";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Keypair;
    use crate::wire::signing::immutable_key;

    const TARGET: Key = NodeId::from_bytes([0xab; 32]);

    fn from() -> SocketAddr {
        SocketAddr::from(([10, 1, 2, 3], 4000))
    }

    fn adversary(kind: NodeKind) -> Adversary {
        Adversary::new(kind, 7, 2)
    }

    // ---- Every kind ----

    #[test]
    fn every_kind_but_silent_answers_ping_with_the_observed_address() {
        for kind in [
            NodeKind::Honest,
            NodeKind::FabricateCloser,
            NodeKind::BadRecords,
            NodeKind::Flood { requests_per_sec: 5 },
        ] {
            let pong = adversary(kind).respond(from(), Request::Ping);
            assert_eq!(pong, Some(Response::Pong { observed: from() }), "{kind}");
        }
        let mut silent = adversary(NodeKind::Silent);
        assert_eq!(silent.respond(from(), Request::Ping), None);
        assert_eq!(silent.respond(from(), Request::FindNode { target: TARGET }), None);
        assert_eq!(silent.stats(), AdversaryStats { ignored: 2, ..AdversaryStats::default() });
    }

    // ---- FabricateCloser ----

    #[test]
    fn fabricate_closer_answers_find_node_with_twenty_near_unroutable_peers() {
        let mut adv = adversary(NodeKind::FabricateCloser);
        let Some(Response::Nodes { closer }) =
            adv.respond(from(), Request::FindNode { target: TARGET })
        else {
            panic!("expected Nodes");
        };
        assert_eq!(closer.len(), MAX_PEERS_PER_RESPONSE);
        let mut slash24 = Vec::new();
        for peer in &closer {
            assert_ne!(peer.id, TARGET);
            assert!(peer.id.distance(&TARGET).leading_zeros() >= FABRICATED_PREFIX_BYTES * 8);
            let [SocketAddr::V4(a)] = peer.addrs[..] else { panic!("one v4 address") };
            let o = a.ip().octets();
            assert!(o[0] == 198 && (o[1] == 18 || o[1] == 19), "{a}");
            slash24.push((o[1], o[2]));
        }
        slash24.sort_unstable();
        slash24.dedup();
        assert!(slash24.len() >= 15, "spread over /24s: {}", slash24.len());
        assert_eq!(adv.stats().answered, 1);
    }

    #[test]
    fn fabricate_closer_answers_value_and_providers_without_content() {
        let mut adv = adversary(NodeKind::FabricateCloser);
        match adv.respond(from(), Request::FindValue { key: TARGET }) {
            Some(Response::Value { record: None, closer }) => assert_eq!(closer.len(), 20),
            other => panic!("unexpected {other:?}"),
        }
        match adv.respond(from(), Request::GetProviders { key: TARGET }) {
            Some(Response::Providers { providers, closer }) => {
                assert!(providers.is_empty());
                assert_eq!(closer.len(), 20);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn fabricated_peers_are_deterministic_per_seed() {
        let ask = |seed| {
            Adversary::new(NodeKind::FabricateCloser, seed, 0)
                .respond(from(), Request::FindNode { target: TARGET })
        };
        assert_eq!(ask(1), ask(1));
        assert_ne!(ask(1), ask(2));
    }

    // ---- BadRecords ----

    #[test]
    fn bad_records_serves_a_stored_mutable_record_with_a_broken_signature() {
        let kp = Keypair::from_seed([9; 32]);
        let good = MutableRecord::sign(&kp, b"salt".to_vec(), 4, b"v".to_vec());
        let key = good.key();
        let mut adv = adversary(NodeKind::BadRecords);
        let store = Request::Store {
            record: Record::Mutable(good.clone()),
            ttl_secs: 60,
            expected_seq: None,
        };
        assert_eq!(adv.respond(from(), store), Some(Response::Stored));
        let Some(Response::Value { record: Some(Record::Mutable(bad)), closer }) =
            adv.respond(from(), Request::FindValue { key })
        else {
            panic!("expected a mutable record");
        };
        assert!(closer.is_empty());
        assert_eq!(bad.key(), key, "the forged record still sits under the key");
        assert_eq!(bad.seq, 5);
        assert!(!bad.verify());
    }

    #[test]
    fn bad_records_serves_a_stored_immutable_value_that_misses_its_key() {
        let record = Record::Immutable { value: ByteBuf::from(b"content".to_vec()) };
        let key = record.key();
        let mut adv = adversary(NodeKind::BadRecords);
        adv.respond(from(), Request::Store { record, ttl_secs: 60, expected_seq: None });
        let Some(Response::Value { record: Some(Record::Immutable { value }), .. }) =
            adv.respond(from(), Request::FindValue { key })
        else {
            panic!("expected an immutable record");
        };
        assert_ne!(immutable_key(&value.0), key);
    }

    #[test]
    fn bad_records_invents_alternating_invalid_records_for_unknown_keys() {
        let mut adv = adversary(NodeKind::BadRecords);
        let mut kinds = Vec::new();
        for _ in 0..4 {
            let Some(Response::Value { record: Some(r), .. }) =
                adv.respond(from(), Request::FindValue { key: TARGET })
            else {
                panic!("expected a record");
            };
            assert_ne!(r.key(), TARGET);
            if let Record::Mutable(m) = &r {
                assert!(!m.verify());
            }
            kinds.push(matches!(r, Record::Mutable(_)));
        }
        assert_eq!(kinds, vec![true, false, true, false]);
        assert_eq!(
            adv.respond(from(), Request::FindNode { target: TARGET }),
            Some(Response::Nodes { closer: Vec::new() })
        );
    }

    #[test]
    fn bad_records_keeps_at_most_max_records_and_counts_the_rest() {
        let mut adv = adversary(NodeKind::BadRecords);
        for i in 0..5u8 {
            let record = Record::Immutable { value: ByteBuf::from(vec![i]) };
            let store = Request::Store { record, ttl_secs: 1, expected_seq: None };
            assert_eq!(adv.respond(from(), store), Some(Response::Stored));
        }
        assert_eq!(adv.records.len(), 2);
        let s = adv.stats();
        assert_eq!((s.records_kept, s.records_refused, s.answered), (2, 3, 5));
    }

    // ---- Honest and Flood ----

    #[test]
    fn minimal_responder_knows_nobody_and_refuses_storage() {
        let mut adv = adversary(NodeKind::Flood { requests_per_sec: 1 });
        assert_eq!(
            adv.respond(from(), Request::FindValue { key: TARGET }),
            Some(Response::Value { record: None, closer: Vec::new() })
        );
        let record = Record::Immutable { value: ByteBuf::from(Vec::new()) };
        assert_eq!(
            adv.respond(from(), Request::Store { record, ttl_secs: 1, expected_seq: None }),
            Some(Response::Error { code: ErrorCode::Unsupported, text: String::new() })
        );
    }
}
