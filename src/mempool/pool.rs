//! The pool itself: pending nonce chains and future transactions per account, the eviction
//! index, admission, block connect/disconnect, expiry and block-template selection.
//!
//! Pure: no clock (every time is a `now` argument), no I/O, no locks, no async. The chain state
//! it validates against comes in as an `AccountView` on every call, so a caller with a stale
//! pool is corrected the next time it touches an account.

use super::error::MempoolError;
use super::feerate::FeeRate;
use super::futures::{FutureKey, Futures, Owner, Relayer};
use crate::chain::state::{Account, AccountView};
use crate::encoding;
use crate::types::amount::MAX_MONEY;
use crate::types::{Address, Amount, Block, Hash256, NetworkMagic, Transaction, Transfer};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, VecDeque};

pub type Txid = Hash256;

/// Encoded bytes of transactions the pool holds by default (8 full blocks).
pub const DEFAULT_MAX_BYTES: usize = 32 * 1024 * 1024;
/// Seconds a transaction may wait before it is dropped: 14 days.
pub const DEFAULT_EXPIRY_SECS: u64 = 14 * 24 * 60 * 60;
/// Minimum relay fee rate, base units per 1,000 encoded bytes (a 144-byte transfer: 144 units).
pub const DEFAULT_MIN_RELAY_FEE_PER_KB: u64 = 1000;
/// A replacement must pay at least this many percent more fee than the one it replaces.
pub const DEFAULT_REPLACEMENT_BUMP_PERCENT: u64 = 10;
/// Future (nonce-gapped) transactions held per account: relayed transactions come from
/// several peers at once, so a busy sender's nonces arrive out of order by hundreds (64 lost
/// transactions in a ten-node flood).
pub const DEFAULT_MAX_FUTURE_PER_ACCOUNT: usize = 1024;
/// Future transactions held in total (a few MB; evicted first when the pool is full).
pub const DEFAULT_MAX_FUTURE_TOTAL: usize = 16_384;
/// Transactions (pending and future) held per account.
pub const DEFAULT_MAX_TXS_PER_ACCOUNT: usize = 4096;
/// Future transactions one connected peer may have in the pool: as many as one account may
/// hold, so an honest peer relaying a busy sender's flood out of order stays within it, and a
/// sixteenth of the total, so one peer cannot fill it (and when the total is full, the peer
/// holding the most gives up room first).
pub const DEFAULT_MAX_FUTURE_PER_PEER: usize = 1024;
/// Seconds a future transaction waits for its gap to be filled before it is dropped: Bitcoin
/// Core's orphan expiry (20 minutes). Relay fills a gap in seconds; one still open after this
/// is most likely junk, or a nonce lost for good, and frees its room.
pub const DEFAULT_FUTURE_EXPIRY_SECS: u64 = 20 * 60;

/// Policy knobs. Every collection the pool keeps is bounded by one of them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MempoolConfig {
    /// Cap on the summed encoded size of all transactions held.
    pub max_bytes: usize,
    /// A transaction older than this (by its entry time) is dropped by `expire`.
    pub expiry_secs: u64,
    /// Base units per 1,000 encoded bytes a transaction must pay to enter.
    pub min_relay_fee_per_kb: u64,
    /// A same-(sender, nonce) replacement must pay `old fee + max(old fee * percent / 100,
    /// the minimum relay fee for its size, 1)`, rounded up.
    pub replacement_bump_percent: u64,
    pub max_future_per_account: usize,
    pub max_future_total: usize,
    pub max_txs_per_account: usize,
    /// Future transactions counted against one connected peer (those it relayed).
    pub max_future_per_peer: usize,
    /// A future transaction waiting this long (from when it started to wait) is dropped by
    /// `expire`.
    pub future_expiry_secs: u64,
}

impl Default for MempoolConfig {
    fn default() -> Self {
        MempoolConfig {
            max_bytes: DEFAULT_MAX_BYTES,
            expiry_secs: DEFAULT_EXPIRY_SECS,
            min_relay_fee_per_kb: DEFAULT_MIN_RELAY_FEE_PER_KB,
            replacement_bump_percent: DEFAULT_REPLACEMENT_BUMP_PERCENT,
            max_future_per_account: DEFAULT_MAX_FUTURE_PER_ACCOUNT,
            max_future_total: DEFAULT_MAX_FUTURE_TOTAL,
            max_txs_per_account: DEFAULT_MAX_TXS_PER_ACCOUNT,
            max_future_per_peer: DEFAULT_MAX_FUTURE_PER_PEER,
            future_expiry_secs: DEFAULT_FUTURE_EXPIRY_SECS,
        }
    }
}

/// A transfer whose signature verified for the pool's network: the only way into the pool.
/// Build it with `verify` (off any lock: this is the expensive step), then hand it to
/// `Mempool::accept_verified`.
#[derive(Clone, Debug)]
pub struct VerifiedTransfer {
    transfer: Transfer,
    txid: Txid,
    size: usize,
}

impl VerifiedTransfer {
    pub fn verify(tx: Transaction, magic: NetworkMagic) -> Result<VerifiedTransfer, MempoolError> {
        let transfer = match tx {
            Transaction::Coinbase(_) => return Err(MempoolError::Coinbase),
            Transaction::Transfer(t) => t,
        };
        // The consensus rule itself, so the pool admits exactly what blocks may carry and a
        // block validator may trust `Mempool::is_verified`.
        if !crate::chain::signatures::verify_transfer_signature(&transfer, magic) {
            return Err(MempoolError::BadSignature);
        }
        Ok(VerifiedTransfer::trusted(transfer))
    }

    /// A transfer whose signature was checked elsewhere, with its id and encoded size
    /// already known (`SharedMempool::submit_batch` computes them once).
    pub(crate) fn trusted_known(transfer: Transfer, txid: Txid, size: usize) -> VerifiedTransfer {
        VerifiedTransfer {
            transfer,
            txid,
            size,
        }
    }

    /// A transfer from a block the chain validated (signature included).
    fn trusted(transfer: Transfer) -> VerifiedTransfer {
        let tx = Transaction::Transfer(transfer);
        let bytes = encoding::encode(&tx);
        let txid = crate::types::sha256d(&bytes);
        let Transaction::Transfer(transfer) = tx else {
            unreachable!("built as a transfer above")
        };
        VerifiedTransfer {
            transfer,
            txid,
            size: bytes.len(),
        }
    }

