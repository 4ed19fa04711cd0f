//! Per-address dial history (DESIGN.md, "Limits and resources"): exponential backoff with
//! jitter and a circuit breaker (closed / open / half-open), over a bounded address map.
//!
//! Sans-IO: `now` is an argument and the jitter comes from a generator seeded by the caller, so
//! every backoff can be replayed in a test or the simulator.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::conns::PeerLimits;
use crate::rng::Rng;

/// A dial refused before it started.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum DialError {
    /// No outbound slot is free (the outbound share or the total is used up).
    LimitReached,
    /// The address failed recently; it may be dialled again at `until`.
    Backoff {
        /// End of the backoff.
        until: Instant,
    },
    /// The address's circuit breaker is open, or its one half-open trial is running.
    CircuitOpen {
        /// When a trial dial may start.
        until: Instant,
    },
    /// We already have, or are dialling, a connection to this peer.
    AlreadyConnected,
    /// The expected peer is this node itself (transport.md §5).
    OwnId,
}

impl fmt::Display for DialError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::LimitReached => f.write_str("no outbound connection slot is free"),
            Self::Backoff { .. } => f.write_str("the address is backing off after a failure"),
            Self::CircuitOpen { .. } => f.write_str("the address's circuit breaker is open"),
            Self::AlreadyConnected => f.write_str("already connected to or dialling the peer"),
            Self::OwnId => f.write_str("the peer is this node itself"),
        }
    }
}

impl std::error::Error for DialError {}

/// The circuit breaker of one address.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Breaker {
    /// Dials are allowed, from `retry_at` on when a recent failure set a backoff. Reaching
    /// `breaker_failure_threshold` consecutive failures opens the breaker.
    Closed {
        /// End of the backoff after the last failure.
        retry_at: Option<Instant>,
    },
    /// Too many consecutive failures: no dial before `until`, after which the breaker is
    /// half-open.
    Open {
        /// End of the open period.
        until: Instant,
    },
    /// One trial dial may run. `trial_until` is set while it runs; its success closes the
    /// breaker, its failure re-opens it, and with no report by `trial_until` (its connect
    /// timeout) it counts as lost and another trial may start.
    HalfOpen {
        /// Deadline of the running trial.
        trial_until: Option<Instant>,
    },
}

/// Counters and gauges of a [`DialBook`].
#[derive(Clone, Copy, Default, PartialEq, Eq, Debug)]
pub struct DialStats {
    /// Addresses tracked now.
    pub tracked_addrs: usize,
    /// Failures recorded.
    pub failures: u64,
    /// Breakers that opened (including re-opening after a failed trial).
    pub circuits_opened: u64,
    /// Trial dials started on half-open breakers (the open period was over).
    pub circuits_half_opened: u64,
    /// Open or half-open breakers closed by a successful dial.
    pub circuits_closed: u64,
    /// Addresses evicted to make room.
    pub evictions: u64,
}

/// Per-address dial history: exponential backoff with jitter and a circuit breaker.
///
/// After the n-th consecutive failure an address waits `backoff_base_interval · 2^(n-1)`,
/// spread by ± `backoff_jitter_percent` and never above `backoff_max_interval`. At
/// `breaker_failure_threshold` failures its breaker opens for the longer of
/// `breaker_open_interval` and that backoff, then allows one trial dial (half-open). A success
/// at any point closes the breaker and clears the failures.
///
/// At most `max_tracked_addrs` addresses are kept. To make room, addresses with no failures
/// (recovered ones) go first, then the least recently updated. Eviction scans the map, so it
/// costs O(`max_tracked_addrs`), and only happens when a new address fails.
#[derive(Debug)]
pub struct DialBook {
    limits: PeerLimits,
    entries: BTreeMap<SocketAddr, AddrEntry>,
    rng: Rng,
    stats: DialStats,
}

impl DialBook {
    /// An empty book; `rng_seed` seeds the jitter, so equal seeds give equal backoffs.
    pub fn new(limits: PeerLimits, rng_seed: u64) -> DialBook {
        DialBook {
            limits: limits.sanitized(),
            entries: BTreeMap::new(),
            rng: Rng::new(rng_seed),
            stats: DialStats::default(),
        }
    }

