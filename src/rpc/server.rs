//! The JSON-RPC methods and the server that carries them (HTTP and WebSocket on one port).
//!
//! Methods read shared state through watch channels and atomics; none waits on the node's
//! core or holds a lock across an await.

use super::auth::AuthLayer;
use super::error::RpcError;
use super::metrics_layer::RpcTiming;
use crate::chain::ChainTip;
use crate::metrics::Metrics;
use crate::net::counts::PeerCounts;
use crate::params::Network;
use crate::types::block::MAX_BLOCK_SIZE;
use crate::types::{Hash256, NodeId};
use jsonrpsee::core::RpcResult;
use jsonrpsee::proc_macros::rpc;
use jsonrpsee::server::middleware::rpc::RpcServiceBuilder;
use jsonrpsee::server::{BatchRequestConfig, HttpRequest, Server, ServerConfig, ServerHandle};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio_util::sync::CancellationToken;

/// Largest request body accepted, in bytes: a maximum-size block's hex for `submitblock` (the
/// largest legitimate request) plus 64 KiB for the JSON around it. Larger gets HTTP 413.
pub const MAX_REQUEST_BODY: u32 = (2 * MAX_BLOCK_SIZE + 64 * 1024) as u32;
/// Requests one JSON-RPC batch may hold by default (`--rpcmaxbatch`): plenty for tools that
/// batch lookups, while the answers a batch keeps in memory until its last call is done stay
/// bounded. Longer gets error -32010.
pub const MAX_BATCH_REQUESTS: u32 = 1_000;
/// Concurrent RPC connections accepted (TCP connections, and requests in progress).
pub const MAX_RPC_CONNECTIONS: u32 = 256;
/// Kernel send buffer of an RPC connection, in bytes (Linux doubles it for bookkeeping).
/// Left to autotuning it grows to megabytes for a WebSocket subscriber that stopped reading,
/// hiding it from the bounded queue that drops slow subscribers (`SUBSCRIBER_BACKLOG`); this
/// still streams a 4 MiB block's hex at loopback speed.
pub const RPC_SEND_BUFFER: usize = 128 * 1024;
/// Pause after a failed accept (say, out of file descriptors) so the loop does not spin.
pub const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(50);

/// What the RPC methods can see of the node.
pub struct RpcContext {
    pub network: Network,
    pub node_id: NodeId,
    pub p2p_addr: Option<SocketAddr>,
    pub started: Instant,
    pub chain: watch::Receiver<ChainTip>,
    pub peers: Arc<PeerCounts>,
    pub shutdown: CancellationToken,
    /// Where calls are counted and timed per method (`metrics_layer`).
    pub metrics: Arc<Metrics>,
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct GetInfo {
    pub version: String,
    pub protocolversion: u32,
    pub network: String,
    pub nodeid: String,
    pub blocks: u64,
    pub headers: u64,
    pub bestblockhash: Hash256,
    pub connections: usize,
    pub connections_in: usize,
    pub connections_out: usize,
    pub rpc_addr: String,
    pub p2p_addr: Option<String>,
    pub uptime: u64,
}

#[rpc(server)]
pub trait NodeApi {
    /// Node summary: version, network, identity, chain tip, connections, addresses, uptime.
    #[method(name = "getinfo")]
    fn getinfo(&self) -> RpcResult<GetInfo>;

    /// Seconds since the node started.
    #[method(name = "uptime")]
    fn uptime(&self) -> RpcResult<u64>;

    /// Lists the methods, or describes one.
    #[method(name = "help")]
    fn help(&self, command: Option<String>) -> RpcResult<String>;

