//! A load scenario, one TOML file in `load-tests/scenarios/`: what to replay, at which arrival rates, under
//! which routing policies and budgets, and how the spawned server is configured.
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Dataset spec whose split is replayed (relative to the working directory).
    pub dataset: PathBuf,
    #[serde(default = "default_split")]
    pub split: ensemble_serve::data::Split,
    #[serde(default = "one")]
    pub instances_per_request: usize,
    /// Rows per request drawn for each request (ranking traffic; DeepRecSys's mix is mean 165, at most
    /// 1,024); absent: `instances_per_request` for every request.
    #[serde(default)]
    pub rows_per_request: Option<RowsDist>,
    /// Ranking requests: these fields are sent once per request as `context` (taken from the request's first
    /// row), the other fields of each row as one of its `candidates`; labels stay the candidates' own. Empty:
    /// `instances` bodies. The served scores are then those of the merged rows, so no offline AUC is shown.
    #[serde(default)]
    pub context_fields: Vec<String>,
    #[serde(default)]
    pub arrival: Arrival,
    #[serde(default = "default_policies")]
    pub policies: Vec<Policy>,
    /// Servers measured one after the other on the same cores and traffic: this one, and the peers on the
    /// same artifact (load-tests/peers/). Peers serve fixed tiers, so they run the ensemble and student
    /// policies only.
    #[serde(default = "default_targets")]
    pub targets: Vec<Target>,
    /// Budget mix: each request draws one by share; empty = every request 10 ms.
    #[serde(default)]
    pub budgets: Vec<BudgetShare>,
    pub phases: Vec<Phase>,
    /// Phases run back to back on one timeline (a spike); otherwise each runs alone, drained and paused.
    #[serde(default)]
    pub continuous: bool,
    /// Also execute the ideal server on each phase's arrival trace (raw ONNX Runtime on the server's core),
    /// in turns of 10 s with the phase, and report its p99 beside the one computed from the floors.
    #[serde(default)]
    pub ideal_run: bool,
    /// Ends a policy's run after the first phase that breaks it (a capacity sweep).
    #[serde(default)]
    pub stop: Option<StopRule>,
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Width of the timeline windows (ms).
    #[serde(default = "default_window")]
    pub window_ms: u64,
    /// Requests the generator keeps outstanding at most; beyond it a send counts as a generator overflow.
    #[serde(default = "default_outstanding")]
    pub max_outstanding: usize,
    /// HTTP/1.1 connections the generator keeps at most (wrk2-style: a request waits for a free one, and that
    /// wait counts in its latency). Unbounded pools grew to ~1,000 connections after one stall here and
    /// never shrank back, which made every later request dearer for client and server alike; 64 was too few
    /// (at 10,000 rps, 6.4 ms of server latency already fills them).
    #[serde(default = "default_connections")]
    pub connections: usize,
    /// Client-side timeout per request (ms).
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
    /// Keys that override the spawned server's config (same names as config/server.toml).
    #[serde(default)]
    pub server: toml::Table,
    /// CPUs the spawned server may run on (empty: any); e.g. [1].
    #[serde(default)]
    pub server_cpus: Vec<usize>,
    /// CPUs the generator runs on (empty: any); e.g. [0]. Keep it apart from `server_cpus`: a generator
    /// that shares the server's cores measures itself.
    #[serde(default)]
    pub generator_cpus: Vec<usize>,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum Arrival {
    #[default]
    Poisson,
    Constant,
}

/// How requests ask to be routed.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum Policy {
    /// `tier` left to the server: budget routing.
    Budget,
    /// Always the full ensemble.
    Ensemble,
    /// Always the best student.
    Student,
}

impl Policy {
    pub fn name(self) -> &'static str {
        match self {
            Policy::Budget => "budget",
            Policy::Ensemble => "ensemble",
            Policy::Student => "student",
        }
    }
    /// The request's `tier` field, if any.
    pub fn tier(self) -> Option<&'static str> {
        match self {
            Policy::Budget => None,
            Policy::Ensemble => Some("ensemble"),
            Policy::Student => Some("student"),
        }
    }
}

