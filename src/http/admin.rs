//! `/$admin/…`: storage administration for `localzure storage …` and `localzure stop`.
//! Answers loopback callers only, unless `LOCALZURE_ADMIN_TOKEN` is set and presented as
//! `Authorization: Bearer <token>`.
//!
//! A web page in the user's browser is also a loopback caller, so loopback callers must
//! besides (issue 18, CSRF and DNS rebinding):
//! - name a loopback `Host` (`localhost`, `127.0.0.0/8`, `[::1]`, any port): a rebound DNS
//!   name arrives with the attacker's host name;
//! - carry no `Origin`, or a loopback one: browsers send `Origin` on cross-origin requests;
//! - for `POST`, send `X-LocalZure-Admin` or `Content-Type: application/json`: neither is a
//!   "simple" request, so a browser must ask first (a CORS preflight), which this API never
//!   approves (it sends no `Access-Control-Allow-*` header).
//!
//! The CLI sends `X-LocalZure-Admin: 1` on every call. A valid bearer token proves the
//! caller is no browser page (which can't know it): only the `Origin` rule applies then.

use super::{empty, error_body, reply, HttpState, Reply, Request};
use crate::storage::export::ExportDocument;
use http::{Method, StatusCode};
use std::net::IpAddr;

/// The header the CLI sends so its `POST`s are not "simple" browser requests.
pub const ADMIN_HEADER: &str = "X-LocalZure-Admin";

fn token_presented(state: &HttpState, req: &Request) -> bool {
    let Some(token) = &state.admin_token else {
        return false;
    };
    let presented = req
        .headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    presented == Some(token.as_str())
}

/// Is the caller's address loopback? An IPv4 caller of a server bound to `::` arrives as
/// `::ffff:127.0.0.1`, so the address is canonicalised first.
fn loopback_caller(req: &Request) -> bool {
    req.remote
        .is_some_and(|a| a.ip().to_canonical().is_loopback())
}

#[cfg(test)]
fn authorized(state: &HttpState, req: &Request) -> bool {
    token_presented(state, req) || loopback_caller(req)
}

/// Is `authority` (`host[:port]`, as in `Host` and after an `Origin`'s scheme) a loopback
/// name or address?
fn loopback_authority(authority: &str) -> bool {
    let Some(host) = crate::sas::authority_host(authority) else {
        return false;
    };
    let ip = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || ip
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.to_canonical().is_loopback())
}

/// `Origin: scheme://authority` (or `null`): allowed only for a loopback authority.
fn loopback_origin(origin: &str) -> bool {
    origin
        .split_once("://")
        .is_some_and(|(_, authority)| loopback_authority(authority.trim_end_matches('/')))
}

fn header(req: &Request, name: impl http::header::AsHeaderName) -> Option<&str> {
    req.headers.get(name).and_then(|v| v.to_str().ok())
}

/// The browser rules above; `Err` is the reason for a 403.
fn browser_safe(req: &Request, with_token: bool) -> Result<(), &'static str> {
    if let Some(origin) = req.headers.get(http::header::ORIGIN) {
        if !origin.to_str().is_ok_and(loopback_origin) {
            return Err("The admin API refuses requests from a web page of another origin.");
        }
    }
    if with_token {
        return Ok(());
    }
    if !header(req, http::header::HOST).is_some_and(loopback_authority) {
        return Err(
            "The admin API answers requests addressed to a loopback host name or \
                    address only (Host: localhost, 127.0.0.1 or [::1]).",
        );
    }
    let json = header(req, http::header::CONTENT_TYPE).is_some_and(|ct| {
        ct.split(';')
            .next()
            .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
    });
    if req.method != Method::GET && !json && !req.headers.contains_key(ADMIN_HEADER) {
        return Err(
            "Admin requests other than GET need an X-LocalZure-Admin header or \
                    Content-Type: application/json (the CLI sends them).",
        );
    }
    Ok(())
}

