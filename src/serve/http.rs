//! HTTP surface: small handlers over shared state. v1 JSON scoring with latency budgets, KServe v2 / Open
//! Inference Protocol, health, and Prometheus metrics. Every error is a JSON body with a 4xx/5xx status.
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::Semaphore;

use super::arrival::RxClock;
use super::batcher::SubmitError;
use super::metrics::Metrics;
use super::model::{LoadedModel, TierRequest};

/// Shared by every handler.
pub struct AppState {
    pub models: ArcSwap<HashMap<String, Arc<LoadedModel>>>,
    pub reloader: super::reload::Reloader,
    /// Bearer token of `/admin/*`; empty disables those endpoints.
    pub admin_token: String,
    pub default_model: String,
    pub metrics: Arc<Metrics>,
    pub in_flight: Arc<Semaphore>,
    pub limits: RequestLimits,
}

#[derive(Debug, Clone)]
pub struct RequestLimits {
    pub max_instances: usize,
    pub default_budget_ms: f64,
    pub request_timeout: Duration,
    pub missing_as_oov: bool,
    pub shed_on_overload: bool,
}

/// An error answer: status + `{"error": {"code", "message"}}`.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub(super) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into() }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody { error: ErrorDetail { code: self.code.into(), message: self.message } };
        (self.status, Json(body)).into_response()
    }
}

pub fn router(state: Arc<AppState>, body_limit: usize) -> Router {
    Router::new()
        .route("/v1/score", post(score_default))
        .route("/v1/models/{name}/score", post(score_named))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .route("/admin/reload", post(admin_reload))
        .route("/v2/health/live", get(|| async { Json(json!({"live": true})) }))
        .route("/v2/health/ready", get(ready_v2))
        .route("/v2/models/{name}", get(super::v2::v2_metadata))
        .route("/v2/models/{name}/ready", get(super::v2::v2_model_ready))
        .route("/v2/models/{name}/config", get(super::v2::v2_config))
        .route("/v2/models/{name}/infer", post(super::v2::v2_infer))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint") })
        .layer(axum::extract::DefaultBodyLimit::max(body_limit))
        .with_state(state)
}

/// `POST /v1/score` body.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScoreRequest {
    /// Raw feature values per instance: `{field: value}` (strings, numbers, null, arrays for sequences).
    #[schema(value_type = Vec<Object>)]
    pub instances: Vec<Value>,
    /// Latency budget in ms (else the `X-Latency-Budget-Ms` header, else the server default).
    #[serde(default)]
    pub latency_budget_ms: Option<f64>,
    /// `auto` (budget routing), `ensemble`, `student` (the best) or `student:<k>`.
    #[serde(default)]
    pub tier: Option<String>,
}

/// `POST /v1/score` answer.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ScoreResponse {
    pub model: String,
    pub version: String,
    /// The tier that served: `ensemble` or `student:<k>`.
    pub served_by: String,
    pub graph: String,
    /// One probability per instance, in order.
    pub probabilities: Vec<f32>,
    pub server_time_us: f64,
    pub queue_time_us: f64,
    pub inference_time_us: f64,
    pub batch_rows: usize,
    pub latency_budget_ms: f64,
    pub budget_met: bool,
    /// No tier's estimate fitted the budget; the fastest served.
    pub predicted_miss: bool,
}

/// Every error answer.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
}

#[derive(utoipa::OpenApi)]
#[openapi(
    info(title = "ensemble-serve", description = "CTR ensemble scoring with latency-budget routing"),
    paths(score_default, score_named),
    components(schemas(ScoreRequest, ScoreResponse, ErrorBody, ErrorDetail))
)]
struct ApiDoc;

async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(<ApiDoc as utoipa::OpenApi>::openapi())
}

/// Scores instances with the default model.
#[utoipa::path(post, path = "/v1/score", request_body = ScoreRequest,
    params(("X-Latency-Budget-Ms" = Option<f64>, Header, description = "latency budget (ms) when the body has none")),
    responses(
        (status = 200, description = "scored", body = ScoreResponse),
        (status = 400, description = "body is not JSON", body = ErrorBody),
        (status = 404, description = "unknown model", body = ErrorBody),
        (status = 413, description = "body too large or too many instances", body = ErrorBody),
        (status = 422, description = "invalid request, instance, budget or tier", body = ErrorBody),
        (status = 429, description = "too many requests in flight", body = ErrorBody),
        (status = 503, description = "batch queue full", body = ErrorBody),
        (status = 504, description = "timed out in the queue", body = ErrorBody),
    ))]
async fn score_default(
    State(s): State<Arc<AppState>>,
    conn: Option<Extension<ConnectInfo<RxClock>>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let name = s.default_model.clone();
    score(s, name, arrival(conn), headers, body).await
}

