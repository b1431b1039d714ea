//! Retraining inside a running daemon: a poor model is replaced by a
//! retrained one without missing a bin; a worse candidate is rejected; the
//! models directory records generations, survives restarts and rolls back.

mod common;

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use alternator::client::Received;
use alternator::daemon::config::ServeConfig;
use alternator::daemon::control;
use alternator::daemon::models::{GenStatus, ModelStore};
use alternator::daemon::retrain::live_model_path;
use alternator::fixtures::synthetic_model;
use alternator::matrix::Matrix;
use alternator::metrics::Metrics;
use alternator::model::train::TrainConfig;
use alternator::model::{ModelFile, Smoothing};
use alternator::recording::Recording;
use alternator::replay::ReplayOptions;
use common::{config, demo, Rig, MODEL};

fn retrain_config(dir: &Path, train: TrainConfig) -> ServeConfig {
    let mut c = config(&dir.join("sessions"));
    c.model.models_dir = dir.join("models");
    c.retrain.enabled = true;
    c.retrain.min_improvement_r2 = 0.05;
    c.retrain.holdout_fraction = 0.2;
    c.retrain.train = train;
    c
}

fn small_training() -> TrainConfig {
    TrainConfig {
        ftn_hidden: vec![64],
        otn_hidden: vec![32],
        history: 2,
        smoothing: Smoothing::Exponential { tau_bins: 2.0 },
        window_bins: 100,
        batch_size: 8,
        lr: 3e-3,
        max_epochs: 25,
        patience: 6,
        max_seconds: Some(60.0),
        ..TrainConfig::default()
    }
}

fn status(rig: &Rig) -> serde_json::Value {
    control::request(&rig.ctx, rig.daemon.control_endpoint.as_ref().unwrap(), "status", 5000).unwrap()
}

/// Streams bins `from..to` of `rec` (with behaviour), paced at `rate` bins/s (None: max).
fn stream(rig: &mut Rig, rec: &Recording, from: usize, to: usize, rate: Option<f64>) {
    let part = rec.slice_bins(from, to);
    let speed = rate.map(|r| r * rec.bin_seconds);
    let opts = ReplayOptions { speed, first_seq: from as u64, ..ReplayOptions::default() };
    rig.publisher.replay(&part, &opts, &AtomicBool::new(false)).unwrap();
}

fn wait_for(rig: &Rig, what: &str, pred: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let st = status(rig);
        if pred(&st) {
            return st;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}: {st}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn r2(got: &[Received], truth: &Matrix, range: std::ops::Range<usize>) -> f64 {
    let n = range.len();
    let mut t = Matrix::zeros(n, truth.cols);
    let mut p = Matrix::zeros(n, truth.cols);
    for (k, i) in range.enumerate() {
        t.row_mut(k).copy_from_slice(truth.row(i));
        p.row_mut(k).copy_from_slice(&got[i].values);
    }
    Metrics::compute(&t, &p).mean_r2()
}

#[test]
fn poor_model_is_retrained_and_swapped_without_missing_a_bin() {
    let dir = tempfile::tempdir().unwrap();
    let (_, rec) = demo(6000);
    let poor = synthetic_model(rec.n_channels(), 7);
    let cfg = retrain_config(dir.path(), small_training());
    let mut rig = Rig::start(&cfg, poor.clone());

    // Labelled calibration block.
    stream(&mut rig, &rec, 0, 3000, None);
    wait_for(&rig, "3000 labelled bins", |s| s["counters"]["behavior_in"] == 3000 && s["counters"]["bins_in"] == 3000);
    let r = control::request(&rig.ctx, rig.daemon.control_endpoint.as_ref().unwrap(), "retrain", 5000).unwrap();
    assert_eq!(r["ok"], true, "{r}");
    // Keep streaming while the candidate trains.
    stream(&mut rig, &rec, 3000, 4500, Some(500.0));
    let st = wait_for(&rig, "a retraining decision", |s| s["retrain"]["runs"] == 1 && s["retrain"]["running"] == false);
    assert_eq!(st["retrain"]["accepted"], 1, "{st}");
    assert_ne!(st["model_id"], poor.meta.id, "model swapped in");
    let decision = &st["retrain"]["last_decision"];
    assert!(decision["candidate_r2"].as_f64().unwrap() > decision["live_r2"].as_f64().unwrap() + 0.05, "{decision}");
    assert!(
        decision["data"].as_array().unwrap().iter().any(|d| d["path"].as_str().unwrap().contains("session-")),
        "trained on the daemon's own session: {decision}"
    );
    assert_eq!(st["counters"]["swaps"], 1);
    // After the swap.
    stream(&mut rig, &rec, 4500, 6000, None);
    rig.wait_outputs(6000);
    let (summary, got) = rig.finish();

    assert_eq!(got.len(), 6000, "an output for every bin, during training and at the swap");
    assert!(got.iter().enumerate().all(|(i, r)| r.seq == i as u64), "in seq order");
    assert_eq!(summary.counters.imputed, 0);
    assert_eq!(summary.counters.dropped_total(), 0);
    let truth = rec.behavior.as_ref().unwrap();
    let before = r2(&got, truth, 500..3000);
    let after = r2(&got, truth, 4600..6000);
    assert!(after > 0.5 && after > before + 0.3, "R² before the swap {before:.3}, after {after:.3}");

    // The models directory: gen 1 = the initial model, gen 2 = the accepted candidate, live.
    let store = ModelStore::new(&cfg.model.models_dir);
    let rows = store.list().unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows[0].status, GenStatus::Accepted);
    assert_eq!(rows[1].status, GenStatus::Live);
    assert_eq!(rows[1].parent, Some(1));
    let gen2 = ModelFile::load(&store.path(2)).unwrap();
    assert_eq!(gen2.meta.decision.as_ref().unwrap()["status"], "accepted");
    assert_eq!(gen2.meta.parent.as_deref(), Some(poor.meta.id.as_str()));
    // A restart loads the newest accepted model.
    assert_eq!(live_model_path(&cfg.model.models_dir).unwrap(), Some(store.path(2)));
    // `models rollback 1` marks the initial model live again for the next start.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_alternator"))
        .args(["models", "rollback", "1", "--control", "", "--models-dir"])
        .arg(&cfg.model.models_dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(live_model_path(&cfg.model.models_dir).unwrap(), Some(store.path(1)));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_alternator"))
        .args(["models", "list", "--json", "--models-dir"])
        .arg(&cfg.model.models_dir)
        .output()
        .unwrap();
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list[0]["status"], "live");
    assert_eq!(list[1]["status"], "accepted");
    assert_eq!(list[1]["parent"], 1);
    assert!(list[1]["val_r2"].as_f64().unwrap() > 0.5);
}

