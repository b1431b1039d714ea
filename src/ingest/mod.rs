//! Input sources: where timesteps come from. The decode loop knows only the
//! two traits here; each transport (protocol v1 over ZeroMQ, the Open Ephys
//! ZMQ Interface, Lab Streaming Layer, Redis Streams, protocol v1 over
//! iceoryx2 shared memory) is one [`Source`] in
//! its own module, with its own config section.
//!
//! A source turns whatever its transport carries into timesteps
//! `(seq, t_ns, values)` (and behaviour bins when it has them) and hands them
//! to a [`Sink`] — the decode engine — which owns every sequence rule (gap
//! imputation, duplicates, restarts) once for all sources. A source only says
//! which bin index a timestep has, and when its stream restarted.
//!
//! Invariants: [`Source::poll`] never waits longer than its timeout (the loop
//! needs to wake for housekeeping), never allocates per timestep, and counts
//! every input it rejects under a [`DropReason`] through the sink; sources
//! run on the decode thread, so anything that must block (heartbeats) lives
//! on a thread of the source's own.

pub mod lsl;
pub mod openephys;
pub mod protocol_v1;
pub mod redis;
pub mod shm;

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::wire::DropReason;

/// Where a voltage source leaves the front end's settings and thresholds
/// for the recorder (written once per calibration, read when a file closes).
pub type FrontendSlot = std::sync::Arc<std::sync::Mutex<Option<crate::frontend::FrontendSnapshot>>>;

/// Largest behaviour width a source may deliver (and a record batch holds).
pub const BEHAVIOR_MAX_DIMS: usize = 64;

pub use lsl::LslSection;
pub use openephys::OpenEphysSection;
pub use protocol_v1::ProtocolV1Section;
pub use redis::RedisSection;
pub use shm::ShmSection;

/// The decode engine as a source sees it.
pub trait Sink {
    /// Channels every timestep must have (the model's input width).
    fn channels(&self) -> usize;
    /// One observed timestep; `values.len() == channels()`.
    fn timestep(&mut self, seq: u64, t_ns: u64, values: &[f32], recv_at: Instant);
    /// A timestep the source knows it cannot deliver (decoded as imputed).
    fn missing(&mut self, seq: u64, t_ns: u64, recv_at: Instant);
    /// One true-behaviour bin for `seq` (recorded, never decoded).
    fn behavior(&mut self, seq: u64, values: &[f32], recv_at: Instant);
    /// The rig restarted: the next timestep begins a new stream, whatever its seq.
    fn restart(&mut self);
    /// A digital (TTL) event from the rig, recorded with the bin it fell in.
    fn event(&mut self, ev: RigEvent);
    /// Counts one rejected input.
    fn drop_one(&mut self, reason: DropReason);
    /// Opaque bytes the outputs of the next timestep carry (a Redis
    /// entry's `sync` field); a source that calls this calls it before
    /// every timestep.
    fn tag(&mut self, _tag: &[u8]) {}
}

/// A TTL line change reported by the acquisition system.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RigEvent {
    /// Bin index (seq) the event's sample falls in.
    pub seq: u64,
    /// Acquisition sample number of the event.
    pub sample_num: u64,
    /// TTL line.
    pub line: u8,
    /// New state (0 or 1).
    pub state: u8,
}

/// A transport delivering timesteps to the engine.
pub trait Source: Send {
    /// Waits at most `timeout` for input and delivers what arrived (at least
    /// one message's worth when it returns `Ok(true)`).
    fn poll(&mut self, timeout: Duration, sink: &mut dyn Sink) -> Result<bool, SourceError>;
    /// Housekeeping between messages (stalled-channel checks, heartbeats).
    fn tick(&mut self, _now: Instant, _sink: &mut dyn Sink) {}
    /// Where the source reads from, for logs and status.
    fn endpoint(&self) -> &str;
}

/// A source that could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error(transparent)]
    Socket(#[from] crate::transport::SocketError),
    #[error("{0}")]
    Config(String),
    #[error("cannot start the source's thread: {0}")]
    Thread(std::io::Error),
    #[error(transparent)]
    Lsl(#[from] lsl::LslError),
    #[error("ingest.shm: {0}")]
    Shm(#[from] shm::ShmError),
}

/// Opens the configured source (sockets bound or connected, threads started).
pub fn open(
    cfg: &IngestSection,
    frontend: &crate::frontend::FrontendConfig,
    ctx: &zmq::Context,
    channels: usize,
    bin_seconds: f64,
    frontend_slot: FrontendSlot,
) -> Result<Box<dyn Source>, IngestError> {
    match cfg.kind() {
        Some(IngestKind::ProtocolV1) => {
            Ok(Box::new(protocol_v1::ProtocolV1Source::open(&cfg.protocol_v1, ctx, channels)?))
        }
        Some(IngestKind::OpenEphys) => Ok(Box::new(openephys::OpenEphysSource::open(
            &cfg.openephys,
            frontend,
            ctx,
            channels,
            bin_seconds,
            frontend_slot,
        )?)),
        Some(IngestKind::Redis) => Ok(Box::new(redis::RedisSource::open(&cfg.redis, channels)?)),
        Some(IngestKind::Lsl) => {
            Ok(Box::new(lsl::LslSource::open(&cfg.lsl, frontend, channels, bin_seconds, frontend_slot)?))
        }
        Some(IngestKind::Shm) => Ok(Box::new(shm::ShmSource::open(&cfg.shm, channels)?)),
        None => Err(IngestError::Config(cfg.problems().join("; "))),
    }
}

/// A source that cannot continue.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("ingest socket {endpoint} failed: {source}")]
    Socket { endpoint: String, source: zmq::Error },
    #[error("shared-memory ingest {service} failed: {message}")]
    Shm { service: String, message: String },
}

/// The source kinds this build knows, as written in `ingest.kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IngestKind {
    ProtocolV1,
    OpenEphys,
    Lsl,
    Redis,
    Shm,
}

