//! The optional parts of `alternator eval`: k-bin-ahead forecasts of
//! behaviour (`--forecast`) and decoding with a seeded share of missing bins
//! (`--drop-rate`, `--drop-burst`), the alternator imputing them and the
//! Kalman filter skipping its update step on them.
//!
//! Invariants: both score exactly the bins plain `eval` scores (labelled
//! bins), minus the bins that have no forecast; a drop rate of 0 marks no
//! bin missing, so its alternator score equals plain `eval`'s.

use std::fmt::Write as _;

use serde::Serialize;

use super::DecoderScore;
use crate::baselines::KalmanDecoder;
use crate::matrix::Matrix;
use crate::metrics::Metrics;
use crate::model::forecast::{decode_with_missing, forecast_outputs};
use crate::model::Model;
use crate::recording::Recording;
use crate::rng::Rng;

/// Largest accepted forecast horizon, bins.
pub const MAX_HORIZON: usize = 10_000;

/// The score of the forecasts at one horizon.
#[derive(Debug, Clone, Serialize)]
pub struct ForecastScore {
    /// Bins ahead.
    pub horizon: usize,
    /// Scores over the labelled bins that have a forecast (all but the first `horizon`).
    pub alternator: DecoderScore,
}

/// Which bins to drop.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DropSpec {
    /// Share of bins dropped, in `[0, 1)`.
    pub rate: f64,
    /// Length of a dropped burst, bins (`>= 1`).
    pub burst: usize,
    /// Seed of the choice.
    pub seed: u64,
}

/// Accuracy with a share of bins missing.
#[derive(Debug, Clone, Serialize)]
pub struct MissingScore {
    pub rate: f64,
    pub burst: usize,
    pub seed: u64,
    /// Share of bins actually dropped.
    pub dropped_share: f64,
    /// Over all labelled bins.
    pub alternator: DecoderScore,
    /// Over the labelled bins that were dropped.
    pub alternator_on_dropped: DecoderScore,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kalman: Option<DecoderScore>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kalman_on_dropped: Option<DecoderScore>,
}

/// A forecast horizon or drop setting out of range, naming the option.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct StressOptionError(pub String);

/// Checks `--forecast` horizons (each in `1..=MAX_HORIZON`).
pub fn check_horizons(h: &[usize]) -> Result<(), StressOptionError> {
    match h.iter().find(|&&k| k == 0 || k > MAX_HORIZON) {
        Some(k) => Err(StressOptionError(format!("--forecast {k}: expected horizons in bins, each 1..={MAX_HORIZON}"))),
        None => Ok(()),
    }
}

/// Checks `--drop-rate` (in `[0, 1)`) and `--drop-burst` (`1..=100000`).
pub fn check_drop(d: &DropSpec) -> Result<(), StressOptionError> {
    if !(d.rate.is_finite() && (0.0..1.0).contains(&d.rate)) {
        return Err(StressOptionError(format!("--drop-rate {}: expected a share of bins in [0, 1)", d.rate)));
    }
    if d.burst == 0 || d.burst > 100_000 {
        return Err(StressOptionError(format!(
            "--drop-burst {}: expected a burst length in bins, 1..=100000",
            d.burst
        )));
    }
    Ok(())
}

/// Missing flags for `bins` bins: the bins are cut into consecutive blocks
/// of `burst` bins (from a seeded phase) and each block is dropped with
/// probability `rate`, so the expected share is `rate` and gaps are whole
/// bursts (adjacent dropped blocks merge).
pub fn drop_mask(bins: usize, d: &DropSpec) -> Vec<bool> {
    let mut rng = Rng::new(d.seed ^ 0xD40B_D40B);
    let burst = d.burst.max(1);
    let phase = rng.below(burst);
    let mut mask = vec![false; bins];
    let mut is_dropped = rng.uniform() < d.rate;
    for (t, m) in mask.iter_mut().enumerate() {
        if t >= phase && (t - phase).is_multiple_of(burst) {
            is_dropped = rng.uniform() < d.rate;
        }
        *m = is_dropped && d.rate > 0.0;
    }
    mask
}

fn truth_and_mask(rec: &Recording) -> (&Matrix, Vec<bool>) {
    let truth = rec.behavior.as_ref().expect("invariant: eval checked the behaviour exists");
    let mask = (0..rec.n_bins()).map(|t| rec.is_labelled(t)).collect();
    (truth, mask)
}

/// Scores forecasts of `rec`'s behaviour at each horizon.
pub fn forecast_scores(model: &Model, rec: &Recording, horizons: &[usize]) -> Vec<ForecastScore> {
    let (truth, labelled) = truth_and_mask(rec);
    let forecasts = forecast_outputs(model, &rec.spikes, horizons);
    horizons
        .iter()
        .zip(&forecasts)
        .map(|(&h, f)| {
            let mask: Vec<bool> = labelled.iter().enumerate().map(|(t, &l)| l && t >= h).collect();
            ForecastScore {
                horizon: h,
                alternator: DecoderScore::from(&Metrics::compute_masked(truth, f, Some(&mask))),
            }
        })
        .collect()
}

