//! Durability of an operation log: the published state (durable LSN, failure, closed) and the
//! requests waiting for their record to become durable. Shared by the file journal and the
//! Redis log, so both wake each waiting request once, for its own LSN, instead of waking every
//! waiter on every flush.

use super::StorageError;
use crate::sync::lock;
use std::collections::BTreeMap;
use std::sync::Mutex;
use tokio::sync::{oneshot, watch};

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
