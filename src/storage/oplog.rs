//! The operation log behind one small trait, so the service can run on the file journal
//! ([`Journal`], next to SQLite/JSON stores) or on a Redis stream ([`super::redis::RedisOpLog`])
//! without knowing which.
//!
//! Both implementations keep the same contract:
//! - [`OpLog::append`] assigns the next LSN and buffers the record without blocking on I/O;
//!   LSNs strictly increase in append order.
//! - A single flusher writes every buffered record in one round trip (fsync for the file, one
//!   scripted call for Redis) and publishes the durable LSN; [`OpLog::wait_durable`] waits for it
//!   and fails while the log cannot be written, so nothing is acknowledged unrecorded.
//! - A failed batch stays buffered and is retried until it lands.
//! - Records of a newer record version than this binary reads refuse the open
//!   ([`super::schema::check_payloads`]), before anything is replayed.
//! - [`OpLog::truncate_through`] drops records already in a committed snapshot; replay skips
//!   LSNs ≤ the snapshot's anyway, so a late or failed truncation never applies anything twice.

use super::journal::{Journal, Replay};
use super::settings::{RedisConfig, SyncPolicy};
use super::StorageError;
use futures::future::BoxFuture;
use std::path::Path;
use std::sync::Arc;

/// An operation log: the journal file or a Redis stream. Every method takes `&self`; share it
/// behind an `Arc`.
pub trait OpLog: Send + Sync + std::fmt::Debug {
    /// Assigns the next LSN to `payload` and buffers it for the flusher. Never blocks on I/O.
    fn append(&self, payload: Vec<u8>) -> u64;
    /// Waits until every record up to `lsn` is durable; fails while the log cannot be written.
    fn wait_durable(&self, lsn: u64) -> BoxFuture<'_, Result<(), StorageError>>;
    /// The LSN of the most recent append (0 if none ever).
    fn last_lsn(&self) -> u64;
    /// Drops every record with LSN ≤ `lsn` (they are in a committed snapshot). May block: call
    /// it off the async runtime.
    fn truncate_through(&self, lsn: u64) -> Result<(), StorageError>;
    /// Approximate bytes held by the log, for `storage stats`.
    fn size_bytes(&self) -> u64;
    /// Test hook: while `fail` is set, every write fails.
    fn inject_write_failure(&self, fail: bool);
    /// Flushes what is buffered and stops the flusher. Idempotent.
    fn close(&self);
    /// `Ok` while the log can write; the last write error otherwise.
    fn health(&self) -> Result<(), String>;
}

impl OpLog for Journal {
    fn append(&self, payload: Vec<u8>) -> u64 {
        Journal::append(self, payload)
    }
    fn wait_durable(&self, lsn: u64) -> BoxFuture<'_, Result<(), StorageError>> {
        Box::pin(Journal::wait_durable(self, lsn))
    }
    fn last_lsn(&self) -> u64 {
        Journal::last_lsn(self)
    }
    fn truncate_through(&self, lsn: u64) -> Result<(), StorageError> {
        Journal::truncate_through(self, lsn)
    }
    fn size_bytes(&self) -> u64 {
        Journal::size_bytes(self)
    }
    fn inject_write_failure(&self, fail: bool) {
        Journal::inject_write_failure(self, fail)
    }
    fn close(&self) {
        Journal::close(self)
    }
    fn health(&self) -> Result<(), String> {
        Journal::health(self)
    }
}

/// An opened operation log, the records it already held, and where it lives (for messages).
pub struct Opened {
    pub log: Arc<dyn OpLog>,
    pub replay: Replay,
    pub location: String,
}

/// Opens the operation log: for Redis (`redis` set), the stream under its prefix; else the
/// journal file at `journal_path` (the backend's choice). `None` when the
/// store keeps no log (in-memory). New LSNs are at least `next_lsn_floor`. `sync` applies to
/// the journal file; a Redis log's durability is Redis's own `appendfsync`.
pub async fn open(
    redis: Option<&RedisConfig>,
    journal_path: Option<&Path>,
    next_lsn_floor: u64,
    sync: SyncPolicy,
) -> Result<Option<Opened>, StorageError> {
    if let Some(redis) = redis {
        let (log, replay) = super::redis::RedisOpLog::open(redis, next_lsn_floor).await?;
        let location = log.location();
        super::schema::check_payloads(&replay.records, &location)?;
        return Ok(Some(Opened {
            log: Arc::new(log),
            replay,
            location,
        }));
    }
    let Some(path) = journal_path else {
        return Ok(None);
    };
    let (journal, replay) = Journal::open_with(path, next_lsn_floor, sync)?;
    super::schema::check_payloads(&replay.records, &path.display().to_string())?;
    Ok(Some(Opened {
        log: Arc::new(journal),
        replay,
        location: path.display().to_string(),
    }))
}
