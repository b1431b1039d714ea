//! Publishing recordings as a rig would: protocol-v1 frames on a ZeroMQ
//! XPUB socket (or on iceoryx2 shared-memory services, [`FrameSender`] for
//! [`crate::ingest::shm::ShmRig`]), paced at the recorded rate (or scaled, or as fast as
//! possible). Used by `alternator replay`, the demo, the benchmark and the
//! tests' rig.
//!
//! Invariants: nothing is sent before a subscriber's subscription has been
//! seen (XPUB reports it), so no bin is lost to the PUB/SUB slow-joiner
//! problem; seq increases by one per timestep for the whole run (also across
//! `--loop` passes); `t_ns` is this process's monotonic clock at send time.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::clock::monotonic_ns;
use crate::latency::quantile_us;
use crate::recording::Recording;
use crate::wire::{encode_frame, Dtype, Header};

/// Why a replay could not start or continue.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("ZeroMQ error on {endpoint}: {source}")]
    Zmq { endpoint: String, source: zmq::Error },
    #[error("no subscriber appeared on {endpoint} within {waited:?}; is the daemon running and listening there?")]
    NoSubscriber { endpoint: String, waited: Duration },
    #[error("the recording has {recording} channels but the daemon decodes {daemon}; refusing to send")]
    ChannelMismatch { recording: usize, daemon: usize },
    #[error("--from {from} s / --to {to} s select no bins of a {length:.3} s recording")]
    EmptyRange { from: f64, to: f64, length: f64 },
    #[error("--speed {0} must be a positive number")]
    BadSpeed(f64),
    #[error("the recording's /seq has {seqs} entries for {bins} bins")]
    SeqLength { seqs: usize, bins: usize },
    #[error("shared memory: {0}")]
    Shm(#[from] crate::ingest::shm::ShmError),
}

/// Where a replay's frames go: a ZeroMQ [`Publisher`] or a shared-memory rig.
pub trait FrameSender {
    /// Sends one frame of `samples` timesteps (`values.len() = channels × samples`);
    /// `topic` is the ZeroMQ topic, `is_behavior` says which stream it belongs to.
    #[allow(clippy::too_many_arguments)]
    fn send_frame(
        &mut self,
        topic: &str,
        is_behavior: bool,
        dtype: Dtype,
        seq: u64,
        t_ns: u64,
        channels: u32,
        values: &[f32],
    ) -> Result<(), ReplayError>;
}

impl FrameSender for Publisher {
    fn send_frame(
        &mut self,
        topic: &str,
        _is_behavior: bool,
        dtype: Dtype,
        seq: u64,
        t_ns: u64,
        channels: u32,
        values: &[f32],
    ) -> Result<(), ReplayError> {
        self.send(topic, dtype, seq, t_ns, channels, values)
    }
}

/// Over shared memory there are no topics: observations go to the input
/// service, behaviour to the behaviour service.
impl FrameSender for crate::ingest::shm::ShmRig {
    fn send_frame(
        &mut self,
        _topic: &str,
        is_behavior: bool,
        dtype: Dtype,
        seq: u64,
        t_ns: u64,
        channels: u32,
        values: &[f32],
    ) -> Result<(), ReplayError> {
        let h = Header::for_values(dtype, seq, t_ns, channels, values.len());
        Ok(self.send(is_behavior, &h, values)?)
    }
}

/// How to replay.
#[derive(Debug, Clone)]
pub struct ReplayOptions {
    /// Rate multiplier; None = as fast as possible.
    pub speed: Option<f64>,
    /// Start again from the beginning at the end (until stopped).
    pub repeat: bool,
    /// Start time within the recording (seconds).
    pub from_s: f64,
    /// End time within the recording (seconds); None = the end.
    pub to_s: Option<f64>,
    /// Skip sending every Nth bin (its seq is still consumed): tests gap handling.
    pub drop_every: Option<u64>,
    /// Topic of observation frames.
    pub topic: String,
    /// Topic of behaviour frames (sent when the recording has behaviour).
    pub behavior_topic: Option<String>,
    /// First seq.
    pub first_seq: u64,
    /// Seq of every bin as recorded (a daemon session's `/seq`): gaps and
    /// restarts are reproduced exactly. Overrides `first_seq`; one pass only.
    pub seqs: Option<Vec<u64>>,
}

impl Default for ReplayOptions {
    fn default() -> Self {
        Self {
            speed: Some(1.0),
            repeat: false,
            from_s: 0.0,
            to_s: None,
            drop_every: None,
            topic: "spikes".into(),
            behavior_topic: Some("behavior".into()),
            first_seq: 0,
            seqs: None,
        }
    }
}

