//! The background transaction indexer: a thread that moves the store's transaction index
//! (txid → block, position) along the active chain, one block per step, behind its own
//! marker, as bitcoind's `-txindex` follows the chain.
//!
//! Owns that thread's lifetime. The index is kept out of the connect commit on purpose: a
//! block of 1,000 transactions means 1,000 new random keys, the largest single cost of a
//! connect, and it grows with the index (docs/CHAIN.md has the measurement). Each step, its
//! entries and the marker, is one commit. Lookups stay exact meanwhile
//! (`Store::tx_location` checks entries against the main chain and scans the blocks the
//! index has not reached). Never writes anything but the index and its marker.

use super::store::Store;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::time::Duration;

/// The indexer steps only once the chain's own writes have been quiet this long: a step holds
/// the store's one write lock for a few milliseconds, at the lowest CPU priority, and must not
/// make block connects wait for it. While blocks keep arriving (a sync) the index waits and
/// catches up after.
pub const YIELD_TO_CHAIN_WRITES: Duration = Duration::from_millis(20);

/// How long the indexer sleeps without a nudge before it looks at the tip again.
const IDLE_WAKE: Duration = Duration::from_secs(1);

/// How long it waits after a failed step (a store error) before trying again; nudges do not
/// cut this short, so a lasting fault is logged twice a minute, not at every block.
const ERROR_BACKOFF: Duration = Duration::from_secs(30);

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
            .spawn(move || {
                lower_this_threads_priority();
                run(&store, &nudges, &stopping)
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

/// The indexer's loop: run to the tip, then wait for a nudge (or a second).
fn run(store: &Store, nudges: &Receiver<()>, stopping: &AtomicBool) {
    loop {
        let mut failed = false;
        while !stopping.load(Ordering::Relaxed) {
            let quiet = store.chain_writes_quiet_for();
            if quiet < YIELD_TO_CHAIN_WRITES {
                std::thread::sleep(YIELD_TO_CHAIN_WRITES - quiet);
                continue;
            }
            match store.index_next_block() {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => {
                    tracing::error!(error = %e, "transaction index step failed");
                    failed = true;
                    break;
                }
            }
        }
        if stopping.load(Ordering::Relaxed) {
            return;
        }
        if failed {
            let deadline = std::time::Instant::now() + ERROR_BACKOFF;
            while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
                match nudges.recv_timeout(left) {
                    Ok(()) => {}
                    Err(RecvTimeoutError::Timeout) => break,
                    Err(RecvTimeoutError::Disconnected) => return,
                }
                if stopping.load(Ordering::Relaxed) {
                    return;
                }
            }
        }
        match nudges.recv_timeout(IDLE_WAKE) {
            Ok(()) | Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        // Nudges that arrived meanwhile are covered by the next run.
        while nudges.try_recv().is_ok() {}
    }
}

/// Makes the calling thread yield the CPU to the node's other work: the index is a
/// convenience for lookups, while signature checks and connects are the node's progress.
/// While a sync keeps every core busy the index waits and catches up afterwards.
fn lower_this_threads_priority() {
    #[cfg(target_os = "linux")]
    {
        // On Linux a nice value belongs to a thread: PRIO_PROCESS with a thread id sets just
        // this one. Failure only leaves the normal priority.
        // SAFETY: gettid and setpriority take no pointers and have no preconditions.
        let result = unsafe {
            let tid = libc::gettid();
            libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, INDEXER_NICE)
        };
        if result != 0 {
            tracing::debug!("could not lower the transaction indexer's priority");
        }
    }
}

/// The indexer thread's nice value (19 is the lowest priority).
#[cfg(target_os = "linux")]
const INDEXER_NICE: libc::c_int = 19;

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
