//! NVIDIA's `tritonclient.http` and `tritonclient.grpc` at their default settings against the real server on
//! the shipped model (tests/kserve/tritonclient_check.py): metadata, config, binary, JSON, raw and typed
//! tensors, versions, errors.
mod common;

use std::path::PathBuf;
use std::process::Command;

use common::server::Server;

#[test]
fn tritonclient_http_and_grpc_at_default_settings() {
    let data_dir = require_data!();
    let Some(python) = common::peers_python() else { return };
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
