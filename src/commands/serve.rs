//! `alternator serve`: load and validate the config, load the model, start
//! the daemon, and wait for signals (SIGINT/SIGTERM stop it, SIGHUP asks for
//! a retraining run) on a small tokio runtime.

use std::path::PathBuf;

use anyhow::Context;
use tracing::{error, info, warn};

use crate::cli::ServeArgs;
use crate::daemon::config::ServeConfig;
use crate::daemon::Daemon;
use crate::model::ModelFile;

use super::{UnavailableError, UsageError};

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

/// The model to start with, in this order: `--model` (an explicit choice
/// wins, and its errors are errors); else the `LIVE` generation in
/// `models_dir`, or the newest accepted generation that loads (so a restart
/// resumes retraining's latest model even from a damaged directory — what
/// is skipped is logged at ERROR); else `model.path`.
pub fn initial_model(cfg: &ServeConfig, cli_model: Option<&PathBuf>) -> anyhow::Result<(PathBuf, ModelFile)> {
    if cli_model.is_none() {
        let store = crate::daemon::models::ModelStore::new(&cfg.model.models_dir);
        let (found, skipped) = store.startup_model();
        for s in &skipped {
            error!(models_dir = %cfg.model.models_dir.display(), skipped = %s, "Skipping an unusable entry of the models directory.");
        }
        if let Some((g, mf)) = found {
            return Ok((store.path(g), mf));
        }
    }
    let path = match (cli_model, &cfg.model.path) {
        (Some(p), _) => p.clone(),
        (None, Some(p)) => p.clone(),
        (None, None) => {
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
    let daemon = match Daemon::start(&cfg, model, &ctx) {
        Ok(d) => d,
        Err(e) if e.is_address_in_use() => {
            return Err(UnavailableError(format!("{e} (another process holds it; is a daemon already running?)")).into())
        }
        Err(e) if e.is_shm_unavailable() => {
            let hint = "another process created this shared-memory service with other settings, or /dev/shm is full";
            return Err(UnavailableError(format!("{e} ({hint})")).into());
        }
        Err(e) => return Err(anyhow::Error::new(e).context("starting the daemon")),
    };
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
