//! AMQP 1.0 transactions (spec part 4): the coordinator link (`amqp:coordinator:list` target)
//! answering `declare` with `declared { txn-id }` and `discharge` with `accepted` or `rejected`
//! with an `amqp:transaction:*` error; transfers and dispositions carrying
//! `transactional-state` are buffered in the service's transaction (src/service/txn.rs) and
//! answered with `transactional-state { txn-id, outcome }` (spec 4.4.1, 4.4.2).
//!
//! Send-via: a sender link whose target is the via entity and whose attach carries
//! `com.microsoft:transfer-destination-address` sends to that destination (Service Bus AMQP
//! protocol guide, "Transfer via"). The connection code calls the hooks here from attach,
//! transfer and settlement.

use super::state::{Conn, Event, InTarget, Job, Partial, Unsettled};
use crate::amqp::convert::{decode_message, decode_send, AmqpBody};
use crate::amqp::errors::{error, wire_error, WireError};
use crate::amqp::link::settlement_of;
use crate::amqp::symbols as sym;
use crate::broker::txn::TxnError;
use crate::service::DischargeError;
use fe2o3_amqp_types::definitions::{Error as AmqpError, Role};
use fe2o3_amqp_types::messaging::{
    Accepted, DeliveryState, Modified, Outcome, Rejected, Released, TargetArchetype,
};
use fe2o3_amqp_types::performatives::Attach;
use fe2o3_amqp_types::transaction::{Declare, Declared, Discharge, TransactionalState};
use serde_amqp::primitives::Binary;
use serde_amqp::Value as AV;

/// The link property naming the final destination of a send-via link.
pub(super) const TRANSFER_DESTINATION: &str = "com.microsoft:transfer-destination-address";

/// Is this attach a transaction controller's link to our coordinator?
pub(super) fn is_coordinator(a: &Attach) -> bool {
    matches!(a.target.as_deref(), Some(TargetArchetype::Coordinator(_)))
}

/// The destination of a send-via link, if the attach names one.
pub(super) fn transfer_destination(a: &Attach) -> Option<String> {
    a.properties
        .as_ref()?
        .iter()
        .find(|(k, _)| k.0 == TRANSFER_DESTINATION)
        .and_then(|(_, v)| match v {
            AV::String(s) => Some(s.clone()),
            AV::Symbol(s) => Some(s.0.clone()),
            _ => None,
        })
}

/// The transaction a delivery state names, if it is transactional.
pub(super) fn txn_of(state: &Option<DeliveryState>) -> Option<Binary> {
    match state {
        Some(DeliveryState::TransactionalState(t)) => Some(t.txn_id.clone()),
        _ => None,
    }
}

fn id_bytes(id: u64) -> Binary {
    Binary::from(id.to_be_bytes().to_vec())
}

fn id_of(b: &Binary) -> Option<u64> {
    let arr: [u8; 8] = b.as_slice().try_into().ok()?;
    Some(u64::from_be_bytes(arr))
}

/// Spec 4.5.8 transaction-error conditions.
const UNKNOWN_ID: &str = "amqp:transaction:unknown-id";
const ROLLBACK: &str = "amqp:transaction:rollback";
const TIMEOUT: &str = "amqp:transaction:timeout";

fn txn_condition(e: &TxnError) -> &'static str {
    match e {
        TxnError::UnknownId => UNKNOWN_ID,
        TxnError::Timeout => TIMEOUT,
        TxnError::CrossEntity | TxnError::NotAllowed(_) => sym::NOT_ALLOWED,
    }
}

fn txn_error(e: &TxnError) -> AmqpError {
    error(txn_condition(e), e.to_string())
}

/// A transactional `$management` request refused for its transaction: the same condition a
/// transfer or disposition gets, with status 400 in the response.
pub(crate) fn txn_wire_error(e: &TxnError) -> WireError {
    WireError::new(txn_condition(e), e.to_string(), 400)
}

