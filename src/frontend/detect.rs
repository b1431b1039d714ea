//! Threshold crossings and the robust noise estimate.
//!
//! A crossing is a sample below the (negative) threshold whose previous
//! sample was not below it; after each counted crossing, `refractory`
//! samples must pass before the next one counts (a crossing at `t` blocks
//! `t+1 .. t+refractory-1`; one at `t+refractory` counts again). Edges that
//! fall in the dead time are lost, not deferred.
//!
//! [`Detector`] holds that state for one lane group of [`LANES`] channels;
//! its loop is branch-free over the lanes so it vectorises. Pure and
//! allocation-free.

use super::filter::LANES;

/// Per-lane detection state of one group of channels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Detector {
    /// Threshold per lane (µV, negative); `-inf` for lanes past the last channel.
    pub thr: [f32; LANES],
    /// Whether the previous sample was below the threshold (1) or not (0).
    prev_below: [u32; LANES],
    /// Samples of dead time left.
    dead: [u32; LANES],
    /// Crossings counted in the current bin.
    pub counts: [f32; LANES],
}

impl Detector {
    pub fn new() -> Detector {
        Detector { thr: [f32::NEG_INFINITY; LANES], prev_below: [0; LANES], dead: [0; LANES], counts: [0.0; LANES] }
    }

    /// Forgets the previous sample and the dead time (after a reset of the
    /// stream); keeps thresholds and counts.
    pub fn forget(&mut self) {
        self.prev_below = [0; LANES];
        self.dead = [0; LANES];
    }

    /// Counts crossings over `data` (`data[i * LANES + l]`).
    pub fn run(&mut self, data: &[f32], refractory: u32) {
        let (mut prev, mut dead, mut counts) = (self.prev_below, self.dead, self.counts);
        for x in data.chunks_exact(LANES) {
            for l in 0..LANES {
                let below = u32::from(x[l] < self.thr[l]);
                dead[l] = dead[l].saturating_sub(1);
                let cross = below & (prev[l] ^ 1) & u32::from(dead[l] == 0);
                counts[l] += cross as f32;
                dead[l] = if cross == 1 { refractory } else { dead[l] };
                prev[l] = below;
            }
        }
        (self.prev_below, self.dead, self.counts) = (prev, dead, counts);
    }
}

/// `median(|x|) / 0.6745` of `x`, reordering `x` in place (no allocation).
/// For an even count the median is the mean of the two middle values, as
/// numpy's. Non-finite values must not be present; `x` must not be empty.
pub(crate) fn robust_rms(x: &mut [f32]) -> f32 {
    x.iter_mut().for_each(|v| *v = v.abs());
    let n = x.len();
    let mid = n / 2;
    let (lower, upper, _) = x.select_nth_unstable_by(mid, f32::total_cmp);
    let upper = *upper;
    let median = if n % 2 == 1 {
        f64::from(upper)
    } else {
        let below = lower.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        (f64::from(below) + f64::from(upper)) / 2.0
    };
    (median / 0.6745) as f32
}
