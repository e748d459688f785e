//! The SQLite snapshot backend (rusqlite, bundled SQLite).
//!
//! Tables (created by the migrations in [`super::schema`]):
//! - `entities(kind, topic, name, key PRIMARY KEY, data)`: `key` is the case-insensitive storage
//!   key of [`super::keys::entity_key_string`]; `kind`/`topic`/`name` keep the names' case.
//! - `messages(entity_key, dead_letter, seq, data) WITHOUT ROWID`, clustered on
//!   `(entity_key, dead_letter, seq)`, so a full scan streams each entity's messages in order
//!   and a topic's subscriptions are one key range.
//! - `state(id = 1, data, lsn, taken_at)`: the broker-wide state and the snapshot's LSN.
//!
//! Every delta is one transaction. The operation journal lives next to the database at
//! `{path}.wal` (SQLite's own write-ahead log is `{path}-wal`; the two are unrelated).

use super::keys::{
    entity_key_string, kind_tag, parse_kind, prefix_upper_bound, subscriptions_prefix,
};
use super::schema;
use super::{
    Backend, BackendStats, Delta, EntityKey, EntityRecord, MessageKey, MessageRecord, Snapshot,
    StorageError,
};
use crate::storage::EntityKind;
use crate::time::Millis;
use rusqlite::types::ValueRef;
use rusqlite::{params, Connection, OptionalExtension, Transaction};
use serde_json::value::RawValue;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A snapshot store in one SQLite database file.
pub struct SqliteBackend {
    conn: Connection,
    path: PathBuf,
}

impl std::fmt::Debug for SqliteBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteBackend")
            .field("path", &self.path)
            .finish()
    }
}

fn sqlite_err(path: &Path, source: rusqlite::Error) -> StorageError {
    StorageError::Sqlite {
        path: path.to_path_buf(),
        source,
    }
}

fn corrupt(path: &Path, detail: String) -> StorageError {
    StorageError::Corrupt {
        path: path.to_path_buf(),
        detail,
    }
}

/// `path` with `suffix` appended to its file name (`db` → `db.wal`, `db-wal`).
fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(suffix);
    PathBuf::from(s)
}

impl SqliteBackend {
    /// Opens (creating if needed) the database at `path` and migrates its schema.
    ///
    /// `wal_enabled` selects SQLite's `journal_mode=WAL` (else `DELETE`). `synchronous` is
    /// `FULL` in both modes, deliberately: a committed snapshot is followed by truncating the
    /// operation journal, so a snapshot that a power cut could roll back (as `NORMAL` allows in
    /// WAL mode) would lose acknowledged operations. Snapshots are periodic, so the one extra
    /// fsync per commit costs nothing measurable.
    pub fn open(path: &Path, wal_enabled: bool) -> Result<Self, StorageError> {
        if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| StorageError::Io {
                path: dir.to_path_buf(),
                source: e,
            })?;
        }
        let err = |e| sqlite_err(path, e);
        let mut conn = Connection::open(path).map_err(err)?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(err)?;
        let wanted = if wal_enabled { "wal" } else { "delete" };
        let mode: String = conn
            .query_row(&format!("PRAGMA journal_mode = {wanted}"), [], |r| r.get(0))
            .map_err(err)?;
        if !mode.eq_ignore_ascii_case(wanted) {
            tracing::warn!(path = %path.display(), wanted, got = %mode, "SQLite journal mode not applied");
        }
        conn.execute_batch("PRAGMA synchronous = FULL;")
            .map_err(err)?;
        conn.set_prepared_statement_cache_capacity(32);
        schema::migrate(&mut conn, path)?;
        Ok(SqliteBackend {
            conn,
            path: path.to_path_buf(),
        })
    }

    /// The schema version recorded in the database.
    pub fn schema_version(&self) -> Result<i64, StorageError> {
        schema::current_version(&self.conn, &self.path)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn last_snapshot(&self) -> Result<Option<Millis>, StorageError> {
        self.conn
            .query_row("SELECT taken_at FROM state WHERE id = 1", [], |r| r.get(0))
            .optional()
            .map_err(|e| sqlite_err(&self.path, e))
    }
}

