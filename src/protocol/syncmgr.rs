//! The sync manager: headers-first sync (GETHEADERS with a locator of our best header chain,
//! HEADERS checked into the header tree before any block is fetched), serving GETHEADERS and
//! GETBLOCKS, block announcements (HEADERS to peers that sent SENDHEADERS, INV otherwise), and
//! what each peer is known to have.
//!
//! Owns each peer's sync state. Never fetches or submits a block (the download manager does,
//! hearing `PeerHas` and `HeadersAdded` from here) and never reads the store: the header tree
//! is lent to it by the coordinator.

use super::bans::Misbehaviour;
use super::headers::{HeaderError, HeaderTree};
use super::io::{DisconnectReason, Internal, Outbox, PeerId, Wake};
use super::peermap::PeerMap;
use super::presync::{anti_dos_threshold, batch_work, Presync, Step};
use crate::chain::work::ChainWork;
use crate::time::{LocalDuration, LocalTime, Now};
use crate::types::{Hash256, Header};
use crate::wire::limits::MAX_HEADERS_ITEMS;
use crate::wire::message::{InvKind, InvList, LocatorRequest};

/// How long a GETHEADERS may go unanswered before another peer is asked.
/// A tip at most this much older than the clock is announced even while a heavier branch's
/// blocks are awaited (Bitcoin Core's default `-maxtipage`: a node whose tip is older is
/// taken to be catching up).
pub const MAX_TIP_AGE_SECS: u64 = 24 * 60 * 60;
const HEADERS_TIMEOUT: LocalDuration = LocalDuration::from_mins(2);
/// Unconnected HEADERS messages per misbehaviour point (an honest peer sends one when its
/// announcement races our sync; a stream of them is spam).
const UNCONNECTED_PER_SCORE: u32 = 10;
/// Announcements longer than this go as an INV (the receiver then asks for the headers).
const MAX_ANNOUNCED_HEADERS: usize = 8;
/// Block hashes in a GETBLOCKS answer (Bitcoin's figure).
const MAX_GETBLOCKS_ANSWER: usize = 500;

#[derive(Debug)]
struct SyncPeer {
    negotiated: bool,
    disconnecting: bool,
    /// The height its VERSION claimed.
    start_height: u64,
    /// The most-work block it is known to have.
    best: Option<Hash256>,
    /// It sent SENDHEADERS: announce with HEADERS.
    wants_headers: bool,
    /// When our unanswered GETHEADERS went out.
    asked: Option<LocalTime>,
    /// It let a GETHEADERS time out: not chosen for sync again.
    unresponsive: bool,
    unconnected: u32,
    /// The last tip we announced to it.
    announced: Option<Hash256>,
    /// Its low-work header chain being followed without storing it (`presync`).
    presync: Option<Presync>,
}

#[derive(Debug, Default)]
pub struct SyncMgr {
    peers: PeerMap<SyncPeer>,
    /// Salts the pre-sync commitment bits (from the core's seeded RNG).
    salt: u64,
    /// A header chain with less work is never stored without a pre-sync.
    minimum_chain_work: ChainWork,
}

impl SyncMgr {
    pub fn new(salt: u64, minimum_chain_work: ChainWork) -> SyncMgr {
        SyncMgr {
            peers: PeerMap::new(),
            salt,
            minimum_chain_work,
        }
    }

    /// Headers held for the tree by pre-syncs in progress (each at most
    /// `presync::REDOWNLOAD_BUFFER`).
    pub fn presync_buffered(&self) -> usize {
        self.peers
            .values()
            .filter_map(|p| p.presync.as_ref())
            .map(Presync::buffered)
            .sum()
    }

    pub fn on_internal(&mut self, event: &Internal, tree: &HeaderTree, now: Now, out: &mut Outbox) {
        match *event {
            Internal::PeerConnected { peer, .. } => {
                self.peers.insert(
                    peer,
                    SyncPeer {
                        negotiated: false,
                        disconnecting: false,
                        start_height: 0,
                        best: None,
                        wants_headers: false,
                        asked: None,
                        unresponsive: false,
                        unconnected: 0,
                        announced: None,
                        presync: None,
                    },
                );
            }
            Internal::PeerNegotiated {
                peer,
                height,
                conn_type,
                ..
            } => {
                if conn_type.is_short_lived() {
                    return; // a feeler's test or an address fetch: gone in a round trip
                }
                let syncing = self.peers.values().any(|p| p.asked.is_some());
                let Some(p) = self.peers.get_mut(&peer) else {
                    return;
                };
                p.negotiated = true;
                p.start_height = height;
                out.send_headers(peer);
                // One header-sync peer at a time while behind; anyone who claims more.
                if !syncing || height > tree.best_height() {
                    ask(peer, p, tree, now, out);
                }
            }
            Internal::PeerDisconnecting { peer } => {
                if let Some(p) = self.peers.get_mut(&peer) {
                    p.disconnecting = true;
                    p.asked = None;
                }
            }
            Internal::PeerGone { peer, .. } => {
                self.peers.remove(&peer);
            }
            Internal::TipChanged { .. } => self.announce(tree, now, out),
            // Learned elsewhere (a block it sent): kept for announcements and getpeerinfo.
            Internal::PeerHas { peer, hash } => {
                if let Some(p) = self.peers.get_mut(&peer) {
                    if p.best
                        .is_none_or(|b| tree.work_of(&hash) > tree.work_of(&b))
                    {
                        p.best = Some(hash);
                    }
                }
            }
            _ => {}
        }
    }

