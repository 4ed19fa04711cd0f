//! What the DHT has measured of each peer it talks to: a smoothed round-trip time and a
//! decayed success ratio, fed by every request's outcome (table PINGs included), and whether a
//! connection is up. Lookups use the expected cost of asking a peer to order the candidates
//! they wait on (`lookup`, "Ordering"), and a full bucket pings its least reliable entry first.
//! The figures order the waiting only: they never decide which peers are the k closest.
//!
//! - RTT: RFC 6298's smoothing, `srtt ← 7/8·srtt + 1/8·sample`; the first sample sets it.
//!   A sample runs from the request's write on an established connection to its answer, so a
//!   dial is not in it.
//! - Success: `s ← s + (x − s)/8`, x = 1 for an answer, 0 for a timeout, a lost connection or
//!   a refused dial; a new peer starts at 1, so an unknown peer is tried.
//! - Cost (µs): the peer's srtt (or, if never measured, the mean srtt of the peers measured),
//!   plus `DIAL_RTTS` round trips when no connection is up, divided by the success ratio
//!   (floored at 1/16): the expected wait for an answer if each failure costs a retry.
//!
//! Bounds: at most `max_peers` records (default 1,024) of 56 bytes (id and figures). A record not
//! updated for `retention` (default 30 min) is forgotten at the next maintenance tick, one
//! that held only a connection is forgotten when the connection closes, and a
//! new peer arriving at a full table replaces the record updated longest ago, one with no
//! answer or failure yet first. So a peer that reconnects within the retention period keeps
//! its figures, and cycling ids can neither grow the table nor flush what was measured.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::identity::NodeId;

/// Bounds of the table; defaults in [`QualityConfig::DEFAULT`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QualityConfig {
    /// Peers with a record at most (default 1,024; 0 turns measuring off).
    pub max_peers: usize,
    /// A record not updated for this long is forgotten (default 30 min).
    pub retention: Duration,
    /// Order lookup candidates by expected cost among those equally placed (default on).
    /// Off, lookups ask nearest first, as Kademlia does.
    pub adaptive: bool,
}

impl QualityConfig {
    /// The defaults.
    pub const DEFAULT: QualityConfig =
        QualityConfig { max_peers: 1_024, retention: Duration::from_secs(30 * 60), adaptive: true };
}

impl Default for QualityConfig {
    fn default() -> Self {
        QualityConfig::DEFAULT
    }
}

/// Round trips a dial costs before the request can go out: TCP's handshake and TLS 1.3's.
pub const DIAL_RTTS: u64 = 2;
/// Cost assumed for a peer when no peer has been measured yet (100 ms, µs).
pub const UNMEASURED_RTT_US: u64 = 100_000;
/// The success ratio's fixed-point one.
const ONE: u32 = 1 << 16;
/// Lowest success ratio a cost divides by: a peer that always fails costs 16 times as much.
const FLOOR: u32 = ONE / 16;

/// One peer's figures: 24 bytes, for up to `max_peers` of them per node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Figures {
    /// Smoothed RTT, µs; 0 = never measured.
    srtt_us: u32,
    /// `ONE` less the decayed success ratio: the ratio decays by eighths from `ONE` and
    /// never falls below 7, so the deficit fits 16 bits.
    deficit: u16,
    /// A connection to the peer is up.
    connected: bool,
    /// `srtt_us` is a handshake's estimate, which the first answer replaces.
    provisional: bool,
    updated: Instant,
}

impl Figures {
    /// An answer or a failure was recorded: not only a connection.
    fn has_outcome(&self) -> bool {
        self.srtt_us > 0 || self.deficit > 0
    }

    /// The decayed success ratio, fixed point with [`ONE`] = 1.
    fn success(&self) -> u32 {
        ONE - u32::from(self.deficit)
    }

    /// An answer: the ratio moves an eighth of the way to one.
    fn succeed(&mut self) {
        self.deficit -= self.deficit / 8;
    }

