//! The real `localzure` binary for tests: data directories, the CLI, and an HTTP client, on
//! top of the shared harness (`tests/harness`), which starts and stops the child process.
//!
//! - [`Store`] is a temp data directory for one backend (sqlite, json or in-memory) and the
//!   `LOCALZURE_*` variables that point the binary at it.
//! - [`Server::start`] runs `localzure start` on ephemeral ports (the harness learns them from
//!   the `listening on` log lines: no fixed ports, no sleeps). Every stdout/stderr line is kept;
//!   when a test panics, the server's log is printed as the [`Server`] is dropped, and a
//!   still-running child is killed.
//! - [`Server::terminate`] sends SIGTERM (`kill -TERM`) and asserts exit 0 within a deadline;
//!   [`Server::kill`] sends SIGKILL.
//! - [`cli`] runs `localzure storage …` (or any subcommand) with the same environment.
//! - [`Http`] is a small client with the XML/ATOM helpers of `tests/xml`.

#![allow(dead_code)]

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, StatusCode};
use serde_json::json;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

#[path = "../harness/mod.rs"]
mod harness;
#[allow(unused_imports)]
pub use harness::binary::{
    command, wait_exit, Binary, Exited, Logs, BIN, START_DEADLINE, STOP_DEADLINE,
};

// ----- the data directory -------------------------------------------------------------------

/// Which backend a [`Store`] configures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Memory,
    Sqlite,
    Json,
    /// A private `redis-server` per store (see `localzure::storage::redis::TestRedis`).
    Redis,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Memory => "in-memory",
            Kind::Sqlite => "sqlite",
            Kind::Json => "json",
            Kind::Redis => "redis",
        }
    }
}

/// A temp data directory and the environment that points the binary at it.
pub struct Store {
    pub kind: Kind,
    pub dir: tempfile::TempDir,
    /// Extra or overriding `LOCALZURE_*` variables.
    pub extra: Vec<(String, String)>,
    /// The Redis server of a [`Kind::Redis`] store (killed when the store drops).
    pub redis: Option<localzure::storage::redis::TestRedis>,
}

impl Store {
    pub fn new(kind: Kind) -> Store {
        let dir = tempfile::tempdir().expect("temp dir");
        let redis =
            (kind == Kind::Redis).then(|| localzure::storage::redis::TestRedis::start(dir.path()));
        Store {
            kind,
            dir,
            extra: Vec::new(),
            redis,
        }
    }

    /// Adds or overrides a variable.
    pub fn set(mut self, key: &str, value: &str) -> Store {
        self.extra.retain(|(k, _)| k != key);
        self.extra.push((key.to_string(), value.to_string()));
        self
    }

    pub fn sqlite_path(&self) -> PathBuf {
        self.dir.path().join("servicebus.db")
    }

    pub fn json_path(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The operation log of this store.
    pub fn journal_path(&self) -> PathBuf {
        match self.kind {
            Kind::Sqlite => {
                let mut p = self.sqlite_path().into_os_string();
                p.push(".wal");
                p.into()
            }
            Kind::Json => self.json_path().join("operations.wal"),
            Kind::Memory | Kind::Redis => panic!("this store has no journal file"),
        }
    }

    /// The file or directory `storage stats` names as the location.
    pub fn location(&self) -> PathBuf {
        match self.kind {
            Kind::Sqlite => self.sqlite_path(),
            Kind::Json => self.json_path(),
            Kind::Memory => PathBuf::from("memory"),
            Kind::Redis => PathBuf::from(format!(
                "redis://127.0.0.1:{}/0 (prefix localzure:)",
                self.redis.as_ref().map_or(0, |r| r.port)
            )),
        }
    }

    /// The variables for this store. Automatic snapshots are off by default (the journal keeps
    /// everything since start-up, so replay is observable); tests override with [`Store::set`].
    pub fn env(&self) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = vec![
            ("LOCALZURE_STORAGE_TYPE".into(), self.kind.as_str().into()),
            (
                "LOCALZURE_SQLITE_PATH".into(),
                self.sqlite_path().display().to_string(),
            ),
            (
                "LOCALZURE_JSON_PATH".into(),
                self.json_path().display().to_string(),
            ),
            ("LOCALZURE_SNAPSHOT_INTERVAL".into(), "0".into()),
        ];
        if let Some(r) = &self.redis {
            v.push(("LOCALZURE_REDIS_HOST".into(), "127.0.0.1".into()));
            v.push(("LOCALZURE_REDIS_PORT".into(), r.port.to_string()));
        }
        for (k, val) in &self.extra {
            v.retain(|(k2, _)| k2 != k);
            v.push((k.clone(), val.clone()));
        }
        v
    }
}

