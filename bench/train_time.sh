#!/usr/bin/env bash
# Training time of several builds on one session, interleaved round by
# round so that load drifts hit every build alike:
#   bash bench/train_time.sh TRAIN.h5 ROUNDS BINARY...
# Prints, per round and build, the wall-clock seconds of
# `BINARY train --data TRAIN.h5` (defaults of that build, every core) and
# the build's own summary line (epochs, seconds per epoch, validation R²).
set -euo pipefail
DATA=$1
ROUNDS=$2
shift 2
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
for r in $(seq 1 "$ROUNDS"); do
    i=0
    for b in "$@"; do
        i=$((i + 1))
        start=$(date +%s.%N)
        "$b" train --data "$DATA" --out "$WORK/model-$i.safetensors" >"$WORK/train.log" 2>&1
        end=$(date +%s.%N)
        summary=$(grep -o 'trained [0-9]* epochs.*bins' "$WORK/train.log" | head -1 || true)
        python3 -c "import sys; print(f'round {sys.argv[1]} {sys.argv[2]}: {float(sys.argv[4]) - float(sys.argv[3]):.1f} s; {sys.argv[5]}')" \
            "$r" "$b" "$start" "$end" "$summary"
    done
done
