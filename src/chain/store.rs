//! The chain's persistent store in redb (one file): block index, block bodies, main chain,
//! account state, undo and redo data, transaction index and metadata, one table each.
//!
//! Owns the on-disk layout (docs/CHAIN.md), its atomicity and its durability: every block
//! connect or disconnect, every state flush and every transaction-index step is one redb
//! write transaction over all the tables it touches, so after a crash the store holds either
//! all of it or none. Commits are made durable (fsync) in groups: at once when the last
//! durable commit is `DURABLE_INTERVAL` old, and whenever the writer runs out of work
//! (`sync`); a crash loses at most that tail, never consistency. The transaction index
//! follows the active chain a block at a time behind its own marker (`index_next_block`,
//! driven by `txindex::TxIndexer`), and lookups check every entry against the main chain and
//! scan the blocks it has not reached yet. Never panics on a bad record: an undecodable
//! value is `ChainError::Corrupt`. Never decides validity.

use super::error::ChainError;
use super::state::Account;
use super::validation::StateDelta;
use crate::encoding::{self, BoundedVec};
use crate::params::NetworkParams;
use crate::types::block::{HEADER_SIZE, MAX_BLOCK_TXS};
use crate::types::{Address, Block, Hash256, Header};
use bincode::{Decode, Encode};
use redb::{Database, Durability, ReadableDatabase, ReadableTableMetadata, TableDefinition};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// Version of the layout below. Bump it on any change; an unknown version refuses to open.
/// Version 2 added the transaction index's own marker (`meta.txindex_tip`), the `redo` tree
/// and the account state's marker (`meta.state_tip`); a version 1 store, whose index and
/// accounts always matched its tip, is upgraded in place when opened.
pub const SCHEMA_VERSION: u32 = 2;

/// Pending account states (see `PendingState`) that make the writer flush them to the
/// `accounts` tree: about 60 bytes each in memory.
pub const MAX_PENDING_ACCOUNTS: usize = 65_536;

/// Connected blocks whose account changes may wait, unflushed, in their redo records; also
/// bounds the replay when a store opens after a crash.
pub const MAX_PENDING_BLOCKS: usize = 500;

/// Blocks a lookup scans beyond the transaction index's marker before it reports that the
/// index is still catching up.
pub const TX_INDEX_SCAN_LIMIT: u64 = 64;

/// redb's page cache (its default is 1 GiB): enough for the upper levels of every table and
/// the hot accounts; the OS page cache still holds the rest of the file.
pub const CACHE_CAPACITY_BYTES: usize = 32 * 1024 * 1024;

/// The longest a committed block may stay only in memory: a commit made this long after the
/// last durable one is itself durable (fsync), so a crash loses at most this much work.
pub const DURABLE_INTERVAL: Duration = Duration::from_millis(200);

/// The tables, in `WriteSet` field order. A store made by the sled build had one sled tree of
/// each name, with the same keys and values (see `store_migrate`).
pub const TABLE_NAMES: [&str; 8] = [
    "index", "bodies", "main", "accounts", "undo", "redo", "txindex", "meta",
];

type Table = TableDefinition<'static, &'static [u8], &'static [u8]>;
const T_INDEX: Table = TableDefinition::new("index");
const T_BODIES: Table = TableDefinition::new("bodies");
const T_MAIN: Table = TableDefinition::new("main");
const T_ACCOUNTS: Table = TableDefinition::new("accounts");
const T_UNDO: Table = TableDefinition::new("undo");
const T_REDO: Table = TableDefinition::new("redo");
const T_TXINDEX: Table = TableDefinition::new("txindex");
const T_META: Table = TableDefinition::new("meta");
const TABLES: [Table; 8] = [
    T_INDEX, T_BODIES, T_MAIN, T_ACCOUNTS, T_UNDO, T_REDO, T_TXINDEX, T_META,
];

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

/// When the store last made its commits durable, and whether any commit since is not.
struct SyncState {
    last_durable: Instant,
    undurable: bool,
}

