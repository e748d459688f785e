//! The one operation type: every state change is a variant of [`Op`].
//!
//! The broker applies an [`OpRecord`] deterministically; the journal records it; recovery is
//! "load snapshot, replay journal". Anything random (lock tokens) or time-dependent (the
//! timestamp) is chosen by the caller and carried inside the record, so replay needs no clock.

use crate::storage::schema::RECORD_VERSION;
use crate::time::Millis;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use super::entity::{EntityProps, Rule};
use super::message::NewMessage;
use super::value::Value;

/// An operation with the time it happened.
///
/// Encoded as `{"v":RECORD_VERSION,"at":…,"op":…}`: the record version first, so storage
/// reads it without decoding the record (see [`crate::storage::schema`]). Decoding ignores
/// `v` (storage refuses newer versions before replay); payloads written before versions were
/// explicit have none and are version 1.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct OpRecord {
    pub at: Millis,
    pub op: Op,
}

impl Serialize for OpRecord {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("OpRecord", 3)?;
        st.serialize_field("v", &RECORD_VERSION)?;
        st.serialize_field("at", &self.at)?;
        st.serialize_field("op", &self.op)?;
        st.end()
    }
}

impl OpRecord {
    /// The record's operation-log payload, from its operation already encoded as JSON: the same
    /// bytes as `serde_json::to_vec(&OpRecord { at, op })`. Lets the service encode the
    /// operation (the costly part) before it takes the broker lock, and stamp the time under it.
    pub fn payload(at: Millis, op_json: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(op_json.len() + 40);
        out.extend_from_slice(b"{\"v\":");
        out.extend_from_slice(RECORD_VERSION.to_string().as_bytes());
        out.extend_from_slice(b",\"at\":");
        out.extend_from_slice(at.to_string().as_bytes());
        out.extend_from_slice(b",\"op\":");
        out.extend_from_slice(op_json);
        out.push(b'}');
        out
    }
}

/// A receivable path: a queue or a subscription, or the dead-letter sub-queue of either.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct QueuePath {
    /// Queue name, or the topic name for a subscription.
    pub entity: String,
    /// Subscription name when the path is a subscription.
    pub subscription: Option<String>,
    pub dead_letter: bool,
}

impl QueuePath {
    pub fn queue(name: &str) -> Self {
        QueuePath {
            entity: name.to_string(),
            subscription: None,
            dead_letter: false,
        }
    }
    pub fn subscription(topic: &str, sub: &str) -> Self {
        QueuePath {
            entity: topic.to_string(),
            subscription: Some(sub.to_string()),
            dead_letter: false,
        }
    }
    pub fn dlq(mut self) -> Self {
        self.dead_letter = true;
        self
    }
    /// Parses Azure's path form (the inverse of [`QueuePath::display`]): `q` (names may hold
    /// `/`), `t/Subscriptions/s`, each optionally followed by `/$DeadLetterQueue`; the keywords
    /// are matched case-insensitively, as the service does. The one parser of entity paths for
    /// the REST and AMQP planes.
    pub fn parse(path: &str) -> Result<Self, String> {
        let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        Self::parse_segments(&segs)
    }

    /// [`QueuePath::parse`] of a path already split at `/` (the REST router's segments).
    pub fn parse_segments(segs: &[&str]) -> Result<Self, String> {
        let mut segs = segs.to_vec();
        let mut dead_letter = false;
        if segs
            .last()
            .is_some_and(|s| s.eq_ignore_ascii_case("$DeadLetterQueue"))
        {
            dead_letter = true;
            segs.pop();
        }
        if segs.is_empty() {
            return Err("The entity path is empty.".to_string());
        }
        match segs
            .iter()
            .position(|s| s.eq_ignore_ascii_case("subscriptions"))
        {
            Some(i) if i > 0 && i + 2 == segs.len() => Ok(QueuePath {
                entity: segs[..i].join("/"),
                subscription: Some(segs[i + 1].to_string()),
                dead_letter,
            }),
            Some(_) => Err("The subscription path is malformed.".to_string()),
            None => Ok(QueuePath {
                entity: segs.join("/"),
                subscription: None,
                dead_letter,
            }),
        }
    }

    /// Azure's path form: `q`, `t/Subscriptions/s`, with `/$DeadLetterQueue` appended.
    pub fn display(&self) -> String {
        let mut s = match &self.subscription {
            Some(sub) => format!("{}/Subscriptions/{}", self.entity, sub),
            None => self.entity.clone(),
        };
        if self.dead_letter {
            s.push_str("/$DeadLetterQueue");
        }
        s
    }
}

