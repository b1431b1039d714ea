//! The versioned models directory: one safetensors file per generation
//! (`gen-000001.safetensors`, ...), each carrying in its metadata how it was
//! trained and the retraining gate's decision, plus a `LIVE` file naming the
//! generation the daemon runs (written by accepted swaps and rollbacks).
//!
//! Invariants: generation numbers only grow; a file is complete before it
//! appears under its final name (model files are written atomically); a
//! rejected generation is kept for inspection but never made live.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::model::{ModelFile, ModelFileError};

/// A generation's standing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GenStatus {
    Live,
    Accepted,
    Rejected,
}

/// One row of `alternator models list`.
#[derive(Debug, Clone, Serialize)]
pub struct GenInfo {
    pub generation: u64,
    pub status: GenStatus,
    pub val_r2: Option<f64>,
    /// Generation of the parent model (if it is in this directory).
    pub parent: Option<u64>,
    pub created: f64,
    pub id: String,
    #[serde(skip)]
    pub path: PathBuf,
}

/// Problems with the models directory.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot {action} {path}: {source}")]
    Io { action: &'static str, path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Model(#[from] ModelFileError),
    #[error("generation {gen} does not exist in {dir}")]
    NoSuchGeneration { gen: u64, dir: PathBuf },
    #[error("generation {gen} was rejected by the retraining gate; refusing to make it live")]
    Rejected { gen: u64 },
    #[error("{path} does not hold a generation number: {content:?}")]
    BadLive { path: PathBuf, content: String },
}

/// The models directory.
#[derive(Debug, Clone)]
pub struct ModelStore {
    dir: PathBuf,
}

fn gen_of(path: &Path) -> Option<u64> {
    let name = path.file_name()?.to_str()?;
    name.strip_prefix("gen-")?.strip_suffix(".safetensors")?.parse().ok()
}

