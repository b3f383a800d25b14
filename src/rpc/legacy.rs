//! JSON-RPC 1.0-style requests, as bitcoin-cli, python-bitcoinrpc and most bitcoind examples
//! send them (`"jsonrpc":"1.0"` or no `jsonrpc` field, `id` possibly absent): an HTTP layer
//! rewrites such a request to 2.0 for jsonrpsee, which refuses anything else, and the answer
//! back to bitcoind's shape, `{"result", "error", "id"}` with both result and error present.
//!
//! Runs after authentication, on POST bodies only, bounded by `MAX_REQUEST_BODY` (the server
//! gets a little more, for what the upgrade adds). A 2.0 body is looked at but passed on
//! unchanged. In a batch with any 1.0 request, every answer takes the 1.0 shape.
//!
//! Cost is linear in the body, with no tree of a request or an answer: requests and answers
//! are rewritten member by member, values copied raw, and a batch longer than the server
//! takes is counted only up to the first request too many, then left to jsonrpsee to refuse.

use super::server::MAX_REQUEST_BODY;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use jsonrpsee::server::{HttpBody, HttpRequest, HttpResponse};
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// Largest answer rewritten to the 1.0 shape: above jsonrpsee's own response limit (10 MB by
/// default), so a legitimate answer is never cut; bounded all the same.
pub const MAX_LEGACY_RESPONSE: usize = 64 * 1024 * 1024;

/// Most bytes the upgrade adds to one request: `"jsonrpc":"2.0",` (16) and `,"id":null` (10);
/// every other member is copied as it came, or re-escaped no longer.
pub const UPGRADE_GROWTH_PER_REQUEST: u32 = 32;

/// The body limit to give jsonrpsee when batches may hold `max_batch` requests: this layer
/// refuses a body over `MAX_REQUEST_BODY` before it looks at it, and an upgraded one may have
/// grown by `UPGRADE_GROWTH_PER_REQUEST` per request, which must not turn it into a 413.
pub fn server_body_limit(max_batch: u32) -> u32 {
    MAX_REQUEST_BODY.saturating_add(max_batch.max(1).saturating_mul(UPGRADE_GROWTH_PER_REQUEST))
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Only the `jsonrpc` member of a request, to tell 1.0 from 2.0 without building the rest
/// (the other members are skipped, not stored).
#[derive(Deserialize)]
struct Version<'a> {
    #[serde(borrow, default)]
    jsonrpc: Option<&'a RawValue>,
}

impl Version<'_> {
    fn is_v2(&self) -> bool {
        self.jsonrpc.is_some_and(|v| v.get() == "\"2.0\"")
    }
}

/// What `probe` found in a request body.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Probed {
    /// Some request looked at is 1.0-style (no `"jsonrpc":"2.0"`).
    pub legacy: bool,
    /// Requests looked at: 1 for a single one; for a batch, at most `max_batch + 1`.
    pub requests: usize,
    /// A batch of more than `max_batch` requests, looked at no further.
    pub too_long: bool,
}

/// Counts a batch's requests and notes a 1.0 one, stopping (with an error, which ends the
/// parse there) at the first request past `max`: a batch of millions costs no more than one
/// at the limit.
struct BatchProbe<'s> {
    max: usize,
    found: &'s mut Probed,
}

impl<'de> Visitor<'de> for BatchProbe<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a batch of requests")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(request) = seq.next_element::<Version<'de>>()? {
            self.found.requests += 1;
            self.found.legacy |= !request.is_v2();
            if self.found.requests > self.max {
                self.found.too_long = true;
                return Err(de::Error::custom("batch too long"));
            }
        }
        Ok(())
    }
}

fn first_byte(body: &[u8]) -> Option<u8> {
    body.iter().copied().find(|b| !b.is_ascii_whitespace())
}

