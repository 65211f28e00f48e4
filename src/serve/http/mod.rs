//! HTTP front end: thin axum handlers over the scoring pipeline. v1 JSON scoring (`v1`), KServe v2 / Open
//! Inference Protocol (`v2`), admin reload (`admin`), health, Prometheus metrics and the OpenAPI document.
mod admin;
mod v1;
mod v2;

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde_json::json;

pub use v1::{score_body, ErrorBody, ErrorDetail, ScoreRequest, ScoreResponse};

use super::arrival::RxClock;
use super::error::ScoringError;
use super::scoring::{Call, Scorer};

/// Shared by every handler.
pub struct AppState {
    pub scorer: Scorer,
    /// Bearer token of `/admin/*`; empty disables those endpoints.
    pub admin_token: String,
    pub default_model: String,
}

/// A v1 error answer: the scoring error's status + `{"error": {"code", "message"}}`.
#[derive(Debug)]
pub struct ApiError(pub ScoringError);

impl From<ScoringError> for ApiError {
    fn from(e: ScoringError) -> Self {
        Self(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody { error: ErrorDetail { code: self.0.code().into(), message: self.0.to_string() } };
        (status(&self.0), Json(body)).into_response()
    }
}

fn status(e: &ScoringError) -> StatusCode {
    StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// An answer outside scoring (admin, readiness, unknown path): v1's error shape with its own code.
fn plain_error(status: StatusCode, code: &str, message: &str) -> Response {
    (status, Json(json!({"error": {"code": code, "message": message}}))).into_response()
}

pub fn router(state: Arc<AppState>, body_limit: usize) -> Router {
    Router::new()
        .route("/v1/score", post(v1::score_default))
        .route("/v1/models/{name}/score", post(v1::score_named))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(v1::openapi))
        .route("/admin/reload", post(admin::reload))
        .route("/v2/health/live", get(|| async { Json(json!({"live": true})) }))
        .route("/v2/health/ready", get(ready_v2))
        .route("/v2/models/{name}", get(v2::metadata))
        .route("/v2/models/{name}/ready", get(v2::model_ready))
        .route("/v2/models/{name}/config", get(v2::config))
        .route("/v2/models/{name}/infer", post(v2::infer))
        .fallback(|| async { plain_error(StatusCode::NOT_FOUND, "not_found", "no such endpoint") })
        .layer(axum::extract::DefaultBodyLimit::max(body_limit))
        .with_state(state)
}

/// When the request's bytes reached the kernel; handler start where the connection carries no clock
/// (in-process callers).
fn arrival(conn: Option<Extension<ConnectInfo<RxClock>>>) -> Instant {
    conn.map_or_else(Instant::now, |Extension(ConnectInfo(clock))| clock.arrival())
}

/// The pipeline's view of an HTTP request: model, arrival, and the budget and timeout headers.
fn call<'a>(model: &'a str, arrival: Instant, headers: &'a HeaderMap) -> Call<'a> {
    // A header that is not visible ASCII cannot be a number: pass it on for the pipeline to refuse.
    let text = |name: &str| headers.get(name).map(|v| v.to_str().unwrap_or("\u{fffd}"));
    Call {
        model,
        arrival,
        budget_header: text("x-latency-budget-ms"),
        timeout_header: text("x-request-timeout-ms"),
    }
}

/// The body as the pipeline expects it: a rejected body (too large, unreadable) is a scoring error.
fn body_bytes(body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>) -> Result<axum::body::Bytes, ScoringError> {
    body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ScoringError::BodyTooLarge(e.body_text())
        } else {
            ScoringError::BadBody(e.body_text())
        }
    })
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

