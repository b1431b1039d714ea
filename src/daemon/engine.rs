//! The decode engine: everything the loop does with a timestep once a source
//! has produced it. Sequence rules ([`Sequencer`]), the step kernel, the
//! rewarm ring, publishing, the recorder link and the stats clock; the
//! engine is the [`Sink`] every source feeds, and knows no transport.
//!
//! Invariants: nothing here allocates, locks or logs per timestep (logging
//! only in the periodic stats line and on rate-limited resets); exactly one
//! output is published per input timestep, in seq order; gaps up to
//! `max_gap_bins` are imputed, larger gaps and restarts reset the state.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::warn;

use super::config::SwapState;
use super::record_link::RecordSlot;
use super::sequencer::{Sequencer, Verdict};
use super::stats::{LoopCounters, StatsClock};
use super::telemetry::{FeedKind, FeedSender};
use super::watchdog::{Watchdog, WatchdogSettings};
use crate::ingest::{RigEvent, Sink};
use crate::model::StepKernel;
use crate::publish::{Decoded, OutputSink, ZmqPublisher};
use crate::wire::{DropReason, FLAG_IMPUTED, FLAG_RESET, FLAG_STALE};

/// Settings of the engine (from the config).
#[derive(Debug, Clone)]
pub struct EngineSettings {
    pub max_gap_bins: u64,
    pub stats_interval: Duration,
    pub swap_state: SwapState,
    pub rewarm_bins: usize,
    pub track_prediction: bool,
    pub watchdog: WatchdogSettings,
}

/// Result of a swap request.
pub enum SwapOutcome {
    /// Swapped in; the previous kernel comes back to be dropped off the loop.
    Swapped { previous: Box<StepKernel> },
    /// Refused (shape mismatch); the offered kernel comes back.
    Refused { reason: String, offered: Box<StepKernel> },
}

/// The last observed bins, oldest overwritten first, for re-warming a new model.
struct Ring {
    data: Vec<f32>,
    channels: usize,
    len: usize,
    pos: usize,
}

impl Ring {
    fn new(bins: usize, channels: usize) -> Self {
        Self { data: vec![0.0; bins * channels], channels, len: 0, pos: 0 }
    }

    fn cap(&self) -> usize {
        self.data.len() / self.channels
    }

    #[inline]
    fn push(&mut self, row: &[f32]) {
        let c = self.channels;
        self.data[self.pos * c..(self.pos + 1) * c].copy_from_slice(row);
        self.pos = (self.pos + 1) % self.cap();
        self.len = (self.len + 1).min(self.cap());
    }

    /// The `k`-th most recent row (0 = newest).
    fn back(&self, k: usize) -> &[f32] {
        let cap = self.cap();
        let slot = (self.pos + cap - 1 - k) % cap;
        &self.data[slot * self.channels..(slot + 1) * self.channels]
    }
}

/// Rate limit of the reset warning.
struct ResetLog {
    last: Option<Instant>,
    suppressed: u64,
}

/// The per-timestep state of the decode loop.
pub struct Engine {
    set: EngineSettings,
    kernel: Box<StepKernel>,
    model_id: String,
    counters: Arc<LoopCounters>,
    out: ZmqPublisher,
    /// Sinks beside the ZeroMQ publisher (LSL outlet, Redis stream).
    extra: Vec<Box<dyn OutputSink>>,
    /// The source's tag for the current input (`Sink::tag`).
    tag: Vec<u8>,
    out_buf: Vec<f32>,
    seq: Sequencer,
    pending_reset: bool,
    ring: Ring,
    rec: RecordSlot,
    stats: StatsClock,
    reset_log: ResetLog,
    watchdog: Watchdog,
    feed: Option<FeedSender>,
}

fn unix_now_ns() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

