//! The single chain writer: one thread owns the `Chain` and applies commands from a bounded
//! channel in order; `ChainHandle` is the cloneable front that sends them (each with a oneshot
//! reply) and gives readers the published tip, the event stream and a store read handle.
//!
//! Owns the writer thread's lifetime and when commits become durable: besides the store's own
//! rule (durable at most `DURABLE_INTERVAL` late), the writer syncs once no command has come
//! for `SYNC_WHEN_IDLE`, so a busy import pays an fsync per 200 ms, not per block, and an idle
//! node has nothing unsynced. The writer is a plain thread because its work (store writes,
//! signature verification) blocks; nothing here holds a lock across an `.await`.

use super::chainstate::{Chain, SubmitOutcome, TipSnapshot, VerifyReport};
use super::error::ChainError;
use super::reader::ChainReader;
use super::validation::{precheck_except, CheckedBlock, VerifiedTransactions};
use super::{ChainEvent, ChainTip};
use crate::metrics::Metrics;
use crate::params::NetworkParams;
use crate::types::{Block, Hash256};
use std::sync::{Arc, OnceLock};
use tokio::sync::{broadcast, mpsc, oneshot, watch, Semaphore};
use tokio_util::sync::CancellationToken;

/// How long the writer waits for another command before it makes what it committed durable:
/// longer than the gap between blocks of a pipelined import, short enough that a node at
/// rest is synced almost at once.
pub const SYNC_WHEN_IDLE: std::time::Duration = std::time::Duration::from_millis(50);

/// Commands waiting for the writer at most; senders wait (asynchronously) beyond that.
pub const COMMAND_CAPACITY: usize = 64;

pub use super::chainstate::EVENT_CAPACITY;

/// Blocks whose stateless checks (signatures included) may run at once, off the writer.
pub const PRECHECK_CONCURRENCY: usize = 2;

enum Command {
    Submit {
        block: Box<CheckedBlock>,
        now: u64,
        reply: oneshot::Sender<Result<SubmitOutcome, ChainError>>,
    },
    Invalidate {
        hash: Hash256,
        reply: oneshot::Sender<Result<(), ChainError>>,
    },
    Reconsider {
        hash: Hash256,
        reply: oneshot::Sender<Result<(), ChainError>>,
    },
    Verify {
        check_level: u32,
        /// Ends the replay early (between blocks) with `ChainError::Cancelled`.
        cancel: CancellationToken,
        reply: oneshot::Sender<Result<VerifyReport, ChainError>>,
    },
    Flush {
        reply: oneshot::Sender<Result<(), ChainError>>,
    },
    Shutdown {
        reply: oneshot::Sender<Result<(), ChainError>>,
    },
}

/// The cloneable front of the chain writer.
#[derive(Clone)]
pub struct ChainHandle {
    commands: mpsc::Sender<Command>,
    reader: ChainReader,
    tip: watch::Receiver<ChainTip>,
    snapshot: watch::Receiver<Arc<TipSnapshot>>,
    events: broadcast::Sender<ChainEvent>,
    params: &'static NetworkParams,
    prechecks: Arc<Semaphore>,
    verify_threads: usize,
    verified: Arc<OnceLock<Arc<dyn VerifiedTransactions>>>,
    /// The chain's metrics (signature batches of blocks checked off the writer count too).
    metrics: Option<Arc<Metrics>>,
}

/// The writer thread; `join` waits for it to end (after `ChainHandle::shutdown`).
pub struct WriterThread {
    thread: std::thread::JoinHandle<()>,
}

impl WriterThread {
    pub fn join(self) {
        if self.thread.join().is_err() {
            tracing::error!("the chain writer thread panicked");
        }
    }
}

