//! `alternator sample`: draw a trajectory from a model's generative process
//! and write it as an ordinary recording (the layout `replay`, `eval` and
//! `train` read), so it can drive a daemon.

use anyhow::Context;
use tracing::info;

use crate::cli::SampleArgs;
use crate::model::sample::{sample_trajectory, SampleError};
use crate::model::ModelFile;
use crate::recording::Recording;

use super::UsageError;

/// Largest accepted `--bins`.
const MAX_BINS: usize = 50_000_000;
/// Bin width written when the model does not record its training bin width.
const DEFAULT_BIN_SECONDS: f64 = 0.02;

pub fn run(a: SampleArgs) -> anyhow::Result<()> {
    if a.bins == 0 || a.bins > MAX_BINS {
        return Err(UsageError(format!("--bins {}: expected a number of bins, 1..={MAX_BINS}", a.bins)).into());
    }
    let mf = ModelFile::load(&a.model).with_context(|| format!("loading model {}", a.model.display()))?;
    let tr = sample_trajectory(&mf.model, a.bins, a.seed).map_err(|e| match e {
        SampleError::NonInvertibleSmoothing { .. } => {
            anyhow::Error::from(UsageError(format!("--model {}: {e}", a.model.display())))
        }
    })?;
    let bin_seconds = mf.meta.training_bin_seconds().unwrap_or(DEFAULT_BIN_SECONDS);
    let rec = Recording {
        spikes: tr.raw,
        behavior: Some(tr.out),
        behavior_valid: None,
        timestamps: Some((0..a.bins).map(|t| t as f64 * bin_seconds).collect()),
        bin_seconds,
    };
    rec.write(&a.out).with_context(|| format!("writing sampled trajectory to {}", a.out.display()))?;
    info!(path = %a.out.display(), bins = a.bins, channels = rec.n_channels(), seed = a.seed, "Sampled trajectory written.");
    Ok(())
}
