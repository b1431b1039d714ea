#!/usr/bin/env python3
"""
Stand-in for the Open Ephys GUI "ZMQ Interface" plugin (open-ephys-plugins/zmq-interface,
plugin libVersion "1.0.0", source read at commit 38513917d6a7ee5791a47029d624a1b6110b01ee,
GUI/JUCE read at open-ephys/plugin-GUI tag v1.0.0 = c0e05846566e5089299b7f7897e11efb9ce2d67e,
which bundles JUCE 8.0.7).  See FORMAT.md for the wire format and the citations.

Reproduces, byte for byte, what ZmqInterface.cpp puts on the wire:
  * PUB socket bound on the data port, REP socket bound on data port + 1 (no socket options
    set by the plugin -> libzmq defaults, SNDHWM 1000).
  * continuous data: [b"DATA\\0", JUCE-JSON header, float32 samples]   one message per
    channel per block, channels in ascending local index.
  * TTL events:      [b"EVENT\\0", JUCE-JSON header, 10-byte payload (line, state, u64 word)]
  * spikes:          [b"EVENT\\0", JUCE-JSON header (key "spike", no data_size), float32 waveform]
  * heartbeat replies on REP: b"heartbeat received" / b"message correctly parsed" /
    b"JSON message could not be read" (no trailing NUL).

Only numpy and pyzmq are used.
"""

import argparse
import json
import math
import struct
import sys
import threading
import time

import numpy as np
import zmq

# ----------------------------------------------------------------------------------------------
# JUCE 8.0.7 JSON writer port (JSON::toString(var) with default args:
#   allOnOneLine=false -> Spacing::multiLine, maximumDecimalPlaces=15, Encoding::utf8)
#   juce_core/json/juce_JSON.cpp  (JSONFormatter, JSON::writeToStream)
#   juce_core/containers/juce_DynamicObject.cpp (DynamicObject::writeAsJSON)
#   juce_core/text/juce_String.cpp (serialiseDouble, reduceLengthOfFloatString)
#   juce_core/text/juce_NewLine.h (NewLine::getDefault() == "\r\n")
# ----------------------------------------------------------------------------------------------

NEWLINE = "\r\n"
INDENT_SIZE = 2
MAX_DECIMAL_PLACES = 15


class JInt(int):
    """Marker for values that are integer vars in JUCE (int / int64)."""


class JDouble(float):
    """Marker for values that are double vars in JUCE (float/double)."""


def reduce_length_of_float_string(s):
    """Literal port of juce::reduceLengthOfFloatString (juce_String.cpp, JUCE 8.0.7)."""
    start = 0
    end = len(s)
    trim_start = end
    trim_end = trim_start
    exp_trim_start = end
    exp_trim_end = exp_trim_start
    current = "\0"
    c = end - 1
    while c > start:
        current = s[c]
        if current == "0" and c + 1 == trim_start:
            trim_start -= 1
        elif current == ".":
            if trim_start == c + 1 and trim_start != end and s[trim_start] == "0":
                trim_start += 1
            break
        elif current in ("e", "E"):
            c_next = c + 1
            if c_next != end:
                if s[c_next] == "-":
                    c_next += 1
                exp_trim_start = c_next
                if c_next != end and s[c_next] == "+":
                    c_next += 1
                exp_trim_end = c_next
            # while (cNext != end && *cNext++ == '0') exponentTrimEnd = cNext;
            while c_next != end:
                ch = s[c_next]
                c_next += 1
                if ch != "0":
                    break
                exp_trim_end = c_next
            if exp_trim_end == end:
                exp_trim_start = c
            trim_start = c
            trim_end = trim_start
        c -= 1

    if (trim_start != trim_end and current == ".") or exp_trim_start != exp_trim_end:
        if trim_start == trim_end:
            return s[start:exp_trim_start] + s[exp_trim_end:end]
        if exp_trim_start == exp_trim_end:
            return s[start:trim_start] + s[trim_end:end]
        if trim_end == exp_trim_start:
            return s[start:trim_start] + s[exp_trim_end:end]
        return s[start:trim_start] + s[trim_end:exp_trim_start] + s[exp_trim_end:end]
    return s


