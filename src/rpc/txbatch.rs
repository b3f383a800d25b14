//! The RPC middleware that admits a batch's `sendrawtransaction` calls together: decoded,
//! then checked as one mempool batch (`SharedMempool::submit_batch`: the cheap checks under
//! one lock, the signatures as one ed25519 batch over the verification threads, admission in
//! order; a thousand at a time), all on one blocking thread, instead of a blocking task, a
//! lock round and a lone signature check per call.
//!
//! Owns only that grouping: each call gets the answer the method itself would give (the same
//! txid, the same error codes and messages, `submit`'s mapping), in batch order, and every
//! other entry of the batch goes to the inner service unchanged. A call whose parameters are
//! not one plain string also goes to the inner service, which answers it as before.

use super::mempool::{decode_tx_hex, submit_verdict, SENDRAWTRANSACTION};
use crate::chain::ChainHandle;
use crate::mempool::SharedMempool;
use crate::types::{Hash256, Transaction};
use jsonrpsee::core::middleware::{Batch, BatchEntry, Notification, RpcServiceT};
use jsonrpsee::core::server::BatchResponseBuilder;
use jsonrpsee::types::{ErrorObjectOwned, Request};
use jsonrpsee::{MethodResponse, ResponsePayload};
use std::future::Future;

/// A batch with fewer transactions than this is left to the method: one call gains nothing.
const MIN_GROUPED: usize = 2;
/// Transactions checked per mempool batch (one lock round each): a batch of 100,000 calls
/// (`--rpcmaxbatch` allows it) does not hold the pool's lock against relay for long.
const CHECK_CHUNK: usize = 1_000;

/// Wraps the RPC service `inner` of one connection.
#[derive(Clone)]
pub struct TxBatch<S> {
    inner: S,
    intake: TxIntake,
}

/// What the middleware admits into: the node's pool, judged against its chain.
#[derive(Clone)]
pub struct TxIntake {
    pub pool: SharedMempool,
    pub chain: ChainHandle,
    /// The largest response the server sends (`ServerConfig::max_response_body_size`).
    pub max_response: usize,
}

impl<S> TxBatch<S> {
    pub fn new(inner: S, intake: TxIntake) -> TxBatch<S> {
        TxBatch { inner, intake }
    }
}

/// The one hex string a `sendrawtransaction` call carries, by position or by name; `None`
/// for anything else (left to the method, which explains what is wrong).
fn hex_param(request: &Request<'_>) -> Option<String> {
    let params = request.params();
    if params.is_object() {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Named {
            hexstring: String,
        }
        return params.parse::<Named>().ok().map(|n| n.hexstring);
    }
    params.parse::<(String,)>().ok().map(|(hex,)| hex)
}

/// The answers to `sendrawtransaction` of each of `hexes`, in order, as the method would
/// give them one after another: decoded, then checked in mempool batches of `CHECK_CHUNK`.
fn admit(
    pool: &SharedMempool,
    chain: &ChainHandle,
    hexes: &[String],
) -> Vec<Result<Hash256, ErrorObjectOwned>> {
    let reader = chain.reader();
    let now = crate::time::unix_secs();
    let threads = crate::chain::signatures::default_threads();
    // A decoding error is the answer already; the rest are filled in by the checks, in order.
    let mut answers: Vec<Option<Result<Hash256, ErrorObjectOwned>>> = Vec::new();
    let mut txs = Vec::with_capacity(hexes.len());
    for hex in hexes {
        match decode_tx_hex(hex) {
            Ok(tx) => {
                txs.push(tx);
                answers.push(None);
            }
            Err(e) => answers.push(Some(Err(e))),
        }
    }
    let mut verdicts = Vec::with_capacity(txs.len());
    let mut txs = txs.into_iter().peekable();
    while txs.peek().is_some() {
        let chunk: Vec<Transaction> = txs.by_ref().take(CHECK_CHUNK).collect();
        verdicts.extend(
            pool.submit_batch(chunk, reader, now, threads)
                .into_iter()
                .map(|(txid, verdict)| submit_verdict(txid, verdict, reader)),
        );
    }
    let mut verdicts = verdicts.into_iter();
    answers
        .into_iter()
        .map(|answer| {
            answer.unwrap_or_else(|| verdicts.next().expect("a verdict per decoded transaction"))
        })
        .collect()
}

