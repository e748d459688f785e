//! The request path: apply an operation, journal it, wait until it is durable; wake and park
//! receivers waiting for messages.

use super::{ServiceBusBackend, ServiceError};
use crate::broker::message::Message;
use crate::broker::op::{Op, OpRecord, QueuePath, ReceiveMode, SessionRef};
use crate::broker::Outcome;
use crate::storage::StorageError;
use crate::sync::lock;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

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
        let (outcome, lsn, changed, rec) = {
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
            drop(b);
            self.wake(wake);
            (applied.result, lsn, applied.changed, rec)
        };
        // Only a change can move the earliest deadline, so only a change wakes the timer.
        if changed {
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

    fn wake(&self, keys: std::collections::BTreeSet<String>) {
        if keys.is_empty() {
            return;
        }
        let waiters = lock(&self.inner.waiters);
        for k in keys {
            if let Some(n) = waiters.get(&k) {
                n.notify_waiters();
            }
        }
    }

    fn waiter(&self, path: &QueuePath) -> Arc<Notify> {
        let key = crate::broker::messaging::wake_key_of(path);
        let mut w = lock(&self.inner.waiters);
        w.entry(key)
            .or_insert_with(|| Arc::new(Notify::new()))
            .clone()
    }

    /// Starts shutdown for waiting receivers: parked long-polls answer "no message" now.
    pub fn begin_drain(&self) {
        self.inner.draining.cancel();
    }

    /// The notification fired when `path` gains available messages. Wire layers that must stay
    /// cancellable while waiting (an AMQP receiver link that can be drained at any moment) wait
    /// on this and then take messages with a zero-timeout [`Self::receive_wait`], so a cancel
    /// never lands between "messages locked" and "messages handed over".
    pub fn notifier(&self, path: &QueuePath) -> Arc<Notify> {
        self.waiter(path)
    }

    /// Receives up to `max` messages, waiting up to `timeout` for one to arrive (woken by
    /// arrival, not by polling).
    pub async fn receive_wait(
        &self,
        from: QueuePath,
        mode: ReceiveMode,
        max: u32,
        session: Option<SessionRef>,
        timeout: Duration,
    ) -> Result<Vec<Message>, ServiceError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let notify = self.waiter(&from);
        loop {
            let notified = notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let tokens = (0..max).map(|_| uuid::Uuid::new_v4()).collect();
            let out = self
                .execute(Op::Receive {
                    from: from.clone(),
                    mode,
                    max,
                    lock_tokens: tokens,
                    session: session.clone(),
                })
                .await?;
            if let Outcome::Received(msgs) = out {
                if !msgs.is_empty() {
                    return Ok(msgs);
                }
            }
            if tokio::time::Instant::now() >= deadline || self.inner.draining.is_cancelled() {
                return Ok(Vec::new());
            }
            let _parked = self.park();
            tokio::select! {
                _ = &mut notified => {}
                _ = tokio::time::sleep_until(deadline) => {}
                _ = self.inner.draining.cancelled() => {}
            }
        }
    }

    /// How many receives are parked right now waiting for a message: HTTP long-poll receives
    /// here, and every wire-layer wait that holds a [`Self::park`] guard (an AMQP receiver
    /// link with credit). Tests wait for this instead of sleeping before they send.
    pub fn parked_receives(&self) -> usize {
        self.inner.parked.load(Ordering::SeqCst)
    }

    /// Counts the caller as a parked receive until the returned guard drops. Hold it only
    /// across the wait for a notification, not across the take.
    pub fn park(&self) -> Parked {
        self.inner.parked.fetch_add(1, Ordering::SeqCst);
        Parked {
            inner: self.inner.clone(),
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

/// A receive counted in [`ServiceBusBackend::parked_receives`]; dropping it (the wait ended,
/// or the waiting future was cancelled) uncounts it.
#[must_use = "the receive counts as parked only while the guard is held"]
pub struct Parked {
    inner: Arc<super::Inner>,
}

impl Drop for Parked {
    fn drop(&mut self) {
        self.inner.parked.fetch_sub(1, Ordering::SeqCst);
    }
}
