//! Persistence benchmark: `cargo bench --bench persistence` (or `scripts/bench.sh`).
//!
//! 1. Send throughput over HTTP with durable acknowledgement, 64 concurrent senders, for the
//!    in-memory, SQLite and JSON backends.
//! 2. Recovery time of a store holding 1,000,000 messages (load snapshot + replay).
//! 3. Snapshot time with 1,000,000 stored messages and 1,000 changed since the last snapshot.
//!
//! Sizes can be lowered for a quick run: `BENCH_MESSAGES=100000 BENCH_SENDS=200`.
//!
//! Under `cargo bench` it ends with a `== targets` block (recovery of the store under 3 s, the
//! snapshot under 50 ms) and exits 1 when a target is missed; README's "Benchmarks" table
//! copies those lines. Under `cargo test --all-targets` it is a smoke run (tiny sizes, no
//! targets; see `common::smoke`).

mod common;
#[path = "../tests/process/mod.rs"]
mod process;

use common::{env_usize, smoke};
use localzure::broker::entity::EntityProps;
use localzure::broker::message::NewMessage;
use localzure::broker::op::{Op, OpRecord};
use localzure::broker::Broker;
use localzure::config::{Config, StorageConfig, StorageType};
use localzure::service::ServiceBusBackend;
use localzure::storage::sqlite::SqliteBackend;
use localzure::storage::Backend;
use std::time::Instant;
use tokio_util::sync::CancellationToken;

fn senders() -> usize {
    env_usize("BENCH_SENDERS", 64, 4)
}
const QUEUE_XML: &str = r#"<entry xmlns="http://www.w3.org/2005/Atom"><content type="application/xml"><QueueDescription xmlns="http://schemas.microsoft.com/netservices/2010/10/servicebus/connect"/></content></entry>"#;

/// User + system CPU seconds this process has used so far (Linux `/proc/self/stat`; 0 elsewhere).
/// Printed next to wall-clock figures because the machine the figures come from is shared.
fn cpu_secs() -> f64 {
    cpu_secs_of("/proc/self/stat")
}

