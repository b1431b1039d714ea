//! Redis Streams as a source, in the entry layout of BRAND's binning nodes:
//! each stream entry is one bin with fields `samples` (the counts as raw
//! little-endian numbers of a configured dtype, int8 by default), `i` (the
//! bin index, a u64 as 8 little-endian bytes), `ts` (the producer's
//! monotonic clock in ns, same encoding) and `sync` (a JSON object of source
//! clocks, handed on to the outputs untouched).
//!
//! The source runs on the decode thread: one `XREAD BLOCK` per poll, bounded
//! by the loop's timeout, after an explicit entry id (never `$`, which would
//! lose what arrives between two calls). `i` is the seq; the engine imputes
//! or resets over gaps as for every source.
//!
//! Invariants: a lost connection is never fatal. The source drops the
//! connection, logs the outage once, retries with doubling back-off (each
//! attempt bounded by 200 ms or `connect_timeout_ms`, whichever is less)
//! and on success rejoins the stream at its newest entry, so the hole is a
//! seq gap. Entries with a bad field are counted by reason and skipped.
//! The command buffer and the f32 row are preallocated; the Redis client's
//! reply parser allocates per reply (it has no borrowing parser), which is
//! the one allocation per entry.

use std::io::Write as _;
use std::time::{Duration, Instant};

use redis::{ConnectionLike, IntoConnectionInfo, Value};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use super::{IngestError, Sink, Source, SourceError};
use crate::wire::DropReason;

/// Longest a reconnection attempt may hold the decode thread.
const RECONNECT_ATTEMPT_MAX: Duration = Duration::from_millis(200);

/// `[ingest.redis]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisSection {
    /// Server, `redis://HOST:PORT[/DB]` (user and password may also be given
    /// here as `redis://USER:PASSWORD@HOST:PORT`). `rediss://` (TLS) is not
    /// supported by this build.
    pub url: String,
    /// `AUTH` password; empty = none (or the one in `url`).
    pub password: String,
    /// `AUTH` user name for Redis 6+ ACLs; empty = the default user.
    pub username: String,
    /// Input stream key.
    pub stream: String,
    /// Field holding the counts.
    pub samples_field: String,
    /// Little-endian dtype of `samples_field`: int8, uint8, int16, uint16,
    /// int32, uint32, float32 or float64.
    pub dtype: String,
    /// Field holding the bin index (the seq).
    pub index_field: String,
    /// Field holding the producer's timestamp in ns (becomes `t_ns`).
    pub time_field: String,
    /// Encoding of the index and time fields: `u64le` (8 raw bytes, as
    /// BRAND's nodes write them) or `ascii` (decimal text).
    pub int_encoding: String,
    /// Field handed on to the output stream untouched (BRAND's `sync`).
    pub sync_field: String,
    /// Most entries one `XREAD` returns.
    pub count: usize,
    /// Time allowed for connecting (and for each reconnection attempt) (ms).
    pub connect_timeout_ms: u64,
    /// Longest wait between reconnection attempts (ms); the wait doubles from 50 ms.
    pub reconnect_max_ms: u64,
}

impl Default for RedisSection {
    fn default() -> Self {
        Self {
            url: "redis://127.0.0.1:6379".into(),
            password: String::new(),
            username: String::new(),
            stream: "binned_spikes".into(),
            samples_field: "samples".into(),
            dtype: "int8".into(),
            index_field: "i".into(),
            time_field: "ts".into(),
            int_encoding: "u64le".into(),
            sync_field: "sync".into(),
            count: 64,
            connect_timeout_ms: 1000,
            reconnect_max_ms: 2000,
        }
    }
}

/// A numeric dtype of a `samples` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dtype {
    I8,
    U8,
    I16,
    U16,
    I32,
    U32,
    F32,
    F64,
}

