//! The address manager: ADDR and GETADDR gossip (token buckets, relaying fresh addresses,
//! one GETADDR answer per connection, advertising our own address), and the address book
//! itself (`AddrMan`: what is learned, what worked, what failed, when it is saved).
//!
//! Owns the `AddrMan` and each peer's gossip state. Never dials: the peer manager picks
//! addresses from the book the coordinator lends it.

use super::addrman::{AddrInfo, AddrMan, Prehashed};
use super::config::CoreConfig;
use super::io::{ConnType, Internal, Outbox, PeerId, Persist, Wake};
use super::netgroup::is_routable;
use super::peermap::PeerMap;
use crate::time::{LocalDuration, LocalTime, Now};
use crate::wire::{limits, NetAddress, TimestampedAddress};
use rand::rngs::StdRng;
use rand::Rng;
use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};

/// ADDR token bucket: refill rate and burst (Bitcoin Core's figures).
const ADDR_TOKENS_PER_SEC: f64 = 0.1;
const ADDR_TOKENS_MAX: f64 = 1_000.0;
/// An inbound peer's first bucket: enough for a self-advertisement, not for a flood (Bitcoin
/// Core's figure: a stranger that reconnects gets one address in a connection, not ten).
const ADDR_TOKENS_INBOUND_START: f64 = 1.0;
/// Addresses per ADDR that we still relay onwards (bigger ones are GETADDR answers), and to
/// how many peers.
const ADDR_RELAY_MAX_ITEMS: usize = 10;
const ADDR_RELAY_FANOUT: usize = 2;
/// Addresses remembered per peer as known to it (Bitcoin Core's figure), in two generations
/// of half as many: the older half is forgotten when the newer fills.
const KNOWN_ADDRS_MAX: usize = 5_000;
/// How many addresses ahead of the one being added the book is asked to load its index slot
/// (and half as many ahead, the entry, or for an address it lacks, the new-table slot it would
/// take): enough to cover a cache miss with the work of the others.
const PREFETCH_AHEAD: usize = 8;
/// Gossiped address times further ahead than this are not believed (clock skew allowance).
const ADDR_FUTURE_SKEW_SECS: u64 = 10 * 60;
/// What an unbelievable future time is replaced with: five days ago, old enough not to be
/// relayed or preferred.
const ADDR_FUTURE_PENALTY_SECS: u64 = 5 * 86_400;
/// An ADDR entry younger than this is fresh: relayed onwards.
const ADDR_FRESH_SECS: u64 = 600;
/// How long a GETADDR answer is reused, at least, and by how much longer at most (a seeded
/// draw per answer; Bitcoin Core's 21 to 27 hours): a peer that reconnects to ask again gets
/// the same sample, so it cannot map the book by asking many times.
const GETADDR_CACHE_MIN: LocalDuration = LocalDuration::from_mins(21 * 60);
const GETADDR_CACHE_SPREAD_MS: u64 = 6 * 3_600_000;
/// The answer is drawn afresh before then once the book holds this many times the entries it
/// held when the answer was drawn (or any, when it held none): a young network's first
/// askers must not freeze a bootstrap node's answer at a few addresses for a day. Doubling
/// from one entry to the book's capacity reveals at most about 17 samples more.
const GETADDR_CACHE_GROWTH: usize = 2;
/// How often stale entries are dropped from the book.
const CLEANUP_EVERY: LocalDuration = LocalDuration::from_mins(60);
/// How often a changed book is handed to the peer store (a crash loses at most this much).
const PERSIST_EVERY: LocalDuration = LocalDuration::from_secs(60);

/// Whether addresses of `ip` may be gossiped: routable ones, or any on a local network
/// (`CoreConfig::allow_local_addrs`).
pub fn gossipable(allow_local: bool, ip: IpAddr) -> bool {
    allow_local || is_routable(ip)
}

/// The addresses a peer is known to have (it sent them, or we did), as fingerprints (the
/// book's keyed hash: 8 bytes an address instead of 32, and no second hash to look one up).
/// Two generations, like Bitcoin Core's rolling filter: when the newer holds half the bound it
/// becomes the older and the old older is dropped, so the set is bounded and never forgets all
/// at once. A fingerprint collision (1 in 2^64 per pair, unaimable without the secret) costs at
/// most one address not sent.
#[derive(Debug, Default)]
struct KnownAddrs {
    newer: HashSet<u64, Prehashed>,
    older: HashSet<u64, Prehashed>,
}

