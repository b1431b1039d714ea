//! How closely `replay` keeps the recorded rate: a 1 kHz recording of 16
//! channels is published over TCP loopback to a subscriber that timestamps
//! every frame; reported are the achieved rate's error and percentiles of
//! the gap between consecutive arrivals (target 1000 µs). Speed goals are
//! measured here, never asserted in tests (the machine is shared).
//!
//! Run: `cargo bench --bench pacing` (3 runs of 3000 bins).

use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use alternator::latency::{histogram_of, quantile_us};
use alternator::matrix::Matrix;
use alternator::recording::Recording;
use alternator::replay::{Publisher, ReplayOptions};

const BINS: usize = 3000;

fn recording() -> Recording {
    let data: Vec<f32> = (0..BINS * 16).map(|i| (i % 7) as f32).collect();
    Recording {
        spikes: Matrix::from_vec(BINS, 16, data),
        behavior: None,
        behavior_valid: None,
        timestamps: None,
        bin_seconds: 0.001,
    }
}

/// Arrival times (ns since the first frame) of everything `sub` receives.
fn arrivals(sub: zmq::Socket) -> std::thread::JoinHandle<Vec<u64>> {
    std::thread::spawn(move || {
        let mut t = Vec::with_capacity(BINS);
        let mut first: Option<Instant> = None;
        while t.len() < BINS {
            if sub.recv_multipart(0).is_err() {
                break; // 1 s without a frame: the publisher is done
            }
            let now = Instant::now();
            t.push(now.duration_since(*first.get_or_insert(now)).as_nanos() as u64);
        }
        t
    })
}

fn one_run(ctx: &zmq::Context, rec: &Recording) -> (f64, Vec<u64>, usize) {
    let sub = ctx.socket(zmq::SUB).unwrap();
    sub.bind("tcp://127.0.0.1:*").unwrap();
    sub.set_subscribe(b"").unwrap();
    sub.set_rcvtimeo(1000).unwrap();
    let ep = sub.get_last_endpoint().unwrap().unwrap();
    let times = arrivals(sub);
    let mut p = Publisher::new(ctx, &ep, false).unwrap();
    p.wait_for_subscriber(Duration::from_secs(5)).unwrap();
    let opts = ReplayOptions { speed: Some(1.0), ..ReplayOptions::default() };
    let report = p.replay(rec, &opts, &AtomicBool::new(false)).unwrap();
    let t = times.join().unwrap();
    let gaps: Vec<u64> = t.windows(2).map(|w| w[1] - w[0]).collect();
    (report.achieved_rate_hz, gaps, t.len())
}

fn main() {
    let ctx = zmq::Context::new();
    let rec = recording();
    println!("| run | received | achieved rate (target 1000/s) | error | gap p1 µs | p50 µs | p99 µs | max µs |");
    println!("|---|---|---|---|---|---|---|---|");
    for run in 1..=3 {
        let (rate, gaps, got) = one_run(&ctx, &rec);
        let gaps = histogram_of(gaps);
        let p = |q| quantile_us(&gaps, q);
        println!(
            "| {run} | {got} | {rate:.2} | {:+.3} % | {:.0} | {:.0} | {:.0} | {:.0} |",
            (rate - 1000.0) / 10.0,
            p(0.01),
            p(0.5),
            p(0.99),
            p(1.0)
        );
    }
}
