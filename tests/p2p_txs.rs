//! Transactions over the network between real `noded` processes on 127.0.0.1, driven over
//! JSON-RPC: a transaction sent at one end of a line reaches every mempool, is mined at the
//! other end, and leaves every mempool; a sender's later nonces follow. And one node serving
//! a peer's burst of GETDATA in full.

mod common;
#[path = "common/peer.rs"]
mod peer;

use common::*;
use noded::params::REGTEST;
use noded::types::Hash256;
use noded::wire::message::{inv_list, InvKind};
use noded::wire::Message;
use peer::TestPeer;
use serde_json::{json, Value};
use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(60);
const LINE: usize = 5;

fn mempool(node: &TestNode) -> Vec<Value> {
    node.rpc("getrawmempool", json!([]))
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

fn best(node: &TestNode) -> Value {
    node.rpc("getbestblockhash", json!([])).unwrap()
}

/// Five nodes, each `--addnode` the one before: a line.
fn line() -> Vec<TestNode> {
    let mut nodes = vec![TestNode::start(&[])];
    for i in 1..LINE {
        let before = nodes[i - 1].p2p_addr().to_string();
        nodes.push(TestNode::start(&["--addnode", &before]));
    }
    nodes
}

#[test]
fn a_transaction_sent_at_one_end_reaches_every_mempool_and_leaves_them_when_mined() {
    let nodes = line();
    let (first, last) = (&nodes[0], &nodes[LINE - 1]);
    // Coin to spend, known to every node.
    first.rpc("generate", json!([1])).unwrap();
    wait_until(DEADLINE, "the block to reach the line's end", || {
        nodes.iter().all(|n| best(n) == best(first))
    });
    let payee = last.rpc("getnewaddress", json!([])).unwrap();
    let sent: Vec<Value> = (0..3)
        .map(|_| {
            first
                .rpc("sendtoaddress", json!([payee, 1_000_000]))
                .unwrap()
        })
        .collect();
    wait_until(DEADLINE, "the transactions in all five mempools", || {
        nodes.iter().all(|n| {
            let pool = mempool(n);
            sent.iter().all(|t| pool.contains(t))
        })
    });
    // Nonces 0, 1, 2 arrived in order: none waits as a future transaction anywhere.
    for node in &nodes {
        for txid in &sent {
            let entry = node.rpc("getmempoolentry", json!([txid])).unwrap();
            assert_eq!(entry["future"], json!(false), "{entry}");
        }
    }
    // The middle node fetched each once, and never announced one to the peer it came from
    // (gossip may have added peers beyond the line: the counts hold per peer).
    let middle = &nodes[LINE / 2];
    let peers = middle.rpc("getpeerinfo", json!([])).unwrap();
    let peers = peers.as_array().unwrap();
    let count = |p: &Value, key: &str| p[key].as_u64().unwrap();
    let received: u64 = peers.iter().map(|p| count(p, "tx_received")).sum();
    assert_eq!(received, 3, "{peers:?}");
    for p in peers {
        assert!(
            count(p, "tx_announced") + count(p, "tx_received") <= 3,
            "a transaction went back where it came from: {p}"
        );
    }
    // Mined at the other end: gone from every mempool, the payee paid.
    last.rpc("generate", json!([1])).unwrap();
    wait_until(DEADLINE, "every mempool to empty", || {
        nodes
            .iter()
            .all(|n| mempool(n).is_empty() && best(n) == best(last))
    });
    let paid = first.rpc("getaccount", json!([payee])).unwrap();
    assert_eq!(paid["balance"], json!(3_000_000), "{paid}");
}

/// A line of five joined with `--connect` (no other connections); transactions flood in at
/// one end; the middle node is killed with SIGKILL partway and restarted on a new port (it
/// dials both neighbours): every transaction still reaches every mempool.
#[test]
fn killing_the_middle_node_mid_flood_loses_no_transaction() {
    const FLOOD: usize = 150;
    const KILL_AT: usize = 50;
    let mut nodes = vec![TestNode::start(&[])];
    for i in 1..LINE {
        let before = nodes[i - 1].p2p_addr().to_string();
        nodes.push(TestNode::start(&["--connect", &before]));
    }
    let first = &nodes[0];
    first.rpc("generate", json!([1])).unwrap();
    wait_until(DEADLINE, "the block to reach the line's end", || {
        nodes.iter().all(|n| best(n) == best(&nodes[0]))
    });
    let payee = nodes[LINE - 1].rpc("getnewaddress", json!([])).unwrap();
    let mut sent = Vec::new();
    for _ in 0..KILL_AT {
        sent.push(
            nodes[0]
                .rpc("sendtoaddress", json!([payee, 1_000]))
                .unwrap(),
        );
    }
    let middle_dir = nodes[2].datadir.clone();
    nodes[2].kill_hard();
    for _ in KILL_AT..FLOOD {
        sent.push(
            nodes[0]
                .rpc("sendtoaddress", json!([payee, 1_000]))
                .unwrap(),
        );
    }
    remove_stale_rpc_files(&middle_dir);
    let (left, right) = (
        nodes[1].p2p_addr().to_string(),
        nodes[3].p2p_addr().to_string(),
    );
    nodes[2] = TestNode::start_in(
        &middle_dir,
        &["--connect", &left, "--connect", &right],
        |_| {},
    );
    let sizes = std::cell::RefCell::new(Vec::new());
    let all_there = || {
        let pools: Vec<Vec<Value>> = nodes.iter().map(mempool).collect();
        *sizes.borrow_mut() = pools.iter().map(Vec::len).collect();
        pools
            .iter()
            .all(|pool| sent.iter().all(|t| pool.contains(t)))
    };
    let deadline = std::time::Instant::now() + DEADLINE;
    while !all_there() {
        assert!(
            std::time::Instant::now() < deadline,
            "not every transaction reached every mempool: sizes {:?} of {FLOOD}",
            sizes.borrow()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    for node in &nodes {
        assert_eq!(mempool(node).len(), FLOOD);
    }
}

/// Sums a getpeerinfo counter over a node's peers.
fn peer_total(node: &TestNode, key: &str) -> u64 {
    let peers = node.rpc("getpeerinfo", json!([])).unwrap();
    peers
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p[key].as_u64().unwrap())
        .sum()
}

/// Each node asks the node it dialled to push new blocks (outbound peers fill the
/// high-bandwidth slots): a block mined at the line's start crosses every hop as a compact
/// block pushed before validation, rebuilt from the mempool that already holds its
/// transactions, with no GETBLOCKTXN.
#[test]
fn a_block_whose_transactions_every_mempool_holds_crosses_the_line_as_compact_blocks() {
    // `--connect`: no connection but the line's (no address gossip dials), so each block
    // can only come from the node before. The first node's is a closed port: it dials
    // nothing else either.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let mut nodes = vec![TestNode::start(&["--connect", &closed])];
    for i in 1..LINE {
        let before = nodes[i - 1].p2p_addr().to_string();
        nodes.push(TestNode::start(&["--connect", &before]));
    }
    let first = &nodes[0];
    first.rpc("generate", json!([1])).unwrap();
    wait_until(DEADLINE, "the first block at the line's end", || {
        nodes.iter().all(|n| best(n) == best(first))
    });
    let payee = nodes[LINE - 1].rpc("getnewaddress", json!([])).unwrap();
    let sent: Vec<Value> = (0..20)
        .map(|_| first.rpc("sendtoaddress", json!([payee, 1_000])).unwrap())
        .collect();
    wait_until(DEADLINE, "the transactions in all five mempools", || {
        nodes.iter().all(|n| {
            let pool = mempool(n);
            sent.iter().all(|t| pool.contains(t))
        })
    });
    let before: Vec<(u64, u64)> = nodes
        .iter()
        .map(|n| {
            (
                peer_total(n, "cmpct_rebuilt"),
                peer_total(n, "blocktxn_requested"),
            )
        })
        .collect();
    first.rpc("generate", json!([1])).unwrap();
    wait_until(
        DEADLINE,
        "the block everywhere, every mempool empty",
        || {
            nodes
                .iter()
                .all(|n| best(n) == best(first) && mempool(n).is_empty())
        },
    );
    assert!(
        peer_total(first, "cmpct_sent") >= 2,
        "the first node pushed both blocks"
    );
    for (i, node) in nodes.iter().enumerate().skip(1) {
        let rebuilt = peer_total(node, "cmpct_rebuilt") - before[i].0;
        let round_trips = peer_total(node, "blocktxn_requested") - before[i].1;
        assert_eq!(
            (rebuilt, round_trips),
            (1, 0),
            "node {i} rebuilt the block from its mempool without a round trip"
        );
    }
}

/// A flood's requester sends many small GETDATAs back to back, and a serving node answered a
/// ninth waiting one with NOTFOUND, for transactions it held: a requester with no other
/// announcer then forgot them for good (a ten-node flood lost transactions this way). Up to
/// twice a noded requester's 5,000 in flight now wait to be served: all of them are.
#[test]
fn a_burst_of_getdata_within_the_requesters_bound_is_served_in_full() {
    const TXS: usize = 50;
    const REQUESTS: usize = 100; // 5,000 transactions asked for, in 100 GETDATAs
    let node = TestNode::start(&[]);
    node.rpc("generate", json!([1])).unwrap();
    let payee = node.rpc("getnewaddress", json!([])).unwrap();
    for _ in 0..TXS {
        node.rpc("sendtoaddress", json!([payee, 1_000])).unwrap();
    }
    let txids: Vec<Hash256> = mempool(&node)
        .iter()
        .map(|t| t.as_str().unwrap().parse().unwrap())
        .collect();
    assert_eq!(txids.len(), TXS);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (received, not_found) = runtime.block_on(async {
        let mut peer = TestPeer::connect(node.p2p_addr(), REGTEST.magic)
            .await
            .unwrap();
        peer.handshake().await;
        // All sent before any answer is read: the node's served queue and the socket fill,
        // and its serving task waits while the requests queue up. A PING behind them is
        // answered all the same (the outbox is not full of answers).
        for _ in 0..REQUESTS {
            peer.send(Message::GetData(inv_list(InvKind::Tx, &txids)))
                .await
                .unwrap();
        }
        peer.send(Message::Ping(7)).await.unwrap();
        let (mut received, mut not_found, mut ponged) = (0, 0, false);
        while (received < TXS * REQUESTS || !ponged) && not_found == 0 {
            match peer.recv().await {
                Some(Ok(Message::Tx(_))) => received += 1,
                Some(Ok(Message::Pong(7))) => ponged = true,
                Some(Ok(Message::NotFound(items))) => not_found += items.len(),
                Some(Ok(_)) => {}
                other => panic!("the connection ended: {other:?}"),
            }
        }
        (received, not_found)
    });
    assert_eq!(not_found, 0, "NOTFOUND for transactions the node holds");
    assert_eq!(received, TXS * REQUESTS);
}
