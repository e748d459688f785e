//! `GET /health`: the official emulator's body (`{"status":"healthy","message":"Service is
//! healthy."}`, or 503 with `"unhealthy"` and `"Service not available. Please try after some
//! time."`, as its `ServiceBus-Emulator/Schema/HealthCheckApiSchema.md` documents), plus
//! persistence facts under `storage` so a degraded (fallen back to memory) or failing journal
//! is visible.

use super::{reply, HttpState, Reply};
use http::StatusCode;

/// GET /health
pub fn health(state: &HttpState) -> Reply {
    let status = state.backend.status();
    let journal = state.backend.journal_healthy();
    let healthy = journal.is_ok();
    let body = serde_json::json!({
        "status": if healthy { "healthy" } else { "unhealthy" },
        "message": if healthy {
            "Service is healthy."
        } else {
            "Service not available. Please try after some time."
        },
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
