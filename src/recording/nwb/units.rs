//! The Units table: spike trains per unit from the ragged `spike_times`
//! column, optional observation intervals, unit selection, and binning into
//! counts.
//!
//! A ragged column `X` is stored as the concatenation `X` plus `X_index`,
//! the cumulative end offset of each row (any unsigned or signed integer
//! type). The index must have one entry per `id`, never decrease, and end at
//! the length of `X`; anything else is [`NwbError::BadIndex`].

use std::ops::Range;
use std::path::Path;

use hdf5_metno as hdf5;

use super::h5::{bad_column, bools, column_f64, f64s, find_series, is_dataset, join, root_groups};
use super::series::Grid;
use super::{NwbError, NwbOptions};
use crate::matrix::Matrix;
use crate::recording::RecordingError;

/// Observation intervals `(start, stop)` in seconds of one unit.
type Intervals = Vec<(f64, f64)>;

/// The selected units of a Units table.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Units {
    /// Unit ids, in the order of the spike columns.
    pub ids: Vec<i64>,
    /// Spike times (s) of each unit.
    pub trains: Vec<Vec<f64>>,
    /// Observation intervals `(start, stop)` of each unit; `None` when the
    /// table has no `obs_intervals` (every unit observed throughout).
    pub obs: Option<Vec<Intervals>>,
}

/// Reads the Units table at `table` and keeps the units `opts` selects.
pub(super) fn read_units(
    file: &hdf5::File,
    path: &Path,
    table: &str,
    opts: &NwbOptions,
) -> Result<Units, RecordingError> {
    if !is_dataset(file, &join(table, "spike_times")) {
        let mut found = root_groups(file);
        found.extend(find_series(file, "/"));
        return Err(NwbError::MissingUnits { path: path.to_path_buf(), group: table.to_string(), found }.into());
    }
    let ids: Vec<i64> = column_f64(file, path, table, "id")?.into_iter().map(|v| v as i64).collect();
    let times = column_f64(file, path, table, "spike_times")?;
    let rows = ragged_rows(file, path, table, "spike_times", times.len(), ids.len())?;
    let trains: Vec<Vec<f64>> = rows.into_iter().map(|r| times[r].to_vec()).collect();
    if let Some(i) = trains.iter().flatten().position(|t| !t.is_finite()) {
        return Err(bad_column(path, table, "spike_times", format!("value {i} is not finite; expected seconds")).into());
    }
    let obs = read_obs_intervals(file, path, table, ids.len())?;
    let keep = select(file, path, table, &ids, opts)?;
    Ok(Units {
        ids: keep.iter().map(|&i| ids[i]).collect(),
        trains: keep.iter().map(|&i| trains[i].clone()).collect(),
        obs: obs.map(|o| keep.iter().map(|&i| o[i].clone()).collect()),
    })
}

/// Row ranges of the ragged column `column` from `column_index`.
fn ragged_rows(
    file: &hdf5::File,
    path: &Path,
    table: &str,
    column: &str,
    len: usize,
    n_rows: usize,
) -> Result<Vec<Range<usize>>, RecordingError> {
    let index_name = join(table, &format!("{column}_index"));
    let target = join(table, column);
    let bad = |reason: String| -> RecordingError {
        NwbError::BadIndex { path: path.to_path_buf(), index: index_name.clone(), target: target.clone(), reason }
            .into()
    };
    if !is_dataset(file, &index_name) {
        return Err(bad(format!("the index is missing; expected {n_rows} cumulative end offsets")));
    }
    let (ends, shape) = f64s(file, path, &index_name)?;
    if shape.len() != 1 || ends.len() != n_rows {
        return Err(bad(format!("shape {shape:?}; expected [{n_rows}], one entry per row of `id`")));
    }
    let mut rows = Vec::with_capacity(n_rows);
    let mut prev = 0usize;
    for (i, &e) in ends.iter().enumerate() {
        if !(e >= prev as f64 && e.fract() == 0.0 && e <= len as f64) {
            return Err(bad(format!(
                "entry {i} is {e} after {prev}; expected non-decreasing whole offsets up to {len}, the length of `{column}`"
            )));
        }
        rows.push(prev..e as usize);
        prev = e as usize;
    }
    if prev != len {
        return Err(bad(format!("the last offset is {prev} but `{column}` holds {len} values; expected them equal")));
    }
    Ok(rows)
}

