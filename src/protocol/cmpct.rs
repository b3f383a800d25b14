//! The compact block manager (the idea of BIP152; docs/PROTOCOL.md 10.8): negotiates compact
//! relay with SENDCMPCT, keeps up to three high-bandwidth peers (those that delivered new
//! blocks first most recently) asked to push blocks to us, pushes each new block as a
//! CMPCTBLOCK to the peers that asked us to, as soon as its header and proof of work are
//! checked and before the chain validates it, takes CMPCTBLOCKs in, has the shell rebuild
//! them from the mempool, asks for what is missing with GETBLOCKTXN and falls back to the
//! full block when rebuilding cannot tell transactions apart.
//!
//! Owns the per-peer compact state, the blocks being rebuilt and the compact relay counters.
//! Never reads the mempool or hashes transactions (the shell does, off the network task, with
//! `Filler`), never validates a body (the chain does), and hands every rebuilt block back to
//! the coordinator, which submits it through the block download's one path, so a block
//! still reaches the chain exactly once.

use super::bans::Misbehaviour;
use super::headers::HeaderTree;
use super::io::{ConnType, Internal, Outbox, Output, PeerId, Reconstruction};
use super::peermap::PeerMap;
use crate::encoding::BoundedVec;
use crate::types::{Block, Hash256, Header, Transaction};
use crate::wire::compact::{
    BlockTxn, CompactBlock, GetBlockTxn, SendCmpct, ShortId, ShortIdKey, COMPACT_VERSION,
};
use crate::wire::message::{InvKind, InvList};
use crate::wire::Message;
use rand::Rng;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

/// Peers asked to push new blocks to us unsolicited (BIP152's figure): enough that one
/// fast path survives two slow or lying ones, few enough that a block arrives only a few
/// times.
pub const MAX_HIGH_BANDWIDTH: usize = 3;
/// Compact blocks being rebuilt or waiting for BLOCKTXN at once. An honest network makes
/// one new tip at a time; past this, a compact block is taken as a header and the body
/// downloaded as usual.
pub const MAX_PENDING: usize = 8;
/// Blocks remembered as rebuilt (to tell a short-id collision from a lie): a few recent
/// tips.
const MAX_RECENT: usize = 16;
/// Blocks remembered as pushed (each is pushed once; GETBLOCKTXN and GETDATA for one not
/// stored yet are answered), and kept by the shell for that: a few new tips.
pub const KEPT_PUSHED: usize = 4;
/// GETBLOCKTXN is answered for blocks at most this deep (BIP152's figure): older ones are
/// not new tips, and the peer can ask for the whole block.
pub const MAX_BLOCKTXN_DEPTH: u64 = 10;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct CompactCounts {
    /// CMPCTBLOCK messages it sent us.
    pub cmpct_received: u64,
    /// CMPCTBLOCK messages we sent it.
    pub cmpct_sent: u64,
    /// Its compact blocks rebuilt from our mempool alone, without a round trip.
    pub cmpct_rebuilt: u64,
    /// GETBLOCKTXN round trips we needed for its compact blocks.
    pub blocktxn_requested: u64,
}

#[derive(Debug)]
struct CmpctPeer {
    outbound: bool,
    /// It sent SENDCMPCT with our version: it takes compact blocks.
    supports: bool,
    /// Its last SENDCMPCT asked us to push new blocks to it.
    wants_push: bool,
    disconnecting: bool,
    /// Recent blocks it sent or announced to us, or we pushed to it: never pushed again.
    known: VecDeque<Hash256>,
}

impl CmpctPeer {
    fn knows(&mut self, hash: Hash256) {
        if !self.known.contains(&hash) {
            if self.known.len() >= MAX_RECENT {
                self.known.pop_front();
            }
            self.known.push_back(hash);
        }
    }
}

#[derive(Debug)]
enum Pending {
    /// Handed to the shell to rebuild.
    Rebuilding { peer: PeerId, header: Header },
    /// Asked the rest of with GETBLOCKTXN.
    AwaitingTxn {
        peer: PeerId,
        header: Header,
        slots: Vec<Option<Transaction>>,
        missing: Vec<u32>,
    },
}

impl Pending {
    fn peer(&self) -> PeerId {
        match self {
            Pending::Rebuilding { peer, .. } | Pending::AwaitingTxn { peer, .. } => *peer,
        }
    }
}

#[derive(Debug, Default)]
pub struct CompactRelay {
    peers: PeerMap<CmpctPeer>,
    counts: BTreeMap<PeerId, CompactCounts>,
    /// The peers we asked to push to us, the one that delivered a new block first most
    /// recently at the front.
    high_bandwidth: VecDeque<PeerId>,
    pending: BTreeMap<Hash256, Pending>,
    /// Blocks rebuilt from compact form and handed to the chain, with the peer they came
    /// from: a body that does not match its header is then a short-id collision to repair
    /// with the full block, not a lie.
    rebuilt: VecDeque<(Hash256, PeerId)>,
    /// Blocks pushed as compact blocks, newest last: each is pushed once, and GETBLOCKTXN
    /// for them is answered before the chain has stored them.
    pushed: VecDeque<Hash256>,
    /// Rebuilds an outbound peer took over (`may_take_over`), oldest first: the inbound
    /// peer's answer is still taken if it comes first (its rebuild completed, its BLOCKTXN).
    superseded: VecDeque<(Hash256, Pending)>,
    /// Peers asked for a block's transactions whose answer is no longer needed (the block
    /// came another way, or their superseded rebuild was forgotten): their BLOCKTXN is
    /// dropped, not scored as unasked.
    late: VecDeque<(Hash256, PeerId)>,
}

impl CompactRelay {
    pub fn on_internal(&mut self, event: &Internal, out: &mut Outbox) {
        match *event {
            Internal::PeerConnected {
                peer, conn_type, ..
            } => {
                self.peers.insert(
                    peer,
                    CmpctPeer {
                        outbound: matches!(conn_type, ConnType::Outbound | ConnType::Manual),
                        supports: false,
                        wants_push: false,
                        disconnecting: false,
                        known: VecDeque::new(),
                    },
                );
                self.counts.insert(peer, CompactCounts::default());
            }
            Internal::PeerNegotiated {
                peer, conn_type, ..
            } if !conn_type.is_short_lived() => {
                // Low-bandwidth at first: it announces with HEADERS until it proves fast.
                out.send(
                    peer,
                    Message::SendCmpct(SendCmpct {
                        high_bandwidth: false,
                        version: COMPACT_VERSION,
                    }),
                );
            }
            Internal::PeerDisconnecting { peer } => {
                if let Some(p) = self.peers.get_mut(&peer) {
                    p.disconnecting = true;
                }
                self.forget(peer);
            }
            Internal::PeerGone { peer, .. } => {
                self.forget(peer);
                self.peers.remove(&peer);
                self.counts.remove(&peer);
            }
            Internal::BlockStored { hash } | Internal::BlockInvalid { hash } => {
                if let Some(done) = self.pending.remove(&hash) {
                    self.retire(hash, done);
                }
                while let Some(at) = self.superseded.iter().position(|(h, _)| *h == hash) {
                    let (_, done) = self.superseded.remove(at).expect("found");
                    self.retire(hash, done);
                }
            }
            _ => {}
        }
    }

