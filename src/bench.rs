//! End-to-end latency benchmark: a daemon on its own threads, a rig-like
//! replayer and an output subscriber in this process, connected over real
//! TCP loopback sockets (or the real transport under test: LSL, Redis,
//! iceoryx2 shared memory). Latency is send (replayer `t_ns`) → receipt of the
//! decoded output, per bin, in an HDR histogram; the compute-only mode times
//! the decode step alone. Synthetic models and streams are generated on the
//! fly, so the benchmark needs no files.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use hdrhistogram::Histogram;
use serde::Serialize;

use crate::clock::monotonic_ns;
use crate::daemon::config::ServeConfig;
use crate::daemon::stats::latency_histogram;
use crate::daemon::Daemon;
use crate::matrix::Matrix;
use crate::model::file::{ModelFile, ModelMeta};
use crate::model::net::AlternatorNet;
use crate::model::preprocess::NormStats;
use crate::model::{Activation, Mode, Model, ModelSpec, Smoothing, StepKernel};
use crate::replay::{pace_until, Publisher};
use crate::rng::Rng;
use crate::wire::{encode_f32, Dtype, Frame, FLAG_IMPUTED};

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

/// A random model of the benchmark architecture: FTN C → 256 → 2, OTN 2 → 64 → 128 → C.
pub fn synthetic_model(channels: usize, seed: u64) -> ModelFile {
    let spec = ModelSpec {
        mode: Mode::Decoding,
        channels,
        history: 0,
        dz: 2,
        ftn_hidden: vec![256],
        otn_hidden: vec![64, 128],
        activation: Activation::Tanh,
        alpha: 0.3,
        sigma_x: 0.2,
        sigma_z: 0.06,
        smoothing: Smoothing::None,
    };
    let net = AlternatorNet::init(&spec, seed, &candle_core::Device::Cpu).expect("invariant: CPU init of a valid spec");
    let model = Model {
        stats: NormStats::identity(channels, 2),
        ftn: net.ftn.export().expect("invariant: export"),
        otn: net.otn.export().expect("invariant: export"),
        spec,
    };
    ModelFile { meta: ModelMeta::new(&model, None, None), model }
}

/// Poisson-like counts for `bins` × `channels`.
pub fn synthetic_bins(channels: usize, bins: usize, seed: u64) -> Matrix {
    let mut rng = Rng::new(seed);
    Matrix::from_vec(
        bins,
        channels,
        (0..bins * channels).map(|_| (-(rng.uniform().max(1e-12)).ln() * 2.0).floor() as f32).collect(),
    )
}

fn pct(h: &Histogram<u64>, q: f64) -> f64 {
    if h.is_empty() {
        0.0
    } else {
        h.value_at_quantile(q) as f64 / 1e3
    }
}

/// Times the decode step alone (preprocess + FTN + z update + output encode) for `seconds`.
pub fn compute_only(channels: usize, seconds: f64) -> BenchResult {
    let mf = synthetic_model(channels, 1);
    let data = synthetic_bins(channels, 1024, 2);
    let mut k = StepKernel::new(mf.model);
    let mut out = [0f32; 2];
    let mut enc = Vec::with_capacity(64);
    let mut h = latency_histogram();
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
    result(channels, None, &h, n, n, 0, n as f64 / secs, "compute", false)
}

#[allow(clippy::too_many_arguments)]
fn result(
    channels: usize,
    rate: Option<f64>,
    h: &Histogram<u64>,
    sent: u64,
    received: u64,
    imputed: u64,
    throughput: f64,
    mode: &str,
    bg: bool,
) -> BenchResult {
    BenchResult {
        channels,
        rate_hz: rate,
        p50_us: pct(h, 0.5),
        p90_us: pct(h, 0.9),
        p99_us: pct(h, 0.99),
        p999_us: pct(h, 0.999),
        max_us: if h.is_empty() { 0.0 } else { h.max() as f64 / 1e3 },
        throughput_bins_per_s: throughput,
        sent,
        received,
        lost: sent.saturating_sub(received.saturating_sub(imputed)),
        imputed,
        daemon_dropped: 0,
        record_lost: 0,
        daemon_bins_in: 0,
        daemon_p50_us: 0.0,
        daemon_p99_us: 0.0,
        daemon_p999_us: 0.0,
        mode: mode.into(),
        background_training: bg,
        transport: "protocol-v1".into(),
        admin: None,
        histogram: Some(h.clone()),
    }
}