    /// Shuts the node down cleanly.
    #[method(name = "stop")]
    fn stop(&self) -> RpcResult<String>;
}

/// Every method with its arguments and a one-line description, for `help`.
pub const METHODS: &[(&str, &str, &str)] = &[
    (
        "getinfo",
        "",
        "Node summary: version, network, node id, chain tip, connections, addresses, uptime.",
    ),
    ("help", "[method]", "Lists all methods, or describes one."),
    ("getpeerinfo", "", "Every connected peer: identity, address, direction, version, traffic per message, ping, ban score, TLS session."),
    ("getpeers", "", "A short list of connected peers: id, node id, address, direction, TLS version."),
    ("getconnectioncount", "", "Number of connected peers."),
    ("getnetworkinfo", "", "Version, node id, connection counts and limits, listening state."),
    ("getnettotals", "", "Bytes sent and received over all connections since start."),
    ("addnode", "\"host:port\"|\"nodeid@host:port\" add|remove|onetry", "Keep a peer connected, stop doing so, or dial it once."),
    ("getaddednodeinfo", "[node]", "The added peers and whether each is connected."),
    ("disconnectnode", "[\"ip:port\"] [peer id]", "Disconnects a peer by address or by peer id."),
    ("setban", "ip|nodeid add|remove [seconds]", "Bans (default 24 h) or unbans an IP address or node id."),
    ("listbanned", "", "Current bans with their expiry."),
    ("clearbanned", "", "Removes every ban."),
    ("getnodeaddresses", "[count]", "A random sample of the address book."),
    ("ping", "", "Pings every peer now; results show in getpeerinfo."),
    ("getblockchaininfo", "", "Chain name, height, best hash, difficulty, median time, chain work, size on disk."),
    ("getblockcount", "", "Height of the active chain's tip."),
    ("getbestblockhash", "", "Hash of the active chain's tip."),
    ("getblockhash", "height", "Hash of the active chain's block at a height."),
    ("getblock", "blockhash [verbosity=1]", "A block: 0 hex, 1 JSON with txids, 2 JSON with transactions."),
    ("getblockheader", "blockhash [verbose=true]", "A block header: JSON, or hex of its 88 bytes."),
    ("getchaintips", "", "Every branch tip: height, hash, branch length, status."),
    ("getdifficulty", "", "Difficulty of the tip: pow limit / target."),
    ("getrawtransaction", "txid [verbose=false]", "A transaction (tx index or mempool): hex, or JSON with its block."),
    ("gettransaction", "txid", "A transaction as JSON with its block and confirmations."),
    ("getaccount", "address", "Balance (base units) and next nonce of an account at the tip."),
    ("submitblock", "hexdata", "Submits an encoded block: null if it connected, else a reason."),
    ("invalidateblock", "blockhash", "Marks a block and its descendants invalid and leaves that branch."),
    ("reconsiderblock", "blockhash", "Clears invalid marks on a block, its ancestors and descendants."),
    ("verifychain", "[checklevel=3]", "Replays the active chain from genesis and compares the account state."),
    (
        "stop",
        "",
        "Stops the node cleanly; it exits with status 0.",
    ),
    ("uptime", "", "Seconds since the node started."),
];

/// Every method's help line: this table plus the mempool, mining and wallet tables.
pub fn all_methods() -> impl Iterator<Item = &'static (&'static str, &'static str, &'static str)> {
    METHODS
        .iter()
        .chain(super::mempool::MEMPOOL_METHODS)
        .chain(super::mining::MINING_METHODS)
        .chain(super::wallet::WALLET_METHODS)
        .chain(super::subscriptions::SUBSCRIPTION_METHODS)
}

pub struct NodeRpc {
    ctx: RpcContext,
    /// getinfo's fields that never change, formatted once (getinfo is a hot path).
    fixed: FixedInfo,
}

struct FixedInfo {
    version: String,
    network: String,
    nodeid: String,
    rpc_addr: String,
    p2p_addr: Option<String>,
}

impl NodeApiServer for NodeRpc {
    fn getinfo(&self) -> RpcResult<GetInfo> {
        let tip = *self.ctx.chain.borrow();
        let inbound = self.ctx.peers.inbound.load(Ordering::Relaxed);
        let outbound = self.ctx.peers.outbound.load(Ordering::Relaxed);
        let fixed = &self.fixed;
        Ok(GetInfo {
            version: fixed.version.clone(),
            protocolversion: crate::wire::PROTOCOL_VERSION,
            network: fixed.network.clone(),
            nodeid: fixed.nodeid.clone(),
            blocks: tip.height,
            headers: tip
                .header_height
                .max(self.ctx.peers.headers.load(Ordering::Relaxed)),
            bestblockhash: tip.hash,
            connections: inbound + outbound,
            connections_in: inbound,
            connections_out: outbound,
            rpc_addr: fixed.rpc_addr.clone(),
            p2p_addr: fixed.p2p_addr.clone(),
            uptime: self.ctx.started.elapsed().as_secs(),
        })
    }

    fn uptime(&self) -> RpcResult<u64> {
        Ok(self.ctx.started.elapsed().as_secs())
    }

    fn help(&self, command: Option<String>) -> RpcResult<String> {
        let line = |(name, args, about): &(&str, &str, &str)| {
            if args.is_empty() {
                format!("{name} — {about}")
            } else {
                format!("{name} {args} — {about}")
            }
        };
        match command {
            None => Ok(all_methods().map(line).collect::<Vec<_>>().join("\n")),
            Some(name) => all_methods()
                .find(|(n, _, _)| *n == name)
                .map(line)
                .ok_or_else(|| {
                    RpcError::InvalidParameter(format!("unknown method '{name}'")).into()
                }),
        }
    }

    fn stop(&self) -> RpcResult<String> {
        self.ctx.shutdown.cancel();
        Ok("noded stopping".to_string())
    }
}

