//! The chain's persistent store in sled: block index, block bodies, main chain, account
//! state, undo data, transaction index and metadata, one sled tree each.
//!
//! Owns the on-disk layout (docs/CHAIN.md) and its atomicity: every block connect or
//! disconnect is one sled transaction over all the trees it touches, so after a crash the
//! store holds either all of a block's effects or none. The transaction index is the
//! exception by design: it follows the active chain a block at a time behind its own marker
//! (`index_next_block`, driven by `txindex::TxIndexer`), and lookups check every entry
//! against the main chain and scan the blocks it has not reached yet. Never panics on a bad
//! record: an undecodable value is `ChainError::Corrupt`. Never decides validity.

use super::error::ChainError;
use super::state::Account;
use super::validation::StateDelta;
use crate::encoding::{self, BoundedVec};
use crate::params::NetworkParams;
use crate::types::block::{HEADER_SIZE, MAX_BLOCK_TXS};
use crate::types::{Address, Block, Hash256, Header};
use bincode::{Decode, Encode};
use sled::transaction::{ConflictableTransactionError, TransactionError, Transactional};
use sled::{Batch, Tree};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, RwLock};

/// Version of the layout below. Bump it on any change; an unknown version refuses to open.
/// Version 2 added the transaction index's own marker (`meta.txindex_tip`), the `redo` tree
/// and the account state's marker (`meta.state_tip`); a version 1 store, whose index and
/// accounts always matched its tip, is upgraded in place when opened.
pub const SCHEMA_VERSION: u32 = 2;

/// Pending account states (see `PendingState`) that make the writer flush them to the
/// `accounts` tree: about 60 bytes each in memory.
pub const MAX_PENDING_ACCOUNTS: usize = 65_536;

/// Accounts written per sled batch by a state flush.
pub const FLUSH_CHUNK: usize = 4_096;

/// Connected blocks whose account changes may wait, unflushed, in their redo records; also
/// bounds the replay when a store opens after a crash.
pub const MAX_PENDING_BLOCKS: usize = 500;

/// Blocks a lookup scans beyond the transaction index's marker before it reports that the
/// index is still catching up.
pub const TX_INDEX_SCAN_LIMIT: u64 = 64;

/// Bound on sled's page cache. sled 0.34 counts its cache loosely: resident memory settles
/// at roughly two to three times this figure (benches/chain.rs prints it), so it is kept
/// small; the OS page cache still holds the store's file.
pub const CACHE_CAPACITY_BYTES: u64 = 16 * 1024 * 1024;

/// How often sled writes its buffers to disk when nothing asks it to.
pub const FLUSH_EVERY_MS: u64 = 200;

const META_SCHEMA: &[u8] = b"schema";
const META_NETWORK: &[u8] = b"network";
const META_TIP: &[u8] = b"tip";
const META_TX_INDEX: &[u8] = b"txindex";
const META_TX_INDEX_TIP: &[u8] = b"txindex_tip";
const META_STATE_TIP: &[u8] = b"state_tip";

/// The most accounts one block can touch: a coinbase recipient and two per transfer.
pub const MAX_UNDO_ACCOUNTS: usize = 2 * MAX_BLOCK_TXS + 1;

/// Where a block stands in validation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Encode, Decode)]
pub enum BlockStatus {
    /// Header and stateless checks passed and the body is stored; never connected yet.
    Stored,
    /// As `Stored`, and every signature was verified too (before it was stored), so
    /// connecting it needs only the stateful checks.
    Checked,
    /// Fully validated: it has been connected to the active chain at least once.
    Valid,
    /// Breaks a consensus rule, or was marked invalid by `invalidateblock`.
    Invalid,
    /// Descends from an `Invalid` block.
    InvalidAncestor,
}

impl BlockStatus {
    pub fn is_failed(self) -> bool {
        matches!(self, BlockStatus::Invalid | BlockStatus::InvalidAncestor)
    }
}

/// One block index entry: everything known about a block except its body.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct IndexRecord {
    pub header: Header,
    pub height: u64,
    /// Cumulative work up to and including this block, big-endian.
    pub chainwork: [u8; 32],
    pub status: BlockStatus,
    /// Order of first acceptance; breaks ties between equal-work chains (earlier wins).
    pub seq: u64,
}

/// Where a confirmed transaction is: its block and position.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Encode, Decode)]
pub struct TxLocation {
    pub block: Hash256,
    pub index: u32,
}

/// What disconnecting a block restores: each touched account's prior state.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct UndoRecord {
    pub accounts: BoundedVec<(Address, Account), MAX_UNDO_ACCOUNTS>,
}

/// What connecting a block made of each account it touched: replayed onto the `accounts`
/// tree when a store opens with changes not yet flushed there.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct RedoRecord {
    pub accounts: BoundedVec<(Address, Account), MAX_UNDO_ACCOUNTS>,
}

/// The account state at the tip, as far as it differs from the `accounts` tree.
///
/// The tree holds the state at `meta.state_tip`, an ancestor of the tip on the main chain (or
/// the tip itself); each main-chain block above it has a redo record, written in the block's
/// connect commit. So every connect commit still holds the block's whole effect (what it
/// changed, what it replaced, the new tip) and a crash loses nothing, while the tree itself
/// is rewritten only every few hundred blocks, once per account however often it changed
/// (bitcoind's coins cache does the same with its flush and replay). `accounts` holds the
/// after-states since `state_tip` (the default account meaning "absent"); `blocks` the
/// connected blocks above it, in order.
#[derive(Default)]
struct PendingState {
    accounts: HashMap<Address, Account>,
    blocks: Vec<Hash256>,
}

/// The open store. Cloning is cheap (sled trees are shared handles; the pending state is
/// shared too).
#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    index: Tree,
    bodies: Tree,
    main: Tree,
    accounts: Tree,
    undo: Tree,
    redo: Tree,
    txindex: Tree,
    meta: Tree,
    /// Written only by the writer, which holds it across its own commits (taken before
    /// sled's lock, never after); readers hold it only to copy entries out.
    pending: Arc<RwLock<PendingState>>,
    /// When the pending state is flushed: more accounts or blocks than these.
    max_pending_accounts: usize,
    max_pending_blocks: usize,
    /// Whether the transaction index is maintained (fixed when the store is created).
    tx_index: bool,
}