/// Looks at a request body without building it: whether it holds a 1.0-style request, and
/// for a batch how many requests (counting stops past `max_batch`). `None` when it is not a
/// request or a batch of them (jsonrpsee then answers as it would).
pub fn probe(body: &[u8], max_batch: usize) -> Option<Probed> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let mut found = Probed::default();
    match first_byte(body)? {
        b'{' => {
            found.legacy = !Version::deserialize(&mut de).ok()?.is_v2();
            found.requests = 1;
        }
        b'[' => {
            let probed = de::Deserializer::deserialize_seq(
                &mut de,
                BatchProbe {
                    max: max_batch,
                    found: &mut found,
                },
            );
            if found.too_long {
                return Some(found);
            }
            probed.ok()?;
        }
        _ => return None,
    }
    de.end().ok()?;
    Some(found)
}

/// A member name, borrowed from the body unless it had escapes.
struct Key<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a member name")
            }
            fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(s)))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(s.to_owned())))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

/// Appends `"key":value` (after a comma unless `first`), the value copied as it came.
fn push_member<E: de::Error>(
    out: &mut Vec<u8>,
    first: &mut bool,
    key: &str,
    value: &[u8],
) -> Result<(), E> {
    if !std::mem::take(first) {
        out.push(b',');
    }
    serde_json::to_writer(&mut *out, key).map_err(E::custom)?;
    out.push(b':');
    out.extend_from_slice(value);
    Ok(())
}

/// Which way `Rewrite` turns an object.
#[derive(Clone, Copy)]
enum Direction {
    /// A request to 2.0: `jsonrpc` set to "2.0", `id` null when absent.
    Up,
    /// An answer to 1.0: no `jsonrpc`, `result` and `error` both present, `id` null when absent.
    Down,
}

/// Writes one object rewritten member by member (each member's value copied raw, never
/// parsed into a tree), or, for a batch, each of its objects in turn.
struct Rewrite<'o> {
    out: &'o mut Vec<u8>,
    direction: Direction,
}

impl<'de> DeserializeSeed<'de> for Rewrite<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Rewrite<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON-RPC object or a batch of them")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let out = self.out;
        out.push(b'{');
        let mut first = true;
        if let Direction::Up = self.direction {
            out.extend_from_slice(br#""jsonrpc":"2.0""#);
            first = false;
        }
        let (mut id, mut result, mut error) = (false, false, false);
        while let Some(Key(key)) = map.next_key()? {
            let value: &'de RawValue = map.next_value()?;
            match &*key {
                // Dropped: written above (up), or not part of the 1.0 shape (down).
                "jsonrpc" => continue,
                "id" => id = true,
                "result" => result = true,
                "error" => error = true,
                _ => {}
            }
            push_member(out, &mut first, &key, value.get().as_bytes())?;
        }
        if let Direction::Down = self.direction {
            if !result {
                push_member(out, &mut first, "result", b"null")?;
            }
            if !error {
                push_member(out, &mut first, "error", b"null")?;
            }
        }
        // bitcoind answers a request without an id, with id null; jsonrpsee would take it for
        // a notification and answer nothing.
        if !id {
            push_member(out, &mut first, "id", b"null")?;
        }
        out.push(b'}');
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let out = self.out;
        out.push(b'[');
        let mut first = true;
        loop {
            let mark = out.len();
            if !std::mem::take(&mut first) {
                out.push(b',');
            }
            let item = Rewrite {
                out: &mut *out,
                direction: self.direction,
            };
            if seq.next_element_seed(ItemOnly(item))?.is_none() {
                out.truncate(mark);
                break;
            }
        }
        out.push(b']');
        Ok(())
    }
}

/// A batch's item: an object only (a batch inside a batch is not JSON-RPC).
struct ItemOnly<'o>(Rewrite<'o>);

impl<'de> DeserializeSeed<'de> for ItemOnly<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self.0)
    }
}

fn rewrite(body: &[u8], direction: Direction, capacity: usize) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(capacity);
    let mut de = serde_json::Deserializer::from_slice(body);
    Rewrite {
        out: &mut out,
        direction,
    }
    .deserialize(&mut de)
    .ok()?;
    de.end().ok()?;
    Some(out)
}

