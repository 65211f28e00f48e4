//! The KServe v2 binary tensor data extension: one input's raw bytes, as the element values the encoder
//! takes. BYTES elements are a 4-byte little-endian length and that many UTF-8 bytes; numbers are
//! little-endian in their datatype's width.
use serde::de::value::{Error as ValueError, SeqDeserializer};
use serde::de::{DeserializeSeed, IntoDeserializer};

use super::RowsBuilder;
use crate::serve::error::ScoringError;

/// Decodes `bytes` of `datatype` into field `field`'s column (or the context when `broadcast`); returns how
/// many values there were.
pub fn column(
    builder: &mut RowsBuilder,
    (field, broadcast): (usize, bool),
    name: &str,
    datatype: &str,
    bytes: &[u8],
) -> Result<usize, ScoringError> {
    let bad = |reason: String| ScoringError::InvalidRequest(format!("input '{name}': {reason}"));
    match datatype {
        "BYTES" => {
            let elements = byte_elements(bytes).map_err(bad)?;
            feed(builder, (field, broadcast), name, elements.into_iter())
        }
        "INT64" => feed(builder, (field, broadcast), name, numbers(bytes, i64::from_le_bytes).map_err(bad)?),
        "INT32" => feed(builder, (field, broadcast), name, numbers(bytes, i32::from_le_bytes).map_err(bad)?),
        "FP64" => feed(builder, (field, broadcast), name, numbers(bytes, f64::from_le_bytes).map_err(bad)?),
        "FP32" => feed(builder, (field, broadcast), name, numbers(bytes, f32::from_le_bytes).map_err(bad)?),
        other => Err(bad(format!("datatype {other} (BYTES or a number type)"))),
    }
}

/// gRPC `bytes_contents`: each element must be UTF-8 (feature values are text).
pub fn texts(
    builder: &mut RowsBuilder,
    at: (usize, bool),
    name: &str,
    items: &[Vec<u8>],
) -> Result<usize, ScoringError> {
    let texts = items
        .iter()
        .enumerate()
        .map(|(i, b)| std::str::from_utf8(b).map_err(|e| format!("element {i}: not UTF-8 ({e})")))
        .collect::<Result<Vec<&str>, String>>()
        .map_err(|reason| ScoringError::InvalidRequest(format!("input '{name}': {reason}")))?;
    feed(builder, at, name, texts.into_iter())
}

/// Runs the column seed over `values` (serde's value deserializers: the same visitor as JSON data).
pub fn feed<'de, I>(
    builder: &mut RowsBuilder,
    (field, broadcast): (usize, bool),
    name: &str,
    values: I,
) -> Result<usize, ScoringError>
where
    I: Iterator,
    I::Item: IntoDeserializer<'de, ValueError>,
{
    let seed = builder.column_seed(field, broadcast, name);
    seed.deserialize(SeqDeserializer::<_, ValueError>::new(values))
        .map_err(|e| builder.take_failure_or(|| ScoringError::InvalidRequest(format!("input '{name}': {e}"))))
}

/// Splits length-prefixed BYTES elements; each must be UTF-8 (feature values are text).
fn byte_elements(mut bytes: &[u8]) -> Result<Vec<&str>, String> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let Some((len, rest)) = bytes.split_first_chunk::<4>() else {
            return Err(format!("element {}: {} bytes left, too few for its 4-byte length", out.len(), bytes.len()));
        };
        let len = u32::from_le_bytes(*len) as usize;
        if len > rest.len() {
            return Err(format!("element {}: length {len}, but {} bytes are left", out.len(), rest.len()));
        }
        let (element, rest) = rest.split_at(len);
        let text = std::str::from_utf8(element).map_err(|e| format!("element {}: not UTF-8 ({e})", out.len()))?;
        out.push(text);
        bytes = rest;
    }
    Ok(out)
}

/// Little-endian numbers of `N` bytes each.
fn numbers<const N: usize, T: 'static>(
    bytes: &[u8],
    from: fn([u8; N]) -> T,
) -> Result<impl Iterator<Item = T> + '_, String> {
    if !bytes.len().is_multiple_of(N) {
        return Err(format!("{} bytes is not a whole number of {N}-byte elements", bytes.len()));
    }
    Ok(bytes.chunks_exact(N).map(move |c| from(c.try_into().expect("chunks_exact gives N bytes"))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefixed(items: &[&str]) -> Vec<u8> {
        items.iter().flat_map(|s| (s.len() as u32).to_le_bytes().into_iter().chain(s.bytes())).collect()
    }

    #[test]
    fn byte_elements_split_on_their_lengths() {
        assert_eq!(byte_elements(&prefixed(&["68", "", "sunrise"])).unwrap(), vec!["68", "", "sunrise"]);
    }

    #[test]
    fn truncated_or_non_utf8_elements_are_named() {
        let mut b = prefixed(&["68", "35"]);
        b.pop();
        assert!(byte_elements(&b).unwrap_err().contains("element 1: length 2, but 1 bytes are left"));
        assert!(byte_elements(&[1, 0]).unwrap_err().contains("element 0: 2 bytes left"));
        assert!(byte_elements(&[1, 0, 0, 0, 0xff]).unwrap_err().contains("not UTF-8"));
    }

    #[test]
    fn numbers_need_whole_elements() {
        let v: Vec<i64> = numbers(&[1, 0, 0, 0, 0, 0, 0, 0], i64::from_le_bytes).unwrap().collect();
        assert_eq!(v, vec![1]);
        assert!(numbers(&[0; 7], i64::from_le_bytes).is_err());
    }
}