impl KnownAddrs {
    /// Records `fingerprint`; whether it was unknown.
    fn insert(&mut self, fingerprint: u64) -> bool {
        if self.older.contains(&fingerprint) || self.newer.contains(&fingerprint) {
            return false;
        }
        if self.newer.len() >= KNOWN_ADDRS_MAX / 2 {
            // The old older's table is cleared and reused (no reallocation).
            std::mem::swap(&mut self.newer, &mut self.older);
            self.newer.clear();
        }
        self.newer.insert(fingerprint)
    }

    /// Makes room for `additional` insertions in one allocation (a GETADDR answer's hundreds
    /// would otherwise grow the set through every power of two, rehashing each time); never
    /// beyond what a generation holds.
    fn reserve(&mut self, additional: usize) {
        let room = (KNOWN_ADDRS_MAX / 2).saturating_sub(self.newer.len());
        self.newer.reserve(additional.min(room));
    }

    #[cfg(test)]
    fn contains(&self, fingerprint: u64) -> bool {
        self.newer.contains(&fingerprint) || self.older.contains(&fingerprint)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.newer.len() + self.older.len()
    }
}

#[derive(Debug)]
struct Gossip {
    addr: SocketAddr,
    ready: bool,
    disconnecting: bool,
    tokens: f64,
    tokens_at: LocalTime,
    known: KnownAddrs,
    getaddr_answered: bool,
    /// An addr-fetch connection: closed once its GETADDR answer is in.
    fetch: bool,
}

/// The answer given to every GETADDR until it expires (`GETADDR_CACHE_MIN`).
#[derive(Debug)]
struct GetAddrCache {
    /// The addresses, each with its fingerprint (marked known to each asker).
    items: Vec<(u64, TimestampedAddress)>,
    /// Entries in the book when it was drawn.
    book_len: usize,
    expires: LocalTime,
}

pub struct AddrMgr {
    book: AddrMan,
    peers: PeerMap<Gossip>,
    getaddr_cache: Option<GetAddrCache>,
    last_cleanup: LocalTime,
    last_persist: LocalTime,
}

impl AddrMgr {
    pub fn new(book: AddrMan) -> AddrMgr {
        AddrMgr {
            book,
            peers: PeerMap::new(),
            getaddr_cache: None,
            last_cleanup: LocalTime::default(),
            last_persist: LocalTime::default(),
        }
    }

    pub fn book(&self) -> &AddrMan {
        &self.book
    }

    /// Lent to the peer manager (choosing whom to dial) by the coordinator.
    pub fn book_mut(&mut self) -> &mut AddrMan {
        &mut self.book
    }

    pub fn on_internal(&mut self, event: &Internal, cfg: &CoreConfig, now: Now, out: &mut Outbox) {
        match *event {
            Internal::PeerConnected {
                peer,
                addr,
                conn_type,
                ..
            } => {
                let tokens = if conn_type == ConnType::Inbound {
                    ADDR_TOKENS_INBOUND_START
                } else {
                    ADDR_TOKENS_MAX
                };
                self.peers.insert(
                    peer,
                    Gossip {
                        addr,
                        ready: false,
                        disconnecting: false,
                        tokens,
                        tokens_at: now.local,
                        known: KnownAddrs::default(),
                        getaddr_answered: false,
                        fetch: conn_type == ConnType::AddrFetch,
                    },
                );
            }
            Internal::PeerNegotiated {
                peer,
                addr,
                conn_type,
                seen_as,
                ..
            } => {
                if let Some(p) = self.peers.get_mut(&peer) {
                    p.ready = true;
                }
                if matches!(conn_type, ConnType::Outbound | ConnType::Feeler) {
                    self.book.mark_good(&addr, now.unix_secs());
                }
                if !matches!(conn_type, ConnType::Inbound | ConnType::Feeler) {
                    out.get_addr(peer);
                    self.advertise_self(peer, seen_as, cfg, now, out);
                }
            }
            Internal::PeerDisconnecting { peer } => {
                if let Some(p) = self.peers.get_mut(&peer) {
                    p.disconnecting = true;
                }
            }
            Internal::PeerGone {
                peer, addr, failed, ..
            } => {
                self.peers.remove(&peer);
                if failed {
                    self.book.attempt_failed(&addr, now.unix_secs());
                }
            }
            Internal::DialFailed { addr } => self.book.attempt_failed(&addr, now.unix_secs()),
            Internal::AddrFetchEnded { addr } => {
                let unix = now.unix_secs();
                self.book
                    .add(addr, crate::wire::SERVICE_NETWORK, addr, unix, unix);
            }
            _ => {}
        }
    }

