//! Messages: what a client sends ([`NewMessage`]) and what the broker stores ([`Message`]).

use crate::time::{Millis, TimeSpan};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

use super::value::Value;

/// A message as a sender supplies it, before the broker assigns sequence number and times.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct NewMessage {
    pub message_id: String,
    #[serde(with = "body_b64")]
    pub body: Vec<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reply_to_session_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partition_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_to_live: Option<TimeSpan>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scheduled_enqueue_time: Option<Millis>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub properties: BTreeMap<String, Value>,
    /// The AMQP body section as the sender encoded it, when it was `amqp-value` or
    /// `amqp-sequence` (Service Bus keeps the section the sender used; the SDKs expose it as
    /// the raw AMQP body type). `body` then holds the value's plain form for REST and size
    /// accounting. Absent (`data` bodies, REST sends, data stored before it existed) means a
    /// `data` section with `body`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_section: Option<BodySection>,
}

/// An `amqp-value` or `amqp-sequence` body kept as encoded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BodySection {
    pub kind: BodyKind,
    /// The encoded section(s), descriptors included, exactly as received.
    #[serde(with = "body_b64")]
    pub encoded: Vec<u8>,
}

/// Which AMQP body section a message carries besides `data`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum BodyKind {
    Value,
    Sequence,
}

/// Where a stored message is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum MessageState {
    #[default]
    Active,
    Deferred,
    Scheduled,
}

impl MessageState {
    pub fn as_str(self) -> &'static str {
        match self {
            MessageState::Active => "Active",
            MessageState::Deferred => "Deferred",
            MessageState::Scheduled => "Scheduled",
        }
    }
}

/// A peek-lock held on a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lock {
    pub token: uuid::Uuid,
    pub locked_until: Millis,
}

/// A message stored in a queue, a subscription or a dead-letter sub-queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub sequence_number: u64,
    /// What the sender gave: immutable once stored, so the copies a topic fans out to its
    /// subscriptions (and a message moved to a dead-letter queue or forwarded) share one
    /// allocation of body and properties; a change (rule actions, dead-letter reasons) goes
    /// through [`Message::content_mut`] and copies only that message's content. Serialized
    /// exactly as the `NewMessage` itself (serde's `rc` feature), so stored data is unchanged.
    pub content: Arc<NewMessage>,
    pub enqueued_time: Millis,
    /// Absolute expiry: enqueued time + effective TTL ([`crate::time::MAX_MILLIS`] = never).
    pub expires_at: Millis,
    /// The effective time to live (min of the message's and the entity's default).
    pub ttl: TimeSpan,
    pub delivery_count: u32,
    pub state: MessageState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lock: Option<Lock>,
    /// Set when a dead-lettered message was forwarded: where it was dead-lettered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letter_source: Option<String>,
    /// The sequence number the message had in the entity it was first sent to.
    pub enqueued_sequence_number: u64,
}

impl Message {
    /// Bytes counted toward the entity's SizeInBytes and the message size limit.
    pub fn size(&self) -> usize {
        self.content.size()
    }
    pub fn is_locked_at(&self, now: Millis) -> bool {
        self.lock.map(|l| l.locked_until > now).unwrap_or(false)
    }
    /// The content for changing: this message's own copy (cloned first if it is shared).
    pub fn content_mut(&mut self) -> &mut NewMessage {
        Arc::make_mut(&mut self.content)
    }
}

impl NewMessage {
    /// Bytes counted toward the size limit: body plus properties, roughly as the service does.
    pub fn size(&self) -> usize {
        let opt = |o: &Option<String>| o.as_ref().map(|s| s.len()).unwrap_or(0);
        self.body.len()
            + self.message_id.len()
            + opt(&self.correlation_id)
            + opt(&self.session_id)
            + opt(&self.label)
            + opt(&self.to)
            + opt(&self.reply_to)
            + opt(&self.reply_to_session_id)
            + opt(&self.content_type)
            + self
                .properties
                .iter()
                .map(|(k, v)| k.len() + v.size())
                .sum::<usize>()
    }
}

/// Bodies travel as base64 in JSON (operation log, snapshots, exports).
pub mod body_b64 {
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(v))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(s.as_bytes())
            .map_err(serde::de::Error::custom)
    }
}
