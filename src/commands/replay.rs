//! `alternator replay`: publish a recorded session to a running daemon.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tracing::{info, warn};

use crate::cli::ReplayArgs;
use crate::daemon::control;
use crate::recording::Recording;
use crate::replay::{replay, FrameSender, Publisher, ReplayError, ReplayOptions};

use super::train::read_options;
use super::UsageError;

/// Sets `stop` on SIGINT/SIGTERM (a tiny tokio runtime on its own thread).
pub fn stop_on_signal(stop: Arc<AtomicBool>) {
    let _ = std::thread::Builder::new().name("signals".into()).spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
            return;
        };
        rt.block_on(async {
            use tokio::signal::unix::{signal, SignalKind};
            let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
                return;
            };
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            stop.store(true, Ordering::Relaxed);
        });
    });
}

/// Refuses a recording whose channel count differs from the running
/// daemon's (asked over `--control`; skipped with a warning when it does not answer).
fn check_channels(ctx: &zmq::Context, a: &ReplayArgs, rec: &Recording) -> anyhow::Result<()> {
    if a.control.is_empty() {
        return Ok(());
    }
    let st = match control::request(ctx, &a.control, "status", 2000) {
        Ok(st) => st,
        Err(e) => {
            warn!(control = %a.control, error = %e, "Cannot ask the daemon for its channel count; sending without the check.");
            return Ok(());
        }
    };
    match st["channels"].as_u64() {
        Some(ch) if ch as usize != rec.n_channels() => {
            Err(ReplayError::ChannelMismatch { recording: rec.n_channels(), daemon: ch as usize })
                .with_context(|| format!("checking {} against the daemon at {}", a.session.display(), a.control))
        }
        _ => Ok(()),
    }
}

/// The shm input service to publish to (`--transport shm` or `--endpoint shm:NAME`), or None for ZeroMQ.
fn shm_service(a: &ReplayArgs) -> anyhow::Result<Option<String>> {
    match (a.transport.as_str(), a.endpoint.strip_prefix("shm:")) {
        (_, Some(service)) => Ok(Some(service.to_string())),
        ("shm", None) => Ok(Some(crate::ingest::ShmSection::default().service)),
        ("protocol-v1", None) => Ok(None),
        (t, None) => Err(UsageError(format!("--transport {t:?}: expected protocol-v1 or shm")).into()),
    }
}

/// The rig side: the daemon's shm services, or a ZeroMQ publisher once the daemon has subscribed.
fn open_sender(
    ctx: &zmq::Context,
    a: &ReplayArgs,
    shm: Option<&str>,
    channels: usize,
) -> anyhow::Result<Box<dyn FrameSender>> {
    if let Some(service) = shm {
        let behavior = (!a.behavior_service.is_empty()).then_some(a.behavior_service.as_str());
        let bytes = crate::wire::HEADER_LEN + 4 * channels.max(64);
        let rig = crate::ingest::shm::ShmRig::open(service, behavior, bytes)
            .context("opening the daemon's shm services (is it running with ingest.kind = \"shm\"?)")?;
        return Ok(Box::new(rig));
    }
    let publisher = Publisher::new(ctx, &a.endpoint, false)?;
    publisher.wait_for_subscriber(Duration::from_secs_f64(a.wait.max(0.1)))?;
    Ok(Box::new(publisher))
}

pub fn run(a: ReplayArgs) -> anyhow::Result<()> {
    if !(a.max || a.speed > 0.0 && a.speed.is_finite()) {
        return Err(UsageError(format!("--speed {}: expected a positive number", a.speed)).into());
    }
    let rec = Recording::read_checked(&a.session, &read_options(&a.paths))
        .with_context(|| format!("reading session {}", a.session.display()))?;
    if rec.n_bins() == 0 {
        return Err(UsageError(format!("{} holds no bins", a.session.display())).into());
    }
    // A daemon session file carries its stream's seqs: replay them as recorded.
    let seqs = crate::recording::read_session_seq(&a.session)
        .with_context(|| format!("reading /seq of {}", a.session.display()))?;
    let seqs = seqs.filter(|s| s.len() == rec.n_bins());
    let ctx = zmq::Context::new();
    check_channels(&ctx, &a, &rec)?;
    let shm = shm_service(&a)?;
    let mut sender = open_sender(&ctx, &a, shm.as_deref(), rec.n_channels())?;
    let stop = Arc::new(AtomicBool::new(false));
    stop_on_signal(stop.clone());
    let opts = ReplayOptions {
        speed: if a.max { None } else { Some(a.speed) },
        repeat: a.repeat,
        from_s: a.from,
        to_s: a.to,
        drop_every: a.drop_every,
        topic: a.topic.clone(),
        seqs: if a.repeat { None } else { seqs },
        ..ReplayOptions::default()
    };
    let endpoint = shm.as_ref().map(|sv| format!("shm:{sv}")).unwrap_or_else(|| a.endpoint.clone());
    info!(path = %a.session.display(), bins = rec.n_bins(), channels = rec.n_channels(), endpoint = %endpoint, "Replaying.");
    let r = replay(sender.as_mut(), &rec, &opts, &stop)?;
    // Give libzmq time to flush the last frames before the socket closes
    // (and the daemon time to take the last shm samples before the rig's
    // publisher, which owns their memory, goes away).
    std::thread::sleep(Duration::from_millis(200));
    println!(
        "sent {} bins ({} skipped, {} behaviour) in {:.3} s: {:.1} bins/s{}; pacing error p50 {:.1} µs, p99 {:.1} µs, max {:.1} µs",
        r.bins_sent,
        r.bins_skipped,
        r.behavior_sent,
        r.seconds,
        r.achieved_rate_hz,
        r.target_rate_hz.map(|t| format!(" (target {t:.1})")).unwrap_or_default(),
        r.pacing_error_p50_us,
        r.pacing_error_p99_us,
        r.pacing_error_max_us
    );
    Ok(())
}
