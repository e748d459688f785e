//! The `$management` node of an entity: request/response operations.
//!
//! A request is a message on the link to `{entity}/$management` with application property
//! `operation` and an amqp-value map body; the response goes to the link whose source is the
//! same node, with `correlation-id` = request `message-id`, application properties
//! `statusCode` (int) / `statusDescription` / `errorCondition` (on failure), and an amqp-value
//! map body in the shape the SDKs parse (`azure/servicebus/_common/mgmt_handlers.py`):
//!
//! | operation | request body | response body |
//! | --- | --- | --- |
//! | `com.microsoft:peek-message` | from-sequence-number, message-count, session-id? | messages: [{message}] (204 when none) |
//! | `com.microsoft:renew-lock` | lock-tokens | expirations: [timestamp] |
//! | `com.microsoft:schedule-message` | messages: [{message-id, message, session-id?}] | sequence-numbers: [long] |
//! | `com.microsoft:cancel-scheduled-message` | sequence-numbers | — |
//! | `com.microsoft:update-disposition` | disposition-status, lock-tokens, deadletter-*, properties-to-modify | — |
//! | `com.microsoft:receive-by-sequence-number` | sequence-numbers, receiver-settle-mode, session-id? | messages: [{message, lock-token}] |
//! | `com.microsoft:renew-session-lock` | session-id | expiration: timestamp |
//! | `com.microsoft:get-session-state` | session-id | session-state: binary |
//! | `com.microsoft:set-session-state` | session-id, session-state | — |
//! | `com.microsoft:get-message-sessions` | skip, top | skip, sessions-ids (204 when none) |
//! | `com.microsoft:add-rule` (subscriptions) | rule-name, rule-description | — |
//! | `com.microsoft:remove-rule` (subscriptions) | rule-name | — |
//! | `com.microsoft:enumerate-rules` (subscriptions) | skip, top | rules: [{rule-description}] (204 when none) |
//!
//! The rule bodies and described types are in [`super::rules`].

