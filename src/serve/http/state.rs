//! What every handler shares: the state, the v1 error answer, and turning an HTTP request into the
//! pipeline's [`Call`].
use std::time::Instant;

use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::json;

use crate::serve::arrival::RxClock;
use crate::serve::error::ScoringError;
use crate::serve::scoring::{Call, Scorer};

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
pub(super) fn plain_error(status: StatusCode, code: &str, message: &str) -> Response {
    (status, Json(json!({"error": {"code": code, "message": message}}))).into_response()
}

/// When the request's bytes reached the kernel; handler start where the connection carries no clock
/// (in-process callers).
pub(super) fn arrival(conn: Option<Extension<ConnectInfo<RxClock>>>) -> Instant {
    conn.map_or_else(Instant::now, |Extension(ConnectInfo(clock))| clock.arrival())
}

/// The pipeline's view of a request's headers (HTTP, or gRPC metadata): model, arrival, and the budget and
/// timeout headers.
pub fn call<'a>(model: &'a str, arrival: Instant, headers: &'a HeaderMap) -> Call<'a> {
    let (budget_header, timeout_header) =
        (header_text(headers, "x-latency-budget-ms"), header_text(headers, "x-request-timeout-ms"));
    Call { model, arrival, budget_header, timeout_header, grpc_timeout: None }
}

/// A header's value for the pipeline to parse; one that is not visible ASCII cannot be a number, so it is
/// passed on as U+FFFD for the pipeline to refuse.
pub fn header_text<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).map(|v| v.to_str().unwrap_or("\u{fffd}"))
}

/// The headers a scoring request may carry when its body gives no budget or timeout (for the OpenAPI
/// document; [`call`] reads them).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
pub struct MillisecondHeaders {
    /// Latency budget (ms) when the body has none.
    #[param(rename = "X-Latency-Budget-Ms")]
    budget: Option<String>,
    /// Deadline (ms after arrival) when the body has none: past it the answer is 504 and nothing runs.
    #[param(rename = "X-Request-Timeout-Ms")]
    timeout: Option<String>,
}

/// The body as the pipeline expects it: a rejected body (too large, unreadable) is a scoring error.
pub(super) fn body_bytes(
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<axum::body::Bytes, ScoringError> {
    body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ScoringError::BodyTooLarge(e.body_text())
        } else {
            ScoringError::BadBody(e.body_text())
        }
    })
}

/// Every v1 error answer.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
}
