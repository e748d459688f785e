//! Bounded load against the real binary (SQLite storage, durable acknowledgements):
//!
//! - 1,000 concurrent HTTP clients, each on its own connection, send and receive-and-delete
//!   for `LOAD_SECS` (default 8) seconds: every answer is a success, and every acknowledged
//!   message is received exactly once or still in its queue at the end.
//! - 1,000 AMQP connections, each with SASL, open, begin, the `$cbs` links, a put-token and a
//!   sender link to an entity, held open at once for `LOAD_HOLD_SECS` (default 4) seconds; a
//!   sample sends messages and, after the hold, puts a token again (so each sampled connection
//!   is proven still served).
//!
//! The server's memory (VmRSS and VmHWM from `/proc/PID/status`) and open descriptors are
//! printed before, at the peak and after each phase:
//! `cargo test --release --test load -- --nocapture`.

mod amqp_client;
mod process;

use amqp_client::Client;
use process::*;
use reqwest::Method;
use serde_json::json;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const CLIENTS: usize = 1_000;
const QUEUES: usize = 10;

fn env_secs(name: &str, default: u64) -> Duration {
    Duration::from_secs(
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default),
    )
}

/// This test process needs a descriptor per client connection too.
fn raise_fd_limit() {
    let n = rlimit::increase_nofile_limit(u64::MAX).expect("raise RLIMIT_NOFILE");
    assert!(
        n >= 2 * CLIENTS as u64 + 100,
        "the open-file limit ({n}) is too low for {CLIENTS} connections"
    );
}

/// `(VmRSS, VmHWM)` of a process in KiB.
fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Samples the server's memory and descriptors until stopped; the peaks.
struct Sampler {
    stop: Arc<AtomicBool>,
    peak: Arc<Mutex<(u64, usize)>>,
    task: tokio::task::JoinHandle<()>,
}

