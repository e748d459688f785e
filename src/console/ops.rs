//! The console's actions, each built from the service's typed operations (so every state
//! change is journaled like a client's): nothing here touches broker state directly.
//!
//! - Delete one message: lock it by sequence number, then complete it (a scheduled one is
//!   cancelled instead).
//! - Resubmit a dead-lettered message: lock it in the dead-letter queue, send a copy (without
//!   the dead-letter reason and description) to the queue or topic, then complete it — what
//!   Service Bus Explorer's "resubmit" does.
//! - Purge: receive-and-delete until empty (per session on session entities), take the
//!   deferred messages by sequence number, cancel the scheduled ones.
//!
//! Peek ("Message browsing", learn.microsoft.com/azure/service-bus-messaging/message-browsing)
//! shows active, deferred and scheduled messages and takes no lock. Dead-lettered messages keep
//! `DeadLetterReason` and `DeadLetterErrorDescription` as application properties
//! (learn.microsoft.com/azure/service-bus-messaging/service-bus-dead-letter-queues); a resubmitted
//! copy drops them.
//!
//! Locking one message by sequence number: deferred messages are received by number; an
//! active one is reached by a peek-lock receive of the messages ahead of it, which are then
//! released (`Settlement::Release` gives back the delivery count), as Azure has no
//! receive-by-number for active messages.

use crate::broker::error::BrokerError;
use crate::broker::message::{Message, MessageState, NewMessage};
use crate::broker::op::{QueuePath, ReceiveMode, SessionRef, SessionSelect, Settlement};
use crate::service::{ServiceBusBackend, ServiceError};
use http::StatusCode;

/// Why a console action was refused.
#[derive(Debug)]
pub enum ConsoleError {
    Service(ServiceError),
    Status(StatusCode, String),
}

impl ConsoleError {
    pub fn bad(detail: impl Into<String>) -> Self {
        ConsoleError::Status(StatusCode::BAD_REQUEST, detail.into())
    }
    fn conflict(detail: impl Into<String>) -> Self {
        ConsoleError::Status(StatusCode::CONFLICT, detail.into())
    }
}

impl From<ServiceError> for ConsoleError {
    fn from(e: ServiceError) -> Self {
        ConsoleError::Service(e)
    }
}

impl From<BrokerError> for ConsoleError {
    fn from(e: BrokerError) -> Self {
        ConsoleError::Service(e.into())
    }
}

/// `queue` or `topic/Subscriptions/sub` (the word case-insensitive) as a receivable path.
pub fn parse_path(p: &str, dlq: bool) -> Result<QueuePath, ConsoleError> {
    let segs: Vec<&str> = p.split('/').filter(|s| !s.is_empty()).collect();
    let path = match segs
        .iter()
        .position(|s| s.eq_ignore_ascii_case("subscriptions"))
    {
        Some(i) if i > 0 && i + 2 == segs.len() => {
            QueuePath::subscription(&segs[..i].join("/"), segs[i + 1])
        }
        Some(_) => return Err(ConsoleError::bad(format!("'{p}' is not an entity path."))),
        None if !segs.is_empty() => QueuePath::queue(&segs.join("/")),
        None => return Err(ConsoleError::bad("The entity path is empty.")),
    };
    Ok(if dlq { path.dlq() } else { path })
}

/// A message locked by [`lock_one`], and the session lock taken to reach it.
struct Locked {
    message: Message,
    token: uuid::Uuid,
    session: Option<SessionRef>,
}

/// The message with this sequence number, if stored at `path`.
fn find(b: &ServiceBusBackend, path: &QueuePath, seq: u64) -> Result<Message, ConsoleError> {
    b.peek(path, None, seq, 1)?
        .into_iter()
        .find(|m| m.sequence_number == seq)
        .ok_or_else(|| ConsoleError::Service(BrokerError::MessageNotFound(seq).into()))
}

/// Whether receives on `path` go by session (the main queue of a session entity).
fn session_mode(b: &ServiceBusBackend, path: &QueuePath) -> Result<bool, ConsoleError> {
    let props = b.read(|br| br.receivable_props(path))?;
    Ok(props.requires_session && !path.dead_letter)
}

