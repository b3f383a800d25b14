//! Every mempool rule, through the public API, each refusal asserted by its reason code:
//! nonce chains and future promotion, balance across a pending chain, fee-rate ordering in
//! templates that keeps nonce order, the byte cap with lowest-fee-rate tail eviction, expiry,
//! replacement by a higher fee, the minimum relay fee, and block connect/disconnect.

use ed25519_dalek::SigningKey;
use noded::chain::state::Account;
use noded::encoding::BoundedVec;
use noded::mempool::{Mempool, MempoolConfig, MempoolError};
use noded::params::REGTEST;
use noded::types::transaction::MAX_TX_SIZE;
use noded::types::{
    Address, Amount, Block, Coinbase, Hash256, Header, NetworkMagic, Transaction, Transfer,
};
use std::collections::HashMap;

const MAGIC: NetworkMagic = REGTEST.magic;
const SIZE: usize = MAX_TX_SIZE;

type View = HashMap<Address, Account>;

fn key(n: u8) -> SigningKey {
    SigningKey::from_bytes(&[n; 32])
}

fn addr(n: u8) -> Address {
    Address::from_public_key(&key(n).verifying_key().to_bytes())
}

fn tx(from: u8, nonce: u64, amount: u64, fee: u64) -> Transaction {
    Transaction::Transfer(Transfer::sign(
        &key(from),
        MAGIC,
        Address([0xee; 20]),
        Amount(amount),
        Amount(fee),
        nonce,
    ))
}

fn view(funded: &[(u8, u64)]) -> View {
    funded
        .iter()
        .map(|(k, balance)| {
            (
                addr(*k),
                Account {
                    balance: Amount(*balance),
                    nonce: 0,
                },
            )
        })
        .collect()
}

fn pool() -> Mempool {
    Mempool::new(MempoolConfig::default(), MAGIC)
}

fn pool_with(config: MempoolConfig) -> Mempool {
    Mempool::new(config, MAGIC)
}

fn code(result: Result<noded::mempool::Accepted, MempoolError>) -> &'static str {
    match result {
        Ok(a) => panic!("accepted {a:?}"),
        Err(e) => e.code(),
    }
}

fn block(txs: &[Transaction]) -> Block {
    let mut all = vec![Transaction::Coinbase(Coinbase {
        height: 1,
        to: Address([0; 20]),
        amount: Amount(0),
    })];
    all.extend_from_slice(txs);
    Block {
        header: Header {
            version: 1,
            prev_hash: Hash256::ZERO,
            merkle_root: Hash256::ZERO,
            time: 0,
            bits: 0x207fffff,
            nonce: 0,
        },
        transactions: BoundedVec::new(all).unwrap(),
    }
}

/// Applies a block's transfers to `v` as the chain would.
fn apply(v: &mut View, txs: &[Transaction]) {
    for t in txs {
        let Transaction::Transfer(t) = t else {
            continue;
        };
        let from = v.entry(t.sender()).or_default();
        assert_eq!(from.nonce, t.nonce);
        from.nonce += 1;
        from.balance = Amount(from.balance.0 - t.amount.0 - t.fee.0);
        v.entry(t.to).or_default().balance.0 += t.amount.0;
    }
}

fn selected(p: &Mempool, v: &View, max: usize) -> Vec<Hash256> {
    p.select(max, v).iter().map(|e| e.txid).collect()
}

#[test]
fn nonce_chain_is_accepted_in_order_and_a_used_nonce_is_refused() {
    let mut p = pool();
    let v = view(&[(1, 10_000)]);
    for n in 0..3 {
        let a = p.accept(tx(1, n, 100, 200), &v, 0).unwrap();
        assert!(!a.future, "nonce {n} continues the chain");
    }
    assert_eq!(p.len(), 3);
    let mut v2 = v.clone();
    v2.get_mut(&addr(1)).unwrap().nonce = 5;
    assert_eq!(code(p.accept(tx(1, 4, 1, 200), &v2, 0)), "nonce-too-low");
    p.check_invariants();
}

#[test]
fn a_nonce_gap_waits_as_future_and_is_promoted_when_the_gap_fills() {
    let mut p = pool();
    let v = view(&[(1, 10_000)]);
    let t2 = tx(1, 2, 100, 200);
    let t1 = tx(1, 1, 100, 200);
    assert!(p.accept(t2.clone(), &v, 0).unwrap().future);
    assert!(p.accept(t1.clone(), &v, 0).unwrap().future);
    assert_eq!(p.future_len(), 2);
    assert!(
        selected(&p, &v, usize::MAX).is_empty(),
        "futures are not minable"
    );

    let a = p.accept(tx(1, 0, 100, 200), &v, 0).unwrap();
    assert!(!a.future);
    assert_eq!(a.promoted, vec![t1.txid(), t2.txid()]);
    assert_eq!(p.future_len(), 0);
    assert_eq!(selected(&p, &v, usize::MAX).len(), 3);
    p.check_invariants();
}

