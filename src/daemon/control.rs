//! The control socket: a ZeroMQ REP socket on its own thread answering
//! one-line text commands with one JSON document each.
//!
//! - `status` → `{"ok":true,"channels":C,"outputs":D,"model_id":..,"counters":{..}}`
//! - `retrain` → asks the retrainer for a run now
//! - `rollback GEN` → makes generation GEN live (through the retrainer)
//! - anything else → `{"ok":false,"error":"unknown command ..."}`
//!
//! Invariant: the decode loop is never touched from here except through the
//! same channels the retrainer uses; reading counters is lock-free.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use serde_json::json;
use tracing::warn;

use super::stats::LoopCounters;

/// What the control thread can do besides reading counters.
pub trait ControlActions: Send + 'static {
    /// Request a retraining run; Err when retraining is unavailable.
    fn retrain(&self) -> Result<String, String>;
    /// Make generation `gen` live; Err with the reason when it cannot be.
    fn rollback(&self, gen: u64) -> Result<String, String>;
    /// The retrainer's status, when retraining is configured.
    fn retrain_status(&self) -> Option<serde_json::Value> {
        None
    }
}

/// Static facts the status answer reports.
#[derive(Debug, Clone)]
pub struct ControlInfo {
    pub channels: usize,
    pub outputs: usize,
    pub model_id: Arc<Mutex<String>>,
    pub ingest_endpoint: String,
    pub publish_endpoint: String,
}

/// Handles one command line.
pub fn answer(
    cmd: &str,
    info: &ControlInfo,
    counters: &LoopCounters,
    actions: &dyn ControlActions,
) -> serde_json::Value {
    let mut parts = cmd.split_whitespace();
    match (parts.next(), parts.next()) {
        (Some("status"), None) => json!({
            "ok": true,
            "channels": info.channels,
            "outputs": info.outputs,
            "model_id": *info.model_id.lock().unwrap_or_else(|p| p.into_inner()),
            "ingest": info.ingest_endpoint,
            "publish": info.publish_endpoint,
            "counters": counters.snapshot(),
            "retrain": actions.retrain_status(),
        }),
        (Some("retrain"), None) => match actions.retrain() {
            Ok(m) => json!({"ok": true, "message": m}),
            Err(e) => json!({"ok": false, "error": e}),
        },
        (Some("rollback"), Some(g)) => match g.parse::<u64>() {
            Ok(gen) => match actions.rollback(gen) {
                Ok(m) => json!({"ok": true, "message": m}),
                Err(e) => json!({"ok": false, "error": e}),
            },
            Err(_) => json!({"ok": false, "error": format!("rollback takes a generation number, got {g:?}")}),
        },
        _ => {
            json!({"ok": false, "error": format!("unknown command {cmd:?}; expected status | retrain | rollback GEN")})
        }
    }
}

/// Runs the REP socket until `stop` is set.
pub fn spawn(
    sock: zmq::Socket,
    info: ControlInfo,
    counters: Arc<LoopCounters>,
    actions: Box<dyn ControlActions>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new().name("control".into()).spawn(move || {
        if let Err(e) = sock.set_rcvtimeo(100) {
            warn!(error = %e, "Control socket unusable.");
            return;
        }
        while !stop.load(Ordering::Relaxed) {
            let msg = match sock.recv_bytes(0) {
                Ok(m) => m,
                Err(zmq::Error::EAGAIN) | Err(zmq::Error::EINTR) => continue,
                Err(e) => {
                    warn!(error = %e, "Control socket failed; control commands are unavailable.");
                    return;
                }
            };
            let cmd = String::from_utf8_lossy(&msg);
            let reply = answer(cmd.trim(), &info, &counters, actions.as_ref());
            if let Err(e) = sock.send(reply.to_string().as_bytes(), 0) {
                warn!(error = %e, "Control reply failed.");
            }
        }
    })
}

/// Sends one command to a daemon's control socket and parses the JSON reply.
pub fn request(ctx: &zmq::Context, endpoint: &str, cmd: &str, timeout_ms: i32) -> Result<serde_json::Value, String> {
    let s = ctx.socket(zmq::REQ).map_err(|e| e.to_string())?;
    s.set_linger(0).map_err(|e| e.to_string())?;
    s.set_rcvtimeo(timeout_ms).map_err(|e| e.to_string())?;
    s.set_sndtimeo(timeout_ms).map_err(|e| e.to_string())?;
    s.connect(endpoint).map_err(|e| format!("cannot connect to {endpoint}: {e}"))?;
    s.send(cmd.as_bytes(), 0).map_err(|e| format!("cannot send to {endpoint}: {e}"))?;
    let r = s
        .recv_bytes(0)
        .map_err(|e| format!("no answer from the daemon's control socket {endpoint} within {timeout_ms} ms ({e})"))?;
    serde_json::from_slice(&r).map_err(|e| format!("control reply from {endpoint} is not JSON: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct NoRetrain;
    impl ControlActions for NoRetrain {
        fn retrain(&self) -> Result<String, String> {
            Err("retraining is not configured".into())
        }
        fn rollback(&self, gen: u64) -> Result<String, String> {
            Err(format!("no generation {gen}"))
        }
    }

    #[test]
    fn status_and_errors_over_a_real_socket() {
        let ctx = zmq::Context::new();
        let rep = ctx.socket(zmq::REP).unwrap();
        rep.bind("inproc://control-test").unwrap();
        let info = ControlInfo {
            channels: 96,
            outputs: 2,
            model_id: Arc::new(Mutex::new("abc".into())),
            ingest_endpoint: "tcp://x:1".into(),
            publish_endpoint: "tcp://x:2".into(),
        };
        let counters = Arc::new(LoopCounters::default());
        LoopCounters::add(&counters.bins_in, 5);
        let stop = Arc::new(AtomicBool::new(false));
        let h = spawn(rep, info, counters, Box::new(NoRetrain), stop.clone()).unwrap();
        let st = request(&ctx, "inproc://control-test", "status", 2000).unwrap();
        assert_eq!(st["channels"], 96);
        assert_eq!(st["model_id"], "abc");
        assert_eq!(st["counters"]["bins_in"], 5);
        let r = request(&ctx, "inproc://control-test", "retrain", 2000).unwrap();
        assert_eq!(r["ok"], false);
        let r = request(&ctx, "inproc://control-test", "rollback x", 2000).unwrap();
        assert!(r["error"].as_str().unwrap().contains("generation number"));
        let r = request(&ctx, "inproc://control-test", "bogus", 2000).unwrap();
        assert!(r["error"].as_str().unwrap().contains("unknown command"));
        stop.store(true, Ordering::Relaxed);
        h.join().unwrap();
    }
}