def serialise_double(x, max_decimal_places=0):
    """Literal port of juce::serialiseDouble (juce_String.cpp, JUCE 8.0.7).
    String(double, n) uses std::ostream fixed / scientific with precision n, i.e. printf
    %.nf / %.ne (classic locale)."""
    a = abs(x)
    if a >= 1.0e6 or a <= 1.0e-5:
        n = max_decimal_places if max_decimal_places > 0 else 15
        return reduce_length_of_float_string("%.*e" % (n, x))
    if float(int(x)) == x:  # int intInput = (int) input;  exactlyEqual((double) intInput, input)
        return "%.1f" % x
    if max_decimal_places > 0:
        n = max_decimal_places
    elif a < 1.0:
        if a >= 1.0e-3:
            n = 16 if a >= 1.0e-1 else (17 if a >= 1.0e-2 else 18)
        else:
            n = 19 if a >= 1.0e-4 else 20
    elif a < 1.0e3:
        n = 15 if a < 1.0e1 else (14 if a < 1.0e2 else 13)
    elif a < 1.0e4:
        n = 12
    elif a < 1.0e5:
        n = 11
    else:
        n = 10
    return reduce_length_of_float_string("%.*f" % (n, x))


def _juce_escape(s):
    """JSONFormatter::writeString with Encoding::utf8 (stops at the first NUL, as JUCE does)."""
    out = []
    for ch in s:
        o = ord(ch)
        if o == 0:
            break
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\b":
            out.append("\\b")
        elif ch == "\f":
            out.append("\\f")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\n":
            out.append("\\n")
        elif o < 32:
            out.append("\\u%04x" % o)  # String::toHexString -> lowercase, paddedLeft('0', 4)
        else:
            out.append(ch)
    return "".join(out)


def _write(v, indent, out):
    if isinstance(v, str):
        out.append('"' + _juce_escape(v) + '"')
    elif v is None:
        out.append("null")
    elif isinstance(v, bool):
        out.append("true" if v else "false")
    elif isinstance(v, (JDouble, float)) and not isinstance(v, JInt):
        d = float(v)
        out.append(serialise_double(d, MAX_DECIMAL_PLACES) if math.isfinite(d) else "null")
    elif isinstance(v, int):
        out.append(str(int(v)))
    elif isinstance(v, (list, tuple)):
        # JSONFormatter::writeArray, Spacing::multiLine
        out.append("[")
        if len(v):
            out.append(NEWLINE)
            for i, item in enumerate(v):
                out.append(" " * (indent + INDENT_SIZE))
                _write(item, indent + INDENT_SIZE, out)
                if i < len(v) - 1:
                    out.append(",")
                    out.append(NEWLINE)
                else:
                    out.append(NEWLINE)
            out.append(" " * indent)
        out.append("]")
    elif isinstance(v, dict):
        # DynamicObject::writeAsJSON, Spacing::multiLine (empty object still gets a newline)
        out.append("{")
        out.append(NEWLINE)
        items = list(v.items())
        for i, (k, val) in enumerate(items):
            out.append(" " * (indent + INDENT_SIZE))
            out.append('"' + _juce_escape(k) + '":')
            out.append(" ")
            _write(val, indent + INDENT_SIZE, out)
            if i < len(items) - 1:
                out.append(",")
                out.append(NEWLINE)
            else:
                out.append(NEWLINE)
        out.append(" " * indent)
        out.append("}")
    else:
        raise TypeError("cannot JUCE-serialise %r" % (v,))


def juce_json_to_string(v):
    """juce::JSON::toString(var) with default arguments. Returns a Python str."""
    out = []
    _write(v, 0, out)
    return "".join(out)


def header_frame(s):
    """ZmqInterface: headerData = s.toRawUTF8(); headerSize = s.length();
    JUCE String::length() counts code points, so non-ASCII text gets truncated (plugin bug,
    reproduced).  For ASCII this is exactly the UTF-8 bytes."""
    return s.encode("utf-8")[: len(s)]


# ----------------------------------------------------------------------------------------------
# Message builders (ZmqInterface.cpp @ 38513917)
# ----------------------------------------------------------------------------------------------

ENVELOPE_DATA = b"DATA\x00"    # zmq_msg_init_size(strlen("DATA") + 1)
ENVELOPE_EVENT = b"EVENT\x00"  # zmq_msg_init_size(strlen("EVENT") + 1)
EVENTCHANNEL_TTL = 3           # EventChannel::Type::TTL (plugin-GUI Source/Processors/Settings/EventChannel.h)
TTL_DATA_SIZE = 10             # EventChannel ctor: m_dataSize = 10 for TTL


