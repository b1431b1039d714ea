//! The Open Ephys GUI's ZMQ Interface plugin as a source (plugin v1.0.0
//! message format; docs/OPENEPHYS.md has the format and the GUI-side steps).
//!
//! The plugin binds a PUB socket on its data port and a REP socket on the
//! next port. The daemon connects a SUB (all messages) to the first and
//! sends heartbeats to the second from a thread of its own ([`heartbeat`]).
//! Messages are multipart: an envelope (`DATA\0` or `EVENT\0`), a JSON
//! header ([`header`]), and a payload when `data_size > 0`.
//!
//! Time comes from the acquisition sample number, never the wall clock: bin
//! k covers samples `[k·S, (k+1)·S)` and has seq k, so a hole in acquisition
//! becomes imputed bins and a sample number that goes back is a restart.
//! `voltage` mode aligns per-channel blocks and bins threshold crossings
//! ([`align`], `crate::frontend`); `spikes` mode counts the GUI's spike
//! events per electrode ([`spikes`]). TTL events are recorded with their bin.
//!
//! Bad input (bad JSON, missing fields, size mismatches, unknown envelopes,
//! out-of-order blocks, rate changes, non-finite samples, stalled channels)
//! is counted by reason through the sink; decoding continues.

pub mod align;
pub mod header;
pub mod heartbeat;
pub mod spikes;

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tracing::{error, warn};

use super::{check_endpoint, FrontendSlot, IngestError, RigEvent, Sink, Source, SourceError};
use crate::frontend::FrontendConfig;
use crate::transport::open_socket;
use crate::wire::DropReason;
use align::{Aligner, BlockOutcome};
use header::{Header, HeaderProblem};
use heartbeat::Heartbeat;
use spikes::SpikeBinner;

/// The plugin's event `type` for TTL lines.
pub const TTL_EVENT_TYPE: i64 = 3;

/// Channel numbers above this are refused (`channel_out_of_range`).
pub const MAX_CHANNEL_NUM: i64 = 16_383;

/// A selected channel: by number in the stream or by name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ChannelRef {
    Number(u32),
    Name(String),
}

/// `[ingest.openephys]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OpenEphysSection {
    /// The plugin's data port (it binds; we connect). Heartbeats go to port + 1.
    pub endpoint: String,
    /// Send heartbeats (the plugin lists clients that send them).
    pub heartbeat: bool,
    /// Seconds between heartbeats (the plugin forgets a client after 5 s).
    pub heartbeat_interval_s: f64,
    /// Client id sent with heartbeats; empty = one generated at start.
    pub uuid: String,
    /// Stream name to decode; empty = the first stream seen.
    pub stream: String,
    /// Channels feeding the model, in model order (numbers or names);
    /// empty = channels 0..C-1 (voltage mode only).
    pub channels: Vec<ChannelRef>,
    /// `voltage` (continuous data → front end) or `spikes` (spike events per electrode).
    pub mode: String,
    /// A channel behind the others for longer than this has its bins imputed (ms).
    pub stall_ms: u64,
    /// Raw samples kept per channel for aligning channels (seconds).
    pub buffer_s: f64,
    /// Spikes mode: the stream's sample rate (spike events do not carry it).
    pub spike_sample_rate_hz: f64,
    /// Spikes mode: a bin closes this long after its end, for late events (ms).
    pub spike_hold_ms: f64,
    /// Receive high-water mark (messages).
    pub receive_hwm_messages: i32,
}

impl Default for OpenEphysSection {
    fn default() -> Self {
        Self {
            endpoint: "tcp://127.0.0.1:5556".into(),
            heartbeat: true,
            heartbeat_interval_s: 2.0,
            uuid: String::new(),
            stream: String::new(),
            channels: Vec::new(),
            mode: "voltage".into(),
            stall_ms: 100,
            buffer_s: 2.0,
            spike_sample_rate_hz: 30_000.0,
            spike_hold_ms: 100.0,
            receive_hwm_messages: 1_000_000,
        }
    }
}

impl OpenEphysSection {
    /// The plugin's REP endpoint: the data endpoint's port + 1.
    pub fn heartbeat_endpoint(&self) -> Option<String> {
        let (head, port) = self.endpoint.rsplit_once(':')?;
        let port: u16 = port.parse().ok()?;
        Some(format!("{head}:{}", port.checked_add(1)?))
    }

