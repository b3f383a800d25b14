//! The block-download manager: fetches the bodies of the best header chain from several
//! peers in a moving window ahead of the active tip, detects peers that stall it (a timeout
//! that follows observed delivery times) and moves their requests elsewhere, takes NOTFOUND,
//! and hands every body whose header passed the core's checks to the chain exactly once.
//!
//! Owns the requests in flight, the blocks handed to the chain and not yet stored, and what
//! each peer is known to have. Never validates a body (the chain does) and never hands over
//! a block whose header is not in the header tree with more work than the active chain or
//! requested by us: cheap checks before any signature is verified.

use super::bans::Misbehaviour;
use super::headers::HeaderTree;
use super::io::{BlockResult, DisconnectReason, Internal, Outbox, PeerId, Wake};
use super::peermap::PeerMap;
use crate::time::{LocalDuration, LocalTime, Now};
use crate::types::{Block, Hash256, Header};
use crate::wire::message::{InvKind, InvList};
use std::collections::BTreeMap;

/// How far past the active tip blocks are fetched.
pub const DOWNLOAD_WINDOW: u64 = 1_024;
/// Blocks requested from one peer at a time.
pub const MAX_IN_FLIGHT_PER_PEER: usize = 16;
/// Blocks requested or handed to the chain and not yet stored, in all: kept below the chain's
/// orphan pool (100 blocks) so that bodies arriving out of order wait there instead of being
/// dropped (and fetched again only after `ORPHAN_WAIT`).
pub const MAX_IN_FLIGHT: usize = 64;
/// The stall timeout is this many times the average delivery time, within the bounds below.
const STALL_FACTOR: u64 = 8;
const STALL_TIMEOUT_MIN: LocalDuration = LocalDuration::from_secs(10);
const STALL_TIMEOUT_MAX: LocalDuration = LocalDuration::from_mins(2);
/// How long a block the chain holds as an orphan (or already had) may wait for its parent
/// before it is fetched again.
const ORPHAN_WAIT: LocalDuration = LocalDuration::from_secs(60);

#[derive(Debug)]
struct Request {
    peer: PeerId,
    sent: LocalTime,
}

#[derive(Debug, Default)]
struct DlPeer {
    negotiated: bool,
    disconnecting: bool,
    best: Option<Hash256>,
    in_flight: usize,
}

#[derive(Debug)]
pub struct BlockDl {
    peers: PeerMap<DlPeer>,
    in_flight: BTreeMap<Hash256, Request>,
    /// Handed to the chain, not yet reported stored: never handed over twice.
    submitted: BTreeMap<Hash256, (LocalTime, Header)>,
    /// Exponential average of request-to-arrival times.
    avg_delivery: LocalDuration,
}

impl Default for BlockDl {
    fn default() -> Self {
        BlockDl {
            peers: PeerMap::new(),
            in_flight: BTreeMap::new(),
            submitted: BTreeMap::new(),
            avg_delivery: LocalDuration::from_secs(1),
        }
    }
}

impl BlockDl {
    pub fn on_internal(&mut self, event: &Internal, tree: &HeaderTree, now: LocalTime) {
        match *event {
            Internal::BlockRequested { peer, hash } => {
                if let Some(old) = self.in_flight.insert(hash, Request { peer, sent: now }) {
                    self.dec(old.peer);
                }
                if let Some(p) = self.peers.get_mut(&peer) {
                    p.in_flight += 1;
                }
            }
            Internal::PeerConnected { peer, .. } => {
                self.peers.insert(peer, DlPeer::default());
            }
            Internal::PeerNegotiated {
                peer, conn_type, ..
            } => {
                if let Some(p) = self.peers.get_mut(&peer) {
                    p.negotiated = !conn_type.is_short_lived();
                }
            }
            Internal::PeerDisconnecting { peer } => {
                if let Some(p) = self.peers.get_mut(&peer) {
                    p.disconnecting = true;
                }
                self.release(peer);
            }
            Internal::PeerGone { peer, .. } => {
                self.release(peer);
                self.peers.remove(&peer);
            }
            Internal::PeerHas { peer, hash } => {
                if let Some(p) = self.peers.get_mut(&peer) {
                    if p.best
                        .is_none_or(|b| tree.work_of(&hash) > tree.work_of(&b))
                    {
                        p.best = Some(hash);
                    }
                }
            }
            Internal::BlockStored { hash } | Internal::BlockInvalid { hash } => {
                self.submitted.remove(&hash);
                if let Some(r) = self.in_flight.remove(&hash) {
                    self.dec(r.peer);
                }
            }
            _ => {}
        }
    }