// ----- the server ---------------------------------------------------------------------------

/// A running `localzure start` (started by the harness), with an HTTP client for it and the
/// variables it was started with.
pub struct Server {
    bin: Binary,
    pub addr: String,
    pub base_url: String,
    pub logs: Logs,
    pub vars: Vec<(String, String)>,
    pub http: Http,
}

impl Server {
    /// The guide's start-up fallback line (ERROR `Failed to initialize persistence (error=…).
    /// Falling back to in-memory mode`), logged before the server answers; panics with the log
    /// when it is missing or not an ERROR.
    pub fn fallback_line(&self) -> String {
        let line = self
            .logs
            .wait_for(Duration::ZERO, |l| {
                l.contains("Failed to initialize persistence")
            })
            .unwrap_or_else(|| panic!("no fallback error: {}", self.logs.text()));
        assert!(line.contains("ERROR"), "{line}");
        assert!(line.contains("Falling back to in-memory mode"), "{line}");
        line
    }

    /// Starts the server with `vars` (on top of `LOCALZURE_HTTP_PORT=0`); panics with the log if
    /// it does not come up.
    pub fn start(vars: &[(String, String)]) -> Server {
        match Self::try_start(vars, &[]) {
            Ok(s) => s,
            Err(e) => panic!("server did not start ({}); log:\n{}", e.status, e.log),
        }
    }

    /// Starts with extra command-line arguments after `start` (e.g. `--config FILE`).
    pub fn start_args(vars: &[(String, String)], args: &[&str]) -> Server {
        match Self::try_start(vars, args) {
            Ok(s) => s,
            Err(e) => panic!("server did not start ({}); log:\n{}", e.status, e.log),
        }
    }

    /// Starts the server; `Err` when the process exits before listening.
    pub fn try_start(vars: &[(String, String)], args: &[&str]) -> Result<Server, Exited> {
        let bin = Binary::try_start(vars, args)?;
        Ok(Server {
            http: Http::new(&bin.base_url),
            addr: bin.addr.clone(),
            base_url: bin.base_url.clone(),
            logs: bin.logs.clone(),
            vars: vars.to_vec(),
            bin,
        })
    }

    /// Waits until `n` receives are parked in a long poll on the server (the
    /// `localzure_parked_receives` gauge). Fails after 10 s.
    pub async fn wait_parked(&self, n: usize) {
        self.bin.wait_parked(n).await
    }

    pub fn pid(&self) -> u32 {
        self.bin.pid()
    }

    /// The port the server listens on.
    pub fn port(&self) -> u16 {
        self.bin.port()
    }

    /// The AMQP address.
    pub fn amqp_addr(&self) -> std::net::SocketAddr {
        self.bin.amqp_addr()
    }

    /// SIGTERM, then waits for the exit (asserting code 0) and the end of the log.
    pub fn terminate(self) -> Logs {
        self.bin.signal_and_wait("TERM")
    }

    /// SIGINT (Ctrl-C), then as [`Server::terminate`].
    pub fn interrupt(self) -> Logs {
        self.bin.signal_and_wait("INT")
    }

    /// Waits for an exit the server began on its own (e.g. `localzure stop`); asserts code 0.
    pub fn wait_exit_ok(self) -> Logs {
        self.bin.wait_exit_ok()
    }

    /// SIGKILL: no final snapshot, no cleanup.
    pub fn kill(self) -> Logs {
        self.bin.kill()
    }

    /// Runs a CLI subcommand against this server (its real port, as configured).
    pub fn cli(&self, args: &[&str]) -> CliOut {
        let mut vars = self.vars.clone();
        vars.retain(|(k, _)| k != "LOCALZURE_HTTP_PORT");
        vars.push(("LOCALZURE_HTTP_PORT".into(), self.port().to_string()));
        cli(&vars, args)
    }
}