impl<S> RpcServiceT for TxBatch<S>
where
    S: RpcServiceT<
            MethodResponse = MethodResponse,
            BatchResponse = MethodResponse,
            NotificationResponse = MethodResponse,
        > + Send
        + Sync
        + Clone
        + 'static,
{
    type MethodResponse = S::MethodResponse;
    type NotificationResponse = S::NotificationResponse;
    type BatchResponse = S::BatchResponse;

    fn call<'a>(
        &self,
        request: Request<'a>,
    ) -> impl Future<Output = Self::MethodResponse> + Send + 'a {
        self.inner.call(request)
    }

    fn batch<'a>(&self, batch: Batch<'a>) -> impl Future<Output = Self::BatchResponse> + Send + 'a {
        let inner = self.inner.clone();
        let intake = self.intake.clone();
        async move {
            // Only the parameters are read here: decoding and checking run off this task.
            let mut hexes: Vec<String> = Vec::new();
            let grouped: Vec<Option<usize>> = batch
                .iter()
                .map(|entry| match entry {
                    Ok(BatchEntry::Call(req)) if req.method_name() == SENDRAWTRANSACTION => {
                        hexes.push(hex_param(req)?);
                        Some(hexes.len() - 1)
                    }
                    _ => None,
                })
                .collect();
            if hexes.len() < MIN_GROUPED {
                return inner.batch(batch).await;
            }
            let (pool, chain) = (intake.pool.clone(), intake.chain.clone());
            let checked = tokio::task::spawn_blocking(move || admit(&pool, &chain, &hexes)).await;
            let Ok(answers) = checked else {
                // The check panicked: nothing was answered, so the method answers each.
                return inner.batch(batch).await;
            };
            let mut response = BatchResponseBuilder::new_with_limit(intake.max_response);
            for (entry, grouped) in batch.into_iter().zip(grouped) {
                let answer = match (entry, grouped) {
                    (Ok(BatchEntry::Call(req)), Some(i)) => {
                        let id = req.id();
                        match answers[i].clone() {
                            Ok(txid) => MethodResponse::response(
                                id,
                                ResponsePayload::success(txid),
                                intake.max_response,
                            ),
                            Err(e) => MethodResponse::error(id, e),
                        }
                    }
                    (Ok(BatchEntry::Call(req)), None) => inner.call(req).await,
                    (Ok(BatchEntry::Notification(n)), _) => {
                        inner.notification(n).await;
                        continue;
                    }
                    (Err(err), _) => {
                        let (err, id) = err.into_parts();
                        MethodResponse::error(id, err)
                    }
                };
                if let Err(too_big) = response.append(answer) {
                    return too_big;
                }
            }
            MethodResponse::from_batch(response.finish())
        }
    }

    fn notification<'a>(
        &self,
        n: Notification<'a>,
    ) -> impl Future<Output = Self::NotificationResponse> + Send + 'a {
        self.inner.notification(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonrpsee::types::Id;
    use serde_json::value::RawValue;

    fn param_of(params: Option<&str>) -> Option<String> {
        let raw = params.map(|p| RawValue::from_string(p.to_string()).unwrap());
        let request = Request::owned(SENDRAWTRANSACTION.to_string(), raw, Id::Number(1));
        hex_param(&request)
    }

    #[test]
    fn only_one_plain_string_is_taken_from_a_call_the_rest_is_left_to_the_method() {
        assert_eq!(param_of(Some(r#"["ab01"]"#)), Some("ab01".to_string()));
        assert_eq!(
            param_of(Some(r#"{"hexstring": "ab01"}"#)),
            Some("ab01".to_string())
        );
        for left in [
            None,
            Some("[]"),
            Some("[1]"),
            Some(r#"["ab", "cd"]"#),
            Some(r#"{"hex": "ab"}"#),
            Some(r#"{"hexstring": "ab", "more": 1}"#),
        ] {
            assert_eq!(param_of(left), None, "{left:?}");
        }
    }
}
