//! NWB files as input and output: files written by pynwb itself are read into
//! the same bins as the equivalent binned session, train and eval on them
//! match training on the binned session, replay streams them into a daemon,
//! a daemon session exported to NWB reads back in pynwb with equal values and
//! passes nwbinspector, and broken files give their specific errors.
//!
//! Needs python3 with pynwb, nwbinspector and h5py (scripts/setup.sh).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use alternator::recording::nwb::NwbOptions;
use alternator::recording::{NwbError, ReadOptions, Recording, RecordingError};
use alternator::simulate::{simulate_reach, SimParams};
use common::{config, demo, Rig};
use serde_json::Value;

const FIXTURES: &str = "tests/python/nwb_fixtures.py";
const HAND_VEL: &str = "processing/behavior/hand_vel";

/// Runs the pynwb fixture script and parses its JSON line.
fn python(args: &[&str]) -> Value {
    let probe = Command::new("python3").args(["-c", "import pynwb, nwbinspector, h5py"]).output();
    match probe {
        Ok(o) if o.status.success() => {}
        _ => panic!("python3 cannot import pynwb/nwbinspector/h5py; run scripts/setup.sh"),
    }
    let out = Command::new("python3").arg(FIXTURES).args(args).output().unwrap();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn bin(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_alternator")).args(args).output().unwrap()
}

fn ok(args: &[&str]) -> String {
    let out = bin(args);
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A simulated binned session and the pynwb file holding its spikes as times.
fn simulated_pair(dir: &Path, minutes: f64, seed: u64) -> (PathBuf, PathBuf, Value) {
    let h5 = dir.join(format!("sim-{seed}.h5"));
    let nwb = dir.join(format!("sim-{seed}.nwb"));
    simulate_reach(&SimParams { minutes, seed, array_seed: 0, channels: 96 }).write(&h5).unwrap();
    let info = python(&["units", s(&h5), s(&nwb), &seed.to_string()]);
    (h5, nwb, info)
}

fn nwb_opts(behavior: &str) -> ReadOptions {
    ReadOptions {
        behavior_path: Some(behavior.to_string()),
        nwb: NwbOptions { unit_filter: Some("heldout=false".parse().unwrap()), ..NwbOptions::default() },
        ..ReadOptions::default()
    }
}

fn r2(eval_json: &str) -> f64 {
    let v: Value = serde_json::from_str(eval_json).unwrap();
    v["alternator"]["r2"].as_f64().unwrap()
}

#[test]
fn pynwb_units_session_bins_trains_and_evaluates_like_the_binned_session() {
    let dir = tempfile::tempdir().unwrap();
    let (h5, nwb, info) = simulated_pair(dir.path(), 1.0, 5);
    let binned = Recording::read(&h5, &ReadOptions::default()).unwrap();
    let rec = Recording::read(&nwb, &nwb_opts(HAND_VEL)).unwrap();
    assert_eq!(info["units"], 99);
    assert_eq!((rec.n_bins(), rec.n_channels()), (binned.n_bins(), 96), "held-out units are left out");
    assert_eq!(rec.spikes, binned.spikes, "spike times binned back to the simulator's counts");
    assert_eq!(rec.behavior, binned.behavior, "one hand_vel sample per bin");
    assert_eq!(rec.behavior_valid, None);
    assert_eq!(rec.bin_seconds, 0.02);

    // Trials and the split column restrict the labelled bins.
    let mut val = nwb_opts(HAND_VEL);
    val.nwb.split = Some("val".into());
    let rec_val = Recording::read(&nwb, &val).unwrap();
    assert_eq!(rec_val.labelled_bins() as u64, info["val_bins"].as_u64().unwrap());
    assert!(rec_val.labelled_bins() > 0 && rec_val.labelled_bins() < rec_val.n_bins());

    // Train and eval through the binary on both files with the same small config.
    let cfg = dir.path().join("train.toml");
    std::fs::write(&cfg, "[train]\nftn_hidden = [32]\notn_hidden = [16]\nmax_epochs = 4\nwindow_bins = 100\n").unwrap();
    let (m_nwb, m_h5) = (dir.path().join("nwb.safetensors"), dir.path().join("h5.safetensors"));
    let nwb_flags = ["--behavior-path", HAND_VEL, "--unit-filter", "heldout=false"];
    let mut args = vec!["train", "--data", s(&nwb), "--out", s(&m_nwb), "--config", s(&cfg), "--quiet"];
    args.extend(nwb_flags);
    ok(&args);
    ok(&["train", "--data", s(&h5), "--out", s(&m_h5), "--config", s(&cfg), "--quiet"]);
    let mut args = vec!["eval", "--model", s(&m_nwb), "--data", s(&nwb), "--json", "--no-baselines"];
    args.extend(nwb_flags);
    let r2_nwb = r2(&ok(&args));
    let r2_h5 = r2(&ok(&["eval", "--model", s(&m_h5), "--data", s(&h5), "--json", "--no-baselines"]));
    eprintln!("eval R²: NWB {r2_nwb:.6}, binned HDF5 {r2_h5:.6}");
    assert!(r2_nwb.is_finite() && (r2_nwb - r2_h5).abs() <= 0.01, "NWB {r2_nwb} vs binned {r2_h5}");

    // A model records its bin width, and eval bins an NWB file at that width unless told otherwise.
    let m40 = dir.path().join("40ms.safetensors");
    let mut args = vec!["train", "--data", s(&nwb), "--out", s(&m40), "--config", s(&cfg), "--quiet"];
    args.extend(["--epochs", "1", "--bin-ms", "40"]);
    args.extend(nwb_flags);
    ok(&args);
    let meta = alternator::model::ModelFile::load(&m40).unwrap().meta;
    assert_eq!(meta.training_bin_seconds(), Some(0.04));
    let mut args = vec!["eval", "--model", s(&m40), "--data", s(&nwb), "--json", "--no-baselines"];
    args.extend(nwb_flags);
    let report: Value = serde_json::from_str(&ok(&args)).unwrap();
    assert_eq!(report["bins"].as_u64().unwrap() as usize, binned.n_bins() / 2, "binned at the model's 40 ms");
    args.extend(["--bin-ms", "20"]);
    let report: Value = serde_json::from_str(&ok(&args)).unwrap();
    assert_eq!(report["bins"].as_u64().unwrap() as usize, binned.n_bins(), "--bin-ms overrides the model's width");
}

#[test]
fn pynwb_tutorial_layout_position_spatial_series_with_rate() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tutorial.nwb");
    let want = python(&["tutorial", s(&path), "7"]);
    // The container path picks its only SpatialSeries.
    let opts = ReadOptions { behavior_path: Some("processing/behavior/Position".into()), ..ReadOptions::default() };
    let rec = Recording::read(&path, &opts).unwrap();
    let n = want["bins"].as_u64().unwrap() as usize;
    assert_eq!((rec.n_bins(), rec.n_channels(), rec.n_behavior()), (n, 4, 2));
    for (t, row) in want["behavior"].as_array().unwrap().iter().enumerate() {
        for (d, v) in row.as_array().unwrap().iter().enumerate() {
            let got = f64::from(rec.behavior.as_ref().unwrap().get(t, d));
            let v = v.as_f64().unwrap();
            assert!((got - v).abs() <= 1e-6 * v.abs().max(1.0), "bin {t} dim {d}: {got} vs {v}");
        }
    }
    for (t, row) in want["counts"].as_array().unwrap().iter().enumerate() {
        let counts: Vec<f32> = row.as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
        assert_eq!(rec.spikes.row(t), counts.as_slice(), "bin {t}");
    }
    // The default behaviour path finds the only series under processing/behavior.
    let auto = Recording::read(&path, &ReadOptions::default()).unwrap();
    assert_eq!(auto.behavior, rec.behavior);
}

fn read_err(path: &Path, opts: &ReadOptions) -> (RecordingError, String) {
    let e = Recording::read(path, opts).unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains(s(path)), "the error names the file: {msg}");
    (e, msg)
}

