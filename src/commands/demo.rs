//! `alternator demo`: the daemon on the bundled model, fed the bundled
//! recording by a built-in replayer over real TCP loopback sockets, with a
//! subscriber printing decoded output. Ends with latency figures, the live
//! R², and a check that the live outputs equal offline evaluation.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::cli::DemoArgs;
use crate::client::collect_outputs;
use crate::daemon::config::ServeConfig;
use crate::daemon::Daemon;
use crate::latency::{histogram_of, quantile_us};
use crate::matrix::Matrix;
use crate::metrics::Metrics;
use crate::model::{ModelFile, StepKernel};
use crate::recording::{ReadOptions, Recording};
use crate::replay::{Publisher, ReplayOptions};
use crate::wire::FLAG_IMPUTED;

use super::UsageError;

use super::replay::stop_on_signal;

/// Starts the daemon; when the dashboard's port is taken, on any free port instead.
fn start_daemon(cfg: &mut ServeConfig, mf: &ModelFile) -> anyhow::Result<Daemon> {
    match Daemon::start(cfg, mf.clone(), &zmq::Context::new()) {
        Err(crate::daemon::DaemonError::Admin(e)) if e.is_address_in_use() => {
            cfg.admin.listen = "127.0.0.1:0".into();
            Daemon::start(cfg, mf.clone(), &zmq::Context::new()).context("starting the daemon")
        }
        r => r.context("starting the daemon"),
    }
}
/// Runs the demo: stream, then compare live outputs with truth and offline.
pub fn run(a: DemoArgs) -> anyhow::Result<()> {
    if !(a.speed > 0.0 && a.speed.is_finite()) {
        return Err(UsageError(format!("--speed {}: expected a positive number", a.speed)).into());
    }
    let (mf, rec) = load(&a)?;
    let mut cfg = demo_config(&a, &rec);
    // The daemon has its own ZeroMQ context (I/O thread), as in its own process.
    let daemon = start_daemon(&mut cfg, &mf)?;
    if let Some(addr) = daemon.admin_addr {
        println!("demo: dashboard at http://{addr}/ (metrics at http://{addr}/metrics)");
    }
    let run = stream(&a, &rec, daemon)?;
    print_report(&mf, &rec, &run);
    Ok(())
}

/// The bundled model and recording (cut to `--seconds`).
fn load(a: &DemoArgs) -> anyhow::Result<(ModelFile, Recording)> {
    let mf = ModelFile::load(&a.model)
        .with_context(|| format!("loading the demo model {} (run from the repository root)", a.model.display()))?;
    let mut rec = Recording::read(&a.data, &ReadOptions::default())
        .with_context(|| format!("reading the demo recording {}", a.data.display()))?;
    if let Some(s) = a.seconds {
        let n = ((s / rec.bin_seconds).round() as usize).clamp(1, rec.n_bins());
        rec = rec.slice_bins(0, n);
    }
    Ok((mf, rec))
}

/// Defaults with every socket on a free loopback port and the dashboard on.
fn demo_config(a: &DemoArgs, rec: &Recording) -> ServeConfig {
    let mut cfg = ServeConfig::default();
    cfg.model.path = Some(a.model.clone());
    cfg.ingest.protocol_v1.endpoint = "tcp://127.0.0.1:*".into();
    cfg.publish.endpoint = "tcp://127.0.0.1:*".into();
    cfg.control.endpoint = "tcp://127.0.0.1:*".into();
    cfg.record.dir = a.record_dir.clone();
    cfg.record.bin_seconds = rec.bin_seconds;
    cfg.stats.interval_s = 2.0;
    cfg.admin.enabled = true;
    cfg.admin.listen = a.admin.clone();
    cfg
}

/// What one streamed demo produced.
struct DemoRun {
    report: crate::replay::ReplayReport,
    summary: crate::daemon::DaemonSummary,
    got: Vec<crate::client::Received>,
}

