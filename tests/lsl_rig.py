#!/usr/bin/env python3
"""The LSL side of tests/lsl.rs, written with pylsl only: a StreamOutlet
pushes a recorded session's spike counts (one sample per bin, float32,
nominal rate 1/bin) with timestamps t0 + k * bin, and a StreamInlet on the
daemon's decoded outlet records what comes back.

--pause A:B leaves bins A..B-1 out (the outlet is paused for that long and
resumed), so their timestamps are missing from the stream. Writes a JSON
file: t0, bin_s, the bins pushed, and every decoded sample received
(timestamp + values)."""
import argparse
import json
import threading
import time

import h5py
import numpy as np
import pylsl


def receive(name, out, ready, done):
    infos = pylsl.resolve_byprop("name", name, 1, 15.0)
    if not infos:
        ready.set()
        return
    inlet = pylsl.StreamInlet(infos[0], max_buflen=60)
    inlet.open_stream(timeout=10.0)
    ready.set()
    idle_since = None
    while True:
        sample, ts = inlet.pull_sample(timeout=0.1)
        if ts is not None and sample is not None:
            out.append([ts] + list(sample))
            idle_since = None
        elif done.is_set():
            idle_since = idle_since or time.monotonic()
            if time.monotonic() - idle_since > 2.0:
                return


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--name", required=True)
    ap.add_argument("--decoded-name", required=True)
    ap.add_argument("--recording", default="recordings/demo-test.h5")
    ap.add_argument("--bins", type=int, default=400)
    ap.add_argument("--push-rate", type=float, default=500.0)
    ap.add_argument("--pause", default="")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()

    with h5py.File(a.recording, "r") as f:
        counts = np.asarray(f["spikes"][: a.bins], dtype=np.float32)
        bin_s = float(f.attrs["bin_seconds"])
    pause = range(0)
    if a.pause:
        lo, hi = (int(x) for x in a.pause.split(":"))
        pause = range(lo, hi)

    info = pylsl.StreamInfo(a.name, "SpikeCounts", counts.shape[1], 1.0 / bin_s, "float32", a.name + "-uid")
    outlet = pylsl.StreamOutlet(info)
    got, ready, done = [], threading.Event(), threading.Event()
    rx = threading.Thread(target=receive, args=(a.decoded_name, got, ready, done))
    rx.start()
    if not outlet.wait_for_consumers(30.0):
        raise SystemExit("the daemon never connected to the input stream")
    ready.wait(30.0)
    time.sleep(0.5)

    t0 = pylsl.local_clock()
    start = time.monotonic()
    pushed = []
    for k in range(len(counts)):
        delay = start + k / a.push_rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        if k in pause:
            continue
        outlet.push_sample(counts[k], t0 + k * bin_s)
        pushed.append(k)
    done.set()
    rx.join()
    with open(a.out, "w") as f:
        json.dump({"t0": t0, "bin_s": bin_s, "pushed": pushed, "decoded": got}, f)


if __name__ == "__main__":
    main()
