"""Summarises bench/compare.sh: medians over rounds per (channels, rate) for
the base and new builds, and new/base ratios."""
import json
import statistics
import sys

out, rounds = sys.argv[1], int(sys.argv[2])
keys = ["daemon_p50_us", "daemon_p99_us", "daemon_p999_us", "p50_us", "p99_us", "throughput_bins_per_s", "lost"]


def load(side):
    rows = {}
    for r in range(1, rounds + 1):
        for row in json.load(open(f"{out}/{side}-{r}.json")):
            rows.setdefault((row["channels"], str(row["rate_hz"])), []).append(row)
    return rows


base, new = load("base"), load("new")
print("| channels | rate | metric | base (median) | new (median) | new/base |")
print("|---|---|---|---|---|---|")
for cfg in sorted(base):
    for k in keys:
        b = statistics.median(x[k] for x in base[cfg])
        n = statistics.median(x[k] for x in new[cfg])
        ratio = f"{n / b:.2f}" if b else "-"
        print(f"| {cfg[0]} | {cfg[1]} | {k} | {b:.1f} | {n:.1f} | {ratio} |")
