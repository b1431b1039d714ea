//! Protocol-v1 frames over shared memory with iceoryx2 (docs/PROTOCOL.md,
//! "Shared memory"). The rig publishes each frame — the same 32-byte header
//! and payload as over ZeroMQ — as one `[u8]` sample on a publish-subscribe
//! service (`ingest.shm.service`; true behaviour on
//! `ingest.shm.behavior_service`), then notifies the event service of the
//! same name as the input service, so the daemon sleeps in the kernel until
//! data arrives instead of polling.
//!
//! Invariants: [`Source::poll`] never waits longer than its timeout (an
//! optional bounded spin first, `spin_us`, then the event listener's timed
//! wait); a sample is parsed in place in shared memory (no copy beyond the
//! f32 row) and released before the next; every rejected frame is counted
//! under the same [`DropReason`](crate::wire::DropReason) as over ZeroMQ, and a rig that restarts at
//! seq 0 is handled by the engine's sequence rules exactly as there.
//!
//! The iceoryx2 objects are built with the `ipc_threadsafe` service variant:
//! the plain `ipc` variant's ports are not `Send`, and a [`Source`] is opened
//! on the starting thread (so start-up errors are reported before any thread
//! runs) and then moved to the decode thread. The price is one uncontended
//! mutex per port call, tens of nanoseconds (README, "Shared memory").

use std::time::{Duration, Instant};

use iceoryx2::prelude::*;
use serde::{Deserialize, Serialize};
use tracing::warn;

use super::{protocol_v1, Sink, Source, SourceError, BEHAVIOR_MAX_DIMS};
use crate::wire::HEADER_LEN;

/// The iceoryx2 service variant used on both sides (ports are `Send`).
pub type ShmService = ipc_threadsafe::Service;

/// An iceoryx2 object could not be created or opened.
#[derive(Debug, thiserror::Error)]
#[error("{what} {name:?}: {message}")]
pub struct ShmError {
    /// What failed ("node", "publish-subscribe service", "event service", "subscriber", ...).
    pub what: &'static str,
    /// The service (or node) name.
    pub name: String,
    /// iceoryx2's error, as text.
    pub message: String,
}

impl ShmError {
    pub fn new(what: &'static str, name: &str, e: impl std::fmt::Debug) -> Self {
        Self { what, name: name.to_string(), message: format!("{e:?}") }
    }
}

/// `[ingest.shm]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShmSection {
    /// iceoryx2 service of observation frames (publish-subscribe `[u8]`),
    /// and the event service the rig notifies after each frame.
    pub service: String,
    /// Service of true-behaviour frames (recorded, never decoded); empty = none.
    pub behavior_service: String,
    /// Frames a slow daemon may fall behind before the oldest is overwritten
    /// (the subscriber's buffer; an overwritten frame shows as a seq gap).
    pub buffer_frames: usize,
    /// Rigs that may publish at once.
    pub max_publishers: usize,
    /// Frames larger than this are dropped (bytes).
    pub max_message_bytes: usize,
    /// Spin this long polling for a frame before sleeping on the event (µs);
    /// 0 = always sleep. Each poll yields the core (`sched_yield`), so other
    /// threads still run, but this one never sleeps while spinning.
    pub spin_us: u64,
}

impl Default for ShmSection {
    fn default() -> Self {
        Self {
            service: "alternator/input".into(),
            behavior_service: "alternator/behavior".into(),
            buffer_frames: 1024,
            max_publishers: 4,
            max_message_bytes: 1 << 20,
            spin_us: 0,
        }
    }
}

/// Adds a problem unless `name` is a valid iceoryx2 service name.
pub fn check_service_name(errs: &mut Vec<String>, field: &str, name: &str) {
    if let Err(e) = ServiceName::new(name) {
        errs.push(format!(
            "{field}: {name:?} is not an iceoryx2 service name ({e:?}); expected e.g. \"alternator/input\""
        ));
    }
}

