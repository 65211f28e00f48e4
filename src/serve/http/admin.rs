//! `POST /admin/reload` with `Authorization: Bearer <admin_token>`: 200 when every model is loaded or
//! unchanged, 422 when one failed (its serving version stays), with the per-model outcomes.
use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::state::{plain_error, AppState};
use crate::serve::registry::ReloadStatus;

pub(super) async fn reload(State(s): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if s.admin_token.is_empty() {
        return plain_error(StatusCode::NOT_FOUND, "admin_disabled", "set admin_token in the server config");
    }
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("");
    if auth.strip_prefix("Bearer ") != Some(s.admin_token.as_str()) {
        return plain_error(StatusCode::UNAUTHORIZED, "unauthorized", "a valid bearer token is required");
    }
    let outcomes = s.scorer.registry.reload().await;
    let failed = outcomes.iter().any(|o| o.status == ReloadStatus::Failed);
    let status = if failed { StatusCode::UNPROCESSABLE_ENTITY } else { StatusCode::OK };
    (status, Json(json!({"models": outcomes}))).into_response()
}
