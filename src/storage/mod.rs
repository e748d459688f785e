//! Storage: the operation log (journal) and the snapshot backends.
//!
//! # Invariants of the storage format
//! - The state on disk is `snapshot ⊕ journal`: the last snapshot a backend holds, plus every
//!   journal record whose LSN is greater than the snapshot's `lsn`. Records with LSN ≤ the
//!   snapshot's are skipped on replay, so a crash between "snapshot committed" and "journal
//!   truncated" never applies an operation twice.
//! - Journal records are framed `[len u32 LE][crc32 u32 LE][lsn u64 LE][payload]`, the CRC over
//!   `lsn ‖ payload`, after a file header carrying a magic and a format version (2; version 1
//!   files are read too). The file is preallocated with zeros ahead of the records: a zero frame
//!   header followed only by zeros is the clean end of the log. A bad record at the tail is a
//!   torn write and is dropped with a warning; a bad record (a zero frame header included)
//!   followed by good ones is corruption and refuses start-up.
//! - A snapshot delta is applied atomically by the backend (one SQLite transaction; for JSON,
//!   each changed file is written to a temp file and fsynced, then an intent record
//!   `pending-commit.json` listing the renames is committed, then the files are renamed with
//!   `state.json`, which carries the snapshot LSN, last; opening the store finishes a commit
//!   whose intent record exists, and temp files without one are ignored).
//! - Entity names are case-insensitive: backends key entities by
//!   [`keys::entity_key_string`] (lowercased, percent-encoded), never by the raw name, so a name
//!   can neither collide with another nor escape the data directory as a file name.
//! - Entity records and message records are opaque JSON documents to the backends (they are
//!   the broker's serde form); backends only know their keys.
//! - Deleting an entity deletes its messages (and a topic's subscriptions) in the backend.
//! - The operation log is behind [`oplog::OpLog`]: the journal file above for SQLite and JSON,
//!   a Redis stream for Redis. Both assign LSNs in append order, acknowledge only after the
//!   batch holding a record was written (fsync / Redis reply), retry failed batches, and replay
//!   only LSNs above the snapshot's.
//! - Redis ([`redis`]): every key starts with the configured prefix; snapshot keys are
//!   `{prefix}snap:*` (one hash field per entity, one hash per entity's messages, only changed
//!   fields rewritten), the log is the stream `{prefix}wal` with entry ids `{lsn}-0`, and
//!   `{prefix}lease` names the one instance allowed to write. Deltas are one `MULTI`/`EXEC`
//!   under `WATCH {prefix}lease`; log batches are one Lua script that checks the lease first.
//!   A `full` delta deletes `{prefix}snap:*` by `SCAN`, never `FLUSHDB`. Durability across a
//!   crash of Redis itself is Redis's `appendonly yes` + `appendfsync always`.

pub mod durable;
pub mod export;
pub mod idle;
pub mod journal;
pub mod json;
pub mod keys;
pub mod lock;
pub mod memory;
pub mod open;
pub mod oplog;
pub mod redis;
pub mod schema;
pub mod settings;
pub mod sqlite;
#[cfg(test)]
mod testkit;

use crate::time::Millis;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::path::PathBuf;
use thiserror::Error;

/// Errors of the storage layer.
#[derive(Debug, Error)]
pub enum StorageError {
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("SQLite error on {path}: {source}")]
    Sqlite {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("corrupt data in {path}: {detail}")]
    Corrupt { path: PathBuf, detail: String },
    #[error("{path} has schema version {found}, newer than this binary supports ({supported})")]
    SchemaTooNew {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
    #[error("the data at {path} is in use by another LocalZure process ({holder}); stop it, or use `localzure storage …`, which talks to the running server")]
    InUse { path: PathBuf, holder: String },
    #[error("the operation log could not be written: {0}")]
    JournalFailed(String),
    #[error("{0}")]
    Other(String),
}

/// Which kind of entity a record belongs to (re-exported as `broker::entity::EntityKind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum EntityKind {
    Queue,
    Topic,
    Subscription,
}

/// Identifies an entity in storage: queue `name`, topic `name`, or subscription `topic`/`name`.
/// Names are the case-preserved names; backends compare them case-insensitively.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct EntityKey {
    pub kind: EntityKind,
    /// The topic, for a subscription.
    pub topic: Option<String>,
    pub name: String,
}

/// Identifies a stored message: the entity holding it, main or dead-letter queue, sequence number.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct MessageKey {
    pub entity: EntityKey,
    pub dead_letter: bool,
    pub sequence_number: u64,
}

/// One entity's description (opaque JSON), keyed.
#[derive(Debug, Clone)]
pub struct EntityRecord {
    pub key: EntityKey,
    pub data: Box<RawValue>,
}

/// One message (opaque JSON), keyed.
#[derive(Debug, Clone)]
pub struct MessageRecord {
    pub key: MessageKey,
    pub data: Box<RawValue>,
}

/// A whole stored state, as loaded at start-up.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub entities: Vec<EntityRecord>,
    pub messages: Vec<MessageRecord>,
    /// Broker-wide state (counters, duplicate-detection history, session state): opaque JSON.
    pub state: Option<Box<RawValue>>,
    /// The LSN of the last journal record this snapshot includes.
    pub lsn: u64,
    pub taken_at: Millis,
}

/// What changed since the previous snapshot. Applied atomically.
#[derive(Debug, Clone, Default)]
pub struct Delta {
    /// Replace everything stored (the first snapshot, an import, or after a failed delta).
    pub full: bool,
    pub entity_upserts: Vec<EntityRecord>,
    /// Deleting an entity deletes its messages too (and a topic's subscriptions).
    /// Backends apply deletes before upserts (entities, then messages), so a key present in
    /// both lists ends up with the upserted record.
    pub entity_deletes: Vec<EntityKey>,
    pub message_upserts: Vec<MessageRecord>,
    pub message_deletes: Vec<MessageKey>,
    /// The new broker-wide state; `None` leaves the stored state unchanged (after a `full`
    /// wipe: no state).
    pub state: Option<Box<RawValue>>,
    pub lsn: u64,
    pub taken_at: Millis,
}

/// Facts for `localzure storage stats`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct BackendStats {
    /// "In-Memory", "SQLite", "JSON", "Redis".
    pub backend: String,
    /// Database file or directory.
    pub location: Option<String>,
    pub size_bytes: u64,
    pub last_snapshot: Option<Millis>,
}

/// A place snapshots live. Implementations do blocking I/O; callers run them off the async
/// runtime (a dedicated thread or `spawn_blocking`).
pub trait Backend: Send {
    /// Loads the last snapshot; `None` when the store is empty/new.
    fn load(&mut self) -> Result<Option<Snapshot>, StorageError>;
    /// Applies a delta atomically.
    fn apply(&mut self, delta: &Delta) -> Result<(), StorageError>;
    /// Reclaims space: SQLite VACUUM, JSON orphan cleanup (Redis: nothing to do).
    fn compact(&mut self) -> Result<(), StorageError>;
    /// Deletes everything stored.
    fn purge(&mut self) -> Result<(), StorageError>;
    fn stats(&self) -> BackendStats;
    /// Where this backend's operation log lives (`None`: no journal, e.g. in-memory).
    fn journal_path(&self) -> Option<PathBuf>;
}
