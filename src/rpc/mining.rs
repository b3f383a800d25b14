//! Mining RPC methods: getblocktemplate, getmininginfo, generatetoaddress, generate.
//! (`submitblock` belongs to the chain methods.)
//!
//! Amounts are integers in base units. `generate*` mine on the node itself, one block after
//! another, each connected before the next is built; on regtest that is instant.

use super::error::{code, error_object};
use super::help::{opt, req, MethodHelp};
use crate::chain::work::difficulty;
use crate::chain::ChainHandle;
use crate::mempool::SharedMempool;
use crate::mining::{template_time, Miner, MiningError, DEFAULT_MAX_TRIES, MAX_GENERATE};
use crate::types::{Address, Hash256, Transaction};
use crate::wallet::WalletService;
use jsonrpsee::core::{async_trait, RpcResult};
use jsonrpsee::proc_macros::rpc;
use jsonrpsee::types::ErrorObjectOwned;
use jsonrpsee::RpcModule;
use serde_json::{json, Value};
use std::sync::atomic::Ordering;
use std::sync::Arc;

// The help below states the limit in words.
const _: () = assert!(MAX_GENERATE == 10_000);

/// Every mining method's help.
pub const MINING_METHODS: &[MethodHelp] = &[
    MethodHelp {
        name: "generate",
        args: &[
            req("nblocks", "integer", "How many blocks to mine, at most 10000 a call."),
            opt("maxtries", "integer", "100000000", "Nonces to try per block before giving up."),
        ],
        about: "Mines blocks to the wallet's address now; returns their hashes.",
        result: "[blockhash]",
        example: "1",
    },
    MethodHelp {
        name: "generatetoaddress",
        args: &[
            req("nblocks", "integer", "How many blocks to mine, at most 10000 a call."),
            req("address", "string (40 hex)", "Who the coinbases pay."),
            opt("maxtries", "integer", "100000000", "Nonces to try per block before giving up."),
        ],
        about: "Mines blocks paying an address now; returns their hashes.",
        result: "[blockhash]",
        example: "1 \"$(noded rpc getnewaddress)\"",
    },
    MethodHelp {
        name: "getblocktemplate",
        args: &[opt("address", "string (40 hex)", "", "Build the whole block paying this address.")],
        about: "The next block to mine: header fields, target, fee-ordered transactions, coinbase value; with an address, the whole block hex (nonce 0).",
        result: "{version, previousblockhash, height, bits, target, curtime, mintime, coinbasevalue, transactions, ..., block}",
        example: "\"$(noded rpc getaddress)\"",
    },
    MethodHelp {
        name: "getmininginfo",
        args: &[],
        about: "Height, difficulty, template size, pool size, whether --mine runs, hash rate.",
        result: "{blocks, bestblockhash, difficulty, bits, currentblocktx, pooledtx, chain, generating, mineraddress, threads, hashespersec, blocksmined}",
        example: "",
    },
];

#[rpc(server)]
pub trait MiningApi {
    #[method(name = "getblocktemplate", blocking)]
    fn getblocktemplate(&self, address: Option<String>) -> RpcResult<Value>;
    #[method(name = "getmininginfo")]
    fn getmininginfo(&self) -> RpcResult<Value>;
    #[method(name = "generatetoaddress")]
    async fn generatetoaddress(
        &self,
        nblocks: u64,
        address: String,
        maxtries: Option<u64>,
    ) -> RpcResult<Vec<Hash256>>;
    #[method(name = "generate")]
    async fn generate(&self, nblocks: u64, maxtries: Option<u64>) -> RpcResult<Vec<Hash256>>;
}

pub struct MiningRpc {
    chain: ChainHandle,
    pool: SharedMempool,
    miner: Arc<Miner>,
    wallet: Arc<WalletService>,
    /// The continuous miner's payout address, when `--mine` runs.
    mine_address: Option<Address>,
}

/// The mining methods as a module to merge into the server's.
pub fn mining_rpc_module(
    chain: ChainHandle,
    pool: SharedMempool,
    miner: Arc<Miner>,
    wallet: Arc<WalletService>,
    mine_address: Option<Address>,
) -> RpcModule<MiningRpc> {
    MiningRpc {
        chain,
        pool,
        miner,
        wallet,
        mine_address,
    }
    .into_rpc()
}

