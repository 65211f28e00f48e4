//! `POST /admin/reload` with `Authorization: Bearer <admin_token>`: 200 when every model is loaded or
//! unchanged, 422 when one failed (its serving version stays), with the per-model outcomes.
use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::state::{plain_error, AppState, ErrorBody};
use crate::serve::registry::{ReloadOutcome, ReloadStatus};

/// Every model's reload outcome.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ReloadAnswer {
    pub models: Vec<ReloadOutcome>,
}

/// Loads each model's newest version from the models directory; a model that fails keeps serving its version.
#[utoipa::path(post, path = "/admin/reload", tag = "admin", security(("bearer" = [])),
    responses((status = 200, description = "every model loaded or unchanged", body = ReloadAnswer),
        (status = 401, description = "missing or wrong bearer token", body = ErrorBody),
        (status = 404, description = "admin endpoints are disabled (no admin_token)", body = ErrorBody),
        (status = 422, description = "a model failed to load; it keeps its serving version", body = ReloadAnswer)))]
pub(crate) async fn reload(State(s): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if s.admin_token.is_empty() {
        return plain_error(StatusCode::NOT_FOUND, "admin_disabled", "set admin_token in the server config");
    }
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("");
    if auth.strip_prefix("Bearer ") != Some(s.admin_token.as_str()) {
        return plain_error(StatusCode::UNAUTHORIZED, "unauthorized", "a valid bearer token is required");
    }
    let models = s.scorer.registry.reload().await;
    let failed = models.iter().any(|o| o.status == ReloadStatus::Failed);
    let status = if failed { StatusCode::UNPROCESSABLE_ENTITY } else { StatusCode::OK };
    (status, Json(ReloadAnswer { models })).into_response()
}