    /// Addresses learned from DNS seeds, bootstrap nodes or LAN discovery; how many were new.
    pub fn discovered(&mut self, addrs: &[SocketAddr], source: SocketAddr, now: Now) -> usize {
        let now = now.unix_secs();
        addrs
            .iter()
            .filter(|a| {
                self.book
                    .add(**a, crate::wire::SERVICE_NETWORK, source, now, now)
            })
            .count()
    }

    /// Tells an outbound peer where we listen: the IP it sees us at, and our listen port.
    fn advertise_self(
        &mut self,
        peer: PeerId,
        seen_as: Option<SocketAddr>,
        cfg: &CoreConfig,
        now: Now,
        out: &mut Outbox,
    ) {
        let (Some(port), Some(seen)) = (cfg.listen_port, seen_as) else {
            return;
        };
        if seen.ip().is_unspecified() || !gossipable(cfg.allow_local_addrs, seen.ip()) {
            return;
        }
        let ours = SocketAddr::new(seen.ip(), port);
        out.addr(
            peer,
            vec![TimestampedAddress {
                time: now.unix_secs(),
                addr: NetAddress::new(ours, cfg.services),
            }],
        );
    }

    pub fn on_addr(
        &mut self,
        peer: PeerId,
        list: &[TimestampedAddress],
        cfg: &CoreConfig,
        now: Now,
        rng: &mut StdRng,
        out: &mut Outbox,
    ) {
        let unix = now.unix_secs();
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        let elapsed = now.local.since(p.tokens_at).as_secs_f64();
        p.tokens = (p.tokens + elapsed * ADDR_TOKENS_PER_SEC).min(ADDR_TOKENS_MAX);
        p.tokens_at = now.local;
        let source = p.addr;
        // What the bucket may let through (hashed up front, so that the book can be asked to
        // load each address's slot a few addresses ahead: a GETADDR answer's lookups then
        // overlap instead of waiting on one cache miss after another).
        let admitted = &list[..list.len().min(p.tokens.max(0.0) as usize + 1)];
        // Each address: (it, its fingerprint, its new-table slot if `prepare` found it new).
        let mut hashed: Vec<(SocketAddr, u64, Option<usize>)> = admitted
            .iter()
            .map(|item| {
                let addr = item.addr.socket_addr();
                (addr, self.book.fingerprint(&addr), None)
            })
            .collect();
        for &(_, fingerprint, _) in hashed.iter().take(PREFETCH_AHEAD) {
            self.book.prefetch(fingerprint);
        }
        for near in hashed.iter_mut().take(PREFETCH_AHEAD / 2) {
            near.2 = self.book.prepare(&near.0, near.1, &source);
        }
        p.known.reserve(admitted.len());
        let mut fresh_new = Vec::new();
        for (k, item) in admitted.iter().enumerate() {
            if p.tokens < 1.0 {
                break; // over the rate: the rest is dropped, without penalty
            }
            p.tokens -= 1.0;
            if let Some(&(_, ahead, _)) = hashed.get(k + PREFETCH_AHEAD) {
                self.book.prefetch(ahead);
            }
            if let Some(near) = hashed.get_mut(k + PREFETCH_AHEAD / 2) {
                near.2 = self.book.prepare(&near.0, near.1, &source);
            }
            let (addr, fingerprint, new_slot) = hashed[k];
            p.known.insert(fingerprint);
            if !gossipable(cfg.allow_local_addrs, addr.ip()) {
                continue; // never stored, relayed or dialled
            }
            // A time far in the future is a lie meant to look fresh: treat it as old.
            let time = if item.time > unix + ADDR_FUTURE_SKEW_SECS {
                unix.saturating_sub(ADDR_FUTURE_PENALTY_SECS)
            } else {
                item.time.min(unix)
            };
            let added = self.book.add_hashed(
                addr,
                fingerprint,
                new_slot,
                item.addr.services,
                source,
                time,
                unix,
            );
            if added && unix - time < ADDR_FRESH_SECS {
                fresh_new.push((fingerprint, TimestampedAddress { time, ..*item }));
            }
        }
        if p.fetch {
            // The answer to our GETADDR (the first ADDR after it; even an empty one).
            out.disconnect(peer, super::io::DisconnectReason::AddrFetchDone);
        }
        // Addresses earn no eviction protection: they are free to make up.
        if list.len() <= ADDR_RELAY_MAX_ITEMS && !fresh_new.is_empty() {
            self.relay(peer, &fresh_new, rng, out);
        }
    }