/// User + system CPU seconds of the process whose `stat` file this is.
fn cpu_secs_of(stat_path: &str) -> f64 {
    let Ok(stat) = std::fs::read_to_string(stat_path) else {
        return 0.0;
    };
    // Fields after the command name (which is in parentheses and may contain spaces).
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return 0.0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line: 12 and 13 after the name.
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// With `BENCH_PERF_CTL=<fifo>` (from `perf record -D -1 --control fifo:<fifo>`), profiling
/// covers only the send windows and the measured recovery, not server start-up, building the
/// store or the final snapshot.
fn perf_control(cmd: &str) {
    if let Ok(path) = std::env::var("BENCH_PERF_CTL") {
        if let Ok(mut f) = std::fs::OpenOptions::new().write(true).open(path) {
            use std::io::Write;
            let _ = writeln!(f, "{cmd}");
        }
    }
}

/// `BENCH_ONLY=sqlite,in-memory` (or `redis`, `process`) runs just those send rows (and skips
/// recovery/snapshot), for profiling one path with `perf`; `recovery` in the list runs the
/// recovery and snapshot part (`BENCH_ONLY=recovery` alone: only that part).
fn wanted(kind: &str) -> bool {
    match std::env::var("BENCH_ONLY") {
        Ok(list) => list.split(',').any(|k| k.trim() == kind),
        Err(_) => true,
    }
}

fn storage(kind: StorageType, dir: &std::path::Path) -> StorageConfig {
    StorageConfig {
        storage_type: kind,
        sqlite: localzure::config::SqliteConfig {
            path: dir.join("sb.db"),
            ..Default::default()
        },
        json: localzure::config::JsonConfig {
            path: dir.join("json"),
            pretty_print: false,
        },
        snapshot_interval_seconds: 0,
        ..StorageConfig::default()
    }
}

/// Messages per second for 64 concurrent HTTP senders against a fresh server, and the CPU
/// seconds (client and server, user + system) per 1,000 messages.
async fn send_throughput(kind: StorageType, per_sender: usize) -> (f64, f64) {
    let dir = tempfile::tempdir().expect("tempdir");
    send_throughput_with(storage(kind, dir.path()), per_sender).await
}

/// The Redis row: a private `redis-server` (AOF, `appendfsync always`: the same durability as
/// the file log) on a free port. `None` when `redis-server` is not installed.
async fn redis_send_throughput(per_sender: usize) -> Option<(f64, f64)> {
    let found = std::process::Command::new("redis-server")
        .arg("--version")
        .output()
        .is_ok();
    if !found {
        return None;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let redis = localzure::storage::redis::TestRedis::start_durable(dir.path());
    let cfg = StorageConfig {
        snapshot_interval_seconds: 0,
        ..redis.config("bench:")
    };
    Some(send_throughput_with(cfg, per_sender).await)
}

async fn send_throughput_with(cfg: StorageConfig, per_sender: usize) -> (f64, f64) {
    let backend = ServiceBusBackend::new(Some(cfg.clone()));
    backend.initialize_persistence().await.expect("init");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let config = Config {
        storage: cfg,
        ..Config::default()
    };
    let shutdown = CancellationToken::new();
    let server = {
        let b = backend.clone();
        let s = shutdown.clone();
        tokio::spawn(async move { localzure::server::run(listener, b, &config, s).await })
    };
    let (rate, cpu) = send_load(&format!("http://{addr}"), per_sender, cpu_secs).await;
    shutdown.cancel();
    let _ = server.await;
    (rate, cpu)
}

/// The same load against the real `localzure` binary as its own process (the way it runs in
/// Docker), client in this process; CPU is the server's plus the client's.
async fn send_throughput_process(kind: process::Kind, per_sender: usize) -> (f64, f64) {
    let store = process::Store::new(kind);
    let server = process::Server::start(&store.env());
    let pid = server.pid();
    let both = move || cpu_secs() + cpu_secs_of(&format!("/proc/{pid}/stat"));
    let (rate, cpu) = send_load(&server.base_url, per_sender, both).await;
    server.terminate();
    (rate, cpu)
}

/// Creates the queue, runs the senders, and returns messages per second and CPU seconds (as
/// `cpu` counts them) per 1,000 messages.
async fn send_load(base: &str, per_sender: usize, cpu: impl Fn() -> f64) -> (f64, f64) {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(senders())
        .build()
        .expect("client");
    client
        .put(format!("{base}/bench"))
        .body(QUEUE_XML)
        .send()
        .await
        .expect("create queue");
    perf_control("enable");
    let started = Instant::now();
    let cpu_before = cpu();
    let mut tasks = Vec::new();
    for s in 0..senders() {
        let client = client.clone();
        let url = format!("{base}/bench/messages");
        tasks.push(tokio::spawn(async move {
            for i in 0..per_sender {
                let r = client
                    .post(&url)
                    .header("BrokerProperties", format!("{{\"MessageId\":\"{s}-{i}\"}}"))
                    .body(vec![b'x'; 128])
                    .send()
                    .await
                    .expect("send");
                assert_eq!(r.status().as_u16(), 201);
            }
        }));
    }
    for t in tasks {
        t.await.expect("sender");
    }
    let secs = started.elapsed().as_secs_f64();
    let used = cpu() - cpu_before;
    perf_control("disable");
    let sent = (senders() * per_sender) as f64;
    (sent / secs, used / sent * 1000.0)
}

/// Builds a SQLite store holding `n` messages over 10 queues, with a snapshot LSN of 0.
fn build_store(dir: &std::path::Path, n: usize) {
    let now = 1_700_000_000_000;
    let mut b = Broker::new(now);
    for q in 0..10 {
        b.apply(&OpRecord {
            at: now,
            op: Op::CreateQueue {
                name: format!("q{q}"),
                props: EntityProps::default(),
            },
        });
    }
    let per = n / 10;
    for q in 0..10 {
        for chunk in 0..per.div_ceil(1000) {
            let msgs = (0..1000.min(per - chunk * 1000))
                .map(|i| NewMessage {
                    message_id: format!("{q}-{chunk}-{i}"),
                    body: vec![b'x'; 128],
                    ..NewMessage::default()
                })
                .collect();
            b.apply(&OpRecord {
                at: now,
                op: Op::Send {
                    entity: format!("q{q}"),
                    messages: msgs,
                },
            });
        }
    }
    let delta = b.take_delta(true, 0, now).expect("delta");
    let mut backend = SqliteBackend::open(&dir.join("sb.db"), true).expect("open");
    backend.apply(&delta).expect("write");
}

/// Prints one throughput row against the in-memory rate `base`.
fn row(name: &str, rate: f64, base: f64, cpu_per_1000: f64, note: &str) {
    println!(
        "{:<10} {:>9.0} msg/s  ({:+.1}% vs in-memory{note})  CPU {:.1} ms per 1,000 messages",
        name,
        rate,
        (rate / base - 1.0) * 100.0,
        cpu_per_1000 * 1000.0
    );
}

/// The binary's runtime (with the hooks group commit uses), so the figures are the server's.
fn main() {
    match localzure::runtime::builder().build() {
        Ok(rt) => {
            if !rt.block_on(run()) {
                std::process::exit(1);
            }
        }
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            std::process::exit(1);
        }
    }
}

/// Recovery of the whole store (load + replay + post-replay snapshot), README's target.
const RECOVERY_TARGET_SECS: f64 = 3.0;
/// A snapshot of 1,000 changes (state lock held + write), README's target.
const SNAPSHOT_TARGET_MS: f64 = 50.0;

fn verdict(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "NOT MET"
    }
}

