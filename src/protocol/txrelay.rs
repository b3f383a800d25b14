//! The transaction relay manager: announcing transactions the mempool admitted (INV, batched
//! and trickled per peer on seeded random intervals, a sender's nonces in order, never to a
//! peer known to have the transaction), and fetching transactions peers announce (GETDATA
//! from one announcer at a time, outbound announcers first, the next announcer after a
//! timeout or NOTFOUND), handing them to the mempool and scoring consensus-invalid ones and
//! peers that push future transactions (orphans: nonces past a gap) beyond their share.
//!
//! Owns, per peer, the bounded set of transactions it is known to have, its announcement
//! queue and trickle time, its requests in flight; and the node's table of wanted
//! transactions and bounded memory of recently handled ones. Never reads the mempool: what
//! the pool admitted and what it made of a fetched transaction arrive as inputs
//! (`TxAccepted`, `TxProcessed`, `FuturesExpired`, `TxsEvicted`), and GETDATA for
//! transactions is answered by the shell. The pool decides how many futures a peer may have; this manager only scores
//! what the pool's answers say.

use super::bans::Misbehaviour;
use super::io::{Announceable, ConnType, Internal, Outbox, Output, PeerId, TxResult, Wake};
use super::peermap::PeerMap;
use crate::time::{LocalDuration, LocalTime, Now};
use crate::types::{Address, Hash256, Transaction};
use crate::wire::message::{InvKind, InvList};
use rand::Rng;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

/// Mean time between announcement batches to an outbound peer (Bitcoin Core: 2 s; shorter
/// here, where a whole batch goes in one INV).
pub const TRICKLE_OUTBOUND_MEAN: LocalDuration = LocalDuration::from_millis(80);
/// Mean time between batches to an inbound peer: longer, so a spy that connects to many
/// nodes learns less from who announces first (2.5 times the outbound mean, Bitcoin Core's
/// ratio). Across 1,000 simulated nodes (`cargo bench --bench sim -- tx`) the median
/// transaction reached half the nodes in 506 ms with 100/250 ms and 469 ms with 80/200 ms;
/// 200/500 ms put it well past 500 ms.
pub const TRICKLE_INBOUND_MEAN: LocalDuration = LocalDuration::from_millis(200);
/// Transactions a peer is remembered to have (~520 KB a peer, 65 MB for 125 peers; Bitcoin
/// Core's filter is ~270 KB): the last ones it announced, sent or was sent. One forgotten is
/// announced to it again (a flood then echoes back: 5,000 cost a third of the throughput).
const MAX_KNOWN_PER_PEER: usize = 20_000;
/// Announcements waiting for a peer's next batch; past this the oldest are not announced.
const MAX_QUEUED_PER_PEER: usize = 50_000;
/// Transactions a peer may have announced and we not yet fetched (Bitcoin Core's 5,000 is
/// too few for a flood: what does not fit is lost until announced again); the total below
/// bounds memory.
const MAX_ANNOUNCED_PER_PEER: usize = 50_000;
/// Transactions asked of one peer and not yet judged by the mempool (requested, or received
/// and being checked): what its checking queue in the shell must hold.
pub const MAX_IN_FLIGHT_PER_PEER: usize = 5_000;
/// Transactions wanted at once, from all peers (~150 bytes each: 30 MB, 37.5 MB with the
/// reserve below, and ~19 MB more at most for the peers' guaranteed shares).
const MAX_WANTED: usize = 200_000;
/// Room in `wanted` past `MAX_WANTED` that only outbound peers' announcements may take. A few
/// inbound strangers announcing 55,000 each and answering nothing fill `MAX_WANTED` (a request
/// whose announcer is the only one waits on it): transactions must still reach us through
/// the peers we chose.
const OUTBOUND_WANTED_RESERVE: usize = 50_000;
/// Announcements of each peer taken even when `wanted` is full (so past `MAX_WANTED` and the
/// reserve by at most this many a peer): more than an honest peer relaying ordinary traffic
/// has unfetched at once, so strangers filling the table cannot keep its transactions out.
const GUARANTEED_ANNOUNCED_PER_PEER: usize = 1_000;
/// A GETDATA for a transaction unanswered this long goes to the next announcer.
pub const TX_REQUEST_TIMEOUT: LocalDuration = LocalDuration::from_secs(5);
/// A request is given up this long after it was sent, however busy its peer says it is and
/// whether or not anyone else announced the transaction (Bitcoin Core's
/// `GETDATA_TX_INTERVAL`): a peer that answers its other requests cannot hold one, and a
/// silent one holds its announcements no longer than this.
pub const TX_REQUEST_MAX_WAIT: LocalDuration = LocalDuration::from_secs(60);
/// How much later than a request's timeout its hard limit falls (`tick` keeps due times as
/// the point a timeout counts from).
const MAX_WAIT_PAST_TIMEOUT: LocalDuration =
    LocalDuration::from_millis(TX_REQUEST_MAX_WAIT.as_millis() - TX_REQUEST_TIMEOUT.as_millis());
/// Recently handled transactions (admitted or invalid) never fetched again: about an hour
/// of a busy network.
const MAX_RECENT: usize = 200_000;
/// Transactions the mempool refused (fee, nonce, funds, room): not fetched again until the
/// chain's tip moves, which may change the verdict (Bitcoin Core's recent rejects).
const MAX_REJECTS: usize = 50_000;
/// Refusals that say nothing about the transaction itself (`TxResult::Refused` codes): it
/// may be taken when offered again. A future refused past its relayer's cap
/// (`too-many-future-from-peer`) is among them: in a flood an honest peer meets its cap
/// whenever nonces overtake each other, and the transaction is good from another peer or
/// once the gap fills. Junk is scored when it expires unfilled, not when it is refused.
const RETRYABLE: [&str; 4] = [
    "too-many-future",
    "too-many-future-from-peer",
    "busy",
    "not checked",
];
/// Announcers kept per transaction while the mempool checks it, to be asked next if the pool
/// refuses it for a reason that says nothing about it (`RETRYABLE`): in a flood, a future
/// refused past one peer's cap is good from another, and once it is lost every later nonce
/// of its sender waits for it.
const MAX_FALLBACK_ANNOUNCERS: usize = 8;
/// Futures whose announcers are kept, and evicted futures waiting to be fetched again: the
/// pool holds no more futures than this (`DEFAULT_MAX_FUTURE_TOTAL`).
const MAX_HELD_FUTURES: usize = crate::mempool::pool::DEFAULT_MAX_FUTURE_TOTAL;
/// How long an evicted future waits before it is fetched again: in a flood its gap fills
/// within a second or two, and then it enters as pending; fetched at once it would most
/// likely be a future again, in a pool still full of them.
pub const FUTURE_REFETCH_DELAY: LocalDuration = LocalDuration::from_secs(2);
/// Times a transaction refused for want of room (`RETRYABLE`) is fetched again from the peer
/// that last sent it, `FUTURE_REFETCH_DELAY` after each refusal, once no other announcer is
/// left to ask: every peer announces it once, so without this it would be lost for good,
/// and every later nonce of its sender with it. A flood's gaps fill within seconds; a gap
/// that stays open this long is not worth a request every 2 s.
const MAX_REFUSED_REFETCHES: u8 = 8;
/// Futures of one peer that one expiry sweep must drop unfilled to cost it one `orphan-flood`
/// score: a quarter of its cap (1,024). Relay loses a nonce now and then (a few dozen in a
/// ten-node flood), leaving the sender's later ones unfilled, but those came from several
/// peers; one that fills its share with junk and lets it expire pays at every such sweep.
const ORPHAN_EXPIRED_BULK: usize = 256;

