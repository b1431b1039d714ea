//! The model's architecture and constants: everything needed to rebuild the
//! networks and the streaming update from a model file.
//!
//! Invariants (checked by [`ModelSpec::validate`]): `0 < alpha < 1`,
//! `0 < sigma_x < 1`, `sigma_z >= 0`, `alpha + sigma_z^2 < 1`, non-zero
//! dimensions.

use serde::{Deserialize, Serialize};

/// What `z` means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// `z` is the (normalised) behaviour and training supervises it.
    Decoding,
    /// `z` is a learned latent state; only the next-bin prediction is trained.
    Latent,
}

/// Hidden-layer nonlinearity of both networks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    Tanh,
    Relu,
}

/// Causal smoothing applied to raw bins before normalisation.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Smoothing {
    /// No smoothing.
    None,
    /// `s_t = a s_{t-1} + (1-a) x_t` with `a = exp(-1/tau_bins)`.
    Exponential { tau_bins: f32 },
    /// Weighted sum of the last `ceil(3 sigma)+1` bins with half-Gaussian weights
    /// (present bin weight largest), weights summing to one.
    HalfGaussian { sigma_bins: f32 },
}

/// Architecture and constants of one alternator model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    /// Decoding (z = behaviour) or latent mode.
    pub mode: Mode,
    /// Raw input channels per bin.
    pub channels: usize,
    /// Number of past bins stacked with the present one into the FTN input.
    pub history: usize,
    /// Dimension of z (behaviour dims in decoding mode).
    pub dz: usize,
    /// Hidden widths of the FTN (x -> z).
    pub ftn_hidden: Vec<usize>,
    /// Hidden widths of the OTN (z -> x).
    pub otn_hidden: Vec<usize>,
    /// Hidden nonlinearity.
    pub activation: Activation,
    /// Mixing weight of the FTN output in the z update.
    pub alpha: f32,
    /// Observation noise scale.
    pub sigma_x: f32,
    /// Feature noise scale.
    pub sigma_z: f32,
    /// Causal smoothing of raw bins.
    pub smoothing: Smoothing,
}

impl ModelSpec {
    /// FTN input width: present bin plus `history` past bins.
    pub fn dx_in(&self) -> usize {
        self.channels * (self.history + 1)
    }

    /// FTN layer widths `[dx_in, hidden.., dz]`.
    pub fn ftn_widths(&self) -> Vec<usize> {
        std::iter::once(self.dx_in()).chain(self.ftn_hidden.iter().copied()).chain([self.dz]).collect()
    }

    /// OTN layer widths `[dz, hidden.., channels]`.
    pub fn otn_widths(&self) -> Vec<usize> {
        std::iter::once(self.dz).chain(self.otn_hidden.iter().copied()).chain([self.channels]).collect()
    }

    /// `sqrt(alpha)`: weight of the FTN output in the z update.
    pub fn c1(&self) -> f32 {
        self.alpha.sqrt()
    }

    /// `sqrt(1 - alpha - sigma_z^2)`: weight of the previous z.
    pub fn c2(&self) -> f32 {
        (1.0 - self.alpha - self.sigma_z * self.sigma_z).sqrt()
    }

    /// `sqrt(1 - sigma_x^2)`: weight of the OTN output in the x prediction.
    pub fn cx(&self) -> f32 {
        (1.0 - self.sigma_x * self.sigma_x).sqrt()
    }

    /// Checks the constants and dimensions; returns every problem found.
    pub fn validate(&self) -> Result<(), Vec<String>> {
        let mut errs: Vec<String> = constant_problems(
            self.alpha,
            self.sigma_x,
            self.sigma_z,
            self.smoothing,
            &self.ftn_hidden,
            &self.otn_hidden,
        )
        .into_iter()
        .map(|(field, msg)| format!("{field}: {msg}"))
        .collect();
        if self.channels == 0 {
            errs.push("channels: must be > 0".into());
        }
        if self.dz == 0 {
            errs.push("dz: must be > 0".into());
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(errs)
        }
    }
}

/// Problems with the model constants, smoothing and hidden widths, as
/// `(field, message)` pairs: the rules shared by a model's spec and the
/// training settings that produce one.
pub fn constant_problems(
    alpha: f32,
    sigma_x: f32,
    sigma_z: f32,
    smoothing: Smoothing,
    ftn_hidden: &[usize],
    otn_hidden: &[usize],
) -> Vec<(&'static str, String)> {
    let mut p = Vec::new();
    if !(alpha > 0.0 && alpha < 1.0) {
        p.push(("alpha", format!("{alpha} must be in (0, 1)")));
    }
    if !(sigma_x > 0.0 && sigma_x < 1.0) {
        p.push(("sigma_x", format!("{sigma_x} must be in (0, 1)")));
    }
    if !(sigma_z >= 0.0) {
        p.push(("sigma_z", format!("{sigma_z} must be >= 0")));
    }
    if !(alpha + sigma_z * sigma_z < 1.0) {
        p.push(("sigma_z", format!("alpha + sigma_z^2 = {} must be < 1", alpha + sigma_z * sigma_z)));
    }
    if ftn_hidden.contains(&0) || otn_hidden.contains(&0) {
        p.push(("ftn_hidden/otn_hidden", "widths must be > 0".into()));
    }
    match smoothing {
        Smoothing::Exponential { tau_bins } if !(tau_bins > 0.0) => {
            p.push(("smoothing.tau_bins", format!("{tau_bins} must be > 0")))
        }
        Smoothing::HalfGaussian { sigma_bins } if !(sigma_bins > 0.0 && sigma_bins <= 100.0) => {
            p.push(("smoothing.sigma_bins", format!("{sigma_bins} must be in (0, 100]")))
        }
        _ => {}
    }
    p
}