    /// Blocks in flight from `peer`, for getpeerinfo.
    /// Every block asked for and not yet received.
    pub fn requested(&self) -> impl Iterator<Item = Hash256> + '_ {
        self.in_flight.keys().copied()
    }

    pub fn in_flight_of(&self, peer: PeerId) -> Vec<Hash256> {
        self.in_flight
            .iter()
            .filter(|(_, r)| r.peer == peer)
            .map(|(h, _)| *h)
            .collect()
    }

    /// Blocks on their way: requested, or with the chain and not yet stored.
    fn outstanding(&self) -> usize {
        self.in_flight.len() + self.submitted.len()
    }

    fn dec(&mut self, peer: PeerId) {
        if let Some(p) = self.peers.get_mut(&peer) {
            p.in_flight = p.in_flight.saturating_sub(1);
        }
    }

    /// Frees every request of `peer`, so others can take them.
    fn release(&mut self, peer: PeerId) {
        self.in_flight.retain(|_, r| r.peer != peer);
        if let Some(p) = self.peers.get_mut(&peer) {
            p.in_flight = 0;
        }
    }

    /// Tops up the requests: the window's missing blocks, each from a peer that has it,
    /// the least busy first. A new best block right after our tip is asked of a peer that
    /// takes compact blocks (`compact`) as a compact block: its transactions are likely in
    /// our mempool already.
    pub fn request(
        &mut self,
        tree: &HeaderTree,
        compact: &dyn Fn(PeerId) -> bool,
        now: Now,
        out: &mut Outbox,
    ) {
        if self.outstanding() >= MAX_IN_FLIGHT {
            return;
        }
        let missing = tree.missing_blocks(DOWNLOAD_WINDOW);
        if missing.is_empty() {
            return;
        }
        let mut batches: BTreeMap<PeerId, Vec<Hash256>> = BTreeMap::new();
        for hash in missing {
            if self.outstanding() >= MAX_IN_FLIGHT {
                break;
            }
            if self.in_flight.contains_key(&hash) || self.submitted.contains_key(&hash) {
                continue;
            }
            let chosen = self
                .peers
                .iter()
                .filter(|(_, p)| {
                    p.negotiated
                        && !p.disconnecting
                        && p.in_flight < MAX_IN_FLIGHT_PER_PEER
                        && p.best.is_some_and(|b| tree.is_ancestor(&hash, &b))
                })
                .min_by_key(|(id, p)| (p.in_flight, **id))
                .map(|(id, _)| *id);
            let Some(peer) = chosen else {
                continue;
            };
            self.peers.get_mut(&peer).expect("chosen").in_flight += 1;
            self.in_flight.insert(
                hash,
                Request {
                    peer,
                    sent: now.local,
                },
            );
            batches.entry(peer).or_default().push(hash);
        }
        let next_tip = |hash: &Hash256| {
            *hash == tree.best_hash() && tree.height_of(hash) == Some(tree.active_height() + 1)
        };
        for (peer, hashes) in batches {
            let (as_compact, whole): (Vec<Hash256>, Vec<Hash256>) = hashes
                .into_iter()
                .partition(|h| next_tip(h) && compact(peer));
            out.get_data(peer, InvKind::CompactBlock, &as_compact);
            out.get_data(peer, InvKind::Block, &whole);
        }
    }

    /// The peer a block is requested from, if it is.
    pub fn requested_from(&self, hash: &Hash256) -> Option<PeerId> {
        self.in_flight.get(hash).map(|r| r.peer)
    }

    /// Whether the block is requested or with the chain: nobody else need fetch it.
    pub fn is_busy(&self, hash: &Hash256) -> bool {
        self.in_flight.contains_key(hash) || self.submitted.contains_key(hash)
    }

    /// A block's body did not match its header and will be fetched again: it may be
    /// handed to the chain once more.
    pub fn retry(&mut self, hash: &Hash256) {
        self.submitted.remove(hash);
    }

    /// A BLOCK arrived (or was rebuilt from a compact block). Requested ones go to the
    /// chain; an unrequested one only if its header joins the tree and makes a chain with
    /// more work than ours (a pushed new tip); anything else is dropped without validation.
    /// Returns the block to hand to the chain (the caller sends `Output::SubmitBlock`).
    pub fn on_block(
        &mut self,
        peer: PeerId,
        block: Box<Block>,
        tree: &mut HeaderTree,
        now: Now,
        out: &mut Outbox,
    ) -> Option<Box<Block>> {
        let hash = block.hash();
        if self.submitted.contains_key(&hash) || tree.has_body(&hash) {
            return None; // never processed twice
        }
        match self.in_flight.remove(&hash) {
            Some(request) => {
                self.dec(request.peer);
                if request.peer == peer {
                    let took = now.local.since(request.sent).as_millis();
                    let avg = self.avg_delivery.as_millis();
                    self.avg_delivery = LocalDuration::from_millis((avg * 7 + took) / 8);
                }
            }
            None => {
                if !accept_pushed_header(peer, &block.header, tree, now, out) {
                    return None;
                }
            }
        }
        out.internal(Internal::PeerHas { peer, hash });
        self.submitted.insert(hash, (now.local, block.header));
        Some(block)
    }

    /// NOTFOUND: the peer does not have those blocks after all.
    pub fn on_not_found(&mut self, peer: PeerId, items: &InvList, tree: &HeaderTree) {
        let blocks = |i: &&crate::wire::message::InvItem| {
            matches!(i.kind, InvKind::Block | InvKind::CompactBlock)
        };
        for item in items.as_slice().iter().filter(blocks) {
            let ours = self
                .in_flight
                .get(&item.hash)
                .is_some_and(|r| r.peer == peer);
            if ours {
                self.in_flight.remove(&item.hash);
                self.dec(peer);
                // It has at most the block's parent on that chain.
                if let Some(p) = self.peers.get_mut(&peer) {
                    p.best = tree.header(&item.hash).map(|h| h.prev_hash);
                }
            }
        }
    }

    /// The chain's answer for a block handed over. `relayed`: the block was pushed to us
    /// before its sender validated it (a compact block we asked to be pushed), so an invalid
    /// one costs a relay's score, not the connection.
    pub fn processed(
        &mut self,
        peer: PeerId,
        hash: Hash256,
        result: &BlockResult,
        relayed: bool,
        tree: &mut HeaderTree,
        out: &mut Outbox,
    ) {
        match result {
            BlockResult::Connected | BlockResult::SideBranch => {
                if let Some((_, header)) = self.submitted.remove(&hash) {
                    if let Some(height) = tree.height_of(&hash) {
                        tree.block_stored(&header, height);
                    }
                }
                out.internal(Internal::BlockStored { hash });
            }
            // Held by the chain until its parent arrives (or already there): wait for the
            // chain to report it stored; fetched again if that does not happen in time.
            BlockResult::Orphan | BlockResult::Duplicate => {}
            BlockResult::Invalid(reason) => {
                tracing::info!(peer, %hash, %reason, "invalid block");
                tree.mark_invalid(&hash);
                self.submitted.remove(&hash);
                out.internal(Internal::BlockInvalid { hash });
                if relayed {
                    out.misbehaved(peer, Misbehaviour::RelayedInvalidBlock);
                } else {
                    out.misbehaved_and_disconnect(peer, Misbehaviour::InvalidBlock);
                }
            }
            BlockResult::Mutated(reason) => {
                // The header stays valid and the block is fetched again, from another peer.
                tracing::info!(peer, %hash, %reason, "mutated block");
                self.submitted.remove(&hash);
                out.disconnect(peer, DisconnectReason::MutatedBlock);
            }
            BlockResult::NotProcessed(why) => {
                tracing::debug!(%hash, %why, "block not processed");
                self.submitted.remove(&hash);
            }
        }
    }

    /// The current stall timeout: a multiple of the average delivery time, within bounds.
    pub fn stall_timeout(&self) -> LocalDuration {
        self.avg_delivery
            .saturating_mul(STALL_FACTOR)
            .clamp(STALL_TIMEOUT_MIN, STALL_TIMEOUT_MAX)
    }

    /// When `tick` next has something to do: a request stalling; every tick while blocks
    /// wait in the chain (a stored one frees its place).
    pub fn next_wake(&self, now: LocalTime) -> Wake {
        let mut wake = Wake::NEVER;
        let timeout = self.stall_timeout();
        for r in self.in_flight.values() {
            wake.at(r.sent + timeout);
        }
        if !self.submitted.is_empty() {
            wake.at(now);
        }
        wake
    }

    /// Peers that let a request outlive the stall timeout are dropped (their blocks go to
    /// others); blocks the chain kept waiting too long are fetched again.
    pub fn tick(&mut self, tree: &HeaderTree, now: Now, out: &mut Outbox) {
        let timeout = self.stall_timeout();
        let stalled: std::collections::BTreeSet<PeerId> = self
            .in_flight
            .values()
            .filter(|r| now.local.since(r.sent) >= timeout)
            .map(|r| r.peer)
            .collect();
        for peer in stalled {
            tracing::info!(peer, timeout = %timeout, "peer stalled the block download");
            self.release(peer);
            out.disconnect(peer, DisconnectReason::Stalling);
        }
        self.submitted
            .retain(|hash, (at, _)| now.local.since(*at) < ORPHAN_WAIT && !tree.has_body(hash));
    }
}

