//! `SimMempool`: a simulated node's transaction pool, and cheap transactions to fill it.
//!
//! Owns the transactions a simulated node holds, per sender in nonce order (the ready run
//! that starts at the sender's next nonce on the chain, then the futures that wait for a
//! gap to fill), and the chain's next nonce per sender as the blocks it was told about say
//! (connected blocks advance it, disconnected ones take it back). Keeps the one account rule
//! relay depends on: a transaction whose nonce is ahead of the sender's next is held as
//! future and becomes ready (to be announced) when the gap fills. Bounded: transactions in
//! all, futures per sender and in all, each refused past its bound as the real pool refuses.
//!
//! Validity is the test's decision, as for `SimChain`: never checks a signature, a balance, a
//! fee or an amount (a coinbase is the one thing refused as invalid). Replacements are not
//! modelled: a second transaction for a nonce already held is refused, as the real pool
//! refuses one that does not pay enough more. Never expires or evicts, never talks to a core
//! and never reads a clock: the simulator turns what it returns into inputs.

use crate::protocol::io::Announceable;
use crate::protocol::TxResult;
use crate::types::{sha256d_parts, Address, Amount, Block, Hash256, Transaction, Transfer};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// Transactions held at most, unless set: about what the real pool's 32 MiB hold.
pub const DEFAULT_MAX_TXS: usize = 200_000;
/// Futures held per sender, unless set: the real pool's default.
pub const DEFAULT_MAX_FUTURE_PER_SENDER: usize =
    crate::mempool::pool::DEFAULT_MAX_FUTURE_PER_ACCOUNT;
/// Futures held in all, unless set: the real pool's default.
pub const DEFAULT_MAX_FUTURE: usize = crate::mempool::pool::DEFAULT_MAX_FUTURE_TOTAL;

/// Why a transaction was not admitted. The codes are the real pool's (`MempoolError::code`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// A coinbase: never valid outside a block.
    Coinbase,
    /// Already held.
    Duplicate,
    /// Its nonce is below the sender's next on the chain.
    NonceTooLow,
    /// The pool holds another transaction with this sender and nonce.
    NonceTaken,
    /// Future slots (the sender's or the pool's) are full.
    TooManyFuture,
    /// The pool holds as many transactions as it may.
    Full,
}

impl Refusal {
    pub fn code(self) -> &'static str {
        match self {
            Refusal::Coinbase => "coinbase",
            Refusal::Duplicate => "duplicate",
            Refusal::NonceTooLow => "nonce-too-low",
            Refusal::NonceTaken => "replacement-fee-too-low",
            Refusal::TooManyFuture => "too-many-future",
            Refusal::Full => "mempool-full",
        }
    }

    /// The verdict the shell reports to the core (`Input::TxProcessed`): a coinbase is the
    /// sender's fault, the rest are not.
    pub fn to_result(self) -> TxResult {
        match self {
            Refusal::Coinbase => TxResult::Invalid(self.code().to_string()),
            _ => TxResult::Refused(self.code().to_string()),
        }
    }
}

/// What one pool operation changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PoolChange {
    /// Transactions that entered the pool (txid, held as future), in order.
    pub entered: Vec<(Hash256, bool)>,
    /// Transactions that became ready to mine, a sender's in nonce order: what the pool
    /// reports for announcement (`Input::TxAccepted`).
    pub ready: Vec<Announceable>,
}

#[derive(Clone, Debug)]
struct Held {
    tx: Arc<Transaction>,
    sender: Address,
    nonce: u64,
}

#[derive(Clone, Debug, Default)]
struct Account {
    /// Every held transaction of the sender, by nonce.
    txs: BTreeMap<u64, Hash256>,
    /// The nonce after the ready run: nonces below it (held) are ready, above it future.
    ready_until: u64,
}

impl Account {
    fn futures(&self) -> usize {
        self.txs.range(self.ready_until..).count()
    }
}

