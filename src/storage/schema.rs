//! Stored-format versions, all in one place, and the SQLite schema's ordered migrations.
//!
//! # Versions
//! Everything LocalZure stores carries a format version, so data kept across an upgrade is
//! either read as what it is (an older version, migrated) or refused, never misread:
//! - [`RECORD_VERSION`]: the encoding of the records themselves, the serde JSON of the broker's
//!   types: operation-log payloads (`{"v":1,"at":…,"op":…}`, in the journal file and the Redis
//!   stream alike) and the snapshot's entity, message and state records.
//! - Each container has its own version ([`Format`]): the SQLite schema ([`SQLITE_SCHEMA`], in
//!   the `schema_version` table), the journal file's framing ([`JOURNAL_FILE`], in its header),
//!   the JSON data directory ([`JSON_DIR`], `version` in `state.json`), the Redis keys
//!   ([`REDIS_KEYS`], the key `{prefix}format`) and the export document ([`EXPORT`], its
//!   `version` field). A container version also fixes the record encoding it holds
//!   ([`Format::records`]): changing [`RECORD_VERSION`] means a new version of every container
//!   that stores records (for SQLite, a migration step), so a binary that predates the change
//!   refuses the data when it opens the store instead of misreading its records.
//! - Data written before versions were explicit is version 1 of everything: operation-log
//!   payloads without `"v"`, and Redis data without a `format` key.
//! - A version above what this binary supports is refused with
//!   [`StorageError::SchemaTooNew`], naming where, the version found and the newest supported.
//!
//! The golden fixtures under `tests/fixtures/stored-format/` were written by earlier versions;
//! `tests/stored_format.rs` opens them with the current code and checks their whole state.
//!
//! # SQLite migrations
//! Each migration is `(version, sql)`; [`migrate`] applies, in one transaction, every step whose
//! version is above the database's current one and records it in `schema_version`. A database
//! written by a newer binary (a version above [`CURRENT_VERSION`]) is refused rather than
//! guessed at. A database with no `schema_version` table is version 0 (new, or created before
//! versioning); its unrelated tables are left alone.

use super::StorageError;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior};
use std::path::{Path, PathBuf};

/// The encoding of records (operation-log payloads and snapshot records) this binary writes
/// and the newest it reads.
pub const RECORD_VERSION: u32 = 1;

/// A stored container's format: its current version and the record encoding each of its
/// versions holds.
#[derive(Debug, Clone, Copy)]
pub struct Format {
    /// What the version is of, for messages.
    pub what: &'static str,
    /// The version this binary writes and the newest it reads.
    pub current: i64,
    /// `records[n - 1]`: the [`RECORD_VERSION`] that version `n` of the container holds.
    pub records: &'static [u32],
}

impl Format {
    /// Refuses `found` when it is newer than [`Format::current`]; `at` names the data.
    pub fn check(&self, found: i64, at: impl Into<PathBuf>) -> Result<(), StorageError> {
        if found > self.current {
            return Err(StorageError::SchemaTooNew {
                path: at.into(),
                found,
                supported: self.current,
            });
        }
        Ok(())
    }
}

/// The SQLite schema (the `schema_version` table).
pub const SQLITE_SCHEMA: Format = Format {
    what: "SQLite schema",
    current: 1,
    records: &[1],
};

/// The journal file's framing (its header); version 2 added the preallocated zero tail.
pub const JOURNAL_FILE: Format = Format {
    what: "journal file",
    current: 2,
    records: &[1, 1],
};

/// The JSON data directory's layout (`version` in `state.json`).
pub const JSON_DIR: Format = Format {
    what: "JSON data directory",
    current: 1,
    records: &[1],
};

/// The Redis key layout (the `{prefix}format` key; absent: version 1).
pub const REDIS_KEYS: Format = Format {
    what: "Redis keys",
    current: 1,
    records: &[1],
};

/// The export document of `localzure storage export|import` (its `version` field).
pub const EXPORT: Format = Format {
    what: "export document",
    current: 1,
    records: &[1],
};

