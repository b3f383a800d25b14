//! The network service: one task that owns the protocol `Core`, feeds it peer events, the
//! clock and RPC commands, and carries out its outputs (send, dial, disconnect).
//!
//! Owns the listener, the table of inbound connections in TLS set-up, the registry of live
//! peer tasks, DNS seed resolution, and what the peer store must save (written by the store
//! writer's thread, never here). It never blocks on a peer: sends go into bounded outboxes with
//! `try_send`, and a full outbox stops that peer. It is handed the chain and the mempool by
//! `node` and changes them only through their handles, never by owning their state.

use super::counts::PeerCounts;
use super::peer::{self, PeerContext, PeerEvent, PeerStats};
use super::pending::{PendingTable, Refusal};
use super::store_writer::{StoreJob, StoreWriter};
use super::tls::TlsIdentity;
use crate::chain::work::work_from_bytes;
use crate::chain::{ChainError, ChainEvent, ChainHandle, SubmitOutcome};
use crate::config::PeerSpec;
use crate::mempool::shared::AdmittedTx;
use crate::mempool::{MempoolError, SharedMempool};
use crate::metrics::Metrics;
use crate::protocol::bans::BanTarget;
use crate::protocol::cmpct::{block_txn_of, compact_of, Filler, KEPT_PUSHED, MAX_PENDING};
use crate::protocol::headers::HeaderTree;
use crate::protocol::io::{Announceable, Reconstruction};
use crate::protocol::{
    AddedNodeSnapshot, Command, CommandError, Core, Event, Input, Output, PeerId, PeerSnapshot,
    Persist,
};
use crate::protocol::{BlockResult, TxResult};
use crate::time::{Clock, LocalTime, Now, SystemClock};
use crate::types::{Block, Hash256, Transaction};
use crate::wire::compact::{CompactBlock, GetBlockTxn};
use crate::wire::message::{inv_list, InvKind};
use crate::wire::Message;
use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Peer events waiting for the service; peer tasks wait when it is full (backpressure).
pub const EVENT_QUEUE: usize = 4096;
/// Chain answers waiting for the service: more than the blocks the core has in flight.
const BLOCK_RESULT_QUEUE: usize = 256;
/// Blocks (whole, compact, or their transactions) waiting to be served to one peer: several
/// download windows' worth (a peer asks for at most 16 at a time); beyond it a request is
/// answered NOTFOUND.
const SERVE_QUEUE: usize = 256;
/// Transactions one peer has asked for that wait for its serving task: twice what a noded
/// requester keeps in flight per peer (`MAX_IN_FLIGHT_PER_PEER`), so an honest peer is never
/// told NOTFOUND for a transaction this node holds (a flood's GETDATAs come in many small
/// ones, and NOTFOUND sends the requester elsewhere, or makes it forget the transaction when
/// nobody else announced it). A request past this is answered NOTFOUND. Counted in
/// transactions, not GETDATA messages (each holds at least one, so the channel's capacity
/// in messages is the same number).
const SERVE_TX_QUEUED: usize = 2 * crate::protocol::txrelay::MAX_IN_FLIGHT_PER_PEER;
/// Mempool transactions announced to a peer when it connects, at most (the announcement
/// queue's own bound).
const MEMPOOL_ANNOUNCED_ON_CONNECT: usize = 50_000;
/// Mempool listings for new peers waiting for the service (each task waits for room).
const LISTING_QUEUE: usize = 16;
/// Mempool answers waiting for the service: the checks in flight, and then some.
const TX_RESULT_QUEUE: usize = 1_024;
/// Rebuilt compact blocks waiting for the service: the core has at most `MAX_PENDING`
/// handed over at once.
const REBUILD_QUEUE: usize = MAX_PENDING;
/// Transactions from peers checked at once (one per peer at a time, in its order).
const TX_CHECKS: usize = 16;
/// Transactions of one peer checked as one batch, at most: large enough that the signature
/// batch pays off (split over two cores, 512 a core verify with Pippenger's method; below
/// about 190 a core the verifier uses Straus's, slower a signature), small enough that the
/// pool's lock is held a few milliseconds for their admission. The five-node flood
/// (`cargo bench --bench txrelay -- line`) went from 9,815 to 11,590 tx/s (three runs each,
/// interleaved) when this went from 256 to 1,024.
const TX_CHECK_BATCH: usize = 1_024;
/// A peer's transactions waiting for the mempool: as many as the core asks of one peer.
const TX_CHECK_QUEUE: usize = crate::protocol::txrelay::MAX_IN_FLIGHT_PER_PEER;
/// How long a compact block push waits for the one asked for before it to be queued.
const COMPACT_ORDER_WAIT: Duration = Duration::from_secs(1);
/// How long a served answer for a peer may wait for room in its served queue.
const SERVE_SEND_TIMEOUT: Duration = Duration::from_secs(30);
/// How often initial sync logs its progress: a human pace, not a line per block.
const SYNC_PROGRESS_EVERY: Duration = Duration::from_secs(5);
/// RPC commands waiting for the service.
pub const COMMAND_QUEUE: usize = 64;
/// How long an RPC waits for the service to answer.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);

/// Where to find more peers besides the address book.
#[derive(Clone, Debug, Default)]
pub struct Discovery {
    /// DNS seed names with the port their nodes listen on.
    pub dns_seeds: Vec<(String, u16)>,
    /// The DNS server to ask; the system's resolver configuration when `None`.
    pub dns_resolver: Option<SocketAddr>,
    /// Nodes added to the address book at start.
    pub bootstrap: Vec<PeerSpec>,
    /// Announce and look for nodes on the local link with mDNS.
    pub lan: Option<LanSettings>,
}

#[derive(Clone, Copy, Debug)]
pub struct LanSettings {
    pub network: crate::params::Network,
    pub node_id: crate::types::NodeId,
    pub port: u16,
}

