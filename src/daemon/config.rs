//! The daemon's configuration: TOML with `deny_unknown_fields`, defaults in
//! `impl Default`, units in field names, and validation that reports every
//! problem at once with its dotted field path.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use crate::admin::AdminSection;
pub use crate::frontend::FrontendConfig;
use crate::ingest::check_endpoint;
pub use crate::ingest::IngestSection;
use crate::model::train::TrainConfig;
pub use crate::publish::PublishSection;
use crate::transport::Access;

/// Upper bound of `decode.rewarm_bins`: re-warming runs between two bins.
pub const MAX_REWARM_BINS: usize = 2000;

/// Everything `alternator serve` needs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServeConfig {
    /// Which model to run.
    pub model: ModelSection,
    /// Where observations come from.
    pub ingest: IngestSection,
    /// Raw voltage → spike counts (sources that deliver voltage).
    pub frontend: FrontendConfig,
    /// Where decoded behaviour goes.
    pub publish: PublishSection,
    /// Session recording.
    pub record: RecordSection,
    /// The decode loop.
    pub decode: DecodeSection,
    /// Periodic stats line.
    pub stats: StatsSection,
    /// Periodic retraining.
    pub retrain: RetrainSection,
    /// Control socket (status queries, retrain requests).
    pub control: ControlSection,
    /// Admin HTTP server (metrics, JSON API, dashboard).
    pub admin: AdminSection,
    /// Safe output when input stops.
    pub watchdog: WatchdogSection,
}

/// What the effector gets when input stops: after `timeout_ms` without an
/// input bin, a frame flagged stale at the bin rate with a safe output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WatchdogSection {
    /// Publish stale frames at all.
    pub enabled: bool,
    /// Silence that counts as stale (ms); 0 = 5 bin widths (`record.bin_seconds`).
    pub timeout_ms: u64,
    /// `hold` the last output, `zero`, or `decay` it to zero.
    pub safe_output: SafeOutput,
    /// Time constant of `decay` (ms).
    pub decay_tau_ms: f64,
}

impl Default for WatchdogSection {
    fn default() -> Self {
        Self { enabled: true, timeout_ms: 0, safe_output: SafeOutput::Zero, decay_tau_ms: 200.0 }
    }
}

/// The values of a stale frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SafeOutput {
    Hold,
    Zero,
    Decay,
}

/// The control socket: a ZeroMQ REP socket answering one-line commands
/// (`status`, `retrain`, `rollback GEN`) with JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ControlSection {
    /// Serve the control socket at all.
    pub enabled: bool,
    /// ZeroMQ endpoint (always bound).
    pub endpoint: String,
    /// Allow binding beyond loopback (other machines can connect).
    pub allow_remote: bool,
    /// Only these addresses may connect (empty = anyone who can reach the endpoint).
    pub allow_ips: Vec<String>,
    /// When set, `retrain` and `rollback` must be sent as `token=TOKEN COMMAND`.
    pub token: String,
}

impl ControlSection {
    /// Who may connect (for validation and the ZAP allowlist).
    pub fn access(&self) -> Access<'_> {
        Access {
            prefix: "control.",
            endpoint: &self.endpoint,
            bind: true,
            allow_remote: self.allow_remote,
            allow_ips: &self.allow_ips,
        }
    }
}

impl Default for ControlSection {
    fn default() -> Self {
        Self {
            enabled: true,
            endpoint: "tcp://127.0.0.1:5557".into(),
            allow_remote: false,
            allow_ips: Vec::new(),
            token: String::new(),
        }
    }
}

/// Which model to run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelSection {
    /// Model file to start with. When empty, the newest accepted model in
    /// `models_dir` is used.
    pub path: Option<PathBuf>,
    /// Versioned models directory (generations written by retraining).
    pub models_dir: PathBuf,
}

/// Session recording to HDF5.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RecordSection {
    /// Record sessions at all.
    pub enabled: bool,
    /// Directory for session files.
    pub dir: PathBuf,
    /// Start a new file after this many seconds.
    pub rotate_seconds: u64,
    /// Start a new file after this many bytes of bin data.
    pub rotate_bytes: u64,
    /// Memory of the recorder queue (bytes, preallocated at start); when it is
    /// full the loop counts losses instead of waiting. At least 4 batches.
    pub queue_bytes: u64,
    /// Bin width written into session files (seconds).
    pub bin_seconds: f64,
}

/// The decode loop.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DecodeSection {
    /// Compute the per-bin prediction error (one extra OTN pass per bin).
    pub track_prediction: bool,
    /// Pin the decode thread to this CPU core.
    pub cpu_core: Option<usize>,
    /// On a model swap: carry the latent state over (`carry`) or re-warm the
    /// new model over the last `rewarm_bins` bins (`rewarm`).
    pub swap_state: SwapState,
    /// Bins kept for re-warming after a swap.
    pub rewarm_bins: usize,
}

