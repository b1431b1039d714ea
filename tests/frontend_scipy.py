"""Independent reference for the front end's band-pass (tests/frontend.rs).

Usage: python3 frontend_scipy.py OUT.h5

For each case, designs the Butterworth band-pass with scipy.signal.butter
(output='sos') and filters a seeded float32 noise signal (with a DC offset
and a few large negative pulses) with scipy.signal.sosfilt in float64 from
zero state. Writes one group per case: attributes order/low/high/fs, datasets
`sos` [sections, 6] f64, `x` [T] f32 (the input), `y` [T] f64 (the output).
"""
import sys

import h5py
import numpy as np
from scipy import signal

CASES = [
    (4, 250.0, 5000.0, 30000.0),
    (2, 300.0, 3000.0, 20000.0),
    (6, 300.0, 6000.0, 24414.0625),
    (8, 500.0, 7000.0, 40000.0),
]


def main(out):
    with h5py.File(out, "w") as f:
        for i, (order, low, high, fs) in enumerate(CASES):
            rng = np.random.default_rng(1234 + i)
            t = int(fs)
            x = 150.0 + 30.0 * rng.standard_normal(t)
            for s in rng.integers(100, t - 100, 40):
                x[s : s + 6] -= np.array([60.0, 180.0, 120.0, 40.0, 10.0, 0.0])
            x = x.astype(np.float32)
            sos = signal.butter(order, [low, high], btype="bandpass", fs=fs, output="sos")
            y = signal.sosfilt(sos, x.astype(np.float64))
            g = f.create_group(f"case{i}")
            g.attrs["order"] = order
            g.attrs["low"] = low
            g.attrs["high"] = high
            g.attrs["fs"] = fs
            g["sos"] = sos
            g["x"] = x
            g["y"] = y


if __name__ == "__main__":
    main(sys.argv[1])
