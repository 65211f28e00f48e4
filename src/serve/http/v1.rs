//! `POST /v1/score` and `/v1/models/{name}/score`: JSON rows of raw feature values (`instances`, or one
//! `context` shared by many `candidates`) → one probability per row, with the tier that served.
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::Value;

use super::state::{arrival, body_bytes, call, ApiError, AppState, ErrorBody, MillisecondHeaders};
use crate::features::Encoder;
use crate::serve::arrival::RxClock;
use crate::serve::decode::{decode_v1, BodyOptions, DecodeLimits, Encoded};
use crate::serve::error::ScoringError;
use crate::serve::scoring::{Call, Decode, Scored};

/// `POST /v1/score` body (documentation only: bodies are decoded by `decode::decode_v1` in one pass).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct ScoreRequest {
    /// Rows of raw feature values, `{field: value}` each (strings, numbers, null, arrays for sequences).
    /// Give either `instances` or `context` + `candidates`.
    #[schema(value_type = Option<Vec<Object>>, min_items = 1)]
    pub instances: Option<Vec<HashMap<String, Value>>>,
    /// Field values shared by every candidate (e.g. the user and their context), encoded once.
    #[schema(value_type = Option<Object>)]
    pub context: Option<HashMap<String, Value>>,
    /// One row per candidate item with the fields the context does not give; answers keep their order.
    #[schema(value_type = Option<Vec<Object>>, min_items = 1)]
    pub candidates: Option<Vec<HashMap<String, Value>>>,
    /// Latency budget in ms (else the `X-Latency-Budget-Ms` header, else the server default).
    #[schema(minimum = 0)]
    pub latency_budget_ms: Option<f64>,
    /// Hard deadline in ms after arrival (else `X-Request-Timeout-Ms`; the server's `request_timeout_ms`
    /// is the ceiling): past it the request is answered 504 `deadline_exceeded` and never runs.
    #[schema(minimum = 0)]
    pub timeout_ms: Option<f64>,
    /// `auto` (budget routing), `ensemble`, `student` (the best) or `student:<k>`.
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
    /// One probability per instance (or candidate), in order.
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

impl From<Scored> for ScoreResponse {
    fn from(s: Scored) -> Self {
        Self {
            model: s.model,
            version: s.version,
            served_by: s.tier,
            graph: s.graph,
            probabilities: s.probabilities,
            server_time_us: s.server_us.round(),
            queue_time_us: s.queue_us.round(),
            inference_time_us: s.run_us.round(),
            batch_rows: s.batch_rows,
            latency_budget_ms: s.budget_ms,
            budget_met: s.budget_met,
            predicted_miss: s.predicted_miss,
        }
    }
}

/// A v1 body for the pipeline.
struct V1Body(Result<Bytes, ScoringError>);

impl Decode for V1Body {
    type Extra = ();
    fn decode(self, enc: &Encoder, limits: DecodeLimits) -> Result<(Encoded, BodyOptions, ()), ScoringError> {
        let (encoded, options) = decode_v1(&self.0?, enc, limits)?;
        Ok((encoded, options, ()))
    }
}

/// Scores a v1 body through the pipeline without HTTP: what the handlers run, and what the floor
/// benchmark times.
pub async fn score_body(s: &AppState, call: Call<'_>, body: Bytes) -> Result<ScoreResponse, ScoringError> {
    s.scorer.score(call, V1Body(Ok(body))).await.map(|(scored, ())| scored.into())
}

/// Every answer of the v1 scoring endpoints (for the OpenAPI document).
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
enum ScoreAnswers {
    #[response(status = 200, description = "scored")]
    Scored(ScoreResponse),
    #[response(status = 400, description = "body is not JSON")]
    NotJson(ErrorBody),
    #[response(status = 404, description = "unknown model")]
    UnknownModel(ErrorBody),
    #[response(status = 413, description = "body too large or too many instances")]
    TooLarge(ErrorBody),
    #[response(status = 422, description = "invalid request, instance, budget, timeout or tier")]
    Invalid(ErrorBody),
    #[response(status = 429, description = "too many requests in flight, or no tier can meet the budget now")]
    Overloaded(ErrorBody),
    #[response(status = 503, description = "batch queue full")]
    QueueFull(ErrorBody),
    #[response(status = 504, description = "deadline exceeded before the request could run")]
    Deadline(ErrorBody),
}

/// Scores instances with the default model.
#[utoipa::path(post, path = "/v1/score", tag = "v1", request_body = ScoreRequest,
    params(MillisecondHeaders),
    responses(ScoreAnswers))]
pub(crate) async fn score_default(
    State(s): State<Arc<AppState>>,
    conn: Option<Extension<ConnectInfo<RxClock>>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let name = s.default_model.clone();
    score(&s, &name, arrival(conn), &headers, body).await
}

/// Scores instances with the named model.
#[utoipa::path(post, path = "/v1/models/{name}/score", tag = "v1", request_body = ScoreRequest,
    params(("name" = String, Path, description = "model name"), MillisecondHeaders),
    responses(ScoreAnswers))]
pub(crate) async fn score_named(
    State(s): State<Arc<AppState>>,
    conn: Option<Extension<ConnectInfo<RxClock>>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    score(&s, &name, arrival(conn), &headers, body).await
}

async fn score(
    s: &AppState,
    name: &str,
    arrived: Instant,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    match s.scorer.score(call(name, arrived, headers), V1Body(body_bytes(body))).await {
        Ok((scored, ())) => Json(ScoreResponse::from(scored)).into_response(),
        Err(e) => ApiError(e).into_response(),
    }
}
