//! New-connection admission (the parent module doc, "Connection admission"): an inbound
//! connection takes one token from the node-wide connection bucket and one from the bucket of
//! its source, an IPv4 address or an IPv6 /64 ([`IpKey`]). [`Admission`] owns both, the
//! bounded map of tracked sources with its eviction rule, and the refusal counters;
//! [`GlobalLimiter`](super::GlobalLimiter) answers `admit_connection` through it.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::time::Instant;

use super::{LimiterConfig, LimiterStats, TokenBucket};

/// The node-wide and per-source new-connection budgets, and the sources being tracked.
#[derive(Debug, Clone)]
pub(super) struct Admission {
    new_conns: TokenBucket,
    per_ip: HashMap<IpKey, IpEntry>,
    per_ip_conns_per_sec: u64,
    per_ip_conns_burst: u64,
    max_tracked_ips: usize,
    /// Connections refused by the node-wide budget.
    global_refusals: u64,
    /// Connections refused by their source's budget.
    per_ip_refusals: u64,
    /// Sources evicted to make room for another.
    ip_evictions: u64,
}

impl Admission {
    /// Full budgets per `config`, tracking no source yet. A `max_tracked_ips` of zero is
    /// treated as one.
    pub(super) fn new(config: &LimiterConfig, now: Instant) -> Admission {
        Admission {
            new_conns: TokenBucket::new(config.new_conns_per_sec, config.new_conns_burst, now),
            per_ip: HashMap::new(),
            per_ip_conns_per_sec: config.per_ip_conns_per_sec,
            per_ip_conns_burst: config.per_ip_conns_burst,
            max_tracked_ips: config.max_tracked_ips.max(1),
            global_refusals: 0,
            per_ip_refusals: 0,
            ip_evictions: 0,
        }
    }

    /// Admits a new inbound connection from `ip`, or says which budget refused it. A refusal
    /// by the source's bucket takes no node-wide token.
    pub(super) fn admit(&mut self, now: Instant, ip: IpAddr) -> Result<(), AdmitError> {
        let key = IpKey::of(ip);
        let entry = self.track(now, key);
        entry.last_seen_at = entry.last_seen_at.max(now);
        if entry.bucket.available(now) == 0 {
            self.per_ip_refusals += 1;
            return Err(AdmitError::PerIpRate);
        }
        if self.new_conns.try_take(now, 1).is_err() {
            self.global_refusals += 1;
            return Err(AdmitError::GlobalRate);
        }
        if let Some(entry) = self.per_ip.get_mut(&key) {
            // The entry held a token (checked above) and nothing took it since: this succeeds.
            let _ = entry.bucket.try_take(now, 1);
        }
        Ok(())
    }

    /// The admission counters; the byte-budget counters are left at zero for the caller.
    pub(super) fn stats(&self) -> LimiterStats {
        LimiterStats {
            global_refusals: self.global_refusals,
            per_ip_refusals: self.per_ip_refusals,
            tracked_ips: self.per_ip.len(),
            ip_evictions: self.ip_evictions,
            ..LimiterStats::default()
        }
    }

    /// The entry for `key`, created full (after making room) if it is not tracked.
    fn track(&mut self, now: Instant, key: IpKey) -> &mut IpEntry {
        if !self.per_ip.contains_key(&key) && self.per_ip.len() >= self.max_tracked_ips {
            self.evict_one(now);
        }
        let (rate, burst) = (self.per_ip_conns_per_sec, self.per_ip_conns_burst);
        self.per_ip.entry(key).or_insert_with(|| IpEntry {
            bucket: TokenBucket::new(rate, burst, now),
            last_seen_at: now,
        })
    }

    /// Evicts an idle entry if there is one, else the least recently seen; ties go to the
    /// lowest key, so the choice is deterministic.
    fn evict_one(&mut self, now: Instant) {
        let victim = self
            .per_ip
            .iter()
            .min_by_key(|(key, entry)| (!entry.bucket.is_full(now), entry.last_seen_at, **key))
            .map(|(key, _)| *key);
        if let Some(key) = victim {
            self.per_ip.remove(&key);
            self.ip_evictions += 1;
        }
    }
}

