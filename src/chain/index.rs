//! The in-memory block index: every stored block's header, height, cumulative work and
//! status (parent links only); the active chain by height; and the fork-choice
//! candidates ordered by (most work, earliest first seen).
//!
//! Owns fork choice. Loaded from the store at start; changed only by the chain writer, which
//! persists every status change in the store. Does no I/O itself.

use super::error::ChainError;
use super::store::{BlockStatus, IndexRecord};
use super::validation::{median_time, next_required_bits, HeaderContext};
use super::work::{work_from_bytes, work_to_bytes, ChainWork};
use crate::params::{NetworkParams, MEDIAN_TIME_SPAN};
use crate::types::{Hash256, Header};
use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap};

/// One block in the index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub header: Header,
    pub height: u64,
    pub chainwork: ChainWork,
    pub status: BlockStatus,
    pub seq: u64,
}

impl Entry {
    pub fn from_record(record: &IndexRecord) -> Entry {
        Entry {
            header: record.header,
            height: record.height,
            chainwork: work_from_bytes(&record.chainwork),
            status: record.status,
            seq: record.seq,
        }
    }

    pub fn record(&self) -> IndexRecord {
        IndexRecord {
            header: self.header,
            height: self.height,
            chainwork: work_to_bytes(self.chainwork),
            status: self.status,
            seq: self.seq,
        }
    }
}

/// Fork-choice order: more work first, then earlier first-seen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Candidate {
    work: Reverse<ChainWork>,
    seq: u64,
    hash: Hash256,
}

#[derive(Default)]
pub struct BlockIndex {
    entries: HashMap<Hash256, Entry>,
    candidates: BTreeSet<Candidate>,
    /// `active[h]` is the active chain's block at height h; never empty once loaded.
    active: Vec<Hash256>,
    next_seq: u64,
}

impl BlockIndex {
    /// Builds the index from stored records and the stored tip; the active chain is the
    /// tip's ancestry.
    pub fn load(
        records: impl IntoIterator<Item = Result<(Hash256, IndexRecord), ChainError>>,
        tip: Hash256,
    ) -> Result<BlockIndex, ChainError> {
        let mut index = BlockIndex::default();
        for item in records {
            let (hash, record) = item?;
            index.insert(hash, Entry::from_record(&record));
        }
        let tip_entry = index
            .entries
            .get(&tip)
            .ok_or_else(|| ChainError::corrupt(format!("the tip {tip} has no index record")))?;
        let mut active = vec![Hash256::ZERO; tip_entry.height as usize + 1];
        let mut cursor = tip;
        loop {
            let entry = index.entries.get(&cursor).ok_or_else(|| {
                ChainError::corrupt(format!("main-chain block {cursor} has no index record"))
            })?;
            active[entry.height as usize] = cursor;
            if entry.height == 0 {
                break;
            }
            cursor = entry.header.prev_hash;
        }
        index.active = active;
        Ok(index)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn get(&self, hash: &Hash256) -> Option<&Entry> {
        self.entries.get(hash)
    }

    pub fn contains(&self, hash: &Hash256) -> bool {
        self.entries.contains_key(hash)
    }

    /// The sequence number the next accepted block gets.
    pub fn take_seq(&mut self) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        seq
    }

    pub fn insert(&mut self, hash: Hash256, entry: Entry) {
        self.next_seq = self.next_seq.max(entry.seq + 1);
        if !entry.status.is_failed() {
            self.candidates.insert(Candidate {
                work: Reverse(entry.chainwork),
                seq: entry.seq,
                hash,
            });
        }
        self.entries.insert(hash, entry);
    }

    /// Changes a block's status, keeping the candidate set in step. Returns the new record.
    pub fn set_status(&mut self, hash: &Hash256, status: BlockStatus) -> Option<IndexRecord> {
        let entry = self.entries.get_mut(hash)?;
        let key = Candidate {
            work: Reverse(entry.chainwork),
            seq: entry.seq,
            hash: *hash,
        };
        entry.status = status;
        if status.is_failed() {
            self.candidates.remove(&key);
        } else {
            self.candidates.insert(key);
        }
        Some(entry.record())
    }

    /// The most-work block not known to be invalid (earliest first seen among equals).
    pub fn best_candidate(&self) -> Hash256 {
        self.candidates
            .first()
            .map(|c| c.hash)
            .unwrap_or_else(|| self.tip())
    }

    pub fn tip(&self) -> Hash256 {
        *self.active.last().expect("the active chain holds genesis")
    }

    pub fn tip_height(&self) -> u64 {
        self.active.len() as u64 - 1
    }

