//! The per-bin path allocates nothing: frame parsing and conversion, the
//! step kernel (observed and imputed bins), output encoding and record-batch
//! filling are run under a counting global allocator.
//!
//! The allocator wrapper is the only `unsafe` in the tests: `GlobalAlloc` is
//! an unsafe trait; it forwards to the system allocator unchanged.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use alternator::bench::{synthetic_bins, synthetic_model};
use alternator::daemon::recorder::RecordBatch;
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
