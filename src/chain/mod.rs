//! The chain: what the node holds as its best chain. Today that is the network's genesis
//! block; the validated sled store, block index and fork choice build on `ChainTip`.

pub mod state;

use crate::params::NetworkParams;
use crate::types::Hash256;

/// The best chain's tip, published on a watch channel so readers never block the writer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChainTip {
    pub height: u64,
    pub hash: Hash256,
    /// Height of the best known header (equal to `height` until headers-first sync exists).
    pub header_height: u64,
}

impl ChainTip {
    pub fn genesis(params: &NetworkParams) -> ChainTip {
        ChainTip {
            height: 0,
            hash: params.genesis_hash(),
            header_height: 0,
        }
    }
}
