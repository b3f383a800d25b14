//! Round trips of every wire message through framing and the incremental decoder.
//!
//! Every message type has its own property: the frame has the documented layout (checked
//! against an independent SHA-256d), decodes back to the same value after the handshake, its
//! payload re-encodes to the identical bytes (the encoding is canonical), and encoding is
//! deterministic. Further properties show that decoding is incremental: any split of the
//! bytes, down to one byte at a time, yields each message exactly once and in order.

#[path = "wire_strategies/mod.rs"]
mod wire_strategies;

use bytes::BytesMut;
use noded::encoding::BoundedVec;
use noded::types::block::{Header, HEADER_SIZE};
use noded::types::transaction::MAX_TX_SIZE;
use noded::types::{Address, Amount, Hash256, NetworkMagic, NodeId, Transaction, Transfer};
use noded::wire::frame::encode_payload;
use noded::wire::limits::{
    max_payload, FRAME_HEADER_SIZE, MAX_ADDR_ITEMS, MAX_ADDR_PAYLOAD, MAX_HANDSHAKE_PAYLOAD,
    MAX_HEADERS_ITEMS, MAX_HEADERS_PAYLOAD, MAX_INV_ITEMS, MAX_INV_PAYLOAD, MAX_LOCATOR_HASHES,
    MAX_LOCATOR_PAYLOAD, MAX_REJECT_PAYLOAD, MAX_REJECT_REASON, MAX_USER_AGENT,
    MAX_VERSION_PAYLOAD,
};
use noded::wire::{
    decode_payload, encode_frame, frame_bytes, Command, FrameDecoder, InvItem, InvKind,
    LocatorRequest, Message, MessageCodec, NetAddress, Reject, TimestampedAddress, Version,
    WireError,
};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use wire_strategies::*;

fn fail(what: impl std::fmt::Display) -> TestCaseError {
    TestCaseError::fail(what.to_string())
}

