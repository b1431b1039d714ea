//! Spikes mode: spike events from the GUI's spike detector are counted per
//! selected electrode into bins of `S` acquisition samples. Events carry no
//! "all channels are past here" signal, so a bin closes once the stream's
//! sample clock — the newest sample number seen — is `hold` samples past its
//! end. When no event arrives for `hold` of wall time (a quiet array), the
//! clock runs on at the stream's rate from there, for at most
//! [`MAX_EXTRAPOLATION_S`], so quiet bins still come out as zeros (real
//! data, not missing) while a stopped stream stops producing bins.
//!
//! Nothing here allocates after [`SpikeBinner::new`].

use std::time::{Duration, Instant};

/// How far the clock may run on without events (seconds of samples).
pub const MAX_EXTRAPOLATION_S: f64 = 1.0;

/// Counts per bin for a window of open bins.
pub struct SpikeBinner {
    channels: usize,
    spb: u64,
    rate: f64,
    hold: u64,
    counts: Vec<f32>,
    window: u64,
    /// The first bin not yet emitted (None before the first event).
    next_bin: Option<u64>,
    /// A bin has been emitted since the start (or restart).
    emitted: bool,
    clock_sample: u64,
    clock_at: Option<Instant>,
}

impl SpikeBinner {
    pub fn new(channels: usize, rate: f64, bin_seconds: f64, hold_s: f64) -> Self {
        let spb = ((rate * bin_seconds).round() as u64).max(1);
        let window = 256;
        Self {
            channels,
            spb,
            rate,
            hold: (rate * hold_s).round() as u64,
            counts: vec![0.0; window as usize * channels],
            window,
            next_bin: None,
            emitted: false,
            clock_sample: 0,
            clock_at: None,
        }
    }

    pub fn samples_per_bin(&self) -> u64 {
        self.spb
    }

    /// Moves the stream's sample clock forward (never back).
    pub fn observe(&mut self, sample_num: u64, now: Instant) {
        if self.clock_at.is_none() || sample_num > self.clock_sample {
            self.clock_sample = sample_num;
            self.clock_at = Some(now);
        }
        // Until the first bin is out, an earlier event moves the start back
        // (events of one block arrive electrode by electrode, not in time order).
        let k = sample_num / self.spb;
        if !self.emitted && self.next_bin.is_none_or(|n| k < n) {
            self.next_bin = Some(k);
        }
    }

    /// Counts one spike on channel `c`; false if its bin was already emitted.
    pub fn spike(&mut self, c: usize, sample_num: u64, now: Instant, emit: &mut dyn FnMut(u64, &[f32])) -> bool {
        self.observe(sample_num, now);
        let k = sample_num / self.spb;
        let next = self.next_bin.unwrap_or(k);
        if k < next {
            return false;
        }
        if k >= next + self.window {
            self.emit_through(k + 1 - self.window, emit);
        }
        let slot = (k % self.window) as usize;
        self.counts[slot * self.channels + c] += 1.0;
        true
    }

    /// Emits every bin the clock has passed by `hold` samples.
    pub fn tick(&mut self, now: Instant, emit: &mut dyn FnMut(u64, &[f32])) {
        let Some(at) = self.clock_at else {
            return;
        };
        let hold_wall = Duration::from_secs_f64(self.hold as f64 / self.rate);
        let idle = now.saturating_duration_since(at).saturating_sub(hold_wall).as_secs_f64();
        let run_on = (idle.min(MAX_EXTRAPOLATION_S) * self.rate) as u64;
        let clock = self.clock_sample + run_on;
        self.emit_through(clock.saturating_sub(self.hold) / self.spb, emit);
    }

    /// Emits bins up to (not including) `end_bin`.
    fn emit_through(&mut self, end_bin: u64, emit: &mut dyn FnMut(u64, &[f32])) {
        let Some(mut k) = self.next_bin else {
            return;
        };
        while k < end_bin {
            let slot = (k % self.window) as usize;
            let row = &mut self.counts[slot * self.channels..(slot + 1) * self.channels];
            emit(k, row);
            row.iter_mut().for_each(|v| *v = 0.0);
            k += 1;
            self.emitted = true;
        }
        self.next_bin = Some(k);
    }

    /// Forgets everything (rig restart).
    pub fn restart(&mut self) {
        self.counts.iter_mut().for_each(|v| *v = 0.0);
        self.next_bin = None;
        self.emitted = false;
        self.clock_at = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 1 kHz, 10-sample bins, a 5-sample hold; emitted bins collected.
    fn binner() -> (SpikeBinner, Vec<(u64, Vec<f32>)>) {
        (SpikeBinner::new(2, 1000.0, 0.01, 0.005), Vec::new())
    }

    #[test]
    fn bins_close_hold_samples_after_their_end_and_late_events_are_refused() {
        let (mut b, mut out) = binner();
        let t = Instant::now();
        let mut emit = |k: u64, c: &[f32]| out.push((k, c.to_vec()));
        assert!(b.spike(1, 12, t, &mut emit));
        assert!(b.spike(0, 3, t, &mut emit), "an earlier event before anything is out moves the start back");
        assert!(b.spike(0, 14, t, &mut emit));
        b.tick(t, &mut emit); // clock 14: bin 0 ends at 10, + hold 5 > 14: still open
        assert!(b.spike(1, 31, t, &mut emit));
        b.tick(t, &mut emit); // clock 31: bins 0 and 1 close (end + 5 <= 31)
        assert!(!b.spike(0, 8, t, &mut emit), "bin 0 is already out");
        assert_eq!(out, vec![(0, vec![1.0, 0.0]), (1, vec![1.0, 1.0])]);
    }

    #[test]
    fn a_silent_array_still_gives_zero_bins_but_a_stopped_stream_stops() {
        let (mut b, _) = binner();
        let t = Instant::now();
        let n = std::cell::Cell::new(0usize);
        let mut emit = |_k: u64, _c: &[f32]| n.set(n.get() + 1);
        b.spike(0, 0, t, &mut emit);
        // 0.5 s without events: the clock runs on at the stream's rate after the hold.
        b.tick(t + Duration::from_millis(500), &mut emit);
        let after_half_s = n.get();
        // An hour later: at most MAX_EXTRAPOLATION_S of bins in total.
        b.tick(t + Duration::from_secs(3600), &mut emit);
        assert!((45..=50).contains(&after_half_s), "{after_half_s} bins after 0.5 s");
        assert!(n.get() <= 100, "a stopped stream kept producing bins: {}", n.get());
    }
}
