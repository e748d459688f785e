//! AMQP message ⇄ broker message.
//!
//! Sections are decoded generically (`serde_amqp::Value`) rather than through typed section
//! structs, so that whatever a client puts in application properties (any simple type) or
//! message ids (string, uuid, ulong, binary) is accepted; outgoing sections are built the same
//! way so every field the SDKs read is encoded explicitly (in particular `header.delivery-count`,
//! which a typed encoder would drop when it is 0, leaving the SDK's `delivery_count` at None).
//!
//! Service Bus mapping (properties section / annotations / header):
//! message-id, correlation-id, to, reply-to, subject (Label), content-type, group-id (SessionId),
//! reply-to-group-id (ReplyToSessionId); `x-opt-scheduled-enqueue-time`, `x-opt-partition-key`
//! on send; `x-opt-sequence-number`, `x-opt-enqueued-time`, `x-opt-locked-until`,
//! `x-opt-lock-token`, `x-opt-enqueue-sequence-number`, `x-opt-deadletter-source`,
//! `x-opt-message-state` on receive; header ttl and delivery-count.

use super::frames::{split_value, FrameError};
use super::symbols::{
    X_OPT_DEADLETTER_SOURCE, X_OPT_ENQUEUED_TIME, X_OPT_ENQUEUE_SEQUENCE_NUMBER,
    X_OPT_LOCKED_UNTIL, X_OPT_LOCK_TOKEN, X_OPT_MESSAGE_STATE, X_OPT_PARTITION_KEY,
    X_OPT_SCHEDULED_ENQUEUE_TIME, X_OPT_SEQUENCE_NUMBER,
};
use crate::broker::message::{BodyKind, BodySection, Message, MessageState, NewMessage};
use crate::broker::value::Value;
use crate::time::{Millis, TimeSpan, MAX_MILLIS};
use serde_amqp::described::Described;
use serde_amqp::descriptor::Descriptor;
use serde_amqp::primitives::{Array, OrderedMap, Symbol, Timestamp};
use serde_amqp::Value as AV;
use serde_bytes::ByteBuf;
use std::collections::BTreeMap;

/// The message-format of a Service Bus batch: one envelope whose data sections are messages.
pub const BATCH_FORMAT: u32 = 0x8001_3700;

const HEADER: u64 = 0x70;
const DELIVERY_ANNOTATIONS: u64 = 0x71;
const MESSAGE_ANNOTATIONS: u64 = 0x72;
const PROPERTIES: u64 = 0x73;
const APPLICATION_PROPERTIES: u64 = 0x74;
const DATA: u64 = 0x75;
const AMQP_SEQUENCE: u64 = 0x76;
const AMQP_VALUE: u64 = 0x77;
const FOOTER: u64 = 0x78;

/// Why a message could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    #[error("{0}")]
    Frame(#[from] FrameError),
    #[error("message section could not be decoded: {0}")]
    Codec(String),
    #[error("{0}")]
    Invalid(String),
}

impl From<serde_amqp::Error> for ConvertError {
    fn from(e: serde_amqp::Error) -> Self {
        ConvertError::Codec(e.to_string())
    }
}

/// The body of an AMQP message.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum AmqpBody {
    #[default]
    Empty,
    Data(Vec<Vec<u8>>),
    Value(AV),
    Sequence(Vec<AV>),
}

/// A decoded AMQP message: the sections Service Bus reads, as generic values.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AmqpMessage {
    pub header: Vec<AV>,
    pub delivery_annotations: Vec<(AV, AV)>,
    pub annotations: Vec<(AV, AV)>,
    pub properties: Vec<AV>,
    pub application_properties: Vec<(AV, AV)>,
    pub body: AmqpBody,
    /// The `amqp-value` / `amqp-sequence` section(s) exactly as encoded (kept so the body
    /// goes back out as the sender wrote it).
    pub body_encoded: Vec<u8>,
}

fn section_code(d: &Descriptor) -> Option<u64> {
    match d {
        Descriptor::Code(c) => Some(*c),
        Descriptor::Name(s) => match s.0.as_str() {
            "amqp:header:list" => Some(HEADER),
            "amqp:delivery-annotations:map" => Some(DELIVERY_ANNOTATIONS),
            "amqp:message-annotations:map" => Some(MESSAGE_ANNOTATIONS),
            "amqp:properties:list" => Some(PROPERTIES),
            "amqp:application-properties:map" => Some(APPLICATION_PROPERTIES),
            "amqp:data:binary" => Some(DATA),
            "amqp:amqp-sequence:list" => Some(AMQP_SEQUENCE),
            "amqp:amqp-value:*" => Some(AMQP_VALUE),
            "amqp:footer:map" => Some(FOOTER),
            _ => None,
        },
    }
}

