//! Loading an artifact checks everything it relies on: each failure names the file and the mismatch.
//! Runs on the shipped default model (models/default/<version>), copied and then damaged.
use std::path::{Path, PathBuf};

use ensemble_serve::artifact::Artifact;
use ensemble_serve::onnx::builder::to_bytes;
use ensemble_serve::onnx::proto::tensor_proto::DataType;
use ensemble_serve::onnx::{Dim, GraphBuilder};
use serde_json::Value;

fn shipped() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/default");
    let mut versions: Vec<PathBuf> = std::fs::read_dir(&root).unwrap().map(|e| e.unwrap().path()).collect();
    versions.sort();
    versions.pop().expect("a shipped default model")
}

fn copy() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("m");
    std::fs::create_dir(&dir).unwrap();
    for e in std::fs::read_dir(shipped()).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, dir.join(p.file_name().unwrap())).unwrap();
    }
    (tmp, dir)
}

fn err(dir: &Path) -> String {
    Artifact::load(dir).err().expect("load must fail").to_string()
}

fn edit_manifest(dir: &Path, f: impl FnOnce(&mut Value)) {
    let path = dir.join("manifest.json");
    let mut m: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    f(&mut m);
    std::fs::write(path, serde_json::to_vec(&m).unwrap()).unwrap();
}

#[test]
fn the_shipped_model_loads() {
    let a = Artifact::load(&shipped()).unwrap();
    let labels: Vec<String> = a.manifest.graphs.iter().map(|g| g.tier_label().unwrap()).collect();
    let want = ["ensemble", "student:0", "student:1", "student:2"];
    let int8 = want.iter().map(|l| format!("{l}:int8"));
    assert_eq!(labels, want.iter().map(|l| l.to_string()).chain(int8).collect::<Vec<_>>());
    assert!(a.manifest.best_student < 3);
}

#[test]
fn a_missing_graph_is_named() {
    let (_t, dir) = copy();
    std::fs::remove_file(dir.join("student_1.onnx")).unwrap();
    let e = err(&dir);
    assert!(e.contains("student_1.onnx") && e.contains("No such file"), "{e}");
}

#[test]
fn a_truncated_graph_is_named() {
    let (_t, dir) = copy();
    let p = dir.join("ensemble.onnx");
    let bytes = std::fs::read(&p).unwrap();
    std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
    let e = err(&dir);
    assert!(e.contains("ensemble.onnx") && e.contains("truncated"), "{e}");
}

#[test]
fn a_missing_or_broken_manifest_or_encoder_is_named() {
    let (_t, dir) = copy();
    std::fs::write(dir.join("encoder.json"), b"{").unwrap();
    assert!(err(&dir).contains("encoder.json"));
    std::fs::write(dir.join("manifest.json"), b"[]").unwrap();
    assert!(err(&dir).contains("manifest.json"));
    std::fs::remove_file(dir.join("manifest.json")).unwrap();
    assert!(err(&dir).contains("manifest.json"));
}

#[test]
fn a_manifest_schema_that_differs_from_the_encoder_is_named() {
    let (_t, dir) = copy();
    edit_manifest(&dir, |m| {
        m["inputs"]["field_ids"].as_array_mut().unwrap().pop();
    });
    let e = err(&dir);
    assert!(e.contains("manifest.json") && e.contains("does not match the encoder"), "{e}");
}

#[test]
fn a_graph_whose_inputs_differ_from_the_manifest_is_named() {
    let (_t, dir) = copy();
    let mut g = GraphBuilder::new("wrong");
    g.input("field_ids", DataType::Int64, &[Dim::Batch, Dim::Fixed(3)]);
    g.output("probability", DataType::Float, &[Dim::Batch, Dim::Fixed(1)]);
    g.op_into("Identity", &["field_ids"], "probability", vec![]);
    let bytes = to_bytes(&g.finish());
    std::fs::write(dir.join("student_0.onnx"), &bytes).unwrap();
    edit_manifest(&dir, |m| {
        let graph = m["graphs"].as_array_mut().unwrap().iter_mut().find(|g| g["file"] == "student_0.onnx").unwrap();
        graph["file_bytes"] = bytes.len().into();
        graph["blake3"] = blake3::hash(&bytes).to_hex().to_string().into();
    });
    let e = err(&dir);
    assert!(e.contains("student_0.onnx") && e.contains("do not match the manifest's schema"), "{e}");
}

#[test]
fn a_replaced_graph_of_the_same_size_is_caught_by_its_hash() {
    let (_t, dir) = copy();
    let p = dir.join("student_2.onnx");
    let mut bytes = std::fs::read(&p).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&p, bytes).unwrap();
    let e = err(&dir);
    assert!(e.contains("student_2.onnx") && e.contains("hash"), "{e}");
}
