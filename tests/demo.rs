//! The README's run command: `alternator demo` on the bundled files streams
//! over real sockets, decodes every bin, matches offline evaluation exactly
//! and records the session.

use std::process::Command;

#[test]
fn demo_runs_end_to_end_on_the_bundled_files() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_alternator"))
        .args(["demo", "--seconds", "12", "--speed", "20", "--record-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "demo failed: {}\n{stdout}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("sent 600 bins"), "{stdout}");
    assert!(stdout.contains("received 600 decoded outputs"), "{stdout}");
    assert!(stdout.contains("max |live − offline eval| over all outputs: 0e0"), "{stdout}");
    let r2: f64 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("live decoding R² "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("an R² line");
    assert!(r2 > 0.6, "live R² {r2}");
    let files: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(files.len(), 1, "one session file recorded");
}
