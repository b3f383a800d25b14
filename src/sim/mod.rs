//! The deterministic network simulator: many protocol cores in one process on a virtual
//! clock, wired through a model of the real network (region latencies with jitter, upload
//! bandwidth, loss as TCP retransmission, partitions).
//!
//! Owns the network model and the latency table. Never reads a real clock,
//! sleeps, touches a socket or draws an unseeded random number.

pub mod network;
pub mod regions;

pub use network::{Network, NetworkParams, Transmission};
pub use regions::{Region, RegionTable};

/// Virtual time in microseconds since the simulation started.
pub type SimTime = u64;
