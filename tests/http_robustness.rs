//! Bad and hostile input over HTTP: oversized headers and bodies, invalid UTF-8, path
//! traversal, many entities, many properties, and a slowloris client. Each must get a clear 4xx
//! (never a hang or a 5xx) while the server keeps serving everyone else.

mod common;

use common::*;
use futures::StreamExt;
use reqwest::{Method, StatusCode};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn addr(server: &TestServer) -> String {
    server.base_url.trim_start_matches("http://").to_string()
}

/// Writes raw bytes as a request head (and optional body) and reads the status of the answer.
async fn raw(server: &TestServer, head: &[u8], body: &[u8]) -> (u16, String) {
    let mut stream = TcpStream::connect(addr(server)).await.expect("connect");
    stream.write_all(head).await.expect("write head");
    // The server may answer and close before reading a refused body: ignore write errors.
    let _ = stream.write_all(body).await;
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), async {
        let mut chunk = [0u8; 8192];
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
            if let Some(i) = find(&buf, b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..i]).to_ascii_lowercase();
                let len = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                if buf.len() >= i + 4 + len {
                    break;
                }
            }
        }
    })
    .await;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    (status, text)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn head(method: &str, path: &[u8], extra: &[u8]) -> Vec<u8> {
    let mut h = Vec::new();
    h.extend_from_slice(method.as_bytes());
    h.push(b' ');
    h.extend_from_slice(path);
    h.extend_from_slice(b" HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    h.extend_from_slice(extra);
    h.extend_from_slice(b"\r\n");
    h
}

#[tokio::test]
async fn oversized_header_is_refused_with_431() {
    let s = TestServer::start().await;
    s.create_queue("q", "").await;
    let big = "x".repeat(100 * 1024);
    let r = s
        .request(Method::POST, "q/messages", &[("x-big", &big)], "hi")
        .await;
    // README: "request headers over 64 KiB get 431".
    assert_eq!(r.status, 431, "100 KB header: {}", r.body);
    // Far beyond hyper's own buffer: refused by hyper itself, with the same 431.
    let huge = format!("x-huge: {}\r\n", "y".repeat(1024 * 1024));
    let (status, _) = raw(&s, &head("GET", b"/q", huge.as_bytes()), b"").await;
    assert_eq!(status, 431, "1 MB header");
    // The server still answers.
    assert_eq!(s.get("q").await.status, 200);
    s.assert_empty("q").await;
    s.stop().await;
}

#[tokio::test]
async fn oversized_body_is_refused_without_buffering() {
    let s = TestServer::start().await;
    s.create_queue("q", "").await;
    // Declared 10 MB: refused from the headers, before any body byte is sent.
    let (status, text) = raw(
        &s,
        &head("POST", b"/q/messages", b"Content-Length: 10485760\r\n"),
        b"",
    )
    .await;
    assert_eq!(status, 413, "{text}");
    // Chunked, no length: refused once the stream passes the limit.
    let chunk = vec![b'a'; 64 * 1024];
    let mut body = Vec::new();
    for _ in 0..160 {
        body.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        body.extend_from_slice(&chunk);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b"0\r\n\r\n");
    let (status, text) = raw(
        &s,
        &head("POST", b"/q/messages", b"Transfer-Encoding: chunked\r\n"),
        &body,
    )
    .await;
    assert_eq!(status, 413, "{text}");
    // A message just over max_message_size (256 KB) keeps the broker's own 413.
    let r = s.send_raw("q", vec![b'b'; 257 * 1024], None, &[]).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.body);
    s.assert_empty("q").await;
    s.send_text("q", "small").await;
    assert_eq!(s.take_one("q").await.body, "small");
    s.stop().await;
}

#[tokio::test]
async fn invalid_utf8_is_refused_with_400() {
    let s = TestServer::start().await;
    s.create_queue("q", "").await;
    // In the path (percent-encoded and raw).
    let (status, _) = raw(&s, &head("GET", b"/q%ff%fe", b""), b"").await;
    assert_eq!(status, 400);
    let (status, _) = raw(&s, &head("PUT", b"/%c3%28", b""), b"").await;
    assert_eq!(status, 400);
    // In BrokerProperties.
    let (status, text) = raw(
        &s,
        &head(
            "POST",
            b"/q/messages",
            b"BrokerProperties: {\"Label\":\"\xff\xfe\"}\r\nContent-Length: 2\r\n",
        ),
        b"hi",
    )
    .await;
    assert_eq!(status, 400, "{text}");
    // In a custom property.
    let (status, text) = raw(
        &s,
        &head(
            "POST",
            b"/q/messages",
            b"x-prop: \xc3\x28\r\nContent-Length: 2\r\n",
        ),
        b"hi",
    )
    .await;
    assert_eq!(status, 400, "{text}");
    s.assert_empty("q").await;
    s.stop().await;
}

