//! Decoding-accuracy metrics: per-dimension R², Pearson correlation, MAE and
//! RMSE between a ground-truth behaviour matrix and a prediction.
//!
//! Owns only the arithmetic; it does no I/O. Invariants and conventions:
//! - `truth` and `pred` have identical shapes (`[T, B]`); a mismatch is a caller
//!   bug and panics with an `invariant:` message.
//! - Every sum is accumulated in `f64`, whatever the `f32` input.
//! - Each output vector has one entry per column (behaviour dimension).
//! - With no rows to score (`T == 0`, or every row masked out) every metric is
//!   `NaN`: there is nothing to measure.
//! - A column whose truth is constant has no variance to explain: its R² is
//!   defined as 0 (never `±inf`), and its correlation is 0. Likewise a constant
//!   prediction has correlation 0.

use crate::matrix::Matrix;

/// Per-dimension accuracy of a prediction against ground truth.
///
/// Each vector has one entry per behaviour dimension (matrix column).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct Metrics {
    /// Coefficient of determination `1 − SS_res / SS_tot`; 1 is perfect, 0 is
    /// no better than predicting the mean of the truth, negative is worse.
    pub r2: Vec<f64>,
    /// Pearson correlation coefficient in `[-1, 1]`.
    pub cc: Vec<f64>,
    /// Mean absolute error, in the units of the behaviour.
    pub mae: Vec<f64>,
    /// Root-mean-square error, in the units of the behaviour.
    pub rmse: Vec<f64>,
}

impl Metrics {
    /// Scores every row of `pred` against `truth`.
    ///
    /// Panics (a caller bug) if the shapes differ.
    pub fn compute(truth: &Matrix, pred: &Matrix) -> Metrics {
        Self::compute_masked(truth, pred, None)
    }

    /// Scores the rows whose `mask` entry is `true` (all rows when `mask` is
    /// `None`); rows with `false` are skipped entirely.
    ///
    /// Panics (a caller bug) if the shapes differ or the mask length is not
    /// the number of rows.
    pub fn compute_masked(truth: &Matrix, pred: &Matrix, mask: Option<&[bool]>) -> Metrics {
        assert!(
            truth.rows == pred.rows && truth.cols == pred.cols,
            "invariant: metrics need equal shapes, truth is {}x{} but prediction is {}x{}",
            truth.rows,
            truth.cols,
            pred.rows,
            pred.cols
        );
        if let Some(m) = mask {
            assert_eq!(m.len(), truth.rows, "invariant: metrics mask needs one entry per row");
        }
        let is_used = |r: usize| match mask {
            Some(m) => m[r],
            None => true,
        };
        let dims = truth.cols;
        let mut out = Metrics {
            r2: Vec::with_capacity(dims),
            cc: Vec::with_capacity(dims),
            mae: Vec::with_capacity(dims),
            rmse: Vec::with_capacity(dims),
        };
        for d in 0..dims {
            let pairs = (0..truth.rows)
                .filter(|&r| is_used(r))
                .map(|r| (f64::from(truth.get(r, d)), f64::from(pred.get(r, d))));
            let col = ColumnScore::from_pairs(pairs);
            out.r2.push(col.r2);
            out.cc.push(col.cc);
            out.mae.push(col.mae);
            out.rmse.push(col.rmse);
        }
        out
    }

    /// Mean R² over dimensions (`NaN` with no dimensions).
    pub fn mean_r2(&self) -> f64 {
        mean(&self.r2)
    }

    /// Mean correlation over dimensions (`NaN` with no dimensions).
    pub fn mean_cc(&self) -> f64 {
        mean(&self.cc)
    }

    /// Mean MAE over dimensions (`NaN` with no dimensions).
    pub fn mean_mae(&self) -> f64 {
        mean(&self.mae)
    }

    /// Mean RMSE over dimensions (`NaN` with no dimensions).
    pub fn mean_rmse(&self) -> f64 {
        mean(&self.rmse)
    }
}

/// The four metrics of one column.
struct ColumnScore {
    r2: f64,
    cc: f64,
    mae: f64,
    rmse: f64,
}

