//! Training: windows of consecutive bins, AdamW, gradient-norm clipping, a
//! validation split from the end of each recording, early stopping on the
//! validation score computed by the real streaming [`StepKernel`].
//!
//! Invariants: deterministic given the seed (weights, window order and noise
//! all come from [`Rng`]); normalisation statistics are fitted on the training
//! part only; the returned model is the best validation epoch's.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use candle_core::backprop::GradStore;
use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use super::kernel::StepKernel;
use super::net::{AlternatorNet, Batch, LossNorm, LossWeights};
use super::optim::{AdamWConfig, FusedAdamW};
use super::preprocess::{preprocess_matrix, LabelledBehavior, NormStats};
use super::spec::{constant_problems, Activation, Mode, ModelSpec, Smoothing};
use super::weights::Model;
use crate::matrix::Matrix;
use crate::metrics::Metrics;
use crate::rng::Rng;

/// Architecture and optimisation settings (the `[train]` table of a config file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// `decoding` (z = behaviour, needs /behavior) or `latent`.
    pub mode: Mode,
    /// Latent dimension in latent mode (decoding mode uses the behaviour's).
    pub latent_dims: usize,
    /// Past bins stacked with the present one into the FTN input.
    pub history: usize,
    /// FTN hidden widths.
    pub ftn_hidden: Vec<usize>,
    /// OTN hidden widths.
    pub otn_hidden: Vec<usize>,
    /// Hidden nonlinearity.
    pub activation: Activation,
    /// Causal smoothing of raw bins.
    pub smoothing: Smoothing,
    /// alpha in (0, 1).
    pub alpha: f32,
    /// sigma_x in (0, 1).
    pub sigma_x: f32,
    /// sigma_z >= 0; default alpha * sigma_x.
    pub sigma_z: Option<f32>,
    /// Weight of the observation term.
    pub lambda_x: f64,
    /// Weight of the behaviour term.
    pub lambda_z: f64,
    /// Train with feature noise eps_z (otherwise deterministic).
    pub noise: bool,
    /// Bins per training window.
    pub window_bins: usize,
    /// Windows per batch.
    pub batch_size: usize,
    /// AdamW learning rate.
    pub lr: f64,
    /// AdamW weight decay.
    pub weight_decay: f64,
    /// Gradient-norm clipping threshold.
    pub clip_norm: f64,
    /// Upper bound on epochs.
    pub max_epochs: usize,
    /// Stop after this many epochs without validation improvement.
    pub patience: usize,
    /// Fraction of each recording (its end) held out for validation.
    pub val_fraction: f64,
    /// Optional wall-clock budget in seconds.
    pub max_seconds: Option<f64>,
    /// Seed for weights, window order and noise.
    pub seed: u64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            mode: Mode::Decoding,
            latent_dims: 3,
            history: 1,
            ftn_hidden: vec![64, 64],
            otn_hidden: vec![64, 128],
            activation: Activation::Tanh,
            smoothing: Smoothing::Exponential { tau_bins: 2.0 },
            alpha: 0.3,
            sigma_x: 0.2,
            sigma_z: None,
            lambda_x: 10.0,
            lambda_z: 1.0,
            noise: false,
            window_bins: 200,
            batch_size: 16,
            lr: 3e-3,
            weight_decay: 1e-4,
            clip_norm: 1.0,
            max_epochs: 150,
            patience: 15,
            val_fraction: 0.2,
            max_seconds: None,
            seed: 0,
        }
    }
}

impl TrainConfig {
    /// The architecture and constants these settings give a model of
    /// `channels` inputs and `dz` features (not validated).
    pub fn spec(&self, channels: usize, dz: usize) -> ModelSpec {
        ModelSpec {
            mode: self.mode,
            channels,
            history: self.history,
            dz,
            ftn_hidden: self.ftn_hidden.clone(),
            otn_hidden: self.otn_hidden.clone(),
            activation: self.activation,
            alpha: self.alpha,
            sigma_x: self.sigma_x,
            sigma_z: self.sigma_z(),
            smoothing: self.smoothing,
        }
    }

