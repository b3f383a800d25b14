//! HTTP Basic authentication for the RPC server, as a tower layer in front of jsonrpsee, and
//! the throttle on failed logins.
//!
//! Accepts the cookie credentials and, when configured, a user/password pair. Everything else
//! (missing, malformed or wrong credentials) gets HTTP 401 before any JSON is parsed. The
//! WebSocket upgrade is an HTTP request too, so it is covered by the same check. Plain HTTP
//! routes (`http_routes`, e.g. `GET /metrics`) are offered each request first, with the
//! outcome of the credential check, and make their own decision.
//!
//! Owns the record of failed logins per source IP address: after `MAX_AUTH_FAILURES` within
//! `AUTH_FAILURE_WINDOW`, that address's failed attempts are answered HTTP 429 after
//! `AUTH_THROTTLE_DELAY`. Right credentials are checked first and always served, so a user
//! sharing an address with a guesser (every local client is 127.0.0.1) is never locked out.
//! Each failed attempt is logged at WARN with its source address, up to the throttle; after
//! that, one line per window (the first failure after it) counts those not logged.
//!
//! Also owns the dashboard's sessions: `POST /session` with right credentials returns a
//! random session cookie (HttpOnly, SameSite=Strict), which is accepted in place of the
//! credentials only on a WebSocket upgrade from the same origin, so the page never keeps a
//! secret and another site's page cannot ride on it. The dashboard's static assets (and
//! nothing else) are served without credentials.

use super::http_routes::HttpRoutes;
use base64::Engine;
use jsonrpsee::server::{HttpBody, HttpRequest, HttpResponse};
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// Failed logins one address may make within `AUTH_FAILURE_WINDOW` before it is throttled:
/// enough for a mistyped password or a stale cookie, far too few to guess one.
pub const MAX_AUTH_FAILURES: u32 = 5;

/// The window failed logins are counted over; an address's count starts again after it.
pub const AUTH_FAILURE_WINDOW: Duration = Duration::from_secs(60);

/// How long a throttled address's failed attempt waits for its 429: with at most
/// `MAX_RPC_CONNECTIONS` connections, this caps a guesser at a few hundred tries a second
/// instead of as many as the CPU can check.
pub const AUTH_THROTTLE_DELAY: Duration = Duration::from_secs(1);

/// Addresses whose failures are remembered; beyond it the oldest record is dropped, so a
/// flood from many addresses costs bounded memory.
pub const MAX_TRACKED_ADDRESSES: usize = 4096;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "noded_session";

/// Dashboard sessions alive at once; signing in beyond it ends the oldest session.
pub const MAX_SESSIONS: usize = 32;

/// How long a session lasts: a working day at the dashboard, then sign in again. Every
/// session also ends when the node stops (they are kept in memory only).
pub const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 3600);

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A session token: 32 random bytes, 64 hex digits in the cookie.
type SessionToken = [u8; 32];

/// The dashboard sessions, oldest first, bounded by `MAX_SESSIONS`.
#[derive(Debug, Default)]
struct Sessions {
    live: VecDeque<(SessionToken, Instant)>,
}

impl Sessions {
    fn create(&mut self, now: Instant) -> SessionToken {
        self.expire(now);
        if self.live.len() >= MAX_SESSIONS {
            self.live.pop_front();
        }
        let token: SessionToken = rand::random();
        self.live.push_back((token, now + SESSION_LIFETIME));
        token
    }

    fn is_valid(&mut self, token: &SessionToken, now: Instant) -> bool {
        self.expire(now);
        // Compared with every live token in full, so timing says nothing about near misses.
        self.live.iter().fold(false, |found, (live, _)| {
            found | constant_time_eq(live, token)
        })
    }

    fn expire(&mut self, now: Instant) {
        self.live.retain(|(_, until)| *until > now);
    }
}

/// The session token in a `Cookie` header, if there is a well-formed one.
fn session_token(headers: &http::HeaderMap) -> Option<SessionToken> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().strip_prefix(SESSION_COOKIE)?.strip_prefix('='))
        .find_map(|hex_token| {
            let mut token = SessionToken::default();
            hex::decode_to_slice(hex_token, &mut token).ok()?;
            Some(token)
        })
}

