//! Session operations of `$management`: renew-session-lock, get/set-session-state and
//! get-message-sessions (the listing behind `ServiceBusSessionReceiver` browsing).

use super::request::{no_content, ok, ok_empty, OpResult, Request};
use crate::amqp::convert::{array, string_map};
use crate::amqp::errors::{wire_error, WireError};
use crate::broker::op::Op;
use futures::future::BoxFuture;
use serde_amqp::primitives::Timestamp;
use serde_amqp::Value as AV;
use serde_bytes::ByteBuf;

/// `com.microsoft:renew-session-lock`: session-id → expiration.
pub(super) fn renew_session_lock<'r>(r: &'r Request<'r>) -> BoxFuture<'r, OpResult> {
    Box::pin(async move {
        let session = r.session_ref()?;
        // In a transaction the renewal applies at once (see super::txn).
        r.join_txn()?;
        let until = r
            .backend
            .renew_session_lock(&r.path, session)
            .await
            .map_err(|e| wire_error(&e))?;
        ok(string_map(vec![(
            "expiration",
            AV::Timestamp(Timestamp::from_milliseconds(until)),
        )]))
    })
}

/// `com.microsoft:get-session-state`: session-id → session-state.
pub(super) fn get_session_state<'r>(r: &'r Request<'r>) -> BoxFuture<'r, OpResult> {
    Box::pin(async move {
        let id = r
            .session_id
            .clone()
            .ok_or_else(|| WireError::bad_request("session-id is required"))?;
        let state = r
            .backend
            .session_state(&r.path, &id)
            .map_err(|e| wire_error(&e))?;
        ok(string_map(vec![(
            "session-state",
            state
                .map(|s| AV::Binary(ByteBuf::from(s)))
                .unwrap_or(AV::Null),
        )]))
    })
}

/// `com.microsoft:set-session-state`: session-id, session-state.
pub(super) fn set_session_state<'r>(r: &'r Request<'r>) -> BoxFuture<'r, OpResult> {
    Box::pin(async move {
        let state = match r.get("session-state") {
            Some(AV::Binary(b)) => Some(b.to_vec()),
            Some(AV::String(s)) => Some(s.clone().into_bytes()),
            _ => None,
        };
        let session = r.session_ref()?;
        // In a transaction: buffered until commit (see super::txn).
        r.apply_or_enlist(Op::SetSessionState {
            from: r.path.clone(),
            session,
            state,
        })
        .await?;
        ok_empty()
    })
}

/// `com.microsoft:get-message-sessions`: skip, top → skip, sessions-ids (204 when none).
pub(super) fn get_message_sessions<'r>(r: &'r Request<'r>) -> BoxFuture<'r, OpResult> {
    Box::pin(async move {
        let (skip, top) = r.page();
        let ids = r
            .backend
            .list_sessions(&r.path)
            .map_err(|e| wire_error(&e))?;
        let page: Vec<AV> = ids
            .into_iter()
            .skip(skip)
            .take(top)
            .map(AV::String)
            .collect();
        if page.is_empty() {
            return no_content();
        }
        ok(string_map(vec![
            ("skip", AV::Int(skip as i32)),
            ("sessions-ids", array(page)),
        ]))
    })
}