impl IngestKind {
    /// Every accepted `ingest.kind` value.
    pub const NAMES: [&'static str; 5] = ["protocol-v1", "openephys", "lsl", "redis", "shm"];

    /// Parses a config value.
    pub fn from_name(s: &str) -> Option<Self> {
        match s {
            "protocol-v1" => Some(Self::ProtocolV1),
            "openephys" => Some(Self::OpenEphys),
            "lsl" => Some(Self::Lsl),
            "redis" => Some(Self::Redis),
            "shm" => Some(Self::Shm),
            _ => None,
        }
    }
}

/// `[ingest]`: which source, the rules common to all, a section per kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestSection {
    /// `protocol-v1` (default), `openephys`, `lsl`, `redis` or `shm`.
    pub kind: String,
    /// Largest seq gap that is imputed; larger gaps reset the state.
    pub max_gap_bins: u64,
    /// Protocol v1 frames over a ZeroMQ SUB socket.
    pub protocol_v1: ProtocolV1Section,
    /// The Open Ephys GUI's ZMQ Interface plugin.
    pub openephys: OpenEphysSection,
    /// A Lab Streaming Layer stream (liblsl loaded at run time).
    pub lsl: LslSection,
    /// A Redis stream in BRAND's entry layout.
    pub redis: RedisSection,
    /// Protocol-v1 frames over iceoryx2 shared memory.
    pub shm: ShmSection,
}

impl Default for IngestSection {
    fn default() -> Self {
        Self {
            kind: "protocol-v1".into(),
            max_gap_bins: 50,
            protocol_v1: ProtocolV1Section::default(),
            openephys: OpenEphysSection::default(),
            lsl: LslSection::default(),
            redis: RedisSection::default(),
            shm: ShmSection::default(),
        }
    }
}

impl IngestSection {
    /// The configured kind (validated by [`Self::problems`]).
    pub fn kind(&self) -> Option<IngestKind> {
        IngestKind::from_name(&self.kind)
    }

    /// The address the configured source reads from.
    pub fn endpoint(&self) -> String {
        match self.kind() {
            Some(IngestKind::OpenEphys) => self.openephys.endpoint.clone(),
            Some(IngestKind::Redis) => self.redis.url.clone(),
            Some(IngestKind::Lsl) => self.lsl.address(),
            Some(IngestKind::Shm) => format!("shm:{}", self.shm.service),
            _ => self.protocol_v1.endpoint.clone(),
        }
    }

    /// Points the configured source at another address (`--ingest`):
    /// `redis://HOST:PORT` for Redis, `lsl:name=NAME` (or `type=`,
    /// `source_id=`, joined by `;`) for LSL, `shm:SERVICE` for shared memory
    /// (which also selects `kind = "shm"`), a ZeroMQ endpoint otherwise.
    pub fn set_endpoint(&mut self, ep: &str) {
        if ep.starts_with("shm:") {
            self.kind = "shm".into();
        }
        match self.kind() {
            Some(IngestKind::Shm) => self.shm.set_address(ep),
            Some(IngestKind::OpenEphys) => self.openephys.endpoint = ep.to_string(),
            Some(IngestKind::Redis) => self.redis.url = ep.to_string(),
            Some(IngestKind::Lsl) => self.lsl.set_address(ep),
            _ => self.protocol_v1.endpoint = ep.to_string(),
        }
    }

    /// ZeroMQ endpoints the source binds or connects to (for clash checks).
    pub fn endpoints(&self) -> Vec<String> {
        match self.kind() {
            Some(IngestKind::OpenEphys) => {
                let mut v = vec![self.openephys.endpoint.clone()];
                v.extend(self.openephys.heartbeat_endpoint());
                v
            }
            Some(IngestKind::Redis) | Some(IngestKind::Lsl) | Some(IngestKind::Shm) => Vec::new(),
            _ => vec![self.protocol_v1.endpoint.clone()],
        }
    }

    /// Every problem, each with its dotted field path.
    pub fn problems(&self) -> Vec<String> {
        match self.kind() {
            None => vec![format!(
                "ingest.kind: {:?} is not a source kind; expected one of {}",
                self.kind,
                IngestKind::NAMES.join(", ")
            )],
            Some(IngestKind::ProtocolV1) => self.protocol_v1.problems("ingest.protocol_v1."),
            Some(IngestKind::OpenEphys) => self.openephys.problems("ingest.openephys."),
            Some(IngestKind::Lsl) => self.lsl.problems("ingest.lsl."),
            Some(IngestKind::Redis) => self.redis.problems("ingest.redis."),
            Some(IngestKind::Shm) => self.shm.problems("ingest.shm."),
        }
    }
}

/// Checks that `ep` looks like a ZeroMQ endpoint.
pub fn check_endpoint(errs: &mut Vec<String>, field: &str, ep: &str) {
    let ok = ["tcp://", "ipc://", "inproc://"].iter().any(|p| ep.starts_with(p) && ep.len() > p.len());
    if !ok {
        errs.push(format!(
            "{field}: {ep:?} is not a ZeroMQ endpoint; expected tcp://HOST:PORT, ipc://PATH or inproc://NAME"
        ));
    }
}
