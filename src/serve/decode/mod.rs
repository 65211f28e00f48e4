//! Request bodies → encoded rows in one pass: serde visitors walk the JSON and write each value's id
//! straight into the row buffer through the model's encoder (borrowed strings, vocabulary look-ups by
//! `&str`), with no `serde_json::Value` tree in between. Context fields are decoded and encoded once per
//! request and copied into every candidate's row.
use std::cell::RefCell;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::error::ScoringError;
use crate::features::json::ValueSeed;
use crate::features::Encoder;

mod binary;
mod tensors;
mod v1;
mod v2;

pub use tensors::{encode_tensors, Tensor, Values};
pub use v1::{decode_v1, BodyOptions};
pub use v2::{
    decode_v2, InferParameters, Input as InferInput, OutputParameters, OutputRequest, Request as InferRequest,
    TensorParameters, V2Meta,
};

/// Marks a slot no value has been written to yet (ids are far below it).
const UNSET: u32 = u32::MAX;

/// The body as text, checked once: `serde_json` then reads its strings without checking each one's UTF-8.
fn utf8_body(body: &[u8]) -> Result<&str, ScoringError> {
    std::str::from_utf8(body)
        .map_err(|e| ScoringError::InvalidJson(format!("the body is not valid UTF-8 at byte {}", e.valid_up_to())))
}

/// Encoded rows, row-major, `Encoder::width` ids each.
#[derive(Debug, Clone, PartialEq)]
pub struct Encoded {
    pub ids: Vec<u32>,
    pub rows: usize,
}

/// What decoding may accept.
#[derive(Debug, Clone, Copy)]
pub struct DecodeLimits {
    pub max_rows: usize,
    pub missing_as_oov: bool,
}

/// Rows being filled, plus an optional context row whose fields apply to all of them.
pub struct RowsBuilder<'e> {
    pub enc: &'e Encoder,
    width: usize,
    pub ids: Vec<u32>,
    pub context: Option<Vec<u32>>,
    /// What the rows are called in errors: "instances" or "candidates".
    pub what: &'static str,
    /// The first failure a visitor met (serde's own error type cannot carry it).
    failure: RefCell<Option<ScoringError>>,
    /// The field index of each key position in the last row object: rows of one request list their keys in
    /// the same order, so the next row's key search starts at the field it most likely names.
    key_order: Vec<usize>,
}

impl<'e> RowsBuilder<'e> {
    pub fn new(enc: &'e Encoder, what: &'static str) -> Self {
        let failure = RefCell::new(None);
        Self { enc, width: enc.width(), ids: Vec::new(), context: None, what, failure, key_order: Vec::new() }
    }

    pub fn rows(&self) -> usize {
        self.ids.len() / self.width.max(1)
    }

    /// Appends `n` rows with every slot unset.
    pub fn add_rows(&mut self, n: usize) {
        self.ids.resize(self.ids.len() + n * self.width, UNSET);
    }

    /// Remembers a failure for [`Self::take_failure`] and returns serde's error to unwind with.
    pub(super) fn fail<E: serde::de::Error>(&self, e: ScoringError) -> E {
        let message = e.to_string();
        self.failure.borrow_mut().get_or_insert(e);
        E::custom(message)
    }

    /// The failure a visitor recorded, else `fallback` (serde's own: syntax or shape).
    pub fn take_failure(&self, fallback: &serde_json::Error) -> ScoringError {
        self.take_failure_or(|| ScoringError::from_json(fallback))
    }

    /// The failure a visitor recorded, else `fallback()`.
    pub fn take_failure_or(&self, fallback: impl FnOnce() -> ScoringError) -> ScoringError {
        self.failure.borrow_mut().take().unwrap_or_else(fallback)
    }

    /// A seed that decodes one JSON object of field values into `row` (an index, or the context).
    fn row_seed(&mut self, row: Option<usize>) -> RowSeed<'_, 'e> {
        let at = match row {
            Some(r) => RowAt::Row(self.what, r),
            None => RowAt::Context,
        };
        RowSeed { builder: self, row, at }
    }

    /// A seed for a JSON array of row objects, appended to the rows (at most `max_rows` in all).
    pub fn rows_seed(&mut self, max_rows: usize) -> RowsSeed<'_, 'e> {
        RowsSeed { builder: self, max_rows }
    }

    /// A seed for one row object that becomes the context.
    pub fn context_seed(&mut self) -> RowSeed<'_, 'e> {
        self.context = Some(vec![UNSET; self.width]);
        self.row_seed(None)
    }

