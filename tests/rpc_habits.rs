//! bitcoind habits through the real binary: JSON-RPC 1.0 requests, integer verbosity, extra
//! arguments refused, coin amounts, the newer methods (listtransactions, getwalletinfo,
//! validateaddress, getrpcinfo, waitfornewblock, waitforblock, waitforblockheight,
//! setnetworkactive, logging), and `noded rpc` as a scripting client (error data and usage, a
//! closed pipe, bitcoin-cli's flags, each OS error printed once).

mod common;

use common::*;
use noded::rpc::client::ClientError;
use serde_json::{json, Value};
use std::io::Read;
use std::net::{SocketAddr, TcpListener};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// One HTTP POST with the node's cookie and bitcoind's `text/plain`; returns status and body.
fn post(addr: SocketAddr, cookie: &str, body: &str) -> (u16, String) {
    http_post(addr, Some(cookie), "text/plain", body.as_bytes())
}

fn noded_rpc(node: &TestNode, args: &[&str]) -> std::process::Output {
    let mut all = vec!["rpc", "--datadir", node.datadir.to_str().unwrap()];
    all.extend_from_slice(args);
    run_to_exit(&all)
}

#[test]
fn json_rpc_1_0_requests_get_bitcoind_shaped_answers() {
    let node = TestNode::start(&[]);
    let (status, body) = post(
        node.rpc_addr,
        &node.cookie,
        r#"{"jsonrpc":"1.0","id":"curltest","method":"getblockcount","params":[]}"#,
    );
    assert_eq!(status, 200, "{body}");
    let reply: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(reply, json!({"result": 0, "error": null, "id": "curltest"}));

    // No jsonrpc member and no id, as the oldest examples send: answered with id null.
    let (_, body) = post(
        node.rpc_addr,
        &node.cookie,
        r#"{"method":"getblockhash","params":[7]}"#,
    );
    let reply: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(reply["result"], Value::Null, "{reply}");
    assert_eq!(reply["error"]["code"], -8, "{reply}");
    assert_eq!(reply["id"], Value::Null, "{reply}");

    // A 1.0 batch.
    let (_, body) = post(
        node.rpc_addr,
        &node.cookie,
        r#"[{"jsonrpc":"1.0","id":1,"method":"getblockcount"},{"id":2,"method":"uptime","params":[]}]"#,
    );
    let replies: Value = serde_json::from_str(&body).unwrap();
    let replies = replies.as_array().unwrap();
    assert_eq!(replies.len(), 2, "{body}");
    assert!(
        replies
            .iter()
            .all(|r| r["error"].is_null() && !r["result"].is_null()),
        "{body}"
    );

    // 2.0 is untouched: no "error": null beside a result.
    let (_, body) = post(
        node.rpc_addr,
        &node.cookie,
        r#"{"jsonrpc":"2.0","id":1,"method":"getblockcount"}"#,
    );
    let reply: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(reply, json!({"jsonrpc": "2.0", "result": 0, "id": 1}));
}

/// The node's peak resident memory (VmHWM), in bytes; 0 where /proc is not there.
fn peak_rss(node: &TestNode) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", node.child.id()));
    status
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .map_or(0, |kib| kib * 1024)
}

/// A JSON array of `item` repeated to just under `bytes`, after `head` and before `tail`.
fn filled(head: &str, item: &str, tail: &str, bytes: usize) -> String {
    let n = (bytes - head.len() - tail.len()) / (item.len() + 1);
    let mut body = String::with_capacity(bytes);
    body.push_str(head);
    body.push_str(item);
    for _ in 1..n {
        body.push(',');
        body.push_str(item);
    }
    body.push_str(tail);
    body
}

/// Peak memory the node may reach answering the bodies below: jsonrpsee's own look at an
/// 8 MB batch (a pointer pair per item) and a few copies of the body fit well under it; a
/// tree of the body, as the 1.0 layer once built (2.1 GB), does not.
const BIG_BODY_PEAK_RSS: u64 = 512 * 1024 * 1024;
/// Longest any of them may take to be answered, even by a debug build on a loaded machine
/// (the tree took 8.5 s).
const BIG_BODY_ANSWER: Duration = Duration::from_secs(5);

