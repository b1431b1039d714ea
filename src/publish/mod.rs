//! Output sinks: where decoded timesteps go. Protocol v1 over a ZeroMQ
//! XPUB socket (a PUB socket that also reports subscriptions, so a client
//! can tell when it is connected instead of sleeping) is the publisher
//! every daemon has; further sinks ([`OutputSink`]:
//! an LSL outlet, a Redis stream, an iceoryx2 shared-memory service) sit beside it and are fed by the same
//! engine with the same outputs.
//!
//! Invariant: [`ZmqPublisher::send`] never blocks and never allocates (the
//! encode buffer is reused); at its high-water mark PUB drops, which a
//! subscriber sees as a seq gap. Every [`OutputSink`] keeps the same rule:
//! a sink that cannot deliver counts the loss and returns.

pub mod lsl;
pub mod redis;
pub mod shm;

use std::time::Instant;

use serde::{Deserialize, Serialize};

pub use lsl::LslOutletSection;
pub use redis::RedisOutputSection;
pub use shm::ShmOutputSection;

use crate::ingest::check_endpoint;
use crate::transport::{open_socket, Access, SocketError};
use crate::wire::{encode_f32, HEADER_LEN};

/// `[publish]`: the ZeroMQ PUB socket for decoded behaviour.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PublishSection {
    /// ZeroMQ endpoint, e.g. `tcp://127.0.0.1:5556`.
    pub endpoint: String,
    /// Bind (clients connect to us) or connect.
    pub bind: bool,
    /// Topic of decoded frames.
    pub topic: String,
    /// Send high-water mark (messages); PUB drops beyond it.
    pub send_hwm_messages: i32,
    /// Allow binding beyond loopback (other machines can connect).
    pub allow_remote: bool,
    /// Only these addresses may connect (empty = anyone who can reach the endpoint).
    pub allow_ips: Vec<String>,
    /// Decoded behaviour as an LSL stream as well.
    pub lsl: LslOutletSection,
    /// Decoded behaviour as a Redis stream as well (a BRAND node's output).
    pub redis: RedisOutputSection,
    /// Decoded behaviour on an iceoryx2 shared-memory service as well.
    pub shm: ShmOutputSection,
}

/// ZAP domain of the publish socket (its `allow_ips`).
pub const ZAP_DOMAIN: &str = "publish";

impl Default for PublishSection {
    fn default() -> Self {
        Self {
            endpoint: "tcp://127.0.0.1:5556".into(),
            bind: true,
            topic: "decoded".into(),
            send_hwm_messages: 100_000,
            allow_remote: false,
            allow_ips: Vec::new(),
            lsl: LslOutletSection::default(),
            redis: RedisOutputSection::default(),
            shm: ShmOutputSection::default(),
        }
    }
}

impl PublishSection {
    /// Every problem, each with its dotted field path.
    pub fn problems(&self) -> Vec<String> {
        let mut e = Vec::new();
        check_endpoint(&mut e, "publish.endpoint", &self.endpoint);
        if self.topic.is_empty() {
            e.push("publish.topic: must not be empty".into());
        }
        e.extend(self.access().problems());
        if self.send_hwm_messages < 0 {
            e.push(format!("publish.send_hwm_messages: {} must be >= 0", self.send_hwm_messages));
        }
        e.extend(self.lsl.problems("publish.lsl."));
        e
    }
}

impl PublishSection {
    /// Who may connect (for validation and the ZAP allowlist).
    pub fn access(&self) -> Access<'_> {
        Access {
            prefix: "publish.",
            endpoint: &self.endpoint,
            bind: self.bind,
            allow_remote: self.allow_remote,
            allow_ips: &self.allow_ips,
        }
    }
}

/// One decoded timestep as every output sink sees it.
#[derive(Debug, Clone, Copy)]
pub struct Decoded<'a> {
    pub seq: u64,
    /// The input's time (the source's clock).
    pub t_ns: u64,
    /// Protocol-v1 flag bits (imputed, reset).
    pub flags: u16,
    pub values: &'a [f32],
    /// Bytes the source attached to the input (a Redis entry's `sync`); may be empty.
    pub tag: &'a [u8],
}