impl Engine {
    pub fn new(
        mut kernel: Box<StepKernel>,
        model_id: String,
        set: EngineSettings,
        counters: Arc<LoopCounters>,
        out: ZmqPublisher,
        rec: RecordSlot,
    ) -> Self {
        kernel.set_track_prediction(set.track_prediction);
        let (c, d) = (kernel.channels(), kernel.out_dim());
        Self {
            ring: Ring::new(set.rewarm_bins.max(64), c),
            out_buf: vec![0.0; d],
            seq: Sequencer::new(set.max_gap_bins),
            pending_reset: false,
            rec,
            stats: StatsClock::new(set.stats_interval, &counters),
            reset_log: ResetLog { last: None, suppressed: 0 },
            watchdog: Watchdog::new(set.watchdog.clone(), d),
            feed: None,
            set,
            kernel,
            model_id,
            counters,
            out,
            extra: Vec::new(),
            tag: Vec::with_capacity(1024),
        }
    }

    /// Adds output sinks fed beside the ZeroMQ publisher.
    pub fn with_outputs(mut self, extra: Vec<Box<dyn OutputSink>>) -> Self {
        self.extra = extra;
        self
    }

    /// Offers a decimated copy of outputs and true behaviour to `feed`
    /// (the admin server's dashboard); a full feed is skipped.
    pub fn set_feed(&mut self, feed: FeedSender) {
        self.feed = Some(feed);
    }

    /// Swaps in a kernel built off-thread, carrying or re-warming the state.
    pub fn swap(&mut self, mut kernel: Box<StepKernel>, model_id: String) -> SwapOutcome {
        if kernel.channels() != self.kernel.channels() || kernel.out_dim() != self.kernel.out_dim() {
            LoopCounters::add(&self.counters.swaps_refused, 1);
            let reason = format!(
                "model has {} channels / {} outputs; the stream has {} / {}",
                kernel.channels(),
                kernel.out_dim(),
                self.kernel.channels(),
                self.kernel.out_dim()
            );
            return SwapOutcome::Refused { reason, offered: kernel };
        }
        kernel.set_track_prediction(self.set.track_prediction);
        kernel.reset();
        let n = self.ring.len.min(match self.set.swap_state {
            SwapState::Carry => self.ring.cap(),
            SwapState::Rewarm => self.set.rewarm_bins,
        });
        for k in (0..n).rev() {
            match self.set.swap_state {
                SwapState::Carry => kernel.prime(self.ring.back(k)),
                SwapState::Rewarm => kernel.step(self.ring.back(k), &mut self.out_buf),
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

    /// Between messages: a stale frame when input stopped, hand over an old
    /// record batch, log stats when due.
    pub fn housekeeping(&mut self, now: Instant) {
        let subscribed = self.out.take_subscriptions(now);
        if subscribed > 0 {
            LoopCounters::add(&self.counters.subscriptions, subscribed);
        }
        if let Some(f) = self.watchdog.due(now) {
            if self.out.send(f.seq, f.t_ns, FLAG_STALE, f.values) {
                LoopCounters::add(&self.counters.stale_outputs, 1);
            }
        }
        for o in &mut self.extra {
            o.tick(now);
        }
        self.rec.flush_if_old(&self.counters, now);
        self.stats.maybe_log(now, &self.counters, &self.model_id, false);
    }

    /// At the end: hand over the last batch, log the last stats line.
    pub fn finish(&mut self) -> &StatsClock {
        self.rec.flush(&self.counters);
        self.stats.maybe_log(Instant::now(), &self.counters, &self.model_id, true);
        &self.stats
    }

    fn reset_state(&mut self, why: &'static str, seq: u64) {
        self.kernel.reset();
        self.pending_reset = true;
        self.ring.len = 0;
        LoopCounters::add(&self.counters.resets, 1);
        let now = Instant::now();
        let log = &mut self.reset_log;
        if log.last.is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1)) {
            let last_seq = self.seq.last();
            warn!(seq, ?last_seq, reason = why, suppressed = log.suppressed, "Decoder state reset.");
            log.last = Some(now);
            log.suppressed = 0;
        } else {
            log.suppressed += 1;
        }
    }

    /// Applies the sequence rules to `seq` (imputing a gap, resetting on a
    /// long gap or a restart); false if the timestep is a duplicate.
    fn admit(&mut self, seq: u64, t_ns: u64, recv_at: Instant) -> bool {
        match self.seq.check(seq) {
            Verdict::Next => {}
            Verdict::Gap { first } => {
                for s in first..seq {
                    self.impute(s, t_ns, recv_at);
                }
            }
            Verdict::TooFar => self.reset_state("gap larger than ingest.max_gap_bins", seq),
            Verdict::Restart => {
                self.reset_state("stream restarted (seq 0)", seq);
                self.rec.start_new_stream(&self.counters);
            }
            Verdict::Duplicate => {
                self.counters.drop_one(DropReason::Duplicate);
                return false;
            }
        }
        self.seq.accept(seq);
        true
    }

    #[inline]
    fn impute(&mut self, seq: u64, t_ns: u64, recv_at: Instant) {
        self.kernel.step_missing(&mut self.out_buf);
        LoopCounters::add(&self.counters.imputed, 1);
        self.publish(seq, t_ns, FLAG_IMPUTED, recv_at);
    }

    #[inline]
    fn publish(&mut self, seq: u64, t_ns: u64, mut flags: u16, now: Instant) {
        if std::mem::take(&mut self.pending_reset) {
            flags |= FLAG_RESET;
        }
        if self.out.send(seq, t_ns, flags, &self.out_buf) {
            LoopCounters::add(&self.counters.bins_out, 1);
        }
        self.watchdog.output(&self.out_buf);
        if !self.extra.is_empty() {
            let d = Decoded { seq, t_ns, flags, values: &self.out_buf, tag: &self.tag };
            for o in &mut self.extra {
                o.send(&d);
            }
        }
        self.rec.output(&self.counters, &self.out_buf, seq, flags, now);
        if let Some(f) = &self.feed {
            f.offer(FeedKind::Decoded, seq, &self.out_buf);
        }
    }
}

impl Sink for Engine {
    fn channels(&self) -> usize {
        self.kernel.channels()
    }

