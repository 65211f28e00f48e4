//! The serving floor, shipped default model, one intra-op thread, real frappe test rows:
//! - `ort_run/<graph>/<rows>`: ONNX Runtime alone (`GraphSession::run` on pre-encoded ids);
//! - `decode/<layout>/<rows>`: a request body → encoded ids, for `instances` and `context` + `candidates`
//!   bodies, beside `value_tree` (serde_json::Value, then the encoder's JSON path: the old server's way);
//! - `in_process/<tier>/<rows>`: the server's whole pipeline without HTTP on context + candidates bodies —
//!   decode, encode, route, inline run or batcher hand-off, run, answer JSON (`serve::http::score_body`).
//!
//! Throughput is in rows, so `in_process` over `ort_run` at the same size is the pipeline's share of the
//! floor; the HTTP cost on top is in load-tests/.
use std::path::PathBuf;
use std::time::Instant;

use axum::body::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ensemble_serve::artifact::Artifact;
use ensemble_serve::config::ServerConfig;
use ensemble_serve::data::instances::{read_instances, split_context};
use ensemble_serve::features::DatasetSpec;
use ensemble_serve::runtime::GraphSession;
use ensemble_serve::serve::decode::{decode_v1, DecodeLimits};
use ensemble_serve::serve::{build_state, http::score_body, scoring::Call};
use serde_json::{json, Map, Value};

/// Frappe's user and context fields: what one ranking request shares across its candidates.
const CONTEXT: [&str; 8] = ["user", "daytime", "weekday", "isweekend", "homework", "weather", "country", "city"];
const ROWS: [usize; 3] = [1, 165, 1024];

struct Fixture {
    artifact: Artifact,
    env: &'static ort::environment::Environment,
    rows: Vec<Map<String, Value>>,
}

fn fixture() -> Option<Fixture> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let data = std::env::var_os("CTR_DATA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join(ensemble_serve::paths::DEFAULT_DATA_DIR));
    if !data.join("benchmarks/frappe_ctr/test.csv").is_file() {
        eprintln!("*** SKIPPED serving bench: no real data at {} ***", data.display());
        return None;
    }
    let spec = DatasetSpec::load(&root.join("config/datasets/frappe_ctr.toml"), &data).expect("spec");
    let rows = read_instances(&spec, ensemble_serve::data::Split::Test, Some(1024)).expect("frappe test rows").objects;
    let dir = ensemble_serve::artifact::latest_version(&root.join("models"), "default").expect("shipped default model");
    let artifact = Artifact::load(&dir).expect("artifact");
    let env = ensemble_serve::runtime::init(&ensemble_serve::runtime::resolve_library(None)).expect("ONNX Runtime");
    Some(Fixture { artifact, env, rows })
}

/// A ranking body: the first row's context, and `n` real rows' item and cost as candidates.
fn ranking_body(f: &Fixture, n: usize, tier: &str) -> Vec<u8> {
    let (context, candidates) = split_context(&f.rows[..n], &CONTEXT);
    serde_json::to_vec(&json!({"context": context, "candidates": candidates, "tier": tier, "latency_budget_ms": 1e3}))
        .expect("body")
}

fn instances_body(f: &Fixture, n: usize) -> Vec<u8> {
    serde_json::to_vec(&json!({"instances": f.rows[..n]})).expect("body")
}

fn ort_run(c: &mut Criterion, f: &Fixture) {
    let enc = &f.artifact.encoder;
    let width = enc.width();
    let limits = DecodeLimits { max_rows: 1024, missing_as_oov: false };
    let (encoded, _) = decode_v1(&instances_body(f, 1024), enc, limits).expect("rows encode");
    let m = &f.artifact.manifest;
    let mut group = c.benchmark_group("ort_run");
    for g in m.graphs.iter().filter(|g| g.index.is_none() || g.index == Some(m.best_student)) {
        let path = f.artifact.dir.join(&g.file);
        let mut s = GraphSession::load(f.env, &path, &m.inputs, enc, 1).expect("session");
        let name = g.file.trim_end_matches(".onnx");
        for n in ROWS {
            group.throughput(Throughput::Elements(n as u64));
            group.bench_with_input(BenchmarkId::new(name, n), &n, |bench, &n| {
                bench.iter(|| s.run(&encoded.ids[..n * width], width, "probability").expect("run").0[0])
            });
        }
    }
    group.finish();
}