    pub fn active_hash(&self, height: u64) -> Option<Hash256> {
        self.active.get(height as usize).copied()
    }

    pub fn is_active(&self, hash: &Hash256) -> bool {
        self.entries
            .get(hash)
            .is_some_and(|e| self.active.get(e.height as usize) == Some(hash))
    }

    /// Extends the active chain by `hash`, a child of the tip.
    pub fn push_active(&mut self, hash: Hash256) {
        debug_assert_eq!(
            self.entries.get(&hash).map(|e| e.header.prev_hash),
            Some(self.tip())
        );
        self.active.push(hash);
    }

    /// Removes the tip from the active chain (never genesis).
    pub fn pop_active(&mut self) {
        if self.active.len() > 1 {
            self.active.pop();
        }
    }

    /// The ancestor of `hash` at `height` (or `hash` itself).
    pub fn ancestor(&self, hash: &Hash256, height: u64) -> Option<Hash256> {
        let mut cursor = *hash;
        loop {
            let entry = self.entries.get(&cursor)?;
            if entry.height < height {
                return None;
            }
            if entry.height == height {
                return Some(cursor);
            }
            if self.is_active(&cursor) {
                return self.active_hash(height);
            }
            cursor = entry.header.prev_hash;
        }
    }

    /// The last block that `hash`'s chain shares with the active chain.
    pub fn fork_point(&self, hash: &Hash256) -> Hash256 {
        let mut cursor = *hash;
        while !self.is_active(&cursor) {
            match self.entries.get(&cursor) {
                Some(e) if e.height > 0 => cursor = e.header.prev_hash,
                _ => return self.active[0],
            }
        }
        cursor
    }

    /// The blocks after `fork` up to and including `target`, in ascending height.
    pub fn path_from(&self, fork: &Hash256, target: &Hash256) -> Vec<Hash256> {
        let mut path = vec![];
        let mut cursor = *target;
        while cursor != *fork {
            path.push(cursor);
            match self.entries.get(&cursor) {
                Some(e) if e.height > 0 => cursor = e.header.prev_hash,
                _ => break,
            }
        }
        path.reverse();
        path
    }

    /// All blocks descending from `hash` (not including it).
    ///
    /// The index keeps no child links (they would cost about a fifth of every entry for what
    /// only invalidation and reconsideration need), so this walks every entry once: O(n).
    pub fn descendants(&self, hash: &Hash256) -> Vec<Hash256> {
        let mut children: HashMap<Hash256, Vec<Hash256>> = HashMap::new();
        for (h, e) in &self.entries {
            if e.height > 0 {
                children.entry(e.header.prev_hash).or_default().push(*h);
            }
        }
        let mut out = vec![];
        let mut stack: Vec<Hash256> = children.get(hash).cloned().unwrap_or_default();
        while let Some(h) = stack.pop() {
            if let Some(c) = children.get(&h) {
                stack.extend_from_slice(c);
            }
            out.push(h);
        }
        out
    }

    /// Blocks with no children: the tips of every branch.
    pub fn leaves(&self) -> Vec<Hash256> {
        let parents: std::collections::HashSet<Hash256> = self
            .entries
            .values()
            .filter(|e| e.height > 0)
            .map(|e| e.header.prev_hash)
            .collect();
        self.entries
            .keys()
            .filter(|h| !parents.contains(*h))
            .copied()
            .collect()
    }

    /// Median time of the up to 11 blocks ending at `hash`.
    pub fn median_time_past(&self, hash: &Hash256) -> u64 {
        let mut times = Vec::with_capacity(MEDIAN_TIME_SPAN);
        let mut cursor = *hash;
        while times.len() < MEDIAN_TIME_SPAN {
            let Some(entry) = self.entries.get(&cursor) else {
                break;
            };
            times.push(entry.header.time);
            if entry.height == 0 {
                break;
            }
            cursor = entry.header.prev_hash;
        }
        median_time(&times)
    }

    /// The target a child of `parent` must carry.
    pub fn next_bits(&self, params: &NetworkParams, parent: &Hash256) -> Option<u32> {
        let entry = self.entries.get(parent)?;
        Some(next_required_bits(
            params,
            entry.height,
            entry.header.bits,
            entry.header.time,
            || {
                let first = (entry.height + 1).saturating_sub(params.retarget_interval);
                self.ancestor(parent, first)
                    .and_then(|h| self.entries.get(&h))
                    .map_or(0, |e| e.header.time)
            },
        ))
    }

