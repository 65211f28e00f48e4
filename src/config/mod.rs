//! Server and training configuration: TOML files (`config/*.toml`) whose every key has a default here;
//! CLI flags and environment variables override them.
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

mod server;
mod train;

pub use server::ServerConfig;
pub use train::{DeviceChoice, DhenFusion, DhenModule, Framework, InvalidKey, StudentKind, TrainConfig};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    // `error`, not `source`: the message holds it, and `{e:#}` would print a source twice.
    #[error("{path}: {error}")]
    Io { path: PathBuf, error: std::io::Error },
    #[error("{path}: {reason}")]
    Parse { path: PathBuf, reason: String },
}

/// Reads a TOML file into `T`; unknown keys are errors (a typo must not silently fall back to a default).
pub fn load<T: DeserializeOwned>(path: &Path) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Io { path: path.into(), error: e })?;
    toml::from_str(&text).map_err(|e| ConfigError::Parse { path: path.into(), reason: e.to_string() })
}
