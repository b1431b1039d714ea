#!/usr/bin/env bash
# The whole test suite: installs prerequisites, then runs every unit and
# integration test (real HDF5 files, real ZeroMQ sockets, the real model).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export RAYON_NUM_THREADS="${RAYON_NUM_THREADS:-1}"
cargo test --all-targets --locked "$@"
