//! The Wiener-filter baseline: [`WienerFilter`], a causal lagged ridge
//! regression on standardised spikes, with its lagged-Gram construction and
//! its tests. Shared data handling and the error type live in the parent
//! module.

use super::linalg::axpy;
use super::{
    centred, check_training, column_means, ensure_finite, solve_or_singular, BaselineError, Standardizer, MIN_BINS,
};
use crate::matrix::Matrix;

/// Causal lagged ridge regression: `y_t = bias + Σ_{i<lags} W_iᵀ z_{t−i}`,
/// where `z` is the standardised spike vector.
///
/// Bins before the start of the input are zero in standardised units, i.e.
/// padded with the training-mean activity of each channel. The bias is not
/// penalised: the fit centres features and targets, which is equivalent to
/// an unpenalised intercept.
#[derive(Debug, Clone, PartialEq)]
pub struct WienerFilter {
    lags: usize,
    outputs: usize,
    scaler: Standardizer,
    /// `(lags·C) × B` row-major; row `i·C + c` is lag `i`, channel `c`.
    weights: Vec<f64>,
    /// `B` intercepts.
    bias: Vec<f64>,
}

impl WienerFilter {
    /// Fits the filter on spikes `x` `[T, C]` and behaviour `y` `[T, B]` by
    /// solving `(FᵀF + ridge·I) w = Fᵀy` on centred lagged features `F`.
    ///
    /// `lags` counts the current bin plus `lags − 1` previous ones (use
    /// [`DEFAULT_WIENER_LAGS`](super::DEFAULT_WIENER_LAGS) by default).
    /// `ridge` is added to a Gram matrix whose diagonal is about `T`
    /// (features are standardised), so `ridge ≈ 1e-3·T` is light
    /// regularisation; `0` is allowed (a tiny jitter is then used only if the
    /// system is singular).
    pub fn fit(x: &Matrix, y: &Matrix, lags: usize, ridge: f64) -> Result<WienerFilter, BaselineError> {
        if lags == 0 {
            return Err(BaselineError::InvalidParameter { what: "lags", value: 0.0, expected: "at least 1" });
        }
        if !(ridge.is_finite() && ridge >= 0.0) {
            return Err(BaselineError::InvalidParameter {
                what: "ridge",
                value: ridge,
                expected: "a finite value >= 0",
            });
        }
        check_training(x, y, MIN_BINS)?;
        let (t, c, b) = (x.rows, x.cols, y.cols);
        let n = lags * c;
        let scaler = Standardizer::fit(x);
        let z = scaler.apply(x);
        let y_mean = column_means(y);
        let yc = centred(y, &y_mean);

        let mut gram = lagged_gram(&z, t, c, lags);
        // Feature means: lag i sees z_s for s in 0..T−i (the rest is padding).
        let mut f_mean = vec![0.0; n];
        for i in 0..lags {
            let m = &mut f_mean[i * c..(i + 1) * c];
            for s in 0..t.saturating_sub(i) {
                axpy(m, 1.0, &z[s * c..(s + 1) * c]);
            }
            m.iter_mut().for_each(|v| *v /= t as f64);
        }
        let tf = t as f64;
        for p in 0..n {
            let row = &mut gram[p * n..(p + 1) * n];
            axpy(row, -tf * f_mean[p], &f_mean);
            row[p] += ridge;
        }
        // Cross moments Σ_t f_t (y_t − ȳ)ᵀ; lag i pairs z_s with y_{s+i}.
        let mut cross = vec![0.0; n * b];
        for i in 0..lags {
            for s in 0..t.saturating_sub(i) {
                let ys = &yc[(s + i) * b..(s + i + 1) * b];
                for (a, &za) in z[s * c..(s + 1) * c].iter().enumerate() {
                    let p = i * c + a;
                    axpy(&mut cross[p * b..(p + 1) * b], za, ys);
                }
            }
        }
        let weights = solve_or_singular(&gram, n, &cross, b, "Wiener normal equations (X'X + ridge*I)")?;
        let mut bias = y_mean;
        for (p, &fm) in f_mean.iter().enumerate() {
            axpy(&mut bias, -fm, &weights[p * b..(p + 1) * b]);
        }
        ensure_finite(&weights, "Wiener weights")?;
        Ok(WienerFilter { lags, outputs: b, scaler, weights, bias })
    }

