//! `alternator eval`: decode a recording causally, bin by bin, with the step
//! kernel (exactly what the daemon computes) and compare against a Wiener
//! filter and a Kalman filter fitted on the model's training data.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context};
use serde::Serialize;
use tracing::{info, warn};

use crate::baselines::{KalmanDecoder, WienerFilter};
use crate::cli::EvalArgs;
use crate::matrix::Matrix;
use crate::metrics::Metrics;
use crate::model::{Mode, ModelFile, StepKernel};
use crate::recording::{file_hash, ReadOptions, Recording};

use super::eval_stress::{self, DropSpec, ForecastScore, MissingScore};
use super::train::read_options;

/// Metrics of one decoder (means over dimensions, plus per-dimension arrays).
#[derive(Debug, Clone, Serialize)]
pub struct DecoderScore {
    pub r2: f64,
    pub cc: f64,
    pub mae: f64,
    pub rmse: f64,
    pub r2_per_dim: Vec<f64>,
    pub cc_per_dim: Vec<f64>,
}

impl From<&Metrics> for DecoderScore {
    fn from(m: &Metrics) -> Self {
        Self {
            r2: m.mean_r2(),
            cc: m.mean_cc(),
            mae: m.mean_mae(),
            rmse: m.mean_rmse(),
            r2_per_dim: m.r2.clone(),
            cc_per_dim: m.cc.clone(),
        }
    }
}

/// Result of evaluating a model on a recording.
#[derive(Debug, Clone, Serialize)]
pub struct EvalReport {
    pub alternator: DecoderScore,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wiener: Option<DecoderScore>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kalman: Option<DecoderScore>,
    pub bins: usize,
    pub labelled_bins: usize,
    /// Mean kernel time per bin, microseconds.
    pub us_per_bin: f64,
    /// `--forecast`: behaviour forecasts per horizon.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub forecast: Vec<ForecastScore>,
    /// `--drop-rate`: accuracy with missing bins.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub missing: Option<MissingScore>,
    #[serde(skip)]
    pub decoded: Matrix,
    /// The fitted Kalman filter, when baselines ran.
    #[serde(skip)]
    pub kalman_decoder: Option<KalmanDecoder>,
}

/// Decodes `rec` with `mf` and, when `baseline_files` is non-empty, fits and
/// scores the baselines on them.
pub fn evaluate(
    mf: &ModelFile,
    rec: &Recording,
    baseline_files: &[(PathBuf, ReadOptions)],
    wiener_lags: usize,
) -> anyhow::Result<EvalReport> {
    let spec = &mf.model.spec;
    if rec.n_channels() != spec.channels {
        bail!("recording has {} channels but the model expects {}", rec.n_channels(), spec.channels);
    }
    if spec.mode != Mode::Decoding {
        bail!("eval scores behaviour decoding; this model is in latent mode");
    }
    let truth =
        rec.behavior.as_ref().context("recording has no behaviour dataset to score against (see --behavior-path)")?;
    if truth.cols != spec.dz {
        bail!("recording has {} behaviour dims but the model decodes {}", truth.cols, spec.dz);
    }
    let mask = rec.behavior_valid.as_deref();
    let mut k = StepKernel::new(mf.model.clone());
    let t0 = Instant::now();
    let decoded = k.decode_matrix(&rec.spikes);
    let us_per_bin = t0.elapsed().as_secs_f64() * 1e6 / rec.n_bins().max(1) as f64;
    let alt = Metrics::compute_masked(truth, &decoded, mask);
    let labelled_bins = rec.labelled_bins();

    let (mut wiener, mut kalman, mut kalman_decoder) = (None, None, None);
    if !baseline_files.is_empty() {
        let mut xs = Vec::new();
        let mut ys = Vec::new();
        for (path, opts) in baseline_files {
            let r = Recording::read_checked(path, opts)
                .with_context(|| format!("reading baseline training data {}", path.display()))?;
            let b =
                r.behavior.with_context(|| format!("baseline training data {} has no behaviour", path.display()))?;
            // Only labelled rows are usable for fitting.
            match &r.behavior_valid {
                Some(m) => {
                    let keep: Vec<usize> = (0..b.rows).filter(|&i| m[i]).collect();
                    xs.push(Matrix::from_vec(
                        keep.len(),
                        r.spikes.cols,
                        keep.iter().flat_map(|&i| r.spikes.row(i).to_vec()).collect(),
                    ));
                    ys.push(Matrix::from_vec(
                        keep.len(),
                        b.cols,
                        keep.iter().flat_map(|&i| b.row(i).to_vec()).collect(),
                    ));
                }
                None => {
                    xs.push(r.spikes);
                    ys.push(b);
                }
            }
        }
        let x = Matrix::vstack(&xs.iter().collect::<Vec<_>>());
        let y = Matrix::vstack(&ys.iter().collect::<Vec<_>>());
        let wf = WienerFilter::fit(&x, &y, wiener_lags, 1.0).context("fitting the Wiener filter")?;
        wiener = Some(DecoderScore::from(&Metrics::compute_masked(truth, &wf.predict(&rec.spikes), mask)));
        let kf = KalmanDecoder::fit(&x, &y).context("fitting the Kalman filter")?;
        kalman = Some(DecoderScore::from(&Metrics::compute_masked(truth, &kf.predict(&rec.spikes), mask)));
        kalman_decoder = Some(kf);
    }
    Ok(EvalReport {
        alternator: DecoderScore::from(&alt),
        wiener,
        kalman,
        bins: rec.n_bins(),
        labelled_bins,
        us_per_bin,
        forecast: Vec::new(),
        missing: None,
        decoded,
        kalman_decoder,
    })
}

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
    let mut baseline: Vec<(PathBuf, ReadOptions)> = Vec::new();
    if !a.no_baselines {
        if !a.baseline_data.is_empty() {
            baseline = a.baseline_data.iter().map(|p| (p.clone(), opts.clone())).collect();
        } else if let Some(t) = &mf.meta.training {
            for src in &t.data {
                let p = PathBuf::from(&src.path);
                if !p.exists() {
                    warn!(path = %p.display(), "Training recording of this model not found; baselines skipped (use --baseline-data).");
                    baseline.clear();
                    break;
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
        }
    }
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
