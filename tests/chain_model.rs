//! Model-based property test of the chain core: random trees of mined regtest blocks (forks,
//! random transfers between a few keys, and invalid blocks of five kinds anywhere in the tree)
//! are fed in random order, with duplicates. After every step the node's tip must be a
//! most-work valid tip as an independent model computes it, its account state must equal the
//! model's replay of that chain from genesis, and an equal-work newcomer must not displace the
//! tip (first seen wins). Half the blocks are submitted pre-checked (signatures verified before
//! the writer sees them, as `ChainHandle` does), half raw. At the end `verifychain` must pass.

use noded::chain::state::{Account, AccountView};
use noded::chain::testkit::{assemble, make_block, Keys};
use noded::chain::validation::{apply_block, precheck};
use noded::chain::{Chain, ChainError, ChainOptions, SubmitOutcome};
use noded::params::REGTEST;
use noded::types::{Address, Amount, Block, Coinbase, Hash256, Header, Transaction};
use proptest::prelude::*;
use std::collections::{BTreeMap, HashMap, HashSet};

const KEYS: usize = 4;
const NOW: u64 = 4_000_000_000;

#[derive(Clone, Copy, Debug)]
enum Corruption {
    BadSignature,
    BadNonce,
    Overspend,
    BadMerkle,
    BadCoinbaseAmount,
}

#[derive(Clone, Debug)]
struct StepPlan {
    /// Build on one of the last three blocks (long chains) or on any block (forks).
    recent: bool,
    parent_pick: usize,
    miner: usize,
    /// (from, to, amount in thousandths of the balance, fee)
    transfers: Vec<(usize, usize, u64, u64)>,
    corruption: Option<Corruption>,
    time_step: u64,
}

fn corruption() -> impl Strategy<Value = Option<Corruption>> {
    prop_oneof![
        16 => Just(None),
        1 => Just(Some(Corruption::BadSignature)),
        1 => Just(Some(Corruption::BadNonce)),
        1 => Just(Some(Corruption::Overspend)),
        1 => Just(Some(Corruption::BadMerkle)),
        1 => Just(Some(Corruption::BadCoinbaseAmount)),
    ]
}

fn step() -> impl Strategy<Value = StepPlan> {
    (
        prop::bool::weighted(0.7),
        0usize..1000,
        0..KEYS,
        prop::collection::vec((0..KEYS, 0..KEYS, 0u64..1000, 0u64..50), 0..4),
        corruption(),
        1u64..100,
    )
        .prop_map(
            |(recent, parent_pick, miner, transfers, corruption, time_step)| StepPlan {
                recent,
                parent_pick,
                miner,
                transfers,
                corruption,
                time_step,
            },
        )
}

/// One block of the model tree.
struct Node {
    block: Block,
    hash: Hash256,
    /// Index of the parent in the tree; None for a child of genesis.
    parent: Option<usize>,
    height: u64,
    /// Valid itself and all its ancestors.
    valid: bool,
    /// The account state after it, replayed from genesis (valid nodes only; for invalid ones
    /// the state of the nearest valid ancestor, used only to build descendants).
    state: HashMap<Address, Account>,
}

fn apply(state: &HashMap<Address, Account>, block: &Block) -> HashMap<Address, Account> {
    let delta = apply_block(block, state).expect("model block applies");
    let mut next = state.clone();
    for (address, _, after) in delta.accounts {
        if after == Account::default() {
            next.remove(&address);
        } else {
            next.insert(address, after);
        }
    }
    next
}