    /// Forwards newly learned, fresh addresses to a few other peers that don't know them.
    fn relay(
        &mut self,
        from: PeerId,
        items: &[(u64, TimestampedAddress)],
        rng: &mut StdRng,
        out: &mut Outbox,
    ) {
        let mut targets: Vec<PeerId> = self
            .peers
            .iter()
            .filter(|(id, p)| **id != from && p.ready && !p.disconnecting)
            .map(|(id, _)| *id)
            .collect();
        for i in 0..targets.len().min(ADDR_RELAY_FANOUT) {
            let j = rng.gen_range(i..targets.len());
            targets.swap(i, j);
        }
        targets.truncate(ADDR_RELAY_FANOUT);
        for target in targets {
            let p = self.peers.get_mut(&target).expect("listed above");
            let unknown: Vec<TimestampedAddress> = items
                .iter()
                .filter(|(fingerprint, _)| p.known.insert(*fingerprint))
                .map(|(_, item)| *item)
                .collect();
            out.addr(target, unknown);
        }
    }

    /// GETADDR: answered once a connection, with the node's current answer (a sample of the
    /// book drawn for every asker until it expires or the book has grown, `GetAddrCache`).
    pub fn on_getaddr(
        &mut self,
        peer: PeerId,
        cfg: &CoreConfig,
        now: Now,
        rng: &mut StdRng,
        out: &mut Outbox,
    ) {
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        if p.getaddr_answered {
            return;
        }
        p.getaddr_answered = true;
        let book_len = self.book.len();
        let fresh = self.getaddr_cache.as_ref().is_some_and(|c| {
            now.local < c.expires
                && !(book_len > c.book_len && book_len >= c.book_len * GETADDR_CACHE_GROWTH)
        });
        if !fresh {
            let items = self
                .book
                .sample(rng, now.unix_secs(), limits::MAX_ADDR_ITEMS)
                .into_iter()
                .filter(|(_, e)| gossipable(cfg.allow_local_addrs, e.socket_addr().ip()))
                .map(|(fingerprint, e)| {
                    let item = TimestampedAddress {
                        time: e.last_seen,
                        addr: NetAddress::new(e.socket_addr(), e.services),
                    };
                    (fingerprint, item)
                })
                .collect();
            let spread = LocalDuration::from_millis(rng.gen_range(0..=GETADDR_CACHE_SPREAD_MS));
            self.getaddr_cache = Some(GetAddrCache {
                items,
                book_len,
                expires: now.local + GETADDR_CACHE_MIN + spread,
            });
        }
        let cache = self.getaddr_cache.as_ref().expect("drawn above");
        let p = self.peers.get_mut(&peer).expect("looked up above");
        p.known.reserve(cache.items.len());
        let mut items = Vec::with_capacity(cache.items.len());
        for &(fingerprint, item) in &cache.items {
            p.known.insert(fingerprint);
            items.push(item);
        }
        out.addr_answer(peer, items);
    }

    /// Up to `count` addresses of the book for `getnodeaddresses` (no share limit, unlike a
    /// GETADDR answer), drawn with the core's RNG.
    pub fn sample(&self, now: Now, count: usize, rng: &mut StdRng) -> Vec<AddrInfo> {
        self.book
            .sample_up_to(rng, now.unix_secs(), count)
            .into_iter()
            .cloned()
            .collect()
    }

    /// When `tick` next has something to do: the hourly cleanup, the minute's snapshot, and
    /// every tick while tried-table collisions wait (they time out on wall-clock seconds).
    pub fn next_wake(&self, now: LocalTime) -> Wake {
        let mut wake = Wake::NEVER;
        wake.at(self.last_cleanup + CLEANUP_EVERY);
        wake.at(self.last_persist + PERSIST_EVERY);
        if self.book.has_collisions() {
            wake.at(now);
        }
        wake
    }

