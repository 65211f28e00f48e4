//! ensemble-serve: train KDEF ensembles for CTR prediction and serve them with latency-budget routing.
//!
//! The modules follow the data path: `features` (shared by training and serving) → `data` → `onnx`
//! (graph writer) → `runtime` (ONNX Runtime) → `serve`.
pub mod artifact;
pub mod config;
pub mod data;
pub mod eval;
#[cfg(feature = "train")]
pub mod export;
pub mod features;
pub mod metrics;
#[cfg(feature = "train")]
pub mod model;
pub mod onnx;
pub mod paths;
#[cfg(any(feature = "train", feature = "loadgen"))]
pub mod plot;
pub mod run_summary;
pub mod runtime;
pub mod serve;
#[cfg(feature = "train")]
pub mod train;
