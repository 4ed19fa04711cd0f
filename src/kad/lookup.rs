//! The iterative Kademlia lookup (DESIGN.md, "Kademlia"): which peer to ask next, when a peer
//! has taken too long, and when the lookup is done. Sans-IO: it sends nothing and reads no
//! clock; the caller sends FIND_NODE / FIND_VALUE / GET_PROVIDERS to the peers that
//! [`Lookup::next_request`] returns and reports each outcome back.
//!
//! Candidate states, per peer and per lookup (a peer is asked at most once):
//! - `NotContacted`: learned from a seed or a response, not asked yet.
//! - `InFlight { slow_at, deadline_at }`: asked; holds one of the path's α slots.
//! - `Slow { deadline_at }`: asked and past `slow_timeout`. It no longer holds an α slot, so a
//!   straggler cannot stall the lookup (as in discv5 and libp2p), but its answer is still used
//!   until the hard deadline.
//! - `Answered`: it replied; the peers it returned joined its path.
//! - `Failed`: error response, disconnect, refused dial, or past `request_timeout`. A response
//!   arriving afterwards is ignored and counted as `unexpected`, like one from a peer never asked.
//!
//! Addresses: a candidate is an id with the addresses named for it, up to
//! `MAX_ADDRS_PER_PEER`, first named first; a later answer naming a known, not yet contacted
//! id adds its address. The request dials the first one. When that dial fails
//! ([`Lookup::on_unreachable`]) the address is dropped and the candidate, if it has another,
//! goes back to `NotContacted`; if not, it fails, but a later answer naming it at an address
//! not tried yet revives it. Each (id, address) claim is dialled at most once, at most
//! `MAX_ADDRS_PER_PEER` per id, and a third party naming an honest id at a dead address
//! cannot make the lookup give up on the id.
//!
//! Rules:
//! - α budget: at most `alpha` candidates `InFlight` (not `Slow`) per path.
//! - Whom to ask: the nearest `NotContacted` candidate among the `k` nearest non-failed,
//!   non-slow candidates of the path. Slow peers do not count towards those `k`, which is what
//!   lets the lookup look beyond them.
//! - Termination, per path: the `k` nearest non-failed candidates (slow ones included) have all
//!   answered. This also covers "nothing left to ask and nothing in flight". The lookup is
//!   finished when every path is, or after [`Lookup::finish`]; later answers are ignored.
//! - Converging (Kademlia's own rule, `converge`, on by default): when an answer brings no
//!   candidate nearer than the nearest the path already knew, the path asks *all* of its `k`
//!   nearest not yet asked at once instead of α at a time; an answer that does bring a nearer
//!   one puts it back to α.
//! - Ordering ([`Lookup::next_request_by`]): among the not-contacted candidates of that window
//!   placed like the nearest one, the one of lowest caller-given cost goes first, nearest first
//!   on equal cost. "Placed like" means in the same bucket of the target, or up to `band`
//!   buckets farther (default 1): an answer brings about log₂ k bits of progress, so one bit
//!   less is a fraction of a round, and a peer that needs no dial saves two round trips or
//!   more. The cost only orders the waiting: which peers are the `k` nearest, and so when the
//!   lookup ends and what it returns, is the metric's alone.
//! - First round (`first_round`, default 2α): until one of its requests answers, fails or goes
//!   slow, a path keeps up to `first_round` in flight instead of α. The seeds come from the
//!   caller's own table, and the more of the target's surroundings the first answers show,
//!   the fewer rounds follow. The first α are ordered as always; a request past α goes to the
//!   cheapest seed of the window wherever it is placed if it costs less than half the one
//!   placed best, that is if no dial stands before it (a dial costs two round trips more): a
//!   peer we are connected to answers in one round trip, and its answer lets the next round
//!   start that much earlier (10,000 nodes, 50 ms links: FIND_NODE p50
//!   900 -> 800 ms at seed 1, 800 -> 700 at seeds 2 to 4; benches/README.md).
//! - Connecting ahead ([`Lookup::next_preconnect`], `preconnect`, default 8): the `preconnect`
//!   nearest candidates not asked yet in the `k` nearest of a path are handed out, each once,
//!   so the caller can open their connections while the requests in flight are answered;
//!   asking them then costs one round trip instead of the TCP and TLS ones too. It changes
//!   neither whom the lookup asks nor when.
//! - Both cost requests, dials and CPU to save round trips, so the DHT applies them only where
//!   round trips are long (`wide_min_rtt`) and never to value lookups.
//! - Rounds: seeds have depth 1, a peer first learned from the answer of a peer at depth `d` has
//!   depth `d + 1`; `rounds` is the largest depth of a peer that was asked, that is the number of
//!   sequential round trips the lookup needed.
//! - Disjoint paths (S/Kademlia, `disjoint_paths = d >= 1`; 0 behaves like 1): the seeds, sorted
//!   by distance, are dealt round-robin over the paths. Each path has its own candidates and α
//!   budget; peers learned from an answer on path `p` join only `p`, and a peer already tracked
//!   by another path is ignored (first claim wins), so the paths never share a peer.
//! - Bounds: each path tracks at most `max_candidates` candidates that have not failed; past it
//!   the farthest not-yet-contacted one is dropped and counted. Failed peers stay tracked, so no
//!   one is asked twice, and do not count: otherwise peers answering with fabricated ids that
//!   then fail would fill the path and starve it of honest candidates. Failed entries are still
//!   bounded: only an answer adds candidates, at most `k` each, and at most `max_candidates`
//!   peers of a path can have answered, so a path holds at most `max_candidates * (k + 2)`
//!   entries and sends at most that many requests. Only the first `k` entries of an answer are
//!   read. Every input first applies the deadlines due at its `now`.
//!
//! Driving contract: after [`Lookup::new`] and after every `on_*` / `handle_timeout` call, call
//! [`Lookup::next_request`] until `None` and send those requests; call
//! [`Lookup::handle_timeout`] no later than [`Lookup::next_deadline`]. Calling it late only
//! delays the slow and hard timeouts; calling it early is harmless.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::identity::{Distance, NodeId};
use crate::wire::messages::{Key, PeerInfo, MAX_ADDRS_PER_PEER};

/// Parameters of one lookup. Every default is in [`LookupConfig::DEFAULT`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LookupConfig {
    /// Requests in flight per path, slow ones excluded (α, default 3).
    pub alpha: usize,
    /// Peers the lookup must hear from to finish, and the size of its result (default 20).
    pub k: usize,
    /// Hard deadline of one request: past it the peer has failed (default 5 s).
    pub request_timeout: Duration,
    /// Past this a request no longer holds its α slot, but its answer is still used until
    /// `request_timeout` (default 1 s).
    pub slow_timeout: Duration,
    /// Number of disjoint paths (S/Kademlia); 0 = off, which is one path (default 0).
    pub disjoint_paths: usize,
    /// Candidates that have not failed tracked per path; past it the farthest not contacted is
    /// dropped (default 4k).
    pub max_candidates: usize,
    /// Ask all of the `k` nearest not yet asked at once when an answer brings nothing nearer
    /// (module doc, "Converging"; default on).
    pub converge: bool,
    /// How many buckets farther than the nearest candidate not yet asked a candidate may sit
    /// and still count as equally placed, for ordering by cost (module doc, "Ordering";
    /// default 1). The DHT applies it to value lookups; the others order within the bucket.
    pub band: usize,
    /// Requests in flight per path until its first answer, failure or slow request (module
    /// doc, "First round"; default 2α = 6; at least `alpha`, which is off).
    pub first_round: usize,
    /// Candidates not asked yet, nearest first, that each path hands out for connecting ahead
    /// of their request (module doc, "Connecting ahead"; default 8).
    pub preconnect: usize,
    /// The DHT uses `first_round` and `preconnect` only while the mean measured round trip
    /// to its peers is at least this long, or nothing is measured yet (default 20 ms): they
    /// trade requests, dials and CPU for round trips, which is no gain on a LAN (100 nodes on
    /// a loaded loopback measure about 6 ms, a continent 20 to 100).
    pub wide_min_rtt: Duration,
}

impl LookupConfig {
    /// The defaults (DESIGN.md, "Kademlia": k = 20, α = 3).
    pub const DEFAULT: LookupConfig = LookupConfig {
        alpha: ALPHA,
        k: K,
        request_timeout: Duration::from_secs(5),
        slow_timeout: Duration::from_secs(1),
        disjoint_paths: 0,
        max_candidates: 4 * K,
        converge: true,
        band: 1,
        first_round: 2 * ALPHA,
        preconnect: 8,
        wide_min_rtt: Duration::from_millis(20),
    };

    /// Checks the configuration. [`Lookup::new`] never fails: it clamps what this refuses.
    pub fn validate(&self) -> Result<(), LookupConfigError> {
        if self.alpha == 0 {
            return Err(LookupConfigError::ZeroAlpha);
        }
        if self.k == 0 {
            return Err(LookupConfigError::ZeroK);
        }
        if self.max_candidates < self.k {
            return Err(LookupConfigError::MaxCandidatesBelowK);
        }
        if self.disjoint_paths > MAX_DISJOINT_PATHS {
            return Err(LookupConfigError::TooManyPaths(self.disjoint_paths));
        }
        if self.request_timeout > MAX_TIMEOUT || self.slow_timeout > MAX_TIMEOUT {
            return Err(LookupConfigError::TimeoutTooLong);
        }
        Ok(())
    }

