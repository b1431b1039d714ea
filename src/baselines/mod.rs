//! Two standard linear decoders of behaviour from binned spikes, used as
//! baselines for the alternator: a lagged ridge regression ([`WienerFilter`])
//! and a linear-Gaussian state-space filter ([`KalmanDecoder`], Wu et al.
//! 2006). Both are fitted once on training data (`x` = spikes `[T, C]`,
//! `y` = behaviour `[T, B]`) and then decode a whole matrix causally.
//!
//! The small dense `f64` linear algebra they need (a Cholesky factor with a
//! diagonal-jitter fallback, SPD solves and inverses) lives in
//! `linalg.rs` (this folder); nothing here depends on an external linear-algebra crate.
//!
//! Invariants:
//! - Spikes are standardised per channel with the *training* mean and
//!   population std (std floored at [`STD_FLOOR`]); the stats live in the
//!   fitted decoder and are reused unchanged at prediction time.
//! - All fitting and decoding arithmetic is `f64`; only the returned matrices
//!   are `f32`.
//! - Prediction is causal: output row `t` depends only on input rows `0..=t`.
//! - A fitted decoder only holds finite parameters; `predict` on a matrix
//!   with the wrong channel count is a caller bug and panics (`invariant:`).
//!
//! This module owns what the two decoders share: the error type
//! [`BaselineError`], the public constants, per-channel standardisation, the
//! training-data checks and the SPD solve wrapper. Each decoder lives in its
//! own submodule (`wiener`, `kalman`) and is re-exported here, so the public
//! paths are `crate::baselines::WienerFilter` and
//! `crate::baselines::KalmanDecoder`.

use crate::matrix::Matrix;
use linalg::solve_spd;

mod kalman;
mod linalg;
mod wiener;

pub use kalman::KalmanDecoder;
pub use wiener::WienerFilter;

/// Default number of bins (current plus previous) seen by the Wiener filter.
pub const DEFAULT_WIENER_LAGS: usize = 10;

/// Smallest per-channel std used when standardising; a silent channel maps
/// to zeros instead of dividing by zero.
pub const STD_FLOOR: f64 = 1e-6;

/// Ridge added to the diagonal of the Kalman observation-noise covariance Q,
/// in standardised units (a channel's variance is at most 1), so Q is
/// invertible even with more channels than bins or duplicated channels.
pub const KALMAN_Q_RIDGE: f64 = 1e-3;

/// Fewest bins either decoder will fit on (a std needs two samples).
const MIN_BINS: usize = 2;

/// Why a baseline decoder could not be fitted.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BaselineError {
    /// The training data has fewer time bins than the model needs.
    #[error("too few time bins to fit the decoder: got {got}, need at least {needed}")]
    TooFewBins {
        /// Minimum number of bins.
        needed: usize,
        /// Bins supplied.
        got: usize,
    },
    /// A dimension of the inputs is not what the decoder expects.
    #[error("shape mismatch in {what}: expected {expected}, got {got}")]
    ShapeMismatch {
        /// Which dimension was wrong.
        what: &'static str,
        /// The size that was expected.
        expected: usize,
        /// The size that was supplied.
        got: usize,
    },
    /// A system that must be positive definite is not, even after adding a
    /// diagonal jitter of 1e-3 times its mean diagonal.
    #[error(
        "{what} is singular or indefinite even after adding diagonal jitter; \
         expected a positive-definite matrix (check for constant or duplicated inputs; for the Wiener filter, raise the ridge)"
    )]
    Singular {
        /// Which matrix could not be factored.
        what: &'static str,
    },
    /// A hyper-parameter is out of range.
    #[error("invalid {what} = {value}: expected {expected}")]
    InvalidParameter {
        /// Parameter name.
        what: &'static str,
        /// Value supplied.
        value: f64,
        /// The accepted range.
        expected: &'static str,
    },
    /// Training data contains NaN or ±inf.
    #[error("non-finite value in {what} at row {row}, column {col}; expected finite numbers")]
    NonFinite {
        /// Which input.
        what: &'static str,
        /// Row (time bin) of the first bad value.
        row: usize,
        /// Column of the first bad value.
        col: usize,
    },
}

// ---------------------------------------------------------------------------
// Shared data handling
// ---------------------------------------------------------------------------

/// Per-channel training mean and (floored) population std.
#[derive(Debug, Clone, PartialEq)]
struct Standardizer {
    mean: Vec<f64>,
    std: Vec<f64>,
}

