//! SQLite schema versioning: the `schema_version` table and ordered migrations.
//!
//! Each migration is `(version, sql)`; [`migrate`] applies, in one transaction, every step whose
//! version is above the database's current one and records it in `schema_version`. A database
//! written by a newer binary (a version above [`CURRENT_VERSION`]) is refused rather than
//! guessed at. A database with no `schema_version` table is version 0 (new, or created before
//! versioning); its unrelated tables are left alone.

use super::StorageError;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior};
use std::path::Path;

/// The schema version this binary writes.
pub const CURRENT_VERSION: i64 = 1;

/// Migrations, in order. Never edit a released step; append a new one.
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
    if version > CURRENT_VERSION {
        return Err(StorageError::SchemaTooNew {
            path: path.to_path_buf(),
            found: version,
            supported: CURRENT_VERSION,
        });
    }
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
