//! Messages: what a client sends ([`NewMessage`]) and what the broker stores ([`Message`], its
//! content in the compact [`Content`]).

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
    /// What the sender gave, in its compact stored form ([`Content`]): immutable once stored,
    /// so the copies a topic fans out to its subscriptions (and a message moved to a
    /// dead-letter queue or forwarded) share one allocation of body and properties; a change
    /// (rule actions, dead-letter reasons) goes through [`Message::edit_content`] and copies
    /// only that message's content. Serialized exactly as the `NewMessage` it came from, so
    /// stored data is unchanged.
    pub content: Arc<Content>,
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
    pub dead_letter_source: Option<Box<str>>,
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
    /// Changes the content through its sender form: this message's own copy is edited (cloned
    /// first only if it is shared with other copies), so the others keep theirs. Returns what
    /// `edit` returns.
    pub fn edit_content<R>(&mut self, edit: impl FnOnce(&mut NewMessage) -> R) -> R {
        Arc::make_mut(&mut self.content).edit(edit)
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

/// A stored message's content: what the sender gave, laid out for holding many in memory.
/// Almost every message carries only an id and a body, so those two are inline and every
/// rarely set header lives behind one pointer that is `None` when all of them are empty:
/// 40 bytes plus the id and body bytes, where a [`NewMessage`] takes ~330. Built from the
/// `NewMessage` when the message is stored (id and body are moved, not copied) and
/// serialized exactly as that `NewMessage`, so the stored format does not depend on it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Content {
    message_id: Box<str>,
    body: Box<[u8]>,
    /// The other fields: the sender's `NewMessage` with its id and body moved out (so both
    /// are always empty here). `None` exactly when every other field is empty too, which
    /// the conversions keep and the derived equality relies on.
    rare: Option<Box<NewMessage>>,
}

/// What [`Content::properties`] lends when a message has none.
static NO_PROPERTIES: BTreeMap<String, Value> = BTreeMap::new();

impl From<NewMessage> for Content {
    fn from(mut m: NewMessage) -> Self {
        let message_id = std::mem::take(&mut m.message_id).into_boxed_str();
        let body = std::mem::take(&mut m.body).into_boxed_slice();
        Content {
            message_id,
            body,
            rare: (m != NewMessage::default()).then(|| Box::new(m)),
        }
    }
}

impl From<Content> for NewMessage {
    fn from(c: Content) -> Self {
        let mut m = c.rare.map(|r| *r).unwrap_or_default();
        m.message_id = c.message_id.into_string();
        m.body = c.body.into_vec();
        m
    }
}

/// Lets a `NewMessage` stand where a message's content goes (`content: m.into()`).
impl From<NewMessage> for Arc<Content> {
    fn from(m: NewMessage) -> Self {
        Arc::new(Content::from(m))
    }
}

/// A read accessor per optional string header of the rare part: `None` when not set.
macro_rules! rare_headers {
    ($($name:ident),*) => {
        $(
            /// The sender's header of this name, if it was set.
            pub fn $name(&self) -> Option<&str> {
                self.rare.as_ref()?.$name.as_deref()
            }
        )*
    };
}

/// Read access only: the fields are private so that `rare` stays `None` exactly when every
/// rare field is empty; changes go through [`Content::edit`].
impl Content {
    pub fn message_id(&self) -> &str {
        &self.message_id
    }
    pub fn body(&self) -> &[u8] {
        &self.body
    }
    rare_headers!(
        correlation_id,
        session_id,
        label,
        to,
        reply_to,
        reply_to_session_id,
        content_type,
        partition_key
    );
    pub fn time_to_live(&self) -> Option<TimeSpan> {
        self.rare.as_ref()?.time_to_live
    }
    pub fn scheduled_enqueue_time(&self) -> Option<Millis> {
        self.rare.as_ref()?.scheduled_enqueue_time
    }
    /// The application properties (an empty map when there are none).
    pub fn properties(&self) -> &BTreeMap<String, Value> {
        self.rare.as_ref().map_or(&NO_PROPERTIES, |r| &r.properties)
    }
    pub fn body_section(&self) -> Option<&BodySection> {
        self.rare.as_ref()?.body_section.as_ref()
    }

