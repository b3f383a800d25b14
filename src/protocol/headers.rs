//! The header tree: every header the core knows (the chain's block index at start, peers'
//! HEADERS, blocks the chain connected), each with its height, cumulative work and whether
//! the chain has its body; the best header chain (most work); the active chain (the chain's
//! tip); block locators, fork points, and headers after a locator.
//!
//! Owns these facts in memory and the header rules that decide whether a header joins
//! (the pure checks of `chain::validation`: proof of work against the target *required* at
//! its height, median-time-past, the future limit). Never reads a block body, the store or a
//! clock: bodies stay with the chain, the time is an argument.

use crate::chain::validation::{
    check_header_contextual, check_header_stateless, median_time, next_required_bits, HeaderContext,
};
use crate::chain::work::{block_work, ChainWork};
use crate::chain::BlockError;
use crate::params::{NetworkParams, MEDIAN_TIME_SPAN};
use crate::types::{Hash256, Header};
use std::collections::{HashMap, HashSet, VecDeque};

/// Headers without a body the tree holds at most: a peer cannot make it grow without bound
/// (about 200 bytes each: 40 MB), and an honest chain far longer than ours syncs in steps.
pub const MAX_HEADERS_WITHOUT_BODY: usize = 200_000;
/// Locator entries: ten one apart, then doubling steps, then genesis (enough for 2^64).
const LOCATOR_DENSE: usize = 10;

#[derive(Clone, Debug)]
struct Node {
    header: Header,
    height: u64,
    work: ChainWork,
    has_body: bool,
    invalid: bool,
}

/// Why a header was not taken.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HeaderError {
    #[error("header {0} does not connect to a known header")]
    Unconnected(Hash256),
    #[error("header {hash} breaks a rule: {reason}")]
    Invalid { hash: Hash256, reason: String },
    #[error("header {0} builds on a block known to be invalid")]
    InvalidAncestor(Hash256),
    #[error("too many headers without blocks are waiting")]
    Full,
}

/// What a batch of headers did to the tree.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Accepted {
    /// Headers new to the tree.
    pub new: usize,
    /// The last header of the batch (known or new): where the sender's chain reaches.
    pub last: Option<Hash256>,
    /// Whether the best header changed.
    pub best_changed: bool,
}

pub struct HeaderTree {
    params: &'static NetworkParams,
    nodes: HashMap<Hash256, Node>,
    /// The most-work header chain by height (ties: the first seen stays).
    best: Vec<Hash256>,
    /// The chain's active chain by height.
    active: Vec<Hash256>,
    without_body: usize,
    /// `MAX_HEADERS_WITHOUT_BODY`, lower in tests that fill the tree.
    max_without_body: usize,
}

impl std::fmt::Debug for HeaderTree {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeaderTree")
            .field("headers", &self.nodes.len())
            .field("best_height", &self.best_height())
            .field("active_height", &self.active_height())
            .finish()
    }
}

impl HeaderTree {
    /// A tree with only the genesis block (body and all).
    pub fn new(params: &'static NetworkParams) -> HeaderTree {
        let genesis = params.genesis_block();
        let hash = params.genesis_hash();
        let mut nodes = HashMap::new();
        nodes.insert(
            hash,
            Node {
                header: genesis.header,
                height: 0,
                work: block_work(genesis.header.bits).unwrap_or_default(),
                has_body: true,
                invalid: false,
            },
        );
        HeaderTree {
            params,
            nodes,
            best: vec![hash],
            active: vec![hash],
            without_body: 0,
            max_without_body: MAX_HEADERS_WITHOUT_BODY,
        }
    }

    /// A tree that holds at most `max` headers without a body, for tests of a full tree.
    #[cfg(test)]
    pub fn with_body_limit(params: &'static NetworkParams, max: usize) -> HeaderTree {
        HeaderTree {
            max_without_body: max,
            ..HeaderTree::new(params)
        }
    }

