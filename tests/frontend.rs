//! The raw-voltage front end against independent references: the band-pass
//! design and filtered output against scipy (`tests/frontend_scipy.py`), and
//! the offline `alternator frontend` command, through the real binary, on a
//! raw recording written by h5py with spikes injected at known times
//! (`tests/frontend_raw.py`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use alternator::frontend::{bandpass_sos, Cascade, FrontEnd, FrontendConfig};
use alternator::recording::{read_session_seq, ReadOptions, Recording};
use hdf5_metno as hdf5;

/// Runs `tests/{script}` with `args`; fails (never skips) when Python or its packages are missing.
fn python(script: &str, args: &[&Path]) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join(script);
    let out = Command::new("python3").arg(&path).args(args).output().unwrap_or_else(|e| {
        panic!("python3 not runnable ({e}); run scripts/setup.sh (numpy, scipy, h5py)");
    });
    assert!(
        out.status.success(),
        "{script} failed (scripts/setup.sh installs numpy, scipy and h5py):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn band_pass_matches_scipy_design_and_sosfilt() {
    let dir = tempfile::tempdir().unwrap();
    let reference = dir.path().join("ref.h5");
    python("frontend_scipy.py", &[&reference]);
    let file = hdf5::File::open(&reference).unwrap();
    let mut cases = 0;
    for name in ["case0", "case1", "case2", "case3"] {
        let g = file.group(name).unwrap();
        let num = |a: &str| g.attr(a).unwrap().read_scalar::<f64>().unwrap();
        let order = g.attr("order").unwrap().read_scalar::<i64>().unwrap() as usize;
        let (low, high, fs) = (num("low"), num("high"), num("fs"));
        let sos_ref = g.dataset("sos").unwrap().read_2d::<f64>().unwrap();
        let sos = bandpass_sos(order, low, high, fs);
        assert_eq!(sos_ref.dim(), (sos.len(), 6), "{name}: section count");
        for (r, row) in sos.iter().enumerate() {
            for c in 0..6 {
                let d = (row[c] - sos_ref[[r, c]]).abs();
                assert!(d < 1e-9, "{name}: sos[{r}][{c}] = {} vs scipy {} (|d| = {d:e})", row[c], sos_ref[[r, c]]);
            }
        }
        let x: Vec<f32> = g.dataset("x").unwrap().read_raw().unwrap();
        let y_ref: Vec<f64> = g.dataset("y").unwrap().read_raw().unwrap();
        let mut y = x.clone();
        Cascade::new(&sos).run(&mut y);
        let rms = (y_ref.iter().map(|v| v * v).sum::<f64>() / y_ref.len() as f64).sqrt();
        let worst = y.iter().zip(&y_ref).map(|(a, b)| (f64::from(*a) - b).abs()).fold(0.0, f64::max);
        assert!(worst <= 1e-4 * rms, "{name}: max |rust - scipy| = {worst:e}, signal RMS {rms}");
        // Sample by sample gives the very same values as the block run.
        let mut one = Cascade::new(&sos);
        assert!(x.iter().zip(&y).all(|(xi, yi)| one.step(*xi).to_bits() == yi.to_bits()), "{name}: step != run");
        cases += 1;
    }
    assert_eq!(cases, 4);
}

