"""An independent protocol-v1 client in Python (pyzmq + numpy + h5py), run by
the test suite: publishes the first N bins of a recording like a rig (u16
counts), leaves out seq SKIP so the daemon must impute it, and reports every
decoded frame that comes back, for the test to compare with offline decoding.

usage: pyclient.py INGEST PUBLISH CONTROL RECORDING.h5 N SKIP
prints JSON: {"sent_t_ns": [t_ns per seq, null for SKIP],
              "outputs": [{"seq", "flags", "t_ns", "value_bits"}, ...]}
(value_bits: the decoded f32 values as their IEEE-754 bit patterns, so the
comparison is exact); exits non-zero on any protocol violation.
"""
import json
import struct
import sys
import time

import h5py
import numpy as np
import zmq

HEADER = struct.Struct("<4sBBHQQII")  # magic, version, dtype, flags, seq, t_ns, channels, samples
F32, U16 = 1, 2


def wait_for_output_subscription(ctx, control):
    """Polls the daemon's `status` until our SUB socket's subscription has reached it."""
    req = ctx.socket(zmq.REQ)
    req.connect(control)
    deadline = time.time() + 10
    while time.time() < deadline:
        req.send(b"status")
        if json.loads(req.recv())["counters"]["subscriptions"] >= 1:
            return
        time.sleep(0.02)
    sys.exit("our subscription never reached the daemon's publish socket")


def send_bins(pub, counts, skip):
    """Sends every bin but `skip`; returns the t_ns sent per seq (None for `skip`)."""
    sent = []
    for seq, row in enumerate(counts):
        if seq == skip:
            sent.append(None)  # a lost bin: the daemon must impute it
            continue
        t_ns = time.monotonic_ns()
        body = HEADER.pack(b"ALTR", 1, U16, 0, seq, t_ns, len(row), 1) + row.astype("<u2").tobytes()
        pub.send_multipart([b"spikes", body])
        sent.append(t_ns)
    return sent


def receive(sub, n):
    outputs = []
    deadline = time.time() + 20
    while len(outputs) < n and time.time() < deadline:
        if not sub.poll(1000):
            continue
        topic, body = sub.recv_multipart()
        magic, version, dtype, flags, seq, t_ns, ch, samples = HEADER.unpack_from(body)
        assert topic == b"decoded" and magic == b"ALTR" and version == 1 and dtype == F32 and samples == 1, body[:32]
        values = np.frombuffer(body, dtype="<f4", offset=HEADER.size)
        assert len(values) == ch and np.all(np.isfinite(values)), values
        bits = values.view("<u4").tolist()
        outputs.append({"seq": seq, "flags": flags, "t_ns": t_ns, "value_bits": bits})
    return outputs


def main():
    ingest, publish, control, recording = sys.argv[1:5]
    n, skip = int(sys.argv[5]), int(sys.argv[6])
    with h5py.File(recording, "r") as f:
        counts = f["spikes"][:n]
    assert np.all(counts == np.round(counts)) and counts.min() >= 0, "counts must be whole and non-negative"
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.connect(publish)
    sub.setsockopt(zmq.SUBSCRIBE, b"decoded")
    pub = ctx.socket(zmq.XPUB)
    pub.connect(ingest)
    # Wait for the daemon's subscription so no frame is lost (slow joiner).
    if not pub.poll(10000):
        sys.exit("no subscription from the daemon")
    pub.recv()
    wait_for_output_subscription(ctx, control)
    sent = send_bins(pub, counts, skip)
    outputs = receive(sub, n)
    print(json.dumps({"sent_t_ns": sent, "outputs": outputs}))
    sys.exit(0 if [o["seq"] for o in outputs] == list(range(n)) else 1)


if __name__ == "__main__":
    main()
