//! The address book: "new" addresses heard of and "tried" addresses once connected to, in
//! bucketed tables keyed by a secret, after Bitcoin Core's addrman (eclipse resistance).
//!
//! An address lands in a bucket chosen by hashing the secret key with its network group and
//! the group of the peer that told us about it, so one source (or one address range) can fill
//! only a few buckets however many addresses it sends. Tables are fixed-size: a full slot keeps
//! its occupant unless that one is stale, and a tried slot's occupant is tested before a
//! newcomer may evict it. Pure: times are inputs (Unix seconds), randomness comes from the
//! caller's RNG.

use super::fpindex::{prefetch, FpIndex};
use super::netgroup::netgroup;
use rand::seq::SliceRandom;
use rand::Rng;
use std::collections::BTreeMap;
use std::net::SocketAddr;

pub const NEW_BUCKETS: usize = 256;
pub const TRIED_BUCKETS: usize = 64;
pub const BUCKET_SIZE: usize = 64;
/// Buckets one source group's addresses may spread over in the new table.
const NEW_BUCKETS_PER_SOURCE_GROUP: u64 = 32;
/// Buckets one address group may spread over in the tried table.
const TRIED_BUCKETS_PER_GROUP: u64 = 8;

/// Addresses a new book has room for before it grows: a node on any network learns this many
/// within minutes, and growing to it from nothing would copy the entries ten times over
/// (~130 KB reserved).
const INITIAL_CAPACITY: usize = 1_024;
/// Random draws `select` makes before it scans the whole book for an eligible address.
const SELECT_DRAWS: usize = 64;
/// Addresses not heard of for this long are stale.
pub const HORIZON_SECS: u64 = 30 * 24 * 60 * 60;
/// Attempts without ever succeeding after which an address is stale.
pub const MAX_RETRIES: u32 = 3;
/// Failures (since the last success) after which a once-good address is stale.
pub const MAX_FAILURES: u32 = 10;
/// Tried-table collisions waiting for their occupant's test; more are dropped (the newcomer
/// stays in the new table), so a flood of good addresses cannot queue evictions.
pub const MAX_COLLISIONS: usize = 10;
/// An occupant that connected this recently keeps its slot without a test.
pub const RECENT_SUCCESS_SECS: u64 = 4 * 3600;
/// A collision whose occupant could not be tested within this long evicts it.
pub const COLLISION_TIMEOUT_SECS: u64 = 40 * 60;

#[derive(Clone, Debug, PartialEq, Eq, bincode::Encode, bincode::Decode)]
pub struct AddrInfo {
    pub addr: SocketAddrBytes,
    /// Who told us (its IP and port); drives new-table bucketing.
    pub source: SocketAddrBytes,
    pub services: u64,
    /// When the address was last heard of (from gossip or a connection).
    pub last_seen: u64,
    pub last_try: u64,
    pub last_success: u64,
    /// Failed attempts since the last success.
    pub attempts: u32,
    pub tried: bool,
}

/// A socket address in a fixed, encodable form (IPv6 or IPv4-mapped, port).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, bincode::Encode, bincode::Decode)]
pub struct SocketAddrBytes {
    pub ip: [u8; 16],
    pub port: u16,
}

impl From<SocketAddr> for SocketAddrBytes {
    fn from(addr: SocketAddr) -> Self {
        let n = crate::wire::NetAddress::new(addr, 0);
        SocketAddrBytes {
            ip: n.ip,
            port: n.port,
        }
    }
}

impl From<SocketAddrBytes> for SocketAddr {
    fn from(b: SocketAddrBytes) -> Self {
        crate::wire::NetAddress {
            services: 0,
            ip: b.ip,
            port: b.port,
        }
        .socket_addr()
    }
}

impl AddrInfo {
    pub fn socket_addr(&self) -> SocketAddr {
        self.addr.into()
    }

    /// Stale entries give way to newcomers and are never selected.
    pub fn is_terrible(&self, now: u64) -> bool {
        if self.last_try != 0 && now.saturating_sub(self.last_try) < 60 {
            return false; // just tried: give it a moment
        }
        self.last_seen > now + 10 * 60
            || now.saturating_sub(self.last_seen) > HORIZON_SECS
            || (self.last_success == 0 && self.attempts >= MAX_RETRIES)
            || (self.attempts >= MAX_FAILURES && now.saturating_sub(self.last_success) > 7 * 86_400)
    }

    /// Relative chance of being selected: lower after failures and just after a try.
    fn chance(&self, now: u64) -> f64 {
        let mut chance = 1.0;
        if now.saturating_sub(self.last_try) < 10 * 60 {
            chance *= 0.01;
        }
        chance * 0.66f64.powi(self.attempts.min(8) as i32)
    }
}

/// A bucket table (new or tried): each slot holds the book position of the entry in it, or
/// nothing. Dense, two bytes a slot (32 KB for the new table): a lookup is one load, which a
/// list of addresses can start ahead of time (`AddrMan::prepare`). A map of only the occupied slots,
/// keyed by slot and holding addresses, took ~100 KB a book at 1,000 entries and two cache
/// misses a lookup, and the book was then looked up again by address.
/// The occupied slots are also listed (in no meaningful order), so one can be drawn at
/// random in constant time.
///
/// Positions are the book's: when an entry moves (a removal swaps the last one in), the
/// book re-points its slot (`repoint`). Every entry is in exactly one slot, its own (the one
/// `AddrMan::home` computes), so positions fit in two bytes.
struct SlotTable {
    /// Slot -> the position of the entry in it, plus one (0: empty).
    at: Vec<u16>,
    /// The occupied slots.
    listed: Vec<u16>,
}

// Slot numbers and entry positions (at most one entry a slot) fit in a u16 with 0 for empty.
const _: () = assert!((NEW_BUCKETS + TRIED_BUCKETS) * BUCKET_SIZE < u16::MAX as usize);

impl SlotTable {
    fn new(slots: usize) -> SlotTable {
        SlotTable {
            at: vec![0; slots],
            listed: Vec::new(),
        }
    }

    /// The position of the entry in `slot`.
    fn get(&self, slot: usize) -> Option<usize> {
        (self.at[slot] as usize).checked_sub(1)
    }

    fn set(&mut self, slot: usize, position: usize) {
        if self.at[slot] == 0 {
            self.listed.push(slot as u16);
        }
        self.at[slot] = u16::try_from(position + 1).expect("one entry a slot at most");
    }

