//! The JSON-RPC methods and the server that carries them (HTTP and WebSocket on one port).
//!
//! Methods read shared state through watch channels and atomics; none waits on the node's
//! core or holds a lock across an await.

use super::auth::AuthLayer;
use super::error::RpcError;
use super::gate::{ActiveCalls, Gate, ParamErrors};
use super::help::{opt, req, MethodHelp};
use super::legacy::LegacyLayer;
use super::metrics_layer::RpcTiming;
use super::txbatch::{TxBatch, TxIntake};
use crate::chain::{ChainHandle, ChainTip};
use crate::mempool::SharedMempool;
use crate::metrics::Metrics;
use crate::net::counts::PeerCounts;
use crate::params::Network;
use crate::types::block::MAX_BLOCK_SIZE;
use crate::types::{Hash256, NodeId};
use jsonrpsee::core::middleware::RpcServiceBuilder;
use jsonrpsee::core::RpcResult;
use jsonrpsee::proc_macros::rpc;
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
/// The largest response body the server sends: jsonrpsee's default, named because the batch
/// middleware (`txbatch`) builds responses against the same limit.
pub const MAX_RESPONSE_BODY: u32 = jsonrpsee::core::TEN_MB_SIZE_BYTES;
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
    /// The log filter, when the process installed a reloadable one.
    pub log: Option<Arc<dyn LogControl>>,
    /// Where a batch's `sendrawtransaction` calls are admitted together (`txbatch`).
    pub tx_intake: (SharedMempool, ChainHandle),
}

/// Changing the log filter while the node runs (`logging`); the binary implements it over
/// tracing-subscriber's reload handle.
pub trait LogControl: Send + Sync + 'static {
    /// The filter in force, in `RUST_LOG` syntax.
    fn filter(&self) -> String;
    /// Replaces the filter; an invalid one is refused with a one-line reason.
    fn set_filter(&self, filter: &str) -> Result<(), String>;
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

    /// The calls in progress and how long each has run.
    #[method(name = "getrpcinfo")]
    fn getrpcinfo(&self) -> RpcResult<serde_json::Value>;

    /// Shows or replaces the log filter.
    #[method(name = "logging")]
    fn logging(&self, filter: Option<String>) -> RpcResult<serde_json::Value>;
}

