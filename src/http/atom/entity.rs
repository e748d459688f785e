//! Queue, topic and subscription descriptions: parsing PUT bodies and rendering entries.

use super::feed::{namespace_name, resource_url, trim_base};
use super::properties::{self, Access, Property, PROPERTIES};
use super::read::Node;
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
    let mut p = EntityProps::default();
    let mut default_rule = None;
    for el in &desc.children {
        if let Some(prop) = properties::find(&el.name, kind) {
            read_property(&mut p, prop, el)?;
        } else if el.name == "DefaultRuleDescription" && kind == EntityKind::Subscription {
            let name = match el.child("Name") {
                Some(n) if !n.text.trim().is_empty() => n.text.trim().to_string(),
                _ => DEFAULT_RULE_NAME.to_string(),
            };
            default_rule = Some(rule_from_node(el, name, 0)?);
        }
    }
    Ok(ParsedEntity {
        props: p,
        default_rule,
    })
}

// ---------------------------------------------------------------------------------------------
// Rule parsing.

/// Sets `prop` on `p` from its element.
fn read_property(p: &mut EntityProps, prop: &Property, el: &Node) -> Result<(), AtomError> {
    match prop.access {
        Access::Bool(_, set) => set(p, boolean(el)?),
        Access::Int64(_, set) => set(p, int64(el)?),
        Access::Int32(_, set) => set(p, int32(el)?),
        Access::Duration(_, set) => set(p, duration(el)?),
        Access::Status(_, set) => match EntityStatus::parse(&el.text) {
            Some(st) => set(p, st),
            None => {
                return bad_value(
                    el,
                    "an entity status (Active, Disabled, SendDisabled or ReceiveDisabled)",
                )
            }
        },
        Access::Address(_, set) => set(p, forward_target(el)?),
        Access::Text(_, set) => set(
            p,
            if el.is_nil() {
                None
            } else {
                Some(el.text.clone())
            },
        ),
    }
    Ok(())
}

/// Appends `prop`'s element (nothing for an unset address or text).
fn write_property(o: &mut String, prop: &Property, p: &EntityProps, base_url: &str) {
    let name = prop.name;
    match prop.access {
        Access::Bool(get, _) => el_bool(o, name, *get(p)),
        Access::Int64(get, _) => el(o, name, &get(p).to_string()),
        Access::Int32(get, _) => el(o, name, &get(p).to_string()),
        Access::Duration(get, _) => el_dur(o, name, *get(p)),
        Access::Status(get, _) => el(o, name, get(p).as_str()),
        Access::Address(get, _) => {
            if let Some(f) = get(p) {
                el(o, name, &forward_address(base_url, f));
            }
        }
        Access::Text(get, _) => {
            if let Some(t) = get(p) {
                el(o, name, t);
            }
        }
    }
}

