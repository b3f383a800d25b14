//! The accounting of future transactions (the account model's orphans: nonces past a gap):
//! how many the pool holds and their bytes, whose share each counts against (the peer that
//! relayed it, this node, or nobody), each owner's futures oldest first, and which future
//! makes room when the total is full.
//!
//! Bookkeeping only: the entries live in their accounts (`pool`), which calls `add` and
//! `remove` as futures come and go. Pure, like the pool: no clock, no I/O.

use crate::types::Address;
use std::collections::{BTreeMap, BTreeSet};

/// The network service's id of the peer a transaction came from (the protocol core's
/// `PeerId`; never reused while the node runs).
pub type Relayer = u64;

/// Whose share a future transaction counts against.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Owner {
    /// Relayed by this peer, still connected: counts against its cap.
    Peer(Relayer),
    /// Submitted on this node (RPC, the wallet): never makes room for a peer's.
    Local,
    /// Nobody's: a departed peer's, or a pending transaction that lost an earlier nonce
    /// (expired, or made invalid by a block) and so waits again. The first to make room.
    Unowned,
}

/// A future's place in its owner's index, which orders them oldest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct FutureKey {
    /// When it started waiting (seconds, as the pool was told).
    pub since: u64,
    /// The entry's arrival number (unique: a tie-break).
    pub seq: u64,
    pub sender: Address,
    pub nonce: u64,
}

/// Counts, bytes and the per-owner index of the pool's future transactions.
#[derive(Debug, Default)]
pub struct Futures {
    count: usize,
    bytes: usize,
    /// Only owners with at least one future: as many entries as owners that hold some (at
    /// most the total cap), never one per peer ever seen.
    owners: BTreeMap<Owner, BTreeSet<FutureKey>>,
}

impl Futures {
    pub fn count(&self) -> usize {
        self.count
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Futures counted against `owner`.
    pub fn of(&self, owner: Owner) -> usize {
        self.owners.get(&owner).map_or(0, BTreeSet::len)
    }

    pub fn add(&mut self, owner: Owner, key: FutureKey, size: usize) {
        if self.owners.entry(owner).or_default().insert(key) {
            self.count += 1;
            self.bytes += size;
        }
    }

    pub fn remove(&mut self, owner: Owner, key: &FutureKey, size: usize) {
        let Some(keys) = self.owners.get_mut(&owner) else {
            return;
        };
        if keys.remove(key) {
            self.count -= 1;
            self.bytes -= size;
        }
        if keys.is_empty() {
            self.owners.remove(&owner);
        }
    }

    /// Moves a departed peer's futures out of its share into nobody's; answers their keys,
    /// for the pool to mark the entries.
    pub fn release(&mut self, peer: Relayer) -> Vec<FutureKey> {
        let Some(keys) = self.owners.remove(&Owner::Peer(peer)) else {
            return Vec::new();
        };
        let released: Vec<FutureKey> = keys.iter().copied().collect();
        self.owners.entry(Owner::Unowned).or_default().extend(keys);
        released
    }

    /// Which future gives up its room, when the total is full, to a newcomer counted against
    /// `owner`: nobody's oldest first; else the oldest of the peer holding the most, if that
    /// is at least two more than the newcomer's own share (a local newcomer's counts as none;
    /// one more would only swap the two peers' places). `None`: the newcomer is refused.
    /// What has waited longest is the least likely to see its gap filled.
    pub fn victim(&self, owner: Owner) -> Option<(Owner, FutureKey)> {
        if let Some(key) = self.owners.get(&Owner::Unowned).and_then(|k| k.first()) {
            return Some((Owner::Unowned, *key));
        }
        let mine = match owner {
            Owner::Peer(_) => self.of(owner),
            Owner::Local | Owner::Unowned => 0,
        };
        let (heaviest, keys) = self
            .owners
            .iter()
            .filter(|(o, _)| matches!(o, Owner::Peer(_)))
            .max_by_key(|(_, keys)| keys.len())?;
        if keys.len() < mine + 2 {
            return None;
        }
        keys.first().map(|key| (*heaviest, *key))
    }

    /// Every indexed future with its owner; for the pool's invariant check.
    pub fn keys(&self) -> impl Iterator<Item = (Owner, &FutureKey)> {
        self.owners
            .iter()
            .flat_map(|(o, keys)| keys.iter().map(move |k| (*o, k)))
    }

    /// Whether `key` is indexed under `owner`.
    pub fn contains(&self, owner: Owner, key: &FutureKey) -> bool {
        self.owners.get(&owner).is_some_and(|k| k.contains(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(since: u64, seq: u64) -> FutureKey {
        FutureKey {
            since,
            seq,
            sender: Address([seq as u8; 20]),
            nonce: 5,
        }
    }

    #[test]
    fn room_comes_from_nobody_first_then_the_peer_holding_the_most() {
        let mut f = Futures::default();
        f.add(Owner::Peer(1), key(10, 1), 100);
        f.add(Owner::Peer(1), key(5, 2), 100);
        f.add(Owner::Peer(2), key(1, 3), 100);
        f.add(Owner::Local, key(0, 4), 100);
        assert_eq!((f.count(), f.bytes()), (4, 400));
        // Peer 1 holds 2, peer 3 none: peer 1's oldest goes.
        assert_eq!(f.victim(Owner::Peer(3)), Some((Owner::Peer(1), key(5, 2))));
        // Peer 2 holds 1: one more than that is not enough to take from peer 1.
        assert_eq!(f.victim(Owner::Peer(2)), None);
        assert_eq!(f.victim(Owner::Peer(1)), None);
        // A local newcomer takes from the peer holding the most, never from local ones.
        assert_eq!(f.victim(Owner::Local), Some((Owner::Peer(1), key(5, 2))));
        // A departed peer's futures are nobody's, and the first to go.
        assert_eq!(f.release(2), vec![key(1, 3)]);
        assert_eq!(f.of(Owner::Peer(2)), 0);
        assert_eq!(f.victim(Owner::Peer(1)), Some((Owner::Unowned, key(1, 3))));
        f.remove(Owner::Unowned, &key(1, 3), 100);
        assert_eq!((f.count(), f.bytes(), f.of(Owner::Unowned)), (3, 300, 0));
        assert_eq!(f.keys().count(), 3);
    }
}
