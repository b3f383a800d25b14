//! Chain RPC methods (bitcoind names and shapes): blockchain info, blocks, headers, tips,
//! transactions by the tx index, accounts, submitblock, invalidate/reconsider, verifychain.
//!
//! Reads go to the chain's read handle and published tip; writes are commands to the chain
//! writer, awaited without holding anything. Never blocks the writer on a reader.

use super::error::{code, error_object};
use super::params::Verbosity;
use crate::chain::reader::ChainTipInfo;
use crate::chain::store::IndexRecord;
use crate::chain::work::difficulty;
use crate::chain::{ChainError, ChainHandle, SubmitOutcome, VerifyReport};
use crate::encoding;
use crate::net::counts::PeerCounts;
use crate::net::service::{NetCommand, NetHandle};
use crate::params::MEDIAN_TIME_SPAN;
use crate::types::pow::target_from_compact;
use crate::types::{Address, Block, Hash256, Transaction};
use jsonrpsee::core::{async_trait, RpcResult};
use jsonrpsee::proc_macros::rpc;
use jsonrpsee::types::ErrorObjectOwned;
use jsonrpsee::RpcModule;
use serde_json::{json, Value};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

fn chain_error(e: ChainError) -> ErrorObjectOwned {
    match e {
        ChainError::UnknownBlock(_) => {
            error_object(code::INVALID_ADDRESS_OR_KEY, "Block not found")
        }
        ChainError::Corrupt { .. } | ChainError::Store(_) => {
            error_object(code::DATABASE_ERROR, e.to_string())
        }
        ChainError::InvalidBlock { .. }
        | ChainError::TxIndexSyncing { .. }
        | ChainError::KnownInvalid(_)
        | ChainError::CannotInvalidateGenesis
        | ChainError::Cancelled => error_object(code::MISC_ERROR, e.to_string()),
        other => error_object(code::INTERNAL_ERROR, other.to_string()),
    }
}

fn parse_hash(text: &str, what: &str) -> Result<Hash256, ErrorObjectOwned> {
    text.parse().map_err(|_| {
        error_object(
            code::INVALID_PARAMETER,
            format!("{what} must be 64 hex characters, not '{text}'"),
        )
    })
}

/// Where transactions not yet in a block are looked up (the mempool provides it).
pub trait MempoolTxLookup: Send + Sync + 'static {
    fn mempool_transaction(&self, txid: &Hash256) -> Option<Transaction>;
}

pub struct ChainRpc {
    chain: ChainHandle,
    mempool: Option<Arc<dyn MempoolTxLookup>>,
    /// The node's shutdown: `verifychain` stops replaying when it is cancelled.
    shutdown: CancellationToken,
    /// What the network service publishes: the best header it has checked.
    network: Option<Arc<PeerCounts>>,
    /// The network service, for the header tree's header-only branches.
    net: Option<NetHandle>,
}

/// The chain methods as a module to merge into the server's.
pub fn chain_rpc_module(chain: ChainHandle) -> RpcModule<ChainRpc> {
    ChainRpc {
        chain,
        mempool: None,
        shutdown: CancellationToken::new(),
        network: None,
        net: None,
    }
    .into_rpc()
}

/// The chain methods, with unconfirmed transactions looked up in `mempool`; long calls end
/// when `shutdown` is cancelled.
pub fn chain_rpc_module_with_mempool(
    chain: ChainHandle,
    mempool: Arc<dyn MempoolTxLookup>,
    shutdown: CancellationToken,
    net: NetHandle,
) -> RpcModule<ChainRpc> {
    ChainRpc {
        chain,
        mempool: Some(mempool),
        shutdown,
        network: Some(net.counts.clone()),
        net: Some(net),
    }
    .into_rpc()
}

