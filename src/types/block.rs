//! Block headers, blocks, and the non-malleable merkle root over a block's transactions.

use super::hash::{sha256d, sha256d_parts, Hash256};
use super::transaction::{Transaction, MIN_TX_SIZE};
use crate::encoding::{self, BoundedVec};
use bincode::{Decode, Encode};

/// Encoded size of a header, in bytes.
pub const HEADER_SIZE: usize = 4 + 32 + 32 + 8 + 4 + 8;

/// The largest encoded block, in bytes (consensus).
pub const MAX_BLOCK_SIZE: usize = 4 * 1024 * 1024;

/// No block can carry more transactions than fit in `MAX_BLOCK_SIZE` at the smallest size.
pub const MAX_BLOCK_TXS: usize = MAX_BLOCK_SIZE / MIN_TX_SIZE;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Encode, Decode)]
pub struct Header {
    pub version: u32,
    pub prev_hash: Hash256,
    pub merkle_root: Hash256,
    /// Seconds since the Unix epoch.
    pub time: u64,
    /// Compact proof-of-work target.
    pub bits: u32,
    pub nonce: u64,
}

impl Header {
    /// The block hash: SHA-256d of the 88-byte encoded header.
    pub fn hash(&self) -> Hash256 {
        sha256d(&self.to_bytes())
    }

    pub fn to_bytes(&self) -> [u8; HEADER_SIZE] {
        let mut out = [0u8; HEADER_SIZE];
        out[0..4].copy_from_slice(&self.version.to_le_bytes());
        out[4..36].copy_from_slice(&self.prev_hash.0);
        out[36..68].copy_from_slice(&self.merkle_root.0);
        out[68..76].copy_from_slice(&self.time.to_le_bytes());
        out[76..80].copy_from_slice(&self.bits.to_le_bytes());
        out[80..88].copy_from_slice(&self.nonce.to_le_bytes());
        out
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct Block {
    pub header: Header,
    pub transactions: BoundedVec<Transaction, MAX_BLOCK_TXS>,
}

impl Block {
    pub fn hash(&self) -> Hash256 {
        self.header.hash()
    }

    /// The merkle root of this block's transactions as they are (not the header's claim).
    pub fn compute_merkle_root(&self) -> Hash256 {
        merkle_root(&self.txids())
    }

    /// Each transaction's id, in block order.
    pub fn txids(&self) -> Vec<Hash256> {
        self.transactions.iter().map(Transaction::txid).collect()
    }

    /// The length of the block's encoding (counted, not built).
    pub fn encoded_size(&self) -> usize {
        encoding::encoded_len(self)
    }
}

/// Merkle root over `txids`.
///
/// Leaves are `SHA-256d(0x00 || txid)`, inner nodes `SHA-256d(0x01 || left || right)`; at each
/// level a last unpaired node is carried up unchanged (never paired with itself), so the
/// duplicate-last-leaf malleability of Bitcoin (CVE-2012-2459) cannot arise, and the tags keep
/// a leaf from ever being read as an inner node. An empty list has the zero hash as its root.
pub fn merkle_root(txids: &[Hash256]) -> Hash256 {
    if txids.is_empty() {
        return Hash256::ZERO;
    }
    let mut level: Vec<Hash256> = txids
        .iter()
        .map(|txid| sha256d_parts(&[&[0x00], &txid.0]))
        .collect();
    while level.len() > 1 {
        level = level
            .chunks(2)
            .map(|pair| match pair {
                [left, right] => sha256d_parts(&[&[0x01], &left.0, &right.0]),
                [single] => *single,
                _ => unreachable!("chunks(2) yields one or two items"),
            })
            .collect();
    }
    level[0]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: u8) -> Vec<Hash256> {
        (0..n).map(|i| sha256d(&[i])).collect()
    }

    #[test]
    fn duplicating_the_last_leaf_changes_the_root() {
        for n in 1..9u8 {
            let list = ids(n);
            let mut dup = list.clone();
            dup.push(*list.last().unwrap());
            assert_ne!(merkle_root(&list), merkle_root(&dup), "n = {n}");
        }
    }

    #[test]
    fn duplicating_the_last_pair_changes_the_root() {
        let list = ids(6);
        let mut dup = list.clone();
        dup.extend_from_slice(&list[4..6]);
        assert_ne!(merkle_root(&list), merkle_root(&dup));
    }

    #[test]
    fn root_depends_on_order_and_content() {
        let list = ids(5);
        let mut swapped = list.clone();
        swapped.swap(0, 1);
        assert_ne!(merkle_root(&list), merkle_root(&swapped));
        assert_ne!(merkle_root(&list[..4]), merkle_root(&list));
    }

    #[test]
    fn a_single_leaf_is_tagged_not_the_txid_itself() {
        let list = ids(1);
        assert_ne!(merkle_root(&list), list[0]);
        assert_eq!(merkle_root(&[]), Hash256::ZERO);
    }

    #[test]
    fn header_bytes_match_the_bincode_encoding() {
        let h = Header {
            version: 1,
            prev_hash: sha256d(b"p"),
            merkle_root: sha256d(b"m"),
            time: 1_700_000_000,
            bits: 0x207fffff,
            nonce: 42,
        };
        assert_eq!(h.to_bytes().to_vec(), encoding::encode(&h));
    }
}