/// What a replay achieved.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ReplayReport {
    pub bins_sent: u64,
    pub bins_skipped: u64,
    pub behavior_sent: u64,
    pub seconds: f64,
    pub achieved_rate_hz: f64,
    /// Target rate (None when sending as fast as possible).
    pub target_rate_hz: Option<f64>,
    /// |actual − scheduled| send time, microseconds.
    pub pacing_error_p50_us: f64,
    pub pacing_error_p99_us: f64,
    pub pacing_error_max_us: f64,
    pub next_seq: u64,
}

/// A rig-like publisher.
pub struct Publisher {
    sock: zmq::Socket,
    endpoint: String,
    buf: Vec<u8>,
}

impl Publisher {
    /// An XPUB socket connected (or bound) to `endpoint`.
    pub fn new(ctx: &zmq::Context, endpoint: &str, bind: bool) -> Result<Self, ReplayError> {
        let e = |source| ReplayError::Zmq { endpoint: endpoint.to_string(), source };
        let sock = ctx.socket(zmq::XPUB).map_err(e)?;
        sock.set_sndhwm(0).map_err(e)?;
        sock.set_linger(2000).map_err(e)?;
        let endpoint = if bind {
            sock.bind(endpoint).map_err(e)?;
            // A wildcard port (`tcp://127.0.0.1:*`) resolved to the one bound.
            sock.get_last_endpoint().ok().and_then(|r| r.ok()).unwrap_or_else(|| endpoint.to_string())
        } else {
            sock.connect(endpoint).map_err(e)?;
            endpoint.to_string()
        };
        Ok(Self { sock, endpoint, buf: Vec::with_capacity(4096) })
    }

    /// Where the socket is bound or connected (a wildcard port resolved).
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Waits until a subscription arrives (the daemon's SUB has connected).
    pub fn wait_for_subscriber(&self, timeout: Duration) -> Result<(), ReplayError> {
        let start = Instant::now();
        let e = |source| ReplayError::Zmq { endpoint: self.endpoint.clone(), source };
        loop {
            let left = timeout.saturating_sub(start.elapsed());
            if left.is_zero() {
                return Err(ReplayError::NoSubscriber { endpoint: self.endpoint.clone(), waited: timeout });
            }
            let mut items = [self.sock.as_poll_item(zmq::POLLIN)];
            zmq::poll(&mut items, left.as_millis().max(1) as i64).map_err(e)?;
            if items[0].is_readable() {
                let m = self.sock.recv_bytes(0).map_err(e)?;
                if m.first() == Some(&1) {
                    return Ok(());
                }
            }
        }
    }

    /// Sends one frame of `samples` timesteps (`values.len() = channels × samples`).
    pub fn send(
        &mut self,
        topic: &str,
        dtype: Dtype,
        seq: u64,
        t_ns: u64,
        channels: u32,
        values: &[f32],
    ) -> Result<(), ReplayError> {
        let h = Header::for_values(dtype, seq, t_ns, channels, values.len());
        encode_frame(&mut self.buf, &h, values);
        let e = |source| ReplayError::Zmq { endpoint: self.endpoint.clone(), source };
        self.sock.send(topic.as_bytes(), zmq::SNDMORE).map_err(e)?;
        self.sock.send(&self.buf[..], 0).map_err(e)
    }

    /// Sends an arbitrary two-part message (tests use it for malformed frames).
    pub fn send_raw(&self, topic: &[u8], body: &[u8]) -> Result<(), ReplayError> {
        self.send_parts(&[topic, body])
    }

    /// Sends a message of any number of parts (tests send malformed ones).
    pub fn send_parts(&self, parts: &[&[u8]]) -> Result<(), ReplayError> {
        let e = |source| ReplayError::Zmq { endpoint: self.endpoint.clone(), source };
        for (i, part) in parts.iter().enumerate() {
            let more = if i + 1 < parts.len() { zmq::SNDMORE } else { 0 };
            self.sock.send(*part, more).map_err(e)?;
        }
        Ok(())
    }

    /// Replays `rec` with pacing; stops early when `stop` is set.
    pub fn replay(
        &mut self,
        rec: &Recording,
        opts: &ReplayOptions,
        stop: &AtomicBool,
    ) -> Result<ReplayReport, ReplayError> {
        replay(self, rec, opts, stop)
    }
}

/// Replays `rec` into `out` with pacing; stops early when `stop` is set.
pub fn replay(
    out: &mut dyn FrameSender,
    rec: &Recording,
    opts: &ReplayOptions,
    stop: &AtomicBool,
) -> Result<ReplayReport, ReplayError> {
    let plan = Plan::new(rec, opts)?;
    let mut run =
        Progress { seq: opts.first_seq, sent: 0, skipped: 0, behavior: 0, pacing: crate::latency::histogram() };
    let start = Instant::now();
    'passes: for pass in 0u64.. {
        for (&i, &offset) in plan.bins.iter().zip(&plan.offsets) {
            if stop.load(Ordering::Relaxed) {
                break 'passes;
            }
            if let Some(speed) = opts.speed {
                let due = start + Duration::from_secs_f64((pass as f64 * plan.pass_len + offset) / speed);
                pace_until(due);
                let late = Instant::now().saturating_duration_since(due).as_nanos() as u64;
                run.pacing.saturating_record(late.max(1));
            }
            run.send_bin(out, rec, opts, i)?;
        }
        if !opts.repeat || opts.seqs.is_some() {
            break;
        }
    }
    Ok(run.report(start.elapsed().as_secs_f64(), opts.speed.map(|s| s / rec.bin_seconds)))
}

