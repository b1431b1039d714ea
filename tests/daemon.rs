//! The daemon against real parts: ZeroMQ over TCP loopback, the real model,
//! real HDF5 session files, and (for shutdown) the real binary and SIGTERM.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use alternator::client::Received;
use alternator::daemon::{control, Daemon};
use alternator::matrix::Matrix;
use alternator::recording::{ReadOptions, Recording};
use alternator::replay::{Publisher, ReplayOptions};
use alternator::wire::{encode_frame, DropReason, Dtype, Header, FLAG_IMPUTED};
use common::{config, demo, free_port, offline, Rig, MODEL};

fn assert_matches(got: &[Received], want: &Matrix) {
    assert_eq!(got.len(), want.rows, "one output per input timestep");
    for (i, r) in got.iter().enumerate() {
        assert_eq!(r.seq, i as u64, "outputs in seq order");
        for (j, v) in r.values.iter().enumerate() {
            let w = want.get(i, j);
            assert_eq!(v.to_bits(), w.to_bits(), "seq {i} dim {j}: live {v} vs offline {w} (bit for bit)");
        }
    }
}

#[test]
fn live_decoding_equals_offline_eval_one_output_per_bin_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let (mf, rec) = demo(1500);
    let mut cfg = config(dir.path());
    cfg.decode.track_prediction = true;
    let mut rig = Rig::start(&cfg, mf.clone());
    let stop = AtomicBool::new(false);
    let r = rig.publisher.replay(&rec, &ReplayOptions { speed: None, ..ReplayOptions::default() }, &stop).unwrap();
    assert_eq!(r.bins_sent, 1500);
    rig.wait_outputs(1500);
    let (summary, got) = rig.finish();
    assert_matches(&got, &offline(&mf, &rec, |_| false));
    assert!(got.iter().all(|r| r.flags == 0));
    // The same numbers `eval` reports.
    let report = alternator::evaluation::evaluate(&mf, &rec, &[], 10).unwrap();
    for (i, r) in got.iter().enumerate() {
        assert_eq!(r.values.as_slice(), report.decoded.row(i));
    }
    assert_eq!(summary.counters.bins_in, 1500);
    assert_eq!(summary.counters.dropped_total(), 0);
    assert_eq!(summary.counters.record_lost, 0);
    assert_eq!(summary.latency.count, 1500);
    // The per-bin prediction error is recorded, equal to the kernel's offline.
    let mut k = alternator::model::StepKernel::new(mf.model.clone());
    k.set_track_prediction(true);
    let mut out = [0f32; 2];
    let want: Vec<f32> = (0..rec.n_bins())
        .map(|t| {
            k.step(rec.spikes.row(t), &mut out);
            k.last_prediction_error()
        })
        .collect();
    let f = hdf5_metno::File::open(&summary.sessions[0].path).unwrap();
    let got_err = f.dataset("prediction_error").unwrap().read_raw::<f32>().unwrap();
    assert_eq!(got_err.len(), 1500);
    assert!(got_err.iter().skip(1).all(|v| v.is_finite() && *v > 0.0));
    assert_eq!(got_err[1..], want[1..]);
}

/// Gaps are imputed exactly as offline decoding imputes the same missing
/// bins, bit for bit, whatever the model's smoothing.
#[test]
fn dropped_seqs_are_imputed_and_flagged() {
    use alternator::model::spec::Smoothing;
    let (demo_model, _) = demo(1);
    for smoothing in [
        demo_model.model.spec.smoothing,
        Smoothing::None,
        Smoothing::Exponential { tau_bins: 3.0 },
        Smoothing::HalfGaussian { sigma_bins: 2.0 },
    ] {
        let (mut mf, rec) = demo(600);
        mf.model.spec.smoothing = smoothing;
        imputed_gaps_match_offline(mf, rec);
    }
}

fn imputed_gaps_match_offline(mf: alternator::model::ModelFile, rec: Recording) {
    let dir = tempfile::tempdir().unwrap();
    let mut rig = Rig::start(&config(dir.path()), mf.clone());
    let stop = AtomicBool::new(false);
    let opts = ReplayOptions { speed: None, drop_every: Some(7), ..ReplayOptions::default() };
    let r = rig.publisher.replay(&rec, &opts, &stop).unwrap();
    // The last bin may be a skipped one: then nothing follows to reveal the gap.
    let expected = if (600 % 7) == 0 { 599 } else { 600 };
    assert_eq!(r.bins_skipped, 600 / 7);
    rig.wait_outputs(expected);
    let (summary, got) = rig.finish();
    let missing = |t: usize| (t + 1).is_multiple_of(7);
    let want = offline(&mf, &rec, missing).slice_rows(0, expected as usize);
    assert_matches(&got, &want);
    for r in &got {
        assert_eq!(r.flags & FLAG_IMPUTED != 0, missing(r.seq as usize), "seq {}", r.seq);
    }
    assert_eq!(summary.counters.imputed, 600 / 7);
}

