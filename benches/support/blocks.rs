//! Block builders shared by the chain benchmarks (`chain`, `storage`): parallel signing and
//! the funding blocks every run starts from. Included with `#[path]`, so the storage
//! comparison script copies it into the old tree too.

use noded::chain::testkit::{make_block, Keys};
use noded::params::REGTEST;
use noded::types::{Address, Block, Header, Transaction};

/// Transfers per benchmark block.
pub const TXS_PER_BLOCK: usize = 1_000;

pub fn threads() -> usize {
    noded::chain::signatures::default_threads()
}

/// Signs transfers in parallel: `specs` are (sender, receiver, amount, fee, nonce).
pub fn sign_all(keys: &Keys, specs: &[(usize, Address, u64, u64, u64)]) -> Vec<Transaction> {
    let chunk = specs.len().div_ceil(threads()).max(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = specs
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .map(|&(from, to, amount, fee, nonce)| {
                            keys.transfer(&REGTEST, from, to, amount, fee, nonce)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    })
}

/// The block after `parent` (at `parent_height`), a second later, carrying `txs`, its
/// coinbase paying the funder (key 0).
pub fn next_block(
    keys: &Keys,
    parent: &Header,
    parent_height: u64,
    txs: Vec<Transaction>,
) -> Block {
    make_block(
        &REGTEST,
        parent,
        parent_height,
        parent.time + 1,
        keys.address(0),
        txs,
    )
}

/// Funding: block 1 pays the funder (key 0); blocks 2 and 3 carry 1,000 transfers each from
/// the funder to senders 1..=2000.
pub fn funding(keys: &Keys) -> Vec<Block> {
    let genesis = REGTEST.genesis_block().header;
    let mut blocks = vec![next_block(keys, &genesis, 0, vec![])];
    for part in 0..2 {
        let specs: Vec<_> = (0..TXS_PER_BLOCK)
            .map(|i| {
                let n = part * TXS_PER_BLOCK + i;
                (0, keys.address(1 + n), 1_000_000, 1, n as u64)
            })
            .collect();
        let txs = sign_all(keys, &specs);
        let parent = blocks.last().unwrap().header;
        blocks.push(next_block(keys, &parent, blocks.len() as u64, txs));
    }
    blocks
}
