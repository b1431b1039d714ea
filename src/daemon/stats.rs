//! Counters shared between the decode loop and everyone who reports on it,
//! and the latency histograms the loop fills.
//!
//! Invariant: the loop only does relaxed atomic adds and histogram records
//! (no allocation, no locks); readers take snapshots whenever they like.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tracing::{error, info};

use super::telemetry::{LatencyBuckets, SessionGauge};
use crate::latency::{histogram as latency_histogram, LatencySummary};
use crate::wire::DropReason;

/// Live counters of one daemon.
#[derive(Debug, Default)]
pub struct LoopCounters {
    /// Observed bins decoded.
    pub bins_in: AtomicU64,
    /// Outputs published (observed + imputed).
    pub bins_out: AtomicU64,
    /// Outputs that were imputed (gaps and non-finite bins).
    pub imputed: AtomicU64,
    /// State resets (large gaps, rig restarts).
    pub resets: AtomicU64,
    /// Behaviour bins received.
    pub behavior_in: AtomicU64,
    /// TTL events received from the rig.
    pub events_in: AtomicU64,
    /// Stale frames published by the watchdog (input had stopped).
    pub stale_outputs: AtomicU64,
    /// Connections refused because their address is not in `allow_ips`.
    pub connections_refused: Arc<AtomicU64>,
    /// Subscriptions seen on the publish socket (clients wait for theirs
    /// instead of sleeping through ZeroMQ's connection set-up).
    pub subscriptions: AtomicU64,
    /// Items the recorder could not take (queue full) — data loss.
    pub record_lost: AtomicU64,
    /// Models swapped in.
    pub swaps: AtomicU64,
    /// Models refused at swap time (wrong channel count).
    pub swaps_refused: AtomicU64,
    /// Drops by reason, indexed by `DropReason::index()`.
    pub drops: [AtomicU64; DropReason::ALL.len()],
    /// Bytes of bin data written to session files.
    pub recorded_bytes: AtomicU64,
    /// Wall-clock time (Unix ns) of the last observed bin decoded.
    pub last_bin_unix_ns: AtomicU64,
    /// Receive → publish latency in fixed atomic buckets (for /metrics).
    pub latency: LatencyBuckets,
    /// The recorder's current session file.
    pub session: SessionGauge,
}

/// A plain copy of the counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct CounterSnapshot {
    pub bins_in: u64,
    pub bins_out: u64,
    pub imputed: u64,
    pub resets: u64,
    pub behavior_in: u64,
    pub events_in: u64,
    pub stale_outputs: u64,
    pub connections_refused: u64,
    pub subscriptions: u64,
    pub record_lost: u64,
    pub swaps: u64,
    pub swaps_refused: u64,
    pub drops: Vec<(String, u64)>,
    pub recorded_bytes: u64,
}

impl CounterSnapshot {
    /// Drops for one reason.
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.drops.iter().find(|(n, _)| n == reason.as_str()).map(|(_, v)| *v).unwrap_or(0)
    }
    /// All drops.
    pub fn dropped_total(&self) -> u64 {
        self.drops.iter().map(|(_, v)| v).sum()
    }
}

