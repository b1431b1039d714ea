//! `alternator train`: fit a model on recordings and write a model file.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use tracing::info;

use crate::cli::{DatasetPaths, TrainArgs};
use crate::model::file::{DataSource, ModelFile, ModelMeta, TrainingInfo};
use crate::model::train::{train_with, RunOptions, TrainConfig, TrainError, TrainOutcome, TrainSet};
use crate::recording::{file_hash, NwbOptions, ReadOptions, Recording};

use super::UsageError;

/// A training config file: a `[train]` table.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct TrainFile {
    #[serde(default)]
    train: TrainConfig,
}

/// `cfg` as a config file that [`load_train_config`] reads back unchanged.
pub fn train_config_toml(cfg: &TrainConfig) -> anyhow::Result<String> {
    let mut value =
        toml::Value::try_from(TrainFile { train: cfg.clone() }).context("writing a training config as TOML")?;
    shortest_f32_floats(&mut value);
    toml::to_string(&value).context("writing a training config as TOML")
}

/// Rewrites every float that is exactly an `f32` in the `f32`'s shortest
/// decimal form (`alpha = 0.3`, not `0.30000001192092896`); it reads back as the same `f32`.
fn shortest_f32_floats(v: &mut toml::Value) {
    match v {
        toml::Value::Float(f) if (*f as f32) as f64 == *f => {
            if let Ok(short) = (*f as f32).to_string().parse::<f64>() {
                *f = short;
            }
        }
        toml::Value::Table(t) => t.iter_mut().for_each(|(_, x)| shortest_f32_floats(x)),
        toml::Value::Array(a) => a.iter_mut().for_each(shortest_f32_floats),
        _ => {}
    }
}

/// Reads and validates a TOML file holding a `[train]` table.
pub fn load_train_config(path: &Path) -> anyhow::Result<TrainConfig> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading config {}", path.display()))?;
    let f: TrainFile = toml::from_str(&text).map_err(|e| UsageError(format!("config {}: {e}", path.display())))?;
    let errs = f.train.validate("train.");
    if !errs.is_empty() {
        return Err(UsageError(format!("config {} is invalid:\n  {}", path.display(), errs.join("\n  "))).into());
    }
    Ok(f.train)
}

/// Read options from the command line's dataset paths and NWB options.
pub fn read_options(p: &DatasetPaths) -> ReadOptions {
    let mut o = ReadOptions { spikes_path: p.spikes_path.clone(), ..ReadOptions::default() };
    if let Some(b) = &p.behavior_path {
        o.behavior_path = Some(b.clone());
    }
    o.nwb = NwbOptions {
        bin_seconds: p.bin_ms.map(|ms| ms / 1e3),
        start_s: p.start_s,
        unit_ids: (!p.unit_ids.is_empty()).then(|| p.unit_ids.clone()),
        unit_filter: p.unit_filter.clone(),
        trials_only: p.trials || p.split.is_some(),
        split: p.split.clone(),
    };
    o
}

/// Whether `path` is read as an NWB file (unreadable files count as not).
fn is_nwb_file(path: &Path) -> bool {
    hdf5_metno::File::open(path).map(|f| crate::recording::nwb::is_nwb(&f, path)).unwrap_or(false)
}

/// Training recordings read from files, with the provenance stored in a model file.
pub struct LoadedData {
    pub recs: Vec<Recording>,
    pub sources: Vec<DataSource>,
}

impl LoadedData {
    /// Reads every file (each opened in a child process first, see `Recording::read_checked`).
    pub fn read(files: &[PathBuf], opts: &ReadOptions) -> anyhow::Result<Self> {
        let mut recs = Vec::new();
        let mut sources = Vec::new();
        for f in files {
            let rec = Recording::read_checked(f, opts)
                .with_context(|| format!("reading training recording {}", f.display()))?;
            sources.push(DataSource {
                path: f.display().to_string(),
                hash: file_hash(f).with_context(|| format!("hashing {}", f.display()))?,
                bins: rec.n_bins(),
                spikes_path: opts.spikes_path.clone(),
                behavior_path: opts.behavior_path.clone(),
                bin_seconds: Some(rec.bin_seconds),
                nwb: if is_nwb_file(f) { serde_json::to_value(&opts.nwb).ok() } else { None },
            });
            recs.push(rec);
        }
        Ok(Self { recs, sources })
    }

