//! Cost of the raw-voltage front end (`FrontEnd::process`): band-pass (4th
//! order Butterworth band-pass, 4 biquads), threshold detection with a
//! refractory period and binning, on 32, 96 and 384 channels at 30 kHz fed
//! in 1024-sample blocks, thresholds fixed (the steady state after
//! calibration). Criterion reports time per block; the summary printed at
//! the end converts the medians to ns per sample per channel, the % of one
//! core 384 channels take at 30 kHz, and the most channels one core keeps
//! up with in real time. Common-average referencing is measured at 384.
//!
//! Run: `cargo bench --bench frontend`.

use std::time::Instant;

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

use alternator::frontend::{FrontEnd, FrontendConfig};
use alternator::rng::Rng;

const RATE: f64 = 30_000.0;
const BLOCK: usize = 1024;

fn front_end(channels: usize, car: bool) -> (FrontEnd, Vec<f32>) {
    let cfg = FrontendConfig { thresholds_uv: vec![-45.0; channels], common_average: car, ..Default::default() };
    let fe = FrontEnd::new(&cfg, channels, RATE, 0.02).expect("valid front end");
    let mut rng = Rng::new(1);
    let block = (0..channels * BLOCK).map(|_| (10.0 * rng.normal()) as f32).collect();
    (fe, block)
}

fn frontend(c: &mut Criterion) {
    let mut g = c.benchmark_group("frontend_block1024");
    for (channels, car) in [(32, false), (96, false), (384, false), (384, true)] {
        let (mut fe, block) = front_end(channels, car);
        let mut first = 0u64;
        let mut sink = 0f32;
        g.throughput(Throughput::Elements((channels * BLOCK) as u64));
        let name = if car { "car" } else { "plain" };
        g.bench_with_input(BenchmarkId::new(name, channels), &channels, |b, _| {
            b.iter(|| {
                fe.process(first, black_box(&block), BLOCK, &mut |_, counts| sink += counts[0]).expect("in order");
                first += BLOCK as u64;
            })
        });
        black_box(sink);
    }
    g.finish();
}

/// Median ns per sample per channel over `reps` timed blocks, after warm-up.
fn ns_per_sample_channel(channels: usize, car: bool, reps: usize) -> f64 {
    let (mut fe, block) = front_end(channels, car);
    let mut first = 0u64;
    let mut times = Vec::with_capacity(reps);
    for r in 0..reps + 20 {
        let t0 = Instant::now();
        fe.process(first, black_box(&block), BLOCK, &mut |_, c| {
            black_box(c);
        })
        .expect("in order");
        if r >= 20 {
            times.push(t0.elapsed().as_secs_f64());
        }
        first += BLOCK as u64;
    }
    times.sort_by(f64::total_cmp);
    times[reps / 2] * 1e9 / (channels * BLOCK) as f64
}

fn summary(_: &mut Criterion) {
    println!("\nfront end, 30 kHz, {BLOCK}-sample blocks (median of 300 blocks):");
    for (channels, car) in [(32, false), (96, false), (384, false), (384, true)] {
        let ns = ns_per_sample_channel(channels, car, 300);
        let core = ns * 1e-9 * RATE * channels as f64 * 100.0;
        let max_channels = 1e9 / (ns * RATE);
        println!(
            "  {channels:>4} ch{}: {ns:6.2} ns/sample/channel, {core:5.1} % of one core, real time up to ~{max_channels:.0} channels",
            if car { " + CAR" } else { "" }
        );
    }
}

criterion_group!(benches, frontend, summary);
criterion_main!(benches);
