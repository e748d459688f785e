//! The AMQP symbols the endpoint speaks, in one place: error conditions (AMQP 1.0 §2.8.15 and
//! the `com.microsoft:*` ones Service Bus adds), Service Bus link properties and filters, and
//! the `$management` operation names.
//!
//! The `com.microsoft:*` names are the ones the SDKs match on: azure-sdk-for-python
//! `azure/servicebus/_common/constants.py` (`ERROR_CODE_*`, `MGMT_REQUEST_OP_*`,
//! `SESSION_FILTER`, `SESSION_LOCKED_UNTIL`) and azure-sdk-for-net `AmqpClientConstants.cs` /
//! `AmqpErrorCode.cs`.

// ----- AMQP 1.0 error conditions (§2.8.15, §2.8.16, §2.8.17, §2.8.18) -------------------------

/// amqp:internal-error
pub const INTERNAL_ERROR: &str = "amqp:internal-error";
/// amqp:not-found
pub const NOT_FOUND: &str = "amqp:not-found";
/// amqp:unauthorized-access
pub const UNAUTHORIZED_ACCESS: &str = "amqp:unauthorized-access";
/// amqp:decode-error
pub const DECODE_ERROR: &str = "amqp:decode-error";
/// amqp:resource-limit-exceeded
pub const RESOURCE_LIMIT_EXCEEDED: &str = "amqp:resource-limit-exceeded";
pub const INVALID_FIELD: &str = "amqp:invalid-field";
/// amqp:not-allowed
pub const NOT_ALLOWED: &str = "amqp:not-allowed";
/// amqp:not-implemented
pub const NOT_IMPLEMENTED: &str = "amqp:not-implemented";
/// amqp:connection:forced
pub const CONNECTION_FORCED: &str = "amqp:connection:forced";
/// amqp:connection:framing-error
pub const CONNECTION_FRAMING_ERROR: &str = "amqp:connection:framing-error";
/// amqp:session:handle-in-use
pub const SESSION_HANDLE_IN_USE: &str = "amqp:session:handle-in-use";
/// amqp:link:message-size-exceeded
pub const MESSAGE_SIZE_EXCEEDED: &str = "amqp:link:message-size-exceeded";

// ----- Service Bus error conditions -----------------------------------------------------------

/// The entity to create exists already.
pub const ENTITY_ALREADY_EXISTS: &str = "com.microsoft:entity-already-exists";
/// A bad argument (the SDKs raise their argument/bad-request error).
pub const ARGUMENT_ERROR: &str = "com.microsoft:argument-error";
/// The message lock expired or the lock token is unknown.
pub const MESSAGE_LOCK_LOST: &str = "com.microsoft:message-lock-lost";
/// No message with the given sequence number.
pub const MESSAGE_NOT_FOUND: &str = "com.microsoft:message-not-found";
/// The session lock expired or is held by another receiver.
pub const SESSION_LOCK_LOST: &str = "com.microsoft:session-lock-lost";
/// The requested session is locked by another receiver.
pub const SESSION_CANNOT_BE_LOCKED: &str = "com.microsoft:session-cannot-be-locked";
/// The entity (or its send/receive side) is disabled.
pub const ENTITY_DISABLED: &str = "com.microsoft:entity-disabled";
/// The service cannot take the request now (we use it while shutting down).
pub const SERVER_BUSY: &str = "com.microsoft:server-busy";
/// The operation timed out (no session to accept within the timeout).
pub const TIMEOUT: &str = "com.microsoft:timeout";
/// The rejected-outcome condition that asks for dead-lettering.
pub const DEAD_LETTER: &str = "com.microsoft:dead-letter";

// ----- link properties and filters ------------------------------------------------------------

/// The session-filter key of a session receiver's source.
pub const SESSION_FILTER: &str = "com.microsoft:session-filter";
/// The attach property carrying a session's lock expiry (.NET ticks).
pub const LOCKED_UNTIL_UTC: &str = "com.microsoft:locked-until-utc";
/// The attach property carrying the client's operation timeout (ms).
pub const OPERATION_TIMEOUT: &str = "com.microsoft:timeout";

// ----- SASL -----------------------------------------------------------------------------------

/// The SASL mechanisms we offer (all accepted without checking credentials; `MSSBCBS` is the
/// one the SDKs pick, then authenticate through `$cbs`).
pub const SASL_MECHANISMS: [&str; 4] = ["MSSBCBS", "ANONYMOUS", "PLAIN", "EXTERNAL"];

