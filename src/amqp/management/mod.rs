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
//! Files: `request.rs` (the parsed request, responses, shared argument readers), one file per
//! operation family (`messages.rs`, `sessions.rs`, `rules.rs`; rule bodies and described types
//! in [`rule_descriptions`]), and here the table routing an operation name to its handler.

mod messages;
mod request;
pub mod rule_descriptions;
mod rules;
mod sessions;
mod txn;

pub use self::request::refuse;

use self::request::{response, Handler, Request};
use super::address::queue_path;
use super::convert::{map_get, text_of, AmqpBody, AmqpMessage, ConvertError};
use super::errors::WireError;
use super::symbols as sym;
use crate::broker::op::QueuePath;
use crate::service::ServiceBusBackend;
use serde_amqp::Value as AV;
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

/// Operation name (the request's `operation` application property) → handler.
const HANDLERS: &[(&str, Handler)] = &[
    (sym::OP_PEEK_MESSAGE, messages::peek),
    (sym::OP_RENEW_LOCK, messages::renew_lock),
    (sym::OP_SCHEDULE_MESSAGE, messages::schedule),
    (sym::OP_CANCEL_SCHEDULED_MESSAGE, messages::cancel_scheduled),
    (sym::OP_UPDATE_DISPOSITION, messages::update_disposition),
    (
        sym::OP_RECEIVE_BY_SEQUENCE_NUMBER,
        messages::receive_by_sequence_number,
    ),
    (sym::OP_RENEW_SESSION_LOCK, sessions::renew_session_lock),
    (sym::OP_GET_SESSION_STATE, sessions::get_session_state),
    (sym::OP_SET_SESSION_STATE, sessions::set_session_state),
    (sym::OP_GET_MESSAGE_SESSIONS, sessions::get_message_sessions),
    (sym::OP_ADD_RULE, rules::add_rule),
    (sym::OP_REMOVE_RULE, rules::remove_rule),
    (sym::OP_ENUMERATE_RULES, rules::enumerate_rules),
];

/// Answers one management request made on the node of `entity_path`; `txn` is the
/// transaction its transfer carried, if any (see [`txn`]).
pub async fn respond(
    backend: &ServiceBusBackend,
    entity_path: &str,
    request: &AmqpMessage,
    locks: &SessionLocks,
    txn: Option<u64>,
) -> Result<Vec<u8>, ConvertError> {
    let operation = request
        .app_property(sym::OPERATION)
        .and_then(text_of)
        .unwrap_or_default();
    let _timed = crate::metrics::amqp_management_timer(&operation);
    let body = match &request.body {
        AmqpBody::Value(v) => v.clone(),
        _ => AV::Null,
    };
    let result = match queue_path(entity_path) {
        Err(e) => Err(WireError::bad_request(e)),
        Ok(path) => {
            let session_id = map_get(&body, "session-id").and_then(text_of);
            let r = Request {
                backend,
                entity_path,
                path,
                body,
                session_id,
                locks,
                txn,
            };
            match HANDLERS.iter().find(|(name, _)| *name == operation) {
                Some((_, handler)) => match r.txn.map(|_| txn::admit(&operation)) {
                    Some(Err(refused)) => Err(refused),
                    _ => handler(&r).await,
                },
                None => Err(WireError::new(
                    sym::NOT_IMPLEMENTED,
                    format!("The operation '{operation}' is not supported by LocalZure."),
                    501,
                )),
            }
        }
    };
    response(request, result)
}

#[cfg(test)]
mod tests {
    use super::HANDLERS;

    #[test]
    fn every_operation_has_one_handler() {
        let mut names: Vec<&str> = HANDLERS.iter().map(|(name, _)| *name).collect();
        assert!(names.iter().all(|n| n.starts_with("com.microsoft:")));
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), HANDLERS.len(), "an operation is routed twice");
        assert_eq!(names.len(), 13);
    }
}
