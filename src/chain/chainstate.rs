//! `Chain`: the synchronous chain core that the writer thread owns. Accepts blocks (stateless
//! checks, orphan pool, contextual header checks, storage), chooses the most-work valid chain,
//! reorganises to it block by block, and publishes the tip and connect/disconnect events.
//!
//! Owns the order of chain writes. Never reads the clock: the caller passes `now`. Every
//! connect or disconnect is one atomic store commit, and the tip is published after it.

use super::error::{BlockError, ChainError};
use super::index::{BlockIndex, Entry};
use super::orphans::{OrphanPool, MAX_ORPHANS, MAX_ORPHAN_BYTES};
use super::reader::ChainReader;
use super::signatures::default_threads;
use super::state::Account;
use super::store::{BlockStatus, IndexRecord, Store};
use super::tiplog::{self, NewTip, Reorg, TipLog};
use super::txindex::TxIndexer;
use super::validation::{
    apply_block, check_block_stateless, check_coinbase, check_header_contextual,
    check_header_stateless, check_signatures, check_signatures_except, precheck, touched_addresses,
    CheckedBlock,
};
use super::work::{block_work, work_to_bytes};
use super::{ChainEvent, ChainTip};
use crate::metrics::Metrics;
use crate::params::NetworkParams;
use crate::types::{Address, Block, Hash256, Header};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, watch};

/// Capacity of the connect/disconnect event channel.
pub const EVENT_CAPACITY: usize = 1024;

/// Recently accepted blocks kept in memory so connecting them needs no store read.
const RECENT_BLOCKS: usize = 16;

#[derive(Clone, Debug)]
pub struct ChainOptions {
    /// Threads for signature verification.
    pub verify_threads: usize,
    pub max_orphans: usize,
    pub max_orphan_bytes: usize,
    /// Keep the txid → block index (`getrawtransaction`); fixed when the store is created.
    pub tx_index: bool,
    /// Pending account states / blocks beyond which the store flushes its pending state.
    pub max_pending_accounts: usize,
    pub max_pending_blocks: usize,
}

impl Default for ChainOptions {
    fn default() -> Self {
        ChainOptions {
            verify_threads: default_threads(),
            max_orphans: MAX_ORPHANS,
            max_orphan_bytes: MAX_ORPHAN_BYTES,
            tx_index: true,
            max_pending_accounts: super::store::MAX_PENDING_ACCOUNTS,
            max_pending_blocks: super::store::MAX_PENDING_BLOCKS,
        }
    }
}

/// What became of a submitted block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SubmitOutcome {
    /// Valid and now part of the active chain at this height.
    Connected { height: u64 },
    /// Stored on a side branch at this height (not enough work to become active, or not yet
    /// fully validated because its branch is not active).
    SideBranch { height: u64 },
    /// Its parent is unknown; held in the orphan pool.
    Orphan,
    /// Already known (stored, or waiting in the orphan pool).
    Duplicate,
}

/// The tip with what a block template or `getblockchaininfo` needs, published on a watch
/// channel after every change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TipSnapshot {
    pub tip: ChainTip,
    pub header: Header,
    /// Cumulative work of the active chain, big-endian.
    pub chainwork: [u8; 32],
    pub median_time_past: u64,
    /// The target the next block must carry.
    pub next_bits: u32,
}

/// What `verifychain` found.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct VerifyReport {
    pub ok: bool,
    /// Height of the tip that was checked.
    pub height: u64,
    /// Accounts in the stored state.
    pub accounts: u64,
    pub first_mismatch: Option<Mismatch>,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Mismatch {
    /// A main-chain block is missing, is not the expected one, or fails validation on replay.
    Block {
        height: u64,
        hash: Option<Hash256>,
        error: String,
    },
    /// The stored state of an account differs from the replayed one (null: absent), at the
    /// tip or at the block the stored account table is at (the state marker, below the
    /// pending changes).
    Account {
        height: u64,
        address: Address,
        stored: Option<Account>,
        replayed: Option<Account>,
    },
}