/// A peer as getpeerinfo shows it: protocol state plus I/O counters and TLS session.
#[derive(Clone, Debug)]
pub struct PeerInfo {
    pub protocol: PeerSnapshot,
    pub stats: PeerStats,
    pub tls_version: String,
    pub tls_cipher: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddNodeOp {
    Add,
    Remove,
    OneTry,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct BannedEntry {
    pub address: String,
    pub ban_created: u64,
    pub banned_until: u64,
    pub ban_duration: u64,
    pub time_remaining: u64,
    pub reason: String,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct KnownAddress {
    pub time: u64,
    pub services: u64,
    pub address: String,
    pub port: u16,
    pub network: &'static str,
}

type Reply<T> = oneshot::Sender<T>;

pub enum NetCommand {
    PeerInfo(Reply<Vec<PeerInfo>>),
    AddNode(PeerSpec, AddNodeOp, Reply<Result<(), CommandError>>),
    AddedNodes(Reply<Vec<AddedNodeSnapshot>>),
    Disconnect(
        Option<PeerId>,
        Option<SocketAddr>,
        Reply<Result<(), CommandError>>,
    ),
    Ban(BanTarget, Option<u64>, Reply<()>),
    Unban(BanTarget, Reply<bool>),
    ListBanned(Reply<Vec<BannedEntry>>),
    ClearBanned(Reply<()>),
    NodeAddresses(usize, Reply<Vec<KnownAddress>>),
    /// Branches of the header tree that end in headers without blocks: hash, height,
    /// branch length.
    HeaderTips(Reply<Vec<(Hash256, u64, u64)>>),
    Ping(Reply<()>),
    /// `setnetworkactive`: answers the state now.
    SetNetworkActive(bool, Reply<bool>),
    /// `submitblock`: the block passed the chain's stateless checks and signatures and is
    /// being connected; pushed at once to the peers that asked for compact pushes.
    BlockChecked(Arc<Block>),
}

/// Header-only branches one getchaintips lists at most (a peer's side branches are bounded
/// by the tree; the answer is bounded too).
pub const MAX_HEADER_TIPS: usize = 1_000;

/// The RPC side's handle on the service.
#[derive(Clone)]
pub struct NetHandle {
    commands: mpsc::Sender<NetCommand>,
    pub counts: Arc<PeerCounts>,
    pub totals: Arc<Totals>,
    notices: broadcast::Sender<PeerNotice>,
}

/// Peer notices buffered for subscribers that have not read them yet: a subscriber further
/// behind is told it lagged (and `subscribe_peers` drops it) rather than held up.
pub const PEER_NOTICE_CAPACITY: usize = 1_024;

/// A peer coming, going or banned, as `subscribe_peers` publishes it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "event", rename_all = "lowercase")]
pub enum PeerNotice {
    Connected {
        peer: PeerId,
        addr: String,
        nodeid: String,
        connection_type: &'static str,
    },
    Disconnected {
        peer: PeerId,
        reason: String,
    },
    Banned {
        target: String,
        /// Unix time (seconds) the ban ends.
        until: u64,
        reason: String,
    },
}

/// Bytes of closed connections, so getnettotals counts them too.
#[derive(Debug, Default)]
pub struct Totals {
    pub closed_sent: std::sync::atomic::AtomicU64,
    pub closed_recv: std::sync::atomic::AtomicU64,
}

#[derive(Debug, thiserror::Error)]
#[error("the network service is not answering")]
pub struct ServiceGone;

impl NetHandle {
    /// Hands the service a block submitted here that passed the chain's stateless checks and
    /// signatures, to push before the chain connects it. Never waits: with the command queue
    /// full it is left to the announcement that follows the connect.
    pub fn block_checked(&self, block: Arc<Block>) {
        let _ = self.commands.try_send(NetCommand::BlockChecked(block));
    }

    /// Peer notices from now on.
    pub fn subscribe_peers(&self) -> broadcast::Receiver<PeerNotice> {
        self.notices.subscribe()
    }

    pub async fn call<T>(
        &self,
        make: impl FnOnce(Reply<T>) -> NetCommand,
    ) -> Result<T, ServiceGone> {
        let (tx, rx) = oneshot::channel();
        tokio::time::timeout(COMMAND_TIMEOUT, self.commands.send(make(tx)))
            .await
            .map_err(|_| ServiceGone)?
            .map_err(|_| ServiceGone)?;
        tokio::time::timeout(COMMAND_TIMEOUT, rx)
            .await
            .map_err(|_| ServiceGone)?
            .map_err(|_| ServiceGone)
    }
}

struct LivePeer {
    /// Blocks waiting for its serving task (`serve_peer`), once it has asked for any.
    serving: Option<mpsc::Sender<ServeJob>>,
    /// Its transactions waiting for the mempool (`check_peer_txs`), in arrival order.
    checking: Option<mpsc::Sender<(Hash256, Box<Transaction>)>>,
    /// Transaction requests waiting for its transaction-serving task (`serve_peer_txs`), and
    /// how many transactions they hold.
    serving_txs: Option<(mpsc::Sender<Vec<Hash256>>, Arc<AtomicUsize>)>,
    addr: SocketAddr,
    /// Why this side ended it (the core's decision, or a full outbox); `None` while it runs,
    /// or when the peer or the socket ended it.
    stop_reason: Option<crate::protocol::DisconnectReason>,
    outbox: mpsc::Sender<Message>,
    /// The serving tasks' answers, apart from the outbox (`peer::SERVED_CAPACITY`).
    served: mpsc::Sender<Message>,
    stats: Arc<Mutex<PeerStats>>,
    stop: CancellationToken,
    tls_version: String,
    tls_cipher: String,
    /// Its connection type once the core took it into its peer table: the `noded_peers`
    /// label, whether its connect and end get INFO lines (`announced`), and whether
    /// subscribers hear of its end all follow from it.
    conn_type: Option<crate::protocol::ConnType>,
}

pub struct NetService {
    core: Core,
    /// Monotonic time for the core's timers, the wall clock for what the protocol carries.
    clock: SystemClock,
    /// When the core wants its next `Tick`.
    next_tick: LocalTime,
    /// Saves the store writer could not take this turn, handed back to the core after it.
    deferred: Vec<Persist>,
    /// The chain: blocks from peers go to it, blocks for peers come from its store.
    chain: ChainHandle,
    /// The chain's connects and disconnects, fed to the core in order.
    chain_events: broadcast::Receiver<ChainEvent>,
    /// The chain's answers for blocks handed over (`Output::SubmitBlock`).
    block_results_tx: mpsc::Sender<(PeerId, Hash256, BlockResult)>,
    block_results: mpsc::Receiver<(PeerId, Hash256, BlockResult)>,
    /// A header tree rebuilt from the store after chain events were missed.
    reloaded_tx: mpsc::Sender<Box<HeaderTree>>,
    reloaded: mpsc::Receiver<Box<HeaderTree>>,
    /// Where peers' transactions go and what is served to them.
    mempool: SharedMempool,
    /// Transactions the mempool admitted ready to mine (any source): announced to peers.
    admitted: broadcast::Receiver<AdmittedTx>,
    /// Per peer, the futures it relayed that an expiry sweep dropped unfilled (a notice
    /// missed when lagging goes unscored).
    unfilled: broadcast::Receiver<(PeerId, usize)>,
    /// What the pool removed: evicted futures are fetched again (`Input::TxsEvicted`); a
    /// notice missed when lagging leaves those to their senders' next nonces.
    removals: broadcast::Receiver<crate::mempool::shared::RemovedTxs>,
    /// The mempool's answers for transactions handed over (`Output::SubmitTx`).
    tx_results_tx: mpsc::Sender<(PeerId, Hash256, TxResult)>,
    tx_results: mpsc::Receiver<(PeerId, Hash256, TxResult)>,
    /// Transactions from peers being checked at once, at most (each on a blocking thread).
    tx_checks: Arc<tokio::sync::Semaphore>,
    /// Mempool listings for new peers (`Output::ListMempool`), taken off the network task.
    listed_tx: mpsc::Sender<(PeerId, Vec<Announceable>)>,
    listed: mpsc::Receiver<(PeerId, Vec<Announceable>)>,
    /// Compact blocks rebuilt from the mempool (`Output::Reconstruct`), off the network task.
    rebuilt_tx: mpsc::Sender<(PeerId, Hash256, Reconstruction)>,
    rebuilt: mpsc::Receiver<(PeerId, Hash256, Reconstruction)>,
    /// Blocks recently sent as compact blocks, newest last, for GETBLOCKTXN.
    recent_blocks: Arc<Mutex<VecDeque<Arc<Block>>>>,
    /// The txids a recent rebuild placed, by block, so passing the block on as a compact
    /// block hashes only the transactions the pool did not have.
    rebuilt_txids: Arc<Mutex<VecDeque<PlacedTxids>>>,
    /// Dropped by the last compact block's send task once it has queued its messages: the
    /// next one waits for it, so compact blocks built side by side go out in the order the
    /// core asked (a child before its parent makes the receiver fetch it by headers).
    compact_sent: Option<oneshot::Receiver<()>>,
    ctx: Arc<PeerContext>,
    /// Writes the peer store off the async threads; `None` once shutdown has handed it over.
    writer: Option<StoreWriter>,
    discovery: Discovery,
    events: mpsc::Receiver<PeerEvent>,
    commands: mpsc::Receiver<NetCommand>,
    live: HashMap<PeerId, LivePeer>,
    tasks: JoinSet<()>,
    next_peer: PeerId,
    /// Inbound connections in TLS set-up, and the token that evicts each.
    pending: PendingTable,
    pending_tokens: HashMap<PeerId, CancellationToken>,
    counts: Arc<PeerCounts>,
    totals: Arc<Totals>,
    /// Peer notices for subscribers (nobody listening costs a failed send).
    notices: broadcast::Sender<PeerNotice>,
    found_tx: mpsc::Sender<(&'static str, Vec<SocketAddr>)>,
    found_rx: mpsc::Receiver<(&'static str, Vec<SocketAddr>)>,
}

impl NetService {
    /// Builds the service. `manual` are --addnode/--connect peers; the network magic is the
    /// chain's. The handle carries the peer counts the service publishes.
    // Every argument is a distinct part `node` hands over; a struct of them would only rename
    // this list.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        tls: TlsIdentity,
        core: Core,
        writer: StoreWriter,
        manual: Vec<PeerSpec>,
        discovery: Discovery,
        chain: ChainHandle,
        mempool: SharedMempool,
        metrics: Arc<Metrics>,
    ) -> (NetService, NetHandle) {
        // Subscribed before the tree is read: a block connected in between is seen twice,
        // which the core takes in its stride, rather than not at all.
        let chain_events = chain.subscribe();
        let core = core.with_headers(load_header_tree(&chain));
        let mut core = core;
        let (block_results_tx, block_results) = mpsc::channel(BLOCK_RESULT_QUEUE);
        let (tx_results_tx, tx_results) = mpsc::channel(TX_RESULT_QUEUE);
        let (listed_tx, listed) = mpsc::channel(LISTING_QUEUE);
        let (rebuilt_tx, rebuilt) = mpsc::channel(REBUILD_QUEUE);
        let admitted = mempool.subscribe();
        let unfilled = mempool.subscribe_unfilled();
        let removals = mempool.subscribe_removals();
        let (reloaded_tx, reloaded) = mpsc::channel(1);
        let (events_tx, events) = mpsc::channel(EVENT_QUEUE);
        let (commands_tx, commands) = mpsc::channel(COMMAND_QUEUE);
        let (found_tx, found_rx) = mpsc::channel(16);
        let clock = SystemClock::new();
        for spec in manual {
            let learned = writer.store().learned_identity(&spec.to_string());
            let add = Command::AddNode { spec, learned };
            if let Err(e) = core.handle(clock.now(), Input::Command(add)) {
                tracing::warn!(error = %e, "ignoring a repeated peer");
            }
        }
        let bootstrap: Vec<SocketAddr> = discovery
            .bootstrap
            .iter()
            .filter_map(PeerSpec::socket_addr)
            .collect();
        if !bootstrap.is_empty() {
            let _ = core.handle(clock.now(), Input::Bootstrap { addrs: bootstrap });
        }
        let totals = Arc::new(Totals::default());
        let counts = Arc::new(PeerCounts::default());
        let max_inbound_per_ip = core.config().max_inbound_per_ip;
        let (notices, _) = broadcast::channel(PEER_NOTICE_CAPACITY);
        let handle = NetHandle {
            commands: commands_tx,
            counts: counts.clone(),
            totals: totals.clone(),
            notices: notices.clone(),
        };
        let service = NetService {
            core,
            clock,
            next_tick: LocalTime::default(),
            deferred: Vec::new(),
            ctx: Arc::new(PeerContext {
                magic: chain.params().magic,
                tls,
                events: events_tx,
                budget: peer::HeldBudget::default(),
                metrics,
            }),
            writer: Some(writer),
            discovery,
            events,
            commands,
            live: HashMap::new(),
            tasks: JoinSet::new(),
            next_peer: 1,
            pending: PendingTable::new(max_inbound_per_ip),
            pending_tokens: HashMap::new(),
            counts,
            totals,
            notices,
            found_tx,
            found_rx,
            chain,
            chain_events,
            block_results_tx,
            block_results,
            reloaded_tx,
            reloaded,
            mempool,
            admitted,
            unfilled,
            removals,
            tx_results_tx,
            tx_results,
            tx_checks: Arc::new(tokio::sync::Semaphore::new(TX_CHECKS)),
            listed_tx,
            listed,
            rebuilt_tx,
            rebuilt,
            recent_blocks: Arc::new(Mutex::new(VecDeque::new())),
            rebuilt_txids: Arc::new(Mutex::new(VecDeque::new())),
            compact_sent: None,
        };
        (service, handle)
    }

    /// Runs until `shutdown`, then stops every peer and saves the peer store.
    pub async fn run(mut self, listener: Option<TcpListener>, shutdown: CancellationToken) {
        self.resolve_bootstrap_hosts();
        let _lan = self.discovery.lan.and_then(|lan| {
            match super::lan::LanDiscovery::start(
                lan.network,
                lan.node_id,
                lan.port,
                self.found_tx.clone(),
            ) {
                Ok(running) => {
                    tracing::info!(service = super::lan::SERVICE_TYPE, "LAN discovery on");
                    Some(running)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "LAN discovery unavailable");
                    None
                }
            }
        });
        self.feed(Input::Tick);
        let mut progress = tokio::time::interval(SYNC_PROGRESS_EVERY);
        progress.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut mark = (self.chain.tip().height, std::time::Instant::now());
        loop {
            let wake = self.clock.instant_at(self.next_tick);
            tokio::select! {
                _ = shutdown.cancelled() => break,
                accepted = accept(listener.as_ref()) => self.on_accept(accepted),
                Some(event) = self.events.recv() => self.on_event(event),
                Some(command) = self.commands.recv() => self.on_command(command),
                Some((how, addrs)) = self.found_rx.recv() => {
                    tracing::info!(how, found = addrs.len(), "peer addresses discovered");
                    let source = SocketAddr::from(([0, 0, 0, 0], 0));
                    self.feed(Input::Discovered { addrs, source });
                }
                event = self.chain_events.recv() => self.on_chain_event(event),
                Some((peer, hash, result)) = self.block_results.recv() => {
                    self.feed(Input::BlockProcessed { peer, hash, result });
                }
                Some(tree) = self.reloaded.recv() => self.feed(Input::HeadersReloaded(tree)),
                Some((peer, txs)) = self.listed.recv() => {
                    self.feed(Input::MempoolContents { peer, txs });
                }
                Some((peer, hash, result)) = self.rebuilt.recv() => {
                    self.feed(Input::Reconstructed { peer, hash, result });
                }
                Some((peer, txid, result)) = self.tx_results.recv() => {
                    self.feed(Input::TxProcessed { peer, txid, result });
                }
                admitted = self.admitted.recv() => self.on_admitted(admitted),
                Ok((peer, count)) = self.unfilled.recv() => {
                    self.feed(Input::FuturesExpired { peer, count });
                }
                Ok(removed) = self.removals.recv() => {
                    let evicted = MempoolError::Evicted.to_string();
                    let txids: Vec<Hash256> = removed
                        .0
                        .iter()
                        .filter(|(_, why)| *why == evicted)
                        .map(|(txid, _)| *txid)
                        .collect();
                    if !txids.is_empty() {
                        self.feed(Input::TxsEvicted { txids });
                    }
                }
                _ = tokio::time::sleep_until(wake.into()) => self.feed(Input::Tick),
                _ = progress.tick() => mark = self.log_sync_progress(mark),
                Some(_) = self.tasks.join_next(), if !self.tasks.is_empty() => {}
            }
            self.execute();
            self.publish_counts();
        }
        for peer in self.live.values() {
            peer.stop.cancel();
        }
        // Give peers their drain time to send what is queued, then stop them outright.
        let _ = tokio::time::timeout(peer::DRAIN_TIMEOUT, async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
        self.tasks.abort_all();
        // The last changes, then a flush, written off the async threads.
        self.feed(Input::Stopping);
        let last: Vec<StoreJob> = self
            .core
            .drain_outputs()
            .into_iter()
            .chain(
                std::mem::take(&mut self.deferred)
                    .into_iter()
                    .map(Output::Persist),
            )
            .filter_map(|output| match output {
                Output::Persist(what) => Some(store_job(what)),
                _ => None,
            })
            .collect();
        if let Some(writer) = self.writer.take() {
            writer.finish(last).await;
        }
    }

    fn on_accept(&mut self, accepted: std::io::Result<(tokio::net::TcpStream, SocketAddr)>) {
        let (tcp, addr) = match accepted {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                return;
            }
        };
        // A dual-stack listener reports IPv4 peers as ::ffff:a.b.c.d; bans, limits and
        // getpeerinfo all speak plain IPv4.
        let addr = crate::protocol::netgroup::canonical_addr(addr);
        if let Err(reason) = self.core.admit_inbound(self.clock.now(), addr) {
            tracing::debug!(%addr, %reason, "inbound connection refused");
            return;
        }
        // Connections still in TLS set-up count toward the per-IP cap too; a full table makes
        // room by dropping an older pending connection, never by refusing this one.
        let peer = self.next_peer;
        let admitted = match self.pending.admit(peer, addr.ip()) {
            Ok(admitted) => admitted,
            Err(Refusal::TooManyFromHost) => {
                tracing::debug!(%addr, "inbound connection refused: too many pending from this IP");
                return;
            }
        };
        if let Some(victim) = admitted.evicted {
            tracing::debug!(
                peer = victim,
                "dropping a pending inbound connection for a newer one"
            );
            if let Some(token) = self.pending_tokens.remove(&victim) {
                token.cancel();
            }
        }
        self.next_peer += 1;
        let evicted = CancellationToken::new();
        self.pending_tokens.insert(peer, evicted.clone());
        let ctx = self.ctx.clone();
        self.tasks
            .spawn(peer::run_inbound(peer, tcp, addr, ctx, evicted));
    }

    /// An inbound connection left its TLS set-up (connected, or gone).
    fn settle_pending(&mut self, peer: PeerId) {
        self.pending.settle(peer);
        self.pending_tokens.remove(&peer);
    }

    /// While blocks are behind the best header, one line every `SYNC_PROGRESS_EVERY`: the
    /// height, the headers, the rate since the last line, the share done and the time left.
    fn log_sync_progress(
        &self,
        (from, since): (u64, std::time::Instant),
    ) -> (u64, std::time::Instant) {
        let height = self.chain.tip().height;
        let headers = self.core.headers().best_height();
        if height < headers {
            let rate = height.saturating_sub(from) as f64 / since.elapsed().as_secs_f64();
            let percent = (height as f64 * 100.0 / headers as f64).floor();
            let eta_secs = if rate > 0.0 {
                ((headers - height) as f64 / rate).ceil() as u64
            } else {
                0
            };
            tracing::info!(
                height,
                headers,
                blocks_per_sec = format!("{rate:.1}"),
                percent,
                eta_secs,
                "syncing blocks"
            );
        }
        (height, std::time::Instant::now())
    }

    /// Feeds the core one input at the current time (only commands can fail: `command`).
    fn feed(&mut self, input: Input) {
        let _ = self.core.handle(self.clock.now(), input);
    }

    fn command(&mut self, command: Command) -> Result<(), CommandError> {
        self.core.handle(self.clock.now(), Input::Command(command))
    }

    fn now(&self) -> Now {
        self.clock.now()
    }

    fn on_event(&mut self, event: PeerEvent) {
        let input = match event {
            PeerEvent::Connected {
                peer,
                addr,
                dial,
                node_id,
                tls_version,
                tls_cipher,
                outbox,
                served,
                stats,
                stop,
            } => {
                self.settle_pending(peer);
                self.live.insert(
                    peer,
                    LivePeer {
                        serving: None,
                        checking: None,
                        serving_txs: None,
                        addr,
                        stop_reason: None,
                        outbox,
                        served,
                        stats,
                        stop,
                        tls_version,
                        tls_cipher,
                        conn_type: None,
                    },
                );
                Input::Connected {
                    peer,
                    addr,
                    dial,
                    node_id,
                }
            }
            PeerEvent::Received {
                peer,
                message,
                held,
            } => {
                self.feed(Input::Received { peer, message });
                drop(held);
                return;
            }
            PeerEvent::Broken { peer, error } => {
                tracing::info!(peer, %error, "peer broke the protocol");
                Input::Broken { peer, error }
            }
            PeerEvent::Closed { peer, reason } => {
                self.settle_pending(peer);
                if let Some(live) = self.live.remove(&peer) {
                    let metrics = &self.ctx.metrics.net;
                    if let Some(conn_type) = live.conn_type {
                        metrics.peer_gone(conn_type.name());
                    }
                    metrics.disconnected(
                        live.stop_reason
                            .as_ref()
                            .map_or("connection_lost", disconnect_label),
                    );
                    let stats = live.stats.lock().expect("stats lock").clone();
                    self.totals
                        .closed_sent
                        .fetch_add(stats.bytes_sent, Ordering::Relaxed);
                    self.totals
                        .closed_recv
                        .fetch_add(stats.bytes_recv, Ordering::Relaxed);
                    // One line per peer: the reason this side stopped it, if it did, says more
                    // than the socket's end ("stopped") that followed.
                    let reason = live
                        .stop_reason
                        .as_ref()
                        .map_or_else(|| reason.to_string(), ToString::to_string);
                    let addr = live.addr;
                    // Routine ends (a duplicate collapsed, a feeler done) and connections never
                    // announced (refused at once) stay at DEBUG: churn, not news.
                    let routine = live.stop_reason.as_ref().is_some_and(|r| r.is_routine());
                    if live.conn_type.is_some_and(announced) && !routine {
                        tracing::info!(peer, %addr, %reason, "peer disconnected");
                    } else {
                        tracing::debug!(peer, %addr, %reason, "peer disconnected");
                    }
                    // Subscribers hear of the end of what they heard begin: a connection
                    // refused at once (banned, full, network off) was never announced.
                    if live.conn_type.is_some() {
                        let _ = self.notices.send(PeerNotice::Disconnected {
                            peer,
                            reason: reason.to_string(),
                        });
                    }
                }
                Input::Disconnected { peer }
            }
            PeerEvent::DialFailed {
                dial,
                target,
                error,
            } => {
                // A pinned identity refused is the operator's to resolve (an added node that
                // will never connect as it stands); other failures are routine and retried.
                if matches!(error, super::PeerError::IdentityMismatch { .. }) {
                    tracing::warn!(%target, %error, "dial failed: wrong node id");
                } else {
                    tracing::debug!(%target, %error, "dial failed");
                }
                Input::DialFailed { dial }
            }
        };
        self.feed(input);
    }

    fn on_command(&mut self, command: NetCommand) {
        let now = self.now();
        match command {
            NetCommand::BlockChecked(block) => self.feed(Input::BlockChecked { block }),
            NetCommand::HeaderTips(reply) => {
                let _ = reply.send(self.core.headers().header_only_tips(MAX_HEADER_TIPS));
            }
            NetCommand::PeerInfo(reply) => {
                let infos = self
                    .core
                    .peers(now)
                    .into_iter()
                    .filter_map(|p| {
                        let live = self.live.get(&p.id)?;
                        Some(PeerInfo {
                            stats: live.stats.lock().expect("stats lock").clone(),
                            tls_version: live.tls_version.clone(),
                            tls_cipher: live.tls_cipher.clone(),
                            protocol: p,
                        })
                    })
                    .collect();
                let _ = reply.send(infos);
            }
            NetCommand::AddNode(spec, op, reply) => {
                let command = match op {
                    AddNodeOp::Add => {
                        let learned = self
                            .writer
                            .as_ref()
                            .and_then(|w| w.store().learned_identity(&spec.to_string()));
                        Command::AddNode { spec, learned }
                    }
                    AddNodeOp::Remove => Command::RemoveNode(spec),
                    AddNodeOp::OneTry => Command::OneTry(spec),
                };
                let _ = reply.send(self.command(command));
            }
            NetCommand::AddedNodes(reply) => {
                let _ = reply.send(self.core.added_nodes(now));
            }
            NetCommand::Disconnect(peer, addr, reply) => {
                let command = Command::Disconnect { peer, addr };
                let _ = reply.send(self.command(command));
            }
            NetCommand::Ban(target, seconds, reply) => {
                let command = Command::Ban {
                    target,
                    duration_ms: seconds.map(|s| s.saturating_mul(1000)),
                    reason: "manually added".into(),
                };
                let _ = self.command(command);
                let _ = reply.send(());
            }
            NetCommand::Unban(target, reply) => {
                let removed = self.command(Command::Unban(target)).is_ok();
                let _ = reply.send(removed);
            }
            NetCommand::ListBanned(reply) => {
                let list = self
                    .core
                    .bans()
                    .iter()
                    .filter(|(_, e)| e.until_ms > now.unix_ms)
                    .map(|(t, e)| BannedEntry {
                        address: t.to_string(),
                        ban_created: e.created_ms / 1000,
                        banned_until: e.until_ms / 1000,
                        ban_duration: (e.until_ms - e.created_ms) / 1000,
                        time_remaining: (e.until_ms - now.unix_ms) / 1000,
                        reason: e.reason.clone(),
                    })
                    .collect();
                let _ = reply.send(list);
            }
            NetCommand::ClearBanned(reply) => {
                let _ = self.command(Command::ClearBans);
                let _ = reply.send(());
            }
            NetCommand::NodeAddresses(count, reply) => {
                let list = self
                    .core
                    .sample_addresses(now, count)
                    .into_iter()
                    .map(|e| {
                        let a = e.socket_addr();
                        KnownAddress {
                            time: e.last_seen,
                            services: e.services,
                            address: a.ip().to_string(),
                            port: a.port(),
                            network: if a.is_ipv4() { "ipv4" } else { "ipv6" },
                        }
                    })
                    .collect();
                let _ = reply.send(list);
            }
            NetCommand::Ping(reply) => {
                let _ = self.command(Command::PingAll);
                let _ = reply.send(());
            }
            NetCommand::SetNetworkActive(active, reply) => {
                let _ = self.command(Command::SetNetworkActive(active));
                tracing::info!(active, "network activity set over RPC");
                // Published before the answer, so a getnetworkinfo after it reads the new state.
                self.publish_counts();
                let _ = reply.send(self.core.network_active());
            }
        }
    }

    /// Carries out what the core decided, mechanically: no protocol decision is made here.
    fn execute(&mut self) {
        let outputs = self.core.drain_outputs();
        self.run_outputs(outputs);
        // Handed back after the loop: the core emits them again at a later turn.
        for what in std::mem::take(&mut self.deferred) {
            if let Persist::LearnedIdentity { peer, .. } = &what {
                tracing::warn!(%peer, "peer store busy: a learned identity was not stored");
            }
            self.feed(Input::PersistDeferred(what));
        }
    }

    fn run_outputs(&mut self, outputs: Vec<Output>) {
        for output in outputs {
            match output {
                Output::Send(peer, message) => {
                    let Some(live) = self.live.get_mut(&peer) else {
                        continue;
                    };
                    if let Err(mpsc::error::TrySendError::Full(_)) = live.outbox.try_send(message) {
                        let reason = crate::protocol::DisconnectReason::SlowPeer;
                        tracing::debug!(peer, %reason, "stopping peer");
                        live.stop_reason.get_or_insert(reason);
                        live.stop.cancel();
                    }
                }
                Output::Disconnect(peer, reason) => {
                    // The INFO line is the `peer disconnected` one, when the task has ended.
                    tracing::debug!(peer, %reason, "disconnecting peer");
                    if let Some(live) = self.live.get_mut(&peer) {
                        live.stop_reason.get_or_insert(reason);
                        live.stop.cancel();
                    }
                }
                Output::Dial {
                    dial,
                    target,
                    expected,
                } => {
                    let peer = self.next_peer;
                    self.next_peer += 1;
                    let ctx = self.ctx.clone();
                    self.tasks
                        .spawn(peer::run_outbound(peer, dial, target, expected, ctx));
                }
                Output::ResolveSeeds => self.resolve_seeds(),
                Output::SetTimer(at) => self.next_tick = at,
                Output::SubmitBlock { peer, block } => self.submit_block(peer, block),
                Output::ServeBlocks { peer, hashes } => {
                    self.serve(peer, hashes.into_iter().map(ServeJob::Block).collect())
                }
                Output::SubmitTx { peer, txid, tx } => self.submit_tx(peer, txid, tx),
                Output::ListMempool { peer } => self.list_mempool(peer),
                Output::ServeTxs { peer, txids } => self.serve_txs(peer, txids),
                Output::SendCompact {
                    peers,
                    hash,
                    block,
                    nonce,
                } => self.send_compact(peers, hash, block, nonce),
                Output::Reconstruct { peer, compact } => self.reconstruct(peer, compact),
                Output::ServeBlockTxn { peer, request } => {
                    self.serve(peer, vec![ServeJob::BlockTxn(request)])
                }
                Output::ServeCompact { peer, hash, nonce } => {
                    self.serve(peer, vec![ServeJob::Compact { hash, nonce }])
                }
                Output::Event(event) => {
                    self.count_event(&event);
                    log_event(&event);
                    if let Some(notice) = notice_of(&event) {
                        let _ = self.notices.send(notice);
                    }
                }
                Output::Persist(what) => {
                    let handed = match self.writer.as_ref().and_then(|w| w.try_reserve()) {
                        Some(permit) => {
                            permit.send(store_job(what));
                            true
                        }
                        None => {
                            self.deferred.push(what);
                            false
                        }
                    };
                    if !handed {
                        tracing::debug!("peer store busy: a save waits for a later turn");
                    }
                }
            }
        }
    }

    /// The protocol events the metrics follow (peers joining the table, handshakes, bans); a
    /// peer joining also records its connection type on its `LivePeer`.
    fn count_event(&mut self, event: &Event) {
        let metrics = &self.ctx.metrics.net;
        match event {
            Event::PeerConnected {
                peer, conn_type, ..
            } => {
                if let Some(live) = self.live.get_mut(peer) {
                    if live.conn_type.is_none() {
                        live.conn_type = Some(*conn_type);
                        metrics.peer_connected(conn_type.name());
                    }
                }
            }
            Event::PeerNegotiated { .. } => {
                metrics.handshakes.inc();
            }
            Event::Banned { .. } => {
                metrics.bans.inc();
            }
        }
    }

    fn publish_counts(&self) {
        self.counts
            .inbound
            .store(self.core.inbound_count(), Ordering::Relaxed);
        self.counts
            .outbound
            .store(self.core.outbound_count(), Ordering::Relaxed);
        self.counts
            .headers
            .store(self.core.headers().best_height(), Ordering::Relaxed);
        self.counts
            .network_off
            .store(!self.core.network_active(), Ordering::Relaxed);
    }

    /// The chain's connects and disconnects go to the core in order; after missed events
    /// the header tree is rebuilt from the store, off this task.
    fn on_chain_event(&mut self, event: Result<ChainEvent, broadcast::error::RecvError>) {
        match event {
            Ok(ChainEvent::BlockConnected(block, height)) => self.feed(Input::BlockConnected {
                header: block.header,
                height,
            }),
            Ok(ChainEvent::BlockDisconnected(block, height)) => {
                self.feed(Input::BlockDisconnected {
                    header: block.header,
                    height,
                })
            }
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                tracing::debug!(missed, "chain events missed: reloading the header tree");
                let (chain, tx) = (self.chain.clone(), self.reloaded_tx.clone());
                self.tasks.spawn(async move {
                    let tree = tokio::task::spawn_blocking(move || load_header_tree(&chain)).await;
                    if let Ok(tree) = tree {
                        let _ = tx.send(Box::new(tree)).await;
                    }
                });
            }
            // The chain is gone: the node is stopping.
            Err(broadcast::error::RecvError::Closed) => {}
        }
    }

    /// Hands a block the core accepted for validation to the chain (its prechecks run on
    /// blocking threads); the answer comes back as an input.
    fn submit_block(&mut self, peer: PeerId, block: Box<Block>) {
        let (chain, results) = (self.chain.clone(), self.block_results_tx.clone());
        self.tasks.spawn(async move {
            let hash = block.hash();
            let result = match chain.submit_block(*block).await {
                Ok(SubmitOutcome::Connected { .. }) => BlockResult::Connected,
                Ok(SubmitOutcome::SideBranch { .. }) => BlockResult::SideBranch,
                Ok(SubmitOutcome::Orphan) => BlockResult::Orphan,
                Ok(SubmitOutcome::Duplicate) => BlockResult::Duplicate,
                Err(ChainError::InvalidBlock { error, .. }) if !error.is_bound_to_hash() => {
                    BlockResult::Mutated(error.to_string())
                }
                Err(e @ (ChainError::InvalidBlock { .. } | ChainError::KnownInvalid(_))) => {
                    BlockResult::Invalid(e.to_string())
                }
                Err(e) => BlockResult::NotProcessed(e.to_string()),
            };
            let _ = results.send((peer, hash, result)).await;
        });
    }

    /// Pushes a compact block: builds it (hashing the transactions a rebuild did not place)
    /// on a blocking thread and queues it for each peer; the block stays at hand for their
    /// GETBLOCKTXN and GETDATA.
    fn send_compact(
        &mut self,
        peers: Vec<PeerId>,
        hash: Hash256,
        block: Option<Arc<Block>>,
        nonce: u64,
    ) {
        let outboxes: Vec<(PeerId, mpsc::Sender<Message>)> = peers
            .iter()
            .filter_map(|p| self.live.get(p).map(|l| (*p, l.outbox.clone())))
            .collect();
        if outboxes.is_empty() {
            return;
        }
        let (chain, recent) = (self.chain.clone(), self.recent_blocks.clone());
        let rebuilt = self.rebuilt_txids.clone();
        let (this_sent, sent) = oneshot::channel::<()>();
        let previous_sent = self.compact_sent.replace(sent);
        self.tasks.spawn(async move {
            let _this_sent = this_sent;
            let built = tokio::task::spawn_blocking(move || {
                let block = match block.or_else(|| recent_block(&recent, &hash)) {
                    Some(block) => block,
                    None => Arc::new(chain.reader().block(&hash).ok().flatten()?),
                };
                let known = rebuilt
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .iter()
                    .find(|(h, _)| *h == hash)
                    .map(|(_, txids)| txids.clone());
                let compact = compact_of(&block, nonce, known.as_deref())?;
                let mut recent = recent.lock().unwrap_or_else(|e| e.into_inner());
                if !recent.iter().any(|b| b.hash() == hash) {
                    if recent.len() >= KEPT_PUSHED {
                        recent.pop_front();
                    }
                    recent.push_back(block);
                }
                Some(compact)
            })
            .await;
            if let Some(previous) = previous_sent {
                // Err once the previous task is done (its sender dropped). A slow store read
                // there holds this push back only so long: out of order, it still arrives
                // (the receiver asks for the headers it lacks).
                let _ = tokio::time::timeout(COMPACT_ORDER_WAIT, previous).await;
            }
            let Ok(Some(compact)) = built else {
                return; // gone from the store meanwhile (a reorg): announced as usual
            };
            for (peer, outbox) in outboxes {
                let message = Message::CmpctBlock(Box::new(compact.clone()));
                if outbox.try_send(message).is_err() {
                    tracing::debug!(peer, %hash, "compact block not sent: outbox full");
                }
            }
        });
    }

    /// Rebuilds a compact block from the mempool on a blocking thread; the answer comes back
    /// as `Input::Reconstructed`.
    fn reconstruct(&mut self, peer: PeerId, compact: Box<CompactBlock>) {
        let (pool, results) = (self.mempool.clone(), self.rebuilt_tx.clone());
        let placed = self.rebuilt_txids.clone();
        self.tasks.spawn(async move {
            let hash = compact.header.hash();
            let rebuilt = tokio::task::spawn_blocking(move || {
                let mut filler = Filler::new(&compact);
                let pool = pool.lock();
                for entry in pool.entries() {
                    filler.offer(&entry.txid, || {
                        Transaction::Transfer(entry.transfer.clone())
                    });
                }
                drop(pool);
                let mut placed = placed.lock().unwrap_or_else(|e| e.into_inner());
                if placed.len() >= KEPT_PUSHED {
                    placed.pop_front();
                }
                placed.push_back((hash, filler.placed_txids()));
                drop(placed);
                filler.finish()
            })
            .await;
            if let Ok(result) = rebuilt {
                let _ = results.send((peer, hash, result)).await;
            }
        });
    }

    /// A transaction the mempool admitted: announced if ready to mine. One that waits for
    /// an earlier nonce is announced when that arrives (the pool reports it promoted).
    fn on_admitted(&mut self, admitted: Result<AdmittedTx, broadcast::error::RecvError>) {
        match admitted {
            Ok(AdmittedTx { txid, tx, future }) => {
                if let (false, Transaction::Transfer(t)) = (future, tx.as_ref()) {
                    self.feed(Input::TxAccepted {
                        txid,
                        sender: t.sender(),
                        nonce: t.nonce,
                    });
                }
            }
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                tracing::warn!(
                    missed,
                    "mempool events missed: those transactions are not announced"
                );
            }
            Err(broadcast::error::RecvError::Closed) => {}
        }
    }

    /// The pool's ready transactions for a peer that just completed its handshake (one
    /// short look under the pool's lock, on a blocking thread; at most what a peer's
    /// announcement queue holds), fed back as `Input::MempoolContents`.
    fn list_mempool(&mut self, peer: PeerId) {
        let (pool, listed) = (self.mempool.clone(), self.listed_tx.clone());
        self.tasks.spawn(async move {
            let txs = tokio::task::spawn_blocking(move || {
                pool.lock()
                    .pending_entries()
                    .take(MEMPOOL_ANNOUNCED_ON_CONNECT)
                    .map(|e| (e.txid, e.sender, e.nonce()))
                    .collect::<Vec<_>>()
            })
            .await;
            if let Some(txs) = txs.ok().filter(|t| !t.is_empty()) {
                let _ = listed.send((peer, txs)).await;
            }
        });
    }

    /// Queues a peer's transaction for its checking task, which hands them to the mempool
    /// one after another in the order they came (a sender's nonces arrive in order, and so
    /// enter the pool in order) and feeds each answer back. A full queue (more than the core
    /// ever has in flight to one peer) refuses it at once.
    fn submit_tx(&mut self, peer: PeerId, txid: Hash256, tx: Box<Transaction>) {
        let Some(live) = self.live.get_mut(&peer) else {
            return;
        };
        let queue = match &live.checking {
            Some(queue) if !queue.is_closed() => queue.clone(),
            _ => {
                let (queue, rx) = mpsc::channel(TX_CHECK_QUEUE);
                self.tasks.spawn(check_peer_txs(
                    peer,
                    rx,
                    self.mempool.clone(),
                    self.chain.clone(),
                    self.tx_results_tx.clone(),
                    self.tx_checks.clone(),
                    live.stop.clone(),
                ));
                live.checking = Some(queue.clone());
                queue
            }
        };
        if queue.try_send((txid, tx)).is_err() {
            self.feed(Input::TxProcessed {
                peer,
                txid,
                result: TxResult::Refused("busy".to_string()),
            });
        }
    }

    /// Queues a GETDATA's transactions for the peer's transaction-serving task, which copies
    /// them out of the mempool and waits for room in the peer's served queue. A request that
    /// would take the peer past `SERVE_TX_QUEUED` waiting transactions is answered NOTFOUND.
    fn serve_txs(&mut self, peer: PeerId, txids: Vec<Hash256>) {
        let Some(live) = self.live.get_mut(&peer) else {
            return;
        };
        let (queue, queued) = match &live.serving_txs {
            Some((queue, queued)) if !queue.is_closed() => (queue.clone(), queued.clone()),
            _ => {
                let (tx, rx) = mpsc::channel(SERVE_TX_QUEUED);
                let queued = Arc::new(AtomicUsize::new(0));
                let (served, pool) = (live.served.clone(), self.mempool.clone());
                self.tasks.spawn(serve_peer_txs(
                    rx,
                    queued.clone(),
                    served,
                    pool,
                    live.stop.clone(),
                ));
                live.serving_txs = Some((tx.clone(), queued.clone()));
                (tx, queued)
            }
        };
        let count = txids.len();
        // Only this task adds, so no other add comes between the check and the add.
        if queued.load(Ordering::Acquire) + count > SERVE_TX_QUEUED {
            let _ = live.outbox.try_send(not_found(InvKind::Tx, &txids));
            return;
        }
        queued.fetch_add(count, Ordering::AcqRel);
        if let Err(refused) = queue.try_send(txids) {
            queued.fetch_sub(count, Ordering::AcqRel);
            let _ = live
                .outbox
                .try_send(not_found(InvKind::Tx, &refused.into_inner()));
        }
    }

    /// Queues blocks (whole, compact, or some of their transactions) for the peer's serving
    /// task (started on its first request): it reads them one at a time on a blocking thread
    /// and waits for room in the peer's served queue, so a slow reader slows its own task, not
    /// the service. A request that does not fit the queue (far more than any download window
    /// asks) is answered NOTFOUND.
    fn serve(&mut self, peer: PeerId, jobs: Vec<ServeJob>) {
        let Some(live) = self.live.get_mut(&peer) else {
            return;
        };
        let queue = match &live.serving {
            Some(queue) if !queue.is_closed() => queue.clone(),
            _ => {
                let (tx, rx) = mpsc::channel(SERVE_QUEUE);
                let (served, chain) = (live.served.clone(), self.chain.clone());
                let recent = self.recent_blocks.clone();
                self.tasks
                    .spawn(serve_peer(rx, served, chain, recent, live.stop.clone()));
                live.serving = Some(tx.clone());
                tx
            }
        };
        let mut refused = Vec::new();
        for job in jobs {
            if let Err(full) = queue.try_send(job) {
                refused.push(full.into_inner().hash());
            }
        }
        if !refused.is_empty() {
            let _ = live.outbox.try_send(not_found(InvKind::Block, &refused));
        }
    }

    fn resolve_seeds(&mut self) {
        if self.discovery.dns_seeds.is_empty() {
            return;
        }
        let seeds = self.discovery.dns_seeds.clone();
        let resolver_addr = self.discovery.dns_resolver;
        let tx = self.found_tx.clone();
        self.tasks.spawn(async move {
            let found = resolve_dns_seeds(&seeds, resolver_addr).await;
            let _ = tx.send(("DNS seeds", found)).await;
        });
    }

    /// Bootstrap nodes given by name are resolved once, in the background.
    fn resolve_bootstrap_hosts(&mut self) {
        let named: Vec<(String, u16)> = self
            .discovery
            .bootstrap
            .iter()
            .filter(|s| s.host.parse::<IpAddr>().is_err())
            .map(|s| (s.host.clone(), s.port))
            .collect();
        if named.is_empty() {
            return;
        }
        let tx = self.found_tx.clone();
        self.tasks.spawn(async move {
            let mut found = Vec::new();
            for (host, port) in named {
                let lookup = tokio::net::lookup_host((host.as_str(), port));
                if let Ok(Ok(addrs)) = tokio::time::timeout(peer::CONNECT_TIMEOUT, lookup).await {
                    found.extend(addrs);
                }
            }
            let _ = tx.send(("bootstrap", found)).await;
        });
    }
}

/// The header tree of every block the chain has stored, with its tip active.
fn load_header_tree(chain: &ChainHandle) -> HeaderTree {
    let reader = chain.reader();
    let blocks: Vec<_> = reader
        .index_records()
        .filter_map(|record| match record {
            Ok((hash, r)) => Some((
                hash,
                r.header,
                r.height,
                work_from_bytes(&r.chainwork),
                r.status.is_failed(),
            )),
            Err(e) => {
                tracing::warn!(error = %e, "an unreadable index record left out of the header tree");
                None
            }
        })
        .collect();
    HeaderTree::load(chain.params(), blocks, chain.tip().hash)
}

/// What a peer's serving task is asked for.
enum ServeJob {
    /// GETDATA of a block: a BLOCK.
    Block(Hash256),
    /// GETBLOCKTXN: a BLOCKTXN of the transactions asked.
    BlockTxn(GetBlockTxn),
    /// GETDATA of a compact block: a CMPCTBLOCK keyed with `nonce`.
    Compact { hash: Hash256, nonce: u64 },
}

impl ServeJob {
    fn hash(&self) -> Hash256 {
        match self {
            ServeJob::Block(hash) | ServeJob::Compact { hash, .. } => *hash,
            ServeJob::BlockTxn(request) => request.block_hash,
        }
    }