    pub fn txid(&self) -> Txid {
        self.txid
    }

    pub fn transfer(&self) -> &Transfer {
        &self.transfer
    }
}

/// One transaction in the pool.
#[derive(Clone, Debug)]
pub struct MempoolEntry {
    pub transfer: Transfer,
    pub txid: Txid,
    pub sender: Address,
    /// Encoded size in bytes.
    pub size: usize,
    /// `amount + fee`: what the sender's balance must cover.
    pub cost: Amount,
    /// When it entered the pool (seconds since the Unix epoch, as passed in).
    pub time: u64,
    /// Arrival order; breaks fee-rate ties (earlier first into blocks, later first out).
    seq: u64,
    /// While it waits for an earlier nonce (a future): whose share it counts against, and
    /// since when. `None` while pending.
    waiting: Option<Waiting>,
}

/// Who a future transaction counts against and when it started to wait.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Waiting {
    owner: Owner,
    /// Seconds, as passed in: `future_expiry_secs` later it is dropped.
    since: u64,
}

impl MempoolEntry {
    pub fn nonce(&self) -> u64 {
        self.transfer.nonce
    }

    pub fn fee(&self) -> Amount {
        self.transfer.fee
    }

    pub fn fee_rate(&self) -> FeeRate {
        FeeRate::new(self.transfer.fee, self.size)
    }

    pub fn transaction(&self) -> Transaction {
        Transaction::Transfer(self.transfer.clone())
    }

    /// Its place in the future index, and whose it is, while it is a future.
    fn future_key(&self) -> Option<(Owner, FutureKey)> {
        let w = self.waiting?;
        let key = FutureKey {
            since: w.since,
            seq: self.seq,
            sender: self.sender,
            nonce: self.nonce(),
        };
        Some((w.owner, key))
    }
}

/// Counts `e` (a future, `waiting` set) in the future accounting.
fn track(futures: &mut Futures, e: &MempoolEntry) {
    if let Some((owner, key)) = e.future_key() {
        futures.add(owner, key, e.size);
    }
}

/// Takes `e` (a future leaving the future map) out of the future accounting.
fn untrack(futures: &mut Futures, e: &MempoolEntry) {
    if let Some((owner, key)) = e.future_key() {
        futures.remove(owner, &key, e.size);
    }
}

/// What admission did besides adding the transaction.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Accepted {
    pub txid: Txid,
    /// Waiting for an earlier nonce; not minable yet.
    pub future: bool,
    /// The same-(sender, nonce) transaction it replaced.
    pub replaced: Option<Txid>,
    /// Future transactions that became pending because this one filled their gap.
    pub promoted: Vec<Txid>,
    /// Transactions removed on the way (evicted to make room, or found invalid).
    pub removed: Vec<(Txid, MempoolError)>,
}

/// What a block connect or disconnect did to the pool.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BlockUpdate {
    /// Connect: pool transactions the block included. Disconnect: block transactions taken
    /// back into the pool.
    pub txids: Vec<Txid>,
    /// Transactions dropped as no longer valid (or evicted for room), with the reason.
    pub removed: Vec<(Txid, MempoolError)>,
}

/// One sender's transfers in a block, in block order (a valid block's are consecutive
/// nonces).
#[derive(Debug)]
pub struct SenderTransfers<'a> {
    pub sender: Address,
    pub transfers: Vec<&'a Transfer>,
}

impl SenderTransfers<'_> {
    /// Whether the block carries exactly this transfer. Looked up by nonce (the block's run
    /// is consecutive), then compared whole.
    fn carries(&self, transfer: &Transfer) -> bool {
        let Some(first) = self.transfers.first() else {
            return false;
        };
        transfer
            .nonce
            .checked_sub(first.nonce)
            .and_then(|at| usize::try_from(at).ok())
            .and_then(|at| self.transfers.get(at))
            .is_some_and(|t| *t == transfer)
    }
}

/// A block's transfers grouped by sender, senders in order of first appearance: each
/// sender's address is derived once, however many transfers it has in the block.
pub fn transfers_by_sender(block: &Block) -> Vec<SenderTransfers<'_>> {
    let mut at: HashMap<&[u8; 32], usize> = HashMap::new();
    let mut groups: Vec<SenderTransfers<'_>> = Vec::new();
    for tx in block.transactions.iter() {
        if let Transaction::Transfer(t) = tx {
            let i = *at.entry(&t.from).or_insert_with(|| {
                groups.push(SenderTransfers {
                    sender: t.sender(),
                    transfers: Vec::new(),
                });
                groups.len() - 1
            });
            groups[i].transfers.push(t);
        }
    }
    groups
}

/// What `Mempool::expire_report` dropped.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Expiry {
    /// Every transaction dropped, with why (`Expired`, `FutureExpired`, or what the
    /// revalidation of the account's rest found).
    pub removed: Vec<(Txid, MempoolError)>,
    /// Per connected peer: the futures it relayed that expired with their gap unfilled.
    pub unfilled: BTreeMap<Relayer, usize>,
}

/// Summary numbers for getmempoolinfo.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct MempoolInfo {
    /// Transactions held (pending and future).
    pub size: usize,
    /// Of which waiting for an earlier nonce.
    pub future: usize,
    /// The same count under Bitcoin's name for them: the orphan pool's size.
    pub orphans: usize,
    /// Summed encoded size of those waiting for an earlier nonce.
    pub orphan_bytes: usize,
    /// Summed encoded size.
    pub bytes: usize,
    pub maxmempool: usize,
    /// Base units per 1,000 bytes needed to enter now (the minimum relay rate, or above it
    /// when the pool is full).
    pub mempoolminfee: u64,
    pub minrelaytxfee: u64,
    pub expiry_secs: u64,
}

/// Order in which accounts' tails are evicted: futures first, then by fee rate (for a pending
/// chain: the lowest rate along it, since the whole chain is mined no sooner than that), then
/// the newest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Priority {
    pending: bool,
    rate: FeeRate,
    newest_first: Reverse<u64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct EvictKey {
    priority: Priority,
    sender: Address,
}

