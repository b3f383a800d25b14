//! The pure protocol core: handshake, liveness, connection management, address book, bans.
//!
//! Fed events (`Input`) with the time as an argument, it returns `Output`s (send, connect,
//! disconnect). It never reads a clock, touches a socket or spawns a task, so a test can run
//! many cores in one process with a manual clock.

pub mod addrman;
pub mod bans;
pub mod core;
pub mod eviction;
pub mod netgroup;

pub use self::core::{
    AddedNodeSnapshot, CommandError, ConnType, Core, CoreConfig, DialId, DialTarget,
    DisconnectReason, Output, PeerId, PeerSnapshot,
};