#[test]
fn futures_are_bounded_per_account_and_in_total() {
    let config = MempoolConfig {
        max_future_per_account: 2,
        max_future_total: 3,
        ..Default::default()
    };
    let mut p = pool_with(config);
    let v = view(&[(1, 10_000), (2, 10_000)]);
    p.accept(tx(1, 5, 1, 200), &v, 0).unwrap();
    p.accept(tx(1, 6, 1, 200), &v, 0).unwrap();
    assert_eq!(code(p.accept(tx(1, 7, 1, 200), &v, 0)), "too-many-future");
    p.accept(tx(2, 5, 1, 200), &v, 0).unwrap();
    assert_eq!(code(p.accept(tx(2, 6, 1, 200), &v, 0)), "too-many-future");
    // A gap-free transaction is not a future and still enters.
    p.accept(tx(2, 0, 1, 200), &v, 0).unwrap();
    p.check_invariants();
}

/// A peer's transaction past a nonce gap (an orphan, in Bitcoin's terms) counts against that
/// peer until its gap fills: past its cap the peer's futures are refused, with a code of
/// their own, while its ready transactions, other peers' futures and local ones still enter.
#[test]
fn a_peers_futures_are_capped_until_their_gap_fills() {
    let mut p = pool_with(MempoolConfig {
        max_future_per_peer: 2,
        ..Default::default()
    });
    let v = view(&[(1, 10_000), (2, 10_000), (3, 10_000)]);
    let (a2, a3) = (tx(1, 2, 1, 200), tx(1, 3, 1, 200));
    assert!(p.accept_from(a2.clone(), &v, 0, Some(7)).unwrap().future);
    assert!(p.accept_from(a3.clone(), &v, 0, Some(7)).unwrap().future);
    assert_eq!(p.future_of_peer(7), 2);
    let over = tx(2, 5, 1, 200);
    assert_eq!(
        code(p.accept_from(over.clone(), &v, 0, Some(7))),
        "too-many-future-from-peer"
    );
    // Taking over another's future counts as a new one too.
    let theirs = tx(3, 4, 1, 200);
    p.accept_from(theirs, &v, 0, Some(8)).unwrap();
    assert_eq!(
        code(p.accept_from(tx(3, 4, 1, 400), &v, 0, Some(7))),
        "too-many-future-from-peer"
    );
    // The same transaction from another peer, or from here, enters.
    assert!(p.accept_from(over, &v, 0, Some(8)).unwrap().future);
    assert!(p.accept(tx(2, 6, 1, 200), &v, 0).unwrap().future);
    // A ready transaction is nobody's orphan.
    assert!(
        !p.accept_from(tx(3, 0, 1, 200), &v, 0, Some(7))
            .unwrap()
            .future
    );
    let info = p.info();
    assert_eq!((info.orphans, info.future), (5, 5));
    assert_eq!(info.orphan_bytes, p.future_bytes());
    assert!(info.orphan_bytes > 0 && info.orphan_bytes < info.bytes);
    p.check_invariants();
    // The gap fills (from anywhere): peer 7's futures are promoted and count no more.
    p.accept(tx(1, 0, 1, 200), &v, 0).unwrap();
    let a = p.accept(tx(1, 1, 1, 200), &v, 0).unwrap();
    assert_eq!(a.promoted, vec![a2.txid(), a3.txid()]);
    assert_eq!(p.future_of_peer(7), 0);
    assert!(
        p.accept_from(tx(2, 9, 1, 200), &v, 0, Some(7))
            .unwrap()
            .future
    );
    p.check_invariants();
}