impl Dtype {
    /// Every accepted name.
    pub const NAMES: [&'static str; 8] = ["int8", "uint8", "int16", "uint16", "int32", "uint32", "float32", "float64"];

    pub fn from_name(s: &str) -> Option<Self> {
        Some(match s {
            "int8" => Self::I8,
            "uint8" => Self::U8,
            "int16" => Self::I16,
            "uint16" => Self::U16,
            "int32" => Self::I32,
            "uint32" => Self::U32,
            "float32" => Self::F32,
            "float64" => Self::F64,
            _ => return None,
        })
    }

    /// Bytes per value.
    pub fn size(self) -> usize {
        match self {
            Self::I8 | Self::U8 => 1,
            Self::I16 | Self::U16 => 2,
            Self::I32 | Self::U32 | Self::F32 => 4,
            Self::F64 => 8,
        }
    }

    /// Decodes `raw` (exactly `out.len()` values) into `out`.
    pub fn decode(self, raw: &[u8], out: &mut [f32]) {
        let n = self.size();
        for (o, b) in out.iter_mut().zip(raw.chunks_exact(n)) {
            *o = match self {
                Self::I8 => b[0] as i8 as f32,
                Self::U8 => b[0] as f32,
                Self::I16 => i16::from_le_bytes([b[0], b[1]]) as f32,
                Self::U16 => u16::from_le_bytes([b[0], b[1]]) as f32,
                Self::I32 => i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f32,
                Self::U32 => u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f32,
                Self::F32 => f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
                Self::F64 => f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32,
            };
        }
    }
}

/// How `i` and `ts` are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntEncoding {
    U64Le,
    Ascii,
}

impl IntEncoding {
    pub fn from_name(s: &str) -> Option<Self> {
        match s {
            "u64le" => Some(Self::U64Le),
            "ascii" => Some(Self::Ascii),
            _ => None,
        }
    }

    /// Parses one field; None if it is not in this encoding.
    pub fn parse(self, raw: &[u8]) -> Option<u64> {
        match self {
            Self::U64Le => <[u8; 8]>::try_from(raw).ok().map(u64::from_le_bytes),
            Self::Ascii => std::str::from_utf8(raw).ok()?.trim().parse().ok(),
        }
    }
}

/// Problems of a Redis server address, with the field path.
pub fn check_url(e: &mut Vec<String>, field: &str, url: &str) {
    if url.starts_with("rediss://") {
        e.push(format!("{field}: {url:?}: TLS (rediss://) is not supported by this build; use redis:// (e.g. over an SSH tunnel or stunnel)"));
    } else if !url.starts_with("redis://") || redis::Client::open(url).is_err() {
        e.push(format!("{field}: {url:?} is not a Redis address; expected redis://HOST:PORT[/DB]"));
    }
}

impl RedisSection {
    /// Every problem, each with its dotted field path (`prefix` + field).
    pub fn problems(&self, prefix: &str) -> Vec<String> {
        let mut e = Vec::new();
        check_url(&mut e, &format!("{prefix}url"), &self.url);
        for (name, v) in
            [("stream", &self.stream), ("samples_field", &self.samples_field), ("index_field", &self.index_field)]
        {
            if v.is_empty() {
                e.push(format!("{prefix}{name}: must not be empty"));
            }
        }
        if Dtype::from_name(&self.dtype).is_none() {
            e.push(format!(
                "{prefix}dtype: {:?} is not a dtype; expected one of {}",
                self.dtype,
                Dtype::NAMES.join(", ")
            ));
        }
        if IntEncoding::from_name(&self.int_encoding).is_none() {
            e.push(format!("{prefix}int_encoding: {:?}; expected \"u64le\" or \"ascii\"", self.int_encoding));
        }
        if !(1..=10_000).contains(&self.count) {
            e.push(format!("{prefix}count: {} must be in 1..=10000", self.count));
        }
        if !(10..=60_000).contains(&self.connect_timeout_ms) {
            e.push(format!("{prefix}connect_timeout_ms: {} must be in 10..=60000", self.connect_timeout_ms));
        }
        if !(50..=600_000).contains(&self.reconnect_max_ms) {
            e.push(format!("{prefix}reconnect_max_ms: {} must be in 50..=600000", self.reconnect_max_ms));
        }
        e
    }
}

