//! Chain benchmark (`cargo bench --bench chain`): block connect throughput for blocks of 1,000
//! transfers into a fresh on-disk store, where the writer's time goes, signature verification
//! rates (individual, batch on one core, batch across all cores, and ed25519-dalek's own batch
//! for reference) and a 100-block reorg of such blocks. Memory during an import is
//! `benches/chain_memory.rs`. Prints figures; asserts nothing.

use noded::chain::signatures::{verify_chunk, verify_transfer_signature, verify_transfers};
use noded::chain::testkit::{make_block, Keys};
use noded::chain::validation::precheck;
use noded::chain::{Chain, ChainOptions, ChainStats};
use noded::params::REGTEST;
use noded::types::{Address, Block, Header, Transaction, Transfer};
use std::time::{Duration, Instant};

#[path = "support/blocks.rs"]
mod blocks;
use blocks::{funding, sign_all, threads, TXS_PER_BLOCK};

const NOW: u64 = 4_000_000_000;
const BLOCKS: usize = 100;
const SENDERS: usize = 2 * TXS_PER_BLOCK;

/// `count` blocks of 1,000 transfers on `parent` (at `height`): block k moves coin from one
/// half of the senders to the other; `salt` makes the amounts (so the txids) differ between
/// branches built on the same parent.
fn transfer_blocks(
    keys: &Keys,
    parent: Header,
    height: u64,
    count: usize,
    salt: u64,
) -> Vec<Block> {
    transfer_blocks_to(keys, parent, height, count, salt, false)
}

/// `transfer_blocks`, or with `fresh_receivers` every transfer paying an account never seen
/// before (so each block creates 1,000 accounts, and the pending state cannot fold them).
fn transfer_blocks_to(
    keys: &Keys,
    parent: Header,
    height: u64,
    count: usize,
    salt: u64,
    fresh_receivers: bool,
) -> Vec<Block> {
    let mut nonces = vec![0u64; SENDERS + 1];
    let mut specs_per_block = vec![];
    for k in 0..count {
        let half = k % 2;
        let specs: Vec<_> = (0..TXS_PER_BLOCK)
            .map(|i| {
                let from = 1 + half * TXS_PER_BLOCK + i;
                let to = 1 + (1 - half) * TXS_PER_BLOCK + (i * 7 + k) % TXS_PER_BLOCK;
                let nonce = nonces[from];
                nonces[from] += 1;
                let receiver = if fresh_receivers {
                    let mut a = [0xfe; 20];
                    a[..8].copy_from_slice(&((k * TXS_PER_BLOCK + i) as u64).to_be_bytes());
                    Address(a)
                } else {
                    keys.address(to)
                };
                (from, receiver, 100 + salt, 1, nonce)
            })
            .collect();
        specs_per_block.push(specs);
    }
    let all: Vec<_> = specs_per_block.concat();
    let mut signed = sign_all(keys, &all).into_iter();
    let mut blocks: Vec<Block> = Vec::with_capacity(count);
    let mut parent = parent;
    for k in 0..count {
        let txs: Vec<Transaction> = signed.by_ref().take(TXS_PER_BLOCK).collect();
        let block = make_block(
            &REGTEST,
            &parent,
            height + k as u64,
            parent.time + 1,
            keys.address(0),
            txs,
        );
        parent = block.header;
        blocks.push(block);
    }
    blocks
}

fn open_with(dir: &std::path::Path, tx_index: bool) -> Chain {
    let options = ChainOptions {
        tx_index,
        ..ChainOptions::default()
    };
    Chain::open(&dir.join("chain"), &REGTEST, options).expect("open chain")
}