impl LoopCounters {
    /// Adds one drop for `reason`.
    #[inline]
    pub fn drop_one(&self, reason: DropReason) {
        self.drops[reason.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// Adds `n` to a counter.
    #[inline]
    pub fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }

    /// Waits (polling every 5 ms, up to `timeout`) until `ready` holds for
    /// the counters; false on timeout. For clients and tests that need a
    /// readiness signal (a subscription seen, outputs published).
    pub fn wait_until(&self, timeout: std::time::Duration, ready: impl Fn(&CounterSnapshot) -> bool) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if ready(&self.snapshot()) {
                return true;
            }
            if std::time::Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    /// Copies every counter.
    pub fn snapshot(&self) -> CounterSnapshot {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        CounterSnapshot {
            bins_in: g(&self.bins_in),
            bins_out: g(&self.bins_out),
            imputed: g(&self.imputed),
            resets: g(&self.resets),
            behavior_in: g(&self.behavior_in),
            events_in: g(&self.events_in),
            stale_outputs: g(&self.stale_outputs),
            connections_refused: g(&self.connections_refused),
            subscriptions: g(&self.subscriptions),
            record_lost: g(&self.record_lost),
            swaps: g(&self.swaps),
            swaps_refused: g(&self.swaps_refused),
            drops: DropReason::ALL.iter().map(|r| (r.as_str().to_string(), g(&self.drops[r.index()]))).collect(),
            recorded_bytes: g(&self.recorded_bytes),
        }
    }
}

/// The loop's latency histograms, prediction-error sums and the periodic
/// `Decode stats.` line. Recording is allocation-free; only the line
/// (every `stats.interval_s`) formats strings.
pub struct StatsClock {
    interval: Duration,
    window: Histogram<u64>,
    total: Histogram<u64>,
    next: Instant,
    last: Instant,
    last_snapshot: CounterSnapshot,
    pred_err_sq: f64,
    pred_err_n: u64,
}

impl StatsClock {
    pub fn new(interval: Duration, counters: &LoopCounters) -> Self {
        let now = Instant::now();
        Self {
            interval,
            window: latency_histogram(),
            total: latency_histogram(),
            next: now + interval,
            last: now,
            last_snapshot: counters.snapshot(),
            pred_err_sq: 0.0,
            pred_err_n: 0,
        }
    }

    /// One receive → publish latency.
    #[inline]
    pub fn latency(&mut self, ns: u64) {
        self.window.saturating_record(ns.max(1));
        self.total.saturating_record(ns.max(1));
    }

    /// One per-bin prediction error (ignored when not tracked: NaN).
    #[inline]
    pub fn prediction_error(&mut self, e: f32) {
        if e.is_finite() {
            self.pred_err_sq += (e as f64) * (e as f64);
            self.pred_err_n += 1;
        }
    }

    /// The histogram of the whole run.
    pub fn total(&self) -> &Histogram<u64> {
        &self.total
    }

    /// Logs the stats line if its time has come (or `force`).
    pub fn maybe_log(&mut self, now: Instant, counters: &LoopCounters, model_id: &str, force: bool) {
        if now < self.next && !force {
            return;
        }
        let snap = counters.snapshot();
        let prev = std::mem::replace(&mut self.last_snapshot, snap.clone());
        let secs = now.duration_since(self.last).as_secs_f64().max(1e-9);
        self.last = now;
        self.next = now + self.interval;
        let lat = LatencySummary::of(&self.window);
        self.window.reset();
        let rms = if self.pred_err_n > 0 { (self.pred_err_sq / self.pred_err_n as f64).sqrt() } else { f64::NAN };
        self.pred_err_sq = 0.0;
        self.pred_err_n = 0;
        log_window(&snap, &prev, secs, &lat, rms, model_id);
    }
}

fn log_window(snap: &CounterSnapshot, prev: &CounterSnapshot, secs: f64, lat: &LatencySummary, rms: f64, model: &str) {
    let bins = snap.bins_in - prev.bins_in;
    let dropped = snap.dropped_total() - prev.dropped_total();
    let lost = snap.record_lost - prev.record_lost;
    if bins == 0 && dropped == 0 && lost == 0 && snap.behavior_in == prev.behavior_in {
        return;
    }
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
        prediction_error_rms = if rms.is_finite() { format!("{rms:.3}") } else { "-".into() },
        model = %model,
        "Decode stats."
    );
    if lost > 0 {
        error!(lost, total_lost = snap.record_lost, "Recorder fell behind: items were not recorded.");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_reports_drops_by_reason() {
        let c = LoopCounters::default();
        c.drop_one(DropReason::BadMagic);
        c.drop_one(DropReason::BadMagic);
        c.drop_one(DropReason::NonFinite);
        let s = c.snapshot();
        assert_eq!(s.dropped(DropReason::BadMagic), 2);
        assert_eq!(s.dropped(DropReason::NonFinite), 1);
        assert_eq!(s.dropped(DropReason::Truncated), 0);
        assert_eq!(s.dropped_total(), 3);
    }
}
