//! Seeded, deterministic synthetic sessions for demos, tests and benchmarks.
//!
//! Owns the generators that return ordinary [`Recording`]s (20 ms bins,
//! timestamps = bin index × bin width, `behavior_valid = None`):
//! - [`simulate_reach_realistic`] (`realistic.rs`, the default `reach`
//!   preset): heterogeneous lags and tuning widths, position/speed/velocity
//!   tuning, untuned and bursty neurons, slow baseline drift and
//!   over-dispersed (negative binomial) counts; see that module.
//! - [`simulate_reach`] (the `simple` preset): random-target reaching with bell-shaped
//!   (minimum-jerk) velocity profiles; Poisson neurons with an exponential
//!   link, cosine tuning to hand velocity plus speed tuning, and a per-neuron
//!   lead of 60–100 ms (the rate at bin `t` depends on the velocity at
//!   `t + lag`); about 15 % of neurons are untuned.
//! - [`simulate_lorenz`]: a Lorenz-63 trajectory observed through Poisson
//!   neurons whose log-rate is linear in the z-scored state.
//!
//! Invariants: the output depends only on [`SimParams`] — the private
//! xoshiro256** generator and samplers here never change with crate versions
//! or platform; rates are positive and finite; spike counts are non-negative
//! integers stored as `f32`. Kinematics and the Lorenz path are drawn from
//! their own random streams, so they do not depend on the channel count.
#![forbid(unsafe_code)]

use crate::matrix::Matrix;
use crate::recording::Recording;
use crate::rng::Rng;

mod realistic;

pub use realistic::simulate_reach_realistic;

/// Bin width of every simulated session, in seconds.
pub const SIM_BIN_SECONDS: f64 = 0.02;

/// What to simulate.
#[derive(Debug, Clone, PartialEq)]
pub struct SimParams {
    /// Session length in minutes; rounded to whole bins, at least one bin.
    pub minutes: f64,
    /// Seed: the same parameters always give the same session.
    pub seed: u64,
    /// Seed of the simulated electrode array: sessions sharing it record the
    /// same neurons (tuning, baselines), like days of one implant, while
    /// `seed` draws the behaviour and spikes of one session.
    pub array_seed: u64,
    /// Number of neurons (spike channels); at least one is simulated.
    pub channels: usize,
}

/// Which reaching simulation to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReachPreset {
    /// [`simulate_reach_realistic`]: the harder, more cortex-like session.
    Realistic,
    /// [`simulate_reach`]: the original preset, kept so earlier results reproduce.
    Simple,
}

/// Runs the reaching simulation of `preset`.
pub fn simulate_reach_preset(p: &SimParams, preset: ReachPreset) -> Recording {
    match preset {
        ReachPreset::Realistic => simulate_reach_realistic(p),
        ReachPreset::Simple => simulate_reach(p),
    }
}

impl Default for SimParams {
    fn default() -> Self {
        Self { minutes: 10.0, seed: 0, array_seed: 0, channels: 96 }
    }
}

// ---------------------------------------------------------------------------
// Random numbers
// ---------------------------------------------------------------------------

/// One independent [`Rng`] stream per `(seed, stream)` pair, plus the
/// samplers the simulations need.
#[derive(Debug, Clone)]
struct SimRng(Rng);

/// Stream ids, so each part of a simulation has its own random sequence.
const STREAM_KINEMATICS: u64 = 1;
const STREAM_NEURONS: u64 = 2;
const STREAM_NOISE: u64 = 3;
const STREAM_SPIKES: u64 = 4;

impl SimRng {
    fn new(seed: u64, stream: u64) -> Self {
        Self(Rng::new(seed ^ stream.wrapping_mul(0xD1B5_4A32_D192_ED03)))
    }

    /// Uniform in `[0, 1)`.
    fn uniform(&mut self) -> f64 {
        self.0.uniform()
    }

    /// Standard normal.
    fn normal(&mut self) -> f64 {
        self.0.normal()
    }

