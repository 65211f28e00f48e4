//! A loaded model: its artifact, one batcher per graph ("tier"), and latency-budget routing across tiers.
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::batcher::{Batcher, BatcherConfig, Estimator};
use super::metrics::Metrics;
use crate::artifact::{Artifact, GraphKind};
use crate::runtime::GraphSession;

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

/// A less accurate tier is worth routing to only if it is this much faster than every more accurate one.
const ROUTABLE_SPEEDUP: f64 = 0.9;

/// Marks the tiers (sorted most accurate first) that are faster than every more accurate tier: the others
/// are dominated. Identical students then leave only the best one to route to, so overload concentrates on
/// one graph and its batches grow, instead of spreading over equals that each wake their own worker.
fn mark_frontier(tiers: &mut [Tier], rows: usize) {
    let mut fastest_above = f64::INFINITY;
    for t in tiers.iter_mut() {
        let cost = t.batcher.estimator.run_us(rows);
        t.routable = cost < ROUTABLE_SPEEDUP * fastest_above;
        fastest_above = fastest_above.min(cost);
    }
}

pub struct LoadedModel {
    pub name: String,
    pub version: String,
    pub dir: PathBuf,
    pub artifact: Artifact,
    /// Most accurate first (validation AUC from the manifest).
    pub tiers: Vec<Tier>,
    pub execution_provider: String,
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
    pub provider: crate::runtime::Provider,
    /// Tier labels to load; empty = all.
    pub tiers: Vec<String>,
}

/// How a request asks to be routed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TierRequest {
    Auto,
    Ensemble,
    BestStudent,
    Student(usize),
}

impl std::str::FromStr for TierRequest {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Self::Auto),
            "ensemble" => Ok(Self::Ensemble),
            "student" => Ok(Self::BestStudent),
            other => other
                .strip_prefix("student:")
                .and_then(|k| k.parse().ok())
                .map(Self::Student)
                .ok_or_else(|| format!("tier '{other}' (auto, ensemble, student or student:<k>)")),
        }
    }
}

/// Which tier serves a request, and why.
pub struct Route<'a> {
    pub tier: &'a Tier,
    pub estimate_us: f64,
    /// "fits", "fallback" (nothing fit: the fastest) or "forced".
    pub reason: &'static str,
}

impl LoadedModel {
    /// Latest version directory under `models_dir/name` (lexicographic; versions are timestamps by default).
    pub fn latest_version(models_dir: &Path, name: &str) -> Result<PathBuf, String> {
        let dir = models_dir.join(name);
        let mut versions: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map_err(|e| format!("{}: {e}", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.join("manifest.json").is_file())
            .collect();
        versions.sort();
        versions.pop().ok_or_else(|| format!("{}: no version directory with a manifest.json", dir.display()))
    }

    pub fn load(
        env: &ort::environment::Environment,
        dir: &Path,
        limits: &BatchLimits,
        metrics: &Arc<Metrics>,
    ) -> Result<Self, String> {
        let artifact = Artifact::load(dir).map_err(|e| e.to_string())?;
        let m = &artifact.manifest;
        let width = artifact.encoder.width();
        let mut tiers = Vec::new();
        let mut used = crate::runtime::Provider::Cpu;
        for g in &m.graphs {
            let label = g.tier_label().ok_or_else(|| format!("{}: a student graph without an index", g.file))?;
            let best = g.kind == GraphKind::Student && g.index == Some(m.best_student);
            let wanted = limits.tiers.contains(&label) || (best && limits.tiers.iter().any(|t| t == "student"));
            if !limits.tiers.is_empty() && !wanted {
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
            .map_err(|e| format!("{}: {e}", path.display()))?;
            used = provider;
            let cfg = BatcherConfig {
                max_batch_rows: limits.max_batch_rows,
                max_queue_delay: limits.max_queue_delay,
                cooldown: limits.cooldown,
                queue_jobs: limits.queue_jobs,
                width,
                labels: [m.name.clone(), label.clone()],
            };
            let batcher = Batcher::spawn(session, Estimator::new(&g.latency), cfg, metrics.clone());
            tiers.push(Tier { label, file: g.file.clone(), valid_auc: g.valid.auc, batcher, routable: true });
        }
        if tiers.is_empty() {
            return Err(format!("none of the configured tiers {:?} is in this model", limits.tiers));
        }
        tiers.sort_by(|a, b| b.valid_auc.total_cmp(&a.valid_auc));
        mark_frontier(&mut tiers, 1);
        Ok(Self {
            name: m.name.clone(),
            version: m.version.clone(),
            dir: dir.to_path_buf(),
            execution_provider: used.name().into(),
            artifact,
            tiers,
        })
    }

    /// Tells the metrics this version is serving (info gauge, zeroed series per tier).
    pub fn publish(&self, metrics: &Metrics) {
        let tiers: Vec<&str> = self.tiers.iter().map(|t| t.label.as_str()).collect();
        metrics.model_loaded(&self.name, &self.version, &self.execution_provider, &tiers);
    }

    fn tier(&self, label: &str) -> Option<&Tier> {
        self.tiers.iter().find(|t| t.label == label)
    }

    /// The most accurate routable tier whose estimate fits `budget_us`; else the fastest (a predicted miss).
    pub fn route(&self, request: &TierRequest, rows: usize, budget_us: f64) -> Result<Route<'_>, String> {
        let forced = |label: String| {
            self.tier(&label)
                .map(|t| Route { tier: t, estimate_us: t.batcher.estimate_us(rows), reason: "forced" })
                .ok_or_else(|| format!("no tier '{label}' in this model"))
        };
        match request {
            TierRequest::Ensemble => forced("ensemble".into()),
            TierRequest::BestStudent => forced(format!("student:{}", self.artifact.manifest.best_student)),
            TierRequest::Student(k) => forced(format!("student:{k}")),
            TierRequest::Auto => {
                let frontier: Vec<(&Tier, f64)> =
                    self.tiers.iter().filter(|t| t.routable).map(|t| (t, t.batcher.estimate_us(rows))).collect();
                if let Some(&(tier, e)) = frontier.iter().find(|(_, e)| *e <= budget_us) {
                    return Ok(Route { tier, estimate_us: e, reason: "fits" });
                }
                let &(tier, e) = frontier.iter().min_by(|a, b| a.1.total_cmp(&b.1)).expect("the most accurate tier");
                Ok(Route { tier, estimate_us: e, reason: "fallback" })
            }
        }
    }
}
