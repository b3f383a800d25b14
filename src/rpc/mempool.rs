//! Mempool RPC methods: getmempoolinfo, getrawmempool, getmempoolentry, sendrawtransaction.
//!
//! Amounts are integers in base units (1 coin = 100,000,000); fee rates are base units per
//! 1,000 encoded bytes. A refused transaction is JSON-RPC error -26 whose message starts with
//! the mempool's stable reason code and whose `data.reason` is that code.

use crate::chain::ChainHandle;
use crate::mempool::{MempoolEntry, MempoolError, SharedMempool};
use crate::rpc::chain::{transaction_json, MempoolTxLookup};
use crate::rpc::error::{code, error_object};
use crate::rpc::help::{opt, req, MethodHelp};
use crate::rpc::params::Verbosity;
use crate::types::{Hash256, Transaction};
use crate::wallet::tx_from_hex;
use jsonrpsee::core::RpcResult;
use jsonrpsee::proc_macros::rpc;
use jsonrpsee::types::ErrorObjectOwned;
use jsonrpsee::RpcModule;
use serde_json::{json, Value};

/// Most txids `getrawmempool` lists (keeps a response well under the server's size limit).
pub const MAX_RAWMEMPOOL: usize = 100_000;
/// Most entries `getrawmempool true` describes.
pub const MAX_RAWMEMPOOL_VERBOSE: usize = 20_000;

/// The JSON-RPC error for a refusal: -26, the reason code first in the message and in data.
pub fn rejection(e: &MempoolError) -> ErrorObjectOwned {
    ErrorObjectOwned::owned(
        code::VERIFY_REJECTED,
        e.to_string(),
        Some(json!({ "reason": e.code() })),
    )
}

pub(crate) fn parse_txid(text: &str) -> Result<Hash256, ErrorObjectOwned> {
    text.parse().map_err(|_| {
        error_object(
            code::INVALID_PARAMETER,
            format!("txid must be 64 hex characters, not '{text}'"),
        )
    })
}

/// Every mempool method's help.
pub const MEMPOOL_METHODS: &[MethodHelp] = &[
    MethodHelp {
        name: "getmempoolinfo",
        args: &[],
        about: "Transactions held, those waiting on a nonce gap (orphans) and their bytes, \
                limits, fee floors (units/kB).",
        result: "{size, future, orphans, orphan_bytes, bytes, maxmempool, mempoolminfee, \
                 minrelaytxfee, expiry_secs, loaded}",
        example: "",
    },
    MethodHelp {
        name: "getmempoolentry",
        args: &[req("txid", "string (hex)", "A transaction in the mempool.")],
        about: "One mempool transaction: sender, nonce, amount, fee, size, fee rate, entry time.",
        result: "{txid, type, size, sender, to, amount, fee, nonce, feerate, time, future}",
        example: "<txid>",
    },
    MethodHelp {
        name: "getrawmempool",
        args: &[opt(
            "verbose",
            "bool or integer",
            "false",
            "false (or 0) txids, true (or 1) txid -> entry.",
        )],
        about: "Txids in the mempool, best fee rate first; verbose: txid -> entry.",
        result: "[txid], or {txid: entry}",
        example: "true",
    },
    MethodHelp {
        name: "sendrawtransaction",
        args: &[req(
            "hexstring",
            "string (hex)",
            "A signed transaction, e.g. from noded signtx.",
        )],
        about: "Submits a hex-encoded signed transaction; returns its txid or a -26 reason code.",
        result: "string (txid)",
        example: "<hex>",
    },
];

#[rpc(server)]
pub trait MempoolApi {
    #[method(name = "getmempoolinfo")]
    fn getmempoolinfo(&self) -> RpcResult<Value>;
    #[method(name = "getrawmempool", blocking)]
    fn getrawmempool(&self, verbose: Option<Verbosity>) -> RpcResult<Value>;
    #[method(name = "getmempoolentry")]
    fn getmempoolentry(&self, txid: String) -> RpcResult<Value>;
    #[method(name = "sendrawtransaction", blocking)]
    fn sendrawtransaction(&self, hexstring: String) -> RpcResult<Hash256>;
}

pub struct MempoolRpc {
    pool: SharedMempool,
    chain: ChainHandle,
}

/// The mempool methods as a module to merge into the server's.
pub fn mempool_rpc_module(pool: SharedMempool, chain: ChainHandle) -> RpcModule<MempoolRpc> {
    MempoolRpc { pool, chain }.into_rpc()
}

