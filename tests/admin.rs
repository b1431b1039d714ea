//! The admin HTTP server against a real daemon on loopback: /metrics parsed
//! by the official Prometheus Python parser and compared with the daemon's
//! own summary, the JSON API compared with the ZeroMQ control socket, and
//! the dashboard rendered by headless Chromium while a replay runs.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use alternator::daemon::config::ServeConfig;
use alternator::daemon::control;
use alternator::daemon::models::ModelStore;
use alternator::replay::ReplayOptions;
use alternator::wire::{encode_frame, DropReason, Dtype, Header};
use common::{config, demo, Rig};
use serde_json::Value;

/// One HTTP/1.1 request over a fresh connection; (status, body).
fn http(addr: SocketAddr, method: &str, path: &str, extra: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(s, "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: 0\r\n{extra}\r\n")
        .unwrap();
    let mut raw = Vec::new();
    let mut buf = [0u8; 65536];
    // Read until the peer closes, or until Content-Length bytes of body are in.
    loop {
        let n = s.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
            let len = head.lines().find_map(|l| l.strip_prefix("content-length:")).and_then(|v| v.trim().parse().ok());
            if len.is_some_and(|l: usize| raw.len() >= end + 4 + l) {
                break;
            }
        }
    }
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let code = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body =
        if head.to_ascii_lowercase().contains("transfer-encoding: chunked") { dechunk(body) } else { body.into() };
    (code, body)
}

fn dechunk(mut b: &str) -> String {
    let mut out = String::new();
    loop {
        let (len, rest) = b.split_once("\r\n").unwrap();
        let n = usize::from_str_radix(len.trim(), 16).unwrap();
        if n == 0 {
            return out;
        }
        out.push_str(&rest[..n]);
        b = &rest[n + 2..];
    }
}

fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

fn admin_config(dir: &Path) -> ServeConfig {
    let mut c = config(dir);
    c.admin.enabled = true;
    c.admin.listen = "127.0.0.1:0".into();
    c
}

/// Parses a scrape with `tests/admin_metrics.py`.
fn parse_metrics(text: &str) -> Value {
    let mut child = Command::new("python3")
        .arg("tests/admin_metrics.py")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 (scripts/setup.sh installs it and prometheus-client)");
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "parser failed: {}\n{text}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn sample(m: &Value, name: &str, label: Option<(&str, &str)>) -> f64 {
    m["samples"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s[0] == name && label.map(|(k, v)| s[1][k] == v).unwrap_or(true))
        .and_then(|s| s[2].as_f64())
        .unwrap_or_else(|| panic!("no sample {name} {label:?}"))
}

fn frame(seq: u64, channels: u32, values: &[f32]) -> Vec<u8> {
    let mut b = Vec::new();
    let h = Header { version: 1, dtype: Dtype::F32, flags: 0, seq, t_ns: 1, channels, samples: 1 };
    encode_frame(&mut b, &h, values);
    b
}

