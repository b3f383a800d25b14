//! HTTP Basic authentication for the RPC server, as a tower layer in front of jsonrpsee.
//!
//! Accepts the cookie credentials and, when configured, a user/password pair. Everything else
//! (missing, malformed or wrong credentials) gets HTTP 401 before any JSON is parsed. The
//! WebSocket upgrade is an HTTP request too, so it is covered by the same check.

use base64::Engine;
use jsonrpsee::server::{HttpBody, HttpRequest, HttpResponse};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The `Authorization` header values that are accepted.
#[derive(Clone)]
pub struct AuthLayer {
    accepted: Arc<Vec<Vec<u8>>>,
}

impl AuthLayer {
    /// `credentials`: (user, password) pairs.
    pub fn new<'a>(credentials: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let accepted = credentials
            .into_iter()
            .map(|(user, password)| {
                let token =
                    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
                format!("Basic {token}").into_bytes()
            })
            .collect();
        AuthLayer {
            accepted: Arc::new(accepted),
        }
    }

    fn allows(&self, header: Option<&http::HeaderValue>) -> bool {
        let Some(given) = header.map(|h| h.as_bytes()) else {
            return false;
        };
        // Compare against every accepted value in full, so timing says nothing about which
        // bytes matched.
        self.accepted.iter().fold(false, |found, expected| {
            found | constant_time_eq(given, expected)
        })
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl<S> tower::Layer<S> for AuthLayer {
    type Service = Auth<S>;
    fn layer(&self, inner: S) -> Auth<S> {
        Auth {
            inner,
            layer: self.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Auth<S> {
    inner: S,
    layer: AuthLayer,
}

fn unauthorized() -> HttpResponse {
    http::Response::builder()
        .status(http::StatusCode::UNAUTHORIZED)
        .header(http::header::WWW_AUTHENTICATE, "Basic realm=\"noded\"")
        .header(http::header::CONTENT_TYPE, "text/plain")
        .body(HttpBody::from(
            "401 Unauthorized: use the credentials in <datadir>/.cookie or --rpcuser/--rpcpassword\n",
        ))
        .expect("a static response is valid")
}

impl<S, B> tower::Service<HttpRequest<B>> for Auth<S>
where
    S: tower::Service<HttpRequest<B>, Response = HttpResponse, Error = BoxError>,
    S::Future: Send + 'static,
{
    type Response = HttpResponse;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: HttpRequest<B>) -> Self::Future {
        if self
            .layer
            .allows(request.headers().get(http::header::AUTHORIZATION))
        {
            Box::pin(self.inner.call(request))
        } else {
            Box::pin(std::future::ready(Ok(unauthorized())))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_exact_credentials_pass() {
        let layer = AuthLayer::new([("__cookie__", "abc"), ("alice", "pw")]);
        let header = |s: &str| http::HeaderValue::from_str(s).unwrap();
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        assert!(layer.allows(Some(&header(&format!("Basic {}", b64("__cookie__:abc"))))));
        assert!(layer.allows(Some(&header(&format!("Basic {}", b64("alice:pw"))))));
        assert!(!layer.allows(Some(&header(&format!("Basic {}", b64("alice:pX"))))));
        assert!(!layer.allows(Some(&header(&format!("Bearer {}", b64("alice:pw"))))));
        assert!(!layer.allows(None));
    }
}
