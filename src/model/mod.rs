//! The alternator model (Rezaei & Dieng): an observation trajectory network
//! (OTN, `f: z -> x`) and a feature trajectory network (FTN, `g: x -> z`)
//! that alternate between observation space and a low-dimensional feature
//! space. See `docs/MODEL.md` for the equations this module implements.
//!
//! This module is synchronous and free of I/O frameworks (no tokio, zmq or
//! hdf5): the maths can be tested alone.
//!
//! - [`spec`]: the architecture and constants stored with every model.
//! - [`preprocess`]: causal preprocessing shared by training and streaming.
//! - [`net`]: the candle networks, batched trajectory forward and loss.
//! - [`optim`]: the fused AdamW optimiser over a flat parameter buffer.
//! - [`search`]: the random search over training settings (`tune`).
//! - [`train`]: the training loop (AdamW, clipping, early stopping).
//! - [`kernel`]: the allocation-free per-bin update used by `eval` and the daemon.
//! - [`forecast`]: k-bin-ahead forecasts and decoding with missing bins (offline, via the kernel).
//! - [`sample`]: drawing trajectories from the generative process.
//! - [`file`]: model files (safetensors weights + JSON metadata).

pub mod file;
pub mod forecast;
pub mod kernel;
pub mod net;
pub mod optim;
pub mod preprocess;
pub mod sample;
pub mod search;
pub mod spec;
pub mod train;
pub mod weights;

pub use file::{ModelFile, ModelFileError, ModelMeta};
pub use kernel::StepKernel;
pub use spec::{Activation, Mode, ModelSpec, Smoothing};
pub use weights::{Dense, MlpWeights, Model};