#[test]
fn metrics_scraped_during_a_replay_match_the_daemon_summary() {
    let dir = tempfile::tempdir().unwrap();
    let (mf, rec) = demo(2000);
    let mut rig = Rig::start(&admin_config(dir.path()), mf);
    let addr = rig.daemon.admin_addr.unwrap();
    // Scrape at 10 Hz while the replay runs; every scrape must parse.
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let scraper = std::thread::spawn(move || {
        let mut texts = Vec::new();
        while !stop2.load(Ordering::Relaxed) {
            texts.push(http(addr, "GET", "/metrics", "").1);
            std::thread::sleep(Duration::from_millis(100));
        }
        texts
    });
    let opts = ReplayOptions { speed: Some(2000.0 * rec.bin_seconds / 1.5), ..ReplayOptions::default() };
    rig.publisher.replay(&rec, &opts, &AtomicBool::new(false)).unwrap();
    // Some drops of known reasons after the stream.
    let c = rec.n_channels() as u32;
    let mut bad = frame(5000, c, rec.spikes.row(0));
    bad[0] = b'X';
    for _ in 0..3 {
        rig.publisher.send_raw(b"spikes", &bad).unwrap();
    }
    rig.publisher.send_raw(b"spikes", &frame(10, c, rec.spikes.row(10))).unwrap(); // duplicate
    rig.wait_outputs(2000);
    let counted = rig.daemon.counters.wait_until(Duration::from_secs(20), |c| c.dropped_total() >= 4);
    assert!(counted, "the four bad frames were not counted");
    stop.store(true, Ordering::Relaxed);
    let during = scraper.join().unwrap();
    let (code, last) = http(addr, "GET", "/metrics", "");
    assert_eq!(code, 200);
    let (summary, _) = rig.finish();

    assert!(during.len() >= 10, "{} scrapes", during.len());
    let mid = parse_metrics(&during[during.len() / 2]);
    let mid_bins = sample(&mid, "alternator_bins_decoded_total", None);
    assert!(mid_bins > 0.0 && mid_bins < 2000.0, "a scrape in the middle of the replay saw {mid_bins} bins");

    let m = parse_metrics(&last);
    let s = &summary.counters;
    assert_eq!(m["types"]["alternator_bins_decoded"], "counter");
    assert_eq!(m["types"]["alternator_receive_to_publish_latency_seconds"], "histogram");
    assert_eq!(sample(&m, "alternator_bins_decoded_total", None), s.bins_in as f64);
    assert_eq!(s.bins_in, 2000);
    assert_eq!(sample(&m, "alternator_bins_published_total", None), s.bins_out as f64);
    assert_eq!(sample(&m, "alternator_bins_imputed_total", None), s.imputed as f64);
    assert_eq!(sample(&m, "alternator_state_resets_total", None), s.resets as f64);
    assert_eq!(sample(&m, "alternator_recorder_lost_items_total", None), s.record_lost as f64);
    for r in DropReason::ALL {
        let got = sample(&m, "alternator_frames_dropped_total", Some(("reason", r.as_str())));
        assert_eq!(got, s.dropped(r) as f64, "drops for {}", r.as_str());
    }
    assert_eq!(s.dropped(DropReason::BadMagic), 3);
    assert_eq!(s.dropped(DropReason::Duplicate), 1);
    // The histogram counts every decoded bin, and its buckets add up.
    let count = sample(&m, "alternator_receive_to_publish_latency_seconds_count", None);
    assert_eq!(count, s.bins_in as f64);
    assert_eq!(count, summary.latency.count as f64);
    let inf = sample(&m, "alternator_receive_to_publish_latency_seconds_bucket", Some(("le", "+Inf")));
    assert_eq!(inf, count);
    let sum = sample(&m, "alternator_receive_to_publish_latency_seconds_sum", None);
    let mean_us = sum / count * 1e6;
    assert!(
        mean_us > 0.5 && mean_us < summary.latency.max_us + 1.0,
        "mean {mean_us} µs vs max {}",
        summary.latency.max_us
    );
    // Gauges.
    assert!(sample(&m, "alternator_last_bin_age_seconds", None) < 10.0);
    assert!(sample(&m, "alternator_recorded_bytes_total", None) > 0.0);
    assert!(sample(&m, "alternator_bins_per_second", None) >= 0.0);
}

fn ctl(rig: &Rig, cmd: &str) -> Value {
    control::request(&rig.ctx, rig.daemon.control_endpoint.as_ref().unwrap(), cmd, 10_000).unwrap()
}

