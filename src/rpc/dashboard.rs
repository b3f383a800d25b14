//! The built-in web dashboard: a static page, its script and its style, compiled into the
//! binary and served on the RPC port at `GET /`.
//!
//! Owns the assets and their HTTP headers only. The page holds no secret and needs none to
//! load; everything it shows comes over the authenticated WebSocket (see `auth` for the
//! session cookie it signs in for). Must never embed node data or credentials in an asset.

use jsonrpsee::server::{HttpBody, HttpResponse};

const INDEX_HTML: &str = include_str!("dashboard/index.html");
const SCRIPT: &str = include_str!("dashboard/dashboard.js");
const STYLE: &str = include_str!("dashboard/dashboard.css");

/// Only the page's own script, style and WebSocket: no inline code, nothing from elsewhere,
/// no framing (the sign-in form must not be overlaid by another site).
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The asset at `path` for a GET, if it is one of the dashboard's.
pub fn asset(method: &http::Method, path: &str) -> Option<HttpResponse> {
    if method != http::Method::GET && method != http::Method::HEAD {
        return None;
    }
    if path == "/favicon.ico" {
        // Browsers ask for it unprompted; without this it would be a failed login, logged
        // and counted toward the throttle on every page load.
        return Some(
            http::Response::builder()
                .status(http::StatusCode::NO_CONTENT)
                .body(HttpBody::empty())
                .expect("a static response is valid"),
        );
    }
    let (body, content_type) = match path {
        "/" | "/index.html" => (INDEX_HTML, "text/html; charset=utf-8"),
        "/dashboard.js" => (SCRIPT, "text/javascript; charset=utf-8"),
        "/dashboard.css" => (STYLE, "text/css; charset=utf-8"),
        _ => return None,
    };
    let response = http::Response::builder()
        .status(http::StatusCode::OK)
        .header(http::header::CONTENT_TYPE, content_type)
        .header(
            http::header::CONTENT_SECURITY_POLICY,
            CONTENT_SECURITY_POLICY,
        )
        .header(http::header::X_CONTENT_TYPE_OPTIONS, "nosniff")
        .header(http::header::X_FRAME_OPTIONS, "DENY")
        .header(http::header::REFERRER_POLICY, "no-referrer")
        .header(http::header::CACHE_CONTROL, "no-cache")
        .body(HttpBody::from(body))
        .expect("a static response is valid");
    Some(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_and_its_assets_are_served_and_nothing_else() {
        let get = http::Method::GET;
        for path in ["/", "/index.html", "/dashboard.js", "/dashboard.css"] {
            let response = asset(&get, path).expect(path);
            assert_eq!(response.status(), 200);
            assert!(response
                .headers()
                .contains_key(http::header::CONTENT_SECURITY_POLICY));
        }
        assert_eq!(asset(&get, "/favicon.ico").unwrap().status(), 204);
        assert!(asset(&get, "/metrics").is_none());
        assert!(asset(&get, "/.cookie").is_none());
        assert!(
            asset(&http::Method::POST, "/").is_none(),
            "POST / is JSON-RPC"
        );
    }

    #[test]
    fn the_page_loads_only_its_own_assets() {
        // Nothing inline (the policy forbids it) and nothing from another origin.
        assert!(!INDEX_HTML.contains("<script>"));
        assert!(!INDEX_HTML.contains("style="));
        assert!(!INDEX_HTML.contains("http://") && !INDEX_HTML.contains("https://"));
        assert!(!SCRIPT.contains("http://") && !SCRIPT.contains("https://"));
    }
}
