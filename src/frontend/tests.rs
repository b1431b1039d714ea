//! Unit tests of the front end: block-size independence, crossings and the
//! refractory period, calibration on known noise, holes and restarts,
//! configuration checks.

use super::detect::{robust_rms, Detector};
use super::*;
use crate::rng::Rng;

const RATE: f64 = 30_000.0;

/// `channels` of white noise (σ µV) with negative spikes added at `spikes`
/// sample indices on every third channel, a DC offset per channel, and a
/// NaN and an inf; channel-major `[c * t + i]`.
fn signal(channels: usize, t: usize, sigma: f64, seed: u64) -> Vec<f32> {
    let mut rng = Rng::new(seed);
    let mut x = vec![0f32; channels * t];
    for c in 0..channels {
        let dc = 100.0 * c as f64 - 300.0;
        for i in 0..t {
            let mut v = dc + sigma * rng.normal();
            if c % 3 == 0 && i % 997 == 500 {
                v -= 400.0;
            }
            x[c * t + i] = v as f32;
        }
    }
    x[17] = f32::NAN;
    x[(channels - 1) * t + t / 2] = f32::INFINITY;
    x
}

/// Runs `fe` over `x` split at the given block sizes (cycled); returns the emitted bins.
fn run_split(fe: &mut FrontEnd, x: &[f32], t: usize, sizes: &[usize]) -> Vec<(u64, Vec<f32>)> {
    let c = fe.channels();
    let mut out = Vec::new();
    let (mut start, mut which) = (0usize, 0usize);
    let mut block = Vec::new();
    while start < t {
        let n = sizes[which % sizes.len()].min(t - start);
        which += 1;
        block.clear();
        for ch in 0..c {
            block.extend_from_slice(&x[ch * t + start..ch * t + start + n]);
        }
        fe.process(start as u64, &block, n, &mut |k, counts| out.push((k, counts.to_vec()))).unwrap();
        start += n;
    }
    out
}

fn bits(bins: &[(u64, Vec<f32>)]) -> Vec<(u64, Vec<u32>)> {
    bins.iter().map(|(k, v)| (*k, v.iter().map(|x| x.to_bits()).collect())).collect()
}

#[test]
fn bins_do_not_depend_on_block_sizes() {
    let (channels, t) = (13, 30_000);
    let x = signal(channels, t, 20.0, 7);
    for car in [false, true] {
        let cfg = FrontendConfig { calibration_s: 0.2, common_average: car, ..Default::default() };
        let mut reference = None;
        for sizes in [&[t][..], &[1], &[1024], &[7, 300, 1, 129, 2000], &[128], &[127, 129]] {
            let mut fe = FrontEnd::new(&cfg, channels, RATE, 0.01).unwrap();
            let bins = bits(&run_split(&mut fe, &x, t, sizes));
            let thr: Vec<u32> = fe.thresholds().unwrap().iter().map(|v| v.to_bits()).collect();
            assert_eq!(fe.non_finite_samples(), 2);
            let got = (bins, thr);
            match &reference {
                None => reference = Some(got),
                Some(r) => assert!(*r == got, "block sizes {sizes:?} (car {car}) changed the bins"),
            }
        }
        let (bins, _) = reference.unwrap();
        // 0.2 s calibration = 20 bins of 10 ms; the bin in which it ends is the 20th (k = 19).
        assert_eq!(bins.first().map(|b| b.0), Some(20));
        assert_eq!(bins.len(), 80);
        let total: f32 = bins.iter().flat_map(|(_, v)| v.iter().map(|b| f32::from_bits(*b))).sum();
        assert!(total > 0.0, "the injected spikes must be detected");
    }
}