/// What to do with a request body (see `upgrade_request`).
#[derive(Debug, PartialEq, Eq)]
pub enum Upgrade {
    /// 2.0 throughout, or not JSON-RPC: passed on as it is, and so is the answer.
    Unchanged,
    /// A batch with a 1.0 request but longer than the server takes: passed on as it is for
    /// jsonrpsee to refuse, the refusal given the 1.0 shape.
    TooLong,
    /// The body rewritten to 2.0; the answer is to be given the 1.0 shape.
    Rewritten(Vec<u8>),
}

/// The body rewritten to JSON-RPC 2.0 when it holds a 1.0-style request, in time linear in
/// the body and without a tree of it; batches of more than `max_batch` requests are left to
/// jsonrpsee's refusal (and cost a look at the first `max_batch + 1` only).
pub fn upgrade_request(body: &[u8], max_batch: usize) -> Upgrade {
    let Some(probed) = probe(body, max_batch) else {
        return Upgrade::Unchanged;
    };
    if !probed.legacy {
        return Upgrade::Unchanged;
    }
    if probed.too_long {
        return Upgrade::TooLong;
    }
    let growth = probed.requests * UPGRADE_GROWTH_PER_REQUEST as usize;
    match rewrite(body, Direction::Up, body.len() + growth) {
        Some(upgraded) => Upgrade::Rewritten(upgraded),
        // Not requests after all (a batch item that is no object): jsonrpsee says what is
        // wrong with it.
        None => Upgrade::Unchanged,
    }
}

/// A 2.0 answer (or batch of answers) in bitcoind's 1.0 shape, member by member: a huge
/// result (getblock verbosity 2) is copied, never parsed into a tree.
pub fn downgrade_response(body: &[u8]) -> Option<Vec<u8>> {
    // `"error":null` or `"result":null` added, `"jsonrpc":"2.0"` dropped: the same size or
    // smaller, give or take a few bytes.
    rewrite(body, Direction::Down, body.len())
}

/// The HTTP layer (see the module comment), for a server taking batches of up to
/// `max_batch` requests.
#[derive(Clone, Copy)]
pub struct LegacyLayer {
    max_batch: usize,
}

impl LegacyLayer {
    pub fn new(max_batch: u32) -> LegacyLayer {
        LegacyLayer {
            max_batch: max_batch as usize,
        }
    }
}

impl<S> tower::Layer<S> for LegacyLayer {
    type Service = Legacy<S>;

    fn layer(&self, inner: S) -> Legacy<S> {
        Legacy {
            inner,
            max_batch: self.max_batch,
        }
    }
}

#[derive(Clone)]
pub struct Legacy<S> {
    inner: S,
    max_batch: usize,
}

