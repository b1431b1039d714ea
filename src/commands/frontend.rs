//! `alternator frontend`: runs the raw-voltage front end offline over an
//! archived recording and writes a session of binned threshold crossings.
//!
//! Input: `/voltage` `[T, C]` (float, µV) and root attribute `sample_rate`
//! (Hz). Output: a session [`Recording`] (`/spikes` `[bins, C]`, root
//! `bin_seconds`) plus `/seq` `[bins]` = the bin index `k` of each row and
//! the front end's settings and thresholds in `/frontend`. The raw data are
//! fed in blocks through the same [`FrontEnd`] the daemon runs, so the bins
//! are bit-identical to a live run over the same samples.

use std::path::Path;

use anyhow::{anyhow, bail, Context};
use hdf5_metno as hdf5;
use tracing::info;

use crate::cli::FrontendArgs;
use crate::frontend::{FrontEnd, FrontendConfig, FrontendError};
use crate::matrix::Matrix;
use crate::recording::{read_attr_f64, Recording};

use super::UsageError;

/// Rows of `/voltage` read per block.
const BLOCK_ROWS: usize = 8192;

/// The `[frontend]` table of a serve config file, or the defaults.
fn load_config(path: Option<&Path>) -> anyhow::Result<FrontendConfig> {
    let Some(path) = path else {
        return Ok(FrontendConfig::default());
    };
    let text =
        std::fs::read_to_string(path).map_err(|e| UsageError(format!("cannot read config {}: {e}", path.display())))?;
    let doc: toml::Table =
        toml::from_str(&text).map_err(|e| UsageError(format!("config {} does not parse: {e}", path.display())))?;
    match doc.get("frontend") {
        None => Ok(FrontendConfig::default()),
        Some(toml::Value::Table(t)) => FrontendConfig::from_toml(t, "frontend.").map_err(|problems| {
            UsageError(format!("config {} is invalid:\n  {}", path.display(), problems.join("\n  "))).into()
        }),
        Some(other) => {
            Err(UsageError(format!("config {}: frontend is a {}; expected a table", path.display(), other.type_str()))
                .into())
        }
    }
}

/// The opened raw recording.
struct Raw {
    voltage: hdf5::Dataset,
    rows: usize,
    channels: usize,
    rate: f64,
}

/// Opens `/voltage` and reads `sample_rate`, refusing anything else.
fn open_raw(path: &Path) -> anyhow::Result<Raw> {
    if !path.exists() {
        bail!("raw recording {} does not exist", path.display());
    }
    let file = hdf5::File::open(path).with_context(|| format!("cannot open {} as an HDF5 file", path.display()))?;
    if !file.link_exists("voltage") {
        bail!("{}: dataset `/voltage` is missing; expected raw voltage [samples, channels] in µV", path.display());
    }
    let voltage = file.dataset("voltage").with_context(|| format!("{}: opening `/voltage`", path.display()))?;
    let shape = voltage.shape();
    if shape.len() != 2 || shape[0] == 0 || shape[1] == 0 {
        bail!("{}: dataset `/voltage` has shape {shape:?}; expected [samples ≥ 1, channels ≥ 1]", path.display());
    }
    let dtype = voltage.dtype().and_then(|t| t.to_descriptor());
    if !matches!(dtype, Ok(hdf5::types::TypeDescriptor::Float(_))) {
        bail!("{}: dataset `/voltage` is not floating point ({dtype:?}); expected float32 µV", path.display());
    }
    let rate = read_attr_f64(path, "sample_rate")?.ok_or_else(|| {
        anyhow!("{}: root attribute `sample_rate` is missing; expected the sample rate in Hz", path.display())
    })?;
    if !(rate > 0.0 && rate.is_finite()) {
        bail!("{}: root attribute `sample_rate` is {rate}; expected a finite rate > 0 Hz", path.display());
    }
    Ok(Raw { voltage, rows: shape[0], channels: shape[1], rate })
}

