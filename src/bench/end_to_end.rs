//! One end-to-end run: configure and start a daemon for the transport under
//! test, subscribe to its outputs, send bins at the target rate (or as fast
//! as it sustains), then collect the subscriber's and the daemon's figures.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use hdrhistogram::Histogram;

use super::rig::{RedisServer, Rig, Transport};
use super::subscriber::{spawn_subscriber, Outputs};
use super::{background_training, BenchResult, Counts, RunSpec};
use crate::clock::monotonic_ns;
use crate::daemon::config::ServeConfig;
use crate::daemon::{Daemon, DaemonSummary};
use crate::fixtures::{synthetic_bins, synthetic_model};
use crate::ingest::lsl::ffi::Outlet;
use crate::replay::pace_until;

/// Outstanding bins allowed when sending as fast as possible.
const MAX_IN_FLIGHT: u64 = 256;

/// One end-to-end run: input over `spec.transport`, outputs over the
/// protocol-v1 publish socket (shared memory: over shared memory).
pub fn end_to_end(spec: &RunSpec) -> anyhow::Result<BenchResult> {
    if spec.transport == Transport::Forwarder {
        return super::forwarder::run(spec);
    }
    let dir = tempfile_dir()?;
    let (cfg, server, outlet) = configure(spec, &dir)?;
    let daemon = start_daemon(&cfg, spec)?;
    let ctx = zmq::Context::new();
    let stop_sub = Arc::new(AtomicBool::new(false));
    let received = Arc::new(AtomicU64::new(0));
    let outputs = match spec.transport {
        // The subscriber waits for outputs the way the daemon waits for input.
        Transport::Shm { spin_us } => {
            Outputs::Shm { service: cfg.publish.shm.service.clone(), spin: Duration::from_micros(spin_us) }
        }
        _ => Outputs::Zmq(daemon.publish_endpoint.clone()),
    };
    let subscriber = spawn_subscriber(&ctx, outputs, stop_sub.clone(), received.clone())?;
    // ZeroMQ: wait until the daemon has seen the subscription (shm ports connect at once).
    let over_zmq = !matches!(spec.transport, Transport::Shm { .. });
    if over_zmq && !daemon.counters.wait_until(Duration::from_secs(10), |c| c.subscriptions >= 1) {
        anyhow::bail!("the benchmark's subscriber did not connect to {} within 10 s", daemon.publish_endpoint);
    }
    let bg_stop = Arc::new(AtomicBool::new(false));
    let bg = spec
        .background_training
        .then(|| background_training(bg_stop.clone(), cfg.retrain.nice, cfg.retrain.sched_idle, spec.pin.then_some(1)));
    let load = match daemon.admin_addr {
        Some(a) => Some(crate::admin::load::AdminLoad::start(a, 10.0).context("starting the admin clients")?),
        None => None,
    };
    let mut rig = Rig::open(&ctx, &daemon, &cfg, server, outlet, spec.channels)?;
    let timing = send_all(&mut rig, spec, &received)?;
    let admin_report = load.map(|l| l.stop());
    bg_stop.store(true, Ordering::Relaxed);
    if let Some(h) = bg {
        let _ = h.join();
    }
    let summary = daemon.shutdown();
    stop_sub.store(true, Ordering::Relaxed);
    let (h, imputed) = subscriber.join().map_err(|_| anyhow::anyhow!("subscriber panicked"))??;
    let _ = std::fs::remove_dir_all(&dir);
    let mut r = result_of(spec, &timing, &h, received.load(Ordering::Relaxed), imputed);
    r.admin = admin_report;
    add_daemon_side(&mut r, &summary);
    Ok(r)
}

/// The subscriber's side of a run's result (daemon-side fields still 0).
pub(super) fn result_of(
    spec: &RunSpec,
    timing: &Timing,
    h: &Histogram<u64>,
    received: u64,
    imputed: u64,
) -> BenchResult {
    let n = Counts { sent: timing.sent, received, imputed };
    let secs = if spec.rate_hz.is_some() { timing.send_secs } else { timing.done_secs.max(timing.send_secs) };
    let mut r = BenchResult::new(spec.channels, spec.rate_hz, h, n, received as f64 / secs, "end_to_end");
    r.background_training = spec.background_training;
    r.transport = spec.transport.label();
    r
}

