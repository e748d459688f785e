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

use crate::broker::error::BrokerError;
use crate::broker::message::Message;
use crate::broker::op::{Op, OpRecord, QueuePath, ReceiveMode, SessionRef};
use crate::broker::{Broker, Outcome, Totals};
use crate::config::{StorageConfig, StorageType};
use crate::storage::export::ExportDocument;
use crate::storage::json::JsonBackend;
use crate::storage::memory::MemoryBackend;
use crate::storage::oplog::{self, OpLog};
use crate::storage::redis::{RedisBackend, RedisLease};
use crate::storage::sqlite::SqliteBackend;
use crate::storage::{Backend, BackendStats, Snapshot, StorageError};
use crate::time::{Clock, Millis, SystemClock};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
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
        ServiceBusBackend {
            inner: Arc::new(Inner {
                broker: Mutex::new(Broker::new(now)),
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
                last_snapshot: AtomicI64::new(0),
                op_counter: AtomicU64::new(0),
                closing: AtomicBool::new(false),
                draining: tokio_util::sync::CancellationToken::new(),
                snapshot_lock: tokio::sync::Mutex::new(()),
                data_lock: Mutex::new(None),
            }),
        }
    }

    pub fn config(&self) -> &StorageConfig {
        &self.inner.config
    }

    pub fn now(&self) -> Millis {
        self.inner.clock.now()
    }

    fn lock_broker(&self) -> std::sync::MutexGuard<'_, Broker> {
        // A poisoned lock means a panic while applying; the state itself is still the last
        // consistent one (apply validates before mutating), so keep serving.
        self.inner.broker.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs a read-only query against the current state.
    pub fn read<R>(&self, f: impl FnOnce(&Broker) -> R) -> R {
        f(&self.lock_broker())
    }

    /// The guide's start-up fallback: logs its ERROR line, keeps running in memory, and marks
    /// the status degraded so `/health` and `storage stats` show it.
    fn fall_back(&self, e: &StorageError) -> PersistenceStatus {
        tracing::error!(
            "Failed to initialize persistence (error={e}). Falling back to in-memory mode"
        );
        *self.inner.backend.lock().unwrap_or_else(|e| e.into_inner()) = Box::new(MemoryBackend);
        self.set_status(|s| s.degraded = Some(e.to_string()));
        self.status()
    }

    /// Opens the configured storage, loads the last snapshot, replays the journal, snapshots
    /// and truncates the journal. If the backend cannot be opened, logs the guide's error and
    /// keeps running in memory (degraded, visible in `/health` and `storage stats`). A journal
    /// corrupted before its tail is a hard error naming the file.
    pub async fn initialize_persistence(&self) -> Result<PersistenceStatus, StorageError> {
        let cfg = self.inner.config.clone();
        if cfg.storage_type == StorageType::InMemory {
            return Ok(self.status());
        }
        match lock_data(&cfg) {
            Ok(lock) => {
                *self
                    .inner
                    .data_lock
                    .lock()
                    .unwrap_or_else(|e| e.into_inner()) = lock
            }
            Err(e @ StorageError::InUse { .. }) => return Err(e),
            Err(e) => return Ok(self.fall_back(&e)),
        }
        let opened = tokio::task::spawn_blocking(move || open_backend(&cfg))
            .await
            .map_err(|e| StorageError::Other(e.to_string()))?;
        let backend = match opened {
            Ok(b) => b,
            Err(e @ StorageError::Unavailable(_)) => return Err(e),
            Err(e) => return Ok(self.fall_back(&e)),
        };
        let started = Instant::now();
        let (backend, snap, read_ms) = tokio::task::spawn_blocking(move || {
            let mut backend = backend;
            let snap = backend.load();
            (backend, snap, started.elapsed().as_secs_f64() * 1000.0)
        })
        .await
        .map_err(|e| StorageError::Other(e.to_string()))?;
        *self.inner.backend.lock().unwrap_or_else(|e| e.into_inner()) = backend;
        let snap = match snap {
            Ok(s) => s,
            Err(e) => return Ok(self.fall_back(&e)),
        };
        let now = self.now();
        if let Some(s) = &snap {
            self.inner.last_snapshot.store(s.taken_at, Ordering::SeqCst);
        }
        let snap_lsn = snap.as_ref().map(|s| s.lsn).unwrap_or(0);
        let location = self.location();
        let broker = tokio::task::spawn_blocking(move || {
            let restored = match &snap {
                Some(s) => Broker::restore(s, now).map_err(|detail| StorageError::Corrupt {
                    path: location.into(),
                    detail,
                }),
                None => Ok(Broker::new(now)),
            };
            drop_in_background(snap);
            restored
        })
        .await
        .map_err(|e| StorageError::Other(e.to_string()))??;
        let load_ms = started.elapsed().as_secs_f64() * 1000.0;
        *self.lock_broker() = broker;
        let mut replayed = 0u64;
        if cfg_wal(&self.inner.config) {
            let path = self
                .inner
                .backend
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .journal_path();
            if let Some(oplog::Opened {
                log: journal,
                replay,
                location: path,
            }) = oplog::open(&self.inner.config, path.as_deref(), snap_lsn + 1).await?
            {
                if let Some(off) = replay.torn_tail {
                    tracing::warn!("dropped a torn record at the tail of {path} (offset {off})");
                }
                // The log is truncated only after a snapshot covering it committed, so it
                // starts right after the snapshot's LSN. Starting later means that snapshot is
                // gone (a database file truncated, emptied or replaced): replaying onto what is
                // left would serve a partial store as if it were whole.
                if let Some(&(first, _)) = replay.records.first() {
                    if first > snap_lsn + 1 {
                        journal.close();
                        let e = StorageError::Corrupt {
                            path: self.location().into(),
                            detail: format!(
                                "the stored snapshot reaches LSN {snap_lsn} but the operation \
                                 log {path} starts at LSN {first}: the snapshot holding \
                                 the operations in between is missing"
                            ),
                        };
                        *self.lock_broker() = Broker::new(now);
                        return Ok(self.fall_back(&e));
                    }
                }
                let mut b = self.lock_broker();
                for (lsn, payload) in &replay.records {
                    if *lsn <= snap_lsn {
                        continue;
                    }
                    let rec: OpRecord =
                        serde_json::from_slice(payload).map_err(|e| StorageError::Corrupt {
                            path: path.clone().into(),
                            detail: format!("record {lsn} does not decode: {e}"),
                        })?;
                    // Refused operations are journaled when they changed state (due timers ran
                    // first); replaying them refuses them again with the same effect.
                    let _ = b.apply(&rec);
                    replayed += 1;
                }
                drop(b);
                *self.inner.journal.lock().unwrap_or_else(|e| e.into_inner()) = Some(journal);
            }
        }
        tracing::info!(
            "Persistence initialized (storage_type={}, wal_enabled={}, read_ms={read_ms:.1}, load_ms={load_ms:.1})",
            self.inner.config.storage_type.as_str(),
            self.inner.config.wal_enabled
        );
        tracing::info!("Replayed {replayed} operations from WAL");
        self.set_status(|s| s.replayed = replayed);
        self.snapshot().await?;
        Ok(self.status())
    }

    /// Graceful shutdown: final snapshot, compaction when `auto_compact`, close the journal.
    pub async fn shutdown_persistence(&self) -> Result<(), StorageError> {
        self.inner.closing.store(true, Ordering::SeqCst);
        self.inner.timer_wake.notify_one();
        if self.status().degraded.is_some()
            || self.inner.config.storage_type == StorageType::InMemory
        {
            return Ok(());
        }
        let t = Instant::now();
        let report = self.snapshot().await?;
        tracing::info!(
            "final snapshot written ({} messages, {} entities) in {:.1} ms",
            report.messages_written,
            report.entities_written,
            t.elapsed().as_secs_f64() * 1000.0
        );
        if self.inner.config.auto_compact {
            let t = Instant::now();
            self.compact().await?;
            tracing::info!(
                "storage compacted in {:.1} ms",
                t.elapsed().as_secs_f64() * 1000.0
            );
        }
        let journal = self
            .inner
            .journal
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(j) = journal {
            j.close();
        }
        self.inner
            .data_lock
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        Ok(())
    }

    fn set_status(&self, f: impl FnOnce(&mut PersistenceStatus)) {
        f(&mut self.inner.status.lock().unwrap_or_else(|e| e.into_inner()));
    }

    pub fn status(&self) -> PersistenceStatus {
        self.inner
            .status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn journal(&self) -> Option<Arc<dyn OpLog>> {
        self.inner
            .journal
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Applies an operation now and answers once it is durable.
    pub async fn execute(&self, op: Op) -> Result<Outcome, ServiceError> {
        if self.inner.closing.load(Ordering::SeqCst) {
            return Err(ServiceError::ShuttingDown);
        }
        // The log is set once, by `initialize_persistence`, before requests are served. The
        // operation is encoded before the broker lock is taken, so other requests never wait
        // on it (sized for a typical small message, so encoding rarely regrows the buffer).
        let journal = self.journal();
        let op_json = match &journal {
            Some(_) => {
                let mut out = Vec::with_capacity(1024);
                serde_json::to_writer(&mut out, &op)
                    .map_err(|e| StorageError::Other(e.to_string()))?;
                Some(out)
            }
            None => None,
        };
        let (outcome, lsn, changed) = {
            let mut b = self.lock_broker();
            let rec = OpRecord {
                at: self.inner.clock.now(),
                op,
            };
            let applied = b.apply(&rec);
            let mut lsn = None;
            if applied.changed {
                self.inner.op_counter.fetch_add(1, Ordering::SeqCst);
                if let (Some(j), Some(op_json)) = (&journal, &op_json) {
                    lsn = Some(j.append(OpRecord::payload(rec.at, op_json)));
                }
            }
            let wake = b.take_wakeups();
            drop(b);
            self.wake(wake);
            (applied.result, lsn, applied.changed)
        };
        // Only a change can move the earliest deadline, so only a change wakes the timer.
        if changed {
            self.inner.timer_wake.notify_one();
        }
        if let (Some(lsn), Some(j)) = (lsn, journal) {
            if let Err(e) = j.wait_durable(lsn).await {
                self.set_status(|s| s.journal_error = Some(e.to_string()));
                return Err(e.into());
            }
        }
        Ok(outcome?)
    }

    fn wake(&self, keys: std::collections::BTreeSet<String>) {
        if keys.is_empty() {
            return;
        }
        let waiters = self.inner.waiters.lock().unwrap_or_else(|e| e.into_inner());
        for k in keys {
            if let Some(n) = waiters.get(&k) {
                n.notify_waiters();
            }
        }
    }

    fn waiter(&self, path: &QueuePath) -> Arc<Notify> {
        let key = crate::broker::messaging::wake_key_of(path);
        let mut w = self.inner.waiters.lock().unwrap_or_else(|e| e.into_inner());
        w.entry(key)
            .or_insert_with(|| Arc::new(Notify::new()))
            .clone()
    }

    /// Starts shutdown for waiting receivers: parked long-polls answer "no message" now.
    pub fn begin_drain(&self) {
        self.inner.draining.cancel();
    }

    /// The notification fired when `path` gains available messages. Wire layers that must stay
    /// cancellable while waiting (an AMQP receiver link that can be drained at any moment) wait
    /// on this and then take messages with a zero-timeout [`Self::receive_wait`], so a cancel
    /// never lands between "messages locked" and "messages handed over".
    pub fn notifier(&self, path: &QueuePath) -> Arc<Notify> {
        self.waiter(path)
    }

    /// Receives up to `max` messages, waiting up to `timeout` for one to arrive (woken by
    /// arrival, not by polling).
    pub async fn receive_wait(
        &self,
        from: QueuePath,
        mode: ReceiveMode,
        max: u32,
        session: Option<SessionRef>,
        timeout: Duration,
    ) -> Result<Vec<Message>, ServiceError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let notify = self.waiter(&from);
        loop {
            let notified = notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let tokens = (0..max).map(|_| uuid::Uuid::new_v4()).collect();
            let out = self
                .execute(Op::Receive {
                    from: from.clone(),
                    mode,
                    max,
                    lock_tokens: tokens,
                    session: session.clone(),
                })
                .await?;
            if let Outcome::Received(msgs) = out {
                if !msgs.is_empty() {
                    return Ok(msgs);
                }
            }
            if tokio::time::Instant::now() >= deadline || self.inner.draining.is_cancelled() {
                return Ok(Vec::new());
            }
            tokio::select! {
                _ = &mut notified => {}
                _ = tokio::time::sleep_until(deadline) => {}
                _ = self.inner.draining.cancelled() => {}
            }
        }
    }

    /// Runs the timer loop until shutdown: applies a `Tick` whenever something falls due.
    pub async fn run_timers(&self, shutdown: tokio_util::sync::CancellationToken) {
        loop {
            if shutdown.is_cancelled() || self.inner.closing.load(Ordering::SeqCst) {
                return;
            }
            let next = self.read(|b| b.next_due());
            let now = self.now();
            match next {
                Some(t) if t <= now => {
                    if let Err(e) = self.execute(Op::Tick).await {
                        tracing::warn!("timer tick failed: {e}");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    continue;
                }
                _ => {}
            }
            // Wall-clock waits are capped so an injected clock that jumps is noticed promptly.
            let wait = next
                .map(|t| Duration::from_millis((t - now).clamp(1, 1000) as u64))
                .unwrap_or(Duration::from_secs(1));
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = self.inner.timer_wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Runs periodic snapshots until shutdown (interval 0 = disabled).
    pub async fn run_snapshots(&self, shutdown: tokio_util::sync::CancellationToken) {
        let secs = self.inner.config.snapshot_interval_seconds;
        if secs == 0 || self.inner.config.storage_type == StorageType::InMemory {
            return;
        }
        let mut iv = tokio::time::interval(Duration::from_secs(secs));
        iv.tick().await;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = iv.tick() => {
                    match self.snapshot().await {
                        Ok(r) if r.messages_written + r.messages_deleted + r.entities_written > 0 => {
                            tracing::info!(
                                "snapshot: {} messages written, {} deleted, {} entities, capture {:.1} ms, write {:.1} ms",
                                r.messages_written, r.messages_deleted, r.entities_written, r.capture_ms, r.write_ms
                            );
                        }
                        Ok(_) => {}
                        Err(e) => tracing::error!("snapshot failed: {e}"),
                    }
                }
            }
        }
    }

    /// Writes what changed since the last snapshot, then truncates the journal.
    pub async fn snapshot(&self) -> Result<SnapshotReport, StorageError> {
        self.snapshot_inner(false).await
    }

    async fn snapshot_inner(&self, full: bool) -> Result<SnapshotReport, StorageError> {
        if self.inner.config.storage_type == StorageType::InMemory
            || self.status().degraded.is_some()
        {
            return Ok(SnapshotReport::default());
        }
        let _guard = self.inner.snapshot_lock.lock().await;
        let t0 = Instant::now();
        let journal = self.journal();
        let now = self.now();
        let delta = {
            let mut b = self.lock_broker();
            if !full && !b.has_changes() {
                return Ok(SnapshotReport::default());
            }
            let lsn = match &journal {
                Some(j) => j.last_lsn(),
                None => self.inner.op_counter.load(Ordering::SeqCst),
            };
            b.take_delta(full, lsn, now).map_err(StorageError::Other)?
        };
        let capture_ms = t0.elapsed().as_secs_f64() * 1000.0;
        let mut report = SnapshotReport {
            entities_written: delta.entity_upserts.len(),
            entities_deleted: delta.entity_deletes.len(),
            messages_written: delta.message_upserts.len(),
            messages_deleted: delta.message_deletes.len(),
            full: delta.full,
            lsn: delta.lsn,
            capture_ms,
            write_ms: 0.0,
        };
        let inner = self.inner.clone();
        let t1 = Instant::now();
        let lsn = delta.lsn;
        let res = tokio::task::spawn_blocking(move || {
            let mut be = inner.backend.lock().unwrap_or_else(|e| e.into_inner());
            be.apply(&delta)
        })
        .await
        .map_err(|e| StorageError::Other(e.to_string()))?;
        if let Err(e) = res {
            self.lock_broker().require_full_snapshot();
            return Err(e);
        }
        report.write_ms = t1.elapsed().as_secs_f64() * 1000.0;
        self.inner.last_snapshot.store(now, Ordering::SeqCst);
        if let Some(j) = journal {
            let j2 = j.clone();
            tokio::task::spawn_blocking(move || j2.truncate_through(lsn))
                .await
                .map_err(|e| StorageError::Other(e.to_string()))??;
        }
        Ok(report)
    }

    /// The whole state as a portable export document.
    pub fn export(&self) -> Result<ExportDocument, StorageError> {
        let now = self.now();
        let snap = self
            .read(|b| b.full_snapshot(0, now))
            .map_err(StorageError::Other)?;
        Ok(ExportDocument::from_snapshot(snap, now))
    }

    /// Replaces the whole state with an export document, atomically: the document is
    /// validated completely first, and the live state is swapped only after the new state is
    /// stored, so a failed import leaves the old state intact.
    pub async fn import(&self, doc: ExportDocument) -> Result<Totals, ServiceError> {
        let now = self.now();
        let snap = doc.into_snapshot();
        let mut fresh = Broker::restore(&snap, now).map_err(BrokerError::BadRequest)?;
        let totals = fresh.totals();
        let _guard = self.inner.snapshot_lock.lock().await;
        let inner = self.inner.clone();
        let persistent = self.inner.config.storage_type != StorageType::InMemory
            && self.status().degraded.is_none();
        let journal = self.journal();
        tokio::task::spawn_blocking(move || -> Result<(), StorageError> {
            let mut live = inner.broker.lock().unwrap_or_else(|e| e.into_inner());
            if persistent {
                let lsn = match &journal {
                    Some(j) => j.last_lsn(),
                    None => inner.op_counter.load(Ordering::SeqCst),
                };
                fresh.mark_full();
                let delta = fresh
                    .take_delta(true, lsn, now)
                    .map_err(StorageError::Other)?;
                inner
                    .backend
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .apply(&delta)?;
                if let Some(j) = &journal {
                    j.truncate_through(lsn)?;
                }
                inner.last_snapshot.store(now, Ordering::SeqCst);
            }
            *live = fresh;
            Ok(())
        })
        .await
        .map_err(|e| StorageError::Other(e.to_string()))??;
        // Every waiter re-checks its entity.
        let waiters = self.inner.waiters.lock().unwrap_or_else(|e| e.into_inner());
        for n in waiters.values() {
            n.notify_waiters();
        }
        drop(waiters);
        self.inner.timer_wake.notify_one();
        Ok(totals)
    }

    /// Reclaims storage space (SQLite VACUUM, JSON orphan cleanup).
    pub async fn compact(&self) -> Result<(), StorageError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            inner
                .backend
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .compact()
        })
        .await
        .map_err(|e| StorageError::Other(e.to_string()))?
    }

    /// Deletes every entity and message, durably.
    pub async fn purge(&self) -> Result<(), ServiceError> {
        self.execute(Op::PurgeAll).await?;
        self.snapshot_inner(true).await?;
        Ok(())
    }

    fn location(&self) -> String {
        match self.inner.config.storage_type {
            StorageType::Sqlite => self.inner.config.sqlite_path.display().to_string(),
            StorageType::Json => self.inner.config.json_path.display().to_string(),
            StorageType::Redis => format!(
                "{}:{}",
                self.inner.config.redis_host, self.inner.config.redis_port
            ),
            StorageType::InMemory => "memory".to_string(),
        }
    }

    /// Storage statistics for `storage stats` and the admin API.
    pub fn stats(&self) -> StorageStats {
        let backend = self
            .inner
            .backend
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .stats();
        let journal_size = self.journal().map(|j| j.size_bytes()).unwrap_or(0);
        let last = self.inner.last_snapshot.load(Ordering::SeqCst);
        StorageStats {
            backend,
            totals: self.read(|b| b.totals()),
            wal_size_bytes: journal_size,
            last_snapshot: if last > 0 { Some(last) } else { None },
            status: self.status(),
        }
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
}

