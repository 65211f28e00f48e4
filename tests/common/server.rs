//! A real `serve run` process on loopback, and small HTTP helpers, for the end-to-end tests.
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub struct Server {
    pub child: Child,
    pub base: String,
    pub log: tempfile::NamedTempFile,
}

impl Server {
    pub fn start(models: &Path, extra: &[&str]) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_serve"));
        cmd.args(["run", "--bind", &format!("127.0.0.1:{port}")])
            .arg("--models-dir")
            .arg(models)
            .args(extra)
            .args(if extra.contains(&"--config") { &[][..] } else { &["--config", "/nonexistent.toml"][..] })
            .env("SERVE_LOG_FORMAT", "text")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null());
        let log = tempfile::NamedTempFile::new().unwrap();
        cmd.stderr(log.reopen().unwrap());
        let child = cmd.spawn().unwrap();
        let s = Self { child, base: format!("http://127.0.0.1:{port}"), log };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if ready(port) {
                return s;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("server did not become ready");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A blocking readiness probe (no async runtime needed).
pub fn ready(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.write_all(b"GET /readyz HTTP/1.0\r\nHost: localhost\r\n\r\n");
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    answer.starts_with("HTTP/1.0 200") || answer.starts_with("HTTP/1.1 200")
}

pub async fn post(client: &reqwest::Client, url: &str, body: impl Into<reqwest::Body>) -> (u16, Value) {
    let r = client.post(url).header("content-type", "application/json").body(body).send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or_else(|_| panic!("non-JSON answer ({status}): {text}")))
}
