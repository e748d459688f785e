//! `GET /metrics`: the Prometheus text exposition of [`crate::metrics`], and the operation
//! names HTTP request latencies are recorded under.
//!
//! Access follows the data plane: open when SAS is off; with SAS on, a valid SAS token or a
//! loopback caller (a Prometheus scraper beside the server needs no token).

use super::{error_body, reply, HttpState, Reply, Request};
use http::{Method, StatusCode};

/// The content type of the OpenMetrics text format `prometheus-client` writes
/// (<https://prometheus.io/docs/specs/om/open_metrics_spec/>).
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Answers `GET /metrics`.
pub fn metrics(state: &HttpState, req: &Request) -> Reply {
    let loopback = req
        .remote
        .is_some_and(|a| a.ip().to_canonical().is_loopback());
    if !loopback {
        if let Err(detail) = super::authorize(state, req) {
            return error_body(StatusCode::UNAUTHORIZED, &detail);
        }
    }
    let entities = state.backend.entities();
    reply(
        StatusCode::OK,
        CONTENT_TYPE,
        crate::metrics::global().render(&entities),
    )
}

/// The operation a request performs, as the `operation` label of
/// `localzure_request_duration_seconds{plane="http"}`: a fixed set, never the path itself.
pub fn operation(method: &Method, segments: &[String]) -> &'static str {
    let eq = |a: &str, b: &str| a.eq_ignore_ascii_case(b);
    let n = segments.len();
    let seg = |i: usize| segments.get(i).map(String::as_str).unwrap_or("");
    match segments.first().map(String::as_str) {
        None => "other",
        Some("health") => "health",
        Some("metrics") => "metrics",
        Some(f) if eq(f, "$admin") => "admin",
        _ if n >= 3 && eq(seg(n - 2), "messages") && eq(seg(n - 1), "head") => "receive",
        _ if n >= 2 && eq(seg(n - 1), "messages") => "send",
        _ if n >= 4 && eq(seg(n - 3), "messages") => match *method {
            Method::DELETE => "complete",
            Method::PUT => "abandon",
            Method::POST => "renew_lock",
            _ => "other",
        },
        _ => match *method {
            Method::GET => "management_get",
            Method::PUT => "management_put",
            Method::DELETE => "management_delete",
            _ => "other",
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segs(p: &str) -> Vec<String> {
        p.split('/')
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect()
    }

    #[test]
    fn operations_are_a_fixed_set() {
        assert_eq!(operation(&Method::POST, &segs("q/messages")), "send");
        assert_eq!(
            operation(&Method::DELETE, &segs("q/messages/head")),
            "receive"
        );
        assert_eq!(
            operation(&Method::DELETE, &segs("q/messages/1/t")),
            "complete"
        );
        assert_eq!(
            operation(&Method::PUT, &segs("t/Subscriptions/s")),
            "management_put"
        );
        assert_eq!(operation(&Method::GET, &segs("metrics")), "metrics");
        assert_eq!(operation(&Method::POST, &segs("$admin/purge")), "admin");
    }
}
