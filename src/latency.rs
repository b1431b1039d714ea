//! Latency histograms and their percentiles: the one home for every latency
//! figure the project reports (the daemon's stats line and `status`, the
//! benchmark, the demo, the pacing benchmark). Recording into a histogram
//! is allocation-free, so the decode loop uses the same type.

use hdrhistogram::Histogram;

/// A nanosecond histogram, 1 ns .. 60 s, 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("invariant: static histogram bounds are valid")
}

/// A histogram of these nanosecond samples (0 is recorded as 1 ns).
pub fn histogram_of(ns: impl IntoIterator<Item = u64>) -> Histogram<u64> {
    let mut h = histogram();
    for v in ns {
        h.saturating_record(v.max(1));
    }
    h
}

/// The `q` quantile (0..=1) of a nanosecond histogram in microseconds; 0 when empty.
pub fn quantile_us(h: &Histogram<u64>, q: f64) -> f64 {
    if h.is_empty() {
        0.0
    } else {
        h.value_at_quantile(q.clamp(0.0, 1.0)) as f64 / 1e3
    }
}

/// `p50/p99/p99.9/max` of a histogram in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct LatencySummary {
    pub count: u64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
}

impl LatencySummary {
    /// Summarises a nanosecond histogram.
    pub fn of(h: &Histogram<u64>) -> Self {
        Self {
            count: h.len(),
            p50_us: quantile_us(h, 0.5),
            p99_us: quantile_us(h, 0.99),
            p999_us: quantile_us(h, 0.999),
            max_us: if h.is_empty() { 0.0 } else { h.max() as f64 / 1e3 },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_of_a_known_distribution() {
        let h = histogram_of((1..=1000u64).map(|v| v * 1000));
        let s = LatencySummary::of(&h);
        assert_eq!(s.count, 1000);
        assert!((s.p50_us - 500.0).abs() < 1.0, "{s:?}");
        assert!((s.p99_us - 990.0).abs() < 1.5, "{s:?}");
        assert!((s.max_us - 1000.0).abs() < 1.0, "{s:?}");
        assert!((quantile_us(&h, 0.0) - 1.0).abs() < 0.01);
    }

    #[test]
    fn empty_histograms_report_zero() {
        assert_eq!(LatencySummary::of(&histogram()), LatencySummary::default());
        assert_eq!(quantile_us(&histogram(), 0.5), 0.0);
        assert_eq!(histogram_of([0]).max(), 1);
    }
}