/// Scores instances with the named model.
#[utoipa::path(post, path = "/v1/models/{name}/score", request_body = ScoreRequest,
    params(("name" = String, Path, description = "model name"),
           ("X-Latency-Budget-Ms" = Option<f64>, Header, description = "latency budget (ms) when the body has none")),
    responses(
        (status = 200, description = "scored", body = ScoreResponse),
        (status = 400, description = "body is not JSON", body = ErrorBody),
        (status = 404, description = "unknown model", body = ErrorBody),
        (status = 413, description = "body too large or too many instances", body = ErrorBody),
        (status = 422, description = "invalid request, instance, budget or tier", body = ErrorBody),
        (status = 429, description = "too many requests in flight", body = ErrorBody),
        (status = 503, description = "batch queue full", body = ErrorBody),
        (status = 504, description = "timed out in the queue", body = ErrorBody),
    ))]
async fn score_named(
    State(s): State<Arc<AppState>>,
    conn: Option<Extension<ConnectInfo<RxClock>>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    score(s, name, arrival(conn), headers, body).await
}

/// When the request's bytes reached the kernel; handler start where the connection carries no clock
/// (in-process callers).
pub(super) fn arrival(conn: Option<Extension<ConnectInfo<RxClock>>>) -> Instant {
    conn.map_or_else(Instant::now, |Extension(ConnectInfo(clock))| clock.arrival())
}

async fn score(
    s: Arc<AppState>,
    name: String,
    started: Instant,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let result = async {
        let body = body.map_err(body_error)?;
        let out = score_body(&s, &name, header_budget(&headers)?, &body, started).await?;
        Ok::<_, ApiError>(Json(out).into_response())
    }
    .await;
    result.unwrap_or_else(|e| {
        s.metrics.requests.with_label_values(&[&name, "none", e.status.as_str()]).inc();
        e.into_response()
    })
}

/// The whole scoring path below HTTP: JSON body → decode, encode, route, batch, run → the answer. Public so
/// the floor benchmark can time the server's own overhead without a socket.
pub async fn score_body(
    s: &AppState,
    name: &str,
    header_budget_ms: Option<f64>,
    body: &[u8],
    started: Instant,
) -> Result<ScoreResponse, ApiError> {
    let req: ScoreRequest = serde_json::from_slice(body).map_err(json_error)?;
    let budget = req.latency_budget_ms.or(header_budget_ms);
    let tier = req.tier.as_deref().unwrap_or("auto");
    run_scoring(s, name, req.instances, budget, tier, started).await
}

pub(super) fn header_budget(headers: &HeaderMap) -> Result<Option<f64>, ApiError> {
    let Some(v) = headers.get("x-latency-budget-ms") else {
        return Ok(None);
    };
    let text = v.to_str().unwrap_or("");
    text.trim().parse::<f64>().map(Some).map_err(|_| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_budget",
            format!("X-Latency-Budget-Ms '{text}' is not a number"),
        )
    })
}

pub(super) fn body_error(e: BytesRejection) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large", e.body_text())
    } else {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_body", e.body_text())
    }
}

pub(super) fn json_error(e: serde_json::Error) -> ApiError {
    use serde_json::error::Category;
    match e.classify() {
        Category::Data => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_request", e.to_string()),
        _ => ApiError::new(StatusCode::BAD_REQUEST, "invalid_json", format!("body is not valid JSON: {e}")),
    }
}

/// Validates, encodes, routes, queues and awaits one scoring request.
pub(super) async fn run_scoring(
    s: &AppState,
    name: &str,
    instances: Vec<Value>,
    budget_ms: Option<f64>,
    tier: &str,
    started: Instant,
) -> Result<ScoreResponse, ApiError> {
    let unprocessable = |code, msg: String| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, msg);
    let _permit = s.in_flight.clone().try_acquire_owned().map_err(|_| {
        s.metrics.rejected.with_label_values(&[name, "too_many_in_flight"]).inc();
        ApiError::new(StatusCode::TOO_MANY_REQUESTS, "overloaded", "too many requests in flight; retry later")
    })?;
    if instances.is_empty() {
        return Err(unprocessable("no_instances", "'instances' is empty".into()));
    }
    if instances.len() > s.limits.max_instances {
        let msg = format!("{} instances exceed the limit of {}", instances.len(), s.limits.max_instances);
        return Err(ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_many_instances", msg));
    }
    let budget_ms = budget_ms.unwrap_or(s.limits.default_budget_ms);
    if !budget_ms.is_finite() || budget_ms < 0.0 {
        return Err(unprocessable(
            "invalid_budget",
            format!("latency budget {budget_ms} ms must be a non-negative number"),
        ));
    }
    let request: TierRequest = tier.parse().map_err(|e| unprocessable("invalid_tier", e))?;
    let model = s.models.load().get(name).cloned().ok_or_else(|| {
        ApiError::new(StatusCode::NOT_FOUND, "unknown_model", format!("model '{name}' is not loaded"))
    })?;
    let ids = encode(&model, &instances, s.limits.missing_as_oov)?;
    let rows = instances.len();
    // Routing sees the full budget: spending the time already waited steered overload to students and, on
    // the 2-core test machine, cost more than it saved (load-tests/README.md); the wait is measured, though.
    s.metrics.arrival_wait_us.with_label_values(&[name]).observe(started.elapsed().as_secs_f64() * 1e6);
    let route = model.route(&request, rows, budget_ms * 1000.0).map_err(|e| unprocessable("invalid_tier", e))?;
    // The idle-server estimate is looked up only for a predicted miss with shedding on (never on the common path).
    let idle_fit = || route.tier.batcher.estimator.run_us(rows) <= budget_ms * 1000.0;
    if s.limits.shed_on_overload && route.reason == "fallback" && idle_fit() {
        s.metrics.rejected.with_label_values(&[name, "budget_unattainable"]).inc();
        let msg = format!(
            "overloaded: no tier can answer within {budget_ms} ms now (fastest estimate {:.2} ms); retry later",
            route.estimate_us / 1000.0
        );
        return Err(ApiError::new(StatusCode::TOO_MANY_REQUESTS, "budget_unattainable", msg));
    }
    let tier_label = route.tier.label.clone();
    s.metrics.routing.with_label_values(&[name, &tier_label, route.reason]).inc();
    let result = match route.tier.batcher.try_run_inline(&ids, rows) {
        Some(r) => r,
        None => queue_and_wait(s, name, &route.tier.batcher, ids, rows).await?,
    }
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "inference_failed", e))?;
    let server_us = started.elapsed().as_secs_f64() * 1e6;
    let met = server_us <= budget_ms * 1000.0;
    let m = &s.metrics;
    m.requests.with_label_values(&[name, &tier_label, "200"]).inc();
    m.request_us.with_label_values(&[name, &tier_label]).observe(server_us);
    m.budget.with_label_values(&[name, &tier_label, if met { "met" } else { "missed" }]).inc();
    Ok(ScoreResponse {
        model: model.name.clone(),
        version: model.version.clone(),
        served_by: tier_label,
        graph: route.tier.file.clone(),
        probabilities: result.probabilities,
        server_time_us: server_us.round(),
        queue_time_us: result.queue_us.round(),
        inference_time_us: result.run_us.round(),
        batch_rows: result.batch_rows,
        latency_budget_ms: budget_ms,
        budget_met: met,
        predicted_miss: route.reason == "fallback",
    })
}