    fn take(&mut self, slot: usize) -> Option<usize> {
        let position = self.get(slot)?;
        self.at[slot] = 0;
        let index = self
            .listed
            .iter()
            .position(|&s| s as usize == slot)
            .expect("occupied slots are listed");
        self.listed.swap_remove(index);
        Some(position)
    }

    /// Empties `slot` if it holds the entry at `position`.
    fn take_if(&mut self, slot: usize, position: usize) {
        if self.get(slot) == Some(position) {
            self.take(slot);
        }
    }

    /// The entry at `from` moved to `to`: `slot`, if it held it, now points there.
    fn repoint(&mut self, slot: usize, from: usize, to: usize) {
        if self.get(slot) == Some(from) {
            self.at[slot] = u16::try_from(to + 1).expect("one entry a slot at most");
        }
    }

    fn len(&self) -> usize {
        self.listed.len()
    }

    /// The position of an occupied slot's entry, drawn uniformly.
    fn draw(&self, rng: &mut impl Rng) -> Option<usize> {
        let slot = *self
            .listed
            .get(rng.gen_range(0..self.listed.len().max(1)))?;
        self.get(slot as usize)
    }

    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.listed.is_empty()
    }
}

pub struct AddrMan {
    key: [u8; 32],
    /// `keyed_hash`'s state once it has taken in the key: copied for each bucket hash instead
    /// of taking in the same 16 bytes again (same hashes, two SipHash rounds fewer).
    bucketing: siphasher::sip::SipHasher24,
    /// In insertion order (removals swap the last entry in), so that sampling with a seeded
    /// RNG is reproducible; looked up by fingerprint.
    entries: Entries,
    new_table: SlotTable,
    tried_table: SlotTable,
    /// Each loopback address and port is its own group (local test networks only).
    local_groups: bool,
    /// Good addresses whose tried slot is held by another, with when the collision arose.
    collisions: BTreeMap<SocketAddr, u64>,
    dirty: bool,
}

/// The book's entries in insertion order (a removal swaps the last entry in), each with its
/// address and fingerprint, indexed by fingerprint.
#[derive(Debug)]
struct Entries {
    list: Vec<Entry>,
    index: FpIndex,
    hasher: KeyedHasher,
}

#[derive(Debug)]
struct Entry {
    fingerprint: u64,
    addr: SocketAddr,
    info: AddrInfo,
}

impl Entries {
    fn with_capacity(capacity: usize, hasher: KeyedHasher) -> Entries {
        Entries {
            list: Vec::with_capacity(capacity),
            index: FpIndex::with_capacity(capacity),
            hasher,
        }
    }

    fn fingerprint(&self, addr: &SocketAddr) -> u64 {
        use std::hash::BuildHasher;
        self.hasher.hash_one(addr)
    }

    fn len(&self) -> usize {
        self.list.len()
    }

    fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    fn values(&self) -> impl Iterator<Item = &AddrInfo> {
        self.list.iter().map(|e| &e.info)
    }

    fn position_hashed(&self, fingerprint: u64, addr: &SocketAddr) -> Option<usize> {
        self.index
            .find(fingerprint, |at| self.list[at].addr == *addr)
    }

    fn position(&self, addr: &SocketAddr) -> Option<usize> {
        self.position_hashed(self.fingerprint(addr), addr)
    }

    fn get(&self, addr: &SocketAddr) -> Option<&AddrInfo> {
        self.position(addr).map(|at| &self.list[at].info)
    }

    fn get_mut(&mut self, addr: &SocketAddr) -> Option<&mut AddrInfo> {
        self.position(addr).map(|at| &mut self.list[at].info)
    }

    fn get_index(&self, at: usize) -> Option<&AddrInfo> {
        self.list.get(at).map(|e| &e.info)
    }

    /// The entry at `at` with its fingerprint (as computed when it was added).
    fn fingerprinted(&self, at: usize) -> Option<(u64, &AddrInfo)> {
        self.list.get(at).map(|e| (e.fingerprint, &e.info))
    }

    /// Starts loading the entry at `at`.
    fn prefetch_at(&self, at: usize) {
        if let Some(entry) = self.list.get(at) {
            prefetch(entry);
        }
    }

    /// Adds an entry whose address is not in the book; returns its position.
    fn push_new(&mut self, fingerprint: u64, addr: SocketAddr, info: AddrInfo) -> usize {
        let at = self.list.len();
        self.index.insert(fingerprint, at);
        self.list.push(Entry {
            fingerprint,
            addr,
            info,
        });
        at
    }

    /// Removes the entry at `at`; the last entry takes its place (returned: its old
    /// position, if one moved).
    fn swap_remove_at(&mut self, at: usize) -> Option<usize> {
        let last = self.list.len() - 1;
        let removed = self.list.swap_remove(at);
        self.index.remove(removed.fingerprint, at);
        (at < last).then(|| {
            self.index.moved(self.list[at].fingerprint, last, at);
            last
        })
    }

    fn into_values(self) -> impl Iterator<Item = AddrInfo> {
        self.list.into_iter().map(|e| e.info)
    }

    /// Starts loading `fingerprint`'s index slot (see `AddrMan::prefetch`).
    fn prefetch_slot(&self, fingerprint: u64) {
        self.index.prefetch(fingerprint);
    }

    /// Starts loading the entry under `fingerprint`, if there is one (its index slot should
    /// be loaded by now). The first candidate is taken unconfirmed: it is the entry in all
    /// but 1 in 2^64 cases, and a wrong guess only loads another line.
    fn prefetch_entry(&self, fingerprint: u64) -> bool {
        let found = self.index.find(fingerprint, |_| true);
        if let Some(at) = found {
            prefetch(&self.list[at]);
        }
        found.is_some()
    }
}

/// Hashes for maps keyed by addresses strangers send: SipHash-1-3 under a key derived from a
/// secret, so nobody can send addresses that all land in one hash bucket (a fixed fast hash
/// would let a peer make every lookup walk its whole flood), yet the same secret gives the
/// same hashes (a simulation replays).
#[derive(Clone, Copy, Debug)]
pub struct KeyedHasher {
    k0: u64,
    k1: u64,
}

impl KeyedHasher {
    /// Keys derived from `secret` (never the secret itself: it also keys the buckets).
    pub fn from_secret(secret: &[u8; 32]) -> KeyedHasher {
        let k = |domain: &[u8]| keyed_hash(secret, &[b"map-key", domain]);
        KeyedHasher {
            k0: k(b"0"),
            k1: k(b"1"),
        }
    }
}

impl std::hash::BuildHasher for KeyedHasher {
    type Hasher = siphasher::sip::SipHasher13;