#[test]
fn detector_counts_edges_and_respects_the_refractory_period() {
    let mut d = Detector::new();
    d.thr = [-10.0; LANES];
    // Lane 0: downward edges at 2, 5, 9 and 13. With a refractory period of
    // 4 samples the edge at 5 (3 after a counted one) is lost; 9 counts, and
    // 13 counts (exactly 4 after 9). Lane 1 stays below: one crossing only.
    let lane0 = [0., 0., -11., 0., 0., -12., -12., 0., 0., -11., 0., 0., 0., -11., 0.];
    let lane1 = [0., -20., -20., -20., -20., -20., -20., -20., -20., -20., -20., -20., -20., -20., -20.];
    let mut data = vec![0f32; lane0.len() * LANES];
    for i in 0..lane0.len() {
        data[i * LANES] = lane0[i];
        data[i * LANES + 1] = lane1[i];
        data[i * LANES + 2] = -9.9; // never below
    }
    d.run(&data, 4);
    assert_eq!(d.counts[..3], [3.0, 1.0, 0.0]);
    // Split differently: same counts.
    let mut e = Detector::new();
    e.thr = [-10.0; LANES];
    for chunk in data.chunks(3 * LANES) {
        e.run(chunk, 4);
    }
    assert_eq!(e.counts, d.counts);
    // Refractory 3: the crossing at 5 (= 2 + 3) counts too.
    let mut f = Detector::new();
    f.thr = [-10.0; LANES];
    f.run(&data, 3);
    assert_eq!(f.counts[0], 4.0);
}

#[test]
fn isolated_spikes_give_one_count_each_in_their_bin() {
    // Fixed threshold, no noise: a 400 µV negative pulse every 20 ms, mid-bin.
    let (channels, t, spb) = (2, 30_000, 300);
    let mut x = vec![0f32; channels * t];
    let spikes: Vec<usize> = (0..t / 600).map(|j| j * 600 + 150).collect();
    for &s in &spikes {
        for (i, v) in [-150.0f32, -400.0, -250.0, -80.0].iter().enumerate() {
            x[s + i] = *v; // channel 0 only
        }
    }
    let cfg = FrontendConfig { thresholds_uv: vec![-50.0, -50.0], ..Default::default() };
    let mut fe = FrontEnd::new(&cfg, channels, RATE, 0.01).unwrap();
    let bins = run_split(&mut fe, &x, t, &[1000]);
    assert_eq!(bins.len(), t / spb);
    for (k, counts) in &bins {
        let expected = if (*k as usize * spb + 150) % 600 == 150 { 1.0 } else { 0.0 };
        assert_eq!(counts[0], expected, "bin {k}");
        assert_eq!(counts[1], 0.0, "bin {k}");
    }
}

/// Σ h² of the band-pass impulse response: filtered white noise has RMS σ·sqrt(Σ h²).
fn noise_gain(cfg: &FrontendConfig) -> f64 {
    let mut c = Cascade::new(&bandpass_sos(cfg.filter_order, cfg.band_low_hz, cfg.band_high_hz, RATE));
    (0..30_000).map(|i| f64::from(c.step(if i == 0 { 1.0 } else { 0.0 })).powi(2)).sum::<f64>().sqrt()
}

#[test]
fn calibrated_threshold_is_k_times_the_filtered_noise_rms() {
    let (channels, t, sigma) = (4, 30_000, 12.0);
    let mut rng = Rng::new(11);
    let x: Vec<f32> = (0..channels * t).map(|_| (sigma * rng.normal()) as f32).collect();
    let cfg = FrontendConfig::default();
    let expected = -cfg.threshold_k * sigma * noise_gain(&cfg);
    let mut fe = FrontEnd::new(&cfg, channels, RATE, 0.02).unwrap();
    assert!(fe.thresholds().is_none());
    let bins = run_split(&mut fe, &x, t, &[t]);
    assert!(bins.is_empty(), "every bin ends inside the 1 s calibration window");
    for &thr in fe.thresholds().unwrap() {
        let rel = (f64::from(thr) - expected).abs() / expected.abs();
        assert!(rel < 0.03, "threshold {thr} vs expected {expected}");
    }
}

