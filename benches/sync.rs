//! Sync benchmark (`cargo bench --bench sync`): how fast headers and blocks move.
//!
//! (b) headers: 100,000 headers from one peer, as HEADERS messages of 2,000, through the
//!     protocol core (checks, tree, the sync and download managers), with the header tree
//!     alone beside it for the same headers.
//! (c) propagation: five `noded` processes in a line on 127.0.0.1 (release build, TLS 1.3);
//!     blocks of 1,000 transfers submitted at one end: milliseconds until each hop has it.
//!
//! Prints figures; asserts nothing beyond the runs completing.

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "support/blocks.rs"]
mod blocks;

use blocks::{funding, sign_all, TXS_PER_BLOCK};
use common::{wait_until, TestNode};
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
/// Blocks of 1,000 transfers sent down the line.
const PROPAGATED: usize = 5;
/// How long a block may take to reach the end of the line before the run gives up.
const HOP_DEADLINE: Duration = Duration::from_secs(60);

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
            message: Message::Version(Version {
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
            }),
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
fn transfer_chain(keys: &Keys, count: usize) -> (Vec<Block>, Vec<Block>) {
    let fund = funding(keys);
    let mut parent = fund.last().unwrap().header;
    let mut height = fund.len() as u64;
    let mut loaded = Vec::new();
    for k in 0..count {
        let half = k % 2;
        let nonce = (k / 2) as u64;
        let specs: Vec<_> = (0..TXS_PER_BLOCK)
            .map(|i| {
                let from = 1 + half * TXS_PER_BLOCK + i;
                (from, keys.address(1 + (from % (2 * TXS_PER_BLOCK))), 10, 1, nonce)
            })
            .collect();
        let txs = sign_all(keys, &specs);
        let block = make_block(
            &REGTEST,
            &parent,
            height,
            parent.time + 1,
            keys.address(0),
            txs,
        );
        parent = block.header;
        height += 1;
        loaded.push(block);
    }
    (fund, loaded)
}

fn best(node: &TestNode) -> serde_json::Value {
    node.rpc("getbestblockhash", json!([])).unwrap()
}

fn propagation_benchmark() {
    let keys = Keys::new(2 * TXS_PER_BLOCK + 1);
    let (fund, loaded) = transfer_chain(&keys, PROPAGATED);
    let mut line: Vec<TestNode> = vec![TestNode::start(&[])];
    for i in 1..LINE {
        let before = line[i - 1].p2p_addr().to_string();
        line.push(TestNode::start(&["--addnode", &before]));
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
    let mut per_hop: Vec<Vec<f64>> = vec![Vec::new(); LINE];
    for block in &loaded {
        let hash = json!(block.hash().to_string());
        let started = Instant::now();
        line[0].submit_block(block).unwrap();
        let mut arrived = vec![None; LINE];
        while arrived.iter().any(Option::is_none) {
            assert!(started.elapsed() < HOP_DEADLINE, "a block did not travel");
            for (i, node) in line.iter().enumerate() {
                if arrived[i].is_none() && best(node) == hash {
                    arrived[i] = Some(started.elapsed().as_secs_f64() * 1_000.0);
                }
            }
        }
        for (i, at) in arrived.into_iter().enumerate() {
            per_hop[i].push(at.unwrap());
        }
    }
    let size = noded::encoding::encode(&loaded[0]).len();
    print!("(c) propagation of {TXS_PER_BLOCK}-transfer blocks ({size} bytes) along {LINE} nodes, median ms until each hop has it:");
    for (i, times) in per_hop.iter_mut().enumerate() {
        times.sort_by(f64::total_cmp);
        print!("  node {i}: {:.1}", times[times.len() / 2]);
    }
    println!("  (node 0: submitblock returning, the block validated and connected)");
}

fn main() {
    headers_benchmark();
    propagation_benchmark();
}