impl Sampler {
    fn start(pid: u32) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(Mutex::new((0u64, 0usize)));
        let (s, p) = (stop.clone(), peak.clone());
        let task = tokio::spawn(async move {
            while !s.load(Ordering::SeqCst) {
                let (rss, _) = memory_kib(pid);
                let fds = open_fds(pid);
                {
                    let mut g = p.lock().unwrap();
                    g.0 = g.0.max(rss);
                    g.1 = g.1.max(fds);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        Sampler { stop, peak, task }
    }

    /// `(peak VmRSS KiB, peak open descriptors)`.
    async fn finish(self) -> (u64, usize) {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await.unwrap();
        *self.peak.lock().unwrap()
    }
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// Polls until the server holds fewer than `below` descriptors (the clients' sockets closed).
async fn wait_fds_below(pid: u32, below: usize) {
    let end = Instant::now() + Duration::from_secs(30);
    while open_fds(pid) >= below {
        assert!(
            Instant::now() < end,
            "connections not released: {}",
            open_fds(pid)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn report(phase: &str, pid: u32, before: (u64, u64), peak: (u64, usize)) {
    let (rss_after, hwm) = memory_kib(pid);
    println!(
        "{phase}: VmRSS before {} | peak {} (VmHWM {}) with {} open descriptors | after {}",
        mib(before.0),
        mib(peak.0),
        mib(hwm),
        peak.1,
        mib(rss_after)
    );
}

#[derive(Default)]
struct Counts {
    sent: AtomicU64,
    received: AtomicU64,
    empty: AtomicU64,
    errors: Mutex<Vec<String>>,
    /// The `MessageId` of every acknowledged send and of every received message, so "each
    /// received once" is checked by identity (a loss and a duplicate do not cancel out).
    sent_ids: Mutex<Vec<String>>,
    received_ids: Mutex<Vec<String>>,
}

impl Counts {
    fn error(&self, e: String) {
        let mut g = self.errors.lock().unwrap();
        if g.len() < 20 {
            g.push(e);
        }
    }
}

/// One HTTP client on its own connection: a request to connect, wait for everyone, then send
/// and receive-and-delete for `duration`.
async fn http_client(
    base_url: String,
    i: usize,
    ready: Arc<tokio::sync::Barrier>,
    duration: Duration,
    counts: Arc<Counts>,
) {
    // A client of its own: its own connection pool, so its own connection.
    let http = Http::new(&base_url);
    let queue = format!("load{}", i % QUEUES);
    match http.try_request(Method::GET, &queue, &[], "").await {
        Ok(r) if r.status == 200 => {}
        Ok(r) => counts.error(format!("client {i}: GET {queue}: {}", r.status)),
        Err(e) => counts.error(format!("client {i}: GET {queue}: {e}")),
    }
    ready.wait().await;
    let end = Instant::now() + duration;
    let mut n = 0u64;
    while Instant::now() < end {
        let id = format!("c{i}-{n}");
        n += 1;
        match http
            .send_raw(&queue, "payload", Some(json!({"MessageId": id})), &[])
            .await
        {
            Ok(r) if r.status == 201 => {
                counts.sent.fetch_add(1, Ordering::Relaxed);
                counts.sent_ids.lock().unwrap().push(id);
            }
            Ok(r) => counts.error(format!("client {i}: send: {} {}", r.status, r.body)),
            Err(e) => counts.error(format!("client {i}: send: {e}")),
        }
        let path = format!("{queue}/messages/head?timeout=0");
        match http.try_request(Method::DELETE, &path, &[], "").await {
            Ok(r) if r.status == 200 => {
                counts.received.fetch_add(1, Ordering::Relaxed);
                let id = r.bp()["MessageId"].as_str().unwrap_or_default().to_string();
                counts.received_ids.lock().unwrap().push(id);
            }
            Ok(r) if r.status == 204 => {
                counts.empty.fetch_add(1, Ordering::Relaxed);
            }
            Ok(r) => counts.error(format!("client {i}: receive: {} {}", r.status, r.body)),
            Err(e) => counts.error(format!("client {i}: receive: {e}")),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_http_clients_send_and_receive_without_errors() {
    raise_fd_limit();
    let store = Store::new(Kind::Sqlite);
    let server = Server::start(&store.env());
    let pid = server.pid();
    for q in 0..QUEUES {
        server.http.create_queue(&format!("load{q}"), "").await;
    }
    let before = memory_kib(pid);
    let sampler = Sampler::start(pid);
    let counts = Arc::new(Counts::default());
    let ready = Arc::new(tokio::sync::Barrier::new(CLIENTS + 1));
    let duration = env_secs("LOAD_SECS", 8);
    // Every client connects, then all start together (the barrier) and run for `duration`.
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..CLIENTS {
        let (base, ready, counts) = (server.base_url.clone(), ready.clone(), counts.clone());
        tasks.spawn(http_client(base, i, ready, duration, counts));
    }
    ready.wait().await;
    let started = Instant::now();
    while let Some(r) = tasks.join_next().await {
        r.expect("client task");
    }
    let elapsed = started.elapsed();
    let peak = sampler.finish().await;
    let errors = counts.errors.lock().unwrap().clone();
    assert!(errors.is_empty(), "errors under load: {errors:#?}");
    let sent = counts.sent.load(Ordering::SeqCst);
    let received = counts.received.load(Ordering::SeqCst);
    assert!(sent > CLIENTS as u64, "every client sent: {sent}");
    assert!(
        peak.1 >= CLIENTS,
        "{CLIENTS} connections were open at once: {peak:?}"
    );

    // No acknowledged message lost or duplicated: what was not received is still queued.
    let doc = server.http.export().await;
    let left = messages(&doc).len() as u64;
    assert_eq!(received + left, sent, "received {received} + left {left}");
    let mut sent_ids = counts.sent_ids.lock().unwrap().clone();
    let mut seen: Vec<String> = counts.received_ids.lock().unwrap().clone();
    seen.extend(messages(&doc).iter().map(message_id));
    sent_ids.sort_unstable();
    seen.sort_unstable();
    assert_eq!(
        seen.len(),
        sent_ids.len(),
        "every acknowledged send seen once"
    );
    let mismatch: Vec<_> = sent_ids
        .iter()
        .zip(&seen)
        .filter(|(a, b)| a != b)
        .take(5)
        .collect();
    assert!(
        mismatch.is_empty(),
        "received + left are not exactly the acknowledged ids (first differences, sent vs seen): {mismatch:?}"
    );
    wait_fds_below(pid, 100).await;
    println!(
        "HTTP: {CLIENTS} clients for {:.1} s: {sent} sends and {received} receives acknowledged ({:.0} requests/s), {} empty receives, 0 errors",
        elapsed.as_secs_f64(),
        (sent + received + counts.empty.load(Ordering::SeqCst)) as f64 / elapsed.as_secs_f64(),
        counts.empty.load(Ordering::SeqCst)
    );
    report("HTTP server memory", pid, before, peak);
    server.terminate();
}

/// One AMQP connection: open, `$cbs` links, put-token, and a sender link to a queue (handle 1);
/// a sampled one sends `n` messages on it.
async fn amqp_connection(addr: SocketAddr, i: usize, n: u32) -> Client {
    let mut c = Client::connect(addr).await;
    c.open_cbs().await;
    let queue = format!("amqps://localhost/load{}", i % QUEUES);
    let status = c
        .put_token(
            0,
            &format!("sb://localhost/load{}", i % QUEUES),
            "SharedAccessSignature sr=x&sig=y&se=1&skn=k",
        )
        .await;
    assert_eq!(status, serde_amqp::Value::Int(202), "connection {i}");
    if n > 0 {
        amqp_client::send_messages(&mut c, &queue, n).await;
    } else {
        let (p, _) = c.attach_sender(1, &queue).await;
        assert!(
            matches!(p, fe2o3_amqp_types::performatives::Performative::Attach(_)),
            "connection {i}: {p:?}"
        );
        c.recv().await; // credit
    }
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_amqp_connections_held_open_with_traffic_on_a_sample() {
    raise_fd_limit();
    let store = Store::new(Kind::Sqlite);
    let server = Server::start(&store.env());
    let pid = server.pid();
    let line = server
        .logs
        .wait_for(START_DEADLINE, |l| l.contains("AMQP listening on amqp://"))
        .expect("AMQP address in the log");
    let addr: SocketAddr = line
        .split("amqp://")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .expect("AMQP address");
    for q in 0..QUEUES {
        server.http.create_queue(&format!("load{q}"), "").await;
    }
    let before = memory_kib(pid);
    let sampler = Sampler::start(pid);
    const SAMPLE: usize = 10; // every 10th connection sends
    const PER_SAMPLE: u32 = 5;
    let started = Instant::now();
    let mut clients = Vec::with_capacity(CLIENTS);
    for chunk in 0..CLIENTS / 100 {
        let mut set = tokio::task::JoinSet::new();
        for j in 0..100 {
            let i = chunk * 100 + j;
            let n = if i % SAMPLE == 0 { PER_SAMPLE } else { 0 };
            set.spawn(async move { (i, amqp_connection(addr, i, n).await) });
        }
        while let Some(r) = set.join_next().await {
            clients.push(r.expect("connection task"));
        }
    }
    let connected = started.elapsed();
    assert_eq!(clients.len(), CLIENTS);
    // Held open at once.
    tokio::time::sleep(env_secs("LOAD_HOLD_SECS", 4)).await;
    let held_fds = open_fds(pid);
    assert!(
        held_fds >= CLIENTS,
        "{held_fds} descriptors while holding {CLIENTS} connections"
    );
    // Every sampled connection is still served: a second put-token round trip.
    clients.sort_by_key(|(i, _)| *i);
    for (i, c) in clients.iter_mut().filter(|(i, _)| i % SAMPLE == 0) {
        let status = c
            .put_token(
                1,
                &format!("sb://localhost/load{}", *i % QUEUES),
                "SharedAccessSignature sr=x&sig=y&se=1&skn=k",
            )
            .await;
        assert_eq!(
            status,
            serde_amqp::Value::Int(202),
            "connection {i} after the hold"
        );
    }
    let doc = server.http.export().await;
    let sent = (CLIENTS / SAMPLE) as u64 * PER_SAMPLE as u64;
    assert_eq!(
        messages(&doc).len() as u64,
        sent,
        "every sampled send stored"
    );
    let peak = sampler.finish().await;
    drop(clients);
    wait_fds_below(pid, 100).await;
    println!(
        "AMQP: {CLIENTS} connections (open + CBS put-token + sender link) in {:.1} s, held together; {sent} messages sent by {} of them, 0 errors",
        connected.as_secs_f64(),
        CLIENTS / SAMPLE
    );
    report("AMQP server memory", pid, before, peak);
    server.terminate();
}