#[tokio::test]
async fn path_traversal_in_entity_names_is_refused() {
    let s = TestServer::start().await;
    s.create_queue("q", "").await;
    let xml = queue_xml("");
    for path in [
        "/..%2fetc",
        "/a/%2e%2e/b",
        "/%2e%2e",
        "/a%2f..%2f..%2fb",
        "/a%5c..%5cb",
        "/a%00b",
        "/q%2fmessages",
    ] {
        for method in ["PUT", "GET", "DELETE"] {
            let extra = format!(
                "Content-Type: {ATOM_CT}\r\nContent-Length: {}\r\n",
                xml.len()
            );
            let (status, text) = raw(
                &s,
                &head(method, path.as_bytes(), extra.as_bytes()),
                xml.as_bytes(),
            )
            .await;
            assert_eq!(status, 400, "{method} {path}: {text}");
        }
    }
    // A literal `..` segment (clients normalise it, raw requests need not).
    let (status, _) = raw(&s, &head("PUT", b"/a/../q2", b"Content-Length: 0\r\n"), b"").await;
    assert_eq!(status, 400);
    let (status, _) = raw(
        &s,
        &head("POST", b"/q/../q/messages", b"Content-Length: 1\r\n"),
        b"x",
    )
    .await;
    assert_eq!(status, 400);
    // Nothing was created besides `q`.
    let feed = s.get("$Resources/Queues").await.body;
    assert_eq!(feed_titles(&feed), vec!["q".to_string()]);
    s.stop().await;
}

#[tokio::test]
async fn ten_thousand_queues_are_created_and_listed_in_pages() {
    let s = TestServer::start().await;
    const N: usize = 10_000;
    let xml = queue_xml("");
    let results: Vec<StatusCode> = futures::stream::iter(0..N)
        .map(|i| {
            let s = &s;
            let xml = &xml;
            async move { s.put_atom(&format!("q{i:05}"), xml, false).await.status }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    assert!(results.iter().all(|st| *st == StatusCode::CREATED));
    let mut seen = Vec::new();
    let mut skip = 0;
    loop {
        let r = s
            .get(&format!("$Resources/Queues?$skip={skip}&$top=1000"))
            .await;
        assert_eq!(r.status, 200);
        let titles = feed_titles(&r.body);
        if titles.is_empty() {
            break;
        }
        skip += titles.len();
        seen.extend(titles);
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), N);
    assert_eq!(seen[0], "q00000");
    assert_eq!(seen[N - 1], format!("q{:05}", N - 1));
    // Messaging still works on the last one.
    s.send_text("q09999", "last").await;
    assert_eq!(s.take_one("q09999").await.body, "last");
    s.stop().await;
}

/// 1,000 custom properties, sent as 1,000 headers (the server accepts up to
/// `HTTP_MAX_HEADERS`; hyper's default of 100 would refuse them) and as a batch item's
/// UserProperties; received over a raw connection because reqwest's own parser stops at 100
/// response headers.
#[tokio::test]
async fn a_message_with_a_thousand_properties_round_trips() {
    let s = TestServer::start().await;
    s.create_queue("q", "").await;
    let names: Vec<(String, String)> = (0..1000)
        .map(|i| (format!("p{i:04}"), format!("\"v{i}\"")))
        .collect();
    let headers: Vec<(&str, &str)> = names
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let r = s.send_raw("q", "many", None, &headers).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let mut props = serde_json::Map::new();
    for i in 0..1000 {
        props.insert(format!("p{i:04}"), serde_json::json!(format!("v{i}")));
    }
    let batch = serde_json::json!([{ "Body": "many", "UserProperties": props }]);
    let r = s.send_batch("q", &batch).await;
    assert_eq!(r.status, 201, "{}", r.body);
    for _ in 0..2 {
        let (status, text) = raw(
            &s,
            &head(
                "DELETE",
                b"/q/messages/head?timeout=0",
                b"Content-Length: 0\r\n",
            ),
            b"",
        )
        .await;
        assert_eq!(status, 200, "{text}");
        let head_text = &text[..text.find("\r\n\r\n").expect("end of head")];
        for i in 0..1000 {
            let line = format!("\r\np{i:04}: \"v{i}\"");
            assert!(head_text.contains(&line), "missing {line:?}");
        }
        assert!(text.ends_with("many"));
    }
    // Beyond the header count limit: a clean 431 from hyper, not a 5xx.
    let mut extra = String::new();
    for i in 0..localzure::constants::HTTP_MAX_HEADERS + 10 {
        extra.push_str(&format!("x-p{i}: {i}\r\n"));
    }
    extra.push_str("Content-Length: 2\r\n");
    let (status, _) = raw(&s, &head("POST", b"/q/messages", extra.as_bytes()), b"hi").await;
    assert!((400..500).contains(&status), "{status}");
    s.assert_empty("q").await;
    s.stop().await;
}

/// A client that never finishes its request head is disconnected after the header-read
/// timeout (shortened here), while others are served.
#[tokio::test]
async fn a_stalled_request_head_is_disconnected() {
    let mut config = localzure::config::Config::default();
    config.server.http_header_read_timeout_ms = 300;
    let mut s = TestServer::start_with(config).await;
    s.create_queue("q", "").await;
    let mut c = TcpStream::connect(addr(&s)).await.expect("connect");
    c.write_all(b"GET /q HTTP/1.1\r\nHost: localhost\r\nx-slow: ")
        .await
        .expect("write partial head");
    s.send_text("q", "served").await;
    let mut buf = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(20), c.read_to_end(&mut buf)).await;
    assert!(closed.is_ok(), "the stalled connection stayed open");
    // No request was handled for it (hyper may answer 408 before closing).
    let text = String::from_utf8_lossy(&buf);
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 408"),
        "{text}"
    );
    // A new client: the pooled connection idled past the same 300 ms header timeout, and the
    // server may be closing it just as it would be reused.
    s.client = reqwest::Client::new();
    assert_eq!(s.take_one("q").await.body, "served");
    s.stop().await;
}

