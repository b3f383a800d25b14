//! The jsonrpsee RPC middleware that counts calls per method and times them, into the node's
//! `RpcMetrics`.
//!
//! Owns nothing but the timing: it never changes a request or a response, and it labels only
//! with the server's registered methods (anything else counts as `metrics::UNKNOWN_METHOD`).

use crate::metrics::{Metrics, BATCH_METHOD};
use jsonrpsee::server::middleware::rpc::{Batch, Notification, Request, RpcServiceT};
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

/// Wraps the RPC service `inner` of one connection.
#[derive(Clone)]
pub struct RpcTiming<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

impl<S> RpcTiming<S> {
    pub fn new(inner: S, metrics: Arc<Metrics>) -> RpcTiming<S> {
        RpcTiming { inner, metrics }
    }
}

impl<S> RpcServiceT for RpcTiming<S>
where
    S: RpcServiceT + Clone + Send + Sync + 'static,
{
    type MethodResponse = S::MethodResponse;
    type NotificationResponse = S::NotificationResponse;
    type BatchResponse = S::BatchResponse;

    fn call<'a>(
        &self,
        request: Request<'a>,
    ) -> impl Future<Output = Self::MethodResponse> + Send + 'a {
        // Looked up now, while the method name is borrowed from the request that then moves
        // into the call: the handles outlive it, the name need not be copied.
        let (calls, latency) = self.metrics.rpc.method_handles(request.method_name());
        let inner = self.inner.clone();
        async move {
            calls.inc();
            let started = Instant::now();
            let response = inner.call(request).await;
            latency.observe(started.elapsed().as_secs_f64());
            response
        }
    }

    fn batch<'a>(&self, batch: Batch<'a>) -> impl Future<Output = Self::BatchResponse> + Send + 'a {
        // The root service runs a batch's calls itself, past this layer: count them here, time
        // the batch as a whole.
        for entry in batch.iter().flatten() {
            self.metrics.rpc.called(entry.method_name());
        }
        let (inner, metrics) = (self.inner.clone(), self.metrics.clone());
        async move {
            let started = Instant::now();
            let response = inner.batch(batch).await;
            metrics.rpc.finished(BATCH_METHOD, started.elapsed());
            response
        }
    }

    fn notification<'a>(
        &self,
        n: Notification<'a>,
    ) -> impl Future<Output = Self::NotificationResponse> + Send + 'a {
        self.metrics.rpc.called(n.method_name());
        self.inner.notification(n)
    }
}
