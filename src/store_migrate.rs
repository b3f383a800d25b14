//! One-time migration of a sled 0.34 database directory into a redb file: every key and value
//! of the named sled trees is copied into a redb table of the same name
//! (`TableDefinition<&[u8], &[u8]>`), byte for byte.
//!
//! Owns the move from the old layout to the new one only; it knows nothing of what the bytes
//! mean, so any store (peers, chain) can call it with its own tree names. It must never delete
//! or change the user's sled data: the old directory is only renamed to `<dir>.sled-old`.
//!
//! Crash safety: the copy is written into `<redb_path>.migrating`, made durable, and only then
//! renamed to `redb_path`, so `redb_path` either does not exist or holds the whole copy. A
//! leftover temporary file is an interrupted run: it is deleted and the copy starts over.

use redb::{Database, Durability, TableDefinition};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Keys copied per redb write transaction: bounds the memory one transaction's dirty pages
/// take while a large store (the chain's) is copied, at a few thousand commits per million keys.
pub const BATCH_KEYS: usize = 10_000;

/// Suffix of the temporary redb file a migration writes before renaming it into place.
pub const TEMP_SUFFIX: &str = "migrating";
/// Suffix the migrated sled directory is renamed to (kept, never deleted).
pub const OLD_SUFFIX: &str = "sled-old";

/// How long opening the sled database waits for its file lock when this process dropped a
/// handle to it just before: sled releases the lock from a background thread, after the drop.
/// Another process cannot hold it: each store's owner (the datadir lock) excludes a second one.
pub const SLED_LOCK_WAIT: Duration = Duration::from_secs(5);
/// How often the lock is tried again meanwhile.
const SLED_LOCK_RETRY: Duration = Duration::from_millis(10);

/// Files sled 0.34 keeps in its directory: a directory with both is a sled database.
const SLED_FILES: [&str; 2] = ["conf", "db"];

/// What one migration copied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationReport {
    /// Keys copied per tree, in the order the trees were named.
    pub trees: Vec<(String, u64)>,
    /// Where the sled directory now is.
    pub old_dir: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("cannot read the sled database {path} to migrate it: {source}; start the previous noded version to check it, or move the directory away to start this store empty")]
    OpenSled { path: PathBuf, source: sled::Error },
    #[error("cannot read tree {tree} of the sled database {path} while migrating it: {source}; the sled data is unchanged, move the directory away to start this store empty")]
    ReadSled {
        path: PathBuf,
        tree: String,
        source: sled::Error,
    },
    #[error("cannot write the migrated copy {path}: {source}; free disk space or fix the permissions of its directory and start again (the sled data is unchanged)")]
    WriteRedb { path: PathBuf, source: redb::Error },
    #[error("cannot {what} {path}: {source}; fix the permissions or free disk space and start again (the sled data is unchanged)")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("migrated {from} into {to}, but {old} already exists so {from} cannot be renamed to it; move {old} away and start again")]
    OldDirExists {
        from: PathBuf,
        to: PathBuf,
        old: PathBuf,
    },
    #[error("migrated {from} into {to}, but cannot rename {from} to {old}: {source}; rename or remove {from} by hand (the migrated copy is complete)")]
    RenameOld {
        from: PathBuf,
        to: PathBuf,
        old: PathBuf,
        source: std::io::Error,
    },
}

/// `path` with `.suffix` appended to its last component (`peers` -> `peers.sled-old`).
fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".");
    name.push(suffix);
    PathBuf::from(name)
}

/// Whether `dir` looks like a sled 0.34 database directory.
fn is_sled_dir(dir: &Path) -> bool {
    dir.is_dir() && SLED_FILES.iter().all(|f| dir.join(f).is_file())
}