#[test]
fn worse_candidate_is_rejected_and_the_live_model_stays() {
    let dir = tempfile::tempdir().unwrap();
    let (good, rec) = demo(2500);
    // Settings that cannot learn: one epoch at a negligible learning rate.
    let hopeless = TrainConfig { lr: 1e-7, max_epochs: 1, ..small_training() };
    let cfg = retrain_config(dir.path(), hopeless);
    let mut rig = Rig::start(&cfg, good.clone());
    stream(&mut rig, &rec, 0, 2000, None);
    wait_for(&rig, "2000 labelled bins", |s| s["counters"]["behavior_in"] == 2000);
    assert!(rig.daemon.trigger_retrain());
    stream(&mut rig, &rec, 2000, 2500, Some(500.0));
    let st = wait_for(&rig, "a retraining decision", |s| s["retrain"]["runs"] == 1 && s["retrain"]["running"] == false);
    assert_eq!(st["retrain"]["rejected"], 1, "{st}");
    assert_eq!(st["model_id"], good.meta.id, "live model unchanged");
    assert_eq!(st["counters"]["swaps"], 0);
    // A rejected generation cannot be made live.
    let r = control::request(&rig.ctx, rig.daemon.control_endpoint.as_ref().unwrap(), "rollback 2", 5000).unwrap();
    assert_eq!(r["ok"], false, "{r}");
    assert!(r["error"].as_str().unwrap().contains("rejected"), "{r}");
    rig.wait_outputs(2500);
    let (_, got) = rig.finish();
    assert_eq!(got.len(), 2500);
    let rows = ModelStore::new(&cfg.model.models_dir).list().unwrap();
    assert_eq!(rows.iter().map(|r| r.status).collect::<Vec<_>>(), vec![GenStatus::Live, GenStatus::Rejected]);
    assert_eq!(live_model_path(&cfg.model.models_dir).unwrap(), Some(ModelStore::new(&cfg.model.models_dir).path(1)));
    let _ = MODEL;
}

#[test]
fn failed_runs_keep_the_live_model_and_skip_corrupt_files() {
    let dir = tempfile::tempdir().unwrap();
    let (good, _) = demo(10);
    let corrupt = dir.path().join("corrupt.h5");
    std::fs::write(&corrupt, b"this is not HDF5").unwrap();
    let mut cfg = retrain_config(dir.path(), small_training());
    cfg.retrain.recordings = vec![corrupt.clone()];
    let rig = Rig::start(&cfg, good.clone());
    assert!(rig.daemon.trigger_retrain());
    let st = wait_for(&rig, "a failed run", |s| s["retrain"]["failed"] == 1);
    let reason = st["retrain"]["last_decision"]["reason"].as_str().unwrap();
    assert!(reason.contains("no labelled data"), "{reason}");
    assert_eq!(st["model_id"], good.meta.id);
    let _ = rig.finish();
}

