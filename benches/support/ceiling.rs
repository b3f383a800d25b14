//! What this machine allows, measured beside the relay benchmarks (`txrelay`, `sync`): the
//! rate at which all its cores batch-verify signatures, and the CPU time `noded` processes
//! spend (read by `cpu.rs`, which a bench including this module includes too). Every node of a benchmark verifies every fresh transaction and all the nodes share
//! these cores, so no schedule verifies faster than this rate divided by the node count.
//! Included with `#[path]`; measures, asserts nothing.

use noded::params::REGTEST;
use noded::types::{Transaction, Transfer};
use std::time::{Duration, Instant};

/// Signatures per call of the chain's verifier, which splits each call over all cores: the
/// size a node's batches reach under a flood, and a whole block's worth (bigger batches
/// verify faster per signature). The ceiling is the faster of the two.
const BATCHES: [usize; 2] = [1_024, 8_192];
/// The least wall time a rate is measured over (a short run is mostly noise).
const MEASURE_AT_LEAST: Duration = Duration::from_millis(500);

/// Signatures per second when `txs`' transfers are batch-verified on every core by the
/// chain's verifier, with nothing else running: the faster of `BATCHES`.
pub fn verification_rate(txs: &[Transaction]) -> f64 {
    let transfers: Vec<&Transfer> = txs
        .iter()
        .filter_map(|tx| match tx {
            Transaction::Transfer(t) => Some(t),
            _ => None,
        })
        .collect();
    assert!(!transfers.is_empty(), "transfers to verify");
    BATCHES
        .iter()
        .map(|&batch| rate(&transfers, batch))
        .fold(0.0, f64::max)
}

fn rate(transfers: &[&Transfer], batch: usize) -> f64 {
    let started = Instant::now();
    let mut verified = 0usize;
    while started.elapsed() < MEASURE_AT_LEAST {
        for chunk in transfers.chunks(batch) {
            let ok =
                noded::chain::signatures::verify_transfers(chunk, REGTEST.magic, cores(), None);
            assert!(ok.is_ok(), "the benchmark's signatures verify");
            verified += chunk.len();
        }
    }
    verified as f64 / started.elapsed().as_secs_f64()
}

/// CPU seconds all `pids` have used so far (`cpu.rs`, included beside this module).
pub fn total_cpu(pids: &[u32]) -> f64 {
    pids.iter().map(|&pid| crate::cpu::process_cpu(pid)).sum()
}

/// Cores the benchmark's processes share.
pub fn cores() -> usize {
    noded::chain::signatures::default_threads()
}
