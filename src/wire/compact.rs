//! Compact block relay payloads (the idea of BIP152): SENDCMPCT, CMPCTBLOCK, GETBLOCKTXN,
//! BLOCKTXN, and the short transaction ids a compact block carries.
//!
//! Owns the byte layout of these four payloads and the short-id function (docs/PROTOCOL.md
//! 8.17–8.20). Must never decide anything: when to send them, and rebuilding a block
//! from a mempool, belong to the protocol core (`protocol::cmpct`, 10.8).

use crate::encoding::BoundedVec;
use crate::types::block::MAX_BLOCK_TXS;
use crate::types::{Hash256, Header, Transaction};
use bincode::{Decode, Encode};
use sha2::{Digest, Sha256};
use std::hash::Hasher;

/// The compact block version this node speaks.
pub const COMPACT_VERSION: u64 = 1;

/// Bytes of a short transaction id.
pub const SHORT_ID_SIZE: usize = 6;

/// SENDCMPCT: the sender can take compact blocks of `version`, and, when `high_bandwidth`,
/// asks to be sent them unsolicited as soon as their header is checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Encode, Decode)]
pub struct SendCmpct {
    pub high_bandwidth: bool,
    pub version: u64,
}

/// A short transaction id: the low 48 bits of SipHash-2-4 of the txid under the block's key,
/// little-endian.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Encode, Decode)]
pub struct ShortId(pub [u8; SHORT_ID_SIZE]);

/// A transaction sent in full inside a compact block, at its index in the block.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct PrefilledTx {
    pub index: u32,
    pub tx: Transaction,
}

/// CMPCTBLOCK: a block as its header, a key nonce, the short ids of the transactions not
/// prefilled (in block order, skipping the prefilled indexes) and the prefilled ones
/// (ascending index; the coinbase at 0 always).
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct CompactBlock {
    pub header: Header,
    pub nonce: u64,
    pub short_ids: BoundedVec<ShortId, MAX_BLOCK_TXS>,
    pub prefilled: BoundedVec<PrefilledTx, MAX_BLOCK_TXS>,
}

/// GETBLOCKTXN: the transactions at `indexes` (ascending, each below the block's count) of
/// the block `block_hash`.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct GetBlockTxn {
    pub block_hash: Hash256,
    pub indexes: BoundedVec<u32, MAX_BLOCK_TXS>,
}

/// BLOCKTXN: the answer to a GETBLOCKTXN, the transactions in the order asked.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct BlockTxn {
    pub block_hash: Hash256,
    pub txs: BoundedVec<Transaction, MAX_BLOCK_TXS>,
}

/// The SipHash key of one compact block: the first 16 bytes of SHA-256(header ‖ nonce), as
/// two little-endian u64. Keyed per block (and the nonce is the sender's random choice), so
/// nobody can grind transactions whose short ids collide in every block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShortIdKey {
    pub k0: u64,
    pub k1: u64,
}

impl ShortIdKey {
    pub fn new(header: &Header, nonce: u64) -> ShortIdKey {
        let mut hasher = Sha256::new();
        hasher.update(header.to_bytes());
        hasher.update(nonce.to_le_bytes());
        let digest = hasher.finalize();
        let word = |i: usize| u64::from_le_bytes(digest[i..i + 8].try_into().expect("8 bytes"));
        ShortIdKey {
            k0: word(0),
            k1: word(8),
        }
    }

    /// The short id of the transaction `txid`.
    pub fn short_id(&self, txid: &Hash256) -> ShortId {
        let mut hasher = siphasher::sip::SipHasher24::new_with_keys(self.k0, self.k1);
        hasher.write(txid.as_bytes());
        let full = hasher.finish().to_le_bytes();
        let mut id = [0u8; SHORT_ID_SIZE];
        id.copy_from_slice(&full[..SHORT_ID_SIZE]);
        ShortId(id)
    }
}

impl CompactBlock {
    /// The compact form of a block whose transactions have ids `txids` (block order), with
    /// the coinbase (index 0) prefilled from `coinbase`.
    pub fn new(header: Header, nonce: u64, coinbase: Transaction, txids: &[Hash256]) -> Self {
        let key = ShortIdKey::new(&header, nonce);
        let short_ids = txids.iter().skip(1).map(|t| key.short_id(t)).collect();
        CompactBlock {
            header,
            nonce,
            short_ids: BoundedVec::truncating(short_ids),
            prefilled: BoundedVec::truncating(vec![PrefilledTx {
                index: 0,
                tx: coinbase,
            }]),
        }
    }
}
