//! Crash safety through the binary: a regtest `noded` importing pre-mined blocks by
//! `submitblock` (two branches, the second overtaking the first with a 60-block reorg) is
//! killed with SIGKILL at seeded random points, 100 times, flushing its pending account state
//! every 3 to 12 blocks. After every restart it must open, sit on a prefix of one of the two
//! branches, and pass `verifychain` (the stored account state equals a replay of its chain).
//! A last run imports everything and stops cleanly.
//!
//! A reorg cycle kills only when it has seen the tip at its kill point while the reorg call
//! is still outstanding; a reorg that ran to its end first (too fast for the poll) is undone
//! by the next one on the same node, up to `MAX_REORG_ATTEMPTS` times, so the kills land
//! mid-reorg however fast or loaded the machine is.

mod common;

use common::*;
use noded::chain::testkit::{make_block, Keys, TestChainBuilder};
use noded::params::REGTEST;
use noded::types::{Block, Hash256};
use rand::{Rng, SeedableRng};
use serde_json::json;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Kill cycles: the storage issue asks for 100 through the binary, during import and reorg.
const CYCLES: usize = 100;
const MAIN_LEN: usize = 100;
const FORK_AT: usize = 40;
const FORK_LEN: usize = 70;

/// Branch A: heights 1..=100 with transfers; branch B: from A's block at height 40, 70
/// coinbase-and-transfer blocks (height 110), so importing B after A reorganises 60 blocks.
fn premine() -> (Vec<Block>, Vec<Block>) {
    let keys = Keys::new(4);
    let mut a = TestChainBuilder::new(&REGTEST);
    for i in 0..MAIN_LEN {
        let mut txs = vec![];
        if i >= 1 {
            let from = i % 2;
            let nonce = a.account(&keys.address(from)).nonce;
            if a.account(&keys.address(from)).balance.0 > 2_000 {
                txs.push(keys.transfer(&REGTEST, from, keys.address(2), 1_000, 7, nonce));
            }
        }
        a.build(keys.address(i % 2), txs);
    }
    let a_blocks = a.blocks().to_vec();
    // Branch B pays key 3 and moves coin from key 3 to key 2.
    let mut b_blocks: Vec<Block> = vec![];
    let mut parent = a_blocks[FORK_AT - 1].header;
    let mut key3_nonce = 0;
    for i in 0..FORK_LEN {
        let height = FORK_AT as u64 + i as u64;
        let txs = if i >= 1 {
            key3_nonce += 1;
            vec![keys.transfer(&REGTEST, 3, keys.address(2), 500, 3, key3_nonce - 1)]
        } else {
            vec![]
        };
        let block = make_block(
            &REGTEST,
            &parent,
            height,
            parent.time + 13,
            keys.address(3),
            txs,
        );
        parent = block.header;
        b_blocks.push(block);
    }
    (a_blocks, b_blocks)
}

fn count(node: &TestNode) -> u64 {
    node.rpc("getblockcount", json!([]))
        .expect("getblockcount")
        .as_u64()
        .unwrap()
}

/// The node's active chain must be a prefix of branch A or of branch B, and verifychain ok.
fn check_consistent(node: &TestNode, where_is: &HashMap<Hash256, (char, usize)>) -> u64 {
    let height = count(node);
    let best: Hash256 = node
        .rpc("getbestblockhash", json!([]))
        .unwrap()
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    if height > 0 {
        let (branch, h) = where_is[&best];
        assert_eq!(h as u64, height, "tip {best} is at its branch height");
        // Every main-chain block is the branch's block at that height.
        for hh in 1..=height {
            let hash: Hash256 = node
                .rpc("getblockhash", json!([hh]))
                .unwrap()
                .as_str()
                .unwrap()
                .parse()
                .unwrap();
            let (b, at) = where_is[&hash];
            assert_eq!(at as u64, hh);
            assert!(
                b == branch || (branch == 'B' && b == 'A' && hh as usize <= FORK_AT),
                "height {hh} is on branch {b}, the tip on {branch}"
            );
        }
    } else {
        assert_eq!(best, REGTEST.genesis_hash());
    }
    let report = node.rpc("verifychain", json!([])).expect("verifychain");
    assert_eq!(report["ok"], true, "verifychain: {report}");
    assert_eq!(report["height"], height);
    height
}

fn parse_hash(v: serde_json::Value) -> Hash256 {
    v.as_str().expect("a hash").parse().expect("a hash")
}

