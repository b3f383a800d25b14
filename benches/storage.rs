//! Storage benchmark (`cargo bench --bench storage`): the chain store's figures on this node's
//! workload, for comparing storage engines (`benches/storage_compare.sh` runs it for two
//! revisions and prints them side by side). For one build it measures:
//!
//! - (a) block connect tx/s: 100 blocks of 1,000 transfers between existing accounts,
//!   pipelined as `benches/chain.rs` does (signatures checked off the writer), tx index on;
//!   the median of three imports, each into a fresh store;
//! - (b) the same with every transfer paying a new account;
//! - (c) transaction index catch-up: a store built from 1,000 blocks of 1,000 transfers, each
//!   paying a new account (1,000,000 accounts and 1,000,000 transactions), imported
//!   pipelined; the time from the end of the import (its final flush, as in
//!   `benches/chain.rs`) until `ChainReader` reports the background index at the tip;
//! - (d) that store, flushed and closed, where the node keeps it (`<datadir>/chain/regtest`),
//!   then the real `noded` binary of this build started on that datadir: (e) the time from
//!   spawn until `getinfo` answers, and the process's VmRSS once ready and after a
//!   `getblockchaininfo`; stopped with `noded rpc --datadir D stop`;
//! - (f) a reorg from a tip 100 blocks above the common ancestor to a heavier 101-block
//!   branch (the branch's first 100 blocks stored beforehand), as `benches/chain.rs` does.
//!
//! Uses only the public chain API that every storage engine keeps (`Chain`, `ChainReader`,
//! the testkit), so the same file measures an old and a new revision. New accounts get
//! addresses derived by hashing, as real addresses are (hashes of public keys): sequential
//! keys would flatter any B-tree.
//!
//! `NODED_BENCH_SCALE` (default 1.0) scales the block counts (0.05 for a quick trial: 5
//! blocks and a 50-block store; blocks keep 1,000 transfers). Stores go to `TMPDIR`.
//! Prints human lines and, for scripts, `RESULT <key> <value>` lines. Asserts only that the
//! blocks are valid and that the node answers.

use noded::chain::testkit::{make_block, Keys};
use noded::chain::validation::precheck;
use noded::chain::writer::{COMMAND_CAPACITY, PRECHECK_CONCURRENCY};
use noded::chain::{Chain, ChainOptions, ChainReader, ChainStats};
use noded::datadir::read_rpc_endpoint;
use noded::params::REGTEST;
use noded::rpc::client;
use noded::types::{sha256d_parts, Address, Block, Header, Transaction};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

#[path = "support/blocks.rs"]
mod blocks;
use blocks::{funding, sign_all, threads, TXS_PER_BLOCK};

const BIN: &str = env!("CARGO_BIN_EXE_noded");
const NOW: u64 = 4_000_000_000;
/// Blocks of (a), (b) and (f) at scale 1.
const BLOCKS: usize = 100;
/// Blocks of the (c)–(e) store at scale 1: 1,000,000 transfers, accounts and index entries.
const STORE_BLOCKS: usize = 1_000;
const SENDERS: usize = 2 * TXS_PER_BLOCK;
/// Imports for (a) and for (b), each into a fresh store; the figures are their medians.
const CONNECT_RUNS: usize = 3;
/// Starts of `noded` on the big store; the figures are their medians.
const NODE_STARTS: usize = 3;
/// Longest wait for the node to answer, or to exit after `stop`.
const NODE_DEADLINE: Duration = Duration::from_secs(120);
/// Longest wait for the transaction index to reach the tip.
const INDEX_DEADLINE: Duration = Duration::from_secs(3_600);

fn scale() -> f64 {
    let Ok(text) = std::env::var("NODED_BENCH_SCALE") else {
        return 1.0;
    };
    match text.trim().parse::<f64>() {
        Ok(s) if s > 0.0 && s <= 10.0 => s,
        _ => panic!("NODED_BENCH_SCALE={text:?}: give a number in (0, 10]"),
    }
}

fn scaled(full: usize, scale: f64) -> usize {
    ((full as f64 * scale).round() as usize).max(2)
}

fn result(key: &str, value: f64) {
    println!("RESULT {key} {value:.6}");
}

/// An address nobody has used: a hash of `n`, as real addresses are hashes.
fn new_account(n: u64) -> Address {
    let mut a = [0u8; 20];
    a.copy_from_slice(&sha256d_parts(&[b"storage-bench-account", &n.to_le_bytes()]).0[..20]);
    Address(a)
}

