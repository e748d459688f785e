//! `$management` requests inside an AMQP transaction.
//!
//! A request joins a transaction through its transfer: the .NET SDK sends every management
//! request made in an ambient `TransactionScope` with the transaction's id as the transfer's
//! `transactional-state` (`ManagementUtilities.ExecuteRequestResponseAsync` →
//! `RequestResponseAmqpLink.RequestAsync(message, transactionId, timeout)`), and the Java SDK
//! passes a `TransactionalState` to `RequestResponseChannel.sendWithAck` for its transactional
//! management calls. The connection reads that id into [`Request::txn`].
//!
//! What the service allows inside a transaction ("Operations within a transaction scope",
//! learn.microsoft.com service-bus-transactions.md: send, complete, abandon, dead-letter,
//! defer, renew lock; the .NET SDK's `TransactionLiveTests` settle deferred messages, cancel
//! scheduled messages and schedule messages (`TransactionalSendMultipleSessions`, and its
//! `…Rollback` twin: nothing is received after a rollback) inside a scope, and its Sample06
//! sets session state inside a scope):
//!
//! | operation | in a transaction |
//! | --- | --- |
//! | `update-disposition` | buffered until commit: the deferred message stays locked |
//! | `schedule-message` | answered at once with the sequence numbers (reserved, [`Op::ReserveSequenceNumbers`]); the messages are stored with them at commit, nothing before (not even one scheduled for now); a rollback leaves a gap in the numbering |
//! | `cancel-scheduled-message` | buffered until commit: the message stays scheduled |
//! | `set-session-state` | buffered until commit |
//! | `renew-lock`, `renew-session-lock` | applied at once (a lock must stay held until commit) |
//! | `peek-message`, `get-session-state`, `get-message-sessions`, `enumerate-rules` | answered as outside (they change nothing) |
//! | `receive-by-sequence-number` | refused: "Receive operations aren't included" |
//! | `add-rule`, `remove-rule` | refused: "Mixing management and messaging operations in a transaction isn't supported" |
//!
//! A buffered part is checked against the current state when it is made (a lost lock answers
//! 410 at once, as outside a transaction), bound to the transaction's entity (a second
//! top-level entity is refused as for transfers), and checked again at commit.

use super::request::Request;
use crate::amqp::connection::txn_wire_error;
use crate::amqp::errors::{wire_error, WireError};
use crate::amqp::symbols as sym;
use crate::broker::message::NewMessage;
use crate::broker::op::{Op, ReservedMessage};
use crate::broker::Outcome;

/// Refuses operations that cannot be part of a transaction (see the module table).
pub(super) fn admit(operation: &str) -> Result<(), WireError> {
    let why = match operation {
        sym::OP_RECEIVE_BY_SEQUENCE_NUMBER => "Receive operations cannot be part of a transaction.",
        sym::OP_ADD_RULE | sym::OP_REMOVE_RULE => {
            "Management operations cannot be part of a transaction."
        }
        _ => return Ok(()),
    };
    Err(WireError::new(sym::NOT_ALLOWED, why, 400))
}

impl Request<'_> {
    /// Applies `op` now, or, when the request is transactional, checks that it could apply
    /// and buffers it until the transaction commits (`None`).
    pub(super) async fn apply_or_enlist(&self, op: Op) -> Result<Option<Outcome>, WireError> {
        let Some(id) = self.txn else {
            return self
                .backend
                .execute(op)
                .await
                .map(Some)
                .map_err(|e| wire_error(&e));
        };
        self.join_txn()?;
        self.backend
            .txn_check(std::slice::from_ref(&op))
            .map_err(|e| wire_error(&e.into()))?;
        let enlisted = match op {
            Op::Settle {
                from,
                lock_token,
                settlement,
            } => self.backend.txn_settle(id, &from, lock_token, settlement),
            other => self.backend.txn_enlist(id, &self.path.entity, other),
        };
        enlisted.map_err(|e| txn_wire_error(&e))?;
        Ok(None)
    }

    /// `schedule-message` in the request's transaction: the transaction is joined first (open, on
    /// this entity), then the sequence numbers are reserved and answered at once, and the
    /// messages are buffered with them until commit ([`Op::SendReserved`], checked now and
    /// again at commit). A refusal after the reservation, or a rollback, leaves only a gap in
    /// the entity's numbering, as the service's numbering has gaps.
    pub(super) async fn schedule_in_txn(
        &self,
        messages: Vec<NewMessage>,
    ) -> Result<Vec<u64>, WireError> {
        self.join_txn()?;
        let entity = self.entity_path.to_string();
        let count = u32::try_from(messages.len())
            .map_err(|_| WireError::bad_request("too many messages"))?;
        let reserved = self
            .backend
            .reserve_sequence_numbers(entity.clone(), count)
            .await
            .map_err(|e| wire_error(&e))?;
        if reserved.len() != messages.len() {
            return Err(WireError::bad_request(format!(
                "{} sequence numbers reserved for {} messages",
                reserved.len(),
                messages.len()
            )));
        }
        if !messages.is_empty() {
            let messages = reserved
                .iter()
                .zip(messages)
                .map(|(&sequence_number, message)| ReservedMessage {
                    sequence_number,
                    message,
                })
                .collect();
            self.apply_or_enlist(Op::SendReserved { entity, messages })
                .await?;
        }
        Ok(reserved)
    }

    /// When the request is transactional, checks that all of `ops` could apply now, so a
    /// request with several parts is refused whole rather than buffered in part.
    pub(super) fn check_in_txn(&self, ops: &[Op]) -> Result<(), WireError> {
        match self.txn {
            Some(_) => self
                .backend
                .txn_check(ops)
                .map_err(|e| wire_error(&e.into())),
            None => Ok(()),
        }
    }

    /// For an operation that takes effect at once: when the request is transactional, the
    /// transaction must be open and on this entity (its timer starts here if this is its
    /// first operation).
    pub(super) fn join_txn(&self) -> Result<(), WireError> {
        match self.txn {
            Some(id) => self
                .backend
                .txn_touch(id, &self.path.entity)
                .map_err(|e| txn_wire_error(&e)),
            None => Ok(()),
        }
    }
}