/// When every future's room is taken, a newcomer takes the room of the oldest future of the
/// peer holding the most (at least two more than the newcomer's peer), else is refused;
/// local futures are never taken.
#[test]
fn a_full_future_pool_makes_room_from_the_peer_holding_the_most() {
    let mut p = pool_with(MempoolConfig {
        max_future_total: 3,
        max_future_per_peer: 3,
        ..Default::default()
    });
    let v = view(&[(1, 10_000), (2, 10_000), (3, 10_000)]);
    let oldest = tx(1, 5, 1, 200);
    p.accept_from(oldest.clone(), &v, 10, Some(1)).unwrap();
    p.accept_from(tx(1, 6, 1, 200), &v, 20, Some(1)).unwrap();
    p.accept_from(tx(1, 7, 1, 200), &v, 30, Some(1)).unwrap();
    let a = p.accept_from(tx(2, 5, 1, 200), &v, 40, Some(2)).unwrap();
    assert_eq!(a.removed, vec![(oldest.txid(), MempoolError::Evicted)]);
    assert_eq!((p.future_of_peer(1), p.future_of_peer(2)), (2, 1));
    // Peer 2 holding 1, peer 1 holding 2: no room for peer 2 (that would only swap them).
    assert_eq!(
        code(p.accept_from(tx(2, 6, 1, 200), &v, 50, Some(2))),
        "too-many-future"
    );
    // A local future takes room from peer 1; then peers hold 1 each and nothing gives way.
    assert!(p.accept(tx(3, 5, 1, 200), &v, 60).unwrap().future);
    assert_eq!(p.future_of_peer(1), 1);
    assert_eq!(
        code(p.accept_from(tx(2, 6, 1, 200), &v, 70, Some(3))),
        "too-many-future"
    );
    assert_eq!(p.future_len(), 3);
    p.check_invariants();
}

/// A departed peer's futures stay (their gap may still fill) but count against nobody, and
/// are the first to give up their room.
#[test]
fn a_departed_peers_futures_stay_and_give_way_first() {
    let mut p = pool_with(MempoolConfig {
        max_future_total: 3,
        max_future_per_peer: 2,
        ..Default::default()
    });
    let v = view(&[(1, 10_000), (2, 10_000)]);
    let (first, second) = (tx(1, 1, 1, 200), tx(1, 2, 1, 200));
    p.accept_from(first.clone(), &v, 10, Some(1)).unwrap();
    p.accept_from(second.clone(), &v, 20, Some(1)).unwrap();
    p.release_peer(1);
    assert_eq!(p.future_of_peer(1), 0);
    assert_eq!(p.future_len(), 2);
    p.check_invariants();
    // Peer 2 fills the last room, then takes the departed peer's oldest.
    p.accept_from(tx(2, 5, 1, 200), &v, 30, Some(2)).unwrap();
    let a = p.accept_from(tx(2, 6, 1, 200), &v, 40, Some(2)).unwrap();
    assert_eq!(a.removed, vec![(first.txid(), MempoolError::Evicted)]);
    // The one left is promoted when its gap fills.
    p.accept(tx(1, 0, 1, 200), &v, 50).unwrap();
    let a = p.accept(tx(1, 1, 1, 200), &v, 50).unwrap();
    assert_eq!(a.promoted, vec![second.txid()]);
    p.check_invariants();
}

/// Futures are dropped 20 minutes after they started waiting (`future-expired`), ready
/// transactions only at the pool's expiry; the sweep reports, per peer, how many of the
/// futures it relayed went unfilled.
#[test]
fn futures_expire_after_twenty_minutes_and_their_peers_are_reported() {
    let mut p = pool();
    assert_eq!(p.config().future_expiry_secs, 20 * 60);
    let v = view(&[(1, 10_000), (2, 10_000)]);
    let t0 = 1_000;
    let ready = tx(1, 0, 1, 200);
    let (from_peer, local) = (tx(1, 5, 1, 200), tx(2, 3, 1, 200));
    p.accept(ready.clone(), &v, t0).unwrap();
    p.accept_from(from_peer.clone(), &v, t0, Some(4)).unwrap();
    p.accept(local.clone(), &v, t0 + 60).unwrap();
    let report = p.expire_report(t0 + 1_199);
    assert!(report.removed.is_empty() && report.unfilled.is_empty());
    let report = p.expire_report(t0 + 1_200);
    assert_eq!(
        report.removed,
        vec![(from_peer.txid(), MempoolError::FutureExpired)]
    );
    assert_eq!(
        report.unfilled.into_iter().collect::<Vec<_>>(),
        vec![(4, 1)]
    );
    assert_eq!(
        p.expire(t0 + 1_260),
        vec![(local.txid(), MempoolError::FutureExpired)]
    );
    assert_eq!(MempoolError::FutureExpired.code(), "future-expired");
    assert!(p.contains(&ready.txid()));
    assert_eq!(p.future_len(), 0);
    p.check_invariants();
}

/// A ready transaction left behind a gap when an earlier nonce expires waits as a future
/// from then, nobody's: its 20 minutes count from the sweep that made it wait.
#[test]
fn a_transaction_left_behind_a_gap_waits_twenty_minutes_from_then() {
    let mut p = pool_with(MempoolConfig {
        expiry_secs: 2_000,
        ..Default::default()
    });
    let v = view(&[(1, 10_000)]);
    let (old, later) = (tx(1, 0, 1, 200), tx(1, 1, 1, 200));
    p.accept_from(old, &v, 0, Some(3)).unwrap();
    p.accept_from(later.clone(), &v, 1_500, Some(3)).unwrap();
    assert_eq!(p.expire(2_000).len(), 1);
    assert!(p.is_future(&later.txid()));
    assert_eq!(p.future_of_peer(3), 0, "its relayer did nothing wrong");
    assert!(p.expire(2_000 + 1_199).is_empty());
    let report = p.expire_report(2_000 + 1_200);
    assert_eq!(
        report.removed,
        vec![(later.txid(), MempoolError::FutureExpired)]
    );
    assert!(report.unfilled.is_empty());
    p.check_invariants();
}

