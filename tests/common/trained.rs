//! A small KDEF model (2 MLP students, 1 epoch) trained on a real dataset and exported as
//! `<dir>/models/default/1/`: what the end-to-end tests serve.
use std::path::{Path, PathBuf};

use ensemble_serve::config::{DeviceChoice, StudentKind, TrainConfig};
use ensemble_serve::data::Dataset;
use ensemble_serve::export::{export_run, ExportOptions};
use ensemble_serve::features::DatasetSpec;
use ensemble_serve::onnx::Precision;
use ensemble_serve::runtime::resolve_library;

/// Trains and exports under `dir`; returns the exported version directory.
pub fn small_kdef(spec: &DatasetSpec, dir: &Path, profile_runs: usize) -> PathBuf {
    let data = Dataset::open(spec, &dir.join("cache"), false).unwrap();
    let cfg = TrainConfig {
        students: vec![StudentKind::Mlp; 2],
        hidden_units: vec![64, 32],
        max_epochs: 1,
        batch_size: 4096,
        device: DeviceChoice::Cpu,
        ..TrainConfig::default()
    };
    let out = ensemble_serve::train::train(&cfg, &data, false, |_| {}).unwrap();
    let run = ensemble_serve::train::report::write_run(&dir.join("run"), &cfg, &out, &data).unwrap();
    let opts = ExportOptions {
        models_dir: dir.join("models"),
        name: Some("default".into()),
        version: Some("1".into()),
        ort_library: resolve_library(None),
        profile_runs,
        // fp32 only: these tests exercise serving, tests/export_parity.rs the int8 twins.
        precisions: vec![Precision::Fp32],
        data_dir: PathBuf::new(),
        fuse_first_layers: false,
        int8_weights: Default::default(),
        int8_activations: Default::default(),
        u8_embeddings: false,
    };
    export_run(&run, &opts).unwrap()
}
