//! Random sequences of admissions (from peers and local), mined blocks, foreign blocks,
//! reorgs, departed peers and expiry against a small, tight pool: its internal invariants hold after every step, and a block built from
//! it always passes the chain's own state transition (`apply_block`).

use ed25519_dalek::SigningKey;
use noded::chain::state::Account;
use noded::chain::validation::apply_block;
use noded::encoding::BoundedVec;
use noded::mempool::{Mempool, MempoolConfig};
use noded::params::REGTEST;
use noded::types::transaction::MAX_TX_SIZE;
use noded::types::{Address, Amount, Block, Coinbase, Hash256, Header, Transaction, Transfer};
use proptest::prelude::*;
use std::collections::HashMap;

type View = HashMap<Address, Account>;

const ACCOUNTS: u8 = 4;

fn key(n: u8) -> SigningKey {
    SigningKey::from_bytes(&[n + 1; 32])
}

fn addr(n: u8) -> Address {
    Address::from_public_key(&key(n).verifying_key().to_bytes())
}

#[derive(Clone, Debug)]
enum Op {
    Accept {
        from: u8,
        ahead: u64,
        amount: u64,
        fee: u64,
        /// The relaying peer; `None`: local.
        peer: Option<u64>,
    },
    Mine {
        max_txs: usize,
    },
    Foreign {
        from: u8,
        amount: u64,
    },
    Disconnect,
    PeerGone {
        peer: u64,
    },
    Expire {
        advance: u64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..ACCOUNTS, 0u64..4, 0u64..4_000, 144u64..3_000, prop::option::of(0u64..3))
            .prop_map(|(from, ahead, amount, fee, peer)| Op::Accept { from, ahead, amount, fee, peer }),
        2 => (0usize..5).prop_map(|max_txs| Op::Mine { max_txs }),
        1 => (0..ACCOUNTS, 0u64..6_000).prop_map(|(from, amount)| Op::Foreign { from, amount }),
        1 => Just(Op::Disconnect),
        1 => (0u64..3).prop_map(|peer| Op::PeerGone { peer }),
        1 => (0u64..80).prop_map(|advance| Op::Expire { advance }),
    ]
}

fn block(txs: Vec<Transaction>) -> Block {
    let mut all = vec![Transaction::Coinbase(Coinbase {
        height: 1,
        to: Address([0; 20]),
        amount: Amount(0),
    })];
    all.extend(txs);
    Block {
        header: Header {
            version: 1,
            prev_hash: Hash256::ZERO,
            merkle_root: Hash256::ZERO,
            time: 0,
            bits: 0,
            nonce: 0,
        },
        transactions: BoundedVec::new(all).unwrap(),
    }
}

/// Applies `b` to `view` with the chain's own rules; panics if the block is invalid.
fn connect(view: &View, b: &Block) -> View {
    let delta = apply_block(b, view).expect("a block built from the pool is valid");
    let mut after = view.clone();
    for (address, _, account) in delta.accounts {
        after.insert(address, account);
    }
    after
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn the_pool_stays_consistent_and_its_blocks_valid(ops in prop::collection::vec(op(), 1..40)) {
        let config = MempoolConfig {
            max_bytes: 8 * MAX_TX_SIZE,
            expiry_secs: 100,
            max_future_per_account: 2,
            max_future_total: 4,
            max_txs_per_account: 5,
            max_future_per_peer: 2,
            future_expiry_secs: 150,
            ..MempoolConfig::default()
        };
        let mut pool = Mempool::new(config, REGTEST.magic);
        let mut view: View = (0..ACCOUNTS)
            .map(|n| (addr(n), Account { balance: Amount(10_000), nonce: 0 }))
            .collect();
        let mut history: Vec<(Block, View)> = Vec::new();
        let mut now = 0u64;
        for op in ops {
            match op {
                Op::Accept { from, ahead, amount, fee, peer } => {
                    let nonce = pool.next_nonce(&addr(from), view[&addr(from)]) + ahead;
                    let tx = Transfer::sign(
                        &key(from), REGTEST.magic, addr((from + 1) % ACCOUNTS),
                        Amount(amount), Amount(fee), nonce,
                    );
                    let _ = pool.accept_from(Transaction::Transfer(tx), &view, now, peer);
                }
                Op::Mine { max_txs } => {
                    let txs: Vec<Transaction> = pool
                        .select(max_txs * MAX_TX_SIZE, &view)
                        .iter()
                        .map(|e| e.transaction())
                        .collect();
                    let b = block(txs);
                    let after = connect(&view, &b);
                    pool.block_connected(&b, &after);
                    history.push((b, std::mem::replace(&mut view, after)));
                }
                Op::Foreign { from, amount } => {
                    let state = view[&addr(from)];
                    if amount + 200 <= state.balance.0 {
                        let tx = Transfer::sign(
                            &key(from), REGTEST.magic, addr((from + 2) % ACCOUNTS),
                            Amount(amount), Amount(200), state.nonce,
                        );
                        let b = block(vec![Transaction::Transfer(tx)]);
                        let after = connect(&view, &b);
                        pool.block_connected(&b, &after);
                        history.push((b, std::mem::replace(&mut view, after)));
                    }
                }
                Op::Disconnect => {
                    if let Some((b, before)) = history.pop() {
                        view = before;
                        pool.block_disconnected(&b, &view, now);
                    }
                }
                Op::PeerGone { peer } => pool.release_peer(peer),
                Op::Expire { advance } => {
                    now += advance;
                    pool.expire(now);
                }
            }
            pool.check_invariants();
            prop_assert!(pool.bytes() <= 8 * MAX_TX_SIZE);
            // Whatever the pool would mine now is a valid block on the current state.
            let all: Vec<Transaction> = pool
                .select(usize::MAX, &view)
                .iter()
                .map(|e| e.transaction())
                .collect();
            connect(&view, &block(all));
        }
    }
}
