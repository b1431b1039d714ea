//! The raw-voltage front end: continuous voltage (µV, `f32`, per channel) in,
//! threshold-crossing counts per bin out, causally and the way BCI rigs do it.
//!
//! Per channel: a Butterworth band-pass ([`bandpass_sos`], run as a biquad
//! [`Cascade`]), optional common-average re-referencing, a threshold of
//! `-k × RMS` (RMS estimated as `median(|x|) / 0.6745` over a calibration
//! window, or given in the config, or loaded from a previous run's file),
//! crossing detection with a refractory period, and counts per bin.
//! [`FrontEnd`] (in `engine.rs`) keeps the streaming state; `detect.rs`
//! holds the per-lane-group detection and the robust RMS; `store.rs` is the
//! only file doing I/O (HDF5 store/load of the settings and thresholds).
//!
//! Invariants:
//! - Bins are independent of how the stream is split into blocks: the same
//!   samples give bit-identical bins whether fed one at a time or all at once.
//! - Nothing is allocated after [`FrontEnd::new`]; `process` runs on buffers
//!   sized there.
//! - Bin `k` covers absolute samples `[k·S, (k+1)·S)`; a bin is emitted only
//!   if every one of its samples was seen and run through detection.
#![forbid(unsafe_code)]

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

mod detect;
mod engine;
mod filter;
mod store;
#[cfg(test)]
mod tests;

pub use engine::FrontEnd;
pub use filter::{bandpass_sos, Cascade, Section, LANES};
pub use store::{load_thresholds, FrontendSnapshot, GROUP as STORE_GROUP};

/// Settings of the front end: the `[frontend]` table of a serve config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FrontendConfig {
    /// Lower band-pass edge (-3 dB), Hz.
    pub band_low_hz: f64,
    /// Upper band-pass edge (-3 dB), Hz; must be below the Nyquist frequency.
    pub band_high_hz: f64,
    /// Butterworth order per side (even, 2..=8); the band-pass has this many biquads.
    pub filter_order: usize,
    /// Subtract the per-sample mean across channels of the filtered signal.
    pub common_average: bool,
    /// Threshold multiplier: threshold = -threshold_k × robust RMS.
    pub threshold_k: f64,
    /// Length of the calibration window in seconds (samples processed from the start).
    pub calibration_s: f64,
    /// Fixed thresholds, one negative µV value per channel; empty = calibrate.
    pub thresholds_uv: Vec<f32>,
    /// Take the thresholds from the `/frontend` group of this HDF5 file.
    pub thresholds_from: Option<PathBuf>,
    /// Dead time after each counted crossing, milliseconds.
    pub refractory_ms: f64,
}

impl Default for FrontendConfig {
    fn default() -> Self {
        Self {
            band_low_hz: 250.0,
            band_high_hz: 5000.0,
            filter_order: 4,
            common_average: false,
            threshold_k: 4.5,
            calibration_s: 1.0,
            thresholds_uv: Vec::new(),
            thresholds_from: None,
            refractory_ms: 1.0,
        }
    }
}

/// Longest calibration window accepted, seconds (the window is held in memory).
pub const MAX_CALIBRATION_S: f64 = 60.0;

impl FrontendConfig {
    /// Every problem, each starting with its dotted field path
    /// (`{prefix}band_low_hz: ...`). Rate-dependent checks (the upper edge
    /// below Nyquist) happen in [`FrontEnd::new`].
    pub fn problems(&self, prefix: &str) -> Vec<String> {
        let mut e = Vec::new();
        if !(self.band_low_hz > 0.0 && self.band_low_hz.is_finite()) {
            e.push(format!("{prefix}band_low_hz: {} must be a finite frequency > 0 Hz", self.band_low_hz));
        }
        if !(self.band_high_hz > self.band_low_hz && self.band_high_hz.is_finite()) {
            e.push(format!(
                "{prefix}band_high_hz: {} must be finite and above band_low_hz ({})",
                self.band_high_hz, self.band_low_hz
            ));
        }
        if !(2..=8).contains(&self.filter_order) || !self.filter_order.is_multiple_of(2) {
            e.push(format!("{prefix}filter_order: {} must be even, in 2..=8", self.filter_order));
        }
        if !(self.threshold_k > 0.0 && self.threshold_k.is_finite()) {
            e.push(format!("{prefix}threshold_k: {} must be a finite number > 0", self.threshold_k));
        }
        if !(self.calibration_s > 0.0 && self.calibration_s <= MAX_CALIBRATION_S) {
            e.push(format!(
                "{prefix}calibration_s: {} must be in (0, {MAX_CALIBRATION_S}] seconds",
                self.calibration_s
            ));
        }
        if !(self.refractory_ms >= 0.0 && self.refractory_ms <= 1000.0) {
            e.push(format!("{prefix}refractory_ms: {} must be in [0, 1000] ms", self.refractory_ms));
        }
        for (i, t) in self.thresholds_uv.iter().enumerate() {
            if !(*t <= 0.0 && t.is_finite()) {
                e.push(format!("{prefix}thresholds_uv[{i}]: {t} must be a finite voltage <= 0 µV"));
            }
        }
        if let Some(p) = &self.thresholds_from {
            if !self.thresholds_uv.is_empty() {
                e.push(format!(
                    "{prefix}thresholds_from: {} is set together with thresholds_uv; expected one source of thresholds",
                    p.display()
                ));
            }
            if p.as_os_str().is_empty() {
                e.push(format!("{prefix}thresholds_from: empty path"));
            }
        }
        e
    }