    /// A seed for one field's values down a column: element `r` goes to row `r` (the rows must exist), or
    /// with `broadcast` its single value goes to the context.
    pub fn column_seed<'b>(&'b mut self, field: usize, broadcast: bool, input: &'b str) -> ColumnSeed<'b, 'e> {
        if broadcast && self.context.is_none() {
            self.context = Some(vec![UNSET; self.width]);
        }
        ColumnSeed { builder: self, field, broadcast, input }
    }

    /// Remembers that the key at `position` of a row object named field `i`.
    fn learn_key(&mut self, position: usize, i: usize) {
        match self.key_order.get_mut(position) {
            Some(slot) => *slot = i,
            None => self.key_order.push(i),
        }
    }

    /// One field's slots in `row` (`None`: the context).
    fn slots(&mut self, row: Option<usize>, field: usize) -> &mut [u32] {
        let range = self.enc.slots(field);
        match row {
            Some(r) => &mut self.ids[r * self.width..(r + 1) * self.width][range],
            None => &mut self.context.as_mut().expect("context row")[range],
        }
    }

    /// Applies the context to every row, then checks that every field of every row is set (a missing one is
    /// an error, or its OOV id under `missing_as_oov`).
    pub fn finish(mut self, missing_as_oov: bool) -> Result<Encoded, ScoringError> {
        let rows = self.rows();
        if rows == 0 {
            return Err(ScoringError::NoInstances(self.what));
        }
        if let Some(context) = self.context.take() {
            self.apply_context(&context)?;
        }
        // Set fields never hold UNSET, so one vectorised scan clears the common case.
        if self.ids.contains(&UNSET) {
            self.fill_missing(rows, missing_as_oov)?;
        }
        Ok(Encoded { ids: self.ids, rows })
    }

    /// Names the first missing field, or fills every missing one with its OOV id under `missing_as_oov`.
    fn fill_missing(&mut self, rows: usize, missing_as_oov: bool) -> Result<(), ScoringError> {
        for r in 0..rows {
            for (i, f) in self.enc.fields.iter().enumerate() {
                let slots = self.slots(Some(r), i);
                if slots[0] != UNSET {
                    continue;
                }
                if !missing_as_oov {
                    let at = RowAt::Row(self.what, r).to_string();
                    return Err(ScoringError::InvalidInstance {
                        at,
                        reason: format!("field '{}' is missing", f.spec.name),
                    });
                }
                slots.fill(f.vocab.oov_id());
            }
        }
        Ok(())
    }

    /// Copies the context's fields into every row, row by row (one pass over the ids).
    fn apply_context(&mut self, context: &[u32]) -> Result<(), ScoringError> {
        let given: Vec<(usize, std::ops::Range<usize>)> = (0..self.enc.fields.len())
            .map(|i| (i, self.enc.slots(i)))
            .filter(|(_, range)| context[range.start] != UNSET)
            .collect();
        for (r, row) in self.ids.chunks_exact_mut(self.width.max(1)).enumerate() {
            for (i, range) in &given {
                if row[range.start] != UNSET {
                    return Err(ScoringError::FieldInBoth { field: self.enc.fields[*i].spec.name.clone(), row: r });
                }
                // Most context fields are one id wide: a plain store, not a memcpy call.
                if range.len() == 1 {
                    row[range.start] = context[range.start];
                } else {
                    row[range.clone()].copy_from_slice(&context[range.clone()]);
                }
            }
        }
        Ok(())
    }
}

/// Where a row sits in the request, for error messages.
#[derive(Clone, Copy)]
enum RowAt {
    Row(&'static str, usize),
    Context,
}

impl fmt::Display for RowAt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Row(what, r) => write!(f, "{what}[{r}]"),
            Self::Context => f.write_str("context"),
        }
    }
}

pub struct RowsSeed<'b, 'e> {
    builder: &'b mut RowsBuilder<'e>,
    max_rows: usize,
}

impl<'de> DeserializeSeed<'de> for RowsSeed<'_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for RowsSeed<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of objects of field values")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        loop {
            let r = self.builder.rows();
            if r == self.max_rows {
                // One more element means too many; none means done.
                return match seq.next_element::<IgnoredAny>()? {
                    None => Ok(()),
                    Some(_) => {
                        let e = ScoringError::TooManyInstances { what: self.builder.what, max: self.max_rows };
                        Err(self.builder.fail(e))
                    }
                };
            }
            self.builder.add_rows(1);
            if seq.next_element_seed(self.builder.row_seed(Some(r)))?.is_none() {
                self.builder.ids.truncate(r * self.builder.width);
                return Ok(());
            }
        }
    }
}

