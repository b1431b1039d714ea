//! What a model swap costs the decode loop: `Engine::swap` runs between two
//! bins on the decode thread, so its duration is the extra latency the next
//! bin sees. Measured for `carry` (prime the new model's preprocessing on the
//! recent bins, keep the latent state) and `rewarm` over 50, 500 and the
//! maximum 2000 bins, at 96 and 192 channels, with the benchmark
//! architecture (FTN C → 256 → 2) and a full rewarm ring.
//!
//! Run: `cargo bench --bench swap` (criterion; time per swap).

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};

use alternator::daemon::config::{SafeOutput, SwapState, MAX_REWARM_BINS};
use alternator::daemon::engine::{Engine, EngineSettings, SwapOutcome};
use alternator::daemon::record_link::RecordSlot;
use alternator::daemon::stats::LoopCounters;
use alternator::daemon::watchdog::WatchdogSettings;
use alternator::fixtures::{synthetic_bins, synthetic_model};
use alternator::ingest::Sink;
use alternator::model::StepKernel;
use alternator::publish::{PublishSection, ZmqPublisher};

fn engine(ctx: &zmq::Context, channels: usize, state: SwapState, rewarm: usize, n: usize) -> Engine {
    let mf = synthetic_model(channels, 1);
    let set = EngineSettings {
        max_gap_bins: 50,
        stats_interval: Duration::from_secs(3600),
        swap_state: state,
        rewarm_bins: rewarm,
        track_prediction: false,
        watchdog: WatchdogSettings {
            enabled: false,
            timeout: Duration::from_secs(1),
            period: Duration::from_millis(20),
            safe_output: SafeOutput::Zero,
            decay_tau: Duration::from_millis(200),
        },
    };
    let out_cfg = PublishSection { endpoint: format!("inproc://swap-{channels}-{rewarm}-{n}"), ..Default::default() };
    let out = ZmqPublisher::open(&out_cfg, ctx, 2).expect("inproc publisher");
    let mut eng = Engine::new(
        Box::new(StepKernel::new(mf.model)),
        "bench".into(),
        set,
        Arc::new(LoopCounters::default()),
        out,
        RecordSlot::new(None),
    );
    let data = synthetic_bins(channels, MAX_REWARM_BINS, 2);
    for t in 0..MAX_REWARM_BINS {
        eng.timestep(t as u64, 0, data.row(t), Instant::now());
    }
    eng
}

fn swap(c: &mut Criterion) {
    let ctx = zmq::Context::new();
    let mut g = c.benchmark_group("swap");
    for channels in [96usize, 192] {
        let cases = [
            (SwapState::Carry, 50, "carry"),
            (SwapState::Rewarm, 50, "rewarm-50"),
            (SwapState::Rewarm, 500, "rewarm-500"),
            (SwapState::Rewarm, MAX_REWARM_BINS, "rewarm-2000"),
        ];
        for (i, (state, rewarm, name)) in cases.into_iter().enumerate() {
            let mut eng = engine(&ctx, channels, state, rewarm, i);
            let spare = StepKernel::new(synthetic_model(channels, 2).model);
            let mut next = Some(Box::new(spare));
            g.bench_with_input(BenchmarkId::new(name, channels), &channels, |b, _| {
                b.iter(|| {
                    let k = next.take().expect("a kernel to swap in");
                    match eng.swap(k, "m".into()) {
                        SwapOutcome::Swapped { previous } => next = Some(previous),
                        SwapOutcome::Refused { .. } => panic!("same shape"),
                    }
                })
            });
        }
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(Duration::from_secs(3));
    targets = swap
}
criterion_main!(benches);
