#!/usr/bin/env bash
# The main job on the bundled demo: installs prerequisites, builds, starts
# the daemon on recordings/demo-model.safetensors and streams
# recordings/demo-test.h5 into it over TCP loopback. Extra arguments go to
# `alternator demo` (e.g. --speed 1 for real time, --seconds 20).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --release --locked
exec target/release/alternator demo "$@"