def f32(x):
    """A float member (selectedStreamSampleRate, spike thresholds) widened to a double var."""
    return JDouble(float(np.float32(x)))


def build_data_message(message_num, stream, channel_num, channel_name, samples_f32,
                       sample_num, sample_rate, timestamp_ms):
    """ZmqInterface::sendData."""
    n = int(samples_f32.shape[0])
    obj = {
        "message_num": JInt(message_num),
        "type": "data",
        "content": {
            "stream": stream,
            "channel_num": JInt(channel_num),
            "channel_name": channel_name,
            "num_samples": JInt(n),
            "sample_num": JInt(sample_num),
            "sample_rate": f32(sample_rate),
        },
        "data_size": JInt(n * 4),
        "timestamp": JInt(timestamp_ms),
    }
    payload = np.ascontiguousarray(samples_f32, dtype="<f4").tobytes()
    return [ENVELOPE_DATA, header_frame(juce_json_to_string(obj)), payload]


def build_ttl_message(message_num, stream, source_node, sample_num, line, state, word, timestamp_ms):
    """ZmqInterface::handleTTLEvent -> sendEvent with the TTLEvent raw data (10 bytes)."""
    obj = {
        "message_num": JInt(message_num),
        "type": "event",
        "content": {
            "stream": stream,
            "source_node": JInt(source_node),
            "type": JInt(EVENTCHANNEL_TTL),
            "sample_num": JInt(sample_num),
        },
        "data_size": JInt(TTL_DATA_SIZE),
        "timestamp": JInt(timestamp_ms),
    }
    # TTLEvent::createTTLEvent: data[0]=line, data[1]=state, *(uint64*)(data+2)=TTL word (host LE)
    payload = struct.pack("<BBQ", line & 0xFF, 1 if state else 0, word & 0xFFFFFFFFFFFFFFFF)
    return [ENVELOPE_EVENT, header_frame(juce_json_to_string(obj)), payload]


def build_spike_message(message_num, stream, source_node, electrode, sample_num, waveform_f32,
                        num_channels, thresholds, sorted_id, timestamp_ms):
    """ZmqInterface::sendSpikeEvent.  waveform_f32 is channel-major [num_channels][num_samples]."""
    wf = np.ascontiguousarray(waveform_f32, dtype="<f4").reshape(num_channels, -1)
    obj = {
        "message_num": JInt(message_num),
        "type": "spike",
        "spike": {
            "stream": stream,
            "source_node": JInt(source_node),
            "electrode": electrode,
            "sample_num": JInt(sample_num),
            "num_channels": JInt(num_channels),
            "num_samples": JInt(wf.shape[1]),
            "sorted_id": JInt(sorted_id),
            "threshold": [f32(t) for t in thresholds],
        },
        "timestamp": JInt(timestamp_ms),
    }
    return [ENVELOPE_EVENT, header_frame(juce_json_to_string(obj)), wf.tobytes()]


def now_ms():
    """juce::Time::currentTimeMillis(): ms since the Unix epoch."""
    return int(time.time() * 1000)


# ----------------------------------------------------------------------------------------------
# REP (heartbeat) side: ZmqInterface::run() + receiveEvents() + checkForApplications()
# ----------------------------------------------------------------------------------------------

MAX_MESSAGE_LENGTH = 64000
REPLY_HEARTBEAT = b"heartbeat received"
REPLY_EVENT = b"message correctly parsed"
REPLY_BAD_JSON = b"JSON message could not be read"
APP_DEAD_AFTER_S = 5  # checkForApplications: (time(NULL) - lastSeen) > 5


def juce_parse_request(raw):
    """Emulates: zmq_recv(buffer, MAX_MESSAGE_LENGTH - 1); buffer[size] = 0;
    JSON::parse(String(buffer), v) -> JSONParser::parseObjectOrArray.
    Returns (ok, value)."""
    raw = raw[: MAX_MESSAGE_LENGTH - 1].split(b"\x00", 1)[0]
    text = raw.decode("latin-1")  # String(const char*) reads bytes as 8-bit chars
    text = text.lstrip(" \t\n\r\v\f")
    if not text:
        return True, None  # isEOF -> returns var() with Result::ok()
    if text[0] not in "{[":
        return False, None
    try:
        v, _ = json.JSONDecoder().raw_decode(text)  # JUCE ignores trailing text after the value
        return True, v
    except ValueError:
        return False, None


