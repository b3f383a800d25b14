//! `ChainError` (the chain layer's errors) and `BlockError` (which consensus rule a header or
//! block broke).
//!
//! A `BlockError` carries a short stable `reason()` in bitcoind's style ("high-hash",
//! "bad-txnmrklroot", ...) for `submitblock` and REJECT messages. Whether a failure may be
//! remembered against the block hash is decided here too (`BlockError::is_bound_to_hash`).

use crate::types::pow::CompactError;
use crate::types::{Amount, Hash256};
use std::path::PathBuf;

/// A consensus rule that a header or block breaks.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BlockError {
    #[error("header version {found} is not the required {expected}")]
    BadVersion { found: u32, expected: u32 },
    #[error("compact target is malformed: {0}")]
    BadCompactTarget(CompactError),
    #[error("target {bits:#010x} is easier than the network's proof-of-work limit")]
    TargetAboveLimit { bits: u32 },
    #[error("block hash does not meet its own target")]
    HighHash,
    #[error("target {found:#010x} is not the required {expected:#010x}")]
    BadDiffBits { found: u32, expected: u32 },
    #[error("time {time} is not after the median time past {median}")]
    TimeTooOld { time: u64, median: u64 },
    #[error("time {time} is more than two hours after the local clock ({max} at most)")]
    TimeTooNew { time: u64, max: u64 },
    #[error("encoded block is {size} bytes, over the limit of {max}")]
    TooLarge { size: usize, max: usize },
    #[error("merkle root in the header does not match the transactions")]
    BadMerkleRoot,
    #[error("the block has no coinbase as its first transaction")]
    MissingCoinbase,
    #[error("transaction {index} is a second coinbase")]
    MultipleCoinbase { index: usize },
    #[error("coinbase height {found} is not the block height {expected}")]
    BadCoinbaseHeight { found: u64, expected: u64 },
    #[error("coinbase pays {found}, not subsidy plus fees {expected}")]
    BadCoinbaseAmount { found: Amount, expected: Amount },
    #[error("coinbase amount or the sum of subsidy and fees is outside the money range")]
    CoinbaseAmountRange,
    #[error("transaction {index}: amount or fee is outside the money range")]
    AmountOutOfRange { index: usize },
    #[error("transaction {index}: signature is invalid")]
    BadSignature { index: usize },
    #[error("transaction {index}: nonce {found} is not the account nonce {expected}")]
    BadNonce {
        index: usize,
        expected: u64,
        found: u64,
    },
    #[error("transaction {index}: spends {needed} but the account holds {available}")]
    InsufficientBalance {
        index: usize,
        needed: Amount,
        available: Amount,
    },
    #[error("transaction {index}: a balance or nonce would overflow")]
    Overflow { index: usize },
    #[error("the parent block {0} is invalid")]
    InvalidAncestor(Hash256),
}

impl BlockError {
    /// Short stable reason code, bitcoind style.
    pub fn reason(&self) -> &'static str {
        match self {
            BlockError::BadVersion { .. } => "bad-version",
            BlockError::BadCompactTarget(_) | BlockError::TargetAboveLimit { .. } => "bad-diffbits",
            BlockError::HighHash => "high-hash",
            BlockError::BadDiffBits { .. } => "bad-diffbits",
            BlockError::TimeTooOld { .. } => "time-too-old",
            BlockError::TimeTooNew { .. } => "time-too-new",
            BlockError::TooLarge { .. } => "bad-blk-length",
            BlockError::BadMerkleRoot => "bad-txnmrklroot",
            BlockError::MissingCoinbase => "bad-cb-missing",
            BlockError::MultipleCoinbase { .. } => "bad-cb-multiple",
            BlockError::BadCoinbaseHeight { .. } => "bad-cb-height",
            BlockError::BadCoinbaseAmount { .. } | BlockError::CoinbaseAmountRange => {
                "bad-cb-amount"
            }
            BlockError::AmountOutOfRange { .. } => "bad-txns-amount-range",
            BlockError::BadSignature { .. } => "bad-txns-signature",
            BlockError::BadNonce { .. } => "bad-txns-nonce",
            BlockError::InsufficientBalance { .. } => "bad-txns-balance",
            BlockError::Overflow { .. } => "bad-txns-overflow",
            BlockError::InvalidAncestor(_) => "bad-prevblk",
        }
    }

    /// Whether this failure is a property of the block hash, so the hash may be remembered
    /// as invalid. It is not when the body might be a mutation of a valid block's body (size
    /// and merkle failures: the header does not commit to this body) or when it depends on
    /// the local clock (a block too far in the future may become valid later).
    pub fn is_bound_to_hash(&self) -> bool {
        !matches!(
            self,
            BlockError::TooLarge { .. } | BlockError::BadMerkleRoot | BlockError::TimeTooNew { .. }
        )
    }
}

/// Errors of the chain layer.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    #[error("block {hash} is invalid: {error}")]
    InvalidBlock { hash: Hash256, error: BlockError },
    #[error("block {0} is already known to be invalid")]
    KnownInvalid(Hash256),
    #[error("block {0} is not known")]
    UnknownBlock(Hash256),
    #[error("the genesis block cannot be invalidated")]
    CannotInvalidateGenesis,
    #[error("chain store: {0}")]
    Store(#[from] redb::Error),
    #[error(
        "cannot open the chain store {}: {source}; it is not a chain store file (damaged or \
         overwritten): move it away (or restore it from a backup) and start again to resync \
         from peers", path.display()
    )]
    NotAStore { path: PathBuf, source: redb::Error },
    #[error("cannot open the chain store {}: {source}", path.display())]
    Open { path: PathBuf, source: redb::Error },
    #[error("cannot convert the chain store of an earlier noded: {0}")]
    Migration(String),
    #[error("cannot create the chain store's directory {path}: {source}")]
    CreateDir {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "chain store is corrupt: {what}; restore it from a backup or delete <datadir>/chain to resync"
    )]
    Corrupt { what: String },
    #[error(
        "chain store schema version {found} is not supported (this noded reads version \
         {supported}); use a matching noded or delete <datadir>/chain to resync"
    )]
    UnknownSchema { found: u32, supported: u32 },
    #[error(
        "chain store belongs to another network (magic {found}, expected {expected}); \
         choose the matching --network or another --datadir"
    )]
    WrongNetwork { found: String, expected: String },
    #[error(
        "chain store was created {} the transaction index; open it the same way or delete \
         <datadir>/chain to resync",
        if *stored { "with" } else { "without" }
    )]
    TxIndexMismatch { stored: bool },
    #[error(
        "the transaction index is still catching up (at height {indexed} of {tip}); try again \
         shortly"
    )]
    TxIndexSyncing { indexed: u64, tip: u64 },
    #[error("the chain writer has stopped")]
    WriterStopped,
    #[error("cancelled: the node is shutting down")]
    Cancelled,
}

impl ChainError {
    /// A corruption error naming what could not be read.
    pub fn corrupt(what: impl Into<String>) -> ChainError {
        ChainError::Corrupt { what: what.into() }
    }
}

/// redb's per-operation errors all become `ChainError::Store`.
macro_rules! store_error_from {
    ($($t:ty),*) => {$(
        impl From<$t> for ChainError {
            fn from(e: $t) -> Self {
                ChainError::Store(redb::Error::from(e))
            }
        }
    )*};
}
store_error_from!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError
);
