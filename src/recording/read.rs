//! Reading session files: [`Recording::read`] with its validation
//! (`Recording::validate_at`, also run before every whole-file write), the
//! root-attribute and `/seq` readers, and [`file_hash`].
//!
//! Every numeric dataset is read in its stored type and converted (spikes
//! and behaviour to `f32`, timestamps to `f64`); an absent optional dataset
//! is `None`, never an error. Every error names the file and the dataset or
//! attribute at fault.

use std::io::Read;
use std::path::Path;

use hdf5::types::{FloatSize, IntSize, TypeDescriptor, VarLenUnicode};
use hdf5::H5Type;
use hdf5_metno as hdf5;

use super::{
    bad_attr, check_bin_seconds, h5err, key, DatasetNames, ReadOptions, Recording, RecordingError,
    DEFAULT_BEHAVIOR_PATH, FORMAT_VERSION, TIMESTAMPS_PATH, VALID_SUFFIX,
};
use crate::matrix::Matrix;

/// `bin_seconds` (required, > 0) and `format_version` (optional, known) of a session file.
fn read_header(file: &hdf5::File, path: &Path) -> Result<f64, RecordingError> {
    let Some(bin_seconds) = read_number_attr(file, path, "bin_seconds")? else {
        return Err(bad_attr(path, "bin_seconds", "is missing; expected the bin width in seconds (> 0)"));
    };
    check_bin_seconds(path, bin_seconds)?;
    if let Some(v) = read_number_attr(file, path, "format_version")? {
        if v != FORMAT_VERSION as f64 {
            let why = format!("is {v}; this reader understands format_version {FORMAT_VERSION} only");
            return Err(bad_attr(path, "format_version", &why));
        }
    }
    Ok(bin_seconds)
}

/// The `bins × channels` observation dataset `name` (required, non-empty).
fn read_spikes(file: &hdf5::File, path: &Path, name: &str) -> Result<Matrix, RecordingError> {
    let ds = open_dataset(file, path, name)?
        .ok_or_else(|| RecordingError::MissingDataset { path: path.to_path_buf(), dataset: name.to_string() })?;
    let shape = expect_rank(&ds, path, name, 2)?;
    if shape[0] == 0 || shape[1] == 0 {
        return Err(RecordingError::Empty { path: path.to_path_buf(), dataset: name.to_string(), shape });
    }
    Ok(Matrix::from_vec(shape[0], shape[1], read_as_f32(&ds, path, name)?))
}

type Behavior = (Option<Matrix>, Option<Vec<bool>>);

/// Behaviour `names.behavior` with its validity mask `names.valid`, both
/// optional, `n_bins` rows each. Only the default behaviour path may be absent.
fn read_behavior(
    file: &hdf5::File,
    path: &Path,
    names: &DatasetNames,
    n_bins: usize,
) -> Result<Behavior, RecordingError> {
    let bpath = names.behavior.as_str();
    let ds = match open_dataset(file, path, bpath)? {
        Some(ds) => ds,
        None if key(bpath) == key(DEFAULT_BEHAVIOR_PATH) => return Ok((None, None)),
        None => return Err(RecordingError::MissingDataset { path: path.to_path_buf(), dataset: bpath.to_string() }),
    };
    let bshape = expect_rank(&ds, path, bpath, 2)?;
    expect_rows(path, bpath, n_bins, bshape[0])?;
    let b = Matrix::from_vec(bshape[0], bshape[1], read_as_f32(&ds, path, bpath)?);
    let valid = match open_dataset(file, path, &names.valid)? {
        None => None,
        Some(vds) => {
            let vshape = expect_rank(&vds, path, &names.valid, 1)?;
            expect_rows(path, &names.valid, n_bins, vshape[0])?;
            Some(read_mask(&vds, path, &names.valid)?)
        }
    };
    Ok((Some(b), valid))
}

/// An optional one-dimensional f64 dataset of `n_bins` rows.
fn read_optional_column(
    file: &hdf5::File,
    path: &Path,
    name: &str,
    n_bins: usize,
) -> Result<Option<Vec<f64>>, RecordingError> {
    let Some(ds) = open_dataset(file, path, name)? else { return Ok(None) };
    let shape = expect_rank(&ds, path, name, 1)?;
    expect_rows(path, name, n_bins, shape[0])?;
    Ok(Some(read_as_f64(&ds, path, name)?))
}

