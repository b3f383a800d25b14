//! Sync benchmark (`cargo bench --bench sync`): how fast headers and blocks move.
//!
//! (b) headers: 100,000 headers from one peer, as HEADERS messages of 2,000, through the
//!     protocol core (checks, tree, the sync and download managers), with the header tree
//!     alone beside it for the same headers.
//! (c) propagation: five `noded` processes in a line on 127.0.0.1 (release build, TLS 1.3,
//!     joined with `--connect`, so each node hears a block only from the one before); a block
//!     of 6,168 transfers (the libp2p reference harness's block count) submitted at one end:
//!     milliseconds until each node has it as its tip. Once with transfers no mempool has
//!     seen (every node verifies every signature), once with every mempool already holding
//!     them (compact block relay: short ids cross each hop, nothing is verified twice).
//!     With each, the CPU time the five nodes used meanwhile (they share this machine's
//!     cores, so that time over the core count bounds the wall time from below); with the
//!     first, the time the five verifications of its signatures take at this machine's batch
//!     rate on all cores.
//! (a) initial sync: a fresh node syncs 10,000 blocks of 100 transfers over TLS from one and
//!     from three serving nodes; blocks/s and transfers/s, and the ratio to this machine's
//!     offline connect rate of the same blocks through the chain writer, measured in the same
//!     run (the servers' stores are that offline import). The servers share the 2 cores with
//!     the syncing node, which the offline import does not.
//!
//! Prints figures; asserts nothing beyond the runs completing.

#[path = "support/blocks.rs"]
mod blocks;
#[path = "support/ceiling.rs"]
mod ceiling;
#[path = "../tests/common/mod.rs"]
mod common;
#[path = "support/cpu.rs"]
mod cpu;

use blocks::{funding, next_block, sign_all, TXS_PER_BLOCK};
use common::{rpc, rpc_batch, wait_until, TestNode};
use noded::chain::testkit::{make_block, Keys};
use noded::encoding::{BoundedString, BoundedVec};
use noded::params::REGTEST;
use noded::protocol::addrman::AddrMan;
use noded::protocol::bans::BanList;
use noded::protocol::headers::HeaderTree;
use noded::protocol::{Core, CoreConfig, Input};
use noded::time::{LocalTime, Now};
use noded::types::{Address, Block, Header, NodeId};
use noded::wire::{Message, NetAddress, Version, PROTOCOL_VERSION};
use serde_json::json;
use std::time::{Duration, Instant};

/// Headers in the header benchmark.
const HEADERS: usize = 100_000;
/// Headers per HEADERS message (the protocol's maximum).
const PER_MESSAGE: usize = 2_000;
/// Nodes in the propagation line.
const LINE: usize = 5;
/// Transfers in each propagated block: the libp2p reference harness's 1 MiB block count.
const PROPAGATED_TXS: usize = 6_168;
/// Funded senders the propagated blocks spend from (the funding blocks' 2,000), each
/// sending a few nonces in a row.
const SENDERS: usize = 2 * TXS_PER_BLOCK;
/// Fee of each propagated transfer: above the minimum relay fee, so the second block's can
/// travel through the mempools.
const PROPAGATED_FEE: u64 = 1_000;
/// Transfers per sendrawtransaction batch when filling the mempools.
const RPC_BATCH: usize = 1_000;
/// How long a block may take to reach the end of the line before the run gives up.
const HOP_DEADLINE: Duration = Duration::from_secs(60);
/// Blocks and transfers per block in the initial-sync benchmark.
const SYNC_BLOCKS: usize = 10_000;
const SYNC_TXS: usize = 100;
/// Blocks handed to the chain writer at once in the offline import (as the network side may).
const OFFLINE_IN_FLIGHT: usize = 16;
/// How long an initial sync may take before the run gives up.
const SYNC_DEADLINE: Duration = Duration::from_secs(1_800);

fn now() -> Now {
    Now {
        local: LocalTime::from_millis(1_000),
        unix_ms: 4_000_000_000_000,
    }
}

