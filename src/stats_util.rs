//! Small statistics helpers for reports (not on the hot path).

/// The `q` quantile (0..=1) of nanosecond samples, in microseconds; 0 when empty.
pub fn percentile_us(ns: &[u64], q: f64) -> f64 {
    if ns.is_empty() {
        return 0.0;
    }
    let mut v = ns.to_vec();
    v.sort_unstable();
    let idx = ((q.clamp(0.0, 1.0) * (v.len() - 1) as f64).round() as usize).min(v.len() - 1);
    v[idx] as f64 / 1e3
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_known_sample() {
        let v: Vec<u64> = (1..=101).map(|i| i * 1000).collect();
        assert_eq!(percentile_us(&v, 0.5), 51.0);
        assert_eq!(percentile_us(&v, 1.0), 101.0);
        assert_eq!(percentile_us(&v, 0.0), 1.0);
        assert_eq!(percentile_us(&[], 0.5), 0.0);
    }
}
