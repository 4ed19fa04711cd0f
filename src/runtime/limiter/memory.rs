//! What a peer's budget was when its connection closed ([`LimiterMemory`]), so that
//! reconnecting does not buy a fresh burst or a clean strike record (the parent module doc,
//! "Memory across reconnects").
//!
//! A closed connection's [`PeerLimiter`] is remembered under its source address and, once it
//! authenticated, under its id: ids are free, addresses are not, and a peer changing one keeps
//! the other. A new connection starts from the stricter of a fresh budget, the one remembered
//! for its address, and, once authenticated, the one remembered for its id. A budget that is
//! full with no strike remembers nothing and is not kept. Memories last `retention` at most and
//! there are at most `capacity` of them; past it the oldest goes (counted).
//!
//! Loopback sources are remembered by id only: every node of a one-host devnet shares
//! 127.0.0.1, and one peer's debt must not pass to its neighbour.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::admission::IpKey;
use super::PeerLimiter;
use crate::identity::NodeId;

/// Under what a budget is remembered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// An IPv4 address or IPv6 /64.
    Ip(IpKey),
    /// An authenticated peer.
    Id(NodeId),
}

impl Source {
    /// The source for a connection from `ip`; `None` for loopback (see the module doc).
    pub fn of_ip(ip: IpAddr) -> Option<Source> {
        (!ip.to_canonical().is_loopback()).then(|| Source::Ip(IpKey::of(ip)))
    }
}

/// Budgets of closed connections, by source; bounded in count and age.
#[derive(Debug, Clone)]
pub struct LimiterMemory {
    remembered: HashMap<Source, (PeerLimiter, Instant)>,
    /// Sources in the order they were remembered; an entry whose instant no longer matches
    /// the map was remembered again since, and is skipped.
    order: VecDeque<(Source, Instant)>,
    capacity: usize,
    retention: Duration,
    /// Memories dropped at the capacity bound before their retention ran out.
    evicted: u64,
}

impl LimiterMemory {
    /// An empty memory of at most `capacity` budgets, each kept `retention`.
    pub fn new(capacity: usize, retention: Duration) -> LimiterMemory {
        LimiterMemory {
            remembered: HashMap::new(),
            order: VecDeque::new(),
            capacity,
            retention,
            evicted: 0,
        }
    }

    /// Remembers `limiter` under `source` at `now`, unless it remembers nothing (full budgets,
    /// no strike). It replaces an earlier memory of the same source.
    pub fn remember(&mut self, now: Instant, source: Source, limiter: &PeerLimiter) {
        if self.capacity == 0 || limiter.is_clean(now) {
            return;
        }
        self.expire(now);
        self.remembered.insert(source, (limiter.clone(), now));
        self.order.push_back((source, now));
        while self.remembered.len() > self.capacity {
            let Some((old, at)) = self.order.pop_front() else { break };
            if self.remembered.get(&old).is_some_and(|(_, saved)| *saved == at) {
                self.remembered.remove(&old);
                self.evicted += 1;
            }
        }
        // Stale order entries are dropped as they reach the front; keep the queue bounded.
        if self.order.len() > 2 * self.capacity.max(1) {
            let live = &self.remembered;
            self.order.retain(|(s, at)| live.get(s).is_some_and(|(_, saved)| saved == at));
        }
    }

    /// `current` or the budget remembered for `source`, whichever is stricter at `now`; the
    /// memory is taken (a later connection from the same source hears it from this one's
    /// close).
    pub fn stricter(&mut self, now: Instant, source: Source, current: PeerLimiter) -> PeerLimiter {
        self.expire(now);
        match self.remembered.remove(&source) {
            Some((old, _)) if old.is_stricter_than(&current, now) => old,
            _ => current,
        }
    }

    /// Budgets remembered now.
    pub fn len(&self) -> usize {
        self.remembered.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.remembered.is_empty()
    }

