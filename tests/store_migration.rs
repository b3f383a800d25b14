//! A datadir made by the sled build of noded opens in this one: the chain store is converted
//! to redb on first start, with the same chain and state, the sled directory kept beside it,
//! and the wallet key and identity untouched.

mod common;

use common::*;
use noded::chain::store::TABLE_NAMES;
use redb::{ReadableDatabase, TableDefinition};
use serde_json::json;
use std::path::Path;

/// Rewrites the chain store `<chain>.redb` as the sled build kept it: a sled database at
/// `<chain>/` with one tree per table, the same keys and values. Then removes the redb file.
fn make_sled_era_store(chain: &Path) {
    let file = chain.with_extension("redb");
    let redb = redb::Database::open(&file).unwrap();
    let sled = sled::open(chain).unwrap();
    let txn = redb.begin_read().unwrap();
    for name in TABLE_NAMES {
        let table = txn
            .open_table(TableDefinition::<&[u8], &[u8]>::new(name))
            .unwrap();
        let tree = sled.open_tree(name).unwrap();
        for item in table.range::<&[u8]>(..).unwrap() {
            let (k, v) = item.unwrap();
            tree.insert(k.value(), v.value()).unwrap();
        }
    }
    sled.flush().unwrap();
    drop(sled);
    drop(txn);
    drop(redb);
    std::fs::remove_file(&file).unwrap();
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn a_sled_era_chain_store_is_converted_on_first_start() {
    let tempdir = tempfile::tempdir().unwrap();
    let datadir = tempdir.path();
    let mut node = TestNode::start_in(datadir, &[], |_| {});
    let address = node.rpc("getnewaddress", json!([])).unwrap();
    node.rpc("generatetoaddress", json!([30, address])).unwrap();
    let other = "00".repeat(20);
    node.rpc("sendtoaddress", json!([other, 12_345])).unwrap();
    node.rpc("generatetoaddress", json!([2, address])).unwrap();
    let count = node.rpc("getblockcount", json!([])).unwrap();
    let best = node.rpc("getbestblockhash", json!([])).unwrap();
    let balance = node.rpc("getbalance", json!([address])).unwrap();
    let paid = node.rpc("getaccount", json!([other])).unwrap();
    assert_eq!(node.stop().code(), Some(0));

    let chain = datadir.join("chain").join("regtest");
    let keys = ["identity.key", "wallet.key"].map(|f| (f, read(&datadir.join(f))));
    make_sled_era_store(&chain);
    assert!(chain.join("db").is_file(), "a sled database now");

    let mut node = TestNode::start_in(datadir, &[], |_| {});
    assert_eq!(node.rpc("getblockcount", json!([])).unwrap(), count);
    assert_eq!(node.rpc("getbestblockhash", json!([])).unwrap(), best);
    assert_eq!(node.rpc("getbalance", json!([address])).unwrap(), balance);
    assert_eq!(node.rpc("getaccount", json!([other])).unwrap(), paid);
    assert_eq!(
        node.rpc("verifychain", json!([3])).unwrap()["ok"],
        true,
        "the converted store replays"
    );
    assert!(chain.with_extension("redb").is_file());
    assert!(
        datadir
            .join("chain")
            .join("regtest.sled-old")
            .join("db")
            .is_file(),
        "the sled data is kept"
    );
    assert!(!chain.exists());
    for (file, bytes) in &keys {
        assert_eq!(&read(&datadir.join(file)), bytes, "{file} untouched");
    }
    // The converted node goes on as usual, and a restart opens the redb file directly.
    node.rpc("generatetoaddress", json!([1, address])).unwrap();
    assert_eq!(node.stop().code(), Some(0));
    let node = TestNode::start_in(datadir, &[], |_| {});
    assert_eq!(
        node.rpc("getblockcount", json!([])).unwrap(),
        count.as_u64().unwrap() + 1
    );
}