#[test]
fn big_bodies_are_refused_quickly_in_bounded_memory() {
    let node = TestNode::start(&[]);
    let max = noded::rpc::server::MAX_REQUEST_BODY as usize;
    let timed = |body: &str| {
        assert!(body.len() <= max, "{} > {max}", body.len());
        let started = Instant::now();
        let (status, reply) = post(node.rpc_addr, &node.cookie, body);
        let took = started.elapsed();
        assert_eq!(status, 200, "{}", &reply[..reply.len().min(300)]);
        assert!(took < BIG_BODY_ANSWER, "{took:?}");
        eprintln!("{} bytes answered in {took:?}", body.len());
        let reply: Value = serde_json::from_str(&reply).unwrap();
        reply
    };

    // The reproduced request: a 1.0 batch of millions of empty objects. Refused as too long
    // (not 413 after an upgrade past the body limit), in the 1.0 shape.
    let reply = timed(&filled("[", "{}", "]", max - 16));
    assert_eq!(reply["error"]["code"], -32010, "{reply}");
    assert!(
        reply["result"].is_null() && reply.get("jsonrpc").is_none(),
        "{reply}"
    );

    // The same as 2.0.
    let call = r#"{"jsonrpc":"2.0","id":1,"method":"getblockcount"}"#;
    let reply = timed(&filled("[", call, "]", max - 16));
    assert_eq!(reply["error"]["code"], -32010, "{reply}");
    assert_eq!(reply["jsonrpc"], "2.0", "{reply}");

    // Millions of arguments, 2.0 and 1.0: refused by name without counting them all.
    let head = r#"{"jsonrpc":"2.0","id":1,"method":"getblockcount","params":["#;
    let reply = timed(&filled(head, "0", "]}", max - 16));
    assert_eq!(reply["error"]["code"], -32602, "{reply}");
    let message = reply["error"]["message"].as_str().unwrap();
    assert!(message.contains("(more than"), "{reply}");
    let reply = timed(&filled(
        r#"{"method":"getblockcount","params":["#,
        "0",
        "]}",
        max - 16,
    ));
    assert_eq!(reply["error"]["code"], -32602, "{reply}");
    assert!(reply["result"].is_null(), "{reply}");

    // A 1.0 request of exactly the body limit is still let in after its upgrade grew it.
    let head = r#"{"method":"submitblock","params":[""#;
    let tail = r#""]}"#;
    let body = format!("{head}{}{tail}", "0".repeat(max - head.len() - tail.len()));
    assert_eq!(body.len(), max);
    let reply = timed(&body);
    assert_eq!(reply["error"]["code"], -22, "{reply}");
    assert_eq!(reply["id"], Value::Null, "{reply}");

    let peak = peak_rss(&node);
    assert!(peak < BIG_BODY_PEAK_RSS, "peak RSS {} MiB", peak >> 20);
    eprintln!("peak RSS {} MiB", peak >> 20);
}

#[test]
fn verbosity_takes_integers_and_bools() {
    let node = TestNode::start(&[]);
    let hashes = rpc(&node, "generate", json!([1]));
    let hash = hashes[0].as_str().unwrap();
    assert!(rpc(&node, "getblockheader", json!([hash, 0])).is_string());
    assert!(rpc(&node, "getblockheader", json!([hash, 1])).is_object());
    assert!(rpc(&node, "getblockheader", json!([hash, false])).is_string());
    assert!(rpc(&node, "getblock", json!([hash, 0])).is_string());
    assert!(rpc(&node, "getblock", json!([hash, true]))["tx"][0].is_string());
    assert!(rpc(&node, "getblock", json!([hash, 2]))["tx"][0].is_object());

    // A mempool transaction, so no transaction index is needed.
    let payee = rpc(&node, "getnewaddress", json!([]));
    let txid = rpc(&node, "sendtoaddress", json!([payee, 1000]));
    let tx = rpc(&node, "getrawtransaction", json!([txid, 1]));
    assert_eq!(tx["txid"], txid, "{tx}");
    assert!(rpc(&node, "getrawtransaction", json!([txid, 0])).is_string());
    assert!(rpc(&node, "getrawtransaction", json!([txid, true])).is_object());
    assert!(rpc(&node, "getrawmempool", json!([1])).is_object());
}

