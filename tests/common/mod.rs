//! The real LocalZure server, in process, on `127.0.0.1:0` (started by the shared harness,
//! `tests/harness`), with a manual clock and HTTP helpers.
//!
//! Every test starts its own [`TestServer`]; time-dependent behaviour (lock expiry, TTL,
//! scheduled messages, duplicate-detection windows) is driven by [`TestServer::advance`]
//! instead of sleeping: each receive applies due work at the manual clock's "now".

#![allow(dead_code)]

use localzure::config::Config;
use localzure::time::{Clock, ManualClock};
use localzure::ServiceBusBackend;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, StatusCode};
use std::sync::Arc;
use std::time::Duration;

#[path = "../harness/mod.rs"]
mod harness;
use harness::InProcess;

#[path = "../xml/mod.rs"]
mod xml;
pub use xml::*;

/// A running in-process server (started by the harness) with an HTTP client for it.
pub struct TestServer {
    pub base_url: String,
    pub clock: Arc<ManualClock>,
    pub client: reqwest::Client,
    server: InProcess,
}

/// A plain HTTP answer: status, headers and body text.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A received message.
#[derive(Debug)]
pub struct Received {
    pub status: StatusCode,
    /// The parsed `BrokerProperties` header.
    pub bp: serde_json::Value,
    pub headers: HeaderMap,
    pub body: String,
    /// The `Location` header (peek-lock only).
    pub location: Option<String>,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    pub fn delivery_count(&self) -> u64 {
        self.bp["DeliveryCount"]
            .as_u64()
            .expect("DeliveryCount in BrokerProperties")
    }
    pub fn sequence_number(&self) -> u64 {
        self.bp["SequenceNumber"]
            .as_u64()
            .expect("SequenceNumber in BrokerProperties")
    }
    pub fn message_id(&self) -> &str {
        self.bp["MessageId"]
            .as_str()
            .expect("MessageId in BrokerProperties")
    }
    pub fn lock_token(&self) -> &str {
        self.bp["LockToken"]
            .as_str()
            .expect("LockToken in BrokerProperties")
    }
    pub fn location(&self) -> &str {
        self.location.as_deref().expect("Location header")
    }
}

/// Parses the `BrokerProperties` header into JSON.
pub fn broker_properties(headers: &HeaderMap) -> serde_json::Value {
    let raw = headers
        .get("BrokerProperties")
        .expect("BrokerProperties header")
        .to_str()
        .expect("BrokerProperties is text");
    serde_json::from_str(raw).unwrap_or_else(|e| panic!("BrokerProperties {raw:?}: {e}"))
}

/// Parses an RFC 1123 date (as in BrokerProperties) into milliseconds since the epoch.
pub fn rfc1123_ms(s: &str) -> i64 {
    chrono::DateTime::parse_from_rfc2822(s)
        .unwrap_or_else(|e| panic!("not an RFC 1123 date: {s:?}: {e}"))
        .timestamp_millis()
}

/// An RFC 1123 date for `ms`.
pub fn rfc1123(ms: i64) -> String {
    localzure::time::rfc1123(ms)
}

// ----- the server ----------------------------------------------------------------------------

impl TestServer {
    /// Starts a server with default configuration.
    pub async fn start() -> TestServer {
        Self::start_with(Config::default()).await
    }

    /// Starts a server with the given configuration (its host and port are ignored).
    pub async fn start_with(config: Config) -> TestServer {
        let (backend, clock) = Self::backend();
        Self::start_on(config, backend, clock).await
    }

    /// An in-memory backend on a manual clock set to now, to prepare before [`Self::start_on`].
    pub fn backend() -> (ServiceBusBackend, Arc<ManualClock>) {
        harness::manual_backend()
    }

    /// Serves an existing backend (e.g. one an entity file was applied to).
    pub async fn start_on(
        config: Config,
        backend: ServiceBusBackend,
        clock: Arc<ManualClock>,
    ) -> TestServer {
        let server = InProcess::start(config, backend).await;
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("HTTP client");
        TestServer {
            base_url: server.base_url(),
            clock,
            client,
            server,
        }
    }

    /// Cancels the shutdown token and waits for the server to stop in order.
    pub async fn stop(mut self) {
        self.client = reqwest::Client::new();
        self.server.stop().await;
    }

    /// Waits until `n` receives are parked in a long poll on the server
    /// (`ServiceBusBackend::parked_receives`), so a test that then sends proves the *wake*, not a
    /// receive that simply found the message. Fails after 10 s.
    pub async fn wait_parked(&self, n: usize) {
        self.server.wait_parked(n).await
    }

    /// Moves the manual clock forward.
    pub fn advance(&self, ms: i64) {
        self.clock.advance(ms);
    }

