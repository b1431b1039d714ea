"""Writes a raw-voltage recording with spikes injected at known times, for the
end-to-end test of `alternator frontend` (tests/frontend.rs).

Usage: python3 frontend_raw.py OUT.h5 TRUTH.txt

OUT.h5: `/voltage` [T, C] float32 µV (Gaussian noise σ = 10 µV plus a DC
offset per channel), root attribute `sample_rate` = 30000. TRUTH.txt: one
line `channel sample` per injected spike (the sample where it starts). Spikes
are ~1 ms biphasic waveforms with a 100 µV negative trough, at least 3 ms
apart on a channel, and never within 40 samples of a 20 ms bin edge.
"""
import sys

import h5py
import numpy as np

FS = 30000
SECONDS = 4
CHANNELS = 12
BIN = 600  # 20 ms


def waveform():
    """Trough ~0.17 ms wide at half depth, then a small slow repolarisation lobe.

    A larger or slower positive lobe makes the causal band-pass undershoot
    again ~1.2 ms after the trough, past the 1 ms refractory period, and noise
    then adds second crossings (16 % extra counts with a 35 µV, 0.25 ms lobe
    on a 0.12 ms trough).
    """
    t = np.arange(36) / FS * 1e3  # ms
    return -100.0 * np.exp(-(((t - 0.25) / 0.1) ** 2)) + 15.0 * np.exp(-(((t - 0.7) / 0.25) ** 2))


def main(out, truth_path):
    rng = np.random.default_rng(42)
    n = FS * SECONDS
    v = 10.0 * rng.standard_normal((n, CHANNELS)) + rng.uniform(-500, 500, CHANNELS)
    w = waveform()
    truth = []
    for c in range(CHANNELS):
        last = -10_000
        for s in np.sort(rng.integers(0, n - len(w), 120)):
            if s - last < 90 or not (40 <= s % BIN <= BIN - 80):
                continue
            v[s : s + len(w), c] += w
            truth.append((c, int(s)))
            last = s
    with h5py.File(out, "w") as f:
        f["voltage"] = v.astype(np.float32)
        f.attrs["sample_rate"] = float(FS)
    with open(truth_path, "w") as t:
        for c, s in truth:
            t.write(f"{c} {s}\n")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
