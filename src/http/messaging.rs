//! The REST data plane: send, receive (peek-lock and receive-and-delete), unlock, complete,
//! renew. Message system properties travel in the `BrokerProperties` JSON header; custom
//! properties are the other, non-standard headers. Handlers return `Result<Reply, HttpError>`;
//! the router answers errors on the messaging plane (a missing entity is 410 Gone).

use super::{empty, reply, HttpError, HttpState, Reply, Request};
use crate::broker::error::BrokerError;
use crate::broker::message::{Message, NewMessage};
use crate::broker::op::{QueuePath, ReceiveMode, Settlement};
use crate::broker::value::Value;
use crate::constants::{DEFAULT_RECEIVE_TIMEOUT_SECS, MAX_TIMESPAN_SECONDS, TICKS_PER_SECOND};
use crate::time::{parse_date, rfc1123, TimeSpan};
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// Headers that are never custom properties.
const STANDARD_HEADERS: &[&str] = &[
    "accept",
    "accept-charset",
    "accept-encoding",
    "accept-language",
    "authorization",
    "brokerproperties",
    "cache-control",
    "connection",
    "content-encoding",
    "content-length",
    "content-type",
    "cookie",
    "date",
    "expect",
    "host",
    "if-match",
    "if-none-match",
    "keep-alive",
    "origin",
    "pragma",
    "proxy-authorization",
    "proxy-connection",
    "referer",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "user-agent",
    "via",
    "traceparent",
    "tracestate",
    "request-id",
    "diagnostic-id",
];

fn is_standard_header(name: &str) -> bool {
    STANDARD_HEADERS.contains(&name)
        || name.starts_with("x-ms-")
        || name.starts_with("x-forwarded-")
        || name.starts_with("sec-")
        || name.starts_with("servicebus")
}

/// The BrokerProperties a sender may set.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct SendProperties {
    message_id: Option<String>,
    correlation_id: Option<String>,
    session_id: Option<String>,
    label: Option<String>,
    to: Option<String>,
    reply_to: Option<String>,
    reply_to_session_id: Option<String>,
    /// Seconds (may be fractional).
    time_to_live: Option<f64>,
    scheduled_enqueue_time_utc: Option<String>,
    partition_key: Option<String>,
    content_type: Option<String>,
    via_partition_key: Option<String>,
    // Fields a client may echo back from a received message; accepted and ignored.
    delivery_count: Option<serde_json::Value>,
    sequence_number: Option<serde_json::Value>,
    lock_token: Option<serde_json::Value>,
    locked_until_utc: Option<serde_json::Value>,
    enqueued_time_utc: Option<serde_json::Value>,
    enqueued_sequence_number: Option<serde_json::Value>,
    state: Option<serde_json::Value>,
    force_persistence: Option<serde_json::Value>,
}

fn build_message(
    bp: SendProperties,
    body: Vec<u8>,
    content_type: Option<String>,
    properties: BTreeMap<String, Value>,
) -> Result<NewMessage, String> {
    let ttl = match bp.time_to_live {
        Some(s) if !(s.is_finite() && s > 0.0) => {
            return Err(format!(
                "TimeToLive must be a positive number of seconds, got {s}."
            ))
        }
        // At or past TimeSpan.MaxValue in seconds the TTL is "never expires" (the float-to-int
        // cast saturates there anyway).
        Some(s) => Some(if s >= MAX_TIMESPAN_SECONDS {
            TimeSpan::MAX
        } else {
            TimeSpan((s * TICKS_PER_SECOND as f64) as i64)
        }),
        None => None,
    };
    let scheduled = match bp.scheduled_enqueue_time_utc {
        Some(s) => Some(
            parse_date(&s)
                .ok_or_else(|| format!("ScheduledEnqueueTimeUtc '{s}' is not a valid date."))?,
        ),
        None => None,
    };
    let _ = (
        bp.via_partition_key,
        bp.delivery_count,
        bp.sequence_number,
        bp.lock_token,
        bp.locked_until_utc,
        bp.enqueued_time_utc,
        bp.enqueued_sequence_number,
        bp.state,
        bp.force_persistence,
    );
    Ok(NewMessage {
        message_id: bp
            .message_id
            .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string()),
        body,
        correlation_id: bp.correlation_id,
        session_id: bp.session_id,
        label: bp.label,
        to: bp.to,
        reply_to: bp.reply_to,
        reply_to_session_id: bp.reply_to_session_id,
        content_type: bp.content_type.or(content_type),
        partition_key: bp.partition_key,
        time_to_live: ttl,
        scheduled_enqueue_time: scheduled,
        properties,
        body_section: None,
    })
}

