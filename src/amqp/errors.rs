//! The AMQP plane's error vocabulary: [`WireError`] (condition, description, status), the one
//! mapping of service errors to it ([`wire_error`]), the errors the AMQP layer raises itself,
//! and the conversion to the `error` field of a performative or outcome.

use super::symbols as sym;
use crate::service::ServiceError;
use fe2o3_amqp_types::definitions::{Error as AmqpError, ErrorCondition};
use serde_amqp::primitives::Symbol;

/// An error as the AMQP wire carries it: a condition symbol, a description, and the HTTP-like
/// status code that `$management` responses carry.
#[derive(Debug, Clone, PartialEq)]
pub struct WireError {
    pub condition: String,
    pub description: String,
    pub status: i32,
}

impl WireError {
    pub fn new(condition: &str, description: impl Into<String>, status: i32) -> Self {
        WireError {
            condition: condition.to_string(),
            description: description.into(),
            status,
        }
    }

    /// A malformed or missing request argument (400, `com.microsoft:argument-error`).
    pub fn bad_request(description: impl Into<String>) -> Self {
        WireError::new(sym::ARGUMENT_ERROR, description, 400)
    }

    /// Something failed on our side (500, `amqp:internal-error`).
    pub fn internal(description: impl Into<String>) -> Self {
        WireError::new(sym::INTERNAL_ERROR, description, 500)
    }

    /// The refusal of a link or management request that no unexpired token of its connection
    /// covers (`claim`: "Send" or "Listen", as Azure words it).
    pub fn unauthorized(entity: &str, claim: &str) -> Self {
        WireError::new(
            sym::UNAUTHORIZED_ACCESS,
            format!(
                "Unauthorized access. '{claim}' claim(s) are required to perform this operation. Resource: 'sb://localhost/{}'.",
                entity.to_ascii_lowercase()
            ),
            401,
        )
    }
}

/// A service error as the service sends it on the AMQP wire (the SDKs turn the condition into
/// their exception types). Every AMQP path that reports a broker or storage failure goes
/// through here.
pub fn wire_error(e: &ServiceError) -> WireError {
    let (condition, status) = condition_of(e);
    WireError::new(condition, e.to_string(), status)
}

/// The condition and `$management` status of each service error, from the table both planes
/// share ([`crate::wire_errors`], where each choice cites the service documentation).
fn condition_of(e: &ServiceError) -> (&'static str, i32) {
    let code = crate::wire_errors::wire_code(e);
    (code.amqp_condition, code.amqp_status)
}

/// The `error` of a close, detach or rejected outcome: `condition` with a description.
///
/// `info` is an empty map rather than absent so all three fields go on the wire, as the
/// service sends them: pyamqp (azure-servicebus 7.x `_on_send_complete`) reads
/// `error[2]` of a rejected send and, when the list is shorter, fails in its callback and
/// never completes the send.
pub fn error(condition: &str, description: impl Into<String>) -> AmqpError {
    AmqpError::new(
        ErrorCondition::Custom(Symbol::from(condition)),
        Some(description.into()),
        Some(fe2o3_amqp_types::definitions::Fields::new()),
    )
}

/// A [`WireError`] as the `error` of a close, detach or rejected outcome.
pub fn wire(e: &WireError) -> AmqpError {
    error(&e.condition, e.description.clone())
}
