//! The features layer on the real benchmark splits: counts, vocabularies (checked by an independent count),
//! sequences, and identical ids through the training (text) and serving (JSON) paths.
mod common;

use std::collections::{HashMap, HashSet};

use ensemble_serve::data::encode::{encode_file, fit_encoder};
use ensemble_serve::data::Split;
use ensemble_serve::features::{Encoder, FieldKind};
use serde_json::{json, Map, Value};

fn encode_all(spec: &ensemble_serve::features::DatasetSpec, enc: &Encoder, part: Split) -> (Vec<u32>, Vec<f32>, u64) {
    let (mut ids, mut labels) = (Vec::new(), Vec::new());
    let stats = encode_file(spec, enc, part, false, |row, label| {
        ids.extend_from_slice(row);
        labels.push(label);
        Ok(())
    })
    .unwrap();
    (ids, labels, stats.rows)
}

/// Distinct values per column of the training CSV, counted without the crate.
fn independent_vocab_sizes(path: &std::path::Path, sequence: Option<(&str, &str)>) -> HashMap<String, usize> {
    let (header, rows) = common::read_plain_csv(path);
    let mut sets: HashMap<String, HashSet<String>> = HashMap::new();
    for row in &rows {
        for (name, value) in header.iter().zip(row).skip(1) {
            let set = sets.entry(name.clone()).or_default();
            match sequence {
                Some((seq, sep)) if seq == name => value.split(sep).filter(|t| !t.is_empty()).take(5).for_each(|t| {
                    set.insert(t.to_string());
                }),
                _ => {
                    set.insert(value.clone());
                }
            }
        }
    }
    sets.into_iter().map(|(k, v)| (k, v.len() + 2)).collect()
}

#[test]
fn frappe_counts_and_vocabularies() {
    let data = require_data!();
    let spec = common::spec("frappe_ctr", &data);
    let (enc, fit) = fit_encoder(&spec, false).unwrap();
    assert_eq!(fit.rows, 202_026);
    assert_eq!(enc.fields.len(), 10);
    let valid = encode_file(&spec, &enc, Split::Valid, false, |_, _| Ok(())).unwrap();
    let test = encode_file(&spec, &enc, Split::Test, false, |_, _| Ok(())).unwrap();
    assert_eq!((valid.rows, test.rows), (57_721, 28_862));
    assert_eq!(fit.rejects.count + valid.rejects.count + test.rejects.count, 0);
    eprintln!(
        "frappe label mean: train {:.4} valid {:.4} test {:.4}",
        fit.label_mean(),
        valid.label_mean(),
        test.label_mean()
    );
    assert!((fit.label_mean() - 1.0 / 3.0).abs() < 0.01, "2 negatives per positive");
    let want = independent_vocab_sizes(&spec.files.train, None);
    for f in &enc.fields {
        assert_eq!(f.vocab.size(), want[&f.spec.name], "vocabulary of {}", f.spec.name);
    }
}

#[test]
fn ml100k_counts_vocabularies_and_genre_sequences() {
    let data = require_data!();
    let spec = common::spec("ml100k_ctr", &data);
    let (enc, fit) = fit_encoder(&spec, false).unwrap();
    assert_eq!(fit.rows, 58_284);
    let (valid_ids, _, valid_rows) = encode_all(&spec, &enc, Split::Valid);
    let (_, _, test_rows) = encode_all(&spec, &enc, Split::Test);
    assert_eq!((valid_rows, test_rows), (7_285, 7_286));
    let want = independent_vocab_sizes(&spec.files.train, Some(("Genres", "^")));
    for f in &enc.fields {
        assert_eq!(f.vocab.size(), want[&f.spec.name], "vocabulary of {}", f.spec.name);
    }
    let genres = enc.fields.iter().position(|f| f.spec.name == "Genres").unwrap();
    assert!(matches!(enc.fields[genres].spec.kind, FieldKind::Sequence { max_len: 5, .. }));
    // Against the raw text: token k of row r is the id of the k-th genre, then padding.
    let (_, rows) = common::read_plain_csv(&spec.files.valid.clone().unwrap());
    let slots = enc.slots(genres);
    for (r, row) in rows.iter().enumerate() {
        let tokens: Vec<&str> = row[7].split('^').filter(|t| !t.is_empty()).collect();
        assert!(tokens.len() <= 5, "row {r} has {} genres", tokens.len());
        let ids = &valid_ids[r * enc.width() + slots.start..r * enc.width() + slots.end];
        for (k, id) in ids.iter().enumerate() {
            match tokens.get(k) {
                Some(t) => assert_eq!(*id, enc.fields[genres].vocab.id(t)),
                None => assert_eq!(*id, 0, "padding after the last genre"),
            }
        }
    }
}

