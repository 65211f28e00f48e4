//! The OpenAPI 3.1 document of every HTTP endpoint. Its operations and schemas come from the handlers' own
//! annotations and types (utoipa), so they cannot drift; each loaded model then gets its own concrete paths
//! whose request schemas name its fields, tiers and limits (`model_schema`), so a schema-valid request is one
//! the server accepts. Any other model name is answered 404 (said in the document's description).
use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use serde_json::{json, Map, Value};
use utoipa::OpenApi;

use super::admin;
use super::model_schema::{infer_request, score_request, RequestLimits};
use super::ops;
use super::state;
use super::state::AppState;
use super::v1;
use super::v2;
use crate::serve::decode;
use crate::serve::registry::{LoadedModel, ReloadOutcome, ReloadStatus};
use crate::serve::scoring::MS_HEADER_PATTERN;

#[derive(OpenApi)]
#[openapi(
    info(title = "ensemble-serve", description = "CTR ensemble scoring with latency-budget routing: v1 JSON \
        scoring, KServe v2 (Open Inference Protocol) REST, health, metrics and admin. Each loaded model has \
        its own paths (`/v1/models/<name>/score`, `/v2/models/<name>/...`) with its fields and tiers in their \
        schemas; any other model name or version is answered 404 with the protocol's error body."),
    paths(v1::score_default, v1::score_named, ops::healthz, ops::readyz, ops::metrics, serve, admin::reload,
        v2::server_metadata, v2::live, v2::ready, v2::metadata, v2::model_ready, v2::config, v2::infer,
        v2::version_metadata, v2::version_ready, v2::version_infer),
    components(schemas(v1::ScoreRequest, v1::ScoreResponse, state::ErrorBody, state::ErrorDetail,
        admin::ReloadAnswer, ReloadOutcome, ReloadStatus, v2::V2ErrorBody, v2::InferResponse, decode::InferRequest,
        decode::InferInput, decode::InferParameters, decode::TensorParameters, decode::OutputRequest, decode::OutputParameters)),
    tags((name = "v1", description = "JSON scoring: `instances`, or a `context` with `candidates`"),
        (name = "kserve-v2", description = "KServe v2 / Open Inference Protocol REST"),
        (name = "operations", description = "health, readiness, metrics, this document"),
        (name = "admin", description = "model reload (bearer token)"))
)]
struct ApiDoc;

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "the OpenAPI 3.1 document of this server", body = Object)))]
pub(crate) async fn serve(State(s): State<Arc<AppState>>) -> Json<Value> {
    Json(document(&s))
}

/// The document for the models loaded now.
pub fn document(s: &AppState) -> Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).expect("the OpenAPI document serialises");
    let mut models: Vec<Arc<LoadedModel>> = s.scorer.registry.models.load().values().cloned().collect();
    models.sort_by(|a, b| a.name.cmp(&b.name));
    let limits =
        RequestLimits { max_rows: s.scorer.limits.max_instances, missing_as_oov: s.scorer.limits.missing_as_oov };
    add_model_schemas(&mut doc, &models, limits);
    let paths = std::mem::take(doc["paths"].as_object_mut().expect("paths"));
    doc["paths"] = Value::Object(concrete_paths(paths, &models, &s.default_model));
    header_schemas(&mut doc["paths"]);
    doc["components"]["securitySchemes"] = json!({"bearer": {"type": "http", "scheme": "bearer"}});
    doc
}

/// A model name as a component-name prefix (`^[a-zA-Z0-9._-]+$`).
fn prefix(model: &str) -> String {
    model.chars().map(|c| if c.is_ascii_alphanumeric() || "._-".contains(c) { c } else { '_' }).collect()
}

fn add_model_schemas(doc: &mut Value, models: &[Arc<LoadedModel>], limits: RequestLimits) {
    let schemas = &mut doc["components"]["schemas"];
    let (score, infer) = (schemas["ScoreRequest"].clone(), schemas["InferRequest"].clone());
    for m in models {
        let p = prefix(&m.name);
        for (name, schema) in score_request(&score, m, limits, &p) {
            schemas[name] = schema;
        }
        schemas[format!("{p}.InferRequest")] = infer_request(&infer, m, limits);
    }
}

/// Each templated path once per loaded model (its name and version filled in, its own request schemas);
/// `/v1/score` takes the default model's schema.
fn concrete_paths(paths: Map<String, Value>, models: &[Arc<LoadedModel>], default_model: &str) -> Map<String, Value> {
    let mut out = Map::new();
    for (path, item) in paths {
        if !path.contains("{name}") {
            let item = match (path.as_str(), models.iter().find(|m| m.name == default_model)) {
                ("/v1/score", Some(m)) => for_model(item, m, &path),
                _ => item,
            };
            out.insert(path, item);
            continue;
        }
        for m in models {
            let concrete = path.replace("{name}", &m.name).replace("{version}", &m.version);
            out.insert(concrete, for_model(item.clone(), m, &path));
        }
    }
    out
}

/// A header is absent or text (utoipa writes `Option` as nullable; a header cannot carry JSON null), and a
/// milliseconds header is a decimal number in the grammar the pipeline reads.
fn header_schemas(paths: &mut Value) {
    let ops = paths.as_object_mut().into_iter().flat_map(|p| p.values_mut()).flat_map(|i| i.as_object_mut());
    for op in ops.flat_map(|ops| ops.values_mut()) {
        for p in op.get_mut("parameters").and_then(Value::as_array_mut).into_iter().flatten() {
            if p["in"] == "header" && p["schema"]["type"] == json!(["string", "null"]) {
                p["schema"]["type"] = json!("string");
            }
            if p["in"] == "header" && p["name"].as_str().is_some_and(|n| n.ends_with("-Ms")) {
                p["schema"]["pattern"] = json!(MS_HEADER_PATTERN);
            }
        }
    }
}

/// An operation for one model: no name/version parameters, its request schemas, a unique operationId.
fn for_model(mut item: Value, m: &LoadedModel, template: &str) -> Value {
    let p = prefix(&m.name);
    for op in item.as_object_mut().expect("path item").values_mut() {
        if let Some(params) = op.get_mut("parameters").and_then(Value::as_array_mut) {
            params.retain(|p| !(p["in"] == "path" && (p["name"] == "name" || p["name"] == "version")));
        }
        let id = op["operationId"].as_str().unwrap_or("op").to_string();
        op["operationId"] = json!(format!("{id}.{p}"));
        op["x-model"] = json!(m.name);
        op["summary"] = json!(format!("{template} for model '{}'", m.name));
        rewrite_refs(
            op,
            &[("ScoreRequest", format!("{p}.ScoreRequest")), ("InferRequest", format!("{p}.InferRequest"))],
        );
    }
    item
}

/// Points `$ref`s at `#/components/schemas/<from>` to `<to>` instead.
fn rewrite_refs(v: &mut Value, renames: &[(&str, String)]) {
    match v {
        Value::Object(map) => {
            for (k, child) in map.iter_mut() {
                if k == "$ref" {
                    for (from, to) in renames {
                        if child.as_str() == Some(&format!("#/components/schemas/{from}")) {
                            *child = json!(format!("#/components/schemas/{to}"));
                        }
                    }
                } else {
                    rewrite_refs(child, renames);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|c| rewrite_refs(c, renames)),
        _ => {}
    }
}