fn map_entries(v: AV) -> Vec<(AV, AV)> {
    match v {
        AV::Map(m) => m.into_iter().collect(),
        _ => Vec::new(),
    }
}

/// Decodes an encoded AMQP message (a sequence of sections).
pub fn decode_message(bytes: &[u8]) -> Result<AmqpMessage, ConvertError> {
    let mut msg = AmqpMessage::default();
    let mut rest = bytes;
    while !rest.is_empty() {
        let (section, r) = split_value(rest)?;
        rest = r;
        let value: AV = serde_amqp::from_slice(section)?;
        let AV::Described(d) = value else {
            return Err(ConvertError::Invalid(
                "a message section is not a described type".into(),
            ));
        };
        let d = *d;
        // A value or sequence body is re-encoded later (`body_bytes`), and serde_amqp 0.18
        // panics re-encoding a map whose key is a timestamp (its serializer keeps the
        // timestamp state for the entry's value: found by the amqp_frame fuzz target).
        let body_section = matches!(
            section_code(&d.descriptor),
            Some(AMQP_VALUE | AMQP_SEQUENCE)
        );
        if body_section && timestamp_keyed(&d.value) {
            return Err(ConvertError::Invalid(
                "a message body with a map keyed by a timestamp is not supported".into(),
            ));
        }
        if body_section {
            msg.body_encoded.extend_from_slice(section);
        }
        match section_code(&d.descriptor) {
            Some(HEADER) => {
                if let AV::List(l) = d.value {
                    msg.header = l;
                }
            }
            Some(DELIVERY_ANNOTATIONS) => msg.delivery_annotations = map_entries(d.value),
            Some(MESSAGE_ANNOTATIONS) => msg.annotations = map_entries(d.value),
            Some(PROPERTIES) => {
                if let AV::List(l) = d.value {
                    msg.properties = l;
                }
            }
            Some(APPLICATION_PROPERTIES) => msg.application_properties = map_entries(d.value),
            Some(DATA) => {
                let chunk = match d.value {
                    AV::Binary(b) => b.into_vec(),
                    AV::Null => Vec::new(),
                    _ => {
                        return Err(ConvertError::Invalid(
                            "a data section does not hold binary".into(),
                        ))
                    }
                };
                match &mut msg.body {
                    AmqpBody::Data(chunks) => chunks.push(chunk),
                    _ => msg.body = AmqpBody::Data(vec![chunk]),
                }
            }
            Some(AMQP_SEQUENCE) => {
                let items = match d.value {
                    AV::List(l) => l,
                    other => vec![other],
                };
                match &mut msg.body {
                    AmqpBody::Sequence(all) => all.extend(items),
                    _ => msg.body = AmqpBody::Sequence(items),
                }
            }
            Some(AMQP_VALUE) => msg.body = AmqpBody::Value(d.value),
            Some(FOOTER) => {}
            _ => {
                return Err(ConvertError::Invalid(
                    "unknown message section descriptor".into(),
                ))
            }
        }
    }
    Ok(msg)
}

/// Whether `v` holds, at any depth, a map with a key that is or contains a timestamp.
pub(crate) fn timestamp_keyed(v: &AV) -> bool {
    fn has_timestamp(v: &AV) -> bool {
        match v {
            AV::Timestamp(_) => true,
            AV::Map(m) => m.iter().any(|(k, v)| has_timestamp(k) || has_timestamp(v)),
            AV::List(items) => items.iter().any(has_timestamp),
            AV::Array(a) => a.0.iter().any(has_timestamp),
            AV::Described(d) => has_timestamp(&d.value),
            _ => false,
        }
    }
    match v {
        AV::Map(m) => m
            .iter()
            .any(|(k, v)| has_timestamp(k) || timestamp_keyed(v)),
        AV::List(items) => items.iter().any(timestamp_keyed),
        AV::Array(a) => a.0.iter().any(timestamp_keyed),
        AV::Described(d) => timestamp_keyed(&d.value),
        _ => false,
    }
}

