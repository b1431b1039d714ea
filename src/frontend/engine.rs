//! [`FrontEnd`]: the streaming state of the front end and its per-block step.
//!
//! Layout: a block arrives channel-major (`block[c * n + i]`). It is cut into
//! chunks of at most [`CHUNK`] samples; each chunk is copied into a scratch
//! buffer grouped by [`LANES`] channels and sample-major inside a group
//! (`scratch[(g * CHUNK + i) * LANES + l]`), so the biquads, the detection and
//! the copy all run with channels as vector lanes. Every per-channel result
//! depends only on the samples in order, never on the chunking, so bins are
//! bit-identical for any split of the stream into blocks.
//!
//! Stream rules (also on [`FrontEnd::process`]):
//! - Calibration: when thresholds are neither given nor loaded, the first
//!   `calibration_s × rate` samples processed (whatever their absolute index)
//!   are collected; when the window is full, thresholds are set and held.
//!   Bins that end inside the window, and the bin in which it ends, are not
//!   emitted: an emitted bin was under detection for every sample.
//! - A forward hole (`first_sample > next_sample()`) and [`FrontEnd::restart`]
//!   reset the filter and detection state and drop the partial bin; the bins
//!   inside the hole are never emitted, and the first bin after it only if
//!   the stream resumes exactly on its first sample.
//! - After every reset the filter starts from its steady state for the first
//!   sample of each channel, so an electrode's DC offset does not ring.
//! - NaN/±inf samples are replaced by the channel's previous usable input (0
//!   before any) and counted in [`FrontEnd::non_finite_samples`]; finite
//!   inputs beyond ±[`INPUT_LIMIT_UV`] are clipped. The filter state therefore
//!   always stays finite.

use super::detect::{robust_rms, Detector};
use super::filter::{run_section_lanes, steady_states, Cascade, LANES};
use super::{bandpass_sos, load_thresholds, FrontendConfig, FrontendError};

/// Samples per internal chunk (sizes the scratch buffer).
pub const CHUNK: usize = 128;
/// Inputs are clipped to ±this many µV (10 V: beyond any amplifier's range).
pub const INPUT_LIMIT_UV: f32 = 1.0e7;
/// Largest calibration buffer accepted, in values (channels × samples; 1 GiB).
const MAX_CALIBRATION_VALUES: usize = 1 << 28;

/// Where the thresholds in use came from.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum ThresholdSource {
    Calibration,
    Config,
    File(std::path::PathBuf),
}

/// Streaming raw-voltage front end: band-pass, optional CAR, threshold
/// crossings, counts per bin. See the module docs for the stream rules.
#[derive(Debug, Clone)]
pub struct FrontEnd {
    pub(super) cfg: FrontendConfig,
    pub(super) channels: usize,
    pub(super) rate: f64,
    pub(super) bin_seconds: f64,
    pub(super) spb: u64,
    pub(super) sos: Vec<[f64; 6]>,
    pub(super) source: ThresholdSource,
    pub(super) has_thresholds: bool,
    pub(super) thresholds: Vec<f32>,
    pub(super) refractory: u32,
    cascade: Cascade,
    groups: usize,
    filt: Vec<[[f32; LANES]; 2]>,
    needs_settle: bool,
    last_x: Vec<f32>,
    scratch: Vec<f32>,
    car: Vec<f64>,
    det: Vec<Detector>,
    out: Vec<f32>,
    cal: Vec<f32>,
    cal_len: usize,
    cal_target: usize,
    next: u64,
    bin_ok: bool,
    non_finite: u64,
}

fn bad(what: &'static str, got: impl ToString, expected: impl ToString) -> FrontendError {
    FrontendError::BadStream { what, got: got.to_string(), expected: expected.to_string() }
}

/// Samples per bin for a rate and bin width, if the bin is a whole number of samples.
fn samples_per_bin(rate: f64, bin_seconds: f64) -> Result<u64, FrontendError> {
    if !(bin_seconds > 0.0 && bin_seconds.is_finite()) {
        return Err(bad("bin_seconds", bin_seconds, "a finite bin width > 0 s"));
    }
    let x = rate * bin_seconds;
    let s = x.round();
    if s < 1.0 || (x - s).abs() > 1e-6 {
        return Err(bad(
            "bin_seconds",
            format!("{bin_seconds} ({x} samples at {rate} Hz)"),
            "a bin of a whole number (>= 1) of samples",
        ));
    }
    Ok(s as u64)
}

