//! A fused AdamW optimiser over one flat `f32` parameter buffer.
//!
//! candle-nn's `AdamW` runs about a dozen tensor ops per variable and step,
//! each allocating its result; for the alternator's ~10^5 parameters that
//! cost more than the forward and backward passes together. Here the
//! gradients of all variables are gathered into one contiguous buffer, the
//! global gradient-norm clipping and the AdamW update are one pass each over
//! contiguous memory, and the new values are written back into the candle
//! variables.
//!
//! Invariants: the update is PyTorch's (and candle-nn's) AdamW —
//! decoupled weight decay `theta *= 1 - lr * wd`, bias-corrected moments,
//! `eps` added to `sqrt(v_hat)`; a variable that received no gradient in a
//! step is left alone, as candle-nn does; the order of the flat buffer is the
//! order of the variables given to [`FusedAdamW::new`].

use candle_core::backprop::GradStore;
use candle_core::{Result, Tensor, Var};

/// AdamW hyper-parameters (defaults as PyTorch and candle-nn, except the weight decay, which the caller sets).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWConfig {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

impl AdamWConfig {
    /// `lr` and `weight_decay` with betas 0.9/0.999 and eps 1e-8.
    pub fn new(lr: f64, weight_decay: f64) -> Self {
        Self { lr, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay }
    }
}

/// AdamW state over a flat copy of the parameters.
pub struct FusedAdamW {
    cfg: AdamWConfig,
    step_t: i32,
    vars: Vec<Var>,
    /// `(offset, len)` of each variable in the flat buffers.
    spans: Vec<(usize, usize)>,
    theta: Vec<f32>,
    m: Vec<f32>,
    v: Vec<f32>,
    grad: Vec<f32>,
    /// Whether any gradient was accumulated for each variable since the last step.
    has_grad: Vec<bool>,
}

impl FusedAdamW {
    /// Takes the variables to optimise and copies their current values.
    pub fn new(vars: Vec<Var>, cfg: AdamWConfig) -> Result<Self> {
        let mut spans = Vec::with_capacity(vars.len());
        let mut theta = Vec::new();
        for v in &vars {
            let vals = v.as_tensor().flatten_all()?.to_vec1::<f32>()?;
            spans.push((theta.len(), vals.len()));
            theta.extend_from_slice(&vals);
        }
        let n = theta.len();
        let has_grad = vec![false; vars.len()];
        Ok(Self { cfg, step_t: 0, vars, spans, theta, m: vec![0.0; n], v: vec![0.0; n], grad: vec![0.0; n], has_grad })
    }

    /// Number of scalar parameters.
    pub fn len(&self) -> usize {
        self.theta.len()
    }

    /// Whether there are no parameters.
    pub fn is_empty(&self) -> bool {
        self.theta.is_empty()
    }

    /// Adds the gradients in `grads` (scaled by `weight`) into the flat gradient buffer.
    pub fn accumulate(&mut self, grads: &GradStore, weight: f32) -> Result<()> {
        for (k, var) in self.vars.iter().enumerate() {
            let Some(g) = grads.get(var.as_tensor()) else { continue };
            let (off, len) = self.spans[k];
            let vals = g.flatten_all()?.to_vec1::<f32>()?;
            debug_assert_eq!(vals.len(), len);
            for (acc, x) in self.grad[off..off + len].iter_mut().zip(&vals) {
                *acc += weight * x;
            }
            self.has_grad[k] = true;
        }
        Ok(())
    }

    /// Global L2 norm of the accumulated gradient.
    pub fn grad_norm(&self) -> f64 {
        self.grad.iter().map(|&g| (g as f64) * (g as f64)).sum::<f64>().sqrt()
    }