/// Why an inbound connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdmitError {
    /// The node-wide new-connection budget is spent.
    GlobalRate,
    /// The source address (IPv4 address or IPv6 /64) has spent its new-connection budget.
    PerIpRate,
}

impl fmt::Display for AdmitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::GlobalRate => f.write_str("too many new inbound connections"),
            Self::PerIpRate => f.write_str("too many new inbound connections from this address"),
        }
    }
}

impl std::error::Error for AdmitError {}

/// One tracked source.
#[derive(Debug, Clone)]
struct IpEntry {
    bucket: TokenBucket,
    last_seen_at: Instant,
}

/// A connection source: an IPv4 address, or an IPv6 /64 prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum IpKey {
    /// An IPv4 address (an IPv4-mapped IPv6 address counts as its IPv4 address).
    V4([u8; 4]),
    /// The first 64 bits of an IPv6 address.
    V6Prefix([u8; 8]),
}

impl IpKey {
    /// The source `ip` counts as.
    pub fn of(ip: IpAddr) -> IpKey {
        match ip {
            IpAddr::V4(v4) => IpKey::V4(v4.octets()),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpKey::V4(v4.octets()),
                None => {
                    let mut prefix = [0u8; 8];
                    prefix.copy_from_slice(&v6.octets()[..8]);
                    IpKey::V6Prefix(prefix)
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::limiter::tests::ms;
    use crate::runtime::limiter::GlobalLimiter;
    use std::net::{Ipv4Addr, Ipv6Addr};
    use std::time::Duration;

    const ADMIT_TEMPLATE: LimiterConfig = LimiterConfig {
        new_conns_per_sec: 100,
        new_conns_burst: 100,
        per_ip_conns_per_sec: 1,
        per_ip_conns_burst: 2,
        max_tracked_ips: 16,
        ..LimiterConfig::DEFAULT
    };

    fn v4(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, last))
    }

    #[test]
    fn admission_is_limited_globally() {
        let t0 = Instant::now();
        let config = LimiterConfig { new_conns_per_sec: 2, new_conns_burst: 3, ..ADMIT_TEMPLATE };
        let mut global = GlobalLimiter::new(&config, t0);
        for i in 0..3 {
            assert_eq!(global.admit_connection(t0, v4(i)), Ok(()));
        }
        assert_eq!(global.admit_connection(t0, v4(3)), Err(AdmitError::GlobalRate));
        assert_eq!(global.admit_connection(t0 + ms(499), v4(3)), Err(AdmitError::GlobalRate));
        assert_eq!(global.admit_connection(t0 + ms(500), v4(3)), Ok(()));
        assert_eq!(global.stats().global_refusals, 2);
    }

    #[test]
    fn per_ip_limit_is_independent_across_ips() {
        let t0 = Instant::now();
        let mut global = GlobalLimiter::new(&ADMIT_TEMPLATE, t0);
        assert_eq!(global.admit_connection(t0, v4(1)), Ok(()));
        assert_eq!(global.admit_connection(t0, v4(1)), Ok(()));
        assert_eq!(global.admit_connection(t0, v4(1)), Err(AdmitError::PerIpRate));
        assert_eq!(global.admit_connection(t0, v4(2)), Ok(()));
        assert_eq!(global.admit_connection(t0 + Duration::from_secs(1), v4(1)), Ok(()));
        assert_eq!(global.stats().per_ip_refusals, 1);
    }

    #[test]
    fn per_ip_refusal_spends_no_global_token() {
        let t0 = Instant::now();
        let config = LimiterConfig { new_conns_per_sec: 1, new_conns_burst: 3, ..ADMIT_TEMPLATE };
        let mut global = GlobalLimiter::new(&config, t0);
        for _ in 0..10 {
            let _ = global.admit_connection(t0, v4(1));
        }
        assert_eq!(global.admit_connection(t0, v4(2)), Ok(()));
        assert_eq!(global.stats().per_ip_refusals, 8);
    }

    #[test]
    fn ipv6_addresses_in_one_slash_64_share_a_bucket() {
        let t0 = Instant::now();
        let mut global = GlobalLimiter::new(&ADMIT_TEMPLATE, t0);
        let host = |low: u16| IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 2, 0, 0, 0, low));
        assert_eq!(global.admit_connection(t0, host(1)), Ok(()));
        assert_eq!(global.admit_connection(t0, host(2)), Ok(()));
        assert_eq!(global.admit_connection(t0, host(3)), Err(AdmitError::PerIpRate));
        let next_prefix = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 3, 0, 0, 0, 1));
        assert_eq!(global.admit_connection(t0, next_prefix), Ok(()));
        assert_eq!(global.stats().tracked_ips, 2);
    }

    #[test]
    fn ipv4_mapped_ipv6_counts_as_the_ipv4_address() {
        let t0 = Instant::now();
        let mut global = GlobalLimiter::new(&ADMIT_TEMPLATE, t0);
        let mapped = IpAddr::V6(Ipv4Addr::new(192, 0, 2, 1).to_ipv6_mapped());
        assert_eq!(global.admit_connection(t0, v4(1)), Ok(()));
        assert_eq!(global.admit_connection(t0, mapped), Ok(()));
        assert_eq!(global.admit_connection(t0, v4(1)), Err(AdmitError::PerIpRate));
        assert_eq!(global.stats().tracked_ips, 1);
    }

    #[test]
    fn ip_map_is_bounded_and_evicts_idle_sources_first() {
        let t0 = Instant::now();
        let config = LimiterConfig { max_tracked_ips: 3, ..ADMIT_TEMPLATE };
        let mut global = GlobalLimiter::new(&config, t0);
        global.admit_connection(t0, v4(1)).unwrap(); // idle again after one second
        global.admit_connection(t0 + ms(500), v4(2)).unwrap();
        global.admit_connection(t0 + ms(500), v4(2)).unwrap(); // spent: busy
        global.admit_connection(t0 + ms(900), v4(3)).unwrap(); // busy until t0 + 1.9 s
        global.admit_connection(t0 + ms(1_500), v4(4)).unwrap();
        // v4(1), the only idle source, was evicted; v4(2) (least recently seen) kept its state.
        assert_eq!(global.stats().ip_evictions, 1);
        assert_eq!(global.stats().tracked_ips, 3);
        assert_eq!(global.admit_connection(t0 + ms(1_500), v4(2)), Ok(()));
        assert_eq!(global.admit_connection(t0 + ms(1_500), v4(2)), Err(AdmitError::PerIpRate));
    }

    #[test]
    fn ip_map_evicts_least_recently_seen_when_none_is_idle() {
        let t0 = Instant::now();
        let config = LimiterConfig { max_tracked_ips: 2, ..ADMIT_TEMPLATE };
        let mut global = GlobalLimiter::new(&config, t0);
        global.admit_connection(t0, v4(1)).unwrap();
        global.admit_connection(t0 + ms(1), v4(2)).unwrap();
        global.admit_connection(t0 + ms(2), v4(1)).unwrap(); // v4(1) now most recent
        global.admit_connection(t0 + ms(3), v4(3)).unwrap();
        assert_eq!(global.stats().ip_evictions, 1);
        // v4(1) is still tracked with its bucket spent; v4(2) was forgotten and starts full.
        assert_eq!(global.admit_connection(t0 + ms(4), v4(1)), Err(AdmitError::PerIpRate));
        assert_eq!(global.stats().ip_evictions, 1);
        assert_eq!(global.admit_connection(t0 + ms(5), v4(2)), Ok(()));
        assert_eq!(global.stats().ip_evictions, 2);
        assert_eq!(global.stats().tracked_ips, 2);
    }
}