    /// Every problem, each with its dotted field path.
    pub fn problems(&self, p: &str) -> Vec<String> {
        let mut e = Vec::new();
        check_endpoint(&mut e, &format!("{p}endpoint"), &self.endpoint);
        if self.heartbeat && self.heartbeat_endpoint().is_none() {
            e.push(format!(
                "{p}endpoint: {:?} has no numeric port; expected tcp://HOST:PORT (heartbeats go to PORT + 1)",
                self.endpoint
            ));
        }
        if !(0.1..=4.5).contains(&self.heartbeat_interval_s) {
            e.push(format!(
                "{p}heartbeat_interval_s: {} must be in [0.1, 4.5] (the plugin forgets clients after 5 s)",
                self.heartbeat_interval_s
            ));
        }
        if self.mode != "voltage" && self.mode != "spikes" {
            e.push(format!("{p}mode: {:?} is not a mode; expected \"voltage\" or \"spikes\"", self.mode));
        }
        if self.mode == "spikes" && !self.channels.iter().all(|c| matches!(c, ChannelRef::Name(_))) {
            e.push(format!("{p}channels: spikes mode selects electrodes by name; expected a list of names"));
        }
        if self.mode == "spikes" && self.channels.is_empty() {
            e.push(format!("{p}channels: spikes mode needs the electrode names, in model order"));
        }
        if !(self.buffer_s >= 0.1 && self.buffer_s <= 60.0) {
            e.push(format!("{p}buffer_s: {} must be in [0.1, 60]", self.buffer_s));
        }
        if self.stall_ms == 0 || self.stall_ms as f64 >= self.buffer_s * 1e3 {
            e.push(format!("{p}stall_ms: {} must be > 0 and shorter than buffer_s", self.stall_ms));
        }
        if !(self.spike_sample_rate_hz > 0.0) || !(self.spike_hold_ms >= 0.0) {
            e.push(format!("{p}spike_sample_rate_hz / spike_hold_ms: must be > 0 / >= 0"));
        }
        e
    }
}

/// Which selected channel a stream channel is, resolved on first sight.
struct ChannelMap {
    wanted: Vec<ChannelRef>,
    channels: usize,
    /// By channel number: -2 unresolved, -1 not selected, else the model index.
    by_num: Vec<i32>,
    seen: Vec<bool>,
}

impl ChannelMap {
    fn new(wanted: &[ChannelRef], channels: usize) -> Self {
        Self {
            wanted: wanted.to_vec(),
            channels,
            by_num: vec![-2; MAX_CHANNEL_NUM as usize + 1],
            seen: vec![false; channels],
        }
    }

    fn lookup(&mut self, num: usize, name: &str) -> Option<usize> {
        if self.by_num[num] == -2 {
            let idx = if self.wanted.is_empty() {
                (num < self.channels).then_some(num)
            } else {
                self.wanted.iter().position(|w| match w {
                    ChannelRef::Number(n) => *n as usize == num,
                    ChannelRef::Name(s) => s == name,
                })
            };
            self.by_num[num] = idx.map(|i| i as i32).unwrap_or(-1);
        }
        let i = usize::try_from(self.by_num[num]).ok()?;
        self.seen[i] = true;
        Some(i)
    }

    fn electrode(&self, name: &str) -> Option<usize> {
        self.wanted.iter().position(|w| matches!(w, ChannelRef::Name(s) if s == name))
    }

    fn missing(&self) -> Vec<String> {
        let name = |i: usize| match self.wanted.get(i) {
            Some(ChannelRef::Number(n)) => n.to_string(),
            Some(ChannelRef::Name(s)) => s.clone(),
            None => i.to_string(),
        };
        (0..self.channels).filter(|&i| !self.seen[i]).map(name).collect()
    }
}

/// Voltage-mode state: created at the first block (which gives the rate).
struct Voltage {
    frontend: FrontendConfig,
    bin_seconds: f64,
    buffer_s: f64,
    aligner: Option<(Aligner, f64)>,
    block: Vec<f32>,
    progress_at: Instant,
    check_at: Option<Instant>,
    channels_checked: bool,
    /// Where the recorder finds the front end's settings.
    slot: FrontendSlot,
    /// The current front end's thresholds are in `slot`.
    published: bool,
    /// Acquisition restarted: the next block sets the sample position.
    restart_pending: bool,
}

