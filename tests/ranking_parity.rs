//! Ranking requests (`context` + `candidates`) score bit for bit like the equivalent `instances` requests,
//! on every test row of frappe_ctr (the shipped model; user and context fields as context) and ml100k_ctr
//! (a model trained and exported here; user fields as context), through the HTTP router without a socket.
#![cfg(feature = "train")]
mod common;

use std::collections::HashMap;
use std::sync::Arc;

use ensemble_serve::config::ServerConfig;
use ensemble_serve::data::instances::{read_instances, split_context};
use ensemble_serve::serve::http::AppState;
use serde_json::{json, Map, Value};

type Row = Map<String, Value>;

/// Test rows grouped by their context fields (groups in order of first appearance, rows in file order),
/// each group cut into requests of at most `max` rows.
fn ranking_groups(rows: &[Row], context: &[&str], max: usize) -> Vec<Vec<Row>> {
    let mut index: HashMap<Vec<String>, usize> = HashMap::new();
    let mut groups: Vec<Vec<Row>> = Vec::new();
    for r in rows {
        let key: Vec<String> = context.iter().map(|f| r[*f].to_string()).collect();
        let next = groups.len();
        let g = *index.entry(key).or_insert(next);
        if g == next {
            groups.push(Vec::new());
        }
        groups[g].push(r.clone());
    }
    groups.into_iter().flat_map(|g| g.chunks(max).map(<[Row]>::to_vec).collect::<Vec<_>>()).collect()
}

/// Every group as `instances` and as `context` + `candidates`, on `tier`: the same bits, in order.
async fn assert_parity(state: &Arc<AppState>, rows: &[Row], context: &[&str], tier: &str) -> usize {
    let router = common::app::router(state);
    let groups = ranking_groups(rows, context, 1024);
    let mut compared = 0;
    for group in &groups {
        let (ctx, candidates) = split_context(group, context);
        let plain = json!({"instances": group, "tier": tier, "latency_budget_ms": 1e4});
        let ranking = json!({"context": ctx, "candidates": candidates, "tier": tier, "latency_budget_ms": 1e4});
        let (s1, a) = common::app::post(&router, "/v1/score", &plain).await;
        let (s2, b) = common::app::post(&router, "/v1/score", &ranking).await;
        assert_eq!((s1, s2), (200, 200), "{a} {b}");
        assert_eq!(common::app::prob_bits(&a), common::app::prob_bits(&b), "group of {} rows", group.len());
        compared += group.len();
    }
    assert_eq!(compared, rows.len());
    groups.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frappe_context_requests_match_instances_bit_for_bit_on_every_test_row() {
    let data = require_data!();
    let spec = common::spec("frappe_ctr", &data);
    let rows = read_instances(&spec, ensemble_serve::data::Split::Test, None).unwrap().objects;
    assert_eq!(rows.len(), 28_862);
    let state = common::app::shipped();
    let context = ["user", "daytime", "weekday", "isweekend", "homework", "weather", "country", "city"];
    for tier in ["ensemble", "student"] {
        let requests = assert_parity(&state, &rows, &context, tier).await;
        eprintln!("frappe {tier}: {} rows in {requests} ranking requests, bit-identical", rows.len());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ml100k_user_context_requests_match_instances_bit_for_bit_on_every_test_row() {
    let data = require_data!();
    let spec = common::spec("ml100k_ctr", &data);
    let tmp = tempfile::tempdir().unwrap();
    common::trained::small_kdef(&spec, tmp.path(), 5);
    let models = tmp.path().join("models");
    let state = common::app::state(models, ServerConfig::default());
    let rows = read_instances(&spec, ensemble_serve::data::Split::Test, None).unwrap().objects;
    assert_eq!(rows.len(), 7_286);
    let requests = assert_parity(&state, &rows, &["UserID", "Gender", "Age", "Occupation"], "ensemble").await;
    eprintln!("ml100k ensemble: {} rows in {requests} ranking requests, bit-identical", rows.len());
}
