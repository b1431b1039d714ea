//! The alternator's two networks in candle, and the trajectory forward pass
//! and loss used for training (MODEL.md, "Training").
//!
//! The forward pass is batched over time: with teacher forcing the FTN sees
//! every observed bin at once, the z recursion
//! `zhat_t = c2 zhat_{t-1} + c1 u_t` (with `zhat_0 = 0`) is one product with
//! the lower-triangular matrix `L[t,k] = c2^(t-k)`, and the OTN then sees every
//! `zhat_{t-1}` at once. Autograd through these ops is exactly
//! backpropagation through the whole recursion; [`AlternatorNet::trajectory_unrolled`]
//! computes the same thing step by step and tests hold the two equal.

use candle_core::{CpuStorage, CustomOp1, DType, Device, Layout, Result, Shape, Tensor, Var};

use super::kernel::fast_tanh;
use super::spec::{Activation, Mode, ModelSpec};
use super::weights::{Dense, MlpWeights};
use crate::rng::Rng;

/// `tanh` with the streaming kernel's rational approximation
/// ([`fast_tanh`], max abs error < 2e-6): libm's `tanhf` took a fifth of a
/// training step, and training and streaming now share one activation.
/// Backward: `grad * (1 - y^2)` from the saved output `y`.
struct FastTanh;

impl CustomOp1 for FastTanh {
    fn name(&self) -> &'static str {
        "fast-tanh"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let src = storage.as_slice::<f32>()?;
        let Some((a, b)) = layout.contiguous_offsets() else {
            return Err(candle_core::Error::Msg("fast-tanh needs a contiguous input".into()));
        };
        let out: Vec<f32> = src[a..b].iter().map(|&x| fast_tanh(x)).collect();
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }

    fn bwd(&self, _arg: &Tensor, res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(grad_res.mul(&res.sqr()?.affine(-1.0, 1.0)?)?))
    }
}

/// A trainable MLP: weights `[in, out]`, biases `[out]`.
pub struct Net {
    layers: Vec<(Var, Var)>,
    act: Activation,
}

impl Net {
    /// PyTorch-style init: `U(-1/sqrt(in), 1/sqrt(in))` for weights and biases.
    pub fn init(widths: &[usize], act: Activation, rng: &mut Rng, dev: &Device) -> Result<Self> {
        let mut layers = Vec::new();
        for pair in widths.windows(2) {
            let (i, o) = (pair[0], pair[1]);
            let bound = 1.0 / (i as f64).sqrt();
            let w: Vec<f32> = (0..i * o).map(|_| ((rng.uniform() * 2.0 - 1.0) * bound) as f32).collect();
            let b: Vec<f32> = (0..o).map(|_| ((rng.uniform() * 2.0 - 1.0) * bound) as f32).collect();
            layers.push((
                Var::from_tensor(&Tensor::from_vec(w, (i, o), dev)?)?,
                Var::from_tensor(&Tensor::from_vec(b, o, dev)?)?,
            ));
        }
        Ok(Self { layers, act })
    }

    /// Trainable copy of exported weights.
    pub fn from_weights(w: &MlpWeights, act: Activation, dev: &Device) -> Result<Self> {
        let mut layers = Vec::new();
        for l in &w.layers {
            layers.push((
                Var::from_tensor(&Tensor::from_vec(l.w.clone(), (l.in_dim, l.out_dim), dev)?)?,
                Var::from_tensor(&Tensor::from_vec(l.b.clone(), l.out_dim, dev)?)?,
            ));
        }
        Ok(Self { layers, act })
    }