    /// Book upkeep: stale entries out hourly, tried-table collisions settled, and the book
    /// handed to the peer store when it changed.
    pub fn tick(&mut self, now: Now, out: &mut Outbox) {
        if now.local.since(self.last_cleanup) >= CLEANUP_EVERY {
            self.last_cleanup = now.local;
            self.book.remove_terrible(now.unix_secs());
        }
        self.book.resolve_collisions(now.unix_secs());
        if now.local.since(self.last_persist) >= PERSIST_EVERY {
            self.last_persist = now.local;
            self.persist(false, out);
        }
    }

    /// Hands the book to the peer store if it changed since the last time (or `force`).
    pub fn persist(&mut self, force: bool, out: &mut Outbox) {
        if self.book.take_dirty() || force {
            out.persist(Persist::Addresses(self.book.entries().cloned().collect()));
        }
    }

    /// A snapshot the shell could not hand over: the next one is sent whatever happens.
    pub fn requeue(&mut self) {
        self.book.mark_dirty();
    }
}

#[cfg(test)]
mod tests {
    use super::super::io::Output;
    use super::*;
    use crate::encoding::BoundedVec;
    use crate::types::NodeId;
    use crate::wire::Message;
    use rand::SeedableRng;

    const T0: u64 = 1_800_000_000_000;

    #[test]
    fn the_known_set_forgets_its_older_half_and_never_outgrows_its_bound() {
        let mut known = KnownAddrs::default();
        let half = (KNOWN_ADDRS_MAX / 2) as u64;
        for f in 0..half {
            assert!(known.insert(f));
        }
        assert!(!known.insert(0), "a fingerprint is known once inserted");
        // The newer generation is full: it becomes the older one at the next insert.
        assert!((0..half).all(|f| known.contains(f)));
        for f in half..3 * half {
            assert!(known.insert(f));
            assert!(known.len() <= KNOWN_ADDRS_MAX);
        }
        // Two more halves went in: the first half is forgotten, the last two are known.
        assert!((0..half).all(|f| !known.contains(f)));
        assert!((half..3 * half).all(|f| known.contains(f)));
        assert!(known.insert(0), "a forgotten fingerprint is new again");
    }

    fn now(after_ms: u64) -> Now {
        Now {
            local: LocalTime::from_millis(after_ms),
            unix_ms: T0 + after_ms,
        }
    }

    /// Connects and negotiates `peer`; returns what the manager sent it.
    fn ready(
        mgr: &mut AddrMgr,
        cfg: &CoreConfig,
        peer: PeerId,
        from: &str,
        conn_type: ConnType,
    ) -> Vec<Output> {
        let addr: SocketAddr = from.parse().unwrap();
        let mut out = Outbox::default();
        mgr.on_internal(
            &Internal::PeerConnected {
                peer,
                addr,
                node_id: NodeId([peer as u8; 32]),
                conn_type,
            },
            cfg,
            now(0),
            &mut out,
        );
        mgr.on_internal(
            &Internal::PeerNegotiated {
                peer,
                addr,
                conn_type,
                seen_as: None,
                height: 0,
                relay: true,
            },
            cfg,
            now(0),
            &mut out,
        );
        out.take_outputs()
    }

    fn items(list: &[(&str, u64)]) -> Vec<TimestampedAddress> {
        list.iter()
            .map(|(a, time)| TimestampedAddress {
                time: *time,
                addr: NetAddress::new(a.parse().unwrap(), 1),
            })
            .collect()
    }

    fn relayed(out: &mut Outbox) -> Vec<(PeerId, Vec<TimestampedAddress>)> {
        out.take_outputs()
            .into_iter()
            .filter_map(|o| match o {
                Output::Send(p, Message::Addr(list)) => Some((p, list.as_slice().to_vec())),
                _ => None,
            })
            .collect()
    }

