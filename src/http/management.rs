//! The ATOM management API: queues, topics, subscriptions, rules, lists and namespace info.

use super::{atom, empty, error_body, error_reply, reply, HttpState, Plane, Reply, Request};
use crate::broker::entity::EntityKind;
use crate::broker::error::BrokerError;
use crate::broker::op::Op;
use crate::constants::{DEFAULT_LIST_TOP, NAMESPACE_NAME};
use crate::service::ServiceError;
use http::{Method, StatusCode};

const ATOM_CT: &str = "application/atom+xml;type=entry;charset=utf-8";
const FEED_CT: &str = "application/atom+xml;type=feed;charset=utf-8";

fn body_text(req: &Request) -> Result<&str, String> {
    std::str::from_utf8(&req.body).map_err(|_| "The request body is not valid UTF-8.".to_string())
}

fn is_update(req: &Request) -> bool {
    req.headers.contains_key(http::header::IF_MATCH)
}

fn paging(req: &Request) -> Result<(usize, usize), String> {
    let parse = |k: &str, d: usize| -> Result<usize, String> {
        match req.query.get(k) {
            None => Ok(d),
            Some(v) => v
                .parse()
                .map_err(|_| format!("The value '{v}' of {k} is not a non-negative integer.")),
        }
    };
    Ok((parse("$skip", 0)?, parse("$top", DEFAULT_LIST_TOP)?))
}

