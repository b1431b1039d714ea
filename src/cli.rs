//! Command-line interface: argument types for every subcommand. Parsing only;
//! the work happens in `commands/`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Streaming neural decoding with the alternator model.
#[derive(Debug, Parser)]
#[command(name = "alternator", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write a seeded synthetic session (HDF5) for testing and demos.
    Simulate(SimulateArgs),
    /// Train an alternator model from HDF5 recordings.
    Train(TrainArgs),
    /// Seeded random search over architecture and model constants, scored on validation tails.
    Tune(TuneArgs),
    /// Decode a recording causally and compare with Wiener and Kalman decoders.
    Eval(EvalArgs),
    /// Draw a trajectory from a model's generative process, written as a recording.
    Sample(SampleArgs),
    /// Run the streaming daemon: ZeroMQ ingest, per-bin decoding, publishing, recording.
    Serve(ServeArgs),
    /// Run the daemon on the bundled demo model and feed it the bundled recording.
    Demo(DemoArgs),
    /// Publish a recorded session to a daemon as a rig would.
    Replay(ReplayArgs),
    /// Measure latency and throughput over TCP loopback with synthetic models and streams.
    Bench(BenchArgs),
    /// Inspect the versioned models directory, or roll back to a generation.
    Models(ModelsArgs),
    /// Turn a raw-voltage recording into binned threshold crossings, as the live front end does.
    Frontend(FrontendArgs),
    /// Write a daemon session file as an NWB 2.x file.
    ExportNwb(ExportNwbArgs),
    /// Read a recording and write it to stdout in the parent's stream form
    /// (run as a child process: see `recording::child`).
    #[command(hide = true)]
    ReadRecording {
        /// The file.
        path: PathBuf,
        /// The parent's read options (JSON).
        #[arg(long)]
        options: String,
    },
}

#[derive(Debug, Args)]
pub struct FrontendArgs {
    /// Raw recording (HDF5): `/voltage` [T, C] in µV and root attribute `sample_rate` (Hz).
    #[arg(long)]
    pub data: PathBuf,
    /// Output session file (HDF5): `/spikes` counts, `/seq` bin indices, `/frontend` settings.
    #[arg(long)]
    pub out: PathBuf,
    /// Serve config (TOML); its [frontend] table configures the front end (defaults without it).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Bin width in milliseconds (a whole number of samples).
    #[arg(long, default_value_t = 20.0)]
    pub bin_ms: f64,
}

#[derive(Debug, Args)]
pub struct ExportNwbArgs {
    /// Daemon session file (HDF5) to export.
    pub session: PathBuf,
    /// Output NWB file (replaced if it exists).
    #[arg(long)]
    pub out: PathBuf,
    /// Subject id (general/subject/subject_id).
    #[arg(long, default_value = "unknown")]
    pub subject: String,
    /// Subject species as a Latin binomial, e.g. "Macaca mulatta" (nwbinspector
    /// reports a missing species as a best-practice violation).
    #[arg(long)]
    pub species: Option<String>,
    /// Subject sex: M, F, U or O.
    #[arg(long)]
    pub sex: Option<String>,
    /// Subject age as an ISO 8601 duration, e.g. P5Y.
    #[arg(long)]
    pub age: Option<String>,
    /// Session description.
    #[arg(long, default_value = "Closed-loop decoding session recorded by the alternator daemon")]
    pub session_description: String,
    /// File identifier (default: a fresh UUID).
    #[arg(long)]
    pub identifier: Option<String>,
}

