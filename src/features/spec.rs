//! Dataset descriptions (TOML): where the rows are, how to read them, and what each field is.
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::FeatureError;

/// One dataset: files, format, label and fields.  See `config/datasets/*.toml`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DatasetSpec {
    pub name: String,
    pub format: Format,
    pub files: Files,
    /// Label column (delimited formats with a header); libsvm and criteo carry the label first.
    #[serde(default = "default_label")]
    pub label: String,
    /// Values seen fewer times than this in training map to the field's OOV id (a field may override).
    #[serde(default = "one")]
    pub min_count: u32,
    /// What to do with a malformed line.
    #[serde(default)]
    pub on_error: ErrorPolicy,
    /// Field whose value groups rows for gAUC (e.g. the user id).
    #[serde(default)]
    pub group: Option<String>,
    pub fields: Vec<FieldSpec>,
}

/// File layout of the rows.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// Comma-separated with a header row.
    Csv,
    /// Tab-separated with a header row.
    Tsv,
    /// `label idx:val …` (labels 1/0 or 1/-1).
    Libsvm,
    /// Criteo: label, 13 integers, 26 hashed categoricals, tab-separated, no header, blanks allowed.
    Criteo,
}

/// The splits: three files, or one file and a seeded split.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Files {
    pub train: PathBuf,
    #[serde(default)]
    pub valid: Option<PathBuf>,
    #[serde(default)]
    pub test: Option<PathBuf>,
    /// With only `train` given: fractions for train/valid/test (summing to 1) and the shuffle seed.
    #[serde(default)]
    pub split: Option<SplitSpec>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SplitSpec {
    pub ratios: [f64; 3],
    #[serde(default = "default_seed")]
    pub seed: u64,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ErrorPolicy {
    /// Count malformed lines, report the first ten, keep going.
    #[default]
    Skip,
    /// Stop at the first malformed line with its file, line number and reason.
    Fail,
}

/// One input field.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(try_from = "RawFieldSpec", into = "RawFieldSpec")]
pub struct FieldSpec {
    pub name: String,
    pub kind: FieldKind,
    /// Per-field override of the dataset's `min_count`.
    pub min_count: Option<u32>,
    /// libsvm only: the inclusive feature-index range that belongs to this field.
    pub indices: Option<[u64; 2]>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum FieldKind {
    /// A string value → an id.
    Categorical,
    /// A number bucketed as `floor(ln(v)^2)` when v > 2, else its integer value, then categorical.
    NumericBucket,
    /// Tokens split by `separator`, truncated/padded to `max_len`; the models mean-pool them (padding masked).
    Sequence { separator: String, max_len: usize },
}

/// The TOML shape of a field: flat keys, unknown keys rejected (serde cannot combine `flatten` with that).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFieldSpec {
    name: String,
    kind: KindName,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    separator: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max_len: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    min_count: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    indices: Option<[u64; 2]>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum KindName {
    Categorical,
    NumericBucket,
    Sequence,
}

/// A dataset spec that breaks a rule, naming the field when one is at fault.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SpecRule {
    #[error("no fields declared")]
    NoFields,
    #[error("field '{0}' is declared twice")]
    Duplicate(String),
    #[error("field '{field}': {rule}")]
    Field { field: String, rule: &'static str },
    #[error("group field '{0}' is not among the fields")]
    UnknownGroup(String),
    #[error("criteo format has 39 fields (13 numeric + 26 categorical), {0} declared")]
    CriteoWidth(usize),
    #[error("split ratios {0:?} must be non-negative and sum to 1")]
    Ratios([f64; 3]),
    #[error("give either valid/test files or a split, not both")]
    SplitAndFiles,
}

fn field_rule(field: &str, rule: &'static str) -> SpecRule {
    SpecRule::Field { field: field.into(), rule }
}

impl TryFrom<RawFieldSpec> for FieldSpec {
    type Error = SpecRule;
    fn try_from(r: RawFieldSpec) -> Result<Self, SpecRule> {
        let kind = match (r.kind, r.separator, r.max_len) {
            (KindName::Sequence, Some(separator), Some(max_len)) => FieldKind::Sequence { separator, max_len },
            (KindName::Sequence, _, _) => return Err(field_rule(&r.name, "a sequence needs separator and max_len")),
            (_, None, None) => match r.kind {
                KindName::Categorical => FieldKind::Categorical,
                _ => FieldKind::NumericBucket,
            },
            _ => return Err(field_rule(&r.name, "separator/max_len apply to sequence fields only")),
        };
        Ok(Self { name: r.name, kind, min_count: r.min_count, indices: r.indices })
    }
}

impl From<FieldSpec> for RawFieldSpec {
    fn from(f: FieldSpec) -> Self {
        let (kind, separator, max_len) = match f.kind {
            FieldKind::Categorical => (KindName::Categorical, None, None),
            FieldKind::NumericBucket => (KindName::NumericBucket, None, None),
            FieldKind::Sequence { separator, max_len } => (KindName::Sequence, Some(separator), Some(max_len)),
        };
        Self { name: f.name, kind, separator, max_len, min_count: f.min_count, indices: f.indices }
    }
}

fn default_label() -> String {
    "label".into()
}
fn one() -> u32 {
    1
}
fn default_seed() -> u64 {
    2024
}

impl DatasetSpec {
    /// Reads a spec; relative file paths are resolved against `data_dir`.
    pub fn load(path: &Path, data_dir: &Path) -> Result<Self, FeatureError> {
        let text = std::fs::read_to_string(path).map_err(|e| FeatureError::Io { path: path.into(), error: e })?;
        let mut spec: Self =
            toml::from_str(&text).map_err(|e| FeatureError::Spec { path: path.into(), reason: e.to_string() })?;
        spec.files.resolve(data_dir);
        spec.validate().map_err(|e| FeatureError::Spec { path: path.into(), reason: e.to_string() })?;
        Ok(spec)
    }

    pub fn validate(&self) -> Result<(), SpecRule> {
        if self.fields.is_empty() {
            return Err(SpecRule::NoFields);
        }
        let mut names = std::collections::HashSet::new();
        for f in &self.fields {
            if !names.insert(f.name.as_str()) {
                return Err(SpecRule::Duplicate(f.name.clone()));
            }
            if let FieldKind::Sequence { max_len: 0, .. } = f.kind {
                return Err(field_rule(&f.name, "max_len must be at least 1"));
            }
            if let FieldKind::Sequence { separator, .. } = &f.kind {
                if separator.is_empty() {
                    return Err(field_rule(&f.name, "separator must not be empty"));
                }
            }
        }
        if let Some(g) = &self.group {
            if !names.contains(g.as_str()) {
                return Err(SpecRule::UnknownGroup(g.clone()));
            }
        }
        if self.format == Format::Criteo && self.fields.len() != 39 {
            return Err(SpecRule::CriteoWidth(self.fields.len()));
        }
        if let Some(split) = &self.files.split {
            let sum: f64 = split.ratios.iter().sum();
            if (sum - 1.0).abs() > 1e-9 || split.ratios.iter().any(|r| *r < 0.0) {
                return Err(SpecRule::Ratios(split.ratios));
            }
            if self.files.valid.is_some() || self.files.test.is_some() {
                return Err(SpecRule::SplitAndFiles);
            }
        }
        Ok(())
    }

    /// Index of the group field, if any.
    pub fn group_index(&self) -> Option<usize> {
        self.group.as_ref().and_then(|g| self.fields.iter().position(|f| &f.name == g))
    }
}

impl Files {
    fn resolve(&mut self, data_dir: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = data_dir.join(&*p);
            }
        };
        fix(&mut self.train);
        self.valid.iter_mut().for_each(fix);
        self.test.iter_mut().for_each(fix);
    }
}
