//! Causal preprocessing: smoothing, per-channel normalisation and history
//! stacking, applied identically in training, offline evaluation and the live
//! stream (training calls the same streaming [`Preprocessor`] bin by bin).
//!
//! Invariants: every output at bin t depends only on bins `<= t`; the
//! normalisation statistics come from training data and travel in the model
//! file ([`NormStats`]); no method allocates after construction.
//!
//! Imputed bins (the OTN's prediction, already in normalised space) enter the
//! history as they are; the smoother is set so that its current output equals
//! the prediction (exponential) or receives the de-normalised prediction as if
//! it had been observed (half-Gaussian).

use super::spec::{ModelSpec, Smoothing};
use crate::matrix::Matrix;

/// Behaviour rows and, optionally, which of them are labelled.
pub type LabelledBehavior<'a> = (&'a Matrix, Option<&'a [bool]>);

/// Normalisation statistics fitted on training data.
#[derive(Debug, Clone, PartialEq)]
pub struct NormStats {
    /// Per-channel mean of the smoothed input.
    pub x_mean: Vec<f32>,
    /// Per-channel standard deviation of the smoothed input (floored).
    pub x_std: Vec<f32>,
    /// Per-dimension behaviour mean (decoding mode; zeros in latent mode).
    pub y_mean: Vec<f32>,
    /// Per-dimension behaviour standard deviation (ones in latent mode).
    pub y_std: Vec<f32>,
}

/// Smallest standard deviation used for normalising (silent channels).
pub const STD_FLOOR: f32 = 1e-3;

impl NormStats {
    /// Identity statistics (no normalisation).
    pub fn identity(channels: usize, dz: usize) -> Self {
        Self { x_mean: vec![0.0; channels], x_std: vec![1.0; channels], y_mean: vec![0.0; dz], y_std: vec![1.0; dz] }
    }

    /// Fits input statistics on the smoothed training inputs of every file
    /// and behaviour statistics on their labelled rows.
    pub fn fit(spec: &ModelSpec, inputs: &[&Matrix], behavior: &[Option<LabelledBehavior<'_>>]) -> Self {
        let c = spec.channels;
        let mut sum = vec![0f64; c];
        let mut sq = vec![0f64; c];
        let mut n = 0f64;
        let ident = NormStats::identity(c, spec.dz);
        for x in inputs {
            let (smoothed, _) = preprocess_matrix(spec, &ident, x);
            for r in 0..smoothed.rows {
                for (j, v) in smoothed.row(r).iter().enumerate() {
                    sum[j] += *v as f64;
                    sq[j] += (*v as f64) * (*v as f64);
                }
            }
            n += smoothed.rows as f64;
        }
        let n = n.max(1.0);
        let x_mean: Vec<f32> = sum.iter().map(|s| (s / n) as f32).collect();
        let x_std: Vec<f32> = sq
            .iter()
            .zip(&sum)
            .map(|(q, s)| (((q / n) - (s / n).powi(2)).max(0.0).sqrt() as f32).max(STD_FLOOR))
            .collect();
        let (mut y_mean, mut y_std) = (vec![0f32; spec.dz], vec![1f32; spec.dz]);
        let mut ysum = vec![0f64; spec.dz];
        let mut ysq = vec![0f64; spec.dz];
        let mut yn = 0f64;
        for (y, mask) in behavior.iter().flatten() {
            for r in 0..y.rows {
                if mask.map(|m| m[r]).unwrap_or(true) {
                    for (j, v) in y.row(r).iter().enumerate().take(spec.dz) {
                        ysum[j] += *v as f64;
                        ysq[j] += (*v as f64).powi(2);
                    }
                    yn += 1.0;
                }
            }
        }
        if yn > 0.0 {
            for j in 0..spec.dz {
                let m = ysum[j] / yn;
                y_mean[j] = m as f32;
                y_std[j] = (((ysq[j] / yn) - m * m).max(0.0).sqrt() as f32).max(STD_FLOOR);
            }
        }
        Self { x_mean, x_std, y_mean, y_std }
    }
}

/// Streaming causal preprocessor for one stream.
#[derive(Debug, Clone)]
pub struct Preprocessor {
    channels: usize,
    depth: usize,
    x_mean: Vec<f32>,
    x_std: Vec<f32>,
    x_inv_std: Vec<f32>,
    smoothing: Smoothing,
    ema_a: f32,
    ema: Vec<f32>,
    started: bool,
    /// Half-Gaussian: weights, newest first.
    kernel: Vec<f32>,
    /// Half-Gaussian: ring of raw bins `[kernel.len()][channels]`.
    raw_ring: Vec<f32>,
    raw_pos: usize,
    raw_filled: usize,
    /// Ring of normalised bins `[depth][channels]`; `stack_pos` is the newest.
    stack: Vec<f32>,
    stack_pos: usize,
}

impl Preprocessor {
    /// A preprocessor for `spec` using fitted `stats`.
    pub fn new(spec: &ModelSpec, stats: &NormStats) -> Self {
        let c = spec.channels;
        let (ema_a, kernel) = match spec.smoothing {
            Smoothing::None => (0.0, Vec::new()),
            Smoothing::Exponential { tau_bins } => ((-1.0 / tau_bins).exp(), Vec::new()),
            Smoothing::HalfGaussian { sigma_bins } => {
                let k = (3.0 * sigma_bins).ceil() as usize + 1;
                let w: Vec<f32> =
                    (0..k).map(|i| (-(i as f32).powi(2) / (2.0 * sigma_bins * sigma_bins)).exp()).collect();
                (0.0, w)
            }
        };
        let depth = spec.history + 1;
        Self {
            channels: c,
            depth,
            x_mean: stats.x_mean.clone(),
            x_std: stats.x_std.clone(),
            x_inv_std: stats.x_std.iter().map(|s| 1.0 / s).collect(),
            smoothing: spec.smoothing,
            ema_a,
            ema: vec![0.0; c],
            started: false,
            raw_ring: vec![0.0; kernel.len() * c],
            kernel,
            raw_pos: 0,
            raw_filled: 0,
            stack: vec![0.0; depth * c],
            stack_pos: 0,
        }
    }