    /// Whether `addr` may be dialled at `now`: `Backoff` or `CircuitOpen` say until when not.
    /// Every wait ends exactly at its deadline.
    pub fn may_dial(&self, now: Instant, addr: SocketAddr) -> Result<(), DialError> {
        match self.breaker(now, addr) {
            Breaker::Closed { retry_at: Some(until) } => Err(DialError::Backoff { until }),
            Breaker::Open { until } | Breaker::HalfOpen { trial_until: Some(until) } => {
                Err(DialError::CircuitOpen { until })
            }
            Breaker::Closed { retry_at: None } | Breaker::HalfOpen { trial_until: None } => Ok(()),
        }
    }

    /// A dial of `addr` starts at `now`; on a half-open address it is the trial.
    pub fn record_attempt(&mut self, now: Instant, addr: SocketAddr) {
        self.apply(addr, BreakerEvent::Attempt(now));
    }

    /// A dial of `addr` failed at `now`: the backoff grows and the breaker may open.
    pub fn record_failure(&mut self, now: Instant, addr: SocketAddr) {
        if !self.entries.contains_key(&addr) {
            self.make_room();
        }
        let entry = self.entries.entry(addr).or_insert(AddrEntry::new(now));
        entry.failures = entry.failures.saturating_add(1);
        let random = self.rng.next_u64();
        self.apply(addr, BreakerEvent::Failure { now, random });
        self.stats.failures += 1;
    }

    /// A dial of `addr` succeeded: the breaker closes and the failures are forgotten.
    pub fn record_success(&mut self, addr: SocketAddr) {
        self.apply(addr, BreakerEvent::Success);
        if let Some(entry) = self.entries.get_mut(&addr) {
            entry.failures = 0;
        }
    }

    /// The breaker of `addr` as of `now` (an untracked address is closed).
    pub fn breaker(&self, now: Instant, addr: SocketAddr) -> Breaker {
        let Some(entry) = self.entries.get(&addr) else {
            return Breaker::Closed { retry_at: None };
        };
        transition(&self.limits, entry.breaker, BreakerEvent::Elapsed(now), entry.failures)
    }

    #[cfg(test)]
    /// Consecutive failures of `addr` since its last success.
    pub fn failures(&self, addr: SocketAddr) -> u32 {
        self.entries.get(&addr).map_or(0, |e| e.failures)
    }

    /// A snapshot of the counters and gauges.
    pub fn stats(&self) -> DialStats {
        DialStats { tracked_addrs: self.entries.len(), ..self.stats }
    }

    /// The one place a breaker changes: lets time pass up to the event's `now`, then applies
    /// the event. Untracked addresses are closed with no history, and stay untracked.
    fn apply(&mut self, addr: SocketAddr, event: BreakerEvent) {
        let Some(entry) = self.entries.get_mut(&addr) else {
            return;
        };
        let mut state = entry.breaker;
        if let Some(now) = event.now() {
            state = transition(&self.limits, state, BreakerEvent::Elapsed(now), entry.failures);
            entry.updated_at = now;
        }
        let next = transition(&self.limits, state, event, entry.failures);
        match (state, next) {
            (Breaker::Open { .. }, Breaker::Open { .. }) => {}
            (_, Breaker::Open { .. }) => self.stats.circuits_opened += 1,
            (
                Breaker::HalfOpen { trial_until: None },
                Breaker::HalfOpen { trial_until: Some(_) },
            ) => self.stats.circuits_half_opened += 1,
            (Breaker::Open { .. } | Breaker::HalfOpen { .. }, Breaker::Closed { .. }) => {
                self.stats.circuits_closed += 1
            }
            _ => {}
        }
        entry.breaker = next;
    }

    /// Evicts one address when the map is full: a recovered one if any, else the oldest.
    fn make_room(&mut self) {
        if self.entries.len() < self.limits.max_tracked_addrs {
            return;
        }
        let victim = self
            .entries
            .iter()
            .min_by_key(|(_, e)| (e.failures > 0, e.updated_at))
            .map(|(&addr, _)| addr);
        if let Some(addr) = victim {
            self.entries.remove(&addr);
            self.stats.evictions += 1;
        }
    }
}

/// What happens to an address's breaker.
#[derive(Clone, Copy, Debug)]
enum BreakerEvent {
    /// Time passes up to this instant.
    Elapsed(Instant),
    /// A dial starts.
    Attempt(Instant),
    /// A dial failed; `random` draws the jitter.
    Failure { now: Instant, random: u64 },
    /// A dial succeeded.
    Success,
}

