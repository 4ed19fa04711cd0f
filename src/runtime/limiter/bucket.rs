//! Token buckets: [`TokenBucket`], its refusal [`TakeError`], and the nanotoken arithmetic
//! behind both (the parent module doc, "Token accounting"). A bucket counts nanotokens in an
//! integer, refills lazily and exactly when used, goes into debt on [`TokenBucket::charge`],
//! and credits nothing when time goes backwards. Every other limiter is built from these.

use std::fmt;
use std::time::{Duration, Instant};

/// A token bucket: `burst` tokens at most, refilled at `rate_per_sec`.
///
/// Pure: every method takes `now`, and the bucket never reads a clock. See the
/// [`limiter`](super) module doc for the exact accounting.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate_per_sec: u64,
    burst: u64,
    /// Tokens held, in nanotokens; at most `burst * NANOTOKENS_PER_TOKEN`.
    nanotokens: u128,
    /// Refill reference: tokens are credited for time after this instant. Ahead of the caller's
    /// `now` while the bucket is in debt (see [`TokenBucket::charge`]).
    last_refill_at: Instant,
}

impl TokenBucket {
    /// A full bucket holding `burst` tokens, refilled at `rate_per_sec` from `now`.
    ///
    /// A zero rate is raised to one token per second: a bucket that never refills would refuse
    /// forever, which is not a rate limit.
    pub fn new(rate_per_sec: u64, burst: u64, now: Instant) -> TokenBucket {
        TokenBucket {
            rate_per_sec: rate_per_sec.max(1),
            burst,
            nanotokens: nanotokens(burst),
            last_refill_at: now,
        }
    }

    /// Takes `n` tokens if the bucket holds them at `now`.
    ///
    /// Otherwise takes nothing and returns [`TakeError::RetryAt`] with the first instant at which
    /// `n` tokens will be there if nothing else takes from the bucket, or [`TakeError::Never`]
    /// when `n` exceeds the burst. Taking zero tokens always succeeds (and refills).
    pub fn try_take(&mut self, now: Instant, n: u64) -> Result<(), TakeError> {
        if n > self.burst {
            return Err(TakeError::Never);
        }
        self.refill(now);
        let need = nanotokens(n);
        if self.nanotokens >= need {
            self.nanotokens -= need;
            return Ok(());
        }
        match self.repaid_at(need - self.nanotokens) {
            Some(at) => Err(TakeError::RetryAt(at)),
            None => Err(TakeError::Never),
        }
    }

    /// Takes `n` tokens even if the bucket is short, for a cost already incurred (bytes already
    /// read).
    ///
    /// - `Ok(None)`: the bucket covered the cost.
    /// - `Ok(Some(at))`: the bucket went into debt. It holds nothing until `at`, when the debt
    ///   is repaid, and refills from there; further charges before `at` push `at` later.
    /// - `Err(TakeError::Never)`: the debt would end beyond what an `Instant` can represent
    ///   (only an absurd `n` can cause this). Nothing was taken.
    pub fn charge(&mut self, now: Instant, n: u64) -> Result<Option<Instant>, TakeError> {
        self.refill(now);
        let need = nanotokens(n);
        if self.nanotokens >= need {
            self.nanotokens -= need;
            return Ok(None);
        }
        let repaid_at = self.repaid_at(need - self.nanotokens).ok_or(TakeError::Never)?;
        self.nanotokens = 0;
        self.last_refill_at = repaid_at;
        Ok(Some(repaid_at))
    }

    /// Whole tokens held at `now` (zero while in debt). Does not change the bucket.
    pub fn available(&self, now: Instant) -> u64 {
        let whole = self.nanotokens_at(now) / NANOTOKENS_PER_TOKEN;
        // Never above `burst`, which is a u64, so the conversion cannot fail.
        u64::try_from(whole).unwrap_or(self.burst)
    }