#[rpc(server)]
pub trait ChainApi {
    #[method(name = "getblockchaininfo")]
    async fn getblockchaininfo(&self) -> RpcResult<Value>;
    #[method(name = "getblockcount")]
    fn getblockcount(&self) -> RpcResult<u64>;
    #[method(name = "getbestblockhash")]
    fn getbestblockhash(&self) -> RpcResult<Hash256>;
    #[method(name = "getblockhash")]
    fn getblockhash(&self, height: u64) -> RpcResult<Hash256>;
    #[method(name = "getblock", blocking)]
    fn getblock(&self, blockhash: String, verbosity: Option<Verbosity>) -> RpcResult<Value>;
    #[method(name = "getblockheader", blocking)]
    fn getblockheader(&self, blockhash: String, verbose: Option<Verbosity>) -> RpcResult<Value>;
    #[method(name = "getchaintips")]
    async fn getchaintips(&self) -> RpcResult<Vec<ChainTipInfo>>;
    #[method(name = "getdifficulty")]
    fn getdifficulty(&self) -> RpcResult<f64>;
    #[method(name = "getrawtransaction", blocking)]
    fn getrawtransaction(&self, txid: String, verbose: Option<Verbosity>) -> RpcResult<Value>;
    #[method(name = "gettransaction", blocking)]
    fn gettransaction(&self, txid: String) -> RpcResult<Value>;
    #[method(name = "getaccount")]
    fn getaccount(&self, address: String) -> RpcResult<Value>;
    #[method(name = "submitblock")]
    async fn submitblock(&self, hexdata: String) -> RpcResult<Option<String>>;
    #[method(name = "invalidateblock")]
    async fn invalidateblock(&self, blockhash: String) -> RpcResult<()>;
    #[method(name = "reconsiderblock")]
    async fn reconsiderblock(&self, blockhash: String) -> RpcResult<()>;
    #[method(name = "verifychain")]
    async fn verifychain(&self, checklevel: Option<u32>) -> RpcResult<VerifyReport>;
    #[method(name = "waitfornewblock")]
    async fn waitfornewblock(&self, timeout: Option<u64>) -> RpcResult<Value>;
    #[method(name = "waitforblock")]
    async fn waitforblock(&self, blockhash: String, timeout: Option<u64>) -> RpcResult<Value>;
    #[method(name = "waitforblockheight")]
    async fn waitforblockheight(&self, height: u64, timeout: Option<u64>) -> RpcResult<Value>;
}

/// Longest `waitfornewblock`, `waitforblock` and `waitforblockheight` wait (also for a
/// timeout of 0, bitcoind's "forever"): shorter than the 15-minute read timeout of
/// `noded rpc` and bitcoin-cli, so the answer arrives.
pub const MAX_WAIT_FOR_NEW_BLOCK: std::time::Duration = std::time::Duration::from_secs(600);

/// A transaction as JSON.
pub fn transaction_json(tx: &Transaction) -> Value {
    let txid = tx.txid();
    let size = encoding::encoded_len(tx);
    match tx {
        Transaction::Coinbase(cb) => json!({
            "txid": txid,
            "type": "coinbase",
            "size": size,
            "height": cb.height,
            "to": cb.to,
            "amount": cb.amount,
        }),
        Transaction::Transfer(t) => json!({
            "txid": txid,
            "type": "transfer",
            "size": size,
            "from": hex::encode(t.from),
            "sender": t.sender(),
            "to": t.to,
            "amount": t.amount,
            "fee": t.fee,
            "nonce": t.nonce,
            "signature": hex::encode(t.signature),
        }),
    }
}

impl ChainRpc {
    fn record(&self, hash: &Hash256) -> Result<IndexRecord, ErrorObjectOwned> {
        self.chain
            .reader()
            .index_record(hash)
            .map_err(chain_error)?
            .ok_or_else(|| error_object(code::INVALID_ADDRESS_OR_KEY, "Block not found"))
    }

    fn median_time(&self, record: &IndexRecord) -> Result<u64, ErrorObjectOwned> {
        let mut times = vec![record.header.time];
        let mut r = record.clone();
        while times.len() < MEDIAN_TIME_SPAN && r.height > 0 {
            r = self.record(&r.header.prev_hash)?;
            times.push(r.header.time);
        }
        Ok(crate::chain::validation::median_time(&times))
    }

    /// bitcoind's header fields; confirmations are -1 off the main chain.
    fn header_json(&self, hash: &Hash256, record: &IndexRecord) -> Result<Value, ErrorObjectOwned> {
        let reader = self.chain.reader();
        let tip = self.chain.tip();
        let main = reader.is_main(hash, record.height).map_err(chain_error)?;
        let confirmations: i64 = if main {
            (tip.height as i64 - record.height as i64) + 1
        } else {
            -1
        };
        let params = self.chain.params();
        let target = target_from_compact(record.header.bits)
            .map(hex::encode)
            .unwrap_or_default();
        let mut v = json!({
            "hash": hash,
            "confirmations": confirmations,
            "height": record.height,
            "version": record.header.version,
            "versionHex": format!("{:08x}", record.header.version),
            "merkleroot": record.header.merkle_root,
            "time": record.header.time,
            "mediantime": self.median_time(record)?,
            "nonce": record.header.nonce,
            "bits": format!("{:08x}", record.header.bits),
            "target": target,
            "difficulty": difficulty(params, record.header.bits),
            "chainwork": hex::encode(record.chainwork),
            "status": format!("{:?}", record.status).to_lowercase(),
        });
        if record.height > 0 {
            v["previousblockhash"] = json!(record.header.prev_hash);
        }
        if main {
            if let Some(next) = reader.block_hash(record.height + 1).map_err(chain_error)? {
                v["nextblockhash"] = json!(next);
            }
        }
        Ok(v)
    }

