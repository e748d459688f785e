//! The operation log (journal, "WAL"): length + CRC32 framed records with group commit.
//!
//! # File format
//! ```text
//! header:  "LZWAL\0" (6 bytes) | format version u16 LE (= 2)
//! record:  len u32 LE | crc32 u32 LE | lsn u64 LE | payload (len bytes)
//! end:     zero bytes up to the end of the file (preallocated space, format version 2)
//! ```
//! `len` is the payload length; the CRC (crc32fast, IEEE) covers `lsn ‖ payload`. LSNs start at 1
//! and strictly increase through the file.
//!
//! # Preallocation (format version 2)
//! The file is grown ahead of the records in [`PREALLOC_CHUNK`] steps by writing zeros, so the
//! `fdatasync` of a batch that lands inside already allocated space writes data only (no size
//! change, no extent conversion to commit): on ext4 that is the difference between a data write
//! and a journal commit per batch. A frame header of 16 zero bytes can't be a record (LSNs start
//! at 1), so a zero frame header followed only by zeros is the clean end of the log. Version 1
//! files (no preallocation) are read the same way and their header is upgraded to version 2 in
//! place when opened for writing.
//!
//! # Durability
//! [`Journal::append`] only assigns an LSN and buffers the record, so it never blocks on I/O.
//! A dedicated thread, `journal-flush`, writes everything buffered with one `write` and one
//! `sync_data` (group commit: one fsync serves every request waiting in that batch) and
//! publishes the durable LSN on a `tokio::sync::watch` channel that [`Journal::wait_durable`]
//! and health checks read. Each [`Journal::wait_durable`] caller registers for its own LSN and
//! is woken only once that LSN is durable (or the journal fails), not on every flush.
//!
//! # Sync modes ([`WalSync`])
//! The above is [`WalSync::Always`]. In [`WalSync::Interval`] (the default) a record counts as
//! durable for [`Journal::wait_durable`] once it is written to the operating system: the
//! waiting request writes everything buffered itself, from the runtime thread, with one copy
//! into a memory-mapped, `fallocate`d window of the file ([`window`]: the page cache a
//! `write(2)` would fill, without the system call), as Redis writes its AOF buffer in the
//! event loop before answering clients. No hand-off to another thread sits between the
//! append and the reply, and the requests that appended meanwhile share that write. A request
//! never waits for the file lock: when another thread holds it (a request's write on the other
//! worker, a snapshot's truncation, the syncer), that holder writes the buffer after releasing
//! the lock (`writer::write_pending`, `writer::released_file`), so the records appended during
//! one write go out together in the next and no runtime worker sleeps on a mutex. The
//! `journal-flush` thread then only fsyncs, every [`SyncPolicy::interval`], and writes what
//! nobody waited for and retries failed writes. [`Journal::flush`],
//! [`Journal::truncate_through`] (each snapshot) and [`Journal::close`] (shutdown) write and
//! fsync at once. A written record survives the process dying (crash, `kill -9`, OOM, a
//! container kill); a power loss or kernel crash may lose the last interval.
//! [`Journal::synced_lsn`] is the fsynced LSN in both modes.
//!
//! Before a flush the flusher may wait to gather more records ([`super::idle::Gather`]): only
//! while every worker of the server's runtime is busy, until
//! [`super::idle::GROUP_COMMIT_RECORDS`] records are buffered, and never longer than
//! [`super::idle::MAX_LINGER`]. An idle server flushes at once; a saturated one writes fewer,
//! larger batches (fewer `fdatasync`s, I/O submissions and wake-ups per request).
//!
//! When a write or fsync fails (disk full, permissions), the batch stays buffered, the failure is
//! published (every waiter for a record not yet durable gets [`StorageError::JournalFailed`]),
//! the file is cut back to its last good length (dropping the preallocated space too) (so a half-written batch never sits in front of
//! a later good one), and the flusher retries every [`RETRY_INTERVAL`]. Nothing that was
//! acknowledged is lost, and records appended meanwhile are written once the disk recovers.
//!
//! # Opening: torn tails versus corruption
//! On open every record is verified. At the first bad record (short header, length running past
//! the end of the file, CRC mismatch, or an LSN not greater than its predecessor) the rest of the
//! file is searched **byte by byte** for any well-formed record: a position whose length fits in
//! the file, whose LSN is plausible (greater than the last good LSN and at most 2^40 above it)
//! and whose CRC matches. Byte-wise search means a damaged length field can't hide the good
//! records behind it; the LSN window keeps the scan from computing CRCs at almost every offset of
//! random data.
//! - Nothing after it but zeros, and it is a zero frame header: the clean end of the log.
//! - Nothing valid after it otherwise: a torn write from a crash mid-append. Those records were never
//!   acknowledged, so they are dropped, the file is truncated at that offset and
//!   [`Replay::torn_tail`] reports it (the caller logs a warning naming the offset).
//! - A valid record after it: corruption, and [`StorageError::Corrupt`] names the file and offset;
//!   start-up must not silently skip acknowledged operations.
//!
//! Caveat: a crash during a multi-page batch write can, on some file systems, persist a later
//! page of the batch but not an earlier one. That looks like corruption here although those
//! records were never acknowledged; refusing start-up is the safe reading, and the operator's
//! remedy is documented in the persistence guide (remove the WAL file).

pub use super::durable::DurableState;
use super::durable::{run_flusher, Buffer, Durability, FlushState, Flusher};
pub use super::settings::{SyncPolicy, WalSync};
use super::StorageError;
use crate::sync::lock;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;
use tokio::sync::watch;

