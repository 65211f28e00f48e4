//! ONNX graphs written from Rust: prost types generated from the vendored `proto/onnx.proto`, and a small
//! builder that names values, collects initializers and stamps IR 10 / opset 21, and dense layers at fp32 or
//! int8 precision.
pub mod builder;
pub mod dense;
pub mod lookup;
pub mod quant;

/// Generated ONNX protobuf types (package `onnx`).
#[allow(clippy::all, missing_docs)]
pub mod proto {
    include!(concat!(env!("OUT_DIR"), "/onnx.rs"));
}

pub use builder::{Dim, GraphBuilder};
pub use dense::{DenseWeights, InputRank};
pub use quant::{ActivationScale, Precision, Range, WeightScale};

/// IR version written into every model (ONNX Runtime 1.31 accepts IR ≤ 13).
pub const IR_VERSION: i64 = 10;
/// Default-domain opset written into every model (ONNX Runtime 1.31 accepts ≤ 26).
pub const OPSET: i64 = 21;