/// Which server a run measures.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// ensemble-serve itself (`serve run`), /v1 JSON requests.
    Serve,
    /// ensemble-serve, KServe v2 JSON requests (the tier as a request parameter).
    ServeV2Json,
    /// ensemble-serve, KServe v2 with binary tensor data in and out.
    ServeV2Binary,
    /// ensemble-serve, KServe v2 gRPC with `raw_input_contents`.
    ServeGrpc,
    /// FastAPI + uvicorn + onnxruntime (load-tests/peers/fastapi_peer.py), same /v1 requests.
    Fastapi,
    /// NVIDIA Triton via PyTriton with its dynamic batcher (load-tests/peers/triton_peer.py), KServe v2 JSON.
    Triton,
}

impl Target {
    pub fn name(self) -> &'static str {
        match self {
            Target::Serve => "serve",
            Target::ServeV2Json => "serve_v2_json",
            Target::ServeV2Binary => "serve_v2_binary",
            Target::ServeGrpc => "serve_grpc",
            Target::Fastapi => "fastapi",
            Target::Triton => "triton",
        }
    }
    /// Whether it is this server (under any protocol) rather than a peer.
    pub fn is_ours(self) -> bool {
        !matches!(self, Target::Fastapi | Target::Triton)
    }
    /// Whether this server can run `policy` (peers have no budget routing).
    pub fn runs(self, policy: Policy) -> bool {
        self.is_ours() || policy != Policy::Budget
    }
    /// How a run of `policy` on this server is labelled in results (ours keeps the bare policy name).
    pub fn label(self, policy: Policy) -> String {
        match self {
            Target::Serve => policy.name().to_string(),
            peer => format!("{}:{}", peer.name(), policy.name()),
        }
    }
}