    /// Uniform in `[lo, hi)`.
    fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.uniform()
    }

    /// Poisson sample with mean `lambda` (≤ 0 gives 0): Knuth's product
    /// method below 30, Hörmann's PTRS transformed rejection above.
    fn poisson(&mut self, lambda: f64) -> u64 {
        if lambda <= 0.0 || !lambda.is_finite() {
            return 0;
        }
        if lambda < 30.0 {
            let limit = (-lambda).exp();
            let mut k = 0u64;
            let mut p = self.uniform();
            while p > limit {
                k += 1;
                p *= self.uniform();
            }
            return k;
        }
        let slam = lambda.sqrt();
        let loglam = lambda.ln();
        let b = 0.931 + 2.53 * slam;
        let a = -0.059 + 0.02483 * b;
        let inv_alpha = 1.1239 + 1.1328 / (b - 3.4);
        let vr = 0.9277 - 3.6224 / (b - 2.0);
        loop {
            let u = self.uniform() - 0.5;
            let v = self.uniform();
            let us = 0.5 - u.abs();
            let k = ((2.0 * a / us + b) * u + lambda + 0.43).floor();
            if us >= 0.07 && v <= vr {
                return k as u64;
            }
            if k < 0.0 || (us < 0.013 && v > us) {
                continue;
            }
            let lhs = v.ln() + inv_alpha.ln() - (a / (us * us) + b).ln();
            if lhs <= -lambda + k * loglam - ln_factorial(k) {
                return k as u64;
            }
        }
    }
}

impl SimRng {
    /// Gamma sample with the given `shape` (> 0) and unit scale:
    /// Marsaglia–Tsang for shape ≥ 1, boosted by `U^(1/shape)` below 1.
    fn gamma(&mut self, shape: f64) -> f64 {
        if shape < 1.0 {
            let u = 1.0 - self.uniform();
            return self.gamma(shape + 1.0) * u.powf(1.0 / shape);
        }
        let d = shape - 1.0 / 3.0;
        let c = 1.0 / (9.0 * d).sqrt();
        loop {
            let x = self.normal();
            let v = (1.0 + c * x).powi(3);
            if v <= 0.0 {
                continue;
            }
            let u = 1.0 - self.uniform();
            if u.ln() < 0.5 * x * x + d - d * v + d * v.ln() {
                return d * v;
            }
        }
    }
}

/// `ln(k!)` for integral `k ≥ 0`: exact sum below 10, Stirling series above
/// (absolute error < 1e-10).
fn ln_factorial(k: f64) -> f64 {
    if k < 10.0 {
        let mut acc = 0.0;
        let mut i = 2.0;
        while i <= k {
            acc += f64::ln(i);
            i += 1.0;
        }
        return acc;
    }
    let n = k;
    let inv = 1.0 / n;
    let inv2 = inv * inv;
    n * n.ln() - n + 0.5 * (std::f64::consts::TAU * n).ln() + inv * (1.0 / 12.0 - inv2 * (1.0 / 360.0 - inv2 / 1260.0))
}

fn n_bins(p: &SimParams) -> usize {
    let bins = (p.minutes * 60.0 / SIM_BIN_SECONDS).round();
    if bins.is_finite() && bins >= 1.0 {
        bins as usize
    } else {
        1
    }
}

fn timestamps(t: usize) -> Vec<f64> {
    (0..t).map(|i| i as f64 * SIM_BIN_SECONDS).collect()
}

/// Draws Poisson counts for a `[T, C]` matrix of rates in Hz.
fn sample_counts(rates_hz: &Matrix, rng: &mut SimRng) -> Matrix {
    let data = rates_hz.data.iter().map(|&r| rng.poisson(f64::from(r) * SIM_BIN_SECONDS) as f32).collect();
    Matrix::from_vec(rates_hz.rows, rates_hz.cols, data)
}

