//! The `realistic` reaching preset: a harder, more cortex-like session than
//! [`super::simulate_reach`] (which stays as the `simple` preset).
//!
//! What it adds, each from its own random stream:
//! - movement: reaches to random targets with holds of 0.2–1.5 s between
//!   them, durations growing with distance, curved paths, postural jitter
//!   during holds, and on a third of the reaches a primary movement that
//!   misses the target followed by a corrective sub-movement;
//! - neurons: per-neuron leads spread over 0–100 ms (0–5 bins), direction
//!   tuning of heterogeneous width (von Mises–shaped, scaled by speed),
//!   speed and hand-position tuning; a share of untuned and of bursty
//!   neurons (a two-state burst process unrelated to behaviour);
//! - noise: a shared slow gain, private fast fluctuations, a slow per-neuron
//!   baseline drift (minutes), and over-dispersed counts (gamma–Poisson, i.e.
//!   negative binomial with a per-neuron shape).
//!
//! Invariants: as for the simple preset, the output depends only on
//! [`SimParams`]; kinematics do not depend on the channel count; neuron
//! properties depend only on `array_seed`; counts are non-negative integers.
#![forbid(unsafe_code)]

use super::{ar1, labelled_session, n_bins, velocity_matrix, SimParams, SimRng, MAX_RATE_HZ, SIM_BIN_SECONDS};
use super::{STREAM_KINEMATICS, STREAM_NEURONS, STREAM_NOISE, STREAM_SPIKES};
use crate::matrix::Matrix;
use crate::recording::Recording;

/// Stream of the per-neuron drift and burst processes.
const STREAM_SLOW: u64 = 5;

/// Workspace radius of reach targets, cm.
const RADIUS_CM: f64 = 10.0;
/// Reported behaviour = velocity in cm/s divided by this (as the simple preset).
const VELOCITY_SCALE_CM_S: f64 = 20.0;
/// Largest neural lead over movement, bins (100 ms); the smallest is 0.
pub(super) const MAX_LAG_BINS: usize = 5;
/// Fraction of neurons without any movement tuning.
const UNTUNED_FRACTION: f64 = 0.2;
/// Fraction of neurons with behaviour-unrelated bursts (tuned or not).
const BURSTY_FRACTION: f64 = 0.12;
/// Shared log-gain fluctuation: sd and time constant (s).
const SHARED_SD: f64 = 0.35;
const SHARED_TAU_S: f64 = 2.0;
/// Private per-neuron log-rate fluctuation: sd and time constant (s).
const PRIVATE_SD: f64 = 0.35;
const PRIVATE_TAU_S: f64 = 0.3;
/// Slow per-neuron baseline drift of the log-rate: sd and time constant (s).
pub(super) const DRIFT_SD: f64 = 0.3;
const DRIFT_TAU_S: f64 = 180.0;
/// Gamma shape of the count over-dispersion, log-uniform in this range
/// (variance = mean + mean² / shape).
pub(super) const SHAPE_RANGE: (f64, f64) = (1.0, 8.0);

// ---------------------------------------------------------------------------
// Movement
// ---------------------------------------------------------------------------

/// Hand path sampled at bin edges, cm (`t + 1` points for `t` bins).
struct Path {
    pos: Vec<[f64; 2]>,
}

impl Path {
    fn last(&self) -> [f64; 2] {
        *self.pos.last().expect("invariant: a path starts with one point")
    }

    /// Postural hold of `bins` bins: small jitter around the current point.
    fn hold(&mut self, rng: &mut SimRng, bins: usize) {
        let home = self.last();
        let jx = ar1(rng, bins, 0.15, 0.05);
        let jy = ar1(rng, bins, 0.15, 0.05);
        // Jitter relative to its first value, so the hold starts where the reach ended.
        for (a, b) in jx.iter().zip(&jy) {
            self.pos.push([home[0] + a - jx[0], home[1] + b - jy[0]]);
        }
    }

    /// A minimum-jerk movement to `target` of `dur_s` seconds whose path
    /// bows sideways by `bow` times the distance at mid-movement.
    fn reach(&mut self, target: [f64; 2], dur_s: f64, bow: f64) {
        let start = self.last();
        let d = [target[0] - start[0], target[1] - start[1]];
        let perp = [-d[1] * bow, d[0] * bow];
        let steps = (dur_s / SIM_BIN_SECONDS).round().max(2.0) as usize;
        for i in 1..=steps {
            let s = i as f64 / steps as f64;
            let along = s * s * s * (10.0 - 15.0 * s + 6.0 * s * s);
            let side = 16.0 * s * s * (1.0 - s) * (1.0 - s);
            self.pos.push([start[0] + d[0] * along + perp[0] * side, start[1] + d[1] * along + perp[1] * side]);
        }
    }
}

