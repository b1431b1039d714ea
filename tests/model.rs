//! Model-level integration tests: the streaming kernel against the candle
//! forward pass, training on a small synthetic recording, model files.
#![allow(clippy::needless_range_loop)]

use alternator::matrix::Matrix;
use alternator::model::file::{ModelFile, ModelFileError, ModelMeta};
use alternator::model::net::AlternatorNet;
use alternator::model::preprocess::{preprocess_matrix, NormStats};
use alternator::model::train::{train, TrainConfig, TrainSet};
use alternator::model::{Activation, Mode, Model, ModelSpec, Smoothing, StepKernel};
use alternator::rng::Rng;
use candle_core::{Device, Tensor};

/// A small decodable system: 2-D rotating behaviour, channels are noisy
/// nonlinear functions of it.
fn toy(bins: usize, channels: usize, seed: u64) -> (Matrix, Matrix) {
    let mut tuning = Rng::new(1234);
    let dirs: Vec<f64> = (0..channels).map(|_| tuning.uniform() * std::f64::consts::TAU).collect();
    let mut rng = Rng::new(seed);
    let mut x = Matrix::zeros(bins, channels);
    let mut y = Matrix::zeros(bins, 2);
    let offset = rng.uniform() * 100.0;
    for t in 0..bins {
        let ph = t as f64 * 0.07 + offset;
        let amp = 1.0 + 0.5 * (t as f64 * 0.013).sin();
        let (vx, vy) = (amp * ph.cos(), amp * ph.sin());
        y.row_mut(t).copy_from_slice(&[vx as f32, vy as f32]);
        for c in 0..channels {
            let drive = vx * dirs[c].cos() + vy * dirs[c].sin();
            x.row_mut(t)[c] = ((1.0 + drive).exp() + 0.5 * rng.normal()) as f32;
        }
    }
    (x, y)
}

fn spec(smoothing: Smoothing, activation: Activation) -> ModelSpec {
    ModelSpec {
        mode: Mode::Decoding,
        channels: 12,
        history: 2,
        dz: 2,
        ftn_hidden: vec![32, 16],
        otn_hidden: vec![16],
        activation,
        alpha: 0.3,
        sigma_x: 0.2,
        sigma_z: 0.06,
        smoothing,
    }
}

#[test]
fn kernel_matches_candle_forward_over_a_recording() {
    let (x, _) = toy(1500, 12, 1);
    for (smoothing, act) in [
        (Smoothing::None, Activation::Tanh),
        (Smoothing::Exponential { tau_bins: 3.0 }, Activation::Tanh),
        (Smoothing::HalfGaussian { sigma_bins: 2.0 }, Activation::Relu),
    ] {
        let s = spec(smoothing, act);
        let dev = Device::Cpu;
        let net = AlternatorNet::init(&s, 42, &dev).unwrap();
        let stats = NormStats::fit(&s, &[&x], &[]);
        let model = Model {
            spec: s.clone(),
            stats: stats.clone(),
            ftn: net.ftn.export().unwrap(),
            otn: net.otn.export().unwrap(),
        };
        let (x_cur, x_stack) = preprocess_matrix(&s, &stats, &x);
        let xs = Tensor::from_vec(x_stack.data.clone(), (1, x.rows, s.dx_in()), &dev).unwrap();
        let (zhat, xhat) = net.trajectory(&xs, None).unwrap();
        let zhat = zhat.squeeze(0).unwrap().to_vec2::<f32>().unwrap();
        let xhat = xhat.squeeze(0).unwrap().to_vec2::<f32>().unwrap();

        let mut k = StepKernel::new(model);
        k.set_track_prediction(true);
        let mut out = [0f32; 2];
        let mut worst = 0f32;
        for t in 0..x.rows {
            k.step(x.row(t), &mut out);
            for d in 0..2 {
                let a = k.latent()[d];
                let b = zhat[t][d];
                worst = worst.max((a - b).abs() / b.abs().max(1.0));
            }
            // The kernel's prediction error uses the same OTN prediction as candle's xhat.
            let e: f32 = (0..12).map(|c| (x_cur.get(t, c) - xhat[t][c]).powi(2)).sum::<f32>() / 12.0;
            assert!((k.last_prediction_error() - e.sqrt()).abs() < 1e-4 * e.sqrt().max(1.0), "bin {t}");
        }
        assert!(worst < 1e-5, "{smoothing:?}/{act:?}: worst relative difference {worst}");
    }
}