/// The transaction a request transfer carries (.NET `ManagementUtilities
/// .ExecuteRequestResponseAsync` sends the ambient transaction's id as the transfer's
/// `transactional-state`; Java `ManagementChannel` passes a `TransactionalState` to
/// `RequestResponseChannel.sendWithAck`). An id this server never issues (0) stands for one
/// it cannot read, so the request is answered `unknown-id`.
pub(super) fn request_txn(state: &Option<DeliveryState>) -> Option<u64> {
    txn_of(state).map(|b| id_of(&b).unwrap_or(0))
}

/// How a request transfer is settled: `accepted`, inside a `transactional-state` naming the
/// transaction when the request carried one (spec 4.4.1).
pub(super) fn request_disposition(state: &Option<DeliveryState>) -> DeliveryState {
    match txn_of(state) {
        Some(txn_id) => DeliveryState::TransactionalState(TransactionalState {
            txn_id,
            outcome: Some(Outcome::Accepted(Accepted {})),
        }),
        None => DeliveryState::Accepted(Accepted {}),
    }
}

fn rejected(e: AmqpError) -> DeliveryState {
    DeliveryState::Rejected(Rejected { error: Some(e) })
}

fn rejected_outcome(e: AmqpError) -> Outcome {
    Outcome::Rejected(Rejected { error: Some(e) })
}

fn outcome_state(outcome: &Outcome) -> DeliveryState {
    match outcome {
        Outcome::Accepted(a) => DeliveryState::Accepted(a.clone()),
        Outcome::Rejected(r) => DeliveryState::Rejected(r.clone()),
        Outcome::Released(r) => DeliveryState::Released(r.clone()),
        Outcome::Modified(m) => DeliveryState::Modified(m.clone()),
        #[allow(unreachable_patterns)]
        _ => DeliveryState::Released(Released {}),
    }
}

/// A `declare` or `discharge` in a control message body.
enum Control {
    Declare,
    Discharge(Discharge),
}

fn control_of(bytes: &[u8]) -> Option<Control> {
    let msg = decode_message(bytes).ok()?;
    let AmqpBody::Value(v) = &msg.body else {
        return None;
    };
    let raw = serde_amqp::to_vec(v).ok()?;
    if let Ok(d) = serde_amqp::from_slice::<Discharge>(&raw) {
        return Some(Control::Discharge(d));
    }
    serde_amqp::from_slice::<Declare>(&raw)
        .ok()
        .map(|_| Control::Declare)
}

impl Conn {
    /// Hook for transfer.rs: handles a message on the coordinator link, or a transactional
    /// send. Returns false when the message is not transactional (the caller handles it).
    pub(super) fn on_transactional_message(
        &mut self,
        ch: u16,
        target: &InTarget,
        address: &str,
        p: &Partial,
    ) -> bool {
        let reply = !p.settled;
        let delivery_id = p.delivery_id;
        match target {
            InTarget::Coordinator => {
                let backend = self.backend.clone();
                let events = self.events.clone();
                let control = control_of(&p.bytes);
                let answer = move |state: DeliveryState| {
                    if let (true, Some(id)) = (reply, delivery_id) {
                        let _ = events.send(Event::Disposition {
                            ch,
                            role: Role::Receiver,
                            delivery_id: id,
                            state,
                        });
                    }
                };
                match control {
                    None => answer(rejected(error(
                        sym::DECODE_ERROR,
                        "A coordinator message must be a declare or a discharge.",
                    ))),
                    Some(Control::Declare) => {
                        let id = backend.txn_declare();
                        answer(DeliveryState::Declared(Declared {
                            txn_id: id_bytes(id),
                        }));
                    }
                    Some(Control::Discharge(d)) => {
                        let fail = d.fail.unwrap_or(false);
                        let job: Job = Box::pin(async move {
                            let state = match id_of(&d.txn_id) {
                                None => rejected(txn_error(&TxnError::UnknownId)),
                                Some(id) => match backend.txn_discharge(id, fail).await {
                                    Ok(()) => DeliveryState::Accepted(Accepted {}),
                                    Err(DischargeError::Txn(e)) => rejected(txn_error(&e)),
                                    Err(DischargeError::Rollback(e)) => {
                                        let w = wire_error(&e);
                                        rejected(error(
                                            ROLLBACK,
                                            format!(
                                                "The transaction was rolled back: {}",
                                                w.description
                                            ),
                                        ))
                                    }
                                },
                            };
                            answer(state);
                        });
                        self.spawn(job);
                    }
                }
                true
            }
            InTarget::Entity(entity) => {
                let Some(txn) = txn_of(&p.state) else {
                    return false;
                };
                let via =
                    (crate::names::key(address) != crate::names::key(entity)).then_some(address);
                // Spec 4.4.1: the outcome of a transactional transfer is reported inside a
                // transactional-state naming the transaction, refusals included.
                let outcome = match (id_of(&txn), decode_send(&p.bytes, p.format)) {
                    (_, Err(e)) => rejected_outcome(error(sym::DECODE_ERROR, e.to_string())),
                    (None, _) => rejected_outcome(txn_error(&TxnError::UnknownId)),
                    (Some(id), Ok(messages)) => {
                        match self.backend.txn_send(id, via, entity.clone(), messages) {
                            Ok(()) => Outcome::Accepted(Accepted {}),
                            Err(e) => rejected_outcome(txn_error(&e)),
                        }
                    }
                };
                let state = DeliveryState::TransactionalState(TransactionalState {
                    txn_id: txn,
                    outcome: Some(outcome),
                });
                if let (true, Some(id)) = (reply, delivery_id) {
                    self.send_disposition(ch, Role::Receiver, id, state);
                }
                true
            }
            _ => false,
        }
    }