/// Connection settings shared by the Redis source and the output stream.
#[derive(Debug, Clone)]
pub struct RedisTarget {
    pub url: String,
    pub username: String,
    pub password: String,
}

impl RedisTarget {
    /// Connects (and authenticates) within `timeout`.
    pub fn connect(&self, timeout: Duration) -> redis::RedisResult<redis::Connection> {
        let mut info = self.url.as_str().into_connection_info()?;
        let mut settings = info.redis_settings().clone();
        if !self.password.is_empty() {
            settings = settings.set_password(&self.password);
        }
        if !self.username.is_empty() {
            settings = settings.set_username(&self.username);
        }
        info = info.set_redis_settings(settings);
        redis::Client::open(info)?.get_connection_with_timeout(timeout)
    }
}

/// Appends one RESP command (an array of bulk strings) to `buf`.
pub fn pack(buf: &mut Vec<u8>, args: &[&[u8]]) {
    let _ = write!(buf, "*{}\r\n", args.len());
    for a in args {
        let _ = write!(buf, "${}\r\n", a.len());
        buf.extend_from_slice(a);
        buf.extend_from_slice(b"\r\n");
    }
}

/// Reconnection back-off: doubling from 50 ms up to a maximum.
#[derive(Debug)]
pub struct Backoff {
    next_at: Option<Instant>,
    wait: Duration,
    max: Duration,
    /// Failed attempts in the current outage.
    pub attempts: u64,
    /// When the current outage began.
    pub since: Option<Instant>,
}

impl Backoff {
    pub fn new(max: Duration) -> Self {
        Self { next_at: None, wait: Duration::from_millis(50), max, attempts: 0, since: None }
    }

    /// True if an attempt is due at `now`.
    pub fn is_due(&self, now: Instant) -> bool {
        self.next_at.is_none_or(|t| now >= t)
    }

    /// Records a failed attempt (or the loss that starts an outage).
    pub fn failed(&mut self, now: Instant) {
        self.since.get_or_insert(now);
        self.attempts += 1;
        self.next_at = Some(now + self.wait);
        self.wait = (self.wait * 2).min(self.max);
    }

    /// Ends the outage; returns how long it lasted.
    pub fn recovered(&mut self, now: Instant) -> Duration {
        let d = self.since.map(|s| now.duration_since(s)).unwrap_or_default();
        *self = Self::new(self.max);
        d
    }
}

/// The fields the source reads, as bytes.
struct Fields {
    samples: Vec<u8>,
    index: Vec<u8>,
    time: Vec<u8>,
    sync: Vec<u8>,
}

/// The Redis Streams source.
pub struct RedisSource {
    target: RedisTarget,
    conn: Option<redis::Connection>,
    endpoint: String,
    stream: Vec<u8>,
    fields: Fields,
    dtype: Dtype,
    ints: IntEncoding,
    count: Vec<u8>,
    connect_timeout: Duration,
    backoff: Backoff,
    /// Id of the last entry read (`XREAD` continues after it).
    last_id: Vec<u8>,
    cmd: Vec<u8>,
    row: Vec<f32>,
    /// The read timeout currently set on the connection.
    read_timeout: Option<Duration>,
    /// Connection losses so far.
    pub outages: u64,
    /// A server error (not a lost connection) was logged and not yet cleared.
    error_logged: bool,
}