/// Runs a training job in a loop on a niced thread until `stop` is set (to
/// measure decoding latency while retraining runs).
/// With `core`, the job runs on that core (the daemon's, as retraining would).
pub fn background_training(
    stop: Arc<AtomicBool>,
    nice: i32,
    sched_idle: bool,
    core: Option<usize>,
) -> std::thread::JoinHandle<u64> {
    std::thread::Builder::new()
        .name("bench-training".into())
        .spawn(move || {
            if let Some(c) = core {
                let _ = crate::daemon::os::pin_current_thread(c);
            }
            let _ = crate::daemon::os::set_current_thread_nice(nice);
            if sched_idle {
                let _ = crate::daemon::os::set_current_thread_sched_idle();
            }
            let x = synthetic_bins(96, 6000, 5);
            let mut rng = Rng::new(9);
            let y = Matrix::from_vec(6000, 2, (0..12000).map(|_| rng.normal() as f32).collect());
            let mut epochs = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let cfg = crate::model::train::TrainConfig { max_epochs: 1, ..Default::default() };
                let set = crate::model::train::TrainSet { spikes: &x, behavior: Some(&y), behavior_valid: None };
                if crate::model::train::train(&[set], &cfg, &mut |_| {}).is_ok() {
                    epochs += 1;
                }
            }
            epochs
        })
        .expect("invariant: spawning a thread")
}

/// Outstanding bins allowed when sending as fast as possible.
const MAX_IN_FLIGHT: u64 = 256;

/// How the rig side delivers bins to the daemon (`alternator bench --transport`).
/// Outputs are received on the protocol-v1 ZeroMQ socket, so these
/// transports differ only in the input hop — except shared memory, whose
/// outputs come back over shared memory too (`[publish.shm]`): a rig on the
/// same machine uses it both ways.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Transport {
    /// Protocol-v1 frames over ZeroMQ TCP loopback.
    ProtocolV1,
    /// An LSL outlet in this process (liblsl loaded at run time) → the daemon's inlet.
    Lsl,
    /// `XADD` to a `redis-server` started for the run → the daemon's `XREAD BLOCK`.
    Redis,
    /// iceoryx2 publish-subscribe + event both ways (`ingest.kind = "shm"`,
    /// `[publish.shm]`), the daemon polling this many µs before it sleeps
    /// (`ingest.shm.spin_us`).
    Shm { spin_us: u64 },
}

impl Transport {
    pub fn from_name(s: &str) -> Option<Self> {
        match s {
            "protocol-v1" => Some(Self::ProtocolV1),
            "lsl" => Some(Self::Lsl),
            "redis" => Some(Self::Redis),
            "shm" => Some(Self::Shm { spin_us: 0 }),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::ProtocolV1 => "protocol-v1",
            Self::Lsl => "lsl",
            Self::Redis => "redis",
            Self::Shm { .. } => "shm",
        }
    }

    /// The name with the settings that distinguish runs (`shm spin 200 µs`).
    pub fn label(self) -> String {
        match self {
            Self::Shm { spin_us } if spin_us > 0 => format!("shm spin {spin_us} µs"),
            _ => self.name().to_string(),
        }
    }
}

/// A `redis-server` of the benchmark's own (no persistence), killed on drop.
struct RedisServer {
    child: std::process::Child,
    url: String,
}

