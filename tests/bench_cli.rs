//! `alternator bench` as a user runs it: a short end-to-end run prints its
//! percentiles and writes the documented JSON; bad arguments exit 64 naming
//! the argument.

use std::process::{Command, Output};

fn bench(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_alternator")).arg("bench").args(args).output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A number field of one JSON result, named in the failure message.
fn num(r: &serde_json::Value, field: &str) -> f64 {
    r[field].as_f64().unwrap_or_else(|| panic!("field {field} missing or not a number: {r}"))
}

#[test]
fn a_short_run_reports_percentiles_and_no_loss() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("bench.json");
    let (rate, seconds) = (1000.0, 1.0);
    let out = bench(&["--channels", "8", "--rate", "1000", "--seconds", "1", "--json", json.to_str().unwrap()]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "bench failed: {stdout}\n{stderr}");
    for column in ["p50 µs", "p99 µs", "p99.9 µs", "max µs", "lost"] {
        assert!(stdout.contains(column), "the table has no {column:?} column: {stdout}");
    }
    assert!(stderr.contains("8 ch @ 1000") && stderr.contains("lost 0"), "{stderr}");

    let results: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let results = results.as_array().expect("a JSON array of runs");
    assert_eq!(results.len(), 1, "one channel count × one rate × one transport: {results:?}");
    let r = &results[0];
    assert_eq!(r["channels"], 8);
    assert_eq!(num(r, "rate_hz"), rate);
    assert_eq!(r["transport"], "protocol-v1");
    assert_eq!(r["mode"], "end_to_end");
    let order = ["p50_us", "p90_us", "p99_us", "p999_us", "max_us"].map(|f| num(r, f));
    assert!(order[0] > 0.0 && order.windows(2).all(|w| w[0] <= w[1]), "percentiles out of order: {r}");
    let daemon = ["daemon_p50_us", "daemon_p99_us", "daemon_p999_us"].map(|f| num(r, f));
    assert!(daemon[0] > 0.0 && daemon.windows(2).all(|w| w[0] <= w[1]), "daemon percentiles: {r}");
    // The daemon's own receive → publish time is part of the end-to-end time.
    assert!(daemon[0] <= order[4], "{r}");

    let sent = num(r, "sent");
    // Paced: the k-th bin is not sent before k / rate seconds.
    assert!(sent >= 1.0 && sent <= rate * seconds + 1.0, "sent {sent} bins in {seconds} s at {rate}/s: {r}");
    assert_eq!(num(r, "received"), sent, "{r}");
    assert_eq!(num(r, "daemon_bins_in"), sent, "{r}");
    for zero in ["lost", "imputed", "daemon_dropped", "record_lost"] {
        assert_eq!(num(r, zero), 0.0, "{zero}: {r}");
    }
    let throughput = num(r, "throughput_bins_per_s");
    assert!(throughput > 0.0 && throughput <= rate * 1.01, "throughput {throughput} at a paced {rate}/s: {r}");
}

#[test]
fn bad_arguments_exit_64_naming_the_argument() {
    let cases: [(&[&str], &[&str]); 4] = [
        (&["--rate", "0"], &["--rate", "\"0\""]),
        (&["--rate", "fast"], &["--rate", "\"fast\""]),
        (&["--transport", "carrier-pigeon"], &["--transport", "carrier-pigeon"]),
        (&["--seconds", "0"], &["--seconds"]),
    ];
    for (args, named) in cases {
        let out = bench(&[&["--channels", "8"], args].concat());
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "bench {args:?}: {stderr}");
        for n in named {
            assert!(stderr.contains(n), "bench {args:?}: the error does not name {n}: {stderr}");
        }
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

/// The transport-alone reference runs with the same rig and subscriber:
/// every bin comes back, stamped with the time it was sent (a forwarder
/// that lost bins or dropped the timestamp would fail here), and it is
/// reported next to the daemon's run under its own name.
#[test]
fn the_forwarder_reference_returns_every_bin_with_its_send_time() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("bench.json");
    let args = ["--channels", "8", "--rate", "max", "--seconds", "1", "--transport", "forwarder,protocol-v1"];
    let out = bench(&[&args[..], &["--json", json.to_str().unwrap()]].concat());
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "bench failed: {stdout}\n{stderr}");
    assert!(stdout.contains("| forwarder | 8 |"), "the table has no forwarder row: {stdout}");
    let results: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let names: Vec<&str> = results.as_array().unwrap().iter().map(|r| r["transport"].as_str().unwrap()).collect();
    assert_eq!(names, ["forwarder", "protocol-v1"], "{results}");
    let r = &results[0];
    let sent = num(r, "sent");
    assert!(sent > 100.0, "the forwarder moved only {sent} bins in 1 s: {r}");
    assert_eq!(num(r, "received"), sent, "{r}");
    assert_eq!(num(r, "daemon_bins_in"), sent, "bins the forwarder took in: {r}");
    assert_eq!(num(r, "lost"), 0.0, "{r}");
    // Send time → receipt, not time since boot: the frame's t_ns came back.
    assert!(num(r, "p50_us") > 0.0 && num(r, "max_us") < 1e6, "latency {r}");
}
