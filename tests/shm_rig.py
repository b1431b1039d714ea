#!/usr/bin/env python3
"""A rig on the same machine as the daemon, over iceoryx2 shared memory
(PyPI package iceoryx2 0.10.0, the version of the daemon's Rust crate).

Publishes a recording's bins as protocol-v1 frames (docs/PROTOCOL.md: the
32-byte header and f32 payload, as over ZeroMQ) on the daemon's input
service, one [u8] sample per bin, true behaviour on the behaviour service,
and notifies the input service's event after each frame. Receives the
decoded frames from the daemon's output service, sleeping on its event
between them. Prints one JSON object: what was sent and every output as
[seq, flags, values as little-endian f32 hex] so a caller can compare bits.

The daemon must be running: it creates the services, the rig opens them.

    python3 tests/shm_rig.py --data recordings/demo-test.h5 --bins 500 \
        --service alternator/input --behavior-service alternator/behavior \
        --out-service alternator/decoded --rate 500
"""

import argparse
import ctypes
import json
import struct
import sys
import time

import h5py
import numpy as np

import iceoryx2 as iox2

HEADER = struct.Struct("<4sBBHQQII")  # magic, version, dtype, flags, seq, t_ns, channels, samples
F32 = 1


def frame(seq, t_ns, values):
    """One protocol-v1 frame of one timestep of f32 values."""
    values = np.ascontiguousarray(values, dtype="<f4")
    return HEADER.pack(b"ALTR", 1, F32, 0, seq, t_ns, values.size, 1) + values.tobytes()


class Output:
    """The daemon's output service: a subscriber and the event it is woken by."""

    def __init__(self, node, name):
        service_name = iox2.ServiceName.new(name)
        pubsub = node.service_builder(service_name).publish_subscribe(iox2.Slice[ctypes.c_uint8]).open()
        self.sub = pubsub.subscriber_builder().create()
        self.listener = node.service_builder(service_name).event().open().listener_builder().create()
        self.frames = []

    def drain(self):
        while True:
            sample = self.sub.receive()
            if sample is None:
                return
            body = bytes(sample.payload().as_memory_view())
            _, _, _, flags, seq, _, channels, _ = HEADER.unpack_from(body)
            self.frames.append([seq, flags, body[HEADER.size : HEADER.size + 4 * channels].hex()])

    def wait(self, n, seconds):
        """Until n outputs arrived (sleeping on the event) or the time is up."""
        deadline = time.monotonic() + seconds
        self.drain()
        while len(self.frames) < n and time.monotonic() < deadline:
            self.listener.timed_wait(iox2.Duration.from_millis(50))
            self.drain()


class Input:
    """A publisher on one of the daemon's input services, notifying the input event."""

    def __init__(self, node, name, notifier, max_len):
        pubsub = node.service_builder(iox2.ServiceName.new(name)).publish_subscribe(iox2.Slice[ctypes.c_uint8]).open()
        self.pub = pubsub.publisher_builder().initial_max_slice_len(max_len).create()
        self.notifier = notifier

    def send(self, body):
        sample = self.pub.loan_slice_uninit(len(body))
        ctypes.memmove(sample.payload_ptr, body, len(body))
        sample.assume_init().send()
        self.notifier.notify()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--bins", type=int, default=0, help="0 = all")
    ap.add_argument("--rate", type=float, default=1000.0, help="bins/s")
    ap.add_argument("--service", default="alternator/input")
    ap.add_argument("--behavior-service", default="alternator/behavior", help="'' = send no behaviour")
    ap.add_argument("--out-service", default="alternator/decoded", help="'' = do not read outputs")
    ap.add_argument("--first-seq", type=int, default=0)
    ap.add_argument("--wait", type=float, default=10.0, help="seconds to wait for the last outputs")
    a = ap.parse_args()

    with h5py.File(a.data, "r") as f:
        spikes = np.asarray(f["spikes"], dtype="<f4")
        behavior = np.asarray(f["behavior"], dtype="<f4") if "behavior" in f else None
    n = spikes.shape[0] if a.bins == 0 else min(a.bins, spikes.shape[0])

    node = (
        iox2.NodeBuilder.new()
        .name(iox2.NodeName.new("alternator-rig"))
        .signal_handling_mode(iox2.SignalHandlingMode.Disabled)
        .create(iox2.ServiceType.Ipc)
    )
    notifier = node.service_builder(iox2.ServiceName.new(a.service)).event().open().notifier_builder().create()
    out = Output(node, a.out_service) if a.out_service else None
    spikes_in = Input(node, a.service, notifier, HEADER.size + 4 * spikes.shape[1])
    behavior_in = None
    if a.behavior_service and behavior is not None:
        behavior_in = Input(node, a.behavior_service, notifier, HEADER.size + 4 * behavior.shape[1])

    start = time.monotonic()
    sent = behavior_sent = 0
    for i in range(n):
        due = start + i / a.rate
        while time.monotonic() < due:
            time.sleep(max(0.0, min(0.001, due - time.monotonic())))
        seq = a.first_seq + i
        if behavior_in is not None and np.all(np.isfinite(behavior[i])):
            behavior_in.send(frame(seq, time.monotonic_ns(), behavior[i]))
            behavior_sent += 1
        spikes_in.send(frame(seq, time.monotonic_ns(), spikes[i]))
        sent += 1
        if out is not None:
            out.drain()
    if out is not None:
        out.wait(n, a.wait)
    json.dump(
        {"sent": sent, "behavior_sent": behavior_sent, "outputs": out.frames if out else []},
        sys.stdout,
    )
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
