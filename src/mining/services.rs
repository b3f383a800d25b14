//! Starts the mempool, wallet and miner for a running node: builds them from the config and
//! the chain handle, and spawns the task that keeps the mempool in step with the chain (and the
//! `--mine` loop when asked).
//!
//! Owns these pieces' start and stop order only; `node` calls `start` and later `stop`, and
//! builds their RPC methods (mining never depends on the RPC layer above it).

use super::{default_threads, Miner};
use crate::chain::ChainHandle;
use crate::config::Config;
use crate::mempool::{follow_chain, Mempool, MempoolConfig, SharedMempool};
use crate::types::Address;
use crate::wallet::{WalletError, WalletService};
use std::sync::Arc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The running mempool, wallet and miner.
pub struct Services {
    pub pool: SharedMempool,
    pub wallet: Arc<WalletService>,
    pub miner: Arc<Miner>,
    tasks: Vec<JoinHandle<()>>,
}

impl Services {
    /// Builds the pieces and starts their tasks. Call before anything can submit blocks, so
    /// the mempool sees every chain event. With `--mine` and no `--mineraddress`, the wallet
    /// is opened (created on first use) for its address, which can fail.
    pub fn start(
        config: &Config,
        chain: &ChainHandle,
        shutdown: &CancellationToken,
    ) -> Result<Services, WalletError> {
        let params = config.network.params();
        let events = chain.subscribe();
        let pool = SharedMempool::new(Mempool::new(
            MempoolConfig {
                max_bytes: config.max_mempool_bytes,
                expiry_secs: config.mempool_expiry_secs,
                ..MempoolConfig::default()
            },
            params.magic,
        ));
        let wallet = Arc::new(WalletService::new(&config.datadir, params));
        // A shutdown ends `generate` calls between blocks, so the RPC server's drain is short.
        let miner = Arc::new(
            Miner::new(
                chain.clone(),
                pool.clone(),
                config.mine_threads.unwrap_or_else(default_threads),
            )
            .cancelled_with(shutdown),
        );
        let mut tasks = vec![tokio::spawn(follow_chain(
            pool.clone(),
            chain.clone(),
            events,
            shutdown.clone(),
        ))];
        if config.mine {
            let address = match config.miner_address {
                Some(a) => a,
                None => wallet.with(|w| Ok(w.address()))?,
            };
            tasks.push(tokio::spawn(miner.clone().run(address, shutdown.clone())));
        }
        Ok(Services {
            pool,
            wallet,
            miner,
            tasks,
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

    /// Ends every search and waits for the tasks (they also watch the shutdown token).
    pub async fn stop(self) {
        self.miner.stop();
        for task in self.tasks {
            if let Err(e) = task.await {
                tracing::warn!(error = %e, "a mempool or mining task ended abnormally");
            }
        }
    }
}
