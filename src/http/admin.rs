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
