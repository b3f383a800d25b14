//! The chain core through its public API: orphans, reorgs with events, invalidate and
//! reconsider, most work (not most blocks) with retargeting, restart from disk, the clock
//! rule, and corruption reported as an error.

use noded::chain::state::Account;
use noded::chain::store::Store;
use noded::chain::testkit::{make_block, make_block_with_bits, Keys, TestChainBuilder};
use noded::chain::{Chain, ChainError, ChainEvent, ChainOptions, SubmitOutcome};
use noded::encoding::BoundedVec;
use noded::params::{Network, NetworkParams, REGTEST};
use noded::types::pow::hash_meets_target;
use noded::types::{Amount, Block, Header, NetworkMagic, Transaction};
use std::time::{Duration, Instant};

const NOW: u64 = 4_000_000_000;

fn chain() -> Chain {
    Chain::open_temporary(&REGTEST, ChainOptions::default()).unwrap()
}

fn linear(n: usize, keys: &Keys) -> Vec<Block> {
    let mut b = TestChainBuilder::new(&REGTEST);
    for i in 0..n {
        let txs = if i > 0 {
            vec![keys.transfer(&REGTEST, 0, keys.address(1), 1000, 10, i as u64 - 1)]
        } else {
            vec![]
        };
        b.build(keys.address(0), txs);
    }
    b.blocks().to_vec()
}

/// A branch of `n` coinbase-only blocks on `parent` (at `height`), paying `miner`, with times
/// offset so it differs from other branches.
fn branch(parent: &Header, height: u64, n: usize, keys: &Keys, miner: usize) -> Vec<Block> {
    let mut out: Vec<Block> = vec![];
    let mut prev = *parent;
    for i in 0..n {
        let block = make_block(
            &REGTEST,
            &prev,
            height + i as u64,
            prev.time + 7,
            keys.address(miner),
            vec![],
        );
        prev = block.header;
        out.push(block);
    }
    out
}

#[test]
fn a_child_before_its_parent_waits_as_an_orphan() {
    let keys = Keys::new(2);
    let blocks = linear(3, &keys);
    let mut c = chain();
    assert_eq!(
        c.submit_block(blocks[2].clone(), NOW).unwrap(),
        SubmitOutcome::Orphan
    );
    assert_eq!(
        c.submit_block(blocks[1].clone(), NOW).unwrap(),
        SubmitOutcome::Orphan
    );
    assert_eq!(
        c.submit_block(blocks[2].clone(), NOW).unwrap(),
        SubmitOutcome::Duplicate
    );
    assert_eq!(c.orphan_count(), 2);
    assert_eq!(
        c.submit_block(blocks[0].clone(), NOW).unwrap(),
        SubmitOutcome::Connected { height: 1 }
    );
    assert_eq!(c.tip().height, 3);
    assert_eq!(c.tip().hash, blocks[2].hash());
    assert_eq!(c.orphan_count(), 0);
    assert_eq!(
        c.submit_block(blocks[1].clone(), NOW).unwrap(),
        SubmitOutcome::Duplicate
    );
}