    /// Memories dropped at the capacity bound.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    fn expire(&mut self, now: Instant) {
        while let Some(&(source, at)) = self.order.front() {
            if now.saturating_duration_since(at) < self.retention {
                return;
            }
            self.order.pop_front();
            if self.remembered.get(&source).is_some_and(|(_, saved)| *saved == at) {
                self.remembered.remove(&source);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::limiter::{LimiterConfig, Verdict};

    const CONFIG: LimiterConfig = LimiterConfig {
        peer_frames_per_sec: 10,
        peer_frames_burst: 10,
        peer_bytes_per_sec: 1_000_000,
        peer_bytes_burst: 1_000_000,
        strike_window: Duration::from_secs(10),
        ..LimiterConfig::DEFAULT
    };

    fn ip(last: u8) -> Source {
        Source::of_ip(IpAddr::from([192, 0, 2, last])).unwrap()
    }

    /// A limiter that sent `frames` frames at `now`.
    fn spent(now: Instant, frames: u32) -> PeerLimiter {
        let mut l = PeerLimiter::new(&CONFIG, now);
        for _ in 0..frames {
            let _ = l.on_frame(now, 10);
        }
        l
    }

    #[test]
    fn a_reconnecting_peer_starts_where_it_left_off() {
        let t0 = Instant::now();
        let mut m = LimiterMemory::new(16, Duration::from_secs(60));
        // It spent its burst and earned a strike, then reconnected.
        let old = spent(t0, 11);
        assert_eq!(old.strikes(t0), 1);
        m.remember(t0, ip(1), &old);
        let fresh = PeerLimiter::new(&CONFIG, t0);
        let mut l = m.stricter(t0, ip(1), fresh);
        assert_eq!(l.strikes(t0), 1, "the strike stays");
        assert!(matches!(l.on_frame(t0, 10), Verdict::Slow { .. }), "no fresh burst");
        // Taken: the next connection hears of it from this one's close.
        assert!(m.is_empty());
    }

    #[test]
    fn a_clean_budget_is_not_kept_and_old_memories_expire() {
        let t0 = Instant::now();
        let mut m = LimiterMemory::new(16, Duration::from_secs(60));
        m.remember(t0, ip(1), &PeerLimiter::new(&CONFIG, t0));
        assert!(m.is_empty());
        m.remember(t0, ip(2), &spent(t0, 11));
        assert_eq!(m.len(), 1);
        let later = t0 + Duration::from_secs(60);
        let fresh = PeerLimiter::new(&CONFIG, later);
        assert_eq!(m.stricter(later, ip(2), fresh).strikes(later), 0);
        assert!(m.is_empty());
    }

    #[test]
    fn the_stricter_budget_wins_and_the_oldest_goes_at_the_bound() {
        let t0 = Instant::now();
        let mut m = LimiterMemory::new(2, Duration::from_secs(60));
        m.remember(t0, ip(1), &spent(t0, 5));
        m.remember(t0, ip(2), &spent(t0, 5));
        m.remember(t0, ip(3), &spent(t0, 5));
        assert_eq!((m.len(), m.evicted()), (2, 1));
        // A connection already in worse shape keeps its own budget.
        let worse = spent(t0, 11);
        assert_eq!(m.stricter(t0, ip(3), worse).strikes(t0), 1);
        // Evicted: nothing remembered for ip(1).
        let fresh = PeerLimiter::new(&CONFIG, t0);
        let l = m.stricter(t0, ip(1), fresh.clone());
        assert!(!l.is_stricter_than(&fresh, t0));
    }

    #[test]
    fn loopback_is_remembered_by_id_only() {
        assert_eq!(Source::of_ip(IpAddr::from([127, 0, 0, 1])), None);
        assert!(Source::of_ip("::1".parse().unwrap()).is_none());
        assert!(Source::of_ip(IpAddr::from([10, 0, 0, 1])).is_some());
    }
}
