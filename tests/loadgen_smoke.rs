//! The load generator's 10-second smoke scenario against the real server on the shipped default model:
//! open-loop Poisson load, real frappe test rows, every request answered, and the AUC of the scores the
//! server returned equal to the ensemble's offline AUC on the same rows.
#![cfg(feature = "loadgen")]
mod common;

use std::process::Command;

#[test]
fn smoke_scenario_has_no_errors_and_offline_auc() {
    let data_dir = require_data!();
    let out = tempfile::tempdir().unwrap();
    let results = out.path().join("smoke");
    let status = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(["run", "load-tests/scenarios/smoke.toml", "--quiet", "--models-dir", "models"])
        .arg("--serve-bin")
        .arg(env!("CARGO_BIN_EXE_serve"))
        .arg("--data-dir")
        .arg(&data_dir)
        .arg("--out")
        .arg(&results)
        .status()
        .unwrap();
    assert!(status.success(), "loadgen failed: {status}");
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(results.join("results.json")).unwrap()).unwrap();
    let phase = &r["phases"][0];
    let sent = phase["sent"].as_u64().unwrap();
    assert!(sent > 1500, "a 10 s phase at 200 rps sent only {sent}");
    assert_eq!(phase["answered_ok"].as_u64().unwrap(), sent, "not every request answered: {phase}");
    assert_eq!(phase["rejected"].as_u64().unwrap(), 0);
    assert!(phase["errors"].as_object().unwrap().is_empty(), "errors: {}", phase["errors"]);
    assert_eq!(phase["tiers"]["ensemble"].as_u64().unwrap(), sent);
    let (served, offline) = (phase["served_auc"].as_f64().unwrap(), phase["offline_auc"].as_f64().unwrap());
    assert!((served - offline).abs() < 1e-6, "served AUC {served} vs offline {offline}");
    assert!(offline > 0.9, "offline AUC {offline} of the shipped model on frappe test rows");
    for f in ["summary.md", "results.json"] {
        assert!(results.join(f).is_file(), "{f} missing");
    }
}