// ----- the CLI ------------------------------------------------------------------------------

/// What a CLI run produced.
#[derive(Debug)]
pub struct CliOut {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl CliOut {
    pub fn success(&self) -> bool {
        self.status.success()
    }
    /// Asserts exit 0 and returns stdout.
    pub fn ok(&self) -> &str {
        assert!(
            self.status.success(),
            "CLI failed ({}):\nstdout: {}\nstderr: {}",
            self.status,
            self.stdout,
            self.stderr
        );
        &self.stdout
    }
    /// Asserts a non-zero exit and returns stderr.
    pub fn fails(&self) -> &str {
        assert!(
            !self.status.success(),
            "CLI unexpectedly succeeded:\nstdout: {}\nstderr: {}",
            self.stdout,
            self.stderr
        );
        &self.stderr
    }
}

/// Runs `localzure ARGS` with `vars`. Unless `vars` names a port, `LOCALZURE_HTTP_PORT=1` makes
/// sure no server answers (port 1 is privileged and unused), so storage commands run offline.
pub fn cli(vars: &[(String, String)], args: &[&str]) -> CliOut {
    let mut all: Vec<(String, String)> = vec![("LOCALZURE_HTTP_PORT".into(), "1".into())];
    for (k, v) in vars {
        all.retain(|(k2, _)| k2 != k);
        all.push((k.clone(), v.clone()));
    }
    let mut child = command(&all)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn localzure CLI");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let t = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let mut out = String::new();
    let _ = stdout.read_to_string(&mut out);
    let err = t.join().unwrap_or_default();
    let status = match wait_exit(&mut child, Duration::from_secs(60)) {
        Some(s) => s,
        None => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("CLI {args:?} hung; stdout: {out}\nstderr: {err}");
        }
    };
    CliOut {
        status,
        stdout: out,
        stderr: err,
    }
}

/// The env for a store, as offline CLI invocations see it.
pub fn offline(store: &Store, args: &[&str]) -> CliOut {
    cli(&store.env(), args)
}

// ----- HTTP ---------------------------------------------------------------------------------

#[path = "../xml/mod.rs"]
mod xml;
pub use xml::*;

/// A plain HTTP answer.
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
    /// The parsed `BrokerProperties` header.
    pub fn bp(&self) -> serde_json::Value {
        let raw = self.header("BrokerProperties").expect("BrokerProperties");
        serde_json::from_str(raw).expect("BrokerProperties JSON")
    }
}

/// A small HTTP client for one server.
#[derive(Clone)]
pub struct Http {
    pub base_url: String,
    pub client: reqwest::Client,
}

impl Http {
    pub fn new(base_url: &str) -> Http {
        Http {
            base_url: base_url.to_string(),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("HTTP client"),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}/{}", self.base_url, path.trim_start_matches('/'))
    }

    pub async fn try_request(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<reqwest::Body>,
    ) -> Result<Reply, reqwest::Error> {
        let mut req = self.client.request(method, self.url(path)).body(body);
        for (k, v) in headers {
            req = req.header(
                HeaderName::from_bytes(k.as_bytes()).expect("header name"),
                HeaderValue::from_str(v).expect("header value"),
            );
        }
        let resp = req.send().await?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.text().await?;
        Ok(Reply {
            status,
            headers,
            body,
        })
    }

    pub async fn request(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<reqwest::Body>,
    ) -> Reply {
        self.try_request(method.clone(), path, headers, body)
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.request(Method::GET, path, &[], "").await
    }

    pub async fn put_atom(&self, path: &str, xml: &str) -> Reply {
        self.request(
            Method::PUT,
            path,
            &[("Content-Type", ATOM_CT)],
            xml.to_string(),
        )
        .await
    }

    /// Creates a queue/topic/subscription/rule from an ATOM body; asserts 201.
    pub async fn create(&self, path: &str, xml: &str) {
        let r = self.put_atom(path, xml).await;
        assert_eq!(r.status, 201, "create {path}: {}", r.body);
    }

    pub async fn create_queue(&self, name: &str, props: &str) {
        self.create(name, &atom_entry("QueueDescription", props))
            .await
    }

    pub async fn create_topic(&self, name: &str, props: &str) {
        self.create(name, &atom_entry("TopicDescription", props))
            .await
    }

