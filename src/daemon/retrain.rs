//! Periodic retraining inside `serve`: a niced background thread trains a
//! candidate (the same code as `alternator train`) from the configured
//! recordings plus the daemon's own labelled session files, holds out the
//! most recent labelled bins, and swaps the candidate into the decode loop
//! only if its held-out R² beats the live model's by a margin.
//!
//! Invariants: the decode loop is touched only through its command channel
//! (the kernel is built here, off the hot thread, and swapped between bins);
//! a failed run (unreadable file, no labelled data, NaN loss) is logged and
//! leaves the live model running; unreadable files are skipped, not fatal;
//! every candidate is written to the models directory with its decision.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender};
use serde_json::json;
use tracing::{debug, error, info, warn};

use super::config::{RetrainSection, ServeConfig};
use super::control::ControlError;
use super::decode_loop::{LoopCommand, SwapOutcome};
use super::models::ModelStore;
use super::recorder::ClosedSession;
use super::stats::LoopCounters;
use crate::model::file::{DataSource, ModelMeta, TrainingInfo};
use crate::model::train::{score_tails, train_cancellable, TrainSet};
use crate::model::{Model, ModelFile, StepKernel};
use crate::recording::{file_hash, ReadOptions, Recording};

/// Requests to the retrainer.
pub enum RetrainRequest {
    /// Retrain now.
    Now,
    /// Make generation `gen` live.
    Rollback { gen: u64, reply: Sender<Result<String, ControlError>> },
}

/// Counts and the last decision, for status reports and tests.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RetrainStatus {
    pub runs: u64,
    pub accepted: u64,
    pub rejected: u64,
    pub failed: u64,
    pub running: bool,
    pub live_generation: Option<u64>,
    pub last_decision: Option<serde_json::Value>,
}

/// Handle to the retraining thread.
pub struct RetrainHandle {
    tx: Sender<RetrainRequest>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    /// Shared status.
    pub status: Arc<Mutex<RetrainStatus>>,
}

impl RetrainHandle {
    /// Starts the retrainer when `retrain.enabled`.
    pub fn start(
        cfg: &ServeConfig,
        model: &ModelFile,
        control: Sender<LoopCommand>,
        counters: Arc<LoopCounters>,
        closed: Receiver<ClosedSession>,
        model_id: Arc<Mutex<String>>,
        rotate: Arc<AtomicBool>,
    ) -> std::io::Result<Option<RetrainHandle>> {
        if !cfg.retrain.enabled {
            return Ok(None);
        }
        let (tx, rx) = bounded::<RetrainRequest>(8);
        let stop = Arc::new(AtomicBool::new(false));
        let status = Arc::new(Mutex::new(RetrainStatus::default()));
        let mut r = Retrainer {
            cfg: cfg.retrain.clone(),
            record_dir: cfg.record.enabled.then(|| cfg.record.dir.clone()),
            store: ModelStore::new(&cfg.model.models_dir),
            live: model.clone(),
            live_gen: None,
            control,
            counters,
            closed,
            sessions: Vec::new(),
            model_id,
            rotate,
            status: status.clone(),
            stop: stop.clone(),
            runs: 0,
        };
        let thread = std::thread::Builder::new().name("retrainer".into()).spawn(move || {
            if let Err(e) = super::os::set_current_thread_nice(r.cfg.nice) {
                warn!(nice = r.cfg.nice, error = %e, "Cannot lower the retraining thread's priority.");
            }
            if r.cfg.sched_idle {
                if let Err(e) = super::os::set_current_thread_sched_idle() {
                    warn!(error = %e, "Cannot move the retraining thread to SCHED_IDLE; it runs niced only.");
                }
            }
            r.register_live();
            r.run(rx);
        })?;
        Ok(Some(RetrainHandle { tx, stop, thread: Some(thread), status }))
    }

    /// Requests a run now; false if one is already queued.
    pub fn trigger(&self) -> bool {
        self.tx.try_send(RetrainRequest::Now).is_ok()
    }

    /// Makes generation `gen` live now (and at the next start).
    pub fn rollback(&self, gen: u64) -> Result<String, ControlError> {
        rollback_via(&self.tx, gen)
    }

    /// A copy of the status.
    pub fn status(&self) -> RetrainStatus {
        self.status.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Stops the thread (an ongoing training run finishes its epoch first).
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.thread.take() {
            let _ = h.join();
        }
    }
}

