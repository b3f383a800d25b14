//! The control plane: JSON-RPC over HTTP and WebSocket (jsonrpsee), its authentication, its
//! error codes, and the built-in client.

pub mod auth;
pub mod chain;
pub mod client;
pub mod error;
pub mod mempool;
pub mod mining;
pub mod net;
pub mod server;
pub mod wallet;

pub use error::RpcError;
