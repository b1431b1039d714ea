//! Two standard linear decoders of behaviour from binned spikes, used as
//! baselines for the alternator: a lagged ridge regression ([`WienerFilter`])
//! and a linear-Gaussian state-space filter ([`KalmanDecoder`], Wu et al.
//! 2006). Both are fitted once on training data (`x` = spikes `[T, C]`,
//! `y` = behaviour `[T, B]`) and then decode a whole matrix causally.
//!
//! The small dense `f64` linear algebra they need (a Cholesky factor with a
//! diagonal-jitter fallback, SPD solves and inverses) lives in
//! `crate::linalg`; nothing here depends on an external linear-algebra crate.
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

use crate::linalg::{axpy, dot, invert_spd, mat_mul, mat_mul_bt, mat_vec, outer_add, solve_spd, symmetrise, transpose};
use crate::matrix::Matrix;

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
// Wiener filter
// ---------------------------------------------------------------------------

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
    /// [`DEFAULT_WIENER_LAGS`] by default). `ridge` is added to a Gram matrix
    /// whose diagonal is about `T` (features are standardised), so
    /// `ridge ≈ 1e-3·T` is light regularisation; `0` is allowed (a tiny
    /// jitter is then used only if the system is singular).
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

// ---------------------------------------------------------------------------
// Kalman decoder
// ---------------------------------------------------------------------------

/// Kalman-filter decoder (Wu et al. 2006).
///
/// The state is the behaviour centred by its training mean,
/// `s_t = y_t − ȳ`; with standardised (hence zero-mean) spikes the model is
/// `s_t = A s_{t−1} + w`, `w ~ N(0, W)` and `z_t = H s_t + q`, `q ~ N(0, Q)`.
/// Centring absorbs the affine offsets, so no constant state is needed.
/// Decoding starts from the training mean state with the training
/// behaviour covariance as its uncertainty, and uses the information form so
/// each step inverts only `B × B` matrices.
#[derive(Debug, Clone, PartialEq)]
pub struct KalmanDecoder {
    scaler: Standardizer,
    y_mean: Vec<f64>,
    /// `B × B` state transition `A`.
    a: Vec<f64>,
    /// `B × B` process noise `W`.
    w: Vec<f64>,
    /// `B × B` covariance of the initial state.
    p0: Vec<f64>,
    /// `B × C` precomputed `Hᵀ Q⁻¹`.
    ht_qinv: Vec<f64>,
    /// `B × B` precomputed `Hᵀ Q⁻¹ H`.
    info: Vec<f64>,
}

/// Least-squares estimates of the state-space model, before the decoding
/// precomputation (kept separate so tests can check them directly).
#[derive(Debug, Clone)]
struct KalmanParams {
    scaler: Standardizer,
    y_mean: Vec<f64>,
    /// `B × B`.
    a: Vec<f64>,
    /// `B × B`.
    w: Vec<f64>,
    /// `C × B`.
    h: Vec<f64>,
    /// `C × C`, including [`KALMAN_Q_RIDGE`].
    q: Vec<f64>,
    /// `B × B`.
    p0: Vec<f64>,
}

impl KalmanDecoder {
    /// Fits `A, W, H, Q` by least squares on spikes `x` `[T, C]` and
    /// behaviour `y` `[T, B]`; needs at least `B + 2` bins (`B + 1`
    /// transitions) so the state covariances can be full rank.
    pub fn fit(x: &Matrix, y: &Matrix) -> Result<KalmanDecoder, BaselineError> {
        let params = KalmanParams::fit(x, y)?;
        KalmanDecoder::from_params(params)
    }

    fn from_params(p: KalmanParams) -> Result<KalmanDecoder, BaselineError> {
        let (b, c) = (p.y_mean.len(), p.scaler.mean.len());
        let qinv_h = solve_or_singular(&p.q, c, &p.h, b, "Kalman observation noise covariance Q")?;
        let ht_qinv = transpose(&qinv_h, c, b);
        let mut info = vec![0.0; b * b];
        for a in 0..c {
            for k in 0..b {
                let hk = p.h[a * b + k];
                axpy(&mut info[k * b..(k + 1) * b], hk, &qinv_h[a * b..(a + 1) * b]);
            }
        }
        symmetrise(&mut info, b);
        ensure_finite(&ht_qinv, "Kalman H'Q^-1")?;
        Ok(KalmanDecoder { scaler: p.scaler, y_mean: p.y_mean, a: p.a, w: p.w, p0: p.p0, ht_qinv, info })
    }

