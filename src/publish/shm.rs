//! Decoded behaviour over iceoryx2 shared memory (`[publish.shm]`): one
//! protocol-v1 output frame (the bytes the ZeroMQ publisher sends, without
//! the topic) per decoded timestep as a `[u8]` sample on the service
//! `publish.shm.service`, followed by a notification on the event service
//! of the same name so subscribers can sleep until an output arrives
//! (docs/PROTOCOL.md, "Shared memory").
//!
//! Invariants: runs on the decode thread and never blocks it — a subscriber
//! that falls `buffer_frames` behind loses its oldest outputs (safe
//! overflow), which it sees as a seq gap; the frame is encoded into a reused
//! buffer and copied once into the loaned sample; a failed loan or send is
//! counted as lost and the engine goes on.

use serde::{Deserialize, Serialize};

use super::{Decoded, OutputSink};
use crate::ingest::shm::{check_service_name, node, service_name, ShmError, ShmService};
use crate::wire::{encode_f32, HEADER_LEN};

/// `[publish.shm]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShmOutputSection {
    /// Publish outputs on a shared-memory service.
    pub enabled: bool,
    /// iceoryx2 service of output frames (publish-subscribe `[u8]`), and the
    /// event service notified after each one.
    pub service: String,
    /// Outputs a subscriber may fall behind before its oldest is overwritten.
    pub buffer_frames: usize,
    /// Subscribers that may connect at once.
    pub max_subscribers: usize,
}

impl Default for ShmOutputSection {
    fn default() -> Self {
        Self { enabled: false, service: "alternator/decoded".into(), buffer_frames: 1024, max_subscribers: 8 }
    }
}

impl ShmOutputSection {
    /// Every problem, each with its dotted field path; `input_services` are
    /// the services the shared-memory source uses (the output needs its own).
    pub fn problems(&self, prefix: &str, input_services: &[&str]) -> Vec<String> {
        let mut e = Vec::new();
        if !self.enabled {
            return e;
        }
        check_service_name(&mut e, &format!("{prefix}service"), &self.service);
        if input_services.contains(&self.service.as_str()) {
            e.push(format!("{prefix}service: {:?} is also an ingest.shm service; expected its own", self.service));
        }
        if !(1..=65_536).contains(&self.buffer_frames) {
            e.push(format!("{prefix}buffer_frames: {} must be in 1..=65536", self.buffer_frames));
        }
        if !(1..=256).contains(&self.max_subscribers) {
            e.push(format!("{prefix}max_subscribers: {} must be in 1..=256", self.max_subscribers));
        }
        e
    }
}

type Pub = iceoryx2::port::publisher::Publisher<ShmService, [u8], ()>;

/// The shared-memory output publisher.
pub struct ShmOutput {
    publisher: Pub,
    notifier: iceoryx2::port::notifier::Notifier<ShmService>,
    enc: Vec<u8>,
    endpoint: String,
    /// Outputs not delivered (loan or send failed).
    pub lost: u64,
    _node: iceoryx2::node::Node<ShmService>,
}

impl ShmOutput {
    /// Creates (or opens) the output services and their ports.
    pub fn open(cfg: &ShmOutputSection, out_dim: usize) -> Result<Self, ShmError> {
        let node = node("alternator-publish")?;
        let name = service_name(&cfg.service)?;
        let frame_len = HEADER_LEN + 4 * out_dim;
        let service = node
            .service_builder(&name)
            .publish_subscribe::<[u8]>()
            .subscriber_max_buffer_size(cfg.buffer_frames)
            .max_subscribers(cfg.max_subscribers)
            .history_size(0)
            .open_or_create()
            .map_err(|e| ShmError::new("publish-subscribe service", &cfg.service, e))?;
        let publisher = service
            .publisher_builder()
            .initial_max_slice_len(frame_len)
            .create()
            .map_err(|e| ShmError::new("publisher", &cfg.service, e))?;
        let event = node
            .service_builder(&name)
            .event()
            .open_or_create()
            .map_err(|e| ShmError::new("event service", &cfg.service, e))?;
        let notifier = event.notifier_builder().create().map_err(|e| ShmError::new("notifier", &cfg.service, e))?;
        Ok(Self {
            publisher,
            notifier,
            enc: Vec::with_capacity(frame_len),
            endpoint: format!("shm:{}", cfg.service),
            lost: 0,
            _node: node,
        })
    }

    /// `shm:SERVICE`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }
}

impl OutputSink for ShmOutput {
    fn send(&mut self, d: &Decoded<'_>) -> bool {
        encode_f32(&mut self.enc, d.seq, d.t_ns, d.flags, d.values.len() as u32, d.values);
        let sent = match self.publisher.loan_slice_uninit(self.enc.len()) {
            Ok(sample) => sample.write_from_slice(&self.enc).send().is_ok(),
            Err(_) => false,
        };
        if !sent {
            self.lost += 1;
            return false;
        }
        // A failed notification only delays subscribers that sleep (they
        // wake at their own timeout); the output itself was delivered.
        let _ = self.notifier.notify();
        true
    }

    fn name(&self) -> &'static str {
        "shm"
    }
}
