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
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use hdf5::types::{FloatSize, IntSize, TypeDescriptor, VarLenUnicode};
use hdf5::{Extent, H5Type, Hyperslab, SliceOrIndex};
use hdf5_metno as hdf5;
use ndarray::{ArrayView1, ArrayView2};

use crate::matrix::Matrix;

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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadOptions {
    /// Spike-count dataset, `[T, C]`. Default [`DEFAULT_SPIKES_PATH`].
    pub spikes_path: String,
    /// Behaviour dataset, `[T, B]`. `None` skips behaviour. When equal to
    /// [`DEFAULT_BEHAVIOR_PATH`] (the default; with or without the leading
    /// `/`) and absent from the file, the recording has no behaviour; any
    /// other path that is absent is an error. The label mask is read from
    /// this path plus `_valid`.
    pub behavior_path: Option<String>,
}

impl Default for ReadOptions {
    fn default() -> Self {
        Self { spikes_path: DEFAULT_SPIKES_PATH.to_string(), behavior_path: Some(DEFAULT_BEHAVIOR_PATH.to_string()) }
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
    /// Reads and validates a session file (see the module docs for the layout).
    pub fn read(path: &Path, opts: &ReadOptions) -> Result<Recording, RecordingError> {
        if !path.exists() {
            return Err(RecordingError::NotFound { path: path.to_path_buf() });
        }
        let file =
            hdf5::File::open(path).map_err(|source| RecordingError::Open { path: path.to_path_buf(), source })?;

        let bin_seconds = match read_number_attr(&file, path, "bin_seconds")? {
            None => return Err(bad_attr(path, "bin_seconds", "is missing; expected the bin width in seconds (> 0)")),
            Some(v) => v,
        };
        check_bin_seconds(path, bin_seconds)?;
        if let Some(v) = read_number_attr(&file, path, "format_version")? {
            if v != FORMAT_VERSION as f64 {
                return Err(bad_attr(
                    path,
                    "format_version",
                    &format!("is {v}; this reader understands format_version {FORMAT_VERSION} only"),
                ));
            }
        }

        let spikes_name = opts.spikes_path.as_str();
        let spikes_ds = open_dataset(&file, path, spikes_name)?.ok_or_else(|| RecordingError::MissingDataset {
            path: path.to_path_buf(),
            dataset: spikes_name.to_string(),
        })?;
        let shape = expect_rank(&spikes_ds, path, spikes_name, 2)?;
        if shape[0] == 0 || shape[1] == 0 {
            return Err(RecordingError::Empty { path: path.to_path_buf(), dataset: spikes_name.to_string(), shape });
        }
        let data = read_as_f32(&spikes_ds, path, spikes_name)?;
        let spikes = Matrix::from_vec(shape[0], shape[1], data);
        let n_bins = spikes.rows;

        let mut names = DatasetNames::for_write();
        names.spikes = spikes_name.to_string();

        let (behavior, behavior_valid) = match &opts.behavior_path {
            None => (None, None),
            Some(bpath) => {
                names.behavior = bpath.clone();
                names.valid = format!("{bpath}{VALID_SUFFIX}");
                match open_dataset(&file, path, bpath)? {
                    None if key(bpath) == key(DEFAULT_BEHAVIOR_PATH) => (None, None),
                    None => {
                        return Err(RecordingError::MissingDataset { path: path.to_path_buf(), dataset: bpath.clone() })
                    }
                    Some(ds) => {
                        let bshape = expect_rank(&ds, path, bpath, 2)?;
                        expect_rows(path, bpath, n_bins, bshape[0])?;
                        let b = Matrix::from_vec(bshape[0], bshape[1], read_as_f32(&ds, path, bpath)?);
                        let valid = match open_dataset(&file, path, &names.valid)? {
                            None => None,
                            Some(vds) => {
                                let vshape = expect_rank(&vds, path, &names.valid, 1)?;
                                expect_rows(path, &names.valid, n_bins, vshape[0])?;
                                Some(read_mask(&vds, path, &names.valid)?)
                            }
                        };
                        (Some(b), valid)
                    }
                }
            }
        };

        let timestamps = match open_dataset(&file, path, TIMESTAMPS_PATH)? {
            None => None,
            Some(ds) => {
                let tshape = expect_rank(&ds, path, TIMESTAMPS_PATH, 1)?;
                expect_rows(path, TIMESTAMPS_PATH, n_bins, tshape[0])?;
                Some(read_as_f64(&ds, path, TIMESTAMPS_PATH)?)
            }
        };

        let rec = Recording { spikes, behavior, behavior_valid, timestamps, bin_seconds };
        rec.validate_at(path, &names)?;
        Ok(rec)
    }

    /// Writes the whole session to `path` (replacing any file there) as
    /// chunked datasets at the default paths. The data are written to a
    /// sibling temporary file that is renamed into place, so a failed write
    /// never leaves a half-written file under `path`.
    pub fn write(&self, path: &Path) -> Result<(), RecordingError> {
        self.validate_at(path, &DatasetNames::for_write())?;
        let mut tmp_name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
        // Unique per process and per call, so concurrent writes never share a temporary.
        static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tmp_name.push(format!(".tmp-{}-{n}", std::process::id()));
        let tmp = path.with_file_name(tmp_name);
        let written = self.write_file(&tmp, path);
        let renamed = written.and_then(|()| {
            std::fs::rename(&tmp, path).map_err(|source| RecordingError::Io {
                path: path.to_path_buf(),
                context: format!("renaming the finished temporary file {}", tmp.display()),
                source,
            })
        });
        if renamed.is_err() {
            // Best effort: the temporary file is useless once the write failed.
            let _ = std::fs::remove_file(&tmp);
        }
        renamed
    }

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

    /// Checks the invariants listed in the module docs; errors name `path`
    /// and the dataset names in `names`.
    fn validate_at(&self, path: &Path, names: &DatasetNames) -> Result<(), RecordingError> {
        check_bin_seconds(path, self.bin_seconds)?;
        let (t, c) = (self.spikes.rows, self.spikes.cols);
        if t == 0 || c == 0 {
            return Err(RecordingError::Empty {
                path: path.to_path_buf(),
                dataset: names.spikes.clone(),
                shape: vec![t, c],
            });
        }
        check_finite_rows(path, &names.spikes, &self.spikes, None)?;
        if let Some(valid) = &self.behavior_valid {
            expect_rows(path, &names.valid, t, valid.len())?;
        }
        if let Some(b) = &self.behavior {
            expect_rows(path, &names.behavior, t, b.rows)?;
            check_finite_rows(path, &names.behavior, b, self.behavior_valid.as_deref())?;
        }
        if let Some(ts) = &self.timestamps {
            expect_rows(path, &names.timestamps, t, ts.len())?;
            if let Some(row) = ts.iter().position(|x| !x.is_finite()) {
                return Err(RecordingError::NonFinite {
                    path: path.to_path_buf(),
                    dataset: names.timestamps.clone(),
                    row,
                    col: 0,
                });
            }
        }
        Ok(())
    }

    /// Writes every dataset to `target`; errors name `report` (the final path).
    fn write_file(&self, target: &Path, report: &Path) -> Result<(), RecordingError> {
        let file = hdf5::File::create(target).map_err(|e| h5err(report, "creating the file", e))?;
        write_root_attrs(&file, report, self.bin_seconds)?;
        write_spikes(&file, report, &self.spikes)?;
        if let Some(b) = &self.behavior {
            write_2d(&file, report, "behavior", b)?;
        }
        if let Some(valid) = &self.behavior_valid {
            let bytes: Vec<u8> = valid.iter().map(|&v| u8::from(v)).collect();
            write_1d(&file, report, "behavior_valid", &bytes)?;
        }
        if let Some(ts) = &self.timestamps {
            write_1d(&file, report, "timestamps", ts)?;
        }
        file.flush().map_err(|e| h5err(report, "flushing the file", e))?;
        file.close().map_err(|e| h5err(report, "closing the file", e))
    }
}

/// Stable 64-bit FNV-1a hash of the file's bytes, as 16 lowercase hex digits.
/// Identifies a recording's content (e.g. in a model file); not cryptographic.
pub fn file_hash(path: &Path) -> Result<String, RecordingError> {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let io =
        |context: &str, source| RecordingError::Io { path: path.to_path_buf(), context: context.to_string(), source };
    let mut file = std::fs::File::open(path).map_err(|e| io("opening the file to hash it", e))?;
    let mut buf = vec![0u8; 1 << 20];
    let mut hash = OFFSET;
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io("reading the file to hash it", e)),
        };
        for &byte in &buf[..n] {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(PRIME);
        }
    }
    Ok(format!("{hash:016x}"))
}