/// Where the writer's time went, cumulative since open (for benchmarks and logs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChainStats {
    pub blocks_connected: u64,
    pub blocks_disconnected: u64,
    pub transactions_connected: u64,
    /// Stateless checks on arrival (PoW, size, merkle root, amounts).
    pub arrival_checks: Duration,
    /// Contextual checks and storing the body on acceptance.
    pub accept: Duration,
    /// Signature verification at connect time.
    pub signatures: Duration,
    /// Reading the touched accounts at connect time.
    pub state_reads: Duration,
    /// Applying the transactions to the accounts.
    pub apply: Duration,
    /// Atomic store commits of connects and disconnects.
    pub commits: Duration,
}

pub struct Chain {
    stats: ChainStats,
    params: &'static NetworkParams,
    store: Store,
    index: BlockIndex,
    orphans: OrphanPool,
    options: ChainOptions,
    recent: VecDeque<(Hash256, Arc<Block>, bool)>,
    tip_tx: watch::Sender<ChainTip>,
    snapshot_tx: watch::Sender<Arc<TipSnapshot>>,
    events: broadcast::Sender<ChainEvent>,
    /// Follows the active chain with the transaction index (when the store keeps one).
    tx_indexer: Option<TxIndexer>,
    /// The node's metrics, when it has any (tests and benchmarks run without).
    metrics: Option<Arc<Metrics>>,
    /// How many `new tip` lines the log gets.
    tip_log: TipLog,
}

fn invalid(hash: Hash256) -> impl FnOnce(BlockError) -> ChainError {
    move |error| ChainError::InvalidBlock { hash, error }
}

/// Why connecting a block failed: the block is invalid, or the store failed.
enum ConnectError {
    Invalid(BlockError),
    Chain(ChainError),
}

impl From<ChainError> for ConnectError {
    fn from(e: ChainError) -> Self {
        ConnectError::Chain(e)
    }
}

impl Chain {
    /// Opens the chain stored in `path` (creating it with the genesis block if empty), loads
    /// the block index and finishes any reorganisation a crash interrupted.
    pub fn open(
        path: &Path,
        params: &'static NetworkParams,
        options: ChainOptions,
    ) -> Result<Chain, ChainError> {
        let store = Store::open_with(path, params, options.tx_index)?
            .with_pending_limits(options.max_pending_accounts, options.max_pending_blocks);
        Chain::with_store(store, params, options)
    }

    /// A chain in a temporary store (tests and benchmarks).
    pub fn open_temporary(
        params: &'static NetworkParams,
        options: ChainOptions,
    ) -> Result<Chain, ChainError> {
        let store = Store::open_temporary_with(params, options.tx_index)?
            .with_pending_limits(options.max_pending_accounts, options.max_pending_blocks);
        Chain::with_store(store, params, options)
    }

    fn with_store(
        store: Store,
        params: &'static NetworkParams,
        options: ChainOptions,
    ) -> Result<Chain, ChainError> {
        let tip = store.tip()?;
        let index = BlockIndex::load(store.index_records(), tip)?;
        if index
            .get(&index.active_hash(0).unwrap_or_default())
            .map(|e| e.header)
            != Some(params.genesis_block().header)
        {
            return Err(ChainError::corrupt(
                "the stored chain does not start at this network's genesis block",
            ));
        }
        match store.main_last()? {
            Some((height, hash)) if height == index.tip_height() && hash == tip => {}
            other => {
                return Err(ChainError::corrupt(format!(
                    "the main-chain table ends at {other:?}, but the tip is {tip} at height {}",
                    index.tip_height()
                )))
            }
        }
        let (tip_tx, _) = watch::channel(ChainTip::genesis(params));
        let placeholder = Arc::new(TipSnapshot {
            tip: ChainTip::genesis(params),
            header: params.genesis_block().header,
            chainwork: [0; 32],
            median_time_past: 0,
            next_bits: params.pow_limit_bits,
        });
        let (snapshot_tx, _) = watch::channel(placeholder);
        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        let tx_indexer = store
            .has_tx_index()
            .then(|| TxIndexer::spawn(store.clone()));
        let mut chain = Chain {
            stats: ChainStats::default(),
            params,
            store,
            index,
            orphans: OrphanPool::new(options.max_orphans, options.max_orphan_bytes),
            options,
            recent: VecDeque::new(),
            tip_tx,
            snapshot_tx,
            events,
            tx_indexer,
            metrics: None,
            tip_log: TipLog::default(),
        };
        chain.publish();
        let old_tip = chain.active_tip();
        chain.activate_best_chain()?;
        chain.log_reorg_since(old_tip);
        Ok(chain)
    }

