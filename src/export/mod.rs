//! `serve export`: a finished run → `models/<name>/<version>/` with the full ensemble graph, every student
//! alone, the encoder and a manifest (metrics, best student, latency profile), written atomically.
use std::path::{Path, PathBuf};
use std::time::Instant;

use tch::{nn, Device};

use crate::artifact::{self, GraphEntry, GraphKind, LatencyPoint, Manifest, Metric};
use crate::config::{InvalidKey, TrainConfig};
use crate::features::Encoder;
use crate::model::{Ensemble, FieldLayout};
use crate::onnx::builder::to_bytes;
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
    Io(#[from] std::io::Error),
}

/// Batch sizes of the manifest's latency profile.
pub const PROFILE_BATCHES: [usize; 4] = [1, 8, 64, 256];

pub struct ExportOptions {
    pub models_dir: PathBuf,
    /// Model name (default: the run's name).
    pub name: Option<String>,
    /// Version (default: UTC timestamp).
    pub version: Option<String>,
    pub ort_library: PathBuf,
    /// Latency-profile repetitions per batch size.
    pub profile_runs: usize,
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
    let k = loaded.ensemble.students.len();
    for g in 0..=k {
        let (file, builder, kind, index, model_type) = if g == k {
            (
                "ensemble.onnx".to_string(),
                loaded.ensemble.emit_ensemble(&name),
                GraphKind::Ensemble,
                None,
                loaded.cfg.framework.to_string(),
            )
        } else {
            (
                format!("student_{g}.onnx"),
                loaded.ensemble.emit_student(g, &format!("{name}_student_{g}")),
                GraphKind::Student,
                Some(g),
                loaded.cfg.students[g].to_string(),
            )
        };
        let model = builder.finish();
        let parameters = model
            .graph
            .as_ref()
            .map_or(0, |gr| gr.initializer.iter().map(|t| t.dims.iter().product::<i64>().max(1) as u64).sum());
        let bytes = to_bytes(&model);
        let path = tmp.path().join(&file);
        std::fs::write(&path, &bytes)?;
        let mut session = GraphSession::load(env, &path, &schema, &loaded.encoder, 1)?;
        let latency = profile(&mut session, &loaded.encoder, opts.profile_runs)?;
        let summary = &loaded.summary;
        let metric = |split| Metric::from(summary.scores(split, index));
        graphs.push(GraphEntry {
            file,
            kind,
            index,
            model_type,
            parameters,
            file_bytes: bytes.len() as u64,
            blake3: blake3::hash(&bytes).to_hex().to_string(),
            valid: metric(&summary.valid),
            test: summary.test.as_ref().map(metric),
            latency,
        });
    }
    graphs.rotate_right(1); // the ensemble first
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