/// A header pushed to us unasked (with a BLOCK or a CMPCTBLOCK): taken into the tree only if
/// it makes a chain with more work than ours (no orphans, no low-work headers); one that
/// breaks a rule costs the sender its connection. True when it is in the tree and beats our
/// active chain.
pub fn accept_pushed_header(
    peer: PeerId,
    header: &Header,
    tree: &mut HeaderTree,
    now: Now,
    out: &mut Outbox,
) -> bool {
    let hash = header.hash();
    if !tree.contains(&hash) {
        let better = super::presync::batch_work(tree, std::slice::from_ref(header))
            .is_some_and(|work| work > tree.active_work());
        if !better {
            return false;
        }
        let (accepted, error) = tree.accept(std::slice::from_ref(header), now.unix_secs());
        match error {
            None => {}
            Some(super::headers::HeaderError::Invalid { .. })
            | Some(super::headers::HeaderError::InvalidAncestor(_)) => {
                out.misbehaved_and_disconnect(peer, Misbehaviour::InvalidHeader);
                return false;
            }
            Some(_) => return false, // unconnected, or no room: not worth validating now
        }
        if accepted.new > 0 {
            out.internal(Internal::HeadersAdded);
        }
    }
    tree.work_of(&hash).is_some_and(|w| w > tree.active_work())
}

