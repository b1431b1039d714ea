//! One module per subcommand; each takes its parsed arguments and returns an
//! `anyhow` error with context for the binary edge to print.

mod bench;
mod demo;
mod eval;
mod export_nwb;
mod frontend;
mod models;
mod replay;
mod sample;
mod serve;
mod simulate;
pub mod train;
mod tune;

use crate::cli::{Cli, Command};

/// A usage or configuration error: the binary exits with code 64.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

impl From<crate::evaluation::stress::StressOptionError> for UsageError {
    fn from(e: crate::evaluation::stress::StressOptionError) -> Self {
        Self(e.0)
    }
}

/// A resource another process holds (an endpoint already bound): exit code 69 (EX_UNAVAILABLE).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UnavailableError(pub String);

/// The process exit code for an error: 64 bad usage or configuration, 69 a
/// resource held by someone else, 1 anything else.
pub fn exit_code(err: &anyhow::Error) -> i32 {
    if err.downcast_ref::<UsageError>().is_some() {
        64
    } else if err.downcast_ref::<UnavailableError>().is_some() {
        69
    } else {
        1
    }
}

/// Runs the parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Simulate(a) => simulate::run(a),
        Command::Train(a) => train::run(a),
        Command::Tune(a) => tune::run(a),
        Command::Eval(a) => eval::run(a),
        Command::Sample(a) => sample::run(a),
        Command::Serve(a) => serve::run(a),
        Command::Demo(a) => demo::run(a),
        Command::Replay(a) => replay::run(a),
        Command::Bench(a) => bench::run(a),
        Command::Models(a) => models::run(a),
        Command::Frontend(a) => frontend::run(a),
        Command::ExportNwb(a) => export_nwb::run(a),
        Command::ReadRecording { path, options } => {
            let mut out = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
            Ok(crate::recording::child::serve_read(&path, &options, &mut out)?)
        }
    }
}
