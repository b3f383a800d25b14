//! `SharedMempool`: the pool behind a mutex for the node's tasks, with signature verification
//! done outside the lock, an event stream of admitted transactions, and the task that keeps
//! the pool in step with the chain (`follow_chain`).
//!
//! The lock is a std mutex held only for short synchronous pool calls, never across `.await`
//! and never across a store read: the account states a call needs are read first
//! (`PrefetchedAccounts`), then the lock is taken. The calls that read the store block, so
//! async code runs them on tokio's blocking threads (`follow_chain` does).

use super::error::MempoolError;
use super::futures::Relayer;
use super::pool::{transfers_by_sender, Accepted, BlockUpdate, Mempool, Txid, VerifiedTransfer};
use crate::chain::signatures::verify_transfers;
use crate::chain::state::{Account, AccountView};
use crate::chain::{ChainEvent, ChainHandle};
use crate::metrics::SignatureMetrics;
use crate::types::{Address, Block, NetworkMagic, Transaction, Transfer};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

/// Admitted-transaction events buffered per subscriber; a slower subscriber sees `Lagged`
/// (the network service: those transactions go unannounced). A flood admits thousands a
/// second; each event is an `Arc` and a txid.
pub const EVENT_CAPACITY: usize = 65_536;

/// Removal notices (each one pool operation's removals) kept for a subscriber that has not
/// read them yet. A notice can be a whole block's transactions (megabytes), and a lagging
/// subscriber holds every notice it has not read: one 64 behind is told it lagged (and
/// `subscribe_transactions` drops it) rather than holding more.
pub const REMOVAL_CAPACITY: usize = 64;

/// How often `follow_chain` drops expired transactions (and so how late, at most, a future
/// past its 20 minutes goes).
pub const EXPIRY_INTERVAL: Duration = Duration::from_secs(60);

/// Unfilled-future notices (one per peer whose relayed futures an expiry sweep dropped)
/// kept for a subscriber that has not read them yet: a sweep a minute, a notice per peer
/// with futures (125 peers at most): two sweeps' worth. One further behind misses some, and
/// those peers go unscored for them.
pub const UNFILLED_CAPACITY: usize = 256;

/// Account states read from the store before the pool's lock is taken, so that the pool is
/// never held while the store reads. An account not read ahead (one that entered the pool
/// between the read and the lock) falls back to the store: correct, and rare.
pub struct PrefetchedAccounts<'a> {
    accounts: HashMap<Address, Account>,
    store: &'a dyn AccountView,
}

impl<'a> PrefetchedAccounts<'a> {
    /// Reads `addresses` from `store` now.
    pub fn read(
        store: &'a dyn AccountView,
        addresses: impl IntoIterator<Item = Address>,
    ) -> PrefetchedAccounts<'a> {
        let accounts = addresses
            .into_iter()
            .map(|a| (a, store.account(&a)))
            .collect();
        PrefetchedAccounts { accounts, store }
    }
}

impl AccountView for PrefetchedAccounts<'_> {
    fn account(&self, address: &Address) -> Account {
        match self.accounts.get(address) {
            Some(account) => *account,
            None => self.store.account(address),
        }
    }
}

/// Admitted-transaction events for those of `txids` the pool holds ready to mine.
fn ready_events(pool: &Mempool, txids: &[Txid]) -> Vec<AdmittedTx> {
    txids
        .iter()
        .filter(|txid| !pool.is_future(txid))
        .filter_map(|txid| {
            pool.get(txid).map(|entry| AdmittedTx {
                txid: *txid,
                tx: Arc::new(entry.transaction()),
                future: false,
            })
        })
        .collect()
}

fn transfer_sender(tx: &Transaction) -> Option<Address> {
    match tx {
        Transaction::Transfer(t) => Some(t.sender()),
        Transaction::Coinbase(_) => None,
    }
}

