#!/usr/bin/env bash
# The whole test suite: installs prerequisites, checks that the benchmarks
# build, then runs every unit and integration test (real HDF5 files, real
# ZeroMQ sockets, the real model, a Python client).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export RAYON_NUM_THREADS="${RAYON_NUM_THREADS:-1}"
# The benchmarks are compiled (not run) with the test profile, sharing the
# dependencies the tests build instead of a second, optimised build of them.
cargo test --benches --no-run --locked --quiet
cargo test --lib --bins --tests --locked "$@"