    /// The manual clock's now.
    pub fn now(&self) -> i64 {
        self.clock.now()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}/{}", self.base_url, path.trim_start_matches('/'))
    }

    /// Sends a request and reads the whole answer.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<reqwest::Body>,
    ) -> Reply {
        let mut req = self.client.request(method, self.url(path)).body(body);
        for (k, v) in headers {
            req = req.header(
                HeaderName::from_bytes(k.as_bytes()).expect("header name"),
                HeaderValue::from_str(v).expect("header value"),
            );
        }
        let resp = req.send().await.expect("request is answered");
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.text().await.expect("response body");
        Reply {
            status,
            headers,
            body,
        }
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.request(Method::GET, path, &[], "").await
    }

    pub async fn delete(&self, path: &str) -> Reply {
        self.request(Method::DELETE, path, &[], "").await
    }

    /// PUT of an Atom body; `update` adds `If-Match: *`.
    pub async fn put_atom(&self, path: &str, xml: &str, update: bool) -> Reply {
        let mut headers = vec![("Content-Type", ATOM_CT)];
        if update {
            headers.push(("If-Match", "*"));
        }
        self.request(Method::PUT, path, &headers, xml.to_string())
            .await
    }

    // ----- management helpers ----------------------------------------------------------------

    /// Creates a queue with extra QueueDescription elements; asserts 201 and returns the entry.
    pub async fn create_queue(&self, name: &str, extra_xml_props: &str) -> String {
        let r = self
            .put_atom(name, &queue_xml(extra_xml_props), false)
            .await;
        assert_eq!(r.status, 201, "create queue {name}: {}", r.body);
        r.body
    }

    /// Creates a topic; asserts 201 and returns the entry.
    pub async fn create_topic(&self, name: &str, extra_xml_props: &str) -> String {
        let r = self
            .put_atom(name, &topic_xml(extra_xml_props), false)
            .await;
        assert_eq!(r.status, 201, "create topic {name}: {}", r.body);
        r.body
    }

    /// Creates a subscription; asserts 201 and returns the entry.
    pub async fn create_subscription(&self, topic: &str, sub: &str, extra: &str) -> String {
        let r = self
            .put_atom(
                &format!("{topic}/Subscriptions/{sub}"),
                &subscription_xml(extra),
                false,
            )
            .await;
        assert_eq!(
            r.status, 201,
            "create subscription {topic}/{sub}: {}",
            r.body
        );
        r.body
    }

    /// PUT of a rule; returns the raw answer.
    pub async fn put_rule(&self, topic: &str, sub: &str, rule: &str, filter: &str) -> Reply {
        self.put_atom(
            &format!("{topic}/Subscriptions/{sub}/Rules/{rule}"),
            &rule_xml(rule, filter),
            false,
        )
        .await
    }

    /// Creates a rule; asserts 201 and returns the entry.
    pub async fn create_rule(&self, topic: &str, sub: &str, rule: &str, filter: &str) -> String {
        let r = self.put_rule(topic, sub, rule, filter).await;
        assert_eq!(
            r.status, 201,
            "create rule {topic}/{sub}/{rule}: {}",
            r.body
        );
        r.body
    }

    /// Deletes a rule; asserts 200.
    pub async fn delete_rule(&self, topic: &str, sub: &str, rule: &str) {
        let r = self
            .delete(&format!("{topic}/Subscriptions/{sub}/Rules/{rule}"))
            .await;
        assert_eq!(r.status, 200, "delete rule {rule}: {}", r.body);
    }

    /// A subscription whose only rule is a correlation filter.
    pub async fn create_filtered_subscription(&self, topic: &str, sub: &str, filter: &str) {
        self.create_subscription(topic, sub, "").await;
        self.delete_rule(topic, sub, "$Default").await;
        self.create_rule(topic, sub, "filter", filter).await;
    }

    /// GET of an entity description; asserts 200 and returns the entry.
    pub async fn entity(&self, path: &str) -> String {
        let r = self.get(path).await;
        assert_eq!(r.status, 200, "GET {path}: {}", r.body);
        r.body
    }

    // ----- messaging helpers -----------------------------------------------------------------

    /// Sends one message; returns the raw answer.
    pub async fn send_raw(
        &self,
        path: &str,
        body: impl Into<reqwest::Body>,
        broker_props: Option<serde_json::Value>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let bp = broker_props.map(|v| v.to_string());
        let mut h: Vec<(&str, &str)> = Vec::new();
        if let Some(bp) = &bp {
            h.push(("BrokerProperties", bp));
        }
        h.extend_from_slice(headers);
        self.request(Method::POST, &format!("{path}/messages"), &h, body)
            .await
    }

    /// Sends one message; asserts 201.
    pub async fn send(
        &self,
        path: &str,
        body: &str,
        broker_props: Option<serde_json::Value>,
        headers: &[(&str, &str)],
    ) {
        let r = self
            .send_raw(path, body.to_string(), broker_props, headers)
            .await;
        assert_eq!(r.status, 201, "send to {path}: {}", r.body);
    }

    /// Sends a text message with no properties; asserts 201.
    pub async fn send_text(&self, path: &str, body: &str) {
        self.send(path, body, None, &[]).await
    }

    /// Sends a message with a MessageId; asserts 201.
    pub async fn send_id(&self, path: &str, body: &str, id: &str) {
        self.send(
            path,
            body,
            Some(serde_json::json!({ "MessageId": id })),
            &[],
        )
        .await
    }

    /// Sends a batch (`application/vnd.microsoft.servicebus.json`); returns the raw answer.
    pub async fn send_batch(&self, path: &str, batch: &serde_json::Value) -> Reply {
        self.request(
            Method::POST,
            &format!("{path}/messages"),
            &[("Content-Type", BATCH_CT)],
            batch.to_string(),
        )
        .await
    }

    async fn receive(&self, method: Method, path: &str, timeout: u64) -> Option<Received> {
        let r = self
            .request(
                method.clone(),
                &format!("{path}/messages/head?timeout={timeout}"),
                &[],
                "",
            )
            .await;
        let expected = if method == Method::POST { 201 } else { 200 };
        if r.status == StatusCode::NO_CONTENT {
            assert!(r.body.is_empty(), "204 with a body: {}", r.body);
            return None;
        }
        assert_eq!(r.status, expected, "receive from {path}: {}", r.body);
        Some(received_from(r))
    }

    /// Peek-lock receive; `None` on 204.
    pub async fn peek_lock(&self, path: &str, timeout: u64) -> Option<Received> {
        self.receive(Method::POST, path, timeout).await
    }

    /// Receive-and-delete; `None` on 204.
    pub async fn receive_delete(&self, path: &str, timeout: u64) -> Option<Received> {
        self.receive(Method::DELETE, path, timeout).await
    }

    /// Peek-lock receive that must find a message at once.
    pub async fn lock_one(&self, path: &str) -> Received {
        self.peek_lock(path, 0)
            .await
            .unwrap_or_else(|| panic!("expected a message in {path}"))
    }

    /// Receive-and-delete that must find a message at once.
    pub async fn take_one(&self, path: &str) -> Received {
        self.receive_delete(path, 0)
            .await
            .unwrap_or_else(|| panic!("expected a message in {path}"))
    }

    /// Asserts that `path` has no receivable message now.
    pub async fn assert_empty(&self, path: &str) {
        if let Some(m) = self.peek_lock(path, 0).await {
            panic!(
                "expected {path} to be empty, got {:?} (BrokerProperties {})",
                m.body, m.bp
            );
        }
    }

    /// A request to a lock location (a full URL from `Location`).
    pub async fn at_location(&self, method: Method, location: &str) -> Reply {
        let path = location
            .strip_prefix(&self.base_url)
            .unwrap_or_else(|| panic!("Location {location} is not under {}", self.base_url));
        self.request(method, path, &[], "").await
    }

    /// Completes (DELETE the lock location); returns the status.
    pub async fn complete(&self, location: &str) -> StatusCode {
        self.at_location(Method::DELETE, location).await.status
    }

    /// Unlocks / abandons (PUT the lock location); returns the status.
    pub async fn unlock(&self, location: &str) -> StatusCode {
        self.at_location(Method::PUT, location).await.status
    }

    /// Renews (POST the lock location); returns the answer.
    pub async fn renew(&self, location: &str) -> Reply {
        self.at_location(Method::POST, location).await
    }

    /// The CountDetails / MessageCount of an entity.
    pub async fn counts(&self, path: &str) -> Counts {
        let body = self.entity(path).await;
        Counts {
            message_count: xml_u64(&body, "MessageCount"),
            active: xml_u64(&body, "ActiveMessageCount"),
            dead_letter: xml_u64(&body, "DeadLetterMessageCount"),
            scheduled: xml_u64(&body, "ScheduledMessageCount"),
        }
    }
}

/// Runtime counts of an entity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub message_count: u64,
    pub active: u64,
    pub dead_letter: u64,
    pub scheduled: u64,
}

fn received_from(r: Reply) -> Received {
    let bp = broker_properties(&r.headers);
    let location = r.header("Location").map(str::to_string);
    Received {
        status: r.status,
        bp,
        headers: r.headers,
        body: r.body,
        location,
    }
}

/// A BrokerProperties value with just a MessageId.
pub fn with_id(id: &str) -> Option<serde_json::Value> {
    Some(serde_json::json!({ "MessageId": id }))
}
