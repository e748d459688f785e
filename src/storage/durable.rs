//! Durability of an operation log: the published state (durable LSN, failure, closed), the
//! requests waiting for their record to become durable, and the flusher loop. Shared by the
//! file journal and the Redis log, so both wake each waiting request once, for its own LSN,
//! instead of waking every waiter on every flush, and both flush, gather, retry and close the
//! same way ([`run_flusher`]).

use super::idle::{Gather, LingerEnd};
use super::StorageError;
use crate::sync::lock;
use std::collections::BTreeMap;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{oneshot, watch};

/// How long a flusher waits before retrying a failed write.
pub const RETRY_INTERVAL: Duration = Duration::from_millis(200);

/// What an operation log has made durable, published after every flush attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DurableState {
    /// Every record with an LSN up to this one is durable.
    Ok(u64),
    /// The last flush failed; records after `durable` are buffered and being retried.
    Failed { durable: u64, error: String },
    /// The log is closed; records after `durable` will never be written by it.
    Closed { durable: u64 },
}

impl DurableState {
    /// The highest LSN known to be durable.
    pub fn durable_lsn(&self) -> u64 {
        match self {
            DurableState::Ok(lsn) => *lsn,
            DurableState::Failed { durable, .. } | DurableState::Closed { durable } => *durable,
        }
    }

    /// Whether the log is healthy (not failed, not closed).
    pub fn is_ok(&self) -> bool {
        matches!(self, DurableState::Ok(_))
    }
}

/// What a waiter is told: durable, or the error that stopped it.
type WaitOutcome = Result<(), String>;

/// Waiting requests, keyed by (LSN, registration number): one map entry per waiter.
#[derive(Default)]
struct Waiters {
    by_lsn: BTreeMap<(u64, u64), oneshot::Sender<WaitOutcome>>,
    registered: u64,
}

/// A log's durable state and the requests waiting on it.
pub(crate) struct Durability {
    /// "the journal", "the operation log": how errors name the closed log.
    what: &'static str,
    state: watch::Sender<DurableState>,
    /// Lock order: taken after `state`'s internal lock is released (publish first, then wake).
    waiters: Mutex<Waiters>,
}

impl Durability {
    pub(crate) fn new(what: &'static str, state: DurableState) -> Durability {
        let (state, _) = watch::channel(state);
        Durability {
            what,
            state,
            waiters: Mutex::new(Waiters::default()),
        }
    }

    fn closed(&self) -> String {
        format!("{} is closed", self.what)
    }

    /// The current state (a copy).
    pub(crate) fn state(&self) -> DurableState {
        self.state.borrow().clone()
    }

    pub(crate) fn durable_lsn(&self) -> u64 {
        self.state.borrow().durable_lsn()
    }

    /// `Ok` while the log can write; the last error (or "closed") otherwise.
    pub(crate) fn health(&self) -> Result<(), String> {
        match &*self.state.borrow() {
            DurableState::Ok(_) => Ok(()),
            DurableState::Failed { error, .. } => Err(error.clone()),
            DurableState::Closed { .. } => Err(self.closed()),
        }
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<DurableState> {
        self.state.subscribe()
    }

    /// Publishes `state`, then wakes the waiters it settles: those at or below an `Ok` LSN, or
    /// every waiter when the log failed or closed.
    pub(crate) fn publish(&self, state: DurableState) {
        self.state.send_replace(state.clone());
        let mut waiters = lock(&self.waiters);
        let settled = match &state {
            DurableState::Ok(durable) => {
                let later = waiters.by_lsn.split_off(&(durable + 1, 0));
                std::mem::replace(&mut waiters.by_lsn, later)
            }
            _ => std::mem::take(&mut waiters.by_lsn),
        };
        drop(waiters);
        let outcome = match state {
            DurableState::Ok(_) => Ok(()),
            DurableState::Failed { error, .. } => Err(error),
            DurableState::Closed { .. } => Err(self.closed()),
        };
        for tx in settled.into_values() {
            let _ = tx.send(outcome.clone());
        }
    }

    /// Waits until every record up to `lsn` is durable. Fails with
    /// [`StorageError::JournalFailed`] when the log is failing or closed before that: the
    /// request must not be acknowledged.
    pub(crate) async fn wait(&self, lsn: u64) -> Result<(), StorageError> {
        let rx = {
            // Registered under the waiters lock, after reading the published state: `publish`
            // sets the state first and wakes waiters second, so no wake-up is missed.
            let mut waiters = lock(&self.waiters);
            match &*self.state.borrow() {
                s if s.durable_lsn() >= lsn => return Ok(()),
                DurableState::Failed { error, .. } => {
                    return Err(StorageError::JournalFailed(error.clone()))
                }
                DurableState::Closed { .. } => {
                    return Err(StorageError::JournalFailed(self.closed()))
                }
                DurableState::Ok(_) => {}
            }
            let (tx, rx) = oneshot::channel();
            waiters.registered += 1;
            let key = (lsn, waiters.registered);
            waiters.by_lsn.insert(key, tx);
            rx
        };
        match rx.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(StorageError::JournalFailed(error)),
            Err(_) => Err(StorageError::JournalFailed(self.closed())),
        }
    }

