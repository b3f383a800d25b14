//! The JSON-RPC server's hardening, through the binary as an operator meets it: batch and
//! body limits, and the throttle on failed logins.

mod common;

use base64::Engine;
use common::*;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

/// The documented batch limit (docs/OPERATIONS.md, "Limits").
const DOCUMENTED_MAX_BATCH: usize = 1_000;

/// The documented body limit: a 4 MiB block's hex for submitblock plus 64 KiB for the envelope.
const DOCUMENTED_MAX_BODY: usize = 2 * 4 * 1024 * 1024 + 64 * 1024;

/// The documented failed logins one address may make per minute before it is throttled.
const DOCUMENTED_MAX_AUTH_FAILURES: usize = 5;

/// One HTTP POST of `body` with Basic `credentials` (none when `None`); returns the status and
/// the body of the reply.
fn post(addr: SocketAddr, credentials: Option<&str>, body: &[u8]) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).expect("connect to RPC");
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    let auth = credentials
        .map(|c| {
            format!(
                "Authorization: Basic {}\r\n",
                base64::engine::general_purpose::STANDARD.encode(c)
            )
        })
        .unwrap_or_default();
    let head = format!(
        "POST / HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    // The server may answer (413) and close before it has read a large body.
    let _ = stream.write_all(body);
    let mut reply = Vec::new();
    let _ = stream.read_to_end(&mut reply);
    let reply = String::from_utf8_lossy(&reply).into_owned();
    let (head, body) = reply.split_once("\r\n\r\n").expect("an HTTP reply");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("an HTTP status");
    (status, body.to_string())
}

/// Defect 7: a batch longer than the limit gets one clear error instead of being answered in
/// full; a batch at the limit is answered.
#[test]
fn rpc_limits_batch_length() {
    let node = TestNode::start(&[]);
    let batch = |n: usize| {
        let calls: Vec<Value> = (0..n)
            .map(|i| json!({"jsonrpc": "2.0", "id": i, "method": "getblockcount"}))
            .collect();
        serde_json::to_vec(&calls).unwrap()
    };
    let (status, body) = post(
        node.rpc_addr,
        Some(&node.cookie),
        &batch(DOCUMENTED_MAX_BATCH),
    );
    assert_eq!(status, 200);
    let answers: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answers.as_array().unwrap().len(), DOCUMENTED_MAX_BATCH);

    for n in [DOCUMENTED_MAX_BATCH + 1, 100_000] {
        let (status, body) = post(node.rpc_addr, Some(&node.cookie), &batch(n));
        let reply: Value = serde_json::from_str(&body).unwrap();
        assert!(
            reply.is_object(),
            "a batch of {n} was answered in full (HTTP {status}, {} answers)",
            reply.as_array().map_or(0, Vec::len)
        );
        assert_eq!(reply["error"]["code"], -32010, "{reply}");
        let data = reply["error"]["data"].as_str().unwrap_or_default();
        assert!(data.contains(&DOCUMENTED_MAX_BATCH.to_string()), "{reply}");
    }
}

/// Defect 7: a body over the limit gets HTTP 413 with a JSON-RPC error; the largest legitimate
/// request (submitblock of a maximum-size block) still gets through to the method.
#[test]
fn rpc_limits_body_size() {
    let node = TestNode::start(&[]);
    let submit = |hex_len: usize| {
        format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"submitblock","params":["{}"]}}"#,
            "0".repeat(hex_len)
        )
        .into_bytes()
    };
    // A 4 MiB block's hex: the method answers (the bytes are no block).
    let (status, body) = post(node.rpc_addr, Some(&node.cookie), &submit(8 * 1024 * 1024));
    assert_eq!(status, 200, "{body}");
    let reply: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(reply["error"]["code"], -22, "{reply}");

    let (status, body) = post(
        node.rpc_addr,
        Some(&node.cookie),
        &submit(DOCUMENTED_MAX_BODY + 1),
    );
    assert_eq!(status, 413, "{body}");
    let reply: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(reply["error"]["code"], -32007, "{reply}");
}

/// Defect 7: failed logins from one address are throttled (HTTP 429) after a few, while the
/// right credentials from the same address are still served.
#[test]
fn rpc_limits_failed_auth_throttled() {
    let node = TestNode::start(&[]);
    let body = br#"{"jsonrpc":"2.0","id":1,"method":"getblockcount"}"#;
    let wrong = "__cookie__:0000";
    for attempt in 0..DOCUMENTED_MAX_AUTH_FAILURES {
        let (status, _) = post(node.rpc_addr, Some(wrong), body);
        assert_eq!(status, 401, "attempt {attempt}");
    }
    let (status, reply) = post(node.rpc_addr, Some(wrong), body);
    assert_eq!(status, 429, "{reply}");
    let (status, _) = post(node.rpc_addr, None, body);
    assert_eq!(status, 429, "no credentials count as failed too");

    let (status, reply) = post(node.rpc_addr, Some(&node.cookie), body);
    assert_eq!(status, 200, "{reply}");
    let reply: Value = serde_json::from_str(&reply).unwrap();
    assert_eq!(reply["result"], 0);
}