/// Every row of a real validation split, sent as a JSON object the way a client would (strings; numbers
/// where the text is an integer; sequences as arrays and as joined strings), encodes to the training ids.
fn json_path_matches_training_path(name: &str) {
    let data = require_data!();
    let spec = common::spec(name, &data);
    let (enc, _) = fit_encoder(&spec, false).unwrap();
    let (train_ids, _, rows) = encode_all(&spec, &enc, Split::Valid);
    let (header, csv_rows) = common::read_plain_csv(&spec.files.valid.clone().unwrap());
    assert_eq!(rows as usize, csv_rows.len());
    let mut out = vec![0u32; enc.width()];
    for (r, row) in csv_rows.iter().enumerate() {
        let expected = &train_ids[r * enc.width()..(r + 1) * enc.width()];
        for variant in 0..3 {
            let mut obj = Map::new();
            for (col, value) in header.iter().zip(row).skip(1) {
                let f = enc.fields.iter().find(|f| &f.spec.name == col).unwrap();
                let v = match (&f.spec.kind, variant) {
                    (FieldKind::Sequence { separator, .. }, 1) => {
                        json!(value.split(separator.as_str()).filter(|t| !t.is_empty()).collect::<Vec<_>>())
                    }
                    (_, 2) => value.parse::<i64>().map(Value::from).unwrap_or_else(|_| json!(value)),
                    _ => json!(value),
                };
                obj.insert(col.clone(), v);
            }
            enc.encode_json_object(&obj, false, &mut out).unwrap();
            assert_eq!(out, expected, "{name} valid row {r} (JSON variant {variant})");
        }
    }
}

#[test]
fn json_path_matches_training_path_frappe() {
    json_path_matches_training_path("frappe_ctr");
}

#[test]
fn json_path_matches_training_path_ml100k() {
    json_path_matches_training_path("ml100k_ctr");
}

#[test]
fn json_errors_name_the_field() {
    let data = require_data!();
    let spec = common::spec("ml100k_ctr", &data);
    let (enc, _) = fit_encoder(&spec, false).unwrap();
    let mut out = vec![0u32; enc.width()];
    let obj = |v: Value| v.as_object().unwrap().clone();
    let full = json!({"UserID": 8, "Gender": "M", "Age": 36, "Occupation": "administrator", "MovieID": 233,
                      "Release": 1992, "Genres": ["Action"]});
    enc.encode_json_object(&obj(full.clone()), false, &mut out).unwrap();
    let mut missing = obj(full.clone());
    missing.remove("Gender");
    let err = enc.encode_json_object(&missing, false, &mut out).unwrap_err();
    assert_eq!(err.to_string(), "field 'Gender' is missing");
    enc.encode_json_object(&missing, true, &mut out).unwrap();
    assert_eq!(out[1], enc.fields[1].vocab.oov_id(), "missing as OOV when configured");
    let mut nested = obj(full);
    nested.insert("Age".into(), json!({"years": 36}));
    let err = enc.encode_json_object(&nested, false, &mut out).unwrap_err();
    assert!(err.to_string().starts_with("field 'Age':"), "{err}");
}

#[test]
fn encoder_file_round_trips() {
    let data = require_data!();
    let spec = common::spec("ml100k_ctr", &data);
    let (enc, _) = fit_encoder(&spec, false).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("encoder.json");
    enc.save(&path).unwrap();
    let back = Encoder::load(&path).unwrap();
    assert_eq!(back.width(), enc.width());
    for (a, b) in enc.fields.iter().zip(&back.fields) {
        assert_eq!(a.spec, b.spec);
        assert_eq!(a.vocab.tokens(), b.vocab.tokens());
    }
    std::fs::write(&path, br#"{"format":"ensemble-serve/encoder","version":99}"#).unwrap();
    let err = Encoder::load(&path).unwrap_err().to_string();
    assert!(err.contains("encoder.json"), "{err}");
}
