//! KServe v2 / Open Inference Protocol: model metadata, readiness, a Triton-style config, and `infer` with
//! one BYTES (or number) tensor per feature, scored through the same pipeline as `/v1/score`. Errors are the
//! protocol's `{"error": "<message>"}`.
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::{json, Value};

use super::state::{arrival, body_bytes, call, AppState};
use crate::features::Encoder;
use crate::serve::arrival::RxClock;
use crate::serve::decode::{decode_v2, BodyOptions, DecodeLimits, Encoded, V2Meta};
use crate::serve::error::ScoringError;
use crate::serve::registry::LoadedModel;
use crate::serve::scoring::Decode;

/// A v2 error answer: the scoring error's status, the protocol's body.
struct V2Error(ScoringError);

impl IntoResponse for V2Error {
    /// The protocol (and Triton) answer every malformed or invalid request 400; other statuses are ours.
    fn into_response(self) -> Response {
        let status = match self.0.status() {
            422 => StatusCode::BAD_REQUEST,
            s => StatusCode::from_u16(s).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        };
        (status, Json(json!({"error": self.0.to_string()}))).into_response()
    }
}

fn model_or_404(s: &AppState, name: &str) -> Result<Arc<LoadedModel>, V2Error> {
    s.scorer.registry.get_version(name, None).map_err(V2Error)
}

/// A model addressed by name and version: the version must be the one loaded (the newest the manifest names).
fn version_or_404(s: &AppState, name: &str, version: &str) -> Result<Arc<LoadedModel>, V2Error> {
    s.scorer.registry.get_version(name, Some(version)).map_err(V2Error)
}

/// `GET /v2`: server metadata.
pub(super) async fn server_metadata() -> Json<Value> {
    Json(json!({"name": "ensemble-serve", "version": env!("CARGO_PKG_VERSION"), "extensions": []}))
}

pub(super) async fn metadata(State(s): State<Arc<AppState>>, Path(name): Path<String>) -> Response {
    model_metadata(model_or_404(&s, &name))
}

pub(super) async fn version_metadata(
    State(s): State<Arc<AppState>>,
    Path((name, version)): Path<(String, String)>,
) -> Response {
    model_metadata(version_or_404(&s, &name, &version))
}

pub(super) async fn version_ready(
    State(s): State<Arc<AppState>>,
    Path((name, version)): Path<(String, String)>,
) -> Response {
    match version_or_404(&s, &name, &version) {
        Ok(m) => Json(json!({"name": m.name, "ready": true})).into_response(),
        Err(e) => e.into_response(),
    }
}

/// Inputs are [batch, 1] here as in the config (`dims: [1]` with a batch size); [N] is accepted too.
fn model_metadata(m: Result<Arc<LoadedModel>, V2Error>) -> Response {
    let m = match m {
        Ok(m) => m,
        Err(e) => return e.into_response(),
    };
    let inputs: Vec<Value> = m
        .artifact
        .encoder
        .fields
        .iter()
        .map(|f| json!({"name": f.spec.name, "datatype": "BYTES", "shape": [-1, 1]}))
        .collect();
    Json(json!({
        "name": m.name,
        "versions": [m.version],
        "platform": "ensemble-serve_onnxruntime",
        "inputs": inputs,
        "outputs": [{"name": "probability", "datatype": "FP32", "shape": [-1, 1]}],
    }))
    .into_response()
}

pub(super) async fn model_ready(State(s): State<Arc<AppState>>, Path(name): Path<String>) -> Response {
    match model_or_404(&s, &name) {
        Ok(m) => Json(json!({"name": m.name, "ready": true})).into_response(),
        Err(e) => e.into_response(),
    }
}

pub(super) async fn config(State(s): State<Arc<AppState>>, Path(name): Path<String>) -> Response {
    let m = match model_or_404(&s, &name) {
        Ok(m) => m,
        Err(e) => return e.into_response(),
    };
    let b = &m.tiers[0].batcher;
    let input: Vec<Value> = m
        .artifact
        .encoder
        .fields
        .iter()
        .map(|f| json!({"name": f.spec.name, "data_type": "TYPE_STRING", "dims": [1]}))
        .collect();
    let kind = if m.execution_provider == crate::runtime::Provider::Cuda { "KIND_GPU" } else { "KIND_CPU" };
    Json(json!({
        "name": m.name,
        "platform": "onnxruntime_onnx",
        "backend": "onnxruntime",
        "version_policy": {"latest": {"num_versions": 1}},
        "max_batch_size": b.max_batch_rows,
        "input": input,
        "output": [{"name": "probability", "data_type": "TYPE_FP32", "dims": [1]}],
        "dynamic_batching": {"max_queue_delay_microseconds": b.max_queue_delay.as_micros() as u64},
        "instance_group": [{"count": 1, "kind": kind}],
        "parameters": {"tiers": {"string_value": m.tiers.iter().map(|t| t.label.clone()).collect::<Vec<_>>().join(",")}},
    }))
    .into_response()
}