    /// Hook for settlement.rs: buffers settlements carrying `transactional-state` (the message
    /// stays locked until commit) and answers each with that state. Returns the deliveries
    /// back when the state is not transactional.
    ///
    /// A delivery the client did not settle stays unsettled on both sides (spec 4.4.2: the
    /// transactional work is provisional until discharge): after a rollback the client can
    /// still settle it, e.g. python-qpid-proton releases the deliveries of an aborted
    /// transaction, and the .NET SDK completes a message again after a rolled-back scope.
    pub(super) fn on_transactional_disposition(
        &mut self,
        ch: u16,
        state: &DeliveryState,
        work: Vec<(u32, Unsettled)>,
        reply: bool,
    ) -> Option<Vec<(u32, Unsettled)>> {
        let DeliveryState::TransactionalState(ts) = state else {
            return Some(work);
        };
        let outcome = ts.outcome.clone().unwrap_or(Outcome::Modified(Modified {
            delivery_failed: None,
            undeliverable_here: None,
            message_annotations: None,
        }));
        let txn = id_of(&ts.txn_id);
        for (delivery_id, mut u) in work {
            // Already in this transaction: the client settling it now (proton-j and
            // Microsoft.Azure.Amqp settle locally after our answer, repeating the state), or
            // repeating it. Not a second settlement.
            if txn.is_some() && u.txn == txn {
                if reply {
                    if let Some(s) = self.sessions.get_mut(&ch) {
                        s.unsettled.insert(delivery_id, u);
                    }
                    self.send_disposition_of(ch, Role::Sender, delivery_id, state.clone(), false);
                }
                continue;
            }
            let answer = match (txn, settlement_of(&outcome_state(&outcome))) {
                (None, _) => rejected_outcome(txn_error(&TxnError::UnknownId)),
                (_, None) => rejected_outcome(txn_error(&TxnError::NotAllowed(
                    "This outcome cannot be part of a transaction.".into(),
                ))),
                (Some(id), Some(settlement)) => {
                    match self.backend.txn_settle(id, &u.path, u.token, settlement) {
                        Ok(()) => {
                            u.txn = Some(id);
                            outcome.clone()
                        }
                        Err(e) => rejected_outcome(txn_error(&e)),
                    }
                }
            };
            let answer = DeliveryState::TransactionalState(TransactionalState {
                txn_id: ts.txn_id.clone(),
                outcome: Some(answer),
            });
            if reply {
                if let Some(s) = self.sessions.get_mut(&ch) {
                    s.unsettled.insert(delivery_id, u);
                }
                self.send_disposition_of(ch, Role::Sender, delivery_id, answer, false);
            }
        }
        None
    }
}
