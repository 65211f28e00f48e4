//! `serve health`: one plain-HTTP GET, success on status 200. Hand-rolled (a dozen lines) so the serving
//! image needs neither curl nor an HTTP client crate.
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

pub fn ready(url: &str, timeout: Duration) -> Result<(), String> {
    let rest = url.strip_prefix("http://").ok_or_else(|| format!("{url}: only http:// URLs are probed"))?;
    let (host, path) = match rest.split_once('/') {
        Some((h, p)) => (h, format!("/{p}")),
        None => (rest, "/".to_string()),
    };
    let addr =
        host.to_socket_addrs().map_err(|e| format!("{host}: {e}"))?.next().ok_or(format!("{host}: no address"))?;
    let mut s = TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("{url}: {e}"))?;
    s.set_read_timeout(Some(timeout)).and_then(|_| s.set_write_timeout(Some(timeout))).map_err(|e| e.to_string())?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).map_err(|e| format!("{url}: {e}"))?;
    let mut answer = String::new();
    let _ = s.take(4096).read_to_string(&mut answer);
    let status = answer.lines().next().unwrap_or("");
    match status.split_whitespace().nth(1) {
        Some("200") => Ok(()),
        _ => Err(format!("{url}: not ready ({})", if status.is_empty() { "no answer" } else { status })),
    }
}