    /// The tree of a chain's stored blocks (each with its body), with `tip` active. Records
    /// whose parent is unknown are skipped; failed ones are kept as invalid.
    pub fn load(
        params: &'static NetworkParams,
        mut blocks: Vec<(Hash256, Header, u64, ChainWork, bool)>,
        tip: Hash256,
    ) -> HeaderTree {
        let mut tree = HeaderTree::new(params);
        blocks.sort_by_key(|b| b.2);
        for (hash, header, height, work, failed) in blocks {
            if height == 0 || !tree.nodes.contains_key(&header.prev_hash) {
                continue;
            }
            tree.nodes.insert(
                hash,
                Node {
                    header,
                    height,
                    work,
                    has_body: true,
                    invalid: failed,
                },
            );
            if !failed {
                tree.consider_best(hash);
            }
        }
        tree.set_active_tip(tip);
        tree
    }

    pub fn contains(&self, hash: &Hash256) -> bool {
        self.nodes.contains_key(hash)
    }

    pub fn has_body(&self, hash: &Hash256) -> bool {
        self.nodes.get(hash).is_some_and(|n| n.has_body)
    }

    pub fn is_invalid(&self, hash: &Hash256) -> bool {
        self.nodes.get(hash).is_some_and(|n| n.invalid)
    }

    pub fn height_of(&self, hash: &Hash256) -> Option<u64> {
        self.nodes.get(hash).map(|n| n.height)
    }

    pub fn header(&self, hash: &Hash256) -> Option<&Header> {
        self.nodes.get(hash).map(|n| &n.header)
    }

    pub fn work_of(&self, hash: &Hash256) -> Option<ChainWork> {
        self.nodes.get(hash).map(|n| n.work)
    }

    pub fn best_hash(&self) -> Hash256 {
        *self.best.last().expect("never empty")
    }

    pub fn best_height(&self) -> u64 {
        self.best.len() as u64 - 1
    }

    pub fn best_work(&self) -> ChainWork {
        self.nodes[&self.best_hash()].work
    }

    pub fn active_tip(&self) -> Hash256 {
        *self.active.last().expect("never empty")
    }

    pub fn active_height(&self) -> u64 {
        self.active.len() as u64 - 1
    }

    pub fn active_work(&self) -> ChainWork {
        self.nodes[&self.active_tip()].work
    }

