// alternator dashboard: listens to /api/events (Server-Sent Events), keeps
// the last 10 s of decoded and true behaviour, and draws them with uPlot.
// A `token` in the page's query string is passed on to the API (for remote
// access; loopback needs none).
"use strict";

const PLOT_SECONDS = 10;
const MAX_DIMS = 4;
const COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"];
const token = new URLSearchParams(location.search).get("token");
const withToken = (path) => (token ? path + (path.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(token) : path);
const $ = (id) => document.getElementById(id);

const state = {
  points: new Map(), // seq -> {d: [..], t: [..]}
  binSeconds: 0.02,
  outputs: 0,
  bounds: [],
  plot: null,
  latPlot: null,
  dirty: false,
};

function fmtInt(n) {
  return n == null ? "–" : Number(n).toLocaleString("en-US");
}
function fmtUs(v) {
  return v == null ? "–" : (v >= 1000 ? (v / 1000).toFixed(1) + " ms" : v.toFixed(0) + " µs");
}
function fmtBytes(b) {
  if (b == null) return "–";
  const u = ["B", "kB", "MB", "GB", "TB"];
  let i = 0;
  while (b >= 1000 && i < u.length - 1) { b /= 1000; i++; }
  return b.toFixed(i ? 1 : 0) + " " + u[i];
}
function fmtAge(s) {
  if (s == null) return "none yet";
  return s < 1 ? (s * 1000).toFixed(0) + " ms ago" : s.toFixed(1) + " s ago";
}

async function api(path, method) {
  const r = await fetch(withToken(path), { method: method || "GET" });
  let body;
  try { body = await r.json(); } catch (e) { body = { ok: false, error: r.status + " " + r.statusText }; }
  return { status: r.status, body };
}

// ---- the behaviour plot ----------------------------------------------------

function makePlot(dims) {
  const series = [{ label: "t (s)" }];
  for (let d = 0; d < dims; d++) {
    series.push({ label: "decoded " + d, stroke: COLOURS[d], width: 1.5 });
    series.push({ label: "true " + d, stroke: COLOURS[d], width: 1, dash: [4, 3] });
  }
  const el = $("plot");
  return new uPlot({
    width: Math.max(300, el.clientWidth - 10),
    height: 260,
    scales: { x: { time: false } },
    axes: [{ label: "time in stream (s)" }, {}],
    series,
  }, [[]].concat(series.slice(1).map(() => [])), el);
}

function addPoints(points) {
  for (const p of points) {
    const [seq, kind, ...values] = p;
    let e = state.points.get(seq);
    if (!e) { e = { d: null, t: null }; state.points.set(seq, e); }
    if (kind === 1) e.t = values; else e.d = values;
  }
  if (points.length) state.dirty = true;
}

function prune() {
  let newest = -1;
  for (const s of state.points.keys()) if (s > newest) newest = s;
  const span = Math.ceil(PLOT_SECONDS / state.binSeconds);
  for (const s of [...state.points.keys()]) if (s + span < newest) state.points.delete(s);
}

function drawPlot() {
  if (!state.dirty || state.outputs === 0) return;
  state.dirty = false;
  prune();
  const dims = Math.min(state.outputs, MAX_DIMS);
  if (!state.plot) state.plot = makePlot(dims);
  const seqs = [...state.points.keys()].sort((a, b) => a - b);
  const data = [seqs.map((s) => s * state.binSeconds)];
  let drawn = 0;
  for (let d = 0; d < dims; d++) {
    data.push(seqs.map((s) => { const e = state.points.get(s); return e.d ? e.d[d] : null; }));
    data.push(seqs.map((s) => { const e = state.points.get(s); return e.t ? e.t[d] : null; }));
  }
  for (const s of seqs) if (state.points.get(s).d) drawn++;
  state.plot.setData(data);
  const el = $("plot-points");
  el.dataset.points = String(drawn);
  el.textContent = drawn + " decoded points";
}

// ---- the latency histogram ---------------------------------------------------

function drawLatency(lat) {
  if (!lat || !state.bounds.length) return;
  const counts = lat.recent_counts;
  let last = 0;
  counts.forEach((c, i) => { if (c > 0) last = i; });
  const n = Math.min(counts.length, Math.max(last + 2, 20));
  const xs = [...Array(n).keys()];
  const labels = xs.map((i) => (i < state.bounds.length ? "≤" + fmtUs(state.bounds[i]) : "more"));
  const data = [xs, counts.slice(0, n)];
  if (!state.latPlot || state.latPlot.__n !== n) {
    if (state.latPlot) state.latPlot.destroy();
    const el = $("latency-plot");
    state.latPlot = new uPlot({
      width: Math.max(250, el.clientWidth - 10),
      height: 180,
      legend: { show: false },
      scales: { x: { time: false, range: [-0.5, n - 0.5] } },
      axes: [{ values: (u, splits) => splits.map((i) => labels[i] || ""), rotate: 0 }, {}],
      series: [{}, { label: "bins", fill: "#1f77b466", stroke: "#1f77b4",
        paths: uPlot.paths.bars({ size: [0.9, 40] }), points: { show: false } }],
    }, data, el);
    state.latPlot.__n = n;
  } else {
    state.latPlot.setData(data);
  }
}

// ---- tiles and tables --------------------------------------------------------

function showCounters(u) {
  const c = u.counters;
  $("bins-per-s").textContent = u.bins_per_s.toFixed(0);
  $("decoded").textContent = fmtInt(c.bins_in);
  $("imputed").textContent = fmtInt(c.imputed);
  $("resets").textContent = fmtInt(c.resets);
  const dropped = c.drops.reduce((a, [, n]) => a + n, 0);
  $("dropped").textContent = fmtInt(dropped);
  $("last-bin").textContent = fmtAge(u.last_bin_age_s);
  const alive = $("alive");
  const age = u.last_bin_age_s;
  alive.className = "pill " + (age == null ? "waiting" : age < 2 ? "live" : "stalled");
  alive.textContent = age == null ? "waiting for bins" : age < 2 ? "decoding" : "no input";
  const nonzero = c.drops.filter(([, n]) => n > 0);
  $("drops").innerHTML = nonzero.length
    ? nonzero.map(([r, n]) => `<tr class="nonzero"><td>${r}</td><td>${fmtInt(n)}</td></tr>`).join("")
    : `<tr><td>none (${c.drops.length} reasons counted)</td></tr>`;
}

function showLatency(lat) {
  if (!lat) return;
  const set = (p, v) => {
    $("lat-" + p + "-p50").textContent = fmtUs(v.p50_us);
    $("lat-" + p + "-p99").textContent = fmtUs(v.p99_us);
    $("lat-" + p + "-p999").textContent = fmtUs(v.p999_us);
    $("lat-" + p + "-n").textContent = fmtInt(v.count);
  };
  set("r", lat.recent);
  set("t", lat.total);
  $("latency-window").textContent = "recent = last " + lat.window_s.toFixed(0) + " s; bucket upper bounds";
  drawLatency(lat);
}

function showRecorder(r) {
  $("rec-state").textContent = !r.enabled ? "off" : r.path ? "recording" : "idle (no file open)";
  $("rec-file").textContent = r.path || "–";
  $("rec-size").textContent = fmtBytes(r.file_bytes);
  $("rec-bytes").textContent = fmtBytes(r.recorded_bytes);
  $("rec-lost").textContent = fmtInt(r.lost);
}

function showModel(u) {
  $("model-id").textContent = u.model_id;
  $("shape").textContent = u.channels + " channels → " + u.outputs + " outputs";
  const r = u.retrain;
  $("generation").textContent = r && r.live_generation != null ? r.live_generation : "–";
  $("retrain-state").textContent = !r ? "retraining is off in this daemon (retrain.enabled = false)"
    : `runs ${r.runs}: ${r.accepted} accepted, ${r.rejected} rejected, ${r.failed} failed` +
      (r.running ? " — training now" : "");
}

async function refreshModels() {
  const { body } = await api("/api/models");
  if (!body.ok) { $("models").innerHTML = `<tr><td>${body.error}</td></tr>`; return; }
  const rows = body.generations.slice().reverse().map((g) =>
    `<tr class="${g.status}"><td>${g.generation}</td><td>${g.status}</td>` +
    `<td>${g.val_r2 == null ? "–" : g.val_r2.toFixed(4)}</td><td>${g.parent == null ? "–" : g.parent}</td>` +
    `<td>${new Date(g.created * 1000).toLocaleString()}</td><td><code>${g.id.slice(0, 12)}</code></td>` +
    `<td>${g.status === "accepted" ? `<button data-gen="${g.generation}">roll back</button>` : ""}</td></tr>`);
  $("models").innerHTML = "<tr><th>gen</th><th>status</th><th>val R²</th><th>parent</th><th>created</th><th>id</th><th></th></tr>" +
    (rows.join("") || "<tr><td colspan=7>no generations in the models directory</td></tr>");
}

async function action(path) {
  const msg = $("action-msg");
  msg.className = "";
  msg.textContent = "…";
  const { status, body } = await api(path, "POST");
  msg.className = body.ok ? "" : "error";
  msg.textContent = body.ok ? body.message : `${status}: ${body.error}`;
  refreshModels();
}

// ---- wiring ----------------------------------------------------------------

function onUpdate(u) {
  if (u.kind === "snapshot") state.points.clear();
  state.binSeconds = u.bin_seconds;
  state.outputs = u.outputs;
  addPoints(u.points);
  showCounters(u);
  showLatency(u.latency);
  showRecorder(u.recorder);
  showModel(u);
  drawPlot();
}

async function main() {
  try {
    const r = await fetch(withToken("/api/latency-buckets"));
    state.bounds = await r.json();
  } catch (e) { /* the histogram stays empty */ }
  const es = new EventSource(withToken("/api/events"));
  es.onmessage = (ev) => onUpdate(JSON.parse(ev.data));
  es.onerror = () => { const a = $("alive"); a.className = "pill down"; a.textContent = "disconnected"; };
  $("retrain").addEventListener("click", () => action("/api/retrain"));
  $("models").addEventListener("click", (ev) => {
    const g = ev.target.dataset && ev.target.dataset.gen;
    if (g && confirm("Make generation " + g + " live?")) action("/api/rollback/" + g);
  });
  refreshModels();
  setInterval(refreshModels, 5000);
}

main();
