//! Command-line interface: clap definitions only; each command's work lives in its module.
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use ensemble_serve::config::{DeviceChoice, Framework, StudentKind};

#[derive(Debug, Parser)]
#[command(name = "serve", version, about = "Train KDEF CTR ensembles and serve them with latency-budget routing")]
pub struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, env = "SERVE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start the inference server (what a bare `serve` does).
    Run(RunArgs),
    /// Train an ensemble (KDEF, CETNet, fusion baselines) and export it.
    Train(TrainArgs),
    /// Datasets: inspect, encode, build from raw releases, synthesise.
    #[command(subcommand)]
    Data(DataCommand),
    /// Re-export a finished training run to an ONNX model artifact.
    Export(ExportArgs),
    /// Evaluate a model artifact on a dataset split.
    Eval(EvalArgs),
    /// Probe a server's readiness (exit 0 on HTTP 200): the container HEALTHCHECK, with no curl in the image.
    Health(HealthArgs),
}

#[derive(Debug, Args)]
pub struct HealthArgs {
    /// Address to probe (plain HTTP).
    #[arg(long, env = "SERVE_HEALTH_URL", default_value = "http://127.0.0.1:8080/readyz")]
    pub url: String,
    /// Seconds to wait for the answer.
    #[arg(long, default_value_t = 2)]
    pub timeout_s: u64,
}

#[derive(Debug, Args, Default)]
pub struct RunArgs {
    /// Server config file (TOML); missing keys take their defaults.
    #[arg(long, env = "SERVE_CONFIG", default_value = "config/server.toml")]
    pub config: PathBuf,
    /// Listen address, e.g. 127.0.0.1:8080 (overrides the config's `bind`).
    #[arg(long, env = "SERVE_BIND")]
    pub bind: Option<String>,
    /// KServe v2 gRPC listen address, e.g. 127.0.0.1:8081; empty = no gRPC (overrides `grpc_bind`).
    #[arg(long, env = "SERVE_GRPC_BIND")]
    pub grpc_bind: Option<String>,
    /// Directory of `<name>/<version>/` model artifacts (overrides `models_dir`).
    #[arg(long, env = "SERVE_MODELS_DIR")]
    pub models_dir: Option<PathBuf>,
    /// Model that /v1/score serves (overrides `default_model`).
    #[arg(long, env = "SERVE_DEFAULT_MODEL")]
    pub default_model: Option<String>,
    /// ONNX Runtime shared library (overrides `ort_library`; ort's own ORT_DYLIB_PATH is honoured too).
    #[arg(long, env = "SERVE_ORT_LIB")]
    pub ort_lib: Option<PathBuf>,
    /// Bearer token of POST /admin/reload (overrides `admin_token`).
    #[arg(long, env = "SERVE_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// ONNX Runtime intra-op threads per session (overrides `intra_op_threads`).
    #[arg(long, env = "SERVE_THREADS")]
    pub threads: Option<usize>,
    /// "cpu" or "cuda" (overrides `execution_provider`).
    #[arg(long, env = "SERVE_EXECUTION_PROVIDER", value_enum)]
    pub execution_provider: Option<ensemble_serve::runtime::Provider>,
    /// Keep idle cores out of halt with SCHED_IDLE spinners (sets `idle_spin`; low-latency mode).
    #[arg(long, env = "SERVE_IDLE_SPIN")]
    pub idle_spin: Option<bool>,
    /// Idle cores poll instead of halting while the server runs (sets `idle_poll`; root; low-latency mode).
    #[arg(long, env = "SERVE_IDLE_POLL")]
    pub idle_poll: Option<bool>,
    /// Multiple of a batch's run time a busy graph waits before its next batch (overrides `batch_cooldown`).
    #[arg(long, env = "SERVE_BATCH_COOLDOWN")]
    pub batch_cooldown: Option<f64>,
}