    /// Forgets all past bins (stream restart).
    pub fn reset(&mut self) {
        self.started = false;
        self.ema.iter_mut().for_each(|v| *v = 0.0);
        self.raw_ring.iter_mut().for_each(|v| *v = 0.0);
        self.raw_pos = 0;
        self.raw_filled = 0;
        self.stack.iter_mut().for_each(|v| *v = 0.0);
        self.stack_pos = 0;
    }

    /// Takes over the history of `other`, a preprocessor built from the same
    /// spec and statistics (no allocation).
    pub fn copy_state_from(&mut self, other: &Preprocessor) {
        self.ema.copy_from_slice(&other.ema);
        self.started = other.started;
        self.raw_ring.copy_from_slice(&other.raw_ring);
        self.raw_pos = other.raw_pos;
        self.raw_filled = other.raw_filled;
        self.stack.copy_from_slice(&other.stack);
        self.stack_pos = other.stack_pos;
    }

    fn advance_stack(&mut self) -> &mut [f32] {
        self.stack_pos = (self.stack_pos + 1) % self.depth;
        let c = self.channels;
        &mut self.stack[self.stack_pos * c..(self.stack_pos + 1) * c]
    }

    fn push_raw_ring(&mut self, raw: &[f32]) {
        let k = self.kernel.len();
        let c = self.channels;
        self.raw_pos = (self.raw_pos + 1) % k;
        self.raw_ring[self.raw_pos * c..(self.raw_pos + 1) * c].copy_from_slice(raw);
        self.raw_filled = (self.raw_filled + 1).min(k);
    }

