//! Binary entry point: parse arguments, set up logging, dispatch, map errors
//! to exit codes (64 bad usage or configuration, 69 an endpoint in use, 1 otherwise).

use clap::Parser;

use alternator::commands;

fn main() {
    // candle hands even small matmuls to rayon; on a 2-core machine that
    // costs more than it gains and would compete with the decode loop.
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        std::env::set_var("RAYON_NUM_THREADS", "1");
    }
    let cli = match alternator::cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // --help / --version print and succeed; anything else is bad usage: 64.
            let code = if e.use_stderr() { 64 } else { 0 };
            let _ = e.print();
            std::process::exit(code);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    if let Err(err) = commands::run(cli) {
        eprintln!("error: {err}");
        for cause in err.chain().skip(1) {
            eprintln!("  caused by: {cause}");
        }
        std::process::exit(commands::exit_code(&err));
    }
}
