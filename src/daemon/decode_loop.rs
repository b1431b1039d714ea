//! The decode loop: one named thread that owns the ingest (SUB) and output
//! (PUB) sockets and the step kernel. Per bin: parse, validate, sequence
//! check (impute gaps, drop duplicates, reset on restarts), preprocess + FTN
//! update, publish, hand the bin to the recorder, record latency.
//!
//! Invariants: nothing in the per-bin path allocates (buffers, the record
//! batches and the histograms are preallocated; libzmq's own message copy is
//! the one exception), locks or logs; counters are relaxed atomics; a full
//! recorder queue is counted, never waited on; a new model is swapped in
//! between bins; exactly one output is published per input timestep, in seq
//! order. Logging happens only in the periodic stats line and on rare,
//! rate-limited events (state resets).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TryRecvError};
use hdrhistogram::Histogram;
use tracing::{error, info, warn};

use super::config::SwapState;
use super::recorder::{RecordBatch, BEHAVIOR_MAX_DIMS};
use super::stats::{latency_histogram, LatencySummary, LoopCounters};
use crate::model::StepKernel;
use crate::wire::{encode_f32, DropReason, Frame, FLAG_IMPUTED, FLAG_RESET};

/// How long a blocking receive waits before housekeeping runs.
const RECV_TIMEOUT_MS: i32 = 20;
/// A partly filled record batch is handed over after this long.
const BATCH_MAX_AGE: Duration = Duration::from_millis(100);

/// Settings of the loop (from the config).
#[derive(Debug, Clone)]
pub struct LoopSettings {
    pub spikes_topic: Vec<u8>,
    pub behavior_topic: Vec<u8>,
    pub publish_topic: Vec<u8>,
    pub max_message_bytes: usize,
    pub max_gap_bins: u64,
    pub stats_interval: Duration,
    pub swap_state: SwapState,
    pub rewarm_bins: usize,
    pub track_prediction: bool,
}

/// Result of a swap request.
pub enum SwapOutcome {
    /// Swapped in; the previous kernel comes back to be dropped off the loop.
    Swapped { previous: Box<StepKernel> },
    /// Refused (shape mismatch); the offered kernel comes back.
    Refused { reason: String, offered: Box<StepKernel> },
}

/// Commands the loop accepts between bins.
pub enum LoopCommand {
    /// Swap in a new kernel built off-thread.
    Swap { kernel: Box<StepKernel>, model_id: String, reply: Sender<SwapOutcome> },
}

/// The recorder side of the loop: full batches out, empty batches back.
pub struct RecorderLink {
    pub full_tx: Sender<RecordBatch>,
    pub free_rx: Receiver<RecordBatch>,
}

/// What the loop reports when it ends.
#[derive(Debug, Clone)]
pub struct LoopSummary {
    pub latency: LatencySummary,
    pub histogram: Histogram<u64>,
}

/// Sockets and reusable messages.
struct Io {
    sub: zmq::Socket,
    pubs: zmq::Socket,
    topic_msg: zmq::Message,
    body_msg: zmq::Message,
    extra_msg: zmq::Message,
}

/// Everything but the sockets.
struct Engine {
    set: LoopSettings,
    kernel: Box<StepKernel>,
    model_id: String,
    counters: Arc<LoopCounters>,
    in_buf: Vec<f32>,
    out_buf: Vec<f32>,
    enc: Vec<u8>,
    last_seq: Option<u64>,
    pending_reset: bool,
    stream_restarted: bool,
    behavior_dims: Option<usize>,
    ring: Vec<f32>,
    ring_len: usize,
    ring_pos: usize,
    hist: Histogram<u64>,
    hist_total: Histogram<u64>,
    rec: Option<RecorderLink>,
    batch: Option<RecordBatch>,
    next_stats: Instant,
    last_stats: Instant,
    last_snapshot: super::stats::CounterSnapshot,
    last_reset_log: Option<Instant>,
    suppressed_reset_logs: u64,
    /// Sum of squared prediction errors and their count since the last stats line.
    pred_err_sq: f64,
    pred_err_n: u64,
}

/// The decode loop, ready to run on its own thread.
pub struct DecodeLoop {
    io: Io,
    eng: Engine,
    control: Receiver<LoopCommand>,
    shutdown: Arc<AtomicBool>,
}

