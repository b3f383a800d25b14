//! Live connection counts and sync progress the network service publishes for readers outside
//! it (getinfo, getconnectioncount, getblockchaininfo) without a round trip to the service.
//!
//! Owns the counters only; nothing but the network service may write them. Each counter is
//! stored on its own, so a reader loading both may see them one event apart.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};

/// Connected peers by direction, updated by the network service after each event it handles.
#[derive(Debug, Default)]
pub struct PeerCounts {
    pub inbound: AtomicUsize,
    pub outbound: AtomicUsize,
    /// Height of the best header the network side has checked (headers-first sync): above
    /// the chain's height while blocks are still to come.
    pub headers: AtomicU64,
    /// Whether `setnetworkactive false` turned peer-to-peer activity off.
    pub network_off: AtomicBool,
}
