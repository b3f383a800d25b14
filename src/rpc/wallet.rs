//! Wallet RPC methods: getnewaddress, getaddress, listaddresses, getbalance, sendtoaddress.
//!
//! Amounts are integers in base units (1 coin = 100,000,000). Balances are the confirmed
//! state at the chain tip; `getbalance` with `pending=true` also subtracts what the account's
//! mempool transactions will spend (incoming mempool transfers are not counted).

use super::error::{code, error_object};
use super::help::{opt, req, MethodHelp};
use super::mempool::rejection;
use super::mining::parse_address;
use super::params::AmountParam;
use crate::chain::state::AccountView;
use crate::chain::ChainHandle;
use crate::mempool::SharedMempool;
use crate::types::{Address, Amount, Hash256, Transaction};
use crate::wallet::{WalletError, WalletService, DEFAULT_FEE};
use jsonrpsee::core::RpcResult;
use jsonrpsee::proc_macros::rpc;
use jsonrpsee::types::ErrorObjectOwned;
use jsonrpsee::RpcModule;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::sync::Arc;

/// Every wallet method's help.
pub const WALLET_METHODS: &[MethodHelp] = &[
    MethodHelp {
        name: "getaddress",
        args: &[],
        about: "The wallet's default address (created with the wallet on first use).",
        result: "string (40 hex)",
        example: "",
    },
    MethodHelp {
        name: "getbalance",
        args: &[
            opt("address", "string (40 hex)", "*", "One address, or * for every wallet address."),
            opt("pending", "bool", "false", "Subtract what the mempool's transactions will spend."),
        ],
        about: "Confirmed balance in base units of an address, or of all wallet addresses.",
        result: "integer (base units)",
        example: "* true",
    },
    MethodHelp {
        name: "getnewaddress",
        args: &[],
        about: "Adds a key to the wallet and returns its address.",
        result: "string (40 hex)",
        example: "",
    },
    MethodHelp {
        name: "listaddresses",
        args: &[],
        about: "The wallet's addresses with their confirmed balance and nonce.",
        result: "[{address, balance, nonce}]",
        example: "",
    },
    MethodHelp {
        name: "sendtoaddress",
        args: &[
            req("address", "string (40 hex)", "Who to pay."),
            req("amount", "integer (base units) or string \"<decimal>coin\"", "How much, e.g. 150000000 or \"1.5coin\"."),
            opt("fee", "integer (base units) or string \"<decimal>coin\"", "10000", "The fee."),
        ],
        about: "Pays an amount from the wallet; returns the txid.",
        result: "string (txid)",
        example: "\"$(noded rpc getnewaddress)\" 1.5coin",
    },
    MethodHelp {
        name: "listtransactions",
        args: &[
            opt("count", "integer", "10", "How many of the most recent transactions."),
            opt("skip", "integer", "0", "Skip this many of the most recent first."),
        ],
        about: "The wallet's most recent transactions (mempool, then the last 10,000 blocks), oldest first.",
        result: "[{address, category (send|receive|generate), amount, fee, txid, confirmations, blockhash, blockheight, time}]",
        example: "20",
    },
    MethodHelp {
        name: "getwalletinfo",
        args: &[],
        about: "The wallet: addresses, confirmed and pending balance (base units), default fee.",
        result: "{walletname, addresses, balance, pending_balance, paytxfee, unit}",
        example: "",
    },
    MethodHelp {
        name: "validateaddress",
        args: &[req("address", "string", "The text to check.")],
        about: "Whether a text is a valid address, and whether the wallet holds its key.",
        result: "{isvalid, address, ismine} or {isvalid: false, error}",
        example: "\"$(noded rpc getaddress)\"",
    },
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
    #[method(name = "listtransactions", blocking)]
    fn listtransactions(&self, count: Option<usize>, skip: Option<usize>) -> RpcResult<Value>;
    #[method(name = "getwalletinfo", blocking)]
    fn getwalletinfo(&self) -> RpcResult<Value>;
    #[method(name = "validateaddress", blocking)]
    fn validateaddress(&self, address: String) -> RpcResult<Value>;
    #[method(name = "sendtoaddress", blocking)]
    fn sendtoaddress(
        &self,
        address: String,
        amount: AmountParam,
        fee: Option<AmountParam>,
    ) -> RpcResult<Hash256>;
}

/// Blocks `listtransactions` reads back from the tip at most: it has no index of the wallet's
/// transactions, so the scan is bounded (10,000 blocks is weeks on main, all of a test chain).
pub const MAX_LISTTRANSACTIONS_BLOCKS: u64 = 10_000;
/// Most entries one `listtransactions` answers with (count + skip).
pub const MAX_LISTTRANSACTIONS: usize = 1_000;

/// What `getwalletinfo` and `listtransactions` say amounts are in.
pub const AMOUNT_UNIT: &str = "base units (1 coin = 100000000)";

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

/// A transaction's entries for the wallet holding `mine`: a send from one of its addresses, a
/// receive to one, a generate for a coinbase paying one (bitcoind's categories). `txid` is
/// asked for only when there is an entry (most transactions of a block are not the wallet's).
fn wallet_entries(
    tx: &Transaction,
    mine: &HashSet<Address>,
    txid: impl FnOnce() -> Hash256,
) -> Vec<Value> {
    let mut entries = Vec::new();
    match tx {
        Transaction::Coinbase(cb) if mine.contains(&cb.to) => entries.push(json!({
            "address": cb.to,
            "category": "generate",
            "amount": cb.amount.0,
        })),
        Transaction::Coinbase(_) => {}
        Transaction::Transfer(t) => {
            if mine.contains(&t.sender()) {
                entries.push(json!({
                    "address": t.to,
                    "from": t.sender(),
                    "category": "send",
                    "amount": -(t.amount.0 as i128),
                    "fee": -(t.fee.0 as i128),
                    "nonce": t.nonce,
                }));
            }
            if mine.contains(&t.to) {
                entries.push(json!({
                    "address": t.to,
                    "from": t.sender(),
                    "category": "receive",
                    "amount": t.amount.0,
                }));
            }
        }
    }
    if !entries.is_empty() {
        let txid = txid();
        for e in &mut entries {
            e["txid"] = json!(txid);
        }
    }
    entries
}