fn wait_runs(rig: &Rig, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let st = ctl(rig, "status");
        if st["retrain"]["runs"] == n && st["retrain"]["running"] == false {
            return;
        }
        assert!(Instant::now() < deadline, "retraining run {n} did not finish: {st}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn api_and_control_socket_give_the_same_answers() {
    let dir = tempfile::tempdir().unwrap();
    let (mf, rec) = demo(200);
    // A models directory with the demo model, a second accepted one and a rejected one.
    let models = dir.path().join("models");
    let store = ModelStore::new(&models);
    let mut first = mf.clone();
    store.add(&mut first).unwrap();
    let mut second = alternator::fixtures::synthetic_model(rec.n_channels(), 3);
    second.meta.decision = Some(serde_json::json!({"status": "accepted"}));
    store.add(&mut second).unwrap();
    let mut rejected = alternator::fixtures::synthetic_model(rec.n_channels(), 4);
    rejected.meta.decision = Some(serde_json::json!({"status": "rejected"}));
    store.add(&mut rejected).unwrap();
    let mut cfg = admin_config(&dir.path().join("sessions"));
    cfg.model.models_dir = models;
    cfg.retrain.enabled = true;
    let rig = Rig::start(&cfg, mf.clone());
    let addr = rig.daemon.admin_addr.unwrap();

    // Models and status.
    let (code, body) = http(addr, "GET", "/api/models", "");
    assert_eq!(code, 200);
    assert_eq!(json(&body), ctl(&rig, "models"));
    assert_eq!(json(&body)["generations"].as_array().unwrap().len(), 3);
    let (code, body) = http(addr, "GET", "/api/status", "");
    assert_eq!(code, 200);
    let (h, z) = (json(&body), ctl(&rig, "status"));
    assert_eq!(h["model_id"], z["model_id"]);
    assert_eq!(h["channels"], z["channels"]);
    assert_eq!(h["retrain"]["live_generation"], 1);

    // Rollback: to generation 2 over HTTP, back to 1 over ZeroMQ, same shape of answer.
    let (code, body) = http(addr, "POST", "/api/rollback/2", "");
    assert_eq!(code, 200, "{body}");
    let h = json(&body);
    assert_eq!(h["ok"], true);
    assert_eq!(h["message"], format!("generation 2 ({}) is live", second.meta.id));
    assert_eq!(ctl(&rig, "status")["model_id"], second.meta.id.as_str());
    let z = ctl(&rig, "rollback 1");
    assert_eq!(z["message"], format!("generation 1 ({}) is live", mf.meta.id));
    assert_eq!(json(&http(addr, "GET", "/api/status", "").1)["model_id"], mf.meta.id.as_str());

    // Refusals: the same error text, and a status code for its class.
    for (path, cmd, want) in [
        ("/api/rollback/3", "rollback 3", 409),
        ("/api/rollback/99", "rollback 99", 404),
        ("/api/rollback/x", "rollback x", 400),
    ] {
        let (code, body) = http(addr, "POST", path, "");
        assert_eq!(code, want, "{path}: {body}");
        let (h, z) = (json(&body), ctl(&rig, cmd));
        assert_eq!(h["ok"], false);
        assert_eq!(h, z, "{path} vs {cmd}");
    }

    // Retrain: accepted by both (the run itself fails: no labelled data).
    let (code, body) = http(addr, "POST", "/api/retrain", "");
    assert_eq!(code, 202, "{body}");
    wait_runs(&rig, 1);
    let z = ctl(&rig, "retrain");
    assert_eq!(json(&body), z);
    wait_runs(&rig, 2);
    let st = ctl(&rig, "status");
    assert_eq!(st["retrain"]["failed"], 2, "{st}");
    // The retrain outcome counters on /metrics.
    let m = parse_metrics(&http(addr, "GET", "/metrics", "").1);
    assert_eq!(sample(&m, "alternator_retrain_runs_total", Some(("outcome", "failed"))), 2.0);
    assert_eq!(sample(&m, "alternator_live_model_generation", None), 1.0);
    // Unknown paths and foreign origins.
    assert_eq!(http(addr, "GET", "/api/nope", "").0, 404);
    assert_eq!(http(addr, "POST", "/api/retrain", "Origin: http://evil.example\r\n").0, 403);
    rig.finish();
}

#[test]
fn retrain_and_rollback_refused_alike_when_retraining_is_off() {
    let dir = tempfile::tempdir().unwrap();
    let (mf, _) = demo(10);
    let rig = Rig::start(&admin_config(dir.path()), mf);
    let addr = rig.daemon.admin_addr.unwrap();
    let (code, body) = http(addr, "POST", "/api/retrain", "");
    assert_eq!(code, 409);
    assert_eq!(json(&body), ctl(&rig, "retrain"));
    let (code, body) = http(addr, "POST", "/api/rollback/1", "");
    assert_eq!(code, 409);
    assert_eq!(json(&body), ctl(&rig, "rollback 1"));
    rig.finish();
}

#[test]
fn remote_listen_needs_allow_remote_and_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = admin_config(dir.path());
    cfg.admin.listen = "0.0.0.0:0".into();
    let p = cfg.admin.problems();
    assert!(p.len() == 1 && p[0].starts_with("admin.listen"), "{p:?}");
    cfg.admin.allow_remote = true;
    let p = cfg.admin.problems();
    assert!(p.len() == 1 && p[0].starts_with("admin.token"), "{p:?}");
    cfg.admin.token = "a-token-of-24-characters".into();
    assert!(cfg.admin.problems().is_empty(), "{:?}", cfg.admin.problems());
    // Bound on every interface, loopback clients still need no token.
    let (mf, _) = demo(10);
    let rig = Rig::start(&cfg, mf);
    let port = rig.daemon.admin_addr.unwrap().port();
    let local: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    assert_eq!(http(local, "GET", "/api/status", "").0, 200);
    rig.finish();
}