fn decode(c: &mut Criterion, f: &Fixture) {
    let enc = &f.artifact.encoder;
    let limits = DecodeLimits { max_rows: 1024, missing_as_oov: false };
    let mut group = c.benchmark_group("decode");
    for n in ROWS {
        group.throughput(Throughput::Elements(n as u64));
        let body = instances_body(f, n);
        group.bench_with_input(BenchmarkId::new("instances", n), &body, |b, body| {
            b.iter(|| decode_v1(body, enc, limits).expect("decodes").0.ids.len())
        });
        let body = ranking_body(f, n, "auto");
        group.bench_with_input(BenchmarkId::new("context", n), &body, |b, body| {
            b.iter(|| decode_v1(body, enc, limits).expect("decodes").0.ids.len())
        });
        let body = instances_body(f, n);
        group.bench_with_input(BenchmarkId::new("value_tree", n), &body, |b, body| {
            b.iter(|| {
                let v: Value = serde_json::from_slice(body).expect("JSON");
                let rows = v["instances"].as_array().expect("instances");
                let mut ids = vec![0u32; rows.len() * enc.width()];
                for (row, out) in rows.iter().zip(ids.chunks_mut(enc.width())) {
                    enc.encode_json_object(row.as_object().expect("object"), false, out).expect("encodes");
                }
                ids.len()
            })
        });
    }
    group.finish();
}

/// The server's state (ensemble and best student) and a runtime to drive its pipeline without a socket.
struct Pipeline {
    state: std::sync::Arc<ensemble_serve::serve::http::AppState>,
    rt: tokio::runtime::Runtime,
}

impl Pipeline {
    fn new(f: &Fixture) -> Self {
        let cfg = ServerConfig {
            models_dir: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models"),
            tiers: vec!["ensemble".into(), format!("student:{}", f.artifact.manifest.best_student)],
            ..ServerConfig::default()
        };
        let state = build_state(f.env, &cfg).expect("server state");
        Self { state, rt: tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime") }
    }

    /// One request through the whole pipeline, answer JSON included; returns the answer's length.
    fn score(&self, body: &Bytes) -> usize {
        let call = Call {
            model: "default",
            arrival: Instant::now(),
            budget_header: None,
            timeout_header: None,
            grpc_timeout: None,
        };
        let answer = self.rt.block_on(score_body(&self.state, call, body.clone())).expect("scored");
        serde_json::to_vec(&answer).expect("answer JSON").len()
    }
}

fn in_process(c: &mut Criterion, f: &Fixture) {
    let pipeline = Pipeline::new(f);
    let mut group = c.benchmark_group("in_process");
    for tier in ["ensemble", "student"] {
        for n in ROWS {
            let body = Bytes::from(ranking_body(f, n, tier));
            group.throughput(Throughput::Elements(n as u64));
            group.bench_with_input(BenchmarkId::new(tier, n), &n, |bench, _| bench.iter(|| pipeline.score(&body)));
        }
    }
    group.finish();
}

/// The pipeline's share of the floor, measured interleaved (raw ORT, then the pipeline, 15 rounds) so
/// that the host's drift hits both alike: median rows/s of each and their ratio, as a table.
fn floor_ratio(f: &Fixture) {
    let pipeline = Pipeline::new(f);
    let (enc, m) = (&f.artifact.encoder, &f.artifact.manifest);
    let (encoded, _) = decode_v1(&instances_body(f, 1024), enc, DecodeLimits { max_rows: 1024, missing_as_oov: false })
        .expect("rows encode");
    println!("\nfloor_ratio: rows/s, median of 15 interleaved rounds (context + candidates bodies)");
    println!("{:<10} {:>6} {:>12} {:>12} {:>7}", "tier", "rows", "raw ORT", "pipeline", "ratio");
    for (tier, file) in
        [("ensemble", "ensemble.onnx".to_string()), ("student", format!("student_{}.onnx", m.best_student))]
    {
        let mut session = GraphSession::load(f.env, &f.artifact.dir.join(&file), &m.inputs, enc, 1).expect("session");
        for n in [165, 1024] {
            let body = Bytes::from(ranking_body(f, n, tier));
            let reps = if n == 165 { 10 } else { 3 };
            let (mut raw, mut pipe) = (Vec::new(), Vec::new());
            for _ in 0..15 {
                let t = Instant::now();
                for _ in 0..reps {
                    session.run(&encoded.ids[..n * enc.width()], enc.width(), "probability").expect("run");
                }
                raw.push((n * reps) as f64 / t.elapsed().as_secs_f64());
                let t = Instant::now();
                for _ in 0..reps {
                    std::hint::black_box(pipeline.score(&body));
                }
                pipe.push((n * reps) as f64 / t.elapsed().as_secs_f64());
            }
            let median = |v: &mut Vec<f64>| {
                v.sort_by(f64::total_cmp);
                v[v.len() / 2]
            };
            let (r, p) = (median(&mut raw), median(&mut pipe));
            println!("{tier:<10} {n:>6} {r:>12.0} {p:>12.0} {:>6.1}%", 100.0 * p / r);
        }
    }
}

fn serving(c: &mut Criterion) {
    let Some(f) = fixture() else { return };
    floor_ratio(&f);
    if std::env::var_os("FLOOR_RATIO_ONLY").is_some() {
        return;
    }
    ort_run(c, &f);
    decode(c, &f);
    in_process(c, &f);
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).warm_up_time(std::time::Duration::from_secs(1))
        .measurement_time(std::time::Duration::from_secs(3));
    targets = serving
}
criterion_main!(benches);
