//! `alternator`: a streaming neural-decoding daemon built on the alternator
//! sequence model. The library holds every part; `main.rs` only dispatches.
//!
//! - [`model`]: the alternator (networks, training, per-bin kernel, model files).
//! - [`recording`]: HDF5 sessions; [`simulate`]: synthetic sessions.
//! - [`wire`]: protocol v1 frames; [`daemon`]: the streaming daemon;
//!   [`replay`]: publishing recordings as a rig would.
//! - [`ingest`]: input sources (protocol v1, Open Ephys) feeding the daemon's
//!   engine; [`publish`]: output sinks; [`frontend`]: raw voltage → spike
//!   counts (no I/O); [`transport`]: ZeroMQ socket set-up.
//! - [`metrics`], [`baselines`]: scoring and the standard decoders it is compared with;
//!   [`evaluation`]: offline evaluation (what `eval` and the replay checks use).
//! - [`cli`], [`commands`]: the command line.
//! - [`matrix`], [`rng`], [`clock`], [`latency`]: small shared utilities.
//! - [`bench`]: the end-to-end benchmark; [`fixtures`]: synthetic models and
//!   streams for benchmarks and tests.
#![deny(unsafe_code)]
// Numerical loops index several arrays in step, and `!(x > 0.0)` is used on
// purpose so that NaN fails validation.
#![allow(clippy::needless_range_loop, clippy::neg_cmp_op_on_partial_ord)]

pub mod admin;
pub mod baselines;
pub mod bench;
pub mod cli;
pub mod client;
pub mod clock;
pub mod commands;
pub mod daemon;
pub mod evaluation;
pub mod fixtures;
pub mod frontend;
pub mod ingest;
pub mod latency;
pub mod matrix;
pub mod metrics;
pub mod model;
pub mod publish;
pub mod recording;
pub mod replay;
pub mod rng;
pub mod simulate;
pub mod transport;
pub mod wire;
