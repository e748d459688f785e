//! When to close a group commit: the async runtime's idleness, as seen by its worker threads.
//!
//! A log flusher that writes and fsyncs as soon as one record is buffered keeps batches small
//! when the disk is fast: on a machine whose cores are busy serving requests, each flush then
//! costs a write, an `fdatasync`, the I/O submission and a round of wake-ups for only a few
//! records. Waiting a fixed time to gather more would add that time to every request on an idle
//! server. Instead a flusher waits ([`linger`]) only while every runtime worker is busy: the
//! moment one worker has nothing left to run (it is about to park), no request on that core is
//! about to append, so waiting longer gains nothing and the flush starts. A busy server thus
//! commits large batches, and an idle one commits at once, as before.
//!
//! The signal comes from the runtime's park/unpark hooks, installed by [`install`] (the binary's
//! runtime does this; see `crate::runtime`). Without a hooked runtime in the process, [`linger`]
//! returns at once and flushes behave as plain "flush whenever something is buffered".

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// The longest a flusher waits for an idle worker before flushing anyway: bounds the latency
/// group commit may add when the runtime never idles.
pub const MAX_LINGER: Duration = Duration::from_millis(1);

/// A group commit is closed once it holds this many records, even while the runtime's workers
/// are all busy: larger batches save little more, and waiting longer would leave requests idle.
pub const GROUP_COMMIT_RECORDS: usize = 32;

/// A runtime with the hooks exists in this process.
static HOOKED: AtomicBool = AtomicBool::new(false);
/// Hooked worker threads parked (idle) right now.
static PARKED: AtomicUsize = AtomicUsize::new(0);
/// Flushers inside [`linger`]; parking workers only take the lock when this is non-zero.
static LINGERING: AtomicUsize = AtomicUsize::new(0);
static GATE: Mutex<()> = Mutex::new(());
static IDLE: Condvar = Condvar::new();

/// Adds the park/unpark hooks to a runtime builder, so flushers in this process gather batches
/// while its workers are busy.
pub fn install(builder: &mut tokio::runtime::Builder) -> &mut tokio::runtime::Builder {
    HOOKED.store(true, Ordering::SeqCst);
    builder.on_thread_park(on_park).on_thread_unpark(on_unpark)
}

fn on_park() {
    PARKED.fetch_add(1, Ordering::SeqCst);
    if LINGERING.load(Ordering::SeqCst) > 0 {
        let _gate = GATE.lock().unwrap_or_else(|e| e.into_inner());
        IDLE.notify_all();
    }
}

fn on_unpark() {
    // Saturating: a runtime built before `install` ran never incremented.
    let _ = PARKED.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
}

/// Ends every [`linger`] wait early so its flusher re-checks `enough` (the batch filled up, or
/// the log is closing).
pub fn nudge() {
    if LINGERING.load(Ordering::SeqCst) > 0 {
        let _gate = GATE.lock().unwrap_or_else(|e| e.into_inner());
        IDLE.notify_all();
    }
}

/// One log flusher's group commit: the flusher gathers ([`Gather::wait`]) and its appends
/// report the batch size ([`Gather::appended`]), so filling the batch ends the wait early.
/// Shared by the file journal and the Redis log.
#[derive(Debug, Default)]
pub struct Gather {
    waiting: AtomicBool,
}

impl Gather {
    /// Called after an append with the number of records now buffered.
    pub fn appended(&self, buffered: usize) {
        // `wait` sets the flag before its first look at the batch: either it sees this record,
        // or this sees the flag.
        if buffered == GROUP_COMMIT_RECORDS && self.waiting.load(Ordering::SeqCst) {
            nudge();
        }
    }

    /// Waits while every worker is busy, until [`GROUP_COMMIT_RECORDS`] are buffered, the log
    /// is `closing`, or [`MAX_LINGER`] passes. `state` returns (records buffered, closing).
    pub fn wait(&self, state: impl Fn() -> (usize, bool)) -> LingerEnd {
        self.waiting.store(true, Ordering::SeqCst);
        let end = linger(MAX_LINGER, || {
            let (buffered, closing) = state();
            closing || buffered >= GROUP_COMMIT_RECORDS
        });
        self.waiting.store(false, Ordering::SeqCst);
        end
    }
}

/// Why a [`linger`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LingerEnd {
    /// No hooked runtime in this process, or a worker was already idle: no wait at all.
    NoWait,
    /// A worker went idle.
    Idle,
    /// `enough` said so (the batch is full, or the log is closing).
    Enough,
    /// `max` passed with every worker busy.
    TimedOut,
}

/// Blocks the calling (flusher) thread until a hooked runtime worker is idle, `enough()` holds,
/// or `max` has passed, whichever comes first. Returns at once when no hooked runtime exists or
/// a worker is already idle.
pub fn linger(max: Duration, enough: impl Fn() -> bool) -> LingerEnd {
    if max.is_zero() || !HOOKED.load(Ordering::SeqCst) || PARKED.load(Ordering::SeqCst) > 0 {
        return LingerEnd::NoWait;
    }
    let deadline = Instant::now() + max;
    let mut gate = GATE.lock().unwrap_or_else(|e| e.into_inner());
    // Announced before the check below, and `on_park` counts before it reads LINGERING: one of
    // the two always sees the other, so a worker parking now is never missed.
    LINGERING.fetch_add(1, Ordering::SeqCst);
    let end = loop {
        if PARKED.load(Ordering::SeqCst) > 0 {
            break LingerEnd::Idle;
        }
        if enough() {
            break LingerEnd::Enough;
        }
        let now = Instant::now();
        if now >= deadline {
            break LingerEnd::TimedOut;
        }
        gate = IDLE
            .wait_timeout(gate, deadline - now)
            .map(|(g, _)| g)
            .unwrap_or_else(|e| e.into_inner().0);
    };
    LINGERING.fetch_sub(1, Ordering::SeqCst);
    end
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Library users on their own runtime (and every unit test here) never install the hooks:
    /// a flusher must then never wait. (The hooked behaviour is tested in
    /// `tests/group_commit.rs`, its own process, because the signal is process-wide.)
    #[test]
    fn without_a_hooked_runtime_linger_never_waits() {
        assert!(!HOOKED.load(Ordering::SeqCst));
        assert_eq!(
            linger(Duration::from_secs(3600), || false),
            LingerEnd::NoWait
        );
    }
}
