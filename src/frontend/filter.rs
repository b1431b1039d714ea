//! Band-pass design and the biquad cascade.
//!
//! [`bandpass_sos`] designs a digital Butterworth band-pass exactly the way
//! `scipy.signal.butter(order, [low, high], btype='bandpass', fs=rate,
//! output='sos')` does: analogue prototype poles, low-pass to band-pass
//! transform, bilinear transform with pre-warped edges, and scipy's
//! `zpk2sos(pairing='nearest')` grouping of poles and zeros into sections
//! (the pole pair nearest the unit circle goes to the last section, each
//! paired with its nearest zeros; the overall gain sits in the first
//! section). Design is in `f64`; coefficients agree with scipy to ~1e-12.
//!
//! [`Cascade`] runs the sections on one channel in `f32` as transposed
//! direct form II. [`run_section_lanes`] is the same arithmetic on
//! [`LANES`] channels at once (channels are the vector lanes), so a channel
//! filtered in a lane bank is bit-identical to the same channel filtered by a
//! [`Cascade`]: each output depends only on the section's coefficients, its
//! two state values and the input sequence, never on how the work is split.

/// Channels processed together as vector lanes.
pub const LANES: usize = 8;

/// One second-order section in `f32`, normalised so that `a0 = 1`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Section {
    /// Numerator `b0, b1, b2`.
    pub b: [f32; 3],
    /// Denominator `a1, a2` (`a0` is 1).
    pub a: [f32; 2],
    /// DC gain `H(1)` in `f64`, used to start the state at a steady level.
    dc_gain: f64,
    /// The section in `f64`, kept for the steady-state start.
    sos: [f64; 6],
}

impl Section {
    /// The section for one row `b0 b1 b2 a0 a1 a2` of an sos matrix.
    pub fn from_sos(row: &[f64; 6]) -> Section {
        let a0 = row[3];
        let n = [row[0] / a0, row[1] / a0, row[2] / a0, 1.0, row[4] / a0, row[5] / a0];
        let den = n[3] + n[4] + n[5];
        let dc_gain = if den == 0.0 { 0.0 } else { (n[0] + n[1] + n[2]) / den };
        Section { b: [n[0] as f32, n[1] as f32, n[2] as f32], a: [n[4] as f32, n[5] as f32], dc_gain, sos: n }
    }

    /// One sample through the section; `s` is the two-value state.
    #[inline(always)]
    pub fn step(&self, s: &mut [f32; 2], x: f32) -> f32 {
        let y = self.b[0] * x + s[0];
        s[0] = self.b[1] * x - self.a[0] * y + s[1];
        s[1] = self.b[2] * x - self.a[1] * y;
        y
    }

    /// The state this section holds after a long constant input `x`, and
    /// its (constant) output.
    fn steady(&self, x: f64) -> ([f32; 2], f64) {
        let y = self.dc_gain * x;
        let [_, b1, b2, _, a1, a2] = self.sos;
        let s1 = b2 * x - a2 * y;
        let s0 = b1 * x - a1 * y + s1;
        ([s0 as f32, s1 as f32], y)
    }
}

/// A cascade of biquads filtering one channel, state carried across calls.
#[derive(Debug, Clone, PartialEq)]
pub struct Cascade {
    sections: Vec<Section>,
    state: Vec<[f32; 2]>,
}

impl Cascade {
    /// A cascade for an sos matrix (rows `b0 b1 b2 a0 a1 a2`), zero state.
    pub fn new(sos: &[[f64; 6]]) -> Cascade {
        let sections: Vec<Section> = sos.iter().map(Section::from_sos).collect();
        let state = vec![[0.0; 2]; sections.len()];
        Cascade { sections, state }
    }

    /// The sections, first applied first.
    pub fn sections(&self) -> &[Section] {
        &self.sections
    }

    /// Zero state (what `scipy.signal.sosfilt` starts from).
    pub fn reset(&mut self) {
        self.state.iter_mut().for_each(|s| *s = [0.0; 2]);
    }

    /// The state after a long constant input `x`: starting a stream here
    /// avoids the step response to the electrode's DC offset.
    pub fn settle(&mut self, x: f32) {
        let states = steady_states(&self.sections, x);
        self.state.iter_mut().zip(states).for_each(|(s, v)| *s = v);
    }

    /// Filters one sample.
    pub fn step(&mut self, x: f32) -> f32 {
        self.sections.iter().zip(self.state.iter_mut()).fold(x, |v, (sec, s)| sec.step(s, v))
    }

    /// Filters `x` in place.
    pub fn run(&mut self, x: &mut [f32]) {
        for (sec, s) in self.sections.iter().zip(self.state.iter_mut()) {
            for v in x.iter_mut() {
                *v = sec.step(s, *v);
            }
        }
    }
}

/// Steady states of every section of a cascade for a constant input `x`.
pub(crate) fn steady_states(sections: &[Section], x: f32) -> impl Iterator<Item = [f32; 2]> + '_ {
    let mut v = f64::from(x);
    sections.iter().map(move |sec| {
        let (s, y) = sec.steady(v);
        v = y;
        s
    })
}