    /// Clips the accumulated gradient to `clip_norm` (global L2 norm), applies
    /// one AdamW update to every variable that received a gradient (as
    /// candle-nn does, others are left alone), writes the new values into the
    /// candle variables and clears the gradient. Returns the norm before clipping.
    pub fn step(&mut self, clip_norm: Option<f64>) -> Result<f64> {
        let norm = self.grad_norm();
        let scale = match clip_norm {
            Some(c) if norm > c => (c / norm) as f32,
            _ => 1.0,
        };
        self.step_t += 1;
        let c = self.cfg;
        let consts = StepConsts {
            scale,
            b1: c.beta1 as f32,
            b2: c.beta2 as f32,
            inv_bc1: (1.0 / (1.0 - c.beta1.powi(self.step_t))) as f32,
            inv_bc2: (1.0 / (1.0 - c.beta2.powi(self.step_t))) as f32,
            decay: (1.0 - c.lr * c.weight_decay) as f32,
            lr: c.lr as f32,
            eps: c.eps as f32,
        };
        for k in 0..self.vars.len() {
            if !self.has_grad[k] {
                continue;
            }
            let (off, len) = self.spans[k];
            let r = off..off + len;
            update(&consts, &mut self.theta[r.clone()], &mut self.m[r.clone()], &mut self.v[r.clone()], &self.grad[r]);
            let var = &self.vars[k];
            var.set(&Tensor::from_slice(&self.theta[off..off + len], var.shape(), var.device())?)?;
        }
        self.grad.iter_mut().for_each(|g| *g = 0.0);
        self.has_grad.iter_mut().for_each(|h| *h = false);
        Ok(norm)
    }
}

/// Per-step constants of the update, in `f32`.
struct StepConsts {
    scale: f32,
    b1: f32,
    b2: f32,
    inv_bc1: f32,
    inv_bc2: f32,
    decay: f32,
    lr: f32,
    eps: f32,
}

