//! [`AppendWriter`]: the live recorder's append-only session writer.
//! Datasets are declared once (`add_*`), created chunked and resizable along
//! the row axis, then grown in batches (`append_*`); each keeps the element
//! type and column count it was declared with, and every mismatch is an
//! error, never a silent conversion. One thread owns a writer (hdf5-metno
//! serialises all HDF5 calls behind one global lock).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use hdf5::types::VarLenUnicode;
use hdf5::{Extent, H5Type, Hyperslab, SliceOrIndex};
use hdf5_metno as hdf5;
use ndarray::{ArrayView1, ArrayView2};

use super::write::{replace_root_attr, write_root_attrs};
use super::{bad_attr, check_bin_seconds, h5err, key, RecordingError, CHUNK_LEN_1D, CHUNK_ROWS_2D};

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

    /// Creates group `name` and lets `fill` write into it (settings that
    /// belong with the session, e.g. the front end's).
    pub fn add_group(
        &mut self,
        name: &str,
        fill: impl FnOnce(&hdf5::Group) -> hdf5::Result<()>,
    ) -> Result<(), RecordingError> {
        let g = self.file.create_group(name).map_err(|e| h5err(&self.path, "creating a group", e))?;
        fill(&g).map_err(|e| h5err(&self.path, "writing a group", e))
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
            if !values.len().is_multiple_of(column.cols) {
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

#[cfg(test)]
mod tests {
    use super::*;

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
