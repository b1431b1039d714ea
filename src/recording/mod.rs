//! HDF5 sessions: reading, whole-file writing and append-only recording.
//!
//! Owns the on-disk session format (format_version 1):
//! - `/spikes` `[T, C]`: float32/float64 or any integer type (counts), always
//!   converted to `f32` on read;
//! - `/behavior` `[T, B]` float (optional);
//! - `/behavior_valid` `[T]` 0/1 integers or bool (optional; read from
//!   `{behavior path}_valid`): rows with 0 are unlabelled and may hold NaN;
//! - `/timestamps` `[T]` float seconds (optional);
//! - root attributes `bin_seconds` (number > 0, required) and
//!   `format_version` (1; tolerated when missing).
//!
//! Invariants of every [`Recording`] returned by [`Recording::read`] (and
//! checked again by [`Recording::write`]): `T ≥ 1` and `C ≥ 1`; spikes are
//! finite; behaviour, `behavior_valid` and timestamps, when present, have
//! exactly `T` rows; labelled behaviour rows and timestamps are finite;
//! `bin_seconds` is finite and > 0. Every error names the file and the
//! dataset or attribute at fault.
//!
//! [`AppendWriter`] is the live recorder's writer: one thread, rows appended
//! in batches to chunked datasets resizable along the row axis. A file it
//! writes with datasets `spikes`, `behavior`, `timestamps` is a valid
//! session. hdf5-metno serialises all HDF5 calls behind one global lock, so
//! keep a single writer thread.
//!
//! NWB 2.x files are sessions too: [`Recording::read`] hands any file with a
//! root `nwb_version` attribute (or a `.nwb` name) to [`nwb::read_nwb`],
//! which bins spike times and behaviour series into the same invariants.
//!
//! This file holds the types, the error enum and the helpers shared by the
//! submodules: `read` (reading and validation, root-attribute readers,
//! [`file_hash`]), `write` (whole-file writing) and `append`
//! ([`AppendWriter`]). Everything public is re-exported here, so callers use
//! `crate::recording::X` only.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};

use hdf5_metno as hdf5;

use crate::matrix::Matrix;
use crate::model::train::TrainSet;

mod append;
pub mod child;
pub mod nwb;
mod read;
mod write;

pub use append::AppendWriter;
pub use nwb::{NwbError, NwbOptions};
pub use read::{file_hash, read_attr_f64, read_attr_str, read_session_seq};

/// Default path of the spike-count dataset.
pub const DEFAULT_SPIKES_PATH: &str = "/spikes";
/// Default path of the behaviour dataset; when this path is absent the
/// recording simply has no behaviour.
pub const DEFAULT_BEHAVIOR_PATH: &str = "/behavior";
/// Path of the optional per-bin timestamps (seconds).
pub const TIMESTAMPS_PATH: &str = "/timestamps";
/// The only file format version this module reads and writes.
pub const FORMAT_VERSION: i64 = 1;
/// Suffix appended to the behaviour path to find the label mask.
const VALID_SUFFIX: &str = "_valid";
/// Rows per chunk of 2-D datasets (and the cap for whole-file writes).
const CHUNK_ROWS_2D: usize = 1024;
/// Elements per chunk of 1-D datasets.
const CHUNK_LEN_1D: usize = 4096;

