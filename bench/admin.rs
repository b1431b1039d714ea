//! What the admin server adds to the decode loop's per-bin work: one
//! `LatencyBuckets::record` (binary search over the bucket bounds and two
//! relaxed atomic adds) per observed bin, and one `FeedSender::offer` per
//! output (a modulo for decimation; for kept seqs a copy into a fixed-size
//! point and a `try_send` into a bounded channel, drained here as the admin
//! thread would). Compare with the kernel step itself (`--bench kernel`).
//!
//! Run: `cargo bench --bench admin`.

use criterion::{black_box, criterion_group, criterion_main, Criterion};

use alternator::daemon::telemetry::{output_feed, FeedKind, LatencyBuckets};

fn admin(c: &mut Criterion) {
    let h = LatencyBuckets::default();
    let mut ns = 17_000u64;
    c.bench_function("latency_buckets_record", |b| {
        b.iter(|| {
            ns = (ns * 1103515245 + 12345) % 400_000; // spread over the buckets
            h.record(black_box(ns));
        })
    });
    let (tx, rx) = output_feed(1);
    let out = [0.3f32, -1.2];
    let mut seq = 0u64;
    c.bench_function("feed_offer_every_bin_drained", |b| {
        b.iter(|| {
            seq += 1;
            tx.offer(FeedKind::Decoded, black_box(seq), &out);
            if seq.is_multiple_of(1024) {
                while rx.rx.try_recv().is_ok() {}
            }
        })
    });
    let (tx, _rx) = output_feed(50);
    c.bench_function("feed_offer_decimated_skip", |b| {
        b.iter(|| {
            seq += 1;
            tx.offer(FeedKind::Decoded, black_box(seq * 50 + 1), &out);
        })
    });
}

criterion_group!(benches, admin);
criterion_main!(benches);
