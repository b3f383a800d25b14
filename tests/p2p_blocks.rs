//! Blocks over the network between real `noded` processes on 127.0.0.1, driven over
//! JSON-RPC only: a node that joins catches up, blocks mined later travel to every node, and
//! nodes that mined apart converge on the most-work chain.

mod common;

use common::*;
use serde_json::{json, Value};
use std::time::Duration;

const SYNC_DEADLINE: Duration = Duration::from_secs(60);

fn count(node: &TestNode) -> u64 {
    node.rpc("getblockcount", json!([]))
        .unwrap()
        .as_u64()
        .unwrap()
}

fn best(node: &TestNode) -> Value {
    node.rpc("getbestblockhash", json!([])).unwrap()
}

fn generate(node: &TestNode, n: u64) {
    let hashes = node.rpc("generate", json!([n])).unwrap();
    assert_eq!(hashes.as_array().unwrap().len() as u64, n);
}

#[test]
fn a_joining_node_catches_up_and_new_blocks_travel_a_line() {
    let a = TestNode::start(&[]);
    generate(&a, 30);
    // A line: a - b - c.
    let b = TestNode::start(&["--addnode", &a.p2p_addr().to_string()]);
    let c = TestNode::start(&["--addnode", &b.p2p_addr().to_string()]);
    wait_until(SYNC_DEADLINE, "b and c to catch up with a", || {
        count(&b) == 30 && count(&c) == 30
    });
    assert_eq!(best(&c), best(&a));
    let info = c.rpc("getblockchaininfo", json!([])).unwrap();
    assert_eq!(info["headers"], json!(30), "{info}");
    assert_eq!(info["initialblockdownload"], json!(false), "{info}");
    assert_eq!(info["verificationprogress"], json!(1.0), "{info}");
    let peer = &c.rpc("getpeerinfo", json!([])).unwrap()[0];
    assert_eq!(peer["synced_headers"], json!(30), "{peer}");
    assert_eq!(peer["synced_blocks"], json!(30), "{peer}");
    assert_eq!(peer["inflight"], json!([]), "{peer}");
    // Mined later at one end, seen at the other.
    generate(&a, 3);
    wait_until(SYNC_DEADLINE, "c to follow a", || best(&c) == best(&a));
    // And the other way.
    generate(&c, 2);
    wait_until(SYNC_DEADLINE, "a to follow c", || best(&a) == best(&c));
    assert_eq!(count(&a), 35);
    for node in [&a, &b, &c] {
        let report = node.rpc("verifychain", json!([])).unwrap();
        assert_eq!(report["ok"], json!(true), "{report}");
        assert_eq!(report["height"], json!(35), "{report}");
    }
}

#[test]
fn nodes_that_mined_apart_converge_on_the_most_work_chain() {
    let a = TestNode::start(&[]);
    let b = TestNode::start(&[]);
    generate(&a, 3);
    generate(&b, 5);
    assert_ne!(best(&a), best(&b));
    let added = a.rpc("addnode", json!([b.p2p_addr().to_string(), "add"]));
    assert!(added.is_ok(), "{added:?}");
    wait_until(
        SYNC_DEADLINE,
        "a to reorganise onto b's heavier chain",
        || best(&a) == best(&b),
    );
    assert_eq!(count(&a), 5);
    // b's chain stays: a's lighter branch is a side branch for both.
    assert_eq!(count(&b), 5);
}

/// Five nodes in a line; the middle one is killed with SIGKILL, both sides mine apart (one
/// side more), and once it is back all five follow the most-work chain, each with a store
/// that `verifychain` finds consistent.
#[test]
fn a_line_split_by_a_killed_node_converges_on_the_most_work_chain() {
    let mut nodes: Vec<TestNode> = vec![TestNode::start(&[])];
    for i in 1..5 {
        let before = nodes[i - 1].p2p_addr().to_string();
        nodes.push(TestNode::start(&["--addnode", &before]));
    }
    generate(&nodes[0], 5);
    wait_until(SYNC_DEADLINE, "the line to reach height 5", || {
        nodes.iter().all(|n| count(n) == 5)
    });
    // The middle node dies hard; the two sides mine apart, the right side more.
    let middle_dir = nodes[2].datadir.clone();
    nodes[2].kill_hard();
    generate(&nodes[0], 3);
    generate(&nodes[4], 6);
    wait_until(SYNC_DEADLINE, "each side to share its own branch", || {
        count(&nodes[1]) == 8 && count(&nodes[3]) == 11
    });
    // Back, on a new port: it dials both neighbours itself.
    remove_stale_rpc_files(&middle_dir);
    let (left, right) = (
        nodes[1].p2p_addr().to_string(),
        nodes[3].p2p_addr().to_string(),
    );
    let restarted = TestNode::start_in(
        &middle_dir,
        &["--addnode", &left, "--addnode", &right],
        |_| {},
    );
    let heavier = best(&nodes[4]);
    wait_until(
        SYNC_DEADLINE,
        "all five to follow the heavier chain",
        || {
            best(&restarted) == heavier
                && nodes
                    .iter()
                    .enumerate()
                    .all(|(i, n)| i == 2 || best(n) == heavier)
        },
    );
    for node in nodes
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 2)
        .map(|(_, n)| n)
        .chain([&restarted])
    {
        let report = node.rpc("verifychain", json!([])).unwrap();
        assert_eq!(report["ok"], json!(true), "{report}");
        assert_eq!(report["height"], json!(11), "{report}");
    }
}
