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
    crate::metrics::global().set_parked_receives(state.backend.parked_receives());
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

    fn scrape(sas: bool, remote: &str, auth: Option<String>) -> StatusCode {
        let state = HttpState {
            backend: crate::service::ServiceBusBackend::new(None),
            max_message_size: 1024,
            admin_token: None,
            sas: sas.then(|| crate::sas::SasKey {
                name: "RootManageSharedAccessKey".into(),
                key: "k".into(),
            }),
            shutdown: tokio_util::sync::CancellationToken::new(),
        };
        let mut headers = http::HeaderMap::new();
        headers.insert(
            http::header::HOST,
            http::HeaderValue::from_static("localhost"),
        );
        if let Some(a) = auth {
            headers.insert(
                http::header::AUTHORIZATION,
                http::HeaderValue::from_str(&a).unwrap(),
            );
        }
        let req = Request {
            method: Method::GET,
            segments: segs("metrics"),
            query: Default::default(),
            headers,
            body: bytes::Bytes::new(),
            remote: Some(remote.parse().unwrap()),
            base_url: "http://localhost".into(),
        };
        metrics(&state, &req).status()
    }

    /// Open without SAS; with SAS, loopback or a valid token (192.0.2.0/24 is documentation).
    #[test]
    fn access_follows_the_data_plane() {
        let outside = "192.0.2.7:4000";
        assert_eq!(scrape(false, outside, None), StatusCode::OK);
        assert_eq!(scrape(true, "127.0.0.1:4000", None), StatusCode::OK);
        assert_eq!(scrape(true, outside, None), StatusCode::UNAUTHORIZED);
        let key = crate::sas::SasKey {
            name: "RootManageSharedAccessKey".into(),
            key: "k".into(),
        };
        let valid = crate::sas::token(&key, "sb://localhost/", u64::MAX / 2);
        assert_eq!(scrape(true, outside, Some(valid)), StatusCode::OK);
        let wrong = crate::sas::SasKey {
            key: "other".into(),
            ..key
        };
        let forged = crate::sas::token(&wrong, "sb://localhost/", u64::MAX / 2);
        assert_eq!(
            scrape(true, outside, Some(forged)),
            StatusCode::UNAUTHORIZED
        );
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
