//! Session recording: the decode loop hands fixed-capacity [`RecordBatch`]es
//! to one recorder thread through a bounded channel; the recorder appends
//! them to an HDF5 session file and returns the emptied batch to a free list.
//!
//! Invariants: the loop never blocks and never allocates for recording (it
//! fills preallocated batches; with no free batch it counts the loss); the
//! recorder is the only thread touching HDF5 session files; a file closed
//! cleanly holds every bin handed over, in the offline layout (`/spikes`,
//! `/timestamps`, aligned `/behavior` + `/behavior_valid`, `bin_seconds`)
//! plus `/seq`, `/t_ns`, `/recv_ns`, `/outputs`, `/output_seq`,
//! `/output_flags` and the raw behaviour log, so `train` and `eval` read it
//! directly. Files rotate by duration or size, and at every stream restart
//! (seq back to 0), so seqs within one file are unique and increasing.
//! The open file is flushed to the OS every `FLUSH_EVERY` (every batch when
//! the disk is short of room), not after every batch: each HDF5 flush writes
//! every partly filled chunk whole.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender};
use tracing::{error, info, warn};

use super::config::RecordSection;
use super::stats::LoopCounters;
use crate::recording::{AppendWriter, RecordingError};

pub use crate::ingest::BEHAVIOR_MAX_DIMS;
use crate::ingest::{FrontendSlot, RigEvent};

/// A fixed-capacity batch of inputs, outputs and behaviour bins.
#[derive(Debug)]
pub struct RecordBatch {
    cap: usize,
    channels: usize,
    out_dim: usize,
    /// The first item of this batch follows a stream restart (new file).
    pub starts_new_stream: bool,
    pub in_values: Vec<f32>,
    pub in_seq: Vec<u64>,
    pub in_t_ns: Vec<u64>,
    pub in_recv_ns: Vec<u64>,
    /// Per-bin prediction error `||x_t - xhat_t||` (NaN when not tracked).
    pub in_pred_err: Vec<f32>,
    pub out_values: Vec<f32>,
    pub out_seq: Vec<u64>,
    pub out_flags: Vec<u8>,
    pub beh_dims: usize,
    pub beh_values: Vec<f32>,
    pub beh_seq: Vec<u64>,
    /// TTL events from the rig.
    pub events: Vec<RigEvent>,
    /// When the first item went in (for age-based flushing).
    pub first_at: Option<Instant>,
}

impl RecordBatch {
    /// A batch holding up to `cap` rows of each kind.
    pub fn new(cap: usize, channels: usize, out_dim: usize) -> Self {
        Self {
            cap,
            channels,
            out_dim,
            starts_new_stream: false,
            in_values: Vec::with_capacity(cap * channels),
            in_seq: Vec::with_capacity(cap),
            in_t_ns: Vec::with_capacity(cap),
            in_recv_ns: Vec::with_capacity(cap),
            in_pred_err: Vec::with_capacity(cap),
            out_values: Vec::with_capacity(cap * out_dim),
            out_seq: Vec::with_capacity(cap),
            out_flags: Vec::with_capacity(cap),
            beh_dims: 0,
            beh_values: Vec::with_capacity(cap * BEHAVIOR_MAX_DIMS),
            beh_seq: Vec::with_capacity(cap),
            events: Vec::with_capacity(cap),
            first_at: None,
        }
    }

    /// Bytes one batch of `cap` rows preallocates.
    pub fn bytes(cap: usize, channels: usize, out_dim: usize) -> usize {
        let per_row = 4 * (channels + out_dim + BEHAVIOR_MAX_DIMS) + 8 * 5 + 4 + 1 + std::mem::size_of::<RigEvent>();
        cap * per_row
    }

    /// Empties the batch, keeping its capacity.
    pub fn clear(&mut self) {
        self.starts_new_stream = false;
        self.in_values.clear();
        self.in_seq.clear();
        self.in_t_ns.clear();
        self.in_recv_ns.clear();
        self.in_pred_err.clear();
        self.out_values.clear();
        self.out_seq.clear();
        self.out_flags.clear();
        self.beh_values.clear();
        self.beh_seq.clear();
        self.events.clear();
        self.first_at = None;
    }

    /// No items.
    pub fn is_empty(&self) -> bool {
        self.items() == 0
    }