/// Training that finishes in a moment: these tests are about what starts a
/// run, not about how good its candidate is.
fn quick_training() -> TrainConfig {
    TrainConfig { max_epochs: 1, max_seconds: Some(20.0), ..small_training() }
}

/// The (generation, status) rows of `alternator models list`'s table.
fn listed(models_dir: &Path) -> Vec<(u64, String)> {
    let out = models_cli(models_dir, &["list"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut lines = text.lines();
    assert!(lines.next().is_some_and(|h| h.contains("gen") && h.contains("status")), "no header: {text}");
    lines
        .map(|l| {
            let mut cols = l.split_whitespace();
            let gen = cols.next().and_then(|g| g.parse().ok()).unwrap_or_else(|| panic!("bad row {l:?}"));
            (gen, cols.next().unwrap_or_default().to_string())
        })
        .collect()
}

fn models_cli(models_dir: &Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_alternator"))
        .arg("models")
        .args(args)
        .arg("--models-dir")
        .arg(models_dir)
        .output()
        .unwrap()
}

#[test]
fn the_timer_alone_starts_retraining_runs() {
    let dir = tempfile::tempdir().unwrap();
    let (good, rec) = demo(1000);
    let mut cfg = retrain_config(dir.path(), quick_training());
    cfg.retrain.interval_s = 1;
    assert_eq!(cfg.retrain.after_labelled_bins, 0, "the labelled-bin trigger is off");
    let mut rig = Rig::start(&cfg, good);
    stream(&mut rig, &rec, 0, 1000, None);
    // No request is made: every run comes from the timer. (One that fires
    // before the bins are on disk fails for lack of labelled data; the
    // next one trains.)
    let st = wait_for(&rig, "two timer runs, the last one trained", |s| {
        let r = &s["retrain"];
        r["runs"].as_u64().unwrap() >= 2 && r["running"] == false && r["last_decision"]["status"] != "failed"
    });
    assert_eq!(st["retrain"]["last_decision"]["trigger"], "interval", "{st}");
    let store = ModelStore::new(&cfg.model.models_dir);
    let candidates = &store.generations().unwrap()[1..];
    assert!(!candidates.is_empty());
    for &gen in candidates {
        let decision = ModelFile::load(&store.path(gen)).unwrap().meta.decision.unwrap();
        assert_eq!(decision["trigger"], "interval", "generation {gen}: {decision}");
    }
    let _ = rig.finish();
}

#[test]
fn new_labelled_bins_alone_start_a_run_and_the_cli_rolls_back_the_running_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let (good, rec) = demo(1000);
    let mut cfg = retrain_config(dir.path(), quick_training());
    cfg.retrain.after_labelled_bins = 1000;
    // Accept any candidate, so that two usable generations exist to roll back between.
    cfg.retrain.min_improvement_r2 = -1e3;
    assert_eq!(cfg.retrain.interval_s, 0, "the timer is off");
    let mut rig = Rig::start(&cfg, good.clone());
    stream(&mut rig, &rec, 0, 600, None);
    wait_for(&rig, "600 labelled bins", |s| s["counters"]["behavior_in"] == 600);
    // The retrainer looks at the count every 200 ms: give it several looks.
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(status(&rig)["retrain"]["runs"], 0, "600 of 1000 labelled bins started a run");
    stream(&mut rig, &rec, 600, 1000, None);
    let st = wait_for(&rig, "a run after 1000 labelled bins", |s| {
        s["retrain"]["runs"] == 1 && s["retrain"]["running"] == false
    });
    let d = &st["retrain"]["last_decision"];
    assert_eq!(d["trigger"], "new labelled bins", "{st}");
    assert_eq!(d["status"], "accepted", "{st}");
    assert_ne!(st["model_id"], good.meta.id, "the candidate was swapped in");

    let models = &cfg.model.models_dir;
    assert_eq!(listed(models), [(1, "accepted".to_string()), (2, "live".to_string())]);
    let ctl = rig.daemon.control_endpoint.clone().unwrap();
    let out = models_cli(models, &["rollback", "1", "--control", &ctl]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && stdout.contains("running daemon at"), "{stdout}");
    let st = status(&rig);
    assert_eq!(st["model_id"], good.meta.id, "the running daemon switched back: {st}");
    assert_eq!(st["retrain"]["live_generation"], 1);
    assert_eq!(listed(models), [(1, "live".to_string()), (2, "accepted".to_string())]);

    let out = models_cli(models, &["rollback", "7", "--control", ""]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{err}");
    assert!(err.contains("generation 7"), "{err}");
    rig.wait_outputs(1000);
    let (_, got) = rig.finish();
    assert_eq!(got.len(), 1000, "no bin missed through the run, the swap and the rollback");
}
