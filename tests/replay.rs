//! `replay`: refuses bad input before sending anything, paces accurately,
//! and replaying a recorded session reproduces its outputs bit for bit.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use alternator::daemon::control;
use alternator::recording::{read_session_seq, Recording};
use alternator::replay::{Publisher, ReplayOptions};
use alternator::simulate::{simulate_reach, SimParams};
use common::{config, demo, Rig};

fn replay_bin(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_alternator")).arg("replay").args(args).output().unwrap()
}

#[test]
fn bad_input_is_refused_before_anything_is_sent() {
    let dir = tempfile::tempdir().unwrap();
    let (mf, _) = demo(10);
    let rig = Rig::start(&config(dir.path()), mf);
    let ingest = rig.daemon.ingest_endpoint.clone();
    let ctl = rig.daemon.control_endpoint.clone().unwrap();

    let out = replay_bin(&["/no/such/session.h5", "--endpoint", &ingest, "--control", &ctl]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("/no/such/session.h5"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A file without /spikes.
    let no_spikes = dir.path().join("no-spikes.h5");
    let f = hdf5_metno::File::create(&no_spikes).unwrap();
    f.new_attr::<f64>().create("bin_seconds").unwrap().write_scalar(&0.02).unwrap();
    f.new_dataset_builder().with_data(&[1.0f32, 2.0]).create("behavior").unwrap();
    drop(f);
    let out = replay_bin(&[no_spikes.to_str().unwrap(), "--endpoint", &ingest, "--control", &ctl]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("spikes") && err.contains("no-spikes.h5"), "{err}");

    // Channels that do not match the daemon's model.
    let wrong = dir.path().join("wrong.h5");
    simulate_reach(&SimParams { minutes: 0.1, seed: 1, array_seed: 0, channels: 50 }).write(&wrong).unwrap();
    let out = replay_bin(&[wrong.to_str().unwrap(), "--endpoint", &ingest, "--control", &ctl, "--max"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("50 channels") && err.contains("96"), "{err}");

    let st = control::request(&rig.ctx, &ctl, "status", 2000).unwrap();
    assert_eq!(st["counters"]["bins_in"], 0, "nothing was sent: {st}");
    assert_eq!(st["counters"]["drops"].as_array().unwrap().iter().map(|d| d[1].as_u64().unwrap()).sum::<u64>(), 0);
    let _ = rig.finish();
}

/// A paced replay sends every bin, reports the target rate and its own
/// achieved rate; how close the pacing is is measured by
/// `cargo bench --bench pacing`, not asserted here.
#[test]
fn paced_replay_at_1_khz_delivers_every_frame_and_reports_its_rate() {
    let ctx = zmq::Context::new();
    let sub = ctx.socket(zmq::SUB).unwrap();
    sub.bind("tcp://127.0.0.1:*").unwrap();
    sub.set_subscribe(b"").unwrap();
    let ep = sub.get_last_endpoint().unwrap().unwrap();
    // A SUB socket only attaches new peers (and sends them its subscription)
    // while the application calls into it: receive on a thread from the start.
    sub.set_rcvtimeo(100).unwrap();
    let counter = std::thread::spawn(move || {
        let (mut n, mut idle) = (0, 0);
        while n < 3000 && idle < 100 {
            match sub.recv_multipart(0) {
                Ok(_) => {
                    n += 1;
                    idle = 0;
                }
                Err(_) => idle += 1,
            }
        }
        n
    });
    let mut rec = simulate_reach(&SimParams { minutes: 0.05, seed: 3, array_seed: 0, channels: 16 }); // 150 bins
                                                                                                      // 3000 bins of 1 ms.
    let reps = 20;
    rec = Recording {
        spikes: alternator::matrix::Matrix::vstack(&vec![&rec.spikes; reps]),
        behavior: None,
        behavior_valid: None,
        timestamps: None,
        bin_seconds: 0.001,
    };
    let mut p = Publisher::new(&ctx, &ep, false).unwrap();
    p.wait_for_subscriber(Duration::from_secs(5)).unwrap();
    let r = p
        .replay(&rec, &ReplayOptions { speed: Some(1.0), ..ReplayOptions::default() }, &AtomicBool::new(false))
        .unwrap();
    assert_eq!(r.bins_sent, 3000);
    assert_eq!(r.target_rate_hz, Some(1000.0));
    // Paced, not as fast as possible: 3000 bins at 1 kHz take about 3 s (the
    // bound is loose on purpose; a shared machine only ever makes it slower).
    assert!(r.seconds > 2.5, "3000 bins at 1 kHz took {:.2} s: not paced", r.seconds);
    assert!((r.achieved_rate_hz * r.seconds - 3000.0).abs() < 1.5, "rate and duration disagree: {r:?}");
    assert_eq!(counter.join().unwrap(), 3000, "every paced frame arrived");
}

fn only_session(dir: &Path) -> PathBuf {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "h5"))
        .collect();
    assert_eq!(v.len(), 1, "{v:?}");
    v.pop().unwrap()
}

/// Decoded values, seqs and flags of a stream's outputs.
type Outputs = (Vec<f32>, Vec<u64>, Vec<u8>);

fn recorded_outputs(path: &Path) -> Outputs {
    let f = hdf5_metno::File::open(path).unwrap();
    (
        f.dataset("outputs").unwrap().read_raw::<f32>().unwrap(),
        f.dataset("output_seq").unwrap().read_raw::<u64>().unwrap(),
        f.dataset("output_flags").unwrap().read_raw::<u8>().unwrap(),
    )
}

/// Streams `rec` (with `opts`) into a fresh daemon recording into `dir`;
/// returns the live outputs (values, seq, flags) and the session file.
fn run_session(dir: &Path, rec: &Recording, opts: ReplayOptions) -> (Outputs, PathBuf) {
    let (mf, _) = demo(1);
    let mut rig = Rig::start(&config(dir), mf);
    let r = rig.publisher.replay(rec, &opts, &AtomicBool::new(false)).unwrap();
    let expected = r.next_seq - opts.seqs.as_ref().map(|s| s[0]).unwrap_or(opts.first_seq);
    rig.wait_outputs(expected);
    let (_, got) = rig.finish();
    let live = (
        got.iter().flat_map(|g| g.values.clone()).collect(),
        got.iter().map(|g| g.seq).collect(),
        got.iter().map(|g| g.flags as u8).collect(),
    );
    (live, only_session(dir))
}

#[test]
fn replaying_a_recorded_session_reproduces_its_outputs_bit_for_bit() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, rec) = demo(1200);
    // Original stream with lost bins (every 9th), so imputation is part of it.
    let (live_a, file_a) = run_session(
        &tmp.path().join("a"),
        &rec,
        ReplayOptions { speed: None, drop_every: Some(9), ..ReplayOptions::default() },
    );
    let out_a = recorded_outputs(&file_a);
    assert_eq!(live_a, out_a, "the session file holds exactly what was published");
    assert!(out_a.2.iter().any(|&f| f & 1 == 1), "some outputs were imputed");

    // Replay the session file (its /seq reproduces the gaps) into a fresh daemon.
    let rec_a = Recording::read(&file_a, &Default::default()).unwrap();
    let seqs = read_session_seq(&file_a).unwrap().unwrap();
    let (live_b, file_b) = run_session(
        &tmp.path().join("b"),
        &rec_a,
        ReplayOptions { speed: None, seqs: Some(seqs), ..ReplayOptions::default() },
    );
    // The last bin of the original may have been dropped with nothing after it.
    assert_eq!(live_b.1, out_a.1[..live_b.1.len()].to_vec());
    assert_eq!(live_b.0, out_a.0[..live_b.0.len()].to_vec(), "bit-identical decoded outputs");
    assert_eq!(live_b.2, out_a.2[..live_b.2.len()].to_vec());

    // Replay → record → replay round trip.
    let rec_b = Recording::read(&file_b, &Default::default()).unwrap();
    let seqs_b = read_session_seq(&file_b).unwrap().unwrap();
    let (live_c, _) = run_session(
        &tmp.path().join("c"),
        &rec_b,
        ReplayOptions { speed: None, seqs: Some(seqs_b), ..ReplayOptions::default() },
    );
    assert_eq!(live_c, recorded_outputs(&file_b));
    assert_eq!(live_c, live_b);
}

