//! Tiers below the fp32 floor, one intra-op thread: for the best student and the ensemble of an artifact
//! (`TIERS_MODEL`, default the shipped `models/default`), the fp32 graph, this crate's int8 twin and what
//! ONNX Runtime's own quantizer (`quantize_dynamic`, QInt8, its defaults) makes of the same fp32 graph.
//!
//! Each variant's test AUC is computed over the whole test split; then rounds alternate the variants at
//! batch 1 and 256 on real encoded test rows and report each round's median run time, so ratios compare
//! variants timed in the same minute of this noisy machine (`TIERS_EXTRA="label=path,…"` adds graphs, e.g. a
//! fused ensemble, whose label's part before the first ':' names the fp32 graph it is compared with). Run it on
//! one pinned core:
//! `taskset -c 1 cargo bench --bench tiers`.
use std::path::{Path, PathBuf};
use std::time::Instant;

use ensemble_serve::artifact::{Artifact, GraphEntry, GraphKind};
use ensemble_serve::data::encode::encode_file;
use ensemble_serve::data::Split;
use ensemble_serve::eval::{score_split, EvalOptions, GraphSet};
use ensemble_serve::features::DatasetSpec;
use ensemble_serve::metrics::auc;
use ensemble_serve::onnx::Precision;
use ensemble_serve::runtime::GraphSession;

const BATCHES: [usize; 2] = [1, 256];
const ROUNDS: usize = 15;

/// One graph file to time: its label and path (all in one scratch directory, linked or written there).
struct Variant {
    label: String,
    file: String,
}

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let data = std::env::var_os("CTR_DATA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join(ensemble_serve::paths::DEFAULT_DATA_DIR));
    if !data.join("benchmarks").is_dir() {
        eprintln!("*** SKIPPED tiers bench: no real data at {} ***", data.display());
        return;
    }
    let dir = std::env::var_os("TIERS_MODEL").map(PathBuf::from).unwrap_or_else(|| {
        ensemble_serve::artifact::latest_version(&root.join("models"), "default").expect("shipped default model")
    });
    let artifact = Artifact::load(&dir).expect("artifact");
    let m = &artifact.manifest;
    let spec_path = root.join("config/datasets").join(format!("{}.toml", m.dataset));
    let spec = DatasetSpec::load(&spec_path, &data).expect("dataset spec");
    let env = ensemble_serve::runtime::init(&ensemble_serve::runtime::resolve_library(None)).expect("ONNX Runtime");
    let scratch = tempfile::tempdir().expect("scratch dir");
    let variants = variants(&artifact, scratch.path());
    println!("model {} version {} ({}), {}", m.name, m.version, m.dataset, dir.display());

    let files: Vec<&str> = variants.iter().map(|v| v.file.as_str()).collect();
    let set = GraphSet { dir: scratch.path(), files: &files, inputs: &m.inputs, encoder: &artifact.encoder };
    let opts =
        EvalOptions { part: Split::Test, batch_rows: 4096, intra_threads: 1, progress: false, other_file: false };
    let scored = score_split(env, &set, &spec, &opts).expect("test split scored");
    let aucs: Vec<f64> = scored.probs.iter().map(|p| auc(p, &scored.labels).unwrap_or(f64::NAN)).collect();

    let ids = first_rows(&spec, &artifact, *BATCHES.iter().max().unwrap());
    let width = artifact.encoder.width();
    let paths: Vec<PathBuf> = variants.iter().map(|v| scratch.path().join(&v.file)).collect();
    let load = || -> Vec<GraphSession> {
        paths.iter().map(|p| GraphSession::load(env, p, &m.inputs, &artifact.encoder, 1).expect("load")).collect()
    };
    println!("\n| graph | test AUC | batch | median µs | rows/s | speed vs fp32 | speed vs ORT's quantizer |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    for &batch in &BATCHES {
        let medians = time_rounds(&load, &ids[..batch * width], width);
        for (i, v) in variants.iter().enumerate() {
            let base = base_label(&v.label);
            let against = |label: &str| match variants.iter().position(|f| f.label == label) {
                Some(j) => ratio_cell(&medians[j], &medians[i]),
                None => "-".into(),
            };
            let us = median(&medians[i]);
            println!(
                "| {} | {:.6} | {batch} | {us:.1} | {:.0} | {} | {} |",
                v.label,
                aucs[i],
                batch as f64 / us * 1e6,
                against(&base),
                against(&format!("{base}:ort-quantize")),
            );
        }
    }
    println!("\nspeed ratios: median over {ROUNDS} rounds of (other's median time / this graph's), range in brackets");
    batch_dependence(&load, &variants, &ids, width);
}

/// Dynamic int8 quantizes activations per run, so a row's score depends on its batch: the largest change in
/// probability between scoring the rows one at a time and as one batch.
fn batch_dependence(load: &dyn Fn() -> Vec<GraphSession>, variants: &[Variant], ids: &[u32], width: usize) {
    println!("\n| graph | max |p(row alone) − p(row in a batch of {})| |\n| --- | ---: |", ids.len() / width);
    for (v, mut s) in variants.iter().zip(load()) {
        let batch = s.run(ids, width, "probability").expect("run").0;
        let alone: Vec<f32> =
            ids.chunks(width).flat_map(|row| s.run(row, width, "probability").expect("run").0).collect();
        let worst = batch.iter().zip(&alone).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        println!("| {} | {worst:.2e} |", v.label);
    }
}

