//! A subscriber for the daemon's decoded output, used by the demo, the
//! benchmark and the tests (and a template for lab clients in Rust).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use anyhow::Context;

use crate::clock::monotonic_ns;
use crate::matrix::Matrix;
use crate::wire::{Frame, FLAG_IMPUTED, FLAG_STALE};

/// One received output frame.
#[derive(Debug, Clone, PartialEq)]
pub struct Received {
    pub seq: u64,
    pub flags: u16,
    pub t_ns: u64,
    pub values: Vec<f32>,
    /// Send (the replayer's `t_ns`) → receipt, nanoseconds; meaningful when
    /// the sender runs in this process (same monotonic clock).
    pub e2e_ns: u64,
}

/// Subscribes to `endpoint` and collects decoded frames (one per timestep;
/// the watchdog's stale frames are skipped) on a thread until
/// `stop` is set. Prints every `print_every`-th seq (0 = never), next to
/// `truth` when given.
pub fn collect_outputs(
    ctx: &zmq::Context,
    endpoint: &str,
    stop: Arc<AtomicBool>,
    print_every: u64,
    truth: Option<Matrix>,
) -> anyhow::Result<JoinHandle<Vec<Received>>> {
    let sub = ctx.socket(zmq::SUB)?;
    sub.set_rcvhwm(0)?;
    sub.connect(endpoint).with_context(|| format!("connecting to {endpoint}"))?;
    sub.set_subscribe(b"")?;
    sub.set_rcvtimeo(50)?;
    let h = std::thread::Builder::new().name("output-subscriber".into()).spawn(move || {
        let mut out = Vec::new();
        let mut drain_after_stop = false;
        loop {
            if stop.load(Ordering::Relaxed) {
                if drain_after_stop {
                    break;
                }
                drain_after_stop = true;
            }
            let Ok(parts) = sub.recv_multipart(0) else { continue };
            drain_after_stop = false;
            let now = monotonic_ns();
            if parts.len() != 2 {
                continue;
            }
            let Ok(f) = Frame::parse(&parts[1], 1 << 20) else { continue };
            if f.header.flags & FLAG_STALE != 0 {
                continue; // the watchdog's safe output while input is stopped, not a timestep
            }
            let mut v = vec![0f32; f.header.channels as usize];
            if f.sample(0, &mut v).is_err() {
                continue;
            }
            let seq = f.header.seq;
            if print_every > 0 && seq % print_every == 0 {
                let dec: Vec<String> = v.iter().map(|x| format!("{x:7.3}")).collect();
                let tru = truth
                    .as_ref()
                    .filter(|t| (seq as usize) < t.rows)
                    .map(|t| t.row(seq as usize).iter().map(|x| format!("{x:7.3}")).collect::<Vec<_>>().join(" "))
                    .unwrap_or_default();
                let flag = if f.header.flags & FLAG_IMPUTED != 0 { " (imputed)" } else { "" };
                println!("seq {seq:6}  decoded [{}]  true [{tru}]{flag}", dec.join(" "));
            }
            out.push(Received {
                seq,
                flags: f.header.flags,
                t_ns: f.header.t_ns,
                values: v,
                e2e_ns: now.saturating_sub(f.header.t_ns),
            });
        }
        out
    })?;
    Ok(h)
}