fn with_body(mut parts: http::request::Parts, body: Bytes) -> HttpRequest<HttpBody> {
    parts.headers.insert(
        http::header::CONTENT_LENGTH,
        http::HeaderValue::from(body.len()),
    );
    HttpRequest::from_parts(parts, HttpBody::new(Full::new(body)))
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
        let max_batch = self.max_batch;
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
            let request = match upgrade_request(&body, max_batch) {
                // The bytes as they came, not a copy.
                Upgrade::Unchanged => return inner.call(with_body(parts, body)).await,
                Upgrade::TooLong => with_body(parts, body),
                Upgrade::Rewritten(upgraded) => with_body(parts, Bytes::from(upgraded)),
            };
            let response = inner.call(request).await?;
            let (mut parts, body) = response.into_parts();
            let body = Limited::new(body, MAX_LEGACY_RESPONSE)
                .collect()
                .await?
                .to_bytes();
            let body = downgrade_response(&body).map_or(body, Bytes::from);
            parts.headers.insert(
                http::header::CONTENT_LENGTH,
                http::HeaderValue::from(body.len()),
            );
            Ok(HttpResponse::from_parts(
                parts,
                HttpBody::new(Full::new(body)),
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};
    use std::time::{Duration, Instant};

    const MAX: usize = super::super::server::MAX_BATCH_REQUESTS as usize;

    fn up(v: Value) -> Option<Value> {
        match upgrade_request(v.to_string().as_bytes(), MAX) {
            Upgrade::Rewritten(b) => Some(serde_json::from_slice(&b).unwrap()),
            Upgrade::Unchanged => None,
            Upgrade::TooLong => panic!("too long: {v}"),
        }
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
        assert_eq!(
            batch,
            Some(json!([
                {"jsonrpc":"2.0","id":1,"method":"a"},
                {"jsonrpc":"2.0","id":2,"method":"b"}
            ]))
        );
        assert_eq!(up(json!([])), None);
        for junk in [&b"not json"[..], b"", b"[1]", b"[{},1]", b"{} x", b"\"s\""] {
            assert_eq!(upgrade_request(junk, MAX), Upgrade::Unchanged);
        }
    }

    #[test]
    fn params_are_copied_byte_for_byte() {
        // Whitespace, number spelling and escapes inside a value pass as they came; an
        // escaped member name is still recognised.
        let body = br#" { "json\u0072pc" : "1.0", "method":"m", "params" : [ 1.50, "\u00e9" , {"a" :1} ] } "#;
        let Upgrade::Rewritten(out) = upgrade_request(body, MAX) else {
            panic!("not rewritten")
        };
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            r#"{"jsonrpc":"2.0","method":"m","params":[ 1.50, "\u00e9" , {"a" :1} ],"id":null}"#
        );
    }

    #[test]
    fn the_upgrade_grows_a_request_by_at_most_its_allowance() {
        for body in [
            &b"{}"[..],
            b"[{},{},{}]",
            br#"{"id":1}"#,
            br#"[{"jsonrpc":"1.0"}]"#,
        ] {
            let probed = probe(body, MAX).unwrap();
            let Upgrade::Rewritten(out) = upgrade_request(body, MAX) else {
                panic!("not rewritten")
            };
            let allowance = probed.requests * UPGRADE_GROWTH_PER_REQUEST as usize;
            assert!(out.len() <= body.len() + allowance, "{out:?}");
        }
        assert!(server_body_limit(1_000) > MAX_REQUEST_BODY);
        assert_eq!(server_body_limit(u32::MAX), u32::MAX);
    }

    #[test]
    fn a_huge_batch_is_counted_only_past_the_limit() {
        // The reproduced request: 2.7 M empty objects, 7.7 MiB.
        let n = 2_700_000;
        let mut body = Vec::with_capacity(3 * n + 2);
        body.push(b'[');
        for i in 0..n {
            if i > 0 {
                body.push(b',');
            }
            body.extend_from_slice(b"{}");
        }
        body.push(b']');
        let started = Instant::now();
        let probed = probe(&body, MAX).unwrap();
        assert_eq!(
            probed,
            Probed {
                legacy: true,
                requests: MAX + 1,
                too_long: true
            }
        );
        assert_eq!(upgrade_request(&body, MAX), Upgrade::TooLong);
        // Generous for a debug build on a loaded machine: a look at 1001 items, not 2.7 M.
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
        // At the limit exactly, it is rewritten.
        // `[{}` then `,{}` per further item: MAX items in 3 * MAX bytes.
        let mut at_limit = body[..3 * MAX].to_vec();
        at_limit.push(b']');
        assert_eq!(probe(&at_limit, MAX).unwrap().requests, MAX);
        assert!(matches!(
            upgrade_request(&at_limit, MAX),
            Upgrade::Rewritten(_)
        ));
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
        assert_eq!(
            down(
                json!([{"jsonrpc":"2.0","id":1,"result":[1,2]},{"jsonrpc":"2.0","id":2,"result":null}])
            ),
            json!([{"result":[1,2],"error":null,"id":1},{"result":null,"error":null,"id":2}])
        );
        // A result is copied as it came, not rebuilt.
        let raw = br#"{"jsonrpc":"2.0","result":{"tx":[ {"a":1.0} ]},"id":7}"#;
        assert_eq!(
            std::str::from_utf8(&downgrade_response(raw).unwrap()).unwrap(),
            r#"{"result":{"tx":[ {"a":1.0} ]},"id":7,"error":null}"#
        );
        assert_eq!(downgrade_response(b""), None);
    }
}