    /// Every problem with the settings, as `field: problem` lines.
    pub fn validate(&self, prefix: &str) -> Vec<String> {
        let mut e = Vec::new();
        let mut bad = |f: &str, msg: String| e.push(format!("{prefix}{f}: {msg}"));
        let sz = self.sigma_z();
        for (field, msg) in
            constant_problems(self.alpha, self.sigma_x, sz, self.smoothing, &self.ftn_hidden, &self.otn_hidden)
        {
            bad(field, msg);
        }
        if self.mode == Mode::Latent && self.latent_dims == 0 {
            bad("latent_dims", "must be > 0 in latent mode".into());
        }
        if self.window_bins < 10 {
            bad("window_bins", format!("{} is too short; expected >= 10", self.window_bins));
        }
        if self.batch_size == 0 {
            bad("batch_size", "must be > 0".into());
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            bad("lr", format!("{} must be a positive number", self.lr));
        }
        if !(self.clip_norm > 0.0) {
            bad("clip_norm", format!("{} must be > 0", self.clip_norm));
        }
        if self.max_epochs == 0 {
            bad("max_epochs", "must be > 0".into());
        }
        if !(self.val_fraction > 0.0 && self.val_fraction < 0.9) {
            bad("val_fraction", format!("{} must be in (0, 0.9)", self.val_fraction));
        }
        if !(self.lambda_x >= 0.0 && self.lambda_z >= 0.0) {
            bad("lambda_x/lambda_z", "must be >= 0".into());
        }
        e
    }

    /// The effective sigma_z.
    pub fn sigma_z(&self) -> f32 {
        self.sigma_z.unwrap_or(self.alpha * self.sigma_x)
    }
}

/// One recording's data for training.
pub struct TrainSet<'a> {
    /// Raw bins `[T, C]`.
    pub spikes: &'a Matrix,
    /// Behaviour `[T, B]` (required in decoding mode).
    pub behavior: Option<&'a Matrix>,
    /// Labelled rows (None = all).
    pub behavior_valid: Option<&'a [bool]>,
}

/// Progress after one epoch.
#[derive(Debug, Clone, Serialize)]
pub struct EpochInfo {
    pub epoch: usize,
    pub max_epochs: usize,
    pub train_loss: f64,
    /// Mean validation R² (decoding) or NaN.
    pub val_r2: f64,
    /// Validation one-step prediction MSE of x (normalised units).
    pub val_x_mse: f64,
    pub seconds: f64,
}

/// Summary of a finished training run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainReport {
    pub epochs_run: usize,
    pub best_epoch: usize,
    pub seconds: f64,
    pub seconds_per_epoch: f64,
    pub train_bins: usize,
    pub val_bins: usize,
    /// Per-dimension validation R² at the best epoch (decoding mode).
    pub val_r2: Vec<f64>,
    pub val_r2_mean: f64,
    pub val_x_mse: f64,
    pub final_train_loss: f64,
}

/// Why training could not run or finish.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("invalid training settings: {}", .0.join("; "))]
    Config(Vec<String>),
    #[error("no training data given")]
    NoData,
    #[error("recording {index} has {got} channels, expected {expected} (like the first recording)")]
    ChannelMismatch { index: usize, expected: usize, got: usize },
    #[error("decoding mode needs behaviour, but recording {index} has none (train with mode = \"latent\" or give a recording with /behavior)")]
    NoBehavior { index: usize },
    #[error("recording {index} has {got} behaviour dims, expected {expected}")]
    BehaviorDimMismatch { index: usize, expected: usize, got: usize },
    #[error("too little data: {got} training bins per recording, need at least {needed}")]
    TooLittleData { needed: usize, got: usize },
    #[error("no labelled bins in the validation part; cannot validate a decoder")]
    NoLabelledValidation,
    #[error("loss became non-finite ({value}) at epoch {epoch}")]
    NonFinite { epoch: usize, value: f64 },
    #[error("training was cancelled")]
    Cancelled,
    #[error("tensor error: {0}")]
    Candle(#[from] candle_core::Error),
}

/// The trained model and its report.
pub struct TrainOutcome {
    pub model: Model,
    pub report: TrainReport,
}

/// Prepared per-recording arrays.
struct Prepared {
    x_cur: Matrix,
    x_stack: Matrix,
    z: Option<Matrix>,
    mask: Vec<bool>,
    train_end: usize,
}