    /// Hardening issue, defect 4: loopback, RFC 1918 and link-local addresses were stored,
    /// relayed and dialled from gossip.
    #[test]
    fn gossiped_local_addresses_are_not_stored_or_relayed_on_public_networks() {
        let cfg = CoreConfig::new(NodeId([0; 32]));
        let mut rng = StdRng::seed_from_u64(1);
        let mut mgr = AddrMgr::new(AddrMan::new([1; 32]));
        // Outbound: its bucket holds more than the one address an inbound peer starts with.
        ready(&mut mgr, &cfg, 1, "8.8.8.8:5000", ConnType::Outbound);
        ready(&mut mgr, &cfg, 2, "9.9.9.9:5000", ConnType::Inbound);
        let t = T0 / 1000;
        let list = items(&[
            ("127.0.0.1:8333", t),
            ("10.1.2.3:8333", t),
            ("192.168.1.1:8333", t),
            ("169.254.0.1:8333", t),
            ("[fe80::1]:8333", t),
            ("5.6.7.8:8333", t),
        ]);
        let mut out = Outbox::default();
        mgr.on_addr(1, &list, &cfg, now(0), &mut rng, &mut out);
        assert_eq!(mgr.book().len(), 1, "only the routable address is stored");
        let forwarded: Vec<SocketAddr> = relayed(&mut out)
            .into_iter()
            .flat_map(|(_, l)| l)
            .map(|i| i.addr.socket_addr())
            .collect();
        assert_eq!(
            forwarded,
            vec!["5.6.7.8:8333".parse::<SocketAddr>().unwrap()]
        );

        // On a local network (regtest) the same gossip is kept.
        let mut cfg = cfg;
        cfg.allow_local_addrs = true;
        let mut local = AddrMgr::new(AddrMan::new([1; 32]).with_local_groups(true));
        ready(&mut local, &cfg, 1, "127.0.0.1:5000", ConnType::Outbound);
        let list = items(&[("127.0.0.1:8333", t), ("10.1.2.3:8333", t)]);
        local.on_addr(1, &list, &cfg, now(0), &mut rng, &mut out);
        assert_eq!(local.book().len(), 2);
    }

    /// An address fetch asks once (GETADDR), is closed by the first ADDR that follows (an
    /// empty one too: a GETADDR is always answered), and its node then joins the book.
    #[test]
    fn an_address_fetch_ends_with_its_answer_and_its_node_joins_the_book() {
        let cfg = CoreConfig::new(NodeId([0; 32]));
        let mut rng = StdRng::seed_from_u64(1);
        // The bootstrap node knows nobody yet: it still answers, with an empty ADDR.
        let mut seed = AddrMgr::new(AddrMan::new([2; 32]));
        ready(&mut seed, &cfg, 9, "3.3.3.3:5000", ConnType::Inbound);
        let mut out = Outbox::default();
        seed.on_getaddr(9, &cfg, now(0), &mut rng, &mut out);
        let answer = relayed(&mut out);
        assert_eq!(answer.len(), 1);
        assert!(answer[0].1.is_empty());

        let mut mgr = AddrMgr::new(AddrMan::new([1; 32]));
        let mut out = Outbox::default();
        let addr: SocketAddr = "7.7.7.7:8333".parse().unwrap();
        let sent = ready(&mut mgr, &cfg, 1, "7.7.7.7:8333", ConnType::AddrFetch);
        let asked = sent
            .into_iter()
            .any(|o| matches!(o, Output::Send(1, Message::GetAddr)));
        assert!(asked, "GETADDR sent");
        let t = T0 / 1000;
        mgr.on_addr(1, &[], &cfg, now(50), &mut rng, &mut out);
        let mut closed = false;
        while let Some(e) = out.next_internal() {
            closed |= matches!(
                e,
                Internal::DisconnectRequested {
                    peer: 1,
                    reason: super::super::io::DisconnectReason::AddrFetchDone
                }
            );
        }
        assert!(closed, "the answer closes the fetch");
        assert_eq!(
            mgr.book().len(),
            0,
            "not in the book while it is being asked"
        );
        mgr.on_internal(&Internal::AddrFetchEnded { addr }, &cfg, now(60), &mut out);
        assert_eq!(mgr.book().len(), 1);
        assert!(mgr.book().get(&addr).is_some_and(|e| e.last_seen <= t + 1));
    }

    /// `n` routable addresses in as many /16 groups, seen at `t`.
    fn spread(n: usize, first: usize, t: u64) -> Vec<TimestampedAddress> {
        (first..first + n)
            .map(|i| TimestampedAddress {
                time: t,
                addr: NetAddress::new(
                    SocketAddr::from(([11 + (i / 250) as u8, (i % 250) as u8, 7, 1], 8333)),
                    1,
                ),
            })
            .collect()
    }

