//! "Never allocate beyond the limit": decoding never trusts a count or length from the wire
//! for an allocation.
//!
//! This test binary installs a counting global allocator that records the largest single
//! allocation request (alloc, alloc_zeroed, or the new size of a realloc) made by the current
//! thread while tracking is on. Tracking state is thread-local (const-initialised `Cell`s,
//! which need no allocation and no destructor), so tests running in parallel threads do not
//! see each other's allocations.
//!
//! Frames below carry payloads that claim huge item counts or string lengths but hold only a
//! few bytes (with a correct checksum, so they reach the payload decoder). Decoding must fail,
//! and the largest allocation must stay within `payload + SLACK`. Each case also checks that
//! trusting the claim would have needed more than that bound, so the bound really tells a
//! bounded decoder from a trusting one.

#[path = "wire_strategies/mod.rs"]
mod wire_strategies;

use bytes::BytesMut;
use noded::encoding::BoundedVec;
use noded::types::block::{Header, HEADER_SIZE, MAX_BLOCK_SIZE, MAX_BLOCK_TXS};
use noded::types::{Hash256, Transaction};
use noded::wire::limits::{
    FRAME_HEADER_SIZE, MAX_HANDSHAKE_PAYLOAD, MAX_HEADERS_ITEMS, MAX_MESSAGE_SIZE,
};
use noded::wire::{frame_bytes, Command, InvItem, Message, TimestampedAddress, WireError};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::mem::size_of;
use wire_strategies::*;

struct CountingAllocator;

thread_local! {
    static TRACKING: Cell<bool> = const { Cell::new(false) };
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    // try_with: the allocator may run while this thread's locals are being torn down.
    let _ = TRACKING.try_with(|tracking| {
        if tracking.get() {
            let _ = LARGEST.try_with(|largest| largest.set(largest.get().max(size)));
        }
    });
}

unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// Runs `f` with tracking on; returns its result and the largest single allocation it made.
fn largest_allocation_during<R>(f: impl FnOnce() -> R) -> (R, usize) {
    LARGEST.with(|l| l.set(0));
    TRACKING.with(|t| t.set(true));
    let result = f();
    TRACKING.with(|t| t.set(false));
    (result, LARGEST.with(|l| l.get()))
}

/// Allowance beyond the payload size. With the payload already in the buffer, a bounded
/// decoder allocates: at most 64 items up front for a list (`INITIAL_ITEMS` in
/// src/encoding.rs; 64 × the largest item, a `Transaction`, checked below to be under 16 KiB),
/// at most the cap of a string (≤ 256 bytes), and short error strings. The buffer itself may
/// at most be sized for the frame's announced length, which here is the real payload length.
/// 16 KiB covers all of it with room to spare, yet is far below what trusting any of the
/// claims below would take (each case asserts that).
const SLACK: usize = 16 * 1024;

/// Decodes `frame` (already in memory) with tracking on.
fn decode_tracked(
    handshake_complete: bool,
    frame: &[u8],
) -> (Result<Option<Message>, WireError>, usize) {
    let mut d = decoder(handshake_complete);
    let mut buf = BytesMut::from(frame);
    largest_allocation_during(move || d.decode(&mut buf))
}

struct Case {
    name: &'static str,
    command: Command,
    payload: Vec<u8>,
    /// What allocating for the claim would take, in bytes (saturating).
    trusting_would_take: usize,
    handshake_complete: bool,
}

fn count_then(prefix: &[u8], count: u64, tail: &[u8]) -> Vec<u8> {
    let mut out = prefix.to_vec();
    out.extend_from_slice(&count.to_le_bytes());
    out.extend_from_slice(tail);
    out
}

fn block_header_bytes() -> Vec<u8> {
    Header {
        version: 1,
        prev_hash: Hash256([1; 32]),
        merkle_root: Hash256([2; 32]),
        time: 3,
        bits: 4,
        nonce: 5,
    }
    .to_bytes()
    .to_vec()
}

/// VERSION payload up to (not including) the user agent's length: u32, u64, i64, two 26-byte
/// addresses, u64 nonce.
fn version_prefix() -> Vec<u8> {
    vec![1; 4 + 8 + 8 + 26 + 26 + 8]
}