    /// Items of every kind.
    pub fn items(&self) -> usize {
        self.in_seq.len() + self.out_seq.len() + self.beh_seq.len() + self.events.len()
    }

    /// Some section is at capacity: hand it over before adding more.
    pub fn is_full(&self) -> bool {
        [self.in_seq.len(), self.out_seq.len(), self.beh_seq.len(), self.events.len()].iter().any(|&n| n >= self.cap)
    }

    fn touch(&mut self, now: Instant) {
        if self.first_at.is_none() {
            self.first_at = Some(now);
        }
    }

    /// One accepted input bin (raw values).
    #[inline]
    pub fn push_input(&mut self, values: &[f32], seq: u64, t_ns: u64, recv_ns: u64, pred_err: f32, now: Instant) {
        debug_assert_eq!(values.len(), self.channels);
        self.touch(now);
        self.in_values.extend_from_slice(values);
        self.in_seq.push(seq);
        self.in_t_ns.push(t_ns);
        self.in_recv_ns.push(recv_ns);
        self.in_pred_err.push(pred_err);
    }

    /// One published output.
    #[inline]
    pub fn push_output(&mut self, values: &[f32], seq: u64, flags: u16, now: Instant) {
        debug_assert_eq!(values.len(), self.out_dim);
        self.touch(now);
        self.out_values.extend_from_slice(values);
        self.out_seq.push(seq);
        self.out_flags.push(flags as u8);
    }

    /// One behaviour bin (`values.len() <= BEHAVIOR_MAX_DIMS`, constant per stream).
    #[inline]
    pub fn push_behavior(&mut self, values: &[f32], seq: u64, now: Instant) {
        self.touch(now);
        self.beh_dims = values.len();
        self.beh_values.extend_from_slice(values);
        self.beh_seq.push(seq);
    }
}

impl RecordBatch {
    /// One TTL event.
    #[inline]
    pub fn push_event(&mut self, ev: RigEvent, now: Instant) {
        self.touch(now);
        self.events.push(ev);
    }
}

/// What goes into every session file's attributes.
#[derive(Debug, Clone)]
pub struct SessionInfo {
    pub model_id: String,
    pub config_toml: String,
    pub channels: usize,
    pub out_dim: usize,
    /// Record `/prediction_error` (decode.track_prediction).
    pub track_prediction: bool,
    /// The front end's settings and thresholds, once a voltage source has them.
    pub frontend: FrontendSlot,
}

/// `YYYYMMDDTHHMMSSZ` for a Unix time (UTC), for file names.
pub fn utc_stamp(unix_s: u64) -> String {
    let t = crate::clock::utc(unix_s as i64);
    format!("{:04}{:02}{:02}T{:02}{:02}{:02}Z", t.year, t.month, t.day, t.hour, t.minute, t.second)
}

struct SessionFile {
    w: AppendWriter,
    track_prediction: bool,
    opened: Instant,
    /// When the file was last flushed to the OS, and the items appended since.
    flushed_at: Instant,
    unflushed_items: u64,
    bytes: u64,
    seqs: Vec<u64>,
    behavior: HashMap<u64, Vec<f32>>,
    beh_dims: usize,
    first_recv_ns: Option<u64>,
    timestamps: Vec<f64>,
    has_events: bool,
    frontend: FrontendSlot,
}

impl SessionFile {
    fn open(path: &Path, cfg: &RecordSection, info: &SessionInfo) -> Result<Self, RecordingError> {
        let mut w = AppendWriter::create(path, cfg.bin_seconds)?;
        w.add_f32("spikes", info.channels)?;
        w.add_u64("seq")?;
        w.add_u64("t_ns")?;
        w.add_u64("recv_ns")?;
        w.add_f64("timestamps")?;
        w.add_f32("outputs", info.out_dim)?;
        if info.track_prediction {
            w.add_f32("prediction_error", 1)?;
        }
        w.add_u64("output_seq")?;
        w.add_u8("output_flags")?;
        w.set_attr_str("model_id", &info.model_id)?;
        w.set_attr_str("config", &info.config_toml)?;
        w.set_attr_f64("started_unix_s", crate::model::file::now_unix_s())?;
        w.flush()?;
        Ok(Self {
            w,
            track_prediction: info.track_prediction,
            opened: Instant::now(),
            flushed_at: Instant::now(),
            unflushed_items: 0,
            bytes: 0,
            seqs: Vec::new(),
            behavior: HashMap::new(),
            beh_dims: 0,
            first_recv_ns: None,
            timestamps: Vec::new(),
            has_events: false,
            frontend: info.frontend.clone(),
        })
    }

