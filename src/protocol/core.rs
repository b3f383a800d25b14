//! `Core`: the coordinator of the protocol state machine. It dispatches each `Input` to the
//! manager whose concern it is, fans the `Internal` events managers raise out to every
//! manager, and hands the resulting `Output`s to the shell.
//!
//! Owns the managers, the seeded RNG they all draw from, and the outbox. Makes no protocol
//! decision of its own beyond routing, and never reads a clock or touches a socket: time
//! comes in with each input (`Now`), decisions go out as outputs.
//!
//! Managers, one per concern: `peermgr` (connections, handshake, admission, eviction,
//! dialling), `pingmgr` (liveness), `addrmgr` (address gossip and the book), `scoremgr`
//! (misbehaviour and bans), `syncmgr` (headers-first sync, serving headers, announcements),
//! `blockdl` (block download), `txrelay` (transaction announcements and download), `cmpct`
//! (compact blocks). The header tree (`headers`) is the chain knowledge they share: the
//! coordinator keeps it current from chain inputs and lends it out.

use super::addrman::{AddrInfo, AddrMan};
use super::addrmgr::AddrMgr;
use super::bans::{BanList, Misbehaviour};
use super::blockdl::{accept_pushed_header, BlockDl};
use super::cmpct::{CompactCounts, CompactRelay};
use super::config::CoreConfig;
use super::headers::HeaderTree;
use super::io::{
    Command, CommandError, ConnType, DisconnectReason, Event, Input, Internal, Outbox, Output,
    PeerId, Persist, Wake,
};
use super::peermgr::{AddedNodeSnapshot, PeerMgr, Views};
use super::pingmgr::PingMgr;
use super::scoremgr::ScoreMgr;
use super::syncmgr::SyncMgr;
use super::txrelay::{RelayCounts, TxRelay};
use crate::time::{LocalDuration, LocalTime, Now};
use crate::types::NodeId;
use crate::wire::message::{InvKind, InvList};
use crate::wire::Message;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::net::SocketAddr;
use std::sync::Arc;

/// Blocks served for one GETDATA: what a download window asks of one peer, with room.
pub const MAX_BLOCKS_SERVED: usize = 128;

/// The resolution of every protocol timer: ticks fall on a grid this far apart (from the
/// first input), and only on the grid points where some manager has something due.
pub const TICK_INTERVAL: LocalDuration = LocalDuration::from_secs(1);

/// The longest the core goes without a tick when nothing is due, so the shell always has a
/// next wake-up (a tick with nothing due does nothing).
pub const MAX_TICK_GAP: LocalDuration = LocalDuration::from_secs(60);

/// What getpeerinfo shows of a peer's protocol state.
#[derive(Clone, Debug, serde::Serialize)]
pub struct PeerSnapshot {
    pub id: PeerId,
    pub addr: SocketAddr,
    pub inbound: bool,
    pub connection_type: &'static str,
    pub nodeid: NodeId,
    pub version: u32,
    pub subver: String,
    pub services: u64,
    pub startingheight: u64,
    /// Unix milliseconds.
    pub conntime_ms: u64,
    pub lastrecv_ms: u64,
    pub ping_ms: Option<u64>,
    pub minping_ms: Option<u64>,
    pub banscore: u32,
    pub handshake_complete: bool,
    /// Height of the best header the peer is known to have.
    pub synced_headers: Option<u64>,
    /// Height of the last block the peer is known to share with our active chain.
    pub synced_blocks: Option<u64>,
    /// Heights of the blocks requested from it and not yet received.
    pub inflight: Vec<u64>,
    /// Transactions announced to it, asked of it, received from it.
    pub relay: RelayCounts,
    /// Compact blocks in and out, rebuilt without a round trip.
    pub compact: CompactCounts,
}

pub struct Core {
    cfg: CoreConfig,
    rng: StdRng,
    peers: PeerMgr,
    pings: PingMgr,
    addrs: AddrMgr,
    scores: ScoreMgr,
    sync: SyncMgr,
    blocks: BlockDl,
    relay: TxRelay,
    /// The transaction relay's own RNG (trickle times), so relay leaves every other random
    /// choice as it was.
    relay_rng: StdRng,
    compact: CompactRelay,
    /// The compact block manager's own RNG (short-id nonces).
    compact_rng: StdRng,
    tree: HeaderTree,
    out: Outbox,
    /// The tick last asked for, so each is asked for once.
    timer: Option<LocalTime>,
    /// When each manager next has something due, as of the last input that could have
    /// brought it forward.
    wakes: Wakes,
    /// The next point of the tick grid (`TICK_INTERVAL` apart); an announcement batch may
    /// be due before it.
    full_tick: Option<LocalTime>,
    /// A peer left while the header tree was full: its unclaimed headers are to be
    /// forgotten (`forget_unclaimed_headers`), at most once a `FORGET_UNCLAIMED_INTERVAL`.
    forget_pending: bool,
    /// When a full header tree last forgot unclaimed headers (a walk of the whole tree).
    last_forget: Option<LocalTime>,
}

/// A full header tree forgets unclaimed headers at most this often: the walk is of the
/// whole tree, and peers can come and go many times a second.
const FORGET_UNCLAIMED_INTERVAL: LocalDuration = LocalDuration::from_secs(10);

/// Mixed into the seed for the pre-sync salt's own generator ("presync" in ASCII).
const PRESYNC_SALT_DOMAIN: u64 = 0x0070_7265_7379_6e63;
/// Mixed into the seed for the relay manager's generator ("txrelay").
const RELAY_RNG_DOMAIN: u64 = 0x0074_7872_656c_6179;
/// Mixed into the seed for the compact block manager's generator ("cmpct").
const COMPACT_RNG_DOMAIN: u64 = 0x0000_0063_6d70_6374;

/// Each ticking manager's wake (`Wake`), kept between inputs, and which of them an input may
/// have brought forward (`stale`: asked again before the next timer is set). A tick runs only
/// the managers whose wake has come.
#[derive(Clone, Copy, Debug)]
struct Wakes {
    each: [Wake; Wakes::COUNT],
    /// One bit per manager (`Wakes::bit`).
    stale: u8,
}

impl Wakes {
    const PEERS: usize = 0;
    const PINGS: usize = 1;
    const ADDRS: usize = 2;
    const SCORES: usize = 3;
    const SYNC: usize = 4;
    const BLOCKS: usize = 5;
    const RELAY: usize = 6;
    const COUNT: usize = 7;
    const ALL: u8 = (1 << Wakes::COUNT) - 1;