/// A WebSocket handshake as jsonrpsee will take it (RFC 6455 §4.1): a GET with `Upgrade:
/// websocket`, a `Connection` header listing `upgrade`, and a `Sec-WebSocket-Key`. Anything
/// less is served as plain HTTP, which a session cookie must not authorise.
fn is_websocket_upgrade(method: &http::Method, headers: &http::HeaderMap) -> bool {
    let has_token = |name: http::header::HeaderName, token: &str| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    };
    method == http::Method::GET
        && has_token(http::header::UPGRADE, "websocket")
        && has_token(http::header::CONNECTION, "upgrade")
        && headers.contains_key(http::header::SEC_WEBSOCKET_KEY)
}

/// A request a browser made from a page of this server (or a client that is not a browser
/// and sends no `Origin`): the origin's host and port are the `Host` it addressed.
fn is_same_origin(headers: &http::HeaderMap) -> bool {
    let Some(origin) = headers.get(http::header::ORIGIN) else {
        return true;
    };
    let (Ok(origin), Some(host)) = (
        origin.to_str(),
        headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok()),
    ) else {
        return false;
    };
    origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .is_some_and(|origin_host| origin_host.eq_ignore_ascii_case(host))
}

/// The `Authorization` header values that are accepted, and the failed-login record shared by
/// every connection.
#[derive(Clone)]
pub struct AuthLayer {
    accepted: Arc<Vec<Vec<u8>>>,
    failures: Arc<Mutex<FailedLogins>>,
    sessions: Arc<Mutex<Sessions>>,
    /// Plain HTTP routes answered here, before jsonrpsee (`http_routes`).
    routes: Option<Arc<HttpRoutes>>,
}

/// One address's failed logins in the current window.
#[derive(Clone, Copy, Debug)]
struct Failures {
    count: u32,
    since: Instant,
}

/// Failed logins per source address, bounded by `MAX_TRACKED_ADDRESSES`.
#[derive(Debug, Default)]
struct FailedLogins {
    by_address: HashMap<IpAddr, Failures>,
}

/// What to do with a failed login.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    /// HTTP 401 now.
    Refuse,
    /// HTTP 429 after `AUTH_THROTTLE_DELAY`; retry after this long.
    Throttle { retry_after: Duration },
}