/// Copies the trees `trees` of the sled database at `sled_dir` into a new redb file at
/// `redb_path` (with a page cache of `cache_bytes`), then renames `sled_dir` to
/// `<sled_dir>.sled-old`.
///
/// Returns `Ok(None)`, doing nothing, when there is nothing to migrate: `sled_dir` is not a
/// sled database, or `redb_path` already exists (then a leftover `sled_dir` is logged and left
/// alone: which of the two is newer cannot be known here).
pub fn migrate_sled_dir(
    sled_dir: &Path,
    redb_path: &Path,
    trees: &[&str],
    cache_bytes: usize,
) -> Result<Option<MigrationReport>, MigrateError> {
    if !is_sled_dir(sled_dir) {
        return Ok(None);
    }
    if redb_path.exists() {
        tracing::warn!(
            sled = %sled_dir.display(),
            redb = %redb_path.display(),
            "both a sled database and its redb replacement exist; using the redb file and ignoring the sled directory (move it away to silence this)"
        );
        return Ok(None);
    }
    let temp = with_suffix(redb_path, TEMP_SUFFIX);
    if temp.exists() {
        tracing::info!(path = %temp.display(), "removing the copy of an interrupted migration and starting over");
        std::fs::remove_file(&temp).map_err(|source| MigrateError::Io {
            what: "remove the interrupted migration's file",
            path: temp.clone(),
            source,
        })?;
    }
    tracing::info!(
        from = %sled_dir.display(),
        to = %redb_path.display(),
        "migrating the sled database to redb"
    );
    let counts = copy_trees(sled_dir, &temp, trees, cache_bytes)?;
    std::fs::rename(&temp, redb_path).map_err(|source| MigrateError::Io {
        what: "rename the migrated copy into place at",
        path: redb_path.to_path_buf(),
        source,
    })?;
    sync_parent(redb_path)?;

    let old_dir = with_suffix(sled_dir, OLD_SUFFIX);
    // rename(2) would silently replace an empty directory: never overwrite anything.
    if old_dir.exists() {
        return Err(MigrateError::OldDirExists {
            from: sled_dir.to_path_buf(),
            to: redb_path.to_path_buf(),
            old: old_dir,
        });
    }
    std::fs::rename(sled_dir, &old_dir).map_err(|source| MigrateError::RenameOld {
        from: sled_dir.to_path_buf(),
        to: redb_path.to_path_buf(),
        old: old_dir.clone(),
        source,
    })?;
    sync_parent(sled_dir)?;
    tracing::info!(
        old = %old_dir.display(),
        to = %redb_path.display(),
        keys = ?counts,
        "migrated; the old sled database is kept at the old path and can be removed once this version is known to work"
    );
    Ok(Some(MigrationReport {
        trees: counts,
        old_dir,
    }))
}

/// Copies the trees into a new redb file at `temp`, the last commit durable.
fn copy_trees(
    sled_dir: &Path,
    temp: &Path,
    trees: &[&str],
    cache_bytes: usize,
) -> Result<Vec<(String, u64)>, MigrateError> {
    let sled = open_sled(sled_dir).map_err(|source| MigrateError::OpenSled {
        path: sled_dir.to_path_buf(),
        source,
    })?;
    let write_err = |source: redb::Error| MigrateError::WriteRedb {
        path: temp.to_path_buf(),
        source,
    };
    let db = Database::builder()
        .set_cache_size(cache_bytes)
        .create(temp)
        .map_err(|e| write_err(e.into()))?;
    // Only trees that exist are opened: opening a missing one would create it in the sled
    // database, which this module never changes.
    let existing = sled.tree_names();
    let mut counts = Vec::with_capacity(trees.len());
    if trees.is_empty() {
        write_batch(&db, None, &[], Durability::Immediate).map_err(write_err)?;
    }
    for (i, &name) in trees.iter().enumerate() {
        let mut copied = 0u64;
        let mut batch: Vec<(sled::IVec, sled::IVec)> = Vec::with_capacity(BATCH_KEYS);
        if existing.iter().any(|t| t.as_ref() == name.as_bytes()) {
            let tree = sled
                .open_tree(name)
                .map_err(|source| MigrateError::ReadSled {
                    path: sled_dir.to_path_buf(),
                    tree: name.to_string(),
                    source,
                })?;
            for item in tree.iter() {
                let pair = item.map_err(|source| MigrateError::ReadSled {
                    path: sled_dir.to_path_buf(),
                    tree: name.to_string(),
                    source,
                })?;
                batch.push(pair);
                if batch.len() == BATCH_KEYS {
                    write_batch(&db, Some(name), &batch, Durability::None).map_err(write_err)?;
                    copied += batch.len() as u64;
                    batch.clear();
                }
            }
        }
        // Also creates the table when the tree is empty or absent, so every named table exists.
        // The last commit is the durable one: everything is on disk before the rename.
        let durability = if i + 1 == trees.len() {
            Durability::Immediate
        } else {
            Durability::None
        };
        write_batch(&db, Some(name), &batch, durability).map_err(write_err)?;
        copied += batch.len() as u64;
        counts.push((name.to_string(), copied));
    }
    db.close().map_err(|e| write_err(e.into()))?;
    drop(sled);
    Ok(counts)
}

