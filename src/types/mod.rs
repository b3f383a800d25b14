//! Consensus value types: hashes, amounts, addresses, transactions, headers, blocks, and
//! proof-of-work targets. Pure data and pure functions; no I/O.

pub mod address;
pub mod amount;
pub mod block;
pub mod hash;
pub mod pow;
pub mod transaction;

pub use address::Address;
pub use amount::Amount;
pub use block::{merkle_root, Block, Header};
pub use hash::{sha256d, sha256d_parts, Hash256};
pub use transaction::{Coinbase, Transaction, Transfer};

use bincode::{Decode, Encode};
use std::fmt;
use std::str::FromStr;

/// The four bytes that start every frame of a network; also bound into every signature.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Encode, Decode)]
pub struct NetworkMagic(pub [u8; 4]);

/// A node's identity: its ed25519 public key. Shown as 64 hex characters.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Encode, Decode)]
pub struct NodeId(pub [u8; 32]);

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({self})")
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("a node id is 64 hex characters (the node's ed25519 public key)")]
pub struct ParseNodeIdError;

impl serde::Serialize for NodeId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl FromStr for NodeId {
    type Err = ParseNodeIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(|_| ParseNodeIdError)?;
        Ok(NodeId(out))
    }
}