/// Bins `0..n` of the demo recording (20 ms bins, timestamps `i × 0.02` s)
/// written as a plain recording (no `/seq`) to `dir/source.h5`.
fn source_file(dir: &Path, n: usize) -> (PathBuf, Recording) {
    let (_, rec) = demo(n);
    let path = dir.join("source.h5");
    rec.write(&path).unwrap();
    (path, rec)
}

/// The bin count `replay` reports on its last line: "sent N bins (...".
fn bins_sent(stdout: &str) -> u64 {
    let n = stdout.rsplit("sent ").next().and_then(|s| s.split(' ').next()).and_then(|s| s.parse().ok());
    n.unwrap_or_else(|| panic!("no \"sent N bins\" in {stdout:?}"))
}

#[test]
fn from_and_to_send_exactly_the_bins_in_between() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, rec) = source_file(tmp.path(), 400);
    let (mf, _) = demo(1);
    let rig = Rig::start(&config(&tmp.path().join("sessions")), mf.clone());
    let ctl = rig.daemon.control_endpoint.clone().unwrap();
    // 2.01 s and 5.01 s fall inside bins 100 and 250, so the bins starting
    // in [2.01 s, 5.01 s) are 101..=250 whatever the rounding of i × 0.02.
    let args =
        ["--endpoint", &rig.daemon.ingest_endpoint, "--control", &ctl, "--max", "--from", "2.01", "--to", "5.01"];
    let out = replay_bin(&[&[src.to_str().unwrap()][..], &args].concat());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(bins_sent(&stdout), 150, "{stdout}");
    rig.wait_outputs(150);
    let (summary, got) = rig.finish();

    let want = rec.slice_bins(101, 251);
    assert_eq!(got.iter().map(|g| g.seq).collect::<Vec<u64>>(), (0..150).collect::<Vec<u64>>());
    assert_eq!(summary.sessions.len(), 1, "{:?}", summary.sessions);
    let back = Recording::read(&summary.sessions[0].path, &Default::default()).unwrap();
    assert_eq!(back.spikes, want.spikes, "the session holds exactly bins 101..=250 of the source");
    assert_eq!(back.behavior, want.behavior);
    let decoded = common::offline(&mf, &want, |_| false);
    assert_eq!(got.iter().flat_map(|g| g.values.clone()).collect::<Vec<f32>>(), decoded.data);
}

