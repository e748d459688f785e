//! Start-up and shutdown: taking the data lock, opening the backend, loading the snapshot,
//! replaying the operation log, and the final snapshot.

use super::{PersistenceStatus, ServiceBusBackend};
use crate::broker::op::OpRecord;
use crate::broker::Broker;
use crate::config::StorageType;
use crate::storage::lock::lock_data;
use crate::storage::memory::MemoryBackend;
use crate::storage::open::open_backend;
use crate::storage::oplog;
use crate::storage::{Snapshot, StorageError};
use crate::sync::lock;
use std::sync::atomic::Ordering;
use std::time::Instant;

impl ServiceBusBackend {
    /// The guide's start-up fallback: logs its ERROR line, keeps running in memory, and marks
    /// the status degraded so `/health` and `storage stats` show it.
    pub(super) fn fall_back(&self, e: &StorageError) -> PersistenceStatus {
        tracing::error!(
            "Failed to initialize persistence (error={e}). Falling back to in-memory mode"
        );
        *lock(&self.inner.backend) = Box::new(MemoryBackend);
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
            Ok(held) => *lock(&self.inner.data_lock) = held,
            Err(e @ StorageError::InUse { .. }) => return Err(e),
            Err(e) => return Ok(self.fall_back(&e)),
        }
        let t_open = Instant::now();
        let opened = tokio::task::spawn_blocking(move || open_backend(&cfg))
            .await
            .map_err(|e| StorageError::Other(e.to_string()))?;
        let backend = match opened {
            Ok(b) => b,
            Err(e) => return Ok(self.fall_back(&e)),
        };
        let open_ms = t_open.elapsed().as_secs_f64() * 1000.0;
        let started = Instant::now();
        let mut backend = backend;
        let snap = on_this_thread(|| backend.load());
        let read_ms = started.elapsed().as_secs_f64() * 1000.0;
        *lock(&self.inner.backend) = backend;
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
        let broker = on_this_thread(|| {
            let restored = match &snap {
                Some(s) => Broker::restore(s, now).map_err(|detail| StorageError::Corrupt {
                    path: location.into(),
                    detail,
                }),
                None => Ok(Broker::new(now)),
            };
            drop_in_background(snap);
            restored
        })?;
        let load_ms = started.elapsed().as_secs_f64() * 1000.0;
        *self.lock_broker() = broker;
        let t_replay = Instant::now();
        let mut replayed = 0u64;
        if self.inner.config.wal_enabled() {
            let path = lock(&self.inner.backend).journal_path();
            let redis = (self.inner.config.storage_type == StorageType::Redis)
                .then_some(&self.inner.config.redis);
            if let Some(oplog::Opened {
                log: journal,
                replay,
                location: path,
            }) = oplog::open(
                redis,
                path.as_deref(),
                snap_lsn + 1,
                self.inner.config.sync_policy(),
            )
            .await?
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
                *lock(&self.inner.journal) = Some(journal);
            }
        }
        let replay_ms = t_replay.elapsed().as_secs_f64() * 1000.0;
        tracing::info!(
            "Persistence initialized (storage_type={}, wal_enabled={}, open_ms={open_ms:.1}, read_ms={read_ms:.1}, load_ms={load_ms:.1}, replay_ms={replay_ms:.1})",
            self.inner.config.storage_type.as_str(),
            self.inner.config.wal_enabled()
        );
        tracing::info!("Replayed {replayed} operations from WAL");
        self.set_status(|s| s.replayed = replayed);
        let t_snap = Instant::now();
        let r = self.snapshot().await?;
        tracing::info!(
            "post-replay snapshot in {:.1} ms ({} messages written)",
            t_snap.elapsed().as_secs_f64() * 1000.0,
            r.messages_written
        );
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
        let journal = lock(&self.inner.journal).take();
        if let Some(j) = journal {
            j.close();
        }
        lock(&self.inner.data_lock).take();
        Ok(())
    }
}

/// Runs start-up work (loading and rebuilding the store) on the calling thread, blocking it,
/// instead of a pool thread: the server calls this from its main thread before it serves
/// anything, and the memory a large store needs then comes from the main thread's allocator
/// arena. glibc grows another thread's arena one page per `mprotect` call; recovering
/// 1,000,000 messages on a pool thread made ~200,000 of those calls, most of a second of CPU.
/// On a multi-threaded runtime's worker, `block_in_place` hands the worker's other tasks over.
fn on_this_thread<R>(f: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
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