    /// Bytes counted toward the size limit: the same as the `NewMessage` it came from (the
    /// rare part's id and body are empty, so it counts only the other fields).
    pub fn size(&self) -> usize {
        self.message_id.len() + self.body.len() + self.rare.as_ref().map_or(0, |r| r.size())
    }

    /// A copy in the sender form (the body is copied): for sending the content again.
    pub fn to_new_message(&self) -> NewMessage {
        NewMessage::from(self.clone())
    }

    /// Edits the content in its sender form: id, body and headers are moved out and back (no
    /// copy), and the compact layout is restored afterwards.
    pub fn edit<R>(&mut self, edit: impl FnOnce(&mut NewMessage) -> R) -> R {
        let mut m = NewMessage::from(std::mem::take(self));
        let out = edit(&mut m);
        *self = Content::from(m);
        out
    }

    /// A borrowed view with `NewMessage`'s serde layout.
    fn view(&self) -> ContentView<'_> {
        ContentView {
            message_id: &self.message_id,
            body: &self.body,
            correlation_id: self.correlation_id(),
            session_id: self.session_id(),
            label: self.label(),
            to: self.to(),
            reply_to: self.reply_to(),
            reply_to_session_id: self.reply_to_session_id(),
            content_type: self.content_type(),
            partition_key: self.partition_key(),
            time_to_live: self.time_to_live(),
            scheduled_enqueue_time: self.scheduled_enqueue_time(),
            properties: self.properties(),
            body_section: self.body_section(),
        }
    }
}

/// [`Content`] serialized without copying: the same field names, order and
/// `skip_serializing_if` rules as [`NewMessage`] (the stored format), borrowing instead of
/// owning. A unit test checks both serialize byte for byte alike.
#[derive(Serialize)]
struct ContentView<'a> {
    message_id: &'a str,
    #[serde(with = "body_b64")]
    body: &'a [u8],
    #[serde(skip_serializing_if = "Option::is_none")]
    correlation_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    session_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    label: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    to: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reply_to: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reply_to_session_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content_type: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    partition_key: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    time_to_live: Option<TimeSpan>,
    #[serde(skip_serializing_if = "Option::is_none")]
    scheduled_enqueue_time: Option<Millis>,
    #[serde(skip_serializing_if = "no_properties")]
    properties: &'a BTreeMap<String, Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    body_section: Option<&'a BodySection>,
}

fn no_properties(p: &&BTreeMap<String, Value>) -> bool {
    p.is_empty()
}

impl Serialize for Content {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.view().serialize(s)
    }
}

impl<'de> Deserialize<'de> for Content {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        NewMessage::deserialize(d).map(Content::from)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn every_field() -> NewMessage {
        let mut properties = BTreeMap::new();
        properties.insert("k".to_string(), Value::String("v".into()));
        properties.insert("n".to_string(), Value::Int(7));
        NewMessage {
            message_id: "id-1".into(),
            body: b"hello \x00\xff".to_vec(),
            correlation_id: Some("c".into()),
            session_id: Some("s".into()),
            label: Some("l".into()),
            to: Some("t".into()),
            reply_to: Some("r".into()),
            reply_to_session_id: Some("rs".into()),
            content_type: Some("text/plain".into()),
            partition_key: Some("pk".into()),
            time_to_live: Some(TimeSpan::from_secs(60)),
            scheduled_enqueue_time: Some(1_700_000_000_000),
            properties,
            body_section: Some(BodySection {
                kind: BodyKind::Value,
                encoded: vec![0, 0x53, 0x77, 0xa1, 1, b'x'],
            }),
        }
    }

    /// Messages with every field, none, and each rare field alone (an empty string counts
    /// as set).
    fn samples() -> Vec<NewMessage> {
        let full = every_field();
        let bare = NewMessage {
            message_id: full.message_id.clone(),
            body: full.body.clone(),
            ..NewMessage::default()
        };
        let mut out = vec![full.clone(), bare.clone(), NewMessage::default()];
        let headers: [fn(&mut NewMessage) -> &mut Option<String>; 8] = [
            |m| &mut m.correlation_id,
            |m| &mut m.session_id,
            |m| &mut m.label,
            |m| &mut m.to,
            |m| &mut m.reply_to,
            |m| &mut m.reply_to_session_id,
            |m| &mut m.content_type,
            |m| &mut m.partition_key,
        ];
        for h in headers {
            let mut m = bare.clone();
            *h(&mut m) = Some(String::new());
            out.push(m);
        }
        let one = |f: fn(&mut NewMessage)| {
            let mut m = bare.clone();
            f(&mut m);
            m
        };
        out.push(one(|m| m.time_to_live = Some(TimeSpan(0))));
        out.push(one(|m| m.scheduled_enqueue_time = Some(0)));
        out.push(one(|m| m.properties = every_field().properties));
        out.push(one(|m| m.body_section = every_field().body_section));
        out
    }

