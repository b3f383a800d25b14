//! The chain store opened, written and closed 500 times in a row while other threads read it
//! and burn CPU, under a watchdog: no cycle may hang (sled 0.34 once never returned from
//! dropping a tree, stuck in its page-cache flush), and every reopen sees every block
//! written before.

use noded::chain::store::{BlockStatus, IndexRecord, Store};
use noded::chain::testkit::{Keys, TestChainBuilder};
use noded::chain::validation::apply_block;
use noded::params::REGTEST;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const CYCLES: usize = 500;
/// A cycle (open, one connect, a read, close) takes milliseconds; this long without progress
/// is a hang.
const WATCHDOG: Duration = Duration::from_secs(30);

#[test]
fn five_hundred_open_write_close_cycles_under_load_never_hang() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chain");
    let keys = Keys::new(2);
    let mut builder = TestChainBuilder::new(&REGTEST);
    let progress = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicBool::new(false));

    let watchdog = {
        let (progress, done) = (progress.clone(), done.clone());
        std::thread::spawn(move || {
            let mut last = (0, Instant::now());
            while !done.load(Ordering::Relaxed) {
                let now = progress.load(Ordering::Relaxed);
                if now != last.0 {
                    last = (now, Instant::now());
                } else if last.1.elapsed() > WATCHDOG {
                    eprintln!("store cycle {now} made no progress for {WATCHDOG:?}: a hang");
                    std::process::abort();
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    // Load: two threads burning CPU for the whole run.
    let burners: Vec<_> = (0..2)
        .map(|_| {
            let done = done.clone();
            std::thread::spawn(move || {
                let mut x = 0u64;
                while !done.load(Ordering::Relaxed) {
                    for i in 0..100_000u64 {
                        x = x.wrapping_mul(6364136223846793005).wrapping_add(i);
                    }
                    std::hint::black_box(x);
                }
            })
        })
        .collect();

    let started = Instant::now();
    for cycle in 0..CYCLES {
        let store = Store::open(&path, &REGTEST).unwrap();
        let height = cycle as u64 + 1;
        assert_eq!(
            store.main_last().unwrap().map(|(h, _)| h),
            Some(height - 1),
            "cycle {cycle}: every earlier block is there"
        );
        // A reader on another thread, reading while this cycle writes and closes.
        let reader = {
            let store = store.clone();
            std::thread::spawn(move || {
                for h in 0..height.min(50) {
                    store.main_hash(h).unwrap().expect("a main-chain block");
                }
                store.accounts().unwrap().len()
            })
        };
        let before = builder.state().clone();
        let txs = if cycle % 5 == 4 {
            let nonce = builder.account(&keys.address(0)).nonce;
            vec![keys.transfer(&REGTEST, 0, keys.address(1), 10, 1, nonce)]
        } else {
            vec![]
        };
        let block = builder.build(keys.address(0), txs);
        let record = IndexRecord {
            header: block.header,
            height,
            chainwork: [0; 32],
            status: BlockStatus::Valid,
            seq: height,
        };
        store.store_block(&block.hash(), &block, &record).unwrap();
        let delta = apply_block(&block, &before).unwrap();
        store.connect(&block.hash(), &record, &delta).unwrap();
        if cycle % 7 == 0 {
            store.flush().unwrap();
        }
        reader.join().unwrap();
        drop(store);
        progress.store(cycle + 1, Ordering::Relaxed);
    }
    done.store(true, Ordering::Relaxed);
    watchdog.join().unwrap();
    for b in burners {
        b.join().unwrap();
    }
    println!(
        "{CYCLES} open/write/close cycles in {:?}",
        started.elapsed()
    );
    let store = Store::open(&path, &REGTEST).unwrap();
    assert_eq!(
        store.main_last().unwrap().map(|(h, _)| h),
        Some(CYCLES as u64)
    );
    let expected: std::collections::BTreeMap<_, _> =
        builder.state().iter().map(|(a, s)| (*a, *s)).collect();
    assert_eq!(store.accounts().unwrap(), expected);
}