impl Standardizer {
    fn fit(x: &Matrix) -> Standardizer {
        let mean = column_means(x);
        let mut var = vec![0.0; x.cols];
        for r in 0..x.rows {
            for ((v, &xv), &m) in var.iter_mut().zip(x.row(r)).zip(&mean) {
                let d = f64::from(xv) - m;
                *v += d * d;
            }
        }
        let n = x.rows.max(1) as f64;
        let std = var.iter().map(|v| (v / n).sqrt().max(STD_FLOOR)).collect();
        Standardizer { mean, std }
    }

    /// Standardises one row into `out`.
    fn apply_row(&self, row: &[f32], out: &mut [f64]) {
        for (((o, &xv), &m), &sd) in out.iter_mut().zip(row).zip(&self.mean).zip(&self.std) {
            *o = (f64::from(xv) - m) / sd;
        }
    }

    /// Standardises a whole matrix into a row-major `f64` buffer.
    fn apply(&self, x: &Matrix) -> Vec<f64> {
        let c = x.cols;
        let mut z = vec![0.0; x.rows * c];
        for r in 0..x.rows {
            self.apply_row(x.row(r), &mut z[r * c..(r + 1) * c]);
        }
        z
    }
}

/// Validates the shapes and values of a training pair.
fn check_training(x: &Matrix, y: &Matrix, needed: usize) -> Result<(), BaselineError> {
    if x.cols == 0 {
        return Err(BaselineError::ShapeMismatch { what: "spike channels (need at least one)", expected: 1, got: 0 });
    }
    if y.cols == 0 {
        return Err(BaselineError::ShapeMismatch {
            what: "behaviour dimensions (need at least one)",
            expected: 1,
            got: 0,
        });
    }
    if y.rows != x.rows {
        return Err(BaselineError::ShapeMismatch {
            what: "behaviour rows (one per spike bin)",
            expected: x.rows,
            got: y.rows,
        });
    }
    if x.rows < needed {
        return Err(BaselineError::TooFewBins { needed, got: x.rows });
    }
    for (m, what) in [(x, "spikes"), (y, "behaviour")] {
        if let Some(i) = m.data.iter().position(|v| !v.is_finite()) {
            return Err(BaselineError::NonFinite { what, row: i / m.cols, col: i % m.cols });
        }
    }
    Ok(())
}

fn ensure_finite(m: &[f64], what: &'static str) -> Result<(), BaselineError> {
    if m.iter().all(|v| v.is_finite()) {
        Ok(())
    } else {
        Err(BaselineError::Singular { what })
    }
}

fn column_means(m: &Matrix) -> Vec<f64> {
    let mut sum = vec![0.0; m.cols];
    for r in 0..m.rows {
        for (s, &v) in sum.iter_mut().zip(m.row(r)) {
            *s += f64::from(v);
        }
    }
    let n = m.rows.max(1) as f64;
    sum.iter().map(|s| s / n).collect()
}

/// `m − mean` per column, as a row-major `f64` buffer.
fn centred(m: &Matrix, mean: &[f64]) -> Vec<f64> {
    let mut out = Vec::with_capacity(m.data.len());
    for r in 0..m.rows {
        out.extend(m.row(r).iter().zip(mean).map(|(&v, &mu)| f64::from(v) - mu));
    }
    out
}

/// Adds `1e-9 ×` the mean diagonal (or `1e-12` if that is zero) so a
/// covariance estimated from degenerate data stays positive definite.
fn add_diagonal_floor(m: &mut [f64], n: usize) {
    let mean_diag = (0..n).map(|i| m[i * n + i]).sum::<f64>() / n as f64;
    let eps = if mean_diag > 0.0 { 1e-9 * mean_diag } else { 1e-12 };
    for i in 0..n {
        m[i * n + i] += eps;
    }
}

/// [`solve_spd`], reporting a matrix that cannot be factored even with the
/// largest jitter as [`BaselineError::Singular`] naming `what`.
fn solve_or_singular(
    a: &[f64],
    n: usize,
    rhs: &[f64],
    m: usize,
    what: &'static str,
) -> Result<Vec<f64>, BaselineError> {
    solve_spd(a, n, rhs, m).ok_or(BaselineError::Singular { what })
}

/// Deterministic helpers shared by the `wiener` and `kalman` tests.
#[cfg(test)]
mod test_util {
    /// splitmix64 with Box–Muller normals: deterministic, no crate.
    pub(super) struct Rng(pub(super) u64);

    impl Rng {
        fn next_u64(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }
        /// Uniform in (0, 1].
        fn uniform(&mut self) -> f64 {
            ((self.next_u64() >> 11) as f64 + 1.0) / (1u64 << 53) as f64
        }
        pub(super) fn normal(&mut self) -> f64 {
            let (u1, u2) = (self.uniform(), self.uniform());
            (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
        }
    }

    pub(super) fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
    }
}