/// Reads a root string attribute of a session file; `Ok(None)` when absent.
/// Accepts variable-length UTF-8 or ASCII strings (what h5py and
/// [`AppendWriter::set_attr_str`] write).
pub fn read_attr_str(path: &Path, name: &str) -> Result<Option<String>, RecordingError> {
    let file = open_existing(path)?;
    let Some(attr) = open_attr(&file, path, name)? else {
        return Ok(None);
    };
    check_scalar_attr(&attr, path, name)?;
    let desc = attr_descriptor(&attr, path, name)?;
    let value = match desc {
        TypeDescriptor::VarLenUnicode => {
            attr.read_raw::<VarLenUnicode>().map(|v| v.first().map(|s| s.as_str().to_string()))
        }
        TypeDescriptor::VarLenAscii => {
            attr.read_raw::<hdf5::types::VarLenAscii>().map(|v| v.first().map(|s| s.as_str().to_string()))
        }
        other => {
            return Err(bad_attr(path, name, &format!("has type {other}; expected a variable-length string")));
        }
    };
    value.map_err(|e| h5err(path, &format!("reading attribute `{name}`"), e))
}

/// Reads a root numeric attribute (float or integer) of a session file as
/// `f64`; `Ok(None)` when absent.
pub fn read_attr_f64(path: &Path, name: &str) -> Result<Option<f64>, RecordingError> {
    let file = open_existing(path)?;
    read_number_attr(&file, path, name)
}