/// Feeds the whole recording through `fe`; returns the bins and their indices.
fn run_blocks(raw: &Raw, path: &Path, fe: &mut FrontEnd) -> anyhow::Result<(Vec<f32>, Vec<u64>)> {
    let (c, mut counts, mut seq) = (raw.channels, Vec::new(), Vec::new());
    let mut block = vec![0f32; BLOCK_ROWS * c];
    let mut start = 0;
    while start < raw.rows {
        let n = BLOCK_ROWS.min(raw.rows - start);
        let rows = raw
            .voltage
            .read_slice_2d::<f32, _>((start..start + n, ..))
            .with_context(|| format!("{}: reading `/voltage` rows {start}..{}", path.display(), start + n))?;
        for ((i, ch), v) in rows.indexed_iter() {
            block[ch * n + i] = *v;
        }
        fe.process(start as u64, &block[..c * n], n, &mut |k, row| {
            seq.push(k);
            counts.extend_from_slice(row);
        })?;
        start += n;
    }
    Ok((counts, seq))
}

/// Writes the session, then `/seq` and the `/frontend` group beside it.
fn write_out(out: &Path, rec: &Recording, seq: &[u64], fe: &FrontEnd) -> anyhow::Result<()> {
    rec.write(out).with_context(|| format!("writing binned session {}", out.display()))?;
    let file = hdf5::File::open_rw(out).with_context(|| format!("reopening {}", out.display()))?;
    file.new_dataset_builder()
        .with_data(&ndarray::Array1::from(seq.to_vec()))
        .create("seq")
        .with_context(|| format!("{}: writing `/seq`", out.display()))?;
    let group = file.create_group("frontend").with_context(|| format!("{}: creating `/frontend`", out.display()))?;
    fe.store(&group).with_context(|| format!("{}: writing `/frontend`", out.display()))?;
    file.close().with_context(|| format!("closing {}", out.display()))
}

/// A front-end error that comes from the settings or the stream's shape is bad usage.
fn new_error(e: FrontendError, data: &Path) -> anyhow::Error {
    match e {
        FrontendError::InvalidConfig { .. }
        | FrontendError::BadStream { .. }
        | FrontendError::ThresholdCount { .. } => UsageError(format!("{e} (raw recording {})", data.display())).into(),
        other => anyhow::Error::new(other),
    }
}

pub fn run(a: FrontendArgs) -> anyhow::Result<()> {
    if !(a.bin_ms > 0.0 && a.bin_ms.is_finite()) {
        return Err(UsageError(format!("--bin-ms {}: expected a bin width > 0 ms", a.bin_ms)).into());
    }
    if a.out == a.data {
        return Err(UsageError(format!("--out {} is the input; expected a new file", a.out.display())).into());
    }
    let cfg = load_config(a.config.as_deref())?;
    let raw = open_raw(&a.data)?;
    let bin_seconds = a.bin_ms / 1000.0;
    let mut fe = FrontEnd::new(&cfg, raw.channels, raw.rate, bin_seconds).map_err(|e| new_error(e, &a.data))?;
    let (counts, seq) = run_blocks(&raw, &a.data, &mut fe)?;
    if seq.is_empty() {
        bail!(
            "{}: {} samples at {} Hz give no complete bin after the {} s calibration window",
            a.data.display(),
            raw.rows,
            raw.rate,
            cfg.calibration_s
        );
    }
    let rec = Recording {
        spikes: Matrix::from_vec(seq.len(), raw.channels, counts),
        behavior: None,
        behavior_valid: None,
        timestamps: None,
        bin_seconds,
    };
    write_out(&a.out, &rec, &seq, &fe)?;
    info!(
        path = %a.out.display(),
        bins = seq.len(),
        channels = raw.channels,
        first_bin = seq[0],
        non_finite = fe.non_finite_samples(),
        "Binned session written."
    );
    Ok(())
}