/// Runs one section over `m` samples of a lane group stored sample-major
/// (`data[i * LANES + l]`), in place; `s` holds the lanes' two state values.
pub(crate) fn run_section_lanes(sec: &Section, s: &mut [[f32; LANES]; 2], data: &mut [f32]) {
    let (b0, b1, b2, a1, a2) = (sec.b[0], sec.b[1], sec.b[2], sec.a[0], sec.a[1]);
    let mut s0 = s[0];
    let mut s1 = s[1];
    for x in data.chunks_exact_mut(LANES) {
        let x: &mut [f32; LANES] = x.try_into().expect("invariant: chunks_exact yields LANES values");
        for l in 0..LANES {
            let xi = x[l];
            let y = b0 * xi + s0[l];
            s0[l] = b1 * xi - a1 * y + s1[l];
            s1[l] = b2 * xi - a2 * y;
            x[l] = y;
        }
    }
    *s = [s0, s1];
}

/// A complex number, only what the design needs.
#[derive(Debug, Clone, Copy, PartialEq)]
struct C64 {
    re: f64,
    im: f64,
}

impl C64 {
    fn new(re: f64, im: f64) -> C64 {
        C64 { re, im }
    }
    fn add(self, o: C64) -> C64 {
        C64::new(self.re + o.re, self.im + o.im)
    }
    fn sub(self, o: C64) -> C64 {
        C64::new(self.re - o.re, self.im - o.im)
    }
    fn mul(self, o: C64) -> C64 {
        C64::new(self.re * o.re - self.im * o.im, self.re * o.im + self.im * o.re)
    }
    fn scale(self, k: f64) -> C64 {
        C64::new(self.re * k, self.im * k)
    }
    fn div(self, o: C64) -> C64 {
        let d = o.re * o.re + o.im * o.im;
        C64::new((self.re * o.re + self.im * o.im) / d, (self.im * o.re - self.re * o.im) / d)
    }
    fn abs(self) -> f64 {
        self.re.hypot(self.im)
    }
    /// Principal square root.
    fn sqrt(self) -> C64 {
        let r = self.abs();
        let re = ((r + self.re) / 2.0).max(0.0).sqrt();
        let im = ((r - self.re) / 2.0).max(0.0).sqrt();
        C64::new(re, if self.im < 0.0 { -im } else { im })
    }
}

/// Second-order sections (rows `b0 b1 b2 a0 a1 a2`) of a digital
/// Butterworth band-pass of `order` per side (`order` sections), as scipy
/// designs it. The caller checks `0 < low < high < rate / 2` and that
/// `order` is even and ≥ 2.
pub fn bandpass_sos(order: usize, low_hz: f64, high_hz: f64, rate_hz: f64) -> Vec<[f64; 6]> {
    let n = order;
    // Pre-warped edges, scipy's convention: fs = 2 after normalising to Nyquist.
    let warp = |f: f64| 4.0 * (std::f64::consts::PI * (2.0 * f / rate_hz) / 2.0).tan();
    let (w_lo, w_hi) = (warp(low_hz), warp(high_hz));
    let bw = w_hi - w_lo;
    let wo2 = C64::new(w_lo * w_hi, 0.0);
    let mut poles = Vec::with_capacity(2 * n);
    let mut bp_minus = Vec::with_capacity(n);
    for m in (0..n).map(|i| -(n as f64) + 1.0 + 2.0 * i as f64) {
        let theta = std::f64::consts::PI * m / (2.0 * n as f64);
        let p = C64::new(-theta.cos(), -theta.sin()).scale(bw / 2.0);
        let root = p.mul(p).sub(wo2).sqrt();
        poles.push(p.add(root));
        bp_minus.push(p.sub(root));
    }
    poles.extend(bp_minus);
    // Bilinear transform (fs2 = 4): n zeros at s = 0 map to z = +1, the n at infinity to z = -1.
    let four = C64::new(4.0, 0.0);
    let mut gain = C64::new(bw.powi(n as i32) * 4f64.powi(n as i32), 0.0);
    let zpoles: Vec<C64> = poles
        .iter()
        .map(|&p| {
            gain = gain.div(four.sub(p));
            four.add(p).div(four.sub(p))
        })
        .collect();
    let mut sos = pair_sections(&zpoles, n);
    for v in &mut sos[0][..3] {
        *v *= gain.re;
    }
    sos
}