/// The senders of a block's transfers: the accounts a connect or disconnect revalidates.
fn transfer_senders(block: &Block) -> Vec<Address> {
    let mut senders: Vec<Address> = block
        .transactions
        .iter()
        .filter_map(transfer_sender)
        .collect();
    senders.sort_unstable();
    senders.dedup();
    senders
}

/// A transaction the pool admitted (pending or future), for relay and subscriptions.
#[derive(Clone, Debug)]
pub struct AdmittedTx {
    pub txid: Txid,
    pub tx: Arc<Transaction>,
    pub future: bool,
}

/// Transactions one pool operation removed, each with why: `confirmed` (a block included
/// it), `replaced`, or the rule it now breaks (expiry and eviction included).
#[derive(Clone, Debug, Default)]
pub struct RemovedTxs(pub Arc<Vec<(Txid, String)>>);

impl RemovedTxs {
    fn new(removed: Vec<(Txid, String)>) -> RemovedTxs {
        RemovedTxs(Arc::new(removed))
    }
}

fn with_reasons(removed: &[(Txid, MempoolError)]) -> impl Iterator<Item = (Txid, String)> + '_ {
    removed.iter().map(|(txid, e)| (*txid, e.to_string()))
}

#[derive(Clone)]
pub struct SharedMempool {
    inner: Arc<Mutex<Mempool>>,
    magic: NetworkMagic,
    events: broadcast::Sender<AdmittedTx>,
    removals: broadcast::Sender<RemovedTxs>,
    /// Per peer, how many futures it relayed an expiry sweep dropped unfilled.
    unfilled: broadcast::Sender<(Relayer, usize)>,
    /// Where signature batches are counted, when the node has metrics (only these handles:
    /// the registry's scrape-time refreshers hold a pool clone, so holding the registry
    /// would make a cycle).
    signature_metrics: Option<Arc<SignatureMetrics>>,
}

impl SharedMempool {
    pub fn new(pool: Mempool) -> SharedMempool {
        let magic = pool.magic();
        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        let (removals, _) = broadcast::channel(REMOVAL_CAPACITY);
        let (unfilled, _) = broadcast::channel(UNFILLED_CAPACITY);
        SharedMempool {
            inner: Arc::new(Mutex::new(pool)),
            magic,
            events,
            removals,
            unfilled,
            signature_metrics: None,
        }
    }

    /// Counts this pool's signature batches into `metrics` (set before the pool is cloned
    /// out: clones made earlier keep counting nowhere).
    pub fn with_signature_metrics(mut self, metrics: Arc<SignatureMetrics>) -> SharedMempool {
        self.signature_metrics = Some(metrics);
        self
    }

    /// The pool, for a short synchronous look or change. Never hold it across `.await`.
    pub fn lock(&self) -> MutexGuard<'_, Mempool> {
        // A panic while holding the lock leaves the pool as it was between two operations at
        // worst (every operation validates before it mutates); keep serving.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Validates and admits a transaction: the cheap checks under the lock, the signature
    /// without it, then admission under it again (`submit_batch` of one).
    pub fn submit(
        &self,
        tx: Transaction,
        view: &dyn AccountView,
        now: u64,
    ) -> Result<Accepted, MempoolError> {
        let (_, verdict) = self
            .submit_batch(vec![tx], view, now, 1)
            .pop()
            .expect("one verdict for one transaction");
        verdict
    }

    /// Validates and admits a run of transactions as `submit` would each, in order, at a
    /// fraction of the cost: the cheap checks for all under one lock, the signatures of
    /// those that pass as one batch over `threads` threads (the consensus rule, as blocks
    /// verify theirs), then admission in order under one lock. Answers in input order.
    pub fn submit_batch(
        &self,
        txs: Vec<Transaction>,
        view: &dyn AccountView,
        now: u64,
        threads: usize,
    ) -> Vec<(Txid, Result<Accepted, MempoolError>)> {
        self.submit_batch_from(txs, view, now, threads, None)
    }