impl WalletApiServer for WalletRpc {
    fn listtransactions(&self, count: Option<usize>, skip: Option<usize>) -> RpcResult<Value> {
        let (count, skip) = (count.unwrap_or(10), skip.unwrap_or(0));
        let wanted = count.saturating_add(skip);
        if wanted > MAX_LISTTRANSACTIONS {
            return Err(error_object(
                code::INVALID_PARAMETER,
                format!("count + skip is {wanted}, more than {MAX_LISTTRANSACTIONS}"),
            ));
        }
        let mine: HashSet<Address> = self
            .wallet
            .with(|w| Ok(w.addresses()))
            .map_err(wallet_error)?
            .into_iter()
            .collect();
        // Newest first: the mempool, then the chain back from the tip.
        let mut newest_first: Vec<Value> = Vec::new();
        {
            // Only the wallet's own entries are copied out under the lock (by the sender
            // and recipient the pool already holds); the rest is done without it.
            let mut pending: Vec<_> = self
                .pool
                .lock()
                .entries()
                .filter(|e| mine.contains(&e.sender) || mine.contains(&e.transfer.to))
                .cloned()
                .collect();
            pending.sort_by_key(|e| std::cmp::Reverse(e.time));
            for entry in pending {
                for mut e in wallet_entries(&entry.transaction(), &mine, || entry.txid)
                    .into_iter()
                    .rev()
                {
                    e["confirmations"] = json!(0);
                    e["time"] = json!(entry.time);
                    newest_first.push(e);
                }
            }
        }
        let reader = self.chain.reader();
        let tip = self.chain.tip();
        let chain_err =
            |e: crate::chain::ChainError| error_object(code::DATABASE_ERROR, e.to_string());
        let lowest = tip.height.saturating_sub(MAX_LISTTRANSACTIONS_BLOCKS - 1);
        for height in (lowest..=tip.height).rev() {
            if newest_first.len() >= wanted {
                break;
            }
            let Some(hash) = reader.block_hash(height).map_err(chain_err)? else {
                continue;
            };
            let Some(block) = reader.block(&hash).map_err(chain_err)? else {
                continue;
            };
            for tx in block.transactions.iter().rev() {
                for mut e in wallet_entries(tx, &mine, || tx.txid()).into_iter().rev() {
                    e["confirmations"] = json!(tip.height - height + 1);
                    e["blockhash"] = json!(hash);
                    e["blockheight"] = json!(height);
                    e["blocktime"] = json!(block.header.time);
                    e["time"] = json!(block.header.time);
                    newest_first.push(e);
                }
            }
        }
        let mut page: Vec<Value> = newest_first.into_iter().skip(skip).take(count).collect();
        page.reverse();
        Ok(Value::Array(page))
    }

    fn getwalletinfo(&self) -> RpcResult<Value> {
        let addresses = self
            .wallet
            .with(|w| Ok(w.addresses()))
            .map_err(wallet_error)?;
        let (mut balance, mut pending) = (Amount::ZERO, Amount::ZERO);
        for a in &addresses {
            balance = balance
                .checked_add(self.balance_of(a, false))
                .unwrap_or(balance);
            pending = pending
                .checked_add(self.balance_of(a, true))
                .unwrap_or(pending);
        }
        Ok(json!({
            "walletname": crate::wallet::WALLET_FILE,
            "addresses": addresses.len(),
            "balance": balance,
            "pending_balance": pending,
            "paytxfee": DEFAULT_FEE,
            "unit": AMOUNT_UNIT,
        }))
    }

    fn validateaddress(&self, address: String) -> RpcResult<Value> {
        match address.parse::<Address>() {
            Ok(parsed) => {
                let ismine = self
                    .wallet
                    .with(|w| Ok(w.key_for(&parsed).is_some()))
                    .map_err(wallet_error)?;
                Ok(json!({ "isvalid": true, "address": parsed, "ismine": ismine }))
            }
            Err(_) => Ok(json!({
                "isvalid": false,
                "address": address,
                "error": "an address is 40 hex characters",
            })),
        }
    }

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

    fn sendtoaddress(
        &self,
        address: String,
        amount: AmountParam,
        fee: Option<AmountParam>,
    ) -> RpcResult<Hash256> {
        let to = parse_address(&address)?;
        let fee = fee.map_or(DEFAULT_FEE, |f| f.0);
        let sent = self
            .wallet
            .send(
                &self.pool,
                self.chain.reader(),
                to,
                amount.0,
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
        let table = |t: &'static [crate::rpc::help::MethodHelp]| sorted(t.iter().map(|m| m.name));
        let m = mempool_rpc_module(pool.clone(), handle.clone());
        assert_eq!(sorted(m.method_names()), table(MEMPOOL_METHODS));
        let m = mining_rpc_module(handle.clone(), pool.clone(), miner, wallet.clone(), None);
        assert_eq!(sorted(m.method_names()), table(MINING_METHODS));
        let m = wallet_rpc_module(wallet, pool, handle);
        assert_eq!(sorted(m.method_names()), table(WALLET_METHODS));
    }
}