/// `count` blocks of 1,000 transfers on `parent` (at `height`), as in `benches/chain.rs`:
/// block k moves coin from one half of the senders to the other, or with `new_accounts` pays
/// 1,000 accounts never seen before. `salt` makes the amounts (so the txids) differ between
/// branches built on the same parent.
fn transfer_blocks(
    keys: &Keys,
    parent: Header,
    height: u64,
    count: usize,
    salt: u64,
    new_accounts: bool,
) -> Vec<Block> {
    let mut nonces = vec![0u64; SENDERS + 1];
    let mut specs = Vec::with_capacity(count * TXS_PER_BLOCK);
    for k in 0..count {
        let half = k % 2;
        for i in 0..TXS_PER_BLOCK {
            let from = 1 + half * TXS_PER_BLOCK + i;
            let to = if new_accounts {
                new_account((k * TXS_PER_BLOCK + i) as u64)
            } else {
                keys.address(1 + (1 - half) * TXS_PER_BLOCK + (i * 7 + k) % TXS_PER_BLOCK)
            };
            let nonce = nonces[from];
            nonces[from] += 1;
            specs.push((from, to, 100 + salt, 1, nonce));
        }
    }
    let mut signed = sign_all(keys, &specs).into_iter();
    drop(specs);
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

/// Opens the chain store at `path` with the node's options (`noded` opens its store with
/// `ChainOptions::default()`, tx index on, apart from a debug flag).
fn open(path: &Path) -> Chain {
    Chain::open(path, &REGTEST, ChainOptions::default()).expect("open chain")
}

fn submit_all(chain: &mut Chain, blocks: &[Block]) {
    for b in blocks {
        chain.submit_block(b.clone(), NOW).expect("valid block");
    }
}

/// Imports `blocks` (after `fund`, not timed) into a fresh store at `path`, pipelined as in
/// `benches/chain.rs`: `PRECHECK_CONCURRENCY` producer threads run `precheck` (stateless
/// checks and signatures on all cores) while the writer connects the previous block, with
/// as many checked blocks waiting as `ChainHandle`'s command channel holds. Timed until the
/// final flush has returned. Returns the chain, the wall time and the writer's stats.
fn import(path: &Path, fund: &[Block], blocks: Vec<Block>) -> (Chain, Duration, ChainStats) {
    let mut chain = open(path);
    submit_all(&mut chain, fund);
    let before = chain.stats();
    let producers = PRECHECK_CONCURRENCY;
    let count = blocks.len();
    let mut shares: Vec<Vec<Block>> = (0..producers).map(|_| vec![]).collect();
    for (i, b) in blocks.into_iter().enumerate() {
        shares[i % producers].push(b);
    }
    let started = Instant::now();
    let mut receivers = vec![];
    let mut handles = vec![];
    for mine in shares {
        let (tx, rx) = mpsc::sync_channel(COMMAND_CAPACITY / producers);
        receivers.push(rx);
        handles.push(std::thread::spawn(move || {
            for b in mine {
                let checked = precheck(&REGTEST, b, Some(threads())).expect("valid block");
                tx.send(checked).unwrap();
            }
        }));
    }
    for i in 0..count {
        let checked = receivers[i % producers].recv().unwrap();
        chain.submit_checked(checked, NOW).expect("valid block");
    }
    chain.flush().unwrap();
    let elapsed = started.elapsed();
    for h in handles {
        h.join().unwrap();
    }
    let after = chain.stats();
    let stats = ChainStats {
        blocks_connected: after.blocks_connected - before.blocks_connected,
        transactions_connected: after.transactions_connected - before.transactions_connected,
        state_reads: after.state_reads - before.state_reads,
        apply: after.apply - before.apply,
        commits: after.commits - before.commits,
        ..ChainStats::default()
    };
    (chain, elapsed, stats)
}

/// Waits (bounded) until the background transaction index reaches the tip.
fn wait_for_tx_index(reader: &ChainReader, tip: u64) -> Duration {
    let started = Instant::now();
    while reader.tx_index_height().unwrap() != Some(tip) {
        assert!(
            started.elapsed() < INDEX_DEADLINE,
            "the transaction index did not catch up in {INDEX_DEADLINE:?}"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    started.elapsed()
}

/// (a) and (b): `CONNECT_RUNS` pipelined imports of `blocks`, each into a fresh store,
/// printed; the median rate is the result. Returns the last run's chain (for the reorg).
fn connect(label: &str, key: &str, fund: &[Block], blocks: &[Block]) -> (Chain, tempfile::TempDir) {
    println!("  {label}:");
    let txs = (blocks.len() * TXS_PER_BLOCK) as f64;
    let mut rates = vec![];
    let mut last = None;
    for run in 1..=CONNECT_RUNS {
        // The previous run's store goes before the next one is built.
        drop(last.take());
        let dir = tempfile::tempdir().unwrap();
        let (chain, elapsed, stats) = import(&dir.path().join("chain"), fund, blocks.to_vec());
        let rate = txs / elapsed.as_secs_f64();
        let reader = chain.reader();
        let lag = wait_for_tx_index(&reader, chain.tip().height);
        println!(
            "    run {run}: {elapsed:>8.2?}  {rate:>8.0} tx/s; writer: account reads {:.2?}, apply \
             {:.2?}, commits {:.2?}; tx index at the tip {lag:.2?} later; {} accounts, store \
             {:.1} MB",
            stats.state_reads,
            stats.apply,
            stats.commits,
            chain.accounts().unwrap().len(),
            reader.size_on_disk() as f64 / 1e6,
        );
        rates.push(rate);
        last = Some((chain, dir));
    }
    let (min, max) = (
        rates.iter().copied().fold(f64::INFINITY, f64::min),
        rates.iter().copied().fold(0.0, f64::max),
    );
    let rate = median(rates);
    println!("    median {rate:.0} tx/s (runs {min:.0} to {max:.0})");
    result(key, rate);
    last.unwrap()
}

/// (f): the side branch's first `n` blocks are verified and stored (status Checked, as
/// `ChainHandle` would); its last block makes it heavier, and that one submission
/// disconnects `n` blocks and connects `n + 1`.
fn reorg(chain: &mut Chain, side_branch: Vec<Block>) {
    let n = side_branch.len() - 1;
    let mut checked: Vec<_> = side_branch
        .into_iter()
        .map(|b| precheck(&REGTEST, b, Some(threads())).expect("valid block"))
        .collect();
    let last = checked.pop().unwrap();
    let last_hash = last.hash();
    let t = Instant::now();
    for c in checked {
        chain.submit_checked(c, NOW).expect("stored");
    }
    let stored = t.elapsed();
    let before = chain.stats();
    let t = Instant::now();
    chain
        .submit_checked(last, NOW)
        .expect("the heavier branch connects");
    let elapsed = t.elapsed();
    let after = chain.stats();
    assert_eq!(chain.tip().hash, last_hash);
    println!(
        "  reorg, tx index on, blocks flushed: {elapsed:>8.2?}: {} disconnects + {} connects, \
         commits {:.2?}, account reads {:.2?}; storing the branch's first {n} blocks \
         beforehand took {stored:.2?}",
        after.blocks_disconnected - before.blocks_disconnected,
        after.blocks_connected - before.blocks_connected,
        after.commits - before.commits,
        after.state_reads - before.state_reads,
    );
    result("reorg_s", elapsed.as_secs_f64());
}

/// `VmRSS` and `VmHWM` of a process, in MB (MiB, as /proc counts kB of 1,024 bytes).
fn memory_mb(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kb| kb.parse::<f64>().ok())
            .map_or(f64::NAN, |kb| kb / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// `noded` with the environment's `NODED_*` settings removed, so only the arguments count.
fn noded() -> Command {
    let mut cmd = Command::new(BIN);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("NODED_") {
            cmd.env_remove(key);
        }
    }
    cmd.stdin(Stdio::null());
    cmd
}

/// A running node; killed if dropped before it stopped (a failed run leaves no process).
struct Node(Child);

impl Drop for Node {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// One node start on `datadir`, as (e) asks.
struct Start {
    ready: Duration,
    startup_ms: Option<u64>,
    rss_ready: f64,
    rss_info: f64,
    hwm: f64,
    stop: Duration,
}

/// Starts `noded` on `datadir` (whose store has its tip at height `tip`), measures, stops it.
fn start_node(datadir: &Path, tip: u64) -> Start {
    let mut cmd = noded();
    cmd.args([
        "--network",
        "regtest",
        "--bind",
        "127.0.0.1",
        "--port",
        "0",
        "--rpcport",
        "0",
        "--log-level",
        "info",
    ])
    .arg("--datadir")
    .arg(datadir)
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    let started = Instant::now();
    let mut node = Node(cmd.spawn().expect("spawn noded"));
    let stderr = node.0.stderr.take().expect("piped stderr");
    let (tx, startup_ms) = mpsc::channel();
    // Picks `startup_ms=` out of the log and drains it, so the node never blocks on a pipe.
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if let Some(rest) = line.split("startup_ms=").nth(1) {
                let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
                if let Ok(ms) = digits.parse::<u64>() {
                    let _ = tx.send(ms);
                }
            }
        }
    });
    let (cookie, addr) = loop {
        if let Ok((cookie, addr)) = read_rpc_endpoint(datadir) {
            if client::call(addr, &cookie, "getinfo", serde_json::json!([])).is_ok() {
                break (cookie, addr);
            }
        }
        if let Some(status) = node.0.try_wait().expect("try_wait") {
            panic!("noded exited with {status} before RPC was ready");
        }
        assert!(
            started.elapsed() < NODE_DEADLINE,
            "noded not ready after {NODE_DEADLINE:?}"
        );
        std::thread::sleep(Duration::from_millis(1));
    };
    let ready = started.elapsed();
    let pid = node.0.id();
    let (rss_ready, _) = memory_mb(pid);
    let info = client::call(addr, &cookie, "getblockchaininfo", serde_json::json!([]))
        .expect("getblockchaininfo");
    assert_eq!(
        info["blocks"].as_u64(),
        Some(tip),
        "noded did not open the store that was built: getblockchaininfo {info}"
    );
    let (rss_info, hwm) = memory_mb(pid);
    let t = Instant::now();
    let out = noded()
        .arg("rpc")
        .arg("--datadir")
        .arg(datadir)
        .arg("stop")
        .output()
        .expect("run noded rpc stop");
    assert!(
        out.status.success(),
        "noded rpc stop: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status = loop {
        if let Some(status) = node.0.try_wait().expect("try_wait") {
            break status;
        }
        assert!(
            t.elapsed() < NODE_DEADLINE,
            "noded still running {NODE_DEADLINE:?} after stop"
        );
        std::thread::sleep(Duration::from_millis(2));
    };
    let stop = t.elapsed();
    assert!(status.success(), "noded exited with {status} after stop");
    Start {
        ready,
        startup_ms: startup_ms.recv_timeout(Duration::from_secs(1)).ok(),
        rss_ready,
        rss_info,
        hwm,
        stop,
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let bench_started = Instant::now();
    let scale = scale();
    let blocks = scaled(BLOCKS, scale);
    let store_blocks = scaled(STORE_BLOCKS, scale);
    println!(
        "storage benchmark: scale {scale}, {blocks}-block connects and reorg, a {store_blocks}-block \
         store ({} accounts), blocks of {TXS_PER_BLOCK} transfers, {} verification threads",
        store_blocks * TXS_PER_BLOCK,
        threads()
    );
    result("scale", scale);
    result("txs_per_block", TXS_PER_BLOCK as f64);
    result("connect_blocks", blocks as f64);
    result("store_txs", (store_blocks * TXS_PER_BLOCK) as f64);

    let keys = Keys::new(SENDERS + 1);
    let setup = Instant::now();
    let fund = funding(&keys);
    let base = fund.last().unwrap().header;
    let base_height = fund.len() as u64;
    let main_branch = transfer_blocks(&keys, base, base_height, blocks, 0, false);
    let side_branch = transfer_blocks(&keys, base, base_height, blocks + 1, 1, false);
    let fresh_branch = transfer_blocks(&keys, base, base_height, blocks, 2, true);
    println!(
        "setup: signed and mined {} blocks in {:.1?}",
        fund.len() + main_branch.len() + side_branch.len() + fresh_branch.len(),
        setup.elapsed()
    );

    println!(
        "connect: {blocks} blocks of {TXS_PER_BLOCK} transfers, pipelined, tx index on, fresh store \
         on disk (submitted → validated, stored, connected, state flushed), {CONNECT_RUNS} runs"
    );
    let (mut chain, chain_dir) = connect(
        "(a) transfers between existing accounts",
        "connect_tx_per_s",
        &fund,
        &main_branch,
    );
    drop(main_branch);
    let (fresh, fresh_dir) = connect(
        "(b) every transfer paying a new account",
        "connect_new_accounts_tx_per_s",
        &fund,
        &fresh_branch,
    );
    drop(fresh_branch);
    drop(fresh);
    drop(fresh_dir);

    println!(
        "(f) reorg: the (a) chain's {blocks} blocks disconnected, a heavier branch of {} connected",
        blocks + 1
    );
    // Right after the import's final flush every disconnected block is below the account
    // state marker: the worst case, as in benches/chain.rs.
    reorg(&mut chain, side_branch);
    drop(chain);
    drop(chain_dir);

    // (c)–(e): the big store, where the node keeps it in a datadir.
    let setup = Instant::now();
    let store_branch = transfer_blocks(&keys, base, base_height, store_blocks, 3, true);
    let store_txs = (store_blocks * TXS_PER_BLOCK) as f64;
    println!(
        "store: signed and mined {store_blocks} blocks, every transfer paying a new account, in {:.1?}",
        setup.elapsed()
    );
    let datadir = tempfile::tempdir().unwrap();
    let chain_path = datadir.path().join("chain").join(REGTEST.network.name());
    let (chain, elapsed, stats) = import(&chain_path, &fund, store_branch);
    let reader = chain.reader();
    let tip = chain.tip().height;
    println!(
        "  import: {elapsed:>8.2?}  {:>8.0} tx/s (pipelined, tx index on); writer: account reads \
         {:.2?}, apply {:.2?}, commits {:.2?}; tx index at height {:?} of {tip} when it ended",
        store_txs / elapsed.as_secs_f64(),
        stats.state_reads,
        stats.apply,
        stats.commits,
        reader.tx_index_height().unwrap(),
    );
    result("store_import_tx_per_s", store_txs / elapsed.as_secs_f64());
    let lag = wait_for_tx_index(&reader, tip);
    println!(
        "  (c) the transaction index reached the tip {lag:.2?} after the import's final flush \
         ({:.0} tx/s connected and indexed)",
        store_txs / (elapsed + lag).as_secs_f64()
    );
    result("txindex_catchup_s", lag.as_secs_f64());
    let t = Instant::now();
    chain.flush().unwrap();
    let accounts = chain.accounts().unwrap().len();
    drop(reader);
    drop(chain);
    // The sled build keeps a directory there; the redb build a file beside it.
    let size = dir_bytes(&chain_path) + file_bytes(&chain_path.with_extension("redb"));
    println!(
        "  (d) flushed and closed in {:.2?}: {accounts} accounts, {tip} blocks, store {:.1} MB on \
         disk at <datadir>/chain/{}",
        t.elapsed(),
        size as f64 / 1e6,
        REGTEST.network.name(),
    );
    result("store_accounts", accounts as f64);
    result("store_disk_mb", size as f64 / 1e6);

    println!(
        "(e) noded on that datadir, {NODE_STARTS} starts (spawn → getinfo answers; VmRSS; stop):"
    );
    let mut starts = vec![];
    for i in 0..NODE_STARTS {
        let s = start_node(datadir.path(), tip);
        println!(
            "  start {}: RPC ready {:>7.1} ms (node logged startup_ms {}), VmRSS {:.1} MB ready, \
             {:.1} MB after getblockchaininfo (peak {:.1} MB); stopped in {:.0} ms",
            i + 1,
            s.ready.as_secs_f64() * 1e3,
            s.startup_ms.map_or("?".into(), |ms| ms.to_string()),
            s.rss_ready,
            s.rss_info,
            s.hwm,
            s.stop.as_secs_f64() * 1e3,
        );
        starts.push(s);
    }
    let rpc_ready = median(starts.iter().map(|s| s.ready.as_secs_f64() * 1e3).collect());
    let rss_ready = median(starts.iter().map(|s| s.rss_ready).collect());
    let rss_info = median(starts.iter().map(|s| s.rss_info).collect());
    let hwm = median(starts.iter().map(|s| s.hwm).collect());
    println!(
        "  medians: RPC ready {rpc_ready:.1} ms (target < 100 ms), VmRSS {rss_ready:.1} MB ready, \
         {rss_info:.1} MB after getblockchaininfo (target < 150 MB), peak {hwm:.1} MB"
    );
    result("rpc_ready_ms", rpc_ready);
    result("rss_ready_mb", rss_ready);
    result("rss_after_getblockchaininfo_mb", rss_info);
    result("rss_peak_mb", hwm);
    result("rpc_ready_first_ms", starts[0].ready.as_secs_f64() * 1e3);
    println!(
        "done in {:.1?}; this benchmark process peaked at {:.0} MB VmHWM",
        bench_started.elapsed(),
        memory_mb(std::process::id()).1
    );
}

/// Bytes the file `path` takes on disk (0 if there is none).
fn file_bytes(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).map_or(0, |m| m.blocks() * 512)
}

/// Bytes the files under `path` take on disk (allocated blocks: a sparse or preallocated
/// file counts what it uses). The store is closed, so this is what the engine left.
fn dir_bytes(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.blocks() * 512,
            Err(_) => 0,
        })
        .sum()
}
