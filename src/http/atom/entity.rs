//! Queue, topic and subscription descriptions: parsing PUT bodies and rendering entries.

use super::feed::{namespace_name, resource_url, trim_base};
use super::read::{clip, find_description, parse_document};
use super::rule::rule_from_node;
use super::values::*;
use super::write::*;
use super::*;
use crate::broker::entity::{EntityInfo, EntityStatus, DEFAULT_RULE_NAME};

pub(super) fn description_name(kind: EntityKind) -> &'static str {
    match kind {
        EntityKind::Queue => "QueueDescription",
        EntityKind::Topic => "TopicDescription",
        EntityKind::Subscription => "SubscriptionDescription",
    }
}

/// Which description a PUT body holds: `Some(Queue | Topic | Subscription)` for a
/// `QueueDescription`, `TopicDescription` or `SubscriptionDescription` inside
/// `<entry><content>`; `None` for any other well-formed document (including
/// `RuleDescription`, which [`parse_rule`](super::parse_rule) handles); an error naming the
/// fault for malformed XML.
pub fn description_kind(xml: &str) -> Result<Option<EntityKind>, AtomError> {
    let root = parse_document(xml)?;
    Ok(match find_description(&root).map(|d| d.name.as_str()) {
        Some("QueueDescription") => Some(EntityKind::Queue),
        Some("TopicDescription") => Some(EntityKind::Topic),
        Some("SubscriptionDescription") => Some(EntityKind::Subscription),
        _ => None,
    })
}

/// Parses a queue, topic or subscription PUT body (create or update).
///
/// Elements the body leaves out take [`EntityProps::default`]; elements the kind does not have,
/// read-only runtime elements (`MessageCount`, `CountDetails`, `CreatedAt`, ...) and unknown
/// elements are ignored. `ForwardTo` / `ForwardDeadLetteredMessagesTo` addresses are reduced to
/// entity paths. Durations at or beyond TimeSpan.MaxValue's day count become [`TimeSpan::MAX`].
pub fn parse_entity(xml: &str, kind: EntityKind) -> Result<ParsedEntity, AtomError> {
    let root = parse_document(xml)?;
    let expected = description_name(kind);
    let desc = match find_description(&root) {
        Some(d) => d,
        None => {
            return err(format!(
                "the request body has no {expected} inside <entry><content>"
            ))
        }
    };
    if desc.name != expected {
        return err(format!(
            "expected a {expected} in the request body, found <{}>",
            clip(&desc.name)
        ));
    }
    let q = kind == EntityKind::Queue;
    let t = kind == EntityKind::Topic;
    let s = kind == EntityKind::Subscription;
    let mut p = EntityProps::default();
    let mut default_rule = None;
    for el in &desc.children {
        match el.name.as_str() {
            "LockDuration" if q || s => p.lock_duration = duration(el)?,
            "MaxSizeInMegabytes" if q || t => p.max_size_in_megabytes = int64(el)?,
            "RequiresDuplicateDetection" if q || t => p.requires_duplicate_detection = boolean(el)?,
            "DuplicateDetectionHistoryTimeWindow" if q || t => {
                p.duplicate_detection_history_time_window = duration(el)?
            }
            "RequiresSession" if q || s => p.requires_session = boolean(el)?,
            "DefaultMessageTimeToLive" => p.default_message_time_to_live = duration(el)?,
            "DeadLetteringOnMessageExpiration" if q || s => {
                p.dead_lettering_on_message_expiration = boolean(el)?
            }
            "DeadLetteringOnFilterEvaluationExceptions" if s => {
                p.dead_lettering_on_filter_evaluation_exceptions = boolean(el)?
            }
            "MaxDeliveryCount" if q || s => p.max_delivery_count = int32(el)?,
            "EnableBatchedOperations" => p.enable_batched_operations = boolean(el)?,
            "Status" => {
                p.status =
                    match EntityStatus::parse(&el.text) {
                        Some(st) => st,
                        None => return bad_value(
                            el,
                            "an entity status (Active, Disabled, SendDisabled or ReceiveDisabled)",
                        ),
                    }
            }
            "ForwardTo" if q || s => p.forward_to = forward_target(el)?,
            "ForwardDeadLetteredMessagesTo" if q || s => {
                p.forward_dead_lettered_messages_to = forward_target(el)?
            }
            "UserMetadata" => {
                p.user_metadata = if el.is_nil() {
                    None
                } else {
                    Some(el.text.clone())
                }
            }
            "AutoDeleteOnIdle" => p.auto_delete_on_idle = duration(el)?,
            "EnablePartitioning" if q || t => p.enable_partitioning = boolean(el)?,
            "SupportOrdering" if q || t => p.support_ordering = boolean(el)?,
            "EnableExpress" if q || t => p.enable_express = boolean(el)?,
            "MaxMessageSizeInKilobytes" if q || t => p.max_message_size_in_kilobytes = int64(el)?,
            "DefaultRuleDescription" if s => {
                let name = match el.child("Name") {
                    Some(n) if !n.text.trim().is_empty() => n.text.trim().to_string(),
                    _ => DEFAULT_RULE_NAME.to_string(),
                };
                default_rule = Some(rule_from_node(el, name, 0)?);
            }
            _ => {}
        }
    }
    Ok(ParsedEntity {
        props: p,
        default_rule,
    })
}