/// Per-round speed of `this` relative to `other`: median (min–max).
fn ratio_cell(other: &[f64], this: &[f64]) -> String {
    let r: Vec<f64> = other.iter().zip(this).map(|(o, t)| o / t).collect();
    let (lo, hi) = r.iter().fold((f64::INFINITY, 0f64), |(lo, hi), &x| (lo.min(x), hi.max(x)));
    format!("{:.2}× ({lo:.2}–{hi:.2})", median(&r))
}

/// The best student and the ensemble at every precision the manifest lists, plus ORT's quantization of
/// each fp32 graph when `$ENSEMBLE_SERVE_PYTHON` has onnxruntime (scripts/setup installs it).
fn variants(artifact: &Artifact, scratch: &Path) -> Vec<Variant> {
    let m = &artifact.manifest;
    let chosen = |g: &&GraphEntry| g.kind == GraphKind::Ensemble || g.index == Some(m.best_student);
    let mut out = Vec::new();
    for g in m.graphs.iter().filter(chosen) {
        std::os::unix::fs::symlink(artifact.dir.join(&g.file).canonicalize().expect("graph"), scratch.join(&g.file))
            .expect("link");
        out.push(Variant { label: g.tier_label().expect("label"), file: g.file.clone() });
        if g.precision == Precision::Fp32 {
            let file = g.file.replace(".onnx", ".ort-quant.onnx");
            if ort_quantize(&scratch.join(&g.file), &scratch.join(&file)) {
                out.push(Variant { label: format!("{}:ort-quantize", g.tier_label().expect("label")), file });
            }
        }
    }
    // TIERS_EXTRA="label=path,…": more graphs of the same inputs to time beside these (e.g. a fused ensemble).
    for (i, item) in std::env::var("TIERS_EXTRA").unwrap_or_default().split(',').filter(|s| !s.is_empty()).enumerate() {
        let (label, path) = item.split_once('=').expect("TIERS_EXTRA items are label=path");
        let file = format!("extra_{i}.onnx");
        std::os::unix::fs::symlink(Path::new(path).canonicalize().expect("extra graph"), scratch.join(&file))
            .expect("link");
        out.push(Variant { label: label.to_string(), file });
    }
    out.sort_by(|a, b| a.label.cmp(&b.label));
    out
}

/// The fp32 graph a variant is compared with: `student:2:int8` → `student:2`, `ensemble:fused` → `ensemble`.
fn base_label(label: &str) -> String {
    let mut parts = label.split(':');
    match (parts.next(), parts.next()) {
        (Some("student"), Some(k)) => format!("student:{k}"),
        (first, _) => first.unwrap_or_default().to_string(),
    }
}

fn ort_quantize(src: &Path, dst: &Path) -> bool {
    let Some(python) = std::env::var_os("ENSEMBLE_SERVE_PYTHON") else {
        eprintln!("ENSEMBLE_SERVE_PYTHON unset (source the setup env): no ONNX Runtime quantizer column");
        return false;
    };
    let code = "import sys\nfrom onnxruntime.quantization import quantize_dynamic, QuantType\n\
                quantize_dynamic(sys.argv[1], sys.argv[2], weight_type=QuantType.QInt8)";
    let status = std::process::Command::new(python)
        .args(["-c", code, &src.to_string_lossy(), &dst.to_string_lossy()])
        .stderr(std::process::Stdio::null())
        .status();
    let ok = status.is_ok_and(|s| s.success());
    if !ok {
        eprintln!("onnxruntime.quantization failed on {}: no ONNX Runtime quantizer column", src.display());
    }
    ok
}

/// The first `n` test rows, encoded.
fn first_rows(spec: &DatasetSpec, artifact: &Artifact, n: usize) -> Vec<u32> {
    let mut ids = Vec::new();
    let _ = encode_file(spec, &artifact.encoder, Split::Test, false, |row, _| {
        if ids.len() < n * row.len() {
            ids.extend_from_slice(row);
        }
        Ok(())
    })
    .expect("test rows");
    ids
}

/// `medians[variant][round]`: per round, each variant's median run time (µs) over a fixed number of runs.
/// Every round loads fresh sessions: with one load per variant, the same int8 ensemble timed 40 µs at batch 1
/// in one run and 62 µs in another (and ONNX Runtime's quantization 63 and 42), so a single load ranks loads.
fn time_rounds(load: &dyn Fn() -> Vec<GraphSession>, ids: &[u32], width: usize) -> Vec<Vec<f64>> {
    let runs = if ids.len() / width <= 8 { 200 } else { 9 };
    let mut medians: Vec<Vec<f64>> = Vec::new();
    for _ in 0..ROUNDS {
        let mut sessions = load();
        medians.resize(sessions.len(), Vec::with_capacity(ROUNDS));
        for (s, out) in sessions.iter_mut().zip(medians.iter_mut()) {
            for _ in 0..runs.min(20) {
                s.run(ids, width, "probability").expect("warm-up");
            }
            let times: Vec<f64> = (0..runs)
                .map(|_| {
                    let t = Instant::now();
                    s.run(ids, width, "probability").expect("run");
                    t.elapsed().as_secs_f64() * 1e6
                })
                .collect();
            out.push(median(&times));
        }
    }
    medians
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s[s.len() / 2]
}
