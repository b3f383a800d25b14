//! Block templates judged by the chain's own consensus checks: header fields from the source,
//! time never below median time past + 1, coinbase = subsidy + fees, a correct merkle root,
//! fee order with nonce order kept, the size budget, and validity even when the pool lags.

use ed25519_dalek::SigningKey;
use noded::chain::state::Account;
use noded::chain::validation::{
    apply_block, check_block_stateless, check_coinbase, check_header_contextual,
    check_header_stateless, HeaderContext,
};
use noded::mempool::{Mempool, MempoolConfig};
use noded::mining::{build_template, search, ChainTemplateSource, MAX_TEMPLATE_TX_BYTES};
use noded::params::REGTEST;
use noded::types::block::{HEADER_SIZE, MAX_BLOCK_SIZE};
use noded::types::transaction::{MAX_TX_SIZE, MIN_TX_SIZE};
use noded::types::{sha256d, Address, Amount, Hash256, Transaction, Transfer};
use std::collections::HashMap;
use std::sync::atomic::AtomicU64;

struct Source {
    height: u64,
    hash: Hash256,
    mtp: u64,
    accounts: HashMap<Address, Account>,
}

impl ChainTemplateSource for Source {
    fn tip(&self) -> (u64, Hash256) {
        (self.height, self.hash)
    }
    fn next_bits(&self) -> u32 {
        REGTEST.pow_limit_bits
    }
    fn median_time_past(&self) -> u64 {
        self.mtp
    }
    fn account(&self, address: &Address) -> Account {
        self.accounts.get(address).copied().unwrap_or_default()
    }
}

fn key(n: u8) -> SigningKey {
    SigningKey::from_bytes(&[n; 32])
}

fn addr(n: u8) -> Address {
    Address::from_public_key(&key(n).verifying_key().to_bytes())
}

fn tx(from: u8, nonce: u64, fee: u64) -> Transaction {
    Transaction::Transfer(Transfer::sign(
        &key(from),
        REGTEST.magic,
        addr(99),
        Amount(1_000),
        Amount(fee),
        nonce,
    ))
}

fn source() -> Source {
    Source {
        height: 149,
        hash: sha256d(b"tip"),
        mtp: 1_800_000_000,
        accounts: [1u8, 2, 3]
            .iter()
            .map(|k| {
                (
                    addr(*k),
                    Account {
                        balance: Amount(1_000_000),
                        nonce: 0,
                    },
                )
            })
            .collect(),
    }
}

#[test]
fn a_template_passes_every_consensus_check_once_mined() {
    let src = source();
    let mut pool = Mempool::new(MempoolConfig::default(), REGTEST.magic);
    let txs = [
        tx(1, 0, 500),
        tx(1, 1, 5_000),
        tx(2, 0, 2_000),
        tx(3, 0, 300),
    ];
    for t in &txs {
        pool.accept(t.clone(), &src.accounts, 0).unwrap();
    }
    let miner = addr(7);
    let now = src.mtp - 10;
    let t = build_template(&REGTEST, &src, &pool, miner, now);
    let block = &t.block;
    assert_eq!(t.height, 150);
    assert_eq!(block.header.prev_hash, src.hash);
    assert_eq!(block.header.bits, REGTEST.pow_limit_bits);
    assert_eq!(
        block.header.time,
        src.mtp + 1,
        "a clock behind the median time past still yields a valid time"
    );
    assert_eq!(block.compute_merkle_root(), block.header.merkle_root);
    assert_eq!(t.fees, Amount(500 + 5_000 + 2_000 + 300));
    assert_eq!(
        t.subsidy,
        Amount::from_coins(25),
        "height 150 is regtest's first halving"
    );
    let Transaction::Coinbase(cb) = &block.transactions[0] else {
        panic!("coinbase first")
    };
    assert_eq!((cb.height, cb.to), (150, miner));
    assert_eq!(cb.amount, Amount(t.subsidy.0 + t.fees.0));
    // Best fee rate first, but account 1's cheap nonce 0 before its rich nonce 1.
    let order: Vec<Hash256> = block.transactions[1..]
        .iter()
        .map(Transaction::txid)
        .collect();
    assert_eq!(
        order,
        vec![txs[2].txid(), txs[0].txid(), txs[1].txid(), txs[3].txid()]
    );

    let summary = check_block_stateless(block).unwrap();
    check_coinbase(&REGTEST, block, t.height, summary.fees).unwrap();
    apply_block(block, &src.accounts).unwrap();
    check_header_contextual(
        &block.header,
        &HeaderContext {
            height: t.height,
            required_bits: src.next_bits(),
            median_time_past: src.mtp,
            now,
        },
    )
    .unwrap();

    let tried = AtomicU64::new(0);
    let mined = search(&block.header, &t.target, 0..1_000_000, 1, &|| false, &tried).unwrap();
    check_header_stateless(&REGTEST, &mined, &mined.hash()).unwrap();
}

#[test]
fn the_current_time_is_used_when_it_is_past_the_median() {
    let src = source();
    let pool = Mempool::new(MempoolConfig::default(), REGTEST.magic);
    let t = build_template(&REGTEST, &src, &pool, addr(7), src.mtp + 500);
    assert_eq!(t.block.header.time, src.mtp + 500);
    assert_eq!(
        t.block.transactions.len(),
        1,
        "an empty pool: coinbase only"
    );
    assert_eq!(t.fees, Amount::ZERO);
}

#[test]
fn a_template_stays_valid_when_the_pool_lags_the_chain() {
    let mut src = source();
    let mut pool = Mempool::new(MempoolConfig::default(), REGTEST.magic);
    let a0 = tx(1, 0, 500);
    let a1 = tx(1, 1, 500);
    pool.accept(a0.clone(), &src.accounts, 0).unwrap();
    pool.accept(a1.clone(), &src.accounts, 0).unwrap();
    // A block carrying a0 connected; the pool has not heard of it yet.
    let sender = src.accounts.get_mut(&addr(1)).unwrap();
    sender.nonce = 1;
    sender.balance = Amount(sender.balance.0 - 1_500);
    src.height += 1;
    let t = build_template(&REGTEST, &src, &pool, addr(7), 0);
    let ids: Vec<_> = t.block.transactions[1..]
        .iter()
        .map(Transaction::txid)
        .collect();
    assert_eq!(ids, vec![a1.txid()]);
    apply_block(&t.block, &src.accounts).unwrap();
}

#[test]
fn the_transaction_budget_fills_a_block_exactly_to_its_limit() {
    // Header, the u64 transaction count, the coinbase, then transfers of fixed size.
    assert_eq!(
        MAX_TEMPLATE_TX_BYTES,
        MAX_BLOCK_SIZE - HEADER_SIZE - 8 - MIN_TX_SIZE
    );
    let src = source();
    let mut pool = Mempool::new(MempoolConfig::default(), REGTEST.magic);
    for n in 0..3 {
        pool.accept(tx(1, n, 500), &src.accounts, 0).unwrap();
    }
    let t = build_template(&REGTEST, &src, &pool, addr(7), 0);
    assert_eq!(
        t.block.encoded_size(),
        HEADER_SIZE + 8 + MIN_TX_SIZE + 3 * MAX_TX_SIZE
    );
}