#[test]
fn a_heavier_branch_reorganises_with_disconnect_then_connect_events() {
    let keys = Keys::new(3);
    let main = linear(4, &keys);
    let mut c = chain();
    let mut events = c.subscribe_events();
    for b in &main {
        c.submit_block(b.clone(), NOW).unwrap();
    }
    let state_before = c.accounts().unwrap();
    // A fork from height 1, one block longer.
    let fork = branch(&main[0].header, 1, 4, &keys, 2);
    for b in &fork[..3] {
        assert!(matches!(
            c.submit_block(b.clone(), NOW).unwrap(),
            SubmitOutcome::SideBranch { .. }
        ));
    }
    assert_eq!(c.tip().hash, main[3].hash(), "equal work: first seen stays");
    assert_eq!(c.accounts().unwrap(), state_before);
    assert_eq!(
        c.submit_block(fork[3].clone(), NOW).unwrap(),
        SubmitOutcome::Connected { height: 5 }
    );
    assert_eq!(c.tip().hash, fork[3].hash());
    // Only block 1's coinbase (key 0) and the fork's coinbases (key 2) remain.
    let state = c.accounts().unwrap();
    assert_eq!(state.len(), 2);
    assert_eq!(state[&keys.address(0)].balance, REGTEST.subsidy(1));
    assert_eq!(state[&keys.address(0)].nonce, 0);

    let mut seen = vec![];
    while let Ok(e) = events.try_recv() {
        seen.push(match e {
            ChainEvent::BlockConnected(b, h) => (true, b.hash(), h),
            ChainEvent::BlockDisconnected(b, h) => (false, b.hash(), h),
        });
    }
    let mut expected: Vec<_> = main
        .iter()
        .zip(1..)
        .map(|(b, h)| (true, b.hash(), h))
        .collect();
    expected.extend([
        (false, main[3].hash(), 4),
        (false, main[2].hash(), 3),
        (false, main[1].hash(), 2),
    ]);
    expected.extend(fork.iter().zip(2..).map(|(b, h)| (true, b.hash(), h)));
    assert_eq!(seen, expected);
    assert!(c.verify_chain(3).unwrap().ok);
}

#[test]
fn invalidate_and_reconsider_move_between_branches() {
    let keys = Keys::new(3);
    let main = linear(5, &keys);
    let mut c = chain();
    for b in &main {
        c.submit_block(b.clone(), NOW).unwrap();
    }
    let fork = branch(&main[1].header, 2, 2, &keys, 2);
    for b in &fork {
        c.submit_block(b.clone(), NOW).unwrap();
    }
    assert_eq!(c.tip().hash, main[4].hash());
    c.invalidate_block(&main[2].hash()).unwrap();
    // Best remaining: the fork (height 4) beats main up to block 2 (height 2).
    assert_eq!(c.tip().hash, fork[1].hash());
    assert!(matches!(
        c.submit_block(main[3].clone(), NOW),
        Err(ChainError::KnownInvalid(_))
    ));
    assert!(c.verify_chain(3).unwrap().ok);
    c.reconsider_block(&main[4].hash()).unwrap();
    assert_eq!(c.tip().hash, main[4].hash());
    assert!(c.verify_chain(3).unwrap().ok);
    assert!(matches!(
        c.invalidate_block(&REGTEST.genesis_hash()),
        Err(ChainError::CannotInvalidateGenesis)
    ));
    assert!(matches!(
        c.invalidate_block(&noded::types::Hash256([7; 32])),
        Err(ChainError::UnknownBlock(_))
    ));
}

#[test]
fn a_child_of_an_invalid_block_is_refused_as_such() {
    let keys = Keys::new(3);
    let mut b = TestChainBuilder::new(&REGTEST);
    b.build(keys.address(0), vec![]);
    // Block 2 overspends; block 3 builds on it.
    let bad_tx = keys.transfer(&REGTEST, 1, keys.address(0), 5, 0, 0);
    let bad = b.build_unchecked(keys.address(0), vec![bad_tx]);
    let child = make_block(
        &REGTEST,
        &bad.header,
        2,
        bad.header.time + 1,
        keys.address(0),
        vec![],
    );
    let mut c = chain();
    c.submit_block(b.blocks()[0].clone(), NOW).unwrap();
    match c.submit_block(bad.clone(), NOW) {
        Err(ChainError::InvalidBlock { error, .. }) => {
            assert_eq!(error.reason(), "bad-txns-balance")
        }
        other => panic!("{other:?}"),
    }
    match c.submit_block(child, NOW) {
        Err(ChainError::InvalidBlock { error, .. }) => assert_eq!(error.reason(), "bad-prevblk"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        c.submit_block(bad, NOW),
        Err(ChainError::KnownInvalid(_))
    ));
    assert_eq!(c.tip().height, 1);
}

