//! The process's single ONNX Runtime environment, loaded from a shared library at run time.
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ort::environment::Environment;

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("ONNX Runtime library not found at {0} (run scripts/setup, or pass --ort-lib / set ORT_DYLIB_PATH)")]
    Missing(PathBuf),
    #[error("cannot load ONNX Runtime from {path}: {reason}")]
    Load { path: PathBuf, reason: String },
    #[error("ONNX Runtime was already initialised from {0}; one environment per process")]
    AlreadyFrom(PathBuf),
}

static ENV: OnceLock<(PathBuf, Environment)> = OnceLock::new();
static INIT_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Loads ONNX Runtime from `library` once; later calls with the same path return the same environment.
pub fn init(library: &Path) -> Result<&'static Environment, RuntimeError> {
    let _serialised = INIT_LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some((path, env)) = ENV.get() {
        return if path == library { Ok(env) } else { Err(RuntimeError::AlreadyFrom(path.clone())) };
    }
    if !library.is_file() {
        return Err(RuntimeError::Missing(library.to_path_buf()));
    }
    let load_err = |reason: String| RuntimeError::Load { path: library.to_path_buf(), reason };
    let builder = ort::init_from(library).map_err(|e| load_err(e.to_string()))?;
    let env = builder.with_name("ensemble-serve").build().map_err(|e| load_err(e.to_string()))?;
    let (_, env) = ENV.get_or_init(|| (library.to_path_buf(), env));
    Ok(env)
}

/// The library path from, in order: an explicit choice (flag or config), `ORT_DYLIB_PATH`, the setup cache.
pub fn resolve_library(explicit: Option<&Path>) -> PathBuf {
    explicit
        .map(Path::to_path_buf)
        .or_else(|| std::env::var_os("ORT_DYLIB_PATH").map(PathBuf::from))
        .unwrap_or_else(crate::paths::default_ort_library)
}

/// Where a graph runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    Cpu,
    Cuda,
}

impl Provider {
    pub fn name(self) -> &'static str {
        match self {
            Provider::Cpu => "cpu",
            Provider::Cuda => "cuda",
        }
    }
}

/// One ONNX graph in one ORT session, fed from encoded rows (the layout of [`crate::features::Encoder`]).
pub struct GraphSession {
    session: ort::session::Session,
    scalars: usize,
    /// (input name, first slot, max_len) per sequence field.
    sequences: Vec<(String, usize, usize)>,
}

impl GraphSession {
    pub fn load(
        env: &Environment,
        path: &Path,
        schema: &crate::artifact::InputSchema,
        encoder: &crate::features::Encoder,
        intra_threads: usize,
    ) -> Result<Self, ort::Error> {
        Self::load_on(env, path, schema, encoder, intra_threads, Provider::Cpu).map(|(s, _)| s)
    }

    /// Loads on `provider`; a CUDA registration that fails (no GPU, no CUDA libraries, a CPU-only ONNX
    /// Runtime) is logged with its reason and the session falls back to the CPU. Returns the provider used.
    pub fn load_on(
        env: &Environment,
        path: &Path,
        schema: &crate::artifact::InputSchema,
        encoder: &crate::features::Encoder,
        intra_threads: usize,
        provider: Provider,
    ) -> Result<(Self, Provider), ort::Error> {
        let builder = || -> Result<ort::session::builder::SessionBuilder, ort::Error> {
            Ok(ort::session::Session::builder(env)?.with_intra_threads(intra_threads.max(1))?)
        };
        let (session, used) = match provider {
            Provider::Cuda => {
                let cuda = ort::ep::CUDA::default().build().error_on_failure();
                let attempt = || -> Result<ort::session::Session, ort::Error> {
                    builder()?.with_execution_providers([cuda])?.commit_from_file(path)
                };
                match attempt() {
                    Ok(s) => (s, Provider::Cuda),
                    Err(e) => {
                        tracing::warn!(graph = %path.display(), reason = %e, "CUDA execution provider unavailable; using CPU");
                        (builder()?.commit_from_file(path)?, Provider::Cpu)
                    }
                }
            }
            Provider::Cpu => (builder()?.commit_from_file(path)?, Provider::Cpu),
        };
        let sequences = schema
            .sequences
            .iter()
            .map(|s| {
                let i = encoder.fields.iter().position(|f| f.spec.name == s.field).expect("schema matches encoder");
                (s.input.clone(), encoder.slots(i).start, s.max_len)
            })
            .collect();
        Ok((Self { session, scalars: schema.field_ids.len(), sequences }, used))
    }

    /// Runs `rows` encoded rows (row-major, `width` ids each); returns `output` as a flat row-major vector.
    pub fn run(&mut self, ids: &[u32], width: usize, output: &str) -> Result<(Vec<f32>, usize), ort::Error> {
        Ok(self.run_outputs(ids, width, &[output])?.pop().expect("one output"))
    }

    /// Like [`GraphSession::run`], for several outputs at once.
    pub fn run_outputs(
        &mut self,
        ids: &[u32],
        width: usize,
        names: &[&str],
    ) -> Result<Vec<(Vec<f32>, usize)>, ort::Error> {
        let rows = ids.len() / width.max(1);
        let column = |start: usize, len: usize| {
            let mut v = Vec::with_capacity(rows * len);
            for r in 0..rows {
                v.extend(ids[r * width + start..r * width + start + len].iter().map(|&x| x as i64));
            }
            ndarray::Array2::from_shape_vec((rows, len), v).expect("shape")
        };
        let mut inputs: Vec<(String, ort::value::DynValue)> =
            vec![("field_ids".into(), ort::value::Tensor::from_array(column(0, self.scalars))?.into_dyn())];
        for (name, start, len) in &self.sequences {
            inputs.push((name.clone(), ort::value::Tensor::from_array(column(*start, *len))?.into_dyn()));
        }
        let outputs = self.session.run(inputs)?;
        names
            .iter()
            .map(|name| {
                let (shape, data) = outputs[*name].try_extract_tensor::<f32>()?;
                Ok((data.to_vec(), shape.get(1).copied().unwrap_or(1) as usize))
            })
            .collect()
    }
}
