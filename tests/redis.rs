//! The Redis backend against the real binary and a real `redis-server` (each test starts its
//! own on a free loopback port; the tests fail, never skip, when `redis-server` is missing):
//! Redis restarting under load, the prefix lease (refusal, expiry, clean hand-over), two
//! prefixes on one Redis, Redis down at start-up (fallback to memory), reads during an outage,
//! and `wal_enabled=false` through an outage. Restart/crash round trips and the storage CLI on Redis run in
//! `tests/persistence.rs` and `tests/storage_cli.rs` with `Kind::Redis` (export/import round
//! trips to and from Redis: `round_trip_through_redis`).

mod process;

use localzure::storage::redis::TestRedis;
use process::*;
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The variables for a server on `redis` with `prefix`.
fn redis_env(redis: &TestRedis, prefix: &str) -> Vec<(String, String)> {
    vec![
        ("LOCALZURE_STORAGE_TYPE".into(), "redis".into()),
        ("LOCALZURE_REDIS_HOST".into(), "127.0.0.1".into()),
        ("LOCALZURE_REDIS_PORT".into(), redis.port.to_string()),
        ("LOCALZURE_REDIS_PREFIX".into(), prefix.into()),
        ("LOCALZURE_SNAPSHOT_INTERVAL".into(), "0".into()),
    ]
}

fn redis_con(redis: &TestRedis) -> redis::Connection {
    redis::Client::open(format!("redis://127.0.0.1:{}/", redis.port))
        .and_then(|c| c.get_connection())
        .expect("connect to the test Redis")
}

async fn wait_health(http: &Http, healthy: bool, what: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = http.health().await;
        if (status == 200) == healthy {
            return body;
        }
        assert!(Instant::now() < deadline, "{what}: health stayed {body}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Redis is SIGKILLed and restarted (AOF, fsync always) while senders keep going: sends fail
/// with 503 while it is away, `/health` says why, the server reconnects by itself, and after a
/// crash of the emulator every acknowledged send is there exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restart_under_load_loses_nothing_acknowledged() {
    const TASKS: usize = 4;
    let dir = tempfile::tempdir().unwrap();
    let mut redis = TestRedis::start_durable(dir.path());
    let env = redis_env(&redis, "load:");
    let server = Server::start(&env);
    server.http.create_queue("q", "").await;
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let attempted: Arc<Mutex<BTreeSet<String>>> = Arc::default();
    let refused = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let http = server.http.clone();
        let (acked, attempted, refused, stop) = (
            acked.clone(),
            attempted.clone(),
            refused.clone(),
            stop.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                let id = format!("t{t}-{n}");
                n += 1;
                attempted.lock().unwrap().insert(id.clone());
                match http
                    .send_raw("q", &id, Some(json!({ "MessageId": id })), &[])
                    .await
                {
                    Ok(r) if r.status == 201 => acked.lock().unwrap().push(id),
                    Ok(r) if r.status == 503 => {
                        refused.fetch_add(1, Ordering::SeqCst);
                        // Back off a little so the outage does not spin the CPU.
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    Ok(r) => panic!("unexpected {}: {}", r.status, r.body),
                    Err(e) => panic!("request failed: {e}"),
                }
            }
        }));
    }
    let wait_acks = |min: usize| {
        let acked = acked.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(30);
            while acked.lock().unwrap().len() < min {
                assert!(Instant::now() < deadline, "senders make no progress");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    wait_acks(100).await;
    redis.kill();
    let body = wait_health(&server.http, false, "Redis killed").await;
    let err = body["storage"]["journalError"].as_str().unwrap_or_default();
    assert!(err.contains("Redis"), "the reason names Redis: {body}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while refused.load(Ordering::SeqCst) == 0 {
        assert!(Instant::now() < deadline, "no 503 while Redis was away");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let acked_during_outage = acked.lock().unwrap().len();
    redis.restart();
    wait_health(&server.http, true, "Redis back").await;
    wait_acks(acked_during_outage + 100).await;
    stop.store(true, Ordering::SeqCst);
    for t in tasks {
        t.await.expect("sender");
    }
    // A crash of the emulator: only what Redis holds counts.
    server.kill();
    let server = Server::start(&env);
    let mut seen: BTreeMap<String, u32> = BTreeMap::new();
    while let Some(m) = server.http.receive_delete("q").await {
        let id = m.bp()["MessageId"].as_str().expect("MessageId").to_string();
        assert!(attempted.lock().unwrap().contains(&id), "never sent: {id}");
        *seen.entry(id).or_default() += 1;
    }
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "delivered more than once: {twice:?}");
    let acked = acked.lock().unwrap().clone();
    let missing: Vec<_> = acked.iter().filter(|id| !seen.contains_key(*id)).collect();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged sends lost: {missing:?}",
        missing.len(),
        acked.len()
    );
    server.terminate();
}

