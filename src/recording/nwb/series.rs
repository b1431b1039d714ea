//! TimeSeries (and SpatialSeries, or any subtype) reading and binning.
//!
//! A series is `data` `[N]` or `[N, B]` with either `timestamps` `[N]` or a
//! scalar `starting_time` whose `rate` attribute (Hz) spaces the samples.
//! Values are `data · conversion + offset` (attributes of `data`, defaults
//! 1 and 0). [`Grid`] is the bin grid every source is mapped onto; binning
//! averages the samples that fall inside a bin and never looks past the
//! bin's end (causal).

use std::path::Path;

use hdf5_metno as hdf5;

use super::h5::{attr_f64, f64s, is_dataset, join};
use super::{NwbError, EDGE_TOLERANCE};
use crate::matrix::Matrix;
use crate::recording::RecordingError;

/// The bin grid: bin `k` covers `[start + k·bin, start + (k+1)·bin)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Grid {
    pub start: f64,
    pub bin: f64,
    pub n: usize,
}

impl Grid {
    /// Bin holding time `t` (edge times go to the later bin), if on the grid.
    pub fn index(&self, t: f64) -> Option<usize> {
        let x = (t - self.start) / self.bin + EDGE_TOLERANCE;
        if !x.is_finite() || x < 0.0 {
            return None;
        }
        let k = x.floor() as usize;
        (k < self.n).then_some(k)
    }

    /// Number of bins needed for an event at time `t` to be on the grid
    /// (0 when `t` is before the start).
    pub fn bins_to_include(start: f64, bin: f64, t: f64) -> usize {
        let x = (t - start) / bin + EDGE_TOLERANCE;
        if x.is_finite() && x >= 0.0 {
            x.floor() as usize + 1
        } else {
            0
        }
    }

    /// Bins lying wholly inside `[a, b]` (empty for non-finite bounds).
    pub fn bins_within(&self, a: f64, b: f64) -> std::ops::Range<usize> {
        if !(a.is_finite() && b.is_finite()) {
            return 0..0;
        }
        let first = ((a - self.start) / self.bin - EDGE_TOLERANCE).ceil().max(0.0) as usize;
        let end = (((b - self.start) / self.bin + EDGE_TOLERANCE).floor().max(0.0) as usize).min(self.n);
        first.min(end)..end
    }

    /// Start time of bin `k`.
    pub fn time(&self, k: usize) -> f64 {
        self.start + k as f64 * self.bin
    }
}

/// One TimeSeries read into memory, values converted to physical units.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Series {
    /// Group path of the series.
    pub name: String,
    /// Samples, `[N, B]`.
    pub data: Matrix64,
    /// Sample times in seconds, `N` values.
    pub times: Vec<f64>,
}

/// A row-major `f64` matrix (values before the `f32` of a [`Recording`]).
///
/// [`Recording`]: crate::recording::Recording
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Matrix64 {
    pub rows: usize,
    pub cols: usize,
    pub values: Vec<f64>,
}

fn bad(path: &Path, series: &str, reason: impl Into<String>) -> RecordingError {
    NwbError::BadSeries { path: path.to_path_buf(), series: series.to_string(), reason: reason.into() }.into()
}

/// Reads the series at `name` (a group holding `data`).
pub(super) fn read_series(file: &hdf5::File, path: &Path, name: &str) -> Result<Series, RecordingError> {
    let data_name = join(name, "data");
    let (raw, shape) = f64s(file, path, &data_name)?;
    let (rows, cols) = match shape.as_slice() {
        [n] => (*n, 1),
        [n, b] => (*n, *b),
        other => return Err(bad(path, name, format!("`data` has shape {other:?}; expected [N] or [N, B]"))),
    };
    if rows == 0 || cols == 0 {
        return Err(bad(path, name, format!("`data` is empty (shape {shape:?}); expected at least one sample")));
    }
    let conversion = attr_f64(file, &data_name, "conversion").unwrap_or(1.0);
    let offset = attr_f64(file, &data_name, "offset").unwrap_or(0.0);
    if !(conversion.is_finite() && offset.is_finite()) {
        return Err(bad(
            path,
            name,
            format!("`data` has conversion {conversion} and offset {offset}; expected finite numbers"),
        ));
    }
    let values = raw.into_iter().map(|v| v * conversion + offset).collect();
    let times = read_times(file, path, name, rows)?;
    Ok(Series { name: name.to_string(), data: Matrix64 { rows, cols, values }, times })
}

