//! One module per subcommand; each takes its parsed arguments and returns an
//! `anyhow` error with context for the binary edge to print.

mod bench;
mod demo;
mod eval;
mod export_nwb;
mod frontend;
mod models;
mod replay;
mod serve;
mod simulate;
pub mod train;

pub use eval::{evaluate, EvalReport};

use crate::cli::{Cli, Command};

/// A usage or configuration error: the binary exits with code 64.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Runs the parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Simulate(a) => simulate::run(a),
        Command::Train(a) => train::run(a),
        Command::Eval(a) => eval::run(a),
        Command::Serve(a) => serve::run(a),
        Command::Demo(a) => demo::run(a),
        Command::Replay(a) => replay::run(a),
        Command::Bench(a) => bench::run(a),
        Command::Models(a) => models::run(a),
        Command::Frontend(a) => frontend::run(a),
        Command::ExportNwb(a) => export_nwb::run(a),
    }
}