    fn timestep(&mut self, seq: u64, t_ns: u64, values: &[f32], recv_at: Instant) {
        self.watchdog.input(recv_at, seq, t_ns);
        if !self.admit(seq, t_ns, recv_at) {
            return;
        }
        if values.iter().any(|v| !v.is_finite()) {
            self.counters.drop_one(DropReason::NonFinite);
            return self.impute(seq, t_ns, recv_at);
        }
        self.kernel.step(values, &mut self.out_buf);
        self.ring.push(values);
        LoopCounters::add(&self.counters.bins_in, 1);
        let err = self.kernel.last_prediction_error();
        self.stats.prediction_error(err);
        let unix_ns = unix_now_ns();
        self.rec.input(&self.counters, values, seq, t_ns, unix_ns, err, recv_at);
        self.publish(seq, t_ns, 0, recv_at);
        let ns = recv_at.elapsed().as_nanos() as u64;
        self.stats.latency(ns);
        self.counters.latency.record(ns);
        self.counters.last_bin_unix_ns.store(unix_ns, std::sync::atomic::Ordering::Relaxed);
    }

    fn missing(&mut self, seq: u64, t_ns: u64, recv_at: Instant) {
        if self.admit(seq, t_ns, recv_at) {
            self.impute(seq, t_ns, recv_at);
        }
    }

    fn behavior(&mut self, seq: u64, values: &[f32], recv_at: Instant) {
        LoopCounters::add(&self.counters.behavior_in, 1);
        self.rec.behavior(&self.counters, values, seq, recv_at);
        if let Some(f) = &self.feed {
            f.offer(FeedKind::Truth, seq, values);
        }
    }

    fn restart(&mut self) {
        let seq = self.seq.last().unwrap_or(0);
        self.reset_state("stream restarted (source)", seq);
        self.rec.start_new_stream(&self.counters);
        self.seq.forget();
    }

    fn event(&mut self, ev: RigEvent) {
        LoopCounters::add(&self.counters.events_in, 1);
        self.rec.event(&self.counters, ev, Instant::now());
    }

    fn drop_one(&mut self, reason: DropReason) {
        self.counters.drop_one(reason);
    }

    fn tag(&mut self, tag: &[u8]) {
        self.tag.clear();
        self.tag.extend_from_slice(tag);
    }
}
