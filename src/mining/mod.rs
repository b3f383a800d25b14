//! Mining: block templates from the mempool (`template`), the multi-threaded nonce search
//! (`search`), and `Miner`, which mines on request (`generate`) or continuously (`--mine`)
//! and submits what it finds through the chain handle.
//!
//! Owns no chain state: it reads the chain's published snapshot and store, and only ever
//! changes the chain by submitting a block like any peer would.

pub mod search;
pub mod services;
pub mod template;

pub use search::{default_threads, search, StopFn};
pub use template::{
    build_template, template_time, BlockTemplate, ChainTemplateSource, MAX_TEMPLATE_TX_BYTES,
};

use crate::chain::chainstate::TipSnapshot;
use crate::chain::state::{Account, AccountView};
use crate::chain::{ChainError, ChainHandle, SubmitOutcome};
use crate::mempool::SharedMempool;
use crate::types::pow::Target;
use crate::types::{Address, Hash256, Header};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Hashes `generate` tries per block before giving up, unless told otherwise.
pub const DEFAULT_MAX_TRIES: u64 = 100_000_000;

/// Most blocks one `generate` call may ask for.
pub const MAX_GENERATE: u64 = 10_000;

/// Times `generate` rebuilds a block whose tip moved under it before giving up.
const MAX_STALE_RETRIES: u32 = 32;

/// The continuous miner rebuilds its template this often (new transactions, a fresh time).
pub const TEMPLATE_REFRESH: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum MiningError {
    #[error(transparent)]
    Chain(#[from] ChainError),
    #[error("the chain kept moving under the new block ({0} attempts); try again")]
    Stale(u32),
    #[error("the node is shutting down")]
    ShuttingDown,
    #[error("the nonce search failed: {0}")]
    Search(String),
    #[error("a mining task failed: {0}")]
    Task(String),
}

/// A template source over the chain's published snapshot and account states (the store, or
/// states read from it ahead of time).
pub struct ChainSource<'a> {
    pub snapshot: &'a TipSnapshot,
    pub accounts: &'a dyn AccountView,
}

impl ChainTemplateSource for ChainSource<'_> {
    fn tip(&self) -> (u64, Hash256) {
        (self.snapshot.tip.height, self.snapshot.tip.hash)
    }

    fn next_bits(&self) -> u32 {
        self.snapshot.next_bits
    }

    fn median_time_past(&self) -> u64 {
        self.snapshot.median_time_past
    }

    fn account(&self, address: &Address) -> Account {
        self.accounts.account(address)
    }
}

/// Counters for getmininginfo.
#[derive(Debug, Default)]
pub struct MinerStats {
    pub hashes: AtomicU64,
    pub blocks: AtomicU64,
    /// Transfers in the last template built.
    pub last_template_txs: AtomicU64,
    /// Whether the continuous miner runs.
    pub generating: AtomicBool,
    /// Hashes per second of the continuous miner, as measured over its last search.
    pub hashes_per_sec: AtomicU64,
}

/// Mines blocks on the chain behind `chain` with transactions from `pool`.
pub struct Miner {
    chain: ChainHandle,
    pool: SharedMempool,
    threads: usize,
    stats: Arc<MinerStats>,
    /// Cancelled at shutdown (a child of the node's token, see `cancelled_with`): every search
    /// in progress ends and `generate` returns between two blocks.
    stopping: CancellationToken,
}

impl Miner {
    pub fn new(chain: ChainHandle, pool: SharedMempool, threads: usize) -> Miner {
        Miner {
            chain,
            pool,
            threads: threads.max(1),
            stats: Arc::new(MinerStats::default()),
            stopping: CancellationToken::new(),
        }
    }

    /// The same miner, stopped when `shutdown` is cancelled as well as by `stop`.
    pub fn cancelled_with(mut self, shutdown: &CancellationToken) -> Miner {
        self.stopping = shutdown.child_token();
        self
    }

    pub fn stats(&self) -> &MinerStats {
        &self.stats
    }

    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Ends every search in progress, now and later.
    pub fn stop(&self) {
        self.stopping.cancel();
    }

    /// A template on the current tip paying `miner`. Reads the store (blocking): async code
    /// uses `template_off_runtime`.
    pub fn template(&self, miner: Address) -> BlockTemplate {
        template_on_tip(&self.chain, &self.pool, &self.stats, miner)
    }

