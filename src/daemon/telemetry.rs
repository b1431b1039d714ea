//! What the decode loop and the recorder leave for observers (the admin
//! server) besides plain counters: a latency histogram of fixed buckets
//! made of atomics, a decimated feed of outputs and true behaviour, and the
//! recorder's current file.
//!
//! Invariants: the decode loop only does relaxed atomic adds and a
//! non-blocking `try_send` into a preallocated bounded channel here (a full
//! feed is skipped and counted, never waited on); nothing allocates or locks
//! on the loop's side. The session gauge's mutex is touched only by the
//! recorder thread and by readers, never by the loop.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};

/// Upper bounds (ns) of the latency buckets: 1 µs steps to 20 µs, 2 µs to
/// 50 µs, 5 µs to 100 µs, 10 µs to 200 µs, then coarser up to 1 s. Fine
/// enough to read a p99 of tens of µs to within a microsecond or two.
pub const LATENCY_BOUNDS_NS: [u64; LATENCY_BUCKETS] = latency_bounds();

/// Number of finite buckets (one more, for slower bins, is implicit).
pub const LATENCY_BUCKETS: usize = 20 + 15 + 10 + 10 + 6 + 5 + 12;

/// The µs ranges (first, last, step) of the fine buckets, then the ms bounds.
const FINE_US: [(u64, u64, u64); 6] =
    [(1, 20, 1), (22, 50, 2), (55, 100, 5), (110, 200, 10), (250, 500, 50), (600, 1000, 100)];
const COARSE_MS: [u64; 12] = [2, 3, 5, 7, 10, 20, 50, 100, 200, 300, 500, 1000];

const fn latency_bounds() -> [u64; LATENCY_BUCKETS] {
    let mut b = [0u64; LATENCY_BUCKETS];
    let (mut i, mut r) = (0, 0);
    while r < FINE_US.len() {
        let (first, last, step) = FINE_US[r];
        let mut us = first;
        while us <= last {
            b[i] = us * 1000;
            i += 1;
            us += step;
        }
        r += 1;
    }
    let mut k = 0;
    while k < COARSE_MS.len() {
        b[i] = COARSE_MS[k] * 1_000_000;
        i += 1;
        k += 1;
    }
    b
}

/// A lock-free histogram of receive → publish latency with fixed buckets.
#[derive(Debug)]
pub struct LatencyBuckets {
    /// Count per bucket; the last slot holds bins slower than every bound.
    counts: [AtomicU64; LATENCY_BUCKETS + 1],
    sum_ns: AtomicU64,
}

impl Default for LatencyBuckets {
    fn default() -> Self {
        Self { counts: std::array::from_fn(|_| AtomicU64::new(0)), sum_ns: AtomicU64::new(0) }
    }
}

/// A plain copy of the buckets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketSnapshot {
    /// Count per bucket, `LATENCY_BUCKETS + 1` entries (the last is overflow).
    pub counts: Vec<u64>,
    pub sum_ns: u64,
}

impl LatencyBuckets {
    /// Records one latency: a binary search and two relaxed adds.
    #[inline]
    pub fn record(&self, ns: u64) {
        let i = LATENCY_BOUNDS_NS.partition_point(|&b| b < ns);
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    /// Copies the buckets (not atomic as a whole: a bin recorded meanwhile
    /// may be in `counts` but not yet in `sum_ns`).
    pub fn snapshot(&self) -> BucketSnapshot {
        BucketSnapshot {
            counts: self.counts.iter().map(|c| c.load(Ordering::Relaxed)).collect(),
            sum_ns: self.sum_ns.load(Ordering::Relaxed),
        }
    }
}

impl BucketSnapshot {
    /// Bins recorded.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Bucket-wise difference `self - earlier` (for a recent window).
    pub fn since(&self, earlier: &BucketSnapshot) -> BucketSnapshot {
        BucketSnapshot {
            counts: self.counts.iter().zip(&earlier.counts).map(|(a, b)| a.saturating_sub(*b)).collect(),
            sum_ns: self.sum_ns.saturating_sub(earlier.sum_ns),
        }
    }

    /// Upper bound (µs) of the bucket holding quantile `q`; None when empty.
    /// The overflow bucket reports the largest bound.
    pub fn quantile_us(&self, q: f64) -> Option<f64> {
        let n = self.count();
        if n == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * n as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                let b = LATENCY_BOUNDS_NS[i.min(LATENCY_BUCKETS - 1)];
                return Some(b as f64 / 1e3);
            }
        }
        Some(LATENCY_BOUNDS_NS[LATENCY_BUCKETS - 1] as f64 / 1e3)
    }
}

/// Most output dimensions carried by the feed (a wider model shows its first ones).
pub const FEED_MAX_DIMS: usize = 8;

/// Points the feed holds before the loop starts skipping.
pub const FEED_CAPACITY: usize = 4096;

/// What a feed point carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FeedKind {
    /// A decoded output (observed or imputed).
    Decoded,
    /// A true-behaviour bin sent by the rig.
    Truth,
}

