//! The Open Ephys source against a stand-in for the GUI's ZMQ Interface
//! plugin (`tests/openephys_standin.py`, written from the plugin's
//! `Source/ZmqInterface.cpp`, see docs/OPENEPHYS.md): PUB bound on the data
//! port, REP on the next port answering heartbeats as the plugin does,
//! JUCE-formatted JSON headers, one f32 block per channel per message.
//!
//! The stand-in injects spikes at known samples into noisy voltage; the
//! daemon's recorded bins must count them (voltage mode, through the front
//! end) or count the spike events exactly (spikes mode).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use alternator::client::collect_outputs;
use alternator::daemon::config::ServeConfig;
use alternator::daemon::Daemon;
use alternator::ingest::openephys::ChannelRef;
use hdf5_metno as hdf5;

const CHANNELS: usize = 32;
const RATE: f64 = 30_000.0;
const SPB: u64 = 600; // 20 ms at 30 kHz

/// A port P with P + 1 free as well (the plugin binds both).
fn free_port_pair() -> u16 {
    for _ in 0..50 {
        let a = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let p = a.local_addr().unwrap().port();
        if p < 65535 && std::net::TcpListener::bind(("127.0.0.1", p + 1)).is_ok() {
            return p;
        }
    }
    panic!("no free port pair");
}

fn config(port: u16, record: &Path, mode: &str) -> ServeConfig {
    let mut c = common::config(record);
    c.ingest.kind = "openephys".into();
    c.ingest.openephys.endpoint = format!("tcp://127.0.0.1:{port}");
    c.ingest.openephys.mode = mode.into();
    // A loaded test machine can pause the Python stand-in for longer than the
    // default 100 ms: events would then arrive after their bin closed (counted
    // as out_of_order) and blocks after the stall limit. Both rules are tested
    // on their own (spikes.rs, the bad-input test below).
    c.ingest.openephys.spike_hold_ms = 1000.0;
    c.ingest.openephys.stall_ms = 2000;
    c.ingest.openephys.buffer_s = 5.0;
    // The stand-in's waveform has an after-potential whose band-passed tail
    // dips below threshold again ~1.1 ms after the trough: a 1 ms dead time
    // counts many spikes twice. 1.6 ms is the 48-sample spike window of
    // common 30 kHz acquisition systems.
    c.frontend.refractory_ms = 1.6;
    c.record.bin_seconds = 0.02;
    c
}

struct Truth {
    spikes: Vec<(usize, u64)>,
    heartbeats: Vec<f64>,
    ttl: Vec<(u64, u8, u8)>,
    total_samples: u64,
}

fn read_truth(path: &Path) -> Truth {
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let pairs = |k: &str| v[k].as_array().unwrap().iter().map(|p| p.as_array().unwrap().clone()).collect::<Vec<_>>();
    Truth {
        spikes: pairs("spikes").iter().map(|p| (p[0].as_u64().unwrap() as usize, p[1].as_u64().unwrap())).collect(),
        heartbeats: v["heartbeats"].as_array().unwrap().iter().map(|t| t.as_f64().unwrap()).collect(),
        ttl: pairs("ttl")
            .iter()
            .map(|p| (p[0].as_u64().unwrap(), p[1].as_u64().unwrap() as u8, p[2].as_u64().unwrap() as u8))
            .collect(),
        total_samples: v["total_samples"].as_u64().unwrap(),
    }
}

/// Runs the stand-in against a daemon with `cfg`; returns the truth, the
/// session file, the published seqs and flags, and the daemon's counters.
fn run(
    cfg: ServeConfig,
    port: u16,
    mode: &str,
    seconds: f64,
    dir: &Path,
) -> (Truth, PathBuf, Vec<(u64, u16)>, alternator::daemon::stats::CounterSnapshot) {
    let mf = alternator::fixtures::synthetic_model(CHANNELS, 3);
    let daemon = Daemon::start(&cfg, mf, &zmq::Context::new()).unwrap();
    let ctx = zmq::Context::new();
    let stop = Arc::new(AtomicBool::new(false));
    let sub = collect_outputs(&ctx, &daemon.publish_endpoint, stop.clone(), 0, None).unwrap();
    assert!(
        daemon.counters.wait_until(Duration::from_secs(20), |c| c.subscriptions >= 1),
        "no subscription reached the daemon"
    );
    let truth_path = dir.join("truth.json");
    let status = Command::new("python3")
        .arg("tests/openephys_standin.py")
        .args(["--port", &port.to_string(), "--channels", &CHANNELS.to_string(), "--sample-rate", "30000"])
        .args(["--block", "1024", "--seconds", &seconds.to_string(), "--mode", mode, "--seed", "7"])
        .args(["--realtime", "1.0", "--ttl-every-s", "1.0", "--tail-s", "4.5", "--sndhwm", "0"])
        .arg("--spikes-out")
        .arg(&truth_path)
        .arg("--raw-out")
        .arg(dir.join("raw.h5"))
        .status()
        .unwrap();
    assert!(status.success(), "the plugin stand-in failed");
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut last = u64::MAX;
    while Instant::now() < deadline {
        let n = daemon.counters.snapshot().bins_out;
        if n == last {
            break;
        }
        last = n;
        std::thread::sleep(Duration::from_millis(300));
    }
    let summary = daemon.shutdown();
    stop.store(true, Ordering::Relaxed);
    let got: Vec<(u64, u16)> = sub.join().unwrap().iter().map(|r| (r.seq, r.flags)).collect();
    assert_eq!(summary.sessions.len(), 1, "{:?}", summary.sessions);
    (read_truth(&truth_path), summary.sessions[0].path.clone(), got, summary.counters)
}