    /// The peer's best known block, for getpeerinfo.
    pub fn best_of(&self, peer: PeerId) -> Option<Hash256> {
        self.peers.get(&peer).and_then(|p| p.best)
    }

    pub fn on_send_headers(&mut self, peer: PeerId) {
        if let Some(p) = self.peers.get_mut(&peer) {
            p.wants_headers = true;
        }
    }

    pub fn on_headers(
        &mut self,
        peer: PeerId,
        headers: &[Header],
        tree: &mut HeaderTree,
        now: Now,
        out: &mut Outbox,
    ) {
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        if headers.is_empty() {
            p.asked = None;
            p.presync = None;
            return; // nothing after our locator: in step with it
        }
        let hashes = match tree.check_message(headers) {
            Ok(hashes) => hashes,
            Err(e) => {
                // Before its work is counted or any of it stored: refused whole.
                tracing::debug!(peer, error = %e, "HEADERS refused");
                out.misbehaved_and_disconnect(peer, Misbehaviour::InvalidHeader);
                return;
            }
        };
        // The hashes of `headers` as long as it is the message (a pre-sync may hand on others).
        let mut hashed = Some(&hashes[..]);
        let full = headers.len() == MAX_HEADERS_ITEMS;
        let passed: Vec<Header>;
        // A pass in progress goes on with the batch that continues it; anything else (an
        // announcement meanwhile) is taken on its own and leaves the pass as it is.
        let continued = p.presync.take_if(|pass| pass.continues(&headers[0]));
        if continued.is_some() || p.presync.is_none() {
            p.asked = None;
        }
        let headers = match continued {
            Some(pass) => match self.follow(peer, pass, headers, full, tree, now, out) {
                Some(rest) => {
                    passed = rest;
                    hashed = None;
                    &passed[..]
                }
                None => return,
            },
            None => {
                // Too little work to store: followed in a pre-sync (if there may be more) or
                // dropped. Known headers cost nothing, so they are not held back.
                let threshold = anti_dos_threshold(tree, self.minimum_chain_work);
                let known_end = tree.contains(&hashes[hashes.len() - 1]);
                if !known_end && batch_work(tree, headers).is_some_and(|w| w < threshold) {
                    if !full {
                        tracing::debug!(peer, "low-work headers not stored");
                        return;
                    }
                    let Some(pass) =
                        Presync::start(tree, &headers[0].prev_hash, threshold, self.salt)
                    else {
                        return;
                    };
                    tracing::debug!(peer, "low-work header chain: pre-sync");
                    match self.follow(peer, pass, headers, full, tree, now, out) {
                        Some(rest) => {
                            passed = rest;
                            hashed = None;
                            &passed[..]
                        }
                        None => return,
                    }
                } else {
                    headers
                }
            }
        };
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        if headers.is_empty() {
            return;
        }
        let (accepted, error) = match hashed {
            Some(hashes) => tree.accept_hashed(headers, hashes, now.unix_secs()),
            None => tree.accept(headers, now.unix_secs()),
        };
        if let Some(last) = accepted.last {
            // It answers with headers that connect: its earlier misses are forgiven (an honest
            // peer's announcements miss now and then, racing our sync).
            p.unconnected = 0;
            p.unresponsive = false;
            learn_best(peer, p, last, tree, out);
        }
        if accepted.new > 0 {
            out.internal(Internal::HeadersAdded);
        }
        match error {
            // A full tree takes nothing more: `tick` asks once blocks have made room.
            // Whether the message was full, not the list taken (a pre-sync that completes
            // hands on all it held back).
            None if full && !tree.is_full() => {
                // A full batch: there is more after its last header.
                let last = accepted.last.expect("a full batch was accepted");
                out.get_headers(peer, vec![last], Hash256::ZERO);
                p.asked = Some(now.local);
            }
            None => {}
            // Neither counted nor asked while the tree is full: then nothing new connects,
            // through no fault of the peer, and the answer could not be taken.
            Some(HeaderError::Unconnected(_)) if accepted.last.is_none() && tree.is_full() => {}
            Some(HeaderError::Unconnected(_)) if accepted.last.is_none() => {
                // An announcement that raced our sync, or a chain we do not know yet: ask
                // for the way there. A stream of these is scored.
                p.unconnected += 1;
                if p.unconnected % UNCONNECTED_PER_SCORE == 0 {
                    out.misbehaved(peer, Misbehaviour::UnconnectedHeaders);
                }
                ask(peer, p, tree, now, out);
            }
            // A later header unconnected: not a chain (`check_message` has refused such lists).
            Some(
                HeaderError::Unconnected(_)
                | HeaderError::Invalid { .. }
                | HeaderError::InvalidAncestor(_),
            ) => {
                out.misbehaved_and_disconnect(peer, Misbehaviour::InvalidHeader);
            }
            Some(HeaderError::Full) => {
                tracing::debug!(
                    peer,
                    "header tree full: waiting for blocks before more headers"
                );
            }
        }
    }