    /// A peer gone takes its rebuilds with it (the download releases its requests, so the
    /// blocks are fetched elsewhere) and its high-bandwidth slot.
    fn forget(&mut self, peer: PeerId) {
        self.pending.retain(|_, p| p.peer() != peer);
        self.superseded.retain(|(_, p)| p.peer() != peer);
        self.late.retain(|(_, p)| *p != peer);
        self.high_bandwidth.retain(|p| *p != peer);
    }

    pub fn counts_of(&self, peer: PeerId) -> CompactCounts {
        self.counts.get(&peer).copied().unwrap_or_default()
    }

    /// Whether the peer takes compact blocks (sent SENDCMPCT with our version).
    pub fn takes_compact(&self, peer: PeerId) -> bool {
        self.peers.get(&peer).is_some_and(|p| p.supports)
    }

    /// GETDATA of a compact block: served (by the shell, from what it keeps or the store)
    /// when the block is recent and held; false otherwise (the caller serves it whole or
    /// not at all).
    pub fn serve_compact(
        &mut self,
        peer: PeerId,
        hash: Hash256,
        tree: &HeaderTree,
        rng: &mut impl Rng,
        out: &mut Outbox,
    ) -> bool {
        let recent = tree
            .height_of(&hash)
            .is_some_and(|h| h + MAX_BLOCKTXN_DEPTH >= tree.active_height());
        if !recent || !(tree.has_body(&hash) || self.pushed.contains(&hash)) {
            return false;
        }
        self.peer_knows(peer, hash);
        if let Some(c) = self.counts.get_mut(&peer) {
            c.cmpct_sent += 1;
        }
        out.push(Output::ServeCompact {
            peer,
            hash,
            nonce: rng.gen(),
        });
        true
    }

    /// Whether the block was pushed as a compact block lately (the shell keeps it at hand
    /// until stored, for GETBLOCKTXN and GETDATA).
    pub fn was_pushed(&self, hash: &Hash256) -> bool {
        self.pushed.contains(hash)
    }

    /// Whether the block is being rebuilt from a compact block.
    pub fn is_pending(&self, hash: &Hash256) -> bool {
        self.pending.contains_key(hash)
    }

    /// Whether `peer`'s compact block may take a block's fetch over from `asked_of`, the
    /// peer it is asked of (rebuilt from its compact block, or downloaded): `peer` is one we
    /// chose (outbound) and `asked_of` one that chose us (inbound). An inbound peer that
    /// pushes a new block first and then never answers (a BLOCKTXN, a BLOCK) would otherwise
    /// hold it for the download's stall timeout (10 s or more) while the peers we chose
    /// offer it. Outbound never gives way to outbound, so a block changes hands once at most.
    pub fn may_take_over(&self, peer: PeerId, asked_of: Option<PeerId>) -> bool {
        let outbound = |p: PeerId| self.peers.get(&p).is_some_and(|c| c.outbound);
        asked_of.is_some_and(|from| from != peer && !outbound(from)) && outbound(peer)
    }

    /// SENDCMPCT: whether it takes compact blocks and wants them pushed. Until a block shows
    /// who is fast, outbound peers (chosen by us, so not an attacker's pick) fill the
    /// high-bandwidth slots.
    pub fn on_send_cmpct(&mut self, peer: PeerId, msg: SendCmpct, out: &mut Outbox) {
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        if msg.version != COMPACT_VERSION {
            return; // another version: not spoken, not an offence
        }
        p.supports = true;
        p.wants_push = msg.high_bandwidth;
        if p.outbound && self.high_bandwidth.len() < MAX_HIGH_BANDWIDTH {
            self.make_high_bandwidth(peer, out);
        }
    }

    /// The peer delivered the block that became our tip first: it goes to the front of the
    /// high-bandwidth peers (asked to push if it was not), the last one past the limit is
    /// told to only announce.
    pub fn delivered_first(&mut self, peer: PeerId, out: &mut Outbox) {
        let eligible = self
            .peers
            .get(&peer)
            .is_some_and(|p| p.supports && !p.disconnecting);
        if eligible && self.high_bandwidth.front() != Some(&peer) {
            self.make_high_bandwidth(peer, out);
        }
    }

    fn make_high_bandwidth(&mut self, peer: PeerId, out: &mut Outbox) {
        let already = self.high_bandwidth.contains(&peer);
        self.high_bandwidth.retain(|p| *p != peer);
        self.high_bandwidth.push_front(peer);
        if !already {
            out.send(
                peer,
                Message::SendCmpct(SendCmpct {
                    high_bandwidth: true,
                    version: COMPACT_VERSION,
                }),
            );
        }
        while self.high_bandwidth.len() > MAX_HIGH_BANDWIDTH {
            let dropped = self
                .high_bandwidth
                .remove(self.slot_to_free())
                .expect("in range");
            out.send(
                dropped,
                Message::SendCmpct(SendCmpct {
                    high_bandwidth: false,
                    version: COMPACT_VERSION,
                }),
            );
        }
    }

    /// Which high-bandwidth slot gives way to a newcomer: the oldest, unless that is the
    /// only outbound peer among them; then the oldest inbound one after the front (as
    /// Bitcoin Core does): inbound peers that race to deliver first, an attacker's among
    /// them, never take all the slots from the peers we chose.
    fn slot_to_free(&self) -> usize {
        let outbound = |id: &PeerId| self.peers.get(id).is_some_and(|p| p.outbound);
        let last = self.high_bandwidth.len() - 1;
        let outbound_held = self.high_bandwidth.iter().filter(|id| outbound(id)).count();
        if outbound(&self.high_bandwidth[last]) && outbound_held == 1 {
            (1..last)
                .rev()
                .find(|&i| !outbound(&self.high_bandwidth[i]))
                .unwrap_or(last)
        } else {
            last
        }
    }

