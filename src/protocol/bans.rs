//! Misbehaviour weights and the ban list (by IP and by node id, each with an expiry).
//!
//! Pure: times are inputs in Unix milliseconds. The list is bounded; when full, the entry that
//! expires first makes room. It records which entries changed, so persistence writes and
//! removes single keys instead of rewriting the table on every ban.

use crate::types::NodeId;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

/// A peer is disconnected and banned when its score reaches this.
pub const BAN_THRESHOLD: u32 = 100;

/// Most entries the ban list holds (IPs and node ids together).
pub const MAX_BANS: usize = 10_000;
/// Changed targets remembered between two saves; past this a save rewrites the table instead
/// (a bound on memory when the writer falls behind).
const MAX_TRACKED_CHANGES: usize = 2 * MAX_BANS;

/// What changed in the ban list since the last save, for the peer store to apply in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BanChanges {
    /// Remove every stored entry before applying the rest.
    pub clear_first: bool,
    pub upserts: Vec<(BanTarget, BanEntry)>,
    pub removals: Vec<BanTarget>,
}

/// What a peer did wrong. Each kind has a documented weight (docs/PROTOCOL.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Misbehaviour {
    /// A frame broke the framing or payload rules: bad checksum, unknown or malformed command,
    /// undecodable payload. Under TLS this cannot be line noise.
    MalformedFrame,
    /// A list or payload over its cap.
    Oversized,
    /// A message out of the handshake order (anything before VERSION, a second VERSION,
    /// a non-handshake message before VERACK, a VERSION whose node id is not the TLS one).
    ProtocolOrder,
    /// A transaction nobody asked for (TX without a matching request).
    Unrequested,
    /// A block that fails validation.
    InvalidBlock,
    /// A header that breaks a consensus rule (proof of work, required target, time), or
    /// builds on a block known to be invalid.
    InvalidHeader,
    /// Every tenth HEADERS whose first header connects to nothing we know.
    UnconnectedHeaders,
    /// A transaction that fails validation.
    InvalidTx,
    /// A compact block that cannot be any block (prefilled indexes out of order or range,
    /// no coinbase, too many transactions), or a BLOCKTXN with other than the transactions
    /// asked for.
    InvalidCompactBlock,
    /// A block pushed to us as a compact block before its sender validated it (as we asked)
    /// failed validation: the sender may be an honest relay, so this alone does not ban.
    RelayedInvalidBlock,
    /// Future transactions (nonces past a gap) beyond the peer's share: every hundredth
    /// refused past its cap, or a bulk of them dropped unfilled at their expiry.
    OrphanFlood,
}

impl Misbehaviour {
    pub fn weight(self) -> u32 {
        match self {
            Misbehaviour::MalformedFrame => 100,
            Misbehaviour::Oversized => 100,
            Misbehaviour::ProtocolOrder => 10,
            Misbehaviour::Unrequested => 20,
            Misbehaviour::InvalidBlock => 100,
            Misbehaviour::InvalidHeader => 100,
            Misbehaviour::UnconnectedHeaders => 20,
            Misbehaviour::InvalidTx => 10,
            Misbehaviour::InvalidCompactBlock => 100,
            Misbehaviour::RelayedInvalidBlock => 20,
            Misbehaviour::OrphanFlood => 10,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Misbehaviour::MalformedFrame => "malformed-frame",
            Misbehaviour::Oversized => "oversized",
            Misbehaviour::ProtocolOrder => "protocol-order",
            Misbehaviour::Unrequested => "unrequested-data",
            Misbehaviour::InvalidBlock => "invalid-block",
            Misbehaviour::InvalidHeader => "invalid-header",
            Misbehaviour::UnconnectedHeaders => "unconnected-headers",
            Misbehaviour::InvalidTx => "invalid-tx",
            Misbehaviour::InvalidCompactBlock => "invalid-compact-block",
            Misbehaviour::RelayedInvalidBlock => "relayed-invalid-block",
            Misbehaviour::OrphanFlood => "orphan-flood",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, bincode::Encode, bincode::Decode)]
pub struct BanEntry {
    pub created_ms: u64,
    pub until_ms: u64,
    pub reason: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BanTarget {
    Ip(IpAddr),
    Node(NodeId),
}

impl BanTarget {
    /// IPv4-mapped IPv6 as plain IPv4, so a ban matches however the address arrived.
    pub fn canonical(self) -> BanTarget {
        match self {
            BanTarget::Ip(ip) => BanTarget::Ip(super::netgroup::canonical_ip(ip)),
            node => node,
        }
    }
}

impl std::fmt::Display for BanTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BanTarget::Ip(ip) => write!(f, "{ip}"),
            BanTarget::Node(id) => write!(f, "{id}"),
        }
    }
}

