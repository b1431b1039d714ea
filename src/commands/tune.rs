//! `alternator tune`: a seeded random search over training settings
//! (`model::search`). Each trial trains with a reduced budget and is scored
//! on the validation tail of every recording (the data given; never a test
//! set). After every trial the output directory gets `trials.csv` (all trials
//! so far) and `best.toml` (the best trial's settings with the base config's
//! full budget, usable by `train --config`), so an interrupted search
//! (Ctrl-C, SIGTERM) keeps everything it finished.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use tracing::{info, warn};

use crate::cli::TuneArgs;
use crate::model::search::{best_index, sample_trials, trial_score, TrialBudget};
use crate::model::train::{train_with, RunOptions, TrainConfig, TrainError, TrainReport};
use crate::model::Smoothing;

use super::replay::stop_on_signal;
use super::train::{load_train_config, read_options, train_config_toml, train_error, train_threads, LoadedData};
use super::UsageError;

/// How a trial ended.
#[derive(Debug, Clone)]
enum TrialStatus {
    Done(TrainReport),
    /// The loss diverged (the settings are kept in the table).
    Failed(String),
    /// Stopped by a signal before it finished.
    Interrupted,
}

/// One row of the trials table.
struct TrialRow {
    index: usize,
    cfg: TrainConfig,
    status: TrialStatus,
    score: Option<f64>,
}

fn check_args(a: &TuneArgs) -> anyhow::Result<()> {
    if a.trials == 0 {
        return Err(UsageError("--trials: 0 trials; expected >= 1".into()).into());
    }
    if a.trial_epochs == 0 {
        return Err(UsageError("--trial-epochs: 0 epochs; expected >= 1".into()).into());
    }
    if let Some(s) = a.trial_seconds.filter(|s| !(*s > 0.0 && s.is_finite())) {
        return Err(UsageError(format!("--trial-seconds: {s}; expected a positive number of seconds")).into());
    }
    Ok(())
}

pub fn run(a: TuneArgs) -> anyhow::Result<()> {
    check_args(&a)?;
    let threads = train_threads(a.threads)?;
    let base = match &a.config {
        Some(p) => load_train_config(p)?,
        None => TrainConfig::default(),
    };
    let data = LoadedData::read(&a.data, &read_options(&a.paths()))?;
    let sets = data.sets();
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating output directory {}", a.out.display()))?;
    let stop = Arc::new(AtomicBool::new(false));
    stop_on_signal(stop.clone());
    let configs = sample_trials(&base, a.trials, a.seed);
    let budget = TrialBudget { max_seconds: a.trial_seconds, ..TrialBudget::epochs(a.trial_epochs) };
    let bar = progress_bar(a.quiet, a.trials);
    let mut rows: Vec<TrialRow> = Vec::new();
    for (index, cfg) in configs.into_iter().enumerate() {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let tcfg = budget.apply(&cfg);
        let run = RunOptions { threads, cancel: &stop };
        let mut progress = |e: &crate::model::train::EpochInfo| {
            bar.set_message(format!("trial {index}: epoch {}/{} val R² {:.4}", e.epoch, e.max_epochs, e.val_r2));
        };
        let status = match train_with(&sets, &tcfg, &run, &mut progress) {
            Ok(o) => TrialStatus::Done(o.report),
            Err(TrainError::Cancelled) => TrialStatus::Interrupted,
            Err(e @ TrainError::NonFinite { .. }) => TrialStatus::Failed(e.to_string()),
            Err(e) => return Err(train_error(e)).with_context(|| format!("trial {index}")),
        };
        let score = match &status {
            TrialStatus::Done(r) => Some(trial_score(cfg.mode, r)).filter(|s| s.is_finite()),
            _ => None,
        };
        log_trial(index, &status, score);
        rows.push(TrialRow { index, cfg, status, score });
        write_outputs(&a.out, &rows, &base, a.seed)?;
        bar.inc(1);
    }
    bar.finish_and_clear();
    summarise(&a.out, &rows, a.trials, stop.load(Ordering::Relaxed));
    Ok(())
}

fn progress_bar(quiet: bool, trials: usize) -> ProgressBar {
    let bar = if quiet { ProgressBar::hidden() } else { ProgressBar::new(trials as u64) };
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] trial {pos}/{len} {msg}")
            .expect("invariant: static template parses")
            .progress_chars("=> "),
    );
    bar
}