    fn new() -> Wakes {
        Wakes {
            each: [Wake::NEVER; Wakes::COUNT],
            stale: Wakes::ALL,
        }
    }

    const fn bit(manager: usize) -> u8 {
        1 << manager
    }

    fn earliest(&self) -> Wake {
        let mut wake = Wake::NEVER;
        for w in self.each {
            wake.merge(w);
        }
        wake
    }

    /// `managers` and those whose wake reads what their ticks may change: the peer and
    /// address managers share the address book, the sync and block download managers the
    /// header tree.
    fn with_shared_state(managers: u8) -> u8 {
        let mut bits = managers;
        for pair in [
            Wakes::bit(Wakes::PEERS) | Wakes::bit(Wakes::ADDRS),
            Wakes::bit(Wakes::SYNC) | Wakes::bit(Wakes::BLOCKS),
        ] {
            if managers & pair != 0 {
                bits |= pair;
            }
        }
        bits
    }

    /// The managers with something due at `t` (or whose wake is stale: not known to be
    /// later).
    fn due(&self, t: LocalTime) -> u8 {
        (0..Wakes::COUNT)
            .filter(|&m| self.each[m].time().is_some_and(|w| w <= t))
            .fold(self.stale, |bits, m| bits | Wakes::bit(m))
    }
}

impl Core {
    pub fn new(cfg: CoreConfig, addrman: AddrMan, bans: BanList) -> Core {
        let tree = HeaderTree::new(cfg.network.params());
        // The pre-sync salt is derived from the seed rather than drawn from the RNG, so it
        // leaves every other random choice as it was.
        let salt = StdRng::seed_from_u64(cfg.rng_seed ^ PRESYNC_SALT_DOMAIN).gen();
        let relay_rng = StdRng::seed_from_u64(cfg.rng_seed ^ RELAY_RNG_DOMAIN);
        let compact_rng = StdRng::seed_from_u64(cfg.rng_seed ^ COMPACT_RNG_DOMAIN);
        Core {
            sync: SyncMgr::new(salt, cfg.minimum_chain_work),
            rng: StdRng::seed_from_u64(cfg.rng_seed),
            addrs: AddrMgr::new(addrman.with_local_groups(cfg.allow_local_addrs)),
            cfg,
            peers: PeerMgr::new(),
            pings: PingMgr::default(),
            scores: ScoreMgr::new(bans),
            blocks: BlockDl::default(),
            relay: TxRelay::default(),
            relay_rng,
            compact: CompactRelay::default(),
            compact_rng,
            tree,
            out: Outbox::default(),
            timer: None,
            wakes: Wakes::new(),
            full_tick: None,
            forget_pending: false,
            last_forget: None,
        }
    }

    /// The core with the chain's headers (`HeaderTree::load`), instead of genesis only.
    pub fn with_headers(mut self, tree: HeaderTree) -> Core {
        let tip = Internal::TipChanged {
            height: tree.active_height(),
            hash: tree.active_tip(),
        };
        self.tree = tree;
        self.peers.on_internal(&tip);
        self
    }

    pub fn headers(&self) -> &HeaderTree {
        &self.tree
    }

    /// Takes the outputs produced since the last call.
    pub fn drain_outputs(&mut self) -> Vec<Output> {
        self.out.take_outputs()
    }

    /// Starts loading the state every input touches first (a hint, no effect on behaviour):
    /// a simulator running a thousand cores calls it for the next input's core while it
    /// handles the current one's.
    pub fn prefetch(&self) {
        use super::fpindex::prefetch;
        prefetch(&self.wakes);
        prefetch(&self.peers);
        prefetch(&self.pings);
        prefetch(&self.out);
    }

    /// The second step of `prefetch`, once the state it loaded is in cache: the peer tables
    /// every received message looks its sender up in.
    pub fn prefetch_tables(&self) {
        self.peers.prefetch();
        self.pings.prefetch();
    }

    /// `drain_outputs` into a buffer the caller keeps (a simulator feeding millions of inputs
    /// allocates no vector per input).
    pub fn drain_outputs_into(&mut self, into: &mut Vec<Output>) {
        self.out.move_outputs_into(into);
    }

    /// Feeds one input at `now`. Only commands can fail; their result is returned.
    pub fn handle(&mut self, now: Now, input: Input) -> Result<(), CommandError> {
        let (joined, ponged) = match input {
            Input::Connected { peer, .. } => (Some(peer), None),
            Input::Received {
                peer,
                message: Message::Pong(_),
            } => (None, Some(peer)),
            _ => (None, None),
        };
        // Which managers' wakes the input may bring forward (an internal event it raises
        // makes them all stale, in `fan_out`). A PING (a sign of life, a PONG sent), an ADDR
        // or a GETADDR only put deadlines later or add tried-table collisions (checked in
        // `set_timer`); a PONG moves only its peer's next ping forward (merged below); a
        // tick, the managers it ran (`dispatch`).
        self.wakes.stale |= match &input {
            Input::Received {
                message: Message::Ping(_) | Message::Pong(_) | Message::Addr(_) | Message::GetAddr,
                ..
            }
            | Input::Tick => 0,
            _ => Wakes::ALL,
        };
        let result = self.dispatch(now, input);
        if let Some(peer) = ponged {
            let wake = self.pings.peer_wake(peer, &self.cfg);
            self.wakes.each[Wakes::PINGS].merge(wake);
        }
        self.fan_out(now);
        if self.forget_pending
            && self
                .last_forget
                .is_none_or(|at| now.local.since(at) >= FORGET_UNCLAIMED_INTERVAL)
        {
            self.forget_pending = false;
            self.last_forget = Some(now.local);
            self.forget_unclaimed_headers();
        }
        // Whatever happened, the download window is topped up.
        let before = self.out.pending_outputs();
        let compact = |peer| self.compact.takes_compact(peer);
        self.blocks
            .request(&self.tree, &compact, now, &mut self.out);
        if self.out.pending_outputs() != before {
            self.wakes.stale = Wakes::ALL;
        }
        if let Some(peer) = joined {
            self.announce_if_kept(peer);
        }
        self.scores.persist_changes(&mut self.out);
        self.set_timer(now);
        result
    }

