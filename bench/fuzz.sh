#!/usr/bin/env bash
# Longer run of the seeded property tests in tests/fuzz.rs (outside CI):
#   bash bench/fuzz.sh [CASES]      (default 1,000,000 per property; the HDF5
# property runs CASES/1000 damaged files, each a real HDF5 open)
set -euo pipefail
cd "$(dirname "$0")/.."
CASES=${1:-1000000}
export RAYON_NUM_THREADS=1
start=$(date +%s)
FUZZ_ITERS=$CASES cargo test --release --locked --test fuzz -- --skip hdf5 --test-threads 2
FUZZ_ITERS=$((CASES / 1000)) cargo test --release --locked --test fuzz hdf5
echo "fuzz: $CASES cases per property (HDF5: $((CASES / 1000))), $(( $(date +%s) - start )) s, no panic, every rejection documented"
