//! Message payloads and the `Message` enum: one variant per command.

use super::compact::{BlockTxn, CompactBlock, GetBlockTxn, SendCmpct};
use crate::encoding::{BoundedString, BoundedVec};
use crate::types::{Block, Hash256, Header, NodeId, Transaction};
use bincode::{Decode, Encode};
use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use super::limits::{
    MAX_ADDR_ITEMS, MAX_HEADERS_ITEMS, MAX_INV_ITEMS, MAX_LOCATOR_HASHES, MAX_REJECT_REASON,
    MAX_USER_AGENT,
};

/// A peer's network address: services, IPv6 (IPv4 as `::ffff:a.b.c.d`), port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Encode, Decode)]
pub struct NetAddress {
    pub services: u64,
    pub ip: [u8; 16],
    pub port: u16,
}

impl NetAddress {
    pub fn new(addr: SocketAddr, services: u64) -> Self {
        let ip = match addr.ip() {
            IpAddr::V4(v4) => v4.to_ipv6_mapped(),
            IpAddr::V6(v6) => v6,
        };
        NetAddress {
            services,
            ip: ip.octets(),
            port: addr.port(),
        }
    }

    pub fn socket_addr(&self) -> SocketAddr {
        let v6 = Ipv6Addr::from(self.ip);
        let ip = match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        };
        SocketAddr::new(ip, self.port)
    }
}

/// An address with the time it was last seen, as gossiped in ADDR.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Encode, Decode)]
pub struct TimestampedAddress {
    pub time: u64,
    pub addr: NetAddress,
}

#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct Version {
    pub protocol_version: u32,
    pub services: u64,
    /// Sender's clock, seconds since the Unix epoch.
    pub timestamp: i64,
    pub receiver: NetAddress,
    pub sender: NetAddress,
    /// Random per connection; a node that receives its own nonce has dialled itself.
    pub nonce: u64,
    pub user_agent: BoundedString<MAX_USER_AGENT>,
    pub best_height: u64,
    pub node_id: NodeId,
    /// Whether the sender wants transactions relayed to it.
    pub relay: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Encode, Decode)]
pub enum InvKind {
    Tx,
    Block,
    /// In GETDATA only: "send me this block as a CMPCTBLOCK" (compact block relay).
    CompactBlock,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Encode, Decode)]
pub struct InvItem {
    pub kind: InvKind,
    pub hash: Hash256,
}

pub type InvList = BoundedVec<InvItem, MAX_INV_ITEMS>;

/// Items of one kind for `hashes`, in order (at most `MAX_INV_ITEMS`: callers chunk longer
/// lists).
pub fn inv_list(kind: InvKind, hashes: &[Hash256]) -> InvList {
    BoundedVec::truncating(
        hashes
            .iter()
            .map(|hash| InvItem { kind, hash: *hash })
            .collect(),
    )
}

/// GETHEADERS and GETBLOCKS: "I have these (newest first); send what follows, up to `stop`".
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct LocatorRequest {
    pub protocol_version: u32,
    pub locator: BoundedVec<Hash256, MAX_LOCATOR_HASHES>,
    /// The zero hash asks for as many as the limit allows.
    pub stop: Hash256,
}

#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct Reject {
    /// The command of the message being rejected.
    pub message: BoundedString<12>,
    pub code: u8,
    pub reason: BoundedString<MAX_REJECT_REASON>,
    /// The hash of the rejected block or transaction, where there is one.
    pub hash: Option<Hash256>,
}

/// REJECT codes (the values Bitcoin uses).
pub mod reject_code {
    pub const MALFORMED: u8 = 0x01;
    pub const INVALID: u8 = 0x10;
    pub const OBSOLETE: u8 = 0x11;
    pub const DUPLICATE: u8 = 0x12;
    pub const NONSTANDARD: u8 = 0x40;
    pub const INSUFFICIENT_FEE: u8 = 0x42;
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// Boxed, as `Tx`: the largest payloads are boxed so a `Message` stays small to move
    /// (every message is moved several times between the core and the shell).
    Version(Box<Version>),
    Verack,
    Ping(u64),
    Pong(u64),
    Addr(BoundedVec<TimestampedAddress, MAX_ADDR_ITEMS>),
    GetAddr,
    Inv(InvList),
    GetData(InvList),
    NotFound(InvList),
    Block(Box<Block>),
    Tx(Box<Transaction>),
    GetHeaders(LocatorRequest),
    GetBlocks(LocatorRequest),
    Headers(BoundedVec<Header, MAX_HEADERS_ITEMS>),
    Reject(Box<Reject>),
    SendHeaders,
    SendCmpct(SendCmpct),
    CmpctBlock(Box<CompactBlock>),
    GetBlockTxn(GetBlockTxn),
    BlockTxn(BlockTxn),
}