/// A field of a list section, or `Null`.
fn field(list: &[AV], i: usize) -> &AV {
    list.get(i).unwrap_or(&AV::Null)
}

/// Annotation lookup by symbol (or string) key.
fn annotation<'a>(entries: &'a [(AV, AV)], key: &str) -> Option<&'a AV> {
    entries.iter().find_map(|(k, v)| match k {
        AV::Symbol(s) if s.0 == key => Some(v),
        AV::String(s) if s == key => Some(v),
        _ => None,
    })
}

/// A message id / string-ish value as text (uuids in their canonical form).
pub fn text_of(v: &AV) -> Option<String> {
    match v {
        AV::String(s) => Some(s.clone()),
        AV::Symbol(s) => Some(s.0.clone()),
        AV::Uuid(u) => Some(uuid::Uuid::from_bytes(*u.as_inner()).to_string()),
        AV::Ulong(n) => Some(n.to_string()),
        AV::Binary(b) => Some(String::from_utf8_lossy(b).into_owned()),
        AV::Null => None,
        other => Some(format!("{other:?}")),
    }
}

/// A time value as milliseconds: AMQP timestamp, or an integer of milliseconds.
pub fn millis_of(v: &AV) -> Option<Millis> {
    match v {
        AV::Timestamp(t) => Some(t.milliseconds()),
        AV::Long(n) => Some(*n),
        AV::Ulong(n) => i64::try_from(*n).ok(),
        AV::Int(n) => Some(*n as i64),
        AV::Uint(n) => Some(*n as i64),
        _ => None,
    }
}

/// An integer of any AMQP integer type.
pub fn int_of(v: &AV) -> Option<i64> {
    match v {
        AV::Ubyte(n) => Some(*n as i64),
        AV::Ushort(n) => Some(*n as i64),
        AV::Uint(n) => Some(*n as i64),
        AV::Ulong(n) => i64::try_from(*n).ok(),
        AV::Byte(n) => Some(*n as i64),
        AV::Short(n) => Some(*n as i64),
        AV::Int(n) => Some(*n as i64),
        AV::Long(n) => Some(*n),
        _ => None,
    }
}

/// An AMQP value as a property value (the types filters and persistence understand).
pub fn value_from_amqp(v: &AV) -> Value {
    if let Some(i) = int_of(v) {
        return Value::Int(i);
    }
    match v {
        AV::Null => Value::Null,
        AV::Bool(b) => Value::Bool(*b),
        AV::Float(f) => Value::Double(f.into_inner() as f64),
        AV::Double(f) => Value::Double(f.into_inner()),
        AV::Timestamp(t) => Value::DateTime(t.milliseconds()),
        AV::Char(c) => Value::String(c.to_string()),
        other => Value::String(text_of(other).unwrap_or_default()),
    }
}

/// A property value as an AMQP value.
pub fn value_to_amqp(v: &Value) -> AV {
    match v {
        Value::Null => AV::Null,
        Value::Bool(b) => AV::Bool(*b),
        Value::Int(i) => AV::Long(*i),
        Value::Double(d) => AV::Double((*d).into()),
        Value::String(s) => AV::String(s.clone()),
        Value::DateTime(ms) => AV::Timestamp(Timestamp::from_milliseconds(*ms)),
    }
}

/// An AMQP value as JSON: numbers, strings, booleans and null as themselves; binary as
/// base64; timestamps as RFC 3339; uuids and symbols as strings; maps as objects (keys as
/// text); lists and arrays as arrays; a described value as its value.
pub fn json_of(v: &AV) -> serde_json::Value {
    use serde_json::Value as J;
    if let Some(i) = int_of(v) {
        return J::from(i);
    }
    match v {
        AV::Null => J::Null,
        AV::Bool(b) => J::Bool(*b),
        AV::Ulong(n) => J::from(*n),
        AV::Float(f) => J::from(f.into_inner() as f64),
        AV::Double(f) => J::from(f.into_inner()),
        AV::Char(c) => J::String(c.to_string()),
        AV::Timestamp(t) => J::String(
            chrono::DateTime::from_timestamp_millis(t.milliseconds())
                .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
                .unwrap_or_default(),
        ),
        AV::Binary(b) => {
            use base64::Engine;
            J::String(base64::engine::general_purpose::STANDARD.encode(b))
        }
        AV::Map(m) => J::Object(
            m.iter()
                .map(|(k, v)| (text_of(k).unwrap_or_else(|| "null".into()), json_of(v)))
                .collect(),
        ),
        AV::List(items) => J::Array(items.iter().map(json_of).collect()),
        AV::Array(a) => J::Array(a.0.iter().map(json_of).collect()),
        AV::Described(d) => json_of(&d.value),
        other => text_of(other).map(J::String).unwrap_or(J::Null),
    }
}