/// One simulated node's transaction pool. See the module docs.
#[derive(Clone, Debug)]
pub struct SimMempool {
    /// Every held transaction, by txid (lookups, and iteration in txid order).
    txs: BTreeMap<Hash256, Held>,
    accounts: BTreeMap<Address, Account>,
    /// The chain's next nonce per sender (absent: 0). Chain state: `clear` keeps it.
    chain_next: BTreeMap<Address, u64>,
    futures: usize,
    max_txs: usize,
    max_future_per_sender: usize,
    max_future: usize,
}

impl Default for SimMempool {
    fn default() -> Self {
        SimMempool::new()
    }
}

fn transfer_of(tx: &Transaction) -> Option<&Transfer> {
    match tx {
        Transaction::Transfer(t) => Some(t),
        Transaction::Coinbase(_) => None,
    }
}

impl SimMempool {
    /// An empty pool with the default bounds.
    pub fn new() -> SimMempool {
        SimMempool::with_limits(
            DEFAULT_MAX_TXS,
            DEFAULT_MAX_FUTURE_PER_SENDER,
            DEFAULT_MAX_FUTURE,
        )
    }

    /// An empty pool holding at most `max_txs` transactions, of which at most
    /// `max_future_per_sender` futures per sender and `max_future` in all.
    pub fn with_limits(
        max_txs: usize,
        max_future_per_sender: usize,
        max_future: usize,
    ) -> SimMempool {
        SimMempool {
            txs: BTreeMap::new(),
            accounts: BTreeMap::new(),
            chain_next: BTreeMap::new(),
            futures: 0,
            max_txs,
            max_future_per_sender,
            max_future,
        }
    }

    // ----- queries -------------------------------------------------------------------------

    /// Transactions held, ready and future.
    pub fn len(&self) -> usize {
        self.txs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.txs.is_empty()
    }

    /// Futures held (waiting for an earlier nonce).
    pub fn future_len(&self) -> usize {
        self.futures
    }

    pub fn contains(&self, txid: &Hash256) -> bool {
        self.txs.contains_key(txid)
    }

    pub fn get(&self, txid: &Hash256) -> Option<&Transaction> {
        self.txs.get(txid).map(|h| h.tx.as_ref())
    }

    /// Whether `txid` is held and ready to mine.
    pub fn is_ready(&self, txid: &Hash256) -> bool {
        self.txs
            .get(txid)
            .is_some_and(|h| h.nonce < self.accounts[&h.sender].ready_until)
    }

    /// Every held transaction (ready and future), in txid order.
    pub fn iter(&self) -> impl Iterator<Item = (&Hash256, &Transaction)> {
        self.txs.iter().map(|(txid, h)| (txid, h.tx.as_ref()))
    }

    /// The transactions ready to mine: per sender (in address order), in nonce order, as a
    /// block must carry them.
    pub fn ready(&self) -> impl Iterator<Item = (&Hash256, &Transaction)> {
        self.accounts.values().flat_map(move |a| {
            a.txs
                .range(..a.ready_until)
                .map(move |(_, txid)| (txid, self.txs[txid].tx.as_ref()))
        })
    }

    /// The ready transactions as the core is told of them (`Input::MempoolContents`): txid,
    /// sender, nonce; at most `max`.
    pub fn ready_announceable(&self, max: usize) -> Vec<Announceable> {
        self.ready()
            .take(max)
            .map(|(txid, _)| {
                let h = &self.txs[txid];
                (*txid, h.sender, h.nonce)
            })
            .collect()
    }

    /// The sender's next nonce on the chain, as the blocks this pool was told about say.
    pub fn chain_nonce(&self, sender: &Address) -> u64 {
        self.chain_next.get(sender).copied().unwrap_or(0)
    }

    /// The nonce a sender's next transaction takes to be ready: after its ready run.
    pub fn next_nonce(&self, sender: &Address) -> u64 {
        self.accounts
            .get(sender)
            .map_or_else(|| self.chain_nonce(sender), |a| a.ready_until)
    }

    // ----- changes -------------------------------------------------------------------------