#[test]
fn an_account_holds_at_most_max_txs_per_account() {
    let mut p = pool_with(MempoolConfig {
        max_txs_per_account: 2,
        ..Default::default()
    });
    let v = view(&[(1, 10_000)]);
    p.accept(tx(1, 0, 1, 200), &v, 0).unwrap();
    p.accept(tx(1, 1, 1, 200), &v, 0).unwrap();
    assert_eq!(code(p.accept(tx(1, 2, 1, 200), &v, 0)), "chain-too-long");
}

#[test]
fn the_balance_must_cover_the_whole_pending_chain() {
    let mut p = pool();
    let v = view(&[(1, 1_200)]);
    p.accept(tx(1, 0, 400, 200), &v, 0).unwrap();
    let err = p.accept(tx(1, 1, 401, 200), &v, 0).unwrap_err();
    assert_eq!(err.code(), "insufficient-funds");
    assert_eq!(
        err,
        MempoolError::InsufficientFunds {
            needed: Amount(1_201),
            available: Amount(1_200)
        }
    );
    p.accept(tx(1, 1, 400, 200), &v, 0).unwrap();
    // A future must at least be affordable on its own.
    assert_eq!(
        code(p.accept(tx(1, 9, 1_001, 200), &v, 0)),
        "insufficient-funds"
    );
    // An unfunded account can send nothing.
    assert_eq!(
        code(p.accept(tx(3, 0, 0, 200), &v, 0)),
        "insufficient-funds"
    );
    p.check_invariants();
}

#[test]
fn a_future_that_is_unaffordable_at_its_turn_is_dropped_on_promotion() {
    let mut p = pool();
    let v = view(&[(1, 1_000)]);
    let t1 = tx(1, 1, 700, 200);
    p.accept(t1.clone(), &v, 0).unwrap();
    let a = p.accept(tx(1, 0, 500, 200), &v, 0).unwrap();
    assert!(a.promoted.is_empty());
    assert_eq!(a.removed.len(), 1);
    assert_eq!(a.removed[0].0, t1.txid());
    assert_eq!(a.removed[0].1.code(), "insufficient-funds");
    assert!(!p.contains(&t1.txid()));
    p.check_invariants();
}

#[test]
fn templates_take_the_best_fee_rate_first_but_keep_each_accounts_nonce_order() {
    let mut p = pool();
    let v = view(&[(1, 10_000), (2, 10_000), (3, 10_000)]);
    let a0 = tx(1, 0, 1, 200);
    let a1 = tx(1, 1, 1, 1_000);
    let b0 = tx(2, 0, 1, 500);
    let c0 = tx(3, 0, 1, 300);
    // Insert out of order: A's expensive second transaction arrives first, as a future.
    for t in [&a1, &c0, &b0, &a0] {
        p.accept(t.clone(), &v, 0).unwrap();
    }
    let order = selected(&p, &v, usize::MAX);
    assert_eq!(order, vec![b0.txid(), c0.txid(), a0.txid(), a1.txid()]);
    // The size limit keeps the best that fit.
    assert_eq!(selected(&p, &v, 2 * SIZE), vec![b0.txid(), c0.txid()]);
    // A template for a state where A's first transfer is already mined starts at A's nonce 1.
    let mut after = v.clone();
    apply(&mut after, std::slice::from_ref(&a0));
    assert_eq!(
        selected(&p, &after, usize::MAX),
        vec![a1.txid(), b0.txid(), c0.txid()]
    );
}

#[test]
fn equal_fee_rates_go_into_blocks_in_arrival_order() {
    let mut p = pool();
    let v = view(&[(1, 10_000), (2, 10_000), (3, 10_000)]);
    let ts: Vec<_> = [3u8, 1, 2].iter().map(|k| tx(*k, 0, 1, 300)).collect();
    for t in &ts {
        p.accept(t.clone(), &v, 0).unwrap();
    }
    let want: Vec<_> = ts.iter().map(Transaction::txid).collect();
    assert_eq!(selected(&p, &v, usize::MAX), want);
}

