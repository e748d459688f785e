//! Typed operations: each wraps [`ServiceBusBackend::execute`] (or a read) and returns what the
//! operation produces, so wire layers do not unpack the generic [`Outcome`] themselves.
//!
//! The broker answers each operation with one outcome shape (`Send` → `Sent`, `Receive*` →
//! `Received`, `RenewLock`/`RenewSessionLock` → `LockRenewed`, `AcceptSession` →
//! `SessionAccepted` or `Done` when no session is available); the fallbacks below are what
//! the wire layers did for any other shape, kept so moving them over changes nothing.

use super::{ServiceBusBackend, ServiceError};
use crate::broker::entity::Rule;
use crate::broker::message::{Message, NewMessage};
use crate::broker::op::{Op, QueuePath, ReceiveMode, SessionRef, SessionSelect, Settlement};
use crate::broker::Outcome;
use crate::time::Millis;

/// A session lock just taken by [`ServiceBusBackend::accept_session`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcceptedSession {
    pub session_id: String,
    pub token: uuid::Uuid,
    pub locked_until: Millis,
}

impl ServiceBusBackend {
    /// Sends messages to a queue or topic (`entity` is its path); returns the sequence numbers
    /// stored, in order (duplicates dropped by detection have none). Scheduled messages
    /// (`scheduled_enqueue_time` set) are sent the same way: their numbers cancel them.
    pub async fn send(
        &self,
        entity: impl Into<String>,
        messages: Vec<NewMessage>,
    ) -> Result<Vec<u64>, ServiceError> {
        let out = self
            .execute(Op::Send {
                entity: entity.into(),
                messages,
            })
            .await?;
        Ok(match out {
            Outcome::Sent { sequence_numbers } => sequence_numbers,
            _ => Vec::new(),
        })
    }

    /// Receives up to `max` available messages now (none is not an error; waiting for them is
    /// [`Self::receive_wait`]'s or [`Self::wait_for`]'s).
    pub async fn receive(
        &self,
        from: &QueuePath,
        mode: ReceiveMode,
        max: u32,
        session: Option<SessionRef>,
    ) -> Result<Vec<Message>, ServiceError> {
        let lock_tokens = lock_tokens(mode, max as usize);
        let out = self
            .execute(Op::Receive {
                from: from.clone(),
                mode,
                max,
                lock_tokens,
                session,
            })
            .await?;
        Ok(received(out))
    }

    /// Reserves the next `count` sequence numbers of a queue or topic without storing anything
    /// (a transaction's `schedule-message` answers with them; see `Op::ReserveSequenceNumbers`).
    pub async fn reserve_sequence_numbers(
        &self,
        entity: impl Into<String>,
        count: u32,
    ) -> Result<Vec<u64>, ServiceError> {
        let out = self
            .execute(Op::ReserveSequenceNumbers {
                entity: entity.into(),
                count,
            })
            .await?;
        Ok(match out {
            Outcome::Sent { sequence_numbers } => sequence_numbers,
            _ => Vec::new(),
        })
    }

    /// Cancels scheduled messages by sequence number.
    pub async fn cancel_scheduled(
        &self,
        entity: impl Into<String>,
        sequence_numbers: Vec<u64>,
    ) -> Result<(), ServiceError> {
        self.execute(Op::CancelScheduled {
            entity: entity.into(),
            sequence_numbers,
        })
        .await
        .map(drop)
    }

    /// Settles a locked message (complete, abandon, defer, dead-letter, release).
    pub async fn settle(
        &self,
        from: &QueuePath,
        lock_token: uuid::Uuid,
        settlement: Settlement,
    ) -> Result<(), ServiceError> {
        self.execute(Op::Settle {
            from: from.clone(),
            lock_token,
            settlement,
        })
        .await
        .map(drop)
    }

    /// Renews a message lock; returns the new expiry.
    pub async fn renew_lock(
        &self,
        from: &QueuePath,
        lock_token: uuid::Uuid,
    ) -> Result<Millis, ServiceError> {
        let out = self
            .execute(Op::RenewLock {
                from: from.clone(),
                lock_token,
            })
            .await?;
        Ok(self.locked_until(out))
    }

    /// Renews a session lock (and the locks of the session's locked messages); returns the
    /// new expiry.
    pub async fn renew_session_lock(
        &self,
        from: &QueuePath,
        session: SessionRef,
    ) -> Result<Millis, ServiceError> {
        let out = self
            .execute(Op::RenewSessionLock {
                from: from.clone(),
                session,
            })
            .await?;
        Ok(self.locked_until(out))
    }

    /// Tries once to lock a session (the one named, or the next available); `None` when no
    /// session can be accepted now. Waiting for one is the caller's (see [`Self::notifier`]).
    pub async fn accept_session(
        &self,
        from: &QueuePath,
        select: SessionSelect,
    ) -> Result<Option<AcceptedSession>, ServiceError> {
        let token = uuid::Uuid::new_v4();
        let out = self
            .execute(Op::AcceptSession {
                from: from.clone(),
                select,
                token,
            })
            .await?;
        Ok(match out {
            Outcome::SessionAccepted {
                session_id,
                locked_until,
            } => Some(AcceptedSession {
                session_id,
                token,
                locked_until,
            }),
            _ => None,
        })
    }

