//! The on-the-wire frame format (protocol v1): parsing and encoding of frame
//! bodies, topic names and the drop-reason vocabulary. Pure functions over
//! byte slices; no I/O, no sockets. The full specification, with a worked
//! example, is `docs/PROTOCOL.md`.
//!
//! This module owns the whole format: constants, [`Topic`], [`Dtype`],
//! [`Header`], [`DropReason`], [`FrameError`], [`Frame`] and the header and
//! frame encoders and decoders. Its unit tests live in `tests.rs`.
//!
//! A body is a 32-byte little-endian [`Header`] followed by
//! `samples × channels` values in the header's [`Dtype`], sample-major.
//!
//! Invariants kept here:
//! - A [`Frame`] exists only if its body passed every check in
//!   [`Frame::parse`]: magic `ALTR`, version 1, a known dtype, `samples ≥ 1`,
//!   `channels ≥ 1`, and a payload of *exactly* `samples × channels ×
//!   dtype.size_bytes()` bytes. Its accessors therefore never fail on layout.
//! - The hot path allocates nothing: [`Frame::parse`] borrows the body,
//!   [`Frame::sample`] writes into a caller-owned slice, errors carry only
//!   plain integers, and [`encode_f32`] reuses the capacity of its output.
//! - Checks that need the model (channel count, finite values) are the
//!   caller's; this module only supplies the [`DropReason`] to count them under.

use std::fmt;

/// The four bytes every body starts with.
pub const MAGIC: [u8; 4] = *b"ALTR";
/// The only protocol version this build understands.
pub const VERSION: u8 = 1;
/// Length of the fixed header at the start of every body, in bytes.
pub const HEADER_LEN: usize = 32;
/// Output flag bit 0: this timestep was imputed (its input bin never arrived).
pub const FLAG_IMPUTED: u16 = 1;
/// Output flag bit 1: first output after the decoder state was reset.
pub const FLAG_RESET: u16 = 2;
/// Output flag bit 2: no input for longer than the watchdog's timeout; the
/// values are the configured safe output, not a decoded timestep (a
/// compatible extension of version 1: older readers see a reserved bit).
pub const FLAG_STALE: u16 = 4;

/// Ingest topic carrying observations (binned spike counts or features).
pub const TOPIC_SPIKES: &[u8] = b"spikes";
/// Ingest topic carrying the true behaviour for a seq, recorded for retraining.
pub const TOPIC_BEHAVIOR: &[u8] = b"behavior";
/// Output topic carrying decoded behaviour.
pub const TOPIC_DECODED: &[u8] = b"decoded";

// Byte offsets of the header fields.
const OFF_MAGIC: usize = 0;
const OFF_VERSION: usize = 4;
const OFF_DTYPE: usize = 5;
const OFF_FLAGS: usize = 6;
const OFF_SEQ: usize = 8;
const OFF_T_NS: usize = 16;
const OFF_CHANNELS: usize = 24;
const OFF_SAMPLES: usize = 28;

/// A multipart topic this protocol knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Topic {
    /// `spikes`: observations to decode.
    Spikes,
    /// `behavior`: ground-truth behaviour to record.
    Behavior,
    /// `decoded`: the daemon's output.
    Decoded,
}

impl Topic {
    /// Recognises a topic frame exactly (no prefix matching); `None` is a
    /// [`DropReason::BadTopic`].
    pub fn from_bytes(topic: &[u8]) -> Option<Topic> {
        match topic {
            TOPIC_SPIKES => Some(Topic::Spikes),
            TOPIC_BEHAVIOR => Some(Topic::Behavior),
            TOPIC_DECODED => Some(Topic::Decoded),
            _ => None,
        }
    }

    /// The topic's bytes as sent on the wire.
    pub const fn as_bytes(self) -> &'static [u8] {
        match self {
            Topic::Spikes => TOPIC_SPIKES,
            Topic::Behavior => TOPIC_BEHAVIOR,
            Topic::Decoded => TOPIC_DECODED,
        }
    }
}