/// Property maps from an AMQP map with string or symbol keys (application properties, the
/// message-annotations of a `modified` outcome).
pub fn properties_from_entries(entries: &[(AV, AV)]) -> BTreeMap<String, Value> {
    entries
        .iter()
        .filter_map(|(k, v)| {
            let key = match k {
                AV::String(s) => s.clone(),
                AV::Symbol(s) => s.0.clone(),
                _ => return None,
            };
            Some((key, value_from_amqp(v)))
        })
        .collect()
}

impl AmqpMessage {
    /// The broker message a sender meant.
    pub fn to_new_message(&self) -> NewMessage {
        let p = &self.properties;
        let message_id =
            text_of(field(p, 0)).unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
        let ttl = match field(&self.header, 2) {
            AV::Uint(ms) if *ms > 0 => Some(TimeSpan::from_millis(*ms as i64)),
            _ => None,
        };
        let scheduled = annotation(&self.annotations, X_OPT_SCHEDULED_ENQUEUE_TIME)
            .and_then(millis_of)
            .filter(|t| *t > 0);
        let partition_key = annotation(&self.annotations, X_OPT_PARTITION_KEY).and_then(text_of);
        let body_section = match &self.body {
            AmqpBody::Value(_) => Some(BodyKind::Value),
            AmqpBody::Sequence(_) => Some(BodyKind::Sequence),
            _ => None,
        }
        .map(|kind| BodySection {
            kind,
            encoded: self.body_encoded.clone(),
        });
        NewMessage {
            message_id,
            body: self.body_bytes(),
            body_section,
            correlation_id: text_of(field(p, 5)),
            session_id: text_of(field(p, 10)),
            label: text_of(field(p, 3)),
            to: text_of(field(p, 2)),
            reply_to: text_of(field(p, 4)),
            reply_to_session_id: text_of(field(p, 12)),
            content_type: text_of(field(p, 6)),
            partition_key,
            time_to_live: ttl,
            scheduled_enqueue_time: scheduled,
            properties: properties_from_entries(&self.application_properties),
        }
    }

    /// The body as bytes: data sections concatenated; an `amqp-value` string as UTF-8, binary
    /// as itself, any other value (and a sequence, as an array) as JSON. This is what REST
    /// receives return and what counts toward the size limit; AMQP deliveries send the
    /// section as received ([`NewMessage::body_section`]). The service documents no REST form
    /// for such bodies (its SDKs read only `data` bodies), so this is the value's natural
    /// encoding.
    fn body_bytes(&self) -> Vec<u8> {
        match &self.body {
            AmqpBody::Empty => Vec::new(),
            AmqpBody::Data(chunks) => chunks.concat(),
            AmqpBody::Value(AV::Binary(b)) => b.to_vec(),
            AmqpBody::Value(AV::String(s)) => s.clone().into_bytes(),
            AmqpBody::Value(v) => json_of(v).to_string().into_bytes(),
            AmqpBody::Sequence(items) => {
                serde_json::Value::Array(items.iter().map(json_of).collect())
                    .to_string()
                    .into_bytes()
            }
        }
    }

    /// The data sections of a batch envelope, each an encoded message.
    pub fn batch_parts(&self) -> Vec<&[u8]> {
        match &self.body {
            AmqpBody::Data(chunks) => chunks.iter().map(|c| c.as_slice()).collect(),
            _ => Vec::new(),
        }
    }

    /// The application property of a request (string or symbol key).
    pub fn app_property(&self, key: &str) -> Option<&AV> {
        annotation(&self.application_properties, key)
    }

    /// The message-id field (management and CBS requests are correlated by it).
    pub fn message_id(&self) -> AV {
        field(&self.properties, 0).clone()
    }

    /// The reply-to address of a request.
    pub fn reply_to(&self) -> Option<String> {
        text_of(field(&self.properties, 4))
    }
}

