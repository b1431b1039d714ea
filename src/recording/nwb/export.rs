//! Export of a daemon session file as an NWB 2.x file ([`export_session`]).
//!
//! Layout written (what pynwb reads without cached specifications, since
//! every type is from the `core` namespace): the root `NWBFile` attributes
//! (`nwb_version`, `namespace`, `neurodata_type`, `object_id`), the required
//! datasets (`file_create_date`, `identifier`, `session_description`,
//! `session_start_time`, `timestamps_reference_time`) and groups
//! (`acquisition`, `analysis`, `processing`, `stimulus/{presentation,
//! templates}`, `general`), a `general/subject`, the model id in
//! `general/notes` and the daemon config in `general/data_collection`;
//! `processing/ecephys/binned_spikes` (counts per bin), and under
//! `processing/behavior` the labelled true behaviour (`behavior`), the
//! decoded behaviour (`decoded`) and its flags (`decoded_imputed`,
//! `decoded_reset`, 0/1).
//!
//! Evenly spaced times are stored as `starting_time` + `rate`, others as
//! `timestamps` (nwbinspector flags regular `timestamps` as a violation).
//! Times: bin `k` of a stream whose first recorded seq is `s0` is at
//! `(seq_k − s0) · bin_seconds` seconds after `session_start_time` (the
//! session's `started_unix_s`); files without `/seq` use the row index.
//! The file is written to a sibling temporary path and renamed into place.

use std::io::Read;
use std::path::Path;

use hdf5::types::VarLenUnicode;
use hdf5::H5Type;
use hdf5_metno as hdf5;
use ndarray::ArrayView2;

use crate::matrix::Matrix;
use crate::recording::read::read_as_f64;
use crate::recording::{h5err, read_attr_f64, read_attr_str, ReadOptions, Recording, RecordingError};

use super::NwbError;

/// NWB schema version the written files declare.
pub const NWB_VERSION: &str = "2.8.0";
/// Bit of `/output_flags` marking an imputed output (see `wire::FLAG_IMPUTED`).
const FLAG_IMPUTED: u8 = 1;
/// Bit of `/output_flags` marking a reset (see `wire::FLAG_RESET`).
const FLAG_RESET: u8 = 2;

/// What goes into the exported file besides the session's data.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportOptions {
    /// Unique identifier of the NWB file; `None`: a fresh UUID.
    pub identifier: Option<String>,
    /// `session_description`.
    pub session_description: String,
    /// Subject id (`general/subject/subject_id`).
    pub subject_id: String,
    /// Latin binomial or NCBI taxonomy link, e.g. `Macaca mulatta`.
    pub species: Option<String>,
    /// `M`, `F`, `U` or `O`.
    pub sex: Option<String>,
    /// ISO 8601 duration, e.g. `P5Y`.
    pub age: Option<String>,
}

/// What [`export_session`] wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportSummary {
    /// The file's identifier.
    pub identifier: String,
    /// Spike bins written.
    pub bins: usize,
    /// Labelled behaviour rows written.
    pub behavior_rows: usize,
    /// Decoded outputs written.
    pub outputs: usize,
}

/// The session's data, with times in seconds from the session start.
struct SessionData {
    rec: Recording,
    times: Vec<f64>,
    outputs: Option<(Matrix, Vec<f64>, Vec<u8>)>,
    model_id: Option<String>,
    config: Option<String>,
    started_unix_s: f64,
}

/// Writes the daemon session `session` as the NWB file `out` (replacing it).
pub fn export_session(session: &Path, out: &Path, o: &ExportOptions) -> Result<ExportSummary, RecordingError> {
    let data = read_session(session)?;
    let identifier = o.identifier.clone().unwrap_or_else(uuid4);
    let tmp = out.with_extension(format!("nwb.tmp-{}", std::process::id()));
    let written = write_file(&tmp, out, &data, o, &identifier);
    let renamed = written.and_then(|s| {
        std::fs::rename(&tmp, out).map(|()| s).map_err(|source| RecordingError::Io {
            path: out.to_path_buf(),
            context: format!("renaming the finished temporary file {}", tmp.display()),
            source,
        })
    });
    if renamed.is_err() {
        // Best effort: the temporary file is useless once the write failed.
        let _ = std::fs::remove_file(&tmp);
    }
    renamed
}