impl RedisServer {
    fn start() -> anyhow::Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let child = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .context("starting redis-server (Debian package redis-server) for --transport redis")?;
        let url = format!("redis://127.0.0.1:{port}");
        let target =
            crate::ingest::redis::RedisTarget { url: url.clone(), username: String::new(), password: String::new() };
        let deadline = Instant::now() + Duration::from_secs(10);
        while target.connect(Duration::from_millis(200)).is_err() {
            anyhow::ensure!(Instant::now() < deadline, "redis-server on port {port} did not come up");
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Self { child, url })
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The sending side of one run.
enum Rig {
    Zmq(Publisher),
    Lsl(crate::ingest::lsl::ffi::Outlet),
    Redis { conn: ::redis::Connection, cmd: Vec<u8>, samples: Vec<u8>, _server: RedisServer },
    Shm(Box<crate::ingest::shm::ShmRig>),
}

impl Rig {
    /// Input config for `transport` (and the server it needs).
    fn configure(transport: Transport, cfg: &mut ServeConfig) -> anyhow::Result<Option<RedisServer>> {
        match transport {
            Transport::ProtocolV1 => Ok(None),
            Transport::Lsl => {
                cfg.ingest.kind = "lsl".into();
                cfg.ingest.lsl.name = format!("alternator-bench-{}", std::process::id());
                cfg.ingest.lsl.resolve_timeout_s = 10.0;
                Ok(None)
            }
            Transport::Redis => {
                let server = RedisServer::start()?;
                cfg.ingest.kind = "redis".into();
                cfg.ingest.redis.url = server.url.clone();
                cfg.ingest.redis.dtype = "float32".into();
                Ok(Some(server))
            }
            Transport::Shm { spin_us } => {
                cfg.ingest.shm.spin_us = spin_us;
                let base = format!("alternator-bench-{}-{}", std::process::id(), monotonic_ns());
                cfg.ingest.kind = "shm".into();
                cfg.ingest.shm.service = format!("{base}/input");
                cfg.ingest.shm.behavior_service = String::new();
                cfg.publish.shm.enabled = true;
                cfg.publish.shm.service = format!("{base}/decoded");
                Ok(None)
            }
        }
    }

    /// Opens the sending side. LSL: the outlet exists before the daemon
    /// starts (`pre`), so the daemon's start-up finds it.
    fn open(
        ctx: &zmq::Context,
        daemon: &Daemon,
        cfg: &ServeConfig,
        server: Option<RedisServer>,
        lsl: Option<crate::ingest::lsl::ffi::Outlet>,
        channels: usize,
    ) -> anyhow::Result<Rig> {
        if cfg.ingest.kind() == Some(crate::ingest::IngestKind::Shm) {
            let len = crate::wire::HEADER_LEN + 4 * channels;
            return Ok(Rig::Shm(Box::new(crate::ingest::shm::ShmRig::open(&cfg.ingest.shm.service, None, len)?)));
        }
        if let Some(outlet) = lsl {
            return Ok(Rig::Lsl(outlet));
        }
        if let Some(server) = server {
            let target = crate::ingest::redis::RedisTarget {
                url: server.url.clone(),
                username: String::new(),
                password: String::new(),
            };
            let conn = target.connect(Duration::from_secs(2))?;
            return Ok(Rig::Redis {
                conn,
                cmd: Vec::with_capacity(64 + 4 * channels),
                samples: Vec::new(),
                _server: server,
            });
        }
        let p = Publisher::new(ctx, &daemon.ingest_endpoint, false)?;
        p.wait_for_subscriber(Duration::from_secs(5))?;
        Ok(Rig::Zmq(p))
    }

    /// An LSL outlet for the run (before the daemon starts).
    fn lsl_outlet(cfg: &ServeConfig, channels: usize) -> anyhow::Result<crate::ingest::lsl::ffi::Outlet> {
        let lib = crate::ingest::lsl::ffi::Lib::load(cfg.ingest.lsl.library.as_deref())?;
        let name = &cfg.ingest.lsl.name;
        let info = lib.stream_info(name, "SpikeCounts", channels, 0.0, &format!("{name}-uid"))?;
        Ok(info.outlet(60)?)
    }

