//! The control plane: one typed implementation ([`Control`]) of what an
//! operator can ask a running daemon, served by two front ends — a ZeroMQ
//! REP socket on its own thread answering one-line text commands with one
//! JSON document each (here), and the admin server's HTTP API
//! (`crate::admin`), which calls the same methods.
//!
//! - `status` → `{"ok":true,"channels":C,"outputs":D,"model_id":..,"counters":{..},"retrain":{..}}`
//! - `models` → `{"ok":true,"generations":[..]}`
//! - `retrain` → asks the retrainer for a run now
//! - `rollback GEN` → makes generation GEN live (through the retrainer)
//! - anything else → `{"ok":false,"error":"unknown command ..."}`
//!
//! Invariant: the decode loop is never touched from here except through the
//! same channels the retrainer uses; reading counters is lock-free.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use serde::Serialize;
use serde_json::json;
use tracing::warn;

use super::models::{GenInfo, ModelStore};
use super::retrain::RetrainStatus;
use super::stats::{CounterSnapshot, LoopCounters};

/// Why a control request was not carried out.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ControlError {
    #[error("retraining is not enabled in this daemon (retrain.enabled = false)")]
    RetrainDisabled,
    #[error("a retraining request is already queued")]
    AlreadyQueued,
    #[error(
        "cannot roll back to generation {gen}: retraining (and the models directory) is not enabled in this daemon"
    )]
    RollbackDisabled { gen: u64 },
    #[error("generation {gen} does not exist in {dir}")]
    NoSuchGeneration { gen: u64, dir: PathBuf },
    #[error("generation {gen} was rejected by the gate; refusing to make it live")]
    Rejected { gen: u64 },
    #[error("generation {gen} refused: {reason}")]
    SwapRefused { gen: u64, reason: String },
    #[error("the retrainer is busy or stopped")]
    Busy,
    #[error("no answer from the retrainer")]
    NoAnswer,
    #[error("models directory: {0}")]
    Store(String),
    #[error("rollback takes a generation number, got {0:?}")]
    BadGeneration(String),
    #[error("unknown command {0:?}; expected status | models | retrain | rollback GEN")]
    UnknownCommand(String),
}

/// Broad classes of [`ControlError`], for front ends that map them to codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// The request is malformed.
    BadRequest,
    /// What it names does not exist.
    NotFound,
    /// It conflicts with the daemon's configuration or state.
    Conflict,
    /// A worker did not answer in time.
    Unavailable,
    /// Something failed inside the daemon.
    Internal,
}

impl ControlError {
    /// The class of this error.
    pub fn class(&self) -> ErrorClass {
        use ControlError::*;
        match self {
            BadGeneration(_) | UnknownCommand(_) => ErrorClass::BadRequest,
            NoSuchGeneration { .. } => ErrorClass::NotFound,
            RetrainDisabled | AlreadyQueued | RollbackDisabled { .. } | Rejected { .. } | SwapRefused { .. } => {
                ErrorClass::Conflict
            }
            Busy | NoAnswer => ErrorClass::Unavailable,
            Store(_) => ErrorClass::Internal,
        }
    }
}

/// What the control plane can do besides reading counters (the retrainer).
pub trait ControlActions: Send + Sync + 'static {
    /// Request a retraining run.
    fn retrain(&self) -> Result<String, ControlError>;
    /// Make generation `gen` live.
    fn rollback(&self, gen: u64) -> Result<String, ControlError>;
    /// The retrainer's status, when retraining is configured.
    fn retrain_status(&self) -> Option<RetrainStatus> {
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
    /// The versioned models directory (`models` lists it).
    pub models_dir: PathBuf,
}

/// The `status` answer.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub ok: bool,
    pub channels: usize,
    pub outputs: usize,
    pub model_id: String,
    pub ingest: String,
    pub publish: String,
    pub counters: CounterSnapshot,
    pub retrain: Option<RetrainStatus>,
}