impl RedisSource {
    /// Connects and finds the stream's newest entry (errors name the server).
    pub fn open(cfg: &RedisSection, channels: usize) -> Result<Self, IngestError> {
        let target =
            RedisTarget { url: cfg.url.clone(), username: cfg.username.clone(), password: cfg.password.clone() };
        let dtype = Dtype::from_name(&cfg.dtype).ok_or_else(|| IngestError::Config(format!("dtype {}", cfg.dtype)))?;
        let ints = IntEncoding::from_name(&cfg.int_encoding)
            .ok_or_else(|| IngestError::Config(format!("int_encoding {}", cfg.int_encoding)))?;
        let mut s = Self {
            endpoint: format!("{}/{}", cfg.url.trim_end_matches('/'), cfg.stream),
            conn: None,
            stream: cfg.stream.as_bytes().to_vec(),
            fields: Fields {
                samples: cfg.samples_field.as_bytes().to_vec(),
                index: cfg.index_field.as_bytes().to_vec(),
                time: cfg.time_field.as_bytes().to_vec(),
                sync: cfg.sync_field.as_bytes().to_vec(),
            },
            dtype,
            ints,
            count: cfg.count.to_string().into_bytes(),
            connect_timeout: Duration::from_millis(cfg.connect_timeout_ms),
            backoff: Backoff::new(Duration::from_millis(cfg.reconnect_max_ms)),
            last_id: Vec::with_capacity(48),
            cmd: Vec::with_capacity(256),
            row: vec![0.0; channels],
            read_timeout: None,
            outages: 0,
            error_logged: false,
            target,
        };
        s.connect(s.connect_timeout)
            .map_err(|e| IngestError::Config(format!("cannot reach Redis at {} (ingest.redis.url): {e}", cfg.url)))?;
        Ok(s)
    }

    /// Connects and positions the reader after the stream's newest entry.
    fn connect(&mut self, timeout: Duration) -> redis::RedisResult<()> {
        let mut conn = self.target.connect(timeout)?;
        conn.set_read_timeout(Some(timeout))?;
        self.read_timeout = Some(timeout);
        self.cmd.clear();
        pack(&mut self.cmd, &[b"XREVRANGE", &self.stream, b"+", b"-", b"COUNT", b"1"]);
        let newest = conn.req_packed_command(&self.cmd)?;
        self.last_id.clear();
        match first_entry(&newest) {
            Some((id, _)) => self.last_id.extend_from_slice(id),
            None => self.last_id.extend_from_slice(b"0-0"),
        }
        self.conn = Some(conn);
        Ok(())
    }

    /// Between outages: one reconnection attempt when the back-off allows.
    fn reconnect(&mut self, now: Instant, budget: Duration) {
        if !self.backoff.is_due(now) {
            return;
        }
        // A refused connection fails at once; a black-holed host costs at
        // most this per attempt (the loop has no data to decode meanwhile).
        let t = self.connect_timeout.min(RECONNECT_ATTEMPT_MAX).max(budget.min(self.connect_timeout));
        match self.connect(t) {
            Ok(()) => {
                let attempts = self.backoff.attempts;
                let down = self.backoff.recovered(Instant::now());
                info!(redis = %self.endpoint, down_ms = down.as_millis() as u64, attempts,
                    "Redis connection restored; rejoined the stream at its newest entry.");
            }
            Err(_) => self.backoff.failed(now),
        }
    }

    /// Drops the connection after an I/O error (logged once per outage).
    fn lost(&mut self, e: &redis::RedisError) {
        self.conn = None;
        self.outages += 1;
        warn!(redis = %self.endpoint, error = %e, "Redis connection lost; reconnecting with back-off (logged once per outage).");
        self.backoff.failed(Instant::now());
    }

    fn read(&mut self, timeout: Duration) -> redis::RedisResult<Value> {
        let conn = self.conn.as_mut().expect("invariant: read only while connected");
        let want = Some(timeout + self.connect_timeout);
        if !timeout.is_zero() && self.read_timeout != want {
            conn.set_read_timeout(want)?;
            self.read_timeout = want;
        }
        self.cmd.clear();
        let ms = itoa_buf(timeout.as_millis().clamp(1, u64::MAX as u128) as u64);
        let block: &[u8] = ms.as_bytes();
        if timeout.is_zero() {
            pack(&mut self.cmd, &[b"XREAD", b"COUNT", &self.count, b"STREAMS", &self.stream, &self.last_id]);
        } else {
            pack(
                &mut self.cmd,
                &[b"XREAD", b"COUNT", &self.count, b"BLOCK", block, b"STREAMS", &self.stream, &self.last_id],
            );
        }
        conn.req_packed_command(&self.cmd)
    }