enum Mode {
    Voltage(Box<Voltage>),
    Spikes(Box<SpikeBinner>),
}

/// The Open Ephys source.
pub struct OpenEphysSource {
    sub: zmq::Socket,
    endpoint: String,
    parts: [zmq::Message; 4],
    map: ChannelMap,
    stream: String,
    mode: Mode,
    stall: Duration,
    /// Rig time of the newest message (for bins closed between messages).
    last_t_ns: u64,
    /// The newest `message_num` (it goes back when acquisition restarts).
    last_message_num: Option<u64>,
    timeout_ms: i32,
    _heartbeat: Option<Heartbeat>,
}

/// A client id that differs between daemons and runs.
fn generate_uuid() -> String {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("alternator-{:x}-{:x}", std::process::id(), t)
}

impl OpenEphysSource {
    /// Connects to the plugin and starts the heartbeat thread.
    pub fn open(
        cfg: &OpenEphysSection,
        frontend: &FrontendConfig,
        ctx: &zmq::Context,
        channels: usize,
        bin_seconds: f64,
        slot: FrontendSlot,
    ) -> Result<Self, IngestError> {
        if !cfg.channels.is_empty() && cfg.channels.len() != channels {
            return Err(IngestError::Config(format!(
                "ingest.openephys.channels: {} channels selected, but the model takes {channels}",
                cfg.channels.len()
            )));
        }
        let (sub, endpoint) = open_socket(ctx, zmq::SUB, &cfg.endpoint, false, |s| {
            s.set_rcvhwm(cfg.receive_hwm_messages)?;
            s.set_subscribe(b"")
        })?;
        let heartbeat = match (cfg.heartbeat, cfg.heartbeat_endpoint()) {
            (true, Some(ep)) => {
                let uuid = if cfg.uuid.is_empty() { generate_uuid() } else { cfg.uuid.clone() };
                let every = Duration::from_secs_f64(cfg.heartbeat_interval_s);
                Some(Heartbeat::spawn(ctx.clone(), ep, uuid, every).map_err(IngestError::Thread)?)
            }
            _ => None,
        };
        let mode = if cfg.mode == "spikes" {
            let hold = cfg.spike_hold_ms / 1e3;
            Mode::Spikes(Box::new(SpikeBinner::new(channels, cfg.spike_sample_rate_hz, bin_seconds, hold)))
        } else {
            Mode::Voltage(Box::new(Voltage {
                frontend: frontend.clone(),
                bin_seconds,
                buffer_s: cfg.buffer_s,
                aligner: None,
                block: Vec::new(),
                progress_at: Instant::now(),
                check_at: None,
                channels_checked: false,
                slot,
                published: false,
                restart_pending: false,
            }))
        };
        Ok(Self {
            sub,
            endpoint,
            parts: [zmq::Message::new(), zmq::Message::new(), zmq::Message::new(), zmq::Message::new()],
            map: ChannelMap::new(&cfg.channels, channels),
            stream: cfg.stream.clone(),
            mode,
            stall: Duration::from_millis(cfg.stall_ms),
            last_t_ns: 0,
            last_message_num: None,
            timeout_ms: -1,
            _heartbeat: heartbeat,
        })
    }

    /// Heartbeats sent and answered so far.
    pub fn heartbeats(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        self._heartbeat
            .as_ref()
            .map(|h| (h.counters.sent.load(Relaxed), h.counters.answered.load(Relaxed)))
            .unwrap_or((0, 0))
    }

    /// Receives the rest of a message into `parts[1..]`; the number of parts, or None if more than 3.
    fn receive_rest(&mut self) -> Option<usize> {
        let mut n = 1;
        while self.parts[n - 1].get_more() {
            if n == 4 || self.sub.recv(&mut self.parts[n], 0).is_err() {
                while self.parts[3].get_more() && self.sub.recv(&mut self.parts[3], 0).is_ok() {}
                return None;
            }
            n += 1;
        }
        (n <= 3).then_some(n)
    }