/// Frees a loaded snapshot on a short-lived thread of its own: releasing a million message
/// records takes a sizeable part of a second, and nothing waits for it. Small snapshots (and a
/// failed spawn) are dropped here.
fn drop_in_background(snap: Option<Snapshot>) {
    let Some(snap) = snap.filter(|s| s.messages.len() >= 10_000) else {
        return;
    };
    let _ = std::thread::Builder::new()
        .name("snapshot-free".to_string())
        .spawn(move || drop(snap));
}

fn cfg_wal(c: &StorageConfig) -> bool {
    c.wal_enabled
}

/// The lock file guarding a configured store against a second writer.
pub fn lock_path(cfg: &StorageConfig) -> Option<std::path::PathBuf> {
    match cfg.storage_type {
        StorageType::Sqlite => {
            let mut p = cfg.sqlite_path.clone().into_os_string();
            p.push(".lock");
            Some(p.into())
        }
        StorageType::Json => Some(cfg.json_path.join(".lock")),
        _ => None,
    }
}

/// What keeps a second writer away: the data-directory lock file or the Redis lease. Held
/// until shutdown; dropping it releases it.
#[derive(Debug)]
enum DataLock {
    File(#[allow(dead_code)] std::fs::File),
    Redis(#[allow(dead_code)] RedisLease),
}

/// Takes the data-directory lock (or the Redis lease), refusing when another process holds it.
fn lock_data(cfg: &StorageConfig) -> Result<Option<DataLock>, StorageError> {
    use std::io::Write;
    if cfg.storage_type == StorageType::Redis {
        return Ok(Some(DataLock::Redis(RedisLease::acquire(cfg)?)));
    }
    let Some(path) = lock_path(cfg) else {
        return Ok(None);
    };
    let io = |source| StorageError::Io {
        path: path.clone(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| StorageError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(io)?;
    match f.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let holder = std::fs::read_to_string(&path).unwrap_or_default();
            return Err(StorageError::InUse {
                path,
                holder: holder.trim().to_string(),
            });
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
    }
    f.set_len(0).map_err(io)?;
    writeln!(f, "pid {}", std::process::id()).map_err(io)?;
    Ok(Some(DataLock::File(f)))
}

/// Opens the backend the configuration names.
pub fn open_backend(cfg: &StorageConfig) -> Result<Box<dyn Backend>, StorageError> {
    match cfg.storage_type {
        StorageType::InMemory => Ok(Box::new(MemoryBackend)),
        StorageType::Sqlite => Ok(Box::new(SqliteBackend::open(
            &cfg.sqlite_path,
            cfg.wal_enabled,
        )?)),
        StorageType::Json => Ok(Box::new(JsonBackend::open(
            &cfg.json_path,
            cfg.json_pretty_print,
        )?)),
        StorageType::Redis => Ok(Box::new(RedisBackend::open(cfg)?)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::entity::EntityProps;
    use crate::broker::message::NewMessage;

    fn send(id: &str) -> Op {
        Op::Send {
            entity: "q".into(),
            messages: vec![NewMessage {
                message_id: id.into(),
                body: b"x".to_vec(),
                ..NewMessage::default()
            }],
        }
    }

    /// A journal that cannot be written refuses acknowledgement with a storage error (503 on
    /// the wire), health reports it, and the buffered records land once writes work again.
    #[tokio::test]
    async fn journal_failure_refuses_acknowledgement_and_recovers() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = StorageConfig {
            storage_type: StorageType::Sqlite,
            sqlite_path: dir.path().join("sb.db"),
            snapshot_interval_seconds: 0,
            ..StorageConfig::default()
        };
        let b = ServiceBusBackend::new(Some(cfg.clone()));
        b.initialize_persistence().await.unwrap();
        b.execute(Op::CreateQueue {
            name: "q".into(),
            props: EntityProps::default(),
        })
        .await
        .unwrap();
        b.execute(send("before")).await.unwrap();
        b.inject_journal_failure(true);
        let err = b.execute(send("during")).await.unwrap_err();
        assert!(
            matches!(err, ServiceError::Storage(StorageError::JournalFailed(_))),
            "{err}"
        );
        assert!(b.journal_healthy().is_err());
        b.inject_journal_failure(false);
        // The flusher retries the buffered records on its own; health recovers with it.
        let deadline = Instant::now() + Duration::from_secs(10);
        while b.journal_healthy().is_err() {
            assert!(Instant::now() < deadline, "journal did not recover");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        b.execute(send("after")).await.unwrap();
        // Crash (no final snapshot): recovery replays all three sends.
        drop(b);
        let b2 = ServiceBusBackend::new(Some(cfg));
        // The first instance's lock file is released when its last handle drops; wait for it.
        let mut tries = 0;
        loop {
            match b2.initialize_persistence().await {
                Ok(_) => break,
                Err(StorageError::InUse { .. }) if tries < 100 => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("{e}"),
            }
        }
        let ids: Vec<String> = b2
            .read(|br| br.peek(&QueuePath::queue("q"), 0, 10))
            .unwrap()
            .into_iter()
            .map(|m| m.content.message_id)
            .collect();
        assert_eq!(ids, vec!["before", "during", "after"]);
    }
}