    pub async fn create_subscription(&self, topic: &str, sub: &str, props: &str) {
        self.create(
            &format!("{topic}/Subscriptions/{sub}"),
            &atom_entry("SubscriptionDescription", props),
        )
        .await
    }

    pub async fn create_rule(&self, topic: &str, sub: &str, rule: &str, filter: &str) {
        self.create(
            &format!("{topic}/Subscriptions/{sub}/Rules/{rule}"),
            &rule_xml(rule, filter),
        )
        .await
    }

    pub async fn delete_path(&self, path: &str) -> Reply {
        self.request(Method::DELETE, path, &[], "").await
    }

    /// Sends one message; returns the answer.
    pub async fn send_raw(
        &self,
        path: &str,
        body: &str,
        bp: Option<serde_json::Value>,
        headers: &[(&str, &str)],
    ) -> Result<Reply, reqwest::Error> {
        let bp = bp.map(|v| v.to_string());
        let mut h: Vec<(&str, &str)> = Vec::new();
        if let Some(bp) = &bp {
            h.push(("BrokerProperties", bp));
        }
        h.extend_from_slice(headers);
        self.try_request(
            Method::POST,
            &format!("{path}/messages"),
            &h,
            body.to_string(),
        )
        .await
    }

    /// Sends one message; asserts 201.
    pub async fn send(
        &self,
        path: &str,
        body: &str,
        bp: serde_json::Value,
        headers: &[(&str, &str)],
    ) {
        let r = self
            .send_raw(path, body, Some(bp), headers)
            .await
            .unwrap_or_else(|e| panic!("send to {path}: {e}"));
        assert_eq!(r.status, 201, "send to {path}: {}", r.body);
    }

    /// Peek-lock (`POST …/messages/head`); `None` on 204.
    pub async fn peek_lock(&self, path: &str) -> Option<Reply> {
        let r = self
            .request(
                Method::POST,
                &format!("{path}/messages/head?timeout=0"),
                &[],
                "",
            )
            .await;
        if r.status == StatusCode::NO_CONTENT {
            return None;
        }
        assert_eq!(r.status, 201, "peek-lock {path}: {}", r.body);
        Some(r)
    }

    /// Receive-and-delete (`DELETE …/messages/head`); `None` on 204.
    pub async fn receive_delete(&self, path: &str) -> Option<Reply> {
        let r = self
            .request(
                Method::DELETE,
                &format!("{path}/messages/head?timeout=0"),
                &[],
                "",
            )
            .await;
        if r.status == StatusCode::NO_CONTENT {
            return None;
        }
        assert_eq!(r.status, 200, "receive-and-delete {path}: {}", r.body);
        Some(r)
    }

    /// A request to a full `Location` URL.
    pub async fn at_location(&self, method: Method, location: &str) -> Reply {
        let path = location
            .strip_prefix(&self.base_url)
            .unwrap_or_else(|| panic!("Location {location} is not under {}", self.base_url));
        self.request(method, path, &[], "").await
    }

    /// `GET /$admin/export` as JSON.
    pub async fn export(&self) -> serde_json::Value {
        let r = self.get("$admin/export").await;
        assert_eq!(r.status, 200, "export: {}", r.body);
        serde_json::from_str(&r.body).expect("export is JSON")
    }

    /// `GET /health` as (status, JSON).
    pub async fn health(&self) -> (StatusCode, serde_json::Value) {
        let r = self.get("health").await;
        (
            r.status,
            serde_json::from_str(&r.body).expect("health is JSON"),
        )
    }
}

// ----- export documents ---------------------------------------------------------------------

/// An export document without the fields that legitimately differ between two exports of the
/// same state (`exportedAt`), with entities and messages in a canonical order.
pub fn normalized(doc: &serde_json::Value) -> serde_json::Value {
    let mut d = doc.clone();
    let obj = d.as_object_mut().expect("export is an object");
    obj.remove("exportedAt");
    for key in ["entities", "messages"] {
        if let Some(serde_json::Value::Array(items)) = obj.get_mut(key) {
            items.sort_by_key(|v| v.to_string());
        }
    }
    d
}