class RepThread(threading.Thread):
    def __init__(self, ctx, endpoint, verbose):
        super().__init__(daemon=True, name="standin-rep")
        self.ctx = ctx
        self.endpoint = endpoint
        self.verbose = verbose
        self.stop_flag = threading.Event()
        self.first_request = threading.Event()
        self.ready = threading.Event()
        self.bind_error = None
        self.lock = threading.Lock()
        self.heartbeats = []        # unix times of requests answered "heartbeat received"
        self.requests = []          # every request: [unix_time, type, application, uuid, reply]
        self.apps = {}              # uuid -> dict(name, first_seen, last_seen, alive)
        self.app_events = []        # [unix_time, uuid, "added"|"alive"|"dead"]

    def run(self):
        sock = self.ctx.socket(zmq.REP)
        try:
            sock.bind(self.endpoint)
        except zmq.ZMQError as e:
            self.bind_error = str(e)
            sock.close(0)
            self.ready.set()
            return
        self.ready.set()
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        next_timer = time.time() + 0.5
        while not self.stop_flag.is_set():
            events = dict(poller.poll(100))  # zmq_poll(items, 2, 100)
            if sock in events:
                frames = sock.recv_multipart()
                t = time.time()
                ok, v = juce_parse_request(frames[0])
                is_obj = isinstance(v, dict)
                typ = v.get("type") if is_obj else None
                app = v.get("application") if is_obj else None
                uuid = v.get("uuid") if is_obj else None
                is_event = ok and typ == "event"
                reply = (REPLY_EVENT if is_event else REPLY_HEARTBEAT) if ok else REPLY_BAD_JSON
                sock.send(reply)  # zmq_send(response.getCharPointer(), response.length()) - no NUL
                with self.lock:
                    self.requests.append([t, typ, app, uuid, reply.decode()])
                    if reply == REPLY_HEARTBEAT:
                        self.heartbeats.append(t)
                    # the plugin registers/refreshes an app for every request, parsed or not
                    key = str(uuid) if uuid is not None else ""
                    a = self.apps.get(key)
                    if a is None:
                        self.apps[key] = {"name": str(app) if app is not None else "", "uuid": key,
                                          "first_seen": t, "last_seen": t, "alive": True}
                        self.app_events.append([t, key, "added"])
                    else:
                        if not a["alive"]:
                            self.app_events.append([t, key, "alive"])
                        a["last_seen"] = t
                        a["alive"] = True
                if self.verbose:
                    print("[standin] REP request %r -> %r" % (frames[0][:120], reply), file=sys.stderr)
                self.first_request.set()
            t = time.time()
            if t >= next_timer:  # Timer(500 ms) -> checkForApplications()
                next_timer = t + 0.5
                with self.lock:
                    for key, a in self.apps.items():
                        if a["alive"] and (int(t) - int(a["last_seen"])) > APP_DEAD_AFTER_S:
                            a["alive"] = False
                            self.app_events.append([t, key, "dead"])
        sock.close(0)


# ----------------------------------------------------------------------------------------------
# Synthetic signal
# ----------------------------------------------------------------------------------------------

SPIKE_PRE_PEAK = 8    # SpikeChannel::Settings default numPrePeakSamples
SPIKE_POST_PEAK = 32  # SpikeChannel::Settings default numPostPeakSamples
# SpikeDetector::process: sampleIndex = peakIndex - (pre + 1); waveform = 40 samples from there,
# so the peak is at index pre+1 = 9 of the 40-sample waveform.
SPIKE_WF_START = -(SPIKE_PRE_PEAK + 1)
SPIKE_WF_LEN = SPIKE_PRE_PEAK + SPIKE_POST_PEAK