/// A normal distribution of rows per request, rounded and clipped to `min..=max`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RowsDist {
    pub mean: f64,
    pub sd: f64,
    pub min: usize,
    pub max: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetShare {
    pub share: f64,
    pub ms: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Phase {
    #[serde(default)]
    pub name: String,
    /// Requests per second...
    #[serde(default)]
    pub rate: Option<f64>,
    /// ...or a multiple of the capacity given on the command line...
    #[serde(default)]
    pub rate_x: Option<f64>,
    /// ...or a closed loop: this many connections, each sending its next request when its previous one is
    /// answered (the server's throughput at saturation, free of the pacing's send lag).
    #[serde(default)]
    pub closed: Option<usize>,
    pub duration_s: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StopRule {
    /// Stop once a phase's p99 exceeds this (ms).
    pub p99_ms: Option<f64>,
    /// Stop once a phase's share of failed or rejected requests exceeds this.
    pub error_share: Option<f64>,
}

fn default_split() -> ensemble_serve::data::Split {
    ensemble_serve::data::Split::Test
}
fn one() -> usize {
    1
}
fn default_policies() -> Vec<Policy> {
    vec![Policy::Budget]
}
fn default_targets() -> Vec<Target> {
    vec![Target::Serve]
}
fn default_seed() -> u64 {
    7
}
fn default_window() -> u64 {
    250
}
fn default_outstanding() -> usize {
    20_000
}
fn default_connections() -> usize {
    256
}
fn default_timeout() -> u64 {
    5_000
}

impl Scenario {
    /// Whether the generator has cores of its own: pinned, and to none of the server's.
    pub fn generator_apart(&self) -> bool {
        !self.generator_cpus.is_empty()
            && !self.server_cpus.is_empty()
            && self.generator_cpus.iter().all(|c| !self.server_cpus.contains(c))
    }

    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let s: Scenario = toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        s.validate().map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(s)
    }

    fn validate(&self) -> Result<(), String> {
        if self.phases.is_empty() || self.runs().is_empty() {
            return Err("a scenario needs at least one phase and one policy its targets can run".into());
        }
        if let Some(d) = self.rows_per_request {
            if !(d.mean.is_finite() && d.sd.is_finite() && d.sd >= 0.0 && d.min >= 1 && d.max >= d.min) {
                return Err(format!("rows_per_request {d:?}: needs a finite mean, sd >= 0 and 1 <= min <= max"));
            }
        }
        if self.instances_per_request == 0 {
            return Err("instances_per_request must be at least 1".into());
        }
        if self.connections == 0 {
            return Err("connections must be at least 1".into());
        }
        for (i, p) in self.phases.iter().enumerate() {
            if [p.rate.is_some(), p.rate_x.is_some(), p.closed.is_some()].iter().filter(|&&x| x).count() != 1 {
                return Err(format!("phase {i}: give exactly one of rate, rate_x and closed"));
            }
            if p.closed == Some(0) || (p.closed.is_some() && self.continuous) {
                return Err(format!("phase {i}: a closed loop needs at least one connection and a phase of its own"));
            }
            if !p.duration_s.is_finite() || p.duration_s <= 0.0 {
                return Err(format!("phase {i}: duration_s must be positive"));
            }
        }
        let bad = |b: &BudgetShare| !b.share.is_finite() || b.share <= 0.0 || !b.ms.is_finite() || b.ms < 0.0;
        if self.budgets.iter().any(bad) {
            return Err("every budget needs share > 0 and ms >= 0".into());
        }
        Ok(())
    }

    /// (server, policy) pairs in run order: each target runs every policy it supports.
    pub fn runs(&self) -> Vec<(Target, Policy)> {
        let pairs = self.targets.iter().flat_map(|&t| self.policies.iter().map(move |&p| (t, p)));
        pairs.filter(|&(t, p)| t.runs(p)).collect()
    }

    /// Phase rates in requests/s, resolving `rate_x` against `capacity`.
    pub fn rates(&self, capacity: Option<f64>) -> Result<Vec<f64>, String> {
        self.phases
            .iter()
            .enumerate()
            .map(|(i, p)| match (p.rate, p.rate_x, capacity) {
                _ if p.closed.is_some() => Ok(0.0),
                (Some(r), _, _) => Ok(r),
                (None, Some(x), Some(c)) => Ok(x * c),
                _ => Err(format!("phase {i} uses rate_x: pass --capacity (requests/s)")),
            })
            .collect()
    }

    /// The budget mix with shares summing to 1.
    pub fn budget_mix(&self) -> Vec<BudgetShare> {
        if self.budgets.is_empty() {
            return vec![BudgetShare { share: 1.0, ms: 10.0 }];
        }
        let total: f64 = self.budgets.iter().map(|b| b.share).sum();
        self.budgets.iter().map(|b| BudgetShare { share: b.share / total, ms: b.ms }).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ensemble_serve::config::ServerConfig;
    use ensemble_serve::features::DatasetSpec;

    /// Every shipped scenario parses, resolves its rates, names a dataset spec whose fields include its
    /// context fields, and configures a server `serve run` accepts (its `[server]` keys over
    /// config/server.toml, as `loadgen run` writes them): a typo fails here, not 20 minutes into a run.
    #[test]
    fn every_shipped_scenario_is_runnable() {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
        let base: toml::Table = toml::from_str(&std::fs::read_to_string(repo.join("config/server.toml")).unwrap())
            .expect("config/server.toml");
        let mut checked = 0;
        for entry in std::fs::read_dir(repo.join("load-tests/scenarios")).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "toml") {
                continue;
            }
            let s = Scenario::load(&path).unwrap_or_else(|e| panic!("{e}"));
            s.rates(Some(100.0)).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let spec = DatasetSpec::load(&repo.join(&s.dataset), Path::new(ensemble_serve::paths::DEFAULT_DATA_DIR))
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let unknown = s.context_fields.iter().find(|f| !spec.fields.iter().any(|s| &s.name == *f));
            assert!(unknown.is_none(), "{}: context field {unknown:?} not in {}", path.display(), s.dataset.display());
            let mut table = base.clone();
            table.extend(s.server.clone());
            let config: Result<ServerConfig, _> = table.try_into();
            config.unwrap_or_else(|e| panic!("{}: its [server] keys: {e}", path.display()));
            checked += 1;
        }
        assert!(checked >= 20, "only {checked} scenarios found in load-tests/scenarios");
    }
}
