//! The JSON-RPC server's hardening, through the binary as an operator meets it: shutdown does
//! not wait on a long call, cheap and cached chain facts, batch and body limits, and the
//! throttle on failed logins.

mod common;

use common::*;
use noded::rpc::client;
use serde_json::{json, Value};

use std::net::SocketAddr;
use std::time::{Duration, Instant};

const COIN: u64 = 100_000_000;

/// How long `stop` may take with a long RPC in flight (the issue's figure).
const STOP_DEADLINE: Duration = Duration::from_secs(2);

/// The documented batch limit (docs/OPERATIONS.md, "Limits").
const DOCUMENTED_MAX_BATCH: usize = 1_000;

/// The documented body limit: a 4 MiB block's hex for submitblock plus 64 KiB for the envelope.
const DOCUMENTED_MAX_BODY: usize = 2 * 4 * 1024 * 1024 + 64 * 1024;

/// The documented failed logins one address may make per minute before it is throttled.
const DOCUMENTED_MAX_AUTH_FAILURES: usize = 5;

fn call(node: &TestNode, method: &str, params: Value) -> Value {
    node.rpc(method, params.clone())
        .unwrap_or_else(|e| panic!("{method} {params}: {e}"))
}

/// One HTTP POST of `body` with Basic `credentials` (none when `None`); returns the status and
/// the body of the reply.
fn post(addr: SocketAddr, credentials: Option<&str>, body: &[u8]) -> (u16, String) {
    http_post(addr, credentials, "application/json", body)
}

/// Defect 5: `stop` with `generatetoaddress` of the most blocks one call may ask for in flight
/// on another connection. The node exits 0 within `STOP_DEADLINE`, and its store is whole on
/// the next start.
#[test]
fn shutdown_cancels_long_rpc() {
    stop_during_generate(|node| {
        assert_eq!(call(node, "stop", json!([])), "noded stopping");
    });
}