/// The `/seq` dataset of a session file written by the daemon (the stream's
/// sequence number of every recorded bin), if the file has one and it matches
/// the number of bins.
pub fn read_session_seq(path: &Path) -> Result<Option<Vec<u64>>, RecordingError> {
    let file = open_existing(path)?;
    let Ok(ds) = file.dataset("seq") else {
        return Ok(None);
    };
    let v: Vec<u64> = ds.read_raw::<u64>().map_err(|e| h5err(path, "reading dataset `seq`", e))?;
    Ok(Some(v))
}

/// Element type of one [`AppendWriter`] dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    F32,
    F64,
    U64,
    U8,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::F32 => "f32",
            Kind::F64 => "f64",
            Kind::U64 => "u64",
            Kind::U8 => "u8",
        }
    }
}

/// One growing dataset of an [`AppendWriter`].
struct Column {
    dataset: hdf5::Dataset,
    kind: Kind,
    /// 0 for 1-D datasets.
    cols: usize,
    rows: usize,
}

/// Append-only session writer for a live recorder: datasets grow along the
/// row axis in batches. Create it, `add_*` each dataset, then `append_*`
/// rows; `close` (or drop) finishes the file. A single thread should own it.
pub struct AppendWriter {
    file: hdf5::File,
    path: PathBuf,
    columns: HashMap<String, Column>,
}

impl std::fmt::Debug for AppendWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut names: Vec<(&String, usize)> = self.columns.iter().map(|(k, c)| (k, c.rows)).collect();
        names.sort();
        f.debug_struct("AppendWriter").field("path", &self.path).field("rows", &names).finish()
    }
}

impl AppendWriter {
    /// Creates a new file at `path` with root attributes `bin_seconds` and
    /// `format_version = 1`. Refuses to overwrite an existing file.
    pub fn create(path: &Path, bin_seconds: f64) -> Result<Self, RecordingError> {
        check_bin_seconds(path, bin_seconds)?;
        if path.exists() {
            return Err(RecordingError::AlreadyExists { path: path.to_path_buf() });
        }
        let file = hdf5::File::create_excl(path).map_err(|e| h5err(path, "creating the file", e))?;
        write_root_attrs(&file, path, bin_seconds)?;
        Ok(Self { file, path: path.to_path_buf(), columns: HashMap::new() })
    }

    /// Adds an empty `[0, cols]` `f32` dataset, chunked by 1024 rows.
    pub fn add_f32(&mut self, name: &str, cols: usize) -> Result<(), RecordingError> {
        if cols == 0 {
            return Err(RecordingError::InvalidValue {
                path: self.path.clone(),
                dataset: name.to_string(),
                reason: "a 2-D dataset needs at least one column".to_string(),
            });
        }
        self.add::<f32>(name, Kind::F32, cols)
    }

    /// Adds an empty 1-D `f64` dataset.
    pub fn add_f64(&mut self, name: &str) -> Result<(), RecordingError> {
        self.add::<f64>(name, Kind::F64, 0)
    }

    /// Adds an empty 1-D `u64` dataset.
    pub fn add_u64(&mut self, name: &str) -> Result<(), RecordingError> {
        self.add::<u64>(name, Kind::U64, 0)
    }

    /// Adds an empty 1-D `u8` dataset.
    pub fn add_u8(&mut self, name: &str) -> Result<(), RecordingError> {
        self.add::<u8>(name, Kind::U8, 0)
    }

    /// Appends whole rows (row-major, `rows_data.len()` a multiple of the
    /// dataset's columns) to a 2-D `f32` dataset.
    pub fn append_f32(&mut self, name: &str, rows_data: &[f32]) -> Result<(), RecordingError> {
        self.append(name, Kind::F32, rows_data)
    }

