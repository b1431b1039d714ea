//! Session files rotate by time (`record.rotate_seconds`) and by size
//! (`record.rotate_bytes`): a stream then spans several files that are each
//! readable and together hold every bin and every output once, in order.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use alternator::daemon::config::ServeConfig;
use alternator::recording::{read_session_seq, ReadOptions, Recording};
use alternator::replay::ReplayOptions;
use common::{config, demo, Rig};

/// Streams `rec` into a daemon with `cfg` (paced at `rate` bins/s, None: as
/// fast as possible); returns the session files in the order they were closed.
fn stream(cfg: &ServeConfig, rec: &Recording, rate: Option<f64>) -> Vec<PathBuf> {
    let (mf, _) = demo(1);
    let mut rig = Rig::start(cfg, mf);
    let opts = ReplayOptions { speed: rate.map(|r| r * rec.bin_seconds), ..ReplayOptions::default() };
    rig.publisher.replay(rec, &opts, &AtomicBool::new(false)).unwrap();
    rig.wait_outputs(rec.n_bins() as u64);
    let (summary, got) = rig.finish();
    assert_eq!(got.len(), rec.n_bins());
    let files: Vec<PathBuf> = summary.sessions.iter().map(|s| s.path.clone()).collect();
    let mut on_disk: Vec<PathBuf> = std::fs::read_dir(&cfg.record.dir).unwrap().map(|e| e.unwrap().path()).collect();
    on_disk.sort();
    let mut closed = files.clone();
    closed.sort();
    assert_eq!(on_disk, closed, "the directory holds exactly the closed session files");
    files
}

fn read_u64(path: &Path, name: &str) -> Vec<u64> {
    hdf5_metno::File::open(path).unwrap().dataset(name).unwrap().read_raw::<u64>().unwrap()
}

/// Each file reads back on its own; concatenated in order they are `rec`,
/// with seqs 0..n for inputs and outputs alike.
fn assert_every_bin_once_in_order(files: &[PathBuf], rec: &Recording) {
    let (mut seqs, mut out_seqs, mut spikes, mut behavior) = (vec![], vec![], vec![], vec![]);
    for f in files {
        let back = Recording::read(f, &ReadOptions::default())
            .unwrap_or_else(|e| panic!("session file {} is not readable: {e}", f.display()));
        assert!(back.n_bins() > 0, "{} is empty", f.display());
        spikes.extend_from_slice(&back.spikes.data);
        behavior.extend_from_slice(&back.behavior.as_ref().expect("labelled bins").data);
        seqs.extend(read_session_seq(f).unwrap().expect("a daemon session has /seq"));
        out_seqs.extend(read_u64(f, "output_seq"));
    }
    let n = rec.n_bins() as u64;
    assert_eq!(seqs, (0..n).collect::<Vec<u64>>(), "every input bin exactly once, in order");
    assert_eq!(out_seqs, (0..n).collect::<Vec<u64>>(), "every output exactly once, in order");
    assert!(spikes == rec.spikes.data, "the files' bins are not the stream's");
    let want = &rec.behavior.as_ref().unwrap().data;
    let wrong: Vec<usize> = (0..want.len()).filter(|&i| behavior[i].to_bits() != want[i].to_bits()).collect();
    assert!(
        wrong.is_empty(),
        "behaviour differs at values {wrong:?} ({} per bin)",
        rec.behavior.as_ref().unwrap().cols
    );
}

#[test]
fn files_rotate_by_size_and_together_hold_every_bin() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.record.rotate_bytes = 1 << 20; // the smallest allowed
                                       // 6000 bins × 96 channels × 4 bytes: 2.2 MiB of counts alone. A file
                                       // closes at the first batch (256 bins, ~0.1 MiB) past 1 MiB: three files.
    let (_, rec) = demo(6000);
    let files = stream(&cfg, &rec, None);
    assert!(files.len() >= 3, "2.2 MiB of counts in files of 1 MiB: {files:?}");
    // Data is stored uncompressed, so a file rotated for size is at least that large.
    for f in &files[..files.len() - 1] {
        let bytes = std::fs::metadata(f).unwrap().len();
        assert!(bytes >= cfg.record.rotate_bytes, "{} rotated at {bytes} bytes", f.display());
    }
    assert_every_bin_once_in_order(&files, &rec);
}

#[test]
fn files_rotate_by_time_and_together_hold_every_bin() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.record.rotate_seconds = 1;
    // 1750 bins at 500 bins/s: 3.5 s of stream, far below the default size limit.
    let (_, rec) = demo(1750);
    let files = stream(&cfg, &rec, Some(500.0));
    assert!(files.len() >= 2, "3.5 s of stream in files of 1 s: {files:?}");
    assert_every_bin_once_in_order(&files, &rec);
}
