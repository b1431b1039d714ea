//! The heartbeat the ZMQ Interface plugin expects from each client: a REQ
//! socket connected to the data port + 1 sends `{"application", "uuid",
//! "type": "heartbeat"}` every interval; the plugin answers and forgets
//! clients silent for longer than its timeout. On a missing reply the socket
//! is closed and recreated (a REQ socket cannot send twice without a reply),
//! as the plugin's own Python client does. Runs on its own thread so a slow
//! or absent plugin never touches the decode loop.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tracing::{info, warn};

/// Heartbeats sent and replies received.
#[derive(Debug, Default)]
pub struct HeartbeatCounters {
    pub sent: AtomicU64,
    pub answered: AtomicU64,
}

/// The heartbeat thread; stopped and joined on drop.
pub struct Heartbeat {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    pub counters: Arc<HeartbeatCounters>,
}

/// The message the plugin expects.
pub fn message(application: &str, uuid: &str) -> String {
    serde_json::json!({ "application": application, "uuid": uuid, "type": "heartbeat" }).to_string()
}

impl Heartbeat {
    pub fn spawn(ctx: zmq::Context, endpoint: String, uuid: String, interval: Duration) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let counters = Arc::new(HeartbeatCounters::default());
        let (s, c) = (stop.clone(), counters.clone());
        let thread = std::thread::Builder::new()
            .name("oe-heartbeat".into())
            .spawn(move || run(&ctx, &endpoint, &message("alternator", &uuid), interval, &s, &c))?;
        Ok(Self { stop, thread: Some(thread), counters })
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn connect(ctx: &zmq::Context, endpoint: &str) -> Option<zmq::Socket> {
    let s = ctx.socket(zmq::REQ).ok()?;
    s.set_linger(0).ok()?;
    s.connect(endpoint).ok()?;
    Some(s)
}

/// Sleeps until `until` in short steps; false if asked to stop.
fn wait(until: Instant, stop: &AtomicBool) -> bool {
    while Instant::now() < until {
        if stop.load(Ordering::Relaxed) {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50).min(until.saturating_duration_since(Instant::now())));
    }
    !stop.load(Ordering::Relaxed)
}

fn run(ctx: &zmq::Context, endpoint: &str, msg: &str, interval: Duration, stop: &AtomicBool, c: &HeartbeatCounters) {
    let mut sock = connect(ctx, endpoint);
    let mut warned = false;
    let mut next = Instant::now();
    while wait(next, stop) {
        next = Instant::now() + interval;
        let Some(s) = sock.as_ref() else {
            sock = connect(ctx, endpoint);
            continue;
        };
        if s.send(msg, 0).is_ok() {
            c.sent.fetch_add(1, Ordering::Relaxed);
        }
        let answered = s.poll(zmq::POLLIN, interval.as_millis().min(i64::MAX as u128) as i64).unwrap_or(0) > 0
            && s.recv_bytes(0).is_ok();
        if answered {
            // The next one an interval after this reply: a request queued
            // before the plugin was up is answered late, and must not be
            // followed at once by another.
            next = Instant::now() + interval;
            c.answered.fetch_add(1, Ordering::Relaxed);
            if warned {
                info!(endpoint, "Open Ephys answers heartbeats again.");
                warned = false;
            }
        } else {
            if !warned {
                warn!(endpoint, "Open Ephys did not answer a heartbeat; reconnecting (logged once per outage).");
                warned = true;
            }
            sock = connect(ctx, endpoint);
            next = Instant::now();
        }
    }
}
