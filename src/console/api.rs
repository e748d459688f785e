//! `/$console/api/…`: the console's JSON API. Reads (overview, entity, peek) never change
//! state; the actions (delete one message, resubmit, purge an entity) are built in
//! [`super::ops`] from the service's typed operations, so each is journaled like any
//! client's.
//!
//! | Method and path | Meaning |
//! |---|---|
//! | `GET overview` | Every queue, topic and subscription with counts, size and status |
//! | `GET entity?path=P` | One entity's properties, counts and (subscriptions) rules |
//! | `GET messages?path=P&dlq=1&from=N&count=M` | Peek from sequence number `N` |
//! | `POST delete` `{path, dlq, sequenceNumber}` | Delete one message |
//! | `POST resubmit` `{path, sequenceNumbers?}` | Send dead-lettered copies back and complete them (all when absent) |
//! | `POST purge` `{path, dlq}` | Delete every message of the entity (or its dead-letter queue) |
//!
//! `P` is `queue` or `topic/Subscriptions/sub`.

use super::ops::{self, ConsoleError};
use super::CONSOLE_HEADER;
use crate::broker::entity::{EntityInfo, EntityKind};
use crate::broker::message::Message;
use crate::broker::op::QueuePath;
use crate::http::{error_body, reply, HttpState, Reply, Request};
use http::{Method, StatusCode};
use serde_json::{json, Value as Json};

/// Most messages one peek returns.
pub const MAX_PEEK: usize = 250;

/// The CSRF rules of the module docs in [`super`]: an `Origin`, when sent, must be this
/// server's own origin, and a `POST` must carry [`CONSOLE_HEADER`].
pub fn same_origin(req: &Request) -> Result<(), &'static str> {
    if let Some(origin) = req.headers.get(http::header::ORIGIN) {
        let host = req
            .headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        let authority = origin
            .to_str()
            .ok()
            .and_then(|o| o.split_once("://"))
            .map(|(_, a)| a.trim_end_matches('/'));
        if !authority.is_some_and(|a| !host.is_empty() && a.eq_ignore_ascii_case(host)) {
            return Err("The console API refuses requests from a web page of another origin.");
        }
    }
    if req.method != Method::GET && !req.headers.contains_key(CONSOLE_HEADER) {
        return Err("Console API requests other than GET need an X-LocalZure-Console header.");
    }
    Ok(())
}

fn json_reply(v: &Json) -> Reply {
    let mut r = reply(StatusCode::OK, "application/json", v.to_string());
    r.headers_mut()
        .insert("Cache-Control", http::HeaderValue::from_static("no-store"));
    r
}

fn error(e: ConsoleError) -> Reply {
    match e {
        ConsoleError::Service(e) => crate::http::error_reply(&e, crate::http::Plane::Management),
        ConsoleError::Status(status, detail) => error_body(status, &detail),
    }
}

/// Dispatches `/$console/api/{rest}`.
pub async fn handle(state: &HttpState, req: &Request, rest: &[&str]) -> Reply {
    let result = match (&req.method, rest) {
        (&Method::GET, ["overview"]) => Ok(overview(state)),
        (&Method::GET, ["entity"]) => entity(state, req),
        (&Method::GET, ["messages"]) => messages(state, req),
        (&Method::POST, [verb @ ("delete" | "resubmit" | "purge")]) => {
            action(state, req, verb).await
        }
        _ => Err(ConsoleError::Status(
            StatusCode::NOT_FOUND,
            "Unknown console API call.".into(),
        )),
    };
    match result {
        Ok(v) => json_reply(&v),
        Err(e) => error(e),
    }
}

fn kind_name(k: EntityKind) -> &'static str {
    match k {
        EntityKind::Queue => "queue",
        EntityKind::Topic => "topic",
        EntityKind::Subscription => "subscription",
    }
}

