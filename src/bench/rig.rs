//! The rig side of an end-to-end run: how bins reach the daemon over each
//! input transport, and the servers or outlets a transport needs.

use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;

use crate::clock::monotonic_ns;
use crate::daemon::config::ServeConfig;
use crate::daemon::Daemon;
use crate::replay::Publisher;
use crate::wire::Dtype;

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
    /// Protocol-v1 frames over ZeroMQ TCP loopback to a do-nothing
    /// forwarder in place of the daemon (`forwarder.rs`): the transport alone.
    Forwarder,
}

impl Transport {
    pub fn from_name(s: &str) -> Option<Self> {
        match s {
            "protocol-v1" => Some(Self::ProtocolV1),
            "lsl" => Some(Self::Lsl),
            "redis" => Some(Self::Redis),
            "shm" => Some(Self::Shm { spin_us: 0 }),
            "forwarder" => Some(Self::Forwarder),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::ProtocolV1 => "protocol-v1",
            Self::Lsl => "lsl",
            Self::Redis => "redis",
            Self::Shm { .. } => "shm",
            Self::Forwarder => "forwarder",
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
pub(super) struct RedisServer {
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
pub(super) enum Rig {
    Zmq(Publisher),
    Lsl(crate::ingest::lsl::ffi::Outlet),
    Redis { conn: ::redis::Connection, cmd: Vec<u8>, samples: Vec<u8>, _server: RedisServer },
    Shm(Box<crate::ingest::shm::ShmRig>),
}

impl Rig {
    /// Input config for `transport` (and the server it needs).
    pub(super) fn configure(transport: Transport, cfg: &mut ServeConfig) -> anyhow::Result<Option<RedisServer>> {
        match transport {
            Transport::ProtocolV1 | Transport::Forwarder => Ok(None),
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
    pub(super) fn open(
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
        Self::zmq(ctx, &daemon.ingest_endpoint)
    }

    /// A protocol-v1 publisher connected to `endpoint`, once its subscriber is there.
    pub(super) fn zmq(ctx: &zmq::Context, endpoint: &str) -> anyhow::Result<Rig> {
        let p = Publisher::new(ctx, endpoint, false)?;
        p.wait_for_subscriber(Duration::from_secs(5))?;
        Ok(Rig::Zmq(p))
    }

    /// An LSL outlet for the run (before the daemon starts).
    pub(super) fn lsl_outlet(cfg: &ServeConfig, channels: usize) -> anyhow::Result<crate::ingest::lsl::ffi::Outlet> {
        let lib = crate::ingest::lsl::ffi::Lib::load(cfg.ingest.lsl.library.as_deref())?;
        let name = &cfg.ingest.lsl.name;
        let info = lib.stream_info(name, "SpikeCounts", channels, 0.0, &format!("{name}-uid"))?;
        Ok(info.outlet(60)?)
    }

    /// Sends bin `seq` stamped `t_ns` (this process's monotonic clock).
    pub(super) fn send(&mut self, seq: u64, t_ns: u64, row: &[f32]) -> anyhow::Result<()> {
        match self {
            Rig::Zmq(p) => p.send("spikes", Dtype::F32, seq, t_ns, row.len() as u32, row)?,
            Rig::Lsl(o) => anyhow::ensure!(o.push(row, t_ns as f64 * 1e-9), "LSL push refused"),
            Rig::Shm(r) => {
                let h = crate::wire::Header::for_values(Dtype::F32, seq, t_ns, row.len() as u32, row.len());
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
