//! Loaded models: each artifact with one batcher per graph ("tier"), the map the server serves from, and
//! hot reload (load the newest version of every model, validate it fully, then swap the whole map
//! atomically; a version that fails keeps the serving one, and requests in flight finish on the version they
//! started with, whose `Arc` keeps its batchers alive).
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use super::batcher::{Batcher, BatcherConfig};
use super::error::ScoringError;
use super::metrics::Metrics;
use super::router::{self, Estimator, RouteReason, TierRequest};
use crate::artifact::Artifact;
use crate::runtime::{GraphSession, Provider};

/// One servable graph.
pub struct Tier {
    /// "ensemble" or "student:<k>".
    pub label: String,
    pub file: String,
    pub valid_auc: f64,
    pub batcher: Batcher,
    /// On the accuracy/speed frontier: budget routing may pick it (forcing works for every tier).
    pub routable: bool,
}

pub struct LoadedModel {
    pub name: String,
    pub version: String,
    pub dir: PathBuf,
    pub artifact: Artifact,
    /// Most accurate first (validation AUC from the manifest).
    pub tiers: Vec<Tier>,
    pub execution_provider: Provider,
}

/// Batching limits shared by every graph of a model.
#[derive(Debug, Clone)]
pub struct BatchLimits {
    pub max_batch_rows: usize,
    pub max_queue_delay: Duration,
    /// Multiple of a batch's run time a busy graph waits before its next batch (0 = greedy).
    pub cooldown: f64,
    pub queue_jobs: usize,
    pub intra_op_threads: usize,
    pub provider: Provider,
    /// Tiers to load; empty = all.
    pub tiers: Vec<TierRequest>,
    /// Validation-AUC difference below which routing ranks the faster tier first.
    pub auc_tolerance: f64,
}

/// Which tier serves a request, and why.
pub struct Route<'a> {
    pub tier: &'a Tier,
    pub estimate_us: f64,
    pub reason: RouteReason,
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Artifact(#[from] crate::artifact::ArtifactError),
    #[error("{path}: {error}")]
    Session { path: PathBuf, error: ort::Error },
    #[error("{0}: a student graph without an index")]
    Unindexed(String),
    #[error("none of the configured tiers {0:?} is in this model")]
    NoTiers(Vec<String>),
}

impl LoadedModel {
    pub fn load(
        env: &ort::environment::Environment,
        dir: &Path,
        limits: &BatchLimits,
        metrics: &Arc<Metrics>,
    ) -> Result<Self, LoadError> {
        let artifact = Artifact::load(dir)?;
        let m = &artifact.manifest;
        let mut tiers = Vec::new();
        let mut used = Provider::Cpu;
        // Configured tiers as this model's labels ("student" is its best student).
        let wanted: Vec<String> = limits.tiers.iter().filter_map(|t| t.label(m.best_student)).collect();
        for g in &m.graphs {
            let label = g.tier_label().ok_or_else(|| LoadError::Unindexed(g.file.clone()))?;
            if !limits.tiers.is_empty() && !wanted.contains(&label) {
                continue;
            }
            let path = dir.join(&g.file);
            let (session, provider) = GraphSession::load_on(
                env,
                &path,
                &m.inputs,
                &artifact.encoder,
                limits.intra_op_threads,
                limits.provider,
            )
            .map_err(|error| LoadError::Session { path: path.clone(), error })?;
            used = provider;
            let cfg = BatcherConfig {
                max_batch_rows: limits.max_batch_rows,
                max_queue_delay: limits.max_queue_delay,
                cooldown: limits.cooldown,
                queue_jobs: limits.queue_jobs,
                width: artifact.encoder.width(),
                labels: [m.name.clone(), label.clone()],
            };
            let batcher = Batcher::spawn(session, Estimator::new(&g.latency), cfg, metrics.clone());
            tiers.push(Tier { label, file: g.file.clone(), valid_auc: g.valid.auc, batcher, routable: true });
        }
        if tiers.is_empty() {
            return Err(LoadError::NoTiers(wanted));
        }
        let aucs: Vec<f64> = tiers.iter().map(|t| t.valid_auc).collect();
        let at_64: Vec<f64> = tiers.iter().map(|t| t.batcher.estimator.run_us(64)).collect();
        let order = router::rank(&aucs, &at_64, limits.auc_tolerance);
        let mut slots: Vec<Option<Tier>> = tiers.into_iter().map(Some).collect();
        let mut tiers: Vec<Tier> = order.iter().map(|&i| slots[i].take().expect("each tier once")).collect();
        let costs: Vec<Vec<f64>> = crate::artifact::PROFILE_BATCHES
            .iter()
            .map(|&rows| tiers.iter().map(|t| t.batcher.estimator.run_us(rows)).collect())
            .collect();
        for (t, routable) in tiers.iter_mut().zip(router::frontier_over_sizes(&costs)) {
            t.routable = routable;
        }
        Ok(Self {
            name: m.name.clone(),
            version: m.version.clone(),
            dir: dir.to_path_buf(),
            execution_provider: used,
            artifact,
            tiers,
        })
    }

