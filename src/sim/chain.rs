//! `SimChain`: a simulated node's chain. A block store, the active chain chosen by most
//! cumulative work (ties: the first seen stays), reorganisations reported as the ordered
//! disconnections and connections the real chain publishes, and a bounded orphan pool.
//!
//! Owns the blocks a simulated node holds and which of them are active. Validity is a
//! decision of the test, not of this model: a block is invalid when its hash (or an
//! ancestor's) is in the `invalid` set the simulator passes in; transactions, signatures,
//! balances and merkle roots are never checked. Headers are trusted as they come (the core
//! checked them before submitting; blocks the test gives or mines are built valid). Never
//! talks to a core or reads a clock: the simulator turns what it returns into inputs.

use crate::chain::orphans::MAX_ORPHANS;
use crate::chain::validation::{median_time, next_required_bits};
use crate::chain::work::{block_work, ChainWork};
use crate::params::{NetworkParams, MEDIAN_TIME_SPAN};
use crate::protocol::headers::HeaderTree;
use crate::protocol::BlockResult;
use crate::types::{Block, Hash256, Header};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

/// A change of the active chain, in the order the real chain publishes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChainChange {
    /// `header` at `height` joined the active chain as its tip.
    Connected { header: Header, height: u64 },
    /// `header` at `height` left the active chain; its parent is the tip again.
    Disconnected { header: Header, height: u64 },
}

#[derive(Clone, Debug)]
struct Stored {
    block: Arc<Block>,
    height: u64,
    work: ChainWork,
}

/// A block found invalid, kept as the real block index keeps a failed record.
#[derive(Clone, Debug)]
struct Failed {
    header: Header,
    height: u64,
    work: ChainWork,
}

/// One simulated node's chain. See the module docs.
pub struct SimChain {
    params: &'static NetworkParams,
    /// Every stored block; each one's parent is stored too (genesis excepted).
    blocks: HashMap<Hash256, Stored>,
    /// Blocks found invalid (themselves or through an ancestor), with where they would sit.
    failed: BTreeMap<Hash256, Failed>,
    /// The active chain by height.
    active: Vec<Hash256>,
    /// Blocks whose parent is not stored yet, oldest first; at most `MAX_ORPHANS`.
    orphans: BTreeMap<Hash256, Arc<Block>>,
    orphan_order: VecDeque<Hash256>,
}

impl SimChain {
    /// A chain holding only the genesis block.
    pub fn new(params: &'static NetworkParams) -> SimChain {
        let genesis = params.genesis_block();
        let hash = params.genesis_hash();
        let work = block_work(genesis.header.bits).unwrap_or_default();
        let mut blocks = HashMap::new();
        blocks.insert(
            hash,
            Stored {
                block: Arc::new(genesis),
                height: 0,
                work,
            },
        );
        SimChain {
            params,
            blocks,
            failed: BTreeMap::new(),
            active: vec![hash],
            orphans: BTreeMap::new(),
            orphan_order: VecDeque::new(),
        }
    }

