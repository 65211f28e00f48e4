//! The HTTP handlers in-process (`tower::ServiceExt::oneshot`, no socket) on the shipped default model and
//! real frappe test rows: ranking-request validation, KServe v2 broadcasting, identical metrics for v1, v2
//! and gRPC (tonic's generated client over the gRPC router as a tower service), deadlines that pass before a
//! request runs, and bodies that are not UTF-8.
mod common;

use ensemble_serve::data::instances::{read_instances, split_context};
use ensemble_serve::serve::grpc::proto::grpc_inference_service_client::GrpcInferenceServiceClient;
use ensemble_serve::serve::grpc::proto::ModelInferRequest;
use serde_json::{json, Map, Value};

const CONTEXT: [&str; 8] = ["user", "daytime", "weekday", "isweekend", "homework", "weather", "country", "city"];

fn rows(n: usize) -> Option<Vec<Map<String, Value>>> {
    let data = common::data_dir()?;
    let spec = common::spec("frappe_ctr", &data);
    Some(read_instances(&spec, ensemble_serve::data::Split::Test, Some(n)).unwrap().objects)
}

#[tokio::test]
async fn a_field_in_both_context_and_candidates_or_in_neither_is_a_422_naming_it() {
    let Some(rows) = rows(3) else { return };
    let router = common::app::router(&common::app::shipped());
    let (context, mut candidates) = split_context(&rows, &CONTEXT);
    candidates[2].insert("weather".into(), json!("sunny"));
    let (status, v) =
        common::app::post(&router, "/v1/score", &json!({"context": context, "candidates": candidates})).await;
    assert_eq!((status, v["error"]["code"].as_str()), (422, Some("field_in_both")), "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("'weather'"), "{v}");

    let (mut context, candidates) = split_context(&rows, &CONTEXT);
    context.remove("city");
    let (status, v) =
        common::app::post(&router, "/v1/score", &json!({"context": context, "candidates": candidates})).await;
    assert_eq!((status, v["error"]["code"].as_str()), (422, Some("invalid_instance")), "{v}");
    assert_eq!(v["error"]["message"], "candidates[0]: field 'city' is missing", "{v}");

    let (status, v) = common::app::post(&router, "/v1/score", &json!({"context": {"user": "1"}})).await;
    assert_eq!((status, v["error"]["code"].as_str()), (422, Some("invalid_request")), "{v}");
}

#[tokio::test]
async fn a_body_that_is_not_utf8_is_a_400_in_each_protocols_shape() {
    let router = common::app::router(&common::app::shipped());
    let json = [("content-type", "application/json")];
    let body = b"{\"instances\": [{\"user\": \"\xff\"}]}".to_vec();
    let (status, _, answer) = common::app::post_bytes(&router, "/v1/score", body.clone(), &json).await;
    let v: Value = serde_json::from_slice(&answer).unwrap();
    assert_eq!((status, v["error"]["code"].as_str()), (400, Some("invalid_json")), "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("UTF-8 at byte 25"), "{v}");
    let (status, _, answer) = common::app::post_bytes(&router, "/v2/models/default/infer", body, &json).await;
    let v: Value = serde_json::from_slice(&answer).unwrap();
    assert_eq!(status, 400, "{v}");
    assert!(v["error"].as_str().unwrap().contains("UTF-8 at byte 25"), "{v}");
}

#[tokio::test]
async fn max_instances_counts_candidates() {
    let Some(rows) = rows(1) else { return };
    let router = common::app::router(&common::app::shipped());
    let (context, candidates) = split_context(&rows, &CONTEXT);
    let many = vec![Value::Object(candidates[0].clone()); 1025];
    let (status, v) = common::app::post(&router, "/v1/score", &json!({"context": context, "candidates": many})).await;
    assert_eq!((status, v["error"]["code"].as_str()), (413, Some("too_many_instances")), "{v}");
    let (status, v) =
        common::app::post(&router, "/v1/score", &json!({"context": context, "candidates": &many[..1024]})).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["probabilities"].as_array().unwrap().len(), 1024);
}

/// One v2 input per field: context fields with shape [1] (broadcast), candidate fields with shape [N].
fn v2_body(context: &Map<String, Value>, candidates: &[Map<String, Value>], tier: &str) -> Value {
    let mut inputs: Vec<Value> =
        context.iter().map(|(k, v)| json!({"name": k, "datatype": "BYTES", "shape": [1], "data": [v]})).collect();
    for field in candidates[0].keys() {
        let data: Vec<&Value> = candidates.iter().map(|c| &c[field]).collect();
        inputs.push(json!({"name": field, "datatype": "BYTES", "shape": [data.len(), 1], "data": data}));
    }
    json!({"inputs": inputs, "parameters": {"tier": tier, "latency_budget_ms": 1e4}})
}

#[tokio::test]
async fn kserve_v2_inputs_of_shape_1_broadcast_like_a_v1_context() {
    let Some(rows) = rows(165) else { return };
    let router = common::app::router(&common::app::shipped());
    let (context, candidates) = split_context(&rows, &CONTEXT);
    let v1 = json!({"context": context, "candidates": candidates, "tier": "ensemble", "latency_budget_ms": 1e4});
    let (status, a) = common::app::post(&router, "/v1/score", &v1).await;
    assert_eq!(status, 200, "{a}");
    let (status, b) =
        common::app::post(&router, "/v2/models/default/infer", &v2_body(&context, &candidates, "ensemble")).await;
    assert_eq!(status, 200, "{b}");
    assert_eq!(b["outputs"][0]["shape"], json!([165, 1]));
    assert!(b.get("id").is_none(), "no id sent, none echoed: {b}");
    let v2_bits: Vec<u32> =
        b["outputs"][0]["data"].as_array().unwrap().iter().map(|p| (p.as_f64().unwrap() as f32).to_bits()).collect();
    assert_eq!(common::app::prob_bits(&a), v2_bits);
}

/// The counters a dashboard reads, as text lines (histogram timings differ run to run and are left out).
fn counters(state: &ensemble_serve::serve::http::AppState) -> Vec<String> {
    let keep = [
        "ensemble_serve_requests_total",
        "ensemble_serve_rejected_total",
        "ensemble_serve_routing_decisions_total",
        "ensemble_serve_dropped_total",
        "ensemble_serve_budget_total",
        "ensemble_serve_batch_size_rows_sum",
    ];
    state
        .scorer
        .metrics
        .render()
        .lines()
        .filter(|l| keep.iter().any(|k| l.starts_with(k)))
        .map(str::to_string)
        .collect()
}

/// 20 real rows as a ranking request: its context, its candidates, and the context without `city`.
type RankingCase = (Map<String, Value>, Vec<Map<String, Value>>, Map<String, Value>);
fn ranking_case() -> Option<RankingCase> {
    let (context, candidates) = split_context(&rows(20)?, &CONTEXT);
    let mut no_city = context.clone();
    no_city.remove("city");
    Some((context, candidates, no_city))
}

#[tokio::test]
async fn v1_and_v2_record_identical_metrics_for_identical_outcomes() {
    let Some((context, candidates, no_city)) = ranking_case() else { return };
    let (v1_state, v2_state) = (common::app::shipped(), common::app::shipped());
    let (v1, v2) = (common::app::router(&v1_state), common::app::router(&v2_state));
    // Scored on the ensemble, scored on the best student, a missing field, an unknown model, a dead deadline.
    for (tier, ctx, model) in [
        ("ensemble", &context, "default"),
        ("student", &context, "default"),
        ("ensemble", &no_city, "default"),
        ("ensemble", &context, "nope"),
    ] {
        let body = json!({"context": ctx, "candidates": candidates, "tier": tier, "latency_budget_ms": 1e4});
        let uri = if model == "default" { "/v1/score".to_string() } else { format!("/v1/models/{model}/score") };
        let a = common::app::post(&v1, &uri, &body).await.0;
        let b = common::app::post(&v2, &format!("/v2/models/{model}/infer"), &v2_body(ctx, &candidates, tier)).await.0;
        // The same outcome; KServe v2 answers an invalid request 400 where v1 says 422.
        assert_eq!(if a == 422 { 400 } else { a }, b, "same outcome, the protocol's status");
    }
    let late = [("x-request-timeout-ms", "0")];
    let body = json!({"context": context, "candidates": candidates});
    common::app::send(&v1, "POST", "/v1/score", Some(&body), &late).await;
    common::app::send(&v2, "POST", "/v2/models/default/infer", Some(&v2_body(&context, &candidates, "auto")), &late)
        .await;
    assert_eq!(counters(&v1_state), counters(&v2_state));
    assert!(counters(&v1_state).iter().all(|l| !l.contains("nope")), "an unknown name is no label");
    assert!(
        counters(&v1_state).iter().any(|l| l.contains("reason=\"deadline_exceeded\"} 1")),
        "{:?}",
        counters(&v1_state)
    );
}

#[tokio::test]
async fn v1_and_grpc_record_identical_metrics_for_identical_outcomes() {
    let Some((context, candidates, no_city)) = ranking_case() else { return };
    let (v1_state, grpc_state) = (common::app::shipped(), common::app::shipped());
    let v1 = common::app::router(&v1_state);
    let router = ensemble_serve::serve::grpc::router(grpc_state.clone(), 16 << 20);
    let mut grpc = GrpcInferenceServiceClient::with_origin(router, "http://in-process".parse().unwrap());
    let late = [("x-request-timeout-ms", "0")];
    // Scored twice, a missing field, an unknown model, a dead deadline: the same outcome, gRPC's code for it.
    for (tier, ctx, model, headers) in [
        ("ensemble", &context, "default", &[][..]),
        ("student", &context, "default", &[]),
        ("ensemble", &no_city, "default", &[]),
        ("ensemble", &context, "nope", &[]),
        ("auto", &context, "default", &late),
    ] {
        let body = json!({"context": ctx, "candidates": candidates, "tier": tier, "latency_budget_ms": 1e4});
        let uri = if model == "default" { "/v1/score".to_string() } else { format!("/v1/models/{model}/score") };
        let (status, _) = common::app::send(&v1, "POST", &uri, Some(&body), headers).await;
        let mut call = tonic::Request::new(ModelInferRequest {
            model_name: model.into(),
            ..common::grpc::infer_request(ctx, &candidates, tier)
        });
        for (k, v) in headers {
            call.metadata_mut().insert(*k, v.parse().unwrap());
        }
        let code = grpc.model_infer(call).await.map_or_else(|s| s.code(), |_| tonic::Code::Ok);
        let want = match status {
            200 => tonic::Code::Ok,
            404 => tonic::Code::NotFound,
            422 => tonic::Code::InvalidArgument,
            504 => tonic::Code::DeadlineExceeded,
            other => panic!("unexpected v1 status {other}"),
        };
        assert_eq!(code, want, "v1 said {status}");
    }
    assert_eq!(counters(&v1_state), counters(&grpc_state));
    assert!(
        counters(&grpc_state).iter().any(|l| l.contains("model=\"\",status=\"404\"")),
        "{:?}",
        counters(&grpc_state)
    );
    assert!(counters(&grpc_state).iter().all(|l| !l.contains("nope")), "an unknown name is no label");
}

#[tokio::test]
async fn a_deadline_that_passed_on_arrival_is_a_504_and_runs_no_rows() {
    let Some(rows) = rows(165) else { return };
    let state = common::app::shipped();
    let router = common::app::router(&state);
    let (context, candidates) = split_context(&rows, &CONTEXT);
    let rows_before = common::app::metric_sum(&state, "ensemble_serve_batch_size_rows_sum");
    let body = json!({"context": context, "candidates": candidates, "timeout_ms": 0});
    let (status, v) = common::app::post(&router, "/v1/score", &body).await;
    assert_eq!((status, v["error"]["code"].as_str()), (504, Some("deadline_exceeded")), "{v}");
    let header = [("x-request-timeout-ms", "0")];
    let body = json!({"context": context, "candidates": candidates});
    let (status, _) = common::app::send(&router, "POST", "/v1/score", Some(&body), &header).await;
    assert_eq!(status, 504);
    assert_eq!(common::app::metric_sum(&state, "ensemble_serve_batch_size_rows_sum"), rows_before);
    let (status, v) =
        common::app::send(&router, "POST", "/v1/score", Some(&body), &[("x-request-timeout-ms", "soon")]).await;
    assert_eq!((status, v["error"]["code"].as_str()), (422, Some("invalid_timeout")), "{v}");
}

/// KServe v2 server metadata, and the model addressed by its version: metadata, readiness and infer on the
/// loaded version answer as the unversioned routes do; another version is a 404 in the protocol's shape.
#[tokio::test]
async fn kserve_v2_server_metadata_and_versioned_routes() {
    let Some(rows) = rows(30) else { return };
    let router = common::app::router(&common::app::shipped());
    let (status, server) = common::app::send(&router, "GET", "/v2", None, &[]).await;
    assert_eq!((status, server["name"].as_str()), (200, Some("ensemble-serve")), "{server}");

    let (_, model) = common::app::send(&router, "GET", "/v2/models/default", None, &[]).await;
    let version = model["versions"][0].as_str().expect("a version").to_string();
    assert!(model["inputs"].as_array().unwrap().iter().all(|i| i["shape"] == json!([-1, 1])), "{model}");
    let versioned = format!("/v2/models/default/versions/{version}");
    assert_eq!(common::app::send(&router, "GET", &versioned, None, &[]).await, (200, model));
    let (status, ready) = common::app::send(&router, "GET", &format!("{versioned}/ready"), None, &[]).await;
    assert_eq!((status, ready["ready"].as_bool()), (200, Some(true)));

    let (context, candidates) = split_context(&rows, &CONTEXT);
    let body = v2_body(&context, &candidates, "ensemble");
    let (s1, plain) = common::app::post(&router, "/v2/models/default/infer", &body).await;
    let (s2, named) = common::app::post(&router, &format!("{versioned}/infer"), &body).await;
    assert_eq!((s1, s2), (200, 200), "{named}");
    assert_eq!(plain["outputs"], named["outputs"]);

    let (status, err) = common::app::post(&router, "/v2/models/default/versions/0/infer", &body).await;
    assert_eq!(status, 404, "{err}");
    assert!(err["error"].as_str().is_some_and(|m| m.contains("version 0")), "{err}");
}