    /// The answer, from the block kept for the job or read from the store (a block just
    /// pushed as a compact block may not be stored yet); NOTFOUND of the block without it.
    fn answer(self, chain: &ChainHandle, recent: &Mutex<VecDeque<Arc<Block>>>) -> Message {
        let hash = self.hash();
        let block = recent_block(recent, &hash)
            .or_else(|| chain.reader().block(&hash).ok().flatten().map(Arc::new));
        let answer = block.and_then(|block| match self {
            ServeJob::Block(_) => Some(Message::Block(Box::new(Block::clone(&block)))),
            ServeJob::BlockTxn(request) => block_txn_of(&block, &request).map(Message::BlockTxn),
            ServeJob::Compact { nonce, .. } => compact_of(&block, nonce, None)
                .map(|compact| Message::CmpctBlock(Box::new(compact))),
        });
        answer.unwrap_or_else(|| not_found(InvKind::Block, &[hash]))
    }
}

/// Serves one peer what it asked for (`ServeJob`), in order, until the peer goes (its queue
/// or its served queue closes, or it stops reading for `SERVE_SEND_TIMEOUT`).
async fn serve_peer(
    mut queue: mpsc::Receiver<ServeJob>,
    served: mpsc::Sender<Message>,
    chain: ChainHandle,
    recent: Arc<Mutex<VecDeque<Arc<Block>>>>,
    stop: CancellationToken,
) {
    loop {
        let job = tokio::select! {
            _ = stop.cancelled() => return,
            next = queue.recv() => match next {
                Some(job) => job,
                None => return,
            },
        };
        let (reader, recent) = (chain.clone(), recent.clone());
        let hash = job.hash();
        let message = tokio::task::spawn_blocking(move || job.answer(&reader, &recent))
            .await
            .unwrap_or_else(|_| not_found(InvKind::Block, &[hash]));
        let sent = tokio::time::timeout(SERVE_SEND_TIMEOUT, served.send(message)).await;
        if !matches!(sent, Ok(Ok(()))) {
            return; // gone, or not reading: its own timeouts deal with it
        }
    }
}

/// The txids a rebuild placed in a block, by position.
type PlacedTxids = (Hash256, Vec<Option<Hash256>>);

/// A block recently pushed as a compact block, if still kept.
fn recent_block(recent: &Mutex<VecDeque<Arc<Block>>>, hash: &Hash256) -> Option<Arc<Block>> {
    recent
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .find(|b| b.hash() == *hash)
        .cloned()
}

fn not_found(kind: InvKind, hashes: &[Hash256]) -> Message {
    Message::NotFound(inv_list(kind, hashes))
}

/// A peer's transaction-checking task: what has queued up (at most `TX_CHECK_BATCH`) goes
/// to the mempool as one batch on a blocking thread (its signatures verified together over
/// both cores; at most `TX_CHECKS` peers' batches at once), in order, and each answer back
/// to the service.
async fn check_peer_txs(
    peer: PeerId,
    mut queue: mpsc::Receiver<(Hash256, Box<Transaction>)>,
    pool: SharedMempool,
    chain: ChainHandle,
    results: mpsc::Sender<(PeerId, Hash256, TxResult)>,
    permits: Arc<tokio::sync::Semaphore>,
    stop: CancellationToken,
) {
    // The task ends with the peer (its queue closed or its stop cancelled), after its last
    // batch: the peer's futures stop counting against it then (`Mempool::release_peer`).
    struct Release(SharedMempool, PeerId);
    impl Drop for Release {
        fn drop(&mut self) {
            self.0.release_peer(self.1);
        }
    }
    let _release = Release(pool.clone(), peer);
    loop {
        let first = tokio::select! {
            _ = stop.cancelled() => return,
            next = queue.recv() => match next {
                Some(tx) => tx,
                None => return,
            },
        };
        let Ok(_permit) = permits.clone().acquire_owned().await else {
            return;
        };
        // Whatever else arrived meanwhile joins the batch.
        let mut batch = vec![(first.0, *first.1)];
        while batch.len() < TX_CHECK_BATCH {
            match queue.try_recv() {
                Ok((txid, tx)) => batch.push((txid, *tx)),
                Err(_) => break,
            }
        }
        let txids: Vec<Hash256> = batch.iter().map(|(txid, _)| *txid).collect();
        let (pool, chain) = (pool.clone(), chain.clone());
        let threads = crate::chain::signatures::default_threads();
        let checked = tokio::task::spawn_blocking(move || {
            let now = crate::time::unix_secs();
            pool.submit_identified_from(batch, chain.reader(), now, threads, Some(peer))
        })
        .await;
        let verdicts: Vec<(Hash256, TxResult)> = match checked {
            Ok(verdicts) => verdicts
                .into_iter()
                .map(|(txid, verdict)| {
                    let result = match verdict {
                        Ok(accepted) if accepted.future => TxResult::AcceptedFuture,
                        Ok(_) => TxResult::Accepted,
                        Err(
                            e @ (MempoolError::BadSignature
                            | MempoolError::BadAmount
                            | MempoolError::Coinbase),
                        ) => TxResult::Invalid(e.code().to_string()),
                        Err(e) => TxResult::Refused(e.code().to_string()),
                    };
                    (txid, result)
                })
                .collect(),
            Err(_) => txids
                .into_iter()
                .map(|txid| (txid, TxResult::Refused("not checked".to_string())))
                .collect(),
        };
        for (txid, result) in verdicts {
            if results.send((peer, txid, result)).await.is_err() {
                return;
            }
        }
    }
}

/// A peer's transaction-serving task: for each GETDATA, the transactions the mempool holds
/// (copied under its lock, in one short look on a blocking thread: the lock may be held for
/// a few milliseconds by a batch's admission, which must not stall a runtime worker) as TX
/// messages, then one NOTFOUND for the rest.
async fn serve_peer_txs(
    mut queue: mpsc::Receiver<Vec<Hash256>>,
    queued: Arc<AtomicUsize>,
    served: mpsc::Sender<Message>,
    pool: SharedMempool,
    stop: CancellationToken,
) {
    loop {
        let txids = tokio::select! {
            _ = stop.cancelled() => return,
            next = queue.recv() => match next {
                Some(txids) => txids,
                None => return,
            },
        };
        // Taken off the queue: room for as many more (the answer's sending is bounded by the
        // peer's served queue, not by this count).
        queued.fetch_sub(txids.len(), Ordering::AcqRel);
        let pool = pool.clone();
        let looked_up = tokio::task::spawn_blocking(move || {
            let mut found = Vec::with_capacity(txids.len());
            let mut missing = Vec::new();
            let pool = pool.lock();
            for txid in txids {
                match pool.get(&txid) {
                    Some(entry) => found.push(entry.transaction()),
                    None => missing.push(txid),
                }
            }
            (found, missing)
        })
        .await;
        let Ok((found, missing)) = looked_up else {
            return; // the runtime is shutting down (or the lookup panicked)
        };
        for tx in found {
            let sent =
                tokio::time::timeout(SERVE_SEND_TIMEOUT, served.send(Message::Tx(Box::new(tx))))
                    .await;
            if !matches!(sent, Ok(Ok(()))) {
                return;
            }
        }
        if !missing.is_empty() {
            let message = not_found(InvKind::Tx, &missing);
            if !matches!(
                tokio::time::timeout(SERVE_SEND_TIMEOUT, served.send(message)).await,
                Ok(Ok(()))
            ) {
                return;
            }
        }
    }
}

fn store_job(what: Persist) -> StoreJob {
    match what {
        Persist::Bans(changes) => StoreJob::Bans(changes),
        Persist::Addresses(entries) => StoreJob::Addresses(entries),
        Persist::LearnedIdentity { peer, node_id } => StoreJob::Identity { peer, node_id },
    }
}

/// What subscribers are told of a core event, if anything.
fn notice_of(event: &Event) -> Option<PeerNotice> {
    match event {
        Event::PeerConnected {
            peer,
            addr,
            node_id,
            conn_type,
        } => Some(PeerNotice::Connected {
            peer: *peer,
            addr: addr.to_string(),
            nodeid: node_id.to_string(),
            connection_type: conn_type.name(),
        }),
        Event::PeerNegotiated { .. } => None,
        Event::Banned {
            target,
            until_unix_ms,
            reason,
        } => Some(PeerNotice::Banned {
            target: target.to_string(),
            until: until_unix_ms / 1000,
            reason: reason.clone(),
        }),
    }
}

/// A disconnect reason as a `noded_peer_disconnects_total` label (`metrics::DISCONNECT_REASONS`).
fn disconnect_label(reason: &crate::protocol::DisconnectReason) -> &'static str {
    use crate::protocol::DisconnectReason as R;
    match reason {
        R::HandshakeTimeout => "handshake_timeout",
        R::PingTimeout => "ping_timeout",
        R::Inactivity => "inactivity",
        R::SelfConnection => "self_connection",
        R::DuplicateNodeId => "duplicate",
        R::Banned => "banned",
        R::Misbehaviour(_) => "misbehaviour",
        R::ObsoleteVersion(_) => "obsolete_version",
        R::WrongNetwork => "wrong_network",
        R::Evicted => "evicted",
        R::TooManyConnections => "too_many_connections",
        R::TooManyFromIp => "too_many_from_ip",
        R::Requested => "requested",
        R::NodeIdMismatch => "node_id_mismatch",
        R::FeelerDone => "feeler_done",
        R::AddrFetchDone => "addr_fetch_done",
        R::Stalling => "stalling",
        R::MutatedBlock => "mutated_block",
        R::HeadersChanged => "headers_changed",
        R::SlowPeer => "slow_peer",
        R::Closed(_) => "closed",
        R::NetworkOff => "network_off",
    }
}