#[test]
fn broken_nwb_files_give_their_own_errors() {
    let dir = tempfile::tempdir().unwrap();
    let info = python(&["bad", s(dir.path())]);
    let none = ReadOptions { behavior_path: None, ..ReadOptions::default() };

    let (e, msg) = read_err(&dir.path().join("no-units.nwb"), &none);
    assert!(matches!(e, RecordingError::Nwb(NwbError::MissingUnits { .. })), "{msg}");
    assert!(msg.contains("/units") && msg.contains("/processing/behavior/hand_vel"), "{msg}");

    let (e, msg) = read_err(&dir.path().join("bad-index.nwb"), &none);
    assert!(matches!(e, RecordingError::Nwb(NwbError::BadIndex { .. })), "{msg}");
    assert!(msg.contains("/units/spike_times_index") && msg.contains('7') && msg.contains('5'), "{msg}");
    assert_eq!(info["index_dtype"], "uint8");

    let (e, msg) = read_err(&dir.path().join("empty.nwb"), &none);
    assert!(matches!(e, RecordingError::Nwb(NwbError::EmptySession { .. })), "{msg}");
    assert!(msg.contains("zero-length session"), "{msg}");

    // Wrong behaviour path: the error lists the TimeSeries that are there.
    let (_, nwb, _) = simulated_pair(dir.path(), 0.1, 2);
    let (e, msg) = read_err(&nwb, &nwb_opts("processing/behavior/hand_velocity"));
    assert!(matches!(e, RecordingError::Nwb(NwbError::BehaviorNotFound { .. })), "{msg}");
    assert!(
        msg.contains("hand_velocity")
            && msg.contains("found: /processing/behavior/hand_pos, /processing/behavior/hand_vel"),
        "{msg}"
    );
    // No behaviour path and two candidates: they are listed.
    let (e, msg) = read_err(&nwb, &nwb_opts("/behavior"));
    assert!(matches!(e, RecordingError::Nwb(NwbError::AmbiguousBehavior { .. })), "{msg}");
    assert!(msg.contains("/processing/behavior/hand_pos") && msg.contains("--behavior-path"), "{msg}");

    // Through the binary: non-zero exit and the same message.
    let out = bin(&["train", "--data", s(&dir.path().join("no-units.nwb")), "--out", s(&dir.path().join("m"))]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("no units table"), "{err}");
}

