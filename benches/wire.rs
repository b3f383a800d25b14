//! Wire codec throughput: encode and decode of a ~1 MiB BLOCK frame and a full 50,000-item INV
//! frame, in MB/s, printed next to raw SHA-256 throughput on the same machine in the same run
//! (the frame checksum hashes every payload byte, so SHA-256 speed is the floor of decoding).
//!
//! Run: `cargo bench --bench wire`

use bytes::BytesMut;
use noded::encoding::BoundedVec;
use noded::params::REGTEST;
use noded::types::{Address, Amount, Block, Coinbase, Hash256, Header, Transaction, Transfer};
use noded::wire::{frame_bytes, FrameDecoder, InvItem, InvKind, Message};
use sha2::{Digest, Sha256};
use std::hint::black_box;
use std::time::{Duration, Instant};

/// Runs `f` repeatedly for about `budget`, five rounds; returns the median seconds per call.
fn time_per_call(budget: Duration, mut f: impl FnMut()) -> f64 {
    f();
    let mut rounds = Vec::new();
    for _ in 0..5 {
        let start = Instant::now();
        let mut calls = 0u64;
        while start.elapsed() < budget / 5 {
            f();
            calls += 1;
        }
        rounds.push(start.elapsed().as_secs_f64() / calls as f64);
    }
    rounds.sort_by(|a, b| a.partial_cmp(b).unwrap());
    rounds[2]
}

fn mb_per_s(bytes: usize, secs: f64) -> f64 {
    bytes as f64 / secs / 1e6
}

fn block_of_about(bytes: usize) -> Block {
    let mut txs = vec![Transaction::Coinbase(Coinbase {
        height: 1,
        to: Address([1; 20]),
        amount: Amount::from_coins(50),
    })];
    let mut i = 0u64;
    while txs.len() * noded::types::transaction::MAX_TX_SIZE < bytes {
        let mut from = [0u8; 32];
        from[..8].copy_from_slice(&i.to_le_bytes());
        txs.push(Transaction::Transfer(Transfer {
            from,
            to: Address([2; 20]),
            amount: Amount(i),
            fee: Amount(10),
            nonce: i,
            signature: [7; 64],
        }));
        i += 1;
    }
    Block {
        header: Header {
            version: 1,
            prev_hash: Hash256([3; 32]),
            merkle_root: Hash256([4; 32]),
            time: 1,
            bits: 0x207fffff,
            nonce: 0,
        },
        transactions: BoundedVec::new(txs).unwrap(),
    }
}

fn bench_message(name: &str, message: &Message, budget: Duration, sha_mbs: f64) {
    let magic = REGTEST.magic;
    let frame = frame_bytes(magic, message).unwrap();
    let encode = time_per_call(budget, || {
        black_box(frame_bytes(magic, black_box(message)).unwrap());
    });
    let decode = time_per_call(budget, || {
        let mut decoder = FrameDecoder::new(magic);
        decoder.set_handshake_complete();
        let mut buf = BytesMut::from(&frame[..]);
        black_box(decoder.decode(&mut buf).unwrap().unwrap());
    });
    let dec = mb_per_s(frame.len(), decode);
    println!(
        "{name:<22} frame {:>9} bytes | encode {:>7.0} MB/s | decode {:>7.0} MB/s = {:>3.0}% of SHA-256",
        frame.len(),
        mb_per_s(frame.len(), encode),
        dec,
        100.0 * dec / sha_mbs
    );
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let budget = Duration::from_millis(if quick { 200 } else { 2000 });

    let data = vec![0x5au8; 1 << 20];
    let sha = time_per_call(budget, || {
        black_box(Sha256::digest(black_box(&data)));
    });
    let sha_mbs = mb_per_s(data.len(), sha);
    println!("raw SHA-256 over 1 MiB           {sha_mbs:>7.0} MB/s (one core; the decode floor)");

    let block = block_of_about(1 << 20);
    println!(
        "BLOCK: {} transactions, {} bytes encoded",
        block.transactions.len(),
        block.encoded_size()
    );
    bench_message(
        "BLOCK (~1 MiB)",
        &Message::Block(Box::new(block)),
        budget,
        sha_mbs,
    );

    let items: Vec<InvItem> = (0..noded::wire::limits::MAX_INV_ITEMS as u64)
        .map(|i| {
            let mut hash = [0u8; 32];
            hash[..8].copy_from_slice(&i.to_le_bytes());
            InvItem {
                kind: if i % 2 == 0 {
                    InvKind::Tx
                } else {
                    InvKind::Block
                },
                hash: Hash256(hash),
            }
        })
        .collect();
    bench_message(
        "INV (50,000 items)",
        &Message::Inv(BoundedVec::new(items).unwrap()),
        budget,
        sha_mbs,
    );
    println!("target: decoding a 1 MiB BLOCK frame at >= 50% of raw SHA-256 speed");
}