#[test]
fn a_block_too_far_in_the_future_is_refused_but_not_remembered() {
    let keys = Keys::new(1);
    let genesis = REGTEST.genesis_block().header;
    let block = make_block(
        &REGTEST,
        &genesis,
        0,
        genesis.time + 10_000,
        keys.address(0),
        vec![],
    );
    let mut c = chain();
    let early = genesis.time + 10_000 - 2 * 3600 - 1;
    match c.submit_block(block.clone(), early) {
        Err(ChainError::InvalidBlock { error, .. }) => assert_eq!(error.reason(), "time-too-new"),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        c.submit_block(block, early + 1).unwrap(),
        SubmitOutcome::Connected { height: 1 }
    );
}

/// A mutated block (its header with another body: a transaction dropped, or one added) is
/// refused without marking its hash invalid, so the real block still connects afterwards; a
/// mutated copy of a block already stored is a duplicate (docs/PROTOCOL.md §10.6,
/// docs/CONSENSUS.md §2).
#[test]
fn a_mutated_block_leaves_its_header_valid() {
    let keys = Keys::new(2);
    let blocks = linear(3, &keys);
    let mut c = chain();
    for block in &blocks[..2] {
        c.submit_block(block.clone(), NOW).unwrap();
    }
    let real = &blocks[2];
    assert_eq!(real.transactions.len(), 2);
    let with_body = |txs: Vec<Transaction>| Block {
        header: real.header,
        transactions: BoundedVec::new(txs).unwrap(),
    };
    let dropped = with_body(real.transactions.as_slice()[..1].to_vec());
    let mut doubled = real.transactions.as_slice().to_vec();
    doubled.push(doubled[1].clone());
    let doubled = with_body(doubled);
    for mutated in [&dropped, &doubled] {
        assert_eq!(mutated.hash(), real.hash());
        match c.submit_block(mutated.clone(), NOW) {
            Err(ChainError::InvalidBlock { error, .. }) => {
                assert_eq!(error.reason(), "bad-txnmrklroot")
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(
        c.submit_block(real.clone(), NOW).unwrap(),
        SubmitOutcome::Connected { height: 3 }
    );
    // Once the hash is stored its body is not looked at again.
    assert_eq!(
        c.submit_block(dropped, NOW).unwrap(),
        SubmitOutcome::Duplicate
    );
    assert_eq!(c.tip().hash, real.hash());
}

#[test]
fn the_chain_survives_a_restart_including_side_branches_and_invalid_marks() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chain");
    let keys = Keys::new(3);
    let main = linear(6, &keys);
    let fork = branch(&main[2].header, 3, 2, &keys, 2);
    let (tip, accounts) = {
        let mut c = Chain::open(&path, &REGTEST, ChainOptions::default()).unwrap();
        for b in main.iter().chain(&fork) {
            c.submit_block(b.clone(), NOW).unwrap();
        }
        c.invalidate_block(&main[5].hash()).unwrap();
        c.flush().unwrap();
        (c.tip(), c.accounts().unwrap())
    };
    assert_eq!(
        tip.hash,
        main[4].hash(),
        "main up to 5 still beats the fork (5)"
    );
    let c = Chain::open(&path, &REGTEST, ChainOptions::default()).unwrap();
    assert_eq!(c.tip(), tip);
    assert_eq!(c.accounts().unwrap(), accounts);
    assert_eq!(c.index().len(), 1 + 6 + 2);
    assert!(c.index().get(&main[5].hash()).unwrap().status.is_failed());
    assert!(c.verify_chain(3).unwrap().ok);
    drop(c);
    // Opened as another network: a clear error.
    match Chain::open(&path, Network::Main.params(), ChainOptions::default()) {
        Err(e @ ChainError::WrongNetwork { .. }) => assert!(e.to_string().contains("--network")),
        other => panic!("{:?}", other.err()),
    }
}

#[test]
fn a_corrupt_record_is_reported_at_open_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chain");
    let keys = Keys::new(2);
    let blocks = linear(3, &keys);
    {
        let mut c = Chain::open(&path, &REGTEST, ChainOptions::default()).unwrap();
        for b in &blocks {
            c.submit_block(b.clone(), NOW).unwrap();
        }
        c.flush().unwrap();
    }
    {
        let store = Store::open(&path, &REGTEST).unwrap();
        store
            .corrupt_for_test("index", &blocks[1].hash().0, b"\x01\x02garbage")
            .unwrap();
        store.flush().unwrap();
    }
    match Chain::open(&path, &REGTEST, ChainOptions::default()) {
        Err(e @ ChainError::Corrupt { .. }) => {
            let text = e.to_string();
            assert!(text.contains("corrupt") && text.contains("index"), "{text}");
        }
        other => panic!("expected a corruption error, got {:?}", other.err()),
    }
}

/// Writes a wrong balance for `address` straight into the closed store's account table.
fn forge_account_table(path: &std::path::Path, address: noded::types::Address, balance: u64) {
    let store = Store::open(path, &REGTEST).unwrap();
    let forged = Account {
        balance: Amount(balance),
        nonce: 0,
    };
    store
        .corrupt_for_test("accounts", &address.0, &noded::encoding::encode(&forged))
        .unwrap(); // a durable commit of its own; no flush, which would move pending state
}

#[test]
fn verifychain_reports_the_first_state_mismatch() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chain");
    let keys = Keys::new(2);
    let blocks = linear(3, &keys);
    {
        let mut c = Chain::open(&path, &REGTEST, ChainOptions::default()).unwrap();
        for b in &blocks {
            c.submit_block(b.clone(), NOW).unwrap();
        }
        c.flush().unwrap();
    }
    forge_account_table(&path, keys.address(1), 1);
    let c = Chain::open(&path, &REGTEST, ChainOptions::default()).unwrap();
    let report = c.verify_chain(3).unwrap();
    assert!(!report.ok);
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["first_mismatch"]["kind"], "account");
    assert_eq!(
        json["first_mismatch"]["address"],
        keys.address(1).to_string()
    );
    assert_eq!(json["first_mismatch"]["stored"]["balance"], 1);
}