    /// Releases a session lock.
    pub async fn release_session(
        &self,
        from: &QueuePath,
        session: SessionRef,
    ) -> Result<(), ServiceError> {
        self.execute(Op::ReleaseSession {
            from: from.clone(),
            session,
        })
        .await
        .map(drop)
    }

    /// Sets (or clears, with `None`) a session's state.
    pub async fn set_session_state(
        &self,
        from: &QueuePath,
        session: SessionRef,
        state: Option<Vec<u8>>,
    ) -> Result<(), ServiceError> {
        self.execute(Op::SetSessionState {
            from: from.clone(),
            session,
            state,
        })
        .await
        .map(drop)
    }

    /// Receives deferred messages by sequence number.
    pub async fn receive_deferred(
        &self,
        from: &QueuePath,
        sequence_numbers: Vec<u64>,
        mode: ReceiveMode,
    ) -> Result<Vec<Message>, ServiceError> {
        let lock_tokens = lock_tokens(mode, sequence_numbers.len());
        let out = self
            .execute(Op::ReceiveDeferred {
                from: from.clone(),
                sequence_numbers,
                mode,
                lock_tokens,
            })
            .await?;
        Ok(received(out))
    }

    /// Peeks up to `max` messages from sequence number `from_seq` on (of one session when
    /// `session_id` is set), without locking.
    pub fn peek(
        &self,
        path: &QueuePath,
        session_id: Option<&str>,
        from_seq: u64,
        max: usize,
    ) -> Result<Vec<Message>, ServiceError> {
        self.read(|b| match session_id {
            Some(s) => b.peek_session(path, s, from_seq, max),
            None => b.peek(path, from_seq, max),
        })
        .map_err(ServiceError::from)
    }

    /// A session's state (`None` when it has none).
    pub fn session_state(
        &self,
        path: &QueuePath,
        session_id: &str,
    ) -> Result<Option<Vec<u8>>, ServiceError> {
        self.read(|b| b.session_state(path, session_id))
            .map_err(ServiceError::from)
    }

    /// The ids of a queue's or subscription's sessions that hold messages or state.
    pub fn list_sessions(&self, path: &QueuePath) -> Result<Vec<String>, ServiceError> {
        self.read(|b| b.list_sessions(path))
            .map_err(ServiceError::from)
    }

    /// Adds a rule to a subscription.
    pub async fn create_rule(
        &self,
        topic: String,
        subscription: String,
        rule: Rule,
    ) -> Result<(), ServiceError> {
        self.execute(Op::CreateRule {
            topic,
            subscription,
            rule,
        })
        .await
        .map(drop)
    }

    /// Removes a subscription's rule by name.
    pub async fn delete_rule(
        &self,
        topic: String,
        subscription: String,
        name: String,
    ) -> Result<(), ServiceError> {
        self.execute(Op::DeleteRule {
            topic,
            subscription,
            name,
        })
        .await
        .map(drop)
    }

    /// A subscription's rules, ordered by name.
    pub fn rules(&self, topic: &str, subscription: &str) -> Result<Vec<Rule>, ServiceError> {
        self.read(|b| b.rules(topic, subscription))
            .map_err(ServiceError::from)
    }

    fn locked_until(&self, out: Outcome) -> Millis {
        match out {
            Outcome::LockRenewed { locked_until } => locked_until,
            _ => self.now(),
        }
    }
}

/// The messages of a receive's outcome.
fn received(out: Outcome) -> Vec<Message> {
    match out {
        Outcome::Received(m) => m,
        _ => Vec::new(),
    }
}

