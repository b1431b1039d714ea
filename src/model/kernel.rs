//! The per-bin streaming update (MODEL.md, "Streaming inference") as tight
//! `f32` loops over exported weights. This is what `eval`, replay and the
//! daemon run for every bin; candle is used only for training.
//!
//! Invariants: after [`StepKernel::new`] no method allocates, locks or logs;
//! the state is exactly `zhat_{t-1}` plus the preprocessor's causal history,
//! so two kernels fed the same bins produce bit-identical outputs.
//!
//! `unsafe` here: calling the AVX2 build of the dense layer, only after the
//! CPU was checked to support it.
#![allow(unsafe_code)]

use super::preprocess::Preprocessor;
use super::spec::{Activation, Mode};
use super::weights::{Dense, MlpWeights, Model};

/// Outputs held in registers while streaming through a layer's weights:
/// wide layers use `WIDE` (enough independent sums to keep the vector units
/// busy), narrow ones `NARROW` (less zero padding).
const WIDE: usize = 64;
const NARROW: usize = 8;

/// `tanh` as a rational minimax approximation (odd degree-13 numerator over
/// even degree-6 denominator, clamped at |x| = 7.9); max abs error < 2e-6 and
/// vectorisable, unlike libm's `tanhf`.
#[inline(always)]
pub fn fast_tanh(x: f32) -> f32 {
    const A1: f32 = 4.893_524_6e-3;
    const A3: f32 = 6.372_619e-4;
    const A5: f32 = 1.485_722_4e-5;
    const A7: f32 = 5.122_297e-8;
    const A9: f32 = -8.604_672e-11;
    const A11: f32 = 2.000_188e-13;
    const A13: f32 = -2.760_768_5e-16;
    const B0: f32 = 4.893_525e-3;
    const B2: f32 = 2.268_434_7e-3;
    const B4: f32 = 1.185_347e-4;
    const B6: f32 = 1.198_258_4e-6;
    let x = x.clamp(-7.905_311, 7.905_311);
    let x2 = x * x;
    let mut p = A13;
    p = p * x2 + A11;
    p = p * x2 + A9;
    p = p * x2 + A7;
    p = p * x2 + A5;
    p = p * x2 + A3;
    p = p * x2 + A1;
    p *= x;
    let mut q = B6;
    q = q * x2 + B4;
    q = q * x2 + B2;
    q = q * x2 + B0;
    p / q
}

#[inline]
fn activate(act: Activation, v: &mut [f32]) {
    match act {
        Activation::Tanh => v.iter_mut().for_each(|x| *x = fast_tanh(*x)),
        Activation::Relu => v.iter_mut().for_each(|x| *x = x.max(0.0)),
    }
}

/// A dense layer repacked for streaming: weights grouped by blocks of
/// `block` outputs, each block stored input-major and contiguous
/// (`blocks[(blk * in_dim + i) * block + k]`), outputs zero-padded to a whole
/// block. The forward pass then reads memory strictly sequentially.
#[derive(Debug, Clone)]
pub struct PackedDense {
    in_dim: usize,
    out_dim: usize,
    block: usize,
    /// The CPU has AVX2 (checked once, when the layer is packed).
    avx2: bool,
    blocks: Vec<f32>,
    bias: Vec<f32>,
}

impl PackedDense {
    /// Repacks an input-major layer.
    pub fn pack(d: &Dense) -> Self {
        let block = if d.out_dim >= WIDE / 2 { WIDE } else { NARROW };
        let nb = d.out_dim.div_ceil(block);
        let mut blocks = vec![0f32; nb * d.in_dim * block];
        let mut bias = vec![0f32; nb * block];
        for j in 0..d.out_dim {
            let (blk, k) = (j / block, j % block);
            bias[j] = d.b[j];
            for i in 0..d.in_dim {
                blocks[(blk * d.in_dim + i) * block + k] = d.w[i * d.out_dim + j];
            }
        }
        Self { in_dim: d.in_dim, out_dim: d.out_dim, block, avx2: cpu_has_avx2(), blocks, bias }
    }