impl ModelStore {
    /// A store rooted at `dir` (created on first write).
    pub fn new(dir: &Path) -> Self {
        Self { dir: dir.to_path_buf() }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Path of generation `gen`.
    pub fn path(&self, gen: u64) -> PathBuf {
        self.dir.join(format!("gen-{gen:06}.safetensors"))
    }

    /// Generation numbers present, ascending.
    pub fn generations(&self) -> Result<Vec<u64>, StoreError> {
        let rd = match std::fs::read_dir(&self.dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(StoreError::Io { action: "list", path: self.dir.clone(), source }),
        };
        let mut v: Vec<u64> = rd.filter_map(|e| e.ok()).filter_map(|e| gen_of(&e.path())).collect();
        v.sort_unstable();
        Ok(v)
    }

    /// The generation named by `LIVE`, if any.
    pub fn live(&self) -> Result<Option<u64>, StoreError> {
        let p = self.dir.join("LIVE");
        match std::fs::read_to_string(&p) {
            Ok(s) => s.trim().parse().map(Some).map_err(|_| StoreError::BadLive { path: p, content: s }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(StoreError::Io { action: "read", path: p, source }),
        }
    }

    /// Makes `gen` live (atomically rewrites `LIVE`). Rejected generations are refused.
    pub fn set_live(&self, gen: u64) -> Result<(), StoreError> {
        let mf = self.load(gen)?;
        if decision_status(&mf) == Some(GenStatus::Rejected) {
            return Err(StoreError::Rejected { gen });
        }
        let p = self.dir.join("LIVE");
        let tmp = self.dir.join("LIVE.tmp");
        std::fs::write(&tmp, format!("{gen}\n")).map_err(|source| StoreError::Io {
            action: "write",
            path: tmp.clone(),
            source,
        })?;
        std::fs::rename(&tmp, &p).map_err(|source| StoreError::Io { action: "rename into place", path: p, source })
    }

    /// Loads generation `gen`.
    pub fn load(&self, gen: u64) -> Result<ModelFile, StoreError> {
        let p = self.path(gen);
        if !p.exists() {
            return Err(StoreError::NoSuchGeneration { gen, dir: self.dir.clone() });
        }
        Ok(ModelFile::load(&p)?)
    }

    /// Saves `mf` as the next generation and returns its number.
    pub fn add(&self, mf: &mut ModelFile) -> Result<u64, StoreError> {
        std::fs::create_dir_all(&self.dir).map_err(|source| StoreError::Io {
            action: "create",
            path: self.dir.clone(),
            source,
        })?;
        let gen = self.generations()?.last().copied().unwrap_or(0) + 1;
        if let Some(serde_json::Value::Object(m)) = mf.meta.decision.as_mut() {
            m.insert("generation".into(), gen.into());
        }
        mf.save(&self.path(gen))?;
        Ok(gen)
    }

    /// The model the daemon should start with: the `LIVE` generation, else
    /// the newest accepted one.
    pub fn live_path(&self) -> Result<Option<PathBuf>, StoreError> {
        if let Some(g) = self.live()? {
            return Ok(Some(self.path(g)));
        }
        for g in self.generations()?.into_iter().rev() {
            if let Ok(mf) = self.load(g) {
                if decision_status(&mf) != Some(GenStatus::Rejected) {
                    return Ok(Some(self.path(g)));
                }
            }
        }
        Ok(None)
    }

    /// The model a restart should run: the `LIVE` generation if it loads,
    /// else the newest accepted generation that loads. Whatever was skipped
    /// on the way (garbage in `LIVE`, missing or corrupt files, an unreadable
    /// directory) is returned, one line each, for the caller to log.
    pub fn startup_model(&self) -> (Option<(u64, ModelFile)>, Vec<String>) {
        let mut skipped = Vec::new();
        let live = self.live().unwrap_or_else(|e| {
            skipped.push(format!("{e}"));
            None
        });
        if let Some(g) = live {
            match self.load(g) {
                Ok(mf) => return (Some((g, mf)), skipped),
                Err(e) => skipped.push(format!("live generation {g}: {e}")),
            }
        }
        let gens = self.generations().unwrap_or_else(|e| {
            skipped.push(format!("{e}"));
            Vec::new()
        });
        for g in gens.into_iter().rev().filter(|g| Some(*g) != live) {
            match self.load(g) {
                Ok(mf) if decision_status(&mf) == Some(GenStatus::Rejected) => {}
                Ok(mf) => return (Some((g, mf)), skipped),
                Err(e) => skipped.push(format!("generation {g}: {e}")),
            }
        }
        (None, skipped)
    }

    /// Every generation with its status (unreadable files are skipped).
    pub fn list(&self) -> Result<Vec<GenInfo>, StoreError> {
        let live = self.live()?;
        let gens = self.generations()?;
        let mut rows = Vec::new();
        let mut ids = Vec::new();
        for g in gens {
            let Ok(mf) = self.load(g) else { continue };
            ids.push((mf.meta.id.clone(), g));
            let status =
                if Some(g) == live { GenStatus::Live } else { decision_status(&mf).unwrap_or(GenStatus::Accepted) };
            let val_r2 = mf
                .meta
                .decision
                .as_ref()
                .and_then(|d| d.get("candidate_r2"))
                .and_then(|v| v.as_f64())
                .or_else(|| mf.meta.training.as_ref().map(|t| t.report.val_r2_mean).filter(|v| v.is_finite()));
            rows.push((
                GenInfo {
                    generation: g,
                    status,
                    val_r2,
                    parent: None,
                    created: mf.meta.created_unix_s,
                    id: mf.meta.id.clone(),
                    path: self.path(g),
                },
                mf.meta.parent.clone(),
            ));
        }
        Ok(rows
            .into_iter()
            .map(|(mut info, parent)| {
                info.parent = parent.and_then(|p| ids.iter().find(|(id, _)| *id == p).map(|(_, g)| *g));
                info
            })
            .collect())
    }
}

/// `accepted` / `rejected` from a model's gate decision, if it has one.
pub fn decision_status(mf: &ModelFile) -> Option<GenStatus> {
    match mf.meta.decision.as_ref()?.get("status")?.as_str()? {
        "accepted" => Some(GenStatus::Accepted),
        "rejected" => Some(GenStatus::Rejected),
        _ => None,
    }
}