/// Peek-locks the message `seq` (active or deferred; `Ok(None)` for a scheduled one).
async fn lock_one(
    b: &ServiceBusBackend,
    path: &QueuePath,
    seq: u64,
) -> Result<Option<Locked>, ConsoleError> {
    let m = find(b, path, seq)?;
    let now = b.now();
    if m.is_locked_at(now) {
        return Err(ConsoleError::conflict(format!(
            "Message {seq} is locked by a receiver; try again when its lock expires."
        )));
    }
    match m.state {
        MessageState::Scheduled => return Ok(None),
        MessageState::Deferred => {
            let got = b
                .receive_deferred(path, vec![seq], ReceiveMode::PeekLock)
                .await?;
            return got
                .into_iter()
                .find_map(|m| {
                    let token = m.lock?.token;
                    Some(Locked {
                        message: m,
                        token,
                        session: None,
                    })
                })
                .map(Some)
                .ok_or_else(|| ConsoleError::conflict(format!("Message {seq} was taken.")));
        }
        MessageState::Active => {}
    }
    let session = if session_mode(b, path)? {
        let sid = m.content.session_id().unwrap_or_default().to_string();
        let acc = b
            .accept_session(path, SessionSelect::Id(sid.clone()))
            .await?
            .ok_or_else(|| {
                ConsoleError::conflict(format!("Session '{sid}' is locked by a receiver."))
            })?;
        Some(SessionRef {
            id: acc.session_id,
            token: acc.token,
        })
    } else {
        None
    };
    let result = lock_active(b, path, seq, session.as_ref()).await;
    match result {
        Ok((message, token)) => Ok(Some(Locked {
            message,
            token,
            session,
        })),
        Err(e) => {
            if let Some(s) = session {
                b.release_session(path, s).await?;
            }
            Err(e)
        }
    }
}

/// Peek-locks the available messages up to `seq` and releases all but `seq`.
async fn lock_active(
    b: &ServiceBusBackend,
    path: &QueuePath,
    seq: u64,
    session: Option<&SessionRef>,
) -> Result<(Message, uuid::Uuid), ConsoleError> {
    let now = b.now();
    let ahead = b
        .peek(path, session.map(|s| s.id.as_str()), 0, usize::MAX)?
        .iter()
        .take_while(|m| m.sequence_number < seq)
        .filter(|m| m.state == MessageState::Active && !m.is_locked_at(now))
        .count();
    let max = u32::try_from(ahead + 1).unwrap_or(u32::MAX);
    let got = b
        .receive(path, ReceiveMode::PeekLock, max, session.cloned())
        .await?;
    let mut target = None;
    for m in got {
        let Some(lock) = m.lock else { continue };
        if m.sequence_number == seq {
            target = Some((m, lock.token));
        } else {
            b.settle(path, lock.token, Settlement::Release).await?;
        }
    }
    target.ok_or_else(|| ConsoleError::conflict(format!("Message {seq} was taken meanwhile.")))
}

/// Settles a message [`lock_one`] locked and gives back its session lock.
async fn settle_locked(
    b: &ServiceBusBackend,
    path: &QueuePath,
    locked: Locked,
    settlement: Settlement,
) -> Result<(), ConsoleError> {
    let settled = b.settle(path, locked.token, settlement).await;
    if let Some(s) = locked.session {
        b.release_session(path, s).await?;
    }
    Ok(settled?)
}

/// Deletes one message (active, deferred or scheduled) by sequence number.
pub async fn delete_message(
    b: &ServiceBusBackend,
    path: &QueuePath,
    seq: u64,
) -> Result<(), ConsoleError> {
    match lock_one(b, path, seq).await? {
        Some(locked) => settle_locked(b, path, locked, Settlement::Complete).await,
        None if path.subscription.is_none() && !path.dead_letter => {
            Ok(b.cancel_scheduled(path.entity.clone(), vec![seq]).await?)
        }
        None => Err(ConsoleError::conflict(
            "A scheduled message of a subscription is cancelled on its topic \
             (cancelling it there cancels every subscription's copy).",
        )),
    }
}

/// What [`resubmit`] did.
#[derive(Debug, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Resubmitted {
    /// Sequence numbers (in the dead-letter queue) resubmitted.
    pub resubmitted: Vec<u64>,
    /// The queue or topic the copies were sent to.
    pub to: String,
}

/// The copy sent back: the original without the dead-letter reason and description.
fn resubmit_copy(m: &Message) -> NewMessage {
    let mut c = m.content.to_new_message();
    for k in ["DeadLetterReason", "DeadLetterErrorDescription"] {
        c.properties.remove(k);
    }
    c.scheduled_enqueue_time = None;
    c
}

