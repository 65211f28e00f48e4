//! Deployment files against the real server: every metric the Grafana dashboard queries is exported by a
//! live `serve` on the shipped model, every Kubernetes manifest passes kubernetes-validate --strict, and the
//! ServiceMonitor (a CRD kubernetes-validate has no schema for) passes the Prometheus operator's CRD schema
//! (npm @kubernetes-models/prometheus-operator) and selects the Service.
mod common;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn venv_bin(tool: &str) -> PathBuf {
    let bin = ensemble_serve::paths::cache_dir().join("pyenv/bin").join(tool);
    assert!(bin.exists(), "{} missing: run scripts/setup", bin.display());
    bin
}

/// Metric names in the dashboard's PromQL, histogram suffixes removed.
fn dashboard_metrics() -> BTreeSet<String> {
    let text = std::fs::read_to_string(root().join("deploy/grafana/dashboard.json")).unwrap();
    let dash: serde_json::Value = serde_json::from_str(&text).expect("dashboard.json parses");
    let mut exprs = Vec::new();
    for p in dash["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().unwrap() {
            exprs.push(t["expr"].as_str().unwrap().to_string());
        }
    }
    exprs.push(dash["templating"]["list"][1]["query"].as_str().unwrap().to_string());
    let mut names = BTreeSet::new();
    for e in &exprs {
        for (i, _) in e.match_indices("ensemble_serve_") {
            let name: String = e[i..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .fold(name.clone(), |n, s| n.strip_suffix(s).unwrap_or(&n).to_string());
            names.insert(base);
        }
    }
    names
}

#[test]
fn dashboard_queries_name_metrics_the_server_exports() {
    let wanted = dashboard_metrics();
    assert!(wanted.len() >= 8, "dashboard names too few metrics: {wanted:?}");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_serve"))
        .args(["run", "--models-dir", "models", "--bind", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let start = Instant::now();
    while ensemble_serve::serve::probe::ready(&format!("{base}/readyz"), Duration::from_secs(1)).is_err() {
        assert!(start.elapsed() < Duration::from_secs(60), "server not ready");
        std::thread::sleep(Duration::from_millis(100));
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    let metrics = rt.block_on(async {
        let c = reqwest::Client::new();
        // One scored request so the per-request series exist; rejections and budgets are pre-created at zero.
        let (header, rows) = match common::data_dir() {
            Some(d) => common::read_plain_csv(&common::spec("frappe_ctr", &d).files.test.unwrap()),
            None => (vec![], vec![]),
        };
        if let Some(row) = rows.first() {
            let inst: serde_json::Map<String, serde_json::Value> =
                header.iter().zip(row).skip(1).map(|(k, v)| (k.clone(), v.clone().into())).collect();
            let r = c
                .post(format!("{base}/v1/score"))
                .json(&serde_json::json!({"instances": [inst]}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
        }
        c.get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap()
    });
    let _ = Command::new("kill").arg(child.id().to_string()).status();
    let _ = child.wait();
    let exported: BTreeSet<String> = metrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| l.split_whitespace().next().unwrap().to_string())
        .collect();
    let missing: Vec<_> = wanted.difference(&exported).collect();
    assert!(
        missing.is_empty(),
        "dashboard queries metrics the server does not export: {missing:?}\nexported: {exported:?}"
    );
}

#[test]
fn kubernetes_manifests_validate() {
    let dir = root().join("deploy/kubernetes");
    let manifests = ["configmap.yaml", "deployment.yaml", "service.yaml", "hpa.yaml", "prometheus-adapter-rules.yaml"];
    let out = Command::new(venv_bin("kubernetes-validate"))
        .arg("--strict")
        .args(manifests.iter().map(|m| dir.join(m)))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "kubernetes-validate failed:\n{text}");
    assert_eq!(text.matches(" passed for resource ").count(), manifests.len(), "{text}");
    // The ServiceMonitor must select the Service's labels and scrape a port the Service names.
    let check = r#"
import sys, yaml
d = sys.argv[1]
sm = yaml.safe_load(open(f"{d}/servicemonitor.yaml")); svc = yaml.safe_load(open(f"{d}/service.yaml"))
dep = yaml.safe_load(open(f"{d}/deployment.yaml"))
assert sm["apiVersion"] == "monitoring.coreos.com/v1" and sm["kind"] == "ServiceMonitor"
sel = sm["spec"]["selector"]["matchLabels"]
assert all(svc["metadata"]["labels"].get(k) == v for k, v in sel.items()), "ServiceMonitor selects no Service"
ports = {p["name"] for p in svc["spec"]["ports"]}
assert all(e["port"] in ports and e["path"] == "/metrics" for e in sm["spec"]["endpoints"]), "scrape port/path"
c = dep["spec"]["template"]["spec"]["containers"][0]
assert dep["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > 2 + c["lifecycle"]["preStop"]["sleep"]["seconds"]
print("servicemonitor ok")
"#;
    let out = Command::new(venv_bin("python")).args(["-c", check]).arg(&dir).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// Validates a ServiceMonitor document with the operator's CRD schema (ajv, run by node in the setup cache).
fn crd_check(doc: &str) -> std::process::Output {
    let script = r#"
import * as yaml from "js-yaml";
import { ServiceMonitor } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor";
new ServiceMonitor(yaml.load(process.argv[1])).validate();
console.log("ServiceMonitor valid");
"#;
    let cwd = ensemble_serve::paths::cache_dir().join("node-validators");
    assert!(cwd.join("node_modules").is_dir(), "{} missing: run scripts/setup", cwd.display());
    Command::new("node").current_dir(cwd).args(["--input-type=module", "-e", script, doc]).output().unwrap()
}

#[test]
fn service_monitor_passes_its_crd_schema() {
    let doc = std::fs::read_to_string(root().join("deploy/kubernetes/servicemonitor.yaml")).unwrap();
    let out = crd_check(&doc);
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    // The schema check can fail: a numeric port is not a port name.
    let broken = doc.replace("- port: http", "- port: 8080");
    assert_ne!(broken, doc);
    assert!(!crd_check(&broken).status.success(), "a ServiceMonitor with a numeric port passed the schema");
}
