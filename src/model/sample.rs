//! Drawing new trajectories from a model's generative process (MODEL.md,
//! "Generative process"): `z_0 ~ N(0, I)`, then for every bin a noisy OTN
//! step `x_t = cx f(z_{t-1}) + sigma_x eps_x` and a noisy FTN step
//! `z_t = c1 g(X_t) + c2 z_{t-1} + sigma_z eps_z`, with no observations.
//!
//! Invariants: the result depends only on the model and the seed (the
//! crate's own [`Rng`]); the steps are the streaming kernel's own
//! ([`StepKernel::step_generate`]), so the history and smoothing treat each
//! drawn bin exactly as an imputed one; the raw bins returned reproduce the
//! drawn `x_t` when fed back through the model's preprocessor (up to `f32`
//! rounding).

use super::kernel::StepKernel;
use super::spec::Smoothing;
use super::weights::Model;
use crate::matrix::Matrix;
use crate::rng::Rng;

/// Why a model cannot be sampled.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SampleError {
    /// Half-Gaussian smoothing cannot be inverted stably, so drawn bins
    /// cannot be turned back into raw input bins.
    #[error(
        "the model smooths its input with a half-Gaussian kernel (sigma_bins {sigma_bins}), which cannot be inverted \
         stably to raw bins; sampling needs smoothing `none` or `exponential`"
    )]
    NonInvertibleSmoothing {
        /// The model's smoothing width.
        sigma_bins: f32,
    },
}

/// A drawn trajectory of `bins` bins.
#[derive(Debug, Clone, PartialEq)]
pub struct Trajectory {
    /// The drawn observations in the model's normalised units, `[bins, C]`.
    pub x: Matrix,
    /// The raw input bins that the preprocessor turns into `x`, `[bins, C]`.
    pub raw: Matrix,
    /// The state in output units (behaviour in decoding mode, the latent
    /// state in latent mode), `[bins, dz]`.
    pub out: Matrix,
}

/// Draws `bins` bins from `model` with `seed`.
pub fn sample_trajectory(model: &Model, bins: usize, seed: u64) -> Result<Trajectory, SampleError> {
    if let Smoothing::HalfGaussian { sigma_bins } = model.spec.smoothing {
        return Err(SampleError::NonInvertibleSmoothing { sigma_bins });
    }
    let (c, dz) = (model.spec.channels, model.spec.dz);
    let mut rng = Rng::new(seed);
    let mut k = StepKernel::new(model.clone());
    let z0: Vec<f32> = (0..dz).map(|_| rng.normal() as f32).collect();
    k.set_latent(&z0);
    let mut x = Matrix::zeros(bins, c);
    let mut out = Matrix::zeros(bins, dz);
    let mut eps_x = vec![0f32; c];
    let mut eps_z = vec![0f32; dz];
    for t in 0..bins {
        eps_x.iter_mut().for_each(|e| *e = rng.normal() as f32);
        eps_z.iter_mut().for_each(|e| *e = rng.normal() as f32);
        k.step_generate(&eps_x, &eps_z, x.row_mut(t), out.row_mut(t));
    }
    let raw = raw_from_normalised(model, &x);
    Ok(Trajectory { x, raw, out })
}