fn read_session(path: &Path) -> Result<SessionData, RecordingError> {
    let rec = Recording::read(path, &ReadOptions::default())?;
    let file = hdf5::File::open(path).map_err(|source| RecordingError::Open { path: path.to_path_buf(), source })?;
    if super::is_nwb(&file, path) {
        let reason = "is already an NWB file; export-nwb converts daemon session files".to_string();
        return Err(NwbError::BadOption { path: path.to_path_buf(), reason }.into());
    }
    let column = |name: &str| -> Result<Option<Vec<f64>>, RecordingError> {
        match file.dataset(name) {
            Ok(ds) => read_as_f64(&ds, path, name).map(Some),
            Err(_) => Ok(None),
        }
    };
    let seq = column("seq")?.filter(|s| s.len() == rec.n_bins());
    let s0 = seq.as_ref().and_then(|s| s.first().copied()).unwrap_or(0.0);
    let time_of = |s: f64| (s - s0) * rec.bin_seconds;
    let times = match &seq {
        Some(s) => s.iter().map(|&v| time_of(v)).collect(),
        None => (0..rec.n_bins()).map(|k| k as f64 * rec.bin_seconds).collect(),
    };
    let outputs = match (column("outputs")?, file.dataset("outputs").map(|d| d.shape()), column("output_seq")?) {
        (Some(values), Ok(shape), Some(oseq)) if shape.len() == 2 && shape[0] == oseq.len() && shape[0] > 0 => {
            let flags = column("output_flags")?.unwrap_or_default();
            let flags: Vec<u8> = (0..oseq.len()).map(|i| flags.get(i).map_or(0, |&f| f as u8)).collect();
            let m = Matrix::from_vec(shape[0], shape[1], values.iter().map(|&v| v as f32).collect());
            Some((m, oseq.iter().map(|&v| time_of(v)).collect(), flags))
        }
        _ => None,
    };
    Ok(SessionData {
        times,
        outputs,
        model_id: read_attr_str(path, "model_id")?,
        config: read_attr_str(path, "config")?,
        started_unix_s: read_attr_f64(path, "started_unix_s")?.unwrap_or(0.0),
        rec,
    })
}

fn write_file(
    target: &Path,
    report: &Path,
    d: &SessionData,
    o: &ExportOptions,
    identifier: &str,
) -> Result<ExportSummary, RecordingError> {
    let file = hdf5::File::create(target).map_err(|e| h5err(report, "creating the file", e))?;
    let w = Writer { path: report };
    w.root(&file, d, o, identifier)?;
    let ecephys = w.module(
        &file,
        "ecephys",
        &format!("Spike counts binned at {} ms by the alternator daemon", d.rec.bin_seconds * 1e3),
    )?;
    let spikes = Series { data: &d.rec.spikes, times: &d.times, unit: "counts" };
    w.series(
        &ecephys,
        "binned_spikes",
        &spikes,
        &format!(
            "Spike counts per channel in bins of {} s (bin width {} ms); timestamps are bin starts",
            d.rec.bin_seconds,
            d.rec.bin_seconds * 1e3
        ),
    )?;
    let behavior = w.module(&file, "behavior", "True and decoded behaviour of the session")?;
    let behavior_rows = w.true_behavior(&behavior, d)?;
    let outputs = w.decoded(&behavior, d)?;
    file.flush().map_err(|e| h5err(report, "flushing the file", e))?;
    file.close().map_err(|e| h5err(report, "closing the file", e))?;
    Ok(ExportSummary { identifier: identifier.to_string(), bins: d.rec.n_bins(), behavior_rows, outputs })
}

/// One TimeSeries to write: `[N, C]` data with `N` timestamps.
struct Series<'a> {
    data: &'a Matrix,
    times: &'a [f64],
    unit: &'a str,
}

/// HDF5 writing helpers; errors name `path`, the final file.
struct Writer<'a> {
    path: &'a Path,
}