/// Imports `blocks` after `fund` into a fresh store. Serial: `Chain::submit_block` (the
/// writer verifies signatures at connect time). Pipelined: producer threads run `precheck`
/// (stateless checks and signatures on all cores), as many blocks at once as
/// `ChainHandle::submit_block` allows, while the writer accepts and connects the previous
/// block. Returns the chain (for the reorg),
/// its directory, the wall time, the writer's stats and the producer's busy time.
fn import(
    fund: &[Block],
    blocks: &[Block],
    tx_index: bool,
    pipelined: bool,
) -> (Chain, tempfile::TempDir, Duration, ChainStats, Duration) {
    let dir = tempfile::tempdir().unwrap();
    let mut chain = open_with(dir.path(), tx_index);
    submit_all(&mut chain, fund);
    let before = chain.stats();
    if !pipelined {
        let started = Instant::now();
        submit_all(&mut chain, blocks);
        // The pending account states are written to their tree here: part of the cost.
        chain.flush().unwrap();
        let elapsed = started.elapsed();
        let stats = diff(&chain.stats(), &before);
        return (chain, dir, elapsed, stats, Duration::ZERO);
    }
    // As many producers as ChainHandle lets precheck at once, each taking every n-th block;
    // the writer takes their results in block order, with as many checked blocks waiting
    // for it as ChainHandle's command channel holds.
    let producers = noded::chain::writer::PRECHECK_CONCURRENCY;
    let started = Instant::now();
    let mut receivers = vec![];
    let mut handles = vec![];
    for p in 0..producers {
        // Checked blocks wait for the writer as in ChainHandle's command channel.
        let (tx, rx) =
            std::sync::mpsc::sync_channel(noded::chain::writer::COMMAND_CAPACITY / producers);
        receivers.push(rx);
        let mine: Vec<Block> = blocks.iter().skip(p).step_by(producers).cloned().collect();
        handles.push(std::thread::spawn(move || {
            let mut busy = Duration::ZERO;
            for b in mine {
                let t = Instant::now();
                let checked = precheck(&REGTEST, b, Some(threads())).expect("valid block");
                busy += t.elapsed();
                tx.send(checked).unwrap();
            }
            busy
        }));
    }
    for i in 0..blocks.len() {
        let checked = receivers[i % producers].recv().unwrap();
        chain.submit_checked(checked, NOW).expect("valid block");
    }
    chain.flush().unwrap();
    let elapsed = started.elapsed();
    let busy = handles
        .into_iter()
        .map(|h| h.join().unwrap())
        .sum::<Duration>()
        / producers as u32;
    let stats = diff(&chain.stats(), &before);
    (chain, dir, elapsed, stats, busy)
}

/// The side branch's first `BLOCKS` blocks are verified and stored as ChainHandle would
/// (status Checked); its last block makes it heavier, and that one submission disconnects
/// `BLOCKS` blocks and connects `BLOCKS + 1`.
fn reorg(chain: &mut Chain, side_branch: &[Block], label: &str) {
    let t = Instant::now();
    for b in &side_branch[..BLOCKS] {
        let checked = precheck(&REGTEST, b.clone(), Some(threads())).expect("valid block");
        chain.submit_checked(checked, NOW).expect("stored");
    }
    let stored = t.elapsed();
    let before = chain.stats();
    let last = precheck(&REGTEST, side_branch[BLOCKS].clone(), Some(threads())).unwrap();
    let t = Instant::now();
    chain
        .submit_checked(last, NOW)
        .expect("the heavier branch connects");
    let elapsed = t.elapsed();
    let after = chain.stats();
    assert_eq!(chain.tip().hash, side_branch[BLOCKS].hash());
    println!(
        "  {label}: {elapsed:>8.2?} (target < 2 s): {} disconnects + {} connects, commits {:.2?}, account reads {:.2?}; \
         verifying and storing the branch's first {BLOCKS} blocks beforehand took {stored:.2?}",
        after.blocks_disconnected - before.blocks_disconnected,
        after.blocks_connected - before.blocks_connected,
        after.commits - before.commits,
        after.state_reads - before.state_reads,
    );
}

