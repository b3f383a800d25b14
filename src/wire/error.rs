//! `WireError`: every way a byte stream can break the framing or payload rules.

use super::message::Command;

#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error(
        "wrong network: the peer is on {}, this node on {}",
        on(got),
        on(expected)
    )]
    WrongMagic { expected: [u8; 4], got: [u8; 4] },
    #[error("command field is not NUL-padded ASCII: {0:02x?}")]
    MalformedCommand([u8; 12]),
    #[error("unknown command {0:?}")]
    UnknownCommand(String),
    #[error("{command} payload of {len} bytes exceeds its limit of {max} bytes")]
    PayloadTooLarge {
        command: Command,
        len: usize,
        max: usize,
    },
    #[error("{command} checksum {got:02x?} does not match the payload ({expected:02x?})")]
    BadChecksum {
        command: Command,
        expected: [u8; 4],
        got: [u8; 4],
    },
    #[error("{command} carries {count} items, over the cap of {max}")]
    TooManyItems {
        command: Command,
        count: u64,
        max: usize,
    },
    #[error("{command} payload is malformed: {reason}")]
    MalformedPayload { command: Command, reason: String },
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

/// The network a magic stands for, as an operator names it (`--network`).
fn on(magic: &[u8; 4]) -> String {
    match crate::params::Network::from_magic(magic) {
        Some(network) => format!("{network} (magic {magic:02x?})"),
        None => format!("no known network (magic {magic:02x?})"),
    }
}
