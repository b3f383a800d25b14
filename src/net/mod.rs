//! Networking shells around the pure protocol core: the node identity, TLS 1.3 transport,
//! per-peer I/O tasks and their `PeerError`, the network service that drives the core, the
//! peer counts it publishes, and peer persistence.
//!
//! Must never import `rpc`: what the RPC layer reads from here (counts, commands, peer info)
//! is defined here, and the RPC layer depends on it, not the other way round.

pub mod counts;
pub mod error;
pub mod identity;
pub mod lan;
pub mod peer;
pub mod pending;
pub mod service;
pub mod store;
pub mod store_writer;
pub mod tls;

pub use error::PeerError;
