//! Voltage mode: per-channel blocks (the plugin sends one message per
//! channel per block, in any interleaving) are aligned on the acquisition
//! sample number, and the span every selected channel has delivered is fed
//! to the front end, which closes bins of `S` samples.
//!
//! State: one ring of raw samples per channel, `base` = the first sample not
//! yet processed (every channel is complete below it) and `have[c]` = the
//! sample after the last one channel `c` delivered. Invariants: `base <=
//! have[c] <= base + capacity`; a bin is emitted once, in order; a bin that
//! contains samples a channel never delivered (a hole, a stalled channel, a
//! non-finite sample) is emitted as missing, never as a count.
//!
//! Nothing here allocates after [`Aligner::new`].

use crate::frontend::{FrontEnd, FrontendConfig, FrontendError};

/// Samples per processing chunk (bounds the scratch buffer).
const CHUNK: usize = 4096;

/// A bin the front end closed, with whether every sample in it was real.
pub type EmitFn<'a> = dyn FnMut(u64, Option<&[f32]>) + 'a;

/// What happened to one delivered block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockOutcome {
    /// Accepted (samples after a hole were filled as missing when `hole`).
    Accepted { hole: bool, non_finite: bool },
    /// Entirely before what this channel already delivered.
    OutOfOrder,
}

/// The aligner and the front end behind it.
pub struct Aligner {
    fe: FrontEnd,
    ring: Vec<f32>,
    cap: usize,
    have: Vec<u64>,
    base: u64,
    scratch: Vec<f32>,
    /// Bins (by index modulo `bad.len()`) that contain missing samples.
    bad: Vec<bool>,
    /// Bins below this index have clean marks.
    cleared: u64,
}

impl Aligner {
    /// An aligner for `channels` channels at `rate` Hz, bins of `bin_seconds`,
    /// holding up to `ring_seconds` of samples per channel.
    pub fn new(
        cfg: &FrontendConfig,
        channels: usize,
        rate: f64,
        bin_seconds: f64,
        ring_seconds: f64,
        first_sample: u64,
    ) -> Result<Self, FrontendError> {
        let mut fe = FrontEnd::new(cfg, channels, rate, bin_seconds)?;
        fe.restart(first_sample);
        let spb = fe.samples_per_bin() as usize;
        let cap = ((rate * ring_seconds) as usize).max(4 * spb).max(2 * CHUNK);
        Ok(Self {
            fe,
            ring: vec![0.0; cap * channels],
            cap,
            have: vec![first_sample; channels],
            base: first_sample,
            scratch: vec![0.0; CHUNK * channels],
            bad: vec![false; cap / spb + 2],
            cleared: first_sample / spb as u64,
        })
    }

    pub fn front_end(&self) -> &FrontEnd {
        &self.fe
    }

    /// First sample not yet processed.
    pub fn base(&self) -> u64 {
        self.base
    }

    /// Samples per channel the ring holds.
    pub fn capacity(&self) -> u64 {
        self.cap as u64
    }

    /// The furthest any channel has delivered.
    pub fn lead(&self) -> u64 {
        self.have.iter().copied().max().unwrap_or(self.base)
    }

    /// Samples of the ring span `[from, to)` for channel `c` (positions wrap).
    fn write(&mut self, c: usize, from: u64, values: impl Iterator<Item = f32>) {
        let row = &mut self.ring[c * self.cap..(c + 1) * self.cap];
        for (i, v) in values.enumerate() {
            row[((from + i as u64) % self.cap as u64) as usize] = v;
        }
    }

    fn mark_bad(&mut self, from: u64, to: u64) {
        let spb = self.fe.samples_per_bin();
        if to <= from {
            return;
        }
        for k in from / spb..=(to - 1) / spb {
            let n = self.bad.len() as u64;
            self.bad[(k % n) as usize] = true;
        }
    }

    /// Stores one channel's block starting at `sample_num`. The caller has
    /// checked that the block fits (`sample_num + n <= base + capacity`).
    pub fn put(&mut self, c: usize, sample_num: u64, block: &[f32]) -> BlockOutcome {
        let end = sample_num + block.len() as u64;
        if end <= self.have[c] || sample_num < self.have[c] {
            return BlockOutcome::OutOfOrder;
        }
        let hole = sample_num > self.have[c];
        if hole {
            let from = self.have[c];
            self.write(c, from, std::iter::repeat_n(0.0, (sample_num - from) as usize));
            self.mark_bad(from, sample_num);
        }
        let non_finite = block.iter().any(|v| !v.is_finite());
        if non_finite {
            self.mark_bad(sample_num, end);
        }
        self.write(c, sample_num, block.iter().map(|v| if v.is_finite() { *v } else { 0.0 }));
        self.have[c] = end;
        BlockOutcome::Accepted { hole, non_finite }
    }

    /// Gives every channel that has not delivered up to `to` zeros up to
    /// there, marking its bins missing; returns how many channels lagged.
    pub fn force_to(&mut self, to: u64) -> usize {
        let mut lagging = 0;
        for c in 0..self.have.len() {
            if self.have[c] < to {
                lagging += 1;
                let from = self.have[c];
                self.write(c, from, std::iter::repeat_n(0.0, (to - from) as usize));
                self.mark_bad(from, to);
                self.have[c] = to;
            }
        }
        lagging
    }

    /// Processes everything every channel has delivered; `emit(k, Some(counts))`
    /// for a complete bin, `emit(k, None)` for a bin with missing samples.
    pub fn advance(&mut self, emit: &mut EmitFn<'_>) {
        let target = self.have.iter().copied().min().unwrap_or(self.base);
        let channels = self.have.len();
        while self.base < target {
            let n = ((target - self.base) as usize).min(CHUNK);
            self.fill_scratch(n);
            let Self { fe, scratch, bad, base, .. } = self;
            let nb = bad.len() as u64;
            let mut on_bin = |k: u64, counts: &[f32]| {
                if std::mem::take(&mut bad[(k % nb) as usize]) {
                    emit(k, None);
                } else {
                    emit(k, Some(counts));
                }
            };
            // The aligner feeds consecutive samples only, so the front end cannot refuse them.
            let _ = fe.process(*base, &scratch[..n * channels], n, &mut on_bin);
            self.base += n as u64;
            self.clear_done_bins();
        }
    }

    /// Clears the missing-sample marks of every bin below `base` (emitted or
    /// not, e.g. inside the calibration window), so ring slots start clean.
    fn clear_done_bins(&mut self) {
        let done = self.base / self.fe.samples_per_bin();
        let nb = self.bad.len() as u64;
        let from = self.cleared.max(done.saturating_sub(nb));
        for k in from..done {
            self.bad[(k % nb) as usize] = false;
        }
        self.cleared = done;
    }

    fn fill_scratch(&mut self, n: usize) {
        let channels = self.have.len();
        for c in 0..channels {
            let row = &self.ring[c * self.cap..(c + 1) * self.cap];
            let out = &mut self.scratch[c * n..(c + 1) * n];
            for (i, o) in out.iter_mut().enumerate() {
                *o = row[((self.base + i as u64) % self.cap as u64) as usize];
            }
        }
    }

    /// Starts over at `first_sample` (rig restart); thresholds are kept.
    pub fn restart(&mut self, first_sample: u64) {
        self.fe.restart(first_sample);
        self.base = first_sample;
        self.have.iter_mut().for_each(|h| *h = first_sample);
        self.bad.iter_mut().for_each(|b| *b = false);
        self.cleared = first_sample / self.fe.samples_per_bin();
    }
}