/// scipy's `zpk2sos` with `pairing='nearest'` for `2n` complex poles (in
/// conjugate pairs) and zeros `n × (+1)`, `n × (-1)`; unit gain.
fn pair_sections(zpoles: &[C64], n: usize) -> Vec<[f64; 6]> {
    let tol = 100.0 * f64::EPSILON;
    let mut upper: Vec<C64> = upper_half(zpoles, tol);
    let mut zeros: Vec<f64> = std::iter::repeat_n(-1.0, n).chain(std::iter::repeat_n(1.0, n)).collect();
    let mut sos = vec![[0.0; 6]; n];
    for si in (0..n).rev() {
        let worst = (0..upper.len())
            .min_by(|&i, &j| (1.0 - upper[i].abs()).abs().total_cmp(&(1.0 - upper[j].abs()).abs()))
            .expect("invariant: one pole pair per remaining section");
        let p = upper.remove(worst);
        let z1 = zeros.remove(nearest_zero(&zeros, p));
        let z2 = zeros.remove(nearest_zero(&zeros, p));
        sos[si] = [1.0, -(z1 + z2), z1 * z2, 1.0, -2.0 * p.re, p.re * p.re + p.im * p.im];
    }
    sos
}

/// The upper-half member of each conjugate pair, averaged with its partner
/// and ordered as scipy's `_cplxreal` orders them (by real part, then |imag|).
fn upper_half(poles: &[C64], tol: f64) -> Vec<C64> {
    let mut up: Vec<C64> = poles.iter().copied().filter(|p| p.im > tol * p.abs()).collect();
    let mut down: Vec<C64> = poles.iter().copied().filter(|p| p.im < -tol * p.abs()).collect();
    let key = |a: &C64, b: &C64| a.re.total_cmp(&b.re).then(a.im.abs().total_cmp(&b.im.abs()));
    up.sort_by(key);
    down.sort_by(key);
    up.iter().zip(&down).map(|(u, d)| C64::new((u.re + d.re) / 2.0, (u.im - d.im) / 2.0)).collect()
}

/// Index of the zero nearest `p` (first among equals, as a stable argsort).
fn nearest_zero(zeros: &[f64], p: C64) -> usize {
    (0..zeros.len())
        .min_by(|&i, &j| C64::new(zeros[i], 0.0).sub(p).abs().total_cmp(&C64::new(zeros[j], 0.0).sub(p).abs()))
        .expect("invariant: two zeros per remaining section")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(sos: &[[f64; 6]], f_hz: f64, rate: f64) -> f64 {
        let w = 2.0 * std::f64::consts::PI * f_hz / rate;
        let z1 = C64::new(w.cos(), -w.sin()); // z^-1
        let z2 = z1.mul(z1);
        sos.iter().fold(1.0, |acc, r| {
            let num = C64::new(r[0], 0.0).add(z1.scale(r[1])).add(z2.scale(r[2]));
            let den = C64::new(r[3], 0.0).add(z1.scale(r[4])).add(z2.scale(r[5]));
            acc * num.div(den).abs()
        })
    }

    #[test]
    fn butterworth_is_minus_3db_at_both_edges_and_flat_in_the_band() {
        for order in [2, 4, 6, 8] {
            let sos = bandpass_sos(order, 250.0, 5000.0, 30000.0);
            assert_eq!(sos.len(), order);
            let half = std::f64::consts::FRAC_1_SQRT_2;
            assert!((response(&sos, 250.0, 30000.0) - half).abs() < 1e-9, "order {order}");
            assert!((response(&sos, 5000.0, 30000.0) - half).abs() < 1e-9, "order {order}");
            // Mid-band (geometric centre of the edges) the gain is ~1.
            let centre = (250.0f64 * 5000.0).sqrt();
            assert!(response(&sos, centre, 30000.0) > 0.99, "order {order}");
            // Two octaves and more below the band: at least order × 12 dB down.
            let stop = response(&sos, 250.0 / 4.0, 30000.0);
            assert!(stop < 4f64.powi(-(order as i32)) * 1.01, "order {order}: {stop}");
        }
    }

    #[test]
    fn lanes_match_the_single_channel_cascade_bit_for_bit() {
        let sos = bandpass_sos(4, 300.0, 6000.0, 25000.0);
        let m = 97;
        let input: Vec<f32> = (0..m * LANES).map(|i| ((i * 7919 % 1013) as f32 - 500.0) * 0.37).collect();
        let mut lanes = input.clone();
        let cascade = Cascade::new(&sos);
        for sec in cascade.sections() {
            let mut s = [[0.0; LANES]; 2];
            run_section_lanes(sec, &mut s, &mut lanes);
        }
        for l in 0..LANES {
            let mut c = cascade.clone();
            for i in 0..m {
                assert_eq!(c.step(input[i * LANES + l]).to_bits(), lanes[i * LANES + l].to_bits());
            }
        }
    }

    #[test]
    fn settled_cascade_outputs_zero_for_its_constant_input() {
        let mut c = Cascade::new(&bandpass_sos(4, 250.0, 5000.0, 30000.0));
        c.settle(1500.0);
        let worst = (0..3000).map(|_| c.step(1500.0).abs()).fold(0.0f32, f32::max);
        assert!(worst < 0.05, "steady start still rings: {worst}");
        let mut cold = Cascade::new(&bandpass_sos(4, 250.0, 5000.0, 30000.0));
        let ring = (0..3000).map(|_| cold.step(1500.0).abs()).fold(0.0f32, f32::max);
        assert!(ring > 10.0, "a cold start should ring: {ring}");
    }
}
