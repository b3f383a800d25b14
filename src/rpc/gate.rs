//! The RPC middleware every call passes: refuses more positional arguments than the method's
//! help entry lists (jsonrpsee would silently ignore them), records the calls in progress
//! for `getrpcinfo`, and (in `ParamErrors`, the layer next to the methods) says which
//! argument had the wrong type instead of where serde stopped reading it.
//!
//! One place for both, so no method checks its own argument count and none can be missed.
//! Holds one shard's lock only to insert or remove one record, never across an await.

use super::help::MethodHelp;
use jsonrpsee::core::middleware::{Batch, BatchEntry, BatchEntryErr, Notification, RpcServiceT};
use jsonrpsee::types::{ErrorCode, ErrorObject, Request};
use serde::de::{self, IgnoredAny, SeqAccess, Visitor};
use serde_json::value::RawValue;
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Calls `getrpcinfo` lists at most: the connection limit times a batch is the most that can
/// run, far more than anyone reads; the record stays bounded whatever clients do.
pub const MAX_ACTIVE_RECORDED: usize = 4096;
/// Locks the record is split over, calls spread round-robin by sequence number: concurrent
/// calls on the few cores this runs on rarely wait for one another.
const ACTIVE_SHARDS: usize = 16;
/// Records one shard holds, sized up front so that recording a call never allocates.
const ACTIVE_PER_SHARD: usize = MAX_ACTIVE_RECORDED / ACTIVE_SHARDS;
/// Surplus arguments counted exactly for the error message; past that it says "more than":
/// counting millions would cost time for no better message.
pub const MAX_EXCESS_ARGS_COUNTED: usize = 16;

type Shard = Mutex<HashMap<u64, (&'static str, Instant)>>;

struct Active {
    shards: [Shard; ACTIVE_SHARDS],
    next: AtomicU64,
}

/// The calls in progress: method and start, by a sequence number.
#[derive(Clone)]
pub struct ActiveCalls {
    inner: Arc<Active>,
}

impl Default for ActiveCalls {
    fn default() -> Self {
        ActiveCalls {
            inner: Arc::new(Active {
                shards: std::array::from_fn(|_| {
                    Mutex::new(HashMap::with_capacity(ACTIVE_PER_SHARD))
                }),
                next: AtomicU64::new(0),
            }),
        }
    }
}

/// Removes its call's record when the call ends (or its future is dropped).
struct ActiveGuard {
    calls: ActiveCalls,
    id: Option<u64>,
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        if let Some(id) = self.id {
            self.calls.shard(id).remove(&id);
        }
    }
}

fn lock(shard: &Shard) -> MutexGuard<'_, HashMap<u64, (&'static str, Instant)>> {
    shard.lock().unwrap_or_else(|p| p.into_inner())
}

impl ActiveCalls {
    fn shard(&self, id: u64) -> MutexGuard<'_, HashMap<u64, (&'static str, Instant)>> {
        lock(&self.inner.shards[id as usize % ACTIVE_SHARDS])
    }

    /// Records a call to `method` until the guard is dropped; nothing when its shard is full.
    fn start(&self, method: &'static str) -> ActiveGuard {
        let id = self.inner.next.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let recorded = {
            let mut shard = self.shard(id);
            shard.len() < ACTIVE_PER_SHARD && shard.insert(id, (method, started)).is_none()
        };
        ActiveGuard {
            calls: self.clone(),
            id: recorded.then_some(id),
        }
    }

    /// The calls in progress, oldest first: method and how long it has run.
    pub fn snapshot(&self) -> Vec<(String, Duration)> {
        let mut list: Vec<(u64, &'static str, Instant)> = Vec::new();
        for shard in &self.inner.shards {
            list.extend(lock(shard).iter().map(|(id, (m, t))| (*id, *m, *t)));
        }
        list.sort_by_key(|(id, _, _)| *id);
        list.into_iter()
            .map(|(_, m, t)| (m.to_string(), t.elapsed()))
            .collect()
    }
}

