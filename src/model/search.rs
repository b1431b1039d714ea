//! Random search over training settings (`alternator tune`): the search
//! space, seeded sampling of trial configurations, the reduced per-trial
//! budget, and the choice of the best trial.
//!
//! Invariants: the sequence of trial configurations depends only on the base
//! configuration and the seed; every sampled configuration passes
//! [`TrainConfig::validate`]; trial 0 is the base configuration itself (so a
//! search never reports a best trial worse than the starting point on the
//! validation data); the score is computed on each recording's validation
//! tail only.

use super::spec::{Mode, Smoothing};
use super::train::{TrainConfig, TrainReport};
use crate::rng::Rng;

/// The reduced training budget of one trial.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrialBudget {
    /// Upper bound on epochs per trial.
    pub max_epochs: usize,
    /// Early-stopping patience per trial.
    pub patience: usize,
    /// Optional wall-clock bound per trial (seconds).
    pub max_seconds: Option<f64>,
}

impl TrialBudget {
    /// `max_epochs` with a patience of a quarter of it (at least 3).
    pub fn epochs(max_epochs: usize) -> Self {
        Self { max_epochs, patience: (max_epochs / 4).max(3), max_seconds: None }
    }

    /// `cfg` with this budget (never more than `cfg`'s own).
    pub fn apply(&self, cfg: &TrainConfig) -> TrainConfig {
        let mut c = cfg.clone();
        c.max_epochs = self.max_epochs.min(cfg.max_epochs).max(1);
        c.patience = self.patience.min(cfg.patience).max(1);
        c.max_seconds = match (self.max_seconds, cfg.max_seconds) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        c
    }
}

/// Log-uniform draw in `[lo, hi]`.
fn log_uniform(rng: &mut Rng, lo: f64, hi: f64) -> f64 {
    (lo.ln() + rng.uniform() * (hi.ln() - lo.ln())).exp()
}

/// Uniform draw in `[lo, hi]`.
fn uniform(rng: &mut Rng, lo: f64, hi: f64) -> f64 {
    lo + rng.uniform() * (hi - lo)
}

/// One of `items`.
fn pick<T: Clone>(rng: &mut Rng, items: &[T]) -> T {
    items[rng.below(items.len())].clone()
}

/// `v` rounded to 3 significant digits (readable configs and tables).
fn round3(v: f64) -> f64 {
    if v == 0.0 || !v.is_finite() {
        return v;
    }
    let mag = 10f64.powi(2 - v.abs().log10().floor() as i32);
    (v * mag).round() / mag
}

/// Trial `index` of a search seeded by the generator `rng` (trial 0 is
/// `base`; later trials draw every searched field, keeping the base's mode,
/// optimiser bounds, window and batch settings, validation fraction and seed).
pub fn sample_trial(base: &TrainConfig, index: usize, rng: &mut Rng) -> TrainConfig {
    if index == 0 {
        return base.clone();
    }
    let mut c = base.clone();
    c.history = rng.below(5);
    c.ftn_hidden =
        pick(rng, &[vec![64], vec![256], vec![32, 32], vec![64, 32], vec![64, 64], vec![128, 64], vec![256, 64]]);
    c.otn_hidden = pick(rng, &[vec![64], vec![128], vec![64, 128]]);
    if c.mode == Mode::Latent {
        c.latent_dims = 2 + rng.below(7);
    }
    c.alpha = round3(uniform(rng, 0.1, 0.6)) as f32;
    c.sigma_x = round3(uniform(rng, 0.05, 0.5)) as f32;
    // sigma_z as a fraction of its largest allowed value sqrt(1 - alpha), kept well inside.
    let sz_max = (1.0 - c.alpha as f64).sqrt() * 0.5;
    c.sigma_z = Some(round3(uniform(rng, 0.01, sz_max.min(0.3))) as f32);
    c.lambda_x = round3(log_uniform(rng, 1.0, 100.0));
    c.lambda_z = round3(log_uniform(rng, 0.3, 3.0));
    c.lr = round3(log_uniform(rng, 3e-4, 3e-3));
    c.weight_decay = round3(log_uniform(rng, 1e-5, 1e-2));
    c.smoothing = match rng.below(3) {
        0 => Smoothing::None,
        1 => Smoothing::Exponential { tau_bins: round3(log_uniform(rng, 0.5, 6.0)) as f32 },
        _ => Smoothing::HalfGaussian { sigma_bins: round3(log_uniform(rng, 0.5, 4.0)) as f32 },
    };
    c
}

/// Every trial configuration of a search with `trials` trials and `seed`.
pub fn sample_trials(base: &TrainConfig, trials: usize, seed: u64) -> Vec<TrainConfig> {
    let mut rng = Rng::new(seed);
    (0..trials).map(|i| sample_trial(base, i, &mut rng)).collect()
}

/// A trial's validation score: mean R² in decoding mode, `-val_x_mse` in latent mode.
pub fn trial_score(mode: Mode, report: &TrainReport) -> f64 {
    match mode {
        Mode::Decoding => report.val_r2_mean,
        Mode::Latent => -report.val_x_mse,
    }
}

/// Index of the best finite score (the earliest among equals), if any.
pub fn best_index(scores: &[Option<f64>]) -> Option<usize> {
    let mut best: Option<(usize, f64)> = None;
    for (i, s) in scores.iter().enumerate() {
        if let Some(v) = s.filter(|v| v.is_finite()) {
            if best.is_none_or(|(_, b)| v > b) {
                best = Some((i, v));
            }
        }
    }
    best.map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trials_are_seeded_valid_and_varied() {
        let base = TrainConfig::default();
        let a = sample_trials(&base, 40, 7);
        assert_eq!(a, sample_trials(&base, 40, 7));
        assert_ne!(a, sample_trials(&base, 40, 8));
        assert_eq!(a[0], base);
        for (i, c) in a.iter().enumerate() {
            assert!(c.validate("").is_empty(), "trial {i}: {:?}", c.validate(""));
            assert_eq!((c.seed, c.window_bins, c.val_fraction), (base.seed, base.window_bins, base.val_fraction));
        }
        let histories: std::collections::BTreeSet<usize> = a.iter().map(|c| c.history).collect();
        assert!(histories.len() >= 4, "{histories:?}");
        let lrs: std::collections::BTreeSet<u64> = a.iter().map(|c| c.lr.to_bits()).collect();
        assert!(lrs.len() > 30);
    }

    #[test]
    fn budget_never_exceeds_the_base() {
        let base = TrainConfig { max_epochs: 10, patience: 2, ..TrainConfig::default() };
        let c = TrialBudget::epochs(40).apply(&base);
        assert_eq!((c.max_epochs, c.patience), (10, 2));
        let c = TrialBudget { max_epochs: 5, patience: 3, max_seconds: Some(9.0) }.apply(&TrainConfig::default());
        assert_eq!((c.max_epochs, c.patience, c.max_seconds), (5, 3, Some(9.0)));
    }

    #[test]
    fn best_is_the_highest_finite_earliest_score() {
        assert_eq!(best_index(&[Some(0.2), None, Some(0.5), Some(f64::NAN), Some(0.5)]), Some(2));
        assert_eq!(best_index(&[None, Some(f64::NAN)]), None);
        assert_eq!(round3(0.0012345), 0.00123);
        assert_eq!(round3(123.45), 123.0);
    }
}
