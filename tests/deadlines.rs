//! Deadlines and disconnects against the real server binary on loopback (shipped default model, real
//! frappe rows): while the ensemble's queue is held busy by large requests, requests with a 5 ms timeout are
//! answered 504 at their deadline and never run, and queued requests whose clients hang up run no rows.
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_and_disconnects_while_the_queue_is_busy_run_no_rows() {
    let data = require_data!();
    let rows = read_instances(&common::spec("frappe_ctr", &data), ensemble_serve::data::Split::Test, Some(1024))
        .unwrap()
        .objects;
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
    for b in blockers {
        assert_eq!(b.await.unwrap(), 200);
    }
    late_ms.sort_by(f64::total_cmp);
    eprintln!(
        "5 ms timeouts answered after their deadline by (client-measured, ms): median {:.3}, max {:.3}",
        late_ms[10], late_ms[19]
    );
    assert!(late_ms[10] <= 1.0, "median lateness {:.3} ms: {late_ms:?}", late_ms[10]);
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