/// The first six bytes of every journal file.
pub const MAGIC: &[u8; 6] = b"LZWAL\0";
/// The format version this binary writes (and the newest it reads): [`super::schema::JOURNAL_FILE`].
pub const FORMAT_VERSION: u16 = super::schema::JOURNAL_FILE.current as u16;
/// The oldest format version this binary reads (version 1: no preallocated zero tail).
pub const MIN_FORMAT_VERSION: u16 = 1;
/// The file grows by at least this many bytes (of zeros) at a time, ahead of the records.
pub const PREALLOC_CHUNK: u64 = 1 << 20;
/// Length of the file header (magic + version).
pub const HEADER_LEN: u64 = 8;
/// Length of a record's frame header (len + crc + lsn).
pub const FRAME_HEADER_LEN: usize = 16;
/// A written batch's buffer is kept for reuse only up to this capacity (a burst of large
/// messages should not pin its memory).
const SPARE_BUFFER_LIMIT: usize = 1 << 20;
pub use super::durable::RETRY_INTERVAL;
/// A candidate record found while scanning past a bad one must have an LSN at most this far
/// above the last good LSN (see the module docs).
const LSN_PLAUSIBLE_WINDOW: u64 = 1 << 40;

/// `(lsn, payload)` pairs in LSN order.
pub type Records = Vec<(u64, Vec<u8>)>;

/// The records found in an existing journal at open.
#[derive(Debug, Default)]
pub struct Replay {
    /// `(lsn, payload)` in LSN order.
    pub records: Records,
    /// The byte offset at which a torn tail was dropped (the file was truncated there).
    pub torn_tail: Option<u64>,
}

/// Records appended but not yet written.
struct Pending {
    /// Encoded frames, in LSN order.
    bytes: Vec<u8>,
    /// Number of frames in `bytes`.
    count: usize,
    /// The LSN the next append gets.
    next_lsn: u64,
    /// The last LSN handed out (so the last LSN of whatever is in `bytes`).
    last_appended: u64,
    /// Failure, close and idleness, as the flusher loop ([`run_flusher`]) tracks them.
    flush: FlushState,
}

impl Buffer for Pending {
    fn flush_state(&mut self) -> &mut FlushState {
        &mut self.flush
    }
    fn buffered(&self) -> usize {
        self.count
    }
    fn has_work(&self) -> bool {
        !self.bytes.is_empty()
    }
}

/// The open file and its last known good length.
struct FileState {
    /// `None` when reopening after a rename failed; the next flush reopens it.
    file: Option<File>,
    /// Everything before this offset is valid, fsynced records.
    len: u64,
    /// The file's length: zeros from `len` up to here (preallocated).
    allocated: u64,
    /// A previous write failed: cut the file back to `len` before writing again.
    needs_trim: bool,
    /// The last written batch's buffer, emptied, for the next batch's appends.
    spare: Vec<u8>,
    /// `interval` mode: where batches are stored ([`window`]); dropped before the file is
    /// shortened or replaced.
    window: Option<window::Window>,
    /// `interval` mode writes through [`window`] (until the file system turns out to have no
    /// `fallocate`).
    mapped: bool,
}

struct Shared {
    path: PathBuf,
    /// Lock order: `file` before `pending`, never the reverse.
    file: Mutex<FileState>,
    pending: Mutex<Pending>,
    wake: Condvar,
    durable: Durability,
    flushes: AtomicU64,
    /// Group commits closed by [`super::idle::MAX_LINGER`] rather than an idle worker or a full
    /// batch.
    linger_timeouts: AtomicU64,
    gather: super::idle::Gather,
    size: AtomicU64,
    /// Test hook: make every write fail.
    inject_failure: AtomicBool,
    policy: SyncPolicy,
    /// Every record up to this LSN is fsynced (in `Always` mode: the durable LSN).
    synced: AtomicU64,
    /// fsyncs done (`sync_data` calls that succeeded).
    syncs: AtomicU64,
}

/// The operation log. Share it behind an `Arc`; every method takes `&self`.
pub struct Journal {
    shared: Arc<Shared>,
    flusher: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal")
            .field("path", &self.shared.path)
            .field("durable", &self.shared.durable.state())
            .finish()
    }
}

// The journal's state stays consistent under every lock (each critical section is a few
// assignments or one I/O call whose failure is handled), so poisoning carries no information:
// `crate::sync::lock` recovers it.

mod frame;
mod window;
mod writer;

pub(crate) use frame::sync_dir;
use frame::*;
use writer::*;

impl Journal {
    /// Opens (or creates) the journal at `path` and returns the records already in it.
    ///
    /// New LSNs continue after the file's last record and are at least `next_lsn_floor`
    /// (callers pass the snapshot LSN + 1, so LSNs never repeat after the journal was truncated
    /// to nothing). A torn tail is cut off and reported in [`Replay::torn_tail`].
    pub fn open(path: &Path, next_lsn_floor: u64) -> Result<(Journal, Replay), StorageError> {
        Self::open_with(path, next_lsn_floor, SyncPolicy::ALWAYS)
    }