/// Sample times from `timestamps`, or `starting_time` + its `rate`.
fn read_times(file: &hdf5::File, path: &Path, name: &str, rows: usize) -> Result<Vec<f64>, RecordingError> {
    let ts_name = join(name, "timestamps");
    let times = if is_dataset(file, &ts_name) {
        let (ts, shape) = f64s(file, path, &ts_name)?;
        if shape.len() != 1 || ts.len() != rows {
            return Err(bad(
                path,
                name,
                format!("`timestamps` has shape {shape:?}; expected [{rows}], one per sample of `data`"),
            ));
        }
        ts
    } else {
        let st_name = join(name, "starting_time");
        if !is_dataset(file, &st_name) {
            return Err(bad(path, name, "has neither `timestamps` nor `starting_time`; expected one of them"));
        }
        let (st, _) = f64s(file, path, &st_name)?;
        let start =
            st.first().copied().ok_or_else(|| bad(path, name, "`starting_time` is empty; expected one number"))?;
        let rate = attr_f64(file, &st_name, "rate").ok_or_else(|| {
            bad(path, name, "`starting_time` has no `rate` attribute; expected the sampling rate in Hz")
        })?;
        if !(rate.is_finite() && rate > 0.0) {
            return Err(bad(path, name, format!("`starting_time` rate is {rate}; expected a rate in Hz > 0")));
        }
        (0..rows).map(|i| start + i as f64 / rate).collect()
    };
    if let Some(i) = times.iter().position(|t| !t.is_finite()) {
        return Err(bad(path, name, format!("sample {i} has a non-finite time; expected finite seconds")));
    }
    Ok(times)
}

/// Per-bin mean of the samples inside each bin. A bin is `true` in the
/// returned mask when every column has at least one finite sample in it;
/// columns without one hold NaN.
pub(super) fn bin_mean(series: &Series, grid: &Grid) -> (Matrix, Vec<bool>) {
    let cols = series.data.cols;
    let mut sum = vec![0.0f64; grid.n * cols];
    let mut count = vec![0u32; grid.n * cols];
    for (i, &t) in series.times.iter().enumerate() {
        let Some(k) = grid.index(t) else { continue };
        for c in 0..cols {
            let v = series.data.values[i * cols + c];
            if v.is_finite() {
                sum[k * cols + c] += v;
                count[k * cols + c] += 1;
            }
        }
    }
    let values: Vec<f32> =
        sum.iter().zip(&count).map(|(&s, &n)| if n > 0 { (s / f64::from(n)) as f32 } else { f32::NAN }).collect();
    let valid = (0..grid.n).map(|k| count[k * cols..(k + 1) * cols].iter().all(|&n| n > 0)).collect();
    (Matrix::from_vec(grid.n, cols, values), valid)
}

/// Number of bins from `start` that holds every sample of `series`.
pub(super) fn bins_needed(series: &Series, start: f64, bin: f64) -> usize {
    series.times.iter().map(|&t| Grid::bins_to_include(start, bin, t)).max().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(times: Vec<f64>, values: Vec<f64>, cols: usize) -> Series {
        let rows = times.len();
        Series { name: "/s".into(), data: Matrix64 { rows, cols, values }, times }
    }

    #[test]
    fn grid_puts_edge_times_in_the_later_bin() {
        let g = Grid { start: 0.0, bin: 0.02, n: 100 };
        for k in 0..100 {
            assert_eq!(g.index(k as f64 * 0.02), Some(k), "time {}", k as f64 * 0.02);
        }
        assert_eq!(g.index(-0.001), None);
        assert_eq!(g.index(2.0), None);
        assert_eq!(Grid::bins_to_include(0.0, 0.02, 0.039), 2);
        assert_eq!(Grid::bins_to_include(0.0, 0.02, 0.04), 3);
        assert_eq!(Grid::bins_to_include(1.0, 0.02, 0.5), 0);
        assert_eq!(g.bins_within(0.03, 0.1), 2..5);
        assert_eq!(g.bins_within(0.0, 10.0), 0..100);
        assert!(g.bins_within(0.05, 0.055).is_empty());
    }

    #[test]
    fn bin_mean_averages_inside_bins_and_marks_empty_bins() {
        // 3 bins of 1 s; samples at 0.1, 0.6 (bin 0), none in bin 1, 2.5 (bin 2).
        let s = series(vec![0.1, 0.6, 2.5, 3.5], vec![1.0, 10.0, 3.0, 30.0, 5.0, 50.0, 7.0, 70.0], 2);
        let (m, valid) = bin_mean(&s, &Grid { start: 0.0, bin: 1.0, n: 3 });
        assert_eq!(valid, vec![true, false, true]);
        assert_eq!((m.get(0, 0), m.get(0, 1)), (2.0, 20.0));
        assert!(m.get(1, 0).is_nan());
        assert_eq!(m.get(2, 1), 50.0);
        assert_eq!(bins_needed(&s, 0.0, 1.0), 4);
    }

    #[test]
    fn nan_samples_do_not_count() {
        let s = series(vec![0.1, 0.2], vec![f64::NAN, 4.0], 1);
        let (m, valid) = bin_mean(&s, &Grid { start: 0.0, bin: 1.0, n: 1 });
        assert_eq!((m.get(0, 0), valid[0]), (4.0, true));
    }
}
