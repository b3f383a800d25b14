//! Persistence of the peer layer in one redb file (`<datadir>/peers.redb`): the address book
//! with its secret bucketing key, the ban list, and node ids learned on first use of an
//! --addnode peer.
//!
//! Owns the on-disk layout of peer data only, and its move from the sled directory
//! `<datadir>/peers` of earlier versions (`migrate_from_sled`). It must never treat peer data as
//! precious: an undecodable record is skipped with a warning, as peer data rebuilds itself,
//! unlike chain data.
//!
//! Durability: every write (ban changes, an address-book snapshot, a learned identity) is its own
//! redb write transaction, committed with `Durability::Immediate` (an fsync): snapshots come
//! once a minute (net::service's PERSIST_EVERY), bans at the misbehaviour rate (bursts coalesce
//! in the ban list while the writer's queue is full), identities once per --addnode peer, and
//! one commit costs 2.5-4 ms (measured, docs/ARCHITECTURE.md), so no write is frequent enough to
//! be worth the window of loss a non-durable commit opens. `flush` is one more, empty, durable
//! commit.

use crate::encoding;
use crate::protocol::addrman::{AddrInfo, AddrMan};
use crate::protocol::bans::{BanChanges, BanEntry, BanList, BanTarget};
use crate::store_migrate::{self, MigrateError, MigrationReport};
use crate::types::NodeId;
use bincode::{Decode, Encode};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use std::net::IpAddr;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum PeerStoreError {
    #[error("cannot open the peer store {path}: {source}; if it is damaged, move it away and start again (the address book refills from gossip; bans and learned node ids are lost)")]
    Open {
        path: String,
        source: redb::DatabaseError,
    },
    #[error("peer store: {0}")]
    Redb(#[from] redb::Error),
    #[error(transparent)]
    Migrate(#[from] MigrateError),
    #[error("cannot start the peer store writer: {0}")]
    Writer(std::io::Error),
}

/// redb's page cache for the peer store: the whole store is a few MiB at most (the address
/// book's fixed tables hold ≤ 20,480 entries of under 100 bytes), and it is read once at start.
pub const CACHE_BYTES: usize = 4 * 1024 * 1024;

type Table = TableDefinition<'static, &'static [u8], &'static [u8]>;
const ADDRS: Table = TableDefinition::new("addrs");
const BANS: Table = TableDefinition::new("bans");
const IDENTITIES: Table = TableDefinition::new("identities");
const META: Table = TableDefinition::new("meta");
/// The tables, by name: also the sled trees of the earlier layout, migrated as they are.
pub const TABLES: [&str; 4] = ["addrs", "bans", "identities", "meta"];

const ADDRMAN_KEY: &[u8] = b"addrman-key";
const SCHEMA_KEY: &[u8] = b"schema";
/// The record layout, unchanged by the move from sled to redb.
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
    db: Database,
}

impl PeerStore {
    /// Moves the sled directory of earlier versions (`sled_dir`, `<datadir>/peers`) into a new
    /// redb file at `redb_path`, when there is one and no redb file yet.
    pub fn migrate_from_sled(
        sled_dir: &Path,
        redb_path: &Path,
    ) -> Result<Option<MigrationReport>, PeerStoreError> {
        Ok(store_migrate::migrate_sled_dir(
            sled_dir,
            redb_path,
            &TABLES,
            CACHE_BYTES,
        )?)
    }

    /// Opens the redb file at `path`, creating it if missing.
    pub fn open(path: &Path) -> Result<PeerStore, PeerStoreError> {
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            // A damaged file is an error naming it rather than a panic on some later read; the
            // check reads the whole store, a few MiB at most.
            .set_check_integrity_on_open(true)
            .create(path)
            .map_err(|source| PeerStoreError::Open {
                path: path.display().to_string(),
                source,
            })?;
        let store = PeerStore { db };
        store.write(|txn| {
            for table in [ADDRS, BANS, IDENTITIES] {
                txn.open_table(table)?;
            }
            txn.open_table(META)?
                .insert(SCHEMA_KEY, SCHEMA.to_le_bytes().as_slice())?;
            Ok(())
        })?;
        Ok(store)
    }

    /// Runs `f` in one write transaction committed durably.
    fn write(
        &self,
        f: impl FnOnce(&redb::WriteTransaction) -> Result<(), redb::Error>,
    ) -> Result<(), PeerStoreError> {
        let mut txn = self.db.begin_write().map_err(redb::Error::from)?;
        txn.set_durability(Durability::Immediate)
            .map_err(redb::Error::from)?;
        f(&txn)?;
        txn.commit().map_err(redb::Error::from)?;
        Ok(())
    }

    /// Loads the address book, creating its secret key on first use.
    pub fn load_addrman(&self) -> Result<AddrMan, PeerStoreError> {
        let (stored_key, entries) = self.read_addrs()?;
        let key = match stored_key {
            Some(key) => key,
            None => {
                let mut key = [0u8; 32];
                rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut key);
                self.write(|txn| {
                    txn.open_table(META)?.insert(ADDRMAN_KEY, key.as_slice())?;
                    Ok(())
                })?;
                key
            }
        };
        Ok(AddrMan::from_entries(key, entries))
    }

    fn read_addrs(&self) -> Result<(Option<[u8; 32]>, Vec<AddrInfo>), redb::Error> {
        let txn = self.db.begin_read()?;
        let key = txn
            .open_table(META)?
            .get(ADDRMAN_KEY)?
            .and_then(|bytes| <[u8; 32]>::try_from(bytes.value()).ok());
        let mut entries = Vec::new();
        for item in txn.open_table(ADDRS)?.iter()? {
            let (_, value) = item?;
            match encoding::decode_exact::<AddrInfo>(value.value()) {
                Ok(info) => entries.push(info),
                Err(e) => tracing::warn!(error = %e, "skipping an undecodable address record"),
            }
        }
        Ok((key, entries))
    }

    /// Replaces the stored address book with `entries` (a snapshot of it), in one transaction.
    /// Records that did not change are not rewritten.
    pub fn save_addresses(&self, entries: &[AddrInfo]) -> Result<(), PeerStoreError> {
        let records: std::collections::BTreeMap<Vec<u8>, Vec<u8>> = entries
            .iter()
            .map(|e| (encoding::encode(&e.addr), encoding::encode(e)))
            .collect();
        self.write(|txn| {
            let mut table = txn.open_table(ADDRS)?;
            table.retain(|key, _| records.contains_key(key))?;
            for (key, value) in &records {
                let same = table
                    .get(key.as_slice())?
                    .is_some_and(|stored| stored.value() == value.as_slice());
                if !same {
                    table.insert(key.as_slice(), value.as_slice())?;
                }
            }
            Ok(())
        })
    }

    pub fn load_bans(&self) -> Result<BanList, PeerStoreError> {
        Ok(self.read_bans()?)
    }

    fn read_bans(&self) -> Result<BanList, redb::Error> {
        let txn = self.db.begin_read()?;
        let mut entries = Vec::new();
        for item in txn.open_table(BANS)?.iter()? {
            let (key, value) = item?;
            match (
                encoding::decode_exact::<BanKey>(key.value()),
                encoding::decode_exact::<BanEntry>(value.value()),
            ) {
                (Ok(k), Ok(v)) => entries.push((BanTarget::from(k), v)),
                _ => tracing::warn!("skipping an undecodable ban record"),
            }
        }
        Ok(BanList::from_entries(entries))
    }

    /// Applies what changed in the ban list: single keys written and removed, in one
    /// transaction (the whole table is cleared first only after `clearbanned`).
    pub fn apply_ban_changes(&self, changes: &BanChanges) -> Result<(), PeerStoreError> {
        self.write(|txn| {
            let mut table = txn.open_table(BANS)?;
            if changes.clear_first {
                table.retain(|_, _| false)?;
            }
            for target in &changes.removals {
                table.remove(encoding::encode(&BanKey::from(target)).as_slice())?;
            }
            for (target, entry) in &changes.upserts {
                table.insert(
                    encoding::encode(&BanKey::from(target)).as_slice(),
                    encoding::encode(entry).as_slice(),
                )?;
            }
            Ok(())
        })
    }

    /// The node id first seen at an --addnode peer given without one.
    pub fn learned_identity(&self, peer: &str) -> Option<NodeId> {
        let read = || -> Result<Option<[u8; 32]>, redb::Error> {
            let txn = self.db.begin_read()?;
            let table = txn.open_table(IDENTITIES)?;
            let id = table
                .get(peer.as_bytes())?
                .and_then(|bytes| <[u8; 32]>::try_from(bytes.value()).ok());
            Ok(id)
        };
        match read() {
            Ok(id) => id.map(NodeId),
            Err(e) => {
                tracing::warn!(error = %e, peer, "cannot read a learned node id");
                None
            }
        }
    }

    pub fn remember_identity(&self, peer: &str, id: &NodeId) -> Result<(), PeerStoreError> {
        self.write(|txn| {
            txn.open_table(IDENTITIES)?
                .insert(peer.as_bytes(), id.0.as_slice())?;
            Ok(())
        })
    }

    /// Makes every earlier write durable. Each write is already committed durably, so this is
    /// one empty durable commit: it returns once redb's commit slot is on disk.
    pub fn flush(&self) -> Result<(), PeerStoreError> {
        self.write(|_| Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_bans_and_identities_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("peers.redb");
        let now = 1_800_000_000;
        {
            let store = PeerStore::open(&path).unwrap();
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
        let store = PeerStore::open(&path).unwrap();
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
        let store = PeerStore::open(&dir.path().join("peers.redb")).unwrap();
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

    fn addr(ip: &str, now: u64, attempts: u32) -> AddrInfo {
        let mut man = AddrMan::from_entries([1; 32], []);
        man.add(
            ip.parse().unwrap(),
            1,
            "5.6.7.8:1".parse().unwrap(),
            now,
            now,
        );
        let mut info = man.entries().next().unwrap().clone();
        info.attempts = attempts;
        info
    }

    #[test]
    fn reopening_keeps_the_secret_key_and_the_latest_snapshot_and_skips_bad_records() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("peers.redb");
        let now = 1_800_000_000;
        let key = {
            let store = PeerStore::open(&path).unwrap();
            let key = store.load_addrman().unwrap().key();
            store
                .save_addresses(&[addr("1.1.1.1:1", now, 0), addr("2.2.2.2:2", now, 0)])
                .unwrap();
            // The next snapshot drops 1.1.1.1 and changes 2.2.2.2.
            store
                .save_addresses(&[addr("2.2.2.2:2", now, 2), addr("3.3.3.3:3", now, 0)])
                .unwrap();
            store
                .write(|txn| {
                    txn.open_table(ADDRS)?
                        .insert(b"junk".as_slice(), b"not an address".as_slice())?;
                    txn.open_table(BANS)?
                        .insert(b"junk".as_slice(), b"not a ban".as_slice())?;
                    txn.open_table(IDENTITIES)?
                        .insert(b"h:2".as_slice(), b"short".as_slice())?;
                    Ok(())
                })
                .unwrap();
            // No flush: every write is durable on its own.
            key
        };
        let store = PeerStore::open(&path).unwrap();
        let man = store.load_addrman().unwrap();
        assert_eq!(man.key(), key, "the bucketing key is created once");
        let mut stored: Vec<AddrInfo> = man.entries().cloned().collect();
        stored.sort_by_key(|e| e.attempts);
        assert_eq!(
            stored,
            vec![addr("3.3.3.3:3", now, 0), addr("2.2.2.2:2", now, 2)]
        );
        assert_eq!(store.load_bans().unwrap().len(), 0);
        assert_eq!(store.learned_identity("h:2"), None);
        assert_eq!(store.learned_identity("h:3"), None);
        let txn = store.db.begin_read().unwrap();
        let schema = txn.open_table(META).unwrap().get(SCHEMA_KEY).unwrap();
        assert_eq!(schema.unwrap().value(), SCHEMA.to_le_bytes().as_slice());
    }

    #[test]
    fn a_damaged_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("peers.redb");
        std::fs::write(&path, vec![0x5a; 8192]).unwrap();
        let err = PeerStore::open(&path).err().expect("an error");
        assert!(err.to_string().contains("peers.redb"), "{err}");
        assert!(err.to_string().contains("move it away"), "{err}");
    }

    #[test]
    fn a_sled_peer_store_of_earlier_versions_is_migrated() {
        let dir = tempfile::tempdir().unwrap();
        let sled_dir = dir.path().join("peers");
        let path = dir.path().join("peers.redb");
        let now = 1_800_000_000;
        let entry = addr("1.2.3.4:8333", now, 1);
        let ban = BanEntry {
            created_ms: 1,
            until_ms: 1_000_000,
            reason: "misbehaving".into(),
        };
        {
            // What the sled store wrote, tree by tree.
            let db = sled::Config::new()
                .path(&sled_dir)
                .flush_every_ms(None)
                .open()
                .unwrap();
            let t = |name: &str| db.open_tree(name).unwrap();
            t("addrs")
                .insert(encoding::encode(&entry.addr), encoding::encode(&entry))
                .unwrap();
            let target = BanTarget::Ip("9.9.9.9".parse().unwrap());
            t("bans")
                .insert(
                    encoding::encode(&BanKey::from(&target)),
                    encoding::encode(&ban),
                )
                .unwrap();
            t("identities").insert(b"h:1", &[4; 32]).unwrap();
            t("meta").insert(ADDRMAN_KEY, &[7; 32]).unwrap();
            t("meta").insert(SCHEMA_KEY, &SCHEMA.to_le_bytes()).unwrap();
            db.flush().unwrap();
        }
        let report = PeerStore::migrate_from_sled(&sled_dir, &path)
            .unwrap()
            .expect("a migration");
        assert_eq!(
            report.trees,
            vec![
                ("addrs".to_string(), 1),
                ("bans".to_string(), 1),
                ("identities".to_string(), 1),
                ("meta".to_string(), 2)
            ]
        );
        assert!(!sled_dir.exists());
        let store = PeerStore::open(&path).unwrap();
        let man = store.load_addrman().unwrap();
        assert_eq!(man.key(), [7; 32]);
        assert_eq!(man.entries().cloned().collect::<Vec<_>>(), vec![entry]);
        let bans = store.load_bans().unwrap();
        assert!(bans.is_banned(&BanTarget::Ip("9.9.9.9".parse().unwrap()), 2));
        assert_eq!(store.learned_identity("h:1"), Some(NodeId([4; 32])));
        assert_eq!(
            PeerStore::migrate_from_sled(&sled_dir, &path).unwrap(),
            None
        );
    }

    #[test]
    fn the_tables_are_the_ones_migrated() {
        use redb::TableHandle;
        let names: Vec<&str> = [ADDRS, BANS, IDENTITIES, META]
            .iter()
            .map(|t| t.name())
            .collect();
        assert_eq!(names, TABLES);
    }
}