fn read_bins(path: &Path) -> (Vec<u64>, Vec<Vec<f32>>) {
    let f = hdf5::File::open(path).unwrap();
    let seq: Vec<u64> = f.dataset("seq").unwrap().read_raw().unwrap();
    let spikes = f.dataset("spikes").unwrap().read_2d::<f32>().unwrap();
    (seq, spikes.rows().into_iter().map(|r| r.to_vec()).collect())
}

fn expected_counts(truth: &Truth, first_bin: u64, bins: usize) -> Vec<Vec<f32>> {
    let mut e = vec![vec![0f32; CHANNELS]; bins];
    for &(c, s) in &truth.spikes {
        let k = s / SPB;
        if k >= first_bin && ((k - first_bin) as usize) < bins {
            e[(k - first_bin) as usize][c] += 1.0;
        }
    }
    e
}

fn assert_one_output_per_bin_in_order(got: &[(u64, u16)], seq: &[u64]) {
    let out: Vec<u64> = got.iter().map(|g| g.0).collect();
    assert_eq!(out, seq, "outputs are not one per recorded bin in seq order");
    for w in seq.windows(2) {
        assert_eq!(w[1], w[0] + 1, "bins are not consecutive");
    }
}

fn assert_heartbeats_every_two_seconds(truth: &Truth) {
    assert!(truth.heartbeats.len() >= 5, "only {} heartbeats", truth.heartbeats.len());
    for w in truth.heartbeats.windows(2) {
        let dt = w[1] - w[0];
        assert!((1.5..=2.5).contains(&dt), "heartbeat interval {dt:.2} s; expected ~2 s");
    }
}

#[test]
fn voltage_mode_counts_the_injected_spikes() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port_pair();
    let (truth, session, got, counters) = run(config(port, dir.path(), "voltage"), port, "voltage", 10.0, dir.path());
    let (seq, bins) = read_bins(&session);
    // The first second calibrates the thresholds: bins start after it.
    assert_eq!(seq.first().copied(), Some((RATE as u64) / SPB), "first bin after the 1 s calibration window");
    assert_eq!(seq.last().copied(), Some(truth.total_samples / SPB - 1), "every complete bin decoded");
    assert_one_output_per_bin_in_order(&got, &seq);
    assert_eq!(counters.imputed, 0, "no bin should be imputed: {counters:?}");
    assert_eq!(counters.dropped_total(), 0, "nothing malformed was sent: {counters:?}");

    // Match detections to injected spikes per channel, allowing the
    // threshold crossing to fall in the bin before the trough's.
    let exp = expected_counts(&truth, seq[0], seq.len());
    let (mut injected, mut detected, mut false_pos) = (0.0, 0.0, 0.0);
    for c in 0..CHANNELS {
        let mut early = 0.0f32; // detections of the previous bin not matched there
        for k in 0..seq.len() {
            let mut e = exp[k][c];
            injected += e as f64;
            let m1 = e.min(early);
            e -= m1;
            let m2 = e.min(bins[k][c]);
            detected += (m1 + m2) as f64;
            false_pos += (early - m1) as f64;
            early = bins[k][c] - m2;
        }
        false_pos += early as f64;
    }
    let recall = detected / injected;
    let fp = false_pos / injected;
    println!(
        "injected {injected}, detected {detected} ({:.1} %), false {false_pos} ({:.2} %)",
        recall * 100.0,
        fp * 100.0
    );
    assert!(injected > 1000.0, "too few injected spikes to judge: {injected}");
    assert!(recall >= 0.95, "detected {:.1} % of injected spikes; expected >= 95 %", recall * 100.0);
    assert!(fp < 0.05, "false detections {:.2} % of injected; expected < 5 %", fp * 100.0);

    assert_heartbeats_every_two_seconds(&truth);
    offline_frontend_gives_the_same_bins(dir.path(), &cfg_file_of(dir.path()), &seq, &bins, &session);
    let f = hdf5::File::open(&session).unwrap();
    let ev_seq: Vec<u64> = f.dataset("event_seq").unwrap().read_raw().unwrap();
    let ev_sample: Vec<u64> = f.dataset("event_sample_num").unwrap().read_raw().unwrap();
    let ev_state: Vec<u8> = f.dataset("event_state").unwrap().read_raw().unwrap();
    // TTLs sent before the first data block cannot be placed in a bin yet.
    let want: Vec<&(u64, u8, u8)> = truth.ttl.iter().filter(|t| t.0 >= 1024).collect();
    assert_eq!(ev_sample, want.iter().map(|t| t.0).collect::<Vec<_>>(), "TTL events recorded");
    assert_eq!(ev_state, want.iter().map(|t| t.2).collect::<Vec<_>>());
    assert_eq!(ev_seq, want.iter().map(|t| t.0 / SPB).collect::<Vec<_>>());
}

