//! The data directory: creation, the exclusive lock, and the small files other processes read
//! (the RPC cookie and the RPC address).
//!
//! Owns file layout and permissions. Holding a `DataDir` means holding the lock; dropping it
//! releases the lock (the node removes the cookie and address files itself, with
//! `remove_rpc_files`, when it stops).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

pub const LOCK_FILE: &str = ".lock";
pub const COOKIE_FILE: &str = ".cookie";
pub const RPC_ADDR_FILE: &str = ".rpcaddr";
/// User name of cookie authentication, as in bitcoind.
pub const COOKIE_USER: &str = "__cookie__";

#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    #[error("cannot create datadir {path}: {source}")]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("datadir {0} is in use by another noded (it holds {0}/.lock); stop it or choose another --datadir")]
    Locked(PathBuf),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// An open, locked data directory.
#[derive(Debug)]
pub struct DataDir {
    path: PathBuf,
    _lock: File,
}

impl DataDir {
    /// Creates the directory if missing and takes its exclusive lock.
    pub fn open(path: &Path) -> Result<DataDir, DataDirError> {
        std::fs::create_dir_all(path).map_err(|source| DataDirError::Create {
            path: path.to_path_buf(),
            source,
        })?;
        let lock_path = path.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&lock_path)
            .map_err(|source| DataDirError::Write {
                path: lock_path.clone(),
                source,
            })?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(DataDirError::Locked(path.to_path_buf()))
            }
            Err(std::fs::TryLockError::Error(source)) => {
                return Err(DataDirError::Write {
                    path: lock_path,
                    source,
                })
            }
        }
        Ok(DataDir {
            path: path.to_path_buf(),
            _lock: lock,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Writes a fresh random cookie (`__cookie__:<64 hex>`, mode 0600) and returns the
    /// password part.
    pub fn write_cookie(&self) -> Result<String, DataDirError> {
        let mut secret = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut secret);
        let password = hex::encode(secret);
        write_private(
            &self.file(COOKIE_FILE),
            format!("{COOKIE_USER}:{password}").as_bytes(),
        )?;
        Ok(password)
    }

    /// Records where the RPC server listens, for `noded rpc` and for scripts.
    pub fn write_rpc_addr(&self, addr: SocketAddr) -> Result<(), DataDirError> {
        write_private(&self.file(RPC_ADDR_FILE), format!("{addr}\n").as_bytes())
    }

    /// Removes the files that describe a running RPC server.
    pub fn remove_rpc_files(&self) {
        for name in [COOKIE_FILE, RPC_ADDR_FILE] {
            let _ = std::fs::remove_file(self.file(name));
        }
    }
}

/// Writes `contents` to `path` atomically (temporary file, then rename), readable by the
/// owner only, so a reader sees either the old file or the whole new one.
pub fn write_private(path: &Path, contents: &[u8]) -> Result<(), DataDirError> {
    let err = |source| DataDirError::Write {
        path: path.to_path_buf(),
        source,
    };
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut file = OpenOptions::new()
        .create_new(true)
        .write(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(err)?;
    file.write_all(contents).map_err(err)?;
    file.sync_all().map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

/// Reads the cookie (`user:password`) and RPC address of a running node's datadir.
pub fn read_rpc_endpoint(datadir: &Path) -> Result<(String, SocketAddr), DataDirError> {
    let read = |name: &str| {
        let path = datadir.join(name);
        std::fs::read_to_string(&path).map_err(|source| DataDirError::Read { path, source })
    };
    let cookie = read(COOKIE_FILE)?.trim().to_string();
    let addr_text = read(RPC_ADDR_FILE)?;
    let addr = addr_text.trim().parse().map_err(|_| DataDirError::Read {
        path: datadir.join(RPC_ADDR_FILE),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, "not an address"),
    })?;
    Ok((cookie, addr))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_second_open_of_the_same_datadir_is_refused_until_the_first_closes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/dir");
        let first = DataDir::open(&path).unwrap();
        let err = DataDir::open(&path).unwrap_err();
        assert!(matches!(err, DataDirError::Locked(_)), "{err}");
        assert!(err.to_string().contains("in use by another noded"));
        drop(first);
        DataDir::open(&path).unwrap();
    }

    #[test]
    fn cookie_is_private_random_and_readable_back() {
        let dir = tempfile::tempdir().unwrap();
        let d = DataDir::open(dir.path()).unwrap();
        let p1 = d.write_cookie().unwrap();
        let p2 = d.write_cookie().unwrap();
        assert_ne!(p1, p2);
        assert_eq!(p2.len(), 64);
        let mode = std::fs::metadata(d.file(COOKIE_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        d.write_rpc_addr("127.0.0.1:5".parse().unwrap()).unwrap();
        let (cookie, addr) = read_rpc_endpoint(dir.path()).unwrap();
        assert_eq!(cookie, format!("__cookie__:{p2}"));
        assert_eq!(addr.port(), 5);
        d.remove_rpc_files();
        assert!(read_rpc_endpoint(dir.path()).is_err());
    }
}
