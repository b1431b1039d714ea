//! `alternator`: a streaming neural-decoding daemon built on the alternator
//! sequence model. The library holds every part; `main.rs` only dispatches.
//!
//! - [`model`]: the alternator (networks, training, per-bin kernel, model files).
//! - [`metrics`], [`baselines`]: scoring and the standard decoders it is compared with.
//! - [`matrix`], [`rng`]: small shared utilities.
#![forbid(unsafe_code)]

pub mod baselines;
pub mod matrix;
pub mod metrics;
pub mod model;
pub mod rng;