    /// Asks for the tick at the first grid point where a manager has something due (or an
    /// announcement batch, off the grid). Every tick runs every manager, so a tick lands on
    /// the same grid point, and does the same, as with a tick at every point: the points
    /// skipped are those where every manager would have done nothing.
    fn set_timer(&mut self, now: Now) {
        let t = now.local;
        let step = TICK_INTERVAL.as_millis();
        let grid = match self.full_tick {
            Some(f) if f > t => f,
            // The grid points passed without a tick: the next one after `t`.
            Some(f) => f + TICK_INTERVAL.saturating_mul(t.since(f).as_millis() / step + 1),
            None => t + TICK_INTERVAL,
        };
        self.full_tick = Some(grid);
        self.refresh_wakes(t);
        if self.addrs.book().has_collisions() {
            self.wakes.each[Wakes::ADDRS].at(t);
        }
        let mut wake = self.wakes.earliest();
        wake.at(t + MAX_TICK_GAP);
        let due = wake.time().expect("bounded by the gap");
        let mut next = if due <= grid {
            grid
        } else {
            grid + TICK_INTERVAL.saturating_mul(due.since(grid).as_millis().div_ceil(step))
        };
        if let Some(due) = self.relay.next_due() {
            next = next.min(due.max(t));
        }
        if self.timer != Some(next) || next <= t {
            self.timer = Some(next);
            self.out.push(Output::SetTimer(next));
        }
    }

    /// Asks the managers whose wakes are stale when their tick next has something to do.
    fn refresh_wakes(&mut self, t: LocalTime) {
        let stale = std::mem::take(&mut self.wakes.stale);
        let asked = |m: usize| stale & Wakes::bit(m) != 0;
        let each = &mut self.wakes.each;
        if asked(Wakes::PEERS) {
            each[Wakes::PEERS] = self.peers.next_wake(&self.cfg, self.addrs.book(), t);
        }
        if asked(Wakes::PINGS) {
            each[Wakes::PINGS] = self.pings.next_wake(&self.cfg);
        }
        if asked(Wakes::ADDRS) {
            each[Wakes::ADDRS] = self.addrs.next_wake(t);
        }
        if asked(Wakes::SCORES) {
            each[Wakes::SCORES] = self.scores.next_wake(t);
        }
        if asked(Wakes::SYNC) {
            each[Wakes::SYNC] = self.sync.next_wake(&self.tree, t);
        }
        if asked(Wakes::BLOCKS) {
            each[Wakes::BLOCKS] = self.blocks.next_wake(t);
        }
        if asked(Wakes::RELAY) {
            each[Wakes::RELAY] = self.relay.next_wake(t);
        }
    }

    fn dispatch(&mut self, now: Now, input: Input) -> Result<(), CommandError> {
        let input = match input {
            Input::Received { peer, message } => {
                self.received(peer, message, now);
                return Ok(());
            }
            Input::Command(command) => return self.command(command, now),
            Input::Reconstructed { peer, hash, result } => {
                let rebuilt = self
                    .compact
                    .reconstructed(peer, hash, result, &mut self.out);
                if let Some(block) = rebuilt {
                    self.rebuilt_block(peer, block, now);
                }
                return Ok(());
            }
            Input::BlockProcessed { peer, hash, result } => {
                self.block_processed(peer, hash, result);
                return Ok(());
            }
            Input::BlockChecked { block } => {
                self.checked_block(block, now);
                return Ok(());
            }
            other => other,
        };
        let Core {
            cfg,
            rng,
            peers,
            pings,
            addrs,
            scores,
            sync,
            blocks,
            relay,
            relay_rng,
            tree,
            out,
            wakes,
            ..
        } = self;
        // What the peer manager may look at of the other managers, for this input.
        let banned = |ip, node| scores.is_banned(ip, node, now);
        let min_ping = |peer| pings.stats(peer).min_rtt;
        let views = Views {
            banned: &banned,
            min_ping: &min_ping,
        };
        match input {
            Input::Connected {
                peer,
                addr,
                dial,
                node_id,
            } => {
                let key = addrs.book().key();
                peers.connected(peer, addr, dial, node_id, cfg, &views, &key, now, rng, out);
            }
            Input::Broken { peer, error } => scores.broken(peer, &error, out),
            Input::Disconnected { peer } => peers.disconnected(peer, now.local, out),
            Input::DialFailed { dial } => peers.dial_failed(dial, now.local, out),
            Input::Tick => {
                // Only the managers with something due: by `Wake`'s rule the others' ticks
                // would do nothing. Their wakes are asked again afterwards.
                let t = now.local;
                let due = wakes.due(t);
                if due & Wakes::bit(Wakes::PEERS) != 0 {
                    peers.tick(cfg, &views, addrs.book_mut(), now, rng, out);
                }
                if due & Wakes::bit(Wakes::PINGS) != 0 {
                    pings.tick(cfg, t, rng, out);
                }
                if due & Wakes::bit(Wakes::SCORES) != 0 {
                    scores.tick(now);
                }
                if due & Wakes::bit(Wakes::ADDRS) != 0 {
                    addrs.tick(now, out);
                }
                if due & Wakes::bit(Wakes::SYNC) != 0 {
                    sync.tick(tree, now, out);
                }
                if due & Wakes::bit(Wakes::BLOCKS) != 0 {
                    blocks.tick(tree, now, out);
                }
                if due & Wakes::bit(Wakes::RELAY) != 0 || relay.next_due().is_some_and(|d| d <= t) {
                    relay.tick(now, relay_rng, out);
                    wakes.stale |= Wakes::bit(Wakes::RELAY);
                }
                wakes.stale |= Wakes::with_shared_state(due);
            }
            Input::TxProcessed { peer, txid, result } => {
                relay.processed(peer, txid, &result, now, out)
            }
            Input::TxAccepted {
                txid,
                sender,
                nonce,
            } => relay.accepted(txid, sender, nonce, now.local, relay_rng),
            Input::MempoolContents { peer, txs } => {
                relay.mempool_contents(peer, txs, now.local, relay_rng)
            }
            Input::FuturesExpired { peer, count } => relay.futures_expired(peer, count, out),
            Input::TxsEvicted { txids } => relay.evicted(&txids, now.local),
            Input::Bootstrap { addrs: nodes } => peers.queue_addr_fetches(&nodes, rng),
            Input::Discovered {
                addrs: found,
                source,
            } => {
                let added = addrs.discovered(&found, source, now);
                tracing::debug!(found = found.len(), added, "addresses discovered");
            }
            Input::BlockConnected { header, height } => {
                let hash = header.hash();
                tree.block_stored(&header, height);
                tree.set_active_tip(hash);
                out.internal(Internal::BlockStored { hash });
                out.internal(Internal::TipChanged { height, hash });
            }
            Input::BlockDisconnected { header, height } => {
                tree.set_active_tip(header.prev_hash);
                out.internal(Internal::TipChanged {
                    height: height.saturating_sub(1),
                    hash: tree.active_tip(),
                });
            }
            Input::HeadersReloaded(reloaded) => {
                *tree = *reloaded;
                out.internal(Internal::TipChanged {
                    height: tree.active_height(),
                    hash: tree.active_tip(),
                });
            }
            Input::PersistDeferred(what) => {
                match what {
                    Persist::Bans(changes) => scores.requeue(changes),
                    Persist::Addresses(_) => addrs.requeue(),
                    Persist::LearnedIdentity { peer, .. } => {
                        // Learned again at the next connection to it.
                        tracing::debug!(%peer, "a learned identity was not saved");
                    }
                }
            }
            Input::Stopping => addrs.persist(true, out),
            Input::Received { .. }
            | Input::Command(_)
            | Input::Reconstructed { .. }
            | Input::BlockChecked { .. }
            | Input::BlockProcessed { .. } => unreachable!("dispatched above"),
        }
        Ok(())
    }