/// Fresh lock tokens for up to `n` messages received in `mode`: none for receive-and-delete
/// (nothing is locked, and the journal record stays small).
fn lock_tokens(mode: ReceiveMode, n: usize) -> Vec<uuid::Uuid> {
    match mode {
        ReceiveMode::PeekLock => (0..n).map(|_| uuid::Uuid::new_v4()).collect(),
        ReceiveMode::ReceiveAndDelete => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::entity::EntityProps;
    use crate::broker::error::BrokerError;

    fn msg(id: &str, session: Option<&str>) -> NewMessage {
        NewMessage {
            message_id: id.into(),
            body: id.as_bytes().to_vec(),
            session_id: session.map(str::to_string),
            ..NewMessage::default()
        }
    }

    async fn queue(b: &ServiceBusBackend, name: &str, sessions: bool) -> QueuePath {
        b.execute(Op::CreateQueue {
            name: name.into(),
            props: EntityProps {
                requires_session: sessions,
                ..EntityProps::default()
            },
        })
        .await
        .unwrap();
        QueuePath::queue(name)
    }

    /// Send → sequence numbers; peek; receive → lock; renew → a later expiry; defer and
    /// receive by sequence number; settle; cancel a scheduled message.
    #[tokio::test]
    async fn typed_message_operations() {
        let b = ServiceBusBackend::new(None);
        let q = queue(&b, "q", false).await;
        let seqs = b
            .send("q", vec![msg("a", None), msg("b", None)])
            .await
            .unwrap();
        assert_eq!(seqs.len(), 2);
        assert!(seqs[0] < seqs[1]);
        let peeked = b.peek(&q, None, 0, 10).unwrap();
        assert_eq!(peeked.len(), 2);
        let got = b
            .receive_wait(
                q.clone(),
                ReceiveMode::PeekLock,
                1,
                None,
                Default::default(),
            )
            .await
            .unwrap();
        let lock = got[0].lock.unwrap();
        let until = b.renew_lock(&q, lock.token).await.unwrap();
        assert!(until >= lock.locked_until);
        b.settle(
            &q,
            lock.token,
            Settlement::Defer {
                properties: Default::default(),
            },
        )
        .await
        .unwrap();
        let deferred = b
            .receive_deferred(&q, vec![got[0].sequence_number], ReceiveMode::PeekLock)
            .await
            .unwrap();
        assert_eq!(deferred.len(), 1);
        let token = deferred[0].lock.as_ref().unwrap().token;
        b.settle(&q, token, Settlement::Complete).await.unwrap();
        let err = b.renew_lock(&q, token).await.unwrap_err();
        assert!(
            matches!(err, ServiceError::Broker(BrokerError::MessageLockLost)),
            "{err}"
        );
        let mut later = msg("s", None);
        later.scheduled_enqueue_time = Some(b.now() + 3_600_000);
        let s = b.send("q", vec![later]).await.unwrap();
        b.cancel_scheduled("q", s).await.unwrap();
        assert_eq!(b.peek(&q, None, 0, 10).unwrap().len(), 1);
    }

    /// Accept a session (none available → `None`), renew it, set and read its state, release.
    #[tokio::test]
    async fn typed_session_operations() {
        let b = ServiceBusBackend::new(None);
        let q = queue(&b, "sq", true).await;
        assert_eq!(
            b.accept_session(&q, SessionSelect::Next).await.unwrap(),
            None
        );
        b.send("sq", vec![msg("m", Some("s1"))]).await.unwrap();
        let acc = b
            .accept_session(&q, SessionSelect::Next)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(acc.session_id, "s1");
        let sref = SessionRef {
            id: acc.session_id.clone(),
            token: acc.token,
        };
        assert!(b.renew_session_lock(&q, sref.clone()).await.unwrap() >= acc.locked_until);
        b.set_session_state(&q, sref.clone(), Some(b"st".to_vec()))
            .await
            .unwrap();
        assert_eq!(b.session_state(&q, "s1").unwrap(), Some(b"st".to_vec()));
        assert_eq!(b.peek(&q, Some("s1"), 0, 10).unwrap().len(), 1);
        assert_eq!(b.list_sessions(&q).unwrap(), vec!["s1".to_string()]);
        b.release_session(&q, sref).await.unwrap();
        assert!(b
            .accept_session(&q, SessionSelect::Id("s1".into()))
            .await
            .unwrap()
            .is_some());
    }

    /// Add a rule, list the subscription's rules (ordered by name), remove it.
    #[tokio::test]
    async fn typed_rule_operations() {
        let b = ServiceBusBackend::new(None);
        b.execute(Op::CreateTopic {
            name: "t".into(),
            props: EntityProps::default(),
        })
        .await
        .unwrap();
        b.execute(Op::CreateSubscription {
            topic: "t".into(),
            name: "s".into(),
            props: EntityProps::default(),
            rule: None,
        })
        .await
        .unwrap();
        let mut rule = Rule::default_rule(b.now());
        rule.name = "extra".into();
        b.create_rule("t".into(), "s".into(), rule).await.unwrap();
        let names = |b: &ServiceBusBackend| -> Vec<String> {
            b.rules("t", "s")
                .unwrap()
                .into_iter()
                .map(|r| r.name)
                .collect()
        };
        assert_eq!(names(&b), vec!["$Default", "extra"]);
        b.delete_rule("t".into(), "s".into(), "extra".into())
            .await
            .unwrap();
        assert_eq!(names(&b), vec!["$Default"]);
    }

    /// A long-poll receive counts as parked while it waits, and stops counting when it ends.
    #[tokio::test]
    async fn parked_receives_counts_waiting_receives() {
        let b = ServiceBusBackend::new(None);
        let q = queue(&b, "pq", false).await;
        assert_eq!(b.parked_receives(), 0);
        let waiting = tokio::spawn({
            let b = b.clone();
            async move {
                b.receive_wait(
                    q,
                    ReceiveMode::ReceiveAndDelete,
                    1,
                    None,
                    std::time::Duration::from_secs(30),
                )
                .await
            }
        });
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while b.parked_receives() == 0 {
            assert!(std::time::Instant::now() < deadline, "receive never parked");
            tokio::task::yield_now().await;
        }
        b.send("pq", vec![msg("x", None)]).await.unwrap();
        assert_eq!(waiting.await.unwrap().unwrap().len(), 1);
        assert_eq!(b.parked_receives(), 0);
        let guard = b.park();
        assert_eq!(b.parked_receives(), 1);
        drop(guard);
        assert_eq!(b.parked_receives(), 0);
    }
}
