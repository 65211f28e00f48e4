//! `config/server.toml`: what `serve run` reads.
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::runtime::Provider;

/// `config/server.toml`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address the HTTP server listens on.
    pub bind: String,
    /// Address the KServe v2 gRPC server listens on; empty = no gRPC.
    pub grpc_bind: String,
    /// Directory holding `<name>/<version>/` model artifacts.
    pub models_dir: PathBuf,
    /// Model served by `/v1/score`.
    pub default_model: String,
    /// ONNX Runtime shared library; empty = `ORT_DYLIB_PATH`, else the one `scripts/setup` installs.
    pub ort_library: Option<PathBuf>,
    /// Threads ONNX Runtime uses inside one graph run.
    pub intra_op_threads: usize,
    /// Execution provider: cpu, or cuda (falls back to CPU, logged, when unavailable).
    pub execution_provider: Provider,
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
    /// Share of each request's remaining budget that routing keeps free (0 ≤ x < 1): estimates miss work not
    /// yet decoded and run-time noise, so planning to fill the whole budget misses it under load.
    pub budget_headroom: f64,
    /// Validation-AUC difference below which routing ranks the faster of two tiers first (0: strict AUC
    /// order); e.g. 0.0001 lets int8 twins that lose less than that outrank their fp32 graphs.
    pub auc_tolerance: f64,
    /// Tiers to load and route between ("ensemble", "student" (the best), "student:<k>", each optionally
    /// ":int8"); empty = every graph of the model.
    pub tiers: Vec<String>,
    /// A missing field encodes as its OOV id instead of a 422.
    pub missing_as_oov: bool,
    /// Answer 429 at once when queued work puts every tier past a request's budget (the fastest tier would
    /// fit when idle); otherwise such requests are served late by the fastest tier.
    pub shed_on_overload: bool,
    /// Low-latency mode: spin threads at SCHED_IDLE priority keep idle cores from halting, so waking the
    /// server (and answering) costs no vCPU wake-up, and keep idle graphs warm with one-row runs; the cores
    /// then read 100% busy to CPU accounting.
    pub idle_spin: bool,
    /// Idle cores poll instead of halting while the server runs (a 0 µs PM QoS request held on
    /// `/dev/cpu_dma_latency`; root, every core of the host); CPU accounting still reads them idle.
    pub idle_poll: bool,
    /// Bearer token for `POST /admin/reload`; empty disables the admin endpoints.
    pub admin_token: String,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            bind: "127.0.0.1:8080".into(),
            grpc_bind: String::new(),
            models_dir: "models".into(),
            default_model: "default".into(),
            ort_library: None,
            intra_op_threads: 1,
            execution_provider: Provider::Cpu,
            max_batch_size: 256,
            max_queue_delay_us: 0,
            batch_cooldown: 1.0,
            queue_capacity: 1024,
            max_in_flight: 2048,
            max_instances: 1024,
            body_limit_bytes: 2 << 20,
            request_timeout_ms: 2000,
            default_budget_ms: 10.0,
            budget_headroom: 0.2,
            auc_tolerance: 0.0,
            tiers: Vec::new(),
            missing_as_oov: false,
            shed_on_overload: false,
            idle_spin: false,
            idle_poll: false,
            admin_token: String::new(),
        }
    }
}