/// How a receive takes messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReceiveMode {
    PeekLock,
    ReceiveAndDelete,
}

/// What a receiver does with a locked message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Settlement {
    Complete,
    /// Release the lock; the message returns with DeliveryCount + 1 on the next receive.
    Abandon {
        properties: BTreeMap<String, Value>,
    },
    DeadLetter {
        reason: Option<String>,
        description: Option<String>,
        properties: BTreeMap<String, Value>,
    },
    Defer {
        properties: BTreeMap<String, Value>,
    },
    /// Give the message back as if it had not been delivered (AMQP `released`): the lock is
    /// dropped and the delivery count is not charged, because the client never processed it
    /// (a receiver releases what arrived outside a receive call, or what it prefetched).
    Release,
}

/// Which session a session receiver asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SessionSelect {
    /// Whichever session has a message and is not locked.
    Next,
    Id(String),
}

/// A session lock a receiver holds: the session id and the token it was accepted with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRef {
    pub id: String,
    pub token: uuid::Uuid,
}

/// Every state change the broker knows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Op {
    CreateQueue {
        name: String,
        props: EntityProps,
    },
    UpdateQueue {
        name: String,
        props: EntityProps,
    },
    DeleteQueue {
        name: String,
    },
    CreateTopic {
        name: String,
        props: EntityProps,
    },
    UpdateTopic {
        name: String,
        props: EntityProps,
    },
    DeleteTopic {
        name: String,
    },
    CreateSubscription {
        topic: String,
        name: String,
        props: EntityProps,
        /// The rule to create instead of `$Default` (DefaultRuleDescription), if any.
        rule: Option<Rule>,
    },
    UpdateSubscription {
        topic: String,
        name: String,
        props: EntityProps,
    },
    DeleteSubscription {
        topic: String,
        name: String,
    },
    CreateRule {
        topic: String,
        subscription: String,
        rule: Rule,
    },
    UpdateRule {
        topic: String,
        subscription: String,
        rule: Rule,
    },
    DeleteRule {
        topic: String,
        subscription: String,
        name: String,
    },
    /// Send to a queue or topic (a batch is one operation: all or nothing).
    Send {
        entity: String,
        messages: Vec<NewMessage>,
    },
    /// Take up to `max` messages; `lock_tokens` has one pre-chosen token per possible message.
    Receive {
        from: QueuePath,
        mode: ReceiveMode,
        max: u32,
        lock_tokens: Vec<uuid::Uuid>,
        /// Required on session-enabled entities: the session lock the receiver holds.
        session: Option<SessionRef>,
    },
    /// Receive deferred messages by sequence number.
    ReceiveDeferred {
        from: QueuePath,
        sequence_numbers: Vec<u64>,
        mode: ReceiveMode,
        lock_tokens: Vec<uuid::Uuid>,
    },
    Settle {
        from: QueuePath,
        lock_token: uuid::Uuid,
        settlement: Settlement,
    },
    RenewLock {
        from: QueuePath,
        lock_token: uuid::Uuid,
    },
    CancelScheduled {
        entity: String,
        sequence_numbers: Vec<u64>,
    },
    /// Lock a session for one receiver (a specific id, or the next one with messages).
    AcceptSession {
        from: QueuePath,
        select: SessionSelect,
        token: uuid::Uuid,
    },
    SetSessionState {
        from: QueuePath,
        session: SessionRef,
        state: Option<Vec<u8>>,
    },
    RenewSessionLock {
        from: QueuePath,
        session: SessionRef,
    },
    ReleaseSession {
        from: QueuePath,
        session: SessionRef,
    },
    /// Process everything due at this time: lock expiry, TTL expiry, scheduled enqueue,
    /// auto-delete-on-idle. Emitted by the timer like any client operation.
    Tick,
    /// Delete every entity and message.
    PurgeAll,
    /// A committed AMQP transaction: its sends and settlements, applied all or nothing as one
    /// record, so a crash leaves a transaction wholly applied or not at all (see
    /// [`super::txn`]). Added after stored-format v1; older logs simply never contain it.
    Commit {
        ops: Vec<Op>,
    },
    /// Takes the next `count` sequence numbers of a queue or topic without storing anything:
    /// what a `schedule-message` request made inside a transaction answers with at once (the
    /// service returns the numbers before commit). The messages follow in the transaction's
    /// [`Op::Commit`] as [`Op::SendReserved`]; a rollback leaves a gap in the numbering.
    /// Journaled like every operation, so replay advances the counter the same way. Added
    /// after stored-format v1; older logs simply never contain it.
    ReserveSequenceNumbers {
        entity: String,
        count: u32,
    },
    /// Messages stored with the sequence numbers [`Op::ReserveSequenceNumbers`] gave them (a
    /// transaction's scheduled messages, applied at its commit). Added after stored-format v1.
    SendReserved {
        entity: String,
        messages: Vec<ReservedMessage>,
    },
}

