//! Deadlines and disconnects against the real server binary on loopback (shipped default model, real
//! frappe rows): while the ensemble's queue is held busy by large requests, requests with a 5 ms timeout are
//! answered 504 at their deadline and never run, and queued requests whose clients hang up run no rows; over
//! gRPC, the client's own deadline (`grpc-timeout`) is held the same way.
mod common;

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::server::Server;
use ensemble_serve::data::instances::read_instances;
use serde_json::{json, Map, Value};

async fn metric(client: &reqwest::Client, base: &str, prefix: &str) -> f64 {
    let text = client.get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap();
    text.lines().filter(|l| l.starts_with(prefix)).filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok()).sum()
}

const ROWS_RUN: &str = "ensemble_serve_batch_size_rows_sum{model=\"default\",tier=\"ensemble\"}";
const FORCED: &str = "ensemble_serve_routing_decisions_total{model=\"default\",reason=\"forced\",tier=\"ensemble\"}";

/// `n` requests of 1,024 rows on the ensemble, each tens of ms of ONNX Runtime: the queue stays busy.
fn hold_busy(base: &str, rows: &[Map<String, Value>], n: usize) -> Vec<tokio::task::JoinHandle<u16>> {
    let body = json!({"instances": rows, "tier": "ensemble", "latency_budget_ms": 1e5}).to_string();
    (0..n)
        .map(|_| {
            let (url, body) = (format!("{base}/v1/score"), body.clone());
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                client
                    .post(url)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            })
        })
        .collect()
}