    /// Reads a `[frontend]` TOML table (absent keys take their defaults).
    /// Each key is tried on its own so that every error names its field
    /// (`{prefix}field: ...`); [`Self::problems`] of the readable keys are
    /// reported in the same list.
    pub fn from_toml(table: &toml::Table, prefix: &str) -> Result<FrontendConfig, Vec<String>> {
        let mut errors = Vec::new();
        let mut good = toml::Table::new();
        for (key, value) in table {
            let one: toml::Table = std::iter::once((key.clone(), value.clone())).collect();
            match toml::Value::Table(one).try_into::<FrontendConfig>() {
                Ok(_) => {
                    good.insert(key.clone(), value.clone());
                }
                Err(err) => errors.push(format!("{prefix}{key}: {}", err.message().trim())),
            }
        }
        match toml::Value::Table(good).try_into::<FrontendConfig>() {
            Ok(cfg) => errors.extend(cfg.problems(prefix)),
            Err(err) => errors.push(format!("{prefix}: {}", err.message().trim())),
        }
        if errors.is_empty() {
            toml::Value::Table(table.clone()).try_into().map_err(|e| vec![format!("{prefix}: {}", e.message())])
        } else {
            Err(errors)
        }
    }
}

/// Everything the front end can refuse.
#[derive(Debug, thiserror::Error)]
pub enum FrontendError {
    /// The configuration has problems (each names its field).
    #[error("front-end config is invalid:\n  {}", problems.join("\n  "))]
    InvalidConfig {
        /// One line per problem.
        problems: Vec<String>,
    },
    /// The stream's parameters cannot be used.
    #[error("{what}: {got}; expected {expected}")]
    BadStream {
        /// Which parameter.
        what: &'static str,
        /// Value received.
        got: String,
        /// What would have been accepted.
        expected: String,
    },
    /// Thresholds given or loaded for a different number of channels.
    #[error("{source_name} holds {got} thresholds; the stream has {expected} channels")]
    ThresholdCount {
        /// Where the thresholds came from.
        source_name: String,
        /// Channels of the stream.
        expected: usize,
        /// Thresholds found.
        got: usize,
    },
    /// A block starts before the next expected sample (a restarted source).
    #[error("block starts at sample {got}, before the next expected sample {expected}")]
    Backwards {
        /// Next sample expected.
        expected: u64,
        /// First sample of the block.
        got: u64,
    },
    /// The block's length is not `channels × n`.
    #[error("block holds {got} values; expected channels × samples = {expected}")]
    BlockLength {
        /// `channels × n`.
        expected: usize,
        /// `block.len()`.
        got: usize,
    },
    /// An HDF5 failure reading stored thresholds.
    #[error("{}: HDF5 error reading `{object}`", path.display())]
    Hdf5 {
        /// File read.
        path: PathBuf,
        /// Object inside the file.
        object: String,
        /// HDF5's reason.
        source: hdf5_metno::Error,
    },
    /// Stored thresholds are missing or unusable.
    #[error("{}: `{object}` {reason}", path.display())]
    BadStored {
        /// File read.
        path: PathBuf,
        /// Object inside the file.
        object: String,
        /// What was wrong and what was expected.
        reason: String,
    },
}