/// The open store. Cloning is cheap (the database and the pending state are shared).
#[derive(Clone)]
pub struct Store {
    db: Arc<Database>,
    /// The database file (`None` in memory), for `size_on_disk`.
    file: Option<PathBuf>,
    sync: Arc<Mutex<SyncState>>,
    /// Written only by the writer, which holds it across its own commits (taken before
    /// redb's write lock, never after); readers hold it only to copy entries out.
    pending: Arc<RwLock<PendingState>>,
    /// Test support: the next state flush stops as a crash would, before its commit.
    interrupt_next_flush: Arc<AtomicBool>,
    /// When the chain's own writes (not the index's) last committed, in ms since `opened`.
    chain_write_ms: Arc<std::sync::atomic::AtomicU64>,
    opened: Instant,
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

fn map_open_error(e: redb::DatabaseError, file: &Path) -> ChainError {
    match e {
        redb::DatabaseError::Storage(redb::StorageError::Corrupted(what)) => {
            ChainError::corrupt(format!("{}: {what}", file.display()))
        }
        // Only a file that is not a redb database at all gets the remedy of moving it away:
        // a permission, space or lock error, or a newer file format, is to be fixed, not
        // thrown away with a good chain.
        redb::DatabaseError::Storage(redb::StorageError::Io(e))
            if e.kind() == std::io::ErrorKind::InvalidData =>
        {
            ChainError::NotAStore {
                path: file.to_path_buf(),
                source: redb::DatabaseError::Storage(redb::StorageError::Io(e)).into(),
            }
        }
        other => ChainError::Open {
            path: file.to_path_buf(),
            source: other.into(),
        },
    }
}

/// One table's part of a commit: each key written (`Some`) or removed (`None`), in order.
#[derive(Default)]
struct Batch(Vec<(Vec<u8>, Option<Vec<u8>>)>);

impl Batch {
    fn insert(&mut self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) {
        self.0
            .push((key.as_ref().to_vec(), Some(value.as_ref().to_vec())));
    }

    fn remove(&mut self, key: impl AsRef<[u8]>) {
        self.0.push((key.as_ref().to_vec(), None));
    }
}

/// The writes of one atomic commit, one batch per table.
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
                self.accounts.remove(address.0);
            } else {
                self.accounts.insert(address.0, encoding::encode(&account));
            }
        }
    }

    fn into_batches(self) -> [Batch; 8] {
        [
            self.index,
            self.bodies,
            self.main,
            self.accounts,
            self.undo,
            self.redo,
            self.txindex,
            self.meta,
        ]
    }
}

