//! Shared by the tests/wire_*.rs binaries: proptest strategies for every wire message, and
//! helpers that build raw frames byte by byte (independently of the encoder under test).
//!
//! Included with `#[path = "wire_strategies/mod.rs"] mod wire_strategies;`; not every binary
//! uses every item.
#![allow(dead_code)]

use bytes::BytesMut;
use noded::encoding::{BoundedString, BoundedVec};
use noded::types::{
    Address, Amount, Block, Coinbase, Hash256, Header, NetworkMagic, NodeId, Transaction, Transfer,
};
use noded::wire::compact::{BlockTxn, CompactBlock, GetBlockTxn, PrefilledTx, SendCmpct, ShortId};
use noded::wire::limits::{MAX_LOCATOR_HASHES, MAX_REJECT_REASON, MAX_USER_AGENT};
use noded::wire::{
    Command, FrameDecoder, InvItem, InvKind, LocatorRequest, Message, NetAddress, Reject,
    TimestampedAddress, Version, WireError,
};
use proptest::collection::vec;
use proptest::prelude::*;
use sha2::{Digest, Sha256};

/// The magic used by tests that do not vary it (regtest's).
pub const MAGIC: NetworkMagic = noded::params::REGTEST.magic;

// ---------------------------------------------------------------------------------------------
// Raw frames, built without the encoder under test.

/// First four bytes of SHA-256(SHA-256(payload)), computed here with sha2 directly.
pub fn independent_checksum(payload: &[u8]) -> [u8; 4] {
    let digest = Sha256::digest(Sha256::digest(payload));
    [digest[0], digest[1], digest[2], digest[3]]
}

/// A 12-byte command field: `name` followed by NUL padding.
pub fn command_field(name: &[u8]) -> [u8; 12] {
    assert!(name.len() <= 12);
    let mut out = [0u8; 12];
    out[..name.len()].copy_from_slice(name);
    out
}

/// A 24-byte frame header with every field chosen by the caller.
pub fn raw_header(magic: NetworkMagic, command: [u8; 12], length: u32, sum: [u8; 4]) -> Vec<u8> {
    let mut out = Vec::with_capacity(24);
    out.extend_from_slice(&magic.0);
    out.extend_from_slice(&command);
    out.extend_from_slice(&length.to_le_bytes());
    out.extend_from_slice(&sum);
    out
}

/// A whole frame around `payload` with the true length and checksum.
pub fn raw_frame(magic: NetworkMagic, command: Command, payload: &[u8]) -> Vec<u8> {
    let mut out = raw_header(
        magic,
        command.to_bytes(),
        payload.len() as u32,
        independent_checksum(payload),
    );
    out.extend_from_slice(payload);
    out
}

/// The payload bytes of `message` (the frame minus its 24-byte header).
pub fn payload_of(message: &Message) -> Vec<u8> {
    let mut out = Vec::new();
    noded::wire::frame::encode_payload(message, &mut out);
    out
}

/// A decoder for `MAGIC`, with or without the handshake completed.
pub fn decoder(handshake_complete: bool) -> FrameDecoder {
    let mut d = FrameDecoder::new(MAGIC);
    if handshake_complete {
        d.set_handshake_complete();
    }
    d
}

/// Puts `bytes` in a fresh buffer and asks for one message.
pub fn decode_once(decoder: &mut FrameDecoder, bytes: &[u8]) -> Result<Option<Message>, WireError> {
    let mut buf = BytesMut::from(bytes);
    decoder.decode(&mut buf)
}