impl ColumnScore {
    /// Two passes over `(truth, prediction)` pairs: means first, then centred
    /// sums, which avoids the cancellation of the one-pass formulas.
    fn from_pairs<I>(pairs: I) -> ColumnScore
    where
        I: Iterator<Item = (f64, f64)> + Clone,
    {
        let mut n = 0usize;
        let (mut sum_t, mut sum_p) = (0.0f64, 0.0f64);
        // Constancy is decided exactly (every value equal to the first), not
        // by comparing a rounded variance with zero.
        let mut first: Option<(f64, f64)> = None;
        let (mut is_truth_constant, mut is_pred_constant) = (true, true);
        for (t, p) in pairs.clone() {
            n += 1;
            sum_t += t;
            sum_p += p;
            match first {
                None => first = Some((t, p)),
                Some((t0, p0)) => {
                    is_truth_constant &= t == t0;
                    is_pred_constant &= p == p0;
                }
            }
        }
        if n == 0 {
            return ColumnScore { r2: f64::NAN, cc: f64::NAN, mae: f64::NAN, rmse: f64::NAN };
        }
        let nf = n as f64;
        let (mean_t, mean_p) = (sum_t / nf, sum_p / nf);
        let (mut ss_tot, mut ss_pred, mut cross, mut ss_res, mut abs_err) = (0.0, 0.0, 0.0, 0.0, 0.0);
        for (t, p) in pairs {
            let (dt, dp, e) = (t - mean_t, p - mean_p, t - p);
            ss_tot += dt * dt;
            ss_pred += dp * dp;
            cross += dt * dp;
            ss_res += e * e;
            abs_err += e.abs();
        }
        let r2 = if is_truth_constant { 0.0 } else { 1.0 - ss_res / ss_tot };
        let cc = if is_truth_constant || is_pred_constant {
            0.0
        } else {
            (cross / (ss_tot.sqrt() * ss_pred.sqrt())).clamp(-1.0, 1.0)
        };
        ColumnScore { r2, cc, mae: abs_err / nf, rmse: (ss_res / nf).sqrt() }
    }
}