/// The daemon's config for this run, with the redis-server or LSL outlet the
/// transport needs (the outlet must exist before the daemon resolves it).
fn configure(
    spec: &RunSpec,
    dir: &std::path::Path,
) -> anyhow::Result<(ServeConfig, Option<RedisServer>, Option<Outlet>)> {
    let mut cfg = ServeConfig::default();
    cfg.ingest.protocol_v1.endpoint = "tcp://127.0.0.1:*".into();
    cfg.publish.endpoint = "tcp://127.0.0.1:*".into();
    cfg.control.enabled = false;
    cfg.record.enabled = spec.record;
    cfg.record.dir = dir.to_path_buf();
    cfg.stats.interval_s = 3600.0;
    cfg.ingest.protocol_v1.receive_hwm_messages = 0;
    cfg.publish.send_hwm_messages = 0;
    cfg.admin.enabled = spec.admin;
    cfg.admin.listen = "127.0.0.1:0".into();
    let server = Rig::configure(spec.transport, &mut cfg)?;
    let outlet = match spec.transport {
        Transport::Lsl => Some(Rig::lsl_outlet(&cfg, spec.channels)?),
        _ => None,
    };
    Ok((cfg, server, outlet))
}

/// Starts the daemon with its own ZeroMQ context (its own I/O thread), as a
/// separate process would. With `pin`, every daemon thread (decode loop,
/// recorder, libzmq I/O thread — threads inherit their creator's CPU mask)
/// lives on core 1 and the rig side on core 0, like `taskset -c 1 alternator serve`.
fn start_daemon(cfg: &ServeConfig, spec: &RunSpec) -> anyhow::Result<Daemon> {
    let (model, cfg2, pin) = (synthetic_model(spec.channels, 1), cfg.clone(), spec.pin);
    let daemon = std::thread::spawn(move || {
        if pin {
            crate::daemon::os::pin_current_thread(1).context("pinning the daemon to core 1")?;
        }
        anyhow::Ok(Daemon::start(&cfg2, model, &zmq::Context::new())?)
    })
    .join()
    .map_err(|_| anyhow::anyhow!("daemon start panicked"))?
    .context("starting the daemon")?;
    if pin {
        crate::daemon::os::pin_current_thread(0).context("pinning the rig side to core 0")?;
    }
    Ok(daemon)
}

/// When sending ended and when the last output arrived (or gave up).
pub(super) struct Timing {
    sent: u64,
    send_secs: f64,
    done_secs: f64,
}

/// Sends for `spec.seconds`, then waits up to 10 s for the outputs.
pub(super) fn send_all(rig: &mut Rig, spec: &RunSpec, received: &AtomicU64) -> anyhow::Result<Timing> {
    let data = synthetic_bins(spec.channels, 1000, 3);
    let start = Instant::now();
    let mut sent = 0u64;
    while start.elapsed().as_secs_f64() < spec.seconds {
        match spec.rate_hz {
            Some(r) => pace_until(start + Duration::from_secs_f64(sent as f64 / r)),
            // As fast as the daemon sustains: at most MAX_IN_FLIGHT bins
            // outstanding, so queues never grow and nothing is dropped.
            None => wait_for_window(sent, received, start + Duration::from_secs_f64(spec.seconds + 5.0)),
        }
        rig.send(sent, monotonic_ns(), data.row((sent % 1000) as usize))?;
        sent += 1;
    }
    let send_secs = start.elapsed().as_secs_f64();
    let deadline = Instant::now() + Duration::from_secs(10);
    while received.load(Ordering::Relaxed) < sent && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(Timing { sent, send_secs, done_secs: start.elapsed().as_secs_f64() })
}

/// Waits until fewer than `MAX_IN_FLIGHT` bins are outstanding (or until
/// `give_up`). Sleeps rather than spins: on a two-core machine a spinning
/// sender takes the core the daemon and the transport need, and the
/// benchmark would measure itself. A full window drains in over a
/// millisecond at any rate reached here, so a ~60 µs sleep costs nothing.
fn wait_for_window(sent: u64, received: &AtomicU64, give_up: Instant) {
    while sent.saturating_sub(received.load(Ordering::Relaxed)) >= MAX_IN_FLIGHT && Instant::now() < give_up {
        std::thread::sleep(Duration::from_micros(10));
    }
}

/// The daemon's own counters and receive → publish latency; a bin is lost
/// when the daemon never took it in or no output came back for it.
fn add_daemon_side(r: &mut BenchResult, summary: &DaemonSummary) {
    r.daemon_dropped = summary.counters.dropped_total();
    r.record_lost = summary.counters.record_lost;
    r.daemon_bins_in = summary.counters.bins_in;
    r.daemon_p50_us = summary.latency.p50_us;
    r.daemon_p99_us = summary.latency.p99_us;
    r.daemon_p999_us = summary.latency.p999_us;
    let never_decoded = r.sent.saturating_sub(summary.counters.bins_in);
    r.lost = never_decoded.max(r.sent.saturating_sub(r.received.saturating_sub(r.imputed)));
}

fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let d = std::env::temp_dir().join(format!("alternator-bench-{}-{}", std::process::id(), monotonic_ns()));
    std::fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
    Ok(d)
}