/// What can be read of a request that does not decode as a whole (a mis-encoded body or
/// application property): its properties section, so a failure response can carry the
/// correlation-id and go to its reply-to. `None` when not even a message-id can be read.
pub fn request_ids(bytes: &[u8]) -> Option<AmqpMessage> {
    let mut rest = bytes;
    while !rest.is_empty() {
        let (section, r) = split_value(rest).ok()?;
        rest = r;
        let Ok(AV::Described(d)) = serde_amqp::from_slice::<AV>(section) else {
            continue;
        };
        if section_code(&d.descriptor) != Some(PROPERTIES) {
            continue;
        }
        let AV::List(properties) = d.value else {
            return None;
        };
        if matches!(field(&properties, 0), AV::Null) {
            return None;
        }
        return Some(AmqpMessage {
            properties,
            ..AmqpMessage::default()
        });
    }
    None
}

/// Decodes a transfer payload into broker messages, splitting a batch.
pub fn decode_send(payload: &[u8], message_format: u32) -> Result<Vec<NewMessage>, ConvertError> {
    let envelope = decode_message(payload)?;
    if message_format == BATCH_FORMAT {
        let mut out = Vec::new();
        for part in envelope.batch_parts() {
            out.push(decode_message(part)?.to_new_message());
        }
        if out.is_empty() {
            return Err(ConvertError::Invalid("an empty batch".into()));
        }
        return Ok(out);
    }
    Ok(vec![envelope.to_new_message()])
}

/// Why a stored message is being encoded: a locked delivery, an unlocked one, or a peek.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Encoding {
    /// A delivery (receive or receive-by-sequence-number): the broker already counted it, so
    /// the header carries the number of *previous* deliveries, as the service does.
    Delivery,
    /// A peek: nothing was delivered, the header carries the count as stored.
    Peek,
}

fn sym(s: &str) -> AV {
    AV::Symbol(Symbol::from(s))
}

pub(crate) fn opt_string(s: Option<&str>) -> AV {
    s.map(|s| AV::String(s.to_string())).unwrap_or(AV::Null)
}

pub(crate) fn described(code: u64, value: AV) -> AV {
    AV::Described(Box::new(Described {
        descriptor: Descriptor::Code(code),
        value,
    }))
}

/// Encodes a stored message as the service delivers it.
pub fn encode_message(m: &Message, how: Encoding) -> Result<Vec<u8>, ConvertError> {
    let c = &m.content;
    let delivery_count = match how {
        Encoding::Delivery => m.delivery_count.saturating_sub(1),
        Encoding::Peek => m.delivery_count,
    };
    let ttl = if m.ttl.is_infinite() || m.ttl.as_millis() > u32::MAX as i64 {
        AV::Null
    } else {
        AV::Uint(m.ttl.as_millis().max(0) as u32)
    };
    let header = AV::List(vec![
        AV::Bool(true),
        AV::Ubyte(4),
        ttl,
        AV::Bool(delivery_count == 0),
        AV::Uint(delivery_count),
    ]);
    let mut ann: OrderedMap<AV, AV> = OrderedMap::new();
    ann.insert(
        sym(X_OPT_SEQUENCE_NUMBER),
        AV::Long(m.sequence_number as i64),
    );
    ann.insert(
        sym(X_OPT_ENQUEUED_TIME),
        AV::Timestamp(Timestamp::from_milliseconds(m.enqueued_time)),
    );
    ann.insert(
        sym(X_OPT_ENQUEUE_SEQUENCE_NUMBER),
        AV::Long(m.enqueued_sequence_number as i64),
    );
    if let (Some(lock), Encoding::Delivery) = (m.lock, how) {
        ann.insert(
            sym(X_OPT_LOCKED_UNTIL),
            AV::Timestamp(Timestamp::from_milliseconds(lock.locked_until)),
        );
        ann.insert(
            sym(X_OPT_LOCK_TOKEN),
            AV::Uuid(serde_amqp::primitives::Uuid::from(lock.token.into_bytes())),
        );
    }
    if let Some(t) = c.scheduled_enqueue_time() {
        ann.insert(
            sym(X_OPT_SCHEDULED_ENQUEUE_TIME),
            AV::Timestamp(Timestamp::from_milliseconds(t)),
        );
    }
    if let Some(pk) = c.partition_key() {
        ann.insert(sym(X_OPT_PARTITION_KEY), AV::String(pk.to_string()));
    }
    if let Some(src) = &m.dead_letter_source {
        ann.insert(sym(X_OPT_DEADLETTER_SOURCE), AV::String(src.to_string()));
    }
    let state = match m.state {
        MessageState::Active => 0,
        MessageState::Deferred => 1,
        MessageState::Scheduled => 2,
    };
    if state != 0 {
        ann.insert(sym(X_OPT_MESSAGE_STATE), AV::Int(state));
    }
    let expiry = if m.expires_at >= MAX_MILLIS {
        AV::Null
    } else {
        AV::Timestamp(Timestamp::from_milliseconds(m.expires_at))
    };
    let properties = AV::List(vec![
        AV::String(c.message_id().to_string()),
        AV::Null,
        opt_string(c.to()),
        opt_string(c.label()),
        opt_string(c.reply_to()),
        opt_string(c.correlation_id()),
        c.content_type().map(sym).unwrap_or(AV::Null),
        AV::Null,
        expiry,
        AV::Timestamp(Timestamp::from_milliseconds(m.enqueued_time)),
        opt_string(c.session_id()),
        AV::Null,
        opt_string(c.reply_to_session_id()),
    ]);
    let mut app: OrderedMap<AV, AV> = OrderedMap::new();
    for (k, v) in c.properties() {
        app.insert(AV::String(k.clone()), value_to_amqp(v));
    }
    let mut out = Vec::with_capacity(c.body().len() + 256);
    out.extend(serde_amqp::to_vec(&described(HEADER, header))?);
    out.extend(serde_amqp::to_vec(&described(
        MESSAGE_ANNOTATIONS,
        AV::Map(ann),
    ))?);
    out.extend(serde_amqp::to_vec(&described(PROPERTIES, properties))?);
    if !app.is_empty() {
        out.extend(serde_amqp::to_vec(&described(
            APPLICATION_PROPERTIES,
            AV::Map(app),
        ))?);
    }
    match c.body_section() {
        // The section the sender used, byte for byte.
        Some(section) => out.extend_from_slice(&section.encoded),
        None => out.extend(serde_amqp::to_vec(&described(
            DATA,
            AV::Binary(ByteBuf::from(c.body().to_vec())),
        ))?),
    }
    Ok(out)
}

