//! A Lab Streaming Layer stream as a source (liblsl loaded at run time, see
//! [`ffi`]). The stream is found by `name` / `type` / `source_id`; a thread
//! of the source's own resolves it and opens the inlet (both may block for
//! seconds), then hands the inlet to the decode thread, which pulls from it
//! with the loop's timeout.
//!
//! `binned` mode: each LSL sample is one timestep of the model's channel
//! count; `voltage` mode: each sample is raw data through the front end
//! ([`voltage`]). seq is a sample counter; a hole in the stream (a dropout, a
//! paused outlet, a recovered connection) shows as a timestamp step of more
//! than 1.5 sample intervals and advances seq by the samples it spans, so
//! the engine imputes or resets over it as for every source. Holes are found
//! on the outlet's own timestamps, which a change in the clock-offset
//! estimate cannot move; `t_ns` is the timestamp plus liblsl's current
//! offset estimate (the local LSL clock), refreshed once per pull.
//!
//! Invariants: the decode thread never resolves or connects; a stream that
//! disappears is looked for again in the background (logged once per
//! outage); a stream whose channel count or format does not fit the model
//! is refused by name. The pull buffers are allocated once per inlet.

pub mod ffi;
pub mod voltage;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, Sender, TryRecvError};
use serde::{Deserialize, Serialize};
use tracing::{error, info, warn};

use super::{FrontendSlot, Sink, Source, SourceError};
use crate::frontend::FrontendConfig;
use ffi::{format, FfiError, Inlet, Lib};
use voltage::Voltage;

/// Samples pulled per chunk.
const CHUNK: usize = 256;

/// `[ingest.lsl]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LslSection {
    /// Stream name to resolve; empty = any name.
    pub name: String,
    /// Stream type to resolve (e.g. `SpikeCounts`, `EEG`); empty = any type.
    #[serde(rename = "type")]
    pub stream_type: String,
    /// Stream source_id to resolve; empty = any.
    pub source_id: String,
    /// `binned` (one sample = one timestep) or `voltage` (raw data through `[frontend]`).
    pub mode: String,
    /// Path of liblsl; empty = search the usual places and the pylsl wheel.
    pub library: Option<PathBuf>,
    /// How long start-up waits for the stream before going on and looking
    /// for it in the background (s).
    pub resolve_timeout_s: f64,
    /// Seconds of samples liblsl buffers for the inlet.
    pub max_buffered_s: u32,
}

impl Default for LslSection {
    fn default() -> Self {
        Self {
            name: "alternator-input".into(),
            stream_type: String::new(),
            source_id: String::new(),
            mode: "binned".into(),
            library: None,
            resolve_timeout_s: 5.0,
            max_buffered_s: 60,
        }
    }
}