    /// Admits `tx` or says why not. Ready if its nonce is the sender's next, with every
    /// future it completes the run for (`PoolChange::ready`, in nonce order); held as future
    /// if its nonce is ahead.
    pub fn admit(&mut self, tx: Transaction) -> Result<PoolChange, Refusal> {
        let t = transfer_of(&tx).ok_or(Refusal::Coinbase)?;
        let (sender, nonce) = (t.sender(), t.nonce);
        let txid = tx.txid();
        if self.txs.contains_key(&txid) {
            return Err(Refusal::Duplicate);
        }
        let chain_next = self.chain_nonce(&sender);
        if nonce < chain_next {
            return Err(Refusal::NonceTooLow);
        }
        let ready_until = self
            .accounts
            .get(&sender)
            .map_or(chain_next, |a| a.ready_until);
        if let Some(a) = self.accounts.get(&sender) {
            if a.txs.contains_key(&nonce) {
                return Err(Refusal::NonceTaken);
            }
        }
        if self.txs.len() >= self.max_txs {
            return Err(Refusal::Full);
        }
        let future = nonce > ready_until;
        if future {
            let theirs = self.accounts.get(&sender).map_or(0, Account::futures);
            if theirs >= self.max_future_per_sender || self.futures >= self.max_future {
                return Err(Refusal::TooManyFuture);
            }
        }
        self.txs.insert(
            txid,
            Held {
                tx: Arc::new(tx),
                sender,
                nonce,
            },
        );
        let account = self.accounts.entry(sender).or_insert_with(|| Account {
            txs: BTreeMap::new(),
            ready_until: chain_next,
        });
        account.txs.insert(nonce, txid);
        let mut change = PoolChange {
            entered: vec![(txid, future)],
            ready: Vec::new(),
        };
        if future {
            self.futures += 1;
        } else {
            self.extend_ready(sender, &mut change.ready);
        }
        Ok(change)
    }

    /// Moves the sender's ready run forward over the nonces held from the one just admitted
    /// at its start, reporting each newly ready transaction (those after the first were
    /// futures).
    fn extend_ready(&mut self, sender: Address, ready: &mut Vec<Announceable>) {
        let account = self.accounts.get_mut(&sender).expect("the sender is held");
        let before = ready.len();
        while let Some(&txid) = account.txs.get(&account.ready_until) {
            ready.push((txid, sender, account.ready_until));
            account.ready_until += 1;
        }
        self.futures -= (ready.len() - before).saturating_sub(1);
    }

    /// A block joined the best chain: the transactions it carries leave the pool, each
    /// sender's next nonce advances past them, and what their nonces make stale goes too.
    /// Returns the txids that left. Futures a block's transactions made ready are not
    /// reported, as the real pool does not announce them (`SharedMempool::block_connected`).
    pub fn block_connected(&mut self, block: &Block) -> Vec<Hash256> {
        let mut left = Vec::new();
        let mut senders = BTreeSet::new();
        for t in block.transactions.iter().filter_map(transfer_of) {
            let sender = t.sender();
            let next = self.chain_next.entry(sender).or_insert(0);
            *next = (*next).max(t.nonce + 1);
            senders.insert(sender);
        }
        let before = self.futures_of(&senders);
        for &sender in &senders {
            left.extend(self.settle(sender));
        }
        self.futures = self.futures + self.futures_of(&senders) - before;
        left
    }