impl BreakerEvent {
    fn now(self) -> Option<Instant> {
        match self {
            Self::Elapsed(now) | Self::Attempt(now) | Self::Failure { now, .. } => Some(now),
            Self::Success => None,
        }
    }
}

/// The breaker's transition function; `failures` already counts a `Failure` being applied.
fn transition(limits: &PeerLimits, state: Breaker, event: BreakerEvent, failures: u32) -> Breaker {
    use BreakerEvent::{Attempt, Elapsed, Failure, Success};
    match (state, event) {
        // A backoff ends at its deadline, not before.
        (Breaker::Closed { retry_at: Some(at) }, Elapsed(now)) if now >= at => {
            Breaker::Closed { retry_at: None }
        }
        // The open period is over: allow one trial.
        (Breaker::Open { until }, Elapsed(now)) if now >= until => {
            Breaker::HalfOpen { trial_until: None }
        }
        // The trial was never reported within its connect timeout: count it lost.
        (Breaker::HalfOpen { trial_until: Some(at) }, Elapsed(now)) if now >= at => {
            Breaker::HalfOpen { trial_until: None }
        }
        // Nothing is due yet.
        (state, Elapsed(_)) => state,
        // The half-open trial starts.
        (Breaker::HalfOpen { trial_until: None }, Attempt(now)) => {
            Breaker::HalfOpen { trial_until: Some(now + limits.connect_timeout) }
        }
        // Other dials leave the breaker alone (`may_dial` refused those it forbids).
        (state, Attempt(_)) => state,
        // The address is reachable: close, whatever the state.
        (_, Success) => Breaker::Closed { retry_at: None },
        // The trial failed: open again.
        (Breaker::HalfOpen { .. }, Failure { now, random }) => open(limits, now, failures, random),
        // A dial started before the breaker opened failed: already open, keep the deadline.
        (Breaker::Open { until }, Failure { .. }) => Breaker::Open { until },
        // Threshold reached: open.
        (Breaker::Closed { .. }, Failure { now, random })
            if failures >= limits.breaker_failure_threshold =>
        {
            open(limits, now, failures, random)
        }
        // Below the threshold: back off.
        (Breaker::Closed { .. }, Failure { now, random }) => {
            Breaker::Closed { retry_at: Some(now + backoff(limits, failures, random)) }
        }
    }
}

/// An open breaker: for the open interval, or the backoff if longer, so an address that keeps
/// failing its trials is retried ever less often, up to the backoff maximum.
fn open(limits: &PeerLimits, now: Instant, failures: u32, random: u64) -> Breaker {
    let period = limits.breaker_open_interval.max(backoff(limits, failures, random));
    Breaker::Open { until: now + period }
}

/// The wait after the `failures`-th consecutive failure: `base · 2^(failures-1)` spread by
/// ± the jitter percentage, never above the maximum.
fn backoff(limits: &PeerLimits, failures: u32, random: u64) -> Duration {
    let doubling = 1u32.checked_shl(failures.saturating_sub(1)).unwrap_or(u32::MAX);
    let max = limits.backoff_max_interval;
    let delay = limits.backoff_base_interval.saturating_mul(doubling).min(max);
    jittered(delay, limits.backoff_jitter_percent, random).min(max)
}

/// `delay` moved uniformly within ± `percent` % by `random` (`percent` ≤ 100).
fn jittered(delay: Duration, percent: u32, random: u64) -> Duration {
    let nanos = delay.as_nanos();
    let span = nanos * u128::from(percent.min(100)) / 100;
    let offset = u128::from(random) % (2 * span + 1);
    Duration::from_nanos(u64::try_from(nanos - span + offset).unwrap_or(u64::MAX))
}

/// What the book remembers about one address.
#[derive(Clone, Copy, Debug)]
struct AddrEntry {
    failures: u32,
    breaker: Breaker,
    updated_at: Instant,
}

impl AddrEntry {
    fn new(now: Instant) -> AddrEntry {
        AddrEntry { failures: 0, breaker: Breaker::Closed { retry_at: None }, updated_at: now }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: PeerLimits = PeerLimits::DEFAULT;
    const SEED: u64 = 0x5eed;
    const NS: Duration = Duration::from_nanos(1);

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([192, 0, 2, 1], port))
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    /// Fails `n` dials of `addr` at `now`, one after another.
    fn fail_times(book: &mut DialBook, now: Instant, addr: SocketAddr, n: u32) {
        for _ in 0..n {
            book.record_failure(now, addr);
        }
    }

