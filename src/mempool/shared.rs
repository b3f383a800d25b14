//! `SharedMempool`: the pool behind a mutex for the node's tasks, with signature verification
//! done outside the lock, an event stream of admitted transactions, and the task that keeps
//! the pool in step with the chain (`follow_chain`).
//!
//! The lock is a std mutex held only for short synchronous pool calls, never across `.await`.

use super::error::MempoolError;
use super::pool::{Accepted, Mempool, Txid, VerifiedTransfer};
use crate::chain::state::AccountView;
use crate::chain::{ChainEvent, ChainHandle};
use crate::types::{NetworkMagic, Transaction};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

/// Admitted-transaction events buffered per subscriber; a slower subscriber sees `Lagged`.
pub const EVENT_CAPACITY: usize = 4096;

/// How often `follow_chain` drops expired transactions.
pub const EXPIRY_INTERVAL: Duration = Duration::from_secs(60);

/// A transaction the pool admitted (pending or future), for relay and subscriptions.
#[derive(Clone, Debug)]
pub struct AdmittedTx {
    pub txid: Txid,
    pub tx: Arc<Transaction>,
    pub future: bool,
}

#[derive(Clone)]
pub struct SharedMempool {
    inner: Arc<Mutex<Mempool>>,
    magic: NetworkMagic,
    events: broadcast::Sender<AdmittedTx>,
}

impl SharedMempool {
    pub fn new(pool: Mempool) -> SharedMempool {
        let magic = pool.magic();
        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        SharedMempool {
            inner: Arc::new(Mutex::new(pool)),
            magic,
            events,
        }
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
    /// without it, then admission under it again.
    pub fn submit(
        &self,
        tx: Transaction,
        view: &dyn AccountView,
        now: u64,
    ) -> Result<Accepted, MempoolError> {
        self.lock().precheck(&tx, view)?;
        let arc = Arc::new(tx.clone());
        let verified = VerifiedTransfer::verify(tx, self.magic)?;
        let accepted = self.lock().accept_verified(verified, view, now)?;
        let _ = self.events.send(AdmittedTx {
            txid: accepted.txid,
            tx: arc,
            future: accepted.future,
        });
        Ok(accepted)
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

    /// Admitted transactions from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<AdmittedTx> {
        self.events.subscribe()
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

/// Seconds since the Unix epoch by the system clock.
fn unix_now() -> u64 {
    crate::chain::writer::unix_now()
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
                let removed = pool.lock().expire(unix_now());
                if !removed.is_empty() {
                    tracing::debug!(count = removed.len(), "mempool: expired transactions dropped");
                }
            }
            event = events.recv() => match event {
                Ok(ChainEvent::BlockConnected(block, height)) => {
                    let update = pool.lock().block_connected(&block, chain.reader());
                    tracing::debug!(
                        height,
                        included = update.txids.len(),
                        dropped = update.removed.len(),
                        "mempool: block connected"
                    );
                }
                Ok(ChainEvent::BlockDisconnected(block, height)) => {
                    let update =
                        pool.lock().block_disconnected(&block, chain.reader(), unix_now());
                    tracing::debug!(
                        height,
                        taken_back = update.txids.len(),
                        dropped = update.removed.len(),
                        "mempool: block disconnected"
                    );
                }
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    let removed = pool.lock().revalidate_all(chain.reader());
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