    fn build_hasher(&self) -> Self::Hasher {
        siphasher::sip::SipHasher13::new_with_keys(self.k0, self.k1)
    }
}

/// For keys that are already uniform and unpredictable: slot numbers drawn with the keyed
/// bucket hash, and fingerprints taken with a `KeyedHasher`. One multiplication spreads them
/// over a table's bits; nobody can aim them at one hash bucket, since what reaches this hasher
/// was keyed with the secret first. (A second SipHash here would cost ~20 ns an address.)
#[derive(Clone, Copy, Debug, Default)]
pub struct Prehashed;

impl std::hash::BuildHasher for Prehashed {
    type Hasher = PrehashedHasher;

    fn build_hasher(&self) -> PrehashedHasher {
        PrehashedHasher(0)
    }
}

/// `Prehashed`'s hasher: meant for one `u64` or `usize`; other input is folded in byte by byte.
#[derive(Clone, Copy, Debug)]
pub struct PrehashedHasher(u64);

/// 2^64 divided by the golden ratio, odd: multiplying by it is a bijection that moves every
/// input bit into the high bits (which hashbrown's control bytes take).
const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

impl std::hash::Hasher for PrehashedHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(*b)).wrapping_mul(GOLDEN);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n).wrapping_mul(GOLDEN);
    }

    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }
}

/// A keyed hash of `parts` for bucketing: SipHash-2-4, a pseudo-random function of its
/// 128-bit key, so without the book's secret nobody can aim addresses at chosen buckets (what
/// Bitcoin Core gets from SHA-256 of its secret; SipHash does it for a tenth of the cost, and
/// a node hashes every address gossip brings it).
fn keyed_hash(key: &[u8; 32], parts: &[&[u8]]) -> u64 {
    finish_keyed(keyed_hasher(key), parts)
}

/// The state of `keyed_hash` under `key` before any part.
fn keyed_hasher(key: &[u8; 32]) -> siphasher::sip::SipHasher24 {
    use std::hash::Hasher;
    let (k, rest) = key.split_at(16);
    let mut h = siphasher::sip::SipHasher24::new_with_key(k.try_into().expect("16 bytes"));
    h.write(rest);
    h
}

fn finish_keyed(mut h: siphasher::sip::SipHasher24, parts: &[&[u8]]) -> u64 {
    use std::hash::Hasher;
    for part in parts {
        h.write(part);
    }
    h.finish()
}

impl AddrMan {
    pub fn new(key: [u8; 32]) -> AddrMan {
        let hasher = KeyedHasher::from_secret(&key);
        AddrMan {
            key,
            bucketing: keyed_hasher(&key),
            entries: Entries::with_capacity(INITIAL_CAPACITY, hasher),
            new_table: SlotTable::new(NEW_BUCKETS * BUCKET_SIZE),
            tried_table: SlotTable::new(TRIED_BUCKETS * BUCKET_SIZE),
            local_groups: false,
            collisions: BTreeMap::new(),
            dirty: false,
        }
    }

    /// The same book, bucketed with each loopback address and port as its own group (`on`, a
    /// local test network) or all loopback as one.
    pub fn with_local_groups(self, on: bool) -> AddrMan {
        if self.local_groups == on {
            return self;
        }
        let entries: Vec<AddrInfo> = self.entries.into_values().collect();
        let mut man = AddrMan::new(self.key);
        man.local_groups = on;
        man.load(entries);
        man
    }

    /// Rebuilds the tables from persisted entries (they are re-bucketed with `key`).
    pub fn from_entries(key: [u8; 32], entries: impl IntoIterator<Item = AddrInfo>) -> AddrMan {
        let mut man = AddrMan::new(key);
        man.load(entries);
        man
    }

    /// Entries whose slot is taken are dropped, as is a second entry for one address.
    fn load(&mut self, entries: impl IntoIterator<Item = AddrInfo>) {
        for info in entries {
            let addr = info.socket_addr();
            let fingerprint = self.entries.fingerprint(&addr);
            if self.entries.position_hashed(fingerprint, &addr).is_some() {
                continue;
            }
            let (tried, slot) = self.home_of(&addr, &info);
            if self.table(tried).get(slot).is_none() {
                let at = self.entries.push_new(fingerprint, addr, info);
                self.table_mut(tried).set(slot, at);
            }
        }
        self.dirty = false;
    }

    fn table(&self, tried: bool) -> &SlotTable {
        if tried {
            &self.tried_table
        } else {
            &self.new_table
        }
    }

    fn table_mut(&mut self, tried: bool) -> &mut SlotTable {
        if tried {
            &mut self.tried_table
        } else {
            &mut self.new_table
        }
    }

    /// The slot an entry lives in: its tried slot if tried (then `true`), else its new slot.
    fn home(&self, e: &Entry) -> (bool, usize) {
        self.home_of(&e.addr, &e.info)
    }

    /// `home` of an entry keyed `addr` (the address it was added under, which may be a form
    /// that `info.socket_addr()` does not give back, such as an IPv4-mapped IPv6 address).
    fn home_of(&self, addr: &SocketAddr, info: &AddrInfo) -> (bool, usize) {
        if info.tried {
            (true, self.tried_slot(addr))
        } else {
            (false, self.new_slot(addr, &info.source.into()))
        }
    }

    /// Removes the entry at `at` from the book (not from its slot: the caller has emptied or
    /// reused that). The last entry takes its place, and its slot follows it.
    fn drop_entry(&mut self, at: usize) {
        if let Some(from) = self.entries.swap_remove_at(at) {
            let (tried, slot) = self.home(&self.entries.list[at]);
            self.table_mut(tried).repoint(slot, from, at);
        }
    }

