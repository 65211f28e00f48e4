//! The fitted feature encoder: per-field vocabularies and the one set of functions that turns raw values
//! (CSV text at training time, JSON at serving time) into ids.
//!
//! Ids: 0 = padding, 1..=n the kept values (most frequent first), n + 1 = the field's OOV id.
//! Row layout: one id per scalar field (in field order), then `max_len` ids per sequence field.
use std::path::Path;

use compact_str::CompactString;
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use super::spec::{FieldKind, FieldSpec};
use super::{BadValue, FeatureError};

pub const ENCODER_FORMAT: &str = "ensemble-serve/encoder";
pub const ENCODER_VERSION: u32 = 1;

/// `floor(ln(v)^2)` when v > 2, else the integer part of v (FuxiCTR's Criteo bucketing).
pub fn numeric_bucket(v: f64) -> i64 {
    if v > 2.0 {
        (v.ln() * v.ln()).floor() as i64
    } else {
        v as i64
    }
}

/// Why one value could not be encoded.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ValueError {
    #[error("field '{field}' is missing")]
    Missing { field: String },
    #[error("field '{field}': {reason}")]
    Bad { field: String, reason: BadValue },
}

/// A field's vocabulary.
#[derive(Debug, Clone, Default)]
pub struct Vocab {
    /// Inline (≤ 24-byte) keys: a lookup compares without chasing a pointer.
    ids: FxHashMap<CompactString, u32>,
    /// The same ids keyed by integer, for tokens that are canonical integers (numeric buckets).
    int_ids: FxHashMap<i64, u32>,
    /// Ids indexed by value when the canonical non-negative integer tokens are few and small (user, item,
    /// city ids), else empty: one independent array load instead of a hash probe's two dependent cache
    /// misses, which a server pays per candidate once ONNX Runtime's weights have swept the caches.
    dense: Vec<u32>,
    tokens: Vec<Box<str>>,
}

/// Largest value a dense table may index (4 MiB of ids).
const DENSE_MAX: i64 = 1 << 20;

impl Vocab {
    pub fn from_tokens(tokens: Vec<Box<str>>) -> Self {
        let ids = tokens.iter().enumerate().map(|(i, t)| (CompactString::from(&**t), i as u32 + 1)).collect();
        let int_ids =
            tokens.iter().enumerate().filter_map(|(i, t)| canonical_int(t).map(|v| (v, i as u32 + 1))).collect();
        let mut vocab = Self { ids, int_ids, dense: Vec::new(), tokens };
        vocab.dense = dense_ids(&vocab.int_ids, vocab.tokens.len(), vocab.oov_id());
        vocab
    }
    /// The id of `token`, or the OOV id.
    #[inline]
    pub fn id(&self, token: &str) -> u32 {
        match small_uint(token) {
            Some(v) if !self.dense.is_empty() => self.dense_id(v),
            _ => self.ids.get(token).copied().unwrap_or(self.oov_id()),
        }
    }
    /// The id of the token that is the decimal form of `value` (same id as `id(&value.to_string())`).
    #[inline]
    pub fn int_id(&self, value: i64) -> u32 {
        if value >= 0 && !self.dense.is_empty() {
            return self.dense_id(value as u64);
        }
        self.int_ids.get(&value).copied().unwrap_or(self.oov_id())
    }
    /// Every canonical non-negative integer token is below `dense.len()`: a larger value is out of vocabulary.
    #[inline]
    fn dense_id(&self, value: u64) -> u32 {
        usize::try_from(value).ok().and_then(|v| self.dense.get(v)).copied().unwrap_or(self.oov_id())
    }
    #[inline]
    pub fn oov_id(&self) -> u32 {
        self.tokens.len() as u32 + 1
    }
    /// Embedding rows this field needs: padding + kept values + OOV.
    pub fn size(&self) -> usize {
        self.tokens.len() + 2
    }
    pub fn tokens(&self) -> &[Box<str>] {
        &self.tokens
    }
}

/// One field's spec and vocabulary.
#[derive(Debug, Clone)]
pub struct FieldEncoder {
    pub spec: FieldSpec,
    pub vocab: Vocab,
}

impl FieldEncoder {
    /// Ids this field occupies in an encoded row.
    pub fn width(&self) -> usize {
        match self.spec.kind {
            FieldKind::Sequence { max_len, .. } => max_len,
            _ => 1,
        }
    }

    /// Encodes a raw text value (a CSV cell, or a JSON value rendered by [`json_text`]) into `out`.
    #[inline]
    pub fn encode_text(&self, raw: &str, out: &mut [u32]) -> Result<(), BadValue> {
        match &self.spec.kind {
            FieldKind::Categorical => out[0] = self.vocab.id(raw),
            FieldKind::NumericBucket => out[0] = self.bucket_id(raw)?,
            FieldKind::Sequence { separator, .. } => self.encode_tokens(split_tokens(raw, separator), out),
        }
        Ok(())
    }

    /// The id of a numeric cell: its bucket's id, or the id of the empty value when blank.
    #[inline]
    fn bucket_id(&self, raw: &str) -> Result<u32, BadValue> {
        match bucket_token(raw)? {
            Some(bucket) => Ok(self.vocab.int_id(bucket)),
            None => Ok(self.vocab.id("")),
        }
    }