/// Builds a request/response message: properties (correlation-id, optional message-id and
/// to), application properties, and an amqp-value body.
pub fn encode_response(
    correlation_id: AV,
    application_properties: Vec<(&str, AV)>,
    body: AV,
) -> Result<Vec<u8>, ConvertError> {
    let properties = AV::List(vec![
        AV::Uuid(serde_amqp::primitives::Uuid::from(
            uuid::Uuid::new_v4().into_bytes(),
        )),
        AV::Null,
        AV::Null,
        AV::Null,
        AV::Null,
        correlation_id,
    ]);
    let mut app: OrderedMap<AV, AV> = OrderedMap::new();
    for (k, v) in application_properties {
        app.insert(AV::String(k.to_string()), v);
    }
    let mut out = serde_amqp::to_vec(&described(PROPERTIES, properties))?;
    out.extend(serde_amqp::to_vec(&described(
        APPLICATION_PROPERTIES,
        AV::Map(app),
    ))?);
    out.extend(serde_amqp::to_vec(&described(AMQP_VALUE, body))?);
    Ok(out)
}

/// Builds an AMQP message for tests and clients: properties, app properties, value body.
pub fn encode_request(
    message_id: AV,
    reply_to: Option<&str>,
    application_properties: Vec<(&str, AV)>,
    body: AV,
) -> Result<Vec<u8>, ConvertError> {
    let properties = AV::List(vec![
        message_id,
        AV::Null,
        AV::Null,
        AV::Null,
        reply_to
            .map(|s| AV::String(s.to_string()))
            .unwrap_or(AV::Null),
    ]);
    let mut app: OrderedMap<AV, AV> = OrderedMap::new();
    for (k, v) in application_properties {
        app.insert(AV::String(k.to_string()), v);
    }
    let mut out = serde_amqp::to_vec(&described(PROPERTIES, properties))?;
    out.extend(serde_amqp::to_vec(&described(
        APPLICATION_PROPERTIES,
        AV::Map(app),
    ))?);
    out.extend(serde_amqp::to_vec(&described(AMQP_VALUE, body))?);
    Ok(out)
}