    /// Feeds a batch to the peer's pre-sync pass. Returns the headers the tree takes next
    /// when the pass has completed; `None` when the batch is dealt with.
    #[allow(clippy::too_many_arguments)]
    fn follow(
        &mut self,
        peer: PeerId,
        mut pass: Presync,
        headers: &[Header],
        full: bool,
        tree: &mut HeaderTree,
        now: Now,
        out: &mut Outbox,
    ) -> Option<Vec<Header>> {
        let p = self.peers.get_mut(&peer)?;
        let (step, used) = pass.feed(headers, full, now.unix_secs());
        match step {
            Step::Ask(locator) => {
                out.get_headers(peer, locator, Hash256::ZERO);
                p.asked = Some(now.local);
                p.presync = Some(pass);
                None
            }
            Step::Store {
                headers: mut ready,
                done: true,
                ..
            } => {
                tracing::debug!(peer, "pre-synced header chain has the work: stored");
                ready.extend_from_slice(&headers[used..]);
                Some(ready)
            }
            Step::Store {
                headers: ready,
                done: false,
                next,
            } => {
                let (accepted, error) = tree.accept(&ready, now.unix_secs());
                match error {
                    None => {}
                    // No room for headers without blocks: not the peer's fault; the pass ends.
                    Some(HeaderError::Full) => return None,
                    Some(_) => {
                        out.misbehaved_and_disconnect(peer, Misbehaviour::InvalidHeader);
                        return None;
                    }
                }
                if accepted.new > 0 {
                    out.internal(Internal::HeadersAdded);
                }
                out.get_headers(peer, vec![next], Hash256::ZERO);
                p.asked = Some(now.local);
                p.presync = Some(pass);
                None
            }
            Step::GiveUp => {
                tracing::debug!(peer, "pre-synced header chain ended with too little work");
                None
            }
            Step::Invalid(_) => {
                out.misbehaved_and_disconnect(peer, Misbehaviour::InvalidHeader);
                None
            }
            Step::Changed => {
                out.disconnect(peer, DisconnectReason::HeadersChanged);
                None
            }
        }
    }

    /// INV: known blocks tell us what the peer has; for an unknown one we ask for the
    /// peer's headers after our best header (headers first, then the block). With no stop:
    /// the announcements a peer sends while the request is out are not asked for again, so the
    /// answer must bring them too (a peer's compact blocks may come out of order). A block it
    /// pushed before connecting it is not in the answer; it announces that one again once
    /// connected.
    pub fn on_inv(
        &mut self,
        peer: PeerId,
        items: &InvList,
        tree: &HeaderTree,
        now: Now,
        out: &mut Outbox,
    ) {
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        let mut unknown = false;
        for item in items.as_slice().iter().filter(|i| i.kind == InvKind::Block) {
            if tree.contains(&item.hash) {
                learn_best(peer, p, item.hash, tree, out);
            } else {
                unknown = true;
            }
        }
        // During a pre-sync the peer's chain is being followed already, and while a request
        // to it is out its answer will bring the block: asked again, an INV would restart the
        // request's clock, and a peer announcing without ever answering would hold header sync
        // (`tick` asks nobody while a request is out) at 50 bytes a GETHEADERS of ~3 KB. A peer
        // that let a request time out is not asked on its word until it answers with headers.
        // While the tree is full the answer could not be taken.
        let idle = p.presync.is_none() && p.asked.is_none() && !p.unresponsive && !tree.is_full();
        if unknown && idle {
            out.get_headers(peer, tree.locator(), Hash256::ZERO);
            p.asked = Some(now.local);
        }
    }

    /// GETHEADERS: up to 2,000 headers of our active chain after the locator.
    pub fn on_get_headers(
        &mut self,
        peer: PeerId,
        request: &LocatorRequest,
        tree: &HeaderTree,
        out: &mut Outbox,
    ) {
        let headers =
            tree.headers_after(request.locator.as_slice(), &request.stop, MAX_HEADERS_ITEMS);
        out.headers(peer, headers);
    }

    /// GETBLOCKS: up to 500 block hashes of our active chain after the locator, as an INV.
    pub fn on_get_blocks(
        &mut self,
        peer: PeerId,
        request: &LocatorRequest,
        tree: &HeaderTree,
        out: &mut Outbox,
    ) {
        let hashes = tree.active_after(
            request.locator.as_slice(),
            &request.stop,
            MAX_GETBLOCKS_ANSWER,
        );
        out.inv(peer, InvKind::Block, &hashes);
    }

    /// The block went to the peer another way (a compact block of our new tip): not
    /// announced to it.
    pub fn note_announced(&mut self, peer: PeerId, hash: Hash256) {
        if let Some(p) = self.peers.get_mut(&peer) {
            p.announced = Some(hash);
        }
    }

    /// A peer sent or announced a block: it has it.
    pub fn peer_has(&mut self, peer: PeerId, hash: Hash256, tree: &HeaderTree, out: &mut Outbox) {
        if let Some(p) = self.peers.get_mut(&peer) {
            learn_best(peer, p, hash, tree, out);
        }
    }

