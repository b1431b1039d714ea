#!/usr/bin/env bash
# Decoding accuracy over several seeds: for each seed, a 20-minute training
# session and a 5-minute test session of the same simulated array (separate
# session seeds), `train` with the shipped defaults, `eval --json` on the
# test session (alternator, 10-lag Wiener filter, Kalman filter), then the
# mean, spread and minimum of each decoder's R² and of the differences.
#   bash bench/accuracy.sh [PRESET] [SEEDS...]
# PRESET: realistic (default), simple, lorenz. Results go to
# bench/results-accuracy/PRESET/ (one JSON per seed and summary.md).
# TRAIN_CONFIG=FILE trains with that config (`train --config`) instead of
# the defaults; OUT=DIR changes where results go.
set -euo pipefail
cd "$(dirname "$0")/.."
PRESET=${1:-realistic}
shift || true
SEEDS=${*:-1 2 3}
B=${ALTERNATOR:-target/release/alternator}
OUT=${OUT:-bench/results-accuracy}/$PRESET
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$OUT"
case $PRESET in
    realistic | simple) sim=(reach --preset "$PRESET") ;;
    lorenz) sim=(lorenz) ;;
    *) echo "accuracy: unknown preset '$PRESET' (expected realistic, simple or lorenz)" >&2; exit 64 ;;
esac
for s in $SEEDS; do
    echo "accuracy: $PRESET seed $s" >&2
    # The array seed is shared, the session seeds differ: same neurons, new data.
    "$B" simulate "${sim[@]}" --out "$WORK/train.h5" --minutes 20 --seed "$((2 * s - 1))" --array-seed "$s"
    "$B" simulate "${sim[@]}" --out "$WORK/test.h5" --minutes 5 --seed "$((2 * s))" --array-seed "$s"
    start=$(date +%s.%N)
    "$B" train ${TRAIN_CONFIG:+--config "$TRAIN_CONFIG"} --data "$WORK/train.h5" --out "$WORK/model.safetensors" 2>"$WORK/train.log"
    end=$(date +%s.%N)
    "$B" eval --model "$WORK/model.safetensors" --data "$WORK/test.h5" --json >"$WORK/eval.json"
    python3 - "$WORK/eval.json" "$OUT/seed-$s.json" "$s" "$start" "$end" <<'PY'
import json, sys
src, dst, seed, t0, t1 = sys.argv[1:]
r = json.load(open(src))
row = {"seed": int(seed), "train_seconds": round(float(t1) - float(t0), 1)}
for k in ("alternator", "wiener", "kalman"):
    row[k] = r[k]["r2"] if r.get(k) else None
json.dump(row, open(dst, "w"), indent=1)
print(row)
PY
done
python3 - "$OUT" "$PRESET" $SEEDS <<'PY' | tee "$OUT/summary.md"
import json, statistics as st, sys
out, preset, seeds = sys.argv[1], sys.argv[2], sys.argv[3:]
rows = [json.load(open(f"{out}/seed-{s}.json")) for s in seeds]
def line(name, vals):
    sd = st.stdev(vals) if len(vals) > 1 else 0.0
    return f"| {name} | {st.mean(vals):.3f} ± {sd:.3f} | {min(vals):.3f} | {' '.join(f'{v:.3f}' for v in vals)} |"
print(f"preset {preset}, seeds {' '.join(seeds)} (train 20 min, test 5 min)\n")
print("| R² | mean ± sd | min | per seed |\n|---|---|---|---|")
for k in ("alternator", "wiener", "kalman"):
    print(line(k, [r[k] for r in rows]))
print(line("alternator − wiener", [r["alternator"] - r["wiener"] for r in rows]))
print(line("alternator − kalman", [r["alternator"] - r["kalman"] for r in rows]))
print(line("train seconds", [r["train_seconds"] for r in rows]))
PY