/// The whole round-trip contract for one message.
fn check_round_trip(magic: NetworkMagic, message: &Message) -> Result<(), TestCaseError> {
    let command = message.command();
    let frame = frame_bytes(magic, message).map_err(|e| fail(format!("encode: {e}")))?;

    // The frame layout, checked field by field without the decoder.
    prop_assert!(frame.len() >= FRAME_HEADER_SIZE);
    let payload = &frame[FRAME_HEADER_SIZE..];
    prop_assert_eq!(&frame[0..4], &magic.0[..]);
    prop_assert_eq!(&frame[4..16], &command.to_bytes()[..]);
    let length = u32::from_le_bytes(frame[16..20].try_into().unwrap()) as usize;
    prop_assert_eq!(length, payload.len());
    prop_assert_eq!(&frame[20..24], &independent_checksum(payload)[..]);
    prop_assert!(payload.len() <= max_payload(command));

    // Decodes to the same value after the handshake, consuming exactly the frame.
    let mut decoder = FrameDecoder::new(magic);
    decoder.set_handshake_complete();
    let mut buf = BytesMut::from(&frame[..]);
    match decoder.decode(&mut buf) {
        Ok(Some(got)) => prop_assert_eq!(&got, message),
        other => return Err(fail(format!("expected the message, got {other:?}"))),
    }
    prop_assert!(buf.is_empty(), "{} bytes left over", buf.len());
    prop_assert!(matches!(decoder.decode(&mut buf), Ok(None)));

    // Before the handshake: the same message if it is handshake-sized, else refused from the
    // header with the handshake limit.
    let mut early = FrameDecoder::new(magic);
    let limit = max_payload(command).min(MAX_HANDSHAKE_PAYLOAD);
    prop_assert_eq!(early.payload_limit(command), limit);
    match early.decode(&mut BytesMut::from(&frame[..])) {
        Ok(Some(got)) if payload.len() <= MAX_HANDSHAKE_PAYLOAD => prop_assert_eq!(&got, message),
        Err(WireError::PayloadTooLarge {
            command: c,
            len,
            max,
        }) if payload.len() > MAX_HANDSHAKE_PAYLOAD => {
            prop_assert_eq!((c, len, max), (command, payload.len(), limit));
        }
        other => {
            return Err(fail(format!(
                "pre-handshake decode of a {}-byte payload gave {other:?}",
                payload.len()
            )))
        }
    }

    // Canonical: the payload alone decodes to the value, which re-encodes to the same bytes.
    let again = decode_payload(command, payload).map_err(|e| fail(format!("payload: {e}")))?;
    prop_assert_eq!(&again, message);
    let mut reencoded = Vec::new();
    encode_payload(&again, &mut reencoded);
    prop_assert_eq!(&reencoded[..], payload);

    // Deterministic: a clone encodes to the same bytes, also when appended to a buffer that
    // already holds data, and through the tokio codec.
    prop_assert_eq!(
        frame_bytes(magic, &message.clone()).map_err(fail)?,
        frame.clone()
    );
    let mut appended = BytesMut::from(&b"prefix"[..]);
    encode_frame(magic, message, &mut appended).map_err(fail)?;
    prop_assert_eq!(&appended[..6], &b"prefix"[..]);
    prop_assert_eq!(&appended[6..], &frame[..]);
    let mut codec = MessageCodec::new(magic);
    let mut via_codec = BytesMut::new();
    tokio_util::codec::Encoder::encode(&mut codec, message.clone(), &mut via_codec)
        .map_err(fail)?;
    prop_assert_eq!(&via_codec[..], &frame[..]);
    codec.set_handshake_complete();
    let decoded = tokio_util::codec::Decoder::decode(&mut codec, &mut via_codec).map_err(fail)?;
    prop_assert_eq!(decoded.as_ref(), Some(message));
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn version_round_trips(m in magic(), v in version()) {
        check_round_trip(m, &Message::Version(Box::new(v)))?;
    }

    #[test]
    fn verack_round_trips(m in magic()) {
        check_round_trip(m, &Message::Verack)?;
    }

    #[test]
    fn ping_round_trips(m in magic(), nonce in any::<u64>()) {
        check_round_trip(m, &Message::Ping(nonce))?;
    }

    #[test]
    fn pong_round_trips(m in magic(), nonce in any::<u64>()) {
        check_round_trip(m, &Message::Pong(nonce))?;
    }

    #[test]
    fn addr_round_trips(m in magic(), list in bounded_vec(timestamped_address(), 40)) {
        check_round_trip(m, &Message::Addr(list))?;
    }

    #[test]
    fn getaddr_round_trips(m in magic()) {
        check_round_trip(m, &Message::GetAddr)?;
    }

    #[test]
    fn inv_round_trips(m in magic(), list in inv_list()) {
        check_round_trip(m, &Message::Inv(list))?;
    }

    #[test]
    fn getdata_round_trips(m in magic(), list in inv_list()) {
        check_round_trip(m, &Message::GetData(list))?;
    }

    #[test]
    fn notfound_round_trips(m in magic(), list in inv_list()) {
        check_round_trip(m, &Message::NotFound(list))?;
    }

    #[test]
    fn block_round_trips(m in magic(), b in block()) {
        check_round_trip(m, &Message::Block(Box::new(b)))?;
    }

    #[test]
    fn tx_round_trips(m in magic(), tx in transaction()) {
        check_round_trip(m, &Message::Tx(Box::new(tx)))?;
    }

    #[test]
    fn getheaders_round_trips(m in magic(), req in locator_request()) {
        check_round_trip(m, &Message::GetHeaders(req))?;
    }

    #[test]
    fn getblocks_round_trips(m in magic(), req in locator_request()) {
        check_round_trip(m, &Message::GetBlocks(req))?;
    }

    #[test]
    fn headers_round_trips(m in magic(), list in bounded_vec(header(), 40)) {
        check_round_trip(m, &Message::Headers(list))?;
    }

    #[test]
    fn reject_round_trips(m in magic(), r in reject()) {
        check_round_trip(m, &Message::Reject(Box::new(r)))?;
    }

    #[test]
    fn sendheaders_round_trips(m in magic()) {
        check_round_trip(m, &Message::SendHeaders)?;
    }

    /// The same message comes out exactly once, only when its last byte has arrived, however
    /// the bytes are split: one at a time, and in random chunks, all into the same buffer.
    #[test]
    fn decoding_is_incremental(
        msg in message(),
        chunks in vec(1usize..=97, 1..24),
        handshake_complete in any::<bool>(),
    ) {
        let frame = frame_bytes(MAGIC, &msg).map_err(fail)?;
        prop_assume!(handshake_complete || frame.len() - FRAME_HEADER_SIZE <= MAX_HANDSHAKE_PAYLOAD);
        for sizes in [&[1usize][..], &chunks[..]] {
            let mut d = decoder(handshake_complete);
            let out = feed_in_chunks(&mut d, &frame, sizes).map_err(fail)?;
            prop_assert_eq!(out.len(), 1, "chunks {:?}", sizes);
            prop_assert_eq!(out[0].0, frame.len(), "message out before its last byte");
            prop_assert_eq!(&out[0].1, &msg);
        }
    }

    /// Several frames back to back, split anywhere, decode in order, each exactly once.
    #[test]
    fn back_to_back_frames_decode_in_order(
        msgs in vec(message(), 1..6),
        chunks in vec(1usize..=200, 1..16),
    ) {
        let mut stream = Vec::new();
        let mut ends = Vec::new();
        for m in &msgs {
            stream.extend_from_slice(&frame_bytes(MAGIC, m).map_err(fail)?);
            ends.push(stream.len());
        }
        // All at once.
        let mut d = decoder(true);
        let mut buf = BytesMut::from(&stream[..]);
        for m in &msgs {
            let got = d.decode(&mut buf).map_err(fail)?;
            prop_assert_eq!(got.as_ref(), Some(m));
        }
        prop_assert!(buf.is_empty());
        prop_assert!(matches!(d.decode(&mut buf), Ok(None)));
        // In chunks: each message appears as soon as the chunk holding its last byte arrives.
        let mut d = decoder(true);
        let out = feed_in_chunks(&mut d, &stream, &chunks).map_err(fail)?;
        let got: Vec<&Message> = out.iter().map(|(_, m)| m).collect();
        prop_assert_eq!(got, msgs.iter().collect::<Vec<_>>());
        for ((fed, _), end) in out.iter().zip(&ends) {
            prop_assert!(fed >= end, "message out after {} of its {} bytes", fed, end);
        }
    }

    /// Equal values give equal bytes, whichever way they were built.
    #[test]
    fn encoding_is_deterministic(msg in message()) {
        let a = frame_bytes(MAGIC, &msg).map_err(fail)?;
        let b = frame_bytes(MAGIC, &msg.clone()).map_err(fail)?;
        prop_assert_eq!(&a, &b);
        // Rebuilding the value from its own decoded form changes nothing either.
        let rebuilt = decode_payload(msg.command(), &a[FRAME_HEADER_SIZE..]).map_err(fail)?;
        prop_assert_eq!(frame_bytes(MAGIC, &rebuilt).map_err(fail)?, a);
    }
}

