//! WebSocket subscriptions: `subscribe_blocks`, `subscribe_transactions`, `subscribe_peers`.
//!
//! Owns the forwarding of the chain's, the mempool's and the network's broadcast events to
//! subscribers, one task per subscription. Must never buffer for a subscriber without bound
//! or wait on one: a subscriber's backlog is its connection's bounded queue
//! (`SUBSCRIBER_BACKLOG`), and one that keeps it full for `SUBSCRIBER_GRACE` is dropped
//! with a close notice saying so, while every other subscriber carries on.

use super::help::{req, MethodHelp};
use crate::chain::{ChainEvent, ChainHandle};
use crate::mempool::{AdmittedTx, RemovedTxs, SharedMempool};
use crate::net::service::{NetHandle, PeerNotice};
use crate::types::{Block, Hash256};
use jsonrpsee::core::SubscriptionResult;
use jsonrpsee::proc_macros::rpc;
use jsonrpsee::server::{PendingSubscriptionSink, SubscriptionMessage};
use serde::Serialize;
use tokio::sync::broadcast;

/// Notifications (and answers) a WebSocket connection may have queued unread before its
/// subscriptions are dropped: a few seconds of a busy node's events for a healthy client,
/// and at most a few hundred kilobytes held for one that stopped reading.
pub const SUBSCRIBER_BACKLOG: u32 = 1_024;

/// How long a notice may wait for room in a full queue before its subscriber counts as
/// fallen behind: one block can confirm (or a flood admit) more transactions than the queue
/// holds, and a healthy reader drains it well within this; a reader that stopped does not.
pub const SUBSCRIBER_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// Subscriptions one connection may hold: the dashboard needs three.
pub const MAX_SUBSCRIPTIONS_PER_CONNECTION: u32 = 16;

/// The close notice of a subscriber that could not keep up.
pub const TOO_SLOW: &str =
    "subscription dropped: the subscriber fell behind (too many unread notifications); subscribe again";

/// A block joining or leaving the active chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct BlockNotice {
    /// `connected` or `disconnected`.
    pub event: String,
    pub height: u64,
    pub hash: Hash256,
    pub prev_hash: Hash256,
    pub time: u64,
    pub txs: usize,
}

impl BlockNotice {
    fn new(event: &str, block: &Block, height: u64) -> BlockNotice {
        BlockNotice {
            event: event.to_string(),
            height,
            hash: block.hash(),
            prev_hash: block.header.prev_hash,
            time: block.header.time,
            txs: block.transactions.len(),
        }
    }
}

/// A transaction entering or leaving the mempool.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(tag = "event", rename_all = "lowercase")]
pub enum TxNotice {
    /// Admitted; `future` when it waits for an earlier nonce of its sender.
    Accepted { txid: Hash256, future: bool },
    /// Gone: `confirmed`, `replaced`, or the rule it now breaks.
    Removed { txid: Hash256, reason: String },
}

#[rpc(server)]
pub trait SubscriptionApi {
    /// Blocks connected to and disconnected from the active chain, in order.
    #[subscription(name = "subscribe_blocks" => "block", unsubscribe = "unsubscribe_blocks", item = BlockNotice)]
    async fn subscribe_blocks(&self) -> SubscriptionResult;

    /// Transactions accepted into and removed from the mempool.
    #[subscription(name = "subscribe_transactions" => "transaction", unsubscribe = "unsubscribe_transactions", item = TxNotice)]
    async fn subscribe_transactions(&self) -> SubscriptionResult;

    /// Peers connected, disconnected and banned.
    #[subscription(name = "subscribe_peers" => "peer", unsubscribe = "unsubscribe_peers", item = PeerNotice)]
    async fn subscribe_peers(&self) -> SubscriptionResult;
}

/// Help for the subscription methods (`help`); they are WebSocket-only.
pub const SUBSCRIPTION_METHODS: &[MethodHelp] = &[
    MethodHelp {
        name: "subscribe_blocks",
        args: &[],
        about: "WebSocket only: notifies each block connected to or disconnected from the active chain, in order.",
        result: "subscription id; then notifications `block` {event: connected|disconnected, height, hash, prev_hash, time, txs}",
        example: "",
    },
    MethodHelp {
        name: "unsubscribe_blocks",
        args: &[req("subscription", "integer", "The id subscribe_blocks answered.")],
        about: "WebSocket only: ends a subscribe_blocks subscription.",
        result: "bool",
        example: "4178542360541337",
    },
    MethodHelp {
        name: "subscribe_transactions",
        args: &[],
        about: "WebSocket only: notifies each mempool transaction accepted or removed.",
        result: "subscription id; then notifications `transaction` {event: accepted, txid, future} or {event: removed, txid, reason}",
        example: "",
    },
    MethodHelp {
        name: "unsubscribe_transactions",
        args: &[req("subscription", "integer", "The id subscribe_transactions answered.")],
        about: "WebSocket only: ends a subscribe_transactions subscription.",
        result: "bool",
        example: "4178542360541337",
    },
    MethodHelp {
        name: "subscribe_peers",
        args: &[],
        about: "WebSocket only: notifies each peer connected, disconnected (with the reason) or banned.",
        result: "subscription id; then notifications `peer` {event: connected, peer, addr, nodeid, connection_type}, {event: disconnected, peer, reason} or {event: banned, target, until, reason}",
        example: "",
    },
    MethodHelp {
        name: "unsubscribe_peers",
        args: &[req("subscription", "integer", "The id subscribe_peers answered.")],
        about: "WebSocket only: ends a subscribe_peers subscription.",
        result: "bool",
        example: "4178542360541337",
    },
];