/// One AdamW update over contiguous slices (vectorised by the compiler).
#[inline(never)]
fn update(c: &StepConsts, theta: &mut [f32], m: &mut [f32], v: &mut [f32], grad: &[f32]) {
    let (b1c, b2c) = (1.0 - c.b1, 1.0 - c.b2);
    for (((t, m), v), &g) in theta.iter_mut().zip(m.iter_mut()).zip(v.iter_mut()).zip(grad) {
        let g = g * c.scale;
        *m = c.b1 * *m + b1c * g;
        *v = c.b2 * *v + b2c * g * g;
        let m_hat = *m * c.inv_bc1;
        let v_hat = *v * c.inv_bc2;
        *t = *t * c.decay - c.lr * m_hat / (v_hat.sqrt() + c.eps);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;
    use candle_nn::{AdamW, Optimizer, ParamsAdamW};

    use crate::rng::Rng;

    fn rand_var(rng: &mut Rng, shape: &[usize]) -> Var {
        let n: usize = shape.iter().product();
        let data: Vec<f32> = (0..n).map(|_| rng.normal() as f32).collect();
        Var::from_tensor(&Tensor::from_vec(data, shape, &Device::Cpu).unwrap()).unwrap()
    }

    fn copy_var(v: &Var) -> Var {
        Var::from_tensor(&v.as_tensor().copy().unwrap()).unwrap()
    }

    fn values(v: &Var) -> Vec<f32> {
        v.as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap()
    }

    /// A loss with non-trivial gradients: sum of (w ⊙ w ⊙ a) + sum(b) * 3 over both vars.
    fn loss(vars: &[Var], a: &Tensor) -> Tensor {
        let w = vars[0].as_tensor();
        let b = vars[1].as_tensor();
        let t1 = (w * w).unwrap().mul(a).unwrap().sum_all().unwrap();
        let t2 = (b.sum_all().unwrap() * 3.0).unwrap();
        (t1 + t2).unwrap()
    }

    /// Ten steps of the fused optimiser equal ten steps of candle-nn's AdamW
    /// on the same loss (no clipping), to f32 rounding.
    #[test]
    fn matches_candle_nn_adamw() {
        let mut rng = Rng::new(4);
        let w = rand_var(&mut rng, &[7, 5]);
        let b = rand_var(&mut rng, &[5]);
        let a =
            Tensor::from_vec((0..35).map(|_| rng.normal() as f32).collect::<Vec<_>>(), (7, 5), &Device::Cpu).unwrap();
        let (w2, b2) = (copy_var(&w), copy_var(&b));
        let ours = vec![w, b];
        let theirs = vec![w2, b2];
        let cfg = AdamWConfig::new(0.05, 0.1);
        let mut fused = FusedAdamW::new(ours.clone(), cfg).unwrap();
        let p = ParamsAdamW { lr: cfg.lr, weight_decay: cfg.weight_decay, ..Default::default() };
        let mut reference = AdamW::new(theirs.clone(), p).unwrap();
        for _ in 0..10 {
            fused.accumulate(&loss(&ours, &a).backward().unwrap(), 1.0).unwrap();
            fused.step(None).unwrap();
            reference.step(&loss(&theirs, &a).backward().unwrap()).unwrap();
        }
        for (x, y) in ours.iter().zip(&theirs) {
            let (x, y) = (values(x), values(y));
            assert!(x.iter().zip(&y).all(|(p, q)| (p - q).abs() <= 1e-5 * q.abs().max(1.0)), "{x:?} vs {y:?}");
            // The parameters moved: the test would notice an update that does nothing.
            assert!(x.iter().any(|v| v.abs() > 1e-3));
        }
    }

    /// The first step from zero moments in closed form: with m_hat = g and
    /// v_hat = g^2, theta_1 = theta_0 (1 - lr wd) - lr g / (|g| + eps); with
    /// clipping, g is first scaled by clip / ||g||.
    #[test]
    fn first_step_closed_form_with_clipping() {
        let var = Var::from_tensor(&Tensor::new(&[1.0f32, -2.0, 0.5], &Device::Cpu).unwrap()).unwrap();
        let mut opt = FusedAdamW::new(vec![var.clone()], AdamWConfig::new(0.1, 0.01)).unwrap();
        // loss = 3 x0 + 4 x1 + 0 x2 -> g = (3, 4, 0), ||g|| = 5
        let c = Tensor::new(&[3.0f32, 4.0, 0.0], &Device::Cpu).unwrap();
        let grads = var.as_tensor().mul(&c).unwrap().sum_all().unwrap().backward().unwrap();
        opt.accumulate(&grads, 1.0).unwrap();
        let norm = opt.step(Some(1.0)).unwrap();
        assert!((norm - 5.0).abs() < 1e-6);
        let got = values(&var);
        let (lr, wd, eps) = (0.1f64, 0.01f64, 1e-8f64);
        let theta0 = [1.0f64, -2.0, 0.5];
        let g = [0.6f64, 0.8, 0.0];
        for i in 0..3 {
            let want = theta0[i] * (1.0 - lr * wd) - lr * g[i] / (g[i].abs() + eps);
            assert!((got[i] as f64 - want).abs() < 1e-6, "param {i}: {} vs {want}", got[i]);
        }
    }

    /// Accumulating two halves with weights 1/2 gives the same step as the mean gradient.
    #[test]
    fn accumulated_shards_equal_one_gradient() {
        let mk = || Var::from_tensor(&Tensor::new(&[0.3f32, -0.7], &Device::Cpu).unwrap()).unwrap();
        let (v1, v2) = (mk(), mk());
        let c1 = Tensor::new(&[1.0f32, 2.0], &Device::Cpu).unwrap();
        let c2 = Tensor::new(&[-3.0f32, 0.5], &Device::Cpu).unwrap();
        let mut a = FusedAdamW::new(vec![v1.clone()], AdamWConfig::new(0.01, 0.0)).unwrap();
        let mut b = FusedAdamW::new(vec![v2.clone()], AdamWConfig::new(0.01, 0.0)).unwrap();
        let lin = |v: &Var, c: &Tensor| v.as_tensor().mul(c).unwrap().sum_all().unwrap();
        a.accumulate(&lin(&v1, &c1).backward().unwrap(), 0.5).unwrap();
        a.accumulate(&lin(&v1, &c2).backward().unwrap(), 0.5).unwrap();
        let mean = ((lin(&v2, &c1) + lin(&v2, &c2)).unwrap() * 0.5).unwrap();
        b.accumulate(&mean.backward().unwrap(), 1.0).unwrap();
        assert!((a.grad_norm() - b.grad_norm()).abs() < 1e-7);
        a.step(None).unwrap();
        b.step(None).unwrap();
        assert_eq!(values(&v1), values(&v2));
        assert_ne!(values(&v1), vec![0.3f32, -0.7]);
    }
}