    /// `submit_batch` for transactions relayed by `from` (`None`: submitted on this node):
    /// the futures among them count against that peer (`Mempool::accept_verified_from`).
    pub fn submit_batch_from(
        &self,
        txs: Vec<Transaction>,
        view: &dyn AccountView,
        now: u64,
        threads: usize,
        from: Option<Relayer>,
    ) -> Vec<(Txid, Result<Accepted, MempoolError>)> {
        let identified = txs.into_iter().map(|tx| (tx.txid(), tx)).collect();
        self.submit_identified_from(identified, view, now, threads, from)
    }

    /// `submit_batch_from` for transactions whose txids the caller has already computed
    /// (each `txid` must be its transaction's `txid()`): a relayed transaction is hashed once
    /// per node, where the relay first meets it.
    pub fn submit_identified_from(
        &self,
        identified: Vec<(Txid, Transaction)>,
        view: &dyn AccountView,
        now: u64,
        threads: usize,
        from: Option<Relayer>,
    ) -> Vec<(Txid, Result<Accepted, MempoolError>)> {
        debug_assert!(identified.iter().all(|(txid, tx)| *txid == tx.txid()));
        let (txids, txs): (Vec<Txid>, Vec<Transaction>) = identified.into_iter().unzip();
        // The size admission charges, counted without building the encoding.
        let sizes: Vec<usize> = txs.iter().map(crate::encoding::encoded_len).collect();
        let mut senders: Vec<Address> = txs.iter().filter_map(transfer_sender).collect();
        senders.sort_unstable();
        senders.dedup();
        let chain_events = self.lock().chain_events();
        let prefetched = PrefetchedAccounts::read(view, senders);
        let mut verdicts: Vec<Option<Result<Accepted, MempoolError>>> = vec![None; txs.len()];
        {
            let pool = self.lock();
            for ((tx, txid), verdict) in txs.iter().zip(&txids).zip(verdicts.iter_mut()) {
                if let Err(e) = pool.precheck_txid(tx, txid, &prefetched) {
                    *verdict = Some(Err(e));
                }
            }
        }
        let candidates: Vec<usize> = (0..txs.len()).filter(|&i| verdicts[i].is_none()).collect();
        let transfers: Vec<&Transfer> = candidates
            .iter()
            .filter_map(|&i| match &txs[i] {
                Transaction::Transfer(t) => Some(t),
                Transaction::Coinbase(_) => None, // refused by the precheck
            })
            .collect();
        let mut bad = vec![false; transfers.len()];
        let mut start = 0;
        while start < transfers.len() {
            let metrics = self.signature_metrics.as_deref();
            match verify_transfers(&transfers[start..], self.magic, threads, metrics) {
                Ok(()) => break,
                Err(j) => {
                    bad[start + j] = true;
                    start += j + 1;
                }
            }
        }
        let mut events = Vec::new();
        let mut removed = Vec::new();
        // Removal notices are built only for subscribers (checked once, outside the lock).
        let listening = self.removals.receiver_count() > 0;
        {
            let mut pool = self.lock();
            let unchanged = pool.chain_events() == chain_events;
            for (k, &i) in candidates.iter().enumerate() {
                if bad[k] {
                    verdicts[i] = Some(Err(MempoolError::BadSignature));
                    continue;
                }
                let verified =
                    VerifiedTransfer::trusted_known(transfers[k].clone(), txids[i], sizes[i]);
                // A block applied meanwhile: read the sender again, as `submit` does.
                let accepted = if unchanged {
                    pool.accept_verified_from(verified, &prefetched, now, from)
                } else {
                    pool.accept_verified_from(verified, view, now, from)
                };
                if let Ok(a) = &accepted {
                    if listening {
                        removed.extend(a.replaced.map(|txid| (txid, "replaced".to_string())));
                        removed.extend(with_reasons(&a.removed));
                    }
                    events.push(AdmittedTx {
                        txid: a.txid,
                        tx: Arc::new(txs[i].clone()),
                        future: a.future,
                    });
                    // Transactions this one made ready (they waited for its nonce) are news
                    // too, after it: a sender's transactions are announced in nonce order.
                    events.extend(ready_events(&pool, &a.promoted));
                }
                verdicts[i] = Some(accepted);
            }
        }
        for event in events {
            let _ = self.events.send(event);
        }
        self.announce_removed(|| removed);
        txids
            .into_iter()
            .zip(verdicts)
            .map(|(txid, verdict)| (txid, verdict.expect("every transaction judged")))
            .collect()
    }

