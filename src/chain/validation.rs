//! Consensus validation as pure functions: header checks, stateless block checks, and the
//! stateful application of a block's transactions to account state.
//!
//! Owns the consensus rules (docs/CONSENSUS.md states them precisely). Never reads the clock
//! (the current time is a parameter), never touches the store: the caller supplies the
//! header context and a read-only view of the accounts the block touches.

use super::error::BlockError;
use super::signatures;
use super::state::{Account, AccountView};
use super::work::{is_retarget_height, retarget_bits};
use crate::metrics::SignatureMetrics;
use crate::params::{NetworkParams, BLOCK_VERSION, MAX_FUTURE_BLOCK_TIME_SECS};
use crate::types::block::{merkle_root, MAX_BLOCK_SIZE};
use crate::types::pow::{hash_meets_target, target_from_compact};
use crate::types::{Address, Amount, Block, Hash256, Header, Transaction, Transfer};
use std::collections::HashMap;

/// What a header is checked against: facts about its parent's chain, and the local time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeaderContext {
    /// Height the new block would have.
    pub height: u64,
    /// The target the new block must carry (`next_required_bits`).
    pub required_bits: u32,
    /// Median time of the (up to) 11 blocks ending at the parent.
    pub median_time_past: u64,
    /// Local clock, seconds since the epoch.
    pub now: u64,
}

/// The median of up to `MEDIAN_TIME_SPAN` block times (the element at index len/2 once
/// sorted; for an even count, the upper middle).
pub fn median_time(times: &[u64]) -> u64 {
    let mut sorted = times.to_vec();
    sorted.sort_unstable();
    sorted.get(sorted.len() / 2).copied().unwrap_or(0)
}

/// The target the block at `parent_height + 1` must carry.
///
/// Regtest (and any network without retargeting): always the pow limit. Otherwise the
/// parent's target, except at heights that are a multiple of `retarget_interval`, where it is
/// `retarget_bits(parent bits, time of the block at height − interval, parent time)`.
/// `interval_start_time` is only consulted at retarget heights.
pub fn next_required_bits(
    params: &NetworkParams,
    parent_height: u64,
    parent_bits: u32,
    parent_time: u64,
    interval_start_time: impl FnOnce() -> u64,
) -> u32 {
    if !params.retarget {
        return params.pow_limit_bits;
    }
    let height = parent_height + 1;
    if !is_retarget_height(params, height) {
        return parent_bits;
    }
    retarget_bits(params, parent_bits, interval_start_time(), parent_time)
}

/// Header rules that need no context: version, a well-formed target within the pow limit,
/// and proof of work against the header's own target.
pub fn check_header_stateless(
    params: &NetworkParams,
    header: &Header,
    hash: &Hash256,
) -> Result<(), BlockError> {
    if header.version != BLOCK_VERSION {
        return Err(BlockError::BadVersion {
            found: header.version,
            expected: BLOCK_VERSION,
        });
    }
    let target = target_from_compact(header.bits).map_err(BlockError::BadCompactTarget)?;
    if target > params.pow_limit() {
        return Err(BlockError::TargetAboveLimit { bits: header.bits });
    }
    if !hash_meets_target(hash, &target) {
        return Err(BlockError::HighHash);
    }
    Ok(())
}

/// Header rules against its parent's chain and the local clock.
pub fn check_header_contextual(header: &Header, ctx: &HeaderContext) -> Result<(), BlockError> {
    if header.bits != ctx.required_bits {
        return Err(BlockError::BadDiffBits {
            found: header.bits,
            expected: ctx.required_bits,
        });
    }
    if header.time <= ctx.median_time_past {
        return Err(BlockError::TimeTooOld {
            time: header.time,
            median: ctx.median_time_past,
        });
    }
    let max = ctx.now.saturating_add(MAX_FUTURE_BLOCK_TIME_SECS);
    if header.time > max {
        return Err(BlockError::TimeTooNew {
            time: header.time,
            max,
        });
    }
    Ok(())
}

