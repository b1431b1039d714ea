#!/usr/bin/env bash
# Regenerates the bundled demo: a simulated 10-minute reaching session to
# train on, a separate 2-minute session (same simulated array) to stream, and
# the demo model trained on the first.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked
B=target/release/alternator
$B simulate reach --preset simple --out recordings/demo-train.h5 --minutes 10 --seed 1 --array-seed 0
$B simulate reach --preset simple --out recordings/demo-test.h5 --minutes 2 --seed 2 --array-seed 0
$B train --data recordings/demo-train.h5 --out recordings/demo-model.safetensors --seed 0 --quiet
$B eval --model recordings/demo-model.safetensors --data recordings/demo-test.h5