pub(crate) fn parse_address(text: &str) -> Result<Address, ErrorObjectOwned> {
    text.parse().map_err(|_| {
        error_object(
            code::INVALID_ADDRESS_OR_KEY,
            format!("Invalid address '{text}': an address is 40 hex characters"),
        )
    })
}

fn mining_error(e: MiningError) -> ErrorObjectOwned {
    match e {
        MiningError::ShuttingDown => error_object(code::MISC_ERROR, e.to_string()),
        other => error_object(code::INTERNAL_ERROR, other.to_string()),
    }
}

impl MiningRpc {
    async fn generate_to(
        &self,
        nblocks: u64,
        address: Address,
        maxtries: Option<u64>,
    ) -> RpcResult<Vec<Hash256>> {
        if nblocks > MAX_GENERATE {
            return Err(error_object(
                code::INVALID_PARAMETER,
                format!("nblocks {nblocks} is more than {MAX_GENERATE} per call"),
            ));
        }
        self.miner
            .generate(nblocks, address, maxtries.unwrap_or(DEFAULT_MAX_TRIES))
            .await
            .map_err(mining_error)
    }
}

#[async_trait]
impl MiningApiServer for MiningRpc {
    fn getblocktemplate(&self, address: Option<String>) -> RpcResult<Value> {
        let miner = address.as_deref().map(parse_address).transpose()?;
        // The coinbase pays `miner`, or nobody in particular when the caller builds its own.
        let template = self.miner.template(miner.unwrap_or(Address([0; 20])));
        let snapshot = self.chain.tip_snapshot();
        let header = template.block.header;
        let transactions: Vec<Value> = template
            .block
            .transactions
            .iter()
            .skip(1)
            .map(|tx| {
                json!({
                    "data": crate::wallet::tx_to_hex(tx),
                    "txid": tx.txid(),
                    "fee": tx.fee(),
                })
            })
            .collect();
        let mut v = json!({
            "version": header.version,
            "previousblockhash": header.prev_hash,
            "height": template.height,
            "bits": format!("{:08x}", header.bits),
            "target": hex::encode(template.target),
            "curtime": header.time,
            "mintime": template_time(0, snapshot.median_time_past),
            "coinbasevalue": template.subsidy.checked_add(template.fees),
            "subsidy": template.subsidy,
            "fees": template.fees,
            "transactions": transactions,
            "sizelimit": crate::types::block::MAX_BLOCK_SIZE,
        });
        if miner.is_some() {
            let coinbase: &Transaction = &template.block.transactions[0];
            v["coinbasetxn"] = json!({ "data": crate::wallet::tx_to_hex(coinbase) });
            v["merkleroot"] = json!(header.merkle_root);
            // The whole block with nonce 0: set bytes 80..88 (the header's nonce, little
            // endian) to a winning nonce and pass the hex to submitblock.
            v["block"] = json!(hex::encode(crate::encoding::encode(&template.block)));
        }
        Ok(v)
    }

    fn getmininginfo(&self) -> RpcResult<Value> {
        let snapshot = self.chain.tip_snapshot();
        let stats = self.miner.stats();
        Ok(json!({
            "blocks": snapshot.tip.height,
            "bestblockhash": snapshot.tip.hash,
            "difficulty": difficulty(self.chain.params(), snapshot.next_bits),
            "bits": format!("{:08x}", snapshot.next_bits),
            "currentblocktx": stats.last_template_txs.load(Ordering::Relaxed),
            "pooledtx": self.pool.lock().len(),
            "chain": self.chain.params().network.name(),
            "generating": stats.generating.load(Ordering::Relaxed),
            "mineraddress": self.mine_address,
            "threads": self.miner.threads(),
            "hashespersec": stats.hashes_per_sec.load(Ordering::Relaxed),
            "blocksmined": stats.blocks.load(Ordering::Relaxed),
        }))
    }

    async fn generatetoaddress(
        &self,
        nblocks: u64,
        address: String,
        maxtries: Option<u64>,
    ) -> RpcResult<Vec<Hash256>> {
        let address = parse_address(&address)?;
        self.generate_to(nblocks, address, maxtries).await
    }

    async fn generate(&self, nblocks: u64, maxtries: Option<u64>) -> RpcResult<Vec<Hash256>> {
        let address = self
            .wallet
            .with(|w| Ok(w.address()))
            .map_err(|e| error_object(code::WALLET_ERROR, e.to_string()))?;
        self.generate_to(nblocks, address, maxtries).await
    }
}
