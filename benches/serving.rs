//! The serving floor, shipped default model, one intra-op thread:
//! - `ort_run/<graph>/<batch>`: ONNX Runtime alone (`GraphSession::run` on pre-encoded ids);
//! - `in_process/<tier>/<batch>`: the server's whole path without HTTP — JSON decode, encode, route,
//!   batcher queue and thread hand-off, run, JSON encode of the answer (`serve::http::score_body`).
//!
//! The difference is the server's own overhead over raw ORT; the HTTP cost on top is in load-tests/.
use std::path::PathBuf;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ensemble_serve::artifact::Artifact;
use ensemble_serve::config::ServerConfig;
use ensemble_serve::data::instances::read_instances;
use ensemble_serve::features::DatasetSpec;
use ensemble_serve::runtime::GraphSession;
use ensemble_serve::serve::{build_state, http::score_body, model::LoadedModel};

const BATCHES: [usize; 4] = [1, 8, 64, 256];

struct Fixture {
    artifact: Artifact,
    env: &'static ort::environment::Environment,
    rows: Vec<serde_json::Map<String, serde_json::Value>>,
}

fn fixture() -> Option<Fixture> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let data = std::env::var_os("CTR_DATA_DIR").map(PathBuf::from).unwrap_or_else(|| root.join("../shared/data"));
    if !data.join("benchmarks/frappe_ctr/test.csv").is_file() {
        eprintln!("*** SKIPPED serving bench: no real data at {} ***", data.display());
        return None;
    }
    let spec = DatasetSpec::load(&root.join("config/datasets/frappe_ctr.toml"), &data).expect("spec");
    let rows = read_instances(&spec, "test", Some(256)).expect("frappe test rows").objects;
    let dir = LoadedModel::latest_version(&root.join("models"), "default").expect("shipped default model");
    let artifact = Artifact::load(&dir).expect("artifact");
    let env = ensemble_serve::runtime::init(&ensemble_serve::runtime::resolve_library(None)).expect("ONNX Runtime");
    Some(Fixture { artifact, env, rows })
}

fn ort_run(c: &mut Criterion, f: &Fixture) {
    let enc = &f.artifact.encoder;
    let width = enc.width();
    let mut ids = vec![0u32; f.rows.len() * width];
    for (i, r) in f.rows.iter().enumerate() {
        enc.encode_json_object(r, false, &mut ids[i * width..(i + 1) * width]).expect("encodes");
    }
    let mut group = c.benchmark_group("ort_run");
    for g in &f.artifact.manifest.graphs {
        let path = f.artifact.dir.join(&g.file);
        let mut s = GraphSession::load(f.env, &path, &f.artifact.manifest.inputs, enc, 1).expect("session");
        let name = g.file.trim_end_matches(".onnx");
        for b in BATCHES {
            group.throughput(Throughput::Elements(b as u64));
            group.bench_with_input(BenchmarkId::new(name, b), &b, |bench, &b| {
                bench.iter(|| s.run(&ids[..b * width], width, "probability").expect("run").0[0])
            });
        }
    }
    group.finish();
}

fn in_process(c: &mut Criterion, f: &Fixture) {
    let cfg = ServerConfig {
        models_dir: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models"),
        tiers: vec!["ensemble".into(), format!("student:{}", f.artifact.manifest.best_student)],
        ..ServerConfig::default()
    };
    let state = build_state(f.env, &cfg).expect("server state");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let mut group = c.benchmark_group("in_process");
    for tier in ["ensemble", "student"] {
        for b in BATCHES {
            let body = serde_json::to_vec(&serde_json::json!({
                "instances": f.rows[..b], "tier": tier, "latency_budget_ms": 1000.0
            }))
            .expect("body");
            group.throughput(Throughput::Elements(b as u64));
            group.bench_with_input(BenchmarkId::new(tier, b), &b, |bench, _| {
                bench.iter(|| {
                    let answer =
                        rt.block_on(score_body(&state, "default", None, &body, Instant::now())).expect("scored");
                    serde_json::to_vec(&answer).expect("answer JSON").len()
                })
            });
        }
    }
    group.finish();
}

fn serving(c: &mut Criterion) {
    let Some(f) = fixture() else { return };
    ort_run(c, &f);
    in_process(c, &f);
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).warm_up_time(std::time::Duration::from_secs(1))
        .measurement_time(std::time::Duration::from_secs(3));
    targets = serving
}
criterion_main!(benches);
