//! Offline forecasting and decoding with missing bins, built only from the
//! streaming kernel's own steps (MODEL.md, "Streaming inference").
//!
//! - A **k-bin-ahead forecast** of bin `t` starts from the state after
//!   observing bins `0..=t-k`, treats the next `k-1` bins as missing
//!   (imputed by the OTN) and then takes the kernel's one-step prediction
//!   ([`StepKernel::forecast_output_next`]). Horizon 1 is therefore the
//!   one-step prediction itself; horizon `k` equals `k` missing steps.
//! - **Decoding with missing bins** runs [`StepKernel::step_missing`] on the
//!   bins marked missing and [`StepKernel::step`] on the others.
//!
//! Invariant: both only read the recording; rows without a forecast (the
//! first `k` bins) are NaN.

use super::kernel::StepKernel;
use super::weights::Model;
use crate::matrix::Matrix;

/// Forecasts of every bin of `raw` at each horizon (`>= 1`), one `[T, dz]`
/// matrix per horizon in the order given; row `t < k` is NaN.
pub fn forecast_outputs(model: &Model, raw: &Matrix, horizons: &[usize]) -> Vec<Matrix> {
    let dz = model.spec.dz;
    let mut out: Vec<Matrix> =
        horizons.iter().map(|_| Matrix::from_vec(raw.rows, dz, vec![f32::NAN; raw.rows * dz])).collect();
    let max_h = horizons.iter().copied().max().unwrap_or(0);
    let mut live = StepKernel::new(model.clone());
    let mut ahead = StepKernel::new(model.clone());
    let mut y = vec![0f32; dz];
    for t in 0..raw.rows {
        live.step(raw.row(t), &mut y);
        ahead.copy_state_from(&live);
        // After observing bin t: step j predicts bin t + j.
        for j in 1..=max_h.min(raw.rows - 1 - t) {
            ahead.forecast_output_next(&mut y);
            for (m, _) in out.iter_mut().zip(horizons).filter(|(_, h)| **h == j) {
                m.row_mut(t + j).copy_from_slice(&y);
            }
            if j < max_h {
                ahead.step_missing(&mut y);
            }
        }
    }
    out
}

/// Decodes `raw` with the bins where `missing` is true imputed by the model.
///
/// Panics (a caller bug) unless `missing` has one entry per row.
pub fn decode_with_missing(model: &Model, raw: &Matrix, missing: &[bool]) -> Matrix {
    assert_eq!(missing.len(), raw.rows, "invariant: one missing flag per bin");
    let mut k = StepKernel::new(model.clone());
    let mut out = Matrix::zeros(raw.rows, model.spec.dz);
    for (t, &is_missing) in missing.iter().enumerate() {
        if is_missing {
            k.step_missing(out.row_mut(t));
        } else {
            k.step(raw.row(t), out.row_mut(t));
        }
    }
    out
}