    /// Whether the bucket holds its whole burst at `now`: it is idle, and indistinguishable
    /// from a new bucket.
    pub fn is_full(&self, now: Instant) -> bool {
        self.nanotokens_at(now) >= nanotokens(self.burst)
    }

    /// The burst capacity, in tokens.
    pub fn burst(&self) -> u64 {
        self.burst
    }

    /// The refill rate, in tokens per second.
    pub fn rate_per_sec(&self) -> u64 {
        self.rate_per_sec
    }

    /// Credits the time elapsed since the last refill; never moves the reference back.
    fn refill(&mut self, now: Instant) {
        self.nanotokens = self.nanotokens_at(now);
        self.last_refill_at = self.last_refill_at.max(now);
    }

    fn nanotokens_at(&self, now: Instant) -> u128 {
        let elapsed_nanos = now.saturating_duration_since(self.last_refill_at).as_nanos();
        let gained = u128::from(self.rate_per_sec).saturating_mul(elapsed_nanos);
        self.nanotokens.saturating_add(gained).min(nanotokens(self.burst))
    }

    /// The first instant at which `deficit` more nanotokens will have accrued, counting from
    /// the refill reference. `None` if that is beyond what an `Instant` can hold.
    fn repaid_at(&self, deficit: u128) -> Option<Instant> {
        // `rate_per_sec` nanotokens accrue per nanosecond; round up to a whole nanosecond.
        let wait_nanos = u64::try_from(deficit.div_ceil(u128::from(self.rate_per_sec))).ok()?;
        self.last_refill_at.checked_add(Duration::from_nanos(wait_nanos))
    }
}

/// Why a bucket could not give tokens now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TakeError {
    /// Not enough tokens yet; they will be there at this instant if nothing else takes first.
    RetryAt(Instant),
    /// Waiting cannot help: the request exceeds the bucket's burst capacity.
    Never,
}

impl TakeError {
    /// The instant to retry at, if waiting helps.
    pub fn retry_at(&self) -> Option<Instant> {
        match self {
            Self::RetryAt(at) => Some(*at),
            Self::Never => None,
        }
    }
}

impl fmt::Display for TakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::RetryAt(_) => f.write_str("rate limited: not enough tokens yet"),
            Self::Never => f.write_str("request exceeds the token bucket's burst capacity"),
        }
    }
}

impl std::error::Error for TakeError {}

fn nanotokens(tokens: u64) -> u128 {
    u128::from(tokens) * NANOTOKENS_PER_TOKEN
}