impl ShmSection {
    /// Every problem, each with its dotted field path (`prefix` + field).
    pub fn problems(&self, prefix: &str) -> Vec<String> {
        let mut e = Vec::new();
        check_service_name(&mut e, &format!("{prefix}service"), &self.service);
        if !self.behavior_service.is_empty() {
            check_service_name(&mut e, &format!("{prefix}behavior_service"), &self.behavior_service);
            if self.behavior_service == self.service {
                e.push(format!(
                    "{prefix}behavior_service: {:?} equals {prefix}service; expected another service (or \"\")",
                    self.behavior_service
                ));
            }
        }
        if !(1..=65_536).contains(&self.buffer_frames) {
            e.push(format!("{prefix}buffer_frames: {} must be in 1..=65536", self.buffer_frames));
        }
        if !(1..=64).contains(&self.max_publishers) {
            e.push(format!("{prefix}max_publishers: {} must be in 1..=64", self.max_publishers));
        }
        if self.max_message_bytes < HEADER_LEN + 4 {
            e.push(format!(
                "{prefix}max_message_bytes: {} is smaller than one frame; expected >= {}",
                self.max_message_bytes,
                HEADER_LEN + 4
            ));
        }
        if self.spin_us > 20_000 {
            e.push(format!("{prefix}spin_us: {} must be in 0..=20000 (the loop wakes every 20 ms)", self.spin_us));
        }
        e
    }

    /// `shm:NAME` (or `NAME`) as given to `--ingest`.
    pub fn set_address(&mut self, ep: &str) {
        self.service = ep.strip_prefix("shm:").unwrap_or(ep).to_string();
    }
}

/// A node of this process (no signal handlers: the daemon owns SIGINT/SIGTERM).
/// iceoryx2's own log lines below ERROR are off unless `IOX2_LOG_LEVEL` asks
/// for them (it warns, for one, that it runs on its built-in default config).
pub fn node(name: &str) -> Result<Node<ShmService>, ShmError> {
    static LOG_LEVEL: std::sync::Once = std::sync::Once::new();
    LOG_LEVEL.call_once(|| iceoryx2::prelude::set_log_level_from_env_or(LogLevel::Error));
    let node_name = NodeName::new(name).map_err(|e| ShmError::new("node name", name, e))?;
    NodeBuilder::new()
        .name(&node_name)
        .signal_handling_mode(SignalHandlingMode::Disabled)
        .create::<ShmService>()
        .map_err(|e| ShmError::new("node", name, e))
}

/// Parses a service name (validated at start, so failures name the service).
pub fn service_name(name: &str) -> Result<ServiceName, ShmError> {
    ServiceName::new(name).map_err(|e| ShmError::new("service name", name, e))
}

type Sub = iceoryx2::port::subscriber::Subscriber<ShmService, [u8], ()>;

/// Opens (or creates) a `[u8]` publish-subscribe service and subscribes to it.
fn subscriber(node: &Node<ShmService>, name: &str, cfg: &ShmSection) -> Result<Sub, ShmError> {
    let service = node
        .service_builder(&service_name(name)?)
        .publish_subscribe::<[u8]>()
        .subscriber_max_buffer_size(cfg.buffer_frames)
        .max_publishers(cfg.max_publishers)
        .history_size(0)
        .open_or_create()
        .map_err(|e| ShmError::new("publish-subscribe service", name, e))?;
    service
        .subscriber_builder()
        .buffer_size(cfg.buffer_frames)
        .create()
        .map_err(|e| ShmError::new("subscriber", name, e))
}

/// The shared-memory source.
pub struct ShmSource {
    spikes: Sub,
    behavior: Option<Sub>,
    listener: iceoryx2::port::listener::Listener<ShmService>,
    endpoint: String,
    max_message_bytes: usize,
    spin: Duration,
    row: Vec<f32>,
    behavior_dims: Option<usize>,
    last_error_log: Option<Instant>,
    // Dropped last: ports hold references into the node's resources.
    _node: Node<ShmService>,
}