/// Element type of a payload; the discriminant is the header's dtype byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Dtype {
    /// IEEE-754 binary32, little-endian.
    F32 = 1,
    /// Unsigned 16-bit integer, little-endian.
    U16 = 2,
    /// Unsigned 8-bit integer.
    U8 = 3,
    /// Signed 16-bit integer, little-endian.
    I16 = 4,
}

impl Dtype {
    /// Bytes per value.
    pub const fn size_bytes(self) -> usize {
        match self {
            Dtype::F32 => 4,
            Dtype::U16 | Dtype::I16 => 2,
            Dtype::U8 => 1,
        }
    }

    /// The dtype with wire code `code`, or `None` if the code is unknown.
    pub const fn from_u8(code: u8) -> Option<Dtype> {
        match code {
            1 => Some(Dtype::F32),
            2 => Some(Dtype::U16),
            3 => Some(Dtype::U8),
            4 => Some(Dtype::I16),
            _ => None,
        }
    }

    /// The wire code (inverse of [`Dtype::from_u8`]).
    pub const fn as_u8(self) -> u8 {
        self as u8
    }

    /// Lower-case name for logs and docs: `f32`, `u16`, `u8`, `i16`.
    pub const fn name(self) -> &'static str {
        match self {
            Dtype::F32 => "f32",
            Dtype::U16 => "u16",
            Dtype::U8 => "u8",
            Dtype::I16 => "i16",
        }
    }
}

/// The decoded 32-byte header. `seq` and `t_ns` are those of the first sample;
/// sample `i` has seq `seq + i` and the same `t_ns`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Protocol version (offset 4); [`VERSION`] on every valid frame.
    pub version: u8,
    /// Payload element type (offset 5).
    pub dtype: Dtype,
    /// Flag bits (offset 6): [`FLAG_IMPUTED`], [`FLAG_RESET`] on output;
    /// ignored on input.
    pub flags: u16,
    /// Sequence number of the first sample (offset 8), +1 per timestep.
    pub seq: u64,
    /// Rig acquisition time of the first sample in ns (offset 16); opaque,
    /// echoed back on output.
    pub t_ns: u64,
    /// Values per sample (offset 24).
    pub channels: u32,
    /// Timesteps in this message (offset 28), at least 1.
    pub samples: u32,
}

impl Header {
    /// The header of an outgoing frame carrying `n_values` values of
    /// `channels` each (`samples = n_values / channels`), no flags.
    pub fn for_values(dtype: Dtype, seq: u64, t_ns: u64, channels: u32, n_values: usize) -> Self {
        let samples = (n_values / channels.max(1) as usize) as u32;
        Self { version: VERSION, dtype, flags: 0, seq, t_ns, channels, samples }
    }

    /// `channels × samples`, or `None` if that overflows `usize`.
    pub fn values_len(&self) -> Option<usize> {
        (self.channels as usize).checked_mul(self.samples as usize)
    }

    /// Payload bytes this header announces, or `None` on overflow.
    pub fn payload_len(&self) -> Option<usize> {
        self.values_len()?.checked_mul(self.dtype.size_bytes())
    }
}

/// Why an ingest message was dropped; one counter per variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Body does not start with `ALTR`.
    BadMagic,
    /// Unsupported protocol version.
    BadVersion,
    /// Unknown dtype code.
    BadDtype,
    /// Body shorter than its header says (or shorter than a header).
    Truncated,
    /// Channel count differs from the model's (checked by the caller).
    WrongChannels,
    /// A NaN or infinite value (checked by the caller).
    NonFinite,
    /// Body longer than the configured `max_body_bytes`.
    TooLarge,
    /// Topic is not `spikes` or `behavior` (checked by the caller).
    BadTopic,
    /// Seq older than or equal to one already processed (checked by the caller).
    Duplicate,
    /// Anything else inconsistent: zero samples or channels, trailing bytes,
    /// size overflow, wrong number of message parts.
    Malformed,
    // Reasons of other sources (Open Ephys, ...), counted in the same table.
    /// A header that is not UTF-8 JSON of the expected shape.
    BadJson,
    /// A header without a field its message kind needs.
    MissingField,
    /// A payload whose length differs from what the header announces.
    SizeMismatch,
    /// A payload that is not a whole number of values.
    BadPayload,
    /// A channel number outside the stream.
    ChannelOutOfRange,
    /// The stream's sample rate changed (the stream is restarted).
    RateChanged,
    /// A block with no samples.
    EmptyBlock,
    /// A block before what its channel already delivered.
    OutOfOrder,
    /// An envelope this source does not know.
    UnknownEnvelope,
    /// A channel fell behind the others for longer than allowed; its bin was imputed.
    StalledChannel,
}