impl Writer<'_> {
    fn err(&self, what: &str) -> impl FnOnce(hdf5::Error) -> RecordingError + '_ {
        let context = format!("writing {what}");
        move |e| h5err(self.path, &context, e)
    }

    fn attr_str(&self, loc: &hdf5::Location, name: &str, value: &str) -> Result<(), RecordingError> {
        let v: VarLenUnicode = value.replace('\0', " ").parse().map_err(|_| self.bad_string(name))?;
        let a = loc.new_attr::<VarLenUnicode>().shape(()).create(name).map_err(self.err(name))?;
        a.write_scalar(&v).map_err(self.err(name))
    }

    fn attr_num<T: H5Type>(&self, loc: &hdf5::Location, name: &str, value: T) -> Result<(), RecordingError> {
        let a = loc.new_attr::<T>().shape(()).create(name).map_err(self.err(name))?;
        a.write_scalar(&value).map_err(self.err(name))
    }

    fn bad_string(&self, name: &str) -> RecordingError {
        NwbError::BadOption { path: self.path.to_path_buf(), reason: format!("`{name}` cannot be stored as a string") }
            .into()
    }

    fn str_dataset(&self, group: &hdf5::Group, name: &str, value: &str) -> Result<hdf5::Dataset, RecordingError> {
        let v: VarLenUnicode = value.replace('\0', " ").parse().map_err(|_| self.bad_string(name))?;
        let ds = group.new_dataset::<VarLenUnicode>().shape(()).create(name).map_err(self.err(name))?;
        ds.write_scalar(&v).map_err(self.err(name))?;
        Ok(ds)
    }

    /// Marks `loc` as a core neurodata type with a fresh object id.
    fn typed(&self, loc: &hdf5::Location, neurodata_type: &str) -> Result<(), RecordingError> {
        self.attr_str(loc, "namespace", "core")?;
        self.attr_str(loc, "neurodata_type", neurodata_type)?;
        self.attr_str(loc, "object_id", &uuid4())
    }

    fn group(&self, parent: &hdf5::Group, name: &str) -> Result<hdf5::Group, RecordingError> {
        parent.create_group(name).map_err(self.err(name))
    }

    fn root(&self, file: &hdf5::File, d: &SessionData, o: &ExportOptions, id: &str) -> Result<(), RecordingError> {
        self.typed(file, "NWBFile")?;
        self.attr_str(file, "nwb_version", NWB_VERSION)?;
        let now: VarLenUnicode =
            iso8601(crate::model::file::now_unix_s()).parse().map_err(|_| self.bad_string("date"))?;
        file.new_dataset_builder()
            .with_data(&[now])
            .create("file_create_date")
            .map_err(self.err("file_create_date"))?;
        self.str_dataset(file, "identifier", id)?;
        self.str_dataset(file, "session_description", &o.session_description)?;
        let start = iso8601(d.started_unix_s);
        self.str_dataset(file, "session_start_time", &start)?;
        self.str_dataset(file, "timestamps_reference_time", &start)?;
        for name in ["acquisition", "analysis", "processing"] {
            self.group(file, name)?;
        }
        let stimulus = self.group(file, "stimulus")?;
        self.group(&stimulus, "presentation")?;
        self.group(&stimulus, "templates")?;
        let general = self.group(file, "general")?;
        let model = d.model_id.as_deref().unwrap_or("unknown");
        self.str_dataset(&general, "notes", &format!("Decoded online by the alternator daemon with model {model}."))?;
        if let Some(cfg) = &d.config {
            self.str_dataset(&general, "data_collection", &format!("alternator daemon configuration (TOML):\n{cfg}"))?;
        }
        self.subject(&general, o)
    }

    fn subject(&self, general: &hdf5::Group, o: &ExportOptions) -> Result<(), RecordingError> {
        let subject = self.group(general, "subject")?;
        self.typed(&subject, "Subject")?;
        self.str_dataset(&subject, "subject_id", &o.subject_id)?;
        if let Some(species) = &o.species {
            self.str_dataset(&subject, "species", species)?;
        }
        if let Some(sex) = &o.sex {
            self.str_dataset(&subject, "sex", sex)?;
        }
        if let Some(age) = &o.age {
            let ds = self.str_dataset(&subject, "age", age)?;
            self.attr_str(&ds, "reference", "birth")?;
        }
        Ok(())
    }

    fn module(&self, file: &hdf5::File, name: &str, description: &str) -> Result<hdf5::Group, RecordingError> {
        let processing = file.group("processing").map_err(self.err("processing"))?;
        let g = self.group(&processing, name)?;
        self.typed(&g, "ProcessingModule")?;
        self.attr_str(&g, "description", description)?;
        Ok(g)
    }

    fn series(
        &self,
        parent: &hdf5::Group,
        name: &str,
        s: &Series<'_>,
        description: &str,
    ) -> Result<(), RecordingError> {
        let g = self.group(parent, name)?;
        self.typed(&g, "TimeSeries")?;
        self.attr_str(&g, "description", description)?;
        self.attr_str(&g, "comments", "no comments")?;
        let view = ArrayView2::from_shape((s.data.rows, s.data.cols), &s.data.data)
            .expect("invariant: a Matrix holds rows × cols values");
        let data = g.new_dataset_builder().with_data(&view).create("data").map_err(self.err(name))?;
        self.attr_str(&data, "unit", s.unit)?;
        self.attr_num(&data, "conversion", 1.0f32)?;
        self.attr_num(&data, "offset", 0.0f32)?;
        self.attr_num(&data, "resolution", -1.0f32)?;
        match regular_rate(s.times) {
            // Regular samples are stored as a start and a rate, as NWB best practice asks.
            Some(rate) => {
                let st = g.new_dataset::<f64>().shape(()).create("starting_time").map_err(self.err(name))?;
                st.write_scalar(&s.times[0]).map_err(self.err(name))?;
                self.attr_num(&st, "rate", rate)?;
                self.attr_str(&st, "unit", "seconds")
            }
            None => {
                let ts = g.new_dataset_builder().with_data(s.times).create("timestamps").map_err(self.err(name))?;
                self.attr_num(&ts, "interval", 1i32)?;
                self.attr_str(&ts, "unit", "seconds")
            }
        }
    }

    /// Writes the labelled rows of the true behaviour; returns how many.
    fn true_behavior(&self, module: &hdf5::Group, d: &SessionData) -> Result<usize, RecordingError> {
        let Some(b) = &d.rec.behavior else { return Ok(0) };
        let rows: Vec<usize> = (0..d.rec.n_bins()).filter(|&t| d.rec.is_labelled(t)).collect();
        if rows.is_empty() {
            return Ok(0);
        }
        let data = Matrix::from_vec(rows.len(), b.cols, rows.iter().flat_map(|&t| b.row(t).to_vec()).collect());
        let times: Vec<f64> = rows.iter().map(|&t| d.times[t]).collect();
        let s = Series { data: &data, times: &times, unit: "a.u." };
        self.series(module, "behavior", &s, "True behaviour sent to the daemon, at the bins it labelled")?;
        Ok(rows.len())
    }

    /// Writes the decoded outputs and their flags; returns how many outputs.
    fn decoded(&self, module: &hdf5::Group, d: &SessionData) -> Result<usize, RecordingError> {
        let Some((out, times, flags)) = &d.outputs else { return Ok(0) };
        let s = Series { data: out, times, unit: "a.u." };
        self.series(module, "decoded", &s, "Behaviour decoded causally by the daemon, one row per bin")?;
        for (name, bit, what) in [
            (
                "decoded_imputed",
                FLAG_IMPUTED,
                "1 where the output was decoded without spikes (a missing bin was imputed)",
            ),
            ("decoded_reset", FLAG_RESET, "1 where the decoder state was reset before this output"),
        ] {
            let m =
                Matrix::from_vec(flags.len(), 1, flags.iter().map(|&f| f32::from(u8::from(f & bit != 0))).collect());
            self.series(module, name, &Series { data: &m, times, unit: "n.a." }, what)?;
        }
        Ok(out.rows)
    }
}