    fn answer_to(mgr: &mut AddrMgr, cfg: &CoreConfig, peer: PeerId, at: u64) -> Vec<SocketAddr> {
        let mut rng = StdRng::seed_from_u64(peer);
        let mut out = Outbox::default();
        ready(
            mgr,
            cfg,
            peer,
            &format!("8.8.{peer}.8:5000"),
            ConnType::Inbound,
        );
        mgr.on_getaddr(peer, cfg, now(at), &mut rng, &mut out);
        let mut answer: Vec<SocketAddr> = relayed(&mut out)
            .into_iter()
            .flat_map(|(_, l)| l)
            .map(|i| i.addr.socket_addr())
            .collect();
        answer.sort();
        answer
    }

    /// A stranger that reconnects to ask again got a new 23 % of the book each time, and so
    /// the whole book in a few dozen connections.
    #[test]
    fn getaddr_answers_are_reused_until_they_expire_or_the_book_doubles() {
        let cfg = CoreConfig::new(NodeId([0; 32]));
        let mut rng = StdRng::seed_from_u64(1);
        let mut mgr = AddrMgr::new(AddrMan::new([1; 32]));
        ready(&mut mgr, &cfg, 1, "9.9.9.9:5000", ConnType::Outbound);
        let t = T0 / 1000;
        let mut out = Outbox::default();
        mgr.on_addr(1, &spread(1_000, 0, t), &cfg, now(0), &mut rng, &mut out);
        let held = mgr.book().len();
        assert!(held > 500, "{held}"); // some land on the same bucket slot
                                       // Askers with their own draws (each seeds the RNG differently) get one answer.
        let first = answer_to(&mut mgr, &cfg, 2, 1_000);
        assert_eq!(first.len(), held * 23 / 100);
        for peer in 3..8 {
            assert_eq!(answer_to(&mut mgr, &cfg, peer, 60_000 * peer), first);
        }
        // After 27 hours at most, a new one.
        let later = answer_to(&mut mgr, &cfg, 8, 27 * 3_600_000 + 1_000);
        assert_ne!(later, first);
        assert_eq!(answer_to(&mut mgr, &cfg, 9, 27 * 3_600_000 + 2_000), later);
        // A book that has doubled since is sampled again at once.
        let fresh = t + 27 * 3_600;
        for (peer, first) in [(10, 1_000), (12, 2_000)] {
            ready(
                &mut mgr,
                &cfg,
                peer,
                &format!("9.9.9.{peer}:5000"),
                ConnType::Outbound,
            );
            let list = spread(1_000, first, fresh);
            let at = now(27 * 3_600_000 + 3_000);
            mgr.on_addr(peer, &list, &cfg, at, &mut rng, &mut out);
        }
        let grown = mgr.book().len();
        assert!(grown >= 2 * held, "{grown}");
        let regrown = answer_to(&mut mgr, &cfg, 11, 27 * 3_600_000 + 4_000);
        assert_eq!(regrown.len(), grown * 23 / 100);
    }

    /// An inbound stranger's first ADDR carries one address that counts, as in Bitcoin Core
    /// (ten did before).
    #[test]
    fn an_inbound_peer_starts_with_one_address_token() {
        let cfg = CoreConfig::new(NodeId([0; 32]));
        let mut rng = StdRng::seed_from_u64(1);
        let mut mgr = AddrMgr::new(AddrMan::new([1; 32]));
        ready(&mut mgr, &cfg, 1, "9.9.9.9:5000", ConnType::Inbound);
        let mut out = Outbox::default();
        mgr.on_addr(
            1,
            &spread(10, 0, T0 / 1000),
            &cfg,
            now(0),
            &mut rng,
            &mut out,
        );
        assert_eq!(mgr.book().len(), 1);
        // Ten seconds on, a token more.
        mgr.on_addr(
            1,
            &spread(10, 10, T0 / 1000),
            &cfg,
            now(10_000),
            &mut rng,
            &mut out,
        );
        assert_eq!(mgr.book().len(), 2);
    }

