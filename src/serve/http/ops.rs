//! Liveness, readiness and Prometheus metrics.
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::state::{plain_error, AppState, ErrorBody};

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "`ok`", body = String, content_type = "text/plain")))]
pub(crate) async fn healthz() -> &'static str {
    "ok"
}

/// The default model is loaded.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, description = "`ready`", body = String, content_type = "text/plain"),
        (status = 503, description = "the default model is not loaded", body = ErrorBody)))]
pub(crate) async fn readyz(State(s): State<Arc<AppState>>) -> Response {
    if s.scorer.registry.get(&s.default_model).is_some() {
        "ready".into_response()
    } else {
        plain_error(StatusCode::SERVICE_UNAVAILABLE, "not_ready", "the default model is not loaded")
    }
}

/// Prometheus metrics (text exposition format 0.0.4).
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text exposition", body = String, content_type = "text/plain")))]
pub(crate) async fn metrics(State(s): State<Arc<AppState>>) -> impl IntoResponse {
    ([("content-type", "text/plain; version=0.0.4")], s.scorer.metrics.render())
}