/// What the stateless block checks learn, for the later stages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockSummary {
    /// Sum of the transfers' fees.
    pub fees: Amount,
    /// Encoded size in bytes.
    pub size: usize,
}

/// Block rules that need no context (apart from the header's own): encoded size, merkle root,
/// exactly one coinbase and it first, every amount and fee within the money range, and a fee
/// sum that does not overflow. Signatures are checked separately (`check_signatures`): they
/// are the expensive part and run in parallel.
pub fn check_block_stateless(block: &Block) -> Result<BlockSummary, BlockError> {
    check_block_stateless_with(block, &block.txids())
}

/// `check_block_stateless` with the block's txids (in block order) already computed.
fn check_block_stateless_with(
    block: &Block,
    txids: &[Hash256],
) -> Result<BlockSummary, BlockError> {
    let size = block.encoded_size();
    if size > MAX_BLOCK_SIZE {
        return Err(BlockError::TooLarge {
            size,
            max: MAX_BLOCK_SIZE,
        });
    }
    if merkle_root(txids) != block.header.merkle_root {
        return Err(BlockError::BadMerkleRoot);
    }
    let mut txs = block.transactions.iter();
    match txs.next() {
        Some(Transaction::Coinbase(cb)) => {
            if !cb.amount.is_valid() {
                return Err(BlockError::CoinbaseAmountRange);
            }
        }
        _ => return Err(BlockError::MissingCoinbase),
    }
    let mut fees = Amount::ZERO;
    for (index, tx) in txs.enumerate().map(|(i, tx)| (i + 1, tx)) {
        let Transaction::Transfer(t) = tx else {
            return Err(BlockError::MultipleCoinbase { index });
        };
        if !t.amount.is_valid()
            || !t.fee.is_valid()
            || !t.amount.checked_add(t.fee).is_some_and(Amount::is_valid)
        {
            return Err(BlockError::AmountOutOfRange { index });
        }
        fees = fees
            .checked_add(t.fee)
            .ok_or(BlockError::AmountOutOfRange { index })?;
    }
    Ok(BlockSummary { fees, size })
}

/// The coinbase must carry the block height and pay exactly subsidy + fees. Call after
/// `check_block_stateless` (which guarantees a coinbase first).
pub fn check_coinbase(
    params: &NetworkParams,
    block: &Block,
    height: u64,
    fees: Amount,
) -> Result<(), BlockError> {
    let Some(Transaction::Coinbase(cb)) = block.transactions.first() else {
        return Err(BlockError::MissingCoinbase);
    };
    if cb.height != height {
        return Err(BlockError::BadCoinbaseHeight {
            found: cb.height,
            expected: height,
        });
    }
    let expected = params
        .subsidy(height)
        .checked_add(fees)
        .filter(|a| a.is_valid())
        .ok_or(BlockError::CoinbaseAmountRange)?;
    if cb.amount != expected {
        return Err(BlockError::BadCoinbaseAmount {
            found: cb.amount,
            expected,
        });
    }
    Ok(())
}

/// Transactions whose signatures were already verified with the consensus rule
/// (`signatures::verify_transfer_signature`), e.g. by the mempool on admission. A txid commits
/// to the signature bytes, so a verified txid needs no second verification.
pub trait VerifiedTransactions: Send + Sync + 'static {
    /// For each txid, whether its signature is known to be valid.
    fn verified(&self, txids: &[Hash256]) -> Vec<bool>;
}

/// Verifies every transfer signature (batch verification across `threads` threads). The
/// error names the transaction's index in the block.
pub fn check_signatures(
    params: &NetworkParams,
    block: &Block,
    threads: usize,
) -> Result<(), BlockError> {
    check_signatures_except(params, block, threads, None, None)
}

/// `check_signatures`, skipping the transfers `known` vouches for and reporting each batch to
/// `metrics` when given.
pub fn check_signatures_except(
    params: &NetworkParams,
    block: &Block,
    threads: usize,
    known: Option<&dyn VerifiedTransactions>,
    metrics: Option<&SignatureMetrics>,
) -> Result<(), BlockError> {
    // The txids are only needed to ask `known`.
    let txids = if known.is_some() {
        block.txids()
    } else {
        Vec::new()
    };
    check_signatures_vouched(params, block, &txids, threads, known, metrics)
}

