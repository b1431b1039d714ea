//! Assembling a binned [`Recording`] from an NWB file: choose the spike
//! source and the behaviour series, lay the bin grid over both, bin, and
//! combine the label masks (behaviour present, units observed, trials).

use std::path::Path;

use hdf5_metno as hdf5;

use super::h5::{abs, find_series, is_series};
use super::series::{bin_mean, bins_needed, read_series, Grid, Series};
use super::trials::trial_mask;
use super::units::{read_units, Units};
use super::{NwbError, BEHAVIOR_MODULE, UNITS_PATH};
use crate::matrix::Matrix;
use crate::recording::{key, ReadOptions, Recording, RecordingError, DEFAULT_BEHAVIOR_PATH, DEFAULT_SPIKES_PATH};

/// Where the spike columns come from.
enum SpikeSource {
    /// Spike times of a Units table, counted per bin.
    Units(Units),
    /// An already binned or continuous TimeSeries, averaged per bin.
    Series(Series),
}

/// Reads an open NWB file as a session (see the module docs of `nwb`).
/// `opts.spikes_path` names the Units table (the default `/spikes` means
/// `/units`) or a TimeSeries; `opts.behavior_path` a TimeSeries, a group
/// holding exactly one, or the default `/behavior`, which means the only
/// TimeSeries under `/processing/behavior` (none: no behaviour).
pub fn read_nwb(file: &hdf5::File, path: &Path, opts: &ReadOptions) -> Result<Recording, RecordingError> {
    let nwb = &opts.nwb;
    let bin = nwb.bin_seconds(path)?;
    let source = spike_source(file, path, &opts.spikes_path, &opts.nwb)?;
    let behavior = behavior_series(file, path, opts.behavior_path.as_deref())?;
    let start = nwb.start_s.unwrap_or(match &source {
        SpikeSource::Units(_) => 0.0,
        SpikeSource::Series(s) => s.times.iter().copied().fold(f64::INFINITY, f64::min),
    });
    let mut n = match &source {
        SpikeSource::Units(u) => u.bins_needed(start, bin),
        SpikeSource::Series(s) => bins_needed(s, start, bin),
    };
    n = n.max(behavior.as_ref().map_or(0, |b| bins_needed(b, start, bin)));
    if n == 0 {
        let reason = format!("no spike, observation interval or behaviour sample at or after the grid start {start} s");
        return Err(NwbError::EmptySession { path: path.to_path_buf(), reason }.into());
    }
    let grid = Grid { start, bin, n };
    let (spikes, observed) = match &source {
        SpikeSource::Units(u) => u.bin(&grid),
        SpikeSource::Series(s) => zero_fill(bin_mean(s, &grid)),
    };
    let (behavior, behavior_valid) = match &behavior {
        None if nwb.trials_only || nwb.split.is_some() => {
            let reason =
                "trials or a split were asked for, but no behaviour was read (see --behavior-path)".to_string();
            return Err(NwbError::BadOption { path: path.to_path_buf(), reason }.into());
        }
        None => (None, None),
        Some(series) => {
            let trials = if nwb.trials_only || nwb.split.is_some() {
                Some(trial_mask(file, path, &grid, nwb.split.as_deref())?)
            } else {
                None
            };
            let (b, valid) = labels(series, &grid, &observed, trials.as_deref());
            (Some(b), valid)
        }
    };
    let timestamps = Some((0..n).map(|k| grid.time(k)).collect());
    Ok(Recording { spikes, behavior, behavior_valid, timestamps, bin_seconds: bin })
}

/// Reads the spike source `spikes_path` names.
fn spike_source(
    file: &hdf5::File,
    path: &Path,
    spikes_path: &str,
    opts: &super::NwbOptions,
) -> Result<SpikeSource, RecordingError> {
    let name = abs(spikes_path);
    if key(spikes_path) == key(DEFAULT_SPIKES_PATH) || name == UNITS_PATH {
        return units_source(file, path, UNITS_PATH, opts);
    }
    if is_series(file, &name) {
        return Ok(SpikeSource::Series(read_series(file, path, &name)?));
    }
    units_source(file, path, &name, opts)
}

fn units_source(
    file: &hdf5::File,
    path: &Path,
    table: &str,
    opts: &super::NwbOptions,
) -> Result<SpikeSource, RecordingError> {
    let units = read_units(file, path, table, opts)?;
    if units.trains.iter().all(Vec::is_empty) && units.obs.as_ref().is_none_or(|o| o.iter().all(Vec::is_empty)) {
        let reason = format!("`{table}` holds no spike times and no observation intervals");
        return Err(NwbError::EmptySession { path: path.to_path_buf(), reason }.into());
    }
    Ok(SpikeSource::Units(units))
}

/// A TimeSeries used as spikes: bins without a sample become zeros and are
/// marked unobserved.
fn zero_fill((mut m, valid): (Matrix, Vec<bool>)) -> (Matrix, Vec<bool>) {
    for v in &mut m.data {
        if !v.is_finite() {
            *v = 0.0;
        }
    }
    (m, valid)
}

/// The behaviour series, resolved as [`read_nwb`] describes.
fn behavior_series(file: &hdf5::File, path: &Path, requested: Option<&str>) -> Result<Option<Series>, RecordingError> {
    let Some(requested) = requested else { return Ok(None) };
    if key(requested) == key(DEFAULT_BEHAVIOR_PATH) {
        let candidates = find_series(file, BEHAVIOR_MODULE);
        return match candidates.as_slice() {
            [] => Ok(None),
            [only] => Ok(Some(read_series(file, path, only)?)),
            _ => Err(NwbError::AmbiguousBehavior { path: path.to_path_buf(), candidates }.into()),
        };
    }
    let name = abs(requested);
    if is_series(file, &name) {
        return Ok(Some(read_series(file, path, &name)?));
    }
    let inside = find_series(file, &name);
    if let [only] = inside.as_slice() {
        return Ok(Some(read_series(file, path, only)?));
    }
    let candidates = if inside.is_empty() { find_series(file, "/") } else { inside };
    Err(NwbError::BehaviorNotFound { path: path.to_path_buf(), requested: name, candidates }.into())
}

/// Binned behaviour and the label mask: a bin is labelled when it has
/// behaviour in every dimension, all units were observed and (with `trials`)
/// it lies in a selected trial. Unlabelled rows hold NaN; the mask is `None`
/// when every bin is labelled.
fn labels(series: &Series, grid: &Grid, observed: &[bool], trials: Option<&[bool]>) -> (Matrix, Option<Vec<bool>>) {
    let (mut b, has_sample) = bin_mean(series, grid);
    let mask: Vec<bool> = (0..grid.n).map(|k| has_sample[k] && observed[k] && trials.is_none_or(|t| t[k])).collect();
    for (k, &ok) in mask.iter().enumerate() {
        if !ok {
            b.row_mut(k).fill(f32::NAN);
        }
    }
    let valid = if mask.iter().all(|&v| v) { None } else { Some(mask) };
    (b, valid)
}