    /// Peers that asked for pushes and do not have `hash`, except `from`.
    fn push_targets(&mut self, hash: Hash256, from: Option<PeerId>) -> Vec<PeerId> {
        if self.pushed.contains(&hash) {
            return Vec::new();
        }
        let mut targets = Vec::new();
        for (id, p) in &mut self.peers {
            if p.supports && p.wants_push && !p.disconnecting && Some(*id) != from {
                if p.known.contains(&hash) {
                    continue;
                }
                p.knows(hash);
                targets.push(*id);
            }
        }
        targets
    }

    fn pushed(&mut self, hash: Hash256, targets: &[PeerId]) {
        if self.pushed.len() >= KEPT_PUSHED {
            self.pushed.pop_front();
        }
        self.pushed.push_back(hash);
        for peer in targets {
            if let Some(c) = self.counts.get_mut(peer) {
                c.cmpct_sent += 1;
            }
        }
    }

    /// A block about to go to the chain whose header and proof of work passed, that would
    /// become our tip on a parent we have stored: pushed at once to the peers that asked for
    /// pushes, so that validation at the next hop overlaps ours.
    ///
    /// `from` is the peer that delivered it (none for a block submitted here); `block` makes
    /// the shared copy only if it goes anywhere.
    pub fn push_early(
        &mut self,
        from: Option<PeerId>,
        header: &Header,
        block: impl FnOnce() -> Arc<Block>,
        tree: &HeaderTree,
        rng: &mut impl Rng,
        out: &mut Outbox,
    ) {
        let hash = header.hash();
        let new_tip = tree.work_of(&hash).is_some_and(|w| w > tree.active_work())
            && tree.has_body(&header.prev_hash);
        if new_tip {
            self.push_block(from, hash, block, rng, out);
        }
    }

    /// Pushes `hash` (a block known to make a new tip on a stored parent) to the peers that
    /// asked for pushes and do not have it, except `from`, once.
    pub fn push_block(
        &mut self,
        from: Option<PeerId>,
        hash: Hash256,
        block: impl FnOnce() -> Arc<Block>,
        rng: &mut impl Rng,
        out: &mut Outbox,
    ) {
        let targets = self.push_targets(hash, from);
        if !targets.is_empty() {
            self.pushed(hash, &targets);
            out.push(Output::SendCompact {
                peers: targets,
                hash,
                block: Some(block()),
                nonce: rng.gen(),
            });
        }
    }

    /// Our tip moved to a block not pushed yet (mined here, or downloaded in full): pushed
    /// to the peers that asked, read from the store by the shell. Returns whom it went to,
    /// so the header announcement skips them. Not during a sync or a reorg of several
    /// blocks: those are announced as usual.
    pub fn push_tip(
        &mut self,
        tree: &HeaderTree,
        now: crate::time::Now,
        rng: &mut impl Rng,
        out: &mut Outbox,
    ) -> Vec<PeerId> {
        if !super::syncmgr::tip_is_news(tree, now) {
            return Vec::new();
        }
        let tip = tree.active_tip();
        let targets = self.push_targets(tip, None);
        if !targets.is_empty() {
            self.pushed(tip, &targets);
            out.push(Output::SendCompact {
                peers: targets.clone(),
                hash: tip,
                block: None,
                nonce: rng.gen(),
            });
        }
        targets
    }

    /// The peer sent or announced this block.
    pub fn peer_knows(&mut self, peer: PeerId, hash: Hash256) {
        if let Some(p) = self.peers.get_mut(&peer) {
            p.knows(hash);
        }
    }

    /// CMPCTBLOCK whose header the coordinator has taken into the tree (`wanted`: it would
    /// become our tip on a parent we hold, and nobody is fetching it): handed to the shell
    /// to rebuild. A structurally impossible one costs the sender its connection.
    pub fn on_cmpct_block(
        &mut self,
        peer: PeerId,
        compact: Box<CompactBlock>,
        wanted: bool,
        out: &mut Outbox,
    ) {
        let hash = compact.header.hash();
        if let Some(c) = self.counts.get_mut(&peer) {
            c.cmpct_received += 1;
        }
        self.peer_knows(peer, hash);
        if !is_well_formed(&compact) {
            out.misbehaved_and_disconnect(peer, Misbehaviour::InvalidCompactBlock);
            return;
        }
        if !wanted {
            return;
        }
        match self.pending.get(&hash).map(Pending::peer) {
            Some(from) if from == peer => return,
            // Wanted while another peer's rebuild is pending: the coordinator let this
            // peer take over (`may_take_over`).
            Some(from) => {
                tracing::debug!(peer, from, %hash, "compact block taken over");
                let old = self.pending.remove(&hash).expect("looked up");
                if self.superseded.len() >= MAX_PENDING {
                    let (h, oldest) = self.superseded.pop_front().expect("full");
                    self.retire(h, oldest);
                }
                self.superseded.push_back((hash, old));
            }
            None => {}
        }
        if self.pending.len() >= MAX_PENDING {
            // Too many rebuilds at once: the whole block, from the same peer.
            out.internal(Internal::BlockRequested { peer, hash });
            out.get_data(peer, InvKind::Block, &[hash]);
            return;
        }
        self.pending.insert(
            hash,
            Pending::Rebuilding {
                peer,
                header: compact.header,
            },
        );
        out.internal(Internal::BlockRequested { peer, hash });
        out.push(Output::Reconstruct { peer, compact });
    }

    /// The shell's rebuild: a whole block goes back to the coordinator to submit; missing
    /// transactions are asked for; an ambiguous one is fetched in full from the same peer.
    pub fn reconstructed(
        &mut self,
        peer: PeerId,
        hash: Hash256,
        result: Reconstruction,
        out: &mut Outbox,
    ) -> Option<Box<Block>> {
        let header = match self.pending.get(&hash) {
            Some(Pending::Rebuilding { peer: from, header }) if *from == peer => *header,
            // Taken over meanwhile: still good if it needs nothing more.
            _ => return self.superseded_rebuilt(peer, hash, result),
        };
        let outcome = match &result {
            Reconstruction::Complete(_) => "complete",
            Reconstruction::Partial { .. } => "transactions missing",
            Reconstruction::Ambiguous => "ambiguous",
        };
        tracing::debug!(peer, %hash, outcome, "compact block rebuilt");
        match result {
            Reconstruction::Complete(block) => {
                self.pending.remove(&hash);
                if let Some(c) = self.counts.get_mut(&peer) {
                    c.cmpct_rebuilt += 1;
                }
                self.note_rebuilt(hash, peer);
                Some(block)
            }
            Reconstruction::Partial { slots, missing } => {
                if let Some(c) = self.counts.get_mut(&peer) {
                    c.blocktxn_requested += 1;
                }
                out.send(
                    peer,
                    Message::GetBlockTxn(GetBlockTxn {
                        block_hash: hash,
                        indexes: BoundedVec::truncating(missing.clone()),
                    }),
                );
                self.pending.insert(
                    hash,
                    Pending::AwaitingTxn {
                        peer,
                        header,
                        slots,
                        missing,
                    },
                );
                None
            }
            Reconstruction::Ambiguous => {
                self.pending.remove(&hash);
                // Still counted in flight from this peer by the download.
                out.get_data(peer, InvKind::Block, &[hash]);
                None
            }
        }
    }