    fn command(&mut self, command: Command, now: Now) -> Result<(), CommandError> {
        let out = &mut self.out;
        match command {
            Command::AddNode { spec, learned } => self.peers.add_manual(spec, learned, now, out),
            Command::RemoveNode(spec) => self.peers.remove_manual(&spec, out),
            Command::OneTry(spec) => {
                self.peers.one_try(spec, now.local, out);
                Ok(())
            }
            Command::Disconnect { peer, addr } => self.peers.disconnect_matching(peer, addr, out),
            Command::Ban {
                target,
                duration_ms,
                reason,
            } => {
                let duration = duration_ms.unwrap_or(self.cfg.ban_duration_ms);
                self.scores.ban(target, duration, &reason, now, out);
                Ok(())
            }
            Command::Unban(target) => self.scores.unban(target),
            Command::ClearBans => {
                self.scores.clear();
                Ok(())
            }
            Command::PingAll => {
                self.pings.ping_all(now.local, &mut self.rng, out);
                Ok(())
            }
            Command::SetNetworkActive(active) => {
                self.peers.set_network_active(active, out);
                Ok(())
            }
        }
    }

    /// Routes a message to the manager whose concern it is.
    fn received(&mut self, peer: PeerId, message: Message, now: Now) {
        if !self.peers.is_live(peer) {
            return;
        }
        self.pings.heard_from(peer, now.local);
        let out = &mut self.out;
        let (cfg, rng) = (&self.cfg, &mut self.rng);
        match message {
            Message::Version(v) => self.peers.on_version(peer, *v, cfg, now, rng, out),
            Message::Verack => self.peers.on_verack(peer, out),
            Message::Reject(r) => {
                tracing::debug!(peer, code = r.code, reason = %r.reason, command = %r.message, "peer sent REJECT");
            }
            _ if !self.peers.is_ready(peer) => {
                out.misbehaved_and_disconnect(peer, Misbehaviour::ProtocolOrder)
            }
            Message::Ping(nonce) => self.pings.on_ping(peer, nonce, out),
            Message::Pong(nonce) => self.pings.on_pong(peer, nonce, now.local),
            Message::Addr(list) => self
                .addrs
                .on_addr(peer, list.as_slice(), cfg, now, rng, out),
            Message::GetAddr => self.addrs.on_getaddr(peer, cfg, now, rng, out),
            Message::SendHeaders => self.sync.on_send_headers(peer),
            Message::GetHeaders(request) => {
                self.sync.on_get_headers(peer, &request, &self.tree, out)
            }
            Message::GetBlocks(request) => self.sync.on_get_blocks(peer, &request, &self.tree, out),
            Message::Headers(list) => {
                self.sync
                    .on_headers(peer, list.as_slice(), &mut self.tree, now, out)
            }
            Message::Inv(items) => {
                self.sync.on_inv(peer, &items, &self.tree, now, out);
                self.relay.on_inv(peer, &items, now, out);
            }
            Message::Block(block) => {
                if let Some(block) = self.blocks.on_block(peer, block, &mut self.tree, now, out) {
                    self.take_block(peer, block);
                }
            }
            Message::SendCmpct(msg) => self.compact.on_send_cmpct(peer, msg, out),
            Message::CmpctBlock(compact) => self.on_cmpct_block(peer, compact, now),
            Message::BlockTxn(msg) => {
                if let Some(block) = self.compact.on_block_txn(peer, msg, out) {
                    self.rebuilt_block(peer, block, now);
                }
            }
            Message::GetBlockTxn(request) => self
                .compact
                .on_get_block_txn(peer, request, &self.tree, out),
            Message::NotFound(items) => {
                self.blocks.on_not_found(peer, &items, &self.tree);
                self.compact.on_not_found(peer, &items);
                self.relay.on_not_found(peer, &items, now, out);
            }
            Message::GetData(items) => {
                // Compact blocks asked for are sent as such when recent and held; otherwise
                // as a whole block (or not found).
                let mut rest = Vec::new();
                for item in items.into_inner() {
                    if item.kind != InvKind::CompactBlock {
                        rest.push(item);
                        continue;
                    }
                    let (tree, rng) = (&self.tree, &mut self.compact_rng);
                    if !self.compact.serve_compact(peer, item.hash, tree, rng, out) {
                        rest.push(crate::wire::message::InvItem {
                            kind: InvKind::Block,
                            hash: item.hash,
                        });
                    }
                }
                let pushed = |hash: &crate::types::Hash256| self.compact.was_pushed(hash);
                serve(peer, InvList::truncating(rest), &self.tree, &pushed, out)
            }
            Message::Tx(tx) => self.relay.on_tx(peer, *tx, now, out),
        }
    }

