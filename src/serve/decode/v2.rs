//! A KServe v2 (Open Inference Protocol) infer request: one tensor per field, shape `[N]` or `[N, 1]`; a
//! tensor of shape `[1]` (or `[1, 1]`) beside longer ones applies to every row, like a v1 context field.
//! Tensors come as JSON `data` or, with the binary tensor data extension, as `binary_data_size` bytes after
//! the JSON header (BYTES elements: a 4-byte little-endian length, then the bytes; numbers little-endian).
use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::tensors::{encode_tensors, Tensor, Values};
use super::{BodyOptions, DecodeLimits, Encoded};
use crate::features::Encoder;
use crate::serve::error::ScoringError;

#[derive(Deserialize)]
struct Request<'a> {
    #[serde(default)]
    id: Option<String>,
    #[serde(borrow)]
    inputs: Vec<Input<'a>>,
    #[serde(default)]
    parameters: Map<String, Value>,
    #[serde(default)]
    outputs: Vec<OutputRequest>,
}

#[derive(Deserialize)]
struct Input<'a> {
    #[serde(borrow)]
    name: Cow<'a, str>,
    shape: Vec<i64>,
    #[serde(borrow)]
    datatype: Cow<'a, str>,
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
    #[serde(default)]
    parameters: TensorParameters,
}

#[derive(Deserialize, Default)]
struct TensorParameters {
    #[serde(default)]
    binary_data_size: Option<usize>,
    #[serde(default)]
    binary_data: Option<bool>,
}

#[derive(Deserialize)]
struct OutputRequest {
    name: String,
    #[serde(default)]
    parameters: TensorParameters,
}

/// What a v2 answer echoes, and how it writes the output.
#[derive(Debug, Clone, Default)]
pub struct V2Meta {
    pub id: Option<String>,
    /// The output goes as raw bytes after the JSON header (`binary_data_output`, or the output's
    /// `binary_data`).
    pub binary_output: bool,
}

/// Decodes and encodes a v2 infer request; `parameters` may carry `latency_budget_ms`, `tier` and
/// `timeout_ms`. `header_len` (the `Inference-Header-Content-Length` header) splits a JSON header from the
/// binary tensor data that follows it.
pub fn decode_v2(
    body: &[u8],
    header_len: Option<usize>,
    enc: &Encoder,
    limits: DecodeLimits,
) -> Result<(Encoded, BodyOptions, V2Meta), ScoringError> {
    let (json, mut binary) = match header_len {
        Some(n) if n > body.len() => {
            let msg = format!("Inference-Header-Content-Length {n} is past the body's {} bytes", body.len());
            return Err(ScoringError::InvalidRequest(msg));
        }
        Some(n) => body.split_at(n),
        None => (body, &[][..]),
    };
    let req: Request = serde_json::from_slice(json).map_err(|e| ScoringError::from_json(&e))?;
    let options = options(&req.parameters)?;
    let mut tensors = Vec::with_capacity(req.inputs.len());
    for input in &req.inputs {
        let values = match tensor_data(input, &mut binary)? {
            TensorData::Json(raw) => Values::Json(raw),
            TensorData::Binary(bytes) => Values::Raw(bytes),
        };
        tensors.push(Tensor { name: &input.name, datatype: &input.datatype, shape: &input.shape, values });
    }
    if !binary.is_empty() {
        let msg = format!("{} bytes of binary data after the last input's", binary.len());
        return Err(ScoringError::InvalidRequest(msg));
    }
    let encoded = encode_tensors(&tensors, enc, limits)?;
    let binary_output = req.parameters.get("binary_data_output").and_then(Value::as_bool).unwrap_or(false)
        || req.outputs.iter().any(|o| o.name == "probability" && o.parameters.binary_data == Some(true));
    Ok((encoded, options, V2Meta { id: req.id, binary_output }))
}

enum TensorData<'a> {
    Json(&'a RawValue),
    Binary(&'a [u8]),
}

/// An input's values: its JSON `data`, or its `binary_data_size` bytes taken from the front of `binary`.
fn tensor_data<'a>(input: &Input<'a>, binary: &mut &'a [u8]) -> Result<TensorData<'a>, ScoringError> {
    let bad = |msg: String| Err(ScoringError::InvalidRequest(format!("input '{}': {msg}", input.name)));
    match (input.data, input.parameters.binary_data_size) {
        (Some(raw), None) => Ok(TensorData::Json(raw)),
        (None, Some(n)) if n <= binary.len() => {
            let (mine, rest) = binary.split_at(n);
            *binary = rest;
            Ok(TensorData::Binary(mine))
        }
        (None, Some(n)) => bad(format!("binary_data_size {n}, but {} bytes of binary data are left", binary.len())),
        (Some(_), Some(_)) => bad("both data and binary_data_size".into()),
        (None, None) => bad("no data (give data, or binary_data_size with Inference-Header-Content-Length)".into()),
    }
}

fn options(parameters: &Map<String, Value>) -> Result<BodyOptions, ScoringError> {
    let number = |key: &str| -> Result<Option<f64>, ScoringError> {
        match parameters.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_f64()
                .map(Some)
                .ok_or_else(|| ScoringError::InvalidRequest(format!("parameter '{key}': {v} is not a number"))),
        }
    };
    let tier = match parameters.get("tier") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(v) => return Err(ScoringError::InvalidRequest(format!("parameter 'tier': {v} is not a string"))),
    };
    Ok(BodyOptions { latency_budget_ms: number("latency_budget_ms")?, tier, timeout_ms: number("timeout_ms")? })
}