    /// A rebuild that was taken over, finished by the shell: the block if it is whole (then
    /// the first to arrive), otherwise nothing (the peer that took over is asked).
    fn superseded_rebuilt(
        &mut self,
        peer: PeerId,
        hash: Hash256,
        result: Reconstruction,
    ) -> Option<Box<Block>> {
        let at = self.superseded.iter().position(|(h, p)| {
            *h == hash && matches!(p, Pending::Rebuilding { peer: from, .. } if *from == peer)
        })?;
        self.superseded.remove(at);
        match result {
            Reconstruction::Complete(block) => {
                if let Some(c) = self.counts.get_mut(&peer) {
                    c.cmpct_rebuilt += 1;
                }
                self.note_rebuilt(hash, peer);
                Some(block)
            }
            _ => None,
        }
    }

    /// A rebuild that ends without its answer: a peer already asked for transactions is
    /// remembered, so that its answer, when it comes, is dropped rather than scored.
    fn retire(&mut self, hash: Hash256, done: Pending) {
        if let Pending::AwaitingTxn { peer, .. } = done {
            if self.late.len() >= MAX_RECENT {
                self.late.pop_front();
            }
            self.late.push_back((hash, peer));
        }
    }

    /// BLOCKTXN: the missing transactions, in the order asked. Unasked ones cost a little;
    /// a wrong count costs the connection (the download then fetches the block elsewhere).
    /// The answer of a peer whose rebuild was taken over is still taken if it comes first.
    pub fn on_block_txn(
        &mut self,
        peer: PeerId,
        msg: BlockTxn,
        out: &mut Outbox,
    ) -> Option<Box<Block>> {
        let hash = msg.block_hash;
        let awaited =
            |p: &Pending| matches!(p, Pending::AwaitingTxn { peer: from, .. } if *from == peer);
        let waiting = if self.pending.get(&hash).is_some_and(awaited) {
            self.pending.remove(&hash)
        } else if let Some(at) = self
            .superseded
            .iter()
            .position(|(h, p)| *h == hash && awaited(p))
        {
            self.superseded.remove(at).map(|(_, p)| p)
        } else {
            None
        };
        let Some(Pending::AwaitingTxn {
            header,
            mut slots,
            missing,
            ..
        }) = waiting
        else {
            match self.late.iter().position(|&(h, p)| h == hash && p == peer) {
                // Asked, and the block came another way meanwhile: late, not unasked.
                Some(at) => {
                    self.late.remove(at);
                }
                None => out.misbehaved(peer, Misbehaviour::Unrequested),
            }
            return None;
        };
        let txs = msg.txs.into_inner();
        if txs.len() != missing.len() {
            out.misbehaved_and_disconnect(peer, Misbehaviour::InvalidCompactBlock);
            return None;
        }
        for (index, tx) in missing.into_iter().zip(txs) {
            if let Some(slot) = slots.get_mut(index as usize) {
                *slot = Some(tx);
            }
        }
        self.note_rebuilt(hash, peer);
        Some(Box::new(Block {
            header,
            transactions: BoundedVec::truncating(slots.into_iter().flatten().collect()),
        }))
    }

    /// NOTFOUND: the peer cannot finish the blocks it was rebuilding for us (a GETBLOCKTXN
    /// it does not answer, or a block it does not have): their rebuilds end with the
    /// download's requests, which NOTFOUND frees too. A rebuild left pending would keep out
    /// every other peer's compact block of it, and the download's own fetch of it, for as
    /// long as the peer stays connected.
    pub fn on_not_found(&mut self, peer: PeerId, items: &InvList) {
        for item in items.as_slice() {
            if matches!(item.kind, InvKind::Block | InvKind::CompactBlock) {
                if self.pending.get(&item.hash).map(Pending::peer) == Some(peer) {
                    self.pending.remove(&item.hash);
                }
                self.superseded
                    .retain(|(h, p)| *h != item.hash || p.peer() != peer);
            }
        }
    }

    fn note_rebuilt(&mut self, hash: Hash256, peer: PeerId) {
        if self.rebuilt.len() >= MAX_RECENT {
            self.rebuilt.pop_front();
        }
        self.rebuilt.push_back((hash, peer));
    }

    /// Whether the chain's answer for this block concerns one rebuilt from `peer`'s compact
    /// block (forgotten once asked): its faults are judged as a relay's, not an author's.
    pub fn take_rebuilt(&mut self, peer: PeerId, hash: Hash256) -> bool {
        match self
            .rebuilt
            .iter()
            .position(|(h, p)| *h == hash && *p == peer)
        {
            Some(at) => {
                self.rebuilt.remove(at);
                true
            }
            None => false,
        }
    }

    /// A rebuilt block's body did not match its header: a short-id collision (or a lie we
    /// cannot tell from one). The full block is fetched from the same peer.
    pub fn refetch(&mut self, peer: PeerId, hash: Hash256, out: &mut Outbox) {
        out.internal(Internal::BlockRequested { peer, hash });
        out.get_data(peer, InvKind::Block, &[hash]);
    }

    /// GETBLOCKTXN: answered by the shell for a recent block we hold or pushed; anything
    /// else is not found.
    pub fn on_get_block_txn(
        &mut self,
        peer: PeerId,
        request: GetBlockTxn,
        tree: &HeaderTree,
        out: &mut Outbox,
    ) {
        let hash = request.block_hash;
        // A block pushed is recent (the last `KEPT_PUSHED`) and held by the shell, even before
        // its header is in the tree (one submitted here is pushed while the chain connects it).
        let stored_recent = tree.has_body(&hash)
            && tree
                .height_of(&hash)
                .is_some_and(|h| h + MAX_BLOCKTXN_DEPTH >= tree.active_height());
        if stored_recent || self.pushed.contains(&hash) {
            out.push(Output::ServeBlockTxn { peer, request });
        } else {
            out.not_found(
                peer,
                crate::wire::message::inv_list(InvKind::Block, &[hash]),
            );
        }
    }
}