/// One account's transactions: `pending` holds nonces `state.nonce ..` without a gap, all
/// affordable in order; `future` holds nonces past a gap.
#[derive(Debug)]
struct AccountTxs {
    /// The chain state this account's transactions were validated against.
    state: Account,
    pending: VecDeque<MempoolEntry>,
    /// Sum of the pending costs; at most `state.balance`.
    pending_cost: u64,
    /// Lowest fee rate along `pending`.
    pending_min_rate: Option<FeeRate>,
    future: BTreeMap<u64, MempoolEntry>,
    evict_key: Option<EvictKey>,
}

impl AccountTxs {
    fn new(state: Account) -> AccountTxs {
        AccountTxs {
            state,
            pending: VecDeque::new(),
            pending_cost: 0,
            pending_min_rate: None,
            future: BTreeMap::new(),
            evict_key: None,
        }
    }

    fn len(&self) -> usize {
        self.pending.len() + self.future.len()
    }

    fn next_nonce(&self) -> u64 {
        self.state.nonce.saturating_add(self.pending.len() as u64)
    }

    fn recompute_pending(&mut self) {
        self.pending_cost = self.pending.iter().map(|e| e.cost.0).sum();
        self.pending_min_rate = self.pending.iter().map(MempoolEntry::fee_rate).min();
    }

    fn tail_priority(&self) -> Option<Priority> {
        if let Some((_, e)) = self.future.last_key_value() {
            return Some(Priority {
                pending: false,
                rate: e.fee_rate(),
                newest_first: Reverse(e.seq),
            });
        }
        let tail = self.pending.back()?;
        Some(Priority {
            pending: true,
            rate: self.pending_min_rate.unwrap_or(tail.fee_rate()),
            newest_first: Reverse(tail.seq),
        })
    }

    fn tail_size(&self) -> usize {
        match self.future.last_key_value() {
            Some((_, e)) => e.size,
            None => self.pending.back().map_or(0, |e| e.size),
        }
    }
}

/// Where an admitted transaction goes in its account.
enum Slot {
    ReplacePending(usize),
    ReplaceFuture,
    Append,
    Future,
}

/// The transaction pool. See the module documentation.
#[derive(Debug)]
pub struct Mempool {
    config: MempoolConfig,
    magic: NetworkMagic,
    txids: HashMap<Txid, Address>,
    accounts: HashMap<Address, AccountTxs>,
    evict: BTreeSet<EvictKey>,
    bytes: usize,
    /// The futures' counts, bytes and owners (each entry's own `waiting` mirrors it).
    futures: Futures,
    next_seq: u64,
    /// The latest time any call passed in: when a transaction that becomes a future during
    /// a call without a time (a block connected) started to wait.
    clock: u64,
    /// Chain events applied so far (connects, disconnects, resynchronisations): a state read
    /// before a change of this count may be older than what the pool knows.
    chain_events: u64,
}

fn sum_cost(t: &Transfer) -> Option<Amount> {
    if !t.amount.is_valid() || !t.fee.is_valid() {
        return None;
    }
    t.amount.checked_add(t.fee).filter(|c| c.0 <= MAX_MONEY)
}

impl Mempool {
    pub fn new(config: MempoolConfig, magic: NetworkMagic) -> Mempool {
        Mempool {
            config,
            magic,
            txids: HashMap::new(),
            accounts: HashMap::new(),
            evict: BTreeSet::new(),
            bytes: 0,
            futures: Futures::default(),
            next_seq: 0,
            clock: 0,
            chain_events: 0,
        }
    }

    pub fn config(&self) -> &MempoolConfig {
        &self.config
    }

    pub fn magic(&self) -> NetworkMagic {
        self.magic
    }

    /// Transactions held, pending and future.
    pub fn len(&self) -> usize {
        self.txids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.txids.is_empty()
    }

    /// Summed encoded size of the transactions held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Transactions waiting for an earlier nonce.
    pub fn future_len(&self) -> usize {
        self.futures.count()
    }

    /// Summed encoded size of the transactions waiting for an earlier nonce.
    pub fn future_bytes(&self) -> usize {
        self.futures.bytes()
    }

    /// Future transactions counted against `peer` (those it relayed, while connected).
    pub fn future_of_peer(&self, peer: Relayer) -> usize {
        self.futures.of(Owner::Peer(peer))
    }

    pub fn contains(&self, txid: &Txid) -> bool {
        self.txids.contains_key(txid)
    }

    /// Whether the transaction with this id is in the pool, and so had its signature verified
    /// for this network: block validation may skip re-verifying it. A txid commits to the
    /// whole encoding, signature included, so an equal txid is the same verified bytes.
    pub fn is_verified(&self, txid: &Txid) -> bool {
        self.txids.contains_key(txid)
    }

    pub fn get(&self, txid: &Txid) -> Option<&MempoolEntry> {
        let sender = self.txids.get(txid)?;
        let acct = self.accounts.get(sender)?;
        acct.pending
            .iter()
            .chain(acct.future.values())
            .find(|e| e.txid == *txid)
    }

    /// Whether a held transaction waits for an earlier nonce.
    pub fn is_future(&self, txid: &Txid) -> bool {
        self.txids
            .get(txid)
            .and_then(|s| self.accounts.get(s))
            .is_some_and(|a| a.future.values().any(|e| e.txid == *txid))
    }

    /// The accounts with transactions in the pool.
    pub fn senders(&self) -> Vec<Address> {
        self.accounts.keys().copied().collect()
    }

    /// Whether the pool holds transactions from `sender`.
    pub fn has_sender(&self, sender: &Address) -> bool {
        self.accounts.contains_key(sender)
    }

    /// How many chain events (connects, disconnects, resynchronisations) the pool has applied.
    pub fn chain_events(&self) -> u64 {
        self.chain_events
    }

    /// Every transaction ready to mine: per account, in nonce order.
    pub fn pending_entries(&self) -> impl Iterator<Item = &MempoolEntry> {
        self.accounts.values().flat_map(|a| a.pending.iter())
    }

    /// Every held transaction: per account, pending in nonce order, then future.
    pub fn entries(&self) -> impl Iterator<Item = &MempoolEntry> {
        self.accounts
            .values()
            .flat_map(|a| a.pending.iter().chain(a.future.values()))
    }

