//! Rule operations of `$management` (subscriptions only): add-rule, remove-rule and
//! enumerate-rules; the rule bodies are read and written by [`super::rule_descriptions`].

use super::request::{no_content, ok, ok_empty, OpResult, Request};
use super::rule_descriptions::{rule_entry, rule_from_request};
use crate::amqp::convert::string_map;
use crate::amqp::errors::{wire_error, WireError};
use crate::broker::op::QueuePath;
use futures::future::BoxFuture;
use serde_amqp::Value as AV;

/// The (topic, subscription) of a rule operation's node: rules belong to subscriptions.
fn subscription_of(path: &QueuePath) -> Result<(String, String), WireError> {
    match &path.subscription {
        Some(sub) if !path.dead_letter => Ok((path.entity.clone(), sub.clone())),
        _ => Err(WireError::bad_request(format!(
            "Rules belong to subscriptions; '{}' is not one.",
            path.display()
        ))),
    }
}

/// `com.microsoft:add-rule`: rule-name, rule-description.
pub(super) fn add_rule<'r>(r: &'r Request<'r>) -> BoxFuture<'r, OpResult> {
    Box::pin(async move {
        let (topic, subscription) = subscription_of(&r.path)?;
        let rule = rule_from_request(&r.body, r.backend.now()).map_err(WireError::bad_request)?;
        r.backend
            .create_rule(topic, subscription, rule)
            .await
            .map_err(|e| wire_error(&e))?;
        ok_empty()
    })
}

/// `com.microsoft:remove-rule`: rule-name.
pub(super) fn remove_rule<'r>(r: &'r Request<'r>) -> BoxFuture<'r, OpResult> {
    Box::pin(async move {
        let (topic, subscription) = subscription_of(&r.path)?;
        let name = r
            .text("rule-name")
            .ok_or_else(|| WireError::bad_request("rule-name is required"))?;
        r.backend
            .delete_rule(topic, subscription, name)
            .await
            .map_err(|e| wire_error(&e))?;
        ok_empty()
    })
}

/// `com.microsoft:enumerate-rules`: skip, top → rules (204 when none).
pub(super) fn enumerate_rules<'r>(r: &'r Request<'r>) -> BoxFuture<'r, OpResult> {
    Box::pin(async move {
        let (topic, subscription) = subscription_of(&r.path)?;
        let (skip, top) = r.page();
        let all = r
            .backend
            .rules(&topic, &subscription)
            .map_err(|e| wire_error(&e))?;
        let page: Vec<AV> = all.iter().skip(skip).take(top).map(rule_entry).collect();
        if page.is_empty() {
            return no_content();
        }
        ok(string_map(vec![("rules", AV::List(page))]))
    })
}
