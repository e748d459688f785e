//! What every `$management` operation shares: the parsed [`Request`], the success and failure
//! responses, and the common argument readers (paging, sequence numbers, session locks,
//! message lists).

use super::{lock_key, SessionLocks};
use crate::amqp::convert::{
    elements, encode_message, encode_response, int_of, map_get, string_map, text_of, uuid_value,
    AmqpMessage, ConvertError, Encoding,
};
use crate::amqp::errors::WireError;
use crate::amqp::symbols as sym;
use crate::broker::message::Message;
use crate::broker::op::{QueuePath, SessionRef};
use crate::service::ServiceBusBackend;
use futures::future::BoxFuture;
use serde_amqp::Value as AV;
use serde_bytes::ByteBuf;

/// One management request, parsed: the node it was made on and its amqp-value body.
pub(super) struct Request<'a> {
    pub backend: &'a ServiceBusBackend,
    /// The node's entity path as the link named it.
    pub entity_path: &'a str,
    /// The same path, parsed.
    pub path: QueuePath,
    /// The request body (an amqp-value map; `Null` when the body was something else).
    pub body: AV,
    /// The body's `session-id`, when given.
    pub session_id: Option<String>,
    pub locks: &'a SessionLocks,
    /// The transaction the request transfer carried, if any (see [`super::txn`]).
    pub txn: Option<u64>,
}

/// A handler's answer: a status (200, or 204 for an empty listing) and the response body.
pub(super) type OpResult = Result<(i32, AV), WireError>;

/// What a table entry runs: one operation on one request.
pub(super) type Handler = for<'r> fn(&'r Request<'r>) -> BoxFuture<'r, OpResult>;

impl Request<'_> {
    /// The body field `key`.
    pub fn get(&self, key: &str) -> Option<&AV> {
        map_get(&self.body, key)
    }

    /// The body field `key` as text.
    pub fn text(&self, key: &str) -> Option<String> {
        self.get(key).and_then(text_of)
    }

    /// The elements of the list/array body field `key` (none when absent).
    pub fn list(&self, key: &str) -> Vec<AV> {
        elements(self.get(key).unwrap_or(&AV::Null))
    }

    /// The `skip` and `top` of a paged listing (top defaults to 100, at most 1,000).
    pub fn page(&self) -> (usize, usize) {
        let skip = self.get("skip").and_then(int_of).unwrap_or(0).max(0) as usize;
        let top = self
            .get("top")
            .and_then(int_of)
            .unwrap_or(100)
            .clamp(0, 1000) as usize;
        (skip, top)
    }

    /// The body's `sequence-numbers`.
    pub fn sequence_numbers(&self) -> Result<Vec<u64>, WireError> {
        self.list("sequence-numbers")
            .iter()
            .map(|v| {
                int_of(v)
                    .filter(|n| *n >= 0)
                    .map(|n| n as u64)
                    .ok_or_else(|| WireError::bad_request("invalid sequence number"))
            })
            .collect()
    }

    /// The lock this connection's session receiver holds on the body's `session-id`.
    pub fn session_ref(&self) -> Result<SessionRef, WireError> {
        let id = self
            .session_id
            .clone()
            .ok_or_else(|| WireError::bad_request("session-id is required"))?;
        let main = QueuePath {
            dead_letter: false,
            ..self.path.clone()
        };
        let token = self
            .locks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&lock_key(&main, &id))
            .copied();
        match token {
            Some(token) => Ok(SessionRef { id, token }),
            None => Err(WireError::new(
                sym::SESSION_LOCK_LOST,
                format!("The session lock has expired on the session '{id}'."),
                410,
            )),
        }
    }
}

/// A 200 answer with `body`.
pub(super) fn ok(body: AV) -> OpResult {
    Ok((200, body))
}

/// A 200 answer with an empty map body.
pub(super) fn ok_empty() -> OpResult {
    ok(string_map(vec![]))
}

/// The 204 answer of a listing with nothing in it.
pub(super) fn no_content() -> OpResult {
    Ok((204, AV::Null))
}

/// A `messages` answer (204 when none): each message encoded as `how`, with its lock token
/// when `with_locks`.
pub(super) fn messages_response(msgs: &[Message], how: Encoding, with_locks: bool) -> OpResult {
    if msgs.is_empty() {
        return no_content();
    }
    let mut list = Vec::new();
    for m in msgs {
        let bytes = encode_message(m, how).map_err(|e| WireError::internal(e.to_string()))?;
        let mut entry = vec![("message", AV::Binary(ByteBuf::from(bytes)))];
        if with_locks {
            if let Some(l) = m.lock {
                entry.push(("lock-token", uuid_value(l.token)));
            }
        }
        list.push(string_map(entry));
    }
    ok(string_map(vec![("messages", AV::List(list))]))
}

/// The response to `request`: status and description, or [`refuse`] on failure.
pub(super) fn response(request: &AmqpMessage, result: OpResult) -> Result<Vec<u8>, ConvertError> {
    match result {
        Ok((status, body)) => encode_response(
            request.message_id(),
            vec![
                (sym::STATUS_CODE, AV::Int(status)),
                (
                    sym::STATUS_DESCRIPTION,
                    AV::String(if status == 204 { "No Content" } else { "OK" }.into()),
                ),
            ],
            body,
        ),
        Err(e) => refuse(request, &e),
    }
}

/// The failure response to `request`: status, description and error condition, no body.
pub fn refuse(request: &AmqpMessage, e: &WireError) -> Result<Vec<u8>, ConvertError> {
    encode_response(
        request.message_id(),
        vec![
            (sym::STATUS_CODE, AV::Int(e.status)),
            (sym::STATUS_DESCRIPTION, AV::String(e.description.clone())),
            (
                sym::ERROR_CONDITION,
                AV::Symbol(e.condition.as_str().into()),
            ),
        ],
        AV::Null,
    )
}
