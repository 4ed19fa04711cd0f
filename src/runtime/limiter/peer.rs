//! The per-peer budget: [`PeerLimiter`] charges each frame a peer sends to a frame bucket and a
//! byte bucket, and answers with a [`Verdict`] (the parent module doc, "Per-peer policy"): slow
//! the peer down to exactly its rate, count a strike for each new slow-down, and forgive a
//! strike per clean window. This is the mechanism; what a number of strikes costs the peer is
//! the core's decision, which the runtime reports each new strike to.

use std::time::{Duration, Instant};

use super::{LimiterConfig, TakeError, TokenBucket};

/// What the runtime does with a peer after a frame, per the policy in the [`limiter`](super)
/// module doc.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Within budget: keep reading.
    Allow,
    /// Over budget: stop reading the peer's socket until `until`, then resume.
    Slow {
        /// When the peer's budget is repaid and reading may resume.
        until: Instant,
        /// `Some(n)` when this frame began a new slow-down, the peer's n-th recent strike
        /// (report it to the core); `None` when it extended the slow-down in progress.
        strike: Option<u32>,
    },
    /// The frame's cost could never be repaid (only an absurd length does this): the peer
    /// cannot stay.
    Unpayable,
}

/// One peer's frame and byte budgets and its strike record.
///
/// Driving contract: call [`PeerLimiter::on_frame`] for every frame decoded from the peer and
/// act on the verdict; while [`PeerLimiter::slowed_until`] is `Some`, do not read the socket
/// and include that instant in the poll timeout.
#[derive(Debug, Clone)]
pub struct PeerLimiter {
    frames: TokenBucket,
    bytes: TokenBucket,
    strike_window: Duration,
    /// Strikes as of the end of the last slow-down (decay is applied lazily).
    strikes: u32,
    /// End of the current or last slow-down.
    slowed_until: Option<Instant>,
}

impl PeerLimiter {
    /// A peer with full budgets and a clean record, per `config`.
    pub fn new(config: &LimiterConfig, now: Instant) -> PeerLimiter {
        PeerLimiter {
            frames: TokenBucket::new(config.peer_frames_per_sec, config.peer_frames_burst, now),
            bytes: TokenBucket::new(config.peer_bytes_per_sec, config.peer_bytes_burst, now),
            strike_window: config.strike_window,
            strikes: 0,
            slowed_until: None,
        }
    }

    /// Charges one frame of `frame_bytes` bytes received at `now` and returns the verdict.
    pub fn on_frame(&mut self, now: Instant, frame_bytes: usize) -> Verdict {
        let Ok(debt_until) = self.charge(now, frame_bytes) else {
            return Verdict::Unpayable;
        };
        match (debt_until, self.slowed_until(now)) {
            (None, None) => Verdict::Allow,
            // A slow-down is in progress: the frame was read before it began. Extend, no strike.
            (debt_until, Some(current)) => {
                let until = debt_until.map_or(current, |at| at.max(current));
                self.slowed_until = Some(until);
                Verdict::Slow { until, strike: None }
            }
            (Some(until), None) => self.start_slow_down(now, until),
        }
    }

    /// The end of the slow-down in progress at `now`, if any: the runtime must not read the
    /// peer's socket before it.
    pub fn slowed_until(&self, now: Instant) -> Option<Instant> {
        self.slowed_until.filter(|&until| now < until)
    }

    /// Strikes on record at `now`, after decay.
    pub fn strikes(&self, now: Instant) -> u32 {
        let Some(last_end) = self.slowed_until else {
            return self.strikes;
        };
        let clean = now.saturating_duration_since(last_end).as_nanos();
        // A zero window forgives any gap at all.
        let windows = clean / self.strike_window.as_nanos().max(1);
        self.strikes.saturating_sub(u32::try_from(windows).unwrap_or(u32::MAX))
    }

    /// Whether this budget remembers nothing at `now`: both buckets full, no strike, no
    /// slow-down.
    pub fn is_clean(&self, now: Instant) -> bool {
        self.frames.is_full(now)
            && self.bytes.is_full(now)
            && self.strikes(now) == 0
            && self.slowed_until(now).is_none()
    }

    /// Whether this budget leaves the peer less at `now` than `other`: more strikes, then a
    /// later end of slow-down, then fewer frames, then fewer bytes.
    pub fn is_stricter_than(&self, other: &PeerLimiter, now: Instant) -> bool {
        let key = |l: &PeerLimiter| {
            (
                l.strikes(now),
                l.slowed_until(now),
                std::cmp::Reverse(l.frames.available(now)),
                std::cmp::Reverse(l.bytes.available(now)),
            )
        };
        key(self) > key(other)
    }

    /// Charges both buckets; the later repaid instant if either went into debt.
    fn charge(&mut self, now: Instant, frame_bytes: usize) -> Result<Option<Instant>, TakeError> {
        let frame_bytes = u64::try_from(frame_bytes).unwrap_or(u64::MAX);
        let frames = self.frames.charge(now, 1)?;
        let bytes = self.bytes.charge(now, frame_bytes)?;
        // `None < Some(_)`, so this is the later instant, or `None` when neither is in debt.
        Ok(frames.max(bytes))
    }

