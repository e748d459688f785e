//! The admin API against a web page in the user's browser (issue 18, item 6) and behind an
//! IPv6 wildcard bind (item 7): each attack that the hardening pass reproduced, refused.
//!
//! A page can send "simple" cross-origin requests without asking (a `POST` with
//! `Content-Type: text/plain`), and with DNS rebinding its own host name resolves to
//! 127.0.0.1 so it can read answers too. Browsers always send the page's host name as `Host`
//! and, cross-origin, an `Origin`.

mod common;

use common::*;
use localzure::cli::{self, StorageCommand, Target};
use localzure::config::Config;
use reqwest::{Method, StatusCode};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

const TEXT_PLAIN: (&str, &str) = ("Content-Type", "text/plain");

async fn server_with_queue() -> TestServer {
    let s = TestServer::start().await;
    s.create_queue("orders", "").await;
    s
}

fn assert_forbidden(r: &Reply, what: &str) {
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{what}: {}", r.body);
    // The service's error shape.
    assert!(
        r.body.contains("<Error><Code>403</Code>"),
        "{what}: {}",
        r.body
    );
}

#[tokio::test]
async fn simple_post_cannot_purge() {
    let s = server_with_queue().await;
    let r = s
        .request(Method::POST, "$admin/purge", &[TEXT_PLAIN], "x")
        .await;
    assert_forbidden(&r, "purge");
    assert_eq!(s.get("orders").await.status, 200, "the queue survives");
    s.stop().await;
}

#[tokio::test]
async fn simple_post_cannot_import() {
    let s = TestServer::start().await;
    // An empty namespace's export: importing it would delete the queue.
    let doc = s.get("$admin/export").await;
    assert_eq!(doc.status, 200, "{}", doc.body);
    let doc = doc.body;
    s.create_queue("orders", "").await;
    let r = s
        .request(Method::POST, "$admin/import", &[TEXT_PLAIN], doc.clone())
        .await;
    assert_forbidden(&r, "import");
    assert_eq!(s.get("orders").await.status, 200, "the queue survives");
    s.stop().await;
}

#[tokio::test]
async fn simple_post_cannot_shut_down() {
    let s = server_with_queue().await;
    let r = s
        .request(Method::POST, "$admin/shutdown", &[TEXT_PLAIN], "")
        .await;
    assert_forbidden(&r, "shutdown");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(s.get("health").await.status, 200, "still serving");
    s.stop().await;
}

#[tokio::test]
async fn rebound_host_cannot_export() {
    let s = server_with_queue().await;
    let port = s
        .base_url
        .rsplit(':')
        .next()
        .unwrap_or_default()
        .to_string();
    let r = s
        .request(
            Method::GET,
            "$admin/export",
            &[("Host", &format!("attacker.example:{port}"))],
            "",
        )
        .await;
    assert_forbidden(&r, "export with a foreign Host");
    assert!(!r.body.contains("orders"), "{}", r.body);
    // Addressed by a loopback name, export works.
    let r = s
        .request(
            Method::GET,
            "$admin/export",
            &[("Host", &format!("localhost:{port}"))],
            "",
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    s.stop().await;
}

#[tokio::test]
async fn foreign_origin_is_refused_even_with_the_admin_header() {
    let s = server_with_queue().await;
    for (method, path) in [
        (Method::GET, "$admin/stats"),
        (Method::POST, "$admin/purge"),
    ] {
        let r = s
            .request(
                method,
                path,
                &[
                    ("Origin", "http://attacker.example"),
                    ("X-LocalZure-Admin", "1"),
                ],
                "",
            )
            .await;
        assert_forbidden(&r, path);
    }
    assert_eq!(s.get("orders").await.status, 200, "the queue survives");
    // A page on a loopback origin (e.g. a local console) may call it.
    let r = s
        .request(
            Method::GET,
            "$admin/stats",
            &[("Origin", "http://localhost:3000")],
            "",
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    s.stop().await;
}

#[tokio::test]
async fn cors_preflight_is_never_approved() {
    let s = server_with_queue().await;
    let r = s
        .request(
            Method::OPTIONS,
            "$admin/purge",
            &[
                ("Origin", "http://attacker.example"),
                ("Access-Control-Request-Method", "POST"),
                ("Access-Control-Request-Headers", "x-localzure-admin"),
            ],
            "",
        )
        .await;
    assert!(!r.status.is_success(), "{}: {}", r.status, r.body);
    assert!(
        !r.headers
            .keys()
            .any(|k| k.as_str().starts_with("access-control-allow")),
        "{:?}",
        r.headers
    );
    s.stop().await;
}

#[tokio::test]
async fn non_simple_requests_and_the_cli_still_work() {
    let s = server_with_queue().await;
    let r = s
        .request(
            Method::POST,
            "$admin/compact",
            &[("X-LocalZure-Admin", "1")],
            "",
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let target = Target {
        base_url: s.base_url.clone(),
        token: None,
    };
    let cfg = Config::default();
    cli::storage(
        &cfg,
        &target,
        StorageCommand::Stats {
            json: true,
            entities: false,
        },
    )
    .await
    .expect("storage stats");
    cli::storage(&cfg, &target, StorageCommand::Purge { yes: true })
        .await
        .expect("storage purge");
    assert_eq!(s.get("orders").await.status, 404, "purged");
    cli::stop(&target).await.expect("stop");
    s.stop().await;
}

/// Serves on `bind` (a wildcard address) and calls the admin API from IPv4 loopback.
async fn admin_from_ipv4_loopback(bind: &str) {
    let listener = TcpListener::bind(bind).await.expect("bind");
    let port = listener.local_addr().expect("local address").port();
    let shutdown = CancellationToken::new();
    let token = shutdown.clone();
    let (backend, _clock) = TestServer::backend();
    let task = tokio::spawn(async move {
        localzure::server::run(listener, backend, &Config::default(), token).await
    });
    let target = Target {
        base_url: format!("http://127.0.0.1:{port}"),
        token: None,
    };
    cli::storage(
        &Config::default(),
        &target,
        StorageCommand::Stats {
            json: true,
            entities: false,
        },
    )
    .await
    .unwrap_or_else(|e| panic!("storage stats with the server on {bind}: {e}"));
    shutdown.cancel();
    let stopped = tokio::time::timeout(Duration::from_secs(20), task).await;
    assert!(matches!(stopped, Ok(Ok(Ok(())))), "{stopped:?}");
}

#[tokio::test]
async fn ipv4_wildcard_bind_admin_from_loopback() {
    admin_from_ipv4_loopback("0.0.0.0:0").await;
}

#[tokio::test]
async fn ipv6_wildcard_bind_admin_from_ipv4_loopback() {
    // IPv4 callers of a dual-stack `::` socket arrive as `::ffff:127.0.0.1`.
    let has_ipv6 = std::fs::read_to_string("/proc/net/if_inet6").is_ok_and(|s| !s.is_empty());
    if !has_ipv6 {
        eprintln!("skipped: this machine has no IPv6");
        return;
    }
    admin_from_ipv4_loopback("[::]:0").await;
}