fn random_target(rng: &mut SimRng, from: [f64; 2]) -> [f64; 2] {
    loop {
        let r = RADIUS_CM * rng.uniform().sqrt();
        let th = std::f64::consts::TAU * rng.uniform();
        let cand = [r * th.cos(), r * th.sin()];
        if (cand[0] - from[0]).hypot(cand[1] - from[1]) >= 3.0 {
            return cand;
        }
    }
}

/// Hand position (cm) and velocity (units of [`VELOCITY_SCALE_CM_S`]) for
/// `t` bins: holds, reaches with duration `0.3 + 0.035·dist` s (± jitter),
/// curvature, and corrective sub-movements after a third of the reaches.
pub(super) fn kinematics(rng: &mut SimRng, t: usize) -> (Vec<[f64; 2]>, Vec<[f64; 2]>) {
    let mut path = Path { pos: vec![[0.0, 0.0]] };
    while path.pos.len() <= t {
        let hold_s = (0.2 + 0.35 * -(1.0 - rng.uniform()).ln()).min(1.5);
        path.hold(rng, (hold_s / SIM_BIN_SECONDS).round() as usize);
        let from = path.last();
        let target = random_target(rng, from);
        let dist = (target[0] - from[0]).hypot(target[1] - from[1]);
        let dur = 0.3 + 0.035 * dist + rng.range(-0.05, 0.15);
        let bow = 0.12 * rng.normal();
        if rng.uniform() < 1.0 / 3.0 {
            // Primary movement misses by ~15 % of the distance; a short
            // corrective movement follows after a brief pause.
            let miss = [0.15 * dist * rng.normal() / 1.4, 0.15 * dist * rng.normal() / 1.4];
            path.reach([target[0] + miss[0], target[1] + miss[1]], dur, bow);
            let pause = 2 + rng.0.below(4);
            path.hold(rng, pause);
            path.reach(target, rng.range(0.2, 0.3), 0.0);
        } else {
            path.reach(target, dur, bow);
        }
    }
    let pos: Vec<[f64; 2]> = path.pos[..t].to_vec();
    let k = 1.0 / (SIM_BIN_SECONDS * VELOCITY_SCALE_CM_S);
    let vel = path.pos.windows(2).take(t).map(|w| [(w[1][0] - w[0][0]) * k, (w[1][1] - w[0][1]) * k]).collect();
    (pos, vel)
}

// ---------------------------------------------------------------------------
// Neurons
// ---------------------------------------------------------------------------

/// One simulated neuron of the realistic preset.
#[derive(Debug, Clone)]
pub(super) struct Neuron {
    /// ln of the resting rate in Hz.
    log_base: f64,
    /// Preferred direction (radians), tuning concentration and gain on
    /// `speed · shape(direction)`; the gain is 0 for untuned neurons.
    pref: f64,
    kappa: f64,
    pub(super) dir_gain: f64,
    /// Gain on speed.
    speed_gain: f64,
    /// Gain on hand position (per workspace radius).
    pos_gain: [f64; 2],
    /// Lead of the neuron over the movement, bins.
    pub(super) lag: usize,
    /// Gamma shape of the count noise.
    pub(super) shape: f64,
    /// Bursts: per-bin entry probability and mean length in bins (0 entry
    /// probability for regular neurons), and the log-rate added in a burst.
    pub(super) burst_p: f64,
    burst_bins: f64,
    burst_log_gain: f64,
}