pub struct Subscriptions {
    chain: ChainHandle,
    mempool: SharedMempool,
    net: NetHandle,
}

pub fn subscription_rpc_module(
    chain: ChainHandle,
    mempool: SharedMempool,
    net: NetHandle,
) -> jsonrpsee::RpcModule<Subscriptions> {
    Subscriptions {
        chain,
        mempool,
        net,
    }
    .into_rpc()
}

#[jsonrpsee::core::async_trait]
impl SubscriptionApiServer for Subscriptions {
    async fn subscribe_blocks(&self, pending: PendingSubscriptionSink) -> SubscriptionResult {
        let events = self.chain.subscribe();
        forward(pending, events, |event: ChainEvent| match event {
            ChainEvent::BlockConnected(block, height) => {
                vec![BlockNotice::new("connected", &block, height)]
            }
            ChainEvent::BlockDisconnected(block, height) => {
                vec![BlockNotice::new("disconnected", &block, height)]
            }
        })
        .await
    }

    async fn subscribe_transactions(&self, pending: PendingSubscriptionSink) -> SubscriptionResult {
        let streams = PoolStreams {
            accepted: self.mempool.subscribe(),
            removed: self.mempool.subscribe_removals(),
        };
        forward_pool(pending, streams).await
    }

    async fn subscribe_peers(&self, pending: PendingSubscriptionSink) -> SubscriptionResult {
        let notices = self.net.subscribe_peers();
        forward(pending, notices, |notice: PeerNotice| vec![notice]).await
    }
}

/// What went wrong for a subscriber, as its close notice.
fn too_slow() -> jsonrpsee::core::SubscriptionError {
    TOO_SLOW.into()
}

/// Sends each event of `events`, turned into notices by `notices`, until the subscriber
/// leaves, the source closes (shutdown), or the subscriber falls behind.
async fn forward<E: Clone, N: Serialize>(
    pending: PendingSubscriptionSink,
    mut events: broadcast::Receiver<E>,
    notices: impl Fn(E) -> Vec<N>,
) -> SubscriptionResult {
    let mut sink = pending.accept().await?;
    loop {
        let event = tokio::select! {
            _ = sink.closed() => return Ok(()),
            event = events.recv() => event,
        };
        match event {
            Ok(event) => {
                for notice in notices(event) {
                    send(&mut sink, &notice).await?;
                }
            }
            Err(broadcast::error::RecvError::Lagged(_)) => return Err(too_slow()),
            Err(broadcast::error::RecvError::Closed) => return Ok(()),
        }
    }
}

/// Queues one notice: at once when there is room, else waiting up to `SUBSCRIBER_GRACE`
/// for the subscriber to read; one that does not is too slow.
async fn send<N: Serialize>(
    sink: &mut jsonrpsee::server::SubscriptionSink,
    notice: &N,
) -> Result<(), jsonrpsee::core::SubscriptionError> {
    use jsonrpsee::core::server::{SendTimeoutError, TrySendError};
    let message: SubscriptionMessage = serde_json::value::to_raw_value(notice)
        .map_err(|e| jsonrpsee::core::SubscriptionError::from(e.to_string()))?
        .into();
    match sink.try_send(message) {
        Ok(()) => Ok(()),
        Err(TrySendError::Full(message)) => {
            match sink.send_timeout(message, SUBSCRIBER_GRACE).await {
                Ok(()) => Ok(()),
                Err(SendTimeoutError::Timeout(_)) => Err(too_slow()),
                Err(SendTimeoutError::Closed(_)) => Ok(()),
            }
        }
        // The subscriber left; its task ends at the next `closed()` check.
        Err(TrySendError::Closed(_)) => Ok(()),
    }
}

/// The mempool's two streams as one: admissions and removals, each in its own order.
enum PoolEvent {
    Accepted(Result<AdmittedTx, broadcast::error::RecvError>),
    Removed(Result<RemovedTxs, broadcast::error::RecvError>),
}

struct PoolStreams {
    accepted: broadcast::Receiver<AdmittedTx>,
    removed: broadcast::Receiver<RemovedTxs>,
}

async fn forward_pool(
    pending: PendingSubscriptionSink,
    mut pool: PoolStreams,
) -> SubscriptionResult {
    let mut sink = pending.accept().await?;
    loop {
        let event = tokio::select! {
            _ = sink.closed() => return Ok(()),
            event = pool.accepted.recv() => PoolEvent::Accepted(event),
            event = pool.removed.recv() => PoolEvent::Removed(event),
        };
        match event {
            PoolEvent::Accepted(Ok(tx)) => {
                let notice = TxNotice::Accepted {
                    txid: tx.txid,
                    future: tx.future,
                };
                send(&mut sink, &notice).await?
            }
            PoolEvent::Removed(Ok(removed)) => {
                for (txid, reason) in removed.0.iter() {
                    let notice = TxNotice::Removed {
                        txid: *txid,
                        reason: reason.clone(),
                    };
                    send(&mut sink, &notice).await?;
                }
            }
            PoolEvent::Accepted(Err(broadcast::error::RecvError::Lagged(_)))
            | PoolEvent::Removed(Err(broadcast::error::RecvError::Lagged(_))) => {
                return Err(too_slow())
            }
            PoolEvent::Accepted(Err(broadcast::error::RecvError::Closed))
            | PoolEvent::Removed(Err(broadcast::error::RecvError::Closed)) => return Ok(()),
        }
    }
}