#[test]
fn the_byte_cap_evicts_the_lowest_fee_rate_and_refuses_what_cannot_beat_it() {
    let mut p = pool_with(MempoolConfig {
        max_bytes: 3 * SIZE,
        ..Default::default()
    });
    let v = view(&[
        (1, 10_000),
        (2, 10_000),
        (3, 10_000),
        (4, 10_000),
        (5, 10_000),
    ]);
    let low = tx(1, 0, 1, 200);
    p.accept(low.clone(), &v, 0).unwrap();
    p.accept(tx(2, 0, 1, 300), &v, 0).unwrap();
    p.accept(tx(3, 0, 1, 400), &v, 0).unwrap();
    assert_eq!(p.bytes(), 3 * SIZE);
    assert!(p.info().mempoolminfee > 1000, "a full pool asks for more");

    let a = p.accept(tx(4, 0, 1, 500), &v, 0).unwrap();
    assert_eq!(a.removed.len(), 1);
    assert_eq!(a.removed[0].0, low.txid());
    assert_eq!(a.removed[0].1.code(), "evicted");
    assert!(!p.contains(&low.txid()));
    assert_eq!(p.bytes(), 3 * SIZE);

    // Lower than everything held, or merely equal to the lowest: refused, nothing evicted.
    assert_eq!(code(p.accept(tx(5, 0, 1, 250), &v, 0)), "mempool-full");
    assert_eq!(code(p.accept(tx(5, 0, 1, 300), &v, 0)), "mempool-full");
    assert_eq!(p.len(), 3);
    p.check_invariants();
}

#[test]
fn eviction_takes_the_tail_of_a_chain_never_its_middle() {
    let mut p = pool_with(MempoolConfig {
        max_bytes: 3 * SIZE,
        ..Default::default()
    });
    let v = view(&[(1, 10_000), (2, 10_000), (3, 10_000)]);
    // A's chain is mined no sooner than its cheap head allows, so it is the lowest; its tail
    // goes, even though the tail itself pays well, and the head stays.
    let a0 = tx(1, 0, 1, 150);
    let a1 = tx(1, 1, 1, 1_000);
    let b0 = tx(2, 0, 1, 400);
    for t in [&a0, &a1, &b0] {
        p.accept(t.clone(), &v, 0).unwrap();
    }
    let a = p.accept(tx(3, 0, 1, 500), &v, 0).unwrap();
    assert_eq!(a.removed, vec![(a1.txid(), MempoolError::Evicted)]);
    assert!(p.contains(&a0.txid()));
    p.check_invariants();
}

#[test]
fn futures_are_evicted_before_pending_transactions() {
    let mut p = pool_with(MempoolConfig {
        max_bytes: 2 * SIZE,
        ..Default::default()
    });
    let v = view(&[(1, 10_000), (2, 10_000), (3, 10_000)]);
    let future = tx(1, 3, 1, 5_000);
    p.accept(future.clone(), &v, 0).unwrap();
    p.accept(tx(2, 0, 1, 200), &v, 0).unwrap();
    let a = p.accept(tx(3, 0, 1, 300), &v, 0).unwrap();
    assert_eq!(a.removed, vec![(future.txid(), MempoolError::Evicted)]);
    // A new future can never push out a pending transaction.
    assert_eq!(code(p.accept(tx(1, 3, 1, 9_000), &v, 0)), "mempool-full");
    p.check_invariants();
}

#[test]
fn transactions_expire_after_the_configured_time() {
    let mut p = pool_with(MempoolConfig {
        expiry_secs: 100,
        ..Default::default()
    });
    let v = view(&[(1, 10_000), (2, 10_000)]);
    let old = tx(1, 0, 1, 200);
    let later = tx(1, 1, 1, 200);
    let other = tx(2, 0, 1, 200);
    p.accept(old.clone(), &v, 1_000).unwrap();
    p.accept(later.clone(), &v, 1_050).unwrap();
    p.accept(other.clone(), &v, 1_060).unwrap();
    assert!(p.expire(1_099).is_empty());
    let removed = p.expire(1_100);
    assert_eq!(removed, vec![(old.txid(), MempoolError::Expired)]);
    assert_eq!(removed[0].1.code(), "expired");
    // The later nonce stays, now waiting for the gap to be filled again.
    assert!(p.is_future(&later.txid()));
    assert!(!p.is_future(&other.txid()));
    let removed = p.expire(1_160);
    assert_eq!(removed.len(), 2);
    assert!(p.is_empty());
    p.check_invariants();
}