    /// The nonce a new transfer from `sender` should carry: after the account's pending
    /// chain, given the account's chain state `state`.
    pub fn next_nonce(&self, sender: &Address, state: Account) -> u64 {
        match self.accounts.get(sender) {
            Some(a) if a.state == state => a.next_nonce(),
            _ => state.nonce,
        }
    }

    /// What the sender's pending chain spends (amounts plus fees), given its chain state.
    pub fn pending_spend(&self, sender: &Address, state: Account) -> Amount {
        match self.accounts.get(sender) {
            Some(a) if a.state == state => Amount(a.pending_cost),
            _ => Amount::ZERO,
        }
    }

    /// The fee rate (base units per 1,000 bytes) a transaction needs to enter now.
    pub fn min_fee_per_kb(&self) -> u64 {
        let floor = self.config.min_relay_fee_per_kb;
        if self.bytes + crate::types::transaction::MAX_TX_SIZE <= self.config.max_bytes {
            return floor;
        }
        self.evict
            .first()
            .map_or(floor, |k| floor.max(k.priority.rate.per_kb() + 1))
    }

    pub fn info(&self) -> MempoolInfo {
        MempoolInfo {
            size: self.len(),
            future: self.futures.count(),
            orphans: self.futures.count(),
            orphan_bytes: self.futures.bytes(),
            bytes: self.bytes,
            maxmempool: self.config.max_bytes,
            mempoolminfee: self.min_fee_per_kb(),
            minrelaytxfee: self.config.min_relay_fee_per_kb,
            expiry_secs: self.config.expiry_secs,
        }
    }

    /// Checks that need no signature and no lock-free state: coinbase, duplicate, amounts,
    /// minimum relay fee, and a nonce already used on chain. A caller runs this before paying
    /// for signature verification.
    pub fn precheck(&self, tx: &Transaction, view: &dyn AccountView) -> Result<(), MempoolError> {
        self.precheck_txid(tx, &tx.txid(), view)
    }

    /// `precheck` for a transaction whose id the caller has computed already.
    pub fn precheck_txid(
        &self,
        tx: &Transaction,
        txid: &Txid,
        view: &dyn AccountView,
    ) -> Result<(), MempoolError> {
        let t = match tx {
            Transaction::Coinbase(_) => return Err(MempoolError::Coinbase),
            Transaction::Transfer(t) => t,
        };
        let txid = *txid;
        let size = crate::types::transaction::MAX_TX_SIZE;
        self.check_stateless(t, &txid, size)?;
        let state = view.account(&t.sender());
        if t.nonce < state.nonce {
            return Err(MempoolError::NonceTooLow {
                nonce: t.nonce,
                expected: state.nonce,
            });
        }
        Ok(())
    }

    /// Full admission: the checks, the signature, then `accept_verified`.
    pub fn accept(
        &mut self,
        tx: Transaction,
        view: &dyn AccountView,
        now: u64,
    ) -> Result<Accepted, MempoolError> {
        self.accept_from(tx, view, now, None)
    }

    /// `accept` for a transaction relayed by `from` (`None`: submitted on this node).
    pub fn accept_from(
        &mut self,
        tx: Transaction,
        view: &dyn AccountView,
        now: u64,
        from: Option<Relayer>,
    ) -> Result<Accepted, MempoolError> {
        self.precheck(&tx, view)?;
        let verified = VerifiedTransfer::verify(tx, self.magic)?;
        self.accept_verified_from(verified, view, now, from)
    }

    fn check_stateless(&self, t: &Transfer, txid: &Txid, size: usize) -> Result<(), MempoolError> {
        if self.txids.contains_key(txid) {
            return Err(MempoolError::Duplicate(*txid));
        }
        sum_cost(t).ok_or(MempoolError::BadAmount)?;
        let min = FeeRate::min_fee(self.config.min_relay_fee_per_kb, size);
        if t.fee < min {
            return Err(MempoolError::FeeTooLow { fee: t.fee, min });
        }
        Ok(())
    }

    fn min_replacement_fee(&self, old: &MempoolEntry, new_size: usize) -> Amount {
        let pct = (old.fee().0 as u128 * self.config.replacement_bump_percent as u128).div_ceil(100)
            as u64;
        let relay = FeeRate::min_fee(self.config.min_relay_fee_per_kb, new_size).0;
        Amount(old.fee().0.saturating_add(pct.max(relay).max(1)))
    }

    /// Admits a transfer whose signature was verified for this network, validated against
    /// `view` (the tip state) plus the sender's pending chain.
    pub fn accept_verified(
        &mut self,
        vtx: VerifiedTransfer,
        view: &dyn AccountView,
        now: u64,
    ) -> Result<Accepted, MempoolError> {
        self.accept_verified_from(vtx, view, now, None)
    }

