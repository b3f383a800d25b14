//! Chain memory benchmark (`cargo bench --bench chain_memory`): resident memory and live heap
//! while a fresh on-disk store imports 30,000 small blocks (coinbase + 1 transfer), and what
//! one block index entry costs, measured the same way, for comparison. Every allocation goes
//! through a counting allocator, so "live heap" is exact (sled's included). Prints figures;
//! asserts nothing.

use noded::chain::index::{BlockIndex, Entry};
use noded::chain::store::{BlockStatus, CACHE_CAPACITY_BYTES};
use noded::chain::testkit::{make_block, Keys};
use noded::chain::{Chain, ChainOptions};
use noded::params::REGTEST;
use noded::types::{Block, Hash256};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Instant;

const NOW: u64 = 4_000_000_000;
const BLOCKS: usize = 30_000;
const STEP: usize = 2_500;
/// The window measured for steady-state growth: after the bounded caches have filled.
const STEADY_FROM: usize = 20_000;

struct Counting;

static LIVE: AtomicI64 = AtomicI64::new(0);

// SAFETY: forwards every call to the system allocator unchanged; only counts sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as i64, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as i64, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size as i64 - layout.size() as i64, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn live_kib() -> i64 {
    LIVE.load(Ordering::Relaxed) / 1024
}

fn vm_rss_kib() -> i64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

/// Live heap of a block index growing to `BLOCKS` synthetic entries, at every `STEP` (hash
/// maps at their real load, so the steps where they double show as they do in the node).
fn index_live_bytes() -> Vec<i64> {
    let header = REGTEST.genesis_block().header;
    let before = LIVE.load(Ordering::Relaxed);
    let mut index = BlockIndex::default();
    let mut at = vec![0];
    for i in 0..BLOCKS as u64 {
        let mut parent = [0u8; 32];
        parent[..8].copy_from_slice(&i.to_le_bytes());
        let mut own = parent;
        own[..8].copy_from_slice(&(i + 1).to_le_bytes());
        let mut h = header;
        h.prev_hash = Hash256(parent);
        index.insert(
            Hash256(own),
            Entry {
                header: h,
                height: i + 1,
                chainwork: Default::default(),
                status: BlockStatus::Valid,
                seq: i,
            },
        );
        index.push_active(Hash256(own));
        if (i as usize + 1).is_multiple_of(STEP) {
            at.push(LIVE.load(Ordering::Relaxed) - before);
        }
    }
    drop(index);
    at
}

/// Prints the growth over blocks `from..to` against the block index's own growth there.
fn window(label: &str, from: usize, to: usize, rss: &[i64], live: &[i64], index: &[i64]) {
    let (a, b) = (from / STEP, to / STEP);
    let n = (to - from) as f64;
    let live_per_block = (live[b] - live[a]) as f64 * 1024.0 / n;
    let index_per_block = (index[b] - index[a]) as f64 / n;
    println!(
        "  blocks {from}..{to} ({label}): VmRSS {:+.0} B/block, live heap {live_per_block:+.0} B/block, \
         of which the block index {index_per_block:+.0} B/block; beyond the index {:+.0} B/block",
        (rss[b] - rss[a]) as f64 * 1024.0 / n,
        live_per_block - index_per_block,
    );
}

fn main() {
    println!("chain memory: importing {BLOCKS} small blocks (coinbase + 1 transfer) into a fresh store on disk");
    let keys = Keys::new(2);
    let mut blocks: Vec<Block> = Vec::with_capacity(BLOCKS);
    let mut parent = REGTEST.genesis_block().header;
    for h in 0..BLOCKS as u64 {
        let txs = if h == 0 {
            vec![]
        } else {
            vec![keys.transfer(&REGTEST, 0, keys.address(1), 1, 0, h - 1)]
        };
        let b = make_block(&REGTEST, &parent, h, parent.time + 1, keys.address(0), txs);
        parent = b.header;
        blocks.push(b);
    }
    // Measured first, while no store runs: sled's background threads allocate too.
    let index = index_live_bytes();
    let dir = tempfile::tempdir().unwrap();
    let mut chain = Chain::open(&dir.path().join("chain"), &REGTEST, ChainOptions::default())
        .expect("open chain");
    let (rss0, live0) = (vm_rss_kib(), live_kib());
    println!("  before: VmRSS {rss0} KiB, live heap {live0} KiB (the pre-built blocks included)");
    println!(
        "  {:>7}  {:>12}  {:>12}",
        "blocks", "VmRSS +KiB", "live +KiB"
    );
    let started = Instant::now();
    let (mut rss, mut live) = (vec![0], vec![0]);
    for (i, block) in blocks.into_iter().enumerate() {
        chain.submit_block(block, NOW).expect("valid block");
        let n = i + 1;
        if n.is_multiple_of(STEP) {
            rss.push(vm_rss_kib() - rss0);
            live.push(live_kib() - live0);
            println!(
                "  {n:>7}  {:>+12}  {:>+12}",
                rss.last().unwrap(),
                live.last().unwrap()
            );
        }
    }
    let elapsed = started.elapsed();
    println!(
        "  {BLOCKS} blocks in {elapsed:.2?} ({:.0} blocks/s); store {} KiB on disk; {} blocks indexed",
        BLOCKS as f64 / elapsed.as_secs_f64(),
        chain.reader().size_on_disk() / 1024,
        chain.index().len()
    );
    println!(
        "  one block index entry (the in-memory index alone, built to {BLOCKS}): {:.0} B on average",
        *index.last().unwrap() as f64 / BLOCKS as f64
    );
    window(
        "fresh store: the bounded caches fill",
        0,
        10_000,
        &rss,
        &live,
        &index,
    );
    window(
        "bounded caches full",
        STEADY_FROM,
        BLOCKS,
        &rss,
        &live,
        &index,
    );
    println!(
        "  bounded: sled page cache {} MiB (sled counts it loosely), pending account states ≤ {}, \
         pending blocks ≤ {}, sender key cache ≤ {} keys",
        CACHE_CAPACITY_BYTES >> 20,
        noded::chain::store::MAX_PENDING_ACCOUNTS,
        noded::chain::store::MAX_PENDING_BLOCKS,
        2 * noded::chain::signatures::KEY_CACHE_GENERATION,
    );
}