/// The storage issue: verifychain compared only the state at the tip, where the pending
/// changes above the state marker hide the account table. A wrong value in the table under a
/// pending account is now found, at the marker's height.
#[test]
fn verifychain_checks_the_account_table_at_the_state_marker() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chain");
    let keys = Keys::new(2);
    let blocks = linear(6, &keys);
    {
        let mut c = Chain::open(&path, &REGTEST, ChainOptions::default()).unwrap();
        for b in &blocks[..3] {
            c.submit_block(b.clone(), NOW).unwrap();
        }
        c.flush().unwrap(); // the state marker at height 3
        for b in &blocks[3..] {
            c.submit_block(b.clone(), NOW).unwrap();
        }
        assert_eq!(
            c.unflushed_blocks(),
            3,
            "address 1's later balances are pending"
        );
    }
    forge_account_table(&path, keys.address(1), 7);
    let c = Chain::open(&path, &REGTEST, ChainOptions::default()).unwrap();
    assert_eq!(c.unflushed_blocks(), 3);
    let report = c.verify_chain(1).unwrap();
    assert!(
        !report.ok,
        "a wrong account under the pending state is found"
    );
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["first_mismatch"]["kind"], "account");
    assert_eq!(json["first_mismatch"]["height"], 3);
    assert_eq!(json["first_mismatch"]["stored"]["balance"], 7);
}