/// What happens to the latent state when a new model is swapped in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SwapState {
    Carry,
    Rewarm,
}

/// Periodic stats line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StatsSection {
    /// Seconds between stats lines.
    pub interval_s: f64,
}

/// Smallest accepted `retrain.max_data_bytes` (1 MiB).
pub const MIN_RETRAIN_DATA_BYTES: u64 = 1 << 20;

/// Periodic retraining.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetrainSection {
    /// Retrain at all (otherwise only on demand: SIGHUP).
    pub enabled: bool,
    /// Seconds between retraining runs (0 = no timer).
    pub interval_s: u64,
    /// Retrain after this many new labelled bins (0 = no trigger).
    pub after_labelled_bins: u64,
    /// Recordings always included in retraining.
    pub recordings: Vec<PathBuf>,
    /// Also use the daemon's own session files that contain behaviour.
    pub use_sessions: bool,
    /// At most this many of the most recent session files are used per run.
    pub max_session_files: usize,
    /// At most this many bytes of spike data (bins × channels × 4) are
    /// loaded per run, newest bins first; older bins and files are left out
    /// so a long-running daemon's retraining memory stays bounded.
    pub max_data_bytes: u64,
    /// Accept a candidate only if its held-out R² beats the live model's by this much.
    pub min_improvement_r2: f64,
    /// Fraction of the most recent labelled data held out for the gate.
    pub holdout_fraction: f64,
    /// OS niceness of the retraining thread (0..=19).
    pub nice: i32,
    /// Run the retraining thread under SCHED_IDLE (only when a core is
    /// otherwise idle; decoding threads preempt it at once).
    pub sched_idle: bool,
    /// Training settings of candidates.
    pub train: TrainConfig,
}

impl Default for ModelSection {
    fn default() -> Self {
        Self { path: None, models_dir: PathBuf::from("models") }
    }
}

impl Default for RecordSection {
    fn default() -> Self {
        Self {
            enabled: true,
            dir: PathBuf::from("recordings"),
            rotate_seconds: 3600,
            rotate_bytes: 4 << 30,
            queue_bytes: 64 << 20,
            bin_seconds: 0.02,
        }
    }
}

impl Default for DecodeSection {
    fn default() -> Self {
        Self { track_prediction: false, cpu_core: None, swap_state: SwapState::Carry, rewarm_bins: 50 }
    }
}

impl Default for StatsSection {
    fn default() -> Self {
        Self { interval_s: 5.0 }
    }
}

impl Default for RetrainSection {
    fn default() -> Self {
        Self {
            enabled: false,
            interval_s: 0,
            after_labelled_bins: 0,
            recordings: Vec::new(),
            use_sessions: true,
            max_session_files: 50,
            max_data_bytes: 256 << 20,
            min_improvement_r2: 0.01,
            holdout_fraction: 0.2,
            nice: 10,
            sched_idle: true,
            train: TrainConfig { max_seconds: Some(300.0), ..TrainConfig::default() },
        }
    }
}

/// A configuration that failed to load or validate.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("config {path} does not parse: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config {origin} is invalid:\n  {}", problems.join("\n  "))]
    Invalid { origin: String, problems: Vec<String> },
}