    #[cfg(test)]
    pub(crate) fn waiting(&self) -> usize {
        lock(&self.waiters).by_lsn.len()
    }
}

/// The flusher's part of a log's buffer state, under the log's buffer lock.
#[derive(Debug, Default)]
pub(crate) struct FlushState {
    /// The last write failed; retry [`RETRY_INTERVAL`] after `last_failure`.
    pub(crate) failing: bool,
    pub(crate) last_failure: Option<Instant>,
    /// Close was asked: write what is buffered, then stop.
    pub(crate) shutdown: bool,
    /// The flusher is waiting on the condvar (appends need to signal it only then: a notify
    /// is a syscall even when nobody waits).
    pub(crate) flusher_idle: bool,
}

/// A log's buffer of appended, unwritten records, as its flusher sees it.
pub(crate) trait Buffer {
    fn flush_state(&mut self) -> &mut FlushState;
    /// Records buffered.
    fn buffered(&self) -> usize;
    /// Whether there is anything to write (records, or other work such as a trim).
    fn has_work(&self) -> bool;
}

/// One operation log as [`run_flusher`] drives it: the file journal or the Redis stream.
pub(crate) trait Flusher {
    type Pending: Buffer;
    /// The buffer and the condvar appends signal.
    fn buffer(&self) -> (&Mutex<Self::Pending>, &Condvar);
    fn gather(&self) -> &Gather;
    /// Writes one batch of what is buffered and publishes the outcome (a failed batch stays
    /// buffered and the failure is recorded in the [`FlushState`]). `true` when it landed.
    fn write(&mut self) -> bool;
    /// A group commit was closed by [`super::idle::MAX_LINGER`].
    fn linger_timed_out(&self) {}
    /// Publishes [`DurableState::Closed`], reporting records that could not be written.
    fn closed(&mut self);
}

/// Why the flusher woke.
struct Work {
    shutdown: bool,
    /// Gather more records before writing (not when closing, nor when retrying a failure).
    gather: bool,
}

/// Sleeps until there is work that is due (a failed batch: [`RETRY_INTERVAL`] after the
/// failure) or close was asked.
fn wait_for_work<P: Buffer>(pending: &Mutex<P>, wake: &Condvar) -> Work {
    let mut p = lock(pending);
    loop {
        if p.flush_state().shutdown {
            break;
        }
        if p.has_work() {
            let st = p.flush_state();
            let wait = match (st.failing, st.last_failure) {
                (true, Some(at)) => RETRY_INTERVAL.saturating_sub(at.elapsed()),
                _ => Duration::ZERO,
            };
            if wait.is_zero() {
                break;
            }
            st.flusher_idle = true;
            p = wake
                .wait_timeout(p, wait)
                .map(|(g, _)| g)
                .unwrap_or_else(|e| e.into_inner().0);
            p.flush_state().flusher_idle = false;
            continue;
        }
        p.flush_state().flusher_idle = true;
        p = wake.wait(p).unwrap_or_else(|e| e.into_inner());
        p.flush_state().flusher_idle = false;
    }
    let buffered = p.buffered();
    let st = p.flush_state();
    Work {
        shutdown: st.shutdown,
        gather: !st.shutdown && !st.failing && buffered > 0,
    }
}

/// The flusher thread's loop: sleeps until records are buffered, lets a group commit gather
/// while the runtime's workers are all busy ([`Gather`]), writes, retries a failed write every
/// [`RETRY_INTERVAL`], and on close writes what is left (until a write fails) and publishes
/// the log closed.
pub(crate) fn run_flusher(log: &mut impl Flusher) {
    loop {
        let work = {
            let (pending, wake) = log.buffer();
            wait_for_work(pending, wake)
        };
        if work.gather {
            let end = log.gather().wait(|| {
                let (pending, _) = log.buffer();
                let mut p = lock(pending);
                (p.buffered(), p.flush_state().shutdown)
            });
            if end == LingerEnd::TimedOut {
                log.linger_timed_out();
            }
        }
        let landed = log.write();
        if work.shutdown {
            // Whatever is still buffered goes in further batches, while writes succeed.
            let mut landed = landed;
            while landed && lock(log.buffer().0).has_work() {
                landed = log.write();
            }
            log.closed();
            return;
        }
    }
}