    /// The configuration [`Lookup::new`] runs with: every value [`validate`](Self::validate)
    /// refuses is clamped into range, so no input can stall the lookup or overflow a deadline.
    fn sanitized(self) -> LookupConfig {
        let k = self.k.max(1);
        LookupConfig {
            alpha: self.alpha.max(1),
            k,
            request_timeout: self.request_timeout.min(MAX_TIMEOUT),
            slow_timeout: self.slow_timeout.min(MAX_TIMEOUT),
            disjoint_paths: self.disjoint_paths.clamp(1, MAX_DISJOINT_PATHS),
            max_candidates: self.max_candidates.max(k),
            converge: self.converge,
            band: self.band.min(crate::identity::ID_BITS),
            first_round: self.first_round.max(self.alpha.max(1)),
            preconnect: self.preconnect.min(k),
            wide_min_rtt: self.wide_min_rtt,
        }
    }
}

impl Default for LookupConfig {
    fn default() -> LookupConfig {
        LookupConfig::DEFAULT
    }
}

/// A [`LookupConfig`] value out of range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LookupConfigError {
    /// `alpha` is 0: the lookup could never send a request.
    ZeroAlpha,
    /// `k` is 0: the lookup would have nothing to find.
    ZeroK,
    /// `max_candidates` is below `k`: a path could not hold its own result.
    MaxCandidatesBelowK,
    /// `disjoint_paths` is above [`MAX_DISJOINT_PATHS`].
    TooManyPaths(usize),
    /// A timeout is above one year, where deadline arithmetic could overflow.
    TimeoutTooLong,
}

impl fmt::Display for LookupConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ZeroAlpha => f.write_str("lookup alpha must be at least 1"),
            Self::ZeroK => f.write_str("lookup k must be at least 1"),
            Self::MaxCandidatesBelowK => f.write_str("lookup max_candidates must be at least k"),
            Self::TooManyPaths(d) => {
                write!(f, "{d} disjoint paths is above the maximum {MAX_DISJOINT_PATHS}")
            }
            Self::TimeoutTooLong => f.write_str("lookup timeouts must be at most one year"),
        }
    }
}

impl std::error::Error for LookupConfigError {}

/// What a lookup did so far, from [`Lookup::stats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LookupStats {
    /// Sequential round trips: the largest depth of a peer that was asked (module doc).
    pub rounds: u32,
    /// Requests handed out by [`Lookup::next_request`].
    pub rpcs: u32,
    /// Peers whose request failed or passed its hard deadline.
    pub failed: u32,
    /// Peers that answered in time.
    pub answered: u32,
    /// Peers that passed the slow timeout (some of them answered later).
    pub slow: u32,
    /// Answers and failures from peers not in flight: never asked, failed, answered already, or
    /// arriving after their path or the lookup finished.
    pub unexpected: u32,
    /// Candidates dropped at the `max_candidates` bound.
    pub dropped: u32,
    /// Requests sent again to a peer at another named address after a failed dial.
    pub retried: u32,
    /// Seeds and entries of answers ignored: the local id, duplicates, peers already tracked
    /// (on any path), and entries past the first `k` of an answer.
    pub ignored: u32,
    /// From [`Lookup::new`] to the end of the lookup, or to `now` while it runs.
    pub duration: Duration,
}

/// How many times cheaper than the best placed candidate a seed placed anywhere must be to
/// take one of the first round's requests past α: a dial adds two round trips to one, so
/// only a seed we need not dial passes (module doc, "First round").
const FIRST_ROUND_CHEAPER: u64 = 2;

/// One iterative lookup towards `target`. See the module doc for the rules and the driving
/// contract.
#[derive(Debug, Clone)]
pub struct Lookup {
    target: Key,
    local: NodeId,
    config: LookupConfig,
    paths: Vec<Path>,
    started_at: Instant,
    /// The latest `now` an input carried; [`Lookup::finish`] has no `now` of its own.
    last_now: Instant,
    finished_at: Option<Instant>,
    /// No request waiting has a deadline before this (`None`: nothing waits). A lower bound,
    /// exact after each scan of the candidates: it is lowered when a request goes out, and an
    /// answer can only raise the true minimum. So inputs with nothing due skip the scan.
    due_at: Option<Instant>,
    stats: LookupStats,
}

impl Lookup {
    /// Starts a lookup. `seeds`: the closest peers from our routing table (local id excluded by
    /// the caller, but ignored anyway if present). Nothing is sent until
    /// [`next_request`](Self::next_request) is called.
    pub fn new(
        now: Instant,
        local: NodeId,
        target: Key,
        mut seeds: Vec<PeerInfo>,
        config: LookupConfig,
    ) -> Lookup {
        let config = config.sanitized();
        let mut lookup = Lookup {
            target,
            local,
            config,
            paths: vec![Path { first_round: true, ..Path::default() }; config.disjoint_paths],
            started_at: now,
            last_now: now,
            finished_at: None,
            due_at: None,
            stats: LookupStats::default(),
        };
        seeds.sort_by_key(|p| target.distance(&p.id));
        let mut next_path = 0;
        for seed in seeds {
            if lookup.insert(next_path, seed, 1) {
                next_path = (next_path + 1) % lookup.paths.len();
            }
        }
        lookup.update_finished(now);
        lookup
    }

    /// The key this lookup searches.
    pub fn target(&self) -> Key {
        self.target
    }

    /// The next peer to query now, if the α budget and the candidates allow; `None` otherwise.
    /// Call repeatedly until `None` after every input. The peer is marked in flight with its
    /// slow and hard deadlines counted from `now`.
    pub fn next_request(&mut self, now: Instant) -> Option<PeerInfo> {
        self.next_request_by(now, &|_| 0)
    }

    /// [`next_request`](Self::next_request), choosing among the equally placed candidates the
    /// one of lowest `cost` (module doc, "Ordering"): the caller's expected wait for its answer.
    pub fn next_request_by(
        &mut self,
        now: Instant,
        cost: &dyn Fn(&NodeId) -> u64,
    ) -> Option<PeerInfo> {
        self.apply_deadlines(now);
        if self.is_finished() {
            return None;
        }
        let k = self.config.k;
        let alpha = self.config.alpha;
        let first_round = self.config.first_round;
        let slow_at = deadline_after(now, self.config.slow_timeout);
        let deadline_at = deadline_after(now, self.config.request_timeout);
        for path in self.paths.iter_mut().filter(|p| !p.finished) {
            let budget = if path.converging {
                k
            } else if path.first_round {
                first_round
            } else {
                alpha
            };
            if path.in_flight() >= budget {
                continue;
            }
            let Some(mut pick) = path.next_to_ask(k, self.config.band, cost) else { continue };
            // The first round's requests past α go to a seed placed anywhere that costs less
            // than half the one placed best: one we need not dial (module doc, "First round").
            if path.first_round && path.in_flight() >= alpha {
                if let Some(cheap) = path.next_to_ask(k, usize::MAX, cost) {
                    if cheap.0.saturating_mul(FIRST_ROUND_CHEAPER) < pick.0 {
                        pick = cheap;
                    }
                }
            }
            let Some(candidate) = path.candidates.get_mut(&pick.1) else { continue };
            set_state(&mut self.stats, candidate, State::InFlight { slow_at, deadline_at });
            self.due_at = Some(self.due_at.map_or(slow_at, |d| d.min(slow_at)));
            return Some(candidate.peer.clone());
        }
        None
    }

    /// The next candidate to connect to ahead of its request, if any (module doc, "Connecting
    /// ahead"): one of the `preconnect` nearest not asked yet among the `k` nearest of a
    /// running path, each handed out once. Call until `None` after
    /// [`next_request_by`](Self::next_request_by); `None` when `preconnect` is 0.
    pub fn next_preconnect(&mut self) -> Option<PeerInfo> {
        let ahead = self.config.preconnect;
        if ahead == 0 || self.is_finished() {
            return None;
        }
        let k = self.config.k;
        for path in self.paths.iter_mut().filter(|p| !p.finished) {
            let next = path
                .window(k)
                .filter(|(_, c)| c.state == State::NotContacted)
                .take(ahead)
                .find(|(_, c)| !c.preconnected)
                .map(|(d, _)| *d);
            if let Some(candidate) = next.and_then(|d| path.candidates.get_mut(&d)) {
                candidate.preconnected = true;
                return Some(candidate.peer.clone());
            }
        }
        None
    }