    /// Tells the metrics this version is serving (info gauge, zeroed series per tier).
    pub fn publish(&self, metrics: &Metrics) {
        let tiers: Vec<&str> = self.tiers.iter().map(|t| t.label.as_str()).collect();
        metrics.model_loaded(&self.name, &self.version, self.execution_provider.name(), &tiers);
    }

    /// The tier `request` names, or for `Auto` the most accurate routable tier whose estimate fits
    /// `budget_us`, else the fastest (a predicted miss). `None`: the named tier is not loaded.
    /// `ahead_us`: work waiting to start before this request, whatever tier it takes (the arrival line).
    pub fn route(&self, request: TierRequest, rows: usize, budget_us: f64, ahead_us: f64) -> Option<Route<'_>> {
        let Some(label) = request.label(self.artifact.manifest.best_student) else {
            let routable: Vec<&Tier> = self.tiers.iter().filter(|t| t.routable).collect();
            let estimates: Vec<f64> = routable.iter().map(|t| ahead_us + t.batcher.estimate_us(rows)).collect();
            let (i, reason) = router::choose(&estimates, budget_us)?;
            return Some(Route { tier: routable[i], estimate_us: estimates[i], reason });
        };
        let tier = self.tiers.iter().find(|t| t.label == label)?;
        Some(Route { tier, estimate_us: ahead_us + tier.batcher.estimate_us(rows), reason: RouteReason::Forced })
    }
}

/// The models being served, by name, and what reloading them needs.
pub struct Registry {
    pub models: ArcSwap<HashMap<String, Arc<LoadedModel>>>,
    env: &'static ort::environment::Environment,
    models_dir: PathBuf,
    limits: BatchLimits,
    metrics: Arc<Metrics>,
    /// Serialises reloads (admin endpoint and SIGHUP may race).
    lock: tokio::sync::Mutex<()>,
}

/// What a reload did to one model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReloadStatus {
    Unchanged,
    Loaded,
    Failed,
}

/// One model's outcome.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ReloadOutcome {
    pub model: String,
    pub status: ReloadStatus,
    pub version: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("model '{name}': {reason}")]
    Model { name: String, reason: String },
}

impl Registry {
    /// Loads the newest version of every model under `models_dir`; `required` must be among them.
    pub fn load(
        env: &'static ort::environment::Environment,
        models_dir: &Path,
        required: &str,
        limits: BatchLimits,
        metrics: Arc<Metrics>,
    ) -> Result<Self, RegistryError> {
        let model_err = |name: &str, reason: String| RegistryError::Model { name: name.to_string(), reason };
        let names = crate::artifact::model_names(models_dir).map_err(|e| model_err(required, e.to_string()))?;
        if !names.iter().any(|n| n == required) {
            let reason = format!("not found under {} (train and export one with `serve train`)", models_dir.display());
            return Err(model_err(required, reason));
        }
        let mut models = HashMap::new();
        for name in names {
            let dir =
                crate::artifact::latest_version(models_dir, &name).map_err(|e| model_err(&name, e.to_string()))?;
            let m = LoadedModel::load(env, &dir, &limits, &metrics).map_err(|e| model_err(&name, e.to_string()))?;
            m.publish(&metrics);
            let tiers: Vec<String> = m
                .tiers
                .iter()
                .map(|t| {
                    format!("{} (AUC {:.4}{})", t.label, t.valid_auc, if t.routable { "" } else { ", forced only" })
                })
                .collect();
            tracing::info!(model = %name, version = %m.version, provider = m.execution_provider.name(), tiers = %tiers.join(", "), "model loaded");
            models.insert(name, Arc::new(m));
        }
        Ok(Self {
            models: ArcSwap::from_pointee(models),
            env,
            models_dir: models_dir.to_path_buf(),
            limits,
            metrics,
            lock: Default::default(),
        })
    }