/// How many positional arguments a call holds, up to a cap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Given {
    Exactly(usize),
    MoreThan(usize),
}

impl fmt::Display for Given {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Given::Exactly(n) => write!(f, "{n}"),
            Given::MoreThan(n) => write!(f, "more than {n}"),
        }
    }
}

/// Counts an array's items without keeping them, stopping (with an error, which ends the
/// parse there) at the first past `cap`.
struct CountUpTo {
    cap: usize,
    seen: usize,
}

impl<'de> Visitor<'de> for &mut CountUpTo {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {
            if self.seen == self.cap {
                return Err(de::Error::custom("more than counted"));
            }
            self.seen += 1;
        }
        Ok(())
    }
}

/// How many positional arguments `params` holds, counted up to `cap`; `None` for named
/// (object) params or none. Costs the first `cap + 1` arguments, whatever follows.
fn positional_count(params: Option<&RawValue>, cap: usize) -> Option<Given> {
    let raw = params?.get();
    if !raw.trim_start().starts_with('[') {
        return None;
    }
    let mut count = CountUpTo { cap, seen: 0 };
    let mut de = serde_json::Deserializer::from_str(raw);
    match de::Deserializer::deserialize_seq(&mut de, &mut count) {
        Ok(()) => Some(Given::Exactly(count.seen)),
        Err(_) if count.seen == cap => Some(Given::MoreThan(cap)),
        // jsonrpsee parsed the params already: not reached.
        Err(_) => None,
    }
}

/// The invalid-params error for a call with too many arguments, if it has them. No `data`:
/// the message says it all, and `noded rpc` adds the usage line itself.
pub fn arity_error(
    method: &str,
    params: Option<&RawValue>,
    lookup: fn(&str) -> Option<&'static MethodHelp>,
) -> Option<ErrorObject<'static>> {
    let help = lookup(method)?;
    refuse_extra(help, params)
}

/// An argument of the wrong type: serde's message ends with where it stopped in the text of
/// that one argument (`invalid type: string "abc", expected u64 at line 1 column 5`), which
/// means nothing to a caller and does not say which argument it was (jsonrpsee parses each
/// on its own). The answer drops the position and names the argument when only one was
/// given (`nblocks: invalid type: …`); otherwise it adds the method's usage. `None`: the
/// response stands.
fn name_bad_argument(
    help: &MethodHelp,
    params: Option<&RawValue>,
    response: &jsonrpsee::MethodResponse,
) -> Option<ErrorObject<'static>> {
    if response.as_error_code() != Some(ErrorCode::InvalidParams.code()) {
        return None;
    }
    #[derive(serde::Deserialize)]
    struct Reply {
        error: ErrorBody,
    }
    #[derive(serde::Deserialize)]
    struct ErrorBody {
        message: String,
        data: Option<String>,
    }
    let reply: Reply = serde_json::from_str(response.as_json().get()).ok()?;
    let data = reply.error.data?;
    let (what, position) = data.rsplit_once(" at line ")?;
    let (line, column) = position.split_once(" column ")?;
    if line.parse::<u64>().is_err() || column.parse::<u64>().is_err() {
        return None;
    }
    let named = match (positional_count(params, 2), help.args.first()) {
        (Some(Given::Exactly(1)), Some(arg)) => format!("{}: {what}", arg.name),
        _ => format!("{what} (usage: {})", help.usage()),
    };
    Some(ErrorObject::owned(
        ErrorCode::InvalidParams.code(),
        reply.error.message,
        Some(named),
    ))
}

fn refuse_extra(help: &MethodHelp, params: Option<&RawValue>) -> Option<ErrorObject<'static>> {
    let max = help.max_args();
    let given = positional_count(params, max + MAX_EXCESS_ARGS_COUNTED)?;
    let too_many = match given {
        Given::Exactly(n) => n > max,
        Given::MoreThan(_) => true,
    };
    too_many.then(|| {
        ErrorObject::owned(
            ErrorCode::InvalidParams.code(),
            help.too_many_args(given),
            None::<()>,
        )
    })
}