    /// `peer` answered with `closer`, the peers it knows nearest to the target. `closer` is
    /// unvalidated network input: the local id, duplicates and peers already tracked are ignored,
    /// and only the first `k` entries are read. An answer from a peer not in flight (never
    /// asked, failed, past its deadline, or after the lookup finished) changes nothing but the
    /// `unexpected` counter.
    pub fn on_response(&mut self, now: Instant, peer: &NodeId, closer: Vec<PeerInfo>) {
        self.apply_deadlines(now);
        let Some((index, depth)) = self.take_in_flight(peer, State::Answered) else { return };
        let nearest_before = self.paths.get(index).and_then(Path::nearest_live);
        let read = closer.len().min(self.config.k);
        self.count_ignored(closer.len() - read);
        for info in closer.into_iter().take(read) {
            self.insert(index, info, depth.saturating_add(1));
        }
        if let Some(path) = self.paths.get_mut(index) {
            // Kademlia's rule: an answer with nothing nearer than the nearest known means the
            // path is converging, and waiting α at a time for the rest only adds round trips.
            let nearer = path.nearest_live() < nearest_before || nearest_before.is_none();
            path.converging = self.config.converge && !nearer;
        }
        self.update_finished(now);
    }

    /// The request to `peer` failed (error response, disconnect, refused dial). The next
    /// candidate may take its slot.
    pub fn on_failure(&mut self, now: Instant, peer: &NodeId) {
        self.apply_deadlines(now);
        self.take_in_flight(peer, State::Failed);
        self.update_finished(now);
    }

    /// The connection to `peer` closed before it answered (a duplicate connection resolved
    /// against it, a slot pruned): the peer is asked once more, over whatever connects it
    /// next, before it counts as failed (counted in `retried`). A FIND request is safe to
    /// repeat.
    pub fn on_disconnected(&mut self, now: Instant, peer: &NodeId) {
        self.apply_deadlines(now);
        let distance = self.target.distance(peer);
        let retry =
            self.paths.iter_mut().filter(|p| !p.finished).find_map(|p| {
                p.candidates.get_mut(&distance).filter(|c| c.is_waiting() && !c.reasked)
            });
        match retry {
            Some(candidate) => {
                candidate.reasked = true;
                set_state(&mut self.stats, candidate, State::NotContacted);
                self.stats.retried = self.stats.retried.saturating_add(1);
            }
            None => {
                self.take_in_flight(peer, State::Failed);
            }
        }
        self.update_finished(now);
    }

    /// The dial of `peer`'s first address failed: that address is dropped, and the peer is
    /// asked again at its next one if it has another (counted in `retried`), else it failed.
    pub fn on_unreachable(&mut self, now: Instant, peer: &NodeId) {
        self.apply_deadlines(now);
        let distance = self.target.distance(peer);
        let retry = self.paths.iter_mut().filter(|p| !p.finished).find_map(|p| {
            p.candidates.get_mut(&distance).filter(|c| c.is_waiting() && c.peer.addrs.len() > 1)
        });
        match retry {
            Some(candidate) => {
                let dead = candidate.peer.addrs.remove(0);
                candidate.tried.push(dead);
                set_state(&mut self.stats, candidate, State::NotContacted);
                self.stats.retried = self.stats.retried.saturating_add(1);
            }
            None => {
                if self.take_in_flight(peer, State::Failed).is_some() {
                    let distance = self.target.distance(peer);
                    let failed =
                        self.paths.iter_mut().find_map(|p| p.candidates.get_mut(&distance));
                    if let Some(c) = failed {
                        c.tried.append(&mut c.peer.addrs);
                    }
                }
            }
        }
        self.update_finished(now);
    }

    /// Applies the slow and hard deadlines due at `now`. Cheap and harmless when nothing is due.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.apply_deadlines(now);
    }

    /// The earliest slow or hard deadline of a request in flight; `None` when nothing waits or
    /// the lookup is finished.
    pub fn next_deadline(&self) -> Option<Instant> {
        if self.is_finished() {
            return None;
        }
        let states = self.paths.iter().filter(|p| !p.finished).flat_map(|p| p.candidates.values());
        states
            .filter_map(|c| match c.state {
                State::InFlight { slow_at, deadline_at } => Some(slow_at.min(deadline_at)),
                State::Slow { deadline_at } => Some(deadline_at),
                _ => None,
            })
            .min()
    }

    /// Stops early (e.g. a FIND_VALUE found an immutable value). Answers still in flight are
    /// then ignored; the duration ends at the last input's `now`.
    pub fn finish(&mut self) {
        for path in &mut self.paths {
            path.finished = true;
        }
        self.finished_at.get_or_insert(self.last_now);
    }

    /// The peers asked or answered among the `k` nearest of each path still running that is
    /// converging (module doc, "Converging"): barring a late surprise, the lookup's result.
    pub fn converged_nearest(&self) -> Vec<PeerInfo> {
        let k = self.config.k;
        // Converging, and its nearest candidate answered: the peer nearest the target knows
        // no one nearer, so the window is about settled. (Converging alone fires too early:
        // a far seed's answer brings nothing nearer while nearer peers are still unasked.)
        let settled = |p: &&Path| {
            let nearest = p.nearest_live().and_then(|d| p.candidates.get(&d));
            !p.finished && p.converging && nearest.is_some_and(|c| c.state == State::Answered)
        };
        let converging = self.paths.iter().filter(settled);
        converging
            .flat_map(|p| {
                p.window(k)
                    .filter(|(_, c)| matches!(c.state, State::Answered | State::InFlight { .. }))
                    .map(|(_, c)| c.peer.clone())
            })
            .collect()
    }

    /// Whether the lookup is over: every path has terminated, or [`finish`](Self::finish) was
    /// called.
    pub fn is_finished(&self) -> bool {
        self.finished_at.is_some()
    }

    /// Up to `k` peers that answered, nearest to the target first, over all paths.
    pub fn closest_answered(&self) -> Vec<PeerInfo> {
        let mut answered: Vec<(&Distance, &PeerInfo)> = self
            .paths
            .iter()
            .flat_map(|p| p.candidates.iter())
            .filter(|(_, c)| c.state == State::Answered)
            .map(|(d, c)| (d, &c.peer))
            .collect();
        answered.sort_by_key(|(d, _)| **d);
        answered.into_iter().take(self.config.k).map(|(_, p)| p.clone()).collect()
    }

    /// Counters so far; `duration` runs to `now` until the lookup finishes.
    pub fn stats(&self, now: Instant) -> LookupStats {
        let end = self.finished_at.unwrap_or(now);
        LookupStats { duration: end.saturating_duration_since(self.started_at), ..self.stats }
    }

    /// Moves `peer` from in flight (or slow) to `to` if a running path holds it that way, and
    /// returns the path and the peer's depth; otherwise counts an unexpected input.
    fn take_in_flight(&mut self, peer: &NodeId, to: State) -> Option<(usize, u32)> {
        let distance = self.target.distance(peer);
        let found = self.paths.iter_mut().enumerate().find_map(|(index, path)| {
            let running = !path.finished;
            let Path { candidates, failed, first_round, .. } = path;
            candidates.get_mut(&distance).map(|c| (index, c, running, failed, first_round))
        });
        match found {
            Some((index, candidate, true, failed, first_round)) if candidate.is_waiting() => {
                if to == State::Failed {
                    *failed += 1;
                }
                *first_round = false;
                set_state(&mut self.stats, candidate, to);
                Some((index, candidate.depth))
            }
            _ => {
                self.stats.unexpected = self.stats.unexpected.saturating_add(1);
                None
            }
        }
    }

    /// Adds `info` to path `index` at `depth` unless it is the local id or tracked by any path,
    /// then enforces `max_candidates`. Returns whether the peer is tracked afterwards.
    fn insert(&mut self, index: usize, info: PeerInfo, depth: u32) -> bool {
        let distance = self.target.distance(&info.id);
        let known = self.paths.iter_mut().find_map(|p| {
            let running = !p.finished;
            p.candidates.get_mut(&distance).map(|c| (c, &mut p.failed, running))
        });
        if let Some((candidate, failed, running)) = known {
            // Another claim for a known id: its untried addresses join while it is not asked
            // yet, and revive it if only its named addresses failed.
            let unreached = candidate.state == State::Failed && !candidate.tried.is_empty();
            if running && (candidate.state == State::NotContacted || unreached) {
                let budget = MAX_ADDRS_PER_PEER.saturating_sub(candidate.tried.len());
                for addr in info.addrs {
                    let c = &mut *candidate;
                    let fresh = !c.peer.addrs.contains(&addr) && !c.tried.contains(&addr);
                    if fresh && c.peer.addrs.len() < budget {
                        c.peer.addrs.push(addr);
                    }
                }
                if unreached && !candidate.peer.addrs.is_empty() {
                    *failed -= 1;
                    set_state(&mut self.stats, candidate, State::NotContacted);
                    self.stats.retried = self.stats.retried.saturating_add(1);
                }
            }
            self.count_ignored(1);
            return false;
        }
        if info.id == self.local {
            self.count_ignored(1);
            return false;
        }
        let Some(path) = self.paths.get_mut(index) else { return false };
        path.candidates.insert(
            distance,
            Candidate {
                peer: info,
                depth,
                state: State::NotContacted,
                tried: Vec::new(),
                reasked: false,
                preconnected: false,
            },
        );
        let mut kept = true;
        while path.live() > self.config.max_candidates {
            let Some(farthest) = path.farthest_not_contacted() else { break };
            kept &= farthest != distance;
            path.candidates.remove(&farthest);
            self.stats.dropped = self.stats.dropped.saturating_add(1);
        }
        kept
    }

    /// Turns in-flight requests past `slow_at` into `Slow`, and any request past its hard
    /// deadline into `Failed`; then re-evaluates termination.
    fn apply_deadlines(&mut self, now: Instant) {
        self.last_now = self.last_now.max(now);
        if self.is_finished() || self.due_at.is_none_or(|due| now < due) {
            return;
        }
        let mut next_due: Option<Instant> = None;
        for path in self.paths.iter_mut().filter(|p| !p.finished) {
            for candidate in path.candidates.values_mut() {
                match candidate.state {
                    // The hard deadline wins when both are due: the peer has failed.
                    State::InFlight { deadline_at, .. } | State::Slow { deadline_at }
                        if deadline_at <= now =>
                    {
                        path.failed += 1;
                        path.first_round = false;
                        set_state(&mut self.stats, candidate, State::Failed);
                    }
                    // The straggler gives its α slot back but may still answer.
                    State::InFlight { slow_at, deadline_at } if slow_at <= now => {
                        path.first_round = false;
                        set_state(&mut self.stats, candidate, State::Slow { deadline_at });
                    }
                    _ => {}
                }
                let pending = match candidate.state {
                    State::InFlight { slow_at, .. } => Some(slow_at),
                    State::Slow { deadline_at } => Some(deadline_at),
                    _ => None,
                };
                if let Some(at) = pending {
                    next_due = Some(next_due.map_or(at, |d| d.min(at)));
                }
            }
        }
        self.due_at = next_due;
        self.update_finished(now);
    }

    /// Marks each path whose `k` nearest non-failed candidates have answered, and the lookup
    /// when every path is done.
    fn update_finished(&mut self, now: Instant) {
        if self.is_finished() {
            return;
        }
        let k = self.config.k;
        for path in self.paths.iter_mut().filter(|p| !p.finished) {
            path.finished = path
                .candidates
                .values()
                .filter(|c| c.state != State::Failed)
                .take(k)
                .all(|c| c.state == State::Answered);
        }
        if self.paths.iter().all(|p| p.finished) {
            self.finished_at = Some(now);
        }
    }

    fn count_ignored(&mut self, n: usize) {
        let n = u32::try_from(n).unwrap_or(u32::MAX);
        self.stats.ignored = self.stats.ignored.saturating_add(n);
    }
}

