//! The trials table (`/intervals/trials`: `start_time`, `stop_time`,
//! optional string column `split`): which bins lie inside the selected
//! trials. A bin is inside a trial when it starts at or after the trial's
//! start and ends at or before its stop.

use std::path::Path;

use hdf5_metno as hdf5;

use super::h5::{bad_column, column_f64, is_dataset, is_group, join, strings};
use super::series::Grid;
use super::{NwbError, TRIALS_PATH};
use crate::recording::RecordingError;

/// Name of the column holding each trial's train/val/test assignment.
pub(super) const SPLIT_COLUMN: &str = "split";

/// Per-bin mask: `true` for bins inside a trial (of split `split`, if given).
pub(super) fn trial_mask(
    file: &hdf5::File,
    path: &Path,
    grid: &Grid,
    split: Option<&str>,
) -> Result<Vec<bool>, RecordingError> {
    if !is_group(file, TRIALS_PATH) {
        return Err(NwbError::BadOption {
            path: path.to_path_buf(),
            reason: format!("trials were asked for but the file has no trials table at `{TRIALS_PATH}`"),
        }
        .into());
    }
    let starts = column_f64(file, path, TRIALS_PATH, "start_time")?;
    let stops = column_f64(file, path, TRIALS_PATH, "stop_time")?;
    if stops.len() != starts.len() {
        let reason = format!("has {} rows but `start_time` has {}; expected equal", stops.len(), starts.len());
        return Err(bad_column(path, TRIALS_PATH, "stop_time", reason).into());
    }
    let chosen = chosen_trials(file, path, starts.len(), split)?;
    let mut mask = vec![false; grid.n];
    for (i, (&a, &b)) in starts.iter().zip(&stops).enumerate() {
        if chosen[i] {
            mask[grid.bins_within(a, b)].fill(true);
        }
    }
    Ok(mask)
}

/// Which trials are selected by `split` (all of them without one).
fn chosen_trials(file: &hdf5::File, path: &Path, n: usize, split: Option<&str>) -> Result<Vec<bool>, RecordingError> {
    let Some(split) = split else {
        return Ok(vec![true; n]);
    };
    let name = join(TRIALS_PATH, SPLIT_COLUMN);
    if !is_dataset(file, &name) {
        let reason = format!("is missing; --split {split} needs a string column naming each trial's split");
        return Err(bad_column(path, TRIALS_PATH, SPLIT_COLUMN, reason).into());
    }
    let values = strings(file, path, &name)?;
    if values.len() != n {
        let reason = format!("has {} rows; expected {n}, one per trial", values.len());
        return Err(bad_column(path, TRIALS_PATH, SPLIT_COLUMN, reason).into());
    }
    if !values.iter().any(|v| v == split) {
        let mut present: Vec<&str> = values.iter().map(String::as_str).collect();
        present.sort_unstable();
        present.dedup();
        let reason = format!("has no trial with value `{split}`; values present: {present:?}");
        return Err(bad_column(path, TRIALS_PATH, SPLIT_COLUMN, reason).into());
    }
    Ok(values.iter().map(|v| v == split).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bins_inside_trials_only() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.nwb");
        let f = hdf5::File::create(&p).unwrap();
        let g = f.create_group("intervals").unwrap().create_group("trials").unwrap();
        g.new_dataset_builder().with_data(&[0.02f64, 0.1]).create("start_time").unwrap();
        g.new_dataset_builder().with_data(&[0.07f64, 0.12]).create("stop_time").unwrap();
        let grid = Grid { start: 0.0, bin: 0.02, n: 8 };
        let mask = trial_mask(&f, &p, &grid, None).unwrap();
        assert_eq!(mask, vec![false, true, true, false, false, true, false, false]);
        assert!(matches!(
            trial_mask(&f, &p, &grid, Some("train")),
            Err(RecordingError::Nwb(NwbError::BadColumn { .. }))
        ));
    }
}
