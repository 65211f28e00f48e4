//! `serve export`: a finished run → `models/<name>/<version>/` with the full ensemble graph, every student
//! alone, their int8 twins (scored on the run's valid and test splits), the encoder and a manifest (metrics,
//! best student, latency profile), written atomically.
pub mod calibrate;

use std::path::{Path, PathBuf};
use std::time::Instant;

use tch::{nn, Device};

use ort::environment::Environment;

use crate::artifact::{self, GraphEntry, GraphKind, LatencyPoint, Manifest, Metric, PROFILE_BATCHES};
use crate::config::{InvalidKey, TrainConfig};
use crate::data::Split;
use crate::eval::{check_fields, score_split, EvalError, EvalOptions, GraphSet};
use crate::features::{DatasetSpec, Encoder};
use crate::metrics::{auc, logloss};
use crate::model::ensemble::GraphOptions;
use crate::model::{Ensemble, FieldLayout};
use crate::onnx::builder::to_bytes;
use crate::onnx::{ActivationScale, GraphBuilder, Precision, WeightScale};
use crate::run_summary::{RunSummary, SummaryError};
use crate::runtime::{self, GraphSession};

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("{path}: {reason}")]
    Run { path: PathBuf, reason: String },
    #[error(transparent)]
    Summary(#[from] SummaryError),
    #[error("{path}: {error}")]
    Config { path: PathBuf, error: InvalidKey },
    #[error(transparent)]
    Runtime(#[from] runtime::RuntimeError),
    #[error("ONNX Runtime: {0}")]
    Ort(#[from] ort::Error),
    #[error(transparent)]
    Eval(#[from] EvalError),
    #[error(transparent)]
    Calibration(#[from] calibrate::CalibrationError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Rows per ONNX Runtime run when int8 graphs are scored at export (their activations are quantized per run,
/// so a row's int8 score depends slightly on its batch; tests/export_parity.rs bounds that).
pub const SCORE_BATCH_ROWS: usize = 4096;

pub struct ExportOptions {
    pub models_dir: PathBuf,
    /// Model name (default: the run's name).
    pub name: Option<String>,
    /// Version (default: UTC timestamp).
    pub version: Option<String>,
    pub ort_library: PathBuf,
    /// Latency-profile repetitions per batch size.
    pub profile_runs: usize,
    /// Graph precisions to write: fp32 always, int8 twins by default.
    pub precisions: Vec<Precision>,
    /// Root of the dataset spec's relative paths (int8 graphs are scored on the run's splits).
    pub data_dir: PathBuf,
    /// Emit the ensemble graph with its students' first dense layers fused into one MatMul.
    pub fuse_first_layers: bool,
    /// How int8 weights are scaled.
    pub int8_weights: WeightScale,
    /// How int8 activations are scaled (static: calibrated on training rows).
    pub int8_activations: ActivationScale,
    /// Int8 graphs store their embedding tables 8-bit row-wise.
    pub u8_embeddings: bool,
}

/// A run directory reloaded: its config, encoder, summary and the trained ensemble.
pub struct LoadedRun {
    pub cfg: TrainConfig,
    pub encoder: Encoder,
    pub summary: RunSummary,
    pub vs: nn::VarStore,
    pub ensemble: Ensemble,
}

pub fn load_run(run: &Path) -> Result<LoadedRun, ExportError> {
    let err = |file: &str, reason: String| ExportError::Run { path: run.join(file), reason };
    let cfg: TrainConfig =
        crate::config::load(&run.join("config.toml")).map_err(|e| err("config.toml", e.to_string()))?;
    let encoder = Encoder::load(&run.join("encoder.json")).map_err(|e| err("encoder.json", e.to_string()))?;
    let summary = RunSummary::load(&run.join("summary.json"))?;
    let mut vs = nn::VarStore::new(Device::Cpu);
    let ensemble = Ensemble::from_config(&vs.root(), &cfg, &FieldLayout::new(&encoder))
        .map_err(|error| ExportError::Config { path: run.join("config.toml"), error })?;
    vs.load(run.join("weights.safetensors")).map_err(|e| err("weights.safetensors", e.to_string()))?;
    Ok(LoadedRun { cfg, encoder, summary, vs, ensemble })
}

/// Writes the artifact; returns its directory.
pub fn export_run(run: &Path, opts: &ExportOptions) -> Result<PathBuf, ExportError> {
    let loaded = load_run(run)?;
    // Int8 graphs are calibrated and scored on the run's splits: check its dataset before any work.
    let quantized = opts.precisions.iter().any(|p| !p.is_fp32());
    let data = quantized.then(|| dataset_spec(&loaded, opts)).transpose()?;
    let name =
        opts.name.clone().unwrap_or_else(|| run.file_name().map_or("model".into(), |n| n.to_string_lossy().into()));
    let version = opts.version.clone().unwrap_or_else(timestamp);
    let target = opts.models_dir.join(&name).join(&version);
    if target.exists() {
        return Err(ExportError::Run { path: target, reason: "exists already; pick another --version".into() });
    }
    let parent = target.parent().expect("has parent");
    std::fs::create_dir_all(parent)?;
    let tmp = tempfile::Builder::new().prefix(".export-").tempdir_in(parent)?;
    let env = runtime::init(&opts.ort_library)?;
    let schema = artifact::input_schema(&loaded.encoder);
    loaded
        .encoder
        .save(&tmp.path().join("encoder.json"))
        .map_err(|e| ExportError::Run { path: tmp.path().into(), reason: e.to_string() })?;
    let mut graphs = Vec::new();
    for &precision in &opts.precisions {
        for (kind, index) in graph_list(loaded.ensemble.students.len()) {
            let spec = GraphSpec { kind, index, precision };
            graphs.push(write_graph(&loaded, &name, tmp.path(), spec, env, opts, data.as_ref())?);
        }
    }
    if let Some(data) = &data {
        score_at_export(env, &loaded, tmp.path(), &mut graphs, data)?;
    }
    let manifest = Manifest {
        format: artifact::MANIFEST_FORMAT.into(),
        format_version: artifact::MANIFEST_VERSION,
        name: name.clone(),
        version: version.clone(),
        created_at: timestamp(),
        git_commit: git_commit(),
        config_hash: blake3::hash(toml::to_string(&loaded.cfg).unwrap_or_default().as_bytes()).to_hex().to_string(),
        dataset: loaded.encoder.dataset.clone(),
        framework: loaded.cfg.framework,
        encoder: "encoder.json".into(),
        inputs: schema,
        graphs,
        best_student: loaded.summary.best_student,
    };
    std::fs::write(
        tmp.path().join("manifest.json"),
        serde_json::to_vec_pretty(&manifest).map_err(std::io::Error::other)?,
    )?;
    artifact::Artifact::load(tmp.path())
        .map_err(|e| ExportError::Run { path: tmp.path().into(), reason: e.to_string() })?;
    std::fs::rename(tmp.keep(), &target)?;
    Ok(target)
}

/// The ensemble first, then each student.
fn graph_list(students: usize) -> impl Iterator<Item = (GraphKind, Option<usize>)> {
    std::iter::once((GraphKind::Ensemble, None)).chain((0..students).map(|k| (GraphKind::Student, Some(k))))
}

/// `ensemble.onnx`, `student_<k>.onnx`; `.int8.onnx` for int8 graphs.
fn graph_file(kind: GraphKind, index: Option<usize>, precision: Precision) -> String {
    let stem = match (kind, index) {
        (GraphKind::Student, Some(k)) => format!("student_{k}"),
        _ => "ensemble".to_string(),
    };
    match precision {
        Precision::Fp32 => format!("{stem}.onnx"),
        p => format!("{stem}.{p}.onnx"),
    }
}

/// Graph `index` (the ensemble for `None`) as `opts` asks, and its model type.
fn emit(loaded: &LoadedRun, name: &str, index: Option<usize>, opts: &GraphOptions) -> (GraphBuilder, String) {
    match index {
        None => (loaded.ensemble.emit_ensemble(name, opts), loaded.cfg.framework.to_string()),
        Some(k) => {
            let student = loaded.ensemble.emit_student(k, &format!("{name}_student_{k}"), opts);
            (student, loaded.cfg.students[k].to_string())
        }
    }
}

/// Which graph to write.
#[derive(Debug, Clone, Copy)]
struct GraphSpec {
    kind: GraphKind,
    index: Option<usize>,
    precision: Precision,
}

/// Emits one graph into `dir` (calibrating it first when int8 activations are static), profiles it and
/// records it; fp32 graphs take the training run's metrics (int8 ones are scored by [`score_at_export`]).
fn write_graph(
    loaded: &LoadedRun,
    name: &str,
    dir: &Path,
    spec: GraphSpec,
    env: &Environment,
    opts: &ExportOptions,
    data: Option<&DatasetSpec>,
) -> Result<GraphEntry, ExportError> {
    let GraphSpec { kind, index, precision } = spec;
    let int8 = precision == Precision::Int8;
    let mut graph = GraphOptions {
        precision,
        weight_scale: opts.int8_weights,
        activation_ranges: None,
        fuse_first_layers: opts.fuse_first_layers && index.is_none(),
        rowwise_u8_embeddings: int8 && opts.u8_embeddings,
    };
    if let (true, ActivationScale::Static, Some(data)) = (int8, opts.int8_activations, data) {
        let fp32 = GraphOptions { precision: Precision::Fp32, rowwise_u8_embeddings: false, ..graph.clone() };
        let (builder, _) = emit(loaded, "calibration", index, &fp32);
        graph.activation_ranges = Some(calibrate::calibrate(env, builder, &loaded.encoder, data, dir)?);
    }
    let (builder, model_type) = emit(loaded, name, index, &graph);
    let model = builder.finish();
    let parameters = model
        .graph
        .as_ref()
        .map_or(0, |gr| gr.initializer.iter().map(|t| t.dims.iter().product::<i64>().max(1) as u64).sum());
    // Recorded from the graph itself: fewer than two MLP students leave nothing to fuse.
    let fused = model.graph.as_ref().is_some_and(|gr| {
        gr.initializer.iter().any(|t| t.name.as_deref().is_some_and(|n| n.starts_with("fused_sizes")))
    });
    let bytes = to_bytes(&model);
    let file = graph_file(kind, index, precision);
    let path = dir.join(&file);
    std::fs::write(&path, &bytes)?;
    let schema = artifact::input_schema(&loaded.encoder);
    let mut session = GraphSession::load(env, &path, &schema, &loaded.encoder, 1)?;
    let latency = profile(&mut session, &loaded.encoder, opts.profile_runs)?;
    let summary = &loaded.summary;
    let metric = |split| Metric::from(summary.scores(split, index));
    Ok(GraphEntry {
        file,
        kind,
        index,
        model_type,
        precision,
        int8_weights: int8.then_some(opts.int8_weights),
        int8_activations: int8.then_some(opts.int8_activations),
        u8_embeddings: graph.rowwise_u8_embeddings,
        fused_first_layers: fused,
        parameters,
        file_bytes: bytes.len() as u64,
        blake3: blake3::hash(&bytes).to_hex().to_string(),
        valid: metric(&summary.valid),
        test: summary.test.as_ref().map(metric),
        latency,
    })
}

/// Scores every non-fp32 graph through ONNX Runtime on the run's valid and test splits and records its own
/// AUC and logloss (fp32 graphs keep the training run's, which `serve eval` reproduces to 1e-6).
fn score_at_export(
    env: &Environment,
    loaded: &LoadedRun,
    dir: &Path,
    graphs: &mut [GraphEntry],
    spec: &DatasetSpec,
) -> Result<(), ExportError> {
    let picked: Vec<usize> = (0..graphs.len()).filter(|&i| !graphs[i].precision.is_fp32()).collect();
    let files: Vec<&str> = picked.iter().map(|&i| graphs[i].file.as_str()).collect();
    let schema = artifact::input_schema(&loaded.encoder);
    let set = GraphSet { dir, files: &files, inputs: &schema, encoder: &loaded.encoder };
    let mut splits = vec![Split::Valid];
    splits.extend(loaded.summary.test.as_ref().map(|_| Split::Test));
    let mut metrics = Vec::new();
    for part in splits {
        let eval_opts =
            EvalOptions { part, batch_rows: SCORE_BATCH_ROWS, intra_threads: 0, progress: true, other_file: false };
        let scored = score_split(env, &set, spec, &eval_opts)?;
        let of =
            |p: &Vec<f32>| Metric { auc: auc(p, &scored.labels).unwrap_or(0.5), logloss: logloss(p, &scored.labels) };
        metrics.push(scored.probs.iter().map(of).collect::<Vec<_>>());
    }
    for (j, &i) in picked.iter().enumerate() {
        graphs[i].valid = metrics[0][j].clone();
        graphs[i].test = metrics.get(1).map(|m| m[j].clone());
    }
    Ok(())
}

/// The run's dataset spec, checked against its encoder, with the split files int8 export reads present.
fn dataset_spec(loaded: &LoadedRun, opts: &ExportOptions) -> Result<DatasetSpec, ExportError> {
    let spec = DatasetSpec::load(&loaded.cfg.dataset, &opts.data_dir)
        .map_err(|e| ExportError::Run { path: loaded.cfg.dataset.clone(), reason: e.to_string() })?;
    check_fields(&spec, &loaded.encoder)?;
    let mut parts = vec![Split::Train, Split::Valid];
    parts.extend(loaded.summary.test.as_ref().map(|_| Split::Test));
    for part in parts {
        if let Some((path, _)) = part.source(&spec).filter(|(p, _)| !p.is_file()) {
            let reason = "not found: int8 graphs are calibrated on the train split and scored on valid and test \
                          (set --data-dir / CTR_DATA_DIR, or export with --no-int8)";
            return Err(ExportError::Run { path: path.to_path_buf(), reason: reason.into() });
        }
    }
    Ok(spec)
}

/// Median and p99 of `runs` in-process runs at each profile batch size (rows of id 1: every field's most
/// frequent value; run time does not depend on the values).
fn profile(session: &mut GraphSession, encoder: &Encoder, runs: usize) -> Result<Vec<LatencyPoint>, ExportError> {
    let width = encoder.width();
    PROFILE_BATCHES
        .iter()
        .map(|&b| {
            let ids = vec![1u32; b * width];
            session.run(&ids, width, "probability")?; // warm-up
            let mut times: Vec<f64> = (0..runs.max(1))
                .map(|_| {
                    let t = Instant::now();
                    session.run(&ids, width, "probability").map(|_| t.elapsed().as_secs_f64() * 1e6)
                })
                .collect::<Result<_, _>>()?;
            times.sort_by(f64::total_cmp);
            let pick = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
            Ok(LatencyPoint { batch_size: b, median_us: pick(0.5), p99_us: pick(0.99) })
        })
        .collect()
}

/// UTC time as a compact version string, e.g. 20261123T004500Z.
fn timestamp() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string().replace(['-', ':'], "")
}

fn git_commit() -> Option<String> {
    let out = std::process::Command::new("git").args(["rev-parse", "HEAD"]).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}