    /// What a child of `parent` is checked against.
    pub fn header_context(
        &self,
        params: &NetworkParams,
        parent: &Hash256,
        now: u64,
    ) -> Option<HeaderContext> {
        let entry = self.entries.get(parent)?;
        Some(HeaderContext {
            height: entry.height + 1,
            required_bits: self.next_bits(params, parent)?,
            median_time_past: self.median_time_past(parent),
            now,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use primitive_types::U256;

    fn h(n: u8) -> Hash256 {
        Hash256([n; 32])
    }

    fn entry(prev: Hash256, height: u64, work: u64, seq: u64, time: u64) -> Entry {
        Entry {
            header: Header {
                version: 1,
                prev_hash: prev,
                merkle_root: Hash256::ZERO,
                time,
                bits: 0x207fffff,
                nonce: 0,
            },
            height,
            chainwork: U256::from(work),
            status: BlockStatus::Valid,
            seq,
        }
    }

    /// genesis(1) ← a(2) ← b(3) (active);  a ← c(4) ← d(5)
    fn sample() -> BlockIndex {
        let records = vec![
            (h(1), entry(Hash256::ZERO, 0, 1, 0, 100)),
            (h(2), entry(h(1), 1, 2, 1, 101)),
            (h(3), entry(h(2), 2, 3, 2, 102)),
            (h(4), entry(h(2), 2, 3, 3, 103)),
            (h(5), entry(h(4), 3, 4, 4, 104)),
        ];
        BlockIndex::load(records.into_iter().map(|(k, e)| Ok((k, e.record()))), h(3)).unwrap()
    }

    #[test]
    fn load_rebuilds_the_active_chain_from_the_tip() {
        let index = sample();
        assert_eq!(index.tip(), h(3));
        assert_eq!(index.tip_height(), 2);
        assert!(index.is_active(&h(2)) && !index.is_active(&h(4)));
        assert_eq!(index.len(), 5);
    }

    #[test]
    fn best_candidate_is_most_work_then_first_seen() {
        let mut index = sample();
        assert_eq!(index.best_candidate(), h(5));
        // An equal-work block seen later does not win; one seen earlier does.
        index.insert(h(6), entry(h(3), 3, 4, 9, 105));
        assert_eq!(index.best_candidate(), h(5));
        index.set_status(&h(5), BlockStatus::Invalid);
        assert_eq!(index.best_candidate(), h(6));
        index.set_status(&h(5), BlockStatus::Stored);
        assert_eq!(index.best_candidate(), h(5));
    }

    #[test]
    fn fork_point_path_ancestors_and_descendants() {
        let index = sample();
        assert_eq!(index.fork_point(&h(5)), h(2));
        assert_eq!(index.path_from(&h(2), &h(5)), vec![h(4), h(5)]);
        assert_eq!(index.ancestor(&h(5), 1), Some(h(2)));
        assert_eq!(index.ancestor(&h(5), 0), Some(h(1)));
        assert_eq!(index.ancestor(&h(5), 4), None);
        let mut d = index.descendants(&h(2));
        d.sort();
        assert_eq!(d, vec![h(3), h(4), h(5)]);
        let mut leaves = index.leaves();
        leaves.sort();
        assert_eq!(leaves, vec![h(3), h(5)]);
    }

    #[test]
    fn median_time_past_uses_up_to_eleven_ancestors() {
        let index = sample();
        assert_eq!(index.median_time_past(&h(5)), 103);
        assert_eq!(index.median_time_past(&h(1)), 100);
        let mut long = BlockIndex::default();
        let mut prev = Hash256::ZERO;
        for i in 0..20u8 {
            // Times 1000, 990, 1020, 1010 ... shuffled a little.
            let t = 1000 + (i as u64) * 10 - if i % 2 == 1 { 15 } else { 0 };
            long.insert(h(i + 10), entry(prev, i as u64, 1, i as u64, t));
            prev = h(i + 10);
        }
        // Last 11 blocks are heights 9..=19; the median of their times.
        let mut times: Vec<u64> = (9..20u64)
            .map(|i| 1000 + i * 10 - if i % 2 == 1 { 15 } else { 0 })
            .collect();
        times.sort();
        assert_eq!(long.median_time_past(&prev), times[5]);
    }

    #[test]
    fn a_tip_without_a_record_is_corruption() {
        let records = vec![(h(1), entry(Hash256::ZERO, 0, 1, 0, 100))];
        let r = BlockIndex::load(records.into_iter().map(|(k, e)| Ok((k, e.record()))), h(9));
        assert!(matches!(r, Err(ChainError::Corrupt { .. })));
    }
}