    /// Appends values to a 1-D `f64` dataset.
    pub fn append_f64(&mut self, name: &str, v: &[f64]) -> Result<(), RecordingError> {
        self.append(name, Kind::F64, v)
    }

    /// Appends values to a 1-D `u64` dataset.
    pub fn append_u64(&mut self, name: &str, v: &[u64]) -> Result<(), RecordingError> {
        self.append(name, Kind::U64, v)
    }

    /// Appends values to a 1-D `u8` dataset.
    pub fn append_u8(&mut self, name: &str, v: &[u8]) -> Result<(), RecordingError> {
        self.append(name, Kind::U8, v)
    }

    /// Rows appended so far to `name` (0 for a name never added).
    pub fn len(&self, name: &str) -> usize {
        self.columns.get(key(name)).map_or(0, |c| c.rows)
    }

    /// Sets (or replaces) a root attribute holding a variable-length UTF-8 string.
    pub fn set_attr_str(&mut self, name: &str, value: &str) -> Result<(), RecordingError> {
        let v: VarLenUnicode = value
            .parse()
            .map_err(|_| bad_attr(&self.path, name, "value contains a NUL byte, which HDF5 strings cannot hold"))?;
        self.replace_attr(name, &v)
    }

    /// Sets (or replaces) a root `f64` attribute.
    pub fn set_attr_f64(&mut self, name: &str, value: f64) -> Result<(), RecordingError> {
        self.replace_attr(name, &value)
    }

    /// Asks HDF5 to write its buffers to the file.
    pub fn flush(&mut self) -> Result<(), RecordingError> {
        self.file.flush().map_err(|e| h5err(&self.path, "flushing the file", e))
    }

    /// Flushes and closes the file.
    pub fn close(self) -> Result<(), RecordingError> {
        let Self { file, path, columns } = self;
        // Dataset handles keep the file open; release them first.
        drop(columns);
        file.flush().map_err(|e| h5err(&path, "flushing the file", e))?;
        file.close().map_err(|e| h5err(&path, "closing the file", e))
    }