    // ---- Backoff ----

    #[test]
    fn backoff_doubles_with_jitter_inside_bounds() {
        let now = Instant::now();
        let limits = PeerLimits { breaker_failure_threshold: 100, ..LIMITS };
        let mut book = DialBook::new(limits, SEED);
        for n in 1..=8u32 {
            book.record_failure(now, addr(1));
            let Err(DialError::Backoff { until }) = book.may_dial(now, addr(1)) else {
                panic!("failure {n} should back off");
            };
            let nominal = secs(1) * 2u32.pow(n - 1);
            let wait = until - now;
            assert!(wait >= nominal * 8 / 10 && wait <= nominal * 12 / 10, "{n}: {wait:?}");
        }
    }

    #[test]
    fn backoff_is_capped_at_the_maximum() {
        let now = Instant::now();
        let limits = PeerLimits { breaker_failure_threshold: 1000, ..LIMITS };
        let mut book = DialBook::new(limits, SEED);
        for n in 1..=200u32 {
            book.record_failure(now, addr(1));
            let Err(DialError::Backoff { until }) = book.may_dial(now, addr(1)) else {
                panic!("failure {n} should back off");
            };
            assert!(until - now <= secs(300), "{n}: {:?}", until - now);
            if n >= 10 {
                // 2^9 s is past the cap, so only the downward jitter remains.
                assert!(until - now >= secs(240), "{n}: {:?}", until - now);
            }
        }
    }

    #[test]
    fn backoff_ends_exactly_at_its_deadline() {
        let now = Instant::now();
        let mut book = DialBook::new(LIMITS, SEED);
        book.record_failure(now, addr(1));
        let Err(DialError::Backoff { until }) = book.may_dial(now, addr(1)) else {
            panic!("expected a backoff");
        };
        assert_eq!(book.may_dial(until - NS, addr(1)), Err(DialError::Backoff { until }));
        assert_eq!(book.may_dial(until, addr(1)), Ok(()));
    }

    #[test]
    fn jitter_is_deterministic_per_seed_and_spreads_across_seeds() {
        let now = Instant::now();
        let wait = |seed: u64| {
            let mut book = DialBook::new(LIMITS, seed);
            fail_times(&mut book, now, addr(1), 3);
            match book.may_dial(now, addr(1)) {
                Err(DialError::Backoff { until }) => until - now,
                other => panic!("expected a backoff, got {other:?}"),
            }
        };
        assert_eq!(wait(7), wait(7));
        let distinct: std::collections::BTreeSet<Duration> = (0..20).map(wait).collect();
        assert!(distinct.len() > 10, "{distinct:?}");
    }

    #[test]
    fn jitter_stays_within_its_percentage() {
        let d = secs(10);
        assert_eq!(jittered(d, 20, 0), secs(8));
        assert_eq!(jittered(d, 20, 4_000_000_000), secs(12)); // offset == 2 * span
        assert_eq!(jittered(d, 0, u64::MAX), d);
        for random in [1, 12345, u64::MAX, u64::MAX / 3] {
            let j = jittered(d, 20, random);
            assert!(j >= secs(8) && j <= secs(12), "{j:?}");
        }
    }

    // ---- Circuit breaker ----

    #[test]
    fn breaker_opens_at_the_failure_threshold() {
        let now = Instant::now();
        let mut book = DialBook::new(LIMITS, SEED);
        fail_times(&mut book, now, addr(1), 4);
        assert!(matches!(book.may_dial(now, addr(1)), Err(DialError::Backoff { .. })));
        book.record_failure(now, addr(1));
        let until = now + secs(30); // The 5th backoff (16 s ± 20 %) is shorter than 30 s.
        assert_eq!(book.breaker(now, addr(1)), Breaker::Open { until });
        assert_eq!(book.may_dial(until - NS, addr(1)), Err(DialError::CircuitOpen { until }));
        assert_eq!(book.stats().circuits_opened, 1);
    }

