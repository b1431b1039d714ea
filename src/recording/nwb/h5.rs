//! Small HDF5 readers for NWB objects: typed column reads, string and number
//! attributes, and discovery of the TimeSeries a file holds. Paths handed in
//! may lack the leading `/`; every error names the file and the object.

use std::path::Path;

use hdf5::types::{TypeDescriptor, VarLenAscii, VarLenUnicode};
use hdf5::LocationType;
use hdf5_metno as hdf5;

use super::NwbError;
use crate::recording::read::{check_plausible_size, dataset_descriptor, link_exists, read_as_f64, unsupported};
use crate::recording::{h5err, RecordingError};

/// Deepest group nesting searched for TimeSeries.
const MAX_DEPTH: usize = 8;

/// `name` with exactly one leading `/` and no trailing `/`.
pub(super) fn abs(name: &str) -> String {
    format!("/{}", name.trim_matches('/'))
}

/// `parent/child` as an absolute path.
pub(super) fn join(parent: &str, child: &str) -> String {
    format!("{}/{}", abs(parent).trim_end_matches('/'), child.trim_matches('/'))
}

/// The kind of object at `name`, or `None` when nothing is there.
pub(super) fn kind(file: &hdf5::File, name: &str) -> Option<LocationType> {
    let name = abs(name);
    if name == "/" {
        return Some(LocationType::Group);
    }
    if !link_exists(file, &name) {
        return None;
    }
    file.loc_type_by_name(&name).ok()
}

pub(super) fn is_group(file: &hdf5::File, name: &str) -> bool {
    matches!(kind(file, name), Some(LocationType::Group))
}

pub(super) fn is_dataset(file: &hdf5::File, name: &str) -> bool {
    matches!(kind(file, name), Some(LocationType::Dataset))
}

/// Opens the dataset at `name`, which the caller has checked exists.
pub(super) fn dataset(file: &hdf5::File, path: &Path, name: &str) -> Result<hdf5::Dataset, RecordingError> {
    file.dataset(&abs(name)).map_err(|e| h5err(path, &format!("opening dataset `{}`", abs(name)), e))
}

/// A whole numeric dataset as `f64` (any float or integer type), with its shape.
pub(super) fn f64s(file: &hdf5::File, path: &Path, name: &str) -> Result<(Vec<f64>, Vec<usize>), RecordingError> {
    let ds = dataset(file, path, name)?;
    let values = read_as_f64(&ds, path, &abs(name))?;
    Ok((values, ds.shape()))
}

/// A 1-D boolean column (HDF5 bool/enum as h5py writes it, or 0/1 integers).
pub(super) fn bools(file: &hdf5::File, path: &Path, name: &str) -> Result<Vec<bool>, RecordingError> {
    let ds = dataset(file, path, name)?;
    let name = abs(name);
    check_plausible_size(&ds, path, &name, 8)?;
    match dataset_descriptor(&ds, path, &name)? {
        TypeDescriptor::Boolean => ds.read_raw::<bool>().map_err(|e| h5err(path, &format!("reading `{name}`"), e)),
        TypeDescriptor::Enum(_) | TypeDescriptor::Integer(_) | TypeDescriptor::Unsigned(_) => {
            let raw = ds.read_raw::<i64>().map_err(|e| h5err(path, &format!("reading `{name}`"), e))?;
            Ok(raw.into_iter().map(|v| v != 0).collect())
        }
        other => Err(unsupported(path, &name, &other)),
    }
}