/// The bins one pass sends (indices within `from..to`), their send times
/// relative to the first, and the length of a pass (seconds).
struct Plan {
    bins: Vec<usize>,
    offsets: Vec<f64>,
    pass_len: f64,
}

impl Plan {
    fn new(rec: &Recording, opts: &ReplayOptions) -> Result<Self, ReplayError> {
        if let Some(s) = opts.speed {
            if !(s > 0.0 && s.is_finite()) {
                return Err(ReplayError::BadSpeed(s));
            }
        }
        let n = rec.n_bins();
        if let Some(v) = &opts.seqs {
            if v.len() != n {
                return Err(ReplayError::SeqLength { seqs: v.len(), bins: n });
            }
        }
        let time_of = |i: usize| rec.timestamps.as_ref().map(|t| t[i] - t[0]).unwrap_or(i as f64 * rec.bin_seconds);
        let to = opts.to_s.unwrap_or(f64::INFINITY);
        let bins: Vec<usize> = (0..n).filter(|&i| time_of(i) >= opts.from_s && time_of(i) < to).collect();
        let (Some(&first), Some(&last)) = (bins.first(), bins.last()) else {
            return Err(ReplayError::EmptyRange { from: opts.from_s, to, length: time_of(n - 1) + rec.bin_seconds });
        };
        let t0 = time_of(first);
        let offsets = bins.iter().map(|&i| time_of(i) - t0).collect();
        Ok(Self { bins, offsets, pass_len: time_of(last) - t0 + rec.bin_seconds })
    }
}

/// What a replay has sent so far.
struct Progress {
    /// The seq of the next bin (without recorded seqs).
    seq: u64,
    sent: u64,
    skipped: u64,
    behavior: u64,
    /// |actual − scheduled| send time (ns).
    pacing: Histogram<u64>,
}

impl Progress {
    /// Sends bin `i` (and its behaviour when labelled), or skips it under `drop_every`.
    fn send_bin(
        &mut self,
        out: &mut dyn FrameSender,
        rec: &Recording,
        opts: &ReplayOptions,
        i: usize,
    ) -> Result<(), ReplayError> {
        let seq = opts.seqs.as_ref().map_or(self.seq, |v| v[i]);
        self.seq = seq + 1;
        if opts.drop_every.is_some_and(|k| k > 0 && (seq - opts.first_seq + 1).is_multiple_of(k)) {
            self.skipped += 1;
            return Ok(());
        }
        out.send_frame(
            &opts.topic,
            false,
            Dtype::F32,
            seq,
            monotonic_ns(),
            rec.n_channels() as u32,
            rec.spikes.row(i),
        )?;
        self.sent += 1;
        if let (Some(topic), Some(b)) = (&opts.behavior_topic, &rec.behavior) {
            if rec.is_labelled(i) {
                out.send_frame(topic, true, Dtype::F32, seq, monotonic_ns(), b.cols as u32, b.row(i))?;
                self.behavior += 1;
            }
        }
        Ok(())
    }

    fn report(&self, seconds: f64, target_rate_hz: Option<f64>) -> ReplayReport {
        let total = self.sent + self.skipped;
        ReplayReport {
            bins_sent: self.sent,
            bins_skipped: self.skipped,
            behavior_sent: self.behavior,
            seconds,
            achieved_rate_hz: if total > 1 { (total - 1) as f64 / seconds.max(1e-9) } else { 0.0 },
            target_rate_hz,
            pacing_error_p50_us: quantile_us(&self.pacing, 0.5),
            pacing_error_p99_us: quantile_us(&self.pacing, 0.99),
            pacing_error_max_us: quantile_us(&self.pacing, 1.0),
            next_seq: self.seq,
        }
    }
}

/// Sleeps until shortly before `due`, then spins to it.
pub fn pace_until(due: Instant) {
    const SPIN: Duration = Duration::from_micros(150);
    loop {
        let now = Instant::now();
        if now >= due {
            return;
        }
        let left = due - now;
        if left > SPIN {
            std::thread::sleep(left - SPIN);
        } else {
            std::hint::spin_loop();
        }
    }
}
