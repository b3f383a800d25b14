//! Block templates: the next block's header fields from the chain, its transactions from the
//! mempool (best fee rate first, each account's nonces in order, within the size limit), and a
//! coinbase paying subsidy plus fees to the miner.
//!
//! Pure: the chain facts come through `ChainTemplateSource`, the time is an argument.

use crate::chain::state::{Account, AccountView};
use crate::encoding::BoundedVec;
use crate::mempool::Mempool;
use crate::params::{NetworkParams, BLOCK_VERSION};
use crate::types::block::{HEADER_SIZE, MAX_BLOCK_SIZE};
use crate::types::pow::{target_from_compact, Target};
use crate::types::transaction::MIN_TX_SIZE;
use crate::types::{merkle_root, Address, Amount, Block, Coinbase, Hash256, Header, Transaction};

/// What a template needs to know about the chain it extends. Implement it on one consistent
/// snapshot: the tip, its next target, its median time past and account state must all belong
/// to the same tip.
pub trait ChainTemplateSource {
    /// Height and hash of the block the template builds on.
    fn tip(&self) -> (u64, Hash256);
    /// The compact target the next block must carry.
    fn next_bits(&self) -> u32;
    /// Median time of the last 11 blocks ending at the tip.
    fn median_time_past(&self) -> u64;
    /// An account's state at the tip.
    fn account(&self, address: &Address) -> Account;
}

/// Lets a template source serve as the mempool's account view.
struct SourceView<'a>(&'a dyn ChainTemplateSource);

impl AccountView for SourceView<'_> {
    fn account(&self, address: &Address) -> Account {
        self.0.account(address)
    }
}

/// A block ready for the nonce search: every field but `header.nonce` is final.
#[derive(Clone, Debug)]
pub struct BlockTemplate {
    pub block: Block,
    pub height: u64,
    pub target: Target,
    pub subsidy: Amount,
    pub fees: Amount,
}

/// Room for transfers in a block: the size limit less the header, the transaction count and
/// the coinbase.
pub const MAX_TEMPLATE_TX_BYTES: usize = MAX_BLOCK_SIZE - HEADER_SIZE - 8 - MIN_TX_SIZE;

/// The header time of a block built now: never below median time past + 1.
pub fn template_time(now: u64, median_time_past: u64) -> u64 {
    now.max(median_time_past.saturating_add(1))
}

/// Builds the next block on `source`'s tip paying `miner`, with `pool`'s best transactions.
/// Every chosen transaction is valid against the source's account state, whatever the
/// pool's own view, so the template is valid even if the pool lags the chain.
pub fn build_template(
    params: &NetworkParams,
    source: &dyn ChainTemplateSource,
    pool: &Mempool,
    miner: Address,
    now: u64,
) -> BlockTemplate {
    let (tip_height, tip_hash) = source.tip();
    let height = tip_height + 1;
    let subsidy = params.subsidy(height);
    let mut fees = Amount::ZERO;
    let mut transactions = vec![];
    for entry in pool.select(MAX_TEMPLATE_TX_BYTES, &SourceView(source)) {
        // The fees of a valid state's transfers cannot exceed the money supply; should they
        // ever, stop rather than build a coinbase out of range.
        match fees
            .checked_add(entry.fee())
            .and_then(|f| f.checked_add(subsidy))
            .filter(|total| total.is_valid())
        {
            Some(_) => fees = fees.checked_add(entry.fee()).expect("checked above"),
            None => break,
        }
        transactions.push(entry.transaction());
    }
    let coinbase = Transaction::Coinbase(Coinbase {
        height,
        to: miner,
        amount: subsidy.checked_add(fees).expect("checked while choosing"),
    });
    transactions.insert(0, coinbase);
    let txids: Vec<Hash256> = transactions.iter().map(Transaction::txid).collect();
    let bits = source.next_bits();
    let header = Header {
        version: BLOCK_VERSION,
        prev_hash: tip_hash,
        merkle_root: merkle_root(&txids),
        time: template_time(now, source.median_time_past()),
        bits,
        nonce: 0,
    };
    let target = target_from_compact(bits).unwrap_or_else(|_| params.pow_limit());
    BlockTemplate {
        block: Block {
            header,
            transactions: BoundedVec::new(transactions)
                .expect("the size limit keeps the count under MAX_BLOCK_TXS"),
        },
        height,
        target,
        subsidy,
        fees,
    }
}
