//! Corruption at the process level: what start-up does with damaged storage files.
//!
//! - The operation log cut at EVERY byte offset of its last record: each cut runs the full
//!   recovery path in process (`ServiceBusBackend::new` + `initialize_persistence` on a copy of
//!   the data directory); the first, a middle and the last offset also run the real binary.
//!   Outcome: a warning naming the file and offset, the earlier records intact, no panic.
//! - A truncated SQLite database (0 bytes, the 100-byte header only, half): the documented
//!   fallback (ERROR "Failed to initialize persistence … Falling back to in-memory mode",
//!   `/health` degraded) naming the file, never a panic, never an empty store served as if it
//!   were persistent, and the damaged file left as it was.
//! - JSON storage files with invalid content (garbage, truncated JSON, wrong types in
//!   `entities/queues.json`, a `messages/queue_*.json` file, `state.json`): the same fallback,
//!   naming the file.

mod process;

use localzure::config::{StorageConfig, StorageType};
use localzure::service::ServiceBusBackend;
use process::*;
use reqwest::Method;
use serde_json::json;
use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

// ----- helpers ------------------------------------------------------------------------------

/// Copies a directory tree (the data directory of a stopped server).
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// A [`Store`] of the same kind whose directory is a copy of `store`'s.
fn copy_store(store: &Store) -> Store {
    let copy = Store::new(store.kind);
    copy_tree(store.dir.path(), copy.dir.path());
    copy
}

/// The storage configuration the binary would build from `store.env()`.
fn storage_config(store: &Store) -> StorageConfig {
    StorageConfig {
        storage_type: match store.kind {
            Kind::Sqlite => StorageType::Sqlite,
            Kind::Json => StorageType::Json,
            Kind::Memory => StorageType::InMemory,
            Kind::Redis => panic!("the corruption tests damage files; Redis has none"),
        },
        sqlite: localzure::config::SqliteConfig {
            path: store.sqlite_path(),
            ..Default::default()
        },
        json: localzure::config::JsonConfig {
            path: store.json_path(),
            ..Default::default()
        },
        snapshot_interval_seconds: 0,
        ..StorageConfig::default()
    }
}

/// The message ids of an export document (HTTP or in-process).
fn ids(doc: &serde_json::Value) -> BTreeSet<String> {
    message_ids(doc).into_iter().collect()
}

fn want(range: std::ops::Range<usize>) -> BTreeSet<String> {
    range.map(|i| format!("m{i}")).collect()
}

/// A log sink for the in-process runs (tracing's fmt layer writes here).
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// Sends `m{from}..m{to}` to queue `q`.
async fn send_range(http: &Http, from: usize, to: usize) {
    for i in from..to {
        http.send(
            "q",
            &format!("m{i}"),
            json!({"MessageId": format!("m{i}")}),
            &[],
        )
        .await;
    }
}

/// A store with queue `q` and `m0..m{n}`, left behind by SIGKILL (the journal holds them).
async fn killed_with_journal(kind: Kind, n: usize) -> Store {
    let store = Store::new(kind);
    let server = Server::start(&store.env());
    server.http.create_queue("q", "").await;
    send_range(&server.http, 0, n).await;
    server.kill();
    store
}

/// Truncates a file to `len` bytes.
fn truncate(path: &Path, len: u64) {
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.set_len(len).unwrap();
}

// ----- the operation log cut inside its last record -------------------------------------------

const SENDS: usize = 5;