#[test]
fn extra_positional_arguments_are_refused_by_name() {
    let node = TestNode::start(&[]);
    assert_eq!(
        rpc_error(&node, "getblockcount", json!([5])),
        (
            -32602,
            "getblockcount takes no arguments (1 given)".to_string()
        )
    );
    assert_eq!(
        rpc_error(&node, "getblockhash", json!([0, 1])),
        (
            -32602,
            "getblockhash takes at most 1 argument (2 given)".to_string()
        )
    );
    assert_eq!(
        rpc_error(&node, "getblock", json!(["00", 1, 2])).1,
        "getblock takes at most 2 arguments (3 given)"
    );
    // Inside a batch too.
    let (_, body) = post(
        node.rpc_addr,
        &node.cookie,
        r#"[{"jsonrpc":"2.0","id":1,"method":"getblockcount","params":[5]},{"jsonrpc":"2.0","id":2,"method":"getblockcount"}]"#,
    );
    let replies: Value = serde_json::from_str(&body).unwrap();
    let by_id = |id: i64| {
        replies
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == id)
            .cloned()
            .unwrap()
    };
    assert_eq!(by_id(1)["error"]["code"], -32602, "{replies}");
    assert_eq!(by_id(2)["result"], 0, "{replies}");
}

#[test]
fn amounts_are_base_units_or_coin_strings() {
    let node = TestNode::start(&[]);
    rpc(&node, "generate", json!([2]));
    let payee = rpc(&node, "getnewaddress", json!([]));
    let txid = rpc(&node, "sendtoaddress", json!([payee, "1.5coin"]));
    let tx = rpc(&node, "getrawtransaction", json!([txid, 1]));
    assert_eq!(tx["amount"], 150_000_000u64, "{tx}");
    match node.rpc("sendtoaddress", json!([payee, 1.5])) {
        Err(ClientError::Rpc { code, data, .. }) => {
            assert_eq!(code, -32602);
            let data = data.unwrap().to_string();
            assert!(data.contains("not whole base units"), "{data}");
            assert!(data.contains("1.5coin"), "{data}");
        }
        other => panic!("a fraction without 'coin' was taken: {other:?}"),
    }
}

#[test]
fn wallet_methods_list_describe_and_validate() {
    let node = TestNode::start(&[]);
    let mine = rpc(&node, "getaddress", json!([]));
    rpc(&node, "generate", json!([2]));
    let payee = rpc(&node, "getnewaddress", json!([]));
    let txid = rpc(&node, "sendtoaddress", json!([payee, 5000, 1000]));

    let list = rpc(&node, "listtransactions", json!([10]));
    let list = list.as_array().unwrap();
    let categories: Vec<&str> = list
        .iter()
        .map(|e| e["category"].as_str().unwrap())
        .collect();
    assert_eq!(
        categories,
        ["generate", "generate", "send", "receive"],
        "{list:?}"
    );
    let send = &list[2];
    assert_eq!(send["txid"], txid);
    assert_eq!(send["amount"], -5000);
    assert_eq!(send["fee"], -1000);
    assert_eq!(send["confirmations"], 0);
    assert_eq!(list[0]["confirmations"], 2);
    assert_eq!(
        rpc(&node, "listtransactions", json!([1, 3]))[0]["category"],
        "generate"
    );

    let info = rpc(&node, "getwalletinfo", json!([]));
    assert_eq!(info["addresses"], 2, "{info}");
    let confirmed = rpc(&node, "getbalance", json!([]));
    assert_eq!(info["balance"], confirmed, "{info}");
    assert_eq!(
        info["pending_balance"].as_u64().unwrap(),
        confirmed.as_u64().unwrap() - 5000 - 1000, // incoming mempool transfers are not counted
        "{info}"
    );

    let v = rpc(&node, "validateaddress", json!([mine]));
    assert_eq!(
        (v["isvalid"].clone(), v["ismine"].clone()),
        (json!(true), json!(true))
    );
    let other = "00".repeat(20);
    assert_eq!(
        rpc(&node, "validateaddress", json!([other]))["ismine"],
        false
    );
    let bad = rpc(&node, "validateaddress", json!(["nope"]));
    assert_eq!(bad["isvalid"], false, "{bad}");
}