    /// `x`: `[N, in]` → `[N, out]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut h = x.clone();
        let last = self.layers.len() - 1;
        // The bias enters as the rank-1 product ones[N,1] · b[1,out]: its
        // gradient is then a matrix product too, where a broadcast add's
        // backward is a slow strided column sum (16% of a training step).
        let ones = Tensor::ones((x.dim(0)?, 1), DType::F32, x.device())?;
        for (i, (w, b)) in self.layers.iter().enumerate() {
            let bias = ones.matmul(&b.as_tensor().unsqueeze(0)?)?;
            h = (h.matmul(w.as_tensor())? + bias)?;
            if i != last {
                h = match self.act {
                    Activation::Tanh => h.contiguous()?.apply_op1(FastTanh)?,
                    Activation::Relu => h.relu()?,
                };
            }
        }
        Ok(h)
    }

    /// The trainable variables.
    pub fn vars(&self) -> Vec<Var> {
        self.layers.iter().flat_map(|(w, b)| [w.clone(), b.clone()]).collect()
    }

    /// Plain-`f32` copy of the current weights.
    pub fn export(&self) -> Result<MlpWeights> {
        let mut layers = Vec::new();
        for (w, b) in &self.layers {
            let (i, o) = w.as_tensor().dims2()?;
            layers.push(Dense {
                in_dim: i,
                out_dim: o,
                w: w.as_tensor().flatten_all()?.to_vec1::<f32>()?,
                b: b.as_tensor().to_vec1::<f32>()?,
            });
        }
        Ok(MlpWeights { layers })
    }
}

/// One training batch: `B` windows of `T` consecutive preprocessed bins.
pub struct Batch {
    /// FTN inputs `[B, T, C (h+1)]`.
    pub x_stack: Tensor,
    /// Present normalised bins `[B, T, C]` (OTN targets).
    pub x_cur: Tensor,
    /// Normalised behaviour `[B, T, Dz]` (decoding mode).
    pub z: Option<Tensor>,
    /// 1 where behaviour is labelled, `[B, T, 1]` (decoding mode).
    pub z_mask: Option<Tensor>,
    /// Feature noise `eps_z` `[B, T, Dz]` for noisy training (None: deterministic).
    pub noise: Option<Tensor>,
    /// Element counts the squared errors are divided by, when this batch is
    /// one shard of a larger one (None: this batch's own counts).
    pub norm: Option<LossNorm>,
}

/// The element counts of a whole batch, for a shard's loss: with them the
/// shards' losses (and gradients) add up to the whole batch's.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LossNorm {
    /// `B * T * C` of the whole batch.
    pub x_elems: f64,
    /// Labelled bins of the whole batch (at least 1) times `Dz`.
    pub z_elems: f64,
}

/// Loss weights `lambda_x`, `lambda_z`.
#[derive(Debug, Clone, Copy)]
pub struct LossWeights {
    pub lambda_x: f64,
    pub lambda_z: f64,
}

/// The loss and its two (unweighted) parts.
pub struct LossParts {
    pub total: Tensor,
    /// `mean_t ||x_t - sqrt(1-sx^2) f(zhat_{t-1})||^2 / Dx` (per-element mean).
    pub x_mse: Tensor,
    /// `mean_t ||z_t - zhat_t||^2 / Dz` over labelled bins (decoding mode).
    pub z_mse: Option<Tensor>,
}

/// OTN + FTN with the model's constants.
pub struct AlternatorNet {
    pub spec: ModelSpec,
    pub ftn: Net,
    pub otn: Net,
    dev: Device,
}

/// `L[t,k] = c2^(t-k)` for `k <= t`, else 0.
pub fn decay_matrix(t: usize, c2: f32, dev: &Device) -> Result<Tensor> {
    let mut m = vec![0f32; t * t];
    for i in 0..t {
        let mut p = 1.0f32;
        for k in (0..=i).rev() {
            m[i * t + k] = p;
            p *= c2;
        }
    }
    Tensor::from_vec(m, (t, t), dev)
}

impl AlternatorNet {
    /// Fresh networks for `spec`, initialised from `seed`.
    pub fn init(spec: &ModelSpec, seed: u64, dev: &Device) -> Result<Self> {
        let mut rng = Rng::new(seed);
        let (ftn_w, otn_w) = (spec.ftn_widths(), spec.otn_widths());
        Ok(Self {
            spec: spec.clone(),
            ftn: Net::init(&ftn_w, spec.activation, &mut rng, dev)?,
            otn: Net::init(&otn_w, spec.activation, &mut rng, dev)?,
            dev: dev.clone(),
        })
    }

    /// Trainable networks holding exported weights (fine-tuning, tests).
    pub fn from_weights(spec: &ModelSpec, ftn: &MlpWeights, otn: &MlpWeights, dev: &Device) -> Result<Self> {
        Ok(Self {
            spec: spec.clone(),
            ftn: Net::from_weights(ftn, spec.activation, dev)?,
            otn: Net::from_weights(otn, spec.activation, dev)?,
            dev: dev.clone(),
        })
    }