/// A lease held by a live instance elsewhere refuses start with a clear message; once it
/// expires the server starts; a clean shutdown hands the prefix over at once.
#[tokio::test]
async fn lease_refuses_then_expires_then_hands_over_on_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let redis = TestRedis::start(dir.path());
    let env = redis_env(&redis, "lease:");
    let mut con = redis_con(&redis);
    redis::cmd("SET")
        .arg("lease:lease")
        .arg("pid 1 host elsewhere id other")
        .arg("PX")
        .arg(1500)
        .exec(&mut con)
        .unwrap();
    let e = Server::try_start(&env, &[]).err().expect("refused");
    assert_ne!(e.status.code(), Some(0), "{}", e.log);
    assert!(
        e.log.contains("in use by another LocalZure process"),
        "{}",
        e.log
    );
    assert!(e.log.contains("pid 1 host elsewhere"), "{}", e.log);
    // Wait for the expiry (polling Redis), then start.
    let deadline = Instant::now() + Duration::from_secs(10);
    while redis::cmd("EXISTS")
        .arg("lease:lease")
        .query::<i64>(&mut con)
        .unwrap()
        == 1
    {
        assert!(Instant::now() < deadline, "the lease never expired");
        std::thread::sleep(Duration::from_millis(20));
    }
    let first = Server::start(&env);
    first.http.create_queue("q", "").await;
    let holder: String = redis::cmd("GET")
        .arg("lease:lease")
        .query(&mut con)
        .unwrap();
    assert!(
        holder.starts_with(&format!("pid {} ", first.pid())),
        "{holder}"
    );
    let ttl: i64 = redis::cmd("PTTL")
        .arg("lease:lease")
        .query(&mut con)
        .unwrap();
    assert!(ttl > 0, "the lease expires unless renewed: {ttl}");
    first.terminate();
    let gone: Option<String> = redis::cmd("GET")
        .arg("lease:lease")
        .query(&mut con)
        .unwrap();
    assert!(gone.is_none(), "released on clean shutdown: {gone:?}");
    let second = Server::start(&env);
    let doc = second.http.export().await;
    assert_eq!(doc["entities"].as_array().map(Vec::len), Some(1));
    second.terminate();
}

/// Two emulators on one Redis under different prefixes run at once and never see each other's
/// data; purging one leaves the other intact.
#[tokio::test]
async fn two_prefixes_on_one_redis_are_independent() {
    let dir = tempfile::tempdir().unwrap();
    let redis = TestRedis::start(dir.path());
    let (env_a, env_b) = (redis_env(&redis, "a:"), redis_env(&redis, "b:"));
    let a = Server::start(&env_a);
    let b = Server::start(&env_b);
    a.http.create_queue("only-a", "").await;
    b.http.create_queue("only-b", "").await;
    a.http
        .send("only-a", "x", json!({"MessageId": "a1"}), &[])
        .await;
    b.http
        .send("only-b", "y", json!({"MessageId": "b1"}), &[])
        .await;
    a.cli(&["storage", "purge", "--yes"]).ok();
    a.terminate();
    b.kill();
    let a = Server::start(&env_a);
    let b = Server::start(&env_b);
    let (da, db) = (a.http.export().await, b.http.export().await);
    assert_eq!(da["entities"].as_array().map(Vec::len), Some(0), "{da}");
    let names: Vec<&str> = db["entities"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["name"].as_str())
        .collect();
    assert_eq!(names, vec!["only-b"], "{db}");
    assert_eq!(messages(&db).len(), 1);
    a.terminate();
    b.terminate();
}

