//! `ChainReader`: read-only access to the chain store for RPC and other readers.
//!
//! Reads go straight to the store (redb snapshots) (accounts: the store's pending state first), concurrently with
//! the writer. Every block connect or disconnect is one atomic commit, so each read sees the
//! state before or after a block, never a half; a reader that needs several reads to agree
//! reads the published `TipSnapshot` first. Must never write.

use super::error::ChainError;
use super::state::{Account, AccountView};
use super::store::{BlockStatus, IndexRecord, Store, TxLocation};
use crate::params::NetworkParams;
use crate::types::{Address, Block, Hash256, Transaction};
use std::collections::{HashMap, HashSet};

#[derive(Clone)]
pub struct ChainReader {
    store: Store,
    params: &'static NetworkParams,
}

/// A confirmed transaction and where it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfirmedTx {
    pub tx: Transaction,
    pub block: Hash256,
    pub height: u64,
    pub index: u32,
}

/// One branch tip, as `getchaintips` shows it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ChainTipInfo {
    pub height: u64,
    pub hash: Hash256,
    /// Blocks between this tip and the active chain (0 for the active tip).
    pub branchlen: u64,
    /// "active", "valid-fork" (fully validated once), "valid-headers" (stored, not yet
    /// validated) or "invalid".
    pub status: &'static str,
}

impl ChainReader {
    pub fn new(store: Store, params: &'static NetworkParams) -> ChainReader {
        ChainReader { store, params }
    }

    pub fn params(&self) -> &'static NetworkParams {
        self.params
    }

    /// The stored tip (the watch channel in `ChainHandle` carries the same, published).
    pub fn tip_hash(&self) -> Result<Hash256, ChainError> {
        self.store.tip()
    }

    pub fn block(&self, hash: &Hash256) -> Result<Option<Block>, ChainError> {
        self.store.block(hash)
    }

    /// A stored block's transaction count, without decoding the block.
    pub fn block_tx_count(&self, hash: &Hash256) -> Result<Option<u64>, ChainError> {
        self.store.block_tx_count(hash)
    }

    pub fn block_bytes(&self, hash: &Hash256) -> Result<Option<Vec<u8>>, ChainError> {
        self.store.block_bytes(hash)
    }

    pub fn index_record(&self, hash: &Hash256) -> Result<Option<IndexRecord>, ChainError> {
        self.store.index_record(hash)
    }

    /// Every index record (one consistent snapshot), for loading the network's header tree.
    pub fn index_records(
        &self,
    ) -> Box<dyn Iterator<Item = Result<(Hash256, IndexRecord), ChainError>> + '_> {
        self.store.index_records()
    }

    /// The main-chain block hash at `height`.
    pub fn block_hash(&self, height: u64) -> Result<Option<Hash256>, ChainError> {
        self.store.main_hash(height)
    }

    /// Whether `hash` is on the main chain (at `height`).
    pub fn is_main(&self, hash: &Hash256, height: u64) -> Result<bool, ChainError> {
        Ok(self.store.main_hash(height)? == Some(*hash))
    }

    pub fn try_account(&self, address: &Address) -> Result<Account, ChainError> {
        self.store.account(address)
    }

    /// Whether confirmed transactions can be looked up by txid.
    pub fn has_tx_index(&self) -> bool {
        self.store.has_tx_index()
    }

    /// Where a main-chain transaction is, with its block's height (see
    /// `Store::tx_location`: the index, then the blocks it has not reached yet).
    pub fn tx_location(&self, txid: &Hash256) -> Result<Option<(TxLocation, u64)>, ChainError> {
        self.store.tx_location(txid)
    }

    /// Height the transaction index has reached on the main chain (`None` without one).
    pub fn tx_index_height(&self) -> Result<Option<u64>, ChainError> {
        self.store.tx_index_height()
    }

    /// A transaction confirmed on the main chain.
    pub fn transaction(&self, txid: &Hash256) -> Result<Option<ConfirmedTx>, ChainError> {
        let Some((location, height)) = self.store.tx_location(txid)? else {
            return Ok(None);
        };
        let block = self.store.block(&location.block)?.ok_or_else(|| {
            ChainError::corrupt(format!(
                "tx index points at block {} with no body",
                location.block
            ))
        })?;
        let tx = block
            .transactions
            .get(location.index as usize)
            .filter(|tx| tx.txid() == *txid)
            .cloned()
            .ok_or_else(|| {
                ChainError::corrupt(format!(
                    "tx index entry for {txid} points at the wrong place"
                ))
            })?;
        Ok(Some(ConfirmedTx {
            tx,
            block: location.block,
            height,
            index: location.index,
        }))
    }

    /// Every branch tip known: the active one first, then by height. Scans the whole block
    /// index.
    pub fn chain_tips(&self) -> Result<Vec<ChainTipInfo>, ChainError> {
        let records: HashMap<Hash256, IndexRecord> =
            self.store.index_records().collect::<Result<_, _>>()?;
        let parents: HashSet<Hash256> = records
            .values()
            .filter(|r| r.height > 0)
            .map(|r| r.header.prev_hash)
            .collect();
        let tip = self.store.tip()?;
        let mut tips = vec![];
        // Leaves of the block tree, and the active tip whatever follows it (after an
        // invalidateblock its child is an invalid block), as bitcoind reports them.
        let listed = |h: &Hash256| *h == tip || !parents.contains(h);
        for (hash, record) in records.iter().filter(|(h, _)| listed(h)) {
            let mut branchlen = 0;
            let mut cursor = *hash;
            while let Some(r) = records.get(&cursor) {
                if self.store.main_hash(r.height)? == Some(cursor) {
                    break;
                }
                branchlen += 1;
                cursor = r.header.prev_hash;
            }
            let status = if *hash == tip {
                "active"
            } else {
                match record.status {
                    BlockStatus::Invalid | BlockStatus::InvalidAncestor => "invalid",
                    BlockStatus::Valid if branchlen > 0 => "valid-fork",
                    // A leaf of the main chain below the tip cannot exist; show it as a fork.
                    BlockStatus::Valid => "valid-fork",
                    BlockStatus::Stored | BlockStatus::Checked => "valid-headers",
                }
            };
            tips.push((
                record.chainwork,
                record.seq,
                ChainTipInfo {
                    height: record.height,
                    hash: *hash,
                    branchlen,
                    status,
                },
            ));
        }
        // The active tip first, then the others by height (highest first), then first seen.
        tips.sort_by(|(_, sa, a), (_, sb, b)| {
            (b.status == "active")
                .cmp(&(a.status == "active"))
                .then(b.height.cmp(&a.height))
                .then(sa.cmp(sb))
        });
        Ok(tips.into_iter().map(|(_, _, t)| t).collect())
    }

    /// Bytes the store's file takes (one metadata call).
    pub fn size_on_disk(&self) -> u64 {
        self.store.size_on_disk()
    }
}

impl AccountView for ChainReader {
    /// The account at the tip. A store failure is logged and reads as the default account
    /// (use `try_account` where the error matters).
    fn account(&self, address: &Address) -> Account {
        self.store.account(address).unwrap_or_else(|e| {
            tracing::error!(%address, error = %e, "account read failed");
            Account::default()
        })
    }
}