/// Known-answer frames, written out by hand from the frame layout: magic, command, u32 LE
/// length, first four bytes of SHA-256d, payload (fixed-width little-endian integers).
#[test]
fn frames_match_hand_written_bytes() {
    // VERACK: empty payload; SHA-256d("") starts 5d f6 e0 e2 (as in Bitcoin).
    let mut expected = Vec::new();
    expected.extend_from_slice(&[0x6e, 0x64, 0x0e, 0x9e]);
    expected.extend_from_slice(b"verack\0\0\0\0\0\0");
    expected.extend_from_slice(&[0, 0, 0, 0]);
    expected.extend_from_slice(&[0x5d, 0xf6, 0xe0, 0xe2]);
    assert_eq!(frame_bytes(MAGIC, &Message::Verack).unwrap(), expected);

    // PING with nonce 0x0102030405060708: eight little-endian bytes.
    let payload = [8, 7, 6, 5, 4, 3, 2, 1];
    let mut expected = Vec::new();
    expected.extend_from_slice(&[0x6e, 0x64, 0x0e, 0x9e]);
    expected.extend_from_slice(b"ping\0\0\0\0\0\0\0\0");
    expected.extend_from_slice(&[8, 0, 0, 0]);
    expected.extend_from_slice(&independent_checksum(&payload));
    expected.extend_from_slice(&payload);
    assert_eq!(
        frame_bytes(MAGIC, &Message::Ping(0x0102_0304_0506_0708)).unwrap(),
        expected
    );

    // INV with one block item: u64 count, u32 kind tag (Tx = 0, Block = 1), 32-byte hash.
    let item = InvItem {
        kind: InvKind::Block,
        hash: Hash256([0xab; 32]),
    };
    let mut payload = vec![1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0];
    payload.extend_from_slice(&[0xab; 32]);
    let msg = Message::Inv(BoundedVec::new(vec![item]).unwrap());
    assert_eq!(
        frame_bytes(MAGIC, &msg).unwrap(),
        raw_frame(MAGIC, Command::Inv, &payload)
    );

    // The command names of all twenty commands, as they appear on the wire.
    let names: Vec<&str> = Command::ALL.iter().map(|c| c.name()).collect();
    assert_eq!(
        names,
        [
            "version",
            "verack",
            "ping",
            "pong",
            "addr",
            "getaddr",
            "inv",
            "getdata",
            "notfound",
            "block",
            "tx",
            "getheaders",
            "getblocks",
            "headers",
            "reject",
            "sendheaders",
            "sendcmpct",
            "cmpctblock",
            "getblocktxn",
            "blocktxn"
        ]
    );
}

