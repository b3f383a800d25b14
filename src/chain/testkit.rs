//! Test and benchmark support: deterministic keys and builders that mine valid blocks on
//! networks with an easy target (regtest: about every second nonce meets the limit).
//!
//! Used by unit tests, tests/chain_*.rs and benches/chain.rs. Nothing in the node calls it.

use super::state::{Account, AccountView};
use super::validation::apply_block;
use crate::encoding::BoundedVec;
use crate::params::{NetworkParams, BLOCK_VERSION};
use crate::types::pow::{hash_meets_target, target_from_compact};
use crate::types::{
    merkle_root, sha256d_parts, Address, Amount, Block, Coinbase, Hash256, Header, Transaction,
    Transfer,
};
use ed25519_dalek::SigningKey;
use std::collections::HashMap;

/// Deterministic signing keys: key `i` is derived from `i`.
#[derive(Clone)]
pub struct Keys {
    keys: Vec<SigningKey>,
    addresses: Vec<Address>,
}

impl Keys {
    pub fn new(count: usize) -> Keys {
        let keys: Vec<SigningKey> = (0..count as u64)
            .map(|i| SigningKey::from_bytes(&sha256d_parts(&[b"testkit-key", &i.to_le_bytes()]).0))
            .collect();
        let addresses = keys
            .iter()
            .map(|k| Address::from_public_key(&k.verifying_key().to_bytes()))
            .collect();
        Keys { keys, addresses }
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn key(&self, i: usize) -> &SigningKey {
        &self.keys[i]
    }

    pub fn address(&self, i: usize) -> Address {
        self.addresses[i]
    }

    /// A signed transfer from key `from`.
    pub fn transfer(
        &self,
        params: &NetworkParams,
        from: usize,
        to: Address,
        amount: u64,
        fee: u64,
        nonce: u64,
    ) -> Transaction {
        Transaction::Transfer(Transfer::sign(
            &self.keys[from],
            params.magic,
            to,
            Amount(amount),
            Amount(fee),
            nonce,
        ))
    }
}

/// Increments the nonce until the header meets its own target. Instant on regtest.
pub fn mine(header: &mut Header) {
    let target = target_from_compact(header.bits).expect("a valid target");
    while !hash_meets_target(&header.hash(), &target) {
        header.nonce = header.nonce.wrapping_add(1);
    }
}

/// A mined block on `parent` (at `parent_height`) whose coinbase pays subsidy + fees to
/// `coinbase_to`, carrying `transfers` as given (nothing else is checked).
pub fn make_block(
    params: &NetworkParams,
    parent: &Header,
    parent_height: u64,
    time: u64,
    coinbase_to: Address,
    transfers: Vec<Transaction>,
) -> Block {
    make_block_with_bits(
        params,
        parent,
        parent_height,
        time,
        params.pow_limit_bits,
        coinbase_to,
        transfers,
    )
}

/// `make_block` with an explicit target (for networks that retarget).
pub fn make_block_with_bits(
    params: &NetworkParams,
    parent: &Header,
    parent_height: u64,
    time: u64,
    bits: u32,
    coinbase_to: Address,
    transfers: Vec<Transaction>,
) -> Block {
    let height = parent_height + 1;
    let fees = transfers.iter().fold(Amount::ZERO, |sum, tx| {
        sum.checked_add(tx.fee()).unwrap_or(Amount(u64::MAX))
    });
    let amount = params
        .subsidy(height)
        .checked_add(fees)
        .unwrap_or(Amount(u64::MAX));
    let mut txs = Vec::with_capacity(transfers.len() + 1);
    txs.push(Transaction::Coinbase(Coinbase {
        height,
        to: coinbase_to,
        amount,
    }));
    txs.extend(transfers);
    assemble(
        Header {
            version: BLOCK_VERSION,
            prev_hash: parent.hash(),
            merkle_root: Hash256::ZERO,
            time,
            bits,
            nonce: 0,
        },
        txs,
    )
}

/// A block with this header (merkle root recomputed, nonce re-mined) and these transactions.
pub fn assemble(mut header: Header, txs: Vec<Transaction>) -> Block {
    let txids: Vec<Hash256> = txs.iter().map(Transaction::txid).collect();
    header.merkle_root = merkle_root(&txids);
    mine(&mut header);
    Block {
        header,
        transactions: BoundedVec::new(txs).expect("test blocks are small"),
    }
}

/// Builds a linear chain from genesis, tracking account state so every built block is valid.
pub struct TestChainBuilder {
    params: &'static NetworkParams,
    tip: Header,
    height: u64,
    state: HashMap<Address, Account>,
    blocks: Vec<Block>,
}

impl TestChainBuilder {
    pub fn new(params: &'static NetworkParams) -> TestChainBuilder {
        TestChainBuilder {
            params,
            tip: params.genesis_block().header,
            height: 0,
            state: HashMap::new(),
            blocks: vec![],
        }
    }

    pub fn height(&self) -> u64 {
        self.height
    }

    pub fn tip(&self) -> &Header {
        &self.tip
    }

    /// The account state at the builder's tip.
    pub fn state(&self) -> &HashMap<Address, Account> {
        &self.state
    }

    /// The blocks built so far (heights 1, 2, ...).
    pub fn blocks(&self) -> &[Block] {
        &self.blocks
    }

    pub fn account(&self, address: &Address) -> Account {
        self.state.account(address)
    }

    /// Builds the next block; panics if it is invalid. Advances the tip.
    pub fn build(&mut self, coinbase_to: Address, transfers: Vec<Transaction>) -> Block {
        let block = self.build_unchecked(coinbase_to, transfers);
        let delta = apply_block(&block, &self.state).expect("the built block is valid");
        for (address, _, after) in delta.accounts {
            if after == Account::default() {
                self.state.remove(&address);
            } else {
                self.state.insert(address, after);
            }
        }
        self.tip = block.header;
        self.height += 1;
        self.blocks.push(block.clone());
        block
    }

    /// Alias of `build` that reads better for coinbase-only funding blocks.
    pub fn mine_to(&mut self, coinbase_to: Address, transfers: Vec<Transaction>) -> Block {
        self.build(coinbase_to, transfers)
    }

    /// Builds a block on the tip without checking or advancing.
    pub fn build_unchecked(&self, coinbase_to: Address, transfers: Vec<Transaction>) -> Block {
        make_block(
            self.params,
            &self.tip,
            self.height,
            self.tip.time + 1,
            coinbase_to,
            transfers,
        )
    }

    /// An unchecked block on the tip paying the coinbase to the zero address.
    pub fn block_with(&self, transfers: Vec<Transaction>) -> Block {
        self.build_unchecked(Address([0; 20]), transfers)
    }

    /// `block` with its transactions replaced (merkle root recomputed and re-mined).
    pub fn with_transactions(block: &Block, txs: Vec<Transaction>) -> Block {
        assemble(block.header, txs)
    }
}