#[tokio::test]
async fn a_slowloris_client_does_not_block_others() {
    let s = TestServer::start().await;
    s.create_queue("q", "").await;
    // Several connections send part of a head and stall.
    let mut slow = Vec::new();
    for _ in 0..8 {
        let mut c = TcpStream::connect(addr(&s)).await.expect("connect");
        c.write_all(b"POST /q/messages HTTP/1.1\r\nHost: localhost\r\nx-slow: ")
            .await
            .expect("write partial head");
        slow.push(c);
    }
    // One more sends a full head announcing a body it never sends.
    let mut stalled_body = TcpStream::connect(addr(&s)).await.expect("connect");
    stalled_body
        .write_all(
            b"POST /q/messages HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\nabc",
        )
        .await
        .expect("write");
    // Everyone else is served promptly while they stay open.
    let t = std::time::Instant::now();
    for i in 0..20 {
        s.send_text("q", &format!("m{i}")).await;
    }
    for i in 0..20 {
        assert_eq!(s.take_one("q").await.body, format!("m{i}"));
    }
    assert!(
        t.elapsed() < Duration::from_secs(15),
        "other clients waited {:?}",
        t.elapsed()
    );
    // The stalled requests created nothing.
    s.assert_empty("q").await;
    drop(slow);
    drop(stalled_body);
    s.stop().await;
}

#[tokio::test]
async fn shutdown_cuts_a_request_stalled_mid_body_at_the_drain_deadline() {
    let s = TestServer::start().await;
    s.create_queue("q", "").await;
    // A full head announcing a body the client never finishes: graceful shutdown alone would
    // wait for it forever (hyper has no body timeout), keeping the server from its final
    // snapshot.
    let mut stalled = TcpStream::connect(addr(&s)).await.expect("connect");
    stalled
        .write_all(
            b"POST /q/messages HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\nabc",
        )
        .await
        .expect("write");
    // The request is in flight once the server has read its head: a request that follows on
    // another connection is answered, so the stalled one was accepted before it.
    s.send_text("q", "other").await;
    let t = std::time::Instant::now();
    s.stop().await; // asserts a clean stop within 20 s
    let took = t.elapsed();
    let deadline = Duration::from_millis(localzure::constants::SHUTDOWN_DRAIN_MS);
    assert!(
        took >= deadline.saturating_sub(Duration::from_millis(500)) && took < deadline * 2,
        "stopped after {took:?} (drain deadline {deadline:?})"
    );
    // The stalled connection was closed by the server.
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), stalled.read(&mut buf))
        .await
        .expect("the server closed the stalled connection")
        .unwrap_or(0);
    assert_eq!(n, 0, "no answer to a request whose body never came");
}

