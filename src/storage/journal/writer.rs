//! Writing and syncing: batch writes, the flusher of `always` mode, and the timer sync of
//! `interval` mode.

use super::*;

pub(super) fn write_header(file: &mut File, path: &Path) -> Result<(), StorageError> {
    file.write_all(&header_bytes())
        .and_then(|_| file.sync_all())
        .map_err(|e| io_err(path, e))
}

pub(super) fn open_for_append(path: &Path) -> Result<File, StorageError> {
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| io_err(path, e))?;
    f.seek(SeekFrom::End(0)).map_err(|e| io_err(path, e))?;
    Ok(f)
}

/// Writes `batch` at the good end of the file (and fsyncs it when `sync`). `interval` mode
/// stores it through the mapped [`window`]. Otherwise, when the batch would run past the
/// preallocated space, the file is first grown by at least [`PREALLOC_CHUNK`] zeros (that one
/// fsync then also commits the new size; the others are data-only).
pub(super) fn write_batch(
    shared: &Shared,
    fs: &mut FileState,
    batch: &[u8],
    sync: bool,
) -> io::Result<()> {
    if shared.inject_failure.load(Ordering::SeqCst) {
        return Err(io::Error::other("injected write failure"));
    }
    if fs.file.is_none() {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&shared.path)?;
        fs.file = Some(f);
        fs.needs_trim = true;
    }
    let FileState {
        file,
        len,
        allocated,
        needs_trim,
        window,
        mapped,
        ..
    } = fs;
    let Some(file) = file.as_ref() else {
        return Err(io::Error::other("journal file is not open"));
    };
    if *needs_trim {
        *window = None;
        file.set_len(*len)?;
        *allocated = *len;
    }
    let stored = *mapped
        && match window::write_mapped(window, file, allocated, *len, batch)? {
            window::Mapped::Written => true,
            window::Mapped::NoRoomAhead => false,
            window::Mapped::Unsupported => {
                tracing::info!(
                    path = %shared.path.display(),
                    "no fallocate here: the journal writes with write(2)"
                );
                *mapped = false;
                false
            }
        };
    if !stored {
        let end = *len + batch.len() as u64;
        if shared.policy.mode == WalSync::Interval {
            // Preallocation only saves the fsync of every batch a metadata commit; without an
            // fsync per batch it would only double what is written (the zeros, then the
            // records).
            *allocated = (*allocated).max(end);
        } else if end > *allocated {
            let grow = PREALLOC_CHUNK.max(batch.len() as u64);
            let zeros = vec![0u8; (end + grow - *allocated) as usize];
            file.write_all_at(&zeros, *allocated)?;
            *allocated = end + grow;
        }
        // Positioned writes: one syscall each, no seek.
        file.write_all_at(batch, *len)?;
    }
    if sync {
        file.sync_data()?;
    }
    Ok(())
}

/// Writes everything buffered (one write, and one fsync when `sync`) and publishes the
/// outcome.
pub(super) fn flush_pending(shared: &Shared, sync: bool) -> Result<(), StorageError> {
    let result = flush_pending_locked(shared, lock(&shared.file), sync);
    released_file(shared);
    result
}

/// Interval mode, from a request's task: writes what is buffered (its own record among it)
/// unless another thread holds the file, and never waits for the file lock. The holder writes
/// it instead: every holder of the file lock calls [`released_file`] after letting go, which
/// writes what was appended meanwhile. So a runtime worker never blocks behind another
/// request's `write`, a snapshot's copy or the syncer, and the records appended while one
/// write runs go out together in the next.
pub(super) fn write_pending(shared: &Shared) {
    // A record is appended before its request gets here. Either this thread takes the lock
    // (and writes it), or the holder at that moment releases the lock later and, checking the
    // buffer after releasing, finds it and writes it (or hands it on the same way).
    while let Some(fs) = crate::sync::try_lock(&shared.file) {
        if flush_pending_locked(shared, fs, false).is_err() {
            // Published to every waiter; the syncer thread retries.
            return;
        }
        let p = lock(&shared.pending);
        if !p.has_work() || p.flush.failing {
            return;
        }
    }
}

/// Called by every holder of the file lock after releasing it: in interval mode, writes
/// what requests appended while the lock was held (they left it to the holder; see
/// [`write_pending`]).
pub(super) fn released_file(shared: &Shared) {
    if shared.policy.mode == WalSync::Interval {
        let p = lock(&shared.pending);
        let waiting = p.has_work() && !p.flush.failing;
        drop(p);
        if waiting {
            write_pending(shared);
        }
    }
}