    /// Whether the pool verified this transaction's signature (it holds the txid): block
    /// validation may skip it.
    pub fn is_verified(&self, txid: &Txid) -> bool {
        self.lock().is_verified(txid)
    }

    /// `is_verified` for many txids under one lock (a whole block's transfers).
    pub fn verified(&self, txids: &[Txid]) -> Vec<bool> {
        let pool = self.lock();
        txids.iter().map(|t| pool.is_verified(t)).collect()
    }

    /// `Mempool::block_connected`, with the block's senders the pool holds transactions of
    /// read from `store` before the lock (a connect touches no other). Blocks on the store:
    /// call it off the async runtime. Futures the block made ready (it carried the nonce
    /// they waited for, from elsewhere) are published as admitted, so they are announced.
    pub fn block_connected(&self, block: &Block, store: &dyn AccountView) -> BlockUpdate {
        let mut groups = transfers_by_sender(block);
        {
            let pool = self.lock();
            groups.retain(|g| pool.has_sender(&g.sender));
        }
        let senders: Vec<Address> = groups.iter().map(|g| g.sender).collect();
        let view = PrefetchedAccounts::read(store, senders.clone());
        let (update, promoted) = {
            let mut pool = self.lock();
            let waiting = pool.futures_of(&senders);
            let update = pool.block_connected_by_sender(&groups, &view);
            (update, ready_events(&pool, &waiting))
        };
        for event in promoted {
            let _ = self.events.send(event);
        }
        self.announce_removed(|| {
            let confirmed = update.txids.iter().map(|t| (*t, "confirmed".to_string()));
            confirmed.chain(with_reasons(&update.removed)).collect()
        });
        update
    }

    /// `Mempool::block_disconnected`, reading the store before the lock as `block_connected`.
    pub fn block_disconnected(
        &self,
        block: &Block,
        store: &dyn AccountView,
        now: u64,
    ) -> BlockUpdate {
        let view = PrefetchedAccounts::read(store, transfer_senders(block));
        let mut pool = self.lock();
        let update = pool.block_disconnected(block, &view, now);
        // Taken back and ready to mine: news for peers that never had them.
        let back = ready_events(&pool, &update.txids);
        drop(pool);
        for event in back {
            let _ = self.events.send(event);
        }
        self.announce_removed(|| with_reasons(&update.removed).collect());
        update
    }

    /// `Mempool::revalidate_all`: the pool's senders are listed under the lock, read from
    /// `store` without it, then revalidated under it.
    pub fn revalidate_all(&self, store: &dyn AccountView) -> Vec<(Txid, MempoolError)> {
        let view = self.prefetch_senders(store);
        let removed = self.lock().revalidate_all(&view);
        self.announce_removed(|| with_reasons(&removed).collect());
        removed
    }

    /// `Mempool::expire_report`, announced: the removals to their subscribers, and per peer
    /// the futures it relayed that were dropped unfilled to `subscribe_unfilled`'s.
    pub fn expire(&self, now: u64) -> Vec<(Txid, MempoolError)> {
        let report = self.lock().expire_report(now);
        let removed = report.removed;
        self.announce_removed(|| with_reasons(&removed).collect());
        for (peer, count) in report.unfilled {
            let _ = self.unfilled.send((peer, count));
        }
        removed
    }

    /// `Mempool::release_peer`: the peer is gone; its futures stop counting against it.
    pub fn release_peer(&self, peer: Relayer) {
        self.lock().release_peer(peer);
    }

