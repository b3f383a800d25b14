//! Transaction flood benchmark (issue 12 (a) and (b)), the same shape as the rust-libp2p
//! gossipsub harness in ../shared/bench/libp2p-ref: 50,000 signed transfers (64 senders)
//! enter node 0 from a peer of its own, and every node verifies each before it forwards.
//! Topologies: five nodes in a line (node i dials node i-1) and ten in the harness's mesh
//! (seed 1). Every node is a real `noded` process on 127.0.0.1 over TLS 1.3.
//!
//! Prints, per topology: seconds from the first announcement to the last acceptance at any
//! node, transactions per second, and p50/p99 latency. Acceptance is sampled: each node's
//! mempool size is read every `POLL` and the k-th transaction counts as accepted at a node
//! when its pool first holds k (transactions enter every pool in announcement order, a
//! sender's nonces in order); a latency is the latest acceptance over the nodes less the
//! moment the injecting peer announced it, so it carries up to `POLL` of sampling error.
//! With each run, the nodes' CPU time per transaction per node; before the runs, the
//! ceiling this machine sets: the rate at which its cores batch-verify the flood's signatures
//! with nothing else running, divided by the node count (every node verifies every
//! transaction, and all of them share the cores).
//!
//! Then mempool intake at one node (`-- intake`): the flood as P2P TX messages and as
//! JSON-RPC batches of 1,000 `sendrawtransaction`, with the node's CPU time per transaction.
//!
//! Run with `cargo bench --bench txrelay` (`-- line`, `-- mesh` or `-- intake` for one part).

#[path = "support/blocks.rs"]
mod blocks;
#[path = "support/ceiling.rs"]
mod ceiling;
#[path = "../tests/common/mod.rs"]
mod common;
#[path = "support/cpu.rs"]
mod cpu;
#[path = "../tests/common/peer.rs"]
mod peer;