/// Each payload ceiling is exactly the size of the largest valid payload: the fullest
/// message of each kind encodes to its limit, and still round-trips.
#[test]
fn largest_valid_payloads_exactly_fill_their_limits() {
    let hash = Hash256([7; 32]);
    let addr = NetAddress {
        services: u64::MAX,
        ip: [1; 16],
        port: 8333,
    };
    let header = Header {
        version: 1,
        prev_hash: hash,
        merkle_root: hash,
        time: 1,
        bits: 2,
        nonce: 3,
    };
    let inv = BoundedVec::new(vec![
        InvItem {
            kind: InvKind::Tx,
            hash
        };
        MAX_INV_ITEMS
    ])
    .unwrap();
    let locator = LocatorRequest {
        protocol_version: 1,
        locator: BoundedVec::new(vec![hash; MAX_LOCATOR_HASHES]).unwrap(),
        stop: hash,
    };
    let cases: Vec<(Message, usize)> = vec![
        (
            Message::Version(Box::new(Version {
                protocol_version: 1,
                services: 1,
                timestamp: -1,
                receiver: addr,
                sender: addr,
                nonce: 9,
                user_agent: noded::encoding::BoundedString::new("u".repeat(MAX_USER_AGENT))
                    .unwrap(),
                best_height: 5,
                node_id: NodeId([3; 32]),
                relay: true,
            })),
            MAX_VERSION_PAYLOAD,
        ),
        (Message::Verack, 0),
        (Message::Ping(1), 8),
        (Message::Pong(1), 8),
        (
            Message::Addr(
                BoundedVec::new(vec![TimestampedAddress { time: 1, addr }; MAX_ADDR_ITEMS])
                    .unwrap(),
            ),
            MAX_ADDR_PAYLOAD,
        ),
        (Message::GetAddr, 0),
        (Message::Inv(inv.clone()), MAX_INV_PAYLOAD),
        (Message::GetData(inv.clone()), MAX_INV_PAYLOAD),
        (Message::NotFound(inv), MAX_INV_PAYLOAD),
        (
            Message::Tx(Box::new(Transaction::Transfer(Transfer {
                from: [1; 32],
                to: Address([2; 20]),
                amount: Amount(3),
                fee: Amount(4),
                nonce: 5,
                signature: [6; 64],
            }))),
            MAX_TX_SIZE,
        ),
        (Message::GetHeaders(locator.clone()), MAX_LOCATOR_PAYLOAD),
        (Message::GetBlocks(locator), MAX_LOCATOR_PAYLOAD),
        (
            Message::Headers(BoundedVec::new(vec![header; MAX_HEADERS_ITEMS]).unwrap()),
            MAX_HEADERS_PAYLOAD,
        ),
        (
            Message::Reject(Box::new(Reject {
                message: noded::encoding::BoundedString::new("x".repeat(12)).unwrap(),
                code: 0x10,
                reason: noded::encoding::BoundedString::new("r".repeat(MAX_REJECT_REASON)).unwrap(),
                hash: Some(hash),
            })),
            MAX_REJECT_PAYLOAD,
        ),
        (Message::SendHeaders, 0),
        (
            Message::SendCmpct(noded::wire::compact::SendCmpct {
                high_bandwidth: true,
                version: 1,
            }),
            noded::wire::limits::SENDCMPCT_PAYLOAD,
        ),
        (
            Message::GetBlockTxn(noded::wire::compact::GetBlockTxn {
                block_hash: hash,
                indexes: BoundedVec::new(vec![7; noded::types::block::MAX_BLOCK_TXS]).unwrap(),
            }),
            noded::wire::limits::MAX_GETBLOCKTXN_PAYLOAD,
        ),
    ];
    for (msg, size) in &cases {
        let command = msg.command();
        assert_eq!(max_payload(command), *size, "{command}");
        let frame = frame_bytes(MAGIC, msg).unwrap();
        assert_eq!(frame.len() - FRAME_HEADER_SIZE, *size, "{command}");
        let mut d = decoder(true);
        let got = decode_once(&mut d, &frame).unwrap();
        assert_eq!(got.as_ref(), Some(msg), "{command}");
    }
    assert_eq!(HEADER_SIZE, 88);
    // Nothing larger can be built: the bounded containers refuse one more item.
    assert!(BoundedVec::<Hash256, MAX_LOCATOR_HASHES>::new(vec![hash; 102]).is_err());
    assert!(noded::encoding::BoundedString::<MAX_USER_AGENT>::new("u".repeat(257)).is_err());
}
