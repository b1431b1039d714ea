//! The daemon as a node in a Redis/BRAND graph, against a real
//! `redis-server` started on a free port (stopped at the end) and a
//! redis-py stand-in for BRAND's binning node (`tests/brand_node.py`)
//! publishing `recordings/demo-test.h5` in BRAND's entry layout.
//!
//! The output stream must equal offline decoding of the same bins (to 1e-6)
//! with the node's hole imputed, carry `i`, `sync` and `flags` as
//! documented, and a server restart mid-stream must be survived: input and
//! output rejoin, and the lost bins are imputed.

mod common;

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use alternator::client::collect_outputs;
use alternator::daemon::config::ServeConfig;
use alternator::daemon::Daemon;
use alternator::wire::{FLAG_IMPUTED, FLAG_RESET};
use redis::Value;

/// A `redis-server` of the test's own, without persistence.
struct Server {
    port: u16,
    child: Option<Child>,
}

impl Server {
    fn start() -> Server {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut s = Server { port, child: None };
        s.spawn();
        s
    }

    fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server not found: run scripts/setup.sh (installs the redis-server package)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(mut c) = self.conn() {
                if redis::cmd("PING").query::<String>(&mut c).is_ok() {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server on port {} did not come up", self.port);
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn conn(&self) -> redis::RedisResult<redis::Connection> {
        redis::Client::open(self.url())?.get_connection_with_timeout(Duration::from_millis(500))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

fn config(server: &Server, record: &Path) -> ServeConfig {
    let mut c = common::config(record);
    c.record.enabled = false;
    c.ingest.kind = "redis".into();
    c.ingest.redis.url = server.url();
    c.publish.redis.enabled = true;
    c
}

/// The stand-in BRAND node, started in the background.
fn node(server: &Server, bins: usize, rate: f64, skip: &str) -> Child {
    let mut cmd = Command::new("python3");
    cmd.arg("tests/brand_node.py")
        .args(["--port", &server.port.to_string(), "--bins", &bins.to_string(), "--rate", &rate.to_string()])
        .stdout(Stdio::piped());
    if !skip.is_empty() {
        cmd.args(["--skip", skip]);
    }
    cmd.spawn().unwrap()
}

fn wait_for_outputs(d: &Daemon, n: u64, secs: u64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while d.counters.snapshot().bins_out < n && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One decoded entry of the output stream.
#[derive(Debug)]
struct OutEntry {
    i: u64,
    ts: u64,
    flags: u16,
    sync: String,
    values: Vec<f32>,
}

fn field<'a>(fields: &'a [Value], name: &str) -> &'a [u8] {
    for kv in fields.chunks_exact(2) {
        if let (Value::BulkString(k), Value::BulkString(v)) = (&kv[0], &kv[1]) {
            if k == name.as_bytes() {
                return v;
            }
        }
    }
    panic!("field {name} missing")
}

fn read_stream(server: &Server, key: &str) -> Vec<(Vec<u8>, Vec<Value>)> {
    let mut c = server.conn().unwrap();
    let v: Value = redis::cmd("XRANGE").arg(key).arg("-").arg("+").query(&mut c).unwrap();
    let Value::Array(entries) = v else { panic!("{v:?}") };
    entries
        .into_iter()
        .map(|e| {
            let Value::Array(mut pair) = e else { panic!() };
            let (Value::Array(fields), Value::BulkString(id)) = (pair.pop().unwrap(), pair.pop().unwrap()) else {
                panic!()
            };
            (id, fields)
        })
        .collect()
}

fn read_outputs(server: &Server) -> Vec<OutEntry> {
    read_stream(server, "decoded")
        .into_iter()
        .map(|(_, f)| OutEntry {
            i: u64::from_le_bytes(field(&f, "i").try_into().unwrap()),
            ts: u64::from_le_bytes(field(&f, "ts").try_into().unwrap()),
            flags: u16::from_le_bytes(field(&f, "flags").try_into().unwrap()),
            sync: String::from_utf8(field(&f, "sync").to_vec()).unwrap(),
            values: field(&f, "samples").chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect(),
        })
        .collect()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

#[test]
fn brand_node_stream_decodes_like_offline_with_sync_handed_on() {
    const BINS: usize = 600;
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let (mf, rec) = common::demo(BINS);
    let daemon = Daemon::start(&config(&server, dir.path()), mf.clone(), &zmq::Context::new()).unwrap();

    // Bins 200..203 never reach Redis: a hole the engine imputes.
    let out = node(&server, BINS, 1000.0, "200:203").wait_with_output().unwrap();
    assert!(out.status.success(), "BRAND stand-in failed");
    wait_for_outputs(&daemon, BINS as u64, 15);
    let summary = daemon.shutdown();
    assert_eq!(summary.counters.bins_in, BINS as u64 - 3);
    assert_eq!(summary.counters.imputed, 3);

    let got = read_outputs(&server);
    assert_eq!(got.len(), BINS, "one output entry per bin, imputed ones included");
    let inputs = read_stream(&server, "binned_spikes");
    let hole = |t: usize| (200..203).contains(&t);
    let want = common::offline(&mf, &rec, hole);
    let mut worst = 0f32;
    let mut input = inputs.iter();
    for (t, e) in got.iter().enumerate() {
        assert_eq!(e.i, t as u64, "outputs in seq order");
        assert_eq!(e.flags & FLAG_IMPUTED != 0, hole(t), "bin {t} flags {}", e.flags);
        assert_eq!(e.flags & FLAG_RESET, 0);
        worst = worst.max(max_abs_diff(&e.values, want.row(t)));
        if hole(t) {
            continue;
        }
        let (_, f) = input.next().unwrap();
        assert_eq!(e.sync.as_bytes(), field(f, "sync"), "sync of bin {t} handed on");
        assert_eq!(e.sync, format!("{{\"nsp_clock\": {}}}", 30000 + 600 * t));
        let in_ts = u64::from_le_bytes(field(f, "ts").try_into().unwrap());
        assert!(e.ts >= in_ts, "ts is this node's monotonic clock at the write, after the input's");
    }
    assert!(worst <= 1e-6, "daemon vs offline: max |diff| = {worst}");
}

#[test]
fn a_redis_restart_mid_stream_is_survived_and_the_hole_imputed() {
    const BINS: usize = 1000;
    let mut server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let (mf, rec) = common::demo(BINS);
    let mut cfg = config(&server, dir.path());
    cfg.ingest.max_gap_bins = 2000;
    let daemon = Daemon::start(&cfg, mf.clone(), &zmq::Context::new()).unwrap();
    let ctx = zmq::Context::new();
    let stop = Arc::new(AtomicBool::new(false));
    let sub = collect_outputs(&ctx, &daemon.publish_endpoint, stop.clone(), 0, None).unwrap();
    assert!(
        daemon.counters.wait_until(Duration::from_secs(20), |c| c.subscriptions >= 1),
        "no subscription reached the daemon"
    );

    let node = node(&server, BINS, 250.0, "");
    std::thread::sleep(Duration::from_millis(1500));
    let before = daemon.counters.snapshot().bins_in;
    server.stop();
    std::thread::sleep(Duration::from_millis(300));
    server.spawn();
    let out = node.wait_with_output().unwrap();
    assert!(out.status.success(), "BRAND stand-in failed");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(report["lost"].as_u64().unwrap() > 0, "the restart lost no bins: {report}");
    wait_for_outputs(&daemon, BINS as u64, 10);
    let summary = daemon.shutdown();
    stop.store(true, Ordering::Relaxed);
    let got = sub.join().unwrap();

    assert!(before > 100, "bins before the restart: {before}");
    assert!(summary.counters.bins_in > before + 100, "bins after the restart: {}", summary.counters.bins_in - before);
    let seqs: Vec<u64> = got.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, (0..BINS as u64).collect::<Vec<_>>(), "every bin has one output, the hole imputed");
    let imputed: Vec<bool> = got.iter().map(|r| r.flags & FLAG_IMPUTED != 0).collect();
    let n_imputed = imputed.iter().filter(|&&b| b).count();
    assert!(n_imputed > 0 && n_imputed as u64 == summary.counters.imputed, "imputed {n_imputed}");
    assert!(got.iter().all(|r| r.flags & FLAG_RESET == 0), "a hole within max_gap_bins must not reset");
    let want = common::offline(&mf, &rec, |t| imputed[t]);
    let worst = got.iter().enumerate().map(|(t, r)| max_abs_diff(&r.values, want.row(t))).fold(0.0, f32::max);
    assert!(worst <= 1e-6, "daemon vs offline over the restart: max |diff| = {worst}");

    // The output stream was rejoined on the restarted server too.
    let after = read_outputs(&server);
    assert!(!after.is_empty(), "nothing written to the output stream after the restart");
    assert_eq!(after.last().unwrap().i, BINS as u64 - 1);
}

#[test]
fn an_unreachable_server_is_a_clear_start_up_error() {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let mut c = common::config(dir.path());
    c.ingest.kind = "redis".into();
    c.ingest.redis.url = format!("redis://127.0.0.1:{port}");
    c.ingest.redis.connect_timeout_ms = 200;
    let (mf, _) = common::demo(10);
    let err = Daemon::start(&c, mf, &zmq::Context::new()).err().expect("start must fail").to_string();
    assert!(err.contains(&format!("127.0.0.1:{port}")) && err.contains("ingest.redis.url"), "{err}");
}