/// Submits to the graph's batch queue (503 at once when full) and awaits the answer (504 after the timeout).
async fn queue_and_wait(
    s: &AppState,
    name: &str,
    batcher: &super::batcher::Batcher,
    ids: Vec<u32>,
    rows: usize,
) -> Result<Result<super::batcher::JobResult, String>, ApiError> {
    let rx = batcher.submit(ids, rows).map_err(|e| {
        s.metrics.rejected.with_label_values(&[name, "queue_full"]).inc();
        let msg =
            if e == SubmitError::QueueFull { "the batch queue is full; retry later" } else { "model is shutting down" };
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "queue_full", msg)
    })?;
    tokio::time::timeout(s.limits.request_timeout, rx)
        .await
        .map_err(|_| ApiError::new(StatusCode::GATEWAY_TIMEOUT, "timeout", "the request timed out in the queue"))?
        .map_err(|_| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "stopped", "the batcher stopped"))
}

/// Raw instances → encoded rows through the model's encoder (the same functions as training).
fn encode(model: &LoadedModel, instances: &[Value], missing_as_oov: bool) -> Result<Vec<u32>, ApiError> {
    let enc = &model.artifact.encoder;
    let width = enc.width();
    let mut ids = vec![0u32; instances.len() * width];
    for (i, inst) in instances.iter().enumerate() {
        let obj = inst.as_object().ok_or_else(|| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_instance",
                format!("instance {i} is not a JSON object"),
            )
        })?;
        enc.encode_json_object(obj, missing_as_oov, &mut ids[i * width..(i + 1) * width]).map_err(|e| {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_instance", format!("instance {i}: {e}"))
        })?;
    }
    Ok(ids)
}

/// `POST /admin/reload` with `Authorization: Bearer <admin_token>`: 200 when every model is loaded or
/// unchanged, 422 when one failed (its serving version stays), with the per-model outcomes.
async fn admin_reload(State(s): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if s.admin_token.is_empty() {
        return ApiError::new(StatusCode::NOT_FOUND, "admin_disabled", "set admin_token in the server config")
            .into_response();
    }
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("");
    if auth.strip_prefix("Bearer ") != Some(s.admin_token.as_str()) {
        return ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "a valid bearer token is required")
            .into_response();
    }
    let outcomes = super::reload::reload(&s, &s.reloader).await;
    let status =
        if outcomes.iter().any(|o| o.status == "failed") { StatusCode::UNPROCESSABLE_ENTITY } else { StatusCode::OK };
    (status, Json(json!({"models": outcomes}))).into_response()
}

async fn metrics(State(s): State<Arc<AppState>>) -> impl IntoResponse {
    ([("content-type", "text/plain; version=0.0.4")], s.metrics.render())
}

async fn ready(State(s): State<Arc<AppState>>) -> Response {
    if s.models.load().contains_key(&s.default_model) {
        "ready".into_response()
    } else {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "not_ready", "the default model is not loaded").into_response()
    }
}

async fn ready_v2(State(s): State<Arc<AppState>>) -> Response {
    let ok = !s.models.load().is_empty();
    (if ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE }, Json(json!({"ready": ok}))).into_response()
}