/// `count` empty blocks' headers in a chain on genesis (valid regtest proof of work).
fn header_chain(count: usize) -> Vec<Header> {
    let mut parent = REGTEST.genesis_block().header;
    (0..count)
        .map(|height| {
            let block = make_block(
                &REGTEST,
                &parent,
                height as u64,
                parent.time + 1,
                Address([1; 20]),
                vec![],
            );
            parent = block.header;
            block.header
        })
        .collect()
}

fn headers_benchmark() {
    let setup = Instant::now();
    let headers = header_chain(HEADERS);
    println!(
        "(b) headers: built {HEADERS} headers in {:.1?}",
        setup.elapsed()
    );

    let mut tree = HeaderTree::new(&REGTEST);
    let started = Instant::now();
    for chunk in headers.chunks(PER_MESSAGE) {
        let (_, error) = tree.accept(chunk, now().unix_secs());
        assert!(error.is_none(), "{error:?}");
    }
    let tree_secs = started.elapsed().as_secs_f64();

    let mut cfg = CoreConfig::new(NodeId([0; 32]));
    cfg.connect_only = true;
    let mut core = Core::new(cfg, AddrMan::new([1; 32]), BanList::default());
    let peer_id = NodeId([7; 32]);
    let addr = "127.0.0.1:8333".parse().unwrap();
    let inputs = [
        Input::Connected {
            peer: 1,
            addr,
            dial: None,
            node_id: peer_id,
        },
        Input::Received {
            peer: 1,
            message: Message::Version(Box::new(Version {
                protocol_version: PROTOCOL_VERSION,
                services: 1,
                timestamp: 0,
                receiver: NetAddress::new(addr, 0),
                sender: NetAddress::new(addr, 0),
                nonce: 1,
                user_agent: BoundedString::truncating("/bench/"),
                best_height: HEADERS as u64,
                node_id: peer_id,
                relay: true,
            })),
        },
        Input::Received {
            peer: 1,
            message: Message::Verack,
        },
    ];
    for input in inputs {
        core.handle(now(), input).unwrap();
    }
    core.drain_outputs();
    let started = Instant::now();
    for chunk in headers.chunks(PER_MESSAGE) {
        let message = Message::Headers(BoundedVec::new(chunk.to_vec()).unwrap());
        core.handle(now(), Input::Received { peer: 1, message })
            .unwrap();
        core.drain_outputs();
    }
    let core_secs = started.elapsed().as_secs_f64();
    assert_eq!(core.headers().best_height(), HEADERS as u64);
    println!(
        "(b) headers through the core: {:>10.0} headers/s ({core_secs:.3} s)   header tree alone: {:>10.0} headers/s ({tree_secs:.3} s)   target >= 200,000/s",
        HEADERS as f64 / core_secs,
        HEADERS as f64 / tree_secs,
    );
}

/// Funding, then `count` blocks of 1,000 transfers (each sender spends once per block).
/// Funding, then two blocks of `PROPAGATED_TXS` transfers: sender 1 + i % `SENDERS` sends
/// its next nonce with each transfer i, so a block holds a few nonces of each sender in order.
fn propagated_blocks(keys: &Keys) -> (Vec<Block>, [Block; 2]) {
    let fund = funding(keys);
    let mut parent = fund.last().unwrap().header;
    let mut made = Vec::new();
    for (height, k) in (fund.len() as u64..).zip(0..2) {
        let specs: Vec<_> = (0..PROPAGATED_TXS)
            .map(|i| {
                let n = k * PROPAGATED_TXS + i;
                let from = 1 + n % SENDERS;
                (
                    from,
                    keys.address(1 + (from % SENDERS)),
                    10,
                    PROPAGATED_FEE,
                    (n / SENDERS) as u64,
                )
            })
            .collect();
        let block = next_block(keys, &parent, height, sign_all(keys, &specs));
        parent = block.header;
        made.push(block);
    }
    let second = made.pop().unwrap();
    let first = made.pop().unwrap();
    (fund, [first, second])
}

fn best(node: &TestNode) -> serde_json::Value {
    node.rpc("getbestblockhash", json!([])).unwrap()
}