#[derive(Debug, Args)]
pub struct ModelsArgs {
    #[command(subcommand)]
    pub action: ModelsAction,
    /// The models directory.
    #[arg(long, global = true, default_value = "models")]
    pub models_dir: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum ModelsAction {
    /// List generations: number, status (live/accepted/rejected), validation R², parent, creation time.
    List {
        /// Print a JSON array.
        #[arg(long)]
        json: bool,
    },
    /// Make generation GEN live at next start, and in a running daemon now.
    Rollback {
        /// Generation number.
        gen: u64,
        /// Control endpoint of a running daemon to switch now (empty: only mark for next start).
        #[arg(long, default_value = "tcp://127.0.0.1:5557")]
        control: String,
        /// The daemon's control.token, when it has one.
        #[arg(long, default_value = "")]
        token: String,
    },
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Channel counts to measure.
    #[arg(long, value_delimiter = ',', default_value = "96,192,1024")]
    pub channels: Vec<usize>,
    /// Rates in bins/s, or `max` for as fast as possible.
    #[arg(long, value_delimiter = ',', default_value = "50,1000,10000,max")]
    pub rate: Vec<String>,
    /// Seconds per run.
    #[arg(long, default_value_t = 5.0)]
    pub seconds: f64,
    /// Write the results as a JSON array.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Draw the latency distributions (SVG).
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Time the decode step alone, without sockets.
    #[arg(long)]
    pub compute_only: bool,
    /// Do not record sessions during the runs (recording is on by default, as in `serve`).
    #[arg(long)]
    pub no_record: bool,
    /// Run a training job on a niced background thread during each run.
    #[arg(long)]
    pub with_training: bool,
    /// Pin the daemon's threads to core 1 and the rig side to core 0.
    #[arg(long)]
    pub pin: bool,
    /// Transports to measure side by side: protocol-v1, lsl, redis (input
    /// only; outputs over the protocol-v1 socket), shm (iceoryx2 both ways),
    /// forwarder (protocol v1 to a do-nothing forwarder instead of the
    /// daemon: the transport alone, the reference for protocol-v1 figures).
    #[arg(long, value_delimiter = ',', default_value = "protocol-v1")]
    pub transport: Vec<String>,
    /// With `--transport shm`: the daemon's `ingest.shm.spin_us` (poll this
    /// many µs before sleeping on the event); a list runs shm once per value.
    #[arg(long, value_delimiter = ',', default_value = "0")]
    pub shm_spin_us: Vec<u64>,
    /// Also run each end-to-end rate with the admin server on, a dashboard's
    /// event stream open and /metrics scraped at 10 Hz, reported side by side.
    #[arg(long)]
    pub with_admin: bool,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// TOML config (see config/default.toml); without it the defaults apply.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Model file (overrides model.path).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Where the configured source reads from (overrides the endpoint in its `ingest.<kind>` section; for openephys the plugin's data port, heartbeats go to the next port).
    #[arg(long)]
    pub ingest: Option<String>,
    /// Publish endpoint (overrides publish.endpoint).
    #[arg(long)]
    pub publish: Option<String>,
    /// Control endpoint (overrides control.endpoint).
    #[arg(long)]
    pub control: Option<String>,
    /// Session recording directory (overrides record.dir).
    #[arg(long)]
    pub record_dir: Option<PathBuf>,
    /// Versioned models directory (overrides model.models_dir).
    #[arg(long)]
    pub models_dir: Option<PathBuf>,
    /// Do not record sessions.
    #[arg(long)]
    pub no_record: bool,
    /// Serve the admin HTTP server (metrics, API, dashboard) on ADDR, e.g.
    /// 127.0.0.1:9187 (turns admin.enabled on, overrides admin.listen).
    #[arg(long, value_name = "ADDR")]
    pub admin: Option<String>,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Demo model.
    #[arg(long, default_value = "recordings/demo-model.safetensors")]
    pub model: PathBuf,
    /// Recording to stream.
    #[arg(long, default_value = "recordings/demo-test.h5")]
    pub data: PathBuf,
    /// Replay speed relative to the recorded rate.
    #[arg(long, default_value_t = 5.0)]
    pub speed: f64,
    /// Stop after this many seconds of recording (default: all of it).
    #[arg(long)]
    pub seconds: Option<f64>,
    /// Where the demo's session file goes.
    #[arg(long, default_value = "recordings/demo-sessions")]
    pub record_dir: PathBuf,
    /// Address of the dashboard (admin server); a free port is used if this one is taken.
    #[arg(long, default_value = "127.0.0.1:9187", value_name = "ADDR")]
    pub admin: String,
}

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// Session file (HDF5 session or NWB file) to publish.
    pub session: PathBuf,
    /// Daemon ingest endpoint to connect to (`shm:SERVICE` selects shared memory).
    #[arg(long, default_value = "tcp://127.0.0.1:5555")]
    pub endpoint: String,
    /// `protocol-v1` (ZeroMQ) or `shm` (iceoryx2 shared memory; the input
    /// service is `--endpoint shm:SERVICE`, else alternator/input).
    #[arg(long, default_value = "protocol-v1")]
    pub transport: String,
    /// With `--transport shm`: the daemon's behaviour service ("" = send no behaviour).
    #[arg(long, default_value = "alternator/behavior")]
    pub behavior_service: String,
    /// Speed relative to the recorded pace.
    #[arg(long, default_value_t = 1.0, conflicts_with = "max")]
    pub speed: f64,
    /// As fast as possible.
    #[arg(long)]
    pub max: bool,
    /// Start again at the end, until Ctrl-C.
    #[arg(long = "loop")]
    pub repeat: bool,
    /// Start at this many seconds into the recording.
    #[arg(long, default_value_t = 0.0)]
    pub from: f64,
    /// Stop at this many seconds into the recording.
    #[arg(long)]
    pub to: Option<f64>,
    /// Skip every Nth bin (its seq is still used), to exercise gap imputation.
    #[arg(long)]
    pub drop_every: Option<u64>,
    /// Topic for observation frames.
    #[arg(long, default_value = "spikes")]
    pub topic: String,
    /// Daemon control endpoint, asked for its channel count before sending
    /// (empty string: skip the check).
    #[arg(long, default_value = "tcp://127.0.0.1:5557")]
    pub control: String,
    /// Seconds to wait for the daemon's subscription.
    #[arg(long, default_value_t = 10.0)]
    pub wait: f64,
    #[command(flatten)]
    pub paths: DatasetPaths,
}

