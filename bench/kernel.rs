//! Per-bin cost of the streaming alternator update (`StepKernel::step`):
//! preprocessing + FTN forward + z update for one bin, no allocation.
//! Two architectures: FTN C → 256 → 2 (one hidden layer of 256, no history,
//! Dz = 2; the benchmark's synthetic model) for C = 96, 192, 1024 channels,
//! and the shipped default (`TrainConfig::default()`: history, hidden
//! widths, smoothing and constants as `train` uses them) at C = 96 and 192.
//!
//! Run: `cargo bench --bench kernel` (criterion; prints time per bin).

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

use alternator::matrix::Matrix;
use alternator::model::net::AlternatorNet;
use alternator::model::preprocess::NormStats;
use alternator::model::train::TrainConfig;
use alternator::model::{Activation, Mode, Model, ModelSpec, Smoothing, StepKernel};
use alternator::rng::Rng;

/// FTN C → ftn_hidden → 2 without history or smoothing, OTN [64, 128].
fn plain_spec(channels: usize, ftn_hidden: Vec<usize>) -> ModelSpec {
    ModelSpec {
        mode: Mode::Decoding,
        channels,
        history: 0,
        dz: 2,
        ftn_hidden,
        otn_hidden: vec![64, 128],
        activation: Activation::Tanh,
        alpha: 0.3,
        sigma_x: 0.2,
        sigma_z: 0.06,
        smoothing: Smoothing::None,
    }
}

/// Freshly initialised weights (the kernel's cost does not depend on their values).
fn model(spec: ModelSpec) -> Model {
    let net = AlternatorNet::init(&spec, 1, &candle_core::Device::Cpu).expect("init");
    Model {
        stats: NormStats::identity(spec.channels, spec.dz),
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
    let shipped = TrainConfig::default();
    let cases = [
        ("hidden256", plain_spec(96, vec![256])),
        ("hidden256", plain_spec(192, vec![256])),
        ("hidden256", plain_spec(1024, vec![256])),
        ("default_arch", shipped.spec(96, 2)),
        ("default_arch", shipped.spec(192, 2)),
    ];
    for (name, spec) in cases {
        let channels = spec.channels;
        let mut k = StepKernel::new(model(spec));
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