/// One (possibly the only) path of a lookup: its candidates by distance to the target.
#[derive(Debug, Clone, Default)]
struct Path {
    /// Keyed by XOR distance to the target, so iteration is nearest first; distinct ids have
    /// distinct distances, so there are no ties.
    candidates: BTreeMap<Distance, Candidate>,
    /// Candidates in state `Failed`, kept so that `live` costs nothing.
    failed: usize,
    /// Terminated: its answers are no longer used and it asks no one.
    finished: bool,
    /// The last answer brought nothing nearer than the nearest candidate already known: the
    /// path asks all of its `k` nearest not yet asked at once (module doc, "Converging").
    converging: bool,
    /// No request of the path has answered, failed or gone slow yet: it asks up to
    /// `first_round` at once (module doc, "First round").
    first_round: bool,
}

impl Path {
    /// The nearest candidate that has not failed.
    fn nearest_live(&self) -> Option<Distance> {
        self.candidates.iter().find(|(_, c)| c.state != State::Failed).map(|(d, _)| *d)
    }

    /// Requests holding an α slot.
    fn in_flight(&self) -> usize {
        self.candidates.values().filter(|c| matches!(c.state, State::InFlight { .. })).count()
    }

    /// The not-contacted candidate of lowest `cost` among those placed like the nearest one
    /// (module doc, "Ordering"), nearest first on equal cost, within the `k` nearest that are
    /// neither failed nor slow: its cost and distance.
    fn next_to_ask(
        &self,
        k: usize,
        band: usize,
        cost: &dyn Fn(&NodeId) -> u64,
    ) -> Option<(u64, Distance)> {
        let window = self.window(k).filter(|(_, c)| c.state == State::NotContacted);
        let mut placed: Option<usize> = None;
        let mut best: Option<(u64, Distance)> = None;
        for (distance, candidate) in window {
            let rank = distance.leading_zeros();
            let first = *placed.get_or_insert(rank);
            if rank.saturating_add(band) < first {
                break;
            }
            let c = cost(&candidate.peer.id);
            if best.is_none_or(|(b, _)| c < b) {
                best = Some((c, *distance));
            }
        }
        best
    }

    /// The `k` nearest candidates neither failed nor slow: whom the path asks next, and
    /// waits for (module doc, "Rules").
    fn window(&self, k: usize) -> impl Iterator<Item = (&Distance, &Candidate)> + '_ {
        self.candidates
            .iter()
            .filter(|(_, c)| !matches!(c.state, State::Failed | State::Slow { .. }))
            .take(k)
    }

    /// Candidates that count towards `max_candidates`: all but the failed ones.
    fn live(&self) -> usize {
        self.candidates.len() - self.failed
    }

    fn farthest_not_contacted(&self) -> Option<Distance> {
        self.candidates.iter().rev().find(|(_, c)| c.state == State::NotContacted).map(|(d, _)| *d)
    }
}

/// A peer tracked by one path.
#[derive(Debug, Clone)]
struct Candidate {
    /// The id and the addresses not tried yet, the next to dial first.
    peer: PeerInfo,
    /// Addresses whose dial failed (at most `MAX_ADDRS_PER_PEER`): never dialled again.
    tried: Vec<SocketAddr>,
    /// Round trips needed to learn of it: 1 for a seed (module doc, "Rounds").
    depth: u32,
    state: State,
    /// Asked again after its connection closed under the request (at most once).
    reasked: bool,
    /// Handed out by [`Lookup::next_preconnect`] (at most once).
    preconnected: bool,
}

impl Candidate {
    /// Asked and still waited for: its answer counts.
    fn is_waiting(&self) -> bool {
        matches!(self.state, State::InFlight { .. } | State::Slow { .. })
    }
}

/// The state of one candidate; the module doc describes each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    NotContacted,
    InFlight { slow_at: Instant, deadline_at: Instant },
    Slow { deadline_at: Instant },
    Answered,
    Failed,
}

/// The one place a candidate changes state, so every transition is counted in `stats`.
fn set_state(stats: &mut LookupStats, candidate: &mut Candidate, to: State) {
    let counter = match to {
        State::NotContacted => None,
        State::InFlight { .. } => {
            stats.rounds = stats.rounds.max(candidate.depth);
            Some(&mut stats.rpcs)
        }
        State::Slow { .. } => Some(&mut stats.slow),
        State::Answered => Some(&mut stats.answered),
        State::Failed => Some(&mut stats.failed),
    };
    if let Some(counter) = counter {
        *counter = counter.saturating_add(1);
    }
    candidate.state = to;
}

/// `now + timeout`, or `now` in the impossible case of overflow (timeouts are capped at a year).
fn deadline_after(now: Instant, timeout: Duration) -> Instant {
    now.checked_add(timeout).unwrap_or(now)
}