#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Training config file (TOML), see config/train.toml.
    #[arg(long, env = "SERVE_TRAIN_CONFIG", default_value = "config/train.toml")]
    pub config: PathBuf,
    /// Run directory to write (default runs/<name>).
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// cpu, cuda or auto (overrides `device`).
    #[arg(long)]
    pub device: Option<DeviceChoice>,
    /// Random seed (overrides `seed`).
    #[arg(long)]
    pub seed: Option<u64>,
    #[command(flatten)]
    pub overrides: TrainOverrides,
    #[command(flatten)]
    pub location: DataLocation,
    /// Hide progress bars.
    #[arg(long)]
    pub quiet: bool,
    /// Do not export the trained run to an ONNX artifact.
    #[arg(long)]
    pub no_export: bool,
    #[command(flatten)]
    pub target: ExportTarget,
}

/// Flags that override keys of the training config.
#[derive(Debug, Args, Default)]
pub struct TrainOverrides {
    /// Dataset spec (overrides `dataset`).
    #[arg(long)]
    pub dataset: Option<PathBuf>,
    /// Framework (overrides `framework`).
    #[arg(long)]
    pub framework: Option<Framework>,
    /// Comma-separated student types (overrides `students`), e.g. mlp,mlp,mlp or pnn,final,ecn.
    #[arg(long, value_delimiter = ',')]
    pub students: Option<Vec<StudentKind>>,
    /// Maximum epochs (overrides `max_epochs`).
    #[arg(long)]
    pub max_epochs: Option<usize>,
    /// Batch size (overrides `batch_size`).
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Run name (overrides `name`).
    #[arg(long)]
    pub name: Option<String>,
}

impl TrainOverrides {
    /// Only `serve train` applies them; the serving-only build parses them but never trains.
    #[cfg(feature = "train")]
    pub fn apply(&self, cfg: &mut ensemble_serve::config::TrainConfig) {
        if let Some(v) = &self.dataset {
            cfg.dataset = v.clone();
        }
        if let Some(v) = &self.framework {
            cfg.framework = *v;
        }
        if let Some(v) = &self.students {
            cfg.students = v.clone();
        }
        if let Some(v) = self.max_epochs {
            cfg.max_epochs = v;
        }
        if let Some(v) = self.batch_size {
            cfg.batch_size = v;
        }
        if let Some(v) = &self.name {
            cfg.name = v.clone();
        }
    }
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// A finished run directory (runs/<name>).
    pub run_dir: PathBuf,
    #[command(flatten)]
    pub target: ExportTarget,
    #[command(flatten)]
    pub location: DataLocation,
}

/// Where and under which name/version an artifact is written.
#[derive(Debug, Args, Clone)]
pub struct ExportTarget {
    /// Artifacts go to <models-dir>/<name>/<version>/.
    #[arg(long, env = "SERVE_MODELS_DIR", default_value = "models")]
    pub models_dir: PathBuf,
    /// Model name (default: the run directory's name).
    #[arg(long = "model-name")]
    pub model_name: Option<String>,
    /// Model version (default: UTC timestamp).
    #[arg(long = "model-version")]
    pub model_version: Option<String>,
    /// ONNX Runtime shared library for the latency profile (default: ORT_DYLIB_PATH, else the setup cache).
    #[arg(long, env = "SERVE_ORT_LIB")]
    pub ort_lib: Option<PathBuf>,
    /// Runs per batch size in the manifest's latency profile.
    #[arg(long, default_value_t = 200)]
    pub profile_runs: usize,
    /// Write only the fp32 graphs (by default every graph also gets an int8 twin, scored at export).
    #[arg(long)]
    pub no_int8: bool,
    /// Emit the ensemble graph with its MLP students' first dense layers fused into one MatMul.
    #[arg(long)]
    pub fuse_first_layers: bool,
    /// How int8 weights are scaled: one scale per tensor, or one per output channel.
    #[arg(long, value_enum, default_value = "per-tensor")]
    pub int8_weights: ensemble_serve::onnx::WeightScale,
    /// How int8 activations are scaled: fixed ranges calibrated on training rows (a row scores the same in any
    /// batch), or each run's own range.
    #[arg(long, value_enum, default_value = "static")]
    pub int8_activations: ensemble_serve::onnx::ActivationScale,
    /// Int8 graphs also store their embedding tables 8-bit row-wise (a quarter of the bytes).
    #[arg(long)]
    pub int8_embeddings: bool,
}

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// A model artifact directory: models/<name>/<version>, or models/<name> for its newest version.
    pub model_dir: PathBuf,
    /// Dataset spec (TOML) whose rows to score (default config/datasets/<the manifest's dataset>.toml).
    #[arg(long)]
    pub spec: Option<PathBuf>,
    /// Which split of the spec to score.
    #[arg(long, value_enum, default_value = "test")]
    pub split: ensemble_serve::data::Split,
    /// Score this file (in the spec's format) instead of the split's own, e.g. a newer day of logs.
    #[arg(long)]
    pub file: Option<PathBuf>,
    #[command(flatten)]
    pub location: DataLocation,
    /// Rows per ONNX Runtime call.
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u32).range(1..=1_048_576))]
    pub batch_size: u32,
    /// ONNX Runtime intra-op threads per graph.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Malformed lines: skip (count, report the first 10) or fail (stop at the first).
    #[arg(long, value_enum)]
    pub on_error: Option<Policy>,
    /// Also write the report as JSON here (atomically).
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// ONNX Runtime shared library (as for `serve run`).
    #[arg(long, env = "SERVE_ORT_LIB")]
    pub ort_lib: Option<PathBuf>,
    /// Hide the progress bar.
    #[arg(long)]
    pub quiet: bool,
}

