//! `alternator eval`: the command line of [`crate::evaluation`] (options,
//! baseline files from the model's training record, table, JSON, plot).

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::Context;
use tracing::{info, warn};

use super::train::read_options;
use crate::cli::EvalArgs;
use crate::evaluation::stress::{self as eval_stress, DropSpec};
use crate::evaluation::{evaluate, EvalReport};
use crate::matrix::Matrix;
use crate::model::ModelFile;
use crate::recording::{file_hash, ReadOptions, Recording};

fn table(r: &EvalReport) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "{:<12} {:>8} {:>8} {:>8} {:>8}   R² per dim", "decoder", "R²", "CC", "MAE", "RMSE");
    for (name, d) in [("alternator", Some(&r.alternator)), ("wiener", r.wiener.as_ref()), ("kalman", r.kalman.as_ref())]
    {
        if let Some(d) = d {
            let per: Vec<String> = d.r2_per_dim.iter().map(|v| format!("{v:.3}")).collect();
            let _ = writeln!(
                s,
                "{:<12} {:>8.4} {:>8.4} {:>8.4} {:>8.4}   [{}]",
                name,
                d.r2,
                d.cc,
                d.mae,
                d.rmse,
                per.join(", ")
            );
        }
    }
    let _ = writeln!(s, "{} bins ({} labelled), alternator kernel {:.2} µs/bin", r.bins, r.labelled_bins, r.us_per_bin);
    s
}

/// An SVG with one panel per behaviour dimension: truth (grey) and decoded (blue).
fn plot_svg(truth: &Matrix, decoded: &Matrix, max_bins: usize) -> String {
    let n = truth.rows.min(max_bins);
    let (w, ph) = (1000.0, 160.0);
    let mut s = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{}" font-family="sans-serif" font-size="12">"#,
        ph * truth.cols as f64 + 20.0
    );
    for d in 0..truth.cols {
        let y0 = d as f64 * ph + 10.0;
        let vals: Vec<f32> =
            (0..n).flat_map(|t| [truth.get(t, d), decoded.get(t, d)]).filter(|v| v.is_finite()).collect();
        let lo = vals.iter().cloned().fold(f32::INFINITY, f32::min) as f64;
        let hi = vals.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
        let span = (hi - lo).max(1e-9);
        let _ = write!(s, r#"<text x="5" y="{}">dim {d}: truth (grey) vs decoded (blue)</text>"#, y0 + 12.0);
        for (m, colour) in [(truth, "#999"), (decoded, "#1f5fbf")] {
            let pts: Vec<String> = (0..n)
                .filter(|&t| m.get(t, d).is_finite())
                .map(|t| {
                    format!(
                        "{:.1},{:.1}",
                        t as f64 / n.max(2) as f64 * w,
                        y0 + 20.0 + (1.0 - (m.get(t, d) as f64 - lo) / span) * (ph - 30.0)
                    )
                })
                .collect();
            let _ =
                write!(s, r#"<polyline fill="none" stroke="{colour}" stroke-width="1" points="{}"/>"#, pts.join(" "));
        }
    }
    s.push_str("</svg>\n");
    s
}

/// The `--forecast` and `--drop-*` options, checked (exit code 64 naming the flag).
fn stress_options(a: &EvalArgs) -> Result<Option<DropSpec>, super::UsageError> {
    eval_stress::check_horizons(&a.forecast)?;
    let Some(rate) = a.drop_rate else { return Ok(None) };
    let d = DropSpec { rate, burst: a.drop_burst, seed: a.drop_seed };
    eval_stress::check_drop(&d)?;
    Ok(Some(d))
}

/// Where the baselines are fitted: `--baseline-data`, else the model's own
/// training recordings (none when one of them is gone; a warning when one changed).
fn baseline_sources(a: &EvalArgs, mf: &ModelFile, opts: &ReadOptions) -> Vec<(PathBuf, ReadOptions)> {
    if !a.baseline_data.is_empty() {
        return a.baseline_data.iter().map(|p| (p.clone(), opts.clone())).collect();
    }
    let Some(t) = &mf.meta.training else { return Vec::new() };
    let mut baseline = Vec::new();
    for src in &t.data {
        let p = PathBuf::from(&src.path);
        if !p.exists() {
            warn!(path = %p.display(), "Training recording of this model not found; baselines skipped (use --baseline-data).");
            return Vec::new();
        }
        if file_hash(&p).map(|h| h != src.hash).unwrap_or(true) {
            warn!(path = %p.display(), "Training recording changed since the model was trained (hash differs).");
        }
        let mut o = ReadOptions { spikes_path: src.spikes_path.clone(), ..ReadOptions::default() };
        if src.behavior_path.is_some() {
            o.behavior_path = src.behavior_path.clone();
        }
        if let Some(nwb) = src.nwb.clone().and_then(|v| serde_json::from_value(v).ok()) {
            o.nwb = nwb;
        }
        baseline.push((p, o));
    }
    baseline
}

pub fn run(a: EvalArgs) -> anyhow::Result<()> {
    let drop = stress_options(&a)?;
    let mf = ModelFile::load(&a.model).with_context(|| format!("loading model {}", a.model.display()))?;
    let mut opts = read_options(&a.paths);
    if opts.nwb.bin_seconds.is_none() {
        // An NWB file is binned at the width the model was trained with.
        opts.nwb.bin_seconds = mf.meta.training_bin_seconds();
    }
    let rec =
        Recording::read_checked(&a.data, &opts).with_context(|| format!("reading recording {}", a.data.display()))?;
    let baseline = if a.no_baselines { Vec::new() } else { baseline_sources(&a, &mf, &opts) };
    let mut report = evaluate(&mf, &rec, &baseline, a.wiener_lags)
        .with_context(|| format!("evaluating {} on {}", a.model.display(), a.data.display()))?;
    report.forecast = eval_stress::forecast_scores(&mf.model, &rec, &a.forecast);
    report.missing = drop.map(|d| eval_stress::missing_score(&mf.model, &rec, report.kalman_decoder.as_ref(), &d));
    if let Some(p) = &a.plot {
        let truth = rec.behavior.as_ref().expect("invariant: evaluate checked behaviour exists");
        std::fs::write(p, plot_svg(truth, &report.decoded, 1500))
            .with_context(|| format!("writing plot {}", p.display()))?;
        info!(path = %p.display(), "Plot written.");
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", table(&report));
        print!("{}", eval_stress::table(&report.forecast, report.missing.as_ref()));
    }
    Ok(())
}
