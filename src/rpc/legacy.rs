//! JSON-RPC 1.0-style requests, as bitcoin-cli, python-bitcoinrpc and most bitcoind examples
//! send them (`"jsonrpc":"1.0"` or no `jsonrpc` field, `id` possibly absent): an HTTP layer
//! rewrites such a request to 2.0 for jsonrpsee, which refuses anything else, and the answer
//! back to bitcoind's shape, `{"result", "error", "id"}` with both result and error present.
//!
//! Runs after authentication, on POST bodies only, bounded by `MAX_REQUEST_BODY` like the
//! server itself. A 2.0 body is looked at but passed on unchanged. In a batch with any 1.0
//! request, every answer takes the 1.0 shape.

use super::server::MAX_REQUEST_BODY;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use jsonrpsee::server::{HttpBody, HttpRequest, HttpResponse};
use serde_json::value::RawValue;
use serde_json::Value;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// Largest answer rewritten to the 1.0 shape: above jsonrpsee's own response limit (10 MB by
/// default), so a legitimate answer is never cut; bounded all the same.
pub const MAX_LEGACY_RESPONSE: usize = 64 * 1024 * 1024;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Only the `jsonrpc` member of a request, to tell 1.0 from 2.0 without building the rest.
#[derive(serde::Deserialize)]
struct Probe<'a> {
    #[serde(borrow, default)]
    jsonrpc: Option<&'a RawValue>,
}

fn is_v2(probe: &Probe) -> bool {
    probe.jsonrpc.is_some_and(|v| v.get() == "\"2.0\"")
}

/// The body rewritten to JSON-RPC 2.0 when it holds a 1.0-style request; `None` when it is
/// 2.0 throughout, or not JSON (jsonrpsee then answers as it would).
pub fn upgrade_request(body: &[u8]) -> Option<Vec<u8>> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace())?;
    let legacy = match first {
        b'{' => !is_v2(&serde_json::from_slice::<Probe>(body).ok()?),
        b'[' => !serde_json::from_slice::<Vec<Probe>>(body)
            .ok()?
            .iter()
            .all(is_v2),
        _ => false,
    };
    if !legacy {
        return None;
    }
    let mut value: Value = serde_json::from_slice(body).ok()?;
    let upgrade = |v: &mut Value| {
        if let Some(obj) = v.as_object_mut() {
            obj.insert("jsonrpc".into(), Value::from("2.0"));
            // bitcoind answers a request without an id, with id null; jsonrpsee would take it
            // for a notification and answer nothing.
            obj.entry("id").or_insert(Value::Null);
        }
    };
    match &mut value {
        Value::Array(items) => items.iter_mut().for_each(upgrade),
        single => upgrade(single),
    }
    serde_json::to_vec(&value).ok()
}

/// A 2.0 answer (or batch of answers) in bitcoind's 1.0 shape.
pub fn downgrade_response(body: &[u8]) -> Option<Vec<u8>> {
    let mut value: Value = serde_json::from_slice(body).ok()?;
    let downgrade = |v: &mut Value| {
        if let Some(obj) = v.as_object_mut() {
            obj.remove("jsonrpc");
            if obj.contains_key("error") {
                obj.insert("result".into(), Value::Null);
            } else {
                obj.insert("error".into(), Value::Null);
            }
            obj.entry("id").or_insert(Value::Null);
        }
    };
    match &mut value {
        Value::Array(items) => items.iter_mut().for_each(downgrade),
        single => downgrade(single),
    }
    serde_json::to_vec(&value).ok()
}

/// The HTTP layer (see the module comment).
#[derive(Clone, Copy, Default)]
pub struct LegacyLayer;

impl<S> tower::Layer<S> for LegacyLayer {
    type Service = Legacy<S>;

    fn layer(&self, inner: S) -> Legacy<S> {
        Legacy { inner }
    }
}

#[derive(Clone)]
pub struct Legacy<S> {
    inner: S,
}

fn with_body(mut parts: http::request::Parts, body: Vec<u8>) -> HttpRequest<HttpBody> {
    parts.headers.insert(
        http::header::CONTENT_LENGTH,
        http::HeaderValue::from(body.len()),
    );
    HttpRequest::from_parts(parts, HttpBody::new(Full::new(Bytes::from(body))))
}

impl<S, B> tower::Service<HttpRequest<B>> for Legacy<S>
where
    S: tower::Service<HttpRequest<HttpBody>, Response = HttpResponse, Error = BoxError>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = HttpResponse;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: HttpRequest<B>) -> Self::Future {
        // The clone that was polled ready serves this request (tower's documented pattern).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        if request.method() != http::Method::POST {
            return Box::pin(inner.call(request.map(HttpBody::new)));
        }
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let body = match Limited::new(body, MAX_REQUEST_BODY as usize)
                .collect()
                .await
            {
                Ok(collected) => collected.to_bytes(),
                Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                    return Ok(jsonrpsee::server::http::response::too_large(
                        MAX_REQUEST_BODY,
                    ))
                }
                Err(e) => return Err(e),
            };
            let Some(upgraded) = upgrade_request(&body) else {
                return inner.call(with_body(parts, body.to_vec())).await;
            };
            let response = inner.call(with_body(parts, upgraded)).await?;
            let (mut parts, body) = response.into_parts();
            let body = Limited::new(body, MAX_LEGACY_RESPONSE)
                .collect()
                .await?
                .to_bytes();
            let body = downgrade_response(&body).unwrap_or_else(|| body.to_vec());
            parts.headers.insert(
                http::header::CONTENT_LENGTH,
                http::HeaderValue::from(body.len()),
            );
            Ok(HttpResponse::from_parts(
                parts,
                HttpBody::new(Full::new(Bytes::from(body))),
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn up(v: Value) -> Option<Value> {
        upgrade_request(v.to_string().as_bytes()).map(|b| serde_json::from_slice(&b).unwrap())
    }

    #[test]
    fn only_one_point_zero_requests_are_rewritten() {
        assert_eq!(up(json!({"jsonrpc":"2.0","id":1,"method":"getinfo"})), None);
        assert_eq!(
            up(json!({"jsonrpc":"1.0","id":"curl","method":"getinfo","params":[]})),
            Some(json!({"jsonrpc":"2.0","id":"curl","method":"getinfo","params":[]}))
        );
        assert_eq!(
            up(json!({"method":"getinfo"})),
            Some(json!({"jsonrpc":"2.0","id":null,"method":"getinfo"}))
        );
        let batch = up(json!([{"jsonrpc":"2.0","id":1,"method":"a"},{"id":2,"method":"b"}]));
        assert_eq!(batch.unwrap()[1]["jsonrpc"], "2.0");
        assert_eq!(upgrade_request(b"not json"), None);
    }

    #[test]
    fn answers_carry_both_result_and_error() {
        let down = |v: Value| -> Value {
            serde_json::from_slice(&downgrade_response(v.to_string().as_bytes()).unwrap()).unwrap()
        };
        assert_eq!(
            down(json!({"jsonrpc":"2.0","id":1,"result":5})),
            json!({"result":5,"error":null,"id":1})
        );
        assert_eq!(
            down(json!({"jsonrpc":"2.0","id":null,"error":{"code":-1,"message":"x"}})),
            json!({"result":null,"error":{"code":-1,"message":"x"},"id":null})
        );
    }
}