/// Observation intervals per unit, when the table has them.
fn read_obs_intervals(
    file: &hdf5::File,
    path: &Path,
    table: &str,
    n_rows: usize,
) -> Result<Option<Vec<Intervals>>, RecordingError> {
    let name = join(table, "obs_intervals");
    if !is_dataset(file, &name) {
        return Ok(None);
    }
    let (flat, shape) = f64s(file, path, &name)?;
    if shape.len() != 2 || shape[1] != 2 {
        return Err(bad_column(path, table, "obs_intervals", format!("has shape {shape:?}; expected [N, 2]")).into());
    }
    let rows = ragged_rows(file, path, table, "obs_intervals", shape[0], n_rows)?;
    Ok(Some(rows.into_iter().map(|r| r.map(|i| (flat[2 * i], flat[2 * i + 1])).collect()).collect()))
}

/// Indices of the units to keep, in output order.
fn select(
    file: &hdf5::File,
    path: &Path,
    table: &str,
    ids: &[i64],
    opts: &NwbOptions,
) -> Result<Vec<usize>, RecordingError> {
    let mut keep: Vec<usize> = match &opts.unit_ids {
        None => (0..ids.len()).collect(),
        Some(wanted) => {
            let mut out = Vec::with_capacity(wanted.len());
            for w in wanted {
                let i = ids.iter().position(|id| id == w).ok_or_else(|| {
                    bad_column(path, table, "id", format!("has no unit with id {w}; ids present: {ids:?}"))
                })?;
                out.push(i);
            }
            out
        }
    };
    if let Some(f) = &opts.unit_filter {
        let name = join(table, &f.column);
        if !is_dataset(file, &name) {
            return Err(
                bad_column(path, table, &f.column, "is missing; expected a boolean column to select units").into()
            );
        }
        let col = bools(file, path, &name)?;
        if col.len() != ids.len() {
            let reason = format!("has {} rows; expected {}, one per unit", col.len(), ids.len());
            return Err(bad_column(path, table, &f.column, reason).into());
        }
        keep.retain(|&i| col[i] == f.value);
    }
    if keep.is_empty() {
        return Err(NwbError::BadOption {
            path: path.to_path_buf(),
            reason: format!("the unit selection keeps none of the {} units in `{table}`", ids.len()),
        }
        .into());
    }
    Ok(keep)
}

impl Units {
    /// Bins needed from `start` to hold every spike and observation interval.
    pub fn bins_needed(&self, start: f64, bin: f64) -> usize {
        let spikes = self.trains.iter().flatten().map(|&t| Grid::bins_to_include(start, bin, t));
        // An interval's stop is exclusive: a stop on an edge needs no further bin.
        let stops =
            self.obs.iter().flatten().flatten().map(|&(_, e)| Grid::bins_to_include(start, bin, e - bin * 1e-3));
        spikes.chain(stops).max().unwrap_or(0)
    }

    /// Spike counts `[n, units]` and, per bin, whether every unit was observed
    /// during the whole bin.
    pub fn bin(&self, grid: &Grid) -> (Matrix, Vec<bool>) {
        let cols = self.trains.len();
        let mut counts = Matrix::zeros(grid.n, cols);
        for (u, train) in self.trains.iter().enumerate() {
            for &t in train {
                if let Some(k) = grid.index(t) {
                    counts.row_mut(k)[u] += 1.0;
                }
            }
        }
        let observed = match &self.obs {
            None => vec![true; grid.n],
            Some(obs) => {
                let mut all = vec![true; grid.n];
                for intervals in obs {
                    let mine = observed_bins(intervals, grid);
                    all.iter_mut().zip(mine).for_each(|(a, m)| *a &= m);
                }
                all
            }
        };
        (counts, observed)
    }
}

/// Bins lying wholly inside one of `intervals`.
fn observed_bins(intervals: &[(f64, f64)], grid: &Grid) -> Vec<bool> {
    let mut mine = vec![false; grid.n];
    for &(a, b) in intervals {
        mine[grid.bins_within(a, b)].fill(true);
    }
    mine
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_observation() {
        let u = Units {
            ids: vec![3, 7],
            trains: vec![vec![0.01, 0.015, 0.05], vec![0.02, 0.079]],
            obs: Some(vec![vec![(0.0, 0.08)], vec![(0.0, 0.04), (0.06, 0.08)]]),
        };
        assert_eq!(u.bins_needed(0.0, 0.02), 4);
        let (c, observed) = u.bin(&Grid { start: 0.0, bin: 0.02, n: 4 });
        assert_eq!(c.data, vec![2., 0., 0., 1., 1., 0., 0., 1.]);
        assert_eq!(observed, vec![true, true, false, true]);
    }
}