fn custom_properties(headers: &HeaderMap) -> Result<BTreeMap<String, Value>, String> {
    let mut props = BTreeMap::new();
    for (name, value) in headers {
        let n = name.as_str();
        if is_standard_header(n) {
            continue;
        }
        let v = value
            .to_str()
            .map_err(|_| format!("The value of header '{n}' is not valid text."))?;
        props.insert(n.to_string(), Value::from_header(v));
    }
    Ok(props)
}

/// One message of a batch body.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct BatchItem {
    body: serde_json::Value,
    #[serde(default)]
    broker_properties: Option<serde_json::Value>,
    #[serde(default)]
    user_properties: Option<BTreeMap<String, serde_json::Value>>,
}

/// Parses a batch send body (`application/vnd.microsoft.servicebus.json`): a JSON array of
/// `{Body, BrokerProperties, UserProperties}`. Public for the fuzz targets (`fuzz/`).
#[doc(hidden)]
pub fn parse_batch(body: &[u8]) -> Result<Vec<NewMessage>, String> {
    let items: Vec<BatchItem> = serde_json::from_slice(body)
        .map_err(|e| format!("The batch body is not a valid JSON array of messages: {e}"))?;
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let bp: SendProperties = match item.broker_properties {
            Some(v) => serde_json::from_value(v)
                .map_err(|e| format!("BrokerProperties of message {i}: {e}"))?,
            None => SendProperties::default(),
        };
        let body = match item.body {
            serde_json::Value::String(s) => s.into_bytes(),
            other => other.to_string().into_bytes(),
        };
        let props = item
            .user_properties
            .unwrap_or_default()
            .iter()
            .map(|(k, v)| (k.clone(), Value::from_json(v)))
            .collect();
        out.push(build_message(bp, body, None, props)?);
    }
    Ok(out)
}

/// The message of a single (non-batch) send: the `BrokerProperties` header's JSON text (if
/// any), the body, the Content-Type and the custom properties taken from the other headers.
/// Public for the fuzz targets (`fuzz/`).
#[doc(hidden)]
pub fn single_message(
    broker_properties: Option<&str>,
    body: Vec<u8>,
    content_type: Option<String>,
    properties: BTreeMap<String, Value>,
) -> Result<NewMessage, String> {
    let bp: SendProperties = match broker_properties {
        Some(text) => serde_json::from_str(text)
            .map_err(|e| format!("The BrokerProperties header is not valid JSON: {e}"))?,
        None => SendProperties::default(),
    };
    build_message(bp, body, content_type, properties)
}

/// POST /{queue|topic}/messages — send one message, or a batch with
/// `Content-Type: application/vnd.microsoft.servicebus.json`.
pub async fn send(state: &HttpState, req: &Request, segs: &[&str]) -> Result<Reply, HttpError> {
    let entity = segs.join("/");
    if req.body.len() > state.max_message_size {
        return Err(BrokerError::MessageTooLarge {
            size: req.body.len(),
            max: state.max_message_size,
        }
        .into());
    }
    let content_type = req
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let is_batch = content_type
        .as_deref()
        .is_some_and(|c| c.starts_with("application/vnd.microsoft.servicebus.json"));
    let messages = if is_batch {
        parse_batch(&req.body).map_err(HttpError::bad_request)?
    } else {
        let bp = req
            .headers
            .get("brokerproperties")
            .map(|v| v.to_str())
            .transpose()
            .map_err(|_| {
                HttpError::bad_request("The BrokerProperties header is not valid text.")
            })?;
        let props = custom_properties(&req.headers).map_err(HttpError::bad_request)?;
        vec![single_message(bp, req.body.to_vec(), content_type, props)
            .map_err(HttpError::bad_request)?]
    };
    state.backend.send(entity, messages).await?;
    Ok(empty(StatusCode::CREATED))
}

fn timeout_of(req: &Request) -> Result<Duration, HttpError> {
    match req.query.get("timeout") {
        None => Ok(Duration::from_secs(DEFAULT_RECEIVE_TIMEOUT_SECS)),
        Some(t) => t
            .parse::<u64>()
            .map(|s| Duration::from_secs(s.min(3600)))
            .map_err(|_| {
                HttpError::bad_request(format!(
                    "The timeout '{t}' is not a whole number of seconds."
                ))
            }),
    }
}

/// POST|DELETE /{path}/messages/head?timeout=N — peek-lock (201 + Location) or
/// receive-and-delete (200); 204 when nothing arrives in time.
pub async fn receive(state: &HttpState, req: &Request, segs: &[&str]) -> Result<Reply, HttpError> {
    let mode = match req.method {
        Method::POST => ReceiveMode::PeekLock,
        Method::DELETE => ReceiveMode::ReceiveAndDelete,
        _ => return Err(HttpError::method_not_allowed()),
    };
    let path = QueuePath::parse_segments(segs).map_err(HttpError::bad_request)?;
    let timeout = timeout_of(req)?;
    let msgs = state
        .backend
        .receive_wait(path.clone(), mode, 1, None, timeout)
        .await?;
    Ok(match msgs.into_iter().next() {
        None => empty(StatusCode::NO_CONTENT),
        Some(m) => message_reply(&m, mode, &path, &req.base_url),
    })
}