/// An output beside the ZeroMQ publisher, run on the decode thread.
pub trait OutputSink: Send {
    /// Delivers one output without blocking for long; false if it was lost.
    fn send(&mut self, d: &Decoded<'_>) -> bool;
    /// Housekeeping between messages (reconnection).
    fn tick(&mut self, _now: Instant) {}
    /// Short name for logs.
    fn name(&self) -> &'static str;
}

/// An output sink that could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("publish.redis: cannot reach Redis at {url}: {source}")]
    Redis { url: String, source: ::redis::RedisError },
    #[error("publish.lsl: {0}")]
    Lsl(#[from] crate::ingest::lsl::ffi::FfiError),
    #[error("publish.shm: {0}")]
    Shm(#[from] crate::ingest::shm::ShmError),
}

/// Opens the configured sinks beside the ZeroMQ publisher.
pub fn open_outputs(
    cfg: &PublishSection,
    ingest: &crate::ingest::IngestSection,
    out_dim: usize,
    bin_seconds: f64,
) -> Result<Vec<Box<dyn OutputSink>>, PublishError> {
    let mut v: Vec<Box<dyn OutputSink>> = Vec::new();
    let from_lsl = ingest.kind() == Some(crate::ingest::IngestKind::Lsl);
    if cfg.lsl.enabled {
        let lib = ingest.lsl.library.as_deref();
        v.push(Box::new(lsl::LslOutput::open(&cfg.lsl, lib, out_dim, bin_seconds, from_lsl)?));
    }
    if cfg.redis.enabled {
        let out = redis::RedisOutput::open(&cfg.redis, &ingest.redis, out_dim)
            .map_err(|source| PublishError::Redis { url: cfg.redis.target(&ingest.redis).url, source })?;
        v.push(Box::new(out));
    }
    if cfg.shm.enabled {
        v.push(Box::new(shm::ShmOutput::open(&cfg.shm, out_dim)?));
    }
    Ok(v)
}

/// Protocol-v1 frames on an XPUB socket.
pub struct ZmqPublisher {
    sock: zmq::Socket,
    topic: Vec<u8>,
    enc: Vec<u8>,
    endpoint: String,
    /// Subscriptions are looked for at most this often (not per bin).
    next_subscription_check: Instant,
}

/// How often [`ZmqPublisher::take_subscriptions`] looks at the socket.
const SUBSCRIPTION_CHECK: std::time::Duration = std::time::Duration::from_millis(5);

impl ZmqPublisher {
    /// Binds or connects the PUB socket for outputs of `out_dim` values.
    pub fn open(cfg: &PublishSection, ctx: &zmq::Context, out_dim: usize) -> Result<Self, SocketError> {
        let (sock, endpoint) = open_socket(ctx, zmq::XPUB, &cfg.endpoint, cfg.bind, |s| {
            if !cfg.allow_ips.is_empty() {
                s.set_zap_domain(ZAP_DOMAIN)?;
            }
            // Every subscribe message, not only the first per topic.
            s.set_xpub_verbose(true)?;
            s.set_sndhwm(cfg.send_hwm_messages)
        })?;
        Ok(Self {
            sock,
            topic: cfg.topic.as_bytes().to_vec(),
            enc: Vec::with_capacity(HEADER_LEN + 4 * out_dim + 64),
            endpoint,
            next_subscription_check: Instant::now(),
        })
    }

    /// The endpoint actually bound or connected.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Takes the subscription messages queued since the last look (never
    /// waits; looks at most every 5 ms) and returns how many were
    /// subscribes (a client connected and subscribed; its next output will
    /// reach it).
    pub fn take_subscriptions(&mut self, now: Instant) -> u64 {
        if now < self.next_subscription_check {
            return 0;
        }
        self.next_subscription_check = now + SUBSCRIPTION_CHECK;
        let mut subscribes = 0;
        let mut msg = [0u8; 256];
        while let Ok(n) = self.sock.recv_into(&mut msg, zmq::DONTWAIT) {
            subscribes += u64::from(n > 0 && msg[0] == 1);
        }
        subscribes
    }

    /// Publishes one output; false if the socket refused it.
    #[inline]
    pub fn send(&mut self, seq: u64, t_ns: u64, flags: u16, values: &[f32]) -> bool {
        encode_f32(&mut self.enc, seq, t_ns, flags, values.len() as u32, values);
        self.sock.send(&self.topic[..], zmq::SNDMORE).is_ok() && self.sock.send(&self.enc[..], 0).is_ok()
    }
}
