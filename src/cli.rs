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
    /// Decode a recording causally and compare with Wiener and Kalman decoders.
    Eval(EvalArgs),
}

/// Which synthetic system to simulate.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum SimKind {
    /// Monkey-style reaching: 2-D hand velocity, Poisson neurons leading movement.
    Reach,
    /// Lorenz-63 state observed through Poisson neurons.
    Lorenz,
}

#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// System to simulate.
    pub kind: SimKind,
    /// Output HDF5 file.
    #[arg(long)]
    pub out: PathBuf,
    /// Session length in minutes.
    #[arg(long, default_value_t = 10.0)]
    pub minutes: f64,
    /// Random seed.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Number of neurons.
    #[arg(long, default_value_t = 96)]
    pub channels: usize,
}

/// Where datasets live inside recordings.
#[derive(Debug, Clone, Args)]
pub struct DatasetPaths {
    /// HDF5 path of the spike/feature dataset [T, C].
    #[arg(long, default_value = "/spikes")]
    pub spikes_path: String,
    /// HDF5 path of the behaviour dataset [T, B].
    #[arg(long)]
    pub behavior_path: Option<String>,
}

#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Training recordings (HDF5).
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
    /// Hide the progress bar.
    #[arg(long)]
    pub quiet: bool,
    #[command(flatten)]
    pub paths: DatasetPaths,
}

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Model file.
    #[arg(long)]
    pub model: PathBuf,
    /// Recording to decode (HDF5, with behaviour).
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
    #[command(flatten)]
    pub paths: DatasetPaths,
}