fn decode<T: Decode<()>>(tree: &str, key: &[u8], bytes: &[u8]) -> Result<T, ChainError> {
    encoding::decode_exact(bytes).map_err(|e| {
        ChainError::corrupt(format!(
            "undecodable record in '{tree}' at key {}: {e}",
            hex::encode(key)
        ))
    })
}

fn hash_from(tree: &str, bytes: &[u8]) -> Result<Hash256, ChainError> {
    <[u8; 32]>::try_from(bytes).map(Hash256).map_err(|_| {
        ChainError::corrupt(format!(
            "'{tree}' holds a {}-byte value or key where a 32-byte hash belongs",
            bytes.len()
        ))
    })
}

fn map_open_error(e: sled::Error) -> ChainError {
    match e {
        sled::Error::Corruption { at, .. } => {
            ChainError::corrupt(format!("sled reports corruption at {at:?}"))
        }
        other => ChainError::Store(other),
    }
}

/// The writes of one atomic commit, one batch per tree.
#[derive(Default)]
struct WriteSet {
    index: Batch,
    bodies: Batch,
    main: Batch,
    accounts: Batch,
    undo: Batch,
    redo: Batch,
    txindex: Batch,
    meta: Batch,
}

impl WriteSet {
    fn put_accounts(&mut self, changes: impl IntoIterator<Item = (Address, Account)>) {
        for (address, account) in changes {
            if account == Account::default() {
                self.accounts.remove(&address.0);
            } else {
                self.accounts.insert(&address.0, encoding::encode(&account));
            }
        }
    }
}

/// Each transaction of `block` (whose hash is `hash`) with its place: the index's entries.
fn tx_locations(hash: Hash256, block: &Block) -> impl Iterator<Item = (Hash256, TxLocation)> + '_ {
    block
        .transactions
        .iter()
        .enumerate()
        .map(move |(index, tx)| {
            let location = TxLocation {
                block: hash,
                index: index as u32,
            };
            (tx.txid(), location)
        })
}

impl Store {
    /// Opens (creating if missing) the store in `path` for `params`' network, with the
    /// transaction index.
    pub fn open(path: &Path, params: &NetworkParams) -> Result<Store, ChainError> {
        Store::open_with(path, params, true)
    }

    /// `open`, choosing whether the store keeps a transaction index. The choice is recorded
    /// when the store is created; opening with the other choice is refused.
    pub fn open_with(
        path: &Path,
        params: &NetworkParams,
        tx_index: bool,
    ) -> Result<Store, ChainError> {
        let config = sled::Config::new()
            .path(path)
            .cache_capacity(CACHE_CAPACITY_BYTES)
            .flush_every_ms(Some(FLUSH_EVERY_MS));
        let db = crate::sled_open::open_waiting_for_lock(&config).map_err(map_open_error)?;
        Store::from_db(db, params, tx_index)
    }

    /// A store in a temporary directory that sled removes when it is dropped.
    pub fn open_temporary(params: &NetworkParams) -> Result<Store, ChainError> {
        Store::open_temporary_with(params, true)
    }

    pub fn open_temporary_with(
        params: &NetworkParams,
        tx_index: bool,
    ) -> Result<Store, ChainError> {
        let db = sled::Config::new()
            .temporary(true)
            .cache_capacity(CACHE_CAPACITY_BYTES)
            .open()
            .map_err(map_open_error)?;
        Store::from_db(db, params, tx_index)
    }

    fn from_db(db: sled::Db, params: &NetworkParams, tx_index: bool) -> Result<Store, ChainError> {
        let store = Store {
            index: db.open_tree("index")?,
            bodies: db.open_tree("bodies")?,
            main: db.open_tree("main")?,
            accounts: db.open_tree("accounts")?,
            undo: db.open_tree("undo")?,
            redo: db.open_tree("redo")?,
            txindex: db.open_tree("txindex")?,
            meta: db.open_tree("meta")?,
            pending: Arc::new(RwLock::new(PendingState::default())),
            max_pending_accounts: MAX_PENDING_ACCOUNTS,
            max_pending_blocks: MAX_PENDING_BLOCKS,
            db,
            tx_index,
        };
        match store.meta.get(META_SCHEMA)? {
            None => store.initialise(params)?,
            Some(bytes) => {
                let found = <[u8; 4]>::try_from(bytes.as_ref())
                    .map(u32::from_le_bytes)
                    .map_err(|_| ChainError::corrupt("the schema version record is malformed"))?;
                if found != SCHEMA_VERSION && found != 1 {
                    return Err(ChainError::UnknownSchema {
                        found,
                        supported: SCHEMA_VERSION,
                    });
                }
                let network = store
                    .meta
                    .get(META_NETWORK)?
                    .ok_or_else(|| ChainError::corrupt("the network record is missing"))?;
                if network.as_ref() != params.magic.0 {
                    return Err(ChainError::WrongNetwork {
                        found: hex::encode(network),
                        expected: hex::encode(params.magic.0),
                    });
                }
                let stored = store
                    .meta
                    .get(META_TX_INDEX)?
                    .is_none_or(|v| v.as_ref() != [0]);
                if stored != tx_index {
                    return Err(ChainError::TxIndexMismatch { stored });
                }
                let tip = store.tip()?;
                if found == 1 {
                    // Version 1 wrote the index and the accounts inside each connect, so
                    // both are at the tip.
                    let mut w = WriteSet::default();
                    if tx_index {
                        w.meta.insert(META_TX_INDEX_TIP, &tip.0);
                    }
                    w.meta.insert(META_STATE_TIP, &tip.0);
                    w.meta
                        .insert(META_SCHEMA, &SCHEMA_VERSION.to_le_bytes()[..]);
                    store.commit(w)?;
                }
                store.load_pending()?;
            }
        }
        Ok(store)
    }

