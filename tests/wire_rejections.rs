//! One test per rejection rule of the wire protocol, each asserting the specific `WireError`.
//!
//! Header-level rules (magic, command, length) are shown to fire from the 24-byte header
//! alone, before any body byte is present. Frames are built by hand (tests/wire_strategies)
//! so that the decoder is not only checked against the encoder.
//!
//! Where a payload rule is checked, the `reason` text (bincode's description of the error) is
//! matched too, so that e.g. "invalid bool" cannot pass by failing for a different reason.

#[path = "wire_strategies/mod.rs"]
mod wire_strategies;

use bytes::BytesMut;
use noded::encoding::{BoundedString, BoundedVec};
use noded::types::block::MAX_BLOCK_SIZE;
use noded::types::{
    Address, Amount, Block, Coinbase, Hash256, Header, NetworkMagic, NodeId, Transaction, Transfer,
};
use noded::wire::limits::{FRAME_HEADER_SIZE, MAX_HANDSHAKE_PAYLOAD, MAX_MESSAGE_SIZE};
use noded::wire::{
    decode_payload, encode_frame, frame_bytes, Command, InvItem, InvKind, LocatorRequest, Message,
    NetAddress, Reject, TimestampedAddress, Version, WireError,
};
use wire_strategies::*;

// ---------------------------------------------------------------------------------------------
// Fixtures.

fn net_address() -> NetAddress {
    NetAddress {
        services: 1,
        ip: [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 1],
        port: 18444,
    }
}

fn version_with_agent(agent: &str) -> Version {
    Version {
        protocol_version: 1,
        services: 1,
        timestamp: 1_767_225_600,
        receiver: net_address(),
        sender: net_address(),
        nonce: 42,
        user_agent: BoundedString::new(agent.to_string()).unwrap(),
        best_height: 7,
        node_id: NodeId([5; 32]),
        relay: true,
    }
}

/// Offset of the user agent's u64 length in a VERSION payload: u32 + u64 + i64 + 2 addresses
/// of 26 bytes + u64 nonce.
const USER_AGENT_OFFSET: usize = 4 + 8 + 8 + 26 + 26 + 8;

fn inv_of(n: usize) -> Message {
    let items = (0..n)
        .map(|i| InvItem {
            kind: if i % 2 == 0 {
                InvKind::Tx
            } else {
                InvKind::Block
            },
            hash: Hash256([i as u8; 32]),
        })
        .collect();
    Message::Inv(BoundedVec::new(items).unwrap())
}

fn header() -> Header {
    Header {
        version: 1,
        prev_hash: Hash256([1; 32]),
        merkle_root: Hash256([2; 32]),
        time: 3,
        bits: 0x207f_ffff,
        nonce: 4,
    }
}

fn coinbase() -> Transaction {
    Transaction::Coinbase(Coinbase {
        height: 1,
        to: Address([9; 20]),
        amount: Amount(50),
    })
}

fn transfer() -> Transaction {
    Transaction::Transfer(Transfer {
        from: [1; 32],
        to: Address([2; 20]),
        amount: Amount(3),
        fee: Amount(4),
        nonce: 5,
        signature: [6; 64],
    })
}

fn locator() -> LocatorRequest {
    LocatorRequest {
        protocol_version: 1,
        locator: BoundedVec::new(vec![Hash256([3; 32]); 3]).unwrap(),
        stop: Hash256::ZERO,
    }
}

