//! Resources, against the real binary on a small tmpfs: a full disk and a read-only data
//! directory, for SQLite and JSON storage.
//!
//! - Disk full: sends are answered 503 once the operation log cannot be written, `/health`
//!   says so, no acknowledged message is lost; when space is freed (the tmpfs is grown) the
//!   server recovers by itself, and after a restart every acknowledged message is there.
//! - Read-only: a new store on a read-only mount, and an existing store on a mount made
//!   read-only, give the documented fallback (ERROR line, degraded `/health`), files untouched.
//!
//! These tests mount tmpfs and so need root (CI runs as root). Where mounting is not permitted
//! they fail with a clear message, unless `LOCALZURE_SKIP_MOUNT_TESTS=1` is set.

mod process;

use process::*;
use reqwest::StatusCode;
use serde_json::json;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A tmpfs mounted on a temp directory; unmounted when dropped (also when a test fails).
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (e.g. "2m"); `None` when mounting fails and
    /// `LOCALZURE_SKIP_MOUNT_TESTS=1` is set, a panic with the reason otherwise.
    fn mount(size: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().expect("temp dir");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output();
        let failure = match out {
            Ok(o) if o.status.success() => return Some(Tmpfs { dir }),
            Ok(o) => String::from_utf8_lossy(&o.stderr).trim().to_string(),
            Err(e) => format!("cannot run mount: {e}"),
        };
        if std::env::var("LOCALZURE_SKIP_MOUNT_TESTS").as_deref() == Ok("1") {
            eprintln!("skipped: mounting a tmpfs failed ({failure}); LOCALZURE_SKIP_MOUNT_TESTS=1");
            return None;
        }
        panic!(
            "these tests mount a tmpfs and need root (CI runs as root); mounting failed: \
             {failure}. Set LOCALZURE_SKIP_MOUNT_TESTS=1 to skip them."
        );
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `mount -o remount,OPTIONS`.
    fn remount(&self, options: &str) {
        let out = Command::new("mount")
            .args(["-o", &format!("remount,{options}")])
            .arg(self.path())
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "remount,{options}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A store of `kind` inside the mount.
    fn store(&self, kind: Kind) -> Store {
        Store {
            kind,
            dir: tempfile::tempdir_in(self.path()).expect("temp dir in the tmpfs"),
            extra: Vec::new(),
            redis: None,
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: a still-open file (a server killed by a failing test) must not keep it mounted.
        let _ = Command::new("umount").arg("-l").arg(self.path()).status();
    }
}

/// Polls `/health` until it answers `want` (or panics after `deadline`).
async fn wait_health(http: &Http, want: StatusCode, deadline: Duration) -> serde_json::Value {
    let end = Instant::now() + deadline;
    loop {
        let (status, body) = http.health().await;
        if status == want {
            return body;
        }
        assert!(
            Instant::now() < end,
            "/health stayed {status} (wanted {want}): {body}"
        );
        // Polling the server's state, not synchronising on time.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ----- disk full --------------------------------------------------------------------------------

/// Sends 8 KiB messages until `refusals` in a row are refused; returns the acknowledged ids
/// and every id that was refused.
async fn fill(http: &Http, from: usize, refusals: usize) -> (Vec<String>, Vec<String>) {
    let body = "x".repeat(8 * 1024);
    let (mut acked, mut refused) = (Vec::new(), Vec::new());
    let mut in_a_row = 0;
    for i in from..from + 5_000 {
        let id = format!("m{i}");
        let r = http
            .send_raw("q", &body, Some(json!({"MessageId": id})), &[])
            .await
            .unwrap_or_else(|e| panic!("send {id}: {e}"));
        match r.status.as_u16() {
            201 => {
                acked.push(id);
                in_a_row = 0;
            }
            503 => {
                refused.push(id);
                in_a_row += 1;
                if in_a_row == refusals {
                    return (acked, refused);
                }
            }
            s => panic!("send {id}: unexpected {s}: {}", r.body),
        }
    }
    panic!(
        "the 2 MiB disk never filled up ({} acknowledged)",
        acked.len()
    );
}

async fn disk_full(kind: Kind) {
    let Some(fs) = Tmpfs::mount("2m") else { return };
    let store = fs.store(kind);
    let server = Server::start(&store.env());
    server.http.create_queue("q", "").await;
    let (mut acked, mut refused) = fill(&server.http, 0, 5).await;
    assert!(acked.len() > 10, "some sends fit: {}", acked.len());

    // Refused requests are 503 and /health says why.
    let (status, health) = server.http.health().await;
    assert_eq!(status, 503, "{health}");
    assert_eq!(health["status"], "unhealthy", "{health}");
    let why = health["storage"]["journalError"]
        .as_str()
        .unwrap_or_default();
    assert!(why.contains("No space left"), "{health}");
    let r = server
        .http
        .send_raw("q", "y", Some(json!({"MessageId": "while-full"})), &[])
        .await
        .unwrap();
    assert_eq!(r.status, 503, "{}", r.body);
    refused.push("while-full".to_string());

    // Free space: the server recovers by itself.
    fs.remount("size=64m");
    let health = wait_health(&server.http, StatusCode::OK, Duration::from_secs(10)).await;
    assert_eq!(health["status"], "healthy", "{health}");
    for i in 0..5 {
        let id = format!("after-{i}");
        server
            .http
            .send("q", "z", json!({"MessageId": id}), &[])
            .await;
        acked.push(id);
    }

    // After a crash and restart every acknowledged message is there, once.
    let logs = server.kill();
    assert!(!logs.text().contains("panicked"), "{}", logs.text());
    let server = Server::start(&store.env());
    let found = message_ids(&server.http.export().await);
    let unique: BTreeSet<&String> = found.iter().collect();
    assert_eq!(unique.len(), found.len(), "no duplicates");
    for id in &acked {
        assert!(unique.contains(id), "acknowledged {id} is lost");
    }
    // Refused sends were not acknowledged; the log kept them buffered and wrote them once
    // space came back, so they may be present (never twice).
    let refused_present = refused.iter().filter(|id| unique.contains(id)).count();
    eprintln!(
        "{kind:?}: {} acknowledged (all present), {} refused with 503 ({refused_present} present after recovery)",
        acked.len(),
        refused.len()
    );
    server.terminate();
}

#[tokio::test]
async fn sqlite_disk_full_refuses_with_503_and_recovers_by_itself() {
    disk_full(Kind::Sqlite).await;
}

#[tokio::test]
async fn json_disk_full_refuses_with_503_and_recovers_by_itself() {
    disk_full(Kind::Json).await;
}

// ----- read-only data directory ---------------------------------------------------------------

/// Checks the documented fallback: ERROR naming `path`, `/health` degraded, still serving.
async fn assert_fallback(server: &Server, path: &Path) {
    let line = server.fallback_line();
    assert!(line.contains("Read-only file system"), "{line}");
    assert!(line.contains(&path.display().to_string()), "{line}");
    let (status, health) = server.http.health().await;
    assert_eq!(status, 200, "{health}");
    assert_eq!(health["storage"]["persistent"], false, "{health}");
    assert!(health["storage"]["degraded"].is_string(), "{health}");
    server.http.create_queue("mem", "").await;
    server
        .http
        .send("mem", "x", json!({"MessageId": "x"}), &[])
        .await;
}

/// Every file under `dir` with its contents.
fn files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let bytes = std::fs::read(&p).unwrap();
                out.push((p, bytes));
            }
        }
    }
    out.sort();
    out
}