impl Neuron {
    fn draw(rng: &mut SimRng) -> Self {
        let base_hz = (8.0f64.ln() + 0.7 * rng.normal()).exp().clamp(1.0, 40.0);
        let is_tuned = rng.uniform() >= UNTUNED_FRACTION;
        let is_bursty = rng.uniform() < BURSTY_FRACTION;
        let (lo, hi) = SHAPE_RANGE;
        Neuron {
            log_base: base_hz.ln(),
            pref: std::f64::consts::TAU * rng.uniform(),
            kappa: (rng.range(0.3f64.ln(), 4.0f64.ln())).exp(),
            dir_gain: if is_tuned { rng.range(0.5, 1.3) } else { 0.0 },
            speed_gain: if is_tuned { rng.range(-0.3, 0.6) } else { 0.0 },
            pos_gain: if is_tuned { [0.4 * rng.normal(), 0.4 * rng.normal()] } else { [0.0, 0.0] },
            lag: rng.0.below(MAX_LAG_BINS + 1),
            shape: rng.range(lo.ln(), hi.ln()).exp(),
            burst_p: if is_bursty { rng.range(0.3, 1.0) * SIM_BIN_SECONDS } else { 0.0 },
            burst_bins: rng.range(3.0, 8.0),
            burst_log_gain: rng.range(5.0f64.ln(), 10.0f64.ln()),
        }
    }

    /// Movement-driven log-rate term at velocity `v` and position `p` (cm).
    fn drive(&self, v: [f64; 2], p: [f64; 2]) -> f64 {
        let speed = v[0].hypot(v[1]);
        let dir = if speed > 1e-9 {
            // Von Mises bump rescaled to [-1, 1]; ≈ cos(Δ) for small kappa.
            let cos_d = (v[0] * self.pref.cos() + v[1] * self.pref.sin()) / speed;
            let floor = (-2.0 * self.kappa).exp();
            2.0 * ((self.kappa * (cos_d - 1.0)).exp() - floor) / (1.0 - floor) - 1.0
        } else {
            0.0
        };
        self.dir_gain * speed * dir
            + self.speed_gain * speed
            + (self.pos_gain[0] * p[0] + self.pos_gain[1] * p[1]) / RADIUS_CM
    }
}

pub(super) fn neurons(rng: &mut SimRng, channels: usize) -> Vec<Neuron> {
    (0..channels).map(|_| Neuron::draw(rng)).collect()
}

/// A two-state burst process: per bin, the log-rate added (0 outside bursts).
fn bursts(rng: &mut SimRng, t: usize, n: &Neuron) -> Vec<f64> {
    let mut left = 0usize;
    (0..t)
        .map(|_| {
            if left == 0 && n.burst_p > 0.0 && rng.uniform() < n.burst_p {
                // Geometric length with mean burst_bins.
                left = 1 + (-(1.0 - rng.uniform()).ln() * (n.burst_bins - 1.0)) as usize;
            }
            if left > 0 {
                left -= 1;
                n.burst_log_gain
            } else {
                0.0
            }
        })
        .collect()
}

/// Slow drift (log-rate) and bursts for every neuron, `[t]` each.
pub(super) fn slow_terms(rng: &mut SimRng, t: usize, neurons: &[Neuron]) -> Vec<(Vec<f64>, Vec<f64>)> {
    neurons.iter().map(|n| (ar1(rng, t, DRIFT_TAU_S, DRIFT_SD), bursts(rng, t, n))).collect()
}

/// Firing rates in Hz, `[t, C]`. `vel`/`pos` must extend [`MAX_LAG_BINS`]
/// bins past `t`.
pub(super) fn rates(
    kin: (&[[f64; 2]], &[[f64; 2]]),
    t: usize,
    neurons: &[Neuron],
    slow: &[(Vec<f64>, Vec<f64>)],
    rng: &mut SimRng,
) -> Matrix {
    let (pos, vel) = kin;
    let shared = ar1(rng, t, SHARED_TAU_S, SHARED_SD);
    let c = neurons.len();
    let mut out = Matrix::zeros(t, c);
    for (j, (n, (drift, burst))) in neurons.iter().zip(slow).enumerate() {
        let private = ar1(rng, t, PRIVATE_TAU_S, PRIVATE_SD);
        for i in 0..t {
            let k = i + n.lag;
            let log_rate = n.log_base + n.drive(vel[k], pos[k]) + shared[i] + private[i] + drift[i] + burst[i];
            out.data[i * c + j] = log_rate.exp().min(MAX_RATE_HZ) as f32;
        }
    }
    out
}

/// Over-dispersed counts: `n ~ Poisson(λ·G)`, `G ~ Gamma(shape, 1/shape)`
/// per bin and neuron (negative binomial with mean λ, variance λ + λ²/shape).
pub(super) fn counts(rates_hz: &Matrix, neurons: &[Neuron], rng: &mut SimRng) -> Matrix {
    let c = rates_hz.cols;
    let data = rates_hz
        .data
        .iter()
        .enumerate()
        .map(|(k, &r)| {
            let shape = neurons[k % c].shape;
            let g = rng.gamma(shape) / shape;
            rng.poisson(f64::from(r) * SIM_BIN_SECONDS * g) as f32
        })
        .collect();
    Matrix::from_vec(rates_hz.rows, c, data)
}