    /// [`Journal::open`] with a sync policy ([`WalSync`]; the module docs say what each means).
    pub fn open_with(
        path: &Path,
        next_lsn_floor: u64,
        policy: SyncPolicy,
    ) -> Result<(Journal, Replay), StorageError> {
        let dir = parent_dir(path);
        std::fs::create_dir_all(&dir).map_err(|e| io_err(&dir, e))?;
        let existing = match std::fs::read(path) {
            Ok(buf) => Some(buf),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(io_err(path, e)),
        };
        let (records, torn_tail, mut file, len, allocated) = match existing {
            Some(buf) if !buf.is_empty() => {
                let parsed = parse_file(path, &buf)?;
                let mut file = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(path)
                    .map_err(|e| io_err(path, e))?;
                let (len, allocated) = match (parsed.version, parsed.torn) {
                    // A torn header: start the file over.
                    (None, _) => {
                        file.set_len(0).map_err(|e| io_err(path, e))?;
                        write_header(&mut file, path)?;
                        (HEADER_LEN, HEADER_LEN)
                    }
                    // A torn write: cut it off (the preallocated space after it goes too and
                    // is written again, as zeros, by the next flush).
                    (Some(_), true) => {
                        file.set_len(parsed.end).map_err(|e| io_err(path, e))?;
                        (parsed.end, parsed.end)
                    }
                    (Some(_), false) => (parsed.end, buf.len() as u64),
                };
                if parsed.version.is_some_and(|v| v < FORMAT_VERSION) {
                    // Version 1 had no zero tail; the records read the same, so upgrading is
                    // rewriting the version field before anything is preallocated.
                    file.seek(SeekFrom::Start(0))
                        .and_then(|_| file.write_all(&header_bytes()))
                        .map_err(|e| io_err(path, e))?;
                }
                // Make sure what we replay is on disk, even if the previous process died
                // before its fsync (the data may only have been in the page cache).
                file.sync_data().map_err(|e| io_err(path, e))?;
                let torn = parsed.torn_tail();
                (parsed.records, torn, file, len, allocated)
            }
            _ => {
                let mut file = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .open(path)
                    .map_err(|e| io_err(path, e))?;
                write_header(&mut file, path)?;
                sync_dir(&dir)?;
                (Vec::new(), None, file, HEADER_LEN, HEADER_LEN)
            }
        };
        file.seek(SeekFrom::Start(len))
            .map_err(|e| io_err(path, e))?;
        let last_lsn = records.last().map_or(0, |r| r.0);
        let next_lsn = (last_lsn + 1).max(next_lsn_floor).max(1);
        let shared = Arc::new(Shared {
            path: path.to_path_buf(),
            file: Mutex::new(FileState {
                file: Some(file),
                len,
                allocated,
                needs_trim: false,
                spare: Vec::new(),
                window: None,
                mapped: policy.mode == WalSync::Interval,
            }),
            pending: Mutex::new(Pending {
                bytes: Vec::new(),
                count: 0,
                next_lsn,
                last_appended: next_lsn - 1,
                flush: FlushState::default(),
            }),
            wake: Condvar::new(),
            durable: Durability::new("the journal", DurableState::Ok(last_lsn)),
            flushes: AtomicU64::new(0),
            linger_timeouts: AtomicU64::new(0),
            gather: super::idle::Gather::default(),
            size: AtomicU64::new(len),
            inject_failure: AtomicBool::new(false),
            policy,
            synced: AtomicU64::new(last_lsn),
            syncs: AtomicU64::new(0),
        });
        let thread_shared = Arc::clone(&shared);
        let handle = std::thread::Builder::new()
            .name("journal-flush".to_string())
            .spawn(move || match policy.mode {
                WalSync::Always => run_flusher(&mut JournalFlusher(&thread_shared)),
                WalSync::Interval => run_interval_syncer(&thread_shared),
            })
            .map_err(|e| io_err(path, e))?;
        Ok((
            Journal {
                shared,
                flusher: Mutex::new(Some(handle)),
            },
            Replay { records, torn_tail },
        ))
    }

    /// Assigns the next LSN to `payload` and buffers it for the flusher. Never blocks on I/O.
    ///
    /// Payloads must be smaller than 4 GiB (the broker's message-size limits keep them far
    /// below). After [`Journal::close`] the record is never written and waiting for it fails.
    pub fn append(&self, payload: Vec<u8>) -> u64 {
        let mut p = lock(&self.shared.pending);
        let lsn = p.next_lsn;
        p.next_lsn += 1;
        p.last_appended = lsn;
        encode_frame(&mut p.bytes, lsn, &payload);
        p.count += 1;
        if self.shared.policy.mode == WalSync::Interval {
            // The waiting request writes it (`wait_durable`); the syncer thread is not woken.
            return lsn;
        }
        let idle = std::mem::replace(&mut p.flush.flusher_idle, false);
        let buffered = p.count;
        drop(p);
        if idle {
            self.shared.wake.notify_one();
        }
        self.shared.gather.appended(buffered);
        lsn
    }

    /// Waits until every record up to `lsn` is on disk.
    ///
    /// Fails with [`StorageError::JournalFailed`] when the flusher is failing (or the journal is
    /// closed) before `lsn` became durable: the request must not be acknowledged. The record
    /// itself stays buffered and is written when the disk recovers.
    ///
    /// In [`WalSync::Interval`] mode "on disk" means written to the operating system, and the
    /// caller stores what is buffered itself (one copy into the mapped window, no fsync)
    /// unless the journal is failing (then the flusher thread retries and this fails at once).
    pub async fn wait_durable(&self, lsn: u64) -> Result<(), StorageError> {
        if self.shared.policy.mode == WalSync::Interval
            && self.shared.durable.durable_lsn() < lsn
            && !lock(&self.shared.pending).flush.failing
        {
            // Written by this task, or by whoever holds the file now (errors are published to
            // every waiter, this one included).
            writer::write_pending(&self.shared);
        }
        self.shared.durable.wait(lsn).await
    }

    /// Writes and fsyncs everything buffered now, on the calling thread (blocking). Returns
    /// the durable LSN. Useful before a snapshot and in synchronous code and tests.
    pub fn flush(&self) -> Result<u64, StorageError> {
        match self.shared.policy.mode {
            WalSync::Always => flush_pending(&self.shared, true)?,
            WalSync::Interval => {
                flush_pending(&self.shared, false)?;
                sync_written(&self.shared)?;
            }
        }
        Ok(self.durable_lsn())
    }

    /// The highest LSN known to be fsynced (equal to [`Journal::durable_lsn`] in
    /// [`WalSync::Always`] mode; up to one interval behind it in [`WalSync::Interval`]).
    pub fn synced_lsn(&self) -> u64 {
        self.shared.synced.load(Ordering::SeqCst)
    }

    /// fsyncs of the log so far (batches in `Always` mode, ticks with news in `Interval`).
    pub fn sync_count(&self) -> u64 {
        self.shared.syncs.load(Ordering::Relaxed)
    }

    /// The sync policy the journal was opened with.
    pub fn sync_policy(&self) -> SyncPolicy {
        self.shared.policy
    }

    /// Appends and flushes synchronously; returns the record's LSN once it is durable.
    pub fn append_and_flush(&self, payload: Vec<u8>) -> Result<u64, StorageError> {
        let lsn = self.append(payload);
        let durable = self.flush()?;
        if durable >= lsn {
            Ok(lsn)
        } else {
            Err(StorageError::JournalFailed(format!(
                "record {lsn} was not flushed (durable LSN {durable})"
            )))
        }
    }

    /// The journal's health and durable LSN, for readiness checks.
    pub fn subscribe(&self) -> watch::Receiver<DurableState> {
        self.shared.durable.subscribe()
    }