/// Encodes a plain message to send: message-id, optional group-id, data body.
pub fn encode_simple(message_id: &str, session_id: Option<&str>, body: &[u8]) -> Vec<u8> {
    let properties = AV::List(vec![
        AV::String(message_id.to_string()),
        AV::Null,
        AV::Null,
        AV::Null,
        AV::Null,
        AV::Null,
        AV::Null,
        AV::Null,
        AV::Null,
        AV::Null,
        session_id
            .map(|s| AV::String(s.to_string()))
            .unwrap_or(AV::Null),
    ]);
    let mut out = serde_amqp::to_vec(&described(PROPERTIES, properties)).unwrap_or_default();
    out.extend(
        serde_amqp::to_vec(&described(DATA, AV::Binary(ByteBuf::from(body.to_vec()))))
            .unwrap_or_default(),
    );
    out
}

/// Wraps encoded messages in a batch envelope (format [`BATCH_FORMAT`]).
pub fn encode_batch(parts: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in parts {
        out.extend(
            serde_amqp::to_vec(&described(DATA, AV::Binary(ByteBuf::from(p.clone()))))
                .unwrap_or_default(),
        );
    }
    out
}

/// A map value with string keys (management bodies).
pub fn string_map(entries: Vec<(&str, AV)>) -> AV {
    let mut m: OrderedMap<AV, AV> = OrderedMap::new();
    for (k, v) in entries {
        m.insert(AV::String(k.to_string()), v);
    }
    AV::Map(m)
}

/// Looks a key up in a map value with string or symbol keys.
pub fn map_get<'a>(map: &'a AV, key: &str) -> Option<&'a AV> {
    match map {
        AV::Map(m) => m.iter().find_map(|(k, v)| match k {
            AV::String(s) if s == key => Some(v),
            AV::Symbol(s) if s.0 == key => Some(v),
            _ => None,
        }),
        _ => None,
    }
}

/// The elements of an AMQP array or list.
pub fn elements(v: &AV) -> Vec<AV> {
    match v {
        AV::Array(a) => a.0.clone(),
        AV::List(l) => l.clone(),
        AV::Null => Vec::new(),
        other => vec![other.clone()],
    }
}

/// An AMQP array (homogeneous) of values.
pub fn array(items: Vec<AV>) -> AV {
    AV::Array(Array(items))
}

/// A uuid from an AMQP uuid (RFC byte order), or its string form.
pub fn uuid_of(v: &AV) -> Option<uuid::Uuid> {
    match v {
        AV::Uuid(u) => Some(uuid::Uuid::from_bytes(*u.as_inner())),
        AV::String(s) => uuid::Uuid::parse_str(s).ok(),
        AV::Binary(b) if b.len() == 16 => uuid::Uuid::from_slice(b).ok(),
        _ => None,
    }
}