/// A successful action.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Ack {
    pub ok: bool,
    pub message: String,
}

impl Ack {
    fn new(message: String) -> Self {
        Self { ok: true, message }
    }
}

/// The one implementation of every control request.
pub struct Control {
    info: ControlInfo,
    counters: Arc<LoopCounters>,
    actions: Box<dyn ControlActions>,
}

impl Control {
    pub fn new(info: ControlInfo, counters: Arc<LoopCounters>, actions: Box<dyn ControlActions>) -> Self {
        Self { info, counters, actions }
    }

    /// Counters, model and retrainer state.
    pub fn status(&self) -> Status {
        Status {
            ok: true,
            channels: self.info.channels,
            outputs: self.info.outputs,
            model_id: self.model_id(),
            ingest: self.info.ingest_endpoint.clone(),
            publish: self.info.publish_endpoint.clone(),
            counters: self.counters.snapshot(),
            retrain: self.actions.retrain_status(),
        }
    }

    /// The id of the model the loop runs.
    pub fn model_id(&self) -> String {
        self.info.model_id.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The generations in the models directory (empty when it does not exist).
    pub fn models(&self) -> Result<Vec<GenInfo>, ControlError> {
        ModelStore::new(&self.info.models_dir).list().map_err(|e| ControlError::Store(e.to_string()))
    }

    /// Asks the retrainer for a run now.
    pub fn retrain(&self) -> Result<Ack, ControlError> {
        self.actions.retrain().map(Ack::new)
    }

    /// Makes generation `gen` live (blocks until the retrainer has swapped it in).
    pub fn rollback(&self, gen: u64) -> Result<Ack, ControlError> {
        self.actions.rollback(gen).map(Ack::new)
    }

    /// The counters the loop shares.
    pub fn counters(&self) -> &LoopCounters {
        &self.counters
    }

    /// Handles one text command line (the ZeroMQ protocol).
    pub fn execute(&self, cmd: &str) -> serde_json::Value {
        let mut parts = cmd.split_whitespace();
        let result = match (parts.next(), parts.next(), parts.next()) {
            (Some("status"), None, None) => return to_json(&self.status()),
            (Some("models"), None, None) => self.models().map(|g| json!({"ok": true, "generations": g})),
            (Some("retrain"), None, None) => self.retrain().map(|a| to_json(&a)),
            (Some("rollback"), Some(g), None) => match g.parse::<u64>() {
                Ok(gen) => self.rollback(gen).map(|a| to_json(&a)),
                Err(_) => Err(ControlError::BadGeneration(g.to_string())),
            },
            _ => Err(ControlError::UnknownCommand(cmd.to_string())),
        };
        result.unwrap_or_else(|e| error_json(&e))
    }
}

/// `{"ok":false,"error":...}` for an error.
pub fn error_json(e: &ControlError) -> serde_json::Value {
    json!({"ok": false, "error": e.to_string()})
}

fn to_json<T: Serialize>(v: &T) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or_else(|e| json!({"ok": false, "error": e.to_string()}))
}

/// The command of a line once its token (if the socket needs one) is
/// checked: `token=SECRET retrain` / `token=SECRET rollback 3`. Reading
/// commands (`status`, `models`) never need it; mutating ones
/// (`retrain`, `rollback`) do when `control.token` is set.
pub fn authorize<'a>(line: &'a str, token: Option<&str>) -> Result<&'a str, serde_json::Value> {
    let (given, cmd) = match line.strip_prefix("token=") {
        Some(rest) => {
            rest.split_once(char::is_whitespace).map(|(t, c)| (Some(t), c.trim())).unwrap_or((Some(rest), ""))
        }
        None => (None, line),
    };
    let mutating = matches!(cmd.split_whitespace().next(), Some("retrain") | Some("rollback"));
    match token {
        Some(t) if mutating && given != Some(t) => Err(json!({
            "ok": false,
            "error": "this command changes the daemon and needs the control token: send \"token=<control.token> COMMAND\""
        })),
        _ => Ok(cmd),
    }
}