#[test]
fn a_same_nonce_replacement_needs_a_fee_higher_by_the_minimum_increment() {
    let mut p = pool();
    let v = view(&[(1, 100_000)]);
    let first = tx(1, 0, 100, 10_000);
    p.accept(first.clone(), &v, 0).unwrap();
    // Equal, lower, and higher by less than 10%: all refused.
    for fee in [10_000, 9_000, 10_999] {
        let err = p.accept(tx(1, 0, 101, fee), &v, 0).unwrap_err();
        assert_eq!(err.code(), "replacement-fee-too-low", "fee {fee}");
        assert_eq!(
            err,
            MempoolError::ReplacementFeeTooLow {
                replaces: first.txid(),
                fee: Amount(fee),
                min: Amount(11_000)
            }
        );
    }
    let better = tx(1, 0, 101, 11_000);
    let a = p.accept(better.clone(), &v, 0).unwrap();
    assert_eq!(a.replaced, Some(first.txid()));
    assert!(!p.contains(&first.txid()));
    assert!(p.contains(&better.txid()));
    assert_eq!(p.len(), 1);
    p.check_invariants();
}

#[test]
fn a_tiny_fee_is_bumped_by_at_least_the_relay_fee_and_futures_can_be_replaced_too() {
    let mut p = pool();
    let v = view(&[(1, 100_000)]);
    p.accept(tx(1, 4, 1, 200), &v, 0).unwrap();
    // 10% of 200 is 20, but the bump must pay at least the relay fee for its size (144).
    assert_eq!(
        code(p.accept(tx(1, 4, 2, 300), &v, 0)),
        "replacement-fee-too-low"
    );
    let a = p.accept(tx(1, 4, 2, 344), &v, 0).unwrap();
    assert!(a.future && a.replaced.is_some());
    p.check_invariants();
}

#[test]
fn a_replacement_must_keep_the_rest_of_the_chain_affordable() {
    let mut p = pool();
    let v = view(&[(1, 1_000)]);
    p.accept(tx(1, 0, 300, 200), &v, 0).unwrap();
    p.accept(tx(1, 1, 300, 200), &v, 0).unwrap();
    assert_eq!(
        code(p.accept(tx(1, 0, 350, 400), &v, 0)),
        "insufficient-funds"
    );
    p.accept(tx(1, 0, 100, 400), &v, 0).unwrap();
    p.check_invariants();
}

#[test]
fn the_minimum_relay_fee_rate_is_enforced() {
    let mut p = pool();
    let v = view(&[(1, 10_000)]);
    // 1,000 base units per 1,000 bytes: a 144-byte transfer pays at least 144.
    let err = p.accept(tx(1, 0, 1, 143), &v, 0).unwrap_err();
    assert_eq!(err.code(), "fee-too-low");
    assert_eq!(
        err,
        MempoolError::FeeTooLow {
            fee: Amount(143),
            min: Amount(144)
        }
    );
    p.accept(tx(1, 0, 1, 144), &v, 0).unwrap();
    let mut free = pool_with(MempoolConfig {
        min_relay_fee_per_kb: 0,
        ..Default::default()
    });
    free.accept(tx(1, 0, 1, 0), &v, 0).unwrap();
}

#[test]
fn duplicates_coinbases_bad_signatures_and_bad_amounts_are_refused() {
    let mut p = pool();
    let v = view(&[(1, u64::MAX / 2)]);
    let t = tx(1, 0, 1, 200);
    p.accept(t.clone(), &v, 0).unwrap();
    assert_eq!(code(p.accept(t, &v, 0)), "duplicate");
    let cb = Transaction::Coinbase(Coinbase {
        height: 1,
        to: addr(1),
        amount: Amount(5),
    });
    assert_eq!(code(p.accept(cb, &v, 0)), "coinbase");
    let other_network = Transaction::Transfer(Transfer::sign(
        &key(1),
        noded::params::MAIN.magic,
        Address([1; 20]),
        Amount(1),
        Amount(200),
        1,
    ));
    assert_eq!(code(p.accept(other_network, &v, 0)), "bad-signature");
    let Transaction::Transfer(mut forged) = tx(1, 1, 1, 200) else {
        unreachable!()
    };
    forged.amount = Amount(2);
    assert_eq!(
        code(p.accept(Transaction::Transfer(forged), &v, 0)),
        "bad-signature"
    );
    let too_much = tx(1, 1, noded::types::amount::MAX_MONEY, 200);
    assert_eq!(code(p.accept(too_much, &v, 0)), "bad-amount");
    p.check_invariants();
}

#[test]
fn verified_transactions_are_known_by_txid_until_they_leave() {
    let mut p = pool();
    let mut v = view(&[(1, 10_000)]);
    let t = tx(1, 0, 1, 200);
    assert!(!p.is_verified(&t.txid()));
    p.accept(t.clone(), &v, 0).unwrap();
    assert!(p.is_verified(&t.txid()));
    apply(&mut v, std::slice::from_ref(&t));
    p.block_connected(&block(std::slice::from_ref(&t)), &v);
    assert!(!p.is_verified(&t.txid()));
}