fn frame(seq: u64, channels: u32, values: &[f32]) -> Vec<u8> {
    let mut b = Vec::new();
    let h = Header { version: 1, dtype: Dtype::F32, flags: 0, seq, t_ns: 1, channels, samples: 1 };
    encode_frame(&mut b, &h, values);
    b
}

#[test]
fn every_malformed_frame_kind_is_counted_and_decoding_continues() {
    let dir = tempfile::tempdir().unwrap();
    let (mf, rec) = demo(120);
    let mut cfg = config(dir.path());
    cfg.ingest.protocol_v1.max_message_bytes = 4096;
    let rig = Rig::start(&cfg, mf.clone());
    let c = rec.n_channels() as u32;
    let good = |seq: u64| frame(seq, c, rec.spikes.row(seq as usize));
    let p = &rig.publisher;
    for seq in 0..5 {
        p.send_raw(b"spikes", &good(seq)).unwrap();
    }
    let mut bad_magic = good(99);
    bad_magic[0] = b'X';
    p.send_raw(b"spikes", &bad_magic).unwrap();
    let mut bad_version = good(99);
    bad_version[4] = 2;
    p.send_raw(b"spikes", &bad_version).unwrap();
    let mut bad_dtype = good(99);
    bad_dtype[5] = 9;
    p.send_raw(b"spikes", &bad_dtype).unwrap();
    let truncated = good(99)[..100].to_vec();
    p.send_raw(b"spikes", &truncated).unwrap();
    p.send_raw(b"spikes", &frame(99, c - 1, &vec![1.0; (c - 1) as usize])).unwrap();
    p.send_raw(b"spikes", &vec![0u8; 5000]).unwrap();
    p.send_raw(b"telemetry", &good(99)).unwrap();
    p.send_raw(b"spikes", &good(2)).unwrap(); // duplicate (older seq)
    p.send_parts(&[b"spikes"]).unwrap(); // one part
    p.send_parts(&[b"spikes", &good(99), b"extra"]).unwrap(); // three parts
    for seq in 5..10 {
        p.send_raw(b"spikes", &good(seq)).unwrap();
    }
    // A non-finite bin is imputed, not dropped from the output stream.
    let mut nan = rec.spikes.row(10).to_vec();
    nan[3] = f32::NAN;
    p.send_raw(b"spikes", &frame(10, c, &nan)).unwrap();
    for seq in 11..16 {
        p.send_raw(b"spikes", &good(seq)).unwrap();
    }
    rig.wait_outputs(16);
    let status = control::request(&rig.ctx, rig.daemon.control_endpoint.as_ref().unwrap(), "status", 2000).unwrap();
    assert_eq!(status["counters"]["bins_out"], 16);
    let (summary, got) = rig.finish();
    let s = &summary.counters;
    for reason in [
        DropReason::BadMagic,
        DropReason::BadVersion,
        DropReason::BadDtype,
        DropReason::Truncated,
        DropReason::WrongChannels,
        DropReason::TooLarge,
        DropReason::BadTopic,
        DropReason::Duplicate,
        DropReason::NonFinite,
    ] {
        assert_eq!(s.dropped(reason), 1, "{reason:?} in {s:?}");
    }
    assert_eq!(s.dropped(DropReason::Malformed), 2, "{s:?}");
    assert_eq!(got.len(), 16);
    assert_eq!(got.iter().map(|r| r.seq).collect::<Vec<_>>(), (0..16).collect::<Vec<u64>>());
    assert!(got[10].flags & FLAG_IMPUTED != 0);
    let want = offline(&mf, &rec.slice_bins(0, 16), |t| t == 10);
    assert_matches(&got, &want);
}

struct Serve {
    child: Child,
    ingest: String,
    control: String,
}

fn spawn_serve(record_dir: &Path, extra: &[&str]) -> Serve {
    let (pi, pp, pc) = (free_port(), free_port(), free_port());
    let ingest = format!("tcp://127.0.0.1:{pi}");
    let control = format!("tcp://127.0.0.1:{pc}");
    let child = Command::new(env!("CARGO_BIN_EXE_alternator"))
        .args(["serve", "--model", MODEL, "--ingest", &ingest, "--publish", &format!("tcp://127.0.0.1:{pp}")])
        .args(["--control", &control, "--record-dir"])
        .arg(record_dir)
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    Serve { child, ingest, control }
}

