//! `voltage` mode: the LSL stream carries raw continuous data (µV, one
//! channel per model channel, a regular nominal rate), fed through the same
//! front end as Open Ephys (`crate::frontend::FrontEnd`, `[frontend]`).
//!
//! Samples are numbered by the source's sample counter (holes in the LSL
//! timestamps advance it, see `seq_step`); a run of consecutive samples is
//! transposed channel-major into a preallocated scratch block and handed to
//! the front end, which closes bin k = sample / S. A hole restarts the front
//! end's filters at the next sample (thresholds kept), so the bins it spans
//! are never emitted and the engine imputes them from the seq gap.
//!
//! Invariants: nothing allocates after [`Voltage::new`]; the front end's
//! settings reach the recorder once, when its thresholds exist (one lock per
//! calibration, not per bin).

use std::time::Instant;

use crate::frontend::{FrontEnd, FrontendConfig, FrontendError};
use crate::ingest::{FrontendSlot, Sink};

/// Samples per front-end call.
const RUN: usize = 1024;

/// The front end behind an LSL voltage stream.
pub struct Voltage {
    fe: FrontEnd,
    scratch: Vec<f32>,
    /// Samples collected in `scratch` (not yet processed).
    len: usize,
    /// Sample number of `scratch`'s first sample.
    first: u64,
    /// Timestamp (ns) of the newest collected sample.
    t_ns: u64,
    slot: FrontendSlot,
    published: bool,
}

impl Voltage {
    pub fn new(
        cfg: &FrontendConfig,
        channels: usize,
        rate_hz: f64,
        bin_seconds: f64,
        slot: FrontendSlot,
    ) -> Result<Self, FrontendError> {
        Ok(Self {
            fe: FrontEnd::new(cfg, channels, rate_hz, bin_seconds)?,
            scratch: vec![0.0; RUN * channels],
            len: 0,
            first: 0,
            t_ns: 0,
            slot,
            published: false,
        })
    }

    /// The stream's sample rate the front end was built for.
    pub fn rate_hz(&self) -> f64 {
        self.fe.sample_rate_hz()
    }

    /// Adds sample `n` (one value per channel); processes the collected run
    /// first when `n` does not follow it or the scratch block is full.
    pub fn push(&mut self, n: u64, t_ns: u64, row: &[f32], sink: &mut dyn Sink, recv_at: Instant) {
        if self.len > 0 && (n != self.first + self.len as u64 || self.len == RUN) {
            self.flush(sink, recv_at);
        }
        if self.len == 0 {
            self.first = n;
        }
        let c = row.len();
        for (ch, v) in row.iter().enumerate() {
            self.scratch[ch * RUN + self.len] = *v;
        }
        debug_assert_eq!(c * RUN, self.scratch.len());
        self.len += 1;
        self.t_ns = t_ns;
    }

    /// Processes the collected run; bins it closes go to the sink.
    pub fn flush(&mut self, sink: &mut dyn Sink, recv_at: Instant) {
        if self.len == 0 {
            return;
        }
        let (n, c) = (self.len, self.fe.channels());
        // The front end takes a channel-major block of exactly c × n values.
        if n < RUN {
            for ch in 1..c {
                self.scratch.copy_within(ch * RUN..ch * RUN + n, ch * n);
            }
        }
        let t_ns = self.t_ns;
        let mut emit = |k: u64, counts: &[f32]| sink.timestep(k, t_ns, counts, recv_at);
        if let Err(e) = self.fe.process(self.first, &self.scratch[..c * n], n, &mut emit) {
            // Only a sample number going back, which the counter never does.
            tracing::error!(error = %e, "LSL voltage block refused by the front end.");
        }
        self.len = 0;
        self.publish_settings();
    }

    fn publish_settings(&mut self) {
        if self.published || self.fe.thresholds().is_none() {
            return;
        }
        if let Ok(mut slot) = self.slot.lock() {
            *slot = Some(self.fe.snapshot());
        }
        self.published = true;
    }
}