    /// `out[..out_dim] = x W + b`. Each output is summed in input order
    /// whatever the block or instruction set, so the result is the same bit
    /// for bit with or without AVX2; AVX2 only holds more outputs per
    /// instruction.
    #[inline]
    pub fn forward(&self, x: &[f32], out: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        if self.avx2 {
            // SAFETY: `avx2` is true only when the CPU supports AVX2 (`pack`).
            return unsafe { self.forward_avx2(x, out) };
        }
        self.forward_portable(x, out)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn forward_avx2(&self, x: &[f32], out: &mut [f32]) {
        self.forward_portable(x, out)
    }

    #[inline(always)]
    fn forward_portable(&self, x: &[f32], out: &mut [f32]) {
        match self.block {
            WIDE => self.forward_blocks::<WIDE>(x, out),
            _ => self.forward_blocks::<NARROW>(x, out),
        }
    }

    #[inline(always)]
    fn forward_blocks<const B: usize>(&self, x: &[f32], out: &mut [f32]) {
        let x = &x[..self.in_dim];
        for (blk, w) in self.blocks.chunks_exact(self.in_dim * B).enumerate() {
            let mut acc: [f32; B] =
                self.bias[blk * B..(blk + 1) * B].try_into().expect("invariant: bias padded to blocks");
            for (xi, wrow) in x.iter().zip(w.chunks_exact(B)) {
                for k in 0..B {
                    acc[k] += xi * wrow[k];
                }
            }
            let start = blk * B;
            let n = B.min(self.out_dim - start);
            out[start..start + n].copy_from_slice(&acc[..n]);
        }
    }
}

fn cpu_has_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// An MLP packed for streaming (see [`PackedDense`]).
#[derive(Debug, Clone)]
pub struct PackedMlp {
    layers: Vec<PackedDense>,
}

impl PackedMlp {
    /// Repacks every layer.
    pub fn pack(net: &MlpWeights) -> Self {
        Self { layers: net.layers.iter().map(PackedDense::pack).collect() }
    }
}

/// Runs a packed MLP on `x` into `out`, using two scratch buffers of at
/// least the widest layer's width.
pub fn mlp_forward(net: &PackedMlp, act: Activation, x: &[f32], out: &mut [f32], sa: &mut [f32], sb: &mut [f32]) {
    let last = net.layers.len() - 1;
    for (i, layer) in net.layers.iter().enumerate() {
        let n = layer.out_dim;
        if i == last {
            let src: &[f32] = if i == 0 {
                x
            } else if i % 2 == 1 {
                &sa[..]
            } else {
                &sb[..]
            };
            layer.forward(src, &mut out[..n]);
        } else if i == 0 {
            layer.forward(x, &mut sa[..n]);
            activate(act, &mut sa[..n]);
        } else if i % 2 == 1 {
            layer.forward(sa, &mut sb[..n]);
            activate(act, &mut sb[..n]);
        } else {
            layer.forward(sb, &mut sa[..n]);
            activate(act, &mut sa[..n]);
        }
    }
}

/// Streaming alternator state for one stream.
#[derive(Debug, Clone)]
pub struct StepKernel {
    model: Model,
    ftn: PackedMlp,
    otn: PackedMlp,
    pre: Preprocessor,
    c1: f32,
    c2: f32,
    cx: f32,
    z: Vec<f32>,
    u: Vec<f32>,
    xin: Vec<f32>,
    xpred: Vec<f32>,
    sa: Vec<f32>,
    sb: Vec<f32>,
    track_prediction: bool,
    last_error: f32,
}

impl StepKernel {
    /// A kernel at `zhat_0 = 0` with empty history. The model must have passed
    /// [`Model::check_shapes`] (model files do on load).
    pub fn new(model: Model) -> Self {
        let s = &model.spec;
        let width = model.ftn.max_width().max(model.otn.max_width());
        Self {
            pre: Preprocessor::new(s, &model.stats),
            c1: s.c1(),
            c2: s.c2(),
            cx: s.cx(),
            z: vec![0.0; s.dz],
            u: vec![0.0; s.dz],
            xin: vec![0.0; s.dx_in()],
            xpred: vec![0.0; s.channels],
            sa: vec![0.0; width],
            sb: vec![0.0; width],
            track_prediction: false,
            last_error: f32::NAN,
            ftn: PackedMlp::pack(&model.ftn),
            otn: PackedMlp::pack(&model.otn),
            model,
        }
    }

    /// Input channels per bin.
    pub fn channels(&self) -> usize {
        self.model.spec.channels
    }

    /// Output values per bin (behaviour dims, or latent dims in latent mode).
    pub fn out_dim(&self) -> usize {
        self.model.spec.dz
    }

