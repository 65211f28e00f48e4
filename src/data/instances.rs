//! A split's rows as the JSON instances a client would send (raw values keyed by field name), with their
//! labels: what the load generator replays and the serving benchmarks score.
use std::path::PathBuf;
use std::sync::Arc;

use serde_json::{Map, Value};

use super::{DataError, RowReader, Split};
use crate::features::DatasetSpec;

/// Raw rows of one split as JSON objects, and their labels.
pub struct Instances {
    pub objects: Vec<Map<String, Value>>,
    pub labels: Vec<f32>,
}

/// The file of `split`; a spec that splits one file at encode time has none.
pub fn split_file(spec: &DatasetSpec, split: Split) -> Result<PathBuf, DataError> {
    let file = match split {
        Split::Train => Some(&spec.files.train),
        Split::Valid => spec.files.valid.as_ref(),
        Split::Test => spec.files.test.as_ref(),
    };
    let reason = || format!("dataset '{}' has no separate {split} file", spec.name);
    file.cloned().ok_or_else(|| DataError::Spec { reason: reason() })
}

/// Reads at most `limit` rows of `split`; every cell stays the string the file holds.
pub fn read_instances(spec: &DatasetSpec, split: Split, limit: Option<usize>) -> Result<Instances, DataError> {
    let path = split_file(spec, split)?;
    let mut reader = RowReader::open(spec, &path, Arc::default())?;
    let names: Vec<&str> = spec.fields.iter().map(|f| f.name.as_str()).collect();
    let (mut objects, mut labels) = (Vec::new(), Vec::new());
    while let Some(row) = reader.next_row()? {
        if limit.is_some_and(|n| objects.len() >= n) {
            break;
        }
        objects.push(names.iter().zip(row.cells()).map(|(k, v)| (k.to_string(), Value::from(v))).collect());
        labels.push(row.label);
    }
    Ok(Instances { objects, labels })
}

/// A ranking request's parts from real rows: the context (the `context_fields` of `rows[0]`) and one
/// candidate per row (its other fields). Rows that share their context fields make a real ranking request;
/// for others the context of the first row stands for all.
pub fn split_context(
    rows: &[Map<String, Value>],
    context_fields: &[&str],
) -> (Map<String, Value>, Vec<Map<String, Value>>) {
    let context = rows
        .first()
        .map(|r| {
            r.iter()
                .filter(|(k, _)| context_fields.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default();
    let candidates = rows
        .iter()
        .map(|r| {
            r.iter()
                .filter(|(k, _)| !context_fields.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .collect();
    (context, candidates)
}

/// The `instances` equivalent of a context + candidates request: every candidate with the context's fields.
pub fn merge_context(context: &Map<String, Value>, candidates: &[Map<String, Value>]) -> Vec<Map<String, Value>> {
    candidates
        .iter()
        .map(|c| {
            let mut row = context.clone();
            row.extend(c.iter().map(|(k, v)| (k.clone(), v.clone())));
            row
        })
        .collect()
}
