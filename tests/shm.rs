//! The shared-memory transport (iceoryx2) against independent clients:
//! the Python rig `tests/shm_rig.py` (PyPI package iceoryx2) streams
//! `recordings/demo-test.h5` into the daemon's shm source and reads the
//! shm output service; its outputs must equal offline decoding bit for bit.
//! Bad frames and a rig that disappears and comes back are fed both over
//! shm and over protocol v1 on ZeroMQ; the daemon's counters must agree.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use alternator::daemon::config::ServeConfig;
use alternator::daemon::stats::CounterSnapshot;
use alternator::daemon::Daemon;
use alternator::ingest::shm::ShmRig;
use alternator::wire::{encode_frame, DropReason, Dtype, Header, VERSION};

/// Service names of one test (unique per process and test, so tests and
/// concurrent runs never share a service).
fn services(test: &str) -> (String, String, String) {
    let base = format!("alternator-test-{}-{test}", std::process::id());
    (format!("{base}/input"), format!("{base}/behavior"), format!("{base}/decoded"))
}

fn shm_config(record: &std::path::Path, test: &str) -> ServeConfig {
    let (input, behavior, decoded) = services(test);
    let mut c = common::config(record);
    c.record.enabled = false;
    c.control.enabled = false;
    c.ingest.kind = "shm".into();
    c.ingest.shm.service = input;
    c.ingest.shm.behavior_service = behavior;
    c.publish.shm.enabled = true;
    c.publish.shm.service = decoded;
    c
}