/// Everything that can go wrong reading or writing a session file.
#[derive(Debug, thiserror::Error)]
pub enum RecordingError {
    /// Reading in a child process failed (the text names the path).
    #[error("{message}")]
    InChild {
        /// File asked for.
        path: PathBuf,
        /// The child's error, or what went wrong talking to it.
        message: String,
    },
    /// The file does not exist.
    #[error("recording file {} does not exist", path.display())]
    NotFound {
        /// File asked for.
        path: PathBuf,
    },
    /// The file exists but HDF5 cannot open it (not HDF5, truncated, no permission).
    #[error("cannot open {} as an HDF5 file", path.display())]
    Open {
        /// File asked for.
        path: PathBuf,
        /// HDF5's reason.
        source: hdf5::Error,
    },
    /// A file the writer was told to create already exists.
    #[error("{} already exists; refusing to overwrite an existing recording", path.display())]
    AlreadyExists {
        /// File asked for.
        path: PathBuf,
    },
    /// A required dataset is absent.
    #[error("{}: dataset `{dataset}` is missing", path.display())]
    MissingDataset {
        /// File read.
        path: PathBuf,
        /// Dataset path inside the file.
        dataset: String,
    },
    /// A dataset has the wrong number of dimensions.
    #[error("{}: dataset `{dataset}` has {got} dimension(s), expected {expected}", path.display())]
    WrongRank {
        /// File read.
        path: PathBuf,
        /// Dataset path inside the file.
        dataset: String,
        /// Rank required.
        expected: usize,
        /// Rank found.
        got: usize,
    },
    /// A dataset's row count differs from the number of spike bins.
    #[error(
        "{}: dataset `{dataset}` has {got} rows, expected {expected} (one per spike bin)",
        path.display()
    )]
    LengthMismatch {
        /// File read or written.
        path: PathBuf,
        /// Dataset path inside the file.
        dataset: String,
        /// Rows required (the spike bin count).
        expected: usize,
        /// Rows found.
        got: usize,
    },
    /// The spike matrix has no bins or no channels.
    #[error(
        "{}: dataset `{dataset}` is empty (shape {shape:?}); expected at least one bin and one channel",
        path.display()
    )]
    Empty {
        /// File read or written.
        path: PathBuf,
        /// Dataset path inside the file.
        dataset: String,
        /// Shape found.
        shape: Vec<usize>,
    },
    /// NaN or ±inf where a finite value is required.
    #[error(
        "{}: dataset `{dataset}` holds a non-finite value (NaN or inf) at row {row}, column {col}",
        path.display()
    )]
    NonFinite {
        /// File read or written.
        path: PathBuf,
        /// Dataset path inside the file.
        dataset: String,
        /// Row (bin) index.
        row: usize,
        /// Column index (0 for 1-D datasets).
        col: usize,
    },
    /// A dataset's element type cannot be converted to numbers.
    #[error(
        "{}: dataset `{dataset}` has unsupported element type {dtype}; expected a float or integer type",
        path.display()
    )]
    UnsupportedDtype {
        /// File read.
        path: PathBuf,
        /// Dataset path inside the file.
        dataset: String,
        /// HDF5 type found.
        dtype: String,
    },
    /// A dataset holds values outside what the format allows.
    #[error("{}: dataset `{dataset}`: {reason}", path.display())]
    InvalidValue {
        /// File read or written.
        path: PathBuf,
        /// Dataset path inside the file.
        dataset: String,
        /// What was wrong and what was expected.
        reason: String,
    },
    /// A root attribute is missing, of the wrong type or out of range.
    #[error("{}: root attribute `{name}` {reason}", path.display())]
    BadAttribute {
        /// File read or written.
        path: PathBuf,
        /// Attribute name.
        name: String,
        /// What was wrong and what was expected.
        reason: String,
    },
    /// [`AppendWriter`]: a dataset was used before `add_*` declared it.
    #[error("{}: dataset `{dataset}` was not added to this writer (call add_* first)", path.display())]
    UnknownDataset {
        /// File being written.
        path: PathBuf,
        /// Dataset name.
        dataset: String,
    },
    /// [`AppendWriter`]: `add_*` for a name already added.
    #[error("{}: dataset `{dataset}` already exists in this writer", path.display())]
    DatasetExists {
        /// File being written.
        path: PathBuf,
        /// Dataset name.
        dataset: String,
    },
    /// [`AppendWriter`]: appended values of a different element type than declared.
    #[error("{}: dataset `{dataset}` holds {declared} values but {appended} values were appended", path.display())]
    WrongKind {
        /// File being written.
        path: PathBuf,
        /// Dataset name.
        dataset: String,
        /// Element type the dataset was added with.
        declared: &'static str,
        /// Element type of the append call.
        appended: &'static str,
    },
    /// [`AppendWriter`]: a 2-D append whose length is not a whole number of rows.
    #[error(
        "{}: append of {len} values to `{dataset}` is not a whole number of {cols}-column rows",
        path.display()
    )]
    RaggedAppend {
        /// File being written.
        path: PathBuf,
        /// Dataset name.
        dataset: String,
        /// Values passed.
        len: usize,
        /// Columns of the dataset.
        cols: usize,
    },
    /// Any other HDF5 failure, with what was being done.
    #[error("{}: HDF5 error while {context}", path.display())]
    Hdf5 {
        /// File read or written.
        path: PathBuf,
        /// The operation that failed.
        context: String,
        /// HDF5's reason.
        source: hdf5::Error,
    },
    /// An NWB file that cannot be read as a session (see [`nwb`]).
    #[error(transparent)]
    Nwb(#[from] NwbError),
    /// Plain file-system failure (hashing, renaming a finished write).
    #[error("{}: I/O error while {context}", path.display())]
    Io {
        /// File concerned.
        path: PathBuf,
        /// The operation that failed.
        context: String,
        /// The OS reason.
        source: std::io::Error,
    },
}