/// The binary tensor data extension: the JSON header's length; the tensors' bytes follow it.
const HEADER_LENGTH: &str = "inference-header-content-length";

/// A v2 body for the pipeline, and the length of its JSON header when binary tensors follow it.
struct V2Body(Result<(Bytes, Option<usize>), ScoringError>);

impl Decode for V2Body {
    type Extra = V2Meta;
    fn decode(self, enc: &Encoder, limits: DecodeLimits) -> Result<(Encoded, BodyOptions, V2Meta), ScoringError> {
        let (body, header_len) = self.0?;
        decode_v2(&body, header_len, enc, limits)
    }
}

/// `Inference-Header-Content-Length`, when present: a byte count.
fn header_len(headers: &HeaderMap) -> Result<Option<usize>, ScoringError> {
    let Some(v) = headers.get(HEADER_LENGTH) else { return Ok(None) };
    let n = v.to_str().ok().and_then(|t| t.trim().parse().ok());
    n.map(Some).ok_or_else(|| ScoringError::InvalidRequest(format!("header Inference-Header-Content-Length: {v:?}")))
}

/// Serialised with f32 numbers, so probabilities print exactly as in v1 answers.
#[derive(serde::Serialize)]
struct V2Response {
    model_name: String,
    model_version: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    parameters: Value,
    outputs: [V2Output; 1],
}

/// The output tensor, with its values inline or (`binary_data_size`) after the JSON header.
#[derive(serde::Serialize)]
struct V2Output {
    name: &'static str,
    datatype: &'static str,
    shape: [usize; 2],
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<Vec<f32>>,
}

/// Open Inference Protocol infer: one input tensor per field, `probability` FP32 [N, 1] out.
pub(super) async fn infer(
    State(s): State<Arc<AppState>>,
    conn: Option<Extension<ConnectInfo<RxClock>>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    infer_as(&s, conn, &name, &headers, body).await
}

/// Infer naming the model's version: the loaded one, else 404 before anything is decoded.
pub(super) async fn version_infer(
    State(s): State<Arc<AppState>>,
    conn: Option<Extension<ConnectInfo<RxClock>>>,
    Path((name, version)): Path<(String, String)>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    if let Err(e) = version_or_404(&s, &name, &version) {
        return e.into_response();
    }
    infer_as(&s, conn, &name, &headers, body).await
}

async fn infer_as(
    s: &AppState,
    conn: Option<Extension<ConnectInfo<RxClock>>>,
    name: &str,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = body_bytes(body).and_then(|b| Ok((b, header_len(headers)?)));
    let (out, meta) = match s.scorer.score(call(name, arrival(conn), headers), V2Body(body)).await {
        Ok(r) => r,
        Err(e) => return V2Error(e).into_response(),
    };
    let rows = out.probabilities.len();
    let (data, binary) = match meta.binary_output {
        true => (None, Some(out.probabilities.iter().flat_map(|p| p.to_le_bytes()).collect::<Vec<u8>>())),
        false => (Some(out.probabilities), None),
    };
    let parameters = binary.as_ref().map(|b| json!({"binary_data_size": b.len()}));
    let answer = V2Response {
        model_name: out.model,
        model_version: out.version,
        id: meta.id,
        parameters: json!({"served_by": out.tier, "server_time_us": out.server_us.round()}),
        outputs: [V2Output { name: "probability", datatype: "FP32", shape: [rows, 1], parameters, data }],
    };
    let Some(binary) = binary else { return Json(answer).into_response() };
    let mut bytes = serde_json::to_vec(&answer).expect("a v2 answer serialises");
    let header = bytes.len().to_string();
    bytes.extend_from_slice(&binary);
    ([(HEADER_LENGTH, header.as_str()), ("content-type", "application/octet-stream")], bytes).into_response()
}
