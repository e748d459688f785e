//! Sending, fan-out, forwarding, receiving, settling, sessions and timers: the broker's
//! messaging operations, one file per family ([`send`], [`timers`], [`receive`],
//! [`sessions`]).
//!
//! Semantics follow Azure Service Bus:
//! - sequence numbers increase per queue/topic from 1; subscription copies keep the topic's
//!   (a second copy in one subscription, from a rule action, takes the next topic number);
//! - DeliveryCount counts deliveries: the first receive sees 1; an abandon or lock expiry at
//!   DeliveryCount ≥ MaxDeliveryCount dead-letters with `MaxDeliveryCountExceeded`;
//! - TTL is min(message, entity default); an expired message is dropped, or dead-lettered with
//!   `TTLExpiredException` when DeadLetteringOnMessageExpiration is set; locked messages do not
//!   expire until their lock is released; dead-lettered messages never expire;
//! - rules without actions are OR-ed into one copy; each matching rule with an action makes its
//!   own copy carrying a `RuleName` property;
//! - a rule whose filter or action fails to evaluate (e.g. `a / 0 = 1`) delivers nothing; when
//!   the subscription has DeadLetteringOnFilterEvaluationExceptions (the default), one copy goes
//!   to its dead-letter queue with reason `FilterEvaluationException` and the error as
//!   description, otherwise the failure is ignored. Other rules still deliver as usual;
//! - ForwardTo moves a message on arrival (up to 4 hops); ForwardDeadLetteredMessagesTo moves
//!   dead-lettered messages.

use super::deadlines::EntityId;
use super::error::BrokerError;
use super::message::{Content, Lock, Message, MessageState, NewMessage};
use super::op::{QueuePath, ReceiveMode, SessionRef, SessionSelect, Settlement};
use super::store::MessageStore;
use super::value::Value;
use super::{Broker, Outcome, Receivable, Session};
use crate::broker::entities::{queue_key, topic_key};
use crate::broker::entity::EntityProps;
use crate::constants::MAX_FORWARD_HOPS;
use crate::names;
use crate::time::{Millis, MAX_MILLIS};
use std::collections::BTreeMap;
use std::sync::Arc;
use uuid::Uuid;

/// Dead-letter reason for too many deliveries.
pub const REASON_MAX_DELIVERY: &str = "MaxDeliveryCountExceeded";
/// Dead-letter reason for expiry.
pub const REASON_TTL: &str = "TTLExpiredException";
/// Dead-letter reason for a subscription rule whose filter or action failed to evaluate
/// (DeadLetteringOnFilterEvaluationExceptions).
pub const REASON_FILTER: &str = "FilterEvaluationException";
/// Application property names the service sets on dead-lettered messages.
pub const PROP_DL_REASON: &str = "DeadLetterReason";
pub const PROP_DL_DESCRIPTION: &str = "DeadLetterErrorDescription";

/// The key long-pollers of a path wait on.
pub fn wake_key_of(path: &QueuePath) -> String {
    path.display().to_ascii_lowercase()
}

/// Builds a stored message from what a sender gave.
pub(in crate::broker) fn materialize(
    content: &Arc<Content>,
    seq: u64,
    props: &EntityProps,
    now: Millis,
) -> Message {
    let ttl = match content.time_to_live() {
        Some(t) if t.0 > 0 => t.min(props.default_message_time_to_live),
        _ => props.default_message_time_to_live,
    };
    let scheduled = matches!(content.scheduled_enqueue_time(), Some(t) if t > now);
    let enqueued = if scheduled {
        content.scheduled_enqueue_time().unwrap_or(now)
    } else {
        now
    };
    Message {
        sequence_number: seq,
        content: Arc::clone(content),
        enqueued_time: enqueued,
        expires_at: ttl.after(enqueued),
        ttl,
        delivery_count: 0,
        state: if scheduled {
            MessageState::Scheduled
        } else {
            MessageState::Active
        },
        lock: None,
        dead_letter_source: None,
        enqueued_sequence_number: seq,
    }
}

pub(in crate::broker) fn merge_props(m: &mut Message, props: &BTreeMap<String, Value>) {
    if props.is_empty() {
        return;
    }
    m.edit_content(|c| {
        for (k, v) in props {
            c.properties.insert(k.clone(), v.clone());
        }
    });
}
mod receive;
mod send;
mod sessions;
mod timers;

pub(in crate::broker) fn due(r: &Receivable, now: Millis) -> bool {
    r.main.next_due().is_some_and(|t| t <= now)
        || r.dlq.next_due().is_some_and(|t| t <= now)
        || r.sessions
            .values()
            .any(|s| s.lock.is_some_and(|l| l.locked_until <= now))
}

pub(in crate::broker) fn check_session_lock(
    rcv: &Receivable,
    sref: &SessionRef,
    now: Millis,
) -> Result<(), BrokerError> {
    match rcv.sessions.get(&sref.id).and_then(|s| s.lock) {
        Some(l) if l.token == sref.token && l.locked_until > now => Ok(()),
        _ => Err(BrokerError::SessionLockLost(sref.id.clone())),
    }
}

pub(in crate::broker) fn rcv_session_until(
    sessions: &BTreeMap<String, Session>,
    sref: &SessionRef,
) -> Option<Millis> {
    sessions
        .get(&sref.id)
        .and_then(|s| s.lock)
        .map(|l| l.locked_until)
}

/// A deterministic lock token when the caller supplied too few (replay stays exact).
pub(in crate::broker) fn derive_token(seq: u64, now: Millis) -> Uuid {
    Uuid::from_u64_pair(seq, now as u64)
}
