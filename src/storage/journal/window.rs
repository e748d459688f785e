//! `interval` mode's write path: records are copied into a memory-mapped window of the log
//! file instead of being written with `write(2)`.
//!
//! Why: in `interval` mode the `write(2)` of each batch was what separated the SQLite and JSON
//! backends from in-memory (README "Benchmarks": skipping only that call ran at in-memory's
//! CPU per request). A store into a shared file mapping lands in the same page cache a
//! `write(2)` fills, so a mapped record survives the process dying (crash, `kill -9`, OOM) just
//! like a written one, other handles read it at once (the snapshot's truncation copy, a
//! restart), and the `fdatasync` of the file writes it back (Linux tracks stores through
//! shared mappings as dirty pages of the file: `msync(2)`, `fsync(2)`), with no system call
//! per batch.
//!
//! The window maps the file from the write position to [`WINDOW`] bytes past the batch that
//! needed it, and moves on when a batch does not fit. Before mapping, the window's blocks are
//! reserved with `fallocate(2)`: a store into a mapped hole that the file system cannot back
//! (disk full, quota) would kill the process with `SIGBUS`, while a failed `fallocate` is an
//! ordinary write error (the batch stays buffered, the failure is published and retried, as
//! for `write(2)`). Where the file system has no `fallocate`, the journal keeps using
//! `write(2)`. Reserved space reads as zeros, which the format already reads as the clean end
//! of the log (format version 2's preallocated tail): the file format does not change. Only
//! the window is mapped, so the log adds at most [`WINDOW`] to the resident set however long
//! it grows.
//!
//! Nothing but this process truncates the file while it is mapped (the data directory's lock
//! keeps a second LocalZure out): the journal drops the window before it cuts the file back
//! after a failed write and before a snapshot's truncation replaces the file.

use memmap2::{MmapMut, MmapOptions};
use std::fs::File;
use std::io;

/// How far past a batch a new window reaches (and the space reserved ahead of the records).
pub(super) const WINDOW: u64 = 8 << 20;

/// A mapped, reserved stretch of the log file.
pub(super) struct Window {
    /// The file offset of the first mapped byte.
    start: u64,
    map: MmapMut,
}

/// What [`write_mapped`] did.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Mapped {
    /// The batch is in the page cache, at the requested offset.
    Written,
    /// The file system cannot reserve space (`fallocate` unsupported): use `write(2)`.
    Unsupported,
    /// Not written: there is no room for a whole window ahead (a nearly full disk). Write
    /// this batch with `write(2)`, which uses only the room it needs and fails with the
    /// disk's own error when even that is missing; the next batch tries a window again.
    NoRoomAhead,
}

/// Copies `batch` into the file at offset `at` through `window`, mapping a new window first
/// when the batch does not fit in the current one. `allocated` (the file's length) grows with
/// the reservation.
pub(super) fn write_mapped(
    window: &mut Option<Window>,
    file: &File,
    allocated: &mut u64,
    at: u64,
    batch: &[u8],
) -> io::Result<Mapped> {
    let end = at + batch.len() as u64;
    let fits = window
        .as_ref()
        .is_some_and(|w| at >= w.start && end <= w.start + w.map.len() as u64);
    if !fits {
        // Unmapped before the file changes under it.
        *window = None;
        let new_end = end + WINDOW;
        match reserve(file, at, new_end - at) {
            Ok(true) => {}
            Ok(false) => return Ok(Mapped::Unsupported),
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => return Ok(Mapped::NoRoomAhead),
            Err(e) => return Err(e),
        }
        *allocated = (*allocated).max(new_end);
        let len = usize::try_from(new_end - at).map_err(io::Error::other)?;
        // SAFETY: `map_mut` is unsafe because the mapped file could be truncated or changed
        // by someone else while mapped (a store past the end of a file raises SIGBUS). This
        // file is the journal of a data directory this process holds the lock of, and the
        // journal drops the window before it shortens or replaces the file itself (module
        // docs). The whole range was just reserved, so no store into it needs new blocks.
        let map = unsafe { MmapOptions::new().offset(at).len(len).map_mut(file)? };
        *window = Some(Window { start: at, map });
    }
    let Some(w) = window.as_mut() else {
        return Err(io::Error::other("journal window missing"));
    };
    let from = usize::try_from(at - w.start).map_err(io::Error::other)?;
    let dest = from
        .checked_add(batch.len())
        .and_then(|to| w.map.get_mut(from..to))
        .ok_or_else(|| io::Error::other("journal batch outside its window"))?;
    dest.copy_from_slice(batch);
    Ok(Mapped::Written)
}

/// Reserves (allocates) `len` bytes of `file` from `offset`, growing the file when they run
/// past its end. `Ok(false)`: this file system (or system) has no `fallocate`. On `ENOSPC`
/// part of the range may have been allocated (and the file grown): zeros past the records,
/// which read as the end of the log.
#[cfg(not(target_os = "linux"))]
fn reserve(_file: &File, _offset: u64, _len: u64) -> io::Result<bool> {
    Ok(false)
}

/// See the other `reserve`: `fallocate(2)` with mode 0.
#[cfg(target_os = "linux")]
fn reserve(file: &File, offset: u64, len: u64) -> io::Result<bool> {
    use std::os::fd::AsRawFd;
    let (Ok(offset), Ok(len)) = (libc::off_t::try_from(offset), libc::off_t::try_from(len)) else {
        return Err(io::Error::other("journal offset out of range"));
    };
    loop {
        // SAFETY: fallocate only reads its integer arguments; the descriptor is owned by
        // `file`, which outlives the call.
        let rc = unsafe { libc::fallocate(file.as_raw_fd(), 0, offset, len) };
        if rc == 0 {
            return Ok(true);
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EOPNOTSUPP) | Some(libc::ENOSYS) => return Ok(false),
            _ => return Err(err),
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::os::unix::fs::FileExt;

    #[test]
    fn batches_land_at_their_offsets_and_the_window_moves_on() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        file.write_all_at(b"HEAD", 0).unwrap();
        let mut window = None;
        let mut allocated = 4;
        assert_eq!(
            write_mapped(&mut window, &file, &mut allocated, 4, b"one").unwrap(),
            Mapped::Written
        );
        assert_eq!(allocated, 7 + WINDOW, "the space ahead is reserved");
        let first = window.as_ref().unwrap().start;
        write_mapped(&mut window, &file, &mut allocated, 7, b"two").unwrap();
        assert_eq!(window.as_ref().unwrap().start, first, "same window");
        // A batch running past the window maps the next one, from its own offset.
        let big = vec![7u8; WINDOW as usize];
        write_mapped(&mut window, &file, &mut allocated, 10, &big).unwrap();
        assert_eq!(window.as_ref().unwrap().start, 10);
        assert_eq!(allocated, 10 + 2 * WINDOW);
        // Another handle reads what was stored (one page cache), zeros after it.
        drop(window);
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes.len() as u64, allocated);
        assert_eq!(&bytes[..10], b"HEADonetwo");
        assert!(bytes[10..10 + WINDOW as usize].iter().all(|b| *b == 7));
        assert!(bytes[10 + WINDOW as usize..].iter().all(|b| *b == 0));
    }
}
