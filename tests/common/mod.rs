//! Shared parts of the integration tests: the bundled demo files, a daemon
//! wired to a publisher and a subscriber over TCP loopback, offline decoding.
#![allow(dead_code)]

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use alternator::client::{collect_outputs, Received};
use alternator::daemon::config::ServeConfig;
use alternator::daemon::Daemon;
use alternator::matrix::Matrix;
use alternator::model::{ModelFile, StepKernel};
use alternator::recording::{ReadOptions, Recording};
use alternator::replay::Publisher;

pub const MODEL: &str = "recordings/demo-model.safetensors";
pub const DATA: &str = "recordings/demo-test.h5";

pub fn demo(bins: usize) -> (ModelFile, Recording) {
    let mf = ModelFile::load(Path::new(MODEL)).unwrap();
    let rec = Recording::read(Path::new(DATA), &ReadOptions::default()).unwrap();
    (mf, rec.slice_bins(0, bins))
}

pub fn config(record_dir: &Path) -> ServeConfig {
    let mut c = ServeConfig::default();
    c.ingest.protocol_v1.endpoint = "tcp://127.0.0.1:*".into();
    c.publish.endpoint = "tcp://127.0.0.1:*".into();
    c.control.endpoint = "tcp://127.0.0.1:*".into();
    c.record.dir = record_dir.to_path_buf();
    c.stats.interval_s = 1.0;
    c
}

/// Daemon + subscriber + publisher wired together on loopback.
pub struct Rig {
    pub ctx: zmq::Context,
    pub daemon: Daemon,
    pub stop_sub: Arc<AtomicBool>,
    pub sub: std::thread::JoinHandle<Vec<Received>>,
    pub publisher: Publisher,
}

impl Rig {
    pub fn start(cfg: &ServeConfig, mf: ModelFile) -> Rig {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
            .with_test_writer()
            .try_init();
        // The daemon gets its own ZeroMQ context, as a separate process would
        // have: sharing one I/O thread with the clients lost output frames at
        // saturation in the benchmark.
        let ctx = zmq::Context::new();
        let daemon = Daemon::start(cfg, mf, &zmq::Context::new()).unwrap();
        let stop_sub = Arc::new(AtomicBool::new(false));
        let sub = collect_outputs(&ctx, &daemon.publish_endpoint, stop_sub.clone(), 0, None).unwrap();
        let subscribed = daemon.counters.wait_until(Duration::from_secs(20), |c| c.subscriptions >= 1);
        assert!(subscribed, "the output subscriber's subscription never reached the daemon");
        let publisher = Publisher::new(&ctx, &daemon.ingest_endpoint, false).unwrap();
        publisher.wait_for_subscriber(Duration::from_secs(5)).unwrap();
        Rig { ctx, daemon, stop_sub, sub, publisher }
    }

    /// Waits until the daemon has published `n` outputs (the subscriber
    /// drains what is in flight when the rig finishes).
    pub fn wait_outputs(&self, n: u64) {
        let done = self.daemon.counters.wait_until(Duration::from_secs(20), |c| c.bins_out >= n);
        assert!(done, "the daemon did not publish {n} outputs within 20 s");
    }

    pub fn finish(self) -> (alternator::daemon::DaemonSummary, Vec<Received>) {
        let summary = self.daemon.shutdown();
        self.stop_sub.store(true, Ordering::Relaxed);
        let got = self.sub.join().unwrap();
        drop(self.ctx);
        (summary, got)
    }
}

/// Offline decoding with the same kernel, imputing the given seqs.
pub fn offline(mf: &ModelFile, rec: &Recording, missing: impl Fn(usize) -> bool) -> Matrix {
    let mut k = StepKernel::new(mf.model.clone());
    let mut out = Matrix::zeros(rec.n_bins(), mf.model.spec.dz);
    for t in 0..rec.n_bins() {
        if missing(t) {
            k.step_missing(out.row_mut(t));
        } else {
            k.step(rec.spikes.row(t), out.row_mut(t));
        }
    }
    out
}

/// A TCP port free on loopback right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}