    /// Fills `out` with the ids of the first `out.len()` tokens, padding with 0.
    #[inline]
    pub fn encode_tokens<'t>(&self, tokens: impl Iterator<Item = &'t str>, out: &mut [u32]) {
        out.fill(0);
        for (slot, tok) in out.iter_mut().zip(tokens) {
            *slot = self.vocab.id(tok);
        }
    }

    /// Encodes a parsed JSON value with the server's visitor (`super::json`): one definition of how JSON
    /// values become ids.
    pub fn encode_json(&self, value: &serde_json::Value, out: &mut [u32]) -> Result<(), BadValue> {
        use serde::de::DeserializeSeed;
        super::json::ValueSeed { field: self, out }.deserialize(value).map_err(|e| BadValue::Json(e.to_string()))?
    }
}

/// A dense table of `int_ids`' non-negative values when they span at most 4 slots per token (plus 1,024)
/// and stay below [`DENSE_MAX`]; absent values hold the OOV id.
fn dense_ids(int_ids: &FxHashMap<i64, u32>, tokens: usize, oov: u32) -> Vec<u32> {
    let Some(max) = int_ids.keys().copied().filter(|&v| v >= 0).max() else { return Vec::new() };
    if max >= DENSE_MAX || max as usize >= 4 * tokens + 1024 {
        return Vec::new();
    }
    let mut dense = vec![oov; max as usize + 1];
    for (&v, &id) in int_ids.iter().filter(|(&v, _)| v >= 0) {
        dense[v as usize] = id;
    }
    dense
}

/// The value of a canonical non-negative integer of at most 18 digits ("0", "35"; not "035", "+3", "-1"):
/// exactly the tokens whose `canonical_int` is non-negative.
#[inline]
fn small_uint(token: &str) -> Option<u64> {
    let b = token.as_bytes();
    if b.is_empty() || b.len() > 18 || (b[0] == b'0' && b.len() > 1) {
        return None;
    }
    b.iter().try_fold(0u64, |v, &c| c.is_ascii_digit().then(|| v * 10 + u64::from(c - b'0')))
}

/// `Some(v)` when `token` is exactly how `v` prints (so integer and text lookups agree).
fn canonical_int(token: &str) -> Option<i64> {
    let v: i64 = token.parse().ok()?;
    (itoa::Buffer::new().format(v) == token).then_some(v)
}

/// Tokens of a sequence cell; an empty cell has none.
#[inline]
pub fn split_tokens<'a>(raw: &'a str, separator: &'a str) -> impl Iterator<Item = &'a str> {
    raw.split(separator).filter(|t| !t.is_empty())
}

/// The bucket of a numeric cell, `None` when blank.
#[inline]
pub fn bucket_token(raw: &str) -> Result<Option<i64>, BadValue> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok(None);
    }
    // Integers (Criteo's I1–I13) take the fast path; anything else must parse as a finite float.
    if let Ok(i) = raw.parse::<i64>() {
        return Ok(Some(if i > 2 { numeric_bucket(i as f64) } else { i }));
    }
    match raw.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(Some(numeric_bucket(v))),
        _ => Err(BadValue::NotANumber(raw.into())),
    }
}

/// All fields of a dataset, fitted on its training split.
#[derive(Debug, Clone)]
pub struct Encoder {
    pub dataset: String,
    pub fields: Vec<FieldEncoder>,
    pub group: Option<String>,
    /// Offset of each field's ids in an encoded row (scalars first, then sequences).
    offsets: Vec<usize>,
    width: usize,
}

impl Encoder {
    pub fn new(dataset: String, fields: Vec<FieldEncoder>, group: Option<String>) -> Self {
        let mut offsets = vec![0; fields.len()];
        let mut next = 0;
        let scalars = fields.iter().enumerate().filter(|(_, f)| !is_sequence(f));
        let sequences = fields.iter().enumerate().filter(|(_, f)| is_sequence(f));
        for (i, f) in scalars.chain(sequences) {
            offsets[i] = next;
            next += f.width();
        }
        Self { dataset, fields, group, offsets, width: next }
    }

    /// Ids per encoded row.
    pub fn width(&self) -> usize {
        self.width
    }
    /// Number of scalar (non-sequence) fields: the width of the `field_ids` model input.
    pub fn scalar_fields(&self) -> usize {
        self.fields.iter().filter(|f| !is_sequence(f)).count()
    }
    /// The slot range of field `i` in an encoded row.
    pub fn slots(&self, i: usize) -> std::ops::Range<usize> {
        self.offsets[i]..self.offsets[i] + self.fields[i].width()
    }
    /// The index of the field named `name`, searching from `hint` on (callers pass the field the key most
    /// likely names, so the first comparison usually hits).
    #[inline]
    pub fn field_index(&self, name: &str, hint: usize) -> Option<usize> {
        let n = self.fields.len();
        (0..n).map(|k| (hint + k) % n).find(|&i| self.fields[i].spec.name == name)
    }
    /// The slot of the gAUC group field (its single id) in an encoded row, when the dataset names one.
    pub fn group_slot(&self) -> Option<usize> {
        let name = self.group.as_deref()?;
        self.fields.iter().position(|f| f.spec.name == name).map(|i| self.slots(i).start)
    }