fn wait_status(ctx: &zmq::Context, control: &str, pred: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(v) = control::request(ctx, control, "status", 500) {
            if pred(&v) {
                return v;
            }
        }
        assert!(Instant::now() < deadline, "daemon did not reach the expected state");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Starts `serve` recording into `dir` and replays all of `rec` into it as
/// fast as it goes (returns at once; frames may still be in flight). The
/// publisher is returned so its queued frames outlive the call.
fn serve_and_replay(dir: &Path, rec: &Recording) -> (Serve, zmq::Context, Publisher) {
    let serve = spawn_serve(dir, &[]);
    let ctx = zmq::Context::new();
    wait_status(&ctx, &serve.control, |v| v["ok"] == true);
    let mut p = Publisher::new(&ctx, &serve.ingest, false).unwrap();
    p.wait_for_subscriber(Duration::from_secs(10)).unwrap();
    let stop = AtomicBool::new(false);
    p.replay(rec, &ReplayOptions { speed: None, ..ReplayOptions::default() }, &stop).unwrap();
    (serve, ctx, p)
}

fn sigterm(child: &mut Child) -> std::process::Output {
    stop_with(child, "TERM")
}

/// Sends `sig` (TERM, INT, ...) to `child` and waits (at most 30 s) for it to exit.
fn stop_with(child: &mut Child, sig: &str) -> std::process::Output {
    let st = Command::new("kill").args([&format!("-{sig}"), &child.id().to_string()]).status().unwrap();
    assert!(st.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "serve did not exit after SIG{sig}");
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = std::mem::replace(child, Command::new("true").spawn().unwrap());
    out.wait_with_output().unwrap()
}

fn session_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().map(|e| e == "h5").unwrap_or(false))
        .collect();
    v.sort();
    v
}

#[test]
fn sigterm_drains_and_the_session_file_holds_every_bin() {
    let dir = tempfile::tempdir().unwrap();
    let (mf, rec) = demo(2000);
    let (mut serve, ctx, _p) = serve_and_replay(dir.path(), &rec);
    wait_status(&ctx, &serve.control, |v| v["counters"]["bins_in"] == 2000 && v["counters"]["behavior_in"] == 2000);
    let out = sigterm(&mut serve.child);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "serve exited with {:?}: {stderr}", out.status);

    let files = session_files(dir.path());
    assert_eq!(files.len(), 1, "{files:?}");
    let back = Recording::read(&files[0], &ReadOptions::default()).unwrap();
    assert_eq!(back.n_bins(), 2000);
    assert_eq!(back.spikes, rec.spikes, "every bin recorded, raw values intact");
    assert_eq!(back.behavior, rec.behavior, "behaviour aligned by seq");
    assert!(back.behavior_valid.as_ref().map(|v| v.iter().all(|&b| b)).unwrap_or(true));
    let f = hdf5_metno::File::open(&files[0]).unwrap();
    let outputs = f.dataset("outputs").unwrap().read_2d::<f32>().unwrap();
    let want = offline(&mf, &rec, |_| false);
    assert_eq!(outputs.as_slice().unwrap(), want.data.as_slice(), "recorded outputs are the decoded ones");
    assert_eq!(f.dataset("seq").unwrap().read_raw::<u64>().unwrap(), (0..2000).collect::<Vec<u64>>());
    assert_eq!(
        f.attr("model_id").unwrap().read_scalar::<hdf5_metno::types::VarLenUnicode>().unwrap().as_str(),
        mf.meta.id
    );
    drop(f);

    // `eval` works on the session file.
    let ev = Command::new(env!("CARGO_BIN_EXE_alternator"))
        .args(["eval", "--model", MODEL, "--no-baselines", "--json", "--data"])
        .arg(&files[0])
        .output()
        .unwrap();
    assert!(ev.status.success(), "{}", String::from_utf8_lossy(&ev.stderr));
    let j: serde_json::Value = serde_json::from_slice(&ev.stdout).unwrap();
    assert!(j["alternator"]["r2"].as_f64().unwrap() > 0.7, "{j}");
}