    /// Decodes `x` `[T', C]` into behaviour `[T', B]` with the causal
    /// predict/update recursion, starting from the training mean state.
    ///
    /// Panics (a caller bug) if `x` does not have the training channel count.
    pub fn predict(&self, x: &Matrix) -> Matrix {
        let c = self.channels();
        assert_eq!(x.cols, c, "invariant: Kalman predict needs the training channel count");
        let b = self.outputs();
        let mut out = Matrix::zeros(x.rows, b);
        let mut z = vec![0.0; c];
        let mut s = vec![0.0; b];
        let mut s_prior = vec![0.0; b];
        let mut v = vec![0.0; b];
        let mut p = self.p0.clone();
        let mut ap = vec![0.0; b * b];
        let mut p_prior = vec![0.0; b * b];
        let mut info_post = vec![0.0; b * b];
        let mut factor = vec![0.0; b * b];
        for step in 0..x.rows {
            self.scaler.apply_row(x.row(step), &mut z);
            // Predict: s⁻ = A s, P⁻ = A P Aᵀ + W.
            mat_vec(&self.a, b, b, &s, &mut s_prior);
            mat_mul(&self.a, &p, b, b, b, &mut ap);
            mat_mul_bt(&ap, &self.a, b, b, b, &mut p_prior);
            for (pp, &w) in p_prior.iter_mut().zip(&self.w) {
                *pp += w;
            }
            symmetrise(&mut p_prior, b);
            // Update in information form: P = (P⁻⁻¹ + HᵀQ⁻¹H)⁻¹,
            // s = s⁻ + P (HᵀQ⁻¹ z − HᵀQ⁻¹H s⁻).
            let is_ok = invert_spd(&p_prior, b, &mut info_post, &mut factor);
            assert!(is_ok, "invariant: Kalman prior covariance is positive definite (W is, by construction)");
            for (ip, &m) in info_post.iter_mut().zip(&self.info) {
                *ip += m;
            }
            let is_ok = invert_spd(&info_post, b, &mut p, &mut factor);
            assert!(is_ok, "invariant: Kalman posterior information is positive definite");
            mat_vec(&self.ht_qinv, b, c, &z, &mut v);
            for (vk, info_row) in v.iter_mut().zip(self.info.chunks_exact(b)) {
                *vk -= dot(info_row, &s_prior);
            }
            for ((sk, &prior_k), p_row) in s.iter_mut().zip(&s_prior).zip(p.chunks_exact(b)) {
                *sk = prior_k + dot(p_row, &v);
            }
            for ((o, &sk), &mk) in out.row_mut(step).iter_mut().zip(&s).zip(&self.y_mean) {
                *o = (sk + mk) as f32;
            }
        }
        out
    }

    /// Spike channel count `C` the decoder was fitted on.
    pub fn channels(&self) -> usize {
        self.scaler.mean.len()
    }

    /// Behaviour dimension `B` it predicts.
    pub fn outputs(&self) -> usize {
        self.y_mean.len()
    }
}