    /// Announces a new active tip to every peer that does not have it, once caught up with
    /// our best header (not block by block during a sync or a reorg).
    fn announce(&mut self, tree: &HeaderTree, now: Now, out: &mut Outbox) {
        if !tip_is_news(tree, now) {
            return;
        }
        let tip = tree.active_tip();
        for (peer, p) in &mut self.peers {
            if !p.negotiated || p.disconnecting || p.announced == Some(tip) {
                continue;
            }
            if p.best.is_some_and(|b| tree.is_ancestor(&tip, &b)) {
                continue; // it has the tip already
            }
            p.announced = Some(tip);
            if p.wants_headers {
                // From what it has (if on our chain), at most the last few.
                let has = p.best.filter(|b| tree.is_active(b));
                let from = has.and_then(|b| tree.height_of(&b)).unwrap_or(0).max(
                    tree.active_height()
                        .saturating_sub(MAX_ANNOUNCED_HEADERS as u64),
                );
                let locator: Vec<Hash256> = tree.active_at(from).into_iter().collect();
                let headers = tree.headers_after(&locator, &tip, MAX_ANNOUNCED_HEADERS);
                out.headers(*peer, headers);
            } else {
                out.inv(*peer, InvKind::Block, &[tip]);
            }
        }
    }

    /// When `tick` next has something to do: a GETHEADERS timing out or, with none
    /// outstanding, a peer to ask (decided by what the inputs since changed, so at once).
    pub fn next_wake(&self, tree: &HeaderTree, now: LocalTime) -> Wake {
        let mut wake = Wake::NEVER;
        for p in self.peers.values() {
            if let Some(at) = p.asked {
                wake.at(at + HEADERS_TIMEOUT);
            }
        }
        if wake == Wake::NEVER && self.peers.values().any(|p| is_behind(p, tree)) {
            wake.at(now);
        }
        wake
    }

    /// The best header each peer has shown it has (for what a full header tree keeps).
    pub fn claimed_headers(&self) -> Vec<Hash256> {
        self.peers.values().filter_map(|p| p.best).collect()
    }

    /// Header requests that went unanswered are given up, and another peer is asked.
    pub fn tick(&mut self, tree: &HeaderTree, now: Now, out: &mut Outbox) {
        let mut someone_asked = false;
        for p in self.peers.values_mut() {
            if let Some(at) = p.asked {
                if now.local.since(at) >= HEADERS_TIMEOUT {
                    p.asked = None;
                    p.unresponsive = true;
                } else {
                    someone_asked = true;
                }
            }
        }
        // While the tree is full an answer could not be taken: asked every tick, a peer
        // would send 2,000 headers a second for nothing.
        if someone_asked || tree.is_full() {
            return;
        }
        // Nobody is being asked: if a peer claims a longer chain than our best header, ask it.
        let behind = self.peers.iter_mut().find(|(_, p)| is_behind(p, tree));
        if let Some((peer, p)) = behind {
            ask(*peer, p, tree, now, out);
        }
    }
}

/// A peer to sync from: it claims a longer chain than our best header and has not shown it.
fn is_behind(p: &SyncPeer, tree: &HeaderTree) -> bool {
    p.negotiated
        && !p.disconnecting
        && !p.unresponsive
        && p.start_height > tree.best_height()
        && p.best
            .is_none_or(|b| tree.height_of(&b).is_none_or(|h| h < p.start_height))
}

fn ask(peer: PeerId, p: &mut SyncPeer, tree: &HeaderTree, now: Now, out: &mut Outbox) {
    // From the best header's parent, as Bitcoin Core does: the answer then holds at least
    // our best header if the peer has it, so we learn what it has even when in step.
    out.get_headers(peer, tree.locator_from_parent(), Hash256::ZERO);
    p.asked = Some(now.local);
}

/// Records that the peer has `hash` if it is more than what it was known to have.
fn learn_best(peer: PeerId, p: &mut SyncPeer, hash: Hash256, tree: &HeaderTree, out: &mut Outbox) {
    let better = match p.best {
        None => true,
        Some(b) => tree.work_of(&hash) > tree.work_of(&b),
    };
    if better {
        p.best = Some(hash);
        out.internal(Internal::PeerHas { peer, hash });
    }
}

/// Whether the active tip is to be announced (and pushed as a compact block) now. Blocks
/// caught up on during a sync are not news. But a best header alone is no proof of a sync: a
/// stranger can send headers of a heavier branch and never the blocks, and a node that
/// announced only once its tip was its best header would then announce nothing, its own
/// blocks included, for as long as those headers stayed. So a recent tip is news whatever
/// the best header (Bitcoin Core leaves initial download by the tip's age too).
pub fn tip_is_news(tree: &HeaderTree, now: Now) -> bool {
    let tip = tree.active_tip();
    if tree.active_height() == 0 {
        return false;
    }
    tip == tree.best_hash()
        || tree
            .header(&tip)
            .is_some_and(|h| h.time.saturating_add(MAX_TIP_AGE_SECS) >= now.unix_secs())
}

#[cfg(test)]
mod tests {
    use super::super::io::{ConnType, DisconnectReason, Output};
    use super::*;
    use crate::chain::testkit::TestChainBuilder;
    use crate::params::Network;
    use crate::types::{Address, NodeId};
    use crate::wire::Message;

    use crate::time::after_epoch as now;

    fn headers(n: usize) -> Vec<Header> {
        let mut b = TestChainBuilder::new(Network::Regtest.params());
        (0..n)
            .map(|_| b.build(Address([1; 20]), vec![]).header)
            .collect()
    }