fn alternator(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_alternator")).args(args).env("RAYON_NUM_THREADS", "1").output().unwrap()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Raw file, truth file and a temp dir holding them.
fn raw_recording() -> (tempfile::TempDir, PathBuf, Vec<(usize, u64)>) {
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("raw.h5");
    let truth = dir.path().join("truth.txt");
    python("frontend_raw.py", &[&raw, &truth]);
    let spikes = std::fs::read_to_string(&truth)
        .unwrap()
        .lines()
        .map(|l| {
            let mut it = l.split_whitespace().map(|v| v.parse::<u64>().unwrap());
            (it.next().unwrap() as usize, it.next().unwrap())
        })
        .collect();
    (dir, raw, spikes)
}

/// Detected fraction of the injected spikes and fraction of counts that match none.
fn score(rec: &Recording, seq: &[u64], truth: &[(usize, u64)], spb: u64) -> (f64, f64) {
    let first = seq[0];
    let mut expected = vec![0f32; rec.spikes.data.len()];
    for &(c, sample) in truth {
        let k = sample / spb;
        if let Some(row) = seq.iter().position(|&q| q == k) {
            expected[row * rec.n_channels() + c] += 1.0;
        } else {
            assert!(k < first || k > *seq.last().unwrap(), "bin {k} missing from /seq");
        }
    }
    let hits: f32 = rec.spikes.data.iter().zip(&expected).map(|(g, e)| g.min(*e)).sum();
    let extra: f32 = rec.spikes.data.iter().zip(&expected).map(|(g, e)| (g - e).max(0.0)).sum();
    let total_expected: f32 = expected.iter().sum();
    let total_got: f32 = rec.spikes.data.iter().sum();
    assert!(total_expected > 500.0, "too few spikes to judge: {total_expected}");
    (f64::from(hits / total_expected), f64::from(extra / total_got.max(1.0)))
}

/// The same raw file through `FrontEnd` in this process, in 1000-sample blocks.
fn in_process(raw: &Path, cfg: &FrontendConfig, bin_seconds: f64) -> (Vec<u64>, Vec<f32>) {
    let f = hdf5::File::open(raw).unwrap();
    let v = f.dataset("voltage").unwrap().read_2d::<f32>().unwrap();
    let rate = f.attr("sample_rate").unwrap().read_scalar::<f64>().unwrap();
    let (t, c) = v.dim();
    let mut fe = FrontEnd::new(cfg, c, rate, bin_seconds).unwrap();
    let (mut seq, mut counts) = (Vec::new(), Vec::new());
    for start in (0..t).step_by(1000) {
        let n = 1000.min(t - start);
        let block: Vec<f32> =
            (0..c).flat_map(|ch| (start..start + n).map(move |i| (ch, i))).map(|(ch, i)| v[[i, ch]]).collect();
        fe.process(start as u64, &block, n, &mut |k, row| {
            seq.push(k);
            counts.extend_from_slice(row);
        })
        .unwrap();
    }
    (seq, counts)
}

#[test]
fn offline_command_detects_injected_spikes_and_matches_streaming() {
    let (dir, raw, truth) = raw_recording();
    let out = dir.path().join("binned.h5");
    let config = dir.path().join("serve.toml");
    // A serve config: other sections are ignored, [frontend] is used.
    std::fs::write(&config, "[ingest]\nendpoint = \"tcp://127.0.0.1:5555\"\n\n[frontend]\nrefractory_ms = 1.0\n")
        .unwrap();
    let o = alternator(&["frontend", "--data", s(&raw), "--out", s(&out), "--config", s(&config), "--bin-ms", "20"]);
    assert!(o.status.success(), "frontend failed: {}", String::from_utf8_lossy(&o.stderr));
    let rec = Recording::read(&out, &ReadOptions::default()).unwrap();
    let seq = read_session_seq(&out).unwrap().expect("/seq written");
    assert_eq!(rec.bin_seconds, 0.02);
    assert_eq!(rec.n_channels(), 12);
    // 4 s of 20 ms bins; the first 1 s is the calibration window (bins 0..=49).
    assert_eq!(seq, (50..200).collect::<Vec<u64>>());
    let (recall, false_frac) = score(&rec, &seq, &truth, 600);
    println!("recall {:.2}%, extra counts {:.2}%", 100.0 * recall, 100.0 * false_frac);
    assert!(recall >= 0.95, "detected {:.1}% of injected spikes", 100.0 * recall);
    assert!(false_frac < 0.05, "{:.1}% of counts match no injected spike", 100.0 * false_frac);
    // Bit-identical to the streaming front end fed 1000-sample blocks.
    let (live_seq, live_counts) = in_process(&raw, &FrontendConfig::default(), 0.02);
    assert_eq!(live_seq, seq);
    assert_eq!(live_counts, rec.spikes.data);

    // The stored thresholds reproduce the run, now from the first bin.
    let config2 = dir.path().join("again.toml");
    std::fs::write(&config2, format!("[frontend]\nthresholds_from = {:?}\n", s(&out))).unwrap();
    let out2 = dir.path().join("again.h5");
    let o = alternator(&["frontend", "--data", s(&raw), "--out", s(&out2), "--config", s(&config2)]);
    assert!(o.status.success(), "second run failed: {}", String::from_utf8_lossy(&o.stderr));
    let rec2 = Recording::read(&out2, &ReadOptions::default()).unwrap();
    let seq2 = read_session_seq(&out2).unwrap().unwrap();
    assert_eq!(seq2, (0..200).collect::<Vec<u64>>());
    assert_eq!(rec2.spikes.slice_rows(50, 200), rec.spikes);
}

#[test]
fn offline_command_refuses_bad_input_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("o.h5");
    let bad = dir.path().join("no-voltage.h5");
    hdf5::File::create(&bad).unwrap().new_dataset::<f32>().shape([4, 2]).create("spikes").unwrap();
    let o = alternator(&["frontend", "--data", s(&bad), "--out", s(&out)]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("no-voltage.h5") && err.contains("/voltage"), "{err}");

    let config = dir.path().join("c.toml");
    std::fs::write(&config, "[frontend]\nthreshold_k = -2.0\nband_lo_hz = 3.0\n").unwrap();
    let o = alternator(&["frontend", "--data", s(&bad), "--out", s(&out), "--config", s(&config)]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(64), "{err}");
    assert!(err.contains("frontend.band_lo_hz") && err.contains("frontend.threshold_k"), "{err}");
    assert!(!out.exists());
}