/// Opens the sled database with no flusher thread (nothing is written to it), retrying within
/// `SLED_LOCK_WAIT` while a handle this process just dropped still holds the file lock.
fn open_sled(dir: &Path) -> sled::Result<sled::Db> {
    let config = sled::Config::new().path(dir).flush_every_ms(None);
    let deadline = Instant::now() + SLED_LOCK_WAIT;
    loop {
        match config.open() {
            Err(sled::Error::Io(e))
                if e.to_string().contains("could not acquire lock")
                    && Instant::now() < deadline =>
            {
                std::thread::sleep(SLED_LOCK_RETRY);
            }
            other => return other,
        }
    }
}

/// Writes `pairs` into `table` (creating it) in one write transaction; `None` commits nothing.
fn write_batch(
    db: &Database,
    table: Option<&str>,
    pairs: &[(sled::IVec, sled::IVec)],
    durability: Durability,
) -> Result<(), redb::Error> {
    let mut txn = db.begin_write()?;
    txn.set_durability(durability)?;
    if let Some(name) = table {
        let definition: TableDefinition<&[u8], &[u8]> = TableDefinition::new(name);
        let mut table = txn.open_table(definition)?;
        for (key, value) in pairs {
            table.insert(key.as_ref(), value.as_ref())?;
        }
    }
    txn.commit()?;
    Ok(())
}

