//! Nearest-rank percentiles, the one definition every report uses (`petrel bench`, `devnet`,
//! `sim`). The nearest-rank p-th percentile of n sorted values is the value at rank
//! ⌈p/100 · n⌉ (1-based): the smallest value with at least p % of the values at or below it.
//! It is always one of the measured values, never an interpolation.

/// The nearest-rank `p`-th percentile of `sorted` (ascending), `None` when it is empty. `p`
/// outside 0..=100 is clamped to the ends: `p <= 0` gives the smallest value.
pub fn percentile<T: Copy>(sorted: &[T], p: f64) -> Option<T> {
    let n = sorted.len();
    if n == 0 {
        return None;
    }
    // The float-to-int cast saturates (NaN gives 0), so any `p` lands on a valid rank.
    let rank = ((p / 100.0) * n as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, n) - 1])
}

/// The median, 90th and 99th percentiles and the largest of a set of measures.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Spread {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest.
    pub max: f64,
}

impl Spread {
    /// The spread of `values` (any order); all zero when there are none.
    pub fn of(mut values: Vec<f64>) -> Spread {
        values.sort_by(f64::total_cmp);
        let at = |p: f64| percentile(&values, p).unwrap_or(0.0);
        Spread { p50: at(50.0), p90: at(90.0), p99: at(99.0), max: at(100.0) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<u64> = (1..=10).collect();
        assert_eq!(percentile(&v, 50.0), Some(5));
        assert_eq!(percentile(&v, 90.0), Some(9));
        assert_eq!(percentile(&v, 99.0), Some(10));
        assert_eq!(percentile(&v, 100.0), Some(10));
        assert_eq!(percentile(&v, 0.0), Some(1));
        assert_eq!(percentile::<u64>(&[], 50.0), None);
    }

    #[test]
    fn percentile_clamps_out_of_range_p() {
        let v = [3, 7, 9];
        assert_eq!(percentile(&v, -5.0), Some(3));
        assert_eq!(percentile(&v, 250.0), Some(9));
        assert_eq!(percentile(&v, f64::NAN), Some(3));
        assert_eq!(percentile(&[42], 50.0), Some(42));
    }

    #[test]
    fn spread_sorts_its_input_and_is_zero_when_empty() {
        let s = Spread::of(vec![4.0, 1.0, 3.0, 2.0]);
        assert_eq!(s, Spread { p50: 2.0, p90: 4.0, p99: 4.0, max: 4.0 });
        assert_eq!(Spread::of(Vec::new()), Spread::default());
    }
}
