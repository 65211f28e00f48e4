//! Counting values on the training split and turning the counts into vocabularies.
use compact_str::CompactString;
use rustc_hash::FxHashMap;

use super::encoder::{bucket_token, split_tokens, Encoder, FieldEncoder, Vocab};
use super::spec::{DatasetSpec, FieldKind};
use super::BadValue;

/// Per-field value counts; memory grows with the number of distinct values, not rows.
#[derive(Debug)]
pub struct VocabCounter {
    counts: Vec<FxHashMap<CompactString, u64>>,
    kinds: Vec<FieldKind>,
    /// Per-row scratch: each numeric cell's bucket (None for blanks and non-numeric fields).
    buckets: Vec<Option<i64>>,
}

impl VocabCounter {
    pub fn new(spec: &DatasetSpec) -> Self {
        Self {
            counts: vec![FxHashMap::default(); spec.fields.len()],
            kinds: spec.fields.iter().map(|f| f.kind.clone()).collect(),
            buckets: Vec::with_capacity(spec.fields.len()),
        }
    }

    /// Counts one row's cells. Numeric cells are parsed once, all before anything is counted, so a
    /// malformed row leaves no partial counts.
    pub fn add_row<'a>(&mut self, cells: impl Iterator<Item = &'a str> + Clone) -> Result<(), (usize, BadValue)> {
        self.buckets.clear();
        for (i, raw) in cells.clone().enumerate() {
            let bucket = match self.kinds[i] {
                FieldKind::NumericBucket => bucket_token(raw).map_err(|e| (i, e))?,
                _ => None,
            };
            self.buckets.push(bucket);
        }
        for (i, raw) in cells.enumerate() {
            let counts = &mut self.counts[i];
            match &self.kinds[i] {
                FieldKind::Categorical => bump(counts, raw),
                FieldKind::NumericBucket => match self.buckets[i] {
                    Some(b) => bump(counts, itoa::Buffer::new().format(b)),
                    None => bump(counts, ""),
                },
                FieldKind::Sequence { separator, max_len } => {
                    // Only tokens that survive truncation can ever be looked up.
                    for tok in split_tokens(raw, separator).take(*max_len) {
                        bump(counts, tok);
                    }
                }
            }
        }
        Ok(())
    }

    /// Keeps values seen at least `min_count` times, most frequent first (ties by value, for determinism).
    pub fn into_encoder(self, spec: &DatasetSpec) -> Encoder {
        let fields = spec
            .fields
            .iter()
            .zip(self.counts)
            .map(|(f, counts)| {
                let min = f.min_count.unwrap_or(spec.min_count).max(1) as u64;
                let mut kept: Vec<(CompactString, u64)> = counts.into_iter().filter(|(_, c)| *c >= min).collect();
                kept.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
                let tokens = kept.into_iter().map(|(t, _)| Box::from(t.as_str())).collect();
                FieldEncoder { spec: f.clone(), vocab: Vocab::from_tokens(tokens) }
            })
            .collect();
        Encoder::new(spec.name.clone(), fields, spec.group.clone())
    }
}

#[inline]
fn bump(map: &mut FxHashMap<CompactString, u64>, token: &str) {
    match map.get_mut(token) {
        Some(c) => *c += 1,
        None => {
            map.insert(CompactString::from(token), 1);
        }
    }
}
