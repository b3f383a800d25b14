//! `GET /metrics` on real nodes: two regtest processes on 127.0.0.1 connect, one mines, and
//! both are scraped over plain HTTP without credentials (their RPC servers are on loopback);
//! the exposition text is parsed and the counters checked against what happened.

mod common;

use common::*;
use serde_json::json;
use std::collections::HashMap;

use std::net::SocketAddr;

const BLOCKS: u64 = 5;

/// One sample: metric name, labels, value.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: HashMap<String, String>,
    value: f64,
}

/// Parses the text exposition format: `# ...` lines are metadata, every other non-empty line
/// is `name{label="value",...} value`. Label values here never hold `,`, `"` or `}`.
fn parse_exposition(text: &str) -> Vec<Sample> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').expect("a sample has a value");
            let value: f64 = value
                .parse()
                .unwrap_or_else(|_| panic!("bad value: {line}"));
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => {
                    let body = rest.strip_suffix('}').expect("labels close");
                    let labels = body
                        .split(',')
                        .filter(|pair| !pair.is_empty())
                        .map(|pair| {
                            let (k, v) = pair.split_once('=').expect("label=value");
                            let v = v.strip_prefix('"').and_then(|v| v.strip_suffix('"'));
                            (k.to_string(), v.expect("a quoted value").to_string())
                        })
                        .collect();
                    (name, labels)
                }
                None => (series, HashMap::new()),
            };
            Sample {
                name: name.to_string(),
                labels,
                value,
            }
        })
        .collect()
}

/// The sum of the samples named `name` whose labels include `labels`.
fn sum(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name)
        .filter(|s| {
            labels
                .iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
        .sum()
}

/// `GET path` over HTTP/1.1 with optional Basic credentials: the status and body.
fn http_get(addr: SocketAddr, path: &str, cookie: Option<&str>) -> (u16, String) {
    http_request(addr, "GET", path, cookie, "text/plain", b"")
}

/// Scrapes `node` without credentials and parses the answer (which must be 200).
fn scrape(node: &TestNode) -> Vec<Sample> {
    let (status, body) = http_get(node.rpc_addr, "/metrics", None);
    assert_eq!(status, 200, "{body}");
    parse_exposition(&body)
}

#[test]
fn two_connected_nodes_expose_their_traffic_peers_and_chain_on_metrics() {
    let a = TestNode::start(&[]);
    let b = TestNode::start(&["--addnode", &a.p2p_addr().to_string()]);
    wait_until(DEADLINE, "both sides to complete the handshake", || {
        a.ready_peers().len() == 1 && b.ready_peers().len() == 1
    });
    a.rpc("generate", json!([BLOCKS])).expect("generate");
    wait_until(DEADLINE, "b to sync a's blocks", || {
        b.getinfo()["blocks"] == BLOCKS
    });

    let from_a = scrape(&a);
    assert_eq!(sum(&from_a, "noded_chain_tip_height", &[]), BLOCKS as f64);
    assert_eq!(
        sum(&from_a, "noded_chain_header_height", &[]),
        BLOCKS as f64
    );
    assert_eq!(
        sum(&from_a, "noded_chain_blocks_connected_total", &[]),
        BLOCKS as f64
    );
    assert!(sum(&from_a, "noded_chain_transactions_connected_total", &[]) >= BLOCKS as f64);
    assert!(sum(&from_a, "noded_peers", &[]) >= 1.0);
    assert_eq!(
        sum(&from_a, "noded_peers", &[("direction", "inbound")]),
        1.0
    );
    assert!(sum(&from_a, "noded_peer_handshakes_total", &[]) >= 1.0);
    assert!(sum(&from_a, "noded_net_sent_bytes_total", &[]) > 0.0);
    assert!(
        sum(
            &from_a,
            "noded_net_received_bytes_total",
            &[("command", "version")]
        ) > 0.0
    );
    assert_eq!(
        sum(
            &from_a,
            "noded_net_sent_messages_total",
            &[("command", "version")]
        ),
        1.0
    );
    assert!(sum(&from_a, "noded_process_resident_memory_bytes", &[]) > 0.0);
    // The generate call (and the getinfo/getpeers the waits made) were counted per method.
    assert_eq!(
        sum(
            &from_a,
            "noded_rpc_requests_total",
            &[("method", "generate")]
        ),
        1.0
    );
    assert!(
        sum(
            &from_a,
            "noded_rpc_requests_total",
            &[("method", "getpeers")]
        ) >= 1.0
    );
    assert_eq!(
        sum(
            &from_a,
            "noded_rpc_request_duration_seconds_count",
            &[("method", "generate")]
        ),
        1.0
    );

    let from_b = scrape(&b);
    assert_eq!(sum(&from_b, "noded_chain_tip_height", &[]), BLOCKS as f64);
    let manual = [("direction", "outbound"), ("type", "manual")];
    assert_eq!(sum(&from_b, "noded_peers", &manual), 1.0);
    // B dialled A, so asked it to push new blocks: they came as compact blocks.
    assert!(
        sum(
            &from_b,
            "noded_net_received_bytes_total",
            &[("command", "cmpctblock")]
        ) > 0.0
    );
    assert!(sum(&from_b, "noded_net_sent_bytes_total", &[]) > 0.0);
    assert_eq!(sum(&from_b, "noded_mempool_transactions", &[]), 0.0);

    // An unknown method counts under one label, not its own.
    let _ = b.rpc("no_such_method_xyz", json!([]));
    let after = scrape(&b);
    assert!(sum(&after, "noded_rpc_requests_total", &[("method", "unknown")]) >= 1.0);
    assert!(!after.iter().any(|s| s
        .labels
        .get("method")
        .is_some_and(|m| m == "no_such_method_xyz")));
}

#[test]
fn metrics_on_a_loopback_rpc_server_need_no_credentials_but_rpc_still_does() {
    let node = TestNode::start(&[]);
    let (status, body) = http_get(node.rpc_addr, "/metrics", None);
    assert_eq!(status, 200);
    assert!(
        body.contains("# TYPE noded_chain_tip_height gauge"),
        "{body}"
    );
    assert!(body.trim_end().ends_with("# EOF"));
    // With credentials it is served too; the RPC on the port still needs them (the
    // dashboard's static page at `/` is public and holds nothing).
    let (status, _) = http_get(node.rpc_addr, "/metrics", Some(&node.cookie));
    assert_eq!(status, 200);
    let (status, _) = http_get(node.rpc_addr, "/rpc", None);
    assert_eq!(status, 401);
}