    #[test]
    fn content_serializes_byte_for_byte_as_its_new_message() {
        for m in samples() {
            let want = serde_json::to_string(&m).unwrap();
            let c = Content::from(m.clone());
            assert_eq!(serde_json::to_string(&c).unwrap(), want);
            assert_eq!(
                serde_json::to_string_pretty(&c).unwrap(),
                serde_json::to_string_pretty(&m).unwrap()
            );
            // And back, through the stored form and through the sender form.
            let read: Content = serde_json::from_str(&want).unwrap();
            assert_eq!(read, c);
            assert_eq!(NewMessage::from(read), m);
            assert_eq!(c.size(), m.size());
            assert_eq!(c.to_new_message(), m);
        }
    }

    #[test]
    fn accessors_read_what_the_sender_gave() {
        let m = every_field();
        let c = Content::from(m.clone());
        assert_eq!(c.message_id(), m.message_id);
        assert_eq!(c.body(), m.body);
        assert_eq!(c.correlation_id(), m.correlation_id.as_deref());
        assert_eq!(c.session_id(), m.session_id.as_deref());
        assert_eq!(c.label(), m.label.as_deref());
        assert_eq!(c.to(), m.to.as_deref());
        assert_eq!(c.reply_to(), m.reply_to.as_deref());
        assert_eq!(c.reply_to_session_id(), m.reply_to_session_id.as_deref());
        assert_eq!(c.content_type(), m.content_type.as_deref());
        assert_eq!(c.partition_key(), m.partition_key.as_deref());
        assert_eq!(c.time_to_live(), m.time_to_live);
        assert_eq!(c.scheduled_enqueue_time(), m.scheduled_enqueue_time);
        assert_eq!(c.properties(), &m.properties);
        assert_eq!(c.body_section(), m.body_section.as_ref());
        let bare = Content::from(NewMessage {
            message_id: "x".into(),
            ..NewMessage::default()
        });
        assert!(bare.rare.is_none());
        assert!(bare.properties().is_empty());
        assert_eq!(bare.session_id(), None);
    }

    /// The memory target of issue 19: id and body inline, the rest behind one pointer.
    #[test]
    #[cfg(target_pointer_width = "64")]
    fn stored_content_is_compact() {
        let (content, message) = (size_of::<Content>(), size_of::<Message>());
        eprintln!(
            "size_of: Content {content} B (+16 B Arc header), Message {message} B, NewMessage {} B",
            size_of::<NewMessage>()
        );
        assert!(content <= 40, "Content is {content} bytes");
    }

    #[test]
    fn editing_keeps_the_body_and_unshares_only_the_edited_copy() {
        let mut a = Message {
            sequence_number: 1,
            content: every_field().into(),
            enqueued_time: 0,
            expires_at: crate::time::MAX_MILLIS,
            ttl: TimeSpan::MAX,
            delivery_count: 0,
            state: MessageState::Active,
            lock: None,
            dead_letter_source: None,
            enqueued_sequence_number: 1,
        };
        // Unique: edited in place, the body allocation moves out and back.
        let body = a.content.body().as_ptr();
        let old = a.edit_content(|c| c.label.replace("new".into()));
        assert_eq!(old.as_deref(), Some("l"));
        assert_eq!(a.content.label(), Some("new"));
        assert_eq!(a.content.body().as_ptr(), body);
        // Shared: the other copy keeps its content.
        let b = a.clone();
        a.edit_content(|c| c.properties.clear());
        assert!(a.content.properties().is_empty());
        assert_eq!(b.content.properties().len(), 2);
        assert!(!Arc::ptr_eq(&a.content, &b.content));
        // Emptying every rare field gives the compact form back (equality relies on it).
        a.edit_content(|c| *c = NewMessage::default());
        assert!(a.content.rare.is_none());
        assert_eq!(*a.content, Content::default());
    }
}
