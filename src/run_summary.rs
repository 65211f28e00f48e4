//! `summary.json`: what a training run hands to the exporter and to people — one typed record, written by
//! `serve train` and read back by `serve export`. Every field is required: a missing or malformed one is an
//! error naming the file and the field, never a NaN or a 0.
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer, Serialize};

use crate::config::{Framework, StudentKind};

pub const SUMMARY_FORMAT: &str = "ensemble-serve/run-summary";
pub const SUMMARY_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum SummaryError {
    #[error("{path}: {error}")]
    Io { path: PathBuf, error: std::io::Error },
    /// serde's message names the field ("missing field `best_student` at line 3 column 1").
    #[error("{path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
}

/// AUC / logloss (/ gAUC) of one scorer on one split.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Scores {
    pub auc: f64,
    pub logloss: f64,
    /// Only for datasets with a group (user) field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gauc: Option<f64>,
}

/// One student's scores on a split, with its kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StudentScores {
    #[serde(rename = "type")]
    pub kind: StudentKind,
    #[serde(flatten)]
    pub scores: Scores,
}

/// The ensemble's and every student's scores on one split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SplitSummary {
    pub ensemble: Scores,
    pub students: Vec<StudentScores>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KnowledgeAbundance {
    pub tau: f64,
    /// Per student: knowledge abundance of each linear layer.
    pub per_student_layers: Vec<Vec<f64>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    pub format: String,
    pub version: u32,
    pub dataset: String,
    pub framework: Framework,
    pub students: Vec<StudentKind>,
    pub valid: SplitSummary,
    /// `null` when the dataset has no test split; the key itself is required.
    #[serde(deserialize_with = "required_option")]
    pub test: Option<SplitSummary>,
    /// Index of the student with the highest validation AUC.
    pub best_student: usize,
    pub best_epoch: usize,
    pub epochs_run: usize,
    #[serde(deserialize_with = "required_option")]
    pub train_samples_per_second: Option<f64>,
    pub mean_epoch_seconds: f64,
    pub knowledge_abundance: KnowledgeAbundance,
    pub train_rows: u64,
}

/// serde treats a missing `Option` field as `None`; with this it must be present (`null` is still `None`).
fn required_option<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    Option::deserialize(d)
}

impl RunSummary {
    pub fn load(path: &Path) -> Result<Self, SummaryError> {
        let bytes = std::fs::read(path).map_err(|error| SummaryError::Io { path: path.into(), error })?;
        let invalid = |reason: String| SummaryError::Invalid { path: path.into(), reason };
        let summary: Self = serde_json::from_slice(&bytes).map_err(|e| invalid(e.to_string()))?;
        summary.check().map_err(invalid)?;
        Ok(summary)
    }

    /// Cross-field consistency: the reason names the field that breaks it. A `String` because it only ever
    /// becomes the `reason` of [`SummaryError::Invalid`], which adds the file.
    fn check(&self) -> Result<(), String> {
        if self.format != SUMMARY_FORMAT || self.version != SUMMARY_VERSION {
            return Err(format!(
                "format `{}` version {}: expected `{SUMMARY_FORMAT}` version {SUMMARY_VERSION}",
                self.format, self.version
            ));
        }
        let k = self.students.len();
        let splits = std::iter::once(("valid", &self.valid)).chain(self.test.as_ref().map(|t| ("test", t)));
        for (name, split) in splits {
            if split.students.len() != k {
                let n = split.students.len();
                return Err(format!("{name}.students has {n} entries for {k} students"));
            }
        }
        if self.best_student >= k {
            return Err(format!("best_student = {}: only {k} students", self.best_student));
        }
        Ok(())
    }

    /// The ensemble's (`index` None) or student `index`'s scores on the validation or test split.
    pub fn scores(&self, split: &SplitSummary, index: Option<usize>) -> Scores {
        index.map_or(split.ensemble, |k| split.students[k].scores)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> RunSummary {
        let s = Scores { auc: 0.9, logloss: 0.3, gauc: None };
        let split =
            SplitSummary { ensemble: s, students: vec![StudentScores { kind: StudentKind::Mlp, scores: s }; 2] };
        RunSummary {
            format: SUMMARY_FORMAT.into(),
            version: SUMMARY_VERSION,
            dataset: "frappe_ctr".into(),
            framework: Framework::Kdef,
            students: vec![StudentKind::Mlp; 2],
            valid: split.clone(),
            test: None,
            best_student: 1,
            best_epoch: 3,
            epochs_run: 5,
            train_samples_per_second: Some(1e5),
            mean_epoch_seconds: 2.0,
            knowledge_abundance: KnowledgeAbundance { tau: 0.05, per_student_layers: vec![vec![1.0]; 2] },
            train_rows: 1000,
        }
    }

    fn load_with(edit: impl FnOnce(&mut serde_json::Value)) -> Result<RunSummary, SummaryError> {
        let mut v = serde_json::to_value(sample()).unwrap();
        edit(&mut v);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("summary.json");
        std::fs::write(&path, serde_json::to_vec(&v).unwrap()).unwrap();
        RunSummary::load(&path)
    }

    #[test]
    fn a_summary_reads_back_as_written() {
        assert_eq!(load_with(|_| {}).unwrap(), sample());
    }

    #[test]
    fn every_missing_field_is_named() {
        let keys: Vec<String> = serde_json::to_value(sample()).unwrap().as_object().unwrap().keys().cloned().collect();
        for key in keys {
            let err = load_with(|v| drop(v.as_object_mut().unwrap().remove(&key))).unwrap_err().to_string();
            assert!(err.contains(&format!("missing field `{key}`")), "{key}: {err}");
        }
        let err = load_with(|v| drop(v["valid"]["students"][1].as_object_mut().unwrap().remove("auc")));
        assert!(err.unwrap_err().to_string().contains("missing field `auc`"));
    }

    #[test]
    fn inconsistent_fields_are_named() {
        let err = load_with(|v| v["best_student"] = 2.into()).unwrap_err().to_string();
        assert!(err.contains("best_student = 2: only 2 students"), "{err}");
        let err = load_with(|v| v["framework"] = "kdf".into()).unwrap_err().to_string();
        assert!(err.contains("unknown variant `kdf`"), "{err}");
        let err = load_with(|v| v["valid"]["ensemble"]["auc"] = serde_json::Value::Null).unwrap_err().to_string();
        assert!(err.contains("invalid type: null"), "{err}");
    }
}
