//! Size limits of the wire protocol: per-command payload ceilings and list caps.
//!
//! Every ceiling is the exact encoded size of the largest valid payload of that command, so
//! a frame announcing more is rejected from its 24-byte header alone.

use super::compact::SHORT_ID_SIZE;
use super::message::Command;
use crate::types::block::{HEADER_SIZE, MAX_BLOCK_SIZE, MAX_BLOCK_TXS};
use crate::types::transaction::MAX_TX_SIZE;

/// Bytes in a frame header.
pub const FRAME_HEADER_SIZE: usize = 24;

/// No frame payload may exceed this, whatever its command.
pub const MAX_MESSAGE_SIZE: usize = 32 * 1024 * 1024;

/// Until the handshake completes, no payload may exceed this.
pub const MAX_HANDSHAKE_PAYLOAD: usize = 1024;

pub const MAX_INV_ITEMS: usize = 50_000;
pub const MAX_HEADERS_ITEMS: usize = 2_000;
pub const MAX_ADDR_ITEMS: usize = 1_000;
pub const MAX_LOCATOR_HASHES: usize = 101;
pub const MAX_USER_AGENT: usize = 256;
pub const MAX_REJECT_REASON: usize = 256;

const LEN: usize = 8;
const NET_ADDRESS_SIZE: usize = 8 + 16 + 2;
const INV_ITEM_SIZE: usize = 4 + 32;

pub const MAX_VERSION_PAYLOAD: usize =
    4 + 8 + 8 + 2 * NET_ADDRESS_SIZE + 8 + (LEN + MAX_USER_AGENT) + 8 + 32 + 1;
pub const MAX_ADDR_PAYLOAD: usize = LEN + MAX_ADDR_ITEMS * (8 + NET_ADDRESS_SIZE);
pub const MAX_INV_PAYLOAD: usize = LEN + MAX_INV_ITEMS * INV_ITEM_SIZE;
pub const MAX_LOCATOR_PAYLOAD: usize = 4 + LEN + MAX_LOCATOR_HASHES * 32 + 32;
pub const MAX_HEADERS_PAYLOAD: usize = LEN + MAX_HEADERS_ITEMS * HEADER_SIZE;
pub const MAX_REJECT_PAYLOAD: usize = (LEN + 12) + 1 + (LEN + MAX_REJECT_REASON) + (1 + 32);
/// SENDCMPCT: a bool and a u64.
pub const SENDCMPCT_PAYLOAD: usize = 1 + 8;
/// CMPCTBLOCK: header, nonce, the short ids and the prefilled transactions. Short ids and
/// prefilled transactions together never number more than a block's transactions, and the
/// prefilled ones weigh at most a block: an upper bound, not an exact size, as a block's
/// own ceiling is.
pub const MAX_CMPCTBLOCK_PAYLOAD: usize = HEADER_SIZE
    + 8
    + LEN
    + MAX_BLOCK_TXS * SHORT_ID_SIZE
    + LEN
    + MAX_BLOCK_TXS * 4
    + MAX_BLOCK_SIZE;
/// GETBLOCKTXN: a block hash and up to a block's worth of u32 indexes.
pub const MAX_GETBLOCKTXN_PAYLOAD: usize = 32 + LEN + MAX_BLOCK_TXS * 4;
/// BLOCKTXN: a block hash and transactions weighing at most a block.
pub const MAX_BLOCKTXN_PAYLOAD: usize = 32 + MAX_BLOCK_SIZE;

/// The largest payload a command may carry.
pub const fn max_payload(command: Command) -> usize {
    match command {
        Command::Version => MAX_VERSION_PAYLOAD,
        Command::Verack | Command::GetAddr | Command::SendHeaders => 0,
        Command::Ping | Command::Pong => 8,
        Command::Addr => MAX_ADDR_PAYLOAD,
        Command::Inv | Command::GetData | Command::NotFound => MAX_INV_PAYLOAD,
        Command::Block => MAX_BLOCK_SIZE,
        Command::Tx => MAX_TX_SIZE,
        Command::GetHeaders | Command::GetBlocks => MAX_LOCATOR_PAYLOAD,
        Command::Headers => MAX_HEADERS_PAYLOAD,
        Command::Reject => MAX_REJECT_PAYLOAD,
        Command::SendCmpct => SENDCMPCT_PAYLOAD,
        Command::CmpctBlock => MAX_CMPCTBLOCK_PAYLOAD,
        Command::GetBlockTxn => MAX_GETBLOCKTXN_PAYLOAD,
        Command::BlockTxn => MAX_BLOCKTXN_PAYLOAD,
    }
}

/// Where a list payload keeps its u64 item count, and the cap on that count.
pub const fn list_count(command: Command) -> Option<(usize, usize)> {
    match command {
        Command::Addr => Some((0, MAX_ADDR_ITEMS)),
        Command::Inv | Command::GetData | Command::NotFound => Some((0, MAX_INV_ITEMS)),
        Command::Headers => Some((0, MAX_HEADERS_ITEMS)),
        Command::GetHeaders | Command::GetBlocks => Some((4, MAX_LOCATOR_HASHES)),
        Command::CmpctBlock => Some((HEADER_SIZE + 8, MAX_BLOCK_TXS)),
        Command::GetBlockTxn | Command::BlockTxn => Some((32, MAX_BLOCK_TXS)),
        _ => None,
    }
}

const _: () = {
    let mut i = 0;
    while i < Command::ALL.len() {
        assert!(max_payload(Command::ALL[i]) <= MAX_MESSAGE_SIZE);
        i += 1;
    }
    assert!(MAX_VERSION_PAYLOAD <= MAX_HANDSHAKE_PAYLOAD);
    assert!(MAX_REJECT_PAYLOAD <= MAX_HANDSHAKE_PAYLOAD);
};