    fn write(&mut self, b: &RecordBatch) -> Result<(), RecordingError> {
        if !b.in_seq.is_empty() {
            let first = *self.first_recv_ns.get_or_insert(b.in_recv_ns[0]);
            self.timestamps.clear();
            self.timestamps.extend(b.in_recv_ns.iter().map(|&r| r.saturating_sub(first) as f64 * 1e-9));
            self.w.append_f32("spikes", &b.in_values)?;
            self.w.append_u64("seq", &b.in_seq)?;
            self.w.append_u64("t_ns", &b.in_t_ns)?;
            self.w.append_u64("recv_ns", &b.in_recv_ns)?;
            if self.track_prediction {
                self.w.append_f32("prediction_error", &b.in_pred_err)?;
            }
            self.w.append_f64("timestamps", &self.timestamps)?;
            self.seqs.extend_from_slice(&b.in_seq);
            self.bytes += (b.in_values.len() * 4 + b.in_seq.len() * 32) as u64;
        }
        if !b.out_seq.is_empty() {
            self.w.append_f32("outputs", &b.out_values)?;
            self.w.append_u64("output_seq", &b.out_seq)?;
            self.w.append_u8("output_flags", &b.out_flags)?;
            self.bytes += (b.out_values.len() * 4 + b.out_seq.len() * 9) as u64;
        }
        if !b.beh_seq.is_empty() {
            if self.beh_dims == 0 {
                self.beh_dims = b.beh_dims;
                self.w.add_f32("behavior_log", b.beh_dims)?;
                self.w.add_u64("behavior_log_seq")?;
            }
            self.w.append_f32("behavior_log", &b.beh_values)?;
            self.w.append_u64("behavior_log_seq", &b.beh_seq)?;
            self.remember_behavior(b, |_| true);
        }
        if !b.events.is_empty() {
            self.write_events(&b.events)?;
        }
        self.unflushed_items += b.items() as u64;
        Ok(())
    }

    /// Hands what was appended to the OS (not fsync: a crash of this
    /// process loses nothing flushed). Flushing after every batch wrote each
    /// partly filled chunk again, whole, at every batch: ~6x the data's
    /// bytes at high rates.
    fn flush(&mut self) -> Result<(), RecordingError> {
        self.w.flush()?;
        self.flushed_at = Instant::now();
        self.unflushed_items = 0;
        Ok(())
    }

    /// Keeps the behaviour in `b` that belongs to bins of this file. A rig
    /// sends a bin's behaviour after its observation, so at a rotation the
    /// behaviour of the closing file's last bins comes in the batch that
    /// opens the next file; without this they would be unlabelled in both.
    fn adopt_late_behavior(&mut self, b: &RecordBatch) {
        let (Some(&first), Some(&last)) = (self.seqs.first(), self.seqs.last()) else { return };
        if b.starts_new_stream || b.beh_dims == 0 || b.beh_dims != self.beh_dims {
            return;
        }
        self.remember_behavior(b, |s| (first..=last).contains(&s));
    }

    /// Keeps the behaviour rows of `b` whose seq passes `keep`, by seq.
    fn remember_behavior(&mut self, b: &RecordBatch, keep: impl Fn(u64) -> bool) {
        let d = b.beh_dims;
        for (i, &s) in b.beh_seq.iter().enumerate().filter(|(_, &s)| keep(s)) {
            self.behavior.insert(s, b.beh_values[i * d..(i + 1) * d].to_vec());
        }
    }

    /// TTL events: `/event_seq` (bin), `/event_sample_num`, `/event_line`, `/event_state`.
    fn write_events(&mut self, events: &[RigEvent]) -> Result<(), RecordingError> {
        if !self.has_events {
            self.has_events = true;
            self.w.add_u64("event_seq")?;
            self.w.add_u64("event_sample_num")?;
            self.w.add_u8("event_line")?;
            self.w.add_u8("event_state")?;
        }
        let col = |f: fn(&RigEvent) -> u64| events.iter().map(f).collect::<Vec<u64>>();
        self.w.append_u64("event_seq", &col(|e| e.seq))?;
        self.w.append_u64("event_sample_num", &col(|e| e.sample_num))?;
        self.w.append_u8("event_line", &events.iter().map(|e| e.line).collect::<Vec<u8>>())?;
        self.w.append_u8("event_state", &events.iter().map(|e| e.state).collect::<Vec<u8>>())?;
        Ok(())
    }

