//! NVIDIA's `tritonclient.http` and `tritonclient.grpc` at their default settings against the real server on
//! the shipped model (tests/kserve/tritonclient_check.py): metadata, config, binary, JSON, raw and typed
//! tensors, versions, errors.
mod common;

use std::path::PathBuf;
use std::process::Command;

use common::server::Server;

/// The setup's peers venv, which holds `tritonclient`; absent: a failure under CI=true, else a loud skip.
fn client_python() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("ENSEMBLE_SERVE_PEERS_PYTHON").map(PathBuf::from).filter(|p| p.is_file()) {
        return Some(p);
    }
    let why = "ENSEMBLE_SERVE_PEERS_PYTHON is unset or missing: run scripts/setup and source its env.sh";
    assert!(std::env::var("CI").map_or(true, |v| v != "true"), "CI=true but {why}");
    eprintln!("\n*** SKIPPED: {why} ***\n");
    None
}

#[test]
fn tritonclient_http_and_grpc_at_default_settings() {
    let data_dir = require_data!();
    let Some(python) = client_python() else { return };
    let spec = common::spec("frappe_ctr", &data_dir);
    let models = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models");
    let grpc_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let grpc = format!("127.0.0.1:{grpc_port}");
    let server = Server::start(&models, &["--grpc-bind", &grpc]);
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/kserve/tritonclient_check.py");
    let out = Command::new(python)
        .arg(script)
        .args(["--url", server.base.trim_start_matches("http://"), "--grpc-url", &grpc])
        .arg("--rows")
        .arg(spec.files.test.as_ref().unwrap())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}");
    assert!(out.status.success(), "tritonclient checks failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(stdout.lines().filter(|l| l.starts_with("ok ")).count(), 22, "every check ran");
}
