//! Model files: safetensors weights plus a JSON metadata document stored in
//! the safetensors header under the key `alternator`.
//!
//! Tensors: `ftn.{i}.weight` `[in, out]`, `ftn.{i}.bias` `[out]`, the same for
//! `otn`, and `stats.x_mean`, `stats.x_std`, `stats.y_mean`, `stats.y_std`.
//! Invariant: a file is accepted only if its format version is known, every
//! tensor the metadata implies is present as f32 with the implied shape, and
//! the constants validate. Files are written to a temporary name and renamed,
//! so a reader never sees half a model.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::preprocess::NormStats;
use super::spec::ModelSpec;
use super::train::{TrainConfig, TrainReport};
use super::weights::{Dense, MlpWeights, Model};

/// The model file format this build reads and writes.
pub const MODEL_FORMAT_VERSION: u32 = 1;
const META_KEY: &str = "alternator";

/// A recording a model was trained on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataSource {
    pub path: String,
    /// Content hash of the file (see `recording::file_hash`).
    pub hash: String,
    pub bins: usize,
    pub spikes_path: String,
    pub behavior_path: Option<String>,
    /// Bin width of the recording as read (seconds); absent in older files.
    #[serde(default)]
    pub bin_seconds: Option<f64>,
    /// How an NWB recording was binned (the reader's options, as JSON);
    /// `None` for other recordings and in older files.
    #[serde(default)]
    pub nwb: Option<serde_json::Value>,
}

/// How a model was trained.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingInfo {
    pub data: Vec<DataSource>,
    pub config: TrainConfig,
    pub report: TrainReport,
}

/// Everything stored about a model besides its tensors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelMeta {
    pub format_version: u32,
    /// Content id: first 16 hex digits of SHA-256 over the weights.
    pub id: String,
    pub created_unix_s: f64,
    pub spec: ModelSpec,
    /// Id of the model this one was retrained from.
    #[serde(default)]
    pub parent: Option<String>,
    #[serde(default)]
    pub training: Option<TrainingInfo>,
    /// Free-form record of how the model was accepted (retraining gate).
    #[serde(default)]
    pub decision: Option<serde_json::Value>,
}

impl ModelMeta {
    /// Bin width (seconds) of the data the model was trained on, when recorded.
    pub fn training_bin_seconds(&self) -> Option<f64> {
        self.training.as_ref().and_then(|t| t.data.iter().find_map(|d| d.bin_seconds))
    }
}

/// A model with its metadata.
#[derive(Debug, Clone)]
pub struct ModelFile {
    pub model: Model,
    pub meta: ModelMeta,
}

