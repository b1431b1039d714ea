"""The daemon's CPU time per bin: `alternator serve` as its own process, fed
by a real rig (`alternator replay`) and read by a real ZeroMQ subscriber,
for two builds interleaved round by round so load drifts hit both alike:

  python3 bench/cpu_per_bin.py --base BIN --new BIN [--model M]
      [--transport protocol-v1|shm] [--rates 1000,20000] [--seconds 10]
      [--rounds 3] [--out DIR]

CPU is utime + stime of the serve process (every thread it has: decode loop,
recorder, libzmq I/O thread) from /proc/PID/stat, taken from just before
the rig starts to one second after it stops; bins are the daemon's own
bins_in from its shutdown line. Recording is on (its own temporary
directory per run). Over shared memory (`--transport shm`, config/shm.toml)
the subscriber reads the daemon's output service (iceoryx2, sleeping on its
event) and nothing subscribes over ZeroMQ. Both builds get the same rig (the NEW binary's replay),
the same model and the same recording, so only the daemon differs.
"""
import argparse
import json
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import zmq

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
TICKS = os.sysconf("SC_CLK_TCK")
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def cpu_seconds(pid):
    """utime + stime of every thread of `pid`, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def stale(body):
    """FLAG_STALE (docs/PROTOCOL.md): a watchdog frame, not a decoded bin."""
    return len(body) >= 8 and int.from_bytes(body[6:8], "little") & 4 != 0


def subscribe(endpoint, stop, counted):
    sock = zmq.Context.instance().socket(zmq.SUB)
    sock.setsockopt(zmq.SUBSCRIBE, b"")
    sock.setsockopt(zmq.RCVTIMEO, 100)
    sock.connect(endpoint)
    while not stop.is_set():
        try:
            counted[0] += not stale(sock.recv_multipart()[-1])
        except zmq.Again:
            pass
    sock.close(linger=0)


def subscribe_shm(service, stop, counted):
    import ctypes

    import iceoryx2 as iox2

    node = (iox2.NodeBuilder.new().signal_handling_mode(iox2.SignalHandlingMode.Disabled)
            .create(iox2.ServiceType.Ipc))
    name = iox2.ServiceName.new(service)
    sub = (node.service_builder(name).publish_subscribe(iox2.Slice[ctypes.c_uint8]).open()
           .subscriber_builder().create())
    listener = node.service_builder(name).event().open().listener_builder().create()
    while not stop.is_set():
        listener.timed_wait(iox2.Duration.from_millis(100))
        while (sample := sub.receive()) is not None:
            counted[0] += not stale(bytes(sample.payload().as_memory_view()))


def daemon_summary(log):
    """bins_in, dropped and record_lost from the daemon's shutdown line."""
    for line in reversed(open(log).read().splitlines()):
        line = ANSI.sub("", line)
        if "Daemon stopped." in line:
            kv = dict(re.findall(r"(\w+)=\"?([0-9.]+)", line))
            return int(kv["bins_in"]), int(kv["dropped"]), int(kv["record_lost"])
    raise SystemExit(f"no 'Daemon stopped.' line in {log}")


def one_run(daemon_bin, rig_bin, args, rate):
    port = random.randrange(20000, 40000)
    ep = lambda k: f"tcp://127.0.0.1:{port + k}"
    tmp = tempfile.mkdtemp(prefix="alternator-cpu-")
    log = os.path.join(tmp, "serve.log")
    env = dict(os.environ, RAYON_NUM_THREADS="1")
    shm = args.transport == "shm"
    ingest = f"shm:alternator-cpu-{port}/input" if shm else ep(0)
    serve = subprocess.Popen(
        [daemon_bin, "serve", "--config", f"config/{args.transport}.toml", "--model", args.model,
         "--record-dir", tmp, "--ingest", ingest, "--publish", ep(1), "--control", ep(2)],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=open(log, "w"))
    stop, counted = threading.Event(), [0]
    time.sleep(1.0)  # the daemon creates the shm services the subscriber opens
    sub = threading.Thread(target=subscribe_shm if shm else subscribe,
                           args=("alternator/decoded" if shm else ep(1), stop, counted))
    sub.start()
    time.sleep(1.0)
    idle0 = cpu_seconds(serve.pid)
    time.sleep(1.0)
    cpu0 = cpu_seconds(serve.pid)
    idle_ms_per_s = (cpu0 - idle0) * 1000
    speed = rate * args.bin_seconds
    rig = subprocess.Popen(
        [rig_bin, "replay", args.recording, "--endpoint", ingest, "--control", ep(2),
         "--speed", str(speed), "--loop"] + (["--transport", "shm"] if shm else []),
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(args.seconds)
    rig.send_signal(signal.SIGINT)
    rig.wait(timeout=30)
    time.sleep(1.0)
    cpu1 = cpu_seconds(serve.pid)
    serve.send_signal(signal.SIGINT)
    serve.wait(timeout=60)
    stop.set()
    sub.join()
    bins, dropped, record_lost = daemon_summary(log)
    subprocess.run(["rm", "-rf", tmp])
    return {
        "transport": args.transport, "rate_hz": rate, "bins": bins, "received": counted[0], "dropped": dropped,
        "record_lost": record_lost, "cpu_s": round(cpu1 - cpu0, 3),
        "cpu_us_per_bin": round((cpu1 - cpu0) * 1e6 / max(bins, 1), 3),
        "idle_cpu_ms_per_s": round(idle_ms_per_s, 1),
    }


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--base", required=True)
    p.add_argument("--new", required=True)
    p.add_argument("--model", default="recordings/demo-model.safetensors")
    p.add_argument("--recording", default="recordings/demo-test.h5")
    p.add_argument("--transport", choices=["protocol-v1", "shm"], default="protocol-v1")
    p.add_argument("--bin-seconds", type=float, default=0.02)
    p.add_argument("--rates", default="1000,20000")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--out", default="bench/results-cpu-per-bin")
    args = p.parse_args()
    os.makedirs(os.path.join(ROOT, args.out), exist_ok=True)
    rows = []
    for r in range(1, args.rounds + 1):
        for rate in [float(x) for x in args.rates.split(",")]:
            for side, b in (("base", args.base), ("new", args.new)):
                row = dict(one_run(b, args.new, args, rate), side=side, round=r, binary=b)
                print(json.dumps(row), file=sys.stderr)
                rows.append(row)
    json.dump(rows, open(os.path.join(ROOT, args.out, "runs.json"), "w"), indent=1)
    report(rows)


def report(rows):
    print("| rate (bins/s) | base µs CPU/bin (median) | new µs CPU/bin (median) | new/base | bins lost (base/new) |")
    print("|---|---|---|---|---|")
    for rate in sorted({r["rate_hz"] for r in rows}):
        med = {}
        lost = {}
        for side in ("base", "new"):
            mine = [r for r in rows if r["rate_hz"] == rate and r["side"] == side]
            med[side] = statistics.median(r["cpu_us_per_bin"] for r in mine)
            lost[side] = sum(r["dropped"] + r["record_lost"] + (r["bins"] - r["received"]) for r in mine)
        print(f"| {rate:.0f} | {med['base']:.2f} | {med['new']:.2f} | {med['new'] / med['base']:.2f} "
              f"| {lost['base']}/{lost['new']} |")


if __name__ == "__main__":
    main()