/// AR(1) series with unit-free stationary standard deviation `sd` and time
/// constant `tau_s` seconds, one value per bin.
fn ar1(rng: &mut SimRng, t: usize, tau_s: f64, sd: f64) -> Vec<f64> {
    let phi = (-SIM_BIN_SECONDS / tau_s).exp();
    let innov = sd * (1.0 - phi * phi).sqrt();
    let mut x = sd * rng.normal();
    (0..t)
        .map(|_| {
            x = phi * x + innov * rng.normal();
            x
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Reaching
// ---------------------------------------------------------------------------

/// Workspace radius of reach targets, cm.
const REACH_RADIUS_CM: f64 = 10.0;
/// Shortest reach, cm.
const REACH_MIN_DIST_CM: f64 = 4.0;
/// Reported behaviour = velocity in cm/s divided by this (unit-scale values).
const VELOCITY_SCALE_CM_S: f64 = 20.0;
/// Largest neural lead over movement, bins (100 ms).
const MAX_LAG_BINS: usize = 5;
/// Smallest neural lead, bins (60 ms).
const MIN_LAG_BINS: usize = 3;
/// Fraction of neurons without movement tuning.
const UNTUNED_FRACTION: f64 = 0.15;
/// Shared log-gain fluctuation (unrelated to behaviour): sd and time constant.
/// Together with the private noise below this sets the decoding difficulty:
/// measured on 10-minute sessions (seeds 1, 2; train 80 %, test 20 %), a
/// Wiener filter (ridge on 10 lagged bins of counts) reaches velocity R² ≈
/// 0.67–0.71 while the same linear readout of log causally-smoothed counts
/// reaches ≈ 0.85, so nonlinear decoders have room to win.
const SHARED_SD: f64 = 0.8;
const SHARED_TAU_S: f64 = 2.0;
/// Private per-neuron log-rate fluctuation: sd and time constant.
const PRIVATE_SD: f64 = 0.5;
const PRIVATE_TAU_S: f64 = 0.3;
/// Ceiling on any simulated firing rate, Hz.
const MAX_RATE_HZ: f64 = 200.0;

/// Hand velocity in units of [`VELOCITY_SCALE_CM_S`], `[t, 2]`, for
/// holds of 0.2–0.6 s alternating with minimum-jerk reaches of 0.5–1 s to
/// random targets in a disk.
fn reach_velocity(rng: &mut SimRng, t: usize) -> Vec<[f64; 2]> {
    let mut vel = Vec::with_capacity(t);
    let mut pos = [0.0f64, 0.0];
    while vel.len() < t {
        let hold_bins = (rng.range(0.2, 0.6) / SIM_BIN_SECONDS).round() as usize;
        vel.resize(vel.len() + hold_bins, [0.0, 0.0]);
        let target = loop {
            let r = REACH_RADIUS_CM * rng.uniform().sqrt();
            let th = std::f64::consts::TAU * rng.uniform();
            let cand = [r * th.cos(), r * th.sin()];
            if (cand[0] - pos[0]).hypot(cand[1] - pos[1]) >= REACH_MIN_DIST_CM {
                break cand;
            }
        };
        let duration = rng.range(0.5, 1.0);
        let steps = (duration / SIM_BIN_SECONDS).round().max(1.0) as usize;
        let d = [target[0] - pos[0], target[1] - pos[1]];
        for i in 0..steps {
            // Minimum-jerk profile sampled at bin centres: v = d/D · 30 s²(1−s)².
            let s = (i as f64 + 0.5) / steps as f64;
            let shape = 30.0 * s * s * (1.0 - s) * (1.0 - s) / duration / VELOCITY_SCALE_CM_S;
            vel.push([d[0] * shape, d[1] * shape]);
        }
        pos = target;
    }
    vel.truncate(t);
    vel
}

/// One simulated reach-task neuron.
#[derive(Debug, Clone)]
struct ReachNeuron {
    /// ln of the resting rate in Hz.
    log_base: f64,
    /// Gain times preferred direction (zero for untuned neurons).
    weights: [f64; 2],
    /// Gain on speed.
    speed_gain: f64,
    /// Lead of the neuron over the movement, bins.
    lag: usize,
}

fn reach_neurons(rng: &mut SimRng, channels: usize) -> Vec<ReachNeuron> {
    (0..channels)
        .map(|_| {
            let base_hz = (8.0f64.ln() + 0.7 * rng.normal()).exp().clamp(2.0, 30.0);
            let is_tuned = rng.uniform() >= UNTUNED_FRACTION;
            let th = std::f64::consts::TAU * rng.uniform();
            let gain = rng.range(0.4, 1.2);
            let speed_gain = rng.range(-0.2, 0.8);
            let lag = MIN_LAG_BINS + (rng.uniform() * (MAX_LAG_BINS - MIN_LAG_BINS + 1) as f64) as usize;
            if is_tuned {
                ReachNeuron { log_base: base_hz.ln(), weights: [gain * th.cos(), gain * th.sin()], speed_gain, lag }
            } else {
                ReachNeuron { log_base: base_hz.ln(), weights: [0.0, 0.0], speed_gain: 0.0, lag }
            }
        })
        .collect()
}

/// Firing rates in Hz, `[T, C]`, for velocity `vel` (which must extend
/// [`MAX_LAG_BINS`] bins past `t`), with shared and private log-rate noise.
fn reach_rates(vel: &[[f64; 2]], t: usize, neurons: &[ReachNeuron], rng: &mut SimRng) -> Matrix {
    // A slow shared gain unrelated to behaviour (arousal, attention) and
    // private fluctuations per neuron: both make linear decoding imperfect.
    let shared = ar1(rng, t, SHARED_TAU_S, SHARED_SD);
    let mut rates = Matrix::zeros(t, neurons.len());
    for (c, n) in neurons.iter().enumerate() {
        let private = ar1(rng, t, PRIVATE_TAU_S, PRIVATE_SD);
        for i in 0..t {
            let v = vel[i + n.lag];
            let speed = v[0].hypot(v[1]);
            let log_rate =
                n.log_base + n.weights[0] * v[0] + n.weights[1] * v[1] + n.speed_gain * speed + shared[i] + private[i];
            rates.data[i * neurons.len() + c] = log_rate.exp().min(MAX_RATE_HZ) as f32;
        }
    }
    rates
}

/// A simulated session: counts and fully labelled behaviour, 20 ms bins.
pub(super) fn labelled_session(spikes: Matrix, behavior: Matrix) -> Recording {
    let t = spikes.rows;
    Recording {
        spikes,
        behavior: Some(behavior),
        behavior_valid: None,
        timestamps: Some(timestamps(t)),
        bin_seconds: SIM_BIN_SECONDS,
    }
}

/// The first `t` velocities as a `t × 2` behaviour matrix.
pub(super) fn velocity_matrix(vel: &[[f64; 2]], t: usize) -> Matrix {
    Matrix::from_vec(t, 2, vel[..t].iter().flat_map(|v| [v[0] as f32, v[1] as f32]).collect())
}

/// Random-target reaching session: behaviour = 2-D hand velocity (units of
/// 20 cm/s, peaks around 1), spikes from `p.channels` Poisson neurons that
/// lead the movement by 60–100 ms.
pub fn simulate_reach(p: &SimParams) -> Recording {
    let t = n_bins(p);
    let channels = p.channels.max(1);
    let vel = reach_velocity(&mut SimRng::new(p.seed, STREAM_KINEMATICS), t + MAX_LAG_BINS);
    let neurons = reach_neurons(&mut SimRng::new(p.array_seed, STREAM_NEURONS), channels);
    let rates = reach_rates(&vel, t, &neurons, &mut SimRng::new(p.seed, STREAM_NOISE));
    let spikes = sample_counts(&rates, &mut SimRng::new(p.seed, STREAM_SPIKES));
    labelled_session(spikes, velocity_matrix(&vel, t))
}

// ---------------------------------------------------------------------------
// Lorenz
// ---------------------------------------------------------------------------

const LORENZ_SIGMA: f64 = 10.0;
const LORENZ_RHO: f64 = 28.0;
const LORENZ_BETA: f64 = 8.0 / 3.0;
/// RK4 step in Lorenz time units.
const LORENZ_DT: f64 = 0.005;
/// RK4 steps per 20 ms bin (0.01 Lorenz time per bin: one lobe in ~1–2 s).
const LORENZ_STEPS_PER_BIN: usize = 2;
/// Steps discarded so the state is on the attractor.
const LORENZ_BURN_IN_STEPS: usize = 2000;
/// Long-run mean of (x, y, z) on the attractor (σ=10, ρ=28, β=8/3).
const LORENZ_MEAN: [f64; 3] = [0.0, 0.0, 23.5];
/// Long-run standard deviation of (x, y, z) on the attractor.
const LORENZ_SD: [f64; 3] = [7.9, 9.0, 8.6];

fn lorenz_deriv(s: [f64; 3]) -> [f64; 3] {
    [LORENZ_SIGMA * (s[1] - s[0]), s[0] * (LORENZ_RHO - s[2]) - s[1], s[0] * s[1] - LORENZ_BETA * s[2]]
}

fn rk4_step(s: [f64; 3], dt: f64) -> [f64; 3] {
    let add = |a: [f64; 3], b: [f64; 3], h: f64| [a[0] + h * b[0], a[1] + h * b[1], a[2] + h * b[2]];
    let k1 = lorenz_deriv(s);
    let k2 = lorenz_deriv(add(s, k1, dt / 2.0));
    let k3 = lorenz_deriv(add(s, k2, dt / 2.0));
    let k4 = lorenz_deriv(add(s, k3, dt));
    let mut out = s;
    for i in 0..3 {
        out[i] += dt / 6.0 * (k1[i] + 2.0 * k2[i] + 2.0 * k3[i] + k4[i]);
    }
    out
}

/// z-scored Lorenz state per bin, `t` bins, from a seeded start on the attractor.
fn lorenz_states(rng: &mut SimRng, t: usize) -> Vec<[f64; 3]> {
    let mut s = [1.0 + rng.normal(), 1.0 + rng.normal(), 20.0 + 5.0 * rng.normal()];
    for _ in 0..LORENZ_BURN_IN_STEPS {
        s = rk4_step(s, LORENZ_DT);
    }
    (0..t)
        .map(|_| {
            for _ in 0..LORENZ_STEPS_PER_BIN {
                s = rk4_step(s, LORENZ_DT);
            }
            [
                (s[0] - LORENZ_MEAN[0]) / LORENZ_SD[0],
                (s[1] - LORENZ_MEAN[1]) / LORENZ_SD[1],
                (s[2] - LORENZ_MEAN[2]) / LORENZ_SD[2],
            ]
        })
        .collect()
}

/// Lorenz-63 session: behaviour = the z-scored 3-D state, spikes from
/// `p.channels` Poisson neurons with log-rate `b + w·state` (`b` from a
/// 5–20 Hz baseline, `w` random normal).
pub fn simulate_lorenz(p: &SimParams) -> Recording {
    let t = n_bins(p);
    let channels = p.channels.max(1);
    let states = lorenz_states(&mut SimRng::new(p.seed, STREAM_KINEMATICS), t);
    let mut nrng = SimRng::new(p.array_seed, STREAM_NEURONS);
    let neurons: Vec<(f64, [f64; 3])> = (0..channels)
        .map(|_| {
            let base = (10.0f64.ln() + 0.35 * nrng.normal()).exp().clamp(5.0, 20.0).ln();
            (base, [0.6 * nrng.normal(), 0.6 * nrng.normal(), 0.6 * nrng.normal()])
        })
        .collect();
    let mut rates = Matrix::zeros(t, channels);
    for (i, s) in states.iter().enumerate() {
        for (r, (b, w)) in rates.row_mut(i).iter_mut().zip(&neurons) {
            let log_rate = b + w[0] * s[0] + w[1] * s[1] + w[2] * s[2];
            *r = log_rate.exp().min(MAX_RATE_HZ) as f32;
        }
    }
    let spikes = sample_counts(&rates, &mut SimRng::new(p.seed, STREAM_SPIKES));
    let behavior = Matrix::from_vec(t, 3, states.iter().flat_map(|s| s.map(|x| x as f32)).collect());
    labelled_session(spikes, behavior)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn short(seed: u64) -> SimParams {
        SimParams { minutes: 2.0, seed, array_seed: 0, channels: 96 }
    }

    fn mean_var(xs: &[f64]) -> (f64, f64) {
        let n = xs.len() as f64;
        let m = xs.iter().sum::<f64>() / n;
        (m, xs.iter().map(|x| (x - m).powi(2)).sum::<f64>() / n)
    }

    fn pearson(a: &[f64], b: &[f64]) -> f64 {
        let (ma, va) = mean_var(a);
        let (mb, vb) = mean_var(b);
        let cov = a.iter().zip(b).map(|(x, y)| (x - ma) * (y - mb)).sum::<f64>() / a.len() as f64;
        cov / (va * vb).sqrt()
    }

    /// `corr(speed(t), pop(t + k))` for k in `-max..=max`; returns the k of the peak.
    fn peak_lag(speed: &[f64], pop: &[f64], max: i64) -> (i64, f64) {
        let n = speed.len() as i64;
        let mut best = (0, f64::MIN);
        for k in -max..=max {
            let (s0, p0) = if k >= 0 { (0, k) } else { (-k, 0) };
            let len = (n - k.abs()) as usize;
            let r = pearson(&speed[s0 as usize..s0 as usize + len], &pop[p0 as usize..p0 as usize + len]);
            if r > best.1 {
                best = (k, r);
            }
        }
        best
    }

    /// Poisson pmf computed independently in log space with an exact `ln k!`.
    fn pmf(lambda: f64, k: u64) -> f64 {
        let ln_fact: f64 = (2..=k).map(|i| (i as f64).ln()).sum();
        (k as f64 * lambda.ln() - lambda - ln_fact).exp()
    }

    #[test]
    fn poisson_sampler_matches_mean_variance_and_pmf() {
        let mut rng = SimRng::new(11, 0);
        for lambda in [0.3, 4.0, 29.0, 31.0, 120.0, 2000.0] {
            let n = 100_000;
            let draws: Vec<u64> = (0..n).map(|_| rng.poisson(lambda)).collect();
            let xs: Vec<f64> = draws.iter().map(|&k| k as f64).collect();
            let (m, v) = mean_var(&xs);
            let se = (lambda / n as f64).sqrt();
            assert!((m - lambda).abs() < 5.0 * se, "lambda {lambda}: mean {m}");
            assert!((v / lambda - 1.0).abs() < 0.05, "lambda {lambda}: variance {v}");
            // Frequencies of the values around the mode against the exact pmf.
            for k in [lambda.floor() as u64, lambda.floor() as u64 + 1] {
                let freq = draws.iter().filter(|&&d| d == k).count() as f64 / n as f64;
                let p = pmf(lambda, k);
                let tol = 5.0 * (p * (1.0 - p) / n as f64).sqrt();
                assert!((freq - p).abs() < tol, "lambda {lambda}, k {k}: freq {freq} vs pmf {p}");
            }
        }
        assert_eq!(rng.poisson(0.0), 0);
        assert_eq!(rng.poisson(-1.0), 0);
    }

    #[test]
    fn ln_factorial_matches_exact_sum() {
        let mut exact = 0.0f64;
        for k in 1..300u32 {
            exact += f64::from(k).ln();
            let got = ln_factorial(f64::from(k));
            assert!((got - exact).abs() < 1e-9 * exact.max(1.0), "k {k}: {got} vs {exact}");
        }
        assert_eq!(ln_factorial(0.0), 0.0);
    }

    #[test]
    fn same_seed_same_session_different_seed_differs() {
        for sim in [simulate_reach as fn(&SimParams) -> Recording, simulate_lorenz] {
            let a = sim(&short(5));
            let b = sim(&short(5));
            let c = sim(&short(6));
            assert_eq!(a, b);
            assert_ne!(a.spikes, c.spikes);
            assert_ne!(a.behavior, c.behavior);
        }
    }

    #[test]
    fn kinematics_do_not_depend_on_channel_count() {
        let a = simulate_reach(&SimParams { channels: 10, ..short(3) });
        let b = simulate_reach(&SimParams { channels: 50, ..short(3) });
        assert_eq!(a.behavior, b.behavior);
        assert_ne!(a.spikes.cols, b.spikes.cols);
    }

    #[test]
    fn shapes_timestamps_and_counts() {
        let p = SimParams { minutes: 1.5, seed: 2, array_seed: 0, channels: 17 };
        for (rec, b) in [(simulate_reach(&p), 2), (simulate_lorenz(&p), 3)] {
            assert_eq!(rec.n_bins(), 4500);
            assert_eq!(rec.n_channels(), 17);
            assert_eq!(rec.n_behavior(), b);
            assert_eq!(rec.bin_seconds, 0.02);
            assert!(rec.behavior_valid.is_none());
            let ts = rec.timestamps.as_ref().unwrap();
            assert_eq!(ts.len(), 4500);
            assert!((ts[4499] - 4499.0 * 0.02).abs() < 1e-12 && ts[0] == 0.0);
            assert!(rec.spikes.data.iter().all(|&x| x >= 0.0 && x.fract() == 0.0 && x < 1000.0));
            assert!(rec.spikes.data.iter().any(|&x| x > 0.0));
            assert!(rec.behavior.as_ref().unwrap().data.iter().all(|x| x.is_finite()));
        }
        let tiny = simulate_reach(&SimParams { minutes: 0.0, seed: 1, array_seed: 0, channels: 0 });
        assert_eq!((tiny.n_bins(), tiny.n_channels()), (1, 1));
    }

    #[test]
    fn reach_rates_are_positive_finite_and_spread_like_cortex() {
        let t = 3000;
        let vel = reach_velocity(&mut SimRng::new(1, STREAM_KINEMATICS), t + MAX_LAG_BINS);
        let neurons = reach_neurons(&mut SimRng::new(1, STREAM_NEURONS), 96);
        let rates = reach_rates(&vel, t, &neurons, &mut SimRng::new(1, STREAM_NOISE));
        assert!(rates.data.iter().all(|&r| r > 0.0 && r.is_finite() && f64::from(r) <= MAX_RATE_HZ));
        let untuned = neurons.iter().filter(|n| n.weights == [0.0, 0.0]).count();
        assert!((5..=25).contains(&untuned), "untuned {untuned} of 96");
        let bases: Vec<f64> = neurons.iter().map(|n| n.log_base.exp()).collect();
        assert!(bases.iter().all(|b| (2.0 - 1e-9..=30.0 + 1e-9).contains(b)), "baselines {bases:?}");
        assert!(bases.iter().any(|&b| b < 5.0) && bases.iter().any(|&b| b > 15.0));
        assert!(neurons.iter().all(|n| (MIN_LAG_BINS..=MAX_LAG_BINS).contains(&n.lag)));
    }

    #[test]
    fn reaches_have_bell_shaped_speed_between_holds() {
        let vel = reach_velocity(&mut SimRng::new(9, STREAM_KINEMATICS), 6000);
        let speed: Vec<f64> = vel.iter().map(|v| v[0].hypot(v[1])).collect();
        let still = speed.iter().filter(|&&s| s == 0.0).count() as f64 / speed.len() as f64;
        assert!((0.2..0.5).contains(&still), "fraction of hold bins {still}");
        let mut reaches = 0;
        let mut i = 0;
        while i < speed.len() {
            if speed[i] == 0.0 {
                i += 1;
                continue;
            }
            let start = i;
            while i < speed.len() && speed[i] > 0.0 {
                i += 1;
            }
            if start == 0 || i == speed.len() {
                continue; // cut by the session edges
            }
            let seg = &speed[start..i];
            let (argmax, peak) = seg.iter().enumerate().fold((0, 0.0), |b, (k, &s)| if s > b.1 { (k, s) } else { b });
            let dur_s = seg.len() as f64 * SIM_BIN_SECONDS;
            assert!((0.49..=1.01).contains(&dur_s), "reach of {dur_s} s");
            assert!((argmax as f64 - (seg.len() - 1) as f64 / 2.0).abs() <= 1.0, "peak not central");
            assert!(seg[0] < 0.1 * peak && seg[seg.len() - 1] < 0.1 * peak);
            assert!((0.1..4.0).contains(&peak), "peak speed {peak}");
            reaches += 1;
        }
        assert!(reaches > 60, "only {reaches} reaches in 2 minutes");
    }

    #[test]
    fn tuned_population_leads_speed_by_60_to_100_ms() {
        let p = SimParams { minutes: 4.0, seed: 4, array_seed: 0, channels: 96 };
        let rec = simulate_reach(&p);
        let neurons = reach_neurons(&mut SimRng::new(p.array_seed, STREAM_NEURONS), p.channels);
        let tuned: Vec<usize> = (0..neurons.len()).filter(|&c| neurons[c].weights != [0.0, 0.0]).collect();
        let pop: Vec<f64> =
            (0..rec.n_bins()).map(|t| tuned.iter().map(|&c| f64::from(rec.spikes.get(t, c))).sum()).collect();
        let b = rec.behavior.as_ref().unwrap();
        let speed: Vec<f64> = (0..rec.n_bins()).map(|t| f64::from(b.get(t, 0)).hypot(f64::from(b.get(t, 1)))).collect();
        let (lag, r) = peak_lag(&speed, &pop, 15);
        assert!((-5..=-3).contains(&lag), "peak at lag {lag} bins (r = {r})");
        assert!(r > 0.3, "weak speed coupling r = {r}");
    }

    /// Ridge regression from causally smoothed features to behaviour, fit on
    /// the first 80 % and scored (mean R² over outputs) on the rest.
    fn held_out_r2(rec: &Recording, transform: impl Fn(f64) -> f64) -> f64 {
        let (t, c) = (rec.n_bins(), rec.n_channels());
        let b = rec.behavior.as_ref().unwrap();
        let k = b.cols;
        let d = c + 1;
        let mut x = vec![0.0; t * d];
        let mut acc = vec![0.0; c];
        for i in 0..t {
            for j in 0..c {
                acc[j] = 0.8 * acc[j] + 0.2 * f64::from(rec.spikes.get(i, j));
                x[i * d + j] = transform(acc[j]);
            }
            x[i * d + c] = 1.0;
        }
        let split = t * 4 / 5;
        let mut a = vec![0.0; d * d];
        let mut rhs = vec![0.0; d * k];
        for i in 0..split {
            let xi = &x[i * d..(i + 1) * d];
            for p in 0..d {
                for q in 0..d {
                    a[p * d + q] += xi[p] * xi[q];
                }
                for o in 0..k {
                    rhs[p * k + o] += xi[p] * f64::from(b.get(i, o));
                }
            }
        }
        for p in 0..d {
            a[p * d + p] += 1.0;
        }
        // Gaussian elimination (a is symmetric positive definite).
        for col in 0..d {
            let piv = a[col * d + col];
            for row in col + 1..d {
                let f = a[row * d + col] / piv;
                for m in col..d {
                    a[row * d + m] -= f * a[col * d + m];
                }
                for o in 0..k {
                    rhs[row * k + o] -= f * rhs[col * k + o];
                }
            }
        }
        let mut w = vec![0.0; d * k];
        for row in (0..d).rev() {
            for o in 0..k {
                let s: f64 = (row + 1..d).map(|m| a[row * d + m] * w[m * k + o]).sum();
                w[row * k + o] = (rhs[row * k + o] - s) / a[row * d + row];
            }
        }
        let mut total = 0.0;
        for o in 0..k {
            let ys: Vec<f64> = (split..t).map(|i| f64::from(b.get(i, o))).collect();
            let (_, v) = mean_var(&ys);
            let sse: f64 = (split..t)
                .map(|i| {
                    let pred: f64 = (0..d).map(|p| x[i * d + p] * w[p * k + o]).sum();
                    (f64::from(b.get(i, o)) - pred).powi(2)
                })
                .sum();
            total += 1.0 - sse / (v * ys.len() as f64);
        }
        total / k as f64
    }

    #[test]
    fn reach_is_decodable_linearly_but_better_nonlinearly() {
        let rec = simulate_reach(&SimParams { minutes: 8.0, seed: 1, array_seed: 0, channels: 96 });
        let linear = held_out_r2(&rec, |x| x);
        let log = held_out_r2(&rec, |x| (x + 0.05).ln());
        assert!((0.55..0.8).contains(&linear), "linear R² {linear}");
        assert!(log > linear + 0.05, "log-feature R² {log} vs linear {linear}");
    }

    #[test]
    fn lorenz_derivative_and_rk4_are_right() {
        assert_eq!(lorenz_deriv([1.0, 2.0, 3.0]), [10.0, 23.0, 2.0 - 8.0]);
        // RK4 at the production step against 20× finer steps over 0.5 time units.
        let start = [1.0, 2.0, 20.0];
        let (mut coarse, mut fine) = (start, start);
        for _ in 0..100 {
            coarse = rk4_step(coarse, LORENZ_DT);
        }
        for _ in 0..2000 {
            fine = rk4_step(fine, LORENZ_DT / 20.0);
        }
        for i in 0..3 {
            assert!((coarse[i] - fine[i]).abs() < 1e-4, "dim {i}: {} vs {}", coarse[i], fine[i]);
        }
    }

    #[test]
    fn lorenz_behaviour_is_z_scored_and_neurons_see_it() {
        let rec = simulate_lorenz(&SimParams { minutes: 20.0, seed: 8, array_seed: 0, channels: 24 });
        let b = rec.behavior.as_ref().unwrap();
        for c in 0..3 {
            let col: Vec<f64> = b.col(c).iter().map(|&x| f64::from(x)).collect();
            let (m, v) = mean_var(&col);
            assert!(m.abs() < 0.15 && (v.sqrt() - 1.0).abs() < 0.1, "dim {c}: mean {m}, sd {}", v.sqrt());
        }
        let r2 = held_out_r2(&rec, |x| (x + 0.05).ln());
        assert!(r2 > 0.5, "Lorenz state poorly encoded: R² {r2}");
    }
}
