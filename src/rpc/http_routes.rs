//! Plain HTTP routes served on the RPC port beside JSON-RPC, answered by the `Auth` service
//! before a request reaches jsonrpsee: today `GET /metrics` (Prometheus text exposition).
//!
//! Owns which paths are routed here and who may see them. Must never serve a route without
//! the auth decision (`metrics_need_auth`) and must never block: a handler reads atomics and
//! short synchronous locks only. A request it does not route goes on to jsonrpsee unchanged.

use crate::metrics::{Metrics, CONTENT_TYPE};
use jsonrpsee::server::{HttpBody, HttpRequest, HttpResponse};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// The path Prometheus scrapes.
pub const METRICS_PATH: &str = "/metrics";

/// Whether `/metrics` needs the RPC credentials: only a server bound to a loopback address
/// (reachable from this host alone) serves it without them, so a scraper on the same host
/// needs no cookie while one across the network gets nothing an RPC user could not.
pub fn metrics_need_auth(rpc_bind: IpAddr) -> bool {
    !rpc_bind.to_canonical().is_loopback()
}

/// The routes and what they serve.
pub struct HttpRoutes {
    metrics: Arc<Metrics>,
    metrics_need_auth: bool,
}

impl HttpRoutes {
    /// Routes for a server bound to `rpc_bind`.
    pub fn new(metrics: Arc<Metrics>, rpc_bind: SocketAddr) -> HttpRoutes {
        HttpRoutes {
            metrics,
            metrics_need_auth: metrics_need_auth(rpc_bind.ip()),
        }
    }

    /// The answer to `request` if it is one of these routes and may be served (`authorized`:
    /// it carried valid credentials); `None` sends it on to jsonrpsee, which answers an
    /// unauthorized one 401 through the usual path.
    pub fn respond<B>(&self, request: &HttpRequest<B>, authorized: bool) -> Option<HttpResponse> {
        let is_metrics =
            request.method() == http::Method::GET && request.uri().path() == METRICS_PATH;
        if !is_metrics || (self.metrics_need_auth && !authorized) {
            return None;
        }
        Some(self.metrics_response())
    }

    fn metrics_response(&self) -> HttpResponse {
        let (status, content_type, body) = match self.metrics.encode() {
            Ok(text) => (http::StatusCode::OK, CONTENT_TYPE, text),
            Err(e) => {
                tracing::warn!(error = %e, "metrics encoding failed");
                (
                    http::StatusCode::INTERNAL_SERVER_ERROR,
                    "text/plain",
                    format!("{e}\n"),
                )
            }
        };
        http::Response::builder()
            .status(status)
            .header(http::header::CONTENT_TYPE, content_type)
            .body(HttpBody::from(body))
            .expect("a response from a valid status and header is valid")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(path: &str) -> HttpRequest<()> {
        http::Request::builder().uri(path).body(()).unwrap()
    }

    #[test]
    fn loopback_binds_serve_metrics_without_auth_others_need_it() {
        for open in ["127.0.0.1", "127.0.0.53", "::1", "::ffff:127.0.0.1"] {
            assert!(!metrics_need_auth(open.parse().unwrap()), "{open}");
        }
        for closed in ["0.0.0.0", "::", "192.168.1.5", "10.0.0.1", "2001:db8::1"] {
            assert!(metrics_need_auth(closed.parse().unwrap()), "{closed}");
        }
    }

    #[test]
    fn a_non_loopback_server_answers_metrics_only_with_credentials() {
        let routes = HttpRoutes::new(Arc::default(), "0.0.0.0:8332".parse().unwrap());
        assert!(routes.respond(&get("/metrics"), false).is_none());
        let served = routes.respond(&get("/metrics"), true).expect("served");
        assert_eq!(served.status(), http::StatusCode::OK);
    }

    #[test]
    fn a_loopback_server_answers_metrics_to_anyone_and_routes_nothing_else() {
        let routes = HttpRoutes::new(Arc::default(), "127.0.0.1:0".parse().unwrap());
        let served = routes.respond(&get("/metrics"), false).expect("served");
        assert_eq!(
            served.headers()[http::header::CONTENT_TYPE],
            crate::metrics::CONTENT_TYPE
        );
        assert!(routes.respond(&get("/"), false).is_none());
        assert!(routes.respond(&get("/metrics/x"), true).is_none());
        let post = http::Request::builder()
            .method(http::Method::POST)
            .uri("/metrics")
            .body(())
            .unwrap();
        assert!(routes.respond(&post, true).is_none());
    }
}