#[test]
fn connecting_a_block_removes_included_and_now_invalid_transactions() {
    let mut p = pool();
    let mut v = view(&[(1, 1_000), (2, 10_000)]);
    let a0 = tx(1, 0, 100, 200);
    let a1 = tx(1, 1, 100, 200);
    let a2 = tx(1, 2, 100, 200);
    let b0 = tx(2, 0, 100, 200);
    let b1 = tx(2, 1, 100, 200);
    for t in [&a0, &a1, &a2, &b0, &b1] {
        p.accept(t.clone(), &v, 0).unwrap();
    }
    // The block carries B's first transfer, and a conflicting A nonce-0 transfer, made
    // elsewhere, that spends most of A's balance.
    let conflict = tx(1, 0, 500, 200);
    let mined = [conflict.clone(), b0.clone()];
    apply(&mut v, &mined);
    let update = p.block_connected(&block(&mined), &v);
    assert_eq!(update.txids, vec![b0.txid()]);
    let mut removed: Vec<_> = update
        .removed
        .iter()
        .map(|(id, e)| (*id, e.code()))
        .collect();
    removed.sort();
    let mut want = vec![
        (a0.txid(), "nonce-too-low"),
        (a2.txid(), "insufficient-funds"),
    ];
    want.sort();
    assert_eq!(removed, want);
    // A's nonce 1 is still affordable (300 left, costs 300) and stays pending; B's next too.
    assert_eq!(
        selected(&p, &v, usize::MAX)
            .into_iter()
            .collect::<std::collections::HashSet<_>>(),
        [a1.txid(), b1.txid()].into_iter().collect()
    );
    p.check_invariants();
}

#[test]
fn disconnecting_a_block_gives_its_transfers_back_in_nonce_order() {
    let mut p = pool();
    let before = view(&[(1, 10_000), (2, 10_000), (3, 10_000)]);
    let a0 = tx(1, 0, 100, 200);
    let a1 = tx(1, 1, 100, 200);
    let b0 = tx(2, 0, 100, 200);
    for t in [&a0, &a1, &b0] {
        p.accept(t.clone(), &before, 0).unwrap();
    }
    // A block mines A's first transfer, B's, and one of C's the pool never saw.
    let mut after = before.clone();
    let c0 = tx(3, 0, 100, 300);
    let mined = [a0.clone(), b0.clone(), c0.clone()];
    apply(&mut after, &mined);
    let blk = block(&mined);
    p.block_connected(&blk, &after);
    assert_eq!(selected(&p, &after, usize::MAX), vec![a1.txid()]);

    // Reorg: the block leaves the chain; state is back to before it.
    let update = p.block_disconnected(&blk, &before, 10);
    let mut back = update.txids.clone();
    back.sort();
    let mut want = vec![a0.txid(), b0.txid(), c0.txid()];
    want.sort();
    assert_eq!(back, want);
    assert!(update.removed.is_empty(), "{:?}", update.removed);
    let order = selected(&p, &before, usize::MAX);
    assert_eq!(order.len(), 4);
    let pos = |id| order.iter().position(|t| *t == id).unwrap();
    assert!(pos(a0.txid()) < pos(a1.txid()), "A's nonces stay in order");
    assert_eq!(order[0], c0.txid(), "the best fee rate first");
    assert!(!p.is_future(&a1.txid()));
    p.check_invariants();
}

#[test]
fn a_disconnected_transfer_below_the_relay_fee_is_not_taken_back() {
    let mut p = pool();
    let before = view(&[(1, 10_000)]);
    let cheap = tx(1, 0, 100, 1);
    let update = p.block_disconnected(&block(std::slice::from_ref(&cheap)), &before, 0);
    assert!(update.txids.is_empty());
    assert_eq!(update.removed.len(), 1);
    assert_eq!(update.removed[0].1.code(), "fee-too-low");
    assert!(p.is_empty());
}

#[test]
fn giving_back_a_large_block_into_a_full_pool_trims_by_fee_rate() {
    let mut p = pool_with(MempoolConfig {
        max_bytes: 2 * SIZE,
        ..Default::default()
    });
    let v = view(&[(1, 10_000), (2, 10_000), (3, 10_000)]);
    let held = tx(1, 0, 1, 1_000);
    p.accept(held.clone(), &v, 0).unwrap();
    let mined = [tx(2, 0, 1, 200), tx(3, 0, 1, 300)];
    let update = p.block_disconnected(&block(&mined), &v, 0);
    assert_eq!(update.txids, vec![mined[1].txid()]);
    assert_eq!(
        update.removed,
        vec![(mined[0].txid(), MempoolError::Evicted)]
    );
    assert_eq!(p.bytes(), 2 * SIZE);
    p.check_invariants();
}

