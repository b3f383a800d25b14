//! The control plane: JSON-RPC over HTTP and WebSocket (jsonrpsee), its authentication, its
//! error codes (one table, `error::code`), and the built-in client.
//!
//! The top layer below `node`: it reads and commands the chain, mempool, miner and network
//! through their handles and must never own their state or be imported by them.

pub mod auth;
pub mod chain;
pub mod client;
pub mod dashboard;
pub mod error;
pub mod gate;
pub mod help;
pub mod http_routes;
pub mod legacy;
pub mod mempool;
pub mod metrics_layer;
pub mod mining;
pub mod net;
pub mod params;
pub mod server;
pub mod subscriptions;
pub mod txbatch;
pub mod wallet;

pub use error::RpcError;
