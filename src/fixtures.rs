//! Synthetic models and spike streams, generated from a seed so that
//! benchmarks and tests need no files: a random model of the benchmark
//! architecture and Poisson-like counts to feed it.

use crate::matrix::Matrix;
use crate::model::file::{ModelFile, ModelMeta};
use crate::model::net::AlternatorNet;
use crate::model::preprocess::NormStats;
use crate::model::{Activation, Mode, Model, ModelSpec, Smoothing};
use crate::rng::Rng;

/// A random model of the benchmark architecture: FTN C → 256 → 2, OTN 2 → 64 → 128 → C.
pub fn synthetic_model(channels: usize, seed: u64) -> ModelFile {
    let spec = ModelSpec {
        mode: Mode::Decoding,
        channels,
        history: 0,
        dz: 2,
        ftn_hidden: vec![256],
        otn_hidden: vec![64, 128],
        activation: Activation::Tanh,
        alpha: 0.3,
        sigma_x: 0.2,
        sigma_z: 0.06,
        smoothing: Smoothing::None,
    };
    let net = AlternatorNet::init(&spec, seed, &candle_core::Device::Cpu).expect("invariant: CPU init of a valid spec");
    let model = Model {
        stats: NormStats::identity(channels, 2),
        ftn: net.ftn.export().expect("invariant: export"),
        otn: net.otn.export().expect("invariant: export"),
        spec,
    };
    ModelFile { meta: ModelMeta::new(&model, None, None), model }
}

/// Poisson-like counts for `bins` × `channels`.
pub fn synthetic_bins(channels: usize, bins: usize, seed: u64) -> Matrix {
    let mut rng = Rng::new(seed);
    Matrix::from_vec(
        bins,
        channels,
        (0..bins * channels).map(|_| (-(rng.uniform().max(1e-12)).ln() * 2.0).floor() as f32).collect(),
    )
}