/// The node, network and chain methods' help (mempool, mining and wallet keep theirs).
pub const METHODS: &[MethodHelp] = &[
    MethodHelp {
        name: "getinfo",
        args: &[],
        about: "Node summary: version, network, node id, chain tip, connections, addresses, uptime.",
        result: "{version, protocolversion, network, nodeid, blocks, headers, bestblockhash, connections, connections_in, connections_out, rpc_addr, p2p_addr, uptime}",
        example: "",
    },
    MethodHelp {
        name: "help",
        args: &[opt("method", "string", "", "A method to describe in full.")],
        about: "Lists all methods, or describes one: arguments, result and an example.",
        result: "text",
        example: "getblock",
    },
    MethodHelp {
        name: "getrpcinfo",
        args: &[],
        about: "The RPC calls in progress, with how long each has run (microseconds).",
        result: "{active_commands: [{method, duration}]}",
        example: "",
    },
    MethodHelp {
        name: "logging",
        args: &[opt("filter", "string", "", "A new log filter in RUST_LOG syntax, e.g. \"info,noded::net=debug\".")],
        about: "Shows the log filter, or replaces it while the node runs.",
        result: "{filter}: the filter in force",
        example: "\"info,noded::net=debug\"",
    },
    MethodHelp {
        name: "getpeerinfo",
        args: &[],
        about: "Every connected peer: identity, address, direction, version, traffic per message, ping, ban score, TLS session.",
        result: "[{id, nodeid, addr, inbound, version, subver, bytessent, bytesrecv, pingtime, banscore, tls_version, ...}]",
        example: "",
    },
    MethodHelp {
        name: "getpeers",
        args: &[],
        about: "A short list of connected peers: id, node id, address, direction, TLS version.",
        result: "[{id, nodeid, addr, inbound, connection_type, handshake_complete, subver, pingtime, tls_version}]",
        example: "",
    },
    MethodHelp {
        name: "getconnectioncount",
        args: &[],
        about: "Number of connected peers.",
        result: "integer",
        example: "",
    },
    MethodHelp {
        name: "getnetworkinfo",
        args: &[],
        about: "Version, node id, connection counts and limits, listening state, whether the network is active.",
        result: "{version, subversion, protocolversion, nodeid, networkactive, connections, connections_in, connections_out, maxconnections, listening, p2p_addr, transport}",
        example: "",
    },
    MethodHelp {
        name: "getnettotals",
        args: &[],
        about: "Bytes sent and received over all connections since start.",
        result: "{totalbytesrecv, totalbytessent, timemillis}",
        example: "",
    },
    MethodHelp {
        name: "setnetworkactive",
        args: &[req("state", "bool", "false: disconnect every peer and stop dialling and accepting; true: resume.")],
        about: "Turns all peer-to-peer activity off or back on.",
        result: "bool: the state now",
        example: "false",
    },
    MethodHelp {
        name: "addnode",
        args: &[
            req("node", "string", "\"host:port\" (trust on first use) or \"nodeid@host:port\" (pinned identity)."),
            req("command", "string", "add, remove or onetry."),
        ],
        about: "Keep a peer connected, stop doing so, or dial it once.",
        result: "null",
        example: "127.0.0.1:18444 onetry",
    },
    MethodHelp {
        name: "getaddednodeinfo",
        args: &[opt("node", "string", "", "Only the added node whose address contains this.")],
        about: "The added peers and whether each is connected.",
        result: "[{addednode, connected, peer_id, nodeid, last_attempt, next_attempt}]",
        example: "",
    },
    MethodHelp {
        name: "disconnectnode",
        args: &[
            opt("address", "string", "", "The peer's ip:port (\"\" to use the id)."),
            opt("nodeid", "integer", "", "The peer id getpeerinfo shows."),
        ],
        about: "Disconnects a peer by address or by peer id.",
        result: "null",
        example: "\"\" 3",
    },
    MethodHelp {
        name: "setban",
        args: &[
            req("subnet", "string", "An IP address (a /32 or /128 suffix is accepted; a wider subnet is not) or a 64-hex node id; named subnet, as in bitcoind."),
            req("command", "string", "add or remove."),
            opt("bantime", "integer", "86400", "Seconds the ban lasts (add only)."),
        ],
        about: "Bans or unbans an IP address or node id.",
        result: "null",
        example: "192.0.2.7 add 3600",
    },
    MethodHelp {
        name: "listbanned",
        args: &[],
        about: "Current bans with their expiry.",
        result: "[{address, ban_created, banned_until, ban_duration, time_remaining, reason}]",
        example: "",
    },
    MethodHelp {
        name: "clearbanned",
        args: &[],
        about: "Removes every ban.",
        result: "null",
        example: "",
    },
    MethodHelp {
        name: "getnodeaddresses",
        args: &[opt(
            "count",
            "integer",
            "1",
            "How many addresses at most; 0 for all.",
        )],
        about: "A random sample of the address book.",
        result: "[{time, services, address, port, network}]",
        example: "10",
    },
    MethodHelp {
        name: "ping",
        args: &[],
        about: "Pings every peer now; results show in getpeerinfo.",
        result: "null",
        example: "",
    },
    MethodHelp {
        name: "getblockchaininfo",
        args: &[],
        about: "Chain name, height, best hash, difficulty, median time, chain work, size on disk.",
        result: "{chain, blocks, headers, bestblockhash, bits, target, difficulty, time, mediantime, verificationprogress, initialblockdownload, chainwork, size_on_disk, pruned, warnings}",
        example: "",
    },
    MethodHelp {
        name: "getblockcount",
        args: &[],
        about: "Height of the active chain's tip.",
        result: "integer",
        example: "",
    },
    MethodHelp {
        name: "getbestblockhash",
        args: &[],
        about: "Hash of the active chain's tip.",
        result: "string (hex)",
        example: "",
    },
    MethodHelp {
        name: "waitfornewblock",
        args: &[opt("timeout", "integer (milliseconds)", "0", "Give up after this long; 0 waits the longest allowed (10 minutes).")],
        about: "Waits for the tip to change (or the timeout, or shutdown) and returns the tip then.",
        result: "{hash, height}",
        example: "5000",
    },
    MethodHelp {
        name: "waitforblock",
        args: &[
            req("blockhash", "string (hex)", "The block to wait for as the tip."),
            opt("timeout", "integer (milliseconds)", "0", "Give up after this long; 0 waits the longest allowed (10 minutes)."),
        ],
        about: "Waits until the block is the active tip (at once if it is), the timeout passes, or shutdown; returns the tip then.",
        result: "{hash, height}",
        example: "\"<blockhash>\" 5000",
    },
    MethodHelp {
        name: "waitforblockheight",
        args: &[
            req("height", "integer", "The height to wait for."),
            opt("timeout", "integer (milliseconds)", "0", "Give up after this long; 0 waits the longest allowed (10 minutes)."),
        ],
        about: "Waits until the active tip is at least this high (at once if it is), the timeout passes, or shutdown; returns the tip then.",
        result: "{hash, height}",
        example: "100 5000",
    },
    MethodHelp {
        name: "getblockhash",
        args: &[req("height", "integer", "A height on the active chain.")],
        about: "Hash of the active chain's block at a height.",
        result: "string (hex)",
        example: "0",
    },
    MethodHelp {
        name: "getblock",
        args: &[
            req("blockhash", "string (hex)", "The block's hash."),
            opt("verbosity", "integer or bool", "1", "0 (or false) hex, 1 (or true) JSON with txids, 2 JSON with transactions."),
        ],
        about: "A block: hex, or JSON with txids or with whole transactions.",
        result: "string (hex), or {hash, confirmations, height, ..., size, nTx, tx}",
        example: "\"$(noded rpc getbestblockhash)\" 2",
    },
    MethodHelp {
        name: "getblockheader",
        args: &[
            req("blockhash", "string (hex)", "The block's hash."),
            opt("verbose", "bool or integer", "true", "true (or 1) JSON, false (or 0) hex of its 88 bytes."),
        ],
        about: "A block header: JSON, or hex of its 88 bytes.",
        result: "{hash, confirmations, height, version, merkleroot, time, mediantime, nonce, bits, target, difficulty, chainwork, nTx, previousblockhash, nextblockhash}, or string (hex)",
        example: "\"$(noded rpc getbestblockhash)\" 0",
    },
    MethodHelp {
        name: "getchaintips",
        args: &[],
        about: "Every branch tip: height, hash, branch length, status.",
        result: "[{height, hash, branchlen, status}]",
        example: "",
    },
    MethodHelp {
        name: "getdifficulty",
        args: &[],
        about: "Difficulty of the tip: pow limit / target.",
        result: "number",
        example: "",
    },
    MethodHelp {
        name: "getrawtransaction",
        args: &[
            req("txid", "string (hex)", "The transaction's id."),
            opt("verbose", "bool or integer", "false", "false (or 0) hex, true (or 1, 2) JSON with its block."),
        ],
        about: "A transaction (tx index or mempool): hex, or JSON with its block.",
        result: "string (hex), or {txid, type, size, from, to, amount, fee, nonce, hex, blockhash, confirmations, ...}",
        example: "<txid> 1",
    },
    MethodHelp {
        name: "gettransaction",
        args: &[req("txid", "string (hex)", "The transaction's id.")],
        about: "A transaction as JSON with its block and confirmations.",
        result: "{txid, type, size, from, to, amount, fee, nonce, hex, blockhash, blockheight, confirmations, blocktime}",
        example: "<txid>",
    },
    MethodHelp {
        name: "getaccount",
        args: &[req("address", "string (40 hex)", "The account's address.")],
        about: "Balance (base units) and next nonce of an account at the tip.",
        result: "{address, balance, nonce, height, bestblockhash}",
        example: "\"$(noded rpc getaddress)\"",
    },
    MethodHelp {
        name: "submitblock",
        args: &[req("hexdata", "string (hex)", "An encoded block.")],
        about: "Submits an encoded block: null if it connected, else a reason.",
        result: "null, or a reason: duplicate, inconclusive, duplicate-invalid, or a rejection code",
        example: "<blockhex>",
    },
    MethodHelp {
        name: "invalidateblock",
        args: &[req("blockhash", "string (hex)", "The block to mark invalid.")],
        about: "Marks a block and its descendants invalid and leaves that branch.",
        result: "null",
        example: "\"$(noded rpc getbestblockhash)\"",
    },
    MethodHelp {
        name: "reconsiderblock",
        args: &[req("blockhash", "string (hex)", "The block to clear.")],
        about: "Clears invalid marks on a block, its ancestors and descendants.",
        result: "null",
        example: "<blockhash>",
    },
    MethodHelp {
        name: "verifychain",
        args: &[opt("checklevel", "integer", "3", "How thorough (0 to 4).")],
        about: "Replays the active chain from genesis and compares the account state.",
        result: "{ok, blocks, ...}",
        example: "",
    },
    MethodHelp {
        name: "stop",
        args: &[],
        about: "Stops the node cleanly; it exits with status 0.",
        result: "\"noded stopping\"",
        example: "",
    },
    MethodHelp {
        name: "uptime",
        args: &[],
        about: "Seconds since the node started.",
        result: "integer",
        example: "",
    },
];

