//! The mempool: transfers waiting to be mined, validated against the tip state plus each
//! sender's earlier pending transactions, ordered by fee rate for block templates, bounded in
//! bytes and per account, expired by age, and updated as blocks connect and disconnect.
//!
//! `pool` is pure (time is an argument, chain state an `AccountView`): it never reads a clock or
//! does I/O. `shared` puts it behind a mutex for the node, verifies signatures outside that
//! lock, and follows the chain's connect/disconnect events.

pub mod error;
pub mod feerate;
pub mod futures;
pub mod pool;
pub mod shared;

pub use error::MempoolError;
pub use feerate::FeeRate;
pub use futures::Relayer;
pub use pool::{
    Accepted, BlockUpdate, Expiry, Mempool, MempoolConfig, MempoolEntry, MempoolInfo, Txid,
    VerifiedTransfer,
};
pub use shared::{follow_chain, AdmittedTx, RemovedTxs, SharedMempool};