/// Why a model file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum ModelFileError {
    #[error("cannot {action} model file {path}: {source}")]
    Io { action: &'static str, path: PathBuf, source: std::io::Error },
    #[error("model file {path} is not a valid safetensors file: {reason}")]
    Format { path: PathBuf, reason: String },
    #[error("model file {path} has no `alternator` metadata (not a model written by this program?)")]
    NoMetadata { path: PathBuf },
    #[error("model file {path} has format version {got}; this build reads version {expected}")]
    UnknownVersion { path: PathBuf, got: u64, expected: u32 },
    #[error("model file {path} has invalid metadata: {reason}")]
    BadMetadata { path: PathBuf, reason: String },
    #[error("model file {path} is missing tensor `{name}`")]
    MissingTensor { path: PathBuf, name: String },
    #[error("model file {path}: tensor `{name}` has shape {got:?} (dtype {dtype}), expected {expected:?} f32 as the metadata implies")]
    ShapeMismatch { path: PathBuf, name: String, expected: Vec<usize>, got: Vec<usize>, dtype: String },
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Content id of a model's weights and statistics.
pub fn model_id(model: &Model) -> String {
    let mut h = Sha256::new();
    for net in [&model.ftn, &model.otn] {
        for l in &net.layers {
            h.update(f32_bytes(&l.w));
            h.update(f32_bytes(&l.b));
        }
    }
    for v in [&model.stats.x_mean, &model.stats.x_std, &model.stats.y_mean, &model.stats.y_std] {
        h.update(f32_bytes(v));
    }
    h.finalize().iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// Seconds since the Unix epoch.
pub fn now_unix_s() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

impl ModelMeta {
    /// Fresh metadata for a model (id computed from its weights).
    pub fn new(model: &Model, training: Option<TrainingInfo>, parent: Option<String>) -> Self {
        Self {
            format_version: MODEL_FORMAT_VERSION,
            id: model_id(model),
            created_unix_s: now_unix_s(),
            spec: model.spec.clone(),
            parent,
            training,
            decision: None,
        }
    }
}

impl ModelFile {
    /// Writes the model atomically (temporary file, then rename).
    pub fn save(&self, path: &Path) -> Result<(), ModelFileError> {
        let mut owned: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
        for (name, net) in [("ftn", &self.model.ftn), ("otn", &self.model.otn)] {
            for (i, l) in net.layers.iter().enumerate() {
                owned.push((format!("{name}.{i}.weight"), vec![l.in_dim, l.out_dim], f32_bytes(&l.w)));
                owned.push((format!("{name}.{i}.bias"), vec![l.out_dim], f32_bytes(&l.b)));
            }
        }
        let st = &self.model.stats;
        for (name, v) in [("x_mean", &st.x_mean), ("x_std", &st.x_std), ("y_mean", &st.y_mean), ("y_std", &st.y_std)] {
            owned.push((format!("stats.{name}"), vec![v.len()], f32_bytes(v)));
        }
        let mut views = Vec::new();
        for (n, shape, bytes) in &owned {
            let view = TensorView::new(Dtype::F32, shape.clone(), bytes)
                .map_err(|e| ModelFileError::Format { path: path.to_path_buf(), reason: e.to_string() })?;
            views.push((n.clone(), view));
        }
        let json = serde_json::to_string(&self.meta)
            .map_err(|e| ModelFileError::BadMetadata { path: path.to_path_buf(), reason: e.to_string() })?;
        let meta = HashMap::from([(META_KEY.to_string(), json)]);
        let bytes = safetensors::tensor::serialize(views, Some(meta))
            .map_err(|e| ModelFileError::Format { path: path.to_path_buf(), reason: e.to_string() })?;
        let tmp = path.with_extension("safetensors.tmp");
        std::fs::write(&tmp, bytes).map_err(|source| ModelFileError::Io {
            action: "write",
            path: tmp.clone(),
            source,
        })?;
        std::fs::rename(&tmp, path).map_err(|source| ModelFileError::Io {
            action: "rename into place",
            path: path.to_path_buf(),
            source,
        })
    }

    /// Reads and checks a model file.
    pub fn load(path: &Path) -> Result<ModelFile, ModelFileError> {
        let p = || path.to_path_buf();
        let bytes = std::fs::read(path).map_err(|source| ModelFileError::Io { action: "read", path: p(), source })?;
        let (_, header) = SafeTensors::read_metadata(&bytes)
            .map_err(|e| ModelFileError::Format { path: p(), reason: e.to_string() })?;
        let json = header
            .metadata()
            .as_ref()
            .and_then(|m| m.get(META_KEY))
            .ok_or_else(|| ModelFileError::NoMetadata { path: p() })?;
        let raw: serde_json::Value =
            serde_json::from_str(json).map_err(|e| ModelFileError::BadMetadata { path: p(), reason: e.to_string() })?;
        let version = raw
            .get("format_version")
            .and_then(|v| v.as_u64())
            .ok_or_else(|| ModelFileError::BadMetadata { path: p(), reason: "no integer `format_version`".into() })?;
        if version != MODEL_FORMAT_VERSION as u64 {
            return Err(ModelFileError::UnknownVersion { path: p(), got: version, expected: MODEL_FORMAT_VERSION });
        }
        let meta: ModelMeta = serde_json::from_value(raw)
            .map_err(|e| ModelFileError::BadMetadata { path: p(), reason: e.to_string() })?;
        meta.spec.validate().map_err(|errs| ModelFileError::BadMetadata { path: p(), reason: errs.join("; ") })?;
        let st = SafeTensors::deserialize(&bytes)
            .map_err(|e| ModelFileError::Format { path: p(), reason: e.to_string() })?;
        let get = |name: &str, shape: &[usize]| -> Result<Vec<f32>, ModelFileError> {
            let t = st.tensor(name).map_err(|_| ModelFileError::MissingTensor { path: p(), name: name.into() })?;
            if t.dtype() != Dtype::F32 || t.shape() != shape {
                return Err(ModelFileError::ShapeMismatch {
                    path: p(),
                    name: name.into(),
                    expected: shape.to_vec(),
                    got: t.shape().to_vec(),
                    dtype: format!("{:?}", t.dtype()),
                });
            }
            Ok(t.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
        };
        let s = &meta.spec;
        let (ftn_w, otn_w) = (s.ftn_widths(), s.otn_widths());
        let load_net = |name: &str, widths: &[usize]| -> Result<MlpWeights, ModelFileError> {
            let mut layers = Vec::new();
            for (i, pair) in widths.windows(2).enumerate() {
                let (a, b) = (pair[0], pair[1]);
                layers.push(Dense {
                    in_dim: a,
                    out_dim: b,
                    w: get(&format!("{name}.{i}.weight"), &[a, b])?,
                    b: get(&format!("{name}.{i}.bias"), &[b])?,
                });
            }
            Ok(MlpWeights { layers })
        };
        let stats = NormStats {
            x_mean: get("stats.x_mean", &[s.channels])?,
            x_std: get("stats.x_std", &[s.channels])?,
            y_mean: get("stats.y_mean", &[s.dz])?,
            y_std: get("stats.y_std", &[s.dz])?,
        };
        let model = Model { spec: s.clone(), stats, ftn: load_net("ftn", &ftn_w)?, otn: load_net("otn", &otn_w)? };
        model.check_shapes().map_err(|reason| ModelFileError::BadMetadata { path: p(), reason })?;
        Ok(ModelFile { model, meta })
    }
}