    /// CMPCTBLOCK: its header is checked and taken like a pushed block's; the body is rebuilt
    /// when the block would become our tip on a parent we hold and nobody is fetching it
    /// (otherwise the header alone counts, and the download does the rest).
    fn on_cmpct_block(
        &mut self,
        peer: PeerId,
        compact: Box<crate::wire::compact::CompactBlock>,
        now: Now,
    ) {
        let hash = compact.header.hash();
        // Not held, not being rebuilt, and not fetched from someone else (asked of this peer
        // as a compact block is fine), unless an outbound peer takes it over from an inbound
        // one (`may_take_over`).
        let asked_of = self.blocks.requested_from(&hash);
        let takeover = self.compact.may_take_over(peer, asked_of);
        let fresh = !self.tree.has_body(&hash)
            && (takeover
                || (!self.compact.is_pending(&hash)
                    && (asked_of == Some(peer) || !self.blocks.is_busy(&hash))));
        // The parent may still be on its way to the chain (rebuilt, downloaded): the chain
        // holds the child until it is stored.
        let prev = compact.header.prev_hash;
        let wanted = fresh
            && accept_pushed_header(peer, &compact.header, &mut self.tree, now, &mut self.out)
            && (self.tree.has_body(&prev) || self.blocks.is_busy(&prev));
        tracing::debug!(peer, %hash, fresh, wanted, "compact block received");
        if self.peers.is_live(peer) && !self.peers.is_disconnecting(peer) {
            // It has the block: learnt as from an announcement (headers asked for when the
            // header does not connect).
            let announced = crate::wire::message::inv_list(InvKind::Block, &[hash]);
            self.sync
                .on_inv(peer, &announced, &self.tree, now, &mut self.out);
        }
        self.compact
            .on_cmpct_block(peer, compact, wanted, &mut self.out);
    }

    /// A block rebuilt from a compact block: through the download's one submission path (it
    /// counts as requested from its sender), like a BLOCK.
    fn rebuilt_block(&mut self, peer: PeerId, block: Box<crate::types::Block>, now: Now) {
        if let Some(block) = self
            .blocks
            .on_block(peer, block, &mut self.tree, now, &mut self.out)
        {
            self.take_block(peer, block);
        }
    }

    /// A block for the chain (downloaded, pushed, or rebuilt from a compact block): pushed
    /// on to the peers that asked for pushes before the chain validates it, then handed over.
    /// Those peers are still announced it once it is connected: a peer that could not
    /// rebuild it learns then that the block can be fetched from us.
    fn take_block(&mut self, peer: PeerId, block: Box<crate::types::Block>) {
        self.compact.push_early(
            Some(peer),
            &block.header,
            || Arc::new((*block).clone()),
            &self.tree,
            &mut self.compact_rng,
            &mut self.out,
        );
        self.out.push(Output::SubmitBlock { peer, block });
    }

    /// A block submitted here whose body passed the chain's stateless checks and signatures
    /// (the chain is connecting it): pushed early like a relayed block if it extends the
    /// active tip and its header passes the header tree's checks (those a receiver makes of
    /// a pushed header). The header is checked on a copy of the tree's tail, not stored: the
    /// chain's verdict, and the event of its connect, decide what the tree holds.
    fn checked_block(&mut self, block: Arc<crate::types::Block>, now: Now) {
        let hash = block.hash();
        let parent = block.header.prev_hash;
        if parent != self.tree.active_tip() || self.tree.contains(&hash) {
            return;
        }
        let Some(mut tail) = self.tree.tail(&parent) else {
            return;
        };
        if let Err(error) = tail.extend(&block.header, now.unix_secs()) {
            tracing::debug!(%hash, %error, "submitted block's header refused: not pushed early");
            return;
        }
        self.compact.push_block(
            None,
            hash,
            || block.clone(),
            &mut self.compact_rng,
            &mut self.out,
        );
    }

    /// The chain's answer for a block. A block rebuilt from a compact block is judged as a
    /// relay's: a body that does not match its header is fetched whole from the same peer (a
    /// short-id collision is nobody's fault), an invalid one costs a relay's score (it was
    /// pushed before the sender validated it, as we asked). A block that became our tip
    /// makes its deliverer a high-bandwidth peer.
    fn block_processed(
        &mut self,
        peer: PeerId,
        hash: crate::types::Hash256,
        result: super::io::BlockResult,
    ) {
        use super::io::BlockResult;
        let via_compact = matches!(result, BlockResult::Mutated(_) | BlockResult::Invalid(_))
            && self.compact.take_rebuilt(peer, hash);
        if via_compact && matches!(result, BlockResult::Mutated(_)) {
            self.blocks.retry(&hash);
            self.compact.refetch(peer, hash, &mut self.out);
            return;
        }
        self.blocks.processed(
            peer,
            hash,
            &result,
            via_compact,
            &mut self.tree,
            &mut self.out,
        );
        // A new tip, not a step of a sync (it is our best header): its deliverer is fast. (The
        // chain's event making it the active tip may come after this answer.)
        let new_tip = self.tree.best_hash() == hash;
        if result == BlockResult::Connected && new_tip {
            self.compact.delivered_first(peer, &mut self.out);
        }
    }

    /// Delivers internal events to every manager until none are left. A disconnection asked
    /// for by any manager reaches the shell once and every manager hears of it.
    fn fan_out(&mut self, now: Now) {
        while let Some(event) = self.out.next_internal() {
            self.wakes.stale = Wakes::ALL;
            if let Internal::DisconnectRequested { peer, reason } = event {
                if self.peers.mark_disconnecting(peer) {
                    self.out.push(Output::Disconnect(peer, reason));
                    self.out.internal(Internal::PeerDisconnecting { peer });
                }
                continue;
            }
            if let Internal::TipChanged { hash, .. } = event {
                // Pushed as a compact block first, so the announcement skips those peers (a
                // HEADERS sent at once would overtake the compact block, which is built off
                // the network task, and have the block fetched in full).
                let pushed =
                    self.compact
                        .push_tip(&self.tree, now, &mut self.compact_rng, &mut self.out);
                for to in pushed {
                    self.sync.note_announced(to, hash);
                }
            }
            self.peers.on_internal(&event);
            self.pings.on_internal(&event, now.local);
            self.addrs
                .on_internal(&event, &self.cfg, now, &mut self.out);
            self.scores
                .on_internal(&event, &self.cfg, now, &mut self.out);
            self.sync
                .on_internal(&event, &self.tree, now, &mut self.out);
            self.blocks.on_internal(&event, &self.tree, now.local);
            self.compact.on_internal(&event, &mut self.out);
            self.relay
                .on_internal(&event, now, &mut self.relay_rng, &mut self.out);
            if matches!(event, Internal::PeerGone { .. }) && self.tree.is_full() {
                self.forget_pending = true;
            }
        }
    }

