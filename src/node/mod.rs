//! Wiring: opens the datadir, loads the identity, binds the listeners, starts the RPC server,
//! waits for a shutdown request, and tears everything down in order.
//!
//! Owns start-up and shutdown order only; no protocol or chain logic lives here.

use crate::chain::ChainTip;
use crate::config::Config;
use crate::datadir::{DataDir, DataDirError, COOKIE_USER};
use crate::net::identity::{Identity, IdentityError};
use crate::rpc::auth::AuthLayer;
use crate::rpc::server::{self, PeerCounts, RpcBindError, RpcContext};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

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
    RpcBind(#[from] RpcBindError),
    #[error("cannot install signal handler: {0}")]
    Signal(std::io::Error),
}

/// Runs the node until `stop`, SIGINT or SIGTERM.
pub async fn run(config: Config) -> Result<(), NodeError> {
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

    let (_tip_tx, tip_rx) = watch::channel(ChainTip::genesis(params));
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
        chain: tip_rx,
        peers: Arc::new(PeerCounts::default()),
        shutdown: shutdown.clone(),
    };
    let (rpc_handle, rpc_addr) =
        match server::start(config.rpc_addr, AuthLayer::new(credentials), ctx).await {
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
        "noded ready"
    );

    let accept_task = listener.map(|l| tokio::spawn(accept_loop(l, shutdown.clone())));

    wait_for_shutdown(&shutdown).await?;
    tracing::info!("shutting down");
    if let Some(task) = accept_task {
        task.abort();
    }
    let _ = rpc_handle.stop();
    rpc_handle.stopped().await;
    datadir.remove_rpc_files();
    tracing::info!("noded stopped");
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

/// Accepts inbound TCP connections. Until the TLS transport lands, a connection is closed at
/// once: this node has no plaintext path and will never speak the protocol without TLS.
async fn accept_loop(listener: TcpListener, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, addr)) => {
                    tracing::debug!(%addr, "inbound connection closed: peer transport not available yet");
                    drop(stream);
                }
                Err(e) => {
                    // Typically EMFILE: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
        }
    }
}