    /// When on, every observed step also computes the OTN's prediction of the
    /// bin before seeing it, giving [`Self::last_prediction_error`] (costs one
    /// OTN pass per bin).
    pub fn set_track_prediction(&mut self, on: bool) {
        self.track_prediction = on;
    }

    /// Back to `zhat = 0` and an empty history.
    pub fn reset(&mut self) {
        self.z.iter_mut().for_each(|v| *v = 0.0);
        self.pre.reset();
        self.last_error = f32::NAN;
    }

    /// The latent state `zhat_t` (normalised units).
    pub fn latent(&self) -> &[f32] {
        &self.z
    }

    /// Replaces the latent state (e.g. carried over to a new model).
    pub fn set_latent(&mut self, z: &[f32]) {
        self.z.copy_from_slice(z);
    }

    /// `||x_t - xhat_t||` (normalised units, RMS over channels) of the last
    /// observed step, when prediction tracking is on; NaN otherwise.
    pub fn last_prediction_error(&self) -> f32 {
        self.last_error
    }

    fn predict_x(&mut self) {
        mlp_forward(&self.otn, self.model.spec.activation, &self.z, &mut self.xpred, &mut self.sa, &mut self.sb);
        let cx = self.cx;
        self.xpred.iter_mut().for_each(|v| *v *= cx);
    }

    fn ftn_update(&mut self, out: &mut [f32]) {
        self.ftn_advance();
        self.write_output(out);
    }

    /// `zhat_t = c1 g(X_t) + c2 zhat_{t-1}` with `X_t` from the preprocessor.
    fn ftn_advance(&mut self) {
        self.pre.stacked_into(&mut self.xin);
        mlp_forward(&self.ftn, self.model.spec.activation, &self.xin, &mut self.u, &mut self.sa, &mut self.sb);
        for (z, u) in self.z.iter_mut().zip(&self.u) {
            *z = self.c1 * u + self.c2 * *z;
        }
    }

    fn write_output(&self, out: &mut [f32]) {
        write_output(&self.model, &self.z, out);
    }

    /// One observed bin (`channels` raw values) → `out` (`out_dim` values, behaviour units).
    pub fn step(&mut self, raw: &[f32], out: &mut [f32]) {
        if self.track_prediction {
            self.predict_x();
        }
        self.pre.push_observed(raw);
        if self.track_prediction {
            let cur = self.pre.current();
            let mut s = 0.0;
            for (a, b) in cur.iter().zip(&self.xpred) {
                s += (a - b) * (a - b);
            }
            self.last_error = (s / cur.len() as f32).sqrt();
        }
        self.ftn_update(out);
    }

    /// One missing bin: impute `xhat_t = sqrt(1-sigma_x^2) f(zhat_{t-1})`, then
    /// the FTN update on it.
    pub fn step_missing(&mut self, out: &mut [f32]) {
        self.predict_x();
        self.pre.push_imputed(&self.xpred);
        self.ftn_update(out);
    }

    /// Feeds an observed bin into the preprocessing history only (smoothing
    /// and stacked lags) without touching the latent state: used to give a
    /// swapped-in model the recent past while carrying `zhat` over.
    pub fn prime(&mut self, raw: &[f32]) {
        self.pre.push_observed(raw);
    }

    /// Decodes every row of `raw` (all observed) from the current state,
    /// returning `[T, out_dim]`. This is offline evaluation: the same steps
    /// the daemon runs per bin.
    pub fn decode_matrix(&mut self, raw: &crate::matrix::Matrix) -> crate::matrix::Matrix {
        let mut out = crate::matrix::Matrix::zeros(raw.rows, self.out_dim());
        for t in 0..raw.rows {
            self.step(raw.row(t), out.row_mut(t));
        }
        out
    }

    /// Forecast of the next bin (normalised units, `channels` values) from the
    /// current state, without advancing it.
    pub fn forecast_next(&mut self, out: &mut [f32]) {
        self.predict_x();
        out.copy_from_slice(&self.xpred);
    }