/// The middleware (see the module comment) in front of the method router.
#[derive(Clone)]
pub struct Gate<S> {
    inner: S,
    active: ActiveCalls,
    lookup: fn(&str) -> Option<&'static MethodHelp>,
}

impl<S> Gate<S> {
    pub fn new(
        inner: S,
        active: ActiveCalls,
        lookup: fn(&str) -> Option<&'static MethodHelp>,
    ) -> Self {
        Gate {
            inner,
            active,
            lookup,
        }
    }
}

impl<S> RpcServiceT for Gate<S>
where
    S: RpcServiceT<
            MethodResponse = jsonrpsee::MethodResponse,
            BatchResponse = jsonrpsee::MethodResponse,
            NotificationResponse = jsonrpsee::MethodResponse,
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
        // A method without a help entry is not registered (the server checks at start): it is
        // answered at once with method-not-found, and neither checked nor recorded.
        let help = (self.lookup)(request.method_name());
        let refused = help.and_then(|h| refuse_extra(h, request.params.as_deref()));
        let guard = help.map(|h| self.active.start(h.name));
        let inner = self.inner.clone();
        async move {
            let _guard = guard;
            match refused {
                Some(err) => jsonrpsee::MethodResponse::error(request.id(), err),
                None => inner.call(request).await,
            }
        }
    }

    fn batch<'a>(&self, batch: Batch<'a>) -> impl Future<Output = Self::BatchResponse> + Send + 'a {
        let lookup = self.lookup;
        let mut guards = Vec::new();
        let entries = batch
            .into_iter()
            .map(|entry| match entry {
                Ok(BatchEntry::Call(req)) => {
                    let Some(help) = lookup(req.method_name()) else {
                        return Ok(BatchEntry::Call(req));
                    };
                    match refuse_extra(help, req.params.as_deref()) {
                        Some(err) => Err(BatchEntryErr::new(req.id(), err)),
                        None => {
                            guards.push(self.active.start(help.name));
                            Ok(BatchEntry::Call(req))
                        }
                    }
                }
                other => other,
            })
            .collect();
        let inner = self.inner.clone();
        async move {
            let _guards = guards;
            inner.batch(Batch::from(entries)).await
        }
    }

    fn notification<'a>(
        &self,
        n: Notification<'a>,
    ) -> impl Future<Output = Self::NotificationResponse> + Send + 'a {
        self.inner.notification(n)
    }
}

/// The layer next to the methods: rewrites jsonrpsee's parameter type errors
/// (`name_bad_argument`) for single calls and for every call of a batch alike (layers above
/// may take a batch apart and send some of its calls one by one, but every call reaches the
/// methods through here).
#[derive(Clone)]
pub struct ParamErrors<S> {
    inner: S,
    lookup: fn(&str) -> Option<&'static MethodHelp>,
    max_response: usize,
}

impl<S> ParamErrors<S> {
    pub fn new(
        inner: S,
        lookup: fn(&str) -> Option<&'static MethodHelp>,
        max_response: usize,
    ) -> Self {
        ParamErrors {
            inner,
            lookup,
            max_response,
        }
    }
}