/// Arithmetic mean; `NaN` for an empty slice.
pub fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        f64::NAN
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOL: f64 = 1e-9;

    /// Builds a `[T, B]` matrix from columns.
    fn from_cols(cols: &[&[f32]]) -> Matrix {
        let rows = cols[0].len();
        let mut m = Matrix::zeros(rows, cols.len());
        for (c, col) in cols.iter().enumerate() {
            for (r, v) in col.iter().enumerate() {
                m.row_mut(r)[c] = *v;
            }
        }
        m
    }

    fn assert_close(got: f64, want: f64, what: &str) {
        assert!((got - want).abs() < TOL, "{what}: got {got}, want {want}");
    }

    #[test]
    fn hand_computed_values() {
        // truth [1,2,3,4]: mean 2.5, deviations -1.5,-0.5,0.5,1.5, SS_tot = 5.
        // Column 0, pred [1,2,3,5]: errors 0,0,0,-1 → SS_res 1, R² 0.8,
        //   MAE 0.25, RMSE sqrt(1/4) = 0.5. Pred mean 2.75, deviations
        //   -1.75,-0.75,0.25,2.25: Σ dt·dp = 6.5, Σ dp² = 8.75,
        //   CC = 6.5 / sqrt(5 · 8.75) = 6.5 / sqrt(43.75).
        // Column 1, pred [4,3,2,1]: errors -3,-1,1,3 → SS_res 20,
        //   R² = 1 − 20/5 = −3, CC −1, MAE 2, RMSE sqrt(5).
        let truth = from_cols(&[&[1.0, 2.0, 3.0, 4.0], &[1.0, 2.0, 3.0, 4.0]]);
        let pred = from_cols(&[&[1.0, 2.0, 3.0, 5.0], &[4.0, 3.0, 2.0, 1.0]]);
        let m = Metrics::compute(&truth, &pred);
        assert_close(m.r2[0], 0.8, "r2[0]");
        assert_close(m.cc[0], 6.5 / 43.75f64.sqrt(), "cc[0]");
        assert_close(m.mae[0], 0.25, "mae[0]");
        assert_close(m.rmse[0], 0.5, "rmse[0]");
        assert_close(m.r2[1], -3.0, "r2[1] (negative R²)");
        assert_close(m.cc[1], -1.0, "cc[1]");
        assert_close(m.mae[1], 2.0, "mae[1]");
        assert_close(m.rmse[1], 5.0f64.sqrt(), "rmse[1]");
        assert_close(m.mean_r2(), (0.8 - 3.0) / 2.0, "mean_r2");
        assert_close(m.mean_cc(), (6.5 / 43.75f64.sqrt() - 1.0) / 2.0, "mean_cc");
        assert_close(m.mean_mae(), 1.125, "mean_mae");
        assert_close(m.mean_rmse(), (0.5 + 5.0f64.sqrt()) / 2.0, "mean_rmse");
    }

    #[test]
    fn perfect_mean_and_shrunk_predictions() {
        let t: &[f32] = &[1.0, 2.0, 3.0, 4.0];
        let truth = from_cols(&[t, t, t]);
        // Column 0 perfect; column 1 the truth mean 2.5 everywhere;
        // column 2 shrunk halfway to the mean: residuals are half the
        // deviations, SS_res = 5/4, R² = 1 − (5/4)/5 = 0.75, but CC = 1.
        let pred = from_cols(&[t, &[2.5; 4], &[1.75, 2.25, 2.75, 3.25]]);
        let m = Metrics::compute(&truth, &pred);
        assert_close(m.r2[0], 1.0, "perfect r2");
        assert_close(m.cc[0], 1.0, "perfect cc");
        assert_close(m.mae[0], 0.0, "perfect mae");
        assert_close(m.rmse[0], 0.0, "perfect rmse");
        assert_close(m.r2[1], 0.0, "mean-prediction r2");
        assert_close(m.cc[1], 0.0, "constant-prediction cc");
        assert_close(m.r2[2], 0.75, "scaled r2");
        assert_close(m.cc[2], 1.0, "scaled cc");
    }

    #[test]
    fn constant_truth_gives_zero_not_infinite() {
        // 0.1 is not exact in binary: a rounded variance would be tiny but
        // non-zero and R² would explode; constancy is detected exactly.
        let truth = from_cols(&[&[0.1; 5], &[0.1; 5]]);
        let pred = from_cols(&[&[0.1; 5], &[0.3, 0.1, 0.2, 0.1, 0.0]]);
        let m = Metrics::compute(&truth, &pred);
        assert_eq!(m.r2, vec![0.0, 0.0]);
        assert_eq!(m.cc, vec![0.0, 0.0]);
        // f32 inputs: 0.3f32 − 0.1f32 is not exactly 0.2.
        assert!((m.mae[1] - (0.2 + 0.1 + 0.1) / 5.0).abs() < 1e-7, "mae {}", m.mae[1]);
    }

    #[test]
    fn mask_skips_rows() {
        // Masking out the last row leaves truth [1,2,3] vs pred [1,2,4]:
        // SS_tot = 2, SS_res = 1 → R² 0.5; MAE 1/3; RMSE sqrt(1/3).
        let truth = from_cols(&[&[1.0, 2.0, 3.0, 100.0]]);
        let pred = from_cols(&[&[1.0, 2.0, 4.0, -100.0]]);
        let mask = [true, true, true, false];
        let m = Metrics::compute_masked(&truth, &pred, Some(&mask));
        assert_close(m.r2[0], 0.5, "masked r2");
        assert_close(m.mae[0], 1.0 / 3.0, "masked mae");
        assert_close(m.rmse[0], (1.0f64 / 3.0).sqrt(), "masked rmse");
        let sliced = Metrics::compute(&truth.slice_rows(0, 3), &pred.slice_rows(0, 3));
        assert_eq!(m, sliced);
        assert_ne!(m, Metrics::compute(&truth, &pred));
    }

    #[test]
    fn no_rows_gives_nan() {
        let truth = from_cols(&[&[1.0, 2.0]]);
        let m = Metrics::compute_masked(&truth, &truth, Some(&[false, false]));
        assert!(m.r2[0].is_nan() && m.cc[0].is_nan() && m.mae[0].is_nan() && m.rmse[0].is_nan());
        let empty = Metrics::compute(&Matrix::zeros(0, 2), &Matrix::zeros(0, 2));
        assert_eq!(empty.r2.len(), 2);
        assert!(empty.mean_r2().is_nan());
    }

    #[test]
    #[should_panic(expected = "invariant")]
    fn shape_mismatch_panics() {
        let _ = Metrics::compute(&Matrix::zeros(3, 2), &Matrix::zeros(3, 1));
    }

    #[test]
    #[should_panic(expected = "invariant")]
    fn mask_length_mismatch_panics() {
        let m = Matrix::zeros(3, 1);
        let _ = Metrics::compute_masked(&m, &m, Some(&[true]));
    }
}
