//! The one table from service errors to wire codes: the HTTP status (with the Azure `<Error>`
//! body) and the AMQP condition symbol (with the status `$management` responses carry).
//!
//! Every variant of [`BrokerError`], [`ServiceError`] and [`StorageError`] is matched without a
//! wildcard, so a new variant does not compile until it has a row here. Each row cites what the
//! choice rests on:
//!
//! - REST: the response-code tables of the Service Bus REST reference
//!   (<https://learn.microsoft.com/rest/api/servicebus/>: "Send Message", "Delete Message",
//!   "Unlock Message", "Renew-Lock for a Message", "Create Queue", "Get Entity").
//! - AMQP conditions: what the SDKs turn into their exception types. Python:
//!   `azure/servicebus/_common/constants.py` and `exceptions.py` (`_ERROR_CODE_TO_ERROR_MAPPING`:
//!   `com.microsoft:message-lock-lost` → `MessageLockLostError`, `com.microsoft:entity-disabled`
//!   → `MessagingEntityDisabledError`, `amqp:resource-limit-exceeded` →
//!   `ServiceBusQuotaExceededError`, …); JavaScript: `@azure/core-amqp` `src/errors.ts`
//!   (`ConditionErrorNameMapper`); .NET: `ServiceBusFailureReason`
//!   (<https://learn.microsoft.com/dotnet/api/azure.messaging.servicebus.servicebusfailurereason>).
//! - AMQP `$management` status codes: `@azure/core-amqp` `src/errors.ts`
//!   (`ConditionStatusMapper`), which pairs each condition with the status the service sends
//!   beside it (the .NET client's `AmqpExceptionHelper.ConditionToStatusMap` is the same table).
//!
//! Where the two wires differ, each follows its own documentation: a lost message lock is
//! REST 404 ("No message was found with the specified MessageId or LockToken") but AMQP 410
//! (`message-lock-lost` ↔ Gone); a disabled entity is REST 403 (the REST API's refusal that is
//! not an authorization failure; the tests pin it) but AMQP 400 (`entity-disabled` ↔ BadRequest);
//! a storage failure is REST 503 (transient: disk full and a lost Redis recover without a
//! restart, and REST callers retry on 503) but AMQP `amqp:internal-error`/500, which the SDKs
//! retry (`@azure/core-amqp` marks it retryable; Python does not list it as non-retryable).

use crate::broker::error::BrokerError;
use crate::service::ServiceError;
use crate::storage::StorageError;

/// Both wires' codes for one error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WireCode {
    /// HTTP status on the management (ATOM) plane.
    pub http_management: u16,
    /// HTTP status on the messaging plane (send, receive, settle), which answers a missing
    /// entity with 410 Gone instead of 404.
    pub http_messaging: u16,
    /// The AMQP error condition the SDKs map to their exception types.
    pub amqp_condition: &'static str,
    /// The status code of a `$management` response refusing the request.
    pub amqp_status: i32,
}

const fn code(http: u16, amqp_condition: &'static str, amqp_status: i32) -> WireCode {
    WireCode {
        http_management: http,
        http_messaging: http,
        amqp_condition,
        amqp_status,
    }
}

/// The condition `amqp:not-found`, also used by the AMQP layer for unknown addresses.
pub const NOT_FOUND: &str = "amqp:not-found";
/// Bad arguments (`ArgumentException` in .NET, `ServiceBusError` in Python).
pub const ARGUMENT_ERROR: &str = "com.microsoft:argument-error";
/// A server fault the SDKs retry.
pub const INTERNAL_ERROR: &str = "amqp:internal-error";
/// The service is busy: the SDKs back off and retry (`ServiceBusy`).
pub const SERVER_BUSY: &str = "com.microsoft:server-busy";

/// The wire codes of `e`: the one place both wires look errors up.
pub fn wire_code(e: &ServiceError) -> WireCode {
    match e {
        ServiceError::Broker(b) => broker_code(b),
        ServiceError::Storage(s) => storage_code(s),
        // The server is stopping: "ServiceBusy … the service reports that it is busy"
        // (ServiceBusFailureReason), 503 on REST; `server-busy` ↔ ServiceUnavailable (503) in
        // ConditionStatusMapper.
        ServiceError::ShuttingDown => code(503, SERVER_BUSY, 503),
    }
}

