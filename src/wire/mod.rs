//! The wire protocol: messages, framing, limits, and the codec. Pure: no sockets, no clocks.
//!
//! docs/PROTOCOL.md specifies every byte; tests/wire_*.rs and tests/protocol_vectors.rs hold
//! this module to it.

pub mod compact;
pub mod error;
pub mod frame;
pub mod limits;
pub mod message;

pub use error::WireError;
pub use frame::{decode_payload, encode_frame, frame_bytes, FrameDecoder, MessageCodec};
pub use message::{
    Command, InvItem, InvKind, LocatorRequest, Message, NetAddress, Reject, TimestampedAddress,
    Version,
};

/// The protocol version this node speaks.
pub const PROTOCOL_VERSION: u32 = 1;

/// The oldest protocol version this node talks to.
pub const MIN_PROTOCOL_VERSION: u32 = 1;

/// Service bit: the node serves the full chain.
pub const SERVICE_NETWORK: u64 = 1;
