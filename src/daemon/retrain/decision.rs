//! What a retraining run decided, as stored with each candidate in the
//! models directory and reported by `status`, and why a run failed.

use serde::{Deserialize, Serialize};

use crate::daemon::models::StoreError;
use crate::model::train::TrainError;

/// The gate's verdict on one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Better than the live model by the margin, and swapped in.
    Accepted,
    /// Not better by the margin, or could not be swapped in.
    Rejected,
    /// No candidate (see the reason); the live model keeps running.
    Failed,
}

/// A recording used by a run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UsedFile {
    pub path: String,
    pub bins: usize,
    pub hash: String,
}

/// A recording left out of a run, and why.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SkippedFile {
    pub path: String,
    pub reason: String,
}

/// One run's decision; fields a run did not reach are absent.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Decision {
    pub status: Verdict,
    /// What started the run (`interval`, `new labelled bins`, `requested`).
    pub trigger: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidate_r2: Option<f64>,
    /// `null` when the live model cannot be scored on the held-out bins.
    #[serde(default)]
    pub live_r2: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live_generation: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<u64>,
    #[serde(default)]
    pub margin: f64,
    #[serde(default)]
    pub holdout_bins: usize,
    #[serde(default)]
    pub train_seconds: f64,
    #[serde(default)]
    pub epochs: usize,
    #[serde(default)]
    pub data: Vec<UsedFile>,
    #[serde(default)]
    pub skipped: Vec<SkippedFile>,
}

impl Decision {
    /// A run that produced no candidate.
    pub fn failed(trigger: &str, err: &RetrainError) -> Decision {
        Decision { reason: Some(err.to_string()), ..Decision::new(Verdict::Failed, trigger) }
    }

    /// A verdict with nothing else filled in yet.
    pub fn new(status: Verdict, trigger: &str) -> Decision {
        Decision {
            status,
            trigger: trigger.to_string(),
            reason: None,
            candidate_r2: None,
            live_r2: None,
            live_id: None,
            live_generation: None,
            generation: None,
            margin: 0.0,
            holdout_bins: 0,
            train_seconds: 0.0,
            epochs: 0,
            data: Vec::new(),
            skipped: Vec::new(),
        }
    }

    /// The JSON stored in the candidate's model file.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("invariant: a decision serialises")
    }
}

/// Why a run produced no candidate.
#[derive(Debug, thiserror::Error)]
pub enum RetrainError {
    #[error("no labelled data (behaviour) in {usable} usable recordings; skipped {skipped}")]
    NoLabelledData { usable: usize, skipped: usize },
    #[error("too little labelled data before the held-out part (need >= {min} bins in some recording)")]
    TooLittleBeforeHoldout { min: usize },
    #[error("training failed: {0}")]
    Training(#[from] TrainError),
    #[error("no labelled bins in the held-out part")]
    NoHeldOutLabels,
    #[error("candidate's held-out R² is not finite ({0})")]
    NonFiniteR2(f64),
    #[error("cannot store the candidate: {0}")]
    Store(#[from] StoreError),
}

/// Why a model could not be swapped into the decode loop.
#[derive(Debug, thiserror::Error)]
pub enum SwapError {
    #[error("the decode loop is not taking commands")]
    LoopBusy,
    #[error("the decode loop stopped before answering the swap")]
    LoopStopped,
    #[error("{0}")]
    Refused(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_run_serialises_with_only_what_it_reached() {
        let d = Decision::failed("interval", &RetrainError::NoHeldOutLabels);
        let v = d.to_json();
        assert_eq!(v["status"], "failed");
        assert_eq!(v["reason"], "no labelled bins in the held-out part");
        assert!(v.get("candidate_r2").is_none() && v.get("generation").is_none(), "{v}");
        let back: Decision = serde_json::from_value(v).unwrap();
        assert_eq!(back.status, Verdict::Failed);
    }
}