    pub fn params(&self) -> &'static NetworkParams {
        self.params
    }

    pub fn tip(&self) -> Hash256 {
        *self.active.last().expect("never empty")
    }

    pub fn height(&self) -> u64 {
        self.active.len() as u64 - 1
    }

    pub fn tip_header(&self) -> Header {
        self.blocks[&self.tip()].block.header
    }

    /// Cumulative work of the active chain.
    pub fn tip_work(&self) -> ChainWork {
        self.blocks[&self.tip()].work
    }

    /// The stored block `hash`, if any (orphans are not stored).
    pub fn block(&self, hash: &Hash256) -> Option<&Arc<Block>> {
        self.blocks.get(hash).map(|s| &s.block)
    }

    pub fn contains(&self, hash: &Hash256) -> bool {
        self.blocks.contains_key(hash)
    }

    /// Blocks stored, genesis included.
    pub fn len(&self) -> usize {
        self.blocks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }

    pub fn orphan_count(&self) -> usize {
        self.orphans.len()
    }

    /// Whether `hash` was found invalid here.
    pub fn is_failed(&self, hash: &Hash256) -> bool {
        self.failed.contains_key(hash)
    }

    /// The active chain's block at `height`.
    pub fn active_at(&self, height: u64) -> Option<Hash256> {
        self.active.get(height as usize).copied()
    }

    /// The header tree a core starts with, as the real node loads it from its block index
    /// (`net::service::load_header_tree`): every stored block with its body, every failed
    /// one marked, the active tip.
    pub fn header_tree(&self) -> HeaderTree {
        let mut records: Vec<(Hash256, Header, u64, ChainWork, bool)> = self
            .blocks
            .iter()
            .map(|(h, s)| (*h, s.block.header, s.height, s.work, false))
            .chain(
                self.failed
                    .iter()
                    .map(|(h, f)| (*h, f.header, f.height, f.work, true)),
            )
            .collect();
        // `load` sorts by height; a fixed order before it keeps the result independent of the
        // map's iteration order.
        records.sort_by_key(|r| (r.2, r.0));
        HeaderTree::load(self.params, records, self.tip())
    }

    /// Forgets the orphans: they live in memory only, a restart loses them.
    pub fn clear_orphans(&mut self) {
        self.orphans.clear();
        self.orphan_order.clear();
    }

    /// The header of a block that would build on the active tip at `time` (Unix seconds):
    /// the required target, and a time past the median of the last blocks.
    pub fn next_header(&self, time: u64) -> (Header, u64) {
        let tip = self.tip_header();
        let height = self.height();
        let bits = next_required_bits(self.params, height, tip.bits, tip.time, || {
            let first = (height + 1).saturating_sub(self.params.retarget_interval);
            self.active_at(first)
                .map_or(0, |h| self.blocks[&h].block.header.time)
        });
        let times: Vec<u64> = self.active[self.active.len().saturating_sub(MEDIAN_TIME_SPAN)..]
            .iter()
            .map(|h| self.blocks[h].block.header.time)
            .collect();
        let time = time.max(median_time(&times) + 1);
        (
            Header {
                version: crate::params::BLOCK_VERSION,
                prev_hash: self.tip(),
                merkle_root: Hash256::ZERO,
                time,
                bits,
                nonce: 0,
            },
            height,
        )
    }

    /// Takes a block: refused if it (or an ancestor) is in `invalid`, held as an orphan if
    /// its parent is not stored, stored otherwise, and the active chain moved to the
    /// most-work branch. Returns the result for the submitter and the active-chain changes,
    /// in order (blocks from the orphan pool that now connect included).
    pub fn submit(
        &mut self,
        block: Arc<Block>,
        invalid: &BTreeSet<Hash256>,
    ) -> (BlockResult, Vec<ChainChange>) {
        let hash = block.hash();
        let mut changes = Vec::new();
        if self.blocks.contains_key(&hash) || self.orphans.contains_key(&hash) {
            return (BlockResult::Duplicate, changes);
        }
        if self.failed.contains_key(&hash) {
            return (BlockResult::Invalid("sim: known invalid".into()), changes);
        }
        let parent = block.header.prev_hash;
        if let Some(f) = self.failed.get(&parent).cloned() {
            self.fail(hash, &block.header, f.height + 1, f.work);
            return (
                BlockResult::Invalid("sim: builds on an invalid block".into()),
                changes,
            );
        }
        let Some(p) = self.blocks.get(&parent) else {
            self.hold_orphan(hash, block);
            return (BlockResult::Orphan, changes);
        };
        if invalid.contains(&hash) {
            let (height, work) = (p.height + 1, p.work);
            self.fail(hash, &block.header, height, work);
            return (
                BlockResult::Invalid("sim: marked invalid by the test".into()),
                changes,
            );
        }
        self.store(hash, block, &mut changes);
        let result = if self.is_active(&hash) {
            BlockResult::Connected
        } else {
            BlockResult::SideBranch
        };
        // Orphans waiting for this block (and then for those), oldest first.
        let mut parents = vec![hash];
        while let Some(parent) = parents.pop() {
            let children: Vec<Hash256> = self
                .orphan_order
                .iter()
                .copied()
                .filter(|h| self.orphans[h].header.prev_hash == parent)
                .collect();
            for child in children {
                let orphan = self.take_orphan(&child);
                let (p_height, p_work) = {
                    let p = &self.blocks[&parent];
                    (p.height, p.work)
                };
                if invalid.contains(&child) {
                    self.fail(child, &orphan.header, p_height + 1, p_work);
                    continue;
                }
                self.store(child, orphan, &mut changes);
                parents.push(child);
            }
        }
        (result, changes)
    }

    fn is_active(&self, hash: &Hash256) -> bool {
        self.blocks
            .get(hash)
            .is_some_and(|s| self.active.get(s.height as usize) == Some(hash))
    }

    /// Records `hash` (at `height`, on a parent with `parent_work`) as invalid. Orphans that
    /// build on it stay in the pool until they age out, as in the real pool.
    fn fail(&mut self, hash: Hash256, header: &Header, height: u64, parent_work: ChainWork) {
        let work = parent_work + block_work(header.bits).unwrap_or_default();
        self.failed.insert(
            hash,
            Failed {
                header: *header,
                height,
                work,
            },
        );
    }

    fn hold_orphan(&mut self, hash: Hash256, block: Arc<Block>) {
        while self.orphans.len() >= MAX_ORPHANS {
            let Some(oldest) = self.orphan_order.pop_front() else {
                break;
            };
            self.orphans.remove(&oldest);
        }
        self.orphans.insert(hash, block);
        self.orphan_order.push_back(hash);
    }

    fn take_orphan(&mut self, hash: &Hash256) -> Arc<Block> {
        self.orphan_order.retain(|h| h != hash);
        self.orphans.remove(hash).expect("listed in the order")
    }

    /// Stores a block whose parent is stored, then moves the active chain to it if its
    /// branch has more work than the tip (strictly: the first seen wins a tie).
    fn store(&mut self, hash: Hash256, block: Arc<Block>, changes: &mut Vec<ChainChange>) {
        let parent = &self.blocks[&block.header.prev_hash];
        let height = parent.height + 1;
        let work = parent.work + block_work(block.header.bits).unwrap_or_default();
        self.blocks.insert(
            hash,
            Stored {
                block,
                height,
                work,
            },
        );
        if work > self.tip_work() {
            self.reorganise_to(hash, changes);
        }
    }

    /// Makes `tip` (stored) the active tip: disconnects down to the fork, tip first, then
    /// connects the new branch from the fork up.
    fn reorganise_to(&mut self, tip: Hash256, changes: &mut Vec<ChainChange>) {
        let mut branch = Vec::new();
        let mut cursor = tip;
        while !self.is_active(&cursor) {
            branch.push(cursor);
            cursor = self.blocks[&cursor].block.header.prev_hash;
        }
        let fork = self.blocks[&cursor].height as usize;
        while self.active.len() - 1 > fork {
            let gone = self.active.pop().expect("above the fork");
            changes.push(ChainChange::Disconnected {
                header: self.blocks[&gone].block.header,
                height: self.active.len() as u64,
            });
        }
        for hash in branch.into_iter().rev() {
            self.active.push(hash);
            changes.push(ChainChange::Connected {
                header: self.blocks[&hash].block.header,
                height: self.active.len() as u64 - 1,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::testkit::TestChainBuilder;
    use crate::params::Network;
    use crate::types::Address;

    fn params() -> &'static NetworkParams {
        Network::Regtest.params()
    }

    fn chain_of(n: usize, to: u8) -> Vec<Arc<Block>> {
        let mut b = TestChainBuilder::new(params());
        (0..n)
            .map(|_| Arc::new(b.build(Address([to; 20]), vec![])))
            .collect()
    }

    #[test]
    fn the_most_work_branch_wins_and_a_reorg_is_reported_in_order() {
        let mut c = SimChain::new(params());
        let none = BTreeSet::new();
        let a = chain_of(3, 1);
        let b = chain_of(4, 2);
        for blk in &a {
            assert_eq!(c.submit(blk.clone(), &none).0, BlockResult::Connected);
        }
        for blk in &b[..3] {
            assert_eq!(c.submit(blk.clone(), &none).0, BlockResult::SideBranch);
        }
        assert_eq!(c.tip(), a[2].hash(), "a tie keeps the first seen");
        let (result, changes) = c.submit(b[3].clone(), &none);
        assert_eq!(result, BlockResult::Connected);
        let heights: Vec<(bool, u64)> = changes
            .iter()
            .map(|ch| match ch {
                ChainChange::Connected { height, .. } => (true, *height),
                ChainChange::Disconnected { height, .. } => (false, *height),
            })
            .collect();
        assert_eq!(
            heights,
            vec![
                (false, 3),
                (false, 2),
                (false, 1),
                (true, 1),
                (true, 2),
                (true, 3),
                (true, 4)
            ]
        );
        assert_eq!(c.tip(), b[3].hash());
        assert_eq!(c.submit(b[3].clone(), &none).0, BlockResult::Duplicate);
    }

    #[test]
    fn orphans_wait_for_their_parent_and_invalid_blocks_taint_descendants() {
        let mut c = SimChain::new(params());
        let a = chain_of(5, 1);
        let bad = BTreeSet::from([a[3].hash()]);
        assert_eq!(c.submit(a[2].clone(), &bad).0, BlockResult::Orphan);
        assert_eq!(c.submit(a[1].clone(), &bad).0, BlockResult::Orphan);
        let (result, changes) = c.submit(a[0].clone(), &bad);
        assert_eq!(result, BlockResult::Connected);
        assert_eq!(changes.len(), 3, "the orphans followed their parent");
        assert_eq!(c.height(), 3);
        assert!(matches!(
            c.submit(a[3].clone(), &bad).0,
            BlockResult::Invalid(_)
        ));
        assert!(matches!(
            c.submit(a[4].clone(), &BTreeSet::new()).0,
            BlockResult::Invalid(_)
        ));
        assert_eq!(c.height(), 3);
        let tree = c.header_tree();
        assert_eq!(tree.active_tip(), a[2].hash());
        assert!(tree.is_invalid(&a[3].hash()));
    }

    #[test]
    fn the_orphan_pool_is_bounded() {
        let mut c = SimChain::new(params());
        let a = chain_of(MAX_ORPHANS + 10, 1);
        for blk in &a[1..] {
            c.submit(blk.clone(), &BTreeSet::new());
        }
        assert_eq!(c.orphan_count(), MAX_ORPHANS);
    }
}