fn broker_code(b: &BrokerError) -> WireCode {
    match b {
        // REST "Get Entity"/"Delete Entity": 404; REST "Send Message"/"Delete Message":
        // "410 Specified queue or topic doesn't exist". AMQP `amqp:not-found` ↔ NotFound (404);
        // Python maps it to `MessagingEntityNotFoundError`.
        BrokerError::EntityNotFound(_) => WireCode {
            http_management: 404,
            http_messaging: 410,
            amqp_condition: NOT_FOUND,
            amqp_status: 404,
        },
        // REST "Create Queue": 409 Conflict when the entity exists; AMQP
        // `entity-already-exists` ↔ Conflict (409), `MessagingEntityAlreadyExistsError`.
        BrokerError::EntityExists(_) => code(409, "com.microsoft:entity-already-exists", 409),
        // REST: "400 Bad request"; AMQP `argument-error` ↔ BadRequest (400).
        BrokerError::BadRequest(_) | BrokerError::FilterSyntax(_) => code(400, ARGUMENT_ERROR, 400),
        // A plain receiver on a session-enabled entity: the service refuses the request as an
        // invalid argument (400 / `argument-error`).
        BrokerError::SessionRequired(_) => code(400, ARGUMENT_ERROR, 400),
        // REST "Delete Message", "Unlock Message", "Renew-Lock for a Message": "404 No message
        // was found with the specified MessageId or LockToken". AMQP `message-lock-lost` ↔
        // Gone (410); Python `MessageLockLostError`, .NET `MessageLockLost`.
        BrokerError::MessageLockLost => code(404, "com.microsoft:message-lock-lost", 410),
        // Same REST rows (no such message); AMQP `message-not-found` → `MessageNotFoundError`
        // (Python, JavaScript), 404.
        BrokerError::MessageNotFound(_) => code(404, "com.microsoft:message-not-found", 404),
        // AMQP `session-lock-lost` ↔ Gone (410), `SessionLockLostError`; REST has no session
        // operations, so it answers the same Gone.
        BrokerError::SessionLockLost(_) => code(410, "com.microsoft:session-lock-lost", 410),
        // AMQP `session-cannot-be-locked` ↔ Gone (410) in ConditionStatusMapper,
        // `SessionCannotBeLockedError`; REST answers 409 Conflict (another receiver holds it).
        BrokerError::SessionCannotBeLocked(_) => {
            code(409, "com.microsoft:session-cannot-be-locked", 410)
        }
        // REST "Send Message" lists "403 Quota exceeded or message too large"; this emulator
        // answers 413, the HTTP status of an oversized body that its body limit also uses (the
        // SDKs send over AMQP, where `message-size-exceeded` ↔ Forbidden (403),
        // `MessageSizeExceededError`).
        BrokerError::MessageTooLarge { .. } => code(413, "amqp:link:message-size-exceeded", 403),
        // REST "Send Message": "403 Quota exceeded"; AMQP `resource-limit-exceeded` ↔
        // Forbidden (403), `ServiceBusQuotaExceededError`.
        BrokerError::QuotaExceeded(_) => code(403, "amqp:resource-limit-exceeded", 403),
        // AMQP `entity-disabled` ↔ BadRequest (400) in ConditionStatusMapper,
        // `MessagingEntityDisabledError`; REST refuses with 403 (see the module comment).
        BrokerError::EntityDisabled(_)
        | BrokerError::SendDisabled(_)
        | BrokerError::ReceiveDisabled(_) => code(403, "com.microsoft:entity-disabled", 400),
    }
}

fn storage_code(s: &StorageError) -> WireCode {
    match s {
        // All storage failures are server faults the caller can retry: REST 503 (see the module
        // comment), AMQP `internal-error` (retryable in `@azure/core-amqp`) with 500.
        StorageError::Io { .. }
        | StorageError::Sqlite { .. }
        | StorageError::Corrupt { .. }
        | StorageError::SchemaTooNew { .. }
        | StorageError::InUse { .. }
        | StorageError::JournalFailed(_)
        | StorageError::Other(_) => code(503, INTERNAL_ERROR, 500),
    }
}

/// The AMQP condition and description for `e`, as an `error` on a detach, disposition or
/// `$management` response carries them.
pub fn amqp_condition(e: &ServiceError) -> (&'static str, String) {
    (wire_code(e).amqp_condition, e.to_string())
}