    /// Sends bin `seq` stamped `t_ns` (this process's monotonic clock).
    fn send(&mut self, seq: u64, t_ns: u64, row: &[f32]) -> anyhow::Result<()> {
        match self {
            Rig::Zmq(p) => p.send("spikes", Dtype::F32, seq, t_ns, row.len() as u32, row)?,
            Rig::Lsl(o) => anyhow::ensure!(o.push(row, t_ns as f64 * 1e-9), "LSL push refused"),
            Rig::Shm(r) => {
                let h = crate::wire::Header {
                    version: crate::wire::VERSION,
                    dtype: Dtype::F32,
                    flags: 0,
                    seq,
                    t_ns,
                    channels: row.len() as u32,
                    samples: 1,
                };
                r.send(false, &h, row)?
            }
            Rig::Redis { conn, cmd, samples, .. } => {
                use ::redis::ConnectionLike;
                samples.clear();
                for v in row {
                    samples.extend_from_slice(&v.to_le_bytes());
                }
                cmd.clear();
                crate::ingest::redis::pack(
                    cmd,
                    &[
                        b"XADD",
                        b"binned_spikes",
                        b"*",
                        b"samples",
                        samples,
                        b"i",
                        &seq.to_le_bytes(),
                        b"ts",
                        &t_ns.to_le_bytes(),
                        b"sync",
                        b"{}",
                    ],
                );
                conn.req_packed_command(cmd)?;
            }
        }
        Ok(())
    }
}

/// One end-to-end run over TCP loopback: input over `transport`, outputs
/// over the protocol-v1 publish socket.
#[allow(clippy::too_many_arguments)]
pub fn end_to_end(
    transport: Transport,
    channels: usize,
    rate_hz: Option<f64>,
    seconds: f64,
    record: bool,
    bg_training: bool,
    pin: bool,
    admin: bool,
) -> anyhow::Result<BenchResult> {
    let dir = tempfile_dir()?;
    let mut cfg = ServeConfig::default();
    cfg.ingest.protocol_v1.endpoint = "tcp://127.0.0.1:*".into();
    cfg.publish.endpoint = "tcp://127.0.0.1:*".into();
    cfg.control.enabled = false;
    cfg.record.enabled = record;
    cfg.record.dir = dir.clone();
    cfg.stats.interval_s = 3600.0;
    cfg.ingest.protocol_v1.receive_hwm_messages = 0;
    cfg.publish.send_hwm_messages = 0;
    let server = Rig::configure(transport, &mut cfg)?;
    let outlet = match transport {
        Transport::Lsl => Some(Rig::lsl_outlet(&cfg, channels)?),
        _ => None,
    };
    cfg.admin.enabled = admin;
    cfg.admin.listen = "127.0.0.1:0".into();
    // The daemon gets its own ZeroMQ context (its own I/O thread), as a
    // separate process would. With `pin`, every daemon thread (decode loop,
    // recorder, libzmq I/O thread — threads inherit their creator's CPU mask)
    // lives on core 1 and the rig side on core 0, like `taskset -c 1 alternator serve`.
    let model = synthetic_model(channels, 1);
    let cfg2 = cfg.clone();
    let (daemon, _daemon_ctx) = std::thread::spawn(move || {
        if pin {
            crate::daemon::os::pin_current_thread(1)?;
        }
        let daemon_ctx = zmq::Context::new();
        let d = Daemon::start(&cfg2, model, &daemon_ctx)?;
        anyhow::Ok((d, daemon_ctx))
    })
    .join()
    .map_err(|_| anyhow::anyhow!("daemon start panicked"))?
    .context("starting the daemon")?;
    if pin {
        crate::daemon::os::pin_current_thread(0).context("pinning the rig side to core 0")?;
    }
    let ctx = zmq::Context::new();

    // Subscriber: histogram of send → receipt, seq bookkeeping.
    let stop_sub = Arc::new(AtomicBool::new(false));
    let received = Arc::new(AtomicU64::new(0));
    let outputs = match transport {
        Transport::Shm { .. } => Outputs::Shm(cfg.publish.shm.service.clone()),
        _ => Outputs::Zmq(daemon.publish_endpoint.clone()),
    };
    let subscriber = spawn_subscriber(&ctx, outputs, stop_sub.clone(), received.clone())?;
    // ZeroMQ: wait until the daemon has seen the subscription (shm ports connect at once).
    let over_zmq = !matches!(transport, Transport::Shm { .. });
    if over_zmq && !daemon.counters.wait_until(Duration::from_secs(10), |c| c.subscriptions >= 1) {
        anyhow::bail!("the benchmark's subscriber did not connect to {} within 10 s", daemon.publish_endpoint);
    }

    let bg_stop = Arc::new(AtomicBool::new(false));
    let bg = bg_training
        .then(|| background_training(bg_stop.clone(), cfg.retrain.nice, cfg.retrain.sched_idle, pin.then_some(1)));

    let load = match daemon.admin_addr {
        Some(a) => Some(crate::admin::load::AdminLoad::start(a, 10.0).context("starting the admin clients")?),
        None => None,
    };
    let data = synthetic_bins(channels, 1000, 3);
    let mut rig = Rig::open(&ctx, &daemon, &cfg, server, outlet, channels)?;
    let start = Instant::now();
    let mut sent = 0u64;
    while start.elapsed().as_secs_f64() < seconds {
        match rate_hz {
            Some(r) => pace_until(start + Duration::from_secs_f64(sent as f64 / r)),
            // As fast as the daemon sustains: at most MAX_IN_FLIGHT bins
            // outstanding, so queues never grow and nothing is dropped.
            None => {
                while sent.saturating_sub(received.load(Ordering::Relaxed)) >= MAX_IN_FLIGHT {
                    std::hint::spin_loop();
                    if start.elapsed().as_secs_f64() >= seconds + 5.0 {
                        break;
                    }
                }
            }
        }
        rig.send(sent, monotonic_ns(), data.row((sent % 1000) as usize))?;
        sent += 1;
    }
    let send_secs = start.elapsed().as_secs_f64();
    let deadline = Instant::now() + Duration::from_secs(10);
    while received.load(Ordering::Relaxed) < sent && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let done_secs = start.elapsed().as_secs_f64();
    let admin_report = load.map(|l| l.stop());
    bg_stop.store(true, Ordering::Relaxed);
    if let Some(h) = bg {
        let _ = h.join();
    }
    let summary = daemon.shutdown();
    stop_sub.store(true, Ordering::Relaxed);
    let (h, imputed) = subscriber.join().map_err(|_| anyhow::anyhow!("subscriber panicked"))??;
    let got = received.load(Ordering::Relaxed);
    let _ = std::fs::remove_dir_all(&dir);
    let throughput = if rate_hz.is_some() { got as f64 / send_secs } else { got as f64 / done_secs.max(send_secs) };
    let mut r = result(channels, rate_hz, &h, sent, got, imputed, throughput, "end_to_end", bg_training);
    r.transport = transport.label();
    r.admin = admin_report;
    r.daemon_dropped = summary.counters.dropped_total();
    r.record_lost = summary.counters.record_lost;
    r.daemon_bins_in = summary.counters.bins_in;
    r.daemon_p50_us = summary.latency.p50_us;
    r.daemon_p99_us = summary.latency.p99_us;
    r.daemon_p999_us = summary.latency.p999_us;
    r.lost = sent.saturating_sub(summary.counters.bins_in).max(sent.saturating_sub(got.saturating_sub(imputed)));
    Ok(r)
}

/// Where the bench subscriber reads decoded frames.
enum Outputs {
    /// The daemon's protocol-v1 PUB socket.
    Zmq(String),
    /// The daemon's shm output service (sleeping on its event between frames).
    Shm(String),
}

/// Per decoded frame: latency of observed bins (send `t_ns` → now), count of imputed ones.
struct Tally {
    h: Histogram<u64>,
    imputed: u64,
    received: Arc<AtomicU64>,
}

impl Tally {
    fn frame(&mut self, body: &[u8]) {
        let now = monotonic_ns();
        if let Ok(f) = Frame::parse(body, 1 << 20) {
            if f.header.flags & FLAG_IMPUTED != 0 {
                self.imputed += 1;
            } else {
                self.h.saturating_record(now.saturating_sub(f.header.t_ns).max(1));
            }
            self.received.fetch_add(1, Ordering::Relaxed);
        }
    }
}

type SubscriberHandle = std::thread::JoinHandle<anyhow::Result<(Histogram<u64>, u64)>>;

fn spawn_subscriber(
    ctx: &zmq::Context,
    outputs: Outputs,
    stop: Arc<AtomicBool>,
    received: Arc<AtomicU64>,
) -> anyhow::Result<SubscriberHandle> {
    let mut tally = Tally { h: latency_histogram(), imputed: 0, received };
    let sub = match &outputs {
        Outputs::Zmq(ep) => {
            let sub = ctx.socket(zmq::SUB)?;
            sub.set_rcvhwm(0)?;
            sub.connect(ep)?;
            sub.set_subscribe(b"")?;
            sub.set_rcvtimeo(100)?;
            Some(sub)
        }
        Outputs::Shm(_) => None,
    };
    Ok(std::thread::Builder::new().name("bench-subscriber".into()).spawn(move || {
        match outputs {
            Outputs::Zmq(_) => {
                let sub = sub.expect("invariant: ZeroMQ outputs have a socket");
                let mut topic = zmq::Message::new();
                let mut body = zmq::Message::new();
                loop {
                    if sub.recv(&mut topic, 0).is_err() {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        continue;
                    }
                    if sub.recv(&mut body, 0).is_ok() {
                        tally.frame(&body);
                    }
                }
            }
            Outputs::Shm(service) => {
                use crate::ingest::shm::{node, service_name};
                let node = node("alternator-bench-subscriber")?;
                let name = service_name(&service)?;
                let sub = node
                    .service_builder(&name)
                    .publish_subscribe::<[u8]>()
                    .open()
                    .map_err(|e| anyhow::anyhow!("opening shm service {service}: {e:?}"))?
                    .subscriber_builder()
                    .create()
                    .map_err(|e| anyhow::anyhow!("shm subscriber on {service}: {e:?}"))?;
                let listener = node
                    .service_builder(&name)
                    .event()
                    .open()
                    .map_err(|e| anyhow::anyhow!("opening shm event {service}: {e:?}"))?
                    .listener_builder()
                    .create()
                    .map_err(|e| anyhow::anyhow!("shm listener on {service}: {e:?}"))?;
                while !stop.load(Ordering::Relaxed) {
                    while let Some(sample) = sub.receive().map_err(|e| anyhow::anyhow!("shm receive: {e:?}"))? {
                        tally.frame(sample.payload());
                    }
                    listener
                        .timed_wait(|_| {}, Duration::from_millis(100))
                        .map_err(|e| anyhow::anyhow!("shm listener wait: {e:?}"))?;
                }
            }
        }
        Ok((tally.h, tally.imputed))
    })?)
}

fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let d = std::env::temp_dir().join(format!("alternator-bench-{}-{}", std::process::id(), monotonic_ns()));
    std::fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
    Ok(d)
}