fn info_json(i: &EntityInfo) -> Json {
    let path = match &i.topic {
        Some(t) => format!("{t}/Subscriptions/{}", i.name),
        None => i.name.clone(),
    };
    let c = &i.counts;
    json!({
        "kind": kind_name(i.kind),
        "name": i.name,
        "topic": i.topic,
        "path": path,
        "status": i.props.status.as_str(),
        "requiresSession": i.props.requires_session,
        "counts": {
            "active": c.active,
            "scheduled": c.scheduled,
            "deferred": c.deferred,
            "deadLetter": c.dead_letter,
            "transfer": c.transfer,
            "transferDeadLetter": c.transfer_dead_letter,
            "total": c.total(),
        },
        "sizeInBytes": i.size_in_bytes,
        "subscriptionCount": i.subscription_count,
        "createdAt": crate::time::iso8601(i.times.created_at),
        "updatedAt": crate::time::iso8601(i.times.updated_at),
        "accessedAt": crate::time::iso8601(i.times.accessed_at),
    })
}

fn overview(state: &HttpState) -> Json {
    let (entities, totals) = state.backend.read(|b| {
        let mut out: Vec<Json> = b.list_queues().iter().map(info_json).collect();
        for t in b.list_topics() {
            out.push(info_json(&t));
            if let Ok(subs) = b.list_subscriptions(&t.name) {
                out.extend(subs.iter().map(info_json));
            }
        }
        (out, b.totals())
    });
    let status = state.backend.status();
    json!({
        "entities": entities,
        "totals": totals,
        "storage": status.storage_type,
        "degraded": status.degraded,
        "sas": state.sas.is_some(),
        "now": crate::time::iso8601(state.backend.now()),
    })
}

/// `path` (and `dlq`) of the query as a receivable path; `Err` when missing or malformed.
fn query_path(req: &Request) -> Result<QueuePath, ConsoleError> {
    let p = req
        .query
        .get("path")
        .ok_or_else(|| ConsoleError::bad("The query needs path=ENTITY."))?;
    let dlq = req
        .query
        .get("dlq")
        .is_some_and(|v| v == "1" || v.eq_ignore_ascii_case("true"));
    ops::parse_path(p, dlq)
}

fn entity(state: &HttpState, req: &Request) -> Result<Json, ConsoleError> {
    let path = query_path(req)?;
    let (info, rules) = state.backend.read(|b| {
        let info = match &path.subscription {
            Some(s) => b.subscription_info(&path.entity, s).ok(),
            None => b
                .queue_info(&path.entity)
                .or_else(|| b.topic_info(&path.entity)),
        };
        let rules = match &path.subscription {
            Some(s) => b.rules(&path.entity, s).unwrap_or_default(),
            None => Vec::new(),
        };
        (info, rules)
    });
    let info = info.ok_or_else(|| {
        ConsoleError::Status(
            StatusCode::NOT_FOUND,
            format!("No entity '{}'.", path.display()),
        )
    })?;
    let mut v = info_json(&info);
    v["properties"] = serde_json::to_value(&info.props).unwrap_or(Json::Null);
    v["rules"] = serde_json::to_value(&rules).unwrap_or(Json::Null);
    Ok(v)
}