use blocks::{funding, sign_all};
use common::{wait_until, TestNode};
use noded::chain::testkit::Keys;
use noded::encoding::BoundedVec;
use noded::params::REGTEST;
use noded::types::{Hash256, Transaction};
use noded::wire::message::{InvItem, InvKind};
use noded::wire::Message;
use peer::TestPeer;
use serde_json::json;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Transactions in the flood (the harness's N).
const FLOOD: usize = 50_000;
/// Senders (the harness's 64 keys).
const SENDERS: usize = 64;
/// How often each node's mempool size is read.
const POLL: Duration = Duration::from_millis(20);
/// A run that has not completed by then is reported as incomplete.
const RUN_LIMIT: Duration = Duration::from_secs(120);
/// The harness's mesh with seed 1: node i dials these (see its README).
const MESH_DIALS: [&[usize]; 10] = [
    &[],
    &[0],
    &[0, 1],
    &[0, 1, 2],
    &[0, 1, 2, 3],
    &[0, 1, 3, 4],
    &[0, 2, 3, 4],
    &[0, 1, 2, 3],
    &[0, 5, 6, 7],
    &[0, 3, 5, 8],
];

fn pool_size(node: &TestNode) -> usize {
    node.rpc("getmempoolinfo", json!([])).unwrap()["size"]
        .as_u64()
        .unwrap() as usize
}

/// Nodes where node i `--connect`s to each of `dials[i]` (and nothing else). A node that
/// dials nobody is given a closed ephemeral port to `--connect` to, so that it makes no
/// outbound connections of its own (as the harness's node 0).
fn start(dials: &[&[usize]]) -> Vec<TestNode> {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let mut nodes: Vec<TestNode> = Vec::new();
    for targets in dials {
        let mut args = Vec::new();
        for &t in targets.iter() {
            args.push("--connect".to_string());
            args.push(nodes[t].p2p_addr().to_string());
        }
        if targets.is_empty() {
            args.push("--connect".to_string());
            args.push(closed.clone());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        nodes.push(TestNode::start(&args));
    }
    wait_until(Duration::from_secs(60), "the topology to connect", || {
        nodes
            .iter()
            .enumerate()
            .all(|(i, n)| n.ready_peers().len() >= dials[i].len().max(1).min(dials.len() - 1))
    });
    nodes
}

/// The flood: 782 or 781 transfers from each of 64 funded senders, nonces in order.
fn flood(keys: &Keys) -> Vec<Transaction> {
    let specs: Vec<_> = (0..FLOOD)
        .map(|i| {
            let sender = 1 + i % SENDERS;
            let nonce = (i / SENDERS) as u64;
            (sender, keys.address(1_000 + i % 97), 1, 200, nonce)
        })
        .collect();
    sign_all(keys, &specs)
}

struct Figures {
    seconds: f64,
    complete: bool,
    p50_ms: f64,
    p99_ms: f64,
}

/// Connects a peer to node 0 that announces the whole flood at once and then serves what
/// node 0 asks for; returns its runtime (dropping it ends the peer) and when it announced.
fn inject(nodes: &[TestNode], txs: &[Transaction]) -> (tokio::runtime::Runtime, Instant) {
    let by_id: HashMap<Hash256, Transaction> = txs.iter().map(|t| (t.txid(), t.clone())).collect();
    let order: Vec<Hash256> = txs.iter().map(Transaction::txid).collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let addr = nodes[0].p2p_addr();
    // The injecting peer: announces everything at once, then serves what node 0 asks for.
    let (announced_tx, announced_rx) = std::sync::mpsc::channel();
    runtime.spawn(async move {
        let mut peer = TestPeer::connect(addr, REGTEST.magic).await.unwrap();
        peer.handshake().await;
        let items: Vec<InvItem> = order
            .iter()
            .map(|h| InvItem {
                kind: InvKind::Tx,
                hash: *h,
            })
            .collect();
        let _ = announced_tx.send(Instant::now());
        peer.send(Message::Inv(BoundedVec::new(items).unwrap()))
            .await
            .unwrap();
        loop {
            let next =
                tokio::time::timeout(RUN_LIMIT, futures::StreamExt::next(&mut peer.framed)).await;
            match next {
                Ok(Some(Ok(Message::GetData(items)))) => {
                    for item in items.as_slice() {
                        if let Some(tx) = by_id.get(&item.hash) {
                            if peer.send(Message::Tx(Box::new(tx.clone()))).await.is_err() {
                                return;
                            }
                        }
                    }
                }
                Ok(Some(Ok(Message::Ping(nonce)))) => {
                    let _ = peer.send(Message::Pong(nonce)).await;
                }
                Ok(Some(Ok(_))) => {}
                _ => return,
            }
        }
    });
    let started = announced_rx.recv().unwrap();
    (runtime, started)
}

/// The funding blocks, submitted at node 0, on every node.
fn fund(nodes: &[TestNode], keys: &Keys) {
    let funding_blocks = funding(keys);
    for block in &funding_blocks {
        nodes[0].submit_block(block).unwrap();
    }
    let tip = nodes[0].rpc("getbestblockhash", json!([])).unwrap();
    wait_until(
        Duration::from_secs(60),
        "the funding to reach every node",
        || {
            nodes
                .iter()
                .all(|n| n.rpc("getbestblockhash", json!([])).unwrap() == tip)
        },
    );
}

/// Injects the flood at node 0 from a peer of its own; how long until node 0's pool holds
/// all of it (`None`: not within `RUN_LIMIT`).
fn inject_and_wait(nodes: &[TestNode], txs: &[Transaction]) -> Option<Duration> {
    let (runtime, started) = inject(nodes, txs);
    while pool_size(&nodes[0]) < FLOOD {
        if started.elapsed() > RUN_LIMIT {
            return None;
        }
        std::thread::sleep(POLL);
    }
    let took = started.elapsed();
    drop(runtime);
    Some(took)
}

fn run(label: &str, dials: &[&[usize]], keys: &Keys, txs: &[Transaction]) -> Figures {
    let nodes = start(dials);
    fund(&nodes, keys);
    let pids: Vec<u32> = nodes.iter().map(|n| n.child.id()).collect();
    let cpu_before = ceiling::total_cpu(&pids);
    let (runtime, started) = inject(&nodes, txs);
    // accepted[i][k]: when node i's pool first held k + 1 transactions.
    let mut accepted: Vec<Vec<Duration>> = vec![Vec::with_capacity(FLOOD); nodes.len()];
    let complete = loop {
        let now = started.elapsed();
        for (i, node) in nodes.iter().enumerate() {
            let size = pool_size(node).min(FLOOD);
            while accepted[i].len() < size {
                accepted[i].push(now);
            }
        }
        if accepted.iter().all(|a| a.len() == FLOOD) {
            break true;
        }
        if now > RUN_LIMIT {
            break false;
        }
        std::thread::sleep(POLL);
    };
    let cpu = ceiling::total_cpu(&pids) - cpu_before;
    drop(runtime);
    let mut latencies: Vec<f64> = (0..FLOOD)
        .map(|k| {
            accepted
                .iter()
                .map(|a| a.get(k).copied().unwrap_or(RUN_LIMIT))
                .max()
                .unwrap()
                .as_secs_f64()
                * 1_000.0
        })
        .collect();
    latencies.sort_by(f64::total_cmp);
    let seconds = if complete {
        accepted
            .iter()
            .map(|a| a.last().copied().unwrap_or(RUN_LIMIT))
            .max()
            .unwrap()
            .as_secs_f64()
    } else {
        let held: Vec<usize> = accepted.iter().map(Vec::len).collect();
        println!("incomplete after {RUN_LIMIT:?}: the pools hold {held:?} of {FLOOD}");
        for (i, node) in nodes.iter().enumerate() {
            let peers = node.rpc("getpeerinfo", json!([])).unwrap();
            let summary: Vec<String> = peers
                .as_array()
                .unwrap()
                .iter()
                .map(|p| {
                    format!(
                        "{}: announced {} requested {} received {} banscore {}",
                        p["addr"],
                        p["tx_announced"],
                        p["tx_requested"],
                        p["tx_received"],
                        p["banscore"]
                    )
                })
                .collect();
            println!("  node {i}: {summary:?}");
        }
        RUN_LIMIT.as_secs_f64()
    };
    let figures = Figures {
        seconds,
        complete,
        p50_ms: latencies[FLOOD / 2],
        p99_ms: latencies[FLOOD * 99 / 100],
    };
    println!(
        "noded  txflood {label:<8} n={FLOOD} seconds={:.3} tx_per_s={:.0} p50_ms={:.1} p99_ms={:.1} complete={}",
        figures.seconds,
        FLOOD as f64 / figures.seconds,
        figures.p50_ms,
        figures.p99_ms,
        u8::from(figures.complete),
    );
    println!(
        "       the {} nodes' CPU until then: {:.2} s, {:.1} us per transaction per node",
        nodes.len(),
        cpu,
        cpu * 1e6 / (FLOOD * nodes.len()) as f64,
    );
    figures
}

/// The node's CPU time so far (user + system).
fn cpu_time(node: &TestNode) -> Duration {
    Duration::from_secs_f64(cpu::process_cpu(node.child.id()))
}

/// One HTTP POST of a JSON-RPC batch to the node; the whole reply.
fn post_batch(node: &TestNode, calls: &[serde_json::Value]) -> String {
    use base64::Engine;
    use std::io::{Read, Write};
    let body = serde_json::to_vec(calls).unwrap();
    let mut stream = std::net::TcpStream::connect(node.rpc_addr).unwrap();
    let auth = base64::engine::general_purpose::STANDARD.encode(&node.cookie);
    let head = format!(
        "POST / HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {auth}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(&body).unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).unwrap();
    reply
}

/// Mempool intake at one node: the flood as P2P TX messages from a peer, then (on a fresh
/// node) as JSON-RPC batches of 1,000 `sendrawtransaction`. Wall time until the pool holds
/// every transaction, and the node's CPU time per transaction.
fn intake(keys: &Keys, txs: &[Transaction]) {
    {
        let nodes = start(&[&[]]);
        fund(&nodes, keys);
        let cpu_before = cpu_time(&nodes[0]);
        let took = inject_and_wait(&nodes, txs);
        report("P2P TX", took, cpu_time(&nodes[0]) - cpu_before);
    }
    let nodes = start(&[&[]]);
    fund(&nodes, keys);
    let cpu_before = cpu_time(&nodes[0]);
    let started = Instant::now();
    for chunk in txs.chunks(1_000) {
        let calls: Vec<serde_json::Value> = chunk
            .iter()
            .enumerate()
            .map(|(i, tx)| {
                json!({
                    "jsonrpc": "2.0",
                    "id": i,
                    "method": "sendrawtransaction",
                    "params": [hex::encode(noded::encoding::encode(tx))],
                })
            })
            .collect();
        let reply = post_batch(&nodes[0], &calls);
        assert!(
            !reply.contains("\"error\""),
            "a transaction was refused: {}",
            &reply[..reply.len().min(400)]
        );
    }
    let took = (pool_size(&nodes[0]) == FLOOD).then(|| started.elapsed());
    report(
        "RPC sendrawtransaction",
        took,
        cpu_time(&nodes[0]) - cpu_before,
    );
}

fn report(how: &str, took: Option<Duration>, cpu: Duration) {
    match took {
        Some(took) => println!(
            "noded  intake {how:<24} n={FLOOD} seconds={:.3} tx_per_s={:.0} cpu_us_per_tx={:.1}",
            took.as_secs_f64(),
            FLOOD as f64 / took.as_secs_f64(),
            cpu.as_secs_f64() * 1e6 / FLOOD as f64
        ),
        None => println!("noded  intake {how:<24} incomplete"),
    }
}

fn main() {
    let picked: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let want = |name: &str| picked.is_empty() || picked.iter().any(|p| p == name);
    let keys = Keys::new(2_001);
    let built = Instant::now();
    let txs = flood(&keys);
    println!(
        "signed {FLOOD} transfers from {SENDERS} senders in {:.1?}",
        built.elapsed()
    );
    if want("line") || want("mesh") {
        // Every node verifies every transaction, and all of them share this machine's cores:
        // no relay, however lean, beats this rate divided by the node count.
        let rate = ceiling::verification_rate(&txs);
        println!(
            "ceiling: this machine batch-verifies the flood's signatures at {rate:.0}/s on its {} cores with nothing else running, so no flood verified at every node exceeds {:.0} tx/s on 5 nodes, {:.0} tx/s on 10",
            ceiling::cores(),
            rate / 5.0,
            rate / 10.0,
        );
        println!(
            "         (verification alone: {:.1} us per transaction per node)",
            1e6 * ceiling::cores() as f64 / rate
        );
    }
    if want("line") {
        let line: Vec<&[usize]> = vec![&[], &[0], &[1], &[2], &[3]];
        run("5/line", &line, &keys, &txs);
    }
    if want("mesh") {
        run("10/mesh", &MESH_DIALS, &keys, &txs);
    }
    if want("intake") {
        intake(&keys, &txs);
    }
    println!("targets: 5/line >= 30,000 tx/s (gossipsub ~8,700); 10/mesh >= 15,000 tx/s (gossipsub ~2,800)");
}
