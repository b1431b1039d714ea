//! The Kalman-filter baseline (Wu et al. 2006): [`KalmanDecoder`], its
//! least-squares parameter fit (`KalmanParams`) and the information-form
//! decoding recursion, with their tests. Shared data handling and the error
//! type live in the parent module.

use super::linalg::{axpy, dot, invert_spd, mat_mul, mat_mul_bt, mat_vec, outer_add, symmetrise, transpose};
use super::{
    add_diagonal_floor, centred, check_training, column_means, ensure_finite, solve_or_singular, BaselineError,
    Standardizer, KALMAN_Q_RIDGE, MIN_BINS,
};
use crate::matrix::Matrix;

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
        self.predict_with_missing(x, None)
    }

    /// As [`Self::predict`], but on bins where `missing` is true only the
    /// predict step runs (no update): the output is the prior mean `A s`.
    ///
    /// Panics (a caller bug) if `x` does not have the training channel
    /// count or `missing` does not have one entry per row.
    pub fn predict_with_missing(&self, x: &Matrix, missing: Option<&[bool]>) -> Matrix {
        let c = self.channels();
        assert_eq!(x.cols, c, "invariant: Kalman predict needs the training channel count");
        if let Some(m) = missing {
            assert_eq!(m.len(), x.rows, "invariant: one missing flag per bin");
        }
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
            if missing.is_some_and(|m| m[step]) {
                s.copy_from_slice(&s_prior);
                p.copy_from_slice(&p_prior);
                for ((o, &sk), &mk) in out.row_mut(step).iter_mut().zip(&s).zip(&self.y_mean) {
                    *o = (sk + mk) as f32;
                }
                continue;
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::baselines::linalg::{gauss_solve, identity};
    use crate::baselines::test_util::{max_abs_diff, Rng};
    use crate::metrics::Metrics;

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
    fn kalman_skips_the_update_on_missing_bins() {
        let mut rng = Rng(15);
        let model = TrueModel::new(&mut rng);
        let (x, y) = model.simulate(&mut rng, 600);
        let params = KalmanParams::fit(&x, &y).unwrap();
        let (a, mean) = (params.a.clone(), params.y_mean.clone());
        let decoder = KalmanDecoder::from_params(params).unwrap();
        let full = decoder.predict(&x);
        assert_eq!(decoder.predict_with_missing(&x, Some(&vec![false; x.rows])), full);
        // Bins 300..305 missing: each output is A times the previous state, and
        // the bins before the gap are untouched.
        let missing: Vec<bool> = (0..x.rows).map(|t| (300..305).contains(&t)).collect();
        let gap = decoder.predict_with_missing(&x, Some(&missing));
        assert_eq!(gap.slice_rows(0, 300), full.slice_rows(0, 300));
        for t in 300..305 {
            let prev: Vec<f64> = gap.row(t - 1).iter().zip(&mean).map(|(&v, m)| f64::from(v) - m).collect();
            let mut want = vec![0.0; KB];
            mat_vec(&a, KB, KB, &prev, &mut want);
            for k in 0..KB {
                let got = f64::from(gap.get(t, k)) - mean[k];
                assert!((got - want[k]).abs() < 1e-4, "bin {t} dim {k}: {got} vs {}", want[k]);
            }
        }
        assert!(max_abs_diff(gap.row(303), full.row(303)) > 1e-3, "the gap must change the output");
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