/// `check_signatures_except` with the block's txids (in block order) already computed when
/// `known` is given (unread otherwise).
fn check_signatures_vouched(
    params: &NetworkParams,
    block: &Block,
    txids: &[Hash256],
    threads: usize,
    known: Option<&dyn VerifiedTransactions>,
    metrics: Option<&SignatureMetrics>,
) -> Result<(), BlockError> {
    let skip = known.map_or_else(Vec::new, |known| known.verified(txids));
    check_signatures_skipping(params, block, &skip, threads, metrics)
}

/// Verifies the signatures of the transfers whose index in the block is not set in `skip`.
fn check_signatures_skipping(
    params: &NetworkParams,
    block: &Block,
    skip: &[bool],
    threads: usize,
    metrics: Option<&SignatureMetrics>,
) -> Result<(), BlockError> {
    let mut transfers: Vec<&Transfer> = Vec::with_capacity(block.transactions.len());
    let mut positions: Vec<usize> = Vec::with_capacity(block.transactions.len());
    for (index, tx) in block.transactions.iter().enumerate() {
        if let Transaction::Transfer(t) = tx {
            if !skip.get(index).copied().unwrap_or(false) {
                transfers.push(t);
                positions.push(index);
            }
        }
    }
    signatures::verify_transfers(&transfers, params.magic, threads, metrics).map_err(|i| {
        BlockError::BadSignature {
            index: positions.get(i).copied().unwrap_or(0),
        }
    })
}

/// The addresses a block reads and writes, in first-touch order (coinbase recipient, then
/// each transfer's sender and recipient).
pub fn touched_addresses(block: &Block) -> Vec<Address> {
    let mut seen = std::collections::HashSet::with_capacity(block.transactions.len() * 2);
    let mut out = Vec::with_capacity(block.transactions.len() * 2);
    // A sender's address is derived once per block, however many transfers it makes.
    let mut senders: std::collections::HashSet<&[u8; 32]> = std::collections::HashSet::new();
    let mut touch = |a: Address| {
        if seen.insert(a) {
            out.push(a);
        }
    };
    for tx in block.transactions.iter() {
        match tx {
            Transaction::Coinbase(cb) => touch(cb.to),
            Transaction::Transfer(t) => {
                if senders.insert(&t.from) {
                    touch(t.sender());
                }
                touch(t.to);
            }
        }
    }
    out
}

/// The effect of a block on account state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StateDelta {
    /// Every touched account: (address, state before the block, state after), in first-touch
    /// order. Applying `after` connects the block; restoring `before` disconnects it.
    pub accounts: Vec<(Address, Account, Account)>,
}

impl StateDelta {
    /// The undo data: each touched account's state before the block.
    pub fn undo(&self) -> Vec<(Address, Account)> {
        self.accounts
            .iter()
            .map(|(a, before, _)| (*a, *before))
            .collect()
    }
}