    fn block_json(
        &self,
        hash: &Hash256,
        block: &Block,
        verbosity: u8,
    ) -> Result<Value, ErrorObjectOwned> {
        let record = self.record(hash)?;
        let mut v = self.header_json(hash, &record)?;
        v["size"] = json!(block.encoded_size());
        v["nTx"] = json!(block.transactions.len());
        v["tx"] = if verbosity >= 2 {
            Value::Array(block.transactions.iter().map(transaction_json).collect())
        } else {
            Value::Array(
                block
                    .transactions
                    .iter()
                    .map(|tx| json!(tx.txid()))
                    .collect(),
            )
        };
        Ok(v)
    }

    fn lookup_transaction(&self, txid: &Hash256) -> Result<Value, ErrorObjectOwned> {
        let reader = self.chain.reader();
        if let Some(found) = reader.transaction(txid).map_err(chain_error)? {
            let tip = self.chain.tip();
            let mut v = transaction_json(&found.tx);
            v["hex"] = json!(hex::encode(encoding::encode(&found.tx)));
            v["blockhash"] = json!(found.block);
            v["blockheight"] = json!(found.height);
            v["blockindex"] = json!(found.index);
            v["confirmations"] = json!(tip.height.saturating_sub(found.height) + 1);
            if let Ok(Some(record)) = reader.index_record(&found.block) {
                v["blocktime"] = json!(record.header.time);
            }
            return Ok(v);
        }
        if let Some(tx) = self
            .mempool
            .as_ref()
            .and_then(|m| m.mempool_transaction(txid))
        {
            let mut v = transaction_json(&tx);
            v["hex"] = json!(hex::encode(encoding::encode(&tx)));
            v["confirmations"] = json!(0);
            return Ok(v);
        }
        let hint = if reader.has_tx_index() {
            ""
        } else {
            " (this node keeps no transaction index, so only mempool transactions are found)"
        };
        Err(error_object(
            code::INVALID_ADDRESS_OR_KEY,
            format!("No such mempool or blockchain transaction{hint}"),
        ))
    }
}

#[async_trait]
impl ChainApiServer for ChainRpc {
    async fn getblockchaininfo(&self) -> RpcResult<Value> {
        // One metadata call on the store's file: cheap enough to answer every time.
        let size_on_disk = self.chain.reader().size_on_disk();
        let snapshot = self.chain.tip_snapshot();
        let params = self.chain.params();
        let bits = snapshot.header.bits;
        let blocks = snapshot.tip.height;
        // The best header the network has checked, or the chain's own best if higher.
        let synced = self
            .network
            .as_ref()
            .map_or(0, |n| n.headers.load(Ordering::Relaxed));
        let headers = snapshot.tip.header_height.max(synced);
        let progress = if headers == 0 {
            1.0
        } else {
            blocks.min(headers) as f64 / headers as f64
        };
        Ok(json!({
            "chain": params.network.name(),
            "blocks": blocks,
            "headers": headers,
            "bestblockhash": snapshot.tip.hash,
            "bits": format!("{bits:08x}"),
            "target": target_from_compact(bits).map(hex::encode).unwrap_or_default(),
            "difficulty": difficulty(params, bits),
            "time": snapshot.header.time,
            "mediantime": snapshot.median_time_past,
            "verificationprogress": progress,
            "initialblockdownload": blocks < headers,
            "chainwork": hex::encode(snapshot.chainwork),
            "size_on_disk": size_on_disk,
            "pruned": false,
            "warnings": "",
        }))
    }

    fn getblockcount(&self) -> RpcResult<u64> {
        Ok(self.chain.tip().height)
    }

    fn getbestblockhash(&self) -> RpcResult<Hash256> {
        Ok(self.chain.tip().hash)
    }

    fn getblockhash(&self, height: u64) -> RpcResult<Hash256> {
        self.chain
            .reader()
            .block_hash(height)
            .map_err(chain_error)?
            .ok_or_else(|| error_object(code::INVALID_PARAMETER, "Block height out of range"))
    }