/// Every container format, for the consistency test.
pub const FORMATS: [Format; 5] = [SQLITE_SCHEMA, JOURNAL_FILE, JSON_DIR, REDIS_KEYS, EXPORT];

/// The SQLite schema version this binary writes.
pub const CURRENT_VERSION: i64 = SQLITE_SCHEMA.current;

/// The start of an operation-log payload that names its record version: `{"v":`. The version
/// is the payload's first field, so it is read without decoding the record.
const PAYLOAD_VERSION_PREFIX: &[u8] = b"{\"v\":";

/// The record version of an operation-log payload: its leading `"v"` field, or 1 for a
/// payload written before versions were explicit (`{"at":…`). `None`: a `"v"` that is not a
/// number (the record is then reported as undecodable where it is decoded).
pub fn payload_version(payload: &[u8]) -> Option<u64> {
    let Some(rest) = payload.strip_prefix(PAYLOAD_VERSION_PREFIX) else {
        return Some(1);
    };
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()
}

/// Refuses the operation-log records of a newer record version; `location` names the log.
pub fn check_payloads<'a>(
    records: impl IntoIterator<Item = &'a (u64, Vec<u8>)>,
    location: &str,
) -> Result<(), StorageError> {
    for (lsn, payload) in records {
        let Some(found) = payload_version(payload) else {
            continue;
        };
        if found > u64::from(RECORD_VERSION) {
            return Err(StorageError::SchemaTooNew {
                path: PathBuf::from(format!("{location} (record LSN {lsn})")),
                found: i64::try_from(found).unwrap_or(i64::MAX),
                supported: i64::from(RECORD_VERSION),
            });
        }
    }
    Ok(())
}

/// Migrations, in order. Never edit a released step; append a new one. The schema version
/// also covers the record encoding stored in its `data` columns ([`SQLITE_SCHEMA`]`.records`):
/// a new [`RECORD_VERSION`] comes with a step here that converts the stored records.
const MIGRATIONS: &[(i64, &str)] = &[(
    1,
    "CREATE TABLE entities (
         kind TEXT NOT NULL,
         topic TEXT,
         name TEXT NOT NULL,
         key TEXT PRIMARY KEY,
         data TEXT NOT NULL
     );
     CREATE TABLE messages (
         entity_key TEXT NOT NULL,
         dead_letter INTEGER NOT NULL,
         seq INTEGER NOT NULL,
         data TEXT NOT NULL,
         PRIMARY KEY (entity_key, dead_letter, seq)
     ) WITHOUT ROWID;
     CREATE TABLE state (
         id INTEGER PRIMARY KEY CHECK (id = 1),
         data TEXT,
         lsn INTEGER NOT NULL,
         taken_at INTEGER NOT NULL
     );",
)];

fn sqlite_err(path: &Path, source: rusqlite::Error) -> StorageError {
    StorageError::Sqlite {
        path: path.to_path_buf(),
        source,
    }
}

/// The version recorded in `schema_version` (0 when the table is absent or empty).
pub fn current_version(conn: &Connection, path: &Path) -> Result<i64, StorageError> {
    let has_table: Option<i64> = conn
        .query_row(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'",
            [],
            |r| r.get(0),
        )
        .optional()
        .map_err(|e| sqlite_err(path, e))?;
    if has_table.is_none() {
        return Ok(0);
    }
    conn.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM schema_version",
        [],
        |r| r.get(0),
    )
    .map_err(|e| sqlite_err(path, e))
}