#[test]
fn waitfornewblock_returns_at_a_new_block_or_the_timeout_and_getrpcinfo_shows_it() {
    let node = TestNode::start(&[]);
    let tip = rpc(&node, "waitfornewblock", json!([50]));
    assert_eq!(tip["height"], 0, "timed out on the same tip: {tip}");

    let (addr, cookie) = (node.rpc_addr, node.cookie.clone());
    let waiter = std::thread::spawn(move || {
        noded::rpc::client::call(
            addr,
            &cookie,
            "waitfornewblock",
            json!([DEADLINE.as_millis() as u64]),
        )
    });
    wait_until(DEADLINE, "waitfornewblock in getrpcinfo", || {
        let info = rpc(&node, "getrpcinfo", json!([]));
        info["active_commands"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["method"] == "waitfornewblock" && c["duration"].is_u64())
    });
    // getrpcinfo lists the call a moment before it reads the tip it waits to see change: a
    // block mined in that moment would not wake it, so mine until it returns (one block,
    // almost always), well before its own timeout.
    let started = Instant::now();
    let mut mined = 0;
    while !waiter.is_finished() {
        assert!(
            started.elapsed() < DEADLINE / 2,
            "waitfornewblock did not return"
        );
        if mined < 3 {
            rpc(&node, "generate", json!([1]));
            mined += 1;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let tip = waiter.join().unwrap().unwrap();
    let height = tip["height"].as_u64().expect("a height");
    assert!((1..=mined).contains(&height), "{tip} after {mined} blocks");
}

#[test]
fn waitforblock_and_waitforblockheight_answer_when_the_tip_gets_there_or_at_the_timeout() {
    let node = TestNode::start(&[]);
    let genesis = rpc(&node, "getbestblockhash", json!([]));
    // Already there: answered at once, not after the (long) timeout.
    let started = Instant::now();
    let tip = rpc(
        &node,
        "waitforblock",
        json!([genesis, DEADLINE.as_millis() as u64]),
    );
    assert_eq!(tip["hash"], genesis);
    let tip = rpc(
        &node,
        "waitforblockheight",
        json!([0, DEADLINE.as_millis() as u64]),
    );
    assert_eq!(tip["height"], 0);
    assert!(
        started.elapsed() < DEADLINE / 2,
        "an answer that was due at once waited"
    );

    // Not there: the timeout ends the wait and the tip then is the answer.
    let elsewhere = "11".repeat(32);
    let tip = rpc(&node, "waitforblock", json!([elsewhere, 50]));
    assert_eq!(tip["hash"], genesis, "{tip}");
    let tip = rpc(&node, "waitforblockheight", json!([1, 50]));
    assert_eq!(tip["height"], 0, "{tip}");

    // Waiting for a height two blocks up: answered once both are mined, not at the first.
    let (addr, cookie) = (node.rpc_addr, node.cookie.clone());
    let waiter = std::thread::spawn(move || {
        noded::rpc::client::call(
            addr,
            &cookie,
            "waitforblockheight",
            json!([2, DEADLINE.as_millis() as u64]),
        )
    });
    let first = rpc(&node, "generate", json!([1]))[0].clone();
    let tip = rpc(
        &node,
        "waitforblock",
        json!([first, DEADLINE.as_millis() as u64]),
    );
    assert_eq!(tip["height"], 1, "{tip}");
    rpc(&node, "generate", json!([1]));
    let tip = waiter.join().unwrap().unwrap();
    assert_eq!(tip["height"], 2, "{tip}");

    let (code, message) = rpc_error(&node, "waitforblock", json!(["nothex", 50]));
    assert_eq!(code, -8, "{message}");
}

#[test]
fn setnetworkactive_false_drops_peers_until_true() {
    let a = TestNode::start(&[]);
    let target = a.p2p_addr().to_string();
    let b = TestNode::start(&["--addnode", &target]);
    let connected = |n: &TestNode| rpc(n, "getconnectioncount", json!([])).as_u64().unwrap();
    wait_until(DEADLINE, "b connects to a", || connected(&b) == 1);

    assert_eq!(rpc(&b, "setnetworkactive", json!([false])), false);
    assert_eq!(rpc(&b, "getnetworkinfo", json!([]))["networkactive"], false);
    wait_until(DEADLINE, "b drops its peer", || {
        connected(&b) == 0 && connected(&a) == 0
    });
    // a's attempt to reach b is refused while b is off.
    rpc(&a, "addnode", json!([b.p2p_addr().to_string(), "onetry"]));

    assert_eq!(rpc(&b, "setnetworkactive", json!([true])), true);
    assert_eq!(rpc(&b, "getnetworkinfo", json!([]))["networkactive"], true);
    wait_until(DEADLINE, "b reconnects to its added node", || {
        connected(&b) >= 1
    });
}

#[test]
fn logging_shows_and_replaces_the_filter() {
    let node = TestNode::start(&[]);
    assert!(rpc(&node, "logging", json!([]))["filter"].is_string());
    let set = rpc(&node, "logging", json!(["info,noded::net=debug"]));
    // The filter shows its directives in its own order.
    let shown = set["filter"].as_str().unwrap().to_string();
    let mut directives: Vec<&str> = shown.split(',').collect();
    directives.sort_unstable();
    assert_eq!(directives, ["info", "noded::net=debug"], "{set}");
    assert_eq!(rpc(&node, "logging", json!([]))["filter"], shown);
    let (code, message) = rpc_error(&node, "logging", json!(["noded=loud"]));
    assert_eq!(code, -8);
    assert!(
        message.starts_with("invalid log filter 'noded=loud'"),
        "{message}"
    );
    assert!(!message.contains('\n'), "{message}");
    // A bare word that is not a level is refused, as --log-level refuses it (EnvFilter would
    // take it for a target and switch nearly all logging off); `warning` means warn.
    let (code, message) = rpc_error(&node, "logging", json!(["foo"]));
    assert_eq!(code, -8, "{message}");
    assert_eq!(
        rpc(&node, "logging", json!([]))["filter"],
        shown,
        "unchanged"
    );
    let set = rpc(&node, "logging", json!(["warning"]));
    assert_eq!(set["filter"], "warn", "{set}");
}

#[test]
fn help_describes_each_method_with_an_example() {
    let node = TestNode::start(&[]);
    let text = rpc(&node, "help", json!(["getblock"]));
    let text = text.as_str().unwrap();
    assert!(
        text.starts_with("getblock blockhash [verbosity=1]"),
        "{text}"
    );
    assert!(
        text.contains("Arguments:\n1. blockhash (string (hex), required)"),
        "{text}"
    );
    assert!(text.contains("Result:\n"), "{text}");
    assert!(text.contains("Example:\nnoded rpc getblock "), "{text}");
    // Every method the node serves: a start-up check refuses one without a help entry, and
    // each entry renders an example.
    let list = rpc(&node, "help", json!([]));
    for line in list.as_str().unwrap().lines() {
        let name = line.split_whitespace().next().unwrap();
        let text = rpc(&node, "help", json!([name]));
        assert!(
            text.as_str()
                .unwrap()
                .contains(&format!("Example:\nnoded rpc {name}")),
            "{name}"
        );
    }
}

#[test]
fn noded_rpc_prints_the_error_data_and_the_usage() {
    let node = TestNode::start(&[]);
    let out = noded_rpc(&node, &["getblockhash", "one"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(r#"invalid type: string "one", expected u64"#),
        "{err}"
    );
    assert!(
        err.contains("usage: noded rpc getblockhash height"),
        "{err}"
    );

    let out = noded_rpc(&node, &["getblockcount", "5"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("getblockcount takes no arguments"), "{err}");
    assert!(err.contains("usage: noded rpc getblockcount\n"), "{err}");
    assert_eq!(
        err.matches("getblockcount").count(),
        2,
        "message and usage once each: {err}"
    );
}

#[test]
fn noded_rpc_takes_bitcoin_cli_connection_flags() {
    let node = TestNode::start(&["--rpcuser", "alice", "--rpcpassword", "s3cret"]);
    let port = node.rpc_addr.port().to_string();
    let nowhere = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["rpc", "--rpcconnect", "127.0.0.1", "--rpcport", &port])
        .args([
            "--rpcuser",
            "alice",
            "--rpcpassword",
            "s3cret",
            "getblockcount",
        ])
        .env("NODED_DATADIR", nowhere.path())
        .env("HOME", nowhere.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "0");
}

#[test]
fn noded_rpc_exits_quietly_when_the_reader_closes_the_pipe() {
    let node = TestNode::start(&[]);
    let mut child = Command::new(BIN)
        // About 70 kB of block hashes: more than a pipe holds.
        .args([
            "rpc",
            "--datadir",
            node.datadir.to_str().unwrap(),
            "generate",
            "1000",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    // A one-page pipe besides: the client is surely still writing when the reader goes, as
    // with `| head -c 10`.
    {
        use std::os::fd::AsRawFd;
        let fd = stdout.as_raw_fd();
        // SAFETY: fcntl on a pipe descriptor this process owns.
        unsafe { libc::fcntl(fd, libc::F_SETPIPE_SZ, 4096) };
    }
    let mut first = [0u8; 10];
    stdout.read_exact(&mut first).unwrap();
    drop(stdout);
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(start.elapsed() < DEADLINE, "noded rpc did not exit");
        std::thread::sleep(Duration::from_millis(5));
    };
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(!err.contains("panicked"), "{err}");
    assert!(err.is_empty(), "{err}");
    assert!(status.success(), "{status:?}");
}

#[test]
fn a_busy_port_names_the_os_error_once() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    for (p2p, rpc) in [(port.as_str(), "0"), ("0", port.as_str())] {
        let out = run_to_exit(&[
            "--network",
            "regtest",
            "--bind",
            "127.0.0.1",
            "--port",
            p2p,
            "--rpcport",
            rpc,
            "--datadir",
            d,
        ]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.matches("os error 98").count(), 1, "{err}");
    }
}

#[test]
fn an_argument_of_the_wrong_type_is_named() {
    let node = TestNode::start(&[]);
    let reply = rpc_reply(&node, "generate", json!(["abc"]));
    assert_eq!(reply["error"]["code"], -32602, "{reply}");
    assert_eq!(
        reply["error"]["data"], "nblocks: invalid type: string \"abc\", expected u64",
        "{reply}"
    );
    // Of several arguments the bad one cannot be told (each is parsed on its own, and the
    // position is within it): the usage says which is which.
    let reply = rpc_reply(&node, "getblockheader", json!(["ab".repeat(32), "yes"]));
    assert_eq!(
        reply["error"]["data"],
        "invalid type: string \"yes\", expected a bool or an integer 0 to 255 \
         (usage: getblockheader blockhash [verbose=true])",
        "{reply}"
    );
    // Named params: the position is dropped too.
    let reply = rpc_reply(&node, "generate", json!({"nblocks": "x"}));
    let data = reply["error"]["data"].as_str().unwrap_or_default();
    assert!(
        data.starts_with("invalid type") && !data.contains(" at line "),
        "{reply}"
    );
    // Inside a batch too, 2.0 and bitcoind's 1.0.
    let answers = rpc_batch(
        &node,
        &[("getblockcount", json!([])), ("generate", json!(["abc"]))],
    );
    assert_eq!(
        answers[1]["error"]["data"], "nblocks: invalid type: string \"abc\", expected u64",
        "{answers:?}"
    );
    let (status, body) = post(
        node.rpc_addr,
        &node.cookie,
        r#"[{"id":7,"method":"getblockhash","params":["one"]}]"#,
    );
    assert_eq!(status, 200, "{body}");
    let reply: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        reply[0]["error"]["data"], "height: invalid type: string \"one\", expected u64",
        "{reply}"
    );
    // noded rpc passes the message on, and its usage line once.
    let out = noded_rpc(&node, &["generate", "abc"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("nblocks: invalid type"), "{stderr}");
    let out = noded_rpc(&node, &["getblockheader", &"ab".repeat(32), "yes"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.matches("usage:").count(), 1, "{stderr}");
}