    /// `template` on tokio's blocking threads.
    async fn template_off_runtime(&self, miner: Address) -> Result<BlockTemplate, MiningError> {
        let (chain, pool, stats) = (self.chain.clone(), self.pool.clone(), self.stats.clone());
        tokio::task::spawn_blocking(move || template_on_tip(&chain, &pool, &stats, miner))
            .await
            .map_err(|e| MiningError::Task(e.to_string()))
    }

    /// Searches for a nonce off the async runtime; `None` after `max_tries` hashes or a stop.
    async fn search(
        &self,
        header: Header,
        target: Target,
        nonces: std::ops::Range<u64>,
        stop: Arc<AtomicBool>,
    ) -> Result<Option<Header>, MiningError> {
        // An easy target (regtest: about every second hash) is found on this thread's first
        // few tries; spreading it over threads would cost more than it saves.
        let easy = target[0] != 0 || target[1] != 0;
        let threads = if easy { 1 } else { self.threads };
        let stats = self.stats.clone();
        let stopping = self.stopping.clone();
        let run = move || {
            let should_stop = || stop.load(Ordering::Relaxed) || stopping.is_cancelled();
            search(
                &header,
                &target,
                nonces,
                threads,
                &should_stop,
                &stats.hashes,
            )
        };
        tokio::task::spawn_blocking(run)
            .await
            .map_err(|e| MiningError::Search(e.to_string()))
    }

    /// Mines `count` blocks paying `miner`, each submitted and connected before the next is
    /// built. Returns their hashes; fewer when a block needed more than `max_tries` hashes.
    pub async fn generate(
        &self,
        count: u64,
        miner: Address,
        max_tries: u64,
    ) -> Result<Vec<Hash256>, MiningError> {
        let mut hashes = Vec::with_capacity(count.min(MAX_GENERATE) as usize);
        let mut stale = 0;
        // After the chain refused a found block as already known (say, the same block was
        // mined before and then invalidated), the search resumes past its nonce if the next
        // template is the same.
        let mut resume: Option<(Header, u64)> = None;
        while (hashes.len() as u64) < count {
            if self.stopping.is_cancelled() {
                return Err(MiningError::ShuttingDown);
            }
            let mut template = self.template_off_runtime(miner).await?;
            let unsolved = template.block.header;
            let start = resume
                .take()
                .filter(|(h, _)| *h == unsolved)
                .map_or(0, |(_, n)| n);
            let found = self
                .search(
                    unsolved,
                    template.target,
                    start..start.saturating_add(max_tries),
                    Arc::new(AtomicBool::new(false)),
                )
                .await?;
            let Some(header) = found else {
                if self.stopping.is_cancelled() {
                    return Err(MiningError::ShuttingDown);
                }
                break;
            };
            template.block.header = header;
            let hash = header.hash();
            let block = template.block;
            match self.chain.submit_block(block.clone()).await {
                Ok(SubmitOutcome::Connected { .. }) => {
                    // Update the pool now, as bitcoind does, so that when generate returns the
                    // mined transactions are gone from it; the chain-event follower's later
                    // pass over the same block then finds nothing left to do.
                    let (pool, reader) = (self.pool.clone(), self.chain.reader().clone());
                    tokio::task::spawn_blocking(move || pool.block_connected(&block, &reader))
                        .await
                        .map_err(|e| MiningError::Task(e.to_string()))?;
                    self.stats.blocks.fetch_add(1, Ordering::Relaxed);
                    hashes.push(hash);
                    stale = 0;
                }
                Ok(SubmitOutcome::Duplicate) | Err(ChainError::KnownInvalid(_))
                    if stale < MAX_STALE_RETRIES =>
                {
                    resume = Some((unsolved, header.nonce.saturating_add(1)));
                    stale += 1;
                }
                // The tip moved between the template and the submit (another miner or a peer):
                // build again on the new tip.
                Ok(_) | Err(ChainError::InvalidBlock { .. }) if stale < MAX_STALE_RETRIES => {
                    stale += 1;
                }
                Ok(_) => return Err(MiningError::Stale(stale)),
                Err(e) => return Err(e.into()),
            }
        }
        Ok(hashes)
    }

