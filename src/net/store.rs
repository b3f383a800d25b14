//! Persistence of the peer layer in sled (`<datadir>/peers`): the address book with its secret
//! bucketing key, the ban list, and node ids learned on first use of an --addnode peer.
//!
//! Owns the on-disk layout of peer data only. An undecodable record is skipped with a warning:
//! peer data is advisory and rebuilds itself, unlike chain data.

use crate::encoding;
use crate::protocol::addrman::{AddrInfo, AddrMan};
use crate::protocol::bans::{BanChanges, BanEntry, BanList, BanTarget};
use crate::types::NodeId;
use bincode::{Decode, Encode};
use std::net::IpAddr;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum PeerStoreError {
    #[error("peer store {path}: {source}")]
    Open { path: String, source: sled::Error },
    #[error("peer store: {0}")]
    Sled(#[from] sled::Error),
    #[error("cannot start the peer store writer: {0}")]
    Writer(std::io::Error),
}

const ADDRMAN_KEY: &[u8] = b"addrman-key";
const SCHEMA_KEY: &[u8] = b"schema";
const SCHEMA: u32 = 1;

#[derive(Encode, Decode)]
enum BanKey {
    Ip([u8; 16]),
    Node([u8; 32]),
}

impl From<&BanTarget> for BanKey {
    fn from(t: &BanTarget) -> Self {
        match t {
            BanTarget::Ip(ip) => BanKey::Ip(match ip {
                IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
                IpAddr::V6(v6) => v6.octets(),
            }),
            BanTarget::Node(id) => BanKey::Node(id.0),
        }
    }
}

impl From<BanKey> for BanTarget {
    fn from(k: BanKey) -> Self {
        match k {
            BanKey::Ip(bytes) => {
                let v6 = std::net::Ipv6Addr::from(bytes);
                BanTarget::Ip(match v6.to_ipv4_mapped() {
                    Some(v4) => IpAddr::V4(v4),
                    None => IpAddr::V6(v6),
                })
            }
            BanKey::Node(id) => BanTarget::Node(NodeId(id)),
        }
    }
}

pub struct PeerStore {
    db: sled::Db,
    addrs: sled::Tree,
    bans: sled::Tree,
    identities: sled::Tree,
    meta: sled::Tree,
}

impl PeerStore {
    pub fn open(path: &Path) -> Result<PeerStore, PeerStoreError> {
        let config = sled::Config::new()
            .path(path)
            .cache_capacity(4 * 1024 * 1024);
        let db = crate::sled_open::open_waiting_for_lock(&config).map_err(|source| {
            PeerStoreError::Open {
                path: path.display().to_string(),
                source,
            }
        })?;
        let store = PeerStore {
            addrs: db.open_tree("addrs")?,
            bans: db.open_tree("bans")?,
            identities: db.open_tree("identities")?,
            meta: db.open_tree("meta")?,
            db,
        };
        store.meta.insert(SCHEMA_KEY, &SCHEMA.to_le_bytes())?;
        Ok(store)
    }

    /// Loads the address book, creating its secret key on first use.
    pub fn load_addrman(&self) -> Result<AddrMan, PeerStoreError> {
        let key = match self.meta.get(ADDRMAN_KEY)? {
            Some(bytes) if bytes.len() == 32 => {
                let mut key = [0u8; 32];
                key.copy_from_slice(&bytes);
                key
            }
            _ => {
                let mut key = [0u8; 32];
                rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut key);
                self.meta.insert(ADDRMAN_KEY, &key)?;
                key
            }
        };
        let mut entries = Vec::new();
        for item in self.addrs.iter() {
            let (_, value) = item?;
            match encoding::decode_exact::<AddrInfo>(&value) {
                Ok(info) => entries.push(info),
                Err(e) => tracing::warn!(error = %e, "skipping an undecodable address record"),
            }
        }
        Ok(AddrMan::from_entries(key, entries))
    }

    /// Replaces the stored address book with `entries` (a snapshot of it), in one batch.
    pub fn save_addresses(&self, entries: &[AddrInfo]) -> Result<(), PeerStoreError> {
        let mut batch = sled::Batch::default();
        let keep: std::collections::HashSet<Vec<u8>> =
            entries.iter().map(|e| encoding::encode(&e.addr)).collect();
        for item in self.addrs.iter().keys() {
            let key = item?;
            if !keep.contains(key.as_ref()) {
                batch.remove(key);
            }
        }
        for entry in entries {
            batch.insert(encoding::encode(&entry.addr), encoding::encode(entry));
        }
        self.addrs.apply_batch(batch)?;
        Ok(())
    }

    pub fn load_bans(&self) -> Result<BanList, PeerStoreError> {
        let mut entries = Vec::new();
        for item in self.bans.iter() {
            let (key, value) = item?;
            match (
                encoding::decode_exact::<BanKey>(&key),
                encoding::decode_exact::<BanEntry>(&value),
            ) {
                (Ok(k), Ok(v)) => entries.push((BanTarget::from(k), v)),
                _ => tracing::warn!("skipping an undecodable ban record"),
            }
        }
        Ok(BanList::from_entries(entries))
    }

    /// Applies what changed in the ban list: single keys written and removed, in one batch
    /// (the whole table is cleared first only after `clearbanned`).
    pub fn apply_ban_changes(&self, changes: &BanChanges) -> Result<(), PeerStoreError> {
        if changes.clear_first {
            self.bans.clear()?;
        }
        let mut batch = sled::Batch::default();
        for target in &changes.removals {
            batch.remove(encoding::encode(&BanKey::from(target)));
        }
        for (target, entry) in &changes.upserts {
            batch.insert(
                encoding::encode(&BanKey::from(target)),
                encoding::encode(entry),
            );
        }
        self.bans.apply_batch(batch)?;
        Ok(())
    }

    /// The node id first seen at an --addnode peer given without one.
    pub fn learned_identity(&self, peer: &str) -> Option<NodeId> {
        let bytes = self.identities.get(peer.as_bytes()).ok()??;
        let id: [u8; 32] = bytes.as_ref().try_into().ok()?;
        Some(NodeId(id))
    }

    pub fn remember_identity(&self, peer: &str, id: &NodeId) -> Result<(), PeerStoreError> {
        self.identities.insert(peer.as_bytes(), &id.0)?;
        Ok(())
    }

    pub fn flush(&self) -> Result<(), PeerStoreError> {
        self.db.flush()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_bans_and_identities_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let now = 1_800_000_000;
        {
            let store = PeerStore::open(dir.path()).unwrap();
            let mut man = store.load_addrman().unwrap();
            man.add(
                "1.2.3.4:8333".parse().unwrap(),
                1,
                "5.6.7.8:1".parse().unwrap(),
                now,
                now,
            );
            man.mark_good(&"1.2.3.4:8333".parse().unwrap(), now);
            let snapshot: Vec<AddrInfo> = man.entries().cloned().collect();
            store.save_addresses(&snapshot).unwrap();
            let mut bans = BanList::default();
            bans.ban(BanTarget::Ip("9.9.9.9".parse().unwrap()), 1, 1_000_000, "x");
            bans.ban(
                BanTarget::Ip("8.8.8.8".parse().unwrap()),
                1,
                1_000_000,
                "gone",
            );
            bans.ban(BanTarget::Node(NodeId([3; 32])), 1, 1_000_000, "y");
            store
                .apply_ban_changes(&bans.take_changes().unwrap())
                .unwrap();
            bans.unban(&BanTarget::Ip("8.8.8.8".parse().unwrap()));
            store
                .apply_ban_changes(&bans.take_changes().unwrap())
                .unwrap();
            store.remember_identity("h:1", &NodeId([4; 32])).unwrap();
            store.flush().unwrap();
        }
        let store = PeerStore::open(dir.path()).unwrap();
        let man = store.load_addrman().unwrap();
        assert_eq!(man.len(), 1);
        assert!(man.get(&"1.2.3.4:8333".parse().unwrap()).unwrap().tried);
        let bans = store.load_bans().unwrap();
        assert_eq!(bans.len(), 2);
        assert!(bans.is_banned(&BanTarget::Ip("9.9.9.9".parse().unwrap()), 2));
        assert!(bans.is_banned(&BanTarget::Node(NodeId([3; 32])), 2));
        assert_eq!(store.learned_identity("h:1"), Some(NodeId([4; 32])));
    }

    #[test]
    fn clearing_bans_empties_the_stored_table() {
        let dir = tempfile::tempdir().unwrap();
        let store = PeerStore::open(dir.path()).unwrap();
        let mut bans = BanList::default();
        bans.ban(BanTarget::Ip("9.9.9.9".parse().unwrap()), 1, 1_000_000, "x");
        store
            .apply_ban_changes(&bans.take_changes().unwrap())
            .unwrap();
        bans.clear();
        bans.ban(BanTarget::Ip("7.7.7.7".parse().unwrap()), 1, 1_000_000, "z");
        store
            .apply_ban_changes(&bans.take_changes().unwrap())
            .unwrap();
        let loaded = store.load_bans().unwrap();
        assert_eq!(loaded.len(), 1);
        assert!(loaded.is_banned(&BanTarget::Ip("7.7.7.7".parse().unwrap()), 2));
    }
}