#[test]
fn bad_config_is_refused_at_start_with_exit_code_64() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.toml");
    std::fs::write(&cfg, "[ingest.protocol_v1]\nendpoint = \"nowhere\"\n[stats]\ninterval_s = -1\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_alternator")).args(["serve", "--config"]).arg(&cfg).output().unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("ingest.protocol_v1.endpoint") && err.contains("stats.interval_s"), "{err}");

    // Unknown flags are bad usage too.
    let out = Command::new(env!("CARGO_BIN_EXE_alternator")).args(["serve", "--ingets", "tcp://x:1"]).output().unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--ingets"));

    // A recording directory that cannot be used is refused before anything starts.
    let not_a_dir = dir.path().join("plain-file");
    std::fs::write(&not_a_dir, b"x").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_alternator"))
        .args(["serve", "--model", MODEL, "--record-dir"])
        .arg(&not_a_dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("record.dir") && err.contains("plain-file"), "{err}");

    let out = Command::new(env!("CARGO_BIN_EXE_alternator"))
        .args(["serve", "--model", "no/such/model.safetensors"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no/such/model.safetensors"));
}

/// An independent Python client (tests/pyclient.py) streams the demo bins
/// with one seq missing; every decoded value must equal offline decoding
/// (`eval`'s for the bins before the gap), and every output must echo the
/// `t_ns` of its input (an imputed one: that of the bin that revealed the gap).
#[test]
fn python_client_speaks_the_protocol() {
    let dir = tempfile::tempdir().unwrap();
    let (n, skip) = (300usize, 150usize);
    let (mf, rec) = demo(n);
    let mut serve = spawn_serve(dir.path(), &["--no-record"]);
    let ctx = zmq::Context::new();
    let st = wait_status(&ctx, &serve.control, |v| v["ok"] == true);
    let publish = st["publish"].as_str().unwrap().to_string();
    let out = Command::new("python3")
        .arg("tests/pyclient.py")
        .args([&serve.ingest, &publish, &serve.control, common::DATA, &n.to_string(), &skip.to_string()])
        .output()
        .expect("python3 must be installed (scripts/setup.sh installs pyzmq, numpy and h5py)");
    let _ = sigterm(&mut serve.child);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "python client failed: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let outputs = j["outputs"].as_array().unwrap();
    assert_eq!(outputs.len(), n);

    let want = offline(&mf, &rec, |t| t == skip);
    let eval = alternator::evaluation::evaluate(&mf, &rec.slice_bins(0, skip), &[], 10).unwrap().decoded;
    let sent_t_ns = j["sent_t_ns"].as_array().unwrap();
    for (k, o) in outputs.iter().enumerate() {
        assert_eq!(o["seq"], k as u64);
        let bits: Vec<u32> = o["value_bits"].as_array().unwrap().iter().map(|b| b.as_u64().unwrap() as u32).collect();
        let offline_bits: Vec<u32> = want.row(k).iter().map(|v| v.to_bits()).collect();
        assert_eq!(bits, offline_bits, "seq {k}: decoded values differ from offline decoding");
        if k < skip {
            assert_eq!(bits, eval.row(k).iter().map(|v| v.to_bits()).collect::<Vec<u32>>(), "seq {k} against eval");
        }
        assert_eq!(o["flags"].as_u64().unwrap() & u64::from(FLAG_IMPUTED) != 0, k == skip, "seq {k}: {o}");
        let revealed_by = if k == skip { k + 1 } else { k };
        assert_eq!(o["t_ns"], sent_t_ns[revealed_by], "seq {k}: t_ns not echoed");
    }
}

#[test]
fn a_model_with_another_channel_count_is_refused_at_swap() {
    use alternator::daemon::decode_loop::{LoopCommand, SwapOutcome};
    let dir = tempfile::tempdir().unwrap();
    let (mf, rec) = demo(50);
    let mut rig = Rig::start(&config(dir.path()), mf.clone());
    let other = alternator::fixtures::synthetic_model(50, 3);
    let (tx, rx) = crossbeam_channel::bounded(1);
    let kernel = Box::new(alternator::model::StepKernel::new(other.model.clone()));
    rig.daemon.control.send(LoopCommand::Swap { kernel, model_id: other.meta.id.clone(), reply: tx }).unwrap();
    match rx.recv_timeout(Duration::from_secs(5)).unwrap() {
        SwapOutcome::Refused { reason, .. } => assert!(reason.contains("50 channels"), "{reason}"),
        SwapOutcome::Swapped { .. } => panic!("a 50-channel model was swapped into a 96-channel stream"),
    }
    // Decoding goes on with the original model.
    rig.publisher
        .replay(&rec, &ReplayOptions { speed: None, ..ReplayOptions::default() }, &AtomicBool::new(false))
        .unwrap();
    rig.wait_outputs(50);
    let (summary, got) = rig.finish();
    assert_eq!(summary.counters.swaps_refused, 1);
    assert_eq!(summary.counters.swaps, 0);
    assert_matches(&got, &offline(&mf, &rec, |_| false));
}

/// SIGHUP starts a retraining run; a recording in its list whose damaged
/// metadata crashes the HDF5 library is skipped (opened in a child process
/// first) and the daemon lives on.
#[test]
fn sighup_triggers_a_retraining_run() {
    let dir = tempfile::tempdir().unwrap();
    let cfg_path = dir.path().join("serve.toml");
    let models = dir.path().join("models");
    let crasher = std::fs::canonicalize("tests/data/hdf5-segfault.h5").unwrap();
    std::fs::write(
        &cfg_path,
        format!(
            "[model]\nmodels_dir = {:?}\n[retrain]\nenabled = true\nrecordings = [{:?}]\n[retrain.train]\nftn_hidden = [32]\notn_hidden = [16]\nmax_epochs = 3\nwindow_bins = 100\n",
            models.display().to_string(),
            crasher.display().to_string()
        ),
    )
    .unwrap();
    let (_, rec) = demo(1500);
    let mut serve = spawn_serve(dir.path(), &["--config", cfg_path.to_str().unwrap()]);
    let ctx = zmq::Context::new();
    wait_status(&ctx, &serve.control, |v| v["ok"] == true);
    let mut p = Publisher::new(&ctx, &serve.ingest, false).unwrap();
    p.wait_for_subscriber(Duration::from_secs(10)).unwrap();
    p.replay(&rec, &ReplayOptions { speed: None, ..ReplayOptions::default() }, &AtomicBool::new(false)).unwrap();
    wait_status(&ctx, &serve.control, |v| v["counters"]["behavior_in"] == 1500);
    let st = Command::new("kill").args(["-HUP", &serve.child.id().to_string()]).status().unwrap();
    assert!(st.success());
    let done = wait_status(&ctx, &serve.control, |v| v["retrain"]["runs"] == 1 && v["retrain"]["running"] == false);
    let d = &done["retrain"];
    assert_eq!(d["accepted"].as_u64().unwrap() + d["rejected"].as_u64().unwrap(), 1, "{done}");
    let out = sigterm(&mut serve.child);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("crashed the HDF5 library"), "the damaged recording was not reported: {err}");
    assert!(models.join("gen-000002.safetensors").exists(), "the candidate was stored as generation 2");
}