    /// All trainable variables (FTN then OTN).
    pub fn vars(&self) -> Vec<Var> {
        let mut v = self.ftn.vars();
        v.extend(self.otn.vars());
        v
    }

    /// Teacher-forced trajectory, batched over time. Returns
    /// `zhat [B, T, Dz]` and the OTN's predictions `xhat [B, T, C]` where
    /// `xhat_t = sqrt(1-sx^2) f(zhat_{t-1})` with `zhat_0 = 0` before the window.
    pub fn trajectory(&self, x_stack: &Tensor, noise: Option<&Tensor>) -> Result<(Tensor, Tensor)> {
        let (b, t, dx) = x_stack.dims3()?;
        let dz = self.spec.dz;
        let u = self.ftn.forward(&x_stack.reshape((b * t, dx))?)?.reshape((b, t, dz))?;
        let mut drive = (u * self.spec.c1() as f64)?;
        if let Some(eps) = noise {
            drive = (drive + (eps * self.spec.sigma_z as f64)?)?;
        }
        let l = decay_matrix(t, self.spec.c2(), &self.dev)?;
        let zhat = l.broadcast_matmul(&drive)?;
        let zprev = Tensor::cat(&[&Tensor::zeros((b, 1, dz), DType::F32, &self.dev)?, &zhat.narrow(1, 0, t - 1)?], 1)?;
        let xhat = (self.otn.forward(&zprev.reshape((b * t, dz))?)? * self.spec.cx() as f64)?.reshape((
            b,
            t,
            self.spec.channels,
        ))?;
        Ok((zhat, xhat))
    }

    /// The same trajectory computed one timestep at a time (reference for tests).
    pub fn trajectory_unrolled(&self, x_stack: &Tensor, noise: Option<&Tensor>) -> Result<(Tensor, Tensor)> {
        let (b, t, _) = x_stack.dims3()?;
        let dz = self.spec.dz;
        let mut z = Tensor::zeros((b, dz), DType::F32, &self.dev)?;
        let (mut zs, mut xs) = (Vec::new(), Vec::new());
        for i in 0..t {
            xs.push((self.otn.forward(&z)? * self.spec.cx() as f64)?);
            let u = self.ftn.forward(&x_stack.narrow(1, i, 1)?.squeeze(1)?)?;
            let mut drive = (u * self.spec.c1() as f64)?;
            if let Some(eps) = noise {
                drive = (drive + (eps.narrow(1, i, 1)?.squeeze(1)? * self.spec.sigma_z as f64)?)?;
            }
            z = (drive + (z * self.spec.c2() as f64)?)?;
            zs.push(z.clone());
        }
        Ok((Tensor::stack(&zs, 1)?, Tensor::stack(&xs, 1)?))
    }