    /// Writes the aligned behaviour datasets and the front end's settings, and closes the file.
    fn finish(mut self) -> Result<(PathBuf, usize, usize), RecordingError> {
        let path = self.w.path().to_path_buf();
        let frontend = self.frontend.lock().map(|g| g.clone()).unwrap_or_default();
        if let Some(fe) = frontend {
            self.w.add_group(crate::frontend::STORE_GROUP, |g| fe.store(g))?;
        }
        let mut labelled = 0;
        if self.beh_dims > 0 && !self.seqs.is_empty() {
            let d = self.beh_dims;
            self.w.add_f32("behavior", d)?;
            self.w.add_u8("behavior_valid")?;
            let mut vals = Vec::with_capacity(4096 * d);
            let mut valid = Vec::with_capacity(4096);
            for chunk in self.seqs.chunks(4096) {
                vals.clear();
                valid.clear();
                for s in chunk {
                    match self.behavior.get(s) {
                        Some(v) => {
                            vals.extend_from_slice(v);
                            valid.push(1u8);
                            labelled += 1;
                        }
                        None => {
                            vals.extend(std::iter::repeat_n(f32::NAN, d));
                            valid.push(0u8);
                        }
                    }
                }
                self.w.append_f32("behavior", &vals)?;
                self.w.append_u8("behavior_valid", &valid)?;
            }
        }
        self.w.set_attr_f64("ended_unix_s", crate::model::file::now_unix_s())?;
        let bins = self.seqs.len();
        self.w.close()?;
        Ok((path, bins, labelled))
    }
}

/// Free space kept on the recording disk so that a file can always be closed readable.
const DISK_RESERVE_BYTES: u64 = 256 << 10;

/// A new session file is tried at most this often while recording fails.
const OPEN_RETRY: std::time::Duration = std::time::Duration::from_secs(2);
/// How often the session file is flushed to the OS while batches arrive
/// (and at most how long after the last batch of a stream that stopped).
const FLUSH_EVERY: std::time::Duration = std::time::Duration::from_millis(100);
/// With less free space than this, every batch is flushed as it is written
/// (`FLUSH_EVERY` of the fastest stream measured is ~11 MB).
const ROOMY_BYTES: u64 = 64 << 20;

/// A recording failure in progress: since when, and how much it lost.
struct Outage {
    since: Instant,
    lost: u64,
}

/// A session file the recorder closed.
#[derive(Debug, Clone)]
pub struct ClosedSession {
    pub path: PathBuf,
    pub bins: usize,
    pub labelled_bins: usize,
}

/// The recorder thread's state.
pub struct Recorder {
    cfg: RecordSection,
    info: SessionInfo,
    counters: Arc<LoopCounters>,
    current: Option<SessionFile>,
    file_index: usize,
    failed_open_at: Option<Instant>,
    /// The recording failure in progress, if any.
    outage: Option<Outage>,
    closed: Vec<ClosedSession>,
    /// Notified of every closed file (retraining picks labelled sessions up).
    closed_tx: Option<Sender<ClosedSession>>,
    /// Set by the retrainer: close the current file before the next batch.
    rotate_requested: Arc<AtomicBool>,
}

impl Recorder {
    /// A recorder writing under `cfg.dir`.
    pub fn new(
        cfg: RecordSection,
        info: SessionInfo,
        counters: Arc<LoopCounters>,
        closed_tx: Option<Sender<ClosedSession>>,
        rotate_requested: Arc<AtomicBool>,
    ) -> Self {
        Self {
            cfg,
            info,
            counters,
            current: None,
            file_index: 0,
            failed_open_at: None,
            outage: None,
            closed: Vec::new(),
            closed_tx,
            rotate_requested,
        }
    }

    fn next_path(&mut self) -> PathBuf {
        self.file_index += 1;
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        self.cfg.dir.join(format!("session-{}-{:03}.h5", utc_stamp(now), self.file_index))
    }

