//! `GET /health`: `{"status":"healthy"}` as the official emulator answers, plus persistence
//! facts so a degraded (fallen back to memory) or failing journal is visible.

use super::{reply, HttpState, Reply};
use http::StatusCode;

/// GET /health
pub fn health(state: &HttpState) -> Reply {
    let status = state.backend.status();
    let journal = state.backend.journal_healthy();
    let healthy = journal.is_ok();
    let body = serde_json::json!({
        "status": if healthy { "healthy" } else { "unhealthy" },
        "storage": {
            "type": status.storage_type,
            "persistent": status.degraded.is_none() && status.storage_type != "in-memory",
            "degraded": status.degraded,
            "journalError": journal.err(),
        },
    });
    reply(
        if healthy {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        },
        "application/json",
        body.to_string(),
    )
}