/// The realistic reaching session: behaviour = 2-D hand velocity (units of
/// 20 cm/s, as the simple preset), spikes from `p.channels` neurons.
pub fn simulate_reach_realistic(p: &SimParams) -> Recording {
    let t = n_bins(p);
    let channels = p.channels.max(1);
    let (pos, vel) = kinematics(&mut SimRng::new(p.seed, STREAM_KINEMATICS), t + MAX_LAG_BINS);
    let neurons = neurons(&mut SimRng::new(p.array_seed, STREAM_NEURONS), channels);
    let slow = slow_terms(&mut SimRng::new(p.seed, STREAM_SLOW), t, &neurons);
    let rates = rates((&pos, &vel), t, &neurons, &slow, &mut SimRng::new(p.seed, STREAM_NOISE));
    let spikes = counts(&rates, &neurons, &mut SimRng::new(p.seed, STREAM_SPIKES));
    labelled_session(spikes, velocity_matrix(&vel, t))
}

#[cfg(test)]
mod tests {
    use super::super::simulate_reach;
    use super::*;

    fn params(minutes: f64, seed: u64) -> SimParams {
        SimParams { minutes, seed, array_seed: 0, channels: 96 }
    }

    fn mean_var(xs: &[f64]) -> (f64, f64) {
        let n = xs.len() as f64;
        let m = xs.iter().sum::<f64>() / n;
        (m, xs.iter().map(|x| (x - m).powi(2)).sum::<f64>() / n)
    }

    #[test]
    fn deterministic_per_seed_and_kinematics_independent_of_channels() {
        let a = simulate_reach_realistic(&params(1.0, 5));
        assert_eq!(a, simulate_reach_realistic(&params(1.0, 5)));
        let b = simulate_reach_realistic(&params(1.0, 6));
        assert_ne!(a.spikes, b.spikes);
        assert_ne!(a.behavior, b.behavior);
        let c = simulate_reach_realistic(&SimParams { channels: 10, ..params(1.0, 5) });
        assert_eq!(a.behavior, c.behavior);
        assert_ne!(a, simulate_reach(&params(1.0, 5)), "the presets must differ");
        assert!(a.spikes.data.iter().all(|&x| x >= 0.0 && x.fract() == 0.0));
        assert_eq!((a.n_bins(), a.n_channels(), a.n_behavior()), (3000, 96, 2));
    }

    #[test]
    fn gamma_sampler_has_the_closed_form_moments() {
        let mut rng = SimRng::new(3, 0);
        for shape in [0.5, 1.0, 3.7, 20.0] {
            let n = 100_000;
            let xs: Vec<f64> = (0..n).map(|_| rng.gamma(shape)).collect();
            let (m, v) = mean_var(&xs);
            // Gamma(k, 1): mean k, variance k.
            assert!((m - shape).abs() < 5.0 * (shape / n as f64).sqrt(), "shape {shape}: mean {m}");
            assert!((v / shape - 1.0).abs() < 0.06, "shape {shape}: variance {v}");
            assert!(xs.iter().all(|&x| x > 0.0 && x.is_finite()));
        }
    }

    #[test]
    fn counts_are_over_dispersed_as_negative_binomial() {
        let t = 6000;
        let (pos, vel) = kinematics(&mut SimRng::new(1, STREAM_KINEMATICS), t + MAX_LAG_BINS);
        let ns = neurons(&mut SimRng::new(1, STREAM_NEURONS), 96);
        let slow = slow_terms(&mut SimRng::new(1, STREAM_SLOW), t, &ns);
        let r = rates((&pos, &vel), t, &ns, &slow, &mut SimRng::new(1, STREAM_NOISE));
        let n = counts(&r, &ns, &mut SimRng::new(1, STREAM_SPIKES));
        // Given the rate, E(n - λ)² = λ + λ²/shape (Poisson alone: λ).
        let (mut sq, mut lam, mut want) = (0.0, 0.0, 0.0);
        for (k, (&c, &hz)) in n.data.iter().zip(&r.data).enumerate() {
            let l = f64::from(hz) * SIM_BIN_SECONDS;
            sq += (f64::from(c) - l).powi(2);
            lam += l;
            want += l + l * l / ns[k % 96].shape;
        }
        let fano = sq / lam;
        assert!(fano > 1.1, "conditional variance / mean {fano}: not over-dispersed");
        assert!((sq / want - 1.0).abs() < 0.05, "variance {sq} vs negative-binomial {want}");
    }