/// One decimated point, a plain copy (no heap).
#[derive(Debug, Clone, Copy)]
pub struct FeedPoint {
    pub kind: FeedKind,
    pub seq: u64,
    pub dims: u8,
    pub values: [f32; FEED_MAX_DIMS],
}

impl FeedPoint {
    /// The values that are set.
    pub fn values(&self) -> &[f32] {
        &self.values[..self.dims as usize]
    }
}

/// The loop's end of the feed: every `every`-th seq goes in, if there is room.
#[derive(Debug, Clone)]
pub struct FeedSender {
    tx: Sender<FeedPoint>,
    every: u64,
    skipped: std::sync::Arc<AtomicU64>,
}

/// The observer's end.
#[derive(Debug, Clone)]
pub struct FeedReceiver {
    pub rx: Receiver<FeedPoint>,
    /// Points the loop skipped because the feed was full.
    pub skipped: std::sync::Arc<AtomicU64>,
}

/// A feed keeping one seq in `every` (>= 1).
pub fn output_feed(every: u64) -> (FeedSender, FeedReceiver) {
    let (tx, rx) = bounded(FEED_CAPACITY);
    let skipped = std::sync::Arc::new(AtomicU64::new(0));
    (FeedSender { tx, every: every.max(1), skipped: skipped.clone() }, FeedReceiver { rx, skipped })
}

impl FeedSender {
    /// Offers one point; never blocks, never allocates.
    #[inline]
    pub fn offer(&self, kind: FeedKind, seq: u64, values: &[f32]) {
        if !seq.is_multiple_of(self.every) {
            return;
        }
        let n = values.len().min(FEED_MAX_DIMS);
        let mut p = FeedPoint { kind, seq, dims: n as u8, values: [0.0; FEED_MAX_DIMS] };
        p.values[..n].copy_from_slice(&values[..n]);
        if let Err(TrySendError::Full(_)) = self.tx.try_send(p) {
            self.skipped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The recorder's current file, for status pages.
#[derive(Debug, Default)]
pub struct SessionGauge {
    /// The open session file (None between files or with recording off).
    pub path: Mutex<Option<PathBuf>>,
    /// Its size on disk in bytes, as of the last batch written.
    pub file_bytes: AtomicU64,
}

impl SessionGauge {
    /// A copy of the current path.
    pub fn path(&self) -> Option<PathBuf> {
        self.path.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Sets the current path (recorder thread only).
    pub fn set_path(&self, p: Option<PathBuf>) {
        if p.is_none() {
            self.file_bytes.store(0, Ordering::Relaxed);
        }
        *self.path.lock().unwrap_or_else(|e| e.into_inner()) = p;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_increase_strictly() {
        assert!(LATENCY_BOUNDS_NS.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(LATENCY_BOUNDS_NS[0], 1_000);
        assert_eq!(LATENCY_BOUNDS_NS[LATENCY_BUCKETS - 1], 1_000_000_000);
    }

    #[test]
    fn values_land_in_the_bucket_whose_bound_is_not_below_them() {
        let h = LatencyBuckets::default();
        h.record(1_000); // exactly 1 µs: first bucket (le = 1 µs)
        h.record(1_001); // second bucket
        h.record(45_500); // le 46 µs
        h.record(5_000_000_000); // overflow
        let s = h.snapshot();
        assert_eq!(s.counts[0], 1);
        assert_eq!(s.counts[1], 1);
        let i46 = LATENCY_BOUNDS_NS.iter().position(|&b| b == 46_000).unwrap();
        assert_eq!(s.counts[i46], 1);
        assert_eq!(s.counts[LATENCY_BUCKETS], 1);
        assert_eq!(s.count(), 4);
        assert_eq!(s.sum_ns, 1_000 + 1_001 + 45_500 + 5_000_000_000);
    }

    #[test]
    fn quantiles_against_a_sorted_reference() {
        let h = LatencyBuckets::default();
        // 1000 values 10.0 .. 109.9 µs; p99 is 108.9 µs -> bucket le 110 µs.
        for k in 0..1000u64 {
            h.record(10_000 + k * 100);
        }
        let s = h.snapshot();
        assert_eq!(s.quantile_us(0.99), Some(110.0));
        // p50 = 59.9 µs -> le 60 µs.
        assert_eq!(s.quantile_us(0.5), Some(60.0));
        assert_eq!(LatencyBuckets::default().snapshot().quantile_us(0.5), None);
    }

    #[test]
    fn a_full_feed_skips_and_counts() {
        let (tx, rx) = output_feed(2);
        for seq in 0..(2 * FEED_CAPACITY as u64 + 10) {
            tx.offer(FeedKind::Decoded, seq, &[1.0, 2.0]);
        }
        assert_eq!(rx.rx.len(), FEED_CAPACITY);
        assert_eq!(rx.skipped.load(Ordering::Relaxed), 5);
        let p = rx.rx.try_recv().unwrap();
        assert_eq!((p.seq, p.values()), (0, &[1.0f32, 2.0][..]));
        assert_eq!(rx.rx.try_recv().unwrap().seq, 2, "decimated to every 2nd seq");
    }
}
