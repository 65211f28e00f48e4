//! KServe v2 / Open Inference Protocol: model metadata, readiness, a Triton-style config, and `infer` with
//! one BYTES (or number) tensor per feature, scored through the same pipeline as `/v1/score`. Errors are the
//! protocol's `{"error": "<message>"}`.
mod types;

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};

pub use types::*;

use super::state::{arrival, body_bytes, call, AppState, MillisecondHeaders};
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
        (status, Json(V2ErrorBody { error: self.0.to_string() })).into_response()
    }
}

/// A typed answer, or the protocol's error.
fn answer<T: serde::Serialize>(r: Result<T, V2Error>) -> Response {
    r.map_or_else(IntoResponse::into_response, |t| Json(t).into_response())
}

fn model_or_404(s: &AppState, name: &str) -> Result<Arc<LoadedModel>, V2Error> {
    s.scorer.registry.get_version(name, None).map_err(V2Error)
}

/// A model addressed by name and version: the version must be the one loaded (the newest the manifest names).
fn version_or_404(s: &AppState, name: &str, version: &str) -> Result<Arc<LoadedModel>, V2Error> {
    s.scorer.registry.get_version(name, Some(version)).map_err(V2Error)
}

/// Server metadata.
#[utoipa::path(get, path = "/v2", tag = "kserve-v2", responses((status = 200, body = ServerMetadata)))]
pub(crate) async fn server_metadata() -> Json<ServerMetadata> {
    let extensions = vec!["binary_tensor_data"];
    Json(ServerMetadata { name: "ensemble-serve", version: env!("CARGO_PKG_VERSION"), extensions })
}

/// The server is live.
#[utoipa::path(get, path = "/v2/health/live", tag = "kserve-v2", responses((status = 200, body = Live)))]
pub(crate) async fn live() -> Json<Live> {
    Json(Live { live: true })
}

/// The server is ready: at least one model is loaded.
#[utoipa::path(get, path = "/v2/health/ready", tag = "kserve-v2",
    responses((status = 200, body = Ready), (status = 503, description = "no model is loaded", body = Ready)))]
pub(crate) async fn ready(State(s): State<Arc<AppState>>) -> Response {
    let ok = !s.scorer.registry.models.load().is_empty();
    (if ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE }, Json(Ready { ready: ok })).into_response()
}

/// Model metadata: one BYTES input per field, `probability` FP32 out.
#[utoipa::path(get, path = "/v2/models/{name}", tag = "kserve-v2", params(("name" = String, Path)),
    responses((status = 200, body = ModelMetadata), (status = 404, description = "unknown model", body = V2ErrorBody)))]
pub(crate) async fn metadata(State(s): State<Arc<AppState>>, Path(name): Path<String>) -> Response {
    answer(model_or_404(&s, &name).map(|m| model_metadata(&m)))
}

/// Metadata of the model's loaded version.
#[utoipa::path(get, path = "/v2/models/{name}/versions/{version}", tag = "kserve-v2",
    params(("name" = String, Path), ("version" = String, Path)),
    responses((status = 200, body = ModelMetadata), (status = 404, description = "unknown model or version", body = V2ErrorBody)))]
pub(crate) async fn version_metadata(
    State(s): State<Arc<AppState>>,
    Path((name, version)): Path<(String, String)>,
) -> Response {
    answer(version_or_404(&s, &name, &version).map(|m| model_metadata(&m)))
}

/// The model's loaded version is ready.
#[utoipa::path(get, path = "/v2/models/{name}/versions/{version}/ready", tag = "kserve-v2",
    params(("name" = String, Path), ("version" = String, Path)),
    responses((status = 200, body = ModelReady), (status = 404, description = "unknown model or version", body = V2ErrorBody)))]
pub(crate) async fn version_ready(
    State(s): State<Arc<AppState>>,
    Path((name, version)): Path<(String, String)>,
) -> Response {
    answer(version_or_404(&s, &name, &version).map(|m| ModelReady { name: m.name.clone(), ready: true }))
}

/// Inputs are [batch, 1] here as in the config (`dims: [1]` with a batch size); [N] is accepted too.
fn model_metadata(m: &LoadedModel) -> ModelMetadata {
    let fields = &m.artifact.encoder.fields;
    let inputs = fields.iter().map(|f| TensorMetadata { name: f.spec.name.clone(), datatype: "BYTES", shape: [-1, 1] });
    ModelMetadata {
        name: m.name.clone(),
        versions: vec![m.version.clone()],
        platform: "ensemble-serve_onnxruntime",
        inputs: inputs.collect(),
        outputs: vec![TensorMetadata { name: "probability".into(), datatype: "FP32", shape: [-1, 1] }],
    }
}

/// The model is ready.
#[utoipa::path(get, path = "/v2/models/{name}/ready", tag = "kserve-v2", params(("name" = String, Path)),
    responses((status = 200, body = ModelReady), (status = 404, description = "unknown model", body = V2ErrorBody)))]
pub(crate) async fn model_ready(State(s): State<Arc<AppState>>, Path(name): Path<String>) -> Response {
    answer(model_or_404(&s, &name).map(|m| ModelReady { name: m.name.clone(), ready: true }))
}

/// The model as a Triton model configuration.
#[utoipa::path(get, path = "/v2/models/{name}/config", tag = "kserve-v2", params(("name" = String, Path)),
    responses((status = 200, body = ModelConfig), (status = 404, description = "unknown model", body = V2ErrorBody)))]