fn cases() -> Vec<Case> {
    let tail = [0u8, 0, 0, 0, 1]; // a few bytes: not even one whole item
    vec![
        Case {
            name: "BLOCK claiming 80,000 transactions",
            command: Command::Block,
            payload: count_then(&block_header_bytes(), 80_000, &tail),
            trusting_would_take: 80_000 * size_of::<Transaction>(),
            handshake_complete: true,
        },
        Case {
            name: "BLOCK claiming the most transactions a block may have",
            command: Command::Block,
            payload: count_then(&block_header_bytes(), MAX_BLOCK_TXS as u64, &tail),
            trusting_would_take: MAX_BLOCK_TXS * size_of::<Transaction>(),
            handshake_complete: true,
        },
        Case {
            name: "BLOCK claiming u64::MAX transactions",
            command: Command::Block,
            payload: count_then(&block_header_bytes(), u64::MAX, &tail),
            trusting_would_take: usize::MAX,
            handshake_complete: true,
        },
        Case {
            name: "HEADERS claiming 2,000 headers with 10 bytes",
            command: Command::Headers,
            payload: count_then(&[], 2_000, &[0; 10]),
            trusting_would_take: 2_000 * size_of::<Header>(),
            handshake_complete: true,
        },
        Case {
            name: "ADDR claiming 1,000 addresses with 10 bytes",
            command: Command::Addr,
            payload: count_then(&[], 1_000, &[0; 10]),
            trusting_would_take: 1_000 * size_of::<TimestampedAddress>(),
            handshake_complete: true,
        },
        Case {
            name: "INV claiming 50,000 items with 10 bytes",
            command: Command::Inv,
            payload: count_then(&[], 50_000, &[0; 10]),
            trusting_would_take: 50_000 * size_of::<InvItem>(),
            handshake_complete: true,
        },
        Case {
            name: "GETDATA claiming 50,000 items, before the handshake",
            command: Command::GetData,
            payload: count_then(&[], 50_000, &[0; 10]),
            trusting_would_take: 50_000 * size_of::<InvItem>(),
            handshake_complete: false,
        },
        Case {
            name: "INV claiming u64::MAX items",
            command: Command::Inv,
            payload: count_then(&[], u64::MAX, &[]),
            trusting_would_take: usize::MAX,
            handshake_complete: true,
        },
        Case {
            name: "VERSION with a user agent of u64::MAX bytes",
            command: Command::Version,
            payload: count_then(&version_prefix(), u64::MAX, b"/noded/"),
            trusting_would_take: usize::MAX,
            handshake_complete: false,
        },
        Case {
            name: "REJECT with a reason of u64::MAX bytes",
            command: Command::Reject,
            // message "tx" (u64 length + 2 bytes), code, then the reason's length.
            payload: count_then(&[2, 0, 0, 0, 0, 0, 0, 0, b't', b'x', 0x10], u64::MAX, b"r"),
            trusting_would_take: usize::MAX,
            handshake_complete: false,
        },
    ]
}

#[test]
fn the_allocator_counts() {
    // Without this, a broken counter would pass every bound vacuously.
    let (_, largest) = largest_allocation_during(|| Vec::<u8>::with_capacity(1 << 20));
    assert!(largest >= 1 << 20, "{largest}");
    let (_, largest) = largest_allocation_during(|| ());
    assert_eq!(largest, 0);

    // And it sees the decoder's own allocations: 2,000 real headers need their memory.
    let headers = vec![
        Header {
            version: 1,
            prev_hash: Hash256::ZERO,
            merkle_root: Hash256::ZERO,
            time: 0,
            bits: 0,
            nonce: 0,
        };
        MAX_HEADERS_ITEMS
    ];
    let frame = frame_bytes(
        MAGIC,
        &Message::Headers(BoundedVec::new(headers.clone()).unwrap()),
    )
    .unwrap();
    let (result, largest) = decode_tracked(true, &frame);
    assert!(matches!(result, Ok(Some(Message::Headers(h))) if h.as_slice() == headers));
    assert!(
        largest >= MAX_HEADERS_ITEMS * size_of::<Header>(),
        "{largest}"
    );
}

#[test]
fn claimed_counts_and_lengths_do_not_drive_allocation() {
    assert!(64 * size_of::<Transaction>() < SLACK);
    assert_eq!(HEADER_SIZE, 88);
    for case in cases() {
        let bound = case.payload.len() + SLACK;
        assert!(
            case.trusting_would_take > bound,
            "{}: the bound would not tell",
            case.name
        );
        let frame = raw_frame(MAGIC, case.command, &case.payload);
        let (result, largest) = decode_tracked(case.handshake_complete, &frame);
        match &result {
            Err(WireError::MalformedPayload { command, .. })
            | Err(WireError::TooManyItems { command, .. }) => {
                assert_eq!(*command, case.command, "{}", case.name)
            }
            other => panic!("{}: expected a payload error, got {other:?}", case.name),
        }
        assert!(
            largest <= bound,
            "{}: largest allocation {largest} bytes, bound {bound}",
            case.name
        );
        println!(
            "{}: {result:?}; largest allocation {largest} bytes (bound {bound})",
            case.name
        );
    }
}