impl KalmanParams {
    fn fit(x: &Matrix, y: &Matrix) -> Result<KalmanParams, BaselineError> {
        check_training(x, y, (y.cols + 2).max(MIN_BINS))?;
        let (t, c, b) = (x.rows, x.cols, y.cols);
        let scaler = Standardizer::fit(x);
        let z = scaler.apply(x);
        let y_mean = column_means(y);
        let s = centred(y, &y_mean);
        let state = |k: usize| &s[k * b..(k + 1) * b];

        // A: minimise Σ_{t≥1} |s_t − A s_{t−1}|² ⇒ (Σ s_{t−1}s_{t−1}ᵀ) Aᵀ = Σ s_{t−1}s_tᵀ.
        let mut prev_cov = vec![0.0; b * b];
        let mut lag_cov = vec![0.0; b * b];
        for k in 1..t {
            outer_add(&mut prev_cov, state(k - 1), state(k - 1), 1.0);
            outer_add(&mut lag_cov, state(k - 1), state(k), 1.0);
        }
        let a_t = solve_or_singular(&prev_cov, b, &lag_cov, b, "Kalman lagged state covariance")?;
        let a = transpose(&a_t, b, b);
        let mut w = vec![0.0; b * b];
        let mut e = vec![0.0; b];
        for k in 1..t {
            mat_vec(&a, b, b, state(k - 1), &mut e);
            for (ek, &sk) in e.iter_mut().zip(state(k)) {
                *ek = sk - *ek;
            }
            outer_add(&mut w, &e, &e, 1.0 / (t - 1) as f64);
        }
        add_diagonal_floor(&mut w, b);

        // H: minimise Σ_t |z_t − H s_t|² ⇒ (Σ s_t s_tᵀ) Hᵀ = Σ s_t z_tᵀ.
        let mut state_cov = vec![0.0; b * b];
        let mut state_obs = vec![0.0; b * c];
        for k in 0..t {
            outer_add(&mut state_cov, state(k), state(k), 1.0);
            outer_add(&mut state_obs, state(k), &z[k * c..(k + 1) * c], 1.0);
        }
        let h_t = solve_or_singular(&state_cov, b, &state_obs, c, "Kalman state covariance")?;
        let h = transpose(&h_t, b, c);
        // Q: residual covariance, lower triangle accumulated then mirrored.
        let mut q = vec![0.0; c * c];
        let mut r = vec![0.0; c];
        let inv_t = 1.0 / t as f64;
        for k in 0..t {
            mat_vec(&h, c, b, state(k), &mut r);
            for (rk, &zk) in r.iter_mut().zip(&z[k * c..(k + 1) * c]) {
                *rk = zk - *rk;
            }
            for i in 0..c {
                axpy(&mut q[i * c..i * c + i + 1], r[i] * inv_t, &r[..=i]);
            }
        }
        for i in 0..c {
            for j in 0..i {
                q[j * c + i] = q[i * c + j];
            }
            q[i * c + i] += KALMAN_Q_RIDGE;
        }
        let mut p0: Vec<f64> = state_cov.iter().map(|v| v * inv_t).collect();
        add_diagonal_floor(&mut p0, b);
        for (m, what) in [(&a, "Kalman A"), (&w, "Kalman W"), (&h, "Kalman H"), (&q, "Kalman Q")] {
            ensure_finite(m, what)?;
        }
        Ok(KalmanParams { scaler, y_mean, a, w, h, q, p0 })
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::linalg::{gauss_solve, identity};
    use crate::metrics::Metrics;

    /// splitmix64 with Box–Muller normals: deterministic, no crate.
    struct Rng(u64);

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
        fn normal(&mut self) -> f64 {
            let (u1, u2) = (self.uniform(), self.uniform());
            (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
        }
    }

    fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
    }

    // ----- Wiener filter -----

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

    // ----- Kalman decoder -----

    const KB: usize = 2;
    const KC: usize = 16;

    /// Known linear-Gaussian model in raw units.
    struct TrueModel {
        a: Vec<f64>,
        w_var: f64,
        h: Vec<f64>,
        q_sd: f64,
        x_base: Vec<f64>,
        y_base: Vec<f64>,
    }

    impl TrueModel {
        fn new(rng: &mut Rng) -> TrueModel {
            let (rho, th) = (0.98f64, 0.1f64);
            TrueModel {
                a: vec![rho * th.cos(), rho * th.sin(), -rho * th.sin(), rho * th.cos()],
                w_var: 0.05,
                h: (0..KC * KB).map(|_| rng.normal()).collect(),
                q_sd: 0.5,
                x_base: (0..KC).map(|ch| 5.0 + ch as f64).collect(),
                y_base: vec![3.0, -2.0],
            }
        }

        /// Stationary state variance: A = ρ·rotation ⇒ Σ = W/(1−ρ²)·I.
        fn stationary_var(&self) -> f64 {
            let rho2 = self.a[0] * self.a[0] + self.a[1] * self.a[1];
            self.w_var / (1.0 - rho2)
        }

        fn simulate(&self, rng: &mut Rng, t: usize) -> (Matrix, Matrix) {
            let mut s: Vec<f64> = (0..KB).map(|_| self.stationary_var().sqrt() * rng.normal()).collect();
            let (mut x, mut y) = (Matrix::zeros(t, KC), Matrix::zeros(t, KB));
            let mut next = vec![0.0; KB];
            for r in 0..t {
                mat_vec(&self.a, KB, KB, &s, &mut next);
                for (sk, nk) in s.iter_mut().zip(&next) {
                    *sk = nk + self.w_var.sqrt() * rng.normal();
                }
                for ((o, sk), base) in y.row_mut(r).iter_mut().zip(&s).zip(&self.y_base) {
                    *o = (sk + base) as f32;
                }
                for ch in 0..KC {
                    let v = dot(&self.h[ch * KB..(ch + 1) * KB], &s) + self.q_sd * rng.normal() + self.x_base[ch];
                    x.row_mut(r)[ch] = v as f32;
                }
            }
            (x, y)
        }
    }

