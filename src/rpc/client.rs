//! The built-in JSON-RPC client behind `noded rpc`: reads the cookie and address from a
//! datadir (or takes them as bitcoin-cli's `-rpcconnect/-rpcport/-rpcuser/-rpcpassword`) and
//! makes one HTTP request. Blocking std I/O; it runs once and exits.

use crate::datadir::{read_rpc_endpoint, DataDirError};
use base64::Engine;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::Path;
use std::time::Duration;

/// How long to wait for the node to accept the connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long to wait for an answer, as bitcoin-cli's `-rpcclienttimeout` default: longer than
/// the longest call that waits on purpose (`waitfornewblock`, at most 10 minutes).
pub const READ_TIMEOUT: Duration = Duration::from_secs(900);
/// Largest answer read: above the server's response limit, so an answer is never cut.
pub const MAX_RESPONSE: u64 = 64 * 1024 * 1024;

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
    #[error("error code {code}: {message}{}", data_suffix(.data))]
    Rpc {
        code: i64,
        message: String,
        /// The server's detail, e.g. which parameter did not parse and why.
        data: Option<serde_json::Value>,
    },
    #[error("cannot resolve --rpcconnect '{0}'")]
    Resolve(String),
}

/// JSON-RPC's "invalid params" code: the client then also shows the method's usage.
pub const INVALID_PARAMS: i64 = -32602;

fn data_suffix(data: &Option<serde_json::Value>) -> String {
    match data {
        None | Some(serde_json::Value::Null) => String::new(),
        Some(serde_json::Value::String(s)) => format!(": {s}"),
        Some(other) => format!(": {other}"),
    }
}

/// Where and how to reach a node given bitcoin-cli's flags: `connect` is a host or
/// host:port; `port` overrides its port. Without a port anywhere, the node's default RPC
/// port for `default_port`.
pub fn resolve_addr(
    connect: Option<&str>,
    port: Option<u16>,
    default_port: u16,
) -> Result<SocketAddr, ClientError> {
    let host = connect.unwrap_or("127.0.0.1");
    let with_port = |h: &str, p: u16| {
        (h, p)
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .ok_or_else(|| ClientError::Resolve(host.to_string()))
    };
    if let Ok(addr) = host.parse::<SocketAddr>() {
        return Ok(SocketAddr::new(addr.ip(), port.unwrap_or(addr.port())));
    }
    if let Some((h, p)) = host.rsplit_once(':').filter(|(h, _)| !h.contains(':')) {
        if let Ok(p) = p.parse::<u16>() {
            return with_port(h, port.unwrap_or(p));
        }
    }
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    with_port(bare, port.unwrap_or(default_port))
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
    let mut stream = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT).map_err(connect_err)?;
    stream
        .set_read_timeout(Some(READ_TIMEOUT))
        .map_err(connect_err)?;
    stream.write_all(request.as_bytes()).map_err(connect_err)?;
    let mut response = Vec::new();
    stream
        .take(MAX_RESPONSE)
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
            data: err.get("data").cloned(),
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

    #[test]
    fn rpcconnect_takes_a_host_an_address_or_either_with_a_port() {
        let a = |c: Option<&str>, p: Option<u16>| resolve_addr(c, p, 8332).unwrap().to_string();
        assert_eq!(a(None, None), "127.0.0.1:8332");
        assert_eq!(a(Some("127.0.0.1"), Some(9)), "127.0.0.1:9");
        assert_eq!(a(Some("127.0.0.1:7"), None), "127.0.0.1:7");
        assert_eq!(a(Some("127.0.0.1:7"), Some(9)), "127.0.0.1:9");
        assert_eq!(a(Some("::1"), Some(9)), "[::1]:9");
        assert_eq!(a(Some("localhost"), Some(9)).rsplit(':').next(), Some("9"));
    }

    #[test]
    fn rpc_errors_show_the_servers_data() {
        let e = ClientError::Rpc {
            code: -32602,
            message: "Invalid params".into(),
            data: Some(serde_json::json!(
                "invalid type: string \"one\", expected u64"
            )),
        };
        assert_eq!(
            e.to_string(),
            "error code -32602: Invalid params: invalid type: string \"one\", expected u64"
        );
    }
}