    /// `accept_verified` for a transaction relayed by `from` (`None`: submitted on this
    /// node). If it is a future, it counts against `from`'s cap (`max_future_per_peer`),
    /// past which `from`'s futures are refused (`TooManyFutureFromPeer`); when all futures'
    /// room is taken, it may take the room of nobody's oldest future, or of the oldest of
    /// the peer holding the most (`Futures::victim`).
    pub fn accept_verified_from(
        &mut self,
        vtx: VerifiedTransfer,
        view: &dyn AccountView,
        now: u64,
        from: Option<Relayer>,
    ) -> Result<Accepted, MempoolError> {
        self.clock = self.clock.max(now);
        let owner = from.map_or(Owner::Local, Owner::Peer);
        let peer_cap = self.config.max_future_per_peer;
        let peer_full =
            |futures: &Futures| matches!(owner, Owner::Peer(_)) && futures.of(owner) >= peer_cap;
        let VerifiedTransfer {
            transfer: t,
            txid,
            size,
        } = vtx;
        self.check_stateless(&t, &txid, size)?;
        let cost = sum_cost(&t).ok_or(MempoolError::BadAmount)?;
        let sender = t.sender();
        let state = view.account(&sender);
        let mut removed = self.sync_account(sender, state);
        if t.nonce < state.nonce {
            return Err(MempoolError::NonceTooLow {
                nonce: t.nonce,
                expected: state.nonce,
            });
        }
        let balance = state.balance.0;
        let insufficient = |needed: u64| MempoolError::InsufficientFunds {
            needed: Amount(needed),
            available: state.balance,
        };
        let empty = AccountTxs::new(state);
        let acct = self.accounts.get(&sender).unwrap_or(&empty);
        let next = acct.next_nonce();
        let rate = FeeRate::new(t.fee, size);
        let seq = self.next_seq;
        // A future whose room the newcomer takes (the future total being full).
        let mut room_of: Option<(Owner, FutureKey)> = None;

        let (slot, replaced, freed, priority) = if t.nonce < next {
            let index = (t.nonce - state.nonce) as usize;
            let old = &acct.pending[index];
            let min = self.min_replacement_fee(old, size);
            if t.fee < min {
                return Err(MempoolError::ReplacementFeeTooLow {
                    replaces: old.txid,
                    fee: t.fee,
                    min,
                });
            }
            let total = acct.pending_cost - old.cost.0 + cost.0;
            if total > balance {
                return Err(insufficient(total));
            }
            let chain_min = acct
                .pending
                .iter()
                .enumerate()
                .map(|(i, e)| if i == index { rate } else { e.fee_rate() })
                .min()
                .unwrap_or(rate);
            let priority = Priority {
                pending: true,
                rate: chain_min,
                newest_first: Reverse(seq),
            };
            (
                Slot::ReplacePending(index),
                Some(old.txid),
                old.size,
                priority,
            )
        } else if let Some(old) = acct.future.get(&t.nonce) {
            let min = self.min_replacement_fee(old, size);
            if t.fee < min {
                return Err(MempoolError::ReplacementFeeTooLow {
                    replaces: old.txid,
                    fee: t.fee,
                    min,
                });
            }
            if cost.0 > balance {
                return Err(insufficient(cost.0));
            }
            // Taking over another's future counts against the peer as a new one.
            if old.waiting.map(|w| w.owner) != Some(owner) && peer_full(&self.futures) {
                return Err(MempoolError::TooManyFutureFromPeer);
            }
            let priority = Priority {
                pending: false,
                rate,
                newest_first: Reverse(seq),
            };
            (Slot::ReplaceFuture, Some(old.txid), old.size, priority)
        } else {
            if acct.len() >= self.config.max_txs_per_account {
                return Err(MempoolError::ChainTooLong);
            }
            if t.nonce == next {
                let total = acct.pending_cost + cost.0;
                if total > balance {
                    return Err(insufficient(total));
                }
                let chain_min = acct.pending_min_rate.map_or(rate, |m| m.min(rate));
                let priority = Priority {
                    pending: true,
                    rate: chain_min,
                    newest_first: Reverse(seq),
                };
                (Slot::Append, None, 0, priority)
            } else {
                // The sender's bound first: a peer relaying one sender's long gap is not to
                // blame for it.
                if acct.future.len() >= self.config.max_future_per_account {
                    return Err(MempoolError::TooManyFuture);
                }
                if peer_full(&self.futures) {
                    return Err(MempoolError::TooManyFutureFromPeer);
                }
                if self.futures.count() >= self.config.max_future_total {
                    room_of = Some(
                        self.futures
                            .victim(owner)
                            .ok_or(MempoolError::TooManyFuture)?,
                    );
                }
                if cost.0 > balance {
                    return Err(insufficient(cost.0));
                }
                let priority = Priority {
                    pending: false,
                    rate,
                    newest_first: Reverse(seq),
                };
                (Slot::Future, None, 0, priority)
            }
        };

        let room = room_of.and_then(|(_, key)| {
            let e = self.accounts.get(&key.sender)?.future.get(&key.nonce)?;
            Some((key, e.size))
        });
        let victims = self.plan_evictions(
            size,
            freed + room.map_or(0, |(_, size)| size),
            sender,
            room.map(|(key, _)| key.sender),
            priority,
        )?;
        if let Some((key, _)) = room {
            if let Some(e) = self.remove_future(&key.sender, key.nonce) {
                removed.push((e.txid, MempoolError::Evicted));
            }
        }
        for victim in victims {
            if let Some(txid) = self.remove_tail(&victim) {
                removed.push((txid, MempoolError::Evicted));
            }
        }

        self.next_seq += 1;
        let entry = MempoolEntry {
            transfer: t,
            txid,
            sender,
            size,
            cost,
            time: now,
            seq,
            waiting: None,
        };
        let acct = self
            .accounts
            .entry(sender)
            .or_insert_with(|| AccountTxs::new(state));
        let mut future = false;
        match slot {
            Slot::ReplacePending(index) => {
                let old = std::mem::replace(&mut acct.pending[index], entry);
                acct.recompute_pending();
                self.txids.remove(&old.txid);
                self.bytes -= old.size;
            }
            Slot::ReplaceFuture => {
                future = true;
                let mut entry = entry;
                entry.waiting = Some(Waiting { owner, since: now });
                track(&mut self.futures, &entry);
                let old = acct
                    .future
                    .insert(entry.nonce(), entry)
                    .expect("replacing a present future entry");
                untrack(&mut self.futures, &old);
                self.txids.remove(&old.txid);
                self.bytes -= old.size;
            }
            Slot::Append => {
                acct.pending_cost += entry.cost.0;
                acct.pending_min_rate = Some(acct.pending_min_rate.map_or(rate, |m| m.min(rate)));
                acct.pending.push_back(entry);
            }
            Slot::Future => {
                future = true;
                let mut entry = entry;
                entry.waiting = Some(Waiting { owner, since: now });
                track(&mut self.futures, &entry);
                acct.future.insert(entry.nonce(), entry);
            }
        }
        self.txids.insert(txid, sender);
        self.bytes += size;
        let mut promoted = Vec::new();
        if matches!(slot, Slot::Append) {
            self.promote(&sender, &mut promoted, &mut removed);
        }
        self.refresh_key(&sender);
        Ok(Accepted {
            txid,
            future,
            replaced,
            promoted,
            removed,
        })
    }

