//! `alternator simulate`: write a seeded synthetic session.

use anyhow::Context;
use tracing::info;

use crate::cli::{SimKind, SimPreset, SimulateArgs};
use crate::simulate::{simulate_lorenz, simulate_reach_preset, ReachPreset, SimParams};

use super::UsageError;

pub fn run(a: SimulateArgs) -> anyhow::Result<()> {
    if !(a.minutes > 0.0 && a.minutes <= 24.0 * 60.0) {
        return Err(
            UsageError(format!("--minutes {}: expected a positive number of minutes up to 1440", a.minutes)).into()
        );
    }
    if a.channels == 0 || a.channels > 100_000 {
        return Err(UsageError(format!("--channels {}: expected 1..=100000", a.channels)).into());
    }
    let p = SimParams { minutes: a.minutes, seed: a.seed, array_seed: a.array_seed, channels: a.channels };
    let rec = match (a.kind, a.preset) {
        (SimKind::Reach, None | Some(SimPreset::Realistic)) => simulate_reach_preset(&p, ReachPreset::Realistic),
        (SimKind::Reach, Some(SimPreset::Simple)) => simulate_reach_preset(&p, ReachPreset::Simple),
        (SimKind::Lorenz, None) => simulate_lorenz(&p),
        (SimKind::Lorenz, Some(_)) => {
            return Err(UsageError("--preset: only `simulate reach` has presets".to_string()).into());
        }
    };
    rec.write(&a.out).with_context(|| format!("writing simulated session to {}", a.out.display()))?;
    info!(path = %a.out.display(), bins = rec.n_bins(), channels = rec.n_channels(), behavior_dims = rec.n_behavior(), "Simulated session written.");
    Ok(())
}
