//! Field specs, vocabularies and the encoder: shared by training (text rows) and serving (JSON).
pub mod encoder;
pub mod fit;
pub mod json;
pub mod spec;

use std::path::PathBuf;

pub use encoder::{Encoder, FieldEncoder, ValueError, Vocab};
pub use fit::VocabCounter;
pub use spec::{DatasetSpec, ErrorPolicy, FieldKind, FieldSpec, Format};

/// A value a field cannot take; the caller names the row and the field.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BadValue {
    #[error("'{0}' is not a number")]
    NotANumber(String),
    #[error("expected a value, got an object")]
    Object,
    #[error("an array is only accepted for a sequence field")]
    Array,
    #[error("expected a single value, got {0}")]
    Nested(&'static str),
    /// serde's message for a value that is not JSON of any accepted shape.
    #[error("{0}")]
    Json(String),
}

#[derive(Debug, thiserror::Error)]
pub enum FeatureError {
    // `error`, not `source`: the message holds it, and `{e:#}` would print a source twice.
    #[error("{path}: {error}")]
    Io { path: PathBuf, error: std::io::Error },
    #[error("dataset spec {path}: {reason}")]
    Spec { path: PathBuf, reason: String },
    #[error("encoder file {path}: {reason}")]
    Encoder { path: PathBuf, reason: String },
}
