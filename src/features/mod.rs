//! Field specs, vocabularies and the encoder: shared by training (text rows) and serving (JSON).
pub mod encoder;
pub mod fit;
pub mod json;
pub mod spec;

use std::path::PathBuf;

pub use encoder::{Encoder, FieldEncoder, ValueError, Vocab};
pub use fit::VocabCounter;
pub use spec::{DatasetSpec, ErrorPolicy, FieldKind, FieldSpec, Format};

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
