//! The inference server: ONNX Runtime sessions per graph behind batching queues, latency-budget routing,
//! an axum HTTP surface and a KServe v2 gRPC one over one scoring pipeline, Prometheus metrics, graceful
//! shutdown.
pub mod arrival;
pub mod batcher;
mod cooldown;
mod deadline;
pub mod decode;
pub mod error;
pub mod grpc;
pub mod http;
pub mod idle_poll;
pub mod idle_spin;
pub mod metrics;
pub mod probe;
pub mod registry;
pub mod router;
pub mod scoring;
pub mod sequencer;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

use crate::config::ServerConfig;
use http::AppState;
use registry::{BatchLimits, Registry};
use scoring::{Limits, Scorer};

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("server config: {reason}")]
    Config { reason: String },
    #[error("model '{name}': {reason}")]
    Model { name: String, reason: String },
    // `error`, not `source`: the message holds it, and `{e:#}` would print a source twice.
    #[error("cannot listen on {addr}: {error}")]
    Bind { addr: String, error: std::io::Error },
    #[error(transparent)]
    IdlePoll(#[from] idle_poll::IdlePollError),
    #[error("server: {0}")]
    Io(#[from] std::io::Error),
}

pub fn batch_limits(cfg: &ServerConfig) -> Result<BatchLimits, ServeError> {
    let provider = cfg.execution_provider;
    if !(cfg.batch_cooldown.is_finite() && (0.0..=100.0).contains(&cfg.batch_cooldown)) {
        return Err(ServeError::Config {
            reason: format!("batch_cooldown = {}: must be a number from 0 to 100", cfg.batch_cooldown),
        });
    }
    if !(cfg.budget_headroom.is_finite() && (0.0..1.0).contains(&cfg.budget_headroom)) {
        return Err(ServeError::Config {
            reason: format!("budget_headroom = {}: must be at least 0 and below 1", cfg.budget_headroom),
        });
    }
    if !(cfg.auc_tolerance.is_finite() && cfg.auc_tolerance >= 0.0) {
        return Err(ServeError::Config {
            reason: format!("auc_tolerance = {}: must be a number ≥ 0", cfg.auc_tolerance),
        });
    }
    let tiers = cfg
        .tiers
        .iter()
        .map(|t| match t.parse() {
            Ok(router::TierRequest::Auto) | Err(_) => Err(ServeError::Config {
                reason: format!(
                    "tiers: '{t}' is not a graph (ensemble, student or student:<k>, each optionally :int8)"
                ),
            }),
            Ok(request) => Ok(request),
        })
        .collect::<Result<_, _>>()?;
    Ok(BatchLimits {
        max_batch_rows: cfg.max_batch_size,
        max_queue_delay: Duration::from_micros(cfg.max_queue_delay_us),
        cooldown: cfg.batch_cooldown,
        queue_jobs: cfg.queue_capacity,
        intra_op_threads: cfg.intra_op_threads,
        provider,
        tiers,
        auc_tolerance: cfg.auc_tolerance,
    })
}

/// The shared state every handler sees: models loaded, batchers running, limits from `cfg`.
pub fn build_state(
    env: &'static ort::environment::Environment,
    cfg: &ServerConfig,
) -> Result<Arc<AppState>, ServeError> {
    let metrics = Arc::new(metrics::Metrics::new());
    let registry = Registry::load(env, &cfg.models_dir, &cfg.default_model, batch_limits(cfg)?, metrics.clone())
        .map_err(|e| match e {
            registry::RegistryError::Model { name, reason } => ServeError::Model { name, reason },
        })?;
    let scorer = Scorer {
        registry,
        metrics,
        in_flight: Arc::new(Semaphore::new(cfg.max_in_flight)),
        limits: Limits {
            max_instances: cfg.max_instances,
            default_budget_ms: cfg.default_budget_ms,
            request_timeout: Duration::from_millis(cfg.request_timeout_ms),
            missing_as_oov: cfg.missing_as_oov,
            shed_on_overload: cfg.shed_on_overload,
            budget_headroom: cfg.budget_headroom,
        },
        sequencer: Default::default(),
    };
    Ok(Arc::new(AppState { scorer, admin_token: cfg.admin_token.clone(), default_model: cfg.default_model.clone() }))
}

/// In `idle_spin` mode a graph idle this long gets a one-row warm-up run.
const WARM_AFTER: Duration = Duration::from_millis(1);
/// `idle_spin` keeps warm only the graphs that served a request this recently.
const WARM_SPAN: Duration = Duration::from_secs(2);

/// Serves until SIGINT/SIGTERM, then stops accepting, lets in-flight requests finish and returns.
pub async fn serve(env: &'static ort::environment::Environment, cfg: ServerConfig) -> Result<(), ServeError> {
    // Held first: a mode asked for that the host refuses stops the server before any model loads.
    let poll_request =
        cfg.idle_poll.then(|| idle_poll::hold(std::path::Path::new(idle_poll::CPU_LATENCY_DEVICE))).transpose()?;
    if poll_request.is_some() {
        tracing::info!(device = idle_poll::CPU_LATENCY_DEVICE, "idle_poll: idle cores poll instead of halting");
    }
    let state = build_state(env, &cfg)?;
    let _spinners = cfg.idle_spin.then(|| {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let warm = state.clone();
        let spinners = idle_spin::start(cores, Arc::new(move || warm.scorer.registry.keep_warm(WARM_AFTER, WARM_SPAN)));
        tracing::info!(spinners = spinners.running, cores, "idle_spin: cores kept out of halt at SCHED_IDLE");
        spinners
    });
    tokio::spawn(reload_on_sighup(state.clone()));
    let bind = |addr: String| async move {
        tokio::net::TcpListener::bind(&addr).await.map_err(|error| ServeError::Bind { addr, error })
    };
    let listener = bind(cfg.bind.clone()).await?;
    let grpc_listener = match cfg.grpc_bind.is_empty() {
        true => None,
        false => Some(bind(cfg.grpc_bind.clone()).await?),
    };
    // One signal stops both front ends; each lets its in-flight calls finish.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop.send(true);
    });
    let until_stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let grpc = grpc_listener.map(|l| {
        tracing::info!(addr = ?l.local_addr(), "gRPC (KServe v2) listening");
        tokio::spawn(grpc::serve(state.clone(), l, cfg.body_limit_bytes, until_stopped(stopped.clone())))
    });
    tracing::info!(addr = %listener.local_addr()?, "listening");
    let app = http::router(state, cfg.body_limit_bytes).into_make_service_with_connect_info::<arrival::RxClock>();
    axum::serve(arrival::StampedListener(listener), app).with_graceful_shutdown(until_stopped(stopped)).await?;
    if let Some(Ok(Err(e))) = match grpc {
        Some(task) => Some(task.await),
        None => None,
    } {
        tracing::error!(error = %e, "gRPC server stopped with an error");
    }
    tracing::info!("shut down: in-flight requests answered");
    Ok(())
}