#[test]
fn loop_wraps_to_the_from_bin_and_seq_keeps_counting() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, rec) = source_file(tmp.path(), 100);
    let (mf, _) = demo(1);
    let rig = Rig::start(&config(&tmp.path().join("sessions")), mf);
    let ctl = rig.daemon.control_endpoint.clone().unwrap();
    // Bins 26..=75 per pass (see the test above for the mid-bin bounds), at
    // 20× the recorded pace: 1000 bins/s.
    let child = Command::new(env!("CARGO_BIN_EXE_alternator"))
        .args(["replay", src.to_str().unwrap(), "--endpoint", &rig.daemon.ingest_endpoint, "--control", &ctl])
        .args(["--speed", "20", "--loop", "--from", "0.51", "--to", "1.51"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (per_pass, first) = (50usize, 26usize);
    let wrapped = rig.daemon.counters.wait_until(Duration::from_secs(20), |c| c.bins_in >= 3 * per_pass as u64 + 25);
    // Stop it as Ctrl-C would (also when the wait failed: it would loop forever).
    let killed = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(wrapped && killed.success(), "the replay did not pass three times: {stdout}\n{stderr}");
    assert!(out.status.success(), "replay --loop did not stop cleanly on SIGINT: {stdout}\n{stderr}");
    let sent = bins_sent(&stdout);
    rig.wait_outputs(sent);
    let (summary, got) = rig.finish();

    assert_eq!(got.len() as u64, sent);
    assert!(got.iter().enumerate().all(|(k, g)| g.seq == k as u64), "seq keeps counting across passes");
    assert!(got.iter().all(|g| g.flags == 0), "no restart, no gap: nothing reset or imputed");
    assert_eq!(summary.sessions.len(), 1, "one stream, one session file: {:?}", summary.sessions);
    let back = Recording::read(&summary.sessions[0].path, &Default::default()).unwrap();
    assert_eq!(back.n_bins() as u64, sent);
    for k in 0..back.n_bins() {
        let i = first + k % per_pass;
        assert_eq!(back.spikes.row(k), rec.spikes.row(i), "recorded bin {k} is source bin {i}");
    }
}