impl Recording {
    /// Reads and validates a session file (see the module docs for the
    /// layout), or an NWB file (see [`super::nwb`]).
    pub fn read(path: &Path, opts: &ReadOptions) -> Result<Recording, RecordingError> {
        if !path.exists() {
            return Err(RecordingError::NotFound { path: path.to_path_buf() });
        }
        let file =
            hdf5::File::open(path).map_err(|source| RecordingError::Open { path: path.to_path_buf(), source })?;
        if super::nwb::is_nwb(&file, path) {
            let rec = super::nwb::read_nwb(&file, path, opts)?;
            rec.validate_at(path, &DatasetNames::for_write())?;
            return Ok(rec);
        }

        let bin_seconds = read_header(&file, path)?;
        let spikes_name = opts.spikes_path.as_str();
        let spikes = read_spikes(&file, path, spikes_name)?;
        let n_bins = spikes.rows;
        let mut names = DatasetNames::for_write();
        names.spikes = spikes_name.to_string();
        let (behavior, behavior_valid) = match &opts.behavior_path {
            None => (None, None),
            Some(bpath) => {
                names.behavior = bpath.clone();
                names.valid = format!("{bpath}{VALID_SUFFIX}");
                read_behavior(&file, path, &names, n_bins)?
            }
        };
        let timestamps = read_optional_column(&file, path, TIMESTAMPS_PATH, n_bins)?;
        let rec = Recording { spikes, behavior, behavior_valid, timestamps, bin_seconds };
        rec.validate_at(path, &names)?;
        Ok(rec)
    }

    /// Checks the invariants listed in the module docs; errors name `path`
    /// and the dataset names in `names`.
    pub(super) fn validate_at(&self, path: &Path, names: &DatasetNames) -> Result<(), RecordingError> {
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
/// [`super::AppendWriter::set_attr_str`] write).
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
    check_plausible_size(&ds, path, "seq", 8)?;
    let v: Vec<u64> = ds.read_raw::<u64>().map_err(|e| h5err(path, "reading dataset `seq`", e))?;
    Ok(Some(v))
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
pub(super) fn link_exists(file: &hdf5::File, name: &str) -> bool {
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
pub(super) fn open_dataset(
    file: &hdf5::File,
    path: &Path,
    name: &str,
) -> Result<Option<hdf5::Dataset>, RecordingError> {
    if !link_exists(file, name) {
        return Ok(None);
    }
    file.dataset(name).map(Some).map_err(|e| h5err(path, &format!("opening `{name}` as a dataset"), e))
}

pub(super) fn expect_rank(
    ds: &hdf5::Dataset,
    path: &Path,
    name: &str,
    expected: usize,
) -> Result<Vec<usize>, RecordingError> {
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

pub(super) fn dataset_descriptor(
    ds: &hdf5::Dataset,
    path: &Path,
    name: &str,
) -> Result<TypeDescriptor, RecordingError> {
    ds.dtype()
        .and_then(|t| t.to_descriptor())
        .map_err(|e| h5err(path, &format!("reading the element type of `{name}`"), e))
}

/// Most a compressed dataset can expand relative to its file (deflate's
/// limit is ~1032:1), plus room for small files.
const MAX_EXPANSION: u64 = 1100;

/// Refuses a dataset whose declared shape needs more memory than its file
/// could possibly hold: damaged metadata must not make the reader try to
/// allocate (and abort on) an absurd buffer.
pub(super) fn check_plausible_size(
    ds: &hdf5::Dataset,
    path: &Path,
    name: &str,
    elem: usize,
) -> Result<(), RecordingError> {
    let file_bytes = std::fs::metadata(path).map(|m| m.len()).unwrap_or(u64::MAX / MAX_EXPANSION);
    let bound = file_bytes.saturating_mul(MAX_EXPANSION).saturating_add(16 << 20);
    // The shape's product may overflow on damaged metadata (Dataset::size would panic).
    let bytes = ds.shape().iter().fold(elem as u64, |acc, &d| acc.saturating_mul(d as u64));
    if bytes > bound {
        return Err(RecordingError::InvalidValue {
            path: path.to_path_buf(),
            dataset: name.to_string(),
            reason: format!(
                "declares shape {:?} ({bytes} bytes), more than a {file_bytes}-byte file can hold; the file is damaged",
                ds.shape()
            ),
        });
    }
    Ok(())
}

/// Reads a whole numeric dataset in its stored type and converts each element with `f`.
pub(super) fn read_conv<T: H5Type, U>(
    ds: &hdf5::Dataset,
    path: &Path,
    name: &str,
    f: impl Fn(T) -> U,
) -> Result<Vec<U>, RecordingError> {
    check_plausible_size(ds, path, name, std::mem::size_of::<T>())?;
    ds.read_raw::<T>()
        .map(|v| v.into_iter().map(f).collect())
        .map_err(|e| h5err(path, &format!("reading dataset `{name}`"), e))
}

pub(super) fn unsupported(path: &Path, name: &str, desc: &TypeDescriptor) -> RecordingError {
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
pub(super) fn read_as_f64(ds: &hdf5::Dataset, path: &Path, name: &str) -> Result<Vec<f64>, RecordingError> {
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
    // Opened by name, never listed: listing the attributes of a damaged file
    // makes hdf5-metno build an absurd error string and abort. An attribute
    // that cannot be opened counts as absent (the caller then names it).
    let _ = path;
    Ok(file.attr(name).ok())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recording::tests::small;

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
}