/// Nanotokens in a token: one token per second accrues one nanotoken per nanosecond.
const NANOTOKENS_PER_TOKEN: u128 = 1_000_000_000;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::limiter::tests::{ms, NS};

    #[test]
    fn starts_full_and_caps_at_burst() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(5, 20, t0);
        assert_eq!(b.available(t0), 20);
        assert!(b.is_full(t0));
        assert_eq!(b.available(t0 + Duration::from_secs(3600)), 20);
        b.try_take(t0, 20).unwrap();
        assert_eq!(b.available(t0 + Duration::from_secs(3600)), 20);
        assert!(b.try_take(t0 + Duration::from_secs(3600), 21).is_err());
    }

    #[test]
    fn refill_is_exact_to_the_nanosecond() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(3, 10, t0);
        b.try_take(t0, 10).unwrap();
        // One token takes 1/3 s: 333_333_333.33.. ns, so it is there at the 333_333_334th.
        assert_eq!(b.available(t0 + Duration::from_nanos(333_333_333)), 0);
        assert_eq!(b.available(t0 + Duration::from_nanos(333_333_334)), 1);
        assert_eq!(b.available(t0 + Duration::from_secs(1)), 3);
        assert_eq!(b.available(t0 + Duration::from_secs(3)), 9);
    }

    #[test]
    fn many_small_refills_equal_one_large_refill() {
        let t0 = Instant::now();
        let mut stepped = TokenBucket::new(7, 100, t0);
        let mut once = stepped.clone();
        stepped.try_take(t0, 100).unwrap();
        once.try_take(t0, 100).unwrap();
        let mut t = t0;
        for _ in 0..1_000 {
            t += Duration::from_nanos(999_983); // a prime: no step lands on a token boundary
            stepped.try_take(t, 0).unwrap();
        }
        once.try_take(t, 0).unwrap();
        assert_eq!(stepped.nanotokens, once.nanotokens);
        assert_eq!(stepped.try_take(t, 7), once.try_take(t, 7));
    }

    #[test]
    fn retry_instant_is_the_first_at_which_the_take_succeeds() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(3, 10, t0);
        b.try_take(t0, 9).unwrap();
        let now = t0 + ms(100); // 1 + 0.3 tokens held; 5 wanted: 3.7 tokens short.
        let retry_at = b.try_take(now, 5).unwrap_err().retry_at().unwrap();
        assert_eq!(retry_at, now + Duration::from_nanos(1_233_333_334));
        let mut early = b.clone();
        assert_eq!(early.try_take(retry_at - NS, 5), Err(TakeError::RetryAt(retry_at)));
        assert_eq!(b.try_take(retry_at, 5), Ok(()));
        assert_eq!(b.available(retry_at), 0);
    }

    #[test]
    fn refused_take_takes_nothing() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(1, 10, t0);
        assert!(b.try_take(t0, 11).is_err());
        assert!(b.try_take(t0, 9).is_ok());
        assert!(b.try_take(t0, 2).is_err());
        assert_eq!(b.available(t0), 1);
    }

    #[test]
    fn request_above_burst_is_never_even_for_huge_n() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(u64::MAX, 10, t0);
        assert_eq!(b.try_take(t0, 11), Err(TakeError::Never));
        assert_eq!(b.try_take(t0, u64::MAX), Err(TakeError::Never));
        assert_eq!(b.available(t0), 10);
        let mut huge = TokenBucket::new(u64::MAX, u64::MAX, t0);
        assert_eq!(huge.try_take(t0, u64::MAX), Ok(()));
        assert_eq!(huge.available(t0 + Duration::from_secs(1)), u64::MAX);
    }

    #[test]
    fn time_going_backwards_credits_nothing() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10, 10, t0);
        let t10 = t0 + Duration::from_secs(10);
        b.try_take(t10, 10).unwrap();
        // An earlier instant: no time has passed since t10, and t10 stays the reference.
        assert_eq!(b.available(t0), 0);
        assert_eq!(b.try_take(t0 + ms(5_000), 1), Err(TakeError::RetryAt(t10 + ms(100))));
        assert_eq!(b.available(t10 + ms(500)), 5);
    }

    #[test]
    fn zero_rate_is_raised_to_one_per_second() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(0, 1, t0);
        b.try_take(t0, 1).unwrap();
        assert_eq!(b.try_take(t0, 1), Err(TakeError::RetryAt(t0 + Duration::from_secs(1))));
    }

    #[test]
    fn charge_runs_into_debt_and_repays_exactly() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10, 10, t0);
        assert_eq!(b.charge(t0, 4), Ok(None));
        // 6 held, 16 charged: 10 short, one second of refill.
        let repaid_at = t0 + Duration::from_secs(1);
        assert_eq!(b.charge(t0, 16), Ok(Some(repaid_at)));
        assert_eq!(b.available(repaid_at - NS), 0);
        // More charges during the debt push it later.
        assert_eq!(b.charge(t0 + ms(500), 5), Ok(Some(repaid_at + ms(500))));
        assert_eq!(b.available(repaid_at + ms(600)), 1);
        assert_eq!(b.charge(repaid_at + ms(600), 1), Ok(None));
    }

    #[test]
    fn unrepresentable_debt_is_never_and_takes_nothing() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(1, 10, t0);
        assert_eq!(b.charge(t0, u64::MAX), Err(TakeError::Never));
        assert_eq!(b.available(t0), 10);
    }
}