    /// Writes the schema, the network and the connected genesis block to an empty store.
    fn initialise(&self, params: &NetworkParams) -> Result<(), ChainError> {
        let trees = [
            &self.index,
            &self.bodies,
            &self.main,
            &self.accounts,
            &self.undo,
            &self.redo,
            &self.txindex,
            &self.meta,
        ];
        if trees.iter().any(|t| !t.is_empty()) {
            return Err(ChainError::corrupt(
                "the store holds data but no schema version",
            ));
        }
        let genesis = params.genesis_block();
        let hash = genesis.hash();
        let record = IndexRecord {
            header: genesis.header,
            height: 0,
            chainwork: super::work::work_to_bytes(
                super::work::block_work(genesis.header.bits)
                    .map_err(|e| ChainError::corrupt(format!("genesis target: {e}")))?,
            ),
            status: BlockStatus::Valid,
            seq: 0,
        };
        // The genesis coinbase pays nothing, so genesis changes no account: the (empty)
        // accounts tree holds the state at genesis.
        let delta = StateDelta::default();
        let mut w = self.connect_writes(&hash, &record, &delta);
        w.redo = Batch::default();
        w.meta.insert(META_STATE_TIP, &hash.0);
        w.bodies.insert(&hash.0, encoding::encode(&genesis));
        w.meta
            .insert(META_SCHEMA, &SCHEMA_VERSION.to_le_bytes()[..]);
        w.meta.insert(META_NETWORK, &params.magic.0[..]);
        w.meta.insert(META_TX_INDEX, &[self.tx_index as u8][..]);
        if self.tx_index {
            for (txid, location) in tx_locations(hash, &genesis) {
                w.txindex.insert(&txid.0, encoding::encode(&location));
            }
            w.meta.insert(META_TX_INDEX_TIP, &hash.0);
        }
        self.commit(w)
    }

    fn commit(&self, w: WriteSet) -> Result<(), ChainError> {
        let trees: [Tree; 8] = [
            self.index.clone(),
            self.bodies.clone(),
            self.main.clone(),
            self.accounts.clone(),
            self.undo.clone(),
            self.redo.clone(),
            self.txindex.clone(),
            self.meta.clone(),
        ];
        let batches = [
            &w.index,
            &w.bodies,
            &w.main,
            &w.accounts,
            &w.undo,
            &w.redo,
            &w.txindex,
            &w.meta,
        ];
        let result: Result<(), TransactionError<()>> = trees[..].transaction(|views| {
            for (view, batch) in views.iter().zip(batches.iter()) {
                view.apply_batch(batch)
                    .map_err(ConflictableTransactionError::from)?;
            }
            Ok(())
        });
        match result {
            Ok(()) => Ok(()),
            Err(TransactionError::Storage(e)) => Err(ChainError::Store(e)),
            Err(TransactionError::Abort(())) => Err(ChainError::corrupt("a store write aborted")),
        }
    }

    /// Stores a newly accepted block: body and index record together.
    pub fn store_block(
        &self,
        hash: &Hash256,
        block: &Block,
        record: &IndexRecord,
    ) -> Result<(), ChainError> {
        let mut w = WriteSet::default();
        w.bodies.insert(&hash.0, encoding::encode(block));
        w.index.insert(&hash.0, encoding::encode(record));
        self.commit(w)
    }