    pub fn params(&self) -> &'static NetworkParams {
        self.params
    }

    /// The end of the chain at `hash` (a known header) in constant memory: what the checks of
    /// the next header need, for following a chain the tree does not store.
    pub fn tail(&self, hash: &Hash256) -> Option<ChainTail> {
        let node = self.nodes.get(hash)?;
        let mut times = VecDeque::with_capacity(MEDIAN_TIME_SPAN);
        let mut cursor = Some(*hash);
        while let Some(h) = cursor.filter(|_| times.len() < MEDIAN_TIME_SPAN) {
            let n = &self.nodes[&h];
            times.push_front(n.header.time);
            cursor = (n.height > 0).then_some(n.header.prev_hash);
        }
        let interval = self.params.retarget_interval.max(1);
        let window_start = self
            .ancestor(hash, node.height - node.height % interval)
            .map_or(0, |h| self.nodes[&h].header.time);
        Some(ChainTail {
            params: self.params,
            hash: *hash,
            header: node.header,
            height: node.height,
            work: node.work,
            times,
            window_start_time: window_start,
        })
    }

    /// The ends of branches whose last header has no block yet ("headers-only" in
    /// getchaintips): each leaf of the tree without a body, with its height and how many
    /// blocks separate it from the active chain. Most work first, at most `max`.
    pub fn header_only_tips(&self, max: usize) -> Vec<(Hash256, u64, u64)> {
        if self.without_body == 0 {
            return Vec::new();
        }
        let parents: std::collections::HashSet<&Hash256> =
            self.nodes.values().map(|n| &n.header.prev_hash).collect();
        let mut leaves: Vec<(&Hash256, &Node)> = self
            .nodes
            .iter()
            .filter(|(h, n)| !n.has_body && !n.invalid && !parents.contains(h))
            .collect();
        leaves.sort_by_key(|(h, n)| (std::cmp::Reverse(n.work), **h));
        leaves
            .into_iter()
            .take(max)
            .map(|(hash, node)| {
                let fork = self.last_common_active(hash).unwrap_or(0);
                (*hash, node.height, node.height - fork)
            })
            .collect()
    }

    pub fn headers_without_body(&self) -> usize {
        self.without_body
    }

    /// Whether the tree takes no more headers until blocks arrive for those it has.
    pub fn is_full(&self) -> bool {
        self.without_body >= self.max_without_body
    }

    /// Whether `hash` is on the active chain.
    pub fn is_active(&self, hash: &Hash256) -> bool {
        self.nodes
            .get(hash)
            .is_some_and(|n| self.active.get(n.height as usize) == Some(hash))
    }

    /// A block locator of the best header chain: the last ten, then doubling steps back, and
    /// genesis.
    pub fn locator(&self) -> Vec<Hash256> {
        locator_of(&self.best)
    }

    /// A locator starting at the best header's parent: a peer that has our best header
    /// answers with at least that one, which tells us it has it.
    pub fn locator_from_parent(&self) -> Vec<Hash256> {
        let end = self.best.len().saturating_sub(1).max(1);
        locator_of(&self.best[..end])
    }

    /// The hashes after the first locator entry on the active chain (genesis if none is),
    /// up to `max` or `stop`.
    pub fn active_after(&self, locator: &[Hash256], stop: &Hash256, max: usize) -> Vec<Hash256> {
        let start = locator
            .iter()
            .find(|h| self.is_active(h))
            .and_then(|h| self.height_of(h))
            .unwrap_or(0) as usize
            + 1;
        let mut found = Vec::new();
        for hash in self.active.iter().skip(start).take(max) {
            found.push(*hash);
            if hash == stop {
                break;
            }
        }
        found
    }

    /// The headers of `active_after`.
    pub fn headers_after(&self, locator: &[Hash256], stop: &Hash256, max: usize) -> Vec<Header> {
        self.active_after(locator, stop, max)
            .iter()
            .map(|h| self.nodes[h].header)
            .collect()
    }

    /// Blocks to download: the best header chain's blocks without a body after its fork
    /// from the active chain, in height order, at most `window` heights past the active tip.
    pub fn missing_blocks(&self, window: u64) -> Vec<Hash256> {
        if self.without_body == 0 {
            return Vec::new(); // the common case, asked after every input: no walk
        }
        let mut fork = self.best.len().min(self.active.len()) - 1;
        while self.best[fork] != self.active[fork] {
            fork -= 1;
        }
        let end = (self.active_height() + window).min(self.best_height()) as usize;
        ((fork + 1)..=end)
            .map(|h| self.best[h])
            .filter(|h| !self.nodes[h].has_body)
            .collect()
    }

    /// The active chain's block at `height`.
    pub fn active_at(&self, height: u64) -> Option<Hash256> {
        self.active.get(height as usize).copied()
    }

    /// The header chain's block at `height`, on the best chain.
    pub fn best_at(&self, height: u64) -> Option<Hash256> {
        self.best.get(height as usize).copied()
    }

    /// The checks a HEADERS message gets before anything else, none of them needing the tree:
    /// each header's proof of work meets the target it claims, and each after the first builds
    /// on the one before it. A message's work is counted from its claimed targets and as one
    /// chain's before any header is stored (the anti-DoS bar), so both must hold first:
    /// otherwise a last header claiming a high target, or a list of branches (a header on the
    /// tip, then siblings off genesis), would pass low-work headers for more work than they
    /// have. A list that is not one chain is `Unconnected` at its first header out of line.
    /// Returns the headers' hashes, for `accept_hashed`.
    pub fn check_message(&self, headers: &[Header]) -> Result<Vec<Hash256>, HeaderError> {
        let mut hashes = Vec::with_capacity(headers.len());
        let mut previous: Option<Hash256> = None;
        for header in headers {
            let hash = header.hash();
            if previous.is_some_and(|p| header.prev_hash != p) {
                return Err(HeaderError::Unconnected(hash));
            }
            check_header_stateless(self.params, header, &hash).map_err(|e| {
                HeaderError::Invalid {
                    hash,
                    reason: e.to_string(),
                }
            })?;
            previous = Some(hash);
            hashes.push(hash);
        }
        Ok(hashes)
    }

    /// Checks and adds a batch of headers, each building on the one before (the first on a
    /// known header; `check_message` has checked the rest). Stops at the first that fails; what
    /// came before it stays.
    pub fn accept(&mut self, headers: &[Header], now_secs: u64) -> (Accepted, Option<HeaderError>) {
        let hashes: Vec<Hash256> = headers.iter().map(Header::hash).collect();
        self.accept_hashed(headers, &hashes, now_secs)
    }

    /// `accept`, given the headers' hashes (`check_message` has taken them).
    pub fn accept_hashed(
        &mut self,
        headers: &[Header],
        hashes: &[Hash256],
        now_secs: u64,
    ) -> (Accepted, Option<HeaderError>) {
        debug_assert_eq!(headers.len(), hashes.len());
        let mut accepted = Accepted::default();
        for (header, &hash) in headers.iter().zip(hashes) {
            match self.accept_one(header, hash, now_secs) {
                Ok(new) => {
                    accepted.new += usize::from(new);
                    accepted.last = Some(hash);
                    if new && self.consider_best(hash) {
                        accepted.best_changed = true;
                    }
                }
                Err(e) => return (accepted, Some(e)),
            }
        }
        (accepted, None)
    }

    fn accept_one(
        &mut self,
        header: &Header,
        hash: Hash256,
        now_secs: u64,
    ) -> Result<bool, HeaderError> {
        if let Some(node) = self.nodes.get(&hash) {
            return if node.invalid {
                Err(HeaderError::InvalidAncestor(hash))
            } else {
                Ok(false)
            };
        }
        let parent = self
            .nodes
            .get(&header.prev_hash)
            .ok_or(HeaderError::Unconnected(hash))?;
        if parent.invalid {
            return Err(HeaderError::InvalidAncestor(hash));
        }
        if self.is_full() {
            return Err(HeaderError::Full);
        }
        let invalid = |e: BlockError| HeaderError::Invalid {
            hash,
            reason: e.to_string(),
        };
        check_header_stateless(self.params, header, &hash).map_err(invalid)?;
        let ctx = self.context(&header.prev_hash, now_secs);
        check_header_contextual(header, &ctx).map_err(invalid)?;
        let work = parent.work
            + block_work(header.bits).map_err(|e| HeaderError::Invalid {
                hash,
                reason: e.to_string(),
            })?;
        self.nodes.insert(
            hash,
            Node {
                header: *header,
                height: ctx.height,
                work,
                has_body: false,
                invalid: false,
            },
        );
        self.without_body += 1;
        Ok(true)
    }

    /// What a child of `parent` (known) is checked against.
    fn context(&self, parent: &Hash256, now_secs: u64) -> HeaderContext {
        let p = &self.nodes[parent];
        let required_bits =
            next_required_bits(self.params, p.height, p.header.bits, p.header.time, || {
                let first = (p.height + 1).saturating_sub(self.params.retarget_interval);
                self.ancestor(parent, first)
                    .map_or(0, |h| self.nodes[&h].header.time)
            });
        let mut times = Vec::with_capacity(MEDIAN_TIME_SPAN);
        let mut cursor = Some(*parent);
        while let Some(hash) = cursor.filter(|_| times.len() < MEDIAN_TIME_SPAN) {
            let node = &self.nodes[&hash];
            times.push(node.header.time);
            cursor = (node.height > 0).then_some(node.header.prev_hash);
        }
        HeaderContext {
            height: p.height + 1,
            required_bits,
            median_time_past: median_time(&times),
            now: now_secs,
        }
    }

    /// The height of the last block `hash`'s chain shares with the active chain.
    pub fn last_common_active(&self, hash: &Hash256) -> Option<u64> {
        let height = self.height_of(hash)?.min(self.active_height());
        let mut cursor = self.ancestor(hash, height)?;
        loop {
            if self.is_active(&cursor) {
                return self.height_of(&cursor);
            }
            cursor = self.nodes.get(&cursor)?.header.prev_hash;
        }
    }

    /// Whether `ancestor` is `hash` or one of its ancestors.
    pub fn is_ancestor(&self, ancestor: &Hash256, hash: &Hash256) -> bool {
        self.height_of(ancestor)
            .is_some_and(|h| self.ancestor(hash, h).as_ref() == Some(ancestor))
    }

    /// The ancestor of `hash` at `height`: a lookup on the best or active chain when `hash`
    /// is on it, a walk back otherwise.
    pub fn ancestor(&self, hash: &Hash256, height: u64) -> Option<Hash256> {
        let mut cursor = *hash;
        loop {
            let node = self.nodes.get(&cursor)?;
            if node.height == height {
                return Some(cursor);
            }
            if node.height < height {
                return None;
            }
            for chain in [&self.best, &self.active] {
                if chain.get(node.height as usize) == Some(&cursor) {
                    return chain.get(height as usize).copied();
                }
            }
            cursor = node.header.prev_hash;
        }
    }

    /// Makes `hash` the best header if it has more work than the best; true if it did.
    fn consider_best(&mut self, hash: Hash256) -> bool {
        let work = self.nodes[&hash].work;
        if work <= self.best_work() {
            return false;
        }
        rebuild_chain(&self.nodes, &mut self.best, hash);
        true
    }

    /// The chain reports a block stored (connected or on a side branch): its body is here.
    /// Adds the header if it was not known (a block mined or submitted locally).
    pub fn block_stored(&mut self, header: &Header, height: u64) {
        let hash = header.hash();
        match self.nodes.get_mut(&hash) {
            Some(node) => {
                if !node.has_body {
                    node.has_body = true;
                    self.without_body -= 1;
                }
            }
            None => {
                let Some(parent) = self.nodes.get(&header.prev_hash) else {
                    return;
                };
                let work = parent.work + block_work(header.bits).unwrap_or_default();
                self.nodes.insert(
                    hash,
                    Node {
                        header: *header,
                        height,
                        work,
                        has_body: true,
                        invalid: false,
                    },
                );
                self.consider_best(hash);
            }
        }
    }

    /// The chain's tip is now `hash` (a header the tree knows).
    pub fn set_active_tip(&mut self, hash: Hash256) {
        if self.nodes.contains_key(&hash) {
            rebuild_chain(&self.nodes, &mut self.active, hash);
            // The active chain has at least the best header's work.
            if self.nodes[&hash].work > self.best_work() {
                rebuild_chain(&self.nodes, &mut self.best, hash);
            }
        }
    }

    /// The chain found `hash` invalid: it and its descendants are never fetched or
    /// followed again, and the best header falls back to the most-work valid one.
    pub fn mark_invalid(&mut self, hash: &Hash256) {
        let Some(node) = self.nodes.get_mut(hash) else {
            return;
        };
        node.invalid = true;
        // Descendants, in height order so each parent is settled before its children (a
        // rare event: a full pass is fine).
        let mut by_height: Vec<(u64, Hash256)> = self
            .nodes
            .iter()
            .filter(|(_, n)| !n.invalid)
            .map(|(h, n)| (n.height, *h))
            .collect();
        by_height.sort_unstable();
        for (_, h) in by_height {
            let prev = self.nodes[&h].header.prev_hash;
            if self.nodes.get(&prev).is_some_and(|p| p.invalid) {
                self.nodes.get_mut(&h).expect("listed").invalid = true;
            }
        }
        if self.best.iter().any(|h| self.nodes[h].invalid) {
            self.fall_back_best();
        }
    }

    /// The best header chain rebuilt on the most-work valid header (between equals the
    /// smallest hash, so the choice does not depend on the map's order), after headers on it
    /// were found invalid or forgotten.
    fn fall_back_best(&mut self) {
        let active = self.active_tip();
        let candidate = self
            .nodes
            .iter()
            .filter(|(_, n)| !n.invalid)
            .max_by_key(|(h, n)| (n.work, std::cmp::Reverse(**h)))
            .map_or(active, |(h, _)| *h);
        rebuild_chain(&self.nodes, &mut self.best, candidate);
    }

    /// Forgets the headers without a body that lead to none of `claimed` (the best headers
    /// of the peers connected now): branches only a departed peer offered, whose blocks
    /// nobody can be asked for. Called when the tree is full, so that headers a stranger
    /// sent and never backed with blocks cannot keep out every later header (the node's
    /// peers' new blocks included) for as long as it runs. The best header falls back to
    /// the most-work one left. Returns how many were forgotten.
    pub fn forget_unclaimed(&mut self, claimed: &[Hash256]) -> usize {
        let mut kept: HashSet<Hash256> = HashSet::new();
        for tip in claimed {
            let mut cursor = *tip;
            while let Some(node) = self.nodes.get(&cursor) {
                if node.has_body || !kept.insert(cursor) {
                    break;
                }
                cursor = node.header.prev_hash;
            }
        }
        let before = self.nodes.len();
        self.nodes.retain(|h, n| n.has_body || kept.contains(h));
        let forgotten = before - self.nodes.len();
        self.without_body -= forgotten;
        if forgotten > 0 && self.best.iter().any(|h| !self.nodes.contains_key(h)) {
            self.fall_back_best();
        }
        forgotten
    }
}