    fn negotiated(
        mgr: &mut SyncMgr,
        tree: &HeaderTree,
        peer: PeerId,
        height: u64,
        out: &mut Outbox,
    ) {
        let addr = "1.2.3.4:8333".parse().unwrap();
        let connected = Internal::PeerConnected {
            peer,
            addr,
            node_id: NodeId([peer as u8; 32]),
            conn_type: ConnType::Outbound,
        };
        mgr.on_internal(&connected, tree, now(0), out);
        let negotiated = Internal::PeerNegotiated {
            peer,
            addr,
            conn_type: ConnType::Outbound,
            seen_as: None,
            height,
            relay: true,
        };
        mgr.on_internal(&negotiated, tree, now(0), out);
    }

    fn sent(out: &mut Outbox) -> Vec<Message> {
        out.take_outputs()
            .into_iter()
            .filter_map(|o| match o {
                Output::Send(_, m) => Some(m),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_new_peer_gets_sendheaders_and_one_getheaders_at_a_time() {
        let tree = HeaderTree::new(Network::Regtest.params());
        let mut mgr = SyncMgr::default();
        let mut out = Outbox::default();
        negotiated(&mut mgr, &tree, 1, 0, &mut out);
        let msgs = sent(&mut out);
        assert_eq!(msgs[0], Message::SendHeaders);
        assert!(matches!(msgs[1], Message::GetHeaders(_)));
        // A second peer claiming no more than we have is not asked while the first is.
        negotiated(&mut mgr, &tree, 2, 0, &mut out);
        assert_eq!(sent(&mut out), vec![Message::SendHeaders]);
        // One claiming more is.
        negotiated(&mut mgr, &tree, 3, 50, &mut out);
        assert!(matches!(sent(&mut out)[1], Message::GetHeaders(_)));
    }

    #[test]
    fn nobody_is_asked_for_headers_while_the_tree_is_full_and_asked_again_once_it_has_room() {
        let mut tree = HeaderTree::with_body_limit(Network::Regtest.params(), 3);
        let mut mgr = SyncMgr::default();
        let mut out = Outbox::default();
        negotiated(&mut mgr, &tree, 1, 10, &mut out);
        sent(&mut out);
        let chain = headers(10);
        mgr.on_headers(1, &chain[..5], &mut tree, now(10), &mut out);
        assert_eq!(tree.best_height(), 3);
        assert!(tree.is_full());
        sent(&mut out);
        // It still claims more than we have, but an answer could not be stored: not asked
        // (the old code asked it every tick, and refused 2,000 headers a second).
        for second in 1..=5 {
            mgr.tick(&tree, now(10 + second * 1_000), &mut out);
        }
        mgr.on_inv(1, &inv_of(chain[9].hash()), &tree, now(6_000), &mut out);
        mgr.on_headers(1, &chain[8..], &mut tree, now(6_500), &mut out);
        assert!(sent(&mut out).is_empty(), "asked while the tree was full");
        assert!(out.take_misbehaviours().is_empty());
        // Blocks arrive for what it holds: it is asked for the rest.
        for (i, h) in chain[..3].iter().enumerate() {
            tree.block_stored(h, i as u64 + 1);
        }
        assert!(!tree.is_full());
        mgr.tick(&tree, now(7_000), &mut out);
        assert_eq!(asked_after(&sent(&mut out))[0], chain[1].hash());
    }

    #[test]
    fn headers_join_the_tree_and_an_invalid_one_costs_the_sender() {
        let mut tree = HeaderTree::new(Network::Regtest.params());
        let mut mgr = SyncMgr::default();
        let mut out = Outbox::default();
        negotiated(&mut mgr, &tree, 1, 5, &mut out);
        sent(&mut out);
        let chain = headers(5);
        mgr.on_headers(1, &chain, &mut tree, now(10), &mut out);
        assert_eq!(tree.best_height(), 5);
        assert_eq!(mgr.best_of(1), Some(chain[4].hash()));
        let mut told = Vec::new();
        while let Some(e) = out.next_internal() {
            told.push(e);
        }
        assert!(told.iter().any(|e| matches!(e, Internal::HeadersAdded)));
        assert!(told
            .iter()
            .any(|e| matches!(e, Internal::PeerHas { peer: 1, .. })));
        let mut bad = headers(6)[5];
        bad.nonce = bad.nonce.wrapping_add(1); // proof of work no longer holds (most likely)
        bad.bits = 0x1d00ffff; // and certainly not the required target
        mgr.on_headers(1, &[bad], &mut tree, now(20), &mut out);
        assert_eq!(
            out.take_disconnect_reasons(),
            vec![DisconnectReason::Misbehaviour(Misbehaviour::InvalidHeader)]
        );
    }

    fn branch(n: usize, to: u8) -> Vec<Header> {
        let mut b = TestChainBuilder::new(Network::Regtest.params());
        (0..n)
            .map(|_| b.build(Address([to; 20]), vec![]).header)
            .collect()
    }

    /// A tree whose active chain is `n` blocks (bodies and all).
    fn active_tree(n: usize) -> HeaderTree {
        let mut tree = HeaderTree::new(Network::Regtest.params());
        let chain = headers(n);
        for (i, h) in chain.iter().enumerate() {
            tree.block_stored(h, i as u64 + 1);
        }
        tree.set_active_tip(chain[n - 1].hash());
        tree
    }

    fn asked_after(msgs: &[Message]) -> Vec<Hash256> {
        msgs.iter()
            .filter_map(|m| match m {
                Message::GetHeaders(r) => Some(r.locator.as_slice().to_vec()),
                _ => None,
            })
            .next_back()
            .expect("a GETHEADERS")
    }

    #[test]
    fn a_low_work_header_chain_is_followed_without_storing_it_until_it_shows_the_work() {
        // Active chain 2,300: the bar is 2,300 - 144 blocks of work. A branch of 2,500 from
        // genesis passes it only at its 2,157th header.
        let mut tree = active_tree(2_300);
        let mut mgr = SyncMgr::new(42, ChainWork::zero());
        let mut out = Outbox::default();
        negotiated(&mut mgr, &tree, 1, 0, &mut out);
        sent(&mut out);
        let other = branch(2_500, 2);
        let genesis = Network::Regtest.params().genesis_hash();
        // Pre-sync: 2,000 headers checked, none stored; the rest asked for.
        mgr.on_headers(1, &other[..2_000], &mut tree, now(10), &mut out);
        assert_eq!(tree.headers_without_body(), 0);
        assert_eq!(asked_after(&sent(&mut out)), vec![other[1_999].hash()]);
        // The last 500 pass the bar: the chain is asked for again from the fork.
        mgr.on_headers(1, &other[2_000..], &mut tree, now(20), &mut out);
        assert_eq!(tree.headers_without_body(), 0);
        assert_eq!(asked_after(&sent(&mut out)), vec![genesis]);
        // Redownload: 2,000 held back (under the buffer), then the bar is reached and the
        // whole chain is stored; it is the best header chain now.
        mgr.on_headers(1, &other[..2_000], &mut tree, now(30), &mut out);
        assert_eq!(tree.headers_without_body(), 0);
        assert_eq!(mgr.presync_buffered(), 2_000);
        assert_eq!(asked_after(&sent(&mut out)), vec![other[1_999].hash()]);
        mgr.on_headers(1, &other[2_000..], &mut tree, now(40), &mut out);
        assert_eq!(tree.headers_without_body(), 2_500);
        assert_eq!(tree.best_hash(), other[2_499].hash());
        assert_eq!(mgr.presync_buffered(), 0);
        assert!(out.take_disconnect_reasons().is_empty());
    }

    #[test]
    fn a_presync_that_completes_on_a_full_message_asks_for_more() {
        // The bar (2,300 - 144 blocks of work) is passed inside the second message of the
        // redownload: the 4,000 headers held back are stored, and the message was full, so
        // there is more to ask for (the old code looked at the 4,000 taken, not the 2,000
        // sent, and waited for the next tick).
        let mut tree = active_tree(2_300);
        let mut mgr = SyncMgr::new(42, ChainWork::zero());
        let mut out = Outbox::default();
        negotiated(&mut mgr, &tree, 1, 0, &mut out);
        sent(&mut out);
        let other = branch(4_500, 2);
        mgr.on_headers(1, &other[..2_000], &mut tree, now(10), &mut out);
        mgr.on_headers(1, &other[2_000..4_000], &mut tree, now(20), &mut out);
        sent(&mut out);
        mgr.on_headers(1, &other[..2_000], &mut tree, now(30), &mut out);
        assert_eq!(mgr.presync_buffered(), 2_000);
        sent(&mut out);
        mgr.on_headers(1, &other[2_000..4_000], &mut tree, now(40), &mut out);
        assert_eq!(tree.headers_without_body(), 4_000);
        assert_eq!(asked_after(&sent(&mut out)), vec![other[3_999].hash()]);
    }

    #[test]
    fn a_message_that_is_not_one_chain_is_refused_whole_and_costs_the_sender() {
        // Its work would be counted as one chain's: a first header on our tip, then siblings
        // off genesis (cheap proof of work each), would pass the anti-DoS bar and fill the
        // tree with low-work headers if the list were not checked to be a chain first.
        let mut tree = active_tree(2_300);
        let mut mgr = SyncMgr::new(42, ChainWork::zero());
        let mut out = Outbox::default();
        negotiated(&mut mgr, &tree, 1, 0, &mut out);
        sent(&mut out);
        let mut list = vec![headers(2_301)[2_300]];
        list.extend((2..40).map(|to| branch(1, to)[0]));
        mgr.on_headers(1, &list, &mut tree, now(10), &mut out);
        assert_eq!(tree.headers_without_body(), 0, "nothing of it is stored");
        assert_eq!(
            out.take_disconnect_reasons(),
            vec![DisconnectReason::Misbehaviour(Misbehaviour::InvalidHeader)]
        );
        // The same first header on its own is a valid announcement.
        mgr.on_headers(1, &list[..1], &mut tree, now(20), &mut out);
        assert_eq!(tree.headers_without_body(), 1);
        assert!(out.take_disconnect_reasons().is_empty());
    }

    #[test]
    fn a_last_header_claiming_work_it_does_not_prove_gets_nothing_stored() {
        // The message's work is counted from the targets its headers claim: a last header
        // claiming a high one would lift 1,999 low-work headers over the bar if its proof of
        // work were checked only after the others were stored.
        let mut tree = active_tree(2_300);
        let mut mgr = SyncMgr::new(42, ChainWork::zero());
        let mut out = Outbox::default();
        negotiated(&mut mgr, &tree, 1, 0, &mut out);
        sent(&mut out);
        let mut list = branch(2_000, 2);
        list[1_999].bits = 0x1d00ffff;
        mgr.on_headers(1, &list, &mut tree, now(10), &mut out);
        assert_eq!(tree.headers_without_body(), 0);
        assert_eq!(
            out.take_disconnect_reasons(),
            vec![DisconnectReason::Misbehaviour(Misbehaviour::InvalidHeader)]
        );
    }

    #[test]
    fn unconnected_announcements_are_forgiven_once_the_peer_sends_headers_that_connect() {
        let mut tree = HeaderTree::new(Network::Regtest.params());
        let mut mgr = SyncMgr::default();
        let mut out = Outbox::default();
        negotiated(&mut mgr, &tree, 1, 0, &mut out);
        let chain = headers(40);
        // Nine announcements of blocks whose parents we lack, then the headers up to them.
        for h in &chain[1..10] {
            mgr.on_headers(1, std::slice::from_ref(h), &mut tree, now(10), &mut out);
        }
        mgr.on_headers(1, &chain[..10], &mut tree, now(11), &mut out);
        assert_eq!(tree.best_height(), 10);
        // Nine more misses: not the tenth in a row, so not scored.
        for h in &chain[11..20] {
            mgr.on_headers(1, std::slice::from_ref(h), &mut tree, now(12), &mut out);
        }
        assert_eq!(out.take_misbehaviours(), vec![]);
        // A tenth in a row is.
        mgr.on_headers(1, &chain[20..21], &mut tree, now(13), &mut out);
        assert_eq!(
            out.take_misbehaviours(),
            vec![Misbehaviour::UnconnectedHeaders]
        );
    }

    fn inv_of(hash: Hash256) -> InvList {
        InvList::new(vec![crate::wire::message::InvItem {
            kind: InvKind::Block,
            hash,
        }])
        .unwrap()
    }

    fn getheaders_count(out: &mut Outbox) -> usize {
        sent(out)
            .iter()
            .filter(|m| matches!(m, Message::GetHeaders(_)))
            .count()
    }

    #[test]
    fn an_inv_does_not_restart_a_request_and_a_peer_that_never_answers_stops_holding_sync() {
        let mut tree = HeaderTree::new(Network::Regtest.params());
        let mut mgr = SyncMgr::default();
        let mut out = Outbox::default();
        // Both claim a longer chain and are asked at their handshake; peer 2 answers (with
        // nothing yet), peer 1 does not.
        negotiated(&mut mgr, &tree, 1, 50, &mut out);
        negotiated(&mut mgr, &tree, 2, 50, &mut out);
        assert_eq!(getheaders_count(&mut out), 2);
        mgr.on_headers(2, &[], &mut tree, now(1), &mut out);
        mgr.tick(&tree, now(2), &mut out);
        assert_eq!(getheaders_count(&mut out), 0, "peer 1's request is out");
        // Peer 1 announces unknown blocks but never answers: no new request, no new clock.
        for (i, t) in [30_000, 60_000, 90_000].into_iter().enumerate() {
            mgr.on_inv(1, &inv_of(Hash256([i as u8; 32])), &tree, now(t), &mut out);
        }
        assert_eq!(getheaders_count(&mut out), 0);
        // Two minutes after the request, it is given up and peer 2 is asked.
        mgr.tick(&tree, now(121_000), &mut out);
        assert_eq!(getheaders_count(&mut out), 1);
        assert_eq!(mgr.peers[&2].asked, Some(now(121_000).local));
        // Peer 1's announcements are not followed until it answers with headers.
        mgr.on_inv(1, &inv_of(Hash256([7; 32])), &tree, now(130_000), &mut out);
        assert_eq!(getheaders_count(&mut out), 0);
        assert!(mgr.peers[&1].asked.is_none());
    }

    #[test]
    fn a_low_work_chain_that_ends_short_is_dropped_and_a_short_low_work_batch_ignored() {
        let mut tree = active_tree(2_300);
        let mut mgr = SyncMgr::new(42, ChainWork::zero());
        let mut out = Outbox::default();
        negotiated(&mut mgr, &tree, 1, 0, &mut out);
        sent(&mut out);
        let other = branch(2_100, 2);
        mgr.on_headers(1, &other[..2_000], &mut tree, now(10), &mut out);
        mgr.on_headers(1, &other[2_000..], &mut tree, now(20), &mut out);
        assert_eq!(tree.headers_without_body(), 0);
        assert!(mgr.peers[&1].presync.is_none(), "the pass is over");
        // Not a full batch, too little work: not stored, not followed, not scored.
        mgr.on_headers(1, &branch(50, 3), &mut tree, now(30), &mut out);
        assert_eq!(tree.headers_without_body(), 0);
        assert!(mgr.peers[&1].presync.is_none());
        assert!(out.take_disconnect_reasons().is_empty());
    }

    #[test]
    fn a_redownloaded_chain_that_is_not_the_presynced_one_is_caught_before_it_is_stored() {
        let mut tree = active_tree(2_300);
        let mut mgr = SyncMgr::new(42, ChainWork::zero());
        let mut out = Outbox::default();
        negotiated(&mut mgr, &tree, 1, 0, &mut out);
        sent(&mut out);
        let shown = branch(2_500, 2);
        mgr.on_headers(1, &shown[..2_000], &mut tree, now(10), &mut out);
        mgr.on_headers(1, &shown[2_000..], &mut tree, now(20), &mut out);
        sent(&mut out);
        // The second pass brings another chain: its commitment bits differ early (a 1 in
        // 2^20 chance of matching 20 of them).
        let swapped = branch(2_000, 4);
        mgr.on_headers(1, &swapped, &mut tree, now(30), &mut out);
        assert_eq!(
            out.take_disconnect_reasons(),
            vec![DisconnectReason::HeadersChanged]
        );
        assert_eq!(tree.headers_without_body(), 0);
        assert!(mgr.peers[&1].presync.is_none());
    }

    #[test]
    fn an_invalid_header_during_presync_costs_the_sender() {
        let mut tree = active_tree(2_300);
        let mut mgr = SyncMgr::new(42, ChainWork::zero());
        let mut out = Outbox::default();
        negotiated(&mut mgr, &tree, 1, 0, &mut out);
        sent(&mut out);
        let mut other = branch(2_000, 2);
        other[1_500].time = 0; // before the median time past
        mgr.on_headers(1, &other, &mut tree, now(10), &mut out);
        assert_eq!(
            out.take_disconnect_reasons(),
            vec![DisconnectReason::Misbehaviour(Misbehaviour::InvalidHeader)]
        );
        assert_eq!(tree.headers_without_body(), 0);
    }

    #[test]
    fn a_new_tip_is_announced_by_headers_or_inv_as_each_peer_asked() {
        let mut tree = HeaderTree::new(Network::Regtest.params());
        let mut mgr = SyncMgr::default();
        let mut out = Outbox::default();
        negotiated(&mut mgr, &tree, 1, 0, &mut out);
        negotiated(&mut mgr, &tree, 2, 0, &mut out);
        mgr.on_send_headers(1);
        sent(&mut out);
        let chain = headers(3);
        for (i, h) in chain.iter().enumerate() {
            tree.block_stored(h, i as u64 + 1);
        }
        tree.set_active_tip(chain[2].hash());
        let tip = Internal::TipChanged {
            height: 3,
            hash: chain[2].hash(),
        };
        mgr.on_internal(&tip, &tree, now(0), &mut out);
        let outputs = out.take_outputs();
        let to = |peer: PeerId| -> Vec<&Message> {
            outputs
                .iter()
                .filter_map(|o| match o {
                    Output::Send(p, m) if *p == peer => Some(m),
                    _ => None,
                })
                .collect()
        };
        assert!(matches!(to(1)[..], [Message::Headers(ref h)] if h.len() == 3));
        assert!(matches!(to(2)[..], [Message::Inv(ref i)] if i.len() == 1));
        // Announced once.
        mgr.on_internal(&tip, &tree, now(1), &mut out);
        assert!(sent(&mut out).is_empty());
    }

    #[test]
    fn a_recent_tip_is_announced_while_a_heavier_branch_is_only_headers() {
        // The active chain: 3 blocks. A peer's branch of 5 headers, whose blocks never come,
        // is the best header.
        let mut tree = HeaderTree::new(Network::Regtest.params());
        let chain = headers(3);
        for (i, h) in chain.iter().enumerate() {
            tree.block_stored(h, i as u64 + 1);
        }
        tree.set_active_tip(chain[2].hash());
        let heavier = branch(5, 2);
        let tip_time = chain[2].time;
        let (accepted, error) = tree.accept(&heavier, heavier[4].time + 1);
        assert!(error.is_none(), "{accepted:?} {error:?}");
        assert_eq!(tree.best_hash(), heavier[4].hash());
        let mut mgr = SyncMgr::default();
        let mut out = Outbox::default();
        negotiated(&mut mgr, &tree, 1, 0, &mut out);
        sent(&mut out);
        let tip = Internal::TipChanged {
            height: 3,
            hash: chain[2].hash(),
        };
        let at = |unix_secs: u64| Now {
            local: LocalTime::from_millis(1_000),
            unix_ms: unix_secs * 1_000,
        };
        // A tip from long ago: a sync catching up, nothing announced.
        mgr.on_internal(&tip, &tree, at(tip_time + MAX_TIP_AGE_SECS + 1), &mut out);
        assert!(sent(&mut out).is_empty());
        // A tip of the last day: announced, though not the best header.
        mgr.on_internal(&tip, &tree, at(tip_time + 60), &mut out);
        assert!(matches!(&sent(&mut out)[..], [Message::Inv(i)] if i.len() == 1));
    }

    #[test]
    fn getheaders_is_answered_from_the_active_chain_after_the_locator() {
        let mut tree = HeaderTree::new(Network::Regtest.params());
        let chain = headers(10);
        for (i, h) in chain.iter().enumerate() {
            tree.block_stored(h, i as u64 + 1);
        }
        tree.set_active_tip(chain[9].hash());
        let mut mgr = SyncMgr::default();
        let mut out = Outbox::default();
        let request = LocatorRequest {
            protocol_version: 1,
            locator: crate::encoding::BoundedVec::new(vec![chain[3].hash()]).unwrap(),
            stop: Hash256::ZERO,
        };
        mgr.on_get_headers(7, &request, &tree, &mut out);
        match &sent(&mut out)[..] {
            [Message::Headers(h)] => assert_eq!(h.as_slice(), &chain[4..]),
            other => panic!("{other:?}"),
        }
        mgr.on_get_blocks(7, &request, &tree, &mut out);
        match &sent(&mut out)[..] {
            [Message::Inv(items)] => assert_eq!(items.len(), 6),
            other => panic!("{other:?}"),
        }
    }
}
