//! Integration tests of `alternator::recording` against real HDF5 files in
//! temporary directories: files written by this crate, by the HDF5 library
//! directly (every spike dtype, malformed layouts) and by h5py.

use std::path::{Path, PathBuf};
use std::process::Command;

use alternator::matrix::Matrix;
use alternator::recording::{
    file_hash, read_attr_f64, read_attr_str, AppendWriter, ReadOptions, Recording, RecordingError,
};
use alternator::simulate::{simulate_lorenz, simulate_reach, SimParams};
use hdf5_metno as hdf5;
use ndarray::{Array1, Array2, Array3};

const T: usize = 50;
const C: usize = 4;

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

/// Counts 0..=9 in a recognisable pattern.
fn counts(t: usize, c: usize) -> Vec<u8> {
    (0..t * c).map(|i| ((i * 7 + i / c) % 10) as u8).collect()
}

fn set_attr<V: hdf5::H5Type>(file: &hdf5::File, name: &str, v: V) {
    file.new_attr::<V>().shape(()).create(name).unwrap().write_scalar(&v).unwrap();
}

fn put<V: hdf5::H5Type>(file: &hdf5::File, name: &str, data: &[V], shape: &[usize]) {
    let view = ndarray::ArrayView::from_shape(shape, data).unwrap();
    file.new_dataset_builder().with_data(view).create(name).unwrap();
}

/// A valid session written straight through the HDF5 library; `edit` may
/// then damage it.
fn raw_session(path: &Path, edit: impl FnOnce(&hdf5::File)) {
    let file = hdf5::File::create(path).unwrap();
    set_attr(&file, "bin_seconds", 0.02f64);
    set_attr(&file, "format_version", 1i64);
    let spikes: Vec<f32> = counts(T, C).iter().map(|&x| f32::from(x)).collect();
    put(&file, "spikes", &spikes, &[T, C]);
    let behavior: Vec<f32> = (0..T * 2).map(|i| i as f32 * 0.1).collect();
    put(&file, "behavior", &behavior, &[T, 2]);
    let ts: Vec<f64> = (0..T).map(|i| i as f64 * 0.02).collect();
    put(&file, "timestamps", &ts, &[T]);
    edit(&file);
    file.close().unwrap();
}

/// A named edit applied to a freshly written valid session.
type Edit = Box<dyn Fn(&hdf5::File)>;

fn read_default(path: &Path) -> Result<Recording, RecordingError> {
    Recording::read(path, &ReadOptions::default())
}

/// Reads `path` expecting an error; checks its Display names the file and
/// every string in `mentions`, and returns it for variant matching.
fn read_err(path: &Path, opts: &ReadOptions, mentions: &[&str]) -> RecordingError {
    let err = match Recording::read(path, opts) {
        Ok(_) => panic!("{} read without error", path.display()),
        Err(e) => e,
    };
    let text = err.to_string();
    assert!(text.contains(&path.display().to_string()), "message lacks the path: {text}");
    for m in mentions {
        assert!(text.contains(m), "message lacks `{m}`: {text}");
    }
    err
}