/// Which synthetic system to simulate.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum SimKind {
    /// Monkey-style reaching: 2-D hand velocity, Poisson neurons leading movement.
    Reach,
    /// Lorenz-63 state observed through Poisson neurons.
    Lorenz,
}

/// Which reaching simulation `simulate reach` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SimPreset {
    /// Heterogeneous lags (0–100 ms) and tuning widths, position/speed/velocity
    /// tuning, untuned and bursty neurons, baseline drift, over-dispersed counts.
    Realistic,
    /// The original reach simulation (Poisson neurons leading by 60–100 ms).
    Simple,
}

#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// System to simulate.
    pub kind: SimKind,
    /// Reach simulation preset (reach only; default realistic).
    #[arg(long, value_enum)]
    pub preset: Option<SimPreset>,
    /// Output HDF5 file.
    #[arg(long)]
    pub out: PathBuf,
    /// Session length in minutes.
    #[arg(long, default_value_t = 10.0)]
    pub minutes: f64,
    /// Session seed (behaviour and spikes).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Electrode-array seed: sessions with the same array seed record the same neurons.
    #[arg(long, default_value_t = 0)]
    pub array_seed: u64,
    /// Number of neurons.
    #[arg(long, default_value_t = 96)]
    pub channels: usize,
}

#[derive(Debug, Args)]
pub struct SampleArgs {
    /// Model file.
    #[arg(long)]
    pub model: PathBuf,
    /// Number of bins to draw.
    #[arg(long)]
    pub bins: usize,
    /// Output recording (HDF5): /spikes the raw input bins, /behavior the
    /// drawn state in behaviour units (latent state for latent-mode models).
    #[arg(long)]
    pub out: PathBuf,
    /// Seed: the same model and seed give the same file contents.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// Where datasets live inside recordings, and how NWB files are binned.
#[derive(Debug, Clone, Args)]
pub struct DatasetPaths {
    /// HDF5 path of the spike/feature dataset [T, C]. In NWB files: the Units
    /// table (the default means /units) or a TimeSeries.
    #[arg(long, default_value = "/spikes")]
    pub spikes_path: String,
    /// HDF5 path of the behaviour dataset [T, B]. In NWB files: a TimeSeries or
    /// SpatialSeries, e.g. processing/behavior/hand_vel.
    #[arg(long)]
    pub behavior_path: Option<String>,
    /// NWB files: bin width in milliseconds (default: the model's, else 20).
    #[arg(long)]
    pub bin_ms: Option<f64>,
    /// NWB files: start of the bin grid in seconds after the session start (default 0).
    #[arg(long)]
    pub start_s: Option<f64>,
    /// NWB files: use only the units with these ids, in this order.
    #[arg(long, value_delimiter = ',', num_args = 1..)]
    pub unit_ids: Vec<i64>,
    /// NWB files: use only the units whose boolean column has this value, e.g. heldout=false.
    #[arg(long)]
    pub unit_filter: Option<crate::recording::nwb::UnitFilter>,
    /// NWB files: train/score only on bins inside the trials of /intervals/trials.
    #[arg(long)]
    pub trials: bool,
    /// NWB files: only trials whose `split` column has this value (train, val, test); implies --trials.
    #[arg(long)]
    pub split: Option<String>,
}

#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Training recordings (HDF5 sessions or NWB files).
    #[arg(long, required = true, num_args = 1..)]
    pub data: Vec<PathBuf>,
    /// Output model file (.safetensors).
    #[arg(long)]
    pub out: PathBuf,
    /// TOML file with a [train] table (see config/train.toml).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Seed (overrides the config).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Maximum epochs (overrides the config).
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Threads (default: every core; the result does not depend on it).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Hide the progress bar.
    #[arg(long)]
    pub quiet: bool,
    #[command(flatten)]
    pub paths: DatasetPaths,
}