    /// Delivers every entry of an `XREAD` reply; the number delivered.
    fn deliver(&mut self, reply: &Value, sink: &mut dyn Sink) -> usize {
        let recv_at = Instant::now();
        let Some(entries) = stream_entries(reply) else { return 0 };
        let mut n = 0;
        for e in entries {
            let Some((id, fields)) = entry(e) else {
                sink.drop_one(DropReason::Malformed);
                continue;
            };
            self.last_id.clear();
            self.last_id.extend_from_slice(id);
            self.on_entry(fields, sink, recv_at);
            n += 1;
        }
        n
    }

    fn on_entry(&mut self, fields: &[Value], sink: &mut dyn Sink, recv_at: Instant) {
        let (mut samples, mut index, mut time, mut sync) = (None, None, None, None);
        for kv in fields.chunks_exact(2) {
            let (Value::BulkString(k), Value::BulkString(v)) = (&kv[0], &kv[1]) else { continue };
            let k = k.as_slice();
            if k == self.fields.samples.as_slice() {
                samples = Some(v.as_slice());
            } else if k == self.fields.index.as_slice() {
                index = Some(v.as_slice());
            } else if k == self.fields.time.as_slice() {
                time = Some(v.as_slice());
            } else if k == self.fields.sync.as_slice() {
                sync = Some(v.as_slice());
            }
        }
        let Some(seq) = index.and_then(|b| self.ints.parse(b)) else {
            return sink.drop_one(DropReason::Malformed);
        };
        let Some(raw) = samples else { return sink.drop_one(DropReason::Malformed) };
        if raw.len() != self.row.len() * self.dtype.size() {
            return sink.drop_one(DropReason::WrongChannels);
        }
        let t_ns = time.and_then(|b| self.ints.parse(b)).unwrap_or(0);
        self.dtype.decode(raw, &mut self.row);
        sink.tag(sync.unwrap_or(b""));
        sink.timestep(seq, t_ns, &self.row, recv_at);
    }
}

/// Decimal digits of `n` without a heap allocation.
struct Digits {
    buf: [u8; 20],
    len: usize,
}

impl Digits {
    fn as_bytes(&self) -> &[u8] {
        &self.buf[20 - self.len..]
    }
}

fn itoa_buf(mut n: u64) -> Digits {
    let mut d = Digits { buf: [0; 20], len: 0 };
    loop {
        d.len += 1;
        d.buf[20 - d.len] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return d;
        }
    }
}

/// The entries of a one-stream `XREAD` reply (None for a timeout's nil).
fn stream_entries(reply: &Value) -> Option<&[Value]> {
    let Value::Array(streams) = reply else { return None };
    let Value::Array(kv) = streams.first()? else { return None };
    match kv.get(1)? {
        Value::Array(entries) => Some(entries),
        _ => None,
    }
}

/// The first entry of an `XRANGE`/`XREVRANGE` reply.
fn first_entry(reply: &Value) -> Option<(&[u8], &[Value])> {
    match reply {
        Value::Array(entries) => entry(entries.first()?),
        _ => None,
    }
}

/// `[id, [field, value, ...]]`.
fn entry(v: &Value) -> Option<(&[u8], &[Value])> {
    let Value::Array(pair) = v else { return None };
    match (pair.first()?, pair.get(1)?) {
        (Value::BulkString(id), Value::Array(fields)) => Some((id, fields)),
        _ => None,
    }
}

