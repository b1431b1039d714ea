//! Whole-file writing: [`Recording::write`] validates the session, writes
//! every dataset to a sibling temporary file and renames it into place, so a
//! failed write never leaves a half-written file under the target path.
//! Spikes that are small whole numbers are stored compressed as uint8/uint16
//! (`write_spikes`); everything else as `f32`/`f64`.
//!
//! Also owns the root attributes every session carries (`bin_seconds`,
//! `format_version`), which [`super::AppendWriter`] writes the same way.

use std::path::Path;

use hdf5::{Extent, H5Type};
use hdf5_metno as hdf5;
use ndarray::{ArrayView1, ArrayView2};

use super::{h5err, DatasetNames, Recording, RecordingError, CHUNK_LEN_1D, CHUNK_ROWS_2D, FORMAT_VERSION};
use crate::matrix::Matrix;

impl Recording {
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

pub(super) fn replace_root_attr<T: H5Type>(file: &hdf5::File, name: &str, value: &T) -> hdf5::Result<()> {
    if file.attr(name).is_ok() {
        file.delete_attr(name)?;
    }
    let attr = file.new_attr::<T>().shape(()).create(name)?;
    attr.as_writer().write_scalar(value)
}

pub(super) fn write_root_attrs(file: &hdf5::File, path: &Path, bin_seconds: f64) -> Result<(), RecordingError> {
    replace_root_attr(file, "bin_seconds", &bin_seconds)
        .map_err(|e| h5err(path, "writing attribute `bin_seconds`", e))?;
    replace_root_attr(file, "format_version", &FORMAT_VERSION)
        .map_err(|e| h5err(path, "writing attribute `format_version`", e))
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
    use crate::recording::tests::small;
    use crate::recording::ReadOptions;

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
}