/// Asserts two exports describe the same state, showing the first difference.
pub fn assert_same_state(before: &serde_json::Value, after: &serde_json::Value, what: &str) {
    let (a, b) = (normalized(before), normalized(after));
    if a != b {
        panic!("{what}: states differ: {}", first_difference(&a, &b, "$"));
    }
}

/// The JSON path and values of the first difference.
pub fn first_difference(a: &serde_json::Value, b: &serde_json::Value, path: &str) -> String {
    use serde_json::Value as V;
    match (a, b) {
        (V::Object(x), V::Object(y)) => {
            for k in x.keys().chain(y.keys()) {
                match (x.get(k), y.get(k)) {
                    (Some(u), Some(v)) if u != v => {
                        return first_difference(u, v, &format!("{path}.{k}"))
                    }
                    (Some(u), None) => return format!("{path}.{k}: {u} vs (missing)"),
                    (None, Some(v)) => return format!("{path}.{k}: (missing) vs {v}"),
                    _ => {}
                }
            }
            format!("{path}: ?")
        }
        (V::Array(x), V::Array(y)) => {
            for (i, (u, v)) in x.iter().zip(y.iter()).enumerate() {
                if u != v {
                    return first_difference(u, v, &format!("{path}[{i}]"));
                }
            }
            format!("{path}: lengths {} vs {}", x.len(), y.len())
        }
        (V::String(x), V::String(y)) if x.starts_with('{') && y.starts_with('{') => {
            // Nested JSON text (raw values) — compare parsed.
            match (serde_json::from_str::<V>(x), serde_json::from_str::<V>(y)) {
                (Ok(u), Ok(v)) => first_difference(&u, &v, path),
                _ => format!("{path}: {a} vs {b}"),
            }
        }
        _ => format!("{path}: {a} vs {b}"),
    }
}

/// The messages of an export (with their decoded `message` objects).
pub fn messages(doc: &serde_json::Value) -> Vec<serde_json::Value> {
    doc["messages"].as_array().cloned().unwrap_or_default()
}

