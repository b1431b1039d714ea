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
use crate::recording::Recording;
use crate::wire::{encode_frame, Dtype, Header, VERSION};

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
        let samples = (values.len() / channels.max(1) as usize) as u32;
        let h = Header { version: VERSION, dtype, flags: 0, seq, t_ns, channels, samples };
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
        if bind {
            sock.bind(endpoint).map_err(e)?;
        } else {
            sock.connect(endpoint).map_err(e)?;
        }
        Ok(Self { sock, endpoint: endpoint.to_string(), buf: Vec::with_capacity(4096) })
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
        let samples = (values.len() / channels.max(1) as usize) as u32;
        let h = Header { version: VERSION, dtype, flags: 0, seq, t_ns, channels, samples };
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
    {
        if let Some(s) = opts.speed {
            if !(s > 0.0 && s.is_finite()) {
                return Err(ReplayError::BadSpeed(s));
            }
        }
        let n = rec.n_bins();
        let time_of = |i: usize| rec.timestamps.as_ref().map(|t| t[i] - t[0]).unwrap_or(i as f64 * rec.bin_seconds);
        let length = time_of(n - 1) + rec.bin_seconds;
        let to = opts.to_s.unwrap_or(f64::INFINITY);
        let idx: Vec<usize> = (0..n).filter(|&i| time_of(i) >= opts.from_s && time_of(i) < to).collect();
        if idx.is_empty() {
            return Err(ReplayError::EmptyRange { from: opts.from_s, to, length });
        }
        if let Some(v) = &opts.seqs {
            if v.len() != n {
                return Err(ReplayError::SeqLength { seqs: v.len(), bins: n });
            }
        }
        let c = rec.n_channels() as u32;
        let mut pacing = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("invariant: static bounds");
        let t0 = time_of(idx[0]);
        let pass_len = time_of(*idx.last().expect("invariant: non-empty")) - t0 + rec.bin_seconds;
        let start = Instant::now();
        let mut seq = opts.first_seq;
        let (mut sent, mut skipped, mut beh) = (0u64, 0u64, 0u64);
        let mut pass = 0u64;
        'outer: loop {
            for &i in &idx {
                if stop.load(Ordering::Relaxed) {
                    break 'outer;
                }
                if let Some(speed) = opts.speed {
                    let due = start + Duration::from_secs_f64((pass as f64 * pass_len + time_of(i) - t0) / speed);
                    pace_until(due);
                    let late = Instant::now().saturating_duration_since(due).as_nanos() as u64;
                    pacing.saturating_record(late.max(1));
                }
                let this_seq = match &opts.seqs {
                    Some(v) => v[i],
                    None => seq,
                };
                seq = this_seq + 1;
                if opts.drop_every.map(|k| k > 0 && (this_seq - opts.first_seq + 1).is_multiple_of(k)).unwrap_or(false)
                {
                    skipped += 1;
                    continue;
                }
                out.send_frame(&opts.topic, false, Dtype::F32, this_seq, monotonic_ns(), c, rec.spikes.row(i))?;
                sent += 1;
                if let (Some(topic), Some(b)) = (&opts.behavior_topic, &rec.behavior) {
                    if rec.is_labelled(i) {
                        out.send_frame(topic, true, Dtype::F32, this_seq, monotonic_ns(), b.cols as u32, b.row(i))?;
                        beh += 1;
                    }
                }
            }
            pass += 1;
            if !opts.repeat || opts.seqs.is_some() {
                break;
            }
        }
        let seconds = start.elapsed().as_secs_f64();
        let total = sent + skipped;
        Ok(ReplayReport {
            bins_sent: sent,
            bins_skipped: skipped,
            behavior_sent: beh,
            seconds,
            achieved_rate_hz: if total > 1 { (total - 1) as f64 / seconds.max(1e-9) } else { 0.0 },
            target_rate_hz: opts.speed.map(|s| s / rec.bin_seconds),
            pacing_error_p50_us: pacing.value_at_quantile(0.5) as f64 / 1e3,
            pacing_error_p99_us: pacing.value_at_quantile(0.99) as f64 / 1e3,
            pacing_error_max_us: pacing.max() as f64 / 1e3,
            next_seq: seq,
        })
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