/// Checks the stream against the config; returns samples per bin.
fn check_stream(cfg: &FrontendConfig, channels: usize, rate: f64, bin_seconds: f64) -> Result<u64, FrontendError> {
    let problems = cfg.problems("frontend.");
    if !problems.is_empty() {
        return Err(FrontendError::InvalidConfig { problems });
    }
    if channels == 0 || channels > 1 << 20 {
        return Err(bad("channels", channels, "1..=1048576"));
    }
    if !(rate > 0.0 && rate.is_finite()) {
        return Err(bad("sample_rate_hz", rate, "a finite rate > 0 Hz"));
    }
    if cfg.band_high_hz >= rate / 2.0 {
        return Err(bad(
            "frontend.band_high_hz",
            cfg.band_high_hz,
            format!("below the stream's Nyquist frequency {} Hz", rate / 2.0),
        ));
    }
    samples_per_bin(rate, bin_seconds)
}

/// The thresholds the config asks for: given, loaded, or none (calibrate).
fn initial_thresholds(
    cfg: &FrontendConfig,
    channels: usize,
) -> Result<(ThresholdSource, Option<Vec<f32>>), FrontendError> {
    let (source, t) = if !cfg.thresholds_uv.is_empty() {
        (ThresholdSource::Config, cfg.thresholds_uv.clone())
    } else if let Some(p) = &cfg.thresholds_from {
        (ThresholdSource::File(p.clone()), load_thresholds(p)?)
    } else {
        return Ok((ThresholdSource::Calibration, None));
    };
    if t.len() != channels {
        let source_name = match &source {
            ThresholdSource::File(p) => format!("{}:/frontend/thresholds", p.display()),
            _ => "frontend.thresholds_uv".to_string(),
        };
        return Err(FrontendError::ThresholdCount { source_name, expected: channels, got: t.len() });
    }
    Ok((source, Some(t)))
}

impl FrontEnd {
    /// A front end for `channels` channels at `sample_rate_hz`, binning
    /// `bin_seconds` (a whole number of samples). Loads `thresholds_from`
    /// if set. Allocates every buffer `process` will use.
    pub fn new(
        cfg: &FrontendConfig,
        channels: usize,
        sample_rate_hz: f64,
        bin_seconds: f64,
    ) -> Result<Self, FrontendError> {
        let spb = check_stream(cfg, channels, sample_rate_hz, bin_seconds)?;
        let (source, given) = initial_thresholds(cfg, channels)?;
        let cal_target =
            if given.is_some() { 0 } else { ((cfg.calibration_s * sample_rate_hz).round() as usize).max(1) };
        if cal_target.saturating_mul(channels) > MAX_CALIBRATION_VALUES {
            return Err(bad(
                "frontend.calibration_s",
                format!("{} s × {channels} channels", cfg.calibration_s),
                format!("a window of at most {MAX_CALIBRATION_VALUES} values (channels × samples)"),
            ));
        }
        let sos = bandpass_sos(cfg.filter_order, cfg.band_low_hz, cfg.band_high_hz, sample_rate_hz);
        let cascade = Cascade::new(&sos);
        let groups = channels.div_ceil(LANES);
        let mut fe = FrontEnd {
            refractory: (cfg.refractory_ms * sample_rate_hz / 1000.0).round() as u32,
            cfg: cfg.clone(),
            channels,
            rate: sample_rate_hz,
            bin_seconds,
            spb,
            filt: vec![[[0.0; LANES]; 2]; groups * sos.len()],
            sos,
            source,
            has_thresholds: false,
            thresholds: vec![0.0; channels],
            cascade,
            groups,
            needs_settle: true,
            last_x: vec![0.0; groups * LANES],
            scratch: vec![0.0; groups * CHUNK * LANES],
            car: vec![0.0; CHUNK],
            det: vec![Detector::new(); groups],
            out: vec![0.0; channels],
            cal: vec![0.0; cal_target * channels],
            cal_len: 0,
            cal_target,
            next: 0,
            bin_ok: false,
            non_finite: 0,
        };
        if let Some(t) = given {
            fe.set_thresholds(&t);
        }
        fe.bin_ok = fe.has_thresholds;
        Ok(fe)
    }

    /// Number of channels.
    pub fn channels(&self) -> usize {
        self.channels
    }

    /// Samples per bin `S`.
    pub fn samples_per_bin(&self) -> u64 {
        self.spb
    }