/// Waits (bounded) until the background transaction index reaches the tip.
fn wait_for_tx_index(chain: &Chain) -> Duration {
    let started = Instant::now();
    let tip = chain.tip().height;
    while chain.reader().tx_index_height().unwrap() != Some(tip) {
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "the transaction index did not catch up"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    started.elapsed()
}

fn submit_all(chain: &mut Chain, blocks: &[Block]) -> Duration {
    let started = Instant::now();
    for b in blocks {
        chain.submit_block(b.clone(), NOW).expect("valid block");
    }
    started.elapsed()
}

fn diff(after: &ChainStats, before: &ChainStats) -> ChainStats {
    ChainStats {
        blocks_connected: after.blocks_connected - before.blocks_connected,
        blocks_disconnected: after.blocks_disconnected - before.blocks_disconnected,
        transactions_connected: after.transactions_connected - before.transactions_connected,
        arrival_checks: after.arrival_checks - before.arrival_checks,
        accept: after.accept - before.accept,
        signatures: after.signatures - before.signatures,
        state_reads: after.state_reads - before.state_reads,
        apply: after.apply - before.apply,
        commits: after.commits - before.commits,
    }
}

fn share(part: Duration, whole: Duration) -> String {
    format!("{:5.1} %", 100.0 * part.as_secs_f64() / whole.as_secs_f64())
}

fn print_stats(label: &str, stats: &ChainStats, total: Duration) {
    println!("  where the writer's time went ({label}):");
    println!(
        "    stateless arrival checks  {:>10.1?}  {}",
        stats.arrival_checks,
        share(stats.arrival_checks, total)
    );
    println!(
        "    accept (context + store)  {:>10.1?}  {}",
        stats.accept,
        share(stats.accept, total)
    );
    println!(
        "    signature verification    {:>10.1?}  {}",
        stats.signatures,
        share(stats.signatures, total)
    );
    println!(
        "    account reads             {:>10.1?}  {}",
        stats.state_reads,
        share(stats.state_reads, total)
    );
    println!(
        "    applying transactions     {:>10.1?}  {}",
        stats.apply,
        share(stats.apply, total)
    );
    println!(
        "    atomic commits            {:>10.1?}  {}",
        stats.commits,
        share(stats.commits, total)
    );
}

fn main() {
    println!(
        "chain benchmark: {} verification threads, blocks of {TXS_PER_BLOCK} transfers",
        threads()
    );

    let keys = Keys::new(SENDERS + 1);
    let setup = Instant::now();
    let fund = funding(&keys);
    let base = fund.last().unwrap().header;
    let base_height = fund.len() as u64;
    let main_branch = transfer_blocks(&keys, base, base_height, BLOCKS, 0);
    let side_branch = transfer_blocks(&keys, base, base_height, BLOCKS + 1, 1);
    let fresh_branch = transfer_blocks_to(&keys, base, base_height, BLOCKS, 2, true);
    println!(
        "setup: signed and mined {} blocks ({} transfers) in {:.1?}",
        fund.len() + main_branch.len() + side_branch.len() + fresh_branch.len(),
        2 * TXS_PER_BLOCK + (3 * BLOCKS + 1) * TXS_PER_BLOCK,
        setup.elapsed()
    );

    // Signature verification alone, over the main branch's transfers.
    let transfers: Vec<&Transfer> = main_branch
        .iter()
        .flat_map(|b| b.transactions.iter())
        .filter_map(|tx| match tx {
            Transaction::Transfer(t) => Some(t),
            _ => None,
        })
        .collect();
    let magic = REGTEST.magic;
    let single_n = 20_000;
    let t = Instant::now();
    for tr in &transfers[..single_n] {
        assert!(verify_transfer_signature(tr, magic));
    }
    let single_rate = single_n as f64 / t.elapsed().as_secs_f64();
    let t = Instant::now();
    for chunk in transfers.chunks(1024) {
        assert!(verify_chunk(chunk, magic).is_ok());
    }
    let batch1_rate = transfers.len() as f64 / t.elapsed().as_secs_f64();
    // The same batches when few senders sign many transfers each (a flood from 64 accounts,
    // as in the relay benchmark): a sender's key term is paid once per batch.
    let runs: Vec<Transfer> = (0..20 * 1024)
        .map(|i| {
            match keys.transfer(
                &REGTEST,
                i % 64,
                keys.address(SENDERS),
                1,
                1,
                (i / 64) as u64,
            ) {
                Transaction::Transfer(t) => t,
                _ => unreachable!("a transfer"),
            }
        })
        .collect();
    let runs: Vec<&Transfer> = runs.iter().collect();
    let t = Instant::now();
    for chunk in runs.chunks(1024) {
        assert!(verify_chunk(chunk, magic).is_ok());
    }
    let batch64_rate = runs.len() as f64 / t.elapsed().as_secs_f64();
    let t = Instant::now();
    for chunk in transfers.chunks(TXS_PER_BLOCK) {
        assert!(verify_transfers(chunk, magic, threads(), None).is_ok());
    }
    let batch_all_rate = transfers.len() as f64 / t.elapsed().as_secs_f64();
    // ed25519-dalek's own (cofactorless) batch, one core, for reference.
    let prepared: Vec<(
        Vec<u8>,
        ed25519_dalek::Signature,
        ed25519_dalek::VerifyingKey,
    )> = transfers
        .iter()
        .take(20 * 1024)
        .map(|t| {
            (
                t.signing_message(magic),
                ed25519_dalek::Signature::from_bytes(&t.signature),
                ed25519_dalek::VerifyingKey::from_bytes(&t.from).unwrap(),
            )
        })
        .collect();
    let t = Instant::now();
    for chunk in prepared.chunks(1024) {
        let msgs: Vec<&[u8]> = chunk.iter().map(|p| p.0.as_slice()).collect();
        let sigs: Vec<_> = chunk.iter().map(|p| p.1).collect();
        let keys: Vec<_> = chunk.iter().map(|p| p.2).collect();
        ed25519_dalek::verify_batch(&msgs, &sigs, &keys).unwrap();
    }
    let dalek_rate = prepared.len() as f64 / t.elapsed().as_secs_f64();
    println!("signature verification (consensus rule, docs/CONSENSUS.md):");
    println!("  individual, 1 core                      {single_rate:>10.0} sig/s");
    println!("  batch of 1,024, 1 core                  {batch1_rate:>10.0} sig/s");
    println!("  batch of 1,024 by 64 senders, 1 core    {batch64_rate:>10.0} sig/s");
    println!(
        "  batch per 1,000-tx block, {} cores       {batch_all_rate:>10.0} sig/s",
        threads()
    );
    println!("  (ed25519-dalek verify_batch, 1 core,    {dalek_rate:>10.0} sig/s; message prep excluded)");

    // Connect throughput: funding, then 100 blocks of 1,000 transfers, fresh on-disk store.
    let txs = (BLOCKS * TXS_PER_BLOCK) as f64;
    println!(
        "connect: {BLOCKS} blocks of {TXS_PER_BLOCK} transfers (submitted → validated, stored, connected, state flushed; fresh store on disk)"
    );
    let (serial, _d1, serial_elapsed, serial_stats, _) = import(&fund, &main_branch, true, false);
    drop(serial);
    let serial_rate = txs / serial_elapsed.as_secs_f64();
    println!("  serial, signatures on the writer, tx index on:    {serial_elapsed:>8.2?}  {serial_rate:>8.0} tx/s");
    print_stats("serial, tx index on", &serial_stats, serial_elapsed);
    println!(
        "    signature verification share of serial connect time: {}",
        share(serial_stats.signatures, serial_elapsed)
    );
    let (mut chain, _d2, elapsed, stats, busy) = import(&fund, &main_branch, true, true);
    let connect_rate = txs / elapsed.as_secs_f64();
    println!(
        "  pipelined, signatures off the writer, tx index on: {elapsed:>8.2?}  {connect_rate:>8.0} tx/s  (target ≥ 100,000 tx/s)"
    );
    let lag = wait_for_tx_index(&chain);
    println!(
        "    the background transaction index reached the tip {lag:.2?} after the last connect \
         ({:.0} tx/s connected and indexed)",
        txs / (elapsed + lag).as_secs_f64()
    );
    println!(
        "    each producer busy with stateless checks + signatures {busy:.2?} on average ({} of the wall time)",
        share(busy, elapsed)
    );
    print_stats("pipelined writer, tx index on", &stats, elapsed);
    let (mut lean, _d3, lean_elapsed, lean_stats, _) = import(&fund, &main_branch, false, true);
    let lean_rate = txs / lean_elapsed.as_secs_f64();
    println!(
        "  pipelined, tx index off:                           {lean_elapsed:>8.2?}  {lean_rate:>8.0} tx/s"
    );
    print_stats("pipelined writer, tx index off", &lean_stats, lean_elapsed);
    {
        let (fresh_chain, _d4, fresh_elapsed, fresh_stats, _) =
            import(&fund, &fresh_branch, true, true);
        println!(
            "  pipelined, tx index on, every transfer paying a new account: {fresh_elapsed:>8.2?}  {:>8.0} tx/s \
             ({} accounts at the end; state commits and flushes {:.2?})",
            txs / fresh_elapsed.as_secs_f64(),
            fresh_chain.accounts().unwrap().len(),
            fresh_stats.commits,
        );
    }
    println!(
        "  connect throughput / batch verification rate on {} cores: {:.2} (pipelined), {:.2} (serial), {:.2} (pipelined, no tx index)",
        threads(),
        connect_rate / batch_all_rate,
        serial_rate / batch_all_rate,
        lean_rate / batch_all_rate,
    );

    println!(
        "reorg: {BLOCKS} blocks of {TXS_PER_BLOCK} transfers disconnected, {} connected",
        BLOCKS + 1
    );
    // Right after an import's final flush every disconnected block is below the account
    // state marker, so each disconnect restores its accounts in the tree: the worst case.
    reorg(&mut chain, &side_branch, "tx index on,  blocks flushed");
    reorg(&mut lean, &side_branch, "tx index off, blocks flushed");
    // The usual case near the tip: the blocks' account changes are still pending.
    let pending_dir = tempfile::tempdir().unwrap();
    let mut pending = open_with(pending_dir.path(), true);
    submit_all(&mut pending, &fund);
    submit_all(&mut pending, &main_branch);
    reorg(&mut pending, &side_branch, "tx index on,  blocks pending");
    let verify = Instant::now();
    let report = chain.verify_chain(0).unwrap();
    println!(
        "verifychain (replay of {} blocks, no signatures): ok = {} in {:.2?}",
        report.height + 1,
        report.ok,
        verify.elapsed()
    );
}