/// The status a `$management` response refusing with `e` carries.
pub fn amqp_status(e: &ServiceError) -> i32 {
    wire_code(e).amqp_status
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    /// One value of every variant, and its position in [`index`].
    fn samples() -> Vec<ServiceError> {
        let p = PathBuf::from("/data");
        let broker = [
            BrokerError::EntityNotFound("q".into()),
            BrokerError::EntityExists("q".into()),
            BrokerError::BadRequest("bad".into()),
            BrokerError::MessageLockLost,
            BrokerError::MessageNotFound(7),
            BrokerError::SessionLockLost("s".into()),
            BrokerError::SessionCannotBeLocked("s".into()),
            BrokerError::SessionRequired("q".into()),
            BrokerError::MessageTooLarge { size: 2, max: 1 },
            BrokerError::QuotaExceeded("q".into()),
            BrokerError::EntityDisabled("q".into()),
            BrokerError::SendDisabled("q".into()),
            BrokerError::ReceiveDisabled("q".into()),
            BrokerError::FilterSyntax("syntax".into()),
        ];
        let storage = [
            StorageError::Io {
                path: p.clone(),
                source: std::io::Error::other("disk full"),
            },
            StorageError::Sqlite {
                path: p.clone(),
                source: rusqlite::Error::InvalidQuery,
            },
            StorageError::Corrupt {
                path: p.clone(),
                detail: "x".into(),
            },
            StorageError::SchemaTooNew {
                path: p.clone(),
                found: 9,
                supported: 1,
            },
            StorageError::InUse {
                path: p,
                holder: "pid 1".into(),
            },
            StorageError::JournalFailed("x".into()),
            StorageError::Other("x".into()),
        ];
        let mut out: Vec<ServiceError> = broker.into_iter().map(ServiceError::Broker).collect();
        out.extend(storage.into_iter().map(ServiceError::Storage));
        out.push(ServiceError::ShuttingDown);
        out
    }

    /// A distinct number per variant; no wildcard, so a new variant fails to compile here.
    fn index(e: &ServiceError) -> usize {
        match e {
            ServiceError::Broker(b) => match b {
                BrokerError::EntityNotFound(_) => 0,
                BrokerError::EntityExists(_) => 1,
                BrokerError::BadRequest(_) => 2,
                BrokerError::MessageLockLost => 3,
                BrokerError::MessageNotFound(_) => 4,
                BrokerError::SessionLockLost(_) => 5,
                BrokerError::SessionCannotBeLocked(_) => 6,
                BrokerError::SessionRequired(_) => 7,
                BrokerError::MessageTooLarge { .. } => 8,
                BrokerError::QuotaExceeded(_) => 9,
                BrokerError::EntityDisabled(_) => 10,
                BrokerError::SendDisabled(_) => 11,
                BrokerError::ReceiveDisabled(_) => 12,
                BrokerError::FilterSyntax(_) => 13,
            },
            ServiceError::Storage(s) => match s {
                StorageError::Io { .. } => 14,
                StorageError::Sqlite { .. } => 15,
                StorageError::Corrupt { .. } => 16,
                StorageError::SchemaTooNew { .. } => 17,
                StorageError::InUse { .. } => 18,
                StorageError::JournalFailed(_) => 19,
                StorageError::Other(_) => 20,
            },
            ServiceError::ShuttingDown => 21,
        }
    }

    #[test]
    fn every_variant_has_both_wire_codes() {
        let all = samples();
        let mut seen: Vec<usize> = all.iter().map(index).collect();
        seen.sort_unstable();
        assert_eq!(
            seen,
            (0..=21).collect::<Vec<_>>(),
            "a variant has no sample"
        );
        for e in &all {
            let c = wire_code(e);
            for s in [c.http_management, c.http_messaging] {
                assert!(
                    http::StatusCode::from_u16(s)
                        .is_ok_and(|s| s.is_client_error() || s.is_server_error()),
                    "{e:?}: HTTP {s}"
                );
            }
            assert!((400..600).contains(&c.amqp_status), "{e:?}");
            assert!(
                c.amqp_condition.starts_with("amqp:")
                    || c.amqp_condition.starts_with("com.microsoft:"),
                "{e:?}"
            );
            let (condition, description) = amqp_condition(e);
            assert_eq!(condition, c.amqp_condition);
            assert_eq!(description, e.to_string());
            assert_eq!(amqp_status(e), c.amqp_status);
        }
    }

    /// The conditions the SDKs map to specific exceptions stay what they expect.
    #[test]
    fn sdk_visible_conditions_are_pinned() {
        let cond = |e: BrokerError| wire_code(&ServiceError::Broker(e)).amqp_condition;
        assert_eq!(
            cond(BrokerError::MessageLockLost),
            "com.microsoft:message-lock-lost"
        );
        assert_eq!(
            cond(BrokerError::SessionLockLost("s".into())),
            "com.microsoft:session-lock-lost"
        );
        assert_eq!(
            cond(BrokerError::SessionCannotBeLocked("s".into())),
            "com.microsoft:session-cannot-be-locked"
        );
        assert_eq!(
            cond(BrokerError::SendDisabled("q".into())),
            "com.microsoft:entity-disabled"
        );
        assert_eq!(
            cond(BrokerError::EntityExists("q".into())),
            "com.microsoft:entity-already-exists"
        );
        assert_eq!(cond(BrokerError::EntityNotFound("q".into())), NOT_FOUND);
        let gone = wire_code(&ServiceError::Broker(BrokerError::EntityNotFound(
            "q".into(),
        )));
        assert_eq!((gone.http_management, gone.http_messaging), (404, 410));
    }
}
