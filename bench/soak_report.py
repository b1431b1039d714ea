"""Summarises a bench/soak.sh run: bins sent by the rig, decoded and
published by the daemon, recorded in its session files; the daemon's
latency per stats window; retraining runs; resources at start and end."""
import glob
import re
import sys

import h5py

out = sys.argv[1]
ansi = re.compile(r"\x1b\[[0-9;]*m")
sent = 0
for log in sorted(glob.glob(f"{out}/rig-*.log")):
    m = re.search(r"sent (\d+) bins", open(log).read())
    sent += int(m.group(1)) if m else 0
serve = ansi.sub("", open(f"{out}/serve.log").read())
stopped = re.search(r"Daemon stopped\. bins_in=(\d+) bins_out=(\d+) imputed=(\d+) dropped=(\d+) record_lost=(\d+)", serve)
recorded = 0
for f in glob.glob(f"{out}/sessions/*.h5"):
    with h5py.File(f, "r") as h:
        recorded += h["seq"].shape[0]
print(f"| bins sent | decoded (bins_in) | published (bins_out) | recorded | imputed | dropped | record_lost |")
print("|---|---|---|---|---|---|---|")
if stopped:
    b_in, b_out, imp, drop, lost = stopped.groups()
    print(f"| {sent} | {b_in} | {b_out} | {recorded} | {imp} | {drop} | {lost} |")
else:
    print(f"| {sent} | ? | ? | {recorded} | ? | ? | ? |")
print()
print("| window | bins/s | daemon p50 µs | p99 µs | max µs | resets | model |")
print("|---|---|---|---|---|---|---|")
for i, line in enumerate(l for l in serve.splitlines() if "Decode stats." in l):
    f = dict(re.findall(r'(\w+)=("[^"]*"|\S+)', line))
    g = lambda k: f.get(k, "?").strip('"')
    print(f"| {i + 1} | {g('bins_per_s')} | {g('p50_us')} | {g('p99_us')} | {g('max_us')} | {g('resets')} | {g('model')} |")
accepted = serve.count("Retrained model accepted and swapped in.")
rejected = serve.count("Retrained candidate rejected by the gate")
failed = serve.count("Retraining failed")
print()
print(f"retraining runs: {accepted} accepted, {rejected} rejected, {failed} failed; "
      f"session files: {len(glob.glob(out + '/sessions/*.h5'))}")
print(open(f"{out}/resources.txt").read())
# RSS and descriptors sampled each minute, summarised per 5-minute window.
try:
    rows = [l.split(",") for l in open(f"{out}/resources.csv").read().split()[1:]]
    rows = [(int(t), int(r), int(d)) for t, r, d in rows if r and d]
except FileNotFoundError:
    rows = []
if rows:
    print("| minutes | RSS MB (max in window) | open fds (max) |")
    print("|---|---|---|")
    for w in range(0, rows[-1][0] // 300 + 1):
        win = [r for r in rows if w * 300 <= r[0] < (w + 1) * 300]
        if win:
            print(f"| {w * 5}-{w * 5 + 5} | {max(r[1] for r in win) / 1024:.1f} | {max(r[2] for r in win)} |")
