//! HTTP front end: thin axum handlers over the scoring pipeline. v1 JSON scoring (`v1`), KServe v2 / Open
//! Inference Protocol (`v2`), admin reload (`admin`), health, Prometheus metrics and the OpenAPI document.
mod admin;
mod model_schema;
mod openapi;
mod ops;
mod state;
mod v1;
mod v2;

use std::sync::Arc;

use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;

pub use openapi::document as openapi_document;
pub use state::{call, header_text, ApiError, AppState, ErrorBody, ErrorDetail};
pub use v1::{score_body, ScoreRequest, ScoreResponse};

use state::plain_error;

pub fn router(state: Arc<AppState>, body_limit: usize) -> Router {
    Router::new()
        .route("/v1/score", post(v1::score_default))
        .route("/v1/models/{name}/score", post(v1::score_named))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route("/openapi.json", get(openapi::serve))
        .route("/admin/reload", post(admin::reload))
        .route("/v2", get(v2::server_metadata))
        .route("/v2/health/live", get(v2::live))
        .route("/v2/health/ready", get(v2::ready))
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
