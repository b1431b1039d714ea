//! `alternator models list|rollback`: the versioned models directory.

use tracing::{info, warn};

use crate::cli::{ModelsAction, ModelsArgs};
use crate::daemon::control;
use crate::daemon::models::ModelStore;
use crate::daemon::recorder::utc_stamp;

use super::UsageError;

pub fn run(a: ModelsArgs) -> anyhow::Result<()> {
    let store = ModelStore::new(&a.models_dir);
    match a.action {
        ModelsAction::List { json } => {
            let rows = store.list()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else if rows.is_empty() {
                println!("no generations in {}", a.models_dir.display());
            } else {
                println!("{:>4}  {:<9} {:>8}  {:>6}  {:<17} id", "gen", "status", "val R²", "parent", "created (UTC)");
                for r in rows {
                    println!(
                        "{:>4}  {:<9} {:>8}  {:>6}  {:<17} {}",
                        r.generation,
                        serde_json::to_value(r.status)?.as_str().unwrap_or("?"),
                        r.val_r2.map(|v| format!("{v:.4}")).unwrap_or_else(|| "-".into()),
                        r.parent.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
                        utc_stamp(r.created as u64),
                        r.id
                    );
                }
            }
            Ok(())
        }
        ModelsAction::Rollback { gen, control: ep, token } => {
            if !store.generations()?.contains(&gen) {
                return Err(UsageError(format!("generation {gen} does not exist in {}", a.models_dir.display())).into());
            }
            store.set_live(gen)?;
            info!(generation = gen, dir = %a.models_dir.display(), "Generation marked live for the next start.");
            if !ep.is_empty() {
                let ctx = zmq::Context::new();
                let cmd =
                    if token.is_empty() { format!("rollback {gen}") } else { format!("token={token} rollback {gen}") };
                match control::request(&ctx, &ep, &cmd, 10_000) {
                    Ok(v) if v["ok"] == true => {
                        println!("running daemon at {ep}: {}", v["message"].as_str().unwrap_or(""))
                    }
                    Ok(v) => warn!(control = %ep, error = %v["error"], "The running daemon did not switch."),
                    Err(e) => println!(
                        "no running daemon answered at {ep} ({e}); generation {gen} will be loaded at next start"
                    ),
                }
            }
            println!("generation {gen} is live in {}", a.models_dir.display());
            Ok(())
        }
    }
}