    fn getblock(&self, blockhash: String, verbosity: Option<Verbosity>) -> RpcResult<Value> {
        let hash = parse_hash(&blockhash, "blockhash")?;
        let reader = self.chain.reader();
        match verbosity.map_or(1, |v| v.0) {
            0 => {
                let bytes = reader
                    .block_bytes(&hash)
                    .map_err(chain_error)?
                    .ok_or_else(|| error_object(code::INVALID_ADDRESS_OR_KEY, "Block not found"))?;
                Ok(json!(hex::encode(bytes)))
            }
            v @ (1 | 2) => {
                let block = reader
                    .block(&hash)
                    .map_err(chain_error)?
                    .ok_or_else(|| error_object(code::INVALID_ADDRESS_OR_KEY, "Block not found"))?;
                self.block_json(&hash, &block, v)
            }
            other => Err(error_object(
                code::INVALID_PARAMETER,
                format!("verbosity must be 0, 1 or 2, not {other}"),
            )),
        }
    }

    fn getblockheader(&self, blockhash: String, verbose: Option<Verbosity>) -> RpcResult<Value> {
        let hash = parse_hash(&blockhash, "blockhash")?;
        let record = self.record(&hash)?;
        if verbose.is_none_or(Verbosity::is_verbose) {
            let mut v = self.header_json(&hash, &record)?;
            if let Some(count) = self
                .chain
                .reader()
                .block_tx_count(&hash)
                .map_err(chain_error)?
            {
                v["nTx"] = json!(count);
            }
            Ok(v)
        } else {
            Ok(json!(hex::encode(record.header.to_bytes())))
        }
    }

    async fn getchaintips(&self) -> RpcResult<Vec<ChainTipInfo>> {
        let chain = self.chain.clone();
        let mut tips = tokio::task::spawn_blocking(move || chain.reader().chain_tips())
            .await
            .map_err(|e| error_object(code::INTERNAL_ERROR, e.to_string()))?
            .map_err(chain_error)?;
        // Branches the network has the headers of and not yet the blocks.
        if let Some(net) = &self.net {
            let headers = net
                .call(NetCommand::HeaderTips)
                .await
                .map_err(|e| error_object(code::INTERNAL_ERROR, e.to_string()))?;
            for (hash, height, branchlen) in headers {
                tips.push(ChainTipInfo {
                    height,
                    hash,
                    branchlen,
                    status: "headers-only",
                });
            }
        }
        // As the chain orders its own: the active tip first, then by height (stable).
        tips.sort_by_key(|t| (t.status != "active", std::cmp::Reverse(t.height)));
        Ok(tips)
    }

    fn getdifficulty(&self) -> RpcResult<f64> {
        let snapshot = self.chain.tip_snapshot();
        Ok(difficulty(self.chain.params(), snapshot.header.bits))
    }

    fn getrawtransaction(&self, txid: String, verbose: Option<Verbosity>) -> RpcResult<Value> {
        let txid = parse_hash(&txid, "txid")?;
        let v = self.lookup_transaction(&txid)?;
        if verbose.is_some_and(Verbosity::is_verbose) {
            Ok(v)
        } else {
            Ok(v["hex"].clone())
        }
    }

    fn gettransaction(&self, txid: String) -> RpcResult<Value> {
        let txid = parse_hash(&txid, "txid")?;
        self.lookup_transaction(&txid)
    }

    fn getaccount(&self, address: String) -> RpcResult<Value> {
        let parsed: Address = address.parse().map_err(|_| {
            error_object(
                code::INVALID_ADDRESS_OR_KEY,
                format!("Invalid address '{address}': an address is 40 hex characters"),
            )
        })?;
        let account = self
            .chain
            .reader()
            .try_account(&parsed)
            .map_err(chain_error)?;
        let tip = self.chain.tip();
        Ok(json!({
            "address": parsed,
            "balance": account.balance,
            "nonce": account.nonce,
            "height": tip.height,
            "bestblockhash": tip.hash,
        }))
    }