    /// Sample rate of the stream, Hz.
    pub fn sample_rate_hz(&self) -> f64 {
        self.rate
    }

    /// Next absolute sample index expected.
    pub fn next_sample(&self) -> u64 {
        self.next
    }

    /// Channel-samples that were NaN or ±inf (replaced by the channel's
    /// previous usable input) since construction.
    pub fn non_finite_samples(&self) -> u64 {
        self.non_finite
    }

    /// Thresholds in use (negative µV per channel); `None` while calibrating.
    pub fn thresholds(&self) -> Option<&[f32]> {
        self.has_thresholds.then_some(self.thresholds.as_slice())
    }

    /// The band-pass design, rows `b0 b1 b2 a0 a1 a2`, as scipy gives it.
    pub fn sos(&self) -> &[[f64; 6]] {
        &self.sos
    }

    /// Feeds `n` consecutive samples of every channel, channel-major
    /// (`block[c * n + i]`), the first with absolute index `first_sample`.
    ///
    /// `first_sample == next_sample()` continues the stream; a greater value
    /// is a hole: filter and detection state are reset (the filter restarts
    /// settled on the new first sample), the partial bin before the hole and
    /// the bins inside it are never emitted, and the bin in which the stream
    /// resumes is emitted only if it resumes on that bin's first sample. A
    /// smaller value is [`FrontendError::Backwards`] and changes nothing (the
    /// caller treats it as a restart, see [`Self::restart`]).
    ///
    /// Calls `emit(k, counts)` (`counts.len() == channels`) for every bin `k`
    /// completed by this block that was under detection for all its samples;
    /// bins that end inside the calibration window, or in which it ends, are
    /// not emitted. NaN/±inf samples are replaced by the channel's previous
    /// usable value and counted ([`Self::non_finite_samples`]). Never allocates.
    pub fn process(
        &mut self,
        first_sample: u64,
        block: &[f32],
        n: usize,
        emit: &mut dyn FnMut(u64, &[f32]),
    ) -> Result<(), FrontendError> {
        if block.len() != self.channels.saturating_mul(n) {
            return Err(FrontendError::BlockLength { expected: self.channels.saturating_mul(n), got: block.len() });
        }
        if first_sample < self.next {
            return Err(FrontendError::Backwards { expected: self.next, got: first_sample });
        }
        if n == 0 {
            return Ok(());
        }
        if first_sample > self.next {
            self.restart(first_sample);
        }
        let mut j = 0;
        while j < n {
            let m = CHUNK.min(n - j);
            self.load(block, n, j, m);
            self.filter(m);
            if self.cfg.common_average {
                self.common_average(m);
            }
            self.detect_and_bin(m, emit);
            j += m;
        }
        Ok(())
    }

    /// Forgets filter state, detection state and the partial bin; keeps the
    /// thresholds (and a calibration in progress). The next sample expected
    /// becomes `first_sample`; its bin is emitted only if `first_sample`
    /// starts it.
    pub fn restart(&mut self, first_sample: u64) {
        self.next = first_sample;
        self.needs_settle = true;
        for d in &mut self.det {
            d.forget();
            d.counts = [0.0; LANES];
        }
        self.bin_ok = self.has_thresholds && first_sample.is_multiple_of(self.spb);
    }

    fn set_thresholds(&mut self, t: &[f32]) {
        self.thresholds.copy_from_slice(t);
        for (c, &v) in t.iter().enumerate() {
            self.det[c / LANES].thr[c % LANES] = v;
        }
        self.has_thresholds = true;
    }

    /// Copies samples `j..j+m` of every channel into the scratch groups,
    /// sanitising them; settles the filter on the first one after a reset.
    fn load(&mut self, block: &[f32], n: usize, j: usize, m: usize) {
        for c in 0..self.channels {
            let (g, l) = (c / LANES, c % LANES);
            let dst = &mut self.scratch[g * CHUNK * LANES..][..m * LANES];
            let mut last = self.last_x[c];
            let mut bad = 0u64;
            for (i, &x) in block[c * n + j..][..m].iter().enumerate() {
                let ok = x.is_finite();
                bad += u64::from(!ok);
                last = if ok { x.clamp(-INPUT_LIMIT_UV, INPUT_LIMIT_UV) } else { last };
                dst[i * LANES + l] = last;
            }
            self.last_x[c] = last;
            self.non_finite += bad;
        }
        if self.needs_settle {
            self.settle();
        }
    }