/// A representative valid message of every command that has a payload.
fn messages_with_payloads() -> Vec<Message> {
    vec![
        Message::Version(Box::new(version_with_agent("/noded:0.1.0/"))),
        Message::Ping(7),
        Message::Pong(7),
        Message::Addr(
            BoundedVec::new(vec![
                TimestampedAddress {
                    time: 1,
                    addr: net_address()
                };
                2
            ])
            .unwrap(),
        ),
        inv_of(2),
        Message::GetData(
            BoundedVec::new(vec![InvItem {
                kind: InvKind::Block,
                hash: Hash256([8; 32]),
            }])
            .unwrap(),
        ),
        Message::NotFound(
            BoundedVec::new(vec![InvItem {
                kind: InvKind::Tx,
                hash: Hash256([8; 32]),
            }])
            .unwrap(),
        ),
        Message::Block(Box::new(Block {
            header: header(),
            transactions: BoundedVec::new(vec![coinbase(), transfer()]).unwrap(),
        })),
        Message::Tx(Box::new(coinbase())),
        Message::Tx(Box::new(transfer())),
        Message::GetHeaders(locator()),
        Message::GetBlocks(locator()),
        Message::Headers(BoundedVec::new(vec![header(); 2]).unwrap()),
        Message::Reject(Box::new(Reject {
            message: BoundedString::new("tx".to_string()).unwrap(),
            code: 0x10,
            reason: BoundedString::new("bad nonce".to_string()).unwrap(),
            hash: Some(Hash256([4; 32])),
        })),
    ]
}

/// Asserts that `result` is `MalformedPayload` for `command` with a reason containing `why`.
#[track_caller]
fn assert_malformed(result: Result<impl std::fmt::Debug, WireError>, command: Command, why: &str) {
    match result {
        Err(WireError::MalformedPayload { command: c, reason }) => {
            assert_eq!(c, command);
            assert!(
                reason.contains(why),
                "{command}: reason {reason:?} lacks {why:?}"
            );
        }
        other => panic!("{command}: expected MalformedPayload ({why}), got {other:?}"),
    }
}