fn unix_now_ns() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

impl DecodeLoop {
    /// Builds the loop around connected sockets and a kernel.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        sub: zmq::Socket,
        pubs: zmq::Socket,
        mut kernel: Box<StepKernel>,
        model_id: String,
        set: LoopSettings,
        counters: Arc<LoopCounters>,
        rec: Option<RecorderLink>,
        control: Receiver<LoopCommand>,
        shutdown: Arc<AtomicBool>,
    ) -> Result<Self, zmq::Error> {
        sub.set_rcvtimeo(RECV_TIMEOUT_MS)?;
        kernel.set_track_prediction(set.track_prediction);
        let c = kernel.channels();
        let d = kernel.out_dim();
        let ring_cap = set.rewarm_bins.max(64);
        let batch = rec.as_ref().and_then(|r| r.free_rx.try_recv().ok());
        let now = Instant::now();
        Ok(Self {
            io: Io {
                sub,
                pubs,
                topic_msg: zmq::Message::new(),
                body_msg: zmq::Message::new(),
                extra_msg: zmq::Message::new(),
            },
            eng: Engine {
                in_buf: vec![0.0; c.max(BEHAVIOR_MAX_DIMS)],
                out_buf: vec![0.0; d],
                enc: Vec::with_capacity(crate::wire::HEADER_LEN + 4 * d + 64),
                last_seq: None,
                pending_reset: false,
                stream_restarted: false,
                behavior_dims: None,
                ring: vec![0.0; ring_cap * c],
                ring_len: 0,
                ring_pos: 0,
                hist: latency_histogram(),
                hist_total: latency_histogram(),
                rec,
                batch,
                next_stats: now + set.stats_interval,
                last_stats: now,
                last_snapshot: counters.snapshot(),
                last_reset_log: None,
                suppressed_reset_logs: 0,
                pred_err_sq: 0.0,
                pred_err_n: 0,
                set,
                kernel,
                model_id,
                counters,
            },
            control,
            shutdown,
        })
    }

    /// Runs until shutdown is requested, then drains what is already queued
    /// on the ingest socket, hands over the last record batch and returns.
    pub fn run(mut self) -> LoopSummary {
        loop {
            if self.shutdown.load(Ordering::Relaxed) {
                break;
            }
            match self.io.sub.recv(&mut self.io.topic_msg, 0) {
                Ok(()) => {
                    let now = Instant::now();
                    self.handle_message(now);
                    self.housekeeping(now);
                }
                Err(zmq::Error::EAGAIN) | Err(zmq::Error::EINTR) => self.housekeeping(Instant::now()),
                Err(e) => {
                    error!(error = %e, "Ingest socket failed; the decode loop stops.");
                    break;
                }
            }
        }
        // Drain whatever the socket already holds.
        while self.io.sub.recv(&mut self.io.topic_msg, zmq::DONTWAIT).is_ok() {
            let now = Instant::now();
            self.handle_message(now);
            self.poll_control();
        }
        self.eng.flush_batch();
        self.eng.log_stats(Instant::now());
        LoopSummary { latency: LatencySummary::of(&self.eng.hist_total), histogram: self.eng.hist_total.clone() }
    }

    fn handle_message(&mut self, recv_at: Instant) {
        let io = &mut self.io;
        if !io.topic_msg.get_more() {
            self.eng.counters.drop_one(DropReason::Malformed);
            return;
        }
        if io.sub.recv(&mut io.body_msg, 0).is_err() {
            self.eng.counters.drop_one(DropReason::Malformed);
            return;
        }
        if io.body_msg.get_more() {
            // More than two parts: consume the rest and drop the message.
            while io.sub.recv(&mut io.extra_msg, 0).is_ok() && io.extra_msg.get_more() {}
            self.eng.counters.drop_one(DropReason::Malformed);
            return;
        }
        let topic: &[u8] = &io.topic_msg;
        let body: &[u8] = &io.body_msg;
        if topic == self.eng.set.spikes_topic.as_slice() {
            self.eng.on_spikes(body, &io.pubs, recv_at);
        } else if topic == self.eng.set.behavior_topic.as_slice() {
            self.eng.on_behavior(body, recv_at);
        } else {
            self.eng.counters.drop_one(DropReason::BadTopic);
        }
    }

    fn poll_control(&mut self) {
        loop {
            match self.control.try_recv() {
                Ok(LoopCommand::Swap { kernel, model_id, reply }) => {
                    let outcome = self.eng.swap(kernel, model_id);
                    let _ = reply.send(outcome);
                }
                Err(TryRecvError::Empty) | Err(TryRecvError::Disconnected) => return,
            }
        }
    }

    fn housekeeping(&mut self, now: Instant) {
        self.poll_control();
        if let Some(b) = &self.eng.batch {
            if b.first_at.map(|t| now.duration_since(t) >= BATCH_MAX_AGE).unwrap_or(false) {
                self.eng.flush_batch();
            }
        }
        if now >= self.eng.next_stats {
            self.eng.log_stats(now);
        }
    }
}