/// One element of a rendered description: a setting from [`PROPERTIES`] or a runtime or
/// constant element.
enum Item {
    Prop(&'static str),
    SizeInBytes,
    MessageCount,
    SubscriptionCount,
    /// `CreatedAt`, `UpdatedAt`, `AccessedAt`.
    Times,
    CountDetails,
    AuthorizationRules,
    /// An element the emulator always renders with the same text.
    Fixed(&'static str, &'static str),
}

use Item::{Fixed, Prop};

const ANONYMOUS: Item = Fixed("IsAnonymousAccessible", "false");
const AVAILABLE: Item = Fixed("EntityAvailabilityStatus", "Available");

/// The element order of the service's `QueueDescription`.
#[rustfmt::skip]
const QUEUE_LAYOUT: &[Item] = &[
    Prop("LockDuration"), Prop("MaxSizeInMegabytes"), Prop("RequiresDuplicateDetection"),
    Prop("RequiresSession"), Prop("DefaultMessageTimeToLive"),
    Prop("DeadLetteringOnMessageExpiration"), Prop("DuplicateDetectionHistoryTimeWindow"),
    Prop("MaxDeliveryCount"), Prop("EnableBatchedOperations"), Item::SizeInBytes,
    Item::MessageCount, ANONYMOUS, Item::AuthorizationRules, Prop("Status"), Item::Times,
    Prop("SupportOrdering"), Prop("UserMetadata"), Item::CountDetails, Prop("AutoDeleteOnIdle"),
    Prop("EnablePartitioning"), AVAILABLE, Prop("EnableExpress"), Prop("ForwardTo"),
    Prop("ForwardDeadLetteredMessagesTo"), Prop("MaxMessageSizeInKilobytes"),
];

/// The element order of the service's `TopicDescription`.
#[rustfmt::skip]
const TOPIC_LAYOUT: &[Item] = &[
    Prop("DefaultMessageTimeToLive"), Prop("MaxSizeInMegabytes"),
    Prop("RequiresDuplicateDetection"), Prop("DuplicateDetectionHistoryTimeWindow"),
    Prop("EnableBatchedOperations"), Item::SizeInBytes,
    Fixed("FilteringMessagesBeforePublishing", "false"), ANONYMOUS, Item::AuthorizationRules,
    Prop("Status"), Item::Times, Prop("SupportOrdering"), Prop("UserMetadata"),
    Item::CountDetails, Item::SubscriptionCount, Prop("AutoDeleteOnIdle"),
    Prop("EnablePartitioning"), AVAILABLE, Fixed("EnableSubscriptionPartitioning", "false"),
    Prop("EnableExpress"), Prop("MaxMessageSizeInKilobytes"),
];

/// The element order of the service's `SubscriptionDescription`.
#[rustfmt::skip]
const SUBSCRIPTION_LAYOUT: &[Item] = &[
    Prop("LockDuration"), Prop("RequiresSession"), Prop("DefaultMessageTimeToLive"),
    Prop("DeadLetteringOnMessageExpiration"), Prop("DeadLetteringOnFilterEvaluationExceptions"),
    Item::MessageCount, Prop("MaxDeliveryCount"), Prop("EnableBatchedOperations"),
    Prop("Status"), Prop("ForwardTo"), Item::Times, Item::CountDetails, Prop("UserMetadata"),
    Prop("ForwardDeadLetteredMessagesTo"), Prop("AutoDeleteOnIdle"), AVAILABLE,
];

fn layout(kind: EntityKind) -> &'static [Item] {
    match kind {
        EntityKind::Queue => QUEUE_LAYOUT,
        EntityKind::Topic => TOPIC_LAYOUT,
        EntityKind::Subscription => SUBSCRIPTION_LAYOUT,
    }
}

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

pub(super) fn times(out: &mut String, info: &EntityInfo) {
    el(out, "CreatedAt", &date_or_never(info.times.created_at));
    el(out, "UpdatedAt", &date_or_never(info.times.updated_at));
    el(out, "AccessedAt", &date_or_never(info.times.accessed_at));
}

/// The `QueueDescription` / `TopicDescription` / `SubscriptionDescription` element, in the
/// element order of the service's responses ([`layout`]); a property of the kind that the
/// layout does not place is appended at the end.
pub(super) fn render_description(info: &EntityInfo, base_url: &str) -> String {
    let p = &info.props;
    let mut o = String::with_capacity(2048);
    let tag = description_name(info.kind);
    o.push_str(&format!("<{tag} xmlns=\"{SB_NS}\" xmlns:i=\"{XSI_NS}\">"));
    let items = layout(info.kind);
    for item in items {
        match item {
            Prop(name) => {
                if let Some(prop) = properties::find(name, info.kind) {
                    write_property(&mut o, prop, p, base_url);
                }
            }
            Item::SizeInBytes => el(&mut o, "SizeInBytes", &info.size_in_bytes.to_string()),
            Item::MessageCount => el(&mut o, "MessageCount", &info.counts.total().to_string()),
            Item::SubscriptionCount => el(
                &mut o,
                "SubscriptionCount",
                &info.subscription_count.to_string(),
            ),
            Item::Times => times(&mut o, info),
            Item::CountDetails => count_details(&mut o, info),
            Item::AuthorizationRules => o.push_str("<AuthorizationRules></AuthorizationRules>"),
            Fixed(name, text) => el(&mut o, name, text),
        }
    }
    let placed = |name: &str| items.iter().any(|i| matches!(i, Prop(n) if *n == name));
    for prop in PROPERTIES {
        if prop.accepts(info.kind) && !placed(prop.name) {
            write_property(&mut o, prop, p, base_url);
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