    /// A failure: the ratio loses an eighth, so the deficit grows by it (at most 8,192).
    fn fail(&mut self) {
        let loss = u16::try_from(self.success() / 8).unwrap_or(u16::MAX);
        self.deficit = self.deficit.saturating_add(loss);
    }
}

/// Counters for the metrics layer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QualityStats {
    /// Peers with a record now.
    pub peers: usize,
    /// Of those, peers with a measured RTT.
    pub measured: usize,
    /// Of those, peers whose success ratio is below one half.
    pub unreliable: usize,
    /// Mean smoothed RTT of the peers measured, µs (0: none measured).
    pub mean_srtt_us: u64,
    /// Answers and failures recorded.
    pub samples: u64,
    /// Round trips estimated from our dials' handshakes (peers not measured by answers).
    pub handshakes: u64,
    /// Records replaced because the table was full.
    pub evicted_full: u64,
    /// Records forgotten after `retention` without news.
    pub expired: u64,
}

/// The per-peer figures of one node. See the module doc.
#[derive(Debug, Clone)]
pub struct PeerQuality {
    config: QualityConfig,
    peers: BTreeMap<NodeId, Figures>,
    /// Sum of the measured srtts, µs, for the mean an unmeasured peer is assumed to have.
    srtt_sum: u64,
    measured: usize,
    stats: QualityStats,
}