#[derive(Debug)]
struct RelayPeer {
    outbound: bool,
    /// It takes transaction announcements (VERSION `relay`, not a feeler).
    relay: bool,
    known: BoundedSet,
    /// (sender, nonce, txid) to announce at the next trickle.
    queue: Vec<(Address, u64, Hash256)>,
    next_trickle: LocalTime,
    /// Wanted transactions it announced.
    announced: usize,
    in_flight: usize,
    /// When it last answered a request (TX or NOTFOUND): a peer working through a long
    /// GETDATA is slow, not unresponsive.
    last_answer: LocalTime,
}

#[derive(Debug)]
struct Wanted {
    /// Who announced it and was not tried yet, in order of announcement.
    announcers: Vec<PeerId>,
    /// The announcer asked, and since when its answer is waited for (when it was sent, or
    /// later while its peer is busy answering others or is the only one to ask).
    requested: Option<(PeerId, LocalTime)>,
    /// When the request in flight was sent: `TX_REQUEST_MAX_WAIT` counts from it.
    sent: LocalTime,
}

/// Insert-ordered set of transaction ids with a cap: the oldest entries go first. It keeps
/// the first 8 bytes of each id (~26 bytes an entry with the map's overhead): a collision
/// needs 2^64 work to grind, and costs at most one announcement or fetch.
#[derive(Debug, Default)]
struct BoundedSet {
    set: HashSet<u64>,
    order: VecDeque<u64>,
    cap: usize,
}

fn short_id(hash: &Hash256) -> u64 {
    u64::from_le_bytes(hash.0[..8].try_into().expect("8 bytes"))
}

impl BoundedSet {
    fn new(cap: usize) -> BoundedSet {
        BoundedSet {
            cap,
            ..BoundedSet::default()
        }
    }

    fn insert(&mut self, hash: Hash256) {
        let key = short_id(&hash);
        if self.set.insert(key) {
            self.order.push_back(key);
            if self.order.len() > self.cap {
                if let Some(old) = self.order.pop_front() {
                    self.set.remove(&old);
                }
            }
        }
    }

    fn contains(&self, hash: &Hash256) -> bool {
        self.set.contains(&short_id(hash))
    }

    /// Forgets `hash` (its place in the eviction order stays: if it is inserted again, it
    /// may be forgotten early, costing at most one more fetch).
    fn remove(&mut self, hash: &Hash256) {
        self.set.remove(&short_id(hash));
    }
}

/// The announcers of transactions to be fetched again later, the newest `MAX_HELD_FUTURES`:
/// futures admitted (fetched again if the pool evicts one), and transactions refused for
/// want of room with nobody left to ask (fetched again after the delay).
#[derive(Debug, Default)]
struct HeldAnnouncers {
    held: HashMap<Hash256, Held>,
    order: VecDeque<Hash256>,
}

#[derive(Debug)]
struct Held {
    announcers: Vec<PeerId>,
    /// How often it was fetched again after a refusal for want of room.
    refusals: u8,
}

impl HeldAnnouncers {
    fn hold(&mut self, txid: Hash256, announcers: Vec<PeerId>) {
        if let Some(held) = self.held.get_mut(&txid) {
            held.announcers = announcers;
            return;
        }
        self.held.insert(
            txid,
            Held {
                announcers,
                refusals: 0,
            },
        );
        self.order.push_back(txid);
        if self.order.len() > MAX_HELD_FUTURES {
            if let Some(old) = self.order.pop_front() {
                self.held.remove(&old);
            }
        }
    }

    /// Holds `txid` to be fetched from `from` again after a refusal for want of room;
    /// whether it may be (not refused that way `MAX_REFUSED_REFETCHES` times already).
    fn hold_refused(&mut self, txid: Hash256, from: PeerId) -> bool {
        let refusals = self.held.get(&txid).map_or(0, |h| h.refusals);
        if refusals >= MAX_REFUSED_REFETCHES {
            return false;
        }
        self.hold(txid, vec![from]);
        // `hold` may have dropped the oldest entry; this one is the newest, so it stays.
        self.held.get_mut(&txid).expect("just held").refusals = refusals + 1;
        true
    }

    fn announcers(&self, txid: &Hash256) -> Option<&Vec<PeerId>> {
        self.held.get(txid).map(|h| &h.announcers)
    }
}

/// Counters for getpeerinfo.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct RelayCounts {
    pub tx_announced: u64,
    pub tx_requested: u64,
    pub tx_received: u64,
}

#[derive(Debug)]
pub struct TxRelay {
    peers: PeerMap<RelayPeer>,
    counts: BTreeMap<PeerId, RelayCounts>,
    wanted: BTreeMap<Hash256, Wanted>,
    /// Wanted transactions not in flight, in the order they were announced (a sender's
    /// nonces in order: they are asked for, sent and checked in that order). Entries no
    /// longer wanted are skipped when met.
    unrequested: VecDeque<Hash256>,
    /// Wanted transactions met when every announcer had its requests in flight at the
    /// limit, in order, ahead of `unrequested`: looked at again only once a peer's requests
    /// fell below the limit (`room`), and then only until every announcer is full again, so
    /// a flood's backlog is not walked at every INV and tick.
    parked: VecDeque<Hash256>,
    /// A peer's requests in flight fell below the limit since `parked` was last looked at.
    room: bool,
    /// The earliest trickle time of a peer with announcements queued (a departed peer's may
    /// linger until the next tick: one early tick).
    due: Option<LocalTime>,
    /// No later than the oldest request in flight (its timeout is the next wake): lowered
    /// as requests go out, recomputed by `tick`'s scan, left alone when one is answered (an
    /// early wake at worst), so `next_wake`, asked after nearly every input, never scans
    /// `wanted`.
    oldest_request: Option<LocalTime>,
    recent: BoundedSet,
    rejects: BoundedSet,
    /// Handed to the mempool, verdict pending, and whose they were (at most what is in
    /// flight to all peers; a peer's are forgotten when it goes, its checks with it).
    checking: BTreeMap<Hash256, Checking>,
    /// Who announced the futures the pool admitted (to fetch one again if it is evicted) and
    /// the transactions refused for want of room with nobody left to ask.
    held: HeldAnnouncers,
    /// Held transactions to fetch again, each with when (in the order scheduled, so due times
    /// ascend).
    refetch: VecDeque<(LocalTime, Hash256)>,
}

/// A transaction the mempool is checking.
#[derive(Debug)]
struct Checking {
    /// The peer that sent it.
    from: PeerId,
    /// Its other announcers, to ask next if the pool refuses it for a reason not its own (at
    /// most `MAX_FALLBACK_ANNOUNCERS`).
    others: Vec<PeerId>,
}

impl Default for TxRelay {
    fn default() -> TxRelay {
        TxRelay {
            peers: PeerMap::new(),
            counts: BTreeMap::new(),
            wanted: BTreeMap::new(),
            unrequested: VecDeque::new(),
            parked: VecDeque::new(),
            room: false,
            due: None,
            oldest_request: None,
            recent: BoundedSet::new(MAX_RECENT),
            rejects: BoundedSet::new(MAX_REJECTS),
            checking: BTreeMap::new(),
            held: HeldAnnouncers::default(),
            refetch: VecDeque::new(),
        }
    }
}

impl TxRelay {
    pub fn on_internal(
        &mut self,
        event: &Internal,
        now: Now,
        rng: &mut impl Rng,
        out: &mut Outbox,
    ) {
        match *event {
            Internal::TipChanged { .. } => self.rejects = BoundedSet::new(MAX_REJECTS),
            Internal::PeerNegotiated {
                peer,
                conn_type,
                relay,
                ..
            } => {
                let outbound = conn_type != ConnType::Inbound;
                let mut p = RelayPeer {
                    outbound,
                    relay: relay && !conn_type.is_short_lived(),
                    known: BoundedSet::new(MAX_KNOWN_PER_PEER),
                    queue: Vec::new(),
                    next_trickle: now.local,
                    announced: 0,
                    in_flight: 0,
                    last_answer: now.local,
                };
                p.next_trickle = now.local + trickle_delay(outbound, rng);
                if p.relay {
                    // What we hold that it may lack: a peer that was away catches up.
                    out.push(Output::ListMempool { peer });
                }
                self.peers.insert(peer, p);
                self.counts.insert(peer, RelayCounts::default());
            }
            Internal::PeerDisconnecting { peer } | Internal::PeerGone { peer, .. } => {
                if self.peers.remove(&peer).is_some() {
                    self.forget(peer);
                }
                if matches!(event, Internal::PeerGone { .. }) {
                    self.counts.remove(&peer);
                    self.checking.retain(|_, c| c.from != peer);
                }
            }
            _ => {}
        }
    }

