//! The process's single ONNX Runtime environment, loaded from a shared library at run time.
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ort::environment::Environment;

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("ONNX Runtime library not found at {0} (run scripts/setup, or pass --ort-lib / set ORT_DYLIB_PATH)")]
    Missing(PathBuf),
    #[error("cannot load ONNX Runtime from {path}: {reason}")]
    Load { path: PathBuf, reason: String },
    #[error("ONNX Runtime was already initialised from {0}; one environment per process")]
    AlreadyFrom(PathBuf),
}

static ENV: OnceLock<(PathBuf, Environment)> = OnceLock::new();
static INIT_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Loads ONNX Runtime from `library` once; later calls with the same path return the same environment.
pub fn init(library: &Path) -> Result<&'static Environment, RuntimeError> {
    let _serialised = INIT_LOCK
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some((path, env)) = ENV.get() {
        return if path == library {
            Ok(env)
        } else {
            Err(RuntimeError::AlreadyFrom(path.clone()))
        };
    }
    if !library.is_file() {
        return Err(RuntimeError::Missing(library.to_path_buf()));
    }
    let load_err = |reason: String| RuntimeError::Load {
        path: library.to_path_buf(),
        reason,
    };
    let builder = ort::init_from(library).map_err(|e| load_err(e.to_string()))?;
    let env = builder
        .with_name("ensemble-serve")
        .build()
        .map_err(|e| load_err(e.to_string()))?;
    let (_, env) = ENV.get_or_init(|| (library.to_path_buf(), env));
    Ok(env)
}

/// The library path from, in order: an explicit choice (flag or config), `ORT_DYLIB_PATH`, the setup cache.
pub fn resolve_library(explicit: Option<&Path>) -> PathBuf {
    explicit
        .map(Path::to_path_buf)
        .or_else(|| std::env::var_os("ORT_DYLIB_PATH").map(PathBuf::from))
        .unwrap_or_else(crate::paths::default_ort_library)
}
