//! Wiring: opens the datadir, loads the identity, binds the listeners, then creates and owns the
//! chain writer, the mempool (and its chain follower), the miner, the network service (handed
//! the chain and the mempool) and the RPC server, waits for a shutdown request, and tears
//! everything down in order: RPC, network, miner, mempool follower, chain.
//!
//! Owns start-up and shutdown order only; no protocol, chain or mempool logic lives here, and
//! no lower layer creates a part another layer shares (the mempool is made here, not in mining).

use crate::chain::{writer as chain_writer, Chain, ChainError, ChainOptions};
use crate::config::Config;
use crate::datadir::{DataDir, DataDirError, COOKIE_USER};
use crate::mempool::{follow_chain, Mempool, MempoolConfig, SharedMempool};
use crate::metrics::Metrics;
use crate::mining::services::Services;
use crate::net::counts::PeerCounts;
use crate::net::identity::{Identity, IdentityError};
use crate::net::service::{Discovery, LanSettings, NetService};
use crate::net::store::{PeerStore, PeerStoreError};
use crate::net::store_writer::StoreWriter;
use crate::net::tls::{TlsError, TlsIdentity};
use crate::protocol::addrman::AddrMan;
use crate::protocol::{Core, CoreConfig};
use crate::rpc::auth::AuthLayer;
use crate::rpc::chain::chain_rpc_module_with_mempool;
use crate::rpc::http_routes::HttpRoutes;
use crate::rpc::mempool::mempool_rpc_module;
use crate::rpc::mining::mining_rpc_module;
use crate::rpc::net::{NetApiServer, NetFacts, NetRpc};
use crate::rpc::server::{self, LogControl, RpcContext, RpcStartError};
use crate::rpc::subscriptions::subscription_rpc_module;
use crate::rpc::wallet::wallet_rpc_module;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// How long shutdown waits for RPC calls in flight to finish: the long ones end at the next
/// block once the shutdown token is cancelled, so this only bounds a misbehaving call.
pub const RPC_DRAIN_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    DataDir(#[from] DataDirError),
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error("cannot listen for peers on {addr} (set --port, --bind or --nolisten): {source}")]
    P2pBind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    RpcStart(#[from] RpcStartError),
    #[error("cannot set up TLS: {0}")]
    Tls(#[from] TlsError),
    #[error(transparent)]
    PeerStore(#[from] PeerStoreError),
    #[error(transparent)]
    Chain(#[from] ChainError),
    #[error(transparent)]
    Wallet(#[from] crate::wallet::WalletError),
    #[error("cannot install signal handler: {0}")]
    Signal(std::io::Error),
}

/// Runs the node until `stop`, SIGINT or SIGTERM.
pub async fn run(config: Config) -> Result<(), NodeError> {
    run_with_log(config, None).await
}

/// `run`, with the process's log filter open to the `logging` RPC.
pub async fn run_with_log(
    config: Config,
    log: Option<Arc<dyn LogControl>>,
) -> Result<(), NodeError> {
    let started = Instant::now();
    let shutdown = CancellationToken::new();
    let datadir = DataDir::open(&config.datadir)?;
    let identity = Identity::load_or_create(datadir.path())?;
    let params = config.network.params();

    let listener = match config.listen {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .map_err(|source| NodeError::P2pBind { addr, source })?,
        ),
        None => None,
    };
    let p2p_addr = listener.as_ref().and_then(|l| l.local_addr().ok());

    let tls = TlsIdentity::new(&identity)?;
    // Earlier versions kept the peer store in the sled directory `peers`: moved once, then kept
    // as `peers.sled-old` for the user to remove.
    let peer_store_path = datadir.file("peers.redb");
    PeerStore::migrate_from_sled(&datadir.file("peers"), &peer_store_path)?;
    let peer_store = Arc::new(PeerStore::open(&peer_store_path)?);
    let store_writer = StoreWriter::start(peer_store.clone()).map_err(PeerStoreError::Writer)?;
    let addrman: AddrMan = peer_store.load_addrman()?;
    let bans = peer_store.load_bans()?;
    let core_config = core_config(&config, &identity, p2p_addr);
    let user_agent = core_config.user_agent.clone();
    let core = Core::new(core_config, addrman, bans);
    let manual = if config.connect.is_empty() {
        config.addnode.clone()
    } else {
        config.connect.clone()
    };
    let discovery = Discovery {
        dns_seeds: config.dns_seeds.clone(),
        dns_resolver: config.dns_resolver,
        bootstrap: config.bootstrap.clone(),
        lan: match (config.discover_lan, p2p_addr) {
            (true, Some(addr)) => Some(LanSettings {
                network: config.network,
                node_id: identity.node_id(),
                port: addr.port(),
            }),
            _ => None,
        },
    };

    // The chain before the mempool, the miner and the network service, which all work through
    // it; after the cheap start-up checks above, so they fail before a long chain open.
    // One store per network, so a datadir can be used on several (as bitcoind's subdirs).
    let chain_path = datadir.file("chain").join(config.network.name());
    let options = ChainOptions {
        max_pending_blocks: config.state_flush_blocks,
        ..ChainOptions::default()
    };
    let mut chain = Chain::open(&chain_path, params, options)?;
    // One registry per node, handed to the parts that count into it.
    let metrics = Arc::new(Metrics::new());
    chain.set_metrics(metrics.clone());
    let (chain_handle, chain_thread) = chain_writer::spawn(chain);

    // The mempool follows the chain from before anything can submit a block (the miner, RPC,
    // peers), so it sees every connect and disconnect.
    let mempool = SharedMempool::new(Mempool::new(mempool_config(&config), params.magic))
        .with_signature_metrics(metrics.signatures.clone());
    let mempool_follower = tokio::spawn(follow_chain(
        mempool.clone(),
        chain_handle.clone(),
        chain_handle.subscribe(),
        shutdown.clone(),
    ));
    // Never verify the same signature twice: blocks skip what the mempool already checked.
    chain_handle.set_verified_transactions(Arc::new(mempool.clone()));
    let mining = Services::start(&config, &chain_handle, mempool.clone(), &shutdown)?;

    // The network service last of the long-running parts: it is handed the chain and the
    // mempool it will relay from.
    let (net_service, net_handle) = NetService::new(
        tls,
        core,
        store_writer,
        manual,
        discovery,
        chain_handle.clone(),
        mempool.clone(),
        metrics.clone(),
    );
    let peer_counts = net_handle.counts.clone();
    scrape_sources(&metrics, &chain_handle, &mempool, &peer_counts);
    let net_methods = NetRpc::new(
        net_handle.clone(),
        NetFacts {
            node_id: identity.node_id(),
            p2p_addr,
            max_connections: config.max_connections,
            user_agent,
        },
    )
    .into_rpc();

    let cookie_password = datadir.write_cookie()?;
    let mut credentials = vec![(COOKIE_USER, cookie_password.as_str())];
    if let Some((user, password)) = &config.rpc_credentials {
        credentials.push((user.as_str(), password.as_str()));
    }
    let ctx = RpcContext {
        network: config.network,
        node_id: identity.node_id(),
        p2p_addr,
        started,
        chain: chain_handle.tip_receiver(),
        peers: peer_counts.clone(),
        shutdown: shutdown.clone(),
        metrics: metrics.clone(),
        log,
        tx_intake: (mempool.clone(), chain_handle.clone()),
    };
    let (rpc_handle, rpc_addr) = match server::start(
        config.rpc_addr,
        config.rpc_max_batch,
        AuthLayer::new(credentials).with_routes(HttpRoutes::new(metrics.clone(), config.rpc_addr)),
        ctx,
        vec![
            net_methods.into(),
            chain_rpc_module_with_mempool(
                chain_handle.clone(),
                Arc::new(mempool.clone()),
                shutdown.clone(),
                net_handle.clone(),
            )
            .into(),
            mempool_rpc_module(mempool.clone(), chain_handle.clone()).into(),
            mining_rpc_module(
                chain_handle.clone(),
                mempool.clone(),
                mining.miner.clone(),
                mining.wallet.clone(),
                mining.mine_address(&config),
            )
            .into(),
            wallet_rpc_module(mining.wallet.clone(), mempool.clone(), chain_handle.clone()).into(),
            subscription_rpc_module(chain_handle.clone(), mempool.clone(), net_handle).into(),
        ],
    )
    .await
    {
        Ok(started) => started,
        Err(e) => {
            datadir.remove_rpc_files();
            return Err(e.into());
        }
    };
    datadir.write_rpc_addr(rpc_addr)?;
    tracing::info!(
        network = %config.network,
        nodeid = %identity.node_id(),
        rpc = %rpc_addr,
        p2p = %p2p_addr.map_or_else(|| "off".to_string(), |a| a.to_string()),
        datadir = %datadir.path().display(),
        startup_ms = started.elapsed().as_millis() as u64,
        height = chain_handle.tip().height,
        "noded ready"
    );

    let net_task = tokio::spawn(net_service.run(listener, shutdown.clone()));

    wait_for_shutdown(&shutdown).await?;
    tracing::info!("shutting down");
    let _ = rpc_handle.stop();
    // Long calls (generate, verifychain) watch the shutdown token and end within a block;
    // whatever still runs after the bound is abandoned rather than waited for.
    if tokio::time::timeout(RPC_DRAIN_TIMEOUT, rpc_handle.stopped())
        .await
        .is_err()
    {
        tracing::warn!(
            timeout_ms = RPC_DRAIN_TIMEOUT.as_millis() as u64,
            "RPC calls still running at shutdown were abandoned"
        );
    }
    // The service stops its peers and saves the peer store before it returns; with it go its
    // chain handle and mempool, so no peer can submit a block or transaction after this.
    if let Err(e) = net_task.await {
        tracing::warn!(error = %e, "network service ended abnormally");
    }
    // The miner may be submitting, so it stops before the chain does.
    mining.stop().await;
    // The follower reads the chain store for every event: it stops before the store closes.
    if let Err(e) = mempool_follower.await {
        tracing::warn!(error = %e, "the mempool's chain follower ended abnormally");
    }
    // Last writer to stop: flushes the chain store.
    if let Err(e) = chain_handle.shutdown().await {
        tracing::error!(error = %e, "chain shutdown failed");
    }
    let _ = tokio::task::spawn_blocking(move || chain_thread.join()).await;
    datadir.remove_rpc_files();
    let tip = chain_handle.tip();
    tracing::info!(height = tip.height, tip = %tip.hash, "noded stopped");
    Ok(())
}

async fn wait_for_shutdown(shutdown: &CancellationToken) -> Result<(), NodeError> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = signal(SignalKind::terminate()).map_err(NodeError::Signal)?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(NodeError::Signal)?;
    tokio::select! {
        _ = shutdown.cancelled() => {}
        _ = terminate.recv() => tracing::info!("SIGTERM received"),
        _ = interrupt.recv() => tracing::info!("SIGINT received"),
    }
    shutdown.cancel();
    Ok(())
}

/// The gauges read at scrape time rather than kept current: the tip and best header (a watch
/// channel and an atomic), and the mempool's size (one short look under its lock). The
/// refreshers hold gauge handles, not the registry, so nothing here is a reference cycle.
fn scrape_sources(
    metrics: &Metrics,
    chain: &chain_writer::ChainHandle,
    mempool: &SharedMempool,
    peers: &Arc<PeerCounts>,
) {
    let (tip, peers) = (chain.tip_receiver(), peers.clone());
    let (tip_height, header_height) = (
        metrics.chain.tip_height.clone(),
        metrics.chain.header_height.clone(),
    );
    metrics.on_scrape(move || {
        let tip = *tip.borrow();
        let headers = peers.headers.load(Ordering::Relaxed).max(tip.header_height);
        tip_height.set(saturating_i64(tip.height));
        header_height.set(saturating_i64(headers.max(tip.height)));
    });
    let pool = mempool.clone();
    let (txs, bytes, future) = (
        metrics.mempool.transactions.clone(),
        metrics.mempool.bytes.clone(),
        metrics.mempool.future_transactions.clone(),
    );
    metrics.on_scrape(move || {
        let (len, size, waiting) = {
            let pool = pool.lock();
            (pool.len(), pool.bytes(), pool.future_len())
        };
        txs.set(saturating_i64(len as u64));
        bytes.set(saturating_i64(size as u64));
        future.set(saturating_i64(waiting as u64));
    });
}

fn saturating_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// The mempool's limits from the node's configuration; the rest are the pool's defaults.
fn mempool_config(config: &Config) -> MempoolConfig {
    MempoolConfig {
        max_bytes: config.max_mempool_bytes,
        expiry_secs: config.mempool_expiry_secs,
        ..MempoolConfig::default()
    }
}

/// The protocol core's settings from the node's configuration.
fn core_config(config: &Config, identity: &Identity, p2p_addr: Option<SocketAddr>) -> CoreConfig {
    let mut cfg = CoreConfig::new(identity.node_id());
    let max_total = config.max_connections as usize;
    cfg.listen_port = p2p_addr.map(|a| a.port());
    cfg.max_total = max_total;
    cfg.max_outbound = cfg.max_outbound.min(max_total);
    cfg.max_inbound = if config.listen.is_some() {
        max_total.saturating_sub(cfg.max_outbound)
    } else {
        0
    };
    cfg.max_inbound_per_ip = config.max_inbound_per_ip as usize;
    cfg.ban_duration_ms = config.ban_time_secs.saturating_mul(1000);
    cfg.connect_only = !config.connect.is_empty();
    cfg.have_dns_seeds = !config.dns_seeds.is_empty() && config.connect.is_empty();
    // Regtest is a local test network: its nodes live on loopback and private addresses.
    cfg.allow_local_addrs = config.network == crate::params::Network::Regtest;
    cfg.noban = config.noban.clone();
    cfg.rng_seed = rand::random();
    cfg
}
