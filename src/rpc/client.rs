//! The built-in JSON-RPC client behind `noded rpc`: reads the cookie and address from a
//! datadir and makes one HTTP request. Blocking std I/O; it runs once and exits.

use crate::datadir::{read_rpc_endpoint, DataDirError};
use base64::Engine;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{0}; is noded running with this --datadir?")]
    Endpoint(#[from] DataDirError),
    #[error("cannot reach noded at {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("bad response from noded: {0}")]
    BadResponse(String),
    #[error("HTTP {0} from noded: {1}")]
    Http(u16, String),
    #[error("error code {code}: {message}")]
    Rpc { code: i64, message: String },
}

/// Turns command-line words into JSON params: anything that parses as JSON is taken as
/// JSON (numbers, booleans, objects), everything else as a string.
pub fn params_from_args(args: &[String]) -> serde_json::Value {
    serde_json::Value::Array(
        args.iter()
            .map(|a| {
                serde_json::from_str(a).unwrap_or_else(|_| serde_json::Value::String(a.clone()))
            })
            .collect(),
    )
}

/// Calls `method` on the node whose datadir is `datadir`.
pub fn call_datadir(
    datadir: &Path,
    method: &str,
    params: serde_json::Value,
) -> Result<serde_json::Value, ClientError> {
    let (cookie, addr) = read_rpc_endpoint(datadir)?;
    call(addr, &cookie, method, params)
}

/// One JSON-RPC call over HTTP/1.1 with Basic credentials `user:password`.
pub fn call(
    addr: SocketAddr,
    credentials: &str,
    method: &str,
    params: serde_json::Value,
) -> Result<serde_json::Value, ClientError> {
    let body = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
        .to_string();
    let auth = base64::engine::general_purpose::STANDARD.encode(credentials);
    let request = format!(
        "POST / HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Basic {auth}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let connect_err = |source| ClientError::Connect { addr, source };
    let mut stream =
        TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map_err(connect_err)?;
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .map_err(connect_err)?;
    stream.write_all(request.as_bytes()).map_err(connect_err)?;
    let mut response = Vec::new();
    stream
        .take(64 * 1024 * 1024)
        .read_to_end(&mut response)
        .map_err(connect_err)?;
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| ClientError::BadResponse("no HTTP header".into()))?;
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| ClientError::BadResponse("no HTTP status".into()))?;
    if status != 200 {
        return Err(ClientError::Http(status, body.trim().to_string()));
    }
    let reply: serde_json::Value =
        serde_json::from_str(body).map_err(|e| ClientError::BadResponse(e.to_string()))?;
    if let Some(err) = reply.get("error").filter(|e| !e.is_null()) {
        return Err(ClientError::Rpc {
            code: err.get("code").and_then(|c| c.as_i64()).unwrap_or(0),
            message: err
                .get("message")
                .and_then(|m| m.as_str())
                .unwrap_or("")
                .to_string(),
        });
    }
    Ok(reply
        .get("result")
        .cloned()
        .unwrap_or(serde_json::Value::Null))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_become_json_where_they_parse() {
        let p = params_from_args(&["5".into(), "true".into(), "abc".into(), "{\"a\":1}".into()]);
        assert_eq!(p, serde_json::json!([5, true, "abc", {"a": 1}]));
    }
}