/// Every cut inside the last record, through the full in-process recovery path.
async fn journal_cut_at_every_offset_in_process(kind: Kind) {
    let store = killed_with_journal(kind, SENDS).await;
    let bytes = std::fs::read(store.journal_path()).unwrap();
    let frames = journal_frames(&bytes);
    assert_eq!(frames.len(), 1 + SENDS, "create + sends");
    let (last_off, last_len) = *frames.last().unwrap();
    let mut checked = 0;
    for cut in last_off..last_off + last_len {
        let copy = copy_store(&store);
        let journal = copy.journal_path();
        truncate(&journal, cut as u64);
        let logs = Captured::default();
        let sink = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || sink.clone())
            .finish();
        let guard = tracing::subscriber::set_default(subscriber);
        let backend = ServiceBusBackend::new(Some(storage_config(&copy)));
        let status = backend
            .initialize_persistence()
            .await
            .unwrap_or_else(|e| panic!("cut at {cut}: recovery failed: {e}"));
        let text = logs.text();
        assert!(
            status.degraded.is_none(),
            "cut at {cut}: degraded: {status:?}\n{text}"
        );
        assert_eq!(status.replayed, SENDS as u64, "cut at {cut}\n{text}");
        let doc = serde_json::to_value(backend.export().unwrap()).unwrap();
        assert_eq!(ids(&doc), want(0..SENDS - 1), "cut at {cut}");
        let warned = text
            .lines()
            .find(|l| l.contains("torn record"))
            .map(str::to_string);
        if cut == last_off {
            // On a record boundary: nothing is torn, the last record simply is not there.
            assert!(warned.is_none(), "cut at the boundary {cut}: {text}");
        } else {
            let line = warned.unwrap_or_else(|| panic!("cut at {cut}: no warning:\n{text}"));
            assert!(line.contains("WARN"), "{line}");
            assert!(line.contains(&format!("offset {last_off}")), "{line}");
            assert!(
                line.contains(&journal.display().to_string()),
                "names the file: {line}"
            );
        }
        // Start-up snapshotted what it recovered and truncated the log: the torn bytes are gone.
        assert_eq!(
            std::fs::metadata(&journal).unwrap().len(),
            localzure::storage::journal::HEADER_LEN,
            "cut at {cut}: the log is empty after the start-up snapshot"
        );
        backend.shutdown_persistence().await.unwrap();
        drop(guard);
        checked += 1;
    }
    assert_eq!(checked, last_len);
    eprintln!("{kind:?}: {checked} cut offsets recovered in process (record of {last_len} bytes at offset {last_off})");
}

#[tokio::test]
async fn sqlite_journal_cut_at_every_offset_of_the_last_record_in_process() {
    journal_cut_at_every_offset_in_process(Kind::Sqlite).await;
}

#[tokio::test]
async fn json_journal_cut_at_every_offset_of_the_last_record_in_process() {
    journal_cut_at_every_offset_in_process(Kind::Json).await;
}

/// The first, a middle and the last cut inside the last record, through the real binary, and
/// a restart after new work: the recovered log keeps going.
async fn journal_cut_sample_real_binary(kind: Kind) {
    let store = killed_with_journal(kind, SENDS).await;
    let bytes = std::fs::read(store.journal_path()).unwrap();
    let (last_off, last_len) = *journal_frames(&bytes).last().unwrap();
    for cut in [
        last_off + 1,
        last_off + last_len / 2,
        last_off + last_len - 1,
    ] {
        let copy = copy_store(&store);
        let journal = copy.journal_path();
        truncate(&journal, cut as u64);
        let server = Server::start(&copy.env());
        let line = server
            .logs
            .wait_for(Duration::ZERO, |l| l.contains("torn record"))
            .unwrap_or_else(|| panic!("cut at {cut}: no warning: {}", server.logs.text()));
        assert!(line.contains("WARN"), "{line}");
        assert!(line.contains(&format!("offset {last_off}")), "{line}");
        assert!(line.contains(&journal.display().to_string()), "{line}");
        let (status, health) = server.http.health().await;
        assert_eq!(status, 200, "{health}");
        assert_eq!(health["storage"]["persistent"], true, "{health}");
        assert_eq!(ids(&server.http.export().await), want(0..SENDS - 1));
        send_range(&server.http, SENDS, SENDS + 1).await;
        let logs = server.kill();
        assert!(!logs.text().contains("panicked"), "{}", logs.text());
        let server = Server::start(&copy.env());
        let mut expected = want(0..SENDS - 1);
        expected.insert(format!("m{SENDS}"));
        assert_eq!(ids(&server.http.export().await), expected, "cut at {cut}");
        assert!(
            !server.logs.contains("torn record"),
            "clean the second time"
        );
        server.terminate();
    }
}

#[tokio::test]
async fn sqlite_journal_cut_inside_the_last_record_real_binary() {
    journal_cut_sample_real_binary(Kind::Sqlite).await;
}