    /// The highest LSN known to be on disk.
    pub fn durable_lsn(&self) -> u64 {
        self.shared.durable.durable_lsn()
    }

    /// The LSN of the most recent append (0 if none ever).
    pub fn last_lsn(&self) -> u64 {
        lock(&self.shared.pending).last_appended
    }

    /// Removes every record with LSN ≤ `lsn` (they are in a committed snapshot).
    ///
    /// Appends continue meanwhile (they only touch the buffer); flushing waits on the file lock.
    /// The records after `lsn` are copied from the file into `{path}.tmp`, which is fsynced and
    /// renamed over the journal, and the directory is fsynced. A crash at any point leaves
    /// either the old file or the new one, and both are valid (replay skips LSNs ≤ the
    /// snapshot's anyway).
    pub fn truncate_through(&self, lsn: u64) -> Result<(), StorageError> {
        let result = self.truncate_through_locked(lsn);
        // Requests that appended meanwhile left their records to the lock holder.
        writer::released_file(&self.shared);
        result
    }

    fn truncate_through_locked(&self, lsn: u64) -> Result<(), StorageError> {
        if self.shared.policy.mode == WalSync::Interval {
            // A snapshot is a sync point: what was acknowledged before it is fsynced now. A
            // failing write is the flusher's to retry (and already reported); it does not
            // stop the truncation.
            let _ = flush_pending(&self.shared, false);
            sync_written(&self.shared)?;
        }
        let path = &self.shared.path;
        let mut fs = lock(&self.shared.file);
        let good_len = fs.len;
        let mut src = File::open(path).map_err(|e| io_err(path, e))?;
        // Find the first record to keep by walking the frame headers of the good region.
        let mut cut = HEADER_LEN;
        let mut head = [0u8; FRAME_HEADER_LEN];
        while cut + FRAME_HEADER_LEN as u64 <= good_len {
            src.seek(SeekFrom::Start(cut))
                .and_then(|_| src.read_exact(&mut head))
                .map_err(|e| io_err(path, e))?;
            if read_u64(&head, 8) > lsn {
                break;
            }
            cut += FRAME_HEADER_LEN as u64 + u64::from(read_u32(&head, 0));
        }
        let cut = cut.min(good_len);
        if cut == HEADER_LEN {
            return Ok(());
        }
        let tmp = tmp_path(path);
        let mut write_tmp = || -> io::Result<()> {
            let mut out = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&tmp)?;
            out.write_all(&header_bytes())?;
            src.seek(SeekFrom::Start(cut))?;
            let copied = io::copy(&mut (&mut src).take(good_len - cut), &mut out)?;
            if copied != good_len - cut {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "journal shrank while truncating",
                ));
            }
            out.sync_all()
        };
        if let Err(e) = write_tmp() {
            let _ = std::fs::remove_file(&tmp);
            return Err(io_err(&tmp, e));
        }
        std::fs::rename(&tmp, path).map_err(|e| io_err(path, e))?;
        let new_len = HEADER_LEN + (good_len - cut);
        // The old handle now points at the unlinked file: from here on, write to the new one.
        fs.window = None;
        fs.file = None;
        fs.len = new_len;
        fs.allocated = new_len;
        fs.needs_trim = false;
        self.shared.size.store(new_len, Ordering::Relaxed);
        sync_dir(&parent_dir(path))?;
        fs.file = Some(open_for_append(path)?);
        Ok(())
    }

    /// Bytes in the journal file (its valid part).
    pub fn size_bytes(&self) -> u64 {
        self.shared.size.load(Ordering::Relaxed)
    }

    /// The journal file.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// How many group commits were closed by the time limit ([`super::idle::MAX_LINGER`])
    /// because the runtime's workers never went idle: zero on a server that is not saturated.
    pub fn linger_timeouts(&self) -> u64 {
        self.shared.linger_timeouts.load(Ordering::Relaxed)
    }

    /// Number of successful flushes (write + fsync) so far: group commit is visible as far
    /// fewer flushes than appends.
    pub fn flush_count(&self) -> u64 {
        self.shared.flushes.load(Ordering::Relaxed)
    }

    /// Test hook: while `fail` is set, every write fails as if the disk were full.
    #[doc(hidden)]
    pub fn inject_write_failure(&self, fail: bool) {
        self.shared.inject_failure.store(fail, Ordering::SeqCst);
        let _p = lock(&self.shared.pending);
        self.shared.wake.notify_one();
    }

    /// Flushes what is buffered, stops the flusher thread and closes the file. Idempotent, and
    /// done by `Drop` too. If the final flush fails, the unwritten records are reported in the
    /// published [`DurableState`] and an error log line.
    pub fn close(&self) {
        lock(&self.shared.pending).flush.shutdown = true;
        self.shared.wake.notify_all();
        super::idle::nudge();
        if let Some(handle) = lock(&self.flusher).take() {
            if handle.join().is_err() {
                tracing::error!(path = %self.shared.path.display(), "journal flusher panicked");
            }
        }
    }

    /// `Ok` while the journal can write; the last write error (or "closed") otherwise.
    pub fn health(&self) -> Result<(), String> {
        self.shared.durable.health()
    }

    #[cfg(test)]
    fn hold_file_lock(&self) -> std::sync::MutexGuard<'_, FileState> {
        lock(&self.shared.file)
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        self.close();
    }
}