/// The BrokerProperties JSON of a received message.
pub fn broker_properties(m: &Message) -> serde_json::Value {
    let c = &m.content;
    let ttl_secs = if m.ttl.is_infinite() {
        MAX_TIMESPAN_SECONDS
    } else {
        m.ttl.0 as f64 / TICKS_PER_SECOND as f64
    };
    let mut bp = serde_json::json!({
        "DeliveryCount": m.delivery_count,
        "EnqueuedSequenceNumber": m.enqueued_sequence_number,
        "EnqueuedTimeUtc": rfc1123(m.enqueued_time),
        "MessageId": c.message_id(),
        "SequenceNumber": m.sequence_number,
        "State": m.state.as_str(),
        "TimeToLive": ttl_secs,
    });
    if let Some(obj) = bp.as_object_mut() {
        if let Some(l) = m.lock {
            obj.insert("LockToken".into(), l.token.to_string().into());
            obj.insert("LockedUntilUtc".into(), rfc1123(l.locked_until).into());
        }
        let mut opt = |k: &str, v: Option<&str>| {
            if let Some(v) = v {
                obj.insert(k.to_string(), v.into());
            }
        };
        opt("CorrelationId", c.correlation_id());
        opt("SessionId", c.session_id());
        opt("Label", c.label());
        opt("To", c.to());
        opt("ReplyTo", c.reply_to());
        opt("ReplyToSessionId", c.reply_to_session_id());
        opt("PartitionKey", c.partition_key());
        opt("DeadLetterSource", m.dead_letter_source.as_deref());
        if let Some(s) = c.scheduled_enqueue_time() {
            obj.insert("ScheduledEnqueueTimeUtc".into(), rfc1123(s).into());
        }
    }
    bp
}

fn message_reply(m: &Message, mode: ReceiveMode, path: &QueuePath, base: &str) -> Reply {
    let status = match mode {
        ReceiveMode::PeekLock => StatusCode::CREATED,
        ReceiveMode::ReceiveAndDelete => StatusCode::OK,
    };
    let ct = m
        .content
        .content_type()
        .unwrap_or("application/octet-stream");
    let mut r = reply(status, ct, m.content.body().to_vec());
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&broker_properties(m).to_string()) {
        h.insert("BrokerProperties", v);
    }
    for (k, v) in m.content.properties() {
        if let (Ok(name), Ok(val)) = (
            http::header::HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(&v.to_header()),
        ) {
            h.insert(name, val);
        }
    }
    if let Some(l) = m.lock {
        let loc = format!(
            "{base}/{}/messages/{}/{}",
            path.display(),
            m.sequence_number,
            l.token
        );
        if let Ok(v) = HeaderValue::from_str(&loc) {
            h.insert(http::header::LOCATION, v);
        }
    }
    r
}

/// PUT (unlock), DELETE (complete), POST (renew) /{path}/messages/{id}/{lockToken}.
pub async fn settle(
    state: &HttpState,
    req: &Request,
    segs: &[&str],
    _id: &str,
    lock: &str,
) -> Result<Reply, HttpError> {
    let path = QueuePath::parse_segments(segs).map_err(HttpError::bad_request)?;
    let token = uuid::Uuid::parse_str(lock).map_err(|_| {
        HttpError::bad_request(format!("The lock token '{lock}' is not a valid GUID."))
    })?;
    let mut r = empty(StatusCode::OK);
    match req.method {
        Method::PUT => {
            let abandon = Settlement::Abandon {
                properties: BTreeMap::new(),
            };
            state.backend.settle(&path, token, abandon).await?;
        }
        Method::DELETE => {
            state
                .backend
                .settle(&path, token, Settlement::Complete)
                .await?
        }
        Method::POST => {
            let locked_until = state.backend.renew_lock(&path, token).await?;
            let bp = serde_json::json!({ "LockedUntilUtc": rfc1123(locked_until) }).to_string();
            if let Ok(v) = HeaderValue::from_str(&bp) {
                r.headers_mut().insert("BrokerProperties", v);
            }
        }
        _ => return Err(HttpError::method_not_allowed()),
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_bodies_parse() {
        let b = br#"[{"Body":"hi","BrokerProperties":{"MessageId":"m1","Label":"l"},"UserProperties":{"n":1,"s":"x"}},{"Body":"two"}]"#;
        let v = parse_batch(b).unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].message_id, "m1");
        assert_eq!(v[0].properties.get("n"), Some(&Value::Int(1)));
        assert_eq!(v[1].body, b"two");
        assert!(parse_batch(b"{").is_err());
        assert!(parse_batch(br#"[{"Body":"x","BrokerProperties":{"TimeToLive":"x"}}]"#).is_err());
    }
}