fn wait_until(what: &str, secs: u64, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn python_rig_over_shm_gets_outputs_equal_to_offline_bit_for_bit() {
    const BINS: usize = 400;
    let dir = tempfile::tempdir().unwrap();
    let (mf, rec) = common::demo(BINS);
    let cfg = shm_config(dir.path(), "python");
    let daemon = Daemon::start(&cfg, mf.clone(), &zmq::Context::new()).unwrap();
    assert_eq!(daemon.ingest_endpoint, format!("shm:{}", cfg.ingest.shm.service));

    let out = Command::new("python3")
        .arg("tests/shm_rig.py")
        .args(["--data", common::DATA, "--bins", &BINS.to_string(), "--rate", "1000"])
        .args(["--service", &cfg.ingest.shm.service, "--behavior-service", &cfg.ingest.shm.behavior_service])
        .args(["--out-service", &cfg.publish.shm.service])
        .output()
        .expect("python3 not found: run scripts/setup.sh");
    assert!(out.status.success(), "rig failed: {}", String::from_utf8_lossy(&out.stderr));
    let summary = daemon.shutdown();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();

    assert_eq!(report["sent"], BINS as u64);
    assert_eq!(summary.counters.bins_in, BINS as u64, "{:?}", summary.counters);
    assert_eq!(summary.counters.dropped_total(), 0, "{:?}", summary.counters.drops);
    assert_eq!(summary.counters.behavior_in, report["behavior_sent"].as_u64().unwrap());
    assert!(summary.counters.behavior_in > 0, "the recording has behaviour; none arrived");

    let want = common::offline(&mf, &rec, |_| false);
    let outputs = report["outputs"].as_array().unwrap();
    assert_eq!(outputs.len(), BINS, "one shm output per bin");
    for (t, o) in outputs.iter().enumerate() {
        assert_eq!(o[0].as_u64().unwrap(), t as u64, "outputs in seq order");
        assert_eq!(o[1].as_u64().unwrap(), 0, "bin {t}: no flags expected");
        let bits: String = want.row(t).iter().flat_map(|v| v.to_le_bytes()).map(|b| format!("{b:02x}")).collect();
        assert_eq!(o[2].as_str().unwrap(), bits, "bin {t}: live output differs from offline decoding");
    }
}

/// Bodies exercising every frame-level drop reason, with the seqs they use;
/// `good(seq)` builds a valid frame of `channels` values.
fn bad_bodies(channels: usize, max_bytes: usize) -> Vec<Vec<u8>> {
    let good = |seq: u64, values: &[f32]| {
        let h = Header {
            version: VERSION,
            dtype: Dtype::F32,
            flags: 0,
            seq,
            t_ns: 1,
            channels: values.len() as u32,
            samples: 1,
        };
        let mut b = Vec::new();
        encode_frame(&mut b, &h, values);
        b
    };
    let row = vec![1.0f32; channels];
    let mut v = Vec::new();
    v.push(vec![0x41; 10]); // shorter than a header
    let mut b = good(20, &row);
    b[0] = b'X'; // bad magic
    v.push(b);
    let mut b = good(20, &row);
    b[4] = 9; // bad version
    v.push(b);
    let mut b = good(20, &row);
    b[5] = 7; // bad dtype
    v.push(b);
    let b = good(20, &row);
    v.push(b[..b.len() - 3].to_vec()); // truncated payload
    let mut b = good(20, &row);
    b.extend_from_slice(&[0, 0, 0, 0]); // payload too long
    v.push(b);
    v.push(good(20, &vec![1.0f32; channels + 1])); // wrong channel count
    v.push(vec![0u8; max_bytes + 1]); // too large
    let mut nan = row.clone();
    nan[0] = f32::NAN;
    v.push(good(20, &nan)); // non-finite: imputed
    v.push(good(20, &row)); // duplicate of the seq above
    v
}

fn good_body(seq: u64, channels: usize) -> Vec<u8> {
    let h =
        Header { version: VERSION, dtype: Dtype::F32, flags: 0, seq, t_ns: 1, channels: channels as u32, samples: 1 };
    let mut b = Vec::new();
    encode_frame(&mut b, &h, &vec![0.5f32; channels]);
    b
}

/// Everything a rig sends in the comparison, in two sessions: seqs 0..20,
/// the bad bodies, seqs 21..40; the rig goes away; a new one sends 0..30.
fn sessions(channels: usize, max_bytes: usize) -> [Vec<Vec<u8>>; 2] {
    let mut first: Vec<Vec<u8>> = (0..20).map(|s| good_body(s, channels)).collect();
    first.extend(bad_bodies(channels, max_bytes));
    first.extend((21..40).map(|s| good_body(s, channels)));
    let second = (0..30).map(|s| good_body(s, channels)).collect();
    [first, second]
}

/// Good bins at the end of each session (each session ends with good
/// frames, taken in order, so once these are in the session is done).
const GOOD_AFTER: [u64; 2] = [20 + 19, 20 + 19 + 30];

const MAX_BYTES: usize = 4096;

fn counters_over_zmq(channels: usize, mf: alternator::model::ModelFile) -> CounterSnapshot {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = common::config(dir.path());
    cfg.record.enabled = false;
    cfg.ingest.protocol_v1.max_message_bytes = MAX_BYTES;
    let rig = common::Rig::start(&cfg, mf);
    for (k, session) in sessions(channels, MAX_BYTES).iter().enumerate() {
        let p = if k == 0 {
            None
        } else {
            let p = alternator::replay::Publisher::new(&rig.ctx, &rig.daemon.ingest_endpoint, false).unwrap();
            p.wait_for_subscriber(Duration::from_secs(5)).unwrap();
            Some(p)
        };
        for body in session {
            p.as_ref().unwrap_or(&rig.publisher).send_raw(b"spikes", body).unwrap();
        }
        wait_until("the daemon to take every ZeroMQ frame", 10, || {
            rig.daemon.counters.snapshot().bins_in >= GOOD_AFTER[k]
        });
    }
    rig.finish().0.counters
}

fn counters_over_shm(channels: usize, mf: alternator::model::ModelFile) -> CounterSnapshot {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = shm_config(dir.path(), "compare");
    cfg.ingest.shm.max_message_bytes = MAX_BYTES;
    let daemon = Daemon::start(&cfg, mf, &zmq::Context::new()).unwrap();
    for (k, session) in sessions(channels, MAX_BYTES).into_iter().enumerate() {
        // A rig of its own (node, publisher, notifier), dropped — the rig
        // disappears — once the daemon has taken its frames.
        let rig = ShmRig::open(&cfg.ingest.shm.service, None, MAX_BYTES + 1).unwrap();
        for body in &session {
            rig.send_raw(body).unwrap();
        }
        wait_until("the daemon to take every shm frame", 10, || daemon.counters.snapshot().bins_in >= GOOD_AFTER[k]);
    }
    daemon.shutdown().counters
}

#[test]
fn bad_frames_and_a_returning_rig_are_counted_as_over_zeromq() {
    let (mf, _) = common::demo(1);
    let channels = mf.model.spec.channels;
    let zmq = counters_over_zmq(channels, mf.clone());
    let shm = counters_over_shm(channels, mf);

    // What protocol v1 over ZeroMQ does with this input, stated outright.
    for reason in [
        DropReason::BadMagic,
        DropReason::BadVersion,
        DropReason::BadDtype,
        DropReason::WrongChannels,
        DropReason::NonFinite,
        DropReason::TooLarge,
        DropReason::Duplicate,
        DropReason::Malformed,
    ] {
        assert_eq!(zmq.dropped(reason), 1, "{} over ZeroMQ: {:?}", reason.as_str(), zmq.drops);
    }
    assert_eq!(zmq.dropped(DropReason::Truncated), 2, "short header and short payload: {:?}", zmq.drops);
    assert_eq!(zmq.resets, 1, "the returning rig (seq 0) restarts the stream");
    assert_eq!(zmq.bins_in, 20 + 19 + 30);

    // The shm path counts exactly the same.
    assert_eq!(shm.drops, zmq.drops, "drops by reason, shm vs ZeroMQ");
    assert_eq!(
        (shm.bins_in, shm.bins_out, shm.imputed, shm.resets),
        (zmq.bins_in, zmq.bins_out, zmq.imputed, zmq.resets),
        "bins in/out, imputed, resets: shm vs ZeroMQ"
    );
}

#[test]
fn a_service_name_on_the_command_line_selects_shm() {
    let mut c = ServeConfig::default();
    c.ingest.set_endpoint("shm:rig3/spikes");
    assert_eq!(c.ingest.kind, "shm");
    assert_eq!(c.ingest.shm.service, "rig3/spikes");
    assert!(c.problems().is_empty(), "{:?}", c.problems());
    c.ingest.shm.service.clear();
    c.publish.shm.enabled = true;
    c.publish.shm.service = "alternator/behavior".into();
    let p = c.problems();
    assert!(p.iter().any(|m| m.starts_with("ingest.shm.service:")), "{p:?}");
    assert!(p.iter().any(|m| m.starts_with("publish.shm.service:")), "{p:?}");
}

/// A service another process created with an incompatible type cannot be
/// joined: `serve` exits 69 (unavailable) naming the service, not 1.
#[test]
fn a_shm_service_that_cannot_be_opened_exits_69_naming_it() {
    let (input, _, _) = services("held");
    let node = alternator::ingest::shm::node("holder").unwrap();
    let name = alternator::ingest::shm::service_name(&input).unwrap();
    let _held = node.service_builder(&name).publish_subscribe::<u64>().open_or_create().unwrap();
    let tcp = || format!("tcp://127.0.0.1:{}", common::free_port());
    let out = Command::new(env!("CARGO_BIN_EXE_alternator"))
        .args(["serve", "--model", common::MODEL, "--ingest", &format!("shm:{input}")])
        .args(["--publish", &tcp(), "--control", &tcp(), "--no-record"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(69), "{err}");
    assert!(err.contains(&input), "the error names the service: {err}");
}
