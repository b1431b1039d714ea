//! The stale-input watchdog: when no input bin has arrived for `timeout`,
//! the engine publishes a frame flagged stale once per `period` with a safe
//! output (`hold` the last output, `zero`, or `decay` it towards zero), so a
//! cursor or prosthesis never keeps moving on the last decoded velocity. It
//! clears as soon as input returns.
//!
//! Per timestep it only stores a time and copies the output (no allocation);
//! the stale frames are produced between messages, in housekeeping.

use std::time::{Duration, Instant};

use super::config::SafeOutput;

/// Settings resolved from `[watchdog]` and the bin width.
#[derive(Debug, Clone)]
pub struct WatchdogSettings {
    pub enabled: bool,
    pub timeout: Duration,
    pub period: Duration,
    pub safe_output: SafeOutput,
    pub decay_tau: Duration,
}

/// A stale frame to publish.
pub struct StaleFrame<'a> {
    pub seq: u64,
    pub t_ns: u64,
    pub values: &'a [f32],
}

/// The watchdog's state.
pub struct Watchdog {
    set: WatchdogSettings,
    last_input: Option<Instant>,
    last_seq: u64,
    last_t_ns: u64,
    next_frame: Option<Instant>,
    last_out: Vec<f32>,
    safe: Vec<f32>,
}

impl Watchdog {
    pub fn new(set: WatchdogSettings, out_dim: usize) -> Self {
        Self {
            set,
            last_input: None,
            last_seq: 0,
            last_t_ns: 0,
            next_frame: None,
            last_out: vec![0.0; out_dim],
            safe: vec![0.0; out_dim],
        }
    }

    /// An input timestep arrived: not stale (any more).
    #[inline]
    pub fn input(&mut self, now: Instant, seq: u64, t_ns: u64) {
        self.last_input = Some(now);
        self.last_seq = seq;
        self.last_t_ns = t_ns;
        self.next_frame = None;
    }

    /// A decoded output went out: what `hold` and `decay` start from.
    #[inline]
    pub fn output(&mut self, values: &[f32]) {
        self.last_out.copy_from_slice(values);
    }

    /// Input stopped at least `timeout` ago (and the watchdog is on).
    pub fn is_stale(&self, now: Instant) -> bool {
        self.set.enabled && self.last_input.is_some_and(|t| now.duration_since(t) >= self.set.timeout)
    }

    /// The stale frame due at `now`, if any (at most one per `period`).
    pub fn due(&mut self, now: Instant) -> Option<StaleFrame<'_>> {
        let since = self.last_input.filter(|_| self.is_stale(now))?;
        let next = *self.next_frame.get_or_insert(since + self.set.timeout);
        if now < next {
            return None;
        }
        // The next one a period later; after a late call, a period from now (no burst).
        let following = next + self.set.period;
        self.next_frame = Some(if following <= now { now + self.set.period } else { following });
        let silent = now.duration_since(since).as_secs_f64();
        let gain = match self.set.safe_output {
            SafeOutput::Hold => 1.0,
            SafeOutput::Zero => 0.0,
            SafeOutput::Decay => (-silent / self.set.decay_tau.as_secs_f64()).exp() as f32,
        };
        for (s, v) in self.safe.iter_mut().zip(&self.last_out) {
            *s = v * gain;
        }
        Some(StaleFrame { seq: self.last_seq, t_ns: self.last_t_ns, values: &self.safe })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dog(mode: SafeOutput) -> Watchdog {
        let set = WatchdogSettings {
            enabled: true,
            timeout: Duration::from_millis(100),
            period: Duration::from_millis(20),
            safe_output: mode,
            decay_tau: Duration::from_millis(200),
        };
        Watchdog::new(set, 2)
    }

    #[test]
    fn stale_frames_follow_the_timeout_at_the_period_and_clear_on_input() {
        let t0 = Instant::now();
        let mut w = dog(SafeOutput::Decay);
        assert!(w.due(t0 + Duration::from_secs(1)).is_none(), "nothing is stale before the first input");
        w.input(t0, 9, 1);
        w.output(&[1.0, -2.0]);
        assert!(w.due(t0 + Duration::from_millis(99)).is_none());
        let f = w.due(t0 + Duration::from_millis(100)).unwrap();
        assert_eq!((f.seq, f.t_ns), (9, 1));
        let g = (-0.5f64).exp() as f32;
        assert_eq!(f.values, &[g, -2.0 * g]);
        assert!(w.due(t0 + Duration::from_millis(110)).is_none(), "one frame per period");
        assert!(w.due(t0 + Duration::from_millis(120)).is_some());
        w.input(t0 + Duration::from_millis(130), 10, 2);
        assert!(w.due(t0 + Duration::from_millis(140)).is_none(), "input clears it");
    }

    #[test]
    fn hold_and_zero() {
        let t0 = Instant::now();
        for (mode, want) in [(SafeOutput::Hold, [3.0, 4.0]), (SafeOutput::Zero, [0.0, 0.0])] {
            let mut w = dog(mode);
            w.input(t0, 1, 1);
            w.output(&[3.0, 4.0]);
            assert_eq!(w.due(t0 + Duration::from_millis(500)).unwrap().values, &want);
        }
    }
}