/// The commands. On the wire a command is its name in ASCII, NUL-padded to 12 bytes; the
/// order of the variants carries no meaning.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Command {
    Version,
    Verack,
    Ping,
    Pong,
    Addr,
    GetAddr,
    Inv,
    GetData,
    NotFound,
    Block,
    Tx,
    GetHeaders,
    GetBlocks,
    Headers,
    Reject,
    SendHeaders,
    SendCmpct,
    CmpctBlock,
    GetBlockTxn,
    BlockTxn,
}

impl Command {
    /// Every command; new ones are appended, so an index into it (the simulator's trace)
    /// keeps its meaning.
    pub const ALL: [Command; 20] = [
        Command::Version,
        Command::Verack,
        Command::Ping,
        Command::Pong,
        Command::Addr,
        Command::GetAddr,
        Command::Inv,
        Command::GetData,
        Command::NotFound,
        Command::Block,
        Command::Tx,
        Command::GetHeaders,
        Command::GetBlocks,
        Command::Headers,
        Command::Reject,
        Command::SendHeaders,
        Command::SendCmpct,
        Command::CmpctBlock,
        Command::GetBlockTxn,
        Command::BlockTxn,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Command::Version => "version",
            Command::Verack => "verack",
            Command::Ping => "ping",
            Command::Pong => "pong",
            Command::Addr => "addr",
            Command::GetAddr => "getaddr",
            Command::Inv => "inv",
            Command::GetData => "getdata",
            Command::NotFound => "notfound",
            Command::Block => "block",
            Command::Tx => "tx",
            Command::GetHeaders => "getheaders",
            Command::GetBlocks => "getblocks",
            Command::Headers => "headers",
            Command::Reject => "reject",
            Command::SendHeaders => "sendheaders",
            Command::SendCmpct => "sendcmpct",
            Command::CmpctBlock => "cmpctblock",
            Command::GetBlockTxn => "getblocktxn",
            Command::BlockTxn => "blocktxn",
        }
    }

    pub fn from_name(name: &str) -> Option<Command> {
        Command::ALL.into_iter().find(|c| c.name() == name)
    }

    /// The command as it appears in a frame: ASCII, NUL-padded to 12 bytes.
    pub fn to_bytes(self) -> [u8; 12] {
        let mut out = [0u8; 12];
        let name = self.name().as_bytes();
        out[..name.len()].copy_from_slice(name);
        out
    }
}

impl std::fmt::Display for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl Message {
    pub fn command(&self) -> Command {
        match self {
            Message::Version(_) => Command::Version,
            Message::Verack => Command::Verack,
            Message::Ping(_) => Command::Ping,
            Message::Pong(_) => Command::Pong,
            Message::Addr(_) => Command::Addr,
            Message::GetAddr => Command::GetAddr,
            Message::Inv(_) => Command::Inv,
            Message::GetData(_) => Command::GetData,
            Message::NotFound(_) => Command::NotFound,
            Message::Block(_) => Command::Block,
            Message::Tx(_) => Command::Tx,
            Message::GetHeaders(_) => Command::GetHeaders,
            Message::GetBlocks(_) => Command::GetBlocks,
            Message::Headers(_) => Command::Headers,
            Message::Reject(_) => Command::Reject,
            Message::SendHeaders => Command::SendHeaders,
            Message::SendCmpct(_) => Command::SendCmpct,
            Message::CmpctBlock(_) => Command::CmpctBlock,
            Message::GetBlockTxn(_) => Command::GetBlockTxn,
            Message::BlockTxn(_) => Command::BlockTxn,
        }
    }
}