// ----- `$management` operations (the request's `operation` application property) -------------

/// Peek messages from a sequence number.
pub const OP_PEEK_MESSAGE: &str = "com.microsoft:peek-message";
/// Renew message locks.
pub const OP_RENEW_LOCK: &str = "com.microsoft:renew-lock";
/// Schedule messages.
pub const OP_SCHEDULE_MESSAGE: &str = "com.microsoft:schedule-message";
/// Cancel scheduled messages.
pub const OP_CANCEL_SCHEDULED_MESSAGE: &str = "com.microsoft:cancel-scheduled-message";
/// Settle messages by lock token.
pub const OP_UPDATE_DISPOSITION: &str = "com.microsoft:update-disposition";
/// Receive deferred messages by sequence number.
pub const OP_RECEIVE_BY_SEQUENCE_NUMBER: &str = "com.microsoft:receive-by-sequence-number";
/// Renew a session lock.
pub const OP_RENEW_SESSION_LOCK: &str = "com.microsoft:renew-session-lock";
/// Read a session's state.
pub const OP_GET_SESSION_STATE: &str = "com.microsoft:get-session-state";
/// Write a session's state.
pub const OP_SET_SESSION_STATE: &str = "com.microsoft:set-session-state";
/// List the sessions with messages.
pub const OP_GET_MESSAGE_SESSIONS: &str = "com.microsoft:get-message-sessions";
/// Add a subscription rule.
pub const OP_ADD_RULE: &str = "com.microsoft:add-rule";
/// Remove a subscription rule.
pub const OP_REMOVE_RULE: &str = "com.microsoft:remove-rule";
/// List a subscription's rules.
pub const OP_ENUMERATE_RULES: &str = "com.microsoft:enumerate-rules";

// ----- message annotations (azure-sdk-for-python `_common/constants.py` `_X_OPT_*`) -----------

/// The message's sequence number.
pub const X_OPT_SEQUENCE_NUMBER: &str = "x-opt-sequence-number";
/// When the message was enqueued.
pub const X_OPT_ENQUEUED_TIME: &str = "x-opt-enqueued-time";
/// The sequence number it had when first enqueued (before auto-forwarding / dead-lettering).
pub const X_OPT_ENQUEUE_SEQUENCE_NUMBER: &str = "x-opt-enqueue-sequence-number";
/// When the message's lock expires.
pub const X_OPT_LOCKED_UNTIL: &str = "x-opt-locked-until";
/// The message's lock token.
pub const X_OPT_LOCK_TOKEN: &str = "x-opt-lock-token";
/// When a scheduled message becomes active.
pub const X_OPT_SCHEDULED_ENQUEUE_TIME: &str = "x-opt-scheduled-enqueue-time";
/// The partition key.
pub const X_OPT_PARTITION_KEY: &str = "x-opt-partition-key";
/// The entity a dead-lettered message came from.
pub const X_OPT_DEADLETTER_SOURCE: &str = "x-opt-deadletter-source";
/// 0 active, 1 deferred, 2 scheduled.
pub const X_OPT_MESSAGE_STATE: &str = "x-opt-message-state";

// ----- dead-letter details (the `info` of a dead-letter `rejected` error) ---------------------

/// The dead-letter reason.
pub const DEAD_LETTER_REASON: &str = "DeadLetterReason";
/// The dead-letter error description.
pub const DEAD_LETTER_ERROR_DESCRIPTION: &str = "DeadLetterErrorDescription";

// ----- request/response nodes and properties --------------------------------------------------

/// The claims-based-security node.
pub const CBS_NODE: &str = "$cbs";
/// The management node (alone, or as the last segment of `{entity}/$management`).
pub const MANAGEMENT_NODE: &str = "$management";
/// The application property naming a `$cbs` / `$management` request's operation.
pub const OPERATION: &str = "operation";
/// The `$cbs` operation that presents a token.
pub const PUT_TOKEN: &str = "put-token";
/// The status of a `$cbs` response (CBS spelling).
pub const CBS_STATUS_CODE: &str = "status-code";
/// The status text of a `$cbs` response (CBS spelling).
pub const CBS_STATUS_DESCRIPTION: &str = "status-description";
/// The status of a `$management` response.
pub const STATUS_CODE: &str = "statusCode";
/// The status text of a `$management` response.
pub const STATUS_DESCRIPTION: &str = "statusDescription";
/// The error condition of a failed `$management` response.
pub const ERROR_CONDITION: &str = "errorCondition";
