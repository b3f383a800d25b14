//! WebSocket subscriptions on a real node: blocks in order, transactions and peers, and a
//! subscriber that stops reading is dropped with a close notice instead of being buffered for.

mod common;

use common::ws::WsClient;
use common::{rpc_batch, wait_until, TestNode, DEADLINE};
use serde_json::json;

/// The next notification of `subscription` (answers and other subscriptions skipped).
fn next_notice(ws: &mut WsClient, subscription: &serde_json::Value) -> serde_json::Value {
    loop {
        let message = ws
            .next_json()
            .expect("a notification before the connection closed");
        if message["params"]["subscription"] == *subscription {
            return message["params"].clone();
        }
    }
}

#[test]
fn a_block_subscriber_sees_each_of_10_generated_blocks_in_order() {
    let node = TestNode::start(&[]);
    let mut ws = WsClient::connect(node.rpc_addr, &node.cookie);
    let subscription = ws.subscribe("subscribe_blocks");
    node.rpc("generate", json!([10])).expect("generate");
    for height in 1..=10u64 {
        let notice = next_notice(&mut ws, &subscription)["result"].clone();
        assert_eq!(notice["event"], "connected", "{notice}");
        assert_eq!(notice["height"], height, "{notice}");
        let hash = node.rpc("getblockhash", json!([height])).unwrap();
        assert_eq!(notice["hash"], hash, "{notice}");
        assert_eq!(notice["txs"], 1, "a coinbase only: {notice}");
    }
    // A call on the same connection still works, and unsubscribing ends the stream.
    let answer = ws.call("unsubscribe_blocks", json!([subscription]));
    assert_eq!(answer["result"], true, "{answer}");
}

#[test]
fn transaction_and_peer_subscribers_see_the_pool_and_the_peers_change() {
    let node = TestNode::start(&[]);
    let mut ws = WsClient::connect(node.rpc_addr, &node.cookie);
    let txs = ws.subscribe("subscribe_transactions");
    let peers = ws.subscribe("subscribe_peers");

    // Spendable coins, then a payment: accepted into the pool, then confirmed out of it.
    node.rpc("generate", json!([2])).expect("generate");
    let to = node.rpc("getnewaddress", json!([])).expect("getnewaddress");
    let txid = node
        .rpc("sendtoaddress", json!([to, 1000]))
        .expect("sendtoaddress");
    let accepted = next_notice(&mut ws, &txs)["result"].clone();
    assert_eq!(accepted["event"], "accepted", "{accepted}");
    assert_eq!(accepted["txid"], txid);
    assert_eq!(accepted["future"], false);
    node.rpc("generate", json!([1])).expect("generate");
    let removed = next_notice(&mut ws, &txs)["result"].clone();
    assert_eq!(removed["event"], "removed", "{removed}");
    assert_eq!(removed["txid"], txid);
    assert_eq!(removed["reason"], "confirmed");

    // A second node connects, then goes.
    let mut other = TestNode::start(&["--addnode", &node.p2p_addr().to_string()]);
    let connected = next_notice(&mut ws, &peers)["result"].clone();
    assert_eq!(connected["event"], "connected", "{connected}");
    assert_eq!(connected["nodeid"], other.getinfo()["nodeid"]);
    assert_eq!(connected["connection_type"], "inbound");
    other.stop();
    let gone = next_notice(&mut ws, &peers)["result"].clone();
    assert_eq!(gone["event"], "disconnected", "{gone}");
    assert_eq!(gone["peer"], connected["peer"]);
    assert!(gone["reason"].as_str().is_some_and(|r| !r.is_empty()));
}

#[test]
fn a_block_confirming_more_transactions_than_the_queue_holds_keeps_a_reading_subscriber() {
    const TXS: usize = 1_200;
    const _: () = assert!(TXS > noded::rpc::subscriptions::SUBSCRIBER_BACKLOG as usize);
    let node = TestNode::start(&[]);
    node.rpc("generate", json!([1])).expect("generate");
    let mut ws = WsClient::connect(node.rpc_addr, &node.cookie);
    let subscription = ws.subscribe("subscribe_transactions");
    // A reader that never stops reading, as the dashboard is.
    let reader = std::thread::spawn(move || {
        let (mut accepted, mut confirmed) = (0, 0);
        while confirmed < TXS {
            let message = ws
                .next_json()
                .expect("notifications until all are confirmed");
            let params = &message["params"];
            assert!(params.get("error").is_none(), "dropped: {message}");
            if params["subscription"] != subscription {
                continue;
            }
            match params["result"]["event"].as_str() {
                Some("accepted") => accepted += 1,
                Some("removed") if params["result"]["reason"] == "confirmed" => confirmed += 1,
                _ => {}
            }
        }
        accepted
    });
    let to = node.rpc("getnewaddress", json!([])).expect("getnewaddress");
    let pay = ("sendtoaddress", json!([to, 1000]));
    for chunk in [TXS / 2, TXS - TXS / 2] {
        let answers = rpc_batch(&node, &vec![pay.clone(); chunk]);
        assert!(
            answers.iter().all(|a| a["result"].is_string()),
            "{:?}",
            answers.first()
        );
    }
    node.rpc("generate", json!([1])).expect("generate");
    let accepted = reader.join().expect("the reader saw every notice");
    assert_eq!(accepted, TXS);
}

/// Resident memory of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS")
}

#[test]
fn a_subscriber_that_stops_reading_is_dropped_after_its_bounded_queue_fills() {
    const BLOCKS: u64 = 4_000;
    const CHUNK: u64 = 100;
    let node = TestNode::start(&[]);
    // A tiny receive window: the kernel holds little for it, so the node's own queue for
    // this connection is what fills.
    let mut slow = WsClient::connect_with(node.rpc_addr, &node.cookie, Some(4096));
    let slow_id = slow.subscribe("subscribe_blocks");
    let mut fast = WsClient::connect(node.rpc_addr, &node.cookie);
    let fast_id = fast.subscribe("subscribe_blocks");
    let rss_before = rss_kib(node.child.id());

    let mut height = 0;
    while height < BLOCKS {
        node.rpc("generate", json!([CHUNK])).expect("generate");
        for _ in 0..CHUNK {
            height += 1;
            let notice = next_notice(&mut fast, &fast_id)["result"].clone();
            assert_eq!(
                notice["height"], height,
                "the fast subscriber misses nothing"
            );
        }
    }
    let rss_after = rss_kib(node.child.id());

    // Now read what the slow subscriber was sent: a run of blocks, then the close notice.
    let mut delivered = 0u64;
    let close = loop {
        let message = slow
            .next_json()
            .unwrap_or_else(|| panic!("no close notice after {delivered} notices"));
        if message["params"]["subscription"] != slow_id {
            continue;
        }
        if let Some(error) = message["params"].get("error") {
            break error.clone();
        }
        delivered += 1;
        assert_eq!(message["params"]["result"]["height"], delivered);
    };
    assert!(
        close.to_string().contains("fell behind"),
        "close notice: {close}"
    );
    assert!(
        delivered + 1_000 < BLOCKS,
        "the node queued {delivered} of {BLOCKS} notices for a subscriber that read nothing"
    );
    println!(
        "slow subscriber: {delivered} of {BLOCKS} notices delivered before it was dropped; node RSS {rss_before} KiB -> {rss_after} KiB"
    );
    // The node is still well and serving.
    wait_until(DEADLINE, "the node answers", || {
        node.rpc("getblockcount", json!([])).ok() == Some(json!(BLOCKS))
    });
}
