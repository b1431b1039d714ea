//! The transport alone (`alternator bench --transport forwarder`): in place
//! of the daemon, one thread with its own ZeroMQ context (its own I/O
//! thread, as a separate process has) receives each protocol-v1 frame and
//! publishes a 40-byte output frame carrying the frame's seq and t_ns —
//! no decoding, no recording, no counters. The same rig and subscriber as
//! a protocol-v1 run measure it, so the daemon's figures divided by this
//! one's (same run) are what the daemon adds on top of ZeroMQ over TCP.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;

use super::end_to_end::{result_of, send_all};
use super::rig::Rig;
use super::subscriber::{spawn_subscriber, Outputs};
use super::{BenchResult, RunSpec};
use crate::replay::Publisher;
use crate::transport::open_socket;
use crate::wire::{Dtype, Frame};

/// A running forwarder: its endpoints and how to stop it.
struct Forwarder {
    ingest_endpoint: String,
    publish_endpoint: String,
    subscribed: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    handle: std::thread::JoinHandle<u64>,
}

impl Forwarder {
    /// Binds both sockets on loopback (ports chosen by the OS) on a thread
    /// pinned to core 1 with `pin`, like the daemon in a pinned run.
    fn start(pin: bool) -> anyhow::Result<Self> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let subscribed = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let (sub_flag, stop_flag) = (subscribed.clone(), stop.clone());
        let handle = std::thread::Builder::new().name("forwarder".into()).spawn(move || {
            let opened = open(pin);
            let endpoints = opened.as_ref().map(|(_, e)| e.clone()).map_err(|e| format!("{e:#}"));
            let _ = tx.send(endpoints);
            opened.map(|(s, _)| forward(s, &sub_flag, &stop_flag)).unwrap_or(0)
        })?;
        let (ingest_endpoint, publish_endpoint) =
            rx.recv().context("the forwarder thread ended before binding")?.map_err(anyhow::Error::msg)?;
        Ok(Self { ingest_endpoint, publish_endpoint, subscribed, stop, handle })
    }

    /// Frames forwarded, once the thread has stopped.
    fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().unwrap_or(0)
    }
}

/// The forwarder's context (kept alive with them), input and output sockets.
type Sockets = (zmq::Context, zmq::Socket, Publisher);

fn open(pin: bool) -> anyhow::Result<(Sockets, (String, String))> {
    if pin {
        crate::daemon::os::pin_current_thread(1).context("pinning the forwarder to core 1")?;
    }
    let ctx = zmq::Context::new();
    let (sub, ingest) = open_socket(&ctx, zmq::SUB, "tcp://127.0.0.1:*", true, |s| {
        s.set_rcvhwm(0)?;
        s.set_subscribe(b"")?;
        s.set_rcvtimeo(100)
    })?;
    let out = Publisher::new(&ctx, "tcp://127.0.0.1:*", true)?;
    let publish = out.endpoint().to_string();
    Ok(((ctx, sub, out), (ingest, publish)))
}

/// Waits for the subscriber, then forwards until `stop`; returns the count.
fn forward((_ctx, sub, mut out): Sockets, subscribed: &AtomicBool, stop: &AtomicBool) -> u64 {
    if out.wait_for_subscriber(Duration::from_secs(10)).is_err() {
        return 0;
    }
    subscribed.store(true, Ordering::Relaxed);
    let (mut topic, mut body) = (zmq::Message::new(), zmq::Message::new());
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        if sub.recv(&mut topic, 0).is_err() || !topic.get_more() || sub.recv(&mut body, 0).is_err() {
            continue;
        }
        let Ok(f) = Frame::parse(&body, 1 << 20) else { continue };
        if out.send("decoded", Dtype::F32, f.header.seq, f.header.t_ns, 2, &[0.0, 0.0]).is_ok() {
            n += 1;
        }
    }
    n
}

/// One run against the forwarder: the rig and subscriber of a protocol-v1 run.
pub fn run(spec: &RunSpec) -> anyhow::Result<BenchResult> {
    let fwd = Forwarder::start(spec.pin)?;
    if spec.pin {
        crate::daemon::os::pin_current_thread(0).context("pinning the rig side to core 0")?;
    }
    let ctx = zmq::Context::new();
    let stop_sub = Arc::new(AtomicBool::new(false));
    let received = Arc::new(AtomicU64::new(0));
    let outputs = Outputs::Zmq(fwd.publish_endpoint.clone());
    let subscriber = spawn_subscriber(&ctx, outputs, stop_sub.clone(), received.clone())?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !fwd.subscribed.load(Ordering::Relaxed) {
        anyhow::ensure!(Instant::now() < deadline, "the subscriber did not reach the forwarder within 10 s");
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut rig = Rig::zmq(&ctx, &fwd.ingest_endpoint)?;
    let timing = send_all(&mut rig, spec, &received)?;
    let forwarded = fwd.stop();
    stop_sub.store(true, Ordering::Relaxed);
    let (h, imputed) = subscriber.join().map_err(|_| anyhow::anyhow!("subscriber panicked"))??;
    let mut r = result_of(spec, &timing, &h, received.load(Ordering::Relaxed), imputed);
    r.daemon_bins_in = forwarded;
    r.lost = r.sent.saturating_sub(forwarded).max(r.lost);
    Ok(r)
}