def spike_template(fs, amp_uv):
    """Negative biphasic extracellular spike: sharp trough (sigma 0.1 ms) followed by a broader
    positive after-potential (+30 %, centred 0.35 ms, sigma 0.2 ms).  Spans -0.4 .. +1.0 ms.
    Returns (template float64, index of trough within template).  template[trough] == -amp_uv."""
    pre = int(math.ceil(0.4e-3 * fs))
    post = int(math.ceil(1.0e-3 * fs))
    t = (np.arange(-pre, post + 1) / fs) * 1e3  # ms
    w = -np.exp(-0.5 * (t / 0.1) ** 2) + 0.3 * np.exp(-0.5 * ((t - 0.35) / 0.2) ** 2)
    w = w / -w[pre] * amp_uv
    assert int(np.argmin(w)) == pre, "spike template trough is not on the reference sample"
    return w, pre


def generate_spike_times(rng, channels, fs, total, rate_hz, t_first_s=1.5, refractory_s=2e-3,
                         tail_samples=0):
    """Per channel: dead-time-modified Poisson process (ISI = refractory + exponential), mean
    rate = rate_hz, first spike after t_first_s.  Returns sorted list of (channel, trough_sample)."""
    spikes = []
    if rate_hz <= 0:
        return spikes
    refr = int(math.ceil(refractory_s * fs))
    mean_extra = max(fs / rate_hz - refr, 1e-9)
    start = int(math.ceil(t_first_s * fs))
    last_ok = total - 1 - tail_samples
    for ch in range(channels):
        t = start + int(rng.exponential(fs / rate_hz))
        while t <= last_ok:
            spikes.append((ch, t))
            t += refr + int(rng.exponential(mean_extra))
    spikes.sort(key=lambda cs: (cs[1], cs[0]))
    return spikes


# ----------------------------------------------------------------------------------------------
# Main
# ----------------------------------------------------------------------------------------------

def parse_args(argv=None):
    p = argparse.ArgumentParser(description="Open Ephys ZMQ Interface plugin (v1.0.0) stand-in")
    p.add_argument("--port", type=int, required=True, help="data (PUB) port; REP is port+1")
    p.add_argument("--host", default="127.0.0.1", help="bind address (plugin binds '*')")
    p.add_argument("--channels", type=int, default=32)
    p.add_argument("--sample-rate", type=float, default=30000.0)
    p.add_argument("--block", type=int, default=1024)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--spikes-out", required=True)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--mode", choices=["voltage", "spikes"], default="voltage")
    p.add_argument("--noise-uv", type=float, default=10.0)
    p.add_argument("--spike-uv", type=float, default=120.0)
    p.add_argument("--rate-hz", type=float, default=20.0)
    p.add_argument("--realtime", type=float, default=1.0, help="pace factor; 0 = as fast as possible")
    p.add_argument("--ttl-every-s", type=float, default=1.0, help="<=0 disables TTL events")
    p.add_argument("--wait-heartbeat-s", type=float, default=10.0)
    p.add_argument("--settle-s", type=float, default=0.3, help="sleep after first heartbeat")
    p.add_argument("--tail-s", type=float, default=1.0, help="keep answering heartbeats after data")
    p.add_argument("--stream-name", default="example_data")
    p.add_argument("--channel-name-format", default="CH{n}", help="{n}=1-based, {i}=0-based")
    p.add_argument("--ttl-source-node", type=int, default=100)
    p.add_argument("--spike-source-node", type=int, default=101)
    p.add_argument("--spike-threshold", type=float, default=-50.0,
                   help="threshold reported in spike headers (AbsValueThresholder default -50)")
    p.add_argument("--sndhwm", type=int, default=1000,
                   help="PUB send HWM; plugin leaves libzmq default 1000 (0 = unlimited)")
    p.add_argument("--linger-ms", type=int, default=2000)
    p.add_argument("--verbose", action="store_true")
    p.add_argument("--raw-out", default=None,
                   help="also write the voltage sent (/voltage [T, C] f32, attr sample_rate) to this HDF5 file")
    a = p.parse_args(argv)
    if a.block < 1 or a.channels < 1 or a.sample_rate <= 0:
        p.error("block, channels and sample-rate must be positive")
    if a.mode == "spikes" and a.block < 1:
        p.error("block too small")
    return a