/// How a cycle picks its moment to kill.
#[derive(Clone, Copy, Debug)]
enum KillAt {
    /// After this many blocks were newly accepted by submitblock (import cycles).
    Submitted(usize),
    /// During the reorg, once the tip has come down to at most this height.
    Descending(u64),
    /// During the reorg, after the fork point, once the tip has climbed to this height.
    Ascending(u64),
}

/// Most reorgs a reorg cycle runs on one node before one is killed at its kill point.
const MAX_REORG_ATTEMPTS: usize = 50;

/// Submits every block from a worker thread and kills the node once `kill_at` new blocks were
/// accepted (or the worker is done). Returns the new blocks counted and the height killed at.
fn import_and_kill(node: &mut TestNode, all: &Arc<Vec<Block>>, kill_at: KillAt) -> (usize, u64) {
    let KillAt::Submitted(n) = kill_at else {
        panic!("{kill_at:?} is not an import kill point")
    };
    let submitted = Arc::new(AtomicUsize::new(0));
    let (rpc_addr, cookie) = (node.rpc_addr, node.cookie.clone());
    let (blocks, counter) = (all.clone(), submitted.clone());
    let worker = std::thread::spawn(move || {
        for block in blocks.iter() {
            let hex = hex::encode(noded::encoding::encode(block));
            match noded::rpc::client::call(rpc_addr, &cookie, "submitblock", json!([hex])) {
                Ok(reply) if reply == json!("duplicate") => {}
                Ok(_) => {
                    counter.fetch_add(1, Ordering::SeqCst);
                }
                Err(_) => return, // killed
            }
        }
    });
    wait_until(Duration::from_secs(60), "the kill point", || {
        worker.is_finished() || submitted.load(Ordering::SeqCst) >= n
    });
    let at = count(node);
    let status = node.kill_hard();
    assert!(!status.success(), "killed, not exited");
    worker.join().unwrap();
    (submitted.load(Ordering::SeqCst), at)
}