/// Makes a rename in `path`'s directory durable.
fn sync_parent(path: &Path) -> Result<(), MigrateError> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    std::fs::File::open(parent)
        .and_then(|dir| dir.sync_all())
        .map_err(|source| MigrateError::Io {
            what: "sync the directory",
            path: parent.to_path_buf(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use redb::{ReadableDatabase, ReadableTable};

    const TREES: [&str; 3] = ["alpha", "beta", "empty"];
    const CACHE: usize = 1024 * 1024;

    type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

    /// A sled database at `dir` with `alpha` holding more than one batch of keys, `beta` a few,
    /// `empty` nothing, and an `other` tree that is not migrated. Returns what alpha and beta hold.
    fn make_sled(dir: &Path) -> Vec<(&'static str, Pairs)> {
        let db = sled::Config::new()
            .path(dir)
            .flush_every_ms(None)
            .open()
            .unwrap();
        let alpha: Pairs = (0..BATCH_KEYS as u32 + 7)
            .map(|i| (i.to_be_bytes().to_vec(), (i * 3).to_le_bytes().to_vec()))
            .collect();
        let beta = vec![
            (b"k1".to_vec(), b"v1".to_vec()),
            (b"k2".to_vec(), Vec::new()),
            (vec![0xff; 40], vec![7; 300]),
        ];
        for (name, pairs) in [("alpha", &alpha), ("beta", &beta)] {
            let tree = db.open_tree(name).unwrap();
            for (k, v) in pairs.iter() {
                tree.insert(k.as_slice(), v.as_slice()).unwrap();
            }
        }
        db.open_tree("empty").unwrap();
        db.open_tree("other").unwrap().insert(b"x", b"y").unwrap();
        db.flush().unwrap();
        vec![("alpha", alpha), ("beta", beta)]
    }

    fn read_table(path: &Path, name: &str) -> Pairs {
        let db = Database::builder()
            .set_cache_size(CACHE)
            .open(path)
            .unwrap();
        let txn = db.begin_read().unwrap();
        let table = txn
            .open_table(TableDefinition::<&[u8], &[u8]>::new(name))
            .unwrap();
        table
            .iter()
            .unwrap()
            .map(|item| {
                let (k, v) = item.unwrap();
                (k.value().to_vec(), v.value().to_vec())
            })
            .collect()
    }

    fn check_migrated(sled_dir: &Path, redb_path: &Path, expected: &[(&str, Pairs)]) {
        for (name, pairs) in expected {
            let mut sorted = pairs.clone();
            sorted.sort();
            assert_eq!(read_table(redb_path, name), sorted, "table {name}");
        }
        assert!(read_table(redb_path, "empty").is_empty());
        assert!(!sled_dir.exists());
        assert!(is_sled_dir(&with_suffix(sled_dir, OLD_SUFFIX)));
        assert!(!with_suffix(redb_path, TEMP_SUFFIX).exists());
    }

    #[test]
    fn every_key_is_copied_the_sled_dir_is_kept_renamed_and_a_second_run_does_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let sled_dir = dir.path().join("store");
        let redb_path = dir.path().join("store.redb");
        let expected = make_sled(&sled_dir);

        let report = migrate_sled_dir(&sled_dir, &redb_path, &TREES, CACHE)
            .unwrap()
            .expect("a migration");
        assert_eq!(
            report.trees,
            vec![
                ("alpha".to_string(), BATCH_KEYS as u64 + 7),
                ("beta".to_string(), 3),
                ("empty".to_string(), 0)
            ]
        );
        assert_eq!(report.old_dir, dir.path().join("store.sled-old"));
        check_migrated(&sled_dir, &redb_path, &expected);
        // The tree that was not named stays only in the old sled directory.
        let old = open_sled(&report.old_dir).unwrap();
        assert_eq!(old.open_tree("other").unwrap().len(), 1);
        drop(old);

        let before = std::fs::read(&redb_path).unwrap();
        assert_eq!(
            migrate_sled_dir(&sled_dir, &redb_path, &TREES, CACHE).unwrap(),
            None
        );
        assert_eq!(std::fs::read(&redb_path).unwrap(), before);
    }

    #[test]
    fn an_interrupted_migration_starts_over() {
        let dir = tempfile::tempdir().unwrap();
        let sled_dir = dir.path().join("store");
        let redb_path = dir.path().join("store.redb");
        let expected = make_sled(&sled_dir);
        // What a run killed mid-copy leaves: a partial redb file under the temporary name,
        // holding a key the sled database does not have.
        let temp = with_suffix(&redb_path, TEMP_SUFFIX);
        {
            let db = Database::create(&temp).unwrap();
            let txn = db.begin_write().unwrap();
            txn.open_table(TableDefinition::<&[u8], &[u8]>::new("beta"))
                .unwrap()
                .insert(b"stale".as_slice(), b"!".as_slice())
                .unwrap();
            txn.commit().unwrap();
        }
        migrate_sled_dir(&sled_dir, &redb_path, &TREES, CACHE)
            .unwrap()
            .expect("a migration");
        check_migrated(&sled_dir, &redb_path, &expected);

        // A temporary file that is not even a redb database is replaced too.
        let dir = tempfile::tempdir().unwrap();
        let sled_dir = dir.path().join("store");
        let redb_path = dir.path().join("store.redb");
        let expected = make_sled(&sled_dir);
        std::fs::write(with_suffix(&redb_path, TEMP_SUFFIX), b"half a file").unwrap();
        migrate_sled_dir(&sled_dir, &redb_path, &TREES, CACHE)
            .unwrap()
            .expect("a migration");
        check_migrated(&sled_dir, &redb_path, &expected);
    }

    #[test]
    fn nothing_to_migrate_is_not_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let redb_path = dir.path().join("store.redb");
        // Absent.
        assert_eq!(
            migrate_sled_dir(&dir.path().join("store"), &redb_path, &TREES, CACHE).unwrap(),
            None
        );
        // A directory that is not a sled database.
        std::fs::create_dir(dir.path().join("plain")).unwrap();
        assert_eq!(
            migrate_sled_dir(&dir.path().join("plain"), &redb_path, &TREES, CACHE).unwrap(),
            None
        );
        assert!(!redb_path.exists());
        // Both present (a crash between the two renames): the redb file is used, nothing moves.
        let sled_dir = dir.path().join("store");
        make_sled(&sled_dir);
        std::fs::write(&redb_path, b"").unwrap();
        assert_eq!(
            migrate_sled_dir(&sled_dir, &redb_path, &TREES, CACHE).unwrap(),
            None
        );
        assert!(is_sled_dir(&sled_dir));
    }

    #[test]
    fn an_existing_old_dir_is_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let sled_dir = dir.path().join("store");
        let redb_path = dir.path().join("store.redb");
        make_sled(&sled_dir);
        let old = with_suffix(&sled_dir, OLD_SUFFIX);
        std::fs::create_dir(&old).unwrap();
        let err = migrate_sled_dir(&sled_dir, &redb_path, &TREES, CACHE).unwrap_err();
        assert!(matches!(err, MigrateError::OldDirExists { .. }), "{err}");
        assert!(err.to_string().contains("store.sled-old"), "{err}");
        assert!(is_sled_dir(&sled_dir));
        assert!(redb_path.exists());
    }
}