    /// (Run after the peer's departure has reached every manager; deferred while one ran in
    /// the last `FORGET_UNCLAIMED_INTERVAL`, until an input comes after it.)
    /// A full header tree takes no header at all, its peers' new blocks included: the
    /// headers no connected peer offers (a departed stranger's, never backed by blocks) give
    /// way. What the download has asked for is kept with what the peers claim.
    fn forget_unclaimed_headers(&mut self) {
        let mut claimed = self.sync.claimed_headers();
        claimed.extend(self.blocks.requested());
        let forgotten = self.tree.forget_unclaimed(&claimed);
        if forgotten > 0 {
            tracing::info!(
                forgotten,
                best_height = self.tree.best_height(),
                "header tree was full: forgot headers no connected peer offers"
            );
        }
    }

    /// Publishes a new connection unless the peer manager dropped it at once (a duplicate, a
    /// banned or self connection): those are routine, not news.
    fn announce_if_kept(&mut self, peer: PeerId) {
        if let Some(p) = self.peers.view(peer).filter(|_| self.peers.is_live(peer)) {
            self.out.event(Event::PeerConnected {
                peer,
                addr: p.addr,
                node_id: p.node_id,
                conn_type: p.conn_type,
            });
        }
    }

    // ----- queries --------------------------------------------------------------------------

    pub fn config(&self) -> &CoreConfig {
        &self.cfg
    }

    pub fn addrman(&self) -> &AddrMan {
        self.addrs.book()
    }

    pub fn bans(&self) -> &BanList {
        self.scores.bans()
    }

    pub fn inbound_count(&self) -> usize {
        self.peers.inbound_count()
    }

    pub fn outbound_count(&self) -> usize {
        self.peers.outbound_count()
    }

    /// Whether peer-to-peer activity is on (`setnetworkactive`).
    pub fn network_active(&self) -> bool {
        self.peers.network_active()
    }

    /// The peers `peers` would list as "outbound-full-relay", without building the list.
    pub fn outbound_full_relay_count(&self) -> usize {
        self.peers.outbound_full_relay_count()
    }

    /// Whether `peer` is on its way out (the core asked for its disconnection).
    pub fn is_disconnecting(&self, peer: PeerId) -> bool {
        self.peers.is_disconnecting(peer)
    }

    /// Whether to start a TLS handshake with a new inbound TCP connection from `addr`.
    pub fn admit_inbound(&self, now: Now, addr: SocketAddr) -> Result<(), DisconnectReason> {
        let banned = self.scores.is_banned(addr.ip(), None, now);
        self.peers.admit_inbound(&self.cfg, addr, banned)
    }

    pub fn peers(&self, now: Now) -> Vec<PeerSnapshot> {
        self.peers
            .views()
            .map(|p| {
                let liveness = self.pings.stats(p.id);
                let best = self.sync.best_of(p.id);
                let version = p.version.as_ref();
                PeerSnapshot {
                    id: p.id,
                    addr: p.addr,
                    inbound: p.conn_type == ConnType::Inbound,
                    connection_type: p.conn_type.name(),
                    nodeid: p.node_id,
                    version: version.map_or(0, |v| v.protocol_version),
                    subver: version.map_or(String::new(), |v| v.user_agent.to_string()),
                    services: version.map_or(0, |v| v.services),
                    startingheight: version.map_or(0, |v| v.best_height),
                    conntime_ms: now.unix_ms_at(p.connected_at),
                    lastrecv_ms: now.unix_ms_at(liveness.last_recv),
                    ping_ms: liveness.rtt.map(|d| d.as_millis()),
                    minping_ms: liveness.min_rtt.map(|d| d.as_millis()),
                    banscore: self.scores.score(p.id),
                    handshake_complete: p.ready,
                    synced_headers: best.and_then(|b| self.tree.height_of(&b)),
                    synced_blocks: best.and_then(|b| self.tree.last_common_active(&b)),
                    inflight: self
                        .blocks
                        .in_flight_of(p.id)
                        .iter()
                        .filter_map(|h| self.tree.height_of(h))
                        .collect(),
                    relay: self.relay.counts_of(p.id),
                    compact: self.compact.counts_of(p.id),
                }
            })
            .collect()
    }

    pub fn added_nodes(&self, now: Now) -> Vec<AddedNodeSnapshot> {
        self.peers.added_nodes(now)
    }

    /// A sample of the address book (`getnodeaddresses`), drawn with the core's seeded RNG.
    pub fn sample_addresses(&mut self, now: Now, count: usize) -> Vec<AddrInfo> {
        self.addrs.sample(now, count, &mut self.rng)
    }
}

