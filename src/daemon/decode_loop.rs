//! The decode loop: one named thread that owns the input [`Source`] and the
//! [`Engine`]. It alternates between waiting on the source (bounded by a
//! short timeout so housekeeping runs even without input) and housekeeping:
//! model swaps requested by the retrainer, record-batch hand-over, the stats
//! line. A new model therefore swaps in between messages, never inside one.
//!
//! The per-timestep work and its invariants are the engine's
//! (`engine.rs`); the transport is the source's (`crate::ingest`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TryRecvError};
use hdrhistogram::Histogram;
use tracing::error;

use super::engine::Engine;
pub use super::engine::SwapOutcome;
use crate::ingest::Source;
use crate::latency::LatencySummary;
use crate::model::StepKernel;

/// How long one wait on the source may last before housekeeping runs.
const POLL_TIMEOUT: Duration = Duration::from_millis(20);
/// At shutdown, input is taken until the source has been quiet this long ...
/// (long enough that a sender whose I/O thread is briefly starved on a busy
/// host still gets its queued frames through; 100 ms was not, under load).
const DRAIN_QUIET: Duration = Duration::from_millis(500);
/// ... or for at most this long (a rig that keeps sending).
const DRAIN_MAX: Duration = Duration::from_secs(2);

/// Commands the loop accepts between messages.
pub enum LoopCommand {
    /// Swap in a new kernel built off-thread.
    Swap { kernel: Box<StepKernel>, model_id: String, reply: Sender<SwapOutcome> },
}

/// What the loop reports when it ends.
#[derive(Debug, Clone)]
pub struct LoopSummary {
    pub latency: LatencySummary,
    pub histogram: Histogram<u64>,
}

/// The decode loop, ready to run on its own thread.
pub struct DecodeLoop {
    source: Box<dyn Source>,
    eng: Engine,
    control: Receiver<LoopCommand>,
    shutdown: Arc<AtomicBool>,
}

impl DecodeLoop {
    pub fn new(
        source: Box<dyn Source>,
        eng: Engine,
        control: Receiver<LoopCommand>,
        shutdown: Arc<AtomicBool>,
    ) -> Self {
        Self { source, eng, control, shutdown }
    }

    /// Runs until shutdown is requested, then keeps taking input until the
    /// source is quiet (frames in flight when the signal came are decoded,
    /// published and recorded), hands over the last record batch and returns.
    pub fn run(mut self) -> LoopSummary {
        while !self.shutdown.load(Ordering::Relaxed) {
            if let Err(e) = self.source.poll(POLL_TIMEOUT, &mut self.eng) {
                error!(error = %e, "Ingest failed; the decode loop stops.");
                break;
            }
            let now = Instant::now();
            self.source.tick(now, &mut self.eng);
            self.poll_control();
            self.eng.housekeeping(now);
        }
        self.drain();
        self.poll_control();
        let total = self.eng.finish().total().clone();
        LoopSummary { latency: LatencySummary::of(&total), histogram: total }
    }

    fn drain(&mut self) {
        let start = Instant::now();
        let mut last_input = start;
        while last_input.elapsed() < DRAIN_QUIET && start.elapsed() < DRAIN_MAX {
            match self.source.poll(Duration::from_millis(10), &mut self.eng) {
                Ok(true) => last_input = Instant::now(),
                Ok(false) => {}
                Err(_) => break,
            }
        }
        self.source.tick(Instant::now(), &mut self.eng);
    }

    fn poll_control(&mut self) {
        loop {
            match self.control.try_recv() {
                Ok(LoopCommand::Swap { kernel, model_id, reply }) => {
                    let outcome = self.eng.swap(kernel, model_id);
                    let _ = reply.send(outcome);
                }
                Err(TryRecvError::Empty) | Err(TryRecvError::Disconnected) => return,
            }
        }
    }
}
