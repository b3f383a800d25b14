//! The RPC middleware every call passes: refuses more positional arguments than the method's
//! help entry lists (jsonrpsee would silently ignore them), and records the calls in progress
//! for `getrpcinfo`.
//!
//! One place for both, so no method checks its own argument count and none can be missed.
//! Holds a lock only to insert or remove one record, never across an await.

use super::help::MethodHelp;
use jsonrpsee::core::middleware::{Batch, BatchEntry, BatchEntryErr, Notification, RpcServiceT};
use jsonrpsee::types::{ErrorCode, ErrorObject, Request};
use serde_json::value::RawValue;
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Calls `getrpcinfo` lists at most: the connection limit times a batch is the most that can
/// run, far more than anyone reads; the record stays bounded whatever clients do.
pub const MAX_ACTIVE_RECORDED: usize = 4096;

/// The calls in progress: method and start, by a sequence number.
#[derive(Clone, Default)]
pub struct ActiveCalls {
    inner: Arc<Mutex<HashMap<u64, (String, Instant)>>>,
    next: Arc<AtomicU64>,
}

/// Removes its call's record when the call ends (or its future is dropped).
struct ActiveGuard {
    calls: ActiveCalls,
    id: Option<u64>,
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        if let Some(id) = self.id {
            self.calls.lock().remove(&id);
        }
    }
}

impl ActiveCalls {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, (String, Instant)>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn start(&self, method: &str) -> ActiveGuard {
        let mut map = self.lock();
        let id = (map.len() < MAX_ACTIVE_RECORDED).then(|| {
            let id = self.next.fetch_add(1, Ordering::Relaxed);
            map.insert(id, (method.to_string(), Instant::now()));
            id
        });
        ActiveGuard {
            calls: self.clone(),
            id,
        }
    }

    /// The calls in progress, oldest first: method and how long it has run.
    pub fn snapshot(&self) -> Vec<(String, Duration)> {
        let mut list: Vec<(u64, String, Duration)> = self
            .lock()
            .iter()
            .map(|(id, (m, t))| (*id, m.clone(), t.elapsed()))
            .collect();
        list.sort_by_key(|(id, _, _)| *id);
        list.into_iter().map(|(_, m, d)| (m, d)).collect()
    }
}

/// How many positional arguments `params` holds; `None` for named (object) params or none.
fn positional_count(params: Option<&RawValue>) -> Option<usize> {
    let raw = params?.get().trim_start();
    if !raw.starts_with('[') {
        return None;
    }
    serde_json::from_str::<Vec<&RawValue>>(raw)
        .ok()
        .map(|v| v.len())
}

/// The invalid-params error for a call with too many arguments, if it has them. No `data`:
/// the message says it all, and `noded rpc` adds the usage line itself.
pub fn arity_error(
    method: &str,
    params: Option<&RawValue>,
    lookup: fn(&str) -> Option<&'static MethodHelp>,
) -> Option<ErrorObject<'static>> {
    let help = lookup(method)?;
    let given = positional_count(params)?;
    (given > help.max_args()).then(|| {
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
        let refused = arity_error(
            request.method_name(),
            request.params.as_deref(),
            self.lookup,
        );
        let guard = self.active.start(request.method_name());
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
                    match arity_error(req.method_name(), req.params.as_deref(), lookup) {
                        Some(err) => Err(BatchEntryErr::new(req.id(), err)),
                        None => {
                            guards.push(self.active.start(req.method_name()));
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
    fn active_calls_are_recorded_until_they_end() {
        let calls = ActiveCalls::default();
        let guard = calls.start("waitfornewblock");
        assert_eq!(calls.snapshot()[0].0, "waitfornewblock");
        drop(guard);
        assert!(calls.snapshot().is_empty());
    }
}