#[track_caller]
fn assert_too_large(
    result: Result<Option<Message>, WireError>,
    command: Command,
    len: usize,
    max: usize,
) {
    match result {
        Err(WireError::PayloadTooLarge {
            command: c,
            len: l,
            max: m,
        }) => assert_eq!((c, l, m), (command, len, max)),
        other => panic!("{command} len {len}: expected PayloadTooLarge (max {max}), got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// WrongMagic.

#[test]
fn wrong_magic_is_rejected_as_soon_as_the_first_wrong_byte_arrives() {
    let good = frame_bytes(MAGIC, &Message::Ping(1)).unwrap();
    for handshake in [false, true] {
        // Any correct prefix of the magic (and of the header) just waits for more.
        for n in 0..FRAME_HEADER_SIZE {
            let mut d = decoder(handshake);
            assert!(matches!(decode_once(&mut d, &good[..n]), Ok(None)), "{n}");
        }
        // A wrong byte at position i is reported with only i + 1 bytes present.
        for i in 0..4 {
            let mut bytes = good[..=i].to_vec();
            bytes[i] ^= 0x80;
            let mut d = decoder(handshake);
            match decode_once(&mut d, &bytes) {
                Err(WireError::WrongMagic { expected, got }) => {
                    assert_eq!(expected, MAGIC.0);
                    assert_eq!(&got[..=i], &bytes[..]);
                    assert!(got[i + 1..].iter().all(|b| *b == 0));
                }
                other => panic!("byte {i}: expected WrongMagic, got {other:?}"),
            }
        }
    }
}

#[test]
fn another_networks_frame_is_rejected_at_its_first_differing_byte() {
    // main and regtest magics share their first two bytes (6e 64) and differ in the third.
    let main = noded::params::MAIN.magic;
    assert_eq!(main.0[..2], MAGIC.0[..2]);
    assert_ne!(main.0[2], MAGIC.0[2]);
    let frame = frame_bytes(main, &Message::Verack).unwrap();
    let mut d = decoder(true);
    let mut buf = BytesMut::new();
    for (i, byte) in frame.iter().enumerate() {
        buf.extend_from_slice(&[*byte]);
        let result = d.decode(&mut buf);
        if i < 2 {
            assert!(matches!(result, Ok(None)), "byte {i}: {result:?}");
        } else {
            match result {
                Err(WireError::WrongMagic { expected, got }) => {
                    assert_eq!(expected, MAGIC.0);
                    assert_eq!(got, [main.0[0], main.0[1], main.0[2], 0]);
                    return;
                }
                other => panic!("byte {i}: expected WrongMagic, got {other:?}"),
            }
        }
    }
    unreachable!("the third byte must have been rejected");
}

#[test]
fn wrong_magic_after_a_good_frame_is_rejected() {
    let mut stream = frame_bytes(MAGIC, &Message::Ping(1)).unwrap();
    stream.extend_from_slice(&frame_bytes(NetworkMagic(*b"evil"), &Message::Ping(2)).unwrap());
    let mut d = decoder(true);
    let mut buf = BytesMut::from(&stream[..]);
    assert_eq!(d.decode(&mut buf).unwrap(), Some(Message::Ping(1)));
    assert!(matches!(
        d.decode(&mut buf),
        Err(WireError::WrongMagic { got, .. }) if got == *b"evil"
    ));
}

// ---------------------------------------------------------------------------------------------
// MalformedCommand and UnknownCommand: from the header alone.

#[test]
fn command_with_non_ascii_bytes_is_malformed() {
    let fields: [&[u8]; 4] = [b"pin\xffg", b"ping\xc3\xa9", b"\x80", b"inv\xfe"];
    for name in fields {
        let field = command_field(name);
        for handshake in [false, true] {
            let mut d = decoder(handshake);
            match decode_once(&mut d, &raw_header(MAGIC, field, 0, [0; 4])) {
                Err(WireError::MalformedCommand(raw)) => assert_eq!(raw, field),
                other => panic!("{name:?}: expected MalformedCommand, got {other:?}"),
            }
        }
    }
}

#[test]
fn command_with_bytes_after_its_nul_padding_is_malformed() {
    let fields = [
        *b"ping\0x\0\0\0\0\0\0",
        *b"ping\0\0\0\0\0\0\0\x01",
        *b"verack\0\0\0\0\0 ",
        *b"\0ping\0\0\0\0\0\0\0",
    ];
    for field in fields {
        let mut d = decoder(true);
        match decode_once(&mut d, &raw_header(MAGIC, field, 0, [0; 4])) {
            Err(WireError::MalformedCommand(raw)) => assert_eq!(raw, field),
            other => panic!("{field:?}: expected MalformedCommand, got {other:?}"),
        }
    }
}

#[test]
fn empty_command_or_one_with_spaces_or_control_characters_is_malformed() {
    let names: [&[u8]; 5] = [b"", b"pi ng", b"ping\t", b"ping\x7f", b"ping\x01"];
    for name in names {
        let field = command_field(name);
        let mut d = decoder(true);
        match decode_once(&mut d, &raw_header(MAGIC, field, 0, [0; 4])) {
            Err(WireError::MalformedCommand(raw)) => assert_eq!(raw, field),
            other => panic!("{name:?}: expected MalformedCommand, got {other:?}"),
        }
    }
}

#[test]
fn unknown_command_is_rejected_from_the_header() {
    for name in [
        "pingx",
        "PING",
        "Verack",
        "abcdefghijkl",
        "version1",
        "alert",
        "feefilter",
    ] {
        let field = command_field(name.as_bytes());
        for handshake in [false, true] {
            let mut d = decoder(handshake);
            match decode_once(&mut d, &raw_header(MAGIC, field, 0, [0; 4])) {
                Err(WireError::UnknownCommand(got)) => assert_eq!(got, name),
                other => panic!("{name}: expected UnknownCommand, got {other:?}"),
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// PayloadTooLarge: from the header alone.

/// The payload limit of each command, written out from the payload layouts (u64 lengths,
/// u32 enum tags, 26-byte net addresses, 88-byte headers, 144-byte largest transaction).
fn expected_limit(command: Command) -> usize {
    match command {
        // u32 + u64 + i64 + 2 * 26 + u64 + (8 + 256) + u64 + 32 + bool
        Command::Version => 4 + 8 + 8 + 52 + 8 + 264 + 8 + 32 + 1,
        Command::Verack | Command::GetAddr | Command::SendHeaders => 0,
        Command::Ping | Command::Pong => 8,
        Command::Addr => 8 + 1_000 * (8 + 26),
        Command::Inv | Command::GetData | Command::NotFound => 8 + 50_000 * (4 + 32),
        Command::Block => 4 * 1024 * 1024,
        Command::Tx => 4 + 32 + 20 + 8 + 8 + 8 + 64,
        Command::GetHeaders | Command::GetBlocks => 4 + 8 + 101 * 32 + 32,
        Command::Headers => 8 + 2_000 * 88,
        // (8 + 12) + u8 + (8 + 256) + Option<hash>
        Command::Reject => 20 + 1 + 264 + 33,
        // bool + u64
        Command::SendCmpct => 1 + 8,
        // header + nonce + (8 + 104,857 short ids of 6) + (8 + 104,857 u32 indexes) + a block
        Command::CmpctBlock => 88 + 8 + (8 + 104_857 * 6) + (8 + 104_857 * 4) + 4 * 1024 * 1024,
        // hash + (8 + 104,857 u32 indexes)
        Command::GetBlockTxn => 32 + 8 + 104_857 * 4,
        // hash + transactions weighing at most a block
        Command::BlockTxn => 32 + 4 * 1024 * 1024,
    }
}

#[test]
fn payload_over_its_command_limit_is_rejected_from_the_header_alone() {
    for command in Command::ALL {
        let limit = expected_limit(command);
        for handshake in [false, true] {
            let mut d = decoder(handshake);
            let max = if handshake {
                limit
            } else {
                limit.min(MAX_HANDSHAKE_PAYLOAD)
            };
            assert_eq!(d.payload_limit(command), max, "{command}");
            // Exactly the limit: the header is accepted and the decoder waits for the body
            // (or, for an empty body, which is already complete, decodes the message).
            let at = raw_header(
                MAGIC,
                command.to_bytes(),
                max as u32,
                independent_checksum(&[]),
            );
            let result = decode_once(&mut d, &at);
            if max == 0 {
                assert!(
                    matches!(&result, Ok(Some(m)) if m.command() == command),
                    "{command} at its limit: {result:?}"
                );
            } else {
                assert!(
                    matches!(result, Ok(None)),
                    "{command} at its limit: {result:?}"
                );
            }
            // One byte over: refused with only the 24 header bytes present.
            let mut d = decoder(handshake);
            let over = raw_header(MAGIC, command.to_bytes(), max as u32 + 1, [0; 4]);
            assert_too_large(decode_once(&mut d, &over), command, max + 1, max);
        }
    }
}

#[test]
fn ping_announcing_nine_bytes_is_rejected_from_the_header() {
    let mut d = decoder(true);
    let head = raw_header(MAGIC, command_field(b"ping"), 9, [0; 4]);
    assert_too_large(decode_once(&mut d, &head), Command::Ping, 9, 8);
    // Even with a body and a correct checksum behind it.
    let mut d = decoder(true);
    let frame = raw_frame(MAGIC, Command::Ping, &[0; 9]);
    assert_too_large(decode_once(&mut d, &frame), Command::Ping, 9, 8);
}

#[test]
fn block_over_max_block_size_is_rejected_from_the_header() {
    let mut d = decoder(true);
    let len = MAX_BLOCK_SIZE + 1;
    let head = raw_header(MAGIC, command_field(b"block"), len as u32, [0; 4]);
    assert_too_large(
        decode_once(&mut d, &head),
        Command::Block,
        len,
        MAX_BLOCK_SIZE,
    );
}

#[test]
fn nothing_over_the_32_mib_ceiling_is_accepted_for_any_command() {
    assert_eq!(MAX_MESSAGE_SIZE, 32 * 1024 * 1024);
    for command in Command::ALL {
        for len in [
            MAX_MESSAGE_SIZE as u32,
            MAX_MESSAGE_SIZE as u32 + 1,
            u32::MAX,
        ] {
            for handshake in [false, true] {
                let mut d = decoder(handshake);
                let max = d.payload_limit(command);
                assert!(max <= MAX_MESSAGE_SIZE);
                let head = raw_header(MAGIC, command.to_bytes(), len, [0; 4]);
                assert_too_large(decode_once(&mut d, &head), command, len as usize, max);
            }
        }
    }
}

#[test]
fn handshake_limit_applies_until_the_handshake_completes() {
    // 55 inventory items: 8 + 55 * 36 = 1988 bytes, over the 1024-byte handshake limit.
    let big = inv_of(55);
    let frame = frame_bytes(MAGIC, &big).unwrap();
    let len = frame.len() - FRAME_HEADER_SIZE;
    assert_eq!(len, 1988);

    // Before: refused from the header alone, and with the body present too.
    let mut d = decoder(false);
    assert_too_large(
        decode_once(&mut d, &frame[..FRAME_HEADER_SIZE]),
        Command::Inv,
        len,
        MAX_HANDSHAKE_PAYLOAD,
    );
    let mut d = decoder(false);
    assert_too_large(
        decode_once(&mut d, &frame),
        Command::Inv,
        len,
        MAX_HANDSHAKE_PAYLOAD,
    );

    // A handshake-sized INV (28 items, 1016 bytes) is fine before the handshake.
    let small = inv_of(28);
    let mut d = decoder(false);
    assert_eq!(
        decode_once(&mut d, &frame_bytes(MAGIC, &small).unwrap()).unwrap(),
        Some(small)
    );

    // After VERSION and VERACK on the same decoder, the big INV is accepted.
    let mut d = decoder(false);
    let mut buf = BytesMut::new();
    buf.extend_from_slice(
        &frame_bytes(
            MAGIC,
            &Message::Version(Box::new(version_with_agent("/x/"))),
        )
        .unwrap(),
    );
    buf.extend_from_slice(&frame_bytes(MAGIC, &Message::Verack).unwrap());
    assert!(matches!(d.decode(&mut buf), Ok(Some(Message::Version(_)))));
    assert_eq!(d.decode(&mut buf).unwrap(), Some(Message::Verack));
    d.set_handshake_complete();
    buf.extend_from_slice(&frame);
    assert_eq!(d.decode(&mut buf).unwrap(), Some(big));
}

// ---------------------------------------------------------------------------------------------
// BadChecksum.

#[test]
fn a_checksum_that_does_not_match_the_payload_is_rejected() {
    let frame = frame_bytes(MAGIC, &Message::Ping(0x1122_3344)).unwrap();
    let payload = frame[FRAME_HEADER_SIZE..].to_vec();

    // The header's checksum altered.
    let mut bad = frame.clone();
    bad[20] ^= 1;
    let mut d = decoder(true);
    match decode_once(&mut d, &bad) {
        Err(WireError::BadChecksum {
            command,
            expected,
            got,
        }) => {
            assert_eq!(command, Command::Ping);
            assert_eq!(expected, independent_checksum(&payload));
            assert_eq!(got, <[u8; 4]>::try_from(&bad[20..24]).unwrap());
        }
        other => panic!("expected BadChecksum, got {other:?}"),
    }

    // A payload byte altered.
    let mut bad = frame.clone();
    bad[FRAME_HEADER_SIZE + 3] ^= 0x40;
    let mut d = decoder(true);
    match decode_once(&mut d, &bad) {
        Err(WireError::BadChecksum { expected, got, .. }) => {
            assert_eq!(expected, independent_checksum(&bad[FRAME_HEADER_SIZE..]));
            assert_eq!(got, independent_checksum(&payload));
        }
        other => panic!("expected BadChecksum, got {other:?}"),
    }

    // An empty payload has a checksum too.
    let mut d = decoder(false);
    let head = raw_header(MAGIC, command_field(b"verack"), 0, [0; 4]);
    assert!(matches!(
        decode_once(&mut d, &head),
        Err(WireError::BadChecksum {
            command: Command::Verack,
            ..
        })
    ));
}

#[test]
fn the_checksum_is_checked_before_the_payload_is_parsed() {
    // A payload that would be TooManyItems, under a wrong checksum: BadChecksum wins.
    let payload = 50_001u64.to_le_bytes();
    let mut frame = raw_frame(MAGIC, Command::Inv, &payload);
    frame[23] ^= 0xff;
    let mut d = decoder(true);
    assert!(matches!(
        decode_once(&mut d, &frame),
        Err(WireError::BadChecksum {
            command: Command::Inv,
            ..
        })
    ));
}

// ---------------------------------------------------------------------------------------------
// TooManyItems: only the count needs to be present after a valid header.

#[test]
fn list_counts_over_their_caps_are_rejected_from_the_count_alone() {
    let cases: [(Command, &[u8], u64, usize); 8] = [
        (Command::Inv, &[], 50_001, 50_000),
        (Command::GetData, &[], 50_001, 50_000),
        (Command::NotFound, &[], 50_001, 50_000),
        (Command::Headers, &[], 2_001, 2_000),
        (Command::Addr, &[], 1_001, 1_000),
        // The locator count follows the u32 protocol version.
        (Command::GetHeaders, &[1, 0, 0, 0], 102, 101),
        (Command::GetBlocks, &[1, 0, 0, 0], 102, 101),
        (Command::Inv, &[], u64::MAX, 50_000),
    ];
    for (command, prefix, count, max) in cases {
        let mut payload = prefix.to_vec();
        payload.extend_from_slice(&count.to_le_bytes());
        for handshake in [false, true] {
            let mut d = decoder(handshake);
            match decode_once(&mut d, &raw_frame(MAGIC, command, &payload)) {
                Err(WireError::TooManyItems {
                    command: c,
                    count: n,
                    max: m,
                }) => assert_eq!((c, n, m), (command, count, max)),
                other => panic!("{command} count {count}: expected TooManyItems, got {other:?}"),
            }
        }
        // A count at the cap is allowed: the same short payload is then merely truncated.
        let mut payload = prefix.to_vec();
        payload.extend_from_slice(&(max as u64).to_le_bytes());
        let mut d = decoder(true);
        assert_malformed(
            decode_once(&mut d, &raw_frame(MAGIC, command, &payload)),
            command,
            "UnexpectedEnd",
        );
    }
}

// ---------------------------------------------------------------------------------------------
// MalformedPayload.

#[test]
fn trailing_bytes_after_a_payload_are_rejected() {
    for msg in messages_with_payloads() {
        let command = msg.command();
        let mut payload = payload_of(&msg);
        payload.push(0);
        assert_malformed(decode_payload(command, &payload), command, "trailing");
        if payload.len() <= expected_limit(command) {
            let mut d = decoder(true);
            assert_malformed(
                decode_once(&mut d, &raw_frame(MAGIC, command, &payload)),
                command,
                "trailing",
            );
        }
    }
}

#[test]
fn a_truncated_payload_with_a_correct_checksum_is_rejected() {
    for msg in messages_with_payloads() {
        let command = msg.command();
        let payload = payload_of(&msg);
        for cut in [payload.len() - 1, payload.len() / 2, 1, 0] {
            let mut d = decoder(true);
            assert_malformed(
                decode_once(&mut d, &raw_frame(MAGIC, command, &payload[..cut])),
                command,
                "UnexpectedEnd",
            );
        }
    }
}

#[test]
fn a_relay_flag_other_than_0_or_1_is_rejected() {
    let payload = payload_of(&Message::Version(Box::new(version_with_agent("/noded/"))));
    let last = payload.len() - 1;
    assert_eq!(payload[last], 1, "relay is the last byte");
    for (flag, ok) in [(0u8, true), (1, true), (2, false), (0xff, false)] {
        let mut p = payload.clone();
        p[last] = flag;
        let mut d = decoder(false);
        let result = decode_once(&mut d, &raw_frame(MAGIC, Command::Version, &p));
        if ok {
            match result {
                Ok(Some(Message::Version(v))) => assert_eq!(v.relay, flag == 1),
                other => panic!("relay {flag}: {other:?}"),
            }
        } else {
            assert_malformed(result, Command::Version, "InvalidBooleanValue");
        }
    }
}

#[test]
fn an_unknown_inventory_kind_is_rejected() {
    for command in [Command::Inv, Command::GetData, Command::NotFound] {
        let mut payload = payload_of(&inv_of(1));
        // count (8 bytes), then the kind as a u32 little-endian tag: 0 = Tx, 1 = Block,
        // 2 = CompactBlock.
        assert_eq!(&payload[8..12], &[0, 0, 0, 0]);
        for tag in [3u32, 0x0100_0000, u32::MAX] {
            payload[8..12].copy_from_slice(&tag.to_le_bytes());
            let mut d = decoder(true);
            assert_malformed(
                decode_once(&mut d, &raw_frame(MAGIC, command, &payload)),
                command,
                "UnexpectedVariant",
            );
        }
    }
}

#[test]
fn unknown_transaction_kinds_and_option_tags_are_rejected() {
    // Transaction: u32 tag, 0 = Coinbase, 1 = Transfer.
    let mut payload = payload_of(&Message::Tx(Box::new(coinbase())));
    payload[0] = 2;
    let mut d = decoder(true);
    assert_malformed(
        decode_once(&mut d, &raw_frame(MAGIC, Command::Tx, &payload)),
        Command::Tx,
        "UnexpectedVariant",
    );
    // Reject.hash: a u8 tag, 0 = none, 1 = some.
    let reject = Message::Reject(Box::new(Reject {
        message: BoundedString::new("tx".into()).unwrap(),
        code: 1,
        reason: BoundedString::new("r".into()).unwrap(),
        hash: None,
    }));
    let mut payload = payload_of(&reject);
    let last = payload.len() - 1;
    assert_eq!(payload[last], 0);
    payload[last] = 2;
    let mut d = decoder(false);
    assert_malformed(
        decode_once(&mut d, &raw_frame(MAGIC, Command::Reject, &payload)),
        Command::Reject,
        "UnexpectedVariant",
    );
}

#[test]
fn invalid_utf8_in_text_fields_is_rejected() {
    let mut payload = payload_of(&Message::Version(Box::new(version_with_agent("abc"))));
    assert_eq!(
        &payload[USER_AGENT_OFFSET..USER_AGENT_OFFSET + 11],
        &[3, 0, 0, 0, 0, 0, 0, 0, b'a', b'b', b'c']
    );
    payload[USER_AGENT_OFFSET + 8..USER_AGENT_OFFSET + 11].copy_from_slice(&[0xc3, 0x28, 0xff]);
    let mut d = decoder(false);
    assert_malformed(
        decode_once(&mut d, &raw_frame(MAGIC, Command::Version, &payload)),
        Command::Version,
        "Utf8",
    );

    // In a REJECT reason: a lone continuation byte.
    let reject = Message::Reject(Box::new(Reject {
        message: BoundedString::new("tx".into()).unwrap(),
        code: 1,
        reason: BoundedString::new("ok".into()).unwrap(),
        hash: None,
    }));
    let mut payload = payload_of(&reject);
    // (8 + 2) message, 1 code, 8 length, then the reason's two bytes.
    payload[19] = 0x80;
    let mut d = decoder(false);
    assert_malformed(
        decode_once(&mut d, &raw_frame(MAGIC, Command::Reject, &payload)),
        Command::Reject,
        "Utf8",
    );
}

#[test]
fn a_user_agent_over_256_bytes_is_rejected() {
    // The exact cap is fine.
    let at_cap = Message::Version(Box::new(version_with_agent(&"a".repeat(256))));
    let mut d = decoder(false);
    assert_eq!(
        decode_once(&mut d, &frame_bytes(MAGIC, &at_cap).unwrap()).unwrap(),
        Some(at_cap.clone())
    );

    // 257 bytes, built by hand: the payload decoder refuses the length.
    let mut payload = payload_of(&at_cap);
    payload[USER_AGENT_OFFSET..USER_AGENT_OFFSET + 8].copy_from_slice(&257u64.to_le_bytes());
    payload.insert(USER_AGENT_OFFSET + 8, b'a');
    assert_malformed(
        decode_payload(Command::Version, &payload),
        Command::Version,
        "exceeds the cap",
    );
    // In a frame that payload is one byte over VERSION's limit: refused from the header.
    let mut d = decoder(false);
    let len = payload.len();
    assert_too_large(
        decode_once(&mut d, &raw_frame(MAGIC, Command::Version, &payload)),
        Command::Version,
        len,
        len - 1,
    );
    // A frame within the limit that claims 257 bytes is refused for the claim, before the
    // missing bytes matter.
    let mut d = decoder(false);
    assert_malformed(
        decode_once(
            &mut d,
            &raw_frame(MAGIC, Command::Version, &payload[..USER_AGENT_OFFSET + 20]),
        ),
        Command::Version,
        "exceeds the cap",
    );
}

#[test]
fn messages_without_payload_must_be_empty() {
    for command in [Command::Verack, Command::GetAddr, Command::SendHeaders] {
        // In a frame, the header alone already says too much.
        let mut d = decoder(false);
        let head = raw_header(MAGIC, command.to_bytes(), 1, [0; 4]);
        assert_too_large(decode_once(&mut d, &head), command, 1, 0);
        // The payload rule itself.
        assert_malformed(
            decode_payload(command, &[0]),
            command,
            "where none are allowed",
        );
        assert!(decode_payload(command, &[]).is_ok());
    }
}

#[test]
fn a_short_or_long_ping_payload_is_malformed() {
    for len in [0, 7] {
        let mut d = decoder(false);
        assert_malformed(
            decode_once(&mut d, &raw_frame(MAGIC, Command::Pong, &[1u8; 7][..len])),
            Command::Pong,
            "UnexpectedEnd",
        );
    }
    assert_malformed(
        decode_payload(Command::Ping, &[0; 9]),
        Command::Ping,
        "trailing",
    );
}

// ---------------------------------------------------------------------------------------------
// The encoder refuses what a peer must reject.

#[test]
fn the_encoder_refuses_a_block_over_max_block_size() {
    // 88-byte header + u64 count + 144 bytes per transfer: 29,126 transfers fit in 4 MiB,
    // 29,127 do not.
    let block_of = |n: usize| {
        Message::Block(Box::new(Block {
            header: header(),
            transactions: BoundedVec::new(vec![transfer(); n]).unwrap(),
        }))
    };
    let fits = block_of(29_126);
    let frame = frame_bytes(MAGIC, &fits).unwrap();
    assert_eq!(frame.len() - FRAME_HEADER_SIZE, 96 + 29_126 * 144);
    assert!(frame.len() - FRAME_HEADER_SIZE <= MAX_BLOCK_SIZE);
    let mut d = decoder(true);
    assert_eq!(decode_once(&mut d, &frame).unwrap().as_ref(), Some(&fits));

    let too_big = block_of(29_127);
    let len = 96 + 29_127 * 144;
    assert!(len > MAX_BLOCK_SIZE);
    let mut out = BytesMut::from(&b"earlier frames"[..]);
    match encode_frame(MAGIC, &too_big, &mut out) {
        Err(WireError::PayloadTooLarge {
            command,
            len: l,
            max,
        }) => assert_eq!((command, l, max), (Command::Block, len, MAX_BLOCK_SIZE)),
        other => panic!("expected PayloadTooLarge, got {other:?}"),
    }
    assert_eq!(&out[..], b"earlier frames", "nothing was written");
    assert!(matches!(
        frame_bytes(MAGIC, &too_big),
        Err(WireError::PayloadTooLarge {
            command: Command::Block,
            ..
        })
    ));
}
