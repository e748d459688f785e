//! The one "arm the notification, try, wait on deadline or cancel" loop behind every receive
//! that waits for messages or sessions: HTTP long-poll receives, AMQP receiver links with
//! credit, and session receivers waiting for a session to accept.
//!
//! The notification is armed *before* each try, so a message that arrives between a try that
//! found nothing and the wait still wakes it. A cancel ends only the *wait*, never a try in
//! progress: whatever a try took (locked or deleted messages, a session lock) is always handed
//! to the caller.

use super::{ServiceBusBackend, ServiceError};
use crate::broker::message::Message;
use crate::broker::op::{QueuePath, ReceiveMode, SessionRef};
use crate::sync::lock;
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How long a [`ServiceBusBackend::wait_for`] may wait, and what ends it early.
pub struct Wait<'a> {
    /// No further try after this instant (`None`: wait until cancelled). A deadline already
    /// passed means "try once".
    pub deadline: Option<Instant>,
    /// Try again after this long even without a notification (a safety re-check; `None`:
    /// only a notification or the deadline wakes the wait).
    pub recheck: Option<Duration>,
    /// Ends the wait at once (no further try): a drained link, a shutdown.
    pub cancel: &'a CancellationToken,
}

impl ServiceBusBackend {
    /// Receives up to `max` messages, waiting up to `timeout` for one to arrive (woken by
    /// arrival, not by polling; shutdown's drain ends the wait with no message).
    pub async fn receive_wait(
        &self,
        from: QueuePath,
        mode: ReceiveMode,
        max: u32,
        session: Option<SessionRef>,
        timeout: Duration,
    ) -> Result<Vec<Message>, ServiceError> {
        let wait = Wait {
            deadline: Some(Instant::now() + timeout),
            recheck: None,
            cancel: &self.inner.draining,
        };
        let found = self
            .wait_for(&from, wait, || async {
                let msgs = self.receive(&from, mode, max, session.clone()).await?;
                Ok::<_, ServiceError>((!msgs.is_empty()).then_some(msgs))
            })
            .await?;
        Ok(found.unwrap_or_default())
    }

    /// Starts shutdown for waiting receivers: parked long-polls answer "no message" now.
    pub fn begin_drain(&self) {
        self.inner.draining.cancel();
    }

    /// The notification fired when `path` gains available messages (what [`Self::wait_for`]
    /// waits on).
    pub fn notifier(&self, path: &QueuePath) -> Arc<Notify> {
        let key = crate::broker::messaging::wake_key_of(path);
        let mut w = lock(&self.inner.waiters);
        w.entry(key)
            .or_insert_with(|| Arc::new(Notify::new()))
            .clone()
    }

    /// How many receives are parked right now waiting for a message or a session (every
    /// [`Self::wait_for`] while it waits, and any other holder of a [`Self::park`] guard).
    /// Tests wait for this instead of sleeping before they send.
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

    /// Runs `attempt` until it yields something, trying again each time `path` gains available
    /// messages (or the re-check interval passes), until the deadline passes or `cancel` fires;
    /// `Ok(None)` then. The caller counts as parked ([`Self::parked_receives`]) only while it
    /// waits, not while it tries.
    pub async fn wait_for<T, E, F, Fut>(
        &self,
        path: &QueuePath,
        wait: Wait<'_>,
        mut attempt: F,
    ) -> Result<Option<T>, E>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<Option<T>, E>>,
    {
        let notify = self.notifier(path);
        loop {
            let notified = notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(found) = attempt().await? {
                return Ok(Some(found));
            }
            let now = Instant::now();
            if wait.deadline.is_some_and(|d| now >= d) || wait.cancel.is_cancelled() {
                return Ok(None);
            }
            let wake_at = match (wait.deadline, wait.recheck) {
                (Some(d), Some(r)) => Some(d.min(now + r)),
                (Some(d), None) => Some(d),
                (None, Some(r)) => Some(now + r),
                (None, None) => None,
            };
            let _parked = self.park();
            let sleep = async {
                match wake_at {
                    Some(t) => tokio::time::sleep_until(t).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = wait.cancel.cancelled() => return Ok(None),
                _ = &mut notified => {}
                _ = sleep => {}
            }
        }
    }
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
