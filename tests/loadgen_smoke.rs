//! The load generator's 10-second smoke scenario against the real server on the shipped default model:
//! open-loop Poisson load, real frappe test rows, every request answered, and the AUC of the scores the
//! server returned equal to the ensemble's offline AUC on the same rows; and a ranking phase and a closed loop
//! run in turns with the executed ideal server and raw ONNX Runtime, whose results `loadgen report` redraws.
#![cfg(feature = "loadgen")]
mod common;

use std::path::Path;
use std::process::Command;

/// Runs `loadgen` on `scenario` against the real `serve` binary and the shipped models; its results.json.
fn run_scenario(scenario: &str, data_dir: &Path, results: &Path) -> serde_json::Value {
    let status = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(["run", scenario, "--quiet", "--models-dir", "models"])
        .arg("--serve-bin")
        .arg(env!("CARGO_BIN_EXE_serve"))
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--out")
        .arg(results)
        .status()
        .unwrap();
    assert!(status.success(), "loadgen failed on {scenario}: {status}");
    serde_json::from_slice(&std::fs::read(results.join("results.json")).unwrap()).unwrap()
}

/// `loadgen report` reads results.json back and redraws the plots and summary: the summary comes out as the
/// run wrote it (every field survives the round trip) and results.json is left alone.
fn redraw_keeps_results_and_summary(dir: &Path) {
    let read = |f: &str| std::fs::read(dir.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
    let (json, summary) = (read("results.json"), read("summary.md"));
    std::fs::remove_file(dir.join("latency_vs_rate.png")).expect("a two-phase run draws latency against rate");
    let status = Command::new(env!("CARGO_BIN_EXE_loadgen")).arg("report").arg(dir).status().unwrap();
    assert!(status.success(), "loadgen report failed: {status}");
    assert_eq!(read("results.json"), json, "results.json rewritten");
    assert_eq!(String::from_utf8(read("summary.md")).unwrap(), String::from_utf8(summary).unwrap());
    assert!(dir.join("latency_vs_rate.png").is_file(), "plot not redrawn");
}

#[test]
fn smoke_scenario_has_no_errors_and_offline_auc() {
    let data_dir = require_data!();
    let out = tempfile::tempdir().unwrap();
    let results = out.path().join("smoke");
    let before = std::time::SystemTime::now();
    let r = run_scenario("load-tests/scenarios/smoke.toml", &data_dir, &results);
    // The run's start, not the moment its results were written (10 s of phase and the offline scoring later).
    let started = humantime::parse_rfc3339(r["started_utc"].as_str().unwrap()).unwrap();
    let off = started.duration_since(before).unwrap_or_default();
    assert!(off < std::time::Duration::from_secs(3), "started_utc {} is {off:?} after the run began", r["started_utc"]);
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

/// The ideal server executed beside an open-loop phase, and raw ONNX Runtime beside a closed loop, give
/// every phase its figures: the executed ideal p99 (at least one 165-row run) and a share of raw rows/s.
#[test]
fn phases_in_turns_with_the_ideal_server() {
    let data_dir = require_data!();
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("turns");
    let r = run_scenario("tests/loadgen/turns.toml", &data_dir, &dir);
    redraw_keeps_results_and_summary(&dir);
    let (open, closed) = (&r["phases"][0], &r["phases"][1]);
    for p in [open, closed] {
        let sent = p["sent"].as_u64().unwrap();
        assert!(sent > 10, "phase sent only {sent}: {p}");
        assert_eq!(p["answered_ok"].as_u64().unwrap(), sent, "not every request answered: {p}");
        let raw = p["raw_rows_per_s"].as_f64().unwrap();
        let share = p["instances_per_s"].as_f64().unwrap() / raw;
        assert!(raw > 1000.0 && share > 0.0 && share < 2.0, "raw {raw} rows/s, share {share}: {p}");
        // /proc/stat's steal counters are read around every phase (0 on a machine that is not a guest).
        for key in ["server_steal_share", "generator_steal_share"] {
            let stolen = p[key].as_f64().unwrap_or_else(|| panic!("no {key}: {p}"));
            assert!((0.0..=1.0).contains(&stolen), "{key} {stolen}");
        }
        // Valid exactly when the generator sent on time and the server's core lost at most 2% to steal.
        let on_time = p["send_lag_p99_ms"].as_f64().unwrap() <= 1.0;
        let not_stolen = p["server_steal_share"].as_f64().unwrap() <= 0.02;
        assert_eq!(p["valid"].as_bool().unwrap(), on_time && not_stolen, "{p}");
    }
    let floor_165_ms = r["floors"]["before"]["ensemble"][4][1].as_f64().unwrap() / 1e3;
    let ideal = open["ideal_run_p99_ms"].as_f64().expect("the open phase's executed ideal");
    assert!(ideal > 0.3 * floor_165_ms && ideal < 1000.0, "executed ideal p99 {ideal} ms");
    for key in ["ideal_run_p99_ms", "ideal_p99_ms"] {
        assert!(closed[key].is_null(), "a closed loop has no arrival trace for an ideal server: {closed}");
    }
    // A closed loop of 2 connections keeps the server busy: it answers more than the open phase's 40 rps.
    assert!(closed["ok_rps"].as_f64().unwrap() > 40.0, "closed loop: {closed}");
}