impl ShmSource {
    /// Creates the node, opens or creates the services and their ports.
    pub fn open(cfg: &ShmSection, channels: usize) -> Result<Self, ShmError> {
        let node = node("alternator-ingest")?;
        let spikes = subscriber(&node, &cfg.service, cfg)?;
        let behavior =
            if cfg.behavior_service.is_empty() { None } else { Some(subscriber(&node, &cfg.behavior_service, cfg)?) };
        let event = node
            .service_builder(&service_name(&cfg.service)?)
            .event()
            .open_or_create()
            .map_err(|e| ShmError::new("event service", &cfg.service, e))?;
        let listener = event.listener_builder().create().map_err(|e| ShmError::new("listener", &cfg.service, e))?;
        Ok(Self {
            spikes,
            behavior,
            listener,
            endpoint: format!("shm:{}", cfg.service),
            max_message_bytes: cfg.max_message_bytes,
            spin: Duration::from_micros(cfg.spin_us),
            row: vec![0.0; channels.max(BEHAVIOR_MAX_DIMS)],
            behavior_dims: None,
            last_error_log: None,
            _node: node,
        })
    }

    /// Logs a port failure at most once a second (never per frame).
    fn log_error(&mut self, what: &str, e: impl std::fmt::Debug) {
        let now = Instant::now();
        if self.last_error_log.is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1)) {
            self.last_error_log = Some(now);
            warn!(service = %self.endpoint, error = ?e, "Shared-memory {what} failed; retrying.");
        }
    }

    /// Takes every pending behaviour frame and at most one observation
    /// frame; true if anything was there.
    fn take(&mut self, sink: &mut dyn Sink) -> bool {
        let mut any = false;
        if let Some(b) = &self.behavior {
            loop {
                match b.receive() {
                    Ok(Some(sample)) => {
                        any = true;
                        let recv_at = Instant::now();
                        protocol_v1::on_behavior_frame(
                            sample.payload(),
                            self.max_message_bytes,
                            &mut self.row,
                            &mut self.behavior_dims,
                            sink,
                            recv_at,
                        );
                    }
                    Ok(None) => break,
                    Err(e) => {
                        self.log_error("behaviour receive", e);
                        break;
                    }
                }
            }
        }
        match self.spikes.receive() {
            Ok(Some(sample)) => {
                let recv_at = Instant::now();
                protocol_v1::on_spikes_frame(sample.payload(), self.max_message_bytes, &mut self.row, sink, recv_at);
                true
            }
            Ok(None) => any,
            Err(e) => {
                self.log_error("receive", e);
                any
            }
        }
    }
}

impl Source for ShmSource {
    fn poll(&mut self, timeout: Duration, sink: &mut dyn Sink) -> Result<bool, SourceError> {
        if self.take(sink) {
            return Ok(true);
        }
        if timeout.is_zero() {
            return Ok(false);
        }
        let start = Instant::now();
        if !self.spin.is_zero() {
            let spin = self.spin.min(timeout);
            while start.elapsed() < spin {
                if self.take(sink) {
                    return Ok(true);
                }
                // Yield, not a bare spin: another thread runnable on this
                // core (rig, recorder) runs at once instead of waiting for a
                // time slice to end, while this one never goes to sleep.
                std::thread::yield_now();
            }
        }
        let left = timeout.saturating_sub(start.elapsed());
        if !left.is_zero() {
            // A notification sent after `take` found nothing is still pending
            // here, so no wake-up is lost; all pending ones are consumed.
            if let Err(e) = self.listener.timed_wait(|_| {}, left) {
                return Err(SourceError::Shm { service: self.endpoint.clone(), message: format!("{e:?}") });
            }
        }
        Ok(self.take(sink))
    }

    fn endpoint(&self) -> &str {
        &self.endpoint
    }
}

type Pub = iceoryx2::port::publisher::Publisher<ShmService, [u8], ()>;