/// Starts the writer thread that owns `chain`.
pub fn spawn(chain: Chain) -> (ChainHandle, WriterThread) {
    let (commands, mut rx) = mpsc::channel::<Command>(COMMAND_CAPACITY);
    let handle = ChainHandle {
        commands,
        reader: chain.reader(),
        tip: chain.subscribe_tip(),
        snapshot: chain.subscribe_snapshot(),
        events: chain.event_sender(),
        params: chain.params(),
        prechecks: Arc::new(Semaphore::new(PRECHECK_CONCURRENCY)),
        verify_threads: chain.options().verify_threads,
        verified: Arc::new(OnceLock::new()),
        metrics: chain.metrics().cloned(),
    };
    let thread = std::thread::Builder::new()
        .name("chain-writer".into())
        .spawn(move || {
            let mut chain = chain;
            // Only for the idle timer below; the writer's work never runs on it.
            let timer = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
                .expect("a timer for the chain writer");
            // After a failed sync the writer waits for its next command before trying again,
            // rather than retrying (and logging) every SYNC_WHEN_IDLE.
            let mut sync_failed = false;
            loop {
                let must_sync = chain.has_unsynced() && !sync_failed;
                // Held `new tip` lines are summarised when their window ends, even if no block
                // comes after them.
                let next = if must_sync || chain.has_held_tip_lines() {
                    // The timeout is made inside the timer's context (its Sleep needs it).
                    let wait = async { tokio::time::timeout(SYNC_WHEN_IDLE, rx.recv()).await };
                    match timer.block_on(wait) {
                        Ok(next) => next,
                        Err(_idle) => {
                            if must_sync {
                                if let Err(e) = chain.sync() {
                                    tracing::error!(error = %e, "chain store sync failed");
                                    sync_failed = true;
                                }
                            }
                            chain.log_due_tip_lines();
                            continue;
                        }
                    }
                } else {
                    rx.blocking_recv()
                };
                let Some(command) = next else { break };
                sync_failed = false;
                match command {
                    Command::Submit { block, now, reply } => {
                        let _ = reply.send(chain.submit_checked(*block, now));
                    }
                    Command::Invalidate { hash, reply } => {
                        let _ = reply.send(chain.invalidate_block(&hash));
                    }
                    Command::Reconsider { hash, reply } => {
                        let _ = reply.send(chain.reconsider_block(&hash));
                    }
                    Command::Verify {
                        check_level,
                        cancel,
                        reply,
                    } => {
                        let cancelled = || cancel.is_cancelled();
                        let _ = reply.send(chain.verify_chain_until(check_level, &cancelled));
                    }
                    Command::Flush { reply } => {
                        let _ = reply.send(chain.flush());
                    }
                    Command::Shutdown { reply } => {
                        // Before the reply: the node's last lines follow these.
                        chain.log_held_tip_lines();
                        let _ = reply.send(chain.flush());
                        break;
                    }
                }
                chain.log_due_tip_lines();
            }
            // Senders all gone or shutdown asked: write the pending state and sync.
            chain.log_held_tip_lines();
            if let Err(e) = chain.flush() {
                tracing::error!(error = %e, "chain flush at shutdown failed");
            }
        })
        .expect("spawning the chain writer thread");
    (handle, WriterThread { thread })
}

