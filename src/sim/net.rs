//! The simulated network's link model: per-link latency and node addresses.
//!
//! A link's latency is a pure function of `(seed, the two endpoints)` (a hash mix, not a
//! shared generator), so adding a node or a link never shifts any other link's latency, and
//! it stays constant for the link's life. Loss and partitions live in the driver
//! ([`super::Sim`]); they need the run's state.
//!
//! Addresses: node `i` listens on `10.a.b.c:4000`, where `a.b.c` is `i` passed through a
//! bijection of the 24-bit space keyed from the simulation's generator. Addresses are unique
//! without a lookup, spread over many /24s (routing tables limit peers per /24), and
//! reproducible from the seed. Node `i >= 2^24` uses port `4000 + i / 2^24`.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use crate::rng::Rng;

/// One-way latency of simulated links.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LatencyModel {
    /// Every link has this latency.
    Fixed(Duration),
    /// Each link draws its latency uniformly from `min..=max` (nanosecond grain), once.
    Uniform {
        /// Shortest latency.
        min: Duration,
        /// Longest latency.
        max: Duration,
    },
    /// `matrix[from][to]` by node index, one-way and possibly asymmetric. Pairs outside the
    /// matrix (and unresolvable addresses) get [`MATRIX_FALLBACK`].
    Matrix(Vec<Vec<Duration>>),
    /// Each endpoint sits at a seeded point of the unit square, and a link's one-way latency
    /// is `min` plus the points' distance scaled so the square's diagonal costs `max`. Near
    /// nodes are fast and far ones slow, consistently (the triangle inequality holds), which
    /// gives adaptive peer selection something real to learn, unlike `Uniform`.
    Plane {
        /// Latency between two nodes at the same point.
        min: Duration,
        /// Latency across the diagonal.
        max: Duration,
    },
}

impl LatencyModel {
    /// One-way latency from endpoint `from` to `to`. Endpoints are node indices, or for an
    /// address that resolves to no node, [`unresolved_endpoint`] of it.
    pub fn one_way(&self, seed: u64, from: u64, to: u64) -> Duration {
        match self {
            Self::Fixed(d) => *d,
            Self::Uniform { min, max } => {
                let (lo, hi) = if min <= max { (*min, *max) } else { (*max, *min) };
                let span = u64::try_from((hi - lo).as_nanos()).unwrap_or(u64::MAX);
                let draw = mix(seed, from.min(to), from.max(to)) % span.saturating_add(1).max(1);
                lo + Duration::from_nanos(draw)
            }
            Self::Matrix(m) => usize::try_from(from)
                .ok()
                .zip(usize::try_from(to).ok())
                .and_then(|(f, t)| m.get(f)?.get(t).copied())
                .unwrap_or(MATRIX_FALLBACK),
            Self::Plane { min, max } => {
                let (lo, hi) = if min <= max { (*min, *max) } else { (*max, *min) };
                let (a, b) = (point(seed, from), point(seed, to));
                let dist = ((a.0 - b.0).powi(2) + (a.1 - b.1).powi(2)).sqrt();
                lo + (hi - lo).mul_f64(dist / std::f64::consts::SQRT_2)
            }
        }
    }
}

/// Endpoint `i`'s place on the unit square under `seed`.
fn point(seed: u64, i: u64) -> (f64, f64) {
    let unit = |v: u64| (v >> 11) as f64 / (1u64 << 53) as f64;
    (unit(mix(seed, i, 0x706c_616e_6578)), unit(mix(seed, i, 0x706c_616e_6579)))
}

/// The latency endpoint of an address no node has: above every node index.
pub fn unresolved_endpoint(addr: &SocketAddr) -> u64 {
    let (ip, port) = match addr {
        SocketAddr::V4(a) => (u64::from(u32::from(*a.ip())), a.port()),
        SocketAddr::V6(a) => (mix(0, u128::from(*a.ip()) as u64, 6), a.port()),
    };
    (1 << 63) | mix(ip, u64::from(port), 0) >> 1
}

/// Hands out node addresses (see the module doc).
#[derive(Debug, Clone)]
pub struct AddrPlan {
    keys: [u32; 4],
}

impl AddrPlan {
    /// A plan keyed by four draws from `rng`.
    pub fn new(rng: &mut Rng) -> AddrPlan {
        let mut key = || rng.next_u64() as u32 & MASK_24;
        AddrPlan { keys: [key() | 1, key(), key() | 1, key()] }
    }

    /// The listen address of node `index`.
    pub fn addr(&self, index: usize) -> SocketAddr {
        let v = self.permute(index as u32 & MASK_24);
        let [_, a, b, c] = v.to_be_bytes();
        let port = 4000u16.wrapping_add(((index as u64) >> 24) as u16);
        SocketAddr::from((Ipv4Addr::new(10, a, b, c), port))
    }

    /// A bijection of `0..2^24`: odd multiplications, additions, and xor-shifts are each
    /// invertible modulo 2^24.
    fn permute(&self, v: u32) -> u32 {
        let [m1, k1, m2, k2] = self.keys;
        let mut v = v.wrapping_mul(m1).wrapping_add(k1) & MASK_24;
        v ^= v >> 12;
        v = v.wrapping_mul(m2).wrapping_add(k2) & MASK_24;
        v ^ (v >> 11)
    }
}