/// Resubmits dead-lettered messages of `dlq` (a dead-letter path) to their queue, or to the
/// topic of their subscription: the listed ones, or all when `seqs` is `None`.
pub async fn resubmit(
    b: &ServiceBusBackend,
    dlq: &QueuePath,
    seqs: Option<Vec<u64>>,
) -> Result<Resubmitted, ConsoleError> {
    let mut done = Resubmitted {
        to: dlq.entity.clone(),
        ..Default::default()
    };
    let Some(seqs) = seqs else {
        return resubmit_all(b, dlq, done).await;
    };
    for seq in seqs {
        let Some(locked) = lock_one(b, dlq, seq).await? else {
            continue;
        };
        let copy = resubmit_copy(&locked.message);
        if let Err(e) = b.send(dlq.entity.clone(), vec![copy]).await {
            settle_locked(b, dlq, locked, Settlement::Release).await?;
            return Err(e.into());
        }
        settle_locked(b, dlq, locked, Settlement::Complete).await?;
        done.resubmitted.push(seq);
    }
    Ok(done)
}

/// Resubmits every dead-lettered message no receiver holds, in batches of peek-locked
/// messages from the head (linear in the queue's length); stops after as many messages as the
/// queue held at the start.
async fn resubmit_all(
    b: &ServiceBusBackend,
    dlq: &QueuePath,
    mut done: Resubmitted,
) -> Result<Resubmitted, ConsoleError> {
    let initial = b.peek(dlq, None, 0, usize::MAX)?.len();
    while done.resubmitted.len() < initial {
        let max = (initial - done.resubmitted.len()).min(100) as u32;
        let batch: Vec<(Message, uuid::Uuid)> = b
            .receive(dlq, ReceiveMode::PeekLock, max, None)
            .await?
            .into_iter()
            .filter_map(|m| m.lock.map(|l| (m, l.token)))
            .collect();
        if batch.is_empty() {
            break;
        }
        let mut failed = None;
        for (m, token) in batch {
            if failed.is_some() {
                b.settle(dlq, token, Settlement::Release).await?;
                continue;
            }
            match b.send(dlq.entity.clone(), vec![resubmit_copy(&m)]).await {
                Ok(_) => {
                    b.settle(dlq, token, Settlement::Complete).await?;
                    done.resubmitted.push(m.sequence_number);
                }
                Err(e) => {
                    b.settle(dlq, token, Settlement::Release).await?;
                    failed = Some(e);
                }
            }
        }
        if let Some(e) = failed {
            return Err(e.into());
        }
    }
    Ok(done)
}

/// What [`purge`] did.
#[derive(Debug, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Purged {
    pub removed: u64,
    /// Messages left: locked by a receiver, or scheduled in a subscription.
    pub remaining: u64,
}

/// Receives and deletes until nothing is available (within `session` when set).
async fn drain(
    b: &ServiceBusBackend,
    path: &QueuePath,
    session: Option<SessionRef>,
) -> Result<u64, ConsoleError> {
    let mut n = 0;
    loop {
        let got = b
            .receive(path, ReceiveMode::ReceiveAndDelete, 500, session.clone())
            .await?
            .len() as u64;
        if got == 0 {
            return Ok(n);
        }
        n += got;
    }
}

/// Deletes every message of `path` that no receiver holds.
pub async fn purge(b: &ServiceBusBackend, path: &QueuePath) -> Result<Purged, ConsoleError> {
    let mut removed = 0;
    if session_mode(b, path)? {
        for sid in b.read(|br| br.list_sessions(path))? {
            if let Some(acc) = b.accept_session(path, SessionSelect::Id(sid)).await? {
                let sref = SessionRef {
                    id: acc.session_id,
                    token: acc.token,
                };
                let n = drain(b, path, Some(sref.clone())).await;
                b.release_session(path, sref).await?;
                removed += n?;
            }
        }
    } else {
        removed += drain(b, path, None).await?;
    }
    let now = b.now();
    let rest = b.peek(path, None, 0, usize::MAX)?;
    let pick = |state: MessageState| -> Vec<u64> {
        rest.iter()
            .filter(|m| m.state == state && !m.is_locked_at(now))
            .map(|m| m.sequence_number)
            .collect()
    };
    let deferred = pick(MessageState::Deferred);
    if !deferred.is_empty() {
        removed += b
            .receive_deferred(path, deferred, ReceiveMode::ReceiveAndDelete)
            .await?
            .len() as u64;
    }
    let scheduled = pick(MessageState::Scheduled);
    if !scheduled.is_empty() && path.subscription.is_none() && !path.dead_letter {
        removed += scheduled.len() as u64;
        b.cancel_scheduled(path.entity.clone(), scheduled).await?;
    }
    let remaining = b.peek(path, None, 0, usize::MAX)?.len() as u64;
    Ok(Purged { removed, remaining })
}
