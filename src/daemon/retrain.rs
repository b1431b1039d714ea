//! Periodic retraining (in progress).

use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};

use super::config::ServeConfig;
use super::decode_loop::LoopCommand;
use super::recorder::ClosedSession;
use super::stats::LoopCounters;
use crate::model::ModelFile;

/// Handle to the retraining thread.
pub struct RetrainHandle {}

impl RetrainHandle {
    /// Starts the retrainer when configured.
    pub fn start(
        _cfg: &ServeConfig,
        _model: &ModelFile,
        _control: Sender<LoopCommand>,
        _counters: Arc<LoopCounters>,
        _closed: Receiver<ClosedSession>,
        _model_id: Arc<std::sync::Mutex<String>>,
    ) -> std::io::Result<Option<RetrainHandle>> {
        Ok(None)
    }
    /// Requests a run now.
    pub fn trigger(&self) -> bool {
        false
    }
    /// Stops the thread.
    pub fn stop(self) {}
}

struct Actions;
impl super::control::ControlActions for Actions {
    fn retrain(&self) -> Result<String, String> {
        Err("retraining is not enabled in this daemon".into())
    }
    fn rollback(&self, gen: u64) -> Result<String, String> {
        Err(format!("cannot roll back to generation {gen}: retraining is not enabled"))
    }
}

/// Control actions backed by the retrainer.
pub fn actions(_h: Option<&RetrainHandle>) -> Box<dyn super::control::ControlActions> {
    Box::new(Actions)
}

/// The live model file in a models directory, if any.
pub fn live_model_path(_dir: &std::path::Path) -> std::io::Result<Option<std::path::PathBuf>> {
    Ok(None)
}