#[derive(Debug, Args)]
pub struct TuneArgs {
    /// Training recordings (HDF5 sessions or NWB files); each one's last
    /// `val_fraction` scores the trials. Never pass the test data.
    #[arg(long, required = true, num_args = 1..)]
    pub data: Vec<PathBuf>,
    /// Number of trials (trial 0 is the base config).
    #[arg(long)]
    pub trials: usize,
    /// Search seed (trial configurations); training itself uses the base config's seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Output directory: best.toml (for `train --config`) and trials.csv.
    #[arg(long, default_value = "tune-out")]
    pub out: PathBuf,
    /// Base config (TOML with a [train] table); its unsearched fields are kept.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Maximum epochs per trial (patience: a quarter of it, at least 3).
    #[arg(long, default_value_t = 30)]
    pub trial_epochs: usize,
    /// Wall-clock bound per trial in seconds.
    #[arg(long)]
    pub trial_seconds: Option<f64>,
    /// Threads per trial (default: every core).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Hide the progress bar.
    #[arg(long)]
    pub quiet: bool,
    /// HDF5 path of the spike/feature dataset (as for `train`; NWB trial
    /// filtering is not available here, `--trials` is the trial count).
    #[arg(long, default_value = "/spikes")]
    pub spikes_path: String,
    /// HDF5 path of the behaviour dataset (as for `train`).
    #[arg(long)]
    pub behavior_path: Option<String>,
    /// NWB files: bin width in milliseconds (default 20).
    #[arg(long)]
    pub bin_ms: Option<f64>,
}

impl TuneArgs {
    /// The dataset paths, as `train` takes them.
    pub fn paths(&self) -> DatasetPaths {
        DatasetPaths {
            spikes_path: self.spikes_path.clone(),
            behavior_path: self.behavior_path.clone(),
            bin_ms: self.bin_ms,
            start_s: None,
            unit_ids: Vec::new(),
            unit_filter: None,
            trials: false,
            split: None,
        }
    }
}

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Model file.
    #[arg(long)]
    pub model: PathBuf,
    /// Recording to decode (HDF5 session or NWB file, with behaviour).
    #[arg(long)]
    pub data: PathBuf,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Write an SVG of true vs decoded behaviour.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Recordings to fit the baselines on (default: the model's training data).
    #[arg(long, num_args = 1..)]
    pub baseline_data: Vec<PathBuf>,
    /// Skip the Wiener and Kalman baselines.
    #[arg(long)]
    pub no_baselines: bool,
    /// Lagged bins of the Wiener filter.
    #[arg(long, default_value_t = 10)]
    pub wiener_lags: usize,
    /// Also score k-bin-ahead forecasts of behaviour at these horizons (bins), e.g. 1,5,10.
    #[arg(long, value_delimiter = ',', num_args = 1..)]
    pub forecast: Vec<usize>,
    /// Also score decoding with this share of bins missing (imputed by the
    /// model; the Kalman filter skips its update on them), in [0, 1).
    #[arg(long)]
    pub drop_rate: Option<f64>,
    /// Length in bins of each dropped burst (with --drop-rate).
    #[arg(long, default_value_t = 1, requires = "drop_rate")]
    pub drop_burst: usize,
    /// Seed of the choice of dropped bins (with --drop-rate).
    #[arg(long, default_value_t = 0, requires = "drop_rate")]
    pub drop_seed: u64,
    #[command(flatten)]
    pub paths: DatasetPaths,
}
