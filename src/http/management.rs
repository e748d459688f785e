//! The ATOM management API: queues, topics, subscriptions, rules, lists and namespace info.
//! Handlers return `Result<Reply, HttpError>`; the router answers errors on the management
//! plane (a missing entity is 404).

use super::{atom, empty, reply, HttpError, HttpState, Reply, Request};
use crate::broker::entity::{EntityInfo, EntityKind};
use crate::broker::error::BrokerError;
use crate::broker::op::Op;
use crate::constants::{DEFAULT_LIST_TOP, NAMESPACE_NAME};
use http::{Method, StatusCode};

const ATOM_CT: &str = "application/atom+xml;type=entry;charset=utf-8";
const FEED_CT: &str = "application/atom+xml;type=feed;charset=utf-8";

fn body_text(req: &Request) -> Result<&str, HttpError> {
    std::str::from_utf8(&req.body)
        .map_err(|_| HttpError::bad_request("The request body is not valid UTF-8."))
}

fn is_update(req: &Request) -> bool {
    req.headers.contains_key(http::header::IF_MATCH)
}

/// 200 for an update, 201 for a create.
fn put_status(update: bool) -> StatusCode {
    if update {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    }
}

/// The request's `$skip` and `$top` (default 100, the service's page size) and `api-version`
/// (echoed into the feed's links when it is a plain version string).
fn paging(req: &Request) -> Result<(usize, usize, &str), HttpError> {
    let parse = |k: &str, d: usize| -> Result<usize, HttpError> {
        match req.query.get(k) {
            None => Ok(d),
            Some(v) => v.parse().map_err(|_| {
                HttpError::bad_request(format!(
                    "The value '{v}' of {k} is not a non-negative integer."
                ))
            }),
        }
    };
    let version = req
        .query
        .get("api-version")
        .map(String::as_str)
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 32
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        })
        .unwrap_or(atom::API_VERSION);
    Ok((
        parse("$skip", 0)?,
        parse("$top", DEFAULT_LIST_TOP)?,
        version,
    ))
}

/// The `$skip`/`$top` window of `all` with the feed links' [`atom::Page`] for `path`.
fn page_of<'a, T>(
    req: &'a Request,
    path: &'a str,
    all: Vec<T>,
) -> Result<(Vec<T>, atom::Page<'a>), HttpError> {
    let (skip, top, api_version) = paging(req)?;
    let total = all.len();
    let items = all.into_iter().skip(skip).take(top).collect();
    Ok((
        items,
        atom::Page {
            path,
            skip,
            top,
            total,
            api_version,
        },
    ))
}

fn not_found(what: &str) -> HttpError {
    BrokerError::EntityNotFound(what.to_string()).into()
}

/// An entity as an entry document with `status`.
fn entry(status: StatusCode, info: &EntityInfo, req: &Request) -> Reply {
    reply(status, ATOM_CT, atom::entity_entry(info, &req.base_url))
}

/// GET /$namespaceinfo
pub fn namespace_info(state: &HttpState, _req: &Request) -> Reply {
    let created = state.backend.read(|b| b.created_at());
    reply(
        StatusCode::OK,
        ATOM_CT,
        atom::namespace_info(NAMESPACE_NAME, created, &_req.base_url),
    )
}

/// GET /$Resources/Queues | /$Resources/Topics
pub fn list_entities(state: &HttpState, req: &Request, kind: &str) -> Result<Reply, HttpError> {
    let (title, infos) = if kind.eq_ignore_ascii_case("queues") {
        ("Queues", state.backend.read(|b| b.list_queues()))
    } else if kind.eq_ignore_ascii_case("topics") {
        ("Topics", state.backend.read(|b| b.list_topics()))
    } else {
        return Err(HttpError::Status(
            StatusCode::NOT_FOUND,
            format!("Unknown resource '{kind}'."),
        ));
    };
    let path = format!("$Resources/{title}");
    let (items, page) = page_of(req, &path, infos)?;
    Ok(reply(
        StatusCode::OK,
        FEED_CT,
        atom::entity_feed_page(title, &items, &req.base_url, &page, state.backend.now()),
    ))
}

/// PUT|GET|DELETE /{queue or topic}
pub async fn entity(state: &HttpState, req: &Request, name: &str) -> Result<Reply, HttpError> {
    match req.method {
        Method::GET => {
            let info = state
                .backend
                .read(|b| b.queue_info(name).or_else(|| b.topic_info(name)))
                .ok_or_else(|| not_found(name))?;
            Ok(entry(StatusCode::OK, &info, req))
        }
        Method::DELETE => {
            let is_queue = state.backend.read(|b| b.queue_info(name).is_some());
            let name = name.to_string();
            let op = if is_queue {
                Op::DeleteQueue { name }
            } else {
                Op::DeleteTopic { name }
            };
            state.backend.execute(op).await?;
            Ok(empty(StatusCode::OK))
        }
        Method::PUT => {
            let text = body_text(req)?;
            let kind = match atom::description_kind(text)? {
                Some(k @ (EntityKind::Queue | EntityKind::Topic)) => k,
                _ => {
                    return Err(HttpError::bad_request(
                        "The request body must be an Atom entry with a QueueDescription or TopicDescription.",
                    ))
                }
            };
            let props = atom::parse_entity(text, kind)?.props;
            let update = is_update(req);
            let info_of = |state: &HttpState| {
                state.backend.read(|b| match kind {
                    EntityKind::Queue => b.queue_info(name),
                    _ => b.topic_info(name),
                })
            };
            // Updating a queue as a topic (or the reverse) is a 404, as in Azure.
            if update && info_of(state).is_none() {
                return Err(not_found(name));
            }
            let n = name.to_string();
            let op = match (kind, update) {
                (EntityKind::Queue, false) => Op::CreateQueue { name: n, props },
                (EntityKind::Queue, true) => Op::UpdateQueue { name: n, props },
                (_, false) => Op::CreateTopic { name: n, props },
                (_, true) => Op::UpdateTopic { name: n, props },
            };
            state.backend.execute(op).await?;
            let info = info_of(state).ok_or_else(|| not_found(name))?;
            Ok(entry(put_status(update), &info, req))
        }
        _ => Err(HttpError::method_not_allowed()),
    }
}

