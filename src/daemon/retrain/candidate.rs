//! Gathering a run's data: which recordings are usable, and the split of
//! their labelled bins into a training head and a held-out tail (the most
//! recent labelled bins, walking files newest first).

use std::path::{Path, PathBuf};

use tracing::{debug, info, warn};

use super::decision::{RetrainError, SkippedFile, UsedFile};
use crate::model::file::DataSource;
use crate::recording::{file_hash, ReadOptions, Recording};

/// Fewest bins a training head must have for a file to be trained on.
pub const MIN_HEAD_BINS: usize = 100;

/// A recording with labelled bins the live model's shape can use.
pub struct Usable {
    pub path: PathBuf,
    pub rec: Recording,
    pub labelled: usize,
}

/// A recording split into a training head and a held-out tail.
#[derive(Debug)]
pub struct Split {
    pub path: PathBuf,
    pub rec: Recording,
    pub holdout_start: usize,
    pub hash: String,
}

/// Reads `files` (each in a child process when running as the binary, so
/// the recorder never waits on HDF5's lock behind this thread) and keeps
/// those with `channels` inputs and `dz` labelled behaviour dimensions.
/// Files are read newest (last) first and at most `max_bytes` of spike data
/// is kept: the file that crosses the budget keeps only its most recent
/// bins and older files are not read at all. The result is in `files` order.
pub fn gather(
    files: &[PathBuf],
    opts: &ReadOptions,
    channels: usize,
    dz: usize,
    max_bytes: u64,
) -> (Vec<Usable>, Vec<SkippedFile>) {
    let mut usable = Vec::new();
    let mut skipped = Vec::new();
    let bin_bytes = (channels.max(1) * 4) as u64;
    let mut budget_bins = (max_bytes / bin_bytes) as usize;
    for (i, p) in files.iter().enumerate().rev() {
        if budget_bins == 0 {
            info!(
                left_out = i + 1,
                max_data_bytes = max_bytes,
                "Retraining data budget reached; older recordings not used in this run."
            );
            break;
        }
        match Recording::read_checked(p, opts) {
            Ok(rec) if rec.n_channels() != channels => {
                skipped.push(skip(p, format!("{} channels, the live model has {channels}", rec.n_channels())))
            }
            Ok(rec) => {
                let rec = newest_bins(rec, budget_bins, p);
                let labelled = rec.labelled_bins();
                if labelled == 0 || rec.n_behavior() != dz {
                    debug!(path = %p.display(), "No usable labelled bins; not used for retraining.");
                } else {
                    budget_bins -= rec.n_bins();
                    usable.push(Usable { path: p.clone(), rec, labelled });
                }
            }
            Err(e) => {
                warn!(path = %p.display(), error = %e, "Skipping an unreadable recording in the retraining set.");
                skipped.push(skip(p, e.to_string()));
            }
        }
    }
    usable.reverse();
    (usable, skipped)
}

/// `rec` cut to its last `max_bins` bins (logged when it is cut).
fn newest_bins(rec: Recording, max_bins: usize, p: &Path) -> Recording {
    if rec.n_bins() <= max_bins {
        return rec;
    }
    info!(path = %p.display(), bins = rec.n_bins(), kept = max_bins, "Retraining data budget reached; only the most recent bins of this recording are used.");
    rec.slice_bins(rec.n_bins() - max_bins, rec.n_bins())
}

fn skip(p: &Path, reason: String) -> SkippedFile {
    SkippedFile { path: p.display().to_string(), reason }
}

/// Holds out `fraction` of all labelled bins, the most recent ones.
pub fn split_holdout(usable: Vec<Usable>, fraction: f64, skipped: usize) -> Result<Vec<Split>, RetrainError> {
    let total: usize = usable.iter().map(|u| u.labelled).sum();
    if total == 0 {
        return Err(RetrainError::NoLabelledData { usable: usable.len(), skipped });
    }
    let mut want = ((total as f64) * fraction).ceil() as usize;
    let mut splits: Vec<Split> = Vec::new();
    for u in usable.into_iter().rev() {
        let take = want.min(u.labelled);
        want -= take;
        let holdout_start = start_of_last_labelled(&u.rec, take);
        let hash = file_hash(&u.path).unwrap_or_default();
        splits.push(Split { path: u.path, rec: u.rec, holdout_start, hash });
    }
    splits.reverse();
    if !splits.iter().any(|s| s.holdout_start >= MIN_HEAD_BINS) {
        return Err(RetrainError::TooLittleBeforeHoldout { min: MIN_HEAD_BINS });
    }
    Ok(splits)
}

