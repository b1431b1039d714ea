//! The per-bin path allocates nothing: the daemon's own protocol-v1 source
//! and engine (parsing, sequence rules with imputed gaps and duplicates,
//! non-finite bins, behaviour bins, the step kernel with the shipped
//! preprocessing, publishing, full record batches handed over and
//! recycled), and the front end, are run under a counting global allocator.
//!
//! The allocator wrapper is the only `unsafe` in the tests: `GlobalAlloc` is
//! an unsafe trait; it forwards to the system allocator unchanged.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use alternator::daemon::recorder::RecordBatch;
use alternator::fixtures::{synthetic_bins, synthetic_model};
use alternator::model::StepKernel;
use alternator::wire::{encode_f32, encode_frame, Dtype, Frame, Header};

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);
thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}

#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.with(|c| c.get()) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.with(|c| c.get()) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn counted<R>(f: impl FnOnce() -> R) -> (R, usize) {
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    COUNTING.with(|c| c.set(true));
    let r = f();
    COUNTING.with(|c| c.set(false));
    (r, ALLOCATIONS.load(Ordering::Relaxed) - before)
}

/// The daemon's engine and protocol-v1 source over `inproc://` sockets,
/// driven exactly as the decode loop drives them (`poll`, `tick`,
/// `housekeeping`), with the bundled demo model (smoothing and history on).
#[test]
fn the_daemons_per_bin_path_does_not_allocate() {
    use alternator::daemon::engine::{Engine, EngineSettings};
    use alternator::daemon::record_link::{RecordSlot, RecorderLink};
    use alternator::ingest::protocol_v1::{ProtocolV1Section, ProtocolV1Source};
    use alternator::ingest::Source;
    use alternator::publish::{PublishSection, ZmqPublisher};
    use std::sync::Arc;
    use std::time::Duration;

    let mf = alternator::model::ModelFile::load(std::path::Path::new("recordings/demo-model.safetensors")).unwrap();
    assert!(mf.model.spec.history > 0, "the demo model should exercise history stacking");
    let (channels, dz) = (mf.model.spec.channels, mf.model.spec.dz);
    let ctx = zmq::Context::new();
    let src_cfg =
        ProtocolV1Section { endpoint: "inproc://alloc-in".into(), receive_hwm_messages: 0, ..Default::default() };
    let mut source = ProtocolV1Source::open(&src_cfg, &ctx, channels).unwrap();
    let out_cfg = PublishSection { endpoint: "inproc://alloc-out".into(), ..Default::default() };
    let out = ZmqPublisher::open(&out_cfg, &ctx, dz).unwrap();
    // The recorder side: full batches come back emptied, as the recorder thread does.
    let (full_tx, full_rx) = crossbeam_channel::bounded::<RecordBatch>(8);
    let (free_tx, free_rx) = crossbeam_channel::bounded::<RecordBatch>(8);
    for _ in 0..8 {
        free_tx.send(RecordBatch::new(256, channels, dz)).unwrap();
    }
    let recycler = std::thread::spawn(move || {
        let mut n = 0;
        for mut b in full_rx {
            b.clear();
            n += 1;
            let _ = free_tx.send(b);
        }
        n
    });
    let counters = Arc::new(alternator::daemon::stats::LoopCounters::default());
    let set = EngineSettings {
        max_gap_bins: 50,
        stats_interval: Duration::from_secs(3600),
        swap_state: alternator::daemon::config::SwapState::Carry,
        rewarm_bins: 50,
        track_prediction: true,
        watchdog: alternator::daemon::watchdog::WatchdogSettings {
            enabled: true,
            timeout: Duration::from_secs(3600),
            period: Duration::from_millis(20),
            safe_output: alternator::daemon::config::SafeOutput::Decay,
            decay_tau: Duration::from_millis(200),
        },
    };
    let slot = RecordSlot::new(Some(RecorderLink { full_tx, free_rx }));
    let kernel = Box::new(StepKernel::new(mf.model.clone()));
    let mut eng = Engine::new(kernel, "demo".into(), set, counters.clone(), out, slot);

    // A rig: every frame queued before counting starts.
    let rig = ctx.socket(zmq::XPUB).unwrap();
    rig.set_sndhwm(0).unwrap();
    rig.connect("inproc://alloc-in").unwrap();
    // A SUB socket attaches new peers (and sends its subscription) only when
    // called into: poll the idle source until the subscription arrives.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        assert!(!source.poll(Duration::ZERO, &mut eng).unwrap());
        if rig.recv_bytes(zmq::DONTWAIT).is_ok() {
            break;
        }
        assert!(Instant::now() < deadline, "the source never subscribed");
        std::thread::sleep(Duration::from_millis(10));
    }
    let data = synthetic_bins(channels, 600, 2);
    let (mut sent, mut behavior) = (0u64, 0u64);
    for t in 0..600usize {
        if t % 50 == 7 {
            continue; // a gap of one bin: imputed
        }
        let mut row = data.row(t).to_vec();
        if t == 300 {
            row[3] = f32::NAN; // a non-finite bin: imputed, counted
        }
        let h = Header {
            version: 1,
            dtype: Dtype::F32,
            flags: 0,
            seq: t as u64,
            t_ns: 0,
            channels: channels as u32,
            samples: 1,
        };
        let mut body = Vec::new();
        encode_frame(&mut body, &h, &row);
        rig.send_multipart([&b"spikes"[..], &body[..]], 0).unwrap();
        sent += 1;
        if t % 3 == 0 {
            let hb = Header { channels: 2, ..h };
            let mut b2 = Vec::new();
            encode_frame(&mut b2, &hb, &[0.5, -0.5]);
            rig.send_multipart([&b"behavior"[..], &b2[..]], 0).unwrap();
            sent += 1;
            behavior += 1;
        }
        if t == 400 {
            rig.send_multipart([&b"spikes"[..], &body[..]], 0).unwrap(); // a duplicate
            sent += 1;
        }
    }

    let (polled, allocations) = counted(|| {
        let mut polled = 0u64;
        while polled < sent {
            if let Ok(true) = source.poll(Duration::from_millis(100), &mut eng) {
                polled += 1;
            }
            let now = Instant::now();
            source.tick(now, &mut eng);
            eng.housekeeping(now);
        }
        polled
    });
    assert_eq!(polled, sent);
    let s = counters.snapshot();
    assert_eq!(s.bins_out, 600, "one output per timestep: {s:?}");
    assert_eq!(s.imputed, 12 + 1, "12 gaps and one non-finite bin imputed: {s:?}");
    assert_eq!(s.dropped(alternator::wire::DropReason::Duplicate), 1);
    assert_eq!(s.behavior_in, behavior);
    assert_eq!(allocations, 0, "the daemon's per-bin path allocated {allocations} times");
    drop(eng);
    assert!(recycler.join().unwrap() >= 2, "full record batches were handed over and recycled");
}

