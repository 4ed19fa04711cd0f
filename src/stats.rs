//! Nearest-rank percentiles, the one definition every report uses (`petrel bench`, `devnet`,
//! `sim`). The nearest-rank p-th percentile of n sorted values is the value at rank
//! ⌈p/100 · n⌉ (1-based): the smallest value with at least p % of the values at or below it.
//! It is always one of the measured values, never an interpolation.
//!
//! [`Histogram`] is the other shape a measure takes: counts in fixed buckets, kept by a sans-IO
//! core as it goes (a bounded array, never the values themselves) and exported as a Prometheus
//! histogram.

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

/// Counts of observations in fixed buckets, with their number and sum: the shape of a
/// Prometheus histogram, in integers (the unit is the caller's, for example microseconds), so it
/// is exact, `Eq` and costs `N + 3` words whatever the number of observations (the bounds are
/// shared: every node of a simulation keeps 16 of these).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Histogram<const N: usize> {
    /// Upper bounds of the buckets, ascending; a value above the last counts only in `count`.
    pub bounds: &'static [u64; N],
    /// Observations per bucket: `counts[i]` holds those in `(bounds[i-1], bounds[i]]` (not
    /// cumulative; [`Histogram::cumulative`] gives the exported form).
    pub counts: [u64; N],
    /// Observations in all, those above the last bound included.
    pub count: u64,
    /// Sum of the observed values (saturating).
    pub sum: u64,
}

impl<const N: usize> Histogram<N> {
    /// An empty histogram over `bounds` (ascending).
    pub const fn new(bounds: &'static [u64; N]) -> Histogram<N> {
        Histogram { bounds, counts: [0; N], count: 0, sum: 0 }
    }

    /// Counts `value` in the first bucket whose bound is at least `value`.
    pub fn observe(&mut self, value: u64) {
        if let Some(i) = self.bounds.iter().position(|&b| value <= b) {
            self.counts[i] += 1;
        }
        self.count += 1;
        self.sum = self.sum.saturating_add(value);
    }

    /// `(bound, observations at or below it)` per bucket, ascending, as Prometheus's `le`
    /// buckets are (the `+Inf` bucket is `count`).
    pub fn cumulative(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.bounds.iter().zip(self.counts.iter()).scan(0u64, |total, (&bound, &n)| {
            *total += n;
            Some((bound, *total))
        })
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
    fn histogram_counts_each_value_in_its_first_fitting_bucket() {
        let mut h = Histogram::new(&[10, 20, 50]);
        for v in [0, 10, 11, 20, 50, 51, 1_000] {
            h.observe(v);
        }
        // 0 and 10 in the first bucket, 11 and 20 in the second, 50 in the third; 51 and
        // 1,000 are above every bound and count only in the total.
        assert_eq!(h.counts, [2, 2, 1]);
        assert_eq!((h.count, h.sum), (7, 1_142));
        assert_eq!(h.cumulative().collect::<Vec<_>>(), vec![(10, 2), (20, 4), (50, 5)]);
        h.observe(u64::MAX);
        assert_eq!((h.count, h.sum), (8, u64::MAX), "the sum saturates");
    }

    #[test]
    fn spread_sorts_its_input_and_is_zero_when_empty() {
        let s = Spread::of(vec![4.0, 1.0, 3.0, 2.0]);
        assert_eq!(s, Spread { p50: 2.0, p90: 4.0, p99: 4.0, max: 4.0 });
        assert_eq!(Spread::of(Vec::new()), Spread::default());
    }
}