    #[test]
    fn breaker_half_opens_after_the_open_period_for_one_trial() {
        let now = Instant::now();
        let mut book = DialBook::new(LIMITS, SEED);
        fail_times(&mut book, now, addr(1), 5);
        let open_end = now + secs(30);
        assert_eq!(book.breaker(open_end, addr(1)), Breaker::HalfOpen { trial_until: None });
        assert_eq!(book.may_dial(open_end, addr(1)), Ok(()));
        book.record_attempt(open_end, addr(1));
        let trial_until = open_end + secs(5);
        assert_eq!(
            book.may_dial(open_end, addr(1)),
            Err(DialError::CircuitOpen { until: trial_until })
        );
        // A trial never reported is lost at its connect timeout; another may start.
        assert_eq!(book.may_dial(trial_until, addr(1)), Ok(()));
        book.record_attempt(trial_until, addr(1));
        let s = book.stats();
        assert_eq!((s.circuits_opened, s.circuits_half_opened, s.circuits_closed), (1, 2, 0));
    }

    #[test]
    fn half_open_success_closes_the_breaker() {
        let now = Instant::now();
        let mut book = DialBook::new(LIMITS, SEED);
        fail_times(&mut book, now, addr(1), 5);
        let open_end = now + secs(30);
        book.record_attempt(open_end, addr(1));
        book.record_success(addr(1));
        assert_eq!(book.breaker(open_end, addr(1)), Breaker::Closed { retry_at: None });
        assert_eq!((book.may_dial(open_end, addr(1)), book.failures(addr(1))), (Ok(()), 0));
        let s = book.stats();
        assert_eq!((s.circuits_opened, s.circuits_half_opened, s.circuits_closed), (1, 1, 1));
        // A success on a closed breaker is no transition.
        book.record_success(addr(1));
        assert_eq!(book.stats().circuits_closed, 1);
    }

    #[test]
    fn half_open_failure_reopens_the_breaker() {
        let now = Instant::now();
        let mut book = DialBook::new(LIMITS, SEED);
        fail_times(&mut book, now, addr(1), 5);
        let open_end = now + secs(30);
        book.record_attempt(open_end, addr(1));
        let failed_at = open_end + secs(1);
        book.record_failure(failed_at, addr(1));
        let Breaker::Open { until } = book.breaker(failed_at, addr(1)) else {
            panic!("expected the breaker to re-open");
        };
        // Open for 30 s, or the 6th backoff (32 s ± 20 %) if longer.
        assert!(until - failed_at >= secs(30) && until - failed_at <= secs(32) * 12 / 10);
        assert_eq!(book.stats().circuits_opened, 2);
    }

    // ---- Bounded address map ----

    #[test]
    fn address_map_evicts_recovered_addresses_first() {
        let now = Instant::now();
        let mut book = DialBook::new(PeerLimits { max_tracked_addrs: 3, ..LIMITS }, SEED);
        book.record_failure(now, addr(1));
        book.record_failure(now + secs(1), addr(2));
        book.record_failure(now + secs(2), addr(3));
        book.record_success(addr(3)); // Recovered: cheapest to forget, though the newest.
        book.record_failure(now + secs(3), addr(4));
        assert_eq!(book.stats().tracked_addrs, 3);
        assert_eq!(book.stats().evictions, 1);
        assert_eq!(book.failures(addr(1)), 1);
        assert!(book.entries.contains_key(&addr(1)) && !book.entries.contains_key(&addr(3)));
    }

    #[test]
    fn address_map_evicts_the_oldest_when_all_are_failing() {
        let now = Instant::now();
        let mut book = DialBook::new(PeerLimits { max_tracked_addrs: 3, ..LIMITS }, SEED);
        for port in 1..=3u16 {
            book.record_failure(now + secs(u64::from(port)), addr(port));
        }
        book.record_failure(now + secs(10), addr(1)); // Refreshes addr(1).
        book.record_failure(now + secs(11), addr(4));
        let tracked: Vec<SocketAddr> = book.entries.keys().copied().collect();
        assert_eq!(tracked, vec![addr(1), addr(3), addr(4)]);
        assert_eq!(book.may_dial(now + secs(11), addr(2)), Ok(())); // Forgotten entirely.
        assert_eq!(book.stats().evictions, 1);
    }

    #[test]
    fn success_of_an_untracked_address_tracks_nothing() {
        let now = Instant::now();
        let mut book = DialBook::new(LIMITS, SEED);
        book.record_attempt(now, addr(1));
        book.record_success(addr(1));
        assert_eq!(book.stats().tracked_addrs, 0);
    }
}