    /// Textbook covariance-form Kalman filter (gain via a `C × C` inverse),
    /// an independent reference for the information form. `obs` rows are
    /// already centred observations; returns centred states.
    fn covariance_form_filter(
        a: &[f64],
        w: &[f64],
        h: &[f64],
        q: &[f64],
        p0: &[f64],
        obs: &[Vec<f64>],
    ) -> Vec<Vec<f64>> {
        let (b, c) = (KB, obs[0].len());
        let mut s = vec![0.0; b];
        let mut p = p0.to_vec();
        let mut out = Vec::new();
        for z in obs {
            let mut sp = vec![0.0; b];
            mat_vec(a, b, b, &s, &mut sp);
            let (mut ap, mut pp) = (vec![0.0; b * b], vec![0.0; b * b]);
            mat_mul(a, &p, b, b, b, &mut ap);
            mat_mul_bt(&ap, a, b, b, b, &mut pp);
            pp.iter_mut().zip(w).for_each(|(v, wv)| *v += wv);
            // S = H P⁻ Hᵀ + Q, K = P⁻ Hᵀ S⁻¹.
            let (mut hp, mut sm) = (vec![0.0; c * b], vec![0.0; c * c]);
            mat_mul(h, &pp, c, b, b, &mut hp);
            mat_mul_bt(&hp, h, c, b, c, &mut sm);
            sm.iter_mut().zip(q).for_each(|(v, qv)| *v += qv);
            let s_inv = gauss_solve(&sm, c, &identity(c), c);
            let mut k = vec![0.0; b * c];
            let hp_t = transpose(&hp, c, b); // P⁻ Hᵀ (P⁻ symmetric)
            mat_mul(&hp_t, &s_inv, b, c, c, &mut k);
            let mut innov = vec![0.0; c];
            mat_vec(h, c, b, &sp, &mut innov);
            innov.iter_mut().zip(z).for_each(|(v, zv)| *v = zv - *v);
            let mut ds = vec![0.0; b];
            mat_vec(&k, b, c, &innov, &mut ds);
            s = sp.iter().zip(&ds).map(|(x, d)| x + d).collect();
            // P = (I − K H) P⁻.
            let mut kh = vec![0.0; b * b];
            mat_mul(&k, h, b, c, b, &mut kh);
            let mut i_kh = identity(b);
            i_kh.iter_mut().zip(&kh).for_each(|(v, x)| *v -= x);
            mat_mul(&i_kh, &pp, b, b, b, &mut p);
            // (I − KH)P⁻ amplifies rounding asymmetry; keep P symmetric.
            symmetrise(&mut p, b);
            out.push(s.clone());
        }
        out
    }

    fn to_matrix(rows: &[Vec<f64>], offset: &[f64]) -> Matrix {
        let mut m = Matrix::zeros(rows.len(), offset.len());
        for (r, row) in rows.iter().enumerate() {
            for (k, (v, o)) in row.iter().zip(offset).enumerate() {
                m.row_mut(r)[k] = (v + o) as f32;
            }
        }
        m
    }

    #[test]
    fn kalman_recovers_simulated_state_space_model() {
        let mut rng = Rng(11);
        let model = TrueModel::new(&mut rng);
        let (xtr, ytr) = model.simulate(&mut rng, 5000);
        let (xte, yte) = model.simulate(&mut rng, 800);

        let params = KalmanParams::fit(&xtr, &ytr).unwrap();
        for (i, (got, want)) in params.a.iter().zip(&model.a).enumerate() {
            assert!((got - want).abs() < 0.02, "A[{i}]: {got} vs {want}");
        }
        // Fitted H is per standardised unit: multiply back by each std.
        for ch in 0..KC {
            for k in 0..KB {
                let got = params.h[ch * KB + k] * params.scaler.std[ch];
                let want = model.h[ch * KB + k];
                assert!((got - want).abs() < 0.05, "H[{ch},{k}]: {got} vs {want}");
            }
        }
        let w_diag = [params.w[0], params.w[3]];
        assert!(w_diag.iter().all(|v| (v - model.w_var).abs() < 0.01), "W diagonal {w_diag:?}");

        let decoder = KalmanDecoder::from_params(params.clone()).unwrap();
        let pred = decoder.predict(&xte);

        // Information form equals the covariance form with the same parameters.
        let z: Vec<Vec<f64>> = (0..xte.rows)
            .map(|r| {
                let mut zr = vec![0.0; KC];
                params.scaler.apply_row(xte.row(r), &mut zr);
                zr
            })
            .collect();
        let reference = covariance_form_filter(&params.a, &params.w, &params.h, &params.q, &params.p0, &z);
        let reference = to_matrix(&reference, &params.y_mean);
        let diff = max_abs_diff(&pred.data, &reference.data);
        assert!(diff < 1e-4, "information vs covariance form: max |diff| {diff}");

        // Near the oracle that knows the true parameters.
        let raw: Vec<Vec<f64>> = (0..xte.rows)
            .map(|r| xte.row(r).iter().zip(&model.x_base).map(|(&v, b)| f64::from(v) - b).collect())
            .collect();
        let w_true: Vec<f64> = identity(KB).iter().map(|v| v * model.w_var).collect();
        let q_true: Vec<f64> = identity(KC).iter().map(|v| v * model.q_sd * model.q_sd).collect();
        let p0_true: Vec<f64> = identity(KB).iter().map(|v| v * model.stationary_var()).collect();
        let oracle = covariance_form_filter(&model.a, &w_true, &model.h, &q_true, &p0_true, &raw);
        let oracle_r2 = Metrics::compute(&yte, &to_matrix(&oracle, &model.y_base)).mean_r2();
        let fitted_r2 = Metrics::compute(&yte, &pred).mean_r2();
        assert!(fitted_r2 > 0.9, "decoded R² {fitted_r2}");
        assert!(fitted_r2 > oracle_r2 - 0.01, "fitted R² {fitted_r2} vs oracle {oracle_r2}");
    }