fn propagation_benchmark() {
    let keys = Keys::new(SENDERS + 1);
    let (fund, [fresh, relayed]) = propagated_blocks(&keys);
    // `--connect` keeps the line a line (no address gossip dials); the first node's is a
    // closed port, so it dials nothing either.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let mut line: Vec<TestNode> = vec![TestNode::start(&["--connect", &closed])];
    for i in 1..LINE {
        let before = line[i - 1].p2p_addr().to_string();
        line.push(TestNode::start(&["--connect", &before]));
    }
    wait_until(HOP_DEADLINE, "the line to connect", || {
        line.iter().skip(1).all(|n| !n.ready_peers().is_empty())
    });
    for block in &fund {
        line[0].submit_block(block).unwrap();
    }
    let funded = best(&line[0]);
    wait_until(HOP_DEADLINE, "the funding to travel", || {
        line.iter().all(|n| best(n) == funded)
    });
    let size = noded::encoding::encode(&fresh).len();
    let (fresh_ms, fresh_cpu) = time_along_line(&line, &fresh);
    print_hops(
        &format!("(c) a {PROPAGATED_TXS}-transfer block ({size} bytes) no mempool has seen"),
        &fresh_ms,
    );
    print_cpu(fresh_cpu);
    // Each node verifies each of the block's signatures, and the five share the cores.
    let rate = ceiling::verification_rate(&fresh.transactions.as_slice()[1..]);
    println!(
        "    ceiling: this machine batch-verifies these signatures at {rate:.0}/s on its {} cores with nothing else running; {LINE} nodes verifying {PROPAGATED_TXS} each take at least {:.0} ms",
        ceiling::cores(),
        (LINE * PROPAGATED_TXS) as f64 / rate * 1_000.0
    );
    // The second block's transfers go into node 0's mempool and travel the line first.
    for chunk in relayed.transactions.as_slice()[1..].chunks(RPC_BATCH) {
        let calls: Vec<(&str, serde_json::Value)> = chunk
            .iter()
            .map(|tx| {
                let hex = hex::encode(noded::encoding::encode(tx));
                ("sendrawtransaction", json!([hex]))
            })
            .collect();
        for answer in rpc_batch(&line[0], &calls) {
            assert!(answer.get("error").is_none(), "{answer}");
        }
    }
    wait_until(HOP_DEADLINE, "the transfers in every mempool", || {
        line.iter()
            .all(|n| rpc(n, "getmempoolinfo", json!([]))["size"] == json!(PROPAGATED_TXS))
    });
    let (relayed_ms, relayed_cpu) = time_along_line(&line, &relayed);
    print_hops(
        &format!(
            "(c) the next {PROPAGATED_TXS}-transfer block, every mempool holding its transfers"
        ),
        &relayed_ms,
    );
    print_cpu(relayed_cpu);
    let total = |key: &str| -> u64 {
        line.iter()
            .flat_map(|n| rpc(n, "getpeerinfo", json!([])).as_array().unwrap().clone())
            .map(|p| p[key].as_u64().unwrap())
            .sum()
    };
    let (rebuilt, round_trips) = (total("cmpct_rebuilt"), total("blocktxn_requested"));
    println!(
        "    compact blocks over the run: {rebuilt} rebuilt without a round trip, {round_trips} needed GETBLOCKTXN"
    );
}

