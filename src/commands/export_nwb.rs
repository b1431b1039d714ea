//! `alternator export-nwb`: write a daemon session file as an NWB 2.x file
//! (layout in `recording::nwb`'s export module).

use anyhow::Context;
use tracing::info;

use crate::cli::ExportNwbArgs;
use crate::recording::nwb::{export_session, ExportOptions};

use super::UsageError;

pub fn run(a: ExportNwbArgs) -> anyhow::Result<()> {
    if let Some(sex) = &a.sex {
        if !["M", "F", "U", "O"].contains(&sex.as_str()) {
            return Err(UsageError(format!("--sex {sex}: expected M, F, U or O")).into());
        }
    }
    let opts = ExportOptions {
        identifier: a.identifier.clone(),
        session_description: a.session_description.clone(),
        subject_id: a.subject.clone(),
        species: a.species.clone(),
        sex: a.sex.clone(),
        age: a.age.clone(),
    };
    let s = export_session(&a.session, &a.out, &opts)
        .with_context(|| format!("exporting {} to {}", a.session.display(), a.out.display()))?;
    info!(path = %a.out.display(), identifier = %s.identifier, bins = s.bins, "NWB file written.");
    println!(
        "wrote {}: {} bins, {} labelled behaviour rows, {} decoded outputs; identifier {}",
        a.out.display(),
        s.bins,
        s.behavior_rows,
        s.outputs,
        s.identifier
    );
    Ok(())
}