fn build_tree(plans: &[StepPlan], keys: &Keys) -> Vec<Node> {
    let genesis = REGTEST.genesis_block().header;
    let mut nodes: Vec<Node> = vec![];
    for plan in plans {
        let parent = if nodes.is_empty() {
            None
        } else if plan.recent {
            let back = plan.parent_pick % nodes.len().min(3);
            Some(nodes.len() - 1 - back)
        } else {
            Some(plan.parent_pick % (nodes.len() + 1)).and_then(|p| p.checked_sub(1))
        };
        let (parent_header, parent_height, parent_valid, base): (Header, u64, bool, _) =
            match parent {
                None => (genesis, 0, true, HashMap::new()),
                Some(p) => (
                    nodes[p].block.header,
                    nodes[p].height,
                    nodes[p].valid,
                    nodes[p].state.clone(),
                ),
            };
        let height = parent_height + 1;
        // Valid transfers against the parent's state, applied as we go.
        let mut working = base.clone();
        let mut txs = vec![];
        for &(from, to, frac, fee) in &plan.transfers {
            let sender = working.account(&keys.address(from));
            let available = sender.balance.0;
            if available <= fee {
                continue;
            }
            let amount = (available - fee) * frac / 1000;
            let tx = keys.transfer(&REGTEST, from, keys.address(to), amount, fee, sender.nonce);
            let Transaction::Transfer(t) = &tx else {
                unreachable!()
            };
            let s = working.entry(keys.address(from)).or_default();
            s.balance = Amount(s.balance.0 - amount - fee);
            s.nonce += 1;
            working.entry(t.to).or_default().balance.0 += amount;
            txs.push(tx);
        }
        // A bad transfer, for the kinds that need one: from a key of its own, so no valid
        // transfer of the block is disturbed.
        let extra = Keys::new(KEYS + 1);
        let spare = KEYS;
        let spare_account = base.account(&extra.address(spare));
        match plan.corruption {
            Some(Corruption::BadSignature) => {
                let mut tx = extra.transfer(&REGTEST, spare, keys.address(0), 0, 0, 0);
                if let Transaction::Transfer(t) = &mut tx {
                    t.signature[9] ^= 0x10;
                }
                txs.push(tx);
            }
            Some(Corruption::BadNonce) => {
                txs.push(extra.transfer(&REGTEST, spare, keys.address(0), 0, 0, 1));
            }
            Some(Corruption::Overspend) => {
                let amount = spare_account.balance.0 + 1;
                txs.push(extra.transfer(&REGTEST, spare, keys.address(0), amount, 0, 0));
            }
            _ => {}
        }
        // Two plans can describe the same block (same parent, time, miner, transfers); a
        // later second is nudged so every node of the tree is a distinct block.
        let mut time = parent_header.time + plan.time_step;
        while nodes.iter().any(|n| {
            n.block.header.prev_hash == parent_header.hash() && n.block.header.time == time
        }) {
            time += 1;
        }
        let mut block = make_block(
            &REGTEST,
            &parent_header,
            parent_height,
            time,
            keys.address(plan.miner),
            txs,
        );
        match plan.corruption {
            Some(Corruption::BadMerkle) => {
                block.header.merkle_root.0[0] ^= 1;
                noded::chain::testkit::mine(&mut block.header);
            }
            Some(Corruption::BadCoinbaseAmount) => {
                let mut txs = block.transactions.clone().into_inner();
                if let Transaction::Coinbase(Coinbase { amount, .. }) = &mut txs[0] {
                    amount.0 += 1;
                }
                block = assemble(block.header, txs);
            }
            _ => {}
        }
        let valid = parent_valid && plan.corruption.is_none();
        let state = if valid { apply(&base, &block) } else { base };
        nodes.push(Node {
            hash: block.hash(),
            block,
            parent,
            height,
            valid,
            state,
        });
    }
    nodes
}

/// Whether the node can know `i`: it and every ancestor delivered, and none of them a block
/// that is refused before storage (bad merkle root or coinbase amount: those never enter the
/// index, so their descendants stay orphans).
fn reachable(nodes: &[Node], plans: &[StepPlan], delivered: &HashSet<usize>, i: usize) -> bool {
    let mut cursor = Some(i);
    while let Some(c) = cursor {
        if !delivered.contains(&c)
            || matches!(
                plans[c].corruption,
                Some(Corruption::BadMerkle) | Some(Corruption::BadCoinbaseAmount)
            )
        {
            return false;
        }
        cursor = nodes[c].parent;
    }
    true
}

