//! Mining, wallet and mempool through the binary, as a user drives them over JSON-RPC:
//! regtest `generatetoaddress`, `sendtoaddress` moving coin, `sendrawtransaction` of a
//! transaction from `noded signtx`, refusals with their reason codes, and `--mine`.

mod common;

use common::*;
use noded::rpc::client::ClientError;
use serde_json::{json, Value};
use std::time::Instant;

const COIN: u64 = 100_000_000;

fn call(node: &TestNode, method: &str, params: Value) -> Value {
    node.rpc(method, params.clone())
        .unwrap_or_else(|e| panic!("{method} {params}: {e}"))
}

/// The error code and message of a call that must fail.
fn refusal(node: &TestNode, method: &str, params: Value) -> (i64, String) {
    match node.rpc(method, params.clone()) {
        Err(ClientError::Rpc { code, message, .. }) => (code, message),
        other => panic!("{method} {params} should fail, gave {other:?}"),
    }
}

fn stdout_of(args: &[&str]) -> String {
    let out = run_to_exit(args);
    assert!(
        out.status.success(),
        "noded {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `noded signtx` with the key file `key`: the transaction's hex.
fn signtx(key: &str, to: &str, amount: u64, fee: u64, nonce: u64, network: &str) -> String {
    let (amount, fee, nonce) = (amount.to_string(), fee.to_string(), nonce.to_string());
    stdout_of(&[
        "signtx",
        "--key",
        key,
        "--to",
        to,
        "--amount",
        &amount,
        "--fee",
        &fee,
        "--nonce",
        &nonce,
        "--network",
        network,
    ])
    .trim()
    .to_string()
}

/// The value of a `name: value` line.
fn field(text: &str, name: &str) -> String {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
        .unwrap_or_else(|| panic!("no {name} in {text}"))
        .trim()
        .to_string()
}

#[test]
fn generatetoaddress_mines_100_regtest_blocks_at_once() {
    let node = TestNode::start(&[]);
    let address = field(&stdout_of(&["keygen"]), "address");
    let start = Instant::now();
    let hashes = call(&node, "generatetoaddress", json!([100, address]));
    let elapsed = start.elapsed();
    println!("generatetoaddress 100: {} ms", elapsed.as_millis());
    let hashes = hashes.as_array().unwrap();
    assert_eq!(hashes.len(), 100);
    assert_eq!(call(&node, "getblockcount", json!([])), 100);
    assert_eq!(call(&node, "getbestblockhash", json!([])), hashes[99]);
    // Regtest halves every 150 blocks: all 100 paid the full 50 coins.
    let account = call(&node, "getaccount", json!([address]));
    assert_eq!(account["balance"], 100 * 50 * COIN);
    assert_eq!(call(&node, "getbalance", json!([address])), 100 * 50 * COIN);
    let info = call(&node, "getmininginfo", json!([]));
    assert_eq!(info["blocks"], 100);
    assert_eq!(info["blocksmined"], 100);
    assert_eq!(info["generating"], false);
}

#[test]
fn sendtoaddress_moves_coin_once_a_block_confirms_it() {
    let node = TestNode::start(&[]);
    let wallet = call(&node, "getaddress", json!([]))
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        call(&node, "getaddress", json!([])),
        wallet.as_str(),
        "stable"
    );
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(node.datadir.join("wallet.key"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    let other = call(&node, "getnewaddress", json!([]))
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(other, wallet);
    let payee = field(&stdout_of(&["keygen"]), "address");

    assert_eq!(
        call(&node, "generate", json!([1]))
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(call(&node, "getbalance", json!([])), 50 * COIN);

    let amount = 3 * COIN;
    let fee = 20_000;
    let txid = call(&node, "sendtoaddress", json!([payee, amount, fee]));
    let entry = call(&node, "getmempoolentry", json!([txid]));
    assert_eq!(entry["to"], payee.as_str());
    assert_eq!(entry["amount"], amount);
    assert_eq!(entry["fee"], fee);
    assert_eq!(entry["nonce"], 0);
    assert_eq!(entry["future"], false);
    assert_eq!(call(&node, "getrawmempool", json!([])), json!([txid]));
    assert_eq!(call(&node, "getmempoolinfo", json!([]))["size"], 1);
    // Unconfirmed: the chain is unchanged; the pending view shows the spend.
    assert_eq!(call(&node, "getbalance", json!([payee])), 0);
    assert_eq!(
        call(&node, "getbalance", json!([wallet, true])),
        50 * COIN - amount - fee
    );
    // A second send takes the next nonce after the pending one.
    let txid2 = call(&node, "sendtoaddress", json!([payee, amount]));
    assert_eq!(call(&node, "getmempoolentry", json!([txid2]))["nonce"], 1);

    // Mine it, paying the wallet's other address.
    call(&node, "generatetoaddress", json!([1, other]));
    assert_eq!(call(&node, "getmempoolinfo", json!([]))["size"], 0);
    let paid = call(&node, "getaccount", json!([payee]));
    assert_eq!(paid["balance"], 2 * amount);
    assert_eq!(paid["nonce"], 0);
    let spent = call(&node, "getaccount", json!([wallet]));
    assert_eq!(spent["nonce"], 2);
    assert_eq!(spent["balance"], 50 * COIN - 2 * amount - fee - 10_000);
    assert_eq!(call(&node, "getbalance", json!([payee])), 2 * amount);
    // The miner of the second block collected subsidy plus both fees.
    assert_eq!(
        call(&node, "getbalance", json!([other])),
        50 * COIN + fee + 10_000
    );
    // Summed over both wallet addresses.
    assert_eq!(
        call(&node, "getbalance", json!([])),
        100 * COIN - 2 * amount
    );
    let confirmed = call(&node, "gettransaction", json!([txid]));
    assert_eq!(confirmed["confirmations"], 1, "{confirmed}");

    // More than the wallet holds.
    let (code, message) = refusal(&node, "sendtoaddress", json!([payee, 1_000 * COIN]));
    assert_eq!(code, -6, "{message}");
    assert!(message.starts_with("insufficient-funds"), "{message}");
    // Amounts in base units, as every RPC amount; the coins only in brackets.
    let needed = 1_000 * COIN + 10_000; // the default fee
    assert!(
        message.contains(&format!("can pay {needed} units (1000.00010000 coin)")),
        "{message}"
    );
}

#[test]
fn a_transaction_signed_offline_is_accepted_and_misuse_is_refused_with_reason_codes() {
    let node = TestNode::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("alice.key");
    let key_arg = key.to_str().unwrap();
    let made = stdout_of(&["keygen", "--out", key_arg]);
    let alice = field(&made, "address");
    assert!(
        !made.contains("secret:"),
        "--out keeps the secret off stdout"
    );
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&key).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    let refused = run_to_exit(&["keygen", "--out", key_arg]);
    assert!(
        !refused.status.success(),
        "an existing key file is never overwritten"
    );

    let bob = field(&stdout_of(&["keygen"]), "address");
    call(&node, "generatetoaddress", json!([1, alice]));

    let sign = |amount, fee, nonce, network| signtx(key_arg, &bob, amount, fee, nonce, network);
    let hex = sign(5 * COIN, 1_000, 0, "regtest");
    let txid = call(&node, "sendrawtransaction", json!([hex]));
    assert_eq!(
        call(&node, "getmempoolentry", json!([txid]))["sender"],
        alice.as_str()
    );
    let raw = call(&node, "getrawtransaction", json!([txid]));
    assert_eq!(raw, hex.as_str(), "the mempool serves it by txid");

    let reason = |params: Value| {
        let reply = rpc_reply(&node, "sendrawtransaction", params);
        let err = &reply["error"];
        assert!(!err.is_null(), "expected an error, got {reply}");
        let code = err["code"].as_i64().unwrap();
        let reason = err["data"]["reason"].as_str().unwrap().to_string();
        let message = err["message"].as_str().unwrap();
        assert!(message.starts_with(&format!("{reason}: ")), "{message}");
        (code, reason)
    };
    assert_eq!(reason(json!([hex])), (-26, "duplicate".into()));
    // Same nonce, a fee that does not clear the 10% + relay-fee increment.
    let conflicting = sign(6 * COIN, 1_100, 0, "regtest");
    assert_eq!(
        reason(json!([conflicting])),
        (-26, "replacement-fee-too-low".into())
    );
    // Spending more than the pending chain leaves.
    let overdraw = sign(46 * COIN, 1_000, 1, "regtest");
    assert_eq!(
        reason(json!([overdraw])),
        (-26, "insufficient-funds".into())
    );
    // Signed for another network.
    let wrong_network = sign(COIN, 1_000, 1, "main");
    assert_eq!(
        reason(json!([wrong_network])),
        (-26, "bad-signature".into())
    );
    assert_eq!(
        reason(json!([sign(COIN, 10, 1, "regtest")])),
        (-26, "fee-too-low".into())
    );

    call(&node, "generatetoaddress", json!([1, bob]));
    assert_eq!(
        call(&node, "getaccount", json!([bob]))["balance"],
        50 * COIN + 5 * COIN + 1_000
    );
    // The double spend of the confirmed nonce, and the confirmed transaction itself again.
    assert_eq!(reason(json!([conflicting])), (-26, "nonce-too-low".into()));
    assert_eq!(reason(json!([hex])), (-27, "already-in-chain".into()));
    let (code, _) = refusal(&node, "sendrawtransaction", json!(["00ff"]));
    assert_eq!(code, -22);
}

#[test]
fn getblocktemplate_describes_the_next_block_with_the_mempool_in_fee_order() {
    let node = TestNode::start(&[]);
    let wallet = call(&node, "getaddress", json!([]));
    call(&node, "generate", json!([2]));
    let payee = field(&stdout_of(&["keygen"]), "address");
    let cheap = call(&node, "sendtoaddress", json!([payee, COIN, 1_000]));
    let rich = call(&node, "sendtoaddress", json!([payee, COIN, 9_000]));
    let t = call(&node, "getblocktemplate", json!([wallet]));
    assert_eq!(t["height"], 3);
    assert_eq!(
        t["previousblockhash"],
        call(&node, "getbestblockhash", json!([]))
    );
    assert_eq!(t["bits"], "207fffff");
    let txids: Vec<&Value> = t["transactions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|tx| &tx["txid"])
        .collect();
    // Same sender: nonce order wins over fee rate.
    assert_eq!(txids, vec![&cheap, &rich]);
    assert_eq!(t["fees"], 10_000);
    assert_eq!(t["coinbasevalue"], 50 * COIN + 10_000);
    assert!(t["block"].is_string());
}

#[test]
fn a_disconnected_blocks_transfer_returns_to_the_mempool_and_is_mined_again() {
    let node = TestNode::start(&[]);
    let payee = field(&stdout_of(&["keygen"]), "address");
    call(&node, "generate", json!([1]));
    let txid = call(&node, "sendtoaddress", json!([payee, COIN]));
    let mined = call(&node, "generate", json!([1]));
    let tip = mined[0].clone();
    assert_eq!(call(&node, "getmempoolinfo", json!([]))["size"], 0);
    assert_eq!(call(&node, "getbalance", json!([payee])), COIN);

    // Reorg away the block that confirmed it: the transfer comes back into the mempool.
    call(&node, "invalidateblock", json!([tip]));
    assert_eq!(call(&node, "getblockcount", json!([])), 1);
    assert_eq!(call(&node, "getbalance", json!([payee])), 0);
    wait_until(DEADLINE, "the transfer back in the mempool", || {
        call(&node, "getrawmempool", json!([])) == json!([txid])
    });
    assert_eq!(call(&node, "getmempoolentry", json!([txid]))["nonce"], 0);

    // The same template may come out again within the same second; the miner must still
    // produce a block the chain accepts (not the invalidated one).
    let again = call(&node, "generate", json!([1]));
    assert_ne!(again[0], tip);
    assert_eq!(call(&node, "getblockcount", json!([])), 2);
    assert_eq!(call(&node, "getbalance", json!([payee])), COIN);
    assert_eq!(call(&node, "getmempoolinfo", json!([]))["size"], 0);
}

#[test]
fn the_mine_flag_mines_continuously_until_stop() {
    let payee = field(&stdout_of(&["keygen"]), "address");
    let mut node = TestNode::start(&["--mine", "--mineraddress", &payee, "--minethreads", "1"]);
    wait_until(DEADLINE, "three mined blocks", || {
        call(&node, "getblockcount", json!([])).as_u64().unwrap() >= 3
    });
    let info = call(&node, "getmininginfo", json!([]));
    assert_eq!(info["generating"], true);
    assert_eq!(info["mineraddress"], payee.as_str());
    assert!(call(&node, "getbalance", json!([payee])).as_u64().unwrap() >= 3 * 50 * COIN);
    assert!(node.stop().success());
}

#[test]
fn a_bad_mineraddress_is_a_one_line_error() {
    let out = run_to_exit(&[
        "--network",
        "regtest",
        "--datadir",
        "/nonexistent/never-created",
        "--mine",
        "--mineraddress",
        "xyz",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.starts_with("error: invalid --mineraddress 'xyz'"),
        "{err}"
    );
}

/// An answer as `{"result": ..}` or `{"error": {"code", "message"}}`, however it came.
fn outcome(answer: Result<Value, ClientError>) -> Value {
    match answer {
        Ok(result) => json!({ "result": result }),
        Err(ClientError::Rpc { code, message, .. }) => {
            json!({ "error": { "code": code, "message": message } })
        }
        Err(other) => panic!("not a JSON-RPC answer: {other}"),
    }
}

#[test]
fn a_batch_of_sendrawtransaction_answers_each_call_as_the_method_alone_would() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("alice.key");
    let key_arg = key.to_str().unwrap();
    let alice = field(&stdout_of(&["keygen", "--out", key_arg]), "address");
    let bob = field(&stdout_of(&["keygen"]), "address");
    let sign = |amount, fee, nonce, network| signtx(key_arg, &bob, amount, fee, nonce, network);
    let first = sign(COIN, 1_000, 0, "regtest");
    let calls: Vec<(&str, Value)> = vec![
        ("sendrawtransaction", json!([first])),
        (
            "sendrawtransaction",
            json!([sign(COIN, 1_000, 1, "regtest")]),
        ),
        ("getblockcount", json!([])),
        // The same transaction again, a replacement paying too little, bad hex, another
        // network's signature, one that overdraws, one by name, and a third nonce.
        ("sendrawtransaction", json!([first])),
        (
            "sendrawtransaction",
            json!([sign(2 * COIN, 1_001, 1, "regtest")]),
        ),
        ("sendrawtransaction", json!(["00ff"])),
        ("sendrawtransaction", json!([sign(COIN, 1_000, 2, "main")])),
        (
            "sendrawtransaction",
            json!([sign(100 * COIN, 1_000, 2, "regtest")]),
        ),
        (
            "sendrawtransaction",
            json!({ "hexstring": sign(COIN, 1_000, 2, "regtest") }),
        ),
        (
            "sendrawtransaction",
            json!([sign(COIN, 1_000, 3, "regtest")]),
        ),
    ];
    let one_by_one = TestNode::start(&[]);
    let batched = TestNode::start(&[]);
    for node in [&one_by_one, &batched] {
        call(node, "generatetoaddress", json!([1, alice]));
    }
    let expected: Vec<Value> = calls
        .iter()
        .map(|(method, params)| outcome(one_by_one.rpc(method, params.clone())))
        .collect();
    let answers: Vec<Value> = rpc_batch(&batched, &calls)
        .into_iter()
        .map(|a| match a.get("error") {
            Some(e) => json!({ "error": { "code": e["code"], "message": e["message"] } }),
            None => json!({ "result": a["result"] }),
        })
        .collect();
    assert_eq!(answers, expected);
    let accepted = expected
        .iter()
        .filter(|e| e.get("result").is_some())
        .count();
    let refused = expected.len() - accepted;
    assert_eq!((accepted, refused), (5, 5), "{expected:#?}");
    assert_eq!(
        call(&batched, "getrawmempool", json!([])),
        call(&one_by_one, "getrawmempool", json!([]))
    );
}