    /// Picks accounts whose tails to evict so that `size` more bytes (less `freed`) fit: only
    /// tails of other accounts (not `sender`'s, nor `spared`'s, which loses a future for the
    /// newcomer already) with a strictly lower priority, at most one per account. Refuses
    /// with `MempoolFull` without evicting anything when that is not enough.
    fn plan_evictions(
        &self,
        size: usize,
        freed: usize,
        sender: Address,
        spared: Option<Address>,
        priority: Priority,
    ) -> Result<Vec<Address>, MempoolError> {
        let after = (self.bytes + size).saturating_sub(freed);
        if after <= self.config.max_bytes {
            return Ok(Vec::new());
        }
        let mut excess = after - self.config.max_bytes;
        let mut victims = Vec::new();
        for key in &self.evict {
            if key.priority >= priority {
                break;
            }
            if key.sender == sender || Some(key.sender) == spared {
                continue;
            }
            let tail = self.accounts[&key.sender].tail_size();
            victims.push(key.sender);
            if tail >= excess {
                return Ok(victims);
            }
            excess -= tail;
        }
        Err(MempoolError::MempoolFull)
    }

    /// Removes an account's last transaction (its highest future, else its last pending).
    fn remove_tail(&mut self, sender: &Address) -> Option<Txid> {
        let acct = self.accounts.get_mut(sender)?;
        let entry = if let Some((_, e)) = acct.future.pop_last() {
            untrack(&mut self.futures, &e);
            e
        } else {
            let e = acct.pending.pop_back()?;
            acct.recompute_pending();
            e
        };
        self.txids.remove(&entry.txid);
        self.bytes -= entry.size;
        self.refresh_key(sender);
        Some(entry.txid)
    }

    /// Removes one future transaction (to make room for another).
    fn remove_future(&mut self, sender: &Address, nonce: u64) -> Option<MempoolEntry> {
        let acct = self.accounts.get_mut(sender)?;
        let entry = acct.future.remove(&nonce)?;
        untrack(&mut self.futures, &entry);
        self.txids.remove(&entry.txid);
        self.bytes -= entry.size;
        self.refresh_key(sender);
        Some(entry)
    }

    /// A peer is gone: its futures no longer count against it. They stay, nobody's: each is
    /// a signed transaction whose gap may still fill from any peer, and erasing them (as
    /// Bitcoin Core erases a departed peer's orphans, which without their parents' source
    /// are likely lost) would lose honest ones for good, since relay has marked them handled
    /// and will not fetch them again. A peer cannot use this to grow past its cap by
    /// reconnecting: nobody's futures are the first to give up their room when the total is
    /// full, and they expire as any future does.
    pub fn release_peer(&mut self, peer: Relayer) {
        for key in self.futures.release(peer) {
            let entry = self
                .accounts
                .get_mut(&key.sender)
                .and_then(|a| a.future.get_mut(&key.nonce));
            if let Some(w) = entry.and_then(|e| e.waiting.as_mut()) {
                w.owner = Owner::Unowned;
            }
        }
    }

    /// Moves futures whose gap is now filled into the pending chain, while affordable; a
    /// future that the balance cannot cover at its turn is dropped.
    fn promote(
        &mut self,
        sender: &Address,
        promoted: &mut Vec<Txid>,
        removed: &mut Vec<(Txid, MempoolError)>,
    ) {
        let Some(acct) = self.accounts.get_mut(sender) else {
            return;
        };
        while let Some(mut entry) = acct.future.remove(&acct.next_nonce()) {
            untrack(&mut self.futures, &entry);
            entry.waiting = None;
            let total = acct.pending_cost + entry.cost.0;
            if total > acct.state.balance.0 {
                self.txids.remove(&entry.txid);
                self.bytes -= entry.size;
                removed.push((
                    entry.txid,
                    MempoolError::InsufficientFunds {
                        needed: Amount(total),
                        available: acct.state.balance,
                    },
                ));
                break;
            }
            promoted.push(entry.txid);
            let rate = entry.fee_rate();
            acct.pending_cost = total;
            acct.pending_min_rate = Some(acct.pending_min_rate.map_or(rate, |m| m.min(rate)));
            acct.pending.push_back(entry);
        }
    }

    /// Keeps the eviction index entry of `sender` current; forgets an empty account.
    fn refresh_key(&mut self, sender: &Address) {
        let Some(acct) = self.accounts.get_mut(sender) else {
            return;
        };
        if let Some(old) = acct.evict_key.take() {
            self.evict.remove(&old);
        }
        match acct.tail_priority() {
            Some(priority) => {
                let key = EvictKey {
                    priority,
                    sender: *sender,
                };
                acct.evict_key = Some(key);
                self.evict.insert(key);
            }
            None => {
                self.accounts.remove(sender);
            }
        }
    }

    /// Takes all of an account's transactions out of the pool (pending, then future).
    fn take_account(&mut self, sender: &Address) -> Vec<MempoolEntry> {
        let Some(mut acct) = self.accounts.remove(sender) else {
            return Vec::new();
        };
        if let Some(key) = acct.evict_key.take() {
            self.evict.remove(&key);
        }
        for e in acct.future.values() {
            untrack(&mut self.futures, e);
        }
        let entries: Vec<MempoolEntry> = acct
            .pending
            .into_iter()
            .chain(std::mem::take(&mut acct.future).into_values())
            .collect();
        for e in &entries {
            self.txids.remove(&e.txid);
            self.bytes -= e.size;
        }
        entries
    }