/// Scores decoding of `rec` with the bins of `d` missing, for the
/// alternator and (when given) the Kalman filter.
pub fn missing_score(model: &Model, rec: &Recording, kalman: Option<&KalmanDecoder>, d: &DropSpec) -> MissingScore {
    let (truth, labelled) = truth_and_mask(rec);
    let missing = drop_mask(rec.n_bins(), d);
    let on_dropped: Vec<bool> = labelled.iter().zip(&missing).map(|(&l, &m)| l && m).collect();
    let score = |pred: &Matrix, mask: &[bool]| DecoderScore::from(&Metrics::compute_masked(truth, pred, Some(mask)));
    let alt = decode_with_missing(model, &rec.spikes, &missing);
    let kf = kalman.map(|k| k.predict_with_missing(&rec.spikes, Some(&missing)));
    MissingScore {
        rate: d.rate,
        burst: d.burst,
        seed: d.seed,
        dropped_share: missing.iter().filter(|&&m| m).count() as f64 / missing.len().max(1) as f64,
        alternator: score(&alt, &labelled),
        alternator_on_dropped: score(&alt, &on_dropped),
        kalman: kf.as_ref().map(|p| score(p, &labelled)),
        kalman_on_dropped: kf.as_ref().map(|p| score(p, &on_dropped)),
    }
}

/// The text table for the forecast and missing-bin results.
pub fn table(forecast: &[ForecastScore], missing: Option<&MissingScore>) -> String {
    let mut s = String::new();
    if !forecast.is_empty() {
        let _ = writeln!(
            s,
            "\nforecast (behaviour k bins ahead, alternator)\n{:<10} {:>8} {:>8}   R² per dim",
            "horizon", "R²", "CC"
        );
        for f in forecast {
            let per: Vec<String> = f.alternator.r2_per_dim.iter().map(|v| format!("{v:.3}")).collect();
            let _ = writeln!(
                s,
                "{:<10} {:>8.4} {:>8.4}   [{}]",
                f.horizon,
                f.alternator.r2,
                f.alternator.cc,
                per.join(", ")
            );
        }
    }
    if let Some(m) = missing {
        let _ = writeln!(
            s,
            "\nmissing bins: rate {} burst {} seed {} ({:.1} % dropped)\n{:<12} {:>10} {:>14}",
            m.rate,
            m.burst,
            m.seed,
            100.0 * m.dropped_share,
            "decoder",
            "R² (all)",
            "R² (dropped)"
        );
        for (name, all, dropped) in [
            ("alternator", Some(&m.alternator), Some(&m.alternator_on_dropped)),
            ("kalman", m.kalman.as_ref(), m.kalman_on_dropped.as_ref()),
        ] {
            if let (Some(a), Some(d)) = (all, dropped) {
                let _ = writeln!(s, "{:<12} {:>10.4} {:>14.4}", name, a.r2, d.r2);
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drop_mask_is_seeded_bursty_and_near_the_rate() {
        let d = DropSpec { rate: 0.2, burst: 5, seed: 3 };
        let m = drop_mask(50_000, &d);
        assert_eq!(m, drop_mask(50_000, &d));
        assert_ne!(m, drop_mask(50_000, &DropSpec { seed: 4, ..d }));
        let share = m.iter().filter(|&&x| x).count() as f64 / m.len() as f64;
        assert!((share - 0.2).abs() < 0.02, "dropped share {share}");
        // Every gap is a whole number of bursts, except where the session cuts it.
        let mut run = 0;
        for (t, &x) in m.iter().enumerate() {
            if x {
                run += 1;
            } else if run > 0 {
                assert!(run % 5 == 0 || t == run, "gap of {run} bins ending at {t}");
                run = 0;
            }
        }
        assert!(drop_mask(1000, &DropSpec { rate: 0.0, burst: 1, seed: 1 }).iter().all(|&x| !x));
    }

    #[test]
    fn bad_values_name_their_flag() {
        assert!(check_horizons(&[1, 5, 10]).is_ok());
        assert!(check_horizons(&[1, 0]).unwrap_err().0.contains("--forecast 0"));
        let ok = DropSpec { rate: 0.1, burst: 1, seed: 0 };
        assert!(check_drop(&ok).is_ok());
        assert!(check_drop(&DropSpec { rate: 1.0, ..ok }).unwrap_err().0.contains("--drop-rate"));
        assert!(check_drop(&DropSpec { rate: f64::NAN, ..ok }).unwrap_err().0.contains("--drop-rate"));
        assert!(check_drop(&DropSpec { burst: 0, ..ok }).unwrap_err().0.contains("--drop-burst"));
    }
}
