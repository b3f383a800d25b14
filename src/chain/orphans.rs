//! The orphan pool: blocks whose parent is not known yet, held until it arrives.
//!
//! Bounded by count and by bytes; when full, the oldest orphan is dropped. Only blocks that
//! passed the stateless checks (proof of work against their own target, merkle root, size,
//! coinbase shape) get in. Memory only: orphans are not persisted.

use super::validation::CheckedBlock;
use crate::types::Hash256;
use std::collections::{HashMap, VecDeque};

/// Most orphans held at once.
pub const MAX_ORPHANS: usize = 100;
/// Most bytes of orphan blocks held at once.
pub const MAX_ORPHAN_BYTES: usize = 32 * 1024 * 1024;

pub struct OrphanPool {
    blocks: HashMap<Hash256, CheckedBlock>,
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
    pub fn insert(&mut self, orphan: CheckedBlock) {
        let (hash, size) = (orphan.hash(), orphan.summary().size);
        if self.blocks.contains_key(&hash) || size > self.max_bytes || self.max_count == 0 {
            return;
        }
        while self.blocks.len() >= self.max_count || self.bytes + size > self.max_bytes {
            match self.order.front().copied() {
                Some(oldest) => {
                    self.remove(&oldest);
                }
                None => break,
            }
        }
        self.by_parent
            .entry(orphan.block().header.prev_hash)
            .or_default()
            .push(hash);
        self.bytes += size;
        self.order.push_back(hash);
        self.blocks.insert(hash, orphan);
    }

    fn remove(&mut self, hash: &Hash256) -> Option<CheckedBlock> {
        let orphan = self.blocks.remove(hash)?;
        self.bytes -= orphan.summary().size;
        self.order.retain(|h| h != hash);
        let parent = orphan.block().header.prev_hash;
        if let Some(siblings) = self.by_parent.get_mut(&parent) {
            siblings.retain(|h| h != hash);
            if siblings.is_empty() {
                self.by_parent.remove(&parent);
            }
        }
        Some(orphan)
    }

    /// Removes and returns the orphans whose parent is `parent`, oldest first.
    pub fn take_children(&mut self, parent: &Hash256) -> Vec<CheckedBlock> {
        let hashes = self.by_parent.remove(parent).unwrap_or_default();
        hashes.into_iter().filter_map(|h| self.remove(&h)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::testkit::TestChainBuilder;
    use crate::chain::validation::precheck;
    use crate::params::REGTEST;

    fn chain(n: usize) -> Vec<CheckedBlock> {
        let mut b = TestChainBuilder::new(&REGTEST);
        (0..n)
            .map(|_| b.build(crate::types::Address([1; 20]), vec![]))
            .map(|block| precheck(&REGTEST, block, None).unwrap())
            .collect()
    }

    #[test]
    fn children_come_back_by_parent() {
        let blocks = chain(3);
        let mut pool = OrphanPool::new(10, 1 << 20);
        pool.insert(blocks[2].clone());
        pool.insert(blocks[1].clone());
        assert_eq!(pool.len(), 2);
        let kids = pool.take_children(&blocks[0].hash());
        assert_eq!(kids.len(), 1);
        assert_eq!(kids[0].hash(), blocks[1].hash());
        assert!(pool.take_children(&blocks[0].hash()).is_empty());
        assert_eq!(pool.take_children(&blocks[1].hash()).len(), 1);
        assert!(pool.is_empty());
        assert_eq!(pool.bytes(), 0);
    }

    #[test]
    fn the_oldest_is_dropped_when_full_by_count_or_bytes() {
        let blocks = chain(6);
        let size = blocks[0].summary().size;
        let mut pool = OrphanPool::new(3, 100 * size);
        for b in &blocks[..4] {
            pool.insert(b.clone());
        }
        assert_eq!(pool.len(), 3);
        assert!(!pool.contains(&blocks[0].hash()));
        // By bytes: room for two blocks only.
        let mut pool = OrphanPool::new(10, 2 * size);
        for b in &blocks[..3] {
            pool.insert(b.clone());
        }
        assert_eq!(pool.len(), 2);
        assert!(!pool.contains(&blocks[0].hash()));
        assert!(pool.bytes() <= 2 * size);
        // Larger than the whole pool: refused.
        let mut tiny = OrphanPool::new(10, size - 1);
        tiny.insert(blocks[5].clone());
        assert!(tiny.is_empty());
    }
}
