//! The chain: validation (pure), the redb store, the in-memory block index with fork choice
//! and reorgs, and the single writer that applies blocks in order and publishes the tip.
//!
//! Owns consensus validation and the chain's persistent state. Must never let a reader see
//! half-applied state: every block connect or disconnect is one atomic store write, and the
//! tip is published only after the write that made it true.

pub mod chainstate;
pub mod error;
pub mod index;
pub mod orphans;
pub mod reader;
pub mod signatures;
pub mod state;
pub mod store;
pub mod testkit;
pub mod tiplog;
pub mod txindex;
pub mod validation;
pub mod work;
pub mod writer;

pub use chainstate::{Chain, ChainOptions, ChainStats, SubmitOutcome, TipSnapshot, VerifyReport};
pub use error::{BlockError, ChainError};
pub use reader::ChainReader;
pub use writer::ChainHandle;

use crate::params::NetworkParams;
use crate::types::{Block, Hash256};
use std::sync::Arc;

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

/// A change of the active chain, sent after the store write that made it true, in order.
///
/// Delivered on a bounded `tokio::sync::broadcast` channel (`ChainHandle::subscribe`). A
/// subscriber that falls more than `writer::EVENT_CAPACITY` events behind gets
/// `RecvError::Lagged` and must resynchronise from the published tip instead.
#[derive(Clone, Debug)]
pub enum ChainEvent {
    /// The block was connected at this height and is now part of the active chain.
    BlockConnected(Arc<Block>, u64),
    /// The block at this height was disconnected (a reorg or `invalidateblock`); its
    /// transactions are no longer confirmed.
    BlockDisconnected(Arc<Block>, u64),
}
