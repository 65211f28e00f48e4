//! Server and training configuration: TOML files (`config/*.toml`) whose every key has a default here;
//! CLI flags and environment variables override them.
use std::path::{Path, PathBuf};

use serde::{de::DeserializeOwned, Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    // `error`, not `source`: the message holds it, and `{e:#}` would print a source twice.
    #[error("{path}: {error}")]
    Io { path: PathBuf, error: std::io::Error },
    #[error("{path}: {reason}")]
    Parse { path: PathBuf, reason: String },
}

/// Reads a TOML file into `T`; unknown keys are errors (a typo must not silently fall back to a default).
pub fn load<T: DeserializeOwned>(path: &Path) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Io { path: path.into(), error: e })?;
    toml::from_str(&text).map_err(|e| ConfigError::Parse { path: path.into(), reason: e.to_string() })
}

/// `config/server.toml`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address the HTTP server listens on.
    pub bind: String,
    /// Directory holding `<name>/<version>/` model artifacts.
    pub models_dir: PathBuf,
    /// Model served by `/v1/score`.
    pub default_model: String,
    /// ONNX Runtime shared library; empty = `ORT_DYLIB_PATH`, else the one `scripts/setup` installs.
    pub ort_library: Option<PathBuf>,
    /// Threads ONNX Runtime uses inside one graph run.
    pub intra_op_threads: usize,
    /// Execution provider: "cpu", or "cuda" (falls back to CPU, logged, when unavailable).
    pub execution_provider: String,
    /// Log format: "text" or "json".
    pub log_format: String,
    /// Rows per batch a graph's queue task forms at most.
    pub max_batch_size: usize,
    /// How long a batch waits for more rows after its first request (µs).
    pub max_queue_delay_us: u64,
    /// A busy graph waits this multiple of its last partial batch's run time (capped) before the next batch,
    /// so rows gather into cheaper larger batches (0 = greedy: the next batch starts at once).
    pub batch_cooldown: f64,
    /// Requests a graph's queue holds; beyond it requests get 503 at once.
    pub queue_capacity: usize,
    /// Requests being scored at once; beyond it requests get 429 at once.
    pub max_in_flight: usize,
    /// Instances per request at most (413 beyond).
    pub max_instances: usize,
    /// Request body size limit in bytes (413 beyond).
    pub body_limit_bytes: usize,
    /// Per-request timeout (ms): 504 when a request waits longer.
    pub request_timeout_ms: u64,
    /// Latency budget of a request that names none (ms).
    pub default_budget_ms: f64,
    /// Tiers to load and route between ("ensemble", "student:<k>"); empty = the ensemble and every student.
    pub tiers: Vec<String>,
    /// A missing field encodes as its OOV id instead of a 422.
    pub missing_as_oov: bool,
    /// Answer 429 at once when queued work puts every tier past a request's budget (the fastest tier would
    /// fit when idle); otherwise such requests are served late by the fastest tier.
    pub shed_on_overload: bool,
    /// Low-latency mode: spin threads at SCHED_IDLE priority keep idle cores from halting, so waking the
    /// server (and answering) costs no vCPU wake-up; the cores then read 100% busy to CPU accounting.
    pub idle_spin: bool,
    /// Bearer token for `POST /admin/reload`; empty disables the admin endpoints.
    pub admin_token: String,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            bind: "127.0.0.1:8080".into(),
            models_dir: "models".into(),
            default_model: "default".into(),
            ort_library: None,
            intra_op_threads: 1,
            execution_provider: "cpu".into(),
            log_format: "text".into(),
            max_batch_size: 256,
            max_queue_delay_us: 0,
            batch_cooldown: 1.0,
            queue_capacity: 1024,
            max_in_flight: 2048,
            max_instances: 1024,
            body_limit_bytes: 2 << 20,
            request_timeout_ms: 2000,
            default_budget_ms: 10.0,
            tiers: Vec::new(),
            missing_as_oov: false,
            shed_on_overload: false,
            idle_spin: false,
            admin_token: String::new(),
        }
    }
}

/// `config/train.toml`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// Dataset description (see `config/datasets/`).
    pub dataset: PathBuf,
    /// Cross layers of DCNv2 and ECN students.
    pub cross_layers: i64,
    /// DHEN students: interaction modules per layer (linear, dcn, self_attention, dot).
    pub dhen_modules: Vec<String>,
    /// DHEN students: stacked layers.
    pub dhen_layers: i64,
    /// DHEN students: sum or concat of a layer's modules.
    pub dhen_ensemble: String,
    /// Per-student dropout overriding `dropout` (same length as `students`, or empty).
    pub student_dropouts: Vec<f64>,
    /// Ensemble framework: single, mean, sum, concat, kd, dml, kdef, kdef_no_exam, cetnet.
    pub framework: String,
    /// Student sub-networks, e.g. ["mlp", "mlp", "mlp"] or ["pnn", "final", "ecn"].
    pub students: Vec<String>,
    /// Embedding dimension d.
    pub embedding_dim: i64,
    /// Hidden layer sizes of MLP parts.
    pub hidden_units: Vec<i64>,
    pub dropout: f64,
    pub batch_norm: bool,
    pub batch_size: usize,
    pub learning_rate: f64,
    /// L2 penalty on embeddings (FuxiCTR's `embedding_regularizer`).
    pub embedding_l2: f64,
    pub max_epochs: usize,
    /// Epochs without validation-AUC improvement before stopping (best epoch restored).
    pub patience: usize,
    /// Smallest validation-AUC gain that counts as an improvement (FuxiCTR: 1e-6).
    pub min_delta: f64,
    /// Clip the global gradient L2 norm to this before each step (FuxiCTR's default is 10); 0 = off.
    pub max_gradient_norm: f64,
    pub seed: u64,
    /// "cpu", "cuda" or "auto".
    pub device: String,
    /// libtorch intra-op threads (0 = libtorch's default: all cores).
    pub threads: usize,
    /// CETNet's weight α on the symmetric-KL collaborative loss.
    pub cetnet_alpha: f64,
    /// Singular-value threshold τ of knowledge abundance.
    pub ka_tau: f64,
    /// Run name (directory under runs/); empty = "<dataset>_<framework>".
    pub name: String,
}

