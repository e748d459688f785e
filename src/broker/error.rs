//! The broker's error enum; the wire layers map it to Azure status codes in one place each.

use thiserror::Error;

/// Why an operation was refused. No variant means "server fault": those live in other layers.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum BrokerError {
    #[error("The messaging entity '{0}' could not be found.")]
    EntityNotFound(String),
    #[error("The messaging entity '{0}' already exists.")]
    EntityExists(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("The lock supplied is invalid. Either the lock expired, or the message has already been removed from the queue.")]
    MessageLockLost,
    #[error("The message with sequence number {0} could not be found.")]
    MessageNotFound(u64),
    #[error("The session lock has expired on the session '{0}'.")]
    SessionLockLost(String),
    #[error(
        "The requested session '{0}' cannot be accepted. It may be locked by another receiver."
    )]
    SessionCannotBeLocked(String),
    #[error("The messaging entity '{0}' requires sessions; use a session receiver.")]
    SessionRequired(String),
    #[error("The message size of {size} bytes exceeds the limit of {max} bytes.")]
    MessageTooLarge { size: usize, max: usize },
    #[error("The maximum entity size has been reached or exceeded for '{0}'.")]
    QuotaExceeded(String),
    #[error("Messaging entity '{0}' is currently disabled.")]
    EntityDisabled(String),
    #[error("Sending to messaging entity '{0}' is disabled.")]
    SendDisabled(String),
    #[error("Receiving from messaging entity '{0}' is disabled.")]
    ReceiveDisabled(String),
    #[error("{0}")]
    FilterSyntax(String),
}