/// A stored message as the console shows it: system properties, application properties,
/// and the body as base64 (the page renders text, JSON or hex).
pub fn message_json(m: &Message, now: crate::time::Millis) -> Json {
    use base64::Engine;
    let c = &m.content;
    let props: serde_json::Map<String, Json> = c
        .properties()
        .iter()
        .map(|(k, v)| (k.clone(), v.to_json()))
        .collect();
    let dl = |k: &str| c.properties().get(k).map(|v| v.to_json());
    let iso =
        |ms: crate::time::Millis| (ms < crate::time::MAX_MILLIS).then(|| crate::time::iso8601(ms));
    json!({
        "sequenceNumber": m.sequence_number,
        "enqueuedSequenceNumber": m.enqueued_sequence_number,
        "messageId": c.message_id(),
        "state": m.state.as_str(),
        "enqueuedTime": crate::time::iso8601(m.enqueued_time),
        "expiresAt": iso(m.expires_at),
        "deliveryCount": m.delivery_count,
        "lockedUntil": m.lock.filter(|_| m.is_locked_at(now)).map(|l| crate::time::iso8601(l.locked_until)),
        "sessionId": c.session_id(),
        "correlationId": c.correlation_id(),
        "subject": c.label(),
        "to": c.to(),
        "replyTo": c.reply_to(),
        "replyToSessionId": c.reply_to_session_id(),
        "contentType": c.content_type(),
        "partitionKey": c.partition_key(),
        "timeToLive": (!m.ttl.is_infinite()).then(|| m.ttl.to_xsd()),
        "scheduledEnqueueTime": c.scheduled_enqueue_time().map(crate::time::iso8601),
        "deadLetterSource": m.dead_letter_source,
        "deadLetterReason": dl("DeadLetterReason"),
        "deadLetterErrorDescription": dl("DeadLetterErrorDescription"),
        "size": m.size(),
        "properties": props,
        "body": base64::engine::general_purpose::STANDARD.encode(c.body()),
    })
}

fn messages(state: &HttpState, req: &Request) -> Result<Json, ConsoleError> {
    let path = query_path(req)?;
    let num = |k: &str, d: u64| {
        req.query
            .get(k)
            .map(|v| {
                v.parse::<u64>()
                    .map_err(|_| ConsoleError::bad(format!("{k} must be a number.")))
            })
            .unwrap_or(Ok(d))
    };
    let from = num("from", 0)?;
    let count = (num("count", 50)? as usize).clamp(1, MAX_PEEK);
    let now = state.backend.now();
    let msgs = state.backend.peek(&path, None, from, count + 1)?;
    let more = msgs.len() > count;
    let list: Vec<Json> = msgs
        .iter()
        .take(count)
        .map(|m| message_json(m, now))
        .collect();
    let next = if more {
        msgs.get(count).map(|m| m.sequence_number)
    } else {
        None
    };
    Ok(json!({ "path": path.display(), "messages": list, "next": next }))
}

async fn action(state: &HttpState, req: &Request, verb: &str) -> Result<Json, ConsoleError> {
    let body: Json = serde_json::from_slice(&req.body)
        .map_err(|e| ConsoleError::bad(format!("The body is not JSON: {e}")))?;
    let p = body
        .get("path")
        .and_then(Json::as_str)
        .ok_or_else(|| ConsoleError::bad("The body needs \"path\"."))?;
    let dlq = body.get("dlq").and_then(Json::as_bool).unwrap_or(false);
    let backend = &state.backend;
    match verb {
        "delete" => {
            let path = ops::parse_path(p, dlq)?;
            let seq = body
                .get("sequenceNumber")
                .and_then(Json::as_u64)
                .ok_or_else(|| ConsoleError::bad("The body needs \"sequenceNumber\"."))?;
            ops::delete_message(backend, &path, seq).await?;
            Ok(json!({ "deleted": seq }))
        }
        "resubmit" => {
            let path = ops::parse_path(p, true)?;
            let seqs = match body.get("sequenceNumbers") {
                Some(Json::Array(a)) => Some(
                    a.iter()
                        .map(|v| {
                            v.as_u64()
                                .ok_or_else(|| ConsoleError::bad("Sequence numbers are numbers."))
                        })
                        .collect::<Result<Vec<u64>, _>>()?,
                ),
                _ => None,
            };
            let r = ops::resubmit(backend, &path, seqs).await?;
            Ok(serde_json::to_value(r).unwrap_or(Json::Null))
        }
        _ => {
            let path = ops::parse_path(p, dlq)?;
            let r = ops::purge(backend, &path).await?;
            Ok(serde_json::to_value(r).unwrap_or(Json::Null))
        }
    }
}
