//! Misbehaviour weights and the ban list (by IP and by node id, each with an expiry).
//!
//! Pure: times are inputs in Unix milliseconds. The list is bounded; when full, the entry that
//! expires first makes room.

use crate::types::NodeId;
use std::collections::HashMap;
use std::net::IpAddr;

/// A peer is disconnected and banned when its score reaches this.
pub const BAN_THRESHOLD: u32 = 100;

/// Most entries the ban list holds (IPs and node ids together).
pub const MAX_BANS: usize = 10_000;

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
    /// Data nobody asked for (BLOCK, TX, HEADERS, NOTFOUND without a matching request).
    Unrequested,
    /// A block that fails validation.
    InvalidBlock,
    /// A transaction that fails validation.
    InvalidTx,
}

impl Misbehaviour {
    pub fn weight(self) -> u32 {
        match self {
            Misbehaviour::MalformedFrame => 100,
            Misbehaviour::Oversized => 100,
            Misbehaviour::ProtocolOrder => 10,
            Misbehaviour::Unrequested => 20,
            Misbehaviour::InvalidBlock => 100,
            Misbehaviour::InvalidTx => 10,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Misbehaviour::MalformedFrame => "malformed-frame",
            Misbehaviour::Oversized => "oversized",
            Misbehaviour::ProtocolOrder => "protocol-order",
            Misbehaviour::Unrequested => "unrequested-data",
            Misbehaviour::InvalidBlock => "invalid-block",
            Misbehaviour::InvalidTx => "invalid-tx",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, bincode::Encode, bincode::Decode)]
pub struct BanEntry {
    pub created_ms: u64,
    pub until_ms: u64,
    pub reason: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BanTarget {
    Ip(IpAddr),
    Node(NodeId),
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
    entries: HashMap<BanTarget, BanEntry>,
    dirty: bool,
}

impl BanList {
    pub fn from_entries(entries: impl IntoIterator<Item = (BanTarget, BanEntry)>) -> BanList {
        let mut list = BanList::default();
        for (target, entry) in entries {
            list.insert(target, entry);
        }
        list.dirty = false;
        list
    }

    fn insert(&mut self, target: BanTarget, entry: BanEntry) {
        if !self.entries.contains_key(&target) && self.entries.len() >= MAX_BANS {
            if let Some(first) = self
                .entries
                .iter()
                .min_by_key(|(_, e)| e.until_ms)
                .map(|(t, _)| *t)
            {
                self.entries.remove(&first);
            }
        }
        self.entries.insert(target, entry);
        self.dirty = true;
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
        let removed = self.entries.remove(target).is_some();
        self.dirty |= removed;
        removed
    }

    pub fn clear(&mut self) {
        self.dirty |= !self.entries.is_empty();
        self.entries.clear();
    }

    pub fn is_banned(&self, target: &BanTarget, now_ms: u64) -> bool {
        self.entries
            .get(target)
            .is_some_and(|e| e.until_ms > now_ms)
    }

    /// Drops expired entries; returns how many.
    pub fn expire(&mut self, now_ms: u64) -> usize {
        let before = self.entries.len();
        self.entries.retain(|_, e| e.until_ms > now_ms);
        let removed = before - self.entries.len();
        self.dirty |= removed > 0;
        removed
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

    /// Whether the list changed since the last call (for persistence).
    pub fn take_dirty(&mut self) -> bool {
        std::mem::take(&mut self.dirty)
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
    fn dirty_tracks_changes() {
        let mut bans = BanList::default();
        assert!(!bans.take_dirty());
        let ip = BanTarget::Ip("10.0.0.1".parse().unwrap());
        bans.ban(ip, 0, 10, "x");
        assert!(bans.take_dirty());
        assert!(!bans.take_dirty());
        assert!(bans.unban(&ip));
        assert!(bans.take_dirty());
    }
}