impl ChainHandle {
    async fn request<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, ChainError>>) -> Command,
    ) -> Result<T, ChainError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(make(reply))
            .await
            .map_err(|_| ChainError::WriterStopped)?;
        answer.await.map_err(|_| ChainError::WriterStopped)?
    }

    /// Submits a block, judged against the system clock.
    pub async fn submit_block(&self, block: Block) -> Result<SubmitOutcome, ChainError> {
        self.submit_block_at(block, crate::time::unix_secs()).await
    }

    /// Submits a block, judged against `now` (seconds since the epoch).
    ///
    /// A block already stored is answered from the store at once. Otherwise the stateless
    /// checks and the signatures run here, on a blocking thread (at most
    /// `PRECHECK_CONCURRENCY` blocks at a time), so the writer only runs the contextual and
    /// stateful rules and keeps committing while the next block is verified.
    pub async fn submit_block_at(
        &self,
        block: Block,
        now: u64,
    ) -> Result<SubmitOutcome, ChainError> {
        self.submit_block_then(block, now, |_| {}).await
    }

    /// `submit_block_at`, calling `checked` with the block once its stateless checks and
    /// signatures passed, before the writer connects it (`submitblock` pushes it to peers
    /// then, so that their validation overlaps ours). Not called for a block already stored.
    pub async fn submit_block_then(
        &self,
        block: Block,
        now: u64,
        checked: impl FnOnce(&Block),
    ) -> Result<SubmitOutcome, ChainError> {
        let hash = block.hash();
        if let Some(record) = self.reader.index_record(&hash)? {
            return if record.status.is_failed() {
                Err(ChainError::KnownInvalid(hash))
            } else {
                Ok(SubmitOutcome::Duplicate)
            };
        }
        let checked_block = {
            let _permit = self
                .prechecks
                .acquire()
                .await
                .map_err(|_| ChainError::WriterStopped)?;
            let (params, threads) = (self.params, self.verify_threads);
            let known = self.verified.get().cloned();
            let metrics = self.metrics.clone();
            tokio::task::spawn_blocking(move || {
                let signatures = metrics.as_ref().map(|m| &*m.signatures);
                precheck_except(params, block, Some(threads), known.as_deref(), signatures)
            })
            .await
            .map_err(|_| ChainError::WriterStopped)?
            .map_err(|(hash, error)| ChainError::InvalidBlock { hash, error })?
        };
        checked(checked_block.block());
        self.request(|reply| Command::Submit {
            block: Box::new(checked_block),
            now,
            reply,
        })
        .await
    }

    /// Lets block checks skip the signatures `known` has verified (the mempool's admitted
    /// transactions). Set once, for every clone of this handle; returns false if already set.
    pub fn set_verified_transactions(&self, known: Arc<dyn VerifiedTransactions>) -> bool {
        self.verified.set(known).is_ok()
    }

    pub async fn invalidate_block(&self, hash: Hash256) -> Result<(), ChainError> {
        self.request(|reply| Command::Invalidate { hash, reply })
            .await
    }

    pub async fn reconsider_block(&self, hash: Hash256) -> Result<(), ChainError> {
        self.request(|reply| Command::Reconsider { hash, reply })
            .await
    }

    /// Replays the active chain and compares with the stored state (runs on the writer, so
    /// the state cannot move underneath it), abandoned between two blocks once `cancel` is
    /// cancelled (a shutdown): the writer is free again within one block's replay.
    pub async fn verify_chain_until(
        &self,
        check_level: u32,
        cancel: CancellationToken,
    ) -> Result<VerifyReport, ChainError> {
        self.request(|reply| Command::Verify {
            check_level,
            cancel,
            reply,
        })
        .await
    }

    pub async fn flush(&self) -> Result<(), ChainError> {
        self.request(|reply| Command::Flush { reply }).await
    }

    /// Flushes the store and stops the writer; later commands fail with `WriterStopped`.
    pub async fn shutdown(&self) -> Result<(), ChainError> {
        self.request(|reply| Command::Shutdown { reply }).await
    }

    /// The published tip.
    pub fn tip(&self) -> ChainTip {
        *self.tip.borrow()
    }

    /// A receiver of the published tip (for `RpcContext` and the protocol core).
    pub fn tip_receiver(&self) -> watch::Receiver<ChainTip> {
        self.tip.clone()
    }

    /// The published tip with template facts (next target, median time past, chain work).
    pub fn tip_snapshot(&self) -> Arc<TipSnapshot> {
        self.snapshot.borrow().clone()
    }

    pub fn snapshot_receiver(&self) -> watch::Receiver<Arc<TipSnapshot>> {
        self.snapshot.clone()
    }

    /// Connect/disconnect events from now on (bounded; see `ChainEvent`).
    pub fn subscribe(&self) -> broadcast::Receiver<ChainEvent> {
        self.events.subscribe()
    }

    pub fn reader(&self) -> &ChainReader {
        &self.reader
    }

    pub fn params(&self) -> &'static NetworkParams {
        self.params
    }
}