    fn close_current(&mut self) {
        if let Some(f) = self.current.take() {
            self.counters.session.set_path(None);
            match f.finish() {
                Ok((path, bins, labelled_bins)) => {
                    info!(path = %path.display(), bins, labelled_bins, "Session file closed.");
                    let c = ClosedSession { path, bins, labelled_bins };
                    if let Some(tx) = &self.closed_tx {
                        let _ = tx.try_send(c.clone());
                    }
                    self.closed.push(c);
                }
                Err(e) if self.outage.is_some() => {
                    warn!(error = %e, "Session file closed during a recording failure; it holds the batches written before it.")
                }
                Err(e) => {
                    error!(error = %e, "Session file could not be finalised; its bins are on disk but the aligned behaviour is missing.")
                }
            }
        }
    }

    /// Writes one batch, rotating files as needed. A failure (disk full, a
    /// write error) starts an incident: logged at ERROR once, the file is
    /// closed (readable up to its last good batch), and every item until
    /// writing works again is counted as lost; a fresh file is tried at most
    /// every few seconds, and the recovery is logged with the loss.
    pub fn write(&mut self, b: &RecordBatch) {
        if b.is_empty() {
            return;
        }
        if self.must_rotate(b) {
            if let Some(f) = self.current.as_mut() {
                f.adopt_late_behavior(b);
            }
            self.close_current();
        }
        let free = match self.room_for(b) {
            Ok(free) => free,
            Err(why) => {
                let path =
                    self.current.as_ref().map(|f| f.w.path().to_path_buf()).unwrap_or_else(|| self.cfg.dir.clone());
                self.incident(&path, &why, "the disk is (nearly) full; the file is closed at its last good batch");
                self.lose(b);
                self.close_current();
                return;
            }
        };
        // Short of room (or unable to tell), every batch is flushed at once,
        // so nothing waits in memory that closing the file would still have to write.
        let flush_now = free.is_none_or(|free| free < ROOMY_BYTES);
        if self.current.is_none() && !self.open_next() {
            self.lose(b);
            return;
        }
        let Some(f) = self.current.as_mut() else { return };
        let before = f.bytes;
        let earlier = f.unflushed_items;
        let written = f.write(b).map_err(|e| (e, f.w.path().to_path_buf()));
        LoopCounters::add(&self.counters.recorded_bytes, f.bytes - before);
        match written {
            Ok(()) => {
                if !flush_now || self.flush_current() {
                    self.recovered();
                }
            }
            Err((e, path)) => {
                self.incident(&path, &e, "writing the session file failed; it is closed at its last good flush");
                // Batches appended since the last flush may not have reached the file either.
                self.lose_items(earlier);
                self.lose(b);
                self.close_current();
            }
        }
    }

    /// Refuses a batch the disk cannot take with room to spare: HDF5 does
    /// not survive running out of space mid-write (the file becomes
    /// unreadable), so the file is closed while closing still fits.
    /// Returns the free bytes (`None`: cannot tell).
    fn room_for(&self, b: &RecordBatch) -> Result<Option<u64>, RecordingError> {
        let Ok(free) = super::os::free_bytes(&self.cfg.dir) else {
            return Ok(None); // cannot tell: let the write itself report
        };
        let need = RecordBatch::bytes(b.in_seq.len().max(b.out_seq.len()), self.info.channels, self.info.out_dim)
            as u64
            + DISK_RESERVE_BYTES;
        if free >= need {
            return Ok(Some(free));
        }
        Err(RecordingError::Io {
            path: self.cfg.dir.clone(),
            context: "checking free space".into(),
            source: std::io::Error::other(format!(
                "{free} bytes free; a batch needs {need} with the reserve kept for closing files"
            )),
        })
    }

    fn must_rotate(&mut self, b: &RecordBatch) -> bool {
        let requested = self.rotate_requested.swap(false, Ordering::Relaxed);
        self.current.as_ref().is_some_and(|f| {
            requested
                || b.starts_new_stream
                || f.opened.elapsed().as_secs() >= self.cfg.rotate_seconds
                || f.bytes >= self.cfg.rotate_bytes
        })
    }