pub(crate) async fn config(State(s): State<Arc<AppState>>, Path(name): Path<String>) -> Response {
    answer(model_or_404(&s, &name).map(|m| model_config(&m)))
}

fn model_config(m: &LoadedModel) -> ModelConfig {
    let b = &m.tiers[0].batcher;
    let fields = &m.artifact.encoder.fields;
    let input = fields.iter().map(|f| ConfigTensor { name: f.spec.name.clone(), data_type: "TYPE_STRING", dims: [1] });
    let kind = if m.execution_provider == crate::runtime::Provider::Cuda { "KIND_GPU" } else { "KIND_CPU" };
    let tiers = m.tiers.iter().map(|t| t.label.as_str()).collect::<Vec<_>>().join(",");
    ModelConfig {
        name: m.name.clone(),
        platform: "onnxruntime_onnx",
        backend: "onnxruntime",
        version_policy: VersionPolicy { latest: LatestVersions { num_versions: 1 } },
        max_batch_size: b.max_batch_rows,
        input: input.collect(),
        output: vec![ConfigTensor { name: "probability".into(), data_type: "TYPE_FP32", dims: [1] }],
        dynamic_batching: DynamicBatching { max_queue_delay_microseconds: b.max_queue_delay.as_micros() as u64 },
        instance_group: vec![InstanceGroup { count: 1, kind }],
        parameters: ConfigParameters { tiers: StringParameter { string_value: tiers } },
    }
}

/// The binary tensor data extension: the JSON header's length; the tensors' bytes follow it.
const HEADER_LENGTH: &str = "inference-header-content-length";
const HEADER_LENGTH_NAME: &str = "Inference-Header-Content-Length";

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

/// The error answers of the infer endpoints (for the OpenAPI document).
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
enum InferErrors {
    #[response(status = 400, description = "malformed or invalid request")]
    Invalid(V2ErrorBody),
    #[response(status = 404, description = "unknown model or version")]
    UnknownModel(V2ErrorBody),
    #[response(status = 413, description = "body too large or too many rows")]
    TooLarge(V2ErrorBody),
    #[response(status = 429, description = "too many requests in flight, or no tier can meet the budget now")]
    Overloaded(V2ErrorBody),
    #[response(status = 503, description = "batch queue full")]
    QueueFull(V2ErrorBody),
    #[response(status = 504, description = "the request's deadline passed before it could run")]
    Deadline(V2ErrorBody),
}

/// Every answer of the infer endpoints: the errors above, and 200 as JSON or as the binary extension's
/// JSON header + raw FP32 (utoipa's derive cannot give one status two media types).
struct InferAnswers;

impl utoipa::IntoResponses for InferAnswers {
    fn responses() -> std::collections::BTreeMap<String, utoipa::openapi::RefOr<utoipa::openapi::Response>> {
        use utoipa::openapi::{header::HeaderBuilder, ContentBuilder, Ref, ResponseBuilder};
        let answer = || ContentBuilder::new().schema(Some(Ref::from_schema_name("InferResponse"))).build();
        let length = HeaderBuilder::new()
            .schema(<usize as utoipa::PartialSchema>::schema())
            .description(Some("length of the JSON header (binary answers)"))
            .build();
        let scored = ResponseBuilder::new()
            .description(
                "scored: JSON; or, with `binary_data_output`, this JSON as a header of \
                 Inference-Header-Content-Length bytes, then the probabilities as raw little-endian FP32",
            )
            .content("application/json", answer())
            .content("application/octet-stream", answer())
            .header(HEADER_LENGTH_NAME, length)
            .build();
        let mut all = InferErrors::responses();
        all.insert("200".into(), scored.into());
        all
    }
}

/// Open Inference Protocol infer: one input tensor per field, `probability` FP32 [N, 1] out. With the binary
/// tensor data extension (`Inference-Header-Content-Length`), tensors' bytes follow the JSON header.
#[utoipa::path(post, path = "/v2/models/{name}/infer", tag = "kserve-v2", params(("name" = String, Path),
        MillisecondHeaders),
    request_body = crate::serve::decode::InferRequest, responses(InferAnswers))]
pub(crate) async fn infer(
    State(s): State<Arc<AppState>>,
    conn: Option<Extension<ConnectInfo<RxClock>>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    infer_as(&s, conn, &name, &headers, body).await
}

/// Infer naming the model's version: the loaded one, else 404 before anything is decoded.
#[utoipa::path(post, path = "/v2/models/{name}/versions/{version}/infer", tag = "kserve-v2",
    params(("name" = String, Path), ("version" = String, Path),
        MillisecondHeaders),
    request_body = crate::serve::decode::InferRequest, responses(InferAnswers))]
pub(crate) async fn version_infer(
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
    let parameters = binary.as_ref().map(|b| BinaryDataSize { binary_data_size: b.len() });
    let answer = InferResponse {
        model_name: out.model,
        model_version: out.version,
        id: meta.id,
        parameters: InferAnswerParameters { served_by: out.tier, server_time_us: out.server_us.round() },
        outputs: [InferOutput { name: "probability", datatype: "FP32", shape: [rows, 1], parameters, data }],
    };
    let Some(binary) = binary else { return Json(answer).into_response() };
    let mut bytes = serde_json::to_vec(&answer).expect("a v2 answer serialises");
    let header = bytes.len().to_string();
    bytes.extend_from_slice(&binary);
    ([(HEADER_LENGTH, header.as_str()), ("content-type", "application/octet-stream")], bytes).into_response()
}