/// liblsl or the stream could not be used.
#[derive(Debug, thiserror::Error)]
pub enum LslError {
    #[error(transparent)]
    Ffi(#[from] FfiError),
    #[error("LSL stream {name:?} has {got} channels; the model expects {expected}")]
    WrongChannels { name: String, expected: usize, got: usize },
    #[error("LSL stream {name:?} has channel format {format}; expected float32, double64, int16, int32 or int8")]
    WrongFormat { name: String, format: &'static str },
    #[error("cannot start the LSL resolver thread: {0}")]
    Thread(std::io::Error),
    #[error("LSL stream {name:?} has an irregular rate; voltage mode needs its nominal sample rate")]
    IrregularRate { name: String },
    #[error(transparent)]
    Frontend(#[from] crate::frontend::FrontendError),
}

impl LslSection {
    /// The stream query as an address: `lsl:name=X;type=Y;source_id=Z`.
    pub fn address(&self) -> String {
        let parts: Vec<String> = [("name", &self.name), ("type", &self.stream_type), ("source_id", &self.source_id)]
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        format!("lsl:{}", parts.join(";"))
    }

    /// Sets the query from `lsl:name=X[;type=Y][;source_id=Z]` (`--ingest`);
    /// unknown keys are kept for [`Self::problems`] to name.
    pub fn set_address(&mut self, ep: &str) {
        let body = ep.strip_prefix("lsl:").unwrap_or(ep);
        self.name.clear();
        self.stream_type.clear();
        self.source_id.clear();
        for part in body.split(';').filter(|p| !p.is_empty()) {
            match part.split_once('=') {
                Some(("name", v)) => self.name = v.to_string(),
                Some(("type", v)) => self.stream_type = v.to_string(),
                Some(("source_id", v)) => self.source_id = v.to_string(),
                _ => self.name = format!("\u{0}{part}"),
            }
        }
    }

    /// The XPath predicate liblsl resolves.
    pub fn predicate(&self) -> String {
        let q = |s: &str| s.replace('\'', "");
        let mut p = Vec::new();
        for (k, v) in [("name", &self.name), ("type", &self.stream_type), ("source_id", &self.source_id)] {
            if !v.is_empty() {
                p.push(format!("{k}='{}'", q(v)));
            }
        }
        if p.is_empty() {
            "count(name)>0".into()
        } else {
            p.join(" and ")
        }
    }

    /// Every problem, each with its dotted field path (`prefix` + field).
    pub fn problems(&self, prefix: &str) -> Vec<String> {
        let mut e = Vec::new();
        if let Some(bad) = self.name.strip_prefix('\u{0}') {
            e.push(format!(
                "{prefix}name: {bad:?} in the LSL address; expected lsl:name=NAME[;type=TYPE][;source_id=ID]"
            ));
        }
        if self.name.is_empty() && self.stream_type.is_empty() && self.source_id.is_empty() {
            e.push(format!("{prefix}name: name, type and source_id are all empty; expected at least one"));
        }
        if self.mode != "binned" && self.mode != "voltage" {
            e.push(format!("{prefix}mode: {:?} is not a mode; expected \"binned\" or \"voltage\"", self.mode));
        }
        if !(self.resolve_timeout_s >= 0.0 && self.resolve_timeout_s <= 600.0) {
            e.push(format!("{prefix}resolve_timeout_s: {} must be in [0, 600]", self.resolve_timeout_s));
        }
        if !(1..=3600).contains(&self.max_buffered_s) {
            e.push(format!("{prefix}max_buffered_s: {} must be in 1..=3600", self.max_buffered_s));
        }
        e
    }
}

/// An opened inlet and what the decode thread needs to know of it.
struct Connected {
    inlet: Inlet,
    /// Seconds between samples (nominal rate, else the bin width).
    interval_s: f64,
    /// Nominal rate (0 = irregular).
    srate: f64,
    name: String,
}

/// What the resolver hands over: an inlet, or why a stream was refused.
type Resolved = Result<Connected, LslError>;

/// Resolves the stream and opens an inlet whenever asked, on its own thread.
fn spawn_resolver(
    lib: Arc<Lib>,
    cfg: LslSection,
    channels: usize,
    bin_seconds: f64,
) -> Result<(Sender<()>, Receiver<Resolved>), LslError> {
    let (req_tx, req_rx) = bounded::<()>(1);
    let (out_tx, out_rx) = bounded(1);
    let pred = cfg.predicate();
    std::thread::Builder::new()
        .name("lsl-resolver".into())
        .spawn(move || {
            while req_rx.recv().is_ok() {
                loop {
                    match lib.resolve(&pred, 1.0) {
                        Ok(Some(info)) => {
                            let voltage = cfg.mode == "voltage";
                            let r = connect(&info, channels, bin_seconds, cfg.max_buffered_s, voltage);
                            let refused = r.is_err();
                            if out_tx.send(r).is_err() {
                                return;
                            }
                            if !refused {
                                break;
                            }
                            std::thread::sleep(Duration::from_secs(1));
                        }
                        Ok(None) => {}
                        Err(e) => {
                            let _ = out_tx.send(Err(e.into()));
                            return;
                        }
                    }
                    // The source dropped its end: stop looking.
                    if let Err(TryRecvError::Disconnected) = req_rx.try_recv() {
                        return;
                    }
                }
            }
        })
        .map_err(LslError::Thread)?;
    req_tx.send(()).expect("invariant: the resolver waits for its first request");
    Ok((req_tx, out_rx))
}

/// Checks a resolved stream against the model and opens an inlet on it.
fn connect(
    info: &ffi::StreamInfo,
    channels: usize,
    bin_seconds: f64,
    buffered_s: u32,
    voltage: bool,
) -> Result<Connected, LslError> {
    let name = info.name();
    let got = info.channels();
    if got != channels {
        return Err(LslError::WrongChannels { name, expected: channels, got });
    }
    let f = info.format();
    if !matches!(f, format::FLOAT32 | format::DOUBLE64 | format::INT16 | format::INT32 | format::INT8) {
        return Err(LslError::WrongFormat { name, format: format::name(f) });
    }
    let srate = info.nominal_srate();
    if voltage && srate <= 0.0 {
        return Err(LslError::IrregularRate { name });
    }
    let inlet = info.inlet(buffered_s as i32, 5.0)?;
    let interval_s = if srate > 0.0 { 1.0 / srate } else { bin_seconds };
    info!(stream = %name, source_id = %info.source_id(), channels = got, format = format::name(f), srate,
        "LSL stream connected.");
    Ok(Connected { inlet, interval_s, srate, name })
}

/// The LSL source.
pub struct LslSource {
    endpoint: String,
    conn: Option<Connected>,
    req: Sender<()>,
    found: Receiver<Resolved>,
    /// The last refusal logged (logged once until it changes).
    refusal: Option<String>,
    data: Vec<f32>,
    ts: Vec<f64>,
    /// seq of the next sample.
    next_seq: u64,
    /// Timestamp of the last sample (s).
    last_ts: Option<f64>,
    /// Connections lost so far.
    pub outages: u64,
    /// Voltage mode: the front end's settings, and the front end once the rate is known.
    frontend: Option<(FrontendConfig, f64, FrontendSlot)>,
    voltage: Option<Voltage>,
}

impl LslSource {
    /// Loads liblsl and starts looking for the stream; waits up to
    /// `resolve_timeout_s` for it (a stream that does not fit the model
    /// found in that time is a start-up error).
    pub fn open(
        cfg: &LslSection,
        frontend: &FrontendConfig,
        channels: usize,
        bin_seconds: f64,
        slot: FrontendSlot,
    ) -> Result<Self, LslError> {
        let lib = Lib::load(cfg.library.as_deref())?;
        info!(library = %lib.path(), version = lib.version(), "liblsl loaded.");
        let (req, found) = spawn_resolver(lib, cfg.clone(), channels, bin_seconds)?;
        let mut s = Self {
            endpoint: cfg.address(),
            conn: None,
            req,
            found,
            refusal: None,
            data: vec![0.0; CHUNK * channels],
            ts: vec![0.0; CHUNK],
            next_seq: 0,
            last_ts: None,
            outages: 0,
            frontend: (cfg.mode == "voltage").then(|| (frontend.clone(), bin_seconds, slot)),
            voltage: None,
        };
        match s.found.recv_timeout(Duration::from_secs_f64(cfg.resolve_timeout_s)) {
            Ok(Ok(c)) => s.attach(c)?,
            Ok(Err(e)) => return Err(e),
            Err(_) => warn!(stream = %s.endpoint, timeout_s = cfg.resolve_timeout_s,
                "LSL stream not found yet; still looking for it in the background."),
        }
        Ok(s)
    }

    /// Uses a connected inlet; voltage mode builds the front end for its
    /// rate (kept, thresholds and all, while the rate stays the same).
    fn attach(&mut self, c: Connected) -> Result<(), LslError> {
        if let Some((cfg, bin_s, slot)) = &self.frontend {
            if self.voltage.as_ref().is_none_or(|v| v.rate_hz() != c.srate) {
                let ch = c.inlet.channels();
                self.voltage = Some(Voltage::new(cfg, ch, c.srate, *bin_s, slot.clone())?);
                self.next_seq = 0;
                self.last_ts = None;
            }
        }
        self.conn = Some(c);
        Ok(())
    }

    /// Takes a newly connected inlet from the resolver, if any.
    fn adopt(&mut self) {
        let got = match self.found.try_recv() {
            Ok(Ok(c)) => {
                let name = c.name.clone();
                self.attach(c).map_err(|e| (name, e))
            }
            Ok(Err(e)) => Err((String::new(), e)),
            Err(TryRecvError::Empty) | Err(TryRecvError::Disconnected) => return,
        };
        match got {
            Ok(()) => self.refusal = None,
            Err((_, e)) => {
                let msg = e.to_string();
                if self.refusal.as_deref() != Some(msg.as_str()) {
                    error!(stream = %self.endpoint, error = %msg, "LSL stream refused; still looking for a fitting one.");
                    self.refusal = Some(msg);
                }
            }
        }
    }

    fn lost(&mut self, code: i32) {
        self.conn = None;
        self.outages += 1;
        warn!(stream = %self.endpoint, code, "LSL stream lost; looking for it again (logged once per outage).");
        let _ = self.req.try_send(());
    }

    fn deliver(&mut self, row_at: usize, ts: f64, sink: &mut dyn Sink, recv_at: Instant) {
        let interval = self.conn.as_ref().map(|c| c.interval_s).unwrap_or(1.0);
        let seq = seq_step(&mut self.next_seq, &mut self.last_ts, ts, interval);
        let c = sink.channels();
        let offset = self.conn.as_ref().map(|c| c.inlet.offset_s()).unwrap_or(0.0);
        let t_ns = ((ts + offset).max(0.0) * 1e9) as u64;
        let row = &self.data[row_at * c..(row_at + 1) * c];
        match self.voltage.as_mut() {
            Some(v) => v.push(seq, t_ns, row, sink, recv_at),
            None => sink.timestep(seq, t_ns, row, recv_at),
        }
    }

    /// One sample with the timeout, then what is already there.
    fn pull(&mut self, timeout: Duration, sink: &mut dyn Sink) -> Result<bool, i32> {
        let c = sink.channels();
        let conn = self.conn.as_mut().expect("invariant: pull only while connected");
        let Some(ts0) = conn.inlet.pull_sample(&mut self.data[..c], timeout.as_secs_f64())? else {
            return Ok(false);
        };
        let recv_at = Instant::now();
        conn.inlet.refresh_offset();
        self.deliver(0, ts0, sink, recv_at);
        loop {
            let conn = self.conn.as_mut().expect("invariant: pull only while connected");
            let n = conn.inlet.pull_chunk(&mut self.data, &mut self.ts)?;
            for k in 0..n {
                let ts = self.ts[k];
                self.deliver(k, ts, sink, recv_at);
            }
            if n < CHUNK {
                if let Some(v) = self.voltage.as_mut() {
                    v.flush(sink, recv_at);
                }
                return Ok(true);
            }
        }
    }
}

impl Source for LslSource {
    fn poll(&mut self, timeout: Duration, sink: &mut dyn Sink) -> Result<bool, SourceError> {
        if self.conn.is_none() {
            self.adopt();
            if self.conn.is_none() {
                std::thread::sleep(timeout);
                return Ok(false);
            }
        }
        match self.pull(timeout, sink) {
            Ok(got) => Ok(got),
            Err(code) => {
                self.lost(code);
                Ok(false)
            }
        }
    }

    fn endpoint(&self) -> &str {
        &self.endpoint
    }
}

/// seq of a sample stamped `ts` (s): the next one, past any hole of 1.5
/// sample intervals or more.
fn seq_step(next: &mut u64, last_ts: &mut Option<f64>, ts: f64, interval_s: f64) -> u64 {
    if let Some(prev) = *last_ts {
        let steps = (ts - prev) / interval_s;
        if steps >= 1.5 {
            *next += (steps.round() as u64).saturating_sub(1);
        }
    }
    *last_ts = Some(ts);
    let s = *next;
    *next += 1;
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_into_the_query_and_back() {
        let mut s = LslSection::default();
        s.set_address("lsl:name=Rig A;type=Counts");
        assert_eq!((s.name.as_str(), s.stream_type.as_str(), s.source_id.as_str()), ("Rig A", "Counts", ""));
        assert_eq!(s.address(), "lsl:name=Rig A;type=Counts");
        assert_eq!(s.predicate(), "name='Rig A' and type='Counts'");
        assert!(s.problems("ingest.lsl.").is_empty());
        s.set_address("lsl:nme=x");
        assert!(s.problems("ingest.lsl.")[0].starts_with("ingest.lsl.name"), "{:?}", s.problems(""));
    }

    #[test]
    fn a_timestamp_step_advances_seq_by_the_samples_it_spans() {
        let (mut next, mut last) = (0, None);
        let seqs: Vec<u64> = [0.0, 0.02, 0.04, 0.12, 0.14, 0.165, 0.18]
            .iter()
            .map(|&t| seq_step(&mut next, &mut last, t, 0.02))
            .collect();
        assert_eq!(seqs, vec![0, 1, 2, 6, 7, 8, 9], "jitter below 1.5 intervals is no hole");
    }
}