/// Fixes `socket`'s kernel send buffer at `RPC_SEND_BUFFER` (best effort: a failure leaves
/// the kernel's default, logged).
fn cap_send_buffer(socket: &tokio::net::TcpStream) {
    use std::os::fd::AsRawFd;
    let size = RPC_SEND_BUFFER as libc::c_int;
    // SAFETY: setsockopt on a descriptor `socket` owns for the duration of the call, with a
    // pointer to a live c_int and its size.
    let result = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_SNDBUF,
            &size as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if result != 0 {
        tracing::debug!(error = %std::io::Error::last_os_error(), "RPC: cannot set the send buffer");
    }
}

#[derive(Debug, thiserror::Error)]
#[error("cannot listen for JSON-RPC on {addr} (set --rpcport or --rpcbind): {source}")]
pub struct RpcBindError {
    pub addr: SocketAddr,
    pub source: std::io::Error,
}

/// `curl -d` sends a form content type and bitcoind's docs use `text/plain`; jsonrpsee only
/// takes `application/json`. The body is parsed as JSON-RPC either way, so the declared type of
/// a POST is normalised rather than refused.
fn assume_json_body<B>(mut request: HttpRequest<B>) -> HttpRequest<B> {
    let is_json = request
        .headers()
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes() == b"application/json");
    if request.method() == http::Method::POST && !is_json {
        request.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
    }
    request
}

#[derive(Debug, thiserror::Error)]
pub enum RpcStartError {
    #[error(transparent)]
    Bind(#[from] RpcBindError),
    #[error("RPC method registered twice: {0}")]
    Duplicate(#[from] jsonrpsee::core::RegisterMethodError),
}

/// Binds and starts the server with the node methods plus `extra` method sets (network,
/// chain, mempool...), taking batches of up to `max_batch` calls; returns its handle and the
/// bound address.
///
/// Runs its own accept loop (jsonrpsee's documented way to see each connection's source
/// address) so that the authentication layer can throttle failed logins per address.
pub async fn start(
    addr: SocketAddr,
    max_batch: u32,
    auth: AuthLayer,
    ctx: RpcContext,
    extra: Vec<jsonrpsee::Methods>,
) -> Result<(ServerHandle, SocketAddr), RpcStartError> {
    let config = ServerConfig::builder()
        .max_request_body_size(MAX_REQUEST_BODY)
        .max_connections(MAX_RPC_CONNECTIONS)
        .set_batch_request_config(BatchRequestConfig::Limit(max_batch))
        .set_message_buffer_capacity(super::subscriptions::SUBSCRIBER_BACKLOG)
        .max_subscriptions_per_connection(super::subscriptions::MAX_SUBSCRIPTIONS_PER_CONNECTION)
        .build();
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| RpcBindError { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| RpcBindError { addr, source })?;
    let fixed = FixedInfo {
        version: env!("CARGO_PKG_VERSION").to_string(),
        network: ctx.network.to_string(),
        nodeid: ctx.node_id.to_string(),
        rpc_addr: bound.to_string(),
        p2p_addr: ctx.p2p_addr.map(|a| a.to_string()),
    };
    let metrics = ctx.metrics.clone();
    let rpc = NodeRpc { ctx, fixed };
    let mut methods: jsonrpsee::Methods = rpc.into_rpc().into();
    for more in extra {
        methods.merge(more)?;
    }
    metrics.rpc.register_methods(methods.method_names());
    let builder = Server::builder()
        .set_config(config)
        .set_rpc_middleware(
            RpcServiceBuilder::new().layer_fn(move |inner| RpcTiming::new(inner, metrics.clone())),
        )
        .set_http_middleware(tower::ServiceBuilder::new().map_request(assume_json_body))
        .to_service_builder();
    let (stop, handle) = jsonrpsee::server::stop_channel();
    let connections = Arc::new(Semaphore::new(MAX_RPC_CONNECTIONS as usize));
    tokio::spawn(async move {
        loop {
            let (socket, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        tracing::debug!(error = %e, "RPC: accept failed");
                        tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                        continue;
                    }
                },
                _ = stop.clone().shutdown() => break,
            };
            let Ok(permit) = connections.clone().try_acquire_owned() else {
                tracing::debug!(%peer, "RPC: connection limit reached; closing");
                continue;
            };
            let _ = socket.set_nodelay(true);
            cap_send_buffer(&socket);
            let service = builder.clone().build(methods.clone(), stop.clone());
            let service = auth.service(service, peer.ip());
            let stopped = stop.clone().shutdown();
            tokio::spawn(async move {
                let _permit = permit;
                // jsonrpsee closes a connection that sends no request within 30 s.
                let result =
                    jsonrpsee::server::serve_with_graceful_shutdown(socket, service, stopped).await;
                if let Err(e) = result {
                    tracing::debug!(%peer, error = %e, "RPC: connection ended with an error");
                }
            });
        }
    });
    Ok((handle, bound))
}