    /// Drops `peer` from every wanted transaction; those it was asked for go elsewhere.
    fn forget(&mut self, peer: PeerId) {
        let mut orphaned = Vec::new();
        for (txid, w) in self.wanted.iter_mut() {
            w.announcers.retain(|&a| a != peer);
            if w.requested.is_some_and(|(p, _)| p == peer) {
                w.requested = None;
                self.unrequested.push_back(*txid);
            }
            if w.requested.is_none() && w.announcers.is_empty() {
                orphaned.push(*txid);
            }
        }
        for txid in orphaned {
            self.wanted.remove(&txid);
        }
        // Parked ones it announced may have another announcer with room, or nobody left.
        self.room = true;
    }

    pub fn counts_of(&self, peer: PeerId) -> RelayCounts {
        self.counts.get(&peer).copied().unwrap_or_default()
    }

    /// Transactions wanted and not yet received (getmempoolinfo could show it).
    pub fn wanted_len(&self) -> usize {
        self.wanted.len()
    }

    /// INV: transactions we have not handled recently are wanted from this announcer.
    pub fn on_inv(&mut self, peer: PeerId, items: &InvList, now: Now, out: &mut Outbox) {
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        for item in items.as_slice().iter().filter(|i| i.kind == InvKind::Tx) {
            p.known.insert(item.hash);
            if self.recent.contains(&item.hash) || self.rejects.contains(&item.hash) {
                continue;
            }
            if let Some(c) = self.checking.get_mut(&item.hash) {
                // Someone to ask should the pool refuse it for a reason not its own.
                if c.from != peer
                    && !c.others.contains(&peer)
                    && c.others.len() < MAX_FALLBACK_ANNOUNCERS
                {
                    c.others.push(peer);
                }
                continue;
            }
            if let Some(w) = self.wanted.get_mut(&item.hash) {
                let listed = w.announcers.contains(&peer)
                    || w.requested.is_some_and(|(asked, _)| asked == peer);
                if !listed && p.announced < MAX_ANNOUNCED_PER_PEER {
                    w.announcers.push(peer);
                    p.announced += 1;
                    if w.requested.is_none() && p.in_flight < MAX_IN_FLIGHT_PER_PEER {
                        // Possibly parked: an announcer with room looks at it now (an entry
                        // met again once it is in flight is skipped).
                        self.unrequested.push_back(item.hash);
                    }
                }
                continue;
            }
            let room = if p.outbound {
                MAX_WANTED + OUTBOUND_WANTED_RESERVE
            } else {
                MAX_WANTED
            };
            // A full table still takes each peer's first few: strangers that fill it cannot
            // keep out an honest peer's transactions (inbound ones, `--addnode` peers that
            // dialled us included).
            let full = self.wanted.len() >= room && p.announced >= GUARANTEED_ANNOUNCED_PER_PEER;
            if full || p.announced >= MAX_ANNOUNCED_PER_PEER {
                continue;
            }
            p.announced += 1;
            self.wanted.insert(
                item.hash,
                Wanted {
                    announcers: vec![peer],
                    requested: None,
                    sent: LocalTime::default(),
                },
            );
            self.unrequested.push_back(item.hash);
        }
        self.request(now, out);
    }

    /// Asks for every wanted transaction not in flight, from its best announcer with room:
    /// outbound before inbound, then in order of announcement (the parked first, once a peer
    /// has room again). One GETDATA per peer. Once no peer that announced anything wanted
    /// has room, the rest is parked unread.
    fn request(&mut self, now: Now, out: &mut Outbox) {
        let mut batches: BTreeMap<PeerId, Vec<Hash256>> = BTreeMap::new();
        let mut waiting = VecDeque::new();
        let from_parked = std::mem::take(&mut self.room);
        let mut parked_left = from_parked;
        let mut open = self.any_announcer_with_room();
        while open {
            let next = if parked_left {
                self.parked.pop_front()
            } else {
                None
            };
            let txid = match next {
                Some(txid) => txid,
                None => {
                    parked_left = false;
                    match self.unrequested.pop_front() {
                        Some(txid) => txid,
                        None => break,
                    }
                }
            };
            let Some(w) = self.wanted.get_mut(&txid).filter(|w| w.requested.is_none()) else {
                continue;
            };
            let peers = &self.peers;
            let has_room = |a: &PeerId| {
                peers
                    .get(a)
                    .is_some_and(|p| p.in_flight < MAX_IN_FLIGHT_PER_PEER)
            };
            let choice = w
                .announcers
                .iter()
                .position(|a| has_room(a) && peers[a].outbound)
                .or_else(|| w.announcers.iter().position(has_room));
            let Some(index) = choice else {
                if w.announcers.is_empty() {
                    // Nobody left to ask.
                    self.wanted.remove(&txid);
                } else {
                    waiting.push_back(txid);
                }
                continue;
            };
            let filled = self
                .peers
                .get(&w.announcers[index])
                .is_some_and(|p| p.in_flight + 1 >= MAX_IN_FLIGHT_PER_PEER);
            let peer = w.announcers.remove(index);
            w.requested = Some((peer, now.local));
            w.sent = now.local;
            self.oldest_request = Some(self.oldest_request.map_or(now.local, |o| o.min(now.local)));
            if let Some(p) = self.peers.get_mut(&peer) {
                p.in_flight += 1;
                p.announced = p.announced.saturating_sub(1);
            }
            self.counts.entry(peer).or_default().tx_requested += 1;
            batches.entry(peer).or_default().push(txid);
            if filled {
                open = self.any_announcer_with_room();
            }
        }
        // Parked in announcement order: stopped among the parked, what was met goes back
        // ahead of the rest of them; otherwise after them. What was never looked at follows.
        let rest = std::mem::take(&mut self.unrequested);
        if parked_left {
            while let Some(txid) = waiting.pop_back() {
                self.parked.push_front(txid);
            }
        } else {
            self.parked.extend(waiting);
        }
        self.parked.extend(rest);
        for (peer, txids) in batches {
            out.get_data(peer, InvKind::Tx, &txids);
        }
    }

    /// Whether some peer that announced a wanted transaction has room for a request (each
    /// announcer of a wanted transaction counts it in `announced`).
    fn any_announcer_with_room(&self) -> bool {
        self.peers
            .values()
            .any(|p| p.announced > 0 && p.in_flight < MAX_IN_FLIGHT_PER_PEER)
    }