// ----- optional SAS validation ------------------------------------------------------------------

#[tokio::test]
async fn sas_validation_refuses_bad_expired_and_missing_tokens() {
    use localzure::sas::{token, SasKey};
    let key = SasKey {
        name: "RootManageSharedAccessKey".into(),
        key: "c2VjcmV0LWtleQ==".into(),
    };
    let mut config = localzure::config::Config::default();
    config.server.sas_key_name = Some(key.name.clone());
    config.server.sas_key = Some(key.key.clone());
    let s = TestServer::start_with(config).await;
    let now = (s.now() / 1000) as u64;
    let namespace = token(&key, &format!("sb://{}/", addr(&s)), now + 3600);
    let auth = |t: &str| vec![("Authorization", t.to_string())];
    let call = |method: Method, path: &'static str, headers: Vec<(&'static str, String)>| {
        let s = &s;
        async move {
            let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let body = if method == Method::PUT {
                queue_xml("")
            } else {
                "hi".to_string()
            };
            let mut h = h;
            if method == Method::PUT {
                h.push(("Content-Type", ATOM_CT));
            }
            s.request(method, path, &h, body).await
        }
    };
    // A valid namespace-wide token creates, sends and receives.
    assert_eq!(
        call(Method::PUT, "orders", auth(&namespace)).await.status,
        201
    );
    assert_eq!(
        call(Method::POST, "orders/messages", auth(&namespace))
            .await
            .status,
        201
    );
    // An entity-scoped token works for its entity (any https/sb scheme; the addressed host).
    let scoped = token(&key, &format!("https://{}/orders", addr(&s)), now + 60);
    assert_eq!(
        call(Method::POST, "orders/messages", auth(&scoped))
            .await
            .status,
        201
    );
    // Missing, bad signature, expired, other key name, other entity: 401 with a reason.
    let forged = token(
        &SasKey {
            key: "wrong".into(),
            ..key.clone()
        },
        "sb://localhost/",
        now + 3600,
    );
    let expired = token(&key, "sb://localhost/", now - 1);
    let other_name = token(
        &SasKey {
            name: "Listen".into(),
            ..key.clone()
        },
        "sb://localhost/",
        now + 3600,
    );
    let other_host = token(&key, "sb://anyhost.servicebus.windows.net/", now + 3600);
    let tampered = namespace.replace(&format!("se={}", now + 3600), &format!("se={}", now + 7200));
    for (what, headers, reason) in [
        ("missing", vec![], "MissingToken"),
        ("bad signature", auth(&forged), "InvalidSignature"),
        ("tampered expiry", auth(&tampered), "InvalidSignature"),
        ("expired", auth(&expired), "ExpiredToken"),
        ("other key name", auth(&other_name), "InvalidSignature"),
        ("other host", auth(&other_host), "InvalidAudience"),
        ("bearer", auth("Bearer abc"), "InvalidSignature"),
    ] {
        for (method, path) in [
            (Method::POST, "orders/messages"),
            (Method::DELETE, "orders/messages/head?timeout=0"),
            (Method::GET, "orders"),
            (Method::GET, "$Resources/Queues"),
        ] {
            let r = call(method.clone(), path, headers.clone()).await;
            assert_eq!(r.status, 401, "{what}: {method} {path}: {}", r.body);
            assert!(r.body.contains(reason), "{what}: {}", r.body);
        }
    }
    let r = call(Method::POST, "payments/messages", auth(&scoped)).await;
    assert_eq!(r.status, 401);
    assert!(r.body.contains("InvalidAudience"), "{}", r.body);
    // Liveness and the loopback admin API stay open.
    assert_eq!(s.get("health").await.status, 200);
    assert_eq!(s.get("$admin/stats").await.status, 200);
    // The valid token still reads both messages.
    for _ in 0..2 {
        let r = call(
            Method::DELETE,
            "orders/messages/head?timeout=0",
            auth(&namespace),
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    s.stop().await;
}