#[tokio::test]
async fn json_journal_cut_inside_the_last_record_real_binary() {
    journal_cut_sample_real_binary(Kind::Json).await;
}

// ----- the documented fallback ----------------------------------------------------------------

/// Starts on a damaged store and checks the documented fallback: an ERROR line naming `path`,
/// `/health` and `storage stats` degraded, no panic, and the files in `kept` left exactly as
/// they were (a degraded server never writes over the data it could not read).
async fn assert_falls_back(store: &Store, path: &Path, kept: &[PathBuf], what: &str) {
    let before: Vec<Vec<u8>> = kept.iter().map(|p| std::fs::read(p).unwrap()).collect();
    let server = match Server::try_start(&store.env(), &[]) {
        Ok(s) => s,
        Err(e) => panic!("{what}: the server exited ({}):\n{}", e.status, e.log),
    };
    let line = server.fallback_line();
    eprintln!("{what}: {line}");
    assert!(
        line.contains(&path.display().to_string()),
        "{what}: the error names {}: {line}",
        path.display()
    );
    let (status, health) = server.http.health().await;
    assert_eq!(status, 200, "{what}: {health}");
    assert_eq!(health["storage"]["persistent"], false, "{what}: {health}");
    assert!(
        health["storage"]["degraded"]
            .as_str()
            .is_some_and(|d| d.contains(&path.display().to_string())),
        "{what}: {health}"
    );
    let stats = server.http.get("$admin/stats").await;
    assert_eq!(stats.status, 200, "{what}: {}", stats.body);
    assert!(stats.body.contains("degraded"), "{what}: {}", stats.body);
    // It serves, in memory; nothing reaches the damaged files.
    server.http.create_queue("other", "").await;
    server
        .http
        .send("other", "x", json!({"MessageId": "x"}), &[])
        .await;
    let r = server
        .http
        .request(
            Method::POST,
            "$admin/snapshot",
            &[("X-LocalZure-Admin", "1")],
            "",
        )
        .await;
    assert!(r.status.is_success(), "{what}: snapshot: {}", r.body);
    let logs = server.terminate();
    assert!(!logs.text().contains("panicked"), "{what}: {}", logs.text());
    for (p, b) in kept.iter().zip(before) {
        assert!(
            std::fs::read(p).unwrap() == b,
            "{what}: {} is left as it was",
            p.display()
        );
    }
}

// ----- a truncated SQLite database ------------------------------------------------------------

/// A SQLite store whose database holds a snapshot of `m0..m3` (written by a graceful stop) and
/// whose operation log holds `m3..m5` (sent after a restart, then SIGKILL).
async fn sqlite_snapshot_plus_journal() -> Store {
    let store = Store::new(Kind::Sqlite);
    let server = Server::start(&store.env());
    server.http.create_queue("q", "").await;
    send_range(&server.http, 0, 3).await;
    server.terminate();
    let server = Server::start(&store.env());
    send_range(&server.http, 3, 5).await;
    server.kill();
    store
}

#[tokio::test]
async fn sqlite_truncated_database_falls_back_naming_the_file() {
    let store = sqlite_snapshot_plus_journal().await;
    let db = store.sqlite_path();
    let full = std::fs::metadata(&db).unwrap().len();
    assert!(full > 4096, "the database holds pages: {full}");
    for (what, len) in [
        ("empty (0 bytes)", 0),
        ("header only (100 bytes)", 100),
        ("half", full / 2),
    ] {
        let copy = copy_store(&store);
        let db = copy.sqlite_path();
        truncate(&db, len);
        // The log holding the operations after the lost snapshot is kept for the operator (an
        // empty database file is given SQLite's schema when opened; a damaged one is kept).
        let mut kept = vec![copy.journal_path()];
        if len > 0 {
            kept.push(db.clone());
        }
        assert_falls_back(&copy, &db, &kept, what).await;
    }
}

#[tokio::test]
async fn sqlite_intact_copy_recovers_everything() {
    // The control for the test above: the same store, undamaged, recovers all five sends.
    let store = sqlite_snapshot_plus_journal().await;
    let server = Server::start(&store.env());
    assert_eq!(ids(&server.http.export().await), want(0..5));
    let (_, health) = server.http.health().await;
    assert_eq!(health["storage"]["persistent"], true, "{health}");
    server.terminate();
}