/// A message and the sequence number reserved for it (see [`Op::SendReserved`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReservedMessage {
    pub sequence_number: u64,
    pub message: NewMessage,
}

impl Op {
    /// A short name for logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Op::CreateQueue { .. } => "CreateQueue",
            Op::UpdateQueue { .. } => "UpdateQueue",
            Op::DeleteQueue { .. } => "DeleteQueue",
            Op::CreateTopic { .. } => "CreateTopic",
            Op::UpdateTopic { .. } => "UpdateTopic",
            Op::DeleteTopic { .. } => "DeleteTopic",
            Op::CreateSubscription { .. } => "CreateSubscription",
            Op::UpdateSubscription { .. } => "UpdateSubscription",
            Op::DeleteSubscription { .. } => "DeleteSubscription",
            Op::CreateRule { .. } => "CreateRule",
            Op::UpdateRule { .. } => "UpdateRule",
            Op::DeleteRule { .. } => "DeleteRule",
            Op::Send { .. } => "Send",
            Op::Receive { .. } => "Receive",
            Op::ReceiveDeferred { .. } => "ReceiveDeferred",
            Op::Settle { .. } => "Settle",
            Op::RenewLock { .. } => "RenewLock",
            Op::CancelScheduled { .. } => "CancelScheduled",
            Op::AcceptSession { .. } => "AcceptSession",
            Op::SetSessionState { .. } => "SetSessionState",
            Op::RenewSessionLock { .. } => "RenewSessionLock",
            Op::ReleaseSession { .. } => "ReleaseSession",
            Op::Tick => "Tick",
            Op::PurgeAll => "PurgeAll",
            Op::Commit { .. } => "Commit",
            Op::ReserveSequenceNumbers { .. } => "ReserveSequenceNumbers",
            Op::SendReserved { .. } => "SendReserved",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_matches_encoding_the_whole_record() {
        let ops = [
            Op::CreateQueue {
                name: "q \"1\"".into(),
                props: EntityProps::default(),
            },
            Op::Send {
                entity: "q".into(),
                messages: vec![NewMessage {
                    message_id: "m\u{e9}".into(),
                    body: vec![0, 1, 2, 255],
                    ..NewMessage::default()
                }],
            },
        ];
        for at in [0, 1_700_000_000_123, -5, i64::MAX, i64::MIN] {
            for op in &ops {
                let rec = OpRecord { at, op: op.clone() };
                let whole = serde_json::to_vec(&rec).expect("encode record");
                let op_json = serde_json::to_vec(op).expect("encode op");
                assert_eq!(OpRecord::payload(at, &op_json), whole);
                assert!(whole.starts_with(b"{\"v\":1,\"at\":"));
                let back: OpRecord = serde_json::from_slice(&whole).expect("decode record");
                assert_eq!(back, rec);
            }
        }
    }

    #[test]
    fn records_written_before_versions_were_explicit_decode() {
        let rec: OpRecord =
            serde_json::from_slice(br#"{"at":5,"op":"Tick"}"#).expect("decode version 1");
        assert_eq!(
            rec,
            OpRecord {
                at: 5,
                op: Op::Tick
            }
        );
    }
}

#[cfg(test)]
mod path_tests {
    use super::QueuePath;

    #[test]
    fn paths_parse_and_display_round_trip() {
        assert_eq!(QueuePath::parse("q").unwrap(), QueuePath::queue("q"));
        assert_eq!(
            QueuePath::parse_segments(&["a", "b", "$DeadLetterQueue"]).unwrap(),
            QueuePath::queue("a/b").dlq()
        );
        assert_eq!(
            QueuePath::parse("t/subscriptions/s").unwrap(),
            QueuePath::subscription("t", "s")
        );
        assert!(QueuePath::parse("t/Subscriptions").is_err());
        assert!(QueuePath::parse("$deadletterqueue").is_err());
        assert!(QueuePath::parse("").is_err());
        for p in [
            QueuePath::queue("a/b"),
            QueuePath::subscription("t", "s").dlq(),
        ] {
            assert_eq!(QueuePath::parse(&p.display()).unwrap(), p);
        }
    }
}