impl TrainConfig {
    /// Range checks for every numeric key, naming the key: libtorch would otherwise panic on a zero-width
    /// layer, loop forever on `batch_size = 0`, or train silently on a dropout of 1.5.
    pub fn validate(&self) -> Result<(), String> {
        let at_least_one = [
            ("embedding_dim", self.embedding_dim),
            ("cross_layers", self.cross_layers),
            ("dhen_layers", self.dhen_layers),
            ("batch_size", self.batch_size as i64),
            ("max_epochs", self.max_epochs as i64),
        ];
        let hidden = self.hidden_units.iter().map(|&u| ("hidden_units", u));
        if let Some((key, v)) = at_least_one.into_iter().chain(hidden).find(|&(_, v)| v < 1) {
            return Err(format!("{key} = {v}: must be at least 1"));
        }
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0) {
            return Err(format!("learning_rate = {}: must be a finite number > 0", self.learning_rate));
        }
        let non_negative = [
            ("min_delta", self.min_delta),
            ("max_gradient_norm", self.max_gradient_norm),
            ("embedding_l2", self.embedding_l2),
            ("cetnet_alpha", self.cetnet_alpha),
            ("ka_tau", self.ka_tau),
        ];
        if let Some((key, v)) = non_negative.into_iter().find(|&(_, v)| !(v.is_finite() && v >= 0.0)) {
            return Err(format!("{key} = {v}: must be a finite number ≥ 0"));
        }
        let dropouts = std::iter::once(("dropout", self.dropout))
            .chain(self.student_dropouts.iter().map(|&d| ("student_dropouts", d)));
        if let Some((key, v)) = dropouts.into_iter().find(|&(_, v)| !(0.0..1.0).contains(&v)) {
            return Err(format!("{key} = {v}: must be a probability from 0 up to (not including) 1"));
        }
        Ok(())
    }
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            dataset: "config/datasets/frappe_ctr.toml".into(),
            framework: "kdef".into(),
            cross_layers: 3,
            student_dropouts: Vec::new(),
            dhen_modules: vec!["self_attention".into(), "linear".into()],
            dhen_layers: 2,
            dhen_ensemble: "sum".into(),
            students: vec!["mlp".into(), "mlp".into(), "mlp".into()],
            embedding_dim: 16,
            hidden_units: vec![400, 400, 400],
            dropout: 0.1,
            batch_norm: true,
            batch_size: 4096,
            learning_rate: 1e-3,
            embedding_l2: 0.01,
            max_epochs: 100,
            patience: 2,
            min_delta: 1e-6,
            max_gradient_norm: 1.0,
            seed: 2024,
            device: "auto".into(),
            threads: 0,
            cetnet_alpha: 0.1,
            ka_tau: 0.05,
            name: String::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::TrainConfig;

    /// A key as written, and the change that sets it so.
    type Case = (&'static str, fn(&mut TrainConfig));

    #[test]
    fn the_default_training_config_is_valid() {
        assert_eq!(TrainConfig::default().validate(), Ok(()));
    }

    #[test]
    fn every_out_of_range_training_key_is_named() {
        let cases: [Case; 14] = [
            ("embedding_dim = 0", |c| c.embedding_dim = 0),
            ("cross_layers = -1", |c| c.cross_layers = -1),
            ("dhen_layers = 0", |c| c.dhen_layers = 0),
            ("batch_size = 0", |c| c.batch_size = 0),
            ("max_epochs = 0", |c| c.max_epochs = 0),
            ("hidden_units = -5", |c| c.hidden_units = vec![400, -5]),
            ("learning_rate = -1", |c| c.learning_rate = -1.0),
            ("learning_rate = NaN", |c| c.learning_rate = f64::NAN),
            ("embedding_l2 = -0.1", |c| c.embedding_l2 = -0.1),
            ("cetnet_alpha = inf", |c| c.cetnet_alpha = f64::INFINITY),
            ("ka_tau = -1", |c| c.ka_tau = -1.0),
            ("max_gradient_norm = NaN", |c| c.max_gradient_norm = f64::NAN),
            ("dropout = 1.5", |c| c.dropout = 1.5),
            ("student_dropouts = 1", |c| c.student_dropouts = vec![0.1, 1.0, 0.1]),
        ];
        for (want, break_it) in cases {
            let mut cfg = TrainConfig::default();
            break_it(&mut cfg);
            let err = cfg.validate().expect_err(want);
            assert!(err.starts_with(want), "{want}: {err}");
        }
    }
}
