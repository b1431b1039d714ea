#!/usr/bin/env python3
"""The LSL side of tests/lsl.rs, written with pylsl only: a StreamOutlet
pushes a recorded session's spike counts (one sample per bin, float32,
nominal rate 1/bin) with timestamps t0 + k * bin, and a StreamInlet on the
daemon's decoded outlet records what comes back.

--pause A:B leaves bins A..B-1 out (the outlet is paused for that long and
resumed), so their timestamps are missing from the stream. Writes a JSON
file: t0, bin_s, the bins pushed, and every decoded sample received
(timestamp + values).

--voltage-seconds S instead pushes S seconds of raw voltage (Gaussian noise
plus negative spikes at random times, --channels x --sample-rate) in blocks
of 10 ms, paced in real time, and writes exactly what it pushed to
--raw-out (/voltage [T, C] f32 uV, attribute sample_rate) for an offline
run of the front end."""
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


def push_voltage(a):
    fs, c = a.sample_rate, a.channels
    rng = np.random.default_rng(11)
    total = int(a.voltage_seconds * fs)
    v = rng.normal(0.0, 10.0, size=(total, c)).astype(np.float32)
    width = max(2, int(round(0.0003 * fs)))
    shape = -120.0 * np.exp(-0.5 * ((np.arange(4 * width) - 2 * width) / width) ** 2)
    for ch in range(c):
        for t in rng.integers(0, total - 4 * width, size=int(a.voltage_seconds * 30)):
            v[t : t + 4 * width, ch] += shape.astype(np.float32)
    info = pylsl.StreamInfo(a.name, "EEG", c, fs, "float32", a.name + "-uid")
    outlet = pylsl.StreamOutlet(info, chunk_size=int(fs / 100))
    if not outlet.wait_for_consumers(30.0):
        raise SystemExit("the daemon never connected to the input stream")
    time.sleep(0.3)
    block = int(fs / 100)
    t0 = pylsl.local_clock()
    start = time.monotonic()
    for j in range(0, total, block):
        delay = start + j / fs - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        chunk = v[j : j + block]
        stamps = [t0 + (j + i) / fs for i in range(len(chunk))]
        outlet.push_chunk(chunk.tolist(), stamps)
    time.sleep(1.0)
    with h5py.File(a.raw_out, "w") as h:
        h.create_dataset("voltage", data=v)
        h.attrs["sample_rate"] = fs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--name", required=True)
    ap.add_argument("--decoded-name", default="")
    ap.add_argument("--voltage-seconds", type=float, default=0.0)
    ap.add_argument("--sample-rate", type=float, default=20000.0)
    ap.add_argument("--channels", type=int, default=8)
    ap.add_argument("--raw-out", default="")
    ap.add_argument("--recording", default="recordings/demo-test.h5")
    ap.add_argument("--bins", type=int, default=400)
    ap.add_argument("--push-rate", type=float, default=500.0)
    ap.add_argument("--pause", default="")
    ap.add_argument("--out", default="")
    a = ap.parse_args()
    if a.voltage_seconds > 0:
        return push_voltage(a)

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