    /// The file being written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn add<T: H5Type>(&mut self, name: &str, kind: Kind, cols: usize) -> Result<(), RecordingError> {
        let k = key(name);
        if k.is_empty() {
            return Err(RecordingError::InvalidValue {
                path: self.path.clone(),
                dataset: name.to_string(),
                reason: "dataset name is empty".to_string(),
            });
        }
        if self.columns.contains_key(k) || self.file.link_exists(k) {
            return Err(RecordingError::DatasetExists { path: self.path.clone(), dataset: k.to_string() });
        }
        ensure_parent_groups(&self.file, &self.path, k)?;
        let builder = self.file.new_dataset::<T>();
        let created = if cols == 0 {
            builder.chunk(CHUNK_LEN_1D).shape(Extent::resizable(0)).create(k)
        } else {
            builder.chunk((CHUNK_ROWS_2D, cols)).shape([Extent::resizable(0), Extent::fixed(cols)]).create(k)
        };
        let dataset = created.map_err(|e| h5err(&self.path, &format!("creating dataset `{k}`"), e))?;
        self.columns.insert(k.to_string(), Column { dataset, kind, cols, rows: 0 });
        Ok(())
    }

    fn append<T: H5Type>(&mut self, name: &str, kind: Kind, values: &[T]) -> Result<(), RecordingError> {
        let k = key(name);
        let path = &self.path;
        let column = self
            .columns
            .get_mut(k)
            .ok_or_else(|| RecordingError::UnknownDataset { path: path.clone(), dataset: k.to_string() })?;
        if column.kind != kind {
            return Err(RecordingError::WrongKind {
                path: path.clone(),
                dataset: k.to_string(),
                declared: column.kind.name(),
                appended: kind.name(),
            });
        }
        let context = || format!("appending to dataset `{k}`");
        if column.cols == 0 {
            let n = values.len();
            if n == 0 {
                return Ok(());
            }
            let end = column.rows + n;
            column.dataset.resize(end).map_err(|e| h5err(path, &context(), e))?;
            column
                .dataset
                .write_slice(ArrayView1::from(values), column.rows..end)
                .map_err(|e| h5err(path, &context(), e))?;
            column.rows = end;
        } else {
            if values.len() % column.cols != 0 {
                return Err(RecordingError::RaggedAppend {
                    path: path.clone(),
                    dataset: k.to_string(),
                    len: values.len(),
                    cols: column.cols,
                });
            }
            let n = values.len() / column.cols;
            if n == 0 {
                return Ok(());
            }
            let end = column.rows + n;
            let view = ArrayView2::from_shape((n, column.cols), values)
                .expect("invariant: length checked to be a whole number of rows");
            column.dataset.resize((end, column.cols)).map_err(|e| h5err(path, &context(), e))?;
            column
                .dataset
                .write_slice(view, Hyperslab::from(vec![SliceOrIndex::from(column.rows..end), SliceOrIndex::from(..)]))
                .map_err(|e| h5err(path, &context(), e))?;
            column.rows = end;
        }
        Ok(())
    }

    fn replace_attr<T: H5Type>(&mut self, name: &str, value: &T) -> Result<(), RecordingError> {
        let context = format!("writing attribute `{name}`");
        replace_root_attr(&self.file, name, value).map_err(|e| h5err(&self.path, &context, e))
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

fn expect_rows(path: &Path, dataset: &str, expected: usize, got: usize) -> Result<(), RecordingError> {
    if expected == got {
        Ok(())
    } else {
        Err(RecordingError::LengthMismatch { path: path.to_path_buf(), dataset: dataset.to_string(), expected, got })
    }
}

/// First non-finite element of `m`, skipping rows whose mask entry is false.
fn check_finite_rows(path: &Path, dataset: &str, m: &Matrix, mask: Option<&[bool]>) -> Result<(), RecordingError> {
    for r in 0..m.rows {
        if mask.is_some_and(|v| !v[r]) {
            continue;
        }
        if let Some(col) = m.row(r).iter().position(|x| !x.is_finite()) {
            return Err(RecordingError::NonFinite {
                path: path.to_path_buf(),
                dataset: dataset.to_string(),
                row: r,
                col,
            });
        }
    }
    Ok(())
}

fn open_existing(path: &Path) -> Result<hdf5::File, RecordingError> {
    if !path.exists() {
        return Err(RecordingError::NotFound { path: path.to_path_buf() });
    }
    hdf5::File::open(path).map_err(|source| RecordingError::Open { path: path.to_path_buf(), source })
}

/// True when every group along `name` exists and `name` itself is a link.
fn link_exists(file: &hdf5::File, name: &str) -> bool {
    let parts: Vec<&str> = name.split('/').filter(|p| !p.is_empty()).collect();
    let mut prefix = String::new();
    for part in parts {
        prefix.push('/');
        prefix.push_str(part);
        if !file.link_exists(&prefix) {
            return false;
        }
    }
    !prefix.is_empty()
}

/// Opens dataset `name`; `Ok(None)` when no object of that name exists.
fn open_dataset(file: &hdf5::File, path: &Path, name: &str) -> Result<Option<hdf5::Dataset>, RecordingError> {
    if !link_exists(file, name) {
        return Ok(None);
    }
    file.dataset(name).map(Some).map_err(|e| h5err(path, &format!("opening `{name}` as a dataset"), e))
}

fn expect_rank(ds: &hdf5::Dataset, path: &Path, name: &str, expected: usize) -> Result<Vec<usize>, RecordingError> {
    let shape = ds.shape();
    if shape.len() == expected {
        Ok(shape)
    } else {
        Err(RecordingError::WrongRank {
            path: path.to_path_buf(),
            dataset: name.to_string(),
            expected,
            got: shape.len(),
        })
    }
}

fn dataset_descriptor(ds: &hdf5::Dataset, path: &Path, name: &str) -> Result<TypeDescriptor, RecordingError> {
    ds.dtype()
        .and_then(|t| t.to_descriptor())
        .map_err(|e| h5err(path, &format!("reading the element type of `{name}`"), e))
}

/// Reads a whole numeric dataset in its stored type and converts each element with `f`.
fn read_conv<T: H5Type, U>(
    ds: &hdf5::Dataset,
    path: &Path,
    name: &str,
    f: impl Fn(T) -> U,
) -> Result<Vec<U>, RecordingError> {
    ds.read_raw::<T>()
        .map(|v| v.into_iter().map(f).collect())
        .map_err(|e| h5err(path, &format!("reading dataset `{name}`"), e))
}

fn unsupported(path: &Path, name: &str, desc: &TypeDescriptor) -> RecordingError {
    RecordingError::UnsupportedDtype { path: path.to_path_buf(), dataset: name.to_string(), dtype: desc.to_string() }
}

/// Any float or integer dataset as `f32` (integer counts convert exactly up to 2^24).
fn read_as_f32(ds: &hdf5::Dataset, path: &Path, name: &str) -> Result<Vec<f32>, RecordingError> {
    use TypeDescriptor as D;
    match dataset_descriptor(ds, path, name)? {
        D::Float(FloatSize::U4) => read_conv(ds, path, name, |x: f32| x),
        D::Float(FloatSize::U8) => read_conv(ds, path, name, |x: f64| x as f32),
        D::Unsigned(IntSize::U1) => read_conv(ds, path, name, |x: u8| f32::from(x)),
        D::Unsigned(IntSize::U2) => read_conv(ds, path, name, |x: u16| f32::from(x)),
        D::Unsigned(IntSize::U4) => read_conv(ds, path, name, |x: u32| x as f32),
        D::Unsigned(IntSize::U8) => read_conv(ds, path, name, |x: u64| x as f32),
        D::Integer(IntSize::U1) => read_conv(ds, path, name, |x: i8| f32::from(x)),
        D::Integer(IntSize::U2) => read_conv(ds, path, name, |x: i16| f32::from(x)),
        D::Integer(IntSize::U4) => read_conv(ds, path, name, |x: i32| x as f32),
        D::Integer(IntSize::U8) => read_conv(ds, path, name, |x: i64| x as f32),
        other => Err(unsupported(path, name, &other)),
    }
}

/// Any float or integer dataset as `f64`.
fn read_as_f64(ds: &hdf5::Dataset, path: &Path, name: &str) -> Result<Vec<f64>, RecordingError> {
    use TypeDescriptor as D;
    match dataset_descriptor(ds, path, name)? {
        D::Float(FloatSize::U4) => read_conv(ds, path, name, |x: f32| f64::from(x)),
        D::Float(FloatSize::U8) => read_conv(ds, path, name, |x: f64| x),
        D::Unsigned(IntSize::U1) => read_conv(ds, path, name, |x: u8| f64::from(x)),
        D::Unsigned(IntSize::U2) => read_conv(ds, path, name, |x: u16| f64::from(x)),
        D::Unsigned(IntSize::U4) => read_conv(ds, path, name, |x: u32| f64::from(x)),
        D::Unsigned(IntSize::U8) => read_conv(ds, path, name, |x: u64| x as f64),
        D::Integer(IntSize::U1) => read_conv(ds, path, name, |x: i8| f64::from(x)),
        D::Integer(IntSize::U2) => read_conv(ds, path, name, |x: i16| f64::from(x)),
        D::Integer(IntSize::U4) => read_conv(ds, path, name, |x: i32| f64::from(x)),
        D::Integer(IntSize::U8) => read_conv(ds, path, name, |x: i64| x as f64),
        other => Err(unsupported(path, name, &other)),
    }
}

/// A 0/1 label mask stored as any integer type or bool.
fn read_mask(ds: &hdf5::Dataset, path: &Path, name: &str) -> Result<Vec<bool>, RecordingError> {
    let values: Vec<f64> = match dataset_descriptor(ds, path, name)? {
        TypeDescriptor::Boolean => read_conv(ds, path, name, |x: bool| f64::from(u8::from(x)))?,
        TypeDescriptor::Unsigned(_) | TypeDescriptor::Integer(_) => read_as_f64(ds, path, name)?,
        other => return Err(unsupported(path, name, &other)),
    };
    values
        .iter()
        .enumerate()
        .map(|(row, &v)| {
            if v == 0.0 {
                Ok(false)
            } else if v == 1.0 {
                Ok(true)
            } else {
                Err(RecordingError::InvalidValue {
                    path: path.to_path_buf(),
                    dataset: name.to_string(),
                    reason: format!("value {v} at row {row}; expected 0 (unlabelled) or 1 (labelled)"),
                })
            }
        })
        .collect()
}

fn open_attr(file: &hdf5::File, path: &Path, name: &str) -> Result<Option<hdf5::Attribute>, RecordingError> {
    let names = file.attr_names().map_err(|e| h5err(path, "listing root attributes", e))?;
    if !names.iter().any(|n| n == name) {
        return Ok(None);
    }
    file.attr(name).map(Some).map_err(|e| h5err(path, &format!("opening attribute `{name}`"), e))
}

fn check_scalar_attr(attr: &hdf5::Attribute, path: &Path, name: &str) -> Result<(), RecordingError> {
    if attr.size() == 1 {
        Ok(())
    } else {
        Err(bad_attr(path, name, &format!("has shape {:?}; expected a single value", attr.shape())))
    }
}

fn attr_descriptor(attr: &hdf5::Attribute, path: &Path, name: &str) -> Result<TypeDescriptor, RecordingError> {
    attr.dtype()
        .and_then(|t| t.to_descriptor())
        .map_err(|e| h5err(path, &format!("reading the type of attribute `{name}`"), e))
}

/// A root attribute holding one float or integer, as `f64`; `None` when absent.
fn read_number_attr(file: &hdf5::File, path: &Path, name: &str) -> Result<Option<f64>, RecordingError> {
    let Some(attr) = open_attr(file, path, name)? else {
        return Ok(None);
    };
    check_scalar_attr(&attr, path, name)?;
    match attr_descriptor(&attr, path, name)? {
        TypeDescriptor::Float(_) | TypeDescriptor::Integer(_) | TypeDescriptor::Unsigned(_) => {}
        other => return Err(bad_attr(path, name, &format!("has type {other}; expected a number"))),
    }
    let values = attr.read_raw::<f64>().map_err(|e| h5err(path, &format!("reading attribute `{name}`"), e))?;
    values.first().copied().map(Some).ok_or_else(|| bad_attr(path, name, "is empty; expected a single value"))
}

fn replace_root_attr<T: H5Type>(file: &hdf5::File, name: &str, value: &T) -> hdf5::Result<()> {
    if file.attr_names()?.iter().any(|n| n == name) {
        file.delete_attr(name)?;
    }
    let attr = file.new_attr::<T>().shape(()).create(name)?;
    attr.as_writer().write_scalar(value)
}

fn write_root_attrs(file: &hdf5::File, path: &Path, bin_seconds: f64) -> Result<(), RecordingError> {
    replace_root_attr(file, "bin_seconds", &bin_seconds)
        .map_err(|e| h5err(path, "writing attribute `bin_seconds`", e))?;
    replace_root_attr(file, "format_version", &FORMAT_VERSION)
        .map_err(|e| h5err(path, "writing attribute `format_version`", e))
}

/// Creates every missing group on the way to dataset `name`.
fn ensure_parent_groups(file: &hdf5::File, path: &Path, name: &str) -> Result<(), RecordingError> {
    let parts: Vec<&str> = name.split('/').filter(|p| !p.is_empty()).collect();
    let mut prefix = String::new();
    for part in parts.iter().take(parts.len().saturating_sub(1)) {
        prefix.push('/');
        prefix.push_str(part);
        if !file.link_exists(&prefix) {
            file.create_group(&prefix).map_err(|e| h5err(path, &format!("creating group `{prefix}`"), e))?;
        }
    }
    Ok(())
}

fn write_2d(file: &hdf5::File, path: &Path, name: &str, m: &Matrix) -> Result<(), RecordingError> {
    let context = || format!("writing dataset `{name}`");
    let chunk_rows = m.rows.clamp(1, CHUNK_ROWS_2D);
    let ds = file
        .new_dataset::<f32>()
        .chunk((chunk_rows, m.cols.max(1)))
        .shape([Extent::resizable(m.rows), Extent::fixed(m.cols)])
        .create(name)
        .map_err(|e| h5err(path, &context(), e))?;
    let view = ArrayView2::from_shape((m.rows, m.cols), &m.data).expect("invariant: matrix data length is rows*cols");
    ds.write(view).map_err(|e| h5err(path, &context(), e))
}

/// Spike counts that are whole numbers in 0..=255 (or 0..=65535) are stored
/// as uint8 (uint16), shuffled and deflated: binned spikes shrink ~10x and read
/// back as the same f32 values. Anything else is stored as f32.
fn write_spikes(file: &hdf5::File, path: &Path, m: &Matrix) -> Result<(), RecordingError> {
    let whole = m.data.iter().all(|v| v.fract() == 0.0 && *v >= 0.0);
    let max = m.data.iter().cloned().fold(0.0f32, f32::max);
    if !whole || max > 65535.0 || m.data.is_empty() {
        return write_2d(file, path, "spikes", m);
    }
    let context = || "writing dataset `spikes`".to_string();
    let chunk = (m.rows.clamp(1, CHUNK_ROWS_2D), m.cols.max(1));
    let shape = [Extent::resizable(m.rows), Extent::fixed(m.cols)];
    if max <= 255.0 {
        let data: Vec<u8> = m.data.iter().map(|&v| v as u8).collect();
        let ds = file.new_dataset::<u8>().chunk(chunk).shuffle().deflate(4).shape(shape).create("spikes");
        let ds = ds.map_err(|e| h5err(path, &context(), e))?;
        let view = ArrayView2::from_shape((m.rows, m.cols), &data).expect("invariant: matrix data length is rows*cols");
        ds.write(view).map_err(|e| h5err(path, &context(), e))
    } else {
        let data: Vec<u16> = m.data.iter().map(|&v| v as u16).collect();
        let ds = file.new_dataset::<u16>().chunk(chunk).shuffle().deflate(4).shape(shape).create("spikes");
        let ds = ds.map_err(|e| h5err(path, &context(), e))?;
        let view = ArrayView2::from_shape((m.rows, m.cols), &data).expect("invariant: matrix data length is rows*cols");
        ds.write(view).map_err(|e| h5err(path, &context(), e))
    }
}

fn write_1d<T: H5Type>(file: &hdf5::File, path: &Path, name: &str, v: &[T]) -> Result<(), RecordingError> {
    let context = || format!("writing dataset `{name}`");
    let ds = file
        .new_dataset::<T>()
        .chunk(v.len().clamp(1, CHUNK_LEN_1D))
        .shape(Extent::resizable(v.len()))
        .create(name)
        .map_err(|e| h5err(path, &context(), e))?;
    ds.write(ArrayView1::from(v)).map_err(|e| h5err(path, &context(), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> Recording {
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
    fn fnv1a_matches_published_vectors() {
        let dir = tempfile::tempdir().unwrap();
        for (content, want) in
            [(&b""[..], "cbf29ce484222325"), (b"a", "af63dc4c8601ec8c"), (b"foobar", "85944171f73967e8")]
        {
            let p = dir.path().join("h.bin");
            std::fs::write(&p, content).unwrap();
            assert_eq!(file_hash(&p).unwrap(), want, "content {content:?}");
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

    #[test]
    fn validate_ignores_nan_only_in_unlabelled_rows() {
        let p = Path::new("/x.h5");
        let names = DatasetNames::for_write();
        small().validate_at(p, &names).unwrap();
        let mut r = small();
        r.behavior_valid = None;
        match r.validate_at(p, &names) {
            Err(RecordingError::NonFinite { dataset, row: 1, col: 0, .. }) => assert_eq!(dataset, "/behavior"),
            other => panic!("expected NonFinite, got {other:?}"),
        }
    }

    #[test]
    fn validate_rejects_mismatched_lengths_and_bad_bin_width() {
        let p = Path::new("/x.h5");
        let names = DatasetNames::for_write();
        let mut r = small();
        r.timestamps = Some(vec![0.0; 3]);
        assert!(matches!(r.validate_at(p, &names), Err(RecordingError::LengthMismatch { expected: 4, got: 3, .. })));
        let mut r = small();
        r.bin_seconds = 0.0;
        assert!(matches!(r.validate_at(p, &names), Err(RecordingError::BadAttribute { .. })));
    }

    #[test]
    fn write_read_round_trip_keeps_nan_in_unlabelled_rows() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.h5");
        let r = small();
        r.write(&p).unwrap();
        let back = Recording::read(&p, &ReadOptions::default()).unwrap();
        assert_eq!(back.spikes, r.spikes);
        assert_eq!(back.behavior_valid, r.behavior_valid);
        assert_eq!(back.timestamps, r.timestamps);
        let b = back.behavior.unwrap();
        assert!(b.get(1, 0).is_nan());
        assert_eq!((b.get(0, 0), b.get(3, 0)), (0.5, 2.5));
        // No temporary file left behind.
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("r.h5")]);
    }

    #[test]
    fn append_writer_rejects_misuse() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.h5");
        let mut w = AppendWriter::create(&p, 0.02).unwrap();
        w.add_f32("spikes", 3).unwrap();
        w.add_u8("flags").unwrap();
        assert!(matches!(w.add_f32("/spikes", 3), Err(RecordingError::DatasetExists { .. })));
        assert!(matches!(w.append_f32("spikes", &[1.0; 4]), Err(RecordingError::RaggedAppend { len: 4, cols: 3, .. })));
        assert!(matches!(w.append_f64("nope", &[1.0]), Err(RecordingError::UnknownDataset { .. })));
        assert!(matches!(
            w.append_f64("flags", &[1.0]),
            Err(RecordingError::WrongKind { declared: "u8", appended: "f64", .. })
        ));
        assert!(matches!(w.add_f32("empty_cols", 0), Err(RecordingError::InvalidValue { .. })));
        w.append_f32("spikes", &[]).unwrap();
        assert_eq!(w.len("spikes"), 0);
        w.close().unwrap();
        assert!(matches!(AppendWriter::create(&p, 0.02), Err(RecordingError::AlreadyExists { .. })));
        let other = dir.path().join("b.h5");
        assert!(matches!(AppendWriter::create(&other, -1.0), Err(RecordingError::BadAttribute { .. })));
        assert!(!other.exists());
    }

    #[test]
    fn append_writer_is_send() {
        fn assert_send<T: Send>() {}
        assert_send::<AppendWriter>();
    }
}