/// SIGHUP reloads every model, like `POST /admin/reload`.
async fn reload_on_sighup(state: Arc<AppState>) {
    let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else { return };
    while hup.recv().await.is_some() {
        let outcomes = state.scorer.registry.reload().await;
        tracing::info!(?outcomes, "SIGHUP reload");
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutdown signal received: draining");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(cfg: ServerConfig) -> String {
        match batch_limits(&cfg) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("accepted"),
        }
    }

    #[test]
    fn tiers_headroom_and_tolerance_are_checked_before_any_model_loads() {
        let with = |tiers: &[&str]| ServerConfig {
            tiers: tiers.iter().map(|t| t.to_string()).collect(),
            ..Default::default()
        };
        let limits = batch_limits(&with(&["ensemble", "student:int8", "student:2:int8"])).unwrap();
        assert_eq!(limits.tiers.len(), 3);
        for bad in ["auto", "student:x", "ensemble:fp16"] {
            assert!(refused(with(&[bad])).contains(&format!("tiers: '{bad}' is not a graph")), "{bad}");
        }
        let headroom = |h: f64| ServerConfig { budget_headroom: h, ..Default::default() };
        assert!(refused(headroom(1.0)).contains("budget_headroom = 1"));
        assert!(refused(headroom(-0.1)).contains("budget_headroom = -0.1"));
        assert!(batch_limits(&headroom(0.0)).is_ok());
        let tolerance = ServerConfig { auc_tolerance: -1e-4, ..Default::default() };
        assert!(refused(tolerance).contains("auc_tolerance = -0.0001"));
    }
}
