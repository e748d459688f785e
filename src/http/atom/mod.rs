//! The ATOM management format of Azure Service Bus: parsing request bodies and rendering
//! responses for queues, topics, subscriptions, rules and the namespace.
//!
//! The shapes follow what the real service returns and what the Azure SDKs
//! (`Azure.Messaging.ServiceBus.Administration` for .NET, `azure-servicebus` for Python,
//! `@azure/service-bus` for JavaScript) send and read:
//!
//! - A single resource is an Atom `<entry>` whose `<content type="application/xml">` holds a
//!   `QueueDescription`, `TopicDescription`, `SubscriptionDescription`, `RuleDescription` or
//!   `NamespaceInfo` in the `.../2010/10/servicebus/connect` namespace.
//! - Lists are an Atom `<feed>` of such entries, paged by `$skip`/`$top` with `self` and
//!   `next` links ([`Page`]).
//! - Description elements are rendered in the order the service uses (taken from recorded
//!   service responses); the SDK parsers look elements up by local name, so parsing here is
//!   order-independent and prefix-agnostic (the Python SDK sends `ns0:entry` with the connect
//!   namespace as default, .NET sends `entry` with explicit namespaces).
//! - Rule filters and actions are told apart by their `xsi:type` attribute (`SqlFilter`,
//!   `CorrelationFilter`, `TrueFilter`, `FalseFilter`, `SqlRuleAction`, `EmptyRuleAction`);
//!   typed values (correlation properties, SQL parameters) are `KeyValueOfstringanyType`
//!   items whose `Value` carries `xsi:type="d6p1:int"` etc. with `d6p1` bound to the
//!   XML Schema namespace.
//!
//! Parsing never panics: malformed XML and bad values become an [`AtomError`] whose message
//! names the offending element and value, meant for a 400 response body.
//!
//! Layout: [`read`] builds an element tree from a body, [`write`] appends escaped elements,
//! [`values`] converts durations, dates, booleans and typed values both ways, [`entity`] holds
//! the queue/topic/subscription descriptions (driven by the property table in
//! [`properties`]), [`rule`] the rule descriptions and [`feed`] entries, feeds and the
//! namespace document.

mod entity;
mod feed;
pub mod properties;
mod read;
mod rule;
mod values;
mod write;

use std::fmt;

use crate::broker::entity::{EntityKind, EntityProps, Rule};
use write::el;

pub use entity::{description_kind, entity_entry, parse_entity};
pub use feed::{entity_feed, entity_feed_page, namespace_info, rule_feed, rule_feed_page, Page};
pub use rule::{parse_rule, rule_entry};

/// The Atom namespace of `<entry>` and `<feed>`.
pub const ATOM_NS: &str = "http://www.w3.org/2005/Atom";
/// The namespace of the entity descriptions.
pub const SB_NS: &str = "http://schemas.microsoft.com/netservices/2010/10/servicebus/connect";
/// The namespace of the `CountDetails` children.
pub const SB_COUNTS_NS: &str = "http://schemas.microsoft.com/netservices/2011/06/servicebus";
/// The XML Schema instance namespace (`xsi:type`, `xsi:nil`).
pub const XSI_NS: &str = "http://www.w3.org/2001/XMLSchema-instance";
/// The XML Schema namespace that typed values' `xsi:type` prefixes are bound to.
pub const XSD_NS: &str = "http://www.w3.org/2001/XMLSchema";
/// The management API version written into entry ids and links.
pub const API_VERSION: &str = "2021-05";

/// A request body the ATOM layer cannot accept; the message names the element and value and is
/// meant for a 400 Bad Request [`error_body`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AtomError(pub String);

impl fmt::Display for AtomError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for AtomError {}

fn err<T>(msg: impl Into<String>) -> Result<T, AtomError> {
    Err(AtomError(msg.into()))
}

/// A parsed queue, topic or subscription PUT body.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedEntity {
    /// Every setting, with [`EntityProps::default`] for elements the body leaves out.
    pub props: EntityProps,
    /// Subscriptions only: the `DefaultRuleDescription` to create instead of the `$Default`
    /// true-filter rule. Its `created_at` is 0; the caller stamps it.
    pub default_rule: Option<Rule>,
}

/// Azure's management error body: `<Error><Code>404</Code><Detail>...</Detail></Error>`.
pub fn error_body(code: u16, detail: &str) -> String {
    let mut out = String::from("<Error>");
    el(&mut out, "Code", &code.to_string());
    el(&mut out, "Detail", detail);
    out.push_str("</Error>");
    out
}

#[cfg(test)]
mod tests;