    /// Takes an observed raw bin (`channels` values).
    pub fn push_observed(&mut self, raw: &[f32]) {
        debug_assert_eq!(raw.len(), self.channels);
        let c = self.channels;
        match self.smoothing {
            Smoothing::None => {
                let pos = (self.stack_pos + 1) % self.depth;
                let dst = &mut self.stack[pos * c..(pos + 1) * c];
                for j in 0..c {
                    dst[j] = (raw[j] - self.x_mean[j]) * self.x_inv_std[j];
                }
                self.stack_pos = pos;
            }
            Smoothing::Exponential { .. } => {
                if self.started {
                    let a = self.ema_a;
                    for (e, r) in self.ema.iter_mut().zip(raw) {
                        *e = a * *e + (1.0 - a) * r;
                    }
                } else {
                    self.ema.copy_from_slice(raw);
                }
                let pos = (self.stack_pos + 1) % self.depth;
                let dst = &mut self.stack[pos * c..(pos + 1) * c];
                for j in 0..c {
                    dst[j] = (self.ema[j] - self.x_mean[j]) * self.x_inv_std[j];
                }
                self.stack_pos = pos;
            }
            Smoothing::HalfGaussian { .. } => {
                self.push_raw_ring(raw);
                self.write_half_gaussian();
            }
        }
        self.started = true;
    }

    fn write_half_gaussian(&mut self) {
        let c = self.channels;
        let k = self.kernel.len();
        let pos = (self.stack_pos + 1) % self.depth;
        let dst = &mut self.stack[pos * c..(pos + 1) * c];
        dst.iter_mut().for_each(|v| *v = 0.0);
        let mut wsum = 0.0;
        for lag in 0..self.raw_filled {
            let w = self.kernel[lag];
            wsum += w;
            let slot = (self.raw_pos + k - lag) % k;
            let src = &self.raw_ring[slot * c..(slot + 1) * c];
            for (d, s) in dst.iter_mut().zip(src) {
                *d += w * s;
            }
        }
        let inv = 1.0 / wsum;
        for j in 0..c {
            dst[j] = (dst[j] * inv - self.x_mean[j]) * self.x_inv_std[j];
        }
        self.stack_pos = pos;
    }

    /// Takes an imputed bin given in normalised space (the OTN's prediction).
    pub fn push_imputed(&mut self, xhat_norm: &[f32]) {
        let c = self.channels;
        match self.smoothing {
            Smoothing::None => {}
            Smoothing::Exponential { .. } => {
                for j in 0..c {
                    self.ema[j] = xhat_norm[j] * self.x_std[j] + self.x_mean[j];
                }
            }
            Smoothing::HalfGaussian { .. } => {
                let k = self.kernel.len();
                self.raw_pos = (self.raw_pos + 1) % k;
                for j in 0..c {
                    self.raw_ring[self.raw_pos * c + j] = xhat_norm[j] * self.x_std[j] + self.x_mean[j];
                }
                self.raw_filled = (self.raw_filled + 1).min(k);
            }
        }
        let dst = self.advance_stack();
        dst.copy_from_slice(xhat_norm);
        self.started = true;
    }

    /// The newest normalised bin (`channels` values).
    pub fn current(&self) -> &[f32] {
        let c = self.channels;
        &self.stack[self.stack_pos * c..(self.stack_pos + 1) * c]
    }

