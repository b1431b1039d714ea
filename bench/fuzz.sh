#!/usr/bin/env bash
# Longer run of the seeded property tests in tests/fuzz.rs (outside CI):
#   bash bench/fuzz.sh [CASES]      (default 200,000 per property; the HDF5
# property runs CASES/20 damaged files, each a real HDF5 open)
set -euo pipefail
cd "$(dirname "$0")/.."
CASES=${1:-200000}
export RAYON_NUM_THREADS=1
start=$(date +%s)
FUZZ_ITERS=$CASES cargo test --locked --test fuzz -- --skip hdf5 --test-threads 2
FUZZ_ITERS=$((CASES / 20)) cargo test --locked --test fuzz hdf5
echo "fuzz: $CASES cases per property (HDF5: $((CASES / 20))), $(( $(date +%s) - start )) s, no panic, every rejection documented"
