//! Wallet RPC methods: getnewaddress, getaddress, listaddresses, getbalance, sendtoaddress.
//!
//! Amounts are integers in base units (1 coin = 100,000,000). Balances are the confirmed
//! state at the chain tip; `getbalance` with `pending=true` also subtracts what the account's
//! mempool transactions will spend (incoming mempool transfers are not counted).

use super::error::{code, error_object};
use super::mempool::rejection;
use super::mining::parse_address;
use crate::chain::state::AccountView;
use crate::chain::ChainHandle;
use crate::mempool::SharedMempool;
use crate::types::{Address, Amount, Hash256};
use crate::wallet::{WalletError, WalletService, DEFAULT_FEE};
use jsonrpsee::core::RpcResult;
use jsonrpsee::proc_macros::rpc;
use jsonrpsee::types::ErrorObjectOwned;
use jsonrpsee::RpcModule;
use serde_json::{json, Value};
use std::sync::Arc;

/// Every wallet method with its arguments and a one-line description, for `help`.
pub const WALLET_METHODS: &[(&str, &str, &str)] = &[
    (
        "getaddress",
        "",
        "The wallet's default address (created with the wallet on first use).",
    ),
    (
        "getbalance",
        "[address] [pending=false]",
        "Confirmed balance in base units of an address, or of all wallet addresses; pending=true subtracts mempool spends.",
    ),
    (
        "getnewaddress",
        "",
        "Adds a key to the wallet and returns its address.",
    ),
    (
        "listaddresses",
        "",
        "The wallet's addresses with their confirmed balance and nonce.",
    ),
    (
        "sendtoaddress",
        "address amount [fee=10000]",
        "Pays amount (base units) from the wallet; returns the txid.",
    ),
];

#[rpc(server)]
pub trait WalletApi {
    #[method(name = "getnewaddress", blocking)]
    fn getnewaddress(&self) -> RpcResult<Address>;
    #[method(name = "getaddress", blocking)]
    fn getaddress(&self) -> RpcResult<Address>;
    #[method(name = "listaddresses", blocking)]
    fn listaddresses(&self) -> RpcResult<Value>;
    #[method(name = "getbalance", blocking)]
    fn getbalance(&self, address: Option<String>, pending: Option<bool>) -> RpcResult<Amount>;
    #[method(name = "sendtoaddress", blocking)]
    fn sendtoaddress(&self, address: String, amount: u64, fee: Option<u64>) -> RpcResult<Hash256>;
}

pub struct WalletRpc {
    wallet: Arc<WalletService>,
    pool: SharedMempool,
    chain: ChainHandle,
}

/// The wallet methods as a module to merge into the server's.
pub fn wallet_rpc_module(
    wallet: Arc<WalletService>,
    pool: SharedMempool,
    chain: ChainHandle,
) -> RpcModule<WalletRpc> {
    WalletRpc {
        wallet,
        pool,
        chain,
    }
    .into_rpc()
}

fn wallet_error(e: WalletError) -> ErrorObjectOwned {
    match &e {
        WalletError::Rejected(m) => rejection(m),
        WalletError::InsufficientFunds { .. } => ErrorObjectOwned::owned(
            code::WALLET_INSUFFICIENT_FUNDS,
            e.to_string(),
            Some(json!({ "reason": "insufficient-funds" })),
        ),
        WalletError::BadAmount => error_object(code::TYPE_ERROR, e.to_string()),
        _ => error_object(code::WALLET_ERROR, e.to_string()),
    }
}

impl WalletRpc {
    fn balance_of(&self, address: &Address, pending: bool) -> Amount {
        let reader = self.chain.reader();
        let state = reader.account(address);
        if !pending {
            return state.balance;
        }
        let spent = self.pool.lock().pending_spend(address, state);
        state.balance.checked_sub(spent).unwrap_or(Amount::ZERO)
    }
}

impl WalletApiServer for WalletRpc {
    fn getnewaddress(&self) -> RpcResult<Address> {
        self.wallet.with(|w| w.new_address()).map_err(wallet_error)
    }

    fn getaddress(&self) -> RpcResult<Address> {
        self.wallet.with(|w| Ok(w.address())).map_err(wallet_error)
    }

    fn listaddresses(&self) -> RpcResult<Value> {
        let balances = self
            .wallet
            .balances(self.chain.reader())
            .map_err(wallet_error)?;
        Ok(json!(balances
            .into_iter()
            .map(|(address, account)| json!({
                "address": address,
                "balance": account.balance,
                "nonce": account.nonce,
            }))
            .collect::<Vec<_>>()))
    }

    fn getbalance(&self, address: Option<String>, pending: Option<bool>) -> RpcResult<Amount> {
        let pending = pending.unwrap_or(false);
        let addresses = match address.as_deref() {
            Some(text) if text != "*" => vec![parse_address(text)?],
            _ => self
                .wallet
                .with(|w| Ok(w.addresses()))
                .map_err(wallet_error)?,
        };
        let mut total = Amount::ZERO;
        for a in addresses {
            total = total
                .checked_add(self.balance_of(&a, pending))
                .ok_or_else(|| error_object(code::INTERNAL_ERROR, "balance overflow"))?;
        }
        Ok(total)
    }

    fn sendtoaddress(&self, address: String, amount: u64, fee: Option<u64>) -> RpcResult<Hash256> {
        let to = parse_address(&address)?;
        let fee = fee.map_or(DEFAULT_FEE, Amount);
        let sent = self
            .wallet
            .send(
                &self.pool,
                self.chain.reader(),
                to,
                Amount(amount),
                fee,
                crate::time::unix_secs(),
            )
            .map_err(wallet_error)?;
        Ok(sent.accepted.txid)
    }
}

#[cfg(test)]
mod tests {
    use crate::chain::{writer, Chain, ChainOptions};
    use crate::mempool::{Mempool, MempoolConfig, SharedMempool};
    use crate::mining::Miner;
    use crate::params::REGTEST;
    use crate::rpc::mempool::{mempool_rpc_module, MEMPOOL_METHODS};
    use crate::rpc::mining::{mining_rpc_module, MINING_METHODS};
    use crate::rpc::wallet::{wallet_rpc_module, WALLET_METHODS};
    use crate::wallet::WalletService;
    use std::sync::Arc;

    fn sorted<'a>(names: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
        let mut v: Vec<&str> = names.collect();
        v.sort_unstable();
        v
    }

    #[test]
    fn every_method_has_exactly_one_help_entry() {
        let chain = Chain::open_temporary(&REGTEST, ChainOptions::default()).unwrap();
        let (handle, _thread) = writer::spawn(chain);
        let pool = SharedMempool::new(Mempool::new(MempoolConfig::default(), REGTEST.magic));
        let dir = tempfile::tempdir().unwrap();
        let wallet = Arc::new(WalletService::new(dir.path(), &REGTEST));
        let miner = Arc::new(Miner::new(handle.clone(), pool.clone(), 1));
        let table = |t: &'static [(&'static str, &'static str, &'static str)]| {
            sorted(t.iter().map(|(n, _, _)| *n))
        };
        let m = mempool_rpc_module(pool.clone(), handle.clone());
        assert_eq!(sorted(m.method_names()), table(MEMPOOL_METHODS));
        let m = mining_rpc_module(handle.clone(), pool.clone(), miner, wallet.clone(), None);
        assert_eq!(sorted(m.method_names()), table(MINING_METHODS));
        let m = wallet_rpc_module(wallet, pool, handle);
        assert_eq!(sorted(m.method_names()), table(WALLET_METHODS));
    }
}
