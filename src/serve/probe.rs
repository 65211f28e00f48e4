//! `serve health`: one plain-HTTP GET, success on status 200. Hand-rolled (a dozen lines) so the serving
//! image needs neither curl nor an HTTP client crate.
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("{0}: only http:// URLs are probed")]
    Scheme(String),
    #[error("{host}: {reason}")]
    Address { host: String, reason: String },
    #[error("{url}: {error}")]
    Io { url: String, error: std::io::Error },
    #[error("{url}: not ready ({status})")]
    NotReady { url: String, status: String },
}

pub fn ready(url: &str, timeout: Duration) -> Result<(), ProbeError> {
    let rest = url.strip_prefix("http://").ok_or_else(|| ProbeError::Scheme(url.into()))?;
    let (host, path) = match rest.split_once('/') {
        Some((h, p)) => (h, format!("/{p}")),
        None => (rest, "/".to_string()),
    };
    let address = |reason: String| ProbeError::Address { host: host.into(), reason };
    let addr =
        host.to_socket_addrs().map_err(|e| address(e.to_string()))?.next().ok_or(address("no address".into()))?;
    let io = |error| ProbeError::Io { url: url.into(), error };
    let mut s = TcpStream::connect_timeout(&addr, timeout).map_err(io)?;
    s.set_read_timeout(Some(timeout)).and_then(|_| s.set_write_timeout(Some(timeout))).map_err(io)?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).map_err(io)?;
    let mut answer = String::new();
    let _ = s.take(4096).read_to_string(&mut answer);
    let status = answer.lines().next().unwrap_or("");
    match status.split_whitespace().nth(1) {
        Some("200") => Ok(()),
        _ => {
            let status = if status.is_empty() { "no answer" } else { status };
            Err(ProbeError::NotReady { url: url.into(), status: status.into() })
        }
    }
}
