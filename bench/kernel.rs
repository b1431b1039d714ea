//! Per-bin cost of the streaming alternator update (`StepKernel::step`):
//! preprocessing + FTN forward + z update for one bin, no allocation.
//! Architecture of the stated goal: FTN C → 256 → 2 (one hidden layer of
//! 256, Dz = 2), for C = 96, 192, 1024 channels; plus the shipped default
//! architecture (history 2, FTN [256, 64]) at C = 96 and 192.
//!
//! Run: `cargo bench --bench kernel` (criterion; prints time per bin).

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

use alternator::matrix::Matrix;
use alternator::model::net::AlternatorNet;
use alternator::model::preprocess::NormStats;
use alternator::model::{Activation, Mode, Model, ModelSpec, Smoothing, StepKernel};
use alternator::rng::Rng;

fn model(channels: usize, history: usize, ftn_hidden: Vec<usize>, smoothing: Smoothing) -> Model {
    let spec = ModelSpec {
        mode: Mode::Decoding,
        channels,
        history,
        dz: 2,
        ftn_hidden,
        otn_hidden: vec![64, 128],
        activation: Activation::Tanh,
        alpha: 0.3,
        sigma_x: 0.2,
        sigma_z: 0.06,
        smoothing,
    };
    let net = AlternatorNet::init(&spec, 1, &candle_core::Device::Cpu).expect("init");
    Model {
        stats: NormStats::identity(channels, 2),
        ftn: net.ftn.export().expect("export"),
        otn: net.otn.export().expect("export"),
        spec,
    }
}

fn bins(channels: usize, n: usize) -> Matrix {
    let mut rng = Rng::new(3);
    Matrix::from_vec(n, channels, (0..n * channels).map(|_| (rng.uniform() * 4.0).floor() as f32).collect())
}

fn kernel_step(c: &mut Criterion) {
    let mut g = c.benchmark_group("kernel_step");
    g.throughput(Throughput::Elements(1));
    let cases = [
        ("hidden256", 96, 0, vec![256], Smoothing::None),
        ("hidden256", 192, 0, vec![256], Smoothing::None),
        ("hidden256", 1024, 0, vec![256], Smoothing::None),
        ("default_arch", 96, 2, vec![256, 64], Smoothing::Exponential { tau_bins: 2.0 }),
        ("default_arch", 192, 2, vec![256, 64], Smoothing::Exponential { tau_bins: 2.0 }),
    ];
    for (name, channels, history, hidden, smoothing) in cases {
        let mut k = StepKernel::new(model(channels, history, hidden, smoothing));
        let data = bins(channels, 1024);
        let mut out = [0f32; 2];
        let mut t = 0;
        g.bench_with_input(BenchmarkId::new(name, channels), &channels, |b, _| {
            b.iter(|| {
                k.step(black_box(data.row(t & 1023)), &mut out);
                t += 1;
                black_box(out[0]);
            })
        });
    }
    g.finish();
}

criterion_group!(benches, kernel_step);
criterion_main!(benches);