#[cfg(test)]
mod tests {
    use super::super::io::ConnType;
    use super::*;
    use crate::chain::testkit::TestChainBuilder;
    use crate::params::Network;
    use crate::protocol::Output;
    use crate::types::{Address, NodeId};
    use crate::wire::Message;

    use crate::time::after_epoch as now;

    fn blocks(n: usize) -> Vec<Block> {
        let mut b = TestChainBuilder::new(Network::Regtest.params());
        (0..n).map(|_| b.build(Address([1; 20]), vec![])).collect()
    }

    /// A tree that knows the headers of `chain` (no bodies) and peers 1..=n that have all.
    fn setup(chain: &[Block], n: u64) -> (HeaderTree, BlockDl) {
        let mut tree = HeaderTree::new(Network::Regtest.params());
        let headers: Vec<Header> = chain.iter().map(|b| b.header).collect();
        let (_, err) = tree.accept(&headers, now(0).unix_secs());
        assert!(err.is_none());
        let mut dl = BlockDl::default();
        for peer in 1..=n {
            let addr = "1.2.3.4:8333".parse().unwrap();
            for event in [
                Internal::PeerConnected {
                    peer,
                    addr,
                    node_id: NodeId([peer as u8; 32]),
                    conn_type: ConnType::Outbound,
                },
                Internal::PeerNegotiated {
                    peer,
                    addr,
                    conn_type: ConnType::Outbound,
                    seen_as: None,
                    height: 0,
                    relay: true,
                },
                Internal::PeerHas {
                    peer,
                    hash: tree.best_hash(),
                },
            ] {
                dl.on_internal(&event, &tree, now(0).local);
            }
        }
        (tree, dl)
    }

    fn requests(out: &mut Outbox) -> BTreeMap<PeerId, usize> {
        let mut by_peer = BTreeMap::new();
        for o in out.take_outputs() {
            if let Output::Send(peer, Message::GetData(items)) = o {
                *by_peer.entry(peer).or_insert(0) += items.len();
            }
        }
        by_peer
    }