/// GETDATA: blocks we have are served from the store by the shell (at most
/// `MAX_BLOCKS_SERVED` a request), or from what it keeps of the blocks it pushed as compact
/// blocks before storing them (`pushed`); transactions from the mempool (the shell sends
/// NOTFOUND for those it does not hold); unknown blocks are not found.
fn serve(
    peer: PeerId,
    items: InvList,
    tree: &HeaderTree,
    pushed: &dyn Fn(&crate::types::Hash256) -> bool,
    out: &mut Outbox,
) {
    let mut blocks = Vec::new();
    let mut txids = Vec::new();
    let mut missing = Vec::new();
    for item in items.into_inner() {
        if item.kind == InvKind::Tx {
            txids.push(item.hash);
            continue;
        }
        let have = item.kind == InvKind::Block
            && blocks.len() < MAX_BLOCKS_SERVED
            && (tree.has_body(&item.hash) || pushed(&item.hash));
        if have {
            blocks.push(item.hash);
        } else {
            missing.push(item);
        }
    }
    if !txids.is_empty() {
        out.push(Output::ServeTxs { peer, txids });
    }
    if !blocks.is_empty() {
        out.push(Output::ServeBlocks {
            peer,
            hashes: blocks,
        });
    }
    out.not_found(peer, InvList::truncating(missing));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encoding::BoundedString;
    use crate::protocol::bans::BanTarget;
    use crate::wire::{NetAddress, Version, PROTOCOL_VERSION};

    const T0: u64 = 1_800_000_000_000;

    use crate::time::after_epoch as at;

    fn id(n: u8) -> NodeId {
        NodeId([n; 32])
    }

    fn public_core() -> Core {
        let mut cfg = CoreConfig::new(id(0));
        cfg.rng_seed = 7;
        Core::new(cfg, AddrMan::new([1; 32]), BanList::default())
    }

    fn version(n: u8, nonce: u64, receiver: SocketAddr) -> Message {
        Message::Version(Box::new(Version {
            protocol_version: PROTOCOL_VERSION,
            services: 1,
            timestamp: 0,
            receiver: NetAddress::new(receiver, 0),
            sender: NetAddress::new(receiver, 1),
            nonce,
            user_agent: BoundedString::truncating("/t/"),
            best_height: 0,
            node_id: id(n),
            relay: true,
        }))
    }

    fn connected(
        core: &mut Core,
        peer: PeerId,
        addr: SocketAddr,
        dial: Option<u64>,
        n: u8,
        now: Now,
    ) {
        core.handle(
            now,
            Input::Connected {
                peer,
                addr,
                dial,
                node_id: id(n),
            },
        )
        .unwrap();
    }

    fn received(core: &mut Core, peer: PeerId, message: Message, now: Now) {
        core.handle(now, Input::Received { peer, message }).unwrap();
    }

    #[test]
    fn a_new_inbound_peer_is_announced_and_a_dropped_one_is_not() {
        let mut c = public_core();
        connected(&mut c, 1, "8.8.8.8:1".parse().unwrap(), None, 1, at(0));
        connected(&mut c, 2, "9.9.9.9:1".parse().unwrap(), None, 1, at(0));
        let out = c.drain_outputs();
        let announced: Vec<PeerId> = out
            .iter()
            .filter_map(|o| match o {
                Output::Event(Event::PeerConnected { peer, .. }) => Some(*peer),
                _ => None,
            })
            .collect();
        assert_eq!(announced, vec![1], "the duplicate node id is routine");
        assert!(out.contains(&Output::Disconnect(2, DisconnectReason::DuplicateNodeId)));
    }

    #[test]
    fn one_disconnection_reaches_the_shell_however_many_managers_ask() {
        let mut c = public_core();
        connected(&mut c, 1, "8.8.8.8:1".parse().unwrap(), None, 1, at(0));
        c.drain_outputs();
        // Before VERACK: out of order (scored and dropped), then a broken frame.
        received(&mut c, 1, Message::GetAddr, at(1));
        c.handle(
            at(2),
            Input::Broken {
                peer: 1,
                error: crate::wire::WireError::UnknownCommand("x".into()),
            },
        )
        .unwrap();
        let disconnects = c
            .drain_outputs()
            .into_iter()
            .filter(|o| matches!(o, Output::Disconnect(..)))
            .count();
        assert_eq!(disconnects, 1);
        assert_eq!(c.peers(at(3))[0].banscore, 110, "both were scored");
    }

    #[test]
    fn a_full_header_tree_forgets_a_departed_strangers_headers() {
        let params = crate::params::Network::Regtest.params();
        let mut c = public_core().with_headers(HeaderTree::with_body_limit(params, 5));
        let addr: SocketAddr = "8.8.8.8:1".parse().unwrap();
        connected(&mut c, 1, addr, None, 1, at(0));
        received(&mut c, 1, version(1, 1, addr), at(1));
        received(&mut c, 1, Message::Verack, at(2));
        let mut builder = crate::chain::testkit::TestChainBuilder::new(params);
        let headers: Vec<_> = (0..5)
            .map(|_| builder.build(crate::types::Address([9; 20]), vec![]).header)
            .collect();
        received(
            &mut c,
            1,
            Message::Headers(crate::encoding::BoundedVec::new(headers.clone()).unwrap()),
            at(3),
        );
        assert!(
            c.headers().is_full(),
            "the stranger's headers fill the tree"
        );
        assert_eq!(c.headers().best_hash(), headers[4].hash());
        // It goes (here: it closed; a staller is dropped the same way) without the blocks.
        c.handle(at(4), Input::Disconnected { peer: 1 }).unwrap();
        assert_eq!(c.headers().headers_without_body(), 0);
        assert!(!c.headers().is_full());
        assert_eq!(c.headers().best_hash(), params.genesis_hash());
        // Another does the same at once: the walk waits out its interval, then the next
        // input (here a tick) does it.
        let addr: SocketAddr = "9.9.9.9:1".parse().unwrap();
        connected(&mut c, 2, addr, None, 2, at(5));
        received(&mut c, 2, version(2, 2, addr), at(5));
        received(&mut c, 2, Message::Verack, at(5));
        received(
            &mut c,
            2,
            Message::Headers(crate::encoding::BoundedVec::new(headers).unwrap()),
            at(6),
        );
        assert!(c.headers().is_full());
        c.handle(at(7), Input::Disconnected { peer: 2 }).unwrap();
        assert!(
            c.headers().is_full(),
            "within the interval of the last walk"
        );
        c.handle(at(4 + FORGET_UNCLAIMED_INTERVAL.as_millis()), Input::Tick)
            .unwrap();
        assert!(!c.headers().is_full());
    }

    #[test]
    fn each_tick_asks_for_the_next() {
        let mut c = public_core();
        c.handle(at(0), Input::Tick).unwrap();
        assert!(c
            .drain_outputs()
            .contains(&Output::SetTimer(LocalTime::from_millis(1_000))));
        c.handle(at(500), Input::Disconnected { peer: 9 }).unwrap();
        assert!(!c
            .drain_outputs()
            .iter()
            .any(|o| matches!(o, Output::SetTimer(_))));
        c.handle(at(1_000), Input::Tick).unwrap();
        assert!(c
            .drain_outputs()
            .contains(&Output::SetTimer(LocalTime::from_millis(2_000))));
    }

    #[test]
    fn a_core_with_nothing_due_skips_the_grid_points_between() {
        let mut cfg = CoreConfig::new(id(0));
        cfg.connect_only = true; // no outbound slot to fill
        cfg.handshake_timeout_ms = 10_000;
        let mut c = Core::new(cfg, AddrMan::new([1; 32]), BanList::default());
        c.handle(at(0), Input::Tick).unwrap();
        // The address book's snapshot is the first thing due, a minute on.
        assert!(c
            .drain_outputs()
            .contains(&Output::SetTimer(LocalTime::from_millis(60_000))));
        // An inbound peer's handshake timeout is due sooner: on the grid point at or after it.
        connected(&mut c, 1, "8.8.8.8:1".parse().unwrap(), None, 1, at(2_500));
        assert!(c
            .drain_outputs()
            .contains(&Output::SetTimer(LocalTime::from_millis(13_000))));
    }

    /// Only the ping manager's wake is asked again after a PONG, and it must be: the peer's
    /// next deadline moves from the ping timeout (20 min) forward to its next ping (2 min).
    /// Ticking only when the core's timer asks, each PING goes out on time.
    #[test]
    fn after_a_pong_the_timer_brings_the_next_ping_on_time() {
        let mut cfg = CoreConfig::new(id(0));
        cfg.connect_only = true; // no outbound slot to fill
        let interval = cfg.ping_interval_ms;
        let mut c = Core::new(cfg, AddrMan::new([1; 32]), BanList::default());
        let addr: SocketAddr = "8.8.8.8:1".parse().unwrap();
        connected(&mut c, 1, addr, None, 1, at(0));
        received(&mut c, 1, version(1, 5, addr), at(0));
        received(&mut c, 1, Message::Verack, at(0));
        // The timer the core last asked for, and the pings it sent (when, nonce).
        let drain = |c: &mut Core, timer: &mut u64, now: u64, pings: &mut Vec<(u64, u64)>| {
            for o in c.drain_outputs() {
                match o {
                    Output::SetTimer(t) => *timer = t.as_millis(),
                    Output::Send(1, Message::Ping(n)) => pings.push((now, n)),
                    _ => {}
                }
            }
        };
        let (mut timer, mut pings) = (u64::MAX, Vec::new());
        drain(&mut c, &mut timer, 0, &mut pings);
        while timer <= 2 * interval && pings.len() < 2 {
            let now = timer;
            c.handle(at(now), Input::Tick).unwrap();
            let before = pings.len();
            drain(&mut c, &mut timer, now, &mut pings);
            if pings.len() > before && pings.len() == 1 {
                // Answered at once: the next ping is due an interval after this one.
                received(&mut c, 1, Message::Pong(pings[0].1), at(now + 100));
                drain(&mut c, &mut timer, now + 100, &mut pings);
            }
        }
        let sent: Vec<u64> = pings.iter().map(|(at, _)| *at).collect();
        assert_eq!(sent, vec![interval, 2 * interval]);
    }

    /// Defect 3: a per-IP cap counted exact IPv6 addresses, so one /64 was no limit at all.
    #[test]
    fn inbound_per_ip_caps_count_ipv6_by_slash_64() {
        let mut cfg = CoreConfig::new(id(0));
        cfg.max_inbound_per_ip = 2;
        let mut c = Core::new(cfg, AddrMan::new([1; 32]), BanList::default());
        connected(
            &mut c,
            1,
            "[2001:db8:1:2::1]:1".parse().unwrap(),
            None,
            1,
            at(0),
        );
        connected(
            &mut c,
            2,
            "[2001:db8:1:2::2]:1".parse().unwrap(),
            None,
            2,
            at(0),
        );
        let third: SocketAddr = "[2001:db8:1:2:abcd::3]:1".parse().unwrap();
        assert_eq!(
            c.admit_inbound(at(0), third),
            Err(DisconnectReason::TooManyFromIp)
        );
        assert!(c
            .admit_inbound(at(0), "[2001:db8:1:3::1]:1".parse().unwrap())
            .is_ok());
    }

    /// Defect 3: a ban given as `::ffff:a.b.c.d` (or an IPv4 ban) matches the peer however
    /// its address arrived.
    #[test]
    fn bans_match_mapped_and_plain_ipv4_alike() {
        let mut c = public_core();
        let ban = Command::Ban {
            target: BanTarget::Ip("::ffff:1.2.3.4".parse().unwrap()),
            duration_ms: Some(60_000),
            reason: "test".into(),
        };
        c.handle(at(0), Input::Command(ban)).unwrap();
        for addr in ["1.2.3.4:5", "[::ffff:1.2.3.4]:5"] {
            assert_eq!(
                c.admit_inbound(at(0), addr.parse().unwrap()),
                Err(DisconnectReason::Banned)
            );
        }
        let saved = c
            .drain_outputs()
            .into_iter()
            .any(|o| matches!(o, Output::Persist(Persist::Bans(_))));
        assert!(saved, "the ban is handed to the peer store");
    }

    /// Defect 4 (test-before-evict): a collision in the tried table makes the core open one
    /// feeler to the occupant; a good handshake keeps it.
    #[test]
    fn a_tried_collision_is_resolved_by_a_feeler() {
        let mut c = public_core();
        let now = T0 / 1000;
        let book = c.addrs.book_mut();
        let (first, other) = book.tried_colliding_pair();
        let src: SocketAddr = "5.5.5.5:1".parse().unwrap();
        book.add(first, 1, src, now, now);
        book.mark_good(&first, now - 10 * 3600);
        book.add(other, 1, src, now, now);
        book.mark_good(&other, now);
        assert_eq!(c.addrman().collision_to_test(), Some(first));
        c.cfg.max_outbound = 0; // only the feeler may dial
        c.handle(at(0), Input::Tick).unwrap();
        let dial = c
            .drain_outputs()
            .into_iter()
            .find_map(|o| match o {
                Output::Dial { dial, target, .. } if target.host == "1.2.3.4" => Some(dial),
                _ => None,
            })
            .expect("a feeler to the occupant");
        connected(&mut c, 9, first, Some(dial), 9, at(100));
        received(&mut c, 9, version(9, 99, first), at(200));
        received(&mut c, 9, Message::Verack, at(300));
        let out = c.drain_outputs();
        assert!(out.contains(&Output::Disconnect(9, DisconnectReason::FeelerDone)));
        c.handle(at(1_000), Input::Tick).unwrap();
        assert!(
            c.addrman().get(&first).unwrap().tried,
            "the working occupant stays"
        );
        assert!(!c.addrman().get(&other).unwrap().tried);
        assert_eq!(c.addrman().collision_to_test(), None);
    }
}
