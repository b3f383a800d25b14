//! The pure protocol core: a coordinator (`core`) and one manager per concern: connections
//! and the handshake (`peermgr`), liveness (`pingmgr`), address gossip (`addrmgr`, over the
//! `addrman` book), misbehaviour and bans (`scoremgr`, over the `bans` list).
//!
//! Fed `Input`s with the time as an argument, it returns `Output`s (send, dial, disconnect,
//! timers, events, what to persist). It never reads a clock, touches a socket or spawns a
//! task, so a test or the simulator (`crate::sim`) can run many cores in one process.

pub mod addrman;
pub mod addrmgr;
pub mod bans;
pub mod blockdl;
pub mod cmpct;
pub mod config;
pub mod core;
pub mod eviction;
pub mod fpindex;
pub mod headers;
pub mod io;
pub mod netgroup;
pub mod peermap;
pub mod peermgr;
pub mod pingmgr;
pub mod presync;
pub mod scoremgr;
pub mod syncmgr;
pub mod txrelay;

pub use self::config::CoreConfig;
pub use self::core::{Core, PeerSnapshot, TICK_INTERVAL};
pub use self::io::{
    BlockResult, Command, CommandError, ConnType, DialId, DialTarget, DisconnectReason, Event,
    Input, Output, PeerId, Persist, Reconstruction, TxResult,
};
pub use self::peermgr::AddedNodeSnapshot;