fn rollback_via(tx: &Sender<RetrainRequest>, gen: u64) -> Result<String, ControlError> {
    let (rtx, rrx) = bounded(1);
    tx.send_timeout(RetrainRequest::Rollback { gen, reply: rtx }, Duration::from_secs(5))
        .map_err(|_| ControlError::Busy)?;
    rrx.recv_timeout(Duration::from_secs(600)).map_err(|_| ControlError::NoAnswer)?
}

struct Actions(Option<Sender<RetrainRequest>>, Option<Arc<Mutex<RetrainStatus>>>);

impl super::control::ControlActions for Actions {
    fn retrain(&self) -> Result<String, ControlError> {
        match &self.0 {
            Some(tx) => match tx.try_send(RetrainRequest::Now) {
                Ok(()) => Ok("retraining requested".into()),
                Err(_) => Err(ControlError::AlreadyQueued),
            },
            None => Err(ControlError::RetrainDisabled),
        }
    }
    fn rollback(&self, gen: u64) -> Result<String, ControlError> {
        match &self.0 {
            Some(tx) => rollback_via(tx, gen),
            None => Err(ControlError::RollbackDisabled { gen }),
        }
    }
    fn retrain_status(&self) -> Option<RetrainStatus> {
        Some(self.1.as_ref()?.lock().unwrap_or_else(|p| p.into_inner()).clone())
    }
}

/// Control actions backed by the retrainer.
pub fn actions(h: Option<&RetrainHandle>) -> Box<dyn super::control::ControlActions> {
    Box::new(Actions(h.map(|h| h.tx.clone()), h.map(|h| h.status.clone())))
}

/// The live model file in a models directory, if any.
pub fn live_model_path(dir: &Path) -> Result<Option<PathBuf>, super::models::StoreError> {
    ModelStore::new(dir).live_path()
}

/// A recording split into a training head and a held-out tail.
struct Split {
    path: PathBuf,
    rec: Recording,
    holdout_start: usize,
    hash: String,
}

/// Scores `model` on the held-out tails: pooled R² over labelled bins,
/// decoding each file causally from up to 500 bins before its tail.
pub fn holdout_r2(model: &Model, parts: &[(&Recording, usize)]) -> Option<f64> {
    let sets: Vec<TrainSet<'_>> = parts.iter().map(|(rec, _)| rec.train_set()).collect();
    let starts: Vec<usize> = parts.iter().map(|(_, start)| *start).collect();
    let (r2, _) = score_tails(model, &sets, &starts, false);
    (!r2.is_empty()).then(|| crate::metrics::mean(&r2))
}

/// The gate: accept when `candidate >= live + margin` (a live model that
/// cannot be scored counts as -inf).
pub fn gate(candidate_r2: f64, live_r2: Option<f64>, margin: f64) -> bool {
    candidate_r2.is_finite() && candidate_r2 >= live_r2.unwrap_or(f64::NEG_INFINITY) + margin
}

struct Retrainer {
    cfg: RetrainSection,
    record_dir: Option<PathBuf>,
    store: ModelStore,
    live: ModelFile,
    live_gen: Option<u64>,
    control: Sender<LoopCommand>,
    counters: Arc<LoopCounters>,
    closed: Receiver<ClosedSession>,
    sessions: Vec<PathBuf>,
    model_id: Arc<Mutex<String>>,
    rotate: Arc<AtomicBool>,
    status: Arc<Mutex<RetrainStatus>>,
    stop: Arc<AtomicBool>,
    runs: u64,
}

impl Retrainer {
    fn set_status(&self, f: impl FnOnce(&mut RetrainStatus)) {
        f(&mut self.status.lock().unwrap_or_else(|p| p.into_inner()));
    }