/// The last header of a chain and what checking its successor needs (the last 11 times, the
/// time of the block that opened the retarget window): the tree's header rules applied to a
/// chain followed header by header without storing it.
#[derive(Clone, Debug)]
pub struct ChainTail {
    params: &'static NetworkParams,
    pub hash: Hash256,
    pub header: Header,
    pub height: u64,
    pub work: ChainWork,
    /// Up to `MEDIAN_TIME_SPAN` times, oldest first, ending with `header`'s.
    times: VecDeque<u64>,
    /// The time of the last block at a height that is a multiple of the retarget interval.
    window_start_time: u64,
}

impl ChainTail {
    /// Checks `header` as the tree would (continuity, proof of work against the required
    /// target, median-time-past, the future limit) and makes it the new end.
    pub fn extend(&mut self, header: &Header, now_secs: u64) -> Result<(), HeaderError> {
        let hash = header.hash();
        if header.prev_hash != self.hash {
            return Err(HeaderError::Unconnected(hash));
        }
        let invalid = |e: BlockError| HeaderError::Invalid {
            hash,
            reason: e.to_string(),
        };
        check_header_stateless(self.params, header, &hash).map_err(invalid)?;
        let window_start = self.window_start_time;
        let required_bits = next_required_bits(
            self.params,
            self.height,
            self.header.bits,
            self.header.time,
            || window_start,
        );
        let times: Vec<u64> = self.times.iter().copied().collect();
        let ctx = HeaderContext {
            height: self.height + 1,
            required_bits,
            median_time_past: median_time(&times),
            now: now_secs,
        };
        check_header_contextual(header, &ctx).map_err(invalid)?;
        self.work +=
            block_work(header.bits).map_err(|e| invalid(BlockError::BadCompactTarget(e)))?;
        self.hash = hash;
        self.header = *header;
        self.height += 1;
        if self.times.len() == MEDIAN_TIME_SPAN {
            self.times.pop_front();
        }
        self.times.push_back(header.time);
        if self
            .height
            .is_multiple_of(self.params.retarget_interval.max(1))
        {
            self.window_start_time = header.time;
        }
        Ok(())
    }
}

