//! `serve eval` on the shipped default model and the real frappe_ctr splits: every graph's AUC and logloss
//! through ONNX Runtime reproduce what the manifest recorded at training time; a foreign spec and a
//! malformed line are one-line errors naming the field or the line.
mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ensemble_serve::artifact::Artifact;
use serde_json::Value;

fn serve(args: &[&str], data: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_serve"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .arg("--quiet")
        .output()
        .unwrap()
}

fn shipped_model() -> PathBuf {
    let models = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/default");
    ensemble_serve::eval::artifact_dir(&models).expect("a shipped default model")
}

fn report(out: &Output, json: &Path) -> Value {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&std::fs::read(json).unwrap()).unwrap()
}

#[test]
fn eval_reproduces_the_recorded_metrics_of_every_graph() {
    let data = require_data!();
    let tmp = tempfile::tempdir().unwrap();
    let artifact = Artifact::load(&shipped_model()).unwrap();
    for split in ["valid", "test"] {
        let json = tmp.path().join(format!("{split}.json"));
        let out = serve(&["eval", "models/default", "--split", split, "--json", json.to_str().unwrap()], &data);
        let r = report(&out, &json);
        let file = data.join(format!("benchmarks/frappe_ctr/{split}.csv"));
        let lines = std::fs::read_to_string(&file).unwrap().lines().count() as u64;
        assert_eq!((r["rows"].as_u64(), r["skipped_lines"].as_u64()), (Some(lines - 1), Some(0)), "{split}");
        assert_eq!(r["graphs"].as_array().unwrap().len(), artifact.manifest.graphs.len());
        for (g, m) in r["graphs"].as_array().unwrap().iter().zip(&artifact.manifest.graphs) {
            let want = if split == "test" { m.test.clone().unwrap() } else { m.valid.clone() };
            let (auc, logloss) = (g["auc"].as_f64().unwrap(), g["logloss"].as_f64().unwrap());
            eprintln!("{split} {}: AUC {auc:.8} (recorded {:.8}), logloss {logloss:.8}", g["graph"], want.auc);
            assert!((auc - want.auc).abs() <= 1e-6, "{split} {}: AUC {auc} vs recorded {}", g["graph"], want.auc);
            assert!((logloss - want.logloss).abs() <= 1e-5, "{split} {}: logloss {logloss}", g["graph"]);
            assert_eq!(g["recorded"]["auc"].as_f64(), Some(want.auc));
            assert!(g["gauc"].as_f64().is_some_and(|v| v > 0.5), "frappe groups by user: {g}");
        }
    }
}

#[test]
fn eval_refuses_a_spec_whose_fields_are_not_the_models() {
    let data = require_data!();
    let out = serve(&["eval", "models/default", "--spec", "config/datasets/ml100k_ctr.toml"], &data);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("field 1 is 'UserID' in the spec but 'user' in the model"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn eval_of_another_file_names_its_malformed_line_or_skips_it() {
    let data = require_data!();
    let tmp = tempfile::tempdir().unwrap();
    // Real rows, CRLF as in the release, then a truncated line 6.
    let test = std::fs::read_to_string(data.join("benchmarks/frappe_ctr/test.csv")).unwrap();
    let mut body: String = test.split_inclusive('\n').take(5).collect();
    body.push_str("1,u1,i1\r\n");
    let file = tmp.path().join("day.csv");
    std::fs::write(&file, body).unwrap();
    let f = file.to_str().unwrap();
    let out = serve(&["eval", "models/default", "--file", f, "--on-error", "fail"], &data);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains(&format!("{f}:6: expected 11 columns, found 3")), "{stderr}");

    let json = tmp.path().join("day.json");
    let r = report(&serve(&["eval", "models/default", "--file", f, "--json", json.to_str().unwrap()], &data), &json);
    assert_eq!((r["rows"].as_u64(), r["skipped_lines"].as_u64()), (Some(4), Some(1)));
    assert!(r["graphs"][0]["recorded"].is_null(), "another file's figures are not the manifest's: {r}");
}