    /// Steady filter state for the first sample now in the scratch buffer.
    fn settle(&mut self) {
        let ns = self.cascade.sections().len();
        for c in 0..self.channels {
            let (g, l) = (c / LANES, c % LANES);
            let x0 = self.scratch[g * CHUNK * LANES + l];
            for (s, v) in steady_states(self.cascade.sections(), x0).enumerate() {
                self.filt[g * ns + s][0][l] = v[0];
                self.filt[g * ns + s][1][l] = v[1];
            }
        }
        self.needs_settle = false;
    }

    fn filter(&mut self, m: usize) {
        let ns = self.cascade.sections().len();
        for g in 0..self.groups {
            let data = &mut self.scratch[g * CHUNK * LANES..][..m * LANES];
            for (s, sec) in self.cascade.sections().iter().enumerate() {
                run_section_lanes(sec, &mut self.filt[g * ns + s], data);
            }
        }
    }

    /// Subtracts from every channel the mean over channels, sample by sample
    /// (summed in channel order, in `f64`).
    fn common_average(&mut self, m: usize) {
        let car = &mut self.car[..m];
        car.iter_mut().for_each(|v| *v = 0.0);
        for c in 0..self.channels {
            let (g, l) = (c / LANES, c % LANES);
            let data = &self.scratch[g * CHUNK * LANES..][..m * LANES];
            for i in 0..m {
                car[i] += f64::from(data[i * LANES + l]);
            }
        }
        let inv = 1.0 / self.channels as f64;
        car.iter_mut().for_each(|v| *v *= inv);
        for g in 0..self.groups {
            let data = &mut self.scratch[g * CHUNK * LANES..][..m * LANES];
            for (x, &mu) in data.chunks_exact_mut(LANES).zip(car.iter()) {
                let mu = mu as f32;
                x.iter_mut().for_each(|v| *v -= mu);
            }
        }
    }

    /// Runs calibration or detection over the chunk in runs that never cross
    /// a bin boundary or the end of the calibration window; closes bins.
    fn detect_and_bin(&mut self, m: usize, emit: &mut dyn FnMut(u64, &[f32])) {
        let mut i = 0;
        while i < m {
            let to_bin_end = (self.spb - self.next % self.spb).min((m - i) as u64) as usize;
            let run = if self.has_thresholds {
                self.detect(i, to_bin_end);
                to_bin_end
            } else {
                self.calibrate(i, to_bin_end)
            };
            i += run;
            self.next += run as u64;
            if self.next.is_multiple_of(self.spb) {
                self.close_bin(emit);
            }
        }
    }

    fn detect(&mut self, i: usize, len: usize) {
        for (g, d) in self.det.iter_mut().enumerate() {
            let data = &self.scratch[(g * CHUNK + i) * LANES..][..len * LANES];
            d.run(data, self.refractory);
        }
    }

    /// Collects up to `len` samples into the window; sets the thresholds
    /// when it is full. Returns the samples consumed.
    fn calibrate(&mut self, i: usize, len: usize) -> usize {
        let take = len.min(self.cal_target - self.cal_len);
        for c in 0..self.channels {
            let (g, l) = (c / LANES, c % LANES);
            let src = &self.scratch[(g * CHUNK + i) * LANES..][..take * LANES];
            let dst = &mut self.cal[c * self.cal_target + self.cal_len..][..take];
            for (d, x) in dst.iter_mut().zip(src.chunks_exact(LANES)) {
                *d = x[l];
            }
        }
        self.cal_len += take;
        if self.cal_len == self.cal_target {
            self.finish_calibration();
        }
        take
    }

    /// Thresholds from the full window (reorders the window in place).
    fn finish_calibration(&mut self) {
        let k = self.cfg.threshold_k as f32;
        for c in 0..self.channels {
            let rms = robust_rms(&mut self.cal[c * self.cal_target..][..self.cal_target]);
            self.out[c] = -k * rms;
        }
        let t = std::mem::take(&mut self.out);
        self.set_thresholds(&t);
        self.out = t;
    }

    fn close_bin(&mut self, emit: &mut dyn FnMut(u64, &[f32])) {
        let k = self.next / self.spb - 1;
        if self.bin_ok {
            for (c, o) in self.out.iter_mut().enumerate() {
                *o = self.det[c / LANES].counts[c % LANES];
            }
            emit(k, &self.out);
        }
        for d in &mut self.det {
            d.counts = [0.0; LANES];
        }
        self.bin_ok = self.has_thresholds;
    }
}