    /// Rewrites index records (status changes), atomically together.
    pub fn put_index_records<'a>(
        &self,
        records: impl IntoIterator<Item = (&'a Hash256, &'a IndexRecord)>,
    ) -> Result<(), ChainError> {
        let mut w = WriteSet::default();
        for (hash, record) in records {
            w.index.insert(&hash.0, encoding::encode(record));
        }
        self.commit(w)
    }

    fn connect_writes(&self, hash: &Hash256, record: &IndexRecord, delta: &StateDelta) -> WriteSet {
        let mut w = WriteSet::default();
        w.index.insert(&hash.0, encoding::encode(record));
        w.main.insert(&record.height.to_be_bytes(), &hash.0);
        let undo = UndoRecord {
            accounts: BoundedVec::new(delta.undo()).unwrap_or_default(),
        };
        w.undo.insert(&hash.0, encoding::encode(&undo));
        let redo = RedoRecord {
            accounts: BoundedVec::new(
                delta
                    .accounts
                    .iter()
                    .map(|(address, _, after)| (*address, *after))
                    .collect(),
            )
            .unwrap_or_default(),
        };
        w.redo.insert(&hash.0, encoding::encode(&redo));
        w.meta.insert(META_TIP, &hash.0);
        w
    }

    fn pending_read(&self) -> std::sync::RwLockReadGuard<'_, PendingState> {
        self.pending.read().unwrap_or_else(|e| e.into_inner())
    }

    fn pending_write(&self) -> std::sync::RwLockWriteGuard<'_, PendingState> {
        self.pending.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Rebuilds the pending state from the redo records of the main-chain blocks above
    /// `meta.state_tip` (after a crash, or a stop that did not flush).
    fn load_pending(&self) -> Result<(), ChainError> {
        let state_tip = self.state_tip()?;
        let record = self.index_record(&state_tip)?.ok_or_else(|| {
            ChainError::corrupt(format!(
                "the account state's block {state_tip} is unindexed"
            ))
        })?;
        if self.main_hash(record.height)? != Some(state_tip) {
            return Err(ChainError::corrupt(format!(
                "the account state's block {state_tip} is not on the main chain"
            )));
        }
        let tip_height = self.main_last()?.map_or(0, |(height, _)| height);
        let mut pending = PendingState::default();
        for height in record.height + 1..=tip_height {
            let hash = self.main_hash(height)?.ok_or_else(|| {
                ChainError::corrupt(format!("the main chain has no block at height {height}"))
            })?;
            let redo: RedoRecord = match self.redo.get(hash.0)? {
                Some(bytes) => decode("redo", &hash.0, &bytes)?,
                None => {
                    return Err(ChainError::corrupt(format!(
                        "no redo data for main-chain block {hash} above the account state"
                    )))
                }
            };
            pending.accounts.extend(redo.accounts.iter().copied());
            pending.blocks.push(hash);
        }
        *self.pending_write() = pending;
        Ok(())
    }

    /// Sets when the pending state is flushed (defaults: `MAX_PENDING_ACCOUNTS`,
    /// `MAX_PENDING_BLOCKS`); each at least 1. A store reopened with a lower block limit
    /// than it was left with flushes at its next connect.
    pub fn with_pending_limits(mut self, accounts: usize, blocks: usize) -> Store {
        self.max_pending_accounts = accounts.max(1);
        self.max_pending_blocks = blocks.max(1);
        self
    }

    /// The block whose account state the `accounts` tree holds.
    pub fn state_tip(&self) -> Result<Hash256, ChainError> {
        self.meta_hash(META_STATE_TIP, "the account state marker")
    }

    /// A block hash kept in `meta` under `key`; missing or malformed is corruption.
    fn meta_hash(&self, key: &[u8], what: &str) -> Result<Hash256, ChainError> {
        let bytes = self
            .meta
            .get(key)?
            .ok_or_else(|| ChainError::corrupt(format!("{what} is missing")))?;
        hash_from("meta", &bytes)
    }

    /// Connected blocks whose account changes are not yet in the `accounts` tree.
    pub fn pending_blocks(&self) -> usize {
        self.pending_read().blocks.len()
    }

    /// Writes the pending account states to the `accounts` tree and moves `meta.state_tip`
    /// to the tip, dropping the redo records that are no longer needed.
    ///
    /// The accounts go in chunks of `FLUSH_CHUNK`, each its own sled batch, so that no single
    /// write holds sled's global lock (and every reader) for long; the marker and the redo
    /// records change last, in one commit. A crash between chunks is harmless: every account
    /// written is one a pending block touched, and replaying the redo records on open sets
    /// each of those to its state at the tip again, whatever the tree held.
    pub fn flush_state(&self) -> Result<(), ChainError> {
        let (mut accounts, blocks) = {
            let pending = self.pending_read();
            if pending.blocks.is_empty() {
                return Ok(());
            }
            let accounts: Vec<(Address, Account)> =
                pending.accounts.iter().map(|(a, s)| (*a, *s)).collect();
            (accounts, pending.blocks.clone())
        };
        // In key order: neighbouring writes land in the same sled pages.
        accounts.sort_unstable_by_key(|(address, _)| *address);
        for chunk in accounts.chunks(FLUSH_CHUNK) {
            let mut w = WriteSet::default();
            w.put_accounts(chunk.iter().copied());
            self.accounts.apply_batch(w.accounts)?;
        }
        let mut w = WriteSet::default();
        for hash in &blocks {
            w.redo.remove(&hash.0);
        }
        let last = blocks.last().expect("checked above");
        w.meta.insert(META_STATE_TIP, &last.0);
        // As in `connect`: the lock is taken before sled's, and held across the commit.
        let mut pending = self.pending_write();
        self.commit(w)?;
        *pending = PendingState::default();
        Ok(())
    }

    /// Connects `block` (already stored) on top of the current tip: its index record (now
    /// `Valid`), main-chain entry, account changes, undo data and the new tip, in one atomic
    /// commit. (The transaction index follows on its own: `index_next_block`.)
    pub fn connect(
        &self,
        hash: &Hash256,
        record: &IndexRecord,
        delta: &StateDelta,
    ) -> Result<(), ChainError> {
        // Flushed before this block's commit, not after it, so that a failing flush leaves
        // the block unconnected rather than connected behind the caller's back.
        let full = {
            let pending = self.pending_read();
            pending.accounts.len() + delta.accounts.len() > self.max_pending_accounts
                || pending.blocks.len() >= self.max_pending_blocks
        };
        if full {
            self.flush_state()?;
        }
        // Readers wait for the pending state across the commit, so one that sees the new
        // tip in the store also sees its accounts. (sled's commit excludes readers of the
        // store for as long anyway.) Only the writer takes this lock for writing, and always
        // before sled's, so the two cannot deadlock.
        let mut pending = self.pending_write();
        self.commit(self.connect_writes(hash, record, delta))?;
        pending
            .accounts
            .extend(delta.accounts.iter().map(|(a, _, after)| (*a, *after)));
        pending.blocks.push(*hash);
        Ok(())
    }

    /// Disconnects the tip block `block` at `height`: restores the accounts from its undo
    /// data, removes its main-chain and undo entries and makes its parent the tip, in one
    /// atomic commit.
    pub fn disconnect(&self, hash: &Hash256, height: u64, block: &Block) -> Result<(), ChainError> {
        let undo = self.undo_record(hash)?.ok_or_else(|| {
            ChainError::corrupt(format!("no undo data for main-chain block {hash}"))
        })?;
        let mut w = WriteSet::default();
        w.main.remove(&height.to_be_bytes());
        w.undo.remove(&hash.0);
        w.meta.insert(META_TIP, &block.header.prev_hash.0);
        let pending_tip = self.pending_read().blocks.last().copied();
        match pending_tip {
            // The block's changes are pending: forget its redo record and restore the
            // pending states it replaced.
            Some(last) if last == *hash => {
                w.redo.remove(&hash.0);
                // As in `connect`: the pending state changes under the lock held across the
                // commit.
                let mut pending = self.pending_write();
                self.commit(w)?;
                pending.blocks.pop();
                if pending.blocks.is_empty() {
                    // Back at the state marker: the tree alone is the state again, and
                    // states left here would shadow it after the next disconnect.
                    pending.accounts.clear();
                } else {
                    pending.accounts.extend(undo.accounts.iter().copied());
                }
            }
            Some(last) => {
                return Err(ChainError::corrupt(format!(
                    "disconnecting {hash}, but the last pending block is {last}"
                )))
            }
            // The accounts tree is at this block: restore it there, and the state marker
            // moves down with the tip.
            None => {
                let state_tip = self.state_tip()?;
                if state_tip != *hash {
                    return Err(ChainError::corrupt(format!(
                        "disconnecting {hash}, but the account state is at {state_tip}"
                    )));
                }
                w.put_accounts(undo.accounts.iter().copied());
                w.meta.insert(META_STATE_TIP, &block.header.prev_hash.0);
                self.commit(w)?;
            }
        }
        Ok(())
    }

    /// Writes the pending account states to their tree, then sled's buffers to disk, and
    /// waits for it.
    pub fn flush(&self) -> Result<(), ChainError> {
        self.flush_state()?;
        self.db.flush()?;
        Ok(())
    }

    // ---- reads ----

    pub fn tip(&self) -> Result<Hash256, ChainError> {
        self.meta_hash(META_TIP, "the tip record")
    }

    pub fn index_record(&self, hash: &Hash256) -> Result<Option<IndexRecord>, ChainError> {
        match self.index.get(hash.0)? {
            Some(bytes) => Ok(Some(decode("index", &hash.0, &bytes)?)),
            None => Ok(None),
        }
    }

    /// Every index record, in key order.
    pub fn index_records(
        &self,
    ) -> impl Iterator<Item = Result<(Hash256, IndexRecord), ChainError>> + '_ {
        self.index.iter().map(|item| {
            let (key, value) = item?;
            Ok((hash_from("index", &key)?, decode("index", &key, &value)?))
        })
    }

    pub fn index_len(&self) -> usize {
        self.index.len()
    }

    pub fn block(&self, hash: &Hash256) -> Result<Option<Block>, ChainError> {
        match self.bodies.get(hash.0)? {
            Some(bytes) => Ok(Some(decode("bodies", &hash.0, &bytes)?)),
            None => Ok(None),
        }
    }

    /// How many transactions a stored block holds, read from its encoding's count field (right
    /// after the fixed-size header) without decoding the transactions.
    pub fn block_tx_count(&self, hash: &Hash256) -> Result<Option<u64>, ChainError> {
        let Some(bytes) = self.bodies.get(hash.0)? else {
            return Ok(None);
        };
        let count = bytes
            .get(HEADER_SIZE..HEADER_SIZE + 8)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map(u64::from_le_bytes)
            .filter(|&n| n >= 1 && n <= MAX_BLOCK_TXS as u64)
            .ok_or_else(|| {
                ChainError::corrupt(format!("the body of {hash} has no valid transaction count"))
            })?;
        Ok(Some(count))
    }

    /// The encoded block exactly as stored.
    pub fn block_bytes(&self, hash: &Hash256) -> Result<Option<Vec<u8>>, ChainError> {
        Ok(self.bodies.get(hash.0)?.map(|b| b.to_vec()))
    }

    /// The main-chain block hash at `height`.
    pub fn main_hash(&self, height: u64) -> Result<Option<Hash256>, ChainError> {
        match self.main.get(height.to_be_bytes())? {
            Some(bytes) => Ok(Some(hash_from("main", &bytes)?)),
            None => Ok(None),
        }
    }

    /// The highest main-chain entry.
    pub fn main_last(&self) -> Result<Option<(u64, Hash256)>, ChainError> {
        match self.main.last()? {
            Some((key, value)) => {
                let height = <[u8; 8]>::try_from(key.as_ref())
                    .map(u64::from_be_bytes)
                    .map_err(|_| ChainError::corrupt("a main-chain key is not 8 bytes"))?;
                Ok(Some((height, hash_from("main", &value)?)))
            }
            None => Ok(None),
        }
    }

    /// The account at the tip.
    pub fn account(&self, address: &Address) -> Result<Account, ChainError> {
        if let Some(account) = self.pending_read().accounts.get(address) {
            return Ok(*account);
        }
        self.tree_account(address)
    }

    fn tree_account(&self, address: &Address) -> Result<Account, ChainError> {
        match self.accounts.get(address.0)? {
            Some(bytes) => decode("accounts", &address.0, &bytes),
            None => Ok(Account::default()),
        }
    }

    /// The accounts at the tip, read together (one look at the pending state).
    pub fn read_accounts(
        &self,
        addresses: impl IntoIterator<Item = Address>,
    ) -> Result<HashMap<Address, Account>, ChainError> {
        let mut found = HashMap::new();
        let mut missing = vec![];
        {
            let pending = self.pending_read();
            for address in addresses {
                match pending.accounts.get(&address) {
                    Some(account) => {
                        found.insert(address, *account);
                    }
                    None => missing.push(address),
                }
            }
        }
        for address in missing {
            found.insert(address, self.tree_account(&address)?);
        }
        Ok(found)
    }

    /// Every account at the tip (all non-default), in address order.
    pub fn accounts(&self) -> Result<BTreeMap<Address, Account>, ChainError> {
        let mut all = BTreeMap::new();
        for item in self.accounts.iter() {
            let (key, value) = item?;
            let address = <[u8; 20]>::try_from(key.as_ref())
                .map(Address)
                .map_err(|_| ChainError::corrupt("an account key is not 20 bytes"))?;
            all.insert(address, decode("accounts", &key, &value)?);
        }
        for (address, account) in &self.pending_read().accounts {
            if *account == Account::default() {
                all.remove(address);
            } else {
                all.insert(*address, *account);
            }
        }
        Ok(all)
    }

    pub fn undo_record(&self, hash: &Hash256) -> Result<Option<UndoRecord>, ChainError> {
        match self.undo.get(hash.0)? {
            Some(bytes) => Ok(Some(decode("undo", &hash.0, &bytes)?)),
            None => Ok(None),
        }
    }

    /// Whether this store keeps a transaction index.
    pub fn has_tx_index(&self) -> bool {
        self.tx_index
    }

    /// The block the transaction index has reached, if the store keeps one.
    pub fn tx_index_tip(&self) -> Result<Option<Hash256>, ChainError> {
        if !self.tx_index {
            return Ok(None);
        }
        Ok(Some(self.meta_hash(
            META_TX_INDEX_TIP,
            "the transaction index marker",
        )?))
    }

    /// The height of the highest block the transaction index has reached that is still on
    /// the main chain (its fork point if the marker was left on a side branch).
    pub fn tx_index_height(&self) -> Result<Option<u64>, ChainError> {
        let Some(mut cursor) = self.tx_index_tip()? else {
            return Ok(None);
        };
        loop {
            let record = self.marker_record(&cursor)?;
            if self.main_hash(record.height)? == Some(cursor) {
                return Ok(Some(record.height));
            }
            cursor = record.header.prev_hash;
        }
    }

    /// Moves the transaction index one block towards the tip: off a block that is no longer
    /// on the main chain (removing its entries), or onto the next main-chain block (adding
    /// them). Entries are written before the marker moves, so a crash in between only
    /// repeats the step. Returns false when the index is at the tip (or not kept).
    ///
    /// Entries go in one by one, not as one batch: a batch takes sled's global write lock for
    /// its whole length, and readers would wait for it.
    pub fn index_next_block(&self) -> Result<bool, ChainError> {
        let Some(marker) = self.tx_index_tip()? else {
            return Ok(false);
        };
        let record = self.marker_record(&marker)?;
        if self.main_hash(record.height)? != Some(marker) {
            let block = self.block(&marker)?.ok_or_else(|| {
                ChainError::corrupt(format!("indexed block {marker} has no body"))
            })?;
            for tx in block.transactions.iter() {
                let txid = tx.txid();
                if self
                    .txindex_entry(&txid)?
                    .is_some_and(|l| l.block == marker)
                {
                    self.txindex.remove(txid.0)?;
                }
            }
            self.meta
                .insert(META_TX_INDEX_TIP, &block.header.prev_hash.0)?;
            return Ok(true);
        }
        let Some(next) = self.main_hash(record.height + 1)? else {
            return Ok(false);
        };
        let block = self
            .block(&next)?
            .ok_or_else(|| ChainError::corrupt(format!("main-chain block {next} has no body")))?;
        if block.header.prev_hash != marker {
            // The writer reorganised between the two reads: look again from the marker,
            // which is then no longer on the main chain.
            return Ok(true);
        }
        for (txid, location) in tx_locations(next, &block) {
            self.txindex.insert(txid.0, encoding::encode(&location))?;
        }
        self.meta.insert(META_TX_INDEX_TIP, &next.0)?;
        Ok(true)
    }

    /// The index record of `marker`, a block the transaction index has reached (or passed
    /// through on the way back from a side branch).
    fn marker_record(&self, marker: &Hash256) -> Result<IndexRecord, ChainError> {
        self.index_record(marker)?.ok_or_else(|| {
            ChainError::corrupt(format!(
                "the transaction index marker {marker} is unindexed"
            ))
        })
    }

    fn txindex_entry(&self, txid: &Hash256) -> Result<Option<TxLocation>, ChainError> {
        match self.txindex.get(txid.0)? {
            Some(bytes) => Ok(Some(decode("txindex", &txid.0, &bytes)?)),
            None => Ok(None),
        }
    }

    /// Where a transaction confirmed on the main chain is, with its block's height: from the
    /// index when its entry points at a main-chain block, otherwise by scanning the main-chain
    /// blocks above the index's marker (at most `TX_INDEX_SCAN_LIMIT` of them; beyond that
    /// the answer is `TxIndexSyncing`). `None` without a transaction index.
    pub fn tx_location(&self, txid: &Hash256) -> Result<Option<(TxLocation, u64)>, ChainError> {
        if !self.tx_index {
            return Ok(None);
        }
        // The marker first, then the entry: an entry the indexer writes in between is then
        // either read, or in a block above the marker read here, which the scan covers.
        let indexed = self.tx_index_height()?.unwrap_or(0);
        let tip = self.main_last()?.map_or(0, |(height, _)| height);
        if let Some(location) = self.txindex_entry(txid)? {
            if let Some(record) = self.index_record(&location.block)? {
                if self.main_hash(record.height)? == Some(location.block) {
                    return Ok(Some((location, record.height)));
                }
            }
        }
        if tip.saturating_sub(indexed) > TX_INDEX_SCAN_LIMIT {
            return Err(ChainError::TxIndexSyncing { indexed, tip });
        }
        for height in indexed + 1..=tip {
            let Some(hash) = self.main_hash(height)? else {
                break;
            };
            let Some(block) = self.block(&hash)? else {
                return Err(ChainError::corrupt(format!(
                    "main-chain block {hash} has no body"
                )));
            };
            let found = tx_locations(hash, &block).find(|(t, _)| t == txid);
            if let Some((_, location)) = found {
                return Ok(Some((location, height)));
            }
        }
        Ok(None)
    }

    /// Bytes the store occupies on disk.
    pub fn size_on_disk(&self) -> u64 {
        self.db.size_on_disk().unwrap_or(0)
    }

    /// Test support: overwrites a raw record, to simulate corruption.
    #[doc(hidden)]
    pub fn corrupt_for_test(&self, tree: &str, key: &[u8], value: &[u8]) -> Result<(), ChainError> {
        let t = match tree {
            "index" => &self.index,
            "bodies" => &self.bodies,
            "main" => &self.main,
            "accounts" => &self.accounts,
            "undo" => &self.undo,
            "redo" => &self.redo,
            "txindex" => &self.txindex,
            _ => &self.meta,
        };
        t.insert(key, value)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::testkit::{Keys, TestChainBuilder};
    use crate::chain::validation::apply_block;
    use crate::params::{MAIN, REGTEST};

    fn record_for(block: &Block, height: u64) -> IndexRecord {
        IndexRecord {
            header: block.header,
            height,
            chainwork: [0; 32],
            status: BlockStatus::Valid,
            seq: height,
        }
    }

    /// Stores `block` at `height` and connects it onto the tip; `state` is the state at its
    /// parent (the builder's, before it built the block).
    fn store_and_connect(
        store: &Store,
        block: &Block,
        height: u64,
        state: &HashMap<Address, Account>,
    ) -> IndexRecord {
        let record = record_for(block, height);
        store.store_block(&block.hash(), block, &record).unwrap();
        let delta = apply_block(block, state).unwrap();
        store.connect(&block.hash(), &record, &delta).unwrap();
        record
    }

    #[test]
    fn a_fresh_store_holds_genesis_as_its_tip() {
        let store = Store::open_temporary(&REGTEST).unwrap();
        let genesis = REGTEST.genesis_hash();
        assert_eq!(store.tip().unwrap(), genesis);
        assert_eq!(store.main_hash(0).unwrap(), Some(genesis));
        assert_eq!(store.main_last().unwrap(), Some((0, genesis)));
        let record = store.index_record(&genesis).unwrap().unwrap();
        assert_eq!(record.status, BlockStatus::Valid);
        assert_eq!(
            store.block(&genesis).unwrap().unwrap(),
            REGTEST.genesis_block()
        );
        let cb = REGTEST.genesis_block().transactions[0].txid();
        assert_eq!(store.tx_location(&cb).unwrap().unwrap().0.block, genesis);
        assert_eq!(store.tx_index_tip().unwrap(), Some(genesis));
        assert!(store.accounts().unwrap().is_empty());
    }

    #[test]
    fn block_tx_count_reads_the_count_without_decoding() {
        let store = Store::open_temporary(&REGTEST).unwrap();
        let keys = Keys::new(2);
        let mut b = TestChainBuilder::new(&REGTEST);
        let first = b.build(keys.address(0), vec![]);
        store_and_connect(&store, &first, 1, &HashMap::new());
        let state = b.state().clone();
        let transfers = (0..3)
            .map(|nonce| keys.transfer(&REGTEST, 0, keys.address(1), 500, 1, nonce))
            .collect();
        let second = b.build(keys.address(1), transfers);
        store_and_connect(&store, &second, 2, &state);
        assert_eq!(
            store.block_tx_count(&REGTEST.genesis_hash()).unwrap(),
            Some(1)
        );
        assert_eq!(store.block_tx_count(&first.hash()).unwrap(), Some(1));
        assert_eq!(store.block_tx_count(&second.hash()).unwrap(), Some(4));
        assert_eq!(store.block_tx_count(&Hash256([7; 32])).unwrap(), None);
    }

    #[test]
    fn connect_then_disconnect_restores_everything() {
        let store = Store::open_temporary(&REGTEST).unwrap();
        let keys = Keys::new(2);
        let mut b = TestChainBuilder::new(&REGTEST);
        let block = b.build(keys.address(0), vec![]);
        let hash = block.hash();
        store_and_connect(&store, &block, 1, &HashMap::new());
        assert_eq!(store.tip().unwrap(), hash);
        assert_eq!(
            store.account(&keys.address(0)).unwrap().balance,
            REGTEST.subsidy(1)
        );
        let txid = block.transactions[0].txid();
        // Found by the scan above the index's marker, then by the index itself.
        assert_eq!(
            store.tx_location(&txid).unwrap().unwrap(),
            (
                TxLocation {
                    block: hash,
                    index: 0
                },
                1
            )
        );
        assert!(store.index_next_block().unwrap());
        assert!(!store.index_next_block().unwrap());
        assert_eq!(store.tx_index_tip().unwrap(), Some(hash));
        assert_eq!(store.tx_location(&txid).unwrap().unwrap().0.block, hash);

        store.disconnect(&hash, 1, &block).unwrap();
        assert_eq!(store.tip().unwrap(), REGTEST.genesis_hash());
        assert_eq!(store.account(&keys.address(0)).unwrap(), Account::default());
        assert!(store.accounts().unwrap().is_empty());
        // The stale entry is not believed; the index then steps off the block.
        assert!(store.tx_location(&txid).unwrap().is_none());
        assert_eq!(store.tx_index_height().unwrap(), Some(0));
        assert!(store.index_next_block().unwrap());
        assert_eq!(store.tx_index_tip().unwrap(), Some(REGTEST.genesis_hash()));
        assert!(store.txindex_entry(&txid).unwrap().is_none());
        assert!(store.tx_location(&txid).unwrap().is_none());
        assert!(store.main_hash(1).unwrap().is_none());
        assert!(store.undo_record(&hash).unwrap().is_none());
        // The body and index record stay: the block is still known, just not active.
        assert!(store.block(&hash).unwrap().is_some());
    }

    #[test]
    fn a_lookup_far_above_the_index_marker_says_the_index_is_catching_up() {
        let store = Store::open_temporary(&REGTEST).unwrap();
        let keys = Keys::new(1);
        let mut b = TestChainBuilder::new(&REGTEST);
        let mut blocks = vec![];
        for height in 1..=TX_INDEX_SCAN_LIMIT + 1 {
            let block = b.build(keys.address(0), vec![]);
            store_and_connect(&store, &block, height, &HashMap::new());
            blocks.push(block);
        }
        let last = blocks.last().unwrap().transactions[0].txid();
        match store.tx_location(&last) {
            Err(e @ ChainError::TxIndexSyncing { indexed: 0, .. }) => {
                assert!(e.to_string().contains("catching up"), "{e}");
            }
            other => panic!("expected TxIndexSyncing, got {other:?}"),
        }
        assert!(store.index_next_block().unwrap());
        let (location, height) = store.tx_location(&last).unwrap().unwrap();
        assert_eq!(
            (location.block, height),
            (blocks.last().unwrap().hash(), TX_INDEX_SCAN_LIMIT + 1)
        );
    }

    #[test]
    fn pending_states_are_flushed_within_their_bound_and_reads_agree_throughout() {
        let store = Store::open_temporary(&REGTEST).unwrap();
        let keys = Keys::new(1);
        let mut b = TestChainBuilder::new(&REGTEST);
        let mut flushed_at = vec![];
        let mut at_500 = Account::default();
        for height in 1..=(MAX_PENDING_BLOCKS as u64 + 10) {
            let before = b.state().clone();
            let block = b.build(keys.address(0), vec![]);
            let pending_before = store.pending_blocks();
            store_and_connect(&store, &block, height, &before);
            assert!(store.pending_blocks() <= MAX_PENDING_BLOCKS);
            if store.pending_blocks() < pending_before {
                flushed_at.push(height);
            }
            assert_eq!(
                store.account(&keys.address(0)).unwrap(),
                b.account(&keys.address(0))
            );
            if height == MAX_PENDING_BLOCKS as u64 {
                at_500 = b.account(&keys.address(0));
            }
        }
        // Blocks 1..=500 pending, then the 501st flushes them before it connects.
        assert_eq!(flushed_at, vec![MAX_PENDING_BLOCKS as u64 + 1]);
        let flushed_tip = store.main_hash(MAX_PENDING_BLOCKS as u64).unwrap().unwrap();
        assert_eq!(store.state_tip().unwrap(), flushed_tip);
        assert_eq!(store.pending_blocks(), 10);
        // The flushed blocks' redo records are gone; the pending ones' are there.
        assert!(store.redo.get(flushed_tip.0).unwrap().is_none());
        let tip = store.tip().unwrap();
        assert!(store.redo.get(tip.0).unwrap().is_some());
        // The tree itself holds the state at the marker.
        assert_eq!(store.tree_account(&keys.address(0)).unwrap(), at_500);
    }

    #[test]
    fn the_indexer_never_steps_onto_a_block_that_is_not_the_markers_child() {
        use crate::chain::testkit::make_block;
        let store = Store::open_temporary(&REGTEST).unwrap();
        let keys = Keys::new(2);
        let genesis = REGTEST.genesis_block().header;
        let a1 = make_block(
            &REGTEST,
            &genesis,
            0,
            genesis.time + 1,
            keys.address(0),
            vec![],
        );
        let b1 = make_block(
            &REGTEST,
            &genesis,
            0,
            genesis.time + 2,
            keys.address(1),
            vec![],
        );
        let b2 = make_block(
            &REGTEST,
            &b1.header,
            1,
            genesis.time + 3,
            keys.address(1),
            vec![],
        );
        for (block, height) in [(&a1, 1), (&b1, 1), (&b2, 2)] {
            store
                .store_block(&block.hash(), block, &record_for(block, height))
                .unwrap();
        }
        let delta = apply_block(&a1, &HashMap::new()).unwrap();
        store
            .connect(&a1.hash(), &record_for(&a1, 1), &delta)
            .unwrap();
        assert!(store.index_next_block().unwrap());
        assert_eq!(store.tx_index_tip().unwrap(), Some(a1.hash()));
        // What the indexer can read in the middle of a reorg: its marker still at height 1,
        // and at height 2 a block of the other branch.
        store
            .corrupt_for_test("main", &2u64.to_be_bytes(), &b2.hash().0)
            .unwrap();
        assert!(store.index_next_block().unwrap(), "looks again");
        assert_eq!(store.tx_index_tip().unwrap(), Some(a1.hash()));
        assert!(store
            .txindex_entry(&b2.transactions[0].txid())
            .unwrap()
            .is_none());
    }

    #[test]
    fn a_flush_cut_short_between_chunks_reopens_to_the_same_state() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chain");
        let keys = Keys::new(2);
        let mut b = TestChainBuilder::new(&REGTEST);
        let expected = {
            let store = Store::open(&path, &REGTEST).unwrap();
            for height in 1..=3u64 {
                let before = b.state().clone();
                let txs = if height > 1 {
                    vec![keys.transfer(&REGTEST, 0, keys.address(1), 500, 1, height - 2)]
                } else {
                    vec![]
                };
                let block = b.build(keys.address(0), txs);
                store_and_connect(&store, &block, height, &before);
            }
            assert_eq!(store.pending_blocks(), 3);
            // What a flush's first chunk leaves when the process dies right after it: one
            // account at its tip state in the tree, the marker and redo records untouched.
            let tip_state = store.account(&keys.address(1)).unwrap();
            store
                .accounts
                .insert(keys.address(1).0, encoding::encode(&tip_state))
                .unwrap();
            store.db.flush().unwrap();
            store.accounts().unwrap()
        };
        let store = Store::open(&path, &REGTEST).unwrap();
        assert_eq!(store.pending_blocks(), 3);
        assert_eq!(store.accounts().unwrap(), expected);
        let replayed: BTreeMap<Address, Account> =
            b.state().iter().map(|(a, s)| (*a, *s)).collect();
        assert_eq!(expected, replayed);
        store.flush_state().unwrap();
        assert_eq!(store.accounts().unwrap(), replayed);
        assert_eq!(store.pending_blocks(), 0);
    }

    #[test]
    fn reopening_checks_schema_and_network() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chain");
        {
            let store = Store::open(&path, &REGTEST).unwrap();
            store.flush().unwrap();
        }
        assert!(Store::open(&path, &REGTEST).is_ok());
        match Store::open(&path, &MAIN) {
            Err(ChainError::WrongNetwork { .. }) => {}
            other => panic!("expected WrongNetwork, got {:?}", other.err()),
        }
        {
            let store = Store::open(&path, &REGTEST).unwrap();
            store
                .corrupt_for_test("meta", META_SCHEMA, &99u32.to_le_bytes())
                .unwrap();
            store.flush().unwrap();
        }
        match Store::open(&path, &REGTEST) {
            Err(e @ ChainError::UnknownSchema { found: 99, .. }) => {
                assert!(e.to_string().contains("schema version 99"), "{e}");
            }
            other => panic!("expected UnknownSchema, got {:?}", other.err()),
        }
    }

    #[test]
    fn an_undecodable_record_is_a_corruption_error_not_a_panic() {
        let store = Store::open_temporary(&REGTEST).unwrap();
        let genesis = REGTEST.genesis_hash();
        store
            .corrupt_for_test("index", &genesis.0, b"junk")
            .unwrap();
        let err = store.index_record(&genesis).unwrap_err();
        assert!(matches!(err, ChainError::Corrupt { .. }), "{err}");
        assert!(err.to_string().contains("index"), "{err}");
        store
            .corrupt_for_test("bodies", &genesis.0, &[0xff; 7])
            .unwrap();
        assert!(matches!(
            store.block(&genesis),
            Err(ChainError::Corrupt { .. })
        ));
        store.corrupt_for_test("meta", META_TIP, b"short").unwrap();
        assert!(matches!(store.tip(), Err(ChainError::Corrupt { .. })));
        store
            .corrupt_for_test("accounts", &[1; 20], &[1, 2, 3])
            .unwrap();
        assert!(matches!(
            store.account(&Address([1; 20])),
            Err(ChainError::Corrupt { .. })
        ));
    }

    #[test]
    fn without_the_tx_index_nothing_is_indexed_and_the_choice_sticks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chain");
        {
            let store = Store::open_with(&path, &REGTEST, false).unwrap();
            let cb = REGTEST.genesis_block().transactions[0].txid();
            assert!(store.tx_location(&cb).unwrap().is_none());
            assert!(!store.has_tx_index());
            store.flush().unwrap();
        }
        assert!(matches!(
            Store::open_with(&path, &REGTEST, true),
            Err(ChainError::TxIndexMismatch { stored: false })
        ));
        assert!(Store::open_with(&path, &REGTEST, false).is_ok());
    }

    #[test]
    fn data_without_a_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chain");
        {
            let db = sled::open(&path).unwrap();
            db.open_tree("main").unwrap().insert(b"x", b"y").unwrap();
            db.flush().unwrap();
        }
        assert!(matches!(
            Store::open(&path, &REGTEST),
            Err(ChainError::Corrupt { .. })
        ));
    }
}