impl FailedLogins {
    /// Counts a failed login from `ip` at `now`, logs it (rate-limited) and says how to answer.
    fn record(&mut self, ip: IpAddr, now: Instant) -> Verdict {
        if let Some(old) = self.by_address.get(&ip).copied() {
            if now.duration_since(old.since) >= AUTH_FAILURE_WINDOW {
                self.by_address.remove(&ip);
                let unlogged = old.count.saturating_sub(MAX_AUTH_FAILURES + 1);
                if unlogged > 0 {
                    tracing::warn!(source = %ip, unlogged, "RPC: more failed logins in the last window than were logged");
                }
            }
        }
        if !self.by_address.contains_key(&ip) && self.by_address.len() >= MAX_TRACKED_ADDRESSES {
            self.by_address
                .retain(|_, f| now.duration_since(f.since) < AUTH_FAILURE_WINDOW);
            if self.by_address.len() >= MAX_TRACKED_ADDRESSES {
                let oldest = self
                    .by_address
                    .iter()
                    .min_by_key(|(_, f)| f.since)
                    .map(|(a, _)| *a);
                if let Some(oldest) = oldest {
                    self.by_address.remove(&oldest);
                }
            }
        }
        let entry = self.by_address.entry(ip).or_insert(Failures {
            count: 0,
            since: now,
        });
        entry.count = entry.count.saturating_add(1);
        let count = entry.count;
        let retry_after = AUTH_FAILURE_WINDOW.saturating_sub(now.duration_since(entry.since));
        if count <= MAX_AUTH_FAILURES {
            tracing::warn!(source = %ip, failures = count, "RPC: failed login (wrong or missing credentials)");
            Verdict::Refuse
        } else {
            if count == MAX_AUTH_FAILURES + 1 {
                tracing::warn!(
                    source = %ip,
                    failures = count,
                    retry_after_secs = retry_after.as_secs(),
                    "RPC: failed login; throttling this address (further failures in this window are answered 429 and not logged one by one)"
                );
            }
            Verdict::Throttle { retry_after }
        }
    }
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
            failures: Arc::default(),
            sessions: Arc::default(),
            routes: None,
        }
    }

    /// Answers `routes` before JSON-RPC; each route makes its own auth decision.
    pub fn with_routes(mut self, routes: HttpRoutes) -> Self {
        self.routes = Some(Arc::new(routes));
        self
    }

    /// The check in front of `inner` for one connection from `peer`.
    pub fn service<S>(&self, inner: S, peer: IpAddr) -> Auth<S> {
        Auth {
            inner,
            layer: self.clone(),
            peer,
        }
    }

    fn failed_login(&self, peer: IpAddr) -> Verdict {
        self.failures
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .record(peer, Instant::now())
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, Sessions> {
        self.sessions
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether `headers` carry a live session cookie.
    fn has_session(&self, headers: &http::HeaderMap) -> bool {
        session_token(headers).is_some_and(|token| self.sessions().is_valid(&token, Instant::now()))
    }

    /// Whether a request may pass on its session cookie: a same-origin WebSocket upgrade
    /// (the dashboard's) with a live session.
    fn session_allows(&self, method: &http::Method, headers: &http::HeaderMap) -> bool {
        is_websocket_upgrade(method, headers)
            && is_same_origin(headers)
            && self.has_session(headers)
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

#[derive(Clone)]
pub struct Auth<S> {
    inner: S,
    layer: AuthLayer,
    /// The connection's source address.
    peer: IpAddr,
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

fn no_content() -> http::response::Builder {
    http::Response::builder()
        .status(http::StatusCode::NO_CONTENT)
        .header(http::header::CACHE_CONTROL, "no-store")
}

/// `POST /session` signed in: the new session's cookie.
fn session_created(token: &SessionToken) -> HttpResponse {
    let cookie = format!(
        "{SESSION_COOKIE}={}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}",
        hex::encode(token),
        SESSION_LIFETIME.as_secs()
    );
    no_content()
        .header(http::header::SET_COOKIE, cookie)
        .body(HttpBody::empty())
        .expect("a valid response")
}

/// `GET /session`: 204 when the cookie is a live session, else 401 without a Basic
/// challenge (the page asks for credentials itself; a browser prompt would get in the way).
fn session_status(live: bool) -> HttpResponse {
    let builder = if live {
        no_content()
    } else {
        http::Response::builder().status(http::StatusCode::UNAUTHORIZED)
    };
    builder.body(HttpBody::empty()).expect("a valid response")
}

fn cross_origin() -> HttpResponse {
    http::Response::builder()
        .status(http::StatusCode::FORBIDDEN)
        .header(http::header::CONTENT_TYPE, "text/plain")
        .body(HttpBody::from(
            "403 Forbidden: a page of another origin may not call this node's RPC\n",
        ))
        .expect("a static response is valid")
}

fn too_many_requests(retry_after: Duration) -> HttpResponse {
    http::Response::builder()
        .status(http::StatusCode::TOO_MANY_REQUESTS)
        .header(http::header::RETRY_AFTER, retry_after.as_secs().max(1))
        .header(http::header::CONTENT_TYPE, "text/plain")
        .body(HttpBody::from(
            "429 Too Many Requests: too many failed logins from this address; use the credentials in <datadir>/.cookie or --rpcuser/--rpcpassword\n",
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
        let headers = request.headers();
        let path = request.uri().path();
        if !is_websocket_upgrade(request.method(), headers) {
            if let Some(page) = super::dashboard::asset(request.method(), path) {
                return Box::pin(std::future::ready(Ok(page)));
            }
        }
        // Another site's page in a browser that holds Basic credentials for this port (from
        // a prompt, say) could otherwise make calls with them: browsers say where a request
        // comes from, and only this server's own pages may call it.
        if !is_same_origin(headers) {
            return Box::pin(std::future::ready(Ok(cross_origin())));
        }
        let signed_in = self.layer.allows(headers.get(http::header::AUTHORIZATION));
        if let Some(routes) = &self.layer.routes {
            if let Some(response) = routes.respond(&request, signed_in) {
                return Box::pin(std::future::ready(Ok(response)));
            }
        }
        if path == "/session" {
            if request.method() == http::Method::GET {
                let live = self.layer.has_session(headers);
                return Box::pin(std::future::ready(Ok(session_status(live))));
            }
            if request.method() == http::Method::POST && signed_in {
                let token = self.layer.sessions().create(Instant::now());
                return Box::pin(std::future::ready(Ok(session_created(&token))));
            }
        }
        if signed_in || self.layer.session_allows(request.method(), headers) {
            return Box::pin(self.inner.call(request));
        }
        // The dashboard's sign-in gets no Basic challenge: a browser would put up its own
        // password prompt over the page's form.
        let challenge = path != "/session";
        match self.layer.failed_login(self.peer) {
            Verdict::Refuse if challenge => Box::pin(std::future::ready(Ok(unauthorized()))),
            Verdict::Refuse => Box::pin(std::future::ready(Ok(session_status(false)))),
            Verdict::Throttle { retry_after } => Box::pin(async move {
                tokio::time::sleep(AUTH_THROTTLE_DELAY).await;
                Ok(too_many_requests(retry_after))
            }),
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

    #[test]
    fn failed_logins_are_throttled_per_address_within_the_window() {
        let mut failures = FailedLogins::default();
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let t0 = Instant::now();
        for _ in 0..MAX_AUTH_FAILURES {
            assert_eq!(failures.record(a, t0), Verdict::Refuse);
        }
        assert!(matches!(failures.record(a, t0), Verdict::Throttle { .. }));
        assert_eq!(failures.record(b, t0), Verdict::Refuse, "another address");
        let later = t0 + AUTH_FAILURE_WINDOW;
        assert_eq!(failures.record(a, later), Verdict::Refuse, "a new window");
    }

    /// `/metrics` through the whole `Auth` service: the route answers before the inner
    /// (JSON-RPC) service, and only where the bind and the credentials allow it.
    #[tokio::test]
    async fn metrics_route_follows_the_bind_address_through_the_auth_service() {
        use tower::{Service, ServiceExt};
        let b64 = base64::engine::general_purpose::STANDARD.encode("__cookie__:abc");
        let call = |bind: &str, credentials: bool| {
            let routes = HttpRoutes::new(Arc::default(), bind.parse().unwrap());
            let layer = AuthLayer::new([("__cookie__", "abc")]).with_routes(routes);
            let inner = tower::service_fn(|_: HttpRequest<()>| async {
                Ok::<_, BoxError>(HttpResponse::new(HttpBody::from("json-rpc")))
            });
            let mut request = http::Request::builder().uri("/metrics");
            if credentials {
                request = request.header(http::header::AUTHORIZATION, format!("Basic {b64}"));
            }
            let request = request.body(()).unwrap();
            let mut service = layer.service(inner, "10.0.0.9".parse().unwrap());
            async move {
                let response = service.ready().await.unwrap().call(request).await.unwrap();
                let metrics = response
                    .headers()
                    .get(http::header::CONTENT_TYPE)
                    .is_some_and(|v| v == crate::metrics::CONTENT_TYPE);
                (response.status(), metrics)
            }
        };
        let ok = (http::StatusCode::OK, true);
        assert_eq!(call("127.0.0.1:8332", false).await, ok);
        assert_eq!(call("0.0.0.0:8332", true).await, ok);
        let refused = call("0.0.0.0:8332", false).await;
        assert_eq!(refused, (http::StatusCode::UNAUTHORIZED, false));
    }

    #[tokio::test]
    async fn a_page_of_another_origin_cannot_call_even_with_credentials() {
        use tower::{Service, ServiceExt};
        let b64 = base64::engine::general_purpose::STANDARD.encode("__cookie__:abc");
        let call = |origin: Option<&str>| {
            let layer = AuthLayer::new([("__cookie__", "abc")]);
            let inner = tower::service_fn(|_: HttpRequest<()>| async {
                Ok::<_, BoxError>(HttpResponse::new(HttpBody::from("json-rpc")))
            });
            let mut request = http::Request::builder()
                .method(http::Method::POST)
                .uri("/")
                .header(http::header::HOST, "127.0.0.1:8332")
                .header(http::header::AUTHORIZATION, format!("Basic {b64}"));
            if let Some(origin) = origin {
                request = request.header(http::header::ORIGIN, origin);
            }
            let request = request.body(()).unwrap();
            let mut service = layer.service(inner, "127.0.0.1".parse().unwrap());
            async move {
                let response = service.ready().await.unwrap().call(request).await.unwrap();
                response.status()
            }
        };
        assert_eq!(
            call(None).await,
            http::StatusCode::OK,
            "curl sends no Origin"
        );
        assert_eq!(
            call(Some("http://127.0.0.1:8332")).await,
            http::StatusCode::OK
        );
        assert_eq!(
            call(Some("http://evil.example")).await,
            http::StatusCode::FORBIDDEN
        );
        assert_eq!(call(Some("null")).await, http::StatusCode::FORBIDDEN);
    }

    #[test]
    fn sessions_are_bounded_and_expire() {
        let mut sessions = Sessions::default();
        let t0 = Instant::now();
        let first = sessions.create(t0);
        assert!(sessions.is_valid(&first, t0));
        assert!(!sessions.is_valid(&[7u8; 32], t0));
        for _ in 0..MAX_SESSIONS {
            sessions.create(t0);
        }
        assert_eq!(sessions.live.len(), MAX_SESSIONS);
        assert!(
            !sessions.is_valid(&first, t0),
            "the oldest session was ended"
        );
        let last = sessions.create(t0);
        assert!(!sessions.is_valid(&last, t0 + SESSION_LIFETIME), "expired");
        assert!(sessions.live.is_empty());
    }

    #[test]
    fn a_session_opens_only_a_same_origin_websocket() {
        let layer = AuthLayer::new([("__cookie__", "abc")]);
        let token = layer.sessions().create(Instant::now());
        let request = |cookie: &str, upgrade: bool, origin: Option<&str>| {
            let mut headers = http::HeaderMap::new();
            headers.insert(http::header::HOST, "127.0.0.1:8332".parse().unwrap());
            headers.insert(http::header::COOKIE, cookie.parse().unwrap());
            if upgrade {
                headers.insert(http::header::UPGRADE, "websocket".parse().unwrap());
                headers.insert(
                    http::header::CONNECTION,
                    "keep-alive, Upgrade".parse().unwrap(),
                );
                headers.insert(
                    http::header::SEC_WEBSOCKET_KEY,
                    "dGhlIHNhbXBsZSBub25jZQ==".parse().unwrap(),
                );
            }
            if let Some(origin) = origin {
                headers.insert(http::header::ORIGIN, origin.parse().unwrap());
            }
            headers
        };
        let cookie = format!("theme=dark; {SESSION_COOKIE}={}", hex::encode(token));
        let own = Some("http://127.0.0.1:8332");
        let get = http::Method::GET;
        let allows = |method: &http::Method, headers: http::HeaderMap| {
            layer.session_allows(method, &headers)
        };
        assert!(allows(&get, request(&cookie, true, own)));
        assert!(allows(&get, request(&cookie, true, None)));
        assert!(
            !allows(&get, request(&cookie, false, own)),
            "plain HTTP needs the credentials"
        );
        assert!(!allows(
            &get,
            request(&cookie, true, Some("http://evil.example"))
        ));
        assert!(!allows(
            &get,
            request(&cookie, true, Some("http://127.0.0.1:9999"))
        ));
        let forged = format!("{SESSION_COOKIE}={}", hex::encode([1u8; 32]));
        assert!(!allows(&get, request(&forged, true, own)));
        assert!(!allows(&get, request("noded_session=zz", true, own)));
        // Only a real handshake: a POST, or an Upgrade header without `Connection: upgrade`,
        // is served as plain HTTP.
        assert!(!allows(&http::Method::POST, request(&cookie, true, own)));
        let mut half = request(&cookie, true, own);
        half.remove(http::header::CONNECTION);
        assert!(!allows(&get, half));
    }

    #[test]
    fn the_failure_record_is_bounded() {
        let mut failures = FailedLogins::default();
        let now = Instant::now();
        for i in 0..(MAX_TRACKED_ADDRESSES as u32 + 10) {
            failures.record(IpAddr::from(i.to_be_bytes()), now);
        }
        assert_eq!(failures.by_address.len(), MAX_TRACKED_ADDRESSES);
    }
}