impl DropReason {
    /// Every reason, in [`DropReason::index`] order.
    pub const ALL: [DropReason; 20] = [
        DropReason::BadMagic,
        DropReason::BadVersion,
        DropReason::BadDtype,
        DropReason::Truncated,
        DropReason::WrongChannels,
        DropReason::NonFinite,
        DropReason::TooLarge,
        DropReason::BadTopic,
        DropReason::Duplicate,
        DropReason::Malformed,
        DropReason::BadJson,
        DropReason::MissingField,
        DropReason::SizeMismatch,
        DropReason::BadPayload,
        DropReason::ChannelOutOfRange,
        DropReason::RateChanged,
        DropReason::EmptyBlock,
        DropReason::OutOfOrder,
        DropReason::UnknownEnvelope,
        DropReason::StalledChannel,
    ];

    /// Stable snake_case name for metrics and logs.
    pub fn as_str(&self) -> &'static str {
        match self {
            DropReason::BadMagic => "bad_magic",
            DropReason::BadVersion => "bad_version",
            DropReason::BadDtype => "bad_dtype",
            DropReason::Truncated => "truncated",
            DropReason::WrongChannels => "wrong_channels",
            DropReason::NonFinite => "non_finite",
            DropReason::TooLarge => "too_large",
            DropReason::BadTopic => "bad_topic",
            DropReason::Duplicate => "duplicate",
            DropReason::Malformed => "malformed",
            DropReason::BadJson => "bad_json",
            DropReason::MissingField => "missing_field",
            DropReason::SizeMismatch => "size_mismatch",
            DropReason::BadPayload => "bad_payload",
            DropReason::ChannelOutOfRange => "channel_out_of_range",
            DropReason::RateChanged => "rate_changed",
            DropReason::EmptyBlock => "empty_block",
            DropReason::OutOfOrder => "out_of_order",
            DropReason::UnknownEnvelope => "unknown_envelope",
            DropReason::StalledChannel => "stalled_channel",
        }
    }

    /// Position in [`DropReason::ALL`] (declaration order), for the counter array.
    pub fn index(&self) -> usize {
        *self as usize
    }
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A frame body that failed validation, or a misuse of a valid [`Frame`].
/// Variants carry only integers, so building one never allocates.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// Body shorter than the 32-byte header.
    #[error("frame body is {got} bytes: expected at least {HEADER_LEN} (the header)")]
    TooShort {
        /// Body length received.
        got: usize,
    },
    /// First four bytes are not `ALTR`.
    #[error(
        "frame magic {:02x} {:02x} {:02x} {:02x} unrecognised: expected 41 4c 54 52 (\"ALTR\")",
        .got[0], .got[1], .got[2], .got[3]
    )]
    BadMagic {
        /// The four bytes received.
        got: [u8; 4],
    },
    /// Version byte is not [`VERSION`].
    #[error("frame version {got} unsupported: expected {VERSION}")]
    BadVersion {
        /// Version received.
        got: u8,
    },
    /// Dtype byte is not a known [`Dtype`].
    #[error("frame dtype {got} unknown: expected 1 (f32), 2 (u16), 3 (u8) or 4 (i16)")]
    BadDtype {
        /// Dtype code received.
        got: u8,
    },
    /// Header says `samples = 0`.
    #[error("frame has 0 samples: expected at least 1")]
    ZeroSamples,
    /// Header says `channels = 0`.
    #[error("frame has 0 channels: expected at least 1")]
    ZeroChannels,
    /// `samples × channels × dtype size` does not fit in `usize`.
    #[error(
        "frame announces {samples} samples × {channels} channels, \
         which overflows the addressable size: expected a payload that fits in memory"
    )]
    SizeOverflow {
        /// Channels in the header.
        channels: u32,
        /// Samples in the header.
        samples: u32,
    },
    /// Payload shorter than the header announces.
    #[error(
        "frame payload truncated: expected {expected} bytes (samples × channels × dtype size), \
         got {got}"
    )]
    Truncated {
        /// Payload bytes announced by the header.
        expected: usize,
        /// Payload bytes received.
        got: usize,
    },
    /// Payload longer than the header announces (trailing bytes).
    #[error(
        "frame payload has {got} bytes, more than announced: expected exactly {expected} \
         (samples × channels × dtype size)"
    )]
    LengthMismatch {
        /// Payload bytes announced by the header.
        expected: usize,
        /// Payload bytes received.
        got: usize,
    },
    /// Body longer than the configured limit.
    #[error("frame body is {got} bytes: expected at most {limit} (the configured limit)")]
    TooLarge {
        /// The limit passed to [`Frame::parse`].
        limit: usize,
        /// Body length received.
        got: usize,
    },
    /// The frame's channel count is not the one the caller needs.
    #[error("frame has {got} channels: expected {expected}")]
    WrongChannels {
        /// Channels the caller needs (its output slice length).
        expected: usize,
        /// Channels in the frame.
        got: usize,
    },
    /// [`Frame::sample`] was asked for a sample past the end.
    #[error("sample index {index} out of range: expected less than {samples} (samples in frame)")]
    SampleOutOfRange {
        /// Index requested.
        index: usize,
        /// Samples in the frame.
        samples: usize,
    },
}