/// The `[frontend]` table the live run used, as a config file for the offline command.
fn cfg_file_of(dir: &Path) -> PathBuf {
    let p = dir.join("frontend.toml");
    let cfg = config(0, dir, "voltage");
    let text = format!("[frontend]\n{}", toml::to_string(&cfg.frontend).unwrap());
    std::fs::write(&p, text).unwrap();
    p
}

/// `alternator frontend` over the voltage the stand-in sent gives the live bins bit for bit.
fn offline_frontend_gives_the_same_bins(dir: &Path, cfg: &Path, seq: &[u64], bins: &[Vec<f32>], session: &Path) {
    let out = dir.join("offline.h5");
    let st = Command::new(env!("CARGO_BIN_EXE_alternator"))
        .args(["frontend", "--data"])
        .arg(dir.join("raw.h5"))
        .arg("--out")
        .arg(&out)
        .arg("--config")
        .arg(cfg)
        .output()
        .unwrap();
    assert!(st.status.success(), "{}", String::from_utf8_lossy(&st.stderr));
    let (off_seq, off_bins) = read_bins(&out);
    assert_eq!(off_seq, seq, "offline bins cover other seqs than the live ones");
    assert!(off_bins == bins, "offline bins differ from the live daemon's");
    let thresholds = |p: &Path| -> Vec<f32> {
        hdf5::File::open(p).unwrap().dataset("frontend/thresholds").unwrap().read_raw().unwrap()
    };
    assert_eq!(
        thresholds(&out),
        thresholds(session),
        "thresholds stored in the session file differ from the offline run's"
    );
}

#[test]
fn spikes_mode_counts_spike_events_per_electrode() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port_pair();
    let mut cfg = config(port, dir.path(), "spikes");
    cfg.ingest.openephys.channels = (1..=CHANNELS).map(|i| ChannelRef::Name(format!("Electrode {i}"))).collect();
    let (truth, session, got, counters) = run(cfg, port, "spikes", 6.0, dir.path());
    let (seq, bins) = read_bins(&session);
    assert!(seq.len() > 100, "only {} bins", seq.len());
    assert_one_output_per_bin_in_order(&got, &seq);
    assert_eq!(counters.dropped_total(), 0, "no event arrived after its bin closed: {counters:?}");
    let exp = expected_counts(&truth, seq[0], seq.len());
    let total: f32 = exp.iter().flatten().sum();
    assert!(total > 500.0, "too few spikes: {total}");
    assert_eq!(bins, exp, "recorded counts differ from the spike events sent");
}

#[test]
fn an_unknown_source_kind_is_refused_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.toml");
    std::fs::write(&cfg, "[ingest]\nkind = \"openephis\"\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_alternator")).args(["serve", "--config"]).arg(&cfg).output().unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("ingest.kind") && err.contains("protocol-v1") && err.contains("openephys"), "{err}");
}

