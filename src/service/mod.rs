//! [`ServiceBusBackend`]: the broker behind a lock, the operation log, the snapshot backend,
//! the timers, and durable acknowledgement.
//!
//! Every state change goes through [`ServiceBusBackend::execute`]: under the state lock the
//! operation is applied to the broker and (if it changed anything) appended to the journal, so
//! journal order is apply order; the lock is released and the caller waits until the journal
//! has flushed that record (group commit: one fsync serves every waiter of a batch). Only then
//! is the request answered.
//!
//! Snapshots take the changed records under the lock (cost ∝ change), write them to the backend
//! off the lock, then truncate the journal through the snapshot's LSN.
//!
//! Files: [`recovery`] (start-up and shutdown), [`request`] (execute, wake-ups), [`wait`] (the
//! one wait-for-messages loop, parked receives), [`ops`] (typed operations), [`snapshots`]
//! (snapshots, export, import, compaction, purge), [`timers`] (the tick loop). This file holds
//! the shared state and the small accessors the others use.

mod ops;
mod recovery;
mod request;
mod snapshots;
#[cfg(test)]
mod tests;
mod timers;
mod txn;
mod wait;

pub use ops::AcceptedSession;
pub use txn::DischargeError;
pub use wait::{Parked, Wait};

use crate::broker::error::BrokerError;
use crate::broker::{Broker, Totals};
use crate::config::{StorageConfig, StorageType};
use crate::storage::lock::DataLock;
use crate::storage::memory::MemoryBackend;
use crate::storage::oplog::OpLog;
use crate::storage::{Backend, BackendStats, StorageError};
use crate::sync::lock;
use crate::time::{Clock, Millis, SystemClock};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use thiserror::Error;
use tokio::sync::Notify;

/// Errors of the service layer: a refused operation, or a server-side storage fault.
#[derive(Debug, Error)]
pub enum ServiceError {
    #[error(transparent)]
    Broker(#[from] BrokerError),
    #[error("storage failure: {0}")]
    Storage(#[from] StorageError),
    #[error("the server is shutting down")]
    ShuttingDown,
}

/// How persistence came up, for `/health` and `storage stats`.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct PersistenceStatus {
    pub storage_type: String,
    /// Set when persistence failed to initialise and the server runs in memory instead.
    pub degraded: Option<String>,
    pub replayed: u64,
    pub journal_error: Option<String>,
}

struct Inner {
    broker: Mutex<Broker>,
    journal: Mutex<Option<Arc<dyn OpLog>>>,
    backend: Mutex<Box<dyn Backend>>,
    clock: Arc<dyn Clock>,
    config: StorageConfig,
    waiters: Mutex<HashMap<String, Arc<Notify>>>,
    timer_wake: Notify,
    /// The deadline the timer loop sleeps until ([`Millis::MAX`] while it is between sleeps
    /// or has none): an operation wakes it only for an earlier deadline, so a send that sets
    /// none costs no wake-up of the timer task.
    timer_due: AtomicI64,
    status: Mutex<PersistenceStatus>,
    last_snapshot: AtomicI64,
    /// Used as the snapshot LSN when no journal runs (wal disabled).
    op_counter: AtomicU64,
    closing: AtomicBool,
    /// Cancelled when shutdown begins: parked long-poll receives return empty at once, so
    /// draining in-flight requests does not wait out their timeouts.
    draining: tokio_util::sync::CancellationToken,
    /// Serialises snapshots (periodic, manual, final).
    snapshot_lock: tokio::sync::Mutex<()>,
    /// The held data-directory lock or Redis lease (released on drop / shutdown).
    data_lock: Mutex<Option<DataLock>>,
    /// Receives currently parked waiting for a message (see [`ServiceBusBackend::parked_receives`]).
    parked: AtomicUsize,
    /// Open AMQP transactions (see [`txn`]).
    txns: Mutex<txn::TxnTable>,
}

/// The Service Bus backend with optional persistence (the guide's `ServiceBusBackend`).
#[derive(Clone)]
pub struct ServiceBusBackend {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ServiceBusBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceBusBackend")
            .field("storage_type", &self.inner.config.storage_type)
            .finish()
    }
}

/// Result of a snapshot, for logs and the admin API.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct SnapshotReport {
    pub entities_written: usize,
    pub entities_deleted: usize,
    pub messages_written: usize,
    pub messages_deleted: usize,
    pub full: bool,
    pub lsn: u64,
    pub capture_ms: f64,
    pub write_ms: f64,
}

impl ServiceBusBackend {
    /// Creates a backend; `None` means in-memory (no persistence), as in the guide.
    pub fn new(storage_config: Option<StorageConfig>) -> Self {
        Self::with_clock(storage_config, Arc::new(SystemClock))
    }