#[test]
fn robust_rms_recovers_sigma_of_gaussian_noise() {
    let mut rng = Rng::new(5);
    let mut x: Vec<f32> = (0..100_001).map(|_| (7.0 * rng.normal()) as f32).collect();
    let rms = robust_rms(&mut x);
    assert!((rms - 7.0).abs() < 0.1, "{rms}");
    // Even count: mean of the two middle values (|x| = 1, 2, 3, 4 → 2.5).
    let mut even = [4.0f32, -1.0, 3.0, -2.0];
    assert!((robust_rms(&mut even) - 2.5 / 0.6745).abs() < 1e-6);
}

fn fixed(channels: usize) -> FrontendConfig {
    FrontendConfig { thresholds_uv: vec![-40.0; channels], ..Default::default() }
}

#[test]
fn a_forward_hole_drops_the_partial_bins_around_it() {
    let (channels, spb) = (3, 300usize);
    let x = signal(channels, 10 * spb, 10.0, 3);
    let mut fe = FrontEnd::new(&fixed(channels), channels, RATE, 0.01).unwrap();
    let mut ks = Vec::new();
    let block = |a: usize, b: usize| -> Vec<f32> {
        (0..channels).flat_map(|c| x[c * 3000 + a..c * 3000 + b].to_vec()).collect()
    };
    let feed = |fe: &mut FrontEnd, first: u64, a: usize, b: usize, ks: &mut Vec<u64>| {
        fe.process(first, &block(a, b), b - a, &mut |k, c| {
            assert_eq!(c.len(), channels);
            ks.push(k)
        })
    };
    feed(&mut fe, 0, 0, 450, &mut ks).unwrap(); // bin 0 complete, bin 1 half
    assert_eq!(ks, [0]);
    // Hole: resume mid-bin 3 at 1000; bins 1, 2, 3 are never emitted; 4 and 5 are.
    feed(&mut fe, 1000, 450, 450 + 800, &mut ks).unwrap();
    assert_eq!(ks, [0, 4, 5]);
    assert_eq!(fe.next_sample(), 1800);
    // Hole ending exactly on a bin boundary: that bin is emitted.
    feed(&mut fe, 2100, 1250, 1250 + 600, &mut ks).unwrap();
    assert_eq!(ks, [0, 4, 5, 7, 8]);
    // Backwards is refused and changes nothing.
    let err = feed(&mut fe, 2000, 0, 10, &mut ks).unwrap_err();
    assert!(matches!(err, FrontendError::Backwards { expected: 2700, got: 2000 }), "{err}");
    assert_eq!(fe.next_sample(), 2700);
    // A wrong block length is refused.
    let err = fe.process(2700, &[0.0; 5], 2, &mut |_, _| {}).unwrap_err();
    assert!(matches!(err, FrontendError::BlockLength { expected: 6, got: 5 }), "{err}");
}

#[test]
fn restart_equals_a_fresh_front_end_with_the_same_thresholds() {
    let (channels, t) = (9, 6000);
    let x = signal(channels, t, 15.0, 9);
    let y = signal(channels, t, 15.0, 10);
    let cfg = FrontendConfig { calibration_s: 0.05, ..Default::default() };
    let mut a = FrontEnd::new(&cfg, channels, RATE, 0.005).unwrap();
    run_split(&mut a, &x, t, &[512]);
    let thr = a.thresholds().unwrap().to_vec();
    a.restart(0);
    assert_eq!(a.next_sample(), 0);
    let after = run_split(&mut a, &y, t, &[333]);
    let mut b = FrontEnd::new(&FrontendConfig { thresholds_uv: thr.clone(), ..cfg }, channels, RATE, 0.005).unwrap();
    let fresh = run_split(&mut b, &y, t, &[1000]);
    assert_eq!(a.thresholds().unwrap(), &thr[..], "restart keeps the thresholds");
    assert_eq!(bits(&after), bits(&fresh));
    assert_eq!(after.len(), t / 150);
}