/// Bad input from the plugin's socket is counted by reason and skipped;
/// decoding continues. The "plugin" here is a bare XPUB socket.
#[test]
fn bad_plugin_messages_are_counted_by_reason() {
    use alternator::wire::DropReason as R;
    let dir = tempfile::tempdir().unwrap();
    let ctx = zmq::Context::new();
    let xpub = ctx.socket(zmq::XPUB).unwrap();
    xpub.bind("tcp://127.0.0.1:*").unwrap();
    let ep = xpub.get_last_endpoint().unwrap().unwrap();
    let mut cfg = common::config(dir.path());
    cfg.ingest.kind = "openephys".into();
    cfg.ingest.openephys.endpoint = ep;
    cfg.ingest.openephys.heartbeat = false;
    cfg.frontend.thresholds_uv = vec![-50.0; 4];
    let daemon = Daemon::start(&cfg, alternator::fixtures::synthetic_model(4, 1), &zmq::Context::new()).unwrap();
    xpub.set_rcvtimeo(5000).unwrap();
    assert_eq!(xpub.recv_bytes(0).unwrap(), b"\x01", "the daemon subscribes to everything");

    let header = |ch: i64, sample: i64, n: i64, rate: f64, size: usize| {
        format!(
            r#"{{"message_num": 1, "type": "data", "content": {{"stream": "s", "channel_num": {ch}, "channel_name": "CH{ch}", "num_samples": {n}, "sample_num": {sample}, "sample_rate": {rate:.1}}}, "data_size": {size}, "timestamp": 1700000000000}}"#
        )
    };
    let block = |v: f32, n: usize| -> Vec<u8> { (0..n).flat_map(|_| v.to_le_bytes()).collect() };
    let send = |parts: &[&[u8]]| xpub.send_multipart(parts.iter().copied(), 0).unwrap();
    let data = |ch: i64, sample: i64, rate: f64, payload: &[u8]| {
        let h = header(ch, sample, (payload.len() / 4) as i64, rate, payload.len());
        send(&[b"DATA\0", h.as_bytes(), payload]);
    };
    let ok = block(1.0, 600);
    for ch in 0..4 {
        data(ch, 0, 30000.0, &ok); // bin 0, complete
    }
    send(&[b"DATA\0", b"\xff\xfe{", &ok]); // not UTF-8
    send(&[b"DATA\0", b"{not json", &ok]);
    send(&[b"DATA\0", br#"{"type": "data", "content": {"stream": "s", "channel_num": 0}, "data_size": 2400}"#, &ok]);
    send(&[b"DATA\0", header(0, 600, 600, 30000.0, 2000).as_bytes(), &ok]); // data_size != payload
    send(&[b"DATA\0", header(0, 600, 600, 30000.0, 2401).as_bytes(), &[0u8; 2401]]); // not whole f32s
    send(&[b"DATA\0", header(99_999, 600, 600, 30000.0, 2400).as_bytes(), &ok]);
    send(&[b"DATA\0", header(0, 600, 0, 30000.0, 0).as_bytes()]); // no samples
    send(&[b"FOO\0", header(0, 600, 600, 30000.0, 2400).as_bytes(), &ok]);
    send(&[b"DATA\0", header(0, 600, 600, 30000.0, 2400).as_bytes(), &ok, b"extra"]);
    data(1, 0, 30000.0, &ok); // channel 1 again at sample 0: out of order
    let mut nan = ok.clone();
    nan[..4].copy_from_slice(&f32::NAN.to_le_bytes());
    data(0, 600, 30000.0, &nan); // bin 1 gets a non-finite sample: decoded as imputed
    for ch in 1..4 {
        data(ch, 600, 30000.0, &ok);
    }
    // The rate changes: a restart. Only channel 0 then delivers its first bin;
    // after stall_ms the three silent channels are counted as stalled and
    // that bin is decoded as imputed instead of holding the loop.
    data(0, 1200, 20000.0, &block(1.0, 400));
    let deadline = Instant::now() + Duration::from_secs(10);
    while daemon.counters.snapshot().dropped(R::StalledChannel) < 3 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let s = daemon.shutdown().counters;
    for (reason, n) in [
        (R::BadJson, 2),
        (R::MissingField, 1),
        (R::SizeMismatch, 1),
        (R::BadPayload, 1),
        (R::ChannelOutOfRange, 1),
        (R::EmptyBlock, 1),
        (R::UnknownEnvelope, 1),
        (R::Malformed, 1),
        (R::OutOfOrder, 1),
        (R::NonFinite, 1),
        (R::RateChanged, 1),
        (R::StalledChannel, 3),
    ] {
        assert_eq!(s.dropped(reason), n, "{reason}: {s:?}");
    }
    assert_eq!(
        (s.bins_in, s.imputed, s.resets),
        (1, 2, 1),
        "bin 0 decoded; bin 1 (NaN) and the stalled bin imputed; one restart: {s:?}"
    );
}