/// The sampling rate (Hz) when `times` are evenly spaced (two or more
/// samples, every step equal to the first within 1e-9 relative), else `None`.
fn regular_rate(times: &[f64]) -> Option<f64> {
    let step = times.get(1)? - times.first()?;
    let tol = 1e-9 * step.abs().max(1e-12);
    let regular = step > 0.0 && times.windows(2).all(|w| ((w[1] - w[0]) - step).abs() <= tol.max(1e-12));
    regular.then(|| 1.0 / step)
}

/// A random (version 4) UUID, from the OS's random source; falls back to a
/// hash of the time and process id if that cannot be read.
fn uuid4() -> String {
    let mut b = [0u8; 16];
    let read = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut b));
    if read.is_err() {
        use std::hash::{BuildHasher, Hasher};
        for (i, chunk) in b.chunks_mut(8).enumerate() {
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u64(i as u64 ^ u64::from(std::process::id()));
            chunk.copy_from_slice(&h.finish().to_le_bytes());
        }
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &hex[0..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..32])
}

/// `unix_s` as an ISO 8601 UTC time with microseconds, e.g.
/// `2024-05-01T12:00:00.000000+00:00`.
fn iso8601(unix_s: f64) -> String {
    let micros = (unix_s * 1e6).round() as i64;
    let (secs, us) = (micros.div_euclid(1_000_000), micros.rem_euclid(1_000_000));
    let t = crate::clock::utc(secs);
    format!("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{us:06}+00:00", t.year, t.month, t.day, t.hour, t.minute, t.second)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso8601_matches_known_dates() {
        assert_eq!(iso8601(0.0), "1970-01-01T00:00:00.000000+00:00");
        // 2024-02-29T12:34:56.5Z (leap day), computed with `date -u -d @1709210096.5`.
        assert_eq!(iso8601(1_709_210_096.5), "2024-02-29T12:34:56.500000+00:00");
        assert_eq!(iso8601(951_782_400.0), "2000-02-29T00:00:00.000000+00:00");
    }

    #[test]
    fn regular_rate_only_for_even_steps() {
        let even: Vec<f64> = (0..100).map(|k| k as f64 * 0.02).collect();
        assert!((regular_rate(&even).unwrap() - 50.0).abs() < 1e-6);
        let mut gap = even.clone();
        gap.remove(10);
        assert_eq!(regular_rate(&gap), None);
        assert_eq!(regular_rate(&even[..1]), None);
    }

    #[test]
    fn uuid4_has_the_version_and_variant_bits() {
        let u = uuid4();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
        assert!("89ab".contains(&u[19..20]), "{u}");
        assert_ne!(u, uuid4());
    }
}