/// The rig's side of the input services (used by `replay`, `bench` and the
/// tests): publishers on the observation (and behaviour) service and a
/// notifier on the input event. The daemon must have created the services.
pub struct ShmRig {
    spikes: Pub,
    behavior: Option<Pub>,
    notifier: iceoryx2::port::notifier::Notifier<ShmService>,
    buf: Vec<u8>,
    _node: Node<ShmService>,
}

impl ShmRig {
    /// Opens the daemon's services; frames up to `max_frame_bytes` need no reallocation.
    pub fn open(service: &str, behavior_service: Option<&str>, max_frame_bytes: usize) -> Result<Self, ShmError> {
        let node = node("alternator-rig")?;
        let publisher = |name: &str| -> Result<Pub, ShmError> {
            node.service_builder(&service_name(name)?)
                .publish_subscribe::<[u8]>()
                .open()
                .map_err(|e| ShmError::new("publish-subscribe service", name, e))?
                .publisher_builder()
                .initial_max_slice_len(max_frame_bytes)
                .allocation_strategy(AllocationStrategy::PowerOfTwo)
                .create()
                .map_err(|e| ShmError::new("publisher", name, e))
        };
        let spikes = publisher(service)?;
        let behavior = behavior_service.map(publisher).transpose()?;
        let notifier = node
            .service_builder(&service_name(service)?)
            .event()
            .open()
            .map_err(|e| ShmError::new("event service", service, e))?
            .notifier_builder()
            .create()
            .map_err(|e| ShmError::new("notifier", service, e))?;
        Ok(Self { spikes, behavior, notifier, buf: Vec::with_capacity(max_frame_bytes), _node: node })
    }

    /// Encodes and sends one frame (on the behaviour service when `behavior`;
    /// dropped silently when there is none), then notifies.
    pub fn send(&mut self, behavior: bool, header: &crate::wire::Header, values: &[f32]) -> Result<(), ShmError> {
        crate::wire::encode_frame(&mut self.buf, header, values);
        let publisher = if behavior {
            match &self.behavior {
                Some(p) => p,
                None => return Ok(()),
            }
        } else {
            &self.spikes
        };
        send_bytes(publisher, &self.notifier, &self.buf)
    }

    /// Sends arbitrary bytes on the observation service (tests send bad frames).
    pub fn send_raw(&self, body: &[u8]) -> Result<(), ShmError> {
        send_bytes(&self.spikes, &self.notifier, body)
    }
}

fn send_bytes(
    publisher: &Pub,
    notifier: &iceoryx2::port::notifier::Notifier<ShmService>,
    body: &[u8],
) -> Result<(), ShmError> {
    let name = "rig publisher";
    let sample = publisher.loan_slice_uninit(body.len()).map_err(|e| ShmError::new("loan", name, e))?;
    sample.write_from_slice(body).send().map_err(|e| ShmError::new("send", name, e))?;
    notifier.notify().map_err(|e| ShmError::new("notify", name, e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_section_is_valid() {
        assert!(ShmSection::default().problems("ingest.shm.").is_empty());
    }

    #[test]
    fn bad_values_are_named_by_field() {
        let s = ShmSection {
            service: String::new(),
            behavior_service: "alternator/input".into(),
            buffer_frames: 0,
            max_publishers: 0,
            max_message_bytes: 8,
            spin_us: 1_000_000,
        };
        let p = s.problems("ingest.shm.");
        for field in ["service", "buffer_frames", "max_publishers", "max_message_bytes", "spin_us"] {
            assert!(p.iter().any(|m| m.starts_with(&format!("ingest.shm.{field}:"))), "{field} missing from {p:?}");
        }
        let same = ShmSection { behavior_service: "alternator/input".into(), ..ShmSection::default() };
        let p = same.problems("ingest.shm.");
        assert!(p.iter().any(|m| m.starts_with("ingest.shm.behavior_service:")), "{p:?}");
    }

    #[test]
    fn address_override_strips_the_prefix() {
        let mut s = ShmSection::default();
        s.set_address("shm:rig7/spikes");
        assert_eq!(s.service, "rig7/spikes");
    }
}