impl PeerQuality {
    /// An empty table.
    pub fn new(config: QualityConfig) -> PeerQuality {
        PeerQuality {
            config,
            peers: BTreeMap::new(),
            srtt_sum: 0,
            measured: 0,
            stats: QualityStats::default(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &QualityConfig {
        &self.config
    }

    /// `peer` answered a request after `rtt` (`None`: over a path that measured nothing).
    pub fn on_answer(&mut self, now: Instant, peer: &NodeId, rtt: Option<Duration>) {
        let sample = rtt.map(sample_us);
        let Some(f) = self.record(now, peer, true) else { return };
        let old = f.srtt_us;
        if let Some(sample) = sample {
            f.srtt_us = if old == 0 || f.provisional { sample } else { smooth(old, sample) };
            f.provisional = false;
        }
        f.succeed();
        let new = f.srtt_us;
        self.account_srtt(old, new);
    }

    /// A dial of ours reached `peer` with handshakes that took `2 × rtt` (`Protocol::
    /// handle_handshake_rtt`): neither an answer nor a failure, but an estimate of the round
    /// trip for a peer that has not answered yet. It is what lets a node's first lookup know
    /// how long its round trips are (`LookupConfig::wide_min_rtt`). Provisional: a lost SYN
    /// or TLS flight stretches a handshake by a retransmission timeout, and nothing tells
    /// (RFC 6298 takes no sample from a retransmitted segment), so the first answer replaces
    /// it and a peer measured by answers keeps their figure.
    pub fn on_handshake(&mut self, now: Instant, peer: &NodeId, rtt: Duration) {
        let sample = sample_us(rtt);
        let Some(f) = self.record(now, peer, false) else { return };
        let old = f.srtt_us;
        if old != 0 && !f.provisional {
            return;
        }
        f.srtt_us = sample;
        f.provisional = true;
        self.account_srtt(old, sample);
        self.stats.handshakes += 1;
    }

    /// A request to `peer` failed: timeout, lost connection, refused dial, error answer.
    pub fn on_failure(&mut self, now: Instant, peer: &NodeId) {
        let Some(f) = self.record(now, peer, true) else { return };
        f.fail();
    }

    /// A connection to `peer` came up (`true`) or went down.
    pub fn set_connected(&mut self, now: Instant, peer: &NodeId, connected: bool) {
        if !connected {
            // A record with no answer or failure said only that a connection was up: once it
            // is down, having none gives the same cost, ratio and RTT. Kept, every peer that
            // ever connected to us (most only to look something up) would hold a record for
            // `retention`.
            match self.peers.get_mut(peer) {
                Some(f) if f.has_outcome() => {
                    f.connected = false;
                    f.updated = f.updated.max(now);
                }
                Some(_) => self.forget(peer),
                None => {}
            }
            return;
        }
        if let Some(f) = self.record(now, peer, false) {
            f.connected = true;
        }
    }

    /// The expected wait, µs, for an answer from `peer` (module doc, "Cost").
    pub fn cost_us(&self, peer: &NodeId) -> u64 {
        let typical = self.mean_srtt_us().unwrap_or(UNMEASURED_RTT_US);
        let (rtt, success, connected) = match self.peers.get(peer) {
            Some(f) if f.srtt_us > 0 => (u64::from(f.srtt_us), f.success(), f.connected),
            Some(f) => (typical, f.success(), f.connected),
            None => (typical, ONE, false),
        };
        let dial = if connected { 0 } else { DIAL_RTTS * rtt };
        (rtt + dial) * u64::from(ONE) / u64::from(success.max(FLOOR))
    }

    /// The success ratio of `peer` in 1/65,536ths (65,536 for a peer never seen).
    pub fn success(&self, peer: &NodeId) -> u32 {
        self.peers.get(peer).map_or(ONE, Figures::success)
    }

    /// The mean smoothed RTT of the peers measured, if any: what a round trip costs on this
    /// node's network (lookups widen where it is long, `LookupConfig::wide_min_rtt`).
    pub fn mean_srtt(&self) -> Option<Duration> {
        self.mean_srtt_us().map(Duration::from_micros)
    }

    fn mean_srtt_us(&self) -> Option<u64> {
        let n = u64::try_from(self.measured).ok().filter(|&n| n > 0)?;
        Some(self.srtt_sum / n)
    }

    /// The smoothed RTT of `peer`, if measured.
    pub fn srtt(&self, peer: &NodeId) -> Option<Duration> {
        let f = self.peers.get(peer).filter(|f| f.srtt_us > 0)?;
        Some(Duration::from_micros(u64::from(f.srtt_us)))
    }

    /// Whether a connection to `peer` is up, as far as we heard.
    pub fn is_connected(&self, peer: &NodeId) -> bool {
        self.peers.get(peer).is_some_and(|f| f.connected)
    }

    /// When `peer`'s record last changed: an answer, a failure, a connection up or down.
    pub fn last_news(&self, peer: &NodeId) -> Option<Instant> {
        self.peers.get(peer).map(|f| f.updated)
    }

    /// Forgets the records of disconnected peers not updated for `retention`.
    pub fn expire(&mut self, now: Instant) {
        let retention = self.config.retention;
        let stale: Vec<NodeId> = self
            .peers
            .iter()
            .filter(|(_, f)| !f.connected && now.saturating_duration_since(f.updated) >= retention)
            .map(|(id, _)| *id)
            .collect();
        for id in stale {
            self.forget(&id);
            self.stats.expired += 1;
        }
    }

    /// Counters, with the current table figures.
    pub fn stats(&self) -> QualityStats {
        let unreliable = self.peers.values().filter(|f| f.success() < ONE / 2).count();
        let mean_srtt_us = self.mean_srtt_us().unwrap_or(0);
        QualityStats {
            peers: self.peers.len(),
            measured: self.measured,
            unreliable,
            mean_srtt_us,
            ..self.stats
        }
    }

    /// The record of `peer`, made if new (replacing, when full, one with no outcome yet, else
    /// the one updated longest ago),
    /// stamped `now` and counted as a sample if `sample`; `None` when measuring is off.
    fn record(&mut self, now: Instant, peer: &NodeId, sample: bool) -> Option<&mut Figures> {
        if self.config.max_peers == 0 {
            return None;
        }
        self.stats.samples += u64::from(sample);
        if !self.peers.contains_key(peer) {
            if self.peers.len() >= self.config.max_peers {
                // A linear scan, once per new peer at a full table: the table is small, and an
                // index by age would double its memory. Records with no outcome yet (only a
                // connection) go first: ids are free, so a burst of connections from new ids
                // must not flush what was measured.
                let oldest =
                    self.peers.iter().min_by_key(|(id, f)| (f.has_outcome(), f.updated, **id));
                if let Some(id) = oldest.map(|(id, _)| *id) {
                    self.forget(&id);
                    self.stats.evicted_full += 1;
                }
            }
            let fresh = Figures {
                srtt_us: 0,
                deficit: 0,
                connected: false,
                provisional: false,
                updated: now,
            };
            self.peers.insert(*peer, fresh);
        }
        let f = self.peers.get_mut(peer)?;
        f.updated = f.updated.max(now);
        Some(f)
    }

    fn forget(&mut self, peer: &NodeId) {
        if let Some(f) = self.peers.remove(peer) {
            self.account_srtt(f.srtt_us, 0);
        }
    }

    /// Keeps the sum and count of measured srtts in step with one record's change.
    fn account_srtt(&mut self, old: u32, new: u32) {
        if old > 0 {
            self.srtt_sum -= u64::from(old);
            self.measured -= 1;
        }
        if new > 0 {
            self.srtt_sum += u64::from(new);
            self.measured += 1;
        }
    }
}

/// A round trip in µs as a record keeps it: at least 1 (0 means unmeasured), saturated.
fn sample_us(rtt: Duration) -> u32 {
    u32::try_from(rtt.as_micros()).unwrap_or(u32::MAX).max(1)
}

/// RFC 6298's `7/8·srtt + 1/8·sample`, rounded to the nearest µs.
fn smooth(srtt: u32, sample: u32) -> u32 {
    let v = (7 * u64::from(srtt) + u64::from(sample) + 4) / 8;
    u32::try_from(v).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> NodeId {
        NodeId::from_bytes([n; 32])
    }

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_record_is_24_bytes_and_its_ratio_survives_any_run_of_failures() {
        assert_eq!(std::mem::size_of::<Figures>(), 24);
        let (mut q, now) = (PeerQuality::new(QualityConfig::DEFAULT), Instant::now());
        for _ in 0..1_000 {
            q.on_failure(now, &id(1));
        }
        assert_eq!(q.success(&id(1)), 7, "an eighth of 7 rounds to nothing: the floor");
        q.on_answer(now, &id(1), None);
        assert_eq!(q.success(&id(1)), 7 + (ONE - 7) / 8);
    }

    #[test]
    fn rtt_is_smoothed_as_rfc_6298_says() {
        let t0 = Instant::now();
        let mut q = PeerQuality::new(QualityConfig::DEFAULT);
        q.on_answer(t0, &id(1), Some(80 * MS));
        assert_eq!(q.srtt(&id(1)), Some(80 * MS));
        q.on_answer(t0, &id(1), Some(160 * MS));
        // 7/8 · 80 + 1/8 · 160 = 90 ms.
        assert_eq!(q.srtt(&id(1)), Some(90 * MS));
        q.on_answer(t0, &id(1), None);
        assert_eq!(q.srtt(&id(1)), Some(90 * MS), "an answer without a sample keeps the RTT");
        assert_eq!(q.srtt(&id(2)), None);
    }

    #[test]
    fn a_handshake_measures_the_round_trip_and_is_neither_answer_nor_failure() {
        let t0 = Instant::now();
        let mut q = PeerQuality::new(QualityConfig::DEFAULT);
        q.on_handshake(t0, &id(1), 4 * MS);
        assert_eq!(
            (q.srtt(&id(1)), q.mean_srtt(), q.success(&id(1))),
            (Some(4 * MS), Some(4 * MS), ONE)
        );
        // A later handshake replaces the estimate; so does the first answer, not smoothed in.
        q.on_handshake(t0, &id(1), 600 * MS);
        assert_eq!(q.srtt(&id(1)), Some(600 * MS), "a lost SYN, say");
        q.on_answer(t0, &id(1), Some(12 * MS));
        assert_eq!(q.srtt(&id(1)), Some(12 * MS));
        // Measured by an answer: handshakes no longer move it, later answers smooth in.
        q.on_handshake(t0, &id(1), 900 * MS);
        q.on_answer(t0, &id(1), Some(20 * MS));
        assert_eq!(q.srtt(&id(1)), Some(13 * MS), "7/8 · 12 + 1/8 · 20");
        let stats = q.stats();
        assert_eq!((stats.samples, stats.handshakes, stats.measured), (2, 2, 1));
        // Measured, so the record outlives the connection for the retention period.
        q.set_connected(t0, &id(2), true);
        q.on_handshake(t0, &id(2), 30 * MS);
        q.set_connected(t0, &id(2), false);
        assert_eq!(q.srtt(&id(2)), Some(30 * MS));
        assert_eq!(q.mean_srtt(), Some(Duration::from_micros(21_500)), "(13 + 30) / 2");
    }

    #[test]
    fn success_decays_with_failures_and_recovers_with_answers() {
        let t0 = Instant::now();
        let mut q = PeerQuality::new(QualityConfig::DEFAULT);
        assert_eq!(q.success(&id(1)), ONE, "a peer never seen is presumed reliable");
        for _ in 0..3 {
            q.on_failure(t0, &id(1));
        }
        // (7/8)^3 of one, in fixed point.
        assert_eq!(q.success(&id(1)), 43_904);
        q.on_answer(t0, &id(1), Some(10 * MS));
        assert_eq!(q.success(&id(1)), 43_904 + (ONE - 43_904) / 8);
        for _ in 0..40 {
            q.on_failure(t0, &id(1));
        }
        assert!(q.success(&id(1)) < ONE / 100);
        assert_eq!(q.stats().unreliable, 1);
    }

    #[test]
    fn cost_orders_connected_fast_reliable_peers_first() {
        let t0 = Instant::now();
        let mut q = PeerQuality::new(QualityConfig::DEFAULT);
        assert_eq!(q.cost_us(&id(9)), 3 * UNMEASURED_RTT_US, "nothing measured: a dial and a trip");
        q.on_answer(t0, &id(1), Some(20 * MS));
        q.set_connected(t0, &id(1), true);
        q.on_answer(t0, &id(2), Some(20 * MS));
        q.on_answer(t0, &id(3), Some(60 * MS));
        q.set_connected(t0, &id(3), true);
        assert_eq!(q.cost_us(&id(1)), 20_000);
        assert_eq!(q.cost_us(&id(2)), 60_000, "not connected: two more round trips");
        assert_eq!(q.cost_us(&id(3)), 60_000);
        // An unmeasured peer is taken at the mean measured RTT, and needs a dial.
        assert_eq!(q.cost_us(&id(9)), 3 * (100_000 / 3));
        q.on_failure(t0, &id(1));
        q.on_failure(t0, &id(1));
        assert!(q.cost_us(&id(1)) > 20_000 && q.cost_us(&id(1)) < 30_000);
        for _ in 0..60 {
            q.on_failure(t0, &id(1));
        }
        assert_eq!(q.cost_us(&id(1)), 16 * 20_000, "the ratio is floored at 1/16");
    }

    #[test]
    fn a_full_table_replaces_the_record_updated_longest_ago() {
        let t0 = Instant::now();
        let config = QualityConfig { max_peers: 3, ..QualityConfig::DEFAULT };
        let mut q = PeerQuality::new(config);
        for n in 1..=3u8 {
            q.on_answer(t0 + u32::from(n) * MS, &id(n), Some(MS * u32::from(n)));
        }
        q.on_failure(t0 + 10 * MS, &id(1));
        q.on_answer(t0 + 11 * MS, &id(4), Some(40 * MS));
        assert_eq!(q.stats().peers, 3);
        assert_eq!(q.stats().evicted_full, 1);
        assert_eq!(q.srtt(&id(2)), None, "peer 2 was updated longest ago");
        assert!(q.srtt(&id(1)).is_some() && q.srtt(&id(4)).is_some());
        // The mean for unmeasured peers follows the evictions: (1 + 3 + 40) / 3 ms.
        assert_eq!(q.cost_us(&id(9)), 3 * (44_000 / 3));
    }

    #[test]
    fn a_burst_of_connections_from_new_ids_does_not_flush_measured_peers() {
        let t0 = Instant::now();
        let config = QualityConfig { max_peers: 4, ..QualityConfig::DEFAULT };
        let mut q = PeerQuality::new(config);
        q.on_answer(t0, &id(1), Some(10 * MS));
        q.on_failure(t0, &id(2));
        // A hundred fresh ids connect, each newer than the two measured records.
        for n in 10..110u8 {
            q.set_connected(t0 + u32::from(n) * MS, &id(n), true);
        }
        assert_eq!(q.stats().peers, 4);
        assert_eq!(q.stats().evicted_full, 98);
        assert_eq!(q.srtt(&id(1)), Some(10 * MS), "the measured peer stays");
        assert!(q.success(&id(2)) < ONE, "so does the failing one");
        assert!(q.is_connected(&id(109)));
        assert_eq!(q.stats().samples, 2, "connections are not samples");
    }

    #[test]
    fn records_survive_a_reconnect_within_retention_and_expire_after() {
        let t0 = Instant::now();
        let config = QualityConfig { retention: Duration::from_secs(60), ..QualityConfig::DEFAULT };
        let mut q = PeerQuality::new(config);
        q.set_connected(t0, &id(1), true);
        q.on_answer(t0, &id(1), Some(30 * MS));
        q.on_failure(t0, &id(1));
        q.set_connected(t0, &id(1), false);
        q.set_connected(t0 + Duration::from_secs(30), &id(1), true);
        q.expire(t0 + Duration::from_secs(100));
        assert_eq!(q.srtt(&id(1)), Some(30 * MS), "connected peers are never expired");
        assert!(q.success(&id(1)) < ONE);
        q.set_connected(t0 + Duration::from_secs(100), &id(1), false);
        q.expire(t0 + Duration::from_secs(159));
        assert_eq!(q.stats().peers, 1);
        q.expire(t0 + Duration::from_secs(160));
        assert_eq!(q.stats().peers, 0);
        assert_eq!(q.stats().expired, 1);
        assert_eq!(q.success(&id(1)), ONE);
        // A disconnect of a peer without a record makes none.
        q.set_connected(t0, &id(2), false);
        assert_eq!(q.stats().peers, 0);
    }

    #[test]
    fn a_record_of_only_a_connection_goes_with_the_connection() {
        let t0 = Instant::now();
        let mut q = PeerQuality::new(QualityConfig::DEFAULT);
        q.set_connected(t0, &id(1), true);
        q.set_connected(t0, &id(2), true);
        q.on_answer(t0, &id(2), Some(20 * MS));
        let unknown = q.cost_us(&id(9));
        assert!(q.is_connected(&id(1)) && q.cost_us(&id(1)) < unknown);
        q.set_connected(t0, &id(1), false);
        q.set_connected(t0, &id(2), false);
        assert_eq!(q.stats().peers, 1, "the measured peer keeps its record");
        assert_eq!(q.srtt(&id(2)), Some(20 * MS));
        assert!(!q.is_connected(&id(2)));
        // Forgotten, the other costs what a peer never seen does.
        assert_eq!((q.last_news(&id(1)), q.cost_us(&id(1))), (None, q.cost_us(&id(9))));
    }

    #[test]
    fn measuring_off_keeps_nothing() {
        let t0 = Instant::now();
        let config = QualityConfig { max_peers: 0, ..QualityConfig::DEFAULT };
        let mut q = PeerQuality::new(config);
        q.on_answer(t0, &id(1), Some(MS));
        q.on_failure(t0, &id(1));
        assert_eq!(q.stats(), QualityStats::default());
    }
}