    /// Writes the FTN input `[x_t, x_{t-1}, ..., x_{t-h}]` into `out`
    /// (`channels * (history + 1)` values; bins before the start are zero).
    pub fn stacked_into(&self, out: &mut [f32]) {
        let c = self.channels;
        for lag in 0..self.depth {
            let slot = (self.stack_pos + self.depth - lag) % self.depth;
            out[lag * c..(lag + 1) * c].copy_from_slice(&self.stack[slot * c..(slot + 1) * c]);
        }
    }
}

/// Runs the streaming preprocessor over a whole recording (all bins observed),
/// returning the normalised present bins `[T, C]` and the stacked FTN inputs
/// `[T, C (h+1)]`.
pub fn preprocess_matrix(spec: &ModelSpec, stats: &NormStats, raw: &Matrix) -> (Matrix, Matrix) {
    let mut p = Preprocessor::new(spec, stats);
    let mut cur = Matrix::zeros(raw.rows, spec.channels);
    let mut stacked = Matrix::zeros(raw.rows, spec.dx_in());
    for t in 0..raw.rows {
        p.push_observed(raw.row(t));
        cur.row_mut(t).copy_from_slice(p.current());
        p.stacked_into(stacked.row_mut(t));
    }
    (cur, stacked)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::spec::{Activation, Mode};

    fn spec(smoothing: Smoothing, history: usize) -> ModelSpec {
        ModelSpec {
            mode: Mode::Decoding,
            channels: 2,
            history,
            dz: 1,
            ftn_hidden: vec![4],
            otn_hidden: vec![4],
            activation: Activation::Tanh,
            alpha: 0.3,
            sigma_x: 0.2,
            sigma_z: 0.06,
            smoothing,
        }
    }

    #[test]
    fn exponential_smoothing_matches_hand_values() {
        let s = spec(Smoothing::Exponential { tau_bins: 2.0 }, 0);
        let stats = NormStats { x_mean: vec![1.0, 0.0], x_std: vec![2.0, 1.0], y_mean: vec![0.0], y_std: vec![1.0] };
        let raw = Matrix::from_vec(3, 2, vec![3.0, 0.0, 5.0, 1.0, 1.0, 2.0]);
        let (cur, _) = preprocess_matrix(&s, &stats, &raw);
        let a = (-0.5f32).exp();
        // channel 0: ema = 3, then a*3+(1-a)*5, then a*that+(1-a)*1; normalised (v-1)/2
        let e1 = 3.0;
        let e2 = a * e1 + (1.0 - a) * 5.0;
        let e3 = a * e2 + (1.0 - a) * 1.0;
        for (t, e) in [e1, e2, e3].iter().enumerate() {
            assert!((cur.get(t, 0) - (e - 1.0) / 2.0).abs() < 1e-6);
        }
        let f2 = (1.0 - a) * 1.0;
        assert!((cur.get(1, 1) - f2).abs() < 1e-6);
    }

    #[test]
    fn history_stacks_newest_first_with_zero_padding() {
        let s = spec(Smoothing::None, 2);
        let stats = NormStats::identity(2, 1);
        let raw = Matrix::from_vec(3, 2, vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let (_, st) = preprocess_matrix(&s, &stats, &raw);
        assert_eq!(st.row(0), &[1.0, 2.0, 0.0, 0.0, 0.0, 0.0]);
        assert_eq!(st.row(1), &[3.0, 4.0, 1.0, 2.0, 0.0, 0.0]);
        assert_eq!(st.row(2), &[5.0, 6.0, 3.0, 4.0, 1.0, 2.0]);
    }

    #[test]
    fn half_gaussian_is_causal_and_normalised() {
        let s = spec(Smoothing::HalfGaussian { sigma_bins: 1.5 }, 0);
        let stats = NormStats::identity(2, 1);
        let mut raw = Matrix::from_vec(6, 2, vec![1.0; 12]);
        let (cur_a, _) = preprocess_matrix(&s, &stats, &raw);
        // constant input -> constant output (weights sum to one)
        for t in 0..6 {
            assert!((cur_a.get(t, 0) - 1.0).abs() < 1e-6);
        }
        // changing the future does not change the past
        raw.row_mut(5)[0] = 100.0;
        let (cur_b, _) = preprocess_matrix(&s, &stats, &raw);
        for t in 0..5 {
            assert_eq!(cur_a.row(t), cur_b.row(t));
        }
        assert!(cur_b.get(5, 0) > 1.0);
    }

    #[test]
    fn fit_gives_zero_mean_unit_std() {
        let s = spec(Smoothing::None, 0);
        let raw = Matrix::from_vec(4, 2, vec![1.0, 10.0, 3.0, 10.0, 5.0, 10.0, 7.0, 10.0]);
        let st = NormStats::fit(&s, &[&raw], &[]);
        assert!((st.x_mean[0] - 4.0).abs() < 1e-6);
        assert!((st.x_std[0] - 5f32.sqrt()).abs() < 1e-5);
        assert_eq!(st.x_std[1], STD_FLOOR);
    }
}