    /// The trajectory cross-entropy of MODEL.md:
    /// `lambda_x sigma_z^2 x_mse + lambda_z sigma_x^2 z_mse` in decoding mode.
    /// Decision: the squared norms are averaged over their dimensions (as a
    /// per-element MSE), so the balance of the two terms set by `lambda_x`,
    /// `lambda_z` does not shift with the channel count (with a plain sum,
    /// 96 channels outweigh 2 behaviour dims 48:1 and decoding suffers);
    /// in latent mode the x term alone, weighted by `lambda_x` only (a lone
    /// term's constant factor does not change the optimum, and `sigma_z` may be 0).
    pub fn loss(&self, batch: &Batch, w: LossWeights) -> Result<LossParts> {
        let (zhat, xhat) = self.trajectory(&batch.x_stack, batch.noise.as_ref())?;
        let x_se = (&batch.x_cur - &xhat)?.sqr()?;
        let x_mse = match batch.norm {
            Some(n) => (x_se.sum_all()? / n.x_elems)?,
            None => x_se.mean_all()?,
        };
        match (self.spec.mode, &batch.z) {
            (Mode::Decoding, Some(z)) => {
                let se = (z - &zhat)?.sqr()?;
                let se = match &batch.z_mask {
                    Some(m) => se.broadcast_mul(m)?,
                    None => se,
                };
                let n = match (batch.norm, &batch.z_mask) {
                    (Some(n), _) => n.z_elems,
                    (None, Some(m)) => m.sum_all()?.to_scalar::<f32>()?.max(1.0) as f64 * self.spec.dz as f64,
                    (None, None) => se.elem_count() as f64,
                };
                let z_mse = (se.sum_all()? / n)?;
                let sz2 = (self.spec.sigma_z as f64).powi(2);
                let sx2 = (self.spec.sigma_x as f64).powi(2);
                let total = ((&x_mse * (w.lambda_x * sz2))? + (&z_mse * (w.lambda_z * sx2))?)?;
                Ok(LossParts { total, x_mse, z_mse: Some(z_mse) })
            }
            _ => {
                let total = (&x_mse * w.lambda_x)?;
                Ok(LossParts { total, x_mse, z_mse: None })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::spec::Smoothing;

    fn spec(mode: Mode) -> ModelSpec {
        ModelSpec {
            mode,
            channels: 3,
            history: 1,
            dz: 2,
            ftn_hidden: vec![5],
            otn_hidden: vec![4],
            activation: Activation::Tanh,
            alpha: 0.3,
            sigma_x: 0.2,
            sigma_z: 0.06,
            smoothing: Smoothing::None,
        }
    }

    fn rand_tensor(rng: &mut Rng, shape: (usize, usize, usize)) -> Tensor {
        let n = shape.0 * shape.1 * shape.2;
        Tensor::from_vec((0..n).map(|_| rng.normal() as f32).collect::<Vec<_>>(), shape, &Device::Cpu).unwrap()
    }

    fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
    }

    #[test]
    fn batched_trajectory_equals_unrolled_recursion() {
        let s = spec(Mode::Decoding);
        let net = AlternatorNet::init(&s, 3, &Device::Cpu).unwrap();
        let mut rng = Rng::new(9);
        let x = rand_tensor(&mut rng, (2, 7, 6));
        let eps = rand_tensor(&mut rng, (2, 7, 2));
        for noise in [None, Some(&eps)] {
            let (z1, x1) = net.trajectory(&x, noise).unwrap();
            let (z2, x2) = net.trajectory_unrolled(&x, noise).unwrap();
            assert!(max_abs_diff(&z1, &z2) < 1e-5);
            assert!(max_abs_diff(&x1, &x2) < 1e-5);
        }
    }

    /// The fast activation and its gradient agree with candle's exact `tanh`.
    #[test]
    fn fast_tanh_op_matches_tanh_and_its_gradient() {
        let data: Vec<f32> = (0..401).map(|i| (i as f32 - 200.0) * 0.03).collect();
        let x = Var::from_tensor(&Tensor::from_vec(data, (401,), &Device::Cpu).unwrap()).unwrap();
        let w =
            Tensor::from_vec((0..401).map(|i| (i % 7) as f32 - 3.0).collect::<Vec<_>>(), (401,), &Device::Cpu).unwrap();
        let fast = x.as_tensor().apply_op1(FastTanh).unwrap();
        let exact = x.as_tensor().tanh().unwrap();
        assert!(max_abs_diff(&fast, &exact) < 2e-6);
        let g_fast = fast.mul(&w).unwrap().sum_all().unwrap().backward().unwrap();
        let g_exact = exact.mul(&w).unwrap().sum_all().unwrap().backward().unwrap();
        let (a, b) = (g_fast.get(x.as_tensor()).unwrap(), g_exact.get(x.as_tensor()).unwrap());
        assert!(max_abs_diff(a, b) < 2e-5, "{}", max_abs_diff(a, b));
        assert!(b.abs().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap() > 10.0);
    }

    #[test]
    fn decay_matrix_hand_values() {
        let l = decay_matrix(3, 0.5, &Device::Cpu).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(l, vec![vec![1.0, 0.0, 0.0], vec![0.5, 1.0, 0.0], vec![0.25, 0.5, 1.0]]);
    }

    /// One-step, one-layer case computed by hand: with linear "networks"
    /// (a single Dense layer each), T = 2, B = 1.
    #[test]
    fn loss_matches_hand_computation() {
        let mut s = spec(Mode::Decoding);
        s.channels = 1;
        s.history = 0;
        s.dz = 1;
        s.ftn_hidden = vec![];
        s.otn_hidden = vec![];
        let ftn = MlpWeights { layers: vec![Dense { in_dim: 1, out_dim: 1, w: vec![2.0], b: vec![0.5] }] };
        let otn = MlpWeights { layers: vec![Dense { in_dim: 1, out_dim: 1, w: vec![-1.0], b: vec![0.25] }] };
        let net = AlternatorNet::from_weights(&s, &ftn, &otn, &Device::Cpu).unwrap();
        let dev = Device::Cpu;
        let xs = [1.0f32, -0.5];
        let zs = [0.7f32, 0.1];
        let x = Tensor::from_vec(xs.to_vec(), (1, 2, 1), &dev).unwrap();
        let z = Tensor::from_vec(zs.to_vec(), (1, 2, 1), &dev).unwrap();
        let batch = Batch { x_stack: x.clone(), x_cur: x, z: Some(z), z_mask: None, noise: None, norm: None };
        let w = LossWeights { lambda_x: 10.0, lambda_z: 1.0 };
        let parts = net.loss(&batch, w).unwrap();
        // by hand
        let (c1, c2, cx) = (0.3f64.sqrt(), (1.0 - 0.3 - 0.0036f64).sqrt(), (1.0 - 0.04f64).sqrt());
        let g = |x: f64| 2.0 * x + 0.5;
        let f = |z: f64| -z + 0.25;
        let z1 = c1 * g(1.0);
        let z2 = c1 * g(-0.5) + c2 * z1;
        // Dx = Dz = 1 here, so per-element means equal per-bin squared norms.
        let xmse = ((1.0 - cx * f(0.0)).powi(2) + (-0.5 - cx * f(z1)).powi(2)) / 2.0;
        let zmse = ((0.7 - z1).powi(2) + (0.1 - z2).powi(2)) / 2.0;
        let total = 10.0 * 0.0036 * xmse + 1.0 * 0.04 * zmse;
        let got = parts.total.to_scalar::<f32>().unwrap() as f64;
        assert!((got - total).abs() < 1e-5 * total.max(1.0), "{got} vs {total}");
        assert!((parts.x_mse.to_scalar::<f32>().unwrap() as f64 - xmse).abs() < 1e-5);
    }

    /// Autograd through the batched recursion agrees with central finite differences.
    #[test]
    fn gradient_matches_finite_differences() {
        let s = spec(Mode::Decoding);
        let net = AlternatorNet::init(&s, 5, &Device::Cpu).unwrap();
        let mut rng = Rng::new(11);
        let x = rand_tensor(&mut rng, (2, 6, 6));
        let xc = rand_tensor(&mut rng, (2, 6, 3));
        let z = rand_tensor(&mut rng, (2, 6, 2));
        let batch = Batch { x_stack: x, x_cur: xc, z: Some(z), z_mask: None, noise: None, norm: None };
        let w = LossWeights { lambda_x: 50.0, lambda_z: 1.0 };
        let grads = net.loss(&batch, w).unwrap().total.backward().unwrap();
        let vars = net.vars();
        let mut checked = 0;
        for var in [&vars[0], &vars[2], &vars[4]] {
            let g = grads.get(var.as_tensor()).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let base = var.as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let shape = var.as_tensor().shape().clone();
            for k in [0usize, base.len() / 2, base.len() - 1] {
                let h = 1e-2f32;
                let eval = |delta: f32| {
                    let mut p = base.clone();
                    p[k] += delta;
                    var.set(&Tensor::from_vec(p, shape.clone(), &Device::Cpu).unwrap()).unwrap();
                    net.loss(&batch, w).unwrap().total.to_scalar::<f32>().unwrap() as f64
                };
                let fd = (eval(h) - eval(-h)) / (2.0 * h as f64);
                var.set(&Tensor::from_vec(base.clone(), shape.clone(), &Device::Cpu).unwrap()).unwrap();
                let an = g[k] as f64;
                assert!((fd - an).abs() <= 2e-3 * an.abs().max(1e-2), "var elem {k}: fd {fd} vs autograd {an}");
                checked += 1;
            }
        }
        assert_eq!(checked, 9);
    }
}