#[test]
fn a_stale_pool_resyncs_an_account_when_it_sees_newer_state() {
    let mut p = pool();
    let v = view(&[(1, 10_000)]);
    let a0 = tx(1, 0, 100, 200);
    let a1 = tx(1, 1, 100, 200);
    p.accept(a0.clone(), &v, 0).unwrap();
    p.accept(a1.clone(), &v, 0).unwrap();
    // A block with a0 connected, but the pool has not been told yet.
    let mut after = v.clone();
    apply(&mut after, std::slice::from_ref(&a0));
    assert_eq!(p.next_nonce(&addr(1), after[&addr(1)]), 1);
    let a = p.accept(tx(1, 2, 100, 200), &after, 0).unwrap();
    assert!(!a.future);
    assert_eq!(a.removed.len(), 1);
    assert_eq!(a.removed[0].1.code(), "nonce-too-low");
    assert_eq!(p.next_nonce(&addr(1), after[&addr(1)]), 3);
    p.check_invariants();
}

/// A block carrying the nonce a future waited for (a copy this pool never had) makes the
/// future ready: it is published as admitted, so the relay announces it.
#[test]
fn a_future_a_block_makes_ready_is_published_as_admitted() {
    use noded::mempool::SharedMempool;
    let mut v = view(&[(1, 1_000_000)]);
    let shared = SharedMempool::new(pool());
    let (first, second) = (tx(1, 0, 1, 200), tx(1, 1, 1, 200));
    let verdicts = shared.submit_batch(vec![second.clone()], &v, 0, 1);
    assert!(verdicts[0].1.as_ref().is_ok_and(|a| a.future));
    let mut events = shared.subscribe();
    apply(&mut v, std::slice::from_ref(&first));
    shared.block_connected(&block(std::slice::from_ref(&first)), &v);
    let admitted: Vec<(Hash256, bool)> = std::iter::from_fn(|| events.try_recv().ok())
        .map(|e| (e.txid, e.future))
        .collect();
    assert_eq!(admitted, vec![(second.txid(), false)]);
    assert!(!shared.lock().is_future(&second.txid()));
}

#[test]
fn a_batch_is_judged_as_its_transactions_would_be_one_by_one() {
    use noded::mempool::SharedMempool;
    let v = view(&[(1, 1_000_000), (2, 1_000_000)]);
    let Transaction::Transfer(mut forged) = tx(2, 0, 1, 200) else {
        unreachable!()
    };
    forged.amount = Amount(2);
    let batch = vec![
        tx(1, 1, 1, 200), // ahead of its nonce: future, promoted by the next
        tx(1, 0, 1, 200),
        Transaction::Transfer(forged), // a bad signature amid good ones
        tx(2, 0, 1, 200),
        tx(1, 0, 1, 200), // a duplicate of the second
        tx(1, 2, 1, 1),   // fee below the relay minimum: refused before its signature
    ];
    let run = |batch: Vec<Transaction>| {
        let shared = SharedMempool::new(pool());
        let mut events = shared.subscribe();
        let verdicts = shared.submit_batch(batch, &v, 0, 2);
        let mut admitted = Vec::new();
        while let Ok(e) = events.try_recv() {
            admitted.push((e.txid, e.future));
        }
        let held = shared.lock().len();
        (verdicts, admitted, held)
    };
    let (verdicts, admitted, held) = run(batch.clone());
    let codes: Vec<&str> = verdicts
        .iter()
        .map(|(_, v)| match v {
            Ok(a) if a.future => "future",
            Ok(_) => "accepted",
            Err(e) => e.code(),
        })
        .collect();
    assert_eq!(
        codes,
        [
            "future",
            "accepted",
            "bad-signature",
            "accepted",
            "duplicate",
            "fee-too-low"
        ]
    );
    for (i, (txid, _)) in verdicts.iter().enumerate() {
        assert_eq!(*txid, batch[i].txid());
    }
    assert_eq!(held, 3);
    // Announced once ready: nonce 1 waits, then comes after nonce 0 promoted it.
    let ids: Vec<Hash256> = batch.iter().map(Transaction::txid).collect();
    assert_eq!(
        admitted,
        vec![
            (ids[0], true),
            (ids[1], false),
            (ids[0], false),
            (ids[3], false)
        ]
    );
    // One by one, the same.
    let mut p = pool();
    let one_by_one: Vec<&str> = batch
        .into_iter()
        .map(|t| match p.accept(t, &v, 0) {
            Ok(a) if a.future => "future",
            Ok(_) => "accepted",
            Err(e) => e.code(),
        })
        .collect();
    assert_eq!(one_by_one, codes);
}