pub struct RowSeed<'b, 'e> {
    builder: &'b mut RowsBuilder<'e>,
    row: Option<usize>,
    at: RowAt,
}

impl<'de> DeserializeSeed<'de> for RowSeed<'_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

/// Anything but an object where a row belongs.
macro_rules! not_an_object {
    ($($method:ident: $ty:ty),*) => {$(
        fn $method<E: serde::de::Error>(self, _: $ty) -> Result<(), E> {
            let at = self.at.to_string();
            Err(self.builder.fail(ScoringError::InvalidInstance { at, reason: "not a JSON object".into() }))
        }
    )*};
}

impl<'de> Visitor<'de> for RowSeed<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object of field values")
    }
    not_an_object!(visit_bool: bool, visit_i64: i64, visit_u64: u64, visit_f64: f64, visit_str: &str);
    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        self.visit_bool(false)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        self.visit_bool(false)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let enc = self.builder.enc;
        let (mut position, mut next) = (0, 0);
        loop {
            let hint = self.builder.key_order.get(position).copied().unwrap_or(next);
            let Some(field) = map.next_key_seed(FieldKey { enc, hint })? else { break };
            let Some(i) = field else {
                map.next_value::<IgnoredAny>()?;
                continue;
            };
            self.builder.learn_key(position, i);
            (position, next) = (position + 1, i + 1);
            let f = &enc.fields[i];
            let out = self.builder.slots(self.row, i);
            // A key given twice is refused, not resolved: which value a client meant is unknowable.
            if out[0] != UNSET {
                let (at, reason) = (self.at.to_string(), format!("field '{}' is given twice", f.spec.name));
                return Err(self.builder.fail(ScoringError::InvalidInstance { at, reason }));
            }
            if let Err(reason) = map.next_value_seed(ValueSeed { field: f, out })? {
                let at = self.at.to_string();
                let reason = format!("field '{}': {reason}", f.spec.name);
                return Err(self.builder.fail(ScoringError::InvalidInstance { at, reason }));
            }
        }
        Ok(())
    }
}

/// An object key → the index of the model field it names (`None`: not a model field, ignored). Keys usually
/// come in field order, so the search starts where the last one matched.
struct FieldKey<'e> {
    enc: &'e Encoder,
    hint: usize,
}

impl<'de> DeserializeSeed<'de> for FieldKey<'_> {
    type Value = Option<usize>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<usize>, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for FieldKey<'_> {
    type Value = Option<usize>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a field name")
    }
    fn visit_str<E: serde::de::Error>(self, key: &str) -> Result<Option<usize>, E> {
        Ok(self.enc.field_index(key, self.hint))
    }
}

/// One field's values down a column (KServe v2 tensors): element `r` → row `r`, or a single value → the
/// context (a broadcast input). Yields how many values there were.
pub struct ColumnSeed<'b, 'e> {
    builder: &'b mut RowsBuilder<'e>,
    field: usize,
    broadcast: bool,
    input: &'b str,
}