/// Requests in flight per path (DESIGN.md, "Kademlia").
pub const ALPHA: usize = 3;
/// Result size and bucket size (DESIGN.md, "Kademlia").
pub const K: usize = 20;
/// Most disjoint paths a lookup accepts; S/Kademlia uses a handful.
pub const MAX_DISJOINT_PATHS: usize = 16;
/// Longest timeout accepted, so `now + timeout` cannot overflow.
const MAX_TIMEOUT: Duration = Duration::from_secs(365 * 24 * 60 * 60);

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::identity::ID_BITS;
    use crate::rng::Rng;

    /// The target of the hand-built scenarios: the zero id, so `id(n)` is at distance `n`.
    const TARGET: Key = NodeId::from_bytes([0; 32]);
    const LOCAL: NodeId = NodeId::from_bytes([0xff; 32]);
    /// The defaults (a first round of α), which the tests of the other rules assume.
    const DEFAULT: LookupConfig = LookupConfig { first_round: 0, ..LookupConfig::DEFAULT };
    const SMALL: LookupConfig = LookupConfig { k: 3, ..DEFAULT };
    const MS: Duration = Duration::from_millis(1);

    fn id(n: u16) -> NodeId {
        let mut b = [0u8; 32];
        b[30..].copy_from_slice(&n.to_be_bytes());
        NodeId::from_bytes(b)
    }

    fn num(id: &NodeId) -> u16 {
        u16::from_be_bytes([id.as_bytes()[30], id.as_bytes()[31]])
    }

    fn peer(id: NodeId) -> PeerInfo {
        PeerInfo { id, addrs: Vec::new() }
    }

    fn peers(ns: &[u16]) -> Vec<PeerInfo> {
        ns.iter().map(|&n| peer(id(n))).collect()
    }

    fn start(seeds: &[u16], config: LookupConfig) -> (Instant, Lookup) {
        let t0 = Instant::now();
        (t0, Lookup::new(t0, LOCAL, TARGET, peers(seeds), config))
    }

    /// Every request `next_request` hands out at `now`, as numbers.
    fn drain(lookup: &mut Lookup, now: Instant) -> Vec<u16> {
        std::iter::from_fn(|| lookup.next_request(now)).map(|p| num(&p.id)).collect()
    }

    fn nums(peers: &[PeerInfo]) -> Vec<u16> {
        peers.iter().map(|p| num(&p.id)).collect()
    }

    // ---- Ordering ----

    /// Every request `next_request_by` hands out at `now` under `cost`, as numbers.
    fn drain_by(lookup: &mut Lookup, now: Instant, cost: &dyn Fn(&NodeId) -> u64) -> Vec<u16> {
        std::iter::from_fn(|| lookup.next_request_by(now, cost)).map(|p| num(&p.id)).collect()
    }

    #[test]
    fn the_cheapest_of_the_candidates_in_the_nearest_bucket_goes_first() {
        // Distances 4 to 7 share a bucket of the target, 8 to 15 the next one out.
        let config = LookupConfig { alpha: 1, k: 8, converge: false, band: 0, ..DEFAULT };
        let (t0, mut l) = start(&[4, 5, 8, 9, 10, 11], config);
        let cost = |id: &NodeId| match num(id) {
            5 => 1,
            11 => 2,
            9 => 3,
            _ => 10,
        };
        assert_eq!(drain_by(&mut l, t0, &cost), [5]);
        l.on_response(t0 + MS, &id(5), Vec::new());
        // 11 is cheaper, but 4 is in a nearer bucket: the metric decides first.
        assert_eq!(drain_by(&mut l, t0 + MS, &cost), [4]);
        l.on_response(t0 + MS, &id(4), Vec::new());
        assert_eq!(drain_by(&mut l, t0 + MS, &cost), [11]);
        l.on_response(t0 + MS, &id(11), Vec::new());
        assert_eq!(drain_by(&mut l, t0 + MS, &cost), [9]);
        l.on_response(t0 + MS, &id(9), Vec::new());
        // Equal costs: nearest first.
        assert_eq!(drain_by(&mut l, t0 + MS, &cost), [8]);
        l.on_response(t0 + MS, &id(8), Vec::new());
        assert_eq!(drain_by(&mut l, t0 + MS, &cost), [10]);
        l.on_response(t0 + MS, &id(10), Vec::new());
        assert!(l.is_finished());
        // Without costs, the same lookup asks nearest first.
        let (t0, mut l) = start(&[4, 5, 8, 9, 10, 11], config);
        let mut asked = Vec::new();
        while let Some(p) = l.next_request(t0) {
            asked.push(num(&p.id));
            l.on_response(t0, &p.id, Vec::new());
        }
        assert_eq!(asked, [4, 5, 8, 9, 10, 11]);
    }

    #[test]
    fn a_band_widens_what_counts_as_equally_placed() {
        let config = LookupConfig { alpha: 1, k: 8, converge: false, band: 1, ..DEFAULT };
        let (t0, mut l) = start(&[4, 5, 8, 9, 16], config);
        let cost = |id: &NodeId| match num(id) {
            16 => 0,
            9 => 1,
            _ => 10,
        };
        // 16 is two buckets out from 4: not within the band. 9 is one out: it is.
        assert_eq!(drain_by(&mut l, t0, &cost), [9]);
        l.on_response(t0 + MS, &id(9), Vec::new());
        assert_eq!(drain_by(&mut l, t0 + MS, &cost), [4]);
    }

    #[test]
    fn only_the_k_nearest_are_ordered_by_cost() {
        // A cheap candidate beyond the k nearest waits like any other.
        let config = LookupConfig { alpha: 1, k: 2, converge: false, band: ID_BITS, ..DEFAULT };
        let (t0, mut l) = start(&[1, 2, 3], config);
        let cost = |id: &NodeId| if num(id) == 3 { 0 } else { 10 };
        assert_eq!(drain_by(&mut l, t0, &cost), [1]);
        l.on_response(t0 + MS, &id(1), Vec::new());
        assert_eq!(drain_by(&mut l, t0 + MS, &cost), [2]);
        l.on_response(t0 + MS, &id(2), Vec::new());
        assert!(l.is_finished(), "the 2 nearest answered; 3 was never needed");
    }

    // ---- Converging ----

    #[test]
    fn an_answer_with_nothing_nearer_asks_all_of_the_k_nearest_at_once() {
        let config = LookupConfig { alpha: 2, k: 5, ..DEFAULT };
        let (t0, mut l) = start(&[2, 3, 4, 5, 6, 7, 8, 9], config);
        assert_eq!(drain(&mut l, t0), [2, 3]);
        // Peer 2 knows no one nearer than itself: the rest of the 5 nearest go out together.
        l.on_response(t0 + MS, &id(2), peers(&[8]));
        assert_eq!(drain(&mut l, t0 + MS), [4, 5, 6]);
        // An answer that brings someone nearer goes back to α at a time: with 3 in flight,
        // nobody more until fewer than 2 are.
        l.on_response(t0 + MS, &id(3), peers(&[1]));
        assert_eq!(drain(&mut l, t0 + MS), Vec::<u16>::new());
        l.on_response(t0 + MS, &id(4), Vec::new());
        l.on_response(t0 + MS, &id(5), Vec::new());
        // Neither brought anyone nearer than 1: converging again. Of the 5 nearest (1 to 5)
        // only 1 is left to ask; 6, in flight, and 7 are beyond them.
        assert_eq!(drain(&mut l, t0 + MS), [1]);
    }

    #[test]
    fn a_peer_whose_connection_closed_under_the_request_is_asked_once_more() {
        let config = LookupConfig { alpha: 1, converge: false, ..DEFAULT };
        let (t0, mut l) = start(&[1, 2], config);
        assert_eq!(drain(&mut l, t0), [1]);
        // Closed under the request (a duplicate connection resolved against it): again.
        l.on_disconnected(t0 + MS, &id(1));
        assert_eq!(drain(&mut l, t0 + MS), [1]);
        assert_eq!(l.stats(t0 + MS).retried, 1);
        // A second time it fails, and the next candidate gets the slot.
        l.on_disconnected(t0 + MS, &id(1));
        assert_eq!(drain(&mut l, t0 + MS), [2]);
        assert_eq!(l.stats(t0 + MS).failed, 1);
    }

    #[test]
    fn without_converging_the_lookup_keeps_to_alpha() {
        let config = LookupConfig { alpha: 2, k: 5, converge: false, ..DEFAULT };
        let (t0, mut l) = start(&[1, 2, 3, 4, 5, 6, 7, 8], config);
        assert_eq!(drain(&mut l, t0), [1, 2]);
        l.on_response(t0 + MS, &id(1), peers(&[7]));
        assert_eq!(drain(&mut l, t0 + MS), [3]);
    }

    // ---- Addresses: each (id, address) claim on its own ----

    #[test]
    fn a_dead_address_named_for_an_id_does_not_fail_the_id_when_another_was_named() {
        // One request at a time, to order the claims (converging would ask everyone at once).
        let config = LookupConfig { alpha: 1, converge: false, ..DEFAULT };
        let (t0, mut l) = start(&[1, 2], config);
        let at = |n: u16, port: u16| PeerInfo {
            id: id(n),
            addrs: vec![std::net::SocketAddr::from(([192, 0, 2, 1], port))],
        };
        assert_eq!(drain(&mut l, t0), [1]);
        // Peer 1 names 9 at a dead address; peer 2, asked next, names 9 where it listens.
        l.on_response(t0, &id(1), vec![at(9, 1)]);
        assert_eq!(drain(&mut l, t0), [2]);
        l.on_response(t0, &id(2), vec![at(9, 2)]);
        let asked = l.next_request(t0).unwrap();
        assert_eq!(asked.addrs, [at(9, 1).addrs[0], at(9, 2).addrs[0]], "both claims, in order");
        // The first dial fails: 9 is asked again at the other address, and answers.
        l.on_unreachable(t0, &id(9));
        let again = l.next_request(t0).unwrap();
        assert_eq!(again.addrs, at(9, 2).addrs);
        l.on_response(t0, &id(9), Vec::new());
        assert!(l.is_finished());
        assert_eq!(nums(&l.closest_answered()), [1, 2, 9]);
        let s = l.stats(t0);
        assert_eq!((s.retried, s.failed, s.rpcs), (1, 0, 4));
        // With no address left, an unreachable peer has failed.
        let (t0, mut l) = start(&[1], config);
        assert_eq!(drain(&mut l, t0), [1]);
        l.on_unreachable(t0, &id(1));
        assert_eq!((l.stats(t0).retried, l.stats(t0).failed), (0, 1));
    }

    #[test]
    fn an_id_that_failed_only_at_a_dead_address_is_revived_by_a_later_claim() {
        let config = LookupConfig { alpha: 1, converge: false, ..DEFAULT };
        let (t0, mut l) = start(&[1, 4], config);
        let at = |n: u16, port: u16| PeerInfo {
            id: id(n),
            addrs: vec![std::net::SocketAddr::from(([192, 0, 2, 1], port))],
        };
        assert_eq!(drain(&mut l, t0), [1]);
        // Peer 1 names 3 at a dead address; 3 is nearer than 4, so it is asked next.
        l.on_response(t0, &id(1), vec![at(3, 1)]);
        assert_eq!(drain(&mut l, t0), [3]);
        l.on_unreachable(t0, &id(3));
        assert_eq!(l.stats(t0).failed, 1);
        assert_eq!(drain(&mut l, t0), [4]);
        // Peer 4 names 3 at the same dead address (not dialled again) and at its real one.
        l.on_response(t0, &id(4), vec![at(3, 1), at(3, 2)]);
        let again = l.next_request(t0).unwrap();
        assert_eq!(again.addrs, at(3, 2).addrs);
        l.on_response(t0, &id(3), Vec::new());
        assert!(l.is_finished());
        assert_eq!(nums(&l.closest_answered()), [1, 3, 4]);
        assert_eq!(l.stats(t0).retried, 1);
    }

    // ---- The α budget and the slow timeout ----

    #[test]
    fn the_first_round_asks_first_round_seeds_then_alpha_at_a_time() {
        let config = LookupConfig { converge: false, first_round: 6, ..LookupConfig::DEFAULT };
        let (t0, mut l) = start(&[10, 11, 12, 13, 14, 15, 16, 17], config);
        assert_eq!(drain(&mut l, t0), [10, 11, 12, 13, 14, 15]);
        // The first answer ends the first round: back to α, and 5 are still in flight.
        l.on_response(t0 + MS, &id(10), peers(&[1]));
        assert_eq!(drain(&mut l, t0 + MS), Vec::<u16>::new());
        l.on_response(t0 + MS, &id(11), Vec::new());
        l.on_response(t0 + MS, &id(12), Vec::new());
        assert_eq!(drain(&mut l, t0 + MS), Vec::<u16>::new());
        l.on_response(t0 + MS, &id(13), Vec::new());
        assert_eq!(drain(&mut l, t0 + MS), [1]);
        // A first round ends at a straggler too, not only at an answer.
        let (t0, mut l) = start(&[10, 11, 12, 13, 14, 15, 16, 17, 18, 19], config);
        assert_eq!(drain(&mut l, t0).len(), 6);
        let slow = t0 + config.slow_timeout;
        assert_eq!(drain(&mut l, slow), [16, 17, 18]);
    }

    #[test]
    fn the_first_round_past_alpha_asks_the_cheapest_seeds_wherever_they_are_placed() {
        // Ids are distances from the target: 2 and 3 share a bucket, 16 to 31 are 3 out.
        let config =
            LookupConfig { alpha: 2, k: 8, converge: false, band: 0, first_round: 4, ..DEFAULT };
        let connected = |id: &NodeId| if matches!(num(id), 20 | 25 | 30) { 0 } else { 10 };
        let seeds = [2, 3, 4, 5, 20, 25, 30];
        let (t0, mut l) = start(&seeds, config);
        // α by placement (2 and 3), then two connected ones far out (nearest first among
        // equal costs), not 4 and 5.
        assert_eq!(drain_by(&mut l, t0, &connected), [2, 3, 20, 25]);
        // After the first round the placement rule holds again: 4, not the connected 30.
        for n in [20, 2, 3] {
            l.on_response(t0 + MS, &id(n), Vec::new());
        }
        assert_eq!(drain_by(&mut l, t0 + MS, &connected), [4]);
        // Without a wider first round (first_round = α) nothing changes.
        let (t0, mut l) = start(&seeds, LookupConfig { first_round: 2, ..config });
        assert_eq!(drain_by(&mut l, t0, &connected), [2, 3]);
        // A far seed only a little cheaper (both behind a dial) does not pass the placed ones.
        let near_cheap = |id: &NodeId| if matches!(num(id), 20 | 25 | 30) { 6 } else { 10 };
        let (t0, mut l) = start(&seeds, config);
        assert_eq!(drain_by(&mut l, t0, &near_cheap), [2, 3, 4, 5]);
    }

    #[test]
    fn connecting_ahead_hands_out_the_next_to_ask_once_each() {
        let config = LookupConfig { converge: false, preconnect: 3, ..DEFAULT };
        let ahead = |l: &mut Lookup| -> Vec<u16> {
            std::iter::from_fn(|| l.next_preconnect()).map(|p| num(&p.id)).collect()
        };
        let (t0, mut l) = start(&[2, 4, 6, 8, 10, 12, 14, 16], config);
        assert_eq!(drain(&mut l, t0), [2, 4, 6]);
        assert_eq!(ahead(&mut l), [8, 10, 12]);
        assert_eq!(ahead(&mut l), Vec::<u16>::new(), "each once");
        // 8 takes 2's slot; 14 becomes one of the next three to ask.
        l.on_response(t0 + MS, &id(2), peers(&[30]));
        assert_eq!(drain(&mut l, t0 + MS), [8]);
        assert_eq!(ahead(&mut l), [14]);
        // 3 takes 4's slot; 5, learned with it, is now among the next three: handed out.
        l.on_response(t0 + MS, &id(4), peers(&[3, 5]));
        assert_eq!(drain(&mut l, t0 + MS), [3]);
        assert_eq!(ahead(&mut l), [5]);
        // Finished, or off, nothing is.
        l.finish();
        assert_eq!(ahead(&mut l), Vec::<u16>::new());
        let (t0, mut l) = start(&[2, 4, 6, 8], LookupConfig { preconnect: 0, ..config });
        assert_eq!(drain(&mut l, t0), [2, 4, 6]);
        assert_eq!(ahead(&mut l), Vec::<u16>::new());
    }

    #[test]
    fn asks_exactly_alpha_peers_at_first_nearest_first() {
        let (t0, mut l) = start(&[7, 3, 9, 1, 5], DEFAULT);
        assert_eq!(drain(&mut l, t0), [1, 3, 5]);
        assert_eq!(l.next_request(t0 + 100 * MS), None);
        assert_eq!(l.stats(t0).rpcs, 3);
        assert_eq!(l.next_deadline(), Some(t0 + Duration::from_secs(1)));
        assert_eq!(l.target(), TARGET);
    }

    #[test]
    fn slow_peer_frees_its_slot_and_its_late_answer_is_used() {
        let (t0, mut l) = start(&[10, 11, 12, 13, 14], DEFAULT);
        assert_eq!(drain(&mut l, t0), [10, 11, 12]);
        l.on_response(t0 + 500 * MS, &id(11), Vec::new());
        l.on_response(t0 + 500 * MS, &id(12), Vec::new());
        assert_eq!(drain(&mut l, t0 + 500 * MS), [13, 14]);
        l.handle_timeout(t0 + 999 * MS);
        assert_eq!(l.stats(t0).slow, 0);
        // Peer 10 turns slow at 1 s; nobody is left to take its slot.
        assert_eq!(l.next_deadline(), Some(t0 + 1000 * MS));
        l.handle_timeout(t0 + 1000 * MS);
        assert_eq!(l.stats(t0).slow, 1);
        assert!(!l.is_finished());
        // Its late answer still counts, and the peer it names is asked.
        l.on_response(t0 + 3000 * MS, &id(10), peers(&[2]));
        assert_eq!(l.stats(t0).answered, 3);
        assert_eq!(drain(&mut l, t0 + 3000 * MS), [2]);
    }

    #[test]
    fn slow_peer_lets_the_lookup_ask_beyond_it() {
        let config = LookupConfig { alpha: 1, k: 2, ..DEFAULT };
        let (t0, mut l) = start(&[1, 2, 3], config);
        assert_eq!(drain(&mut l, t0), [1]);
        // Slow after 1 s: the window of k = 2 moves past it, to peers 2 and then 3.
        assert_eq!(drain(&mut l, t0 + 1000 * MS), [2]);
        l.on_response(t0 + 1100 * MS, &id(2), Vec::new());
        assert_eq!(drain(&mut l, t0 + 1100 * MS), [3]);
        l.on_response(t0 + 1200 * MS, &id(3), Vec::new());
        // Peer 1 is among the k closest and may still answer: not finished.
        assert!(!l.is_finished());
        assert_eq!(l.next_deadline(), Some(t0 + 5000 * MS));
        l.on_response(t0 + 4000 * MS, &id(1), Vec::new());
        assert!(l.is_finished());
        assert_eq!(nums(&l.closest_answered()), [1, 2]);
    }

    #[test]
    fn hard_deadline_fails_the_peer_and_ignores_its_later_answer() {
        let config = LookupConfig { alpha: 2, ..SMALL };
        let (t0, mut l) = start(&[10, 11, 12], config);
        assert_eq!(drain(&mut l, t0), [10, 11]);
        l.handle_timeout(t0 + 4999 * MS);
        assert_eq!(l.stats(t0).failed, 0);
        assert_eq!(l.stats(t0).slow, 2);
        // An answer exactly at the deadline is already too late.
        l.on_response(t0 + 5000 * MS, &id(11), peers(&[1]));
        let stats = l.stats(t0);
        assert_eq!((stats.failed, stats.unexpected, stats.answered), (2, 1, 0));
        assert_eq!(drain(&mut l, t0 + 5000 * MS), [12]);
        l.on_response(t0 + 6000 * MS, &id(10), peers(&[2]));
        assert_eq!(l.stats(t0).unexpected, 2);
        assert_eq!(l.next_request(t0 + 6000 * MS), None);
        l.on_response(t0 + 6000 * MS, &id(12), Vec::new());
        assert!(l.is_finished());
        assert_eq!(nums(&l.closest_answered()), [12]);
    }

    #[test]
    fn failure_lets_the_next_candidate_in() {
        let (t0, mut l) = start(&[1, 2, 3, 4, 5], SMALL);
        assert_eq!(drain(&mut l, t0), [1, 2, 3]);
        l.on_failure(t0 + MS, &id(2));
        assert_eq!(drain(&mut l, t0 + MS), [4]);
        assert_eq!(l.stats(t0).failed, 1);
        // A failure of a peer that is not in flight changes nothing but a counter.
        l.on_failure(t0 + MS, &id(2));
        l.on_failure(t0 + MS, &id(99));
        assert_eq!(l.stats(t0).failed, 1);
        assert_eq!(l.stats(t0).unexpected, 2);
        assert_eq!(l.next_request(t0 + MS), None);
    }

    // ---- Termination ----

    #[test]
    fn finishes_only_when_the_k_closest_have_answered() {
        let (t0, mut l) = start(&[10, 20, 30, 40], SMALL);
        assert_eq!(drain(&mut l, t0), [10, 20, 30]);
        l.on_response(t0 + MS, &id(20), Vec::new());
        l.on_response(t0 + MS, &id(30), Vec::new());
        assert!(!l.is_finished());
        // Peer 40 is outside the k = 3 closest while 10 is merely in flight.
        assert_eq!(l.next_request(t0 + MS), None);
        l.on_response(t0 + 2 * MS, &id(10), peers(&[5]));
        assert!(!l.is_finished());
        assert_eq!(drain(&mut l, t0 + 2 * MS), [5]);
        l.on_response(t0 + 3 * MS, &id(5), Vec::new());
        assert!(l.is_finished());
        assert_eq!(nums(&l.closest_answered()), [5, 10, 20]);
        assert_eq!(l.next_request(t0 + 3 * MS), None);
        assert_eq!(l.next_deadline(), None);
    }

    #[test]
    fn finishes_when_nothing_is_left_to_ask() {
        let (t0, mut l) = start(&[], SMALL);
        assert!(l.is_finished());
        assert_eq!(l.next_request(t0), None);
        let (t0, mut l) = start(&[1, 2], SMALL);
        assert_eq!(drain(&mut l, t0), [1, 2]);
        l.on_failure(t0 + MS, &id(1));
        assert!(!l.is_finished());
        l.on_response(t0 + MS, &id(2), Vec::new());
        assert!(l.is_finished());
        assert_eq!(nums(&l.closest_answered()), [2]);
    }

    #[test]
    fn finish_stops_the_lookup_and_ignores_answers_in_flight() {
        let (t0, mut l) = start(&[1, 2, 3, 4], SMALL);
        assert_eq!(drain(&mut l, t0), [1, 2, 3]);
        l.on_response(t0 + 10 * MS, &id(1), peers(&[0]));
        l.finish();
        assert!(l.is_finished());
        assert_eq!(l.next_request(t0 + 20 * MS), None);
        assert_eq!(l.next_deadline(), None);
        l.on_response(t0 + 20 * MS, &id(2), Vec::new());
        assert_eq!(nums(&l.closest_answered()), [1]);
        let stats = l.stats(t0 + Duration::from_secs(9));
        assert_eq!((stats.answered, stats.unexpected), (1, 1));
        assert_eq!(stats.duration, 10 * MS);
    }

    // ---- Untrusted answers and bounds ----

    #[test]
    fn ignores_local_duplicate_known_and_excess_entries() {
        let config = LookupConfig { k: 4, ..DEFAULT };
        let t0 = Instant::now();
        let seeds = vec![peer(id(10)), peer(id(11)), peer(LOCAL), peer(id(10))];
        let mut l = Lookup::new(t0, LOCAL, TARGET, seeds, config);
        assert_eq!(l.stats(t0).ignored, 2);
        assert_eq!(drain(&mut l, t0), [10, 11]);
        // Only the first k = 4 entries are read; 13 is past them.
        let answer = vec![peer(LOCAL), peer(id(11)), peer(id(12)), peer(id(12)), peer(id(13))];
        l.on_response(t0 + MS, &id(10), answer);
        assert_eq!(l.stats(t0).ignored, 2 + 4);
        assert_eq!(drain(&mut l, t0 + MS), [12]);
        // A second answer from 10 and one from a stranger are unexpected and change nothing.
        l.on_response(t0 + MS, &id(10), peers(&[1]));
        l.on_response(t0 + MS, &id(99), peers(&[2]));
        assert_eq!(l.stats(t0).unexpected, 2);
        assert_eq!(l.next_request(t0 + MS), None);
    }

    #[test]
    fn max_candidates_drops_the_farthest_not_contacted_and_counts() {
        let config = LookupConfig { alpha: 1, k: 2, max_candidates: 3, ..DEFAULT };
        let (t0, mut l) = start(&[5, 1, 2, 3, 4], config);
        assert_eq!(l.stats(t0).dropped, 2);
        assert_eq!(drain(&mut l, t0), [1]);
        // 0 pushes out 3; 6 is the farthest itself.
        l.on_response(t0 + MS, &id(1), peers(&[6, 0]));
        assert_eq!(l.stats(t0).dropped, 4);
        assert_eq!(drain(&mut l, t0 + MS), [0]);
        // A failed peer no longer counts against the bound.
        l.on_failure(t0 + 2 * MS, &id(0));
        assert_eq!(drain(&mut l, t0 + 2 * MS), [2]);
        l.on_response(t0 + 3 * MS, &id(2), peers(&[3, 4]));
        assert_eq!(l.stats(t0).dropped, 5);
        assert_eq!(l.paths[0].live(), 3);
        assert!(l.is_finished());
        assert_eq!(nums(&l.closest_answered()), [1, 2]);
    }

    #[test]
    fn stats_count_rounds_rpcs_failures_and_duration_exactly() {
        let config = LookupConfig { alpha: 2, k: 2, ..DEFAULT };
        let (t0, mut l) = start(&[10, 20, 30], config);
        assert_eq!(drain(&mut l, t0), [10, 20]);
        l.on_response(t0 + 100 * MS, &id(10), peers(&[5]));
        assert_eq!(drain(&mut l, t0 + 100 * MS), [5]);
        l.on_failure(t0 + 200 * MS, &id(20));
        // 30 is outside the two closest non-failed (5 and 10).
        assert_eq!(l.next_request(t0 + 200 * MS), None);
        l.on_response(t0 + 300 * MS, &id(5), peers(&[1]));
        assert_eq!(drain(&mut l, t0 + 300 * MS), [1]);
        assert_eq!(l.stats(t0 + 350 * MS).duration, 350 * MS);
        l.on_response(t0 + 400 * MS, &id(1), Vec::new());
        assert!(l.is_finished());
        let expected = LookupStats {
            rounds: 3,
            rpcs: 4,
            failed: 1,
            answered: 3,
            slow: 0,
            unexpected: 0,
            dropped: 0,
            retried: 0,
            ignored: 0,
            duration: 400 * MS,
        };
        assert_eq!(l.stats(t0 + Duration::from_secs(60)), expected);
        assert_eq!(nums(&l.closest_answered()), [1, 5]);
    }

    #[test]
    fn config_validation_and_clamping() {
        assert_eq!(LookupConfig::DEFAULT.validate(), Ok(()));
        assert_eq!(LookupConfig::default(), LookupConfig::DEFAULT);
        let bad = LookupConfig { alpha: 0, ..DEFAULT };
        assert_eq!(bad.validate(), Err(LookupConfigError::ZeroAlpha));
        let bad = LookupConfig { k: 0, ..DEFAULT };
        assert_eq!(bad.validate(), Err(LookupConfigError::ZeroK));
        let bad = LookupConfig { max_candidates: 19, ..DEFAULT };
        assert_eq!(bad.validate(), Err(LookupConfigError::MaxCandidatesBelowK));
        let bad = LookupConfig { disjoint_paths: 17, ..DEFAULT };
        assert_eq!(bad.validate(), Err(LookupConfigError::TooManyPaths(17)));
        assert!(bad.validate().unwrap_err().to_string().contains("17"));
        let absurd = LookupConfig {
            alpha: 0,
            k: 0,
            max_candidates: 0,
            request_timeout: Duration::MAX,
            slow_timeout: Duration::MAX,
            disjoint_paths: usize::MAX,
            converge: true,
            band: usize::MAX,
            first_round: 0,
            preconnect: usize::MAX,
            wide_min_rtt: Duration::MAX,
        };
        assert_eq!(absurd.validate(), Err(LookupConfigError::ZeroAlpha));
        // Clamped instead of stalling or overflowing: one request at a time, still finishing.
        let (t0, mut l) = start(&[1, 2], absurd);
        assert_eq!(l.paths.len(), MAX_DISJOINT_PATHS);
        assert_eq!(drain(&mut l, t0), [1, 2]);
        assert_eq!(l.next_deadline(), Some(t0 + MAX_TIMEOUT));
        l.on_response(t0 + MS, &id(1), Vec::new());
        l.on_response(t0 + MS, &id(2), Vec::new());
        assert!(l.is_finished());
    }

    // ---- Disjoint paths ----

    #[test]
    fn disjoint_paths_deal_seeds_round_robin_with_alpha_each() {
        let config = LookupConfig { disjoint_paths: 2, alpha: 2, ..SMALL };
        let (t0, mut l) = start(&[1, 2, 3, 4, 5, 6, 7, 8], config);
        let path_of = |l: &Lookup, n: u16| {
            l.paths.iter().position(|p| p.candidates.contains_key(&TARGET.distance(&id(n))))
        };
        assert_eq!(path_of(&l, 1), Some(0));
        assert_eq!(path_of(&l, 2), Some(1));
        assert_eq!(path_of(&l, 7), Some(0));
        assert_eq!(drain(&mut l, t0), [1, 3, 2, 4]);
        // Path 0 learns 9 and 2; 2 is path 1's, so only 9 joins path 0.
        l.on_response(t0 + MS, &id(1), peers(&[2, 9]));
        assert_eq!(l.stats(t0).ignored, 1);
        assert_eq!(path_of(&l, 9), Some(0));
        assert_eq!(drain(&mut l, t0 + MS), [5]);
    }

    /// A synthetic network: node ids, and for each a Kademlia view of up to `BUCKET` peers
    /// per bucket.
    struct Net {
        ids: Vec<NodeId>,
        views: BTreeMap<NodeId, Vec<NodeId>>,
        adversaries: BTreeSet<NodeId>,
    }

    const BUCKET: usize = 5;

    impl Net {
        fn new(rng: &mut Rng, n: usize, adversary_share: f64) -> Net {
            let ids: Vec<NodeId> = (0..n).map(|_| NodeId::from_bytes(rng.bytes32())).collect();
            let mut views = BTreeMap::new();
            for me in &ids {
                let mut others: Vec<NodeId> = ids.iter().filter(|o| *o != me).copied().collect();
                rng.shuffle(&mut others);
                let mut per_bucket = BTreeMap::<usize, usize>::new();
                let view = others
                    .into_iter()
                    .filter(|o| {
                        let count = per_bucket.entry(me.bucket_index(o).unwrap_or(0)).or_default();
                        *count += 1;
                        *count <= BUCKET
                    })
                    .collect();
                views.insert(*me, view);
            }
            // Node 0 is the local node: always honest.
            let adversaries =
                ids.iter().skip(1).filter(|_| rng.chance(adversary_share)).copied().collect();
            Net { ids, views, adversaries }
        }

        fn local(&self) -> NodeId {
            self.ids[0]
        }

        /// The `k` ids of `view` nearest to `target`.
        fn nearest(view: &[NodeId], target: &Key, k: usize) -> Vec<PeerInfo> {
            let mut view = view.to_vec();
            view.sort_by_key(|id| target.distance(id));
            view.into_iter().take(k).map(peer).collect()
        }

        /// The true `k` closest to `target`, the local node excluded.
        fn truth(&self, target: &Key, k: usize) -> Vec<NodeId> {
            let others: Vec<NodeId> = self.ids[1..].to_vec();
            Net::nearest(&others, target, k).into_iter().map(|p| p.id).collect()
        }

        /// Runs a lookup from node 0 to completion, answering in random order. Adversaries
        /// answer with ids next to the target that exist nowhere (asking them fails). Checks
        /// on every step that paths never share a peer and that each respects α.
        fn run(&self, rng: &mut Rng, target: Key, config: LookupConfig) -> Lookup {
            self.run_by(rng, target, config, &|_| 0)
        }

        /// [`Net::run`], ordering the equally placed candidates by `cost`.
        fn run_by(
            &self,
            rng: &mut Rng,
            target: Key,
            config: LookupConfig,
            cost: &dyn Fn(&NodeId) -> u64,
        ) -> Lookup {
            let t0 = Instant::now();
            let view = &self.views[&self.local()];
            let seeds = Net::nearest(view, &target, config.k);
            let mut lookup = Lookup::new(t0, self.local(), target, seeds, config);
            let mut in_flight: Vec<NodeId> = Vec::new();
            let mut now = t0;
            for _ in 0..10_000 {
                while let Some(p) = lookup.next_request_by(now, cost) {
                    assert!(!in_flight.contains(&p.id), "asked twice: {}", p.id);
                    in_flight.push(p.id);
                }
                check_paths(&lookup, config.alpha);
                if in_flight.is_empty() {
                    break;
                }
                let asked = in_flight.swap_remove(rng.below(in_flight.len() as u64) as usize);
                now += 10 * MS;
                match self.views.get(&asked) {
                    None => lookup.on_failure(now, &asked),
                    Some(_) if self.adversaries.contains(&asked) => {
                        lookup.on_response(now, &asked, fabricated(rng, &target, config.k))
                    }
                    Some(view) => {
                        lookup.on_response(now, &asked, Net::nearest(view, &target, config.k))
                    }
                }
            }
            assert!(lookup.is_finished());
            lookup
        }
    }

    /// `k` ids sharing their first 8 bytes with `target`: nearer than any real node.
    fn fabricated(rng: &mut Rng, target: &Key, k: usize) -> Vec<PeerInfo> {
        (0..k)
            .map(|_| {
                let mut b = rng.bytes32();
                b[..8].copy_from_slice(&target.as_bytes()[..8]);
                peer(NodeId::from_bytes(b))
            })
            .collect()
    }

    fn check_paths(lookup: &Lookup, alpha: usize) {
        let mut seen = BTreeSet::new();
        for path in &lookup.paths {
            // α at a time, or up to k once the path converged (an answer bringing a nearer
            // peer afterwards stops new requests until fewer than α are in flight).
            assert!(path.in_flight() <= alpha.max(lookup.config.k));
            for d in path.candidates.keys() {
                assert!(seen.insert(*d), "a peer is on two paths");
            }
        }
    }

    fn answered_ids(lookup: &Lookup) -> Vec<NodeId> {
        lookup.closest_answered().into_iter().map(|p| p.id).collect()
    }

    #[test]
    fn finds_the_true_k_closest_in_a_synthetic_network() {
        let mut rng = Rng::new(1);
        let net = Net::new(&mut rng, 200, 0.0);
        for _ in 0..5 {
            let target = NodeId::from_bytes(rng.bytes32());
            let lookup = net.run(&mut rng, target, LookupConfig::DEFAULT);
            assert_eq!(answered_ids(&lookup), net.truth(&target, K));
            let stats = lookup.stats(Instant::now());
            assert!((2..=6).contains(&stats.rounds), "rounds {}", stats.rounds);
            assert!((K as u32..=80).contains(&stats.rpcs), "rpcs {}", stats.rpcs);
            assert_eq!(stats.rpcs, stats.answered);
            assert_eq!((stats.failed, stats.unexpected), (0, 0));
        }
    }

    #[test]
    fn ordering_by_cost_finds_the_same_k_closest() {
        // Costs order the waiting only: whatever they are, the answer is the true k closest.
        let mut rng = Rng::new(5);
        let net = Net::new(&mut rng, 200, 0.0);
        let cost = |id: &NodeId| u64::from(id.as_bytes()[31]);
        for band in [0, 2, ID_BITS] {
            let config = LookupConfig { band, ..LookupConfig::DEFAULT };
            for _ in 0..5 {
                let target = NodeId::from_bytes(rng.bytes32());
                let lookup = net.run_by(&mut rng, target, config, &cost);
                assert_eq!(answered_ids(&lookup), net.truth(&target, K), "band {band}");
            }
        }
    }

    #[test]
    fn disjoint_paths_stay_disjoint_and_find_the_true_k_closest() {
        let mut rng = Rng::new(2);
        let net = Net::new(&mut rng, 200, 0.0);
        let config = LookupConfig { disjoint_paths: 3, ..LookupConfig::DEFAULT };
        for _ in 0..5 {
            let target = NodeId::from_bytes(rng.bytes32());
            let lookup = net.run(&mut rng, target, config);
            assert_eq!(answered_ids(&lookup), net.truth(&target, K));
        }
    }

    #[test]
    fn disjoint_paths_survive_peers_answering_with_fabricated_ids() {
        let mut rng = Rng::new(3);
        let net = Net::new(&mut rng, 200, 0.2);
        assert!((25..=55).contains(&net.adversaries.len()));
        let config = LookupConfig { disjoint_paths: 3, ..LookupConfig::DEFAULT };
        for _ in 0..5 {
            let target = NodeId::from_bytes(rng.bytes32());
            let lookup = net.run(&mut rng, target, config);
            // Adversaries are real nodes and may be among the true closest; only the ids they
            // make up must not survive, and they fail when asked.
            assert_eq!(answered_ids(&lookup), net.truth(&target, K));
            let stats = lookup.stats(Instant::now());
            assert!(stats.failed >= K as u32, "failed {}", stats.failed);
            assert_eq!(stats.rpcs, stats.answered + stats.failed);
        }
    }
}