    pub fn params(&self) -> &'static NetworkParams {
        self.params
    }

    pub fn options(&self) -> &ChainOptions {
        &self.options
    }

    pub fn tip(&self) -> ChainTip {
        *self.tip_tx.borrow()
    }

    pub fn tip_snapshot(&self) -> Arc<TipSnapshot> {
        self.snapshot_tx.borrow().clone()
    }

    pub fn subscribe_tip(&self) -> watch::Receiver<ChainTip> {
        self.tip_tx.subscribe()
    }

    pub fn subscribe_snapshot(&self) -> watch::Receiver<Arc<TipSnapshot>> {
        self.snapshot_tx.subscribe()
    }

    pub fn subscribe_events(&self) -> broadcast::Receiver<ChainEvent> {
        self.events.subscribe()
    }

    pub fn event_sender(&self) -> broadcast::Sender<ChainEvent> {
        self.events.clone()
    }

    pub fn reader(&self) -> ChainReader {
        ChainReader::new(self.store.clone(), self.params)
    }

    pub fn index(&self) -> &BlockIndex {
        &self.index
    }

    /// Counts connects, reorgs, orphans and signature batches into `metrics` from now on.
    pub fn set_metrics(&mut self, metrics: Arc<Metrics>) {
        metrics.chain.orphan_blocks.set(self.orphans.len() as i64);
        self.metrics = Some(metrics);
    }

    pub fn metrics(&self) -> Option<&Arc<Metrics>> {
        self.metrics.as_ref()
    }

    fn count_orphans(&self) {
        if let Some(m) = &self.metrics {
            m.chain.orphan_blocks.set(self.orphans.len() as i64);
        }
    }

    pub fn orphan_count(&self) -> usize {
        self.orphans.len()
    }

    /// Account state at the tip.
    pub fn account(&self, address: &Address) -> Result<Account, ChainError> {
        self.store.account(address)
    }

    /// Every stored account, in address order.
    pub fn accounts(&self) -> Result<BTreeMap<Address, Account>, ChainError> {
        self.store.accounts()
    }

    /// Writes the pending account states to their table and makes every commit durable.
    pub fn flush(&self) -> Result<(), ChainError> {
        self.store.flush()
    }

    /// Makes every commit so far durable (one fsync if any is not yet).
    pub fn sync(&self) -> Result<(), ChainError> {
        self.store.sync()
    }

    /// Whether a commit is not yet durable.
    pub fn has_unsynced(&self) -> bool {
        self.store.has_unsynced()
    }

    /// Connected blocks whose account changes are still pending (in their redo records and
    /// in memory), not yet in the accounts tree.
    pub fn unflushed_blocks(&self) -> usize {
        self.store.pending_blocks()
    }

    pub fn stats(&self) -> ChainStats {
        self.stats
    }

    /// Whether `new tip` lines wait for their summary (see `tiplog`).
    pub fn has_held_tip_lines(&self) -> bool {
        self.tip_log.has_held()
    }

    /// Writes the summary of held `new tip` lines once their window has ended.
    pub fn log_due_tip_lines(&mut self) {
        if let Some(summary) = self.tip_log.due(Instant::now()) {
            tiplog::log_summary(&summary);
        }
    }

    /// Writes the summary of held `new tip` lines now, window ended or not (at shutdown:
    /// the log then accounts for every block that became the tip).
    pub fn log_held_tip_lines(&mut self) {
        if let Some(summary) = self.tip_log.flush() {
            tiplog::log_summary(&summary);
        }
    }

    fn active_tip(&self) -> (u64, Hash256) {
        (self.index.tip_height(), self.index.tip())
    }

    /// One `chain reorganised` line when `old_tip` has left the active chain (a heavier
    /// branch, `invalidateblock`); a chain that only grew says nothing here.
    fn log_reorg_since(&self, old_tip: (u64, Hash256)) {
        if self.index.is_active(&old_tip.1) {
            return;
        }
        let fork = self.index.fork_point(&old_tip.1);
        let fork_height = self.index.get(&fork).map_or(0, |e| e.height);
        let new_tip = self.active_tip();
        tiplog::log_reorg(&Reorg {
            fork_height,
            fork,
            disconnected: old_tip.0 - fork_height,
            connected: new_tip.0 - fork_height,
            old_tip,
            new_tip,
        });
    }

    fn publish(&self) {
        let tip_hash = self.index.tip();
        let entry = self.index.get(&tip_hash).expect("the tip is indexed");
        let best = self.index.best_candidate();
        let header_height = self
            .index
            .get(&best)
            .map_or(entry.height, |e| e.height.max(entry.height));
        let tip = ChainTip {
            height: entry.height,
            hash: tip_hash,
            header_height,
        };
        let snapshot = TipSnapshot {
            tip,
            header: entry.header,
            chainwork: work_to_bytes(entry.chainwork),
            median_time_past: self.index.median_time_past(&tip_hash),
            next_bits: self
                .index
                .next_bits(self.params, &tip_hash)
                .unwrap_or(self.params.pow_limit_bits),
        };
        self.snapshot_tx.send_replace(Arc::new(snapshot));
        self.tip_tx.send_replace(tip);
        if let Some(indexer) = &self.tx_indexer {
            indexer.nudge();
        }
    }

    /// Submits a block: checks it, stores it (or holds it as an orphan), and moves the active
    /// chain to the most-work valid tip. `now` is the local clock in seconds.
    ///
    /// Returns an error if the block is invalid (or descends from an invalid block).
    ///
    /// Signatures are verified when the block is connected (a side branch that never becomes
    /// active never costs them); `submit_checked` takes blocks whose signatures were verified
    /// beforehand, off the writer.
    pub fn submit_block(&mut self, block: Block, now: u64) -> Result<SubmitOutcome, ChainError> {
        let hash = block.hash();
        if let Some(known) = self.known(&hash) {
            return known;
        }
        let started = Instant::now();
        let checked = precheck(self.params, block, None);
        self.stats.arrival_checks += started.elapsed();
        let checked = checked.map_err(|(hash, error)| ChainError::InvalidBlock { hash, error })?;
        self.submit_checked(checked, now)
    }

    /// The answer for a block already known: stored, invalid, or waiting as an orphan.
    fn known(&self, hash: &Hash256) -> Option<Result<SubmitOutcome, ChainError>> {
        if let Some(entry) = self.index.get(hash) {
            return Some(if entry.status.is_failed() {
                Err(ChainError::KnownInvalid(*hash))
            } else {
                Ok(SubmitOutcome::Duplicate)
            });
        }
        self.orphans
            .contains(hash)
            .then_some(Ok(SubmitOutcome::Duplicate))
    }

    /// `submit_block` for a block that already passed the stateless checks (`precheck`).
    pub fn submit_checked(
        &mut self,
        checked: CheckedBlock,
        now: u64,
    ) -> Result<SubmitOutcome, ChainError> {
        let hash = checked.hash();
        if let Some(known) = self.known(&hash) {
            return known;
        }
        if !self.index.contains(&checked.block().header.prev_hash) {
            self.orphans.insert(checked);
            self.count_orphans();
            return Ok(SubmitOutcome::Orphan);
        }
        let started = Instant::now();
        let accepted = self.accept(checked, now);
        self.stats.accept += started.elapsed();
        // Orphans waiting on this block (and on them) are accepted too, whatever became of
        // this one: a failed parent makes them fail as descendants of an invalid block.
        if self.index.contains(&hash) {
            self.adopt_orphans(hash, now);
            self.count_orphans();
        }
        let old_tip = self.active_tip();
        let failures = self.activate_best_chain()?;
        self.log_reorg_since(old_tip);
        accepted?;
        if let Some((_, error)) = failures.iter().find(|(h, _)| *h == hash) {
            return Err(ChainError::InvalidBlock {
                hash,
                error: error.clone(),
            });
        }
        let entry = self.index.get(&hash).expect("accepted blocks are indexed");
        if entry.status.is_failed() {
            let culprit = failures
                .first()
                .map(|(h, _)| *h)
                .unwrap_or(entry.header.prev_hash);
            return Err(ChainError::InvalidBlock {
                hash,
                error: BlockError::InvalidAncestor(culprit),
            });
        }
        if self.index.is_active(&hash) {
            Ok(SubmitOutcome::Connected {
                height: entry.height,
            })
        } else {
            Ok(SubmitOutcome::SideBranch {
                height: entry.height,
            })
        }
    }

    fn adopt_orphans(&mut self, parent: Hash256, now: u64) {
        let mut queue = vec![parent];
        while let Some(parent) = queue.pop() {
            for orphan in self.orphans.take_children(&parent) {
                let hash = orphan.hash();
                match self.accept(orphan, now) {
                    Ok(()) => queue.push(hash),
                    Err(e) => {
                        tracing::debug!(%hash, error = %e, "orphan block rejected");
                        if self.index.contains(&hash) {
                            queue.push(hash);
                        }
                    }
                }
            }
        }
    }

    /// Contextual checks against the (known) parent, then storage. A block whose parent is
    /// known to be invalid is stored as `InvalidAncestor`, so it is never tried again.
    fn accept(&mut self, checked: CheckedBlock, now: u64) -> Result<(), ChainError> {
        let (hash, summary) = (checked.hash(), checked.summary());
        let signatures_checked = checked.signatures_checked();
        let block = checked.into_block();
        let prev = block.header.prev_hash;
        let parent = self
            .index
            .get(&prev)
            .ok_or(ChainError::UnknownBlock(prev))?;
        let height = parent.height + 1;
        let parent_failed = parent.status.is_failed();
        let chainwork = parent.chainwork
            + block_work(block.header.bits)
                .map_err(|e| invalid(hash)(BlockError::BadCompactTarget(e)))?;
        let context = self
            .index
            .header_context(self.params, &prev, now)
            .ok_or(ChainError::UnknownBlock(prev))?;
        // Checked even below an invalid parent, so that nothing unchecked is ever stored.
        check_header_contextual(&block.header, &context).map_err(invalid(hash))?;
        check_coinbase(self.params, &block, height, summary.fees).map_err(invalid(hash))?;
        let entry = Entry {
            header: block.header,
            height,
            chainwork,
            status: if parent_failed {
                BlockStatus::InvalidAncestor
            } else if signatures_checked {
                BlockStatus::Checked
            } else {
                BlockStatus::Stored
            },
            seq: self.index.take_seq(),
        };
        self.store.store_block(&hash, &block, &entry.record())?;
        self.index.insert(hash, entry);
        self.remember(hash, Arc::new(block), signatures_checked);
        if parent_failed {
            return Err(invalid(hash)(BlockError::InvalidAncestor(prev)));
        }
        Ok(())
    }

    fn remember(&mut self, hash: Hash256, block: Arc<Block>, signatures_checked: bool) {
        if self.recent.len() >= RECENT_BLOCKS {
            self.recent.pop_front();
        }
        self.recent.push_back((hash, block, signatures_checked));
    }

    /// The block, and whether its signatures were verified before it was accepted.
    fn load_block(&self, hash: &Hash256) -> Result<(Arc<Block>, bool), ChainError> {
        if let Some((_, block, checked)) = self.recent.iter().find(|(h, _, _)| h == hash) {
            return Ok((block.clone(), *checked));
        }
        self.store
            .block(hash)?
            .map(|b| (Arc::new(b), false))
            .ok_or_else(|| ChainError::corrupt(format!("indexed block {hash} has no body")))
    }

    /// Moves the active chain to the best candidate, disconnecting back to the fork point and
    /// connecting the new branch block by block. A block that fails is marked invalid with
    /// its descendants, and the best remaining candidate is tried next, so this ends on the
    /// most-work chain whose every block is valid. Returns the blocks found invalid.
    fn activate_best_chain(&mut self) -> Result<Vec<(Hash256, BlockError)>, ChainError> {
        let mut failures = vec![];
        loop {
            let best = self.index.best_candidate();
            if best == self.index.tip() {
                break;
            }
            let fork = self.index.fork_point(&best);
            let mut depth = 0u64;
            while self.index.tip() != fork {
                self.disconnect_tip()?;
                depth += 1;
            }
            if let (Some(m), true) = (&self.metrics, depth > 0) {
                m.chain.reorgs.inc();
                m.chain.reorg_depth.observe(depth as f64);
            }
            for hash in self.index.path_from(&fork, &best) {
                match self.connect(&hash) {
                    Ok(()) => {}
                    Err(ConnectError::Invalid(error)) => {
                        tracing::info!(%hash, %error, "block failed validation");
                        self.mark_failed(&hash)?;
                        failures.push((hash, error));
                        break;
                    }
                    Err(ConnectError::Chain(e)) => return Err(e),
                }
            }
        }
        Ok(failures)
    }

    /// Connects `hash`, a child of the tip: signatures (unless it was fully validated before),
    /// then the transactions against the tip's state, then one atomic commit.
    fn connect(&mut self, hash: &Hash256) -> Result<(), ConnectError> {
        let entry = self
            .index
            .get(hash)
            .cloned()
            .ok_or(ChainError::UnknownBlock(*hash))?;
        let connect_started = Instant::now();
        let (block, signatures_checked) = self.load_block(hash)?;
        let verified_before = matches!(entry.status, BlockStatus::Valid | BlockStatus::Checked);
        if !verified_before && !signatures_checked {
            let started = Instant::now();
            let checked = check_signatures_except(
                self.params,
                &block,
                self.options.verify_threads,
                None,
                self.metrics.as_ref().map(|m| &*m.signatures),
            );
            self.stats.signatures += started.elapsed();
            checked.map_err(ConnectError::Invalid)?;
        }
        let started = Instant::now();
        let view: HashMap<Address, Account> =
            self.store.read_accounts(touched_addresses(&block))?;
        let read = Instant::now();
        self.stats.state_reads += read - started;
        let delta = apply_block(&block, &view).map_err(ConnectError::Invalid)?;
        let applied = Instant::now();
        self.stats.apply += applied - read;
        let mut record = entry.record();
        record.status = BlockStatus::Valid;
        self.store.connect(hash, &record, &delta)?;
        self.stats.commits += applied.elapsed();
        self.stats.blocks_connected += 1;
        self.stats.transactions_connected += block.transactions.len() as u64;
        if let Some(m) = &self.metrics {
            m.chain.blocks_connected.inc();
            m.chain
                .transactions_connected
                .inc_by(block.transactions.len() as u64);
        }
        self.index.set_status(hash, BlockStatus::Valid);
        self.index.push_active(*hash);
        self.publish();
        let now = Instant::now();
        let lines = self.tip_log.on_tip(
            now,
            NewTip {
                height: entry.height,
                hash: *hash,
                txs: block.transactions.len(),
                connect: now - connect_started,
            },
        );
        if let Some(summary) = &lines.summary {
            tiplog::log_summary(summary);
        }
        if let Some(tip) = &lines.tip {
            tiplog::log_tip(tip);
        }
        let _ = self
            .events
            .send(ChainEvent::BlockConnected(block, entry.height));
        Ok(())
    }

    fn disconnect_tip(&mut self) -> Result<(), ChainError> {
        let hash = self.index.tip();
        let height = self.index.tip_height();
        if height == 0 {
            return Err(ChainError::CannotInvalidateGenesis);
        }
        let (block, _) = self.load_block(&hash)?;
        let started = Instant::now();
        self.store.disconnect(&hash, height, &block)?;
        self.stats.commits += started.elapsed();
        self.stats.blocks_disconnected += 1;
        if let Some(m) = &self.metrics {
            m.chain.blocks_disconnected.inc();
        }
        self.index.pop_active();
        tracing::debug!(height, %hash, "block disconnected");
        self.publish();
        let _ = self
            .events
            .send(ChainEvent::BlockDisconnected(block, height));
        Ok(())
    }

    /// Marks `hash` invalid and its descendants as descending from an invalid block, in the
    /// index and (atomically) in the store.
    fn mark_failed(&mut self, hash: &Hash256) -> Result<(), ChainError> {
        let mut records: Vec<(Hash256, IndexRecord)> = vec![];
        if let Some(r) = self.index.set_status(hash, BlockStatus::Invalid) {
            records.push((*hash, r));
        }
        for d in self.index.descendants(hash) {
            if self.index.get(&d).map(|e| e.status) != Some(BlockStatus::Invalid) {
                if let Some(r) = self.index.set_status(&d, BlockStatus::InvalidAncestor) {
                    records.push((d, r));
                }
            }
        }
        self.store
            .put_index_records(records.iter().map(|(h, r)| (h, r)))?;
        self.publish();
        Ok(())
    }

    /// `invalidateblock`: marks the block invalid (with its descendants), disconnects it if it
    /// is active, and moves to the best remaining chain.
    pub fn invalidate_block(&mut self, hash: &Hash256) -> Result<(), ChainError> {
        let entry = self
            .index
            .get(hash)
            .ok_or(ChainError::UnknownBlock(*hash))?;
        if entry.height == 0 {
            return Err(ChainError::CannotInvalidateGenesis);
        }
        let old_tip = self.active_tip();
        self.mark_failed(hash)?;
        while self.index.is_active(hash) {
            self.disconnect_tip()?;
        }
        self.activate_best_chain()?;
        self.log_reorg_since(old_tip);
        Ok(())
    }

    /// `reconsiderblock`: clears the invalid marks of the block, its descendants and its
    /// ancestors, then moves to the best chain (a block that really is invalid is found and
    /// marked again when it is connected).
    pub fn reconsider_block(&mut self, hash: &Hash256) -> Result<(), ChainError> {
        let entry = self
            .index
            .get(hash)
            .ok_or(ChainError::UnknownBlock(*hash))?;
        let mut affected = self.index.descendants(hash);
        affected.push(*hash);
        let mut cursor = entry.header.prev_hash;
        while let Some(e) = self.index.get(&cursor) {
            affected.push(cursor);
            if e.height == 0 {
                break;
            }
            cursor = e.header.prev_hash;
        }
        let mut records = vec![];
        for h in affected {
            if self.index.get(&h).is_some_and(|e| e.status.is_failed()) {
                if let Some(r) = self.index.set_status(&h, BlockStatus::Stored) {
                    records.push((h, r));
                }
            }
        }
        self.store
            .put_index_records(records.iter().map(|(h, r)| (h, r)))?;
        let old_tip = self.active_tip();
        self.activate_best_chain()?;
        self.log_reorg_since(old_tip);
        self.publish();
        Ok(())
    }

    /// `verifychain`: replays the active chain from genesis into a fresh state and compares
    /// it with the stored state. `check_level` ≥ 1 re-runs the stateless and contextual block
    /// checks, ≥ 3 signatures too.
    pub fn verify_chain(&self, check_level: u32) -> Result<VerifyReport, ChainError> {
        self.verify_chain_until(check_level, &|| false)
    }

    /// `verify_chain`, checking `cancelled` before each block: once it says so, the replay
    /// ends with `ChainError::Cancelled` (a shutdown does not wait for a long replay).
    pub fn verify_chain_until(
        &self,
        check_level: u32,
        cancelled: &dyn Fn() -> bool,
    ) -> Result<VerifyReport, ChainError> {
        let height = self.index.tip_height();
        let marker = self.store.state_tip()?;
        let mut state: HashMap<Address, Account> = HashMap::new();
        let report = |mismatch: Mismatch, accounts: u64| VerifyReport {
            ok: false,
            height,
            accounts,
            first_mismatch: Some(mismatch),
        };
        let block_mismatch = |h: u64, hash: Option<Hash256>, error: String| Mismatch::Block {
            height: h,
            hash,
            error,
        };
        for h in 0..=height {
            if cancelled() {
                return Err(ChainError::Cancelled);
            }
            let expected = self.index.active_hash(h);
            let stored = self.store.main_hash(h)?;
            if stored != expected {
                let error = format!("main-chain table holds {stored:?}, the index {expected:?}");
                return Ok(report(block_mismatch(h, stored, error), 0));
            }
            let hash = expected.expect("heights up to the tip are active");
            let Some(block) = self.store.block(&hash)? else {
                return Ok(report(block_mismatch(h, Some(hash), "no body".into()), 0));
            };
            if block.hash() != hash {
                let error = "stored body does not hash to its key".to_string();
                return Ok(report(block_mismatch(h, Some(hash), error), 0));
            }
            if h > 0 && check_level >= 1 {
                let checks = check_header_stateless(self.params, &block.header, &hash)
                    .and_then(|_| check_block_stateless(&block))
                    .and_then(|s| check_coinbase(self.params, &block, h, s.fees))
                    .and_then(|_| {
                        if check_level >= 3 {
                            check_signatures(self.params, &block, self.options.verify_threads)
                        } else {
                            Ok(())
                        }
                    });
                if let Err(e) = checks {
                    return Ok(report(block_mismatch(h, Some(hash), e.to_string()), 0));
                }
            }
            match apply_block(&block, &state) {
                Ok(delta) => {
                    for (address, _, after) in delta.accounts {
                        if after == Account::default() {
                            state.remove(&address);
                        } else {
                            state.insert(address, after);
                        }
                    }
                }
                Err(e) => return Ok(report(block_mismatch(h, Some(hash), e.to_string()), 0)),
            }
            // The account table itself holds the state at the marker: check it there too,
            // so a table that only the pending changes above it hide is found.
            if hash == marker {
                let table = self.store.tree_accounts()?;
                if let Some(mismatch) = first_account_difference(h, &table, &state) {
                    return Ok(report(mismatch, table.len() as u64));
                }
            }
        }
        let stored = self.accounts()?;
        let accounts = stored.len() as u64;
        if let Some(mismatch) = first_account_difference(height, &stored, &state) {
            return Ok(report(mismatch, accounts));
        }
        Ok(VerifyReport {
            ok: true,
            height,
            accounts,
            first_mismatch: None,
        })
    }
}

/// The first account (in address order) whose `stored` state differs from the `replayed` one.
fn first_account_difference(
    height: u64,
    stored: &BTreeMap<Address, Account>,
    replayed: &HashMap<Address, Account>,
) -> Option<Mismatch> {
    let mut addresses: Vec<&Address> = stored.keys().chain(replayed.keys()).collect();
    addresses.sort();
    addresses.dedup();
    addresses.into_iter().find_map(|address| {
        let (s, r) = (stored.get(address), replayed.get(address));
        (s != r).then(|| Mismatch::Account {
            height,
            address: *address,
            stored: s.copied(),
            replayed: r.copied(),
        })
    })
}