    /// A block left the best chain: each sender's next nonce goes back to its first
    /// transaction in the block, and the block's transactions come back (one taking the
    /// place of a held transaction with its sender and nonce), as far as the bound on
    /// transactions allows. Returns what entered and what is ready among them, in block
    /// order: the real pool announces those (`SharedMempool::block_disconnected`).
    pub fn block_disconnected(&mut self, block: &Block) -> PoolChange {
        let transfers: Vec<(&Transaction, &Transfer)> = block
            .transactions
            .iter()
            .filter_map(|tx| transfer_of(tx).map(|t| (tx, t)))
            .collect();
        let mut senders = BTreeSet::new();
        for (_, t) in &transfers {
            let sender = t.sender();
            let next = self.chain_next.entry(sender).or_insert(t.nonce);
            *next = (*next).min(t.nonce);
            senders.insert(sender);
        }
        let before = self.futures_of(&senders);
        let mut back = Vec::new();
        for (tx, t) in transfers {
            let txid = tx.txid();
            if self.txs.contains_key(&txid) {
                continue;
            }
            let sender = t.sender();
            let chain_next = self.chain_nonce(&sender);
            let account = self.accounts.entry(sender).or_insert_with(|| Account {
                txs: BTreeMap::new(),
                ready_until: chain_next,
            });
            let displaced = account.txs.get(&t.nonce).copied();
            if displaced.is_none() && self.txs.len() >= self.max_txs {
                continue;
            }
            if let Some(old) = displaced {
                self.txs.remove(&old);
            }
            account.txs.insert(t.nonce, txid);
            self.txs.insert(
                txid,
                Held {
                    tx: Arc::new(tx.clone()),
                    sender,
                    nonce: t.nonce,
                },
            );
            back.push(txid);
        }
        for &sender in &senders {
            self.settle(sender);
        }
        self.futures = self.futures + self.futures_of(&senders) - before;
        let mut change = PoolChange::default();
        for txid in back {
            if let Some(h) = self.txs.get(&txid) {
                let ready = self.is_ready(&txid);
                change.entered.push((txid, !ready));
                if ready {
                    change.ready.push((txid, h.sender, h.nonce));
                }
            }
        }
        change
    }

    /// Futures held of `senders`.
    fn futures_of(&self, senders: &BTreeSet<Address>) -> usize {
        senders
            .iter()
            .filter_map(|s| self.accounts.get(s))
            .map(Account::futures)
            .sum()
    }

    /// Brings `sender`'s transactions in line with its next nonce on the chain: those below
    /// it leave (returned), the ready run starts at it. The caller keeps the futures count.
    fn settle(&mut self, sender: Address) -> Vec<Hash256> {
        let chain_next = self.chain_nonce(&sender);
        let Some(account) = self.accounts.get_mut(&sender) else {
            return Vec::new();
        };
        let kept = account.txs.split_off(&chain_next);
        let stale = std::mem::replace(&mut account.txs, kept);
        let mut left = Vec::with_capacity(stale.len());
        for txid in stale.into_values() {
            self.txs.remove(&txid);
            left.push(txid);
        }
        account.ready_until = chain_next;
        while account.txs.contains_key(&account.ready_until) {
            account.ready_until += 1;
        }
        if account.txs.is_empty() {
            self.accounts.remove(&sender);
        }
        left
    }

    /// Panics if the bookkeeping disagrees with the transactions held.
    #[cfg(test)]
    fn check(&self) {
        let futures: usize = self.accounts.values().map(Account::futures).sum();
        assert_eq!(self.futures, futures);
        let held: usize = self.accounts.values().map(|a| a.txs.len()).sum();
        assert_eq!(held, self.txs.len());
        for (sender, a) in &self.accounts {
            assert!(!a.txs.is_empty());
            assert!(a.ready_until >= self.chain_nonce(sender));
            assert!(!a.txs.contains_key(&a.ready_until));
            for (nonce, txid) in &a.txs {
                let h = &self.txs[txid];
                assert_eq!((h.sender, h.nonce), (*sender, *nonce));
            }
        }
    }

    /// Empties the pool, as a restart does (the real pool is not saved); the chain's nonces
    /// stay, as the chain does.
    pub fn clear(&mut self) {
        self.txs.clear();
        self.accounts.clear();
        self.futures = 0;
    }
}

// ----- cheap transactions ------------------------------------------------------------------

/// The public key bytes of simulated sender `sender` (not a curve point: nothing verifies).
fn sender_key(sender: u64) -> [u8; 32] {
    sha256d_parts(&[b"noded-sim-sender", &sender.to_le_bytes()]).0
}