async fn read_only(kind: Kind) {
    // A new store on a read-only mount.
    let Some(fs) = Tmpfs::mount("8m") else { return };
    let store = fs.store(kind);
    fs.remount("ro");
    let server = Server::start(&store.env());
    assert_fallback(&server, store.dir.path()).await;
    server.terminate();

    // An existing store on a mount made read-only after a clean stop.
    fs.remount("rw");
    let store = fs.store(kind);
    let server = Server::start(&store.env());
    server.http.create_queue("q", "").await;
    server
        .http
        .send("q", "kept", json!({"MessageId": "kept"}), &[])
        .await;
    server.terminate();
    fs.remount("ro");
    let before = files(store.dir.path());
    let server = Server::start(&store.env());
    assert_fallback(&server, store.dir.path()).await;
    server.terminate();
    assert!(files(store.dir.path()) == before, "the store is untouched");

    // Writable again: the data is all there.
    fs.remount("rw");
    let server = Server::start(&store.env());
    assert_eq!(
        message_ids(&server.http.export().await),
        vec!["kept".to_string()]
    );
    server.terminate();
}

#[tokio::test]
async fn sqlite_read_only_data_dir_falls_back_to_memory() {
    read_only(Kind::Sqlite).await;
}

#[tokio::test]
async fn json_read_only_data_dir_falls_back_to_memory() {
    read_only(Kind::Json).await;
}
