#!/usr/bin/env bash
# Side-by-side comparison of two builds of `alternator bench` on the same
# machine, interleaved round by round so that load drifts hit both alike:
#   bash bench/compare.sh BASE_BINARY NEW_BINARY [ROUNDS] [OUT_DIR]
# Each round runs BASE then NEW at 96 and 192 channels, 1 kHz and max rate,
# 10 s each (recording on), and bench/compare.py prints the medians over
# rounds and the NEW/BASE ratios of the daemon's own receive→publish
# percentiles, the end-to-end percentiles and the max-rate throughput.
set -euo pipefail
cd "$(dirname "$0")/.."
BASE=$1
NEW=$2
ROUNDS=${3:-3}
OUT=${4:-bench/compare}
mkdir -p "$OUT"
export RAYON_NUM_THREADS=1
for r in $(seq 1 "$ROUNDS"); do
    for side in base new; do
        bin=$BASE
        [ "$side" = new ] && bin=$NEW
        echo "round $r: $side ($bin)" >&2
        "$bin" bench --channels 96,192 --rate 1000,max --seconds "${SECONDS_PER_RUN:-10}" \
            --json "$OUT/$side-$r.json" >/dev/null
    done
done
python3 bench/compare.py "$OUT" "$ROUNDS"