    /// Encodes one JSON object of raw values into `out` (length [`Self::width`]).
    pub fn encode_json_object(
        &self,
        object: &serde_json::Map<String, serde_json::Value>,
        missing_as_oov: bool,
        out: &mut [u32],
    ) -> Result<(), ValueError> {
        for (i, f) in self.fields.iter().enumerate() {
            let slots = &mut out[self.slots(i)];
            match object.get(&f.spec.name) {
                Some(v) => {
                    f.encode_json(v, slots).map_err(|reason| ValueError::Bad { field: f.spec.name.clone(), reason })?
                }
                None if missing_as_oov => slots.fill(f.vocab.oov_id()),
                None => return Err(ValueError::Missing { field: f.spec.name.clone() }),
            }
        }
        Ok(())
    }

    /// Writes the encoder as versioned JSON, atomically.
    pub fn save(&self, path: &Path) -> Result<(), FeatureError> {
        let file = EncoderFile::from(self);
        let bytes = serde_json::to_vec(&file).expect("encoder serialises");
        crate::paths::atomic_write(path, &bytes).map_err(|e| FeatureError::Io { path: path.into(), error: e })
    }

    pub fn load(path: &Path) -> Result<Self, FeatureError> {
        let bytes = std::fs::read(path).map_err(|e| FeatureError::Io { path: path.into(), error: e })?;
        let bad = |reason: String| FeatureError::Encoder { path: path.into(), reason };
        let file: EncoderFile = serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
        if file.format != ENCODER_FORMAT || file.version != ENCODER_VERSION {
            return Err(bad(format!(
                "format '{}' version {} (this build reads '{ENCODER_FORMAT}' version {ENCODER_VERSION})",
                file.format, file.version
            )));
        }
        Ok(file.into())
    }
}

fn is_sequence(f: &FieldEncoder) -> bool {
    matches!(f.spec.kind, FieldKind::Sequence { .. })
}

#[derive(Serialize, Deserialize)]
struct EncoderFile {
    format: String,
    version: u32,
    dataset: String,
    group: Option<String>,
    fields: Vec<FieldFile>,
}

#[derive(Serialize, Deserialize)]
struct FieldFile {
    spec: FieldSpec,
    tokens: Vec<Box<str>>,
}

impl From<&Encoder> for EncoderFile {
    fn from(e: &Encoder) -> Self {
        Self {
            format: ENCODER_FORMAT.into(),
            version: ENCODER_VERSION,
            dataset: e.dataset.clone(),
            group: e.group.clone(),
            fields: e
                .fields
                .iter()
                .map(|f| FieldFile { spec: f.spec.clone(), tokens: f.vocab.tokens().to_vec() })
                .collect(),
        }
    }
}

impl From<EncoderFile> for Encoder {
    fn from(f: EncoderFile) -> Self {
        let fields = f
            .fields
            .into_iter()
            .map(|ff| FieldEncoder { spec: ff.spec, vocab: Vocab::from_tokens(ff.tokens) })
            .collect();
        Encoder::new(f.dataset, fields, f.group)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vocab(tokens: &[&str]) -> Vocab {
        Vocab::from_tokens(tokens.iter().map(|t| (*t).into()).collect())
    }

    /// What the hash maps alone answer: the dense table must never disagree with them.
    fn by_hash(v: &Vocab, token: &str) -> u32 {
        v.ids.get(token).copied().unwrap_or(v.oov_id())
    }

    #[test]
    fn the_dense_table_gives_the_hash_maps_ids_for_every_token() {
        let v = vocab(&["35", "0", "007", "abc", "-3", "12", ""]);
        assert_eq!(v.dense.len(), 36, "small ids get a dense table");
        let probes = [
            "35",
            "0",
            "007",
            "7",
            "abc",
            "-3",
            "12",
            "",
            "36",
            "1000000",
            "+35",
            "035",
            "3.0",
            "99999999999999999999",
        ];
        for p in probes {
            assert_eq!(v.id(p), by_hash(&v, p), "token {p:?}");
        }
        for x in [-3i64, -1, 0, 7, 12, 35, 36, 1 << 40] {
            let expected = v.int_ids.get(&x).copied().unwrap_or(v.oov_id());
            assert_eq!(v.int_id(x), expected, "value {x}");
        }
    }

    #[test]
    fn sparse_or_large_integer_vocabularies_keep_the_hash_maps() {
        assert!(vocab(&["1", "5000000"]).dense.is_empty());
        assert!(vocab(&["1", "9000"]).dense.is_empty(), "9,000 slots for two tokens");
        assert!(vocab(&["free", "paid"]).dense.is_empty());
        let v = vocab(&["1", "5000000", "x"]);
        assert_eq!((v.id("5000000"), v.int_id(5_000_000), v.id("2")), (2, 2, v.oov_id()));
    }
}
