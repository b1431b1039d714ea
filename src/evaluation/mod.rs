//! Offline evaluation: decode a recording causally, bin by bin, with the
//! step kernel (exactly what the daemon computes) and compare against a
//! Wiener filter and a Kalman filter fitted on the model's training data.
//! [`stress`] adds forecasts and decoding with missing bins. The command
//! line (`alternator eval`) is in `commands::eval`.

pub mod stress;

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context};
use serde::Serialize;

use crate::baselines::{KalmanDecoder, WienerFilter};
use crate::matrix::Matrix;
use crate::metrics::Metrics;
use crate::model::{Mode, ModelFile, StepKernel};
use crate::recording::{ReadOptions, Recording};

use stress::{ForecastScore, MissingScore};

/// Metrics of one decoder (means over dimensions, plus per-dimension arrays).
#[derive(Debug, Clone, Serialize)]
pub struct DecoderScore {
    pub r2: f64,
    pub cc: f64,
    pub mae: f64,
    pub rmse: f64,
    pub r2_per_dim: Vec<f64>,
    pub cc_per_dim: Vec<f64>,
}

impl From<&Metrics> for DecoderScore {
    fn from(m: &Metrics) -> Self {
        Self {
            r2: m.mean_r2(),
            cc: m.mean_cc(),
            mae: m.mean_mae(),
            rmse: m.mean_rmse(),
            r2_per_dim: m.r2.clone(),
            cc_per_dim: m.cc.clone(),
        }
    }
}

/// Result of evaluating a model on a recording.
#[derive(Debug, Clone, Serialize)]
pub struct EvalReport {
    pub alternator: DecoderScore,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wiener: Option<DecoderScore>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kalman: Option<DecoderScore>,
    pub bins: usize,
    pub labelled_bins: usize,
    /// Mean kernel time per bin, microseconds.
    pub us_per_bin: f64,
    /// `--forecast`: behaviour forecasts per horizon.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub forecast: Vec<ForecastScore>,
    /// `--drop-rate`: accuracy with missing bins.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub missing: Option<MissingScore>,
    #[serde(skip)]
    pub decoded: Matrix,
    /// The fitted Kalman filter, when baselines ran.
    #[serde(skip)]
    pub kalman_decoder: Option<KalmanDecoder>,
}

/// Decodes `rec` with `mf` and, when `baseline_files` is non-empty, fits and
/// scores the baselines on them.
pub fn evaluate(
    mf: &ModelFile,
    rec: &Recording,
    baseline_files: &[(PathBuf, ReadOptions)],
    wiener_lags: usize,
) -> anyhow::Result<EvalReport> {
    let spec = &mf.model.spec;
    if rec.n_channels() != spec.channels {
        bail!("recording has {} channels but the model expects {}", rec.n_channels(), spec.channels);
    }
    if spec.mode != Mode::Decoding {
        bail!("eval scores behaviour decoding; this model is in latent mode");
    }
    let truth =
        rec.behavior.as_ref().context("recording has no behaviour dataset to score against (see --behavior-path)")?;
    if truth.cols != spec.dz {
        bail!("recording has {} behaviour dims but the model decodes {}", truth.cols, spec.dz);
    }
    let mask = rec.behavior_valid.as_deref();
    let mut k = StepKernel::new(mf.model.clone());
    let t0 = Instant::now();
    let decoded = k.decode_matrix(&rec.spikes);
    let us_per_bin = t0.elapsed().as_secs_f64() * 1e6 / rec.n_bins().max(1) as f64;
    let alt = Metrics::compute_masked(truth, &decoded, mask);
    let labelled_bins = rec.labelled_bins();

    let (wiener, kalman, kalman_decoder) = match baseline_files.is_empty() {
        true => (None, None, None),
        false => {
            let (x, y) = baseline_training_data(baseline_files)?;
            let wf = WienerFilter::fit(&x, &y, wiener_lags, 1.0).context("fitting the Wiener filter")?;
            let kf = KalmanDecoder::fit(&x, &y).context("fitting the Kalman filter")?;
            let score = |pred: &Matrix| Some(DecoderScore::from(&Metrics::compute_masked(truth, pred, mask)));
            (score(&wf.predict(&rec.spikes)), score(&kf.predict(&rec.spikes)), Some(kf))
        }
    };
    Ok(EvalReport {
        alternator: DecoderScore::from(&alt),
        wiener,
        kalman,
        bins: rec.n_bins(),
        labelled_bins,
        us_per_bin,
        forecast: Vec::new(),
        missing: None,
        decoded,
        kalman_decoder,
    })
}

/// The labelled bins of the baseline training files, stacked: (observations, behaviour).
fn baseline_training_data(files: &[(PathBuf, ReadOptions)]) -> anyhow::Result<(Matrix, Matrix)> {
    let (mut xs, mut ys) = (Vec::new(), Vec::new());
    for (path, opts) in files {
        let r = Recording::read_checked(path, opts)
            .with_context(|| format!("reading baseline training data {}", path.display()))?;
        let b = r.behavior.with_context(|| format!("baseline training data {} has no behaviour", path.display()))?;
        // Only labelled rows are usable for fitting.
        match &r.behavior_valid {
            Some(m) => {
                let keep: Vec<usize> = (0..b.rows).filter(|&i| m[i]).collect();
                xs.push(r.spikes.select_rows(&keep));
                ys.push(b.select_rows(&keep));
            }
            None => {
                xs.push(r.spikes);
                ys.push(b);
            }
        }
    }
    Ok((Matrix::vstack(&xs.iter().collect::<Vec<_>>()), Matrix::vstack(&ys.iter().collect::<Vec<_>>())))
}