    #[test]
    fn kalman_is_causal() {
        let mut rng = Rng(12);
        let model = TrueModel::new(&mut rng);
        let (x, y) = model.simulate(&mut rng, 400);
        let decoder = KalmanDecoder::fit(&x, &y).unwrap();
        let k = 200;
        let mut x2 = x.clone();
        for r in k + 1..x2.rows {
            x2.row_mut(r).iter_mut().for_each(|v| *v -= 5.0);
        }
        let (p1, p2) = (decoder.predict(&x), decoder.predict(&x2));
        assert_eq!(p1.slice_rows(0, k + 1), p2.slice_rows(0, k + 1), "rows up to {k} changed");
        assert!(max_abs_diff(p1.row(k + 1), p2.row(k + 1)) > 0.1, "the perturbation must matter after {k}");
    }

    #[test]
    fn kalman_handles_more_channels_than_bins_and_silent_channels() {
        // C > T makes the residual covariance rank-deficient; the Q ridge
        // keeps it invertible. A silent channel standardises to zeros.
        let mut rng = Rng(13);
        let model = TrueModel::new(&mut rng);
        let (x, y) = model.simulate(&mut rng, 12);
        let mut x = x;
        (0..x.rows).for_each(|r| x.row_mut(r)[0] = 1.0);
        let decoder = KalmanDecoder::fit(&x, &y).unwrap();
        let pred = decoder.predict(&x);
        assert!(pred.data.iter().all(|v| v.is_finite()));
        assert!(Metrics::compute(&y, &pred).mean_cc() > 0.5);
    }

    #[test]
    fn kalman_rejects_bad_inputs() {
        let x = Matrix::zeros(3, 4);
        assert_eq!(
            KalmanDecoder::fit(&x, &Matrix::zeros(3, 2)).unwrap_err(),
            BaselineError::TooFewBins { needed: 4, got: 3 }
        );
        assert_eq!(
            KalmanDecoder::fit(&x, &Matrix::zeros(5, 2)).unwrap_err(),
            BaselineError::ShapeMismatch { what: "behaviour rows (one per spike bin)", expected: 3, got: 5 }
        );
        assert_eq!(
            KalmanDecoder::fit(&x, &Matrix::zeros(3, 0)).unwrap_err(),
            BaselineError::ShapeMismatch { what: "behaviour dimensions (need at least one)", expected: 1, got: 0 }
        );
        let mut y = Matrix::zeros(3, 1);
        y.row_mut(2)[0] = f32::INFINITY;
        assert_eq!(
            KalmanDecoder::fit(&x, &y).unwrap_err(),
            BaselineError::NonFinite { what: "behaviour", row: 2, col: 0 }
        );
    }

    #[test]
    #[should_panic(expected = "invariant")]
    fn kalman_predict_with_wrong_channels_panics() {
        let mut rng = Rng(14);
        let model = TrueModel::new(&mut rng);
        let (x, y) = model.simulate(&mut rng, 50);
        let decoder = KalmanDecoder::fit(&x, &y).unwrap();
        let _ = decoder.predict(&Matrix::zeros(5, KC + 1));
    }
}
