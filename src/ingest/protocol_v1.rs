//! Protocol v1 over ZeroMQ (docs/PROTOCOL.md): a SUB socket receiving
//! two-part messages `[topic, frame]`; `spikes` frames become timesteps,
//! `behavior` frames behaviour bins.
//!
//! Per message: one blocking receive with the loop's timeout, the frame is
//! parsed in place (no copy beyond libzmq's own message buffer) and each of
//! its samples converted into a preallocated f32 row. Malformed multipart
//! messages, bad frames, wrong channel counts and unknown topics are counted
//! by reason and skipped.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::{check_endpoint, Sink, Source, SourceError, BEHAVIOR_MAX_DIMS};
use crate::transport::{open_socket, Access, SocketError};

/// ZAP domain of the ingest socket (its `allow_ips`).
pub const ZAP_DOMAIN: &str = "ingest";
use crate::wire::{DropReason, Frame};

/// `[ingest.protocol_v1]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProtocolV1Section {
    /// ZeroMQ endpoint, e.g. `tcp://127.0.0.1:5555`.
    pub endpoint: String,
    /// Bind (rigs connect to us) or connect (we connect to the rig's PUB).
    pub bind: bool,
    /// Subscription prefix; empty = every topic.
    pub subscribe: String,
    /// Topic of observation frames.
    pub spikes_topic: String,
    /// Topic of true-behaviour frames (recorded, never decoded).
    pub behavior_topic: String,
    /// Messages larger than this are dropped (bytes).
    pub max_message_bytes: usize,
    /// Receive high-water mark (messages queued in the socket).
    pub receive_hwm_messages: i32,
    /// Allow binding beyond loopback (other machines can connect).
    pub allow_remote: bool,
    /// Only these addresses may connect (empty = anyone who can reach the endpoint).
    pub allow_ips: Vec<String>,
}

impl Default for ProtocolV1Section {
    fn default() -> Self {
        Self {
            endpoint: "tcp://127.0.0.1:5555".into(),
            bind: true,
            subscribe: String::new(),
            spikes_topic: "spikes".into(),
            behavior_topic: "behavior".into(),
            max_message_bytes: 1 << 20,
            receive_hwm_messages: 100_000,
            allow_remote: false,
            allow_ips: Vec::new(),
        }
    }
}

impl ProtocolV1Section {
    /// Every problem, each with its dotted field path (`prefix` + field).
    pub fn problems(&self, prefix: &str) -> Vec<String> {
        let mut e = Vec::new();
        check_endpoint(&mut e, &format!("{prefix}endpoint"), &self.endpoint);
        if self.spikes_topic.is_empty() {
            e.push(format!("{prefix}spikes_topic: must not be empty"));
        }
        if self.spikes_topic == self.behavior_topic {
            e.push(format!(
                "{prefix}behavior_topic: {:?} equals {prefix}spikes_topic; expected a different topic",
                self.behavior_topic
            ));
        }
        for (name, topic) in [("spikes_topic", &self.spikes_topic), ("behavior_topic", &self.behavior_topic)] {
            if !topic.is_empty() && !topic.starts_with(self.subscribe.as_str()) {
                e.push(format!(
                    "{prefix}subscribe: {:?} does not match {prefix}{name} {topic:?}; expected a prefix of both topics (or \"\")",
                    self.subscribe
                ));
            }
        }
        if self.max_message_bytes < crate::wire::HEADER_LEN + 4 {
            e.push(format!(
                "{prefix}max_message_bytes: {} is smaller than one frame; expected >= {}",
                self.max_message_bytes,
                crate::wire::HEADER_LEN + 4
            ));
        }
        e.extend(self.access(prefix).problems());
        if self.receive_hwm_messages < 0 {
            e.push(format!("{prefix}receive_hwm_messages: {} must be >= 0", self.receive_hwm_messages));
        }
        e
    }
}

impl ProtocolV1Section {
    /// Who may connect (for validation and the ZAP allowlist).
    pub fn access<'a>(&'a self, prefix: &'a str) -> Access<'a> {
        Access {
            prefix,
            endpoint: &self.endpoint,
            bind: self.bind,
            allow_remote: self.allow_remote,
            allow_ips: &self.allow_ips,
        }
    }
}

/// The protocol-v1 source.
pub struct ProtocolV1Source {
    sub: zmq::Socket,
    endpoint: String,
    spikes_topic: Vec<u8>,
    behavior_topic: Vec<u8>,
    max_message_bytes: usize,
    topic_msg: zmq::Message,
    body_msg: zmq::Message,
    extra_msg: zmq::Message,
    row: Vec<f32>,
    behavior_dims: Option<usize>,
    /// The receive timeout currently set on the socket (ms), to set it only on change.
    timeout_ms: i32,
}