/// Runs the REP socket until `stop` is set; `token` guards the mutating commands.
pub fn spawn(
    sock: zmq::Socket,
    control: Arc<Control>,
    token: Option<String>,
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
            let line = String::from_utf8_lossy(&msg);
            let reply = match authorize(line.trim(), token.as_deref()) {
                Ok(cmd) => control.execute(cmd),
                Err(refusal) => refusal,
            };
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

    #[test]
    fn mutating_commands_need_the_token_when_one_is_set() {
        assert_eq!(authorize("retrain", None).unwrap(), "retrain");
        assert!(authorize("retrain", Some("s3cret")).is_err());
        assert!(authorize("token=wrong rollback 2", Some("s3cret")).is_err());
        assert_eq!(authorize("token=s3cret rollback 2", Some("s3cret")).unwrap(), "rollback 2");
        assert_eq!(authorize("status", Some("s3cret")).unwrap(), "status");
        assert_eq!(authorize("models", Some("s3cret")).unwrap(), "models");
    }

    struct NoRetrain;
    impl ControlActions for NoRetrain {
        fn retrain(&self) -> Result<String, ControlError> {
            Err(ControlError::RetrainDisabled)
        }
        fn rollback(&self, gen: u64) -> Result<String, ControlError> {
            Err(ControlError::RollbackDisabled { gen })
        }
    }

    fn control(models_dir: PathBuf) -> Arc<Control> {
        let info = ControlInfo {
            channels: 96,
            outputs: 2,
            model_id: Arc::new(Mutex::new("abc".into())),
            ingest_endpoint: "tcp://x:1".into(),
            publish_endpoint: "tcp://x:2".into(),
            models_dir,
        };
        let counters = Arc::new(LoopCounters::default());
        LoopCounters::add(&counters.bins_in, 5);
        Arc::new(Control::new(info, counters, Box::new(NoRetrain)))
    }

    #[test]
    fn status_and_errors_over_a_real_socket() {
        let ctx = zmq::Context::new();
        let rep = ctx.socket(zmq::REP).unwrap();
        rep.bind("inproc://control-test").unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let h = spawn(rep, control(PathBuf::from("/nonexistent/models")), None, stop.clone()).unwrap();
        let st = request(&ctx, "inproc://control-test", "status", 2000).unwrap();
        assert_eq!(st["channels"], 96);
        assert_eq!(st["model_id"], "abc");
        assert_eq!(st["counters"]["bins_in"], 5);
        let r = request(&ctx, "inproc://control-test", "retrain", 2000).unwrap();
        assert_eq!(r["ok"], false);
        assert_eq!(r["error"], ControlError::RetrainDisabled.to_string());
        let r = request(&ctx, "inproc://control-test", "rollback x", 2000).unwrap();
        assert!(r["error"].as_str().unwrap().contains("generation number"));
        let r = request(&ctx, "inproc://control-test", "models", 2000).unwrap();
        assert_eq!(r["generations"], json!([]));
        let r = request(&ctx, "inproc://control-test", "bogus", 2000).unwrap();
        assert!(r["error"].as_str().unwrap().contains("unknown command"));
        stop.store(true, Ordering::Relaxed);
        h.join().unwrap();
    }

    #[test]
    fn errors_have_classes() {
        let c = control(PathBuf::from("/nonexistent/models"));
        assert_eq!(c.retrain().unwrap_err().class(), ErrorClass::Conflict);
        assert_eq!(ControlError::BadGeneration("x".into()).class(), ErrorClass::BadRequest);
        assert_eq!(ControlError::NoSuchGeneration { gen: 3, dir: "m".into() }.class(), ErrorClass::NotFound);
        assert_eq!(ControlError::NoAnswer.class(), ErrorClass::Unavailable);
    }
}
