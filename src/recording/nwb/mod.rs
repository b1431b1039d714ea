//! NWB 2.x files (Neurodata Without Borders, as written by pynwb and MatNWB)
//! as sessions: reading one into a binned [`Recording`] and exporting a
//! daemon session as an NWB file.
//!
//! Reading ([`read_nwb`], reached through [`Recording::read`] whenever the
//! file carries the root attribute `nwb_version` or ends in `.nwb`):
//! - spikes come from a Units table (`spike_times` + `spike_times_index`,
//!   `id`, optional `obs_intervals` + `obs_intervals_index`), binned on a grid
//!   of `bin_seconds` starting at `start_s` (session start, 0 s, by default),
//!   or from any TimeSeries (`data` `[T, C]`) averaged into the same grid;
//! - behaviour comes from any TimeSeries or SpatialSeries, averaged causally
//!   into the bins (mean of the samples inside each bin);
//! - the trials table can restrict which bins are labelled (`split` column).
//!
//! Invariants of the result, on top of those of every [`Recording`]: bin `k`
//! covers `[start + k·bin, start + (k+1)·bin)`, with times within
//! [`EDGE_TOLERANCE`] bins of a boundary counted in the later bin (so that
//! times written as `k·bin` land in bin `k` despite rounding). A bin is
//! labelled only when every behaviour dimension has a sample in it, every
//! selected unit was observed during it, and (with trials) it lies inside a
//! selected trial; unlabelled bins hold NaN behaviour. Bins outside a unit's
//! observation intervals carry zero counts for it but are never labelled.
//!
//! Every error names the file, the object inside it and what was expected.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::str::FromStr;

use hdf5_metno as hdf5;

#[cfg(doc)]
use super::Recording;

mod export;
mod h5;
mod read;
mod series;
mod trials;
mod units;

pub use export::{export_session, ExportOptions, ExportSummary};
pub use read::read_nwb;

/// Bin width used when neither the caller nor a model gives one (20 ms).
pub const DEFAULT_BIN_SECONDS: f64 = 0.02;
/// Where NWB files keep the Units table.
pub const UNITS_PATH: &str = "/units";
/// Where NWB files keep the trials table.
pub const TRIALS_PATH: &str = "/intervals/trials";
/// Where behaviour TimeSeries are looked for when no path is given.
pub const BEHAVIOR_MODULE: &str = "/processing/behavior";
/// Fraction of a bin within which a time on a bin edge counts in the later bin.
pub const EDGE_TOLERANCE: f64 = 1e-6;

/// How to turn an NWB file into bins; ignored for other session files.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NwbOptions {
    /// Bin width in seconds; `None` means [`DEFAULT_BIN_SECONDS`].
    pub bin_seconds: Option<f64>,
    /// Start of the bin grid in seconds from the session start; `None` means
    /// 0 (Units) or the first sample (a TimeSeries as spike source).
    pub start_s: Option<f64>,
    /// Keep only the units with these ids (in this order).
    pub unit_ids: Option<Vec<i64>>,
    /// Keep only the units whose boolean column has the given value.
    pub unit_filter: Option<UnitFilter>,
    /// Label only the bins inside a trial of `/intervals/trials`.
    pub trials_only: bool,
    /// Label only the bins inside trials whose `split` column has this value
    /// (implies `trials_only`).
    pub split: Option<String>,
}

impl NwbOptions {
    /// The bin width to use, checked to be finite and > 0.
    fn bin_seconds(&self, path: &Path) -> Result<f64, NwbError> {
        let bin = self.bin_seconds.unwrap_or(DEFAULT_BIN_SECONDS);
        if bin.is_finite() && bin > 0.0 {
            Ok(bin)
        } else {
            Err(NwbError::BadOption {
                path: path.to_path_buf(),
                reason: format!("bin width {bin} s; expected a finite width > 0"),
            })
        }
    }
}

/// A unit selection `COLUMN=true|false` on a boolean column of the Units table.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct UnitFilter {
    /// Column name, e.g. `heldout`.
    pub column: String,
    /// Value a unit must have to be kept.
    pub value: bool,
}

