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