/// Applies the block's transactions in order to the state `view` (the state at the parent):
/// the coinbase credits its recipient; each transfer must carry its sender's current nonce,
/// and the sender must hold `amount + fee`; the sender is debited `amount + fee` and its nonce
/// incremented, then the recipient is credited `amount`. All arithmetic is checked.
///
/// Checks nothing else: run `check_block_stateless`, `check_coinbase` and `check_signatures`
/// too.
pub fn apply_block(block: &Block, view: &impl AccountView) -> Result<StateDelta, BlockError> {
    let mut slots: HashMap<Address, usize> = HashMap::with_capacity(block.transactions.len() * 2);
    let mut accounts: Vec<(Address, Account, Account)> =
        Vec::with_capacity(block.transactions.len() * 2);
    let mut slot = |address: Address, accounts: &mut Vec<(Address, Account, Account)>| -> usize {
        *slots.entry(address).or_insert_with(|| {
            let current = view.account(&address);
            accounts.push((address, current, current));
            accounts.len() - 1
        })
    };
    // A sender's address is derived once per block (its slot found by key after that).
    let mut sender_slots: HashMap<&[u8; 32], usize> = HashMap::new();
    for (index, tx) in block.transactions.iter().enumerate() {
        match tx {
            Transaction::Coinbase(cb) => {
                let i = slot(cb.to, &mut accounts);
                let to = &mut accounts[i].2;
                to.balance = to
                    .balance
                    .checked_add(cb.amount)
                    .ok_or(BlockError::Overflow { index })?;
            }
            Transaction::Transfer(t) => {
                let needed = t
                    .amount
                    .checked_add(t.fee)
                    .ok_or(BlockError::AmountOutOfRange { index })?;
                let s = match sender_slots.get(&t.from) {
                    Some(&s) => s,
                    None => {
                        let s = slot(t.sender(), &mut accounts);
                        sender_slots.insert(&t.from, s);
                        s
                    }
                };
                let sender = &mut accounts[s].2;
                if t.nonce != sender.nonce {
                    return Err(BlockError::BadNonce {
                        index,
                        expected: sender.nonce,
                        found: t.nonce,
                    });
                }
                sender.balance =
                    sender
                        .balance
                        .checked_sub(needed)
                        .ok_or(BlockError::InsufficientBalance {
                            index,
                            needed,
                            available: sender.balance,
                        })?;
                sender.nonce = sender
                    .nonce
                    .checked_add(1)
                    .ok_or(BlockError::Overflow { index })?;
                let r = slot(t.to, &mut accounts);
                let to = &mut accounts[r].2;
                to.balance = to
                    .balance
                    .checked_add(t.amount)
                    .ok_or(BlockError::Overflow { index })?;
            }
        }
    }
    Ok(StateDelta { accounts })
}

/// Every rule that does not need the parent's chain state, in the order the chain runs them
/// on arrival: header (stateless), block (stateless). Returns the fee sum.
pub fn check_block_arrival(
    params: &NetworkParams,
    block: &Block,
    hash: &Hash256,
) -> Result<BlockSummary, BlockError> {
    check_header_stateless(params, &block.header, hash)?;
    check_block_stateless(block)
}

/// A block that passed every check needing no chain state: the stateless header and block
/// rules and, when `signatures_checked`, every signature. Only `precheck` makes one, so
/// holding one is proof of those checks; the chain writer then runs only the contextual and
/// stateful rules (DESIGN §2: stateless checks run in parallel, off the writer).
#[derive(Clone, Debug)]
pub struct CheckedBlock {
    block: Block,
    hash: Hash256,
    summary: BlockSummary,
    signatures_checked: bool,
}

impl CheckedBlock {
    pub fn block(&self) -> &Block {
        &self.block
    }

    pub fn hash(&self) -> Hash256 {
        self.hash
    }

    pub fn summary(&self) -> BlockSummary {
        self.summary
    }

    pub fn signatures_checked(&self) -> bool {
        self.signatures_checked
    }

    pub fn into_block(self) -> Block {
        self.block
    }
}

/// The stateless checks (`check_block_arrival`) and, with `signature_threads`, the
/// signatures on that many threads. On failure returns the block hash with the rule broken.
pub fn precheck(
    params: &NetworkParams,
    block: Block,
    signature_threads: Option<usize>,
) -> Result<CheckedBlock, (Hash256, BlockError)> {
    precheck_except(params, block, signature_threads, None, None)
}

