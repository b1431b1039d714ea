#!/usr/bin/env bash
# Endurance run (not part of the test suite):
#   bash bench/soak.sh [MINUTES] [OUT_DIR]        (default 60 minutes)
# The real binary serves a 192-channel model at 1 kHz (a simulated 20 ms-bin
# session replayed at 20x), retraining every 5 minutes from a labelled
# recording plus its own sessions, while the rig (the replayer) is killed and
# restarted twice. At the end it reports bins sent / decoded / recorded
# (must be equal), the daemon's latency per stats window (5 minutes), and
# RSS and open file descriptors at the start, every minute (resources.csv)
# and at the end (with the peak RSS of the whole run).
set -euo pipefail
cd "$(dirname "$0")/.."
MINUTES=${1:-60}
OUT=${2:-/tmp/alternator-soak}
B=${ALTERNATOR:-target/release/alternator}
export RAYON_NUM_THREADS=1
[ -x "$B" ] || cargo build --release --locked
rm -rf "$OUT" && mkdir -p "$OUT/sessions" "$OUT/models"

# A labelled 192-channel session to train from and one to stream.
$B simulate reach --preset simple --out "$OUT/train.h5" --minutes 10 --seed 21 --channels 192 >/dev/null
$B simulate reach --preset simple --out "$OUT/stream.h5" --minutes 10 --seed 22 --channels 192 >/dev/null
cat > "$OUT/train.toml" <<EOF
[train]
max_epochs = 20
max_seconds = 90.0
EOF
$B train --data "$OUT/train.h5" --out "$OUT/model.safetensors" --config "$OUT/train.toml" >/dev/null 2>&1

P=$((20000 + RANDOM % 20000))
cat > "$OUT/serve.toml" <<EOF
[ingest.protocol_v1]
endpoint = "tcp://127.0.0.1:$P"
[publish]
endpoint = "tcp://127.0.0.1:$((P + 1))"
[control]
endpoint = "tcp://127.0.0.1:$((P + 2))"
[record]
dir = "$OUT/sessions"
rotate_seconds = 600
[stats]
interval_s = 300.0
[model]
models_dir = "$OUT/models"
[retrain]
enabled = true
interval_s = 300
recordings = ["$OUT/train.h5"]
max_session_files = 4
[retrain.train]
max_epochs = 10
max_seconds = 120.0
EOF

$B serve --config "$OUT/serve.toml" --model "$OUT/model.safetensors" 2> "$OUT/serve.log" &
SERVE=$!
sleep 3
fds() { ls "/proc/$SERVE/fd" | wc -l; }
rss() { awk '/VmRSS/ {print $2}' "/proc/$SERVE/status"; }
peak() { awk '/VmHWM/ {print $2}' "/proc/$SERVE/status"; }
echo "start: rss_kb=$(rss) fds=$(fds)" | tee "$OUT/resources.txt"
echo "elapsed_s,rss_kb,fds" > "$OUT/resources.csv"
( start=$(date +%s)
  while kill -0 "$SERVE" 2>/dev/null; do
      echo "$(( $(date +%s) - start )),$(rss),$(fds)" >> "$OUT/resources.csv" 2>/dev/null || true
      sleep 60
  done ) &
SAMPLER=$!

# The rig: 1 kHz (20 ms bins at 20x), restarted twice (seq back to 0 each time).
SECONDS_TOTAL=$((MINUTES * 60))
run_rig() {
    local seconds=$1 log=$2
    timeout --signal=INT "$seconds" $B replay "$OUT/stream.h5" --endpoint "tcp://127.0.0.1:$P" \
        --control "tcp://127.0.0.1:$((P + 2))" --speed 20 --loop > "$log" 2>&1 || true
}
third=$((SECONDS_TOTAL / 3))
run_rig "$third" "$OUT/rig-1.log"
run_rig "$third" "$OUT/rig-2.log"
run_rig "$((SECONDS_TOTAL - 2 * third))" "$OUT/rig-3.log"
sleep 2
echo "end:   rss_kb=$(rss) fds=$(fds) peak_rss_kb=$(peak)" | tee -a "$OUT/resources.txt"
kill -TERM "$SERVE"
wait "$SERVE" || true
kill "$SAMPLER" 2>/dev/null || true
python3 bench/soak_report.py "$OUT"
