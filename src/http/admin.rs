//! `/$admin/…`: storage administration for `localzure storage …` and `localzure stop`.
//! Answers loopback callers only, unless `LOCALZURE_ADMIN_TOKEN` is set and presented as
//! `Authorization: Bearer <token>`.

use super::{empty, error_body, reply, HttpState, Reply, Request};
use crate::storage::export::ExportDocument;
use http::{Method, StatusCode};

fn authorized(state: &HttpState, req: &Request) -> bool {
    if let Some(token) = &state.admin_token {
        let presented = req
            .headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        if presented == Some(token.as_str()) {
            return true;
        }
    }
    req.remote.is_some_and(|a| a.ip().is_loopback())
}

fn json(v: &impl serde::Serialize) -> Reply {
    match serde_json::to_string(v) {
        Ok(s) => reply(StatusCode::OK, "application/json", s),
        Err(e) => error_body(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

/// Dispatches `/$admin/{verb}`.
pub async fn handle(state: &HttpState, req: &Request) -> Reply {
    if !authorized(state, req) {
        return error_body(
            StatusCode::UNAUTHORIZED,
            "The admin API answers loopback callers, or callers presenting LOCALZURE_ADMIN_TOKEN.",
        );
    }
    let verb = req.segments.get(1).map(String::as_str).unwrap_or("");
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
        // POST /$admin/shutdown — graceful stop (`localzure stop`).
        (&Method::POST, "shutdown") => {
            state.shutdown.cancel();
            empty(StatusCode::ACCEPTED)
        }
        _ => error_body(StatusCode::NOT_FOUND, "Unknown admin command."),
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
}