/// How one reorg under a kill point went.
enum ReorgRun {
    /// The reorg ran to its end (its call replied) before the kill point was seen; the node
    /// is still running.
    Finished { method: &'static str },
    /// The node was killed with its tip at `at`, strictly between the fork point and the
    /// reorg's end, while the reorg call was outstanding; `replied` if the reply came anyway
    /// (the reorg finished between the last look at the tip and the kill).
    Killed {
        method: &'static str,
        at: u64,
        replied: bool,
    },
}

/// Switches branch (invalidateblock on B's first block when B is active, else
/// reconsiderblock) from a worker thread, polls the tip, and kills the node when the tip
/// reaches `kill_at` while the reorg is under way, that is while the call has not replied and
/// the tip is strictly between the fork point and the branch the reorg ends on.
fn reorg_and_kill(
    node: &mut TestNode,
    b_first: &str,
    b_last: Hash256,
    kill_at: KillAt,
) -> ReorgRun {
    let best = parse_hash(node.rpc("getbestblockhash", json!([])).unwrap());
    let (method, end) = if best == b_last {
        ("invalidateblock", MAIN_LEN as u64)
    } else {
        ("reconsiderblock", (FORK_AT + FORK_LEN) as u64)
    };
    let (rpc_addr, cookie) = (node.rpc_addr, node.cookie.clone());
    let b_first = b_first.to_string();
    let worker = std::thread::spawn(move || {
        noded::rpc::client::call(rpc_addr, &cookie, method, json!([b_first])).is_ok()
    });
    let mut reached_fork = false;
    let mut last_seen = count(node);
    wait_until(
        Duration::from_secs(60),
        "the kill point or the reorg's end",
        || {
            if worker.is_finished() {
                return true;
            }
            last_seen = count(node);
            reached_fork |= last_seen <= FORK_AT as u64;
            let under_way = last_seen > FORK_AT as u64 && last_seen < end;
            under_way
                && match kill_at {
                    KillAt::Descending(h) => !reached_fork && last_seen <= h,
                    KillAt::Ascending(h) => reached_fork && last_seen >= h,
                    KillAt::Submitted(_) => panic!("not a reorg kill point"),
                }
        },
    );
    if worker.is_finished() {
        assert!(worker.join().unwrap(), "{method} failed");
        assert_eq!(count(node), end, "{method} ended on its branch's tip");
        return ReorgRun::Finished { method };
    }
    let status = node.kill_hard();
    assert!(!status.success(), "killed, not exited");
    ReorgRun::Killed {
        method,
        at: last_seen,
        replied: worker.join().unwrap(),
    }
}

#[test]
fn kill_9_during_import_and_reorg_never_corrupts_the_store() {
    let (a, b) = premine();
    let mut where_is: HashMap<Hash256, (char, usize)> = HashMap::new();
    for (i, blk) in a.iter().enumerate() {
        where_is.insert(blk.hash(), ('A', i + 1));
    }
    for (i, blk) in b.iter().enumerate() {
        where_is.insert(blk.hash(), ('B', FORK_AT + i + 1));
    }
    let all: Arc<Vec<Block>> = Arc::new(a.iter().chain(b.iter()).cloned().collect());
    let b_first = b[0].hash().to_string();
    let b_last = b.last().unwrap().hash();
    let dir = tempfile::tempdir().unwrap();
    let datadir = dir.path().to_path_buf();
    let seed = 0x5eed_c0de_u64;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut log = vec![];
    let mut mid_reorg_kills = 0;
    let started = Instant::now();

    for cycle in 0..CYCLES {
        remove_stale_rpc_files(&datadir);
        // The pending account state is flushed every few blocks (not every 500), so kills
        // land around state flushes and the reorgs disconnect blocks on both sides of the
        // state marker.
        let flush_every = rng.gen_range(3..=12usize).to_string();
        let mut node = TestNode::start_in(
            &datadir,
            &["--debug-state-flush-blocks", &flush_every],
            |_| {},
        );
        let height = check_consistent(&node, &where_is);

        // Import cycles resubmit everything (known blocks answer at once) and are killed
        // after a random number of new blocks. Reorg cycles first make sure everything is
        // imported, then switch branches with invalidateblock / reconsiderblock on B's first
        // block (a 60- or 70-block disconnect and reconnect) and are killed at a random
        // height on the way down or up.
        let line = if cycle < 3 {
            let kill_at = KillAt::Submitted(rng.gen_range(5..60));
            let (submitted, killed_at) = import_and_kill(&mut node, &all, kill_at);
            format!("{kill_at:?}, killed after {submitted} new blocks at {killed_at}")
        } else {
            for block in all.iter() {
                node.submit_block(block).expect("submitblock");
            }
            let mut missed = vec![];
            loop {
                let kill_at = if rng.gen_bool(0.5) {
                    KillAt::Descending(rng.gen_range(FORK_AT as u64 + 1..MAIN_LEN as u64))
                } else {
                    KillAt::Ascending(rng.gen_range(FORK_AT as u64 + 1..MAIN_LEN as u64))
                };
                match reorg_and_kill(&mut node, &b_first, b_last, kill_at) {
                    ReorgRun::Finished { method } => {
                        // The poll never saw the tip at the kill point while the reorg ran:
                        // the node is still up, so reorganise back and try again.
                        missed.push(format!("{method} finished before {kill_at:?}"));
                        assert!(
                            missed.len() < MAX_REORG_ATTEMPTS,
                            "cycle {cycle}: no reorg killed at its kill point in \
                             {MAX_REORG_ATTEMPTS} tries: {missed:?}"
                        );
                    }
                    ReorgRun::Killed {
                        method,
                        at,
                        replied,
                    } => {
                        // Killed with the tip seen strictly between the fork point and
                        // the reorg's end; it was mid-reorg unless the reply still came.
                        let mid_reorg = !replied;
                        mid_reorg_kills += mid_reorg as usize;
                        break format!(
                            "{method} {kill_at:?}, killed at {at}{}{}",
                            if mid_reorg {
                                " (mid-reorg)"
                            } else {
                                " (after the reply)"
                            },
                            if missed.is_empty() {
                                String::new()
                            } else {
                                format!(" after {} missed tries", missed.len())
                            }
                        );
                    }
                }
            }
        };
        log.push(format!(
            "cycle {cycle}: flush every {flush_every}, opened at {height}, {line}"
        ));
    }

    // Last run: everything imports, and the node ends on B (if B stands marked invalid from
    // the last cycle, reconsider it), then a clean stop exits 0.
    remove_stale_rpc_files(&datadir);
    let mut node = TestNode::start_in(&datadir, &[], |_| {});
    check_consistent(&node, &where_is);
    for block in all.iter() {
        node.submit_block(block).expect("submitblock");
    }
    node.rpc("reconsiderblock", json!([b_first]))
        .expect("reconsiderblock");
    let height = check_consistent(&node, &where_is);
    assert_eq!(height as usize, FORK_AT + FORK_LEN);
    assert_eq!(
        parse_hash(node.rpc("getbestblockhash", json!([])).unwrap()),
        b_last
    );
    assert!(node.stop().success());
    eprintln!(
        "seed {seed:#x}, {:?} in all:\n{}",
        started.elapsed(),
        log.join("\n")
    );
    assert!(
        mid_reorg_kills >= 1,
        "no kill landed in the middle of a reorg:\n{}",
        log.join("\n")
    );
}