impl FromStr for UnitFilter {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (column, value) =
            s.split_once('=').ok_or_else(|| format!("`{s}`: expected COLUMN=true or COLUMN=false"))?;
        let value = match value.trim() {
            "true" | "1" => true,
            "false" | "0" => false,
            other => return Err(format!("`{s}`: value `{other}` is not true/false")),
        };
        if column.trim().is_empty() {
            return Err(format!("`{s}`: empty column name"));
        }
        Ok(UnitFilter { column: column.trim().to_string(), value })
    }
}

/// What can be wrong with an NWB file (or the options used to read it).
#[derive(Debug, thiserror::Error)]
pub enum NwbError {
    /// No Units table where spikes were expected.
    #[error(
        "{}: no units table at `{group}`: expected a Units table with `spike_times`, `spike_times_index` and `id`{}",
        path.display(),
        found_list(found)
    )]
    MissingUnits {
        /// File read.
        path: PathBuf,
        /// Group looked at.
        group: String,
        /// What the file holds instead (root groups and TimeSeries).
        found: Vec<String>,
    },
    /// A ragged-column index that does not fit the column it indexes.
    #[error("{}: `{index}` does not index `{target}`: {reason}", path.display())]
    BadIndex {
        /// File read.
        path: PathBuf,
        /// The index dataset.
        index: String,
        /// The dataset it indexes.
        target: String,
        /// What was wrong and what was expected.
        reason: String,
    },
    /// The behaviour path given does not name a TimeSeries.
    #[error(
        "{}: no TimeSeries at behaviour path `{requested}`{}",
        path.display(),
        found_list(candidates)
    )]
    BehaviorNotFound {
        /// File read.
        path: PathBuf,
        /// Path asked for.
        requested: String,
        /// TimeSeries present in the file.
        candidates: Vec<String>,
    },
    /// Several behaviour TimeSeries and no path to choose one.
    #[error(
        "{}: several TimeSeries under `{BEHAVIOR_MODULE}`; choose one with --behavior-path{}",
        path.display(),
        found_list(candidates)
    )]
    AmbiguousBehavior {
        /// File read.
        path: PathBuf,
        /// The candidates.
        candidates: Vec<String>,
    },
    /// The session covers no time at all.
    #[error("{}: zero-length session: {reason}", path.display())]
    EmptySession {
        /// File read.
        path: PathBuf,
        /// Why no bin could be formed.
        reason: String,
    },
    /// A TimeSeries whose data or times are unusable.
    #[error("{}: TimeSeries `{series}`: {reason}", path.display())]
    BadSeries {
        /// File read.
        path: PathBuf,
        /// Group of the TimeSeries.
        series: String,
        /// What was wrong and what was expected.
        reason: String,
    },
    /// A table column that is missing or unusable.
    #[error("{}: table `{table}`, column `{column}`: {reason}", path.display())]
    BadColumn {
        /// File read.
        path: PathBuf,
        /// Table group.
        table: String,
        /// Column name.
        column: String,
        /// What was wrong and what was expected.
        reason: String,
    },
    /// Reading options that cannot apply to this file.
    #[error("{}: {reason}", path.display())]
    BadOption {
        /// File read.
        path: PathBuf,
        /// What was wrong and what was expected.
        reason: String,
    },
}

fn found_list(found: &[String]) -> String {
    if found.is_empty() {
        "; the file holds none".to_string()
    } else {
        format!("; found: {}", found.join(", "))
    }
}

/// True when `file` is an NWB file: root attribute `nwb_version`, or a
/// `.nwb` file name.
pub fn is_nwb(file: &hdf5::File, path: &Path) -> bool {
    let by_name = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("nwb"));
    by_name || file.attr("nwb_version").is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_filter_parses_and_rejects() {
        assert_eq!("heldout=false".parse(), Ok(UnitFilter { column: "heldout".into(), value: false }));
        assert_eq!("good = 1".parse::<UnitFilter>().map(|f| f.value), Ok(true));
        assert!("heldout".parse::<UnitFilter>().is_err());
        assert!("heldout=maybe".parse::<UnitFilter>().is_err());
        assert!("=true".parse::<UnitFilter>().is_err());
    }

    #[test]
    fn bin_width_is_checked() {
        let p = Path::new("/x.nwb");
        assert_eq!(NwbOptions::default().bin_seconds(p).unwrap(), DEFAULT_BIN_SECONDS);
        let bad = NwbOptions { bin_seconds: Some(0.0), ..NwbOptions::default() };
        assert!(matches!(bad.bin_seconds(p), Err(NwbError::BadOption { .. })));
    }
}
