//! Hot reload: load the newest version of every model, validate it fully (artifact checks, sessions,
//! batchers), then swap the whole model map atomically. An artifact that fails keeps the serving version;
//! requests in flight finish on the version they started with (their `Arc` keeps its batchers alive).
use std::collections::HashMap;
use std::sync::Arc;

use super::http::AppState;
use super::model::{BatchLimits, LoadedModel};
use crate::config::ServerConfig;

/// What a reload needs besides the state it swaps.
pub struct Reloader {
    pub env: &'static ort::environment::Environment,
    pub cfg: ServerConfig,
    pub limits: BatchLimits,
    /// Serialises reloads (admin endpoint and SIGHUP may race).
    pub lock: tokio::sync::Mutex<()>,
}

/// One model's outcome.
#[derive(Debug, serde::Serialize)]
pub struct ReloadOutcome {
    pub model: String,
    /// "unchanged", "loaded" or "failed".
    pub status: &'static str,
    pub version: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Reloads every model directory whose newest version differs from the one serving.
pub async fn reload(state: &AppState, r: &Reloader) -> Vec<ReloadOutcome> {
    let _one_at_a_time = r.lock.lock().await;
    let current = state.models.load_full();
    let names = match model_names(&r.cfg) {
        Ok(n) => n,
        Err(e) => {
            return vec![ReloadOutcome { model: "*".into(), status: "failed", version: String::new(), error: Some(e) }]
        }
    };
    let mut next: HashMap<String, Arc<LoadedModel>> = (*current).clone();
    let mut outcomes = Vec::new();
    for name in names {
        let serving = current.get(&name).cloned();
        let dir = match LoadedModel::latest_version(&r.cfg.models_dir, &name) {
            Ok(d) => d,
            Err(e) => {
                outcomes.push(failed(&name, serving.as_deref(), e));
                continue;
            }
        };
        if serving.as_ref().is_some_and(|m| m.dir == dir) {
            outcomes.push(ReloadOutcome {
                model: name,
                status: "unchanged",
                version: serving.unwrap().version.clone(),
                error: None,
            });
            continue;
        }
        let (env, limits, metrics) = (r.env, r.limits.clone(), state.metrics.clone());
        let loaded = tokio::task::spawn_blocking(move || LoadedModel::load(env, &dir, &limits, &metrics))
            .await
            .unwrap_or_else(|e| Err(format!("loader panicked: {e}")));
        match loaded {
            Ok(m) => {
                if let Some(old) = &serving {
                    state
                        .metrics
                        .model_info
                        .with_label_values(&[&old.name, &old.version, &old.execution_provider])
                        .set(0);
                }
                m.publish(&state.metrics);
                tracing::info!(model = %name, version = %m.version, "reloaded");
                outcomes.push(ReloadOutcome {
                    model: name.clone(),
                    status: "loaded",
                    version: m.version.clone(),
                    error: None,
                });
                next.insert(name, Arc::new(m));
            }
            Err(e) => {
                tracing::error!(model = %name, error = %e, "reload failed; the serving version stays");
                outcomes.push(failed(&name, serving.as_deref(), e));
            }
        }
    }
    state.models.store(Arc::new(next));
    outcomes
}

fn failed(name: &str, serving: Option<&LoadedModel>, error: String) -> ReloadOutcome {
    ReloadOutcome {
        model: name.to_string(),
        status: "failed",
        version: serving.map(|m| m.version.clone()).unwrap_or_default(),
        error: Some(error),
    }
}

/// Model names: the visible subdirectories of `models_dir`, sorted.
pub fn model_names(cfg: &ServerConfig) -> Result<Vec<String>, String> {
    let mut names: Vec<String> = std::fs::read_dir(&cfg.models_dir)
        .map_err(|e| format!("{}: {e}", cfg.models_dir.display()))?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect();
    names.sort();
    Ok(names)
}