// ---------------------------------------------------------------------------------------------
// Rule parsing.

/// The entity path of an entity: the queue or topic name, or `topic/Subscriptions/sub`.
pub(super) fn entity_path(info: &EntityInfo) -> String {
    match (&info.kind, &info.topic) {
        (EntityKind::Subscription, Some(topic)) => format!("{topic}/Subscriptions/{}", info.name),
        _ => info.name.clone(),
    }
}

pub(super) fn count_details(out: &mut String, info: &EntityInfo) {
    let c = &info.counts;
    out.push_str("<CountDetails xmlns:d2p1=\"");
    out.push_str(SB_COUNTS_NS);
    out.push_str("\">");
    el(out, "d2p1:ActiveMessageCount", &c.active.to_string());
    el(
        out,
        "d2p1:DeadLetterMessageCount",
        &c.dead_letter.to_string(),
    );
    el(out, "d2p1:ScheduledMessageCount", &c.scheduled.to_string());
    el(out, "d2p1:TransferMessageCount", &c.transfer.to_string());
    el(
        out,
        "d2p1:TransferDeadLetterMessageCount",
        &c.transfer_dead_letter.to_string(),
    );
    out.push_str("</CountDetails>");
}

pub(super) fn forward_address(base_url: &str, target: &str) -> String {
    format!("{}/{}", trim_base(base_url), target)
}

pub(super) fn user_metadata(out: &mut String, p: &EntityProps) {
    if let Some(m) = &p.user_metadata {
        el(out, "UserMetadata", m);
    }
}

pub(super) fn times(out: &mut String, info: &EntityInfo) {
    el(out, "CreatedAt", &date_or_never(info.times.created_at));
    el(out, "UpdatedAt", &date_or_never(info.times.updated_at));
    el(out, "AccessedAt", &date_or_never(info.times.accessed_at));
}