def main(argv=None):
    a = parse_args(argv)
    log = (lambda *m: print("[standin]", *m, file=sys.stderr))
    fs = a.sample_rate
    C = a.channels
    B = a.block
    total = int(round(a.seconds * fs))
    stream = a.stream_name

    ss = np.random.SeedSequence(a.seed)
    spike_rng, noise_rng = [np.random.default_rng(s) for s in ss.spawn(2)]

    tmpl, tmpl_trough = spike_template(fs, a.spike_uv)
    tmpl_after = len(tmpl) - 1 - tmpl_trough
    tail = max(tmpl_after, SPIKE_WF_LEN + SPIKE_WF_START - 1)  # samples needed after the trough
    spikes = generate_spike_times(spike_rng, C, fs, total, a.rate_hz, tail_samples=tail)
    spike_starts = np.array([t - tmpl_trough for _, t in spikes], dtype=np.int64)
    spike_chs = np.array([c for c, _ in spikes], dtype=np.int64)
    # spikes-mode: emit a spike in the block that contains its last waveform sample
    emit_at = np.array([t + SPIKE_WF_START + SPIKE_WF_LEN - 1 for _, t in spikes], dtype=np.int64)
    emit_order = np.argsort(emit_at, kind="stable")

    # TTL schedule: line 0, alternating state starting high, at k * ttl_every_s (k >= 1)
    ttls = []
    if a.ttl_every_s > 0:
        k = 1
        while True:
            s = int(round(k * a.ttl_every_s * fs))
            if s >= total:
                break
            ttls.append((s, 0, 1 if k % 2 == 1 else 0))
            k += 1

    ctx = zmq.Context()
    pub = ctx.socket(zmq.PUB)
    pub.setsockopt(zmq.SNDHWM, a.sndhwm)
    try:
        pub.bind("tcp://%s:%d" % (a.host, a.port))
    except zmq.ZMQError as e:
        log("cannot bind data socket:", e)
        return 2
    rep = RepThread(ctx, "tcp://%s:%d" % (a.host, a.port + 1), a.verbose)
    rep.start()
    rep.ready.wait()
    if rep.bind_error:
        log("cannot bind listen socket:", rep.bind_error)
        pub.close(0)
        return 2
    log("PUB tcp://%s:%d  REP tcp://%s:%d  mode=%s channels=%d fs=%g block=%d samples=%d spikes=%d"
        % (a.host, a.port, a.host, a.port + 1, a.mode, C, fs, B, total, len(spikes)))

    t_wait0 = time.time()
    got_hb = rep.first_request.wait(a.wait_heartbeat_s) if a.wait_heartbeat_s > 0 else False
    waited = time.time() - t_wait0
    if not got_hb and a.wait_heartbeat_s > 0:
        log("no heartbeat within %.1f s; streaming anyway" % a.wait_heartbeat_s)
    time.sleep(max(a.settle_s, 0.0))

    message_num = 0  # startAcquisition(): messageNumber = 0; incremented before every send
    counts = {"data": 0, "event": 0, "spike": 0}
    chan_names = [a.channel_name_format.format(n=i + 1, i=i) for i in range(C)]
    ttl_word = 0
    ttl_i = 0
    emit_i = 0
    hist = np.zeros((C, 0), dtype=np.float32)
    HIST = 64
    t_start = time.time()
    block_idx = 0
    first = 0
    ttl_log = []
    raw_blocks = [] if a.raw_out else None
    while first < total:
        n = min(B, total - first)
        end = first + n
        # --- synthesize block: noise + spikes overlapping [first, end)
        x = noise_rng.standard_normal((C, n), dtype=np.float32) * np.float32(a.noise_uv)
        x = x.astype(np.float64)
        if len(spikes):
            lo = np.searchsorted(spike_starts, first - len(tmpl) + 1, side="left")
            hi = np.searchsorted(spike_starts, end, side="left")
            for j in range(lo, hi):
                s0 = int(spike_starts[j])
                a0 = max(s0, first)
                a1 = min(s0 + len(tmpl), end)
                if a1 > a0:
                    x[spike_chs[j], a0 - first:a1 - first] += tmpl[a0 - s0:a1 - s0]
        x = x.astype(np.float32)
        if raw_blocks is not None:
            raw_blocks.append(x.T.copy())

        # --- pacing: a block leaves the GUI once it has been acquired
        if a.realtime > 0:
            deadline = t_start + (end / fs) / a.realtime
            dt = deadline - time.time()
            if dt > 0:
                time.sleep(dt)

        # --- events first (process(): checkForEvents(true) runs before sendData)
        block_ttls = []
        while ttl_i < len(ttls) and ttls[ttl_i][0] < end:
            block_ttls.append(ttls[ttl_i])
            ttl_i += 1
        ordered = [("ttl", e) for e in block_ttls if e[0] == first]
        if a.mode == "spikes":
            buf = np.concatenate([hist, x], axis=1)
            buf_start = first - hist.shape[1]
            emits = []
            while emit_i < len(emit_order) and emit_at[emit_order[emit_i]] < end:
                emits.append(int(emit_order[emit_i]))
                emit_i += 1
            emits.sort(key=lambda j: (spikes[j][0], spikes[j][1]))  # per electrode, then time
            ordered += [("spike", j) for j in emits]
        ordered += [("ttl", e) for e in block_ttls if e[0] != first]

        for kind, item in ordered:
            message_num += 1
            if kind == "ttl":
                s, line, state = item
                ttl_word = (ttl_word | (1 << line)) if state else (ttl_word & ~(1 << line))
                msg = build_ttl_message(message_num, stream, a.ttl_source_node, s, line, state,
                                        ttl_word, now_ms())
                counts["event"] += 1
                ttl_log.append([s, line, state])
            else:
                ch, tr = spikes[item]
                w0 = tr + SPIKE_WF_START - buf_start
                wf = buf[ch, w0:w0 + SPIKE_WF_LEN]
                assert wf.shape[0] == SPIKE_WF_LEN
                msg = build_spike_message(message_num, stream, a.spike_source_node,
                                          "Electrode %d" % (ch + 1), tr, wf, 1,
                                          [a.spike_threshold], 0, now_ms())
                counts["spike"] += 1
            pub.send_multipart(msg)

        if a.mode == "voltage":
            for ch in range(C):  # for (auto chan : selectedChannels) -> ascending local index
                message_num += 1
                # sendData() calls Time::currentTimeMillis() once per message
                pub.send_multipart(build_data_message(message_num, stream, ch, chan_names[ch],
                                                      x[ch], first, fs, now_ms()))
                counts["data"] += 1
        else:
            hist = np.concatenate([hist, x], axis=1)[:, -HIST:]

        first = end
        block_idx += 1

    t_end = time.time()
    log("sent %d messages (%s) in %.2f s" % (message_num, counts, t_end - t_start))
    time.sleep(max(a.tail_s, 0.0))
    pub.close(a.linger_ms)
    rep.stop_flag.set()
    rep.join(2.0)
    ctx.term()

    with rep.lock:
        truth = {
            "sample_rate": fs,
            "channels": C,
            "block": B,
            "total_samples": total,
            "spikes": [[int(c), int(t)] for c, t in spikes],
            "heartbeats": list(rep.heartbeats),
            "ttl": ttl_log,
            "messages_sent": message_num,
            # extras
            "mode": a.mode,
            "seed": a.seed,
            "stream": stream,
            "channel_names": chan_names,
            "noise_uv": a.noise_uv,
            "spike_uv": a.spike_uv,
            "rate_hz": a.rate_hz,
            "spike_sample_is": "trough (most negative sample of the injected template)",
            "spike_template_uv": [float(v) for v in tmpl],
            "spike_template_trough_index": tmpl_trough,
            "spike_event_waveform": {"num_samples": SPIKE_WF_LEN, "peak_index": -SPIKE_WF_START,
                                     "threshold": a.spike_threshold},
            "message_counts": counts,
            "num_blocks": block_idx,
            "first_request_wait_s": waited,
            "got_heartbeat_before_start": bool(got_hb),
            "stream_start_unix": t_start,
            "stream_end_unix": t_end,
            "rep_requests": rep.requests,
            "applications": list(rep.apps.values()),
            "application_events": rep.app_events,
        }
    with open(a.spikes_out, "w") as f:
        json.dump(truth, f)
    if a.raw_out:
        # The voltage exactly as sent (f32 uV, [T, C]), for an offline run of the same front end.
        import h5py
        with h5py.File(a.raw_out, "w") as h:
            h.create_dataset("voltage", data=np.concatenate(raw_blocks, axis=0))
            h.attrs["sample_rate"] = fs
    return 0


if __name__ == "__main__":
    sys.exit(main())