/// Submits `block` at the line's first node; milliseconds from the submission until each
/// node has it as its tip (node 0: `submitblock` returning, the block validated and
/// connected), and the CPU time the nodes used from the submission until the last had it.
/// Each node is watched by a `waitforblock` call made before the submission, which the node
/// answers when the block becomes its tip: polling the five nodes instead would load the two
/// cores the nodes share.
fn time_along_line(line: &[TestNode], block: &Block) -> (Vec<f64>, f64) {
    let hash = block.hash().to_string();
    let started = std::sync::Arc::new(std::sync::OnceLock::<Instant>::new());
    let waiters: Vec<_> = line
        .iter()
        .map(|node| {
            let (addr, cookie) = (node.rpc_addr, node.cookie.clone());
            let (hash, started) = (hash.clone(), started.clone());
            std::thread::spawn(move || {
                let limit = HOP_DEADLINE.as_millis() as u64;
                let tip =
                    noded::rpc::client::call(addr, &cookie, "waitforblock", json!([hash, limit]))
                        .expect("waitforblock");
                let elapsed = started
                    .get()
                    .expect("answered after the submission")
                    .elapsed();
                assert_eq!(tip["hash"], json!(hash), "a block did not travel");
                elapsed.as_secs_f64() * 1_000.0
            })
        })
        .collect();
    wait_until(HOP_DEADLINE, "every node waiting for the block", || {
        line.iter().all(|node| {
            rpc(node, "getrpcinfo", json!([]))["active_commands"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c["method"] == "waitforblock")
        })
    });
    let pids: Vec<u32> = line.iter().map(|n| n.child.id()).collect();
    let cpu_before = ceiling::total_cpu(&pids);
    started.set(Instant::now()).unwrap();
    line[0].submit_block(block).unwrap();
    let ms = waiters.into_iter().map(|w| w.join().unwrap()).collect();
    (ms, ceiling::total_cpu(&pids) - cpu_before)
}

/// The nodes' CPU seconds over a propagation, and the least wall time that much work takes
/// on the cores they share.
fn print_cpu(cpu: f64) {
    let ms = cpu * 1_000.0;
    println!(
        "    the {LINE} nodes' CPU from the submission until the last had it: {ms:.0} ms ({:.0} ms of wall time on {} cores at the least)",
        ms / ceiling::cores() as f64,
        ceiling::cores()
    );
}

fn print_hops(what: &str, ms: &[f64]) {
    print!("{what}, ms from submission until each node has it:");
    for (i, t) in ms.iter().enumerate() {
        print!("  node {i}: {t:.1}");
    }
    println!();
}

/// Funding, then `SYNC_BLOCKS` blocks of `SYNC_TXS` transfers: block k is sent by one of
/// twenty groups of senders, each sender spending once per twenty blocks.
fn sync_chain(keys: &Keys) -> (Vec<Block>, Vec<Block>) {
    let fund = funding(keys);
    let mut parent = fund.last().unwrap().header;
    let mut height = fund.len() as u64;
    let mut specs_per_block = Vec::with_capacity(SYNC_BLOCKS);
    for k in 0..SYNC_BLOCKS {
        let group = k % 20;
        let nonce = (k / 20) as u64;
        let specs: Vec<_> = (0..SYNC_TXS)
            .map(|i| {
                let from = 1 + group * SYNC_TXS + i;
                (
                    from,
                    keys.address(1 + (from + 1) % (2 * TXS_PER_BLOCK)),
                    1,
                    1,
                    nonce,
                )
            })
            .collect();
        specs_per_block.push(specs);
    }
    let all: Vec<_> = specs_per_block.iter().flatten().copied().collect();
    let mut signed = sign_all(keys, &all).into_iter();
    let mut out = Vec::with_capacity(SYNC_BLOCKS);
    for _ in 0..SYNC_BLOCKS {
        let txs: Vec<_> = signed.by_ref().take(SYNC_TXS).collect();
        let block = next_block(keys, &parent, height, txs);
        parent = block.header;
        height += 1;
        out.push(block);
    }
    (fund, out)
}