/// Brings the database at `path` up to [`CURRENT_VERSION`]; returns the resulting version.
///
/// Runs in one `IMMEDIATE` transaction, so two processes can't migrate at once and a failed
/// step leaves the database as it was.
pub fn migrate(conn: &mut Connection, path: &Path) -> Result<i64, StorageError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(|e| sqlite_err(path, e))?;
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_version (
             version INTEGER PRIMARY KEY,
             applied_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP
         );",
    )
    .map_err(|e| sqlite_err(path, e))?;
    let mut version = current_version(&tx, path)?;
    SQLITE_SCHEMA.check(version, path)?;
    let found = version;
    for &(step, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > found) {
        tx.execute_batch(sql).map_err(|e| sqlite_err(path, e))?;
        tx.execute("INSERT INTO schema_version (version) VALUES (?1)", [step])
            .map_err(|e| sqlite_err(path, e))?;
        tracing::info!(path = %path.display(), from = version, to = step, "migrated storage schema");
        version = step;
    }
    tx.commit().map_err(|e| sqlite_err(path, e))?;
    Ok(version)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tables(conn: &Connection) -> Vec<String> {
        let mut st = conn
            .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
            .unwrap();
        let rows = st.query_map([], |r| r.get(0)).unwrap();
        rows.map(Result::unwrap).collect()
    }

    #[test]
    fn every_container_version_names_its_record_version() {
        for f in FORMATS {
            assert_eq!(f.records.len() as i64, f.current, "{}", f.what);
            assert!(f.records.windows(2).all(|w| w[0] <= w[1]), "{}", f.what);
            assert_eq!(f.records.last(), Some(&RECORD_VERSION), "{}", f.what);
        }
    }

    #[test]
    fn payload_versions() {
        assert_eq!(payload_version(br#"{"at":1,"op":"Tick"}"#), Some(1));
        assert_eq!(payload_version(br#"{"v":1,"at":1,"op":"Tick"}"#), Some(1));
        assert_eq!(payload_version(br#"{"v":12,"at":1}"#), Some(12));
        assert_eq!(payload_version(br#"{"v":"x"}"#), None);
        let old = vec![(1, br#"{"at":1,"op":"Tick"}"#.to_vec())];
        assert!(check_payloads(&old, "log").is_ok());
        let newer = vec![(7, br#"{"v":2,"at":1,"op":"Tick"}"#.to_vec())];
        match check_payloads(&newer, "log") {
            Err(
                e @ StorageError::SchemaTooNew {
                    found: 2,
                    supported: 1,
                    ..
                },
            ) => {
                assert!(e.to_string().contains("log (record LSN 7)"), "{e}");
            }
            other => panic!("expected SchemaTooNew, got {other:?}"),
        }
    }

    #[test]
    fn migrations_are_in_order_and_end_at_current() {
        let versions: Vec<i64> = MIGRATIONS.iter().map(|m| m.0).collect();
        assert!(versions.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(versions.last(), Some(&CURRENT_VERSION));
    }

    #[test]
    fn empty_database_migrates_to_current() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        let mut conn = Connection::open(&path).unwrap();
        assert_eq!(current_version(&conn, &path).unwrap(), 0);
        assert_eq!(migrate(&mut conn, &path).unwrap(), CURRENT_VERSION);
        assert_eq!(
            tables(&conn),
            vec!["entities", "messages", "schema_version", "state"]
        );
        // Idempotent.
        assert_eq!(migrate(&mut conn, &path).unwrap(), CURRENT_VERSION);
        let rows: i64 = conn
            .query_row("SELECT COUNT(*) FROM schema_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, 1);
    }

    #[test]
    fn version_zero_database_with_legacy_table_migrates() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        let mut conn = Connection::open(&path).unwrap();
        conn.execute_batch("CREATE TABLE legacy (x INTEGER); INSERT INTO legacy VALUES (42);")
            .unwrap();
        assert_eq!(migrate(&mut conn, &path).unwrap(), 1);
        let x: i64 = conn
            .query_row("SELECT x FROM legacy", [], |r| r.get(0))
            .unwrap();
        assert_eq!(x, 42);
        assert!(tables(&conn).contains(&"entities".to_string()));
    }

    #[test]
    fn newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        let mut conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_at TIMESTAMP);
             INSERT INTO schema_version (version) VALUES (99);",
        )
        .unwrap();
        match migrate(&mut conn, &path) {
            Err(StorageError::SchemaTooNew {
                found, supported, ..
            }) => {
                assert_eq!((found, supported), (99, CURRENT_VERSION));
            }
            other => panic!("expected SchemaTooNew, got {other:?}"),
        }
        // Nothing was created.
        assert_eq!(tables(&conn), vec!["schema_version"]);
    }
}