fn log_trial(index: usize, status: &TrialStatus, score: Option<f64>) {
    match status {
        TrialStatus::Done(r) => info!(
            trial = index,
            score = format!("{:.4}", score.unwrap_or(f64::NAN)),
            epochs = r.epochs_run,
            seconds = format!("{:.1}", r.seconds),
            "Trial finished."
        ),
        TrialStatus::Failed(e) => warn!(trial = index, error = %e, "Trial failed."),
        TrialStatus::Interrupted => warn!(trial = index, "Trial interrupted; writing the finished trials."),
    }
}

fn summarise(out: &Path, rows: &[TrialRow], trials: usize, interrupted: bool) {
    let scores: Vec<Option<f64>> = rows.iter().map(|r| r.score).collect();
    let done = rows.iter().filter(|r| matches!(r.status, TrialStatus::Done(_))).count();
    match best_index(&scores) {
        Some(b) => println!(
            "best trial {b} of {done} finished (of {trials}): validation score {:.4}; config {}, table {}",
            scores[b].unwrap_or(f64::NAN),
            out.join("best.toml").display(),
            out.join("trials.csv").display()
        ),
        None => println!("no trial finished with a finite score; table {}", out.join("trials.csv").display()),
    }
    if interrupted {
        println!("interrupted: {done} of {trials} trials finished");
    }
}

/// Writes `trials.csv` and, when some trial has a score, `best.toml` (each
/// through a temporary file renamed into place).
fn write_outputs(out: &Path, rows: &[TrialRow], base: &TrainConfig, seed: u64) -> anyhow::Result<()> {
    write_atomic(&out.join("trials.csv"), &trials_csv(rows))?;
    let scores: Vec<Option<f64>> = rows.iter().map(|r| r.score).collect();
    if let Some(b) = best_index(&scores) {
        let row = &rows[b];
        // The winner's settings with the base's full training budget.
        let cfg = TrainConfig {
            max_epochs: base.max_epochs,
            patience: base.patience,
            max_seconds: base.max_seconds,
            ..row.cfg.clone()
        };
        let header = format!(
            "# alternator tune --seed {seed}: best of {} trials so far is trial {}, validation score {:.4}.\n",
            rows.len(),
            row.index,
            row.score.unwrap_or(f64::NAN)
        );
        write_atomic(&out.join("best.toml"), &(header + &train_config_toml(&cfg)?))?;
    }
    Ok(())
}

fn write_atomic(path: &Path, text: &str) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))
}

fn widths(w: &[usize]) -> String {
    w.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(";")
}

fn smoothing_label(s: Smoothing) -> String {
    match s {
        Smoothing::None => "none".into(),
        Smoothing::Exponential { tau_bins } => format!("exponential:{tau_bins}"),
        Smoothing::HalfGaussian { sigma_bins } => format!("half_gaussian:{sigma_bins}"),
    }
}

/// The trials table: one row per trial, its status, score and settings.
fn trials_csv(rows: &[TrialRow]) -> String {
    let mut s = String::from(
        "trial,status,score,val_r2,val_x_mse,epochs,best_epoch,seconds,history,ftn_hidden,otn_hidden,latent_dims,\
         alpha,sigma_x,sigma_z,lambda_x,lambda_z,lr,weight_decay,smoothing,error\n",
    );
    for r in rows {
        let (status, rep, err) = match &r.status {
            TrialStatus::Done(rep) => ("done", Some(rep), String::new()),
            TrialStatus::Failed(e) => ("failed", None, e.replace(',', ";")),
            TrialStatus::Interrupted => ("interrupted", None, String::new()),
        };
        let num = |v: Option<f64>| v.map(|v| format!("{v:.5}")).unwrap_or_default();
        let c = &r.cfg;
        let _ = writeln!(
            s,
            "{},{status},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{err}",
            r.index,
            num(r.score),
            num(rep.map(|x| x.val_r2_mean)),
            num(rep.map(|x| x.val_x_mse)),
            rep.map(|x| x.epochs_run.to_string()).unwrap_or_default(),
            rep.map(|x| x.best_epoch.to_string()).unwrap_or_default(),
            rep.map(|x| format!("{:.1}", x.seconds)).unwrap_or_default(),
            c.history,
            widths(&c.ftn_hidden),
            widths(&c.otn_hidden),
            c.latent_dims,
            c.alpha,
            c.sigma_x,
            c.sigma_z(),
            c.lambda_x,
            c.lambda_z,
            c.lr,
            c.weight_decay,
            smoothing_label(c.smoothing),
        );
    }
    s
}