/// Subscribes to the outputs, replays the recording into the daemon, waits
/// for the last outputs and stops everything.
fn stream(a: &DemoArgs, rec: &Recording, daemon: Daemon) -> anyhow::Result<DemoRun> {
    let ctx = zmq::Context::new();
    let stop_sub = Arc::new(AtomicBool::new(false));
    let print_every = ((0.5 / rec.bin_seconds) as u64).max(1);
    let sub = collect_outputs(&ctx, &daemon.publish_endpoint, stop_sub.clone(), print_every, rec.behavior.clone())?;
    if !daemon.counters.wait_until(Duration::from_secs(10), |c| c.subscriptions >= 1) {
        anyhow::bail!("the output subscriber did not connect to {} within 10 s", daemon.publish_endpoint);
    }
    println!(
        "demo: streaming {} bins ({} channels, {:.0} ms bins) at {}x real time into {}; decoded output on {}",
        rec.n_bins(),
        rec.n_channels(),
        rec.bin_seconds * 1e3,
        a.speed,
        daemon.ingest_endpoint,
        daemon.publish_endpoint
    );
    let mut publisher = Publisher::new(&ctx, &daemon.ingest_endpoint, false)?;
    publisher.wait_for_subscriber(Duration::from_secs(5))?;
    let stop = Arc::new(AtomicBool::new(false));
    stop_on_signal(stop.clone());
    let report = publisher.replay(rec, &ReplayOptions { speed: Some(a.speed), ..ReplayOptions::default() }, &stop)?;
    // The last outputs (at most 3 s), then stop; the subscriber drains what is in flight.
    daemon.counters.wait_until(Duration::from_secs(3), |c| c.bins_out >= report.bins_sent);
    let summary = daemon.shutdown();
    stop_sub.store(true, Ordering::Relaxed);
    let got = sub.join().map_err(|_| anyhow::anyhow!("subscriber thread panicked"))?;
    Ok(DemoRun { report, summary, got })
}

/// Live outputs against the truth and against offline evaluation of the same bins.
fn print_report(mf: &ModelFile, rec: &Recording, run: &DemoRun) {
    let DemoRun { report, summary, got } = run;
    let (n, d) = (got.len(), mf.model.spec.dz);
    let offline = StepKernel::new(mf.model.clone()).decode_matrix(&rec.spikes.slice_rows(0, report.bins_sent as usize));
    let mut max_diff = 0f32;
    let mut live = Matrix::zeros(n, d);
    let mut truth = Matrix::zeros(n, d);
    for (i, r) in got.iter().enumerate() {
        live.row_mut(i).copy_from_slice(&r.values);
        if let Some(b) = &rec.behavior {
            truth.row_mut(i).copy_from_slice(b.row(r.seq as usize));
        }
        for j in 0..d {
            max_diff = max_diff.max((r.values[j] - offline.get(r.seq as usize, j)).abs());
        }
    }
    let e2e = histogram_of(got.iter().map(|r| r.e2e_ns));
    println!();
    println!(
        "sent {} bins in {:.1} s ({:.1} bins/s); received {} decoded outputs",
        report.bins_sent, report.seconds, report.achieved_rate_hz, n
    );
    let l = &summary.latency;
    println!(
        "daemon receive→publish latency: p50 {:.1} µs  p99 {:.1} µs  p99.9 {:.1} µs  max {:.1} µs",
        l.p50_us, l.p99_us, l.p999_us, l.max_us
    );
    println!(
        "end-to-end send→receive latency: p50 {:.1} µs  p99 {:.1} µs  max {:.1} µs",
        quantile_us(&e2e, 0.5),
        quantile_us(&e2e, 0.99),
        quantile_us(&e2e, 1.0)
    );
    if rec.behavior.is_some() && n > 1 {
        let m = Metrics::compute(&truth, &live);
        let per_dim: Vec<f64> = m.r2.iter().map(|v| (v * 1e4).round() / 1e4).collect();
        println!("live decoding R² {:.4} (per dim {per_dim:?})", m.mean_r2());
    }
    println!("max |live − offline eval| over all outputs: {max_diff:e}");
    let imputed_seen = got.iter().filter(|r| r.flags & FLAG_IMPUTED != 0).count();
    let c = &summary.counters;
    println!(
        "dropped frames: {}, imputed: {} (received flagged: {imputed_seen}), recorder losses: {}",
        c.dropped_total(),
        c.imputed,
        c.record_lost
    );
    for s in &summary.sessions {
        println!("session recorded to {} ({} bins)", s.path.display(), s.bins);
    }
}