    pub fn key(&self) -> [u8; 32] {
        self.key
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn tried_len(&self) -> usize {
        self.entries.values().filter(|e| e.tried).count()
    }

    pub fn get(&self, addr: &SocketAddr) -> Option<&AddrInfo> {
        self.entries.get(addr)
    }

    /// `addr`'s keyed hash: what the book's map hashes it to, and a fingerprint no stranger
    /// can predict (the known-address sets keep these instead of addresses).
    pub fn fingerprint(&self, addr: &SocketAddr) -> u64 {
        self.entries.fingerprint(addr)
    }

    /// Starts loading what `add_hashed` of `fingerprint` will read first; a hint that changes
    /// no result. A list of addresses prefetched a few ahead of the one being added has its
    /// cache misses overlap instead of following one another.
    pub fn prefetch(&self, fingerprint: u64) {
        self.entries.prefetch_slot(fingerprint);
    }

    /// The second stage, once the index slot has had time to load: the entry itself, or,
    /// if the book has none (an address about to be added), the new-table slot it would take
    /// from `source`. That slot is returned, for `add_hashed`.
    pub fn prepare(
        &self,
        addr: &SocketAddr,
        fingerprint: u64,
        source: &SocketAddr,
    ) -> Option<usize> {
        if self.entries.prefetch_entry(fingerprint) {
            return None;
        }
        let slot = self.new_slot(addr, source);
        prefetch(&self.new_table.at[slot]);
        Some(slot)
    }

    pub fn entries(&self) -> impl Iterator<Item = &AddrInfo> {
        self.entries.values()
    }

    pub fn take_dirty(&mut self) -> bool {
        std::mem::take(&mut self.dirty)
    }

    /// A snapshot taken with `take_dirty` was not saved: the next one must be.
    pub fn mark_dirty(&mut self) {
        self.dirty = true;
    }

    /// The new-table slot of `addr` heard from `source`.
    pub fn new_slot(&self, addr: &SocketAddr, source: &SocketAddr) -> usize {
        let group = netgroup(addr, self.local_groups);
        let source_group = netgroup(source, self.local_groups);
        let h1 = self.bucket_hash(&[&group.0, &source_group.0]) % NEW_BUCKETS_PER_SOURCE_GROUP;
        let bucket = self.bucket_hash(&[&source_group.0, &h1.to_le_bytes()]) % NEW_BUCKETS as u64;
        self.position(b'N', bucket, addr)
    }

    /// The tried-table slot of `addr`.
    pub fn tried_slot(&self, addr: &SocketAddr) -> usize {
        let group = netgroup(addr, self.local_groups);
        let bytes = SocketAddrBytes::from(*addr);
        let h1 =
            self.bucket_hash(&[&bytes.ip, &bytes.port.to_le_bytes()]) % TRIED_BUCKETS_PER_GROUP;
        let bucket = self.bucket_hash(&[&group.0, &h1.to_le_bytes()]) % TRIED_BUCKETS as u64;
        self.position(b'T', bucket, addr)
    }

    /// `keyed_hash(self.key, parts)`.
    fn bucket_hash(&self, parts: &[&[u8]]) -> u64 {
        finish_keyed(self.bucketing, parts)
    }

    fn position(&self, table: u8, bucket: u64, addr: &SocketAddr) -> usize {
        let bytes = SocketAddrBytes::from(*addr);
        let pos = self.bucket_hash(&[
            &[table],
            &bucket.to_le_bytes(),
            &bytes.ip,
            &bytes.port.to_le_bytes(),
        ]) % BUCKET_SIZE as u64;
        bucket as usize * BUCKET_SIZE + pos as usize
    }

    /// Which bucket (not slot) `addr` from `source` falls in, for tests and diagnostics.
    pub fn new_bucket(&self, addr: &SocketAddr, source: &SocketAddr) -> usize {
        self.new_slot(addr, source) / BUCKET_SIZE
    }

    /// Records an address heard of from `source`. Returns whether it is newly added.
    pub fn add(
        &mut self,
        addr: SocketAddr,
        services: u64,
        source: SocketAddr,
        seen: u64,
        now: u64,
    ) -> bool {
        let hash = self.fingerprint(&addr);
        self.add_hashed(addr, hash, None, services, source, seen, now)
    }

    /// `add`, given `addr`'s `fingerprint` (a gossip handler has taken it already) and
    /// perhaps its new-table slot from `source` (as `prepare` computed it).
    #[allow(clippy::too_many_arguments)]
    pub fn add_hashed(
        &mut self,
        addr: SocketAddr,
        hash: u64,
        new_slot: Option<usize>,
        services: u64,
        source: SocketAddr,
        seen: u64,
        now: u64,
    ) -> bool {
        debug_assert_eq!(hash, self.fingerprint(&addr));
        debug_assert!(new_slot.is_none_or(|slot| slot == self.new_slot(&addr, &source)));
        if addr.port() == 0 || addr.ip().is_unspecified() || addr.ip().is_multicast() {
            return false;
        }
        let seen = seen.min(now);
        if let Some(at) = self.entries.position_hashed(hash, &addr) {
            let info = &mut self.entries.list[at].info;
            if seen > info.last_seen {
                info.last_seen = seen;
                info.services |= services;
                self.dirty = true;
            }
            return false;
        }
        let slot = new_slot.unwrap_or_else(|| self.new_slot(&addr, &source));
        if let Some(occupant) = self.new_table.get(slot) {
            if !self.entries.list[occupant].info.is_terrible(now) {
                return false;
            }
            // The newcomer takes the slot (set below).
            self.drop_entry(occupant);
        }
        let at = self.entries.push_new(
            hash,
            addr,
            AddrInfo {
                addr: addr.into(),
                source: source.into(),
                services,
                last_seen: seen,
                last_try: 0,
                last_success: 0,
                attempts: 0,
                tried: false,
            },
        );
        self.new_table.set(slot, at);
        self.dirty = true;
        true
    }

    /// A connection attempt to `addr` failed.
    pub fn attempt_failed(&mut self, addr: &SocketAddr, now: u64) {
        if let Some(info) = self.entries.get_mut(addr) {
            info.last_try = now;
            info.attempts = info.attempts.saturating_add(1);
            self.dirty = true;
        }
    }

    /// We completed a handshake with `addr`: it moves to the tried table. If its tried slot is
    /// held by an address that is not stale, the occupant is kept when it connected recently,
    /// and otherwise tested first (`collision_to_test`, `resolve_collisions`): a newcomer never
    /// evicts a working address on its own say.
    pub fn mark_good(&mut self, addr: &SocketAddr, now: u64) {
        let Some(info) = self.entries.get_mut(addr) else {
            return;
        };
        info.last_try = now;
        info.last_success = now;
        info.last_seen = now;
        info.attempts = 0;
        self.dirty = true;
        if info.tried {
            return;
        }
        let tried_slot = self.tried_slot(addr);
        if let Some(occupant) = self.tried_table.get(tried_slot) {
            let o = &self.entries.list[occupant].info;
            if !o.is_terrible(now) {
                let recent = now.saturating_sub(o.last_success) < RECENT_SUCCESS_SECS;
                if !recent && self.collisions.len() < MAX_COLLISIONS {
                    self.collisions.entry(*addr).or_insert(now);
                }
                return;
            }
        }
        self.move_to_tried(*addr);
    }

    /// Puts `addr` (in the new table) into its tried slot; a previous occupant goes back to the
    /// new table, or is dropped if its slot there is taken.
    fn move_to_tried(&mut self, addr: SocketAddr) {
        let Some(mut at) = self.entries.position(&addr) else {
            return;
        };
        if self.entries.list[at].info.tried {
            return;
        }
        let (_, new_slot) = self.home(&self.entries.list[at]);
        let tried_slot = self.tried_slot(&addr);
        if let Some(evicted) = self.tried_table.take(tried_slot) {
            let e = &mut self.entries.list[evicted].info;
            e.tried = false;
            let (_, slot) = self.home(&self.entries.list[evicted]);
            // It may take the slot `addr` is leaving.
            if self.new_table.get(slot).is_none_or(|p| p == at) {
                self.new_table.set(slot, evicted);
            } else {
                self.drop_entry(evicted);
                // `addr` may have been the last entry, moved into the gap.
                at = self.entries.position(&addr).expect("still in the book");
            }
        }
        self.new_table.take_if(new_slot, at);
        self.tried_table.set(tried_slot, at);
        self.entries.list[at].info.tried = true;
        self.collisions.remove(&addr);
        self.dirty = true;
    }

    /// A tried-table occupant that a collision is waiting on and that has not been tried since:
    /// the caller should connect to it (a feeler) and report the outcome as usual.
    /// Whether tried-table collisions wait to be settled (`resolve_collisions`).
    pub fn has_collisions(&self) -> bool {
        !self.collisions.is_empty()
    }

    pub fn collision_to_test(&self) -> Option<SocketAddr> {
        self.collisions.iter().find_map(|(addr, since)| {
            let occupant = &self.entries.list[self.tried_table.get(self.tried_slot(addr))?];
            (occupant.info.last_try < *since).then_some(occupant.addr)
        })
    }

    /// Settles collisions: an occupant that answered since keeps its slot; one that failed its
    /// test, or could not be tested in time, gives way to the newcomer.
    pub fn resolve_collisions(&mut self, now: u64) {
        let pending: Vec<(SocketAddr, u64)> =
            self.collisions.iter().map(|(a, t)| (*a, *t)).collect();
        for (addr, since) in pending {
            let still_new = self.entries.get(&addr).is_some_and(|i| !i.tried);
            if !still_new {
                self.collisions.remove(&addr);
                continue;
            }
            let occupant = self.tried_table.get(self.tried_slot(&addr));
            let Some(info) = occupant.map(|at| &self.entries.list[at].info) else {
                self.move_to_tried(addr);
                continue;
            };
            if info.last_success >= since {
                self.collisions.remove(&addr); // the occupant works: it stays
            } else if info.last_try >= since || now.saturating_sub(since) >= COLLISION_TIMEOUT_SECS
            {
                self.move_to_tried(addr); // failed its test, or untestable
            }
        }
    }

    /// Picks an address to dial, weighted by its chance, among those `eligible` accepts.
    /// Tried and new addresses are drawn half the time each when both exist.
    pub fn select(
        &self,
        rng: &mut impl Rng,
        now: u64,
        eligible: impl Fn(&SocketAddr) -> bool,
    ) -> Option<SocketAddr> {
        // Bitcoin Core's way first: draw addresses at random (tried or new table, even odds)
        // and keep one with probability `chance`, asking eligibility only of those kept.
        // This is rejection sampling: each eligible address comes with odds proportional to
        // its chance, and the cost does not grow with the book (the scan below does: every
        // dial would test every address).
        for _ in 0..SELECT_DRAWS {
            let tried = match (self.tried_table.len(), self.new_table.len()) {
                (0, 0) => return None,
                (0, _) => false,
                (_, 0) => true,
                _ => rng.gen_bool(0.5),
            };
            let Some(e) = self
                .table(tried)
                .draw(rng)
                .map(|at| &self.entries.list[at].info)
            else {
                continue;
            };
            if e.is_terrible(now) || rng.gen::<f64>() >= e.chance(now) {
                continue;
            }
            let addr = e.socket_addr();
            if eligible(&addr) {
                return Some(addr);
            }
        }
        // Few eligible addresses (or only recently tried ones): the exact choice among them.
        let candidates: Vec<&AddrInfo> = self
            .entries
            .values()
            .filter(|e| !e.is_terrible(now) && eligible(&e.socket_addr()))
            .collect();
        let tried: Vec<&&AddrInfo> = candidates.iter().filter(|e| e.tried).collect();
        let new: Vec<&&AddrInfo> = candidates.iter().filter(|e| !e.tried).collect();
        let pool = match (tried.is_empty(), new.is_empty()) {
            (true, true) => return None,
            (false, true) => tried,
            (true, false) => new,
            (false, false) => {
                if rng.gen_bool(0.5) {
                    tried
                } else {
                    new
                }
            }
        };
        let total: f64 = pool.iter().map(|e| e.chance(now)).sum();
        let mut pick = rng.gen_range(0.0..total.max(f64::MIN_POSITIVE));
        for e in &pool {
            pick -= e.chance(now);
            if pick <= 0.0 {
                return Some(e.socket_addr());
            }
        }
        pool.last().map(|e| e.socket_addr())
    }

    /// A random sample for a GETADDR answer: 23% of the book's entries (at least 100, or all
    /// of a smaller book), at most `max`, less the stale entries drawn (Bitcoin Core's way:
    /// the answer costs what it holds, with no pass over the whole book to count the stale).
    /// Each entry comes with its fingerprint (what the answer's recipient is then known to
    /// have), read from the book rather than hashed again.
    pub fn sample(&self, rng: &mut impl Rng, now: u64, max: usize) -> Vec<(u64, &AddrInfo)> {
        let len = self.entries.len();
        let want = (len * 23 / 100).max(len.min(100)).min(max);
        let drawn = rand::seq::index::sample(rng, len, want).into_vec();
        // The draws land anywhere in a book that is mostly out of cache: their loads are
        // started together before any is read.
        for &at in &drawn {
            self.entries.prefetch_at(at);
        }
        drawn
            .into_iter()
            .filter_map(|at| self.entries.fingerprinted(at))
            .filter(|(_, e)| !e.is_terrible(now))
            .collect()
    }

    /// A uniform random sample of `count` usable (not stale) entries, or all of them if
    /// there are fewer: what `getnodeaddresses` lists.
    pub fn sample_up_to(&self, rng: &mut impl Rng, now: u64, count: usize) -> Vec<&AddrInfo> {
        let stale = self.entries.values().filter(|e| e.is_terrible(now)).count();
        self.draw_usable(rng, now, count, stale)
    }

    /// `want` usable entries drawn uniformly, given that `stale` entries are not usable.
    fn draw_usable(
        &self,
        rng: &mut impl Rng,
        now: u64,
        want: usize,
        stale: usize,
    ) -> Vec<&AddrInfo> {
        // A uniform draw of `want + stale` entries holds at least `want` usable ones; in a
        // random order, its first `want` usable ones are a uniform sample of them. Drawn by
        // index, so an answer costs what it holds, not what the book holds.
        let amount = want.saturating_add(stale).min(self.entries.len());
        let mut drawn = rand::seq::index::sample(rng, self.entries.len(), amount).into_vec();
        drawn.shuffle(rng);
        drawn
            .into_iter()
            .filter_map(|i| self.entries.get_index(i))
            .filter(|e| !e.is_terrible(now))
            .take(want)
            .collect()
    }

    /// Removes stale entries; returns how many. Each entry's slot is computed, not searched for.
    pub fn remove_terrible(&mut self, now: u64) -> usize {
        // By the addresses the entries were added under (what finds them again).
        let doomed: Vec<SocketAddr> = self
            .entries
            .list
            .iter()
            .filter(|e| e.info.is_terrible(now))
            .map(|e| e.addr)
            .collect();
        for addr in &doomed {
            let at = self.entries.position(addr).expect("listed above");
            let (tried, slot) = self.home(&self.entries.list[at]);
            self.table_mut(tried).take_if(slot, at);
            self.drop_entry(at);
            self.collisions.remove(addr);
        }
        self.dirty |= !doomed.is_empty();
        doomed.len()
    }
}

#[cfg(test)]
impl AddrMan {
    /// Test support: two addresses in 1.2.0.0/16 that want the same tried slot under this
    /// book's key (found by search).
    pub(crate) fn tried_colliding_pair(&self) -> (SocketAddr, SocketAddr) {
        let first: SocketAddr = "1.2.3.4:8333".parse().expect("an address");
        let slot = self.tried_slot(&first);
        (0..=255u8)
            .flat_map(|i| (0..=255u8).map(move |j| SocketAddr::from(([1, 2, i, j], 8333))))
            .find(|a| *a != first && self.tried_slot(a) == slot)
            .map(|other| (first, other))
            .expect("a collision in a /16")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    const NOW: u64 = 1_800_000_000;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn one_source_spreads_over_a_bounded_number_of_buckets() {
        let man = AddrMan::new([7; 32]);
        let source = addr("9.9.9.9:8333");
        let mut buckets = std::collections::HashSet::new();
        for a in 0..=255u8 {
            for b in (0..=255u8).step_by(16) {
                buckets.insert(man.new_bucket(&addr(&format!("{a}.{b}.1.1:8333")), &source));
            }
        }
        assert!(
            buckets.len() <= NEW_BUCKETS_PER_SOURCE_GROUP as usize,
            "{} buckets",
            buckets.len()
        );
        assert!(buckets.len() > 8, "addresses do spread: {}", buckets.len());
    }

    #[test]
    fn bucketing_depends_on_the_secret_key() {
        let a = addr("1.2.3.4:8333");
        let s = addr("5.6.7.8:8333");
        let differs = (0..16u8).any(|k| {
            AddrMan::new([k; 32]).new_slot(&a, &s) != AddrMan::new([k + 1; 32]).new_slot(&a, &s)
        });
        assert!(differs);
    }

    #[test]
    fn a_flood_from_one_source_cannot_fill_the_table() {
        let mut man = AddrMan::new([1; 32]);
        let source = addr("6.6.6.6:1");
        for i in 0..20_000u32 {
            let [a, b, c, d] = i.to_be_bytes();
            man.add(
                addr(&format!("{}.{b}.{c}.{d}:8333", a + 20)),
                1,
                source,
                NOW,
                NOW,
            );
        }
        // One source group reaches at most its buckets' worth of slots.
        assert!(man.len() <= NEW_BUCKETS_PER_SOURCE_GROUP as usize * BUCKET_SIZE);
        // An honest source still gets its addresses in.
        let honest = addr("8.8.8.8:1");
        let added = (0..50u8)
            .filter(|i| man.add(addr(&format!("100.{i}.0.1:8333")), 1, honest, NOW, NOW))
            .count();
        assert!(added > 30, "only {added} of 50 honest addresses got in");
    }

    #[test]
    fn good_moves_to_tried_and_select_finds_it() {
        let mut man = AddrMan::new([2; 32]);
        let a = addr("1.2.3.4:8333");
        assert!(man.add(a, 1, addr("5.5.5.5:1"), NOW - 100, NOW));
        assert!(!man.add(a, 1, addr("5.5.5.5:1"), NOW, NOW), "no duplicate");
        man.mark_good(&a, NOW);
        assert!(man.get(&a).unwrap().tried);
        assert_eq!(man.tried_len(), 1);
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        assert_eq!(man.select(&mut rng, NOW + 3600, |_| true), Some(a));
        assert_eq!(man.select(&mut rng, NOW + 3600, |x| *x != a), None);
    }

    /// The slot table's list (for drawing at random) stays in step with its slots through
    /// sets, replacements and removals.
    #[test]
    fn slot_table_draws_only_occupied_slots() {
        let mut table = SlotTable::new(64);
        let a = |i: usize| i + 1000;
        for i in 0..10 {
            table.set(i * 7, a(i));
        }
        table.set(14, a(99)); // replaces slot 14's entry
        assert_eq!(table.len(), 10);
        for slot in [0, 14, 63] {
            table.take(slot);
        }
        assert_eq!(table.len(), 7);
        let mut rng = rand::rngs::StdRng::seed_from_u64(4);
        let mut drawn = std::collections::BTreeSet::new();
        for _ in 0..500 {
            drawn.insert(table.draw(&mut rng).unwrap());
        }
        let expected: std::collections::BTreeSet<usize> =
            [1, 3, 4, 5, 6, 7, 8].into_iter().map(a).collect();
        assert_eq!(drawn, expected);
        table.repoint(21, a(3), 7);
        table.repoint(28, a(3), 8); // holds a(4): unchanged
        assert_eq!((table.get(21), table.get(28)), (Some(7), Some(a(4))));
        let empty = SlotTable::new(64);
        assert_eq!(empty.draw(&mut rng), None);
    }

    /// `select` draws at random and keeps an address with odds proportional to its chance,
    /// among eligible ones only: an address tried a minute ago (chance 0.01) is picked about a
    /// hundred times less often than a fresh one, and an ineligible one never.
    #[test]
    fn select_favours_addresses_by_their_chance_and_skips_ineligible_ones() {
        let mut man = AddrMan::new([6; 32]);
        let fresh = addr("1.2.3.4:8333");
        let tried_recently = addr("2.3.4.5:8333");
        let excluded = addr("3.4.5.6:8333");
        for a in [fresh, tried_recently, excluded] {
            assert!(man.add(a, 1, addr("5.5.5.5:1"), NOW, NOW));
        }
        man.attempt_failed(&tried_recently, NOW);
        let mut rng = rand::rngs::StdRng::seed_from_u64(9);
        let mut counts = std::collections::BTreeMap::new();
        for _ in 0..20_000 {
            let pick = man.select(&mut rng, NOW + 60, |a| *a != excluded).unwrap();
            *counts.entry(pick).or_insert(0u32) += 1;
        }
        assert!(!counts.contains_key(&excluded));
        let (f, t) = (
            counts[&fresh],
            counts.get(&tried_recently).copied().unwrap_or(0),
        );
        // Expected ratio 1 / (0.01 * 0.66) = 152: allow a wide band for sampling noise.
        assert!(
            t > 0 && f / t > 60 && f / t < 400,
            "fresh {f}, recently tried {t}"
        );
    }

    #[test]
    fn failing_addresses_age_out() {
        let mut man = AddrMan::new([3; 32]);
        let a = addr("1.2.3.4:8333");
        man.add(a, 1, addr("5.5.5.5:1"), NOW, NOW);
        for i in 0..MAX_RETRIES as u64 {
            man.attempt_failed(&a, NOW + i * 100);
        }
        let later = NOW + 3600;
        assert!(man.get(&a).unwrap().is_terrible(later));
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        assert_eq!(man.select(&mut rng, later, |_| true), None);
        assert_eq!(man.remove_terrible(later), 1);
        assert!(man.is_empty());
    }

    #[test]
    fn entries_survive_a_rebuild() {
        let mut man = AddrMan::new([4; 32]);
        for i in 0..50u8 {
            man.add(
                addr(&format!("1.{i}.3.4:8333")),
                1,
                addr("5.5.5.5:1"),
                NOW,
                NOW,
            );
        }
        man.mark_good(&addr("1.7.3.4:8333"), NOW);
        let saved: Vec<AddrInfo> = man.entries().cloned().collect();
        let again = AddrMan::from_entries(man.key(), saved);
        assert_eq!(again.len(), man.len());
        assert!(again.get(&addr("1.7.3.4:8333")).unwrap().tried);
    }

    #[test]
    fn sample_is_bounded_and_fresh() {
        let mut man = AddrMan::new([5; 32]);
        for i in 0..200u8 {
            man.add(
                addr(&format!("2.{i}.3.4:8333")),
                1,
                addr("5.5.5.5:1"),
                NOW,
                NOW,
            );
        }
        let mut rng = rand::rngs::StdRng::seed_from_u64(9);
        let s = man.sample(&mut rng, NOW, 1000);
        assert_eq!(s.len(), 100.max(man.len() * 23 / 100).min(man.len()));
        assert_eq!(man.sample(&mut rng, NOW, 10).len(), 10);
        // getnodeaddresses: as many as asked for, no share limit; all when asked for more.
        assert_eq!(man.sample_up_to(&mut rng, NOW, 150).len(), 150);
        assert_eq!(man.sample_up_to(&mut rng, NOW, usize::MAX).len(), man.len());
        // Stale entries are never sampled: they are left out of the draw's count.
        let stale: Vec<SocketAddr> = (0..150u8)
            .map(|i| addr(&format!("2.{i}.3.4:8333")))
            .filter(|a| man.get(a).is_some())
            .collect();
        for a in &stale {
            for _ in 0..MAX_RETRIES {
                man.attempt_failed(a, NOW);
            }
        }
        let later = NOW + 3600;
        let usable = man.entries().filter(|e| !e.is_terrible(later)).count();
        assert!(usable > 0 && usable < man.len());
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..50 {
            let s = man.sample(&mut rng, later, 1000);
            let drawn = man.len().min(100.max(man.len() * 23 / 100));
            assert!(s.len() <= drawn && s.len() >= drawn.saturating_sub(man.len() - usable));
            assert!(s.iter().all(|(_, e)| !e.is_terrible(later)));
            assert!(s
                .iter()
                .all(|(f, e)| *f == man.fingerprint(&e.socket_addr())));
            seen.extend(s.iter().map(|(_, e)| e.socket_addr()));
        }
        assert_eq!(seen.len(), usable, "every usable entry is drawn sometimes");
    }

    /// A book whose tried table holds `old` (good at NOW) and whose new table holds
    /// `newcomer`, which wants `old`'s tried slot.
    fn book_with_collision() -> (AddrMan, SocketAddr, SocketAddr) {
        let mut man = AddrMan::new([6; 32]);
        let (old, newcomer) = man.tried_colliding_pair();
        let src = addr("5.5.5.5:1");
        man.add(old, 1, src, NOW, NOW);
        man.mark_good(&old, NOW);
        man.add(newcomer, 1, src, NOW, NOW);
        (man, old, newcomer)
    }

    /// Hardening issue, defect 4: `mark_good` evicted a tried entry without testing it.
    #[test]
    fn mark_good_tests_a_tried_occupant_before_evicting_it() {
        let (mut man, old, newcomer) = book_with_collision();

        // The occupant connected recently: it keeps its slot, no test needed.
        man.mark_good(&newcomer, NOW + 60);
        assert!(man.get(&old).unwrap().tried);
        assert!(!man.get(&newcomer).unwrap().tried);
        assert_eq!(man.collision_to_test(), None);

        // Hours later the occupant is not known to work: it is tested, and passes.
        let later = NOW + RECENT_SUCCESS_SECS + 100;
        man.mark_good(&newcomer, later);
        assert_eq!(man.collision_to_test(), Some(old));
        man.mark_good(&old, later + 5);
        man.resolve_collisions(later + 10);
        assert!(man.get(&old).unwrap().tried, "a working occupant stays");
        assert!(!man.get(&newcomer).unwrap().tried);
        assert_eq!(man.collision_to_test(), None);

        // Much later again, the occupant fails its test: then the newcomer moves in.
        let much_later = later + 2 * RECENT_SUCCESS_SECS;
        man.mark_good(&newcomer, much_later);
        assert_eq!(man.collision_to_test(), Some(old));
        man.attempt_failed(&old, much_later + 5);
        man.resolve_collisions(much_later + 10);
        assert!(man.get(&newcomer).unwrap().tried);
        assert!(
            !man.get(&old).unwrap().tried,
            "evicted back to the new table"
        );
    }

    #[test]
    fn an_untestable_occupant_gives_way_after_the_timeout() {
        let (mut man, _old, newcomer) = book_with_collision();
        let t = NOW + RECENT_SUCCESS_SECS + 1;
        man.mark_good(&newcomer, t);
        man.resolve_collisions(t + COLLISION_TIMEOUT_SECS - 1);
        assert!(!man.get(&newcomer).unwrap().tried);
        man.resolve_collisions(t + COLLISION_TIMEOUT_SECS);
        assert!(man.get(&newcomer).unwrap().tried);
    }

    #[test]
    fn collisions_are_bounded() {
        let mut man = AddrMan::new([6; 32]);
        let src = addr("5.5.5.5:1");
        let t = NOW + RECENT_SUCCESS_SECS + 1;
        let mut good = 0;
        for i in 0..=255u8 {
            for j in 0..64u8 {
                let a = addr(&format!("7.{i}.{j}.1:8333"));
                man.add(a, 1, src, NOW, NOW);
                man.mark_good(&a, if good < 1000 { NOW } else { t });
                good += 1;
            }
        }
        assert!(man.collisions.len() <= MAX_COLLISIONS);
    }

    impl AddrMan {
        /// Every entry sits in its own slot and is found there, every occupied slot holds
        /// an entry, and each table lists exactly its occupied slots.
        fn check_tables(&self) {
            for (at, e) in self.entries.list.iter().enumerate() {
                let (tried, slot) = self.home(e);
                assert_eq!(
                    self.table(tried).get(slot),
                    Some(at),
                    "{} off its slot",
                    e.addr
                );
                assert_eq!(self.entries.position(&e.addr), Some(at));
            }
            let mut occupied = 0;
            for table in [&self.new_table, &self.tried_table] {
                let slots: Vec<usize> = (0..table.at.len()).filter(|&s| table.at[s] != 0).collect();
                let mut listed: Vec<usize> = table.listed.iter().map(|&s| s as usize).collect();
                listed.sort_unstable();
                assert_eq!(slots, listed);
                occupied += slots.len();
            }
            assert_eq!(occupied, self.entries.len());
        }
    }

    /// Adds (fresh and stale, so stale occupants are evicted), failures, successes (with
    /// tried-slot evictions and collisions), collision settling and stale removal, drawn at
    /// random over a few crowded groups: the tables keep pointing at the right entries
    /// through every removal that moves one.
    #[test]
    fn tables_follow_entries_through_random_operations() {
        use rand::SeedableRng;
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        let mut man = AddrMan::new([9; 32]);
        let sources = [addr("5.5.5.5:1"), addr("6.6.6.6:1")];
        // Some added in their IPv4-mapped IPv6 form, as a dual-stack socket reports a peer.
        let pick = |rng: &mut rand::rngs::StdRng| {
            let ip = std::net::Ipv4Addr::new(10, rng.gen_range(0..2), rng.gen(), rng.gen());
            if rng.gen_bool(0.1) {
                SocketAddr::from((ip.to_ipv6_mapped(), 8333))
            } else {
                SocketAddr::from((ip, 8333))
            }
        };
        let mut now = NOW;
        let (mut stale_replaced, mut tried_evictions) = (0, 0);
        for step in 0..30_000 {
            now += rng.gen_range(0..30);
            match rng.gen_range(0..100) {
                0..60 => {
                    let seen = if rng.gen_bool(0.2) {
                        now - HORIZON_SECS - 1
                    } else {
                        now
                    };
                    let (a, source) = (pick(&mut rng), sources[rng.gen_range(0..2)]);
                    let taken = man.new_table.get(man.new_slot(&a, &source)).is_some();
                    if man.add(a, 1, source, seen, now) && taken {
                        stale_replaced += 1;
                    }
                }
                60..70 => man.attempt_failed(&pick(&mut rng), now),
                70..95 => {
                    let known = man.entries.list.len();
                    if known > 0 {
                        let a = man.entries.list[rng.gen_range(0..known)].addr;
                        man.mark_good(&a, now);
                    }
                }
                95..98 => {
                    let occupants: Vec<SocketAddr> = man
                        .collisions
                        .keys()
                        .filter_map(|a| man.tried_table.get(man.tried_slot(a)))
                        .map(|at| man.entries.list[at].addr)
                        .collect();
                    man.resolve_collisions(now + rng.gen_range(0..2) * COLLISION_TIMEOUT_SECS);
                    tried_evictions += occupants
                        .iter()
                        .filter(|a| man.get(a).is_none_or(|e| !e.tried))
                        .count();
                }
                _ => {
                    man.remove_terrible(now);
                }
            }
            if step % 97 == 0 {
                man.check_tables();
            }
        }
        man.check_tables();
        assert!(man.tried_len() > 100 && man.len() > 500);
        assert!(
            stale_replaced > 10 && tried_evictions > 10,
            "the moving paths ran: {stale_replaced} stale new occupants replaced, \
             {tried_evictions} tried occupants evicted"
        );
    }

    #[test]
    fn removing_stale_entries_frees_their_slots() {
        let mut man = AddrMan::new([3; 32]);
        let src = addr("5.5.5.5:1");
        let a = addr("1.2.3.4:8333");
        man.add(a, 1, src, NOW, NOW);
        let slot = man.new_slot(&a, &src);
        assert_eq!(man.new_table.get(slot), Some(0));
        assert_eq!(man.entries.list[0].addr, a);
        let stale = NOW + HORIZON_SECS + 1;
        assert_eq!(man.remove_terrible(stale), 1);
        assert_eq!(man.new_table.get(slot), None);
        assert!(man.new_table.is_empty() && man.tried_table.is_empty());
    }

    #[test]
    fn loopback_groups_are_distinct_only_on_local_networks() {
        let src = addr("127.0.0.1:1");
        let spread = |man: &AddrMan| {
            (0..200u16)
                .map(|p| man.new_bucket(&addr(&format!("127.0.0.1:{}", 20_000 + p)), &src))
                .collect::<std::collections::HashSet<_>>()
                .len()
        };
        let man = AddrMan::new([8; 32]);
        assert_eq!(spread(&man), 1, "one group: one bucket for one source");
        let local = AddrMan::new([8; 32]).with_local_groups(true);
        assert!(spread(&local) > 1);
    }
}
