//! Where things live by default (the per-user cache, the real-data directory), and how files are written.
use std::io::{self, Write};
use std::path::{Path, PathBuf};

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

/// The Python of the load tests' peers venv that `scripts/setup` installs (its `env.sh` exports the same path
/// as `ENSEMBLE_SERVE_PEERS_PYTHON`), when it is there.
pub fn installed_peers_python() -> Option<PathBuf> {
    Some(cache_dir().join("peers").join("bin").join("python")).filter(|p| p.is_file())
}

/// Where real CTR data lives unless `CTR_DATA_DIR` says otherwise (relative to the working directory).
pub const DEFAULT_DATA_DIR: &str = "../shared/data";

/// Real CTR data: `$CTR_DATA_DIR`, else [`DEFAULT_DATA_DIR`].
pub fn data_dir() -> PathBuf {
    std::env::var_os("CTR_DATA_DIR").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR))
}

/// Writes `bytes` to `path` through a temporary file in the same directory and a rename.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    // tempfile creates 0600; artifacts are meant to be read by other users (e.g. a container's).
    tmp.as_file().set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}
