//! The streaming daemon: ZeroMQ ingest → per-bin alternator update →
//! published predictions, with every bin recorded to HDF5 and periodic
//! retraining in the background.
//!
//! Threads: `decode-loop` (sockets + kernel, [`decode_loop`]), `recorder`
//! (HDF5, [`recorder`]) and, when enabled, `retrainer` (niced, [`retrain`]).
//! They talk only through bounded crossbeam channels and atomic counters.

pub mod config;
pub mod control;
pub mod decode_loop;
pub mod models;
pub mod os;
pub mod recorder;
pub mod retrain;
pub mod stats;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{bounded, Sender};
use tracing::{info, warn};

use config::ServeConfig;
use decode_loop::{DecodeLoop, LoopCommand, LoopSettings, LoopSummary, RecorderLink};
use recorder::{ClosedSession, RecordBatch, Recorder, SessionInfo};
use stats::LoopCounters;

use crate::model::{ModelFile, StepKernel};

/// Rows per record batch.
const BATCH_ROWS: usize = 256;

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("cannot {action} {endpoint}: {source}")]
    Socket { action: &'static str, endpoint: String, source: zmq::Error },
    #[error("cannot start thread {name}: {source}")]
    Thread { name: &'static str, source: std::io::Error },
}

/// A running daemon.
pub struct Daemon {
    shutdown: Arc<AtomicBool>,
    decode: Option<JoinHandle<LoopSummary>>,
    recorder: Option<JoinHandle<Vec<ClosedSession>>>,
    retrainer: Option<retrain::RetrainHandle>,
    control_thread: Option<JoinHandle<()>>,
    control_stop: Arc<AtomicBool>,
    /// The control endpoint actually bound, if enabled.
    pub control_endpoint: Option<String>,
    /// Live counters.
    pub counters: Arc<LoopCounters>,
    /// Commands to the decode loop (model swaps).
    pub control: Sender<LoopCommand>,
    /// The ingest endpoint actually bound (wildcard ports resolved).
    pub ingest_endpoint: String,
    /// The publish endpoint actually bound.
    pub publish_endpoint: String,
}

/// What a stopped daemon reports.
#[derive(Debug)]
pub struct DaemonSummary {
    pub latency: stats::LatencySummary,
    pub counters: stats::CounterSnapshot,
    pub sessions: Vec<ClosedSession>,
}

/// Creates a socket, applies `configure` (HWMs, subscriptions) *before*
/// binding or connecting — libzmq copies the options into each listener and
/// connection when they are made, so options set afterwards would silently
/// not apply — then binds or connects and reports the actual endpoint.
fn socket(
    ctx: &zmq::Context,
    kind: zmq::SocketType,
    endpoint: &str,
    bind: bool,
    configure: impl FnOnce(&zmq::Socket) -> Result<(), zmq::Error>,
) -> Result<(zmq::Socket, String), DaemonError> {
    let err = |action, source| DaemonError::Socket { action, endpoint: endpoint.to_string(), source };
    let s = ctx.socket(kind).map_err(|e| err("create a socket for", e))?;
    s.set_linger(1000).map_err(|e| err("configure", e))?;
    configure(&s).map_err(|e| err("configure", e))?;
    if bind {
        s.bind(endpoint).map_err(|e| err("bind", e))?;
    } else {
        s.connect(endpoint).map_err(|e| err("connect to", e))?;
    }
    let actual = s.get_last_endpoint().ok().and_then(|r| r.ok()).unwrap_or_else(|| endpoint.to_string());
    Ok((s, actual))
}

impl Daemon {
    /// Opens the sockets (errors here are reported before anything runs) and
    /// starts the decode loop, the recorder and (if enabled) the retrainer.
    pub fn start(cfg: &ServeConfig, model: ModelFile, ctx: &zmq::Context) -> Result<Daemon, DaemonError> {
        let (sub, ingest_endpoint) = socket(ctx, zmq::SUB, &cfg.ingest.endpoint, cfg.ingest.bind, |s| {
            s.set_rcvhwm(cfg.ingest.rcvhwm)?;
            s.set_subscribe(cfg.ingest.subscribe.as_bytes())
        })?;
        let (pubs, publish_endpoint) =
            socket(ctx, zmq::PUB, &cfg.publish.endpoint, cfg.publish.bind, |s| s.set_sndhwm(cfg.publish.sndhwm))?;

        let counters = Arc::new(LoopCounters::default());
        let shutdown = Arc::new(AtomicBool::new(false));
        let channels = model.model.spec.channels;
        let out_dim = model.model.spec.dz;

        let (closed_tx, closed_rx) = bounded::<ClosedSession>(1024);
        let rotate = Arc::new(AtomicBool::new(false));
        let (rec_link, recorder) = if cfg.record.enabled {
            let n = (cfg.record.queue_bins / BATCH_ROWS).max(4);
            let (full_tx, full_rx) = bounded::<RecordBatch>(n);
            let (free_tx, free_rx) = bounded::<RecordBatch>(n);
            for _ in 0..n {
                free_tx
                    .send(RecordBatch::new(BATCH_ROWS, channels, out_dim))
                    .expect("invariant: free list has room for every batch");
            }
            let info = SessionInfo {
                model_id: model.meta.id.clone(),
                config_toml: toml::to_string(cfg).unwrap_or_default(),
                channels,
                out_dim,
                track_prediction: cfg.decode.track_prediction,
            };
            let rec = Recorder::new(cfg.record.clone(), info, counters.clone(), Some(closed_tx), rotate.clone());
            let h = std::thread::Builder::new()
                .name("recorder".into())
                .spawn(move || rec.run(full_rx, free_tx))
                .map_err(|source| DaemonError::Thread { name: "recorder", source })?;
            (Some(RecorderLink { full_tx, free_rx }), Some(h))
        } else {
            (None, None)
        };

        let (control, control_rx) = bounded::<LoopCommand>(4);
        let settings = LoopSettings {
            spikes_topic: cfg.ingest.spikes_topic.as_bytes().to_vec(),
            behavior_topic: cfg.ingest.behavior_topic.as_bytes().to_vec(),
            publish_topic: cfg.publish.topic.as_bytes().to_vec(),
            max_message_bytes: cfg.ingest.max_message_bytes,
            max_gap_bins: cfg.ingest.max_gap_bins,
            stats_interval: Duration::from_secs_f64(cfg.stats.interval_s),
            swap_state: cfg.decode.swap_state,
            rewarm_bins: cfg.decode.rewarm_bins,
            track_prediction: cfg.decode.track_prediction,
        };
        let kernel = Box::new(StepKernel::new(model.model.clone()));
        let lp = DecodeLoop::new(
            sub,
            pubs,
            kernel,
            model.meta.id.clone(),
            settings,
            counters.clone(),
            rec_link,
            control_rx,
            shutdown.clone(),
        )
        .map_err(|e| DaemonError::Socket {
            action: "configure",
            endpoint: ingest_endpoint.clone(),
            source: e,
        })?;
        let core = cfg.decode.cpu_core;
        let decode = std::thread::Builder::new()
            .name("decode-loop".into())
            .spawn(move || {
                if let Some(c) = core {
                    if let Err(e) = os::pin_current_thread(c) {
                        warn!(core = c, error = %e, "Cannot pin the decode loop to a core.");
                    }
                }
                lp.run()
            })
            .map_err(|source| DaemonError::Thread { name: "decode-loop", source })?;

        let model_id = Arc::new(std::sync::Mutex::new(model.meta.id.clone()));
        let retrainer = retrain::RetrainHandle::start(
            cfg,
            &model,
            control.clone(),
            counters.clone(),
            closed_rx,
            model_id.clone(),
            rotate,
        )
        .map_err(|source| DaemonError::Thread { name: "retrainer", source })?;
        let control_stop = Arc::new(AtomicBool::new(false));
        let (control_thread, control_endpoint) = if cfg.control.enabled {
            let (rep, ep) = socket(ctx, zmq::REP, &cfg.control.endpoint, true, |_| Ok(()))?;
            let info = control::ControlInfo {
                channels,
                outputs: out_dim,
                model_id,
                ingest_endpoint: ingest_endpoint.clone(),
                publish_endpoint: publish_endpoint.clone(),
            };
            let actions = retrain::actions(retrainer.as_ref());
            let h = control::spawn(rep, info, counters.clone(), actions, control_stop.clone())
                .map_err(|source| DaemonError::Thread { name: "control", source })?;
            (Some(h), Some(ep))
        } else {
            (None, None)
        };
        info!(ingest = %ingest_endpoint, publish = %publish_endpoint, model = %model.meta.id, channels, outputs = out_dim, recording = cfg.record.enabled, "Daemon started.");
        Ok(Daemon {
            shutdown,
            decode: Some(decode),
            recorder,
            retrainer,
            control_thread,
            control_stop,
            control_endpoint,
            counters,
            control,
            ingest_endpoint,
            publish_endpoint,
        })
    }

    /// Asks for an immediate retraining run (SIGHUP). False if retraining is off.
    pub fn trigger_retrain(&self) -> bool {
        self.retrainer.as_ref().map(|r| r.trigger()).unwrap_or(false)
    }

    /// The retrainer's handle, if retraining is configured.
    pub fn retrainer(&self) -> Option<&retrain::RetrainHandle> {
        self.retrainer.as_ref()
    }

    /// Stops taking input, drains the queues, closes the session file.
    pub fn shutdown(mut self) -> DaemonSummary {
        self.shutdown.store(true, Ordering::Relaxed);
        self.control_stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.control_thread.take() {
            let _ = h.join();
        }
        if let Some(r) = self.retrainer.take() {
            r.stop();
        }
        let summary = self.decode.take().map(|h| h.join());
        let latency = match summary {
            Some(Ok(s)) => s.latency,
            _ => {
                warn!("Decode loop panicked.");
                stats::LatencySummary::default()
            }
        };
        // The loop dropped its recorder sender: the recorder drains and closes.
        let sessions = self.recorder.take().map(|h| h.join().unwrap_or_default()).unwrap_or_default();
        let counters = self.counters.snapshot();
        info!(
            bins_in = counters.bins_in,
            bins_out = counters.bins_out,
            imputed = counters.imputed,
            dropped = counters.dropped_total(),
            record_lost = counters.record_lost,
            p50_us = format!("{:.1}", latency.p50_us),
            p99_us = format!("{:.1}", latency.p99_us),
            p999_us = format!("{:.1}", latency.p999_us),
            max_us = format!("{:.1}", latency.max_us),
            files = sessions.len(),
            "Daemon stopped."
        );
        DaemonSummary { latency, counters, sessions }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.shutdown.store(true, Ordering::Relaxed);
        self.control_stop.store(true, Ordering::Relaxed);
    }
}
