//! The AMQP plane's error vocabulary: [`WireError`] (condition, description, status), the one
//! mapping of service errors to it ([`wire_error`]), the errors the AMQP layer raises itself,
//! and the conversion to the `error` field of a performative or outcome.

use super::symbols as sym;
use crate::broker::error::BrokerError;
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

/// Maps a service error to the condition and status the service sends (the one place the AMQP
/// plane translates errors; the SDKs turn the condition into their exception types).
pub fn wire_error(e: &ServiceError) -> WireError {
    let d = e.to_string();
    match e {
        ServiceError::Broker(b) => match b {
            BrokerError::EntityNotFound(_) => WireError::new(sym::NOT_FOUND, d, 404),
            BrokerError::EntityExists(_) => WireError::new(sym::ENTITY_ALREADY_EXISTS, d, 409),
            BrokerError::BadRequest(_)
            | BrokerError::FilterSyntax(_)
            | BrokerError::SessionRequired(_) => WireError::new(sym::ARGUMENT_ERROR, d, 400),
            BrokerError::MessageLockLost => WireError::new(sym::MESSAGE_LOCK_LOST, d, 410),
            BrokerError::MessageNotFound(_) => WireError::new(sym::MESSAGE_NOT_FOUND, d, 404),
            BrokerError::SessionLockLost(_) => WireError::new(sym::SESSION_LOCK_LOST, d, 410),
            BrokerError::SessionCannotBeLocked(_) => {
                WireError::new(sym::SESSION_CANNOT_BE_LOCKED, d, 409)
            }
            BrokerError::MessageTooLarge { .. } => {
                WireError::new(sym::MESSAGE_SIZE_EXCEEDED, d, 413)
            }
            BrokerError::QuotaExceeded(_) => WireError::new(sym::RESOURCE_LIMIT_EXCEEDED, d, 403),
            BrokerError::EntityDisabled(_)
            | BrokerError::SendDisabled(_)
            | BrokerError::ReceiveDisabled(_) => WireError::new(sym::ENTITY_DISABLED, d, 400),
        },
        ServiceError::Storage(_) => WireError::new(sym::INTERNAL_ERROR, d, 500),
        ServiceError::ShuttingDown => WireError::new(sym::SERVER_BUSY, d, 503),
    }
}

/// The `error` of a close, detach or rejected outcome: `condition` with a description.
pub fn error(condition: &str, description: impl Into<String>) -> AmqpError {
    AmqpError::new(
        ErrorCondition::Custom(Symbol::from(condition)),
        Some(description.into()),
        None,
    )
}

/// A [`WireError`] as the `error` of a close, detach or rejected outcome.
pub fn wire(e: &WireError) -> AmqpError {
    error(&e.condition, e.description.clone())
}
