#!/usr/bin/env python3
"""A stand-in for BRAND's binning node (bin_multiple.py): publishes a
recorded session's spike counts to a Redis stream, one entry per bin, in
BRAND's layout: samples = counts as int8 bytes (its default output_dtype),
i = np.uint64(bin).tobytes(), ts = np.uint64(time.monotonic_ns()).tobytes(),
sync = json.dumps({"nsp_clock": ...}).

Paced at --rate bins/s from a fixed start; a bin whose XADD fails (the
server is away) is lost, as it would be on a rig, and the node carries on
with the next one. --skip A:B leaves bins A..B-1 out on purpose (a hole).
Prints one JSON line at the end: bins written and bins lost."""
import argparse
import json
import sys
import time

import h5py
import numpy as np
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--recording", default="recordings/demo-test.h5")
    ap.add_argument("--bins", type=int, default=500)
    ap.add_argument("--rate", type=float, default=500.0)
    ap.add_argument("--stream", default="binned_spikes")
    ap.add_argument("--skip", default="")
    ap.add_argument("--password", default=None)
    a = ap.parse_args()

    with h5py.File(a.recording, "r") as f:
        counts = np.asarray(f["spikes"][: a.bins]).astype(np.int8)
    skip = range(0)
    if a.skip:
        lo, hi = (int(x) for x in a.skip.split(":"))
        skip = range(lo, hi)

    # No client-side retries: a bin the server cannot take is lost, as on a rig.
    r = redis.Redis(
        host="127.0.0.1",
        port=a.port,
        password=a.password,
        socket_timeout=0.5,
        socket_connect_timeout=0.5,
        retry=Retry(NoBackoff(), 0),
    )
    written, lost = 0, 0
    t0 = time.monotonic()
    for k in range(len(counts)):
        delay = t0 + k / a.rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        if k in skip:
            continue
        entry = {
            "samples": counts[k].tobytes(),
            "i": np.uint64(k).tobytes(),
            "ts": np.uint64(time.monotonic_ns()).tobytes(),
            "sync": json.dumps({"nsp_clock": 30000 + 600 * k}),
        }
        try:
            r.xadd(a.stream, entry)
            written += 1
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, redis.exceptions.BusyLoadingError):
            lost += 1
    print(json.dumps({"written": written, "lost": lost}))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