/// Undoes normalisation and smoothing: the raw bins `r` whose preprocessed
/// present bins are `x`. Exponential smoothing `s_t = a s_{t-1} + (1-a) r_t`
/// (with `s_1 = r_1`) is inverted as `r_t = (s_t - a s_{t-1}) / (1-a)`.
fn raw_from_normalised(model: &Model, x: &Matrix) -> Matrix {
    let st = &model.stats;
    let mut s = x.clone();
    for t in 0..s.rows {
        for (j, v) in s.row_mut(t).iter_mut().enumerate() {
            *v = *v * st.x_std[j] + st.x_mean[j];
        }
    }
    let Smoothing::Exponential { tau_bins } = model.spec.smoothing else {
        return s;
    };
    let a = (-1.0 / tau_bins).exp();
    let mut raw = s.clone();
    for t in 1..s.rows {
        for j in 0..s.cols {
            raw.row_mut(t)[j] = (s.get(t, j) - a * s.get(t - 1, j)) / (1.0 - a);
        }
    }
    raw
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::preprocess::{preprocess_matrix, NormStats};
    use crate::model::spec::{Activation, Mode, ModelSpec};
    use crate::model::weights::{Dense, MlpWeights};

    fn layer(rng: &mut Rng, i: usize, o: usize) -> Dense {
        let w = (0..i * o).map(|_| 0.5 * rng.normal() as f32).collect();
        let b = (0..o).map(|_| 0.1 * rng.normal() as f32).collect();
        Dense { in_dim: i, out_dim: o, w, b }
    }

    fn model(smoothing: Smoothing) -> Model {
        let spec = ModelSpec {
            mode: Mode::Decoding,
            channels: 5,
            history: 2,
            dz: 2,
            ftn_hidden: vec![8],
            otn_hidden: vec![8],
            activation: Activation::Tanh,
            alpha: 0.3,
            sigma_x: 0.2,
            sigma_z: 0.06,
            smoothing,
        };
        let mut rng = Rng::new(4);
        let ftn = MlpWeights { layers: vec![layer(&mut rng, 15, 8), layer(&mut rng, 8, 2)] };
        let otn = MlpWeights { layers: vec![layer(&mut rng, 2, 8), layer(&mut rng, 8, 5)] };
        let stats = NormStats {
            x_mean: vec![3.0, 1.0, 0.5, 2.0, 7.0],
            x_std: vec![1.5, 0.5, 0.25, 1.0, 2.0],
            y_mean: vec![0.1, -0.2],
            y_std: vec![2.0, 0.5],
        };
        Model { spec, stats, ftn, otn }
    }

    #[test]
    fn raw_bins_reproduce_the_drawn_observations() {
        for smoothing in [Smoothing::None, Smoothing::Exponential { tau_bins: 2.0 }] {
            let m = model(smoothing);
            let tr = sample_trajectory(&m, 400, 9).unwrap();
            let (cur, _) = preprocess_matrix(&m.spec, &m.stats, &tr.raw);
            let worst = cur.data.iter().zip(&tr.x.data).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            assert!(worst < 1e-3, "{smoothing:?}: re-preprocessed raw bins differ by {worst}");
        }
    }

    #[test]
    fn first_step_follows_the_generative_equations() {
        // Smoothing none, z_0 drawn first: x_1 = cx f(z_0) + sigma_x eps_x.
        let m = model(Smoothing::None);
        let tr = sample_trajectory(&m, 1, 3).unwrap();
        let mut rng = Rng::new(3);
        let z0: Vec<f32> = (0..2).map(|_| rng.normal() as f32).collect();
        let eps: Vec<f32> = (0..5).map(|_| rng.normal() as f32).collect();
        let mut k = StepKernel::new(m.clone());
        k.set_latent(&z0);
        let mut f = vec![0f32; 5];
        k.forecast_next(&mut f);
        for j in 0..5 {
            let want = f[j] + 0.2 * eps[j];
            assert!((tr.x.get(0, j) - want).abs() < 1e-6, "channel {j}: {} vs {want}", tr.x.get(0, j));
        }
    }

    #[test]
    fn seeded_and_refuses_half_gaussian() {
        let m = model(Smoothing::Exponential { tau_bins: 2.0 });
        assert_eq!(sample_trajectory(&m, 50, 1).unwrap(), sample_trajectory(&m, 50, 1).unwrap());
        assert_ne!(sample_trajectory(&m, 50, 1).unwrap().x, sample_trajectory(&m, 50, 2).unwrap().x);
        let hg = model(Smoothing::HalfGaussian { sigma_bins: 2.0 });
        assert_eq!(sample_trajectory(&hg, 5, 1), Err(SampleError::NonInvertibleSmoothing { sigma_bins: 2.0 }));
    }
}
