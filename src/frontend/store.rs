//! HDF5 store and load of the front end's settings: the only I/O of the
//! module. [`FrontEnd::store`] writes everything a re-run needs to reproduce
//! the bins (filter design, thresholds, calibration window, k, refractory,
//! band, CAR flag, sample rate, samples per bin) under a group;
//! [`load_thresholds`] reads the thresholds back from a file's `/frontend`
//! group. Stored thresholds are always finite and ≤ 0.

use std::path::Path;

use hdf5::types::VarLenUnicode;
use hdf5::H5Type;
use hdf5_metno as hdf5;
use ndarray::{Array1, Array2};

use super::engine::{FrontEnd, ThresholdSource};
use super::{FrontendConfig, FrontendError};

/// Group name `store` is meant for and `load_thresholds` reads.
pub const GROUP: &str = "frontend";
/// Dataset of the thresholds inside the group.
const THRESHOLDS: &str = "thresholds";

fn attr<T: H5Type>(group: &hdf5::Group, name: &str, value: &T) -> hdf5::Result<()> {
    group.new_attr::<T>().shape(()).create(name)?.as_writer().write_scalar(value)
}

/// Everything [`FrontEnd::store`] writes, copied out of a running front end
/// so another thread (the live recorder) can store it.
#[derive(Debug, Clone, PartialEq)]
pub struct FrontendSnapshot {
    pub cfg: FrontendConfig,
    pub sos: Vec<[f64; 6]>,
    pub thresholds: Option<Vec<f32>>,
    pub refractory_samples: u32,
    pub sample_rate_hz: f64,
    pub bin_seconds: f64,
    pub samples_per_bin: u64,
    pub channels: usize,
    pub non_finite_samples: u64,
    pub thresholds_source: String,
}

impl FrontEnd {
    /// The settings and thresholds as they stand now.
    pub fn snapshot(&self) -> FrontendSnapshot {
        FrontendSnapshot {
            cfg: self.cfg.clone(),
            sos: self.sos.clone(),
            thresholds: self.thresholds().map(|t| t.to_vec()),
            refractory_samples: self.refractory,
            sample_rate_hz: self.rate,
            bin_seconds: self.bin_seconds,
            samples_per_bin: self.spb,
            channels: self.channels,
            non_finite_samples: self.non_finite_samples(),
            thresholds_source: match &self.source {
                ThresholdSource::Calibration => "calibration".to_string(),
                ThresholdSource::Config => "config".to_string(),
                ThresholdSource::File(p) => format!("file:{}", p.display()),
            },
        }
    }

    /// Writes [`Self::snapshot`] under `group` (see [`FrontendSnapshot::store`]).
    pub fn store(&self, group: &hdf5::Group) -> hdf5::Result<()> {
        self.snapshot().store(group)
    }
}

impl FrontendSnapshot {
    /// Writes the filter design (`sos` `[sections, 6]` f64), the thresholds
    /// (`thresholds` `[C]` f32, only once they exist) and the settings as
    /// attributes under `group` (e.g. a `/frontend` group), so that a re-run
    /// with the same settings reproduces the bins exactly.
    pub fn store(&self, group: &hdf5::Group) -> hdf5::Result<()> {
        let sos = Array2::from_shape_fn((self.sos.len(), 6), |(r, c)| self.sos[r][c]);
        group.new_dataset_builder().with_data(&sos).create("sos")?;
        if let Some(t) = &self.thresholds {
            group.new_dataset_builder().with_data(&Array1::from(t.clone())).create(THRESHOLDS)?;
        }
        let c = &self.cfg;
        attr(group, "band_low_hz", &c.band_low_hz)?;
        attr(group, "band_high_hz", &c.band_high_hz)?;
        attr(group, "filter_order", &(c.filter_order as u64))?;
        attr(group, "common_average", &u8::from(c.common_average))?;
        attr(group, "threshold_k", &c.threshold_k)?;
        attr(group, "calibration_s", &c.calibration_s)?;
        attr(group, "refractory_ms", &c.refractory_ms)?;
        attr(group, "refractory_samples", &u64::from(self.refractory_samples))?;
        attr(group, "sample_rate_hz", &self.sample_rate_hz)?;
        attr(group, "bin_seconds", &self.bin_seconds)?;
        attr(group, "samples_per_bin", &self.samples_per_bin)?;
        attr(group, "channels", &(self.channels as u64))?;
        attr(group, "non_finite_samples", &self.non_finite_samples)?;
        let source: VarLenUnicode = self.thresholds_source.replace('\0', "").parse().unwrap_or_default();
        attr(group, "thresholds_source", &source)
    }
}

/// Reads the thresholds `FrontEnd::store` wrote to the `/frontend` group of
/// `path`. Errors name the file and the object inside it.
pub fn load_thresholds(path: &Path) -> Result<Vec<f32>, FrontendError> {
    let object = format!("/{GROUP}/{THRESHOLDS}");
    let stored = |reason: String| FrontendError::BadStored { path: path.to_path_buf(), object: object.clone(), reason };
    if !path.exists() {
        return Err(FrontendError::BadStored {
            path: path.to_path_buf(),
            object: "/".into(),
            reason: "cannot be read: the file does not exist".into(),
        });
    }
    let h5 = |object: &str| {
        let object = object.to_string();
        move |source| FrontendError::Hdf5 { path: path.to_path_buf(), object, source }
    };
    let file = hdf5::File::open(path).map_err(h5("/"))?;
    if !file.link_exists(GROUP) || !file.group(GROUP).map_err(h5(GROUP))?.link_exists(THRESHOLDS) {
        return Err(stored("is missing; expected the thresholds a calibrated front-end run stored".into()));
    }
    let ds = file.dataset(&object).map_err(h5(&object))?;
    if ds.ndim() != 1 {
        return Err(stored(format!("has shape {:?}; expected one value per channel", ds.shape())));
    }
    if !matches!(ds.dtype().and_then(|t| t.to_descriptor()), Ok(hdf5::types::TypeDescriptor::Float(_))) {
        return Err(stored("is not a floating-point dataset; expected f32 µV thresholds".into()));
    }
    let t: Vec<f32> = ds.read_raw::<f32>().map_err(h5(&object))?;
    if t.is_empty() {
        return Err(stored("is empty; expected one threshold per channel".into()));
    }
    if let Some((i, v)) = t.iter().enumerate().find(|(_, v)| !(**v <= 0.0 && v.is_finite())) {
        return Err(stored(format!("holds {v} at index {i}; expected finite thresholds <= 0 µV")));
    }
    Ok(t)
}
