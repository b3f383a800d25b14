mod common;
use common::*;
use noded::chain::testkit::{make_block, Keys};
use noded::params::REGTEST;
use serde_json::json;
use std::time::Duration;

#[test]
fn debug_funding() {
    let keys = Keys::new(3);
    let genesis = REGTEST.genesis_block().header;
    let b1 = make_block(&REGTEST, &genesis, 0, genesis.time + 1, keys.address(0), vec![]);
    let txs: Vec<_> = (0..1000).map(|n| keys.transfer(&REGTEST, 0, keys.address(1), 10, 1, n)).collect();
    let b2 = make_block(&REGTEST, &b1.header, 1, b1.header.time + 1, keys.address(0), txs);
    let txs: Vec<_> = (1000..2000).map(|n| keys.transfer(&REGTEST, 0, keys.address(1), 10, 1, n)).collect();
    let b3 = make_block(&REGTEST, &b2.header, 2, b2.header.time + 1, keys.address(0), txs);
    let mut nodes: Vec<TestNode> = Vec::new();
    for i in 0..5 {
        let dir = std::path::PathBuf::from(format!("/tmp/cb/n{i}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut args = vec!["--log-level".to_string(), "info,noded::protocol=debug".to_string()];
        if i > 0 { args.push("--connect".into()); args.push(nodes[i-1].p2p_addr().to_string()); } else { args.push("--connect".into()); args.push("127.0.0.1:1".into()); }
        let args: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
        let log = std::fs::File::create(format!("/tmp/cb/n{i}.log")).unwrap();
        nodes.push(TestNode::start_in(&dir, &args, |c| { c.stderr(log); }));
    }
    wait_until(Duration::from_secs(10), "connect", || nodes.iter().skip(1).all(|n| !n.ready_peers().is_empty()));
    nodes[0].submit_block(&b1).unwrap();
    nodes[0].submit_block(&b2).unwrap();
    nodes[0].submit_block(&b3).unwrap();
    wait_until(Duration::from_secs(10), "travel", || nodes.iter().all(|n| n.rpc("getbestblockhash", json!([])).unwrap() == json!(b3.hash().to_string())));
}