/// Whether a connection of this type gets INFO connect and disconnect lines: a feeler only
/// tests an address, an address fetch only asks for addresses; both are gone within seconds.
fn announced(conn_type: crate::protocol::ConnType) -> bool {
    !conn_type.is_short_lived()
}

fn log_event(event: &Event) {
    match event {
        Event::PeerConnected {
            peer,
            addr,
            node_id,
            conn_type,
        } => {
            if announced(*conn_type) {
                tracing::info!(peer, %addr, %node_id, conn = conn_type.name(), "peer connected");
            } else {
                tracing::debug!(peer, %addr, %node_id, conn = conn_type.name(), "peer connected");
            }
        }
        Event::PeerNegotiated { .. } => {}
        Event::Banned {
            target,
            until_unix_ms,
            reason,
        } => {
            tracing::info!(%target, until = until_unix_ms / 1000, %reason, "banned");
        }
    }
}

async fn accept(
    listener: Option<&TcpListener>,
) -> std::io::Result<(tokio::net::TcpStream, SocketAddr)> {
    match listener {
        Some(l) => l.accept().await,
        None => std::future::pending().await,
    }
}

/// Asks DNS for the A/AAAA records of each seed; each address gets the seed's port.
pub async fn resolve_dns_seeds(
    seeds: &[(String, u16)],
    resolver_addr: Option<SocketAddr>,
) -> Vec<SocketAddr> {
    use hickory_resolver::config::{NameServerConfigGroup, ResolverConfig};
    use hickory_resolver::name_server::TokioConnectionProvider;
    use hickory_resolver::Resolver;

    let builder = match resolver_addr {
        Some(addr) => Resolver::builder_with_config(
            ResolverConfig::from_parts(
                None,
                vec![],
                NameServerConfigGroup::from_ips_clear(&[addr.ip()], addr.port(), true),
            ),
            TokioConnectionProvider::default(),
        ),
        None => match Resolver::builder_tokio() {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, "no system DNS configuration; DNS seeds skipped");
                return Vec::new();
            }
        },
    };
    let mut builder = builder;
    builder.options_mut().timeout = Duration::from_secs(5);
    builder.options_mut().attempts = 2;
    let resolver = builder.build();
    let mut found = Vec::new();
    for (name, port) in seeds {
        match tokio::time::timeout(Duration::from_secs(15), resolver.lookup_ip(name.as_str())).await
        {
            Ok(Ok(ips)) => found.extend(ips.iter().take(256).map(|ip| SocketAddr::new(ip, *port))),
            Ok(Err(e)) => tracing::warn!(seed = %name, error = %e, "DNS seed lookup failed"),
            Err(_) => tracing::warn!(seed = %name, "DNS seed lookup timed out"),
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::bans::Misbehaviour;
    use crate::protocol::DisconnectReason as R;

    #[test]
    fn every_disconnect_reason_has_a_metrics_label() {
        let reasons = [
            R::HandshakeTimeout,
            R::PingTimeout,
            R::Inactivity,
            R::SelfConnection,
            R::DuplicateNodeId,
            R::Banned,
            R::Misbehaviour(Misbehaviour::MalformedFrame),
            R::ObsoleteVersion(1),
            R::WrongNetwork,
            R::Evicted,
            R::TooManyConnections,
            R::TooManyFromIp,
            R::Requested,
            R::NodeIdMismatch,
            R::FeelerDone,
            R::AddrFetchDone,
            R::Stalling,
            R::MutatedBlock,
            R::HeadersChanged,
            R::SlowPeer,
            R::Closed("eof".into()),
            R::NetworkOff,
        ];
        let mut labels: Vec<&str> = reasons.iter().map(disconnect_label).collect();
        for label in &labels {
            assert!(
                crate::metrics::DISCONNECT_REASONS.contains(label),
                "{label}"
            );
        }
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), reasons.len(), "one label per reason");
    }
}
