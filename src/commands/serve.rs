//! `alternator serve`: load and validate the config, load the model, start
//! the daemon, and wait for signals (SIGINT/SIGTERM stop it, SIGHUP asks for
//! a retraining run) on a small tokio runtime.

use std::path::PathBuf;

use anyhow::Context;
use tracing::{info, warn};

use crate::cli::ServeArgs;
use crate::daemon::config::ServeConfig;
use crate::daemon::Daemon;
use crate::model::ModelFile;

use super::UsageError;

/// Builds the effective config: file (or defaults) plus command-line overrides, validated.
pub fn effective_config(a: &ServeArgs) -> anyhow::Result<ServeConfig> {
    let mut cfg = match &a.config {
        Some(p) => ServeConfig::load(p).map_err(|e| UsageError(e.to_string()))?,
        None => ServeConfig::default(),
    };
    if let Some(m) = &a.model {
        cfg.model.path = Some(m.clone());
    }
    if let Some(e) = &a.ingest {
        cfg.ingest.set_endpoint(e);
    }
    if let Some(e) = &a.publish {
        cfg.publish.endpoint = e.clone();
    }
    if let Some(e) = &a.control {
        cfg.control.endpoint = e.clone();
    }
    if let Some(d) = &a.record_dir {
        cfg.record.dir = d.clone();
    }
    if let Some(d) = &a.models_dir {
        cfg.model.models_dir = d.clone();
    }
    if a.no_record {
        cfg.record.enabled = false;
    }
    if let Some(l) = &a.admin {
        cfg.admin.enabled = true;
        cfg.admin.listen = l.clone();
    }
    let origin = a.config.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "(defaults + flags)".into());
    cfg.validate(&origin).map_err(|e| UsageError(e.to_string()))?;
    Ok(cfg)
}

/// The model to start with: `--model`, else the live generation in
/// `models_dir` (so a restart resumes the newest accepted model), else `model.path`.
pub fn initial_model(cfg: &ServeConfig, cli_model: Option<&PathBuf>) -> anyhow::Result<(PathBuf, ModelFile)> {
    let live = crate::daemon::retrain::live_model_path(&cfg.model.models_dir)
        .with_context(|| format!("looking for a live model in {}", cfg.model.models_dir.display()))?;
    let path = match (cli_model, live, &cfg.model.path) {
        (Some(p), _, _) => p.clone(),
        (None, Some(p), _) => p,
        (None, None, Some(p)) => p.clone(),
        (None, None, None) => {
            return Err(UsageError(format!(
                "no model: give --model FILE or model.path, or put trained generations in {} (model.models_dir)",
                cfg.model.models_dir.display()
            ))
            .into())
        }
    };
    let mf = ModelFile::load(&path).with_context(|| format!("loading model {}", path.display()))?;
    Ok((path, mf))
}

/// Creates `dir` if needed and checks that files can be created in it.
fn check_writable_dir(dir: &std::path::Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let probe = dir.join(format!(".alternator-write-check-{}", std::process::id()));
    std::fs::write(&probe, b"").with_context(|| format!("creating a file in {}", dir.display()))?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

pub fn run(a: ServeArgs) -> anyhow::Result<()> {
    let cfg = effective_config(&a)?;
    if cfg.record.enabled {
        check_writable_dir(&cfg.record.dir)
            .with_context(|| format!("record.dir {} is not usable for session files", cfg.record.dir.display()))?;
    }
    let (path, model) = initial_model(&cfg, a.model.as_ref())?;
    info!(path = %path.display(), id = %model.meta.id, "Model loaded.");
    let ctx = zmq::Context::new();
    let daemon = Daemon::start(&cfg, model, &ctx).context("starting the daemon")?;
    wait_for_signals(&daemon)?;
    let summary = daemon.shutdown();
    for s in &summary.sessions {
        println!("session file: {} ({} bins, {} labelled)", s.path.display(), s.bins, s.labelled_bins);
    }
    Ok(())
}

/// Blocks until SIGINT or SIGTERM; SIGHUP triggers retraining.
pub fn wait_for_signals(daemon: &Daemon) -> anyhow::Result<()> {
    let rt =
        tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the signal runtime")?;
    rt.block_on(async {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let mut hup = signal(SignalKind::hangup())?;
        loop {
            tokio::select! {
                _ = term.recv() => { info!("SIGTERM: shutting down."); break; }
                _ = int.recv() => { info!("SIGINT: shutting down."); break; }
                _ = hup.recv() => {
                    if daemon.trigger_retrain() {
                        info!("SIGHUP: retraining requested.");
                    } else {
                        warn!("SIGHUP: retraining is not enabled (retrain.enabled = false).");
                    }
                }
            }
        }
        Ok::<(), std::io::Error>(())
    })?;
    Ok(())
}