    /// The recordings as training sets.
    pub fn sets(&self) -> Vec<TrainSet<'_>> {
        self.recs.iter().map(Recording::train_set).collect()
    }
}

/// Maps a training error to an `anyhow` error; bad settings are usage errors (exit 64).
pub fn train_error(e: TrainError) -> anyhow::Error {
    match e {
        TrainError::Config(_) => anyhow::Error::from(UsageError(e.to_string())),
        other => anyhow::Error::from(other),
    }
}

/// Threads for a command-line training run: `requested`, else every core.
pub fn train_threads(requested: Option<usize>) -> anyhow::Result<usize> {
    match requested {
        Some(0) => Err(UsageError("--threads: 0 is not a thread count; expected >= 1".into()).into()),
        Some(n) => Ok(n),
        None => Ok(std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)),
    }
}

/// Reads recordings, trains on `threads` threads, and returns the model file (not yet saved).
pub fn train_from_files(
    files: &[PathBuf],
    opts: &ReadOptions,
    cfg: &TrainConfig,
    threads: usize,
    progress: &mut dyn FnMut(&crate::model::train::EpochInfo),
) -> anyhow::Result<(ModelFile, TrainOutcome)> {
    let data = LoadedData::read(files, opts)?;
    let cancel = AtomicBool::new(false);
    let run = RunOptions { threads, cancel: &cancel };
    let outcome = train_with(&data.sets(), cfg, &run, progress).map_err(train_error)?;
    let info = TrainingInfo { data: data.sources, config: cfg.clone(), report: outcome.report.clone() };
    let meta = ModelMeta::new(&outcome.model, Some(info), None);
    Ok((ModelFile { model: outcome.model.clone(), meta }, outcome))
}

pub fn run(a: TrainArgs) -> anyhow::Result<()> {
    let mut cfg = match &a.config {
        Some(p) => load_train_config(p)?,
        None => TrainConfig::default(),
    };
    if let Some(s) = a.seed {
        cfg.seed = s;
    }
    if let Some(e) = a.epochs {
        cfg.max_epochs = e;
    }
    let threads = train_threads(a.threads)?;
    let opts = read_options(&a.paths);
    let bar = if a.quiet { ProgressBar::hidden() } else { ProgressBar::new(cfg.max_epochs as u64) };
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] epoch {pos}/{len} {msg}")
            .expect("invariant: static template parses")
            .progress_chars("=> "),
    );
    let mut progress = |e: &crate::model::train::EpochInfo| {
        bar.set_position(e.epoch as u64);
        bar.set_message(format!(
            "loss {:.5} val R² {:.4} val x-mse {:.4} ({:.2} s/epoch)",
            e.train_loss, e.val_r2, e.val_x_mse, e.seconds
        ));
    };
    let (file, outcome) = train_from_files(&a.data, &opts, &cfg, threads, &mut progress)?;
    bar.finish();
    file.save(&a.out).with_context(|| format!("saving model to {}", a.out.display()))?;
    let r = &outcome.report;
    info!(
        path = %a.out.display(),
        id = %file.meta.id,
        epochs = r.epochs_run,
        best_epoch = r.best_epoch,
        seconds = format!("{:.1}", r.seconds),
        seconds_per_epoch = format!("{:.3}", r.seconds_per_epoch),
        val_r2 = format!("{:.4}", r.val_r2_mean),
        "Model trained and saved."
    );
    println!(
        "trained {} epochs (best {}) in {:.1} s ({:.3} s/epoch) on {} bins; validation R² {:.4} per dim {:?}; model {} -> {}",
        r.epochs_run,
        r.best_epoch,
        r.seconds,
        r.seconds_per_epoch,
        r.train_bins,
        r.val_r2_mean,
        r.val_r2.iter().map(|v| (v * 1e4).round() / 1e4).collect::<Vec<_>>(),
        file.meta.id,
        a.out.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A written config reads back as the same settings, with short floats.
    #[test]
    fn written_config_round_trips() {
        let cfg = TrainConfig { alpha: 0.37, sigma_z: Some(0.123), lr: 0.00071, ..TrainConfig::default() };
        let text = train_config_toml(&cfg).unwrap();
        assert!(text.contains("alpha = 0.37\n"), "{text}");
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, &text).unwrap();
        assert_eq!(load_train_config(&p).unwrap(), cfg);
    }
}