    async fn submitblock(&self, hexdata: String) -> RpcResult<Option<String>> {
        let bytes = hex::decode(hexdata.trim()).map_err(|_| {
            error_object(code::DESERIALIZATION_ERROR, "Block decode failed: not hex")
        })?;
        let block: Block = encoding::decode_exact(&bytes).map_err(|e| {
            error_object(
                code::DESERIALIZATION_ERROR,
                format!("Block decode failed: {e}"),
            )
        })?;
        // Pushed to peers as soon as its signatures passed, before it is connected here: the
        // next hop validates while we connect.
        let net = self.net.clone();
        let checked = move |block: &Block| {
            if let Some(net) = net {
                net.block_checked(Arc::new(block.clone()));
            }
        };
        let submitted = self
            .chain
            .submit_block_then(block, crate::time::unix_secs(), checked)
            .await;
        match submitted {
            Ok(SubmitOutcome::Connected { .. }) => Ok(None),
            Ok(SubmitOutcome::Duplicate) => Ok(Some("duplicate".into())),
            Ok(SubmitOutcome::SideBranch { .. } | SubmitOutcome::Orphan) => {
                Ok(Some("inconclusive".into()))
            }
            Err(ChainError::InvalidBlock { error, .. }) => Ok(Some(error.reason().into())),
            Err(ChainError::KnownInvalid(_)) => Ok(Some("duplicate-invalid".into())),
            Err(e) => Err(chain_error(e)),
        }
    }

    async fn invalidateblock(&self, blockhash: String) -> RpcResult<()> {
        let hash = parse_hash(&blockhash, "blockhash")?;
        self.chain.invalidate_block(hash).await.map_err(chain_error)
    }

    async fn reconsiderblock(&self, blockhash: String) -> RpcResult<()> {
        let hash = parse_hash(&blockhash, "blockhash")?;
        self.chain.reconsider_block(hash).await.map_err(chain_error)
    }

    async fn verifychain(&self, checklevel: Option<u32>) -> RpcResult<VerifyReport> {
        self.chain
            .verify_chain_until(checklevel.unwrap_or(3), self.shutdown.clone())
            .await
            .map_err(chain_error)
    }

    async fn waitfornewblock(&self, timeout: Option<u64>) -> RpcResult<Value> {
        let start = self.chain.tip().hash;
        self.wait_for_tip(timeout, move |tip| tip.hash != start)
            .await
    }

    async fn waitforblock(&self, blockhash: String, timeout: Option<u64>) -> RpcResult<Value> {
        let hash = parse_hash(&blockhash, "blockhash")?;
        self.wait_for_tip(timeout, move |tip| tip.hash == hash)
            .await
    }

    async fn waitforblockheight(&self, height: u64, timeout: Option<u64>) -> RpcResult<Value> {
        self.wait_for_tip(timeout, move |tip| tip.height >= height)
            .await
    }
}

impl ChainRpc {
    /// The waits of `waitfornewblock`, `waitforblock` and `waitforblockheight`: until the
    /// active tip satisfies `done` (at once if it already does), the timeout in milliseconds
    /// passes (0 or none: the longest allowed), or the node shuts down; answers the tip then.
    async fn wait_for_tip(
        &self,
        timeout: Option<u64>,
        done: impl Fn(&crate::chain::ChainTip) -> bool,
    ) -> RpcResult<Value> {
        let limit = match timeout.unwrap_or(0) {
            0 => MAX_WAIT_FOR_NEW_BLOCK,
            ms => std::time::Duration::from_millis(ms).min(MAX_WAIT_FOR_NEW_BLOCK),
        };
        let mut tips = self.chain.tip_receiver();
        let reached = async {
            // Marked seen before it is read, so a tip published after this read wakes the
            // loop: no change can fall between the check and the wait.
            if done(&tips.borrow_and_update()) {
                return;
            }
            while tips.changed().await.is_ok() {
                if done(&tips.borrow_and_update()) {
                    return;
                }
            }
        };
        tokio::select! {
            _ = reached => {}
            _ = tokio::time::sleep(limit) => {}
            _ = self.shutdown.cancelled() => {}
        }
        let tip = self.chain.tip();
        Ok(json!({ "hash": tip.hash, "height": tip.height }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::{writer, Chain, ChainOptions};
    use crate::params::REGTEST;

    #[test]
    fn every_chain_method_is_in_the_help_table() {
        let chain = Chain::open_temporary(&REGTEST, ChainOptions::default()).unwrap();
        let (handle, _thread) = writer::spawn(chain);
        let module = chain_rpc_module(handle);
        let names: Vec<&str> = module.method_names().collect();
        assert_eq!(names.len(), 18);
        for name in names {
            assert!(
                crate::rpc::server::METHODS.iter().any(|m| m.name == name),
                "{name} missing from help"
            );
        }
    }
}