/// A network like regtest but retargeting every 4 blocks (factor 4, 60 s spacing).
fn retargeting_params() -> &'static NetworkParams {
    let mut params = NetworkParams {
        network: Network::Regtest,
        magic: NetworkMagic(*b"rtgt"),
        default_p2p_port: 1,
        default_rpc_port: 2,
        pow_limit_bits: 0x207f_ffff,
        retarget: true,
        target_spacing_secs: 60,
        retarget_interval: 4,
        max_retarget_factor: 4,
        initial_subsidy: Amount::from_coins(50),
        halving_interval: 150,
        genesis_time: 1_767_225_602,
        genesis_nonce: 0,
    };
    let target = params.pow_limit();
    while !hash_meets_target(&params.genesis_block().hash(), &target) {
        params.genesis_nonce += 1;
    }
    Box::leak(Box::new(params))
}

#[test]
fn most_work_wins_over_most_blocks_and_targets_must_follow_the_retarget_rule() {
    let params = retargeting_params();
    let keys = Keys::new(2);
    let genesis = params.genesis_block().header;
    // Slow branch: 10 blocks four minutes apart; the target stays at the limit.
    let mut slow = vec![];
    let mut prev = genesis;
    for h in 0..10u64 {
        let b = make_block_with_bits(
            params,
            &prev,
            h,
            prev.time + 240,
            params.pow_limit_bits,
            keys.address(0),
            vec![],
        );
        prev = b.header;
        slow.push(b);
    }
    // Fast branch: one second apart; at height 4 the target gets 4× harder.
    let mut scratch = Chain::open_temporary(params, ChainOptions::default()).unwrap();
    let mut fast = vec![];
    let mut prev = genesis;
    for h in 0..7u64 {
        let bits = scratch.tip_snapshot().next_bits;
        if h + 1 == 4 {
            assert_ne!(bits, params.pow_limit_bits, "retarget at height 4");
            // The wrong target at a retarget height is refused.
            let wrong = make_block_with_bits(
                params,
                &prev,
                h,
                prev.time + 1,
                params.pow_limit_bits,
                keys.address(1),
                vec![],
            );
            match scratch.submit_block(wrong, NOW) {
                Err(ChainError::InvalidBlock { error, .. }) => {
                    assert_eq!(error.reason(), "bad-diffbits")
                }
                other => panic!("{other:?}"),
            }
        }
        let b = make_block_with_bits(
            params,
            &prev,
            h,
            prev.time + 1,
            bits,
            keys.address(1),
            vec![],
        );
        scratch.submit_block(b.clone(), NOW).unwrap();
        prev = b.header;
        fast.push(b);
    }
    let mut c = Chain::open_temporary(params, ChainOptions::default()).unwrap();
    for b in &slow {
        c.submit_block(b.clone(), NOW).unwrap();
    }
    assert_eq!(c.tip().height, 10);
    for b in &fast {
        c.submit_block(b.clone(), NOW).unwrap();
    }
    // 3 × 2 + 4 × 8 = 38 units of work beat 10 × 2 = 20.
    assert_eq!(c.tip().height, 7);
    assert_eq!(c.tip().hash, fast[6].hash());
    assert!(c.verify_chain(3).unwrap().ok);
}