fn nums(v: &Value) -> Vec<f64> {
    fn flat(v: &Value, out: &mut Vec<f64>) {
        match v {
            Value::Array(a) => a.iter().for_each(|x| flat(x, out)),
            other => out.push(other.as_f64().unwrap()),
        }
    }
    let mut out = Vec::new();
    flat(v, &mut out);
    out
}

#[test]
fn replay_streams_an_nwb_file_and_the_session_exports_back_to_nwb() {
    let dir = tempfile::tempdir().unwrap();
    let (h5, nwb, _) = simulated_pair(dir.path(), 0.2, 9);
    let binned = Recording::read(&h5, &ReadOptions::default()).unwrap();
    let record = dir.path().join("sessions");
    let (mf, _) = demo(1);
    let rig = Rig::start(&config(&record), mf.clone());
    let (ingest, ctl) = (rig.daemon.ingest_endpoint.clone(), rig.daemon.control_endpoint.clone().unwrap());
    let args = ["replay", s(&nwb), "--endpoint", &ingest, "--control", &ctl, "--max", "--behavior-path", HAND_VEL];
    let mut args = args.to_vec();
    args.extend(["--unit-filter", "heldout=false"]);
    ok(&args);
    rig.wait_outputs(binned.n_bins() as u64);
    let (summary, got) = rig.finish();
    assert_eq!(got.len(), binned.n_bins(), "one output per NWB bin");
    let offline = common::offline(&mf, &binned, |_| false);
    let live: Vec<f32> = got.iter().flat_map(|g| g.values.clone()).collect();
    assert_eq!(live, offline.data, "decoding the streamed NWB file equals decoding the binned session");

    // Export the daemon's session file and read it back with pynwb.
    let session = summary.sessions[0].path.clone();
    let out = dir.path().join("export.nwb");
    ok(&[
        "export-nwb",
        s(&session),
        "--out",
        s(&out),
        "--subject",
        "monkey-j",
        "--species",
        "Macaca mulatta",
        "--sex",
        "M",
        "--age",
        "P9Y",
        "--identifier",
        "export-test-1",
    ]);
    let py = python(&["read-export", s(&out)]);
    let rec = Recording::read(&session, &ReadOptions::default()).unwrap();
    assert_eq!(py["identifier"], "export-test-1");
    assert_eq!(py["subject_id"], "monkey-j");
    assert_eq!(py["spikes_unit"], "counts");
    assert!(py["spikes_description"].as_str().unwrap().contains("20 ms"), "{}", py["spikes_description"]);
    let spikes: Vec<f32> = nums(&py["spikes"]).iter().map(|&v| v as f32).collect();
    assert_eq!(spikes, rec.spikes.data, "binned counts equal");
    assert_eq!(spikes, binned.spikes.data, "and equal to what was streamed");
    let times = nums(&py["spike_times"]);
    assert!((times[1] - 0.02).abs() < 1e-12 && times[0] == 0.0, "{:?}", &times[..2]);
    let beh: Vec<f32> = nums(&py["behavior"]).iter().map(|&v| v as f32).collect();
    let labelled: Vec<f32> = (0..rec.n_bins())
        .filter(|&t| rec.is_labelled(t))
        .flat_map(|t| rec.behavior.as_ref().unwrap().row(t).to_vec())
        .collect();
    assert!(!labelled.is_empty());
    assert_eq!(beh, labelled, "true behaviour equal");
    let decoded: Vec<f32> = nums(&py["decoded"]).iter().map(|&v| v as f32).collect();
    assert_eq!(decoded, live, "decoded behaviour equal");
    assert_eq!(nums(&py["imputed"]).len(), got.len());
    let model_id = &mf.meta.id;
    assert!(py["notes"].as_str().unwrap().contains(model_id.as_str()), "{}", py["notes"]);
    assert!(py["data_collection"].as_str().unwrap().contains("[ingest]"), "{}", py["data_collection"]);

    let findings = py["findings"].as_array().unwrap();
    eprintln!("nwbinspector: {findings:#?}");
    let serious: Vec<&Value> = findings
        .iter()
        .filter(|f| matches!(f["importance"].as_str(), Some("CRITICAL" | "BEST_PRACTICE_VIOLATION" | "ERROR")))
        .collect();
    assert!(serious.is_empty(), "nwbinspector: {serious:#?}");
}