impl<S> RpcServiceT for ParamErrors<S>
where
    S: RpcServiceT<
            MethodResponse = jsonrpsee::MethodResponse,
            BatchResponse = jsonrpsee::MethodResponse,
            NotificationResponse = jsonrpsee::MethodResponse,
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
        let help = (self.lookup)(request.method_name());
        // A borrow of the request body, copied only when the server owns the params.
        let params = request.params.clone();
        let id = request.id().into_owned();
        let inner = self.inner.clone();
        async move {
            let response = inner.call(request).await;
            match help.and_then(|h| name_bad_argument(h, params.as_deref(), &response)) {
                Some(err) => jsonrpsee::MethodResponse::error(id, err),
                None => response,
            }
        }
    }

    /// As the server's own batch handling does (each call in turn, the answers gathered
    /// within the response limit), with each call going through `call` above.
    fn batch<'a>(&self, batch: Batch<'a>) -> impl Future<Output = Self::BatchResponse> + Send + 'a {
        let service = self.clone();
        async move {
            let mut answers =
                jsonrpsee::core::server::BatchResponseBuilder::new_with_limit(service.max_response);
            let mut got_notification = false;
            for entry in batch.into_iter() {
                let answer = match entry {
                    Ok(BatchEntry::Call(request)) => service.call(request).await,
                    Ok(BatchEntry::Notification(n)) => {
                        got_notification = true;
                        service.notification(n).await;
                        continue;
                    }
                    Err(err) => {
                        let (err, id) = err.into_parts();
                        jsonrpsee::MethodResponse::error(id, err)
                    }
                };
                if let Err(too_big) = answers.append(answer) {
                    return too_big;
                }
            }
            if answers.is_empty() && got_notification {
                jsonrpsee::MethodResponse::notification()
            } else {
                jsonrpsee::MethodResponse::from_batch(answers.finish())
            }
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

    fn raw(s: &str) -> Box<RawValue> {
        RawValue::from_string(s.to_string()).unwrap()
    }

    #[test]
    fn extra_positional_arguments_are_refused_with_the_usage() {
        let lookup = crate::rpc::server::method_help;
        let err = arity_error("getblockcount", Some(&raw("[5]")), lookup).unwrap();
        assert_eq!(err.code(), -32602);
        assert_eq!(err.message(), "getblockcount takes no arguments (1 given)");
        let err = arity_error("getblock", Some(&raw("[\"ab\", 1, 2]")), lookup).unwrap();
        assert_eq!(
            err.message(),
            "getblock takes at most 2 arguments (3 given)"
        );
        assert!(arity_error("getblock", Some(&raw("[\"ab\", 1]")), lookup).is_none());
        assert!(arity_error("getblockcount", None, lookup).is_none());
        assert!(arity_error("getblockcount", Some(&raw("{}")), lookup).is_none());
        assert!(arity_error("nosuchmethod", Some(&raw("[1]")), lookup).is_none());
    }

    #[test]
    fn arguments_are_counted_only_past_the_cap() {
        let lookup = crate::rpc::server::method_help;
        // 4 M arguments: counted to the cap and no further, without keeping any.
        let mut many = String::from("[0");
        many.push_str(&",0".repeat(4_000_000 - 1));
        many.push(']');
        let started = std::time::Instant::now();
        let err = arity_error("getblockcount", Some(&raw(&many)), lookup).unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(
            err.message(),
            format!("getblockcount takes no arguments (more than {MAX_EXCESS_ARGS_COUNTED} given)")
        );
        let cap = 2 + MAX_EXCESS_ARGS_COUNTED;
        let exactly = format!("[{}]", vec!["1"; cap].join(","));
        assert_eq!(
            positional_count(Some(&raw(&exactly)), cap),
            Some(Given::Exactly(cap))
        );
        let more = format!("[{}]", vec!["1"; cap + 1].join(","));
        assert_eq!(
            positional_count(Some(&raw(&more)), cap),
            Some(Given::MoreThan(cap))
        );
        assert_eq!(
            positional_count(Some(&raw("[]")), 0),
            Some(Given::Exactly(0))
        );
        assert_eq!(positional_count(Some(&raw(" {\"a\":1}")), 0), None);
    }

    #[test]
    fn active_calls_are_recorded_until_they_end() {
        let calls = ActiveCalls::default();
        let guard = calls.start("waitfornewblock");
        assert_eq!(calls.snapshot()[0].0, "waitfornewblock");
        drop(guard);
        assert!(calls.snapshot().is_empty());

        // Oldest first across shards; the record stops growing at its bound.
        let guards: Vec<_> = (0..MAX_ACTIVE_RECORDED + 100)
            .map(|i| calls.start(if i == 0 { "first" } else { "other" }))
            .collect();
        let listed = calls.snapshot();
        assert_eq!(listed.len(), MAX_ACTIVE_RECORDED);
        assert_eq!(listed[0].0, "first");
        drop(guards);
        assert!(calls.snapshot().is_empty());
    }
}