/// Runs the bench; false when a target was missed (never in smoke mode).
async fn run() -> bool {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(
            "localzure::service=info",
        ))
        .init();
    let per_sender = env_usize("BENCH_SENDS", 300, 5);
    let n = env_usize("BENCH_MESSAGES", 1_000_000, 2_000);
    println!("== send throughput: {} concurrent HTTP senders x {per_sender} messages, durable acknowledgement", senders());
    let mut base = 0.0;
    for kind in [
        StorageType::InMemory,
        StorageType::Sqlite,
        StorageType::Json,
    ] {
        if !wanted(kind.as_str()) {
            continue;
        }
        let (rate, cpu_per_1000) = send_throughput(kind, per_sender).await;
        if kind == StorageType::InMemory {
            base = rate;
        }
        row(kind.as_str(), rate, base, cpu_per_1000, "");
    }

    if wanted("redis") {
        match redis_send_throughput(per_sender).await {
            Some((rate, cpu_per_1000)) => row(
                "redis",
                rate,
                base,
                cpu_per_1000,
                "; redis-server AOF, appendfsync always; CPU: LocalZure side",
            ),
            None => println!("redis      skipped: redis-server is not installed"),
        }
    }
    if wanted("process") {
        println!("== the same senders against the localzure binary as its own process (CPU: server + client)");
        let mut base = 0.0;
        for kind in [process::Kind::Memory, process::Kind::Sqlite] {
            let (rate, cpu_per_1000) = send_throughput_process(kind, per_sender).await;
            if kind == process::Kind::Memory {
                base = rate;
            }
            row(kind.as_str(), rate, base, cpu_per_1000, "");
        }
    }
    if std::env::var("BENCH_ONLY").is_ok() && !wanted("recovery") {
        return true;
    }

    println!("== recovery and snapshot with {n} stored messages (SQLite)");
    let dir = tempfile::tempdir().expect("tempdir");
    let t = Instant::now();
    build_store(dir.path(), n);
    println!("built store in {:.1} s", t.elapsed().as_secs_f64());
    // Building the store freed more memory than recovery needs; give it back first, so
    // recovery pays for fresh pages as the server's start-up does.
    // SAFETY: malloc_trim only releases the allocator's free memory.
    unsafe {
        libc::malloc_trim(0);
    }
    let cfg = storage(StorageType::Sqlite, dir.path());
    let backend = ServiceBusBackend::new(Some(cfg));
    perf_control("enable");
    let (t, cpu) = (Instant::now(), cpu_secs());
    backend.initialize_persistence().await.expect("init");
    let (recovery, recovery_cpu) = (t.elapsed().as_secs_f64(), cpu_secs() - cpu);
    perf_control("disable");
    println!(
        "recovery (load + replay + post-replay snapshot): {recovery:.2} s (CPU {recovery_cpu:.2} s)"
    );
    for i in 0..1000 {
        backend
            .execute(Op::Send {
                entity: format!("q{}", i % 10),
                messages: vec![NewMessage {
                    message_id: format!("changed-{i}"),
                    body: vec![b'y'; 128],
                    ..NewMessage::default()
                }],
            })
            .await
            .expect("send");
    }
    let r = backend.snapshot().await.expect("snapshot");
    println!(
        "snapshot of 1,000 changes: capture (state lock held) {:.2} ms, write {:.2} ms, {} messages written",
        r.capture_ms, r.write_ms, r.messages_written
    );
    backend.shutdown_persistence().await.expect("shutdown");
    drop(backend);
    {
        // The two halves of recovery on their own (after the measured recovery, so they do
        // not warm the allocator for it): the backend's read, then the rebuild.
        let (t, cpu) = (Instant::now(), cpu_secs());
        let mut b = SqliteBackend::open(&dir.path().join("sb.db"), true).expect("open");
        let snap = b.load().expect("load").expect("a snapshot");
        let (read, read_cpu) = (t.elapsed().as_secs_f64(), cpu_secs() - cpu);
        let (t, cpu) = (Instant::now(), cpu_secs());
        let broker = Broker::restore(&snap, 1_700_000_000_000).expect("restore");
        let (rebuild, rebuild_cpu) = (t.elapsed().as_secs_f64(), cpu_secs() - cpu);
        drop((broker, snap));
        println!(
            "recovery parts: SQLite read {read:.2} s (CPU {read_cpu:.2} s), rebuild {rebuild:.2} s (CPU {rebuild_cpu:.2} s)"
        );
    }

    let snapshot_ms = r.capture_ms + r.write_ms;
    let recovery_met = recovery < RECOVERY_TARGET_SECS;
    let snapshot_met = snapshot_ms < SNAPSHOT_TARGET_MS;
    println!("== targets (README \"Benchmarks\" copies these lines)");
    println!(
        "recovery of {n} messages: {recovery:.2} s (CPU {recovery_cpu:.2} s); target under {RECOVERY_TARGET_SECS} s: {}",
        verdict(recovery_met)
    );
    println!(
        "snapshot with {n} stored, 1,000 changed: {:.2} ms lock held + {:.2} ms write; target under {SNAPSHOT_TARGET_MS} ms: {}",
        r.capture_ms,
        r.write_ms,
        verdict(snapshot_met)
    );
    if smoke() {
        println!("(smoke run under cargo test: sizes are tiny and targets are not enforced)");
        return true;
    }
    recovery_met && snapshot_met
}