/// The batch to add one item to, taking a free one if needed; None (and one
/// lost item counted) when the recorder has fallen behind; None without
/// counting when recording is off.
#[inline]
fn batch_slot<'a>(
    slot: &'a mut Option<RecordBatch>,
    rec: Option<&RecorderLink>,
    counters: &LoopCounters,
) -> Option<&'a mut RecordBatch> {
    let rec = rec?;
    if slot.is_none() {
        match rec.free_rx.try_recv() {
            Ok(b) => *slot = Some(b),
            Err(_) => {
                LoopCounters::add(&counters.record_lost, 1);
                return None;
            }
        }
    }
    slot.as_mut()
}

impl Engine {
    fn swap(&mut self, mut kernel: Box<StepKernel>, model_id: String) -> SwapOutcome {
        if kernel.channels() != self.kernel.channels() || kernel.out_dim() != self.kernel.out_dim() {
            LoopCounters::add(&self.counters.swaps_refused, 1);
            return SwapOutcome::Refused {
                reason: format!(
                    "model has {} channels / {} outputs; the stream has {} / {}",
                    kernel.channels(),
                    kernel.out_dim(),
                    self.kernel.channels(),
                    self.kernel.out_dim()
                ),
                offered: kernel,
            };
        }
        kernel.set_track_prediction(self.set.track_prediction);
        kernel.reset();
        let c = self.kernel.channels();
        let cap = self.ring.len() / c;
        let n = self.ring_len.min(match self.set.swap_state {
            SwapState::Carry => cap,
            SwapState::Rewarm => self.set.rewarm_bins.min(cap),
        });
        // Oldest to newest of the last n observed bins.
        for k in (0..n).rev() {
            let slot = (self.ring_pos + cap - 1 - k) % cap;
            let raw = &self.ring[slot * c..(slot + 1) * c];
            match self.set.swap_state {
                SwapState::Carry => kernel.prime(raw),
                SwapState::Rewarm => kernel.step(raw, &mut self.out_buf),
            }
        }
        if self.set.swap_state == SwapState::Carry {
            kernel.set_latent(self.kernel.latent());
        }
        let previous = std::mem::replace(&mut self.kernel, kernel);
        self.model_id = model_id;
        LoopCounters::add(&self.counters.swaps, 1);
        SwapOutcome::Swapped { previous }
    }

    fn reset_state(&mut self, why: &'static str, seq: u64, last: u64) {
        self.kernel.reset();
        self.pending_reset = true;
        self.ring_len = 0;
        LoopCounters::add(&self.counters.resets, 1);
        let now = Instant::now();
        if self.last_reset_log.map(|t| now.duration_since(t) >= Duration::from_secs(1)).unwrap_or(true) {
            warn!(seq, last_seq = last, reason = why, suppressed = self.suppressed_reset_logs, "Decoder state reset.");
            self.last_reset_log = Some(now);
            self.suppressed_reset_logs = 0;
        } else {
            self.suppressed_reset_logs += 1;
        }
    }

