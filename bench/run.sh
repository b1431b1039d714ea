#!/usr/bin/env bash
# Reproduces the README's performance figures on this machine:
#  1. criterion micro-benchmark of the per-bin kernel (C = 96, 192, 1024);
#  2. end-to-end latency over TCP loopback (replayer → daemon → subscriber),
#     per channel count × rate, as a table plus bench/results.json and an SVG;
#  3. the same at 1 kHz × 192 channels with a training job running niced in
#     the background, as during retraining.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export RAYON_NUM_THREADS=1
cargo bench --bench kernel --locked 2>&1 | grep -E "^kernel_step|time:"
cargo build --release --locked
B=target/release/alternator
$B bench --channels 96,192,1024 --rate 50,1000,10000,max --seconds "${SECONDS_PER_RUN:-10}" \
    --json bench/results.json --plot bench/latency.svg
$B bench --channels 192 --rate 1000 --seconds "${SECONDS_PER_RUN:-10}" --with-training --json bench/results-training.json