/// The `message_id` of an exported message ("" when it has none).
pub fn message_id(m: &serde_json::Value) -> String {
    m["message"]["content"]["message_id"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// The message ids of an export, in export order.
pub fn message_ids(doc: &serde_json::Value) -> Vec<String> {
    messages(doc).iter().map(message_id).collect()
}

/// Writes a file, creating parents.
pub fn write(path: &Path, contents: &[u8]) {
    if let Some(p) = path.parent() {
        std::fs::create_dir_all(p).expect("create parent");
    }
    std::fs::write(path, contents).expect("write file");
}

// ----- a populated state --------------------------------------------------------------------

/// A future `ScheduledEnqueueTimeUtc` (an hour from now).
pub fn in_an_hour() -> String {
    let t = chrono::Utc::now() + chrono::Duration::hours(1);
    t.format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

/// Creates entities and messages in every state reachable over REST. Returns the lock
/// `Location` path (without the base URL) of the message left locked.
pub async fn populate(http: &Http) -> String {
    // A queue with non-default properties; MaxDeliveryCount 1 so one abandon dead-letters.
    http.create_queue(
        "orders",
        "<LockDuration>PT5M</LockDuration>\
         <RequiresDuplicateDetection>true</RequiresDuplicateDetection>\
         <DefaultMessageTimeToLive>P10D</DefaultMessageTimeToLive>\
         <DeadLetteringOnMessageExpiration>true</DeadLetteringOnMessageExpiration>\
         <MaxDeliveryCount>1</MaxDeliveryCount>",
    )
    .await;
    http.create_queue("retries", "<MaxDeliveryCount>5</MaxDeliveryCount>")
        .await;
    http.create_topic(
        "events",
        "<DefaultMessageTimeToLive>P1D</DefaultMessageTimeToLive>",
    )
    .await;
    http.create_subscription("events", "high", "<LockDuration>PT2M</LockDuration>")
        .await;
    http.create_subscription("events", "big", "").await;
    for sub in ["high", "big"] {
        let r = http
            .delete_path(&format!("events/Subscriptions/{sub}/Rules/$Default"))
            .await;
        assert_eq!(r.status, 200, "delete $Default: {}", r.body);
    }
    http.create_rule(
        "events",
        "high",
        "corr",
        &correlation_filter(&[("Label", "high")], &[("region", "string", "eu")]),
    )
    .await;
    http.create_rule("events", "big", "sql", &sql_filter("amount &gt; 10"))
        .await;

    // Dead-lettered: delivered once, abandoned at MaxDeliveryCount 1.
    http.send(
        "orders",
        "to the dead-letter queue",
        json!({"MessageId": "dlq-1", "Label": "doomed"}),
        &[("customer", "\"carol\"")],
    )
    .await;
    let m = http.peek_lock("orders").await.expect("dlq-1");
    let loc = m.header("Location").expect("Location").to_string();
    let r = http.at_location(Method::PUT, &loc).await;
    assert_eq!(r.status, 200, "unlock: {}", r.body);

    // Locked (peek-locked, not completed).
    http.send(
        "orders",
        "held under a lock",
        json!({"MessageId": "locked-1", "CorrelationId": "c-42"}),
        &[("attempt", "3")],
    )
    .await;
    let m = http.peek_lock("orders").await.expect("locked-1");
    assert_eq!(m.bp()["MessageId"], "locked-1");
    let locked_loc = m.header("Location").expect("Location").to_string();

    // Active with custom properties of several types.
    http.send(
        "orders",
        "{\"order\": 1}",
        json!({"MessageId": "active-1", "Label": "new", "ContentType": "application/json",
               "ReplyTo": "replies", "TimeToLive": 3600}),
        &[
            ("customer", "\"alice\""),
            ("priority", "5"),
            ("vip", "true"),
        ],
    )
    .await;
    // Scheduled in the future.
    http.send(
        "orders",
        "later",
        json!({"MessageId": "scheduled-1", "ScheduledEnqueueTimeUtc": in_an_hour()}),
        &[],
    )
    .await;
    // Active with DeliveryCount 2 (two abandons in a queue with MaxDeliveryCount 5).
    http.send("retries", "retry me", json!({"MessageId": "retry-1"}), &[])
        .await;
    for _ in 0..2 {
        let m = http.peek_lock("retries").await.expect("retry-1");
        let loc = m.header("Location").expect("Location").to_string();
        assert_eq!(http.at_location(Method::PUT, &loc).await.status, 200);
    }
    // Topic messages routed by the correlation and SQL rules.
    http.send(
        "events",
        "high and big",
        json!({"MessageId": "ev-1", "Label": "high"}),
        &[("region", "\"eu\""), ("amount", "99")],
    )
    .await;
    http.send(
        "events",
        "small",
        json!({"MessageId": "ev-2", "Label": "high"}),
        &[("region", "\"eu\""), ("amount", "1")],
    )
    .await;
    http.send(
        "events",
        "nowhere",
        json!({"MessageId": "ev-3", "Label": "low"}),
        &[("region", "\"us\""), ("amount", "5")],
    )
    .await;
    locked_loc
        .strip_prefix(&http.base_url)
        .expect("Location under the base URL")
        .to_string()
}

// ----- the journal's framing ----------------------------------------------------------------

/// `(offset, total length)` of every record frame in a journal file: the one place the tests
/// know the framing (`[file header][len u32 LE][crc32 u32 LE][lsn u64 LE][payload]…`, see
/// `src/storage/mod.rs`). An all-zero frame header (a preallocated or end-marked tail) ends
/// the records.
pub fn journal_frames(bytes: &[u8]) -> Vec<(usize, usize)> {
    use localzure::storage::journal::{FRAME_HEADER_LEN, HEADER_LEN, MAGIC};
    assert_eq!(&bytes[..MAGIC.len()], MAGIC, "journal magic");
    let mut out = Vec::new();
    let mut off = HEADER_LEN as usize;
    while off + FRAME_HEADER_LEN <= bytes.len() {
        let head = &bytes[off..off + FRAME_HEADER_LEN];
        if head.iter().all(|b| *b == 0) {
            return out;
        }
        let len = u32::from_le_bytes(head[..4].try_into().unwrap()) as usize;
        if off + FRAME_HEADER_LEN + len > bytes.len() {
            break;
        }
        out.push((off, FRAME_HEADER_LEN + len));
        off += FRAME_HEADER_LEN + len;
    }
    assert_eq!(off, bytes.len(), "journal ends on a frame boundary");
    out
}
