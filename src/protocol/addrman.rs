//! The address book: "new" addresses heard of and "tried" addresses once connected to, in
//! bucketed tables keyed by a secret, after Bitcoin Core's addrman (eclipse resistance).
//!
//! An address lands in a bucket chosen by hashing the secret key with its network group and
//! the group of the peer that told us about it, so one source (or one address range) can fill
//! only a few buckets however many addresses it sends. Tables are fixed-size: a full slot keeps
//! its occupant unless that one is stale. Pure: times are inputs (Unix seconds), randomness
//! comes from the caller's RNG.

use super::netgroup::netgroup;
use crate::types::hash::sha256d_parts;
use rand::Rng;
use std::collections::HashMap;
use std::net::SocketAddr;

pub const NEW_BUCKETS: usize = 256;
pub const TRIED_BUCKETS: usize = 64;
pub const BUCKET_SIZE: usize = 64;
/// Buckets one source group's addresses may spread over in the new table.
const NEW_BUCKETS_PER_SOURCE_GROUP: u64 = 32;
/// Buckets one address group may spread over in the tried table.
const TRIED_BUCKETS_PER_GROUP: u64 = 8;

/// Addresses not heard of for this long are stale.
pub const HORIZON_SECS: u64 = 30 * 24 * 60 * 60;
/// Attempts without ever succeeding after which an address is stale.
pub const MAX_RETRIES: u32 = 3;
/// Failures (since the last success) after which a once-good address is stale.
pub const MAX_FAILURES: u32 = 10;

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

pub struct AddrMan {
    key: [u8; 32],
    entries: HashMap<SocketAddr, AddrInfo>,
    new_table: Vec<Option<SocketAddr>>,
    tried_table: Vec<Option<SocketAddr>>,
    dirty: bool,
}

fn hash_u64(parts: &[&[u8]]) -> u64 {
    let h = sha256d_parts(parts);
    u64::from_le_bytes(h.0[..8].try_into().expect("8 bytes"))
}

impl AddrMan {
    pub fn new(key: [u8; 32]) -> AddrMan {
        AddrMan {
            key,
            entries: HashMap::new(),
            new_table: vec![None; NEW_BUCKETS * BUCKET_SIZE],
            tried_table: vec![None; TRIED_BUCKETS * BUCKET_SIZE],
            dirty: false,
        }
    }