#[test]
fn the_per_bin_path_does_not_allocate() {
    let channels = 96;
    let mf = synthetic_model(channels, 1);
    let mut kernel = StepKernel::new(mf.model.clone());
    kernel.set_track_prediction(true);
    let data = synthetic_bins(channels, 64, 2);
    let mut frames = Vec::new();
    for t in 0..64 {
        let mut body = Vec::new();
        let h = Header {
            version: 1,
            dtype: if t % 2 == 0 { Dtype::U16 } else { Dtype::F32 },
            flags: 0,
            seq: t as u64,
            t_ns: 0,
            channels: channels as u32,
            samples: 1,
        };
        encode_frame(&mut body, &h, data.row(t));
        frames.push(body);
    }
    let mut input = vec![0f32; channels];
    let mut out = [0f32; 2];
    let mut enc = Vec::with_capacity(256);
    let mut batch = RecordBatch::new(4096, channels, 2);
    let now = Instant::now();

    let (checksum, allocations) = counted(|| {
        let mut checksum = 0f32;
        for round in 0..32u64 {
            for (t, body) in frames.iter().enumerate() {
                let f = Frame::parse(body, 1 << 20).expect("valid frame");
                f.sample(0, &mut input).expect("right width");
                let seq = round * 64 + t as u64;
                if t % 10 == 9 {
                    kernel.step_missing(&mut out);
                } else {
                    kernel.step(&input, &mut out);
                    batch.push_input(&input, seq, f.header.t_ns, 0, kernel.last_prediction_error(), now);
                }
                encode_f32(&mut enc, seq, f.header.t_ns, 0, 2, &out);
                batch.push_output(&out, seq, 0, now);
                checksum += out[0] + enc[39] as f32;
            }
        }
        checksum
    });
    assert!(checksum.is_finite());
    assert_eq!(allocations, 0, "the per-bin path allocated {allocations} times");

    // The counter does see allocations (the test can fail).
    let (_, n) = counted(|| vec![0u8; 10]);
    assert_eq!(n, 1);
}

#[test]
fn the_front_end_does_not_allocate_after_construction() {
    use alternator::frontend::{FrontEnd, FrontendConfig};
    let (channels, n) = (19, 700);
    let cfg = FrontendConfig { calibration_s: 0.05, common_average: true, ..Default::default() };
    let mut fe = FrontEnd::new(&cfg, channels, 30_000.0, 0.01).unwrap();
    let mut block: Vec<f32> = (0..channels * n).map(|i| ((i * 7919 % 211) as f32 - 105.0) * 3.0).collect();
    block[5] = f32::NAN;
    let mut bins = 0u64;
    let ((), allocations) = counted(|| {
        let mut emit = |_k: u64, c: &[f32]| bins += c.len() as u64;
        for b in 0..6u64 {
            fe.process(b * n as u64, &block, n, &mut emit).unwrap();
        }
        fe.process(10 * n as u64, &block, n, &mut emit).unwrap(); // a hole
        fe.restart(0);
        fe.process(0, &block[..channels], 1, &mut emit).unwrap();
    });
    assert!(fe.thresholds().is_some(), "calibration ran inside the counted section");
    assert!(bins > 0);
    assert_eq!(allocations, 0, "the front end allocated {allocations} times");
}