/// Imports the blocks into `<datadir>/chain/regtest` through the chain writer, at most
/// `OFFLINE_IN_FLIGHT` at a time in block order; the time the sync benchmark's blocks took.
fn offline_import(datadir: &std::path::Path, fund: &[Block], blocks: &[Block]) -> Duration {
    use noded::chain::{writer, Chain, ChainOptions};
    let path = datadir.join("chain").join("regtest");
    std::fs::create_dir_all(datadir.join("chain")).unwrap();
    let chain = Chain::open(&path, &REGTEST, ChainOptions::default()).expect("open chain");
    let (handle, thread) = writer::spawn(chain);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let elapsed = runtime.block_on(async {
        for block in fund {
            handle.submit_block(block.clone()).await.expect("funding");
        }
        let started = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for block in blocks {
            if tasks.len() >= OFFLINE_IN_FLIGHT {
                tasks.join_next().await.unwrap().unwrap();
            }
            let (handle, block) = (handle.clone(), block.clone());
            tasks.spawn(async move {
                handle.submit_block(block).await.expect("valid block");
            });
        }
        while tasks.join_next().await.is_some() {}
        handle.flush().await.unwrap();
        let elapsed = started.elapsed();
        let tip = handle.tip().height;
        assert_eq!(tip as usize, fund.len() + blocks.len());
        // The transaction index follows in the background: let it finish (untimed), or the
        // serving nodes started on copies of this store would spend the sync indexing.
        let deadline = Instant::now() + SYNC_DEADLINE;
        while handle.reader().tx_index_height().unwrap() < Some(tip) {
            assert!(
                Instant::now() < deadline,
                "the transaction index never caught up"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        handle.shutdown().await.unwrap();
        elapsed
    });
    thread.join();
    elapsed
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

fn count(node: &TestNode) -> u64 {
    node.rpc("getblockcount", json!([]))
        .unwrap()
        .as_u64()
        .unwrap()
}

fn initial_sync_benchmark() {
    let setup = Instant::now();
    let keys = Keys::new(2 * TXS_PER_BLOCK + 1);
    let (fund, blocks) = sync_chain(&keys);
    let total = (fund.len() + blocks.len()) as u64;
    println!(
        "(a) initial sync: built {SYNC_BLOCKS} blocks of {SYNC_TXS} transfers in {:.1?}",
        setup.elapsed()
    );
    let server_dirs: Vec<tempfile::TempDir> =
        (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let offline = offline_import(server_dirs[0].path(), &fund, &blocks);
    for dir in &server_dirs[1..] {
        copy_dir(
            &server_dirs[0].path().join("chain"),
            &dir.path().join("chain"),
        );
    }
    let offline_rate = SYNC_BLOCKS as f64 / offline.as_secs_f64();
    println!(
        "(a) offline connect through the chain writer: {:>8.0} blocks/s {:>9.0} transfers/s ({:.1} s)",
        offline_rate,
        offline_rate * SYNC_TXS as f64,
        offline.as_secs_f64()
    );
    let servers: Vec<TestNode> = server_dirs
        .iter()
        .map(|d| TestNode::start_in(d.path(), &[], |_| {}))
        .collect();
    let mut synced = Vec::new();
    for serving in [1usize, 3] {
        let args: Vec<String> = servers[..serving]
            .iter()
            .flat_map(|s| ["--addnode".to_string(), s.p2p_addr().to_string()])
            .collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let started = Instant::now();
        let fresh = TestNode::start(&args);
        wait_until(SYNC_DEADLINE, "the fresh node to sync", || {
            count(&fresh) == total
        });
        let secs = started.elapsed().as_secs_f64();
        synced.push((serving, total as f64 / secs, secs));
    }
    drop(servers);
    // The offline rate again, after the syncs: this machine's speed drifts, so each sync is
    // compared with the faster of the two (the stricter ratio).
    let again = tempfile::tempdir().unwrap();
    let offline_after =
        SYNC_BLOCKS as f64 / offline_import(again.path(), &fund, &blocks).as_secs_f64();
    println!(
        "(a) offline connect again, after the syncs:   {:>8.0} blocks/s {:>9.0} transfers/s",
        offline_after,
        offline_after * SYNC_TXS as f64,
    );
    let best_offline = offline_rate.max(offline_after);
    for (serving, rate, secs) in synced {
        println!(
            "(a) synced from {serving} server(s): {:>8.0} blocks/s {:>9.0} transfers/s ({secs:.1} s, node start included), {:.2} of the faster offline rate   target >= 0.8",
            rate,
            rate * SYNC_TXS as f64,
            rate / best_offline
        );
    }
}

/// `cargo bench --bench sync` runs all three; `-- a` (or `b`, `c`, in any mix) only those.
fn main() {
    let picked: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let run = |name: &str| picked.is_empty() || picked.iter().any(|p| p == name);
    if run("b") {
        headers_benchmark();
    }
    if run("c") {
        propagation_benchmark();
    }
    if run("a") {
        initial_sync_benchmark();
    }
}