fn not_found(what: &str) -> Reply {
    error_reply(
        &ServiceError::Broker(BrokerError::EntityNotFound(what.to_string())),
        Plane::Management,
    )
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
pub fn list_entities(state: &HttpState, req: &Request, kind: &str) -> Reply {
    let (skip, top) = match paging(req) {
        Ok(p) => p,
        Err(e) => return error_body(StatusCode::BAD_REQUEST, &e),
    };
    let (title, infos) = if kind.eq_ignore_ascii_case("queues") {
        ("Queues", state.backend.read(|b| b.list_queues()))
    } else if kind.eq_ignore_ascii_case("topics") {
        ("Topics", state.backend.read(|b| b.list_topics()))
    } else {
        return error_body(
            StatusCode::NOT_FOUND,
            &format!("Unknown resource '{kind}'."),
        );
    };
    let page: Vec<_> = infos.into_iter().skip(skip).take(top).collect();
    let self_path = format!("$Resources/{title}");
    reply(
        StatusCode::OK,
        FEED_CT,
        atom::entity_feed(title, &page, &req.base_url, &self_path, state.backend.now()),
    )
}

/// PUT|GET|DELETE /{queue or topic}
pub async fn entity(state: &HttpState, req: &Request, name: &str) -> Reply {
    match req.method {
        Method::GET => {
            let info = state
                .backend
                .read(|b| b.queue_info(name).or_else(|| b.topic_info(name)));
            match info {
                Some(i) => reply(
                    StatusCode::OK,
                    ATOM_CT,
                    atom::entity_entry(&i, &req.base_url),
                ),
                None => not_found(name),
            }
        }
        Method::DELETE => {
            let is_queue = state.backend.read(|b| b.queue_info(name).is_some());
            let op = if is_queue {
                Op::DeleteQueue {
                    name: name.to_string(),
                }
            } else {
                Op::DeleteTopic {
                    name: name.to_string(),
                }
            };
            match state.backend.execute(op).await {
                Ok(_) => empty(StatusCode::OK),
                Err(e) => error_reply(&e, Plane::Management),
            }
        }
        Method::PUT => {
            let text = match body_text(req) {
                Ok(t) => t,
                Err(e) => return error_body(StatusCode::BAD_REQUEST, &e),
            };
            let kind = match atom::description_kind(text) {
                Ok(Some(k @ (EntityKind::Queue | EntityKind::Topic))) => k,
                Err(e) => return error_body(StatusCode::BAD_REQUEST, &e.to_string()),
                Ok(_) => {
                    return error_body(
                        StatusCode::BAD_REQUEST,
                        "The request body must be an Atom entry with a QueueDescription or TopicDescription.",
                    )
                }
            };
            let parsed = match atom::parse_entity(text, kind) {
                Ok(p) => p,
                Err(e) => return error_body(StatusCode::BAD_REQUEST, &e.to_string()),
            };
            let update = is_update(req);
            let n = name.to_string();
            let props = parsed.props;
            let op = match (kind, update) {
                (EntityKind::Queue, false) => Op::CreateQueue { name: n, props },
                (EntityKind::Queue, true) => Op::UpdateQueue { name: n, props },
                (_, false) => Op::CreateTopic { name: n, props },
                (_, true) => Op::UpdateTopic { name: n, props },
            };
            if update {
                // Updating a queue as a topic (or the reverse) is a 404, as in Azure.
                let exists = state.backend.read(|b| match kind {
                    EntityKind::Queue => b.queue_info(name).is_some(),
                    _ => b.topic_info(name).is_some(),
                });
                if !exists {
                    return not_found(name);
                }
            }
            match state.backend.execute(op).await {
                Ok(_) => {
                    let info = state.backend.read(|b| match kind {
                        EntityKind::Queue => b.queue_info(name),
                        _ => b.topic_info(name),
                    });
                    match info {
                        Some(i) => reply(
                            if update {
                                StatusCode::OK
                            } else {
                                StatusCode::CREATED
                            },
                            ATOM_CT,
                            atom::entity_entry(&i, &req.base_url),
                        ),
                        None => not_found(name),
                    }
                }
                Err(e) => error_reply(&e, Plane::Management),
            }
        }
        _ => super::method_not_allowed(),
    }
}

/// GET /{topic}/Subscriptions
pub fn list_subscriptions(state: &HttpState, req: &Request, topic: &str) -> Reply {
    if req.method != Method::GET {
        return super::method_not_allowed();
    }
    let (skip, top) = match paging(req) {
        Ok(p) => p,
        Err(e) => return error_body(StatusCode::BAD_REQUEST, &e),
    };
    match state.backend.read(|b| b.list_subscriptions(topic)) {
        Ok(infos) => {
            let page: Vec<_> = infos.into_iter().skip(skip).take(top).collect();
            reply(
                StatusCode::OK,
                FEED_CT,
                atom::entity_feed(
                    "Subscriptions",
                    &page,
                    &req.base_url,
                    &format!("{topic}/Subscriptions"),
                    state.backend.now(),
                ),
            )
        }
        Err(e) => error_reply(&e.into(), Plane::Management),
    }
}

/// PUT|GET|DELETE /{topic}/Subscriptions/{sub}
pub async fn subscription(state: &HttpState, req: &Request, topic: &str, sub: &str) -> Reply {
    match req.method {
        Method::GET => match state.backend.read(|b| b.subscription_info(topic, sub)) {
            Ok(i) => reply(
                StatusCode::OK,
                ATOM_CT,
                atom::entity_entry(&i, &req.base_url),
            ),
            Err(e) => error_reply(&e.into(), Plane::Management),
        },
        Method::DELETE => match state
            .backend
            .execute(Op::DeleteSubscription {
                topic: topic.to_string(),
                name: sub.to_string(),
            })
            .await
        {
            Ok(_) => empty(StatusCode::OK),
            Err(e) => error_reply(&e, Plane::Management),
        },
        Method::PUT => {
            let text = match body_text(req) {
                Ok(t) => t,
                Err(e) => return error_body(StatusCode::BAD_REQUEST, &e),
            };
            let parsed = match atom::parse_entity(text, EntityKind::Subscription) {
                Ok(p) => p,
                Err(e) => return error_body(StatusCode::BAD_REQUEST, &e.to_string()),
            };
            let update = is_update(req);
            let op = if update {
                Op::UpdateSubscription {
                    topic: topic.to_string(),
                    name: sub.to_string(),
                    props: parsed.props,
                }
            } else {
                Op::CreateSubscription {
                    topic: topic.to_string(),
                    name: sub.to_string(),
                    props: parsed.props,
                    rule: parsed.default_rule,
                }
            };
            match state.backend.execute(op).await {
                Ok(_) => match state.backend.read(|b| b.subscription_info(topic, sub)) {
                    Ok(i) => reply(
                        if update {
                            StatusCode::OK
                        } else {
                            StatusCode::CREATED
                        },
                        ATOM_CT,
                        atom::entity_entry(&i, &req.base_url),
                    ),
                    Err(e) => error_reply(&e.into(), Plane::Management),
                },
                Err(e) => error_reply(&e, Plane::Management),
            }
        }
        _ => super::method_not_allowed(),
    }
}

/// GET /{topic}/Subscriptions/{sub}/Rules
pub fn list_rules(state: &HttpState, req: &Request, topic: &str, sub: &str) -> Reply {
    if req.method != Method::GET {
        return super::method_not_allowed();
    }
    let (skip, top) = match paging(req) {
        Ok(p) => p,
        Err(e) => return error_body(StatusCode::BAD_REQUEST, &e),
    };
    match state.backend.read(|b| b.rules(topic, sub)) {
        Ok(rules) => {
            let page: Vec<_> = rules.into_iter().skip(skip).take(top).collect();
            reply(
                StatusCode::OK,
                FEED_CT,
                atom::rule_feed(&page, topic, sub, &req.base_url, state.backend.now()),
            )
        }
        Err(e) => error_reply(&e.into(), Plane::Management),
    }
}

/// PUT|GET|DELETE /{topic}/Subscriptions/{sub}/Rules/{rule}
pub async fn rule(state: &HttpState, req: &Request, topic: &str, sub: &str, name: &str) -> Reply {
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
    match req.method {
        Method::GET => match find(state) {
            Ok(r) => reply(
                StatusCode::OK,
                ATOM_CT,
                atom::rule_entry(&r, topic, sub, &req.base_url),
            ),
            Err(e) => error_reply(&e.into(), Plane::Management),
        },
        Method::DELETE => match state
            .backend
            .execute(Op::DeleteRule {
                topic: topic.to_string(),
                subscription: sub.to_string(),
                name: name.to_string(),
            })
            .await
        {
            Ok(_) => empty(StatusCode::OK),
            Err(e) => error_reply(&e, Plane::Management),
        },
        Method::PUT => {
            let text = match body_text(req) {
                Ok(t) => t,
                Err(e) => return error_body(StatusCode::BAD_REQUEST, &e),
            };
            let rule = match atom::parse_rule(text, name, state.backend.now()) {
                Ok(r) => r,
                Err(e) => return error_body(StatusCode::BAD_REQUEST, &e.to_string()),
            };
            let update = is_update(req);
            let op = if update {
                Op::UpdateRule {
                    topic: topic.to_string(),
                    subscription: sub.to_string(),
                    rule,
                }
            } else {
                Op::CreateRule {
                    topic: topic.to_string(),
                    subscription: sub.to_string(),
                    rule,
                }
            };
            match state.backend.execute(op).await {
                Ok(_) => match find(state) {
                    Ok(r) => reply(
                        if update {
                            StatusCode::OK
                        } else {
                            StatusCode::CREATED
                        },
                        ATOM_CT,
                        atom::rule_entry(&r, topic, sub, &req.base_url),
                    ),
                    Err(e) => error_reply(&e.into(), Plane::Management),
                },
                Err(e) => error_reply(&e, Plane::Management),
            }
        }
        _ => super::method_not_allowed(),
    }
}