/// GET /{topic}/Subscriptions
pub fn list_subscriptions(
    state: &HttpState,
    req: &Request,
    topic: &str,
) -> Result<Reply, HttpError> {
    if req.method != Method::GET {
        return Err(HttpError::method_not_allowed());
    }
    let infos = state.backend.read(|b| b.list_subscriptions(topic))?;
    let path = format!("{topic}/Subscriptions");
    let (items, page) = page_of(req, &path, infos)?;
    Ok(reply(
        StatusCode::OK,
        FEED_CT,
        atom::entity_feed_page(
            "Subscriptions",
            &items,
            &req.base_url,
            &page,
            state.backend.now(),
        ),
    ))
}

/// PUT|GET|DELETE /{topic}/Subscriptions/{sub}
pub async fn subscription(
    state: &HttpState,
    req: &Request,
    topic: &str,
    sub: &str,
) -> Result<Reply, HttpError> {
    let (topic_name, name) = (topic.to_string(), sub.to_string());
    match req.method {
        Method::GET => {
            let info = state.backend.read(|b| b.subscription_info(topic, sub))?;
            Ok(entry(StatusCode::OK, &info, req))
        }
        Method::DELETE => {
            let op = Op::DeleteSubscription {
                topic: topic_name,
                name,
            };
            state.backend.execute(op).await?;
            Ok(empty(StatusCode::OK))
        }
        Method::PUT => {
            let parsed = atom::parse_entity(body_text(req)?, EntityKind::Subscription)?;
            let update = is_update(req);
            let op = if update {
                Op::UpdateSubscription {
                    topic: topic_name,
                    name,
                    props: parsed.props,
                }
            } else {
                Op::CreateSubscription {
                    topic: topic_name,
                    name,
                    props: parsed.props,
                    rule: parsed.default_rule,
                }
            };
            state.backend.execute(op).await?;
            let info = state.backend.read(|b| b.subscription_info(topic, sub))?;
            Ok(entry(put_status(update), &info, req))
        }
        _ => Err(HttpError::method_not_allowed()),
    }
}

/// GET /{topic}/Subscriptions/{sub}/Rules
pub fn list_rules(
    state: &HttpState,
    req: &Request,
    topic: &str,
    sub: &str,
) -> Result<Reply, HttpError> {
    if req.method != Method::GET {
        return Err(HttpError::method_not_allowed());
    }
    let rules = state.backend.read(|b| b.rules(topic, sub))?;
    let path = format!("{topic}/Subscriptions/{sub}/Rules");
    let (items, page) = page_of(req, &path, rules)?;
    Ok(reply(
        StatusCode::OK,
        FEED_CT,
        atom::rule_feed_page(
            &items,
            topic,
            sub,
            &req.base_url,
            &page,
            state.backend.now(),
        ),
    ))
}

/// PUT|GET|DELETE /{topic}/Subscriptions/{sub}/Rules/{rule}
pub async fn rule(
    state: &HttpState,
    req: &Request,
    topic: &str,
    sub: &str,
    name: &str,
) -> Result<Reply, HttpError> {
    let find = |state: &HttpState| {
        state.backend.read(|b| {
            b.rules(topic, sub).and_then(|rules| {
                rules
                    .into_iter()
                    .find(|r| r.name.eq_ignore_ascii_case(name))
                    .ok_or_else(|| {
                        BrokerError::EntityNotFound(format!(
                            "{topic}/Subscriptions/{sub}/Rules/{name}"
                        ))
                    })
            })
        })
    };
    let rule_entry = |status: StatusCode, r: &crate::broker::entity::Rule| {
        reply(
            status,
            ATOM_CT,
            atom::rule_entry(r, topic, sub, &req.base_url),
        )
    };
    let (topic_name, subscription) = (topic.to_string(), sub.to_string());
    match req.method {
        Method::GET => Ok(rule_entry(StatusCode::OK, &find(state)?)),
        Method::DELETE => {
            let op = Op::DeleteRule {
                topic: topic_name,
                subscription,
                name: name.to_string(),
            };
            state.backend.execute(op).await?;
            Ok(empty(StatusCode::OK))
        }
        Method::PUT => {
            let rule = atom::parse_rule(body_text(req)?, name, state.backend.now())?;
            let update = is_update(req);
            let op = if update {
                Op::UpdateRule {
                    topic: topic_name,
                    subscription,
                    rule,
                }
            } else {
                Op::CreateRule {
                    topic: topic_name,
                    subscription,
                    rule,
                }
            };
            state.backend.execute(op).await?;
            Ok(rule_entry(put_status(update), &find(state)?))
        }
        _ => Err(HttpError::method_not_allowed()),
    }
}