/// How a commit ends: made durable by the usual rule, or durable now, or (test support) not
/// at all, as if the process died before it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Ending {
    Usual,
    Durable,
    Abort,
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
    ///
    /// `path` names the store: its database is the file `path` with the extension `redb`
    /// (`<datadir>/chain/<network>.redb`). A store the sled build left at `path` (a
    /// directory) is converted into that file first, and the directory kept beside it.
    pub fn open_with(
        path: &Path,
        params: &NetworkParams,
        tx_index: bool,
    ) -> Result<Store, ChainError> {
        let file = Store::file_for(path);
        if let Some(dir) = file.parent() {
            std::fs::create_dir_all(dir).map_err(|source| ChainError::CreateDir {
                path: dir.display().to_string(),
                source,
            })?;
        }
        crate::store_migrate::migrate_sled_dir(path, &file, &TABLE_NAMES, CACHE_CAPACITY_BYTES)
            .map_err(|e| ChainError::Migration(e.to_string()))?;
        let db = Database::builder()
            .set_cache_size(CACHE_CAPACITY_BYTES)
            .create(&file)
            .map_err(|e| map_open_error(e, &file))?;
        Store::from_db(db, Some(file), params, tx_index)
    }

    /// The database file of the store named `path`.
    pub fn file_for(path: &Path) -> PathBuf {
        path.with_extension("redb")
    }

    /// A store in memory, gone when the last clone is dropped.
    pub fn open_temporary(params: &NetworkParams) -> Result<Store, ChainError> {
        Store::open_temporary_with(params, true)
    }

    pub fn open_temporary_with(
        params: &NetworkParams,
        tx_index: bool,
    ) -> Result<Store, ChainError> {
        let db = Database::builder()
            .set_cache_size(CACHE_CAPACITY_BYTES)
            .create_with_backend(redb::backends::InMemoryBackend::new())?;
        Store::from_db(db, None, params, tx_index)
    }

    fn from_db(
        db: Database,
        file: Option<PathBuf>,
        params: &NetworkParams,
        tx_index: bool,
    ) -> Result<Store, ChainError> {
        let store = Store {
            db: Arc::new(db),
            file,
            sync: Arc::new(Mutex::new(SyncState {
                last_durable: Instant::now(),
                undurable: false,
            })),
            pending: Arc::new(RwLock::new(PendingState::default())),
            interrupt_next_flush: Arc::default(),
            chain_write_ms: Arc::default(),
            opened: Instant::now(),
            max_pending_accounts: MAX_PENDING_ACCOUNTS,
            max_pending_blocks: MAX_PENDING_BLOCKS,
            tx_index,
        };
        // Every table exists from the start, so reads never meet a missing one.
        let txn = store.db.begin_write()?;
        for table in TABLES {
            txn.open_table(table)?;
        }
        txn.commit()?;
        match store.get(T_META, META_SCHEMA)? {
            None => store.initialise(params)?,
            Some(bytes) => {
                let found = <[u8; 4]>::try_from(bytes.as_slice())
                    .map(u32::from_le_bytes)
                    .map_err(|_| ChainError::corrupt("the schema version record is malformed"))?;
                if found != SCHEMA_VERSION && found != 1 {
                    return Err(ChainError::UnknownSchema {
                        found,
                        supported: SCHEMA_VERSION,
                    });
                }
                let network = store
                    .get(T_META, META_NETWORK)?
                    .ok_or_else(|| ChainError::corrupt("the network record is missing"))?;
                if network.as_slice() != params.magic.0 {
                    return Err(ChainError::WrongNetwork {
                        found: hex::encode(network),
                        expected: hex::encode(params.magic.0),
                    });
                }
                let stored = store
                    .get(T_META, META_TX_INDEX)?
                    .is_none_or(|v| v.as_slice() != [0]);
                if stored != tx_index {
                    return Err(ChainError::TxIndexMismatch { stored });
                }
                let tip = store.tip()?;
                if found == 1 {
                    // Version 1 wrote the index and the accounts inside each connect, so
                    // both are at the tip.
                    let mut w = WriteSet::default();
                    if tx_index {
                        w.meta.insert(META_TX_INDEX_TIP, tip.0);
                    }
                    w.meta.insert(META_STATE_TIP, tip.0);
                    w.meta.insert(META_SCHEMA, SCHEMA_VERSION.to_le_bytes());
                    store.commit_ending(w, Ending::Durable)?;
                }
                store.load_pending()?;
            }
        }
        Ok(store)
    }

    /// Writes the schema, the network and the connected genesis block to an empty store.
    fn initialise(&self, params: &NetworkParams) -> Result<(), ChainError> {
        let txn = self.db.begin_read()?;
        let mut any = false;
        for table in TABLES {
            any |= !txn.open_table(table)?.is_empty()?;
        }
        if any {
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
        w.meta.insert(META_STATE_TIP, hash.0);
        w.bodies.insert(hash.0, encoding::encode(&genesis));
        w.meta.insert(META_SCHEMA, SCHEMA_VERSION.to_le_bytes());
        w.meta.insert(META_NETWORK, params.magic.0);
        w.meta.insert(META_TX_INDEX, [self.tx_index as u8]);
        if self.tx_index {
            for (txid, location) in tx_locations(hash, &genesis) {
                w.txindex.insert(txid.0, encoding::encode(&location));
            }
            w.meta.insert(META_TX_INDEX_TIP, hash.0);
        }
        self.commit_ending(w, Ending::Durable)
    }

    /// A commit of the chain's own (accept, connect, disconnect, status, flush).
    fn commit(&self, w: WriteSet) -> Result<(), ChainError> {
        let result = self.commit_ending(w, Ending::Usual);
        let now = self.opened.elapsed().as_millis() as u64;
        self.chain_write_ms.store(now, Ordering::Relaxed);
        result
    }

    /// How long since the chain's own writes last committed (the transaction index waits for
    /// a quiet moment, so that it never holds the write lock while blocks connect).
    pub fn chain_writes_quiet_for(&self) -> Duration {
        let last = self.chain_write_ms.load(Ordering::Relaxed);
        let now = self.opened.elapsed().as_millis() as u64;
        Duration::from_millis(now.saturating_sub(last))
    }

    /// Applies `w` in one write transaction. Durable at once when asked, or when the last
    /// durable commit is `DURABLE_INTERVAL` old; otherwise held in memory until a later
    /// durable commit (or `sync`) writes it out with everything before it.
    fn commit_ending(&self, w: WriteSet, ending: Ending) -> Result<(), ChainError> {
        let mut txn = self.db.begin_write()?;
        let durable = ending == Ending::Durable || self.sync_due();
        if durable {
            txn.set_durability(Durability::Immediate)?;
            // Saves the allocator state with the commit, so reopening after a crash (which
            // returns to the last durable commit) needs no walk over the whole file.
            txn.set_quick_repair(true);
        } else {
            txn.set_durability(Durability::None)?;
        }
        for (table, batch) in TABLES.iter().zip(w.into_batches()) {
            if batch.0.is_empty() {
                continue;
            }
            let mut t = txn.open_table(*table)?;
            for (key, value) in &batch.0 {
                match value {
                    Some(value) => {
                        t.insert(key.as_slice(), value.as_slice())?;
                    }
                    None => {
                        t.remove(key.as_slice())?;
                    }
                }
            }
        }
        if ending == Ending::Abort {
            txn.abort()?;
            return Err(ChainError::corrupt("a store commit was interrupted (test)"));
        }
        txn.commit()?;
        let mut sync = self.sync_state();
        if durable {
            sync.last_durable = Instant::now();
            sync.undurable = false;
        } else {
            sync.undurable = true;
        }
        Ok(())
    }

    fn sync_state(&self) -> std::sync::MutexGuard<'_, SyncState> {
        self.sync.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn sync_due(&self) -> bool {
        self.sync_state().last_durable.elapsed() >= DURABLE_INTERVAL
    }

    /// Makes every commit so far durable, if any is not yet (one fsync). The writer calls it
    /// when no work has come for a moment, so an idle node has nothing to lose.
    pub fn sync(&self) -> Result<(), ChainError> {
        if !self.sync_state().undurable {
            return Ok(());
        }
        self.commit_ending(WriteSet::default(), Ending::Durable)
    }

    /// Whether a commit is not yet durable.
    pub fn has_unsynced(&self) -> bool {
        self.sync_state().undurable
    }

    /// One key of one table.
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, ChainError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(table)?;
        Ok(t.get(key)?.map(|v| v.value().to_vec()))
    }

    /// Stores a newly accepted block: body and index record together.
    pub fn store_block(
        &self,
        hash: &Hash256,
        block: &Block,
        record: &IndexRecord,
    ) -> Result<(), ChainError> {
        let mut w = WriteSet::default();
        w.bodies.insert(hash.0, encoding::encode(block));
        w.index.insert(hash.0, encoding::encode(record));
        self.commit(w)
    }

    /// Rewrites index records (status changes), atomically together.
    pub fn put_index_records<'a>(
        &self,
        records: impl IntoIterator<Item = (&'a Hash256, &'a IndexRecord)>,
    ) -> Result<(), ChainError> {
        let mut w = WriteSet::default();
        for (hash, record) in records {
            w.index.insert(hash.0, encoding::encode(record));
        }
        self.commit(w)
    }

    fn connect_writes(&self, hash: &Hash256, record: &IndexRecord, delta: &StateDelta) -> WriteSet {
        let mut w = WriteSet::default();
        w.index.insert(hash.0, encoding::encode(record));
        w.main.insert(record.height.to_be_bytes(), hash.0);
        let undo = UndoRecord {
            accounts: BoundedVec::new(delta.undo()).unwrap_or_default(),
        };
        w.undo.insert(hash.0, encoding::encode(&undo));
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
        w.redo.insert(hash.0, encoding::encode(&redo));
        w.meta.insert(META_TIP, hash.0);
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
            let redo: RedoRecord = match self.get(T_REDO, &hash.0)? {
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
            .get(T_META, key)?
            .ok_or_else(|| ChainError::corrupt(format!("{what} is missing")))?;
        hash_from("meta", &bytes)
    }

    /// Connected blocks whose account changes are not yet in the `accounts` tree.
    pub fn pending_blocks(&self) -> usize {
        self.pending_read().blocks.len()
    }

    /// Writes the pending account states to the `accounts` table, moves `meta.state_tip` to
    /// the tip and drops the redo records no longer needed, in one commit: a crash leaves the
    /// table at the old marker with every redo record, or at the new one, never in between.
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
        // In key order: neighbouring writes land in the same B-tree pages.
        accounts.sort_unstable_by_key(|(address, _)| *address);
        let mut w = WriteSet::default();
        w.put_accounts(accounts);
        for hash in &blocks {
            w.redo.remove(hash.0);
        }
        let last = blocks.last().expect("checked above");
        w.meta.insert(META_STATE_TIP, last.0);
        let ending = if self.interrupt_next_flush.swap(false, Ordering::SeqCst) {
            Ending::Abort
        } else {
            Ending::Usual
        };
        // As in `connect`: the lock is taken before redb's, and held across the commit.
        let mut pending = self.pending_write();
        self.commit_ending(w, ending)?;
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
        // tip in the store also sees its accounts. Only the writer takes this lock for
        // writing, and always before redb's write lock, so the two cannot deadlock.
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
        w.main.remove(height.to_be_bytes());
        w.undo.remove(hash.0);
        w.meta.insert(META_TIP, block.header.prev_hash.0);
        let pending_tip = self.pending_read().blocks.last().copied();
        match pending_tip {
            // The block's changes are pending: forget its redo record and restore the
            // pending states it replaced.
            Some(last) if last == *hash => {
                w.redo.remove(hash.0);
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
                w.meta.insert(META_STATE_TIP, block.header.prev_hash.0);
                self.commit(w)?;
            }
        }
        Ok(())
    }

    /// Writes the pending account states to their table and makes everything durable.
    pub fn flush(&self) -> Result<(), ChainError> {
        self.flush_state()?;
        self.sync()
    }

    // ---- reads ----

    pub fn tip(&self) -> Result<Hash256, ChainError> {
        self.meta_hash(META_TIP, "the tip record")
    }

    pub fn index_record(&self, hash: &Hash256) -> Result<Option<IndexRecord>, ChainError> {
        match self.get(T_INDEX, &hash.0)? {
            Some(bytes) => Ok(Some(decode("index", &hash.0, &bytes)?)),
            None => Ok(None),
        }
    }

    /// Every index record, in key order (one consistent snapshot).
    pub fn index_records(
        &self,
    ) -> Box<dyn Iterator<Item = Result<(Hash256, IndexRecord), ChainError>> + '_> {
        let range = (|| -> Result<_, ChainError> {
            let txn = self.db.begin_read()?;
            Ok(txn.open_table(T_INDEX)?.range::<&[u8]>(..)?)
        })();
        match range {
            Ok(range) => Box::new(range.map(|item| {
                let (key, value) = item?;
                let (key, value) = (key.value(), value.value());
                Ok((hash_from("index", key)?, decode("index", key, value)?))
            })),
            Err(e) => Box::new(std::iter::once(Err(e))),
        }
    }

    pub fn index_len(&self) -> usize {
        let count = (|| -> Result<u64, ChainError> {
            let txn = self.db.begin_read()?;
            Ok(txn.open_table(T_INDEX)?.len()?)
        })();
        count.unwrap_or(0) as usize
    }

    pub fn block(&self, hash: &Hash256) -> Result<Option<Block>, ChainError> {
        match self.get(T_BODIES, &hash.0)? {
            Some(bytes) => Ok(Some(decode("bodies", &hash.0, &bytes)?)),
            None => Ok(None),
        }
    }

    /// How many transactions a stored block holds, read from its encoding's count field (right
    /// after the fixed-size header) without decoding the transactions.
    pub fn block_tx_count(&self, hash: &Hash256) -> Result<Option<u64>, ChainError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(T_BODIES)?;
        let Some(bytes) = table.get(hash.0.as_slice())? else {
            return Ok(None);
        };
        let count = bytes
            .value()
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
        self.get(T_BODIES, &hash.0)
    }

    /// The main-chain block hash at `height`.
    pub fn main_hash(&self, height: u64) -> Result<Option<Hash256>, ChainError> {
        match self.get(T_MAIN, &height.to_be_bytes())? {
            Some(bytes) => Ok(Some(hash_from("main", &bytes)?)),
            None => Ok(None),
        }
    }

    /// The highest main-chain entry.
    pub fn main_last(&self) -> Result<Option<(u64, Hash256)>, ChainError> {
        use redb::ReadableTable;
        let txn = self.db.begin_read()?;
        let table = txn.open_table(T_MAIN)?;
        let last = table.last()?;
        match last {
            Some((key, value)) => {
                let height = <[u8; 8]>::try_from(key.value())
                    .map(u64::from_be_bytes)
                    .map_err(|_| ChainError::corrupt("a main-chain key is not 8 bytes"))?;
                Ok(Some((height, hash_from("main", value.value())?)))
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
        match self.get(T_ACCOUNTS, &address.0)? {
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
        if missing.is_empty() {
            return Ok(found);
        }
        // One read transaction for all of them.
        let txn = self.db.begin_read()?;
        let table = txn.open_table(T_ACCOUNTS)?;
        for address in missing {
            let account = match table.get(address.0.as_slice())? {
                Some(bytes) => decode("accounts", &address.0, bytes.value())?,
                None => Account::default(),
            };
            found.insert(address, account);
        }
        Ok(found)
    }

    /// Every account at the tip (all non-default), in address order.
    pub fn accounts(&self) -> Result<BTreeMap<Address, Account>, ChainError> {
        let mut all = self.tree_accounts()?;
        for (address, account) in &self.pending_read().accounts {
            if *account == Account::default() {
                all.remove(address);
            } else {
                all.insert(*address, *account);
            }
        }
        Ok(all)
    }

    /// Every account in the `accounts` table: the state at `meta.state_tip`, without the
    /// pending changes above it.
    pub fn tree_accounts(&self) -> Result<BTreeMap<Address, Account>, ChainError> {
        let mut all = BTreeMap::new();
        let txn = self.db.begin_read()?;
        let table = txn.open_table(T_ACCOUNTS)?;
        for item in table.range::<&[u8]>(..)? {
            let (key, value) = item?;
            let (key, value) = (key.value(), value.value());
            let address = <[u8; 20]>::try_from(key)
                .map(Address)
                .map_err(|_| ChainError::corrupt("an account key is not 20 bytes"))?;
            all.insert(address, decode("accounts", key, value)?);
        }
        Ok(all)
    }

    pub fn undo_record(&self, hash: &Hash256) -> Result<Option<UndoRecord>, ChainError> {
        match self.get(T_UNDO, &hash.0)? {
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
    /// them). The entries and the marker change in one commit. Returns false when the index
    /// is at the tip (or not kept).
    pub fn index_next_block(&self) -> Result<bool, ChainError> {
        let Some(marker) = self.tx_index_tip()? else {
            return Ok(false);
        };
        let record = self.marker_record(&marker)?;
        let mut w = WriteSet::default();
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
                    w.txindex.remove(txid.0);
                }
            }
            w.meta.insert(META_TX_INDEX_TIP, block.header.prev_hash.0);
            self.commit_ending(w, Ending::Usual)?;
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
        // In key order: the B-tree is walked once, left to right, instead of jumping between
        // leaves, which shortens the time the step holds the store's one write lock.
        let mut entries: Vec<(Hash256, TxLocation)> = tx_locations(next, &block).collect();
        entries.sort_unstable_by_key(|(txid, _)| *txid);
        for (txid, location) in entries {
            w.txindex.insert(txid.0, encoding::encode(&location));
        }
        w.meta.insert(META_TX_INDEX_TIP, next.0);
        self.commit_ending(w, Ending::Usual)?;
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
        match self.get(T_TXINDEX, &txid.0)? {
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

    /// Bytes the store occupies on disk (0 in memory).
    pub fn size_on_disk(&self) -> u64 {
        self.file
            .as_ref()
            .and_then(|f| std::fs::metadata(f).ok())
            .map_or(0, |m| m.len())
    }

    /// Test support: the next `flush_state` stops where a crash could stop it, before its
    /// marker commit, and fails.
    #[doc(hidden)]
    pub fn interrupt_next_flush_for_test(&self) {
        self.interrupt_next_flush.store(true, Ordering::SeqCst);
    }

    /// Test support: overwrites a raw record, to simulate corruption.
    #[doc(hidden)]
    pub fn corrupt_for_test(&self, tree: &str, key: &[u8], value: &[u8]) -> Result<(), ChainError> {
        let mut w = WriteSet::default();
        let batch = match tree {
            "index" => &mut w.index,
            "bodies" => &mut w.bodies,
            "main" => &mut w.main,
            "accounts" => &mut w.accounts,
            "undo" => &mut w.undo,
            "redo" => &mut w.redo,
            "txindex" => &mut w.txindex,
            _ => &mut w.meta,
        };
        batch.insert(key, value);
        self.commit_ending(w, Ending::Durable)
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
        assert!(store.get(T_REDO, &flushed_tip.0).unwrap().is_none());
        let tip = store.tip().unwrap();
        assert!(store.get(T_REDO, &tip.0).unwrap().is_some());
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

    /// The storage issue's flush-atomicity defect: a flush interrupted after writing accounts
    /// but before moving its marker, then a reorg that disconnects every pending block, must
    /// leave the state of the block below, exactly as a replay from genesis computes it.
    #[test]
    fn an_interrupted_state_flush_then_a_reorg_past_the_marker_matches_replay() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chain");
        let keys = Keys::new(3);
        let mut b = TestChainBuilder::new(&REGTEST);
        let mut states = vec![b.state().clone()];
        {
            let store = Store::open(&path, &REGTEST).unwrap();
            for height in 1..=4u64 {
                let before = b.state().clone();
                let txs = if height > 1 {
                    vec![
                        keys.transfer(&REGTEST, 0, keys.address(1), 500, 1, 2 * (height - 2)),
                        keys.transfer(&REGTEST, 0, keys.address(2), 70, 1, 2 * (height - 2) + 1),
                    ]
                } else {
                    vec![]
                };
                let block = b.build(keys.address(0), txs);
                store_and_connect(&store, &block, height, &before);
                states.push(b.state().clone());
                if height == 1 {
                    store.flush_state().unwrap(); // the marker at block 1
                }
            }
            assert_eq!(store.pending_blocks(), 3);
            // The process dies in the middle of the next flush.
            store.interrupt_next_flush_for_test();
            assert!(store.flush_state().is_err());
        }
        let store = Store::open(&path, &REGTEST).unwrap();
        let replay = |h: usize| -> BTreeMap<Address, Account> {
            states[h].iter().map(|(a, s)| (*a, *s)).collect()
        };
        assert_eq!(store.accounts().unwrap(), replay(4), "reopened at the tip");
        // Reorg past the marker: disconnect every pending block and the marker's own block.
        for height in (1..=4u64).rev() {
            let block = &b.blocks()[height as usize - 1];
            store.disconnect(&block.hash(), height, block).unwrap();
            assert_eq!(
                store.accounts().unwrap(),
                replay(height as usize - 1),
                "after disconnecting block {height}"
            );
        }
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
            let db = Database::create(Store::file_for(&path)).unwrap();
            let txn = db.begin_write().unwrap();
            txn.open_table(T_MAIN)
                .unwrap()
                .insert(&b"x"[..], &b"y"[..])
                .unwrap();
            txn.commit().unwrap();
        }
        assert!(matches!(
            Store::open(&path, &REGTEST),
            Err(ChainError::Corrupt { .. })
        ));
    }
}
