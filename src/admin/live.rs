//! The admin thread's view of the running loop, refreshed `push_hz` times a
//! second: bins/s over the last second, recent latency percentiles from the
//! atomic buckets, and the last 10 s of decimated outputs and true
//! behaviour drained from the loop's feed. Each refresh becomes one JSON
//! update for the dashboards.
//!
//! Invariants: only the admin thread touches this (behind one mutex that
//! the loop never sees); memory is bounded (`MAX_POINTS`, window lengths).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::json;

use crate::daemon::control::Control;
use crate::daemon::telemetry::{BucketSnapshot, FeedKind, FeedPoint, FeedReceiver, LATENCY_BOUNDS_NS};

/// Seconds of outputs the dashboard plots.
pub const PLOT_SECONDS: f64 = 10.0;
/// Points kept at most (both kinds together).
const MAX_POINTS: usize = 8192;
/// Window of the bins/s gauge.
const RATE_WINDOW: Duration = Duration::from_secs(1);
/// Window of the "recent" latency percentiles.
const LATENCY_WINDOW: Duration = Duration::from_secs(5);

/// p50 / p99 / p99.9 in µs (bucket upper bounds) and the count they cover.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Percentiles {
    pub count: u64,
    pub p50_us: Option<f64>,
    pub p99_us: Option<f64>,
    pub p999_us: Option<f64>,
}

impl Percentiles {
    pub fn of(s: &BucketSnapshot) -> Self {
        Self {
            count: s.count(),
            p50_us: s.quantile_us(0.5),
            p99_us: s.quantile_us(0.99),
            p999_us: s.quantile_us(0.999),
        }
    }
}

/// The refreshed view.
pub struct LiveView {
    feed: FeedReceiver,
    bin_seconds: f64,
    rate: VecDeque<(Instant, u64)>,
    lat: VecDeque<(Instant, BucketSnapshot)>,
    points: VecDeque<FeedPoint>,
    fresh: Vec<FeedPoint>,
    bins_per_s: f64,
}

/// One point as the dashboard reads it: `[seq, kind (0 decoded, 1 truth), v0, v1, ...]`.
fn point_json(p: &FeedPoint) -> serde_json::Value {
    let mut v = vec![json!(p.seq), json!(if p.kind == FeedKind::Truth { 1 } else { 0 })];
    v.extend(p.values().iter().map(|x| if x.is_finite() { json!(x) } else { serde_json::Value::Null }));
    serde_json::Value::Array(v)
}

impl LiveView {
    pub fn new(feed: FeedReceiver, bin_seconds: f64) -> Self {
        Self {
            feed,
            bin_seconds,
            rate: VecDeque::new(),
            lat: VecDeque::new(),
            points: VecDeque::new(),
            fresh: Vec::new(),
            bins_per_s: 0.0,
        }
    }

    /// Bins per second over the last second (0 before two samples).
    pub fn bins_per_s(&self) -> f64 {
        self.bins_per_s
    }

    /// Takes a sample of the counters and drains the feed.
    pub fn refresh(&mut self, control: &Control, now: Instant) {
        let c = control.counters();
        let bins = c.bins_in.load(std::sync::atomic::Ordering::Relaxed);
        self.rate.push_back((now, bins));
        while self.rate.len() > 2 && now.duration_since(self.rate[1].0) >= RATE_WINDOW {
            self.rate.pop_front();
        }
        if let (Some(a), Some(b)) = (self.rate.front(), self.rate.back()) {
            let dt = b.0.duration_since(a.0).as_secs_f64();
            self.bins_per_s = if dt > 0.0 { (b.1 - a.1) as f64 / dt } else { 0.0 };
        }
        self.lat.push_back((now, c.latency.snapshot()));
        while self.lat.len() > 2 && now.duration_since(self.lat[1].0) >= LATENCY_WINDOW {
            self.lat.pop_front();
        }
        self.drain_feed();
    }

    fn drain_feed(&mut self) {
        self.fresh.clear();
        while let Ok(p) = self.feed.rx.try_recv() {
            if let Some(last) = self.points.back() {
                if p.seq + 1000 < last.seq && p.kind == FeedKind::Decoded {
                    self.points.clear(); // the stream restarted
                }
            }
            self.points.push_back(p);
            self.fresh.push(p);
        }
        let newest = self.points.iter().map(|p| p.seq).max().unwrap_or(0);
        let span = (PLOT_SECONDS / self.bin_seconds).ceil() as u64;
        while self.points.front().is_some_and(|p| p.seq + span < newest) || self.points.len() > MAX_POINTS {
            self.points.pop_front();
        }
    }

    /// Latency over the last few seconds and over the whole run, with the
    /// recent bucket counts for the histogram plot.
    fn latency_json(&self) -> serde_json::Value {
        let (Some(first), Some(last)) = (self.lat.front(), self.lat.back()) else { return json!(null) };
        let recent = last.1.since(&first.1);
        json!({
            "window_s": last.0.duration_since(first.0).as_secs_f64(),
            "recent": Percentiles::of(&recent),
            "total": Percentiles::of(&last.1),
            "recent_counts": recent.counts,
        })
    }

    /// The dashboard update: counters, rates, latency, recorder, model, new points
    /// (`all_points`: the whole plotted window, for a dashboard that just connected).
    pub fn update(&self, control: &Control, recording: bool, all_points: bool) -> serde_json::Value {
        let st = control.status();
        let c = control.counters();
        let last_ns = c.last_bin_unix_ns.load(std::sync::atomic::Ordering::Relaxed);
        let points: Vec<serde_json::Value> = if all_points {
            self.points.iter().map(point_json).collect()
        } else {
            self.fresh.iter().map(point_json).collect()
        };
        json!({
            "kind": if all_points { "snapshot" } else { "update" },
            "unix_s": crate::model::file::now_unix_s(),
            "bins_per_s": self.bins_per_s,
            "last_bin_age_s": last_bin_age_s(last_ns),
            "bin_seconds": self.bin_seconds,
            "model_id": st.model_id,
            "channels": st.channels,
            "outputs": st.outputs,
            "counters": st.counters,
            "retrain": st.retrain,
            "latency": self.latency_json(),
            "recorder": {
                "enabled": recording,
                "path": c.session.path().map(|p| p.display().to_string()),
                "file_bytes": c.session.file_bytes.load(std::sync::atomic::Ordering::Relaxed),
                "recorded_bytes": st.counters.recorded_bytes,
                "lost": st.counters.record_lost,
            },
            "feed_skipped": self.feed.skipped.load(std::sync::atomic::Ordering::Relaxed),
            "points": points,
        })
    }
}

/// Seconds since the last observed bin (None before the first).
pub fn last_bin_age_s(last_unix_ns: u64) -> Option<f64> {
    if last_unix_ns == 0 {
        return None;
    }
    let now = crate::model::file::now_unix_s();
    Some((now - last_unix_ns as f64 * 1e-9).max(0.0))
}

/// The bucket bounds in µs (static; the dashboard fetches them once).
pub fn bounds_us() -> Vec<f64> {
    LATENCY_BOUNDS_NS.iter().map(|&b| b as f64 / 1e3).collect()
}