impl<'de> DeserializeSeed<'de> for ColumnSeed<'_, '_> {
    type Value = usize;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<usize, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for ColumnSeed<'_, '_> {
    type Value = usize;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of values")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<usize, A::Error> {
        let f = &self.builder.enc.fields[self.field];
        let capacity = if self.broadcast { 1 } else { self.builder.rows() };
        let mut r = 0;
        while r < capacity {
            let target = (!self.broadcast).then_some(r);
            let out = self.builder.slots(target, self.field);
            match seq.next_element_seed(ValueSeed { field: f, out })? {
                None => return Ok(r),
                Some(Ok(())) => r += 1,
                Some(Err(reason)) => {
                    let at = target.map_or("context".to_string(), |r| format!("row {r}"));
                    let e = ScoringError::InvalidInstance { at, reason: format!("input '{}': {reason}", self.input) };
                    return Err(self.builder.fail(e));
                }
            }
        }
        while seq.next_element::<IgnoredAny>()?.is_some() {
            r += 1;
        }
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::{FieldEncoder, FieldKind, FieldSpec, Vocab};

    fn field(name: &str, kind: FieldKind, tokens: &[&str]) -> FieldEncoder {
        let spec = FieldSpec { name: name.into(), kind, min_count: None, indices: None };
        FieldEncoder { spec, vocab: Vocab::from_tokens(tokens.iter().map(|t| (*t).into()).collect()) }
    }

    /// user (context), tags (a 2-slot sequence, context), item (per candidate).
    fn encoder() -> Encoder {
        let tags = FieldKind::Sequence { separator: "|".into(), max_len: 2 };
        let fields = vec![
            field("user", FieldKind::Categorical, &["u1", "u2"]),
            field("tags", tags, &["a", "b"]),
            field("item", FieldKind::Categorical, &["i1", "i2", "i3"]),
        ];
        Encoder::new("toy".into(), fields, None)
    }

    fn decode(body: &str, missing_as_oov: bool) -> Result<Encoded, ScoringError> {
        decode_v1(body.as_bytes(), &encoder(), DecodeLimits { max_rows: 8, missing_as_oov }).map(|(e, _)| e)
    }

    #[test]
    fn context_fields_of_every_width_reach_every_row() {
        let body = r#"{"context": {"user": "u2", "tags": "b|a"}, "candidates": [{"item": "i3"}, {"item": "zz"}]}"#;
        // Layout: user, item (scalars), then tags' two slots; item OOV = 4.
        assert_eq!(decode(body, false).unwrap(), Encoded { ids: vec![2, 3, 2, 1, 2, 4, 2, 1], rows: 2 });
    }

    #[test]
    fn a_missing_field_is_named_or_becomes_its_oov_id() {
        let body = r#"{"context": {"user": "u1"}, "candidates": [{"item": "i1", "tags": "a"}, {"item": "i2"}]}"#;
        let err = decode(body, false).unwrap_err().to_string();
        assert!(err.contains("candidates[1]") && err.contains("'tags' is missing"), "{err}");
        assert_eq!(decode(body, true).unwrap(), Encoded { ids: vec![1, 1, 1, 0, 1, 2, 3, 3], rows: 2 });
    }

    #[test]
    fn rows_may_list_their_keys_in_any_order() {
        let body = r#"{"instances": [{"item": "i1", "x": 0, "user": "u1", "tags": "a"},
            {"tags": "b", "user": "u2", "item": "i2"}, {"user": "u1", "tags": "a|b", "item": "i3", "x": 1}]}"#;
        let ids = vec![1, 1, 1, 0, 2, 2, 2, 0, 1, 3, 1, 2];
        assert_eq!(decode(body, false).unwrap(), Encoded { ids, rows: 3 });
    }

    #[test]
    fn a_body_that_is_not_utf8_is_invalid_json_naming_the_byte() {
        let body = b"{\"instances\": [{\"user\": \"u\xff\"}]}";
        let err = decode_v1(body, &encoder(), DecodeLimits { max_rows: 8, missing_as_oov: true }).unwrap_err();
        assert!(matches!(&err, ScoringError::InvalidJson(m) if m.contains("byte 26")), "{err:?}");
    }

    #[test]
    fn a_field_given_twice_in_a_row_is_refused_naming_it() {
        for body in [
            r#"{"instances": [{"user": "u1", "tags": "a", "item": "i1"}, {"user": "u1", "item": "i2", "user": "u2"}]}"#,
            r#"{"context": {"user": "u1", "tags": "a", "tags": "b"}, "candidates": [{"item": "i1"}]}"#,
        ] {
            let err = decode(body, true).unwrap_err();
            assert!(matches!(&err, ScoringError::InvalidInstance { .. }), "{err:?}");
            let (msg, at) = (err.to_string(), if body.contains("context") { "context" } else { "instances[1]" });
            assert!(msg.contains(at) && msg.contains("is given twice"), "{msg}");
        }
        let body = r#"{"tier": null, "instances": [{"user": "u1", "tags": "a", "item": "i1"}], "tier": "auto"}"#;
        let err = decode(body, true).unwrap_err();
        assert!(matches!(&err, ScoringError::InvalidRequest(m) if m.contains("duplicate field `tier`")), "{err:?}");
    }

    #[test]
    fn a_field_in_both_names_the_first_row_that_repeats_it() {
        let body =
            r#"{"context": {"user": "u1", "tags": "a"}, "candidates": [{"item": "i1"}, {"item": "i2", "user": "u2"}]}"#;
        match decode(body, false) {
            Err(ScoringError::FieldInBoth { field, row }) => assert_eq!((field.as_str(), row), ("user", 1)),
            other => panic!("expected field_in_both, got {other:?}"),
        }
    }
}
