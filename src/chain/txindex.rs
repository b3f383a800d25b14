//! The background transaction indexer: a thread that moves the store's transaction index
//! (txid → block, position) along the active chain, one block per step, behind its own
//! marker, as bitcoind's `-txindex` follows the chain.
//!
//! Owns that thread's lifetime. The index is kept out of the connect commit on purpose: a
//! block of 1,000 transactions means 1,000 new random sled keys, the largest single cost of
//! a connect, and it grows with the index. Lookups stay exact meanwhile
//! (`Store::tx_location` checks entries against the main chain and scans the blocks the
//! index has not reached). Never writes anything but the index and its marker.

use super::store::Store;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::time::Duration;

/// How long the indexer sleeps without a nudge before it looks at the tip again.
const IDLE_WAKE: Duration = Duration::from_secs(1);

/// The running indexer; dropping it stops the thread (after the step under way) and joins it.
pub struct TxIndexer {
    nudge: Option<SyncSender<()>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TxIndexer {
    /// Starts indexing `store` (which must keep a transaction index).
    pub fn spawn(store: Store) -> TxIndexer {
        // One pending nudge is enough: the indexer always runs to the tip it then sees.
        let (nudge, nudges) = sync_channel::<()>(1);
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::Builder::new()
            .name("chain-txindex".into())
            .spawn(move || loop {
                while !stopping.load(Ordering::Relaxed) {
                    match store.index_next_block() {
                        Ok(true) => {}
                        Ok(false) => break,
                        Err(e) => {
                            tracing::error!(error = %e, "transaction index step failed");
                            break;
                        }
                    }
                }
                if stopping.load(Ordering::Relaxed) {
                    return;
                }
                match nudges.recv_timeout(IDLE_WAKE) {
                    Ok(()) | Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => return,
                }
                // Nudges that arrived meanwhile are covered by the next run.
                while nudges.try_recv().is_ok() {}
            })
            .expect("spawning the transaction indexer thread");
        TxIndexer {
            nudge: Some(nudge),
            stop,
            thread: Some(thread),
        }
    }

    /// Tells the indexer the active chain moved.
    pub fn nudge(&self) {
        if let Some(nudge) = &self.nudge {
            let _ = nudge.try_send(());
        }
    }
}

impl Drop for TxIndexer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.nudge.take();
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("the transaction indexer thread panicked");
            }
        }
    }
}