/// Runs a Python script with h5py/numpy. Fails (never skips) when they are missing.
fn python(script: &str) -> String {
    let probe = Command::new("python3").args(["-c", "import h5py, numpy"]).output();
    match probe {
        Ok(out) if out.status.success() => {}
        Ok(out) => panic!(
            "python3 cannot import h5py/numpy ({}); these tests need them: pip install h5py",
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(e) => panic!("python3 not runnable ({e}); install Python 3 and then: pip install h5py"),
    }
    let out = Command::new("python3").args(["-c", script]).output().unwrap();
    assert!(out.status.success(), "python script failed:\n{script}\nstderr:\n{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn py_path(p: &Path) -> String {
    format!("{:?}", p.to_str().unwrap())
}

#[test]
fn write_read_round_trip_f32_with_all_fields() {
    let dir = tmp();
    let p = dir.path().join("rt.h5");
    let spikes: Vec<f32> = counts(T, C).iter().map(|&x| f32::from(x) + 0.25).collect();
    let mut behavior: Vec<f32> = (0..T * 3).map(|i| (i as f32).sin()).collect();
    behavior[3 * 7 + 1] = f32::NAN; // row 7 is unlabelled
    let mut valid = vec![true; T];
    valid[7] = false;
    let rec = Recording {
        spikes: Matrix::from_vec(T, C, spikes),
        behavior: Some(Matrix::from_vec(T, 3, behavior)),
        behavior_valid: Some(valid.clone()),
        timestamps: Some((0..T).map(|i| 100.0 + i as f64 * 0.05).collect()),
        bin_seconds: 0.05,
    };
    rec.write(&p).unwrap();
    let back = read_default(&p).unwrap();
    assert_eq!(back.spikes, rec.spikes);
    assert_eq!(back.behavior_valid, Some(valid));
    assert_eq!(back.timestamps, rec.timestamps);
    assert_eq!(back.bin_seconds, 0.05);
    let (b, b0) = (back.behavior.as_ref().unwrap(), rec.behavior.as_ref().unwrap());
    for (i, (x, y)) in b.data.iter().zip(&b0.data).enumerate() {
        assert!(x == y || (x.is_nan() && y.is_nan()), "behavior element {i}: {x} vs {y}");
    }
    // Chunked and resizable, readable by h5py with the attributes it expects.
    let out = python(&format!(
        "import h5py\nf = h5py.File({}, 'r')\nd = f['spikes']\nprint(d.chunks is not None, d.maxshape[0], d.dtype, f.attrs['format_version'], f.attrs['bin_seconds'])",
        py_path(&p)
    ));
    assert_eq!(out.trim(), "True None float32 1 0.05");
    // Overwriting with a different session replaces it.
    rec.slice_bins(0, 10).write(&p).unwrap();
    assert_eq!(read_default(&p).unwrap().n_bins(), 10);
}

#[test]
fn every_spike_dtype_reads_as_f32() {
    let dir = tmp();
    let base = counts(T, C);
    let expected: Vec<f32> = base.iter().map(|&x| f32::from(x)).collect();
    let cases: Vec<(&str, Edit)> = vec![
        ("u8", Box::new(|f| put(f, "spikes", &counts(T, C), &[T, C]))),
        (
            "u16",
            Box::new(|f| {
                put(f, "spikes", &counts(T, C).iter().map(|&x| u16::from(x) * 1000).collect::<Vec<_>>(), &[T, C])
            }),
        ),
        (
            "i16",
            Box::new(|f| put(f, "spikes", &counts(T, C).iter().map(|&x| i16::from(x)).collect::<Vec<_>>(), &[T, C])),
        ),
        (
            "f64",
            Box::new(|f| put(f, "spikes", &counts(T, C).iter().map(|&x| f64::from(x)).collect::<Vec<_>>(), &[T, C])),
        ),
    ];
    for (name, write) in cases {
        let p = dir.path().join(format!("{name}.h5"));
        raw_session(&p, |f| {
            f.unlink("spikes").unwrap();
            write(f);
        });
        let rec = read_default(&p).unwrap();
        let scale = if name == "u16" { 1000.0 } else { 1.0 };
        let want: Vec<f32> = expected.iter().map(|x| x * scale).collect();
        assert_eq!(rec.spikes, Matrix::from_vec(T, C, want), "dtype {name}");
        assert_eq!(rec.n_behavior(), 2);
    }
}

#[test]
fn append_writer_round_trip_across_batches() {
    let dir = tmp();
    let p = dir.path().join("live.h5");
    let rec = simulate_reach(&SimParams { minutes: 1.0, seed: 3, array_seed: 0, channels: 7 }); // 3000 bins
    let mut w = AppendWriter::create(&p, rec.bin_seconds).unwrap();
    w.add_f32("spikes", 7).unwrap();
    w.add_f32("behavior", 2).unwrap();
    w.add_f64("timestamps").unwrap();
    w.add_u64("frame_seq").unwrap();
    w.add_u8("flags").unwrap();
    let mut start = 0;
    // Batches of uneven sizes, crossing the 1024-row chunk boundary.
    for (i, size) in [1usize, 100, 1000, 7, 1500, 392].into_iter().enumerate() {
        let end = start + size;
        let part = rec.slice_bins(start, end);
        w.append_f32("spikes", &part.spikes.data).unwrap();
        w.append_f32("/behavior", &part.behavior.as_ref().unwrap().data).unwrap();
        w.append_f64("timestamps", part.timestamps.as_ref().unwrap()).unwrap();
        w.append_u64("frame_seq", &(start as u64..end as u64).collect::<Vec<_>>()).unwrap();
        w.append_u8("flags", &vec![i as u8; size]).unwrap();
        w.flush().unwrap();
        start = end;
        assert_eq!(w.len("spikes"), end);
    }
    assert_eq!(start, rec.n_bins());
    assert_eq!(w.len("frame_seq"), rec.n_bins());
    assert_eq!(w.len("never_added"), 0);
    w.set_attr_str("model_sha", "old").unwrap();
    w.set_attr_str("model_sha", "säße-模型-🧠").unwrap(); // replaced, non-ASCII
    w.set_attr_f64("gain", 1.5).unwrap();
    assert_eq!(w.path(), p.as_path());
    w.close().unwrap();

    let back = read_default(&p).unwrap();
    assert_eq!(back, rec);
    assert_eq!(read_attr_str(&p, "model_sha").unwrap().as_deref(), Some("säße-模型-🧠"));
    assert_eq!(read_attr_f64(&p, "gain").unwrap(), Some(1.5));
    assert_eq!(read_attr_f64(&p, "bin_seconds").unwrap(), Some(0.02));
    assert_eq!(read_attr_str(&p, "absent").unwrap(), None);

    let out = python(&format!(
        "import h5py\nf = h5py.File({}, 'r')\na = f.attrs['model_sha']\nprint(type(a).__name__, a == 'säße-模型-🧠', f['frame_seq'].dtype, f['frame_seq'][-1], f['flags'][0], f['flags'][-1], f['spikes'].chunks, f['spikes'].maxshape)",
        py_path(&p)
    ));
    assert_eq!(out.trim(), "str True uint64 2999 0 5 (1024, 7) (None, 7)");
}

#[test]
fn h5py_written_uint16_session_with_string_attribute() {
    let dir = tmp();
    let p = dir.path().join("py.h5");
    python(&format!(
        r#"
import h5py, numpy as np
T, C = 30, 5
with h5py.File({path}, 'w') as f:
    f['spikes'] = (np.arange(T * C).reshape(T, C) % 7).astype(np.uint16)
    b = np.linspace(-1, 1, T * 2).reshape(T, 2).astype(np.float32)
    b[4, :] = np.nan
    f['behavior'] = b
    v = np.ones(T, dtype=bool); v[4] = False
    f['behavior_valid'] = v
    f['timestamps'] = np.arange(T) * 0.02
    f.attrs['bin_seconds'] = np.float32(0.02)
    f.attrs['format_version'] = np.int32(1)
    f.attrs['subject'] = 'Jango — µ-array 🐒'
"#,
        path = py_path(&p)
    ));
    let rec = read_default(&p).unwrap();
    assert_eq!((rec.n_bins(), rec.n_channels(), rec.n_behavior()), (30, 5, 2));
    let want: Vec<f32> = (0..150).map(|i| (i % 7) as f32).collect();
    assert_eq!(rec.spikes.data, want);
    assert!((rec.bin_seconds - 0.02).abs() < 1e-8, "bin_seconds {}", rec.bin_seconds);
    let valid = rec.behavior_valid.as_ref().unwrap();
    assert!(!valid[4] && valid.iter().filter(|&&v| v).count() == 29);
    let b = rec.behavior.as_ref().unwrap();
    assert!(b.get(4, 0).is_nan());
    assert!((b.get(0, 0) + 1.0).abs() < 1e-6 && (b.get(29, 1) - 1.0).abs() < 1e-6);
    assert_eq!(rec.timestamps.as_ref().unwrap()[29], 29.0 * 0.02);
    assert_eq!(read_attr_str(&p, "subject").unwrap().as_deref(), Some("Jango — µ-array 🐒"));
    // A number is not a string and vice versa: typed errors, not garbage.
    assert!(matches!(read_attr_str(&p, "bin_seconds"), Err(RecordingError::BadAttribute { .. })));
}

#[test]
fn integer_bin_seconds_and_missing_format_version_are_accepted() {
    let dir = tmp();
    let p = dir.path().join("int.h5");
    raw_session(&p, |f| {
        f.delete_attr("bin_seconds").unwrap();
        f.delete_attr("format_version").unwrap();
        set_attr(f, "bin_seconds", 1u32);
    });
    let rec = read_default(&p).unwrap();
    assert_eq!(rec.bin_seconds, 1.0);
}

/// The daemon's retrainer (and train, eval, replay) read recordings in a
/// child `alternator read-recording` process so HDF5's process-wide lock is
/// never held by a slow reader while the recorder writes: what the child
/// hands back must be the recording itself, with the caller's read options,
/// and its errors must still name the file and what was wrong.
#[test]
fn reading_in_a_child_process_gives_the_same_recording_and_errors() {
    use alternator::recording::child::read_in_child;
    let exe = Path::new(env!("CARGO_BIN_EXE_alternator"));
    let dir = tmp();
    let p = dir.path().join("child.h5");
    let mut behavior: Vec<f32> = (0..T * 2).map(|i| (i as f32 * 0.37).cos()).collect();
    behavior[2 * 5] = f32::NAN;
    let mut valid = vec![true; T];
    valid[5] = false;
    let rec = Recording {
        spikes: Matrix::from_vec(T, C, counts(T, C).iter().map(|&x| f32::from(x) * 1.5).collect()),
        behavior: Some(Matrix::from_vec(T, 2, behavior)),
        behavior_valid: Some(valid),
        timestamps: Some((0..T).map(|i| 7.0 + i as f64 * 0.02).collect()),
        bin_seconds: 0.02,
    };
    rec.write(&p).unwrap();
    let direct = Recording::read(&p, &ReadOptions::default()).unwrap();
    let via_child = read_in_child(exe, &p, &ReadOptions::default()).unwrap();
    let bits = |r: &Recording| r.behavior.as_ref().unwrap().data.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(via_child.spikes, direct.spikes);
    assert_eq!(bits(&via_child), bits(&direct));
    assert_eq!((&via_child.behavior_valid, &via_child.timestamps), (&direct.behavior_valid, &direct.timestamps));
    assert_eq!(via_child.bin_seconds, direct.bin_seconds);

    // The caller's options travel to the child.
    let skip = ReadOptions { behavior_path: None, ..ReadOptions::default() };
    assert!(read_in_child(exe, &p, &skip).unwrap().behavior.is_none());
    let wrong = ReadOptions { spikes_path: "/nope".into(), ..ReadOptions::default() };
    let err = read_in_child(exe, &p, &wrong).unwrap_err().to_string();
    assert!(err.contains(&p.display().to_string()) && err.contains("/nope"), "{err}");
    // A file that crashes HDF5 kills only the child.
    let crash = Path::new("tests/data/hdf5-segfault.h5");
    let err = read_in_child(exe, crash, &ReadOptions::default()).unwrap_err().to_string();
    assert!(err.contains("hdf5-segfault.h5") && err.contains("crashed the HDF5 library"), "{err}");
}

#[test]
fn custom_spikes_and_behavior_paths() {
    let dir = tmp();
    let p = dir.path().join("nwb_like.h5");
    raw_session(&p, |f| {
        f.unlink("spikes").unwrap();
        f.unlink("behavior").unwrap();
        f.create_group("processing").unwrap().create_group("ecephys").unwrap();
        f.create_group("processing/behavior").unwrap();
        put(f, "processing/ecephys/spikes", &counts(T, 3), &[T, 3]);
        put(f, "processing/behavior/velocity", &vec![0.5f32; T * 2], &[T, 2]);
    });
    let opts = ReadOptions {
        spikes_path: "/processing/ecephys/spikes".to_string(),
        behavior_path: Some("/processing/behavior/velocity".to_string()),
        ..ReadOptions::default()
    };
    let rec = Recording::read(&p, &opts).unwrap();
    assert_eq!((rec.n_bins(), rec.n_channels(), rec.n_behavior()), (T, 3, 2));
    assert_eq!(rec.spikes.data, counts(T, 3).iter().map(|&x| f32::from(x)).collect::<Vec<_>>());

    // The default behaviour path is optional...
    let no_beh = ReadOptions { spikes_path: opts.spikes_path.clone(), ..ReadOptions::default() };
    assert!(Recording::read(&p, &no_beh).unwrap().behavior.is_none());
    // ...skipping it is explicit...
    let skip = ReadOptions { behavior_path: None, ..opts.clone() };
    assert!(Recording::read(&p, &skip).unwrap().behavior.is_none());
    // ...but a named path that is absent is an error.
    let wrong = ReadOptions { behavior_path: Some("/processing/behavior/position".into()), ..opts.clone() };
    let err = read_err(&p, &wrong, &["/processing/behavior/position"]);
    assert!(matches!(err, RecordingError::MissingDataset { .. }), "{err:?}");
    // Default options look for /spikes, which this file lacks.
    let err = read_err(&p, &ReadOptions::default(), &["/spikes"]);
    assert!(matches!(err, RecordingError::MissingDataset { ref dataset, .. } if dataset == "/spikes"), "{err:?}");
}

#[test]
fn missing_spikes() {
    let dir = tmp();
    let p = dir.path().join("nospikes.h5");
    raw_session(&p, |f| f.unlink("spikes").unwrap());
    let err = read_err(&p, &ReadOptions::default(), &["/spikes", "missing"]);
    assert!(matches!(err, RecordingError::MissingDataset { .. }), "{err:?}");
}

#[test]
fn wrong_rank() {
    let dir = tmp();
    let p = dir.path().join("rank1.h5");
    raw_session(&p, |f| {
        f.unlink("spikes").unwrap();
        put(f, "spikes", &[1.0f32; T], &[T]);
    });
    let err = read_err(&p, &ReadOptions::default(), &["/spikes", "1 dimension", "expected 2"]);
    assert!(matches!(err, RecordingError::WrongRank { expected: 2, got: 1, .. }), "{err:?}");

    let p3 = dir.path().join("rank3.h5");
    raw_session(&p3, |f| {
        f.unlink("behavior").unwrap();
        f.new_dataset_builder().with_data(&Array3::<f32>::zeros((T, 2, 2))).create("behavior").unwrap();
    });
    let err = read_err(&p3, &ReadOptions::default(), &["/behavior"]);
    assert!(matches!(err, RecordingError::WrongRank { expected: 2, got: 3, .. }), "{err:?}");
}

#[test]
fn length_mismatches() {
    let dir = tmp();
    let cases: [(&str, Edit); 3] = [
        (
            "/behavior",
            Box::new(|f| {
                f.unlink("behavior").unwrap();
                put(f, "behavior", &vec![0.0f32; (T - 1) * 2], &[T - 1, 2]);
            }),
        ),
        (
            "/timestamps",
            Box::new(|f| {
                f.unlink("timestamps").unwrap();
                put(f, "timestamps", &vec![0.0f64; T + 1], &[T + 1]);
            }),
        ),
        ("/behavior_valid", Box::new(|f| put(f, "behavior_valid", &[1u8; T - 2], &[T - 2]))),
    ];
    for (i, (dataset, edit)) in cases.iter().enumerate() {
        let p = dir.path().join(format!("len{i}.h5"));
        raw_session(&p, edit);
        let err = read_err(&p, &ReadOptions::default(), &[dataset, &format!("expected {T}")]);
        assert!(
            matches!(err, RecordingError::LengthMismatch { dataset: ref got, expected: T, .. } if got.as_str() == *dataset),
            "{err:?}"
        );
    }
}

#[test]
fn nan_in_spikes() {
    let dir = tmp();
    let p = dir.path().join("nan_spikes.h5");
    raw_session(&p, |f| {
        f.unlink("spikes").unwrap();
        let mut s = vec![1.0f32; T * C];
        s[7 * C + 2] = f32::NAN;
        put(f, "spikes", &s, &[T, C]);
    });
    let err = read_err(&p, &ReadOptions::default(), &["/spikes", "row 7", "column 2"]);
    assert!(matches!(err, RecordingError::NonFinite { row: 7, col: 2, .. }), "{err:?}");
}

#[test]
fn nan_only_allowed_in_unlabelled_behaviour_rows() {
    let dir = tmp();
    let mut b = vec![0.0f32; T * 2];
    b[3 * 2 + 1] = f32::NAN;
    b[9 * 2] = f32::INFINITY;
    // Rows 3 and 9 unlabelled: fine.
    let ok = dir.path().join("masked.h5");
    raw_session(&ok, |f| {
        f.unlink("behavior").unwrap();
        put(f, "behavior", &b, &[T, 2]);
        let mut v = vec![1u8; T];
        v[3] = 0;
        v[9] = 0;
        put(f, "behavior_valid", &v, &[T]);
    });
    let rec = read_default(&ok).unwrap();
    let valid = rec.behavior_valid.unwrap();
    assert_eq!(valid.iter().filter(|&&x| !x).count(), 2);
    assert!(!valid[3] && !valid[9]);
    // Row 9 labelled: error at row 9.
    let bad = dir.path().join("labelled_nan.h5");
    raw_session(&bad, |f| {
        f.unlink("behavior").unwrap();
        put(f, "behavior", &b, &[T, 2]);
        let mut v = vec![1u8; T];
        v[3] = 0;
        put(f, "behavior_valid", &v, &[T]);
    });
    let err = read_err(&bad, &ReadOptions::default(), &["/behavior", "row 9"]);
    assert!(matches!(err, RecordingError::NonFinite { row: 9, col: 0, .. }), "{err:?}");
    // No mask at all: the first NaN is an error.
    let nomask = dir.path().join("nomask_nan.h5");
    raw_session(&nomask, |f| {
        f.unlink("behavior").unwrap();
        put(f, "behavior", &b, &[T, 2]);
    });
    let err = read_err(&nomask, &ReadOptions::default(), &["/behavior"]);
    assert!(matches!(err, RecordingError::NonFinite { row: 3, col: 1, .. }), "{err:?}");
    // A mask value that is neither 0 nor 1.
    let two = dir.path().join("mask2.h5");
    raw_session(&two, |f| put(f, "behavior_valid", &[2u8; T], &[T]));
    let err = read_err(&two, &ReadOptions::default(), &["/behavior_valid", "expected 0"]);
    assert!(matches!(err, RecordingError::InvalidValue { .. }), "{err:?}");
}

#[test]
fn bad_bin_seconds() {
    let dir = tmp();
    let cases: [(&str, Edit, &str); 4] = [
        ("missing", Box::new(|f| f.delete_attr("bin_seconds").unwrap()), "missing"),
        (
            "zero",
            Box::new(|f| {
                f.delete_attr("bin_seconds").unwrap();
                set_attr(f, "bin_seconds", 0.0f64);
            }),
            "> 0",
        ),
        (
            "negative",
            Box::new(|f| {
                f.delete_attr("bin_seconds").unwrap();
                set_attr(f, "bin_seconds", -0.02f32);
            }),
            "> 0",
        ),
        (
            "string",
            Box::new(|f| {
                f.delete_attr("bin_seconds").unwrap();
                let s: hdf5::types::VarLenUnicode = "0.02".parse().unwrap();
                set_attr(f, "bin_seconds", s);
            }),
            "expected a number",
        ),
    ];
    for (name, edit, mention) in cases {
        let p = dir.path().join(format!("bin_{name}.h5"));
        raw_session(&p, edit);
        let err = read_err(&p, &ReadOptions::default(), &["bin_seconds", mention]);
        assert!(matches!(err, RecordingError::BadAttribute { ref name, .. } if name == "bin_seconds"), "{err:?}");
    }
}

#[test]
fn unknown_format_version() {
    let dir = tmp();
    let p = dir.path().join("v2.h5");
    raw_session(&p, |f| {
        f.delete_attr("format_version").unwrap();
        set_attr(f, "format_version", 2i64);
    });
    let err = read_err(&p, &ReadOptions::default(), &["format_version", "is 2"]);
    assert!(matches!(err, RecordingError::BadAttribute { ref name, .. } if name == "format_version"), "{err:?}");
}

#[test]
fn nonexistent_and_non_hdf5_files() {
    let dir = tmp();
    let p = dir.path().join("nope.h5");
    let err = read_err(&p, &ReadOptions::default(), &["does not exist"]);
    assert!(matches!(err, RecordingError::NotFound { .. }), "{err:?}");

    let txt = dir.path().join("notes.h5");
    std::fs::write(&txt, "this is not HDF5").unwrap();
    let err = read_err(&txt, &ReadOptions::default(), &["HDF5"]);
    assert!(matches!(err, RecordingError::Open { .. }), "{err:?}");
    assert!(std::error::Error::source(&err).is_some(), "HDF5's reason is kept as the source");

    assert!(matches!(file_hash(&p), Err(RecordingError::Io { .. })));
}

#[test]
fn empty_spikes_and_unsupported_dtype() {
    let dir = tmp();
    let p = dir.path().join("empty.h5");
    raw_session(&p, |f| {
        for name in ["spikes", "behavior", "timestamps"] {
            f.unlink(name).unwrap();
        }
        f.new_dataset_builder().with_data(&Array2::<f32>::zeros((0, C))).create("spikes").unwrap();
    });
    let err = read_err(&p, &ReadOptions::default(), &["/spikes", "empty"]);
    assert!(matches!(err, RecordingError::Empty { .. }), "{err:?}");

    let s = dir.path().join("strings.h5");
    raw_session(&s, |f| {
        f.unlink("spikes").unwrap();
        let words: Vec<hdf5::types::VarLenUnicode> = (0..T * C).map(|_| "3".parse().unwrap()).collect();
        put(f, "spikes", &words, &[T, C]);
    });
    let err = read_err(&s, &ReadOptions::default(), &["/spikes", "unsupported"]);
    assert!(matches!(err, RecordingError::UnsupportedDtype { .. }), "{err:?}");
}

#[test]
fn write_refuses_invalid_sessions_and_leaves_nothing() {
    let dir = tmp();
    let p = dir.path().join("invalid.h5");
    let mut rec = simulate_lorenz(&SimParams { minutes: 0.1, seed: 1, array_seed: 0, channels: 3 });
    rec.timestamps = Some(vec![0.0; 5]);
    let err = rec.write(&p).unwrap_err();
    assert!(matches!(err, RecordingError::LengthMismatch { .. }), "{err:?}");
    assert!(err.to_string().contains(&p.display().to_string()));
    let left: Vec<PathBuf> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().path()).collect();
    assert!(left.is_empty(), "left behind {left:?}");
}

#[test]
fn simulated_sessions_survive_the_file_format() {
    let dir = tmp();
    for (i, rec) in [
        simulate_reach(&SimParams { minutes: 0.5, seed: 1, array_seed: 0, channels: 12 }),
        simulate_lorenz(&SimParams { minutes: 0.5, seed: 1, array_seed: 0, channels: 12 }),
    ]
    .into_iter()
    .enumerate()
    {
        let p = dir.path().join(format!("sim{i}.h5"));
        rec.write(&p).unwrap();
        assert_eq!(read_default(&p).unwrap(), rec);
        // Same content, same hash; a different session, a different hash.
        let q = dir.path().join(format!("sim{i}_copy.h5"));
        std::fs::copy(&p, &q).unwrap();
        assert_eq!(file_hash(&p).unwrap(), file_hash(&q).unwrap());
        assert_eq!(file_hash(&p).unwrap().len(), 16);
    }
    assert_ne!(file_hash(&dir.path().join("sim0.h5")).unwrap(), file_hash(&dir.path().join("sim1.h5")).unwrap());
}

#[test]
fn simulated_reach_neurons_lead_speed() {
    // Public-API check over all neurons (untuned ones only add noise):
    // corr(speed(t), population(t + k)) peaks at k < 0, i.e. spikes come first.
    let rec = simulate_reach(&SimParams { minutes: 4.0, seed: 12, array_seed: 0, channels: 96 });
    let b = rec.behavior.as_ref().unwrap();
    let speed: Vec<f64> = (0..rec.n_bins()).map(|t| f64::from(b.get(t, 0)).hypot(f64::from(b.get(t, 1)))).collect();
    let pop: Vec<f64> = (0..rec.n_bins()).map(|t| rec.spikes.row(t).iter().map(|&x| f64::from(x)).sum()).collect();
    let corr = |k: i64| -> f64 {
        let n = speed.len() as i64 - k.abs();
        let (s0, p0) = if k >= 0 { (0, k) } else { (-k, 0) };
        let a = Array1::from_iter((0..n).map(|i| speed[(s0 + i) as usize]));
        let c = Array1::from_iter((0..n).map(|i| pop[(p0 + i) as usize]));
        let (am, cm) = (a.mean().unwrap(), c.mean().unwrap());
        let cov = ((&a - am) * (&c - cm)).sum();
        cov / (((&a - am).mapv(|x| x * x).sum()) * ((&c - cm).mapv(|x| x * x).sum())).sqrt()
    };
    let (best, r) = (-15..=15).map(|k| (k, corr(k))).fold((0, f64::MIN), |b, x| if x.1 > b.1 { x } else { b });
    assert!((-5..=-3).contains(&best), "population-speed correlation peaks at {best} bins (r = {r})");
    assert!(corr(best) > corr(-best) + 0.05, "no clear lead: {} vs {}", corr(best), corr(-best));
}

/// Truncated and random-byte files given to `train`, `eval` and `replay`
/// fail with exit code 1 and a message naming the file; nothing panics.
#[test]
fn truncated_and_random_files_are_refused_by_every_command_with_their_path() {
    let dir = tempfile::tempdir().unwrap();
    let whole = std::fs::read("recordings/demo-test.h5").unwrap();
    let truncated = dir.path().join("truncated.h5");
    std::fs::write(&truncated, &whole[..whole.len() / 3]).unwrap();
    let random = dir.path().join("random.h5");
    let mut rng = alternator::rng::Rng::new(5);
    std::fs::write(&random, (0..100_000).map(|_| (rng.uniform() * 256.0) as u8).collect::<Vec<u8>>()).unwrap();
    let header_only = dir.path().join("header-only.h5");
    std::fs::write(&header_only, &whole[..4096]).unwrap();
    for bad in [&truncated, &random, &header_only] {
        let p = bad.to_str().unwrap();
        let out_model = dir.path().join("m.safetensors");
        let runs: [Vec<&str>; 3] = [
            vec!["train", "--data", p, "--out", out_model.to_str().unwrap()],
            vec!["eval", "--model", "recordings/demo-model.safetensors", "--data", p],
            vec!["replay", p, "--endpoint", "tcp://127.0.0.1:1", "--max"],
        ];
        for args in runs {
            let out = Command::new(env!("CARGO_BIN_EXE_alternator")).args(&args).output().unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
            assert!(err.contains(p), "{args:?} does not name the file: {err}");
            assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
        }
    }
}

/// A file whose damaged metadata crashes the HDF5 C library itself (found by
/// tests/fuzz.rs): opening it kills the process that does, so every command
/// opens a recording in a child first and refuses such a file with its path.
#[test]
fn a_file_that_crashes_the_hdf5_library_is_refused_not_crashed_on() {
    let bad = "tests/data/hdf5-segfault.h5";
    let probe = Command::new(env!("CARGO_BIN_EXE_alternator"))
        .args(["read-recording", bad, "--options", "{}"])
        .output()
        .unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert!(
        probe.status.signal().is_some(),
        "the fixture no longer crashes HDF5; the probe is untested: {:?}",
        probe.status
    );
    for args in [
        vec!["eval", "--model", "recordings/demo-model.safetensors", "--data", bad],
        vec!["train", "--data", bad, "--out", "/tmp/never.safetensors"],
        vec!["replay", bad, "--endpoint", "tcp://127.0.0.1:1"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_alternator")).args(&args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {:?} {err}", out.status);
        assert!(err.contains(bad) && err.contains("crashed the HDF5 library"), "{args:?}: {err}");
    }
}
