//! The LSL source and outlet against pylsl (`tests/lsl_rig.py`): a pylsl
//! StreamOutlet pushes `recordings/demo-test.h5` one bin per sample, with a
//! pause; the daemon (liblsl loaded at run time, here the pylsl wheel's
//! copy) decodes it; the outputs equal offline decoding of the same bins
//! with the paused ones imputed, and a pylsl StreamInlet on the daemon's
//! decoded outlet receives the same values stamped with the input's times.
//! In voltage mode, raw data pushed by pylsl goes through the front end and
//! the live bins equal `alternator frontend` over the same samples bit for bit.

mod common;

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use alternator::client::collect_outputs;
use alternator::daemon::Daemon;
use alternator::wire::{FLAG_IMPUTED, FLAG_RESET};

const BINS: usize = 400;
const PAUSE: std::ops::Range<usize> = 150..160;

/// The streaming tests run one at a time: liblsl corrects timestamps by a
/// clock-offset estimate whose jitter grows when the cores are saturated,
/// and in voltage mode (50 µs samples) a large enough jump is read as lost
/// samples (a known limit of timestamp-based gap detection, see README).
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

#[test]
fn pylsl_stream_decodes_like_offline_and_the_decoded_outlet_is_received() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let name = format!("alternator-test-{}", std::process::id());
    let decoded_name = format!("{name}-decoded");
    let out_json = dir.path().join("rig.json");
    let mut rig = Command::new("python3")
        .arg("tests/lsl_rig.py")
        .args(["--name", &name, "--decoded-name", &decoded_name, "--bins", &BINS.to_string()])
        .args(["--push-rate", "500", "--pause", &format!("{}:{}", PAUSE.start, PAUSE.end)])
        .arg("--out")
        .arg(&out_json)
        .spawn()
        .unwrap();

    let (mf, rec) = common::demo(BINS);
    let mut cfg = common::config(dir.path());
    cfg.record.enabled = false;
    cfg.ingest.kind = "lsl".into();
    cfg.ingest.lsl.name = name.clone();
    cfg.ingest.lsl.resolve_timeout_s = 15.0;
    cfg.publish.lsl.enabled = true;
    cfg.publish.lsl.name = decoded_name;
    let daemon = Daemon::start(&cfg, mf.clone(), &zmq::Context::new()).unwrap();
    let ctx = zmq::Context::new();
    let stop = Arc::new(AtomicBool::new(false));
    let sub = collect_outputs(&ctx, &daemon.publish_endpoint, stop.clone(), 0, None).unwrap();
    assert!(
        daemon.counters.wait_until(Duration::from_secs(20), |c| c.subscriptions >= 1),
        "no subscription reached the daemon"
    );

    let status = wait_rig(&mut rig, 40);
    assert!(status.success(), "pylsl rig failed");
    let summary = daemon.shutdown();
    stop.store(true, Ordering::Relaxed);
    let got = sub.join().unwrap();

    // ZeroMQ outputs: one per bin, the paused bins imputed, equal to offline.
    assert_eq!(summary.counters.bins_in, (BINS - PAUSE.len()) as u64);
    let seqs: Vec<u64> = got.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, (0..BINS as u64).collect::<Vec<_>>());
    let paused = |t: usize| PAUSE.contains(&t);
    for (t, r) in got.iter().enumerate() {
        assert_eq!(r.flags & FLAG_IMPUTED != 0, paused(t), "bin {t} flags {}", r.flags);
        assert_eq!(r.flags & FLAG_RESET, 0);
    }
    let want = common::offline(&mf, &rec, paused);
    let diff = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max);
    let worst = got.iter().enumerate().map(|(t, r)| diff(&r.values, want.row(t))).fold(0.0, f32::max);
    assert!(worst <= 1e-6, "daemon vs offline: max |diff| = {worst}");

    // The decoded outlet, as a pylsl inlet received it.
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&out_json).unwrap()).unwrap();
    let (t0, bin_s) = (v["t0"].as_f64().unwrap(), v["bin_s"].as_f64().unwrap());
    let decoded = v["decoded"].as_array().unwrap();
    assert_eq!(decoded.len(), BINS, "samples on the decoded outlet");
    for (t, s) in decoded.iter().enumerate() {
        let s: Vec<f64> = s.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
        let values: Vec<f32> = s[1..].iter().map(|&x| x as f32).collect();
        assert!(diff(&values, want.row(t)) <= 1e-6, "decoded outlet sample {t}");
        if !paused(t) {
            let expect = t0 + t as f64 * bin_s;
            assert!((s[0] - expect).abs() < 1e-4, "sample {t} stamped {} (input {expect})", s[0]);
        }
    }
}