/// `precheck`, skipping the signatures `known` vouches for and reporting each signature batch
/// to `metrics` when given.
pub fn precheck_except(
    params: &NetworkParams,
    block: Block,
    signature_threads: Option<usize>,
    known: Option<&dyn VerifiedTransactions>,
    metrics: Option<&SignatureMetrics>,
) -> Result<CheckedBlock, (Hash256, BlockError)> {
    let hash = block.hash();
    // Computed once: the merkle root and the signatures the mempool vouches for both need
    // them.
    let txids = block.txids();
    let summary = check_header_stateless(params, &block.header, &hash)
        .and_then(|()| check_block_stateless_with(&block, &txids))
        .map_err(|e| (hash, e))?;
    if let Some(threads) = signature_threads {
        check_signatures_vouched(params, &block, &txids, threads, known, metrics)
            .map_err(|e| (hash, e))?;
    }
    Ok(CheckedBlock {
        block,
        hash,
        summary,
        signatures_checked: signature_threads.is_some(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::testkit::{Keys, TestChainBuilder};
    use crate::params::{MAIN, REGTEST};
    use crate::types::Coinbase;

    const NOW: u64 = 2_000_000_000;

    fn ctx(height: u64) -> HeaderContext {
        HeaderContext {
            height,
            required_bits: REGTEST.pow_limit_bits,
            median_time_past: 1000,
            now: NOW,
        }
    }

    fn header() -> Header {
        Header {
            version: BLOCK_VERSION,
            prev_hash: Hash256::ZERO,
            merkle_root: Hash256::ZERO,
            time: 2000,
            bits: REGTEST.pow_limit_bits,
            nonce: 0,
        }
    }

    #[test]
    fn median_of_odd_even_and_empty_lists() {
        assert_eq!(median_time(&[5, 1, 3]), 3);
        assert_eq!(median_time(&[4, 1, 3, 2]), 3);
        assert_eq!(median_time(&[]), 0);
        assert_eq!(median_time(&[7]), 7);
    }

    #[test]
    fn regtest_always_requires_the_pow_limit() {
        for h in [0, 1, 719, 720, 1440] {
            let bits = next_required_bits(&REGTEST, h, 0x1d00ffff, 0, || unreachable!());
            assert_eq!(bits, REGTEST.pow_limit_bits);
        }
    }

    #[test]
    fn main_keeps_the_parent_target_between_retargets_and_retargets_on_the_interval() {
        let bits = 0x1d0f_fffe;
        assert_eq!(
            next_required_bits(&MAIN, 5, bits, 0, || unreachable!()),
            bits
        );
        // Parent at 719: block 720 retargets over the times of blocks 0 and 719.
        let expected = MAIN.retarget_interval * MAIN.target_spacing_secs;
        let new = next_required_bits(&MAIN, 719, bits, 1000 + expected / 2, || 1000);
        assert_eq!(new, 0x1d07_ffff);
    }

    #[test]
    fn stateless_header_rules() {
        let mut h = header();
        // Find a nonce that meets the regtest target and one that does not.
        let target = REGTEST.pow_limit();
        let good = (0..).find(|n| {
            h.nonce = *n;
            hash_meets_target(&h.hash(), &target)
        });
        h.nonce = good.unwrap();
        assert_eq!(check_header_stateless(&REGTEST, &h, &h.hash()), Ok(()));

        let mut bad = h;
        bad.nonce = (0..)
            .find(|n| {
                bad.nonce = *n;
                !hash_meets_target(&bad.hash(), &target)
            })
            .unwrap();
        assert_eq!(
            check_header_stateless(&REGTEST, &bad, &bad.hash()),
            Err(BlockError::HighHash)
        );

        let mut v = h;
        v.version = 2;
        assert!(matches!(
            check_header_stateless(&REGTEST, &v, &v.hash()),
            Err(BlockError::BadVersion { found: 2, .. })
        ));

        let mut easy = h;
        easy.bits = 0x1d80_ffff;
        assert!(matches!(
            check_header_stateless(&REGTEST, &easy, &easy.hash()),
            Err(BlockError::BadCompactTarget(_))
        ));
        let mut above = h;
        above.bits = MAIN.pow_limit_bits + 1;
        assert!(matches!(
            check_header_stateless(&MAIN, &above, &above.hash()),
            Err(BlockError::TargetAboveLimit { .. })
        ));
    }

    #[test]
    fn contextual_header_rules() {
        let h = header();
        assert_eq!(check_header_contextual(&h, &ctx(1)), Ok(()));
        let mut c = ctx(1);
        c.required_bits = 0x1d00ffff;
        assert!(matches!(
            check_header_contextual(&h, &c),
            Err(BlockError::BadDiffBits { .. })
        ));
        let mut old = h;
        old.time = 1000;
        assert!(matches!(
            check_header_contextual(&old, &ctx(1)),
            Err(BlockError::TimeTooOld { .. })
        ));
        old.time = 1001;
        assert_eq!(check_header_contextual(&old, &ctx(1)), Ok(()));
        let mut future = h;
        future.time = NOW + MAX_FUTURE_BLOCK_TIME_SECS;
        assert_eq!(check_header_contextual(&future, &ctx(1)), Ok(()));
        future.time += 1;
        let err = check_header_contextual(&future, &ctx(1)).unwrap_err();
        assert!(matches!(err, BlockError::TimeTooNew { .. }));
        assert!(!err.is_bound_to_hash());
    }

    fn funded() -> (TestChainBuilder, Keys) {
        let keys = Keys::new(3);
        let mut b = TestChainBuilder::new(&REGTEST);
        b.mine_to(keys.address(0), vec![]);
        (b, keys)
    }

    #[test]
    fn a_valid_block_passes_every_stage() {
        let (b, keys) = funded();
        let t = keys.transfer(&REGTEST, 0, keys.address(1), 100, 5, 0);
        let block = b.build_unchecked(keys.address(2), vec![t]);
        let summary = check_block_arrival(&REGTEST, &block, &block.hash()).unwrap();
        assert_eq!(summary.fees, Amount(5));
        check_coinbase(&REGTEST, &block, 2, summary.fees).unwrap();
        check_signatures(&REGTEST, &block, 2).unwrap();
        let delta = apply_block(&block, b.state()).unwrap();
        let after: HashMap<Address, Account> =
            delta.accounts.iter().map(|(a, _, s)| (*a, *s)).collect();
        let subsidy = REGTEST.subsidy(1).0;
        assert_eq!(after[&keys.address(0)].balance, Amount(subsidy - 105));
        assert_eq!(after[&keys.address(0)].nonce, 1);
        assert_eq!(after[&keys.address(1)].balance, Amount(100));
        assert_eq!(
            after[&keys.address(2)].balance,
            Amount(REGTEST.subsidy(2).0 + 5)
        );
    }

    #[test]
    fn merkle_and_size_failures_are_not_bound_to_the_hash() {
        let (mut b, keys) = funded();
        let mut block = b.build(keys.address(2), vec![]);
        block.header.merkle_root = Hash256([1; 32]);
        let err = check_block_stateless(&block).unwrap_err();
        assert_eq!(err, BlockError::BadMerkleRoot);
        assert!(!err.is_bound_to_hash());
    }

    #[test]
    fn coinbase_must_be_first_and_alone() {
        let (mut b, keys) = funded();
        let t = keys.transfer(&REGTEST, 0, keys.address(1), 1, 0, 0);
        let block = b.build(keys.address(2), vec![t.clone()]);
        let mut txs = block.transactions.clone().into_inner();
        txs.swap(0, 1);
        let swapped = TestChainBuilder::with_transactions(&block, txs.clone());
        assert_eq!(
            check_block_stateless(&swapped),
            Err(BlockError::MissingCoinbase)
        );
        txs.swap(0, 1);
        txs.push(txs[0].clone());
        let two = TestChainBuilder::with_transactions(&block, txs);
        assert_eq!(
            check_block_stateless(&two),
            Err(BlockError::MultipleCoinbase { index: 2 })
        );
        let empty = TestChainBuilder::with_transactions(&block, vec![]);
        assert_eq!(
            check_block_stateless(&empty),
            Err(BlockError::MissingCoinbase)
        );
    }

    #[test]
    fn amounts_must_be_in_range() {
        let (b, keys) = funded();
        let big = crate::types::amount::MAX_MONEY;
        let t = keys.transfer(&REGTEST, 0, keys.address(1), big, 1, 0);
        let block = b.build_unchecked(keys.address(2), vec![t]);
        assert_eq!(
            check_block_stateless(&block),
            Err(BlockError::AmountOutOfRange { index: 1 })
        );
        let t = keys.transfer(&REGTEST, 0, keys.address(1), big + 1, 0, 0);
        let block = b.build_unchecked(keys.address(2), vec![t]);
        assert_eq!(
            check_block_stateless(&block),
            Err(BlockError::AmountOutOfRange { index: 1 })
        );
        let t = keys.transfer(&REGTEST, 0, keys.address(1), 0, big + 1, 0);
        let block = b.build_unchecked(keys.address(2), vec![t]);
        // Keep the coinbase in range so the transfer's fee is what fails.
        let mut txs = block.transactions.clone().into_inner();
        txs[0] = Transaction::Coinbase(Coinbase {
            height: 2,
            to: keys.address(2),
            amount: REGTEST.subsidy(2),
        });
        let block = TestChainBuilder::with_transactions(&block, txs);
        assert_eq!(
            check_block_stateless(&block),
            Err(BlockError::AmountOutOfRange { index: 1 })
        );
    }

    #[test]
    fn coinbase_height_and_amount() {
        let (mut b, keys) = funded();
        let t = keys.transfer(&REGTEST, 0, keys.address(1), 10, 7, 0);
        let block = b.build(keys.address(2), vec![t]);
        assert_eq!(check_coinbase(&REGTEST, &block, 2, Amount(7)), Ok(()));
        assert!(matches!(
            check_coinbase(&REGTEST, &block, 3, Amount(7)),
            Err(BlockError::BadCoinbaseHeight {
                found: 2,
                expected: 3
            })
        ));
        assert!(matches!(
            check_coinbase(&REGTEST, &block, 2, Amount(6)),
            Err(BlockError::BadCoinbaseAmount { .. })
        ));
        let mut txs = block.transactions.clone().into_inner();
        txs[0] = Transaction::Coinbase(Coinbase {
            height: 2,
            to: keys.address(2),
            amount: Amount(u64::MAX),
        });
        let over = TestChainBuilder::with_transactions(&block, txs);
        assert_eq!(
            check_block_stateless(&over),
            Err(BlockError::CoinbaseAmountRange)
        );
    }

    #[test]
    fn a_bad_signature_names_its_transaction() {
        let (b, keys) = funded();
        let t0 = keys.transfer(&REGTEST, 0, keys.address(1), 10, 0, 0);
        let mut t1 = keys.transfer(&REGTEST, 0, keys.address(1), 10, 0, 1);
        if let Transaction::Transfer(t) = &mut t1 {
            t.signature[5] ^= 0x40;
        }
        let block = b.build_unchecked(keys.address(2), vec![t0, t1]);
        assert_eq!(
            check_signatures(&REGTEST, &block, 2),
            Err(BlockError::BadSignature { index: 2 })
        );
    }

    #[test]
    fn signatures_vouched_for_are_skipped_and_only_those() {
        struct Known(Vec<Hash256>);
        impl VerifiedTransactions for Known {
            fn verified(&self, txids: &[Hash256]) -> Vec<bool> {
                txids.iter().map(|t| self.0.contains(t)).collect()
            }
        }
        let (b, keys) = funded();
        let mut t0 = keys.transfer(&REGTEST, 0, keys.address(1), 10, 0, 0);
        if let Transaction::Transfer(t) = &mut t0 {
            t.signature[5] ^= 0x40;
        }
        let t1 = keys.transfer(&REGTEST, 0, keys.address(1), 10, 0, 1);
        let block = b.build_unchecked(keys.address(2), vec![t0.clone(), t1.clone()]);
        assert!(check_signatures_except(&REGTEST, &block, 2, None, None).is_err());
        let vouched = Known(vec![t0.txid()]);
        assert_eq!(
            check_signatures_except(&REGTEST, &block, 2, Some(&vouched), None),
            Ok(())
        );
        let other = Known(vec![t1.txid()]);
        assert_eq!(
            check_signatures_except(&REGTEST, &block, 2, Some(&other), None),
            Err(BlockError::BadSignature { index: 1 })
        );
    }

    #[test]
    fn nonces_must_run_in_order() {
        let (b, keys) = funded();
        let t = keys.transfer(&REGTEST, 0, keys.address(1), 10, 0, 1);
        let block = b.build_unchecked(keys.address(2), vec![t]);
        assert!(matches!(
            apply_block(&block, b.state()),
            Err(BlockError::BadNonce {
                index: 1,
                expected: 0,
                found: 1
            })
        ));
        // The same transfer twice: the second carries a stale nonce.
        let t = keys.transfer(&REGTEST, 0, keys.address(1), 10, 0, 0);
        let block = b.build_unchecked(keys.address(2), vec![t.clone(), t]);
        assert!(matches!(
            apply_block(&block, b.state()),
            Err(BlockError::BadNonce { index: 2, .. })
        ));
    }

    #[test]
    fn overspending_fails_including_the_fee() {
        let (b, keys) = funded();
        let all = REGTEST.subsidy(1).0;
        let ok = keys.transfer(&REGTEST, 0, keys.address(1), all - 1, 1, 0);
        let block = b.build_unchecked(keys.address(2), vec![ok]);
        assert!(apply_block(&block, b.state()).is_ok());
        let over = keys.transfer(&REGTEST, 0, keys.address(1), all, 1, 0);
        let block = b.build_unchecked(keys.address(2), vec![over]);
        assert!(matches!(
            apply_block(&block, b.state()),
            Err(BlockError::InsufficientBalance { index: 1, .. })
        ));
        // An account with nothing cannot send zero plus a fee either.
        let empty = keys.transfer(&REGTEST, 1, keys.address(0), 0, 1, 0);
        let block = b.build_unchecked(keys.address(2), vec![empty]);
        assert!(matches!(
            apply_block(&block, b.state()),
            Err(BlockError::InsufficientBalance { index: 1, .. })
        ));
    }

    #[test]
    fn sending_to_yourself_costs_only_the_fee() {
        let (b, keys) = funded();
        let t = keys.transfer(&REGTEST, 0, keys.address(0), 1000, 3, 0);
        let block = b.build_unchecked(keys.address(2), vec![t]);
        let delta = apply_block(&block, b.state()).unwrap();
        let (_, before, after) = delta.accounts[1];
        assert_eq!(delta.accounts[1].0, keys.address(0));
        assert_eq!(after.balance.0, before.balance.0 - 3);
        assert_eq!(after.nonce, 1);
    }

    #[test]
    fn balance_and_nonce_overflow_are_rejected() {
        let keys = Keys::new(2);
        let mut state: HashMap<Address, Account> = HashMap::new();
        state.insert(
            keys.address(0),
            Account {
                balance: Amount(1000),
                nonce: u64::MAX,
            },
        );
        state.insert(
            keys.address(1),
            Account {
                balance: Amount(u64::MAX - 5),
                nonce: 0,
            },
        );
        let b = TestChainBuilder::new(&REGTEST);
        let t = keys.transfer(&REGTEST, 0, keys.address(1), 1, 0, u64::MAX);
        let block = b.block_with(vec![t]);
        assert!(matches!(
            apply_block(&block, &state),
            Err(BlockError::Overflow { index: 1 })
        ));
        state.get_mut(&keys.address(0)).unwrap().nonce = 0;
        let t = keys.transfer(&REGTEST, 0, keys.address(1), 10, 0, 0);
        let block = b.block_with(vec![t]);
        assert!(matches!(
            apply_block(&block, &state),
            Err(BlockError::Overflow { index: 1 })
        ));
    }

    #[test]
    fn touched_addresses_are_in_first_touch_order_without_repeats() {
        let (b, keys) = funded();
        let t0 = keys.transfer(&REGTEST, 0, keys.address(1), 1, 0, 0);
        let t1 = keys.transfer(&REGTEST, 0, keys.address(2), 1, 0, 1);
        let block = b.build_unchecked(keys.address(2), vec![t0, t1]);
        assert_eq!(
            touched_addresses(&block),
            vec![keys.address(2), keys.address(0), keys.address(1)]
        );
    }
}
