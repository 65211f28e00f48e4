//! The HTTP router in-process on the shipped default model: requests through `tower::ServiceExt::oneshot`,
//! no socket.
use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Body;
use axum::http::Request;
use axum::Router;
use ensemble_serve::config::ServerConfig;
use ensemble_serve::serve::{build_state, http::AppState};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

/// A fresh server state (own metrics, own batchers) over `models_dir`, with `cfg` for everything else.
pub fn state(models_dir: PathBuf, cfg: ServerConfig) -> Arc<AppState> {
    let cfg = ServerConfig { models_dir, ..cfg };
    build_state(super::ort_env(), &cfg).expect("server state")
}

/// A fresh server state over the repository's shipped models, default config.
pub fn shipped() -> Arc<AppState> {
    state(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models"), ServerConfig::default())
}

pub fn router(state: &Arc<AppState>) -> Router {
    ensemble_serve::serve::http::router(state.clone(), 16 << 20)
}

/// Sends one request with `headers`; returns the status and the body as JSON (or as a JSON string if it
/// is not JSON).
pub async fn send(
    router: &Router,
    method: &str,
    uri: &str,
    body: Option<&Value>,
    headers: &[(&str, &str)],
) -> (u16, Value) {
    let mut req = Request::builder().method(method).uri(uri).header("content-type", "application/json");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let body = body.map_or_else(Body::empty, |b| Body::from(serde_json::to_vec(b).expect("JSON")));
    let answer = router.clone().oneshot(req.body(body).expect("request")).await.expect("infallible");
    let status = answer.status().as_u16();
    let bytes = answer.into_body().collect().await.expect("body").to_bytes();
    let json = serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
    (status, json)
}

pub async fn post(router: &Router, uri: &str, body: &Value) -> (u16, Value) {
    send(router, "POST", uri, Some(body), &[]).await
}

/// The probabilities of a v1 answer, as f32 bits (for exact comparisons).
pub fn prob_bits(answer: &Value) -> Vec<u32> {
    let probs = answer["probabilities"].as_array().unwrap_or_else(|| panic!("no probabilities: {answer}"));
    probs.iter().map(|p| (p.as_f64().expect("number") as f32).to_bits()).collect()
}

/// The sum of a counter or histogram-sum series over lines of the text exposition that start with `prefix`.
pub fn metric_sum(state: &AppState, prefix: &str) -> f64 {
    state
        .scorer
        .metrics
        .render()
        .lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Posts raw bytes with `headers`; returns the status, the answer's headers and its bytes.
pub async fn post_bytes(
    router: &Router,
    uri: &str,
    body: Vec<u8>,
    headers: &[(&str, &str)],
) -> (u16, axum::http::HeaderMap, Vec<u8>) {
    let mut req = Request::builder().method("POST").uri(uri);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let answer = router.clone().oneshot(req.body(Body::from(body)).expect("request")).await.expect("infallible");
    let (status, headers) = (answer.status().as_u16(), answer.headers().clone());
    (status, headers, answer.into_body().collect().await.expect("body").to_bytes().to_vec())
}