#[test]
fn rig_restart_and_large_gaps_reset_the_state() {
    use alternator::wire::FLAG_RESET;
    let dir = tempfile::tempdir().unwrap();
    let (mf, rec) = demo(300);
    let mut cfg = config(dir.path());
    cfg.ingest.max_gap_bins = 20;
    let rig = Rig::start(&cfg, mf.clone());
    let c = rec.n_channels() as u32;
    let p = &rig.publisher;
    // 0..100, then a gap of 49 (> 20): reset, no imputation; then 150..200.
    for seq in 0..100u64 {
        p.send_raw(b"spikes", &frame(seq, c, rec.spikes.row(seq as usize))).unwrap();
    }
    for seq in 150..200u64 {
        p.send_raw(b"spikes", &frame(seq, c, rec.spikes.row(seq as usize))).unwrap();
    }
    // The rig restarts: seq 0 again, with the bins from 200 on.
    for k in 0..100u64 {
        p.send_raw(b"spikes", &frame(k, c, rec.spikes.row(200 + k as usize))).unwrap();
    }
    rig.wait_outputs(250);
    let (summary, got) = rig.finish();
    assert_eq!(summary.counters.resets, 2);
    assert_eq!(summary.counters.imputed, 0);
    assert_eq!(got.len(), 250);
    let seqs: Vec<u64> = got.iter().map(|r| r.seq).collect();
    let want_seqs: Vec<u64> = (0..100).chain(150..200).chain(0..100).collect();
    assert_eq!(seqs, want_seqs);
    assert!(got[100].flags & FLAG_RESET != 0 && got[150].flags & FLAG_RESET != 0);
    assert_eq!(got.iter().filter(|r| r.flags & FLAG_RESET != 0).count(), 2);
    // After each reset the decoder starts from a fresh state.
    for (start, rows) in [(100usize, 150..200usize), (150, 200..300)] {
        let part = rec.slice_bins(rows.start, rows.end);
        let want = offline(&mf, &part, |_| false);
        for (k, r) in got[start..start + part.n_bins()].iter().enumerate() {
            assert_eq!(r.values.as_slice(), want.row(k), "output {} after a reset", start + k);
        }
    }
    // The restart started a new session file.
    assert_eq!(summary.sessions.len(), 2, "{:?}", summary.sessions);
    assert_eq!(summary.sessions.iter().map(|s| s.bins).sum::<usize>(), 250);
}

#[test]
fn hot_swap_carries_or_rewarms_the_state() {
    use alternator::daemon::config::SwapState;
    use alternator::daemon::decode_loop::{LoopCommand, SwapOutcome};
    for (mode, tol) in [(SwapState::Carry, 1e-5f32), (SwapState::Rewarm, 1e-3)] {
        let dir = tempfile::tempdir().unwrap();
        let (mf, rec) = demo(400);
        let mut cfg = config(dir.path());
        cfg.decode.swap_state = mode;
        cfg.decode.rewarm_bins = 60;
        let rig = Rig::start(&cfg, mf.clone());
        let c = rec.n_channels() as u32;
        for seq in 0..200u64 {
            rig.publisher.send_raw(b"spikes", &frame(seq, c, rec.spikes.row(seq as usize))).unwrap();
        }
        rig.wait_outputs(200);
        // Swap in the same model: with the state carried over (or re-warmed),
        // decoding continues as if nothing happened.
        let (tx, rx) = crossbeam_channel::bounded(1);
        let kernel = Box::new(alternator::model::StepKernel::new(mf.model.clone()));
        rig.daemon.control.send(LoopCommand::Swap { kernel, model_id: "same".into(), reply: tx }).unwrap();
        assert!(matches!(rx.recv_timeout(Duration::from_secs(5)).unwrap(), SwapOutcome::Swapped { .. }));
        for seq in 200..400u64 {
            rig.publisher.send_raw(b"spikes", &frame(seq, c, rec.spikes.row(seq as usize))).unwrap();
        }
        rig.wait_outputs(400);
        let (summary, got) = rig.finish();
        assert_eq!(summary.counters.swaps, 1);
        assert_eq!(got.len(), 400);
        let want = offline(&mf, &rec, |_| false);
        for (t, r) in got.iter().enumerate() {
            for (j, v) in r.values.iter().enumerate() {
                assert!((v - want.get(t, j)).abs() <= tol, "{mode:?}: bin {t} dim {j}: {v} vs {}", want.get(t, j));
            }
        }
    }
}

