//! The request path: apply an operation, journal it, wait until it is durable; wake the
//! receivers waiting for messages (see [`super::wait`]).

use super::{ServiceBusBackend, ServiceError};
use crate::broker::op::{Op, OpRecord};
use crate::broker::Outcome;
use crate::storage::StorageError;
use crate::sync::lock;
use std::sync::atomic::Ordering;

impl ServiceBusBackend {
    /// Applies an operation now and answers once it is durable.
    pub async fn execute(&self, op: Op) -> Result<Outcome, ServiceError> {
        if self.inner.closing.load(Ordering::SeqCst) {
            return Err(ServiceError::ShuttingDown);
        }
        let started = std::time::Instant::now();
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
        let (outcome, lsn, due, rec) = {
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
            // Only a change can move the earliest deadline.
            let due = if applied.changed { b.next_due() } else { None };
            drop(b);
            self.wake(wake);
            // Live operations only: recovery replays through `Broker::apply` and drops them.
            crate::metrics::global().broker_events(&applied.events);
            (applied.result, lsn, due, rec)
        };
        // The timer sleeps until `timer_due` (or is about to re-read the state): woken only
        // for something earlier. A later or unchanged deadline is already covered.
        if due.is_some_and(|d| d < self.inner.timer_due.load(Ordering::SeqCst)) {
            self.inner.timer_wake.notify_one();
        }
        if let (Some(lsn), Some(j)) = (lsn, journal) {
            let appended = std::time::Instant::now();
            if let Err(e) = j.wait_durable(lsn).await {
                self.set_status(|s| s.journal_error = Some(e.to_string()));
                return Err(e.into());
            }
            crate::metrics::global().journal_durable(lsn, appended.elapsed());
        }
        let outcome = outcome?;
        crate::metrics::global().applied(&rec.op, &outcome, rec.at, started.elapsed());
        log_entity_change(&rec.op);
        Ok(outcome)
    }

    /// Wakes the waiters of each path (a path may repeat).
    fn wake(&self, keys: Vec<std::sync::Arc<str>>) {
        if keys.is_empty() {
            return;
        }
        let waiters = lock(&self.inner.waiters);
        for k in keys {
            if let Some(n) = waiters.get(&*k) {
                n.notify_waiters();
            }
        }
    }
}

/// One INFO line per entity created, updated or deleted, naming the caller (plane and peer,
/// from [`crate::logging::caller`]; entities from the entity file at start name no peer).
fn log_entity_change(op: &Op) {
    let (action, kind, name) = match op {
        Op::CreateQueue { name, .. } => ("created", "queue", name.clone()),
        Op::UpdateQueue { name, .. } => ("updated", "queue", name.clone()),
        Op::DeleteQueue { name } => ("deleted", "queue", name.clone()),
        Op::CreateTopic { name, .. } => ("created", "topic", name.clone()),
        Op::UpdateTopic { name, .. } => ("updated", "topic", name.clone()),
        Op::DeleteTopic { name } => ("deleted", "topic", name.clone()),
        Op::CreateSubscription { topic, name, .. } => (
            "created",
            "subscription",
            format!("{topic}/Subscriptions/{name}"),
        ),
        Op::UpdateSubscription { topic, name, .. } => (
            "updated",
            "subscription",
            format!("{topic}/Subscriptions/{name}"),
        ),
        Op::DeleteSubscription { topic, name } => (
            "deleted",
            "subscription",
            format!("{topic}/Subscriptions/{name}"),
        ),
        _ => return,
    };
    let caller = crate::logging::caller();
    tracing::info!(
        plane = caller.plane,
        peer = caller.peer_text(),
        entity = %name,
        "{action} {kind} {name} ({})",
        caller
    );
}
