//! The OpenAPI document in-process (`oneshot`) on the shipped models: each loaded model's paths carry its
//! own fields and tiers, every example the document gives is answered 200, and the request rules the
//! document states (decimal millisecond headers, one tensor per field, boolean `binary_data_output`,
//! canonical tier names) are the ones the server applies.
mod common;

use serde_json::{json, Value};

async fn document(router: &axum::Router) -> Value {
    let (status, doc) = common::app::send(router, "GET", "/openapi.json", None, &[]).await;
    assert_eq!(status, 200);
    doc
}

#[tokio::test]
async fn each_model_has_paths_with_its_own_fields_and_tiers() {
    let state = common::app::shipped();
    let doc = document(&common::app::router(&state)).await;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"), "{}", doc["openapi"]);
    let models = state.scorer.registry.models.load();
    assert!(models.len() >= 2, "the shipped models");
    for (name, m) in models.iter() {
        for path in ["/v1/models/{m}/score", "/v2/models/{m}", "/v2/models/{m}/ready", "/v2/models/{m}/config"]
            .into_iter()
            .chain(["/v2/models/{m}/infer", "/v2/models/{m}/versions/{v}/infer", "/v2/models/{m}/versions/{v}/ready"])
        {
            let path = path.replace("{m}", name).replace("{v}", &m.version);
            assert!(doc["paths"][&path].is_object(), "{path} is documented");
        }
        let score = &doc["components"]["schemas"][format!("{name}.InstancesRequest")];
        let fields: Vec<&str> = m.artifact.encoder.fields.iter().map(|f| f.spec.name.as_str()).collect();
        assert_eq!(doc["components"]["schemas"][format!("{name}.Row")]["required"], json!(fields), "{name}");
        assert_eq!(score["properties"]["instances"]["maxItems"], json!(state.scorer.limits.max_instances));
        let tiers = score["properties"]["tier"]["enum"].as_array().unwrap();
        for t in &m.tiers {
            assert!(tiers.contains(&json!(t.label)), "{name}: tier {} is in the enum", t.label);
        }
        let infer = &doc["components"]["schemas"][format!("{name}.InferRequest")];
        assert_eq!(infer["properties"]["inputs"]["prefixItems"].as_array().unwrap().len(), fields.len());
    }
    for path in ["/healthz", "/readyz", "/metrics", "/openapi.json", "/admin/reload", "/v2", "/v2/health/live"] {
        assert!(doc["paths"][path].is_object(), "{path} is documented");
    }
}

#[tokio::test]
async fn every_example_in_the_document_is_scored() {
    let state = common::app::shipped();
    let router = common::app::router(&state);
    let doc = document(&router).await;
    let mut scored = 0;
    for name in state.scorer.registry.models.load().keys() {
        for (schema, path) in
            [("ScoreRequest", format!("/v1/models/{name}/score")), ("InferRequest", format!("/v2/models/{name}/infer"))]
        {
            let examples = doc["components"]["schemas"][format!("{name}.{schema}")]["examples"].as_array().unwrap();
            for example in examples {
                let (status, answer) = common::app::post(&router, &path, example).await;
                assert_eq!(status, 200, "{path} {example}: {answer}");
                scored += 1;
            }
        }
    }
    assert!(scored >= 4, "an example per model and protocol");
}

#[tokio::test]
async fn the_documented_request_rules_are_the_ones_applied() {
    let state = common::app::shipped();
    let router = common::app::router(&state);
    let doc = document(&router).await;
    let example = doc["components"]["schemas"]["default.InferRequest"]["examples"][0].clone();
    let v1 = doc["components"]["schemas"]["default.ScoreRequest"]["examples"][0].clone();
    let pattern = doc["paths"]["/v1/score"]["post"]["parameters"][0]["schema"]["pattern"].clone();
    assert_eq!(pattern, json!(r"^[0-9]{1,15}(\.[0-9]{1,15})?$"));
    for (value, status) in
        [("25", 200), ("2.5", 200), ("1e3", 422), ("-1", 422), (" 5", 422), ("1234567890123456", 422)]
    {
        let got = common::app::send(&router, "POST", "/v1/score", Some(&v1), &[("x-latency-budget-ms", value)]).await;
        assert_eq!(got.0, status, "X-Latency-Budget-Ms: {value:?} → {}", got.1);
    }
    let mut twice = example.clone();
    let first = twice["inputs"][0].clone();
    twice["inputs"].as_array_mut().unwrap().push(first);
    let (status, v) = common::app::post(&router, "/v2/models/default/infer", &twice).await;
    assert_eq!((status, v["error"].as_str().unwrap()), (400, "input 'user' is given twice"));
    let mut not_bool = example.clone();
    not_bool["parameters"] = json!({"binary_data_output": "yes"});
    let (status, v) = common::app::post(&router, "/v2/models/default/infer", &not_bool).await;
    assert_eq!(status, 400, "{v}");
    let mut padded = v1.clone();
    padded["tier"] = json!("student:01");
    let (status, v) = common::app::post(&router, "/v1/score", &padded).await;
    assert_eq!((status, v["error"]["code"].as_str()), (422, Some("invalid_tier")), "{v}");
}