impl ProtocolV1Source {
    /// Binds or connects the SUB socket (errors name the endpoint).
    pub fn open(cfg: &ProtocolV1Section, ctx: &zmq::Context, channels: usize) -> Result<Self, SocketError> {
        let (sub, endpoint) = open_socket(ctx, zmq::SUB, &cfg.endpoint, cfg.bind, |s| {
            if !cfg.allow_ips.is_empty() {
                s.set_zap_domain(ZAP_DOMAIN)?;
            }
            s.set_rcvhwm(cfg.receive_hwm_messages)?;
            s.set_subscribe(cfg.subscribe.as_bytes())
        })?;
        Ok(Self {
            sub,
            endpoint,
            spikes_topic: cfg.spikes_topic.as_bytes().to_vec(),
            behavior_topic: cfg.behavior_topic.as_bytes().to_vec(),
            max_message_bytes: cfg.max_message_bytes,
            topic_msg: zmq::Message::new(),
            body_msg: zmq::Message::new(),
            extra_msg: zmq::Message::new(),
            row: vec![0.0; channels.max(BEHAVIOR_MAX_DIMS)],
            behavior_dims: None,
            timeout_ms: -1,
        })
    }

    /// Reads the rest of a multipart message; false (counted) if it is not `[topic, body]`.
    fn receive_body(&mut self, sink: &mut dyn Sink) -> bool {
        if !self.topic_msg.get_more() || self.sub.recv(&mut self.body_msg, 0).is_err() {
            sink.drop_one(DropReason::Malformed);
            return false;
        }
        if self.body_msg.get_more() {
            while self.sub.recv(&mut self.extra_msg, 0).is_ok() && self.extra_msg.get_more() {}
            sink.drop_one(DropReason::Malformed);
            return false;
        }
        true
    }

    fn on_message(&mut self, sink: &mut dyn Sink, recv_at: Instant) {
        if !self.receive_body(sink) {
            return;
        }
        let topic: &[u8] = &self.topic_msg;
        if topic == self.spikes_topic.as_slice() {
            self.on_spikes(sink, recv_at);
        } else if topic == self.behavior_topic.as_slice() {
            self.on_behavior(sink, recv_at);
        } else {
            sink.drop_one(DropReason::BadTopic);
        }
    }

    fn on_spikes(&mut self, sink: &mut dyn Sink, recv_at: Instant) {
        on_spikes_frame(&self.body_msg, self.max_message_bytes, &mut self.row, sink, recv_at);
    }

    fn on_behavior(&mut self, sink: &mut dyn Sink, recv_at: Instant) {
        let dims = &mut self.behavior_dims;
        on_behavior_frame(&self.body_msg, self.max_message_bytes, &mut self.row, dims, sink, recv_at);
    }
}

/// One observation frame (the checks and counters of protocol v1), shared by every transport carrying protocol-v1 frames.
pub(crate) fn on_spikes_frame(body: &[u8], max_bytes: usize, row: &mut [f32], sink: &mut dyn Sink, recv_at: Instant) {
    let frame = match Frame::parse(body, max_bytes) {
        Ok(f) => f,
        Err(e) => return sink.drop_one(e.reason()),
    };
    let c = sink.channels();
    if frame.header.channels as usize != c {
        return sink.drop_one(DropReason::WrongChannels);
    }
    for i in 0..frame.header.samples as usize {
        if frame.sample(i, &mut row[..c]).is_err() {
            sink.drop_one(DropReason::Malformed);
            continue;
        }
        sink.timestep(frame.seq_of(i), frame.header.t_ns, &row[..c], recv_at);
    }
}

/// One behaviour frame (the checks and counters of protocol v1), shared by every transport carrying protocol-v1 frames.
pub(crate) fn on_behavior_frame(
    body: &[u8],
    max_bytes: usize,
    row: &mut [f32],
    dims: &mut Option<usize>,
    sink: &mut dyn Sink,
    recv_at: Instant,
) {
    let frame = match Frame::parse(body, max_bytes) {
        Ok(f) => f,
        Err(e) => return sink.drop_one(e.reason()),
    };
    let d = frame.header.channels as usize;
    let expected = *dims.get_or_insert(if (1..=BEHAVIOR_MAX_DIMS).contains(&d) { d } else { 0 });
    if d != expected || d == 0 {
        return sink.drop_one(DropReason::WrongChannels);
    }
    for i in 0..frame.header.samples as usize {
        let row = &mut row[..d];
        if frame.sample(i, row).is_err() || row.iter().any(|v| !v.is_finite()) {
            sink.drop_one(DropReason::NonFinite);
            continue;
        }
        sink.behavior(frame.seq_of(i), row, recv_at);
    }
}

impl Source for ProtocolV1Source {
    fn poll(&mut self, timeout: Duration, sink: &mut dyn Sink) -> Result<bool, SourceError> {
        let flags = if timeout.is_zero() { zmq::DONTWAIT } else { 0 };
        let ms = timeout.as_millis().clamp(1, i32::MAX as u128) as i32;
        if !timeout.is_zero() && ms != self.timeout_ms {
            self.sub.set_rcvtimeo(ms).map_err(|source| self.error(source))?;
            self.timeout_ms = ms;
        }
        match self.sub.recv(&mut self.topic_msg, flags) {
            Ok(()) => {
                self.on_message(sink, Instant::now());
                Ok(true)
            }
            Err(zmq::Error::EAGAIN) | Err(zmq::Error::EINTR) => Ok(false),
            Err(source) => Err(self.error(source)),
        }
    }

    fn endpoint(&self) -> &str {
        &self.endpoint
    }
}

impl ProtocolV1Source {
    fn error(&self, source: zmq::Error) -> SourceError {
        SourceError::Socket { endpoint: self.endpoint.clone(), source }
    }
}