    /// TX: a transaction we asked this peer for goes to the mempool. One we did not ask for
    /// is scored, unless the peer announced it (a late answer after a timeout: the request
    /// went to another peer, and the mempool may have refused it for room meanwhile) or it
    /// is otherwise known.
    pub fn on_tx(&mut self, peer: PeerId, tx: Transaction, now: Now, out: &mut Outbox) {
        let txid = tx.txid();
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        // Announced by it (or sent to it): a TX it pushes unasked and is scored for is not
        // remembered, so that sending it again is scored again.
        let announced = p.known.contains(&txid);
        let asked = self
            .wanted
            .get(&txid)
            .is_some_and(|w| w.requested.is_some_and(|(a, _)| a == peer));
        if asked {
            // Only an answer extends the wait for its other requests: anything else would let
            // a peer hold every transaction it was asked for with a stream of cheap messages.
            p.last_answer = now.local;
            p.known.insert(txid);
            let mut w = self.wanted.remove(&txid).expect("just looked up");
            // Its slot stays taken until the mempool's verdict (`processed`): backpressure.
            for other in &w.announcers {
                if let Some(o) = self.peers.get_mut(other) {
                    o.announced = o.announced.saturating_sub(1);
                }
            }
            w.announcers.truncate(MAX_FALLBACK_ANNOUNCERS);
            self.checking.insert(
                txid,
                Checking {
                    from: peer,
                    others: w.announcers,
                },
            );
            self.counts.entry(peer).or_default().tx_received += 1;
            out.push(Output::SubmitTx {
                peer,
                txid,
                tx: Box::new(tx),
            });
        } else if !announced
            && !self.recent.contains(&txid)
            && !self.rejects.contains(&txid)
            && !self.checking.contains_key(&txid)
            && !self.wanted.contains_key(&txid)
        {
            out.misbehaved(peer, Misbehaviour::Unrequested);
        } else if let Some(p) = self.peers.get_mut(&peer) {
            p.known.insert(txid); // it has it: not to be announced to it
        }
    }

    /// NOTFOUND: the peer no longer has these; ask the next announcer.
    pub fn on_not_found(&mut self, peer: PeerId, items: &InvList, now: Now, out: &mut Outbox) {
        let mut freed = false;
        for item in items.as_slice().iter().filter(|i| i.kind == InvKind::Tx) {
            if let Some(w) = self.wanted.get_mut(&item.hash) {
                if w.requested.is_some_and(|(a, _)| a == peer) {
                    w.requested = None;
                    self.unrequested.push_back(item.hash);
                    freed = true;
                    self.room = true;
                    if let Some(p) = self.peers.get_mut(&peer) {
                        p.in_flight = p.in_flight.saturating_sub(1);
                    }
                }
            }
        }
        if freed {
            // An answer (not any NOTFOUND: an empty one every few seconds would otherwise
            // hold the peer's other requests forever).
            if let Some(p) = self.peers.get_mut(&peer) {
                p.last_answer = now.local;
            }
            self.request(now, out);
        }
    }

    /// The mempool's verdict on a transaction a peer sent.
    pub fn processed(
        &mut self,
        peer: PeerId,
        txid: Hash256,
        result: &TxResult,
        now: Now,
        out: &mut Outbox,
    ) {
        let checked = self.checking.remove(&txid);
        if checked.is_some() {
            if let Some(p) = self.peers.get_mut(&peer) {
                p.in_flight = p.in_flight.saturating_sub(1);
                self.room = true;
                // Refill in batches, not one GETDATA per verdict.
                if p.in_flight == MAX_IN_FLIGHT_PER_PEER / 2 {
                    self.request(now, out);
                }
            }
        }
        match result {
            TxResult::Accepted => self.recent.insert(txid),
            TxResult::AcceptedFuture => {
                self.recent.insert(txid);
                if let Some(c) = checked {
                    let mut announcers = c.others;
                    announcers.insert(0, c.from);
                    self.held.hold(txid, announcers);
                }
            }
            TxResult::Invalid(reason) => {
                tracing::debug!(peer, %txid, %reason, "peer sent an invalid transaction");
                self.recent.insert(txid);
                out.misbehaved(peer, Misbehaviour::InvalidTx);
            }
            TxResult::Refused(code) if RETRYABLE.contains(&code.as_str()) => {
                if let Some(c) = checked {
                    let from = c.from;
                    // With nobody else to ask (every peer announces it once), the peer that
                    // sent it is asked again after the delay.
                    if !self.ask_next(txid, c.others, now, out)
                        && self.refetch.len() < MAX_HELD_FUTURES
                        && self.held.hold_refused(txid, from)
                    {
                        self.refetch
                            .push_back((now.local + FUTURE_REFETCH_DELAY, txid));
                    }
                }
            }
            TxResult::Refused(_) => self.rejects.insert(txid),
        }
    }

    /// A transaction the pool refused for a reason that says nothing about it: wanted again,
    /// from the other announcers still connected (asked at once if one has room). Whether it
    /// is wanted or being checked now (false: none of them could be asked).
    fn ask_next(
        &mut self,
        txid: Hash256,
        announcers: Vec<PeerId>,
        now: Now,
        out: &mut Outbox,
    ) -> bool {
        if self.wanted.contains_key(&txid) || self.checking.contains_key(&txid) {
            return true;
        }
        if self.wanted.len() >= MAX_WANTED {
            return false;
        }
        let mut listed = Vec::with_capacity(announcers.len());
        for a in announcers {
            if let Some(p) = self
                .peers
                .get_mut(&a)
                .filter(|p| p.announced < MAX_ANNOUNCED_PER_PEER)
            {
                p.announced += 1;
                listed.push(a);
            }
        }
        if listed.is_empty() {
            return false;
        }
        self.wanted.insert(
            txid,
            Wanted {
                announcers: listed,
                requested: None,
                sent: LocalTime::default(),
            },
        );
        self.unrequested.push_back(txid);
        self.request(now, out);
        true
    }

    /// The mempool evicted these for room: each future fetched here is forgotten as handled
    /// and fetched again from its announcers after `FUTURE_REFETCH_DELAY` (by then its gap
    /// has most likely filled, so it enters as pending and cannot be evicted as a future).
    pub fn evicted(&mut self, txids: &[Hash256], now: LocalTime) {
        for txid in txids {
            if self.held.announcers(txid).is_some() && self.refetch.len() < MAX_HELD_FUTURES {
                self.recent.remove(txid);
                self.refetch.push_back((now + FUTURE_REFETCH_DELAY, *txid));
            }
        }
    }

    /// Evicted futures, and transactions refused for want of room, whose delay is over:
    /// wanted again from their announcers still connected, unless one came back meanwhile.
    fn refetch_due(&mut self, now: Now, out: &mut Outbox) {
        while let Some(&(at, txid)) = self.refetch.front() {
            if at > now.local {
                break;
            }
            self.refetch.pop_front();
            if self.recent.contains(&txid) {
                continue;
            }
            if let Some(announcers) = self.held.announcers(&txid).cloned() {
                self.ask_next(txid, announcers, now, out);
            }
        }
    }

    /// The mempool dropped `count` future transactions this peer relayed, unfilled, at their
    /// expiry: in bulk, that scores.
    pub fn futures_expired(&mut self, peer: PeerId, count: usize, out: &mut Outbox) {
        if count >= ORPHAN_EXPIRED_BULK && self.peers.contains_key(&peer) {
            tracing::debug!(peer, count, "peer's future transactions expired unfilled");
            out.misbehaved(peer, Misbehaviour::OrphanFlood);
        }
    }

    /// The mempool admitted a transaction (from a peer, RPC or the wallet): every relaying
    /// peer not known to have it gets it in its next batch.
    pub fn accepted(
        &mut self,
        txid: Hash256,
        sender: Address,
        nonce: u64,
        now: LocalTime,
        rng: &mut impl Rng,
    ) {
        self.recent.insert(txid);
        for p in self.peers.values_mut().filter(|p| p.relay) {
            if !p.known.contains(&txid) && p.queue.len() < MAX_QUEUED_PER_PEER {
                Self::queue(&mut self.due, p, (sender, nonce, txid), now, rng);
            }
        }
    }

    /// The mempool's ready transactions, for a peer that just completed its handshake:
    /// queued for it (those it is known to have excepted).
    pub fn mempool_contents(
        &mut self,
        peer: PeerId,
        txs: Vec<Announceable>,
        now: LocalTime,
        rng: &mut impl Rng,
    ) {
        let Some(p) = self.peers.get_mut(&peer).filter(|p| p.relay) else {
            return;
        };
        for (txid, sender, nonce) in txs {
            if p.queue.len() >= MAX_QUEUED_PER_PEER {
                break;
            }
            if !p.known.contains(&txid) {
                Self::queue(&mut self.due, p, (sender, nonce, txid), now, rng);
            }
        }
    }