fn run_case(plans: Vec<StepPlan>, order: Vec<usize>) -> Result<(), TestCaseError> {
    let keys = Keys::new(KEYS);
    let nodes = build_tree(&plans, &keys);
    let by_hash: HashMap<Hash256, usize> =
        nodes.iter().enumerate().map(|(i, n)| (n.hash, i)).collect();
    let options = ChainOptions {
        verify_threads: 2,
        ..ChainOptions::default()
    };
    let mut chain = Chain::open_temporary(&REGTEST, options).expect("open");
    let mut delivered: HashSet<usize> = HashSet::new();
    let mut previous_tip = chain.tip();
    for &i in &order {
        // Half the blocks come the way ChainHandle submits them: stateless checks and
        // signatures first (off the writer), then the stateful rules.
        let outcome = if i % 2 == 0 {
            match precheck(&REGTEST, nodes[i].block.clone(), Some(2)) {
                Ok(checked) => chain.submit_checked(checked, NOW),
                Err((hash, error)) => Err(ChainError::InvalidBlock { hash, error }),
            }
        } else {
            chain.submit_block(nodes[i].block.clone(), NOW)
        };
        delivered.insert(i);
        // Now and then the pending account changes are flushed to the accounts tree, so
        // later reorgs disconnect blocks on both sides of the state marker.
        if i % 2 == 0 {
            chain.flush().expect("flush");
        }
        match &outcome {
            Ok(SubmitOutcome::Connected { .. }) => {
                prop_assert!(nodes[i].valid, "invalid block {i} connected")
            }
            Err(ChainError::InvalidBlock { .. }) | Err(ChainError::KnownInvalid(_)) => {
                prop_assert!(!nodes[i].valid, "valid block {i} refused: {outcome:?}")
            }
            Ok(_) => {}
            Err(e) => return Err(TestCaseError::fail(format!("block {i}: {e}"))),
        }

        // The model: the most work (= height, all targets equal) over the valid blocks the
        // node can know.
        let best_height = (0..nodes.len())
            .filter(|&j| nodes[j].valid && reachable(&nodes, &plans, &delivered, j))
            .map(|j| nodes[j].height)
            .max()
            .unwrap_or(0);
        let tip = chain.tip();
        if std::env::var("MODEL_DEBUG").is_ok() {
            eprintln!(
                "deliver {i} (parent {:?}, h{}, valid {}, {:?}): {outcome:?} -> tip h{} {:?}",
                nodes[i].parent,
                nodes[i].height,
                nodes[i].valid,
                plans[i].corruption,
                tip.height,
                by_hash.get(&tip.hash)
            );
        }
        prop_assert_eq!(tip.height, best_height, "after delivering block {}", i);
        let expected_state: BTreeMap<Address, Account> = if tip.height == 0 {
            prop_assert_eq!(tip.hash, REGTEST.genesis_hash());
            BTreeMap::new()
        } else {
            let Some(&t) = by_hash.get(&tip.hash) else {
                return Err(TestCaseError::fail("tip is not a block of the tree"));
            };
            prop_assert!(nodes[t].valid, "tip {} is invalid", t);
            nodes[t].state.iter().map(|(a, s)| (*a, *s)).collect()
        };
        prop_assert_eq!(chain.accounts().expect("accounts"), expected_state);
        // First seen wins: a tip that still has the most work is never displaced.
        if previous_tip.height == tip.height {
            prop_assert_eq!(previous_tip.hash, tip.hash, "equal-work tip displaced");
        }
        previous_tip = tip;
    }
    let report = chain.verify_chain(3).expect("verifychain");
    prop_assert!(report.ok, "{report:?}");
    Ok(())
}

fn case() -> impl Strategy<Value = (Vec<StepPlan>, Vec<usize>)> {
    prop::collection::vec(step(), 1..28).prop_flat_map(|plans| {
        let n = plans.len();
        let order = Just((0..n).collect::<Vec<usize>>()).prop_shuffle();
        let repeats = prop::collection::vec(0..n, 0..4);
        (Just(plans), order, repeats).prop_map(|(plans, mut order, repeats)| {
            // Duplicates: some blocks are delivered again later.
            for r in repeats {
                let at = (r * 7) % (order.len() + 1);
                order.insert(at, r);
            }
            (plans, order)
        })
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, max_shrink_iters: 200, ..ProptestConfig::default() })]

    #[test]
    fn tip_is_the_most_work_valid_chain_and_state_matches_a_replay((plans, order) in case()) {
        run_case(plans, order)?;
    }
}

#[test]
fn a_long_fork_overtakes_and_an_invalid_block_deep_in_it_sends_the_node_back() {
    // Main chain of 6; a fork from height 1 of 8 whose 5th block overspends. The node must
    // try the fork (more work), find the bad block, and return to the best valid chain: the
    // fork up to the block before the bad one has 1 + 4 = 5 < 6 blocks, so the original.
    let mut plans = vec![];
    let plain = |recent: bool, pick: usize, corruption| StepPlan {
        recent,
        parent_pick: pick,
        miner: 0,
        transfers: vec![(0, 1, 300, 1)],
        corruption,
        time_step: 10,
    };
    for _ in 0..6 {
        plans.push(plain(true, 0, None));
    }
    // Fork at block 0 (height 1): parent pick 1 → index 0 (uniform pick over genesis + nodes).
    plans.push(plain(false, 1, None));
    for k in 0..7 {
        let corruption = if k == 3 {
            Some(Corruption::Overspend)
        } else {
            None
        };
        plans.push(plain(true, 0, corruption));
    }
    let order: Vec<usize> = (0..plans.len()).collect();
    run_case(plans, order).unwrap();
}
