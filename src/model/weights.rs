//! Plain-`f32` model weights: what a trained candle model exports and what
//! the per-bin [`super::StepKernel`] and model files consume.
//!
//! Invariant: a [`Dense`] layer's weights are stored input-major,
//! `w[i * out_dim + j]` is the weight from input `i` to output `j`, so a
//! forward pass streams through memory once with outputs held in registers.

use super::preprocess::NormStats;
use super::spec::ModelSpec;

/// One fully connected layer `y = x W + b` with `W` of shape `[in_dim, out_dim]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Dense {
    pub in_dim: usize,
    pub out_dim: usize,
    /// Row-major `[in_dim, out_dim]`.
    pub w: Vec<f32>,
    /// `[out_dim]`.
    pub b: Vec<f32>,
}

/// A multilayer perceptron: every layer but the last is followed by the
/// model's activation; the last is linear.
#[derive(Debug, Clone, PartialEq)]
pub struct MlpWeights {
    pub layers: Vec<Dense>,
}

impl MlpWeights {
    /// Input width.
    pub fn in_dim(&self) -> usize {
        self.layers.first().map(|l| l.in_dim).unwrap_or(0)
    }
    /// Output width.
    pub fn out_dim(&self) -> usize {
        self.layers.last().map(|l| l.out_dim).unwrap_or(0)
    }
    /// Widest layer output (scratch size).
    pub fn max_width(&self) -> usize {
        self.layers.iter().map(|l| l.out_dim).max().unwrap_or(0)
    }
    /// Layer widths `[in, h1, ..., out]`.
    pub fn widths(&self) -> Vec<usize> {
        let mut w = vec![self.in_dim()];
        w.extend(self.layers.iter().map(|l| l.out_dim));
        w
    }
}

/// A complete trained model: architecture, normalisation and both networks.
#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    pub spec: ModelSpec,
    pub stats: NormStats,
    /// `g_phi: x -> z`.
    pub ftn: MlpWeights,
    /// `f_theta: z -> x` (predicts the present normalised bin, `channels` values).
    pub otn: MlpWeights,
}

impl Model {
    /// Checks that the networks' shapes agree with the spec and statistics.
    pub fn check_shapes(&self) -> Result<(), String> {
        let s = &self.spec;
        let (want_ftn, want_otn) = (s.ftn_widths(), s.otn_widths());
        if self.ftn.widths() != want_ftn {
            return Err(format!("FTN widths {:?} but the spec implies {:?}", self.ftn.widths(), want_ftn));
        }
        if self.otn.widths() != want_otn {
            return Err(format!("OTN widths {:?} but the spec implies {:?}", self.otn.widths(), want_otn));
        }
        for (name, net) in [("ftn", &self.ftn), ("otn", &self.otn)] {
            for (i, l) in net.layers.iter().enumerate() {
                if l.w.len() != l.in_dim * l.out_dim || l.b.len() != l.out_dim {
                    return Err(format!(
                        "{name} layer {i}: weight/bias sizes disagree with [{}, {}]",
                        l.in_dim, l.out_dim
                    ));
                }
            }
        }
        let st = &self.stats;
        if st.x_mean.len() != s.channels || st.x_std.len() != s.channels {
            return Err(format!("input statistics have {} values, expected {}", st.x_mean.len(), s.channels));
        }
        if st.y_mean.len() != s.dz || st.y_std.len() != s.dz {
            return Err(format!("behaviour statistics have {} values, expected {}", st.y_mean.len(), s.dz));
        }
        Ok(())
    }
}