#[test]
fn stream_and_config_problems_are_reported_by_field() {
    assert!(FrontendConfig::default().problems("frontend.").is_empty());
    let bad = FrontendConfig {
        band_low_hz: -1.0,
        filter_order: 3,
        threshold_k: f64::NAN,
        thresholds_uv: vec![-1.0, 2.0],
        thresholds_from: Some("x.h5".into()),
        ..Default::default()
    };
    let p = bad.problems("frontend.");
    for field in ["band_low_hz", "filter_order", "threshold_k", "thresholds_uv[1]", "thresholds_from"] {
        assert!(p.iter().any(|l| l.starts_with(&format!("frontend.{field}:"))), "{field} missing in {p:?}");
    }
    assert_eq!(p.len(), 5, "{p:?}");
    let cfg = FrontendConfig::default();
    let nyquist = FrontEnd::new(&cfg, 4, 8000.0, 0.01).unwrap_err().to_string();
    assert!(nyquist.contains("band_high_hz") && nyquist.contains("4000"), "{nyquist}");
    let bins = FrontEnd::new(&cfg, 4, RATE, 0.01001).unwrap_err().to_string();
    assert!(bins.contains("bin_seconds"), "{bins}");
    assert_eq!(FrontEnd::new(&cfg, 4, RATE, 0.02).unwrap().samples_per_bin(), 600);
    let count = FrontEnd::new(&fixed(3), 4, RATE, 0.02).unwrap_err();
    assert!(matches!(count, FrontendError::ThresholdCount { expected: 4, got: 3, .. }), "{count}");
}

#[test]
fn toml_errors_name_the_field() {
    let table: toml::Table = toml::from_str("band_low_hz = \"x\"\nthreshhold_k = 3.0\nrefractory_ms = 2.0\n").unwrap();
    let errs = FrontendConfig::from_toml(&table, "frontend.").unwrap_err();
    assert_eq!(errs.len(), 2, "{errs:?}");
    assert!(errs[0].starts_with("frontend.band_low_hz:"), "{errs:?}");
    assert!(errs[1].starts_with("frontend.threshhold_k:") && errs[1].contains("unknown field"), "{errs:?}");
    let ok: toml::Table = toml::from_str("refractory_ms = 2.0\ncommon_average = true\n").unwrap();
    let cfg = FrontendConfig::from_toml(&ok, "frontend.").unwrap();
    assert_eq!((cfg.refractory_ms, cfg.common_average, cfg.threshold_k), (2.0, true, 4.5));
    let text = toml::to_string(&FrontendConfig::default()).unwrap();
    assert_eq!(toml::from_str::<FrontendConfig>(&text).unwrap(), FrontendConfig::default());
}

#[test]
fn stored_thresholds_load_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fe.h5");
    let channels = 5;
    let x = signal(channels, 3000, 10.0, 1);
    let mut fe =
        FrontEnd::new(&FrontendConfig { calibration_s: 0.05, ..Default::default() }, channels, RATE, 0.01).unwrap();
    run_split(&mut fe, &x, 3000, &[3000]);
    {
        let file = hdf5_metno::File::create(&path).unwrap();
        fe.store(&file.create_group("frontend").unwrap()).unwrap();
    }
    assert_eq!(load_thresholds(&path).unwrap(), fe.thresholds().unwrap());
    let cfg = FrontendConfig { thresholds_from: Some(path.clone()), ..Default::default() };
    let again = FrontEnd::new(&cfg, channels, RATE, 0.01).unwrap();
    assert_eq!(again.thresholds(), fe.thresholds());
    let missing = load_thresholds(&dir.path().join("nope.h5")).unwrap_err().to_string();
    assert!(missing.contains("nope.h5"), "{missing}");
    let empty = dir.path().join("empty.h5");
    hdf5_metno::File::create(&empty).unwrap();
    let err = load_thresholds(&empty).unwrap_err().to_string();
    assert!(err.contains("empty.h5") && err.contains("/frontend/thresholds"), "{err}");
}