/// Every method's help: this table plus the mempool, mining and wallet tables.
pub fn all_methods() -> impl Iterator<Item = &'static MethodHelp> {
    METHODS
        .iter()
        .chain(super::mempool::MEMPOOL_METHODS)
        .chain(super::mining::MINING_METHODS)
        .chain(super::wallet::WALLET_METHODS)
        .chain(super::subscriptions::SUBSCRIPTION_METHODS)
}

/// The help entry of `name`, if it is a method of ours.
pub fn method_help(name: &str) -> Option<&'static MethodHelp> {
    all_methods().find(|m| m.name == name)
}

pub struct NodeRpc {
    ctx: RpcContext,
    active: ActiveCalls,
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
        match command {
            None => Ok(all_methods()
                .map(MethodHelp::summary)
                .collect::<Vec<_>>()
                .join("\n")),
            Some(name) => method_help(&name).map(MethodHelp::text).ok_or_else(|| {
                RpcError::InvalidParameter(format!("unknown method '{name}'")).into()
            }),
        }
    }

    fn stop(&self) -> RpcResult<String> {
        self.ctx.shutdown.cancel();
        Ok("noded stopping".to_string())
    }

    fn getrpcinfo(&self) -> RpcResult<serde_json::Value> {
        let active: Vec<serde_json::Value> = self
            .active
            .snapshot()
            .into_iter()
            .map(|(method, ran)| serde_json::json!({"method": method, "duration": ran.as_micros() as u64}))
            .collect();
        Ok(serde_json::json!({ "active_commands": active }))
    }

    fn logging(&self, filter: Option<String>) -> RpcResult<serde_json::Value> {
        let log =
            self.ctx.log.as_ref().ok_or_else(|| {
                RpcError::Misc("this process has no reloadable log filter".into())
            })?;
        if let Some(filter) = filter {
            log.set_filter(&filter).map_err(|e| {
                RpcError::InvalidParameter(format!("invalid log filter '{filter}': {e}"))
            })?;
            tracing::info!(filter = %filter, "log filter changed over RPC");
        }
        Ok(serde_json::json!({ "filter": log.filter() }))
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
    #[error("RPC method {0} has no help entry (src/rpc/*.rs help tables)")]
    NoHelp(String),
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
        // `MAX_REQUEST_BODY` is enforced on the body as sent by the 1.0 layer; this leaves
        // room for what its upgrade to 2.0 adds.
        .max_request_body_size(super::legacy::server_body_limit(max_batch))
        .max_connections(MAX_RPC_CONNECTIONS)
        .max_response_body_size(MAX_RESPONSE_BODY)
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
    let (pool, chain) = ctx.tx_intake.clone();
    let active = ActiveCalls::default();
    let rpc = NodeRpc {
        ctx,
        active: active.clone(),
        fixed,
    };
    let mut methods: jsonrpsee::Methods = rpc.into_rpc().into();
    for more in extra {
        methods.merge(more)?;
    }
    // `help`, the usage lines and the argument-count check all come from the help tables: a
    // method without an entry would escape all three.
    if let Some(missing) = methods.method_names().find(|n| method_help(n).is_none()) {
        return Err(RpcStartError::NoHelp(missing.to_string()));
    }
    metrics.rpc.register_methods(methods.method_names());
    let builder = Server::builder()
        .set_config(config)
        .set_http_middleware(
            tower::ServiceBuilder::new()
                .map_request(assume_json_body)
                .layer(LegacyLayer::new(max_batch)),
        )
        .set_rpc_middleware(
            RpcServiceBuilder::new()
                .layer_fn(move |inner| RpcTiming::new(inner, metrics.clone()))
                .layer_fn(move |s| Gate::new(s, active.clone(), method_help))
                .layer_fn(move |s| {
                    TxBatch::new(
                        s,
                        TxIntake {
                            pool: pool.clone(),
                            chain: chain.clone(),
                            max_response: MAX_RESPONSE_BODY as usize,
                        },
                    )
                })
                .layer_fn(move |s| ParamErrors::new(s, method_help, MAX_RESPONSE_BODY as usize)),
        )
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