/// Decodes a journal file image as [`Journal::open`] does, without touching the disk: the
/// records, and the offset of a torn tail (the file is not truncated). Public for the fuzz
/// targets (`fuzz/`), which check that no input panics the torn-tail/corruption decision.
#[doc(hidden)]
pub fn decode(buf: &[u8]) -> Result<Replay, StorageError> {
    let parsed = parse_file(Path::new("<journal image>"), buf)?;
    let torn_tail = parsed.torn_tail();
    Ok(Replay {
        records: parsed.records,
        torn_tail,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    fn payload(i: usize) -> Vec<u8> {
        format!("op-{i}-{}", "x".repeat(i % 7)).into_bytes()
    }

    fn open(path: &Path) -> (Journal, Replay) {
        Journal::open(path, 1).expect("open journal")
    }

    fn open_interval(path: &Path, ms: u64) -> Journal {
        let policy = SyncPolicy {
            mode: WalSync::Interval,
            interval: std::time::Duration::from_millis(ms),
        };
        Journal::open_with(path, 1, policy).expect("open journal").0
    }

    /// Reads the records a fresh open of `path` finds (the page cache counts: what a process
    /// that died after the write would find).
    fn records_in(path: &Path) -> Vec<u64> {
        let buf = std::fs::read(path).unwrap();
        decode(&buf).unwrap().records.iter().map(|r| r.0).collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn interval_mode_acknowledges_written_records_and_syncs_on_the_timer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ops.wal");
        let j = open_interval(&path, 50);
        let syncs_before = j.sync_count();
        let lsn = j.append(payload(0));
        j.wait_durable(lsn).await.unwrap();
        // Written (another process reading the file sees it) before any fsync.
        assert_eq!(records_in(&path), vec![1]);
        assert_eq!(j.durable_lsn(), 1);
        // The timer fsyncs it.
        let started = Instant::now();
        while j.synced_lsn() < 1 {
            assert!(
                started.elapsed().as_secs() < 10,
                "the fsync timer never fired"
            );
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        assert_eq!(j.sync_count(), syncs_before + 1);
        // Nothing new: the timer does not fsync again.
        tokio::time::sleep(std::time::Duration::from_millis(150)).await;
        assert_eq!(j.sync_count(), syncs_before + 1);
        j.close();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn interval_mode_does_not_fsync_before_acknowledging() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ops.wal");
        // An interval far longer than the test: only explicit sync points fsync.
        let j = open_interval(&path, 3_600_000);
        for i in 0..100 {
            let lsn = j.append(payload(i));
            j.wait_durable(lsn).await.unwrap();
        }
        assert_eq!(j.durable_lsn(), 100);
        assert_eq!(j.sync_count(), 0);
        assert_eq!(j.synced_lsn(), 0);
        assert_eq!(records_in(&path).len(), 100);
        // `flush` (what a caller uses before a snapshot) is a sync point.
        assert_eq!(j.flush().unwrap(), 100);
        assert_eq!(j.synced_lsn(), 100);
        assert_eq!(j.sync_count(), 1);
        j.close();
    }

    #[test]
    fn interval_mode_requests_never_wait_for_the_file_lock() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ops.wal");
        // No timer write during the test: only requests and lock holders write.
        let j = Arc::new(open_interval(&path, 3_600_000));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        // Another writer (a snapshot's copy, the syncer, a request's write) holds the file
        // while three requests append and wait.
        let guard = j.hold_file_lock();
        let (tx, rx) = std::sync::mpsc::channel();
        let requests = {
            let j = Arc::clone(&j);
            std::thread::spawn(move || {
                let lsns: Vec<u64> = (0..3).map(|i| j.append(payload(i))).collect();
                for &lsn in &lsns {
                    // Must return at once: the record is left to the holder.
                    write_pending(&j.shared);
                    tx.send(lsn).unwrap();
                }
                // And the request is acknowledged once the holder has written it.
                rt.block_on(j.wait_durable(3)).unwrap();
            })
        };
        for _ in 0..3 {
            rx.recv_timeout(std::time::Duration::from_secs(10))
                .expect("a request blocked on the file lock");
        }
        assert_eq!(j.durable_lsn(), 0);
        // The holder lets go as every holder does: it writes what was appended meanwhile, in
        // one write.
        let writes = j.flush_count();
        drop(guard);
        released_file(&j.shared);
        requests.join().unwrap();
        assert_eq!(j.durable_lsn(), 3);
        assert_eq!(j.flush_count() - writes, 1);
        assert_eq!(records_in(&path), vec![1, 2, 3]);
        j.close();
    }

    #[test]
    fn interval_mode_syncs_at_snapshot_truncation_and_at_close() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ops.wal");
        let j = open_interval(&path, 3_600_000);
        for i in 0..10 {
            j.append(payload(i));
        }
        // The truncation after a snapshot writes and fsyncs what is buffered first.
        j.truncate_through(4).unwrap();
        assert_eq!(j.synced_lsn(), 10);
        assert_eq!(records_in(&path), (5..=10).collect::<Vec<u64>>());
        // Appended, never waited for: shutdown writes and fsyncs it.
        j.append(payload(10));
        let syncs = j.sync_count();
        j.close();
        assert_eq!(j.synced_lsn(), 11);
        assert_eq!(j.sync_count(), syncs + 1);
        assert_eq!(records_in(&path), (5..=11).collect::<Vec<u64>>());
    }

    /// `interval` mode stores through a mapped window of the file ([`window`]): records that
    /// cross several windows, a snapshot's truncation in the middle, a restart in either mode
    /// and a torn record at the end all read as with `write(2)`.
    #[cfg(target_os = "linux")]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn interval_mode_mapped_log_across_windows_truncation_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ops.wal");
        let big = |i: usize| vec![(i % 251) as u8 + 1; 48 * 1024];
        let j = open_interval(&path, 3_600_000);
        // 2.5 windows of records, each acknowledged the way a request does.
        let n = (window::WINDOW as usize * 5 / 2) / (48 * 1024);
        for i in 0..n {
            let lsn = j.append(big(i));
            j.wait_durable(lsn).await.unwrap();
        }
        assert_eq!(j.durable_lsn(), n as u64);
        // The page cache has them before any fsync (what a killed process leaves).
        assert_eq!(j.synced_lsn(), 0);
        assert_eq!(records_in(&path), (1..=n as u64).collect::<Vec<_>>());
        let len = std::fs::metadata(&path).unwrap().len();
        assert!(len > j.size_bytes() && len <= j.size_bytes() + 2 * window::WINDOW);
        // A snapshot's truncation replaces the mapped file; appends continue in the new one.
        j.truncate_through(n as u64 / 2).unwrap();
        for i in n..n + 10 {
            let lsn = j.append(big(i));
            j.wait_durable(lsn).await.unwrap();
        }
        drop(j);
        let first = n as u64 / 2 + 1;
        let (j, replay) = open(&path);
        assert_eq!(replay.torn_tail, None);
        let got: Vec<u64> = replay.records.iter().map(|r| r.0).collect();
        assert_eq!(got, (first..=n as u64 + 10).collect::<Vec<_>>());
        for (lsn, p) in &replay.records {
            assert_eq!(p, &big(*lsn as usize - 1));
        }
        j.close();
        // Half a record after the last one (a crash inside a copy): dropped as a torn tail.
        let j = open_interval(&path, 3_600_000);
        let lsn = j.append(big(0));
        j.wait_durable(lsn).await.unwrap();
        let end = j.size_bytes();
        drop(j);
        let file = OpenOptions::new().write(true).open(&path).unwrap();
        let half = vec![0u8; 24 * 1024];
        file.write_all_at(&half, end - 24 * 1024).unwrap();
        let (_, replay) = Journal::open_with(&path, 1, SyncPolicy::ALWAYS).unwrap();
        assert_eq!(replay.records.last().map(|r| r.0), Some(lsn - 1));
        assert!(replay.torn_tail.is_some());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn interval_mode_concurrent_appends_and_write_failure() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ops.wal");
        let j = Arc::new(open_interval(&path, 20));
        let mut tasks = Vec::new();
        for t in 0..8 {
            let j = Arc::clone(&j);
            tasks.push(tokio::spawn(async move {
                for i in 0..100 {
                    let lsn = j.append(payload(t * 100 + i));
                    j.wait_durable(lsn).await.unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(j.durable_lsn(), 800);
        // A failing disk fails the waiter; the syncer thread retries and the record lands.
        j.inject_write_failure(true);
        let lost = j.append(b"during failure".to_vec());
        assert!(j.wait_durable(lost).await.is_err());
        j.inject_write_failure(false);
        let mut health = j.subscribe();
        health
            .wait_for(|s| *s == DurableState::Ok(lost))
            .await
            .unwrap();
        j.close();
        assert_eq!(records_in(&path), (1..=801).collect::<Vec<u64>>());
    }

    #[test]
    fn round_trip_and_reopen_continues_lsns() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ops.wal");
        let (j, replay) = open(&path);
        assert!(replay.records.is_empty());
        for i in 0..10 {
            assert_eq!(j.append_and_flush(payload(i)).unwrap(), i as u64 + 1);
        }
        j.close();
        let (j, replay) = open(&path);
        assert_eq!(replay.torn_tail, None);
        let got: Vec<_> = replay.records.iter().map(|r| r.0).collect();
        assert_eq!(got, (1..=10).collect::<Vec<u64>>());
        for (i, (_, p)) in replay.records.iter().enumerate() {
            assert_eq!(p, &payload(i));
        }
        assert_eq!(j.append(b"next".to_vec()), 11);
        j.close();
        // A floor above the file's LSNs wins.
        let (j, _) = Journal::open(&path, 500).unwrap();
        assert_eq!(j.append(b"x".to_vec()), 500);
    }

    #[test]
    fn close_flushes_buffered_records() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ops.wal");
        let (j, _) = open(&path);
        for i in 0..100 {
            j.append(payload(i));
        }
        j.close();
        let (_, replay) = open(&path);
        assert_eq!(replay.records.len(), 100);
    }

    #[test]
    fn group_commit_serves_a_batch_with_one_fsync() {
        let dir = tempfile::tempdir().unwrap();
        let (j, _) = open(&dir.path().join("ops.wal"));
        let before = j.flush_count();
        {
            // Hold the flusher off while 1000 records are appended.
            let _guard = j.hold_file_lock();
            for i in 0..1000 {
                j.append(payload(i));
            }
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(j.wait_durable(1000)).unwrap();
        assert_eq!(j.flush_count() - before, 1);
    }

    #[tokio::test]
    // Deliberate: the lock only stops the flusher thread; nothing awaited here needs it.
    #[allow(clippy::await_holding_lock)]
    async fn several_waiters_for_one_lsn_are_all_woken() {
        let dir = tempfile::tempdir().unwrap();
        let (j, _) = open(&dir.path().join("ops.wal"));
        let j = Arc::new(j);
        // The flusher can't write while the file lock is held here.
        let file = j.hold_file_lock();
        let first = j.append(payload(1));
        let second = j.append(payload(2));
        // Three waiters on the first record, one on the second, all registered before either
        // is durable.
        let waits: Vec<_> = [first, first, first, second]
            .into_iter()
            .map(|lsn| {
                let j = Arc::clone(&j);
                tokio::spawn(async move { j.wait_durable(lsn).await })
            })
            .collect();
        while j.shared.durable.waiting() < 4 {
            tokio::task::yield_now().await;
        }
        drop(file);
        for w in waits {
            w.await.unwrap().unwrap();
        }
        assert_eq!(j.durable_lsn(), second);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_appends_share_fsyncs() {
        let dir = tempfile::tempdir().unwrap();
        let (j, _) = open(&dir.path().join("ops.wal"));
        let j = Arc::new(j);
        let done = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for t in 0..8 {
            let j = Arc::clone(&j);
            let done = Arc::clone(&done);
            tasks.push(tokio::spawn(async move {
                for i in 0..100 {
                    let lsn = j.append(payload(t * 100 + i));
                    j.wait_durable(lsn).await.unwrap();
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(done.load(Ordering::Relaxed), 800);
        assert_eq!(j.durable_lsn(), 800);
        assert!(j.flush_count() <= 800);
    }

    /// Writes `n` records, returns the file bytes without the preallocated zero tail and the
    /// offset where the last record starts.
    fn file_with_records(path: &Path, n: usize) -> (Vec<u8>, usize) {
        let (j, _) = open(path);
        for i in 0..n {
            j.append_and_flush(payload(i)).unwrap();
        }
        let valid = j.size_bytes() as usize;
        j.close();
        let mut bytes = std::fs::read(path).unwrap();
        assert!(bytes.len() > valid, "the file is preallocated");
        assert!(bytes[valid..].iter().all(|&b| b == 0), "zero tail");
        bytes.truncate(valid);
        let last_len = FRAME_HEADER_LEN + payload(n - 1).len();
        (bytes.clone(), bytes.len() - last_len)
    }

    #[test]
    fn torn_tail_inside_preallocated_space_at_every_offset() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ops.wal");
        let (bytes, last_start) = file_with_records(&path, 5);
        for cut in last_start..=bytes.len() {
            // The last write reached `cut`; the preallocated zeros follow.
            let mut file = bytes[..cut].to_vec();
            file.resize(bytes.len() + 4096, 0);
            std::fs::write(&path, &file).unwrap();
            let (j, replay) = open(&path);
            let complete = cut == bytes.len();
            assert_eq!(
                replay.records.len(),
                if complete { 5 } else { 4 },
                "cut at {cut}"
            );
            let expected_torn = (cut > last_start && !complete).then_some(last_start as u64);
            assert_eq!(replay.torn_tail, expected_torn, "cut at {cut}");
            let next = if complete { 6 } else { 5 };
            assert_eq!(j.append_and_flush(b"after".to_vec()).unwrap(), next);
            j.close();
            let (_, replay) = open(&path);
            assert_eq!(replay.torn_tail, None);
            assert_eq!(replay.records.len(), next as usize);
            assert_eq!(replay.records[next as usize - 1].1, b"after");
        }
    }

    #[test]
    fn zero_frame_header_before_a_valid_record_is_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ops.wal");
        let (bytes, _) = file_with_records(&path, 5);
        let second = HEADER_LEN as usize + FRAME_HEADER_LEN + payload(0).len();
        let third = second + FRAME_HEADER_LEN + payload(1).len();
        // The second record's page never reached the disk; the third's did.
        let mut bad = bytes.clone();
        bad[second..third].fill(0);
        bad.resize(bytes.len() + 4096, 0);
        std::fs::write(&path, &bad).unwrap();
        match Journal::open(&path, 1) {
            Err(StorageError::Corrupt { detail, .. }) => {
                assert!(detail.contains(&format!("offset {second}")), "{detail}")
            }
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }

    #[test]
    fn version_1_file_replays_and_is_upgraded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ops.wal");
        let (mut bytes, _) = file_with_records(&path, 3);
        bytes[6..8].copy_from_slice(&1u16.to_le_bytes());
        std::fs::write(&path, &bytes).unwrap();
        let (j, replay) = open(&path);
        assert_eq!(replay.records.len(), 3);
        assert_eq!(replay.torn_tail, None);
        assert_eq!(j.append_and_flush(b"v2".to_vec()).unwrap(), 4);
        j.close();
        let after = std::fs::read(&path).unwrap();
        assert_eq!(&after[6..8], &FORMAT_VERSION.to_le_bytes());
        let (_, replay) = open(&path);
        assert_eq!(replay.records.len(), 4);
    }

    #[test]
    fn flushes_inside_preallocated_space_do_not_grow_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ops.wal");
        let (j, _) = open(&path);
        j.append_and_flush(payload(0)).unwrap();
        let allocated = std::fs::metadata(&path).unwrap().len();
        assert!(allocated >= PREALLOC_CHUNK);
        for i in 1..100 {
            j.append_and_flush(payload(i)).unwrap();
        }
        assert_eq!(std::fs::metadata(&path).unwrap().len(), allocated);
        assert!(j.size_bytes() < allocated);
        // A batch bigger than the space left grows the file past it.
        for i in 0..3000 {
            j.append(vec![b'z'; 400 + i % 3]);
        }
        j.flush().unwrap();
        assert!(std::fs::metadata(&path).unwrap().len() > j.size_bytes());
        j.close();
        let (_, replay) = open(&path);
        assert_eq!(replay.records.len(), 3100);
        assert_eq!(replay.torn_tail, None);
    }

    #[test]
    fn torn_tail_at_every_offset_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ops.wal");
        let (bytes, last_start) = file_with_records(&path, 5);
        for cut in last_start..bytes.len() {
            std::fs::write(&path, &bytes[..cut]).unwrap();
            let (j, replay) = open(&path);
            assert_eq!(replay.records.len(), 4, "cut at {cut}");
            let expected_torn = (cut > last_start).then_some(last_start as u64);
            assert_eq!(replay.torn_tail, expected_torn, "cut at {cut}");
            // The file was cut back, and appends continue after the last good record.
            assert_eq!(j.append_and_flush(b"after".to_vec()).unwrap(), 5);
            j.close();
            let (_, replay) = open(&path);
            assert_eq!(replay.torn_tail, None);
            assert_eq!(replay.records.len(), 5);
            assert_eq!(replay.records[4].1, b"after");
        }
    }

    #[test]
    fn garbage_tail_is_torn_not_corrupt_and_zero_tail_is_clean() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ops.wal");
        let (mut bytes, _) = file_with_records(&path, 3);
        let good_len = bytes.len();
        bytes.extend_from_slice(&[0u8; 4096]);
        std::fs::write(&path, &bytes).unwrap();
        let (_, replay) = open(&path);
        assert_eq!(replay.records.len(), 3);
        assert_eq!(replay.torn_tail, None);
        // The preallocated space is kept.
        assert_eq!(std::fs::metadata(&path).unwrap().len(), bytes.len() as u64);

        bytes[good_len + 100] = 0xAB;
        std::fs::write(&path, &bytes).unwrap();
        let (_, replay) = open(&path);
        assert_eq!(replay.records.len(), 3);
        assert_eq!(replay.torn_tail, Some(good_len as u64));
        assert_eq!(std::fs::metadata(&path).unwrap().len(), good_len as u64);
    }

    #[test]
    fn flipped_byte_in_a_middle_record_is_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ops.wal");
        let (bytes, _) = file_with_records(&path, 5);
        let second = HEADER_LEN as usize + FRAME_HEADER_LEN + payload(0).len();
        // Flip a byte in each field of the second record: len, crc, lsn, payload.
        for offset in [0, 5, 9, FRAME_HEADER_LEN + 1] {
            let mut bad = bytes.clone();
            bad[second + offset] ^= 0x40;
            std::fs::write(&path, &bad).unwrap();
            match Journal::open(&path, 1) {
                Err(StorageError::Corrupt { path: p, detail }) => {
                    assert_eq!(p, path);
                    assert!(
                        detail.contains(&format!("offset {second}")),
                        "detail: {detail}"
                    );
                }
                other => panic!("expected Corrupt, got {other:?}"),
            }
        }
    }

    #[test]
    fn bad_header_and_newer_version_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ops.wal");
        std::fs::write(&path, b"NOTAWAL!").unwrap();
        assert!(matches!(
            Journal::open(&path, 1),
            Err(StorageError::Corrupt { .. })
        ));
        let mut h = header_bytes();
        h[6..].copy_from_slice(&7u16.to_le_bytes());
        std::fs::write(&path, h).unwrap();
        match Journal::open(&path, 1) {
            Err(StorageError::SchemaTooNew {
                found, supported, ..
            }) => assert_eq!((found, supported), (7, i64::from(FORMAT_VERSION))),
            other => panic!("expected SchemaTooNew, got {other:?}"),
        }
        h[6..].copy_from_slice(&0u16.to_le_bytes());
        std::fs::write(&path, h).unwrap();
        match Journal::open(&path, 1) {
            Err(StorageError::Corrupt { detail, .. }) => assert!(detail.contains("version 0")),
            other => panic!("expected Corrupt, got {other:?}"),
        }
        // A torn header of a brand-new file is started over.
        std::fs::write(&path, &header_bytes()[..3]).unwrap();
        let (j, replay) = open(&path);
        assert!(replay.records.is_empty());
        assert_eq!(j.append_and_flush(b"a".to_vec()).unwrap(), 1);
    }

    #[test]
    fn truncate_through_keeps_later_records() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ops.wal");
        let (j, _) = open(&path);
        for i in 0..10 {
            j.append_and_flush(payload(i)).unwrap();
        }
        let before = j.size_bytes();
        j.truncate_through(6).unwrap();
        assert!(j.size_bytes() < before);
        assert!(j.size_bytes() <= std::fs::metadata(&path).unwrap().len());
        // Appends after truncation go to the new file.
        assert_eq!(j.append_and_flush(b"eleven".to_vec()).unwrap(), 11);
        j.truncate_through(3).unwrap(); // nothing to remove
        j.close();
        assert!(!tmp_path(&path).exists());
        let (j, replay) = open(&path);
        let lsns: Vec<_> = replay.records.iter().map(|r| r.0).collect();
        assert_eq!(lsns, vec![7, 8, 9, 10, 11]);
        assert_eq!(replay.records[0].1, payload(6));
        j.truncate_through(100).unwrap();
        assert_eq!(j.size_bytes(), HEADER_LEN);
        assert_eq!(j.append_and_flush(b"x".to_vec()).unwrap(), 12);
        j.close();
        let (_, replay) = open(&path);
        assert_eq!(replay.records.len(), 1);
    }

    #[test]
    fn truncate_races_with_appends() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ops.wal");
        let (j, _) = open(&path);
        let j = Arc::new(j);
        let writer = {
            let j = Arc::clone(&j);
            std::thread::spawn(move || {
                for i in 0..2000 {
                    j.append(payload(i));
                }
            })
        };
        for _ in 0..20 {
            let durable = j.durable_lsn();
            j.truncate_through(durable / 2).unwrap();
        }
        writer.join().unwrap();
        j.flush().unwrap();
        let cut = j.durable_lsn() - 10;
        j.truncate_through(cut).unwrap();
        drop(j);
        let (_, replay) = open(&path);
        let lsns: Vec<_> = replay.records.iter().map(|r| r.0).collect();
        assert_eq!(lsns, (1991..=2000).collect::<Vec<u64>>());
    }

    #[tokio::test]
    async fn write_failure_is_reported_then_recovered() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ops.wal");
        let (j, _) = open(&path);
        let mut health = j.subscribe();
        let ok = j.append(b"ok".to_vec());
        j.wait_durable(ok).await.unwrap();

        j.inject_write_failure(true);
        let lost = j.append(b"during failure".to_vec());
        let err = j.wait_durable(lost).await.unwrap_err();
        assert!(matches!(err, StorageError::JournalFailed(_)), "{err:?}");
        health
            .wait_for(|s| matches!(s, DurableState::Failed { durable: 1, .. }))
            .await
            .unwrap();
        assert!(j.health().unwrap_err().contains("injected"));
        // Records up to the durable LSN still count as durable.
        j.wait_durable(ok).await.unwrap();
        let also = j.append(b"also during failure".to_vec());
        assert!(j.wait_durable(also).await.is_err());

        j.inject_write_failure(false);
        health
            .wait_for(|s| *s == DurableState::Ok(also))
            .await
            .unwrap();
        j.wait_durable(also).await.unwrap();
        assert_eq!(j.health(), Ok(()));
        j.close();
        let (_, replay) = open(&path);
        let payloads: Vec<_> = replay.records.iter().map(|r| r.1.clone()).collect();
        assert_eq!(
            payloads,
            vec![
                b"ok".to_vec(),
                b"during failure".to_vec(),
                b"also during failure".to_vec()
            ]
        );
    }

    #[tokio::test]
    async fn waiting_after_close_fails() {
        let dir = tempfile::tempdir().unwrap();
        let (j, _) = open(&dir.path().join("ops.wal"));
        let a = j.append(b"a".to_vec());
        j.close();
        j.wait_durable(a).await.unwrap();
        let b = j.append(b"b".to_vec());
        assert!(j.wait_durable(b).await.is_err());
        assert!(matches!(
            *j.subscribe().borrow(),
            DurableState::Closed { durable: 1 }
        ));
    }

    #[cfg(unix)]
    #[test]
    fn open_in_read_only_dir_is_an_io_error() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let ro = dir.path().join("ro");
        std::fs::create_dir(&ro).unwrap();
        std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
        let res = Journal::open(&ro.join("ops.wal"), 1);
        std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o755)).unwrap();
        // Root ignores directory permissions; only assert when the open really failed.
        if let Err(e) = res {
            assert!(matches!(e, StorageError::Io { .. }), "{e:?}");
        }
    }
}
