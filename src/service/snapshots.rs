//! Snapshots (periodic, manual, final), export, import, compaction and purge.

use super::{ServiceBusBackend, ServiceError, SnapshotReport};
use crate::broker::error::BrokerError;
use crate::broker::op::Op;
use crate::broker::{Broker, Totals};
use crate::config::StorageType;
use crate::storage::export::ExportDocument;
use crate::storage::StorageError;
use crate::sync::lock;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

impl ServiceBusBackend {
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
            let mut be = lock(&inner.backend);
            be.apply(&delta)
        })
        .await
        .map_err(|e| StorageError::Other(e.to_string()))?;
        if let Err(e) = res {
            self.lock_broker().require_full_snapshot();
            return Err(e);
        }
        report.write_ms = t1.elapsed().as_secs_f64() * 1000.0;
        crate::metrics::global().snapshot(report.capture_ms + report.write_ms);
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
        if self.inner.config.storage_type == StorageType::InMemory {
            fresh.set_change_tracking(false);
        }
        let totals = fresh.totals();
        let _guard = self.inner.snapshot_lock.lock().await;
        let inner = self.inner.clone();
        let persistent = self.inner.config.storage_type != StorageType::InMemory
            && self.status().degraded.is_none();
        let journal = self.journal();
        tokio::task::spawn_blocking(move || -> Result<(), StorageError> {
            let mut live = lock(&inner.broker);
            if persistent {
                let lsn = match &journal {
                    Some(j) => j.last_lsn(),
                    None => inner.op_counter.load(Ordering::SeqCst),
                };
                fresh.mark_full();
                let delta = fresh
                    .take_delta(true, lsn, now)
                    .map_err(StorageError::Other)?;
                lock(&inner.backend).apply(&delta)?;
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
        let waiters = lock(&self.inner.waiters);
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
        tokio::task::spawn_blocking(move || lock(&inner.backend).compact())
            .await
            .map_err(|e| StorageError::Other(e.to_string()))?
    }

    /// Deletes every entity and message, durably.
    pub async fn purge(&self) -> Result<(), ServiceError> {
        self.execute(Op::PurgeAll).await?;
        self.snapshot_inner(true).await?;
        Ok(())
    }
}
