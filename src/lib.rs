//! noded: a full node of a small Bitcoin-style proof-of-work chain with an account model.
//!
//! See docs/ARCHITECTURE.md for the module map.

pub mod chain;
pub mod config;
pub mod datadir;
pub mod devnet;
pub mod encoding;
pub mod mempool;
pub mod metrics;
pub mod mining;
pub mod net;
pub mod node;
pub mod params;
pub mod protocol;
pub mod rpc;
pub mod sim;
pub mod store_migrate;
pub mod time;
pub mod types;
pub mod wallet;
pub mod wire;