/// An AMQP uuid value.
pub fn uuid_value(u: uuid::Uuid) -> AV {
    AV::Uuid(serde_amqp::primitives::Uuid::from(u.into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::message::Lock;

    fn stored(content: NewMessage) -> Message {
        Message {
            sequence_number: 7,
            content: content.into(),
            enqueued_time: 1_700_000_000_000,
            expires_at: MAX_MILLIS,
            ttl: TimeSpan::MAX,
            delivery_count: 1,
            state: MessageState::Active,
            lock: Some(Lock {
                token: uuid::Uuid::new_v4(),
                locked_until: 1_700_000_060_000,
            }),
            dead_letter_source: None,
            enqueued_sequence_number: 7,
        }
    }

    #[test]
    fn value_and_sequence_bodies_go_back_out_as_sent() {
        let mut map = OrderedMap::new();
        map.insert(AV::String("k".into()), AV::Int(1));
        for (body, rest) in [
            (described(AMQP_VALUE, AV::Map(map)), br#"{"k":1}"#.to_vec()),
            (
                described(AMQP_VALUE, AV::String("hi".into())),
                b"hi".to_vec(),
            ),
            (
                described(AMQP_SEQUENCE, AV::List(vec![AV::Int(1), AV::Bool(true)])),
                b"[1,true]".to_vec(),
            ),
        ] {
            let mut sent = serde_amqp::to_vec(&described(
                PROPERTIES,
                AV::List(vec![AV::String("m".into())]),
            ))
            .unwrap();
            let section = serde_amqp::to_vec(&body).unwrap();
            sent.extend(&section);
            let content = decode_message(&sent).unwrap().to_new_message();
            assert_eq!(content.body, rest, "REST form");
            let kept = content.body_section.clone().unwrap();
            assert_eq!(kept.encoded, section);
            // Persistence and export keep it (JSON).
            let json = serde_json::to_string(&content).unwrap();
            let back: NewMessage = serde_json::from_str(&json).unwrap();
            assert_eq!(back, content);
            let out = encode_message(&stored(back), Encoding::Delivery).unwrap();
            assert!(out.ends_with(&section), "the section goes out unchanged");
            assert_eq!(
                decode_message(&out).unwrap().body,
                decode_message(&sent).unwrap().body
            );
        }
        // Data bodies keep the old stored shape (no new field written).
        let data = NewMessage {
            body: b"x".to_vec(),
            ..NewMessage::default()
        };
        assert!(!serde_json::to_string(&data)
            .unwrap()
            .contains("body_section"));
    }

    #[test]
    fn round_trips_the_service_bus_fields() {
        let mut props = BTreeMap::new();
        props.insert("n".to_string(), Value::Int(5));
        props.insert("s".to_string(), Value::String("x".into()));
        props.insert("d".to_string(), Value::DateTime(1_000));
        let content = NewMessage {
            message_id: "m1".into(),
            body: b"hello".to_vec(),
            correlation_id: Some("c".into()),
            session_id: Some("s1".into()),
            label: Some("lbl".into()),
            to: Some("to".into()),
            reply_to: Some("rt".into()),
            reply_to_session_id: Some("rs".into()),
            content_type: Some("text/plain".into()),
            partition_key: Some("pk".into()),
            time_to_live: None,
            scheduled_enqueue_time: None,
            properties: props,
            body_section: None,
        };
        let m = stored(content.clone());
        let bytes = encode_message(&m, Encoding::Delivery).unwrap();
        let decoded = decode_message(&bytes).unwrap();
        assert_eq!(field(&decoded.header, 4), &AV::Uint(0));
        let back = decoded.to_new_message();
        assert_eq!(back, content);
        assert_eq!(
            annotation(&decoded.annotations, X_OPT_SEQUENCE_NUMBER),
            Some(&AV::Long(7))
        );
        assert!(annotation(&decoded.annotations, X_OPT_LOCK_TOKEN).is_some());
        let peek = decode_message(&encode_message(&m, Encoding::Peek).unwrap()).unwrap();
        assert_eq!(field(&peek.header, 4), &AV::Uint(1));
        assert!(annotation(&peek.annotations, X_OPT_LOCK_TOKEN).is_none());
    }

    #[test]
    fn splits_batches_and_reads_value_bodies() {
        let a = encode_simple("a", None, b"1");
        let b = encode_simple("b", Some("s"), b"2");
        let batch = encode_batch(&[a, b]);
        let msgs = decode_send(&batch, BATCH_FORMAT).unwrap();
        assert_eq!(msgs.len(), 2);
        assert_eq!(msgs[1].session_id.as_deref(), Some("s"));
        assert_eq!(msgs[0].body, b"1");
        let v = encode_request(
            AV::String("id".into()),
            None,
            vec![],
            AV::String("text".into()),
        )
        .unwrap();
        assert_eq!(decode_send(&v, 0).unwrap()[0].body, b"text");
        assert!(decode_send(&[0x00, 0x53, 0x75], 0).is_err());
        assert!(decode_send(&[0x45], 0).is_err());
    }

    #[test]
    fn a_body_map_keyed_by_a_timestamp_is_refused_not_a_panic() {
        // map8 { timestamp 5 => "x" }: serde_amqp 0.18 panics re-encoding it.
        let map = [0xc1, 13, 2, 0x83, 0, 0, 0, 0, 0, 0, 0, 5, 0xa1, 1, b'x'];
        let mut value = vec![0x00, 0x53, 0x77];
        value.extend_from_slice(&map);
        assert!(decode_send(&value, 0).is_err());
        // The same map inside an amqp-sequence section's list.
        let mut sequence = vec![0x00, 0x53, 0x76, 0xc0, 16, 1];
        sequence.extend_from_slice(&map);
        assert!(decode_send(&sequence, 0).is_err());
        // Timestamps as map values (and other keys) are fine.
        let ok = [
            0x00, 0x53, 0x77, 0xc1, 13, 2, 0xa1, 1, b'x', 0x83, 0, 0, 0, 0, 0, 0, 0, 5,
        ];
        assert_eq!(decode_send(&ok, 0).unwrap().len(), 1);
    }
}