    /// Queues an announcement. A peer with nothing queued is not ticked when its trickle
    /// time passes, so a trickle time in the past is drawn again from now: the trickle is a
    /// Poisson process, memoryless, so that is the same process as redrawing at each tick.
    fn queue(
        due: &mut Option<LocalTime>,
        p: &mut RelayPeer,
        item: (Address, u64, Hash256),
        now: LocalTime,
        rng: &mut impl Rng,
    ) {
        if p.queue.is_empty() && p.next_trickle <= now {
            p.next_trickle = now + trickle_delay(p.outbound, rng);
        }
        p.queue.push(item);
        Self::queued_for(due, p.next_trickle);
    }

    /// Sends each peer whose trickle time has come its batch (a sender's transactions in
    /// nonce order), gives up requests past the timeout and asks the next announcer.
    pub fn tick(&mut self, now: Now, rng: &mut impl Rng, out: &mut Outbox) {
        self.due = None;
        for (peer, p) in self.peers.iter_mut() {
            if p.queue.is_empty() {
                // Redrawn when something is queued (`queue`).
                continue;
            }
            if p.next_trickle <= now.local {
                p.next_trickle = now.local + trickle_delay(p.outbound, rng);
                let mut batch = std::mem::take(&mut p.queue);
                batch.sort_unstable();
                let mut txids = Vec::with_capacity(batch.len());
                for (_, _, txid) in batch {
                    if !p.known.contains(&txid) {
                        p.known.insert(txid);
                        txids.push(txid);
                    }
                }
                self.counts.entry(*peer).or_default().tx_announced += txids.len() as u64;
                out.inv(*peer, InvKind::Tx, &txids);
            } else {
                self.due = Some(self.due.map_or(p.next_trickle, |d| d.min(p.next_trickle)));
            }
        }
        let mut expired = false;
        let mut oldest: Option<LocalTime> = None;
        for (txid, w) in self.wanted.iter_mut() {
            if let Some((asked, at)) = w.requested {
                // `at` or the re-wait below, whichever stays: both are no earlier than `at`.
                // The hard limit is due `TX_REQUEST_TIMEOUT` after the point kept for it
                // here, as `next_wake` counts.
                let limit_from = w.sent + MAX_WAIT_PAST_TIMEOUT;
                let due_from = at.min(limit_from);
                oldest = Some(oldest.map_or(due_from, |o| o.min(due_from)));
                // Counted from the peer's last answer if later: requests wait their turn.
                let since = self.peers.get(&asked).map_or(at, |p| at.max(p.last_answer));
                let given_up = now.local.since(w.sent) >= TX_REQUEST_MAX_WAIT;
                if given_up || now.local.since(since) >= TX_REQUEST_TIMEOUT {
                    if w.announcers.is_empty() && !given_up {
                        // Nobody else to ask: a busy peer is waited for (its liveness is the
                        // ping manager's business), until the hard limit.
                        w.requested = Some((asked, now.local));
                        continue;
                    }
                    w.requested = None;
                    self.unrequested.push_back(*txid);
                    expired = true;
                    self.room = true;
                    if let Some(p) = self.peers.get_mut(&asked) {
                        p.in_flight = p.in_flight.saturating_sub(1);
                    }
                }
            }
        }
        self.oldest_request = oldest;
        self.refetch_due(now, out);
        if expired || !self.unrequested.is_empty() || (self.room && !self.parked.is_empty()) {
            self.request(now, out);
        }
    }

    /// When `tick` next has something to do apart from the trickle (`next_due`): a request
    /// timing out (counted from when it was sent, which is no later than `tick` counts from),
    /// or requests waiting to go out (parked ones once a peer has room again).
    pub fn next_wake(&self, now: LocalTime) -> Wake {
        let mut wake = Wake::NEVER;
        if let Some(at) = self.oldest_request {
            wake.at(at + TX_REQUEST_TIMEOUT);
        }
        if !self.unrequested.is_empty() || (self.room && !self.parked.is_empty()) {
            wake.at(now);
        }
        if let Some(&(at, _)) = self.refetch.front() {
            wake.at(at);
        }
        wake
    }

    /// When the next batch is due (a peer with announcements queued), for the core's timer.
    /// Kept as announcements are queued, not searched for: the core asks after every input.
    pub fn next_due(&self) -> Option<LocalTime> {
        self.due
    }

    /// A peer's queue is not empty any more: its trickle time may be the next one due.
    fn queued_for(due: &mut Option<LocalTime>, next_trickle: LocalTime) {
        *due = Some(due.map_or(next_trickle, |d| d.min(next_trickle)));
    }
}