// ----- JSON files with invalid content ----------------------------------------------------------

/// A JSON store with queue `q` holding `m0..m3`, stopped gracefully (everything in the files).
async fn json_store() -> Store {
    let store = Store::new(Kind::Json);
    let server = Server::start(&store.env());
    server.http.create_queue("q", "").await;
    send_range(&server.http, 0, 3).await;
    server.terminate();
    store
}

/// Where a store keeps one of its files.
type FileOf = fn(&Store) -> PathBuf;

/// The store's message file of queue `q`.
fn queue_message_file(store: &Store) -> PathBuf {
    let dir = store.json_path().join("messages");
    let found: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            name.starts_with("queue_") && name.ends_with(".json")
        })
        .collect();
    assert_eq!(found.len(), 1, "one message file: {found:?}");
    found[0].clone()
}

#[tokio::test]
async fn json_files_with_invalid_content_fall_back_naming_the_file() {
    let store = json_store().await;
    let files: [(&str, FileOf); 3] = [
        ("entities/queues.json", |s| {
            s.json_path().join("entities").join("queues.json")
        }),
        ("messages/queue_q.json", queue_message_file),
        ("state.json", |s| s.json_path().join("state.json")),
    ];
    for (name, file_of) in files {
        let original = std::fs::read(file_of(&store)).unwrap();
        let wrong_types: &[u8] = if name == "state.json" {
            br#"{"version": "one", "lsn": "many"}"#
        } else {
            br#"{"name": 7, "description": []}"#
        };
        let variants: [(&str, Vec<u8>); 4] = [
            ("garbage", b"\x00\xff\xfe not json at all \x01".to_vec()),
            ("truncated", original[..original.len() / 2].to_vec()),
            ("wrong types", wrong_types.to_vec()),
            ("empty", Vec::new()),
        ];
        for (how, content) in variants {
            let copy = copy_store(&store);
            let path = file_of(&copy);
            std::fs::write(&path, &content).unwrap();
            let kept = [path.clone(), copy.journal_path()];
            assert_falls_back(&copy, &path, &kept, &format!("{name}: {how}")).await;
        }
    }
}

/// A well-formed file whose records carry a field of the wrong type (the broker's part of the
/// record, opaque to the backend, does not decode when the state is rebuilt).
#[tokio::test]
async fn json_record_fields_of_the_wrong_type_are_refused() {
    let store = json_store().await;
    let files: [(&str, FileOf, &str, &str); 2] = [
        (
            "entities/queues.json",
            |s| s.json_path().join("entities").join("queues.json"),
            "\"max_delivery_count\":10",
            "\"max_delivery_count\":\"ten\"",
        ),
        (
            "messages/queue_q.json",
            queue_message_file,
            "\"delivery_count\":0",
            "\"delivery_count\":\"none\"",
        ),
    ];
    for (name, file_of, from, to) in files {
        let copy = copy_store(&store);
        let path = file_of(&copy);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains(from), "{name}: {text}");
        std::fs::write(&path, text.replace(from, to)).unwrap();
        let before = std::fs::read(&path).unwrap();
        let err = match Server::try_start(&copy.env(), &[]) {
            Ok(s) => panic!("{name}: started on a bad record:\n{}", s.logs.text()),
            Err(e) => e,
        };
        eprintln!("{name}: {}", err.log.lines().last().unwrap_or_default());
        assert_eq!(err.status.code(), Some(1), "{name}: {}", err.log);
        assert!(!err.log.contains("panicked"), "{name}: {}", err.log);
        let line = err
            .log
            .lines()
            .find(|l| l.contains("cannot start"))
            .unwrap_or_else(|| panic!("{name}: no refusal: {}", err.log));
        assert!(line.contains("ERROR"), "{line}");
        let dir = copy.json_path().display().to_string();
        assert!(line.contains(&format!("corrupt data in {dir}")), "{line}");
        assert!(line.contains("'q'"), "names the entity: {line}");
        let field = from.split('"').nth(1).unwrap();
        assert!(line.contains(field), "names the field: {line}");
        assert_eq!(std::fs::read(&path).unwrap(), before, "{name}: untouched");
    }
}