impl Source for RedisSource {
    fn poll(&mut self, timeout: Duration, sink: &mut dyn Sink) -> Result<bool, SourceError> {
        if self.conn.is_none() {
            let now = Instant::now();
            self.reconnect(now, timeout);
            if self.conn.is_none() {
                // Keep the loop's cadence while the server is away.
                std::thread::sleep(timeout.min(self.backoff_wait(now)));
                return Ok(false);
            }
        }
        match self.read(timeout) {
            Ok(reply) => {
                self.error_logged = false;
                Ok(self.deliver(&reply, sink) > 0)
            }
            Err(e) if is_connection_error(&e) => {
                self.lost(&e);
                Ok(false)
            }
            Err(e) => {
                // A server-side refusal (WRONGTYPE, LOADING, NOAUTH, ...): the
                // connection is fine, the command is retried at the loop's pace.
                if !std::mem::replace(&mut self.error_logged, true) {
                    warn!(redis = %self.endpoint, error = %e, "Redis refused XREAD; retrying (logged once until it succeeds).");
                }
                std::thread::sleep(timeout);
                Ok(false)
            }
        }
    }

    fn endpoint(&self) -> &str {
        &self.endpoint
    }
}

impl RedisSource {
    fn backoff_wait(&self, now: Instant) -> Duration {
        self.backoff.next_at.map(|t| t.saturating_duration_since(now)).unwrap_or_default()
    }
}

/// Errors after which the connection is dropped and re-established (an I/O
/// timeout too: a reply may have been cut in the middle).
pub fn is_connection_error(e: &redis::RedisError) -> bool {
    e.is_io_error()
        || e.is_timeout()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_unrecoverable_error()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dtypes_decode_little_endian() {
        let mut out = [0f32; 2];
        Dtype::I8.decode(&[0xff, 3], &mut out);
        assert_eq!(out, [-1.0, 3.0]);
        Dtype::U16.decode(&[0x01, 0x02, 0xff, 0xff], &mut out);
        assert_eq!(out, [513.0, 65535.0]);
        Dtype::F64.decode(&[1.5f64.to_le_bytes(), (-2.0f64).to_le_bytes()].concat(), &mut out);
        assert_eq!(out, [1.5, -2.0]);
    }

    #[test]
    fn indices_parse_in_both_encodings() {
        assert_eq!(IntEncoding::U64Le.parse(&7u64.to_le_bytes()), Some(7));
        assert_eq!(IntEncoding::U64Le.parse(b"7"), None);
        assert_eq!(IntEncoding::Ascii.parse(b"1234"), Some(1234));
        assert_eq!(IntEncoding::Ascii.parse(b"x"), None);
    }

    #[test]
    fn commands_pack_as_resp_arrays() {
        let mut b = Vec::new();
        pack(&mut b, &[b"XADD", b"s", b"*"]);
        assert_eq!(b, b"*3\r\n$4\r\nXADD\r\n$1\r\ns\r\n$1\r\n*\r\n");
        assert_eq!(itoa_buf(0).as_bytes(), b"0");
        assert_eq!(itoa_buf(18446744073709551615).as_bytes(), b"18446744073709551615");
    }

    #[test]
    fn backoff_doubles_to_its_maximum_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(300));
        let t = Instant::now();
        assert!(b.is_due(t));
        b.failed(t);
        assert!(!b.is_due(t) && b.is_due(t + Duration::from_millis(50)));
        b.failed(t);
        b.failed(t);
        b.failed(t);
        assert_eq!(b.wait, Duration::from_millis(300));
        assert_eq!(b.attempts, 4);
        b.recovered(t);
        assert!(b.is_due(t) && b.attempts == 0 && b.since.is_none());
    }

    #[test]
    fn bad_settings_are_named() {
        let c = RedisSection { url: "rediss://x:1".into(), dtype: "int9".into(), count: 0, ..RedisSection::default() };
        let p = c.problems("ingest.redis.");
        for f in ["ingest.redis.url", "ingest.redis.dtype", "ingest.redis.count"] {
            assert!(p.iter().any(|s| s.starts_with(f)), "{f} missing from {p:?}");
        }
        assert!(RedisSection::default().problems("x.").is_empty());
    }
}
