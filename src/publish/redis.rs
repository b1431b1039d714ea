//! Decoded behaviour as a Redis stream, the output of a BRAND-style node:
//! one `XADD KEY MAXLEN ~ N * samples <f32 LE> i <u64 LE> ts <u64 LE> sync
//! <json>` per decoded timestep, `i` = seq, `ts` = this node's monotonic
//! clock (ns) when the entry is written (BRAND's rule: every node stamps its
//! own writes), `sync` = the input entry's `sync` handed on ("{}" when the
//! source has none), plus `flags` (protocol-v1 flag bits, u16 LE) so
//! consumers can tell imputed and reset outputs.
//!
//! Invariants: runs on the decode thread and never stops it. The command is
//! packed into a reused buffer; while the server is away outputs are counted
//! as lost, the outage is logged once, and reconnection is tried from
//! housekeeping with back-off (each attempt bounded by a short timeout).

use std::time::{Duration, Instant};

use redis::ConnectionLike;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use super::{Decoded, OutputSink};
use crate::ingest::redis::{check_url, is_connection_error, pack, Backoff, RedisTarget};

/// `[publish.redis]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisOutputSection {
    /// Write decoded behaviour to a Redis stream.
    pub enabled: bool,
    /// Server; empty = the input's server (`ingest.redis.url`, with its
    /// user and password) when `ingest.kind = "redis"`.
    pub url: String,
    /// `AUTH` password when `url` is given; empty = none.
    pub password: String,
    /// `AUTH` user name when `url` is given; empty = the default user.
    pub username: String,
    /// Output stream key.
    pub stream: String,
    /// Approximate length the stream is trimmed to (`MAXLEN ~`).
    pub maxlen: u64,
    /// Time allowed for connecting and for each write (ms).
    pub timeout_ms: u64,
    /// Longest wait between reconnection attempts (ms).
    pub reconnect_max_ms: u64,
}

impl Default for RedisOutputSection {
    fn default() -> Self {
        Self {
            enabled: false,
            url: String::new(),
            password: String::new(),
            username: String::new(),
            stream: "decoded".into(),
            maxlen: 100_000,
            timeout_ms: 200,
            reconnect_max_ms: 2000,
        }
    }
}

impl RedisOutputSection {
    /// Every problem, each with its dotted field path; `input_is_redis`
    /// says whether an empty `url` has a server to fall back on.
    pub fn problems(&self, prefix: &str, input_is_redis: bool) -> Vec<String> {
        let mut e = Vec::new();
        if !self.enabled {
            return e;
        }
        if self.url.is_empty() {
            if !input_is_redis {
                e.push(format!("{prefix}url: empty, and ingest.kind is not \"redis\"; expected redis://HOST:PORT"));
            }
        } else {
            check_url(&mut e, &format!("{prefix}url"), &self.url);
        }
        if self.stream.is_empty() {
            e.push(format!("{prefix}stream: must not be empty"));
        }
        if self.maxlen < 10 {
            e.push(format!("{prefix}maxlen: {} is too small; expected >= 10", self.maxlen));
        }
        if !(10..=10_000).contains(&self.timeout_ms) {
            e.push(format!("{prefix}timeout_ms: {} must be in 10..=10000", self.timeout_ms));
        }
        if !(50..=600_000).contains(&self.reconnect_max_ms) {
            e.push(format!("{prefix}reconnect_max_ms: {} must be in 50..=600000", self.reconnect_max_ms));
        }
        e
    }

    /// The server to write to: this section's, else the input's.
    pub fn target(&self, ingest: &crate::ingest::RedisSection) -> RedisTarget {
        if self.url.is_empty() {
            RedisTarget {
                url: ingest.url.clone(),
                username: ingest.username.clone(),
                password: ingest.password.clone(),
            }
        } else {
            RedisTarget { url: self.url.clone(), username: self.username.clone(), password: self.password.clone() }
        }
    }
}

