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
use tracing::{debug, error, info, warn};

mod candidate;
pub mod decision;

pub use decision::{Decision, RetrainError, SwapError, Verdict};

use super::config::{RetrainSection, ServeConfig};
use super::control::ControlError;
use super::decode_loop::{LoopCommand, SwapOutcome};
use super::models::ModelStore;
use super::recorder::ClosedSession;
use super::stats::LoopCounters;
use crate::model::file::{ModelMeta, TrainingInfo};
use crate::model::train::{score_tails, train_cancellable, TrainSet};
use crate::model::{Model, ModelFile, StepKernel};
use crate::recording::{ReadOptions, Recording};

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
    pub last_decision: Option<Decision>,
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
            let first = Decision::new(Verdict::Accepted, "start");
            mf.meta.decision =
                Some(Decision { reason: Some("initial model of this models directory".into()), ..first }.to_json());
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

    fn swap_in(&mut self, mf: &ModelFile) -> Result<(), SwapError> {
        let kernel = Box::new(StepKernel::new(mf.model.clone()));
        let (rtx, rrx) = bounded(1);
        self.control
            .send_timeout(
                LoopCommand::Swap { kernel, model_id: mf.meta.id.clone(), reply: rtx },
                Duration::from_secs(5),
            )
            .map_err(|_| SwapError::LoopBusy)?;
        // Wait for the loop's answer however long it takes: the loop always
        // answers (or drops the sender when it stops), so the outcome is
        // exact and the previous kernel is dropped here, off the loop.
        let outcome = loop {
            match rrx.recv_timeout(Duration::from_millis(100)) {
                Ok(o) => break o,
                Err(crossbeam_channel::RecvTimeoutError::Timeout) if !self.stop.load(Ordering::Relaxed) => continue,
                Err(_) => return Err(SwapError::LoopStopped),
            }
        };
        match outcome {
            SwapOutcome::Swapped { previous } => {
                drop(previous);
                *self.model_id.lock().unwrap_or_else(|p| p.into_inner()) = mf.meta.id.clone();
                self.live = mf.clone();
                Ok(())
            }
            SwapOutcome::Refused { reason, .. } => Err(SwapError::Refused(reason)),
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
        self.swap_in(&mf).map_err(|e| ControlError::SwapRefused { gen, reason: e.to_string() })?;
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
        let decision = match self.train_candidate(trigger) {
            Ok(d) => d,
            Err(e) => {
                let secs = format!("{:.1}", t0.elapsed().as_secs_f64());
                warn!(trigger, seconds = secs, reason = %e, "Retraining failed; the live model keeps running.");
                Decision::failed(trigger, &e)
            }
        };
        // The run's recordings and tensors are freed by now; hand the pages back.
        super::os::release_free_heap();
        let live = self.live_gen;
        self.set_status(|s| {
            match decision.status {
                Verdict::Accepted => s.accepted += 1,
                Verdict::Rejected => s.rejected += 1,
                Verdict::Failed => s.failed += 1,
            }
            s.live_generation = live;
            s.last_decision = Some(decision);
            s.running = false;
        });
    }

    /// The recordings of this run: the configured ones, then the most
    /// recent session files.
    fn training_files(&self) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = self.cfg.recordings.clone();
        if self.cfg.use_sessions {
            let skip = self.sessions.len().saturating_sub(self.cfg.max_session_files);
            files.extend(self.sessions.iter().skip(skip).cloned());
        }
        files
    }

    fn train_candidate(&mut self, trigger: &str) -> Result<Decision, RetrainError> {
        self.rotate_session();
        let spec = &self.live.model.spec;
        // NWB files in the list are binned at the live model's bin width.
        let mut opts = ReadOptions::default();
        opts.nwb.bin_seconds = self.live.meta.training_bin_seconds();
        let files = self.training_files();
        let (usable, skipped) = candidate::gather(&files, &opts, spec.channels, spec.dz, self.cfg.max_data_bytes);
        let splits = candidate::split_holdout(usable, self.cfg.holdout_fraction, skipped.len())?;
        let mut tcfg = self.cfg.train.clone();
        tcfg.seed = tcfg.seed.wrapping_add(self.runs);
        let sets_owned = candidate::heads(&splits);
        let sets: Vec<TrainSet<'_>> = sets_owned.iter().map(Recording::train_set).collect();
        let t0 = Instant::now();
        let progress = &mut |e: &crate::model::train::EpochInfo| {
            debug!(epoch = e.epoch, loss = e.train_loss, val_r2 = e.val_r2, "Retraining epoch.")
        };
        let outcome = train_cancellable(&sets, &tcfg, progress, &self.stop)?;
        let train_seconds = t0.elapsed().as_secs_f64();

        let parts: Vec<(&Recording, usize)> = splits.iter().map(|s| (&s.rec, s.holdout_start)).collect();
        let cand_r2 = holdout_r2(&outcome.model, &parts).ok_or(RetrainError::NoHeldOutLabels)?;
        if !cand_r2.is_finite() {
            return Err(RetrainError::NonFiniteR2(cand_r2));
        }
        let live_r2 = holdout_r2(&self.live.model, &parts);
        let (sources, used) = candidate::provenance(&splits);
        let accept = gate(cand_r2, live_r2, self.cfg.min_improvement_r2);
        let verdict = if accept { Verdict::Accepted } else { Verdict::Rejected };
        let mut decision = Decision {
            candidate_r2: Some(cand_r2),
            live_r2,
            live_id: Some(self.live.meta.id.clone()),
            live_generation: self.live_gen,
            margin: self.cfg.min_improvement_r2,
            holdout_bins: splits.iter().map(|s| s.rec.n_bins() - s.holdout_start).sum(),
            train_seconds,
            epochs: outcome.report.epochs_run,
            data: used,
            skipped,
            ..Decision::new(verdict, trigger)
        };
        let info = TrainingInfo { data: sources, config: tcfg, report: outcome.report.clone() };
        let mut meta = ModelMeta::new(&outcome.model, Some(info), Some(self.live.meta.id.clone()));
        meta.decision = Some(decision.to_json());
        let mut mf = ModelFile { model: outcome.model, meta };
        let gen = self.store.add(&mut mf)?;
        decision.generation = Some(gen);
        Ok(self.conclude(decision, mf, gen))
    }

    /// Swaps an accepted candidate in (a refused swap turns it into a
    /// rejection, saved with its reason) and logs the verdict.
    fn conclude(&mut self, mut decision: Decision, mut mf: ModelFile, gen: u64) -> Decision {
        let r2 = decision.candidate_r2.map(|v| format!("{v:.4}"));
        let live_r2 = decision.live_r2.map(|v| (v * 1e4).round() / 1e4);
        let (bins, secs) = (decision.holdout_bins, format!("{:.1}", decision.train_seconds));
        if decision.status == Verdict::Rejected {
            info!(generation = gen, candidate_r2 = ?r2, live_r2 = ?live_r2, margin = decision.margin, holdout_bins = bins, train_seconds = secs, trigger = %decision.trigger, "Retrained candidate rejected by the gate; the live model stays.");
            return decision;
        }
        match self.swap_in(&mf) {
            Ok(()) => {
                if let Err(e) = self.store.set_live(gen) {
                    error!(generation = gen, error = %e, "Swapped in, but the LIVE marker could not be written; a restart would load the previous model.");
                }
                self.live_gen = Some(gen);
                info!(generation = gen, id = %mf.meta.id, candidate_r2 = ?r2, live_r2 = ?live_r2, holdout_bins = bins, train_seconds = secs, files = decision.data.len(), trigger = %decision.trigger, "Retrained model accepted and swapped in.");
            }
            Err(reason) => {
                decision.status = Verdict::Rejected;
                decision.reason = Some(format!("swap refused: {reason}"));
                mf.meta.decision = Some(decision.to_json());
                if let Err(e) = mf.save(&self.store.path(gen)) {
                    warn!(generation = gen, error = %e, "Cannot record the refused swap in the candidate's file.");
                }
                warn!(generation = gen, reason = %reason, "Accepted candidate could not be swapped in.");
            }
        }
        decision
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
