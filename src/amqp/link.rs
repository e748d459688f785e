//! The broker side of links: what a delivery outcome means to the broker, the cancellable
//! receive behind a receiver link's credit, session acceptance, and giving messages back.
//!
//! Kept apart from the frame state machine in [`super::connection`] because these are the
//! only places a link waits on the broker, and the rules for waiting safely live here: a
//! cancel may interrupt a *wait*, never a *take*, so locked or deleted messages are always
//! handed to the connection (which delivers or releases them).

use super::convert;
use super::errors::{wire_error, WireError};
use super::symbols as sym;
use crate::broker::message::Message;
use crate::broker::op::{QueuePath, ReceiveMode, SessionRef, SessionSelect, Settlement};
use crate::service::{ServiceBusBackend, Wait};
use crate::time::Millis;
use fe2o3_amqp_types::messaging::{DeliveryState, Modified, Rejected};
use futures::TryFutureExt;
use serde_amqp::Value as AV;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Safety re-check interval of an idle long-poll (the broker's wake-ups make it rarely needed).
const FETCH_RECHECK: Duration = Duration::from_secs(5);

/// Re-check interval of a session receiver waiting for a session to accept.
const SESSION_RECHECK: Duration = Duration::from_secs(1);

/// The broker settlement a delivery state asks for.
pub fn settlement_of(state: &DeliveryState) -> Option<Settlement> {
    match state {
        DeliveryState::Accepted(_) => Some(Settlement::Complete),
        DeliveryState::Released(_) => Some(Settlement::Release),
        DeliveryState::Modified(Modified {
            undeliverable_here,
            message_annotations,
            ..
        }) => {
            let properties = message_annotations
                .as_ref()
                .map(|f| {
                    let entries: Vec<(AV, AV)> = f
                        .iter()
                        .map(|(k, v)| (AV::Symbol(k.clone()), v.clone()))
                        .collect();
                    convert::properties_from_entries(&entries)
                })
                .unwrap_or_default();
            if *undeliverable_here == Some(true) {
                Some(Settlement::Defer { properties })
            } else {
                Some(Settlement::Abandon { properties })
            }
        }
        DeliveryState::Rejected(Rejected { error }) => {
            let (mut reason, mut description) = (None, None);
            if let Some(e) = error {
                description = e.description.clone();
                if let Some(info) = &e.info {
                    for (k, v) in info.iter() {
                        match k.0.as_str() {
                            sym::DEAD_LETTER_REASON => reason = convert::text_of(v),
                            sym::DEAD_LETTER_ERROR_DESCRIPTION => description = convert::text_of(v),
                            _ => {}
                        }
                    }
                }
            }
            Some(Settlement::DeadLetter {
                reason,
                description,
                properties: Default::default(),
            })
        }
        _ => None,
    }
}

/// Takes up to `max` messages for a receiver link. Waits (cancellably) for messages unless
/// `immediate`; the take itself is never interrupted, so a cancel cannot lose locked or
/// deleted messages.
pub async fn fetch(
    backend: ServiceBusBackend,
    path: QueuePath,
    mode: ReceiveMode,
    session: Option<SessionRef>,
    max: u32,
    immediate: bool,
    cancel: CancellationToken,
) -> Result<Vec<Message>, WireError> {
    let wait = Wait {
        deadline: immediate.then(Instant::now),
        recheck: Some(FETCH_RECHECK),
        cancel: &cancel,
    };
    let found = backend
        .wait_for(&path, wait, || async {
            let msgs = backend
                .receive(&path, mode, max, session.clone())
                .await
                .map_err(|e| wire_error(&e))?;
            Ok((!msgs.is_empty()).then_some(msgs))
        })
        .await?;
    Ok(found.unwrap_or_default())
}

/// Locks a session for a session receiver: the one named, or the next with messages (waiting
/// up to `wait` for one, as the service does before answering `com.microsoft:timeout`).
pub async fn accept_session(
    backend: ServiceBusBackend,
    path: QueuePath,
    select: SessionSelect,
    wait: Duration,
    cancel: CancellationToken,
) -> Result<(String, uuid::Uuid, Millis), WireError> {
    let wait = Wait {
        deadline: Some(Instant::now() + wait),
        recheck: Some(SESSION_RECHECK),
        cancel: &cancel,
    };
    let accepted = backend
        .wait_for(&path, wait, || {
            backend
                .accept_session(&path, select.clone())
                .map_err(|e| wire_error(&e))
        })
        .await?;
    match accepted {
        Some(a) => Ok((a.session_id, a.token, a.locked_until)),
        None => Err(WireError::new(
            sym::TIMEOUT,
            "No session is available to accept within the operation timeout.",
            408,
        )),
    }
}

/// Gives back messages a link fetched but never delivered.
pub async fn release(
    backend: &ServiceBusBackend,
    path: &QueuePath,
    mode: ReceiveMode,
    msgs: Vec<Message>,
) {
    if mode == ReceiveMode::ReceiveAndDelete && !msgs.is_empty() {
        tracing::warn!(
            "{} received-and-deleted message(s) could not be delivered before the link closed",
            msgs.len()
        );
        return;
    }
    for m in msgs {
        if let Some(lock) = m.lock {
            let _ = backend.settle(path, lock.token, Settlement::Release).await;
        }
    }
}