    /// Opens the next session file; false while recording is failing and
    /// the retry interval has not passed, or if the open fails.
    fn open_next(&mut self) -> bool {
        if self.failed_open_at.is_some_and(|t| t.elapsed() < OPEN_RETRY) {
            return false;
        }
        let path = self.next_path();
        match SessionFile::open(&path, &self.cfg, &self.info) {
            Ok(f) => {
                info!(path = %path.display(), "Session file opened.");
                self.counters.session.set_path(Some(path.clone()));
                self.current = Some(f);
                self.failed_open_at = None;
                true
            }
            Err(e) => {
                self.failed_open_at = Some(Instant::now());
                self.incident(&path, &e, "cannot open a session file");
                false
            }
        }
    }

    /// Flushes the current file once `FLUSH_EVERY` has passed since its last
    /// flush (so at most that much accepted data is only in this process's
    /// memory).
    fn flush_if_due(&mut self) {
        if self.current.as_ref().is_some_and(|f| f.unflushed_items > 0 && f.flushed_at.elapsed() >= FLUSH_EVERY) {
            self.flush_current();
        }
    }

    /// Flushes the current file and reports its size on disk (which only
    /// changes meaningfully at a flush). A failed flush loses every item
    /// appended since the last one and closes the file; false then.
    fn flush_current(&mut self) -> bool {
        let Some(f) = self.current.as_mut() else { return true };
        let items = f.unflushed_items;
        match f.flush() {
            Ok(()) => {
                let on_disk = std::fs::metadata(f.w.path()).map(|m| m.len()).unwrap_or(0);
                self.counters.session.file_bytes.store(on_disk, Ordering::Relaxed);
                true
            }
            Err(e) => {
                let path = f.w.path().to_path_buf();
                self.incident(&path, &e, "flushing the session file failed; it is closed at its last good flush");
                self.lose_items(items);
                self.close_current();
                false
            }
        }
    }

    fn lose(&mut self, b: &RecordBatch) {
        self.lose_items(b.items() as u64);
    }

    fn lose_items(&mut self, n: u64) {
        LoopCounters::add(&self.counters.record_lost, n);
        if let Some(o) = self.outage.as_mut() {
            o.lost += n;
        }
    }

    /// Logs the first failure of an incident at ERROR; later ones are only counted.
    fn incident(&mut self, path: &Path, e: &RecordingError, what: &str) {
        if self.outage.is_none() {
            error!(path = %path.display(), error = %e, "Recording failed: {what}. Decoding continues; items are counted as lost until writing works again (logged once).");
            self.outage = Some(Outage { since: Instant::now(), lost: 0 });
        }
    }

    fn recovered(&mut self) {
        if let Some(o) = self.outage.take() {
            warn!(
                lost_items = o.lost,
                outage_s = format!("{:.1}", o.since.elapsed().as_secs_f64()),
                "Recording works again; the items of the outage were not recorded."
            );
        }
    }

    /// Runs until every sender is gone: writes batches, returns them to the
    /// free list, closes the last file. Returns the files closed.
    pub fn run(mut self, full_rx: Receiver<RecordBatch>, free_tx: Sender<RecordBatch>) -> Vec<ClosedSession> {
        if let Err(e) = std::fs::create_dir_all(&self.cfg.dir) {
            warn!(dir = %self.cfg.dir.display(), error = %e, "Cannot create the recording directory.");
        }
        loop {
            match full_rx.recv_timeout(FLUSH_EVERY) {
                Ok(mut b) => {
                    self.write(&b);
                    b.clear();
                    let _ = free_tx.try_send(b);
                }
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                    // An idle stream: honour a rotation request right away.
                    if self.rotate_requested.swap(false, Ordering::Relaxed) {
                        self.close_current();
                    }
                }
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
            }
            self.flush_if_due();
        }
        self.close_current();
        self.closed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_stamp_known_dates() {
        assert_eq!(utc_stamp(0), "19700101T000000Z");
        assert_eq!(utc_stamp(951_782_400), "20000229T000000Z");
        assert_eq!(utc_stamp(1_796_003_281), "20261130T014801Z");
    }

    #[test]
    fn batch_fills_to_capacity_without_growing() {
        let mut b = RecordBatch::new(4, 3, 2);
        let cap = b.in_values.capacity();
        let now = Instant::now();
        for s in 0..4 {
            assert!(!b.is_full());
            b.push_input(&[1.0, 2.0, 3.0], s, 0, 0, f32::NAN, now);
        }
        assert!(b.is_full());
        assert_eq!(b.in_values.capacity(), cap);
        b.clear();
        assert!(b.is_empty());
        assert_eq!(b.in_values.capacity(), cap);
    }
}