/// A compact block that could be some block: prefilled indexes strictly ascending, the
/// coinbase at 0 among them, every index within the count, the count within a block's.
fn is_well_formed(compact: &CompactBlock) -> bool {
    let total = compact.short_ids.len() + compact.prefilled.len();
    if total > crate::types::block::MAX_BLOCK_TXS {
        return false;
    }
    let prefilled = compact.prefilled.as_slice();
    if !prefilled
        .first()
        .is_some_and(|p| p.index == 0 && p.tx.is_coinbase())
    {
        return false;
    }
    prefilled.windows(2).all(|w| w[0].index < w[1].index)
        && prefilled.iter().all(|p| (p.index as usize) < total)
}

/// Rebuilds a compact block from candidate transactions (the mempool's): offer each
/// candidate's txid, and the transaction if it is wanted; `finish` says what came of it.
/// Used by the shells; pure.
pub struct Filler {
    header: Header,
    key: ShortIdKey,
    slots: Vec<Option<Transaction>>,
    /// Which txid filled each slot, to tell a second candidate with the same short id.
    filled_by: Vec<Option<Hash256>>,
    /// Short id → the slot it stands for.
    positions: HashMap<ShortId, u32>,
    /// Slots two candidates claimed: asked for with GETBLOCKTXN instead.
    collided: Vec<bool>,
    ambiguous: bool,
}

impl Filler {
    /// The compact block must be well formed (the core checked it before handing it over).
    pub fn new(compact: &CompactBlock) -> Filler {
        let total = compact.short_ids.len() + compact.prefilled.len();
        let mut slots: Vec<Option<Transaction>> = vec![None; total];
        let mut ambiguous = false;
        for p in compact.prefilled.as_slice() {
            match slots.get_mut(p.index as usize) {
                Some(slot) => *slot = Some(p.tx.clone()),
                None => ambiguous = true,
            }
        }
        let mut positions = HashMap::with_capacity(compact.short_ids.len());
        let mut free = (0..total as u32).filter(|i| slots[*i as usize].is_none());
        for id in compact.short_ids.as_slice() {
            match free.next() {
                Some(index) => {
                    if positions.insert(*id, index).is_some() {
                        ambiguous = true; // the same short id twice in one block
                    }
                }
                None => ambiguous = true,
            }
        }
        Filler {
            header: compact.header,
            key: ShortIdKey::new(&compact.header, compact.nonce),
            filled_by: vec![None; total],
            collided: vec![false; total],
            slots,
            positions,
            ambiguous,
        }
    }

    /// Offers a candidate: `tx` is called only when its short id stands for a slot.
    pub fn offer(&mut self, txid: &Hash256, tx: impl FnOnce() -> Transaction) {
        let Some(&index) = self.positions.get(&self.key.short_id(txid)) else {
            return;
        };
        let i = index as usize;
        if self.collided[i] {
            return;
        }
        match self.filled_by[i] {
            None => {
                self.filled_by[i] = Some(*txid);
                self.slots[i] = Some(tx());
            }
            Some(other) if other == *txid => {}
            Some(_) => {
                // Two candidates for one slot: ask the sender which.
                self.collided[i] = true;
                self.slots[i] = None;
            }
        }
    }

    /// The txids of the candidates placed, by position (None where nothing was placed, or
    /// the transaction was prefilled): they need not be hashed again to pass the block on.
    pub fn placed_txids(&self) -> Vec<Option<Hash256>> {
        self.filled_by.clone()
    }

    pub fn finish(self) -> Reconstruction {
        if self.ambiguous {
            return Reconstruction::Ambiguous;
        }
        let missing: Vec<u32> = (0..self.slots.len() as u32)
            .filter(|i| self.slots[*i as usize].is_none())
            .collect();
        if missing.is_empty() {
            Reconstruction::Complete(Box::new(Block {
                header: self.header,
                transactions: BoundedVec::truncating(self.slots.into_iter().flatten().collect()),
            }))
        } else {
            Reconstruction::Partial {
                slots: self.slots,
                missing,
            }
        }
    }
}

/// The compact form of `block` keyed with `nonce`, coinbase prefilled. `known` may give
/// the txids already known by position (a rebuild's); the others are hashed (every
/// transaction without it: for the shells, off the network task).
pub fn compact_of(
    block: &Block,
    nonce: u64,
    known: Option<&[Option<Hash256>]>,
) -> Option<CompactBlock> {
    let coinbase = block.transactions.as_slice().first()?.clone();
    let known = known.filter(|k| k.len() == block.transactions.len());
    let txids: Vec<Hash256> = block
        .transactions
        .iter()
        .enumerate()
        .map(|(i, tx)| match known.and_then(|k| k[i]) {
            Some(txid) => txid,
            None => tx.txid(),
        })
        .collect();
    Some(CompactBlock::new(block.header, nonce, coinbase, &txids))
}