fn flush_pending_locked(
    shared: &Shared,
    mut fs: std::sync::MutexGuard<'_, FileState>,
    sync: bool,
) -> Result<(), StorageError> {
    let (batch, count, last_lsn) = {
        let mut p = lock(&shared.pending);
        if p.bytes.is_empty() {
            return Ok(());
        }
        let count = std::mem::take(&mut p.count);
        // The emptied buffer of the previous batch takes its place: appends reuse its
        // capacity instead of growing a new vector, and nothing is freed across threads.
        let spare = std::mem::take(&mut fs.spare);
        (
            std::mem::replace(&mut p.bytes, spare),
            count,
            p.last_appended,
        )
    };
    match write_batch(shared, &mut fs, &batch, sync) {
        Ok(()) => {
            if sync {
                shared.synced.fetch_max(last_lsn, Ordering::SeqCst);
                shared.syncs.fetch_add(1, Ordering::Relaxed);
            }
            fs.len += batch.len() as u64;
            fs.needs_trim = false;
            if batch.capacity() <= SPARE_BUFFER_LIMIT {
                let mut spare = batch;
                spare.clear();
                fs.spare = spare;
            }
            shared.size.store(fs.len, Ordering::Relaxed);
            shared.flushes.fetch_add(1, Ordering::Relaxed);
            let was_failing = {
                let mut p = lock(&shared.pending);
                std::mem::replace(&mut p.flush.failing, false)
            };
            if was_failing {
                tracing::info!(path = %shared.path.display(), lsn = last_lsn, "journal writes recovered");
            }
            shared.durable.publish(DurableState::Ok(last_lsn));
            Ok(())
        }
        Err(e) => {
            fs.needs_trim = true;
            let error = format!("writing {}: {e}", shared.path.display());
            let was_failing = {
                let mut p = lock(&shared.pending);
                // Put the batch back in front of anything appended meanwhile.
                let mut restored = batch;
                restored.extend_from_slice(&p.bytes);
                p.bytes = restored;
                p.count += count;
                p.flush.last_failure = Some(Instant::now());
                std::mem::replace(&mut p.flush.failing, true)
            };
            if !was_failing {
                tracing::error!(error = %error, "journal write failed; retrying");
            }
            let durable = shared.durable.durable_lsn();
            shared.durable.publish(DurableState::Failed {
                durable,
                error: error.clone(),
            });
            Err(StorageError::JournalFailed(error))
        }
    }
}

/// The `journal-flush` thread's view of the journal, for [`run_flusher`]: a batch is
/// everything buffered (one write + one fsync).
pub(super) struct JournalFlusher<'a>(pub(super) &'a Shared);

impl Flusher for JournalFlusher<'_> {
    type Pending = Pending;
    fn buffer(&self) -> (&Mutex<Pending>, &Condvar) {
        (&self.0.pending, &self.0.wake)
    }
    fn gather(&self) -> &crate::storage::idle::Gather {
        &self.0.gather
    }
    fn write(&mut self) -> bool {
        // Errors are published by flush_pending; the loop retries.
        flush_pending(self.0, true).is_ok()
    }
    fn linger_timed_out(&self) {
        self.0.linger_timeouts.fetch_add(1, Ordering::Relaxed);
    }
    fn closed(&mut self) {
        let shared = self.0;
        let p = lock(&shared.pending);
        let durable = shared.durable.durable_lsn();
        if !p.bytes.is_empty() {
            tracing::error!(
                path = %shared.path.display(),
                unwritten = p.count,
                durable,
                "journal closed with records that could not be written"
            );
        }
        shared.durable.publish(DurableState::Closed { durable });
    }
}

/// fsyncs what has been written ([`WalSync::Interval`]): the file handle is duplicated under
/// the file lock and synced outside it, so writers from the runtime never wait for an fsync.
pub(super) fn sync_written(shared: &Shared) -> Result<(), StorageError> {
    let held = sync_handle(shared);
    released_file(shared);
    let Some((file, written)) = held? else {
        return Ok(());
    };
    match file.sync_data() {
        Ok(()) => {
            shared.synced.fetch_max(written, Ordering::SeqCst);
            shared.syncs.fetch_add(1, Ordering::Relaxed);
            Ok(())
        }
        Err(e) => {
            // The written records may not reach the disk: say so (health, log); the next
            // tick tries again.
            let error = format!("syncing {}: {e}", shared.path.display());
            tracing::error!(error = %error, "journal fsync failed; retrying");
            Err(StorageError::JournalFailed(error))
        }
    }
}

/// A duplicate of the file handle and the LSN written so far, taken under the file lock
/// (`None` when nothing new was written or the file is being reopened).
fn sync_handle(shared: &Shared) -> Result<Option<(File, u64)>, StorageError> {
    let fs = lock(&shared.file);
    // Writers publish under the file lock, so this LSN is in the file `fs.file` names.
    let written = shared.durable.durable_lsn();
    if written <= shared.synced.load(Ordering::SeqCst) {
        return Ok(None);
    }
    match fs.file.as_ref().map(File::try_clone) {
        Some(Ok(f)) => Ok(Some((f, written))),
        // Reopened by the next write; the truncation that closed it fsynced the new file.
        None => Ok(None),
        Some(Err(e)) => Err(io_err(&shared.path, e)),
    }
}

/// The `journal-flush` thread in [`WalSync::Interval`] mode: every interval it writes what is
/// buffered (records nobody waited for) and fsyncs; while a write is failing it retries every
/// [`RETRY_INTERVAL`]; on close it writes the rest, fsyncs and publishes the log closed.
pub(super) fn run_interval_syncer(shared: &Shared) {
    let mut next_sync = Instant::now() + shared.policy.interval;
    loop {
        let shutdown = {
            let mut p = lock(&shared.pending);
            loop {
                if p.flush.shutdown {
                    break;
                }
                let now = Instant::now();
                let retry_due = match (p.flush.failing, p.flush.last_failure) {
                    (true, Some(at)) => Some(at + RETRY_INTERVAL),
                    _ => None,
                };
                let wake_at = retry_due.map_or(next_sync, |r| r.min(next_sync));
                if now >= wake_at {
                    break;
                }
                p = shared
                    .wake
                    .wait_timeout(p, wake_at - now)
                    .map(|(g, _)| g)
                    .unwrap_or_else(|e| e.into_inner().0);
            }
            p.flush.shutdown
        };
        let written = flush_pending(shared, false).is_ok();
        if shutdown {
            let mut written = written;
            while written && lock(&shared.pending).has_work() {
                written = flush_pending(shared, false).is_ok();
            }
            let _ = sync_written(shared);
            JournalFlusher(shared).closed();
            return;
        }
        if Instant::now() >= next_sync {
            let _ = sync_written(shared);
            next_sync = Instant::now() + shared.policy.interval;
        }
    }
}