fn chromium() -> String {
    for c in ["chromium", "chromium-browser", "google-chrome"] {
        if Command::new("which").arg(c).stdout(Stdio::null()).status().map(|s| s.success()).unwrap_or(false) {
            return c.to_string();
        }
    }
    panic!("headless Chromium is needed for the dashboard test (scripts/setup.sh installs Debian's `chromium`)");
}

/// A headless Chromium driven over the DevTools protocol (loopback only):
/// `--dump-dom --virtual-time-budget` never returns while the page holds an
/// event stream open, so the test navigates, waits in real time, then reads
/// the DOM and takes a screenshot itself.
struct Browser {
    child: std::process::Child,
    ws: tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<TcpStream>>,
    next_id: u64,
    _profile: tempfile::TempDir,
}

impl Browser {
    fn start(binary: &str) -> Browser {
        let profile = tempfile::tempdir().unwrap();
        let child = Command::new(binary)
            .args(["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1400,1150"])
            .args(["--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0", "--no-first-run"])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let port_file = profile.path().join("DevToolsActivePort");
        let deadline = Instant::now() + Duration::from_secs(20);
        let port: u16 = loop {
            if let Some(p) = std::fs::read_to_string(&port_file).ok().and_then(|s| s.lines().next()?.parse().ok()) {
                break p;
            }
            assert!(Instant::now() < deadline, "Chromium did not open its DevTools port");
            std::thread::sleep(Duration::from_millis(100));
        };
        let devtools: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let targets = json(&http(devtools, "GET", "/json/list", "").1);
        let page = targets.as_array().unwrap().iter().find(|t| t["type"] == "page").expect("a page target");
        let (ws, _) = tungstenite::connect(page["webSocketDebuggerUrl"].as_str().unwrap()).unwrap();
        Browser { child, ws, next_id: 1, _profile: profile }
    }

