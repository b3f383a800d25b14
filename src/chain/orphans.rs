//! The orphan pool: blocks whose parent is not known yet, held until it arrives.
//!
//! Bounded by count and by bytes; when full, the oldest orphan is dropped. Only blocks that
//! passed the stateless checks (proof of work against their own target, merkle root, size,
//! coinbase shape) get in. Memory only: orphans are not persisted.

use super::validation::BlockSummary;
use crate::types::{Block, Hash256};
use std::collections::{HashMap, VecDeque};

/// Most orphans held at once.
pub const MAX_ORPHANS: usize = 100;
/// Most bytes of orphan blocks held at once.
pub const MAX_ORPHAN_BYTES: usize = 32 * 1024 * 1024;

pub struct Orphan {
    pub block: Block,
    pub summary: BlockSummary,
}

pub struct OrphanPool {
    blocks: HashMap<Hash256, Orphan>,
    by_parent: HashMap<Hash256, Vec<Hash256>>,
    /// Arrival order, oldest first; holds exactly the keys of `blocks`.
    order: VecDeque<Hash256>,
    bytes: usize,
    max_count: usize,
    max_bytes: usize,
}

impl OrphanPool {
    pub fn new(max_count: usize, max_bytes: usize) -> OrphanPool {
        OrphanPool {
            blocks: HashMap::new(),
            by_parent: HashMap::new(),
            order: VecDeque::new(),
            bytes: 0,
            max_count,
            max_bytes,
        }
    }

    pub fn len(&self) -> usize {
        self.blocks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn contains(&self, hash: &Hash256) -> bool {
        self.blocks.contains_key(hash)
    }

    /// Adds an orphan, dropping the oldest ones while over a bound.
    pub fn insert(&mut self, hash: Hash256, block: Block, summary: BlockSummary) {
        if self.blocks.contains_key(&hash) || summary.size > self.max_bytes || self.max_count == 0 {
            return;
        }
        while self.blocks.len() >= self.max_count || self.bytes + summary.size > self.max_bytes {
            match self.order.front().copied() {
                Some(oldest) => {
                    self.remove(&oldest);
                }
                None => break,
            }
        }
        self.by_parent
            .entry(block.header.prev_hash)
            .or_default()
            .push(hash);
        self.bytes += summary.size;
        self.order.push_back(hash);
        self.blocks.insert(hash, Orphan { block, summary });
    }

    fn remove(&mut self, hash: &Hash256) -> Option<Orphan> {
        let orphan = self.blocks.remove(hash)?;
        self.bytes -= orphan.summary.size;
        self.order.retain(|h| h != hash);
        let parent = orphan.block.header.prev_hash;
        if let Some(siblings) = self.by_parent.get_mut(&parent) {
            siblings.retain(|h| h != hash);
            if siblings.is_empty() {
                self.by_parent.remove(&parent);
            }
        }
        Some(orphan)
    }

    /// Removes and returns the orphans whose parent is `parent`, oldest first.
    pub fn take_children(&mut self, parent: &Hash256) -> Vec<(Hash256, Orphan)> {
        let hashes = self.by_parent.remove(parent).unwrap_or_default();
        hashes
            .into_iter()
            .filter_map(|h| self.remove(&h).map(|o| (h, o)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::testkit::TestChainBuilder;
    use crate::params::REGTEST;
    use crate::types::Amount;

    fn summary(size: usize) -> BlockSummary {
        BlockSummary {
            fees: Amount::ZERO,
            size,
        }
    }

    fn chain(n: usize) -> Vec<Block> {
        let mut b = TestChainBuilder::new(&REGTEST);
        (0..n)
            .map(|_| b.build(crate::types::Address([1; 20]), vec![]))
            .collect()
    }

    #[test]
    fn children_come_back_by_parent() {
        let blocks = chain(3);
        let mut pool = OrphanPool::new(10, 1 << 20);
        pool.insert(blocks[2].hash(), blocks[2].clone(), summary(100));
        pool.insert(blocks[1].hash(), blocks[1].clone(), summary(100));
        assert_eq!(pool.len(), 2);
        let kids = pool.take_children(&blocks[0].hash());
        assert_eq!(kids.len(), 1);
        assert_eq!(kids[0].0, blocks[1].hash());
        assert!(pool.take_children(&blocks[0].hash()).is_empty());
        assert_eq!(pool.take_children(&blocks[1].hash()).len(), 1);
        assert!(pool.is_empty());
        assert_eq!(pool.bytes(), 0);
    }

    #[test]
    fn the_oldest_is_dropped_when_full_by_count_or_bytes() {
        let blocks = chain(6);
        let mut pool = OrphanPool::new(3, 1000);
        for b in &blocks[..4] {
            pool.insert(b.hash(), b.clone(), summary(100));
        }
        assert_eq!(pool.len(), 3);
        assert!(!pool.contains(&blocks[0].hash()));
        pool.insert(blocks[4].hash(), blocks[4].clone(), summary(850));
        // 850 + 100 + ... must fit in 1000: only the newest small one can stay.
        assert!(pool.bytes() <= 1000);
        assert!(pool.contains(&blocks[4].hash()));
        // Larger than the whole pool: refused.
        pool.insert(blocks[5].hash(), blocks[5].clone(), summary(1001));
        assert!(!pool.contains(&blocks[5].hash()));
    }
}
