//! The benchmark's output subscriber: receipt time of every decoded frame
//! against its send time, over ZeroMQ or shared memory.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::clock::monotonic_ns;
use crate::latency;
use crate::wire::{Frame, FLAG_IMPUTED};

/// Where the bench subscriber reads decoded frames.
pub(super) enum Outputs {
    /// The daemon's protocol-v1 PUB socket.
    Zmq(String),
    /// The daemon's shm output service: polls (yielding the core) for up
    /// to `spin` after each frame, then sleeps on the service's event.
    Shm { service: String, spin: Duration },
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

pub(super) type SubscriberHandle = std::thread::JoinHandle<anyhow::Result<(Histogram<u64>, u64)>>;

pub(super) fn spawn_subscriber(
    ctx: &zmq::Context,
    outputs: Outputs,
    stop: Arc<AtomicBool>,
    received: Arc<AtomicU64>,
) -> anyhow::Result<SubscriberHandle> {
    let mut tally = Tally { h: latency::histogram(), imputed: 0, received };
    let sub = match &outputs {
        Outputs::Zmq(ep) => {
            let sub = ctx.socket(zmq::SUB)?;
            sub.set_rcvhwm(0)?;
            sub.connect(ep)?;
            sub.set_subscribe(b"")?;
            sub.set_rcvtimeo(100)?;
            Some(sub)
        }
        Outputs::Shm { .. } => None,
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
            Outputs::Shm { service, spin } => read_shm(&service, spin, &stop, &mut tally)?,
        }
        Ok((tally.h, tally.imputed))
    })?)
}

/// Reads decoded frames from the shm output service until `stop`.
fn read_shm(service: &str, spin: Duration, stop: &AtomicBool, tally: &mut Tally) -> anyhow::Result<()> {
    use crate::ingest::shm::{node, service_name};
    let node = node("alternator-bench-subscriber")?;
    let name = service_name(service)?;
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
    let mut last = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let mut got = false;
        while let Some(sample) = sub.receive().map_err(|e| anyhow::anyhow!("shm receive: {e:?}"))? {
            tally.frame(sample.payload());
            got = true;
        }
        if got {
            last = Instant::now();
        }
        if last.elapsed() < spin {
            std::thread::yield_now();
            continue;
        }
        listener
            .timed_wait(|_| {}, Duration::from_millis(100))
            .map_err(|e| anyhow::anyhow!("shm listener wait: {e:?}"))?;
    }
    Ok(())
}