    /// Puts `entries` back as `sender`'s transactions, validated against `state`: nonces below
    /// the account's are dropped; from the account's nonce on, the gap-free affordable run is
    /// pending; a transaction the balance cannot cover at its turn is dropped; the rest wait
    /// as futures within their bounds. For equal nonces the first in `entries` is kept.
    fn rebuild(
        &mut self,
        sender: Address,
        state: Account,
        mut entries: Vec<MempoolEntry>,
    ) -> Vec<(Txid, MempoolError)> {
        let mut removed = Vec::new();
        entries.sort_by_key(MempoolEntry::nonce);
        let mut acct = AccountTxs::new(state);
        let mut last_nonce = None;
        for e in entries {
            let txid = e.txid;
            if last_nonce == Some(e.nonce()) || self.txids.contains_key(&txid) {
                removed.push((e.txid, MempoolError::Duplicate(e.txid)));
                continue;
            }
            last_nonce = Some(e.nonce());
            if e.nonce() < state.nonce {
                removed.push((
                    e.txid,
                    MempoolError::NonceTooLow {
                        nonce: e.nonce(),
                        expected: state.nonce,
                    },
                ));
                continue;
            }
            if acct.len() >= self.config.max_txs_per_account {
                removed.push((e.txid, MempoolError::ChainTooLong));
                continue;
            }
            if e.nonce() == acct.next_nonce() {
                let total = acct.pending_cost + e.cost.0;
                if total > state.balance.0 {
                    removed.push((
                        e.txid,
                        MempoolError::InsufficientFunds {
                            needed: Amount(total),
                            available: state.balance,
                        },
                    ));
                    continue;
                }
                acct.pending_cost = total;
                let mut e = e;
                e.waiting = None;
                acct.pending.push_back(e);
            } else {
                if acct.future.len() >= self.config.max_future_per_account
                    || self.futures.count() >= self.config.max_future_total
                {
                    removed.push((e.txid, MempoolError::TooManyFuture));
                    continue;
                }
                // A future stays whose it was; a pending one that lost an earlier nonce
                // waits from now, nobody's (its relayer did nothing wrong).
                let mut e = e;
                e.waiting.get_or_insert(Waiting {
                    owner: Owner::Unowned,
                    since: self.clock,
                });
                track(&mut self.futures, &e);
                acct.future.insert(e.nonce(), e);
            }
            self.txids.insert(txid, sender);
        }
        acct.recompute_pending();
        self.bytes += acct
            .pending
            .iter()
            .chain(acct.future.values())
            .map(|e| e.size)
            .sum::<usize>();
        self.accounts.insert(sender, acct);
        self.refresh_key(&sender);
        removed
    }

    /// Revalidates `sender`'s transactions when the chain state differs from the one they
    /// were checked against (a block the pool has not been told about yet).
    fn sync_account(&mut self, sender: Address, state: Account) -> Vec<(Txid, MempoolError)> {
        match self.accounts.get(&sender) {
            Some(a) if a.state != state => {
                let entries = self.take_account(&sender);
                self.rebuild(sender, state, entries)
            }
            _ => Vec::new(),
        }
    }

    /// A block joined the best chain; `view` is the state after it. Removes the transactions
    /// it included and revalidates its senders' remaining chains (a conflicting transfer in
    /// the block makes a pool transaction's nonce too low; a spend can make later ones
    /// unaffordable).
    /// The future transactions of `senders`, per sender in nonce order.
    pub fn futures_of(&self, senders: &[Address]) -> Vec<Txid> {
        senders
            .iter()
            .filter_map(|s| self.accounts.get(s))
            .flat_map(|a| a.future.values().map(|e| e.txid))
            .collect()
    }

    pub fn block_connected(&mut self, block: &Block, view: &dyn AccountView) -> BlockUpdate {
        self.block_connected_by_sender(&transfers_by_sender(block), view)
    }