    fn on_message(&mut self, sink: &mut dyn Sink, recv_at: Instant) {
        let Some(n) = self.receive_rest() else {
            return sink.drop_one(DropReason::Malformed);
        };
        let envelope: &[u8] = &self.parts[0];
        let is_data = matches!(envelope, b"DATA\0" | b"DATA");
        if !is_data && !matches!(envelope, b"EVENT\0" | b"EVENT") {
            return sink.drop_one(DropReason::UnknownEnvelope);
        }
        if n < 2 {
            return sink.drop_one(DropReason::Malformed);
        }
        let [_, head, payload, _] = &self.parts;
        let payload: &[u8] = if n == 3 { payload } else { &[] };
        let h = match header::parse(head) {
            Ok(h) => h,
            Err(HeaderProblem::BadJson) => return sink.drop_one(DropReason::BadJson),
            Err(HeaderProblem::MissingField) => return sink.drop_one(DropReason::MissingField),
        };
        if let Some(m) = h.message_num {
            if self.last_message_num.is_some_and(|last| m < last) {
                warn!(message_num = m, "Open Ephys message numbers started over: acquisition restarted.");
                restart_stream(&mut self.mode, sink);
            }
            self.last_message_num = Some(m);
        }
        let t_ns = h.timestamp.filter(|t| t.is_finite() && *t >= 0.0).map(|t| (t * 1e6) as u64).unwrap_or(0);
        let ctx = MsgCtx { t_ns, recv_at };
        self.last_t_ns = t_ns;
        match (is_data, h.kind.as_ref()) {
            (true, "data") => on_data(&mut self.mode, &mut self.map, &mut self.stream, &h, payload, ctx, sink),
            (false, "spike") => on_spike(&mut self.mode, &self.map, &h, ctx, sink),
            (false, "event") => on_event(&self.mode, &h, payload, sink),
            _ => sink.drop_one(DropReason::UnknownEnvelope),
        }
    }
}

/// Acquisition restarted: the engine starts a new stream, and the next
/// block or event sets the sample position again (thresholds are kept).
fn restart_stream(mode: &mut Mode, sink: &mut dyn Sink) {
    sink.restart();
    match mode {
        Mode::Voltage(v) => v.restart_pending = true,
        Mode::Spikes(b) => b.restart(),
    }
}

/// Per-message context handed to the handlers.
#[derive(Clone, Copy)]
struct MsgCtx {
    t_ns: u64,
    recv_at: Instant,
}

/// Emits a closed bin: a count row, or None for a bin with missing samples.
fn emit_bin(sink: &mut dyn Sink, ctx: MsgCtx, k: u64, counts: Option<&[f32]>) {
    match counts {
        Some(c) => sink.timestep(k, ctx.t_ns, c, ctx.recv_at),
        None => sink.missing(k, ctx.t_ns, ctx.recv_at),
    }
}

/// True if `name` is the decoded stream (locking onto the first one seen when unset).
fn stream_matches(stream: &mut String, name: &str) -> bool {
    if stream.is_empty() {
        stream.push_str(name);
    }
    stream == name
}

/// Checks a data block's header against its payload; the block's
/// `(channel index, sample_num, samples, rate)`, or the drop reason.
fn check_block(
    h: &Header<'_>,
    payload: &[u8],
    map: &mut ChannelMap,
    stream: &mut String,
) -> Result<Option<(usize, u64, usize, f64)>, DropReason> {
    let ct = h.content.as_ref().ok_or(DropReason::MissingField)?;
    let (Some(channel_num), Some(num_samples), Some(sample_num), Some(rate)) =
        (ct.channel_num, ct.num_samples, ct.sample_num, ct.sample_rate)
    else {
        return Err(DropReason::MissingField);
    };
    if !stream_matches(stream, &ct.stream) {
        return Ok(None);
    }
    if num_samples <= 0 {
        return Err(DropReason::EmptyBlock);
    }
    if h.data_size != Some(payload.len() as u64) {
        return Err(if h.data_size.is_none() { DropReason::MissingField } else { DropReason::SizeMismatch });
    }
    if !payload.len().is_multiple_of(4) {
        return Err(DropReason::BadPayload);
    }
    if payload.len() / 4 != num_samples as usize {
        return Err(DropReason::SizeMismatch);
    }
    if !(0..=MAX_CHANNEL_NUM).contains(&channel_num) {
        return Err(DropReason::ChannelOutOfRange);
    }
    if sample_num < 0 || !(rate > 0.0 && rate.is_finite()) {
        return Err(DropReason::Malformed);
    }
    let Some(c) = map.lookup(channel_num as usize, &ct.channel_name) else {
        return Ok(None);
    };
    Ok(Some((c, sample_num as u64, num_samples as usize, rate)))
}

