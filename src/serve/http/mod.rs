//! HTTP front end: thin axum handlers over the scoring pipeline. v1 JSON scoring (`v1`), KServe v2 / Open
//! Inference Protocol (`v2`), admin reload (`admin`), health, Prometheus metrics and the OpenAPI document.
mod admin;
mod state;
mod v1;
mod v2;

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

pub use state::{call, ApiError, AppState, ErrorBody, ErrorDetail};
pub use v1::{score_body, ScoreRequest, ScoreResponse};

use state::plain_error;

pub fn router(state: Arc<AppState>, body_limit: usize) -> Router {
    Router::new()
        .route("/v1/score", post(v1::score_default))
        .route("/v1/models/{name}/score", post(v1::score_named))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(v1::openapi))
        .route("/admin/reload", post(admin::reload))
        .route("/v2", get(v2::server_metadata))
        .route("/v2/health/live", get(|| async { Json(json!({"live": true})) }))
        .route("/v2/health/ready", get(ready_v2))
        .route("/v2/models/{name}", get(v2::metadata))
        .route("/v2/models/{name}/ready", get(v2::model_ready))
        .route("/v2/models/{name}/config", get(v2::config))
        .route("/v2/models/{name}/infer", post(v2::infer))
        .route("/v2/models/{name}/versions/{version}", get(v2::version_metadata))
        .route("/v2/models/{name}/versions/{version}/ready", get(v2::version_ready))
        .route("/v2/models/{name}/versions/{version}/infer", post(v2::version_infer))
        .fallback(|| async { plain_error(StatusCode::NOT_FOUND, "not_found", "no such endpoint") })
        .layer(axum::extract::DefaultBodyLimit::max(body_limit))
        .with_state(state)
}

async fn metrics(State(s): State<Arc<AppState>>) -> impl IntoResponse {
    ([("content-type", "text/plain; version=0.0.4")], s.scorer.metrics.render())
}

async fn ready(State(s): State<Arc<AppState>>) -> Response {
    if s.scorer.registry.get(&s.default_model).is_some() {
        "ready".into_response()
    } else {
        plain_error(StatusCode::SERVICE_UNAVAILABLE, "not_ready", "the default model is not loaded")
    }
}

async fn ready_v2(State(s): State<Arc<AppState>>) -> Response {
    let ok = !s.scorer.registry.models.load().is_empty();
    (if ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE }, Json(json!({"ready": ok}))).into_response()
}
