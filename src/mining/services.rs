//! Starts the wallet and miner for a running node: builds them from the config, the chain
//! handle and the node's mempool, and spawns the `--mine` loop when asked.
//!
//! Owns these pieces' start and stop order only; `node` calls `start` and later `stop`, and
//! builds their RPC methods. Mining must never create the mempool (`node` owns it, since the
//! network service relays from the same pool) nor depend on the RPC layer above it.

use super::{default_threads, Miner};
use crate::chain::ChainHandle;
use crate::config::Config;
use crate::mempool::SharedMempool;
use crate::types::Address;
use crate::wallet::{WalletError, WalletService};
use std::sync::Arc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The running wallet and miner.
pub struct Services {
    pub wallet: Arc<WalletService>,
    pub miner: Arc<Miner>,
    /// The `--mine` loop, when the node mines continuously.
    mine_loop: Option<JoinHandle<()>>,
}

impl Services {
    /// Builds the pieces and starts the `--mine` loop if asked; templates come from `pool`.
    /// With `--mine` and no `--mineraddress`, the wallet is opened (created on first use) for
    /// its address, which can fail.
    pub fn start(
        config: &Config,
        chain: &ChainHandle,
        pool: SharedMempool,
        shutdown: &CancellationToken,
    ) -> Result<Services, WalletError> {
        let params = config.network.params();
        let wallet = Arc::new(WalletService::new(&config.datadir, params));
        // A shutdown ends `generate` calls between blocks, so the RPC server's drain is short.
        let miner = Arc::new(
            Miner::new(
                chain.clone(),
                pool,
                config.mine_threads.unwrap_or_else(default_threads),
            )
            .cancelled_with(shutdown),
        );
        let mine_loop = if config.mine {
            let address = match config.miner_address {
                Some(a) => a,
                None => wallet.with(|w| Ok(w.address()))?,
            };
            Some(tokio::spawn(miner.clone().run(
                address,
                config.mine_interval,
                shutdown.clone(),
            )))
        } else {
            None
        };
        Ok(Services {
            wallet,
            miner,
            mine_loop,
        })
    }

    /// Where `--mine` pays its blocks (`--mineraddress`, else the wallet's address), shown by
    /// getmininginfo; `None` when the node does not mine.
    pub fn mine_address(&self, config: &Config) -> Option<Address> {
        if !config.mine {
            return None;
        }
        config
            .miner_address
            .or_else(|| self.wallet.with(|w| Ok(w.address())).ok())
    }

    /// Ends every search and waits for the `--mine` loop (it also watches the shutdown token).
    pub async fn stop(self) {
        self.miner.stop();
        if let Some(task) = self.mine_loop {
            if let Err(e) = task.await {
                tracing::warn!(error = %e, "the mining loop ended abnormally");
            }
        }
    }
}
