//! The web console (issue 20): one page, embedded in the binary, served at `/`, with a small
//! JSON API under `/$console/api/…` for what the REST API lacks (peek, resubmit, delete one
//! message, purge an entity).
//!
//! Access model (README "Web console"):
//! - The page and its script and style are open: they hold no data (like `/health`).
//! - The console API follows the data plane's rule: open when SAS is off; with SAS on, every
//!   call needs a namespace-wide `SharedAccessSignature` (the page signs one with the key the
//!   user types, as the SDKs do). Everything else the page does goes through the REST
//!   messaging and ATOM management API like any client, or through `/$admin` (storage-wide
//!   actions: loopback or admin token, unchanged).
//! - Against other web pages (CSRF): every console `POST` must carry [`CONSOLE_HEADER`]
//!   (not a "simple" request, so a browser would need a CORS preflight, which is never
//!   approved), and an `Origin`, when sent, must be the server's own origin (`Host`).
//!
//! The page signs SAS tokens as the SDKs do ("Service Bus access control with Shared Access
//! Signatures", learn.microsoft.com/azure/service-bus-messaging/service-bus-sas: HMAC-SHA256 of
//! the URL-encoded resource URI, a newline and the expiry), scoped to the namespace root.
//!
//! `$` cannot start an Azure entity name ([`crate::names`]), so `/$console/…` never shadows an entity; `/` names
//! no entity either. `GET /console` from a browser (HTML accepted, no `api-version`) is
//! redirected to `/`, so an entity named `console` stays reachable by the SDKs.

pub mod api;
pub mod ops;

use crate::http::{reply, HttpState, Reply, Request};
use http::{Method, StatusCode};

/// The header every console `POST` carries (see the module docs).
pub const CONSOLE_HEADER: &str = "X-LocalZure-Console";

const INDEX_HTML: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const APP_CSS: &str = include_str!("assets/app.css");

/// The page's policy: only its own script, style and API; never framed (clickjacking).
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; form-action 'none'; base-uri 'none'; frame-ancestors 'none'";

/// Total bytes of the embedded page (HTML, JS, CSS), for the README's size statement.
pub fn asset_bytes() -> usize {
    INDEX_HTML.len() + APP_JS.len() + APP_CSS.len()
}

fn eq(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

fn asset(content_type: &str, body: &'static str) -> Reply {
    let mut r = reply(StatusCode::OK, content_type, body);
    let h = r.headers_mut();
    for (name, value) in [
        ("Content-Security-Policy", CSP),
        ("X-Frame-Options", "DENY"),
        ("X-Content-Type-Options", "nosniff"),
        ("Referrer-Policy", "no-referrer"),
        ("Cache-Control", "no-cache"),
    ] {
        h.insert(name, http::HeaderValue::from_static(value));
    }
    r
}

fn wants_html(req: &Request) -> bool {
    !req.query.keys().any(|k| eq(k, "api-version"))
        && req
            .headers
            .get(http::header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("text/html"))
}

/// Answers console paths; `None` for every other path (the REST routes answer those).
/// `authorize` is the data plane's SAS check.
pub async fn route(
    state: &HttpState,
    req: &Request,
    authorize: impl Fn(&Request) -> Result<(), String>,
) -> Option<Reply> {
    let segs: Vec<&str> = req.segments.iter().map(String::as_str).collect();
    let get = req.method == Method::GET || req.method == Method::HEAD;
    Some(match segs.as_slice() {
        [] if get => asset("text/html; charset=utf-8", INDEX_HTML),
        [c] if eq(c, "console") && get && wants_html(req) => {
            let mut r = crate::http::empty(StatusCode::FOUND);
            r.headers_mut()
                .insert(http::header::LOCATION, http::HeaderValue::from_static("/"));
            r
        }
        [c, f] if *c == "$console" && get && *f == "app.js" => {
            asset("text/javascript; charset=utf-8", APP_JS)
        }
        [c, f] if *c == "$console" && get && *f == "app.css" => {
            asset("text/css; charset=utf-8", APP_CSS)
        }
        [c, a, rest @ ..] if *c == "$console" && *a == "api" => {
            if let Err(detail) = authorize(req) {
                return Some(crate::http::error_body(StatusCode::UNAUTHORIZED, &detail));
            }
            if let Err(why) = api::same_origin(req) {
                return Some(crate::http::error_body(StatusCode::FORBIDDEN, why));
            }
            api::handle(state, req, rest).await
        }
        [c, ..] if *c == "$console" => {
            crate::http::error_body(StatusCode::NOT_FOUND, "No console resource here.")
        }
        _ => return None,
    })
}
