//! Persistence, end to end, against the real binary: state survives SIGTERM and SIGKILL for the
//! SQLite and JSON backends; crash safety of acknowledged sends; torn and corrupt journals;
//! fallback to memory; schema versions; configuration precedence; the data-directory lock.

mod process;

use process::*;
use reqwest::Method;
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// Checks the populated state is really there (beyond the export comparison).
fn check_populated(doc: &serde_json::Value) {
    let msgs = messages(doc);
    let by_id: BTreeMap<String, &serde_json::Value> = msgs
        .iter()
        .map(|m| {
            let name = m["entity"]["name"].as_str().unwrap_or("").to_string();
            let id = m["message"]["content"]["message_id"]
                .as_str()
                .unwrap_or("")
                .to_string();
            (format!("{name}/{id}"), m)
        })
        .collect();
    let get = |k: &str| {
        by_id
            .get(k)
            .unwrap_or_else(|| panic!("no message {k} in export: {doc:#}"))
    };
    let dlq = get("orders/dlq-1");
    assert_eq!(dlq["deadLetter"], true);
    assert_eq!(dlq["message"]["delivery_count"], 1);
    let locked = get("orders/locked-1");
    assert!(locked["message"]["lock"].is_object(), "{locked}");
    let active = get("orders/active-1");
    assert_eq!(active["message"]["state"], "Active");
    assert!(active["message"]["content"]["properties"]["customer"]
        .to_string()
        .contains("alice"));
    assert_eq!(get("orders/scheduled-1")["message"]["state"], "Scheduled");
    assert_eq!(get("retries/retry-1")["message"]["delivery_count"], 2);
    assert_eq!(get("high/ev-1")["message"]["sequence_number"], 1);
    assert_eq!(get("high/ev-2")["message"]["sequence_number"], 2);
    assert_eq!(get("big/ev-1")["message"]["sequence_number"], 1);
    assert!(
        !by_id.contains_key("big/ev-2"),
        "the SQL rule routes ev-2 away"
    );
    assert!(
        !by_id.keys().any(|k| k.ends_with("/ev-3")),
        "no rule matches ev-3"
    );
    assert_eq!(doc["entities"].as_array().map(Vec::len), Some(5));
}

async fn state_survives_restarts(kind: Kind) {
    let store = Store::new(kind);
    let server = Server::start(&store.env());
    let locked_path = populate(&server.http).await;
    let before = server.http.export().await;
    check_populated(&before);

    // Graceful stop: final snapshot and compaction are logged, exit 0.
    let logs = server.terminate();
    assert!(logs.contains("final snapshot written"), "{}", logs.text());
    assert!(logs.contains("storage compacted"), "{}", logs.text());
    assert!(logs.contains("shutdown complete"), "{}", logs.text());

    let server = Server::start(&store.env());
    assert!(
        server.logs.contains("Replayed 0 operations from WAL"),
        "a graceful stop leaves nothing to replay: {}",
        server.logs.text()
    );
    let after = server.http.export().await;
    assert_same_state(&before, &after, "after SIGTERM and restart");

    // The lock survived: its token still completes the message.
    let r = server
        .http
        .request(Method::DELETE, &locked_path, &[], "")
        .await;
    assert_eq!(
        r.status, 200,
        "complete with the pre-restart lock: {}",
        r.body
    );
    // More work, then a crash: the journal carries it.
    server
        .http
        .send(
            "orders",
            "after restart",
            json!({"MessageId": "active-2"}),
            &[],
        )
        .await;
    let before_kill = server.http.export().await;
    let logs = server.kill();
    assert!(!logs.contains("final snapshot written"));

    let server = Server::start(&store.env());
    let line = server
        .logs
        .wait_for(Duration::ZERO, |l| l.contains("Replayed "))
        .expect("replay line");
    let n: u64 = line
        .split("Replayed ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("count in {line:?}"));
    assert!(n >= 2, "complete + send replayed, got {line:?}");
    let after_kill = server.http.export().await;
    assert_same_state(&before_kill, &after_kill, "after SIGKILL and replay");
    // Sequence numbers continue past everything the queue ever assigned.
    server
        .http
        .send("orders", "next", json!({"MessageId": "active-3"}), &[])
        .await;
    let doc = server.http.export().await;
    let seqs: Vec<u64> = messages(&doc)
        .iter()
        .filter(|m| m["entity"]["name"] == "orders" && m["deadLetter"] == false)
        .map(|m| {
            (
                m["message"]["content"]["message_id"].clone(),
                m["message"]["sequence_number"].as_u64().unwrap(),
            )
        })
        .filter(|(id, _)| id == "active-3")
        .map(|(_, s)| s)
        .collect();
    assert_eq!(seqs, vec![6], "orders assigned 1..=5 before");
    server.terminate();
}

#[tokio::test]
async fn sqlite_state_survives_sigterm_and_sigkill() {
    state_survives_restarts(Kind::Sqlite).await;
}

#[tokio::test]
async fn json_state_survives_sigterm_and_sigkill() {
    state_survives_restarts(Kind::Json).await;
}

#[tokio::test]
async fn redis_state_survives_sigterm_and_sigkill() {
    state_survives_restarts(Kind::Redis).await;
}

// ----- crash safety ---------------------------------------------------------------------------

/// How the crash test stops the server.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Stop {
    Kill,
    Term,
    Int,
}

