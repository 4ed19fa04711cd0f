//! A thin builder over the `prometheus` crate's data model: metric families built from values
//! the node already holds, encoded by the crate's `TextEncoder`.
//!
//! The crate's own metric types (`IntCounter`, `Histogram`) count as they go; ours are read
//! from a [`Snapshot`](crate::Snapshot) whose figures are absolute and whose histograms come
//! already bucketed, so the families are built directly. Every family has at least one sample
//! (the encoder refuses an empty one) and a HELP text.

use prometheus::proto::{self, MetricFamily, MetricType};
use prometheus::{Encoder, TextEncoder};

use crate::stats::Histogram;

/// Metric families in the order they were added.
#[derive(Debug, Default)]
pub(super) struct Families {
    list: Vec<MetricFamily>,
}

impl Families {
    /// A counter with one sample and no labels.
    pub fn counter(&mut self, name: &str, help: &str, value: u64) {
        self.counters(name, help, [([], value)]);
    }

    /// A counter with one sample per label set; every set names the same `K` labels.
    pub fn counters<'a, const K: usize>(
        &mut self,
        name: &str,
        help: &str,
        samples: impl IntoIterator<Item = ([(&'a str, &'a str); K], u64)>,
    ) {
        let metrics = samples.into_iter().map(|(labels, value)| {
            let mut counter = proto::Counter::default();
            counter.set_value(value as f64);
            let mut m = metric(&labels);
            m.set_counter(counter);
            m
        });
        self.push(name, help, MetricType::COUNTER, metrics.collect());
    }

    /// A gauge with one sample and no labels.
    pub fn gauge(&mut self, name: &str, help: &str, value: u64) {
        self.gauges(name, help, [([], value)]);
    }

    /// A gauge with one sample per label set.
    pub fn gauges<'a, const K: usize>(
        &mut self,
        name: &str,
        help: &str,
        samples: impl IntoIterator<Item = ([(&'a str, &'a str); K], u64)>,
    ) {
        let metrics = samples.into_iter().map(|(labels, value)| {
            let mut gauge = proto::Gauge::default();
            gauge.set_value(value as f64);
            let mut m = metric(&labels);
            m.set_gauge(gauge);
            m
        });
        self.push(name, help, MetricType::GAUGE, metrics.collect());
    }

    /// A histogram with one sample per label set. Bounds and sum are divided by `unit`, so a
    /// histogram kept in microseconds is exported in seconds with `unit` 1e6.
    pub fn histograms<'a, const K: usize, const N: usize>(
        &mut self,
        name: &str,
        help: &str,
        unit: f64,
        samples: impl IntoIterator<Item = ([(&'a str, &'a str); K], &'a Histogram<N>)>,
    ) {
        let metrics = samples.into_iter().map(|(labels, h)| {
            let buckets = h.cumulative().map(|(bound, count)| {
                let mut b = proto::Bucket::default();
                b.set_upper_bound(bound as f64 / unit);
                b.set_cumulative_count(count);
                b
            });
            let mut histogram = proto::Histogram::default();
            histogram.set_bucket(buckets.collect());
            histogram.set_sample_count(h.count);
            histogram.set_sample_sum(h.sum as f64 / unit);
            let mut m = metric(&labels);
            m.set_histogram(histogram);
            m
        });
        self.push(name, help, MetricType::HISTOGRAM, metrics.collect());
    }

    /// The text exposition format (version 0.0.4) of every family.
    pub fn encode(&self) -> Result<String, prometheus::Error> {
        let mut out = Vec::new();
        TextEncoder::new().encode(&self.list, &mut out)?;
        // The encoder writes only the UTF-8 it was given (names, escaped help and labels).
        String::from_utf8(out).map_err(|e| prometheus::Error::Msg(e.to_string()))
    }

    /// The families so far, for tests.
    #[cfg(test)]
    pub fn list(&self) -> &[MetricFamily] {
        &self.list
    }

    fn push(&mut self, name: &str, help: &str, kind: MetricType, metrics: Vec<proto::Metric>) {
        let mut family = MetricFamily::default();
        family.set_name(name.to_string());
        family.set_help(help.to_string());
        family.set_field_type(kind);
        family.set_metric(metrics);
        self.list.push(family);
    }
}

fn metric(labels: &[(&str, &str)]) -> proto::Metric {
    let pairs = labels.iter().map(|(name, value)| {
        let mut pair = proto::LabelPair::default();
        pair.set_name(name.to_string());
        pair.set_value(value.to_string());
        pair
    });
    let mut m = proto::Metric::default();
    m.set_label(pairs.collect());
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_gauges_and_histograms_encode_as_exposition_text() {
        let mut f = Families::default();
        f.counter("t_frames_total", "Frames.", 3);
        f.gauges("t_conns", "Connections \"now\".", [([("dir", "in")], 1), ([("dir", "out")], 2)]);
        let mut h = Histogram::new(&[5_000, 1_000_000]);
        h.observe(4_000);
        h.observe(2_000_000);
        f.histograms("t_seconds", "Durations.", 1e6, [([("kind", "get")], &h)]);
        let text = f.encode().unwrap();
        let expected = "\
# HELP t_frames_total Frames.
# TYPE t_frames_total counter
t_frames_total 3
# HELP t_conns Connections \"now\".
# TYPE t_conns gauge
t_conns{dir=\"in\"} 1
t_conns{dir=\"out\"} 2
# HELP t_seconds Durations.
# TYPE t_seconds histogram
t_seconds_bucket{kind=\"get\",le=\"0.005\"} 1
t_seconds_bucket{kind=\"get\",le=\"1\"} 1
t_seconds_bucket{kind=\"get\",le=\"+Inf\"} 2
t_seconds_sum{kind=\"get\"} 2.004
t_seconds_count{kind=\"get\"} 2
";
        assert_eq!(text, expected);
    }

    #[test]
    fn a_family_without_samples_is_an_error_not_a_panic() {
        let mut f = Families::default();
        f.counters::<0>("t_empty_total", "Nothing.", []);
        assert!(f.encode().is_err());
    }
}
