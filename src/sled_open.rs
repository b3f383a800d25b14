//! Opening a sled database, shared by the chain store and the peer store.
//!
//! Owns one quirk: sled releases its file lock asynchronously (its flusher thread keeps a
//! dropped database alive for up to one flush interval), so reopening in the same process
//! right after a close (restart paths, tests) must wait for it, within a bound. Another
//! process cannot hold the lock: the datadir lock excludes a second noded.

use std::time::{Duration, Instant};

/// How long opening waits for a just-closed database's file lock to be released.
pub const LOCK_WAIT: Duration = Duration::from_secs(5);

/// Opens `config`, retrying while the file lock is still held by a database this process
/// just dropped.
pub fn open_waiting_for_lock(config: &sled::Config) -> sled::Result<sled::Db> {
    let deadline = Instant::now() + LOCK_WAIT;
    loop {
        match config.open() {
            Err(sled::Error::Io(e))
                if e.to_string().contains("could not acquire lock")
                    && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(10));
            }
            other => return other,
        }
    }
}
