//! The deterministic network simulator: many protocol cores in one process on a virtual
//! clock, wired through a model of the real network (region latencies with jitter, upload
//! bandwidth, loss as TCP retransmission, partitions, nodes stopping and restarting), with a
//! trace of everything delivered and a hash of that trace; each node has a chain model
//! (`chain`) the simulator executes `SubmitBlock` and `ServeBlocks` against, and a
//! transaction pool (`mempool`) it executes `SubmitTx`, `ServeTxs` and `ListMempool` against.
//!
//! Owns the virtual clock, the event queue, the links between cores and the network model.
//! Never reads a real clock, sleeps, touches a socket or draws an unseeded random number,
//! and never makes a protocol decision: the same seed and the same inputs give the same
//! trace, bit for bit. docs/ARCHITECTURE.md ("Simulator") describes the model.
//!
//! ```no_run
//! use noded::sim::SimConfig;
//! use noded::time::LocalDuration;
//! let mut sim = SimConfig::new(100).seed(7).bootstrap([0, 1, 2]).build();
//! sim.run_for(LocalDuration::from_mins(5));
//! println!("{} messages, trace {}", sim.trace().delivered(), sim.trace_hash());
//! ```

pub mod chain;
pub mod config;
pub mod mempool;
pub mod network;
mod queue;
pub mod regions;
pub mod trace;
mod world;

pub use chain::{ChainChange, SimChain};
pub use config::{Addressing, SimConfig};
pub use mempool::{sim_sender, sim_transfer, sim_transfers, PoolChange, Refusal, SimMempool};
pub use network::{Network, NetworkParams, Transmission};
pub use queue::SimTime;
pub use regions::{Region, RegionTable};
pub use trace::{Trace, TraceEvent, TraceHash, TraceKind};
pub use world::{NodeIndex, Sim, SimStats};
