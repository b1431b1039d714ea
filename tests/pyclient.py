"""An independent protocol-v1 client in Python (pyzmq + numpy), run by the
test suite: publishes binned counts like a rig, skips one seq to see an
imputed output, and checks the decoded frames that come back.

usage: pyclient.py INGEST_ENDPOINT PUBLISH_ENDPOINT N CHANNELS
prints a JSON summary; exits non-zero on any protocol violation.
"""
import json
import struct
import sys
import time

import numpy as np
import zmq

HEADER = struct.Struct("<4sBBHQQII")  # magic, version, dtype, flags, seq, t_ns, channels, samples
F32, U16 = 1, 2


def main():
    ingest, publish, n, channels = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
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
    time.sleep(0.3)  # let our own SUB finish connecting to the daemon's PUB
    rng = np.random.default_rng(0)
    skip = n // 2
    for seq in range(n):
        if seq == skip:
            continue  # a lost bin: the daemon must impute it
        counts = rng.poisson(3.0, channels).astype("<u2")
        body = HEADER.pack(b"ALTR", 1, U16, 0, seq, time.monotonic_ns(), channels, 1) + counts.tobytes()
        pub.send_multipart([b"spikes", body])
    seqs, imputed = [], 0
    deadline = time.time() + 20
    while len(seqs) < n and time.time() < deadline:
        if not sub.poll(1000):
            continue
        topic, body = sub.recv_multipart()
        magic, version, dtype, flags, seq, t_ns, ch, samples = HEADER.unpack_from(body)
        assert topic == b"decoded" and magic == b"ALTR" and version == 1 and dtype == F32 and samples == 1, body[:32]
        values = np.frombuffer(body, dtype="<f4", offset=HEADER.size)
        assert len(values) == ch and np.all(np.isfinite(values)), values
        imputed += flags & 1
        seqs.append(seq)
    print(json.dumps({"received": len(seqs), "in_order": seqs == list(range(n)), "imputed": imputed}))
    sys.exit(0 if seqs == list(range(n)) else 1)


if __name__ == "__main__":
    main()