use super::address::queue_path;
use super::convert::{
    array, decode_message, elements, encode_message, encode_response, int_of, map_get,
    properties_from_entries, string_map, text_of, uuid_of, uuid_value, AmqpBody, AmqpMessage,
    ConvertError, Encoding,
};
use super::errors::{wire_error, WireError};
use super::rules;
use crate::broker::message::Message;
use crate::broker::op::{Op, QueuePath, ReceiveMode, SessionRef, Settlement};
use crate::broker::Outcome;
use crate::service::ServiceBusBackend;
use serde_amqp::primitives::Timestamp;
use serde_amqp::Value as AV;
use serde_bytes::ByteBuf;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Session locks held by the session receivers of one connection, keyed by (lowercase entity
/// path, session id): management requests name only the session id, and the broker needs the
/// token the receiver accepted the session with.
pub type SessionLocks = Arc<Mutex<HashMap<(String, String), uuid::Uuid>>>;

/// The key of a session lock in [`SessionLocks`].
pub fn lock_key(path: &QueuePath, session_id: &str) -> (String, String) {
    (path.display().to_ascii_lowercase(), session_id.to_string())
}

type OpResult = Result<(i32, AV), WireError>;

fn bad_request(msg: impl Into<String>) -> WireError {
    WireError::new("com.microsoft:argument-error", msg, 400)
}

fn ok(body: AV) -> OpResult {
    Ok((200, body))
}

fn empty_map() -> AV {
    string_map(vec![])
}

/// Answers one management request made on the node of `entity_path`.
pub async fn respond(
    backend: &ServiceBusBackend,
    entity_path: &str,
    request: &AmqpMessage,
    locks: &SessionLocks,
) -> Result<Vec<u8>, ConvertError> {
    let operation = request
        .app_property("operation")
        .and_then(text_of)
        .unwrap_or_default();
    let body = match &request.body {
        AmqpBody::Value(v) => v.clone(),
        _ => AV::Null,
    };
    let result = match queue_path(entity_path) {
        Err(e) => Err(bad_request(e)),
        Ok(path) => dispatch(backend, entity_path, path, &operation, &body, locks).await,
    };
    match result {
        Ok((status, body)) => encode_response(
            request.message_id(),
            vec![
                ("statusCode", AV::Int(status)),
                (
                    "statusDescription",
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
            ("statusCode", AV::Int(e.status)),
            ("statusDescription", AV::String(e.description.clone())),
            ("errorCondition", AV::Symbol(e.condition.as_str().into())),
        ],
        AV::Null,
    )
}

async fn dispatch(
    backend: &ServiceBusBackend,
    entity_path: &str,
    path: QueuePath,
    operation: &str,
    body: &AV,
    locks: &SessionLocks,
) -> OpResult {
    let session_id = map_get(body, "session-id").and_then(text_of);
    match operation {
        "com.microsoft:peek-message" => {
            let from = map_get(body, "from-sequence-number")
                .and_then(int_of)
                .unwrap_or(1)
                .max(0) as u64;
            let max = map_get(body, "message-count")
                .and_then(int_of)
                .unwrap_or(1)
                .clamp(0, 1000) as usize;
            let msgs = backend
                .read(|b| match &session_id {
                    Some(s) => b.peek_session(&path, s, from, max),
                    None => b.peek(&path, from, max),
                })
                .map_err(|e| wire_error(&e.into()))?;
            messages_response(&msgs, Encoding::Peek, false)
        }
        "com.microsoft:renew-lock" => {
            let mut expirations = Vec::new();
            for t in elements(map_get(body, "lock-tokens").unwrap_or(&AV::Null)) {
                let token = uuid_of(&t).ok_or_else(|| bad_request("invalid lock token"))?;
                let out = backend
                    .execute(Op::RenewLock {
                        from: path.clone(),
                        lock_token: token,
                    })
                    .await
                    .map_err(|e| wire_error(&e))?;
                if let Outcome::LockRenewed { locked_until } = out {
                    expirations.push(AV::Timestamp(Timestamp::from_milliseconds(locked_until)));
                }
            }
            ok(string_map(vec![("expirations", array(expirations))]))
        }
        "com.microsoft:schedule-message" => {
            let mut messages = Vec::new();
            for entry in elements(map_get(body, "messages").unwrap_or(&AV::Null)) {
                let bytes = match map_get(&entry, "message") {
                    Some(AV::Binary(b)) => b.to_vec(),
                    _ => return Err(bad_request("a scheduled message has no 'message'")),
                };
                let decoded = decode_message(&bytes).map_err(|e| bad_request(e.to_string()))?;
                let mut m = decoded.to_new_message();
                if let Some(id) = map_get(&entry, "message-id").and_then(text_of) {
                    m.message_id = id;
                }
                if let Some(s) = map_get(&entry, "session-id").and_then(text_of) {
                    m.session_id = Some(s);
                }
                messages.push(m);
            }
            let out = backend
                .execute(Op::Send {
                    entity: entity_path.to_string(),
                    messages,
                })
                .await
                .map_err(|e| wire_error(&e))?;
            let seqs = match out {
                Outcome::Sent { sequence_numbers } => sequence_numbers,
                _ => Vec::new(),
            };
            ok(string_map(vec![(
                "sequence-numbers",
                array(seqs.into_iter().map(|s| AV::Long(s as i64)).collect()),
            )]))
        }
        "com.microsoft:cancel-scheduled-message" => {
            let seqs = sequence_numbers(body)?;
            backend
                .execute(Op::CancelScheduled {
                    entity: entity_path.to_string(),
                    sequence_numbers: seqs,
                })
                .await
                .map_err(|e| wire_error(&e))?;
            ok(empty_map())
        }
        "com.microsoft:update-disposition" => {
            let status = map_get(body, "disposition-status")
                .and_then(text_of)
                .unwrap_or_default();
            let properties = match map_get(body, "properties-to-modify") {
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
                    reason: map_get(body, "deadletter-reason").and_then(text_of),
                    description: map_get(body, "deadletter-description").and_then(text_of),
                    properties,
                },
                other => return Err(bad_request(format!("unknown disposition '{other}'"))),
            };
            for t in elements(map_get(body, "lock-tokens").unwrap_or(&AV::Null)) {
                let token = uuid_of(&t).ok_or_else(|| bad_request("invalid lock token"))?;
                backend
                    .execute(Op::Settle {
                        from: path.clone(),
                        lock_token: token,
                        settlement: settlement.clone(),
                    })
                    .await
                    .map_err(|e| wire_error(&e))?;
            }
            ok(empty_map())
        }
        "com.microsoft:receive-by-sequence-number" => {
            let seqs = sequence_numbers(body)?;
            let mode = match map_get(body, "receiver-settle-mode").and_then(int_of) {
                Some(0) => ReceiveMode::ReceiveAndDelete,
                _ => ReceiveMode::PeekLock,
            };
            let tokens = seqs.iter().map(|_| uuid::Uuid::new_v4()).collect();
            let out = backend
                .execute(Op::ReceiveDeferred {
                    from: path.clone(),
                    sequence_numbers: seqs,
                    mode,
                    lock_tokens: tokens,
                })
                .await
                .map_err(|e| wire_error(&e))?;
            let msgs = match out {
                Outcome::Received(m) => m,
                _ => Vec::new(),
            };
            messages_response(&msgs, Encoding::Delivery, mode == ReceiveMode::PeekLock)
        }
        "com.microsoft:renew-session-lock" => {
            let session = session_ref(&path, session_id, locks)?;
            let out = backend
                .execute(Op::RenewSessionLock {
                    from: path.clone(),
                    session,
                })
                .await
                .map_err(|e| wire_error(&e))?;
            let until = match out {
                Outcome::LockRenewed { locked_until } => locked_until,
                _ => backend.now(),
            };
            ok(string_map(vec![(
                "expiration",
                AV::Timestamp(Timestamp::from_milliseconds(until)),
            )]))
        }
        "com.microsoft:get-session-state" => {
            let id = session_id.ok_or_else(|| bad_request("session-id is required"))?;
            let state = backend
                .read(|b| b.session_state(&path, &id))
                .map_err(|e| wire_error(&e.into()))?;
            ok(string_map(vec![(
                "session-state",
                state
                    .map(|s| AV::Binary(ByteBuf::from(s)))
                    .unwrap_or(AV::Null),
            )]))
        }
        "com.microsoft:set-session-state" => {
            let state = match map_get(body, "session-state") {
                Some(AV::Binary(b)) => Some(b.to_vec()),
                Some(AV::String(s)) => Some(s.clone().into_bytes()),
                _ => None,
            };
            let session = session_ref(&path, session_id, locks)?;
            backend
                .execute(Op::SetSessionState {
                    from: path.clone(),
                    session,
                    state,
                })
                .await
                .map_err(|e| wire_error(&e))?;
            ok(empty_map())
        }
        "com.microsoft:get-message-sessions" => {
            let (skip, top) = page_of(body);
            let ids = backend
                .read(|b| b.list_sessions(&path))
                .map_err(|e| wire_error(&e.into()))?;
            let page: Vec<AV> = ids
                .into_iter()
                .skip(skip)
                .take(top)
                .map(AV::String)
                .collect();
            if page.is_empty() {
                return Ok((204, AV::Null));
            }
            ok(string_map(vec![
                ("skip", AV::Int(skip as i32)),
                ("sessions-ids", array(page)),
            ]))
        }
        "com.microsoft:add-rule" => {
            let (topic, subscription) = subscription_of(&path)?;
            let rule = rules::rule_from_request(body, backend.now()).map_err(bad_request)?;
            backend
                .execute(Op::CreateRule {
                    topic,
                    subscription,
                    rule,
                })
                .await
                .map_err(|e| wire_error(&e))?;
            ok(empty_map())
        }
        "com.microsoft:remove-rule" => {
            let (topic, subscription) = subscription_of(&path)?;
            let name = map_get(body, "rule-name")
                .and_then(text_of)
                .ok_or_else(|| bad_request("rule-name is required"))?;
            backend
                .execute(Op::DeleteRule {
                    topic,
                    subscription,
                    name,
                })
                .await
                .map_err(|e| wire_error(&e))?;
            ok(empty_map())
        }
        "com.microsoft:enumerate-rules" => {
            let (topic, subscription) = subscription_of(&path)?;
            let (skip, top) = page_of(body);
            let all = backend
                .read(|b| b.rules(&topic, &subscription))
                .map_err(|e| wire_error(&e.into()))?;
            let page: Vec<AV> = all
                .iter()
                .skip(skip)
                .take(top)
                .map(rules::rule_entry)
                .collect();
            if page.is_empty() {
                return Ok((204, AV::Null));
            }
            ok(string_map(vec![("rules", AV::List(page))]))
        }
        other => Err(WireError::new(
            "amqp:not-implemented",
            format!("The operation '{other}' is not supported by LocalZure."),
            501,
        )),
    }
}

/// The `skip` and `top` of a paged listing (top defaults to 100, at most 1,000).
fn page_of(body: &AV) -> (usize, usize) {
    let skip = map_get(body, "skip").and_then(int_of).unwrap_or(0).max(0) as usize;
    let top = map_get(body, "top")
        .and_then(int_of)
        .unwrap_or(100)
        .clamp(0, 1000) as usize;
    (skip, top)
}

/// The (topic, subscription) of a rule operation's node: rules belong to subscriptions.
fn subscription_of(path: &QueuePath) -> Result<(String, String), WireError> {
    match &path.subscription {
        Some(sub) if !path.dead_letter => Ok((path.entity.clone(), sub.clone())),
        _ => Err(bad_request(format!(
            "Rules belong to subscriptions; '{}' is not one.",
            path.display()
        ))),
    }
}

fn sequence_numbers(body: &AV) -> Result<Vec<u64>, WireError> {
    elements(map_get(body, "sequence-numbers").unwrap_or(&AV::Null))
        .iter()
        .map(|v| {
            int_of(v)
                .filter(|n| *n >= 0)
                .map(|n| n as u64)
                .ok_or_else(|| bad_request("invalid sequence number"))
        })
        .collect()
}

fn session_ref(
    path: &QueuePath,
    session_id: Option<String>,
    locks: &SessionLocks,
) -> Result<SessionRef, WireError> {
    let id = session_id.ok_or_else(|| bad_request("session-id is required"))?;
    let main = QueuePath {
        dead_letter: false,
        ..path.clone()
    };
    let token = locks
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&lock_key(&main, &id))
        .copied();
    match token {
        Some(token) => Ok(SessionRef { id, token }),
        None => Err(WireError::new(
            "com.microsoft:session-lock-lost",
            format!("The session lock has expired on the session '{id}'."),
            410,
        )),
    }
}

fn messages_response(msgs: &[Message], how: Encoding, with_locks: bool) -> OpResult {
    if msgs.is_empty() {
        return Ok((204, AV::Null));
    }
    let mut list = Vec::new();
    for m in msgs {
        let bytes = encode_message(m, how)
            .map_err(|e| WireError::new("amqp:internal-error", e.to_string(), 500))?;
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