/// The BLOCKTXN answering `request` from `block`, or None when an index is out of range
/// or the indexes are not ascending.
pub fn block_txn_of(block: &Block, request: &GetBlockTxn) -> Option<BlockTxn> {
    let txs = block.transactions.as_slice();
    let indexes = request.indexes.as_slice();
    if !indexes.windows(2).all(|w| w[0] < w[1]) {
        return None;
    }
    let picked: Option<Vec<Transaction>> = indexes
        .iter()
        .map(|i| txs.get(*i as usize).cloned())
        .collect();
    Some(BlockTxn {
        block_hash: request.block_hash,
        txs: BoundedVec::truncating(picked?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::testkit::TestChainBuilder;
    use crate::params::Network;
    use crate::protocol::bans::Misbehaviour;
    use crate::protocol::io::DisconnectReason;
    use crate::types::{Address, Amount, NodeId, Transfer};

    fn transfer(n: u64) -> Transaction {
        Transaction::Transfer(Transfer {
            from: [n as u8; 32],
            to: Address([2; 20]),
            amount: Amount(n + 1),
            fee: Amount(1),
            nonce: n,
            signature: [0; 64],
        })
    }

    /// A block of a coinbase and `n` transfers, and its compact form.
    fn block_and_compact(n: u64) -> (Block, CompactBlock) {
        let builder = TestChainBuilder::new(Network::Regtest.params());
        let block = builder.block_with((0..n).map(transfer).collect());
        let compact = compact_of(&block, 42, None).unwrap();
        (block, compact)
    }

    fn offer_all(filler: &mut Filler, txs: &[Transaction]) {
        for tx in txs {
            filler.offer(&tx.txid(), || tx.clone());
        }
    }

    #[test]
    fn a_block_whose_transactions_are_all_offered_is_rebuilt_whole() {
        let (block, compact) = block_and_compact(50);
        let mut filler = Filler::new(&compact);
        // The pool holds them in another order, with unrelated ones among them.
        let mut pool: Vec<Transaction> = (1000..1100).map(transfer).collect();
        pool.extend(block.transactions.as_slice()[1..].iter().rev().cloned());
        offer_all(&mut filler, &pool);
        // The txids placed are kept by position (the prefilled coinbase's is not known).
        let placed = filler.placed_txids();
        let txids: Vec<Option<Hash256>> = block
            .transactions
            .iter()
            .enumerate()
            .map(|(i, tx)| (i > 0).then(|| tx.txid()))
            .collect();
        assert_eq!(placed, txids);
        assert_eq!(
            compact_of(&block, 42, Some(&placed)),
            compact_of(&block, 42, None)
        );
        assert_eq!(filler.finish(), Reconstruction::Complete(Box::new(block)));
    }

    #[test]
    fn what_the_pool_lacks_is_listed_by_index_and_a_shared_short_id_is_asked_for() {
        let (block, compact) = block_and_compact(10);
        let txs = &block.transactions.as_slice()[1..];
        let mut filler = Filler::new(&compact);
        offer_all(&mut filler, &txs[..3]);
        offer_all(&mut filler, &txs[4..]);
        match filler.finish() {
            Reconstruction::Partial { slots, missing } => {
                assert_eq!(missing, vec![4], "index 4 is the block's fourth transfer");
                assert!(slots[0].is_some() && slots[4].is_none());
            }
            other => panic!("expected a partial rebuild, got {other:?}"),
        }
        // Two candidates for one slot, as a short-id collision makes them: a stranger's short
        // id is made to name the first transfer's slot. Neither is trusted; it is asked for.
        let mut filler = Filler::new(&compact);
        let key = ShortIdKey::new(&compact.header, compact.nonce);
        let slot_of_first = *filler.positions.get(&key.short_id(&txs[0].txid())).unwrap();
        let stranger = transfer(9_999);
        filler
            .positions
            .insert(key.short_id(&stranger.txid()), slot_of_first);
        offer_all(&mut filler, txs);
        filler.offer(&stranger.txid(), || stranger.clone());
        match filler.finish() {
            Reconstruction::Partial { missing, .. } => assert_eq!(missing, vec![1]),
            other => panic!("expected a partial rebuild, got {other:?}"),
        }
    }

    #[test]
    fn a_compact_block_naming_one_short_id_twice_is_ambiguous() {
        let (_, mut compact) = block_and_compact(3);
        let mut ids = compact.short_ids.clone().into_inner();
        ids[1] = ids[0];
        compact.short_ids = BoundedVec::truncating(ids);
        assert_eq!(Filler::new(&compact).finish(), Reconstruction::Ambiguous);
    }

    #[test]
    fn blocktxn_answers_exactly_the_indexes_asked() {
        let (block, _) = block_and_compact(5);
        let ask = |indexes: Vec<u32>| GetBlockTxn {
            block_hash: block.hash(),
            indexes: BoundedVec::truncating(indexes),
        };
        let txn = block_txn_of(&block, &ask(vec![1, 4])).unwrap();
        assert_eq!(
            txn.txs.as_slice(),
            &[
                block.transactions.as_slice()[1].clone(),
                block.transactions.as_slice()[4].clone()
            ]
        );
        assert!(
            block_txn_of(&block, &ask(vec![6])).is_none(),
            "out of range"
        );
        assert!(
            block_txn_of(&block, &ask(vec![3, 2])).is_none(),
            "not ascending"
        );
    }

    #[test]
    fn malformed_compact_blocks_are_refused() {
        let (_, compact) = block_and_compact(3);
        assert!(is_well_formed(&compact));
        let mut no_coinbase = compact.clone();
        no_coinbase.prefilled = BoundedVec::truncating(vec![]);
        assert!(!is_well_formed(&no_coinbase));
        let mut transfer_first = compact.clone();
        let mut prefilled = transfer_first.prefilled.clone().into_inner();
        prefilled[0].tx = transfer(7);
        transfer_first.prefilled = BoundedVec::truncating(prefilled);
        assert!(
            !is_well_formed(&transfer_first),
            "index 0 holds a transfer, not a coinbase"
        );
        let mut out_of_range = compact.clone();
        let mut prefilled = out_of_range.prefilled.clone().into_inner();
        prefilled.push(PrefilledTxFor::at(9));
        out_of_range.prefilled = BoundedVec::truncating(prefilled);
        assert!(!is_well_formed(&out_of_range));
        let mut unordered = compact;
        let mut prefilled = unordered.prefilled.clone().into_inner();
        prefilled.push(PrefilledTxFor::at(0));
        unordered.prefilled = BoundedVec::truncating(prefilled);
        assert!(!is_well_formed(&unordered));
    }

    struct PrefilledTxFor;
    impl PrefilledTxFor {
        fn at(index: u32) -> crate::wire::compact::PrefilledTx {
            crate::wire::compact::PrefilledTx {
                index,
                tx: transfer(7),
            }
        }
    }

    fn connected(relay: &mut CompactRelay, peer: PeerId, conn_type: ConnType, out: &mut Outbox) {
        let addr = "1.2.3.4:8333".parse().unwrap();
        relay.on_internal(
            &Internal::PeerConnected {
                peer,
                addr,
                node_id: NodeId([peer as u8; 32]),
                conn_type,
            },
            out,
        );
        relay.on_internal(
            &Internal::PeerNegotiated {
                peer,
                addr,
                conn_type,
                seen_as: None,
                height: 0,
                relay: true,
            },
            out,
        );
    }

    /// SENDCMPCT messages sent, as (peer, high_bandwidth).
    fn sendcmpcts(out: &mut Outbox) -> Vec<(PeerId, bool)> {
        out.take_outputs()
            .into_iter()
            .filter_map(|o| match o {
                Output::Send(peer, Message::SendCmpct(m)) => Some((peer, m.high_bandwidth)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_block_pushed_before_its_header_is_in_the_tree_is_served_to_getblocktxn() {
        let mut relay = CompactRelay::default();
        let mut out = Outbox::default();
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(1);
        let tree = HeaderTree::new(Network::Regtest.params());
        connected(&mut relay, 1, ConnType::Inbound, &mut out);
        relay.on_send_cmpct(
            1,
            SendCmpct {
                high_bandwidth: true,
                version: COMPACT_VERSION,
            },
            &mut out,
        );
        out.take_outputs();
        let (block, _) = block_and_compact(3);
        let hash = block.hash();
        let request = GetBlockTxn {
            block_hash: hash,
            indexes: BoundedVec::truncating(vec![1]),
        };
        // Neither stored nor pushed: NOTFOUND.
        relay.on_get_block_txn(1, request.clone(), &tree, &mut out);
        assert!(matches!(
            out.take_outputs()[..],
            [Output::Send(1, Message::NotFound(_))]
        ));
        // Pushed (a block submitted here, its header not in the tree): served.
        let shared = Arc::new(block);
        relay.push_block(None, hash, || shared.clone(), &mut rng, &mut out);
        assert!(matches!(
            out.take_outputs()[..],
            [Output::SendCompact { .. }]
        ));
        relay.on_get_block_txn(1, request, &tree, &mut out);
        assert!(matches!(
            out.take_outputs()[..],
            [Output::ServeBlockTxn { peer: 1, .. }]
        ));
    }

    fn support(relay: &mut CompactRelay, peer: PeerId, out: &mut Outbox) {
        let msg = SendCmpct {
            high_bandwidth: false,
            version: COMPACT_VERSION,
        };
        relay.on_send_cmpct(peer, msg, out);
    }

    #[test]
    fn outbound_peers_fill_the_three_fast_slots_and_the_first_deliverer_takes_the_front() {
        let mut relay = CompactRelay::default();
        let mut out = Outbox::default();
        for peer in 1..=4 {
            connected(&mut relay, peer, ConnType::Outbound, &mut out);
        }
        connected(&mut relay, 5, ConnType::Inbound, &mut out);
        assert_eq!(
            sendcmpcts(&mut out),
            (1..=5).map(|p| (p, false)).collect::<Vec<_>>(),
            "every full peer hears we speak compact blocks, low-bandwidth at first"
        );
        for peer in 1..=5 {
            support(&mut relay, peer, &mut out);
        }
        assert_eq!(sendcmpcts(&mut out), vec![(1, true), (2, true), (3, true)]);
        // The inbound peer delivered a new tip first: it is asked to push, the oldest of
        // the three is told to announce only.
        relay.delivered_first(5, &mut out);
        assert_eq!(sendcmpcts(&mut out), vec![(5, true), (1, false)]);
        assert_eq!(relay.high_bandwidth, VecDeque::from(vec![5, 3, 2]));
        // Already at the front: nothing to say.
        relay.delivered_first(5, &mut out);
        assert!(sendcmpcts(&mut out).is_empty());
        // A departed peer leaves its slot.
        relay.on_internal(&Internal::PeerDisconnecting { peer: 3 }, &mut out);
        assert_eq!(relay.high_bandwidth, VecDeque::from(vec![5, 2]));
    }

    #[test]
    fn inbound_peers_that_deliver_first_never_take_the_last_outbound_fast_slot() {
        let mut relay = CompactRelay::default();
        let mut out = Outbox::default();
        connected(&mut relay, 1, ConnType::Outbound, &mut out);
        for peer in 5..=8 {
            connected(&mut relay, peer, ConnType::Inbound, &mut out);
        }
        for peer in [1, 5, 6, 7, 8] {
            support(&mut relay, peer, &mut out);
        }
        for peer in [5, 6] {
            relay.delivered_first(peer, &mut out);
        }
        sendcmpcts(&mut out);
        assert_eq!(relay.high_bandwidth, VecDeque::from(vec![6, 5, 1]));
        // A third inbound deliverer: the oldest slot is the only outbound peer's, so the
        // oldest inbound one gives way (the old code dropped peer 1).
        relay.delivered_first(7, &mut out);
        assert_eq!(sendcmpcts(&mut out), vec![(7, true), (5, false)]);
        assert_eq!(relay.high_bandwidth, VecDeque::from(vec![7, 6, 1]));
        relay.delivered_first(8, &mut out);
        assert_eq!(relay.high_bandwidth, VecDeque::from(vec![8, 7, 1]));
        // The outbound peer delivering first takes the front; an inbound one goes.
        relay.delivered_first(1, &mut out);
        assert_eq!(relay.high_bandwidth, VecDeque::from(vec![1, 8, 7]));
        // With two outbound peers among them, the oldest goes, whatever it is.
        connected(&mut relay, 2, ConnType::Outbound, &mut out);
        support(&mut relay, 2, &mut out);
        relay.delivered_first(2, &mut out);
        assert_eq!(relay.high_bandwidth, VecDeque::from(vec![2, 1, 8]));
    }

    fn misbehaviour(out: &mut Outbox) -> Vec<(Misbehaviour, bool)> {
        let mut found = Vec::new();
        let mut disconnect = false;
        while let Some(e) = out.next_internal() {
            match e {
                Internal::Misbehaved { what, .. } => found.push(what),
                Internal::DisconnectRequested {
                    reason: DisconnectReason::Misbehaviour(_),
                    ..
                } => disconnect = true,
                _ => {}
            }
        }
        found.into_iter().map(|m| (m, disconnect)).collect()
    }

    #[test]
    fn a_rebuild_short_of_transactions_asks_once_and_a_bogus_answer_costs_the_connection() {
        let (block, compact) = block_and_compact(4);
        let hash = block.hash();
        let mut relay = CompactRelay::default();
        let mut out = Outbox::default();
        connected(&mut relay, 1, ConnType::Outbound, &mut out);
        relay.on_cmpct_block(1, Box::new(compact.clone()), true, &mut out);
        assert!(matches!(
            out.take_outputs().last(),
            Some(Output::Reconstruct { peer: 1, .. })
        ));
        assert!(relay.is_pending(&hash));
        // The pool had all but index 2.
        let mut filler = Filler::new(&compact);
        for (i, tx) in block.transactions.as_slice().iter().enumerate() {
            if i != 2 {
                filler.offer(&tx.txid(), || tx.clone());
            }
        }
        let result = filler.finish();
        assert!(relay.reconstructed(1, hash, result, &mut out).is_none());
        let asked: Vec<Vec<u32>> = out
            .take_outputs()
            .into_iter()
            .filter_map(|o| match o {
                Output::Send(1, Message::GetBlockTxn(r)) => Some(r.indexes.into_inner()),
                _ => None,
            })
            .collect();
        assert_eq!(asked, vec![vec![2]]);
        assert_eq!(relay.counts_of(1).blocktxn_requested, 1);
        // The answer fills the gap: the whole block comes back.
        let answer = BlockTxn {
            block_hash: hash,
            txs: BoundedVec::truncating(vec![block.transactions.as_slice()[2].clone()]),
        };
        let rebuilt = relay.on_block_txn(1, answer.clone(), &mut out).unwrap();
        assert_eq!(*rebuilt, block);
        assert!(relay.take_rebuilt(1, hash));
        // The same BLOCKTXN again: nothing was asked any more.
        assert!(relay.on_block_txn(1, answer, &mut out).is_none());
        assert_eq!(
            misbehaviour(&mut out),
            vec![(Misbehaviour::Unrequested, false)]
        );
        // A BLOCKTXN with the wrong number of transactions: the connection goes.
        let (block, compact) = block_and_compact(6);
        relay.on_cmpct_block(1, Box::new(compact.clone()), true, &mut out);
        let partial = Filler::new(&compact).finish();
        relay.reconstructed(1, block.hash(), partial, &mut out);
        let short = BlockTxn {
            block_hash: block.hash(),
            txs: BoundedVec::truncating(vec![transfer(1)]),
        };
        assert!(relay.on_block_txn(1, short, &mut out).is_none());
        assert_eq!(
            misbehaviour(&mut out),
            vec![(Misbehaviour::InvalidCompactBlock, true)]
        );
    }

    #[test]
    fn an_outbound_peer_takes_over_an_inbound_ones_rebuild_and_the_first_answer_wins() {
        let (block, compact) = block_and_compact(4);
        let hash = block.hash();
        let mut relay = CompactRelay::default();
        let mut out = Outbox::default();
        connected(&mut relay, 1, ConnType::Inbound, &mut out);
        connected(&mut relay, 2, ConnType::Outbound, &mut out);
        connected(&mut relay, 3, ConnType::Inbound, &mut out);
        connected(&mut relay, 4, ConnType::Outbound, &mut out);
        relay.on_cmpct_block(1, Box::new(compact.clone()), true, &mut out);
        relay.reconstructed(1, hash, Filler::new(&compact).finish(), &mut out);
        out.take_outputs();
        while out.next_internal().is_some() {}
        // Only a peer we chose takes over, and only from one that chose us.
        assert!(relay.may_take_over(2, Some(1)));
        assert!(!relay.may_take_over(3, Some(1)));
        assert!(!relay.may_take_over(2, Some(4)));
        assert!(!relay.may_take_over(1, Some(1)) && !relay.may_take_over(2, None));
        relay.on_cmpct_block(2, Box::new(compact.clone()), true, &mut out);
        assert!(matches!(
            out.next_internal(),
            Some(Internal::BlockRequested { peer: 2, .. })
        ));
        assert!(matches!(
            out.take_outputs().last(),
            Some(Output::Reconstruct { peer: 2, .. })
        ));
        relay.reconstructed(2, hash, Filler::new(&compact).finish(), &mut out);
        assert!(matches!(
            out.take_outputs()[..],
            [Output::Send(2, Message::GetBlockTxn(_))]
        ));
        // Both are asked; peer 1 answers first after all: its answer makes the block.
        let answer = BlockTxn {
            block_hash: hash,
            txs: BoundedVec::truncating(block.transactions.as_slice()[1..].to_vec()),
        };
        let rebuilt = relay.on_block_txn(1, answer.clone(), &mut out).unwrap();
        assert_eq!(*rebuilt, block);
        assert!(relay.take_rebuilt(1, hash));
        assert!(misbehaviour(&mut out).is_empty());
        // Stored: peer 2's answer comes late, and is dropped without a score; a second one
        // was never asked for.
        relay.on_internal(&Internal::BlockStored { hash }, &mut out);
        assert!(relay.on_block_txn(2, answer.clone(), &mut out).is_none());
        assert!(misbehaviour(&mut out).is_empty());
        assert!(relay.on_block_txn(2, answer, &mut out).is_none());
        assert_eq!(
            misbehaviour(&mut out),
            vec![(Misbehaviour::Unrequested, false)]
        );
    }

    #[test]
    fn a_notfound_from_the_peer_rebuilding_a_block_ends_its_rebuild() {
        let (block, compact) = block_and_compact(6);
        let hash = block.hash();
        let mut relay = CompactRelay::default();
        let mut out = Outbox::default();
        connected(&mut relay, 2, ConnType::Outbound, &mut out);
        connected(&mut relay, 3, ConnType::Inbound, &mut out);
        relay.on_cmpct_block(2, Box::new(compact.clone()), true, &mut out);
        relay.reconstructed(2, hash, Filler::new(&compact).finish(), &mut out);
        let not_found = crate::wire::message::inv_list(InvKind::Block, &[hash]);
        relay.on_not_found(3, &not_found);
        assert!(relay.is_pending(&hash), "not peer 3's to end");
        relay.on_not_found(2, &not_found);
        assert!(!relay.is_pending(&hash));
    }

    #[test]
    fn a_block_rebuilt_from_the_pool_alone_counts_as_without_a_round_trip() {
        let (block, compact) = block_and_compact(3);
        let mut relay = CompactRelay::default();
        let mut out = Outbox::default();
        connected(&mut relay, 1, ConnType::Inbound, &mut out);
        relay.on_cmpct_block(1, Box::new(compact.clone()), true, &mut out);
        let mut filler = Filler::new(&compact);
        offer_all(&mut filler, block.transactions.as_slice());
        let rebuilt = relay.reconstructed(1, block.hash(), filler.finish(), &mut out);
        assert_eq!(rebuilt.as_deref(), Some(&block));
        let counts = relay.counts_of(1);
        assert_eq!((counts.cmpct_received, counts.cmpct_rebuilt), (1, 1));
        assert_eq!(counts.blocktxn_requested, 0);
        // A malformed one costs the connection at once.
        let mut bad = compact;
        bad.prefilled = BoundedVec::truncating(vec![]);
        relay.on_cmpct_block(1, Box::new(bad), true, &mut out);
        assert!(misbehaviour(&mut out).contains(&(Misbehaviour::InvalidCompactBlock, true)));
    }
}