/// `wal_sync`: `LOCALZURE_WAL_SYNC` (ignored by Redis). In `interval` mode the fsync interval is
/// made far longer than the test, so an acknowledged send survives SIGKILL only because it was
/// written before the reply.
async fn acknowledged_sends_survive(kind: Kind, stop: Stop, wal_sync: &str) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    const TASKS: usize = 6;
    const BEFORE_KILL: usize = 150;

    let store = Store::new(kind);
    let mut env = store.env();
    env.push(("LOCALZURE_WAL_SYNC".into(), wal_sync.into()));
    env.push(("LOCALZURE_WAL_SYNC_INTERVAL_MS".into(), "600000".into()));
    let server = Server::start(&env);
    server.http.create_queue("crash", "").await;
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let attempted: Arc<Mutex<BTreeSet<String>>> = Arc::default();
    let count = Arc::new(AtomicUsize::new(0));
    let progress = Arc::new(tokio::sync::Notify::new());
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let http = server.http.clone();
        let (acked, attempted, count, progress) = (
            acked.clone(),
            attempted.clone(),
            count.clone(),
            progress.clone(),
        );
        tasks.push(tokio::spawn(async move {
            for n in 0.. {
                let id = format!("t{t}-{n}");
                attempted.lock().unwrap().insert(id.clone());
                match http
                    .send_raw("crash", &id, Some(json!({ "MessageId": id })), &[])
                    .await
                {
                    Ok(r) if r.status == 201 => {
                        acked.lock().unwrap().push(id);
                        count.fetch_add(1, Ordering::SeqCst);
                        progress.notify_one();
                    }
                    // The server died mid-request: unacknowledged.
                    Ok(_) | Err(_) => return,
                }
            }
        }));
    }
    // Kill once enough sends were acknowledged (while the senders are still going).
    tokio::time::timeout(Duration::from_secs(30), async {
        while count.load(Ordering::SeqCst) < BEFORE_KILL {
            progress.notified().await;
        }
    })
    .await
    .expect("senders make progress");
    match stop {
        Stop::Kill => {
            server.kill();
        }
        Stop::Term | Stop::Int => {
            let logs = if stop == Stop::Term {
                server.terminate()
            } else {
                server.interrupt()
            };
            assert!(logs.contains("final snapshot written"), "{}", logs.text());
            assert!(
                logs.contains("in-flight requests drained"),
                "{}",
                logs.text()
            );
        }
    }
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(30), t)
            .await
            .expect("senders stop once the server is gone")
            .expect("sender task");
    }
    let acked = acked.lock().unwrap().clone();
    let attempted = attempted.lock().unwrap().clone();
    assert!(acked.len() >= BEFORE_KILL);
    assert!(
        attempted.len() > acked.len(),
        "the stop landed while sends were in flight"
    );

    let server = Server::start(&env);
    assert!(server.logs.contains("Replayed "), "{}", server.logs.text());
    let mut seen: BTreeMap<String, u32> = BTreeMap::new();
    let mut max_seq = 0;
    while let Some(m) = server.http.receive_delete("crash").await {
        let bp = m.bp();
        let id = bp["MessageId"].as_str().expect("MessageId").to_string();
        assert_eq!(m.body, id, "body of {id}");
        assert!(attempted.contains(&id), "never sent: {id}");
        *seen.entry(id).or_default() += 1;
        max_seq = max_seq.max(bp["SequenceNumber"].as_u64().expect("SequenceNumber"));
    }
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "delivered more than once: {twice:?}");
    let missing: Vec<_> = acked.iter().filter(|id| !seen.contains_key(*id)).collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged sends lost after {stop:?} (of {}): {missing:?}",
        missing.len(),
        acked.len()
    );
    // Sequence numbers never go backwards across the restart.
    server
        .http
        .send("crash", "after", json!({"MessageId": "after"}), &[])
        .await;
    let m = server.http.receive_delete("crash").await.expect("after");
    let seq = m.bp()["SequenceNumber"].as_u64().unwrap();
    assert!(
        seq > max_seq && seq as usize > acked.len(),
        "sequence number {seq} after restart, max before {max_seq}, {} acked",
        acked.len()
    );
    server.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_acknowledged_sends_survive_sigkill() {
    acknowledged_sends_survive(Kind::Sqlite, Stop::Kill, "interval").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_acknowledged_sends_survive_sigterm_under_load() {
    acknowledged_sends_survive(Kind::Sqlite, Stop::Term, "interval").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_acknowledged_sends_survive_sigint_under_load() {
    acknowledged_sends_survive(Kind::Json, Stop::Int, "interval").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_acknowledged_sends_survive_sigkill() {
    acknowledged_sends_survive(Kind::Json, Stop::Kill, "interval").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_acknowledged_sends_survive_sigkill() {
    acknowledged_sends_survive(Kind::Redis, Stop::Kill, "interval").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_acknowledged_sends_survive_sigterm_under_load() {
    acknowledged_sends_survive(Kind::Redis, Stop::Term, "interval").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_acknowledged_sends_survive_sigkill_always() {
    acknowledged_sends_survive(Kind::Sqlite, Stop::Kill, "always").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_acknowledged_sends_survive_sigkill_always() {
    acknowledged_sends_survive(Kind::Json, Stop::Kill, "always").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_acknowledged_sends_survive_sigterm_always() {
    acknowledged_sends_survive(Kind::Sqlite, Stop::Term, "always").await;
}

// ----- torn and corrupt journals ---------------------------------------------------------------

/// A store with a queue and `n` sends, left behind by SIGKILL (so the journal holds them).
async fn killed_with_journal(kind: Kind, n: usize) -> (Store, serde_json::Value) {
    let store = Store::new(kind);
    let server = Server::start(&store.env());
    server.http.create_queue("q", "").await;
    for i in 0..n {
        server
            .http
            .send(
                "q",
                &format!("m{i}"),
                json!({"MessageId": format!("m{i}")}),
                &[],
            )
            .await;
    }
    let doc = server.http.export().await;
    server.kill();
    (store, doc)
}

fn replayed_count(logs: &Logs) -> u64 {
    let line = logs
        .wait_for(Duration::ZERO, |l| l.contains("Replayed "))
        .expect("Replayed line");
    line.split("Replayed ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("count in {line:?}"))
}

async fn torn_tail_is_dropped_with_a_warning(kind: Kind) {
    // Garbage appended after the last record.
    let (store, before) = killed_with_journal(kind, 5).await;
    let path = store.journal_path();
    let mut bytes = std::fs::read(&path).expect("journal");
    let frames = journal_frames(&bytes);
    assert_eq!(frames.len(), 6, "create + 5 sends");
    let end = frames.last().map(|(off, len)| off + len).unwrap();
    bytes.truncate(end);
    bytes.extend_from_slice(&[0x17, 0, 0, 0, 0xde, 0xad, 0xbe, 0xef, 1, 2, 3]);
    std::fs::write(&path, &bytes).unwrap();
    let server = Server::start(&store.env());
    let warning = server
        .logs
        .wait_for(Duration::ZERO, |l| l.contains("torn record"))
        .unwrap_or_else(|| panic!("no torn-tail warning: {}", server.logs.text()));
    assert!(warning.contains("WARN"), "{warning}");
    assert!(warning.contains(&format!("offset {end}")), "{warning}");
    assert!(warning.contains(&path.display().to_string()), "{warning}");
    assert_eq!(replayed_count(&server.logs), 6);
    assert_same_state(&before, &server.http.export().await, "garbage tail");
    server.kill();

    // The last record cut short: it is dropped, the earlier ones are kept.
    let (store, _) = killed_with_journal(kind, 5).await;
    let path = store.journal_path();
    let bytes = std::fs::read(&path).expect("journal");
    let frames = journal_frames(&bytes);
    let (last_off, last_len) = *frames.last().unwrap();
    std::fs::write(&path, &bytes[..last_off + last_len - 3]).unwrap();
    let server = Server::start(&store.env());
    let warning = server
        .logs
        .wait_for(Duration::ZERO, |l| l.contains("torn record"))
        .unwrap_or_else(|| panic!("no torn-tail warning: {}", server.logs.text()));
    assert!(warning.contains(&format!("offset {last_off}")), "{warning}");
    assert_eq!(replayed_count(&server.logs), 5);
    let doc = server.http.export().await;
    let ids: BTreeSet<String> = message_ids(&doc).into_iter().collect();
    let want: BTreeSet<String> = (0..4).map(|i| format!("m{i}")).collect();
    assert_eq!(ids, want, "the torn last send is dropped, the others kept");
    server.terminate();
}

#[tokio::test]
async fn sqlite_torn_tail_is_dropped_with_a_warning() {
    torn_tail_is_dropped_with_a_warning(Kind::Sqlite).await;
}

#[tokio::test]
async fn json_torn_tail_is_dropped_with_a_warning() {
    torn_tail_is_dropped_with_a_warning(Kind::Json).await;
}

async fn corrupt_record_in_the_middle_refuses_start(kind: Kind) {
    let (store, _) = killed_with_journal(kind, 5).await;
    let path = store.journal_path();
    let mut bytes = std::fs::read(&path).expect("journal");
    let frames = journal_frames(&bytes);
    // Flip a payload byte of the second record; four good ones follow.
    let (off, len) = frames[1];
    bytes[off + 16 + len / 2] ^= 0x55;
    std::fs::write(&path, &bytes).unwrap();
    let before = bytes.clone();
    let err = match Server::try_start(&store.env(), &[]) {
        Ok(s) => panic!(
            "started on a journal corrupt in the middle; log:\n{}",
            s.logs.text()
        ),
        Err(e) => e,
    };
    assert_ne!(err.status.code(), Some(0), "{}", err.log);
    assert!(
        err.status.code().is_some(),
        "exits, not a signal: {}",
        err.status
    );
    let line = err
        .log
        .lines()
        .find(|l| l.contains("corrupt"))
        .unwrap_or_else(|| panic!("no corruption error: {}", err.log));
    assert!(line.contains("ERROR"), "{line}");
    assert!(line.contains(&path.display().to_string()), "{line}");
    assert!(!err.log.contains("listening on"), "{}", err.log);
    // Nothing was thrown away: the file is as it was.
    assert_eq!(
        std::fs::read(&path).unwrap(),
        before,
        "journal left untouched"
    );
}

#[tokio::test]
async fn sqlite_corrupt_record_in_the_middle_refuses_start() {
    corrupt_record_in_the_middle_refuses_start(Kind::Sqlite).await;
}

#[tokio::test]
async fn json_corrupt_record_in_the_middle_refuses_start() {
    corrupt_record_in_the_middle_refuses_start(Kind::Json).await;
}

// ----- fallback, schema, configuration, lock, wal disabled ------------------------------------

/// A storage location that cannot be created. Root ignores directory permissions, so as root
/// the path goes under a regular file (creating a directory there fails for everyone).
fn unwritable_location(dir: &std::path::Path) -> std::path::PathBuf {
    let is_root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(true);
    if is_root {
        let file = dir.join("file.txt");
        std::fs::write(&file, b"not a directory").unwrap();
        file.join("store")
    } else {
        use std::os::unix::fs::PermissionsExt;
        let ro = dir.join("readonly");
        std::fs::create_dir(&ro).unwrap();
        std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
        ro.join("store")
    }
}

async fn unwritable_data_dir_falls_back_to_memory(kind: Kind) {
    let store = Store::new(kind);
    let bad = unwritable_location(store.dir.path());
    let store = match kind {
        Kind::Sqlite => store.set(
            "LOCALZURE_SQLITE_PATH",
            &bad.join("db.sqlite").display().to_string(),
        ),
        _ => store.set("LOCALZURE_JSON_PATH", &bad.display().to_string()),
    };
    let server = Server::start(&store.env());
    let line = server.fallback_line();
    assert!(line.contains("(error="), "{line}");
    assert!(
        line.contains(&bad.display().to_string()),
        "names the path: {line}"
    );

    let (status, health) = server.http.health().await;
    assert_eq!(status, 200, "{health}");
    assert_eq!(health["storage"]["persistent"], false, "{health}");
    assert!(health["storage"]["degraded"].is_string(), "{health}");
    assert_eq!(health["storage"]["type"], kind.as_str(), "{health}");

    let out = server.cli(&["storage", "stats"]);
    let text = out.ok();
    assert!(text.contains("DEGRADED"), "{text}");
    let out = server.cli(&["storage", "stats", "--json"]);
    let stats: serde_json::Value = serde_json::from_str(out.ok()).expect("stats JSON");
    assert!(stats["status"]["degraded"].is_string(), "{stats}");

    // It still serves, in memory.
    server.http.create_queue("q", "").await;
    server
        .http
        .send("q", "x", json!({"MessageId": "x"}), &[])
        .await;
    assert!(server.http.receive_delete("q").await.is_some());
    server.terminate();
}

#[tokio::test]
async fn sqlite_unwritable_data_dir_falls_back_to_memory() {
    unwritable_data_dir_falls_back_to_memory(Kind::Sqlite).await;
}

#[tokio::test]
async fn json_unwritable_data_dir_falls_back_to_memory() {
    unwritable_data_dir_falls_back_to_memory(Kind::Json).await;
}

#[tokio::test]
async fn sqlite_schema_version_newer_than_supported_is_refused_and_falls_back() {
    let store = Store::new(Kind::Sqlite);
    let db = store.sqlite_path();
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch(
            "CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_at TIMESTAMP);
             INSERT INTO schema_version (version) VALUES (99);",
        )
        .unwrap();
    }
    let server = Server::start(&store.env());
    // Documented behaviour: the database cannot be opened, so the server runs degraded in
    // memory, and the error names the file and both versions.
    let line = server.fallback_line();
    assert!(line.contains(&db.display().to_string()), "{line}");
    assert!(line.contains("schema version 99"), "{line}");
    assert!(line.contains("(1)"), "{line}");
    let (_, health) = server.http.health().await;
    assert_eq!(health["storage"]["persistent"], false, "{health}");
    server.http.create_queue("q", "").await;
    server.terminate();
    // The newer database was not touched.
    let conn = rusqlite::Connection::open(&db).unwrap();
    let v: i64 = conn
        .query_row("SELECT MAX(version) FROM schema_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(v, 99);
    let tables: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM sqlite_master WHERE type='table' AND name IN ('entities','messages','state')",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(tables, 0, "no tables created in a newer database");
}

#[tokio::test]
async fn sqlite_schema_version_zero_is_migrated_at_start() {
    let store = Store::new(Kind::Sqlite);
    let db = store.sqlite_path();
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch("CREATE TABLE legacy (x INTEGER); INSERT INTO legacy VALUES (7);")
            .unwrap();
    }
    let server = Server::start(&store.env());
    let line = server
        .logs
        .wait_for(Duration::ZERO, |l| l.contains("migrated storage schema"))
        .unwrap_or_else(|| panic!("no migration logged: {}", server.logs.text()));
    assert!(line.contains("from=0") && line.contains("to=1"), "{line}");
    server.http.create_queue("q", "").await;
    server.terminate();
    let conn = rusqlite::Connection::open(&db).unwrap();
    let (v, applied): (i64, Option<String>) = conn
        .query_row("SELECT version, applied_at FROM schema_version", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!(v, 1);
    assert!(applied.is_some(), "applied_at recorded");
    let x: i64 = conn
        .query_row("SELECT x FROM legacy", [], |r| r.get(0))
        .unwrap();
    assert_eq!(x, 7, "unrelated tables are left alone");
    // And the next start does not migrate again.
    drop(conn);
    let server = Server::start(&store.env());
    assert!(!server.logs.contains("migrated storage schema"));
    let doc = server.http.export().await;
    assert_eq!(doc["entities"].as_array().map(Vec::len), Some(1));
    server.terminate();
}

#[tokio::test]
async fn environment_wins_over_yaml() {
    let dir = tempfile::tempdir().unwrap();
    let json_dir = dir.path().join("json-from-yaml");
    let yaml_db = dir.path().join("from-yaml.db");
    let cfg = dir.path().join("config.yaml");
    write(
        &cfg,
        format!(
            "storage:\n  type: json\n  sqlite:\n    path: {}\n    wal_enabled: true\n  json:\n    path: {}\n    pretty_print: true\n  snapshot_interval_seconds: 0\n  auto_compact: true\nserver:\n  http_port: 1\n",
            yaml_db.display(),
            json_dir.display()
        )
        .as_bytes(),
    );
    let vars = vec![("LOCALZURE_STORAGE_TYPE".to_string(), "sqlite".to_string())];
    // Through --config.
    let server = Server::start_args(&vars, &["--config", cfg.to_str().unwrap()]);
    assert_ne!(
        server.port(),
        1,
        "LOCALZURE_HTTP_PORT=0 wins over server.http_port"
    );
    server.http.create_queue("q", "").await;
    let (_, health) = server.http.health().await;
    assert_eq!(health["storage"]["type"], "sqlite", "{health}");
    assert_eq!(health["storage"]["persistent"], true, "{health}");
    server.terminate();
    assert!(
        yaml_db.is_file(),
        "sqlite database at the YAML's sqlite.path"
    );
    assert!(!json_dir.exists(), "the YAML's json type was overridden");

    // Through LOCALZURE_CONFIG: the same file, the state is there.
    let mut vars = vars;
    vars.push(("LOCALZURE_CONFIG".into(), cfg.display().to_string()));
    let server = Server::start(&vars);
    let doc = server.http.export().await;
    assert_eq!(doc["entities"].as_array().map(Vec::len), Some(1));
    server.terminate();
}

#[tokio::test]
async fn bad_yaml_key_is_a_clear_start_error() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.yaml");
    write(&cfg, b"storage:\n  type: sqlite\n  snapshot_intervl: 5\n");
    let e = Server::try_start(&[], &["--config", cfg.to_str().unwrap()])
        .err()
        .expect("refused");
    assert_ne!(e.status.code(), Some(0));
    assert!(e.log.contains("snapshot_intervl"), "{}", e.log);
    let e = Server::try_start(&[("LOCALZURE_WAL_ENABLED".into(), "maybe".into())], &[])
        .err()
        .expect("refused");
    assert_ne!(e.status.code(), Some(0));
    assert!(
        e.log.contains("LOCALZURE_WAL_ENABLED") || e.log.contains("wal_enabled"),
        "{}",
        e.log
    );
}

async fn second_server_on_the_same_data_is_refused(kind: Kind) {
    let store = Store::new(kind);
    let first = Server::start(&store.env());
    first.http.create_queue("q", "").await;
    let e = Server::try_start(&store.env(), &[])
        .err()
        .expect("second server refused");
    assert_ne!(e.status.code(), Some(0), "{}", e.log);
    assert!(
        e.log.contains("in use by another LocalZure process"),
        "{}",
        e.log
    );
    assert!(
        e.log.contains(&format!("pid {}", first.pid())),
        "names the holder: {}",
        e.log
    );
    assert!(!e.log.contains("listening on"), "{}", e.log);
    // The first one is unaffected, and its data too.
    first
        .http
        .send("q", "x", json!({"MessageId": "x"}), &[])
        .await;
    first.terminate();
    let again = Server::start(&store.env());
    let doc = again.http.export().await;
    assert_eq!(messages(&doc).len(), 1);
    again.terminate();
}

#[tokio::test]
async fn sqlite_second_server_on_the_same_data_is_refused() {
    second_server_on_the_same_data_is_refused(Kind::Sqlite).await;
}

#[tokio::test]
async fn json_second_server_on_the_same_data_is_refused() {
    second_server_on_the_same_data_is_refused(Kind::Json).await;
}

#[tokio::test]
async fn redis_second_server_on_the_same_prefix_is_refused() {
    second_server_on_the_same_data_is_refused(Kind::Redis).await;
}

/// `wal_enabled=false`: no operation log. A graceful stop keeps everything (final snapshot);
/// SIGKILL loses work acknowledged since the last snapshot — the documented contract.
async fn without_wal_sigterm_keeps_state(kind: Kind) {
    let store = Store::new(kind).set("LOCALZURE_WAL_ENABLED", "false");
    let server = Server::start(&store.env());
    populate(&server.http).await;
    let before = server.http.export().await;
    let logs = server.terminate();
    assert!(logs.contains("final snapshot written"), "{}", logs.text());
    assert!(
        !store.journal_path().exists(),
        "no operation log without the WAL"
    );

    let server = Server::start(&store.env());
    assert_same_state(
        &before,
        &server.http.export().await,
        "wal disabled, SIGTERM",
    );
    server
        .http
        .send("orders", "lost", json!({"MessageId": "lost-1"}), &[])
        .await;
    server.kill();
    assert!(!store.journal_path().exists());
    let server = Server::start(&store.env());
    let after = server.http.export().await;
    // Snapshots are off in these tests, so the last snapshot is the one taken at start-up.
    assert_same_state(
        &before,
        &after,
        "wal disabled, SIGKILL: state of the last snapshot",
    );
    server.terminate();
}

#[tokio::test]
async fn sqlite_without_wal_sigterm_keeps_state_sigkill_loses_unsnapshotted() {
    without_wal_sigterm_keeps_state(Kind::Sqlite).await;
}

#[tokio::test]
async fn json_without_wal_sigterm_keeps_state_sigkill_loses_unsnapshotted() {
    without_wal_sigterm_keeps_state(Kind::Json).await;
}

/// Periodic snapshots truncate the journal: after one has run, a SIGKILL restart replays only
/// what came after it.
#[tokio::test]
async fn periodic_snapshot_truncates_the_journal() {
    let store = Store::new(Kind::Sqlite).set("LOCALZURE_SNAPSHOT_INTERVAL", "1");
    let server = Server::start(&store.env());
    server.http.create_queue("q", "").await;
    for i in 0..3 {
        server
            .http
            .send("q", "x", json!({"MessageId": format!("m{i}")}), &[])
            .await;
    }
    server
        .logs
        .wait_for(Duration::from_secs(10), |l| l.contains("snapshot: "))
        .unwrap_or_else(|| panic!("no periodic snapshot: {}", server.logs.text()));
    let before = server.http.export().await;
    server.kill();
    let server = Server::start(
        &store
            .env()
            .into_iter()
            .filter(|(k, _)| k != "LOCALZURE_SNAPSHOT_INTERVAL")
            .collect::<Vec<_>>(),
    );
    assert_eq!(replayed_count(&server.logs), 0, "{}", server.logs.text());
    assert_same_state(&before, &server.http.export().await, "periodic snapshot");
    server.terminate();
}

// ----- names and sequence numbers -------------------------------------------------------------

/// Names that need escaping in file names and keys (slashes, underscores that could make two
/// JSON file names alike, mixed case) survive restarts and stay distinct.
async fn tricky_names_survive(kind: Kind) {
    let store = Store::new(kind);
    let server = Server::start(&store.env());
    let queues = ["a/b", "a_b", "MiXed.Case-1", "x..y"];
    for q in queues {
        server.http.create_queue(q, "").await;
        server
            .http
            .send(q, q, json!({"MessageId": format!("in {q}")}), &[])
            .await;
    }
    // subscription_{topic}_{sub}: "tp_q"/"r" and "tp"/"q_r" must not share a file.
    for (t, sub) in [("tp_q", "r"), ("tp", "q_r"), ("t/x", "s")] {
        if server.http.get(t).await.status == 404 {
            server.http.create_topic(t, "").await;
        }
        server.http.create_subscription(t, sub, "").await;
    }
    for t in ["tp_q", "tp", "t/x"] {
        server
            .http
            .send(t, t, json!({"MessageId": format!("to {t}")}), &[])
            .await;
    }
    let before = server.http.export().await;
    assert_eq!(messages(&before).len(), queues.len() + 3);
    server.terminate();
    let server = Server::start(&store.env());
    assert_same_state(
        &before,
        &server.http.export().await,
        "tricky names, SIGTERM",
    );
    for q in queues {
        let m = server.http.receive_delete(q).await.expect(q);
        assert_eq!(m.body, q, "the message of {q} stayed in {q}");
    }
    for (t, sub) in [("tp_q", "r"), ("tp", "q_r"), ("t/x", "s")] {
        let m = server
            .http
            .receive_delete(&format!("{t}/Subscriptions/{sub}"))
            .await
            .expect(sub);
        assert_eq!(m.body, t, "{t}/{sub}");
    }
    let after = server.http.export().await;
    server.kill();
    let server = Server::start(&store.env());
    assert_same_state(&after, &server.http.export().await, "tricky names, SIGKILL");
    assert!(messages(&after).is_empty());
    server.terminate();
    if kind == Kind::Json {
        for f in walk(&store.json_path()) {
            assert!(
                f.starts_with(store.json_path()),
                "file outside the data directory: {}",
                f.display()
            );
        }
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[tokio::test]
async fn sqlite_tricky_names_survive_restarts() {
    tricky_names_survive(Kind::Sqlite).await;
}

#[tokio::test]
async fn json_tricky_names_survive_restarts() {
    tricky_names_survive(Kind::Json).await;
}

/// Draining an entity and restarting does not restart its sequence numbers.
async fn sequence_numbers_continue_after_drain(kind: Kind, kill: bool) {
    let store = Store::new(kind);
    let server = Server::start(&store.env());
    server.http.create_queue("q", "").await;
    server.http.create_topic("t", "").await;
    server.http.create_subscription("t", "s", "").await;
    for i in 0..3 {
        server
            .http
            .send("q", "x", json!({"MessageId": format!("q{i}")}), &[])
            .await;
        server
            .http
            .send("t", "x", json!({"MessageId": format!("t{i}")}), &[])
            .await;
    }
    while server.http.receive_delete("q").await.is_some() {}
    while server
        .http
        .receive_delete("t/Subscriptions/s")
        .await
        .is_some()
    {}
    if kill {
        server.kill();
    } else {
        server.terminate();
    }
    let server = Server::start(&store.env());
    server
        .http
        .send("q", "x", json!({"MessageId": "next"}), &[])
        .await;
    server
        .http
        .send("t", "x", json!({"MessageId": "next"}), &[])
        .await;
    let q = server.http.receive_delete("q").await.expect("q");
    assert_eq!(q.bp()["SequenceNumber"], 4, "queue (kill: {kill})");
    let s = server
        .http
        .receive_delete("t/Subscriptions/s")
        .await
        .expect("s");
    assert_eq!(s.bp()["SequenceNumber"], 4, "subscription (kill: {kill})");
    server.terminate();
}

#[tokio::test]
async fn sqlite_sequence_numbers_continue_after_drain_and_restart() {
    sequence_numbers_continue_after_drain(Kind::Sqlite, false).await;
    sequence_numbers_continue_after_drain(Kind::Sqlite, true).await;
}

#[tokio::test]
async fn json_sequence_numbers_continue_after_drain_and_restart() {
    sequence_numbers_continue_after_drain(Kind::Json, false).await;
    sequence_numbers_continue_after_drain(Kind::Json, true).await;
}

// ----- shutdown ---------------------------------------------------------------------------------

/// SIGTERM with a receive parked in a long poll: the poll is answered at once (204), and the
/// server exits 0 well inside Docker's 10-second stop window; `auto_compact=false` skips
/// compaction.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_answers_parked_receives_and_honours_auto_compact() {
    let store = Store::new(Kind::Sqlite).set("LOCALZURE_AUTO_COMPACT", "false");
    let server = Server::start(&store.env());
    server.http.create_queue("q", "").await;
    let http = server.http.clone();
    let parked = tokio::spawn(async move {
        http.try_request(Method::DELETE, "q/messages/head?timeout=60", &[], "")
            .await
    });
    server.wait_parked(1).await;
    let started = std::time::Instant::now();
    let logs = server.terminate();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "graceful stop took {:?}",
        started.elapsed()
    );
    // The receive was accepted and parked before SIGTERM, so it is answered, and answered
    // "no message" (204), not dropped with the connection.
    let r = tokio::time::timeout(Duration::from_secs(5), parked)
        .await
        .expect("parked receive answered")
        .expect("task")
        .expect("the parked receive gets an HTTP answer");
    assert_eq!(r.status, 204, "parked receive answered empty: {}", r.body);
    assert!(logs.contains("final snapshot written"), "{}", logs.text());
    assert!(
        !logs.contains("storage compacted"),
        "auto_compact=false: {}",
        logs.text()
    );
}