/// Feeds `bytes` into one buffer in chunks of the given sizes (cycled; a size of 0 counts as
/// 1), draining every whole message after each chunk. Returns each message with the number of
/// bytes fed when it came out, or the first error.
pub fn feed_in_chunks(
    decoder: &mut FrameDecoder,
    bytes: &[u8],
    chunk_sizes: &[usize],
) -> Result<Vec<(usize, Message)>, WireError> {
    assert!(!chunk_sizes.is_empty());
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut fed = 0;
    let mut sizes = chunk_sizes.iter().cycle();
    while fed < bytes.len() {
        let n = (*sizes.next().expect("cycle"))
            .max(1)
            .min(bytes.len() - fed);
        buf.extend_from_slice(&bytes[fed..fed + n]);
        fed += n;
        while let Some(message) = decoder.decode(&mut buf)? {
            out.push((fed, message));
            // Every message takes at least a 24-byte header out of the stream.
            assert!(
                out.len() * 24 <= fed,
                "{} messages out of {fed} bytes",
                out.len()
            );
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Strategies.

pub fn magic() -> impl Strategy<Value = NetworkMagic> {
    any::<[u8; 4]>().prop_map(NetworkMagic)
}

pub fn hash() -> impl Strategy<Value = Hash256> {
    prop_oneof![
        1 => Just(Hash256::ZERO),
        9 => any::<[u8; 32]>().prop_map(Hash256),
    ]
}

/// Any UTF-8 text of at most `MAX` bytes: arbitrary characters (multi-byte ones included),
/// cut at a character boundary, or ASCII filling the cap exactly.
pub fn bounded_string<const MAX: usize>() -> impl Strategy<Value = BoundedString<MAX>> {
    let any_text = proptest::string::string_regex(&format!("(?s).{{0,{MAX}}}"))
        .expect("valid regex")
        .prop_map(|s| BoundedString::truncating(&s));
    let full = proptest::string::string_regex(&format!("[ -~]{{{MAX}}}"))
        .expect("valid regex")
        .prop_map(|s| BoundedString::new(s).expect("exactly MAX bytes"));
    prop_oneof![4 => any_text, 1 => full]
}

pub fn bounded_vec<T: std::fmt::Debug, const MAX: usize>(
    item: impl Strategy<Value = T>,
    max_len: usize,
) -> impl Strategy<Value = BoundedVec<T, MAX>> {
    assert!(max_len <= MAX);
    vec(item, 0..=max_len).prop_map(|items| BoundedVec::new(items).expect("within the cap"))
}

pub fn net_address() -> impl Strategy<Value = NetAddress> {
    (any::<u64>(), any::<[u8; 16]>(), any::<u16>()).prop_map(|(services, ip, port)| NetAddress {
        services,
        ip,
        port,
    })
}

pub fn timestamped_address() -> impl Strategy<Value = TimestampedAddress> {
    (any::<u64>(), net_address()).prop_map(|(time, addr)| TimestampedAddress { time, addr })
}

pub fn version() -> impl Strategy<Value = Version> {
    (
        (any::<u32>(), any::<u64>(), any::<i64>()),
        (net_address(), net_address()),
        (
            any::<u64>(),
            bounded_string::<MAX_USER_AGENT>(),
            any::<u64>(),
        ),
        (any::<[u8; 32]>(), any::<bool>()),
    )
        .prop_map(
            |(
                (protocol_version, services, timestamp),
                (receiver, sender),
                (nonce, user_agent, best_height),
                (node_id, relay),
            )| Version {
                protocol_version,
                services,
                timestamp,
                receiver,
                sender,
                nonce,
                user_agent,
                best_height,
                node_id: NodeId(node_id),
                relay,
            },
        )
}

pub fn inv_item() -> impl Strategy<Value = InvItem> {
    (prop_oneof![Just(InvKind::Tx), Just(InvKind::Block)], hash())
        .prop_map(|(kind, hash)| InvItem { kind, hash })
}

pub fn inv_list() -> impl Strategy<Value = noded::wire::message::InvList> {
    bounded_vec(inv_item(), 40)
}

pub fn locator_request() -> impl Strategy<Value = LocatorRequest> {
    (
        any::<u32>(),
        bounded_vec(hash(), MAX_LOCATOR_HASHES),
        hash(),
    )
        .prop_map(|(protocol_version, locator, stop)| LocatorRequest {
            protocol_version,
            locator,
            stop,
        })
}

pub fn header() -> impl Strategy<Value = Header> {
    (
        any::<u32>(),
        hash(),
        hash(),
        any::<u64>(),
        any::<u32>(),
        any::<u64>(),
    )
        .prop_map(
            |(version, prev_hash, merkle_root, time, bits, nonce)| Header {
                version,
                prev_hash,
                merkle_root,
                time,
                bits,
                nonce,
            },
        )
}

pub fn coinbase() -> impl Strategy<Value = Coinbase> {
    (any::<u64>(), any::<[u8; 20]>(), any::<u64>()).prop_map(|(height, to, amount)| Coinbase {
        height,
        to: Address(to),
        amount: Amount(amount),
    })
}

/// A transfer with random bytes for key and signature: the wire does not verify signatures.
pub fn transfer() -> impl Strategy<Value = Transfer> {
    (
        any::<[u8; 32]>(),
        any::<[u8; 20]>(),
        any::<u64>(),
        any::<u64>(),
        any::<u64>(),
        any::<[u8; 64]>(),
    )
        .prop_map(|(from, to, amount, fee, nonce, signature)| Transfer {
            from,
            to: Address(to),
            amount: Amount(amount),
            fee: Amount(fee),
            nonce,
            signature,
        })
}

pub fn transaction() -> impl Strategy<Value = Transaction> {
    prop_oneof![
        coinbase().prop_map(Transaction::Coinbase),
        transfer().prop_map(Transaction::Transfer),
    ]
}

/// A block with up to five transactions of either kind (the header need not commit to them:
/// the wire layer does not validate).
pub fn block() -> impl Strategy<Value = Block> {
    (header(), bounded_vec(transaction(), 5)).prop_map(|(header, transactions)| Block {
        header,
        transactions,
    })
}

pub fn reject() -> impl Strategy<Value = Reject> {
    (
        bounded_string::<12>(),
        any::<u8>(),
        bounded_string::<MAX_REJECT_REASON>(),
        proptest::option::of(hash()),
    )
        .prop_map(|(message, code, reason, hash)| Reject {
            message,
            code,
            reason,
            hash,
        })
}

/// Any message, of every variant.
pub fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        version().prop_map(|v| Message::Version(Box::new(v))),
        Just(Message::Verack),
        any::<u64>().prop_map(Message::Ping),
        any::<u64>().prop_map(Message::Pong),
        bounded_vec(timestamped_address(), 30).prop_map(Message::Addr),
        Just(Message::GetAddr),
        inv_list().prop_map(Message::Inv),
        inv_list().prop_map(Message::GetData),
        inv_list().prop_map(Message::NotFound),
        block().prop_map(|b| Message::Block(Box::new(b))),
        transaction().prop_map(|tx| Message::Tx(Box::new(tx))),
        locator_request().prop_map(Message::GetHeaders),
        locator_request().prop_map(Message::GetBlocks),
        bounded_vec(header(), 30).prop_map(Message::Headers),
        reject().prop_map(|r| Message::Reject(Box::new(r))),
        Just(Message::SendHeaders),
        (any::<bool>(), any::<u64>()).prop_map(|(high_bandwidth, version)| {
            Message::SendCmpct(SendCmpct {
                high_bandwidth,
                version,
            })
        }),
        compact_block().prop_map(|b| Message::CmpctBlock(Box::new(b))),
        (hash(), bounded_vec(any::<u32>(), 30)).prop_map(|(block_hash, indexes)| {
            Message::GetBlockTxn(GetBlockTxn {
                block_hash,
                indexes,
            })
        }),
        (hash(), bounded_vec(transaction(), 10))
            .prop_map(|(block_hash, txs)| Message::BlockTxn(BlockTxn { block_hash, txs })),
    ]
}

/// A compact block: any header, nonce, short ids and prefilled transactions.
pub fn compact_block() -> impl Strategy<Value = CompactBlock> {
    (
        header(),
        any::<u64>(),
        bounded_vec(any::<[u8; 6]>().prop_map(ShortId), 30),
        bounded_vec(
            (any::<u32>(), transaction()).prop_map(|(index, tx)| PrefilledTx { index, tx }),
            5,
        ),
    )
        .prop_map(|(header, nonce, short_ids, prefilled)| CompactBlock {
            header,
            nonce,
            short_ids,
            prefilled,
        })
}