#[test]
fn a_block_header_claiming_32_mib_is_rejected_without_allocating_it() {
    for (len, handshake) in [
        (MAX_MESSAGE_SIZE as u32, true),
        (MAX_MESSAGE_SIZE as u32, false),
        (u32::MAX, true),
        (MAX_BLOCK_SIZE as u32 + 1, true),
        (MAX_HANDSHAKE_PAYLOAD as u32 + 1, false),
    ] {
        let head = raw_header(MAGIC, command_field(b"block"), len, [0; 4]);
        let (result, largest) = decode_tracked(handshake, &head);
        assert!(
            matches!(
                result,
                Err(WireError::PayloadTooLarge {
                    command: Command::Block,
                    ..
                })
            ),
            "{len}: {result:?}"
        );
        assert!(
            largest <= SLACK,
            "{len}: largest allocation {largest} bytes"
        );
    }
}

/// The most the decoder reserves for a body on the strength of its header alone
/// (`MAX_UPFRONT_RESERVE` in src/wire/frame.rs).
const UPFRONT_RESERVE: usize = 64 * 1024;

/// Body bytes arrive this many at a time, as a socket read might deliver them.
const BODY_CHUNK: usize = 16 * 1024;

#[test]
fn a_header_at_the_limit_reserves_a_chunk_and_the_buffer_grows_with_the_body() {
    // A decoder that sized its buffer for the announced body would allocate 4 MiB here.
    const { assert!(FRAME_HEADER_SIZE + UPFRONT_RESERVE < MAX_BLOCK_SIZE / 32) };
    // The limit in force: 4 MiB for BLOCK after the handshake, 1 KiB before.
    for (len, handshake) in [(MAX_BLOCK_SIZE, true), (MAX_HANDSHAKE_PAYLOAD, false)] {
        let mut d = decoder(handshake);
        // The header alone (a zero checksum: the body below will not match it).
        let mut buf =
            BytesMut::from(&raw_header(MAGIC, command_field(b"block"), len as u32, [0; 4])[..]);
        let (result, largest) = largest_allocation_during(|| d.decode(&mut buf));
        assert!(matches!(result, Ok(None)), "{len}: {result:?}");
        let reserve_bound = FRAME_HEADER_SIZE + len.min(UPFRONT_RESERVE);
        assert!(
            largest <= reserve_bound,
            "{len}: a bare header made an allocation of {largest} bytes, bound {reserve_bound}"
        );

        // Then the body, all but its last byte: the buffer grows only as bytes arrive (the
        // buffer at most doubles when it fills), never to the announced length ahead of them.
        let body = vec![0u8; len];
        let mut received = 0;
        let mut largest_overall = largest;
        while received < len - 1 {
            let chunk = &body[received..(received + BODY_CHUNK).min(len - 1)];
            let (result, largest) = largest_allocation_during(|| {
                buf.extend_from_slice(chunk);
                d.decode(&mut buf)
            });
            received += chunk.len();
            assert!(
                matches!(result, Ok(None)),
                "{len}: {result:?} at {received}"
            );
            let bound = 2 * (FRAME_HEADER_SIZE + received) + UPFRONT_RESERVE;
            assert!(
                largest <= bound,
                "{len}: an allocation of {largest} bytes with {received} body bytes received, \
                 bound {bound}"
            );
            largest_overall = largest_overall.max(largest);
        }
        // The last byte completes the frame, which fails its checksum.
        let (result, largest) = largest_allocation_during(|| {
            buf.extend_from_slice(&body[len - 1..]);
            d.decode(&mut buf)
        });
        assert!(
            matches!(
                result,
                Err(WireError::BadChecksum {
                    command: Command::Block,
                    ..
                })
            ),
            "{len}: {result:?}"
        );
        assert!(largest <= 2 * (FRAME_HEADER_SIZE + len) + UPFRONT_RESERVE);
        println!("{len}-byte body: largest allocation {largest_overall} bytes");
    }
}

/// A body that is already buffered must not be allocated a second time (the decoder reserves
/// only the missing part of a body).
#[test]
fn a_body_already_in_the_buffer_is_not_allocated_again() {
    // An INV frame of about 1 MB (a zero count and then trailing bytes, with a correct
    // checksum) is entirely in the buffer. Parsing it needs no memory (the list is empty;
    // the trailing bytes are an error), and the buffer already holds every byte, so
    // nothing near the payload size should be allocated.
    let payload = count_then(&[], 0, &vec![0; 1_000_000]);
    let frame = raw_frame(MAGIC, Command::Inv, &payload);
    let (result, largest) = decode_tracked(true, &frame);
    assert!(
        matches!(
            result,
            Err(WireError::MalformedPayload {
                command: Command::Inv,
                ..
            })
        ),
        "{result:?}"
    );
    assert!(
        largest <= SLACK,
        "largest allocation {largest} bytes for a {}-byte payload already buffered",
        payload.len()
    );
}
