//! The node-wide budgets: [`GlobalLimiter`] holds the inbound and outbound byte buckets that
//! every socket read and write draws on, and the new-connection admission of `admission.rs`,
//! and gathers the counters of both into one [`LimiterStats`] (the parent module doc, "Token
//! accounting" and "Connection admission").

use std::net::IpAddr;
use std::time::Instant;

use super::admission::Admission;
use super::{AdmitError, LimiterConfig, LimiterStats, TakeError, TokenBucket};

/// The node-wide budgets: inbound and outbound bytes, and new inbound connections, globally
/// and per source address.
#[derive(Debug, Clone)]
pub struct GlobalLimiter {
    inbound_bytes: TokenBucket,
    outbound_bytes: TokenBucket,
    admission: Admission,
    /// [`LimiterStats::inbound_refusals`].
    inbound_refusals: u64,
    /// [`LimiterStats::outbound_refusals`].
    outbound_refusals: u64,
}

impl GlobalLimiter {
    /// Full budgets per `config`, tracking no source yet. A `max_tracked_ips` of zero is
    /// treated as one.
    pub fn new(config: &LimiterConfig, now: Instant) -> GlobalLimiter {
        let bucket = |rate, burst| TokenBucket::new(rate, burst, now);
        GlobalLimiter {
            inbound_bytes: bucket(
                config.global_inbound_bytes_per_sec,
                config.global_inbound_bytes_burst,
            ),
            outbound_bytes: bucket(
                config.global_outbound_bytes_per_sec,
                config.global_outbound_bytes_burst,
            ),
            admission: Admission::new(config, now),
            inbound_refusals: 0,
            outbound_refusals: 0,
        }
    }

    /// Takes `n` bytes of the global inbound budget, or says when to retry (see
    /// [`TokenBucket::try_take`]). Call before reading `n` bytes from any socket.
    pub fn try_inbound(&mut self, now: Instant, n: u64) -> Result<(), TakeError> {
        let result = self.inbound_bytes.try_take(now, n);
        if result.is_err() {
            self.inbound_refusals += 1;
        }
        result
    }

    /// Takes `n` bytes of the global outbound budget, or says when to retry (see
    /// [`TokenBucket::try_take`]). Call before writing `n` bytes to any socket.
    pub fn try_outbound(&mut self, now: Instant, n: u64) -> Result<(), TakeError> {
        let result = self.outbound_bytes.try_take(now, n);
        if result.is_err() {
            self.outbound_refusals += 1;
        }
        result
    }

    /// Charges `n` bytes already read to the global inbound budget. `Some(at)`: the budget is
    /// in debt and no socket may be read before `at` (see [`TokenBucket::charge`]).
    pub fn charge_inbound(&mut self, now: Instant, n: u64) -> Option<Instant> {
        let paused = self.inbound_bytes.charge(now, n).unwrap_or(None);
        if paused.is_some() {
            self.inbound_refusals += 1;
        }
        paused
    }

    /// Charges `n` bytes already written to the global outbound budget. `Some(at)`: no socket
    /// may be written before `at`.
    pub fn charge_outbound(&mut self, now: Instant, n: u64) -> Option<Instant> {
        let paused = self.outbound_bytes.charge(now, n).unwrap_or(None);
        if paused.is_some() {
            self.outbound_refusals += 1;
        }
        paused
    }

    /// Admits a new inbound connection from `ip`, or says which budget refused it. Call once
    /// per accepted socket, before the TLS handshake; close the socket on `Err`.
    pub fn admit_connection(&mut self, now: Instant, ip: IpAddr) -> Result<(), AdmitError> {
        self.admission.admit(now, ip)
    }

    /// Counters for the metrics layer.
    pub fn stats(&self) -> LimiterStats {
        LimiterStats {
            inbound_refusals: self.inbound_refusals,
            outbound_refusals: self.outbound_refusals,
            ..self.admission.stats()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::limiter::tests::ms;

    #[test]
    fn inbound_and_outbound_budgets_are_separate() {
        let t0 = Instant::now();
        let config = LimiterConfig {
            global_inbound_bytes_per_sec: 100,
            global_inbound_bytes_burst: 100,
            global_outbound_bytes_per_sec: 50,
            global_outbound_bytes_burst: 50,
            ..LimiterConfig::DEFAULT
        };
        let mut global = GlobalLimiter::new(&config, t0);
        assert_eq!(global.try_inbound(t0, 100), Ok(()));
        assert_eq!(global.try_outbound(t0, 50), Ok(()));
        assert_eq!(global.try_inbound(t0, 10), Err(TakeError::RetryAt(t0 + ms(100))));
        assert_eq!(global.try_outbound(t0, 10), Err(TakeError::RetryAt(t0 + ms(200))));
        assert_eq!(global.try_outbound(t0, 51), Err(TakeError::Never));
        let stats = global.stats();
        assert_eq!((stats.inbound_refusals, stats.outbound_refusals), (1, 2));
    }
}