/// README: "A Redis that is down at start-up makes the server fall back to memory, as any
/// backend that cannot be opened does." The guide's ERROR line, `/health` says degraded and
/// not persistent, and the server serves.
#[tokio::test]
async fn redis_down_at_start_up_falls_back_to_memory() {
    let dir = tempfile::tempdir().unwrap();
    let mut redis = TestRedis::start(dir.path());
    let env = redis_env(&redis, "down:");
    redis.kill();
    let server = Server::start(&env);
    let line = server.fallback_line();
    assert!(line.contains("(error="), "{line}");
    let (status, health) = server.http.health().await;
    assert_eq!(status, 200, "{health}");
    assert_eq!(health["storage"]["persistent"], false, "{health}");
    assert!(health["storage"]["degraded"].is_string(), "{health}");
    server.http.create_queue("q", "").await;
    server
        .http
        .send("q", "x", json!({"MessageId": "m"}), &[])
        .await;
    assert_eq!(message_ids(&server.http.export().await), ["m"]);
    server.terminate();
}

/// README: while Redis is unreachable "state-changing requests fail with 503 … Reads keep
/// working from memory." Entity reads, listings and export answer from memory during the
/// outage; a send is refused; after Redis is back the server is healthy and sends again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_reads_keep_working_and_writes_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut redis = TestRedis::start_durable(dir.path());
    let server = Server::start(&redis_env(&redis, "out:"));
    server.http.create_queue("q", "").await;
    for id in ["a", "b"] {
        server
            .http
            .send("q", id, json!({"MessageId": id}), &[])
            .await;
    }
    redis.kill();
    // A write notices the outage (503, not acknowledged).
    let r = server
        .http
        .send_raw("q", "refused", Some(json!({"MessageId": "c"})), &[])
        .await
        .expect("an HTTP answer");
    assert_eq!(r.status, 503, "send during the outage: {}", r.body);
    wait_health(&server.http, false, "Redis down").await;
    // Reads answer from memory.
    let q = server.http.get("q").await;
    assert_eq!(q.status, 200, "GET q during the outage: {}", q.body);
    assert!(q.body.contains("<MessageCount>"), "{}", q.body);
    let list = server.http.get("$Resources/Queues").await;
    assert_eq!(list.status, 200, "list during the outage: {}", list.body);
    assert!(list.body.contains(">q<"), "{}", list.body);
    let ids = message_ids(&server.http.export().await);
    assert!(
        ids.starts_with(&["a".to_string(), "b".to_string()]),
        "export during the outage: {ids:?}"
    );

    redis.restart();
    wait_health(&server.http, true, "Redis back").await;
    server
        .http
        .send("q", "d", json!({"MessageId": "d"}), &[])
        .await;
    server.kill();
    // Everything acknowledged is there after a crash; the refused send may be too (it was
    // buffered, not discarded: README), but once at most.
    let server = Server::start(&redis_env(&redis, "out:"));
    let ids = message_ids(&server.http.export().await);
    for id in ["a", "b", "d"] {
        assert_eq!(ids.iter().filter(|i| *i == id).count(), 1, "{id}: {ids:?}");
    }
    assert!(ids.iter().filter(|i| *i == "c").count() <= 1, "{ids:?}");
    server.terminate();
}

/// README: "With `wal_enabled=false` there is no log to fail: requests are acknowledged from
/// memory, and snapshots fail (logged) until Redis is back." Then the shutdown snapshot keeps
/// everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_without_the_log_acknowledges_from_memory_during_an_outage() {
    let dir = tempfile::tempdir().unwrap();
    let mut redis = TestRedis::start_durable(dir.path());
    let mut env = redis_env(&redis, "nowal:");
    env.push(("LOCALZURE_WAL_ENABLED".into(), "false".into()));
    let server = Server::start(&env);
    server.http.create_queue("q", "").await;
    server
        .http
        .send("q", "a", json!({"MessageId": "a"}), &[])
        .await;
    redis.kill();
    // No log: the send is acknowledged from memory.
    server
        .http
        .send("q", "b", json!({"MessageId": "b"}), &[])
        .await;
    let r = server
        .http
        .request(
            reqwest::Method::POST,
            "$admin/snapshot",
            &[("X-LocalZure-Admin", "1")],
            "",
        )
        .await;
    assert!(
        !r.status.is_success(),
        "a snapshot cannot succeed while Redis is down: {} {}",
        r.status,
        r.body
    );
    redis.restart();
    let logs = server.terminate();
    assert!(logs.contains("final snapshot written"), "{}", logs.text());
    let server = Server::start(&env);
    assert_eq!(message_ids(&server.http.export().await), ["a", "b"]);
    server.terminate();
}