impl FrameError {
    /// The counter this error is reported under.
    ///
    /// `TooShort` counts as `Truncated`; `LengthMismatch` (trailing bytes),
    /// `ZeroSamples`, `ZeroChannels`, `SizeOverflow` and `SampleOutOfRange`
    /// count as `Malformed`.
    pub fn reason(&self) -> DropReason {
        match self {
            FrameError::TooShort { .. } | FrameError::Truncated { .. } => DropReason::Truncated,
            FrameError::BadMagic { .. } => DropReason::BadMagic,
            FrameError::BadVersion { .. } => DropReason::BadVersion,
            FrameError::BadDtype { .. } => DropReason::BadDtype,
            FrameError::TooLarge { .. } => DropReason::TooLarge,
            FrameError::WrongChannels { .. } => DropReason::WrongChannels,
            FrameError::ZeroSamples
            | FrameError::ZeroChannels
            | FrameError::SizeOverflow { .. }
            | FrameError::LengthMismatch { .. }
            | FrameError::SampleOutOfRange { .. } => DropReason::Malformed,
        }
    }
}

#[inline]
fn read_u16(b: &[u8; HEADER_LEN], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

#[inline]
fn read_u32(b: &[u8; HEADER_LEN], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

#[inline]
fn read_u64(b: &[u8; HEADER_LEN], at: usize) -> u64 {
    let mut v = [0u8; 8];
    v.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(v)
}

/// Decodes and validates a header on its own: magic, version, dtype,
/// `samples ≥ 1`, `channels ≥ 1` (checked in that order). Does not look at
/// the payload; [`Frame::parse`] does that.
pub fn decode_header(b: &[u8; HEADER_LEN]) -> Result<Header, FrameError> {
    let magic = [b[OFF_MAGIC], b[OFF_MAGIC + 1], b[OFF_MAGIC + 2], b[OFF_MAGIC + 3]];
    if magic != MAGIC {
        return Err(FrameError::BadMagic { got: magic });
    }
    let version = b[OFF_VERSION];
    if version != VERSION {
        return Err(FrameError::BadVersion { got: version });
    }
    let code = b[OFF_DTYPE];
    let dtype = Dtype::from_u8(code).ok_or(FrameError::BadDtype { got: code })?;
    let header = Header {
        version,
        dtype,
        flags: read_u16(b, OFF_FLAGS),
        seq: read_u64(b, OFF_SEQ),
        t_ns: read_u64(b, OFF_T_NS),
        channels: read_u32(b, OFF_CHANNELS),
        samples: read_u32(b, OFF_SAMPLES),
    };
    if header.samples == 0 {
        return Err(FrameError::ZeroSamples);
    }
    if header.channels == 0 {
        return Err(FrameError::ZeroChannels);
    }
    Ok(header)
}

/// Writes `h` into `out` exactly as given (the version byte is not forced to
/// [`VERSION`], so tests can build bad frames).
pub fn encode_header(h: &Header, out: &mut [u8; HEADER_LEN]) {
    out[OFF_MAGIC..OFF_MAGIC + 4].copy_from_slice(&MAGIC);
    out[OFF_VERSION] = h.version;
    out[OFF_DTYPE] = h.dtype.as_u8();
    out[OFF_FLAGS..OFF_FLAGS + 2].copy_from_slice(&h.flags.to_le_bytes());
    out[OFF_SEQ..OFF_SEQ + 8].copy_from_slice(&h.seq.to_le_bytes());
    out[OFF_T_NS..OFF_T_NS + 8].copy_from_slice(&h.t_ns.to_le_bytes());
    out[OFF_CHANNELS..OFF_CHANNELS + 4].copy_from_slice(&h.channels.to_le_bytes());
    out[OFF_SAMPLES..OFF_SAMPLES + 4].copy_from_slice(&h.samples.to_le_bytes());
}

/// A validated, borrowed view of one frame body. See [`Frame::parse`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Frame<'a> {
    /// The decoded header.
    pub header: Header,
    payload: &'a [u8],
}

impl<'a> Frame<'a> {
    /// Validates `body` and borrows it. Checks, in order: length ≤
    /// `max_body_bytes` (`TooLarge`), length ≥ 32 (`TooShort`), magic,
    /// version, dtype, samples ≥ 1, channels ≥ 1, size overflow, and a payload
    /// of exactly `samples × channels × dtype size` bytes (`Truncated` if
    /// shorter, `LengthMismatch` if longer). Allocates nothing.
    pub fn parse(body: &'a [u8], max_body_bytes: usize) -> Result<Frame<'a>, FrameError> {
        if body.len() > max_body_bytes {
            return Err(FrameError::TooLarge { limit: max_body_bytes, got: body.len() });
        }
        let (head, payload) = match body.split_first_chunk::<HEADER_LEN>() {
            Some(split) => split,
            None => return Err(FrameError::TooShort { got: body.len() }),
        };
        let header = decode_header(head)?;
        let expected = header
            .payload_len()
            .ok_or(FrameError::SizeOverflow { channels: header.channels, samples: header.samples })?;
        let got = payload.len();
        if got < expected {
            return Err(FrameError::Truncated { expected, got });
        }
        if got > expected {
            return Err(FrameError::LengthMismatch { expected, got });
        }
        Ok(Frame { header, payload })
    }

    /// Converts sample `i` to `f32` into `out`, whose length must equal the
    /// frame's channel count (else `WrongChannels`, with `expected =
    /// out.len()`). Integer dtypes convert exactly; f32 values are copied
    /// as-is, NaN and infinities included (finiteness is the caller's check).
    /// Allocates nothing.
    pub fn sample(&self, i: usize, out: &mut [f32]) -> Result<(), FrameError> {
        let channels = self.header.channels as usize;
        let samples = self.header.samples as usize;
        if out.len() != channels {
            return Err(FrameError::WrongChannels { expected: out.len(), got: channels });
        }
        if i >= samples {
            return Err(FrameError::SampleOutOfRange { index: i, samples });
        }
        // In range: parse guaranteed payload.len() == samples * channels * size.
        let size = self.header.dtype.size_bytes();
        let row = &self.payload[i * channels * size..(i + 1) * channels * size];
        let pairs = out.iter_mut().zip(row.chunks_exact(size));
        match self.header.dtype {
            Dtype::F32 => pairs.for_each(|(o, c)| *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
            Dtype::U16 => pairs.for_each(|(o, c)| *o = f32::from(u16::from_le_bytes([c[0], c[1]]))),
            Dtype::U8 => pairs.for_each(|(o, c)| *o = f32::from(c[0])),
            Dtype::I16 => pairs.for_each(|(o, c)| *o = f32::from(i16::from_le_bytes([c[0], c[1]]))),
        }
        Ok(())
    }

    /// Sequence number of sample `i` (`header.seq + i`, wrapping).
    pub fn seq_of(&self, i: usize) -> u64 {
        self.header.seq.wrapping_add(i as u64)
    }

    /// The raw payload bytes (`samples × channels` values, sample-major).
    pub fn payload(&self) -> &'a [u8] {
        self.payload
    }
}

/// Clears `out` and writes a version-1 f32 frame: header + `values`, with
/// `samples = values.len() / channels`. Reuses `out`'s capacity, so once it
/// has grown to the output size this never allocates.
///
/// Panics (a caller bug) if `channels` is 0, `values` is empty, or
/// `values.len()` is not a multiple of `channels`.
pub fn encode_f32(out: &mut Vec<u8>, seq: u64, t_ns: u64, flags: u16, channels: u32, values: &[f32]) {
    assert!(
        channels > 0 && !values.is_empty() && values.len().is_multiple_of(channels as usize),
        "invariant: encode_f32 needs values.len() ({}) to be a non-zero multiple of channels ({})",
        values.len(),
        channels
    );
    let samples =
        u32::try_from(values.len() / channels as usize).expect("invariant: encode_f32 sample count fits in u32");
    let header = Header { version: VERSION, dtype: Dtype::F32, flags, seq, t_ns, channels, samples };
    let mut head = [0u8; HEADER_LEN];
    encode_header(&header, &mut head);
    out.clear();
    out.reserve(HEADER_LEN + 4 * values.len());
    out.extend_from_slice(&head);
    for v in values {
        out.extend_from_slice(&v.to_le_bytes());
    }
}

/// Clears `out` and writes `header` + `values` converted to `header.dtype`:
/// f32 as-is; integer dtypes rounded to nearest (halves away from zero) and
/// saturated to the type's range, NaN → 0. The header is written as given.
/// For rigs, simulators and tests; the daemon's output uses [`encode_f32`].
///
/// Panics (a caller bug) if `values.len() != channels × samples`.
pub fn encode_frame(out: &mut Vec<u8>, header: &Header, values: &[f32]) {
    assert!(
        header.values_len() == Some(values.len()),
        "invariant: encode_frame needs values.len() ({}) == channels ({}) × samples ({})",
        values.len(),
        header.channels,
        header.samples
    );
    let mut head = [0u8; HEADER_LEN];
    encode_header(header, &mut head);
    out.clear();
    out.reserve(HEADER_LEN + header.dtype.size_bytes() * values.len());
    out.extend_from_slice(&head);
    for &v in values {
        // `as` from float to integer saturates and maps NaN to 0.
        match header.dtype {
            Dtype::F32 => out.extend_from_slice(&v.to_le_bytes()),
            Dtype::U16 => out.extend_from_slice(&(v.round() as u16).to_le_bytes()),
            Dtype::U8 => out.push(v.round() as u8),
            Dtype::I16 => out.extend_from_slice(&(v.round() as i16).to_le_bytes()),
        }
    }
}

#[cfg(test)]
mod tests;