/// A second daemon on the same endpoints exits with 69 naming the endpoint,
/// and leaves the first one running untouched.
#[test]
fn a_second_daemon_on_the_same_ports_exits_69() {
    let dir = tempfile::tempdir().unwrap();
    let mut first = spawn_serve(dir.path(), &[]);
    let ctx = zmq::Context::new();
    wait_status(&ctx, &first.control, |_| true);
    let pp = free_port();
    let out = Command::new(env!("CARGO_BIN_EXE_alternator"))
        .args(["serve", "--model", MODEL, "--ingest", &first.ingest, "--publish", &format!("tcp://127.0.0.1:{pp}")])
        .args(["--control", &format!("tcp://127.0.0.1:{}", free_port()), "--no-record"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(69), "{err}");
    assert!(err.contains(&first.ingest) && err.contains("in use"), "{err}");
    // The first daemon still answers.
    wait_status(&ctx, &first.control, |v| v["channels"].as_u64().is_some());
    assert!(sigterm(&mut first.child).status.success());
}

/// Frames still in flight when the signal arrives (sent at full speed, the
/// signal right after the last send, no waiting for the daemon) are
/// decoded and recorded before the process exits — for SIGTERM and SIGINT.
#[test]
fn a_signal_with_frames_in_flight_still_records_every_frame() {
    for sig in ["TERM", "INT"] {
        let dir = tempfile::tempdir().unwrap();
        let (_, rec) = demo(3000);
        let (mut serve, _ctx, _p) = serve_and_replay(dir.path(), &rec);
        let out = stop_with(&mut serve.child, sig);
        assert!(out.status.success(), "SIG{sig}: {}", String::from_utf8_lossy(&out.stderr));
        let files = session_files(dir.path());
        assert_eq!(files.len(), 1, "{files:?}");
        let back = Recording::read(&files[0], &ReadOptions::default()).unwrap();
        assert_eq!(back.n_bins(), 3000, "SIG{sig}: frames in flight were lost");
        assert_eq!(back.spikes, rec.spikes);
    }
}

/// Accepted bins reach the session file while it stays open: the recorder
/// flushes every 100 ms (not after every batch), and once a stream stops a
/// reader in another process sees all of it without the file being closed.
#[test]
fn a_stopped_stream_reaches_the_open_session_file() {
    let dir = tempfile::tempdir().unwrap();
    let (_, rec) = demo(2000);
    let (mut serve, ctx, _p) = serve_and_replay(dir.path(), &rec);
    wait_status(&ctx, &serve.control, |v| v["counters"]["bins_out"] == 2000);
    let files = session_files(dir.path());
    assert_eq!(files.len(), 1, "{files:?}");
    // h5py in a child: an independent reader of the file the daemon still has open.
    let script = "import h5py, sys\nf = h5py.File(sys.argv[1], 'r')\nprint(f['seq'].shape[0], int(f['seq'][-1]))";
    let deadline = Instant::now() + Duration::from_secs(20);
    let seen = loop {
        let out = Command::new("python3")
            .args(["-c", script])
            .arg(&files[0])
            .env("HDF5_USE_FILE_LOCKING", "FALSE")
            .output()
            .unwrap();
        let seen = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if seen == "2000 1999" || Instant::now() > deadline {
            break seen;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(seen, "2000 1999", "rows and last seq on disk while the session is open");
    let out = sigterm(&mut serve.child);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// Virtual memory of this process (kB): preallocated buffers count here
/// whether or not their pages were touched yet.
fn vm_size_kb() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = s.lines().find(|l| l.starts_with("VmSize:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// The recorder queue is sized in bytes (record.queue_bytes), not in bins:
/// a 10,000-channel model starts without reserving gigabytes.
#[test]
fn a_ten_thousand_channel_model_starts_with_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let mf = alternator::fixtures::synthetic_model(10_000, 1);
    let cfg = config(dir.path());
    let before = vm_size_kb();
    let daemon = Daemon::start(&cfg, mf, &zmq::Context::new()).unwrap();
    let grown_mb = (vm_size_kb() - before) / 1024;
    daemon.shutdown();
    let queue_mb = cfg.record.queue_bytes / (1 << 20);
    // The queue, the model's packed weights (~10 MB), thread stacks and
    // libzmq's threads; the old sizing (65,536 bins × 10,000 channels) was ~2.6 GB.
    assert!(grown_mb < queue_mb + 400, "starting grew the address space by {grown_mb} MB");
}

/// Garbage in `LIVE` and a corrupt newest generation do not stop a restart:
/// the newest generation that loads runs, and what was skipped is logged.
#[test]
fn a_damaged_models_directory_falls_back_to_a_usable_generation() {
    let dir = tempfile::tempdir().unwrap();
    let models = dir.path().join("models");
    std::fs::create_dir_all(&models).unwrap();
    let good = alternator::model::ModelFile::load(Path::new(MODEL)).unwrap();
    std::fs::copy(MODEL, models.join("gen-000001.safetensors")).unwrap();
    std::fs::write(models.join("gen-000002.safetensors"), b"not a model at all").unwrap();
    std::fs::write(models.join("LIVE"), b"two\n").unwrap();
    let (pi, pp, pc) = (free_port(), free_port(), free_port());
    let control = format!("tcp://127.0.0.1:{pc}");
    let mut child = Command::new(env!("CARGO_BIN_EXE_alternator"))
        .args(["serve", "--no-record", "--models-dir"])
        .arg(&models)
        .args(["--ingest", &format!("tcp://127.0.0.1:{pi}"), "--publish", &format!("tcp://127.0.0.1:{pp}")])
        .args(["--control", &control])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let ctx = zmq::Context::new();
    let st = wait_status(&ctx, &control, |_| true);
    assert_eq!(st["model_id"], good.meta.id.as_str(), "the generation that loads runs");
    let out = sigterm(&mut child);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("ERROR") && err.contains("LIVE") && err.contains("generation 2"), "{err}");
}

/// When input stops, stale frames (flag 4) with the safe output come at the
/// bin rate after the timeout; they stop when input returns.
#[test]
fn the_watchdog_publishes_a_safe_output_while_input_is_stopped() {
    use alternator::wire::{Frame, FLAG_STALE};
    let dir = tempfile::tempdir().unwrap();
    let (mf, rec) = demo(60);
    let cfg = config(dir.path()); // 20 ms bins: timeout 100 ms, safe output "zero"
    let mut rig = Rig::start(&cfg, mf);
    let raw = rig.ctx.socket(zmq::SUB).unwrap();
    raw.connect(&rig.daemon.publish_endpoint).unwrap();
    raw.set_subscribe(b"").unwrap();
    raw.set_rcvtimeo(50).unwrap();
    let started = Instant::now();
    while raw.recv_multipart(zmq::DONTWAIT).is_err() && started.elapsed() < Duration::from_millis(300) {
        std::thread::sleep(Duration::from_millis(10)); // let the raw subscriber join
    }
    let stop = AtomicBool::new(false);
    rig.publisher
        .replay(&rec.slice_bins(0, 30), &ReplayOptions { speed: None, ..ReplayOptions::default() }, &stop)
        .unwrap();
    rig.wait_outputs(30);
    let silent = Instant::now();
    let mut stale = Vec::new();
    while silent.elapsed() < Duration::from_millis(600) {
        if let Ok(parts) = raw.recv_multipart(0) {
            let f = Frame::parse(&parts[1], 1 << 20).unwrap();
            if f.header.flags & FLAG_STALE != 0 {
                let mut v = vec![1f32; f.header.channels as usize];
                f.sample(0, &mut v).unwrap();
                stale.push((f.header.seq, v));
            }
        }
    }
    // Input stopped ~200 ms (wait_outputs) before this 600 ms window; after the
    // 100 ms timeout one frame per 20 ms bin: ~35, with slack for a loaded machine.
    assert!(stale.len() >= 10 && stale.len() <= 45, "{} stale frames", stale.len());
    assert!(stale.iter().all(|(seq, v)| *seq == 29 && v.iter().all(|x| *x == 0.0)), "{stale:?}");
    let n = rig.daemon.counters.snapshot().stale_outputs;
    assert!(n >= stale.len() as u64, "counted {n}");
    let (summary, got) = rig.finish();
    assert_eq!(got.len(), 30, "stale frames are not timesteps");
    assert_eq!(summary.counters.bins_out, 30);
}

/// A full disk while recording (a 2 MiB tmpfs): decoding and publishing go
/// on, the loss is counted and logged at ERROR once, the file written so far
/// stays readable, and recording resumes in a new file once space is back.
#[test]
fn a_full_disk_loses_only_what_cannot_be_written_and_recording_resumes() {
    if is_not_root() {
        eprintln!("skipped: mounting a tmpfs needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("small");
    std::fs::create_dir_all(&mnt).unwrap();
    let st = Command::new("mount").args(["-t", "tmpfs", "-o", "size=2m", "tmpfs"]).arg(&mnt).status().unwrap();
    assert!(st.success(), "mount tmpfs");
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _guard = Unmount(mnt.clone());
    let filler = mnt.join("filler");
    std::fs::write(&filler, vec![0u8; 1_200_000]).unwrap();

    let (_, rec) = demo(4000);
    let mut serve = spawn_serve(&mnt, &[]);
    let ctx = zmq::Context::new();
    wait_status(&ctx, &serve.control, |v| v["ok"] == true);
    let mut p = Publisher::new(&ctx, &serve.ingest, false).unwrap();
    p.wait_for_subscriber(Duration::from_secs(10)).unwrap();
    let stop = AtomicBool::new(false);
    // Bins [from, to) with seqs from `from` (half-bin margins against rounding).
    let opts = |from: u64, to: u64| ReplayOptions {
        speed: None,
        from_s: (from as f64 - 0.5).max(0.0) * rec.bin_seconds,
        to_s: Some((to as f64 - 0.5) * rec.bin_seconds),
        first_seq: from,
        ..ReplayOptions::default()
    };
    p.replay(&rec, &opts(0, 3000), &stop).unwrap();
    let st = wait_status(&ctx, &serve.control, |v| v["counters"]["bins_out"] == 3000);
    assert!(st["counters"]["record_lost"].as_u64().unwrap() > 0, "the disk did not fill: {st}");
    std::fs::remove_file(&filler).unwrap();
    std::thread::sleep(Duration::from_millis(2500)); // the recorder retries a new file every 2 s
    p.replay(&rec, &opts(3000, 4000), &stop).unwrap();
    let st = wait_status(&ctx, &serve.control, |v| v["counters"]["bins_out"] == 4000);
    assert_eq!(st["counters"]["bins_in"], 4000, "decoding went on through the failure");
    let out = sigterm(&mut serve.child);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.matches("Recording failed").count(), 1, "one ERROR per incident: {err}");

    let files = session_files(&mnt);
    assert!(files.len() >= 2, "recording did not resume in a new file: {files:?}");
    let first =
        Recording::read(&files[0], &ReadOptions::default()).expect("the file written before the failure is readable");
    assert!(first.n_bins() > 0 && first.n_bins() < 3000, "{}", first.n_bins());
    let last = Recording::read(files.last().unwrap(), &ReadOptions::default()).unwrap();
    let seqs: Vec<u64> =
        hdf5_metno::File::open(files.last().unwrap()).unwrap().dataset("seq").unwrap().read_raw().unwrap();
    assert_eq!(seqs.last().copied(), Some(3999), "the bins after recovery are recorded");
    assert_eq!(last.spikes.row(last.n_bins() - 1), rec.spikes.row(3999));
}

fn is_not_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| String::from_utf8_lossy(&o.stdout).trim() != "0").unwrap_or(true)
}

/// Binding beyond loopback is refused at start unless allowed, naming the field.
#[test]
fn a_non_loopback_bind_needs_allow_remote() {
    let out = Command::new(env!("CARGO_BIN_EXE_alternator"))
        .args(["serve", "--model", MODEL, "--no-record", "--publish", &format!("tcp://0.0.0.0:{}", free_port())])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{err}");
    assert!(err.contains("publish.endpoint") && err.contains("publish.allow_remote"), "{err}");
}

/// With `allow_ips`, connections from other addresses are refused by the
/// ZAP handler and counted; a listed source address gets through.
#[test]
fn allow_ips_refuses_other_addresses_and_counts_them() {
    let dir = tempfile::tempdir().unwrap();
    let (mf, _) = demo(1);
    let mut cfg = config(dir.path());
    cfg.control.endpoint = format!("tcp://127.0.0.1:{}", free_port());
    cfg.control.allow_ips = vec!["127.0.0.2".into()];
    let daemon = Daemon::start(&cfg, mf, &zmq::Context::new()).unwrap();
    let ctx = zmq::Context::new();
    let refused = control::request(&ctx, &cfg.control.endpoint, "status", 500);
    assert!(refused.is_err(), "127.0.0.1 is not in allow_ips: {refused:?}");
    let port = cfg.control.endpoint.rsplit(':').next().unwrap();
    let from_listed = format!("tcp://127.0.0.2:0;127.0.0.1:{port}");
    let st = control::request(&ctx, &from_listed, "status", 2000).expect("127.0.0.2 is allowed");
    assert!(st["counters"]["connections_refused"].as_u64().unwrap() >= 1, "{st}");
    drop(daemon);
}

/// With `control.token`, `retrain` and `rollback` are refused without it;
/// `status` stays open.
#[test]
fn the_control_token_guards_mutating_commands() {
    let dir = tempfile::tempdir().unwrap();
    let (mf, _) = demo(1);
    let mut cfg = config(dir.path());
    cfg.control.endpoint = format!("tcp://127.0.0.1:{}", free_port());
    cfg.control.token = "s3cret-token".into();
    let daemon = Daemon::start(&cfg, mf, &zmq::Context::new()).unwrap();
    let ctx = zmq::Context::new();
    let ask = |cmd: &str| control::request(&ctx, &cfg.control.endpoint, cmd, 2000).unwrap();
    assert_eq!(ask("status")["ok"], true);
    let refused = ask("retrain");
    assert!(refused["ok"] == false && refused["error"].as_str().unwrap().contains("token"), "{refused}");
    assert!(ask("token=wrong rollback 1")["error"].as_str().unwrap().contains("token"));
    // With the token the command reaches the retrainer (not configured here).
    let r = ask("token=s3cret-token retrain");
    assert!(r["error"].as_str().unwrap().contains("retrain.enabled"), "{r}");
    drop(daemon);
}