async fn wait_for(client: &reqwest::Client, base: &str, prefix: &str, want: f64) {
    let until = Instant::now() + Duration::from_secs(20);
    while metric(client, base, prefix).await < want {
        assert!(Instant::now() < until, "{prefix} never reached {want}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Waits for the blockers (all 200), then reports the 20 requests' lateness past their deadline and holds
/// its median to 1 ms.
async fn blockers_then_lateness(blockers: Vec<tokio::task::JoinHandle<u16>>, mut late_ms: Vec<f64>, what: &str) {
    for b in blockers {
        assert_eq!(b.await.unwrap(), 200);
    }
    late_ms.sort_by(f64::total_cmp);
    let (median, max) = (late_ms[late_ms.len() / 2], late_ms[late_ms.len() - 1]);
    eprintln!("{what} answered after their deadline by (client-measured, ms): median {median:.3}, max {max:.3}");
    assert!(median <= 1.0, "median lateness {median:.3} ms: {late_ms:?}");
}

/// 1,024 frappe_ctr test rows as JSON objects.
fn test_rows(data: &std::path::Path) -> Vec<Map<String, Value>> {
    let spec = common::spec("frappe_ctr", data);
    read_instances(&spec, ensemble_serve::data::Split::Test, Some(1024)).unwrap().objects
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_and_disconnects_while_the_queue_is_busy_run_no_rows() {
    let rows = test_rows(&require_data!());
    let server = Server::start(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models"), &[]);
    let (base, client) = (server.base.clone(), reqwest::Client::new());

    // 1. Requests with a 5 ms timeout behind a busy queue: 504 at the deadline, no rows run for them.
    let blockers = hold_busy(&base, &rows, 12);
    wait_for(&client, &base, FORCED, 12.0).await;
    let small = json!({"instances": &rows[..165], "tier": "ensemble", "timeout_ms": 5}).to_string();
    let mut late_ms = Vec::new();
    for _ in 0..20 {
        let sent = Instant::now();
        let r = client.post(format!("{base}/v1/score")).header("content-type", "application/json").body(small.clone());
        let r = r.send().await.unwrap();
        let elapsed = sent.elapsed().as_secs_f64() * 1e3;
        let (status, v): (u16, Value) = (r.status().as_u16(), r.json().await.unwrap());
        assert_eq!((status, v["error"]["code"].as_str()), (504, Some("deadline_exceeded")), "{v}");
        late_ms.push(elapsed - 5.0);
    }
    blockers_then_lateness(blockers, late_ms, "5 ms timeouts").await;
    assert_eq!(metric(&client, &base, ROWS_RUN).await, 12.0 * 1024.0, "only the blockers' rows ran");

    // 2. 100 queued requests whose clients hang up: dropped before running. Counted from here: a 5 ms request
    // above that reached its handler after its deadline was answered before routing and is not in FORCED.
    let forced = metric(&client, &base, FORCED).await;
    let blockers = hold_busy(&base, &rows, 12);
    wait_for(&client, &base, FORCED, forced + 12.0).await;
    let port = base.rsplit(':').next().unwrap().parse::<u16>().unwrap();
    let body = json!({"instances": &rows[..100], "tier": "ensemble"}).to_string();
    let request = format!(
        "POST /v1/score HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut sockets = Vec::new();
    for _ in 0..100 {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.write_all(request.as_bytes()).unwrap();
        sockets.push(s);
    }
    wait_for(&client, &base, FORCED, forced + 12.0 + 100.0).await;
    drop(sockets);
    for b in blockers {
        assert_eq!(b.await.unwrap(), 200);
    }
    let dropped = "ensemble_serve_dropped_total{model=\"default\",reason=\"client_disconnected\",tier=\"ensemble\"}";
    wait_for(&client, &base, dropped, 100.0).await;
    assert_eq!(metric(&client, &base, ROWS_RUN).await, 24.0 * 1024.0, "the hung-up requests ran rows");
}

use ensemble_serve::serve::grpc::proto::{
    grpc_inference_service_client::GrpcInferenceServiceClient, ModelInferRequest,
};

/// A gRPC call of `rows` as typed BYTES contents on the ensemble, `grpc-timeout` in its metadata.
fn grpc_call(rows: &[Map<String, Value>], timeout: &str) -> tonic::Request<ModelInferRequest> {
    let mut call = tonic::Request::new(common::grpc::infer_request(&Map::new(), rows, "ensemble"));
    call.metadata_mut().insert("grpc-timeout", timeout.parse().unwrap());
    call
}

/// gRPC's own deadline (`grpc-timeout`, what tritonclient's `client_timeout` sends) is the request's deadline
/// in the pipeline: behind a busy queue the answer is the pipeline's DEADLINE_EXCEEDED at the deadline,
/// counted as an HTTP one is, and no row runs; a malformed one is INVALID_ARGUMENT naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_timeouts_while_the_queue_is_busy_run_no_rows() {
    let rows = test_rows(&require_data!());
    let grpc_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let grpc = format!("127.0.0.1:{grpc_port}");
    let models = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models");
    let server = Server::start(&models, &["--grpc-bind", &grpc]);
    let (base, client) = (server.base.clone(), reqwest::Client::new());
    // Over a plain HTTP/2 client: tonic's Channel would end each call at its deadline on its own side first.
    // No Nagle: the DATA frame must not wait on the server's delayed ACK of the HEADERS frame (~40 ms).
    let mut tcp = hyper_util::client::legacy::connect::HttpConnector::new();
    tcp.set_nodelay(true);
    let h2 = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build::<_, tonic::body::Body>(tcp);
    let mut grpc = GrpcInferenceServiceClient::with_origin(h2, format!("http://{grpc}").parse().unwrap());

    let ok = grpc.model_infer(grpc_call(&rows[..165], "2S")).await.unwrap().into_inner();
    assert_eq!(ok.outputs[0].shape, [165, 1], "a deadline that holds is answered");
    let (rows_before, timed_out) =
        (metric(&client, &base, ROWS_RUN).await, "ensemble_serve_requests_total{model=\"default\",status=\"504\"");

    let blockers = hold_busy(&base, &rows, 12);
    wait_for(&client, &base, FORCED, 13.0).await;
    let mut late_ms = Vec::new();
    for _ in 0..20 {
        let call = grpc_call(&rows[..165], "5m");
        let sent = Instant::now();
        let status = grpc.model_infer(call).await.unwrap_err();
        late_ms.push(sent.elapsed().as_secs_f64() * 1e3 - 5.0);
        assert_eq!(status.code(), tonic::Code::DeadlineExceeded, "{status:?}");
        assert!(status.message().contains("deadline passed"), "the pipeline's answer: {status:?}");
    }
    blockers_then_lateness(blockers, late_ms, "gRPC 5 ms deadlines").await;
    assert_eq!(metric(&client, &base, ROWS_RUN).await, rows_before + 12.0 * 1024.0, "only the blockers' rows ran");
    assert_eq!(metric(&client, &base, timed_out).await, 20.0, "each counted as a 504, as over HTTP");

    let status = grpc.model_infer(grpc_call(&rows[..165], "1n")).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::DeadlineExceeded, "over on arrival, idle server: {status:?}");
    let rejected = "ensemble_serve_rejected_total{model=\"default\",reason=\"deadline_exceeded\"}";
    assert_eq!(metric(&client, &base, rejected).await, 1.0, "refused before routing");
    assert_eq!(metric(&client, &base, ROWS_RUN).await, rows_before + 12.0 * 1024.0, "and ran nothing");

    let status = grpc.model_infer(grpc_call(&rows[..165], "5x")).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("grpc-timeout '5x'"), "{status:?}");
}