fn json(v: &impl serde::Serialize) -> Reply {
    match serde_json::to_string(v) {
        Ok(s) => reply(StatusCode::OK, "application/json", s),
        Err(e) => error_body(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

/// Dispatches `/$admin/{verb}`.
pub async fn handle(state: &HttpState, req: &Request) -> Reply {
    let with_token = token_presented(state, req);
    if !with_token && !loopback_caller(req) {
        return error_body(
            StatusCode::UNAUTHORIZED,
            "The admin API answers loopback callers, or callers presenting LOCALZURE_ADMIN_TOKEN.",
        );
    }
    if let Err(why) = browser_safe(req, with_token) {
        return error_body(StatusCode::FORBIDDEN, why);
    }
    let verb = req.segments.get(1).map(String::as_str).unwrap_or("");
    if req.method == Method::POST || verb == "export" {
        // One INFO line per administrative action, naming the caller.
        let peer = req
            .remote
            .map_or_else(|| "-".to_string(), |a| a.to_string());
        let how = if with_token {
            "admin token"
        } else {
            "loopback"
        };
        tracing::info!(action = verb, plane = "http", %peer, "admin {verb} requested by {peer} ({how})");
    }
    match (&req.method, verb) {
        // GET /$admin/stats — storage statistics.
        (&Method::GET, "stats") => json(&state.backend.stats()),
        // POST /$admin/snapshot — snapshot now and truncate the log.
        (&Method::POST, "snapshot") => match state.backend.snapshot().await {
            Ok(r) => json(&r),
            Err(e) => error_body(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        },
        // POST /$admin/compact — VACUUM / orphan cleanup.
        (&Method::POST, "compact") => match state.backend.compact().await {
            Ok(()) => json(&serde_json::json!({"compacted": true})),
            Err(e) => error_body(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        },
        // POST /$admin/purge — delete every entity and message.
        (&Method::POST, "purge") => match state.backend.purge().await {
            Ok(()) => json(&serde_json::json!({"purged": true})),
            Err(e) => error_body(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        },
        // GET /$admin/export — the whole state as a portable JSON document.
        (&Method::GET, "export") => match state.backend.export() {
            Ok(doc) => json(&doc),
            Err(e) => error_body(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        },
        // POST /$admin/import — replace the whole state with an export document.
        (&Method::POST, "import") => {
            let text = match std::str::from_utf8(&req.body) {
                Ok(t) => t,
                Err(_) => return error_body(StatusCode::BAD_REQUEST, "The document is not UTF-8."),
            };
            let doc = match ExportDocument::parse(text) {
                Ok(d) => d,
                Err(e) => {
                    return error_body(StatusCode::BAD_REQUEST, &format!("malformed import {e}"))
                }
            };
            match state.backend.import(doc).await {
                Ok(totals) => json(&totals),
                Err(e) => super::error_reply(&e, super::Plane::Management),
            }
        }
        // GET /$admin/peek?entity=PATH[&dlq=true][&count=N][&from=SEQ] — messages by
        // sequence number without locking or changing them (`localzure peek`).
        (&Method::GET, "peek") => peek(state, req),
        // POST /$admin/shutdown — graceful stop (`localzure stop`).
        (&Method::POST, "shutdown") => {
            state.shutdown.cancel();
            empty(StatusCode::ACCEPTED)
        }
        _ => error_body(StatusCode::NOT_FOUND, "Unknown admin command."),
    }
}

/// The most messages one `/$admin/peek` returns.
const MAX_PEEK: usize = 1000;

fn peek(state: &HttpState, req: &Request) -> Reply {
    let Some(entity) = req.query.get("entity").filter(|e| !e.is_empty()) else {
        return error_body(StatusCode::BAD_REQUEST, "peek needs ?entity=PATH.");
    };
    let segs: Vec<&str> = entity.split('/').filter(|s| !s.is_empty()).collect();
    let mut path = match crate::broker::op::QueuePath::parse_segments(&segs) {
        Ok(p) => p,
        Err(e) => return error_body(StatusCode::BAD_REQUEST, &e),
    };
    if req
        .query
        .get("dlq")
        .is_some_and(|v| v == "true" || v == "1")
    {
        path.dead_letter = true;
    }
    let number = |key: &str, default: u64| match req.query.get(key) {
        None => Ok(default),
        Some(v) => v
            .parse::<u64>()
            .map_err(|_| format!("{key} must be a non-negative integer.")),
    };
    let (count, from) = match (number("count", 10), number("from", 0)) {
        (Ok(c), Ok(f)) => (usize::try_from(c).unwrap_or(MAX_PEEK).min(MAX_PEEK), f),
        (Err(e), _) | (_, Err(e)) => return error_body(StatusCode::BAD_REQUEST, &e),
    };
    match state.backend.read(|b| b.peek(&path, from, count)) {
        Ok(messages) => json(&messages),
        Err(e) => super::error_reply(&e.into(), super::Plane::Management),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::ServiceBusBackend;
    use std::net::SocketAddr;

    fn state(token: Option<&str>) -> HttpState {
        HttpState {
            backend: ServiceBusBackend::new(None),
            max_message_size: 1024,
            admin_token: token.map(str::to_string),
            sas: None,
            shutdown: tokio_util::sync::CancellationToken::new(),
        }
    }

    fn request(remote: &str, auth: Option<&str>) -> Request {
        let mut headers = http::HeaderMap::new();
        if let Some(a) = auth {
            headers.insert(
                http::header::AUTHORIZATION,
                http::HeaderValue::from_str(a).unwrap(),
            );
        }
        Request {
            method: Method::GET,
            segments: vec!["$admin".into(), "stats".into()],
            query: Default::default(),
            headers,
            body: bytes::Bytes::new(),
            remote: Some(remote.parse::<SocketAddr>().unwrap()),
            base_url: "http://localhost".into(),
        }
    }

    #[test]
    fn loopback_or_token_only() {
        // 192.0.2.0/24 is a documentation range: a value here, never a destination.
        let outside = "192.0.2.7:40000";
        assert!(authorized(&state(None), &request("127.0.0.1:5000", None)));
        assert!(authorized(&state(None), &request("[::1]:5000", None)));
        // An IPv4 caller of a server bound to `::`.
        assert!(authorized(
            &state(None),
            &request("[::ffff:127.0.0.1]:5000", None)
        ));
        assert!(!authorized(
            &state(None),
            &request("[::ffff:192.0.2.7]:5000", None)
        ));
        assert!(!authorized(&state(None), &request(outside, None)));
        assert!(!authorized(
            &state(None),
            &request(outside, Some("Bearer x"))
        ));
        let s = state(Some("s3cret"));
        assert!(authorized(&s, &request(outside, Some("Bearer s3cret"))));
        assert!(!authorized(&s, &request(outside, Some("Bearer wrong"))));
        assert!(!authorized(&s, &request(outside, Some("s3cret"))));
    }

    #[tokio::test]
    async fn refused_callers_get_401() {
        let r = handle(&state(None), &request("192.0.2.7:40000", None)).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }

    #[test]
    fn loopback_hosts_and_origins() {
        for ok in [
            "localhost",
            "LOCALHOST:5300",
            "localhost.",
            "127.0.0.1",
            "127.1.2.3:80",
            "[::1]",
            "[::1]:5300",
            "[::ffff:127.0.0.1]:5300",
        ] {
            assert!(loopback_authority(ok), "{ok}");
        }
        for bad in [
            "",
            "evil.example",
            "evil.example:5300",
            "localhost.evil.example",
            "127.0.0.1.evil.example",
            "192.0.2.7:5300",
            "[::1]x",
            "localhost:x",
            "[2001:db8::1]:80",
        ] {
            assert!(!loopback_authority(bad), "{bad}");
        }
        assert!(loopback_origin("http://localhost:5300"));
        assert!(loopback_origin("http://127.0.0.1"));
        assert!(!loopback_origin("null"));
        assert!(!loopback_origin("https://evil.example"));
    }
}