/// The address of simulated sender `sender`.
pub fn sim_sender(sender: u64) -> Address {
    Address::from_public_key(&sender_key(sender))
}

/// A transfer from simulated sender `sender` with `nonce`: unsigned (the simulator verifies
/// nothing), distinct for each (sender, nonce), the size of a real one.
pub fn sim_transfer(sender: u64, nonce: u64) -> Transaction {
    Transaction::Transfer(Transfer {
        from: sender_key(sender),
        to: Address([0x5e; 20]),
        amount: Amount(1_000),
        fee: Amount(1_000),
        nonce,
        signature: [0; 64],
    })
}

/// `count` transfers from the `senders` simulated senders `first_sender..`, each sender's
/// nonces consecutive from 0, in rounds (every sender's nonce 0, then every sender's 1, ...):
/// submitted in this order, none waits for an earlier nonce.
pub fn sim_transfers(first_sender: u64, senders: usize, count: usize) -> Vec<Transaction> {
    assert!(senders > 0 || count == 0, "transfers need a sender");
    (0..count)
        .map(|i| {
            let sender = first_sender + (i % senders) as u64;
            sim_transfer(sender, (i / senders) as u64)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::testkit::make_block;
    use crate::params::Network;

    fn block_of(txs: Vec<Transaction>) -> Block {
        let params = Network::Regtest.params();
        let genesis = params.genesis_block();
        make_block(params, &genesis.header, 0, 1, Address([1; 20]), txs)
    }

    fn txid(tx: &Transaction) -> Hash256 {
        tx.txid()
    }

    #[test]
    fn a_gap_is_held_as_future_and_announced_in_order_when_filled() {
        let mut pool = SimMempool::new();
        let s = sim_sender(1);
        let (t0, t1, t2) = (sim_transfer(1, 0), sim_transfer(1, 1), sim_transfer(1, 2));
        let c = pool.admit(t2.clone()).unwrap();
        assert_eq!(c.entered, vec![(txid(&t2), true)]);
        assert!(c.ready.is_empty());
        let c = pool.admit(t1.clone()).unwrap();
        assert!(c.ready.is_empty());
        assert_eq!(pool.future_len(), 2);
        assert!(!pool.is_ready(&txid(&t1)));
        let c = pool.admit(t0.clone()).unwrap();
        assert_eq!(
            c.ready,
            vec![(txid(&t0), s, 0), (txid(&t1), s, 1), (txid(&t2), s, 2)]
        );
        assert_eq!(pool.future_len(), 0);
        assert_eq!(pool.next_nonce(&s), 3);
        assert_eq!(pool.len(), 3);
        assert_eq!(pool.admit(t0), Err(Refusal::Duplicate));
        let mut other = sim_transfer(1, 1);
        if let Transaction::Transfer(t) = &mut other {
            t.amount = Amount(7);
        }
        assert_eq!(pool.admit(other), Err(Refusal::NonceTaken));
        pool.check();
    }

    #[test]
    fn a_block_removes_what_it_carries_and_a_disconnect_brings_it_back() {
        let mut pool = SimMempool::new();
        let txs = sim_transfers(10, 2, 6);
        for tx in &txs {
            pool.admit(tx.clone()).unwrap();
        }
        // Nonces 0 and 1 of both senders.
        let block = block_of(txs[..4].to_vec());
        let left = pool.block_connected(&block);
        pool.check();
        assert_eq!(left.len(), 4);
        assert_eq!(pool.len(), 2);
        assert_eq!(pool.chain_nonce(&sim_sender(10)), 2);
        assert!(pool.is_ready(&txid(&txs[4])));
        assert_eq!(pool.admit(txs[0].clone()), Err(Refusal::NonceTooLow));
        let back = pool.block_disconnected(&block);
        assert_eq!(back.ready.len(), 4);
        assert_eq!(back.ready[0].0, txid(&txs[0]));
        assert_eq!(pool.len(), 6);
        assert_eq!(pool.chain_nonce(&sim_sender(10)), 0);
        assert_eq!(pool.next_nonce(&sim_sender(11)), 3);
        let order: Vec<Hash256> = pool.ready().map(|(t, _)| *t).collect();
        assert_eq!(order.len(), 6);
        assert_eq!(pool.future_len(), 0);
        pool.check();
    }

    #[test]
    fn a_block_with_a_conflicting_transaction_drops_the_held_one() {
        let mut pool = SimMempool::new();
        pool.admit(sim_transfer(3, 0)).unwrap();
        pool.admit(sim_transfer(3, 1)).unwrap();
        let mut conflict = sim_transfer(3, 0);
        if let Transaction::Transfer(t) = &mut conflict {
            t.fee = Amount(5_000);
        }
        let block = block_of(vec![conflict.clone()]);
        let left = pool.block_connected(&block);
        assert_eq!(left, vec![txid(&sim_transfer(3, 0))]);
        assert!(pool.is_ready(&txid(&sim_transfer(3, 1))));
        let back = pool.block_disconnected(&block);
        assert_eq!(back.ready, vec![(txid(&conflict), sim_sender(3), 0)]);
        assert_eq!(pool.len(), 2);
        pool.check();
    }

    #[test]
    fn a_block_filling_a_gap_makes_the_future_ready_without_reporting_it() {
        let mut pool = SimMempool::new();
        let later = sim_transfer(4, 1);
        pool.admit(later.clone()).unwrap();
        assert_eq!(pool.future_len(), 1);
        let left = pool.block_connected(&block_of(vec![sim_transfer(4, 0)]));
        assert!(left.is_empty());
        assert!(pool.is_ready(&txid(&later)));
        assert_eq!(pool.future_len(), 0);
        pool.check();
    }

    #[test]
    fn bounds_refuse_past_them_and_a_restart_keeps_the_chain_nonces() {
        let mut pool = SimMempool::with_limits(4, 2, 3);
        assert_eq!(pool.admit(sim_transfer(1, 5)).map(|_| ()), Ok(()));
        assert_eq!(pool.admit(sim_transfer(1, 6)).map(|_| ()), Ok(()));
        assert_eq!(pool.admit(sim_transfer(1, 7)), Err(Refusal::TooManyFuture));
        assert_eq!(pool.admit(sim_transfer(2, 3)).map(|_| ()), Ok(()));
        assert_eq!(pool.admit(sim_transfer(3, 3)), Err(Refusal::TooManyFuture));
        assert_eq!(pool.admit(sim_transfer(4, 0)).map(|_| ()), Ok(()));
        assert_eq!(pool.admit(sim_transfer(5, 0)), Err(Refusal::Full));
        pool.check();
        let coinbase = block_of(vec![]).transactions.as_slice()[0].clone();
        assert_eq!(pool.admit(coinbase), Err(Refusal::Coinbase));
        assert_eq!(
            Refusal::Coinbase.to_result(),
            TxResult::Invalid("coinbase".into())
        );

        pool.block_connected(&block_of(vec![sim_transfer(4, 0)]));
        pool.clear();
        assert!(pool.is_empty());
        assert_eq!(pool.future_len(), 0);
        assert_eq!(pool.admit(sim_transfer(4, 0)), Err(Refusal::NonceTooLow));
    }

    #[test]
    fn cheap_transfers_are_distinct_and_in_rounds() {
        let txs = sim_transfers(0, 3, 7);
        let ids: BTreeSet<Hash256> = txs.iter().map(Transaction::txid).collect();
        assert_eq!(ids.len(), 7);
        let nonces: Vec<u64> = txs
            .iter()
            .map(|tx| transfer_of(tx).unwrap().nonce)
            .collect();
        assert_eq!(nonces, vec![0, 0, 0, 1, 1, 1, 2]);
        assert_eq!(
            crate::encoding::encode(&txs[0]).len(),
            crate::types::transaction::MAX_TX_SIZE
        );
    }
}
