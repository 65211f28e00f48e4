//! KServe v2 input tensors as any front end received them (REST JSON, REST binary, gRPC typed contents or
//! raw contents) → encoded rows: one tensor per field, shape `[N]` or `[N, 1]`; a tensor of shape `[1]` (or
//! `[1, 1]`) beside longer ones applies to every row, like a v1 context field.
use serde::de::DeserializeSeed;
use serde_json::value::RawValue;

use super::{binary, DecodeLimits, Encoded, RowsBuilder};
use crate::features::Encoder;
use crate::serve::error::ScoringError;

/// One input tensor.
pub struct Tensor<'a> {
    pub name: &'a str,
    pub datatype: &'a str,
    pub shape: &'a [i64],
    pub values: Values<'a>,
}

/// Where a tensor's values are.
pub enum Values<'a> {
    /// A JSON array (REST `data`).
    Json(&'a RawValue),
    /// Binary tensor data: REST's binary extension, gRPC's `raw_input_contents`.
    Raw(&'a [u8]),
    /// gRPC typed contents.
    Bytes(&'a [Vec<u8>]),
    Int64(&'a [i64]),
    Int32(&'a [i32]),
    Fp32(&'a [f32]),
    Fp64(&'a [f64]),
}

/// Encodes the tensors that name model fields (others are ignored, as v1 ignores unknown keys).
pub fn encode_tensors(tensors: &[Tensor], enc: &Encoder, limits: DecodeLimits) -> Result<Encoded, ScoringError> {
    let rows = rows_of(tensors)?;
    if rows > limits.max_rows {
        return Err(ScoringError::TooManyInstances { what: "rows", max: limits.max_rows });
    }
    let mut builder = RowsBuilder::new(enc, "rows");
    builder.add_rows(rows);
    let mut given = vec![false; enc.fields.len()];
    for t in tensors {
        let Some(field) = enc.field_index(t.name, 0) else { continue };
        if std::mem::replace(&mut given[field], true) {
            return Err(ScoringError::InvalidRequest(format!("input '{}' is given twice", t.name)));
        }
        let at = (field, t.shape[0] == 1 && rows > 1);
        let got = match &t.values {
            Values::Json(raw) => {
                let mut de = serde_json::Deserializer::from_str(raw.get());
                let seed = builder.column_seed(field, at.1, t.name);
                seed.deserialize(&mut de).map_err(|e| builder.take_failure(&e))?
            }
            Values::Raw(bytes) => binary::column(&mut builder, at, t.name, t.datatype, bytes)?,
            Values::Bytes(items) => binary::texts(&mut builder, at, t.name, items)?,
            Values::Int64(v) => binary::feed(&mut builder, at, t.name, v.iter().copied())?,
            Values::Int32(v) => binary::feed(&mut builder, at, t.name, v.iter().copied())?,
            Values::Fp32(v) => binary::feed(&mut builder, at, t.name, v.iter().copied())?,
            Values::Fp64(v) => binary::feed(&mut builder, at, t.name, v.iter().copied())?,
        };
        let want = if at.1 { 1 } else { rows };
        if got != want {
            let msg = format!("input '{}': {got} values for shape {:?}", t.name, t.shape);
            return Err(ScoringError::InvalidRequest(msg));
        }
    }
    builder.finish(limits.missing_as_oov)
}

/// Rows in the request: the longest input's first dimension (inputs of 1 broadcast over it).
fn rows_of(tensors: &[Tensor]) -> Result<usize, ScoringError> {
    let bad = |msg: String| ScoringError::InvalidRequest(msg);
    let mut rows = 0;
    for t in tensors {
        if !matches!(t.datatype, "BYTES" | "INT64" | "INT32" | "FP32" | "FP64") {
            return Err(bad(format!("input '{}': datatype {} (BYTES or a number type)", t.name, t.datatype)));
        }
        match t.shape[..] {
            [n] | [n, 1] if n >= 0 => rows = rows.max(n as usize),
            _ => return Err(bad(format!("input '{}': shape {:?} (expected [N] or [N, 1])", t.name, t.shape))),
        }
    }
    for t in tensors {
        let n = t.shape[0] as usize;
        if n != rows && n != 1 {
            let msg = format!("input '{}': shape {:?}, but another input has {rows} rows", t.name, t.shape);
            return Err(bad(msg));
        }
    }
    Ok(rows)
}