/// SplitMix64's finaliser over three words: a keyed hash for per-link draws.
pub fn mix(seed: u64, a: u64, b: u64) -> u64 {
    let mut z = seed;
    for w in [a, b] {
        z = fmix(z ^ fmix(w.wrapping_add(0x9e37_79b9_7f4a_7c15)));
    }
    z
}

fn fmix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Latency of a pair missing from a [`LatencyModel::Matrix`].
pub const MATRIX_FALLBACK: Duration = Duration::from_millis(100);
const MASK_24: u32 = (1 << 24) - 1;

#[cfg(test)]
mod tests {
    #[test]
    fn the_plane_model_is_symmetric_bounded_and_keeps_the_triangle_inequality() {
        let model =
            LatencyModel::Plane { min: Duration::from_millis(5), max: Duration::from_millis(105) };
        let l = |a: u64, b: u64| model.one_way(7, a, b);
        let mut spread = (Duration::MAX, Duration::ZERO);
        for a in 0..40 {
            assert_eq!(l(a, a), Duration::from_millis(5));
            for b in 0..40 {
                assert_eq!(l(a, b), l(b, a));
                assert!(
                    l(a, b) >= Duration::from_millis(5) && l(a, b) <= Duration::from_millis(105)
                );
                spread = (spread.0.min(l(a, b)), spread.1.max(l(a, b)));
                for c in 0..40 {
                    // Distances obey it; the constant `min` on each leg only adds slack.
                    assert!(l(a, c) <= l(a, b) + l(b, c) + Duration::from_micros(1));
                }
            }
        }
        // Points spread over the square: both near and far pairs exist.
        assert!(spread.1 - spread.0 > Duration::from_millis(60), "{spread:?}");
        // Another seed places the nodes elsewhere.
        assert_ne!(model.one_way(7, 1, 2), model.one_way(8, 1, 2));
    }

    use std::collections::BTreeSet;

    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn uniform_latency_is_symmetric_stable_and_in_range() {
        let model = LatencyModel::Uniform { min: 10 * MS, max: 30 * MS };
        let mut seen = BTreeSet::new();
        for b in 1..200 {
            let d = model.one_way(5, 0, b);
            assert!((10 * MS..=30 * MS).contains(&d), "{d:?}");
            assert_eq!(d, model.one_way(5, b, 0));
            assert_eq!(d, model.one_way(5, 0, b));
            seen.insert(d);
        }
        assert!(seen.len() > 150, "latencies vary: {}", seen.len());
        assert_ne!(model.one_way(5, 0, 1), model.one_way(6, 0, 1));
        // Reversed bounds are read as a range; an empty range is a fixed latency.
        let reversed = LatencyModel::Uniform { min: 30 * MS, max: 10 * MS };
        assert!((10 * MS..=30 * MS).contains(&reversed.one_way(1, 2, 3)));
        let point = LatencyModel::Uniform { min: 7 * MS, max: 7 * MS };
        assert_eq!(point.one_way(1, 2, 3), 7 * MS);
    }

    #[test]
    fn matrix_latency_is_directional_with_a_fallback() {
        let model = LatencyModel::Matrix(vec![vec![MS, 2 * MS], vec![3 * MS, MS]]);
        assert_eq!(model.one_way(0, 0, 1), 2 * MS);
        assert_eq!(model.one_way(0, 1, 0), 3 * MS);
        assert_eq!(model.one_way(0, 1, 7), MATRIX_FALLBACK);
        let far = unresolved_endpoint(&SocketAddr::from(([192, 0, 2, 1], 1)));
        assert_eq!(model.one_way(0, 0, far), MATRIX_FALLBACK);
        assert_eq!(LatencyModel::Fixed(4 * MS).one_way(9, 0, far), 4 * MS);
    }

    #[test]
    fn addresses_are_unique_spread_and_seeded() {
        let plan = AddrPlan::new(&mut Rng::new(1));
        let addrs: Vec<SocketAddr> = (0..20_000).map(|i| plan.addr(i)).collect();
        let unique: BTreeSet<_> = addrs.iter().collect();
        assert_eq!(unique.len(), addrs.len());
        let slash24: BTreeSet<_> = addrs
            .iter()
            .map(|a| match a {
                SocketAddr::V4(a) => {
                    let o = a.ip().octets();
                    assert_eq!((o[0], a.port()), (10, 4000));
                    (o[1], o[2])
                }
                SocketAddr::V6(_) => panic!("v4 only"),
            })
            .collect();
        assert!(slash24.len() > 10_000, "{} /24s", slash24.len());
        assert_eq!(plan.addr(3), AddrPlan::new(&mut Rng::new(1)).addr(3));
        assert_ne!(plan.addr(3), AddrPlan::new(&mut Rng::new(2)).addr(3));
        assert_ne!(plan.addr(1 << 24), plan.addr(0));
    }
}