    /// One DevTools command; waits for its answer (events are skipped).
    fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let msg = serde_json::json!({"id": id, "method": method, "params": params}).to_string();
        self.ws.send(tungstenite::Message::text(msg)).unwrap();
        loop {
            let m = self.ws.read().unwrap();
            if let Ok(text) = m.to_text() {
                let v: Value = serde_json::from_str(text).unwrap_or(Value::Null);
                if v["id"] == id {
                    assert!(v.get("error").is_none(), "{method}: {v}");
                    return v["result"].clone();
                }
            }
        }
    }

    fn eval(&mut self, expr: &str) -> Value {
        let r = self.call("Runtime.evaluate", serde_json::json!({"expression": expr, "returnByValue": true}));
        r["result"]["value"].clone()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        _ => 63,
    };
    let bytes: Vec<u8> = s.bytes().filter(|&c| c != b'=' && !c.is_ascii_whitespace()).map(val).collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for ch in bytes.chunks(4) {
        let n = ch.iter().enumerate().fold(0u32, |acc, (i, &v)| acc | (v as u32) << (18 - 6 * i));
        out.extend_from_slice(&n.to_be_bytes()[1..ch.len()]);
    }
    out
}

/// The text of the element with `id` in a dumped DOM.
fn element<'a>(dom: &'a str, id: &str) -> &'a str {
    let at = dom.find(&format!("id=\"{id}\"")).unwrap_or_else(|| panic!("no #{id} in the DOM"));
    let open = at + dom[at..].find('>').unwrap() + 1;
    let close = open + dom[open..].find('<').unwrap();
    &dom[open..close]
}

fn attribute<'a>(dom: &'a str, id: &str, attr: &str) -> &'a str {
    let at = dom.find(&format!("id=\"{id}\"")).unwrap();
    let tag = &dom[at..at + dom[at..].find('>').unwrap()];
    let k = tag.find(&format!("{attr}=\"")).unwrap_or_else(|| panic!("no {attr} on #{id}: {tag}")) + attr.len() + 2;
    &tag[k..k + tag[k..].find('"').unwrap()]
}

#[test]
fn dashboard_renders_live_data_in_headless_chromium() {
    let browser = chromium();
    let dir = tempfile::tempdir().unwrap();
    let (mf, rec) = demo(3000);
    let mut rig = Rig::start(&admin_config(dir.path()), mf);
    let url = format!("http://{}/", rig.daemon.admin_addr.unwrap());
    let shot_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("admin");
    std::fs::create_dir_all(&shot_dir).unwrap();
    let shot = shot_dir.join("dashboard.png");
    let _ = std::fs::remove_file(&shot);
    // The browser looks while the replay streams at 200 bins/s (with true
    // behaviour); the replay stops when the browser is done.
    let done = Arc::new(AtomicBool::new(false));
    let (done2, shot2) = (done.clone(), shot.clone());
    let looker = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(1000));
        let mut b = Browser::start(&browser);
        b.call("Page.enable", serde_json::json!({}));
        b.call("Page.navigate", serde_json::json!({"url": url}));
        std::thread::sleep(Duration::from_secs(4));
        let dom = b.eval("document.documentElement.outerHTML").as_str().unwrap_or("").to_string();
        let png = b.call("Page.captureScreenshot", serde_json::json!({"format": "png"}));
        std::fs::write(&shot2, base64_decode(png["data"].as_str().unwrap())).unwrap();
        done2.store(true, Ordering::Relaxed);
        dom
    });
    let opts = ReplayOptions { speed: Some(200.0 * rec.bin_seconds), ..ReplayOptions::default() };
    rig.publisher.replay(&rec, &opts, &done).unwrap();
    let dom = looker.join().unwrap();
    rig.finish();

    let bins_per_s: f64 = element(&dom, "bins-per-s").trim().parse().unwrap_or_else(|_| panic!("bins/s: {dom}"));
    assert!(bins_per_s > 50.0, "bins/s shown: {bins_per_s}");
    let points: usize = attribute(&dom, "plot-points", "data-points").parse().unwrap();
    assert!(points > 20, "plot drew {points} decoded points");
    assert!(dom.contains("<canvas"), "uPlot drew canvases");
    assert_eq!(element(&dom, "alive"), "decoding");
    let png = std::fs::read(&shot).expect("screenshot written");
    assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000, "screenshot {} bytes", png.len());
    eprintln!("dashboard screenshot: {}", shot.display());
}