    /// The kernel's one-step prediction of the output (behaviour units in
    /// decoding mode): what [`Self::step_missing`] would publish for the next
    /// bin, `c1 g([xhat_{t+1}, x_t, …]) + c2 zhat_t` with `xhat_{t+1}` from
    /// [`Self::forecast_next`], computed without advancing the state.
    pub fn forecast_output_next(&mut self, out: &mut [f32]) {
        self.predict_x();
        self.pre.stacked_into(&mut self.xin);
        let c = self.model.spec.channels;
        let n = self.xin.len();
        // The prediction becomes the newest slot; the older lags shift by one.
        self.xin.copy_within(0..n - c, c);
        self.xin[..c].copy_from_slice(&self.xpred);
        mlp_forward(&self.ftn, self.model.spec.activation, &self.xin, &mut self.u, &mut self.sa, &mut self.sb);
        for ((o, z), u) in out.iter_mut().zip(&self.z).zip(&self.u) {
            *o = self.c1 * u + self.c2 * z;
        }
        let dz = self.z.len();
        scale_output(&self.model, &mut out[..dz]);
    }

    /// One step of the generative process (MODEL.md, "Generative process"):
    /// `x_t = cx f(zhat_{t-1}) + sigma_x eps_x` enters the history as an
    /// imputed bin, then `zhat_t = c1 g(X_t) + c2 zhat_{t-1} + sigma_z eps_z`.
    /// Writes `x_t` (normalised, `channels` values) to `x_out` and the output
    /// (behaviour units in decoding mode) to `out`.
    pub fn step_generate(&mut self, eps_x: &[f32], eps_z: &[f32], x_out: &mut [f32], out: &mut [f32]) {
        self.predict_x();
        let sx = self.model.spec.sigma_x;
        self.xpred.iter_mut().zip(eps_x).for_each(|(x, e)| *x += sx * e);
        self.pre.push_imputed(&self.xpred);
        x_out.copy_from_slice(&self.xpred);
        self.ftn_advance();
        let sz = self.model.spec.sigma_z;
        self.z.iter_mut().zip(eps_z).for_each(|(z, e)| *z += sz * e);
        self.write_output(out);
    }

    /// Copies the streaming state (latent and preprocessing history) of
    /// `other`, a kernel of the same model, into this one.
    pub fn copy_state_from(&mut self, other: &StepKernel) {
        self.z.copy_from_slice(&other.z);
        self.pre.copy_state_from(&other.pre);
        self.last_error = other.last_error;
    }
}

/// `zhat` in output units: de-normalised behaviour (decoding) or as is (latent).
fn write_output(model: &Model, z: &[f32], out: &mut [f32]) {
    out[..z.len()].copy_from_slice(z);
    scale_output(model, &mut out[..z.len()]);
}

fn scale_output(model: &Model, v: &mut [f32]) {
    if model.spec.mode == Mode::Decoding {
        let st = &model.stats;
        for (j, x) in v.iter_mut().enumerate() {
            *x = *x * st.y_std[j] + st.y_mean[j];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_tanh_matches_libm() {
        let mut worst = 0f32;
        let mut x = -12.0f32;
        while x < 12.0 {
            worst = worst.max((fast_tanh(x) - x.tanh()).abs());
            x += 0.001;
        }
        assert!(worst < 2e-6, "max abs error {worst}");
    }

    #[test]
    fn packed_dense_equals_the_sequential_sum_bit_for_bit_for_every_width() {
        for out_dim in [3usize, 8, 16, 21, 31, 32, 40, 64, 100] {
            let in_dim = 37;
            let w: Vec<f32> = (0..in_dim * out_dim).map(|k| ((k * 7 % 11) as f32 - 5.0) * 0.113).collect();
            let b: Vec<f32> = (0..out_dim).map(|k| k as f32 * 0.017).collect();
            let d = Dense { in_dim, out_dim, w: w.clone(), b: b.clone() };
            let x: Vec<f32> = (0..in_dim).map(|i| (i as f32 * 0.37).sin()).collect();
            let packed = PackedDense::pack(&d);
            let (mut fast, mut portable) = (vec![0.0; out_dim], vec![0.0; out_dim]);
            packed.forward(&x, &mut fast);
            packed.forward_portable(&x, &mut portable);
            for j in 0..out_dim {
                let mut want = b[j];
                for i in 0..in_dim {
                    want += x[i] * w[i * out_dim + j];
                }
                assert_eq!(fast[j].to_bits(), want.to_bits(), "out {j} of {out_dim}: {} vs {want}", fast[j]);
                assert_eq!(portable[j].to_bits(), want.to_bits(), "portable out {j} of {out_dim}");
            }
        }
    }
}