/// Waits for the background transaction index to reach `height`, polling its marker with a
/// short, growing sleep (the indexer thread runs at a lower priority, so a busy poll on a
/// loaded machine would only keep it off the CPU), and fails at a generous deadline.
fn wait_for_index(c: &Chain, height: u64) {
    const DEADLINE: Duration = Duration::from_secs(60);
    let start = Instant::now();
    let mut pause = Duration::from_millis(1);
    loop {
        let indexed = c.reader().tx_index_height().unwrap();
        if indexed == Some(height) {
            return;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "the transaction index stayed at {indexed:?} for {DEADLINE:?}, not {height}"
        );
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

#[test]
fn the_background_transaction_index_follows_a_reorg() {
    let keys = Keys::new(3);
    let blocks = linear(6, &keys);
    let mut c = chain();
    for b in &blocks {
        c.submit_block(b.clone(), NOW).unwrap();
    }
    // Every transaction is found at once (the index or the scan above it), and the index
    // itself catches up.
    let transfer = blocks[4].transactions[1].txid();
    let found = c.reader().transaction(&transfer).unwrap().unwrap();
    assert_eq!(
        (found.block, found.height, found.index),
        (blocks[4].hash(), 5, 1)
    );
    wait_for_index(&c, 6);
    assert_eq!(
        c.reader().transaction(&transfer).unwrap().unwrap().height,
        5
    );

    // A heavier branch from height 3 replaces blocks 4..=6: their transactions are no longer
    // confirmed, the branch's coinbases are, and the index moves onto the branch.
    let fork = &blocks[2].header;
    let side = branch(fork, 3, 4, &keys, 2);
    for b in &side {
        c.submit_block(b.clone(), NOW).unwrap();
    }
    assert_eq!(c.tip().hash, side[3].hash());
    assert!(c.reader().transaction(&transfer).unwrap().is_none());
    let coinbase = side[1].transactions[0].txid();
    assert_eq!(
        c.reader().transaction(&coinbase).unwrap().unwrap().height,
        5
    );
    wait_for_index(&c, 7);
    assert!(c.reader().transaction(&transfer).unwrap().is_none());
    let still = blocks[1].transactions[1].txid();
    assert_eq!(c.reader().transaction(&still).unwrap().unwrap().height, 2);
}

#[test]
fn pending_account_changes_survive_a_stop_without_flush_and_a_reorg_below_the_flushed_state() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chain");
    let keys = Keys::new(3);
    let blocks = linear(8, &keys);
    let state = {
        let mut c = Chain::open(&path, &REGTEST, ChainOptions::default()).unwrap();
        for b in &blocks[..4] {
            c.submit_block(b.clone(), NOW).unwrap();
        }
        // Blocks 1..=4 flushed to the accounts tree; 5..=8 left pending, as a crash leaves
        // them (dropping the chain writes sled's buffers but not the pending state).
        c.flush().unwrap();
        assert_eq!(c.unflushed_blocks(), 0);
        for b in &blocks[4..] {
            c.submit_block(b.clone(), NOW).unwrap();
        }
        assert_eq!(c.unflushed_blocks(), 4);
        c.accounts().unwrap()
    };
    let mut c = Chain::open(&path, &REGTEST, ChainOptions::default()).unwrap();
    assert_eq!(c.tip().height, 8);
    assert_eq!(c.unflushed_blocks(), 4, "replayed from the redo records");
    assert_eq!(c.accounts().unwrap(), state);
    assert_eq!(
        c.account(&keys.address(1)).unwrap(),
        state[&keys.address(1)]
    );
    assert!(c.verify_chain(1).unwrap().ok);

    // A heavier branch from height 2 disconnects the four pending blocks and then two whose
    // changes are in the accounts tree itself.
    let side = branch(&blocks[1].header, 2, 8, &keys, 2);
    for b in &side {
        c.submit_block(b.clone(), NOW).unwrap();
    }
    assert_eq!(c.tip().hash, side[7].hash());
    let report = c.verify_chain(1).unwrap();
    assert!(report.ok, "{report:?}");
    let expected = {
        let mut builder = TestChainBuilder::new(&REGTEST);
        builder.build(keys.address(0), vec![]);
        builder.build(
            keys.address(0),
            vec![keys.transfer(&REGTEST, 0, keys.address(1), 1000, 10, 0)],
        );
        builder.state().clone()
    };
    assert_eq!(
        c.account(&keys.address(1)).unwrap(),
        expected[&keys.address(1)]
    );
    drop(c);
    let c = Chain::open(&path, &REGTEST, ChainOptions::default()).unwrap();
    assert_eq!(c.tip().hash, side[7].hash());
    assert!(c.verify_chain(1).unwrap().ok);
}
