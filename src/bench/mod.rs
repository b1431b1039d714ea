//! The end-to-end benchmark (`alternator bench`): a daemon on its own
//! threads, a rig-like sender and an output subscriber in this process,
//! connected over the real transport under test (ZeroMQ TCP loopback, LSL,
//! Redis, iceoryx2 shared memory). Latency is send (the sender's `t_ns`) →
//! receipt of the decoded output, per bin, in an HDR histogram; the
//! compute-only mode times the decode step alone. Models and streams come
//! from [`crate::fixtures`], so the benchmark needs no files.
//!
//! - [`end_to_end`]: one run, from configuration to result;
//! - `rig`: the sending side per transport; `subscriber`: the receiving side;
//! - `forwarder`: the transport alone, a do-nothing stand-in for the daemon;
//! - [`background_training`]: a training job to measure decoding under load;
//! - [`plot_svg`]: the latency plot.

mod end_to_end;
mod forwarder;
mod rig;
mod subscriber;
mod svg;
mod training;

use std::time::Instant;

use hdrhistogram::Histogram;
use serde::Serialize;

pub use end_to_end::end_to_end;
pub use rig::Transport;
pub use svg::plot_svg;
pub use training::background_training;

use crate::fixtures::{synthetic_bins, synthetic_model};
use crate::latency::{self, quantile_us};
use crate::model::StepKernel;
use crate::wire::encode_f32;

/// What one end-to-end run measures.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RunSpec {
    pub transport: Transport,
    pub channels: usize,
    /// Bins per second; None = as fast as the daemon sustains.
    pub rate_hz: Option<f64>,
    pub seconds: f64,
    /// Record sessions (as a lab would).
    pub record: bool,
    /// Run a training job in the background (as retraining would).
    pub background_training: bool,
    /// Daemon threads on core 1, the rig side on core 0.
    pub pin: bool,
    /// Admin server on, with a dashboard's event stream and a 10 Hz scrape.
    pub admin: bool,
}

/// One benchmark run's result (the JSON object of `alternator bench --json`).
#[derive(Debug, Clone, Serialize)]
pub struct BenchResult {
    pub channels: usize,
    /// Target rate; None = as fast as possible.
    pub rate_hz: Option<f64>,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
    pub throughput_bins_per_s: f64,
    pub sent: u64,
    pub received: u64,
    pub lost: u64,
    pub imputed: u64,
    /// Frames the daemon dropped (any reason) and bins its recorder lost.
    pub daemon_dropped: u64,
    pub record_lost: u64,
    /// Bins the daemon received and decoded.
    pub daemon_bins_in: u64,
    /// The daemon's own receive → publish latency (compute + its socket calls).
    pub daemon_p50_us: f64,
    pub daemon_p99_us: f64,
    pub daemon_p999_us: f64,
    /// "end_to_end" (sockets) or "compute" (decode step only).
    pub mode: String,
    /// Whether a training job ran in the background during the measurement.
    pub background_training: bool,
    /// Input transport of an end-to-end run (`protocol-v1`, `lsl`, `redis`).
    pub transport: String,
    /// With the admin server on, a dashboard's event stream open and
    /// `/metrics` scraped at 10 Hz (None: admin server off).
    pub admin: Option<crate::admin::load::LoadReport>,
    #[serde(skip)]
    pub histogram: Option<Histogram<u64>>,
}

/// Bins sent, outputs received, and how many of those were imputed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Counts {
    sent: u64,
    received: u64,
    imputed: u64,
}

impl BenchResult {
    /// A result from the subscriber's histogram; daemon-side fields are 0
    /// until the run fills them in.
    fn new(channels: usize, rate_hz: Option<f64>, h: &Histogram<u64>, n: Counts, throughput: f64, mode: &str) -> Self {
        Self {
            channels,
            rate_hz,
            p50_us: quantile_us(h, 0.5),
            p90_us: quantile_us(h, 0.9),
            p99_us: quantile_us(h, 0.99),
            p999_us: quantile_us(h, 0.999),
            max_us: quantile_us(h, 1.0),
            throughput_bins_per_s: throughput,
            sent: n.sent,
            received: n.received,
            lost: n.sent.saturating_sub(n.received.saturating_sub(n.imputed)),
            imputed: n.imputed,
            daemon_dropped: 0,
            record_lost: 0,
            daemon_bins_in: 0,
            daemon_p50_us: 0.0,
            daemon_p99_us: 0.0,
            daemon_p999_us: 0.0,
            mode: mode.into(),
            background_training: false,
            transport: "protocol-v1".into(),
            admin: None,
            histogram: Some(h.clone()),
        }
    }
}

/// Times the decode step alone (preprocess + FTN + z update + output encode) for `seconds`.
pub fn compute_only(channels: usize, seconds: f64) -> BenchResult {
    let mf = synthetic_model(channels, 1);
    let data = synthetic_bins(channels, 1024, 2);
    let mut k = StepKernel::new(mf.model);
    let mut out = [0f32; 2];
    let mut enc = Vec::with_capacity(64);
    let mut h = latency::histogram();
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed().as_secs_f64() < seconds {
        let t0 = Instant::now();
        k.step(data.row((n & 1023) as usize), &mut out);
        encode_f32(&mut enc, n, 0, 0, 2, &out);
        h.saturating_record((t0.elapsed().as_nanos() as u64).max(1));
        n += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    BenchResult::new(channels, None, &h, Counts { sent: n, received: n, imputed: 0 }, n as f64 / secs, "compute")
}