    /// `block_connected` with the block's transfers grouped by `transfers_by_sender`. A pool
    /// entry the block carries (the same transfer, so the same txid: the encoding is
    /// canonical) is confirmed; nothing is hashed.
    pub fn block_connected_by_sender(
        &mut self,
        senders: &[SenderTransfers<'_>],
        view: &dyn AccountView,
    ) -> BlockUpdate {
        self.chain_events += 1;
        let mut update = BlockUpdate::default();
        for group in senders {
            if !self.accounts.contains_key(&group.sender) {
                continue;
            }
            let mut entries = self.take_account(&group.sender);
            entries.retain(|e| {
                if group.carries(&e.transfer) {
                    update.txids.push(e.txid);
                    false
                } else {
                    true
                }
            });
            let state = view.account(&group.sender);
            update
                .removed
                .extend(self.rebuild(group.sender, state, entries));
        }
        update
    }

    /// A block left the best chain; `view` is the state without it. Its transfers come back
    /// into the pool where still valid (their signatures were checked with the block; the
    /// relay fee and every other policy rule apply), then the pool is trimmed to its size.
    pub fn block_disconnected(
        &mut self,
        block: &Block,
        view: &dyn AccountView,
        now: u64,
    ) -> BlockUpdate {
        self.chain_events += 1;
        self.clock = self.clock.max(now);
        let mut by_sender: HashMap<Address, Vec<MempoolEntry>> = HashMap::new();
        let mut order = Vec::new();
        let mut update = BlockUpdate::default();
        let mut back = Vec::new();
        for tx in block.transactions.iter() {
            let Transaction::Transfer(t) = tx else {
                continue;
            };
            let v = VerifiedTransfer::trusted(t.clone());
            if self.txids.contains_key(&v.txid) {
                continue;
            }
            let Some(cost) = sum_cost(&v.transfer) else {
                continue;
            };
            let min = FeeRate::min_fee(self.config.min_relay_fee_per_kb, v.size);
            if v.transfer.fee < min {
                update.removed.push((
                    v.txid,
                    MempoolError::FeeTooLow {
                        fee: v.transfer.fee,
                        min,
                    },
                ));
                continue;
            }
            let sender = v.transfer.sender();
            let seq = self.next_seq;
            self.next_seq += 1;
            back.push(v.txid);
            by_sender
                .entry(sender)
                .or_insert_with(|| {
                    order.push(sender);
                    Vec::new()
                })
                .push(MempoolEntry {
                    transfer: v.transfer,
                    txid: v.txid,
                    sender,
                    size: v.size,
                    cost,
                    time: now,
                    seq,
                    waiting: None,
                });
        }
        for sender in order {
            let mut entries = by_sender.remove(&sender).unwrap_or_default();
            entries.extend(self.take_account(&sender));
            let state = view.account(&sender);
            update.removed.extend(self.rebuild(sender, state, entries));
        }
        update.removed.extend(self.trim());
        update.txids = back.into_iter().filter(|t| self.contains(t)).collect();
        update
    }

    /// Revalidates every account against `view` (after missed chain events). Transactions of
    /// blocks disconnected meanwhile are not taken back: the pool never saw those blocks.
    pub fn revalidate_all(&mut self, view: &dyn AccountView) -> Vec<(Txid, MempoolError)> {
        self.chain_events += 1;
        let senders = self.senders();
        let mut removed = Vec::new();
        for sender in senders {
            removed.extend(self.sync_account(sender, view.account(&sender)));
        }
        removed
    }

    /// Evicts lowest-priority tails until the pool fits its byte cap.
    pub fn trim(&mut self) -> Vec<(Txid, MempoolError)> {
        let mut removed = Vec::new();
        while self.bytes > self.config.max_bytes {
            let Some(key) = self.evict.first().copied() else {
                break;
            };
            match self.remove_tail(&key.sender) {
                Some(txid) => removed.push((txid, MempoolError::Evicted)),
                None => break,
            }
        }
        removed
    }

    /// `expire_report`'s removals.
    pub fn expire(&mut self, now: u64) -> Vec<(Txid, MempoolError)> {
        self.expire_report(now).removed
    }

    /// Drops transactions that entered at or before `now - expiry_secs`, and futures that
    /// started waiting at or before `now - future_expiry_secs`. An account's later nonces
    /// stay, as futures (nobody's, waiting from now), for a replacement to fill the gap.
    /// Reports, per connected peer, how many of the futures it relayed were dropped unfilled.
    pub fn expire_report(&mut self, now: u64) -> Expiry {
        self.clock = self.clock.max(now);
        let expiry = self.config.expiry_secs;
        let future_expiry = self.config.future_expiry_secs;
        let reason = |e: &MempoolEntry| {
            if e.time.saturating_add(expiry) <= now {
                Some(MempoolError::Expired)
            } else if e
                .waiting
                .is_some_and(|w| w.since.saturating_add(future_expiry) <= now)
            {
                Some(MempoolError::FutureExpired)
            } else {
                None
            }
        };
        let senders: Vec<Address> = self
            .accounts
            .iter()
            .filter(|(_, a)| {
                a.pending
                    .iter()
                    .chain(a.future.values())
                    .any(|e| reason(e).is_some())
            })
            .map(|(s, _)| *s)
            .collect();
        let mut report = Expiry::default();
        for sender in senders {
            let state = self.accounts[&sender].state;
            let mut keep = Vec::new();
            for e in self.take_account(&sender) {
                let Some(why) = reason(&e) else {
                    keep.push(e);
                    continue;
                };
                if let Some(Waiting {
                    owner: Owner::Peer(peer),
                    ..
                }) = e.waiting
                {
                    *report.unfilled.entry(peer).or_default() += 1;
                }
                report.removed.push((e.txid, why));
            }
            report.removed.extend(self.rebuild(sender, state, keep));
        }
        report
    }

    /// Transactions for a block of at most `max_bytes` of transactions: highest fee rate first
    /// among each account's next transaction, so every account's nonces stay in order. Only
    /// what is valid against `view` (the state the block builds on) is chosen: each account's
    /// run starts at its nonce there and stops where its balance there runs out.
    pub fn select(&self, max_bytes: usize, view: &dyn AccountView) -> Vec<&MempoolEntry> {
        // Per account: the usable slice of its pending chain.
        let mut runs: HashMap<Address, (usize, usize)> = HashMap::new();
        let mut heap = BinaryHeap::new();
        for (sender, acct) in &self.accounts {
            let state = view.account(sender);
            let Some(start) = state.nonce.checked_sub(acct.state.nonce) else {
                continue;
            };
            let start = start as usize;
            let mut spent = 0u64;
            let mut end = start;
            while let Some(e) = acct.pending.get(end) {
                spent = spent.saturating_add(e.cost.0);
                if spent > state.balance.0 {
                    break;
                }
                end += 1;
            }
            if end > start {
                let head = &acct.pending[start];
                heap.push((head.fee_rate(), Reverse(head.seq), *sender, start));
                runs.insert(*sender, (start, end));
            }
        }
        let mut chosen = Vec::new();
        let mut used = 0usize;
        while let Some((_, _, sender, index)) = heap.pop() {
            let acct = &self.accounts[&sender];
            let entry = &acct.pending[index];
            if used + entry.size > max_bytes {
                continue;
            }
            used += entry.size;
            chosen.push(entry);
            let (_, end) = runs[&sender];
            if index + 1 < end {
                let next = &acct.pending[index + 1];
                heap.push((next.fee_rate(), Reverse(next.seq), sender, index + 1));
            }
        }
        chosen
    }

    /// Checks the internal invariants; for tests.
    #[doc(hidden)]
    pub fn check_invariants(&self) {
        let mut bytes = 0;
        let mut count = 0;
        let mut futures = 0;
        let mut future_bytes = 0;
        for (sender, a) in &self.accounts {
            assert!(a.len() > 0, "empty account kept");
            let mut cost = 0;
            for (i, e) in a.pending.iter().enumerate() {
                assert_eq!(e.nonce(), a.state.nonce + i as u64, "pending gap");
                assert!(e.waiting.is_none(), "pending marked waiting");
                assert_eq!(self.txids.get(&e.txid), Some(sender));
                cost += e.cost.0;
                bytes += e.size;
            }
            assert_eq!(cost, a.pending_cost);
            assert!(cost <= a.state.balance.0, "unaffordable pending chain");
            for (n, e) in &a.future {
                assert_eq!(*n, e.nonce());
                assert!(*n > a.next_nonce(), "future without a gap");
                let (owner, key) = e.future_key().expect("a future is waiting");
                assert!(self.futures.contains(owner, &key), "future not indexed");
                future_bytes += e.size;
                assert_eq!(self.txids.get(&e.txid), Some(sender));
                bytes += e.size;
            }
            futures += a.future.len();
            count += a.len();
            let key = a.evict_key.expect("indexed");
            assert!(self.evict.contains(&key));
            assert_eq!(Some(key.priority), a.tail_priority());
        }
        assert_eq!(bytes, self.bytes);
        assert_eq!(count, self.txids.len());
        assert_eq!(futures, self.futures.count());
        assert_eq!(future_bytes, self.futures.bytes());
        assert_eq!(
            self.futures.keys().count(),
            futures,
            "index holds what the pool does"
        );
        for (owner, _) in self.futures.keys() {
            if matches!(owner, Owner::Peer(_)) {
                assert!(self.futures.of(owner) <= self.config.max_future_per_peer);
            }
        }
        assert_eq!(self.evict.len(), self.accounts.len());
    }
}
