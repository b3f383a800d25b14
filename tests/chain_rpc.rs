//! The chain RPC methods through the binary, as a user calls them: submitblock, the block,
//! header, tip and transaction queries with bitcoind's shapes, accounts, chain tips with a
//! fork, invalidate/reconsider, verifychain, and the tip surviving a clean restart.

mod common;

use common::*;
use noded::chain::testkit::{make_block, Keys, TestChainBuilder};
use noded::params::REGTEST;
use noded::rpc::client::ClientError;
use noded::types::{Block, Transaction};
use serde_json::{json, Value};

#[test]
fn chain_methods_answer_in_bitcoind_shapes() {
    let keys = Keys::new(3);
    let mut builder = TestChainBuilder::new(&REGTEST);
    builder.build(keys.address(0), vec![]);
    let transfer = keys.transfer(&REGTEST, 0, keys.address(1), 12_345, 55, 0);
    builder.build(keys.address(2), vec![transfer.clone()]);
    builder.build(keys.address(2), vec![]);
    let blocks: Vec<Block> = builder.blocks().to_vec();

    let mut node = TestNode::start(&[]);
    assert_eq!(rpc(&node, "getblockcount", json!([])), 0);
    for b in &blocks {
        assert_eq!(
            node.submit_block(b).unwrap(),
            Value::Null,
            "accepted and connected"
        );
    }
    assert_eq!(node.submit_block(&blocks[1]).unwrap(), "duplicate");
    assert_eq!(rpc(&node, "getblockcount", json!([])), 3);
    let tip = blocks[2].hash().to_string();
    assert_eq!(rpc(&node, "getbestblockhash", json!([])), tip);
    assert_eq!(
        rpc(&node, "getblockhash", json!([1])),
        blocks[0].hash().to_string()
    );
    assert_eq!(rpc_error(&node, "getblockhash", json!([4])).0, -8);
    // getinfo reads the same tip.
    assert_eq!(node.getinfo()["blocks"], 3);

    let info = rpc(&node, "getblockchaininfo", json!([]));
    assert_eq!(info["chain"], "regtest");
    assert_eq!(info["blocks"], 3);
    assert_eq!(info["bestblockhash"], tip);
    assert_eq!(info["difficulty"], 1.0);
    assert_eq!(info["chainwork"].as_str().unwrap().len(), 64);
    assert_eq!(info["mediantime"], blocks[1].header.time);
    assert_eq!(rpc(&node, "getdifficulty", json!([])), 1.0);

    // getblock, three verbosities.
    let h2 = blocks[1].hash().to_string();
    let raw = rpc(&node, "getblock", json!([h2, 0]));
    assert_eq!(raw, hex::encode(noded::encoding::encode(&blocks[1])));
    let v1 = rpc(&node, "getblock", json!([h2]));
    assert_eq!(v1["height"], 2);
    assert_eq!(v1["confirmations"], 2);
    assert_eq!(v1["nTx"], 2);
    assert_eq!(v1["previousblockhash"], blocks[0].hash().to_string());
    assert_eq!(v1["nextblockhash"], tip);
    assert_eq!(v1["bits"], "207fffff");
    let txid = transfer.txid().to_string();
    assert_eq!(v1["tx"][1], txid);
    let v2 = rpc(&node, "getblock", json!([h2, 2]));
    assert_eq!(v2["tx"][0]["type"], "coinbase");
    assert_eq!(v2["tx"][0]["amount"], REGTEST.subsidy(2).0 + 55);
    assert_eq!(v2["tx"][1]["amount"], 12_345);
    assert_eq!(v2["tx"][1]["sender"], keys.address(0).to_string());
    assert_eq!(rpc_error(&node, "getblock", json!(["00".repeat(32)])).0, -5);
    assert_eq!(rpc_error(&node, "getblock", json!(["xyz"])).0, -8);

    let header = rpc(&node, "getblockheader", json!([h2]));
    assert_eq!(
        header["merkleroot"],
        blocks[1].header.merkle_root.to_string()
    );
    assert_eq!(header["nTx"], 2);
    assert_eq!(
        rpc(&node, "getblockheader", json!([h2, false])),
        hex::encode(blocks[1].header.to_bytes())
    );

    // Transactions by the tx index.
    let tx = rpc(&node, "gettransaction", json!([txid]));
    assert_eq!(tx["blockhash"], h2);
    assert_eq!(tx["blockheight"], 2);
    assert_eq!(tx["confirmations"], 2);
    assert_eq!(tx["fee"], 55);
    let Transaction::Transfer(_) = &transfer else {
        unreachable!()
    };
    assert_eq!(
        rpc(&node, "getrawtransaction", json!([txid])),
        hex::encode(noded::encoding::encode(&transfer))
    );
    assert_eq!(
        rpc(&node, "getrawtransaction", json!([txid, true]))["blockhash"],
        h2
    );
    assert_eq!(
        rpc_error(&node, "getrawtransaction", json!(["11".repeat(32)])).0,
        -5
    );

    // Accounts.
    let a0 = rpc(&node, "getaccount", json!([keys.address(0).to_string()]));
    assert_eq!(a0["balance"], REGTEST.subsidy(1).0 - 12_345 - 55);
    assert_eq!(a0["nonce"], 1);
    let a1 = rpc(&node, "getaccount", json!([keys.address(1).to_string()]));
    assert_eq!(a1["balance"], 12_345);
    assert_eq!(a1["nonce"], 0);
    assert_eq!(rpc_error(&node, "getaccount", json!(["nothex"])).0, -5);

    // Invalid submissions: a reason string, or a decode error for junk.
    let mut bad = blocks[2].clone();
    bad.header.merkle_root.0[3] ^= 1;
    noded::chain::testkit::mine(&mut bad.header);
    assert_eq!(node.submit_block(&bad).unwrap(), "bad-txnmrklroot");
    assert_eq!(
        rpc_error(&node, "submitblock", json!(["00ff"])).0,
        -22,
        "undecodable block"
    );
    assert_eq!(rpc_error(&node, "submitblock", json!(["zz"])).0, -22);

    // A fork: getchaintips shows both tips; invalidate moves to it, reconsider back.
    let fork1 = make_block(
        &REGTEST,
        &blocks[0].header,
        1,
        blocks[0].header.time + 5,
        keys.address(1),
        vec![],
    );
    assert_eq!(node.submit_block(&fork1).unwrap(), "inconclusive");
    let tips = rpc(&node, "getchaintips", json!([]));
    assert_eq!(tips.as_array().unwrap().len(), 2, "{tips}");
    assert_eq!(tips[0]["status"], "active");
    assert_eq!(tips[0]["hash"], tip);
    assert_eq!(tips[1]["status"], "valid-headers");
    assert_eq!(tips[1]["branchlen"], 1);
    assert_eq!(tips[1]["height"], 2);

    rpc(&node, "invalidateblock", json!([h2]));
    assert_eq!(
        rpc(&node, "getbestblockhash", json!([])),
        fork1.hash().to_string()
    );
    let a0 = rpc(&node, "getaccount", json!([keys.address(0).to_string()]));
    assert_eq!(a0["nonce"], 0, "the transfer is undone");
    // The transfer left the chain. The mempool takes it back asynchronously, so it is either
    // not found yet (-5) or back in the mempool, unconfirmed; never still confirmed.
    match node.rpc("gettransaction", json!([txid])) {
        Err(ClientError::Rpc { code, .. }) => assert_eq!(code, -5),
        Ok(tx) => assert_eq!(tx["confirmations"], 0, "{tx}"),
        Err(e) => panic!("gettransaction: {e}"),
    }
    let tips = rpc(&node, "getchaintips", json!([]));
    let statuses: Vec<&str> = tips
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, vec!["active", "invalid"]);
    let report = rpc(&node, "verifychain", json!([]));
    assert_eq!(report["ok"], true, "{report}");
    rpc(&node, "reconsiderblock", json!([h2]));
    assert_eq!(rpc(&node, "getbestblockhash", json!([])), tip);
    assert_eq!(rpc(&node, "verifychain", json!([4]))["ok"], true);

    // The tip itself invalidated: its parent is the active tip, listed first although it has
    // a child (the invalid block), as bitcoind lists it.
    rpc(&node, "invalidateblock", json!([tip]));
    let active = rpc(&node, "getbestblockhash", json!([]));
    assert_ne!(active, tip);
    let tips = rpc(&node, "getchaintips", json!([]));
    assert_eq!(tips[0]["status"], "active", "{tips}");
    assert_eq!(tips[0]["hash"], active, "{tips}");
    assert_eq!(tips[0]["branchlen"], 0, "{tips}");
    assert!(
        tips.as_array()
            .unwrap()
            .iter()
            .any(|t| t["hash"] == tip && t["status"] == "invalid"),
        "{tips}"
    );
    rpc(&node, "reconsiderblock", json!([tip]));
    assert_eq!(rpc(&node, "getbestblockhash", json!([])), tip);
    assert_eq!(
        rpc_error(&node, "invalidateblock", json!(["22".repeat(32)])).0,
        -5
    );

    // help lists the chain methods.
    let help = rpc(&node, "help", json!([]));
    assert!(help.as_str().unwrap().contains("getblockchaininfo"));

    // A clean stop and restart keep the tip.
    assert!(node.stop().success());
    let datadir = node.datadir.clone();
    let node2 = TestNode::start_in(&datadir, &[], |_| {});
    assert_eq!(rpc(&node2, "getbestblockhash", json!([])), tip);
    assert_eq!(rpc(&node2, "verifychain", json!([]))["ok"], true);
}