fn on_data(
    mode: &mut Mode,
    map: &mut ChannelMap,
    stream: &mut String,
    h: &Header<'_>,
    payload: &[u8],
    ctx: MsgCtx,
    sink: &mut dyn Sink,
) {
    let Mode::Voltage(v) = mode else {
        return; // spikes mode: continuous data only moves the clock
    };
    let (c, sample_num, n, rate) = match check_block(h, payload, map, stream) {
        Ok(Some(b)) => b,
        Ok(None) => return,
        Err(reason) => return sink.drop_one(reason),
    };
    if let Err(reason) = v.prepare(rate, sample_num, n, sink) {
        return sink.drop_one(reason);
    }
    if v.block.len() < n {
        v.block.resize(n, 0.0); // grows to the plugin's block size once
    }
    for (o, b) in v.block.iter_mut().zip(payload.chunks_exact(4)) {
        *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    }
    let Some((al, _)) = v.aligner.as_mut() else { return };
    match al.put(c, sample_num, &v.block[..n]) {
        BlockOutcome::OutOfOrder => return sink.drop_one(DropReason::OutOfOrder),
        BlockOutcome::Accepted { non_finite, .. } => {
            if non_finite {
                sink.drop_one(DropReason::NonFinite);
            }
        }
    }
    let before = al.base();
    al.advance(&mut |k, counts| emit_bin(sink, ctx, k, counts));
    if al.base() > before {
        v.progress_at = ctx.recv_at;
    }
    v.publish_settings();
    v.check_channels(map, ctx.recv_at);
}

impl Voltage {
    /// Makes the aligner ready for a block: created at the first block,
    /// rebuilt when the rate changes, restarted when the sample number goes
    /// back, and pushed forward when the block would not fit its buffer.
    fn prepare(&mut self, rate: f64, sample_num: u64, n: usize, sink: &mut dyn Sink) -> Result<(), DropReason> {
        let changed = self.aligner.as_ref().is_some_and(|(_, r)| *r != rate);
        if changed {
            warn!(
                old = self.aligner.as_ref().map(|a| a.1),
                new = rate,
                "Open Ephys sample rate changed; restarting the stream."
            );
            sink.drop_one(DropReason::RateChanged);
            sink.restart();
            self.aligner = None;
        }
        if self.aligner.is_none() {
            let al = Aligner::new(&self.frontend, sink.channels(), rate, self.bin_seconds, self.buffer_s, sample_num)
                .map_err(|e| {
                error!(error = %e, rate, "Cannot set up the front end for this stream.");
                DropReason::Malformed
            })?;
            self.aligner = Some((al, rate));
            self.progress_at = Instant::now();
            self.published = false;
        }
        let Some((al, _)) = self.aligner.as_mut() else { return Ok(()) };
        if n as u64 > al.capacity() {
            return Err(DropReason::TooLarge);
        }
        let base = al.base();
        if std::mem::take(&mut self.restart_pending) {
            al.restart(sample_num);
        } else if sample_num + al.capacity() < base {
            // Far behind what every channel delivered: a restart whose message numbers we missed.
            warn!(sample_num, expected = base, "Open Ephys sample numbers went far back; treating it as a restart.");
            sink.restart();
            al.restart(sample_num);
        }
        let end = sample_num + n as u64;
        if end > al.base() + al.capacity() {
            let lagging = al.force_to(end - al.capacity());
            (0..lagging).for_each(|_| sink.drop_one(DropReason::StalledChannel));
        }
        Ok(())
    }

    /// Hands the front end's settings to the recorder once its thresholds
    /// exist (a lock taken once per calibration, not per bin).
    fn publish_settings(&mut self) {
        let Some((al, _)) = self.aligner.as_ref() else { return };
        if self.published || al.front_end().thresholds().is_none() {
            return;
        }
        if let Ok(mut slot) = self.slot.lock() {
            *slot = Some(al.front_end().snapshot());
        }
        self.published = true;
    }

    /// Once, a second after the first block: name selected channels that never arrived.
    fn check_channels(&mut self, map: &ChannelMap, now: Instant) {
        if self.channels_checked {
            return;
        }
        let at = *self.check_at.get_or_insert(now + Duration::from_secs(1));
        if now >= at {
            let missing = map.missing();
            if !missing.is_empty() {
                error!(?missing, "Selected Open Ephys channels deliver no data; their bins are imputed. Check ingest.openephys.channels and the plugin's channel selection.");
            }
            self.channels_checked = true;
        }
    }