    fn start_slow_down(&mut self, now: Instant, until: Instant) -> Verdict {
        let strikes = self.strikes(now).saturating_add(1);
        self.strikes = strikes;
        self.slowed_until = Some(until);
        Verdict::Slow { until, strike: Some(strikes) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::limiter::tests::{ms, NS};

    /// Small numbers so that tests read as arithmetic.
    const PEER_TEMPLATE: LimiterConfig = LimiterConfig {
        peer_frames_per_sec: 10,
        peer_frames_burst: 10,
        peer_bytes_per_sec: 1_000,
        peer_bytes_burst: 1_000,
        max_strikes: 3,
        strike_window: Duration::from_secs(10),
        ..LimiterConfig::DEFAULT
    };

    #[test]
    fn allows_frames_within_budget() {
        let t0 = Instant::now();
        let mut peer = PeerLimiter::new(&PEER_TEMPLATE, t0);
        for i in 0..10 {
            assert_eq!(peer.on_frame(t0 + ms(i), 100), Verdict::Allow);
        }
        assert_eq!(peer.strikes(t0 + ms(10)), 0);
        assert_eq!(peer.slowed_until(t0 + ms(10)), None);
    }

    #[test]
    fn over_budget_frame_slows_until_the_debt_is_repaid() {
        let t0 = Instant::now();
        let mut peer = PeerLimiter::new(&PEER_TEMPLATE, t0);
        assert_eq!(peer.on_frame(t0, 900), Verdict::Allow);
        // 100 bytes left, 300 charged: 200 short at 1000 B/s.
        let until = t0 + ms(200);
        assert_eq!(peer.on_frame(t0, 300), Verdict::Slow { until, strike: Some(1) });
        assert_eq!(peer.slowed_until(t0 + ms(199)), Some(until));
        assert_eq!(peer.slowed_until(until), None);
        assert_eq!(peer.strikes(t0), 1);
    }

    #[test]
    fn frame_budget_alone_slows() {
        let t0 = Instant::now();
        let mut peer = PeerLimiter::new(&PEER_TEMPLATE, t0);
        for _ in 0..10 {
            assert_eq!(peer.on_frame(t0, 0), Verdict::Allow);
        }
        assert_eq!(peer.on_frame(t0, 0), Verdict::Slow { until: t0 + ms(100), strike: Some(1) });
    }

    #[test]
    fn frames_during_a_slow_down_extend_it_without_a_strike() {
        let t0 = Instant::now();
        let mut peer = PeerLimiter::new(&PEER_TEMPLATE, t0);
        let slow = |until, strike| Verdict::Slow { until, strike };
        assert_eq!(peer.on_frame(t0, 1_100), slow(t0 + ms(100), Some(1)));
        assert_eq!(peer.on_frame(t0, 100), slow(t0 + ms(200), None));
        assert_eq!(peer.on_frame(t0 + ms(50), 0), slow(t0 + ms(200), None));
        assert_eq!(peer.strikes(t0 + ms(50)), 1);
    }

    #[test]
    fn a_persistent_abuser_earns_a_strike_per_slow_down() {
        // What the strikes cost the peer is the core's decision (`core::node_tests`, "rate
        // limits"): past `max_strikes` it is disconnected.
        let t0 = Instant::now();
        let mut peer = PeerLimiter::new(&PEER_TEMPLATE, t0);
        let mut now = t0;
        for strike in 1..=4 {
            // Resumes exactly when allowed, and at once sends twice its byte budget.
            let Verdict::Slow { until, strike: Some(n) } = peer.on_frame(now, 2_000) else {
                panic!("strike {strike} should slow");
            };
            assert_eq!((n, peer.strikes(now)), (strike, strike));
            now = until;
        }
    }

    #[test]
    fn strikes_decay_one_per_clean_window() {
        let t0 = Instant::now();
        let mut peer = PeerLimiter::new(&PEER_TEMPLATE, t0);
        let mut now = t0;
        for _ in 0..3 {
            let Verdict::Slow { until, .. } = peer.on_frame(now, 2_000) else { panic!() };
            now = until;
        }
        assert_eq!(peer.strikes(now + Duration::from_secs(10) - NS), 3);
        assert_eq!(peer.strikes(now + Duration::from_secs(10)), 2);
        assert_eq!(peer.strikes(now + Duration::from_secs(25)), 1);
        // One clean window was enough to survive another slow-down.
        let later = now + Duration::from_secs(10);
        assert!(matches!(peer.on_frame(later, 2_000), Verdict::Slow { strike: Some(3), .. }));
        assert_eq!(peer.strikes(later), 3);
    }

    #[test]
    fn strikes_reset_after_good_behaviour() {
        let t0 = Instant::now();
        let mut peer = PeerLimiter::new(&PEER_TEMPLATE, t0);
        let mut now = t0;
        for _ in 0..3 {
            let Verdict::Slow { until, .. } = peer.on_frame(now, 2_000) else { panic!() };
            now = until;
        }
        // Behaves for three windows: in-budget traffic, no strikes.
        for _ in 0..30 {
            now += Duration::from_secs(1);
            assert_eq!(peer.on_frame(now, 500), Verdict::Allow);
        }
        assert_eq!(peer.strikes(now), 0);
        assert!(matches!(peer.on_frame(now, 2_000), Verdict::Slow { strike: Some(1), .. }));
    }

    #[test]
    fn an_unpayable_frame_is_reported_and_charges_nothing() {
        let t0 = Instant::now();
        let config = LimiterConfig { peer_bytes_per_sec: 1, ..PEER_TEMPLATE };
        let mut peer = PeerLimiter::new(&config, t0);
        assert_eq!(peer.on_frame(t0, usize::MAX), Verdict::Unpayable);
        assert_eq!(peer.strikes(t0), 0);
    }
}
