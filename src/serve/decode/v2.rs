//! A KServe v2 (Open Inference Protocol) infer request: one tensor per field, shape `[N]` or `[N, 1]`; a
//! tensor of shape `[1]` (or `[1, 1]`) beside longer ones applies to every row, like a v1 context field.
//! Tensors come as JSON `data` or, with the binary tensor data extension, as `binary_data_size` bytes after
//! the JSON header (BYTES elements: a 4-byte little-endian length, then the bytes; numbers little-endian).
use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::tensors::{encode_tensors, Tensor, Values};
use super::{utf8_body, BodyOptions, DecodeLimits, Encoded};
use crate::features::Encoder;
use crate::serve::error::ScoringError;

/// `POST /v2/models/{name}/infer` body (the JSON header, when binary tensors follow it). Unknown keys are
/// ignored.
#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = InferRequest)]
pub struct Request<'a> {
    /// Echoed in the answer.
    #[serde(default)]
    id: Option<String>,
    /// One tensor per model field (any order); tensors naming no field are ignored.
    #[serde(borrow)]
    #[schema(min_items = 1)]
    inputs: Vec<Input<'a>>,
    #[serde(default, deserialize_with = "unique_keys")]
    #[schema(value_type = InferParameters)]
    parameters: Map<String, Value>,
    #[serde(default)]
    outputs: Vec<OutputRequest>,
}

/// The request's options (all optional).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // documentation only: `options` reads them from the parameter map
pub struct InferParameters {
    /// Latency budget in ms (else the `X-Latency-Budget-Ms` header, else the server default).
    #[schema(minimum = 0)]
    latency_budget_ms: Option<f64>,
    /// Hard deadline in ms after arrival: past it the answer is 504 and the request never runs.
    #[schema(minimum = 0)]
    timeout_ms: Option<f64>,
    /// `auto` (budget routing), `ensemble`, `student` (the best), `student:<k>`, each with `:int8` where
    /// the model has the quantised twin.
    tier: Option<String>,
    /// Answer the output as raw little-endian FP32 after the JSON header (binary tensor data extension).
    binary_data_output: Option<bool>,
}

/// One input tensor: shape `[N]` or `[N, 1]` with N values, or `[1]` / `[1, 1]` to apply one value to
/// every row. BYTES elements are the field's raw values; number types carry numbers.
#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = InferInput)]
pub struct Input<'a> {
    #[serde(borrow)]
    #[schema(value_type = String)]
    name: Cow<'a, str>,
    #[schema(min_items = 1, max_items = 2)]
    shape: Vec<i64>,
    #[serde(borrow)]
    #[schema(value_type = String)]
    datatype: Cow<'a, str>,
    /// The values, row-major (absent when `binary_data_size` says they follow the JSON header).
    #[serde(borrow, default)]
    #[schema(value_type = Vec<Object>)]
    data: Option<&'a RawValue>,
    #[serde(default)]
    parameters: TensorParameters,
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
pub struct TensorParameters {
    /// Bytes of this tensor after the JSON header (binary tensor data extension; not in JSON bodies).
    #[serde(default)]
    binary_data_size: Option<usize>,
}

/// An output the client asks for: `probability` (others are ignored).
#[derive(Deserialize, utoipa::ToSchema)]
pub struct OutputRequest {
    name: String,
    #[serde(default)]
    parameters: OutputParameters,
}

/// An output's parameters (others are ignored).
#[derive(Deserialize, Default, utoipa::ToSchema)]
pub struct OutputParameters {
    /// Answer this output as raw bytes after the JSON header.
    #[serde(default)]
    binary_data: Option<bool>,
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
    let req: Request = serde_json::from_str(utf8_body(json)?).map_err(|e| ScoringError::from_json(&e))?;
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
    let binary_output = binary_data_output(&req.parameters)?
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

/// A JSON object with no key given twice: serde_json's `Map` would keep the last silently, and which value a
/// client meant is unknowable (the derived structs refuse their own repeated keys).
fn unique_keys<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Map<String, Value>, D::Error> {
    struct Unique;
    impl<'de> serde::de::Visitor<'de> for Unique {
        type Value = Map<String, Value>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an object of parameters")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out = Map::new();
            while let Some((key, value)) = map.next_entry::<String, Value>()? {
                if out.contains_key(&key) {
                    return Err(serde::de::Error::custom(format!("parameter '{key}' is given twice")));
                }
                out.insert(key, value);
            }
            Ok(out)
        }
    }
    d.deserialize_map(Unique)
}

/// `binary_data_output`: a boolean when given.
fn binary_data_output(parameters: &Map<String, Value>) -> Result<bool, ScoringError> {
    match parameters.get("binary_data_output") {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(v) => Err(ScoringError::InvalidRequest(format!("parameter 'binary_data_output': {v} is not a boolean"))),
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
