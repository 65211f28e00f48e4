//! KServe v2 / Open Inference Protocol: model metadata, readiness, a Triton-style config, and `infer` with
//! one BYTES tensor per feature, scored through the same path as `/v1/score`.
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::arrival::RxClock;
use super::http::{body_error, header_budget, json_error, run_scoring, ApiError, AppState};
use super::model::LoadedModel;

fn model_or_404(s: &AppState, name: &str) -> Result<Arc<LoadedModel>, ApiError> {
    s.models
        .load()
        .get(name)
        .cloned()
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "unknown_model", format!("model '{name}' is not loaded")))
}

pub(super) async fn v2_metadata(
    State(s): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let m = model_or_404(&s, &name)?;
    let inputs: Vec<Value> = m
        .artifact
        .encoder
        .fields
        .iter()
        .map(|f| json!({"name": f.spec.name, "datatype": "BYTES", "shape": [-1]}))
        .collect();
    Ok(Json(json!({
        "name": m.name,
        "versions": [m.version],
        "platform": "ensemble-serve_onnxruntime",
        "inputs": inputs,
        "outputs": [{"name": "probability", "datatype": "FP32", "shape": [-1, 1]}],
    })))
}

pub(super) async fn v2_model_ready(
    State(s): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    model_or_404(&s, &name).map(|m| Json(json!({"name": m.name, "ready": true})))
}

pub(super) async fn v2_config(
    State(s): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let m = model_or_404(&s, &name)?;
    let b = &m.tiers[0].batcher;
    let input: Vec<Value> = m
        .artifact
        .encoder
        .fields
        .iter()
        .map(|f| json!({"name": f.spec.name, "data_type": "TYPE_STRING", "dims": [1]}))
        .collect();
    Ok(Json(json!({
        "name": m.name,
        "platform": "onnxruntime_onnx",
        "backend": "onnxruntime",
        "version_policy": {"latest": {"num_versions": 1}},
        "max_batch_size": b.max_batch_rows,
        "input": input,
        "output": [{"name": "probability", "data_type": "TYPE_FP32", "dims": [1]}],
        "dynamic_batching": {"max_queue_delay_microseconds": b.max_queue_delay.as_micros() as u64},
        "instance_group": [{"count": 1, "kind": if m.execution_provider == "cuda" { "KIND_GPU" } else { "KIND_CPU" }}],
        "parameters": {"tiers": {"string_value": m.tiers.iter().map(|t| t.label.clone()).collect::<Vec<_>>().join(",")}},
    })))
}

#[derive(Deserialize)]
struct V2Request {
    #[serde(default)]
    id: Option<String>,
    inputs: Vec<V2Input>,
    #[serde(default)]
    parameters: Map<String, Value>,
}

/// Serialised with f32 numbers, so probabilities print exactly as in v1 answers.
#[derive(serde::Serialize)]
struct V2Response {
    model_name: String,
    model_version: String,
    id: Option<String>,
    parameters: Value,
    outputs: Vec<V2Output>,
}

#[derive(serde::Serialize)]
struct V2Output {
    name: &'static str,
    datatype: &'static str,
    shape: [usize; 2],
    data: Vec<f32>,
}

#[derive(Deserialize)]
struct V2Input {
    name: String,
    shape: Vec<i64>,
    datatype: String,
    data: Vec<Value>,
}

/// Open Inference Protocol: one input tensor per field (BYTES, or numbers), `probability` FP32 [N, 1] out.
pub(super) async fn v2_infer(
    State(s): State<Arc<AppState>>,
    conn: Option<Extension<ConnectInfo<RxClock>>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let started = super::http::arrival(conn);
    let result = async {
        let body = body.map_err(body_error)?;
        let req: V2Request = serde_json::from_slice(&body).map_err(json_error)?;
        let instances = v2_instances(&req.inputs)?;
        let budget = req.parameters.get("latency_budget_ms").and_then(Value::as_f64).or(header_budget(&headers)?);
        let tier = req.parameters.get("tier").and_then(Value::as_str).unwrap_or("auto").to_string();
        let n = instances.len();
        let out = run_scoring(&s, &name, instances, budget, &tier, started).await?;
        let output = V2Output { name: "probability", datatype: "FP32", shape: [n, 1], data: out.probabilities };
        Ok::<_, ApiError>(
            Json(V2Response {
                model_name: out.model,
                model_version: out.version,
                id: req.id,
                parameters: json!({"served_by": out.served_by, "server_time_us": out.server_time_us}),
                outputs: vec![output],
            })
            .into_response(),
        )
    }
    .await;
    result.unwrap_or_else(|e| e.into_response())
}

fn v2_instances(inputs: &[V2Input]) -> Result<Vec<Value>, ApiError> {
    let bad = |msg: String| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_request", msg);
    let n = inputs.first().map_or(0, |i| i.data.len());
    let mut rows = vec![Map::new(); n];
    for input in inputs {
        if !matches!(input.datatype.as_str(), "BYTES" | "INT64" | "INT32" | "FP32" | "FP64") {
            return Err(bad(format!("input '{}': datatype {} (BYTES or a number type)", input.name, input.datatype)));
        }
        if input.data.len() != n || input.shape.first().is_some_and(|&d| d != n as i64) {
            return Err(bad(format!(
                "input '{}': {} values, shape {:?}; every input needs {n}",
                input.name,
                input.data.len(),
                input.shape
            )));
        }
        for (row, v) in rows.iter_mut().zip(&input.data) {
            row.insert(input.name.clone(), v.clone());
        }
    }
    Ok(rows.into_iter().map(Value::Object).collect())
}