/// A mempool entry as JSON: the transaction's fields plus the pool's.
pub fn entry_json(entry: &MempoolEntry, future: bool) -> Value {
    let mut v = transaction_json(&entry.transaction());
    let obj = v.as_object_mut().expect("transaction_json is an object");
    obj.insert("feerate".into(), json!(entry.fee_rate().per_kb()));
    obj.insert("time".into(), json!(entry.time));
    obj.insert("future".into(), json!(future));
    v
}

/// The method's name, for the middleware that admits a batch's calls together (`txbatch`).
pub const SENDRAWTRANSACTION: &str = "sendrawtransaction";

/// Submits `tx` to `pool`, judging it against the chain tip; maps refusals to JSON-RPC.
pub fn submit(
    pool: &SharedMempool,
    chain: &ChainHandle,
    tx: Transaction,
) -> Result<Hash256, ErrorObjectOwned> {
    let txid = tx.txid();
    let reader = chain.reader();
    submit_verdict(
        txid,
        pool.submit(tx, reader, crate::time::unix_secs()),
        reader,
    )
}

/// The answer to a submission of `txid` that the pool judged `verdict`: its txid, or the
/// refusal as JSON-RPC (an already confirmed transaction named as such, from `chain`).
pub fn submit_verdict(
    txid: Hash256,
    verdict: Result<crate::mempool::Accepted, MempoolError>,
    reader: &crate::chain::ChainReader,
) -> Result<Hash256, ErrorObjectOwned> {
    match verdict {
        Ok(accepted) => Ok(accepted.txid),
        Err(e @ MempoolError::NonceTooLow { .. }) => {
            // Name the common case precisely: this very transaction is already confirmed.
            if matches!(reader.tx_location(&txid), Ok(Some(_))) {
                Err(ErrorObjectOwned::owned(
                    code::VERIFY_ALREADY_IN_CHAIN,
                    format!("already-in-chain: transaction {txid} is already in the chain"),
                    Some(json!({ "reason": "already-in-chain" })),
                ))
            } else {
                Err(rejection(&e))
            }
        }
        Err(e) => Err(rejection(&e)),
    }
}

/// A transaction from `sendrawtransaction`'s hex argument, or the method's decode error.
pub fn decode_tx_hex(hex: &str) -> Result<Transaction, ErrorObjectOwned> {
    tx_from_hex(hex).map_err(|e| {
        error_object(
            code::DESERIALIZATION_ERROR,
            format!("TX decode failed: {e}"),
        )
    })
}

impl MempoolApiServer for MempoolRpc {
    fn getmempoolinfo(&self) -> RpcResult<Value> {
        let info = self.pool.lock().info();
        let mut v = serde_json::to_value(info).expect("plain struct");
        v["loaded"] = json!(true);
        Ok(v)
    }

    fn getrawmempool(&self, verbose: Option<Verbosity>) -> RpcResult<Value> {
        let pool = self.pool.lock();
        let mut entries: Vec<&MempoolEntry> = pool.entries().collect();
        entries.sort_by(|a, b| {
            b.fee_rate()
                .cmp(&a.fee_rate())
                .then(a.sender.cmp(&b.sender))
                .then(a.nonce().cmp(&b.nonce()))
        });
        if verbose.is_some_and(Verbosity::is_verbose) {
            let map: serde_json::Map<String, Value> = entries
                .iter()
                .take(MAX_RAWMEMPOOL_VERBOSE)
                .map(|e| (e.txid.to_string(), entry_json(e, pool.is_future(&e.txid))))
                .collect();
            Ok(Value::Object(map))
        } else {
            Ok(json!(entries
                .iter()
                .take(MAX_RAWMEMPOOL)
                .map(|e| e.txid)
                .collect::<Vec<_>>()))
        }
    }

    fn getmempoolentry(&self, txid: String) -> RpcResult<Value> {
        let txid = parse_txid(&txid)?;
        let pool = self.pool.lock();
        let entry = pool.get(&txid).ok_or_else(|| {
            error_object(code::INVALID_ADDRESS_OR_KEY, "Transaction not in mempool")
        })?;
        Ok(entry_json(entry, pool.is_future(&txid)))
    }

    fn sendrawtransaction(&self, hexstring: String) -> RpcResult<Hash256> {
        submit(&self.pool, &self.chain, decode_tx_hex(&hexstring)?)
    }
}

impl MempoolTxLookup for SharedMempool {
    fn mempool_transaction(&self, txid: &Hash256) -> Option<Transaction> {
        self.lock().get(txid).map(MempoolEntry::transaction)
    }
}