impl ServeConfig {
    /// Reads a TOML file (no validation; see [`Self::validate`]).
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse { path: path.to_path_buf(), message: e.to_string() })
    }

    /// Every problem, each with its dotted field path.
    pub fn problems(&self) -> Vec<String> {
        let mut e = Vec::new();
        e.extend(self.ingest.problems());
        e.extend(self.frontend.problems("frontend."));
        e.extend(self.publish.problems());
        let input_is_redis = self.ingest.kind() == Some(crate::ingest::IngestKind::Redis);
        e.extend(self.publish.redis.problems("publish.redis.", input_is_redis));
        let shm_inputs: Vec<&str> = if self.ingest.kind() == Some(crate::ingest::IngestKind::Shm) {
            [self.ingest.shm.service.as_str(), self.ingest.shm.behavior_service.as_str()].into()
        } else {
            Vec::new()
        };
        e.extend(self.publish.shm.problems("publish.shm.", &shm_inputs));
        e.extend(self.admin.problems());
        self.endpoint_clashes(&mut e);
        if self.record.queue_bytes < (1 << 20) {
            e.push(format!("record.queue_bytes: {} is too small; expected >= 1048576", self.record.queue_bytes));
        }
        if self.record.rotate_seconds == 0 {
            e.push("record.rotate_seconds: must be > 0".into());
        }
        if self.record.rotate_bytes < (1 << 20) {
            e.push(format!("record.rotate_bytes: {} is too small; expected >= 1048576", self.record.rotate_bytes));
        }
        if !(self.record.bin_seconds > 0.0 && self.record.bin_seconds < 10.0) {
            e.push(format!("record.bin_seconds: {} must be in (0, 10)", self.record.bin_seconds));
        }
        if !(self.stats.interval_s >= 0.1 && self.stats.interval_s <= 3600.0) {
            e.push(format!("stats.interval_s: {} must be in [0.1, 3600]", self.stats.interval_s));
        }
        if self.decode.swap_state == SwapState::Rewarm && self.decode.rewarm_bins == 0 {
            e.push("decode.rewarm_bins: must be > 0 when decode.swap_state = \"rewarm\"".into());
        }
        if !(self.watchdog.decay_tau_ms > 0.0 && self.watchdog.decay_tau_ms.is_finite()) {
            e.push(format!("watchdog.decay_tau_ms: {} must be > 0", self.watchdog.decay_tau_ms));
        }
        if self.decode.rewarm_bins > MAX_REWARM_BINS {
            e.push(format!(
                "decode.rewarm_bins: {} is too large (the swap re-runs them between two bins); expected <= {MAX_REWARM_BINS}",
                self.decode.rewarm_bins
            ));
        }
        if let Some(core) = self.decode.cpu_core {
            let n = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
            if core >= n {
                e.push(format!("decode.cpu_core: {core} does not exist; this machine has cores 0..={}", n - 1));
            }
        }
        let r = &self.retrain;
        if r.use_sessions && r.max_session_files == 0 {
            e.push("retrain.max_session_files: must be > 0 when retrain.use_sessions = true".into());
        }
        if r.max_data_bytes < MIN_RETRAIN_DATA_BYTES {
            e.push(format!(
                "retrain.max_data_bytes: {} is too small to train on; expected >= {MIN_RETRAIN_DATA_BYTES}",
                r.max_data_bytes
            ));
        }
        if !(r.holdout_fraction > 0.0 && r.holdout_fraction < 0.9) {
            e.push(format!("retrain.holdout_fraction: {} must be in (0, 0.9)", r.holdout_fraction));
        }
        if !(0..=19).contains(&r.nice) {
            e.push(format!("retrain.nice: {} must be in 0..=19", r.nice));
        }
        if !r.min_improvement_r2.is_finite() {
            e.push("retrain.min_improvement_r2: must be a number".into());
        }
        for (i, p) in r.recordings.iter().enumerate() {
            if p.as_os_str().is_empty() {
                e.push(format!("retrain.recordings[{i}]: empty path"));
            }
        }
        e.extend(r.train.validate("retrain.train."));
        e
    }

    /// Two sockets on one endpoint (a bind would fail at start, or the daemon
    /// would talk to itself).
    fn endpoint_clashes(&self, e: &mut Vec<String>) {
        let ingest = self.ingest.endpoints();
        if ingest.contains(&self.publish.endpoint) {
            e.push(format!(
                "publish.endpoint: {:?} is also used by ingest; expected its own endpoint",
                self.publish.endpoint
            ));
        }
        if self.control.enabled {
            check_endpoint(e, "control.endpoint", &self.control.endpoint);
            e.extend(self.control.access().problems());
            if self.control.token.chars().any(char::is_whitespace) {
                e.push("control.token: must not contain whitespace (it is sent as token=TOKEN)".into());
            }
            if ingest.contains(&self.control.endpoint) || self.control.endpoint == self.publish.endpoint {
                e.push(format!(
                    "control.endpoint: {:?} is already used by ingest or publish; expected its own endpoint",
                    self.control.endpoint
                ));
            }
        }
    }

    /// Validates; `origin` names the config's source in the error.
    pub fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        let problems = self.problems();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid { origin: origin.to_string(), problems })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid_and_round_trips_through_toml() {
        let c = ServeConfig::default();
        assert!(c.problems().is_empty(), "{:?}", c.problems());
        let text = toml::to_string(&c).unwrap();
        let back: ServeConfig = toml::from_str(&text).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn every_problem_is_reported_with_its_field_path() {
        let mut c = ServeConfig::default();
        c.ingest.protocol_v1.endpoint = "localhost:5555".into();
        c.record.queue_bytes = 1;
        c.retrain.train.alpha = 0.0;
        c.stats.interval_s = 0.0;
        let p = c.problems();
        assert_eq!(p.len(), 4, "{p:?}");
        for field in ["ingest.protocol_v1.endpoint", "record.queue_bytes", "retrain.train.alpha", "stats.interval_s"] {
            assert!(p.iter().any(|s| s.starts_with(field)), "{field} missing from {p:?}");
        }
    }

    #[test]
    fn unknown_fields_are_refused_by_name() {
        let err =
            toml::from_str::<ServeConfig>("[ingest.protocol_v1]\nendpont = \"tcp://x:1\"\n").unwrap_err().to_string();
        assert!(err.contains("endpont"), "{err}");
    }
}