/// Rewrites `chain` (hashes by height) to end at `tip`, walking back only to the fork.
fn rebuild_chain(nodes: &HashMap<Hash256, Node>, chain: &mut Vec<Hash256>, tip: Hash256) {
    let tip_height = nodes[&tip].height as usize;
    chain.truncate(tip_height + 1);
    chain.resize(tip_height + 1, Hash256::ZERO);
    let mut cursor = tip;
    let mut height = tip_height;
    while chain[height] != cursor {
        chain[height] = cursor;
        if height == 0 {
            break;
        }
        cursor = nodes[&cursor].header.prev_hash;
        height -= 1;
    }
}

fn locator_of(chain: &[Hash256]) -> Vec<Hash256> {
    let mut locator = Vec::new();
    let mut height = chain.len() as i64 - 1;
    let mut step = 1;
    while height > 0 {
        locator.push(chain[height as usize]);
        if locator.len() >= LOCATOR_DENSE {
            step *= 2;
        }
        height -= step;
    }
    locator.push(chain[0]);
    locator
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::Network;
    use crate::types::pow::hash_meets_target;

    fn params() -> &'static NetworkParams {
        Network::Regtest.params()
    }

    /// A valid regtest header on `prev` (nonce searched), `n` distinguishing siblings.
    fn child(prev: &Header, n: u32) -> Header {
        let mut h = Header {
            version: crate::params::BLOCK_VERSION,
            prev_hash: prev.hash(),
            merkle_root: Hash256([n as u8; 32]),
            time: prev.time + 1,
            bits: params().pow_limit_bits,
            nonce: 0,
        };
        let target = params().pow_limit();
        while !hash_meets_target(&h.hash(), &target) {
            h.nonce += 1;
        }
        h
    }

    fn chain_on(start: &Header, len: usize, n: u32) -> Vec<Header> {
        let mut out: Vec<Header> = Vec::new();
        for _ in 0..len {
            let prev = out.last().copied().unwrap_or(*start);
            out.push(child(&prev, n));
        }
        out
    }

    const NOW: u64 = 4_000_000_000;

    #[test]
    fn headers_join_and_the_most_work_chain_is_best() {
        let mut tree = HeaderTree::new(params());
        let genesis = params().genesis_block().header;
        let a = chain_on(&genesis, 5, 1);
        let (acc, err) = tree.accept(&a, NOW);
        assert!(err.is_none());
        assert_eq!(acc.new, 5);
        assert!(acc.best_changed);
        assert_eq!(tree.best_height(), 5);
        assert_eq!(tree.missing_blocks(1024).len(), 5);
        // A longer branch from height 2 takes over.
        let b = chain_on(&a[1], 6, 2);
        let (acc, _) = tree.accept(&b, NOW);
        assert!(acc.best_changed);
        assert_eq!(tree.best_height(), 8);
        assert_eq!(tree.best_hash(), b[5].hash());
        // Re-sending known headers changes nothing.
        let (acc, err) = tree.accept(&a, NOW);
        assert_eq!((acc.new, acc.best_changed, err), (0, false, None));
    }

    #[test]
    fn a_full_tree_forgets_the_branches_no_connected_peer_offers() {
        let mut tree = HeaderTree::with_body_limit(params(), 10);
        let genesis = params().genesis_block().header;
        // The active chain: 3 blocks.
        let ours = chain_on(&genesis, 3, 1);
        for (i, h) in ours.iter().enumerate() {
            tree.block_stored(h, i as u64 + 1);
        }
        tree.set_active_tip(ours[2].hash());
        // A departed stranger's heavier branch fills the tree; a connected peer's short one
        // (one header on our tip) is kept.
        let (_, err) = tree.accept(&chain_on(&genesis, 9, 2), NOW);
        assert!(err.is_none());
        let theirs = chain_on(&ours[2], 1, 3);
        let (_, err) = tree.accept(&theirs, NOW);
        assert!(err.is_none());
        assert!(tree.is_full());
        assert_eq!(tree.best_height(), 9);
        let next = chain_on(&theirs[0], 1, 3);
        assert_eq!(tree.accept(&next, NOW).1, Some(HeaderError::Full));

        assert_eq!(tree.forget_unclaimed(&[theirs[0].hash()]), 9);
        assert_eq!(tree.headers_without_body(), 1);
        assert_eq!(tree.best_hash(), theirs[0].hash(), "the most work left");
        assert_eq!(tree.best_height(), 4);
        // Room again: the connected peer's next header is taken.
        let (acc, err) = tree.accept(&next, NOW);
        assert_eq!((acc.new, err), (1, None));
        // Nothing to forget when every branch is claimed.
        assert_eq!(tree.forget_unclaimed(&[next[0].hash()]), 0);
    }

    #[test]
    fn unconnected_and_invalid_headers_are_refused() {
        let mut tree = HeaderTree::new(params());
        let genesis = params().genesis_block().header;
        let a = chain_on(&genesis, 3, 1);
        let (_, err) = tree.accept(&a[1..], NOW);
        assert_eq!(err, Some(HeaderError::Unconnected(a[1].hash())));
        let mut bad = a[0];
        bad.bits = 0x1d00ffff; // not the target required at this height
        let (_, err) = tree.accept(&[bad], NOW);
        assert!(matches!(err, Some(HeaderError::Invalid { .. })), "{err:?}");
        let mut future = child(&genesis, 9);
        future.time = NOW + 3 * 3600;
        let (_, err) = tree.accept(&[future], NOW);
        assert!(matches!(err, Some(HeaderError::Invalid { .. })), "{err:?}");
        assert_eq!(tree.best_height(), 0);
    }

    #[test]
    fn locators_and_headers_after_them_follow_the_active_chain() {
        let mut tree = HeaderTree::new(params());
        let genesis = params().genesis_block().header;
        let a = chain_on(&genesis, 40, 1);
        tree.accept(&a, NOW);
        for (i, h) in a.iter().enumerate() {
            tree.block_stored(h, i as u64 + 1);
        }
        tree.set_active_tip(a[39].hash());
        let locator = tree.locator();
        assert_eq!(locator[0], a[39].hash());
        assert_eq!(locator[9], a[30].hash());
        assert_eq!(*locator.last().unwrap(), params().genesis_hash());
        assert!(locator.len() < 20);
        // A peer at height 10 asks: it gets 11.. onwards, bounded by max and stop.
        let theirs = vec![a[9].hash(), params().genesis_hash()];
        let after = tree.headers_after(&theirs, &Hash256::ZERO, 2000);
        assert_eq!(after.len(), 30);
        assert_eq!(after[0], a[10]);
        let after = tree.headers_after(&theirs, &a[14].hash(), 2000);
        assert_eq!(after.len(), 5);
        assert_eq!(tree.headers_after(&theirs, &Hash256::ZERO, 3).len(), 3);
        assert!(tree.missing_blocks(1024).is_empty());
    }

    #[test]
    fn an_invalid_block_takes_its_branch_out_of_the_best_chain() {
        let mut tree = HeaderTree::new(params());
        let genesis = params().genesis_block().header;
        let a = chain_on(&genesis, 3, 1);
        let b = chain_on(&genesis, 5, 2);
        tree.accept(&a, NOW);
        tree.accept(&b, NOW);
        assert_eq!(tree.best_hash(), b[4].hash());
        tree.mark_invalid(&b[1].hash());
        assert_eq!(tree.best_hash(), a[2].hash());
        let (_, err) = tree.accept(&chain_on(&b[4], 1, 3), NOW);
        assert!(
            matches!(err, Some(HeaderError::InvalidAncestor(_))),
            "{err:?}"
        );
        assert_eq!(tree.missing_blocks(1024).len(), 3);
    }
}