#[test]
fn imputation_follows_the_model_equations() {
    let (x, _) = toy(50, 12, 2);
    let s = spec(Smoothing::None, Activation::Tanh);
    let net = AlternatorNet::init(&s, 7, &Device::Cpu).unwrap();
    let stats = NormStats::fit(&s, &[&x], &[]);
    let model = Model { spec: s.clone(), stats, ftn: net.ftn.export().unwrap(), otn: net.otn.export().unwrap() };
    let mut k = StepKernel::new(model.clone());
    let mut out = [0f32; 2];
    for t in 0..10 {
        k.step(x.row(t), &mut out);
    }
    // A missing bin: xhat = cx f(z); then z' = c1 g([xhat, hist]) + c2 z.
    let z_before = k.latent().to_vec();
    let mut forecast = vec![0f32; 12];
    k.forecast_next(&mut forecast);
    k.step_missing(&mut out);
    // Reference: a second kernel fed the de-normalised forecast as an observation
    // gives the same state when there is no smoothing.
    let mut k2 = StepKernel::new(model.clone());
    for t in 0..10 {
        k2.step(x.row(t), &mut out);
    }
    assert_eq!(k2.latent(), &z_before[..]);
    let raw: Vec<f32> =
        forecast.iter().enumerate().map(|(c, v)| v * model.stats.x_std[c] + model.stats.x_mean[c]).collect();
    k2.step(&raw, &mut out);
    for d in 0..2 {
        assert!((k.latent()[d] - k2.latent()[d]).abs() < 1e-5);
    }
    assert_ne!(k.latent(), &z_before[..]);
}

#[test]
fn training_drives_the_loss_down_and_decodes_held_out_data() {
    let (x, y) = toy(3000, 12, 3);
    let (xt, yt) = toy(1000, 12, 4);
    let cfg = TrainConfig {
        ftn_hidden: vec![32],
        otn_hidden: vec![16],
        history: 2,
        window_bins: 100,
        batch_size: 8,
        lr: 3e-3,
        max_epochs: 30,
        patience: 30,
        smoothing: Smoothing::None,
        seed: 5,
        ..TrainConfig::default()
    };
    let mut losses = Vec::new();
    let out = train(&[TrainSet { spikes: &x, behavior: Some(&y), behavior_valid: None }], &cfg, &mut |e| {
        losses.push(e.train_loss)
    })
    .unwrap();
    assert!(losses.len() >= 5);
    assert!(losses.last().unwrap() < &(losses[0] * 0.5), "loss did not fall: {losses:?}");
    assert!(out.report.val_r2_mean > 0.8, "validation R² {}", out.report.val_r2_mean);
    let mut k = StepKernel::new(out.model.clone());
    let pred = k.decode_matrix(&xt);
    let m = alternator::metrics::Metrics::compute(&yt, &pred);
    assert!(m.mean_r2() > 0.8, "held-out R² {:?}", m.r2);

    // Same seed, same model; another seed, another model.
    let again = train(&[TrainSet { spikes: &x, behavior: Some(&y), behavior_valid: None }], &cfg, &mut |_| {}).unwrap();
    assert_eq!(again.model, out.model);
    let other = train(
        &[TrainSet { spikes: &x, behavior: Some(&y), behavior_valid: None }],
        &TrainConfig { seed: 6, max_epochs: 2, ..cfg.clone() },
        &mut |_| {},
    )
    .unwrap();
    assert_ne!(other.model.ftn, out.model.ftn);
}

#[test]
fn latent_mode_trains_on_next_bin_prediction() {
    let (x, _) = toy(2000, 12, 8);
    let cfg = TrainConfig {
        mode: Mode::Latent,
        latent_dims: 3,
        ftn_hidden: vec![32],
        otn_hidden: vec![32],
        history: 0,
        window_bins: 100,
        max_epochs: 15,
        lr: 3e-3,
        smoothing: Smoothing::None,
        ..TrainConfig::default()
    };
    let mut first = f64::NAN;
    let mut last = f64::NAN;
    let out = train(&[TrainSet { spikes: &x, behavior: None, behavior_valid: None }], &cfg, &mut |e| {
        if first.is_nan() {
            first = e.val_x_mse;
        }
        last = e.val_x_mse;
    })
    .unwrap();
    assert_eq!(out.model.spec.dz, 3);
    assert!(last < first, "validation prediction error did not improve: {first} -> {last}");
    // Predicting every bin as the mean gives MSE ~1 in normalised units; the model must beat that.
    assert!(out.report.val_x_mse < 0.9, "val x mse {}", out.report.val_x_mse);
}

fn small_model() -> Model {
    let s = spec(Smoothing::Exponential { tau_bins: 2.0 }, Activation::Tanh);
    let net = AlternatorNet::init(&s, 1, &Device::Cpu).unwrap();
    Model {
        spec: s.clone(),
        stats: NormStats::identity(12, 2),
        ftn: net.ftn.export().unwrap(),
        otn: net.otn.export().unwrap(),
    }
}

#[test]
fn model_file_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("m.safetensors");
    let m = small_model();
    let mf = ModelFile { meta: ModelMeta::new(&m, None, Some("parent0".into())), model: m.clone() };
    mf.save(&p).unwrap();
    let back = ModelFile::load(&p).unwrap();
    assert_eq!(back.model, m);
    assert_eq!(back.meta, mf.meta);
}