    /// Defect 4: a future timestamp counted as fresh, so it was relayed and looked recent.
    #[test]
    fn future_address_times_are_not_fresh() {
        let cfg = CoreConfig::new(NodeId([0; 32]));
        let mut rng = StdRng::seed_from_u64(1);
        let mut mgr = AddrMgr::new(AddrMan::new([1; 32]));
        // Outbound: its bucket holds more than the one address an inbound peer starts with.
        ready(&mut mgr, &cfg, 1, "8.8.8.8:5000", ConnType::Outbound);
        ready(&mut mgr, &cfg, 2, "9.9.9.9:5000", ConnType::Inbound);
        let t = T0 / 1000;
        let mut out = Outbox::default();
        mgr.on_addr(
            1,
            &items(&[("5.6.7.8:8333", t + 86_400)]),
            &cfg,
            now(0),
            &mut rng,
            &mut out,
        );
        assert!(
            relayed(&mut out).is_empty(),
            "a far-future address is not relayed"
        );
        let stored = mgr.book().get(&"5.6.7.8:8333".parse().unwrap()).unwrap();
        assert!(stored.last_seen <= t - ADDR_FUTURE_PENALTY_SECS);
        // Within the clock-skew allowance it is fresh, relayed with our time, not its own.
        mgr.on_addr(
            1,
            &items(&[("5.6.7.9:8333", t + 60)]),
            &cfg,
            now(0),
            &mut rng,
            &mut out,
        );
        let sent = relayed(&mut out);
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].1[0].time, t);
    }

    #[test]
    fn getaddr_is_answered_once_per_connection_and_outbound_peers_are_asked() {
        let mut cfg = CoreConfig::new(NodeId([0; 32]));
        cfg.listen_port = Some(8333);
        let mut rng = StdRng::seed_from_u64(1);
        let mut mgr = AddrMgr::new(AddrMan::new([1; 32]));
        let t = now(0);
        mgr.discovered(
            &["5.6.7.8:8333".parse().unwrap()],
            "1.1.1.1:53".parse().unwrap(),
            t,
        );
        ready(&mut mgr, &cfg, 1, "8.8.8.8:5000", ConnType::Inbound);
        let mut out = Outbox::default();
        mgr.on_getaddr(1, &cfg, t, &mut rng, &mut out);
        assert_eq!(relayed(&mut out).len(), 1);
        mgr.on_getaddr(1, &cfg, t, &mut rng, &mut out);
        assert!(relayed(&mut out).is_empty(), "answered once");

        let addr: SocketAddr = "9.9.9.9:8333".parse().unwrap();
        mgr.on_internal(
            &Internal::PeerConnected {
                peer: 2,
                addr,
                node_id: NodeId([2; 32]),
                conn_type: ConnType::Outbound,
            },
            &cfg,
            t,
            &mut out,
        );
        let seen_as = Some("4.4.4.4:40000".parse().unwrap());
        mgr.on_internal(
            &Internal::PeerNegotiated {
                peer: 2,
                addr,
                conn_type: ConnType::Outbound,
                seen_as,
                height: 0,
                relay: true,
            },
            &cfg,
            t,
            &mut out,
        );
        let sent = out.take_outputs();
        assert!(sent.contains(&Output::Send(2, Message::GetAddr)));
        let own = TimestampedAddress {
            time: t.unix_secs(),
            addr: NetAddress::new("4.4.4.4:8333".parse().unwrap(), cfg.services),
        };
        assert!(sent.contains(&Output::Send(
            2,
            Message::Addr(BoundedVec::new(vec![own]).unwrap())
        )));
    }

    #[test]
    fn a_changed_book_is_persisted_once_a_minute_and_again_if_the_save_was_deferred() {
        let mut mgr = AddrMgr::new(AddrMan::new([1; 32]));
        let mut out = Outbox::default();
        mgr.discovered(
            &["5.6.7.8:8333".parse().unwrap()],
            "1.1.1.1:53".parse().unwrap(),
            now(0),
        );
        mgr.tick(now(59_999), &mut out);
        assert!(out.take_outputs().is_empty());
        mgr.tick(now(60_000), &mut out);
        assert_eq!(out.take_outputs().len(), 1);
        mgr.requeue();
        mgr.tick(now(120_000), &mut out);
        assert_eq!(
            out.take_outputs().len(),
            1,
            "the deferred snapshot is sent again"
        );
        mgr.tick(now(180_000), &mut out);
        assert!(out.take_outputs().is_empty(), "unchanged: nothing to save");
    }
}