/// A 1-D column of variable-length strings (UTF-8 or ASCII).
pub(super) fn strings(file: &hdf5::File, path: &Path, name: &str) -> Result<Vec<String>, RecordingError> {
    let ds = dataset(file, path, name)?;
    let name = abs(name);
    let read_err = |e| h5err(path, &format!("reading `{name}`"), e);
    check_plausible_size(&ds, path, &name, 16)?;
    match dataset_descriptor(&ds, path, &name)? {
        TypeDescriptor::VarLenUnicode => {
            Ok(ds.read_raw::<VarLenUnicode>().map_err(read_err)?.iter().map(|s| s.as_str().to_string()).collect())
        }
        TypeDescriptor::VarLenAscii => {
            Ok(ds.read_raw::<VarLenAscii>().map_err(read_err)?.iter().map(|s| s.as_str().to_string()).collect())
        }
        other => Err(unsupported(path, &name, &other)),
    }
}

/// A numeric attribute of the object at `name` as `f64`; `None` when absent
/// or not a single number.
pub(super) fn attr_f64(file: &hdf5::File, name: &str, attr: &str) -> Option<f64> {
    match kind(file, name)? {
        LocationType::Dataset => {
            let ds = file.dataset(&abs(name)).ok()?;
            loc_attr_f64(&ds, attr)
        }
        LocationType::Group => {
            let g = file.group(&abs(name)).ok()?;
            loc_attr_f64(&g, attr)
        }
        _ => None,
    }
}

fn loc_attr_f64(loc: &hdf5::Location, attr: &str) -> Option<f64> {
    // Opened by name, never listed: listing attributes of a damaged file
    // makes hdf5-metno build an absurd error string and abort.
    let a = loc.attr(attr).ok()?;
    if a.size() != 1 {
        return None;
    }
    a.read_raw::<f64>().ok()?.first().copied()
}

/// Whether the group at `name` looks like a TimeSeries: a `data` dataset and
/// either `timestamps` or `starting_time`.
pub(super) fn is_series(file: &hdf5::File, name: &str) -> bool {
    is_group(file, name)
        && is_dataset(file, &join(name, "data"))
        && (is_dataset(file, &join(name, "timestamps")) || is_dataset(file, &join(name, "starting_time")))
}

/// Every TimeSeries-like group at or below `root`, sorted.
pub(super) fn find_series(file: &hdf5::File, root: &str) -> Vec<String> {
    let mut out = Vec::new();
    walk(file, &abs(root), 0, &mut out);
    out.sort();
    out
}

fn walk(file: &hdf5::File, name: &str, depth: usize, out: &mut Vec<String>) {
    if depth > MAX_DEPTH || !is_group(file, name) {
        return;
    }
    if is_series(file, name) {
        out.push(name.to_string());
        return;
    }
    let Ok(group) = file.group(name) else { return };
    let Ok(members) = group.member_names() else { return };
    for m in members {
        // Cached specifications are not data.
        if depth == 0 && m == "specifications" {
            continue;
        }
        walk(file, &join(name, &m), depth + 1, out);
    }
}

/// Names of the groups at the root, as `/name`.
pub(super) fn root_groups(file: &hdf5::File) -> Vec<String> {
    let Ok(members) = file.member_names() else { return Vec::new() };
    members.into_iter().map(|m| abs(&m)).filter(|m| is_group(file, m)).collect()
}

/// A missing or unusable column of `table`.
pub(super) fn bad_column(path: &Path, table: &str, column: &str, reason: impl Into<String>) -> NwbError {
    NwbError::BadColumn {
        path: path.to_path_buf(),
        table: table.to_string(),
        column: column.to_string(),
        reason: reason.into(),
    }
}

/// A 1-D numeric column `table/column` that must exist.
pub(super) fn column_f64(
    file: &hdf5::File,
    path: &Path,
    table: &str,
    column: &str,
) -> Result<Vec<f64>, RecordingError> {
    let name = join(table, column);
    if !is_dataset(file, &name) {
        return Err(bad_column(path, table, column, "is missing; expected a 1-D numeric dataset").into());
    }
    let (values, shape) = f64s(file, path, &name)?;
    if shape.len() != 1 {
        return Err(bad_column(path, table, column, format!("has shape {shape:?}; expected 1-D")).into());
    }
    Ok(values)
}
