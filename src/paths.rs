//! Where things live by default: the per-user cache and the real-data directory.
use std::path::PathBuf;

/// `${ENSEMBLE_SERVE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ensemble-serve}`, the same rule as `scripts/setup`.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("ENSEMBLE_SERVE_CACHE") {
        return PathBuf::from(dir);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"));
    base.join("ensemble-serve")
}

/// The ONNX Runtime library `scripts/setup` installs.
pub fn default_ort_library() -> PathBuf {
    cache_dir().join("onnxruntime-1.31.1").join("libonnxruntime.so.1.31.1")
}

/// Real CTR data: `$CTR_DATA_DIR`, else `../shared/data` relative to the working directory.
pub fn data_dir() -> PathBuf {
    std::env::var_os("CTR_DATA_DIR").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("../shared/data"))
}