#[derive(Debug, Default)]
pub struct BanList {
    /// Ordered, so that what is saved and listed does not depend on a hasher's seed.
    entries: BTreeMap<BanTarget, BanEntry>,
    /// Targets added, changed or removed since the last `take_changes`.
    changed: BTreeSet<BanTarget>,
    /// The stored table must be cleared before `changed` is applied.
    clear_first: bool,
}

impl BanList {
    pub fn from_entries(entries: impl IntoIterator<Item = (BanTarget, BanEntry)>) -> BanList {
        let mut list = BanList::default();
        for (target, entry) in entries {
            list.insert(target, entry);
        }
        list.changed.clear();
        list
    }

    fn touch(&mut self, target: BanTarget) {
        if self.changed.len() >= MAX_TRACKED_CHANGES {
            // Too much to track one by one: rewrite the whole (bounded) table at the next save.
            self.clear_first = true;
            self.changed = self.entries.keys().copied().collect();
        }
        self.changed.insert(target);
    }

    fn insert(&mut self, target: BanTarget, entry: BanEntry) {
        let target = target.canonical();
        if !self.entries.contains_key(&target) && self.entries.len() >= MAX_BANS {
            if let Some(first) = self
                .entries
                .iter()
                .min_by_key(|(_, e)| e.until_ms)
                .map(|(t, _)| *t)
            {
                self.entries.remove(&first);
                self.touch(first);
            }
        }
        self.entries.insert(target, entry);
        self.touch(target);
    }

    pub fn ban(&mut self, target: BanTarget, now_ms: u64, duration_ms: u64, reason: &str) {
        self.insert(
            target,
            BanEntry {
                created_ms: now_ms,
                until_ms: now_ms.saturating_add(duration_ms),
                reason: reason.to_string(),
            },
        );
    }

    pub fn unban(&mut self, target: &BanTarget) -> bool {
        let target = target.canonical();
        let removed = self.entries.remove(&target).is_some();
        if removed {
            self.touch(target);
        }
        removed
    }

    pub fn clear(&mut self) {
        self.entries.clear();
        self.changed.clear();
        self.clear_first = true;
    }

    pub fn is_banned(&self, target: &BanTarget, now_ms: u64) -> bool {
        self.entries
            .get(&target.canonical())
            .is_some_and(|e| e.until_ms > now_ms)
    }