    /// Gives every graph idle for `after` a one-row warm-up run (see [`Batcher::keep_warm`]).
    pub fn keep_warm(&self, after: Duration, span: Duration) {
        for model in self.models.load().values() {
            for tier in &model.tiers {
                tier.batcher.keep_warm(after, span);
            }
        }
    }

    pub fn get(&self, name: &str) -> Option<Arc<LoadedModel>> {
        self.models.load().get(name).cloned()
    }

    /// The model `name` as a KServe v2 front end addresses it: at `version` when one is named (only the loaded
    /// version exists; `None` = the newest).
    pub fn get_version(&self, name: &str, version: Option<&str>) -> Result<Arc<LoadedModel>, ScoringError> {
        let m = self.get(name).ok_or_else(|| ScoringError::UnknownModel(name.to_string()))?;
        match version {
            Some(v) if v != m.version => {
                Err(ScoringError::UnknownModel(format!("{name} version {v} (loaded: {})", m.version)))
            }
            _ => Ok(m),
        }
    }

    /// Reloads every model directory whose newest version differs from the one serving.
    pub async fn reload(&self) -> Vec<ReloadOutcome> {
        let _one_at_a_time = self.lock.lock().await;
        let current = self.models.load_full();
        let names = match crate::artifact::model_names(&self.models_dir) {
            Ok(n) => n,
            Err(e) => return vec![outcome("*", ReloadStatus::Failed, None, Some(e.to_string()))],
        };
        let mut next: HashMap<String, Arc<LoadedModel>> = (*current).clone();
        let mut outcomes = Vec::new();
        for name in names {
            let serving = current.get(&name).cloned();
            let (status, loaded, error) = self.reload_one(&name, serving.as_deref()).await;
            let shown = loaded.as_deref().or(serving.as_deref());
            outcomes.push(outcome(&name, status, shown, error));
            if let Some(m) = loaded {
                next.insert(name, m);
            }
        }
        self.models.store(Arc::new(next));
        outcomes
    }

    async fn reload_one(
        &self,
        name: &str,
        serving: Option<&LoadedModel>,
    ) -> (ReloadStatus, Option<Arc<LoadedModel>>, Option<String>) {
        let dir = match crate::artifact::latest_version(&self.models_dir, name) {
            Ok(d) => d,
            Err(e) => return (ReloadStatus::Failed, None, Some(e.to_string())),
        };
        if serving.is_some_and(|m| m.dir == dir) {
            return (ReloadStatus::Unchanged, None, None);
        }
        let (env, limits, metrics) = (self.env, self.limits.clone(), self.metrics.clone());
        let loaded = tokio::task::spawn_blocking(move || LoadedModel::load(env, &dir, &limits, &metrics))
            .await
            .map_err(|e| format!("loader panicked: {e}"))
            .and_then(|r| r.map_err(|e| e.to_string()));
        match loaded {
            Ok(m) => {
                if let Some(old) = serving {
                    let labels = [old.name.as_str(), old.version.as_str(), old.execution_provider.name()];
                    self.metrics.model_info.with_label_values(&labels).set(0);
                }
                m.publish(&self.metrics);
                tracing::info!(model = %name, version = %m.version, "reloaded");
                (ReloadStatus::Loaded, Some(Arc::new(m)), None)
            }
            Err(e) => {
                tracing::error!(model = %name, error = %e, "reload failed; the serving version stays");
                (ReloadStatus::Failed, None, Some(e))
            }
        }
    }
}

fn outcome(name: &str, status: ReloadStatus, shown: Option<&LoadedModel>, error: Option<String>) -> ReloadOutcome {
    let version = shown.map(|m| m.version.clone()).unwrap_or_default();
    ReloadOutcome { model: name.to_string(), status, version, error }
}
