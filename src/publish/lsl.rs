//! Decoded behaviour as an LSL stream (`[publish.lsl]`): one float32
//! channel per behaviour dimension, `type = "Decoded"` by default, each
//! sample stamped with the LSL time of the input it was decoded from (the
//! source's `t_ns` when the source is LSL), so LabRecorder and other LSL
//! tools record it aligned with the raw data. With another source the
//! input time is not on LSL's clock and samples are stamped at push time.
//!
//! Invariants: one push per decoded timestep, never blocking (liblsl queues
//! up to `max_buffered_s` and drops the oldest beyond it); no allocation.

use serde::{Deserialize, Serialize};

use super::{Decoded, OutputSink};
use crate::ingest::lsl::ffi::{FfiError, Lib, Outlet};

/// `[publish.lsl]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LslOutletSection {
    /// Publish an LSL outlet.
    pub enabled: bool,
    /// Stream name.
    pub name: String,
    /// Stream type.
    #[serde(rename = "type")]
    pub stream_type: String,
    /// Stream source_id (lets inlets recover after a daemon restart); empty = "alternator-" + name.
    pub source_id: String,
    /// Nominal rate: `irregular` or `bin` (1 / record.bin_seconds).
    pub rate: String,
    /// Seconds of samples liblsl keeps for slow consumers.
    pub max_buffered_s: u32,
    /// Path of liblsl; empty = `ingest.lsl.library`, else the usual places and the pylsl wheel.
    pub library: Option<std::path::PathBuf>,
}

impl Default for LslOutletSection {
    fn default() -> Self {
        Self {
            enabled: false,
            name: "alternator-decoded".into(),
            stream_type: "Decoded".into(),
            source_id: String::new(),
            rate: "irregular".into(),
            max_buffered_s: 30,
            library: None,
        }
    }
}

impl LslOutletSection {
    /// Every problem, each with its dotted field path.
    pub fn problems(&self, prefix: &str) -> Vec<String> {
        let mut e = Vec::new();
        if !self.enabled {
            return e;
        }
        if self.name.is_empty() {
            e.push(format!("{prefix}name: must not be empty"));
        }
        if self.rate != "irregular" && self.rate != "bin" {
            e.push(format!("{prefix}rate: {:?}; expected \"irregular\" or \"bin\"", self.rate));
        }
        if !(1..=3600).contains(&self.max_buffered_s) {
            e.push(format!("{prefix}max_buffered_s: {} must be in 1..=3600", self.max_buffered_s));
        }
        e
    }
}

/// The outlet.
pub struct LslOutput {
    outlet: Outlet,
    /// Input times are on LSL's clock (the source is LSL).
    stamps_are_lsl: bool,
    lib: std::sync::Arc<Lib>,
}

impl LslOutput {
    /// Loads liblsl and creates the outlet.
    pub fn open(
        cfg: &LslOutletSection,
        library: Option<&std::path::Path>,
        out_dim: usize,
        bin_seconds: f64,
        stamps_are_lsl: bool,
    ) -> Result<Self, FfiError> {
        let lib = Lib::load(cfg.library.as_deref().or(library))?;
        let srate = if cfg.rate == "bin" { 1.0 / bin_seconds } else { 0.0 };
        let sid = if cfg.source_id.is_empty() { format!("alternator-{}", cfg.name) } else { cfg.source_id.clone() };
        let info = lib.stream_info(&cfg.name, &cfg.stream_type, out_dim, srate, &sid)?;
        let outlet = info.outlet(cfg.max_buffered_s as i32)?;
        Ok(Self { outlet, stamps_are_lsl, lib })
    }
}

impl OutputSink for LslOutput {
    fn send(&mut self, d: &Decoded<'_>) -> bool {
        let ts = if self.stamps_are_lsl && d.t_ns > 0 { d.t_ns as f64 * 1e-9 } else { self.lib.local_clock() };
        self.outlet.push(d.values, ts)
    }

    fn name(&self) -> &'static str {
        "lsl"
    }
}