/// Where to find the datasets of a session inside its file.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReadOptions {
    /// Spike-count dataset, `[T, C]`. Default [`DEFAULT_SPIKES_PATH`].
    pub spikes_path: String,
    /// Behaviour dataset, `[T, B]`. `None` skips behaviour. When equal to
    /// [`DEFAULT_BEHAVIOR_PATH`] (the default; with or without the leading
    /// `/`) and absent from the file, the recording has no behaviour; any
    /// other path that is absent is an error. The label mask is read from
    /// this path plus `_valid`.
    pub behavior_path: Option<String>,
    /// How to bin an NWB file (bin width, units, trials); ignored for other
    /// files. For NWB files `spikes_path` names the Units table (the default
    /// means `/units`) or a TimeSeries, and `behavior_path` a TimeSeries.
    pub nwb: NwbOptions,
}

impl Default for ReadOptions {
    fn default() -> Self {
        Self {
            spikes_path: DEFAULT_SPIKES_PATH.to_string(),
            behavior_path: Some(DEFAULT_BEHAVIOR_PATH.to_string()),
            nwb: NwbOptions::default(),
        }
    }
}

/// One session: binned spike counts and, optionally, aligned behaviour.
#[derive(Debug, Clone, PartialEq)]
pub struct Recording {
    /// Spike counts, `[T, C]`.
    pub spikes: Matrix,
    /// Behaviour, `[T, B]`; rows marked unlabelled in `behavior_valid` may hold NaN.
    pub behavior: Option<Matrix>,
    /// Per-bin label mask for `behavior`; `None` means every row is labelled.
    pub behavior_valid: Option<Vec<bool>>,
    /// Per-bin time in seconds.
    pub timestamps: Option<Vec<f64>>,
    /// Width of one bin in seconds (> 0).
    pub bin_seconds: f64,
}

/// Dataset names used in error messages by [`Recording::validate_at`].
struct DatasetNames {
    spikes: String,
    behavior: String,
    valid: String,
    timestamps: String,
}

impl DatasetNames {
    fn for_write() -> Self {
        Self {
            spikes: DEFAULT_SPIKES_PATH.to_string(),
            behavior: DEFAULT_BEHAVIOR_PATH.to_string(),
            valid: format!("{DEFAULT_BEHAVIOR_PATH}{VALID_SUFFIX}"),
            timestamps: TIMESTAMPS_PATH.to_string(),
        }
    }
}

impl Recording {
    /// Number of bins `T`.
    pub fn n_bins(&self) -> usize {
        self.spikes.rows
    }

    /// Number of spike channels `C`.
    pub fn n_channels(&self) -> usize {
        self.spikes.cols
    }

    /// Number of behaviour dimensions `B` (0 without behaviour).
    pub fn n_behavior(&self) -> usize {
        self.behavior.as_ref().map_or(0, |b| b.cols)
    }

