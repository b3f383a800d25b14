//! "Random bytes never panic": the frame decoder and payload decoder against arbitrary,
//! truncated and corrupted input, in both handshake states.
//!
//! A panic anywhere fails the property (proptest catches it and shrinks the input). Beyond
//! not panicking, each property asserts what the outcome must be where that is determined:
//! a truncated frame needs more bytes, a corrupted payload is a bad checksum, a payload that
//! decodes is the canonical encoding of what it decodes to.

#[path = "wire_strategies/mod.rs"]
mod wire_strategies;

use noded::wire::frame::encode_payload;
use noded::wire::limits::{max_payload, FRAME_HEADER_SIZE, MAX_HANDSHAKE_PAYLOAD};
use noded::wire::{decode_payload, frame_bytes, Command, Message, WireError};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::{select, Index};
use wire_strategies::*;

fn command() -> impl Strategy<Value = Command> {
    select(Command::ALL.to_vec())
}

/// The only errors a payload may cause once its frame header and checksum are good.
fn is_payload_error(err: &WireError, command: Command) -> bool {
    match err {
        WireError::MalformedPayload { command: c, .. }
        | WireError::TooManyItems { command: c, .. } => *c == command,
        _ => false,
    }
}

/// Whether `message` re-encodes to exactly `payload`.
fn is_canonical(message: &Message, payload: &[u8]) -> bool {
    let mut out = Vec::new();
    encode_payload(message, &mut out);
    out == payload
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Arbitrary bytes, with or without a correct magic in front, fed in arbitrary chunks.
    #[test]
    fn random_bytes_never_panic(
        with_magic in any::<bool>(),
        bytes in vec(any::<u8>(), 0..2048),
        chunks in vec(1usize..300, 1..10),
        handshake_complete in any::<bool>(),
    ) {
        let mut input = if with_magic { MAGIC.0.to_vec() } else { Vec::new() };
        input.extend_from_slice(&bytes);
        let mut d = decoder(handshake_complete);
        let _ = feed_in_chunks(&mut d, &input, &chunks);
        let mut d = decoder(handshake_complete);
        let _ = decode_once(&mut d, &input);
    }

    /// A well-formed header for a random command with random body bytes behind it.
    #[test]
    fn random_body_after_a_valid_header_never_panics(
        cmd in command(),
        body in vec(any::<u8>(), 0..1500),
        claimed in prop_oneof![Just(None), any::<u32>().prop_map(Some)],
        good_checksum in any::<bool>(),
        handshake_complete in any::<bool>(),
    ) {
        let len = claimed.unwrap_or(body.len() as u32);
        let sum = if good_checksum { independent_checksum(&body) } else { [0x5a; 4] };
        let mut input = raw_header(MAGIC, cmd.to_bytes(), len, sum);
        input.extend_from_slice(&body);
        let mut d = decoder(handshake_complete);
        let limit = d.payload_limit(cmd);
        let result = decode_once(&mut d, &input);
        let len = len as usize;
        if len > limit {
            let too_large = matches!(result, Err(WireError::PayloadTooLarge { .. }));
            prop_assert!(too_large, "{:?}", result);
        } else if len > body.len() {
            prop_assert!(matches!(result, Ok(None)), "{:?}", result);
        } else if good_checksum && len == body.len() {
            match &result {
                Ok(Some(m)) => {
                    prop_assert_eq!(m.command(), cmd);
                    prop_assert!(is_canonical(m, &body));
                }
                Err(e) => prop_assert!(is_payload_error(e, cmd), "{:?}", e),
                Ok(None) => prop_assert!(false, "complete frame not decoded"),
            }
        }
    }

    /// A random 12-byte command field: rejected as malformed or unknown unless it happens
    /// to be a real command name.
    #[test]
    fn random_command_fields_never_panic(field in any::<[u8; 12]>(), len in 0u32..64) {
        let mut d = decoder(true);
        let result = decode_once(&mut d, &raw_header(MAGIC, field, len, [0; 4]));
        let real = Command::ALL.iter().any(|c| c.to_bytes() == field);
        if !real {
            let rejected = matches!(
                result,
                Err(WireError::MalformedCommand(_) | WireError::UnknownCommand(_))
            );
            prop_assert!(rejected, "{:?}", result);
        }
    }

    /// The payload decoder alone, on arbitrary bytes: an error for that command, or a message
    /// whose encoding is exactly those bytes.
    #[test]
    fn payload_decoding_of_random_bytes_is_canonical_or_an_error(
        cmd in command(),
        bytes in vec(any::<u8>(), 0..600),
    ) {
        match decode_payload(cmd, &bytes) {
            Ok(m) => {
                prop_assert_eq!(m.command(), cmd);
                prop_assert!(is_canonical(&m, &bytes));
            }
            Err(e) => prop_assert!(is_payload_error(&e, cmd), "{:?}", e),
        }
    }

    /// Every strict prefix of a valid frame asks for more bytes, and the rest completes it.
    #[test]
    fn truncated_valid_frames_need_more_bytes(
        msg in message(),
        cut in any::<Index>(),
        handshake_complete in any::<bool>(),
    ) {
        let frame = frame_bytes(MAGIC, &msg).unwrap();
        let payload_len = frame.len() - FRAME_HEADER_SIZE;
        let cut = cut.index(frame.len());
        let mut d = decoder(handshake_complete);
        let mut buf = bytes::BytesMut::from(&frame[..cut]);
        let result = d.decode(&mut buf);
        let fits = handshake_complete || payload_len <= MAX_HANDSHAKE_PAYLOAD;
        if !fits && cut >= FRAME_HEADER_SIZE {
            // The header is complete and announces too much for this state.
            let too_large = matches!(result, Err(WireError::PayloadTooLarge { .. }));
            prop_assert!(too_large, "{:?}", result);
        } else {
            prop_assert!(matches!(result, Ok(None)), "cut {}: {:?}", cut, result);
            buf.extend_from_slice(&frame[cut..]);
            let rest = d.decode(&mut buf);
            if fits {
                prop_assert_eq!(rest.unwrap(), Some(msg));
            } else {
                let too_large = matches!(rest, Err(WireError::PayloadTooLarge { .. }));
                prop_assert!(too_large, "{:?}", rest);
            }
        }
    }

    /// Flipping bytes of a valid frame gives an error or a message, never a panic; where the
    /// damage is, decides which error.
    #[test]
    fn corrupted_frames_never_panic(
        msg in message(),
        flips in vec((any::<Index>(), 1u8..=255), 1..4),
        handshake_complete in any::<bool>(),
    ) {
        let frame = frame_bytes(MAGIC, &msg).unwrap();
        let mut bad = frame.clone();
        for (at, mask) in &flips {
            bad[at.index(frame.len())] ^= mask;
        }
        let mut d = decoder(handshake_complete);
        let result = decode_once(&mut d, &bad);
        let changed = |range: std::ops::Range<usize>| frame[range.clone()] != bad[range];
        let fits = handshake_complete || frame.len() - FRAME_HEADER_SIZE <= MAX_HANDSHAKE_PAYLOAD;
        if changed(0..4) {
            let wrong_magic = matches!(result, Err(WireError::WrongMagic { .. }));
            prop_assert!(wrong_magic, "{:?}", result);
        } else if !changed(4..20) && fits && (changed(20..24) || changed(24..frame.len())) {
            // Same command and length, different checksum or payload: SHA-256d tells.
            let bad_checksum = matches!(result, Err(WireError::BadChecksum { .. }));
            prop_assert!(bad_checksum, "{:?}", result);
        }
    }

    /// Corrupt the payload but fix the checksum: the payload decoder gets the damage and must
    /// either refuse it for that command or return a message that encodes to those bytes.
    #[test]
    fn corrupted_payloads_with_a_correct_checksum_are_canonical_or_rejected(
        msg in message(),
        flips in vec((any::<Index>(), any::<u8>()), 1..4),
    ) {
        let cmd = msg.command();
        let mut payload = payload_of(&msg);
        prop_assume!(!payload.is_empty());
        for (at, value) in &flips {
            let i = at.index(payload.len());
            payload[i] = *value;
        }
        prop_assert!(payload.len() <= max_payload(cmd));
        let mut d = decoder(true);
        match decode_once(&mut d, &raw_frame(MAGIC, cmd, &payload)) {
            Ok(Some(m)) => {
                prop_assert_eq!(m.command(), cmd);
                prop_assert!(is_canonical(&m, &payload));
            }
            Ok(None) => prop_assert!(false, "complete frame not decoded"),
            Err(e) => prop_assert!(is_payload_error(&e, cmd), "{:?}", e),
        }
    }
}

/// Every prefix of a few small frames, exhaustively, before and after the handshake.
#[test]
fn every_prefix_of_small_frames_needs_more_bytes() {
    let messages = [
        Message::Verack,
        Message::Ping(u64::MAX),
        Message::GetAddr,
        Message::SendHeaders,
    ];
    for msg in messages {
        let frame = frame_bytes(MAGIC, &msg).unwrap();
        for handshake in [false, true] {
            for cut in 0..frame.len() {
                let mut d = decoder(handshake);
                let result = decode_once(&mut d, &frame[..cut]);
                assert!(matches!(result, Ok(None)), "{msg:?} cut {cut}: {result:?}");
            }
        }
    }
}