    /// Decodes `x` `[T', C]` into behaviour `[T', B]`, causally and starting
    /// from padded (training-mean) history.
    ///
    /// Panics (a caller bug) if `x` does not have the training channel count.
    pub fn predict(&self, x: &Matrix) -> Matrix {
        let c = self.channels();
        assert_eq!(x.cols, c, "invariant: Wiener predict needs the training channel count");
        let (b, t) = (self.outputs, x.rows);
        let z = self.scaler.apply(x);
        let mut out = Matrix::zeros(t, b);
        let mut acc = vec![0.0f64; b];
        for step in 0..t {
            acc.copy_from_slice(&self.bias);
            for i in 0..self.lags.min(step + 1) {
                let zr = &z[(step - i) * c..(step - i + 1) * c];
                for (a, &za) in zr.iter().enumerate() {
                    let p = i * c + a;
                    axpy(&mut acc, za, &self.weights[p * b..(p + 1) * b]);
                }
            }
            for (o, &v) in out.row_mut(step).iter_mut().zip(&acc) {
                *o = v as f32;
            }
        }
        out
    }

    /// Number of bins (current plus previous) the filter sees.
    pub fn lags(&self) -> usize {
        self.lags
    }

    /// Spike channel count `C` the filter was fitted on.
    pub fn channels(&self) -> usize {
        self.scaler.mean.len()
    }

    /// Behaviour dimension `B` it predicts.
    pub fn outputs(&self) -> usize {
        self.outputs
    }
}