    /// Whether bin `t` has a usable behaviour row (behaviour present and, with
    /// a `/behavior_valid` mask, marked labelled).
    pub fn is_labelled(&self, t: usize) -> bool {
        self.behavior.is_some() && self.behavior_valid.as_ref().is_none_or(|m| m[t])
    }

    /// Number of labelled bins (0 without behaviour).
    pub fn labelled_bins(&self) -> usize {
        match (&self.behavior, &self.behavior_valid) {
            (None, _) => 0,
            (Some(_), None) => self.n_bins(),
            (Some(_), Some(m)) => m.iter().filter(|&&v| v).count(),
        }
    }

    /// The recording as training data.
    pub fn train_set(&self) -> TrainSet<'_> {
        TrainSet {
            spikes: &self.spikes,
            behavior: self.behavior.as_ref(),
            behavior_valid: self.behavior_valid.as_deref(),
        }
    }

    /// Bins `start..end` as a new recording (timestamps are kept, not rebased).
    ///
    /// # Panics
    /// If `start > end` or `end > self.n_bins()`, like slice indexing.
    pub fn slice_bins(&self, start: usize, end: usize) -> Recording {
        assert!(
            start <= end && end <= self.n_bins(),
            "invariant: slice_bins({start}, {end}) out of range for {} bins",
            self.n_bins()
        );
        Recording {
            spikes: self.spikes.slice_rows(start, end),
            behavior: self.behavior.as_ref().map(|b| b.slice_rows(start, end)),
            behavior_valid: self.behavior_valid.as_ref().map(|v| v[start..end].to_vec()),
            timestamps: self.timestamps.as_ref().map(|t| t[start..end].to_vec()),
            bin_seconds: self.bin_seconds,
        }
    }
}

/// Writer dataset key: the name without leading slashes.
fn key(name: &str) -> &str {
    name.trim_start_matches('/')
}

fn h5err(path: &Path, context: &str, source: hdf5::Error) -> RecordingError {
    RecordingError::Hdf5 { path: path.to_path_buf(), context: context.to_string(), source }
}

fn bad_attr(path: &Path, name: &str, reason: &str) -> RecordingError {
    RecordingError::BadAttribute { path: path.to_path_buf(), name: name.to_string(), reason: reason.to_string() }
}

fn check_bin_seconds(path: &Path, bin_seconds: f64) -> Result<(), RecordingError> {
    if bin_seconds.is_finite() && bin_seconds > 0.0 {
        Ok(())
    } else {
        Err(bad_attr(path, "bin_seconds", &format!("is {bin_seconds}; expected a finite bin width in seconds > 0")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 4-bin, 2-channel session with one unlabelled (NaN) behaviour row;
    /// shared by the submodules' tests.
    pub(super) fn small() -> Recording {
        let spikes = Matrix::from_vec(4, 2, vec![0., 1., 2., 3., 4., 5., 6., 7.]);
        let behavior = Matrix::from_vec(4, 1, vec![0.5, f32::NAN, 1.5, 2.5]);
        Recording {
            spikes,
            behavior: Some(behavior),
            behavior_valid: Some(vec![true, false, true, true]),
            timestamps: Some(vec![0.0, 0.02, 0.04, 0.06]),
            bin_seconds: 0.02,
        }
    }

    #[test]
    fn slice_bins_cuts_every_field() {
        let r = small().slice_bins(1, 3);
        assert_eq!(r.n_bins(), 2);
        assert_eq!(r.spikes.data, vec![2., 3., 4., 5.]);
        assert_eq!(r.behavior_valid, Some(vec![false, true]));
        assert_eq!(r.timestamps, Some(vec![0.02, 0.04]));
        assert_eq!(r.behavior.as_ref().map(|b| b.get(1, 0)), Some(1.5));
        assert_eq!((r.n_channels(), r.n_behavior()), (2, 1));
    }

    #[test]
    #[should_panic(expected = "out of range")]
    fn slice_bins_past_the_end_panics() {
        let _ = small().slice_bins(2, 5);
    }
}