/// Where a dataset spec's relative paths point, and where encoded datasets are cached.
#[derive(Debug, Args, Clone)]
pub struct DataLocation {
    /// Root for relative file paths in dataset specs.
    #[arg(long, env = "CTR_DATA_DIR", default_value = ensemble_serve::paths::DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// Read every split of a dataset: cardinalities, OOV rates, label balance, skipped lines, rows/s.
    Inspect(InspectArgs),
    /// Encode a dataset into the memory-mapped cache that training reads (skipped when up to date).
    Encode(EncodeArgs),
    /// Build the benchmark CSVs (train/valid/test) from an original release.
    Build(BuildArgs),
    /// Write SYNTHETIC Criteo-shaped rows (for scale and load tests only).
    Synth(SynthArgs),
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Dataset spec (TOML), e.g. config/datasets/frappe_ctr.toml.
    pub spec: PathBuf,
    #[command(flatten)]
    pub location: DataLocation,
    /// Use this training file instead of the spec's.
    #[arg(long)]
    pub train: Option<PathBuf>,
    /// Use this validation file instead of the spec's.
    #[arg(long)]
    pub valid: Option<PathBuf>,
    /// Use this test file instead of the spec's.
    #[arg(long)]
    pub test: Option<PathBuf>,
    /// Malformed lines: skip (count, report the first 10) or fail (stop at the first).
    #[arg(long, value_enum)]
    pub on_error: Option<Policy>,
    /// Hide progress bars.
    #[arg(long)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct EncodeArgs {
    /// Dataset spec (TOML).
    pub spec: PathBuf,
    #[command(flatten)]
    pub location: DataLocation,
    /// Cache root (default: the setup cache's `datasets/`).
    #[arg(long, env = "SERVE_DATA_CACHE")]
    pub cache_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Policy {
    Skip,
    Fail,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum RawSource {
    /// Frappe's `frappe.csv` (2 sampled negatives per positive, split 7:2:1).
    Frappe,
    /// MovieLens-100K's `u.data`/`u.user`/`u.item` (rating 3 dropped, label = rating > 3, split 8:1:1).
    Movielens,
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Which release.
    #[arg(value_enum)]
    pub source: RawSource,
    /// Directory of the original files.
    #[arg(long)]
    pub src: PathBuf,
    /// Output directory for train.csv / valid.csv / test.csv.
    #[arg(long)]
    pub out: PathBuf,
    /// Seed for negative sampling and the shuffle.
    #[arg(long, default_value_t = 2024)]
    pub seed: u64,
}

#[derive(Debug, Args)]
pub struct SynthArgs {
    /// Number of rows.
    #[arg(long, default_value_t = 1_000_000)]
    pub rows: u64,
    /// Output file (Criteo TSV; written atomically).
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Scale factor on Criteo's per-field cardinalities.
    #[arg(long, default_value_t = 1.0)]
    pub scale: f64,
}
