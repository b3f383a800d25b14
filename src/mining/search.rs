//! The nonce search: SHA-256d over headers with the first 64 bytes hashed once (midstate), on
//! one thread or split over several, each a disjoint nonce range, all stopping when one finds
//! a hash under the target or a stop flag is raised.
//!
//! Plain std threads: the work is CPU-bound and must not occupy the async runtime.

use crate::types::pow::{hash_meets_target, Target};
use crate::types::{Hash256, Header};
use sha2::{Digest, Sha256};
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Nonces tried between looks at the stop predicate.
const STOP_CHECK_INTERVAL: u64 = 4096;

/// Whether to give up; polled every `STOP_CHECK_INTERVAL` hashes by every search thread.
pub type StopFn<'a> = &'a (dyn Fn() -> bool + Sync);

/// Searches `nonces` for a header hash meeting `target`, split evenly over `threads` threads
/// (one thread for small ranges). Returns the header with the winning nonce, or `None` when
/// the range is exhausted or `stop` says so; the first thread to succeed stops the others.
/// `tried` counts the hashes computed.
pub fn search(
    header: &Header,
    target: &Target,
    nonces: Range<u64>,
    threads: usize,
    stop: StopFn<'_>,
    tried: &AtomicU64,
) -> Option<Header> {
    let threads = threads.max(1) as u64;
    let span = nonces.end.saturating_sub(nonces.start);
    if threads == 1 || span < threads * STOP_CHECK_INTERVAL {
        return search_range(header, target, nonces, stop, tried);
    }
    let chunk = span / threads;
    let done = AtomicBool::new(false);
    let should_stop = || stop() || done.load(Ordering::Relaxed);
    let should_stop: StopFn<'_> = &should_stop;
    let done = &done;
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|i| {
                let start = nonces.start + i * chunk;
                let end = if i + 1 == threads {
                    nonces.end
                } else {
                    start + chunk
                };
                scope.spawn(move || {
                    let result = search_range(header, target, start..end, should_stop, tried);
                    if result.is_some() {
                        done.store(true, Ordering::Relaxed);
                    }
                    result
                })
            })
            .collect();
        // Join every thread (a panicked one counts as not found).
        let results: Vec<Option<Header>> = handles
            .into_iter()
            .map(|h| h.join().ok().flatten())
            .collect();
        results.into_iter().flatten().next()
    })
}

/// The search on the calling thread: SHA-256d with the first 64 header bytes hashed once.
fn search_range(
    header: &Header,
    target: &Target,
    nonces: Range<u64>,
    stop: StopFn<'_>,
    tried: &AtomicU64,
) -> Option<Header> {
    let mut bytes = header.to_bytes();
    let mut midstate = Sha256::new();
    midstate.update(&bytes[..64]);
    let mut count = 0u64;
    for nonce in nonces {
        bytes[80..88].copy_from_slice(&nonce.to_le_bytes());
        let mut first = midstate.clone();
        first.update(&bytes[64..]);
        let hash = Hash256(Sha256::digest(first.finalize()).into());
        count += 1;
        if hash_meets_target(&hash, target) {
            tried.fetch_add(count, Ordering::Relaxed);
            return Some(Header { nonce, ..*header });
        }
        if count == STOP_CHECK_INTERVAL {
            tried.fetch_add(count, Ordering::Relaxed);
            count = 0;
            if stop() {
                return None;
            }
        }
    }
    tried.fetch_add(count, Ordering::Relaxed);
    None
}

/// Threads to mine on: the available cores.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::pow::target_from_compact;

    fn header() -> Header {
        Header {
            version: 1,
            prev_hash: crate::types::sha256d(b"p"),
            merkle_root: crate::types::sha256d(b"m"),
            time: 1_800_000_000,
            bits: 0x1f00ffff,
            nonce: 0,
        }
    }

    const NEVER: StopFn<'static> = &|| false;

    #[test]
    fn midstate_hashing_agrees_with_header_hash() {
        let target = target_from_compact(0x1f00ffff).unwrap();
        let tried = AtomicU64::new(0);
        let found = search(&header(), &target, 0..1_000_000, 1, NEVER, &tried).unwrap();
        assert!(hash_meets_target(&found.hash(), &target));
        assert_eq!(tried.load(Ordering::Relaxed), found.nonce + 1);
        // Every nonce before the winner misses.
        for nonce in 0..found.nonce {
            let h = Header { nonce, ..header() };
            assert!(!hash_meets_target(&h.hash(), &target));
        }
    }

    #[test]
    fn parallel_search_finds_a_valid_nonce_in_range() {
        let target = target_from_compact(0x1f00ffff).unwrap();
        let tried = AtomicU64::new(0);
        let found = search(&header(), &target, 0..10_000_000, 2, NEVER, &tried).unwrap();
        assert!(hash_meets_target(&found.hash(), &target));
    }

    #[test]
    fn stopping_ends_the_search() {
        let impossible = [0u8; 32];
        let tried = AtomicU64::new(0);
        let stop = AtomicBool::new(true);
        let check = || stop.load(Ordering::Relaxed);
        assert!(search(&header(), &impossible, 0..u64::MAX, 2, &check, &tried).is_none());
        assert!(tried.load(Ordering::Relaxed) <= 2 * STOP_CHECK_INTERVAL);
    }

    #[test]
    fn an_exhausted_range_returns_none() {
        let impossible = [0u8; 32];
        let tried = AtomicU64::new(0);
        assert!(search(&header(), &impossible, 5..105, 2, NEVER, &tried).is_none());
        assert_eq!(tried.load(Ordering::Relaxed), 100);
    }
}
