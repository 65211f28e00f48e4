//! The load tests' peers (load-tests/peers/: FastAPI + onnxruntime, and Triton through PyTriton) encode raw
//! values exactly as this server does: on 2,000 real frappe_ctr test rows, through each server's HTTP API,
//! both tiers of the shipped model give the same probabilities as `serve run`.
mod common;

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::server::{post, Server};
use serde_json::{json, Map, Value};

const ROWS: usize = 2_000;
const ROWS_PER_REQUEST: usize = 250;

/// A peer process in its own process group (Triton's server and stubs are grandchildren), killed whole.
struct Peer {
    child: Child,
    base: String,
    log: tempfile::NamedTempFile,
}

impl Peer {
    fn start(python: &Path, script: &str, port_flags: &[&str], ready: &[&str]) -> Self {
        let port = free_port();
        let mut cmd = Command::new(python);
        cmd.current_dir(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("load-tests/peers"))
            .arg(script)
            .args([port_flags[0], &port.to_string()]);
        for flag in &port_flags[1..] {
            cmd.args([*flag, &free_port().to_string()]);
        }
        let models = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models");
        cmd.arg("--models-dir").arg(models).args(["--model", "default"]);
        let log = tempfile::NamedTempFile::new().unwrap();
        cmd.stdout(Stdio::null()).stderr(log.reopen().unwrap()).process_group(0);
        let peer =
            Self { child: cmd.spawn().expect("peer python starts"), base: format!("http://127.0.0.1:{port}"), log };
        peer.wait_ready(ready);
        peer
    }

    fn wait_ready(&self, paths: &[&str]) {
        let deadline = Instant::now() + Duration::from_secs(120);
        while Instant::now() < deadline {
            let ok = |p: &&str| {
                let url = format!("{}{p}", self.base);
                ensemble_serve::serve::probe::ready(&url, Duration::from_secs(2)).is_ok()
            };
            if paths.iter().all(ok) {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let log = std::fs::read_to_string(self.log.path()).unwrap_or_default();
        panic!("peer not ready after 120 s; its log:\n{log}");
    }
}

impl Drop for Peer {
    /// SIGTERM first (PyTriton then removes its workspace), SIGKILL to what is left after 30 s.
    fn drop(&mut self) {
        let group = -(self.child.id() as libc::pid_t);
        // SAFETY: kill(2) on the process group our child leads.
        unsafe { libc::kill(group, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(100));
        }
        // SAFETY: as above.
        unsafe { libc::kill(group, libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A KServe v2 body: one BYTES input of shape [n, 1] per field.
fn v2_body(fields: &[String], rows: &[Map<String, Value>]) -> Value {
    let input = |f: &String| {
        let data: Vec<&Value> = rows.iter().map(|r| &r[f]).collect();
        json!({"name": f, "shape": [rows.len(), 1], "datatype": "BYTES", "data": data})
    };
    json!({"inputs": fields.iter().map(input).collect::<Vec<_>>()})
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap_or_else(|| panic!("no probabilities in {v}"))
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fastapi_and_triton_peers_score_like_serve() {
    let data_dir = require_data!();
    let Some(python) = common::peers_python() else { return };
    let spec = common::spec("frappe_ctr", &data_dir);
    let (header, rows) = common::read_plain_csv(spec.files.test.as_ref().unwrap());
    let fields: Vec<String> = spec.fields.iter().map(|f| f.name.clone()).collect();
    let objects: Vec<Map<String, Value>> = rows[..ROWS]
        .iter()
        .map(|r| header.iter().zip(r).filter(|(h, _)| fields.contains(h)).map(|(h, v)| (h.clone(), json!(v))).collect())
        .collect();
    let models = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models");
    let ours = Server::start(&models, &[]);
    let fastapi = Peer::start(&python, "fastapi_peer.py", &["--port"], &["/readyz"]);
    let triton = Peer::start(
        &python,
        "triton_peer.py",
        &["--http-port", "--grpc-port", "--metrics-port"],
        &["/v2/models/ensemble/ready", "/v2/models/student/ready"],
    );
    let client = reqwest::Client::new();
    for tier in ["ensemble", "student"] {
        let (mut max_fastapi, mut max_triton, mut compared) = (0f32, 0f32, 0);
        for chunk in objects.chunks(ROWS_PER_REQUEST) {
            let v1 = json!({"instances": chunk, "tier": tier}).to_string();
            let (s, a) = post(&client, &format!("{}/v1/score", ours.base), v1.clone()).await;
            assert_eq!(s, 200, "{a}");
            let ours_p = floats(&a["probabilities"]);
            let (s, a) = post(&client, &format!("{}/v1/score", fastapi.base), v1).await;
            assert_eq!(s, 200, "fastapi: {a}");
            let fastapi_p = floats(&a["probabilities"]);
            let url = format!("{}/v2/models/{tier}/infer", triton.base);
            let (s, a) = post(&client, &url, v2_body(&fields, chunk).to_string()).await;
            assert_eq!(s, 200, "triton: {a}");
            let triton_p = floats(&a["outputs"][0]["data"]);
            assert_eq!((fastapi_p.len(), triton_p.len()), (chunk.len(), chunk.len()));
            let gap = |p: &[f32]| ours_p.iter().zip(p).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            max_fastapi = max_fastapi.max(gap(&fastapi_p));
            max_triton = max_triton.max(gap(&triton_p));
            compared += chunk.len();
        }
        eprintln!("{tier}: {compared} rows, max |Δp| vs serve: fastapi {max_fastapi:e}, triton {max_triton:e}");
        assert_eq!(compared, ROWS);
        assert!(max_fastapi <= 1e-6 && max_triton <= 1e-6, "{tier}: fastapi {max_fastapi}, triton {max_triton}");
    }
}