/// The bin where the last `take` labelled bins of `rec` begin.
fn start_of_last_labelled(rec: &Recording, take: usize) -> usize {
    let mut start = rec.n_bins();
    let mut seen = 0;
    while seen < take && start > 0 {
        start -= 1;
        if rec.is_labelled(start) {
            seen += 1;
        }
    }
    start
}

/// The training heads (files whose head is long enough).
pub fn heads(splits: &[Split]) -> Vec<Recording> {
    splits.iter().filter(|s| s.holdout_start >= MIN_HEAD_BINS).map(|s| s.rec.slice_bins(0, s.holdout_start)).collect()
}

/// Provenance of every file, for the model file and the decision.
pub fn provenance(splits: &[Split]) -> (Vec<DataSource>, Vec<UsedFile>) {
    splits
        .iter()
        .map(|s| {
            let path = s.path.display().to_string();
            let used = UsedFile { path: path.clone(), bins: s.rec.n_bins(), hash: s.hash.clone() };
            let source = DataSource {
                path,
                hash: s.hash.clone(),
                bins: s.rec.n_bins(),
                spikes_path: "/spikes".into(),
                behavior_path: None,
                bin_seconds: Some(s.rec.bin_seconds),
                nwb: None,
            };
            (source, used)
        })
        .unzip()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::matrix::Matrix;

    fn rec(labels: &[bool]) -> Usable {
        let n = labels.len();
        Usable {
            path: PathBuf::from("/nonexistent.h5"),
            rec: Recording {
                spikes: Matrix::from_vec(n, 1, vec![1.0; n]),
                behavior: Some(Matrix::from_vec(n, 1, vec![0.5; n])),
                behavior_valid: Some(labels.to_vec()),
                timestamps: None,
                bin_seconds: 0.02,
            },
            labelled: labels.iter().filter(|&&l| l).count(),
        }
    }

    #[test]
    fn the_held_out_tail_is_the_most_recent_labelled_bins_across_files() {
        // 290 labelled bins in all; 20 % = 58 come from the newest file only.
        let older = rec(&[true; 200]);
        let mut newer_labels = vec![true; 100];
        newer_labels[90..].iter_mut().for_each(|l| *l = false); // 90 labelled
        let splits = split_holdout(vec![older, rec(&newer_labels)], 0.2, 0).unwrap();
        assert_eq!(splits[0].holdout_start, 200, "the older file is all training");
        assert_eq!(splits[1].holdout_start, 32, "the last 58 labelled bins (32..90) of the newer file");
        assert_eq!(heads(&splits).len(), 1, "a 32-bin head is too short to train on");
    }

    #[test]
    fn no_labels_or_too_short_heads_are_errors() {
        let err = split_holdout(vec![rec(&[false; 500])], 0.2, 3).unwrap_err();
        assert!(matches!(err, RetrainError::NoLabelledData { usable: 1, skipped: 3 }), "{err}");
        let err = split_holdout(vec![rec(&[true; 110])], 0.2, 0).unwrap_err();
        assert!(matches!(err, RetrainError::TooLittleBeforeHoldout { .. }), "{err}");
    }

    #[test]
    fn the_data_budget_keeps_the_newest_bins_and_skips_older_files() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, n: usize, first: f32| {
            let mut r = rec(&vec![true; n]).rec;
            r.spikes = Matrix::from_vec(n, 1, (0..n).map(|i| first + i as f32).collect());
            let p = dir.path().join(name);
            r.write(&p).unwrap();
            p
        };
        let files = [write("oldest.h5", 300, 0.0), write("older.h5", 300, 1000.0), write("newest.h5", 200, 2000.0)];
        // One channel = 4 bytes a bin: room for 350 bins.
        let (usable, skipped) = gather(&files, &ReadOptions::default(), 1, 1, 350 * 4);
        assert!(skipped.is_empty());
        let names: Vec<_> = usable.iter().map(|u| u.path.file_name().unwrap().to_owned()).collect();
        assert_eq!(names, ["older.h5", "newest.h5"], "the oldest file is left out, order kept");
        assert_eq!(usable[1].rec.n_bins(), 200, "the newest file is whole");
        assert_eq!(usable[0].rec.n_bins(), 150, "the file crossing the budget keeps its last 150 bins");
        assert_eq!(usable[0].rec.spikes.get(0, 0), 1150.0);
        assert_eq!(usable[0].labelled, 150);
    }
}
