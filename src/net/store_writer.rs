//! The peer store's writer: one thread that applies ban changes, address-book snapshots and
//! learned identities in the order the network service hands them over.
//!
//! Owns every write to the peer store after start-up, so no store I/O runs on the network
//! task or any async thread. It never decides what to write; a full queue is the service's
//! signal to keep its changes and hand them over on a later turn.

use super::store::PeerStore;
use crate::protocol::addrman::AddrInfo;
use crate::protocol::bans::BanChanges;
use crate::types::NodeId;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Jobs waiting for the writer. Ban changes accumulate in the ban list meanwhile, so a full
/// queue delays a save and loses nothing.
pub const WRITE_QUEUE: usize = 64;
/// How long shutdown waits for the writer to finish what is queued and flush.
pub const FINISH_TIMEOUT: Duration = Duration::from_secs(10);

pub enum StoreJob {
    Bans(BanChanges),
    Addresses(Vec<AddrInfo>),
    Identity { peer: String, node_id: NodeId },
    Flush(oneshot::Sender<()>),
}

pub struct StoreWriter {
    /// For reads (learned identities); writes go through the thread.
    store: Arc<PeerStore>,
    jobs: mpsc::Sender<StoreJob>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl StoreWriter {
    pub fn start(store: Arc<PeerStore>) -> std::io::Result<StoreWriter> {
        let (jobs, mut queue) = mpsc::channel::<StoreJob>(WRITE_QUEUE);
        let writing = store.clone();
        let thread = std::thread::Builder::new()
            .name("peer-store".into())
            .spawn(move || {
                while let Some(job) = queue.blocking_recv() {
                    apply(&writing, job);
                }
            })?;
        Ok(StoreWriter {
            store,
            jobs,
            thread: Some(thread),
        })
    }

    pub fn store(&self) -> &PeerStore {
        &self.store
    }

    /// A place in the queue, if there is one now.
    pub fn try_reserve(&self) -> Option<mpsc::Permit<'_, StoreJob>> {
        self.jobs.try_reserve().ok()
    }

    /// Queues `job` if there is room; false when the queue is full.
    pub fn try_send(&self, job: StoreJob) -> bool {
        self.jobs.try_send(job).is_ok()
    }

    /// Queues the last jobs, waits (bounded) until they are written and flushed, and stops the
    /// thread.
    pub async fn finish(mut self, last: Vec<StoreJob>) {
        let work = async {
            for job in last {
                if self.jobs.send(job).await.is_err() {
                    return;
                }
            }
            let (done, flushed) = oneshot::channel();
            if self.jobs.send(StoreJob::Flush(done)).await.is_ok() {
                let _ = flushed.await;
            }
        };
        if tokio::time::timeout(FINISH_TIMEOUT, work).await.is_err() {
            tracing::warn!("the peer store did not finish writing in time");
            return;
        }
        let (jobs, _) = mpsc::channel(1);
        drop(std::mem::replace(&mut self.jobs, jobs));
        if let Some(thread) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}

fn apply(store: &PeerStore, job: StoreJob) {
    let result = match job {
        StoreJob::Bans(changes) => store.apply_ban_changes(&changes),
        StoreJob::Addresses(entries) => store.save_addresses(&entries),
        StoreJob::Identity { peer, node_id } => store.remember_identity(&peer, &node_id),
        StoreJob::Flush(done) => {
            let flushed = store.flush();
            let _ = done.send(());
            flushed
        }
    };
    if let Err(e) = result {
        tracing::warn!(error = %e, "cannot write the peer store");
    }
}