/// Bins of a session file: seq and counts.
fn read_bins(path: &std::path::Path) -> (Vec<u64>, Vec<Vec<f32>>) {
    let f = hdf5_metno::File::open(path).unwrap();
    let seq: Vec<u64> = f.dataset("seq").unwrap().read_raw().unwrap();
    let spikes = f.dataset("spikes").unwrap().read_2d::<f32>().unwrap();
    (seq, spikes.rows().into_iter().map(|r| r.to_vec()).collect())
}

#[test]
fn voltage_mode_bins_equal_the_offline_front_end_bit_for_bit() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    const CHANNELS: usize = 8;
    let dir = tempfile::tempdir().unwrap();
    let name = format!("alternator-volt-{}", std::process::id());
    let raw = dir.path().join("raw.h5");
    let mut rig = Command::new("python3")
        .arg("tests/lsl_rig.py")
        .args(["--name", &name, "--voltage-seconds", "3", "--sample-rate", "20000"])
        .args(["--channels", &CHANNELS.to_string()])
        .arg("--raw-out")
        .arg(&raw)
        .spawn()
        .unwrap();
    let mut cfg = common::config(dir.path());
    cfg.ingest.kind = "lsl".into();
    cfg.ingest.lsl.name = name;
    cfg.ingest.lsl.mode = "voltage".into();
    cfg.ingest.lsl.resolve_timeout_s = 15.0;
    cfg.record.bin_seconds = 0.02;
    let daemon = Daemon::start(&cfg, alternator::fixtures::synthetic_model(CHANNELS, 3), &zmq::Context::new()).unwrap();
    let status = wait_rig(&mut rig, 30);
    assert!(status.success(), "pylsl rig failed");
    let summary = daemon.shutdown();
    assert_eq!(summary.sessions.len(), 1, "{:?}", summary.sessions);
    let (seq, bins) = read_bins(&summary.sessions[0].path);
    // 3 s at 20 ms, the first second calibrating the thresholds.
    assert!(seq.len() >= 95, "only {} bins", seq.len());
    let spikes: f32 = bins.iter().flatten().sum();
    assert!(spikes > 100.0, "only {spikes} threshold crossings counted");

    let cfg_file = dir.path().join("frontend.toml");
    std::fs::write(&cfg_file, format!("[frontend]\n{}", toml::to_string(&cfg.frontend).unwrap())).unwrap();
    let out = dir.path().join("offline.h5");
    let st = Command::new(env!("CARGO_BIN_EXE_alternator"))
        .args(["frontend", "--data"])
        .arg(&raw)
        .arg("--out")
        .arg(&out)
        .arg("--config")
        .arg(&cfg_file)
        .output()
        .unwrap();
    assert!(st.status.success(), "{}", String::from_utf8_lossy(&st.stderr));
    let (off_seq, off_bins) = read_bins(&out);
    assert_eq!(off_seq, seq, "offline bins cover other seqs than the live ones");
    assert!(off_bins == bins, "offline bins differ from the live daemon's");
}

#[test]
fn a_stream_that_does_not_fit_the_model_or_a_missing_library_is_a_clear_start_up_error() {
    use alternator::ingest::lsl::ffi::Lib;
    let dir = tempfile::tempdir().unwrap();
    let (mf, _) = common::demo(10);
    let mut cfg = common::config(dir.path());
    cfg.record.enabled = false;
    cfg.ingest.kind = "lsl".into();

    cfg.ingest.lsl.library = Some("/no/such/liblsl.so".into());
    let err = Daemon::start(&cfg, mf.clone(), &zmq::Context::new()).err().expect("must fail").to_string();
    assert!(err.contains("/no/such/liblsl.so") && err.contains("not found"), "{err}");

    cfg.ingest.lsl.library = None;
    let name = format!("alternator-narrow-{}", std::process::id());
    let lib = Lib::load(None).unwrap();
    let _outlet = lib.stream_info(&name, "SpikeCounts", 5, 50.0, &name).unwrap().outlet(10).unwrap();
    cfg.ingest.lsl.name = name;
    cfg.ingest.lsl.resolve_timeout_s = 10.0;
    let err = Daemon::start(&cfg, mf, &zmq::Context::new()).err().expect("must fail").to_string();
    assert!(err.contains("5 channels") && err.contains("96"), "{err}");
}

/// Waits at most `seconds` for the pylsl rig process to finish.
fn wait_rig(rig: &mut std::process::Child, seconds: u64) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    loop {
        if let Some(s) = rig.try_wait().unwrap() {
            return s;
        }
        assert!(Instant::now() < deadline, "pylsl rig did not finish");
        std::thread::sleep(Duration::from_millis(50));
    }
}
