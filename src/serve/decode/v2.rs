//! A KServe v2 (Open Inference Protocol) JSON infer request: one tensor per field, shape `[N]` or `[N, 1]`;
//! a tensor of shape `[1]` (or `[1, 1]`) beside longer ones applies to every row, like a v1 context field.
use std::borrow::Cow;

use serde::de::DeserializeSeed;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::{BodyOptions, DecodeLimits, Encoded, RowsBuilder};
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
    #[serde(default, rename = "outputs")]
    _outputs: serde::de::IgnoredAny,
}

#[derive(Deserialize)]
struct Input<'a> {
    #[serde(borrow)]
    name: Cow<'a, str>,
    shape: Vec<i64>,
    #[serde(borrow)]
    datatype: Cow<'a, str>,
    #[serde(borrow)]
    data: &'a RawValue,
    #[serde(default, rename = "parameters")]
    _parameters: serde::de::IgnoredAny,
}

/// What a v2 answer echoes.
#[derive(Debug, Clone, Default)]
pub struct V2Meta {
    pub id: Option<String>,
}

/// Decodes and encodes a v2 JSON infer request; `parameters` may carry `latency_budget_ms`, `tier` and
/// `timeout_ms`.
pub fn decode_v2(
    body: &[u8],
    enc: &Encoder,
    limits: DecodeLimits,
) -> Result<(Encoded, BodyOptions, V2Meta), ScoringError> {
    let req: Request = serde_json::from_slice(body).map_err(|e| ScoringError::from_json(&e))?;
    let options = options(&req.parameters)?;
    let rows = rows_of(&req.inputs)?;
    if rows > limits.max_rows {
        return Err(ScoringError::TooManyInstances { what: "rows", max: limits.max_rows });
    }
    let mut builder = RowsBuilder::new(enc, "rows");
    builder.add_rows(rows);
    for input in &req.inputs {
        let Some(field) = enc.field_index(&input.name, 0) else { continue };
        let broadcast = input.shape[0] == 1 && rows > 1;
        let mut de = serde_json::Deserializer::from_str(input.data.get());
        let got = builder
            .column_seed(field, broadcast, &input.name)
            .deserialize(&mut de)
            .map_err(|e| builder.take_failure(&e))?;
        let want = if broadcast { 1 } else { rows };
        if got != want {
            let msg = format!("input '{}': {got} values for shape {:?}", input.name, input.shape);
            return Err(ScoringError::InvalidRequest(msg));
        }
    }
    Ok((builder.finish(limits.missing_as_oov)?, options, V2Meta { id: req.id }))
}

/// Rows in the request: the longest input's first dimension (inputs of 1 broadcast over it).
fn rows_of(inputs: &[Input]) -> Result<usize, ScoringError> {
    let bad = |msg: String| ScoringError::InvalidRequest(msg);
    let mut rows = 0;
    for input in inputs {
        if !matches!(&*input.datatype, "BYTES" | "INT64" | "INT32" | "FP32" | "FP64") {
            return Err(bad(format!("input '{}': datatype {} (BYTES or a number type)", input.name, input.datatype)));
        }
        match input.shape[..] {
            [n] | [n, 1] if n >= 0 => rows = rows.max(n as usize),
            _ => return Err(bad(format!("input '{}': shape {:?} (expected [N] or [N, 1])", input.name, input.shape))),
        }
    }
    for input in inputs {
        let n = input.shape[0] as usize;
        if n != rows && n != 1 {
            let msg = format!("input '{}': shape {:?}, but another input has {rows} rows", input.name, input.shape);
            return Err(bad(msg));
        }
    }
    Ok(rows)
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
