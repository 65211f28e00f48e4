//! The binary's surface: help for every command, one-line errors with a non-zero exit.
use std::process::Command;

fn serve(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_serve")).args(args).env("RUST_BACKTRACE", "1").output().unwrap()
}

#[test]
fn every_command_has_help() {
    for cmd in [
        vec![],
        vec!["run"],
        vec!["train"],
        vec!["export"],
        vec!["eval"],
        vec!["data"],
        vec!["data", "inspect"],
        vec!["data", "encode"],
        vec!["data", "build"],
        vec!["data", "synth"],
    ] {
        let mut args = cmd.clone();
        args.push("--help");
        let out = serve(&args);
        assert!(out.status.success(), "serve {args:?}");
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(text.contains("Usage: serve"), "serve {args:?}: {text}");
    }
}

#[test]
fn wrong_ort_library_is_a_one_line_error() {
    let out = serve(&["run", "--config", "/nonexistent.toml", "--ort-lib", "/nonexistent/libonnxruntime.so"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors, ["error: ONNX Runtime library not found at /nonexistent/libonnxruntime.so (run scripts/setup, or pass --ort-lib / set ORT_DYLIB_PATH)"]);
    assert!(!stderr.contains("panicked") && !stderr.contains("backtrace"), "{stderr}");
    // stderr is a pipe here, not a terminal: the log lines carry no colour escapes.
    assert!(stderr.contains("server config not found; using defaults"), "{stderr}");
    assert!(!stderr.contains('\x1b'), "ANSI escapes in a piped log: {stderr:?}");
}

#[test]
fn a_batch_cooldown_out_of_range_is_refused_by_name() {
    let out = serve(&["run", "--config", "/nonexistent.toml", "--batch-cooldown=-1", "--bind", "127.0.0.1:0"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.lines().any(|l| l == "error: server config: batch_cooldown = -1: must be a number from 0 to 100"),
        "{stderr}"
    );
}

#[test]
fn a_file_that_is_not_onnx_runtime_is_a_one_line_error() {
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("libonnxruntime.so");
    std::fs::write(&fake, b"not a shared library").unwrap();
    let out = serve(&["run", "--config", "/nonexistent.toml", "--ort-lib", fake.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.lines().any(|l| l.starts_with("error: cannot load ONNX Runtime from")), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// Keys libtorch would panic on (a zero-width layer) or loop forever on (`batch_size = 0`) are refused by
/// name before any data is read: the dataset path here does not even exist.
#[cfg(feature = "train")]
#[test]
fn out_of_range_training_keys_are_refused_by_name_before_reading_data() {
    let dir = tempfile::tempdir().unwrap();
    for (key, want) in [
        ("batch_size = 0", "batch_size = 0: must be at least 1"),
        ("hidden_units = [400, 0]", "hidden_units = 0: must be at least 1"),
        ("learning_rate = -0.001", "learning_rate = -0.001: must be a finite number > 0"),
        ("dropout = 1.5", "dropout = 1.5: must be a probability from 0 up to (not including) 1"),
    ] {
        let cfg = dir.path().join("train.toml");
        std::fs::write(&cfg, format!("dataset = \"/nonexistent/spec.toml\"\n{key}\n")).unwrap();
        let out = serve(&["train", "--config", cfg.to_str().unwrap(), "--quiet"]);
        assert_eq!(out.status.code(), Some(1), "{key}");
        let stderr = String::from_utf8(out.stderr).unwrap();
        let line = format!("error: {}: {want}", cfg.display());
        assert!(stderr.lines().any(|l| l == line), "{key}: {stderr}");
    }
}

/// Every enum key of the training config refuses an unknown value while the file is parsed — before the
/// dataset (which does not exist here) is opened — naming the key and the allowed values.
#[cfg(feature = "train")]
#[test]
fn unknown_training_enum_values_are_refused_before_reading_data() {
    let dir = tempfile::tempdir().unwrap();
    for (key, allowed) in [
        (
            "framework = \"kdf\"",
            "expected one of `single`, `mean`, `sum`, `concat`, `kd`, `dml`, `kdef`, `kdef_no_exam`, `cetnet`",
        ),
        ("students = [\"mlp\", \"transformer\"]", "expected one of `mlp`, `dcnv2`, `pnn`, `final`, `ecn`, `dhen`"),
        ("device = \"gpu\"", "expected one of `cpu`, `cuda`, `auto`"),
        ("dhen_modules = [\"attention\"]", "expected one of `linear`, `dcn`, `self_attention`, `dot`"),
        ("dhen_ensemble = \"mean\"", "expected `sum` or `concat`"),
    ] {
        let cfg = dir.path().join("train.toml");
        std::fs::write(&cfg, format!("dataset = \"/nonexistent/spec.toml\"\n{key}\n")).unwrap();
        let out = serve(&["train", "--config", cfg.to_str().unwrap(), "--quiet"]);
        assert_eq!(out.status.code(), Some(1), "{key}");
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert!(stderr.starts_with(&format!("error: {}: ", cfg.display())), "{key}: {stderr}");
        assert!(stderr.contains(key), "the offending line is quoted: {stderr}");
        assert!(stderr.contains(allowed), "{key}: {stderr}");
        assert!(!stderr.contains("nonexistent"), "data was touched: {stderr}");
    }
    let out = serve(&["train", "--framework", "kdf", "--dataset", "/nonexistent/spec.toml"]);
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("framework = kdf: allowed: single, mean"), "{stderr}");
}