/// The `(lags·C)²` Gram matrix `Σ_t f_t f_tᵀ` of zero-padded lagged features,
/// built from `lags` lagged autocorrelations (cost `lags·T·C²` instead of
/// `T·(lags·C)²/2`) plus edge corrections for the padded bins.
fn lagged_gram(z: &[f64], t: usize, c: usize, lags: usize) -> Vec<f64> {
    let n = lags * c;
    // auto[d][a][b] = Σ_{s=0}^{T−1−d} z_{s+d}[a] z_s[b].
    let mut auto = vec![0.0; lags * c * c];
    for s in 0..t {
        let zs = &z[s * c..(s + 1) * c];
        for d in 0..lags.min(t - s) {
            let zsd = &z[(s + d) * c..(s + d + 1) * c];
            let rd = &mut auto[d * c * c..(d + 1) * c * c];
            for (a, &za) in zsd.iter().enumerate() {
                axpy(&mut rd[a * c..(a + 1) * c], za, zs);
            }
        }
    }
    // Block (i, j), i ≤ j, d = j − i: Σ_t z_{t−i} z_{t−j}ᵀ = Σ_{s=0}^{T−1−j}
    // z_{s+d} z_sᵀ, i.e. auto[d] minus its terms for s in T−j..T−d.
    let mut gram = vec![0.0; n * n];
    let mut block = vec![0.0; c * c];
    for i in 0..lags {
        for j in i..lags {
            let d = j - i;
            block.copy_from_slice(&auto[d * c * c..(d + 1) * c * c]);
            for s in t.saturating_sub(j)..t.saturating_sub(d) {
                let zs = &z[s * c..(s + 1) * c];
                for (a, &za) in z[(s + d) * c..(s + d + 1) * c].iter().enumerate() {
                    axpy(&mut block[a * c..(a + 1) * c], -za, zs);
                }
            }
            for a in 0..c {
                for bb in 0..c {
                    let v = block[a * c + bb];
                    gram[(i * c + a) * n + j * c + bb] = v;
                    gram[(j * c + bb) * n + i * c + a] = v;
                }
            }
        }
    }
    gram
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::baselines::linalg::{gauss_solve, outer_add};
    use crate::baselines::test_util::{max_abs_diff, Rng};
    use crate::metrics::Metrics;

    /// y_t = a·x_t + b·x_{t−2} + c + noise, C = 4, B = 2; x offset and scaled
    /// per channel so standardisation matters.
    fn lagged_system(rng: &mut Rng, t: usize, noise: f64) -> (Matrix, Matrix) {
        let c = 4;
        let a = [[1.0, -0.5, 0.0, 2.0], [0.0, 1.5, -1.0, 0.5]];
        let b = [[0.5, 0.0, 1.0, 0.0], [-1.0, 0.3, 0.0, 0.7]];
        let bias = [3.0, -2.0];
        let mut x = Matrix::zeros(t, c);
        for r in 0..t {
            for ch in 0..c {
                x.row_mut(r)[ch] = (2.0 + ch as f64 + (1.0 + ch as f64) * rng.normal()) as f32;
            }
        }
        let mut y = Matrix::zeros(t, 2);
        for r in 0..t {
            for k in 0..2 {
                let mut v = bias[k] + noise * rng.normal();
                for ch in 0..c {
                    v += a[k][ch] * f64::from(x.get(r, ch));
                    if r >= 2 {
                        v += b[k][ch] * f64::from(x.get(r - 2, ch));
                    }
                }
                y.row_mut(r)[k] = v as f32;
            }
        }
        (x, y)
    }

    #[test]
    fn wiener_recovers_lagged_linear_system() {
        let mut rng = Rng(1);
        let (x, y) = lagged_system(&mut rng, 2500, 0.05);
        let (xtr, ytr) = (x.slice_rows(0, 2000), y.slice_rows(0, 2000));
        let (xte, yte) = (x.slice_rows(2000, 2500), y.slice_rows(2000, 2500));
        let wf = WienerFilter::fit(&xtr, &ytr, 5, 1e-3).unwrap();
        let held_out = Metrics::compute(&yte.slice_rows(4, 500), &wf.predict(&xte).slice_rows(4, 500));
        for (k, r2) in held_out.r2.iter().enumerate() {
            assert!(*r2 > 0.99, "dimension {k}: held-out R² {r2}");
        }
        // The lag-2 weight of channel 3 on output 1 is 0.7 in raw units, i.e.
        // 0.7·std(x₃) ≈ 0.7·4 per standardised unit; lag 1 carries nothing.
        let (c, b) = (4, 2);
        let w_lag2 = wf.weights[(2 * c + 3) * b + 1] / wf.scaler.std[3];
        let w_lag1 = wf.weights[(c + 3) * b + 1] / wf.scaler.std[3];
        assert!((w_lag2 - 0.7).abs() < 0.01, "lag-2 weight {w_lag2}");
        assert!(w_lag1.abs() < 0.01, "lag-1 weight {w_lag1}");
    }

    #[test]
    fn wiener_matches_explicit_design_matrix_closed_form() {
        // Reference: build the padded lagged design matrix with an explicit
        // bias column, penalise all but the bias, solve by Gaussian
        // elimination. This checks the lagged-Gram shortcut and the centring.
        let mut rng = Rng(2);
        let (x, y) = lagged_system(&mut rng, 150, 0.5);
        let (lags, ridge, c, b) = (3, 25.0, 4, 2);
        let wf = WienerFilter::fit(&x, &y, lags, ridge).unwrap();

        let t = x.rows;
        let mean: Vec<f64> = (0..c).map(|ch| x.col(ch).iter().map(|&v| f64::from(v)).sum::<f64>() / t as f64).collect();
        let std: Vec<f64> = (0..c)
            .map(|ch| {
                let var = x.col(ch).iter().map(|&v| (f64::from(v) - mean[ch]).powi(2)).sum::<f64>() / t as f64;
                var.sqrt()
            })
            .collect();
        let design = |xm: &Matrix| -> Vec<f64> {
            let n1 = lags * c + 1;
            let mut d = vec![0.0; xm.rows * n1];
            for r in 0..xm.rows {
                for i in 0..lags {
                    if r >= i {
                        for ch in 0..c {
                            d[r * n1 + i * c + ch] = (f64::from(xm.get(r - i, ch)) - mean[ch]) / std[ch];
                        }
                    }
                }
                d[r * n1 + lags * c] = 1.0;
            }
            d
        };
        let n1 = lags * c + 1;
        let d = design(&x);
        let mut dtd = vec![0.0; n1 * n1];
        let mut dty = vec![0.0; n1 * b];
        for r in 0..t {
            let row = &d[r * n1..(r + 1) * n1];
            let yr: Vec<f64> = y.row(r).iter().map(|&v| f64::from(v)).collect();
            outer_add(&mut dtd, row, row, 1.0);
            outer_add(&mut dty, row, &yr, 1.0);
        }
        (0..lags * c).for_each(|p| dtd[p * n1 + p] += ridge);
        let beta = gauss_solve(&dtd, n1, &dty, b);

        let xnew = lagged_system(&mut rng, 40, 0.5).0;
        let dn = design(&xnew);
        let mut reference = Matrix::zeros(xnew.rows, b);
        for r in 0..xnew.rows {
            for k in 0..b {
                reference.row_mut(r)[k] = (0..n1).map(|p| dn[r * n1 + p] * beta[p * b + k]).sum::<f64>() as f32;
            }
        }
        let got = wf.predict(&xnew);
        let diff = max_abs_diff(&got.data, &reference.data);
        assert!(diff < 1e-4, "Wiener vs closed form: max |diff| {diff}");
    }

    #[test]
    fn wiener_is_causal() {
        let mut rng = Rng(3);
        let (x, y) = lagged_system(&mut rng, 300, 0.1);
        let wf = WienerFilter::fit(&x, &y, 4, 1.0).unwrap();
        let k = 120;
        let mut x2 = x.clone();
        for r in k + 1..x2.rows {
            x2.row_mut(r).iter_mut().for_each(|v| *v += 10.0);
        }
        let (p1, p2) = (wf.predict(&x), wf.predict(&x2));
        assert_eq!(p1.slice_rows(0, k + 1), p2.slice_rows(0, k + 1), "rows up to {k} changed");
        assert!(max_abs_diff(p1.row(k + 1), p2.row(k + 1)) > 1.0, "the perturbation must matter after {k}");
    }

    #[test]
    fn wiener_rejects_bad_inputs() {
        let x = Matrix::zeros(10, 3);
        assert_eq!(
            WienerFilter::fit(&x, &Matrix::zeros(9, 2), 2, 1.0).unwrap_err(),
            BaselineError::ShapeMismatch { what: "behaviour rows (one per spike bin)", expected: 10, got: 9 }
        );
        assert_eq!(
            WienerFilter::fit(&x.slice_rows(0, 1), &Matrix::zeros(1, 2), 2, 1.0).unwrap_err(),
            BaselineError::TooFewBins { needed: 2, got: 1 }
        );
        assert!(matches!(
            WienerFilter::fit(&x, &Matrix::zeros(10, 2), 0, 1.0),
            Err(BaselineError::InvalidParameter { what: "lags", .. })
        ));
        assert!(matches!(
            WienerFilter::fit(&x, &Matrix::zeros(10, 2), 2, -1.0),
            Err(BaselineError::InvalidParameter { what: "ridge", .. })
        ));
        let mut bad = x.clone();
        bad.row_mut(4)[2] = f32::NAN;
        assert_eq!(
            WienerFilter::fit(&bad, &Matrix::zeros(10, 2), 2, 1.0).unwrap_err(),
            BaselineError::NonFinite { what: "spikes", row: 4, col: 2 }
        );
        let msg = BaselineError::TooFewBins { needed: 2, got: 1 }.to_string();
        assert!(msg.contains("got 1") && msg.contains("at least 2"), "{msg}");
    }

    #[test]
    #[should_panic(expected = "invariant")]
    fn wiener_predict_with_wrong_channels_panics() {
        let mut rng = Rng(4);
        let (x, y) = lagged_system(&mut rng, 50, 0.1);
        let wf = WienerFilter::fit(&x, &y, 2, 1.0).unwrap();
        let _ = wf.predict(&Matrix::zeros(5, 3));
    }
}