/// Rewrites a saved model's metadata JSON and/or drops a tensor.
fn tamper(
    src: &std::path::Path,
    dst: &std::path::Path,
    edit_meta: impl Fn(&mut serde_json::Value),
    drop: Option<&str>,
    reshape: Option<&str>,
) {
    use safetensors::tensor::{Dtype, SafeTensors, TensorView};
    let bytes = std::fs::read(src).unwrap();
    let (_, md) = SafeTensors::read_metadata(&bytes).unwrap();
    let mut meta: serde_json::Value = serde_json::from_str(&md.metadata().as_ref().unwrap()["alternator"]).unwrap();
    edit_meta(&mut meta);
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut owned = Vec::new();
    for (name, view) in st.tensors() {
        if Some(name.as_str()) == drop {
            continue;
        }
        let mut shape = view.shape().to_vec();
        let mut data = view.data().to_vec();
        if Some(name.as_str()) == reshape {
            shape = vec![shape.iter().product::<usize>() - 1];
            data.truncate(data.len() - 4);
        }
        owned.push((name, shape, data));
    }
    let views: Vec<(String, TensorView)> =
        owned.iter().map(|(n, s, d)| (n.clone(), TensorView::new(Dtype::F32, s.clone(), d).unwrap())).collect();
    let info = std::collections::HashMap::from([("alternator".to_string(), meta.to_string())]);
    std::fs::write(dst, safetensors::tensor::serialize(views, Some(info)).unwrap()).unwrap();
}

#[test]
fn bad_model_files_are_refused_with_specific_errors() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.safetensors");
    let m = small_model();
    ModelFile { meta: ModelMeta::new(&m, None, None), model: m }.save(&good).unwrap();
    let bad = dir.path().join("bad.safetensors");

    tamper(&good, &bad, |j| j["format_version"] = 99.into(), None, None);
    let e = ModelFile::load(&bad).unwrap_err();
    assert!(matches!(e, ModelFileError::UnknownVersion { got: 99, .. }), "{e}");
    assert!(e.to_string().contains("bad.safetensors"));

    tamper(&good, &bad, |_| {}, Some("ftn.1.weight"), None);
    let e = ModelFile::load(&bad).unwrap_err();
    assert!(matches!(&e, ModelFileError::MissingTensor { name, .. } if name == "ftn.1.weight"), "{e}");

    tamper(&good, &bad, |_| {}, None, Some("otn.0.bias"));
    let e = ModelFile::load(&bad).unwrap_err();
    assert!(matches!(&e, ModelFileError::ShapeMismatch { name, .. } if name == "otn.0.bias"), "{e}");

    // Metadata that disagrees with the tensors: more channels than stored.
    tamper(&good, &bad, |j| j["spec"]["channels"] = 13.into(), None, None);
    let e = ModelFile::load(&bad).unwrap_err();
    assert!(matches!(e, ModelFileError::ShapeMismatch { .. }), "{e}");

    tamper(&good, &bad, |j| j["spec"]["alpha"] = 1.5.into(), None, None);
    let e = ModelFile::load(&bad).unwrap_err();
    assert!(matches!(e, ModelFileError::BadMetadata { .. }) && e.to_string().contains("alpha"), "{e}");

    std::fs::write(&bad, b"not a model").unwrap();
    assert!(matches!(ModelFile::load(&bad).unwrap_err(), ModelFileError::Format { .. }));
    let e = ModelFile::load(&dir.path().join("missing.safetensors")).unwrap_err();
    assert!(matches!(e, ModelFileError::Io { .. }) && e.to_string().contains("missing.safetensors"));
}

#[test]
fn training_can_be_cancelled() {
    use alternator::model::train::{train_cancellable, TrainError};
    let (x, y) = toy(1000, 12, 9);
    let cancel = std::sync::atomic::AtomicBool::new(true);
    let cfg = TrainConfig { ftn_hidden: vec![8], otn_hidden: vec![8], window_bins: 50, ..TrainConfig::default() };
    let r = train_cancellable(
        &[TrainSet { spikes: &x, behavior: Some(&y), behavior_valid: None }],
        &cfg,
        &mut |_| {},
        &cancel,
    );
    assert!(matches!(r, Err(TrainError::Cancelled)), "{:?}", r.err());
}

/// Shards run on one thread or on several: the trained model is the same, bit for bit.
#[test]
fn training_result_does_not_depend_on_the_thread_count() {
    use alternator::model::train::{train_with, RunOptions};
    let (x, y) = toy(1200, 10, 4);
    let cfg = TrainConfig {
        ftn_hidden: vec![16],
        otn_hidden: vec![8],
        window_bins: 50,
        batch_size: 5,
        max_epochs: 3,
        ..TrainConfig::default()
    };
    let cancel = std::sync::atomic::AtomicBool::new(false);
    let sets = [TrainSet { spikes: &x, behavior: Some(&y), behavior_valid: None }];
    let one = train_with(&sets, &cfg, &RunOptions { threads: 1, cancel: &cancel }, &mut |_| {}).unwrap();
    let two = train_with(&sets, &cfg, &RunOptions { threads: 2, cancel: &cancel }, &mut |_| {}).unwrap();
    assert!(one.model == two.model);
    assert_eq!(one.report.val_r2, two.report.val_r2);
    assert!(one.report.val_r2_mean > 0.0, "{:?}", one.report);
}