    /// Finds the live model among the generations, or stores it as a new one.
    fn register_live(&mut self) {
        let gens = self.store.generations().unwrap_or_default();
        for g in gens.iter().rev() {
            if let Ok(mf) = self.store.load(*g) {
                if mf.meta.id == self.live.meta.id {
                    self.live_gen = Some(*g);
                    break;
                }
            }
        }
        if self.live_gen.is_none() {
            let mut mf = self.live.clone();
            mf.meta.decision = Some(json!({"status": "accepted", "reason": "initial model of this models directory"}));
            match self.store.add(&mut mf) {
                Ok(g) => self.live_gen = Some(g),
                Err(e) => {
                    warn!(dir = %self.store.dir().display(), error = %e, "Cannot store the initial model in the models directory.")
                }
            }
        }
        if let Some(g) = self.live_gen {
            if let Err(e) = self.store.set_live(g) {
                warn!(generation = g, error = %e, "Cannot mark the live generation.");
            }
        }
        let lg = self.live_gen;
        self.set_status(|s| s.live_generation = lg);
        // Session files already on disk from earlier runs.
        if let Some(dir) = &self.record_dir {
            if let Ok(rd) = std::fs::read_dir(dir) {
                let mut v: Vec<PathBuf> = rd
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| {
                        p.file_name()
                            .and_then(|n| n.to_str())
                            .map(|n| n.starts_with("session-") && n.ends_with(".h5"))
                            .unwrap_or(false)
                    })
                    .collect();
                v.sort();
                self.sessions = v;
            }
        }
    }

    fn run(&mut self, rx: Receiver<RetrainRequest>) {
        let mut last_run = Instant::now();
        let mut labelled_at_last = self.counters.snapshot().behavior_in;
        while !self.stop.load(Ordering::Relaxed) {
            self.collect_closed();
            match rx.recv_timeout(Duration::from_millis(200)) {
                Ok(RetrainRequest::Now) => {
                    self.run_once("requested");
                    last_run = Instant::now();
                    labelled_at_last = self.counters.snapshot().behavior_in;
                }
                Ok(RetrainRequest::Rollback { gen, reply }) => {
                    let _ = reply.send(self.rollback(gen));
                }
                Err(RecvTimeoutError::Timeout) => {
                    let labelled = self.counters.snapshot().behavior_in;
                    let by_time =
                        self.cfg.interval_s > 0 && last_run.elapsed() >= Duration::from_secs(self.cfg.interval_s);
                    let by_bins = self.cfg.after_labelled_bins > 0
                        && labelled.saturating_sub(labelled_at_last) >= self.cfg.after_labelled_bins;
                    if by_time || by_bins {
                        self.run_once(if by_time { "interval" } else { "new labelled bins" });
                        last_run = Instant::now();
                        labelled_at_last = self.counters.snapshot().behavior_in;
                    }
                }
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
    }

    fn collect_closed(&mut self) -> usize {
        let mut n = 0;
        while let Ok(c) = self.closed.try_recv() {
            if !self.sessions.contains(&c.path) {
                self.sessions.push(c.path);
            }
            n += 1;
        }
        n
    }

    fn swap_in(&mut self, mf: &ModelFile) -> Result<(), String> {
        let kernel = Box::new(StepKernel::new(mf.model.clone()));
        let (rtx, rrx) = bounded(1);
        self.control
            .send_timeout(
                LoopCommand::Swap { kernel, model_id: mf.meta.id.clone(), reply: rtx },
                Duration::from_secs(5),
            )
            .map_err(|_| "the decode loop is not taking commands".to_string())?;
        // Wait for the loop's answer however long it takes: the loop always
        // answers (or drops the sender when it stops), so the outcome is
        // exact and the previous kernel is dropped here, off the loop.
        let outcome = loop {
            match rrx.recv_timeout(Duration::from_millis(100)) {
                Ok(o) => break o,
                Err(crossbeam_channel::RecvTimeoutError::Timeout) if !self.stop.load(Ordering::Relaxed) => continue,
                Err(_) => return Err("the decode loop stopped before answering the swap".into()),
            }
        };
        match outcome {
            SwapOutcome::Swapped { previous } => {
                drop(previous);
                *self.model_id.lock().unwrap_or_else(|p| p.into_inner()) = mf.meta.id.clone();
                self.live = mf.clone();
                Ok(())
            }
            SwapOutcome::Refused { reason, .. } => Err(reason),
        }
    }

    fn rollback(&mut self, gen: u64) -> Result<String, ControlError> {
        let mf = self.store.load(gen).map_err(|e| match e {
            super::models::StoreError::NoSuchGeneration { gen, dir } => ControlError::NoSuchGeneration { gen, dir },
            e => ControlError::Store(e.to_string()),
        })?;
        if super::models::decision_status(&mf) == Some(super::models::GenStatus::Rejected) {
            return Err(ControlError::Rejected { gen });
        }
        self.swap_in(&mf).map_err(|reason| ControlError::SwapRefused { gen, reason })?;
        self.store.set_live(gen).map_err(|e| ControlError::Store(e.to_string()))?;
        self.live_gen = Some(gen);
        self.set_status(|s| s.live_generation = Some(gen));
        info!(generation = gen, id = %mf.meta.id, "Rolled back: generation is live.");
        Ok(format!("generation {gen} ({}) is live", mf.meta.id))
    }

    /// Closes the current session file so its bins can be trained on.
    fn rotate_session(&mut self) {
        if self.record_dir.is_none() {
            return;
        }
        self.rotate.store(true, Ordering::Relaxed);
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline && !self.stop.load(Ordering::Relaxed) {
            if let Ok(c) = self.closed.recv_timeout(Duration::from_millis(50)) {
                if !self.sessions.contains(&c.path) {
                    self.sessions.push(c.path);
                }
                self.collect_closed();
                return;
            }
        }
    }

    fn run_once(&mut self, trigger: &str) {
        self.runs += 1;
        self.set_status(|s| {
            s.runs += 1;
            s.running = true;
        });
        let t0 = Instant::now();
        let result = self.train_candidate(trigger);
        let secs = t0.elapsed().as_secs_f64();
        match result {
            Ok(decision) => {
                let accepted = decision["status"] == "accepted";
                self.set_status(|s| {
                    if accepted {
                        s.accepted += 1;
                    } else {
                        s.rejected += 1;
                    }
                    s.last_decision = Some(decision.clone());
                    s.live_generation = self.live_gen;
                });
            }
            Err(reason) => {
                warn!(trigger, seconds = format!("{secs:.1}"), reason = %reason, "Retraining failed; the live model keeps running.");
                self.set_status(|s| {
                    s.failed += 1;
                    s.last_decision = Some(json!({"status": "failed", "reason": reason, "trigger": trigger}));
                });
            }
        }
        self.set_status(|s| s.running = false);
    }

    fn train_candidate(&mut self, trigger: &str) -> Result<serde_json::Value, String> {
        self.rotate_session();
        let channels = self.live.model.spec.channels;
        let mut files: Vec<PathBuf> = self.cfg.recordings.clone();
        if self.cfg.use_sessions {
            let skip = self.sessions.len().saturating_sub(self.cfg.max_session_files);
            files.extend(self.sessions.iter().skip(skip).cloned());
        }
        let mut usable = Vec::new();
        let mut skipped = Vec::new();
        // NWB files in the list are binned at the live model's bin width.
        let mut opts = ReadOptions::default();
        opts.nwb.bin_seconds = self.live.meta.training_bin_seconds();
        for p in files {
            match Recording::read_checked(&p, &opts) {
                Ok(rec) => {
                    let labelled = rec.labelled_bins();
                    if rec.n_channels() != channels {
                        skipped.push(json!({"path": p.display().to_string(), "reason": format!("{} channels, the live model has {channels}", rec.n_channels())}));
                    } else if labelled == 0 || rec.n_behavior() != self.live.model.spec.dz {
                        debug!(path = %p.display(), "No usable labelled bins; not used for retraining.");
                    } else {
                        usable.push((p, rec, labelled));
                    }
                }
                Err(e) => {
                    warn!(path = %p.display(), error = %e, "Skipping an unreadable recording in the retraining set.");
                    skipped.push(json!({"path": p.display().to_string(), "reason": e.to_string()}));
                }
            }
        }
        let total: usize = usable.iter().map(|u| u.2).sum();
        if total == 0 {
            return Err(format!(
                "no labelled data (behaviour) in {} usable recordings; skipped {}",
                usable.len(),
                skipped.len()
            ));
        }
        // Hold out the most recent labelled bins: walk files newest first.
        let mut want = ((total as f64) * self.cfg.holdout_fraction).ceil() as usize;
        let mut splits: Vec<Split> = Vec::new();
        for (p, rec, labelled) in usable.into_iter().rev() {
            let take = want.min(labelled);
            want -= take;
            let mut start = rec.n_bins();
            let mut seen = 0;
            while seen < take && start > 0 {
                start -= 1;
                if rec.is_labelled(start) {
                    seen += 1;
                }
            }
            let hash = file_hash(&p).unwrap_or_default();
            splits.push(Split { path: p, rec, holdout_start: start, hash });
        }
        splits.reverse();
        let heads: Vec<Recording> =
            splits.iter().filter(|s| s.holdout_start >= 100).map(|s| s.rec.slice_bins(0, s.holdout_start)).collect();
        if heads.is_empty() {
            return Err("too little labelled data before the held-out part (need >= 100 bins in some recording)".into());
        }
        let sets: Vec<TrainSet<'_>> = heads.iter().map(Recording::train_set).collect();
        let mut tcfg = self.cfg.train.clone();
        tcfg.seed = tcfg.seed.wrapping_add(self.runs);
        let t0 = Instant::now();
        let outcome = train_cancellable(
            &sets,
            &tcfg,
            &mut |e| debug!(epoch = e.epoch, loss = e.train_loss, val_r2 = e.val_r2, "Retraining epoch."),
            &self.stop,
        )
        .map_err(|e| format!("training failed: {e}"))?;
        let train_seconds = t0.elapsed().as_secs_f64();
        let parts: Vec<(&Recording, usize)> = splits.iter().map(|s| (&s.rec, s.holdout_start)).collect();
        let holdout_bins: usize = splits.iter().map(|s| s.rec.n_bins() - s.holdout_start).sum();
        let live_r2 = holdout_r2(&self.live.model, &parts);
        let cand_r2 = holdout_r2(&outcome.model, &parts).ok_or("no labelled bins in the held-out part")?;
        if !cand_r2.is_finite() {
            return Err(format!("candidate's held-out R² is not finite ({cand_r2})"));
        }
        let accept = gate(cand_r2, live_r2, self.cfg.min_improvement_r2);
        let data: Vec<DataSource> = splits
            .iter()
            .map(|s| DataSource {
                path: s.path.display().to_string(),
                hash: s.hash.clone(),
                bins: s.rec.n_bins(),
                spikes_path: "/spikes".into(),
                behavior_path: None,
                bin_seconds: Some(s.rec.bin_seconds),
                nwb: None,
            })
            .collect();
        let mut decision = json!({
            "status": if accept { "accepted" } else { "rejected" },
            "trigger": trigger,
            "candidate_r2": cand_r2,
            "live_r2": live_r2,
            "live_id": self.live.meta.id,
            "live_generation": self.live_gen,
            "margin": self.cfg.min_improvement_r2,
            "holdout_bins": holdout_bins,
            "train_seconds": train_seconds,
            "epochs": outcome.report.epochs_run,
            "data": data.iter().map(|d| json!({"path": d.path, "bins": d.bins, "hash": d.hash})).collect::<Vec<_>>(),
            "skipped": skipped,
        });
        let info = TrainingInfo { data, config: tcfg, report: outcome.report.clone() };
        let mut meta = ModelMeta::new(&outcome.model, Some(info), Some(self.live.meta.id.clone()));
        meta.decision = Some(decision.clone());
        let mut mf = ModelFile { model: outcome.model, meta };
        let gen = self.store.add(&mut mf).map_err(|e| format!("cannot store the candidate: {e}"))?;
        decision["generation"] = gen.into();
        if accept {
            match self.swap_in(&mf) {
                Ok(()) => {
                    if let Err(e) = self.store.set_live(gen) {
                        error!(generation = gen, error = %e, "Swapped in, but the LIVE marker could not be written; a restart would load the previous model.");
                    }
                    self.live_gen = Some(gen);
                    info!(generation = gen, id = %mf.meta.id, candidate_r2 = format!("{cand_r2:.4}"), live_r2 = ?live_r2.map(|v| (v * 1e4).round() / 1e4), holdout_bins, train_seconds = format!("{train_seconds:.1}"), files = splits.len(), trigger, "Retrained model accepted and swapped in.");
                }
                Err(reason) => {
                    decision["status"] = "rejected".into();
                    decision["reason"] = format!("swap refused: {reason}").into();
                    mf.meta.decision = Some(decision.clone());
                    let _ = mf.save(&self.store.path(gen));
                    warn!(generation = gen, reason = %reason, "Accepted candidate could not be swapped in.");
                }
            }
        } else {
            info!(generation = gen, candidate_r2 = format!("{cand_r2:.4}"), live_r2 = ?live_r2.map(|v| (v * 1e4).round() / 1e4), margin = self.cfg.min_improvement_r2, holdout_bins, train_seconds = format!("{train_seconds:.1}"), trigger, "Retrained candidate rejected by the gate; the live model stays.");
        }
        Ok(decision)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gate_needs_the_margin() {
        assert!(gate(0.80, Some(0.70), 0.05));
        assert!(!gate(0.74, Some(0.70), 0.05));
        assert!(!gate(0.60, Some(0.70), 0.0));
        assert!(gate(0.10, None, 0.01));
        assert!(!gate(f64::NAN, None, 0.0));
    }
}