/// Defect 5, as `shutdown_cancels_long_rpc` with SIGTERM instead of `stop`.
#[test]
fn shutdown_cancels_long_rpc_on_sigterm() {
    stop_during_generate(|node| {
        let pid = node.child.id() as libc::pid_t;
        // SAFETY: kill(2) on our own child's pid, which has not been reaped yet.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    });
}

/// Starts a node, runs `generatetoaddress` of `MAX_GENERATE` blocks on one connection, calls
/// `stop_it` once blocks are coming, and checks the exit and the store (see above).
fn stop_during_generate(stop_it: impl FnOnce(&mut TestNode)) {
    let tempdir = tempfile::tempdir().unwrap();
    let datadir = tempdir.path();
    let mut node = TestNode::start_in(datadir, &[], |_| {});
    let (addr, cookie) = (node.rpc_addr, node.cookie.clone());
    let address = "11".repeat(20);
    let generate = std::thread::spawn(move || {
        client::call(
            addr,
            &cookie,
            "generatetoaddress",
            json!([noded::mining::MAX_GENERATE, address]),
        )
    });
    let mut mined_before_stop = 0;
    wait_until(DEADLINE, "generatetoaddress under way", || {
        mined_before_stop = call(&node, "getblockcount", json!([])).as_u64().unwrap();
        mined_before_stop >= 5
    });

    let asked = Instant::now();
    stop_it(&mut node);
    let status = loop {
        if let Some(status) = node.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            asked.elapsed() < STOP_DEADLINE,
            "noded still running {STOP_DEADLINE:?} after the stop request, with generatetoaddress in flight"
        );
        std::thread::sleep(Duration::from_millis(5));
    };
    println!(
        "stop with generatetoaddress in flight: exited after {:?}",
        asked.elapsed()
    );
    assert!(status.success(), "exit status {status}");
    // The call ends with an error (shutting down) or a closed connection, never a full list.
    match generate.join().unwrap() {
        Ok(hashes) => panic!(
            "generatetoaddress finished: {} blocks",
            hashes.as_array().map_or(0, Vec::len)
        ),
        Err(e) => println!("generatetoaddress ended with: {e}"),
    }

    let mut node = TestNode::start_in(datadir, &[], |_| {});
    let report = call(&node, "verifychain", json!([]));
    assert_eq!(report["ok"], true, "{report}");
    let height = call(&node, "getblockcount", json!([])).as_u64().unwrap();
    assert!(
        height >= mined_before_stop,
        "{height} blocks after restart, {mined_before_stop} seen before stop"
    );
    assert_eq!(report["height"], height);
    assert_eq!(
        call(&node, "getblockhash", json!([height])),
        call(&node, "getbestblockhash", json!([]))
    );
    // Every block paid the address: the state agrees with the block count.
    let paid = call(&node, "getaccount", json!(["11".repeat(20)]));
    assert_eq!(paid["balance"].as_u64().unwrap(), height * 50 * COIN);
    assert!(node.stop().success());
}

/// Defect 6 (c): `getblockheader`'s nTx, now read without decoding the block, matches the
/// block for blocks with one and with several transactions.
#[test]
fn blocking_work_off_runtime_getblockheader_ntx() {
    let node = TestNode::start(&[]);
    let genesis = call(&node, "getblockhash", json!([0]));
    assert_eq!(call(&node, "getblockheader", json!([genesis]))["nTx"], 1);
    call(&node, "generate", json!([1]));
    let payee = "22".repeat(20);
    for _ in 0..3 {
        call(&node, "sendtoaddress", json!([payee, COIN]));
    }
    let hash = call(&node, "generate", json!([1]))[0].clone();
    let header = call(&node, "getblockheader", json!([hash]));
    assert_eq!(header["nTx"], 4, "{header}");
    assert_eq!(call(&node, "getblock", json!([hash]))["nTx"], 4);
    // The header-only form is unchanged.
    let hex = call(&node, "getblockheader", json!([hash, false]));
    assert_eq!(hex.as_str().unwrap().len(), 2 * 88);
}

/// Defect 6 (d): `size_on_disk` (no longer a directory walk: the store is one file) is present
/// and grows once blocks are written.
#[test]
fn blocking_work_off_runtime_size_on_disk_refreshes() {
    let node = TestNode::start(&[]);
    let first = call(&node, "getblockchaininfo", json!([]))["size_on_disk"]
        .as_u64()
        .expect("size_on_disk is a number");
    assert!(first > 0);
    call(&node, "generatetoaddress", json!([300, "33".repeat(20)]));
    let mut last = first;
    wait_until(DEADLINE, "size_on_disk to grow", || {
        last = call(&node, "getblockchaininfo", json!([]))["size_on_disk"]
            .as_u64()
            .unwrap();
        last > first
    });
    println!("size_on_disk {first} -> {last}");
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

/// Defect 7: the batch limit follows `--rpcmaxbatch`.
#[test]
fn rpc_limits_batch_length_configurable() {
    let node = TestNode::start(&["--rpcmaxbatch", "3"]);
    let batch = |n: usize| {
        let calls: Vec<Value> = (0..n)
            .map(|i| json!({"jsonrpc": "2.0", "id": i, "method": "getblockcount"}))
            .collect();
        serde_json::to_vec(&calls).unwrap()
    };
    let (_, body) = post(node.rpc_addr, Some(&node.cookie), &batch(3));
    let answers: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answers.as_array().map(Vec::len), Some(3), "{answers}");
    let (_, body) = post(node.rpc_addr, Some(&node.cookie), &batch(4));
    let reply: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(reply["error"]["code"], -32010, "{reply}");
    assert_eq!(reply["error"]["data"], "Exceeded max limit of 3", "{reply}");
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

/// Defect 5, `verifychain`'s side: the replay asks whether to stop before every block and ends
/// with `Cancelled` as soon as it is told to, instead of replaying the whole chain.
#[test]
fn shutdown_cancels_long_rpc_verifychain_between_blocks() {
    use noded::chain::testkit::{Keys, TestChainBuilder};
    use noded::chain::{Chain, ChainError, ChainOptions};
    use noded::params::REGTEST;
    let mut chain = Chain::open_temporary(&REGTEST, ChainOptions::default()).unwrap();
    let keys = Keys::new(1);
    let mut builder = TestChainBuilder::new(&REGTEST);
    for _ in 0..10 {
        let block = builder.build(keys.address(0), vec![]);
        chain.submit_block(block, 4_000_000_000).unwrap();
    }
    let asked = std::cell::Cell::new(0);
    let stop_at_third = || {
        asked.set(asked.get() + 1);
        asked.get() == 3
    };
    assert!(matches!(
        chain.verify_chain_until(3, &stop_at_third),
        Err(ChainError::Cancelled)
    ));
    assert_eq!(asked.get(), 3, "stopped at the first check that said so");
    let never = || false;
    let report = chain.verify_chain_until(3, &never).unwrap();
    assert!(report.ok);
    assert_eq!(report.height, 10);
}
