//! Poisoned-mutex recovery, written once.

use std::sync::{Mutex, MutexGuard, PoisonError, TryLockError};

/// Locks `m`, taking the guard even when a previous holder panicked. Every lock in this crate
/// guards state that is only mutated after validation (the broker applies an operation after
/// checking it; the journal and backends write whole records), so the data behind a poisoned
/// lock is still the last consistent one and the server keeps serving instead of cascading
/// the panic into every later request.
pub fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Locks `m` if no one holds it (`None` when someone does), taking a poisoned guard as
/// [`lock`] does.
pub fn try_lock<T: ?Sized>(m: &Mutex<T>) -> Option<MutexGuard<'_, T>> {
    match m.try_lock() {
        Ok(g) => Some(g),
        Err(TryLockError::Poisoned(p)) => Some(p.into_inner()),
        Err(TryLockError::WouldBlock) => None,
    }
}