    /// Parses a body; a bad frame is counted under its drop reason.
    #[inline]
    fn parse_counted<'a>(&self, body: &'a [u8]) -> Option<Frame<'a>> {
        Frame::parse(body, self.set.max_message_bytes).map_err(|e| self.counters.drop_one(e.reason())).ok()
    }

    fn on_spikes(&mut self, body: &[u8], pubs: &zmq::Socket, recv_at: Instant) {
        let Some(frame) = self.parse_counted(body) else {
            return;
        };
        let h = frame.header;
        let c = self.kernel.channels();
        if h.channels as usize != c {
            self.counters.drop_one(DropReason::WrongChannels);
            return;
        }
        let recv_ns = unix_now_ns();
        for i in 0..h.samples as usize {
            let seq = h.seq.wrapping_add(i as u64);
            if let Some(last) = self.last_seq {
                if seq == last.wrapping_add(1) {
                    // in order
                } else if seq > last {
                    let gap = seq - last - 1;
                    if gap <= self.set.max_gap_bins {
                        for s in last + 1..seq {
                            self.kernel.step_missing(&mut self.out_buf);
                            LoopCounters::add(&self.counters.imputed, 1);
                            self.publish(pubs, s, h.t_ns, FLAG_IMPUTED, recv_at);
                        }
                    } else {
                        self.reset_state("gap larger than ingest.max_gap_bins", seq, last);
                    }
                } else if seq == 0 {
                    self.reset_state("stream restarted (seq 0)", seq, last);
                    self.stream_restarted = true;
                    self.flush_batch();
                } else {
                    self.counters.drop_one(DropReason::Duplicate);
                    continue;
                }
            }
            self.last_seq = Some(seq);
            if frame.sample(i, &mut self.in_buf[..c]).is_err() {
                self.counters.drop_one(DropReason::Malformed);
                continue;
            }
            if self.in_buf[..c].iter().any(|v| !v.is_finite()) {
                self.counters.drop_one(DropReason::NonFinite);
                self.kernel.step_missing(&mut self.out_buf);
                LoopCounters::add(&self.counters.imputed, 1);
                self.publish(pubs, seq, h.t_ns, FLAG_IMPUTED, recv_at);
                continue;
            }
            self.kernel.step(&self.in_buf[..c], &mut self.out_buf);
            self.remember(c);
            LoopCounters::add(&self.counters.bins_in, 1);
            self.record_input(c, seq, h.t_ns, recv_ns, recv_at);
            self.publish(pubs, seq, h.t_ns, 0, recv_at);
            let ns = recv_at.elapsed().as_nanos() as u64;
            self.hist.saturating_record(ns.max(1));
            self.hist_total.saturating_record(ns.max(1));
        }
    }

    fn remember(&mut self, c: usize) {
        let cap = self.ring.len() / c;
        self.ring[self.ring_pos * c..(self.ring_pos + 1) * c].copy_from_slice(&self.in_buf[..c]);
        self.ring_pos = (self.ring_pos + 1) % cap;
        self.ring_len = (self.ring_len + 1).min(cap);
    }

    fn on_behavior(&mut self, body: &[u8], recv_at: Instant) {
        let Some(frame) = self.parse_counted(body) else {
            return;
        };
        let h = frame.header;
        let d = h.channels as usize;
        let expected = *self.behavior_dims.get_or_insert(if (1..=BEHAVIOR_MAX_DIMS).contains(&d) { d } else { 0 });
        if d != expected || d == 0 {
            self.counters.drop_one(DropReason::WrongChannels);
            return;
        }
        for i in 0..h.samples as usize {
            if frame.sample(i, &mut self.in_buf[..d]).is_err() || self.in_buf[..d].iter().any(|v| !v.is_finite()) {
                self.counters.drop_one(DropReason::NonFinite);
                continue;
            }
            LoopCounters::add(&self.counters.behavior_in, 1);
            let seq = h.seq.wrapping_add(i as u64);
            if let Some(b) = batch_slot(&mut self.batch, self.rec.as_ref(), &self.counters) {
                b.push_behavior(&self.in_buf[..d], seq, recv_at);
            }
            self.flush_if_full();
        }
    }

    #[inline]
    fn publish(&mut self, pubs: &zmq::Socket, seq: u64, t_ns: u64, mut flags: u16, now: Instant) {
        if self.pending_reset {
            flags |= FLAG_RESET;
            self.pending_reset = false;
        }
        encode_f32(&mut self.enc, seq, t_ns, flags, self.out_buf.len() as u32, &self.out_buf);
        // PUB never blocks: at its high-water mark libzmq drops, which the
        // subscriber sees as a seq gap.
        let ok = pubs.send(&self.set.publish_topic[..], zmq::SNDMORE).is_ok() && pubs.send(&self.enc[..], 0).is_ok();
        if ok {
            LoopCounters::add(&self.counters.bins_out, 1);
        }
        if let Some(b) = batch_slot(&mut self.batch, self.rec.as_ref(), &self.counters) {
            b.push_output(&self.out_buf, seq, flags, now);
        }
        self.flush_if_full();
    }

    #[inline]
    fn record_input(&mut self, c: usize, seq: u64, t_ns: u64, recv_ns: u64, now: Instant) {
        let pred_err = self.kernel.last_prediction_error();
        if pred_err.is_finite() {
            self.pred_err_sq += (pred_err as f64) * (pred_err as f64);
            self.pred_err_n += 1;
        }
        if self.rec.is_none() {
            return;
        }
        let stream_restarted = std::mem::take(&mut self.stream_restarted);
        let Some(b) = batch_slot(&mut self.batch, self.rec.as_ref(), &self.counters) else {
            return;
        };
        if stream_restarted && b.is_empty() {
            b.starts_new_stream = true;
        }
        b.push_input(&self.in_buf[..c], seq, t_ns, recv_ns, pred_err, now);
        self.flush_if_full();
    }

    #[inline]
    fn flush_if_full(&mut self) {
        if self.batch.as_ref().map(|b| b.is_full()).unwrap_or(false) {
            self.flush_batch();
        }
    }

    fn flush_batch(&mut self) {
        let (Some(rec), Some(b)) = (self.rec.as_ref(), self.batch.take()) else {
            return;
        };
        if b.is_empty() {
            self.batch = Some(b);
            return;
        }
        if let Err(e) = rec.full_tx.try_send(b) {
            // Cannot happen with a free-list as large as the queue, but never block.
            let b = e.into_inner();
            LoopCounters::add(&self.counters.record_lost, (b.in_seq.len() + b.out_seq.len() + b.beh_seq.len()) as u64);
            let mut b = b;
            b.clear();
            self.batch = Some(b);
        }
    }

    fn log_stats(&mut self, now: Instant) {
        let snap = self.counters.snapshot();
        let prev = std::mem::replace(&mut self.last_snapshot, snap.clone());
        let secs = now.duration_since(self.last_stats).as_secs_f64().max(1e-9);
        self.last_stats = now;
        self.next_stats = now + self.set.stats_interval;
        let lat = LatencySummary::of(&self.hist);
        self.hist.reset();
        let bins = snap.bins_in - prev.bins_in;
        let dropped = snap.dropped_total() - prev.dropped_total();
        let lost = snap.record_lost - prev.record_lost;
        if bins == 0 && dropped == 0 && lost == 0 && snap.behavior_in == prev.behavior_in {
            return;
        }
        let pred_err_rms =
            if self.pred_err_n > 0 { (self.pred_err_sq / self.pred_err_n as f64).sqrt() } else { f64::NAN };
        self.pred_err_sq = 0.0;
        self.pred_err_n = 0;
        let reasons: Vec<String> = snap
            .drops
            .iter()
            .zip(&prev.drops)
            .filter(|(a, b)| a.1 > b.1)
            .map(|(a, b)| format!("{}={}", a.0, a.1 - b.1))
            .collect();
        info!(
            bins_per_s = format!("{:.0}", bins as f64 / secs),
            p50_us = format!("{:.1}", lat.p50_us),
            p99_us = format!("{:.1}", lat.p99_us),
            max_us = format!("{:.1}", lat.max_us),
            imputed = snap.imputed - prev.imputed,
            resets = snap.resets - prev.resets,
            dropped,
            drop_reasons = reasons.join(","),
            behavior_bins = snap.behavior_in - prev.behavior_in,
            prediction_error_rms = if pred_err_rms.is_finite() { format!("{pred_err_rms:.3}") } else { "-".into() },
            model = %self.model_id,
            "Decode stats."
        );
        if lost > 0 {
            error!(lost, total_lost = snap.record_lost, "Recorder fell behind: items were not recorded.");
        }
    }
}