    /// Mines continuously to `miner` until `shutdown`, rebuilding the template when the tip
    /// changes or every `TEMPLATE_REFRESH`, finding at most one block per `interval` (measured
    /// from the start of the search that found the last one; zero: no pause).
    pub async fn run(
        self: Arc<Self>,
        miner: Address,
        interval: Duration,
        shutdown: CancellationToken,
    ) {
        self.stats.generating.store(true, Ordering::Relaxed);
        let mut snapshots = self.chain.snapshot_receiver();
        tracing::info!(
            %miner,
            threads = self.threads,
            interval_ms = interval.as_millis() as u64,
            "mining started"
        );
        let mut last_found: Option<tokio::time::Instant> = None;
        let mut resume: Option<(Header, u64)> = None;
        while !shutdown.is_cancelled() && !self.stopping.is_cancelled() {
            if let Some(found_at) = last_found.filter(|_| !interval.is_zero()) {
                // A timer, not a blocking sleep: a shutdown ends the pause at once.
                tokio::select! {
                    _ = tokio::time::sleep_until(found_at + interval) => {}
                    _ = shutdown.cancelled() => break,
                    _ = self.stopping.cancelled() => break,
                }
            }
            snapshots.borrow_and_update();
            let mut template = match self.template_off_runtime(miner).await {
                Ok(template) => template,
                Err(e) => {
                    tracing::error!(error = %e, "mining stopped");
                    break;
                }
            };
            let unsolved = template.block.header;
            let start = resume
                .take()
                .filter(|(h, _)| *h == unsolved)
                .map_or(0, |(_, n)| n);
            let stop = Arc::new(AtomicBool::new(false));
            let started = Instant::now();
            let before = self.stats.hashes.load(Ordering::Relaxed);
            let search = self.search(unsolved, template.target, start..u64::MAX, stop.clone());
            tokio::pin!(search);
            let found = tokio::select! {
                found = &mut search => found,
                _ = snapshots.changed() => { stop.store(true, Ordering::Relaxed); search.await }
                _ = tokio::time::sleep(TEMPLATE_REFRESH) => {
                    stop.store(true, Ordering::Relaxed);
                    search.await
                }
                _ = shutdown.cancelled() => { stop.store(true, Ordering::Relaxed); search.await }
            };
            let secs = started.elapsed().as_secs_f64();
            if secs > 0.5 {
                let done = self.stats.hashes.load(Ordering::Relaxed) - before;
                self.stats
                    .hashes_per_sec
                    .store((done as f64 / secs) as u64, Ordering::Relaxed);
            }
            match found {
                Ok(Some(header)) => {
                    template.block.header = header;
                    let hash = header.hash();
                    match self.chain.submit_block(template.block).await {
                        Ok(SubmitOutcome::Connected { height }) => {
                            self.stats.blocks.fetch_add(1, Ordering::Relaxed);
                            last_found = Some(started.into());
                            // The chain's `new tip` line is the operator's; this one adds only that it was ours.
                            tracing::debug!(%hash, height, fees = %template.fees, "mined a block");
                        }
                        Ok(SubmitOutcome::Duplicate) | Err(ChainError::KnownInvalid(_)) => {
                            resume = Some((unsolved, header.nonce.saturating_add(1)));
                        }
                        Ok(outcome) => tracing::info!(%hash, ?outcome, "mined block not connected"),
                        Err(ChainError::WriterStopped) => break,
                        Err(e) => tracing::warn!(%hash, error = %e, "mined block refused"),
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::error!(error = %e, "mining stopped");
                    break;
                }
            }
        }
        self.stats.generating.store(false, Ordering::Relaxed);
        tracing::info!("mining stopped");
    }
}

/// A template on `chain`'s tip paying `miner`: the pool's senders are read from the store
/// first, then the template is built under the pool's lock with no store read.
fn template_on_tip(
    chain: &ChainHandle,
    pool: &SharedMempool,
    stats: &MinerStats,
    miner: Address,
) -> BlockTemplate {
    let snapshot = chain.tip_snapshot();
    let accounts = pool.prefetch_senders(chain.reader());
    let source = ChainSource {
        snapshot: &snapshot,
        accounts: &accounts,
    };
    let template = build_template(
        chain.params(),
        &source,
        &pool.lock(),
        miner,
        crate::time::unix_secs(),
    );
    stats.last_template_txs.store(
        template.block.transactions.len() as u64 - 1,
        Ordering::Relaxed,
    );
    template
}
