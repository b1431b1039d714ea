//! `alternator tune` end to end through the binary: seeded, reproducible,
//! and its best config is accepted by `alternator train --config`.

use std::path::Path;
use std::process::Command;

fn alternator(args: &[&str], dir: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_alternator")).args(args).current_dir(dir).output().unwrap()
}

fn ok(out: &std::process::Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "failed: {}\n{stdout}", String::from_utf8_lossy(&out.stderr));
    stdout
}

/// The trials table without its wall-clock column.
fn table_without_seconds(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap();
    let seconds_col = text.lines().next().unwrap().split(',').position(|c| c == "seconds").unwrap();
    text.lines()
        .map(|l| {
            l.split(',').enumerate().filter(|(i, _)| *i != seconds_col).map(|(_, f)| f).collect::<Vec<_>>().join(",")
        })
        .collect()
}

#[test]
fn tune_is_reproducible_and_its_config_trains() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(&alternator(
        &["simulate", "reach", "--out", "tiny.h5", "--minutes", "1.5", "--channels", "12", "--seed", "3"],
        d,
    ));
    let tune = |out: &str| {
        let args = [
            "tune",
            "--data",
            "tiny.h5",
            "--trials",
            "4",
            "--seed",
            "11",
            "--trial-epochs",
            "2",
            "--quiet",
            "--out",
            out,
        ];
        ok(&alternator(&args, d))
    };
    let first = tune("a");
    let second = tune("b");
    assert!(first.contains("best trial"), "{first}");
    assert_eq!(first.lines().next().map(|l| l.split(';').next()), second.lines().next().map(|l| l.split(';').next()));
    let (ta, tb) = (table_without_seconds(&d.join("a/trials.csv")), table_without_seconds(&d.join("b/trials.csv")));
    assert_eq!(ta.len(), 5, "{ta:?}");
    assert!(ta[1..].iter().all(|l| l.contains(",done,")), "{ta:?}");
    assert_eq!(ta, tb);
    let (ca, cb) = (
        std::fs::read_to_string(d.join("a/best.toml")).unwrap(),
        std::fs::read_to_string(d.join("b/best.toml")).unwrap(),
    );
    assert_eq!(ca, cb);
    assert!(ca.contains("[train]"), "{ca}");
    let trained = ok(&alternator(
        &[
            "train",
            "--data",
            "tiny.h5",
            "--config",
            "a/best.toml",
            "--epochs",
            "2",
            "--out",
            "m.safetensors",
            "--quiet",
        ],
        d,
    ));
    assert!(trained.contains("trained 2 epochs"), "{trained}");
    assert!(d.join("m.safetensors").exists());
}

#[test]
fn tune_refuses_bad_flags_with_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    for (flag, args) in [
        ("--trials", vec!["tune", "--data", "x.h5", "--trials", "0"]),
        ("--trial-epochs", vec!["tune", "--data", "x.h5", "--trials", "2", "--trial-epochs", "0"]),
        ("--threads", vec!["tune", "--data", "x.h5", "--trials", "2", "--threads", "0"]),
    ] {
        let out = alternator(&args, dir.path());
        assert_eq!(out.status.code(), Some(64), "{flag}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(flag),
            "{flag}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