    /// Tells subscribers, if any, what `removed` lists (built only when someone listens: a
    /// block confirms thousands).
    fn announce_removed(&self, removed: impl FnOnce() -> Vec<(Txid, String)>) {
        if self.removals.receiver_count() == 0 {
            return;
        }
        let removed = removed();
        if !removed.is_empty() {
            let _ = self.removals.send(RemovedTxs::new(removed));
        }
    }

    /// The states of every account with transactions in the pool, read from `store` without
    /// holding the lock (for a block template built under it next).
    pub fn prefetch_senders<'a>(&self, store: &'a dyn AccountView) -> PrefetchedAccounts<'a> {
        let senders = self.lock().senders();
        PrefetchedAccounts::read(store, senders)
    }

    /// Admitted transactions from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<AdmittedTx> {
        self.events.subscribe()
    }

    /// Removed transactions from now on.
    pub fn subscribe_removals(&self) -> broadcast::Receiver<RemovedTxs> {
        self.removals.subscribe()
    }

    /// From now on, after each expiry sweep: (peer, how many futures it relayed were
    /// dropped with their gap unfilled), for every peer that had some.
    pub fn subscribe_unfilled(&self) -> broadcast::Receiver<(Relayer, usize)> {
        self.unfilled.subscribe()
    }
}

/// Block validation skips the signatures of transactions the pool has already verified: a
/// txid commits to the whole transaction, signature included, and the pool verified it with
/// the same consensus rule for the same network.
impl crate::chain::validation::VerifiedTransactions for SharedMempool {
    fn verified(&self, txids: &[Txid]) -> Vec<bool> {
        SharedMempool::verified(self, txids)
    }
}

/// Keeps `pool` in step with `chain` until `shutdown`: removes what connected blocks include
/// or invalidate, takes back what disconnected blocks carried, resynchronises every account
/// when it missed events, and expires old transactions every `EXPIRY_INTERVAL`.
///
/// Subscribe (`chain.subscribe()`) before anything can connect a block, and pass the receiver.
pub async fn follow_chain(
    pool: SharedMempool,
    chain: ChainHandle,
    mut events: broadcast::Receiver<ChainEvent>,
    shutdown: CancellationToken,
) {
    let mut expiry = tokio::time::interval(EXPIRY_INTERVAL);
    expiry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = expiry.tick() => {
                let removed = pool.expire(crate::time::unix_secs());
                if !removed.is_empty() {
                    tracing::debug!(count = removed.len(), "mempool: expired transactions dropped");
                }
            }
            event = events.recv() => match event {
                Ok(ChainEvent::BlockConnected(block, height)) => {
                    let (pool, reader) = (pool.clone(), chain.reader().clone());
                    let update = off_runtime(move || pool.block_connected(&block, &reader)).await;
                    let Some(update) = update else { continue };
                    tracing::debug!(
                        height,
                        included = update.txids.len(),
                        dropped = update.removed.len(),
                        "mempool: block connected"
                    );
                }
                Ok(ChainEvent::BlockDisconnected(block, height)) => {
                    let (pool, reader) = (pool.clone(), chain.reader().clone());
                    let update = off_runtime(move || {
                        pool.block_disconnected(&block, &reader, crate::time::unix_secs())
                    })
                    .await;
                    let Some(update) = update else { continue };
                    tracing::debug!(
                        height,
                        taken_back = update.txids.len(),
                        dropped = update.removed.len(),
                        "mempool: block disconnected"
                    );
                }
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    let (pool, reader) = (pool.clone(), chain.reader().clone());
                    let removed = off_runtime(move || pool.revalidate_all(&reader)).await;
                    let Some(removed) = removed else { continue };
                    tracing::warn!(
                        missed,
                        dropped = removed.len(),
                        "mempool: missed chain events; revalidated every account"
                    );
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
        }
    }
}

/// Runs store-reading pool work on tokio's blocking threads; `None` if the runtime is shutting
/// down or the work panicked (logged).
async fn off_runtime<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    match tokio::task::spawn_blocking(work).await {
        Ok(value) => Some(value),
        Err(e) => {
            tracing::error!(error = %e, "mempool: chain follower task failed");
            None
        }
    }
}
