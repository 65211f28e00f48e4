//! Shared test helpers: where the real data is, and the rule for when it is missing.
#![allow(dead_code)]
use std::path::PathBuf;

/// `$CTR_DATA_DIR`, else `../shared/data` beside the crate. Missing data: under `CI=true` a failure,
/// otherwise a loud skip (`None`).
pub fn data_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("CTR_DATA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(ensemble_serve::paths::DEFAULT_DATA_DIR));
    if dir.join("benchmarks").is_dir() {
        return Some(dir);
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("CI=true but the real data is missing at {} (set CTR_DATA_DIR)", dir.display());
    }
    eprintln!("\n*** SKIPPED: real CTR data not found at {} (set CTR_DATA_DIR) ***\n", dir.display());
    None
}

/// Returns from the test when the real data is absent (outside CI).
#[macro_export]
macro_rules! require_data {
    () => {
        match common::data_dir() {
            Some(d) => d,
            None => return,
        }
    };
}

/// The setup's peers venv (`tritonclient`, the load tests' peers); absent: a failure under CI=true, else a
/// loud skip.
pub fn peers_python() -> Option<PathBuf> {
    let python = match std::env::var_os("ENSEMBLE_SERVE_PEERS_PYTHON") {
        Some(given) => Some(PathBuf::from(given)).filter(|p| p.is_file()),
        None => ensemble_serve::paths::installed_peers_python(),
    };
    if python.is_some() {
        return python;
    }
    let why = "no peers venv (ENSEMBLE_SERVE_PEERS_PYTHON, else the cache's peers/bin/python): run scripts/setup";
    assert!(std::env::var("CI").map_or(true, |v| v != "true"), "CI=true but {why}");
    eprintln!("\n*** SKIPPED: {why} ***\n");
    None
}

/// A command-line tool from the setup's test-tools venv (ENSEMBLE_SERVE_PYTHON's `bin/`: `st`,
/// `openapi-python-client`, `python`); absent: a failure under CI=true, else a loud skip.
pub fn test_tool(name: &str) -> Option<PathBuf> {
    let python = std::env::var_os("ENSEMBLE_SERVE_PYTHON").map(PathBuf::from);
    if let Some(tool) = python.and_then(|p| Some(p.parent()?.join(name))).filter(|t| t.is_file()) {
        return Some(tool);
    }
    let why = format!("`{name}` is missing from ENSEMBLE_SERVE_PYTHON's venv: run scripts/setup and source its env.sh");
    assert!(std::env::var("CI").map_or(true, |v| v != "true"), "CI=true but {why}");
    eprintln!("\n*** SKIPPED: {why} ***\n");
    None
}

/// A dataset spec from `config/datasets/` resolved against the data dir.
pub fn spec(name: &str, data: &std::path::Path) -> ensemble_serve::features::DatasetSpec {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config/datasets").join(format!("{name}.toml"));
    ensemble_serve::features::DatasetSpec::load(&path, data).expect("shipped dataset spec loads")
}

/// The shipped default model's encoder.
pub fn shipped_encoder() -> ensemble_serve::features::Encoder {
    let dir =
        ensemble_serve::artifact::latest_version(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models"), "default");
    ensemble_serve::artifact::Artifact::load(&dir.unwrap()).unwrap().encoder
}

/// The ONNX Runtime library scripts/setup installs (or ORT_DYLIB_PATH); a clear failure when absent.
pub fn ort_env() -> &'static ort::environment::Environment {
    let lib = ensemble_serve::runtime::resolve_library(None);
    ensemble_serve::runtime::init(&lib).unwrap_or_else(|e| panic!("{e}: run scripts/setup first"))
}

/// Reads a CSV with no quoting (the benchmark files have none) into header + rows, independently of the crate.
pub fn read_plain_csv(path: &std::path::Path) -> (Vec<String>, Vec<Vec<String>>) {
    let text = std::fs::read_to_string(path).expect("benchmark file readable");
    assert!(!text.contains('"'), "{} has quotes; this reader assumes none", path.display());
    let mut lines = text.lines();
    let header = lines.next().unwrap().split(',').map(str::to_string).collect();
    let rows = lines.map(|l| l.split(',').map(str::to_string).collect()).collect();
    (header, rows)
}
pub mod app;
pub mod grpc;
pub mod server;
#[cfg(feature = "train")]
pub mod trained;