/// Deletes an entity, its messages, and for a topic its subscriptions and their messages.
fn delete_entity(tx: &Transaction<'_>, key: &EntityKey) -> rusqlite::Result<()> {
    let ks = entity_key_string(key);
    tx.prepare_cached("DELETE FROM entities WHERE key = ?1")?
        .execute([&ks])?;
    tx.prepare_cached("DELETE FROM messages WHERE entity_key = ?1")?
        .execute([&ks])?;
    if key.kind == EntityKind::Topic {
        let lo = subscriptions_prefix(&key.name);
        let hi = prefix_upper_bound(&lo);
        tx.prepare_cached("DELETE FROM entities WHERE key >= ?1 AND key < ?2")?
            .execute([&lo, &hi])?;
        tx.prepare_cached("DELETE FROM messages WHERE entity_key >= ?1 AND entity_key < ?2")?
            .execute([&lo, &hi])?;
    }
    Ok(())
}

/// Applies `delta` inside `tx`. Order: wipe (full), entity deletes, entity upserts, message
/// deletes, message upserts, state — so a key both deleted and upserted ends up upserted.
fn apply_in(tx: &Transaction<'_>, delta: &Delta) -> rusqlite::Result<()> {
    if delta.full {
        tx.execute_batch("DELETE FROM messages; DELETE FROM entities; DELETE FROM state;")?;
    }
    for key in &delta.entity_deletes {
        delete_entity(tx, key)?;
    }
    {
        let mut st = tx.prepare_cached(
            "INSERT OR REPLACE INTO entities (kind, topic, name, key, data)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )?;
        for e in &delta.entity_upserts {
            st.execute(params![
                kind_tag(e.key.kind),
                e.key.topic,
                e.key.name,
                entity_key_string(&e.key),
                e.data.get()
            ])?;
        }
    }
    // Message keys come grouped by entity; reuse the last storage key instead of rebuilding it.
    let mut cache = KeyCache::default();
    {
        let mut st = tx.prepare_cached(
            "DELETE FROM messages WHERE entity_key = ?1 AND dead_letter = ?2 AND seq = ?3",
        )?;
        for k in &delta.message_deletes {
            st.execute(params![
                cache.key_of(&k.entity),
                k.dead_letter,
                k.sequence_number as i64
            ])?;
        }
    }
    {
        let mut st = tx.prepare_cached(
            "INSERT OR REPLACE INTO messages (entity_key, dead_letter, seq, data)
             VALUES (?1, ?2, ?3, ?4)",
        )?;
        for m in &delta.message_upserts {
            let k = &m.key;
            // Sequence numbers are below 2^63 in practice; the cast round-trips either way.
            st.execute(params![
                cache.key_of(&k.entity),
                k.dead_letter,
                k.sequence_number as i64,
                m.data.get()
            ])?;
        }
    }
    match &delta.state {
        Some(state) => {
            tx.prepare_cached(
                "INSERT OR REPLACE INTO state (id, data, lsn, taken_at) VALUES (1, ?1, ?2, ?3)",
            )?
            .execute(params![state.get(), delta.lsn as i64, delta.taken_at])?;
        }
        None => {
            // Unchanged state (or none, after a full wipe): only the LSN and time move.
            tx.prepare_cached(
                "INSERT INTO state (id, data, lsn, taken_at) VALUES (1, NULL, ?1, ?2)
                 ON CONFLICT (id) DO UPDATE SET lsn = excluded.lsn, taken_at = excluded.taken_at",
            )?
            .execute(params![delta.lsn as i64, delta.taken_at])?;
        }
    }
    Ok(())
}

/// Remembers the storage key of the last entity seen.
#[derive(Default)]
struct KeyCache {
    last: Option<(EntityKey, String)>,
}

impl KeyCache {
    fn key_of(&mut self, entity: &EntityKey) -> String {
        match &self.last {
            Some((e, s)) if e == entity => s.clone(),
            _ => {
                let s = entity_key_string(entity);
                self.last = Some((entity.clone(), s.clone()));
                s
            }
        }
    }
}

/// Message rows as read, before their JSON is validated.
type RawRows = Vec<(MessageKey, String)>;

/// Rows read per chunk handed to the validating thread.
const LOAD_CHUNK: usize = 8192;

/// Why [`read_messages`] stopped.
enum ReadError {
    Sqlite(StorageError),
    /// The validating thread hung up (it found bad JSON and reports that).
    Stopped,
}

/// Reads every message row in key order and sends them in chunks to `out`; returns the number
/// of rows skipped because their entity no longer exists. The entity of each row is looked up
/// once per run of rows with the same `entity_key`.
fn read_messages(
    tx: &Transaction<'_>,
    path: &Path,
    entities: &[EntityRecord],
    by_key: &HashMap<String, usize>,
    out: std::sync::mpsc::SyncSender<RawRows>,
) -> Result<u64, ReadError> {
    let err = |e| ReadError::Sqlite(sqlite_err(path, e));
    let mut orphans = 0u64;
    let mut st = tx
        .prepare("SELECT entity_key, dead_letter, seq, data FROM messages")
        .map_err(err)?;
    let mut rows = st.query([]).map_err(err)?;
    let mut current: Option<(String, Option<usize>)> = None;
    let mut chunk = Vec::with_capacity(LOAD_CHUNK);
    while let Some(row) = rows.next().map_err(err)? {
        let ek = match row.get_ref(0).map_err(err)? {
            ValueRef::Text(t) => t,
            other => {
                return Err(ReadError::Sqlite(corrupt(
                    path,
                    format!("message entity_key of type {}", other.data_type()),
                )))
            }
        };
        let entity = match &current {
            Some((k, idx)) if k.as_bytes() == ek => *idx,
            _ => {
                let ek = String::from_utf8_lossy(ek).into_owned();
                let idx = by_key.get(&ek).copied();
                current = Some((ek, idx));
                idx
            }
        };
        let Some(idx) = entity else {
            orphans += 1;
            continue;
        };
        let seq: i64 = row.get(2).map_err(err)?;
        let key = MessageKey {
            entity: entities[idx].key.clone(),
            dead_letter: row.get(1).map_err(err)?,
            sequence_number: seq as u64,
        };
        chunk.push((key, row.get(3).map_err(err)?));
        if chunk.len() == LOAD_CHUNK {
            let full = std::mem::replace(&mut chunk, Vec::with_capacity(LOAD_CHUNK));
            out.send(full).map_err(|_| ReadError::Stopped)?;
        }
    }
    if !chunk.is_empty() {
        out.send(chunk).map_err(|_| ReadError::Stopped)?;
    }
    Ok(orphans)
}

/// Validates the JSON of message rows; the error names the message.
fn validate_rows(path: &Path, rows: RawRows) -> Result<Vec<MessageRecord>, StorageError> {
    rows.into_iter()
        .map(|(key, s)| match RawValue::from_string(s) {
            Ok(data) => Ok(MessageRecord { key, data }),
            Err(e) => Err(corrupt(
                path,
                format!(
                    "invalid JSON in message {} of '{}': {e}",
                    key.sequence_number, key.entity.name
                ),
            )),
        })
        .collect()
}

fn raw_json(path: &Path, what: &str, s: String) -> Result<Box<RawValue>, StorageError> {
    RawValue::from_string(s).map_err(|e| corrupt(path, format!("invalid JSON in {what}: {e}")))
}

impl Backend for SqliteBackend {
    /// Reads every entity, message and the state row. Messages stream in key order (see
    /// [`read_messages`]) while a second thread validates their JSON.
    fn load(&mut self) -> Result<Option<Snapshot>, StorageError> {
        let path = self.path.clone();
        let err = |e| sqlite_err(&path, e);
        let tx = self.conn.transaction().map_err(err)?;
        let mut entities = Vec::new();
        let mut by_key: HashMap<String, usize> = HashMap::new();
        {
            let mut st = tx
                .prepare("SELECT kind, topic, name, key, data FROM entities ORDER BY key")
                .map_err(err)?;
            let mut rows = st.query([]).map_err(err)?;
            while let Some(row) = rows.next().map_err(err)? {
                let tag: String = row.get(0).map_err(err)?;
                let kind = parse_kind(&tag)
                    .ok_or_else(|| corrupt(&path, format!("unknown entity kind '{tag}'")))?;
                let key = EntityKey {
                    kind,
                    topic: row.get(1).map_err(err)?,
                    name: row.get(2).map_err(err)?,
                };
                by_key.insert(row.get(3).map_err(err)?, entities.len());
                let data = raw_json(&path, "an entity", row.get(4).map_err(err)?)?;
                entities.push(EntityRecord { key, data });
            }
        }
        // Rows are read here while a second thread validates their JSON, so the two overlap.
        let (messages, orphans) = std::thread::scope(|scope| {
            let (chunks_tx, chunks_rx) = std::sync::mpsc::sync_channel::<RawRows>(4);
            let validator = scope.spawn(|| -> Result<Vec<MessageRecord>, StorageError> {
                let mut out = Vec::new();
                for chunk in chunks_rx {
                    out.extend(validate_rows(&path, chunk)?);
                }
                Ok(out)
            });
            let read = read_messages(&tx, &path, &entities, &by_key, chunks_tx);
            let validated = validator.join().unwrap_or_else(|_| {
                Err(StorageError::Other(
                    "the message validation thread panicked".into(),
                ))
            });
            match (read, validated) {
                (Ok(orphans), Ok(messages)) => Ok((messages, orphans)),
                // The validator stopped first (bad JSON): the reader only saw a closed channel.
                (Ok(_) | Err(ReadError::Stopped), Err(e)) => Err(e),
                (Err(ReadError::Sqlite(e)), _) => Err(e),
                (Err(ReadError::Stopped), Ok(_)) => Err(StorageError::Other(
                    "the message validation thread stopped early".into(),
                )),
            }
        })?;
        if orphans > 0 {
            tracing::warn!(path = %path.display(), orphans, "skipped messages of entities that no longer exist");
        }
        let state: Option<(Option<String>, i64, Millis)> = tx
            .query_row(
                "SELECT data, lsn, taken_at FROM state WHERE id = 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()
            .map_err(err)?;
        drop(tx);
        let Some((data, lsn, taken_at)) = state else {
            if entities.is_empty() && messages.is_empty() {
                return Ok(None);
            }
            return Err(corrupt(&path, "entities stored without a state row".into()));
        };
        Ok(Some(Snapshot {
            entities,
            messages,
            state: data.map(|s| raw_json(&path, "the state", s)).transpose()?,
            lsn: lsn as u64,
            taken_at,
        }))
    }

    fn apply(&mut self, delta: &Delta) -> Result<(), StorageError> {
        let path = &self.path;
        let tx = self.conn.transaction().map_err(|e| sqlite_err(path, e))?;
        apply_in(&tx, delta).map_err(|e| sqlite_err(path, e))?;
        tx.commit().map_err(|e| sqlite_err(path, e))
    }

    /// `VACUUM`, then `wal_checkpoint(TRUNCATE)` to shrink SQLite's own WAL file.
    fn compact(&mut self) -> Result<(), StorageError> {
        let err = |e| sqlite_err(&self.path, e);
        self.conn.execute_batch("VACUUM;").map_err(err)?;
        let _busy: i64 = self
            .conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))
            .map_err(err)?;
        Ok(())
    }

    fn purge(&mut self) -> Result<(), StorageError> {
        let path = &self.path;
        let tx = self.conn.transaction().map_err(|e| sqlite_err(path, e))?;
        tx.execute_batch("DELETE FROM messages; DELETE FROM entities; DELETE FROM state;")
            .map_err(|e| sqlite_err(path, e))?;
        tx.commit().map_err(|e| sqlite_err(path, e))
    }

    fn stats(&self) -> BackendStats {
        let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        BackendStats {
            backend: "SQLite".to_string(),
            location: Some(self.path.display().to_string()),
            size_bytes: size(&self.path) + size(&with_suffix(&self.path, "-wal")),
            last_snapshot: self.last_snapshot().ok().flatten(),
        }
    }

    fn journal_path(&self) -> Option<PathBuf> {
        Some(with_suffix(&self.path, ".wal"))
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::{self, msg, queue};
    use super::*;
    use std::time::Instant;

    #[test]
    fn conformance_wal_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data").join("servicebus.db");
        testkit::conformance(&|| Box::new(SqliteBackend::open(&path, true).unwrap()));
    }

    #[test]
    fn conformance_delete_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("servicebus.db");
        testkit::conformance(&|| Box::new(SqliteBackend::open(&path, false).unwrap()));
    }

    #[test]
    fn schema_and_pragmas() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("servicebus.db");
        let b = SqliteBackend::open(&path, true).unwrap();
        assert_eq!(b.schema_version().unwrap(), 1);
        let mode: String = b
            .conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        assert_eq!(
            b.journal_path().unwrap(),
            dir.path().join("servicebus.db.wal")
        );
        let stats = b.stats();
        assert_eq!(stats.backend, "SQLite");
        assert_eq!(stats.last_snapshot, None);
        drop(b);
        let b = SqliteBackend::open(&path, false).unwrap();
        let mode: String = b
            .conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "delete");
    }

    #[test]
    fn newer_schema_refuses_to_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("servicebus.db");
        drop(SqliteBackend::open(&path, true).unwrap());
        let conn = Connection::open(&path).unwrap();
        conn.execute("INSERT INTO schema_version (version) VALUES (99)", [])
            .unwrap();
        drop(conn);
        assert!(matches!(
            SqliteBackend::open(&path, true),
            Err(StorageError::SchemaTooNew { found: 99, .. })
        ));
    }

    #[test]
    fn failed_delta_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("servicebus.db");
        let mut b = SqliteBackend::open(&path, true).unwrap();
        let q = queue("q");
        let first = Delta {
            full: true,
            lsn: 1,
            entity_upserts: vec![testkit::entity(&q, "{}")],
            message_upserts: vec![msg(&q, false, 1)],
            ..Delta::default()
        };
        b.apply(&first).unwrap();
        // Make the second statement of the next delta fail.
        b.conn
            .execute_batch(
                "CREATE TRIGGER no_more BEFORE INSERT ON messages
                 BEGIN SELECT RAISE(ABORT, 'boom'); END;",
            )
            .unwrap();
        let second = Delta {
            lsn: 2,
            entity_deletes: vec![q.clone()],
            entity_upserts: vec![testkit::entity(&q, r#"{"v":2}"#)],
            message_upserts: vec![msg(&q, false, 2)],
            ..Delta::default()
        };
        assert!(b.apply(&second).is_err());
        let snap = b.load().unwrap().unwrap();
        assert_eq!(snap.lsn, 1);
        assert_eq!(snap.messages.len(), 1);
        assert_eq!(snap.entities[0].data.get(), "{}");
    }

    #[test]
    fn bad_message_json_names_the_message_and_many_rows_load_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("servicebus.db");
        let mut b = SqliteBackend::open(&path, true).unwrap();
        let (q1, q2) = (queue("q1"), queue("q2"));
        let n = 3 * LOAD_CHUNK as u64 + 17;
        let mut delta = Delta {
            full: true,
            lsn: 1,
            entity_upserts: vec![testkit::entity(&q1, "{}"), testkit::entity(&q2, "{}")],
            ..Delta::default()
        };
        for seq in 0..n {
            delta.message_upserts.push(msg(&q1, seq % 3 == 0, seq));
            delta.message_upserts.push(msg(&q2, false, seq));
        }
        b.apply(&delta).unwrap();
        let snap = b.load().unwrap().unwrap();
        assert_eq!(snap.messages.len() as u64, 2 * n);
        let keys: Vec<_> = snap.messages.iter().map(|m| m.key.clone()).collect();
        let mut sorted = keys.clone();
        sorted.sort_by_key(|k| {
            (
                entity_key_string(&k.entity),
                k.dead_letter,
                k.sequence_number,
            )
        });
        assert_eq!(keys, sorted, "key order");
        for bad_seq in [5, n - 1] {
            b.conn
                .execute(
                    "UPDATE messages SET data = '{\"broken' WHERE entity_key = ?1 AND seq = ?2",
                    params![entity_key_string(&q2), bad_seq as i64],
                )
                .unwrap();
            match b.load() {
                Err(StorageError::Corrupt { detail, .. }) => assert!(
                    detail.contains(&format!("message {bad_seq} of 'q2'")),
                    "{detail}"
                ),
                other => panic!("expected Corrupt, got {other:?}"),
            }
            b.conn
                .execute(
                    "UPDATE messages SET data = '{}' WHERE entity_key = ?1 AND seq = ?2",
                    params![entity_key_string(&q2), bad_seq as i64],
                )
                .unwrap();
        }
        assert_eq!(b.load().unwrap().unwrap().messages.len() as u64, 2 * n);
    }

    /// Loads 1,000,000 messages. Run with
    /// `cargo test --release --lib storage::sqlite -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn load_speed_one_million_messages() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("servicebus.db");
        let mut b = SqliteBackend::open(&path, true).unwrap();
        let queues: Vec<_> = (0..100).map(|i| queue(&format!("queue-{i}"))).collect();
        let mut delta = Delta {
            full: true,
            lsn: 1,
            ..Delta::default()
        };
        for q in &queues {
            delta
                .entity_upserts
                .push(testkit::entity(q, r#"{"props":{}}"#));
        }
        for seq in 0..1_000_000u64 {
            delta
                .message_upserts
                .push(msg(&queues[(seq % 100) as usize], false, seq));
        }
        let t = Instant::now();
        b.apply(&delta).unwrap();
        let write = t.elapsed();
        drop(delta);
        drop(b);
        let mut b = SqliteBackend::open(&path, true).unwrap();
        let t = Instant::now();
        let snap = b.load().unwrap().unwrap();
        let load = t.elapsed();
        assert_eq!(snap.messages.len(), 1_000_000);
        eprintln!(
            "SQLite: wrote 1,000,000 messages in {write:?}, loaded them in {load:?} ({} MB)",
            b.stats().size_bytes / 1_000_000
        );
    }
}