    /// Median over neurons of |log(mean count, last quarter / first quarter)|
    /// after removing the population's common shift.
    fn drift_score(rec: &Recording) -> f64 {
        let (t, c) = (rec.n_bins(), rec.n_channels());
        let q = t / 4;
        let mut ratios: Vec<f64> = (0..c)
            .map(|j| {
                let a: f64 = (0..q).map(|i| f64::from(rec.spikes.get(i, j))).sum();
                let b: f64 = (t - q..t).map(|i| f64::from(rec.spikes.get(i, j))).sum();
                ((b + 1.0) / (a + 1.0)).ln()
            })
            .collect();
        let mut sorted = ratios.clone();
        sorted.sort_by(f64::total_cmp);
        let common = sorted[c / 2];
        ratios.iter_mut().for_each(|r| *r = (*r - common).abs());
        ratios.sort_by(f64::total_cmp);
        ratios[c / 2]
    }

    #[test]
    fn baseline_rates_drift_within_a_session() {
        let p = params(12.0, 2);
        let realistic = drift_score(&simulate_reach_realistic(&p));
        let simple = drift_score(&simulate_reach(&p));
        assert!(realistic > 0.15, "realistic drift score {realistic}");
        assert!(simple < 0.08, "simple preset drift score {simple}");
    }

    #[test]
    fn neurons_are_heterogeneous_with_untuned_and_bursty_shares() {
        let ns = neurons(&mut SimRng::new(0, STREAM_NEURONS), 400);
        for lag in 0..=MAX_LAG_BINS {
            let k = ns.iter().filter(|n| n.lag == lag).count();
            assert!((40..=95).contains(&k), "{k} neurons with lag {lag}");
        }
        let untuned = ns.iter().filter(|n| n.dir_gain == 0.0).count();
        assert!((50..=115).contains(&untuned), "untuned {untuned} of 400");
        let bursty = ns.iter().filter(|n| n.burst_p > 0.0).count();
        assert!((25..=75).contains(&bursty), "bursty {bursty} of 400");
        let (narrow, broad) =
            (ns.iter().filter(|n| n.kappa > 2.0).count(), ns.iter().filter(|n| n.kappa < 0.6).count());
        assert!(narrow > 60 && broad > 60, "tuning widths not spread: {narrow} narrow, {broad} broad");
        // A bursty neuron spends roughly p · mean length of its bins in bursts.
        let n = ns.iter().find(|n| n.burst_p > 0.0).unwrap();
        let b = bursts(&mut SimRng::new(1, STREAM_SLOW), 50_000, n);
        let share = b.iter().filter(|&&x| x > 0.0).count() as f64 / b.len() as f64;
        let want = n.burst_p * n.burst_bins;
        assert!((share / want - 1.0).abs() < 0.3, "burst share {share} vs ≈{want}");
    }

    #[test]
    fn movement_has_holds_reaches_and_corrections() {
        let (pos, vel) = kinematics(&mut SimRng::new(9, STREAM_KINEMATICS), 30_000);
        let speed: Vec<f64> = vel.iter().map(|v| v[0].hypot(v[1])).collect();
        let slow = speed.iter().filter(|&&s| s < 0.1).count() as f64 / speed.len() as f64;
        assert!((0.25..0.65).contains(&slow), "share of hold-like bins {slow}");
        let peak = speed.iter().cloned().fold(0.0, f64::max);
        assert!((0.8..5.0).contains(&peak), "peak speed {peak} (× 20 cm/s)");
        assert!(pos.iter().all(|p| p[0].hypot(p[1]) < 1.6 * RADIUS_CM), "hand left the workspace");
        // Movement segments: count bins of consecutive speed ≥ 0.1.
        let mut lens = Vec::new();
        let mut run = 0;
        for &s in &speed {
            if s >= 0.1 {
                run += 1;
            } else if run > 0 {
                lens.push(run);
                run = 0;
            }
        }
        let short = lens.iter().filter(|&&l| l <= 10).count();
        let long = lens.iter().filter(|&&l| l >= 20).count();
        assert!(long > 200 && short > 50, "{long} long reaches, {short} short (corrective) movements");
    }
}