/// The `QueueDescription` / `TopicDescription` / `SubscriptionDescription` element, in the
/// element order of the service's responses.
pub(super) fn render_description(info: &EntityInfo, base_url: &str) -> String {
    let p = &info.props;
    let mut o = String::with_capacity(2048);
    let tag = description_name(info.kind);
    o.push_str(&format!("<{tag} xmlns=\"{SB_NS}\" xmlns:i=\"{XSI_NS}\">"));
    match info.kind {
        EntityKind::Queue => {
            el_dur(&mut o, "LockDuration", p.lock_duration);
            el(
                &mut o,
                "MaxSizeInMegabytes",
                &p.max_size_in_megabytes.to_string(),
            );
            el_bool(
                &mut o,
                "RequiresDuplicateDetection",
                p.requires_duplicate_detection,
            );
            el_bool(&mut o, "RequiresSession", p.requires_session);
            el_dur(
                &mut o,
                "DefaultMessageTimeToLive",
                p.default_message_time_to_live,
            );
            el_bool(
                &mut o,
                "DeadLetteringOnMessageExpiration",
                p.dead_lettering_on_message_expiration,
            );
            el_dur(
                &mut o,
                "DuplicateDetectionHistoryTimeWindow",
                p.duplicate_detection_history_time_window,
            );
            el(
                &mut o,
                "MaxDeliveryCount",
                &p.max_delivery_count.to_string(),
            );
            el_bool(
                &mut o,
                "EnableBatchedOperations",
                p.enable_batched_operations,
            );
            el(&mut o, "SizeInBytes", &info.size_in_bytes.to_string());
            el(&mut o, "MessageCount", &info.counts.total().to_string());
            el_bool(&mut o, "IsAnonymousAccessible", false);
            o.push_str("<AuthorizationRules></AuthorizationRules>");
            el(&mut o, "Status", p.status.as_str());
            times(&mut o, info);
            el_bool(&mut o, "SupportOrdering", p.support_ordering);
            user_metadata(&mut o, p);
            count_details(&mut o, info);
            el_dur(&mut o, "AutoDeleteOnIdle", p.auto_delete_on_idle);
            el_bool(&mut o, "EnablePartitioning", p.enable_partitioning);
            el(&mut o, "EntityAvailabilityStatus", "Available");
            el_bool(&mut o, "EnableExpress", p.enable_express);
            if let Some(f) = &p.forward_to {
                el(&mut o, "ForwardTo", &forward_address(base_url, f));
            }
            if let Some(f) = &p.forward_dead_lettered_messages_to {
                el(
                    &mut o,
                    "ForwardDeadLetteredMessagesTo",
                    &forward_address(base_url, f),
                );
            }
            el(
                &mut o,
                "MaxMessageSizeInKilobytes",
                &p.max_message_size_in_kilobytes.to_string(),
            );
        }
        EntityKind::Topic => {
            el_dur(
                &mut o,
                "DefaultMessageTimeToLive",
                p.default_message_time_to_live,
            );
            el(
                &mut o,
                "MaxSizeInMegabytes",
                &p.max_size_in_megabytes.to_string(),
            );
            el_bool(
                &mut o,
                "RequiresDuplicateDetection",
                p.requires_duplicate_detection,
            );
            el_dur(
                &mut o,
                "DuplicateDetectionHistoryTimeWindow",
                p.duplicate_detection_history_time_window,
            );
            el_bool(
                &mut o,
                "EnableBatchedOperations",
                p.enable_batched_operations,
            );
            el(&mut o, "SizeInBytes", &info.size_in_bytes.to_string());
            el_bool(&mut o, "FilteringMessagesBeforePublishing", false);
            el_bool(&mut o, "IsAnonymousAccessible", false);
            o.push_str("<AuthorizationRules></AuthorizationRules>");
            el(&mut o, "Status", p.status.as_str());
            times(&mut o, info);
            el_bool(&mut o, "SupportOrdering", p.support_ordering);
            user_metadata(&mut o, p);
            count_details(&mut o, info);
            el(
                &mut o,
                "SubscriptionCount",
                &info.subscription_count.to_string(),
            );
            el_dur(&mut o, "AutoDeleteOnIdle", p.auto_delete_on_idle);
            el_bool(&mut o, "EnablePartitioning", p.enable_partitioning);
            el(&mut o, "EntityAvailabilityStatus", "Available");
            el_bool(&mut o, "EnableSubscriptionPartitioning", false);
            el_bool(&mut o, "EnableExpress", p.enable_express);
            el(
                &mut o,
                "MaxMessageSizeInKilobytes",
                &p.max_message_size_in_kilobytes.to_string(),
            );
        }
        EntityKind::Subscription => {
            el_dur(&mut o, "LockDuration", p.lock_duration);
            el_bool(&mut o, "RequiresSession", p.requires_session);
            el_dur(
                &mut o,
                "DefaultMessageTimeToLive",
                p.default_message_time_to_live,
            );
            el_bool(
                &mut o,
                "DeadLetteringOnMessageExpiration",
                p.dead_lettering_on_message_expiration,
            );
            el_bool(
                &mut o,
                "DeadLetteringOnFilterEvaluationExceptions",
                p.dead_lettering_on_filter_evaluation_exceptions,
            );
            el(&mut o, "MessageCount", &info.counts.total().to_string());
            el(
                &mut o,
                "MaxDeliveryCount",
                &p.max_delivery_count.to_string(),
            );
            el_bool(
                &mut o,
                "EnableBatchedOperations",
                p.enable_batched_operations,
            );
            el(&mut o, "Status", p.status.as_str());
            if let Some(f) = &p.forward_to {
                el(&mut o, "ForwardTo", &forward_address(base_url, f));
            }
            times(&mut o, info);
            count_details(&mut o, info);
            user_metadata(&mut o, p);
            if let Some(f) = &p.forward_dead_lettered_messages_to {
                el(
                    &mut o,
                    "ForwardDeadLetteredMessagesTo",
                    &forward_address(base_url, f),
                );
            }
            el_dur(&mut o, "AutoDeleteOnIdle", p.auto_delete_on_idle);
            el(&mut o, "EntityAvailabilityStatus", "Available");
        }
    }
    o.push_str(&format!("</{tag}>"));
    o
}

pub(super) fn entity_entry_into(
    out: &mut String,
    with_ns: bool,
    info: &EntityInfo,
    base_url: &str,
) {
    let url = resource_url(base_url, &entity_path(info));
    let ns = namespace_name(base_url);
    let author = match info.kind {
        EntityKind::Subscription => None,
        _ => Some(ns.as_str()),
    };
    render_entry(
        out,
        with_ns,
        &url,
        &info.name,
        Some(info.times.created_at),
        info.times.updated_at,
        author,
        &render_description(info, base_url),
    );
}

/// A queue, topic or subscription as a full entry document (GET, and PUT responses).
///
/// The id and self link are `{base_url}/{entity path}?api-version=2021-05`, where a
/// subscription's path is `topic/Subscriptions/sub`; the title is the entity's own name.
pub fn entity_entry(info: &EntityInfo, base_url: &str) -> String {
    let mut out = String::from(XML_DECL);
    entity_entry_into(&mut out, true, info, base_url);
    out
}
