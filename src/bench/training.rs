//! A training job running in the background of a benchmark, as the
//! daemon's retrainer would, to measure decoding latency while it runs.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::fixtures::synthetic_bins;
use crate::matrix::Matrix;
use crate::rng::Rng;

/// Runs a training job in a loop on a niced thread until `stop` is set (to
/// measure decoding latency while retraining runs).
/// With `core`, the job runs on that core (the daemon's, as retraining would).
pub fn background_training(
    stop: Arc<AtomicBool>,
    nice: i32,
    sched_idle: bool,
    core: Option<usize>,
) -> std::thread::JoinHandle<u64> {
    std::thread::Builder::new()
        .name("bench-training".into())
        .spawn(move || {
            if let Some(c) = core {
                let _ = crate::daemon::os::pin_current_thread(c);
            }
            let _ = crate::daemon::os::set_current_thread_nice(nice);
            if sched_idle {
                let _ = crate::daemon::os::set_current_thread_sched_idle();
            }
            let x = synthetic_bins(96, 6000, 5);
            let mut rng = Rng::new(9);
            let y = Matrix::from_vec(6000, 2, (0..12000).map(|_| rng.normal() as f32).collect());
            let mut epochs = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let cfg = crate::model::train::TrainConfig { max_epochs: 1, ..Default::default() };
                let set = crate::model::train::TrainSet { spikes: &x, behavior: Some(&y), behavior_valid: None };
                if crate::model::train::train(&[set], &cfg, &mut |_| {}).is_ok() {
                    epochs += 1;
                }
            }
            epochs
        })
        .expect("invariant: spawning a thread")
}