/// The output stream writer.
pub struct RedisOutput {
    target: RedisTarget,
    conn: Option<redis::Connection>,
    stream: Vec<u8>,
    maxlen: Vec<u8>,
    timeout: Duration,
    backoff: Backoff,
    cmd: Vec<u8>,
    samples: Vec<u8>,
    endpoint: String,
    /// Outputs not written (server away or refusing).
    pub lost: u64,
    lost_at_outage: u64,
}

impl RedisOutput {
    /// Connects (a server that cannot be reached is a start-up error).
    pub fn open(
        cfg: &RedisOutputSection,
        ingest: &crate::ingest::RedisSection,
        out_dim: usize,
    ) -> Result<Self, redis::RedisError> {
        let target = cfg.target(ingest);
        let timeout = Duration::from_millis(cfg.timeout_ms);
        let conn = target.connect(timeout.max(Duration::from_secs(1)))?;
        conn.set_read_timeout(Some(timeout))?;
        conn.set_write_timeout(Some(timeout))?;
        Ok(Self {
            endpoint: format!("{}/{}", target.url.trim_end_matches('/'), cfg.stream),
            target,
            conn: Some(conn),
            stream: cfg.stream.as_bytes().to_vec(),
            maxlen: cfg.maxlen.to_string().into_bytes(),
            timeout,
            backoff: Backoff::new(Duration::from_millis(cfg.reconnect_max_ms)),
            cmd: Vec::with_capacity(512 + 4 * out_dim),
            samples: Vec::with_capacity(4 * out_dim),
            lost: 0,
            lost_at_outage: 0,
        })
    }

    /// `redis://HOST:PORT/STREAM`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    fn write(&mut self, d: &Decoded<'_>) -> redis::RedisResult<()> {
        self.samples.clear();
        for v in d.values {
            self.samples.extend_from_slice(&v.to_le_bytes());
        }
        let ts = crate::clock::monotonic_ns().to_le_bytes();
        let sync: &[u8] = if d.tag.is_empty() { b"{}" } else { d.tag };
        self.cmd.clear();
        pack(
            &mut self.cmd,
            &[
                b"XADD",
                &self.stream,
                b"MAXLEN",
                b"~",
                &self.maxlen,
                b"*",
                b"samples",
                &self.samples,
                b"i",
                &d.seq.to_le_bytes(),
                b"ts",
                &ts,
                b"sync",
                sync,
                b"flags",
                &d.flags.to_le_bytes(),
            ],
        );
        let conn = self.conn.as_mut().expect("invariant: write only while connected");
        conn.req_packed_command(&self.cmd).map(|_| ())
    }
}

impl OutputSink for RedisOutput {
    fn send(&mut self, d: &Decoded<'_>) -> bool {
        if self.conn.is_none() {
            self.lost += 1;
            return false;
        }
        match self.write(d) {
            Ok(()) => true,
            Err(e) => {
                self.lost += 1;
                if is_connection_error(&e) {
                    self.conn = None;
                    self.lost_at_outage = self.lost - 1;
                    self.backoff.failed(Instant::now());
                    warn!(redis = %self.endpoint, error = %e, "Redis output connection lost; outputs are lost until it is back (logged once per outage).");
                }
                false
            }
        }
    }

    fn tick(&mut self, now: Instant) {
        if self.conn.is_some() || !self.backoff.is_due(now) {
            return;
        }
        let attempt = self.target.connect(self.timeout).and_then(|c| {
            c.set_read_timeout(Some(self.timeout))?;
            c.set_write_timeout(Some(self.timeout))?;
            Ok(c)
        });
        match attempt {
            Ok(c) => {
                self.conn = Some(c);
                let down = self.backoff.recovered(Instant::now());
                info!(redis = %self.endpoint, down_ms = down.as_millis() as u64, lost = self.lost - self.lost_at_outage,
                    "Redis output connection restored.");
            }
            Err(_) => self.backoff.failed(now),
        }
    }

    fn name(&self) -> &'static str {
        "redis"
    }
}