    /// Rebuilds the tables from persisted entries (they are re-bucketed with `key`).
    pub fn from_entries(key: [u8; 32], entries: impl IntoIterator<Item = AddrInfo>) -> AddrMan {
        let mut man = AddrMan::new(key);
        for info in entries {
            let addr = info.socket_addr();
            let slot = if info.tried {
                man.tried_slot(&addr)
            } else {
                man.new_slot(&addr, &info.source.into())
            };
            let table = if info.tried {
                &mut man.tried_table
            } else {
                &mut man.new_table
            };
            if table[slot].is_none() {
                table[slot] = Some(addr);
                man.entries.insert(addr, info);
            }
        }
        man.dirty = false;
        man
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

    pub fn entries(&self) -> impl Iterator<Item = &AddrInfo> {
        self.entries.values()
    }

    pub fn take_dirty(&mut self) -> bool {
        std::mem::take(&mut self.dirty)
    }

    /// The new-table slot of `addr` heard from `source`.
    pub fn new_slot(&self, addr: &SocketAddr, source: &SocketAddr) -> usize {
        let group = netgroup(addr);
        let source_group = netgroup(source);
        let h1 = hash_u64(&[&self.key, &group.0, &source_group.0]) % NEW_BUCKETS_PER_SOURCE_GROUP;
        let bucket =
            hash_u64(&[&self.key, &source_group.0, &h1.to_le_bytes()]) % NEW_BUCKETS as u64;
        self.position(b'N', bucket, addr)
    }

    /// The tried-table slot of `addr`.
    pub fn tried_slot(&self, addr: &SocketAddr) -> usize {
        let group = netgroup(addr);
        let bytes = SocketAddrBytes::from(*addr);
        let h1 =
            hash_u64(&[&self.key, &bytes.ip, &bytes.port.to_le_bytes()]) % TRIED_BUCKETS_PER_GROUP;
        let bucket = hash_u64(&[&self.key, &group.0, &h1.to_le_bytes()]) % TRIED_BUCKETS as u64;
        self.position(b'T', bucket, addr)
    }

    fn position(&self, table: u8, bucket: u64, addr: &SocketAddr) -> usize {
        let bytes = SocketAddrBytes::from(*addr);
        let pos = hash_u64(&[
            &self.key,
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
        if addr.port() == 0 || addr.ip().is_unspecified() || addr.ip().is_multicast() {
            return false;
        }
        let seen = seen.min(now);
        if let Some(info) = self.entries.get_mut(&addr) {
            if seen > info.last_seen {
                info.last_seen = seen;
                info.services |= services;
                self.dirty = true;
            }
            return false;
        }
        let slot = self.new_slot(&addr, &source);
        if let Some(occupant) = self.new_table[slot] {
            let stale = self
                .entries
                .get(&occupant)
                .is_none_or(|o| o.is_terrible(now));
            if !stale {
                return false;
            }
            self.entries.remove(&occupant);
        }
        self.new_table[slot] = Some(addr);
        self.entries.insert(
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

    /// We completed a handshake with `addr`: it moves to the tried table.
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
        let source: SocketAddr = info.source.into();
        let new_slot = self.new_slot(addr, &source);
        let tried_slot = self.tried_slot(addr);
        if let Some(evicted) = self.tried_table[tried_slot] {
            // The old occupant goes back to the new table, or is dropped if its slot is taken.
            self.tried_table[tried_slot] = None;
            let (e_new_slot, keep) = match self.entries.get_mut(&evicted) {
                Some(e) => {
                    e.tried = false;
                    let src: SocketAddr = e.source.into();
                    (Some(src), true)
                }
                None => (None, false),
            };
            if let (Some(src), true) = (e_new_slot, keep) {
                let slot = self.new_slot(&evicted, &src);
                if self.new_table[slot].is_none() || self.new_table[slot] == Some(*addr) {
                    self.new_table[slot] = Some(evicted);
                } else {
                    self.entries.remove(&evicted);
                }
            }
        }
        if self.new_table[new_slot] == Some(*addr) {
            self.new_table[new_slot] = None;
        }
        self.tried_table[tried_slot] = Some(*addr);
        if let Some(info) = self.entries.get_mut(addr) {
            info.tried = true;
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

    /// A random sample for a GETADDR answer: about 23% of the book (all of a small book),
    /// at most `max`, never stale entries.
    pub fn sample(&self, rng: &mut impl Rng, now: u64, max: usize) -> Vec<&AddrInfo> {
        let mut fresh: Vec<&AddrInfo> = self
            .entries
            .values()
            .filter(|e| !e.is_terrible(now))
            .collect();
        let want = (fresh.len() * 23 / 100).max(fresh.len().min(100)).min(max);
        // Partial Fisher-Yates: the first `want` become a uniform sample.
        for i in 0..want {
            let j = rng.gen_range(i..fresh.len());
            fresh.swap(i, j);
        }
        fresh.truncate(want);
        fresh
    }

    /// Removes stale entries; returns how many.
    pub fn remove_terrible(&mut self, now: u64) -> usize {
        let doomed: Vec<SocketAddr> = self
            .entries
            .values()
            .filter(|e| e.is_terrible(now))
            .map(|e| e.socket_addr())
            .collect();
        for addr in &doomed {
            self.entries.remove(addr);
            for table in [&mut self.new_table, &mut self.tried_table] {
                for slot in table.iter_mut().filter(|s| **s == Some(*addr)) {
                    *slot = None;
                }
            }
        }
        self.dirty |= !doomed.is_empty();
        doomed.len()
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
    }
}
