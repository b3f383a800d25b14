//! Networking shells around the pure protocol core: the node identity, TLS 1.3 transport,
//! per-peer I/O tasks, the network service that drives the core, and peer persistence.

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
