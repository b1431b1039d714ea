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
pub mod engine;
pub mod models;
pub mod os;
pub mod record_link;
pub mod recorder;
pub mod retrain;
pub mod sequencer;
pub mod stats;
pub mod telemetry;
pub mod watchdog;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{bounded, Sender};
use tracing::{info, warn};

use config::ServeConfig;
use decode_loop::{DecodeLoop, LoopCommand, LoopSummary};
use engine::{Engine, EngineSettings};
use record_link::{RecordSlot, RecorderLink};
use recorder::{ClosedSession, RecordBatch, Recorder, SessionInfo};
use stats::LoopCounters;
use watchdog::WatchdogSettings;

use crate::ingest::{FrontendSlot, IngestError, Source};
use crate::model::{ModelFile, StepKernel};
use crate::publish::ZmqPublisher;
use crate::transport::zap::ZapHandler;
use crate::transport::{open_socket, SocketError};

/// Rows per record batch.
const BATCH_ROWS: usize = 256;

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Socket(#[from] SocketError),
    #[error(transparent)]
    Ingest(#[from] IngestError),
    #[error(transparent)]
    Publish(#[from] crate::publish::PublishError),
    #[error(transparent)]
    Admin(#[from] crate::admin::AdminError),
    #[error("cannot start thread {name}: {source}")]
    Thread { name: &'static str, source: std::io::Error },
}

impl DaemonError {
    /// An endpoint is taken by another process.
    pub fn is_address_in_use(&self) -> bool {
        match self {
            DaemonError::Socket(e) | DaemonError::Ingest(IngestError::Socket(e)) => e.is_in_use(),
            DaemonError::Admin(e) => e.is_address_in_use(),
            _ => false,
        }
    }

    /// A shared-memory service exists but cannot be joined (another process
    /// created it with other settings, or /dev/shm refuses it).
    pub fn is_shm_unavailable(&self) -> bool {
        matches!(
            self,
            DaemonError::Ingest(IngestError::Shm(_)) | DaemonError::Publish(crate::publish::PublishError::Shm(_))
        )
    }
}

/// A running daemon.
pub struct Daemon {
    /// Enforces `allow_ips` while the daemon runs (dropped with it).
    _zap: Option<ZapHandler>,
    shutdown: Arc<AtomicBool>,
    decode: Option<JoinHandle<LoopSummary>>,
    recorder: Option<JoinHandle<Vec<ClosedSession>>>,
    retrainer: Option<retrain::RetrainHandle>,
    control_thread: Option<JoinHandle<()>>,
    control_stop: Arc<AtomicBool>,
    admin: Option<crate::admin::AdminHandle>,
    /// The admin server's address actually bound, if enabled.
    pub admin_addr: Option<std::net::SocketAddr>,
    /// The control endpoint actually bound, if enabled.
    pub control_endpoint: Option<String>,
    /// Live counters.
    pub counters: Arc<LoopCounters>,
    /// Commands to the decode loop (model swaps).
    pub control: Sender<LoopCommand>,
    /// The ingest endpoint actually bound or connected (wildcard ports resolved).
    pub ingest_endpoint: String,
    /// The publish endpoint actually bound.
    pub publish_endpoint: String,
}

/// What a stopped daemon reports.
#[derive(Debug)]
pub struct DaemonSummary {
    pub latency: crate::latency::LatencySummary,
    pub counters: stats::CounterSnapshot,
    pub sessions: Vec<ClosedSession>,
}

/// The recorder thread and the loop's link to it (None when recording is off).
type RecorderParts = (Option<RecorderLink>, Option<JoinHandle<Vec<ClosedSession>>>);

fn start_recorder(
    cfg: &ServeConfig,
    model: &ModelFile,
    counters: &Arc<LoopCounters>,
    closed_tx: Sender<ClosedSession>,
    rotate: Arc<AtomicBool>,
    frontend: FrontendSlot,
) -> Result<RecorderParts, DaemonError> {
    if !cfg.record.enabled {
        return Ok((None, None));
    }
    let (channels, out_dim) = (model.model.spec.channels, model.model.spec.dz);
    let batch_bytes = RecordBatch::bytes(BATCH_ROWS, channels, out_dim);
    let n = ((cfg.record.queue_bytes / batch_bytes as u64) as usize).max(4);
    info!(
        batches = n,
        rows_per_batch = BATCH_ROWS,
        mib = format!("{:.1}", (n * batch_bytes) as f64 / (1 << 20) as f64),
        "Recorder queue preallocated."
    );
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
        frontend,
    };
    let rec = Recorder::new(cfg.record.clone(), info, counters.clone(), Some(closed_tx), rotate);
    let h = std::thread::Builder::new()
        .name("recorder".into())
        .spawn(move || rec.run(full_rx, free_tx))
        .map_err(|source| DaemonError::Thread { name: "recorder", source })?;
    Ok((Some(RecorderLink { full_tx, free_rx }), Some(h)))
}

fn engine_settings(cfg: &ServeConfig) -> EngineSettings {
    EngineSettings {
        max_gap_bins: cfg.ingest.max_gap_bins,
        stats_interval: Duration::from_secs_f64(cfg.stats.interval_s),
        swap_state: cfg.decode.swap_state,
        rewarm_bins: cfg.decode.rewarm_bins,
        track_prediction: cfg.decode.track_prediction,
        watchdog: watchdog_settings(cfg),
    }
}

fn watchdog_settings(cfg: &ServeConfig) -> WatchdogSettings {
    let bin = Duration::from_secs_f64(cfg.record.bin_seconds);
    let w = &cfg.watchdog;
    WatchdogSettings {
        enabled: w.enabled,
        timeout: if w.timeout_ms == 0 { bin * 5 } else { Duration::from_millis(w.timeout_ms) },
        period: bin,
        safe_output: w.safe_output,
        decay_tau: Duration::from_secs_f64(w.decay_tau_ms / 1e3),
    }
}

fn spawn_decode(lp: DecodeLoop, core: Option<usize>) -> Result<JoinHandle<LoopSummary>, DaemonError> {
    std::thread::Builder::new()
        .name("decode-loop".into())
        .spawn(move || {
            if let Some(c) = core {
                if let Err(e) = os::pin_current_thread(c) {
                    warn!(core = c, error = %e, "Cannot pin the decode loop to a core.");
                }
            }
            lp.run()
        })
        .map_err(|source| DaemonError::Thread { name: "decode-loop", source })
}

/// The control socket's token for mutating commands, if one is set.
/// The control thread on its bound REP socket (when control is on), and the endpoint it serves.
fn spawn_control(
    cfg: &ServeConfig,
    socket: Option<(zmq::Socket, String)>,
    ctl: &Arc<control::Control>,
    stop: &Arc<AtomicBool>,
) -> Result<(Option<JoinHandle<()>>, Option<String>), DaemonError> {
    let Some((rep, endpoint)) = socket else { return Ok((None, None)) };
    let h = control::spawn(rep, ctl.clone(), control_token(cfg), stop.clone())
        .map_err(|source| DaemonError::Thread { name: "control", source })?;
    Ok((Some(h), Some(endpoint)))
}

/// The admin server on its bound listener (when admin is on), fed by the decode loop.
fn spawn_admin(
    cfg: &ServeConfig,
    listener: Option<crate::admin::AdminListener>,
    feed: Option<telemetry::FeedReceiver>,
    control: Arc<control::Control>,
) -> Result<Option<crate::admin::AdminHandle>, DaemonError> {
    let (Some(l), Some(feed)) = (listener, feed) else { return Ok(None) };
    let parts =
        crate::admin::AdminParts { control, feed, bin_seconds: cfg.record.bin_seconds, recording: cfg.record.enabled };
    Ok(Some(crate::admin::spawn(l, &cfg.admin, parts)?))
}

fn control_token(cfg: &ServeConfig) -> Option<String> {
    (!cfg.control.token.is_empty()).then(|| cfg.control.token.clone())
}

/// ZAP domain of the control socket (its `allow_ips`).
const CONTROL_ZAP_DOMAIN: &str = "control";

/// The allowlist of every socket that has one, by ZAP domain.
fn allowlists(cfg: &ServeConfig) -> HashMap<String, Vec<std::net::IpAddr>> {
    let mut m = HashMap::new();
    if cfg.ingest.kind() == Some(crate::ingest::IngestKind::ProtocolV1) && !cfg.ingest.protocol_v1.allow_ips.is_empty()
    {
        m.insert(crate::ingest::protocol_v1::ZAP_DOMAIN.to_string(), cfg.ingest.protocol_v1.access("").allowed());
    }
    if !cfg.publish.allow_ips.is_empty() {
        m.insert(crate::publish::ZAP_DOMAIN.to_string(), cfg.publish.access().allowed());
    }
    if cfg.control.enabled && !cfg.control.allow_ips.is_empty() {
        m.insert(CONTROL_ZAP_DOMAIN.to_string(), cfg.control.access().allowed());
    }
    m
}

/// Keep one seq in this many for the dashboard's feed: at most ~100 points/s.
fn feed_every(bin_seconds: f64) -> u64 {
    ((0.01 / bin_seconds).round() as u64).max(1)
}

/// Sockets the daemon owns, all bound or connected before any thread starts.
struct Sockets {
    source: Box<dyn Source>,
    out: ZmqPublisher,
    extra: Vec<Box<dyn crate::publish::OutputSink>>,
    control: Option<(zmq::Socket, String)>,
    admin: Option<crate::admin::AdminListener>,
}

fn open_sockets(
    cfg: &ServeConfig,
    model: &ModelFile,
    ctx: &zmq::Context,
    frontend: FrontendSlot,
) -> Result<Sockets, DaemonError> {
    let (channels, out_dim) = (model.model.spec.channels, model.model.spec.dz);
    let source = crate::ingest::open(&cfg.ingest, &cfg.frontend, ctx, channels, cfg.record.bin_seconds, frontend)?;
    let out = ZmqPublisher::open(&cfg.publish, ctx, out_dim)?;
    let extra = crate::publish::open_outputs(&cfg.publish, &cfg.ingest, out_dim, cfg.record.bin_seconds)?;
    let control = if cfg.control.enabled {
        Some(open_socket(ctx, zmq::REP, &cfg.control.endpoint, true, |s| {
            if cfg.control.allow_ips.is_empty() {
                Ok(())
            } else {
                s.set_zap_domain(CONTROL_ZAP_DOMAIN)
            }
        })?)
    } else {
        None
    };
    let admin = if cfg.admin.enabled { Some(crate::admin::bind(&cfg.admin)?) } else { None };
    Ok(Sockets { source, out, extra, control, admin })
}

impl Daemon {
    /// Opens every socket first (errors here are reported before anything
    /// runs), then starts the recorder, the decode loop, the retrainer (if
    /// configured) and the control thread.
    pub fn start(cfg: &ServeConfig, model: ModelFile, ctx: &zmq::Context) -> Result<Daemon, DaemonError> {
        let counters = Arc::new(LoopCounters::default());
        let lists = allowlists(cfg);
        let zap = match lists.is_empty() {
            true => None,
            false => Some(ZapHandler::start(ctx, lists, counters.connections_refused.clone())?),
        };
        let frontend = FrontendSlot::default();
        let socks = open_sockets(cfg, &model, ctx, frontend.clone())?;
        let ingest_endpoint = socks.source.endpoint().to_string();
        let publish_endpoint = socks.out.endpoint().to_string();
        let shutdown = Arc::new(AtomicBool::new(false));
        let (closed_tx, closed_rx) = bounded::<ClosedSession>(1024);
        let rotate = Arc::new(AtomicBool::new(false));
        let (link, recorder) = start_recorder(cfg, &model, &counters, closed_tx, rotate.clone(), frontend)?;
        let (control, control_rx) = bounded::<LoopCommand>(4);
        let mut eng = Engine::new(
            Box::new(StepKernel::new(model.model.clone())),
            model.meta.id.clone(),
            engine_settings(cfg),
            counters.clone(),
            socks.out,
            RecordSlot::new(link),
        )
        .with_outputs(socks.extra);
        let feed = socks.admin.is_some().then(|| {
            let (tx, rx) = telemetry::output_feed(feed_every(cfg.record.bin_seconds));
            eng.set_feed(tx);
            rx
        });
        let decode =
            spawn_decode(DecodeLoop::new(socks.source, eng, control_rx, shutdown.clone()), cfg.decode.cpu_core)?;
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
        let info = control::ControlInfo {
            channels: model.model.spec.channels,
            outputs: model.model.spec.dz,
            model_id,
            ingest_endpoint: ingest_endpoint.clone(),
            publish_endpoint: publish_endpoint.clone(),
            models_dir: cfg.model.models_dir.clone(),
        };
        let ctl = Arc::new(control::Control::new(info, counters.clone(), retrain::actions(retrainer.as_ref())));
        let control_stop = Arc::new(AtomicBool::new(false));
        let (control_thread, control_endpoint) = spawn_control(cfg, socks.control, &ctl, &control_stop)?;
        let admin = spawn_admin(cfg, socks.admin, feed, ctl)?;
        info!(source = %cfg.ingest.kind, ingest = %ingest_endpoint, publish = %publish_endpoint, model = %model.meta.id,
            channels = model.model.spec.channels, outputs = model.model.spec.dz, recording = cfg.record.enabled, "Daemon started.");
        Ok(Daemon {
            _zap: zap,
            shutdown,
            decode: Some(decode),
            recorder,
            retrainer,
            control_thread,
            control_stop,
            admin_addr: admin.as_ref().map(|a| a.addr),
            admin,
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

    /// Stops taking input, drains the queues, closes the session file.
    pub fn shutdown(mut self) -> DaemonSummary {
        self.shutdown.store(true, Ordering::Relaxed);
        self.control_stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.control_thread.take() {
            let _ = h.join();
        }
        if let Some(a) = self.admin.take() {
            a.stop();
        }
        if let Some(r) = self.retrainer.take() {
            r.stop();
        }
        let summary = self.decode.take().map(|h| h.join());
        let latency = match summary {
            Some(Ok(s)) => s.latency,
            _ => {
                warn!("Decode loop panicked.");
                crate::latency::LatencySummary::default()
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