/// An SVG of the latency distributions (complementary CDF, log–log).
pub fn plot_svg(results: &[BenchResult]) -> String {
    use std::fmt::Write as _;
    let (w, h, m) = (800.0, 480.0, 60.0);
    let mut s = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="11">"#
    );
    let _ = write!(s, r#"<text x="{m}" y="20">Latency distribution: fraction of bins slower than x (log–log)</text>"#);
    let xmin = 1f64.log10();
    let xmax = 100_000f64.log10();
    let xpos = |us: f64| m + (us.max(1.0).log10() - xmin) / (xmax - xmin) * (w - 2.0 * m);
    let ypos = |p: f64| 30.0 + (-(p.max(1e-5)).log10()) / 5.0 * (h - 30.0 - m);
    for k in 0..=5 {
        let p = 10f64.powi(-k);
        let _ = write!(
            s,
            r##"<line x1="{m}" y1="{0}" x2="{1}" y2="{0}" stroke="#eee"/><text x="5" y="{2}">{3}</text>"##,
            ypos(p),
            w - m,
            ypos(p) + 4.0,
            if k == 0 { "1".to_string() } else { format!("1e-{k}") }
        );
    }
    for us in [1.0, 10.0, 100.0, 1000.0, 10000.0, 100000.0] {
        let _ = write!(
            s,
            r##"<line x1="{0}" y1="30" x2="{0}" y2="{1}" stroke="#ddd"/><text x="{0}" y="{2}">{us} µs</text>"##,
            xpos(us),
            h - m,
            h - m + 15.0
        );
    }
    let colours = [
        "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
        "#000000", "#aa0000",
    ];
    for (i, r) in results.iter().enumerate() {
        let Some(hist) = &r.histogram else { continue };
        if hist.is_empty() {
            continue;
        }
        let mut pts = Vec::new();
        for q in (0..=500).map(|k| 1.0 - 10f64.powf(-(k as f64) / 100.0)) {
            let us = hist.value_at_quantile(q.min(0.99999)) as f64 / 1e3;
            pts.push(format!("{:.1},{:.1}", xpos(us), ypos(1.0 - q)));
        }
        let c = colours[i % colours.len()];
        let label = format!("{} ch @ {}", r.channels, r.rate_hz.map(|x| format!("{x:.0} Hz")).unwrap_or("max".into()));
        let _ = write!(
            s,
            r#"<polyline fill="none" stroke="{c}" points="{}"/><text x="{}" y="{}" fill="{c}">{label}</text>"#,
            pts.join(" "),
            m + 10.0,
            h - m - 10.0 - 14.0 * (results.len() - 1 - i) as f64
        );
    }
    s.push_str("</svg>\n");
    s
}