/// An exponentially distributed delay with the peer's mean (a Poisson process, as Bitcoin
/// Core's trickle): batches do not line up across peers, so timing reveals less.
fn trickle_delay(outbound: bool, rng: &mut impl Rng) -> LocalDuration {
    let mean = if outbound {
        TRICKLE_OUTBOUND_MEAN
    } else {
        TRICKLE_INBOUND_MEAN
    };
    let u: f64 = rng.gen_range(f64::EPSILON..1.0);
    let ms = (-u.ln() * mean.as_millis() as f64).min(mean.as_millis() as f64 * 10.0);
    LocalDuration::from_millis(ms as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::message::InvItem;
    use crate::wire::Message;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    use crate::time::after_epoch as now;

    fn negotiated(relay: &mut TxRelay, peer: PeerId, conn_type: ConnType, rng: &mut StdRng) {
        let event = Internal::PeerNegotiated {
            peer,
            addr: "1.2.3.4:8333".parse().unwrap(),
            conn_type,
            seen_as: None,
            height: 0,
            relay: true,
        };
        relay.on_internal(&event, now(0), rng, &mut Outbox::default());
    }

    fn txid(n: u8) -> Hash256 {
        Hash256([n; 32])
    }

    fn inv(ids: &[Hash256]) -> InvList {
        InvList::truncating(
            ids.iter()
                .map(|h| InvItem {
                    kind: InvKind::Tx,
                    hash: *h,
                })
                .collect(),
        )
    }

    /// (peer, kind of message, the hashes in it) for every INV/GETDATA sent.
    fn sent(out: &mut Outbox) -> Vec<(PeerId, &'static str, Vec<Hash256>)> {
        out.take_outputs()
            .into_iter()
            .filter_map(|o| match o {
                Output::Send(peer, Message::Inv(items)) => Some((
                    peer,
                    "inv",
                    items.as_slice().iter().map(|i| i.hash).collect(),
                )),
                Output::Send(peer, Message::GetData(items)) => Some((
                    peer,
                    "getdata",
                    items.as_slice().iter().map(|i| i.hash).collect(),
                )),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_backlog_behind_a_full_peer_is_parked_until_it_has_room_or_another_announces() {
        let mut rng = StdRng::seed_from_u64(1);
        let mut relay = TxRelay::default();
        let mut out = Outbox::default();
        negotiated(&mut relay, 1, ConnType::Outbound, &mut rng);
        negotiated(&mut relay, 2, ConnType::Outbound, &mut rng);
        out.take_outputs();
        relay.peers.get_mut(&1).unwrap().in_flight = MAX_IN_FLIGHT_PER_PEER;
        relay.on_inv(1, &inv(&[txid(1), txid(2), txid(3)]), now(0), &mut out);
        assert!(sent(&mut out).is_empty(), "peer 1 has no room");
        assert_eq!(relay.parked.len(), 3);
        assert!(relay.unrequested.is_empty());
        assert_eq!(
            relay.next_wake(now(0).local),
            Wake::NEVER,
            "a parked backlog asks for no tick"
        );
        // Another announcer with room gets its request at once.
        relay.on_inv(2, &inv(&[txid(2)]), now(1), &mut out);
        assert_eq!(sent(&mut out), vec![(2, "getdata", vec![txid(2)])]);
        // A verdict that halves peer 1's backlog: the parked are asked for, in order.
        relay.peers.get_mut(&1).unwrap().in_flight = MAX_IN_FLIGHT_PER_PEER / 2 + 1;
        relay.checking.insert(
            txid(9),
            Checking {
                from: 1,
                others: Vec::new(),
            },
        );
        relay.processed(1, txid(9), &TxResult::Accepted, now(2), &mut out);
        assert_eq!(sent(&mut out), vec![(1, "getdata", vec![txid(1), txid(3)])]);
        assert!(relay.parked.is_empty() && relay.unrequested.is_empty());
    }

    #[test]
    fn a_full_peer_that_gets_room_is_asked_for_its_oldest_parked_first() {
        let mut rng = StdRng::seed_from_u64(1);
        let mut relay = TxRelay::default();
        let mut out = Outbox::default();
        negotiated(&mut relay, 1, ConnType::Outbound, &mut rng);
        out.take_outputs();
        relay.peers.get_mut(&1).unwrap().in_flight = MAX_IN_FLIGHT_PER_PEER;
        relay.on_inv(1, &inv(&[txid(1), txid(2)]), now(0), &mut out);
        // One verdict frees one slot; newer announcements arrive before the next tick.
        relay.checking.insert(
            txid(9),
            Checking {
                from: 1,
                others: Vec::new(),
            },
        );
        relay.processed(1, txid(9), &TxResult::Accepted, now(1), &mut out);
        relay.on_inv(1, &inv(&[txid(3)]), now(2), &mut out);
        assert_eq!(
            sent(&mut out),
            vec![(1, "getdata", vec![txid(1)])],
            "the oldest, not the newest, takes the slot"
        );
        assert_eq!(
            relay.parked.iter().copied().collect::<Vec<_>>(),
            vec![txid(2), txid(3)]
        );
    }

    #[test]
    fn an_admitted_transaction_is_announced_once_in_nonce_order_and_not_to_whoever_has_it() {
        let mut rng = StdRng::seed_from_u64(1);
        let mut relay = TxRelay::default();
        let mut out = Outbox::default();
        negotiated(&mut relay, 1, ConnType::Outbound, &mut rng);
        negotiated(&mut relay, 2, ConnType::Inbound, &mut rng);
        // Peer 2 announced tx 9: it is not told about it.
        relay.on_inv(2, &inv(&[txid(9)]), now(0), &mut out);
        out.take_outputs();
        let sender = Address([5; 20]);
        relay.accepted(txid(9), sender, 1, now(0).local, &mut rng);
        relay.accepted(txid(8), sender, 2, now(0).local, &mut rng);
        relay.accepted(txid(7), sender, 0, now(0).local, &mut rng);
        assert!(relay.next_due().is_some());
        // Trickle times are at most ten means away.
        relay.tick(now(10_000), &mut rng, &mut out);
        let batches = sent(&mut out);
        let to = |peer: PeerId| -> Vec<Vec<Hash256>> {
            batches
                .iter()
                .filter(|(p, kind, _)| *p == peer && *kind == "inv")
                .map(|(_, _, h)| h.clone())
                .collect()
        };
        assert_eq!(
            to(1),
            vec![vec![txid(7), txid(9), txid(8)]],
            "nonces 0, 1, 2"
        );
        assert_eq!(to(2), vec![vec![txid(7), txid(8)]]);
        // Once.
        relay.accepted(txid(7), sender, 0, now(10_000).local, &mut rng);
        relay.tick(now(20_000), &mut rng, &mut out);
        assert!(sent(&mut out).iter().all(|(_, kind, _)| *kind != "inv"));
        assert_eq!(relay.counts_of(1).tx_announced, 3);
    }

    /// An idle peer is not ticked at its trickle times: the first announcement queued long
    /// after waits a fresh delay, not none.
    #[test]
    fn an_announcement_to_an_idle_peer_waits_a_fresh_trickle_delay() {
        let mut rng = StdRng::seed_from_u64(1);
        let mut relay = TxRelay::default();
        negotiated(&mut relay, 1, ConnType::Inbound, &mut rng);
        let later = now(3_600_000).local;
        relay.accepted(txid(1), Address([5; 20]), 0, later, &mut rng);
        assert!(relay.next_due().is_some_and(|due| due > later));
    }

    fn some_tx(to: u8) -> Transaction {
        crate::chain::testkit::TestChainBuilder::new(crate::params::Network::Regtest.params())
            .build(Address([to; 20]), vec![])
            .transactions[0]
            .clone()
    }

    #[test]
    fn an_announced_transaction_is_asked_of_one_announcer_outbound_first_then_the_next() {
        let mut rng = StdRng::seed_from_u64(1);
        let mut relay = TxRelay::default();
        let mut out = Outbox::default();
        negotiated(&mut relay, 1, ConnType::Inbound, &mut rng);
        negotiated(&mut relay, 2, ConnType::Outbound, &mut rng);
        negotiated(&mut relay, 3, ConnType::Inbound, &mut rng);
        let tx = some_tx(1);
        let id = tx.txid();
        // Announced by inbound 1 and outbound 2 before a request went out: asked of 2.
        relay.peers.get_mut(&1).unwrap().known.insert(id);
        relay.wanted.insert(
            id,
            Wanted {
                announcers: vec![1, 2],
                requested: None,
                sent: LocalTime::default(),
            },
        );
        for announcer in [1, 2] {
            relay.peers.get_mut(&announcer).unwrap().announced += 1;
        }
        relay.unrequested.push_back(id);
        relay.request(now(0), &mut out);
        assert_eq!(sent(&mut out), vec![(2, "getdata", vec![id])]);
        // A third announcer asks nobody more.
        relay.on_inv(3, &inv(&[id]), now(10), &mut out);
        assert!(sent(&mut out).is_empty());
        // Peer 2 says NOTFOUND: asked of 1, the first of the rest.
        relay.on_not_found(2, &inv(&[id]), now(20), &mut out);
        assert_eq!(sent(&mut out), vec![(1, "getdata", vec![id])]);
        // Peer 1 never answers: after the timeout, asked of 3.
        relay.tick(now(20 + TX_REQUEST_TIMEOUT.as_millis()), &mut rng, &mut out);
        assert!(sent(&mut out).contains(&(3, "getdata", vec![id])));
        // Peer 1's late answer is neither scored nor taken; peer 3's goes to the mempool.
        relay.on_tx(1, tx.clone(), now(0), &mut out);
        assert!(out.take_misbehaviours().is_empty());
        assert!(out.take_outputs().is_empty());
        relay.on_tx(3, tx, now(0), &mut out);
        assert!(matches!(
            out.take_outputs()[..],
            [Output::SubmitTx { peer: 3, .. }]
        ));
        // A transaction nobody announced is scored.
        relay.on_tx(2, some_tx(2), now(0), &mut out);
        assert_eq!(out.take_misbehaviours(), vec![Misbehaviour::Unrequested]);
    }

    #[test]
    fn only_an_answer_extends_a_peers_requests_so_empty_notfounds_hold_nothing() {
        let mut rng = StdRng::seed_from_u64(1);
        let mut relay = TxRelay::default();
        let mut out = Outbox::default();
        negotiated(&mut relay, 1, ConnType::Outbound, &mut rng);
        negotiated(&mut relay, 2, ConnType::Outbound, &mut rng);
        let id = txid(9);
        relay.on_inv(1, &inv(&[id]), now(0), &mut out);
        assert_eq!(sent(&mut out), vec![(1, "getdata", vec![id])]);
        relay.on_inv(2, &inv(&[id]), now(100), &mut out);
        assert!(sent(&mut out).is_empty());
        // Peer 1 never sends it, but keeps sending NOTFOUNDs of nothing it was asked for.
        for t in [2_000, 4_000] {
            relay.on_not_found(1, &inv(&[]), now(t), &mut out);
            relay.on_not_found(1, &inv(&[txid(200)]), now(t), &mut out);
        }
        relay.tick(now(TX_REQUEST_TIMEOUT.as_millis()), &mut rng, &mut out);
        assert!(sent(&mut out).contains(&(2, "getdata", vec![id])));
    }

    #[test]
    fn a_request_is_given_up_after_a_minute_by_a_peer_that_answers_others_or_alone() {
        let mut rng = StdRng::seed_from_u64(1);
        let mut relay = TxRelay::default();
        let mut out = Outbox::default();
        negotiated(&mut relay, 1, ConnType::Outbound, &mut rng);
        negotiated(&mut relay, 2, ConnType::Inbound, &mut rng);
        // Peer 1 announces a transaction others announce too, one nobody else does, and
        // fifteen it will answer, one every four seconds, so it never looks unresponsive.
        let (shared, alone) = (txid(200), txid(201));
        let answers: Vec<Transaction> = (1..=15).map(some_tx).collect();
        let mut ids = vec![shared, alone];
        ids.extend(answers.iter().map(|tx| tx.txid()));
        relay.on_inv(1, &inv(&ids), now(0), &mut out);
        relay.on_inv(2, &inv(&[shared]), now(0), &mut out);
        assert_eq!(sent(&mut out), vec![(1, "getdata", ids.clone())]);
        let asked_of_2 = |out: &mut Outbox| sent(out).contains(&(2, "getdata", vec![shared]));
        for second in 1..TX_REQUEST_MAX_WAIT.as_millis() / 1_000 {
            let t = second * 1_000;
            if second % 4 == 0 {
                relay.on_tx(
                    1,
                    answers[(second / 4 - 1) as usize].clone(),
                    now(t),
                    &mut out,
                );
            }
            relay.tick(now(t), &mut rng, &mut out);
            assert!(!asked_of_2(&mut out), "given up after {second} s");
        }
        assert!(relay.wanted.contains_key(&alone));
        let in_flight = relay.peers[&1].in_flight;
        // A minute after the request went out (the old code waited for as long as peer 1
        // kept answering something, and for ever for what only it announced).
        relay.tick(now(TX_REQUEST_MAX_WAIT.as_millis()), &mut rng, &mut out);
        assert!(asked_of_2(&mut out));
        assert!(
            !relay.wanted.contains_key(&alone),
            "nobody left to ask: forgotten"
        );
        // Those two, and the fifteenth answer it never sent.
        assert_eq!(relay.peers[&1].in_flight, in_flight - 3);
        // It may be announced again, and is then asked for again.
        relay.on_inv(1, &inv(&[alone]), now(61_000), &mut out);
        assert_eq!(sent(&mut out), vec![(1, "getdata", vec![alone])]);
        assert!(out.take_misbehaviours().is_empty());
    }

    #[test]
    fn a_transaction_its_sender_announced_is_not_scored_when_it_comes_unasked() {
        // A late answer: asked of another announcer meanwhile, and perhaps refused for room or
        // forgotten as a reject when the tip moved, so noded has no other record of it.
        let mut rng = StdRng::seed_from_u64(1);
        let mut relay = TxRelay::default();
        let mut out = Outbox::default();
        negotiated(&mut relay, 1, ConnType::Outbound, &mut rng);
        let tx = some_tx(3);
        relay.peers.get_mut(&1).unwrap().known.insert(tx.txid());
        relay.on_tx(1, tx, now(0), &mut out);
        assert!(out.take_misbehaviours().is_empty());
        assert!(out.take_outputs().is_empty(), "not taken either");
        // One it never announced is scored.
        relay.on_tx(1, some_tx(4), now(0), &mut out);
        assert_eq!(out.take_misbehaviours(), vec![Misbehaviour::Unrequested]);
    }

    #[test]
    fn inbound_peers_that_fill_the_wanted_table_leave_room_for_every_other_peer() {
        let mut rng = StdRng::seed_from_u64(1);
        let mut relay = TxRelay::default();
        let mut out = Outbox::default();
        // Four inbound peers announce 55,000 each and never answer.
        let mut n = 0u32;
        let mut fresh = |count: usize| -> Vec<Hash256> {
            (0..count)
                .map(|_| {
                    n += 1;
                    let mut h = [0xee; 32];
                    h[..4].copy_from_slice(&n.to_le_bytes());
                    Hash256(h)
                })
                .collect()
        };
        for peer in 1..=4 {
            negotiated(&mut relay, peer, ConnType::Inbound, &mut rng);
            relay.on_inv(peer, &inv(&fresh(50_000)), now(0), &mut out);
            relay.on_inv(peer, &inv(&fresh(5_000)), now(0), &mut out);
        }
        assert_eq!(relay.wanted_len(), MAX_WANTED);
        sent(&mut out);
        // An honest inbound peer's announcement still gets in (each peer's first
        // `GUARANTEED_ANNOUNCED_PER_PEER` do), as does an outbound peer's; both are asked.
        negotiated(&mut relay, 5, ConnType::Inbound, &mut rng);
        negotiated(&mut relay, 6, ConnType::Outbound, &mut rng);
        let [a, b] = [txid(1), txid(2)];
        relay.on_inv(5, &inv(&[a]), now(10), &mut out);
        relay.on_inv(6, &inv(&[b]), now(10), &mut out);
        assert_eq!(
            sent(&mut out),
            vec![(5, "getdata", vec![a]), (6, "getdata", vec![b])]
        );
        // A fifth stranger gets its guaranteed share and no more.
        negotiated(&mut relay, 7, ConnType::Inbound, &mut rng);
        relay.on_inv(
            7,
            &inv(&fresh(2 * GUARANTEED_ANNOUNCED_PER_PEER)),
            now(10),
            &mut out,
        );
        assert_eq!(
            relay.wanted_len(),
            MAX_WANTED + 2 + GUARANTEED_ANNOUNCED_PER_PEER
        );
    }

    #[test]
    fn a_requested_transaction_goes_to_the_mempool_once_and_an_invalid_one_is_scored() {
        let mut rng = StdRng::seed_from_u64(1);
        let mut relay = TxRelay::default();
        let mut out = Outbox::default();
        negotiated(&mut relay, 1, ConnType::Outbound, &mut rng);
        let tx =
            crate::chain::testkit::TestChainBuilder::new(crate::params::Network::Regtest.params())
                .build(Address([1; 20]), vec![])
                .transactions[0]
                .clone();
        let id = tx.txid();
        relay.on_inv(1, &inv(&[id]), now(0), &mut out);
        assert_eq!(sent(&mut out), vec![(1, "getdata", vec![id])]);
        relay.on_tx(1, tx.clone(), now(0), &mut out);
        let submitted = out
            .take_outputs()
            .into_iter()
            .filter(|o| matches!(o, Output::SubmitTx { peer: 1, .. }))
            .count();
        assert_eq!(submitted, 1);
        assert_eq!(relay.counts_of(1).tx_received, 1);
        relay.processed(
            1,
            id,
            &TxResult::Invalid("bad-signature".into()),
            now(5),
            &mut out,
        );
        assert_eq!(out.take_misbehaviours(), vec![Misbehaviour::InvalidTx]);
        // Handled: announced again, it is not fetched again, and sent again it is ignored.
        relay.on_inv(1, &inv(&[id]), now(10), &mut out);
        assert!(sent(&mut out).is_empty());
        relay.on_tx(1, tx, now(0), &mut out);
        assert!(out.take_misbehaviours().is_empty());
        assert!(out.take_outputs().is_empty());
    }

    #[test]
    fn a_future_refused_past_its_relayers_cap_costs_nothing_and_is_fetched_again() {
        assert!(RETRYABLE.contains(&crate::mempool::MempoolError::TooManyFutureFromPeer.code()));
        let mut rng = StdRng::seed_from_u64(1);
        let mut relay = TxRelay::default();
        let mut out = Outbox::default();
        negotiated(&mut relay, 1, ConnType::Inbound, &mut rng);
        negotiated(&mut relay, 2, ConnType::Inbound, &mut rng);
        let refused = TxResult::Refused("too-many-future-from-peer".to_string());
        for n in 0..=250u8 {
            relay.processed(1, txid(n), &refused, now(0), &mut out);
        }
        assert!(
            out.take_misbehaviours().is_empty(),
            "an honest flood meets the cap"
        );
        // Offered again by another peer: fetched.
        relay.on_inv(2, &inv(&[txid(7)]), now(10), &mut out);
        assert_eq!(sent(&mut out), vec![(2, "getdata", vec![txid(7)])]);
    }

    #[test]
    fn a_future_the_pool_evicts_is_fetched_again_after_the_delay_from_its_announcers() {
        let mut rng = StdRng::seed_from_u64(1);
        let mut relay = TxRelay::default();
        let mut out = Outbox::default();
        negotiated(&mut relay, 1, ConnType::Outbound, &mut rng);
        negotiated(&mut relay, 2, ConnType::Inbound, &mut rng);
        out.take_outputs();
        let (future, pending) = (some_tx(1), some_tx(2));
        let (id, other) = (future.txid(), pending.txid());
        relay.on_inv(1, &inv(&[id, other]), now(0), &mut out);
        relay.on_inv(2, &inv(&[id, other]), now(1), &mut out);
        assert_eq!(sent(&mut out), vec![(1, "getdata", vec![id, other])]);
        relay.on_tx(1, future.clone(), now(2), &mut out);
        relay.on_tx(1, pending, now(2), &mut out);
        out.take_outputs();
        relay.processed(1, id, &TxResult::AcceptedFuture, now(3), &mut out);
        relay.processed(1, other, &TxResult::Accepted, now(3), &mut out);
        // Evicted: nothing at once (its gap is most likely still open), and an eviction of
        // a transaction that was not a future here is not acted on.
        relay.evicted(&[id, other], LocalTime::from_millis(10));
        relay.tick(now(10), &mut rng, &mut out);
        assert!(sent(&mut out).is_empty());
        assert_eq!(
            relay.next_wake(LocalTime::from_millis(10)).time(),
            Some(LocalTime::from_millis(10) + FUTURE_REFETCH_DELAY)
        );
        // After the delay: asked of its announcers again, the outbound one first.
        let due = 10 + FUTURE_REFETCH_DELAY.as_millis();
        relay.tick(now(due), &mut rng, &mut out);
        assert_eq!(sent(&mut out), vec![(1, "getdata", vec![id])]);
        relay.on_tx(1, future, now(due + 1), &mut out);
        assert!(matches!(
            out.take_outputs()[..],
            [Output::SubmitTx { peer: 1, .. }]
        ));
        assert!(out.take_misbehaviours().is_empty());
    }

    #[test]
    fn a_transaction_refused_for_a_reason_not_its_own_is_asked_of_its_other_announcers() {
        let mut rng = StdRng::seed_from_u64(1);
        let mut relay = TxRelay::default();
        let mut out = Outbox::default();
        negotiated(&mut relay, 1, ConnType::Outbound, &mut rng);
        negotiated(&mut relay, 2, ConnType::Inbound, &mut rng);
        negotiated(&mut relay, 3, ConnType::Outbound, &mut rng);
        negotiated(&mut relay, 4, ConnType::Inbound, &mut rng);
        out.take_outputs();
        let tx = some_tx(1);
        let id = tx.txid();
        relay.on_inv(1, &inv(&[id]), now(0), &mut out);
        relay.on_inv(2, &inv(&[id]), now(1), &mut out);
        assert_eq!(sent(&mut out), vec![(1, "getdata", vec![id])]);
        relay.on_tx(1, tx.clone(), now(2), &mut out);
        out.take_outputs();
        // Announced while the pool checks it: remembered, not asked.
        relay.on_inv(3, &inv(&[id]), now(3), &mut out);
        assert!(sent(&mut out).is_empty());
        // Peer 1's futures are over its cap: asked of the outbound announcer 3 at once.
        let over_cap = TxResult::Refused("too-many-future-from-peer".to_string());
        relay.processed(1, id, &over_cap, now(4), &mut out);
        assert_eq!(sent(&mut out), vec![(3, "getdata", vec![id])]);
        relay.on_tx(3, tx.clone(), now(5), &mut out);
        out.take_outputs();
        relay.processed(
            3,
            id,
            &TxResult::Refused("busy".to_string()),
            now(6),
            &mut out,
        );
        assert_eq!(sent(&mut out), vec![(2, "getdata", vec![id])]);
        // Refused for a reason of its own: nobody else is asked, nor is it fetched again.
        relay.on_inv(4, &inv(&[id]), now(7), &mut out);
        relay.on_tx(2, tx, now(8), &mut out);
        out.take_outputs();
        let own = TxResult::Refused("fee-too-low".to_string());
        relay.processed(2, id, &own, now(9), &mut out);
        assert!(sent(&mut out).is_empty());
        relay.on_inv(4, &inv(&[id]), now(10), &mut out);
        assert!(sent(&mut out).is_empty());
        assert!(relay.checking.is_empty() && relay.wanted.is_empty());
        assert!(out.take_misbehaviours().is_empty());
    }

    #[test]
    fn a_transaction_refused_for_room_with_no_other_announcer_is_fetched_again_after_the_delay() {
        let mut rng = StdRng::seed_from_u64(1);
        let mut relay = TxRelay::default();
        let mut out = Outbox::default();
        negotiated(&mut relay, 1, ConnType::Outbound, &mut rng);
        out.take_outputs();
        let tx = some_tx(1);
        let id = tx.txid();
        relay.on_inv(1, &inv(&[id]), now(0), &mut out);
        assert_eq!(sent(&mut out), vec![(1, "getdata", vec![id])]);
        let over_cap = TxResult::Refused("too-many-future-from-peer".to_string());
        let mut at = 1;
        for round in 0..MAX_REFUSED_REFETCHES {
            relay.on_tx(1, tx.clone(), now(at), &mut out);
            out.take_outputs();
            relay.processed(1, id, &over_cap, now(at), &mut out);
            // Every peer announces a transaction once: nobody else will offer it. Not asked
            // again at once (its gap is most likely still open), but after the delay.
            relay.tick(now(at), &mut rng, &mut out);
            assert!(sent(&mut out).is_empty(), "round {round}");
            at += FUTURE_REFETCH_DELAY.as_millis();
            relay.tick(now(at), &mut rng, &mut out);
            assert_eq!(
                sent(&mut out),
                vec![(1, "getdata", vec![id])],
                "round {round}"
            );
        }
        // A gap that stays open this long is given up on.
        relay.on_tx(1, tx, now(at), &mut out);
        out.take_outputs();
        relay.processed(1, id, &over_cap, now(at), &mut out);
        relay.tick(
            now(at + 10 * FUTURE_REFETCH_DELAY.as_millis()),
            &mut rng,
            &mut out,
        );
        assert!(sent(&mut out).is_empty());
        assert!(relay.checking.is_empty() && relay.wanted.is_empty());
        assert!(out.take_misbehaviours().is_empty());
    }

    #[test]
    fn a_peer_whose_futures_expire_unfilled_in_bulk_is_scored() {
        let mut rng = StdRng::seed_from_u64(1);
        let mut relay = TxRelay::default();
        let mut out = Outbox::default();
        negotiated(&mut relay, 1, ConnType::Inbound, &mut rng);
        relay.futures_expired(1, ORPHAN_EXPIRED_BULK - 1, &mut out);
        assert!(
            out.take_misbehaviours().is_empty(),
            "a few lost nonces happen"
        );
        relay.futures_expired(1, ORPHAN_EXPIRED_BULK, &mut out);
        assert_eq!(out.take_misbehaviours(), vec![Misbehaviour::OrphanFlood]);
        // A peer already gone is not scored.
        relay.futures_expired(9, 5_000, &mut out);
        assert!(out.take_misbehaviours().is_empty());
    }
}