    /// Drops expired entries; returns how many.
    pub fn expire(&mut self, now_ms: u64) -> usize {
        let expired: Vec<BanTarget> = self
            .entries
            .iter()
            .filter(|(_, e)| e.until_ms <= now_ms)
            .map(|(t, _)| *t)
            .collect();
        for target in &expired {
            self.entries.remove(target);
            self.touch(*target);
        }
        expired.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&BanTarget, &BanEntry)> {
        self.entries.iter()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// What changed since the last call, if anything (for persistence): each changed target's
    /// entry now, or its removal.
    pub fn take_changes(&mut self) -> Option<BanChanges> {
        if self.changed.is_empty() && !self.clear_first {
            return None;
        }
        let mut changes = BanChanges {
            clear_first: std::mem::take(&mut self.clear_first),
            ..BanChanges::default()
        };
        for target in std::mem::take(&mut self.changed) {
            match self.entries.get(&target) {
                Some(entry) => changes.upserts.push((target, entry.clone())),
                None => changes.removals.push(target),
            }
        }
        Some(changes)
    }

    /// Changes `take_changes` handed out that could not be saved: they are taken again next
    /// time (with the entries as they are then).
    pub fn requeue(&mut self, changes: BanChanges) {
        self.clear_first |= changes.clear_first;
        for (target, _) in changes.upserts {
            self.touch(target);
        }
        for target in changes.removals {
            self.touch(target);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bans_expire_at_their_time() {
        let mut bans = BanList::default();
        let ip = BanTarget::Ip("10.0.0.1".parse().unwrap());
        bans.ban(ip, 1_000, 500, "test");
        assert!(bans.is_banned(&ip, 1_499));
        assert!(!bans.is_banned(&ip, 1_500));
        assert_eq!(bans.expire(1_499), 0);
        assert_eq!(bans.expire(1_500), 1);
        assert!(bans.is_empty());
    }

    #[test]
    fn the_list_is_bounded_and_drops_the_soonest_expiry() {
        let mut bans = BanList::default();
        for i in 0..MAX_BANS as u64 {
            let mut id = [0u8; 32];
            id[..8].copy_from_slice(&i.to_le_bytes());
            bans.ban(BanTarget::Node(NodeId(id)), 0, 1_000 + i, "x");
        }
        let newcomer = BanTarget::Ip("1.2.3.4".parse().unwrap());
        bans.ban(newcomer, 0, 10_000_000, "y");
        assert_eq!(bans.len(), MAX_BANS);
        assert!(bans.is_banned(&newcomer, 1));
        assert!(!bans.is_banned(&BanTarget::Node(NodeId([0; 32])), 1));
    }

    #[test]
    fn changes_name_single_entries() {
        let mut bans = BanList::default();
        assert_eq!(bans.take_changes(), None);
        let ip = BanTarget::Ip("10.0.0.1".parse().unwrap());
        bans.ban(ip, 0, 10, "x");
        let changes = bans.take_changes().unwrap();
        assert_eq!(changes.upserts.len(), 1);
        assert!(!changes.clear_first && changes.removals.is_empty());
        assert_eq!(bans.take_changes(), None);
        assert!(bans.unban(&ip));
        assert_eq!(bans.take_changes().unwrap().removals, vec![ip]);
        bans.ban(ip, 0, 10, "x");
        assert_eq!(bans.expire(10), 1);
        let expired = bans.take_changes().unwrap();
        assert_eq!(
            expired.removals,
            vec![ip],
            "a ban and its expiry net to a removal"
        );
        assert!(expired.upserts.is_empty());
        bans.ban(ip, 0, 10, "x");
        bans.clear();
        let cleared = bans.take_changes().unwrap();
        assert!(cleared.clear_first && cleared.upserts.is_empty());
    }

    /// Defect 2 of the hardening issue: every ban rewrote the whole table (up to 10,000 entries,
    /// ~20,000 store operations) on the network task. One more ban in a full list is now one
    /// upsert (and one removal for the entry it displaced).
    #[test]
    fn ban_bookkeeping_writes_single_keys() {
        let mut bans = BanList::default();
        for i in 0..MAX_BANS as u64 {
            let mut id = [0u8; 32];
            id[..8].copy_from_slice(&i.to_le_bytes());
            bans.ban(BanTarget::Node(NodeId(id)), 0, 1_000 + i, "x");
        }
        bans.take_changes();
        bans.ban(
            BanTarget::Ip("1.2.3.4".parse().unwrap()),
            0,
            10_000_000,
            "y",
        );
        let changes = bans.take_changes().unwrap();
        assert!(!changes.clear_first);
        assert_eq!(changes.upserts.len(), 1);
        assert_eq!(changes.removals, vec![BanTarget::Node(NodeId([0; 32]))]);
    }

    #[test]
    fn mapped_ipv4_bans_match_plain_ipv4() {
        let mut bans = BanList::default();
        let mapped = BanTarget::Ip("::ffff:1.2.3.4".parse().unwrap());
        let plain = BanTarget::Ip("1.2.3.4".parse().unwrap());
        bans.ban(mapped, 0, 10, "x");
        assert!(bans.is_banned(&plain, 1));
        assert!(bans.is_banned(&mapped, 1));
        assert_eq!(bans.iter().next().unwrap().0, &plain, "stored canonical");
        assert!(bans.unban(&plain));
    }
}
