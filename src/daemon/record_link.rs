//! The decode loop's end of the recorder: the batch being filled, the free
//! list it comes from and the queue full batches go to.
//!
//! Invariants: never blocks, never allocates (batches are preallocated and
//! recycled); with no free batch the item is counted in `record_lost`; with
//! recording off every call is a no-op that counts nothing.

use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use super::recorder::RecordBatch;
use super::stats::LoopCounters;
use crate::ingest::RigEvent;

/// A partly filled record batch is handed over after this long.
const BATCH_MAX_AGE: Duration = Duration::from_millis(100);

/// The recorder side of the loop: full batches out, empty batches back.
pub struct RecorderLink {
    pub full_tx: Sender<RecordBatch>,
    pub free_rx: Receiver<RecordBatch>,
}

/// The batch in progress and the link it travels on.
pub struct RecordSlot {
    link: Option<RecorderLink>,
    batch: Option<RecordBatch>,
    /// The next input starts a new stream (rig restart): the recorder opens a new file.
    new_stream: bool,
}

impl RecordSlot {
    pub fn new(link: Option<RecorderLink>) -> Self {
        let batch = link.as_ref().and_then(|r| r.free_rx.try_recv().ok());
        Self { link, batch, new_stream: false }
    }

    /// Recording is on.
    pub fn enabled(&self) -> bool {
        self.link.is_some()
    }

    /// Marks the next input as the start of a new stream and hands over what came before.
    pub fn start_new_stream(&mut self, counters: &LoopCounters) {
        self.new_stream = true;
        self.flush(counters);
    }

    /// The batch to add one item to; None (one loss counted) when the
    /// recorder has fallen behind; None without counting when recording is off.
    #[inline]
    fn slot(&mut self, counters: &LoopCounters) -> Option<&mut RecordBatch> {
        let link = self.link.as_ref()?;
        if self.batch.is_none() {
            match link.free_rx.try_recv() {
                Ok(b) => self.batch = Some(b),
                Err(_) => {
                    LoopCounters::add(&counters.record_lost, 1);
                    return None;
                }
            }
        }
        self.batch.as_mut()
    }

    #[inline]
    #[allow(clippy::too_many_arguments)] // one recorded row's columns
    pub fn input(
        &mut self,
        c: &LoopCounters,
        values: &[f32],
        seq: u64,
        t_ns: u64,
        recv_ns: u64,
        err: f32,
        now: Instant,
    ) {
        let new_stream = std::mem::take(&mut self.new_stream);
        if let Some(b) = self.slot(c) {
            if new_stream && b.is_empty() {
                b.starts_new_stream = true;
            }
            b.push_input(values, seq, t_ns, recv_ns, err, now);
        }
        self.flush_if_full(c);
    }

    #[inline]
    pub fn output(&mut self, c: &LoopCounters, values: &[f32], seq: u64, flags: u16, now: Instant) {
        if let Some(b) = self.slot(c) {
            b.push_output(values, seq, flags, now);
        }
        self.flush_if_full(c);
    }

    #[inline]
    pub fn behavior(&mut self, c: &LoopCounters, values: &[f32], seq: u64, now: Instant) {
        if let Some(b) = self.slot(c) {
            b.push_behavior(values, seq, now);
        }
        self.flush_if_full(c);
    }

    #[inline]
    pub fn event(&mut self, c: &LoopCounters, ev: RigEvent, now: Instant) {
        if let Some(b) = self.slot(c) {
            b.push_event(ev, now);
        }
        self.flush_if_full(c);
    }

    #[inline]
    fn flush_if_full(&mut self, c: &LoopCounters) {
        if self.batch.as_ref().is_some_and(|b| b.is_full()) {
            self.flush(c);
        }
    }

    /// Hands over a batch that has waited long enough.
    pub fn flush_if_old(&mut self, c: &LoopCounters, now: Instant) {
        if self.batch.as_ref().and_then(|b| b.first_at).is_some_and(|t| now.duration_since(t) >= BATCH_MAX_AGE) {
            self.flush(c);
        }
    }

    /// Hands the current batch to the recorder (never blocks).
    pub fn flush(&mut self, c: &LoopCounters) {
        let (Some(link), Some(b)) = (self.link.as_ref(), self.batch.take()) else {
            return;
        };
        if b.is_empty() {
            self.batch = Some(b);
            return;
        }
        if let Err(e) = link.full_tx.try_send(b) {
            // Cannot happen with a free list as large as the queue, but never block.
            let mut b = e.into_inner();
            LoopCounters::add(&c.record_lost, b.items() as u64);
            b.clear();
            self.batch = Some(b);
        }
    }
}