    /// Channels that fell behind for longer than `stall`: their samples up
    /// to the leading channel become missing, so decoding does not stall.
    fn unstall(&mut self, stall: Duration, ctx: MsgCtx, sink: &mut dyn Sink) {
        let now = ctx.recv_at;
        let Some((al, _)) = self.aligner.as_mut() else { return };
        let spb = al.front_end().samples_per_bin();
        if al.lead() < al.base() + spb || now.duration_since(self.progress_at) < stall {
            return;
        }
        let lagging = al.force_to(al.lead());
        (0..lagging).for_each(|_| sink.drop_one(DropReason::StalledChannel));
        al.advance(&mut |k, counts| emit_bin(sink, ctx, k, counts));
        self.progress_at = now;
    }
}

fn on_spike(mode: &mut Mode, map: &ChannelMap, h: &Header<'_>, ctx: MsgCtx, sink: &mut dyn Sink) {
    let Mode::Spikes(b) = mode else {
        return; // voltage mode detects its own spikes
    };
    let Some(sp) = h.spike.as_ref() else {
        return sink.drop_one(DropReason::MissingField);
    };
    if sp.sample_num < 0 {
        return sink.drop_one(DropReason::Malformed);
    }
    let Some(c) = map.electrode(&sp.electrode) else {
        return; // an electrode the model does not use
    };
    if !b.spike(c, sp.sample_num as u64, ctx.recv_at, &mut |k, counts| emit_bin(sink, ctx, k, Some(counts))) {
        sink.drop_one(DropReason::OutOfOrder);
    }
}

fn on_event(mode: &Mode, h: &Header<'_>, payload: &[u8], sink: &mut dyn Sink) {
    let Some(sample_num) = h.content.as_ref().and_then(|c| c.sample_num) else {
        return sink.drop_one(DropReason::MissingField);
    };
    if h.content.as_ref().and_then(|c| c.event_type) != Some(TTL_EVENT_TYPE) {
        return; // other event kinds carry nothing the decoder uses
    }
    if payload.len() < 2 || h.data_size != Some(payload.len() as u64) {
        return sink.drop_one(DropReason::BadPayload);
    }
    if sample_num < 0 {
        return sink.drop_one(DropReason::Malformed);
    }
    let spb = match mode {
        Mode::Voltage(v) => v.aligner.as_ref().map(|(a, _)| a.front_end().samples_per_bin()),
        Mode::Spikes(b) => Some(b.samples_per_bin()),
    };
    let Some(spb) = spb else {
        return; // no data yet: the bin of the event is unknown
    };
    let sample_num = sample_num as u64;
    sink.event(RigEvent { seq: sample_num / spb, sample_num, line: payload[0], state: payload[1] });
}

impl Source for OpenEphysSource {
    fn poll(&mut self, timeout: Duration, sink: &mut dyn Sink) -> Result<bool, SourceError> {
        let flags = if timeout.is_zero() { zmq::DONTWAIT } else { 0 };
        let ms = timeout.as_millis().clamp(1, i32::MAX as u128) as i32;
        if !timeout.is_zero() && ms != self.timeout_ms {
            self.sub
                .set_rcvtimeo(ms)
                .map_err(|source| SourceError::Socket { endpoint: self.endpoint.clone(), source })?;
            self.timeout_ms = ms;
        }
        match self.sub.recv(&mut self.parts[0], flags) {
            Ok(()) => {
                self.on_message(sink, Instant::now());
                Ok(true)
            }
            Err(zmq::Error::EAGAIN) | Err(zmq::Error::EINTR) => Ok(false),
            Err(source) => Err(SourceError::Socket { endpoint: self.endpoint.clone(), source }),
        }
    }

    fn tick(&mut self, now: Instant, sink: &mut dyn Sink) {
        match &mut self.mode {
            Mode::Voltage(v) => v.unstall(self.stall, MsgCtx { t_ns: self.last_t_ns, recv_at: now }, sink),
            Mode::Spikes(b) => {
                let ctx = MsgCtx { t_ns: self.last_t_ns, recv_at: now };
                b.tick(now, &mut |k, counts| emit_bin(sink, ctx, k, Some(counts)));
            }
        }
    }

    fn endpoint(&self) -> &str {
        &self.endpoint
    }
}