    /// Creates a backend with an injected clock (tests of time-dependent behaviour).
    pub fn with_clock(storage_config: Option<StorageConfig>, clock: Arc<dyn Clock>) -> Self {
        let config = storage_config.unwrap_or_default();
        let now = clock.now();
        let mut broker = Broker::new(now);
        broker.set_change_tracking(config.storage_type != StorageType::InMemory);
        ServiceBusBackend {
            inner: Arc::new(Inner {
                broker: Mutex::new(broker),
                journal: Mutex::new(None),
                backend: Mutex::new(Box::new(MemoryBackend)),
                clock,
                status: Mutex::new(PersistenceStatus {
                    storage_type: config.storage_type.as_str().to_string(),
                    ..Default::default()
                }),
                config,
                waiters: Mutex::new(HashMap::new()),
                timer_wake: Notify::new(),
                timer_due: AtomicI64::new(Millis::MAX),
                last_snapshot: AtomicI64::new(0),
                op_counter: AtomicU64::new(0),
                closing: AtomicBool::new(false),
                draining: tokio_util::sync::CancellationToken::new(),
                snapshot_lock: tokio::sync::Mutex::new(()),
                data_lock: Mutex::new(None),
                parked: AtomicUsize::new(0),
                txns: Mutex::default(),
            }),
        }
    }

    pub fn config(&self) -> &StorageConfig {
        &self.inner.config
    }

    pub fn now(&self) -> Millis {
        self.inner.clock.now()
    }

    /// The broker state. A poisoned lock means a panic while applying; the state itself is
    /// still the last consistent one (apply validates before mutating), so keep serving.
    pub(super) fn lock_broker(&self) -> std::sync::MutexGuard<'_, Broker> {
        lock(&self.inner.broker)
    }

    /// Runs a read-only query against the current state.
    pub fn read<R>(&self, f: impl FnOnce(&Broker) -> R) -> R {
        f(&self.lock_broker())
    }

    pub(super) fn set_status(&self, f: impl FnOnce(&mut PersistenceStatus)) {
        f(&mut lock(&self.inner.status));
    }

    pub fn status(&self) -> PersistenceStatus {
        lock(&self.inner.status).clone()
    }

    pub(super) fn journal(&self) -> Option<Arc<dyn OpLog>> {
        lock(&self.inner.journal).clone()
    }

    pub(super) fn location(&self) -> String {
        match self.inner.config.storage_type {
            StorageType::Sqlite => self.inner.config.sqlite.path.display().to_string(),
            StorageType::Json => self.inner.config.json.path.display().to_string(),
            StorageType::Redis => format!(
                "{}:{}",
                self.inner.config.redis.host, self.inner.config.redis.port
            ),
            StorageType::InMemory => "memory".to_string(),
        }
    }

    /// Storage statistics for `storage stats` and the admin API.
    pub fn stats(&self) -> StorageStats {
        let backend = lock(&self.inner.backend).stats();
        let journal_size = self.journal().map(|j| j.size_bytes()).unwrap_or(0);
        let last = self.inner.last_snapshot.load(Ordering::SeqCst);
        StorageStats {
            backend,
            totals: self.read(|b| b.totals()),
            wal_size_bytes: journal_size,
            last_snapshot: if last > 0 { Some(last) } else { None },
            status: self.status(),
            entities: self
                .entities()
                .iter()
                .map(|e| EntityCounts {
                    path: crate::metrics::entity_name(e),
                    kind: crate::metrics::kind_label(e.kind).to_string(),
                    active: e.counts.active,
                    scheduled: e.counts.scheduled,
                    deferred: e.counts.deferred,
                    dead_letter: e.counts.dead_letter,
                    transfer_dead_letter: e.counts.transfer_dead_letter,
                    size_bytes: e.size_in_bytes,
                })
                .collect(),
        }
    }

    /// Every queue, topic and subscription with its counts, subscriptions after their topic
    /// (for `/metrics` and `storage stats --entities`).
    pub fn entities(&self) -> Vec<crate::broker::entity::EntityInfo> {
        self.read(|b| {
            let mut all = b.list_queues();
            for t in b.list_topics() {
                let subs = b.list_subscriptions(&t.name).unwrap_or_default();
                all.push(t);
                all.extend(subs);
            }
            all
        })
    }

    /// Test hook: makes journal writes fail as if the disk were full (or lets them succeed).
    #[doc(hidden)]
    pub fn inject_journal_failure(&self, fail: bool) {
        if let Some(j) = self.journal() {
            j.inject_write_failure(fail);
        }
    }

    /// Is the journal currently failing to write?
    pub fn journal_healthy(&self) -> Result<(), String> {
        match self.journal() {
            Some(j) => j.health(),
            None => Ok(()),
        }
    }
}

/// Storage statistics.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct StorageStats {
    pub backend: BackendStats,
    pub totals: Totals,
    pub wal_size_bytes: u64,
    pub last_snapshot: Option<Millis>,
    pub status: PersistenceStatus,
    /// Each entity's counts (`storage stats --entities`); absent from older servers' answers.
    #[serde(default)]
    pub entities: Vec<EntityCounts>,
}

/// One entity's message counts, as `storage stats --entities` lists them.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct EntityCounts {
    /// `queue`, `topic` or `topic/Subscriptions/sub`.
    pub path: String,
    /// `queue`, `topic` or `subscription`.
    pub kind: String,
    pub active: u64,
    pub scheduled: u64,
    pub deferred: u64,
    pub dead_letter: u64,
    pub transfer_dead_letter: u64,
    pub size_bytes: u64,
}
