//! Message operations of `$management`: peek, renew-lock, schedule, cancel-scheduled,
//! update-disposition (settle by lock token) and receive-by-sequence-number (deferred
//! messages).

use super::request::{messages_response, ok, ok_empty, OpResult, Request};
use crate::amqp::convert::{
    array, decode_message, int_of, map_get, properties_from_entries, string_map, text_of, uuid_of,
    Encoding,
};
use crate::amqp::errors::{wire_error, WireError};
use crate::broker::op::{Op, ReceiveMode, Settlement};
use futures::future::BoxFuture;
use serde_amqp::primitives::Timestamp;
use serde_amqp::Value as AV;

/// `com.microsoft:peek-message`: from-sequence-number, message-count, session-id?
pub(super) fn peek<'r>(r: &'r Request<'r>) -> BoxFuture<'r, OpResult> {
    Box::pin(async move {
        let from = r
            .get("from-sequence-number")
            .and_then(int_of)
            .unwrap_or(1)
            .max(0) as u64;
        let max = r
            .get("message-count")
            .and_then(int_of)
            .unwrap_or(1)
            .clamp(0, 1000) as usize;
        let msgs = r
            .backend
            .peek(&r.path, r.session_id.as_deref(), from, max)
            .map_err(|e| wire_error(&e))?;
        messages_response(&msgs, Encoding::Peek, false)
    })
}

/// `com.microsoft:renew-lock`: lock-tokens → expirations.
pub(super) fn renew_lock<'r>(r: &'r Request<'r>) -> BoxFuture<'r, OpResult> {
    Box::pin(async move {
        let mut expirations = Vec::new();
        // In a transaction the renewal applies at once (see super::txn).
        r.join_txn()?;
        for t in r.list("lock-tokens") {
            let token = uuid_of(&t).ok_or_else(|| WireError::bad_request("invalid lock token"))?;
            let locked_until = r
                .backend
                .renew_lock(&r.path, token)
                .await
                .map_err(|e| wire_error(&e))?;
            expirations.push(AV::Timestamp(Timestamp::from_milliseconds(locked_until)));
        }
        ok(string_map(vec![("expirations", array(expirations))]))
    })
}

/// `com.microsoft:schedule-message`: messages [{message-id, message, session-id?}] →
/// sequence-numbers.
pub(super) fn schedule<'r>(r: &'r Request<'r>) -> BoxFuture<'r, OpResult> {
    Box::pin(async move {
        let mut messages = Vec::new();
        for entry in r.list("messages") {
            let bytes = match map_get(&entry, "message") {
                Some(AV::Binary(b)) => b.to_vec(),
                _ => {
                    return Err(WireError::bad_request(
                        "a scheduled message has no 'message'",
                    ))
                }
            };
            let decoded =
                decode_message(&bytes).map_err(|e| WireError::bad_request(e.to_string()))?;
            let mut m = decoded.to_new_message();
            if let Some(id) = map_get(&entry, "message-id").and_then(text_of) {
                m.message_id = id;
            }
            if let Some(s) = map_get(&entry, "session-id").and_then(text_of) {
                m.session_id = Some(s);
            }
            messages.push(m);
        }
        let seqs = match r.txn {
            // In a transaction: numbers now, messages at commit (see super::txn).
            Some(_) => r.schedule_in_txn(messages).await?,
            None => r
                .backend
                .send(r.entity_path.to_string(), messages)
                .await
                .map_err(|e| wire_error(&e))?,
        };
        ok(string_map(vec![(
            "sequence-numbers",
            array(seqs.into_iter().map(|s| AV::Long(s as i64)).collect()),
        )]))
    })
}

/// `com.microsoft:cancel-scheduled-message`: sequence-numbers.
pub(super) fn cancel_scheduled<'r>(r: &'r Request<'r>) -> BoxFuture<'r, OpResult> {
    Box::pin(async move {
        let seqs = r.sequence_numbers()?;
        // In a transaction: buffered until commit (see super::txn).
        r.apply_or_enlist(Op::CancelScheduled {
            entity: r.entity_path.to_string(),
            sequence_numbers: seqs,
        })
        .await?;
        ok_empty()
    })
}

/// `com.microsoft:update-disposition`: disposition-status, lock-tokens, deadletter-reason?,
/// deadletter-description?, properties-to-modify?
pub(super) fn update_disposition<'r>(r: &'r Request<'r>) -> BoxFuture<'r, OpResult> {
    Box::pin(async move {
        let status = r.text("disposition-status").unwrap_or_default();
        let properties = match r.get("properties-to-modify") {
            Some(AV::Map(m)) => {
                let entries: Vec<(AV, AV)> =
                    m.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
                properties_from_entries(&entries)
            }
            _ => Default::default(),
        };
        let settlement = match status.as_str() {
            "completed" => Settlement::Complete,
            "abandoned" => Settlement::Abandon { properties },
            "defered" | "deferred" => Settlement::Defer { properties },
            "suspended" => Settlement::DeadLetter {
                reason: r.text("deadletter-reason"),
                description: r.text("deadletter-description"),
                properties,
            },
            other => {
                return Err(WireError::bad_request(format!(
                    "unknown disposition '{other}'"
                )))
            }
        };
        let settles = r
            .list("lock-tokens")
            .iter()
            .map(|t| {
                let token =
                    uuid_of(t).ok_or_else(|| WireError::bad_request("invalid lock token"))?;
                Ok(Op::Settle {
                    from: r.path.clone(),
                    lock_token: token,
                    settlement: settlement.clone(),
                })
            })
            .collect::<Result<Vec<_>, WireError>>()?;
        // In a transaction: all of them checked first, then buffered until commit; the
        // messages stay locked (super::txn).
        r.check_in_txn(&settles)?;
        for op in settles {
            r.apply_or_enlist(op).await?;
        }
        ok_empty()
    })
}

/// `com.microsoft:receive-by-sequence-number`: sequence-numbers, receiver-settle-mode,
/// session-id? → messages with lock tokens.
pub(super) fn receive_by_sequence_number<'r>(r: &'r Request<'r>) -> BoxFuture<'r, OpResult> {
    Box::pin(async move {
        let seqs = r.sequence_numbers()?;
        let mode = match r.get("receiver-settle-mode").and_then(int_of) {
            Some(0) => ReceiveMode::ReceiveAndDelete,
            _ => ReceiveMode::PeekLock,
        };
        let msgs = r
            .backend
            .receive_deferred(&r.path, seqs, mode)
            .await
            .map_err(|e| wire_error(&e))?;
        messages_response(&msgs, Encoding::Delivery, mode == ReceiveMode::PeekLock)
    })
}