    #[test]
    fn the_window_is_spread_over_peers_within_the_in_flight_limits() {
        let chain = blocks(100);
        let (tree, mut dl) = setup(&chain, 3);
        let mut out = Outbox::default();
        dl.request(&tree, &|_| false, now(0), &mut out);
        let asked = requests(&mut out);
        assert_eq!(asked.values().sum::<usize>(), 3 * MAX_IN_FLIGHT_PER_PEER);
        assert!(asked.values().all(|n| *n == MAX_IN_FLIGHT_PER_PEER));
        // Nothing more while all are busy.
        dl.request(&tree, &|_| false, now(1), &mut out);
        assert!(requests(&mut out).is_empty());
    }

    #[test]
    fn a_requested_block_goes_to_the_chain_once_and_an_unrequested_weak_one_not_at_all() {
        let chain = blocks(3);
        let (mut tree, mut dl) = setup(&chain, 1);
        let mut out = Outbox::default();
        dl.request(&tree, &|_| false, now(0), &mut out);
        requests(&mut out);
        let first = Box::new(chain[0].clone());
        let handed = [
            dl.on_block(1, first.clone(), &mut tree, now(50), &mut out),
            dl.on_block(1, first, &mut tree, now(60), &mut out),
        ];
        let submitted = handed.iter().filter(|b| b.is_some()).count();
        assert_eq!(submitted, 1, "never handed over twice");
        // Once the chain is at height 3, a competing block at height 1 (less work than the
        // active chain) is dropped unchecked.
        for (i, b) in chain.iter().enumerate() {
            tree.block_stored(&b.header, i as u64 + 1);
        }
        tree.set_active_tip(chain[2].hash());
        let mut other = TestChainBuilder::new(Network::Regtest.params());
        let rival = other.build(Address([9; 20]), vec![]);
        let rival_hash = rival.hash();
        let handed = dl.on_block(2, Box::new(rival), &mut tree, now(70), &mut out);
        assert!(handed.is_none());
        assert!(!tree.contains(&rival_hash), "not even its header is kept");
    }

    #[test]
    fn a_stalled_request_drops_the_peer_and_frees_its_blocks() {
        let chain = blocks(20);
        let (tree, mut dl) = setup(&chain, 2);
        let mut out = Outbox::default();
        dl.request(&tree, &|_| false, now(0), &mut out);
        requests(&mut out);
        assert_eq!(dl.stall_timeout(), STALL_TIMEOUT_MIN);
        dl.tick(&tree, now(STALL_TIMEOUT_MIN.as_millis() - 1), &mut out);
        assert!(out.next_internal().is_none());
        dl.tick(&tree, now(STALL_TIMEOUT_MIN.as_millis()), &mut out);
        let mut dropped = Vec::new();
        while let Some(e) = out.next_internal() {
            if let Internal::DisconnectRequested { peer, reason } = e {
                dropped.push((peer, reason));
            }
        }
        assert_eq!(
            dropped,
            vec![
                (1, DisconnectReason::Stalling),
                (2, DisconnectReason::Stalling)
            ]
        );
        assert!(dl.in_flight_of(1).is_empty() && dl.in_flight_of(2).is_empty());
    }

    #[test]
    fn an_invalid_block_marks_its_branch_and_costs_the_sender() {
        let chain = blocks(5);
        let (mut tree, mut dl) = setup(&chain, 1);
        let mut out = Outbox::default();
        dl.request(&tree, &|_| false, now(0), &mut out);
        requests(&mut out);
        let hash = chain[1].hash();
        dl.on_block(1, Box::new(chain[1].clone()), &mut tree, now(10), &mut out);
        out.take_outputs();
        while out.next_internal().is_some() {}
        dl.processed(
            1,
            hash,
            &BlockResult::Invalid("bad".into()),
            false,
            &mut tree,
            &mut out,
        );
        assert!(tree.is_invalid(&hash) && tree.is_invalid(&chain[4].hash()));
        let mut events = Vec::new();
        while let Some(e) = out.next_internal() {
            events.push(e);
        }
        assert!(events
            .iter()
            .any(|e| matches!(e, Internal::BlockInvalid { .. })));
        assert!(events.iter().any(|e| matches!(
            e,
            Internal::Misbehaved {
                peer: 1,
                what: Misbehaviour::InvalidBlock
            }
        )));
    }
}