/// How a training run executes: not part of the model's configuration, and
/// without influence on its result (the same seed gives the same model with
/// any thread count).
pub struct RunOptions<'a> {
    /// Threads computing the shards of each batch (1 = the calling thread only).
    pub threads: usize,
    /// Set to give up with [`TrainError::Cancelled`] (checked before every batch).
    pub cancel: &'a AtomicBool,
}

/// Each batch is split into this many shards whose gradients are summed; the
/// shards run on up to [`RunOptions::threads`] threads. The split is fixed so
/// that the result does not depend on the thread count.
const SHARDS: usize = 2;

/// Trains an alternator on `sets` with `cfg`. `progress` is called after
/// every epoch (CLI progress bar, daemon log line).
pub fn train(
    sets: &[TrainSet<'_>],
    cfg: &TrainConfig,
    progress: &mut dyn FnMut(&EpochInfo),
) -> Result<TrainOutcome, TrainError> {
    train_cancellable(sets, cfg, progress, &AtomicBool::new(false))
}

/// [`train`] that gives up with [`TrainError::Cancelled`] soon after
/// `cancel` is set (checked before every batch), so a daemon can shut down
/// without waiting for a retraining run to finish. Runs on the calling thread only.
pub fn train_cancellable(
    sets: &[TrainSet<'_>],
    cfg: &TrainConfig,
    progress: &mut dyn FnMut(&EpochInfo),
    cancel: &AtomicBool,
) -> Result<TrainOutcome, TrainError> {
    train_with(sets, cfg, &RunOptions { threads: 1, cancel }, progress)
}

/// [`train_cancellable`] with the batch shards spread over `run.threads` threads.
pub fn train_with(
    sets: &[TrainSet<'_>],
    cfg: &TrainConfig,
    run: &RunOptions<'_>,
    progress: &mut dyn FnMut(&EpochInfo),
) -> Result<TrainOutcome, TrainError> {
    let spec = check_inputs(sets, cfg)?;
    let data = prepare(sets, cfg, &spec)?;
    let dev = Device::Cpu;
    let net = AlternatorNet::init(&spec, cfg.seed, &dev)?;
    let mut opt = FusedAdamW::new(net.vars(), AdamWConfig::new(cfg.lr, cfg.weight_decay))?;
    let mut rng = Rng::new(cfg.seed.wrapping_add(0x5eed));
    let started = Instant::now();
    let mut best: Option<BestEpoch> = None;
    let mut since_best = 0;
    let mut epochs_run = 0;
    let mut last_loss = f64::NAN;
    for epoch in 1..=cfg.max_epochs {
        let t0 = Instant::now();
        last_loss = run_epoch(&data, &net, &mut opt, cfg, run, epoch, &mut rng)?;
        let model =
            Model { spec: spec.clone(), stats: data.stats.clone(), ftn: net.ftn.export()?, otn: net.otn.export()? };
        let (val_r2, val_x_mse) = score_tails(&model, sets, &data.splits, true);
        let val_r2_mean = crate::metrics::mean(&val_r2);
        let score = match cfg.mode {
            Mode::Decoding => val_r2_mean,
            Mode::Latent => -val_x_mse,
        };
        epochs_run = epoch;
        progress(&EpochInfo {
            epoch,
            max_epochs: cfg.max_epochs,
            train_loss: last_loss,
            val_r2: val_r2_mean,
            val_x_mse,
            seconds: t0.elapsed().as_secs_f64(),
        });
        let improved =
            score.is_finite() && best.as_ref().map(|b| !b.score.is_finite() || score > b.score).unwrap_or(true);
        if improved || best.is_none() {
            best = Some(BestEpoch { score, epoch, model, val_r2, val_x_mse });
            since_best = 0;
        } else {
            since_best += 1;
        }
        if since_best >= cfg.patience || cfg.max_seconds.is_some_and(|m| started.elapsed().as_secs_f64() > m) {
            break;
        }
    }
    let best = best.expect("invariant: at least one epoch ran");
    let seconds = started.elapsed().as_secs_f64();
    let val_r2_mean = crate::metrics::mean(&best.val_r2);
    Ok(TrainOutcome {
        model: best.model,
        report: TrainReport {
            epochs_run,
            best_epoch: best.epoch,
            seconds,
            seconds_per_epoch: seconds / epochs_run.max(1) as f64,
            train_bins: data.splits.iter().sum(),
            val_bins: sets.iter().zip(&data.splits).map(|(s, &e)| s.spikes.rows - e).sum(),
            val_r2: best.val_r2,
            val_r2_mean,
            val_x_mse: best.val_x_mse,
            final_train_loss: last_loss,
        },
    })
}

/// The best epoch so far.
struct BestEpoch {
    score: f64,
    epoch: usize,
    model: Model,
    val_r2: Vec<f64>,
    val_x_mse: f64,
}

/// Everything derived from the recordings before the first epoch.
struct PreparedData {
    /// Per recording: first bin of the validation tail.
    splits: Vec<usize>,
    /// Bins per training window.
    window: usize,
    stats: NormStats,
    recs: Vec<Prepared>,
    spec: ModelSpec,
}

/// Checks the settings and the recordings against each other; returns the model's spec.
fn check_inputs(sets: &[TrainSet<'_>], cfg: &TrainConfig) -> Result<ModelSpec, TrainError> {
    let errs = cfg.validate("");
    if !errs.is_empty() {
        return Err(TrainError::Config(errs));
    }
    let first = sets.first().ok_or(TrainError::NoData)?;
    let channels = first.spikes.cols;
    let dz = match cfg.mode {
        Mode::Decoding => first.behavior.ok_or(TrainError::NoBehavior { index: 0 })?.cols,
        Mode::Latent => cfg.latent_dims,
    };
    for (i, s) in sets.iter().enumerate() {
        if s.spikes.cols != channels {
            return Err(TrainError::ChannelMismatch { index: i, expected: channels, got: s.spikes.cols });
        }
        if cfg.mode == Mode::Decoding {
            let b = s.behavior.ok_or(TrainError::NoBehavior { index: i })?;
            if b.cols != dz {
                return Err(TrainError::BehaviorDimMismatch { index: i, expected: dz, got: b.cols });
            }
        }
    }
    let spec = cfg.spec(channels, dz);
    spec.validate().map_err(TrainError::Config)?;
    Ok(spec)
}

/// Splits each recording into a training head and a validation tail, fits
/// the statistics on the heads and preprocesses every recording.
fn prepare(sets: &[TrainSet<'_>], cfg: &TrainConfig, spec: &ModelSpec) -> Result<PreparedData, TrainError> {
    let splits: Vec<usize> =
        sets.iter().map(|s| ((s.spikes.rows as f64) * (1.0 - cfg.val_fraction)).round() as usize).collect();
    let min_train = splits.iter().copied().min().unwrap_or(0);
    if min_train < 20 {
        return Err(TrainError::TooLittleData { needed: 20, got: min_train });
    }
    let window = cfg.window_bins.min(min_train);
    let heads: Vec<Matrix> = sets.iter().zip(&splits).map(|(s, &e)| s.spikes.slice_rows(0, e)).collect();
    let head_refs: Vec<&Matrix> = heads.iter().collect();
    let behav_heads: Vec<Option<(Matrix, Option<Vec<bool>>)>> = sets
        .iter()
        .zip(&splits)
        .map(|(s, &e)| s.behavior.map(|b| (b.slice_rows(0, e), s.behavior_valid.map(|m| m[..e].to_vec()))))
        .collect();
    let behav_refs: Vec<Option<LabelledBehavior<'_>>> = if cfg.mode == Mode::Decoding {
        behav_heads.iter().map(|o| o.as_ref().map(|(b, m)| (b, m.as_deref()))).collect()
    } else {
        Vec::new()
    };
    let stats = NormStats::fit(spec, &head_refs, &behav_refs);
    let recs: Vec<Prepared> =
        sets.iter().zip(&splits).map(|(s, &train_end)| prepare_one(s, spec, &stats, train_end)).collect();
    if cfg.mode == Mode::Decoding && !recs.iter().any(|p| p.mask[p.train_end..].iter().any(|&m| m)) {
        return Err(TrainError::NoLabelledValidation);
    }
    Ok(PreparedData { splits, window, stats, recs, spec: spec.clone() })
}

/// Preprocessed inputs, normalised behaviour and label mask of one recording.
fn prepare_one(s: &TrainSet<'_>, spec: &ModelSpec, stats: &NormStats, train_end: usize) -> Prepared {
    let (x_cur, x_stack) = preprocess_matrix(spec, stats, s.spikes);
    let mut mask = vec![true; s.spikes.rows];
    let dz = spec.dz;
    let z = match (spec.mode, s.behavior) {
        (Mode::Decoding, Some(b)) => {
            let mut z = Matrix::zeros(b.rows, dz);
            for r in 0..b.rows {
                let ok = s.behavior_valid.map(|m| m[r]).unwrap_or(true);
                mask[r] = ok;
                if ok {
                    for j in 0..dz {
                        z.row_mut(r)[j] = (b.get(r, j) - stats.y_mean[j]) / stats.y_std[j];
                    }
                }
            }
            Some(z)
        }
        _ => None,
    };
    Prepared { x_cur, x_stack, z, mask, train_end }
}

/// One pass over the training windows; returns the mean batch loss.
fn run_epoch(
    data: &PreparedData,
    net: &AlternatorNet,
    opt: &mut FusedAdamW,
    cfg: &TrainConfig,
    run: &RunOptions<'_>,
    epoch: usize,
    rng: &mut Rng,
) -> Result<f64, TrainError> {
    let window = data.window;
    // Window starts: a random phase per recording, then non-overlapping windows.
    let mut starts: Vec<(usize, usize)> = Vec::new();
    for (fi, p) in data.recs.iter().enumerate() {
        let phase = rng.below(window);
        let mut s = if p.train_end >= window + phase { phase } else { 0 };
        while s + window <= p.train_end {
            starts.push((fi, s));
            s += window;
        }
    }
    rng.shuffle(&mut starts);
    let weights = LossWeights { lambda_x: cfg.lambda_x, lambda_z: cfg.lambda_z };
    let mut loss_sum = 0.0;
    let mut nb = 0usize;
    for chunk in starts.chunks(cfg.batch_size) {
        if run.cancel.load(Ordering::Relaxed) {
            return Err(TrainError::Cancelled);
        }
        let shards = make_shards(data, chunk, cfg, rng)?;
        let lv = shard_gradients(net, &shards, weights, run.threads, opt)?;
        if !lv.is_finite() {
            return Err(TrainError::NonFinite { epoch, value: lv });
        }
        opt.step(Some(cfg.clip_norm))?;
        loss_sum += lv;
        nb += 1;
    }
    Ok(loss_sum / nb.max(1) as f64)
}

/// The batch of windows `chunk`, split into up to [`SHARDS`] shards whose
/// losses are normalised by the whole batch's element counts (so the shard
/// losses and gradients add up to the batch's).
fn make_shards(
    data: &PreparedData,
    chunk: &[(usize, usize)],
    cfg: &TrainConfig,
    rng: &mut Rng,
) -> Result<Vec<Batch>, candle_core::Error> {
    let (t, spec) = (data.window, &data.spec);
    let labelled: usize =
        chunk.iter().map(|&(fi, s)| data.recs[fi].mask[s..s + t].iter().filter(|&&m| m).count()).sum();
    let norm =
        LossNorm { x_elems: (chunk.len() * t * spec.channels) as f64, z_elems: (labelled.max(1) * spec.dz) as f64 };
    let per = chunk.len().div_ceil(SHARDS);
    chunk.chunks(per).map(|c| make_batch(&data.recs, c, t, spec, cfg, rng, norm, &Device::Cpu)).collect()
}

/// Computes every shard's loss and gradients (on up to `threads` threads),
/// adds the gradients into `opt` in shard order, and returns the batch loss.
fn shard_gradients(
    net: &AlternatorNet,
    shards: &[Batch],
    weights: LossWeights,
    threads: usize,
    opt: &mut FusedAdamW,
) -> Result<f64, TrainError> {
    let one = |b: &Batch| -> Result<(f64, GradStore), candle_core::Error> {
        let parts = net.loss(b, weights)?;
        let lv = parts.total.to_scalar::<f32>()? as f64;
        Ok((lv, parts.total.backward()?))
    };
    let results: Vec<Result<(f64, GradStore), candle_core::Error>> = if threads <= 1 || shards.len() <= 1 {
        shards.iter().map(one).collect()
    } else {
        std::thread::scope(|s| {
            let rest: Vec<_> = shards[1..].iter().map(|b| s.spawn(move || one(b))).collect();
            let mut out = vec![one(&shards[0])];
            out.extend(rest.into_iter().map(|h| h.join().expect("invariant: a shard's thread does not panic")));
            out
        })
    };
    let mut total = 0.0;
    for r in results {
        let (lv, grads) = r?;
        total += lv;
        opt.accumulate(&grads, 1.0)?;
    }
    Ok(total)
}

#[allow(clippy::too_many_arguments)]
fn make_batch(
    prepared: &[Prepared],
    chunk: &[(usize, usize)],
    t: usize,
    spec: &ModelSpec,
    cfg: &TrainConfig,
    rng: &mut Rng,
    norm: LossNorm,
    dev: &Device,
) -> Result<Batch, candle_core::Error> {
    let b = chunk.len();
    let (dx, c, dz) = (spec.dx_in(), spec.channels, spec.dz);
    let mut xs = Vec::with_capacity(b * t * dx);
    let mut xc = Vec::with_capacity(b * t * c);
    let mut zs = Vec::with_capacity(b * t * dz);
    let mut ms = Vec::with_capacity(b * t);
    for &(fi, s) in chunk {
        let p = &prepared[fi];
        xs.extend_from_slice(&p.x_stack.data[s * dx..(s + t) * dx]);
        xc.extend_from_slice(&p.x_cur.data[s * c..(s + t) * c]);
        if let Some(z) = &p.z {
            zs.extend_from_slice(&z.data[s * dz..(s + t) * dz]);
            ms.extend(p.mask[s..s + t].iter().map(|&m| if m { 1f32 } else { 0.0 }));
        }
    }
    let has_z = spec.mode == Mode::Decoding && zs.len() == b * t * dz;
    let all_labelled = ms.iter().all(|&m| m == 1.0);
    let noise = if cfg.noise {
        Some(Tensor::from_vec((0..b * t * dz).map(|_| rng.normal() as f32).collect::<Vec<_>>(), (b, t, dz), dev)?)
    } else {
        None
    };
    Ok(Batch {
        x_stack: Tensor::from_vec(xs, (b, t, dx), dev)?,
        x_cur: Tensor::from_vec(xc, (b, t, c), dev)?,
        z: if has_z { Some(Tensor::from_vec(zs, (b, t, dz), dev)?) } else { None },
        z_mask: if has_z && !all_labelled { Some(Tensor::from_vec(ms, (b, t, 1), dev)?) } else { None },
        noise,
        norm: Some(norm),
    })
}

/// Streams each recording through the kernel (warming up on up to 500 bins
/// before the tail that starts at its entry of `starts`) and scores the tails:
/// per-dimension R² of the decoded behaviour on labelled bins (pooled over
/// recordings; empty when there are none) and, with `with_prediction`, the
/// one-step x prediction MSE (NaN otherwise). Used for validation during
/// training and for the retraining gate.
pub fn score_tails(model: &Model, sets: &[TrainSet<'_>], starts: &[usize], with_prediction: bool) -> (Vec<f64>, f64) {
    let dz = model.spec.dz;
    let mut truth = Vec::new();
    let mut pred = Vec::new();
    let mut se = 0.0f64;
    let mut n_se = 0usize;
    for (s, &split) in sets.iter().zip(starts) {
        let mut k = StepKernel::new(model.clone());
        k.set_track_prediction(with_prediction);
        let mut out = vec![0f32; dz];
        for t in split.saturating_sub(500)..s.spikes.rows {
            k.step(s.spikes.row(t), &mut out);
            if t < split {
                continue;
            }
            let e = k.last_prediction_error() as f64;
            if e.is_finite() {
                se += e * e;
                n_se += 1;
            }
            if model.spec.mode == Mode::Decoding {
                if let Some(b) = s.behavior {
                    if s.behavior_valid.map(|m| m[t]).unwrap_or(true) {
                        truth.extend_from_slice(b.row(t));
                        pred.extend_from_slice(&out);
                    }
                }
            }
        }
    }
    let x_mse = if n_se > 0 { se / n_se as f64 } else { f64::NAN };
    if truth.is_empty() {
        return (Vec::new(), x_mse);
    }
    let rows = truth.len() / dz;
    let m = Metrics::compute(&Matrix::from_vec(rows, dz, truth), &Matrix::from_vec(rows, dz, pred));
    (m.r2, x_mse)
}
